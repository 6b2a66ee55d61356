//! `vigil-bench broadcast`: one all-agency broadcast to N agencies whose webhooks this bench
//! serves on loopback (issue #7): the time from the second duty officer's approval to every
//! agency's webhook, to every agency's acknowledgement answered 200, and to the broadcast's
//! own view (`GET /api/v1/broadcasts/{id}`) reporting every agency delivered and
//! acknowledged; beside a peer measured in the same run.
//!
//! # One Vigil round
//! - The webhook receiver (axum, on the host and port of the configuration's webhooks,
//!   `http://127.0.0.1:<port>/hook/<agency>`) checks every request: the agency is one of the
//!   configuration's, `X-Vigil-Signature` verifies under that agency's secret
//!   (`vigil_broadcast::deliver::verify`, 300 s tolerance), the body is a `Message` for that
//!   agency and `X-Vigil-Delivery` is `<broadcast>/<agency>`. A failed check is answered 4xx
//!   and counted (the run fails if a signature does not verify). The first delivery of the
//!   round's broadcast to each agency is timed on arrival; later ones are counted as
//!   duplicates; deliveries of another broadcast (an earlier round) as stray.
//! - `POST /api/v1/broadcasts` with the issuing duty officer's token: `{"id": <uuid>, "title",
//!   "body" (~600 characters), "severity": "high", "audience": "all_agencies",
//!   "requires_ack": true, "ack_deadline": <an hour ahead>}` → 201. Its view is read once to
//!   check that it went to all N agencies. Then `POST /api/v1/broadcasts/{id}/approve` with the
//!   second duty officer's token → 200: **t0 is the arrival of that 200** (a webhook that
//!   comes before it counts as 0 ms).
//! - Each simulated focal point acknowledges as soon as its agency's webhook arrives (the
//!   receiver triggers it): `POST /api/v1/broadcasts/{id}/ack` `{"id": <uuid>}` with the
//!   agency's focal-point token, on one shared keep-alive client (reqwest, as Vigil's sender).
//!   A 409 "too many changes at the same moment", a 408/429/5xx or a transport error is retried
//!   with the same id (so at most one acknowledgement is stored) after a jittered backoff of
//!   10 ms doubling to 500 ms, up to `--ack-attempts`; each retry is counted.
//! - A poller reads `GET /api/v1/broadcasts/{id}` every `--poll-ms` from t0 until the view
//!   reports `delivered == N`, every agency delivered over its webhook, and `acknowledged ==
//!   N`; each figure is the arrival of the first answer that shows it (an upper bound, late by
//!   at most one period plus one GET).
//! - `vigil up`'s `/metrics` and `/proc` are read before the issue and after the round (the
//!   broadcast service's commands, store commits, CPU per process).
//! - The round ends when every agency was reached and the view shows them delivered, every
//!   acknowledgement was answered 200 or given up on, and the view shows every one answered
//!   200 (or after `--round-timeout`). `--no-acks` (an experiment) leaves the acknowledgements
//!   out, to time the deliveries alone.
//!
//! # One peer round
//! The same N messages (`Message::new` of a broadcast with the same title, body, severity and
//! deadline, so the same bytes but for the broadcast id) POSTed by this bench with
//! `vigil_broadcast::deliver::over_webhook` — the service's own send: `sign`, the same headers,
//! the configured timeout — on a reqwest client built as the service builds its own, with at
//! most `vigil_broadcast::MAX_DELIVERIES` (256) in flight, all started at t0. The same receiver
//! checks and times them, and triggers the same acknowledgements, this time to a trivial axum
//! handler in this process (`POST /api/v1/broadcasts/{id}/ack`: checks there is a bearer token
//! and a JSON body, answers 200 with a body shaped like the gateway's). Between the two lies
//! what Vigil adds on top of loopback HTTP: the approval's path to the scheduler, claiming
//! every delivery attempt in the log before making it and recording every outcome, and for
//! each acknowledgement the gateway, the command over NATS, reading and folding the
//! broadcast's stream and appending with its version.
//!
//! # What it promises
//! Figures are wall-clock times on this machine, with vigil-bench, `vigil up` and its
//! nats-server sharing its cores; the peer's sender and receiver share the bench process.
//! Every round is a fresh broadcast. Nothing is retried silently: retries, duplicates, stray
//! and failed deliveries and failed acknowledgements are printed.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity};
use hdrhistogram::Histogram;
use rand::Rng as _;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use uuid::Uuid;
use vigil_broadcast::deliver::{self, DELIVERY_HEADER, Message, SIGNATURE_HEADER};
use vigil_broadcast::rules::Config;

use crate::driver::Tally;
use crate::load::{self, Procs, Server, ServerSide, Watch, lock, micros, new_histogram};
use crate::report::thousands;
use crate::util::{self, NatsArgs, fmt_ms};

/// Seconds a webhook signature's `t` may be off (the receiver's replay window).
const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Largest body the receiver and the peer's ack handler read.
const MAX_BODY: usize = 64 * 1024;

/// Flags of `vigil-bench broadcast`.
#[derive(Debug, Clone, clap::Args)]
pub struct BroadcastArgs {
    /// Rounds; each is one fresh all-agency broadcast through Vigil, then the same messages
    /// through the peer.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Systems, in this order within each round.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vigil,peer")]
    systems: Vec<Server>,
    /// The broadcast configuration `vigil up` runs with (`VIGIL_BROADCAST_CONFIG`): its agencies
    /// with a webhook are the recipients; every webhook must be served by this bench, on one
    /// host and port, at `/hook/<agency>`.
    #[arg(long)]
    config: PathBuf,
    /// The focal points' tokens: one `<agency> <token>` line per agency (`vigil token create
    /// --role agency_focal_point --agency <agency>`).
    #[arg(long)]
    focal_tokens: PathBuf,
    /// The duty officer who issues (`vigil token create --role duty_officer`).
    #[arg(long, env = "VIGIL_BENCH_ISSUER_TOKEN", hide_env_values = true)]
    issuer_token: String,
    /// A second duty officer, who approves (another label than the issuer's).
    #[arg(long, env = "VIGIL_BENCH_APPROVER_TOKEN", hide_env_values = true)]
    approver_token: String,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http_url: String,
    // Only for the nats-server's PID (CPU figures), through --data-dir.
    #[command(flatten)]
    nats: NatsArgs,
    /// `vigil up`'s Prometheus page (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    metrics_url: Option<String>,
    /// PID of the `vigil up` process (CPU time).
    #[arg(long)]
    vigil_pid: Option<u32>,
    /// Milliseconds between two reads of the broadcast's view.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Seconds a round may take from t0 before the bench gives up on what is missing.
    #[arg(long, default_value_t = 120)]
    round_timeout: u64,
    /// Seconds before one HTTP request of the bench counts as unanswered.
    #[arg(long, default_value_t = 20)]
    request_timeout: u64,
    /// Attempts per acknowledgement (a retryable answer is tried again, same id).
    #[arg(long, default_value_t = 40)]
    ack_attempts: u32,
    /// An experiment: the focal points do not acknowledge (the rounds time the deliveries
    /// alone, without the acknowledgements' load on the same broadcast).
    #[arg(long)]
    no_acks: bool,
    /// Seconds of quiet between rounds.
    #[arg(long, default_value_t = 2)]
    pause: u64,
}

