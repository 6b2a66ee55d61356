//! The surge aggregate: pure decide and apply over one `surge-<id>` stream, and the register
//! of all surges that answers lists and knows which officer is on which surge. No I/O, no
//! clock.
//!
//! # Life of a surge
//! `requested` (a duty station asks for officers and assets) → `approved` or `rejected` (a
//! crisis manager decides) → officers assigned from other duty stations (while approved, and
//! while deployed to reinforce, never more than were asked for) → `deployed` (at least one
//! officer) → `completed` (the officers go home). A rejected or completed surge refuses every
//! change. Each refusal says why and what to do instead.
//!
//! # Officers
//! An officer is a person registered (reference data, `PersonRegistered`) as a security
//! officer. Their `from_duty_station` is their registered station, never the caller's word;
//! they are never sent to their own station; and they are on at most one *active* surge
//! (approved or deployed) at a time: the [`Register`] knows who is where. Completion or
//! rejection frees them.
//!
//! # The gap
//! An officer on an active surge is away from the station they came from: [`away_from`]
//! counts them per station (what the board shows as a surge's `away_from`), and [`gaps`] does
//! it for every active surge of the register.
//!
//! # Scope
//! A field officer requests surges only for a station of their own country and sees only
//! surges in their own country: another country's surge is `not_found` (its existence is not
//! revealed).

use std::collections::{BTreeMap, HashMap};

use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::person::PersonRegistered;
use events::domain::station::DutyStationRegistered;
use events::domain::surge::{
    SurgeApproved, SurgeCancelled, SurgeCompleted, SurgeDeployed, SurgeOfficerAssigned,
    SurgeRejected, SurgeRequested,
};
use events::validate::Country;
use events::{Decoded, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a surge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Asked for, not yet decided.
    Requested,
    /// Approved: officers may be assigned.
    Approved,
    /// Rejected; no more changes.
    Rejected,
    /// The team is at the station.
    Deployed,
    /// The mission ended, the officers went home; no more changes.
    Completed,
    /// Called off before deployment (no longer needed); its officers are free again; no more
    /// changes.
    Cancelled,
}

impl Status {
    /// Whether officers on the surge are away from their stations (approved or deployed).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Approved | Status::Deployed)
    }

    /// The status as written in answers and filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Deployed => "deployed",
            Status::Completed => "completed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// An officer on a surge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The officer's person id.
    pub officer: String,
    /// The duty station they came from (their registered station when assigned).
    pub from_duty_station: String,
    /// When the assignment was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub assigned_at: OffsetDateTime,
}

/// A surge as its stream tells it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Surge {
    /// The surge's id (the stream is `surge-<id>`).
    pub id: Uuid,
    /// The duty station that needs help.
    pub duty_station: String,
    /// Its country.
    pub country: Country,
    /// Why.
    pub reason: String,
    /// How many officers were asked for.
    pub officers_needed: u16,
    /// Assets asked for.
    pub assets: Vec<String>,
    /// Where it is in its life.
    pub status: Status,
    /// Who asked (the request's actor).
    pub requested_by: Option<String>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub rejected_reason: Option<String>,
    /// Who cancelled it.
    #[serde(default)]
    pub cancelled_by: Option<String>,
    /// Why it was cancelled.
    #[serde(default)]
    pub cancelled_reason: Option<String>,
    /// The officers assigned, in order of assignment.
    pub officers: Vec<Assignment>,
    /// When the team was deployed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub deployed_at: Option<OffsetDateTime>,
    /// When the mission ended.
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<OffsetDateTime>,
    /// Log position of the request.
    pub position: u64,
    /// When the centre received the request.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

impl Surge {
    /// Folds a stream's events; `None` when the stream holds no request.
    pub fn fold(events: &[RecordedEvent]) -> Option<Surge> {
        let mut state = None;
        for e in events {
            apply(&mut state, e);
        }
        state
    }

    /// Whether `officer` is assigned to this surge.
    pub fn has_officer(&self, officer: &str) -> bool {
        self.officers.iter().any(|a| a.officer == officer)
    }

    /// Whether it can still change.
    pub fn is_open(&self) -> bool {
        !matches!(
            self.status,
            Status::Rejected | Status::Completed | Status::Cancelled
        )
    }
}

/// Applies one recorded event of the surge's stream. The log is the truth: an event that
/// the aggregate would not have decided (a second approval) moves only the version on.
pub fn apply(state: &mut Option<Surge>, recorded: &RecordedEvent) {
    let event = match DomainEvent::decode(recorded) {
        Decoded::Known(e) => e,
        // Unknown types are kept in the log; the aggregate only moves its version on.
        Decoded::Unknown { .. } => {
            if let Some(s) = state.as_mut() {
                s.version = recorded.version;
            }
            return;
        }
    };
    if let DomainEvent::SurgeRequested(r) = event {
        if state.is_none() {
            *state = Some(Surge {
                id: recorded.stream.id(),
                duty_station: r.duty_station,
                country: r.country,
                reason: r.reason,
                officers_needed: r.officers_needed,
                assets: r.assets,
                status: Status::Requested,
                requested_by: recorded.meta.actor.clone(),
                decided_by: None,
                rejected_reason: None,
                cancelled_by: None,
                cancelled_reason: None,
                officers: vec![],
                deployed_at: None,
                completed_at: None,
                position: recorded.position,
                requested_at: recorded.recorded_at,
                updated_at: recorded.recorded_at,
                version: recorded.version,
            });
        }
        return;
    }
    let Some(s) = state.as_mut() else { return };
    s.version = recorded.version;
    s.updated_at = recorded.recorded_at;
    match event {
        DomainEvent::SurgeApproved(a) if s.status == Status::Requested => {
            s.status = Status::Approved;
            s.decided_by = Some(a.by);
        }
        DomainEvent::SurgeRejected(r) if s.status == Status::Requested => {
            s.status = Status::Rejected;
            s.decided_by = Some(r.by);
            s.rejected_reason = Some(r.reason);
        }
        DomainEvent::SurgeOfficerAssigned(a) if !s.has_officer(&a.officer) => {
            s.officers.push(Assignment {
                officer: a.officer,
                from_duty_station: a.from_duty_station,
                assigned_at: recorded.recorded_at,
            });
        }
        DomainEvent::SurgeDeployed(d) if s.status == Status::Approved => {
            s.status = Status::Deployed;
            s.deployed_at = Some(d.at);
        }
        DomainEvent::SurgeCompleted(c) if s.is_open() => {
            s.status = Status::Completed;
            s.completed_at = Some(c.at);
        }
        DomainEvent::SurgeCancelled(c)
            if matches!(s.status, Status::Requested | Status::Approved) =>
        {
            s.status = Status::Cancelled;
            s.cancelled_by = Some(c.by);
            s.cancelled_reason = Some(c.reason);
        }
        _ => {}
    }
}

