//! The hostage case aggregate: pure decide and apply over one `hostage-<id>` stream, the
//! summary that everyone but a crisis manager sees, and the register of every case that
//! answers lists. No I/O, no clock: the time is passed in.
//!
//! # Life of a case
//! `open` (from an incident: the persons held, captors and location if known) → proofs of
//! life, negotiation contacts, each person released or deceased (once, and never both) →
//! `closed` with an outcome that accounts for every person exactly once and agrees with what
//! was recorded. A closed case refuses every change.
//!
//! # Who sees what
//! Only crisis managers act on a case and read its details (names, captors, location,
//! proofs, contacts); those reads are audited by the service. Everyone else allowed by
//! `policy::HOSTAGE_SUMMARY` sees [`Summary`]: counts and days held, never a person
//! reference, captors or a location.

use std::collections::HashMap;

use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::hostage::{
    HostageCaseClosed, HostageCaseOpened, HostageDeceased, HostageOutcome, HostageReleased,
    MAX_PERSONS, NegotiationContactLogged, PersonAccount, ProofOfLifeReceived,
};
use events::domain::incident::Location;
use events::validate::Country;
use events::{Decoded, RecordedEvent};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a case is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Opened, not yet closed.
    Open,
    /// Closed with an account of every person; no more changes.
    Closed,
}

/// Where one person of a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Still held.
    Held,
    /// Released (recorded once).
    Released,
    /// Died in captivity (recorded once).
    Deceased,
    /// Still held in the record when the case closed, and accounted for as `other` (escaped,
    /// unaccounted for…: the closing account's note says which).
    Other,
}

/// One person held in a case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Personnel reference.
    pub person: String,
    /// Their name from the personnel register, filled in for a crisis manager's read
    /// ([`Case::named`]); `None` when the reference is not (or not yet) in the register.
    #[serde(default)]
    pub name: Option<String>,
    /// Held, released, deceased, or (once closed) accounted for as other.
    pub status: PersonStatus,
    /// When they were released or died (the time given in the command).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub at: Option<OffsetDateTime>,
    /// The time the latest proof of life shows them alive.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_proof_of_life: Option<OffsetDateTime>,
}

/// A proof of life, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The person.
    pub person: String,
    /// When the proof shows them alive.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the proof is.
    pub note: String,
    /// Who logged it.
    pub by: Option<String>,
    /// When the centre recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// A negotiation contact, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// When the contact took place.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What was said.
    pub summary: String,
    /// Who logged it.
    pub by: Option<String>,
    /// When the centre recorded it.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

/// A hostage case as its stream tells it: the details only crisis managers see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The case's id (the stream is `hostage-<id>`).
    pub id: Uuid,
    /// The incident it arose from.
    pub incident_id: Uuid,
    /// Where the persons were taken.
    pub country: Country,
    /// The persons held, in the order the case named them.
    pub persons: Vec<Person>,
    /// Who holds them, if known.
    pub captors: Option<String>,
    /// Where they are believed to be held, if known.
    pub location: Option<Location>,
    /// Every proof of life, oldest record first.
    pub proofs: Vec<Proof>,
    /// Every negotiation contact, oldest record first.
    pub contacts: Vec<Contact>,
    /// Open or closed.
    pub status: Status,
    /// How it ended (once closed).
    pub outcome: Option<String>,
    /// The final account of every person (once closed; empty before).
    pub accounting: Vec<PersonAccount>,
    /// Who opened it.
    pub opened_by: Option<String>,
    /// When the centre recorded the opening.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Log position of the opening.
    pub opened_position: u64,
    /// When the centre recorded the closure.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The stream's version.
    pub version: u64,
}

impl Case {
    /// Folds a stream's events; `None` when the stream holds no opening.
    pub fn fold(events: &[RecordedEvent]) -> Option<Case> {
        let mut state = None;
        for e in events {
            apply(&mut state, e);
        }
        state
    }

    /// Whether it can still change.
    pub fn is_open(&self) -> bool {
        self.status == Status::Open
    }

    /// The person `person` of this case.
    pub fn person(&self, person: &str) -> Option<&Person> {
        self.persons.iter().find(|p| p.person == person)
    }

    /// How many persons are still held (none once the case is closed: the closing account
    /// says what became of everyone).
    pub fn persons_held(&self) -> usize {
        self.count(PersonStatus::Held)
    }

    /// How many persons of the case are in `status`.
    pub fn count(&self, status: PersonStatus) -> usize {
        self.persons.iter().filter(|p| p.status == status).count()
    }

    /// Whole days held: from the opening to the closure, or to `now` while open (never
    /// negative, even if `now` is behind the store's clock).
    pub fn days_held(&self, now: OffsetDateTime) -> u64 {
        let end = self.closed_at.unwrap_or(now);
        u64::try_from((end - self.opened_at).whole_days()).unwrap_or(0)
    }

    /// The same case with each person's name looked up by `name_of` (for a crisis manager).
    #[must_use]
    pub fn named(mut self, name_of: impl Fn(&str) -> Option<String>) -> Case {
        for p in &mut self.persons {
            p.name = name_of(&p.person);
        }
        self
    }

    fn person_mut(&mut self, person: &str) -> Option<&mut Person> {
        self.persons.iter_mut().find(|p| p.person == person)
    }
}

/// Applies one recorded event of the case's stream. The fold keeps each person's first
/// release or death only, so a log written around the service (e.g. `vigil append`) cannot
/// make a person both.
pub fn apply(state: &mut Option<Case>, recorded: &RecordedEvent) {
    let event = match DomainEvent::decode(recorded) {
        Decoded::Known(e) => e,
        // Unknown types are kept in the log; the aggregate only moves its version on.
        Decoded::Unknown { .. } => {
            if let Some(c) = state.as_mut() {
                c.version = recorded.version;
            }
            return;
        }
    };
    let by = recorded.meta.actor.clone();
    if let DomainEvent::HostageCaseOpened(o) = event {
        if state.is_none() {
            *state = Some(Case {
                id: recorded.stream.id(),
                incident_id: o.incident_id,
                country: o.country,
                persons: o
                    .persons
                    .into_iter()
                    .map(|person| Person {
                        person,
                        name: None,
                        status: PersonStatus::Held,
                        at: None,
                        last_proof_of_life: None,
                    })
                    .collect(),
                captors: o.captors,
                location: o.location,
                proofs: vec![],
                contacts: vec![],
                status: Status::Open,
                outcome: None,
                accounting: vec![],
                opened_by: by,
                opened_at: recorded.recorded_at,
                opened_position: recorded.position,
                closed_at: None,
                updated_at: recorded.recorded_at,
                version: recorded.version,
            });
        }
        return;
    }
    let Some(c) = state.as_mut() else { return };
    c.version = recorded.version;
    c.updated_at = recorded.recorded_at;
    match event {
        DomainEvent::ProofOfLifeReceived(p) => {
            if let Some(person) = c.person_mut(&p.person) {
                person.last_proof_of_life =
                    Some(person.last_proof_of_life.map_or(p.at, |t| t.max(p.at)));
            }
            c.proofs.push(Proof {
                person: p.person,
                at: p.at,
                note: p.note,
                by,
                recorded_at: recorded.recorded_at,
            });
        }
        DomainEvent::NegotiationContactLogged(n) => c.contacts.push(Contact {
            at: n.at,
            summary: n.summary,
            by,
            recorded_at: recorded.recorded_at,
        }),
        DomainEvent::HostageReleased(r) => settle(c, &r.person, PersonStatus::Released, r.at),
        DomainEvent::HostageDeceased(d) => settle(c, &d.person, PersonStatus::Deceased, d.at),
        DomainEvent::HostageCaseClosed(closed) if c.is_open() => {
            c.status = Status::Closed;
            for a in &closed.accounting {
                if a.status == HostageOutcome::Other
                    && let Some(p) = c.person_mut(&a.person)
                    && p.status == PersonStatus::Held
                {
                    p.status = PersonStatus::Other;
                }
            }
            c.outcome = Some(closed.outcome);
            c.accounting = closed.accounting;
            c.closed_at = Some(recorded.recorded_at);
        }
        _ => {}
    }
}

