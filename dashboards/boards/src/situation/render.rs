//! The situation board as JSON, per view: the full snapshot, and the delta of one event.
//!
//! Redaction lives here: only [`View::Duty`] gets incident reporters and descriptions, who
//! issued and approved a broadcast, and the per-agency detail of broadcasts
//! (`broadcast_agencies`); no view gets any person reference of a hostage case, a roll call or
//! a surge (they are not even looked at). A delta renders only what [`Changes`] names, per
//! entity (one marker, area, surge, order, broadcast; the counters that moved), with the same
//! functions as the snapshot, so the two cannot disagree.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::text::{category_code, order_kind_code, scope_code, surge_status_code};
use super::{AreaLevel, Broadcast, BroadcastStatus, Changes, Code, Counters, Detail, Family};
use super::{
    CountryState, Incident, MAX_BROADCASTS, MAX_MARKERS, Order, Reach, Situation, Surge,
    TIMELINE_LIMIT, TimelineItem, Urgency,
};
use crate::{Op, View, timestamp};
use events::validate::Country;

/// A JSON object from its fields. (Not `json!`: it would deep-copy every `Value` it is given.)
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    let mut map = Map::new();
    for (key, value) in fields {
        map.insert(key.to_owned(), value);
    }
    Value::Object(map)
}

/// A path of object keys.
fn path<const N: usize>(keys: [&str; N]) -> Vec<String> {
    keys.iter().map(|k| (*k).to_owned()).collect()
}

/// The op for entity `id` of a country's newest-first list at `path` (indexed by position in
/// `index`): `listed` is its position and JSON while it is in the list (put at its place),
/// `None` once it has left it (dropped).
fn listed_op(
    path: Vec<String>,
    index: &BTreeMap<u64, Uuid>,
    id: Uuid,
    listed: Option<(u64, Value)>,
) -> Op {
    match listed {
        Some((position, value)) => Op::Item {
            path,
            at: index.range(position.saturating_add(1)..).count(),
            value,
            limit: None,
        },
        None => Op::Drop {
            path,
            id: id.to_string(),
        },
    }
}

/// A string, or `null`.
fn text_or_null(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}

impl Situation {
    /// The whole board for `view`, as MODEL.md describes it, including `position` and `as_of`.
    pub fn snapshot(&self, view: View) -> Value {
        let countries: Map<String, Value> = self
            .countries
            .iter()
            .map(|(code, state)| {
                let country = code.country;
                (
                    country.as_str().to_owned(),
                    self.country(country, state, view),
                )
            })
            .collect();
        let mut board = object([
            ("position", Value::from(self.position)),
            ("as_of", self.as_of.map_or(Value::Null, timestamp)),
            ("counters", self.counters_json()),
            ("countries", Value::Object(countries)),
            ("broadcasts", self.broadcasts_json(view)),
            (
                "timeline",
                Value::Array(self.timeline.iter().map(timeline_item).collect()),
            ),
        ]);
        if view == View::Duty
            && let Value::Object(map) = &mut board
        {
            let detail: Map<String, Value> = self
                .listed_broadcasts()
                .map(|(id, b)| (id.to_string(), agencies_json(b)))
                .collect();
            map.insert("broadcast_agencies".to_owned(), Value::Object(detail));
        }
        board
    }

    /// The listed broadcasts (the newest [`MAX_BROADCASTS`]), newest first.
    fn listed_broadcasts(&self) -> impl Iterator<Item = (&uuid::Uuid, &Broadcast)> {
        self.broadcast_order
            .values()
            .rev()
            .take(MAX_BROADCASTS)
            .filter_map(|id| Some((id, self.broadcasts.get(id)?)))
    }