/// Officers away from each duty station because of the given surges: for every *active*
/// surge (approved or deployed), each assigned officer counts once at the station they came
/// from. Completed, rejected and cancelled surges count nothing: their officers are back.
pub fn away_from<'a>(surges: impl IntoIterator<Item = &'a Surge>) -> BTreeMap<String, usize> {
    let mut away = BTreeMap::new();
    for s in surges.into_iter().filter(|s| s.status.is_active()) {
        for a in &s.officers {
            *away.entry(a.from_duty_station.clone()).or_insert(0) += 1;
        }
    }
    away
}

/// The gap every active surge of the register leaves: duty station → officers away from it.
pub fn gaps(register: &Register) -> BTreeMap<String, usize> {
    away_from(register.surges())
}

/// Body of `assign`'s change: the officer; where they come from is read from the reference
/// data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// The officer's person id (`P-000123`).
    pub officer: String,
}

/// A parsed command on a surge.
#[derive(Debug, Clone, PartialEq)]
pub enum SurgeCommand {
    /// Ask for a surge (creates the stream).
    Request(SurgeRequested),
    /// Approve it (`by` is the login).
    Approve(SurgeApproved),
    /// Reject it (`by` is the login).
    Reject(SurgeRejected),
    /// Assign an officer.
    Assign(Assign),
    /// The team arrived.
    Deploy(SurgeDeployed),
    /// The mission ended.
    Complete(SurgeCompleted),
    /// Call it off before deployment (`by` is the login).
    Cancel(SurgeCancelled),
}

impl SurgeCommand {
    /// The roles that may send it, from the one policy table.
    pub fn roles(&self) -> &'static [events::command::Role] {
        match self {
            SurgeCommand::Request(_) => policy::SURGE_REQUEST,
            SurgeCommand::Approve(_) | SurgeCommand::Reject(_) | SurgeCommand::Cancel(_) => {
                policy::SURGE_DECIDE
            }
            SurgeCommand::Assign(_) | SurgeCommand::Deploy(_) | SurgeCommand::Complete(_) => {
                policy::SURGE_RUN
            }
        }
    }

    /// What it does, for refusals ("a wall_screen may not approve surges").
    fn what(&self) -> &'static str {
        match self {
            SurgeCommand::Request(_) => "request surges",
            SurgeCommand::Approve(_) => "approve surges",
            SurgeCommand::Reject(_) => "reject surges",
            SurgeCommand::Assign(_) => "assign officers to surges",
            SurgeCommand::Deploy(_) => "deploy surges",
            SurgeCommand::Complete(_) => "complete surges",
            SurgeCommand::Cancel(_) => "cancel surges",
        }
    }
}

fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    events::codec::from_value(body).map_err(Refusal::invalid)
}

/// Reads command `name`'s body (for a transition, the `change`). Fields that come from the
/// login (`by`) or from the reference data (`from_duty_station`) are refused if present.
pub fn parse(name: &str, actor: &Actor, body: Value) -> Result<SurgeCommand, Refusal> {
    let object = |body: &Value| -> Result<(), Refusal> {
        if body.is_object() {
            Ok(())
        } else {
            Err(Refusal::invalid("the body must be a JSON object"))
        }
    };
    let with_actor = |mut body: Value, field: &str| -> Result<Value, Refusal> {
        object(&body)?;
        if let Some(obj) = body.as_object_mut() {
            if obj.contains_key(field) {
                return Err(Refusal::invalid(format!(
                    "{field}: is taken from your login; leave it out"
                )));
            }
            obj.insert(field.to_owned(), Value::String(actor.user.clone()));
        }
        Ok(body)
    };
    Ok(match name {
        "request" => SurgeCommand::Request(read(body)?),
        "approve" => SurgeCommand::Approve(read(with_actor(body, "by")?)?),
        "reject" => SurgeCommand::Reject(read(with_actor(body, "by")?)?),
        "assign" => {
            object(&body)?;
            if body.get("from_duty_station").is_some() {
                return Err(Refusal::invalid(
                    "from_duty_station: is taken from the officer's registered duty station; leave it out",
                ));
            }
            let assign: Assign = read(body)?;
            events::validate::id("officer", &assign.officer)?;
            SurgeCommand::Assign(assign)
        }
        "deploy" => SurgeCommand::Deploy(read(body)?),
        "complete" => SurgeCommand::Complete(read(body)?),
        "cancel" => SurgeCommand::Cancel(read(with_actor(body, "by")?)?),
        other => {
            return Err(Refusal::invalid(format!(
                "unknown surge command {:?}",
                other.chars().take(32).collect::<String>()
            )));
        }
    })
}

/// What the decision needs to know beyond the surge's own stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Facts<'a> {
    /// For `request`: the duty station's registration (`None`: not registered).
    pub station: Option<&'a DutyStationRegistered>,
    /// For `assign`: the officer's registration (`None`: not registered).
    pub officer: Option<&'a PersonRegistered>,
    /// For `assign`: another active surge the officer is already on.
    pub officer_on: Option<Uuid>,
}

/// Whether `actor` may see `surge`.
pub fn visible(actor: &Actor, surge: &Surge) -> bool {
    actor.may(policy::SURGE_READ, "read surges").is_ok() && actor.covers(surge.country)
}

fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!(
        "no surge {id} that you can see; check the id, or request the surge first"
    ))
}

fn closed(id: Uuid, surge: &Surge) -> Refusal {
    Refusal::conflict(format!(
        "surge {id} is {}; nothing can change on it now: request a new surge if help is still needed",
        surge.status.as_str()
    ))
}

/// Decides `command` on surge `id` (in state `state`) for `actor`: the events to append, or
/// why not.
pub fn decide(
    id: Uuid,
    state: Option<&Surge>,
    actor: &Actor,
    command: SurgeCommand,
    facts: &Facts<'_>,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(command.roles(), command.what())?;
    if let SurgeCommand::Request(r) = command {
        return request(id, state, actor, r, facts);
    }
    let surge = state
        .filter(|s| actor.covers(s.country))
        .ok_or_else(|| not_found(id))?;
    if !surge.is_open() {
        return Err(closed(id, surge));
    }
    let event: DomainEvent = match command {
        // Answered above; a request for an existing surge is a conflict, not a panic.
        SurgeCommand::Request(_) => return Err(already_requested(id)),
        SurgeCommand::Approve(a) => {
            undecided(id, surge)?;
            a.into()
        }
        SurgeCommand::Reject(r) => {
            undecided(id, surge)?;
            r.into()
        }
        SurgeCommand::Assign(a) => assign(id, surge, a, facts)?.into(),
        SurgeCommand::Deploy(d) => {
            match surge.status {
                Status::Requested => {
                    return Err(Refusal::conflict(format!(
                        "surge {id} is not approved yet; a crisis manager approves it first"
                    )));
                }
                Status::Deployed => {
                    return Err(Refusal::conflict(format!(
                        "surge {id} is already deployed; complete it when the mission ends"
                    )));
                }
                _ => {}
            }
            if surge.officers.is_empty() {
                return Err(Refusal::conflict(format!(
                    "surge {id} has no officer yet; assign at least one officer, then deploy"
                )));
            }
            d.into()
        }
        SurgeCommand::Complete(c) => {
            if surge.status != Status::Deployed {
                return Err(Refusal::conflict(format!(
                    "surge {id} is {}, not deployed; complete ends a deployed mission: deploy it first",
                    surge.status.as_str()
                )));
            }
            if let Some(deployed) = surge.deployed_at
                && c.at < deployed
            {
                return Err(Refusal::invalid(format!(
                    "at: the mission cannot end before it was deployed ({deployed}); check the time"
                )));
            }
            c.into()
        }
        SurgeCommand::Cancel(c) => {
            if surge.status == Status::Deployed {
                return Err(Refusal::conflict(format!(
                    "surge {id} is deployed; cancel is for a surge not yet deployed: complete it when the team leaves"
                )));
            }
            c.into()
        }
    };
    event.validate()?;
    Ok(vec![event])
}

