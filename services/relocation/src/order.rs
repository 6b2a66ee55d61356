//! The relocation/evacuation order aggregate and the headcount it starts from. Pure: no I/O,
//! no clock (the date and "now" are passed in).
//!
//! # The roll call
//! When an order is given, its roll call is computed once from what the centre knows
//! ([`Reference`], folded from the log):
//! - the personnel assigned to a duty station inside the order's place (the station itself
//!   for a station order; every station of the area for an area order; every station of the
//!   country otherwise), and
//! - the travellers present there on the order's date by the clearance rule
//!   ([`events::domain::clearance::Travel::present`]; a station order counts travellers in
//!   the station's area),
//!
//! each once, filtered by the order's scope (`all_personnel`; `non_essential`: not
//! essential; `dependants`: those with dependants). People not in the reference (a traveller
//! whose personnel record is missing) are kept: someone is there.
//!
//! # Life of an order
//! ordered → people marked (safe, relocated, injured, missing; a later mark replaces an
//! earlier one) → completed or rescinded. Nothing changes after that. People missing (or not
//! yet marked) after the deadline are the order's *findings*.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use events::RecordedEvent;
use events::codec::Decoded;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::clearance::Travel;
use events::domain::person::PersonRegistered;
use events::domain::relocation::{
    OrderCompleted, OrderRescinded, PersonMarked, PersonStatus, RelocationOrdered,
    RollCallEntryAdded, Scope,
};
use events::domain::station::DutyStationRegistered;
use events::validate::Country;
use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

/// Most people marked in one command (one append).
pub const MAX_MARK_MANY: usize = 499;

/// What the centre knows about people and places: personnel, duty stations, clearances.
#[derive(Debug, Default, Clone)]
pub struct Reference {
    /// Personnel by id (latest registration).
    pub persons: HashMap<String, PersonRegistered>,
    /// Duty stations by id (latest registration).
    pub stations: HashMap<String, DutyStationRegistered>,
    /// Clearances by stream id.
    pub clearances: HashMap<Uuid, Option<Travel>>,
}

impl Reference {
    /// Applies one event of the log (reference data and clearances; others are ignored).
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        let category = recorded.stream.category().as_str();
        if !matches!(category, "person" | "station" | "clearance") {
            return;
        }
        let Decoded::Known(event) = DomainEvent::decode(recorded) else {
            return;
        };
        match event {
            DomainEvent::PersonRegistered(p) => {
                self.persons.insert(p.person.clone(), p);
            }
            DomainEvent::DutyStationRegistered(s) => {
                self.stations.insert(s.station.clone(), s);
            }
            other => Travel::apply(
                self.clearances.entry(recorded.stream.id()).or_default(),
                &other,
            ),
        }
    }

    /// The roll call of `order` given on `on`: see the module doc.
    pub fn roll_call(&self, order: &RelocationOrdered, on: Date) -> Vec<RollCallEntryAdded> {
        let station_area = order
            .duty_station
            .as_deref()
            .and_then(|s| self.stations.get(s))
            .map(|s| s.area.as_str());
        let in_place = |station: &DutyStationRegistered| {
            station.country == order.country
                && match (&order.duty_station, &order.area) {
                    (Some(ds), _) => &station.station == ds,
                    (None, Some(area)) => &station.area == area,
                    (None, None) => true,
                }
        };
        let mut people: BTreeSet<&str> = self
            .persons
            .values()
            .filter(|p| self.stations.get(&p.duty_station).is_some_and(in_place))
            .map(|p| p.person.as_str())
            .collect();
        let travel_area = order.area.as_deref().or(station_area);
        let travellers = self
            .clearances
            .values()
            .flatten()
            .filter(|t| t.present(order.country, travel_area, on))
            .map(|t| t.traveller.as_str());
        people.extend(travellers);
        people
            .into_iter()
            .filter_map(|id| {
                let p = self.persons.get(id);
                let keep = match order.scope {
                    Scope::AllPersonnel => true,
                    Scope::NonEssential => p.is_none_or(|p| !p.essential),
                    Scope::Dependants => p.is_some_and(|p| p.dependants > 0),
                };
                keep.then(|| RollCallEntryAdded {
                    person: id.to_owned(),
                    agency: p.map(|p| p.agency.clone()),
                    duty_station: p.map(|p| p.duty_station.clone()),
                    dependants: p.map_or(0, |p| p.dependants),
                })
            })
            .collect()
    }

    /// A person's name, for the duty views of a roll call.
    pub fn name(&self, person: &str) -> Option<&str> {
        self.persons.get(person).map(|p| p.name.as_str())
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Given; people are being accounted for.
    Active,
    /// Done.
    Completed,
    /// Withdrawn.
    Rescinded,
}

