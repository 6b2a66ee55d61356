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
//!   `{"case": <uuid>, "change": {…the event's fields…}}`; decided by [`case::decide`]
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

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::audit::{DETAILS_READ, DetailsRead};
use events::command::{Command, Refusal, RefusalCode, Written, policy};
use events::domain::DomainEvent;
use events::{AppendRequest, Decoded, ExpectedVersion, NewEvent, StreamName};
use runtime::commands::{self, STORE_DEADLINE, reply};
use runtime::{ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::case::{Case, HostageCommand, ListQuery, Register, Summary};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "hostage";

/// The stream of case `id`.
pub use events::domain::hostage::stream_for as stream_of;

/// Body of `proof_of_life`, `proof_of_life_many`, `negotiation`, `release`, `release_many`,
/// `deceased` and `close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The case.
    pub case: Uuid,
    /// The event's fields.
    pub change: Value,
}

/// Body of `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The case.
    pub case: Uuid,
}

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

struct Service {
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
}

/// Serves the hostage commands until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = Arc::new(Service {
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        register: ReadModel::start(client.clone(), SERVICE, shutdown.clone()),
    });
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let service = service.clone();
        async move { service.handle(&name, payload).await }
    })
    .await
}

impl Service {
    async fn handle(&self, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "open" => reply(self.open(&payload).await),
            "proof_of_life" | "proof_of_life_many" | "negotiation" | "release" | "release_many"
            | "deceased" | "close" => reply(self.transition(name, &payload).await),
            "get" => reply(self.get(&payload).await),
            "list" => reply(self.list(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; hostage takes open, proof_of_life, proof_of_life_many, negotiation, release, release_many, deceased, close, get, list",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }

    async fn open(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let parsed = case::parse("open", cmd.body.clone())?;
        // Role first: only a crisis manager learns whether an incident exists here.
        cmd.actor.may(
            policy::HOSTAGE_MANAGE,
            "open or act on hostage cases; ask a crisis manager",
        )?;
        let facts = match &parsed {
            HostageCommand::Open(o) => case::Facts {
                incident_reported: self.incident_reported(o.incident_id).await?,
            },
            _ => case::Facts::default(),
        };
        let stream = stream_of(cmd.id);
        let written = commands::execute(&self.store, &stream, &cmd, |history| {
            case::decide(
                cmd.id,
                Case::fold(history).as_ref(),
                &cmd.actor,
                parsed.clone(),
                facts,
            )
        })
        .await?;
        if written.duplicate {
            // `execute` recognises a retry by its id alone: make sure it is the same case,
            // so a reused id is refused rather than answered as if it had been stored.
            let HostageCommand::Open(asked) = parsed else {
                return Ok(written);
            };
            let (history, _) = commands::load(&self.store, &stream).await?;
            let same = history.first().is_some_and(|e| {
                e.id == cmd.id
                    && matches!(DomainEvent::decode(e),
                        Decoded::Known(DomainEvent::HostageCaseOpened(o)) if o == asked)
            });
            if !same {
                return Err(Refusal::new(
                    RefusalCode::IdReused,
                    format!(
                        "hostage case {} already exists with other details; open a new case with a new id",
                        cmd.id
                    ),
                ));
            }
        }
        Ok(written)
    }

    /// Whether incident `id` is reported: its stream, read now (a report a moment ago counts).
    async fn incident_reported(&self, id: Uuid) -> Result<bool, Refusal> {
        let (history, _) =
            commands::load(&self.store, &events::domain::incident::stream_for(id)).await?;
        Ok(history.iter().any(|e| {
            matches!(
                DomainEvent::decode(e),
                Decoded::Known(DomainEvent::IncidentReported(_))
            )
        }))
    }

    async fn transition(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let parsed = case::parse(name, cmd.body.change.clone())?;
        let id = cmd.body.case;
        commands::execute(&self.store, &stream_of(id), &cmd, |history| {
            case::decide(
                id,
                Case::fold(history).as_ref(),
                &cmd.actor,
                parsed.clone(),
                case::Facts::default(),
            )
        })
        .await
    }

    async fn get(&self, payload: &[u8]) -> Result<Details, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(
            policy::HOSTAGE_DETAILS,
            "read hostage-case details; the list shows counts and days held",
        )?;
        let stream = stream_of(cmd.body.case);
        let (history, _) = commands::load(&self.store, &stream).await?;
        let found = Case::fold(&history)
            .filter(|c| cmd.actor.covers(c.country))
            .ok_or_else(|| case::not_found(cmd.body.case))?;
        // No unaudited read: the record is on disk before anything is answered.
        let now = OffsetDateTime::now_utc();
        let record = details_read(&cmd, &stream, now, Uuid::new_v4())?;
        let request = AppendRequest {
            stream: events::audit::stream_for(now),
            expected_version: ExpectedVersion::Any,
            events: vec![record],
        };
        if let Err(e) = self.store.append_retrying(&request, STORE_DEADLINE).await {
            tracing::warn!(error = %e, case = %cmd.body.case, "a details read could not be audited");
            return Err(Refusal::unavailable(
                "the read could not be recorded in the audit log, so nothing is shown; retry in a few seconds",
            ));
        }
        let register = self.register.read()?;
        let named = found.named(|p| register.name(p).map(str::to_owned));
        Ok(Details {
            persons_held: named.persons_held(),
            days_held: named.days_held(now),
            case: named,
        })
    }

    fn list(&self, payload: &[u8]) -> Result<Listed, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let query: ListQuery = events::codec::from_value(cmd.body).map_err(Refusal::invalid)?;
        let register = self.register.caught_up()?;
        register.list(&cmd.actor, &query, OffsetDateTime::now_utc())
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
