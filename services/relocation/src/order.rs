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
//! # Late arrivals and people who leave
//! While the order is active, the roll call follows who is there by the same rule
//! ([`Tracker`]): someone who comes into the place afterwards (a clearance approved or an
//! arrival recorded, a new person or a new duty station there) is added as a *late arrival*
//! (`PersonArrivedInArea`); someone on it who is no longer covered (a departure, a refusal,
//! assigned elsewhere) is marked *left the area* (`PersonLeftArea`) and stays on it; coming
//! back clears the mark. Each change is an event of the order's stream under an id derived
//! from the order, the trigger and the person, so replays and restarts store it once.
//!
//! # Life of an order
//! ordered → people marked (safe, relocated, injured, missing; a later mark replaces an
//! earlier one), arrivals and departures → completed or rescinded. Nothing changes after
//! that (a presence event stored after the close is ignored). People missing (or not yet
//! marked and still in the area) after the deadline are the order's *findings*.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use events::RecordedEvent;
use events::codec::Decoded;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::clearance::Travel;
use events::domain::person::PersonRegistered;
use events::domain::relocation::{
    OrderCompleted, OrderRescinded, PersonArrivedInArea, PersonLeftArea, PersonMarked,
    PersonStatus, PresenceCause, RelocationOrdered, RollCallEntryAdded, Scope,
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
    /// Clearance stream ids by traveller: one person's presence is checked without a scan.
    pub by_traveller: HashMap<String, BTreeSet<Uuid>>,
}

impl Reference {
    /// Applies one event of the log (reference data and clearances; others are ignored).
    /// Returns the person whose presence somewhere may have changed, and how: a personnel
    /// record (a new person or a new duty station) or one of their clearances.
    pub fn apply(&mut self, recorded: &RecordedEvent) -> Option<(String, PresenceCause)> {
        let category = recorded.stream.category().as_str();
        if !matches!(category, "person" | "station" | "clearance") {
            return None;
        }
        let Decoded::Known(event) = DomainEvent::decode(recorded) else {
            return None;
        };
        match event {
            DomainEvent::PersonRegistered(p) => {
                let person = p.person.clone();
                self.persons.insert(person.clone(), p);
                Some((person, PresenceCause::Assignment))
            }
            DomainEvent::DutyStationRegistered(s) => {
                self.stations.insert(s.station.clone(), s);
                None
            }
            other => {
                let id = recorded.stream.id();
                let travel = self.clearances.entry(id).or_default();
                Travel::apply(travel, &other);
                let traveller = travel.as_ref()?.traveller.clone();
                self.by_traveller
                    .entry(traveller.clone())
                    .or_default()
                    .insert(id);
                Some((traveller, PresenceCause::Clearance))
            }
        }
    }

    /// Whether a duty station is inside the order's place.
    fn station_in_place(order: &RelocationOrdered, station: &DutyStationRegistered) -> bool {
        station.country == order.country
            && match (&order.duty_station, &order.area) {
                (Some(ds), _) => &station.station == ds,
                (None, Some(area)) => &station.area == area,
                (None, None) => true,
            }
    }

    /// The area travellers are counted in: the order's, or its station's.
    fn travel_area<'a>(&'a self, order: &'a RelocationOrdered) -> Option<&'a str> {
        order.area.as_deref().or_else(|| {
            order
                .duty_station
                .as_deref()
                .and_then(|s| self.stations.get(s))
                .map(|s| s.area.as_str())
        })
    }

    /// Whether the order's scope takes this person (unknown people are kept: someone is there).
    fn in_scope(order: &RelocationOrdered, person: Option<&PersonRegistered>) -> bool {
        match order.scope {
            Scope::AllPersonnel => true,
            Scope::NonEssential => person.is_none_or(|p| !p.essential),
            Scope::Dependants => person.is_some_and(|p| p.dependants > 0),
        }
    }

    /// The roll-call entry of `person`, from their personnel record if there is one.
    fn entry(&self, person: &str) -> RollCallEntryAdded {
        let p = self.persons.get(person);
        RollCallEntryAdded {
            person: person.to_owned(),
            agency: p.map(|p| p.agency.clone()),
            duty_station: p.map(|p| p.duty_station.clone()),
            dependants: p.map_or(0, |p| p.dependants),
        }
    }

