//! `vigil-bench fanout`: K WebSocket clients on the situation board while events are appended
//! at R/s, beside a baseline that broadcasts the same bytes with no projection.
//!
//! # One run (one K)
//! 1. **vigil**: waits for the gateway's `/readyz`, appends `--preload` events (so the board,
//!    its snapshot and each connection's buffers have a realistic size), reads the RSS of the
//!    `vigil up` process, connects K tokio-tungstenite clients that subscribe to the situation
//!    board (`wall_screen` view) and waits until each has its snapshot, lets them idle, reads
//!    the RSS again (memory per connection = difference / K), then appends realistic events
//!    (`workload`) at R/s through `vigil.store.append` for the warm-up plus the measured seconds.
//!    Every client records, for every delta of an event committed inside the measured window,
//!    `receive time − as_of` (the event's `recorded_at`, same machine clock) in an HDR
//!    histogram. After the last append the bench waits until every client has the last
//!    position (or the drain timeout). Client 0 keeps the snapshot and the delta frames it got.
//! 2. **baseline**: starts `vigil-bench baseline-server` (a separate process, like the gateway,
//!    so each side has its own file limit and RSS), which accepts the same K clients with the
//!    same WebSocket settings as the gateway, sends each the captured snapshot, then
//!    broadcasts the captured delta frames (as_of and position rewritten at send time) at R/s
//!    through a tokio broadcast channel of the gateway's capacity (1,024), one encoding shared
//!    by every client, with the gateway's heartbeat and resync rules. Same measurement.
//! 3. Prints both, the Vigil/baseline ratios, the gateway's `vigil_gateway_*` counters before
//!    and after, and the issue's targets with PASS/MISS.
//!
//! A client that cannot connect is counted with its error (e.g. `Too many open files`); the
//! bench never pretends it connected. Deltas a client never received (it was resynced with a
//! snapshot, or dropped) are counted as missing, from the number of events the log recorded
//! inside the window.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use events::envelope::ExpectedVersion;
use events::store_api::{AppendReply, ReadReply, ReadRequest};
use events::{AppendRequest, subjects};
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use crate::driver::Tally;
use crate::report::thousands;
use crate::util::{self, bytes_text, error_kind, fmt_ms, head, unix_nanos, verdict};
use crate::workload::Generator;

/// What every client sends after connecting.
pub const SUBSCRIBE: &str = r#"{"type":"subscribe","board":"situation","view":"wall_screen"}"#;
/// Histogram shards (clients record into `i % SHARDS`).
const SHARDS: usize = 32;
/// Largest latency the histograms hold, µs (larger values are clamped).
const MAX_LATENCY_US: u64 = 300_000_000;
/// The issue's targets.
const TARGET_1K_P99_MS: f64 = 50.0;
const TARGET_10K_P99_MS: f64 = 500.0;
const TARGET_10K_BYTES_PER_CLIENT: f64 = 64.0 * 1024.0;

/// Flags of `vigil-bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// WebSocket clients (K), all on the situation board, `wall_screen` view.
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Events appended per second (R).
    #[arg(long, default_value_t = 100.0)]
    rate: f64,
    /// Measured seconds of appending.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds of appending before the measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// The gateway's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    ws_url: String,
    /// The gateway's HTTP base URL (for `/readyz`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http_url: String,
    // NATS of the `vigil up` under test (the events are appended to its store).
    #[command(flatten)]
    nats: util::NatsArgs,
    /// Prometheus page with the gateway's counters (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    metrics_url: Option<String>,
    /// PID of the `vigil up` (or `vigil gateway`) process, for its memory (VmRSS).
    #[arg(long)]
    vigil_pid: Option<u32>,
    /// Events appended before the clients connect, so the board is not empty.
    #[arg(long, default_value_t = 1000)]
    preload: usize,
    /// Clients connecting at the same time.
    #[arg(long, default_value_t = 128)]
    connect_concurrency: usize,
    /// Seconds the clients idle after subscribing before memory is read.
    #[arg(long, default_value_t = 3)]
    idle: u64,
    /// Seconds to wait, after the last append, for every client to receive the last delta.
    #[arg(long, default_value_t = 60)]
    drain_timeout: u64,
    /// Delta frames client 0 keeps for the baseline.
    #[arg(long, default_value_t = 5000)]
    capture: usize,
    /// Skip the baseline.
    #[arg(long)]
    no_baseline: bool,
    /// The baseline server's WebSocket read buffer per connection, bytes (default: 128 KiB,
    /// tungstenite's default, which the gateway keeps); smaller shows what the gateway's
    /// memory per connection would be with a smaller one.
    #[arg(long, default_value_t = 128 * 1024)]
    baseline_read_buffer: usize,
    /// Set TCP_NODELAY on the baseline server's sockets (the gateway, through `axum::serve`,
    /// leaves Nagle on, and so does the baseline by default).
    #[arg(long)]
    baseline_nodelay: bool,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

// ------------------------------------------------------------------------------------------
// Frames