    /// The ops that turn the previous `snapshot(view)` into the current one, given what the
    /// last [`Situation::apply`] returned. Call it right after that `apply` (before the next):
    /// it renders the current state of what changed. `position` and `as_of` are not in the
    /// ops: the delta message carries them and the page sets them after applying the ops.
    ///
    /// Per entity (MODEL.md, "Deltas"): a country that stays on the board gets only the part
    /// the event's family changed (one marker, one area, one surge, one order, its incident
    /// or hostage counts); a country that appears is sent whole (it holds that one thing), one
    /// that leaves is removed; only the counters that moved are sent; one broadcast of the list.
    pub fn delta(&self, changes: &Changes, view: View) -> Vec<Op> {
        let mut ops = Vec::with_capacity(6);
        self.expired_ops(changes, view, &mut ops);
        for (code, existed) in changes.countries.iter() {
            let key = code.as_str();
            match self.countries.get(&Code::of(code)) {
                None => ops.push(Op::Remove {
                    path: path(["countries", key]),
                }),
                Some(state) if !existed => ops.push(Op::Set {
                    path: path(["countries", key]),
                    value: self.country(code, state, view),
                }),
                Some(state) => self.country_ops(code, state, changes, view, &mut ops),
            }
        }
        if changes.counters {
            let was = counter_fields(&changes.counters_before);
            let moved: Map<String, Value> = counter_fields(&self.counters)
                .into_iter()
                .zip(was)
                .filter(|((_, now), (_, before))| now != before)
                .map(|((key, now), _)| (key.to_owned(), now.into()))
                .collect();
            ops.push(Op::Merge {
                path: path(["counters"]),
                value: Value::Object(moved),
            });
        }
        if changes.broadcasts
            && let Some((_, id)) = changes.entity
            && let Some(b) = self.broadcasts.get(&id)
        {
            // Newest first: the last one issued is at 0. A new one pushes the oldest out
            // through `limit`.
            let rank = self
                .broadcast_order
                .range(b.issued_pos.saturating_add(1)..)
                .take(MAX_BROADCASTS)
                .count();
            if rank < MAX_BROADCASTS {
                ops.push(Op::Item {
                    path: path(["broadcasts"]),
                    at: rank,
                    value: broadcast(&id, b, view),
                    limit: Some(MAX_BROADCASTS),
                });
            }
        }
        if view == View::Duty {
            self.detail_ops(&changes.detail, &mut ops);
        }
        if let Some(item) = self.timeline.front().filter(|_| changes.timeline) {
            ops.push(Op::Timeline {
                value: timeline_item(item),
                limit: TIMELINE_LIMIT,
            });
        }
        ops
    }

    /// The ops of what the retention took off before the event (MODEL.md, "Retention"): each
    /// listed broadcast that left is dropped, and each that came into view in its place goes
    /// in at the end of the list (the page's list is then shorter than the limit, so index
    /// `MAX_BROADCASTS - 1` is its end); in the duty view their agencies follow them.
    fn expired_ops(&self, changes: &Changes, view: View, ops: &mut Vec<Op>) {
        let gone = &changes.expired;
        for id in &gone.left {
            ops.push(Op::Drop {
                path: path(["broadcasts"]),
                id: id.to_string(),
            });
        }
        let came = || {
            gone.into_view
                .iter()
                .filter_map(|id| Some((id, self.broadcasts.get(id)?)))
        };
        for (id, b) in came() {
            ops.push(Op::Item {
                path: path(["broadcasts"]),
                at: MAX_BROADCASTS - 1,
                value: broadcast(id, b, view),
                limit: Some(MAX_BROADCASTS),
            });
        }
        if view != View::Duty {
            return;
        }
        for id in &gone.left {
            ops.push(Op::Remove {
                path: vec!["broadcast_agencies".to_owned(), id.to_string()],
            });
        }
        for (id, b) in came() {
            ops.push(Op::Set {
                path: vec!["broadcast_agencies".to_owned(), id.to_string()],
                value: agencies_json(b),
            });
        }
    }

