//! `vigil-bench intake`: field submissions over HTTP at R reports/s, from the POST to the 201
//! and from the POST to the delta on a WebSocket board client, beside a peer in the same run.
//!
//! # One cell (one system at one rate R)
//! - **Open loop**: report n is *scheduled* at `start + n/R`, whatever the answers; a pool of
//!   `--connections` keep-alive HTTP/1.1 connections (a small client written for the bench over
//!   tokio's `TcpStream`, `TCP_NODELAY`) takes the scheduled reports in order, one request per
//!   connection at a time. Every latency is measured **from the scheduled time**, so a report
//!   that waited for a free connection counts its wait (no coordinated omission); the wait
//!   itself is printed too (`send delay`), to show when the bench, not the server, was late.
//! - Each report is the brief's flash report: a fresh UUID v4 `id`, `country` (SO), category
//!   `road_traffic`, severity 3, title `bench <n>`, `occurred_at`, a location; `Authorization:
//!   Bearer <field officer token>`. **POST→201** is recorded when a 201 arrives; its body
//!   carries the report's log `position` P.
//! - One WebSocket client subscribed to the situation board (`duty` view by default) for the
//!   whole run. A report is *on the board* when a `delta` (or a resync `snapshot`) with
//!   position ≥ P arrives (deltas may be coalesced: matched by position); **POST→delta** =
//!   that arrival − the scheduled time. A delta can arrive before its 201: the arrival times of
//!   the deltas are kept, so the order does not matter.
//! - `--warmup` seconds at the rate are not measured, then `--duration` seconds are: the
//!   figures are for the reports scheduled in that window. After the schedule, the bench waits
//!   for every answer (each request times out after `--request-timeout`) and then for every
//!   201's position to reach the board (`--drain-timeout`); what never arrives is counted.
//! - At the start and the end of the measured window it reads `vigil up`'s `/metrics` (the
//!   incidents service's `vigil_command_seconds{command="report"}`, the store's commit time and
//!   group size) and the CPU time of `vigil up`, its nats-server, the peer and the bench
//!   (`/proc/<pid>/stat`) and of the whole machine (`/proc/stat`): where the time goes.
//!
//! # The systems
//! - **vigil**: `POST /api/v1/incidents` on the gateway of `vigil up`: token check, field rate
//!   limits (the script lifts them with `VIGIL_FIELD_REPORTS_PER_MINUTE`), the command over
//!   NATS to the incidents service, its decision, the store's append (fsync), the answers
//!   back; the delta comes from the gateway's fold of the log.
//! - **peer**: the same requests (same bytes, token included) to `vigil-bench intake-peer`, a
//!   separate process on the same HTTP stack (axum) that validates the report into the same
//!   typed event and appends it straight to the same store (see `intake_peer`). Its deltas
//!   come from the same gateway fold to the same board client. The difference between the
//!   two is the gateway's checks and the command hop through the incidents service.
//!
//! Progress goes to stderr every second. The targets (issue: p99 ≤ 50 ms at 1,000 reports/s
//! on a 2-core machine) are printed with PASS/MISS, then a Markdown table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::driver::Tally;
use crate::report::thousands;
use crate::util::{self, PromHistogram, fmt_ms, head, verdict};

/// Largest latency the histograms hold, µs (larger values are clamped).
const MAX_LATENCY_US: u64 = 300_000_000;
/// The target: p99 ≤ 50 ms at 1,000 reports/s.
const TARGET_RATE: f64 = 1000.0;
const TARGET_P99_MS: f64 = 50.0;
/// Largest HTTP response body the client reads.
const MAX_BODY: usize = 1 << 20;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum IntakeSystem {
    /// The gateway of `vigil up`.
    Vigil,
    /// `vigil-bench intake-peer`: same HTTP stack, straight to the store.
    Peer,
}

impl IntakeSystem {
    fn name(self) -> &'static str {
        match self {
            Self::Vigil => "vigil",
            Self::Peer => "peer",
        }
    }
}

/// Flags of `vigil-bench intake`.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Reports per second, one cell per value and system.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
    rates: Vec<f64>,
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured seconds at the rate before each cell's measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Systems, in this order within each rate.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vigil,peer")]
    systems: Vec<IntakeSystem>,
    /// Keep-alive HTTP connections (requests in flight at most).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http_url: String,
    /// The board WebSocket (default: `ws://<host of --http-url>/ws`).
    #[arg(long)]
    ws_url: Option<String>,
    /// A field_officer token whose scope is --country (`vigil token create --role
    /// field_officer --scope SO`).
    #[arg(long, env = "VIGIL_BENCH_FIELD_TOKEN", hide_env_values = true)]
    field_token: String,
    /// A token for the board client (duty_officer for the `duty` view, or wall_screen).
    #[arg(long, env = "VIGIL_BENCH_BOARD_TOKEN", hide_env_values = true)]
    board_token: String,
    /// The board view the client asks for (`duty` or `wall_screen`; the token's role decides).
    #[arg(long, default_value = "duty")]
    view: String,
    /// Country of the reports (the field officer's scope).
    #[arg(long, default_value = "SO")]
    country: String,
    /// NATS URL of the store, for the peer.
    #[arg(long, default_value = "nats://127.0.0.1:4290")]
    nats_url: String,
    /// Data directory of the `vigil up` under test: the peer connects to NATS as its `cli` user
    /// (`secrets/nats-users.json`); the bench reads `nats/nats-server.pid` for the CPU figures.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// NATS user for the peer (instead of --data-dir).
    #[arg(long, env = "VIGIL_BENCH_NATS_USER")]
    nats_user: Option<String>,
    /// NATS password of --nats-user.
    #[arg(long, env = "VIGIL_BENCH_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// `vigil up`'s Prometheus page (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    metrics_url: Option<String>,
    /// PID of the `vigil up` process (CPU time).
    #[arg(long)]
    vigil_pid: Option<u32>,
    /// Seconds before a request counts as unanswered (the gateway answers 408 after 15).
    #[arg(long, default_value_t = 20)]
    request_timeout: u64,
    /// Seconds to wait, after the last answer, for the last report to reach the board.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,
    /// Seconds of quiet between cells.
    #[arg(long, default_value_t = 2)]
    pause: u64,
}

