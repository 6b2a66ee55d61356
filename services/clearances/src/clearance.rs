//! The clearance aggregate: pure decide and apply over one `clearance-<id>` stream, and the
//! register of all clearances that answers lists and headcounts. No I/O, no clock.
//!
//! # Life of a clearance
//! `requested` (a traveller, an itinerary of legs: country, optional area, dates) →
//! `approved` or `refused` (with a reason; final). Only an approved clearance takes movements:
//! an arrival in a country of the itinerary, then the departure from it (not before the
//! arrival), possibly again later (a journey that comes back through a country). One cannot
//! arrive twice in a country without departing in between, nor depart from a country one has
//! not arrived in. Every refusal says why and what to do instead.
//!
//! # Who
//! Roles come from [`policy`] only. A field officer:
//! - sees a clearance when a leg of it is in their country (otherwise it is `not_found`: its
//!   existence is not revealed);
//! - approves or refuses it only when *every* leg is in their country (`forbidden`
//!   otherwise: a duty officer decides journeys that cross countries);
//! - records an arrival or a departure only in their own country;
//! - requests a clearance only for a journey with at least one leg in their country
//!   (`forbidden` otherwise). At least one, not every: a journey from their station to a
//!   meeting abroad is ordinary, and it is the rule by which they see a clearance, so they
//!   always see what they asked for; the decision on a journey that crosses countries stays
//!   with a duty officer (above).
//!
//! An agency focal point acts for the travellers of its own agency only (the agency of the
//! traveller's latest `PersonRegistered`): it requests clearances for them, and records their
//! arrivals and departures. Another agency's traveller answers `not_found`, as an unknown one
//! does, and another agency's clearance is `not_found` (neither's existence is revealed).
//!
//! The traveller must be in the personnel register (`PersonRegistered`, loaded with
//! `vigil import`); the caller looks them up and passes the registration in [`Facts`].

