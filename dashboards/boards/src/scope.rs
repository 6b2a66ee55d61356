//! A board cut to a caller's scope (MODEL.md, "Views"): the [`View::WallScreen`](crate::View)
//! rendering (no person's name) cut by [`scope_snapshot`] and [`scope_ops`] to a [`Cut`]:
//!
//! | part | [`Cut::Country`] (field officer) | [`Cut::Agency`] (agency focal point) |
//! |---|---|---|
//! | `position`, `as_of` | as is | as is |
//! | `counters` | as is: centre-wide counts, no id, title or place | as is |
//! | `countries` | the officer's own country only | all (the wall screen's public-safe view) |
//! | `broadcasts` | none (`[]`): field officers do not read broadcasts (`policy::BROADCAST_READ`) | none (`[]`): a focal point reads its agency's broadcasts through the API, cut to its agency; the board's list holds other agencies' and the centre's own |
//! | `timeline` | items of the officer's own country, except broadcasts | every item except broadcasts |
//! | anything else | dropped: a new part of the board is not shown until it is placed here | dropped |
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

/// Which cut of the board a caller gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cut {
    /// A field officer: its country (none when its account names none).
    Country(Option<Country>),
    /// An agency focal point: the public-safe board without the broadcast list.
    Agency,
}

impl Cut {
    /// How the gateway's messages name the cut (`"scope"`): the country code, `"agency"`,
    /// or `null` for a field officer without a country.
    pub fn label(self) -> Option<String> {
        match self {
            Cut::Country(c) => c.map(|c| c.as_str().to_owned()),
            Cut::Agency => Some("agency".to_owned()),
        }
    }

    fn country_shown(self, code: &str) -> bool {
        match self {
            Cut::Country(c) => c.is_some_and(|c| c.as_str() == code),
            Cut::Agency => true,
        }
    }
}

/// Whether a timeline item is shown in `cut`.
fn item_shown(item: &Value, cut: Cut) -> bool {
    let country_ok = match cut {
        Cut::Country(_) => item
            .get("country")
            .and_then(Value::as_str)
            .is_some_and(|c| cut.country_shown(c)),
        Cut::Agency => true,
    };
    country_ok && item.get("kind").and_then(Value::as_str) != Some("broadcast")
}

/// The `countries` object cut to `cut`.
fn countries_cut(countries: &Value, cut: Cut) -> Value {
    let mut kept = Map::new();
    if let Value::Object(all) = countries {
        for (code, entry) in all {
            if cut.country_shown(code) {
                kept.insert(code.clone(), entry.clone());
            }
        }
    }
    Value::Object(kept)
}

/// A snapshot (any view's; the gateway gives the wall screen's) cut to `cut`.
pub fn scope_snapshot(board: &Value, cut: Cut) -> Value {
    let mut out = Map::new();
    let Value::Object(all) = board else {
        return Value::Object(out);
    };
    for (key, value) in all {
        let kept = match key.as_str() {
            "position" | "as_of" | "counters" => value.clone(),
            "countries" => countries_cut(value, cut),
            "broadcasts" => Value::Array(Vec::new()),
            "timeline" => Value::Array(
                value
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter(|i| item_shown(i, cut))
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

/// A delta's ops cut to `cut`: another country's set/remove/item/drop, any broadcast op and any op
/// on a part the cut does not show are dropped.
pub fn scope_ops(ops: &[Op], cut: Cut) -> Vec<Op> {
    let own = |path: &[String]| match path {
        [] => true,
        [top, ..] if top == "counters" => true,
        [top] if top == "countries" => true,
        [top, c, ..] if top == "countries" => cut.country_shown(c),
        _ => false,
    };
    ops.iter()
        .filter_map(|op| match op {
            Op::Set { path, value } if own(path) => Some(Op::Set {
                path: path.clone(),
                value: match path.as_slice() {
                    [] => scope_snapshot(value, cut),
                    [top] if top == "countries" => countries_cut(value, cut),
                    _ => value.clone(),
                },
            }),
            Op::Remove { path } if own(path) && !path.is_empty() => Some(op.clone()),
            // One element of a list: kept where its list is (a country's markers, surges,
            // orders); the broadcast list is not shown in any cut.
            Op::Merge { path, .. } if own(path) && !path.is_empty() => Some(op.clone()),
            Op::Item { path, .. } | Op::Drop { path, .. } if own(path) && !path.is_empty() => {
                Some(op.clone())
            }
            Op::Timeline { value, .. } if item_shown(value, cut) => Some(op.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn so() -> Cut {
        Cut::Country(Country::parse("SO").ok())
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
        let none = scope_snapshot(&board, Cut::Country(None));
        assert_eq!(none["countries"], json!({}));
        assert_eq!(none["timeline"], json!([]));
        // A focal point: every country and the counts, no broadcast.
        let agency = scope_snapshot(&board, Cut::Agency);
        assert_eq!(agency["countries"], board["countries"]);
        assert_eq!(agency["broadcasts"], json!([]));
        assert_eq!(agency["timeline"].as_array().unwrap().len(), 2);
        assert!(!agency.to_string().contains("Curfew"));
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
