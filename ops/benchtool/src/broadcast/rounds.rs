//! One round: a Vigil round (the broadcast issued and approved over the gateway, its
//! deliveries, acknowledgements and view timed from the approval's 200) or a peer round (the
//! same signed messages sent straight from the bench with the service's own sender), each
//! ending when everything arrived or at `--round-timeout`.

use crate::cell::{self, Tally, lock, micros, new_histogram, tally};
use crate::load::Server;
use crate::prom;
use crate::server_side::{self, Procs, ServerSide};
use anyhow::{Context as _, bail};
use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use uuid::Uuid;
use vigil_broadcast::deliver::{self, Message};

use super::acks::{AckPlan, Acks, spawn_acker};
use super::receiver::{Agency, Receiver, Round};
use super::view::{Seen, call, spawn_poller};
use super::{BroadcastArgs, WATCH};

/// Everything a round needs.
pub(super) struct Ctx {
    pub(super) args: BroadcastArgs,
    pub(super) agencies: Vec<Agency>,
    pub(super) tokens: Arc<Vec<String>>,
    pub(super) receiver: Arc<Receiver>,
    /// `http://host:port` of the peer's acknowledgement handler.
    pub(super) peer_ack: String,
    /// Built as the broadcast service builds its own.
    pub(super) http: reqwest::Client,
    /// Webhook timeout of the configuration.
    pub(super) hook_timeout: Duration,
    pub(super) procs: Procs,
}

impl Ctx {
    pub(super) fn n(&self) -> usize {
        self.agencies.len()
    }

    pub(super) fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.request_timeout.max(1))
    }

    pub(super) fn gateway(&self) -> String {
        self.args.http_url.trim_end_matches('/').to_owned()
    }
}

/// The title and body of every round's broadcast (the same lengths each round).
pub(super) fn text(round: usize) -> (String, String) {
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
pub(super) fn deadline() -> anyhow::Result<OffsetDateTime> {
    (OffsetDateTime::now_utc() + time::Duration::hours(1))
        .replace_nanosecond(0)
        .context("building the acknowledgement deadline")
}

/// What one round measured.
pub(super) struct RoundResult {
    pub(super) system: Server,
    pub(super) round: usize,
    pub(super) n: usize,
    /// Vigil: issue POST → 201, approve POST → 200.
    pub(super) issue: Option<Duration>,
    pub(super) approve: Option<Duration>,
    /// t0 → each agency's first webhook, sorted.
    pub(super) hooks: Vec<Duration>,
    pub(super) duplicates: u64,
    /// Peer: t0 → every send answered 2xx; failed sends.
    pub(super) sends_all: Option<Duration>,
    pub(super) sends_failed: usize,
    /// t0 → every acknowledgement answered 200 (when all were).
    pub(super) acks_all: Option<Duration>,
    pub(super) acks_ok: usize,
    pub(super) acks_failed: usize,
    pub(super) ack_retries: u64,
    /// Each acknowledgement, first send → its 200, µs.
    pub(super) ack_latency: Histogram<u64>,
    pub(super) ack_errors: BTreeMap<String, Tally>,
    /// Vigil: t0 → the view showing delivered == N, all webhooks, acknowledged == N.
    pub(super) seen: Option<SeenTimes>,
    /// `vigil up` over the round.
    pub(super) server: Option<ServerSide>,
    /// Gave up waiting.
    pub(super) timed_out: bool,
}

/// The poller's figures.
pub(super) struct SeenTimes {
    pub(super) delivered: Option<Duration>,
    pub(super) webhooks: Option<Duration>,
    pub(super) acknowledged: Option<Duration>,
    pub(super) last: (usize, usize, usize, usize),
    pub(super) gets: u64,
    pub(super) get_latency: Histogram<u64>,
    pub(super) errors: BTreeMap<String, Tally>,
}

impl RoundResult {
    pub(super) fn hook_at(&self, q: f64) -> Option<Duration> {
        if self.hooks.is_empty() {
            return None;
        }
        let i = ((self.hooks.len() as f64 * q).ceil() as usize).clamp(1, self.hooks.len()) - 1;
        self.hooks.get(i).copied()
    }

    pub(super) fn all_hooks(&self) -> Option<Duration> {
        (self.hooks.len() == self.n)
            .then(|| self.hooks.last().copied())
            .flatten()
    }
}

/// Prints a progress line a second for a round started at `t0` (a round has no warm-up: its
/// figures are times from `t0`).
fn spawn_progress(
    label: String,
    t0: Instant,
    line: impl Fn() -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    cell::every_second(t0 + Duration::from_secs(1), move || {
        std::future::ready(format!(
            "[{label}] {:>5.1} s  {}",
            t0.elapsed().as_secs_f64(),
            line()
        ))
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
pub(super) async fn vigil_round(ctx: &Ctx, round_no: usize) -> anyhow::Result<RoundResult> {
    let n = ctx.n();
    let label = format!("broadcast vigil {round_no}/{}", ctx.args.rounds);
    let id = Uuid::new_v4();
    let gateway = ctx.gateway();
    let (round, acks, acker) = start_round(ctx, id, gateway.clone());
    let before = server_side::sample(ctx.args.metrics_url.as_deref(), &ctx.procs).await;

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
    let after = server_side::sample(ctx.args.metrics_url.as_deref(), &ctx.procs).await;

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
            get_latency: cell::take_histogram(&get_latency)?,
            errors: s.errors,
        }),
        server: Some(server_side::server_side(
            &before, &after, &ctx.procs, &WATCH,
        )),
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

pub(super) async fn peer_round(ctx: &Ctx, round_no: usize) -> anyhow::Result<RoundResult> {
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
                    tally(&mut lock(&failures), "webhook send failed".into(), e);
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
pub(super) async fn wait_register(metrics_url: Option<&str>) {
    let Some(url) = metrics_url else {
        tokio::time::sleep(Duration::from_secs(1)).await;
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(page) = prom::scrape_page(Some(url)).await {
            let head = prom::prom_sum(&page, "vigil_store_head_position", &[]);
            let at = server_side::consumer_position(&page, "broadcast");
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
