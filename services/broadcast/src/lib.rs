//! The broadcast service: all-agency communiqués issued by duty officers or by rules,
//! approved by a second duty officer where the two-person rule asks it, delivered to every
//! agency over NATS and webhooks (and readable as CAP 1.2), acknowledged by agency focal
//! points, re-sent and escalated when they are not.
//!
//! # Commands (`vigil.cmd.broadcast.<name>`, a `Command` in, a `Reply` out)
//! - `issue` — body: title, body, severity, audience, requires_ack, ack_deadline, exercise,
//!   updates (all of `BroadcastIssued` a person may set). The command's id is the
//!   broadcast's id. The recipients are resolved here from the registered agencies (an
//!   exercise leaves out live-only agencies, and naming one is refused).
//! - `approve`, `ack` — `{"broadcast": <uuid>, "change": {}}`: see [`broadcast::decide_approve`]
//!   and [`broadcast::decide_ack`]. An acknowledgement is decided on the register and stored
//!   under one id per broadcast and agency ([`broadcast::ack_id`]): the same focal point again
//!   gets the first answer, a colleague of the same agency a `conflict`.
//! - `cancel` — `{"broadcast": <uuid>, "change": {"reason": "…"}}`: issues a new broadcast that
//!   cancels the original (its id is the command's id) and records the cancellation on the
//!   original; a retry completes what a crash cut short. A broadcast still awaiting approval
//!   was never sent: it is withdrawn, and no notice goes out.
//! - `get`, `chain`, `cap` — `{"broadcast": <uuid>}`: the broadcast with its per-agency
//!   state; the causal chain from the trigger to each acknowledgement; its CAP 1.2 XML.
//! - `list` — `{"limit", "cursor", "status", "caused_by"}`: one [`events::page::Page`] of
//!   broadcasts, newest first; `caused_by` (an event id) keeps the broadcasts that event
//!   caused (see [`broadcast::Broadcast::caused_by`]); `feed` — `{"agency"}`: an agency's CAP feed (a focal
//!   point gets their own; a wall-screen actor gets the public all-agency feed).
//!
//! Agency systems acknowledge over NATS too: a request on `vigil.alerts.<agency>.ack` with
//! `{"broadcast": <uuid>, "by": "<name>", "id": <optional uuid>}`.
//!
//! # Promises
//! - An `ok` answer means the events are on disk; a refusal changes nothing.
//! - A rule fires once per triggering event, whatever restarts, replays or second instances
//!   (its broadcast id is derived from rule and trigger, see [`rules::firing_id`]), unless
//!   the fold damps it ([`rules::Damper`], decided at the trigger's position): then a
//!   `BroadcastTriggerSuppressed` is recorded once on the broadcast that damped it, under
//!   the id the firing would have had.
//! - Each delivery attempt, re-send and escalation is recorded under a fixed id before it is
//!   acted on, and only the instance whose append was new acts (see [`broadcast`]): an
//!   escalation happens once; a delivery is at least once, with an idempotency key. This holds
//!   with an instance on every node of a centre, each with its own scheduler, and when one
//!   stops mid-way: the ids, not any coordination between instances, make each timer's
//!   effect recorded once (`tests/three_instances.rs`).
//! - Nothing is sent before approval, nor after cancellation.
//!
//! # Modules
//! [`broadcast`] is the aggregate (pure decide/apply); [`rules`] the configuration and rule
//! firing; [`deliver`] one delivery over NATS or a webhook; [`cap`] CAP 1.2 XML. The service
//! around them: `register` (its view of the log), `handlers` (issue, approve, cancel), `acks`
//! (acknowledgements over the command subject and from agency systems), `views` (the reads)
//! and `scheduler` (firings, claims, re-sends, escalations, deliveries). This file keeps the
//! entry points ([`run`], [`run_with`]) and the command dispatch.

mod acks;
pub mod broadcast;
pub mod cap;
pub mod clock;
pub mod deliver;
mod handlers;
mod register;
pub mod rules;
mod scheduler;
mod views;