/// What `vigil up` is read for, beyond the store and the gateway.
const WATCH: Watch = Watch {
    commands: &[
        (
            "broadcast",
            "issue",
            "broadcast service, `issue` (resolve recipients, append)",
        ),
        (
            "broadcast",
            "approve",
            "broadcast service, `approve` (read stream, decide, append)",
        ),
        (
            "broadcast",
            "ack",
            "broadcast service, `ack` (read + fold the stream, decide, append with its version; retried on a race)",
        ),
        (
            "broadcast",
            "get",
            "broadcast service, `get` (read + fold the whole stream: the poller)",
        ),
    ],
    consumers: &["broadcast"],
};

// ------------------------------------------------------------------------------------------
// The agencies

/// One recipient: its id, webhook and secret (from the configuration), its focal point's
/// token.
struct Agency {
    id: String,
    url: String,
    secret: String,
    token: String,
}

/// The agencies with a webhook in `config`, with their tokens from `tokens` (`<agency>
/// <token>` lines), and the `host:port` every webhook points at.
fn agencies(config: &Config, tokens: &str) -> anyhow::Result<(Vec<Agency>, String)> {
    let mut by_agency: HashMap<&str, &str> = HashMap::new();
    for (n, line) in tokens.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(t), None) => {
                by_agency.insert(a, t);
            }
            _ => bail!("focal tokens, line {}: expected `<agency> <token>`", n + 1),
        }
    }
    let mut listen: Option<String> = None;
    let mut out = Vec::new();
    for (id, endpoint) in &config.agencies {
        let (Some(url), Some(secret)) = (&endpoint.webhook, &endpoint.secret) else {
            continue;
        };
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("agency {id}: webhook {url} is not http:// (the bench serves plain HTTP)")
        })?;
        let (host, path) = rest
            .split_once('/')
            .with_context(|| format!("agency {id}: webhook {url} has no path"))?;
        if path != format!("hook/{id}") {
            bail!("agency {id}: webhook {url} must end in /hook/{id}");
        }
        match &listen {
            None => listen = Some(host.to_owned()),
            Some(l) if l == host => {}
            Some(l) => bail!("the webhooks point at {l} and {host}: the bench serves one address"),
        }
        let token = by_agency
            .get(id.as_str())
            .with_context(|| format!("no focal-point token for agency {id}"))?;
        out.push(Agency {
            id: id.clone(),
            url: url.clone(),
            secret: secret.clone(),
            token: (*token).to_owned(),
        });
    }
    let listen = listen.context("the configuration has no agency with a webhook")?;
    Ok((out, listen))
}

// ------------------------------------------------------------------------------------------
// The webhook receiver

/// One round's broadcast as the receiver sees it.
struct Round {
    /// The broadcast whose deliveries are timed.
    broadcast: Uuid,
    /// First arrival per agency (index into the agencies).
    arrivals: Mutex<Vec<Option<Instant>>>,
    /// Agencies reached.
    received: AtomicUsize,
    /// Deliveries after the first, per agency.
    duplicates: AtomicU64,
    /// Tells the acknowledging focal points which agency was reached.
    trigger: mpsc::UnboundedSender<usize>,
}

impl Round {
    fn new(broadcast: Uuid, n: usize, trigger: mpsc::UnboundedSender<usize>) -> Self {
        Self {
            broadcast,
            arrivals: Mutex::new(vec![None; n]),
            received: AtomicUsize::new(0),
            duplicates: AtomicU64::new(0),
            trigger,
        }
    }
}

/// The webhook receiver's state.
struct Receiver {
    /// Agency id → index.
    index: HashMap<String, usize>,
    /// Secrets by index.
    secrets: Vec<Vec<u8>>,
    /// The round being timed, if any.
    round: Mutex<Option<Arc<Round>>>,
    /// Requests whose signature did not verify (must stay 0).
    invalid: AtomicU64,
    /// Valid deliveries of another broadcast than the round's.
    stray: AtomicU64,
    /// Every refused or stray request, by kind.
    problems: Mutex<BTreeMap<String, Tally>>,
}

impl Receiver {
    fn problem(&self, kind: &str, detail: String) {
        let mut m = lock(&self.problems);
        let t = m.entry(kind.to_owned()).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }

    /// Checks and times one webhook request for `agency`, arrived at `now`.
    fn take(&self, agency: &str, headers: &HeaderMap, body: &[u8], now: Instant) -> StatusCode {
        let Some((&i, secret)) = self
            .index
            .get(agency)
            .and_then(|i| Some((i, self.secrets.get(*i)?)))
        else {
            self.problem("unknown agency (404)", agency.chars().take(64).collect());
            return StatusCode::NOT_FOUND;
        };
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let unix = OffsetDateTime::now_utc().unix_timestamp();
        if !deliver::verify(secret, signature, body, unix, SIGNATURE_TOLERANCE_S) {
            self.invalid.fetch_add(1, Ordering::Relaxed);
            self.problem(
                "invalid signature (401)",
                format!("agency {agency}, header {signature:?}"),
            );
            return StatusCode::UNAUTHORIZED;
        }
        let message: Message = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                self.problem("unreadable message (400)", format!("agency {agency}: {e}"));
                return StatusCode::BAD_REQUEST;
            }
        };
        let key = headers
            .get(DELIVERY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if message.agency != agency || key != format!("{}/{agency}", message.broadcast) {
            self.problem(
                "message for another agency or wrong delivery key (400)",
                format!(
                    "path agency {agency}, message agency {}, key {key:?}",
                    message.agency
                ),
            );
            return StatusCode::BAD_REQUEST;
        }
        let round = lock(&self.round).clone();
        match round {
            Some(r) if r.broadcast == message.broadcast => {
                let first = {
                    let mut arrivals = lock(&r.arrivals);
                    match arrivals.get_mut(i) {
                        Some(slot) if slot.is_none() => {
                            *slot = Some(now);
                            true
                        }
                        _ => false,
                    }
                };
                if first {
                    r.received.fetch_add(1, Ordering::Relaxed);
                    // The focal point's acknowledgement; nobody listens after the round.
                    let _ = r.trigger.send(i);
                } else {
                    r.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.stray.fetch_add(1, Ordering::Relaxed);
                self.problem(
                    "delivery of a broadcast outside its round (answered 200)",
                    format!(
                        "broadcast {}, agency {agency}, round {}",
                        message.broadcast, message.round
                    ),
                );
            }
        }
        StatusCode::OK
    }
}

async fn hook(
    State(receiver): State<Arc<Receiver>>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    receiver.take(&agency, &headers, &body, now)
}

