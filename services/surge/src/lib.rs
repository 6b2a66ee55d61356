//! The surge service: security officers sent from their duty stations to reinforce another
//! one (request, approval or rejection, assignment, deployment, completion), over NATS only.
//!
//! # Commands (`vigil.cmd.surge.<name>`, a [`Command`] in, a [`Reply`] out)
//! Who may send each is the one policy table (`events::command::policy`); [`surge::decide`]
//! checks it again with the actor's country.
//! - `request` (`SURGE_REQUEST`; field officers for a station of their own country) — body:
//!   `SurgeRequested`'s fields. The duty station must be registered (reference data) and in
//!   the body's country. The command's id is the surge's id, its stream's id and its first
//!   event's id: a retry is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with other content is refused `id_reused`.
//! - `approve` (`SURGE_DECIDE`) `{"surge", "change": {}}`, `reject` (`SURGE_DECIDE`)
//!   `{"surge", "change": {"reason"}}` — only while requested; `by` is the login.
//! - `assign` (`SURGE_RUN`) `{"surge", "change": {"officer": "<person id>"}}` — the surge
//!   approved (or deployed, to reinforce) and not full; the officer a registered security
//!   officer (unknown person: `not_found`, import personnel with `vigil import`; not a
//!   security officer: `invalid`), not posted at the surge's own station (`invalid`), not on
//!   another active surge (`conflict` naming it). `from_duty_station` is the officer's
//!   registered station; a body that carries it is refused.
//! - `deploy` (`SURGE_RUN`) `{"surge", "change": {"at"}}` — approved, with an officer;
//!   `complete` (`SURGE_RUN`) `{"surge", "change": {"at"}}` — deployed only. Completion (or
//!   rejection) frees the officers.
//! - `cancel` (`SURGE_DECIDE`) `{"surge", "change": {"reason"}}` — only while requested or
//!   approved (a deployed surge is completed instead; a closed one is `conflict`); the reason
//!   is one line; `by` is the login. The assigned officers are free at once for another
//!   surge (a cancelled surge is not active).
//! - `get` (`SURGE_READ`) `{"surge"}` — the surge folded from its stream (always current),
//!   its officers with the station each came from, and `away_from`: officers away from each
//!   station because of it ([`surge::away_from`]).
//! - `list` (`SURGE_READ`) — [`surge::ListQuery`] (`status`, `country`, `limit`, `cursor`):
//!   one [`events::page::Page`] of [`SurgeView`]s, newest first, from the register (it may
//!   lag the log by the time an event takes to arrive; this instance's own writes show at
//!   once). The gap every active surge leaves is on the situation board.
//!
//! Transitions go through `runtime::commands::execute` (optimistic concurrency on the
//! surge's stream; a retry with the same command id is answered with the original outcome).
//!
//! # One officer, one surge — and its limit
//! Two assigns of one officer to two *different* surges append to two different streams, so
//! the store's optimistic concurrency cannot stop both. This instance therefore decides
//! `assign` one at a time (a tokio mutex around read-decide-append) and puts the surge as it
//! stands after each successful append into the register at once, without waiting for the
//! feed. The check is exact **within one instance**. Two instances of the service (a NATS
//! queue group spread over machines) could still each pass the check for the same officer
//! at the same moment: run one surge instance, or accept that rare double booking shows up
//! in both surges' officer lists for a person to resolve.
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees or changes another country's surge (`not_found`).
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod surge;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Command, Refusal, RefusalCode, Written, policy};
use events::domain::DomainEvent;
use events::domain::person::{self, PersonRegistered};
use events::domain::station::{self, DutyStationRegistered};
use events::{AppendRequest, Decoded, ErrorCode, ExpectedVersion, RecordedEvent, StreamName};
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use runtime::{ClientError, ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::surge::{Facts, ListQuery, Register, Surge, SurgeCommand};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "surge";

/// The stream of surge `id`: `surge-<id>`.
pub use events::domain::surge::stream_for as stream_of;

/// Body of `approve`, `reject`, `assign`, `deploy` and `complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The surge.
    pub surge: Uuid,
    /// The transition's fields.
    pub change: Value,
}

/// Body of `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The surge.
    pub surge: Uuid,
}

/// A surge as `get` and `list` show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SurgeView {
    /// The surge, with its officers and the station each came from.
    #[serde(flatten)]
    pub surge: Surge,
    /// How many officers are assigned.
    pub officers_assigned: usize,
    /// Officers away from each duty station because of this surge: the gap it leaves there
    /// (empty once it is completed, rejected or cancelled: they are back).
    pub away_from: BTreeMap<String, usize>,
}

