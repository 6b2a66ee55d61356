//! The situation board (`situation` in MODEL.md): what is going on, country by country, as one
//! duty officer's glance at a wall screen should tell it.
//!
//! This module owns the board's state and its fold. [`Situation::apply`] decodes each event
//! once and updates plain structs keyed by stream id and country; it never builds JSON and never
//! reads a clock (time is each event's `recorded_at`). What an event touched comes back as
//! [`Changes`], which [`Situation::delta`] renders (see `render.rs`) into the few ops that bring
//! a page up to date.
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
//! - Broadcasts never leave the state (an old one may still await acknowledgements), but each
//!   keeps at most [`MAX_AGENCIES`] agencies, and only the newest [`MAX_BROADCASTS`] are
//!   rendered: a change to an older one moves its counters only.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use events::RecordedEvent;
use events::codec::Decoded;
use events::domain::DomainEvent;
use events::domain::broadcast::{Audience, BroadcastSeverity, MAX_AGENCIES};
use events::domain::incident::{Casualties, IncidentCategory, Location};
use events::domain::relocation::{OrderKind, PersonStatus, Scope};
use events::validate::{Country, SecurityLevel, Severity};
use time::OffsetDateTime;
use uuid::Uuid;

mod render;
mod text;

/// Most markers shown per country (the newest open incidents with a location).
pub const MAX_MARKERS: usize = 100;
/// Most broadcasts shown (the newest).
pub const MAX_BROADCASTS: usize = 20;
/// Most timeline items kept (the newest).
pub const TIMELINE_LIMIT: usize = 200;

/// What one event touched on the board, as [`Situation::apply`] returns it and
/// [`Situation::delta`] reads it. Opaque to the gateway: only [`Changes::is_empty`] matters there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Countries whose entry changed, appeared or disappeared (at most two: an incident moved).
    countries: Few<Country>,
    /// Whether any counter changed.
    counters: bool,
    /// Whether the list of the latest broadcasts changed.
    broadcasts: bool,
    /// Which per-agency detail of the listed broadcasts changed (duty view).
    detail: Detail,
    /// Whether a timeline item was added (it is the newest one).
    timeline: bool,
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
    }
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
struct AreaLevel {
    level: SecurityLevel,
    reason: String,
    set_at: OffsetDateTime,
}

/// An open hostage case. Person references are kept only to count who is still held; they are
/// never rendered.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SurgeStatus {
    Requested,
    Approved,
    Deployed,
}

/// An active surge.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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

/// One agency a broadcast goes to: what is known of its delivery and acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reach {
    /// A delivery attempt was made to it: a `BroadcastDeliveryAttempted`, or an outcome
    /// (`BroadcastDelivered`, `BroadcastDeliveryFailed`), any channel, any round.
    sent: bool,
    /// A `BroadcastDelivered` came for it (any channel, any round): its system received it
    /// (a receipt over NATS, a 2xx from its webhook).
    delivered: bool,
    /// A `BroadcastDeliveryFailed` with `gave_up` came for it (any channel, any round).
    gave_up: bool,
    /// Seconds from going live (approval, or issue when it needed none) to its first
    /// acknowledgement; `None` until it acknowledges.
    ack_seconds: Option<i64>,
    /// Named by a `BroadcastResent`.
    resent: bool,
}

impl Reach {
    fn acknowledged(&self) -> bool {
        self.ack_seconds.is_some()
    }

    /// Every attempt over some channel was given up, and nothing shows that it reached the
    /// agency anyway (no delivery over any channel or round, no acknowledgement).
    fn failed(&self) -> bool {
        self.gave_up && !self.delivered && !self.acknowledged()
    }

    /// What the board shows of it, as counted flags: sent, delivered, acknowledged, failed,
    /// resent.
    fn shown(&self) -> [bool; 5] {
        [
            self.sent,
            self.delivered,
            self.acknowledged(),
            self.failed(),
            self.resent,
        ]
    }
}

/// A broadcast's share of the board-wide counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Share {
    awaiting_ack: bool,
    awaiting_approval: bool,
    failed: u64,
}

/// Adds (or removes) a broadcast's share of the counters.
fn count_broadcast(counters: &mut Counters, share: Share, add: bool) {
    bump(
        &mut counters.broadcasts_awaiting_ack,
        add,
        u64::from(share.awaiting_ack),
    );
    bump(
        &mut counters.broadcasts_awaiting_approval,
        add,
        u64::from(share.awaiting_approval),
    );
    bump(&mut counters.broadcast_deliveries_failed, add, share.failed);
}

