//! The situation board (`situation` in MODEL.md): what is going on, country by country, as one
//! duty officer's glance at a wall screen should tell it.
//!
//! This module owns the board's state and its fold. [`Situation::apply`] takes each event
//! decoded once, straight from its stored bytes ([`TypedRecorded`]), and updates plain
//! structs keyed by stream id and country; it never builds JSON and never reads a clock (time
//! is each event's `recorded_at`, or a tick's given time: `retention`). What an event touched
//! comes back as [`Changes`], which [`Situation::delta`] renders (see `render.rs`) into the few
//! ops that bring a page up to date: per entity (one incident's marker, one area, one order),
//! not per country.
//!
//! The fold is split by event family: `fold` here dispatches each event, by its stream
//! category, to the sibling module that owns its family (`incidents`, `levels`, `hostage`, `surges`, `orders`, `broadcasts`);
//! clearances and reference data change nothing but the position. `text` words the timeline
//! items, `render` turns the state into ops.
//!
//! Rules the fold follows, beyond MODEL.md (they are written there too):
//! - An event at or below the board's position is a duplicate: ignored, nothing changes.
//! - Every other event advances `position` and `as_of`, even when it is unknown, unreadable, of
//!   a category the board does not show (clearances), or about a stream the board has never
//!   seen (a verification of an unknown incident): those change nothing else.
//! - A case that ends (incident closed, hostage case closed, surge rejected, completed or
//!   cancelled, order completed or rescinded) leaves the state: later events of its stream are
//!   ignored, and the board's memory is bounded by what is open, not by the length of the log.
//! - A second "opening" event for a stream the board already holds (a second
//!   `IncidentReported`) is ignored: the first one stands.
//! - Counters are kept up to date incrementally; a test recounts them from scratch.
//! - A broadcast stays in the state while it counts (an old one may still await
//!   acknowledgements) and leaves it the board's retention after it ended (`retention`, time
//!   from the events or a tick, never the wall clock); each keeps at most
//!   [`MAX_AGENCIES`](events::domain::broadcast::MAX_AGENCIES) agencies, and only the newest
//!   [`MAX_BROADCASTS`] of those kept are rendered: a change to an older one moves its
//!   counters only.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use events::TypedRecorded;
use events::codec::Decoded;
use events::domain::DomainEvent;
use events::domain::incident::{Casualties, IncidentCategory, Location};
use events::domain::relocation::{OrderKind, PersonStatus, Scope};
use events::validate::{Country, SecurityLevel, Severity};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

mod broadcasts;
mod hostage;
mod incidents;
#[cfg(test)]
mod invariants;
mod levels;
mod orders;
mod render;
mod retention;
mod surges;
mod text;

use broadcasts::{Broadcast, BroadcastStatus, Reach};
pub use retention::DEFAULT_RETENTION;

/// Most markers shown per country (the newest open incidents with a location).
pub const MAX_MARKERS: usize = 100;
/// Most broadcasts shown (the newest).
pub const MAX_BROADCASTS: usize = 20;
/// Most timeline items kept (the newest).
pub const TIMELINE_LIMIT: usize = 200;
/// The code version of the board's state and fold, written in every checkpoint of it
/// (`runtime::checkpoint`). Bump it whenever [`Situation`]'s fields, their meaning, or what
/// [`Situation::apply`] makes of an event change: a checkpoint of another version is ignored
/// and the whole log folded again, so a board is never a mix of two folds.
///
/// Version 2: broadcasts leave the state by retention (the board keeps its clock, its
/// retention and when each broadcast ended).
pub const CHECKPOINT_VERSION: u32 = 2;

/// What one event touched on the board, as [`Situation::apply`] returns it and
/// [`Situation::delta`] reads it. Opaque to the gateway: only [`Changes::is_empty`] matters there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Countries whose entry changed, appeared or disappeared (at most two: an incident
    /// moved), each with whether it had an entry before the event.
    countries: Few<(Country, bool)>,
    /// Whether any counter changed.
    counters: bool,
    /// The counters before the event: the delta sends the ones that moved.
    counters_before: Counters,
    /// The stream the event is about, and its family: what in a country it can have changed
    /// (the delta sends that one incident, area, case, surge, order or broadcast).
    entity: Option<(Family, Uuid)>,
    /// The area whose level the event set.
    area: Option<String>,
    /// Whether the list of the latest broadcasts changed.
    broadcasts: bool,
    /// Which per-agency detail of the listed broadcasts changed (duty view).
    detail: Detail,
    /// Whether a timeline item was added (it is the newest one).
    timeline: bool,
    /// What the retention took off before the event was folded (or on a tick).
    expired: retention::Expired,
}