    /// The roll call of `order` given on `on`: see the module doc.
    pub fn roll_call(&self, order: &RelocationOrdered, on: Date) -> Vec<RollCallEntryAdded> {
        let mut people: BTreeSet<&str> = self
            .persons
            .values()
            .filter(|p| {
                self.stations
                    .get(&p.duty_station)
                    .is_some_and(|s| Self::station_in_place(order, s))
            })
            .map(|p| p.person.as_str())
            .collect();
        let travel_area = self.travel_area(order);
        let travellers = self
            .clearances
            .values()
            .flatten()
            .filter(|t| t.present(order.country, travel_area, on))
            .map(|t| t.traveller.as_str());
        people.extend(travellers);
        people
            .into_iter()
            .filter(|id| Self::in_scope(order, self.persons.get(*id)))
            .map(|id| self.entry(id))
            .collect()
    }

    /// Whether `person` belongs on the roll call of `order` on `on`: the same rule as
    /// [`Reference::roll_call`], for one person.
    pub fn covers(&self, order: &RelocationOrdered, person: &str, on: Date) -> bool {
        let p = self.persons.get(person);
        let assigned = p.is_some_and(|p| {
            self.stations
                .get(&p.duty_station)
                .is_some_and(|s| Self::station_in_place(order, s))
        });
        let travel_area = self.travel_area(order);
        let travelling = || {
            self.by_traveller
                .get(person)
                .into_iter()
                .flatten()
                .filter_map(|c| self.clearances.get(c)?.as_ref())
                .any(|t| t.present(order.country, travel_area, on))
        };
        (assigned || travelling()) && Self::in_scope(order, p)
    }

    /// A person's name, for the duty views of a roll call.
    pub fn name(&self, person: &str) -> Option<&str> {
        self.persons.get(person).map(|p| p.name.as_str())
    }
}

/// A change of someone's presence on an open order, decided at its trigger's position and
/// still to be appended to the order's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The order.
    pub order: Uuid,
    /// The event's id: [`presence_id`] of the order, the trigger and the person.
    pub id: Uuid,
    /// `PersonArrivedInArea` or `PersonLeftArea`.
    pub event: DomainEvent,
    /// The event that moved the person (the appended event's `causation_id`).
    pub trigger: Uuid,
    /// The trigger's correlation id, carried on.
    pub correlation_id: Option<Uuid>,
}

/// The id of the presence change of `person` on `order` caused by event `trigger`: the same
/// on every replay, restart and instance, so the store keeps it once.
pub fn presence_id(order: Uuid, trigger: Uuid, person: &str) -> Uuid {
    Uuid::new_v5(&order, format!("presence/{trigger}/{person}").as_bytes())
}

/// An open order as the presence tracker sees it.
#[derive(Debug, Clone)]
struct Tracked {
    ordered: RelocationOrdered,
    /// Everyone on the roll call: in the place (`true`) or left it (`false`), as decided.
    people: HashMap<String, bool>,
}

/// Who is in the place of each open order, decided event by event at each trigger's
/// position (never from the clock), and the changes still to append.
///
/// # The rule
/// When a personnel record or a clearance event moves person X (at the event's
/// `recorded_at` date), for each order open at that position: if X is now covered by the
/// order ([`Reference::covers`]) and not on its roll call, X arrives late; if X was on it and
/// had left, X is back; if X was on it and in the place and is no longer covered, X left.
/// Decisions count at once for the next trigger, before their events are in the log, so a
/// second trigger never adds a person twice; an order's own `RollCallEntryAdded` puts people
/// on it. The appended presence events themselves change nothing here: they only settle
/// the pending change with their id. So the decisions, their ids and their content are a
/// function of the log alone, and a replay after any crash derives the same ones.
#[derive(Debug, Default, Clone)]
pub struct Tracker {
    open: HashMap<Uuid, Tracked>,
    /// Changes not yet seen in the log, by (trigger position, order).
    pending: BTreeMap<(u64, Uuid), Transition>,
    /// Pending keys by event id.
    pending_ids: HashMap<Uuid, (u64, Uuid)>,
}