/// Where a broadcast is in its life (as the broadcast service sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BroadcastStatus {
    /// Waiting for a second duty officer; nothing is sent.
    AwaitingApproval,
    /// Being sent and acknowledged.
    Live,
    /// Withdrawn.
    Cancelled,
}

/// A broadcast, issued at some point; kept while the board may show or count it.
#[derive(Debug, Clone)]
struct Broadcast {
    /// Its index in `Situation::broadcast_order`.
    seq: usize,
    title: String,
    severity: BroadcastSeverity,
    exercise: bool,
    issued_at: OffsetDateTime,
    /// The issue's `meta.actor` (duty view only).
    issued_by: Option<String>,
    requires_ack: bool,
    ack_deadline: Option<OffsetDateTime>,
    /// It must be approved by a second duty officer before it goes out.
    needs_approval: bool,
    /// Who approved it (duty view only) and when: the first `BroadcastApproved` stands.
    approved: Option<(String, OffsetDateTime)>,
    /// For the centre only (duty officers): no agency receives it.
    internal: bool,
    /// The rule that issued it.
    rule: Option<String>,
    /// The country when the audience is a country (for the timeline).
    country: Option<Country>,
    /// Whether `agencies` is the whole audience, fixed when issued (its `recipients`, or the
    /// named list of an older event; empty for an internal one): other agencies are ignored.
    /// Otherwise (an older event for all agencies or a country) an agency joins when a
    /// delivery or an acknowledgement names it.
    fixed: bool,
    /// At most [`MAX_AGENCIES`] agencies, by id; the total is their number.
    agencies: BTreeMap<String, Reach>,
    /// Agencies sent to, delivered to, acknowledged, finally failed, sent again: kept with
    /// `agencies`.
    sent: u64,
    delivered: u64,
    acked: u64,
    failed: u64,
    resent: u64,
    /// Number of `BroadcastEscalated` events.
    escalations: u64,
    /// Number of `BroadcastTriggerSuppressed` events: rule triggers this broadcast damped.
    suppressed: u64,
    cancelled: bool,
}

impl Broadcast {
    fn total(&self) -> u64 {
        self.agencies.len() as u64
    }

    fn status(&self) -> BroadcastStatus {
        if self.cancelled {
            BroadcastStatus::Cancelled
        } else if self.needs_approval && self.approved.is_none() {
            BroadcastStatus::AwaitingApproval
        } else {
            BroadcastStatus::Live
        }
    }

    fn awaiting_ack(&self) -> bool {
        self.status() == BroadcastStatus::Live
            && self.requires_ack
            && !self.internal
            && (self.total() == 0 || self.acked < self.total())
    }

    /// Its share of the board-wide counters.
    fn share(&self) -> Share {
        let status = self.status();
        Share {
            awaiting_ack: self.awaiting_ack(),
            awaiting_approval: status == BroadcastStatus::AwaitingApproval,
            failed: if status == BroadcastStatus::Live {
                self.failed
            } else {
                0
            },
        }
    }

    /// When it went live: its approval, or its issue when none came.
    fn live_since(&self) -> OffsetDateTime {
        self.approved.as_ref().map_or(self.issued_at, |(_, at)| *at)
    }

    /// Changes what is known of `agency` with `change`, keeping the counts in step. An agency
    /// outside a fixed audience is ignored; an open audience takes it in when the change
    /// shows something (up to [`MAX_AGENCIES`]). Returns whether anything shown changed.
    fn reach(&mut self, agency: String, change: impl FnOnce(&mut Reach)) -> bool {
        let room = self.agencies.len() < MAX_AGENCIES;
        let (before, after) = match self.agencies.entry(agency) {
            Entry::Occupied(o) => {
                let r = o.into_mut();
                let before = r.shown();
                change(r);
                (before, r.shown())
            }
            Entry::Vacant(v) if !self.fixed && room => {
                let mut r = Reach::default();
                change(&mut r);
                if r == Reach::default() {
                    return false;
                }
                let after = v.insert(r).shown();
                // A new agency: the total changed even if it shows no flag.
                self.count_reach([false; 5], after);
                return true;
            }
            Entry::Vacant(_) => return false,
        };
        self.count_reach(before, after);
        before != after
    }

