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

use events::aggregate::Aggregate;
use events::codec::Decoded;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
#[cfg(test)]
use events::domain::person::PersonRegistered;
#[cfg(test)]
use events::domain::relocation::Scope;
use events::domain::relocation::{
    MarkPerson, MarkPersons, OrderCompleted, OrderRescinded, PersonArrivedInArea, PersonLeftArea,
    PersonMarked, PersonStatus, PresenceCause, RelocationOrdered, RollCallEntryAdded,
};
#[cfg(test)]
use events::domain::station::DutyStationRegistered;
use events::validate::Country;
use events::{RecordedEvent, StreamName};
use runtime::reference::Directory;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

mod reference;

pub use reference::Reference;

/// Most people marked in one command (one append).
pub const MAX_MARK_MANY: usize = 499;

/// A change of someone's presence on an open order, decided at its trigger's position and
/// still to be appended to the order's stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Tracker {
    open: HashMap<Uuid, Tracked>,
    /// Changes not yet seen in the log, by (trigger position, order); a list of pairs in a
    /// checkpoint (a JSON object's keys are strings).
    #[serde(with = "runtime::checkpoint::pairs")]
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
        if self.open.is_empty() {
            return;
        }
        reference.with(Some(trigger.position), |dir| {
            self.moved_in(reference, dir, trigger, person, cause)
        });
    }

    fn moved_in(
        &mut self,
        reference: &Reference,
        dir: &dyn Directory,
        trigger: &RecordedEvent,
        person: &str,
        cause: PresenceCause,
    ) {
        let on = trigger.recorded_at.date();
        for (order, t) in &mut self.open {
            let covered = reference.covers_in(dir, &t.ordered, person, on);
            let event: DomainEvent = match (t.people.get(person).copied(), covered) {
                (None | Some(false), true) => {
                    let e = Reference::entry(dir, person);
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

/// Where an order is in its life (in `events`, as the lists answer it).
pub use events::domain::relocation::OrderStatus as Status;

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

/// Counts of a roll call (in `events`, as the lists answer it).
pub use events::domain::relocation::RollCallTally as Tally;

/// An order is created by [`decide_order`] with its roll call (the service computes the
/// roll call from its register first); the commands here change an existing one.
impl Aggregate for Order {
    type Command = OrderCommand;
    type Facts = ();

    fn stream(id: Uuid) -> StreamName {
        events::domain::relocation::stream_for(id)
    }

    fn parse(name: &str, _actor: &Actor, body: serde_json::Value) -> Result<OrderCommand, Refusal> {
        parse(name, body)
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.version = recorded.version;
    }

    /// Applies one recorded event of the order's stream.
    fn apply_known(state: &mut Option<Order>, event: DomainEvent, recorded: &RecordedEvent) {
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

    fn decide(
        id: Uuid,
        state: Option<&Order>,
        actor: &Actor,
        command: OrderCommand,
        _facts: &(),
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
        let marked =
            |person: &str, status, note: &Option<String>| -> Result<DomainEvent, Refusal> {
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
}

impl Order {
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

/// A command on an existing order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderCommand {
    /// Mark one person.
    Mark(MarkPerson),
    /// Mark several.
    MarkMany(MarkPersons),
    /// Everyone is accounted for.
    Complete(OrderCompleted),
    /// Withdrawn.
    Rescind(OrderRescinded),
}

/// Reads the body of command `name`.
fn parse(name: &str, body: serde_json::Value) -> Result<OrderCommand, Refusal> {
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
mod tests;
