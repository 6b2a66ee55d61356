//! The hostage service: cases opened from incidents (the persons held, captors and location
//! if known), proofs of life, negotiation contacts, releases and deaths, and the closure that
//! accounts for every person, over NATS only.
//!
//! # Commands (`vigil.cmd.hostage.<name>`, a [`Command`] in, a [`Reply`] out)
//! - `open` — body: `HostageCaseOpened`'s fields. The command's id is the case's id (its
//!   stream is `hostage-<id>`) and its first event's id: a retry is stored once and answered
//!   with the original outcome (`duplicate: true`); the same id with other content is
//!   refused `id_reused`. `incident_id` must name a reported incident (its stream is read
//!   when the case is opened), else `invalid` naming `incident_id`.
//! - `proof_of_life`, `negotiation`, `release`, `deceased`, `close` — body
//!   `{"case": <uuid>, "change": {…the event's fields…}}`; decided by `Case::decide` ([`case::Case`])
//!   against the case's stream and appended with the version read (optimistic concurrency:
//!   two crisis managers releasing the same person at once get one `ok` and one
//!   `conflict`); a retry with the same command id is answered with the original outcome.
//! - `release_many` `{"case", "change": {"persons": […], "at"}}` and `proof_of_life_many`
//!   `{"case", "change": {"persons": […], "at", "note"}}` — the bulk forms, all or nothing:
//!   1 to [`case::MAX_MANY`] persons, each once, every one held, else the whole command is
//!   refused naming the first bad entry (`persons[i]`) and nothing is recorded. One append
//!   of one `HostageReleased` (or `ProofOfLifeReceived`) per person, so the case file and
//!   the boards fold them as they fold single ones; retry-safe by the command id.
//! - `get` — `{"case": <uuid>}`: the whole case ([`Details`]), folded from its stream, so it
//!   is always current. Crisis managers only. The read is first recorded as a `DetailsRead`
//!   event in the day's audit stream; if that record cannot be stored, the answer is
//!   `unavailable` and nothing is shown.
//! - `list` — [`case::ListQuery`] (`status`, `country`, `limit`, `cursor`): [`Listed`], summaries only
//!   (counts and days held; no names, captors or location), from the register, which follows
//!   the log; `unavailable` until it has read the log as it stood at start.
//!
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`case::Case`]), its register and the wiring below ([`Hostage`]).
//!
//! Everything changing a case is for `policy::HOSTAGE_MANAGE`; details for
//! `policy::HOSTAGE_DETAILS`; summaries for `policy::HOSTAGE_SUMMARY`.
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. No details leave
//! the service without an audit record on disk first.
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod case;

use events::audit::{DETAILS_READ, DetailsRead};
use events::command::{Actor, Command, Refusal, Role, policy};
use events::domain::DomainEvent;
use events::{AppendRequest, ExpectedVersion, NewEvent, StreamName};
use runtime::commands::STORE_DEADLINE;
use runtime::host::{Create, Host, Route, Service};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::case::{Case, HostageCommand, Register, Summary};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "hostage";

/// The stream of case `id`.
pub use events::domain::hostage::stream_for as stream_of;

// `Change` (body of `proof_of_life`, `proof_of_life_many`, `negotiation`, `release`,
// `release_many`, `deceased` and `close`: the event's fields) and `Get`, by `case`.
runtime::bodies!(case);

/// Answer of `get`: the whole case, for a crisis manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Details {
    /// The case as its stream tells it, with the persons' names from the personnel register.
    #[serde(flatten)]
    pub case: Case,
    /// How many are still held.
    pub persons_held: usize,
    /// Whole days from the opening to now, or to the closure.
    pub days_held: u64,
}

/// Answer of `list`: newest opening first (see [`events::page`]).
pub type Listed = events::page::Page<Summary>;

/// The audit record of `actor`'s read of `what` at `now` (through `source`), as the event to
/// append to the day's audit stream (`events::audit::stream_for(now)`) with id `id`. Its
/// `meta` is the command's, so the log says who read, like it says who changed.
pub fn details_read<T>(
    command: &Command<T>,
    what: &StreamName,
    now: OffsetDateTime,
    id: Uuid,
) -> Result<NewEvent, Refusal> {
    let read = DetailsRead {
        at: now,
        actor: command.actor.user.clone(),
        role: command.actor.role.as_str().to_owned(),
        what: what.as_str().to_owned(),
        source: command.source.clone(),
    };
    let data = serde_json::to_value(&read).map_err(|e| {
        Refusal::unavailable(format!(
            "the read could not be recorded ({e}); nothing is shown: retry"
        ))
    })?;
    Ok(NewEvent {
        id,
        event_type: DETAILS_READ.to_owned(),
        v: 1,
        data,
        meta: command.meta(),
    })
}

/// The hostage service, as the host serves it.
pub struct Hostage;

impl Service for Hostage {
    type Aggregate = Case;
    type Register = Register;
    type Change = Change;
    type Get = Get;
    type View = Details;