use std::collections::{BTreeSet, HashMap};

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, Role, policy};
use events::domain::DomainEvent;
use events::domain::clearance::{
    ArrivalRecorded, Clearance, ClearanceApproved, ClearanceRefused, ClearanceRequested,
    DepartureRecorded,
};
use events::domain::person::PersonRegistered;
use events::validate::Country;
use events::{RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::presence::present;

/// Where a clearance is in its life, and its arrivals and departures (in `events`, as the
/// answers name them).
pub use events::domain::clearance::{
    ClearanceMovement as Movement, ClearanceMovementKind as MovementKind, ClearanceStatus as Status,
};

/// A clearance as its stream tells it: the record `events` names (what `get` and each item of
/// a list answer), with this crate's rules ([`Aggregate`]). A type of its own only because the
/// rules are this crate's; it reads as the record (`Deref`), and its JSON is the record's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClearanceState(pub Clearance);

impl std::ops::Deref for ClearanceState {
    type Target = Clearance;

    fn deref(&self) -> &Clearance {
        &self.0
    }
}

impl Aggregate for ClearanceState {
    type Command = ClearanceCommand;
    type Facts = Facts;

    fn stream(id: Uuid) -> StreamName {
        events::domain::clearance::stream_for(id)
    }

    fn parse(name: &str, actor: &Actor, body: Value) -> Result<ClearanceCommand, Refusal> {
        match name {
            "request" => parse_request(body).map(ClearanceCommand::Request),
            _ => parse(name, actor, body),
        }
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.0.version = recorded.version;
    }

    /// Applies one recorded event of the clearance's stream. Events `decide` would never have
    /// produced (an approval after a refusal, written by hand) do not change the status.
    fn apply_known(
        state: &mut Option<ClearanceState>,
        event: DomainEvent,
        recorded: &RecordedEvent,
    ) {
        if let DomainEvent::ClearanceRequested(r) = event {
            if state.is_none() {
                *state = Some(ClearanceState(Clearance {
                    id: recorded.stream.id(),
                    traveller: r.traveller,
                    itinerary: r.itinerary,
                    purpose: r.purpose,
                    status: Status::Requested,
                    requested_by: recorded.meta.actor.clone(),
                    decided_by: None,
                    refusal_reason: None,
                    movements: vec![],
                    requested_position: recorded.position,
                    requested_at: recorded.recorded_at,
                    updated_at: recorded.recorded_at,
                    version: recorded.version,
                }));
            }
            return;
        }
        let Some(ClearanceState(c)) = state.as_mut() else {
            return;
        };
        c.version = recorded.version;
        c.updated_at = recorded.recorded_at;
        match event {
            DomainEvent::ClearanceApproved(a) if c.status == Status::Requested => {
                c.status = Status::Approved;
                c.decided_by = Some(a.by);
            }
            DomainEvent::ClearanceRefused(r) if c.status == Status::Requested => {
                c.status = Status::Refused;
                c.decided_by = Some(r.by);
                c.refusal_reason = Some(r.reason);
            }
            DomainEvent::ArrivalRecorded(a) => c.movements.push(Movement {
                kind: MovementKind::Arrival,
                country: a.country,
                at: a.at,
            }),
            DomainEvent::DepartureRecorded(d) => c.movements.push(Movement {
                kind: MovementKind::Departure,
                country: d.country,
                at: d.at,
            }),
            _ => {}
        }
    }

    /// A `request` by `decide_request`; a transition by the rules below.
    fn decide(
        id: Uuid,
        state: Option<&ClearanceState>,
        actor: &Actor,
        command: ClearanceCommand,
        facts: &Facts,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let event: DomainEvent = match command {
            ClearanceCommand::Request(r) => return decide_request(id, state, actor, r, facts),
            ClearanceCommand::Approve(a) => {
                actor.may(policy::CLEARANCE_DECIDE, "approve or refuse clearances")?;
                let c = existing(id, actor, state, facts)?;
                a.validate()?;
                may_decide(actor, c)?;
                still_requested(id, c, "approve")?;
                a.into()
            }
            ClearanceCommand::Refuse(r) => {
                actor.may(policy::CLEARANCE_DECIDE, "approve or refuse clearances")?;
                let c = existing(id, actor, state, facts)?;
                r.validate()?;
                may_decide(actor, c)?;
                still_requested(id, c, "refuse")?;
                r.into()
            }
            ClearanceCommand::Arrive(a) => {
                actor.may(policy::CLEARANCE_MOVEMENT, "record arrivals and departures")?;
                let c = existing(id, actor, state, facts)?;
                a.validate()?;
                movable(id, actor, c, a.country)?;
                if let Some(last) = c.last_movement_in(a.country) {
                    if last.kind == MovementKind::Arrival {
                        return Err(Refusal::conflict(format!(
                            "the traveller already arrived in {} at {} and has not departed; record the departure first",
                            a.country,
                            rfc3339(last.at)
                        )));
                    }
                    if a.at < last.at {
                        return Err(Refusal::invalid(format!(
                            "at: {} is before the departure from {} at {}; check the time",
                            rfc3339(a.at),
                            a.country,
                            rfc3339(last.at)
                        )));
                    }
                }
                a.into()
            }
            ClearanceCommand::Depart(d) => {
                actor.may(policy::CLEARANCE_MOVEMENT, "record arrivals and departures")?;
                let c = existing(id, actor, state, facts)?;
                d.validate()?;
                movable(id, actor, c, d.country)?;
                let arrival = c
                    .last_movement_in(d.country)
                    .filter(|m| m.kind == MovementKind::Arrival)
                    .ok_or_else(|| {
                        Refusal::conflict(format!(
                            "the traveller is not recorded as arrived in {} (no arrival, or already departed); record the arrival first",
                            d.country
                        ))
                    })?;
                if d.at < arrival.at {
                    return Err(Refusal::invalid(format!(
                        "at: {} is before the arrival in {} at {}; check the time",
                        rfc3339(d.at),
                        d.country,
                        rfc3339(arrival.at)
                    )));
                }
                d.into()
            }
        };
        event.validate()?;
        Ok(vec![event])
    }
}

impl ClearanceState {
    /// Whether a leg of the itinerary is in `country`.
    pub fn goes_to(&self, country: Country) -> bool {
        self.itinerary.iter().any(|l| l.country == country)
    }

    /// The countries of the itinerary, each once, in order of first appearance.
    pub fn countries(&self) -> Vec<Country> {
        let mut seen = Vec::new();
        for leg in &self.itinerary {
            if !seen.contains(&leg.country) {
                seen.push(leg.country);
            }
        }
        seen
    }

    /// The latest movement recorded in `country`, if any.
    pub fn last_movement_in(&self, country: Country) -> Option<&Movement> {
        self.movements.iter().rev().find(|m| m.country == country)
    }
}

/// A command on a clearance, its body read and checked for shape.
#[derive(Debug, Clone, PartialEq)]
pub enum ClearanceCommand {
    /// Ask for it (creates the stream).
    Request(ClearanceRequested),
    /// Grant it.
    Approve(ClearanceApproved),
    /// Refuse it, with a reason.
    Refuse(ClearanceRefused),
    /// The traveller arrived in a country.
    Arrive(ArrivalRecorded),
    /// The traveller left a country.
    Depart(DepartureRecorded),
}

/// The transitions, by the command name of their subject (`vigil.cmd.clearances.<name>`).
pub const TRANSITIONS: [&str; 4] = ["approve", "refuse", "arrive", "depart"];

fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    events::codec::from_value(body).map_err(Refusal::invalid)
}