/// One person on the roll call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The roll-call entry.
    #[serde(flatten)]
    pub entry: RollCallEntryAdded,
    /// The latest mark, if any.
    pub status: Option<PersonStatus>,
    /// Who marked them last.
    pub marked_by: Option<String>,
    /// The log position of the latest mark.
    pub marked_at_position: Option<u64>,
}

/// An order as its stream tells it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order's id (its stream is `relocation-<id>`).
    pub id: Uuid,
    /// What was ordered.
    pub ordered: RelocationOrdered,
    /// Where it is in its life.
    pub status: Status,
    /// The roll call, by person.
    pub roll_call: BTreeMap<String, Entry>,
    /// Log position of the order.
    pub position: u64,
    /// When it was given.
    #[serde(with = "time::serde::rfc3339")]
    pub ordered_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

/// Counts of a roll call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// People on the roll call.
    pub total: usize,
    /// Latest mark safe, relocated or injured.
    pub accounted: usize,
    /// Latest mark missing.
    pub missing: usize,
    /// Not marked yet.
    pub unmarked: usize,
    /// accounted / total × 100 (100 for an empty roll call).
    pub accounted_pct: f64,
}

impl Order {
    /// Folds an order's stream; `None` when it holds no order.
    pub fn fold(events: &[RecordedEvent]) -> Option<Order> {
        let mut state = None;
        for e in events {
            apply(&mut state, e);
        }
        state
    }

    /// The counts the board shows.
    pub fn tally(&self) -> Tally {
        let total = self.roll_call.len();
        let by = |f: fn(Option<PersonStatus>) -> bool| {
            self.roll_call.values().filter(|e| f(e.status)).count()
        };
        let accounted = by(|s| {
            matches!(
                s,
                Some(PersonStatus::Safe | PersonStatus::Relocated | PersonStatus::Injured)
            )
        });
        let missing = by(|s| s == Some(PersonStatus::Missing));
        Tally {
            total,
            accounted,
            missing,
            unmarked: by(|s| s.is_none()),
            accounted_pct: if total == 0 {
                100.0
            } else {
                accounted as f64 * 100.0 / total as f64
            },
        }
    }

    /// People missing or not yet marked after the deadline (empty before it, or once the
    /// order is closed).
    pub fn findings(&self, now: OffsetDateTime) -> Vec<&str> {
        if self.status != Status::Active || now <= self.ordered.deadline {
            return vec![];
        }
        self.roll_call
            .values()
            .filter(|e| matches!(e.status, None | Some(PersonStatus::Missing)))
            .map(|e| e.entry.person.as_str())
            .collect()
    }
}

/// Applies one recorded event of the order's stream.
pub fn apply(state: &mut Option<Order>, recorded: &RecordedEvent) {
    let Decoded::Known(event) = DomainEvent::decode(recorded) else {
        if let Some(o) = state.as_mut() {
            o.version = recorded.version;
        }
        return;
    };
    if let DomainEvent::RelocationOrdered(ordered) = event {
        if state.is_none() {
            *state = Some(Order {
                id: recorded.stream.id(),
                ordered,
                status: Status::Active,
                roll_call: BTreeMap::new(),
                position: recorded.position,
                ordered_at: recorded.recorded_at,
                version: recorded.version,
            });
        }
        return;
    }
    let Some(o) = state.as_mut() else { return };
    o.version = recorded.version;
    match event {
        DomainEvent::RollCallEntryAdded(entry) => {
            o.roll_call.entry(entry.person.clone()).or_insert(Entry {
                entry,
                status: None,
                marked_by: None,
                marked_at_position: None,
            });
        }
        DomainEvent::PersonMarked(m) => {
            if let Some(e) = o.roll_call.get_mut(&m.person) {
                e.status = Some(m.status);
                e.marked_by = Some(m.by);
                e.marked_at_position = Some(recorded.position);
            }
        }
        DomainEvent::OrderCompleted(_) => o.status = Status::Completed,
        DomainEvent::OrderRescinded(_) => o.status = Status::Rescinded,
        _ => {}
    }
}