fn parse_ns(as_of: &str) -> Option<i64> {
    OffsetDateTime::parse(as_of, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
}

// ------------------------------------------------------------------------------------------
// Clients

#[derive(Default)]
struct Capture {
    snapshot: Option<String>,
    deltas: Vec<String>,
}

struct Shared {
    /// Deltas whose `as_of` is in [from, to) are measured (ns since the epoch).
    from: AtomicI64,
    to: AtomicI64,
    shards: Vec<Mutex<Histogram<u64>>>,
    subscribed: AtomicUsize,
    failed: AtomicUsize,
    ended: AtomicUsize,
    frames: AtomicU64,
    bytes: AtomicU64,
    deltas: AtomicU64,
    measured: AtomicU64,
    heartbeats: AtomicU64,
    resyncs: AtomicU64,
    order_errors: AtomicU64,
    unparsed: AtomicU64,
    /// Largest latency measured since the last progress line, µs.
    sec_max_us: AtomicU64,
    /// Last position each client has; `u64::MAX` once it has ended (or never started).
    positions: Vec<AtomicU64>,
    capture: Mutex<Capture>,
    capture_limit: usize,
    /// Why clients could not connect/subscribe.
    failures: Mutex<BTreeMap<String, Tally>>,
    /// Why subscribed clients ended before the bench closed them.
    ends: Mutex<BTreeMap<String, Tally>>,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

fn note(map: &Mutex<BTreeMap<String, Tally>>, kind: String, detail: String) {
    let mut m = map.lock().unwrap_or_else(|p| p.into_inner());
    let t = m.entry(kind).or_default();
    if t.count == 0 {
        t.sample = detail;
    }
    t.count += 1;
}

impl Shared {
    fn new(clients: usize, capture_limit: usize) -> anyhow::Result<Self> {
        Ok(Self {
            from: AtomicI64::new(i64::MAX),
            to: AtomicI64::new(i64::MAX),
            shards: (0..SHARDS)
                .map(|_| new_histogram().map(Mutex::new))
                .collect::<anyhow::Result<_>>()?,
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            deltas: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            order_errors: AtomicU64::new(0),
            unparsed: AtomicU64::new(0),
            sec_max_us: AtomicU64::new(0),
            positions: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            capture: Mutex::new(Capture::default()),
            capture_limit,
            failures: Mutex::new(BTreeMap::new()),
            ends: Mutex::new(BTreeMap::new()),
        })
    }

    fn set_position(&self, i: usize, p: u64) {
        if let Some(slot) = self.positions.get(i) {
            slot.store(p, Ordering::Relaxed);
        }
    }

    /// The lowest position over clients still connected (`None` when none is).
    fn min_position(&self) -> Option<u64> {
        self.positions
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|&p| p != u64::MAX)
            .min()
    }

    fn merged(&self) -> anyhow::Result<Histogram<u64>> {
        let mut h = new_histogram()?;
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            h.add(&*s).context("merging latency histograms")?;
        }
        Ok(h)
    }
}

async fn client(i: usize, url: Arc<str>, shared: Arc<Shared>, gate: Arc<Semaphore>) {
    let mut permit = gate.acquire_owned().await.ok();
    let mut attempt = 0;
    let mut ws = loop {
        attempt += 1;
        let tried = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_with_config(
                &*url,
                Some(util::ws_client_config()),
                true,
            ),
        )
        .await;
        let err = match tried {
            Ok(Ok((ws, _))) => break ws,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out after 30 s".to_owned(),
        };
        // Out of file descriptors will not get better by retrying.
        if attempt >= 3 || err.contains("os error 24") {
            note(&shared.failures, error_kind(&err), err);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.set_position(i, u64::MAX);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    };
    if let Err(e) = ws.send(Message::Text(SUBSCRIBE.into())).await {
        note(&shared.failures, "subscribe send".into(), e.to_string());
        shared.failed.fetch_add(1, Ordering::Relaxed);
        shared.set_position(i, u64::MAX);
        return;
    }
    let shard = shared.shards.get(i % SHARDS);
    let mut subscribed = false;
    let mut last = 0u64;
    let end_reason: (String, String) = loop {
        let msg = match ws.next().await {
            None => break ("connection ended".into(), "stream ended".into()),
            Some(Err(e)) => break (error_kind(&e.to_string()), e.to_string()),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                break ("closed by the server".into(), format!("{frame:?}"));
            }
            Some(Ok(_)) => continue,
        };
        let now = unix_nanos();
        let text = msg.as_str();
        shared.frames.fetch_add(1, Ordering::Relaxed);
        shared.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        let Some(h) = head(text) else {
            shared.unparsed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match h.kind {
            "delta" => {
                shared.deltas.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = h.position {
                    if p <= last {
                        shared.order_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    last = p;
                    shared.set_position(i, p);
                }
                if i == 0 {
                    let mut c = shared.capture.lock().unwrap_or_else(|p| p.into_inner());
                    if c.deltas.len() < shared.capture_limit {
                        c.deltas.push(text.to_owned());
                    }
                }
                if let Some(at) = h.as_of.and_then(parse_ns)
                    && at >= shared.from.load(Ordering::Relaxed)
                    && at < shared.to.load(Ordering::Relaxed)
                {
                    let us = u64::try_from((now - at).max(0) / 1000).unwrap_or(0);
                    let us = us.clamp(1, MAX_LATENCY_US);
                    if let Some(s) = shard {
                        s.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .saturating_record(us);
                    }
                    shared.measured.fetch_add(1, Ordering::Relaxed);
                    shared.sec_max_us.fetch_max(us, Ordering::Relaxed);
                }
            }
            "snapshot" => {
                if subscribed {
                    shared.resyncs.fetch_add(1, Ordering::Relaxed);
                } else {
                    subscribed = true;
                    shared.subscribed.fetch_add(1, Ordering::Relaxed);
                    drop(permit.take());
                    if i == 0 {
                        let mut c = shared.capture.lock().unwrap_or_else(|p| p.into_inner());
                        c.snapshot = Some(text.to_owned());
                    }
                }
                last = h.position.unwrap_or(last);
                shared.set_position(i, last);
            }
            "heartbeat" => {
                shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                break ("error frame".into(), text.chars().take(300).collect());
            }
            _ => {}
        }
    };
    shared.set_position(i, u64::MAX);
    if subscribed {
        shared.ended.fetch_add(1, Ordering::Relaxed);
        note(&shared.ends, end_reason.0, end_reason.1);
    } else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        note(&shared.failures, end_reason.0, end_reason.1);
    }
}