/// Reads the body of a `request` (the fields of `ClearanceRequested`).
pub fn parse_request(body: Value) -> Result<ClearanceRequested, Refusal> {
    if !body.is_object() {
        return Err(Refusal::invalid(
            "the body must be a JSON object: {\"traveller\", \"itinerary\": [{\"country\", \"area\"?, \"from\", \"to\"}], \"purpose\"?}",
        ));
    }
    read(body)
}

/// Reads the `change` of transition `name` for `actor`. The decider (`by`) comes from the
/// login and is refused in the body: nobody decides in another person's name.
fn parse(name: &str, actor: &Actor, change: Value) -> Result<ClearanceCommand, Refusal> {
    let with_actor = |mut body: Value, field: &str| -> Result<Value, Refusal> {
        let obj = body
            .as_object_mut()
            .ok_or_else(|| Refusal::invalid("change: must be a JSON object"))?;
        if obj.contains_key(field) {
            return Err(Refusal::invalid(format!(
                "{field}: is taken from your login; leave it out"
            )));
        }
        obj.insert(field.to_owned(), Value::String(actor.user.clone()));
        Ok(body)
    };
    Ok(match name {
        "approve" => ClearanceCommand::Approve(read(with_actor(change, "by")?)?),
        "refuse" => ClearanceCommand::Refuse(read(with_actor(change, "by")?)?),
        "arrive" => ClearanceCommand::Arrive(read(change)?),
        "depart" => ClearanceCommand::Depart(read(change)?),
        other => {
            return Err(Refusal::invalid(format!(
                "unknown clearance command {:?}; clearances take approve, refuse, arrive, depart",
                other.chars().take(32).collect::<String>()
            )));
        }
    })
}

/// The refusal for a clearance the actor may not see (or that does not exist).
fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!(
        "no clearance {id} that you can see; check the id (field officers see clearances with a leg in their country)"
    ))
}

/// What `decide` and `decide_request` know besides the clearance's stream, looked up by the
/// service first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The traveller's registration in the personnel register: for a request, always looked
    /// up (`None`: not registered); for a transition, looked up when the actor is an agency
    /// focal point (whose scope is the traveller's agency). `None` is never in a focal
    /// point's scope.
    pub traveller: Option<PersonRegistered>,
}

/// Whether `actor` speaks for the agency of `traveller` (an agency focal point with an
/// agency, and the traveller registered in it).
fn same_agency(actor: &Actor, traveller: Option<&PersonRegistered>) -> bool {
    matches!((actor.agency.as_deref(), traveller), (Some(a), Some(t)) if t.agency == a)
}

/// Whether `actor` may read `clearance`: a reading role and, for a field officer, a leg in
/// their country.
pub fn visible(actor: &Actor, clearance: &ClearanceState) -> bool {
    actor.may(policy::CLEARANCE_READ, "read clearances").is_ok()
        && within_reach(actor, clearance, &Facts::default())
}

/// Whether `clearance` is within `actor`'s scope: for a field officer, a leg in their
/// country; for an agency focal point, a traveller of their agency; for the other roles,
/// every clearance.
fn within_reach(actor: &Actor, clearance: &ClearanceState, facts: &Facts) -> bool {
    match actor.role {
        Role::AgencyFocalPoint => {
            let traveller = facts
                .traveller
                .as_ref()
                .filter(|t| t.person == clearance.traveller);
            same_agency(actor, traveller)
        }
        _ => clearance.itinerary.iter().any(|l| actor.covers(l.country)),
    }
}

fn existing<'a>(
    id: Uuid,
    actor: &Actor,
    state: Option<&'a ClearanceState>,
    facts: &Facts,
) -> Result<&'a ClearanceState, Refusal> {
    state
        .filter(|c| within_reach(actor, c, facts))
        .ok_or_else(|| not_found(id))
}

fn scope(actor: &Actor) -> &'static str {
    actor.scope.map_or("no country", |c| c.as_str())
}