    const NAME: &'static str = SERVICE;
    // Personnel and duty stations come from the process's shared reference register.
    const USES_REFERENCE: bool = true;
    const COMMANDS: &'static [(&'static str, Route)] = &[
        (
            "open",
            Route::Create(Create::Checked {
                noun: "hostage case",
                verb: "open",
            }),
        ),
        ("proof_of_life", Route::Change),
        ("proof_of_life_many", Route::Change),
        ("negotiation", Route::Change),
        ("release", Route::Change),
        ("release_many", Route::Change),
        ("deceased", Route::Change),
        ("close", Route::Change),
        ("get", Route::Get),
        ("list", Route::List),
    ];
    const READ: (&'static [Role], &'static str) = (
        policy::HOSTAGE_DETAILS,
        "read hostage-case details; the list shows counts and days held",
    );
    // Summaries are for `policy::HOSTAGE_SUMMARY`, which the register checks.
    const LIST_CHECKS_READ: bool = false;

    /// For `open`: whether the incident is reported, its stream read now (a report a moment
    /// ago counts). The role comes first: only a crisis manager learns whether an incident
    /// exists here.
    async fn facts(
        host: &Host<Self>,
        _id: Uuid,
        actor: &Actor,
        command: &HostageCommand,
    ) -> Result<case::Facts, Refusal> {
        let HostageCommand::Open(o) = command else {
            return Ok(case::Facts::default());
        };
        actor.may(
            policy::HOSTAGE_MANAGE,
            "open or act on hostage cases; ask a crisis manager",
        )?;
        let stream = events::domain::incident::stream_for(o.incident_id);
        let reported = host
            .latest(&stream, |e| {
                matches!(e, DomainEvent::IncidentReported(_)).then_some(())
            })
            .await?;
        Ok(case::Facts {
            incident_reported: reported.is_some(),
        })
    }

    fn created(command: &HostageCommand) -> Option<DomainEvent> {
        match command {
            HostageCommand::Open(o) => Some(o.clone().into()),
            _ => None,
        }
    }

    fn visible(actor: &Actor, case: &Case) -> bool {
        actor.covers(case.country)
    }

    fn not_found(id: Uuid) -> Refusal {
        case::not_found(id)
    }

    /// No unaudited read: the record is on disk before anything is answered.
    async fn view(
        host: &Host<Self>,
        cmd: &Command<Get>,
        stream: &StreamName,
        found: Case,
    ) -> Result<Details, Refusal> {
        let now = OffsetDateTime::now_utc();
        let record = details_read(cmd, stream, now, Uuid::new_v4())?;
        let request = AppendRequest {
            after: None,
            stream: events::audit::stream_for(now),
            expected_version: ExpectedVersion::Any,
            events: vec![record],
        };
        if let Err(e) = host.store().append_retrying(&request, STORE_DEADLINE).await {
            tracing::warn!(error = %e, case = %cmd.body.case, "a details read could not be audited");
            return Err(Refusal::unavailable(
                "the read could not be recorded in the audit log, so nothing is shown; retry in a few seconds",
            ));
        }
        let register = host.register().read()?;
        let named = found.named(|p| register.name_of(p));
        Ok(Details {
            persons_held: named.persons_held(),
            days_held: named.days_held(now),
            case: named,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::command::{Actor, Role};

    #[test]
    fn a_details_read_names_who_read_what_and_when() {
        let cmd = Command {
            id: Uuid::from_u128(1),
            actor: Actor {
                user: "cm.sara".into(),
                role: Role::CrisisManager,
                scope: None,
                agency: None,
            },
            source: "http".into(),
            correlation_id: Some(Uuid::from_u128(2)),
            body: Get {
                case: Uuid::from_u128(3),
            },
        };
        let now = time::macros::datetime!(2026-11-27 10:00 UTC);
        let what = stream_of(Uuid::from_u128(3));
        let e = details_read(&cmd, &what, now, Uuid::from_u128(9)).unwrap();
        assert_eq!(e.event_type, "DetailsRead");
        assert_eq!(e.v, 1);
        assert_eq!(e.id, Uuid::from_u128(9));
        let data: DetailsRead = serde_json::from_value(e.data).unwrap();
        assert_eq!(
            data,
            DetailsRead {
                at: now,
                actor: "cm.sara".into(),
                role: "crisis_manager".into(),
                what: what.as_str().to_owned(),
                source: "http".into(),
            }
        );
        assert_eq!(e.meta.actor.as_deref(), Some("cm.sara"));
        assert_eq!(e.meta.role.as_deref(), Some("crisis_manager"));
        assert_eq!(e.meta.source.as_deref(), Some("http"));
        assert_eq!(e.meta.correlation_id, Some(Uuid::from_u128(2)));
    }

    #[test]
    fn details_serialise_flat() {
        let v = serde_json::json!({"case": Uuid::nil(), "change": {"person": "P-1"}});
        let c: Change = serde_json::from_value(v).unwrap();
        assert_eq!(c.case, Uuid::nil());
        assert!(
            serde_json::from_value::<Get>(serde_json::json!({"case": Uuid::nil(), "x": 1}))
                .is_err()
        );
    }
}
