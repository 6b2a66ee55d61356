//! The clearances service: travel security clearances (a traveller, an itinerary, a
//! decision), and the arrivals and departures on the way, over NATS only. With the duty
//! station assignments of the personnel register it answers "who is in this area right now"
//! (see [`presence`]).
//!
//! # Commands (`vigil.cmd.clearances.<name>`, a [`Command`] in, a [`Reply`] out)
//! Who may do what is [`events::command::policy`]; a field officer is also held to their
//! country as below.
//! - `request` (`CLEARANCE_REQUEST`) — body: the fields of `ClearanceRequested`
//!   (`traveller`, `itinerary: [{country, area?, from, to}]`, `purpose?`). The traveller
//!   must be in the personnel register (`PersonRegistered`, loaded by `vigil import`),
//!   else `not_found`; for an agency focal point, registered in its agency (another
//!   agency's traveller is `not_found` too). A field officer requests only a journey with a
//!   leg in their country (`forbidden`). The command's id is the clearance's id, its stream's id and its first
//!   event's id: a retry is stored once and answered with the original outcome
//!   (`duplicate: true`); the same id with another request is refused `id_reused`.
//! - `approve` (`CLEARANCE_DECIDE`) — `{"clearance": <uuid>, "change": {}}`; `refuse`
//!   (same) — `{"clearance", "change": {"reason"}}`. Only while requested; the decider is
//!   the login. A field officer decides only a journey whose every leg is in their country.
//! - `arrive`, `depart` (`CLEARANCE_MOVEMENT`) — `{"clearance", "change": {"country",
//!   "at"}}`: approved clearances only, a country of the itinerary, no second arrival
//!   without a departure, no departure without an arrival or before it. A field officer
//!   records movements in their own country only; an agency focal point on clearances of
//!   its agency's travellers only (another's is `not_found`).
//! - `get` (`CLEARANCE_READ`) — `{"clearance": <uuid>}`: folded from its stream, so always
//!   current. A field officer sees a clearance with a leg in their country (else
//!   `not_found`).
//! - `list` (`CLEARANCE_READ`) — [`clearance::ListQuery`] (`status`, `country`,
//!   `traveller`; `on` with `country` and optionally `area` for the travellers present
//!   there that day; `limit`, `cursor`): one [`events::page::Page`] from the register, which follows the log (it may lag by the
//!   time an event takes to arrive; `unavailable` until it has read the log as it was at
//!   start). Newest request first.
//!
//! Every transition is decided by the pure [`clearance::decide`] inside
//! `runtime::commands::execute`: read the stream, decide, append with the version read; if
//! someone wrote in between, decide again on the new state. Two officers approving and
//! refusing at once: one wins, the other is refused `conflict`.
//!
//! # Promises
//! An answer `ok` means the events are on disk. A refusal changes nothing. A field officer
//! never sees a clearance with no leg in their country.
//!
//! [`Command`]: events::command::Command
//! [`Reply`]: events::command::Reply

pub mod clearance;
pub mod presence;

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::Decoded;
use events::command::{Actor, Command, Refusal, RefusalCode, Role, Written, policy};
use events::domain::DomainEvent;
use events::domain::clearance::ClearanceRequested;
use events::domain::person::{self, PersonRegistered};
use runtime::commands::{self, reply};
use runtime::{ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clearance::{ClearanceState, Facts, ListQuery, Register};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "clearances";

/// Body of `approve`, `refuse`, `arrive` and `depart`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The clearance.
    pub clearance: Uuid,
    /// The transition's fields.
    pub change: Value,
}

/// Body of `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The clearance.
    pub clearance: Uuid,
}

/// Answer of `list`: newest request first (see [`events::page`]).
pub type Listed = events::page::Page<ClearanceState>;

/// The stream of clearance `id`.
pub use events::domain::clearance::stream_for as stream_of;

struct Service {
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
}