    /// The ops of a country that had an entry and keeps it: the part the event's family
    /// changed, for the one entity it is about.
    fn country_ops(
        &self,
        code: Country,
        s: &CountryState,
        changes: &Changes,
        view: View,
        ops: &mut Vec<Op>,
    ) {
        let key = code.as_str();
        let part = |name: &str| path(["countries", key, name]);
        let Some((family, id)) = changes.entity else {
            // Every touch of a country comes from a family; if one ever does not, the whole
            // entry is still right.
            ops.push(Op::Set {
                path: path(["countries", key]),
                value: self.country(code, s, view),
            });
            return;
        };
        match family {
            Family::Incident => {
                ops.push(Op::Set {
                    path: part("incidents"),
                    value: incident_counts(s),
                });
                match self.incidents.get(&id).filter(|i| i.country == code) {
                    Some(i) => {
                        // An incident without a location was never a marker (a location is
                        // never taken away); one past the first MAX_MARKERS is not shown.
                        let rank = i.location.map(|_| {
                            s.markers
                                .range(i.reported_at.saturating_add(1)..)
                                .take(MAX_MARKERS)
                                .count()
                        });
                        if let Some(rank) = rank.filter(|r| *r < MAX_MARKERS) {
                            ops.push(Op::Item {
                                path: part("markers"),
                                at: rank,
                                value: marker(&id, i, view),
                                limit: Some(MAX_MARKERS),
                            });
                        }
                    }
                    None => {
                        // Closed, or moved to another country.
                        ops.push(Op::Drop {
                            path: part("markers"),
                            id: id.to_string(),
                        });
                        // The marker that comes into view at the end of the list in its
                        // place (the same one again, harmlessly, if it was not shown).
                        let next = s
                            .markers
                            .values()
                            .rev()
                            .nth(MAX_MARKERS - 1)
                            .and_then(|m| Some((m, self.incidents.get(m)?)));
                        if let Some((m, i)) = next {
                            ops.push(Op::Item {
                                path: part("markers"),
                                at: MAX_MARKERS - 1,
                                value: marker(m, i, view),
                                limit: Some(MAX_MARKERS),
                            });
                        }
                    }
                }
            }
            Family::Level => {
                ops.push(Op::Set {
                    path: part("level"),
                    value: s.level.map_or(Value::Null, |l| l.get().into()),
                });
                if let Some(area) = &changes.area {
                    let at = path(["countries", key, "areas", area.as_str()]);
                    ops.push(match s.areas.get(area) {
                        Some(a) => Op::Set {
                            path: at,
                            value: area_json(a),
                        },
                        None => Op::Remove { path: at },
                    });
                }
            }
            Family::Hostage => ops.push(Op::Set {
                path: part("hostage"),
                value: self.hostage_json(s),
            }),
            Family::Surge => {
                let surge = self.surges.get(&id).filter(|x| x.country == code);
                let listed = surge.map(|x| (x.requested_pos, surge_json(&id, x)));
                ops.push(listed_op(part("surges"), &s.surges, id, listed));
            }
            Family::Order => {
                let order = self.orders.get(&id).filter(|o| o.country == code);
                let listed = order.map(|o| (o.ordered_pos, order_json(&id, o)));
                ops.push(listed_op(part("orders"), &s.orders, id, listed));
            }
            // Broadcasts have no country.
            Family::Broadcast => {}
        }
    }

    fn counters_json(&self) -> Value {
        Value::Object(
            counter_fields(&self.counters)
                .into_iter()
                .map(|(key, n)| (key.to_owned(), Value::from(n)))
                .collect(),
        )
    }

    /// A country's `hostage`: counts only, in every view (the persons' references are never
    /// looked at here).
    fn hostage_json(&self, s: &CountryState) -> Value {
        let cases = || {
            s.hostage_cases
                .values()
                .filter_map(|id| self.hostage.get(id))
        };
        let held_since: Vec<Value> = cases().map(|case| timestamp(case.opened_at)).collect();
        let by_case: Vec<Value> = cases()
            .map(|case| {
                object([
                    ("held_since", timestamp(case.opened_at)),
                    ("held", (case.held.len() as u64).into()),
                    ("released", case.released.into()),
                    ("deceased", case.deceased.into()),
                ])
            })
            .collect();
        let (released, deceased) = cases().fold((0u64, 0u64), |(r, d), c| {
            (r.saturating_add(c.released), d.saturating_add(c.deceased))
        });
        object([
            ("cases", s.hostage_cases.len().into()),
            ("persons_held", s.persons_held.into()),
            ("persons_released", released.into()),
            ("persons_deceased", deceased.into()),
            ("held_since", Value::Array(held_since)),
            ("by_case", Value::Array(by_case)),
        ])
    }

    fn country(&self, code: Country, s: &CountryState, view: View) -> Value {
        let areas: Map<String, Value> = s
            .areas
            .iter()
            .map(|(name, a)| (name.clone(), area_json(a)))
            .collect();
        let markers: Vec<Value> = s
            .markers
            .values()
            .rev()
            .filter_map(|id| Some((id, self.incidents.get(id)?)))
            .take(MAX_MARKERS)
            .map(|(id, incident)| marker(id, incident, view))
            .collect();
        let surges: Vec<Value> = s
            .surges
            .values()
            .rev()
            .filter_map(|id| Some((id, self.surges.get(id)?)))
            .map(|(id, surge)| surge_json(id, surge))
            .collect();
        let orders: Vec<Value> = s
            .orders
            .values()
            .rev()
            .filter_map(|id| Some((id, self.orders.get(id)?)))
            .map(|(id, o)| order_json(id, o))
            .collect();
        object([
            ("code", code.as_str().into()),
            ("level", s.level.map_or(Value::Null, |l| l.get().into())),
            ("areas", Value::Object(areas)),
            ("incidents", incident_counts(s)),
            ("markers", Value::Array(markers)),
            ("hostage", self.hostage_json(s)),
            ("surges", Value::Array(surges)),
            ("orders", Value::Array(orders)),
        ])
    }

