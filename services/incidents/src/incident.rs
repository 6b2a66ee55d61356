//! The incident aggregate: pure decide and apply over one `incident-<id>` stream, and the
//! register of all incidents that answers lists. No I/O, no clock. [`Incident`] is the
//! [`Aggregate`]: its `parse`, `decide` and `apply` are the functions below.
//!
//! # Life of an incident
//! `reported` (a flash report, unverified) → `verified` (a duty officer confirmed it) →
//! `closed`. While it is open it can be updated (details added or corrected) and escalated
//! into a hostage case, a surge or a relocation order (once per target). A closed incident
//! refuses every change. Each refusal says why and what to do instead.
//!
//! # Scope
//! A field officer sees and touches only incidents in the country of their scope: another
//! country's incident is `not_found` (its existence is not revealed); reporting for, or moving
//! an incident to, another country is `forbidden`.
//!
//! # What the input must be (each refused `invalid`, naming the field)
//! - `occurred_at`: not after the centre's clock plus `validate::CLOCK_SKEW` (5 minutes),
//!   not more than `MAX_REPORT_AGE` (30 days) before the report was received (for a report:
//!   now; for a correction: when the incident was first reported). The clock is
//!   [`Facts::now`], passed in.
//! - `duty_station`: a registered duty station ([`Facts::station`], looked up by the
//!   service) in the incident's country. Moving an incident that names a station to another
//!   country needs the new country's station in the same update.