/// Decides a `request` for clearance `id` by `actor`; `facts.traveller` is the traveller's
/// registration in the personnel register, if any.
fn decide_request(
    id: Uuid,
    state: Option<&ClearanceState>,
    actor: &Actor,
    requested: ClearanceRequested,
    facts: &Facts,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::CLEARANCE_REQUEST, "request travel clearances")?;
    requested.validate()?;
    if actor.role == Role::FieldOfficer
        && !requested.itinerary.iter().any(|l| actor.covers(l.country))
    {
        return Err(Refusal::forbidden(format!(
            "you request clearances for journeys through {} only, and no leg of this one is there; ask a duty officer or the field officer of the destination",
            scope(actor)
        )));
    }
    let traveller = facts
        .traveller
        .as_ref()
        .filter(|t| t.person == requested.traveller);
    let in_scope = actor.role != Role::AgencyFocalPoint || same_agency(actor, traveller);
    if traveller.is_none() || !in_scope {
        // An agency focal point hears the same about another agency's traveller as about an
        // unknown one: who works for whom is not its to learn.
        let whose = if actor.role == Role::AgencyFocalPoint {
            format!(" of {}", actor.agency.as_deref().unwrap_or("your agency"))
        } else {
            String::new()
        };
        return Err(Refusal::not_found(format!(
            "traveller {:?} is not in the personnel register{whose}; import personnel first (`vigil import <file>` with their PersonRegistered record), then request again",
            requested.traveller
        )));
    }
    if state.is_some() {
        return Err(Refusal::conflict(format!(
            "clearance {id} already exists; request a new clearance with a new id"
        )));
    }
    Ok(vec![requested.into()])
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A field officer decides only journeys that stay in their country.
fn may_decide(actor: &Actor, c: &ClearanceState) -> Result<(), Refusal> {
    let outside: Vec<&str> = c
        .countries()
        .into_iter()
        .filter(|country| !actor.covers(*country))
        .map(|country| country.as_str())
        .collect();
    if outside.is_empty() {
        Ok(())
    } else {
        Err(Refusal::forbidden(format!(
            "you decide clearances within {} only and this journey also goes to {}; ask a duty officer to decide it",
            scope(actor),
            outside.join(", ")
        )))
    }
}

fn still_requested(id: Uuid, c: &ClearanceState, verb: &str) -> Result<(), Refusal> {
    let by = c.decided_by.as_deref().unwrap_or("someone");
    match c.status {
        Status::Requested => Ok(()),
        Status::Approved => Err(Refusal::conflict(format!(
            "clearance {id} is already approved by {by}; it cannot be {verb}d now (request a new clearance for a new journey)"
        ))),
        Status::Refused => Err(Refusal::conflict(format!(
            "clearance {id} is already refused by {by}; it cannot be {verb}d now (request a new clearance if the journey changed)"
        ))),
    }
}

/// Checks a movement in `country`: the actor's scope, an approved clearance, a country of
/// the itinerary.
fn movable(id: Uuid, actor: &Actor, c: &ClearanceState, country: Country) -> Result<(), Refusal> {
    if !actor.covers(country) {
        return Err(Refusal::forbidden(format!(
            "you record movements in {} only, not {country}; ask a duty officer or the field officer of {country}",
            scope(actor)
        )));
    }
    match c.status {
        Status::Approved => {}
        Status::Requested => {
            return Err(Refusal::conflict(format!(
                "clearance {id} is not approved yet; movements are recorded on approved clearances only (ask for a decision first)"
            )));
        }
        Status::Refused => {
            return Err(Refusal::conflict(format!(
                "clearance {id} was refused; movements are recorded on approved clearances only (request a new clearance)"
            )));
        }
    }
    if !c.goes_to(country) {
        let on: Vec<&str> = c.countries().into_iter().map(|c| c.as_str()).collect();
        return Err(Refusal::invalid(format!(
            "country: {country} is not on the itinerary ({}); record movements in those countries or request a new clearance",
            on.join(", ")
        )));
    }
    Ok(())
}

// Dates in a query are written `YYYY-MM-DD`, like the legs.
time::serde::format_description!(iso_date, Date, "[year]-[month]-[day]");

/// Filters of a list (`GET /api/v1/clearances`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `requested`, `approved` or `refused`.
    #[serde(default)]
    pub status: Option<String>,
    /// Only clearances with a leg in this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// Only this traveller's clearances.
    #[serde(default)]
    pub traveller: Option<String>,
    /// With `on`: only travellers present in this area of `country` (see
    /// [`crate::presence`]).
    #[serde(default)]
    pub area: Option<String>,
    /// Only clearances under which the traveller is present in `country` (and `area`) on
    /// this date, `YYYY-MM-DD`: the headcount of travellers.
    #[serde(default, with = "iso_date::option")]
    pub on: Option<Date>,
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