/// The peer's acknowledgement handler: a bearer token and a JSON object, answered 200 with a
/// body shaped like the gateway's.
async fn peer_ack(
    State(count): State<Arc<AtomicU64>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme in any case (RFC 7235), as the gateway reads it.
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        });
    if !bearer {
        return (StatusCode::UNAUTHORIZED, "{}".to_owned());
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "{}".to_owned());
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return (StatusCode::NOT_FOUND, "{}".to_owned());
    };
    let event_id = fields
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(Uuid::new_v4);
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = json!({
        "id": id,
        "stream": format!("broadcast-{id}"),
        "event_id": event_id,
        "position": n,
        "stream_version": n,
    });
    (StatusCode::OK, answer.to_string())
}

/// Serves `router` on `listener` until the process ends.
fn serve(listener: tokio::net::TcpListener, router: axum::Router, what: &'static str) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("[broadcast] the {what} stopped: {e}");
        }
    });
}

// ------------------------------------------------------------------------------------------
// Acknowledgements

/// One focal point's acknowledgement.
#[derive(Clone, Copy)]
struct AckOutcome {
    /// First send.
    sent: Instant,
    /// The last answer.
    answered: Instant,
    /// Answered 200.
    ok: bool,
}

/// The acknowledgements of a round.
struct Acks {
    outcomes: Mutex<Vec<Option<AckOutcome>>>,
    ok: AtomicUsize,
    failed: AtomicUsize,
    retries: AtomicU64,
    errors: Mutex<BTreeMap<String, Tally>>,
}

impl Acks {
    fn new(n: usize) -> Self {
        Self {
            outcomes: Mutex::new(vec![None; n]),
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    fn finished(&self) -> usize {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    fn error(&self, kind: String, detail: String) {
        let mut m = lock(&self.errors);
        let t = m.entry(kind).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }

    fn done(&self, i: usize, outcome: AckOutcome) {
        if let Some(slot) = lock(&self.outcomes).get_mut(i) {
            *slot = Some(outcome);
        }
        if outcome.ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every acknowledgement of a round shares.
#[derive(Clone)]
struct AckPlan {
    http: reqwest::Client,
    /// `http://host:port` of the gateway or of the peer's handler.
    base: String,
    broadcast: Uuid,
    tokens: Arc<Vec<String>>,
    attempts: u32,
    timeout: Duration,
    acks: Arc<Acks>,
}

/// Wait before attempt `attempt + 1`: 10 ms doubling to 500 ms, jittered by up to half.
fn backoff(attempt: u32) -> Duration {
    let base = 10u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(500);
    let jitter = rand::rng().random_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// Acknowledges for agency `i`, retrying what may be retried with the same command id.
async fn ack_one(plan: AckPlan, i: usize) {
    let url = format!("{}/api/v1/broadcasts/{}/ack", plan.base, plan.broadcast);
    let body = json!({ "id": Uuid::new_v4() }).to_string();
    let token = plan.tokens.get(i).cloned().unwrap_or_default();
    let sent = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let answer = plan
            .http
            .post(&url)
            .timeout(plan.timeout)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retry, kind, detail) = match answer {
            Ok(a) => {
                let status = a.status();
                let text = a.bytes().await.unwrap_or_default();
                if status == reqwest::StatusCode::OK {
                    plan.acks.done(
                        i,
                        AckOutcome {
                            sent,
                            answered: Instant::now(),
                            ok: true,
                        },
                    );
                    return;
                }
                let text: String = String::from_utf8_lossy(&text).chars().take(200).collect();
                let retry = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
                    || (status == reqwest::StatusCode::CONFLICT
                        && !text.contains("already acknowledged"));
                (retry, format!("HTTP {}", status.as_u16()), text)
            }
            Err(e) => (
                true,
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    "transport error".to_owned()
                },
                format!("{e:#}"),
            ),
        };
        if retry && attempt < plan.attempts {
            plan.acks.retries.fetch_add(1, Ordering::Relaxed);
            plan.acks.error(format!("{kind}, retried"), detail);
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        plan.acks.error(
            format!("{kind}, given up after {attempt} attempt(s)"),
            detail,
        );
        plan.acks.done(
            i,
            AckOutcome {
                sent,
                answered: Instant::now(),
                ok: false,
            },
        );
        return;
    }
}

/// Acknowledges for every agency the receiver reports, until the round ends (aborting it
/// aborts the acknowledgements in flight).
fn spawn_acker(
    plan: AckPlan,
    mut reached: mpsc::UnboundedReceiver<usize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                next = reached.recv() => match next {
                    Some(i) => {
                        running.spawn(ack_one(plan.clone(), i));
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
    })
}

// ------------------------------------------------------------------------------------------
// The broadcast's view

/// What the poller saw of `GET /api/v1/broadcasts/{id}`.
#[derive(Default)]
struct Seen {
    /// First answer with `delivered == N` (any channel).
    delivered: Option<Instant>,
    /// First answer with every agency delivered over its webhook.
    webhooks: Option<Instant>,
    /// First answer with `acknowledged == N`.
    acknowledged: Option<Instant>,
    /// The last answer's (delivered, over webhooks, acknowledged, failed).
    last: (usize, usize, usize, usize),
    /// Answers read.
    gets: u64,
    /// Failed reads, by kind.
    errors: BTreeMap<String, Tally>,
}

impl Seen {
    fn complete(&self) -> bool {
        self.delivered.is_some() && self.webhooks.is_some() && self.acknowledged.is_some()
    }
}

/// (delivered, delivered over the webhook, acknowledged, failed) of a broadcast's view.
fn counts(view: &Value) -> (usize, usize, usize, usize) {
    let n = |k: &str| {
        view.get(k)
            .and_then(Value::as_u64)
            .map_or(0, |v| usize::try_from(v).unwrap_or(usize::MAX))
    };
    let webhooks = view
        .get("agencies")
        .and_then(Value::as_object)
        .map_or(0, |m| {
            m.values()
                .filter(|s| {
                    s.get("delivered")
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("webhook")))
                })
                .count()
        });
    (n("delivered"), webhooks, n("acknowledged"), n("failed"))
}

/// A request with a bearer token (a `POST` of `body`, or a `GET`): status and body.
async fn call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Option<String>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let request = match body {
        Some(b) => http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b),
        None => http.get(url),
    };
    let answer = request
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| url.to_owned())?;
    let status = answer.status().as_u16();
    let text = answer
        .text()
        .await
        .with_context(|| format!("{url}: reading the answer"))?;
    Ok((status, text))
}

/// Reads the view every `period` until it shows everything (or the task is aborted).
#[allow(clippy::too_many_arguments)]
fn spawn_poller(
    http: reqwest::Client,
    url: String,
    token: String,
    n: usize,
    period: Duration,
    timeout: Duration,
    seen: Arc<Mutex<Seen>>,
    gets: Arc<Mutex<Histogram<u64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let start = Instant::now();
            let outcome = call(&http, &url, &token, None, timeout).await;
            let now = Instant::now();
            let complete = {
                let mut s = lock(&seen);
                record_view(&mut s, outcome, now, start, n, &gets);
                s.complete()
            };
            if complete {
                return;
            }
            tokio::time::sleep_until((start + period).into()).await;
        }
    })
}