use std::collections::HashMap;

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::incident::{
    IncidentClosed, IncidentEscalated, IncidentReported, IncidentUpdated, IncidentVerified,
    MAX_REPORT_AGE,
};
use events::domain::station::DutyStationRegistered;
use events::validate::{self, Country, Severity};
use events::{RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where an incident is in its life (in `events`, as the answers name it).
pub use events::domain::incident::IncidentStatus as Status;

/// An incident as its stream tells it: the record `events` names (what `get` and each item
/// of a list answer), with this crate's rules ([`Aggregate`]). A type of its own only because
/// the rules are this crate's; it reads as the record (`Deref`), and its JSON is the
/// record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Incident(pub events::domain::incident::Incident);

impl std::ops::Deref for Incident {
    type Target = events::domain::incident::Incident;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Incident {
    /// Whether it can still change.
    pub fn is_open(&self) -> bool {
        self.status != Status::Closed
    }
}

impl Aggregate for Incident {
    type Command = IncidentCommand;
    type Facts = Facts;

    fn stream(id: Uuid) -> StreamName {
        events::domain::incident::stream_for(id)
    }

    fn parse(name: &str, actor: &Actor, body: Value) -> Result<IncidentCommand, Refusal> {
        parse(name, actor, body)
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.0.version = recorded.version;
    }

    /// Applies one recorded event of the incident's stream.
    fn apply_known(state: &mut Option<Incident>, event: DomainEvent, recorded: &RecordedEvent) {
        if let DomainEvent::IncidentReported(r) = event {
            if state.is_none() {
                *state = Some(Incident(events::domain::incident::Incident {
                    id: recorded.stream.id(),
                    country: r.country,
                    category: r.category,
                    severity: r.severity,
                    title: r.title,
                    occurred_at: r.occurred_at,
                    location: r.location,
                    duty_station: r.duty_station,
                    description: r.description,
                    casualties: r.casualties,
                    reporter: r.reporter,
                    status: Status::Reported,
                    verified_by: None,
                    escalations: vec![],
                    closed_reason: None,
                    reported_position: recorded.position,
                    reported_at: recorded.recorded_at,
                    updated_at: recorded.recorded_at,
                    version: recorded.version,
                }));
            }
            return;
        }
        let Some(Incident(i)) = state.as_mut() else {
            return;
        };
        i.version = recorded.version;
        i.updated_at = recorded.recorded_at;
        match event {
            DomainEvent::IncidentUpdated(u) => {
                i.country = u.country.unwrap_or(i.country);
                i.category = u.category.unwrap_or(i.category);
                i.severity = u.severity.unwrap_or(i.severity);
                i.title = u.title.unwrap_or(std::mem::take(&mut i.title));
                i.occurred_at = u.occurred_at.unwrap_or(i.occurred_at);
                i.location = u.location.or(i.location);
                i.duty_station = u.duty_station.or(i.duty_station.take());
                i.description = u.description.or(i.description.take());
                i.casualties = u.casualties.or(i.casualties);
            }
            DomainEvent::IncidentVerified(v) if i.status == Status::Reported => {
                i.status = Status::Verified;
                i.verified_by = Some(v.by);
            }
            DomainEvent::IncidentEscalated(e) => i.escalations.push(e.to),
            DomainEvent::IncidentClosed(c) => {
                i.status = Status::Closed;
                i.closed_reason = Some(c.reason);
            }
            _ => {}
        }
    }

    fn decide(
        id: Uuid,
        state: Option<&Incident>,
        actor: &Actor,
        command: IncidentCommand,
        facts: &Facts,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let event: DomainEvent = match command {
            IncidentCommand::Report(r) => {
                actor.may(policy::INCIDENT_REPORT, "report incidents")?;
                if !actor.covers(r.country) {
                    return Err(scope_refusal(actor, r.country));
                }
                if state.is_some() {
                    return Err(Refusal::conflict(format!(
                        "incident {id} is already reported; send changes as an update"
                    )));
                }
                r.validate()?;
                validate::in_window(
                    "occurred_at",
                    r.occurred_at,
                    facts.now - MAX_REPORT_AGE,
                    facts.now,
                )?;
                if let Some(named) = &r.duty_station {
                    station_in(named, r.country, facts)?;
                }
                r.into()
            }
            IncidentCommand::Update(u) => {
                actor.may(policy::INCIDENT_UPDATE, "update incidents")?;
                let incident = open(id, actor, state)?;
                if let Some(c) = u.country
                    && !actor.covers(c)
                {
                    return Err(scope_refusal(actor, c));
                }
                u.validate()?;
                if let Some(t) = u.occurred_at {
                    validate::in_window(
                        "occurred_at",
                        t,
                        incident.reported_at - MAX_REPORT_AGE,
                        facts.now,
                    )?;
                }
                let country = u.country.unwrap_or(incident.country);
                match (&u.duty_station, &incident.duty_station) {
                    (Some(named), _) => station_in(named, country, facts)?,
                    (None, Some(kept)) if country != incident.country => {
                        return Err(Refusal::invalid(format!(
                            "duty_station: the incident names {kept}, a station of {}; send a duty station of {} with the new country",
                            incident.country.as_str(),
                            country.as_str()
                        )));
                    }
                    (None, _) => {}
                }
                u.into()
            }
            IncidentCommand::Verify(v) => {
                actor.may(policy::INCIDENT_VERIFY, "verify incidents")?;
                let incident = open(id, actor, state)?;
                if incident.status == Status::Verified {
                    return Err(Refusal::conflict(format!(
                        "incident {id} is already verified by {}",
                        incident.verified_by.as_deref().unwrap_or("someone")
                    )));
                }
                v.into()
            }
            IncidentCommand::Escalate(e) => {
                actor.may(policy::INCIDENT_ESCALATE, "escalate incidents")?;
                let incident = open(id, actor, state)?;
                if incident.escalations.contains(&e.to) {
                    return Err(Refusal::conflict(format!(
                        "incident {id} is already escalated to that {}",
                        e.to.kind.category()
                    )));
                }
                e.into()
            }
            IncidentCommand::Close(c) => {
                actor.may(policy::INCIDENT_CLOSE, "close incidents")?;
                open(id, actor, state)?;
                c.into()
            }
        };
        event.validate()?;
        Ok(vec![event])
    }
}

/// A command on one incident, its body read and checked for shape.
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentCommand {
    /// A flash report (with optional details).
    Report(IncidentReported),
    /// New or corrected details, or a note.
    Update(IncidentUpdated),
    /// Confirm the report.
    Verify(IncidentVerified),
    /// Link to a case.
    Escalate(IncidentEscalated),
    /// Close it.
    Close(IncidentClosed),
}

/// The transitions, by the command name of their subject (`vigil.cmd.incidents.<name>`).
pub const TRANSITIONS: [&str; 5] = ["report", "update", "verify", "escalate", "close"];

fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    events::codec::from_value(body).map_err(Refusal::invalid)
}

/// Reads the body of command `name` for `actor`. Fields that come from the login (the
/// reporter, the verifier) are set here and refused in the body: nobody reports in another
/// person's name.
fn parse(name: &str, actor: &Actor, body: Value) -> Result<IncidentCommand, Refusal> {
    let with_actor = |mut body: Value, field: &str| -> Result<Value, Refusal> {
        let obj = body
            .as_object_mut()
            .ok_or_else(|| Refusal::invalid("the body must be a JSON object"))?;
        if obj.contains_key(field) {
            return Err(Refusal::invalid(format!(
                "{field}: is taken from your login; leave it out"
            )));
        }
        obj.insert(field.to_owned(), Value::String(actor.user.clone()));
        Ok(body)
    };
    Ok(match name {
        "report" => IncidentCommand::Report(read(with_actor(body, "reporter")?)?),
        "update" => IncidentCommand::Update(read(body)?),
        "verify" => IncidentCommand::Verify(read(with_actor(body, "by")?)?),
        "escalate" => IncidentCommand::Escalate(read(body)?),
        "close" => IncidentCommand::Close(read(body)?),
        other => {
            return Err(Refusal::invalid(format!(
                "unknown incident command {:?}",
                other.chars().take(32).collect::<String>()
            )));
        }
    })
}

/// What `decide` knows besides the incident's stream, gathered by the service before it
/// decides: the clock, and the reference data the command names.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The service's clock when the command arrived.
    pub now: OffsetDateTime,
    /// The registration of the duty station the command names (`None`: none is named, or it
    /// is not registered).
    pub station: Option<DutyStationRegistered>,
}