impl Changes {
    /// Whether the event changed nothing a page shows (besides `position` and `as_of`, which
    /// every delta message carries anyway).
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty()
            && !self.counters
            && !self.broadcasts
            && self.detail == Detail::None
            && !self.timeline
            && self.expired.is_empty()
    }
}

/// The family of the event folded: which part of a country's entry it can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// `incidents` (the counts) and one marker.
    Incident,
    /// `level` and one area.
    Level,
    /// `hostage` (counts only).
    Hostage,
    /// One surge.
    Surge,
    /// One order.
    Order,
    /// No country: one listed broadcast and its agencies.
    Broadcast,
}

impl Family {
    /// The family of the events of a stream category; `None` for those the board does not
    /// show: clearances, the surge service's officer reservations (the assignments on the
    /// surges' own streams are what the board shows) and reference data (the board shows
    /// areas by their levels, not their records). A test names every category one way or
    /// the other, so a new one is a decision.
    fn of(category: &str) -> Option<Self> {
        match category {
            "incident" => Some(Self::Incident),
            "level" => Some(Self::Level),
            "hostage" => Some(Self::Hostage),
            "surge" => Some(Self::Surge),
            "relocation" => Some(Self::Order),
            "broadcast" => Some(Self::Broadcast),
            _ => None,
        }
    }
}

/// Whether `event` opens a case: the first event of its stream.
fn opens(event: &DomainEvent) -> bool {
    use DomainEvent as E;
    matches!(
        event,
        E::IncidentReported(_)
            | E::HostageCaseOpened(_)
            | E::SurgeRequested(_)
            | E::RelocationOrdered(_)
            | E::BroadcastIssued(_)
    )
}

/// What changed in `broadcast_agencies` (the duty view's per-agency detail of the listed
/// broadcasts). One event is about one broadcast, so one of these says it all, and the delta
/// sends the one agency an acknowledgement touched, not the whole list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum Detail {
    /// Nothing.
    #[default]
    None,
    /// A broadcast was issued and joined the list; the oldest listed one may have left it.
    Listed { added: Uuid, dropped: Option<Uuid> },
    /// Several agencies of one listed broadcast.
    Broadcast(Uuid),
    /// One agency of one listed broadcast.
    Agency(Uuid, String),
}

/// A few values kept inline: what one event touches is one or two countries, and folding an
/// event should not allocate for that. More spill over into a `Vec` (never in practice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Few<T> {
    inline: [Option<T>; 2],
    spill: Vec<T>,
}

impl<T> Default for Few<T> {
    fn default() -> Self {
        Self {
            inline: [None, None],
            spill: Vec::new(),
        }
    }
}

impl<T: Copy> Few<T> {
    fn push(&mut self, value: T) {
        match self.inline.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => *slot = Some(value),
            None => self.spill.push(value),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.inline
            .iter()
            .flatten()
            .copied()
            .chain(self.spill.iter().copied())
    }

    fn is_empty(&self) -> bool {
        self.inline[0].is_none()
    }
}

/// A country as a map key: its two letters packed into a `u16` (in the same order as the codes),
/// so that the lookup every event makes compares integers, not strings.
#[derive(Debug, Clone, Copy)]
struct Code {
    packed: u16,
    country: Country,
}

impl Code {
    fn of(country: Country) -> Self {
        let b = country.as_str().as_bytes();
        let letter = |i: usize| b.get(i).copied().unwrap_or(0);
        Self {
            packed: u16::from_be_bytes([letter(0), letter(1)]),
            country,
        }
    }
}

/// Written as its country code (a JSON map key in a checkpoint).
impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.country.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Country::deserialize(d).map(Code::of)
    }
}

impl PartialEq for Code {
    fn eq(&self, other: &Self) -> bool {
        self.packed == other.packed
    }
}

impl Eq for Code {}

impl PartialOrd for Code {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Code {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.packed.cmp(&other.packed)
    }
}