fn settle(c: &mut Case, person: &str, status: PersonStatus, at: OffsetDateTime) {
    if let Some(p) = c.person_mut(person)
        && p.status == PersonStatus::Held
    {
        p.status = status;
        p.at = Some(at);
    }
}

/// Most persons named in one bulk command: every person a case can hold (one append).
pub const MAX_MANY: usize = MAX_PERSONS;

/// Body of `release_many`: several persons of the case released at the same time (70 people
/// freed together need one request, not 70).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleaseMany {
    /// The persons, 1 to [`MAX_MANY`], each once, every one still held.
    pub persons: Vec<String>,
    /// When they were released.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Body of `proof_of_life_many`: one proof showing several persons alive (a group video).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofOfLifeMany {
    /// The persons, 1 to [`MAX_MANY`], each once, every one still held.
    pub persons: Vec<String>,
    /// When the proof shows them alive.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// What the proof is.
    pub note: String,
}

/// A command on one case, its body read and checked for shape.
#[derive(Debug, Clone, PartialEq)]
pub enum HostageCommand {
    /// Open the case.
    Open(HostageCaseOpened),
    /// A proof that a person was alive.
    ProofOfLife(ProofOfLifeReceived),
    /// A contact with the captors or intermediaries.
    Negotiation(NegotiationContactLogged),
    /// A person was released.
    Release(HostageReleased),
    /// Several persons were released together: all of them or none.
    ReleaseMany(ReleaseMany),
    /// One proof of life for several persons: all of them or none.
    ProofOfLifeMany(ProofOfLifeMany),
    /// A person died.
    Deceased(HostageDeceased),
    /// Close the case with an account of every person.
    Close(HostageCaseClosed),
}

/// The commands that change a case, by the name of their subject
/// (`vigil.cmd.hostage.<name>`).
pub const COMMANDS: [&str; 8] = [
    "open",
    "proof_of_life",
    "proof_of_life_many",
    "negotiation",
    "release",
    "release_many",
    "deceased",
    "close",
];

fn read<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    events::codec::from_value(body).map_err(Refusal::invalid)
}

/// Reads the body of command `name` (for `open`, the case's fields; for the others, the
/// `change` part). Errors name the field.
pub fn parse(name: &str, body: Value) -> Result<HostageCommand, Refusal> {
    if !body.is_object() {
        return Err(Refusal::invalid("the body must be a JSON object"));
    }
    Ok(match name {
        "open" => HostageCommand::Open(read(body)?),
        "proof_of_life" => HostageCommand::ProofOfLife(read(body)?),
        "negotiation" => HostageCommand::Negotiation(read(body)?),
        "release" => HostageCommand::Release(read(body)?),
        "release_many" => HostageCommand::ReleaseMany(read(body)?),
        "proof_of_life_many" => HostageCommand::ProofOfLifeMany(read(body)?),
        "deceased" => HostageCommand::Deceased(read(body)?),
        "close" => HostageCommand::Close(read(body)?),
        other => {
            return Err(Refusal::invalid(format!(
                "unknown hostage command {:?}; use one of {}",
                other.chars().take(32).collect::<String>(),
                COMMANDS.join(", ")
            )));
        }
    })
}

/// The refusal for a case that does not exist or that the actor may not see.
pub fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!(
        "no hostage case {id} that you can see; check the id"
    ))
}

/// The open case `id`, or why it cannot change.
fn open_case<'a>(id: Uuid, actor: &Actor, state: Option<&'a Case>) -> Result<&'a Case, Refusal> {
    let case = state
        .filter(|c| actor.covers(c.country))
        .ok_or_else(|| not_found(id))?;
    if !case.is_open() {
        return Err(Refusal::conflict(format!(
            "hostage case {id} is closed; nothing can be added to it (open a new case if persons are taken again)"
        )));
    }
    Ok(case)
}