impl SurgeView {
    /// The view of `surge`.
    pub fn of(surge: Surge) -> Self {
        Self {
            officers_assigned: surge.officers.len(),
            away_from: surge::away_from([&surge]),
            surge,
        }
    }
}

/// Answer of `list`: newest request first (see [`events::page`]); each surge with the gap
/// it leaves (`away_from`).
pub type Listed = events::page::Page<SurgeView>;

/// The service's state: the store, and the register that follows the log.
struct Service {
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
    /// `assign` decisions one at a time (see the crate doc).
    assign_lock: tokio::sync::Mutex<()>,
}

/// Serves the surge commands until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = Arc::new(Service {
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        register: ReadModel::start(client.clone(), SERVICE, shutdown.clone()),
        assign_lock: tokio::sync::Mutex::new(()),
    });
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let service = service.clone();
        async move { service.handle(&name, payload).await }
    })
    .await
}

/// The latest registration in a reference stream (`person-…`, `station-…`): the latest
/// one stands.
fn latest<T>(history: &[RecordedEvent], pick: impl Fn(DomainEvent) -> Option<T>) -> Option<T> {
    history
        .iter()
        .rev()
        .find_map(|e| match DomainEvent::decode(e) {
            Decoded::Known(d) => pick(d),
            Decoded::Unknown { .. } => None,
        })
}