/// The board-wide counters (MODEL.md `counters`), kept incrementally.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Counters {
    open_incidents: u64,
    /// Open incidents not yet verified.
    unverified_incidents: u64,
    /// Killed, summed over open incidents.
    casualties_killed: u64,
    /// Injured, summed over open incidents.
    casualties_injured: u64,
    countries_level_5_plus: u64,
    /// Open hostage cases.
    hostage_cases: u64,
    persons_held: u64,
    active_surges: u64,
    active_orders: u64,
    /// Live broadcasts (approved or needing no approval, not cancelled) to agencies that
    /// require an acknowledgement and are not acknowledged by every agency yet.
    broadcasts_awaiting_ack: u64,
    /// Broadcasts waiting for a second duty officer's approval (not cancelled).
    broadcasts_awaiting_approval: u64,
    /// Agencies that a live broadcast finally failed to reach, summed over broadcasts.
    broadcast_deliveries_failed: u64,
}

/// Adds or subtracts `by`, saturating: a malformed log must never overflow-panic a debug build.
fn bump(n: &mut u64, add: bool, by: u64) {
    *n = if add {
        n.saturating_add(by)
    } else {
        n.saturating_sub(by)
    };
}

/// An open incident.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Incident {
    country: Country,
    /// Position of its `IncidentReported`: orders the markers, newest first.
    reported_at: u64,
    category: IncidentCategory,
    severity: Severity,
    title: String,
    occurred_at: OffsetDateTime,
    location: Option<Location>,
    /// Duty view only.
    description: Option<String>,
    casualties: Option<Casualties>,
    /// Duty view only.
    reporter: String,
    verified: bool,
}

/// The latest level of one area.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AreaLevel {
    level: SecurityLevel,
    reason: String,
    set_at: OffsetDateTime,
}

/// An open hostage case. Person references are kept only to count who is still held; they are
/// never rendered.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HostageCase {
    country: Country,
    /// Position of its `HostageCaseOpened`.
    opened_pos: u64,
    opened_at: OffsetDateTime,
    held: HashSet<String>,
    /// How many of the case were released (counts only: the wall screen says "70 released").
    released: u64,
    /// How many died in captivity.
    deceased: u64,
}

/// Where a surge stands; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum SurgeStatus {
    Requested,
    Approved,
    Deployed,
}

/// An active surge.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Surge {
    country: Country,
    /// Position of its `SurgeRequested`.
    requested_pos: u64,
    duty_station: String,
    status: SurgeStatus,
    officers_needed: u16,
    /// Number of `SurgeOfficerAssigned` events.
    officers_assigned: u64,
    /// Officers away from each duty station they came from: the gap the surge leaves there.
    away_from: BTreeMap<String, u64>,
}

/// An active relocation or evacuation order with its roll call.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Order {
    country: Country,
    /// Position of its `RelocationOrdered`.
    ordered_pos: u64,
    kind: OrderKind,
    scope: Scope,
    area: Option<String>,
    duty_station: Option<String>,
    destination: String,
    deadline: OffsetDateTime,
    /// Every person on the roll call and their latest mark; only the counts are rendered.
    roll: HashMap<String, Option<PersonStatus>>,
    /// Persons added after the order (`PersonArrivedInArea` for someone not on it yet) and
    /// not put on it by the order's own `RollCallEntryAdded` since.
    late: HashSet<String>,
    /// Persons on the roll call whose latest presence event is `PersonLeftArea`.
    left: HashSet<String>,
    /// Persons whose latest mark is safe, relocated or injured.
    accounted: u64,
    /// Persons whose latest mark is missing.
    missing: u64,
}

impl Order {
    fn total(&self) -> u64 {
        self.roll.len() as u64
    }
}

/// One country's entry: what it shows, with its incident counts kept incrementally.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct CountryState {
    /// Latest level per area name.
    areas: BTreeMap<String, AreaLevel>,
    /// Highest area level.
    level: Option<SecurityLevel>,
    open: u64,
    unverified: u64,
    /// Open incidents by severity 1 to 5.
    by_severity: [u64; 5],
    /// Open incidents with a location, by report position.
    markers: BTreeMap<u64, Uuid>,
    /// Open hostage cases, by opening position.
    hostage_cases: BTreeMap<u64, Uuid>,
    persons_held: u64,
    /// Active surges, by request position.
    surges: BTreeMap<u64, Uuid>,
    /// Active orders, by order position.
    orders: BTreeMap<u64, Uuid>,
}

impl CountryState {
    /// Whether the country has nothing to show (and leaves the board).
    fn is_empty(&self) -> bool {
        self.areas.is_empty()
            && self.open == 0
            && self.hostage_cases.is_empty()
            && self.surges.is_empty()
            && self.orders.is_empty()
    }
}