    fn count_reach(&mut self, before: [bool; 5], after: [bool; 5]) {
        let counts = [
            &mut self.sent,
            &mut self.delivered,
            &mut self.acked,
            &mut self.failed,
            &mut self.resent,
        ];
        for ((n, was), now) in counts.into_iter().zip(before).zip(after) {
            if was != now {
                bump(n, now, 1);
            }
        }
    }
}

/// One country's entry: what it shows, with its incident counts kept incrementally.
#[derive(Debug, Clone, Default)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Incident,
    Level,
    Hostage,
    Surge,
    Order,
    Broadcast,
}

/// How much a timeline item matters, as text on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Urgency {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

/// One timeline entry; its text is written when the event is folded (it needs the state of
/// that moment) and never names a person.
#[derive(Debug, Clone)]
struct TimelineItem {
    position: u64,
    at: OffsetDateTime,
    country: Option<Country>,
    kind: Kind,
    severity: Urgency,
    text: String,
}

/// The situation board: a pure fold of the event log. See the module docs and MODEL.md.
#[derive(Debug, Clone, Default)]
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
    /// Every broadcast issued, by stream id (they never close: an old one may still await
    /// acknowledgements).
    broadcasts: HashMap<Uuid, Broadcast>,
    /// Broadcast ids in the order issued; the last [`MAX_BROADCASTS`] are shown.
    broadcast_order: Vec<Uuid>,
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

/// Adds (or, with `add` false, removes) an open incident's share of its country's entry and of
/// the counters.
fn count_incident(
    countries: &mut BTreeMap<Code, CountryState>,
    counters: &mut Counters,
    fx: &mut Effects,
    id: Uuid,
    incident: &Incident,
    add: bool,
) {
    let state = touch(countries, incident.country, fx);
    bump(&mut state.open, add, 1);
    let severity = usize::from(incident.severity.get().clamp(1, 5)) - 1;
    bump(&mut state.by_severity[severity], add, 1);
    if !incident.verified {
        bump(&mut state.unverified, add, 1);
    }
    if incident.location.is_some() {
        if add {
            state.markers.insert(incident.reported_at, id);
        } else {
            state.markers.remove(&incident.reported_at);
        }
    }
    bump(&mut counters.open_incidents, add, 1);
    if !incident.verified {
        bump(&mut counters.unverified_incidents, add, 1);
    }
    if let Some(cas) = incident.casualties {
        bump(&mut counters.casualties_killed, add, u64::from(cas.killed));
        bump(
            &mut counters.casualties_injured,
            add,
            u64::from(cas.injured),
        );
    }
}

/// What the event being folded touched so far.
#[derive(Default)]
struct Effects {
    /// Countries touched, with whether each had an entry before the event.
    countries: Few<(Code, bool)>,
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

impl Situation {
    /// An empty board (position 0).
    pub fn new() -> Self {
        Self::default()
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
    /// position is a duplicate and is ignored. Returns what changed, for [`Situation::delta`].
    pub fn apply(&mut self, event: &RecordedEvent) -> Changes {
        if event.position <= self.position {
            return Changes::default();
        }
        self.position = event.position;
        self.as_of = Some(event.recorded_at);
        let Decoded::Known(domain) = DomainEvent::decode(event) else {
            return Changes::default();
        };
        let before = self.counters;
        let at = At {
            id: event.stream.id(),
            position: event.position,
            time: event.recorded_at,
        };
        let mut fx = Effects::default();
        self.fold(domain, at, event.meta.actor.as_deref(), &mut fx);

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
                countries.push(code.country);
            }
        }
        Changes {
            countries,
            counters: self.counters != before,
            broadcasts: fx.broadcasts,
            detail: fx.detail,
            timeline: fx.timeline,
        }
    }

