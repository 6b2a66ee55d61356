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
//!   escalation happens once; a delivery is at least once, with an idempotency key.
//! - Nothing is sent before approval, nor after cancellation.

pub mod broadcast;
pub mod cap;
pub mod clock;
pub mod deliver;
pub mod rules;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Actor, Command, Refusal, RefusalCode, Role, Written, policy};
use events::domain::DomainEvent;
use events::domain::agency::AgencyRegistered;
use events::domain::broadcast::{
    self as bevents, Audience, BroadcastCancelled, BroadcastDelivered, BroadcastDeliveryAttempted,
    BroadcastDeliveryFailed, BroadcastEscalated, BroadcastIssued, BroadcastResent,
    BroadcastSeverity, Channel,
};
use events::validate::Country;
use events::{AppendRequest, ExpectedVersion, Meta, RecordedEvent};
use futures::StreamExt;
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use runtime::{ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broadcast::{Ack, Broadcast, Key, Link, Status, Work};
use crate::clock::{Clock, SystemClock};
use crate::deliver::Message;
use crate::rules::Config;

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "broadcast";
/// The environment variable naming the configuration file (else the shipped one).
pub const CONFIG_ENV: &str = "VIGIL_BROADCAST_CONFIG";
/// Deliveries in flight at once per instance.
pub const MAX_DELIVERIES: usize = 256;
/// Pieces of work (claims, re-sends, escalations) recorded at once by the scheduler.
const RECORD_CONCURRENCY: usize = 64;

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

/// A rule firing waiting to be appended.
#[derive(Debug, Clone)]
struct Pending {
    issued: BroadcastIssued,
    trigger: Uuid,
    trigger_at: OffsetDateTime,
    correlation_id: Option<Uuid>,
}

/// What the scheduler does in one tick: rule firings, damped triggers to record, and
/// delivery work.
type Due = (
    Vec<(Uuid, Pending)>,
    Vec<(Uuid, Suppression)>,
    Vec<(Uuid, Work, Option<Arc<Broadcast>>)>,
);

/// A damped trigger waiting to be recorded on the broadcast that damped it.
#[derive(Debug, Clone)]
struct Suppression {
    /// The broadcast that stands for it.
    broadcast: Uuid,
    event: bevents::BroadcastTriggerSuppressed,
    trigger_at: OffsetDateTime,
}

/// The service's view of the log.
struct Register {
    config: Arc<Config>,
    agencies: BTreeMap<String, AgencyRegistered>,
    broadcasts: HashMap<Uuid, Broadcast>,
    /// Broadcasts newest first is `order` reversed.
    order: Vec<Uuid>,
    /// Original → the broadcast that updates it.
    superseded: HashMap<Uuid, Uuid>,
    /// Rule firings not yet in the log, by broadcast id.
    pending: BTreeMap<Uuid, Pending>,
    /// The last firing of each damped rule and group (see [`rules::Damper`]).
    damper: rules::Damper,
    /// Damped triggers not yet in the log, by the id their firing would have had (the
    /// event's id).
    suppressions: BTreeMap<Uuid, Suppression>,
    /// Broadcasts that may still have work.
    active: HashSet<Uuid>,
    position: u64,
}

impl Default for Register {
    fn default() -> Self {
        Register::new(Arc::new(Config {
            version: 0,
            sender: String::new(),
            fire_within_minutes: 0,
            damp_minutes: 0,
            delivery: rules::DeliveryConfig::default(),
            agencies: BTreeMap::new(),
            rules: Vec::new(),
        }))
    }
}

impl Register {
    fn new(config: Arc<Config>) -> Self {
        Register {
            config,
            agencies: BTreeMap::new(),
            broadcasts: HashMap::new(),
            order: Vec::new(),
            superseded: HashMap::new(),
            pending: BTreeMap::new(),
            damper: rules::Damper::default(),
            suppressions: BTreeMap::new(),
            active: HashSet::new(),
            position: 0,
        }
    }

    fn agencies_in(&self, country: Country) -> Vec<String> {
        self.agencies
            .values()
            .filter(|a| a.countries.contains(&country))
            .map(|a| a.agency.clone())
            .collect()
    }

    fn all_agencies(&self) -> Vec<String> {
        self.agencies.keys().cloned().collect()
    }

    /// The agencies `audience` reaches, or why it cannot be sent.
    fn recipients(&self, audience: &Audience, exercise: bool) -> Result<Vec<String>, Refusal> {
        let takes = |a: &String| !exercise || self.config.takes_exercises(a);
        Ok(match audience {
            Audience::AllAgencies => self.all_agencies().into_iter().filter(takes).collect(),
            Audience::Country(c) => self.agencies_in(*c).into_iter().filter(takes).collect(),
            Audience::Agencies(list) => {
                for a in list {
                    if !self.agencies.contains_key(a) {
                        return Err(Refusal::invalid(format!(
                            "audience.agencies: {a:?} is not a registered agency; check the id (vigil import registers agencies)"
                        )));
                    }
                    if !takes(a) {
                        return Err(Refusal::invalid(format!(
                            "audience.agencies: {a:?} takes live broadcasts only, not exercises"
                        )));
                    }
                }
                let mut list = list.clone();
                list.sort();
                list
            }
            Audience::DutyOfficers | Audience::CrisisManagers => vec![],
        })
    }

    fn is_trigger(event_type: &str) -> bool {
        matches!(
            event_type,
            "RelocationOrdered" | "AreaSecurityLevelSet" | "IncidentReported" | "HostageCaseOpened"
        )
    }
}

impl runtime::Fold for Register {
    fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        match e.stream.category().as_str() {
            "broadcast" => {
                let id = e.stream.id();
                if e.event_type == "BroadcastTriggerSuppressed" {
                    self.suppressions.remove(&e.id);
                }
                if let Some(b) = self.broadcasts.get_mut(&id) {
                    b.apply(e);
                    self.active.insert(id);
                } else if let Some(b) = Broadcast::start(e) {
                    self.pending.remove(&id);
                    // Fired by an older build that did not damp it: it went out.
                    self.suppressions.remove(&id);
                    if let Some(o) = b.issued.updates {
                        self.superseded.insert(o, id);
                    }
                    self.order.push(id);
                    self.active.insert(id);
                    self.broadcasts.insert(id, b);
                }
            }
            "agency" => {
                if let events::codec::Decoded::Known(DomainEvent::AgencyRegistered(a)) =
                    DomainEvent::decode(e)
                {
                    self.agencies.insert(a.agency.clone(), a);
                }
            }
            _ if Register::is_trigger(&e.event_type) => {
                // Fired here, at the trigger's position, so every instance and every replay
                // sees the same agencies and builds the same broadcast.
                let config = self.config.clone();
                let events::codec::Decoded::Known(event) = DomainEvent::decode(e) else {
                    return;
                };
                for rule in &config.rules {
                    let id = rules::firing_id(&rule.id, e.id);
                    if self.broadcasts.contains_key(&id) {
                        continue;
                    }
                    let fired =
                        rule.fire(config.version, e, &event, &|c| self.agencies_in(c), &|| {
                            self.all_agencies()
                        });
                    let Some(issued) = fired else { continue };
                    if let Some(key) = rule.damp_key(&event) {
                        let window = time::Duration::minutes(i64::from(config.damp_minutes));
                        let decided = self
                            .damper
                            .decide(&rule.id, &key, e.recorded_at, id, window);
                        if let rules::Damping::Suppress(by) = decided {
                            self.suppressions.insert(
                                id,
                                Suppression {
                                    broadcast: by,
                                    event: bevents::BroadcastTriggerSuppressed {
                                        rule: rule.id.clone(),
                                        trigger: e.id,
                                    },
                                    trigger_at: e.recorded_at,
                                },
                            );
                            continue;
                        }
                    }
                    self.pending.insert(
                        id,
                        Pending {
                            issued,
                            trigger: e.id,
                            trigger_at: e.recorded_at,
                            correlation_id: e.meta.correlation_id,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}

/// Body of `issue`: what a duty officer sets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    title: String,
    body: String,
    severity: BroadcastSeverity,
    audience: Audience,
    #[serde(default)]
    requires_ack: bool,
    #[serde(default, with = "time::serde::rfc3339::option")]
    ack_deadline: Option<OffsetDateTime>,
    #[serde(default)]
    exercise: bool,
    #[serde(default)]
    updates: Option<Uuid>,
}

/// Body of `approve`, `ack`, `cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The broadcast.
    pub broadcast: Uuid,
    /// The command's fields.
    #[serde(default)]
    pub change: Value,
}

/// Body of `get`, `chain`, `cap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The broadcast.
    pub broadcast: Uuid,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<events::page::Cursor>,
    #[serde(default)]
    status: Option<String>,
    /// Only the broadcasts this event caused: issued by a rule it triggered, or standing
    /// for it when the trigger was damped (see [`rules::Damper`]).
    #[serde(default)]
    caused_by: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeedQuery {
    #[serde(default)]
    agency: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

/// One agency's state in [`View`].
#[derive(Debug, Clone, Serialize)]
pub struct AgencyState {
    /// Delivered over these channels.
    pub delivered: Vec<Channel>,
    /// Channels given up on, with the last error.
    pub failed: BTreeMap<String, String>,
    /// Attempts made, over all channels and rounds.
    pub attempts: u32,
    /// The acknowledgement.
    pub ack: Option<Ack>,
}

/// Every recipient agency, counted: what a focal point learns of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Agencies it was sent to.
    pub recipients: usize,
    /// Of them, sent: at least one delivery attempt was made.
    pub sent: usize,
    /// Of them, delivered over some channel (an agency system received it: a receipt over
    /// NATS, a 2xx from its webhook).
    pub delivered: usize,
    /// Of them, acknowledged.
    pub acknowledged: usize,
}

/// Answer of `get` (and each line of `list`).
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Every recipient agency, counted (a focal point's `recipients` and `agencies` hold
    /// its own agency only).
    pub totals: Totals,
    /// The broadcast.
    pub id: Uuid,
    /// What was issued.
    #[serde(flatten)]
    pub issued: BroadcastIssued,
    /// Where it is.
    pub status: Status,
    /// Who issued it.
    pub issued_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// The second duty officer.
    pub approved_by: Option<String>,
    /// Per recipient agency.
    pub agencies: BTreeMap<String, AgencyState>,
    /// Agencies at least one delivery attempt was made to.
    pub sent: usize,
    /// Agencies whose system received it (a receipt over NATS, a 2xx from a webhook).
    pub delivered: usize,
    /// Agencies that acknowledged (a person of the agency).
    pub acknowledged: usize,
    /// Agencies with a channel given up on and not delivered over another.
    pub failed: usize,
    /// Agencies sent it again.
    pub resent_to: Vec<String>,
    /// Agencies silent at the deadline, when escalated.
    pub escalated: Option<Vec<String>>,
    /// Why it was cancelled.
    pub cancelled: Option<String>,
    /// The broadcast that updates it.
    pub superseded_by: Option<Uuid>,
    /// Triggers of its rule damped by it (see [`rules::Damper`]).
    pub suppressed: u64,
    /// Log position of the issue.
    pub position: u64,
}

/// Answer of `chain`.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// The event that set a rule off, if a rule issued it.
    pub trigger: Option<Uuid>,
    /// The broadcast it updates or cancels.
    pub references: Option<Uuid>,
    /// Every event of the broadcast the caller may see, in order, each with its causation
    /// (a focal point: the centre's events and its own agency's).
    pub events: Vec<Link>,
    /// Events about other agencies left out, counted by type (empty for the centre).
    pub other_agencies: BTreeMap<String, usize>,
}

/// The broadcast as `actor` may see it: a focal point sees their own agency's line only
/// (its recipients cut to that agency) and [`Totals`] for every agency.
fn view(b: &Broadcast, superseded_by: Option<Uuid>, actor: &Actor) -> View {
    let own = |a: &&String| Broadcast::own_line(actor, a);
    let mut agencies: BTreeMap<String, AgencyState> = b
        .issued
        .recipients
        .iter()
        .filter(own)
        .map(|a| {
            (
                a.clone(),
                AgencyState {
                    delivered: vec![],
                    failed: BTreeMap::new(),
                    attempts: 0,
                    ack: b.acks.get(a).cloned(),
                },
            )
        })
        .collect();
    for ((agency, channel, _round), d) in &b.deliveries {
        let Some(s) = agencies.get_mut(agency) else {
            continue;
        };
        s.attempts += d.attempts;
        if d.delivered.is_some() {
            if !s.delivered.contains(channel) {
                s.delivered.push(*channel);
            }
        } else if d.gave_up {
            s.failed.insert(
                channel.as_str().to_owned(),
                d.error.clone().unwrap_or_default(),
            );
        }
    }
    let delivered = agencies
        .values()
        .filter(|s| !s.delivered.is_empty())
        .count();
    let failed = agencies
        .values()
        .filter(|s| s.delivered.is_empty() && !s.failed.is_empty())
        .count();
    let sent = agencies.values().filter(|s| s.attempts > 0).count();
    let totals = Totals {
        recipients: b.issued.recipients.len(),
        sent: b
            .issued
            .recipients
            .iter()
            .filter(|a| {
                b.deliveries
                    .iter()
                    .any(|((agency, _, _), d)| agency == *a && d.attempts > 0)
            })
            .count(),
        delivered: b
            .issued
            .recipients
            .iter()
            .filter(|a| {
                b.deliveries
                    .iter()
                    .any(|((agency, _, _), d)| agency == *a && d.delivered.is_some())
            })
            .count(),
        acknowledged: b.acks.len(),
    };
    let issued = b.cut_for(actor).issued;
    View {
        id: b.id,
        issued,
        totals,
        status: b.status(),
        issued_by: b.issued_by.clone(),
        issued_at: b.issued_at,
        approved_by: b.approved.as_ref().map(|(by, _)| by.clone()),
        sent,
        delivered,
        acknowledged: b.acks.keys().filter(own).count(),
        failed,
        agencies,
        resent_to: b
            .resent
            .iter()
            .flat_map(|(a, _)| a.iter().filter(own).cloned())
            .collect(),
        escalated: b
            .escalated
            .as_ref()
            .map(|(a, _)| a.iter().filter(own).cloned().collect()),
        cancelled: b.cancelled.as_ref().map(|(r, _)| r.clone()),
        superseded_by,
        suppressed: b.suppressed,
        position: b.position,
    }
}

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
    tokio::spawn(service.clone().schedule(shutdown.clone()));
    tokio::spawn(service.clone().nats_acks(shutdown.clone()));
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let service = service.clone();
        async move { service.handle(&name, payload).await }
    })
    .await
}