// ------------------------------------------------------------------------------------------
// The two systems' load

/// Appends through Vigil's store.
struct VigilLoad {
    nats: async_nats::Client,
    generator: Generator,
}

/// Counters of the load (appends or baseline sends).
#[derive(Default)]
struct LoadProgress {
    ok: AtomicU64,
    errors: AtomicU64,
}

/// What the load did.
struct LoadOutcome {
    /// Events appended (or frames broadcast).
    sent: u64,
    /// Failed appends by kind.
    errors: BTreeMap<String, Tally>,
    /// Position every client should reach.
    last_position: u64,
    /// First position of the run's load (Vigil only).
    first_position: u64,
    /// Append ack latency, µs (Vigil only).
    ack: Option<Histogram<u64>>,
    /// Frames in the window (baseline: counted by the server).
    in_window: Option<u64>,
    /// Baseline server's own counters.
    server_note: Option<String>,
}

#[derive(Default)]
struct AppendAcc {
    ok: u64,
    errors: BTreeMap<String, Tally>,
    first: u64,
    last: u64,
    hist: Option<Histogram<u64>>,
}

impl VigilLoad {
    async fn append_one(
        nats: &async_nats::Client,
        stream: events::StreamName,
        event: events::NewEvent,
    ) -> Result<events::store_api::AppendOk, (String, String)> {
        let subject =
            subjects::append_subject(&runtime::store_client::appender_of(nats), stream.category())
                .ok_or_else(|| ("subject".to_owned(), "no append subject".to_owned()))?;
        let request = AppendRequest {
            stream,
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        let payload =
            serde_json::to_vec(&request).map_err(|e| ("encode".to_owned(), e.to_string()))?;
        let reply = nats
            .request(subject, payload.into())
            .await
            .map_err(|e| (format!("nats {:?}", e.kind()), e.to_string()))?;
        match serde_json::from_slice::<AppendReply>(&reply.payload) {
            Ok(AppendReply::Ok(ok)) => Ok(ok),
            Ok(AppendReply::Error(e)) => Err((format!("{:?}", e.code), e.message)),
            Err(e) => Err(("bad reply".to_owned(), e.to_string())),
        }
    }

    /// Appends `n` events, `window` at a time, as fast as the store takes them.
    async fn preload(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut done = 0;
        let mut last = 0;
        while done < n {
            let batch = (n - done).min(64);
            let mut calls = Vec::with_capacity(batch);
            for _ in 0..batch {
                let (stream, event) = self.generator.next_event(OffsetDateTime::now_utc())?;
                let nats = self.nats.clone();
                calls.push(async move { Self::append_one(&nats, stream, event).await });
            }
            for r in futures::future::join_all(calls).await {
                match r {
                    Ok(ok) => last = last.max(ok.last_position),
                    Err((kind, detail)) => bail!("preloading the board: {kind}: {detail}"),
                }
            }
            done += batch;
        }
        Ok(last)
    }

    /// Appends at `rate`/s until `stop` (one event per request, each in its own task so a
    /// slow ack never delays the schedule; at most 1,024 in flight).
    async fn run(&mut self, rate: f64, stop: Instant, progress: Arc<LoadProgress>) -> LoadOutcome {
        let acc = Arc::new(Mutex::new(AppendAcc {
            hist: new_histogram().ok(),
            ..AppendAcc::default()
        }));
        let inflight = Arc::new(Semaphore::new(1024));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            if Instant::now() >= stop {
                break;
            }
            let (stream, event) = match self.generator.next_event(OffsetDateTime::now_utc()) {
                Ok(x) => x,
                Err(e) => {
                    let mut a = acc.lock().unwrap_or_else(|p| p.into_inner());
                    let t = a.errors.entry("generator".into()).or_default();
                    t.count += 1;
                    t.sample = format!("{e:#}");
                    continue;
                }
            };
            let Ok(permit) = inflight.clone().try_acquire_owned() else {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                let mut a = acc.lock().unwrap_or_else(|p| p.into_inner());
                let t = a.errors.entry("over 1,024 in flight".into()).or_default();
                t.count += 1;
                t.sample = "the store is not keeping up with the rate".into();
                continue;
            };
            sent += 1;
            let nats = self.nats.clone();
            let acc = acc.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let r = Self::append_one(&nats, stream, event).await;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut a = acc.lock().unwrap_or_else(|p| p.into_inner());
                match r {
                    Ok(ok) => {
                        progress.ok.fetch_add(1, Ordering::Relaxed);
                        a.ok += 1;
                        a.last = a.last.max(ok.last_position);
                        a.first = if a.first == 0 {
                            ok.first_position
                        } else {
                            a.first.min(ok.first_position)
                        };
                        if let Some(h) = a.hist.as_mut() {
                            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
                        }
                    }
                    Err((kind, detail)) => {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        let t = a.errors.entry(kind).or_default();
                        if t.count == 0 {
                            t.sample = detail;
                        }
                        t.count += 1;
                    }
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        // An append whose ack timed out may still have been committed: the log's head, not
        // the last ack, is where every client must get to.
        let head = self.head().await.unwrap_or(0);
        let mut a = acc.lock().unwrap_or_else(|p| p.into_inner());
        LoadOutcome {
            sent,
            errors: std::mem::take(&mut a.errors),
            last_position: a.last.max(head),
            first_position: a.first,
            ack: a.hist.take(),
            in_window: None,
            server_note: None,
        }
    }

    /// The log's head (this bench is its only writer).
    async fn head(&self) -> anyhow::Result<u64> {
        let req = serde_json::to_vec(&ReadRequest {
            from: u64::MAX,
            limit: 1,
        })?;
        let reply = self.nats.request(subjects::STORE_READ, req.into()).await?;
        match serde_json::from_slice::<ReadReply>(&reply.payload)? {
            ReadReply::Page { head, .. } => Ok(head),
            ReadReply::Error { error } => bail!("reading the head: {}", error.message),
        }
    }

    /// Events the log recorded with `recorded_at` in [from, to), between positions `first`
    /// and `last` (each of the bench's events changes the board, so each is one delta).
    async fn recorded_in_window(
        &self,
        first: u64,
        last: u64,
        from: i64,
        to: i64,
    ) -> anyhow::Result<u64> {
        let mut pos = first.max(1);
        let mut n = 0;
        while pos <= last {
            let req = serde_json::to_vec(&ReadRequest {
                from: pos,
                limit: 1000,
            })?;
            let reply = self.nats.request(subjects::STORE_READ, req.into()).await?;
            let events = match serde_json::from_slice::<ReadReply>(&reply.payload)? {
                ReadReply::Page { events, .. } => events,
                ReadReply::Error { error } => bail!("reading the log: {}", error.message),
            };
            if events.is_empty() {
                break;
            }
            for e in &events {
                if e.position > last {
                    break;
                }
                let at = i64::try_from(e.recorded_at.unix_timestamp_nanos()).unwrap_or(0);
                if at >= from && at < to {
                    n += 1;
                }
            }
            pos = events.last().map_or(last + 1, |e| e.position + 1);
        }
        Ok(n)
    }
}

/// The baseline server, a child process driven over its stdin/stdout.
struct Baseline {
    child: Child,
    stdin: ChildStdin,
    stdout: tokio::io::Lines<BufReader<ChildStdout>>,
    addr: String,
}

impl Baseline {
    async fn start(read_buffer: usize, nodelay: bool) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding vigil-bench's own path")?;
        let mut command = Command::new(exe);
        command
            .args([
                "baseline-server",
                "--listen",
                "127.0.0.1:0",
                "--read-buffer",
            ])
            .arg(read_buffer.to_string());
        if nodelay {
            command.arg("--nodelay");
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting the baseline server")?;
        let stdin = child.stdin.take().context("baseline stdin")?;
        let stdout = child.stdout.take().context("baseline stdout")?;
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), stdout.next_line())
            .await
            .context("the baseline server did not start within 10 s")??
            .context("the baseline server exited at start")?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected baseline greeting {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            stdin,
            stdout,
            addr,
        })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    async fn load_frames(&mut self, capture: &Capture) -> anyhow::Result<()> {
        let snapshot = capture
            .snapshot
            .as_deref()
            .unwrap_or(r#"{"as_of":null,"board":"situation","data":{},"position":0,"type":"snapshot","view":"wall_screen"}"#);
        self.send(&format!("snapshot {snapshot}")).await?;
        for d in &capture.deltas {
            self.send(&format!("delta {d}")).await?;
        }
        Ok(())
    }

    async fn run(
        &mut self,
        rate: f64,
        from: i64,
        to: i64,
        stop: i64,
    ) -> anyhow::Result<LoadOutcome> {
        self.send(&format!("run {rate} {from} {to} {stop}")).await?;
        let line = self
            .stdout
            .next_line()
            .await?
            .context("the baseline server exited during the run")?;
        // done <last_position> <in_window> <sent> <resyncs> <dropped>
        let mut it = line.split_whitespace();
        if it.next() != Some("done") {
            bail!("unexpected baseline answer {line:?}");
        }
        let mut num = || it.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let (last, in_window, sent, resyncs, dropped) = (num(), num(), num(), num(), num());
        Ok(LoadOutcome {
            sent,
            errors: BTreeMap::new(),
            last_position: last,
            first_position: 1,
            ack: None,
            in_window: Some(in_window),
            server_note: Some(format!(
                "baseline server: {resyncs} resyncs, {dropped} clients dropped (send timeout)"
            )),
        })
    }
}

// ------------------------------------------------------------------------------------------
// One phase

enum Target<'a> {
    Vigil(&'a mut VigilLoad),
    Baseline(&'a mut Baseline),
}

struct PhaseResult {
    name: &'static str,
    wanted: usize,
    subscribed: usize,
    failed: usize,
    failures: BTreeMap<String, Tally>,
    connect_secs: f64,
    rss_before: Option<u64>,
    rss_idle: Option<u64>,
    rss_after: Option<u64>,
    hist: Histogram<u64>,
    measured: u64,
    expected_per_client: Option<u64>,
    seconds: f64,
    resyncs: u64,
    order_errors: u64,
    unparsed: u64,
    ended: usize,
    ends: BTreeMap<String, Tally>,
    heartbeats: u64,
    frames: u64,
    bytes: u64,
    drained: bool,
    fold_note: Option<String>,
    load: LoadOutcome,
    capture: Capture,
}

impl PhaseResult {
    fn ms_at(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.max() as f64 / 1000.0
        }
    }

    fn frames_per_sec(&self) -> f64 {
        self.measured as f64 / self.seconds
    }

    fn bytes_per_client(&self) -> Option<f64> {
        match (self.rss_before, self.rss_idle) {
            (Some(b), Some(i)) if self.subscribed > 0 => {
                Some((i as f64 - b as f64) / self.subscribed as f64)
            }
            _ => None,
        }
    }

    /// Deltas that should have arrived (every subscribed client × every event in the window)
    /// but did not.
    fn missing(&self) -> Option<u64> {
        self.expected_per_client
            .map(|e| (e * self.subscribed as u64).saturating_sub(self.measured))
    }
}

fn rss_of(pid: Option<u32>) -> Option<u64> {
    let pid = pid?;
    match util::rss(pid) {
        Ok(b) => Some(b),
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            None
        }
    }
}