// ------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client, just enough for JSON answers from hyper

/// One answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
    /// The server will close the connection after this answer.
    close: bool,
}

struct HttpConn {
    io: BufReader<TcpStream>,
}

impl HttpConn {
    async fn connect(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            io: BufReader::with_capacity(16 * 1024, stream),
        })
    }

    async fn line(&mut self, line: &mut String) -> anyhow::Result<()> {
        line.clear();
        if self.io.read_line(line).await? == 0 {
            bail!("connection closed by the server");
        }
        Ok(())
    }

    /// Writes `request` (a whole HTTP/1.1 request) and reads one answer.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
        self.io.get_mut().write_all(request).await?;
        let mut line = String::new();
        self.line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        loop {
            self.line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim(), v.trim());
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse::<usize>().ok();
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.to_ascii_lowercase().contains("chunked");
                } else if k.eq_ignore_ascii_case("connection") {
                    close = v.eq_ignore_ascii_case("close");
                }
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                self.line(&mut line).await?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .with_context(|| format!("bad chunk size {line:?}"))?;
                if body.len() + size > MAX_BODY {
                    bail!("answer over {MAX_BODY} bytes");
                }
                let start = body.len();
                body.resize(start + size, 0);
                self.io
                    .read_exact(body.get_mut(start..).unwrap_or_default())
                    .await?;
                self.line(&mut line).await?; // the CRLF after the chunk (or the trailer's end)
                if size == 0 {
                    break;
                }
            }
            body
        } else if let Some(n) = length {
            if n > MAX_BODY {
                bail!("answer of {n} bytes");
            }
            let mut body = vec![0; n];
            self.io.read_exact(&mut body).await?;
            body
        } else {
            close = true;
            let mut body = Vec::new();
            (&mut self.io)
                .take(MAX_BODY as u64)
                .read_to_end(&mut body)
                .await?;
            body
        };
        Ok(Answer {
            status,
            body,
            close,
        })
    }
}

/// `http://host:port[/…]` → `host:port`.
fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

/// The report body the brief gives, with a fresh id.
fn report_body(n: u64, country: &str) -> String {
    serde_json::json!({
        "id": Uuid::new_v4(),
        "country": country,
        "category": "road_traffic",
        "severity": 3,
        "title": format!("bench {n}"),
        "occurred_at": "2026-11-27T03:00:00Z",
        "location": {"lat": 2.04, "lon": 45.3},
    })
    .to_string()
}

fn request_bytes(host: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /api/v1/incidents HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[derive(Deserialize)]
struct Ack {
    position: u64,
}

// ------------------------------------------------------------------------------------------
// The board client and the match of positions

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// Reports waiting for their delta, and the deltas' arrival times.
struct Tracker {
    /// Highest board position seen.
    board_at: u64,
    /// When each delta (by its position) arrived, this cell.
    arrivals: BTreeMap<u64, Instant>,
    /// Acknowledged reports not yet on the board: position → (scheduled, measured).
    pending: BTreeMap<u64, (Instant, bool)>,
    /// POST→delta of measured reports, µs.
    hist: Histogram<u64>,
    /// Largest POST→delta since the last progress line, µs.
    sec_max_us: u64,
}

impl Tracker {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            board_at: 0,
            arrivals: BTreeMap::new(),
            pending: BTreeMap::new(),
            hist: new_histogram()?,
            sec_max_us: 0,
        })
    }

    fn reset(&mut self) -> anyhow::Result<()> {
        self.arrivals.clear();
        self.pending.clear();
        self.hist = new_histogram()?;
        self.sec_max_us = 0;
        Ok(())
    }

    fn complete(&mut self, took: Duration, measured: bool) {
        let us = micros(took);
        self.sec_max_us = self.sec_max_us.max(us);
        if measured {
            self.hist.saturating_record(us);
        }
    }

    /// The board reached `position` at `now`.
    fn on_board(&mut self, position: u64, now: Instant) {
        if position > self.board_at {
            self.board_at = position;
            self.arrivals.insert(position, now);
        }
        let rest = self.pending.split_off(&position.saturating_add(1));
        let done = std::mem::replace(&mut self.pending, rest);
        for (_, (scheduled, measured)) in done {
            self.complete(now.saturating_duration_since(scheduled), measured);
        }
    }

    /// A report scheduled at `scheduled` was acknowledged at `position`.
    fn on_ack(&mut self, position: u64, scheduled: Instant, measured: bool) {
        let arrived = self.arrivals.range(position..).next().map(|(_, &t)| t);
        match arrived {
            Some(t) => self.complete(t.saturating_duration_since(scheduled), measured),
            None => {
                self.pending.insert(position, (scheduled, measured));
            }
        }
    }
}

/// What the board client saw over the whole run.
#[derive(Default)]
struct BoardStats {
    deltas: AtomicU64,
    bytes: AtomicU64,
    resyncs: AtomicU64,
    ended: Mutex<Option<String>>,
}