/// What kind of thing a timeline item is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Incident,
    Level,
    Hostage,
    Surge,
    Order,
    Broadcast,
}

/// How much a timeline item matters, as text on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
enum Urgency {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// One timeline entry; its text is written when the event is folded (it needs the state of
/// that moment) and never names a person.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TimelineItem {
    position: u64,
    at: OffsetDateTime,
    country: Option<Country>,
    kind: Kind,
    severity: Urgency,
    text: String,
}

/// The situation board: a pure fold of the event log. See the module docs and MODEL.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Situation {
    /// Last position folded in (0: nothing yet).
    position: u64,
    /// `recorded_at` of that event.
    as_of: Option<OffsetDateTime>,
    counters: Counters,
    /// Only countries with something to show; ordered so that snapshots are deterministic.
    countries: BTreeMap<Code, CountryState>,
    /// Open incidents by stream id.
    incidents: HashMap<Uuid, Incident>,
    /// Open hostage cases by stream id.
    hostage: HashMap<Uuid, HostageCase>,
    /// Active surges by stream id.
    surges: HashMap<Uuid, Surge>,
    /// Active orders by stream id.
    orders: HashMap<Uuid, Order>,
    /// The broadcasts kept, by stream id: every one that counts, and those that ended less
    /// than the retention ago (an old one may still await acknowledgements).
    broadcasts: HashMap<Uuid, Broadcast>,
    /// The kept broadcasts by issue position; the last [`MAX_BROADCASTS`] are shown.
    broadcast_order: BTreeMap<u64, Uuid>,
    /// The kept broadcasts that ended, by when (`Broadcast::ended_at`): the next to leave
    /// first.
    ended: BTreeSet<(OffsetDateTime, Uuid)>,
    /// How long an ended broadcast stays, in seconds ([`DEFAULT_RETENTION`] unless set by
    /// [`Situation::with_retention`]).
    retention_secs: u64,
    /// The latest time seen: an event's `recorded_at` or a tick's (`retention`).
    clock: Option<OffsetDateTime>,
    /// Newest first, at most [`TIMELINE_LIMIT`].
    timeline: VecDeque<TimelineItem>,
}

/// The entry of `country` in `countries`, created if needed, marked as touched by this event.
/// (A free function, so that it can borrow the countries while an incident is borrowed.)
fn touch<'a>(
    countries: &'a mut BTreeMap<Code, CountryState>,
    country: Country,
    fx: &mut Effects,
) -> &'a mut CountryState {
    let code = Code::of(country);
    let (existed, state) = match countries.entry(code) {
        Entry::Occupied(o) => (true, o.into_mut()),
        Entry::Vacant(v) => (false, v.insert(CountryState::default())),
    };
    if !fx.countries.iter().any(|(c, _)| c == code) {
        fx.countries.push((code, existed));
    }
    state
}

/// What the event being folded touched so far.
#[derive(Default)]
struct Effects {
    /// Countries touched, with whether each had an entry before the event.
    countries: Few<(Code, bool)>,
    /// The family of the event (set when it is one the board shows).
    family: Option<Family>,
    /// The area a level event set.
    area: Option<String>,
    broadcasts: bool,
    detail: Detail,
    timeline: bool,
}

/// The coordinates of the event being folded.
#[derive(Clone, Copy)]
struct At {
    /// The stream's id: the id of the incident, case, surge, order or broadcast.
    id: Uuid,
    position: u64,
    time: OffsetDateTime,
}

impl Default for Situation {
    fn default() -> Self {
        Self::new()
    }
}

impl Situation {
    /// An empty board (position 0) with the default retention ([`DEFAULT_RETENTION`]).
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// An empty board with no retention set (see [`Situation::with_retention`]).
    fn empty() -> Self {
        Self {
            position: 0,
            as_of: None,
            counters: Counters::default(),
            countries: BTreeMap::new(),
            incidents: HashMap::new(),
            hostage: HashMap::new(),
            surges: HashMap::new(),
            orders: HashMap::new(),
            broadcasts: HashMap::new(),
            broadcast_order: BTreeMap::new(),
            ended: BTreeSet::new(),
            retention_secs: 0,
            clock: None,
            timeline: VecDeque::new(),
        }
    }

