//! The site scenario's verdict on one site, without I/O: what it acknowledged, what it
//! says became of each item, and the centre's log (see [`super`]).

use std::collections::HashMap;

use events::RecordedEvent;
use serde_json::Value;
use uuid::Uuid;

/// What a site's item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A field report for the site's country.
    Report,
    /// A roll-call mark on the site's order.
    Mark,
    /// A report for the other site's country: the centre refuses it.
    WrongReport,
    /// A mark on the other site's order: the centre refuses it.
    WrongMark,
    /// An agency focal point's acknowledgement of an alert to the site's country.
    Ack,
}

impl Kind {
    /// Whether the centre must refuse it.
    pub fn wrong(self) -> bool {
        matches!(self, Kind::WrongReport | Kind::WrongMark)
    }
}

/// One item a site acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The command's id.
    pub id: Uuid,
    /// The id its event has at the centre: the command's, or for an acknowledgement the
    /// agency's one id for the broadcast (`events::domain::broadcast::ack_id`).
    pub event: Uuid,
    /// Its position in the site's outbox.
    pub position: u64,
    /// What it is.
    pub kind: Kind,
}

/// What [`judge`] found for one site.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteVerdict {
    /// Items the site acknowledged.
    pub acknowledged: usize,
    /// Of those, deliberately wrong.
    pub wrong: usize,
    /// Of those, alerts acknowledged by the site's focal point.
    pub alert_acks: usize,
    /// Wrong items recorded as refused at the site.
    pub wrong_refused: usize,
    /// Items from the site in the centre's log.
    pub in_log: usize,
    /// Acknowledged (not wrong) but not in the log, or not forwarded.
    pub lost: usize,
    /// In the log more than once.
    pub duplicated: usize,
    /// In the log out of the site's order.
    pub misordered: usize,
    /// Refused without being wrong, or a wrong item not refused.
    pub refused_silently: usize,
    /// The first few problems, in words.
    pub problems: Vec<String>,
}

impl SiteVerdict {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.misordered == 0
            && self.refused_silently == 0
            && self.wrong_refused == self.wrong
            && self.problems.is_empty()
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 10 {
            self.problems.push(p);
        }
    }
}