    /// Folds one decoded event; `actor` is its `meta.actor` (only a broadcast's issuer is
    /// kept, for the duty view).
    fn fold(&mut self, event: DomainEvent, at: At, actor: Option<&str>, fx: &mut Effects) {
        use DomainEvent as E;
        match event {
            E::IncidentReported(e) => {
                if self.incidents.contains_key(&at.id) {
                    return;
                }
                let incident = Incident {
                    country: e.country,
                    reported_at: at.position,
                    category: e.category,
                    severity: e.severity,
                    title: e.title,
                    occurred_at: e.occurred_at,
                    location: e.location,
                    description: e.description,
                    casualties: e.casualties,
                    reporter: e.reporter,
                    verified: false,
                };
                let c = (&mut self.countries, &mut self.counters);
                count_incident(c.0, c.1, fx, at.id, &incident, true);
                let item = text::incident_reported(&incident);
                self.incidents.insert(at.id, incident);
                self.note(at, fx, item);
            }
            E::IncidentUpdated(e) => {
                let Some(incident) = self.incidents.get_mut(&at.id) else {
                    return;
                };
                let c = (&mut self.countries, &mut self.counters);
                count_incident(c.0, c.1, fx, at.id, incident, false);
                if let Some(c) = e.country {
                    incident.country = c;
                }
                if let Some(c) = e.category {
                    incident.category = c;
                }
                if let Some(s) = e.severity {
                    incident.severity = s;
                }
                if let Some(t) = e.title {
                    incident.title = t;
                }
                if let Some(t) = e.occurred_at {
                    incident.occurred_at = t;
                }
                if let Some(l) = e.location {
                    incident.location = Some(l);
                }
                if let Some(d) = e.description {
                    incident.description = Some(d);
                }
                if let Some(c) = e.casualties {
                    incident.casualties = Some(c);
                }
                count_incident(c.0, c.1, fx, at.id, incident, true);
            }
            E::IncidentVerified(_) => {
                let Some(incident) = self.incidents.get_mut(&at.id) else {
                    return;
                };
                if !incident.verified {
                    let c = (&mut self.countries, &mut self.counters);
                    count_incident(c.0, c.1, fx, at.id, incident, false);
                    incident.verified = true;
                    count_incident(c.0, c.1, fx, at.id, incident, true);
                }
                let item = text::incident_verified(incident);
                self.note(at, fx, item);
            }
            E::IncidentEscalated(e) => {
                if let Some(incident) = self.incidents.get(&at.id) {
                    let item = text::incident_escalated(incident, e.to.kind);
                    self.note(at, fx, item);
                }
            }
            E::IncidentClosed(_) => {
                if let Some(incident) = self.incidents.remove(&at.id) {
                    let c = (&mut self.countries, &mut self.counters);
                    count_incident(c.0, c.1, fx, at.id, &incident, false);
                    self.note(at, fx, text::incident_closed(&incident));
                }
            }
            E::AreaSecurityLevelSet(e) => {
                let state = self.country_mut(e.country, fx);
                let was = state.level;
                let previous = state
                    .areas
                    .get(&e.area)
                    .map(|a| a.level)
                    .or(e.previous_level);
                let item = text::level_set(&e.area, e.country, e.level, previous);
                state.areas.insert(
                    e.area,
                    AreaLevel {
                        level: e.level,
                        reason: e.reason,
                        set_at: at.time,
                    },
                );
                state.level = state.areas.values().map(|a| a.level).max();
                let high = |l: Option<SecurityLevel>| l >= Some(SecurityLevel::High);
                let now = state.level;
                if high(was) != high(now) {
                    bump(&mut self.counters.countries_level_5_plus, high(now), 1);
                }
                self.note(at, fx, item);
            }
            E::HostageCaseOpened(e) => {
                if self.hostage.contains_key(&at.id) {
                    return;
                }
                let held: HashSet<String> = e.persons.into_iter().collect();
                let n = held.len() as u64;
                let state = self.country_mut(e.country, fx);
                state.hostage_cases.insert(at.position, at.id);
                bump(&mut state.persons_held, true, n);
                bump(&mut self.counters.hostage_cases, true, 1);
                bump(&mut self.counters.persons_held, true, n);
                self.note(at, fx, text::hostage_opened(e.country, n));
                self.hostage.insert(
                    at.id,
                    HostageCase {
                        country: e.country,
                        opened_pos: at.position,
                        opened_at: at.time,
                        held,
                        released: 0,
                        deceased: 0,
                    },
                );
            }
            E::HostageReleased(e) => {
                if let Some((country, still)) = self.free_hostage(at.id, &e.person, true, fx) {
                    self.note(at, fx, text::hostage_released(country, still));
                }
            }
            E::HostageDeceased(e) => {
                self.free_hostage(at.id, &e.person, false, fx);
            }
            E::HostageCaseClosed(_) => {
                let Some(case) = self.hostage.remove(&at.id) else {
                    return;
                };
                let n = case.held.len() as u64;
                let state = self.country_mut(case.country, fx);
                state.hostage_cases.remove(&case.opened_pos);
                bump(&mut state.persons_held, false, n);
                bump(&mut self.counters.hostage_cases, false, 1);
                bump(&mut self.counters.persons_held, false, n);
                self.note(at, fx, text::hostage_closed(case.country));
            }
            E::ProofOfLifeReceived(_) | E::NegotiationContactLogged(_) => {}
            E::SurgeRequested(e) => {
                if self.surges.contains_key(&at.id) {
                    return;
                }
                let surge = Surge {
                    country: e.country,
                    requested_pos: at.position,
                    duty_station: e.duty_station,
                    status: SurgeStatus::Requested,
                    officers_needed: e.officers_needed,
                    officers_assigned: 0,
                    away_from: BTreeMap::new(),
                };
                self.country_mut(e.country, fx)
                    .surges
                    .insert(at.position, at.id);
                bump(&mut self.counters.active_surges, true, 1);
                self.note(at, fx, text::surge_requested(&surge));
                self.surges.insert(at.id, surge);
            }
            E::SurgeApproved(_) => self.advance_surge(at.id, SurgeStatus::Approved, fx),
            E::SurgeDeployed(_) => {
                self.advance_surge(at.id, SurgeStatus::Deployed, fx);
                if let Some(surge) = self.surges.get(&at.id) {
                    let item = text::surge_deployed(surge);
                    self.note(at, fx, item);
                }
            }
            E::SurgeOfficerAssigned(e) => {
                if let Some(surge) = self.surges.get_mut(&at.id) {
                    bump(&mut surge.officers_assigned, true, 1);
                    *surge.away_from.entry(e.from_duty_station).or_default() += 1;
                    let country = surge.country;
                    self.country_mut(country, fx);
                }
            }
            E::SurgeRejected(_) | E::SurgeCompleted(_) => {
                self.end_surge(at.id, fx);
            }
            E::SurgeCancelled(_) => {
                // Only a surge not yet deployed is cancelled (as the service decides); the
                // timeline says so, without the reason (free text may name someone).
                let cancellable = self
                    .surges
                    .get(&at.id)
                    .is_some_and(|s| s.status < SurgeStatus::Deployed);
                if cancellable && let Some(surge) = self.end_surge(at.id, fx) {
                    self.note(at, fx, text::surge_cancelled(&surge));
                }
            }
            E::RelocationOrdered(e) => {
                if self.orders.contains_key(&at.id) {
                    return;
                }
                let order = Order {
                    country: e.country,
                    ordered_pos: at.position,
                    kind: e.kind,
                    scope: e.scope,
                    area: e.area,
                    duty_station: e.duty_station,
                    destination: e.destination,
                    deadline: e.deadline,
                    roll: HashMap::new(),
                    late: HashSet::new(),
                    left: HashSet::new(),
                    accounted: 0,
                    missing: 0,
                };
                self.country_mut(e.country, fx)
                    .orders
                    .insert(at.position, at.id);
                bump(&mut self.counters.active_orders, true, 1);
                self.note(at, fx, text::order_issued(&order));
                self.orders.insert(at.id, order);
            }
            E::RollCallEntryAdded(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if order.roll.contains_key(&e.person) {
                    // On it from the order after all (a large roll call is written in
                    // chunks): not a late arrival.
                    if order.late.remove(&e.person) {
                        let country = order.country;
                        self.country_mut(country, fx);
                    }
                    return;
                }
                order.roll.insert(e.person, None);
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonArrivedInArea(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if order.roll.contains_key(&e.person) {
                    // Back in the area.
                    if !order.left.remove(&e.person) {
                        return;
                    }
                } else {
                    order.roll.insert(e.person.clone(), None);
                    order.late.insert(e.person);
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonLeftArea(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                if !order.roll.contains_key(&e.person) || !order.left.insert(e.person) {
                    return;
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::PersonMarked(e) => {
                let Some(order) = self.orders.get_mut(&at.id) else {
                    return;
                };
                // A mark for someone not on the roll call puts them on it: a person marked
                // missing must count even if the roll call entry never arrived.
                let before = order.roll.insert(e.person, Some(e.status)).flatten();
                for (status, add) in [(before, false), (Some(e.status), true)] {
                    match status {
                        Some(
                            PersonStatus::Safe | PersonStatus::Relocated | PersonStatus::Injured,
                        ) => {
                            bump(&mut order.accounted, add, 1);
                        }
                        Some(PersonStatus::Missing) => bump(&mut order.missing, add, 1),
                        None => {}
                    }
                }
                let country = order.country;
                self.country_mut(country, fx);
            }
            E::OrderCompleted(_) => self.end_order(at, fx, true),
            E::OrderRescinded(_) => self.end_order(at, fx, false),
            E::ClearanceRequested(_)
            | E::ClearanceApproved(_)
            | E::ClearanceRefused(_)
            | E::ArrivalRecorded(_)
            | E::DepartureRecorded(_)
            // Reference data: the board shows areas by their levels, not their records.
            | E::AreaRegistered(_)
            | E::DutyStationRegistered(_)
            | E::PersonRegistered(_)
            | E::AgencyRegistered(_) => {}
            E::BroadcastIssued(e) => {
                // A broadcast to crisis managers is theirs alone (the broadcast service hides
                // it from duty officers): the board, seen by duty officers and visitors, never
                // shows it, and its later events are of a stream the board does not know.
                if self.broadcasts.contains_key(&at.id) || e.audience == Audience::CrisisManagers
                {
                    return;
                }
                let needs_approval = e.needs_second_person()
                    // An older event, issued before recipients were resolved and before the
                    // two-person rule: it went out when issued.
                    && (e.audience.is_internal() || !e.recipients.is_empty());
                let internal = e.audience.is_internal();
                let (fixed, listed, country) = match e.audience {
                    _ if internal => (true, Vec::new(), None),
                    Audience::Country(c) => (!e.recipients.is_empty(), e.recipients, Some(c)),
                    Audience::Agencies(named) if e.recipients.is_empty() => (true, named, None),
                    _ => (!e.recipients.is_empty(), e.recipients, None),
                };
                let agencies = listed
                    .into_iter()
                    .map(|a| (a, Reach::default()))
                    .take(MAX_AGENCIES)
                    .collect();
                let broadcast = Broadcast {
                    seq: self.broadcast_order.len(),
                    title: e.title,
                    severity: e.severity,
                    exercise: e.exercise,
                    issued_at: at.time,
                    issued_by: actor.map(str::to_owned),
                    requires_ack: e.requires_ack,
                    ack_deadline: e.ack_deadline,
                    needs_approval,
                    approved: None,
                    internal,
                    rule: e.rule.map(|f| f.rule),
                    country,
                    fixed,
                    agencies,
                    sent: 0,
                    delivered: 0,
                    acked: 0,
                    failed: 0,
                    resent: 0,
                    escalations: 0,
                    suppressed: 0,
                    cancelled: false,
                };
                count_broadcast(&mut self.counters, broadcast.share(), true);
                self.broadcast_order.push(at.id);
                let dropped = self
                    .broadcast_order
                    .len()
                    .checked_sub(MAX_BROADCASTS + 1)
                    .and_then(|i| self.broadcast_order.get(i))
                    .copied();
                fx.broadcasts = true;
                fx.detail = Detail::Listed {
                    added: at.id,
                    dropped,
                };
                self.note(at, fx, text::broadcast_issued(&broadcast));
                self.broadcasts.insert(at.id, broadcast);
            }
            E::BroadcastApproved(e) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    b.approved.is_none() && {
                        b.approved = Some((e.by, at.time));
                        true
                    }
                });
                let item = self.broadcasts.get(&at.id).filter(|_| changed);
                if let Some(item) = item.map(text::broadcast_approved) {
                    self.note(at, fx, item);
                }
            }
            // A claim: the broadcast is being sent to the agency (the outcome follows).
            E::BroadcastDeliveryAttempted(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| b.reach(e.agency, |r| r.sent = true));
            }
            E::BroadcastDelivered(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| {
                    b.reach(e.agency, |r| {
                        r.sent = true;
                        r.delivered = true;
                    })
                });
            }
            E::BroadcastDeliveryFailed(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                if !e.gave_up {
                    // Another attempt follows: it was sent, nothing more.
                    self.change_broadcast(at, fx, detail, |b| {
                        b.reach(e.agency, |r| r.sent = true)
                    });
                    return;
                }
                let agency = e.agency.clone();
                let mut newly_failed = false;
                self.change_broadcast(at, fx, detail, |b| {
                    let was = b.agencies.get(&agency).is_some_and(Reach::failed);
                    let changed = b.reach(e.agency, |r| {
                        r.sent = true;
                        r.gave_up = true;
                    });
                    newly_failed = !was
                        && b.status() == BroadcastStatus::Live
                        && b.agencies.get(&agency).is_some_and(Reach::failed);
                    changed
                });
                let item = self.broadcasts.get(&at.id).filter(|_| newly_failed);
                if let Some(item) = item.map(|b| text::broadcast_not_delivered(b, &agency)) {
                    self.note(at, fx, item);
                }
            }
            E::BroadcastAcknowledged(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| {
                    let seconds = (at.time - b.live_since()).whole_seconds();
                    b.reach(e.agency, |r| {
                        r.ack_seconds.get_or_insert(seconds);
                    })
                });
            }
            E::BroadcastResent(e) => {
                self.change_broadcast(at, fx, Detail::Broadcast(at.id), |b| {
                    let mut changed = false;
                    for agency in e.agencies {
                        changed |= b.reach(agency, |r| r.resent = true);
                    }
                    changed
                });
            }
            E::BroadcastEscalated(_) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    b.escalations = b.escalations.saturating_add(1);
                    true
                });
                // The first escalation only: a second one says nothing new on the timeline.
                let item = self
                    .broadcasts
                    .get(&at.id)
                    .filter(|b| changed && b.escalations == 1);
                if let Some(item) = item.map(text::broadcast_escalated) {
                    self.note(at, fx, item);
                }
            }
            E::BroadcastTriggerSuppressed(_) => {
                self.change_broadcast(at, fx, Detail::None, |b| {
                    b.suppressed = b.suppressed.saturating_add(1);
                    true
                });
            }
            E::BroadcastCancelled(_) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    !std::mem::replace(&mut b.cancelled, true)
                });
                let item = self.broadcasts.get(&at.id).filter(|_| changed);
                if let Some(item) = item.map(text::broadcast_cancelled) {
                    self.note(at, fx, item);
                }
            }
        }
    }

    /// The entry of `country`, created if needed, marked as touched by this event.
    fn country_mut(&mut self, country: Country, fx: &mut Effects) -> &mut CountryState {
        touch(&mut self.countries, country, fx)
    }

    /// A person of a hostage case is no longer held: `released`, or else deceased. Returns the
    /// case's country and how many are still held, or `None` if the case or the person is
    /// unknown (or no longer held: the first release or death stands).
    fn free_hostage(
        &mut self,
        id: Uuid,
        person: &str,
        released: bool,
        fx: &mut Effects,
    ) -> Option<(Country, u64)> {
        let case = self.hostage.get_mut(&id)?;
        if !case.held.remove(person) {
            return None;
        }
        bump(
            if released {
                &mut case.released
            } else {
                &mut case.deceased
            },
            true,
            1,
        );
        let (country, still) = (case.country, case.held.len() as u64);
        bump(&mut self.country_mut(country, fx).persons_held, false, 1);
        bump(&mut self.counters.persons_held, false, 1);
        Some((country, still))
    }

    /// A surge leaves the board (rejected, completed or cancelled); returns it.
    fn end_surge(&mut self, id: Uuid, fx: &mut Effects) -> Option<Surge> {
        let surge = self.surges.remove(&id)?;
        self.country_mut(surge.country, fx)
            .surges
            .remove(&surge.requested_pos);
        bump(&mut self.counters.active_surges, false, 1);
        Some(surge)
    }

    /// Moves a surge forward to `status` (never back).
    fn advance_surge(&mut self, id: Uuid, status: SurgeStatus, fx: &mut Effects) {
        let surge = self.surges.get_mut(&id).filter(|s| s.status < status);
        if let Some(surge) = surge {
            surge.status = status;
            let country = surge.country;
            self.country_mut(country, fx);
        }
    }

    /// Ends an order: completed, or rescinded.
    fn end_order(&mut self, at: At, fx: &mut Effects, completed: bool) {
        let Some(order) = self.orders.remove(&at.id) else {
            return;
        };
        self.country_mut(order.country, fx)
            .orders
            .remove(&order.ordered_pos);
        bump(&mut self.counters.active_orders, false, 1);
        self.note(at, fx, text::order_ended(&order, completed));
    }

    /// Changes a known broadcast with `change` (which says whether it changed anything) and
    /// keeps its share of the counters, the broadcast list and its per-agency `detail` in
    /// step. Returns whether the broadcast is known and changed.
    fn change_broadcast(
        &mut self,
        at: At,
        fx: &mut Effects,
        detail: Detail,
        change: impl FnOnce(&mut Broadcast) -> bool,
    ) -> bool {
        let Some(b) = self.broadcasts.get_mut(&at.id) else {
            return false;
        };
        let was = b.share();
        if !change(b) {
            return false;
        }
        let now = b.share();
        if was != now {
            count_broadcast(&mut self.counters, was, false);
            count_broadcast(&mut self.counters, now, true);
        }
        if b.seq + MAX_BROADCASTS >= self.broadcast_order.len() {
            fx.broadcasts = true;
            fx.detail = detail;
        }
        true
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

    /// Recounts everything kept incrementally from the open cases, and checks the structural
    /// promises (no empty country, markers match located incidents). For tests.
    #[cfg(test)]
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut counters = Counters::default();
        let mut expect: BTreeMap<Code, CountryState> = BTreeMap::new();
        for (country, state) in &self.countries {
            let e = expect.entry(*country).or_default();
            e.areas = state.areas.clone();
            e.level = state.areas.values().map(|a| a.level).max();
            if e.level >= Some(SecurityLevel::High) {
                counters.countries_level_5_plus += 1;
            }
        }
        for (id, i) in &self.incidents {
            let e = expect.entry(Code::of(i.country)).or_default();
            e.open += 1;
            e.by_severity[usize::from(i.severity.get()) - 1] += 1;
            counters.open_incidents += 1;
            if !i.verified {
                e.unverified += 1;
                counters.unverified_incidents += 1;
            }
            if i.location.is_some() {
                e.markers.insert(i.reported_at, *id);
            }
            if let Some(c) = i.casualties {
                counters.casualties_killed += u64::from(c.killed);
                counters.casualties_injured += u64::from(c.injured);
            }
        }
        for (id, h) in &self.hostage {
            let e = expect.entry(Code::of(h.country)).or_default();
            e.hostage_cases.insert(h.opened_pos, *id);
            e.persons_held += h.held.len() as u64;
            counters.hostage_cases += 1;
            counters.persons_held += h.held.len() as u64;
        }
        for (id, s) in &self.surges {
            expect
                .entry(Code::of(s.country))
                .or_default()
                .surges
                .insert(s.requested_pos, *id);
            counters.active_surges += 1;
        }
        for (id, o) in &self.orders {
            expect
                .entry(Code::of(o.country))
                .or_default()
                .orders
                .insert(o.ordered_pos, *id);
            counters.active_orders += 1;
            let accounted = o
                .roll
                .values()
                .filter(|s| {
                    matches!(
                        s,
                        Some(PersonStatus::Safe | PersonStatus::Relocated | PersonStatus::Injured)
                    )
                })
                .count() as u64;
            let missing = o
                .roll
                .values()
                .filter(|s| matches!(s, Some(PersonStatus::Missing)))
                .count() as u64;
            if (accounted, missing) != (o.accounted, o.missing) {
                return Err(format!("order {id}: roll call counts drifted"));
            }
            if o.late
                .iter()
                .chain(&o.left)
                .any(|p| !o.roll.contains_key(p))
            {
                return Err(format!(
                    "order {id}: a late arrival or a leaver is not on the roll call"
                ));
            }
        }
        for (id, b) in &self.broadcasts {
            let count = |flag: usize| b.agencies.values().filter(|r| r.shown()[flag]).count();
            let kept = [b.sent, b.delivered, b.acked, b.failed, b.resent];
            if (0..5).any(|flag| kept[flag] != count(flag) as u64) {
                return Err(format!("broadcast {id}: agency counts drifted: {kept:?}"));
            }
            if b.agencies.len() > MAX_AGENCIES {
                return Err(format!("broadcast {id} outgrew {MAX_AGENCIES} agencies"));
            }
            count_broadcast(&mut counters, b.share(), true);
        }
        if counters != self.counters {
            return Err(format!(
                "counters drifted: kept {:?}, recounted {counters:?}",
                self.counters
            ));
        }
        for (country, e) in &expect {
            let Some(s) = self.countries.get(country) else {
                return Err(format!(
                    "{} has something to show but no entry",
                    country.country
                ));
            };
            let same = s.level == e.level
                && s.open == e.open
                && s.unverified == e.unverified
                && s.by_severity == e.by_severity
                && s.markers == e.markers
                && s.hostage_cases == e.hostage_cases
                && s.persons_held == e.persons_held
                && s.surges == e.surges
                && s.orders == e.orders;
            if !same {
                return Err(format!("{}: kept {s:?}, recounted {e:?}", country.country));
            }
        }
        if let Some(c) = self.countries.keys().find(|c| !expect.contains_key(c)) {
            return Err(format!("{} has an entry but nothing to show", c.country));
        }
        if self.countries.values().any(CountryState::is_empty) {
            return Err("an empty country entry was kept".into());
        }
        if self.timeline.len() > TIMELINE_LIMIT {
            return Err("the timeline outgrew its limit".into());
        }
        Ok(())
    }
}