impl Facts {
    /// Facts at `now` with no duty station.
    pub fn at(now: OffsetDateTime) -> Self {
        Self { now, station: None }
    }
}

/// Checks that `named` (a duty station in the command) is registered and in `country`.
fn station_in(named: &str, country: Country, facts: &Facts) -> Result<(), Refusal> {
    let short: String = named.chars().take(64).collect();
    let station = facts
        .station
        .as_ref()
        .filter(|s| s.station == named)
        .ok_or_else(|| {
            Refusal::invalid(format!(
                "duty_station: {short:?} is not a registered duty station; check the code (duty stations are loaded with `vigil import`)"
            ))
        })?;
    if station.country != country {
        return Err(Refusal::invalid(format!(
            "duty_station: {short} is in {}, not {}; send a duty station of {}",
            station.country.as_str(),
            country.as_str(),
            country.as_str()
        )));
    }
    Ok(())
}

/// The refusal for an incident the actor may not see (or that does not exist).
fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!(
        "no incident {id} that you can see; check the id (a report still queued on a phone is not here yet)"
    ))
}

/// Whether `actor` may see `incident` at all.
pub fn visible(actor: &Actor, incident: &Incident) -> bool {
    actor.may(policy::INCIDENT_READ, "read incidents").is_ok() && actor.covers(incident.country)
}

fn open<'a>(id: Uuid, actor: &Actor, state: Option<&'a Incident>) -> Result<&'a Incident, Refusal> {
    let incident = state
        .filter(|i| actor.covers(i.country))
        .ok_or_else(|| not_found(id))?;
    if !incident.is_open() {
        return Err(Refusal::conflict(format!(
            "incident {id} is closed; report a new incident if something else happened"
        )));
    }
    Ok(incident)
}