fn system_meta(source: &str, causation: Option<Uuid>, correlation: Option<Uuid>) -> Meta {
    Meta {
        actor: Some(format!("system:{SERVICE}")),
        role: None,
        source: Some(source.to_owned()),
        correlation_id: correlation,
        causation_id: causation,
        appended_by: None,
    }
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

    /// The broadcast `id` as `actor` may see it.
    async fn load(&self, id: Uuid, actor: &Actor) -> Result<Broadcast, Refusal> {
        let (history, _) = commands::load(&self.store, &bevents::stream_for(id)).await?;
        Broadcast::fold(&history)
            .filter(|b| b.visible_to(actor))
            .ok_or_else(|| {
                Refusal::not_found(format!("no broadcast {id} that you can see; check the id"))
            })
    }

    async fn issue(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_ISSUE, "issue broadcasts")?;
        let body: IssueBody =
            events::codec::from_value(cmd.body.clone()).map_err(Refusal::invalid)?;
        if let Some(deadline) = body.ack_deadline
            && deadline <= self.options.clock.now()
        {
            return Err(Refusal::invalid(
                "ack_deadline: is already past; give a time to come (RFC 3339, e.g. 2026-11-27T18:00:00Z)",
            ));
        }
        let recipients = self
            .register
            .caught_up()?
            .recipients(&body.audience, body.exercise)?;
        let original = match body.updates {
            Some(o) => Some(self.load(o, &cmd.actor).await?),
            None => None,
        };
        let issued = BroadcastIssued {
            title: body.title,
            body: body.body,
            severity: body.severity,
            audience: body.audience,
            requires_ack: body.requires_ack,
            ack_deadline: body.ack_deadline,
            exercise: body.exercise,
            updates: body.updates,
            cancels: None,
            recipients,
            rule: None,
        };
        let stream = bevents::stream_for(cmd.id);
        commands::execute(&self.store, &stream, &cmd, |history| {
            if !history.is_empty() {
                return Err(Refusal::new(
                    RefusalCode::IdReused,
                    "this broadcast id is taken; issue it with a new id",
                ));
            }
            broadcast::decide_issue(&cmd.actor, issued.clone(), original.as_ref())
        })
        .await
    }

    async fn transition(
        &self,
        payload: &[u8],
        decide: fn(&Broadcast, &Actor) -> Result<Vec<DomainEvent>, Refusal>,
    ) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let id = cmd.body.broadcast;
        if !cmd.body.change.is_null() && cmd.body.change != Value::Object(Default::default()) {
            return Err(Refusal::invalid("change: this command takes no fields"));
        }
        self.decide_on(id, &cmd, decide).await
    }

    /// `ack` over the command subject.
    async fn ack_command(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        if !cmd.body.change.is_null() && cmd.body.change != Value::Object(Default::default()) {
            return Err(Refusal::invalid("change: this command takes no fields"));
        }
        self.ack(cmd.body.broadcast, &cmd).await
    }

    /// An agency's acknowledgement, decided on the register (no re-read of a stream the
    /// scheduler keeps writing to) and stored under one id per broadcast and agency, so a
    /// second acknowledgement of the same agency — a retry, or a race — is stored once.
    async fn ack<T>(&self, id: Uuid, cmd: &Command<T>) -> Result<Written, Refusal> {
        let known = self.register.caught_up()?.broadcasts.get(&id).cloned();
        let b = match known {
            Some(b) => b,
            // Issued a moment ago and not folded yet: read it.
            None => self.load(id, &cmd.actor).await?,
        };
        let agency = cmd.actor.agency.clone().unwrap_or_default();
        let event_id = broadcast::ack_id(id, &agency);
        let stream = bevents::stream_for(id);
        // The same focal point again (a retry, a second click): the first answer.
        if let Some(ack) = b.acks.get(&agency)
            && ack.by == cmd.actor.user
            && let Some(link) = b.chain.iter().find(|l| l.event_id == event_id)
        {
            return Ok(Written {
                stream,
                event_id,
                position: link.position,
                stream_version: b.version,
                duplicate: true,
            });
        }
        let events = broadcast::decide_ack(&b, &cmd.actor)?;
        let events = events
            .iter()
            .map(|e| e.try_to_new_event(event_id, cmd.meta()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = AppendRequest {
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events,
        };
        let ok = self
            .store
            .append_retrying(&request, STORE_DEADLINE)
            .await
            .map_err(|e| match store_refusal(e) {
                // Same id, other content: another focal point of the agency was first.
                r if r.code == RefusalCode::IdReused => {
                    Refusal::conflict(format!("{agency} already acknowledged this broadcast"))
                }
                r => r,
            })?;
        Ok(Written {
            stream,
            event_id,
            position: ok.first_position,
            stream_version: ok.stream_version,
            duplicate: ok.duplicate,
        })
    }

    async fn decide_on<T>(
        &self,
        id: Uuid,
        cmd: &Command<T>,
        decide: fn(&Broadcast, &Actor) -> Result<Vec<DomainEvent>, Refusal>,
    ) -> Result<Written, Refusal> {
        commands::execute(&self.store, &bevents::stream_for(id), cmd, |history| {
            let b = Broadcast::fold(history).ok_or_else(|| {
                Refusal::not_found(format!("no broadcast {id} that you can see; check the id"))
            })?;
            decide(&b, &cmd.actor)
        })
        .await
    }

    async fn cancel(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        cmd.actor
            .may(policy::BROADCAST_ISSUE, "cancel broadcasts")?;
        let body: CancelBody =
            events::codec::from_value(cmd.body.change.clone()).map_err(Refusal::invalid)?;
        events::validate::non_blank("reason", &body.reason, events::domain::MAX_REASON)
            .map_err(|e| Refusal::invalid(e.to_string()))?;
        let original_id = cmd.body.broadcast;
        let original = self.load(original_id, &cmd.actor).await?;
        let stream = bevents::stream_for(cmd.id);
        let (mine, _) = commands::load(&self.store, &stream).await?;
        let written = match mine.first() {
            // A retry: the cancelling broadcast is there; make sure the original says so.
            Some(first) if first.id == cmd.id => Written {
                stream: stream.clone(),
                event_id: cmd.id,
                position: first.position,
                stream_version: first.version,
                duplicate: true,
            },
            Some(_) => {
                return Err(Refusal::new(
                    RefusalCode::IdReused,
                    "this id is taken; cancel with a new id",
                ));
            }
            None if original.status() == Status::AwaitingApproval
                || original.chain.iter().any(|l| l.event_id == cmd.id) =>
            {
                // Never sent: withdraw it, and tell nobody (no agency has seen it).
                let withdrawn = BroadcastCancelled {
                    reason: body.reason.clone(),
                    by_broadcast: None,
                };
                return commands::execute(
                    &self.store,
                    &bevents::stream_for(original_id),
                    &cmd,
                    |history| match Broadcast::fold(history) {
                        Some(b) if b.status() == Status::AwaitingApproval => {
                            Ok(vec![withdrawn.clone().into()])
                        }
                        _ => Err(Refusal::conflict(
                            "this broadcast was approved or cancelled meanwhile; reload it",
                        )),
                    },
                )
                .await;
            }
            None => {
                if original.cancelled.is_some() {
                    return Err(Refusal::conflict("this broadcast is already cancelled"));
                }
                let title: String = format!("CANCELLED: {}", original.issued.title)
                    .chars()
                    .take(bevents::MAX_TITLE)
                    .collect();
                let issued = BroadcastIssued {
                    title,
                    body: body.reason.clone(),
                    severity: original.issued.severity,
                    audience: original.issued.audience.clone(),
                    requires_ack: false,
                    ack_deadline: None,
                    exercise: original.issued.exercise,
                    updates: None,
                    cancels: Some(original_id),
                    recipients: original.issued.recipients.clone(),
                    rule: None,
                };
                commands::execute(&self.store, &stream, &cmd, |_| {
                    broadcast::decide_issue(&cmd.actor, issued.clone(), Some(&original))
                })
                .await?
            }
        };
        let cancelled = DomainEvent::from(BroadcastCancelled {
            reason: body.reason,
            by_broadcast: Some(cmd.id),
        });
        let mut meta = cmd.meta();
        meta.causation_id = Some(cmd.id);
        let event = cancelled.try_to_new_event(Uuid::new_v5(&cmd.id, b"cancelled"), meta)?;
        let request = AppendRequest {
            stream: bevents::stream_for(original_id),
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        self.store
            .append_retrying(&request, STORE_DEADLINE)
            .await
            .map_err(store_refusal)?;
        Ok(written)
    }

    async fn get(&self, payload: &[u8]) -> Result<View, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let b = self.load(cmd.body.broadcast, &cmd.actor).await?;
        let superseded = self
            .register
            .read()?
            .superseded
            .get(&cmd.body.broadcast)
            .copied();
        Ok(view(&b, superseded, &cmd.actor))
    }

    async fn chain(&self, payload: &[u8]) -> Result<Chain, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let b = self.load(cmd.body.broadcast, &cmd.actor).await?;
        let (events, other_agencies) = b.chain_for(&cmd.actor);
        Ok(Chain {
            trigger: b.issued.rule.as_ref().map(|f| f.trigger),
            references: b.issued.updates.or(b.issued.cancels),
            events,
            other_agencies,
        })
    }

    async fn cap(&self, payload: &[u8]) -> Result<String, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        // A focal point's alert addresses its own agency only.
        let b = self
            .load(cmd.body.broadcast, &cmd.actor)
            .await?
            .cut_for(&cmd.actor);
        let register = self.register.read()?;
        let alert = self.cap_alert(&b, &register);
        cap::alert_xml(&alert).map_err(|e| Refusal::unavailable(e.to_string()))
    }

    fn cap_alert<'a>(&'a self, b: &'a Broadcast, register: &Register) -> cap::CapAlert<'a> {
        let references = b
            .issued
            .updates
            .or(b.issued.cancels)
            .and_then(|o| register.broadcasts.get(&o).map(|o| (o.id, o.issued_at)));
        cap::CapAlert {
            id: b.id,
            sender: &self.options.config.sender,
            sent: b.issued_at,
            issued: &b.issued,
            references,
        }
    }

    fn list(&self, payload: &[u8]) -> Result<events::page::Page<View>, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let status = match cmd.body.status.as_deref() {
            None => None,
            Some("awaiting_approval") => Some(Status::AwaitingApproval),
            Some("live") => Some(Status::Live),
            Some("cancelled") => Some(Status::Cancelled),
            Some(_) => {
                return Err(Refusal::invalid(
                    "status: one of awaiting_approval, live, cancelled",
                ));
            }
        };
        let register = self.register.caught_up()?;
        let found: Vec<&Broadcast> = register
            .broadcasts
            .values()
            .filter(|b| b.visible_to(&cmd.actor))
            .filter(|b| status.is_none_or(|s| b.status() == s))
            .filter(|b| cmd.body.caused_by.is_none_or(|e| b.caused_by(e)))
            .collect();
        events::page::newest_first(
            found,
            |b| b.position,
            events::page::PageQuery::new(cmd.body.limit, cmd.body.cursor),
            register.position,
            |b| view(b, register.superseded.get(&b.id).copied(), &cmd.actor),
        )
    }

    /// An agency's CAP feed (newest first, at most 100 alerts), or the public feed.
    fn feed(&self, payload: &[u8]) -> Result<String, Refusal> {
        let cmd: Command<FeedQuery> = commands::decode(payload)?;
        let public = cmd.actor.role == Role::WallScreen;
        let agency = match cmd.actor.role {
            Role::WallScreen => None,
            Role::AgencyFocalPoint => {
                let own = cmd.actor.agency.clone().ok_or_else(|| {
                    Refusal::forbidden("your account names no agency; ask an admin")
                })?;
                if cmd.body.agency.as_ref().is_some_and(|a| *a != own) {
                    return Err(Refusal::forbidden(
                        "you may read your own agency's feed only",
                    ));
                }
                Some(own)
            }
            _ => {
                cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
                Some(cmd.body.agency.clone().ok_or_else(|| {
                    Refusal::invalid("agency: name the agency whose feed to read")
                })?)
            }
        };
        let register = self.register.caught_up()?;
        let chosen: Vec<Broadcast> = register
            .order
            .iter()
            .rev()
            .filter_map(|id| register.broadcasts.get(id))
            .filter(|b| b.status() != Status::AwaitingApproval)
            .filter(|b| match &agency {
                Some(a) => b.issued.recipients.contains(a),
                None => public && b.issued.audience == Audience::AllAgencies,
            })
            .take(100)
            .map(|b| b.cut_for(&cmd.actor))
            .collect();
        let alerts: Vec<cap::CapAlert<'_>> = chosen
            .iter()
            .map(|b| self.cap_alert(b, &register))
            .collect();
        let (feed_id, title) = match &agency {
            Some(a) => (
                format!("urn:vigil:cap:{a}"),
                format!("Vigil alerts for {a}"),
            ),
            None => (
                "urn:vigil:cap:public".to_owned(),
                "Vigil all-agency alerts".to_owned(),
            ),
        };
        let updated = chosen
            .first()
            .map_or(OffsetDateTime::UNIX_EPOCH, |b| b.issued_at);
        cap::feed_xml(&feed_id, &title, updated, &alerts)
            .map_err(|e| Refusal::unavailable(e.to_string()))
    }

    /// Acknowledgements from agency systems on `vigil.alerts.<agency>.ack`.
    async fn nats_acks(self: Arc<Self>, shutdown: CancellationToken) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NatsAck {
            broadcast: Uuid,
            by: String,
            #[serde(default)]
            id: Option<Uuid>,
        }
        let mut sub = loop {
            match self
                .client
                .queue_subscribe(events::subjects::ALERT_ACKS, format!("vigil-{SERVICE}"))
                .await
            {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to acknowledgements; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = sub.next() => match m { Some(m) => m, None => return },
            };
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let agency = msg.subject.split('.').nth(2).unwrap_or_default().to_owned();
            let outcome = match events::codec::decode_json::<NatsAck>(
                &msg.payload,
                "the acknowledgement",
                4096,
            ) {
                Err(e) => Err(Refusal::invalid(e.to_string())),
                Ok(ack) => match events::validate::id("by", &ack.by) {
                    Err(e) => Err(Refusal::invalid(e.to_string())),
                    Ok(()) => {
                        let cmd = Command {
                            id: ack.id.unwrap_or_else(Uuid::new_v4),
                            actor: Actor {
                                user: ack.by,
                                role: Role::AgencyFocalPoint,
                                scope: None,
                                agency: Some(agency),
                            },
                            source: "nats".to_owned(),
                            correlation_id: None,
                            body: (),
                        };
                        self.ack(ack.broadcast, &cmd).await
                    }
                },
            };
            if let Err(e) = self.client.publish(reply_to, reply(outcome).into()).await {
                tracing::warn!(error = %e, "could not answer an acknowledgement");
            }
        }
    }

    /// Finds due work every tick (or when the clock is moved) and does it.
    async fn schedule(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let moved = async {
                match self.options.clock.moved() {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.options.tick) => {}
                _ = moved => {}
            }
            let Some((firings, suppressions, work)) = self.due_now() else {
                continue;
            };
            for (id, p) in firings {
                self.fire(id, p).await;
            }
            for (id, s) in suppressions {
                self.suppress(id, s).await;
            }
            // Concurrently: the store commits concurrent appends in one group (one fsync).
            futures::stream::iter(work)
                .for_each_concurrent(RECORD_CONCURRENCY, |(b, w, recipient)| {
                    self.record(b, w, recipient)
                })
                .await;
        }
    }

    /// The rule firings and the work due now, once the register has read the log (before
    /// that, work it does not know about yet may be done already).
    fn due_now(&self) -> Option<Due> {
        let due = {
            let register = self.register.caught_up().ok()?;
            self.due(&register)
        };
        if let Ok(mut register) = self.register.write() {
            settle(&mut register);
            let now = self.options.clock.now();
            let window =
                time::Duration::minutes(i64::from(self.options.config.fire_within_minutes));
            register.pending.retain(|id, p| {
                let fresh = p.trigger_at + window >= now;
                if !fresh {
                    tracing::info!(broadcast = %id, trigger = %p.trigger, "a rule's trigger is older than fire_within_minutes: not fired");
                }
                fresh
            });
            register
                .suppressions
                .retain(|_, s| s.trigger_at + window >= now);
            if let Ok(mut done) = self.done.lock() {
                let damping: HashSet<Uuid> = register
                    .suppressions
                    .values()
                    .map(|s| s.broadcast)
                    .collect();
                done.retain(|id, _| {
                    register.active.contains(id)
                        || register.pending.contains_key(id)
                        || damping.contains(id)
                });
            }
        }
        Some(due)
    }

    /// The rule firings and the work due now.
    fn due(&self, register: &Register) -> Due {
        let now = self.options.clock.now();
        let config = &self.options.config;
        let window = time::Duration::minutes(i64::from(config.fire_within_minutes));
        let Ok(done) = self.done.lock() else {
            return (vec![], vec![], vec![]);
        };
        let is_done = |b: &Uuid, w: &Uuid| done.get(b).is_some_and(|d| d.contains(w));
        let firings = register
            .pending
            .iter()
            .filter(|(id, p)| p.trigger_at + window >= now && !is_done(id, id))
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        // Recorded once the broadcast that damped them is in the log (its stream exists).
        let suppressions = register
            .suppressions
            .iter()
            .filter(|(id, s)| {
                s.trigger_at + window >= now
                    && register.broadcasts.contains_key(&s.broadcast)
                    && !is_done(&s.broadcast, id)
            })
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        let retry = config.delivery.retry();
        let channels = |agency: &str| channels_of(config, agency);
        let mut work = Vec::new();
        for id in &register.active {
            let Some(b) = register.broadcasts.get(id) else {
                continue;
            };
            let superseded = register.superseded.contains_key(id);
            let mut shared = None;
            for w in broadcast::plan(b, now, &retry, &channels) {
                if superseded && matches!(w, Work::Resend(_) | Work::Escalate(_)) {
                    continue;
                }
                if is_done(id, &w.event_id(*id)) {
                    continue;
                }
                let b = shared.get_or_insert_with(|| Arc::new(b.clone())).clone();
                work.push((*id, w, Some(b)));
            }
        }
        (firings, suppressions, work)
    }

    /// Records a damped trigger on the broadcast that damped it (once, under the id its
    /// firing would have had).
    async fn suppress(&self, id: Uuid, s: Suppression) {
        let rule = s.event.rule.clone();
        let trigger = s.event.trigger;
        let event = DomainEvent::from(s.event);
        if let Some(new) = self
            .append_caused(s.broadcast, id, event, Some(trigger))
            .await
        {
            if new {
                metrics::counter!("vigil_broadcast_rule_suppressed_total").increment(1);
                tracing::info!(broadcast = %s.broadcast, %rule, %trigger, "rule firing damped");
            }
            self.mark_done(s.broadcast, id);
        }
    }

    /// Appends a rule's broadcast (once, whoever else tries).
    async fn fire(&self, id: Uuid, p: Pending) {
        let meta = system_meta("rule", Some(p.trigger), p.correlation_id);
        let rule = p.issued.rule.as_ref().map(|f| f.rule.clone());
        let event = match DomainEvent::from(p.issued).try_to_new_event(id, meta) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e.message, ?rule, "a rule built an invalid broadcast; fix the rule");
                self.mark_done(id, id);
                return;
            }
        };
        let request = AppendRequest {
            stream: bevents::stream_for(id),
            expected_version: ExpectedVersion::NoStream,
            events: vec![event],
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => {
                if !ok.duplicate {
                    metrics::counter!("vigil_broadcast_rule_firings_total").increment(1);
                    tracing::info!(%id, ?rule, trigger = %p.trigger, "rule fired");
                }
                self.mark_done(id, id);
            }
            Err(runtime::store_client::ClientError::Store(e))
                if matches!(
                    e.code,
                    events::ErrorCode::IdReused | events::ErrorCode::WrongExpectedVersion
                ) =>
            {
                // Another instance fired it first from a register that differed (an agency
                // registered at the same moment): it fired once, which is what matters.
                tracing::info!(%id, ?rule, "rule already fired");
                self.mark_done(id, id);
            }
            Err(e) => tracing::warn!(error = %e, %id, "could not record a rule firing; will retry"),
        }
    }

    fn mark_done(&self, broadcast: Uuid, work: Uuid) {
        if let Ok(mut d) = self.done.lock() {
            d.entry(broadcast).or_default().insert(work);
        }
    }

    /// Records `work` under its fixed id; if this instance's append was the new one, acts.
    async fn record(self: &Arc<Self>, id: Uuid, work: Work, b: Option<Arc<Broadcast>>) {
        let event_id = work.event_id(id);
        let event: DomainEvent = match &work {
            Work::Attempt((agency, channel, round), attempt) => BroadcastDeliveryAttempted {
                agency: agency.clone(),
                channel: *channel,
                round: *round,
                attempt: *attempt,
            }
            .into(),
            Work::Abandon((agency, channel, round), attempt) => BroadcastDeliveryFailed {
                agency: agency.clone(),
                channel: *channel,
                round: *round,
                attempt: *attempt,
                error: "no outcome was recorded: the instance making the attempt stopped"
                    .to_owned(),
                gave_up: true,
            }
            .into(),
            Work::Resend(agencies) => BroadcastResent {
                agencies: agencies.clone(),
            }
            .into(),
            Work::Escalate(agencies) => BroadcastEscalated {
                reason: format!(
                    "{} of {} agencies had not acknowledged by the deadline",
                    agencies.len(),
                    b.as_ref().map_or(0, |b| b.issued.recipients.len())
                ),
                agencies: agencies.clone(),
            }
            .into(),
        };
        let Some(new) = self.append(id, event_id, event).await else {
            return;
        };
        self.mark_done(id, event_id);
        if !new {
            return; // another instance recorded it first and acts on it
        }
        match work {
            Work::Attempt(key, attempt) => {
                let Some(b) = b else { return };
                let Ok(permit) = self.deliveries.clone().acquire_owned().await else {
                    return;
                };
                let service = self.clone();
                tokio::spawn(async move {
                    service.attempt(&b, key, attempt, event_id).await;
                    drop(permit);
                });
            }
            Work::Escalate(agencies) => {
                metrics::counter!("vigil_broadcast_escalations_total").increment(1);
                tracing::warn!(broadcast = %id, silent = agencies.len(), "broadcast escalated");
            }
            Work::Resend(_) | Work::Abandon(..) => {}
        }
    }

    /// Appends one system event to broadcast `id`'s stream: `Some(true)` if it is new,
    /// `Some(false)` if it was there, `None` if the store could not take it (retried later).
    async fn append(&self, id: Uuid, event_id: Uuid, event: DomainEvent) -> Option<bool> {
        self.append_caused(id, event_id, event, None).await
    }

    async fn append_caused(
        &self,
        id: Uuid,
        event_id: Uuid,
        event: DomainEvent,
        causation: Option<Uuid>,
    ) -> Option<bool> {
        let meta = system_meta("scheduler", causation.or(Some(id)), None);
        let event = match event.try_to_new_event(event_id, meta) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e.message, "invalid broadcast event; not recorded");
                return None;
            }
        };
        let request = AppendRequest {
            stream: bevents::stream_for(id),
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => Some(!ok.duplicate),
            Err(e) => {
                tracing::warn!(error = %e, broadcast = %id, "could not record broadcast work; will retry");
                None
            }
        }
    }

    /// Makes delivery attempt `attempt` and records its outcome.
    async fn attempt(&self, b: &Broadcast, key: Key, attempt: u32, claim: Uuid) {
        let (agency, channel, round) = &key;
        let message = Message::new(b.id, &b.issued, agency, *round);
        let config = &self.options.config;
        let outcome = match channel {
            Channel::Nats => {
                deliver::over_nats(
                    &self.client,
                    &message,
                    Duration::from_millis(config.delivery.timeout_ms),
                )
                .await
            }
            Channel::Webhook => match config.agencies.get(agency) {
                Some(rules::Endpoint {
                    webhook: Some(url),
                    secret: Some(secret),
                    ..
                }) => {
                    deliver::over_webhook(
                        &self.http,
                        url,
                        secret,
                        &message,
                        self.options.clock.now(),
                        Duration::from_millis(config.delivery.timeout_ms),
                    )
                    .await
                }
                _ => Err("no webhook is configured for this agency any more".to_owned()),
            },
            Channel::Cap => Err("the CAP feed is read by agencies, not sent".to_owned()),
        };
        let delivered = outcome.is_ok();
        let event: DomainEvent = match outcome {
            Ok(()) => BroadcastDelivered {
                agency: agency.clone(),
                channel: *channel,
                attempt,
                round: *round,
            }
            .into(),
            Err(error) => {
                let gave_up = attempt >= config.delivery.attempts;
                if gave_up {
                    metrics::counter!("vigil_broadcast_delivery_failures_total").increment(1);
                    tracing::warn!(broadcast = %b.id, %agency, channel = channel.as_str(), %error, "delivery failed; giving up");
                }
                BroadcastDeliveryFailed {
                    agency: agency.clone(),
                    channel: *channel,
                    round: *round,
                    attempt,
                    error,
                    gave_up,
                }
                .into()
            }
        };
        let id = broadcast::outcome_id(b.id, &key, attempt, delivered);
        // Not recorded (store down): the claim times out and the attempt is made again.
        let _ = self.append_caused(b.id, id, event, Some(claim)).await;
    }
}

/// An agency's channels: NATS unless its endpoint says otherwise, a webhook where one is
/// configured.
fn channels_of(config: &Config, agency: &str) -> Vec<Channel> {
    let endpoint = config.agencies.get(agency);
    let mut c = Vec::with_capacity(2);
    if endpoint.is_none_or(|e| e.nats) {
        c.push(Channel::Nats);
    }
    if endpoint.is_some_and(|e| e.webhook.is_some()) {
        c.push(Channel::Webhook);
    }
    c
}

/// Forgets broadcasts with nothing left to do (kept in the register for reads; a new event
/// of theirs makes them active again).
fn settle(register: &mut Register) {
    let config = register.config.clone();
    let channels = |agency: &str| channels_of(&config, agency);
    let broadcasts = &register.broadcasts;
    register.active.retain(|id| {
        broadcasts
            .get(id)
            .is_some_and(|b| !broadcast::settled(b, &channels))
    });
}