/// Connects, subscribes, and returns once the first snapshot is in; then keeps feeding
/// `tracker` from a task until the connection ends.
async fn start_board_client(
    url: &str,
    subscribe: String,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<BoardStats>,
) -> anyhow::Result<(u64, usize)> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(url, Some(util::ws_client_config()), true),
    )
    .await
    .with_context(|| format!("{url}: no WebSocket within 30 s"))?
    .with_context(|| format!("connecting to {url}"))?;
    ws.send(Message::Text(subscribe.into()))
        .await
        .context("sending the subscribe")?;
    let (position, size) = loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no snapshot within 30 s of subscribing")?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => bail!("the gateway closed the board socket: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("board socket: {e}"),
            None => bail!("the board socket ended before the snapshot"),
        };
        match head(text.as_str()) {
            Some(h) if h.kind == "snapshot" => break (h.position.unwrap_or(0), text.len()),
            Some(h) if h.kind == "error" => bail!("the gateway refused the subscribe: {text}"),
            _ => continue,
        }
    };
    tracker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .on_board(position, Instant::now());
    tokio::spawn(async move {
        let why = loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => break format!("closed by the gateway: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break format!("socket error: {e}"),
                None => break "the socket ended".to_owned(),
            };
            let now = Instant::now();
            let Some(h) = head(text.as_str()) else {
                continue;
            };
            match h.kind {
                "delta" | "snapshot" => {
                    if h.kind == "delta" {
                        stats.deltas.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    } else {
                        stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(p) = h.position {
                        tracker
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .on_board(p, now);
                    }
                }
                "error" => {
                    break format!(
                        "error frame: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
                _ => {}
            }
        };
        eprintln!("[intake] WARNING: the board client stopped: {why}");
        *stats.ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    });
    Ok((position, size))
}

// ------------------------------------------------------------------------------------------
// The peer process

struct PeerProcess {
    child: Child,
    addr: String,
}

impl PeerProcess {
    async fn start(args: &IntakeArgs) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding vigil-bench's own path")?;
        let mut command = Command::new(exe);
        command
            .args(["intake-peer", "--listen", "127.0.0.1:0", "--nats-url"])
            .arg(&args.nats_url);
        if let Some(dir) = &args.data_dir {
            command.arg("--data-dir").arg(dir);
        }
        if let (Some(u), Some(p)) = (&args.nats_user, &args.nats_password) {
            command
                .env("VIGIL_BENCH_NATS_USER", u)
                .env("VIGIL_BENCH_NATS_PASSWORD", p);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting vigil-bench intake-peer")?;
        let stdout = child.stdout.take().context("peer stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .context("the peer did not start within 15 s")??
            .context("the peer exited at start")?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected peer greeting {line:?}"))?
            .to_owned();
        Ok(Self { child, addr })
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

// ------------------------------------------------------------------------------------------
// One cell

struct Job {
    n: u64,
    scheduled: Instant,
    measured: bool,
}

/// Counters and histograms the connection workers share.
struct CellShared {
    measure_from: Instant,
    measure_to: Instant,
    /// Taken by a connection.
    started: AtomicU64,
    /// Answered (any status) or failed.
    finished: AtomicU64,
    created: AtomicU64,
    failed: AtomicU64,
    /// 201s that arrived inside the measured window.
    created_in_window: AtomicU64,
    /// Measured reports answered 201.
    measured_created: AtomicU64,
    sec_max_http_us: AtomicU64,
    hist: Mutex<Histogram<u64>>,
    send_delay: Mutex<Histogram<u64>>,
    errors: Mutex<BTreeMap<String, Tally>>,
    /// Errors of measured reports.
    measured_errors: AtomicU64,
    tracker: Arc<Mutex<Tracker>>,
}

impl CellShared {
    fn error(&self, kind: String, detail: String, measured: bool) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if measured {
            self.measured_errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut m = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let t = m.entry(kind).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }
}

struct Target {
    addr: String,
    token: String,
    country: String,
    timeout: Duration,
}

async fn worker(
    target: Arc<Target>,
    jobs: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>,
    shared: Arc<CellShared>,
    mut conn: Option<HttpConn>,
) {
    loop {
        let job = {
            let mut rx = jobs.lock().await;
            rx.recv().await
        };
        let Some(job) = job else {
            break;
        };
        shared.started.fetch_add(1, Ordering::Relaxed);
        let request = request_bytes(
            &target.addr,
            &target.token,
            &report_body(job.n, &target.country),
        );
        let sent = Instant::now();
        if job.measured {
            shared
                .send_delay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .saturating_record(micros(sent.saturating_duration_since(job.scheduled)));
        }
        let exchange = async {
            if conn.is_none() {
                conn = Some(HttpConn::connect(&target.addr).await?);
            }
            match conn.as_mut() {
                Some(c) => c.exchange(&request).await,
                None => bail!("no connection"),
            }
        };
        let result = tokio::time::timeout(target.timeout, exchange).await;
        let now = Instant::now();
        match result {
            Ok(Ok(answer)) => {
                if answer.close {
                    conn = None;
                }
                if answer.status == 201 {
                    match serde_json::from_slice::<Ack>(&answer.body) {
                        Ok(ack) => {
                            let took = micros(now.saturating_duration_since(job.scheduled));
                            shared.created.fetch_add(1, Ordering::Relaxed);
                            shared.sec_max_http_us.fetch_max(took, Ordering::Relaxed);
                            if now >= shared.measure_from && now < shared.measure_to {
                                shared.created_in_window.fetch_add(1, Ordering::Relaxed);
                            }
                            if job.measured {
                                shared.measured_created.fetch_add(1, Ordering::Relaxed);
                                shared
                                    .hist
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .saturating_record(took);
                            }
                            shared
                                .tracker
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .on_ack(ack.position, job.scheduled, job.measured);
                        }
                        Err(e) => shared.error(
                            "201 without a position".into(),
                            format!("{e}: {}", String::from_utf8_lossy(&answer.body)),
                            job.measured,
                        ),
                    }
                } else {
                    shared.error(
                        format!("HTTP {}", answer.status),
                        String::from_utf8_lossy(&answer.body)
                            .chars()
                            .take(200)
                            .collect(),
                        job.measured,
                    );
                }
            }
            Ok(Err(e)) => {
                conn = None;
                let text = format!("{e:#}");
                shared.error(util::error_kind(&text), text, job.measured);
            }
            Err(_) => {
                conn = None;
                shared.error(
                    "timeout".into(),
                    format!("no answer within {:?}", target.timeout),
                    job.measured,
                );
            }
        }
        shared.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// A reading of the server side at one instant.
struct Sample {
    page: Option<String>,
    cpu: Vec<Option<f64>>,
    /// CPU seconds of `vigil up`'s threads, by name.
    threads: BTreeMap<String, f64>,
    /// `vigil up`'s resident memory, bytes.
    rss: Option<u64>,
    machine: Option<(u64, u64)>,
    at: Instant,
}

/// The processes whose CPU time is read: (name, pid).
type Procs = Vec<(&'static str, Option<u32>)>;

async fn sample(metrics_url: Option<&str>, procs: &Procs) -> Sample {
    let page = util::scrape_page(metrics_url).await;
    let vigil = procs
        .iter()
        .find(|(name, _)| *name == VIGIL_PROC)
        .and_then(|(_, pid)| *pid);
    Sample {
        page,
        cpu: procs
            .iter()
            .map(|(_, pid)| pid.and_then(util::cpu_seconds))
            .collect(),
        threads: vigil.map(util::thread_cpu).unwrap_or_default(),
        rss: vigil.and_then(|pid| util::rss(pid).ok()),
        machine: util::machine_ticks(),
        at: Instant::now(),
    }
}

/// The name of `vigil up` among the processes whose CPU time is read.
const VIGIL_PROC: &str = "vigil up";

/// (log head, gateway board position) from a Prometheus page of `vigil up`.
fn fold_position(page: &str) -> Option<(u64, u64)> {
    let head = util::prom_sum(page, "vigil_store_head_position", &[])?;
    let board = util::prom_sum(page, "vigil_gateway_projection_position", &[])?;
    Some((head as u64, board as u64))
}

/// The server side over the measured window.
#[derive(Default)]
struct ServerSide {
    /// The incidents service's `report` command time.
    command: Option<PromHistogram>,
    /// The store's commit (fsync) time.
    commit: Option<PromHistogram>,
    /// Events per store commit.
    group: Option<PromHistogram>,
    /// Deltas the gateway encoded (both views).
    deltas_encoded: Option<f64>,
    /// Cores used by each process: (name, cores).
    cpu: Vec<(&'static str, f64)>,
    /// Cores used by `vigil up`'s busiest threads (by name), most first.
    threads: Vec<(String, f64)>,
    /// (log head, gateway board position) at the end of the window.
    fold_at_end: Option<(u64, u64)>,
    /// `vigil up`'s resident memory at the start and the end of the window.
    rss: (Option<u64>, Option<u64>),
    /// Share of the machine's CPU time that was busy.
    machine_busy: Option<f64>,
}

fn server_side(a: &Sample, b: &Sample, procs: &Procs) -> ServerSide {
    let secs = b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-9);
    let hist = |name: &str, labels: &[&str]| {
        let after = PromHistogram::read(b.page.as_deref()?, name, labels)?;
        let before = a
            .page
            .as_deref()
            .and_then(|p| PromHistogram::read(p, name, labels));
        Some(after.since(before.as_ref()))
    };
    let counter = |name: &str| {
        let after = util::prom_sum(b.page.as_deref()?, name, &[])?;
        let before = a
            .page
            .as_deref()
            .and_then(|p| util::prom_sum(p, name, &[]))
            .unwrap_or(0.0);
        Some(after - before)
    };
    ServerSide {
        command: hist(
            "vigil_command_seconds",
            &["service=\"incidents\"", "command=\"report\""],
        ),
        commit: hist("vigil_store_commit_seconds", &[]),
        group: hist("vigil_store_group_events", &[]),
        deltas_encoded: counter("vigil_gateway_deltas_encoded_total"),
        cpu: procs
            .iter()
            .zip(a.cpu.iter().zip(&b.cpu))
            .filter_map(|((name, _), (x, y))| Some((*name, (y.as_ref()? - x.as_ref()?) / secs)))
            .collect(),
        threads: {
            let mut t: Vec<(String, f64)> = b
                .threads
                .iter()
                .map(|(name, y)| {
                    let x = a.threads.get(name).copied().unwrap_or(0.0);
                    (name.clone(), (y - x) / secs)
                })
                .filter(|(_, c)| *c >= 0.01)
                .collect();
            t.sort_by(|x, y| y.1.total_cmp(&x.1));
            t
        },
        fold_at_end: b.page.as_deref().and_then(fold_position),
        rss: (a.rss, b.rss),
        machine_busy: match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        },
    }
}

struct CellResult {
    system: IntakeSystem,
    rate: f64,
    seconds: f64,
    /// Reports scheduled in the measured window.
    scheduled: u64,
    /// Of those, answered 201.
    created: u64,
    /// Of those, failed (any status but 201, transport error, timeout).
    failed: u64,
    /// Of those, never answered before the bench gave up waiting.
    unanswered: u64,
    /// 201s that arrived inside the measured window, per second.
    created_per_sec: f64,
    errors: BTreeMap<String, Tally>,
    http: Histogram<u64>,
    delta: Histogram<u64>,
    send_delay: Histogram<u64>,
    /// Measured 201s whose position never reached the board client.
    not_on_board: u64,
    /// The board client's position at the end of the window.
    client_at_end: u64,
    server: ServerSide,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.max() as f64 / 1000.0
    }
}

struct CellContext<'a> {
    args: &'a IntakeArgs,
    tracker: Arc<Mutex<Tracker>>,
    board: Arc<BoardStats>,
    procs: Procs,
    seq: &'a mut u64,
}

async fn run_cell(
    ctx: &mut CellContext<'_>,
    system: IntakeSystem,
    addr: &str,
    rate: f64,
) -> anyhow::Result<CellResult> {
    let args = ctx.args;
    let label = format!("{} {rate}/s", system.name());
    ctx.tracker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .reset()?;

    // The pool, connected before the schedule starts.
    let mut conns = Vec::with_capacity(args.connections);
    for _ in 0..args.connections.max(1) {
        conns.push(
            HttpConn::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup);
    let stop = measure_from + Duration::from_secs(args.duration);
    let shared = Arc::new(CellShared {
        measure_from,
        measure_to: stop,
        started: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        created: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        created_in_window: AtomicU64::new(0),
        measured_created: AtomicU64::new(0),
        sec_max_http_us: AtomicU64::new(0),
        hist: Mutex::new(new_histogram()?),
        send_delay: Mutex::new(new_histogram()?),
        errors: Mutex::new(BTreeMap::new()),
        measured_errors: AtomicU64::new(0),
        tracker: ctx.tracker.clone(),
    });
    let target = Arc::new(Target {
        addr: addr.to_owned(),
        token: args.field_token.clone(),
        country: args.country.clone(),
        timeout: Duration::from_secs(args.request_timeout.max(1)),
    });
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let mut workers = tokio::task::JoinSet::new();
    for conn in conns {
        workers.spawn(worker(
            target.clone(),
            rx.clone(),
            shared.clone(),
            Some(conn),
        ));
    }

    // Server-side readings at the start and the end of the measured window.
    let sampler = {
        let url = args.metrics_url.clone();
        let procs = ctx.procs.clone();
        let tracker = ctx.tracker.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let a = sample(url.as_deref(), &procs).await;
            tokio::time::sleep_until(stop.into()).await;
            let client_at = tracker.lock().unwrap_or_else(|p| p.into_inner()).board_at;
            let b = sample(url.as_deref(), &procs).await;
            (a, b, client_at)
        })
    };

    // Progress, every second.
    let sent = Arc::new(AtomicU64::new(0));
    let ticker = {
        let shared = shared.clone();
        let sent = sent.clone();
        let label = label.clone();
        let total = args.warmup + args.duration;
        let tracker = ctx.tracker.clone();
        let metrics_url = args.metrics_url.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                (start + Duration::from_secs(1)).into(),
                Duration::from_secs(1),
            );
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
                let (board_at, waiting, worst_delta) = {
                    let mut t = tracker.lock().unwrap_or_else(|p| p.into_inner());
                    let w = std::mem::take(&mut t.sec_max_us);
                    (t.board_at, t.pending.len(), w)
                };
                let fold = match util::scrape_page(metrics_url.as_deref())
                    .await
                    .as_deref()
                    .and_then(fold_position)
                {
                    Some((head, board)) => format!("  log head {head}, gateway board {board}"),
                    None => String::new(),
                };
                let s = sent.load(Ordering::Relaxed);
                let started = shared.started.load(Ordering::Relaxed);
                let finished = shared.finished.load(Ordering::Relaxed);
                eprintln!(
                    "[intake {label}] {:>5.1}/{total} s {phase:<9} sent {:>6}  201 {:>6}  errors {}  in flight {}  queued {}  client board at {}  awaiting delta {}{fold}  worst this second: POST→201 {} ms, POST→delta {} ms",
                    now.saturating_duration_since(start).as_secs_f64(),
                    thousands(s),
                    thousands(shared.created.load(Ordering::Relaxed)),
                    shared.failed.load(Ordering::Relaxed),
                    started.saturating_sub(finished),
                    s.saturating_sub(started),
                    board_at,
                    waiting,
                    fmt_ms(shared.sec_max_http_us.swap(0, Ordering::Relaxed) as f64 / 1000.0),
                    fmt_ms(worst_delta as f64 / 1000.0),
                );
            }
        })
    };

    // The open-loop schedule.
    let total = ((args.warmup + args.duration) as f64 * rate).round() as u64;
    let mut scheduled_measured = 0u64;
    for i in 0..total {
        let at = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let measured = at >= measure_from && at < stop;
        scheduled_measured += u64::from(measured);
        *ctx.seq += 1;
        if tx
            .send(Job {
                n: *ctx.seq,
                scheduled: at,
                measured,
            })
            .is_err()
        {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    drop(tx);

    // Every answer (or its timeout); then every position on the board.
    let answer_deadline = Instant::now()
        + Duration::from_secs(args.request_timeout.max(1) + args.drain_timeout)
        + Duration::from_secs_f64(
            sent.load(Ordering::Relaxed)
                .saturating_sub(shared.finished.load(Ordering::Relaxed)) as f64
                / rate,
        );
    loop {
        tokio::select! {
            j = workers.join_next() => if j.is_none() { break },
            _ = tokio::time::sleep_until(answer_deadline.into()) => {
                eprintln!("[intake {label}] WARNING: gave up waiting for the last answers");
                workers.abort_all();
                break;
            }
        }
    }
    let unanswered = scheduled_measured.saturating_sub(
        shared.measured_created.load(Ordering::Relaxed)
            + shared.measured_errors.load(Ordering::Relaxed),
    );
    let board_deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    loop {
        let waiting = ctx
            .tracker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pending
            .len();
        if waiting == 0 {
            break;
        }
        if Instant::now() >= board_deadline {
            eprintln!(
                "[intake {label}] WARNING: {waiting} acknowledged reports not on the board after {} s",
                args.drain_timeout
            );
            break;
        }
        if ctx
            .board
            .ended
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    ticker.abort();
    let (a, b, client_at_end) = sampler.await.context("the metrics sampler failed")?;
    let server = server_side(&a, &b, &ctx.procs);

    let (delta, not_on_board) = {
        let mut t = ctx.tracker.lock().unwrap_or_else(|p| p.into_inner());
        let not_on_board = t.pending.values().filter(|(_, m)| *m).count() as u64;
        (
            std::mem::replace(&mut t.hist, new_histogram()?),
            not_on_board,
        )
    };
    let http = take_histogram(&shared.hist)?;
    let send_delay = take_histogram(&shared.send_delay)?;
    let errors = std::mem::take(&mut *shared.errors.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(CellResult {
        system,
        rate,
        seconds: args.duration as f64,
        scheduled: scheduled_measured,
        created: shared.measured_created.load(Ordering::Relaxed),
        failed: shared.measured_errors.load(Ordering::Relaxed),
        unanswered,
        created_per_sec: shared.created_in_window.load(Ordering::Relaxed) as f64
            / (args.duration as f64).max(1e-9),
        errors,
        http,
        delta,
        send_delay,
        not_on_board,
        client_at_end,
        server,
    })
}

/// The histogram in `m`, leaving an empty one.
fn take_histogram(m: &Mutex<Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let fresh = new_histogram()?;
    Ok(std::mem::replace(
        &mut *m.lock().unwrap_or_else(|p| p.into_inner()),
        fresh,
    ))
}

/// One report and its delta, before the first cell of a system: the token, the route and the
/// board work, or the bench stops with the reason.
async fn probe(
    system: IntakeSystem,
    addr: &str,
    args: &IntakeArgs,
    tracker: &Arc<Mutex<Tracker>>,
    seq: &mut u64,
) -> anyhow::Result<()> {
    tracker.lock().unwrap_or_else(|p| p.into_inner()).reset()?;
    let mut conn = HttpConn::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    *seq += 1;
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(args.request_timeout.max(1)),
        conn.exchange(&request_bytes(
            addr,
            &args.field_token,
            &report_body(*seq, &args.country),
        )),
    )
    .await
    .with_context(|| format!("{}: no answer to the probe report", system.name()))??;
    let took = started.elapsed();
    if answer.status != 201 {
        bail!(
            "{}: the probe report was answered {} {} (a field_officer token with scope {} is needed; and VIGIL_FIELD_REPORTS_PER_MINUTE raised on `vigil up`)",
            system.name(),
            answer.status,
            String::from_utf8_lossy(&answer.body),
            args.country
        );
    }
    let ack: Ack = serde_json::from_slice(&answer.body).context("reading the probe's 201")?;
    tracker
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .on_ack(ack.position, started, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let board_at = tracker.lock().unwrap_or_else(|p| p.into_inner()).board_at;
        if board_at >= ack.position {
            eprintln!(
                "[intake] probe {}: 201 in {:.1} ms at position {}; on the board within {:.1} ms",
                system.name(),
                took.as_secs_f64() * 1000.0,
                ack.position,
                started.elapsed().as_secs_f64() * 1000.0
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{}: the probe report (position {}) did not reach the board client within 10 s (board at {board_at})",
                system.name(),
                ack.position
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Printing

fn print_cell(r: &CellResult) {
    println!();
    println!(
        "== {} at {} reports/s: {} reports scheduled in the {} s window ==",
        r.system.name(),
        r.rate,
        thousands(r.scheduled),
        r.seconds
    );
    println!(
        "  answers: {} × 201, {} failed, {} unanswered; 201s arriving in the window: {:.1}/s",
        thousands(r.created),
        thousands(r.failed),
        thousands(r.unanswered),
        r.created_per_sec
    );
    for (kind, t) in &r.errors {
        println!(
            "    {kind}: {} × (warm-up included) — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    println!(
        "  POST → 201:   p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        fmt_ms(ms(&r.http, 0.5)),
        fmt_ms(ms(&r.http, 0.99)),
        fmt_ms(ms(&r.http, 0.999)),
        fmt_ms(max_ms(&r.http))
    );
    println!(
        "  POST → delta: p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms ({} reports on the board, {} never seen there)",
        fmt_ms(ms(&r.delta, 0.5)),
        fmt_ms(ms(&r.delta, 0.99)),
        fmt_ms(ms(&r.delta, 0.999)),
        fmt_ms(max_ms(&r.delta)),
        thousands(r.delta.len()),
        thousands(r.not_on_board)
    );
    println!(
        "  bench send delay (scheduled → written to a connection): p50 {} ms, p99 {} ms, max {} ms",
        fmt_ms(ms(&r.send_delay, 0.5)),
        fmt_ms(ms(&r.send_delay, 0.99)),
        fmt_ms(max_ms(&r.send_delay))
    );
    let s = &r.server;
    let hist_text = |h: &PromHistogram| {
        format!(
            "{} × mean {:.2} ms, p50 ≤ {} ms, p99 ≤ {} ms",
            thousands(h.count.round().max(0.0) as u64),
            h.mean() * 1000.0,
            bound_ms(h.quantile_bound(0.5)),
            bound_ms(h.quantile_bound(0.99))
        )
    };
    if let Some(h) = s.command.as_ref().filter(|h| h.count > 0.0) {
        println!(
            "  incidents service, `report` command (decode → store ack): {}",
            hist_text(h)
        );
    }
    if let Some(h) = s.commit.as_ref().filter(|h| h.count > 0.0) {
        println!("  store commits (write + fsync): {}", hist_text(h));
    }
    if let Some(h) = s.group.as_ref().filter(|h| h.count > 0.0) {
        println!(
            "  store group commit: {:.2} events per commit on average",
            h.mean()
        );
    }
    if let Some(d) = s.deltas_encoded {
        println!(
            "  gateway deltas encoded (both views): {}",
            thousands(d.max(0.0) as u64)
        );
    }
    if let Some((head, board)) = s.fold_at_end {
        println!(
            "  at the end of the window: log head {head}, gateway board at {board} ({} behind), this client at {}",
            head.saturating_sub(board),
            r.client_at_end
        );
    }
    if !s.cpu.is_empty() || s.machine_busy.is_some() {
        println!(
            "  CPU over the window (cores): {}{}",
            s.cpu
                .iter()
                .map(|(n, c)| format!("{n} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            s.machine_busy.map_or(String::new(), |b| format!(
                "; together {:.2} of {} cores; machine {:.0} % busy by /proc/stat (tick-sampled: a rough figure)",
                s.cpu.iter().map(|(_, c)| c).sum::<f64>(),
                util::cores(),
                b * 100.0
            ))
        );
    }
    if let (Some(x), Some(y)) = s.rss {
        println!(
            "  vigil up's memory (RSS): {} at the start of the window, {} at the end",
            util::bytes_text(x as f64),
            util::bytes_text(y as f64)
        );
    }
    if !s.threads.is_empty() {
        println!(
            "  vigil up's busiest threads (cores): {}",
            s.threads
                .iter()
                .take(6)
                .map(|(n, c)| format!("{n} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn bound_ms(le: f64) -> String {
    if le.is_nan() {
        "-".into()
    } else if le.is_infinite() {
        "∞".into()
    } else {
        format!("{}", le * 1000.0)
    }
}

fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Cores used over the window by `vigil up`, and by every process the bench follows
/// (`vigil up`, its nats-server, the peer, the bench itself).
fn cpu_text(r: &CellResult) -> String {
    if r.server.cpu.is_empty() {
        return "-".into();
    }
    let all: f64 = r.server.cpu.iter().map(|(_, c)| c).sum();
    let vigil = r
        .server
        .cpu
        .iter()
        .find(|(n, _)| *n == VIGIL_PROC)
        .map_or("-".into(), |(_, c)| format!("{c:.2}"));
    format!("{vigil} / {all:.2}")
}

/// `per_rate`: cells per rate (one per system), in the order they ran.
fn print_summary(args: &IntakeArgs, results: &[CellResult], per_rate: usize) {
    let board_view = &args.view;
    println!();
    println!(
        "== intake summary: {} s measured per cell, {} connections, board view {board_view} ==",
        args.duration, args.connections
    );
    println!(
        "{:>7} {:<6} {:>8} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>11}",
        "rate/s",
        "system",
        "201/s",
        "errors",
        "201 p50",
        "p99",
        "p99.9",
        "max",
        "Δ p50",
        "p99",
        "p99.9",
        "max",
        "CPU cores"
    );
    for r in results {
        println!(
            "{:>7} {:<6} {:>8.1} {:>7} | {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} {:>8} {:>8} | {:>11}",
            r.rate,
            r.system.name(),
            r.created_per_sec,
            thousands(r.failed + r.unanswered),
            fmt_ms(ms(&r.http, 0.5)),
            fmt_ms(ms(&r.http, 0.99)),
            fmt_ms(ms(&r.http, 0.999)),
            fmt_ms(max_ms(&r.http)),
            fmt_ms(ms(&r.delta, 0.5)),
            fmt_ms(ms(&r.delta, 0.99)),
            fmt_ms(ms(&r.delta, 0.999)),
            fmt_ms(max_ms(&r.delta)),
            cpu_text(r)
        );
    }
    println!(
        "(latencies in ms from the scheduled send; Δ = POST → delta on the board client; CPU: cores used by `vigil up` / by it, its nats-server, the peer and the bench, of {})",
        util::cores()
    );
    // Results come rate by rate, each with every system: compare within one rate's cells.
    for cells in results.chunks(per_rate.max(1)) {
        let find = |s| cells.iter().find(|r| r.system == s);
        if let (Some(v), Some(p)) = (find(IntakeSystem::Vigil), find(IntakeSystem::Peer)) {
            println!(
                "vigil/peer at {}/s: POST→201 p50 {}, p99 {}; POST→delta p50 {}, p99 {}",
                v.rate,
                ratio(ms(&v.http, 0.5), ms(&p.http, 0.5)),
                ratio(ms(&v.http, 0.99), ms(&p.http, 0.99)),
                ratio(ms(&v.delta, 0.5), ms(&p.delta, 0.5)),
                ratio(ms(&v.delta, 0.99), ms(&p.delta, 0.99)),
            );
        }
    }

    println!();
    println!("== targets (from the intake issue) ==");
    let judged: Vec<&CellResult> = results
        .iter()
        .filter(|r| r.system == IntakeSystem::Vigil && (r.rate - TARGET_RATE).abs() < 1e-9)
        .collect();
    if judged.is_empty() {
        println!(
            "  the target is set at 1,000 reports/s for vigil; this run has no such cell  n/a"
        );
    }
    for v in judged {
        let clean = v.failed == 0 && v.unanswered == 0;
        let why = if clean {
            String::new()
        } else {
            format!(
                " — {} failed, {} unanswered",
                thousands(v.failed),
                thousands(v.unanswered)
            )
        };
        let p99 = ms(&v.http, 0.99);
        println!(
            "  POST → 201 p99 ≤ {TARGET_P99_MS} ms at 1,000 reports/s: {} ms{why}  {}",
            fmt_ms(p99),
            verdict(clean && p99 <= TARGET_P99_MS)
        );
        let d99 = ms(&v.delta, 0.99);
        let on_board = v.not_on_board == 0;
        println!(
            "  POST → delta p99 ≤ {TARGET_P99_MS} ms at 1,000 reports/s: {} ms{}{}  {}",
            fmt_ms(d99),
            why,
            if on_board {
                String::new()
            } else {
                format!(" — {} reports never on the board", v.not_on_board)
            },
            verdict(clean && on_board && d99 <= TARGET_P99_MS)
        );
    }

    println!();
    println!("== markdown ==");
    println!(
        "| reports/s | system | 201/s | errors | POST→201 p50 ms | p99 ms | p99.9 ms | max ms | POST→delta p50 ms | p99 ms | p99.9 ms | max ms | CPU cores: `vigil up` / all |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            thousands(r.rate.round() as u64),
            r.system.name(),
            r.created_per_sec,
            thousands(r.failed + r.unanswered),
            fmt_ms(ms(&r.http, 0.5)),
            fmt_ms(ms(&r.http, 0.99)),
            fmt_ms(ms(&r.http, 0.999)),
            fmt_ms(max_ms(&r.http)),
            fmt_ms(ms(&r.delta, 0.5)),
            fmt_ms(ms(&r.delta, 0.99)),
            fmt_ms(ms(&r.delta, 0.999)),
            fmt_ms(max_ms(&r.delta)),
            cpu_text(r)
        );
    }
}

// ------------------------------------------------------------------------------------------
// The run

/// Runs `vigil-bench intake`.
pub async fn run(args: IntakeArgs) -> anyhow::Result<()> {
    if args.rates.is_empty() || args.rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
        bail!("--rates needs at least one rate, each > 0");
    }
    if args.duration == 0 || args.connections == 0 {
        bail!("--duration and --connections must be ≥ 1");
    }
    let mut systems = args.systems.clone();
    systems.dedup();
    let gateway = host_port(&args.http_url)?;
    let ws_url = args
        .ws_url
        .clone()
        .unwrap_or_else(|| format!("ws://{gateway}/ws"));
    println!(
        "vigil-bench intake: rates {:?} reports/s × systems {} ; {} s warm-up + {} s measured per cell; {} keep-alive connections; reports for {}; board client on {} (view {})",
        args.rates,
        systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", "),
        args.warmup,
        args.duration,
        args.connections,
        args.country,
        ws_url,
        args.view
    );
    util::wait_ready(&args.http_url).await?;

    let tracker = Arc::new(Mutex::new(Tracker::new()?));
    let board = Arc::new(BoardStats::default());
    let subscribe = serde_json::json!({
        "type": "subscribe",
        "board": "situation",
        "view": args.view,
        "token": args.board_token,
    })
    .to_string();
    let (snapshot_at, snapshot_size) =
        start_board_client(&ws_url, subscribe, tracker.clone(), board.clone()).await?;
    eprintln!(
        "[intake] board client subscribed: snapshot at position {snapshot_at}, {snapshot_size} B"
    );

    let peer = if systems.contains(&IntakeSystem::Peer) {
        let p = PeerProcess::start(&args).await?;
        eprintln!("[intake] peer listening on {}", p.addr);
        Some(p)
    } else {
        None
    };
    let nats_pid = args.data_dir.as_ref().and_then(|d| {
        std::fs::read_to_string(d.join("nats").join("nats-server.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    });
    let procs: Procs = vec![
        (VIGIL_PROC, args.vigil_pid),
        ("nats-server", nats_pid),
        ("peer", peer.as_ref().and_then(PeerProcess::pid)),
        ("vigil-bench", Some(std::process::id())),
    ]
    .into_iter()
    .filter(|(_, pid)| pid.is_some())
    .collect();

    let mut seq = 0u64;
    for &system in &systems {
        let addr = match system {
            IntakeSystem::Vigil => gateway.clone(),
            IntakeSystem::Peer => peer.as_ref().map(|p| p.addr.clone()).unwrap_or_default(),
        };
        probe(system, &addr, &args, &tracker, &mut seq).await?;
    }

    let mut ctx = CellContext {
        args: &args,
        tracker: tracker.clone(),
        board: board.clone(),
        procs,
        seq: &mut seq,
    };
    let mut results = Vec::new();
    for &rate in &args.rates {
        for &system in &systems {
            let addr = match system {
                IntakeSystem::Vigil => gateway.clone(),
                IntakeSystem::Peer => peer.as_ref().map(|p| p.addr.clone()).unwrap_or_default(),
            };
            let r = run_cell(&mut ctx, system, &addr, rate).await?;
            print_cell(&r);
            results.push(r);
            if let Some(why) = board
                .ended
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                bail!("the board client stopped ({why}); the POST→delta figures would be wrong");
            }
            tokio::time::sleep(Duration::from_secs(args.pause)).await;
        }
    }
    println!();
    println!(
        "board client: {} deltas ({}), {} resyncs (snapshot after the first)",
        thousands(board.deltas.load(Ordering::Relaxed)),
        util::bytes_text(board.bytes.load(Ordering::Relaxed) as f64),
        board.resyncs.load(Ordering::Relaxed)
    );
    print_summary(&args, &results, systems.len());
    drop(peer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_complete_reports_whichever_comes_first() {
        let mut t = Tracker::new().unwrap();
        let s = Instant::now();
        // 201 first, then the delta.
        t.on_ack(5, s, true);
        assert_eq!(t.pending.len(), 1);
        t.on_board(6, s + Duration::from_millis(10));
        assert!(t.pending.is_empty());
        // The delta first (coalesced up to 8), then the 201 of 7.
        t.on_board(8, s + Duration::from_millis(20));
        t.on_ack(7, s, true);
        assert!(t.pending.is_empty());
        assert_eq!(t.hist.len(), 2);
        assert_eq!(t.hist.max() / 1000, 20);
        // Not measured: completed, not recorded.
        t.on_ack(9, s, false);
        t.on_board(9, s + Duration::from_millis(1));
        assert_eq!(t.hist.len(), 2);
    }

    #[test]
    fn bodies_and_requests_are_well_formed() {
        let body = report_body(3, "SO");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["title"], "bench 3");
        assert!(Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
        let req = String::from_utf8(request_bytes("h:1", "tok", &body)).unwrap();
        assert!(req.starts_with("POST /api/v1/incidents HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())));
        assert_eq!(
            host_port("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080"
        );
    }
}