/// Body of `mark`: one person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mark {
    /// The person.
    pub person: String,
    /// Their status.
    pub status: PersonStatus,
    /// Details.
    #[serde(default)]
    pub note: Option<String>,
}

/// Body of `mark_many`: several people, one status (the console's bulk mark).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarkMany {
    /// The people, 1 to [`MAX_MARK_MANY`].
    pub persons: Vec<String>,
    /// Their status.
    pub status: PersonStatus,
    /// Details.
    #[serde(default)]
    pub note: Option<String>,
}

/// A command on an existing order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Mark one person.
    Mark(Mark),
    /// Mark several.
    MarkMany(MarkMany),
    /// Everyone is accounted for.
    Complete(OrderCompleted),
    /// Withdrawn.
    Rescind(OrderRescinded),
}

/// Reads the body of command `name`.
pub fn parse(name: &str, body: serde_json::Value) -> Result<OrderCommand, Refusal> {
    fn read<T: serde::de::DeserializeOwned>(b: serde_json::Value) -> Result<T, Refusal> {
        events::codec::from_value(b).map_err(Refusal::invalid)
    }
    Ok(match name {
        "mark" => OrderCommand::Mark(read(body)?),
        "mark_many" => OrderCommand::MarkMany(read(body)?),
        "complete" => OrderCommand::Complete(read(body)?),
        "rescind" => OrderCommand::Rescind(read(body)?),
        other => {
            return Err(Refusal::invalid(format!(
                "unknown order command {:?}",
                other.chars().take(32).collect::<String>()
            )));
        }
    })
}

fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!("no order {id} that you can see; check the id"))
}

/// Whether `actor` may see `order`.
pub fn visible(actor: &Actor, order: &Order) -> bool {
    actor.may(policy::ORDER_READ, "read orders").is_ok() && actor.covers(order.ordered.country)
}

/// Decides a new order: the events to append (the order, then its roll call).
pub fn decide_order(
    existing: Option<&Order>,
    actor: &Actor,
    ordered: RelocationOrdered,
    roll_call: Vec<RollCallEntryAdded>,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::ORDER_ISSUE, "give relocation or evacuation orders")?;
    if existing.is_some() {
        return Err(Refusal::conflict(
            "this order already exists; give a new order with a new id",
        ));
    }
    let mut events: Vec<DomainEvent> = vec![ordered.into()];
    events.extend(roll_call.into_iter().map(DomainEvent::from));
    for e in &events {
        e.validate()?;
    }
    Ok(events)
}