fn scope_refusal(actor: &Actor, country: Country) -> Refusal {
    Refusal::forbidden(format!(
        "you report for {} only, not {}; ask the duty officer to report it",
        actor.scope.map_or("no country", |c| c.as_str()),
        country.as_str()
    ))
}

/// Filters of a list (`GET /api/v1/incidents`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// `reported`, `verified`, `closed`, or `open` (reported or verified).
    #[serde(default)]
    pub status: Option<String>,
    /// At least this severity.
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Reported at or after this time.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub since: Option<OffsetDateTime>,
    /// At most this many (1 to [`MAX_LIST`], default [`DEFAULT_LIST`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// After this one: the `next` of the previous page (see [`events::page`]).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

pub use events::command::{DEFAULT_LIST, MAX_LIST};
use events::page::{Cursor, Page, PageQuery};

/// The code version of the register's state and fold, written in its checkpoints
/// (`runtime::checkpoint`): bump it whenever the register's fields or its fold change, so that
/// an old checkpoint is ignored and the whole log folded again.
pub const REGISTER_VERSION: u32 = 1;

/// Every incident, folded from the whole log: answers lists. Checkpointed.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    incidents: HashMap<Uuid, Option<Incident>>,
    position: u64,
}

impl runtime::Fold for Register {
    /// Applies one event of the log (any category; only incidents are kept). Events at or
    /// below the register's position are duplicates and ignored.
    fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        if e.stream.category().as_str() == "incident" {
            Incident::apply(self.incidents.entry(e.stream.id()).or_default(), e);
        }
    }

    fn checkpoint() -> Option<runtime::checkpoint::Codec<Self>> {
        Some(runtime::checkpoint::Codec::json(REGISTER_VERSION))
    }
}

impl runtime::host::Listing for Register {
    type Query = ListQuery;
    type Item = events::domain::incident::Incident;

    fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        _now: OffsetDateTime,
    ) -> Result<Page<events::domain::incident::Incident>, Refusal> {
        Ok(Register::list(self, actor, q)?.map(|i| i.0.clone()))
    }
}

impl Register {
    /// The last log position applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The incidents `actor` may see that match `q`, newest report first.
    pub fn list(&self, actor: &Actor, q: &ListQuery) -> Result<Page<&Incident>, Refusal> {
        actor.may(policy::INCIDENT_READ, "read incidents")?;
        if let Some(c) = q.country
            && !actor.covers(c)
        {
            return Err(Refusal::forbidden(format!(
                "you see incidents of {} only",
                actor.scope.map_or("no country", |c| c.as_str())
            )));
        }
        let status: Option<fn(Status) -> bool> = match q.status.as_deref() {
            None => None,
            Some("reported") => Some(|s| s == Status::Reported),
            Some("verified") => Some(|s| s == Status::Verified),
            Some("closed") => Some(|s| s == Status::Closed),
            Some("open") => Some(|s| s != Status::Closed),
            Some(_) => {
                return Err(Refusal::invalid(
                    "status: must be reported, verified, closed or open",
                ));
            }
        };
        let found: Vec<&Incident> = self
            .incidents
            .values()
            .flatten()
            .filter(|i| actor.covers(i.country))
            .filter(|i| q.country.is_none_or(|c| i.country == c))
            .filter(|i| status.is_none_or(|f| f(i.status)))
            .filter(|i| q.severity.is_none_or(|s| i.severity >= s))
            .filter(|i| q.since.is_none_or(|t| i.reported_at >= t))
            .collect();
        events::page::newest_first(
            found,
            |i| i.reported_position,
            PageQuery::new(q.limit, q.cursor),
            self.position,
            |i| i,
        )
    }
}

#[cfg(test)]
mod checkpoint_tests;
#[cfg(test)]
mod tests;