    /// The listed broadcasts, newest first: what they are, where they stand, and counts. The
    /// duty view adds who issued and approved each.
    fn broadcasts_json(&self, view: View) -> Value {
        let latest = self
            .listed_broadcasts()
            .map(|(id, b)| broadcast(id, b, view));
        Value::Array(latest.collect())
    }

    /// The `broadcast_agencies` ops (duty view) for what the last event changed: only the
    /// agency it touched when it touched one.
    fn detail_ops(&self, detail: &Detail, ops: &mut Vec<Op>) {
        let path = |id: &uuid::Uuid, agency: Option<&str>| {
            let mut path = vec!["broadcast_agencies".to_owned(), id.to_string()];
            path.extend(agency.map(str::to_owned));
            path
        };
        match detail {
            Detail::None => {}
            Detail::Listed { added, dropped } => {
                if let Some(b) = self.broadcasts.get(added) {
                    ops.push(Op::Set {
                        path: path(added, None),
                        value: agencies_json(b),
                    });
                }
                if let Some(id) = dropped {
                    ops.push(Op::Remove {
                        path: path(id, None),
                    });
                }
            }
            Detail::Broadcast(id) => {
                if let Some(b) = self.broadcasts.get(id) {
                    ops.push(Op::Set {
                        path: path(id, None),
                        value: agencies_json(b),
                    });
                }
            }
            Detail::Agency(id, agency) => {
                let reach = self.broadcasts.get(id).and_then(|b| b.agencies.get(agency));
                if let Some(r) = reach {
                    ops.push(Op::Set {
                        path: path(id, Some(agency)),
                        value: reach_json(r),
                    });
                }
            }
        }
    }
}