/// Notes one read of the view in `s`.
fn record_view(
    s: &mut Seen,
    outcome: anyhow::Result<(u16, String)>,
    now: Instant,
    start: Instant,
    n: usize,
    gets: &Mutex<Histogram<u64>>,
) {
    match outcome {
        Ok((200, text)) => match serde_json::from_str::<Value>(&text) {
            Ok(view) => {
                load::record(gets, now.saturating_duration_since(start));
                s.gets += 1;
                let c = counts(&view);
                s.last = c;
                if c.0 >= n {
                    s.delivered.get_or_insert(now);
                }
                if c.1 >= n {
                    s.webhooks.get_or_insert(now);
                }
                if c.2 >= n {
                    s.acknowledged.get_or_insert(now);
                }
            }
            Err(e) => tally(&mut s.errors, "unreadable view", e.to_string()),
        },
        Ok((status, text)) => tally(
            &mut s.errors,
            &format!("HTTP {status}"),
            text.chars().take(200).collect(),
        ),
        Err(e) => tally(&mut s.errors, "transport error", format!("{e:#}")),
    }
}

fn tally(m: &mut BTreeMap<String, Tally>, kind: &str, detail: String) {
    let t = m.entry(kind.to_owned()).or_default();
    if t.count == 0 {
        t.sample = detail;
    }
    t.count += 1;
}

// ------------------------------------------------------------------------------------------
// Rounds

/// Everything a round needs.
struct Ctx {
    args: BroadcastArgs,
    agencies: Vec<Agency>,
    tokens: Arc<Vec<String>>,
    receiver: Arc<Receiver>,
    /// `http://host:port` of the peer's acknowledgement handler.
    peer_ack: String,
    /// Built as the broadcast service builds its own.
    http: reqwest::Client,
    /// Webhook timeout of the configuration.
    hook_timeout: Duration,
    procs: Procs,
}

impl Ctx {
    fn n(&self) -> usize {
        self.agencies.len()
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.request_timeout.max(1))
    }

    fn gateway(&self) -> String {
        self.args.http_url.trim_end_matches('/').to_owned()
    }
}

/// The title and body of every round's broadcast (the same lengths each round).
fn text(round: usize) -> (String, String) {
    let title = format!("Benchmark broadcast, round {round:03}: all agencies");
    let mut body = String::new();
    while body.len() < 600 {
        body.push_str(
            "Security situation update for every agency: movements restricted until further notice; \
             acknowledge receipt through your focal point. ",
        );
    }
    (title, body)
}

/// An hour from now, whole seconds (as sent in the issue).
fn deadline() -> anyhow::Result<OffsetDateTime> {
    (OffsetDateTime::now_utc() + time::Duration::hours(1))
        .replace_nanosecond(0)
        .context("building the acknowledgement deadline")
}

/// What one round measured.
struct RoundResult {
    system: Server,
    round: usize,
    n: usize,
    /// Vigil: issue POST → 201, approve POST → 200.
    issue: Option<Duration>,
    approve: Option<Duration>,
    /// t0 → each agency's first webhook, sorted.
    hooks: Vec<Duration>,
    duplicates: u64,
    /// Peer: t0 → every send answered 2xx; failed sends.
    sends_all: Option<Duration>,
    sends_failed: usize,
    /// t0 → every acknowledgement answered 200 (when all were).
    acks_all: Option<Duration>,
    acks_ok: usize,
    acks_failed: usize,
    ack_retries: u64,
    /// Each acknowledgement, first send → its 200, µs.
    ack_latency: Histogram<u64>,
    ack_errors: BTreeMap<String, Tally>,
    /// Vigil: t0 → the view showing delivered == N, all webhooks, acknowledged == N.
    seen: Option<SeenTimes>,
    /// `vigil up` over the round.
    server: Option<ServerSide>,
    /// Gave up waiting.
    timed_out: bool,
}

/// The poller's figures.
struct SeenTimes {
    delivered: Option<Duration>,
    webhooks: Option<Duration>,
    acknowledged: Option<Duration>,
    last: (usize, usize, usize, usize),
    gets: u64,
    get_latency: Histogram<u64>,
    errors: BTreeMap<String, Tally>,
}

impl RoundResult {
    fn hook_at(&self, q: f64) -> Option<Duration> {
        if self.hooks.is_empty() {
            return None;
        }
        let i = ((self.hooks.len() as f64 * q).ceil() as usize).clamp(1, self.hooks.len()) - 1;
        self.hooks.get(i).copied()
    }

    fn all_hooks(&self) -> Option<Duration> {
        (self.hooks.len() == self.n)
            .then(|| self.hooks.last().copied())
            .flatten()
    }
}

/// Prints a progress line a second for a round started at `t0`.
fn spawn_progress(
    label: String,
    t0: Instant,
    line: impl Fn() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at((t0 + Duration::from_secs(1)).into(), Duration::from_secs(1));
        loop {
            tick.tick().await;
            eprintln!(
                "[{label}] {:>5.1} s  {}",
                t0.elapsed().as_secs_f64(),
                line()
            );
        }
    })
}