async fn run_phase(
    name: &'static str,
    args: &FanoutArgs,
    url: &str,
    pid: Option<u32>,
    mut target: Target<'_>,
) -> anyhow::Result<PhaseResult> {
    let k = args.clients;
    let label = format!("{name} K={k}");
    let shared = Arc::new(Shared::new(k, args.capture)?);
    if let Some(limit) = util::open_file_limit("self")
        && (limit as usize) < k + 64
    {
        eprintln!(
            "[{label}] WARNING: this process may open {limit} files; {k} clients need about {}: expect `Too many open files` (raise `ulimit -n`)",
            k + 64
        );
    }
    if let Some(pid) = pid
        && let Some(limit) = util::open_file_limit(&pid.to_string())
        && (limit as usize) < k + 64
    {
        eprintln!(
            "[{label}] WARNING: the server (pid {pid}) may open {limit} files; {k} clients need about {}",
            k + 64
        );
    }
    let rss_before = rss_of(pid);

    // Connect and subscribe.
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let url: Arc<str> = Arc::from(url);
    let handles: Vec<_> = (0..k)
        .map(|i| tokio::spawn(client(i, url.clone(), shared.clone(), gate.clone())))
        .collect();
    let connect_deadline = started + Duration::from_secs(60 + (k / 100) as u64);
    let mut last_print = Instant::now();
    loop {
        let s = shared.subscribed.load(Ordering::Relaxed);
        let f = shared.failed.load(Ordering::Relaxed);
        if s + f >= k || Instant::now() >= connect_deadline {
            break;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "[{label}] connecting: {s}/{k} subscribed, {f} failed, {} fds open here",
                util::open_files("self").unwrap_or(0)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let subscribed = shared.subscribed.load(Ordering::Relaxed);
    let failed = shared.failed.load(Ordering::Relaxed);
    eprintln!(
        "[{label}] {subscribed}/{k} clients subscribed in {connect_secs:.1} s ({failed} failed)"
    );
    if subscribed < k {
        let failures = shared.failures.lock().unwrap_or_else(|p| p.into_inner());
        for (kind, t) in failures.iter() {
            eprintln!(
                "[{label}]   could not connect: {kind}: {} × — e.g. {}",
                t.count, t.sample
            );
        }
    }

    // Idle, then memory.
    tokio::time::sleep(Duration::from_secs(args.idle)).await;
    let rss_idle = rss_of(pid);
    if let (Some(b), Some(i)) = (rss_before, rss_idle) {
        eprintln!(
            "[{label}] server RSS {} before connecting, {} with {subscribed} idle clients ({} per client)",
            bytes_text(b as f64),
            bytes_text(i as f64),
            bytes_text((i as f64 - b as f64) / subscribed.max(1) as f64)
        );
    }

    // Load.
    let now_ns = unix_nanos();
    let from = now_ns + i64::try_from(args.warmup).unwrap_or(0) * 1_000_000_000;
    let to = from + i64::try_from(args.duration).unwrap_or(0) * 1_000_000_000;
    shared.from.store(from, Ordering::Relaxed);
    shared.to.store(to, Ordering::Relaxed);
    let load_started = Instant::now();
    let stop = load_started + Duration::from_secs(args.warmup + args.duration);
    let progress = Arc::new(LoadProgress::default());
    let is_vigil = matches!(target, Target::Vigil(_));
    let ticker = {
        let shared = shared.clone();
        let progress = progress.clone();
        let label = label.clone();
        let total = args.warmup + args.duration;
        let measure_from = load_started + Duration::from_secs(args.warmup);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            );
            let mut last_frames = shared.frames.load(Ordering::Relaxed);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let phase = if now < measure_from {
                    "warm-up"
                } else if now < stop {
                    "measuring"
                } else {
                    "draining"
                };
                let frames = shared.frames.load(Ordering::Relaxed);
                let max = shared.sec_max_us.swap(0, Ordering::Relaxed);
                let load = if is_vigil {
                    format!(
                        "appended {:>7} (errors {})",
                        thousands(progress.ok.load(Ordering::Relaxed)),
                        progress.errors.load(Ordering::Relaxed)
                    )
                } else {
                    "server broadcasting".to_owned()
                };
                eprintln!(
                    "[{label}] {:>5.1}/{total} s {phase:<9} {load}  frames {:>9}/s  worst latency this second {:>8.1} ms  resyncs {}  ended {}  clients {}",
                    now.duration_since(load_started).as_secs_f64(),
                    thousands(frames - last_frames),
                    max as f64 / 1000.0,
                    shared.resyncs.load(Ordering::Relaxed),
                    shared.ended.load(Ordering::Relaxed),
                    shared.subscribed.load(Ordering::Relaxed)
                        - shared.ended.load(Ordering::Relaxed),
                );
                last_frames = frames;
            }
        })
    };
    let load = match &mut target {
        Target::Vigil(v) => v.run(args.rate, stop, progress.clone()).await,
        Target::Baseline(b) => {
            let stop_ns =
                now_ns + i64::try_from(args.warmup + args.duration).unwrap_or(0) * 1_000_000_000;
            b.run(args.rate, from, to, stop_ns).await?
        }
    };
    if matches!(target, Target::Baseline(_)) {
        progress.ok.store(load.sent, Ordering::Relaxed);
    }
    // Where the gateway's fold is when the appends stop: behind the log means the latency is
    // spent before the fan-out (in the store, NATS or the fold), not in the sockets.
    let mut fold_note = None;
    if is_vigil {
        let m = util::scrape(args.metrics_url.as_deref()).await;
        if let Some(p) = m.get("vigil_gateway_projection_position") {
            let note = format!(
                "when the appends stopped: log head {}, gateway board at {} ({} behind), slowest client at {}",
                load.last_position,
                *p as u64,
                load.last_position.saturating_sub(*p as u64),
                shared.min_position().map_or("-".into(), |p| p.to_string())
            );
            eprintln!("[{label}] {note}");
            fold_note = Some(note);
        }
    }

    // Drain: every connected client reaches the last position. Appends whose ack timed out
    // may still be committed while the store works through its queue, so the log's head is
    // read again every second until it stops moving.
    let mut load = load;
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    let mut head_checked = Instant::now();
    let drained = loop {
        if let Target::Vigil(v) = &target
            && head_checked.elapsed() >= Duration::from_secs(1)
        {
            head_checked = Instant::now();
            if let Ok(h) = v.head().await {
                load.last_position = load.last_position.max(h);
            }
        }
        match shared.min_position() {
            None => break true,
            Some(p)
                if p >= load.last_position && head_checked.elapsed() < Duration::from_secs(1) =>
            {
                // Reached the head read less than a second ago: read it once more.
                if let Target::Vigil(v) = &target
                    && let Ok(h) = v.head().await
                    && h > load.last_position
                {
                    load.last_position = h;
                    continue;
                }
                break true;
            }
            Some(_) if Instant::now() >= drain_deadline => break false,
            Some(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    ticker.abort();
    if !drained {
        eprintln!(
            "[{label}] WARNING: after {} s some clients still lack position {} (slowest at {:?})",
            args.drain_timeout,
            load.last_position,
            shared.min_position()
        );
    }
    let rss_after = rss_of(pid);
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }

    let expected_per_client = match &target {
        Target::Vigil(v) if load.first_position > 0 => {
            match v
                .recorded_in_window(load.first_position, load.last_position, from, to)
                .await
            {
                Ok(n) => Some(n),
                Err(e) => {
                    eprintln!("[{label}] could not count the events in the window: {e:#}");
                    None
                }
            }
        }
        Target::Vigil(_) => None,
        Target::Baseline(_) => load.in_window,
    };
    let capture = std::mem::take(&mut *shared.capture.lock().unwrap_or_else(|p| p.into_inner()));
    let failures = std::mem::take(&mut *shared.failures.lock().unwrap_or_else(|p| p.into_inner()));
    let ends = std::mem::take(&mut *shared.ends.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(PhaseResult {
        name,
        wanted: k,
        subscribed,
        failed,
        failures,
        connect_secs,
        rss_before,
        rss_idle,
        rss_after,
        hist: shared.merged()?,
        measured: shared.measured.load(Ordering::Relaxed),
        expected_per_client,
        seconds: args.duration as f64,
        resyncs: shared.resyncs.load(Ordering::Relaxed),
        order_errors: shared.order_errors.load(Ordering::Relaxed),
        unparsed: shared.unparsed.load(Ordering::Relaxed),
        ended: shared.ended.load(Ordering::Relaxed),
        ends,
        heartbeats: shared.heartbeats.load(Ordering::Relaxed),
        frames: shared.frames.load(Ordering::Relaxed),
        bytes: shared.bytes.load(Ordering::Relaxed),
        drained,
        fold_note,
        load,
        capture,
    })
}

// ------------------------------------------------------------------------------------------
// The run

/// Runs `vigil-bench fanout`.
pub async fn run(args: FanoutArgs) -> anyhow::Result<()> {
    if args.clients == 0 || args.duration == 0 || args.rate.is_nan() || args.rate <= 0.0 {
        bail!("--clients, --duration and --rate must be > 0");
    }
    println!(
        "vigil-bench fanout: {} clients on the situation board (wall_screen) × {} events/s, {} s warm-up + {} s measured",
        args.clients, args.rate, args.warmup, args.duration
    );
    util::wait_ready(&args.http_url).await?;
    let nats = args.nats.connect("vigil-bench-fanout").await?;
    let mut vigil = VigilLoad {
        nats,
        generator: Generator::new(args.seed)?,
    };
    if args.preload > 0 {
        let t = Instant::now();
        let head = vigil.preload(args.preload).await?;
        eprintln!(
            "[fanout] preloaded {} events in {:.1} s (log head {head}); waiting for the gateway to fold them",
            args.preload,
            t.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let metrics_before = util::scrape(args.metrics_url.as_deref()).await;
    let v = run_phase(
        "vigil",
        &args,
        &args.ws_url,
        args.vigil_pid,
        Target::Vigil(&mut vigil),
    )
    .await?;
    let metrics_after = util::scrape(args.metrics_url.as_deref()).await;
    let mix = vigil.generator.mix();
    println!(
        "  events: {} IncidentReported, {} IncidentClosed, {} AreaSecurityLevelSet over {} countries (preload included)",
        mix.reported,
        mix.closed,
        mix.levels,
        vigil.generator.country_count()
    );
    print_phase(&v);
    print_metrics(&metrics_before, &metrics_after);

    let b = if args.no_baseline {
        None
    } else {
        // Let the gateway's sockets close before the baseline takes the machine.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut server = Baseline::start(args.baseline_read_buffer, args.baseline_nodelay).await?;
        server.load_frames(&v.capture).await?;
        let url = format!("ws://{}/ws", server.addr);
        let pid = server.pid();
        let r = run_phase("baseline", &args, &url, pid, Target::Baseline(&mut server)).await?;
        drop(server);
        print_phase(&r);
        Some(r)
    };
    print_summary(&args, &v, b.as_ref());
    Ok(())
}

fn print_phase(r: &PhaseResult) {
    println!();
    println!("== {} ({} clients) ==", r.name, r.wanted);
    println!(
        "  clients: {} subscribed of {} ({} could not connect) in {:.1} s; {} ended before the bench closed them",
        r.subscribed, r.wanted, r.failed, r.connect_secs, r.ended
    );
    for (kind, t) in &r.failures {
        println!(
            "    could not connect: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    for (kind, t) in &r.ends {
        println!(
            "    ended: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let (Some(b), Some(i)) = (r.rss_before, r.rss_idle) {
        println!(
            "  server memory: RSS {} before, {} with the idle clients, {} after the load; {} per idle client",
            bytes_text(b as f64),
            bytes_text(i as f64),
            r.rss_after.map_or("-".into(), |a| bytes_text(a as f64)),
            r.bytes_per_client().map_or("-".into(), bytes_text)
        );
    }
    println!(
        "  load: {} sent{}",
        thousands(r.load.sent),
        r.load
            .ack
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(String::new(), |h| format!(
                "; append ack p50 {:.2} ms, p99 {:.2} ms",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0
            ))
    );
    for (kind, t) in &r.load.errors {
        println!(
            "    append error {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let Some(n) = &r.load.server_note {
        println!("  {n}");
    }
    if let Some(n) = &r.fold_note {
        println!("  {n}");
    }
    println!(
        "  deltas in the window: {} received{}, {:.0} frames/s delivered",
        thousands(r.measured),
        match (r.expected_per_client, r.missing()) {
            (Some(e), Some(m)) => format!(
                " of {} expected ({} events × {} clients; {} missing: skipped by a resync, or not received by the end of the drain)",
                thousands(e * r.subscribed as u64),
                thousands(e),
                r.subscribed,
                thousands(m)
            ),
            _ => String::new(),
        },
        r.frames_per_sec()
    );
    println!(
        "  latency (receive − as_of): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        fmt_ms(r.ms_at(0.5)),
        fmt_ms(r.ms_at(0.99)),
        fmt_ms(r.ms_at(0.999)),
        fmt_ms(r.max_ms())
    );
    println!(
        "  frames in total {} ({}), heartbeats {}, resyncs (snapshot after the first) {}, out-of-order deltas {}, unreadable frames {}{}",
        thousands(r.frames),
        bytes_text(r.bytes as f64),
        thousands(r.heartbeats),
        thousands(r.resyncs),
        r.order_errors,
        r.unparsed,
        if r.drained {
            ""
        } else {
            "; NOT every client got the last delta within the drain timeout"
        }
    );
    if r.name == "vigil" {
        let sizes: Vec<usize> = r.capture.deltas.iter().map(String::len).collect();
        if !sizes.is_empty() {
            println!(
                "  captured {} delta frames for the baseline: {:.0} B on average; snapshot {} B",
                sizes.len(),
                sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
                r.capture.snapshot.as_ref().map_or(0, String::len)
            );
        }
    }
}

fn print_metrics(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    if after.is_empty() {
        return;
    }
    println!("  gateway metrics (after; change during the phase):");
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        println!("    {k} = {v} ({d:+})");
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

fn print_summary(args: &FanoutArgs, v: &PhaseResult, b: Option<&PhaseResult>) {
    println!();
    println!(
        "== fanout summary: {} clients × {} events/s ==",
        args.clients, args.rate
    );
    println!(
        "{:<9} {:>7} {:>11} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "system",
        "clients",
        "mem/client",
        "frames/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "resyncs",
        "missing"
    );
    for r in std::iter::once(v).chain(b) {
        println!(
            "{:<9} {:>7} {:>11} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
            r.name,
            r.subscribed,
            r.bytes_per_client().map_or("-".into(), bytes_text),
            thousands(r.frames_per_sec().round() as u64),
            fmt_ms(r.ms_at(0.5)),
            fmt_ms(r.ms_at(0.99)),
            fmt_ms(r.ms_at(0.999)),
            fmt_ms(r.max_ms()),
            thousands(r.resyncs),
            r.missing().map_or("-".into(), thousands),
        );
    }
    if let Some(b) = b {
        println!(
            "vigil/baseline: p50 {}, p99 {}, p99.9 {}, memory per client {}, frames/s {}",
            ratio(v.ms_at(0.5), b.ms_at(0.5)),
            ratio(v.ms_at(0.99), b.ms_at(0.99)),
            ratio(v.ms_at(0.999), b.ms_at(0.999)),
            match (v.bytes_per_client(), b.bytes_per_client()) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => "-".into(),
            },
            ratio(v.frames_per_sec(), b.frames_per_sec())
        );
    }

    println!();
    println!("== targets (from issue 3) ==");
    let complete = v.subscribed == args.clients && v.missing() == Some(0) && v.ended == 0;
    let why = || {
        let mut w = Vec::new();
        if v.subscribed < args.clients {
            w.push(format!(
                "only {} of {} clients connected",
                v.subscribed, args.clients
            ));
        }
        if let Some(m) = v.missing().filter(|&m| m > 0) {
            w.push(format!(
                "{} deltas not received (skipped by {} resyncs, or still not there at the end of the drain)",
                thousands(m),
                v.resyncs
            ));
        }
        if v.ended > 0 {
            w.push(format!("{} clients were dropped", v.ended));
        }
        if w.is_empty() {
            String::new()
        } else {
            format!(" — {}", w.join("; "))
        }
    };
    let p99 = v.ms_at(0.99);
    let mut judged = false;
    if args.clients == 1000 {
        judged = true;
        let at_rate = (args.rate - 100.0).abs() < 1e-9;
        println!(
            "  1,000 clients × 100 events/s at p99 ≤ {TARGET_1K_P99_MS} ms: p99 {} ms{}{}  {}",
            fmt_ms(p99),
            if at_rate {
                String::new()
            } else {
                format!(" (this run: {} events/s)", args.rate)
            },
            why(),
            if at_rate {
                verdict(complete && p99 <= TARGET_1K_P99_MS)
            } else {
                "n/a"
            }
        );
    }
    if args.clients == 10_000 {
        judged = true;
        println!(
            "  10,000 clients at p99 ≤ {TARGET_10K_P99_MS} ms ({} events/s): p99 {} ms{}  {}",
            args.rate,
            fmt_ms(p99),
            why(),
            verdict(complete && p99 <= TARGET_10K_P99_MS)
        );
        let mem = v.bytes_per_client();
        println!(
            "  10,000 clients with ≤ 64 KiB per idle client: {}  {}",
            mem.map_or("not measured (no --vigil-pid)".into(), bytes_text),
            verdict(
                v.subscribed == args.clients
                    && mem.is_some_and(|m| m <= TARGET_10K_BYTES_PER_CLIENT)
            )
        );
    }
    if !judged {
        println!(
            "  (the issue sets targets at 1,000 and 10,000 clients; none for {})",
            args.clients
        );
    }
    if v.subscribed < args.clients {
        println!(
            "  NOTE: {} of {} clients could not connect; the figures above are for {} clients",
            args.clients - v.subscribed,
            args.clients,
            v.subscribed
        );
    }

    println!();
    println!("== markdown ==");
    println!(
        "| system | clients | events/s | mem/idle client | frames/s | p50 ms | p99 ms | p99.9 ms | resyncs | missing |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in std::iter::once(v).chain(b) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            thousands(r.subscribed as u64),
            args.rate,
            r.bytes_per_client().map_or("-".into(), bytes_text),
            thousands(r.frames_per_sec().round() as u64),
            fmt_ms(r.ms_at(0.5)),
            fmt_ms(r.ms_at(0.99)),
            fmt_ms(r.ms_at(0.999)),
            thousands(r.resyncs),
            r.missing().map_or("-".into(), thousands),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_are_read() {
        assert!(parse_ns("2026-11-27T03:29:25.5Z").is_some());
        assert!(parse_ns("yesterday").is_none());
    }
}
