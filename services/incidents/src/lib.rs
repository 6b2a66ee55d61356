//! The incidents service: flash reports from duty stations and everything that follows
//! (details, verification, escalation, closure), over NATS only.
//!
//! # Commands (`vigil.cmd.incidents.<name>`, a [`Command`] in, a [`Reply`] out)
//! - `report` — body: the report's fields (see `IncidentReported`, without `reporter`: it is
//!   the actor). The command's id is the incident's id, its stream's id and its first event's
//!   id: a retried report is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with other content is refused `id_reused`.
//! - `update`, `verify`, `escalate`, `close` — body `{"incident": <uuid>, "change": {…}}`;
//!   decided against the incident's stream (see [`incident::decide`]) and appended with the
//!   version read (optimistic concurrency); a retry with the same command id is answered
//!   with the original outcome.
//! - `get` — body `{"incident": <uuid>}`: the incident folded from its stream, so it always
//!   includes the caller's own latest change.
//! - `list` — body: [`incident::ListQuery`] (filters, `limit`, `cursor`), answered as one
//!   [`events::page::Page`]: from the register, which follows the log
//!   (it may lag the log by the time it takes an event to arrive).
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees or changes another country's incident.
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod incident;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Command, Refusal, Written};
use events::domain::DomainEvent;
use events::domain::station::{self, DutyStationRegistered};
use events::{AppendRequest, Decoded, ErrorCode, ExpectedVersion};
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use runtime::{ClientError, ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use time::OffsetDateTime;

use crate::incident::{Facts, Incident, IncidentCommand, ListQuery, Register};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "incidents";

/// Body of `update`, `verify`, `escalate` and `close`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The incident.
    pub incident: Uuid,
    /// The transition's fields.
    pub change: Value,
}

/// Body of `get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The incident.
    pub incident: Uuid,
}

/// Answer of `list`: newest report first (see [`events::page`]).
pub type Listed = events::page::Page<Incident>;

/// The stream of incident `id`.
pub use events::domain::incident::stream_for as stream_of;

struct Service {
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
}

/// Serves the incidents commands until `shutdown`.
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
            "report" => reply(self.report(&payload).await),
            "update" | "verify" | "escalate" | "close" => {
                reply(self.transition(name, &payload).await)
            }
            "get" => reply(self.get(&payload).await),
            "list" => reply(self.list(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; incidents takes report, update, verify, escalate, close, get, list",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }

    async fn report(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let parsed = incident::parse("report", &cmd.actor, cmd.body.clone())?;
        let station = self.station_named(&parsed).await?;
        let facts = Facts {
            now: OffsetDateTime::now_utc(),
            station: station.as_ref(),
        };
        let new = incident::decide(cmd.id, None, &cmd.actor, parsed, &facts)?;
        let stream = stream_of(cmd.id);
        let events = new
            .iter()
            .enumerate()
            .map(|(i, e)| e.try_to_new_event(commands::event_id(cmd.id, i), cmd.meta()))
            .collect::<Result<Vec<_>, _>>()?;
        // No read first: the store's id index makes a retry (same id, same content) return
        // the original positions, and refuses the same id with other content.
        let request = AppendRequest {
            stream: stream.clone(),
            expected_version: ExpectedVersion::NoStream,
            events,
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => Ok(Written {
                stream,
                event_id: cmd.id,
                position: ok.first_position,
                stream_version: 1,
                duplicate: ok.duplicate,
            }),
            Err(ClientError::Store(e)) if e.code == ErrorCode::WrongExpectedVersion => {
                Err(Refusal::new(
                    events::command::RefusalCode::IdReused,
                    format!(
                        "incident {} already exists; report a new incident with a new id",
                        cmd.id
                    ),
                ))
            }
            Err(e) => Err(store_refusal(e)),
        }
    }

    async fn transition(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let parsed: IncidentCommand = incident::parse(name, &cmd.actor, cmd.body.change.clone())?;
        let id = cmd.body.incident;
        let station = self.station_named(&parsed).await?;
        let facts = Facts {
            now: OffsetDateTime::now_utc(),
            station: station.as_ref(),
        };
        commands::execute(&self.store, &stream_of(id), &cmd, |history| {
            let state = Incident::fold(history);
            incident::decide(id, state.as_ref(), &cmd.actor, parsed.clone(), &facts)
        })
        .await
    }

    /// The registration of the duty station `command` names, read from its stream (always
    /// current, also right after `vigil import`); `None` when it names none, names one that
    /// is not registered, or names something that is not an id (decide refuses it).
    async fn station_named(
        &self,
        command: &IncidentCommand,
    ) -> Result<Option<DutyStationRegistered>, Refusal> {
        let named = match command {
            IncidentCommand::Report(r) => r.duty_station.as_deref(),
            IncidentCommand::Update(u) => u.duty_station.as_deref(),
            _ => None,
        };
        let Some(named) = named.filter(|n| events::validate::id("duty_station", n).is_ok()) else {
            return Ok(None);
        };
        let (history, _) = commands::load(&self.store, &station::stream_for(named)).await?;
        Ok(history
            .iter()
            .rev()
            .find_map(|e| match DomainEvent::decode(e) {
                Decoded::Known(DomainEvent::DutyStationRegistered(s)) if s.station == named => {
                    Some(s)
                }
                _ => None,
            }))
    }

    async fn get(&self, payload: &[u8]) -> Result<Incident, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor
            .may(events::command::policy::INCIDENT_READ, "read incidents")?;
        let (history, _) = commands::load(&self.store, &stream_of(cmd.body.incident)).await?;
        Incident::fold(&history)
            .filter(|i| incident::visible(&cmd.actor, i))
            .ok_or_else(|| {
                Refusal::not_found(format!(
                    "no incident {} that you can see; check the id",
                    cmd.body.incident
                ))
            })
    }

    fn list(&self, payload: &[u8]) -> Result<Listed, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        let register = self.register.caught_up()?;
        Ok(register.list(&cmd.actor, &cmd.body)?.map(Incident::clone))
    }
}
