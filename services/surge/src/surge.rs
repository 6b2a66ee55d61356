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
//! (approved or deployed) at a time. Across instances the service holds that by the officer's
//! reservation stream ([`crate::reserve`]); `decide` takes it as [`Facts::officer_on`]. The
//! [`Register`] knows who is where, for lists and the gap. Completion or cancellation frees
//! them.
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

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::person::PersonRegistered;
use events::domain::station::DutyStationRegistered;
use events::domain::surge::{
    AssignOfficer as Assign, SurgeApproved, SurgeCancelled, SurgeCompleted, SurgeDeployed,
    SurgeOfficerAssigned, SurgeRejected, SurgeRequested,
};
use events::validate::Country;
use events::{RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a surge is in its life, and an officer on it (in `events`, as the answers name
/// them).
pub use events::domain::surge::{SurgeAssignment as Assignment, SurgeStatus as Status};

/// A surge as its stream tells it: the record `events` names (what `get` and the list answer
/// in a [`crate::SurgeView`]), with this crate's rules ([`Aggregate`]). A type of its own only
/// because the rules are this crate's; it reads as the record (`Deref`), and its JSON is the
/// record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Surge(pub events::domain::surge::Surge);

impl std::ops::Deref for Surge {
    type Target = events::domain::surge::Surge;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Aggregate for Surge {
    type Command = SurgeCommand;
    type Facts = Facts;

    fn stream(id: Uuid) -> StreamName {
        events::domain::surge::stream_for(id)
    }

    fn parse(name: &str, actor: &Actor, body: Value) -> Result<SurgeCommand, Refusal> {
        parse(name, actor, body)
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.0.version = recorded.version;
    }

    /// Applies one recorded event of the surge's stream. The log is the truth: an event that
    /// the aggregate would not have decided (a second approval) moves only the version on.
    fn apply_known(state: &mut Option<Surge>, event: DomainEvent, recorded: &RecordedEvent) {
        if let DomainEvent::SurgeRequested(r) = event {
            if state.is_none() {
                *state = Some(Surge(events::domain::surge::Surge {
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
                }));
            }
            return;
        }
        let Some(Surge(s)) = state.as_mut() else {
            return;
        };
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

    fn decide(
        id: Uuid,
        state: Option<&Surge>,
        actor: &Actor,
        command: SurgeCommand,
        facts: &Facts,
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
fn parse(name: &str, actor: &Actor, body: Value) -> Result<SurgeCommand, Refusal> {
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
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// For `request`: the duty station's registration (`None`: not registered).
    pub station: Option<DutyStationRegistered>,
    /// For `assign`: the officer's registration (`None`: not registered).
    pub officer: Option<PersonRegistered>,
    /// For `assign`: another active surge the officer is already on. The service leaves it
    /// `None` and lets the officer's reservation stream decide ([`crate::reserve`]), which
    /// names that surge in the same words.
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
    facts: &Facts,
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
    let station = facts.station.as_ref().ok_or_else(|| {
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
    facts: &Facts,
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
    let officer = facts.officer.as_ref().filter(|p| p.person == a.officer).ok_or_else(|| {
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
///
/// Checkpointed: what is saved is the feed's part and its position (`runtime::checkpoint`);
/// the surges written ahead are not (a restarted instance has written nothing yet, and the
/// feed brings every write that was acknowledged).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    /// Surges as the feed told them.
    surges: HashMap<Uuid, Option<Surge>>,
    /// Surges this instance wrote ahead of the feed.
    #[serde(skip)]
    ahead: HashMap<Uuid, Surge>,
    /// The last log position applied from the feed.
    position: u64,
}

/// The code version of the register's state and fold, written in its checkpoints
/// (`runtime::checkpoint`): bump it whenever the register's fields or its fold change, so that
/// an old checkpoint is ignored and the whole log folded again.
pub const REGISTER_VERSION: u32 = 1;

impl runtime::Fold for Register {
    fn apply(&mut self, event: &RecordedEvent) {
        Register::apply(self, event);
    }

    fn checkpoint() -> Option<runtime::checkpoint::Codec<Self>> {
        Some(runtime::checkpoint::Codec::json(REGISTER_VERSION))
    }
}

impl runtime::host::Listing for Register {
    type Query = ListQuery;
    type Item = crate::SurgeView;

    fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        _now: OffsetDateTime,
    ) -> Result<Page<crate::SurgeView>, Refusal> {
        Ok(Register::list(self, actor, q)?.map(|s| crate::view_of(s.clone())))
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
        Surge::apply(slot, e);
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
mod tests;