impl Service {
    async fn handle(&self, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "request" => reply(self.request(&payload).await),
            "approve" | "reject" | "assign" | "deploy" | "complete" | "cancel" => {
                reply(self.transition(name, &payload).await)
            }
            "get" => reply(self.get(&payload).await),
            "list" => reply(self.list(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; surge takes request, approve, reject, assign, deploy, complete, cancel, get, list",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }

    /// Duty station `id` as registered (read from its stream: always current, also right
    /// after `vigil import`).
    async fn station(&self, id: &str) -> Result<Option<DutyStationRegistered>, Refusal> {
        let (history, _) = commands::load(&self.store, &station::stream_for(id)).await?;
        Ok(latest(&history, |e| match e {
            DomainEvent::DutyStationRegistered(s) if s.station == id => Some(s),
            _ => None,
        }))
    }

    /// Person `id` as registered (read from their stream: always current).
    async fn person(&self, id: &str) -> Result<Option<PersonRegistered>, Refusal> {
        let (history, _) = commands::load(&self.store, &person::stream_for(id)).await?;
        Ok(latest(&history, |e| match e {
            DomainEvent::PersonRegistered(p) if p.person == id => Some(p),
            _ => None,
        }))
    }

    async fn request(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let parsed = surge::parse("request", &cmd.actor, cmd.body.clone())?;
        let SurgeCommand::Request(requested) = &parsed else {
            return Err(Refusal::invalid("the body must be a surge request"));
        };
        cmd.actor.may(policy::SURGE_REQUEST, "request surges")?;
        events::validate::id("duty_station", &requested.duty_station)?;
        let station = self.station(&requested.duty_station).await?;
        let facts = Facts {
            station: station.as_ref(),
            ..Facts::default()
        };
        let new = surge::decide(cmd.id, None, &cmd.actor, parsed, &facts)?;
        let stream = stream_of(cmd.id);
        let events = new
            .iter()
            .enumerate()
            .map(|(i, e)| e.try_to_new_event(commands::event_id(cmd.id, i), cmd.meta()))
            .collect::<Result<Vec<_>, _>>()?;
        // No read first (as for incident reports): the store's id index makes a retry (same
        // id, same content) return the original positions, and refuses the same id with other
        // content; `no_stream` refuses a second request on the same stream.
        let request = AppendRequest {
            stream: stream.clone(),
            expected_version: ExpectedVersion::NoStream,
            events,
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => {
                let written = Written {
                    stream: stream.clone(),
                    event_id: cmd.id,
                    position: ok.first_position,
                    stream_version: 1,
                    duplicate: ok.duplicate,
                };
                if !written.duplicate {
                    self.remember(&cmd, &stream, vec![], &new, &written);
                }
                Ok(written)
            }
            Err(ClientError::Store(e)) if e.code == ErrorCode::WrongExpectedVersion => {
                Err(Refusal::new(
                    RefusalCode::IdReused,
                    format!(
                        "surge {} already exists; request a new surge with a new id",
                        cmd.id
                    ),
                ))
            }
            Err(e) => Err(store_refusal(e)),
        }
    }

    async fn transition(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let parsed = surge::parse(name, &cmd.actor, cmd.body.change.clone())?;
        match &parsed {
            SurgeCommand::Assign(a) => {
                let officer = a.officer.clone();
                self.assign(&cmd, parsed, &officer).await
            }
            _ => self.decide_and_append(&cmd, parsed, None).await,
        }
    }

    /// `assign`: the surge must be approved or deployed and not full; the officer a
    /// registered security officer (an unknown person is `not_found`, to be imported with
    /// `vigil import`; someone else `invalid`), not posted at the surge's own station
    /// (`invalid`), and not on another active surge (`conflict` naming it). Their
    /// `from_duty_station` is their registered station.
    async fn assign(
        &self,
        cmd: &Command<Change>,
        command: SurgeCommand,
        officer: &str,
    ) -> Result<Written, Refusal> {
        cmd.actor
            .may(policy::SURGE_RUN, "assign officers to surges")?;
        let person = self.person(officer).await?;
        // One assign decision at a time in this instance: the "already on another surge"
        // check and the append that makes it true must not interleave with another assign
        // (see the crate doc for what this does not cover).
        let _one_at_a_time = self.assign_lock.lock().await;
        self.decide_and_append(cmd, command, person.as_ref()).await
    }

    /// Decides `command` against the surge's stream (and, for an assignment, the register)
    /// and appends it; on success the register learns the surge's new state at once.
    async fn decide_and_append(
        &self,
        cmd: &Command<Change>,
        command: SurgeCommand,
        officer: Option<&PersonRegistered>,
    ) -> Result<Written, Refusal> {
        let id = cmd.body.surge;
        let stream = stream_of(id);
        // What the winning decision saw and produced, to update the register afterwards.
        let seen: std::sync::Mutex<Option<(Vec<RecordedEvent>, Vec<DomainEvent>)>> =
            std::sync::Mutex::new(None);
        let written = commands::execute(&self.store, &stream, cmd, |history| {
            let state = Surge::fold(history);
            // The register is asked only when it matters (a known officer, an existing
            // surge), so a missing surge is `not_found` even while the register catches up.
            let officer_on = match officer {
                Some(p) if state.is_some() => {
                    self.register.caught_up()?.active_surge_of(&p.person, id)
                }
                _ => None,
            };
            let facts = Facts {
                station: None,
                officer,
                officer_on,
            };
            let new = surge::decide(id, state.as_ref(), &cmd.actor, command.clone(), &facts)?;
            if let Ok(mut seen) = seen.lock() {
                *seen = Some((history.to_vec(), new.clone()));
            }
            Ok(new)
        })
        .await?;
        if !written.duplicate
            && let Ok(Some((history, new))) = seen.into_inner()
        {
            self.remember(cmd, &stream, history, &new, &written);
        }
        Ok(written)
    }

    /// Puts the surge as it stands after a successful append into the register, ahead of the
    /// feed (whose own copy replaces it when it arrives; only `recorded_at` differs, by the
    /// time the append took).
    fn remember<T>(
        &self,
        cmd: &Command<T>,
        stream: &StreamName,
        mut history: Vec<RecordedEvent>,
        new: &[DomainEvent],
        written: &Written,
    ) {
        let meta = cmd.meta();
        let now = OffsetDateTime::now_utc();
        for (i, e) in new.iter().enumerate() {
            history.push(RecordedEvent::record(
                e.to_new_event(commands::event_id(cmd.id, i), meta.clone()),
                stream.clone(),
                written.position + i as u64,
                written.stream_version + i as u64,
                now,
            ));
        }
        if let Some(surge) = Surge::fold(&history)
            && let Ok(mut register) = self.register.write()
        {
            register.wrote(surge);
        }
    }

    async fn get(&self, payload: &[u8]) -> Result<SurgeView, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::SURGE_READ, "read surges")?;
        let (history, _) = commands::load(&self.store, &stream_of(cmd.body.surge)).await?;
        Surge::fold(&history)
            .filter(|s| surge::visible(&cmd.actor, s))
            .map(SurgeView::of)
            .ok_or_else(|| {
                Refusal::not_found(format!(
                    "no surge {} that you can see; check the id",
                    cmd.body.surge
                ))
            })
    }

    fn list(&self, payload: &[u8]) -> Result<Listed, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        cmd.actor.may(policy::SURGE_READ, "read surges")?;
        let register = self.register.caught_up()?;
        Ok(register
            .list(&cmd.actor, &cmd.body)?
            .map(|s| SurgeView::of(s.clone())))
    }
}