impl Tracker {
    /// Follows one event of an order's stream.
    pub fn follow_order(&mut self, recorded: &RecordedEvent) {
        if let Some(key) = self.pending_ids.remove(&recorded.id) {
            self.pending.remove(&key);
            return;
        }
        let Decoded::Known(event) = DomainEvent::decode(recorded) else {
            return;
        };
        let id = recorded.stream.id();
        match event {
            DomainEvent::RelocationOrdered(ordered) => {
                self.open.entry(id).or_insert(Tracked {
                    ordered,
                    people: HashMap::new(),
                });
            }
            DomainEvent::RollCallEntryAdded(e) => {
                if let Some(t) = self.open.get_mut(&id) {
                    t.people.entry(e.person).or_insert(true);
                }
            }
            DomainEvent::OrderCompleted(_) | DomainEvent::OrderRescinded(_) => {
                self.open.remove(&id);
                let closed: Vec<(u64, Uuid)> = self
                    .pending
                    .keys()
                    .filter(|(_, order)| *order == id)
                    .copied()
                    .collect();
                for key in closed {
                    if let Some(t) = self.pending.remove(&key) {
                        self.pending_ids.remove(&t.id);
                    }
                }
            }
            _ => {}
        }
    }

    /// Decides, for every open order, what `moved` (touched by `trigger`, just applied to
    /// `reference`) means for its roll call.
    pub fn moved(
        &mut self,
        reference: &Reference,
        trigger: &RecordedEvent,
        person: &str,
        cause: PresenceCause,
    ) {
        let on = trigger.recorded_at.date();
        for (order, t) in &mut self.open {
            let covered = reference.covers(&t.ordered, person, on);
            let event: DomainEvent = match (t.people.get(person).copied(), covered) {
                (None | Some(false), true) => {
                    let e = reference.entry(person);
                    PersonArrivedInArea {
                        person: e.person,
                        agency: e.agency,
                        duty_station: e.duty_station,
                        dependants: e.dependants,
                        cause,
                    }
                    .into()
                }
                (Some(true), false) => PersonLeftArea {
                    person: person.to_owned(),
                    cause,
                }
                .into(),
                _ => continue,
            };
            // An id the validation refuses (a person id from outside the rules) would be
            // refused by the store for ever: such a person is not tracked.
            if event.validate().is_err() {
                continue;
            }
            t.people.insert(person.to_owned(), covered);
            let id = presence_id(*order, trigger.id, person);
            let key = (trigger.position, *order);
            self.pending_ids.insert(id, key);
            self.pending.insert(
                key,
                Transition {
                    order: *order,
                    id,
                    event,
                    trigger: trigger.id,
                    correlation_id: trigger.meta.correlation_id,
                },
            );
        }
    }

    /// The changes still to append, by order, each order's in log order.
    pub fn pending(&self) -> BTreeMap<Uuid, Vec<Transition>> {
        let mut by_order: BTreeMap<Uuid, Vec<Transition>> = BTreeMap::new();
        for t in self.pending.values() {
            by_order.entry(t.order).or_default().push(t.clone());
        }
        by_order
    }

    /// Forgets a change once it is stored (its event may not be folded yet).
    pub fn settle(&mut self, id: Uuid) {
        if let Some(key) = self.pending_ids.remove(&id) {
            self.pending.remove(&key);
        }
    }

    /// Who is on the roll call of open order `order`, in the place (`true`) or left (`false`).
    pub fn people(&self, order: Uuid) -> Option<&HashMap<String, bool>> {
        self.open.get(&order).map(|t| &t.people)
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
    /// Added after the order was given: they came into the area later.
    #[serde(default)]
    pub late_arrival: bool,
    /// No longer in the area (kept on the roll call, marked so).
    #[serde(default)]
    pub left_area: bool,
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
    /// On the roll call as late arrivals (whatever their mark).
    pub late_arrivals: usize,
    /// Marked "left the area" (whatever their mark).
    pub left_area: usize,
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
        let flagged = |f: fn(&Entry) -> bool| self.roll_call.values().filter(|e| f(e)).count();
        Tally {
            total,
            accounted,
            missing,
            unmarked: by(|s| s.is_none()),
            late_arrivals: flagged(|e| e.late_arrival),
            left_area: flagged(|e| e.left_area),
            accounted_pct: if total == 0 {
                100.0
            } else {
                accounted as f64 * 100.0 / total as f64
            },
        }
    }