/// The person `name` of `case`, or an `invalid` refusal of `field`.
fn member<'a>(case: &'a Case, field: &str, name: &str) -> Result<&'a Person, Refusal> {
    case.person(name).ok_or_else(|| {
        Refusal::invalid(format!(
            "{field}: {name:?} is not held in hostage case {}; use one of the case's persons ({})",
            case.id,
            case.persons
                .iter()
                .map(|p| p.person.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

fn stamp(p: &Person) -> String {
    p.at.map_or_else(String::new, |t| format!(" (at {t})"))
}

/// What `decide` knows besides the case's stream, looked up by the service first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    /// For `open`: whether the incident named by `incident_id` is reported (its stream holds
    /// an `IncidentReported`). A case opened from no incident would hang on nothing.
    pub incident_reported: bool,
}

/// Decides what `command` by `actor` does to case `id` in `state`: the events to append, or
/// why not.
pub fn decide(
    id: Uuid,
    state: Option<&Case>,
    actor: &Actor,
    command: HostageCommand,
    facts: Facts,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(
        policy::HOSTAGE_MANAGE,
        "open or act on hostage cases; ask a crisis manager",
    )?;
    let event: DomainEvent = match command {
        HostageCommand::Open(o) => {
            if !actor.covers(o.country) {
                return Err(Refusal::forbidden(format!(
                    "you act for {} only, not {}; ask a crisis manager",
                    actor.scope.map_or("no country", |c| c.as_str()),
                    o.country.as_str()
                )));
            }
            if state.is_some() {
                return Err(Refusal::conflict(format!(
                    "hostage case {id} is already open; act on it, or open a new case with a new id"
                )));
            }
            if !facts.incident_reported {
                return Err(Refusal::invalid(format!(
                    "incident_id: no incident {} is reported; report the incident first, then open the case from it",
                    o.incident_id
                )));
            }
            o.into()
        }
        HostageCommand::ProofOfLife(p) => {
            let case = open_case(id, actor, state)?;
            p.validate()?;
            alive(member(case, "person", &p.person)?)?;
            p.into()
        }
        HostageCommand::ReleaseMany(m) => {
            let case = open_case(id, actor, state)?;
            let released = m
                .persons
                .iter()
                .map(|person| HostageReleased {
                    person: person.clone(),
                    at: m.at,
                })
                .collect::<Vec<_>>();
            return many(case, &m.persons, "released", &released, |r| r.validate());
        }
        HostageCommand::ProofOfLifeMany(m) => {
            let case = open_case(id, actor, state)?;
            let proofs = m
                .persons
                .iter()
                .map(|person| ProofOfLifeReceived {
                    person: person.clone(),
                    at: m.at,
                    note: m.note.clone(),
                })
                .collect::<Vec<_>>();
            return many(case, &m.persons, "", &proofs, |p| p.validate());
        }
        HostageCommand::Negotiation(n) => {
            open_case(id, actor, state)?;
            n.into()
        }
        HostageCommand::Release(r) => {
            let case = open_case(id, actor, state)?;
            r.validate()?;
            held(member(case, "person", &r.person)?, "released")?;
            r.into()
        }
        HostageCommand::Deceased(d) => {
            let case = open_case(id, actor, state)?;
            d.validate()?;
            held(member(case, "person", &d.person)?, "recorded deceased")?;
            d.into()
        }
        HostageCommand::Close(c) => {
            let case = open_case(id, actor, state)?;
            c.validate()?;
            accounts_for_everyone(case, &c)?;
            c.into()
        }
    };
    event.validate()?;
    Ok(vec![event])
}

/// Proof of life is only for a person still held.
fn alive(person: &Person) -> Result<(), Refusal> {
    match person.status {
        PersonStatus::Held => Ok(()),
        PersonStatus::Released => Err(Refusal::conflict(format!(
            "{} was released{}; proof of life is only for persons still held",
            person.person,
            stamp(person)
        ))),
        PersonStatus::Deceased => Err(Refusal::conflict(format!(
            "{} is recorded deceased{}; proof of life is only for persons still held (log what was learned as a negotiation contact)",
            person.person,
            stamp(person)
        ))),
        PersonStatus::Other => Err(accounted(person)),
    }
}

/// A bulk command: one event per listed person, all of them or none. The list holds 1 to
/// [`MAX_MANY`] persons, each once, every one of the case and still held; the first person
/// that is not is named in the refusal (`persons[i]`), and nothing is recorded. `what` is
/// "released" for a release (checked like one release), empty for a proof of life.
fn many<T>(
    case: &Case,
    persons: &[String],
    what: &str,
    each: &[T],
    validate: impl Fn(&T) -> Result<(), events::validate::ValidationError>,
) -> Result<Vec<DomainEvent>, Refusal>
where
    T: Clone + Into<DomainEvent>,
{
    if persons.is_empty() || persons.len() > MAX_MANY {
        return Err(Refusal::invalid(format!(
            "persons: 1 to {MAX_MANY} persons at a time (this list has {})",
            persons.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, (person, event)) in persons.iter().zip(each).enumerate() {
        let field = format!("persons[{i}]");
        validate(event).map_err(|mut e| {
            // The person's id is the list's entry; `at` and `note` are the body's own.
            if e.field == "person" {
                e.field.clone_from(&field);
            }
            Refusal::from(e)
        })?;
        if !seen.insert(person.as_str()) {
            return Err(Refusal::invalid(format!(
                "{field}: {person:?} is listed twice; name each person once"
            )));
        }
        let p = member(case, &field, person)?;
        let checked = if what.is_empty() {
            alive(p)
        } else {
            held(p, what)
        };
        checked.map_err(|r| {
            Refusal::new(
                r.code,
                format!("{field}: {}; nothing was recorded", r.message),
            )
        })?;
    }
    let events: Vec<DomainEvent> = each.iter().cloned().map(Into::into).collect();
    for e in &events {
        e.validate()?;
    }
    Ok(events)
}

/// A release or a death is recorded once per person, and never both.
fn held(person: &Person, what: &str) -> Result<(), Refusal> {
    match person.status {
        PersonStatus::Held => Ok(()),
        PersonStatus::Released => Err(Refusal::conflict(format!(
            "{} was already released{}; a person is {what} once at most: nothing to do",
            person.person,
            stamp(person)
        ))),
        PersonStatus::Deceased => Err(Refusal::conflict(format!(
            "{} is already recorded deceased{}; a person is {what} once at most: nothing to do",
            person.person,
            stamp(person)
        ))),
        PersonStatus::Other => Err(accounted(person)),
    }
}

/// A person accounted for at closure (only in a closed case, which refuses changes first).
fn accounted(person: &Person) -> Refusal {
    Refusal::conflict(format!(
        "{} was accounted for when the case closed; nothing can be added",
        person.person
    ))
}

/// The closing account names every person of the case exactly once (`validate` refuses a
/// person named twice) and agrees with what was recorded.
fn accounts_for_everyone(case: &Case, closed: &HostageCaseClosed) -> Result<(), Refusal> {
    for (i, a) in closed.accounting.iter().enumerate() {
        member(case, &format!("accounting[{i}].person"), &a.person)?;
    }
    let missing: Vec<&str> = case
        .persons
        .iter()
        .filter(|p| !closed.accounting.iter().any(|a| a.person == p.person))
        .map(|p| p.person.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Refusal::invalid(format!(
            "accounting: must account for every person of the case; add {}",
            missing.join(", ")
        )));
    }
    for (i, a) in closed.accounting.iter().enumerate() {
        let p = member(case, &format!("accounting[{i}].person"), &a.person)?;
        let agrees = matches!(
            (p.status, a.status),
            (PersonStatus::Released, HostageOutcome::Released)
                | (PersonStatus::Deceased, HostageOutcome::Deceased)
                | (PersonStatus::Held, HostageOutcome::Other)
        );
        if agrees {
            continue;
        }
        let message = match p.status {
            PersonStatus::Released => format!(
                "accounting[{i}]: {} was recorded released{}; account for them as released",
                p.person,
                stamp(p)
            ),
            PersonStatus::Deceased => format!(
                "accounting[{i}]: {} was recorded deceased{}; account for them as deceased",
                p.person,
                stamp(p)
            ),
            PersonStatus::Held => format!(
                "accounting[{i}]: {} is still held in the record; record their release or death first, or account for them as other with a note (escaped, unaccounted for…)",
                p.person
            ),
            PersonStatus::Other => accounted(p).message,
        };
        return Err(Refusal::conflict(message));
    }
    Ok(())
}

/// What everyone allowed to list hostage cases sees of one: no person reference, no captors,
/// no location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// The case's id.
    pub case: Uuid,
    /// Where the persons were taken.
    pub country: Country,
    /// The incident it arose from.
    pub incident_id: Uuid,
    /// How many are still held.
    pub persons_held: usize,
    /// How many have been released (a wall screen says "70 released, 1 deceased").
    pub persons_released: usize,
    /// How many died in captivity.
    pub persons_deceased: usize,
    /// How many the case concerns.
    pub persons_total: usize,
    /// When the centre recorded the opening.
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    /// Whole days from the opening to now, or to the closure.
    pub days_held: u64,
    /// Open or closed.
    pub status: Status,
}

/// The summary of `case` as of `now`.
pub fn summary(case: &Case, now: OffsetDateTime) -> Summary {
    Summary {
        case: case.id,
        country: case.country,
        incident_id: case.incident_id,
        persons_held: case.persons_held(),
        persons_released: case.count(PersonStatus::Released),
        persons_deceased: case.count(PersonStatus::Deceased),
        persons_total: case.persons.len(),
        opened_at: case.opened_at,
        days_held: case.days_held(now),
        status: case.status,
    }
}

/// Filters of a list (`GET /api/v1/hostage-cases`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` or `closed`; `null` or absent for both.
    #[serde(default)]
    pub status: Option<Status>,
    /// Only this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// At most this many (1 to [`MAX_LIST`], default [`DEFAULT_LIST`]).
    #[serde(default)]
    pub limit: Option<usize>,
    /// After this one: the `next` of the previous page (see [`events::page`]).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

pub use events::command::{DEFAULT_LIST, MAX_LIST};
use events::page::{Cursor, Page, PageQuery};

/// Every hostage case and every person's name, folded from the whole log: answers lists
/// and puts names on a crisis manager's read.
#[derive(Debug, Default)]
pub struct Register {
    cases: HashMap<Uuid, Option<Case>>,
    names: HashMap<String, String>,
    position: u64,
}

impl runtime::Fold for Register {
    fn apply(&mut self, event: &RecordedEvent) {
        Register::apply(self, event);
    }
}

impl Register {
    /// Applies one event of the log (any category; hostage cases and personnel are kept).
    /// Events at or below the register's position are duplicates and ignored.
    pub fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        match e.stream.category().as_str() {
            "hostage" => apply(self.cases.entry(e.stream.id()).or_default(), e),
            "person" => {
                if let Decoded::Known(DomainEvent::PersonRegistered(p)) = DomainEvent::decode(e) {
                    // The latest registration of a person stands.
                    self.names.insert(p.person, p.name);
                }
            }
            _ => {}
        }
    }

    /// The last log position applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The registered name of `person`.
    pub fn name(&self, person: &str) -> Option<&str> {
        self.names.get(person).map(String::as_str)
    }

    /// Summaries of the cases `actor` may see that match `q`, newest opening first, as of
    /// `now`.
    pub fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        now: OffsetDateTime,
    ) -> Result<Page<Summary>, Refusal> {
        actor.may(
            policy::HOSTAGE_SUMMARY,
            "list hostage cases; ask the duty officer",
        )?;
        if let Some(c) = q.country
            && !actor.covers(c)
        {
            return Err(Refusal::forbidden(format!(
                "you see hostage cases of {} only; leave out the country",
                actor.scope.map_or("no country", |c| c.as_str())
            )));
        }
        let found: Vec<&Case> = self
            .cases
            .values()
            .flatten()
            .filter(|c| actor.covers(c.country))
            .filter(|c| q.country.is_none_or(|country| c.country == country))
            .filter(|c| q.status.is_none_or(|s| c.status == s))
            .collect();
        events::page::newest_first(
            found,
            |c| c.opened_position,
            PageQuery::new(q.limit, q.cursor),
            self.position,
            |c| summary(c, now),
        )
    }
}

#[cfg(test)]
mod tests {
    //! Given the events of a stream, when a command arrives, then these events (or this
    //! refusal).
    use super::*;
    use events::command::{RefusalCode, Role};
    use events::{Meta, StreamName};
    use serde_json::json;
    use time::macros::datetime;

    const ID: Uuid = Uuid::from_u128(0x4057);
    const OPENED: OffsetDateTime = datetime!(2026-11-01 06:00 UTC);

    fn actor(role: Role, scope: Option<&str>) -> Actor {
        Actor {
            user: format!("{}.user", role.as_str()),
            role,
            scope: scope.map(|s| Country::parse(s).unwrap()),
            agency: None,
        }
    }

    fn crisis() -> Actor {
        actor(Role::CrisisManager, None)
    }

    fn open_body() -> Value {
        json!({"incident_id": Uuid::from_u128(7), "country": "ML",
               "persons": ["P-1", "P-2", "P-3"], "captors": "unknown armed group",
               "location": {"lat": 16.77, "lon": -3.0, "accuracy_m": 5000.0}})
    }

    /// Records `events` as the stream's history, one hour apart from [`OPENED`].
    fn given(events: Vec<DomainEvent>) -> Vec<RecordedEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let n = i as u64 + 1;
                RecordedEvent::record(
                    e.to_new_event(
                        Uuid::from_u128(n as u128),
                        Meta {
                            actor: Some("crisis.lead".into()),
                            ..Meta::default()
                        },
                    ),
                    stream(),
                    n * 10,
                    n,
                    OPENED + time::Duration::hours(i as i64),
                )
            })
            .collect()
    }

    fn stream() -> StreamName {
        events::domain::hostage::stream_for(ID)
    }

    fn when(
        history: &[RecordedEvent],
        who: &Actor,
        name: &str,
        body: Value,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let command = parse(name, body)?;
        decide(ID, Case::fold(history).as_ref(), who, command, REPORTED)
    }

    /// Runs `name` on the history and returns the history with its events added.
    fn then_ok(history: Vec<DomainEvent>, name: &str, body: Value) -> Vec<DomainEvent> {
        let mut out = history.clone();
        out.extend(when(&given(history), &crisis(), name, body).unwrap());
        out
    }

    fn opened() -> Vec<DomainEvent> {
        when(&[], &crisis(), "open", open_body()).unwrap()
    }

    fn refused(r: Result<Vec<DomainEvent>, Refusal>) -> Refusal {
        r.expect_err("refused")
    }

    fn code(r: Result<Vec<DomainEvent>, Refusal>) -> RefusalCode {
        refused(r).code
    }

    fn at(person: &str) -> Value {
        json!({"person": person, "at": "2026-11-03T10:00:00Z"})
    }

    fn released(person: &str) -> DomainEvent {
        HostageReleased {
            person: person.into(),
            at: datetime!(2026-11-03 10:00 UTC),
        }
        .into()
    }

    #[test]
    fn a_bulk_release_records_one_release_per_person_in_one_decision() {
        let history = given(opened());
        let out = when(
            &history,
            &crisis(),
            "release_many",
            json!({"persons": ["P-3", "P-1"], "at": "2026-11-03T10:00:00Z"}),
        )
        .unwrap();
        assert_eq!(out, vec![released("P-3"), released("P-1")]);
        let case = Case::fold(&given([opened(), out].concat())).unwrap();
        assert_eq!(case.persons_held(), 1);
        assert_eq!(case.person("P-2").unwrap().status, PersonStatus::Held);
        assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
        assert_eq!(case.person("P-3").unwrap().status, PersonStatus::Released);
    }

    #[test]
    fn a_bulk_proof_of_life_records_one_proof_per_person() {
        let history = given(opened());
        let out = when(
            &history,
            &crisis(),
            "proof_of_life_many",
            json!({"persons": ["P-1", "P-2", "P-3"], "at": "2026-11-02T10:00:00Z", "note": "group video"}),
        )
        .unwrap();
        assert_eq!(out.len(), 3);
        let case = Case::fold(&given([opened(), out].concat())).unwrap();
        assert_eq!(case.proofs.len(), 3);
        assert!(
            case.persons
                .iter()
                .all(|p| p.last_proof_of_life == Some(datetime!(2026-11-02 10:00 UTC)))
        );
    }

    #[test]
    fn a_bulk_with_one_bad_person_is_refused_whole_naming_that_person() {
        let history = given([opened(), vec![released("P-2")]].concat());
        let at = "2026-11-03T10:00:00Z";
        for (name, body, expect, names) in [
            (
                "release_many",
                json!({"persons": ["P-1", "P-2", "P-3"], "at": at}),
                RefusalCode::Conflict,
                "persons[1]: P-2 was already released",
            ),
            (
                "release_many",
                json!({"persons": ["P-1", "P-9"], "at": at}),
                RefusalCode::Invalid,
                "persons[1]: \"P-9\" is not held",
            ),
            (
                "release_many",
                json!({"persons": ["P-1", "P-3", "P-1"], "at": at}),
                RefusalCode::Invalid,
                "persons[2]: \"P-1\" is listed twice",
            ),
            (
                "release_many",
                json!({"persons": [], "at": at}),
                RefusalCode::Invalid,
                "persons: 1 to 500",
            ),
            (
                "release_many",
                json!({"persons": ["P-1", ""], "at": at}),
                RefusalCode::Invalid,
                "persons[1]",
            ),
            (
                "proof_of_life_many",
                json!({"persons": ["P-1", "P-2"], "at": at, "note": "video"}),
                RefusalCode::Conflict,
                "persons[1]: P-2 was released",
            ),
            (
                "proof_of_life_many",
                json!({"persons": ["P-1"], "at": at, "note": ""}),
                RefusalCode::Invalid,
                "note",
            ),
        ] {
            let r = refused(when(&history, &crisis(), name, body.clone()));
            assert_eq!(r.code, expect, "{body}: {}", r.message);
            assert!(r.message.contains(names), "{body}: {}", r.message);
        }
        let too_many: Vec<String> = (0..=MAX_MANY).map(|i| format!("P-{i}")).collect();
        let r = refused(when(
            &history,
            &crisis(),
            "release_many",
            json!({"persons": too_many, "at": at}),
        ));
        assert_eq!(r.code, RefusalCode::Invalid, "{}", r.message);
        for bad in [
            json!({"persons": ["P-1"]}),
            json!({"persons": "P-1", "at": at}),
            json!({"persons": ["P-1"], "at": at, "extra": 1}),
        ] {
            assert_eq!(
                code(when(&history, &crisis(), "release_many", bad.clone())),
                RefusalCode::Invalid,
                "{bad}"
            );
        }
    }

    #[test]
    fn bulk_commands_are_for_crisis_managers_on_open_cases_in_scope() {
        let history = given(opened());
        let body = json!({"persons": ["P-1"], "at": "2026-11-03T10:00:00Z"});
        for role in [Role::DutyOfficer, Role::WallScreen, Role::Admin] {
            assert_eq!(
                code(when(
                    &history,
                    &actor(role, None),
                    "release_many",
                    body.clone()
                )),
                RefusalCode::Forbidden,
                "{role:?}"
            );
        }
        assert_eq!(
            code(when(&[], &crisis(), "release_many", body.clone())),
            RefusalCode::NotFound
        );
        let closing = then_ok(
            opened(),
            "close",
            json!({"outcome": "escaped", "accounting": [
                {"person": "P-1", "status": "other", "note": "escaped"},
                {"person": "P-2", "status": "other", "note": "escaped"},
                {"person": "P-3", "status": "other", "note": "escaped"}]}),
        );
        assert_eq!(
            code(when(&given(closing), &crisis(), "release_many", body)),
            RefusalCode::Conflict
        );
    }

    #[test]
    fn a_crisis_manager_opens_a_case_and_everyone_is_held() {
        let out = opened();
        let [DomainEvent::HostageCaseOpened(o)] = out.as_slice() else {
            panic!("{out:?}")
        };
        assert_eq!(o.persons.len(), 3);
        let case = Case::fold(&given(out)).unwrap();
        assert_eq!(case.id, ID);
        assert_eq!(case.status, Status::Open);
        assert_eq!(case.persons_held(), 3);
        assert_eq!(case.opened_at, OPENED);
        assert_eq!(case.opened_by.as_deref(), Some("crisis.lead"));
        assert_eq!(case.captors.as_deref(), Some("unknown armed group"));
        assert!(case.persons.iter().all(|p| p.status == PersonStatus::Held));
    }

    #[test]
    fn only_crisis_managers_act_on_cases() {
        let history = given(opened());
        for role in [
            Role::FieldOfficer,
            Role::DutyOfficer,
            Role::AgencyFocalPoint,
            Role::WallScreen,
            Role::Admin,
        ] {
            let who = actor(role, (role == Role::FieldOfficer).then_some("ML"));
            let r = refused(when(&[], &who, "open", open_body()));
            assert_eq!(r.code, RefusalCode::Forbidden, "{role:?} opens");
            assert!(r.message.contains("crisis manager"), "{}", r.message);
            for (name, body) in [
                (
                    "proof_of_life",
                    json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": "video"}),
                ),
                (
                    "negotiation",
                    json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
                ),
                ("release", at("P-1")),
                ("deceased", at("P-1")),
                ("close", json!({"outcome": "x", "accounting": []})),
            ] {
                assert_eq!(
                    code(when(&history, &who, name, body)),
                    RefusalCode::Forbidden,
                    "{role:?} {name}"
                );
            }
        }
    }

    #[test]
    fn bad_openings_are_refused_with_the_field() {
        for (field, bad) in [
            ("persons", json!([])),
            ("persons", json!(["P-1", "P-1"])),
            ("persons", json!(["has space"])),
            ("country", json!("XX")),
            ("incident_id", json!("not-a-uuid")),
            ("captors", json!("  ")),
            ("location", json!({"lat": 91.0, "lon": 0.0})),
        ] {
            let mut body = open_body();
            body[field] = bad.clone();
            let r = refused(when(&[], &crisis(), "open", body));
            assert_eq!(r.code, RefusalCode::Invalid, "{field} {bad}");
            assert!(r.message.contains(field), "{field}: {}", r.message);
        }
        let mut unknown = open_body();
        unknown["by"] = json!("someone");
        assert_eq!(
            code(when(&[], &crisis(), "open", unknown)),
            RefusalCode::Invalid
        );
        assert_eq!(
            code(when(&[], &crisis(), "open", json!([1]))),
            RefusalCode::Invalid
        );
        assert_eq!(
            code(when(&[], &crisis(), "kidnap", json!({}))),
            RefusalCode::Invalid
        );
        // Captors and location are optional.
        let minimal =
            json!({"incident_id": Uuid::from_u128(7), "country": "ML", "persons": ["P-1"]});
        assert!(when(&[], &crisis(), "open", minimal).is_ok());
    }

    /// The facts of an opening from a reported incident.
    const REPORTED: Facts = Facts {
        incident_reported: true,
    };

    #[test]
    fn a_case_is_opened_from_a_reported_incident_only() {
        let command = parse("open", open_body()).unwrap();
        let r = decide(ID, None, &crisis(), command, Facts::default()).unwrap_err();
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.starts_with("incident_id:"), "{}", r.message);
        // The role is checked first: a duty officer learns nothing about incidents here.
        let duty = Actor {
            user: "d".into(),
            role: Role::DutyOfficer,
            scope: None,
            agency: None,
        };
        let command = parse("open", open_body()).unwrap();
        assert_eq!(
            decide(ID, None, &duty, command, Facts::default()).map_err(|r| r.code),
            Err(RefusalCode::Forbidden)
        );
    }

    #[test]
    fn a_case_is_opened_once() {
        let r = refused(when(&given(opened()), &crisis(), "open", open_body()));
        assert_eq!(r.code, RefusalCode::Conflict);
        assert!(r.message.contains("new id"), "{}", r.message);
    }

    #[test]
    fn the_life_of_a_case() {
        let mut events = opened();
        events = then_ok(
            events,
            "proof_of_life",
            json!({"person": "P-1", "at": "2026-11-02T08:00:00Z", "note": "video, dated newspaper"}),
        );
        events = then_ok(
            events,
            "proof_of_life",
            json!({"person": "P-1", "at": "2026-11-01T20:00:00Z", "note": "older photo"}),
        );
        events = then_ok(
            events,
            "negotiation",
            json!({"at": "2026-11-02T09:00:00Z", "summary": "first call through the elders"}),
        );
        events = then_ok(events, "release", at("P-1"));
        events = then_ok(events, "deceased", at("P-2"));
        let case = Case::fold(&given(events.clone())).unwrap();
        assert_eq!(case.persons_held(), 1);
        assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
        assert_eq!(
            case.person("P-1").unwrap().last_proof_of_life,
            Some(datetime!(2026-11-02 08:00 UTC)),
            "the latest proof, not the latest recorded"
        );
        assert_eq!(case.person("P-2").unwrap().status, PersonStatus::Deceased);
        assert_eq!(case.proofs.len(), 2);
        assert_eq!(case.contacts[0].by.as_deref(), Some("crisis.lead"));
        events = then_ok(
            events,
            "close",
            json!({"outcome": "one released, one died, one escaped", "accounting": [
                {"person": "P-3", "status": "other", "note": "escaped on day 3"},
                {"person": "P-1", "status": "released"},
                {"person": "P-2", "status": "deceased"}]}),
        );
        let history = given(events);
        let case = Case::fold(&history).unwrap();
        assert_eq!(case.status, Status::Closed);
        assert_eq!(case.accounting.len(), 3);
        assert_eq!(
            case.outcome.as_deref(),
            Some("one released, one died, one escaped")
        );
        assert_eq!(case.closed_at, Some(OPENED + time::Duration::hours(6)));
        assert_eq!(case.person("P-3").unwrap().status, PersonStatus::Other);
        assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
        assert_eq!(case.persons_held(), 0, "nobody is held in a closed case");
        assert_eq!(case.version, 7);
        for (name, body) in [
            ("open", open_body()),
            (
                "proof_of_life",
                json!({"person": "P-3", "at": "2026-11-02T10:00:00Z", "note": "x"}),
            ),
            (
                "negotiation",
                json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
            ),
            ("release", at("P-3")),
            ("deceased", at("P-3")),
            (
                "close",
                json!({"outcome": "again", "accounting": [
                {"person": "P-3", "status": "other", "note": "n"},
                {"person": "P-1", "status": "released"},
                {"person": "P-2", "status": "deceased"}]}),
            ),
        ] {
            assert_eq!(
                code(when(&history, &crisis(), name, body)),
                RefusalCode::Conflict,
                "{name} after close"
            );
        }
    }

    #[test]
    fn release_and_death_once_per_person_and_never_both() {
        let released = then_ok(opened(), "release", at("P-1"));
        let dead = then_ok(opened(), "deceased", at("P-1"));
        for (history, name) in [
            (&released, "release"),
            (&released, "deceased"),
            (&dead, "release"),
            (&dead, "deceased"),
        ] {
            let r = refused(when(&given(history.clone()), &crisis(), name, at("P-1")));
            assert_eq!(r.code, RefusalCode::Conflict, "{name}");
            assert!(r.message.contains("P-1"), "{}", r.message);
        }
        // The others are unaffected.
        assert!(when(&given(released), &crisis(), "deceased", at("P-2")).is_ok());
        assert!(when(&given(dead), &crisis(), "release", at("P-2")).is_ok());
    }

    #[test]
    fn the_fold_keeps_the_first_release_or_death() {
        // Written around the service: the fold still never makes a person both.
        let mut events = opened();
        events.push(
            HostageReleased {
                person: "P-1".into(),
                at: datetime!(2026-11-03 10:00 UTC),
            }
            .into(),
        );
        events.push(
            HostageDeceased {
                person: "P-1".into(),
                at: datetime!(2026-11-04 10:00 UTC),
            }
            .into(),
        );
        let case = Case::fold(&given(events)).unwrap();
        let p = case.person("P-1").unwrap();
        assert_eq!(p.status, PersonStatus::Released);
        assert_eq!(p.at, Some(datetime!(2026-11-03 10:00 UTC)));
        assert_eq!(case.version, 3);
    }

    #[test]
    fn proof_of_life_only_for_a_person_still_held() {
        let pol = |p: &str| json!({"person": p, "at": "2026-11-02T10:00:00Z", "note": "call"});
        let history = then_ok(
            then_ok(opened(), "release", at("P-1")),
            "deceased",
            at("P-2"),
        );
        let history = given(history);
        for p in ["P-1", "P-2"] {
            let r = refused(when(&history, &crisis(), "proof_of_life", pol(p)));
            assert_eq!(r.code, RefusalCode::Conflict, "{p}");
            assert!(r.message.contains("still held"), "{}", r.message);
        }
        assert!(when(&history, &crisis(), "proof_of_life", pol("P-3")).is_ok());
    }

    #[test]
    fn the_person_must_be_one_of_the_case() {
        let history = given(opened());
        for (name, body) in [
            ("release", at("P-9")),
            ("deceased", at("P-9")),
            (
                "proof_of_life",
                json!({"person": "P-9", "at": "2026-11-02T10:00:00Z", "note": "x"}),
            ),
        ] {
            let r = refused(when(&history, &crisis(), name, body));
            assert_eq!(r.code, RefusalCode::Invalid, "{name}");
            assert!(r.message.starts_with("person:"), "{}", r.message);
            assert!(r.message.contains("P-1, P-2, P-3"), "{}", r.message);
        }
    }

    #[test]
    fn bad_changes_are_refused_with_the_field() {
        let history = given(opened());
        for (name, body, field) in [
            ("release", json!({"person": "P-1"}), "at"),
            ("release", json!({"person": "P-1", "at": "soon"}), "at"),
            (
                "release",
                json!({"person": "", "at": "2026-11-02T10:00:00Z"}),
                "person",
            ),
            (
                "deceased",
                json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "cause": "x"}),
                "cause",
            ),
            (
                "proof_of_life",
                json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": " "}),
                "note",
            ),
            (
                "negotiation",
                json!({"at": "2026-11-02T10:00:00Z", "summary": ""}),
                "summary",
            ),
            ("negotiation", json!({"summary": "call"}), "at"),
            ("close", json!({"accounting": []}), "outcome"),
            (
                "close",
                json!({"outcome": "x", "accounting": []}),
                "accounting",
            ),
        ] {
            let r = refused(when(&history, &crisis(), name, body));
            assert_eq!(r.code, RefusalCode::Invalid, "{name} {field}");
            assert!(r.message.contains(field), "{name} {field}: {}", r.message);
        }
        assert_eq!(
            code(when(&history, &crisis(), "release", json!("P-1"))),
            RefusalCode::Invalid
        );
    }

    #[test]
    fn changes_to_a_case_that_does_not_exist_are_not_found() {
        for (name, body) in [
            (
                "proof_of_life",
                json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": "x"}),
            ),
            (
                "negotiation",
                json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
            ),
            ("release", at("P-1")),
            ("deceased", at("P-1")),
            (
                "close",
                json!({"outcome": "x", "accounting": [{"person": "P-1", "status": "released"}]}),
            ),
        ] {
            assert_eq!(
                code(when(&[], &crisis(), name, body)),
                RefusalCode::NotFound,
                "{name}"
            );
        }
    }

    fn close(accounting: Value) -> Value {
        json!({"outcome": "ended", "accounting": accounting})
    }

    #[test]
    fn the_closing_account_names_every_person_once() {
        let history = given(then_ok(
            then_ok(opened(), "release", at("P-1")),
            "deceased",
            at("P-2"),
        ));
        let right = || {
            vec![
                json!({"person": "P-1", "status": "released"}),
                json!({"person": "P-2", "status": "deceased"}),
                json!({"person": "P-3", "status": "other", "note": "unaccounted for"}),
            ]
        };
        assert!(when(&history, &crisis(), "close", close(json!(right()))).is_ok());

        let mut missing = right();
        missing.pop();
        let r = refused(when(&history, &crisis(), "close", close(json!(missing))));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.contains("add P-3"), "{}", r.message);

        let mut twice = right();
        twice.push(json!({"person": "P-1", "status": "released"}));
        let r = refused(when(&history, &crisis(), "close", close(json!(twice))));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.contains("accounting[3]"), "{}", r.message);

        let mut stranger = right();
        stranger.push(json!({"person": "P-9", "status": "released"}));
        let r = refused(when(&history, &crisis(), "close", close(json!(stranger))));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(
            r.message.starts_with("accounting[3].person"),
            "{}",
            r.message
        );

        let mut no_note = right();
        no_note[2] = json!({"person": "P-3", "status": "other"});
        let r = refused(when(&history, &crisis(), "close", close(json!(no_note))));
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.contains("accounting[2].note"), "{}", r.message);
    }

    #[test]
    fn the_closing_account_agrees_with_the_record() {
        let history = given(then_ok(
            then_ok(opened(), "release", at("P-1")),
            "deceased",
            at("P-2"),
        ));
        for (i, wrong, hint) in [
            (
                0,
                json!({"person": "P-1", "status": "deceased"}),
                "as released",
            ),
            (
                0,
                json!({"person": "P-1", "status": "other", "note": "n"}),
                "as released",
            ),
            (
                1,
                json!({"person": "P-2", "status": "released"}),
                "as deceased",
            ),
            (
                1,
                json!({"person": "P-2", "status": "other", "note": "n"}),
                "as deceased",
            ),
            (
                2,
                json!({"person": "P-3", "status": "released"}),
                "still held",
            ),
            (
                2,
                json!({"person": "P-3", "status": "deceased"}),
                "still held",
            ),
        ] {
            let mut accounting = vec![
                json!({"person": "P-1", "status": "released"}),
                json!({"person": "P-2", "status": "deceased"}),
                json!({"person": "P-3", "status": "other", "note": "escaped"}),
            ];
            accounting[i] = wrong.clone();
            let r = refused(when(&history, &crisis(), "close", close(json!(accounting))));
            assert_eq!(r.code, RefusalCode::Conflict, "{wrong}");
            assert!(r.message.contains(hint), "{wrong}: {}", r.message);
            assert!(
                r.message.starts_with(&format!("accounting[{i}]")),
                "{}",
                r.message
            );
        }
    }

    #[test]
    fn the_summary_counts_without_naming_anyone() {
        let events = then_ok(opened(), "release", at("P-1"));
        let case = Case::fold(&given(events)).unwrap();
        let s = summary(&case, OPENED + time::Duration::hours(71));
        assert_eq!(s.persons_held, 2);
        assert_eq!((s.persons_released, s.persons_deceased), (1, 0));
        assert_eq!(s.persons_total, 3);
        assert_eq!(s.days_held, 2, "whole days");
        assert_eq!(s.status, Status::Open);
        assert_eq!(s.opened_at, OPENED);
        let text = serde_json::to_string(&s).unwrap();
        for secret in ["P-1", "P-2", "armed group", "16.77", "crisis.lead"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert_eq!(
            summary(&case, OPENED - time::Duration::hours(1)).days_held,
            0,
            "a clock behind the store's is not negative"
        );
    }

    #[test]
    fn days_held_stop_at_the_closure() {
        let mut events = then_ok(opened(), "release", at("P-1"));
        events = then_ok(events, "release", at("P-2"));
        events = then_ok(events, "release", at("P-3"));
        // Recorded one hour apart: closed 3 h after opening. Push it days later.
        events = then_ok(
            events,
            "close",
            close(json!([
                {"person": "P-1", "status": "released"},
                {"person": "P-2", "status": "released"},
                {"person": "P-3", "status": "released"}])),
        );
        let mut history = given(events);
        let last = history.len() - 1;
        history[last].recorded_at = OPENED + time::Duration::days(12) + time::Duration::hours(5);
        let case = Case::fold(&history).unwrap();
        let s = summary(&case, OPENED + time::Duration::days(400));
        assert_eq!(s.days_held, 12);
        assert_eq!(s.persons_held, 0);
        assert_eq!(s.status, Status::Closed);
    }

    #[test]
    fn names_are_put_on_a_read() {
        let case = Case::fold(&given(opened())).unwrap();
        assert!(
            case.persons.iter().all(|p| p.name.is_none()),
            "the fold has no names"
        );
        let named = case.named(|p| (p == "P-2").then(|| "Fatima Garcia".to_owned()));
        assert_eq!(named.persons[1].name.as_deref(), Some("Fatima Garcia"));
        assert_eq!(named.persons[0].name, None);
    }

    fn record_in(stream: StreamName, e: DomainEvent, position: u64, version: u64) -> RecordedEvent {
        RecordedEvent::record(
            e.to_new_event(Uuid::from_u128(1000 + position as u128), Meta::default()),
            stream,
            position,
            version,
            OPENED + time::Duration::days(position as i64),
        )
    }

    #[test]
    fn the_register_lists_summaries_newest_first_with_filters() {
        let mut register = Register::default();
        let mut position = 0;
        let mut ids = vec![];
        for (i, country) in ["ML", "SO", "ML"].into_iter().enumerate() {
            position += 1;
            let mut body = open_body();
            body["country"] = json!(country);
            let HostageCommand::Open(o) = parse("open", body).unwrap() else {
                unreachable!()
            };
            let id = Uuid::from_u128(100 + i as u128);
            ids.push(id);
            register.apply(&record_in(
                events::domain::hostage::stream_for(id),
                o.into(),
                position,
                1,
            ));
        }
        // The first case is closed.
        for (v, person) in ["P-1", "P-2", "P-3"].into_iter().enumerate() {
            position += 1;
            register.apply(&record_in(
                events::domain::hostage::stream_for(ids[0]),
                HostageReleased {
                    person: person.into(),
                    at: OPENED,
                }
                .into(),
                position,
                v as u64 + 2,
            ));
        }
        position += 1;
        let closed = HostageCaseClosed {
            outcome: "all released".into(),
            accounting: ["P-1", "P-2", "P-3"]
                .into_iter()
                .map(|p| PersonAccount {
                    person: p.into(),
                    status: HostageOutcome::Released,
                    note: None,
                })
                .collect(),
        };
        let closing = record_in(
            events::domain::hostage::stream_for(ids[0]),
            closed.into(),
            position,
            5,
        );
        register.apply(&closing);
        register.apply(&closing); // a duplicate delivery changes nothing
        assert_eq!(register.position(), position);
        // Reference data gives names.
        position += 1;
        register.apply(&record_in(
            events::domain::person::stream_for("P-2"),
            events::domain::person::PersonRegistered {
                person: "P-2".into(),
                name: "Fatima Garcia".into(),
                agency: "unicef".into(),
                nationality: Country::parse("UA").unwrap(),
                duty_station: "SOM-MGQ".into(),
                dependants: 0,
                security_officer: false,
                essential: false,
            }
            .into(),
            position,
            1,
        ));
        assert_eq!(register.name("P-2"), Some("Fatima Garcia"));
        assert_eq!(register.name("P-1"), None);

        let now = OPENED + time::Duration::days(30);
        let duty = actor(Role::DutyOfficer, None);
        let all = register
            .list(&duty, &ListQuery::default(), now)
            .unwrap()
            .items;
        assert_eq!(
            all.iter().map(|s| s.case).collect::<Vec<_>>(),
            vec![ids[2], ids[1], ids[0]],
            "newest opening first"
        );
        assert_eq!(all[2].status, Status::Closed);
        assert_eq!(all[2].persons_held, 0);
        assert_eq!(
            all[2].days_held, 6,
            "from opening (day 1) to closing (day 7)"
        );
        assert_eq!(all[0].days_held, 27);
        let q = |status, country: Option<&str>, limit| ListQuery {
            status,
            country: country.map(|c| Country::parse(c).unwrap()),
            limit,
            cursor: None,
        };
        assert_eq!(
            register
                .list(&duty, &q(Some(Status::Open), None, None), now)
                .unwrap()
                .items
                .len(),
            2
        );
        assert_eq!(
            register
                .list(&duty, &q(Some(Status::Closed), None, None), now)
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            register
                .list(&duty, &q(None, Some("SO"), None), now)
                .unwrap()
                .items
                .len(),
            1
        );
        assert_eq!(
            register
                .list(&duty, &q(None, None, Some(1)), now)
                .unwrap()
                .items[0]
                .case,
            ids[2]
        );
        for limit in [0, 501] {
            let r = register.list(&duty, &q(None, None, Some(limit)), now);
            assert_eq!(r.unwrap_err().code, RefusalCode::Invalid, "limit {limit}");
        }
        for role in [Role::CrisisManager, Role::Admin] {
            assert!(
                register
                    .list(&actor(role, None), &ListQuery::default(), now)
                    .is_ok()
            );
        }
        for who in [
            actor(Role::FieldOfficer, Some("ML")),
            actor(Role::WallScreen, None),
            actor(Role::AgencyFocalPoint, None),
        ] {
            let r = register.list(&who, &ListQuery::default(), now);
            assert_eq!(r.unwrap_err().code, RefusalCode::Forbidden, "{who:?}");
        }
    }

    #[test]
    fn list_filters_are_read_strictly() {
        let q: ListQuery = events::codec::from_value(json!({"status": null, "limit": 5})).unwrap();
        assert_eq!(q.status, None);
        let q: ListQuery =
            events::codec::from_value(json!({"status": "closed", "country": "SO"})).unwrap();
        assert_eq!(q.status, Some(Status::Closed));
        for bad in [
            json!({"status": "lost"}),
            json!({"country": "XX"}),
            json!({"names": true}),
            json!({"limit": "ten"}),
        ] {
            assert!(
                events::codec::from_value::<ListQuery>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }
}

#[cfg(test)]
mod properties {
    //! Whatever crisis managers send, in whatever order, the recorded case never makes a
    //! person both released and deceased, never changes after closure, and closes only with
    //! an account that agrees with the record.
    use super::*;
    use events::command::Role;
    use events::{Meta, StreamName};
    use proptest::prelude::*;
    use serde_json::json;

    const ID: Uuid = Uuid::from_u128(0xCA5E);
    const PERSONS: [&str; 4] = ["P-1", "P-2", "P-3", "P-4"];

    fn stream() -> StreamName {
        events::domain::hostage::stream_for(ID)
    }

    /// One command: which, about whom (an index into [`PERSONS`], 3 is never in the case),
    /// and for `close`, what each person is accounted as (0 released, 1 deceased, 2 other).
    /// Kind 6 is a close that accounts for everyone as recorded, so closes are often accepted.
    fn arb_command() -> impl Strategy<Value = (u8, usize, Vec<u8>)> {
        (0u8..7, 0usize..4, proptest::collection::vec(0u8..3, 0..=4))
    }

    fn body(kind: u8, who: usize, accounting: &[u8], case: &Case) -> (&'static str, Value) {
        let person = PERSONS[who];
        if kind == 6 {
            let recorded: Vec<u8> = case
                .persons
                .iter()
                .map(|p| match p.status {
                    PersonStatus::Released => 0,
                    PersonStatus::Deceased => 1,
                    PersonStatus::Held | PersonStatus::Other => 2,
                })
                .collect();
            return body(5, who, &recorded, case);
        }
        let at = "2026-11-02T10:00:00Z";
        match kind {
            0 => (
                "proof_of_life",
                json!({"person": person, "at": at, "note": "call"}),
            ),
            1 => ("negotiation", json!({"at": at, "summary": "call"})),
            2 => ("release", json!({"person": person, "at": at})),
            3 => ("deceased", json!({"person": person, "at": at})),
            4 => (
                "open",
                json!({"incident_id": Uuid::nil(), "country": "ML", "persons": ["P-1"]}),
            ),
            _ => {
                let accounting: Vec<Value> = accounting
                    .iter()
                    .enumerate()
                    .map(|(i, s)| match s {
                        0 => json!({"person": PERSONS[i], "status": "released"}),
                        1 => json!({"person": PERSONS[i], "status": "deceased"}),
                        _ => json!({"person": PERSONS[i], "status": "other", "note": "n"}),
                    })
                    .collect();
                (
                    "close",
                    json!({"outcome": "ended", "accounting": accounting}),
                )
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn the_record_stays_consistent(commands in proptest::collection::vec(arb_command(), 0..40)) {
            let crisis = Actor { user: "c".into(), role: Role::CrisisManager, scope: None, agency: None };
            let open = json!({"incident_id": Uuid::nil(), "country": "ML",
                              "persons": ["P-1", "P-2", "P-3"]});
            let mut log: Vec<RecordedEvent> = vec![];
            let record = |e: DomainEvent, log: &mut Vec<RecordedEvent>| {
                let n = log.len() as u64 + 1;
                log.push(RecordedEvent::record(
                    e.to_new_event(Uuid::from_u128(n as u128), Meta::default()),
                    stream(),
                    n,
                    n,
                    time::OffsetDateTime::UNIX_EPOCH,
                ));
            };
            for e in decide(ID, None, &crisis, parse("open", open).unwrap(), Facts { incident_reported: true }).unwrap() {
                record(e, &mut log);
            }
            for (kind, who, accounting) in commands {
                let before = Case::fold(&log).unwrap();
                let (name, body) = body(kind, who, &accounting, &before);
                let outcome = parse(name, body).and_then(|c| decide(ID, Some(&before), &crisis, c, Facts { incident_reported: true }));
                if kind == 6 && before.is_open() {
                    prop_assert!(outcome.is_ok(), "an account as recorded is refused: {:?}", outcome);
                }
                let Ok(new) = outcome else {
                    continue;
                };
                prop_assert!(before.is_open(), "{name} accepted on a closed case");
                prop_assert_eq!(new.len(), 1);
                if let DomainEvent::HostageCaseClosed(c) = &new[0] {
                    prop_assert_eq!(c.accounting.len(), 3);
                    for a in &c.accounting {
                        let p = before.person(&a.person).unwrap();
                        let expected = match p.status {
                            PersonStatus::Held | PersonStatus::Other => HostageOutcome::Other,
                            PersonStatus::Released => HostageOutcome::Released,
                            PersonStatus::Deceased => HostageOutcome::Deceased,
                        };
                        prop_assert_eq!(a.status, expected);
                    }
                }
                for e in new {
                    record(e, &mut log);
                }
            }
            // Each person is released or dies at most once in the whole log, never both.
            for person in PERSONS {
                let settled = log
                    .iter()
                    .filter(|e| match DomainEvent::decode(e) {
                        Decoded::Known(DomainEvent::HostageReleased(r)) => r.person == person,
                        Decoded::Known(DomainEvent::HostageDeceased(d)) => d.person == person,
                        _ => false,
                    })
                    .count();
                prop_assert!(settled <= 1, "{person} settled {settled} times");
            }
            let case = Case::fold(&log).unwrap();
            let s = summary(&case, time::OffsetDateTime::UNIX_EPOCH);
            prop_assert_eq!(s.persons_total, 3);
            let settled = log
                .iter()
                .filter(|e| matches!(e.event_type.as_str(), "HostageReleased" | "HostageDeceased"))
                .count();
            let held = if case.is_open() { 3 - settled } else { 0 };
            prop_assert_eq!(s.persons_held, held);
        }
    }
}
