//! The hostage case aggregate: pure decide and apply over one `hostage-<id>` stream, the
//! summary that everyone but a crisis manager sees, and the register of every case that
//! answers lists (the last two in `case/register.rs`). No I/O, no clock: the time is passed in.
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

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::domain::hostage::{
    HostageCaseClosed, HostageCaseOpened, HostageDeceased, HostageOutcome, HostageReleased,
    MAX_PERSONS, NegotiationContactLogged, PersonAccount, ProofOfLifeMany, ProofOfLifeReceived,
    ReleaseMany,
};
use events::domain::incident::Location;
use events::validate::Country;
use events::{RecordedEvent, StreamName};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a case is in its life (in `events`, as the lists answer it).
pub use events::domain::hostage::CaseStatus as Status;

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

impl Aggregate for Case {
    type Command = HostageCommand;
    type Facts = Facts;

    fn stream(id: Uuid) -> StreamName {
        events::domain::hostage::stream_for(id)
    }

    fn parse(name: &str, _actor: &Actor, body: Value) -> Result<HostageCommand, Refusal> {
        parse(name, body)
    }

    fn skip(&mut self, recorded: &RecordedEvent) {
        self.version = recorded.version;
    }

    /// Applies one recorded event of the case's stream. The fold keeps each person's first
    /// release or death only, so a log written around the service (e.g. `vigil append`) cannot
    /// make a person both.
    fn apply_known(state: &mut Option<Case>, event: DomainEvent, recorded: &RecordedEvent) {
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

    fn decide(
        id: Uuid,
        state: Option<&Case>,
        actor: &Actor,
        command: HostageCommand,
        facts: &Facts,
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
}

impl Case {
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
fn parse(name: &str, body: Value) -> Result<HostageCommand, Refusal> {
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

pub use events::command::{DEFAULT_LIST, MAX_LIST};
mod register;
pub use register::{ListQuery, Register, Summary, summary};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod properties;