/// Decides a command on order `id` in `state`.
pub fn decide(
    id: Uuid,
    state: Option<&Order>,
    actor: &Actor,
    command: OrderCommand,
) -> Result<Vec<DomainEvent>, Refusal> {
    let order = state
        .filter(|o| actor.covers(o.ordered.country))
        .ok_or_else(|| not_found(id))?;
    let roles = match command {
        OrderCommand::Mark(_) | OrderCommand::MarkMany(_) => policy::ORDER_MARK,
        OrderCommand::Complete(_) | OrderCommand::Rescind(_) => policy::ORDER_ISSUE,
    };
    actor.may(roles, "do this to an order")?;
    if order.status != Status::Active {
        return Err(Refusal::conflict(format!(
            "order {id} is {}; nothing can change on it now",
            match order.status {
                Status::Completed => "completed",
                _ => "rescinded",
            }
        )));
    }
    let marked = |person: &str, status, note: &Option<String>| -> Result<DomainEvent, Refusal> {
        let entry = order.roll_call.get(person).ok_or_else(|| {
            Refusal::not_found(format!(
                "{:?} is not on this order's roll call; check the person's id",
                person.chars().take(64).collect::<String>()
            ))
        })?;
        if entry.status == Some(status) {
            return Err(Refusal::conflict(format!(
                "{person} is already marked {}",
                status_name(status)
            )));
        }
        Ok(PersonMarked {
            person: person.to_owned(),
            status,
            by: actor.user.clone(),
            note: note.clone(),
        }
        .into())
    };
    let events: Vec<DomainEvent> = match command {
        OrderCommand::Mark(m) => vec![marked(&m.person, m.status, &m.note)?],
        OrderCommand::MarkMany(m) => {
            if m.persons.is_empty() || m.persons.len() > MAX_MARK_MANY {
                return Err(Refusal::invalid(format!(
                    "persons: 1 to {MAX_MARK_MANY} people at a time"
                )));
            }
            let unique: BTreeSet<&String> = m.persons.iter().collect();
            if unique.len() != m.persons.len() {
                return Err(Refusal::invalid("persons: each person once"));
            }
            // Already-marked people are skipped, not refused: a bulk mark after a partial one
            // is the normal case in a busy console.
            let events: Vec<DomainEvent> = m
                .persons
                .iter()
                .map(|p| marked(p, m.status, &m.note))
                .filter(
                    |r| !matches!(r, Err(e) if e.code == events::command::RefusalCode::Conflict),
                )
                .collect::<Result<_, _>>()?;
            if events.is_empty() {
                return Err(Refusal::conflict(format!(
                    "everyone listed is already marked {}",
                    status_name(m.status)
                )));
            }
            events
        }
        OrderCommand::Complete(c) => vec![c.into()],
        OrderCommand::Rescind(r) => vec![r.into()],
    };
    for e in &events {
        e.validate()?;
    }
    Ok(events)
}

fn status_name(s: PersonStatus) -> &'static str {
    match s {
        PersonStatus::Safe => "safe",
        PersonStatus::Relocated => "relocated",
        PersonStatus::Missing => "missing",
        PersonStatus::Injured => "injured",
    }
}

/// Filters of a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// `active`, `completed` or `rescinded`.
    #[serde(default)]
    pub status: Option<Status>,
    /// At most this many (1 to 500, default 100).
    #[serde(default)]
    pub limit: Option<usize>,
    /// After this one: the `next` of the previous page (see [`events::page`]).
    #[serde(default)]
    pub cursor: Option<events::page::Cursor>,
}

#[cfg(test)]
mod tests {
    //! Given the events of an order's stream (and what the centre knows), when a command
    //! arrives, then these events or this refusal.
    use super::*;
    use events::command::{RefusalCode, Role};
    use events::domain::clearance::{ClearanceApproved, ClearanceRequested, Leg};
    use events::domain::relocation::OrderKind;
    use events::{Meta, StreamName};
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::{date, datetime};

    const ID: Uuid = Uuid::from_u128(0x5eed);

    fn so() -> Country {
        Country::parse("SO").unwrap()
    }

    fn actor(role: Role, scope: Option<&str>) -> Actor {
        Actor {
            user: format!("{}.user", role.as_str()),
            role,
            scope: scope.map(|s| Country::parse(s).unwrap()),
            agency: None,
        }
    }

    fn duty() -> Actor {
        actor(Role::DutyOfficer, None)
    }