    /// The last log position folded in (0 for an empty log).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The `recorded_at` of the last event folded in; render it with [`crate::timestamp`].
    pub fn as_of(&self) -> Option<OffsetDateTime> {
        self.as_of
    }

    /// Folds one event. Events must come in position order; one at or below the current
    /// position is a duplicate and is ignored. Before the event is folded, its `recorded_at`
    /// moves the board's clock and what the retention expired by then leaves (`retention`).
    /// Returns what changed, for [`Situation::delta`].
    pub fn apply(&mut self, event: TypedRecorded) -> Changes {
        if event.position <= self.position {
            return Changes::default();
        }
        self.position = event.position;
        self.as_of = Some(event.recorded_at);
        self.advance_clock(event.recorded_at);
        let expired = self.expire_due();
        let Decoded::Known(domain) = event.event else {
            return Changes {
                expired,
                ..Changes::default()
            };
        };
        let before = self.counters;
        let at = At {
            id: event.stream.id(),
            position: event.position,
            time: event.recorded_at,
        };
        let mut fx = Effects::default();
        self.fold(domain, at, event.actor.as_deref(), &mut fx);

        let mut countries = Few::default();
        for (code, existed) in fx.countries.iter() {
            let now = match self.countries.get(&code) {
                Some(state) if state.is_empty() => {
                    self.countries.remove(&code);
                    false
                }
                Some(_) => true,
                None => false,
            };
            if existed || now {
                countries.push((code.country, existed));
            }
        }
        Changes {
            countries,
            counters: self.counters != before,
            counters_before: before,
            entity: fx.family.map(|f| (f, at.id)),
            area: fx.area,
            broadcasts: fx.broadcasts,
            detail: fx.detail,
            timeline: fx.timeline,
            expired,
        }
    }

    /// Folds one decoded event; `actor` is its `meta.actor` (only a broadcast's issuer is
    /// kept, for the duty view).
    fn fold(&mut self, event: DomainEvent, at: At, actor: Option<&str>, fx: &mut Effects) {
        fx.family = Family::of(event.category());
        if fx.family.is_some_and(|f| self.holds(f, at.id)) && opens(&event) {
            // A second opening event of a stream the board holds: the first one stands.
            return;
        }
        match (fx.family, event) {
            (Some(Family::Incident), event) => self.fold_incident(event, at, fx),
            (Some(Family::Level), DomainEvent::AreaSecurityLevelSet(e)) => {
                self.fold_level(e, at, fx);
            }
            (Some(Family::Hostage), event) => self.fold_hostage(event, at, fx),
            (Some(Family::Surge), event) => self.fold_surge(event, at, fx),
            (Some(Family::Order), event) => self.fold_order(event, at, fx),
            (Some(Family::Broadcast), event) => self.fold_broadcast(event, at, actor, fx),
            _ => {}
        }
    }

    /// Whether the board holds the case `id` of `family` (an open incident, hostage case,
    /// surge or order, or a broadcast).
    fn holds(&self, family: Family, id: Uuid) -> bool {
        match family {
            Family::Incident => self.incidents.contains_key(&id),
            Family::Hostage => self.hostage.contains_key(&id),
            Family::Surge => self.surges.contains_key(&id),
            Family::Order => self.orders.contains_key(&id),
            Family::Broadcast => self.broadcasts.contains_key(&id),
            Family::Level => false,
        }
    }

    /// The entry of `country`, created if needed, marked as touched by this event.
    fn country_mut(&mut self, country: Country, fx: &mut Effects) -> &mut CountryState {
        touch(&mut self.countries, country, fx)
    }

    /// Adds a timeline item for the event being folded.
    fn note(&mut self, at: At, fx: &mut Effects, (kind, country, severity, text): text::Note) {
        self.timeline.push_front(TimelineItem {
            position: at.position,
            at: at.time,
            country,
            kind,
            severity,
            text,
        });
        self.timeline.truncate(TIMELINE_LIMIT);
        fx.timeline = true;
    }
}

#[cfg(test)]
#[test]
fn every_category_of_event_has_a_family_or_is_not_shown() {
    const NOT_SHOWN: [&str; 6] = [
        "clearance",
        "surge_officer",
        "area",
        "station",
        "person",
        "agency",
    ];
    for (event_type, category, _) in DomainEvent::TYPES {
        assert!(
            Family::of(category).is_some() != NOT_SHOWN.contains(category),
            "{event_type}: category {category:?} must be either on the board or NOT_SHOWN"
        );
    }
}