/// Waits until `done()` or `timeout` from `t0`; whether it gave up.
async fn wait_for(t0: Instant, timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = t0 + timeout;
    loop {
        if done() {
            return false;
        }
        if Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Starts timing broadcast `id` in the receiver; the acknowledgements go to `base`.
fn start_round(
    ctx: &Ctx,
    id: Uuid,
    base: String,
) -> (Arc<Round>, Arc<Acks>, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let round = Arc::new(Round::new(id, ctx.n(), tx));
    let acks = Arc::new(Acks::new(ctx.n()));
    if ctx.args.no_acks {
        // Nobody acknowledges: the receiver's triggers are read and dropped.
        let acker = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        *lock(&ctx.receiver.round) = Some(round.clone());
        return (round, acks, acker);
    }
    let acker = spawn_acker(
        AckPlan {
            http: ctx.http.clone(),
            base,
            broadcast: id,
            tokens: ctx.tokens.clone(),
            attempts: ctx.args.ack_attempts.max(1),
            timeout: ctx.timeout(),
            acks: acks.clone(),
        },
        rx,
    );
    *lock(&ctx.receiver.round) = Some(round.clone());
    (round, acks, acker)
}

/// The acknowledgements' figures from t0.
fn ack_figures(
    acks: &Acks,
    t0: Instant,
    n: usize,
) -> anyhow::Result<(Option<Duration>, Histogram<u64>)> {
    let mut hist = new_histogram()?;
    let outcomes = lock(&acks.outcomes);
    let mut last = None::<Instant>;
    let mut all = true;
    for o in outcomes.iter() {
        match o {
            Some(o) if o.ok => {
                hist.saturating_record(micros(o.answered.saturating_duration_since(o.sent)));
                last = Some(last.map_or(o.answered, |l| l.max(o.answered)));
            }
            _ => all = false,
        }
    }
    let all_at = (all && outcomes.len() == n)
        .then(|| last.map(|l| l.saturating_duration_since(t0)))
        .flatten();
    Ok((all_at, hist))
}

/// The webhooks' arrivals from t0, sorted.
fn hook_figures(round: &Round, t0: Instant) -> Vec<Duration> {
    let mut hooks: Vec<Duration> = lock(&round.arrivals)
        .iter()
        .flatten()
        .map(|a| a.saturating_duration_since(t0))
        .collect();
    hooks.sort();
    hooks
}

/// One round through Vigil.
async fn vigil_round(ctx: &Ctx, round_no: usize) -> anyhow::Result<RoundResult> {
    let n = ctx.n();
    let label = format!("broadcast vigil {round_no}/{}", ctx.args.rounds);
    let id = Uuid::new_v4();
    let gateway = ctx.gateway();
    let (round, acks, acker) = start_round(ctx, id, gateway.clone());
    let before = load::sample(ctx.args.metrics_url.as_deref(), &ctx.procs).await;

    let (title, body) = text(round_no);
    let deadline = deadline()?
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting the deadline")?;
    let issue = json!({
        "id": id,
        "title": title,
        "body": body,
        "severity": "high",
        "audience": "all_agencies",
        "requires_ack": true,
        "ack_deadline": deadline,
    });
    let sent = Instant::now();
    let (status, answer) = call(
        &ctx.http,
        &format!("{gateway}/api/v1/broadcasts"),
        &ctx.args.issuer_token,
        Some(issue.to_string()),
        ctx.timeout(),
    )
    .await
    .context("issuing the broadcast")?;
    let issued_in = sent.elapsed();
    if status != 201 {
        bail!("POST /api/v1/broadcasts answered {status}: {answer}");
    }
    let view_url = format!("{gateway}/api/v1/broadcasts/{id}");
    let (status, answer) = call(
        &ctx.http,
        &view_url,
        &ctx.args.issuer_token,
        None,
        ctx.timeout(),
    )
    .await
    .context("reading the issued broadcast")?;
    if status != 200 {
        bail!("GET {view_url} answered {status}: {answer}");
    }
    let view: Value = serde_json::from_str(&answer).context("reading the broadcast's view")?;
    let recipients = view
        .get("recipients")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if recipients != n {
        bail!(
            "the broadcast went to {recipients} agencies, not the {n} of the configuration: are they all imported (`vigil import`) and read by the broadcast service?"
        );
    }

    let sent = Instant::now();
    let (status, answer) = call(
        &ctx.http,
        &format!("{gateway}/api/v1/broadcasts/{id}/approve"),
        &ctx.args.approver_token,
        Some("{}".to_owned()),
        ctx.timeout(),
    )
    .await
    .context("approving the broadcast")?;
    let t0 = Instant::now();
    let approved_in = t0.saturating_duration_since(sent);
    if status != 200 {
        bail!("POST /api/v1/broadcasts/{id}/approve answered {status}: {answer}");
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let get_latency = Arc::new(Mutex::new(new_histogram()?));
    let poller = spawn_poller(
        ctx.http.clone(),
        view_url,
        ctx.args.issuer_token.clone(),
        n,
        Duration::from_millis(ctx.args.poll_ms.max(1)),
        ctx.timeout(),
        seen.clone(),
        get_latency.clone(),
    );
    let ticker = {
        let (round, acks, seen) = (round.clone(), acks.clone(), seen.clone());
        spawn_progress(label.clone(), t0, move || {
            let s = lock(&seen);
            format!(
                "webhooks {}/{n} (duplicates {})  acks 200 {}/{n} (failed {}, retries {})  view: delivered {}, over webhook {}, acknowledged {}, failed {} ({} reads)",
                round.received.load(Ordering::Relaxed),
                round.duplicates.load(Ordering::Relaxed),
                acks.ok.load(Ordering::Relaxed),
                acks.failed.load(Ordering::Relaxed),
                acks.retries.load(Ordering::Relaxed),
                s.last.0,
                s.last.1,
                s.last.2,
                s.last.3,
                s.gets,
            )
        })
    };
    let timed_out = wait_for(
        t0,
        Duration::from_secs(ctx.args.round_timeout.max(1)),
        || {
            let s = lock(&seen);
            // Every agency reached and shown delivered; every acknowledgement answered (or
            // given up on) and every one answered 200 shown in the view.
            round.received.load(Ordering::Relaxed) >= n
                && s.delivered.is_some()
                && s.webhooks.is_some()
                && (ctx.args.no_acks
                    || (acks.finished() >= n && s.last.2 >= acks.ok.load(Ordering::Relaxed)))
        },
    )
    .await;
    ticker.abort();
    poller.abort();
    end_round(ctx, &label, &round, &acks, timed_out);
    acker.abort();
    let after = load::sample(ctx.args.metrics_url.as_deref(), &ctx.procs).await;

    let (acks_all, ack_latency) = ack_figures(&acks, t0, n)?;
    let s = std::mem::take(&mut *lock(&seen));
    let since = |t: Option<Instant>| t.map(|t| t.saturating_duration_since(t0));
    Ok(RoundResult {
        system: Server::Vigil,
        round: round_no,
        n,
        issue: Some(issued_in),
        approve: Some(approved_in),
        hooks: hook_figures(&round, t0),
        duplicates: round.duplicates.load(Ordering::Relaxed),
        sends_all: None,
        sends_failed: 0,
        acks_all,
        acks_ok: acks.ok.load(Ordering::Relaxed),
        acks_failed: acks.failed.load(Ordering::Relaxed),
        ack_retries: acks.retries.load(Ordering::Relaxed),
        ack_latency,
        ack_errors: std::mem::take(&mut *lock(&acks.errors)),
        seen: Some(SeenTimes {
            delivered: since(s.delivered),
            webhooks: since(s.webhooks),
            acknowledged: since(s.acknowledged),
            last: s.last,
            gets: s.gets,
            get_latency: load::take_histogram(&get_latency)?,
            errors: s.errors,
        }),
        server: Some(load::server_side(&before, &after, &ctx.procs, &WATCH)),
        timed_out,
    })
}

/// One round through the peer: the same messages sent by this bench.
/// Stops the receiver timing this round and says so when the round timed out.
fn end_round(ctx: &Ctx, label: &str, round: &Round, acks: &Acks, timed_out: bool) {
    *lock(&ctx.receiver.round) = None;
    if timed_out {
        let n = ctx.n();
        eprintln!(
            "[{label}] WARNING: gave up after {} s: webhooks {}/{n}, acks finished {}/{n}",
            ctx.args.round_timeout,
            round.received.load(Ordering::Relaxed),
            acks.finished()
        );
    }
}

async fn peer_round(ctx: &Ctx, round_no: usize) -> anyhow::Result<RoundResult> {
    let n = ctx.n();
    let label = format!("broadcast peer {round_no}/{}", ctx.args.rounds);
    let id = Uuid::new_v4();
    let (round, acks, acker) = start_round(ctx, id, ctx.peer_ack.clone());
    let (title, body) = text(round_no);
    let issued = Arc::new(BroadcastIssued {
        title,
        body,
        severity: BroadcastSeverity::High,
        audience: Audience::AllAgencies,
        requires_ack: true,
        ack_deadline: Some(deadline()?),
        exercise: false,
        updates: None,
        cancels: None,
        recipients: Vec::new(),
        rule: None,
    });

    let answered = Arc::new(Mutex::new(vec![None::<Instant>; n]));
    let failed = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(BTreeMap::<String, Tally>::new()));
    let in_flight = Arc::new(Semaphore::new(vigil_broadcast::MAX_DELIVERIES));
    let t0 = Instant::now();
    let mut senders = JoinSet::new();
    for (i, a) in ctx.agencies.iter().enumerate() {
        let (http, url, secret, agency) = (
            ctx.http.clone(),
            a.url.clone(),
            a.secret.clone(),
            a.id.clone(),
        );
        let (issued, answered, failed, failures, in_flight) = (
            issued.clone(),
            answered.clone(),
            failed.clone(),
            failures.clone(),
            in_flight.clone(),
        );
        let timeout = ctx.hook_timeout;
        senders.spawn(async move {
            let Ok(_permit) = in_flight.acquire_owned().await else {
                return;
            };
            let message = Message::new(id, &issued, &agency, 1);
            let outcome = deliver::over_webhook(
                &http,
                &url,
                &secret,
                &message,
                OffsetDateTime::now_utc(),
                timeout,
            )
            .await;
            match outcome {
                Ok(()) => {
                    if let Some(slot) = lock(&answered).get_mut(i) {
                        *slot = Some(Instant::now());
                    }
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    tally(&mut lock(&failures), "webhook send failed", e);
                }
            }
        });
    }
    let ticker = {
        let (round, acks, answered) = (round.clone(), acks.clone(), answered.clone());
        spawn_progress(label.clone(), t0, move || {
            format!(
                "sends answered {}/{n}  webhooks {}/{n} (duplicates {})  acks 200 {}/{n} (failed {})",
                lock(&answered).iter().flatten().count(),
                round.received.load(Ordering::Relaxed),
                round.duplicates.load(Ordering::Relaxed),
                acks.ok.load(Ordering::Relaxed),
                acks.failed.load(Ordering::Relaxed),
            )
        })
    };
    let timed_out = wait_for(
        t0,
        Duration::from_secs(ctx.args.round_timeout.max(1)),
        || {
            round.received.load(Ordering::Relaxed) >= n
                && (ctx.args.no_acks || acks.finished() >= n)
                && lock(&answered).iter().flatten().count() + failed.load(Ordering::Relaxed) >= n
        },
    )
    .await;
    ticker.abort();
    senders.abort_all();
    end_round(ctx, &label, &round, &acks, timed_out);
    acker.abort();
    for (kind, t) in lock(&failures).iter() {
        eprintln!("[{label}] {kind}: {} × — e.g. {}", t.count, t.sample);
    }
    let sends_all = {
        let a = lock(&answered);
        a.iter()
            .map(|x| x.map(|t| t.saturating_duration_since(t0)))
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max())
    };
    let (acks_all, ack_latency) = ack_figures(&acks, t0, n)?;
    Ok(RoundResult {
        system: Server::Peer,
        round: round_no,
        n,
        issue: None,
        approve: None,
        hooks: hook_figures(&round, t0),
        duplicates: round.duplicates.load(Ordering::Relaxed),
        sends_all,
        sends_failed: failed.load(Ordering::Relaxed),
        acks_all,
        acks_ok: acks.ok.load(Ordering::Relaxed),
        acks_failed: acks.failed.load(Ordering::Relaxed),
        ack_retries: acks.retries.load(Ordering::Relaxed),
        ack_latency,
        ack_errors: std::mem::take(&mut *lock(&acks.errors)),
        seen: None,
        server: None,
        timed_out,
    })
}

/// Waits (at most 60 s) until the broadcast service's follower of the log is at the head, so
/// that the agencies just imported are the recipients.
async fn wait_register(metrics_url: Option<&str>) {
    let Some(url) = metrics_url else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(page) = util::scrape_page(Some(url)).await {
            let head = util::prom_sum(&page, "vigil_store_head_position", &[]);
            let at = load::consumer_position(&page, "broadcast");
            if let (Some(head), Some(at)) = (head, at)
                && at as f64 >= head
            {
                eprintln!(
                    "[broadcast] the broadcast service has read the log up to its head ({at})"
                );
                return;
            }
        }
        if Instant::now() >= deadline {
            eprintln!(
                "[broadcast] WARNING: the broadcast service's position is not at the log head after 60 s; going on"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Printing

fn ms_of(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// A figure of a round, by name: (label, value in ms).
type Figure = (&'static str, fn(&RoundResult) -> Option<Duration>);

/// The figures compared between the systems, from t0.
const FIGURES: [Figure; 5] = [
    ("t0 → first webhook", |r| r.hook_at(0.0)),
    ("t0 → half the webhooks", |r| r.hook_at(0.5)),
    ("t0 → all N webhooks", RoundResult::all_hooks),
    ("t0 → all N acks answered 200", |r| r.acks_all),
    ("ack POST → 200, p50 of the round", |r| {
        (!r.ack_latency.is_empty())
            .then(|| Duration::from_micros(r.ack_latency.value_at_quantile(0.5)))
    }),
];

/// Vigil's own figures (no peer counterpart).
const VIGIL_FIGURES: [Figure; 5] = [
    ("issue POST → 201", |r| r.issue),
    ("approve POST → 200", |r| r.approve),
    ("t0 → view: delivered == N (any channel)", |r| {
        r.seen.as_ref().and_then(|s| s.delivered)
    }),
    ("t0 → view: all N delivered over webhook", |r| {
        r.seen.as_ref().and_then(|s| s.webhooks)
    }),
    ("t0 → view: acknowledged == N", |r| {
        r.seen.as_ref().and_then(|s| s.acknowledged)
    }),
];

fn print_round(r: &RoundResult) {
    println!();
    println!(
        "== round {} {}: {} agencies{} ==",
        r.round,
        r.system.name(),
        r.n,
        if r.timed_out { " (TIMED OUT)" } else { "" }
    );
    if let (Some(i), Some(a)) = (r.issue, r.approve) {
        println!(
            "  issue POST→201 {} ms, approve POST→200 {} ms (t0 = the approval's 200)",
            fmt_ms(ms_of(Some(i))),
            fmt_ms(ms_of(Some(a)))
        );
    }
    println!(
        "  webhooks: {}/{} agencies reached, {} duplicates; from t0: first {} ms, p50 {} ms, p90 {} ms, all {} ms",
        r.hooks.len(),
        r.n,
        r.duplicates,
        fmt_ms(ms_of(r.hook_at(0.0))),
        fmt_ms(ms_of(r.hook_at(0.5))),
        fmt_ms(ms_of(r.hook_at(0.9))),
        fmt_ms(ms_of(r.all_hooks())),
    );
    if r.system == Server::Peer {
        println!(
            "  sends: all answered 2xx at the sender {} ms from t0, {} failed",
            fmt_ms(ms_of(r.sends_all)),
            r.sends_failed
        );
    }
    println!(
        "  acks: {} answered 200, {} failed, {} retries; all answered 200 {} ms from t0; each POST→200 {}",
        r.acks_ok,
        r.acks_failed,
        r.ack_retries,
        fmt_ms(ms_of(r.acks_all)),
        load::latency_text(&r.ack_latency)
    );
    for (kind, t) in &r.ack_errors {
        println!(
            "    ack {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let Some(s) = &r.seen {
        println!(
            "  view (GET every poll): delivered == N {} ms, all over webhook {} ms, acknowledged == N {} ms from t0; last read: delivered {}, over webhook {}, acknowledged {}, failed {}; {} reads, each {}",
            fmt_ms(ms_of(s.delivered)),
            fmt_ms(ms_of(s.webhooks)),
            fmt_ms(ms_of(s.acknowledged)),
            s.last.0,
            s.last.1,
            s.last.2,
            s.last.3,
            s.gets,
            load::latency_text(&s.get_latency)
        );
        for (kind, t) in &s.errors {
            println!(
                "    view read {kind}: {} × — e.g. {}",
                thousands(t.count),
                t.sample
            );
        }
    }
    if let Some(server) = &r.server {
        load::print_server_side(server, "");
    }
}

/// p50 and max over the rounds of `f` for `system`, in ms (`NaN` when missing anywhere).
fn over_rounds(
    results: &[RoundResult],
    system: Server,
    f: fn(&RoundResult) -> Option<Duration>,
) -> (f64, f64, usize) {
    let rows: Vec<&RoundResult> = results.iter().filter(|r| r.system == system).collect();
    let mut values: Vec<f64> = rows
        .iter()
        .filter_map(|r| f(r))
        .map(|d| ms_of(Some(d)))
        .collect();
    if values.is_empty() || values.len() != rows.len() {
        return (f64::NAN, f64::NAN, values.len());
    }
    values.sort_by(f64::total_cmp);
    let p50 = values
        .get((values.len() - 1) / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let max = values.last().copied().unwrap_or(f64::NAN);
    (p50, max, values.len())
}

fn print_summary(results: &[RoundResult], n: usize, receiver: &Receiver, no_acks: bool) {
    let rounds = |s| results.iter().filter(|r| r.system == s).count();
    let (rv, rp) = (rounds(Server::Vigil), rounds(Server::Peer));
    println!();
    println!(
        "== summary: {n} agencies; p50 and max over the rounds ({rv} vigil, {rp} peer), ms =="
    );
    println!(
        "{:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "figure", "vigil p50", "vigil max", "peer p50", "peer max", "vigil/peer"
    );
    let mut md = Vec::new();
    for (name, f) in FIGURES {
        let (vp, vm, _) = over_rounds(results, Server::Vigil, f);
        let (pp, pm, _) = over_rounds(results, Server::Peer, f);
        println!(
            "{name:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            fmt_ms(vp),
            fmt_ms(vm),
            fmt_ms(pp),
            fmt_ms(pm),
            load::ratio(vp, pp)
        );
        md.push(format!(
            "| {name} | {} | {} | {} | {} | {} |",
            fmt_ms(vp),
            fmt_ms(vm),
            fmt_ms(pp),
            fmt_ms(pm),
            load::ratio(vp, pp)
        ));
    }
    for (name, f) in VIGIL_FIGURES {
        let (vp, vm, _) = over_rounds(results, Server::Vigil, f);
        println!(
            "{name:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            fmt_ms(vp),
            fmt_ms(vm),
            "-",
            "-",
            "-"
        );
        md.push(format!(
            "| {name} | {} | {} | - | - | - |",
            fmt_ms(vp),
            fmt_ms(vm)
        ));
    }
    let peer_sends = over_rounds(results, Server::Peer, |r| r.sends_all);
    if rp > 0 {
        println!(
            "{:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            "t0 → all N sends answered 2xx (peer)",
            "-",
            "-",
            fmt_ms(peer_sends.0),
            fmt_ms(peer_sends.1),
            "-"
        );
        md.push(format!(
            "| t0 → all N sends answered 2xx at the sender | - | - | {} | {} | - |",
            fmt_ms(peer_sends.0),
            fmt_ms(peer_sends.1)
        ));
    }
    println!(
        "(t0: vigil, the approval's 200; peer, the start of its sends. \"view\": GET /api/v1/broadcasts/{{id}}, an upper bound late by at most one poll period plus one GET)"
    );

    println!();
    println!("== per round ==");
    println!(
        "| round | system | webhooks | dup | first ms | p50 ms | all ms | acks 200 | ack retries | acks all ms | ack p50 ms | ack p99 ms | ack max ms | view delivered ms | view webhooks ms | view acked ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let seen = |f: fn(&SeenTimes) -> Option<Duration>| {
            r.seen
                .as_ref()
                .map_or("-".to_owned(), |s| fmt_ms(ms_of(f(s))))
        };
        println!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.round,
            r.system.name(),
            r.hooks.len(),
            r.n,
            r.duplicates,
            fmt_ms(ms_of(r.hook_at(0.0))),
            fmt_ms(ms_of(r.hook_at(0.5))),
            fmt_ms(ms_of(r.all_hooks())),
            r.acks_ok,
            r.n,
            r.ack_retries,
            fmt_ms(ms_of(r.acks_all)),
            fmt_ms(load::ms(&r.ack_latency, 0.5)),
            fmt_ms(load::ms(&r.ack_latency, 0.99)),
            fmt_ms(load::max_ms(&r.ack_latency)),
            seen(|s| s.delivered),
            seen(|s| s.webhooks),
            seen(|s| s.acknowledged),
        );
    }

    println!();
    println!("== markdown ==");
    println!(
        "| figure ({n} agencies) | vigil p50 ms | vigil max ms | peer p50 ms | peer max ms | vigil/peer (p50) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for line in md {
        println!("{line}");
    }

    println!();
    println!("== checks ==");
    let invalid = receiver.invalid.load(Ordering::Relaxed);
    let all_reached = results.iter().all(|r| r.hooks.len() == r.n);
    let all_acked = no_acks || results.iter().all(|r| r.acks_ok == r.n);
    let views = results.iter().filter_map(|r| r.seen.as_ref()).all(|s| {
        s.delivered.is_some() && s.webhooks.is_some() && (no_acks || s.acknowledged.is_some())
    });
    let line = |what: &str, ok: bool| println!("  {what:<66} {}", if ok { "OK" } else { "FAIL" });
    line(
        &format!("webhook signatures that did not verify: {invalid} (must be 0)"),
        invalid == 0,
    );
    line(
        "every agency reached by every round's broadcast",
        all_reached,
    );
    line(
        if no_acks {
            "no acknowledgements sent (--no-acks)"
        } else {
            "every acknowledgement answered 200"
        },
        all_acked,
    );
    line(
        "every Vigil broadcast's view reached delivered and acknowledged == N",
        views,
    );
    println!(
        "  duplicates (same broadcast, same agency again): {}; deliveries outside their round: {}",
        results.iter().map(|r| r.duplicates).sum::<u64>(),
        receiver.stray.load(Ordering::Relaxed)
    );
    for (kind, t) in lock(&receiver.problems).iter() {
        println!(
            "    receiver: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
}

// ------------------------------------------------------------------------------------------
// The run

/// Runs `vigil-bench broadcast`.
pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be ≥ 1");
    }
    let mut systems = args.systems.clone();
    systems.dedup();
    if systems.is_empty() {
        bail!("--systems needs vigil, peer or both");
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = Config::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let tokens = std::fs::read_to_string(&args.focal_tokens)
        .with_context(|| format!("reading {}", args.focal_tokens.display()))?;
    let (agencies, listen) = agencies(&config, &tokens)?;
    let n = agencies.len();

    let receiver = Arc::new(Receiver {
        index: agencies
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect(),
        secrets: agencies
            .iter()
            .map(|a| a.secret.as_bytes().to_vec())
            .collect(),
        round: Mutex::new(None),
        invalid: AtomicU64::new(0),
        stray: AtomicU64::new(0),
        problems: Mutex::new(BTreeMap::new()),
    });
    let hooks = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen} for the webhooks"))?;
    serve(
        hooks,
        axum::Router::new()
            .route("/hook/{agency}", post(hook))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(receiver.clone()),
        "webhook receiver",
    );
    let peer_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening for the peer's acknowledgements")?;
    let peer_addr = peer_listener
        .local_addr()
        .context("the peer ack handler's address")?;
    serve(
        peer_listener,
        axum::Router::new()
            .route("/api/v1/broadcasts/{id}/ack", post(peer_ack))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::new(AtomicU64::new(0))),
        "peer ack handler",
    );
    // As the broadcast service builds its client (`vigil_broadcast::run_with`).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;

    util::wait_ready(&args.http_url).await?;
    wait_register(args.metrics_url.as_deref()).await;

    println!(
        "broadcast: {n} agencies with webhooks on http://{listen}/hook/<agency>; {} round(s) of {}; \
         Vigil's delivery settings: {} attempts, backoff {} ms (max {} ms), timeout {} ms, claim timeout {} s; \
         peer: the same messages with vigil_broadcast::deliver::over_webhook, ≤ {} in flight; peer acks to http://{peer_addr}; \
         the view read every {} ms; {} cores",
        args.rounds,
        systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        config.delivery.attempts,
        config.delivery.backoff_ms,
        config.delivery.max_backoff_ms,
        config.delivery.timeout_ms,
        config.delivery.claim_timeout_s,
        vigil_broadcast::MAX_DELIVERIES,
        args.poll_ms,
        util::cores(),
    );

    let ctx = Ctx {
        tokens: Arc::new(agencies.iter().map(|a| a.token.clone()).collect()),
        agencies,
        receiver: receiver.clone(),
        peer_ack: format!("http://{peer_addr}"),
        http,
        hook_timeout: Duration::from_millis(config.delivery.timeout_ms.max(1)),
        procs: load::procs(args.vigil_pid, &args.nats, None),
        args: args.clone(),
    };
    let mut results = Vec::new();
    for round in 1..=args.rounds {
        for &system in &systems {
            let result = match system {
                Server::Vigil => vigil_round(&ctx, round).await?,
                Server::Peer => peer_round(&ctx, round).await?,
            };
            print_round(&result);
            results.push(result);
            tokio::time::sleep(Duration::from_secs(args.pause)).await;
        }
    }
    print_summary(&results, n, &receiver, args.no_acks);
    let invalid = receiver.invalid.load(Ordering::Relaxed);
    if invalid > 0 {
        bail!("{invalid} webhook request(s) carried a signature that did not verify");
    }
    if results
        .iter()
        .any(|r| r.timed_out || r.hooks.len() != r.n || (!args.no_acks && r.acks_ok != r.n))
    {
        bail!(
            "some rounds did not reach every agency or did not get every acknowledgement (see above)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn views_are_counted_per_channel() {
        let view = json!({
            "delivered": 2, "acknowledged": 1, "failed": 0,
            "agencies": {
                "a1": {"delivered": ["nats", "webhook"]},
                "a2": {"delivered": ["nats"]},
                "a3": {"delivered": []}
            }
        });
        assert_eq!(counts(&view), (2, 1, 1, 0));
    }

    #[test]
    fn agencies_come_from_the_configuration_with_their_tokens() {
        let config = Config::parse(
            r#"{"version": 1, "agencies": {
                "a1": {"webhook": "http://127.0.0.1:9/hook/a1", "secret": "s1"},
                "a2": {"webhook": "http://127.0.0.1:9/hook/a2", "secret": "s2"},
                "a3": {}
            }}"#,
        )
        .unwrap();
        let (list, listen) = agencies(&config, "a1 t1\n\na2 t2\n").unwrap();
        assert_eq!(listen, "127.0.0.1:9");
        assert_eq!(
            list.iter()
                .map(|a| (a.id.as_str(), a.token.as_str()))
                .collect::<Vec<_>>(),
            [("a1", "t1"), ("a2", "t2")]
        );
        assert!(agencies(&config, "a1 t1\n").is_err(), "a2 has no token");
    }

    #[test]
    fn the_receiver_checks_signatures_and_times_first_deliveries() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = Uuid::new_v4();
        let receiver = Receiver {
            index: [("a1".to_owned(), 0)].into_iter().collect(),
            secrets: vec![b"k".to_vec()],
            round: Mutex::new(Some(Arc::new(Round::new(id, 1, tx)))),
            invalid: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            problems: Mutex::new(BTreeMap::new()),
        };
        let (title, body) = text(1);
        let issued = BroadcastIssued {
            title,
            body,
            severity: BroadcastSeverity::High,
            audience: Audience::AllAgencies,
            requires_ack: true,
            ack_deadline: Some(deadline().unwrap()),
            exercise: false,
            updates: None,
            cancels: None,
            recipients: vec![],
            rule: None,
        };
        let bytes = serde_json::to_vec(&Message::new(id, &issued, "a1", 1)).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            deliver::sign(b"k", now, &bytes).parse().unwrap(),
        );
        headers.insert(DELIVERY_HEADER, format!("{id}/a1").parse().unwrap());
        assert_eq!(
            receiver.take("a1", &headers, &bytes, Instant::now()),
            StatusCode::OK
        );
        assert_eq!(rx.try_recv().unwrap(), 0);
        assert_eq!(
            receiver.take("a1", &headers, &bytes, Instant::now()),
            StatusCode::OK
        );
        assert!(rx.try_recv().is_err(), "a duplicate triggers no second ack");
        let mut bad = headers.clone();
        bad.insert(
            SIGNATURE_HEADER,
            deliver::sign(b"x", now, &bytes).parse().unwrap(),
        );
        assert_eq!(
            receiver.take("a1", &bad, &bytes, Instant::now()),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(receiver.invalid.load(Ordering::Relaxed), 1);
        assert_eq!(
            receiver.take("zz", &headers, &bytes, Instant::now()),
            StatusCode::NOT_FOUND
        );
        let round = lock(&receiver.round).clone().unwrap();
        assert_eq!(round.received.load(Ordering::Relaxed), 1);
        assert_eq!(round.duplicates.load(Ordering::Relaxed), 1);
    }
}