fn already_requested(id: Uuid) -> Refusal {
    Refusal::conflict(format!(
        "surge {id} is already requested; send changes with approve, reject, assign, deploy or complete"
    ))
}

fn request(
    id: Uuid,
    state: Option<&Surge>,
    actor: &Actor,
    r: SurgeRequested,
    facts: &Facts<'_>,
) -> Result<Vec<DomainEvent>, Refusal> {
    if !actor.covers(r.country) {
        return Err(Refusal::forbidden(format!(
            "you may request surges for stations in {} only",
            actor
                .scope
                .map_or("no country (your login has no scope: ask an admin)", |c| c
                    .as_str())
        )));
    }
    if state.is_some() {
        return Err(already_requested(id));
    }
    let event = DomainEvent::from(r.clone());
    event.validate()?;
    let station = facts.station.ok_or_else(|| {
        Refusal::not_found(format!(
            "no duty station {:?} in the reference data; check the id, or import duty stations with `vigil import`",
            r.duty_station.chars().take(64).collect::<String>()
        ))
    })?;
    if station.country != r.country {
        return Err(Refusal::invalid(format!(
            "country: duty station {} is in {}, not {}; send the station's country",
            station.station,
            station.country.as_str(),
            r.country.as_str()
        )));
    }
    Ok(vec![event])
}

fn undecided(id: Uuid, surge: &Surge) -> Result<(), Refusal> {
    if surge.status == Status::Requested {
        Ok(())
    } else {
        Err(Refusal::conflict(format!(
            "surge {id} is already {}{}; a decision is taken once",
            surge.status.as_str(),
            surge
                .decided_by
                .as_deref()
                .map(|by| format!(" by {by}"))
                .unwrap_or_default()
        )))
    }
}

fn assign(
    id: Uuid,
    surge: &Surge,
    a: Assign,
    facts: &Facts<'_>,
) -> Result<SurgeOfficerAssigned, Refusal> {
    if !surge.status.is_active() {
        return Err(Refusal::conflict(format!(
            "surge {id} is not approved yet; a crisis manager approves it before officers are assigned"
        )));
    }
    if surge.officers.len() >= usize::from(surge.officers_needed) {
        return Err(Refusal::conflict(format!(
            "surge {id} is full: {} of {} officers assigned; request another surge for more",
            surge.officers.len(),
            surge.officers_needed
        )));
    }
    let officer = facts.officer.filter(|p| p.person == a.officer).ok_or_else(|| {
        Refusal::not_found(format!(
            "no person {:?} in the reference data; check the id, or import personnel with `vigil import`",
            a.officer.chars().take(64).collect::<String>()
        ))
    })?;
    if !officer.security_officer {
        return Err(Refusal::invalid(format!(
            "officer: {} is not a security officer; assign a registered security officer",
            officer.person
        )));
    }
    if officer.duty_station == surge.duty_station {
        return Err(Refusal::invalid(format!(
            "officer: {} is already posted at {}; send an officer from another duty station",
            officer.person, surge.duty_station
        )));
    }
    if surge.has_officer(&officer.person) {
        return Err(Refusal::conflict(format!(
            "{} is already assigned to surge {id}",
            officer.person
        )));
    }
    if let Some(other) = facts.officer_on.filter(|o| *o != id) {
        return Err(Refusal::conflict(format!(
            "{} is already assigned to surge {other}, which is still active; complete that surge (or pick another officer) first",
            officer.person
        )));
    }
    Ok(SurgeOfficerAssigned {
        officer: officer.person.clone(),
        from_duty_station: officer.duty_station.clone(),
    })
}

/// Filters of a list (`GET /api/v1/surges`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// `requested`, `approved`, `rejected`, `deployed`, `completed`, `cancelled`, or `active`
    /// (approved or deployed).
    #[serde(default)]
    pub status: Option<String>,
    /// At most this many (1 to [`MAX_LIST`], default [`DEFAULT_LIST`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// After this one: the `next` of the previous page (see [`events::page`]).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

pub use events::command::{DEFAULT_LIST, MAX_LIST};
use events::page::{Cursor, Page, PageQuery};

/// Every surge, folded from the whole log, plus what this service instance itself wrote and
/// the log's feed has not brought yet.
///
/// The feed lags a write by the time the event takes to come back. The service writes into
/// [`Register::wrote`] the surge as it stands right after each successful append, so the
/// next decision (who is on which surge) already knows it; the feed's own copy replaces it
/// once the feed reaches that version of the stream.
#[derive(Debug, Default)]
pub struct Register {
    /// Surges as the feed told them.
    surges: HashMap<Uuid, Option<Surge>>,
    /// Surges this instance wrote ahead of the feed.
    ahead: HashMap<Uuid, Surge>,
    /// The last log position applied from the feed.
    position: u64,
}

impl runtime::Fold for Register {
    fn apply(&mut self, event: &RecordedEvent) {
        Register::apply(self, event);
    }
}