/// The counters by their MODEL.md names, in MODEL.md's order.
fn counter_fields(c: &Counters) -> [(&'static str, u64); 12] {
    [
        ("open_incidents", c.open_incidents),
        ("unverified_incidents", c.unverified_incidents),
        ("casualties_killed", c.casualties_killed),
        ("casualties_injured", c.casualties_injured),
        ("countries_level_5_plus", c.countries_level_5_plus),
        ("hostage_cases", c.hostage_cases),
        ("persons_held", c.persons_held),
        ("active_surges", c.active_surges),
        ("active_orders", c.active_orders),
        ("broadcasts_awaiting_ack", c.broadcasts_awaiting_ack),
        (
            "broadcasts_awaiting_approval",
            c.broadcasts_awaiting_approval,
        ),
        ("broadcast_deliveries_failed", c.broadcast_deliveries_failed),
    ]
}

/// A country's `incidents`: its open incidents counted.
fn incident_counts(s: &CountryState) -> Value {
    let by_severity: Map<String, Value> = (1..=5)
        .zip(s.by_severity)
        .map(|(n, count)| (n.to_string(), Value::from(count)))
        .collect();
    object([
        ("open", s.open.into()),
        ("unverified", s.unverified.into()),
        ("by_severity", Value::Object(by_severity)),
    ])
}

/// One area of a country's `areas`.
fn area_json(a: &AreaLevel) -> Value {
    object([
        ("level", a.level.get().into()),
        ("name", a.level.name().into()),
        ("reason", a.reason.as_str().into()),
        ("set_at", timestamp(a.set_at)),
    ])
}

/// One active surge; counts only, no officer.
fn surge_json(id: &uuid::Uuid, surge: &Surge) -> Value {
    object([
        ("id", id.to_string().into()),
        ("duty_station", surge.duty_station.as_str().into()),
        ("status", surge_status_code(surge.status).into()),
        ("officers_needed", surge.officers_needed.into()),
        ("officers_assigned", surge.officers_assigned.into()),
        (
            "away_from",
            Value::Object(
                surge
                    .away_from
                    .iter()
                    .map(|(station, n)| (station.clone(), (*n).into()))
                    .collect(),
            ),
        ),
    ])
}

/// One active order and its roll call's counts (never a person).
fn order_json(id: &uuid::Uuid, o: &Order) -> Value {
    let total = o.total();
    let pct = if total == 0 {
        0.0
    } else {
        // One decimal: 31 of 40 is 77.5.
        (o.accounted as f64 * 1000.0 / total as f64).round() / 10.0
    };
    object([
        ("id", id.to_string().into()),
        ("kind", order_kind_code(o.kind).into()),
        ("scope", scope_code(o.scope).into()),
        ("area", text_or_null(o.area.as_deref())),
        ("duty_station", text_or_null(o.duty_station.as_deref())),
        ("destination", o.destination.as_str().into()),
        ("deadline", timestamp(o.deadline)),
        ("status", "active".into()),
        ("total", total.into()),
        ("accounted", o.accounted.into()),
        ("accounted_pct", pct.into()),
        ("missing", o.missing.into()),
        ("late_arrivals", (o.late.len() as u64).into()),
        ("left_area", (o.left.len() as u64).into()),
    ])
}

/// One listed broadcast; who issued and approved it for the duty view only.
fn broadcast(id: &uuid::Uuid, b: &Broadcast, view: View) -> Value {
    let status = match b.status() {
        BroadcastStatus::AwaitingApproval => "awaiting_approval",
        BroadcastStatus::Live => "live",
        BroadcastStatus::Cancelled => "cancelled",
    };
    let mut m = Map::new();
    let mut put = |key: &str, value: Value| {
        m.insert(key.to_owned(), value);
    };
    put("id", id.to_string().into());
    put("title", b.title.as_str().into());
    put(
        "severity",
        Urgency::of_broadcast(b.severity).as_str().into(),
    );
    put("exercise", b.exercise.into());
    put("issued_at", timestamp(b.issued_at));
    put("status", status.into());
    put("internal", b.internal.into());
    put("rule", text_or_null(b.rule.as_deref()));
    put("requires_ack", b.requires_ack.into());
    put(
        "ack_deadline",
        b.ack_deadline.map_or(Value::Null, timestamp),
    );
    put("total", b.total().into());
    put("sent", b.sent.into());
    put("delivered", b.delivered.into());
    put("acked", b.acked.into());
    put("failed", b.failed.into());
    put("resent", b.resent.into());
    put("escalated", (b.escalations > 0).into());
    put("escalations", b.escalations.into());
    put("suppressed", b.suppressed.into());
    if view == View::Duty {
        put("issued_by", text_or_null(b.issued_by.as_deref()));
        let (by, at) = b
            .approved
            .as_ref()
            .map_or((Value::Null, Value::Null), |(by, at)| {
                (by.as_str().into(), timestamp(*at))
            });
        put("approved_by", by);
        put("approved_at", at);
    }
    Value::Object(m)
}

/// A broadcast's agencies (at most `MAX_AGENCIES`, by id), each with [`reach_json`].
fn agencies_json(b: &Broadcast) -> Value {
    Value::Object(
        b.agencies
            .iter()
            .map(|(agency, r)| (agency.clone(), reach_json(r)))
            .collect(),
    )
}

/// One agency of a broadcast.
fn reach_json(r: &Reach) -> Value {
    object([
        ("sent", r.sent.into()),
        ("delivered", r.delivered.into()),
        ("acknowledged", r.acknowledged().into()),
        (
            "ack_seconds",
            r.ack_seconds.map_or(Value::Null, Value::from),
        ),
        ("failed", r.failed().into()),
        ("resent", r.resent.into()),
    ])
}

/// A map marker for an open incident with a location; reporter and description for duty only.
fn marker(id: &uuid::Uuid, i: &Incident, view: View) -> Value {
    let (lat, lon) = i.location.map_or((Value::Null, Value::Null), |l| {
        (Value::from(l.lat), Value::from(l.lon))
    });
    let mut m = Map::new();
    m.insert("id".to_owned(), Value::from(id.to_string()));
    m.insert("lat".to_owned(), lat);
    m.insert("lon".to_owned(), lon);
    m.insert("severity".to_owned(), Value::from(i.severity.get()));
    m.insert(
        "category".to_owned(),
        Value::from(category_code(i.category)),
    );
    m.insert("title".to_owned(), Value::from(i.title.as_str()));
    m.insert("verified".to_owned(), Value::from(i.verified));
    m.insert("occurred_at".to_owned(), timestamp(i.occurred_at));
    if view == View::Duty {
        m.insert("reporter".to_owned(), Value::from(i.reporter.as_str()));
        m.insert(
            "description".to_owned(),
            text_or_null(i.description.as_deref()),
        );
    }
    Value::Object(m)
}

fn timeline_item(item: &TimelineItem) -> Value {
    object([
        ("position", item.position.into()),
        ("at", timestamp(item.at)),
        (
            "country",
            item.country.map_or(Value::Null, |c| c.as_str().into()),
        ),
        ("kind", item.kind.as_str().into()),
        ("severity", item.severity.as_str().into()),
        ("text", item.text.as_str().into()),
    ])
}