pub use handlers::Change;
pub use views::{AgencyState, Chain, Get, Totals, View};

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::Refusal;
use runtime::commands::{self, reply};
use runtime::{ReadModel, StoreClient};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::{Clock, SystemClock};
use crate::register::Register;
use crate::rules::Config;

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "broadcast";
/// The environment variable naming the configuration file (else the shipped one).
pub const CONFIG_ENV: &str = "VIGIL_BROADCAST_CONFIG";
/// Deliveries in flight at once per instance.
pub const MAX_DELIVERIES: usize = 256;

/// How the service runs: its configuration and clock.
#[derive(Clone)]
pub struct Options {
    /// Rules, endpoints, retries.
    pub config: Arc<Config>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// How often the scheduler looks for due work.
    pub tick: Duration,
}

impl Options {
    /// The configuration file named by `VIGIL_BROADCAST_CONFIG`, or the shipped one; the
    /// system clock.
    pub fn from_env() -> anyhow::Result<Options> {
        let text = match std::env::var_os(CONFIG_ENV) {
            Some(path) => std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!(
                    "cannot read the broadcast configuration {} ({CONFIG_ENV}): {e}",
                    std::path::Path::new(&path).display()
                )
            })?,
            None => rules::DEFAULT_CONFIG.to_owned(),
        };
        Ok(Options {
            config: Arc::new(Config::parse(&text).map_err(anyhow::Error::msg)?),
            clock: Arc::new(SystemClock),
            tick: Duration::from_millis(100),
        })
    }
}

/// One running instance: the command handlers, the acknowledgement listener and the
/// scheduler are its methods, in the modules named for them.
struct Service {
    client: Client,
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
    options: Options,
    http: reqwest::Client,
    deliveries: Arc<tokio::sync::Semaphore>,
    /// Work this instance has recorded (never planned again here), by broadcast; a rule
    /// firing is recorded under its broadcast's own id. Forgotten when the broadcast settles.
    done: Mutex<HashMap<Uuid, HashSet<Uuid>>>,
}

/// Serves the broadcast commands and runs the scheduler until `shutdown`, with the
/// configuration of [`Options::from_env`].
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(client, shutdown, Options::from_env()?).await
}

/// [`run`] with given options (tests pass a manual clock and their own endpoints).
pub async fn run_with(
    client: Client,
    shutdown: CancellationToken,
    options: Options,
) -> anyhow::Result<()> {
    let register = ReadModel::start_with(
        client.clone(),
        SERVICE,
        shutdown.clone(),
        Register::new(options.config.clone()),
    );
    let service = Arc::new(Service {
        client: client.clone(),
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        register,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?,
        options,
        deliveries: Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES)),
        done: Mutex::new(HashMap::new()),
    });
    let probe = {
        let register = service.register.clone();
        move || match register.loading() {
            None => runtime::status::ServiceStatus::ready(SERVICE),
            Some(what) => runtime::status::ServiceStatus::loading(SERVICE, what),
        }
    };
    runtime::status::serve(client.clone(), SERVICE, probe, shutdown.clone());
    tokio::spawn(service.clone().schedule(shutdown.clone()));
    tokio::spawn(service.clone().nats_acks(shutdown.clone()));
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let service = service.clone();
        async move { service.handle(&name, payload).await }
    })
    .await
}

impl Service {
    async fn handle(&self, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "issue" => reply(self.issue(&payload).await),
            "approve" => reply(self.transition(&payload, broadcast::decide_approve).await),
            "ack" => reply(self.ack_command(&payload).await),
            "cancel" => reply(self.cancel(&payload).await),
            "get" => reply(self.get(&payload).await),
            "chain" => reply(self.chain(&payload).await),
            "cap" => reply(self.cap(&payload).await),
            "list" => reply(self.list(&payload)),
            "feed" => reply(self.feed(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; broadcast takes issue, approve, ack, cancel, get, chain, cap, list, feed",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }
}