impl Register {
    /// Applies one event of the log (any category; only surges are kept). Events at or below
    /// the register's position are duplicates and ignored.
    pub fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        if e.stream.category().as_str() != "surge" {
            return;
        }
        let id = e.stream.id();
        let slot = self.surges.entry(id).or_default();
        apply(slot, e);
        let version = slot.as_ref().map_or(0, |s| s.version);
        if self.ahead.get(&id).is_some_and(|a| a.version <= version) {
            self.ahead.remove(&id);
        }
    }

    /// Records `surge` as this instance just wrote it (ahead of the feed). Ignored if the
    /// register already knows that version or a later one.
    pub fn wrote(&mut self, surge: Surge) {
        let known = self.get(surge.id).map_or(0, |s| s.version);
        if surge.version > known {
            self.ahead.insert(surge.id, surge);
        }
    }

    /// The last log position applied from the feed.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Surge `id` as the register knows it (the newer of the feed's and this instance's).
    pub fn get(&self, id: Uuid) -> Option<&Surge> {
        let fed = self.surges.get(&id).and_then(Option::as_ref);
        match (fed, self.ahead.get(&id)) {
            (Some(f), Some(a)) if a.version > f.version => Some(a),
            (Some(f), _) => Some(f),
            (None, a) => a,
        }
    }

    /// Every surge the register knows, in no order.
    pub fn surges(&self) -> impl Iterator<Item = &Surge> {
        let fed = self.surges.keys().filter_map(|id| self.get(*id));
        let only_ahead = self
            .ahead
            .values()
            .filter(|a| !self.surges.contains_key(&a.id));
        fed.chain(only_ahead)
    }

    /// The active surge (approved or deployed) `officer` is on, other than `except`.
    pub fn active_surge_of(&self, officer: &str, except: Uuid) -> Option<Uuid> {
        self.surges()
            .filter(|s| s.id != except && s.status.is_active() && s.has_officer(officer))
            .map(|s| s.id)
            .min()
    }

    /// The page `q` of the surges `actor` may see that match `q`, newest request first.
    pub fn list(&self, actor: &Actor, q: &ListQuery) -> Result<Page<&Surge>, Refusal> {
        events::page::newest_first(
            self.matching(actor, q)?,
            |s| s.position,
            PageQuery::new(q.limit, q.cursor),
            self.position(),
            |s| s,
        )
    }

    /// Every surge `actor` may see that matches `q`'s filters (the limit is checked, not
    /// applied), newest request first.
    pub fn matching(&self, actor: &Actor, q: &ListQuery) -> Result<Vec<&Surge>, Refusal> {
        actor.may(policy::SURGE_READ, "read surges")?;
        if let Some(c) = q.country
            && !actor.covers(c)
        {
            return Err(Refusal::forbidden(format!(
                "you see surges of {} only; leave out country or use your own",
                actor.scope.map_or("no country", |c| c.as_str())
            )));
        }
        let status: Option<fn(Status) -> bool> = match q.status.as_deref() {
            None => None,
            Some("requested") => Some(|s| s == Status::Requested),
            Some("approved") => Some(|s| s == Status::Approved),
            Some("rejected") => Some(|s| s == Status::Rejected),
            Some("deployed") => Some(|s| s == Status::Deployed),
            Some("completed") => Some(|s| s == Status::Completed),
            Some("cancelled") => Some(|s| s == Status::Cancelled),
            Some("active") => Some(Status::is_active),
            Some(_) => {
                return Err(Refusal::invalid(
                    "status: must be requested, approved, rejected, deployed, completed, cancelled or active",
                ));
            }
        };
        events::command::page_limit(q.limit)?;
        let mut found: Vec<&Surge> = self
            .surges()
            .filter(|s| visible(actor, s))
            .filter(|s| q.country.is_none_or(|c| s.country == c))
            .filter(|s| status.is_none_or(|f| f(s.status)))
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.position));
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    //! Given the events of a stream (and the reference data), when a command arrives, then
    //! these events (or this refusal).
    use super::*;
    use events::command::{RefusalCode, Role};
    use events::{Meta, StreamName};
    use serde_json::json;

    const ID: Uuid = Uuid::from_u128(0x5u128);
    const OTHER: Uuid = Uuid::from_u128(0x6u128);

    fn actor(role: Role, scope: Option<&str>) -> Actor {
        Actor {
            user: format!("{}.user", role.as_str()),
            role,
            scope: scope.map(|s| Country::parse(s).unwrap()),
            agency: None,
        }
    }

    fn fso() -> Actor {
        actor(Role::FieldOfficer, Some("SO"))
    }

    fn duty() -> Actor {
        actor(Role::DutyOfficer, None)
    }

    fn crisis() -> Actor {
        actor(Role::CrisisManager, None)
    }

    fn station(id: &str, country: &str) -> DutyStationRegistered {
        DutyStationRegistered {
            station: id.into(),
            country: Country::parse(country).unwrap(),
            area: "A".into(),
            name: id.into(),
            lat: 1.0,
            lon: 1.0,
        }
    }

    fn person(id: &str, at: &str, officer: bool) -> PersonRegistered {
        PersonRegistered {
            person: id.into(),
            name: "Some One".into(),
            agency: "undss".into(),
            nationality: Country::parse("KE").unwrap(),
            duty_station: at.into(),
            dependants: 0,
            security_officer: officer,
            essential: false,
        }
    }

    fn request_body() -> Value {
        json!({"duty_station": "SOM-MGQ", "country": "SO", "reason": "attacks on the airport road",
               "officers_needed": 2, "assets": ["armoured vehicle"]})
    }

    /// Records `events` as the stream of surge `id`, from position `first`.
    fn record(id: Uuid, events: Vec<DomainEvent>, first: u64) -> Vec<RecordedEvent> {
        let stream: StreamName = events::domain::surge::stream_for(id);
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let n = i as u64 + 1;
                RecordedEvent::record(
                    e.to_new_event(
                        Uuid::new_v5(&id, &n.to_le_bytes()),
                        Meta {
                            actor: Some("someone".into()),
                            ..Meta::default()
                        },
                    ),
                    stream.clone(),
                    first + n - 1,
                    n,
                    time::macros::datetime!(2026-11-27 03:15 UTC)
                        + time::Duration::minutes(n as i64),
                )
            })
            .collect()
    }

    fn given(events: Vec<DomainEvent>) -> Vec<RecordedEvent> {
        record(ID, events, 10)
    }

    fn requested() -> DomainEvent {
        match parse("request", &fso(), request_body()).unwrap() {
            SurgeCommand::Request(r) => r.into(),
            other => panic!("{other:?}"),
        }
    }

    fn approved() -> DomainEvent {
        SurgeApproved {
            by: "crisis.1".into(),
        }
        .into()
    }

    fn assigned(officer: &str, from: &str) -> DomainEvent {
        SurgeOfficerAssigned {
            officer: officer.into(),
            from_duty_station: from.into(),
        }
        .into()
    }

    fn deployed() -> DomainEvent {
        SurgeDeployed {
            at: time::macros::datetime!(2026-11-28 06:00 UTC),
        }
        .into()
    }

    fn when_with(
        history: &[RecordedEvent],
        who: &Actor,
        name: &str,
        body: Value,
        facts: &Facts<'_>,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let command = parse(name, who, body)?;
        decide(ID, Surge::fold(history).as_ref(), who, command, facts)
    }

    fn when(
        history: &[RecordedEvent],
        who: &Actor,
        name: &str,
        body: Value,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let mgq = station("SOM-MGQ", "SO");
        let o1 = person("P-1", "SOM-BAI", true);
        let o2 = person("P-2", "KEN-NBO", true);
        let officer = match body.get("officer").and_then(Value::as_str) {
            Some("P-1") => Some(&o1),
            Some("P-2") => Some(&o2),
            _ => None,
        };
        let facts = Facts {
            station: Some(&mgq),
            officer,
            officer_on: None,
        };
        when_with(history, who, name, body, &facts)
    }

    fn refused(r: Result<Vec<DomainEvent>, Refusal>) -> Refusal {
        r.expect_err("refused")
    }

    fn code(r: Result<Vec<DomainEvent>, Refusal>) -> RefusalCode {
        refused(r).code
    }

    #[test]
    fn the_life_of_a_surge() {
        let out = when(&[], &fso(), "request", request_body()).unwrap();
        let mut events = out.clone();
        let state = Surge::fold(&given(events.clone())).unwrap();
        assert_eq!(state.status, Status::Requested);
        assert_eq!(state.id, ID);
        assert_eq!(state.requested_by.as_deref(), Some("someone"));
        assert_eq!(state.assets, vec!["armoured vehicle".to_owned()]);

        events.extend(when(&given(events.clone()), &crisis(), "approve", json!({})).unwrap());
        let state = Surge::fold(&given(events.clone())).unwrap();
        assert_eq!(state.status, Status::Approved);
        assert_eq!(state.decided_by.as_deref(), Some("crisis_manager.user"));

        let out = when(
            &given(events.clone()),
            &duty(),
            "assign",
            json!({"officer": "P-1"}),
        )
        .unwrap();
        assert_eq!(out, vec![assigned("P-1", "SOM-BAI")], "from their station");
        events.extend(out);
        events.extend(
            when(
                &given(events.clone()),
                &duty(),
                "deploy",
                json!({"at": "2026-11-28T06:00:00Z"}),
            )
            .unwrap(),
        );
        // Reinforcing a deployed surge.
        events.extend(
            when(
                &given(events.clone()),
                &crisis(),
                "assign",
                json!({"officer": "P-2"}),
            )
            .unwrap(),
        );
        let state = Surge::fold(&given(events.clone())).unwrap();
        assert_eq!(state.status, Status::Deployed);
        assert_eq!(state.officers.len(), 2);
        assert_eq!(
            away_from([&state]),
            BTreeMap::from([("KEN-NBO".to_owned(), 1), ("SOM-BAI".to_owned(), 1)])
        );
        events.extend(
            when(
                &given(events.clone()),
                &duty(),
                "complete",
                json!({"at": "2026-12-05T06:00:00+03:00"}),
            )
            .unwrap(),
        );
        let state = Surge::fold(&given(events.clone())).unwrap();
        assert_eq!(state.status, Status::Completed);
        assert_eq!(state.version, 6);
        assert!(away_from([&state]).is_empty(), "the officers went home");
        let done = given(events);
        for (name, body) in [
            ("approve", json!({})),
            ("reject", json!({"reason": "r"})),
            ("assign", json!({"officer": "P-1"})),
            ("deploy", json!({"at": "2026-12-06T00:00:00Z"})),
            ("complete", json!({"at": "2026-12-06T00:00:00Z"})),
        ] {
            let r = refused(when(&done, &crisis(), name, body));
            assert_eq!(r.code, RefusalCode::Conflict, "{name} after completion");
            assert!(r.message.contains("completed"), "{}", r.message);
        }
    }

    #[test]
    fn a_rejected_surge_takes_no_more_changes() {
        let history = given(vec![requested()]);
        let out = when(
            &history,
            &crisis(),
            "reject",
            json!({"reason": "no capacity"}),
        )
        .unwrap();
        let rejected = given(vec![requested(), out[0].clone()]);
        let state = Surge::fold(&rejected).unwrap();
        assert_eq!(state.status, Status::Rejected);
        assert_eq!(state.rejected_reason.as_deref(), Some("no capacity"));
        for (name, body) in [
            ("approve", json!({})),
            ("reject", json!({"reason": "again"})),
            ("assign", json!({"officer": "P-1"})),
            ("deploy", json!({"at": "2026-12-06T00:00:00Z"})),
        ] {
            assert_eq!(
                code(when(&rejected, &crisis(), name, body)),
                RefusalCode::Conflict,
                "{name} after rejection"
            );
        }
    }

    #[test]
    fn decisions_are_taken_once_and_only_while_requested() {
        let history = given(vec![requested(), approved()]);
        let r = refused(when(&history, &crisis(), "approve", json!({})));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(
            r.message.contains("already approved by crisis.1"),
            "{}",
            r.message
        );
        assert_eq!(
            code(when(
                &history,
                &crisis(),
                "reject",
                json!({"reason": "late"})
            )),
            RefusalCode::Conflict
        );
    }

    #[test]
    fn each_command_is_refused_to_roles_without_the_right() {
        let requested_only = given(vec![requested()]);
        let running = given(vec![requested(), approved()]);
        let cases: [(&str, Value, &[RecordedEvent], &[Role]); 6] = [
            ("request", request_body(), &[], policy::SURGE_REQUEST),
            ("approve", json!({}), &requested_only, policy::SURGE_DECIDE),
            (
                "reject",
                json!({"reason": "r"}),
                &requested_only,
                policy::SURGE_DECIDE,
            ),
            (
                "assign",
                json!({"officer": "P-1"}),
                &running,
                policy::SURGE_RUN,
            ),
            (
                "deploy",
                json!({"at": "2026-11-28T06:00:00Z"}),
                &running,
                policy::SURGE_RUN,
            ),
            (
                "complete",
                json!({"at": "2026-11-28T06:00:00Z"}),
                &running,
                policy::SURGE_RUN,
            ),
        ];
        for (name, body, history, allowed) in cases {
            for role in Role::ALL {
                let who = actor(role, (role == Role::FieldOfficer).then_some("SO"));
                let got = when(history, &who, name, body.clone());
                if allowed.contains(&role) {
                    assert!(
                        !matches!(&got, Err(r) if r.code == RefusalCode::Forbidden),
                        "{name} as {role:?}: {got:?}"
                    );
                } else {
                    assert_eq!(code(got), RefusalCode::Forbidden, "{name} as {role:?}");
                }
            }
        }
    }

    #[test]
    fn a_field_officer_requests_only_for_their_country_and_sees_only_it() {
        let mut body = request_body();
        body["country"] = json!("KE");
        body["duty_station"] = json!("KEN-NBO");
        let nbo = station("KEN-NBO", "KE");
        let facts = Facts {
            station: Some(&nbo),
            ..Facts::default()
        };
        assert_eq!(
            code(when_with(&[], &fso(), "request", body.clone(), &facts)),
            RefusalCode::Forbidden
        );
        assert!(when_with(&[], &duty(), "request", body, &facts).is_ok());
        let unscoped = actor(Role::FieldOfficer, None);
        assert_eq!(
            code(when(&[], &unscoped, "request", request_body())),
            RefusalCode::Forbidden
        );
        let history = given(vec![requested()]);
        let state = Surge::fold(&history).unwrap();
        let kenya = actor(Role::FieldOfficer, Some("KE"));
        assert!(visible(&fso(), &state));
        assert!(!visible(&kenya, &state));
        assert!(!visible(&actor(Role::WallScreen, None), &state));
        assert!(visible(&actor(Role::Admin, None), &state));
    }

    #[test]
    fn a_request_needs_a_registered_station_in_its_country() {
        let r = refused(when_with(
            &[],
            &duty(),
            "request",
            request_body(),
            &Facts::default(),
        ));
        assert_eq!(r.code, RefusalCode::NotFound);
        assert!(r.message.contains("vigil import"), "{}", r.message);
        let elsewhere = station("SOM-MGQ", "KE");
        let r = refused(when_with(
            &[],
            &duty(),
            "request",
            request_body(),
            &Facts {
                station: Some(&elsewhere),
                ..Facts::default()
            },
        ));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.starts_with("country"), "{}", r.message);
        // The same surge requested twice.
        assert_eq!(
            code(when(
                &given(vec![requested()]),
                &duty(),
                "request",
                request_body()
            )),
            RefusalCode::Conflict
        );
    }

    #[test]
    fn bad_bodies_are_refused_with_the_field() {
        for (field, bad) in [
            ("country", json!("XX")),
            ("officers_needed", json!(0)),
            ("officers_needed", json!(201)),
            ("reason", json!(" ")),
            ("duty_station", json!("has space")),
            ("assets", json!(["ok", ""])),
        ] {
            let mut body = request_body();
            body[field] = bad;
            let r = refused(when(&[], &duty(), "request", body));
            assert_eq!(r.code, RefusalCode::Invalid, "{field}");
            assert!(r.message.contains(field), "{field}: {}", r.message);
        }
        let mut extra = request_body();
        extra["by"] = json!("x");
        assert_eq!(
            code(when(&[], &duty(), "request", extra)),
            RefusalCode::Invalid
        );
        let history = given(vec![requested()]);
        let r = refused(when(
            &history,
            &crisis(),
            "approve",
            json!({"by": "someone.else"}),
        ));
        assert!(r.message.starts_with("by"), "{}", r.message);
        assert_eq!(
            code(when(&history, &crisis(), "approve", json!([]))),
            RefusalCode::Invalid
        );
        let r = refused(when(&history, &crisis(), "reject", json!({"reason": ""})));
        assert!(r.message.starts_with("reason"), "{}", r.message);
        assert_eq!(
            code(when(&history, &crisis(), "reject", json!({}))),
            RefusalCode::Invalid,
            "a rejection needs a reason"
        );
        let running = given(vec![requested(), approved()]);
        let r = refused(when(
            &running,
            &duty(),
            "assign",
            json!({"officer": "P-1", "from_duty_station": "SOM-BAI"}),
        ));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.starts_with("from_duty_station"), "{}", r.message);
        for bad in [
            json!({}),
            json!({"officer": ""}),
            json!({"officer": "P 1"}),
            json!({"officer": "P-1", "x": 1}),
            json!("P-1"),
        ] {
            assert_eq!(
                code(when(&running, &duty(), "assign", bad.clone())),
                RefusalCode::Invalid,
                "{bad}"
            );
        }
        for name in ["deploy", "complete"] {
            let r = refused(when(&running, &duty(), name, json!({"at": "tomorrow"})));
            assert_eq!(r.code, RefusalCode::Invalid);
            assert!(r.message.starts_with("at"), "{}", r.message);
        }
        assert_eq!(
            code(when(&running, &duty(), "launch", json!({}))),
            RefusalCode::Invalid
        );
    }

    #[test]
    fn changes_to_a_surge_that_does_not_exist_or_is_out_of_scope_are_not_found() {
        for (name, body) in [
            ("approve", json!({})),
            ("reject", json!({"reason": "r"})),
            ("assign", json!({"officer": "P-1"})),
            ("deploy", json!({"at": "2026-11-28T06:00:00Z"})),
            ("complete", json!({"at": "2026-11-28T06:00:00Z"})),
        ] {
            assert_eq!(
                code(when(&[], &crisis(), name, body)),
                RefusalCode::NotFound,
                "{name}"
            );
        }
    }

    #[test]
    fn officers_are_assigned_only_to_an_approved_surge_that_is_not_full() {
        let requested_only = given(vec![requested()]);
        let r = refused(when(
            &requested_only,
            &duty(),
            "assign",
            json!({"officer": "P-1"}),
        ));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("not approved"), "{}", r.message);
        let full = given(vec![
            requested(),
            approved(),
            assigned("P-7", "X"),
            assigned("P-8", "Y"),
        ]);
        let r = refused(when(&full, &duty(), "assign", json!({"officer": "P-1"})));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("full: 2 of 2"), "{}", r.message);
    }

    #[test]
    fn the_officer_must_be_a_registered_security_officer_from_elsewhere() {
        let running = given(vec![requested(), approved()]);
        let r = refused(when(
            &running,
            &duty(),
            "assign",
            json!({"officer": "P-404"}),
        ));
        assert_eq!(r.code, RefusalCode::NotFound);
        assert!(r.message.contains("vigil import"), "{}", r.message);
        let clerk = person("P-3", "SOM-BAI", false);
        let r = refused(when_with(
            &running,
            &duty(),
            "assign",
            json!({"officer": "P-3"}),
            &Facts {
                officer: Some(&clerk),
                ..Facts::default()
            },
        ));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(
            r.message.contains("not a security officer"),
            "{}",
            r.message
        );
        let local = person("P-4", "SOM-MGQ", true);
        let r = refused(when_with(
            &running,
            &duty(),
            "assign",
            json!({"officer": "P-4"}),
            &Facts {
                officer: Some(&local),
                ..Facts::default()
            },
        ));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.contains("another duty station"), "{}", r.message);
        // Facts about someone else are not facts about this officer.
        let other = person("P-9", "SOM-BAI", true);
        assert_eq!(
            code(when_with(
                &running,
                &duty(),
                "assign",
                json!({"officer": "P-1"}),
                &Facts {
                    officer: Some(&other),
                    ..Facts::default()
                },
            )),
            RefusalCode::NotFound
        );
        let twice = given(vec![requested(), approved(), assigned("P-1", "SOM-BAI")]);
        let r = refused(when(&twice, &duty(), "assign", json!({"officer": "P-1"})));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(
            r.message.contains("already assigned to surge"),
            "{}",
            r.message
        );
    }

    #[test]
    fn an_officer_already_on_an_active_surge_is_refused_naming_it() {
        let running = given(vec![requested(), approved()]);
        let o1 = person("P-1", "SOM-BAI", true);
        let facts = Facts {
            officer: Some(&o1),
            officer_on: Some(OTHER),
            ..Facts::default()
        };
        let r = refused(when_with(
            &running,
            &duty(),
            "assign",
            json!({"officer": "P-1"}),
            &facts,
        ));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains(&OTHER.to_string()), "{}", r.message);
    }

    #[test]
    fn deployment_needs_approval_and_an_officer_and_completion_needs_deployment() {
        let at = json!({"at": "2026-11-28T06:00:00Z"});
        let r = refused(when(
            &given(vec![requested()]),
            &duty(),
            "deploy",
            at.clone(),
        ));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("not approved"), "{}", r.message);
        let r = refused(when(
            &given(vec![requested(), approved()]),
            &duty(),
            "deploy",
            at.clone(),
        ));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("no officer"), "{}", r.message);
        let d = given(vec![
            requested(),
            approved(),
            assigned("P-1", "SOM-BAI"),
            deployed(),
        ]);
        let r = refused(when(&d, &duty(), "deploy", at.clone()));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("already deployed"), "{}", r.message);
        for history in [
            given(vec![requested()]),
            given(vec![requested(), approved(), assigned("P-1", "SOM-BAI")]),
        ] {
            assert_eq!(
                code(when(&history, &duty(), "complete", at.clone())),
                RefusalCode::Conflict
            );
        }
        let r = refused(when(
            &d,
            &duty(),
            "complete",
            json!({"at": "2026-11-27T06:00:00Z"}),
        ));
        assert_eq!(r.code, RefusalCode::Invalid, "before the deployment");
        assert!(r.message.starts_with("at"), "{}", r.message);
    }

    #[test]
    fn the_fold_follows_the_log_even_where_decide_would_not_have() {
        // A second approval, a duplicate assignment and events before a request move only
        // the version.
        let mut state = None;
        for e in record(ID, vec![approved()], 1) {
            apply(&mut state, &e);
        }
        assert!(state.is_none());
        let s = Surge::fold(&given(vec![
            requested(),
            approved(),
            approved(),
            assigned("P-1", "A"),
            assigned("P-1", "A"),
        ]))
        .unwrap();
        assert_eq!(s.officers.len(), 1);
        assert_eq!(s.version, 5);
        assert_eq!(s.status, Status::Approved);
    }

    fn feed(register: &mut Register, events: &[RecordedEvent]) {
        for e in events {
            register.apply(e);
        }
    }

    #[test]
    fn the_register_knows_who_is_on_which_surge_and_frees_them() {
        let mut register = Register::default();
        let a = record(
            ID,
            vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
            1,
        );
        feed(&mut register, &a);
        assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
        assert_eq!(register.active_surge_of("P-1", ID), None, "not on another");
        assert_eq!(register.active_surge_of("P-2", OTHER), None);
        assert_eq!(gaps(&register), BTreeMap::from([("SOM-BAI".to_owned(), 1)]));
        let done = record(
            ID,
            vec![
                requested(),
                approved(),
                assigned("P-1", "SOM-BAI"),
                deployed(),
                SurgeCompleted {
                    at: time::macros::datetime!(2026-12-01 00:00 UTC),
                }
                .into(),
            ],
            1,
        );
        feed(&mut register, &done);
        assert_eq!(register.active_surge_of("P-1", OTHER), None, "back home");
        assert!(gaps(&register).is_empty());
        // Positions already applied are ignored.
        assert_eq!(register.position(), 5);
        feed(&mut register, &a);
        assert_eq!(register.get(ID).unwrap().status, Status::Completed);
    }

    fn cancelled() -> DomainEvent {
        SurgeCancelled {
            by: "crisis.1".into(),
            reason: "the road reopened".into(),
        }
        .into()
    }

    #[test]
    fn a_requested_or_approved_surge_is_cancelled_with_a_reason_and_by_the_login() {
        let reason = json!({"reason": "the road reopened"});
        for before in [
            vec![requested()],
            vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
        ] {
            let events = when(&given(before.clone()), &crisis(), "cancel", reason.clone()).unwrap();
            let by_login: DomainEvent = SurgeCancelled {
                by: crisis().user,
                reason: "the road reopened".into(),
            }
            .into();
            assert_eq!(events, vec![by_login]);
            let state = Surge::fold(&given([before, events].concat())).unwrap();
            assert_eq!(state.status, Status::Cancelled);
            assert_eq!(state.cancelled_by, Some(crisis().user));
            assert_eq!(state.cancelled_reason.as_deref(), Some("the road reopened"));
            assert!(!state.is_open());
            assert!(away_from([&state]).is_empty(), "its officers are back");
        }
    }

    #[test]
    fn cancel_needs_a_one_line_reason_and_the_right_to_decide_surges() {
        let history = given(vec![requested(), approved()]);
        for bad in [
            json!({}),
            json!({"reason": ""}),
            json!({"reason": "   "}),
            json!({"reason": "two\nlines"}),
            json!({"reason": "x".repeat(events::domain::MAX_REASON + 1)}),
            json!({"reason": "ok", "by": "someone.else"}),
            json!({"reason": "ok", "extra": 1}),
        ] {
            let r = refused(when(&history, &crisis(), "cancel", bad.clone()));
            assert_eq!(r.code, RefusalCode::Invalid, "{bad}: {}", r.message);
        }
        for who in [
            fso(),
            actor(Role::WallScreen, None),
            actor(Role::AgencyFocalPoint, None),
        ] {
            assert_eq!(
                code(when(
                    &history,
                    &who,
                    "cancel",
                    json!({"reason": "not needed"})
                )),
                RefusalCode::Forbidden,
                "{who:?}"
            );
        }
    }

    #[test]
    fn a_deployed_or_closed_surge_cannot_be_cancelled() {
        let reason = json!({"reason": "not needed"});
        let done = SurgeCompleted {
            at: time::macros::datetime!(2026-12-01 00:00 UTC),
        };
        let rejected: DomainEvent = SurgeRejected {
            by: "crisis.1".into(),
            reason: "no".into(),
        }
        .into();
        for (history, says) in [
            (
                given(vec![
                    requested(),
                    approved(),
                    assigned("P-1", "SOM-BAI"),
                    deployed(),
                ]),
                "deployed",
            ),
            (
                given(vec![
                    requested(),
                    approved(),
                    assigned("P-1", "SOM-BAI"),
                    deployed(),
                    done.into(),
                ]),
                "completed",
            ),
            (given(vec![requested(), rejected]), "rejected"),
            (given(vec![requested(), cancelled()]), "cancelled"),
        ] {
            let r = refused(when(&history, &crisis(), "cancel", reason.clone()));
            assert_eq!(r.code, RefusalCode::Conflict, "{says}: {}", r.message);
            assert!(r.message.contains(says), "{says}: {}", r.message);
        }
        // Nothing else moves a cancelled surge either.
        let gone = given(vec![requested(), approved(), cancelled()]);
        for (name, body) in [
            ("approve", json!({})),
            ("assign", json!({"officer": "P-1"})),
            ("deploy", json!({"at": "2026-11-28T06:00:00Z"})),
        ] {
            assert_eq!(
                code(when(&gone, &crisis(), name, body)),
                RefusalCode::Conflict,
                "{name}"
            );
        }
    }

    #[test]
    fn a_cancelled_surge_frees_its_officers_for_another() {
        let mut register = Register::default();
        feed(
            &mut register,
            &record(
                ID,
                vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
                1,
            ),
        );
        assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
        feed(
            &mut register,
            &record(
                ID,
                vec![
                    requested(),
                    approved(),
                    assigned("P-1", "SOM-BAI"),
                    cancelled(),
                ],
                1,
            ),
        );
        assert_eq!(register.active_surge_of("P-1", OTHER), None, "free again");
        assert!(gaps(&register).is_empty());
        let q = ListQuery {
            status: Some("cancelled".into()),
            ..ListQuery::default()
        };
        assert_eq!(register.list(&crisis(), &q).unwrap().items.len(), 1);
    }

    #[test]
    fn what_this_instance_wrote_counts_before_the_feed_brings_it() {
        let mut register = Register::default();
        let history = record(ID, vec![requested(), approved()], 1);
        feed(&mut register, &history);
        let mut ahead = history.clone();
        ahead.extend(
            record(
                ID,
                vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
                1,
            )
            .pop(),
        );
        let written = Surge::fold(&ahead).unwrap();
        assert_eq!(written.version, 3);
        register.wrote(written.clone());
        assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
        assert_eq!(register.surges().count(), 1);
        // An older state written late does not replace a newer one.
        register.wrote(Surge::fold(&history).unwrap());
        assert_eq!(register.get(ID).unwrap().version, 3);
        // The feed's copy takes over.
        feed(&mut register, &ahead[2..]);
        assert!(register.ahead.is_empty());
        assert_eq!(register.get(ID).unwrap().officers.len(), 1);
        // A surge known only from this instance's write is listed too.
        let other = Surge::fold(&record(OTHER, vec![requested()], 50)).unwrap();
        register.wrote(other);
        assert_eq!(register.surges().count(), 2);
        assert_eq!(
            register
                .list(&duty(), &ListQuery::default())
                .unwrap()
                .items
                .len(),
            2
        );
    }

    #[test]
    fn the_register_lists_within_scope_with_filters() {
        let mut register = Register::default();
        let mut kenya = request_body();
        kenya["country"] = json!("KE");
        kenya["duty_station"] = json!("KEN-NBO");
        let SurgeCommand::Request(ke) = parse("request", &duty(), kenya).unwrap() else {
            unreachable!()
        };
        feed(
            &mut register,
            &record(Uuid::from_u128(1), vec![requested()], 1),
        );
        feed(
            &mut register,
            &record(Uuid::from_u128(2), vec![requested(), approved()], 2),
        );
        feed(
            &mut register,
            &record(Uuid::from_u128(3), vec![ke.into()], 4),
        );
        // Another category is skipped but moves the position.
        let other = events::domain::person::stream_for("P-1");
        register.apply(&RecordedEvent::record(
            DomainEvent::from(person("P-1", "X", true))
                .to_new_event(Uuid::from_u128(99), Meta::default()),
            other,
            5,
            1,
            OffsetDateTime::UNIX_EPOCH,
        ));
        assert_eq!(register.position(), 5);
        let all = register.list(&duty(), &ListQuery::default()).unwrap().items;
        assert_eq!(all.len(), 3);
        assert!(all[0].position > all[1].position, "newest first");
        assert_eq!(
            register
                .list(&fso(), &ListQuery::default())
                .unwrap()
                .items
                .len(),
            2
        );
        let q = |status: Option<&str>, country: Option<&str>, limit: Option<usize>| ListQuery {
            status: status.map(Into::into),
            country: country.map(|c| Country::parse(c).unwrap()),
            limit,
            cursor: None,
        };
        assert_eq!(
            register
                .list(&duty(), &q(Some("approved"), None, None))
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            register
                .list(&duty(), &q(Some("active"), None, None))
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            register
                .list(&duty(), &q(Some("requested"), None, None))
                .unwrap()
                .items
                .len(),
            2
        );
        assert_eq!(
            register
                .list(&duty(), &q(None, Some("KE"), None))
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            register
                .list(&duty(), &q(None, None, Some(1)))
                .unwrap()
                .items
                .len(),
            1
        );
        let refused =
            |who: &Actor, q: ListQuery| register.list(who, &q).map(|_| ()).unwrap_err().code;
        assert_eq!(
            refused(&fso(), q(None, Some("KE"), None)),
            RefusalCode::Forbidden
        );
        assert_eq!(
            refused(&duty(), q(Some("lost"), None, None)),
            RefusalCode::Invalid
        );
        assert_eq!(
            refused(&duty(), q(None, None, Some(0))),
            RefusalCode::Invalid
        );
        assert_eq!(
            refused(&duty(), q(None, None, Some(501))),
            RefusalCode::Invalid
        );
        assert_eq!(
            refused(&actor(Role::WallScreen, None), ListQuery::default()),
            RefusalCode::Forbidden
        );
    }

    mod properties {
        //! Whatever commands arrive in whatever order, decided against the register as the
        //! service does, no officer is ever on two active surges and no surge takes more
        //! officers than it asked for.
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Step {
            Approve(usize),
            Reject(usize),
            Assign(usize, usize),
            Deploy(usize),
            Complete(usize),
            Cancel(usize),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0..3usize).prop_map(Step::Approve),
                (0..3usize).prop_map(Step::Reject),
                (0..3usize, 0..4usize).prop_map(|(s, o)| Step::Assign(s, o)),
                (0..3usize).prop_map(Step::Deploy),
                (0..3usize).prop_map(Step::Complete),
                (0..3usize).prop_map(Step::Cancel),
            ]
        }

        proptest! {
            #[test]
            fn no_officer_is_ever_on_two_active_surges(steps in proptest::collection::vec(step(), 0..60)) {
                let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
                let officers: Vec<PersonRegistered> = (0..4)
                    .map(|i| person(&format!("P-{i}"), "SOM-BAI", true))
                    .collect();
                let mut streams: Vec<Vec<DomainEvent>> = ids.iter().map(|_| vec![requested()]).collect();
                let mut position = 0;
                let mut register = Register::default();
                for (i, s) in streams.iter().enumerate() {
                    let r = record(ids[i], s.clone(), position + 1);
                    position += r.len() as u64;
                    feed(&mut register, &r);
                }
                let at = json!({"at": "2026-11-28T06:00:00Z"});
                for step in steps {
                    let (i, name, body) = match step {
                        Step::Approve(i) => (i, "approve", json!({})),
                        Step::Reject(i) => (i, "reject", json!({"reason": "no"})),
                        Step::Assign(i, o) => (i, "assign", json!({"officer": format!("P-{o}")})),
                        Step::Deploy(i) => (i, "deploy", at.clone()),
                        Step::Complete(i) => (i, "complete", at.clone()),
                        Step::Cancel(i) => (i, "cancel", json!({"reason": "not needed"})),
                    };
                    let history = record(ids[i], streams[i].clone(), 0);
                    let officer = body["officer"].as_str().and_then(|o| officers.iter().find(|p| p.person == o));
                    let facts = Facts {
                        station: None,
                        officer,
                        officer_on: officer.and_then(|o| register.active_surge_of(&o.person, ids[i])),
                    };
                    let command = parse(name, &crisis(), body).unwrap();
                    if let Ok(new) = decide(ids[i], Surge::fold(&history).as_ref(), &crisis(), command, &facts) {
                        let version = streams[i].len();
                        streams[i].extend(new.clone());
                        let all = record(ids[i], streams[i].clone(), 0);
                        for e in &all[version..] {
                            let mut e = e.clone();
                            position += 1;
                            e.position = position;
                            register.apply(&e);
                        }
                    }
                    let mut on: HashMap<&str, usize> = HashMap::new();
                    for s in register.surges() {
                        prop_assert!(s.officers.len() <= usize::from(s.officers_needed));
                        if s.status.is_active() {
                            for a in &s.officers {
                                *on.entry(a.officer.as_str()).or_default() += 1;
                            }
                        }
                    }
                    prop_assert!(on.values().all(|n| *n == 1), "{on:?}");
                }
            }
        }
    }
}