    /// People missing, or not yet marked and still in the area, after the deadline (empty
    /// before it, or once the order is closed): someone who left the area unmarked is not
    /// looked for there.
    pub fn findings(&self, now: OffsetDateTime) -> Vec<&str> {
        if self.status != Status::Active || now <= self.ordered.deadline {
            return vec![];
        }
        self.roll_call
            .values()
            .filter(|e| match e.status {
                None => !e.left_area,
                Some(s) => s == PersonStatus::Missing,
            })
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
            // On the roll call from the order: never a late arrival, even if a presence
            // change reached the log between two chunks of a large roll call.
            o.roll_call
                .entry(entry.person.clone())
                .and_modify(|e| e.late_arrival = false)
                .or_insert(Entry {
                    entry,
                    status: None,
                    marked_by: None,
                    marked_at_position: None,
                    late_arrival: false,
                    left_area: false,
                });
        }
        DomainEvent::PersonArrivedInArea(a) if o.status == Status::Active => {
            o.roll_call
                .entry(a.person.clone())
                .and_modify(|e| e.left_area = false)
                .or_insert(Entry {
                    entry: RollCallEntryAdded {
                        person: a.person,
                        agency: a.agency,
                        duty_station: a.duty_station,
                        dependants: a.dependants,
                    },
                    status: None,
                    marked_by: None,
                    marked_at_position: None,
                    late_arrival: true,
                    left_area: false,
                });
        }
        DomainEvent::PersonLeftArea(l) if o.status == Status::Active => {
            if let Some(e) = o.roll_call.get_mut(&l.person) {
                e.left_area = true;
            }
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

    /// The relocation register reduced to what decides presence: it folds a log the way
    /// the service's register does, and stores the changes it decides like the service's
    /// background task (under their ids, in the order's stream).
    #[derive(Default)]
    struct Centre {
        reference: Reference,
        tracker: Tracker,
        order: Option<Order>,
        log: Vec<RecordedEvent>,
    }

    impl Centre {
        fn fold(&mut self, e: &RecordedEvent) {
            if e.stream.category().as_str() == "relocation" {
                apply(&mut self.order, e);
                self.tracker.follow_order(e);
            } else if let Some((person, cause)) = self.reference.apply(e) {
                self.tracker.moved(&self.reference, e, &person, cause);
            }
        }

        fn append(&mut self, stream: &StreamName, event: DomainEvent, id: Uuid) -> RecordedEvent {
            let n = self.log.len() as u64 + 1;
            let recorded = RecordedEvent::record(
                event.to_new_event(id, Meta::default()),
                stream.clone(),
                n,
                n,
                datetime!(2026-11-27 06:00 UTC),
            );
            self.log.push(recorded.clone());
            self.fold(&recorded);
            recorded
        }

        fn feed(&mut self, stream: StreamName, event: impl Into<DomainEvent>) -> RecordedEvent {
            self.append(&stream, event.into(), Uuid::new_v4())
        }

        /// Stores what the tracker decided; returns those changes.
        fn store_pending(&mut self) -> Vec<Transition> {
            let changes: Vec<Transition> = self.tracker.pending().into_values().flatten().collect();
            for t in &changes {
                self.append(
                    &events::domain::relocation::stream_for(t.order),
                    t.event.clone(),
                    t.id,
                );
            }
            changes
        }

        /// A centre with [`reference`]'s facts and an order on area BAN, given after them.
        fn with_order() -> Centre {
            let mut c = Centre::default();
            for e in reference_log() {
                c.feed(e.0, e.1);
            }
            let o = ordered(Some("BAN"), Scope::AllPersonnel);
            let roll = c.reference.roll_call(&o, date!(2026 - 11 - 27));
            for e in decide_order(None, &duty(), o, roll).unwrap() {
                c.feed(relocation_stream(), e);
            }
            c
        }

        fn order(&self) -> Order {
            self.order.clone().unwrap()
        }
    }

    /// The facts of [`reference`], as events.
    fn reference_log() -> Vec<(StreamName, DomainEvent)> {
        use events::domain::{person as p, station as s};
        let c = events::domain::clearance::stream_for(Uuid::from_u128(1));
        vec![
            (s::stream_for("MGQ"), station("MGQ", "BAN").into()),
            (s::stream_for("BAI"), station("BAI", "BAY").into()),
            (p::stream_for("P1"), person("P1", "MGQ", 2, false).into()),
            (p::stream_for("P2"), person("P2", "MGQ", 0, true).into()),
            (p::stream_for("P3"), person("P3", "BAI", 1, false).into()),
            (c.clone(), clearance("T1").into()),
            (c, ClearanceApproved { by: "d".into() }.into()),
        ]
    }

    fn clearance(traveller: &str) -> ClearanceRequested {
        ClearanceRequested {
            traveller: traveller.into(),
            itinerary: vec![Leg {
                country: so(),
                area: Some("BAN".into()),
                from: date!(2026 - 11 - 20),
                to: date!(2026 - 11 - 30),
            }],
            purpose: None,
        }
    }

    fn flags(o: &Order, person: &str) -> (bool, bool) {
        let e = &o.roll_call[person];
        (e.late_arrival, e.left_area)
    }

    #[test]
    fn people_who_arrive_after_the_order_are_late_arrivals_and_leavers_stay_marked() {
        use events::domain::clearance::{ArrivalRecorded, DepartureRecorded};
        let mut c = Centre::with_order();
        assert_eq!(c.order().tally().total, 3);
        assert!(c.tracker.pending().is_empty(), "the roll call is not late");

        // Given the order, when P3 is assigned to a station in the area and a new traveller's
        // clearance into it is approved, then both arrive late, once each.
        let moved = c.feed(
            events::domain::person::stream_for("P3"),
            person("P3", "MGQ", 1, false),
        );
        let t2 = events::domain::clearance::stream_for(Uuid::from_u128(2));
        c.feed(t2.clone(), clearance("T2"));
        assert_eq!(
            c.tracker.pending()[&ID].len(),
            1,
            "P3 only: a request is not presence"
        );
        let approved = c.feed(t2.clone(), ClearanceApproved { by: "d".into() });
        c.feed(
            t2.clone(),
            ArrivalRecorded {
                country: so(),
                at: datetime!(2026-11-27 05:00 UTC),
            },
        );
        let changes = c.store_pending();
        assert_eq!(
            changes
                .iter()
                .map(|t| (t.id, t.trigger, t.event.clone()))
                .collect::<Vec<_>>(),
            vec![
                (
                    presence_id(ID, moved.id, "P3"),
                    moved.id,
                    PersonArrivedInArea {
                        person: "P3".into(),
                        agency: Some("unicef".into()),
                        duty_station: Some("MGQ".into()),
                        dependants: 1,
                        cause: PresenceCause::Assignment,
                    }
                    .into()
                ),
                (
                    presence_id(ID, approved.id, "T2"),
                    approved.id,
                    PersonArrivedInArea {
                        person: "T2".into(),
                        agency: None,
                        duty_station: None,
                        dependants: 0,
                        cause: PresenceCause::Clearance,
                    }
                    .into()
                ),
            ],
            "the arrival after the approval changes nothing: T2 is already on it"
        );
        assert!(c.tracker.pending().is_empty(), "stored changes are settled");
        let o = c.order();
        assert_eq!((o.tally().total, o.tally().late_arrivals), (5, 2));
        assert_eq!(flags(&o, "P3"), (true, false));
        assert_eq!(flags(&o, "P1"), (false, false));

        // When T1 departs and P1 is assigned elsewhere, then both are marked left the area
        // and stay on the roll call; when T1 arrives again, T1 is back.
        let t1 = events::domain::clearance::stream_for(Uuid::from_u128(1));
        c.feed(
            t1.clone(),
            DepartureRecorded {
                country: so(),
                at: datetime!(2026-11-27 05:00 UTC),
            },
        );
        c.feed(
            events::domain::person::stream_for("P1"),
            person("P1", "BAI", 2, false),
        );
        let left = c.store_pending();
        assert!(
            left.iter()
                .all(|t| matches!(t.event, DomainEvent::PersonLeftArea(_)))
        );
        assert_eq!(left.len(), 2);
        let o = c.order();
        assert_eq!((o.tally().total, o.tally().left_area), (5, 2));
        assert_eq!(flags(&o, "T1"), (false, true));
        assert_eq!(flags(&o, "P1"), (false, true));
        c.feed(
            t1,
            ArrivalRecorded {
                country: so(),
                at: datetime!(2026-11-27 05:30 UTC),
            },
        );
        assert_eq!(c.store_pending().len(), 1);
        assert_eq!(flags(&c.order(), "T1"), (false, false), "back in the area");

        // Findings after the deadline: P1 left unmarked, so is not looked for in the area.
        let findings = c.order();
        assert_eq!(
            findings.findings(datetime!(2026-11-29 00:00 UTC)),
            ["P2", "P3", "T1", "T2"]
        );

        // Replaying the whole log derives the same changes, finds them stored, and builds
        // the same order: nothing is appended twice.
        let mut replay = Centre::default();
        for e in c.log.clone() {
            replay.fold(&e);
        }
        assert!(replay.tracker.pending().is_empty(), "everything is stored");
        assert_eq!(replay.order(), c.order());

        // A replay that stops before the changes were stored decides them again, under the
        // same ids: the store keeps each once.
        let mut cut = Centre::default();
        let first_change = c
            .log
            .iter()
            .position(|e| e.id == presence_id(ID, moved.id, "P3"))
            .unwrap();
        for e in &c.log[..first_change] {
            cut.fold(e);
        }
        let again: Vec<Uuid> = cut
            .tracker
            .pending()
            .into_values()
            .flatten()
            .map(|t| t.id)
            .collect();
        assert_eq!(
            again,
            [
                presence_id(ID, moved.id, "P3"),
                presence_id(ID, approved.id, "T2")
            ]
        );
    }

    #[test]
    fn a_trigger_seen_twice_or_a_closed_order_changes_nothing() {
        let mut c = Centre::with_order();
        let moved = c.feed(
            events::domain::person::stream_for("P3"),
            person("P3", "MGQ", 1, false),
        );
        // The same trigger again (a duplicate delivery), before the change is stored.
        let (who, cause) = c.reference.apply(&moved).unwrap();
        c.tracker.moved(&c.reference, &moved, &who, cause);
        // Another trigger for the same person, before the change is stored.
        c.feed(
            events::domain::person::stream_for("P3"),
            person("P3", "MGQ", 2, false),
        );
        assert_eq!(c.store_pending().len(), 1, "P3 arrives once");
        assert_eq!(c.order().tally().late_arrivals, 1);

        // An order closed after a change was decided: the change is dropped, and a change
        // stored after the close (by an instance that had not seen it) is ignored.
        c.feed(
            events::domain::person::stream_for("P1"),
            person("P1", "BAI", 2, false),
        );
        let decided: Vec<Transition> = c.tracker.pending().into_values().flatten().collect();
        assert_eq!(decided.len(), 1);
        let history = c.log.clone();
        let done = when(&history, &duty(), "complete", json!({})).unwrap();
        for e in done {
            c.feed(relocation_stream(), e);
        }
        assert!(
            c.tracker.pending().is_empty(),
            "nothing is appended to a closed order"
        );
        let closed = c.order();
        c.append(
            &relocation_stream(),
            decided[0].event.clone(),
            decided[0].id,
        );
        c.feed(
            events::domain::person::stream_for("P2"),
            person("P2", "BAI", 0, true),
        );
        assert!(c.tracker.pending().is_empty());
        let after = c.order();
        assert_eq!(
            (after.roll_call, after.status),
            (closed.roll_call, Status::Completed),
            "a closed order does not change"
        );
    }

    #[test]
    fn the_scope_applies_to_late_arrivals() {
        let mut c = Centre::default();
        for e in reference_log() {
            c.feed(e.0, e.1);
        }
        let o = ordered(Some("BAN"), Scope::NonEssential);
        let roll = c.reference.roll_call(&o, date!(2026 - 11 - 27));
        for e in decide_order(None, &duty(), o, roll).unwrap() {
            c.feed(relocation_stream(), e);
        }
        c.feed(
            events::domain::person::stream_for("P4"),
            person("P4", "MGQ", 0, true),
        );
        assert!(
            c.tracker.pending().is_empty(),
            "essential staff stay: not on it"
        );
        c.feed(
            events::domain::person::stream_for("P5"),
            person("P5", "MGQ", 0, false),
        );
        assert_eq!(c.store_pending().len(), 1);
        assert!(c.order().roll_call["P5"].late_arrival);
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

        /// After any moves following the order (on its day), the people in the area on the
        /// order are exactly its roll call as it would be computed now; everyone ever on it
        /// stays on it once; a replay stores nothing new.
        #[test]
        fn presence_follows_the_roll_call_rule(
            moves in proptest::collection::vec((0usize..4, 0usize..6, 0usize..4), 0..24),
            asked_area in proptest::option::of(0usize..2),
        ) {
            use events::domain::clearance::{ArrivalRecorded, DepartureRecorded};
            let areas = ["BAN", "BAY"];
            let stations = [("S0", "BAN"), ("S1", "BAN"), ("S2", "BAY"), ("S3", "BAY")];
            let mut c = Centre::default();
            for (id, area) in stations {
                c.feed(events::domain::station::stream_for(id), station(id, area));
            }
            for i in 0..6usize {
                let id = format!("P{i}");
                c.feed(events::domain::person::stream_for(&id), person(&id, stations[i % 4].0, 0, false));
            }
            let area = asked_area.map(|a| areas[a]);
            let o = ordered(area, Scope::AllPersonnel);
            let day = date!(2026 - 11 - 27);
            let initial = c.reference.roll_call(&o, day);
            for e in decide_order(None, &duty(), o.clone(), initial.clone()).unwrap() {
                c.feed(relocation_stream(), e);
            }
            let mut ever: BTreeSet<String> = initial.into_iter().map(|e| e.person).collect();
            for (kind, who, target) in moves {
                let id = format!("P{who}");
                let stream = events::domain::clearance::stream_for(Uuid::from_u128(100 + who as u128));
                match kind {
                    0 => { c.feed(events::domain::person::stream_for(&id), person(&id, stations[target].0, 0, false)); }
                    1 => {
                        let mut req = clearance(&id);
                        req.itinerary[0].area = Some(areas[target % 2].to_owned());
                        c.feed(stream.clone(), req);
                        c.feed(stream, ClearanceApproved { by: "d".into() });
                    }
                    2 => { c.feed(stream, DepartureRecorded { country: so(), at: datetime!(2026-11-27 05:00 UTC) }); }
                    _ => { c.feed(stream, ArrivalRecorded { country: so(), at: datetime!(2026-11-27 05:00 UTC) }); }
                }
                if target == 0 {
                    c.store_pending();
                }
                ever.extend(c.reference.roll_call(&o, day).into_iter().map(|e| e.person));
            }
            c.store_pending();
            let order = c.order();
            let now: BTreeSet<String> = c.reference.roll_call(&o, day).into_iter().map(|e| e.person).collect();
            let inside: BTreeSet<String> = order.roll_call.values().filter(|e| !e.left_area).map(|e| e.entry.person.clone()).collect();
            prop_assert_eq!(&inside, &now);
            let on_it: BTreeSet<String> = order.roll_call.keys().cloned().collect();
            prop_assert_eq!(&on_it, &ever);
            let mut replay = Centre::default();
            for e in c.log.clone() {
                replay.fold(&e);
            }
            prop_assert!(replay.tracker.pending().is_empty());
            prop_assert_eq!(replay.order(), order);
        }
    }
}
