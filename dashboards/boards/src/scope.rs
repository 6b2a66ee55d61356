//! A board cut to one country: what a field officer gets (MODEL.md, "Views": `field`).
//!
//! The field view is the [`View::WallScreen`](crate::View) rendering (no person's name) cut
//! to the officer's country by [`scope_snapshot`] and [`scope_ops`]:
//!
//! | part | kept |
//! |---|---|
//! | `position`, `as_of` | as is |
//! | `counters` | as is: centre-wide counts, no id, title or place |
//! | `countries` | the officer's own country only |
//! | `broadcasts` | none (`[]`): field officers do not read broadcasts (`policy::BROADCAST_READ`) |
//! | `timeline` | items of the officer's own country, except broadcasts |
//! | anything else | dropped: a new part of the board is not shown until it is placed here |
//!
//! An officer without a country gets no country and no timeline item.
//!
//! # Promises
//! - Pure; never another country's key, marker, id, title or coordinates.
//! - The cut of a snapshot plus the cut of the deltas after it equals the cut of the later
//!   snapshot (property-tested), with one allowance: the board keeps the newest
//!   [`TIMELINE_LIMIT`](crate::situation::TIMELINE_LIMIT) items of every country together,
//!   so once that many have passed, a page kept live may hold older items of its own
//!   country that a fresh snapshot no longer has.

use events::validate::Country;
use serde_json::{Map, Value};

use crate::Op;

/// Whether a timeline item is shown to an officer of `country`.
fn item_shown(item: &Value, country: Option<Country>) -> bool {
    country.is_some_and(|c| item.get("country").and_then(Value::as_str) == Some(c.as_str()))
        && item.get("kind").and_then(Value::as_str) != Some("broadcast")
}

/// The `countries` object cut to `country`.
fn countries_cut(countries: &Value, country: Option<Country>) -> Value {
    let mut kept = Map::new();
    if let (Some(c), Value::Object(all)) = (country, countries)
        && let Some(entry) = all.get(c.as_str())
    {
        kept.insert(c.as_str().to_owned(), entry.clone());
    }
    Value::Object(kept)
}

/// A snapshot (any view's; the gateway gives the wall screen's) cut to `country`.
pub fn scope_snapshot(board: &Value, country: Option<Country>) -> Value {
    let mut out = Map::new();
    let Value::Object(all) = board else {
        return Value::Object(out);
    };
    for (key, value) in all {
        let kept = match key.as_str() {
            "position" | "as_of" | "counters" => value.clone(),
            "countries" => countries_cut(value, country),
            "broadcasts" => Value::Array(Vec::new()),
            "timeline" => Value::Array(
                value
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|i| item_shown(i, country))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        out.insert(key.clone(), kept);
    }
    Value::Object(out)
}

/// A delta's ops cut to `country`: another country's set/remove, any broadcast op and any
/// op on a part the field view does not show are dropped.
pub fn scope_ops(ops: &[Op], country: Option<Country>) -> Vec<Op> {
    let own = |path: &[String]| match path {
        [] => true,
        [top, ..] if top == "counters" => true,
        [top] if top == "countries" => true,
        [top, c, ..] if top == "countries" => country.is_some_and(|own| own.as_str() == c),
        _ => false,
    };
    ops.iter()
        .filter_map(|op| match op {
            Op::Set { path, value } if own(path) => Some(Op::Set {
                path: path.clone(),
                value: match path.as_slice() {
                    [] => scope_snapshot(value, country),
                    [top] if top == "countries" => countries_cut(value, country),
                    _ => value.clone(),
                },
            }),
            Op::Remove { path } if own(path) && !path.is_empty() => Some(op.clone()),
            Op::Timeline { value, .. } if item_shown(value, country) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn so() -> Option<Country> {
        Country::parse("SO").ok()
    }

    #[test]
    fn a_snapshot_keeps_the_own_country_and_the_counts() {
        let board = json!({
            "position": 9, "as_of": "2026-11-27T02:00:00Z",
            "counters": {"open_incidents": 2},
            "countries": {"SO": {"code": "SO"}, "KE": {"code": "KE", "markers": [{"title": "Nairobi"}]}},
            "broadcasts": [{"title": "Curfew"}],
            "broadcast_agencies": {"x": {}},
            "timeline": [
                {"country": "KE", "kind": "incident", "text": "Incident reported in KE: Nairobi"},
                {"country": "SO", "kind": "incident", "text": "Incident reported in SO: x"},
                {"country": "SO", "kind": "broadcast", "text": "Broadcast issued: Curfew"},
                {"country": null, "kind": "broadcast", "text": "Broadcast issued: y"}],
            "future_part": {"KE": 1},
        });
        let cut = scope_snapshot(&board, so());
        assert_eq!(
            cut,
            json!({
                "position": 9, "as_of": "2026-11-27T02:00:00Z",
                "counters": {"open_incidents": 2},
                "countries": {"SO": {"code": "SO"}},
                "broadcasts": [],
                "timeline": [{"country": "SO", "kind": "incident", "text": "Incident reported in SO: x"}],
            })
        );
        let none = scope_snapshot(&board, None);
        assert_eq!(none["countries"], json!({}));
        assert_eq!(none["timeline"], json!([]));
    }

    #[test]
    fn ops_of_other_countries_are_dropped() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let ops = vec![
            Op::Set {
                path: p(&["countries", "KE"]),
                value: json!({"code": "KE"}),
            },
            Op::Remove {
                path: p(&["countries", "KE"]),
            },
            Op::Set {
                path: p(&["countries", "SO"]),
                value: json!({"code": "SO"}),
            },
            Op::Set {
                path: p(&["counters"]),
                value: json!({}),
            },
            Op::Set {
                path: p(&["broadcasts"]),
                value: json!([{"title": "x"}]),
            },
            Op::Set {
                path: p(&["broadcast_agencies", "b", "wfp"]),
                value: json!({}),
            },
            Op::Timeline {
                value: json!({"country": "KE", "kind": "level"}),
                limit: 200,
            },
            Op::Timeline {
                value: json!({"country": "SO", "kind": "level"}),
                limit: 200,
            },
            Op::Remove { path: vec![] },
        ];
        let cut = scope_ops(&ops, so());
        assert_eq!(cut, vec![ops[2].clone(), ops[3].clone(), ops[7].clone(),]);
        assert!(!serde_json::to_string(&cut).unwrap().contains("KE"));
    }
}