/// Every clearance, folded from the whole log: answers lists and headcounts.
///
/// A list by traveller reads the traveller's clearances only, from an index the fold keeps
/// (a clearance's traveller is set by its request and never changes), not a scan of every
/// clearance.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    clearances: HashMap<Uuid, Option<ClearanceState>>,
    by_traveller: HashMap<String, BTreeSet<Uuid>>,
    position: u64,
}

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
    type Item = Clearance;

    fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        _now: OffsetDateTime,
    ) -> Result<Page<Clearance>, Refusal> {
        Ok(Register::list(self, actor, q)?.map(|c| c.0.clone()))
    }
}

impl Register {
    /// Applies one event of the log (any category; only clearances are kept). Events at or
    /// below the register's position are duplicates and ignored.
    pub fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        if e.stream.category().as_str() == "clearance" {
            let id = e.stream.id();
            let state = self.clearances.entry(id).or_default();
            ClearanceState::apply(state, e);
            if let Some(c) = state.as_ref() {
                self.by_traveller
                    .entry(c.traveller.clone())
                    .or_default()
                    .insert(id);
            }
        }
    }

    /// The last log position applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// One clearance by id, as far as the register has read.
    pub fn get(&self, id: Uuid) -> Option<&ClearanceState> {
        self.clearances.get(&id).and_then(Option::as_ref)
    }

    /// The travellers present in `country` (and `area`) on `on` by the presence rule
    /// ([`present`]), each once, sorted. A traveller with two clearances covering the same
    /// day is one person.
    pub fn travellers_in(&self, country: Country, area: Option<&str>, on: Date) -> Vec<String> {
        let found: BTreeSet<&str> = self
            .clearances
            .values()
            .flatten()
            .filter(|c| present(c, country, area, on))
            .map(|c| c.traveller.as_str())
            .collect();
        found.into_iter().map(str::to_owned).collect()
    }

    /// The clearances `actor` may see that match `q`, newest request first.
    pub fn list(&self, actor: &Actor, q: &ListQuery) -> Result<Page<&ClearanceState>, Refusal> {
        actor.may(policy::CLEARANCE_READ, "read clearances")?;
        if let Some(c) = q.country
            && !actor.covers(c)
        {
            return Err(Refusal::forbidden(format!(
                "you see clearances with a leg in {} only; leave out country or ask for {}",
                scope(actor),
                scope(actor)
            )));
        }
        let status = match q.status.as_deref() {
            None => None,
            Some("requested") => Some(Status::Requested),
            Some("approved") => Some(Status::Approved),
            Some("refused") => Some(Status::Refused),
            Some(_) => {
                return Err(Refusal::invalid(
                    "status: must be requested, approved or refused",
                ));
            }
        };
        if let Some(t) = q.traveller.as_deref() {
            events::validate::id("traveller", t)?;
        }
        if let Some(a) = q.area.as_deref() {
            events::validate::id("area", a)?;
            if q.on.is_none() {
                return Err(Refusal::invalid(
                    "area: give on (a date, YYYY-MM-DD) and country with it: it asks who is present in that area on that day",
                ));
            }
        }
        let presence = match (q.on, q.country) {
            (Some(on), Some(country)) => Some((country, q.area.as_deref(), on)),
            (Some(_), None) => {
                return Err(Refusal::invalid(
                    "on: give country with it: it asks who is present in that country on that day",
                ));
            }
            (None, _) => None,
        };
        let candidates: Box<dyn Iterator<Item = &ClearanceState>> = match q.traveller.as_deref() {
            Some(t) => Box::new(
                self.by_traveller
                    .get(t)
                    .into_iter()
                    .flatten()
                    .filter_map(|id| self.get(*id)),
            ),
            None => Box::new(self.clearances.values().flatten()),
        };
        let found: Vec<&ClearanceState> = candidates
            .filter(|c| within_reach(actor, c, &Facts::default()))
            .filter(|c| q.country.is_none_or(|country| c.goes_to(country)))
            .filter(|c| status.is_none_or(|s| c.status == s))
            .filter(|c| q.traveller.as_deref().is_none_or(|t| c.traveller == t))
            .filter(|c| presence.is_none_or(|(country, area, on)| present(c, country, area, on)))
            .collect();
        events::page::newest_first(
            found,
            |c| c.requested_position,
            PageQuery::new(q.limit, q.cursor),
            self.position,
            |c| c,
        )
    }
}

#[cfg(test)]
mod tests;