/// Judges site `name`: `accepted` (what it acknowledged, in the order acknowledged),
/// `states` (each item's `state` as the site reports it at the end, by id) and the centre's
/// `log`.
pub fn judge(
    name: &str,
    accepted: &[Accepted],
    states: &HashMap<Uuid, Value>,
    log: &[RecordedEvent],
) -> SiteVerdict {
    let mut v = SiteVerdict {
        acknowledged: accepted.len(),
        wrong: accepted.iter().filter(|a| a.kind.wrong()).count(),
        alert_acks: accepted.iter().filter(|a| a.kind == Kind::Ack).count(),
        ..SiteVerdict::default()
    };
    if accepted.windows(2).any(|w| w[1].position <= w[0].position) {
        v.problem(format!(
            "{name}: the site's positions do not grow in the order it acknowledged"
        ));
    }
    let source = format!("site:{name}");
    let by_id: HashMap<Uuid, &Accepted> = accepted.iter().map(|a| (a.event, a)).collect();
    // The log's events of this site's items, and anything else that claims to be from it.
    let mut seen: Vec<Uuid> = Vec::new();
    for e in log {
        let ours = by_id.contains_key(&e.id);
        let from_site = e.meta.source.as_deref() == Some(source.as_str());
        if ours && !from_site {
            v.problem(format!(
                "{name}: {} is in the log with source {:?}, not {source}",
                e.id, e.meta.source
            ));
        }
        // A command's first event has the command's id; later ones (derived ids) are not
        // items of their own.
        let item_type = matches!(
            e.event_type.as_str(),
            "IncidentReported" | "PersonMarked" | "BroadcastAcknowledged"
        );
        if from_site && !ours && item_type {
            v.problem(format!(
                "{name}: {} ({}) is in the log from {source} but the site never acknowledged it",
                e.id, e.event_type
            ));
        }
        if ours {
            seen.push(e.id);
        }
    }
    v.in_log = seen.len();
    let mut counted: HashMap<Uuid, usize> = HashMap::new();
    for id in &seen {
        *counted.entry(*id).or_default() += 1;
    }
    v.duplicated = counted.values().filter(|n| **n > 1).count();
    let positions: Vec<u64> = seen.iter().map(|id| by_id[id].position).collect();
    v.misordered = positions.windows(2).filter(|w| w[1] <= w[0]).count();
    for a in accepted {
        let state = states.get(&a.id);
        let said = state.and_then(|s| s["state"].as_str()).unwrap_or("unknown");
        let logged = counted.get(&a.event).copied().unwrap_or(0);
        if a.kind.wrong() {
            let code = state.and_then(|s| s["refusal"]["code"].as_str());
            if said == "refused" && matches!(code, Some("forbidden" | "not_found")) {
                v.wrong_refused += 1;
            } else {
                v.refused_silently += 1;
                v.problem(format!(
                    "{name}: wrong item {} ({:?}) was not refused as it should be: {said} {code:?}",
                    a.id, a.kind
                ));
            }
            if logged > 0 {
                v.problem(format!(
                    "{name}: wrong item {} was stored at the centre",
                    a.id
                ));
            }
            continue;
        }
        match said {
            "forwarded" if logged > 0 => {}
            "refused" => {
                v.refused_silently += 1;
                v.problem(format!(
                    "{name}: item {} ({:?}, position {}) was refused: {}",
                    a.id,
                    a.kind,
                    a.position,
                    state.map(|s| s["refusal"].to_string()).unwrap_or_default()
                ));
            }
            other => {
                v.lost += 1;
                v.problem(format!(
                    "{name}: item {} (position {}) is {other} at the site and {} times in the log",
                    a.id, a.position, logged
                ));
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use events::{Meta, StreamName};
    use serde_json::json;

    fn event(id: Uuid, position: u64, source: &str) -> RecordedEvent {
        RecordedEvent {
            id,
            stream: StreamName::parse(&format!("incident-{id}")).unwrap(),
            event_type: "IncidentReported".into(),
            v: 1,
            data: json!({}),
            meta: Meta {
                source: Some(source.to_owned()),
                ..Meta::default()
            },
            position,
            version: 1,
            recorded_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }

    fn accepted(kinds: &[Kind]) -> Vec<Accepted> {
        kinds
            .iter()
            .enumerate()
            .map(|(i, kind)| {
                let id = Uuid::new_v4();
                Accepted {
                    id,
                    // An acknowledgement's event has the agency's id for the broadcast.
                    event: if *kind == Kind::Ack {
                        events::domain::broadcast::ack_id(id, "unicef")
                    } else {
                        id
                    },
                    position: i as u64 + 1,
                    kind: *kind,
                }
            })
            .collect()
    }

    fn forwarded() -> Value {
        json!({"state": "forwarded", "outcome": {}})
    }

    fn refused(code: &str) -> Value {
        json!({"state": "refused", "refusal": {"code": code, "message": "no"}})
    }

    #[test]
    fn every_acknowledged_item_once_in_order_and_each_wrong_one_refused_passes() {
        let items = accepted(&[
            Kind::Report,
            Kind::WrongReport,
            Kind::Mark,
            Kind::WrongMark,
            Kind::Ack,
        ]);
        let states: HashMap<Uuid, Value> = items
            .iter()
            .map(|a| match a.kind {
                Kind::WrongReport => (a.id, refused("forbidden")),
                Kind::WrongMark => (a.id, refused("not_found")),
                _ => (a.id, forwarded()),
            })
            .collect();
        let log = vec![
            event(Uuid::new_v4(), 1, "http"),
            event(items[0].id, 2, "site:k"),
            event(items[2].id, 3, "site:k"),
            event(items[4].event, 4, "site:k"),
        ];
        let v = judge("k", &items, &states, &log);
        assert!(v.ok(), "{v:?}");
        assert_eq!(
            (v.acknowledged, v.wrong, v.wrong_refused, v.in_log),
            (5, 2, 2, 3)
        );
        // An acknowledgement found under its command's id is not it: lost.
        let mut by_command = log.clone();
        by_command[3] = event(items[4].id, 4, "site:k");
        let v = judge("k", &items, &states, &by_command);
        assert_eq!(v.lost, 1, "{v:?}");
    }

    #[test]
    fn lost_duplicated_misordered_and_silent_refusals_each_fail() {
        let items = accepted(&[Kind::Report, Kind::Report, Kind::Mark]);
        let all_forwarded: HashMap<Uuid, Value> =
            items.iter().map(|a| (a.id, forwarded())).collect();
        let in_order = |ids: &[usize]| -> Vec<RecordedEvent> {
            ids.iter()
                .enumerate()
                .map(|(p, i)| event(items[*i].id, p as u64 + 1, "site:k"))
                .collect()
        };
        let lost = judge("k", &items, &all_forwarded, &in_order(&[0, 2]));
        assert_eq!(lost.lost, 1, "{lost:?}");
        let twice = judge("k", &items, &all_forwarded, &in_order(&[0, 1, 1, 2]));
        assert_eq!(twice.duplicated, 1, "{twice:?}");
        let swapped = judge("k", &items, &all_forwarded, &in_order(&[1, 0, 2]));
        assert_eq!(swapped.misordered, 1, "{swapped:?}");
        let mut silently = all_forwarded.clone();
        silently.insert(items[1].id, refused("forbidden"));
        let v = judge("k", &items, &silently, &in_order(&[0, 2]));
        assert_eq!(v.refused_silently, 1, "{v:?}");
        assert!(!v.ok());
        // A wrong item the centre carried out is not refused as it should be.
        let wrong = accepted(&[Kind::WrongReport]);
        let carried: HashMap<Uuid, Value> = wrong.iter().map(|a| (a.id, forwarded())).collect();
        let v = judge("k", &wrong, &carried, &[event(wrong[0].id, 1, "site:k")]);
        assert!(!v.ok(), "{v:?}");
        // Another source for a site's item, and an item from the site nobody acknowledged.
        let v = judge(
            "k",
            &items,
            &all_forwarded,
            &[
                event(items[0].id, 1, "http"),
                event(items[1].id, 2, "site:k"),
                event(items[2].id, 3, "site:k"),
                event(Uuid::new_v4(), 4, "site:k"),
            ],
        );
        assert_eq!(v.problems.len(), 2, "{v:?}");
        assert!(!v.ok());
    }
}