/// Serves the clearances commands until `shutdown`.
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
            "request" => reply(self.request(&payload).await),
            "approve" | "refuse" | "arrive" | "depart" => {
                reply(self.transition(name, &payload).await)
            }
            "get" => reply(self.get(&payload).await),
            "list" => reply(self.list(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; clearances takes request, approve, refuse, arrive, depart, get, list",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }

    async fn request(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let requested = clearance::parse_request(cmd.body.clone())?;
        // Role and fields before the register is consulted: nobody probes for names.
        cmd.actor
            .may(policy::CLEARANCE_REQUEST, "request travel clearances")?;
        requested.validate()?;
        let traveller = self.traveller(&requested.traveller).await?;
        let facts = Facts {
            traveller: traveller.as_ref(),
        };
        let id = cmd.id;
        let written = commands::execute(&self.store, &stream_of(id), &cmd, |history| {
            clearance::decide_request(
                id,
                ClearanceState::fold(history).as_ref(),
                &cmd.actor,
                requested.clone(),
                &facts,
            )
        })
        .await?;
        if written.duplicate {
            self.same_request(id, &requested).await?;
        }
        Ok(written)
    }

    /// `traveller`'s latest registration in the personnel register: their `person-<v5>`
    /// stream, read now, so a person imported a moment ago is found.
    async fn traveller(&self, traveller: &str) -> Result<Option<PersonRegistered>, Refusal> {
        let (history, _) = commands::load(&self.store, &person::stream_for(traveller)).await?;
        Ok(history
            .iter()
            .rev()
            .find_map(|e| match DomainEvent::decode(e) {
                Decoded::Known(DomainEvent::PersonRegistered(p)) if p.person == traveller => {
                    Some(p)
                }
                _ => None,
            }))
    }

    /// For an agency focal point (whose scope is the traveller's agency): the registration
    /// of clearance `id`'s traveller. The traveller of a clearance never changes, so reading
    /// it before the decision cannot race with it. Nothing for the other roles.
    async fn traveller_of(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<Option<PersonRegistered>, Refusal> {
        if actor.role != Role::AgencyFocalPoint {
            return Ok(None);
        }
        let (history, _) = commands::load(&self.store, &stream_of(id)).await?;
        match ClearanceState::fold(&history) {
            Some(c) => self.traveller(&c.traveller).await,
            None => Ok(None),
        }
    }

    /// A retry answered from the stream must carry the request that is stored, else the id
    /// was reused for another request.
    async fn same_request(&self, id: Uuid, requested: &ClearanceRequested) -> Result<(), Refusal> {
        let (history, _) = commands::load(&self.store, &stream_of(id)).await?;
        let stored = history.iter().find(|e| e.id == id).map(DomainEvent::decode);
        match stored {
            Some(Decoded::Known(DomainEvent::ClearanceRequested(r))) if &r == requested => Ok(()),
            _ => Err(Refusal::new(
                RefusalCode::IdReused,
                format!(
                    "clearance {id} already exists with another request; send a new request with a new id"
                ),
            )),
        }
    }

    async fn transition(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let parsed = clearance::parse(name, &cmd.actor, cmd.body.change.clone())?;
        let id = cmd.body.clearance;
        let traveller = self.traveller_of(&cmd.actor, id).await?;
        let facts = Facts {
            traveller: traveller.as_ref(),
        };
        commands::execute(&self.store, &stream_of(id), &cmd, |history| {
            clearance::decide(
                id,
                ClearanceState::fold(history).as_ref(),
                &cmd.actor,
                parsed.clone(),
                &facts,
            )
        })
        .await
    }

    async fn get(&self, payload: &[u8]) -> Result<ClearanceState, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::CLEARANCE_READ, "read clearances")?;
        let (history, _) = commands::load(&self.store, &stream_of(cmd.body.clearance)).await?;
        ClearanceState::fold(&history)
            .filter(|c| clearance::visible(&cmd.actor, c))
            .ok_or_else(|| {
                Refusal::not_found(format!(
                    "no clearance {} that you can see; check the id (field officers see clearances with a leg in their country)",
                    cmd.body.clearance
                ))
            })
    }

    fn list(&self, payload: &[u8]) -> Result<Listed, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        cmd.actor.may(policy::CLEARANCE_READ, "read clearances")?;
        let register = self.register.caught_up()?;
        Ok(register
            .list(&cmd.actor, &cmd.body)?
            .map(ClearanceState::clone))
    }
}