    fn record(stream: &StreamName, events: Vec<DomainEvent>, from: u64) -> Vec<RecordedEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let n = from + i as u64;
                RecordedEvent::record(
                    e.to_new_event(Uuid::new_v4(), Meta::default()),
                    stream.clone(),
                    n,
                    n,
                    datetime!(2026-11-27 06:00 UTC),
                )
            })
            .collect()
    }

    fn ordered(area: Option<&str>, scope: Scope) -> RelocationOrdered {
        RelocationOrdered {
            kind: OrderKind::Evacuation,
            country: so(),
            area: area.map(Into::into),
            duty_station: None,
            scope,
            destination: "Nairobi".into(),
            deadline: datetime!(2026-11-28 18:00 UTC),
        }
    }

    fn person(id: &str, station: &str, dependants: u16, essential: bool) -> PersonRegistered {
        PersonRegistered {
            person: id.into(),
            name: format!("Name of {id}"),
            agency: "unicef".into(),
            nationality: Country::parse("KE").unwrap(),
            duty_station: station.into(),
            dependants,
            security_officer: false,
            essential,
        }
    }

    fn station(id: &str, area: &str) -> DutyStationRegistered {
        DutyStationRegistered {
            station: id.into(),
            country: so(),
            area: area.into(),
            name: id.into(),
            lat: 2.0,
            lon: 45.0,
        }
    }

    /// A centre with two stations in two areas, three people, one approved traveller.
    fn reference() -> Reference {
        let mut r = Reference::default();
        let mut pos = 0;
        let mut feed = |stream: StreamName, e: DomainEvent, r: &mut Reference| {
            pos += 1;
            r.apply(&record(&stream, vec![e], pos)[0]);
        };
        use events::domain::{person as p, station as s};
        feed(s::stream_for("MGQ"), station("MGQ", "BAN").into(), &mut r);
        feed(s::stream_for("BAI"), station("BAI", "BAY").into(), &mut r);
        feed(
            p::stream_for("P1"),
            person("P1", "MGQ", 2, false).into(),
            &mut r,
        );
        feed(
            p::stream_for("P2"),
            person("P2", "MGQ", 0, true).into(),
            &mut r,
        );
        feed(
            p::stream_for("P3"),
            person("P3", "BAI", 1, false).into(),
            &mut r,
        );
        let c = events::domain::clearance::stream_for(Uuid::from_u128(1));
        let req = ClearanceRequested {
            traveller: "T1".into(),
            itinerary: vec![Leg {
                country: so(),
                area: Some("BAN".into()),
                from: date!(2026 - 11 - 20),
                to: date!(2026 - 11 - 30),
            }],
            purpose: None,
        };
        feed(c.clone(), req.into(), &mut r);
        feed(c, ClearanceApproved { by: "d".into() }.into(), &mut r);
        r
    }

    fn people(entries: &[RollCallEntryAdded]) -> Vec<&str> {
        entries.iter().map(|e| e.person.as_str()).collect()
    }

    #[test]
    fn the_roll_call_is_who_is_assigned_or_cleared_there_by_scope() {
        let r = reference();
        let on = date!(2026 - 11 - 27);
        assert_eq!(
            people(&r.roll_call(&ordered(Some("BAN"), Scope::AllPersonnel), on)),
            ["P1", "P2", "T1"]
        );
        assert_eq!(
            people(&r.roll_call(&ordered(Some("BAN"), Scope::NonEssential), on)),
            ["P1", "T1"],
            "P2 is essential; the unknown traveller is kept"
        );
        assert_eq!(
            people(&r.roll_call(&ordered(Some("BAN"), Scope::Dependants), on)),
            ["P1"]
        );
        assert_eq!(
            people(&r.roll_call(&ordered(None, Scope::AllPersonnel), on)),
            ["P1", "P2", "P3", "T1"]
        );
        assert_eq!(
            people(&r.roll_call(
                &ordered(Some("BAN"), Scope::AllPersonnel),
                date!(2026 - 12 - 05)
            )),
            ["P1", "P2"],
            "the traveller's leg is over"
        );
        let mut at_station = ordered(None, Scope::AllPersonnel);
        at_station.duty_station = Some("BAI".into());
        assert_eq!(people(&r.roll_call(&at_station, on)), ["P3"]);
        let entry = &r.roll_call(&ordered(Some("BAN"), Scope::AllPersonnel), on)[0];
        assert_eq!(
            (entry.agency.as_deref(), entry.dependants),
            (Some("unicef"), 2)
        );
    }

    fn given_order() -> Vec<RecordedEvent> {
        let r = reference();
        let o = ordered(Some("BAN"), Scope::AllPersonnel);
        let roll = r.roll_call(&o, date!(2026 - 11 - 27));
        let events = decide_order(None, &duty(), o, roll).unwrap();
        record(&relocation_stream(), events, 1)
    }

    fn relocation_stream() -> StreamName {
        events::domain::relocation::stream_for(ID)
    }

    fn when(
        history: &[RecordedEvent],
        who: &Actor,
        name: &str,
        body: serde_json::Value,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        decide(ID, Order::fold(history).as_ref(), who, parse(name, body)?)
    }

    #[test]
    fn the_life_of_an_order() {
        let mut history = given_order();
        let o = Order::fold(&history).unwrap();
        assert_eq!(o.tally().total, 3);
        assert_eq!(o.tally().accounted_pct, 0.0);
        let fso = actor(Role::FieldOfficer, Some("SO"));
        let marked = when(
            &history,
            &fso,
            "mark",
            json!({"person": "P1", "status": "safe"}),
        )
        .unwrap();
        history.extend(record(
            &relocation_stream(),
            marked,
            history.len() as u64 + 1,
        ));
        assert_eq!(
            when(
                &history,
                &fso,
                "mark",
                json!({"person": "P1", "status": "safe"})
            )
            .unwrap_err()
            .code,
            RefusalCode::Conflict,
            "already safe"
        );
        let many = when(
            &history,
            &duty(),
            "mark_many",
            json!({"persons": ["P1", "P2", "T1"], "status": "safe"}),
        )
        .unwrap();
        assert_eq!(many.len(), 2, "P1 is skipped: already safe");
        history.extend(record(&relocation_stream(), many, history.len() as u64 + 1));
        let o = Order::fold(&history).unwrap();
        assert_eq!((o.tally().accounted, o.tally().accounted_pct), (3, 100.0));
        assert_eq!(
            o.roll_call["P1"].marked_by.as_deref(),
            Some("field_officer.user")
        );
        assert_eq!(
            when(&history, &fso, "complete", json!({}))
                .unwrap_err()
                .code,
            RefusalCode::Forbidden,
            "a field officer marks but does not complete"
        );
        let done = when(&history, &duty(), "complete", json!({"note": "all out"})).unwrap();
        history.extend(record(&relocation_stream(), done, history.len() as u64 + 1));
        assert_eq!(Order::fold(&history).unwrap().status, Status::Completed);
        for (name, body) in [
            ("mark", json!({"person": "P1", "status": "missing"})),
            ("rescind", json!({"reason": "late"})),
            ("complete", json!({})),
        ] {
            assert_eq!(
                when(&history, &duty(), name, body).unwrap_err().code,
                RefusalCode::Conflict,
                "{name}"
            );
        }
    }

    #[test]
    fn refusals_and_findings() {
        let history = given_order();
        let ke = actor(Role::FieldOfficer, Some("KE"));
        let code = |r: Result<Vec<DomainEvent>, Refusal>| r.unwrap_err().code;
        assert_eq!(
            code(when(
                &history,
                &ke,
                "mark",
                json!({"person": "P1", "status": "safe"})
            )),
            RefusalCode::NotFound
        );
        assert_eq!(
            code(when(
                &history,
                &duty(),
                "mark",
                json!({"person": "P9", "status": "safe"})
            )),
            RefusalCode::NotFound
        );
        assert_eq!(
            code(when(
                &history,
                &duty(),
                "mark",
                json!({"person": "P1", "status": "fine"})
            )),
            RefusalCode::Invalid
        );
        assert_eq!(
            code(when(
                &history,
                &duty(),
                "mark_many",
                json!({"persons": [], "status": "safe"})
            )),
            RefusalCode::Invalid
        );
        assert_eq!(
            code(when(
                &history,
                &duty(),
                "mark_many",
                json!({"persons": ["P1", "P1"], "status": "safe"})
            )),
            RefusalCode::Invalid
        );
        assert_eq!(
            code(when(&[], &duty(), "rescind", json!({"reason": "r"}))),
            RefusalCode::NotFound
        );
        assert_eq!(
            code(when(
                &history,
                &actor(Role::WallScreen, None),
                "mark",
                json!({"person": "P1", "status": "safe"})
            )),
            RefusalCode::Forbidden
        );
        assert_eq!(
            decide_order(
                Order::fold(&history).as_ref(),
                &duty(),
                ordered(None, Scope::AllPersonnel),
                vec![]
            )
            .unwrap_err()
            .code,
            RefusalCode::Conflict
        );
        assert_eq!(
            decide_order(
                None,
                &actor(Role::AgencyFocalPoint, None),
                ordered(None, Scope::AllPersonnel),
                vec![]
            )
            .unwrap_err()
            .code,
            RefusalCode::Forbidden
        );
        let o = Order::fold(&history).unwrap();
        assert!(
            o.findings(datetime!(2026-11-28 12:00 UTC)).is_empty(),
            "before the deadline"
        );
        assert_eq!(
            o.findings(datetime!(2026-11-29 00:00 UTC)),
            ["P1", "P2", "T1"]
        );
        assert!(!visible(&ke, &o));
        assert!(visible(&actor(Role::FieldOfficer, Some("SO")), &o));
    }

    proptest! {
        /// The headcount against a plain model written from the facts, not from the register:
        /// people assigned to a station in the area, plus approved travellers with a leg in
        /// the country (the area, or no area) covering the date.
        #[test]
        fn the_roll_call_matches_a_plain_model(
            persons in proptest::collection::vec((0usize..4, 0u16..3, proptest::bool::ANY), 0..12),
            travels in proptest::collection::vec((0usize..12, proptest::bool::ANY, proptest::option::of(0usize..2), 0i64..10, 0i64..10), 0..8),
            asked_area in proptest::option::of(0usize..2),
            day in 0i64..20,
        ) {
            let areas = ["BAN", "BAY"];
            let stations = [("S0", "BAN"), ("S1", "BAN"), ("S2", "BAY"), ("S3", "BAY")];
            let start = date!(2026 - 11 - 01);
            let on = start + time::Duration::days(day);
            let mut r = Reference::default();
            let mut pos = 0u64;
            let mut feed = |stream: StreamName, e: DomainEvent, r: &mut Reference| {
                pos += 1;
                r.apply(&record(&stream, vec![e], pos)[0]);
            };
            for (id, area) in stations {
                feed(events::domain::station::stream_for(id), station(id, area).into(), &mut r);
            }
            for (i, (s, deps, essential)) in persons.iter().enumerate() {
                let id = format!("P{i}");
                feed(events::domain::person::stream_for(&id), person(&id, stations[*s].0, *deps, *essential).into(), &mut r);
            }
            for (i, (who, approved, leg_area, from, len)) in travels.iter().enumerate() {
                let c = events::domain::clearance::stream_for(Uuid::from_u128(1000 + i as u128));
                let req = ClearanceRequested {
                    traveller: format!("P{who}"),
                    itinerary: vec![Leg {
                        country: so(),
                        area: leg_area.map(|a| areas[a].to_owned()),
                        from: start + time::Duration::days(*from),
                        to: start + time::Duration::days(from + len),
                    }],
                    purpose: None,
                };
                feed(c.clone(), req.into(), &mut r);
                if *approved {
                    feed(c, ClearanceApproved { by: "d".into() }.into(), &mut r);
                }
            }
            let area = asked_area.map(|a| areas[a]);
            let mut model = BTreeSet::new();
            for (i, (s, _, _)) in persons.iter().enumerate() {
                if area.is_none_or(|a| stations[*s].1 == a) {
                    model.insert(format!("P{i}"));
                }
            }
            for (who, approved, leg_area, from, len) in &travels {
                let leg_from = start + time::Duration::days(*from);
                let leg_to = start + time::Duration::days(from + len);
                let area_ok = area.is_none() || leg_area.is_none() || leg_area.map(|a| areas[a]) == area;
                if *approved && area_ok && leg_from <= on && on <= leg_to {
                    model.insert(format!("P{who}"));
                }
            }
            let got: BTreeSet<String> = r
                .roll_call(&ordered(area, Scope::AllPersonnel), on)
                .into_iter()
                .map(|e| e.person)
                .collect();
            prop_assert_eq!(got, model);
        }
    }
}
