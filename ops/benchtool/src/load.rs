//! What the HTTP benchmarks against a `vigil up` share (`intake`, `clearances`): a keep-alive
//! HTTP/1.1 client, the open-loop schedule and its measured window, latency histograms and
//! error tallies, a tracker of acknowledged writes waiting for a follower of the log (a board
//! client, a service's register) to reach their position, the peer process, and the readings
//! of the server side (Prometheus, `/proc`) over a window, with their printing.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::driver::Tally;
use crate::report::thousands;
use crate::util::{self, NatsArgs, PromHistogram, fmt_ms};

/// Largest latency the histograms hold, µs (larger values are clamped).
pub const MAX_LATENCY_US: u64 = 300_000_000;
/// Largest HTTP response body the client reads.
const MAX_BODY: usize = 1 << 20;

/// A system under test of the HTTP benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Server {
    /// The gateway of `vigil up`.
    Vigil,
    /// `vigil-bench intake-peer`: same HTTP stack, straight to the store.
    Peer,
}

impl Server {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vigil => "vigil",
            Self::Peer => "peer",
        }
    }
}

impl Server {
    /// Where this system listens: the gateway, or the peer (empty when there is none).
    pub fn addr(self, gateway: &str, peer: Option<&PeerProcess>) -> String {
        match self {
            Self::Vigil => gateway.to_owned(),
            Self::Peer => peer.map(|p| p.addr.clone()).unwrap_or_default(),
        }
    }
}

/// The flags the HTTP benchmarks share (each adds its rates and what it sends).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Unmeasured seconds at the rate before each cell's measurement.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Systems, in this order within each rate.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vigil,peer")]
    pub systems: Vec<Server>,
    /// Keep-alive HTTP connections (requests in flight at most).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http_url: String,
    // The store the peer appends to; `--data-dir` also gives the nats-server's PID.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// `vigil up`'s Prometheus page (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// PID of the `vigil up` process (CPU time).
    #[arg(long)]
    pub vigil_pid: Option<u32>,
    /// Seconds before a request counts as unanswered (the gateway answers 408 after 15).
    #[arg(long, default_value_t = 20)]
    pub request_timeout: u64,
    /// Seconds to wait, after the last answer, for the last write to reach its follower (the
    /// board client, the register).
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Seconds of quiet between cells.
    #[arg(long, default_value_t = 2)]
    pub pause: u64,
}

impl RunArgs {
    /// Checks the rates and the counts; the systems, each once.
    pub fn check(&self, rates: &[f64]) -> anyhow::Result<Vec<Server>> {
        if rates.is_empty() || rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
            bail!("--rates needs at least one rate, each > 0");
        }
        if self.duration == 0 || self.connections == 0 {
            bail!("--duration and --connections must be ≥ 1");
        }
        let mut systems = self.systems.clone();
        systems.dedup();
        Ok(systems)
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout.max(1))
    }
}

/// The lock, also after a panic elsewhere (the figures are still worth printing).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------------------------------
// A keep-alive HTTP/1.1 client, just enough for JSON answers from hyper

/// One answer.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
    /// The server will close the connection after this answer.
    pub close: bool,
}

/// One keep-alive connection (`TCP_NODELAY`), one request at a time.
pub struct HttpConn {
    io: BufReader<TcpStream>,
}

impl HttpConn {
    /// Connects to `addr` (`host:port`).
    pub async fn connect(addr: &str) -> std::io::Result<Self> {
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
    pub async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Answer> {
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
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

/// A whole HTTP/1.1 request with a bearer token: a `POST` of JSON `body`, or a `GET`
/// without one.
pub fn request_bytes(path: &str, host: &str, token: &str, body: Option<&str>) -> Vec<u8> {
    match body {
        Some(body) => format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
        None => format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
        ),
    }
    .into_bytes()
}

/// Why an exchange failed: (kind to group by, details).
pub type Failure = (String, String);

/// Sends `request` on `conn` (connecting first when there is none) and reads the answer
/// within `timeout`. The connection is dropped when it fails or the server closes it.
pub async fn exchange(
    conn: &mut Option<HttpConn>,
    addr: &str,
    request: &[u8],
    timeout: Duration,
) -> Result<Answer, Failure> {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(HttpConn::connect(addr).await?);
        }
        match conn.as_mut() {
            Some(c) => c.exchange(request).await,
            None => bail!("no connection"),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(answer)) => {
            if answer.close {
                *conn = None;
            }
            Ok(answer)
        }
        Ok(Err(e)) => {
            *conn = None;
            let text = format!("{e:#}");
            Err((util::error_kind(&text), text))
        }
        Err(_) => {
            *conn = None;
            Err(("timeout".into(), format!("no answer within {timeout:?}")))
        }
    }
}

/// An answer with another status than the one expected, as a failure.
pub fn status_failure(answer: &Answer) -> Failure {
    (
        format!("HTTP {}", answer.status),
        String::from_utf8_lossy(&answer.body)
            .chars()
            .take(200)
            .collect(),
    )
}

/// `count` connections to `addr`, made before a schedule starts.
pub async fn connect_pool(addr: &str, count: usize) -> anyhow::Result<Vec<HttpConn>> {
    let mut conns = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        conns.push(
            HttpConn::connect(addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?,
        );
    }
    Ok(conns)
}

/// The log position in a write's answer (`{id, stream, event_id, position, stream_version}`).
#[derive(Deserialize)]
pub struct Ack {
    /// Where the write landed in the log.
    pub position: u64,
}

// ------------------------------------------------------------------------------------------
// Histograms and tallies

/// An empty latency histogram (µs, 3 significant digits).
pub fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

/// `d` in µs, within the histograms' bounds.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros())
        .unwrap_or(u64::MAX)
        .clamp(1, MAX_LATENCY_US)
}

/// Quantile `q` in ms (`NaN` when empty).
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

/// The largest value in ms (`NaN` when empty).
pub fn max_ms(h: &Histogram<u64>) -> f64 {
    if h.is_empty() {
        f64::NAN
    } else {
        h.max() as f64 / 1000.0
    }
}

/// p50, p99, p99.9 and max in ms, as printed in the tables.
pub fn quantiles(h: &Histogram<u64>) -> [String; 4] {
    [
        fmt_ms(ms(h, 0.5)),
        fmt_ms(ms(h, 0.99)),
        fmt_ms(ms(h, 0.999)),
        fmt_ms(max_ms(h)),
    ]
}

/// `p50 … ms, p99 … ms, p99.9 … ms, max … ms`.
pub fn latency_text(h: &Histogram<u64>) -> String {
    let [p50, p99, p999, max] = quantiles(h);
    format!("p50 {p50} ms, p99 {p99} ms, p99.9 {p999} ms, max {max} ms")
}

/// Prints how late the bench wrote the measured requests (when it grows, the connections
/// were all busy with a slow server, not the bench).
pub fn print_send_delay(h: &Histogram<u64>) {
    println!(
        "  bench send delay (scheduled → written to a connection): p50 {} ms, p99 {} ms, max {} ms",
        fmt_ms(ms(h, 0.5)),
        fmt_ms(ms(h, 0.99)),
        fmt_ms(max_ms(h))
    );
}

/// The histogram in `m`, leaving an empty one.
pub fn take_histogram(m: &Mutex<Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let fresh = new_histogram()?;
    Ok(std::mem::replace(&mut *lock(m), fresh))
}

/// Records `d` in the histogram behind `m`.
pub fn record(m: &Mutex<Histogram<u64>>, d: Duration) {
    lock(m).saturating_record(micros(d));
}

/// Failed requests of a cell, by kind.
#[derive(Default)]
pub struct Errors {
    /// Every failure (warm-up included).
    pub failed: AtomicU64,
    /// Failures of measured requests.
    pub measured: AtomicU64,
    kinds: Mutex<BTreeMap<String, Tally>>,
}

impl Errors {
    /// Counts one failure.
    pub fn record(&self, (kind, detail): Failure, measured: bool) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        if measured {
            self.measured.fetch_add(1, Ordering::Relaxed);
        }
        let mut m = lock(&self.kinds);
        let t = m.entry(kind).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }

    /// The tallies by kind, leaving none.
    pub fn take(&self) -> BTreeMap<String, Tally> {
        std::mem::take(&mut *lock(&self.kinds))
    }
}

/// Prints the tallies of [`Errors::take`], one line a kind.
pub fn print_errors(errors: &BTreeMap<String, Tally>) {
    for (kind, t) in errors {
        println!(
            "    {kind}: {} × (warm-up included) — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
}

// ------------------------------------------------------------------------------------------
// Writes waiting for a follower of the log

/// Acknowledged writes waiting for a follower of the log (the board client, a service's
/// register) to reach their position, and the times the follower reached each position.
pub struct Tracker {
    /// Highest position the follower was seen at.
    pub board_at: u64,
    /// When the follower was first seen at each position, this cell.
    arrivals: BTreeMap<u64, Instant>,
    /// Acknowledged writes the follower has not reached: position → (scheduled, measured).
    pub pending: BTreeMap<u64, (Instant, bool)>,
    /// Scheduled → reached, of measured writes, µs.
    pub hist: Histogram<u64>,
    /// Largest scheduled → reached since the last progress line, µs.
    pub sec_max_us: u64,
}

impl Tracker {
    /// Nothing seen, nothing pending.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            board_at: 0,
            arrivals: BTreeMap::new(),
            pending: BTreeMap::new(),
            hist: new_histogram()?,
            sec_max_us: 0,
        })
    }

    /// Forgets the cell (the follower's position stays).
    pub fn reset(&mut self) -> anyhow::Result<()> {
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

    /// The follower reached `position` at `now`.
    pub fn on_board(&mut self, position: u64, now: Instant) {
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

    /// A write scheduled at `scheduled` was acknowledged at `position`.
    pub fn on_ack(&mut self, position: u64, scheduled: Instant, measured: bool) {
        let arrived = self.arrivals.range(position..).next().map(|(_, &t)| t);
        match arrived {
            Some(t) => self.complete(t.saturating_duration_since(scheduled), measured),
            None => {
                self.pending.insert(position, (scheduled, measured));
            }
        }
    }

    /// The histogram of the cell, and how many measured writes the follower never reached.
    pub fn finish(&mut self) -> anyhow::Result<(Histogram<u64>, u64)> {
        let missing = self.pending.values().filter(|(_, m)| *m).count() as u64;
        Ok((std::mem::replace(&mut self.hist, new_histogram()?), missing))
    }
}

// ------------------------------------------------------------------------------------------
// The open loop

/// The times of one cell: the schedule starts at `start`, is measured from `measure_from`
/// and ends at `stop`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The first scheduled send (200 ms from when the window is made).
    pub start: Instant,
    /// The end of the warm-up.
    pub measure_from: Instant,
    /// The end of the schedule.
    pub stop: Instant,
}

impl Window {
    /// `warmup` unmeasured seconds, then `duration` measured ones.
    pub fn new(warmup: u64, duration: u64) -> Self {
        let start = Instant::now() + Duration::from_millis(200);
        let measure_from = start + Duration::from_secs(warmup);
        Self {
            start,
            measure_from,
            stop: measure_from + Duration::from_secs(duration),
        }
    }

    /// Whether `t` is inside the measured part.
    pub fn measures(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.stop
    }

    /// `warm-up`, `measuring` or `draining` at `now`.
    pub fn phase(&self, now: Instant) -> &'static str {
        if now < self.measure_from {
            "warm-up"
        } else if now < self.stop {
            "measuring"
        } else {
            "draining"
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self, now: Instant) -> f64 {
        now.saturating_duration_since(self.start).as_secs_f64()
    }
}

/// The counters and histograms a pool of connection workers shares in one cell.
pub struct Counters {
    /// The cell's times.
    pub window: Window,
    /// Jobs taken by a connection.
    pub started: AtomicU64,
    /// Jobs done or failed.
    pub finished: AtomicU64,
    /// Jobs done (every answer as expected).
    pub done: AtomicU64,
    /// Jobs done with the last answer inside the measured window.
    pub done_in_window: AtomicU64,
    /// Measured jobs done.
    pub measured_done: AtomicU64,
    /// Largest latency since the last progress line, µs.
    pub sec_max_us: AtomicU64,
    /// Scheduled → written to a connection, of measured jobs.
    pub send_delay: Mutex<Histogram<u64>>,
    /// Failed jobs.
    pub errors: Errors,
}

impl Counters {
    /// Nothing counted yet.
    pub fn new(window: Window) -> anyhow::Result<Self> {
        Ok(Self {
            window,
            started: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            done: AtomicU64::new(0),
            done_in_window: AtomicU64::new(0),
            measured_done: AtomicU64::new(0),
            sec_max_us: AtomicU64::new(0),
            send_delay: Mutex::new(new_histogram()?),
            errors: Errors::default(),
        })
    }

    /// A job scheduled at `scheduled` is written to a connection now.
    pub fn sending(&self, scheduled: Instant, measured: bool) {
        self.started.fetch_add(1, Ordering::Relaxed);
        if measured {
            record(
                &self.send_delay,
                Instant::now().saturating_duration_since(scheduled),
            );
        }
    }

    /// An answer at `now` to what was sent (or scheduled) at `from`: into `hist` when measured.
    pub fn latency(
        &self,
        from: Instant,
        now: Instant,
        measured: bool,
        hist: &Mutex<Histogram<u64>>,
    ) {
        let took = micros(now.saturating_duration_since(from));
        self.sec_max_us.fetch_max(took, Ordering::Relaxed);
        if measured {
            lock(hist).saturating_record(took);
        }
    }

    /// A job was done at `now`.
    pub fn done(&self, now: Instant, measured: bool) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if self.window.measures(now) {
            self.done_in_window.fetch_add(1, Ordering::Relaxed);
        }
        if measured {
            self.measured_done.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Measured jobs neither done nor failed, of `scheduled` measured ones.
    pub fn unanswered(&self, scheduled: u64) -> u64 {
        scheduled.saturating_sub(
            self.measured_done.load(Ordering::Relaxed)
                + self.errors.measured.load(Ordering::Relaxed),
        )
    }

    /// Jobs done inside the measured window, per second.
    pub fn done_per_sec(&self) -> f64 {
        self.done_in_window.load(Ordering::Relaxed) as f64
            / self
                .window
                .stop
                .saturating_duration_since(self.window.measure_from)
                .as_secs_f64()
                .max(1e-9)
    }

    /// `sent …  <done> …  errors …  in flight …  queued …` for a progress line.
    pub fn progress(&self, sent: u64, done: &str) -> String {
        let started = self.started.load(Ordering::Relaxed);
        format!(
            "sent {:>6}  {done} {:>6}  errors {}  in flight {}  queued {}",
            thousands(sent),
            thousands(self.done.load(Ordering::Relaxed)),
            self.errors.failed.load(Ordering::Relaxed),
            started.saturating_sub(self.finished.load(Ordering::Relaxed)),
            sent.saturating_sub(started),
        )
    }

    /// The largest latency since the last call, ms.
    pub fn take_sec_max_ms(&self) -> f64 {
        self.sec_max_us.swap(0, Ordering::Relaxed) as f64 / 1000.0
    }
}

/// Prints a progress line to stderr every second from the start of `window` until aborted:
/// `[label] t/total s phase <line(fold)>`, where `fold` is [`fold_text`] of `vigil up`'s
/// metrics now.
pub fn spawn_progress(
    window: Window,
    label: String,
    metrics_url: Option<String>,
    consumers: &'static [&'static str],
    line: impl Fn(&str) -> String + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let total = window
        .stop
        .saturating_duration_since(window.start)
        .as_secs();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            (window.start + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        loop {
            tick.tick().await;
            let now = Instant::now();
            let page = util::scrape_page(metrics_url.as_deref()).await;
            let fold = fold_text(page.as_deref(), consumers);
            eprintln!(
                "[{label}] {:>5.1}/{total} s {:<9} {}",
                window.elapsed(now),
                window.phase(now),
                line(&fold)
            );
        }
    })
}

/// Jobs shared by a pool of connection workers.
pub type Queue<T> = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<T>>>;

/// The next job, `None` once the schedule is over and the queue empty.
pub async fn next_job<T>(jobs: &Queue<T>) -> Option<T> {
    jobs.lock().await.recv().await
}

/// The open loop: job i is handed to `tx` at `start + i/rate`, whatever the answers, built
/// by `job(scheduled, measured)`; `sent` counts them. Returns how many measured ones were
/// scheduled. The queue is closed at the end.
pub async fn open_loop<T>(
    window: &Window,
    rate: f64,
    tx: mpsc::UnboundedSender<T>,
    sent: &AtomicU64,
    mut job: impl FnMut(Instant, bool) -> T,
) -> u64 {
    let seconds = window
        .stop
        .saturating_duration_since(window.start)
        .as_secs_f64();
    let total = (seconds * rate).round() as u64;
    let mut measured_jobs = 0u64;
    for i in 0..total {
        let at = window.start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let measured = window.measures(at);
        measured_jobs += u64::from(measured);
        if tx.send(job(at, measured)).is_err() {
            break;
        }
        sent.fetch_add(1, Ordering::Relaxed);
    }
    measured_jobs
}

/// Waits for every worker (every answer or its timeout): at most the request timeout plus
/// `drain` plus the time the queued jobs `backlog` take at `rate`; then aborts the rest.
pub async fn join_workers(
    workers: &mut tokio::task::JoinSet<()>,
    request_timeout: Duration,
    drain: Duration,
    backlog: u64,
    rate: f64,
    label: &str,
) {
    let deadline =
        Instant::now() + request_timeout + drain + Duration::from_secs_f64(backlog as f64 / rate);
    loop {
        tokio::select! {
            j = workers.join_next() => if j.is_none() { break },
            _ = tokio::time::sleep_until(deadline.into()) => {
                eprintln!("[{label}] WARNING: gave up waiting for the last answers");
                workers.abort_all();
                break;
            }
        }
    }
}

/// Waits until `waiting()` is 0, at most `timeout`, or until `gone()` says the follower
/// stopped; warns about what is left (`what`: e.g. "acknowledged reports not on the board").
pub async fn drain(
    timeout: Duration,
    waiting: impl Fn() -> usize,
    gone: impl Fn() -> bool,
    label: &str,
    what: &str,
) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = waiting();
        if left == 0 || gone() {
            break;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "[{label}] WARNING: {left} {what} after {} s",
                timeout.as_secs()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// One job of a cell: the n-th of the run, scheduled at `scheduled`.
pub struct Job {
    /// Its number in the run (cells go on counting).
    pub n: u64,
    /// When the open loop handed it out.
    pub scheduled: Instant,
    /// Whether it falls in the measured window.
    pub measured: bool,
}

/// How one cell runs: `rate` jobs a second under `run`'s flags; `label` starts its lines.
pub struct Schedule<'a> {
    /// The flags.
    pub run: &'a RunArgs,
    /// Jobs per second.
    pub rate: f64,
    /// E.g. `intake vigil 1000/s`.
    pub label: String,
    /// The processes whose CPU time is read.
    pub procs: &'a Procs,
    /// The followers printed in the progress lines.
    pub consumers: &'static [&'static str],
}

/// What a cell's schedule ends with.
pub struct Scheduled {
    /// Measured jobs scheduled.
    pub measured: u64,
    /// Of those, neither done nor failed when the bench stopped waiting.
    pub unanswered: u64,
    /// The server side over the measured window.
    pub readings: (Sample, Sample),
    /// What `at_end` returned at the end of the window.
    pub at_end: u64,
}

/// The follower a cell waits for after the last answer.
pub struct Follower<W, G> {
    /// How many acknowledged writes it has not reached.
    pub waiting: W,
    /// Whether it stopped (no use waiting).
    pub gone: G,
    /// What the waiting ones are, for the warning (e.g. "acknowledged reports not on the
    /// board").
    pub what: &'static str,
}

impl<'a> Schedule<'a> {
    /// A cell of benchmark `bench` (its name in the lines) for `system` at `rate`.
    pub fn new(
        run: &'a RunArgs,
        bench: &str,
        system: Server,
        rate: f64,
        procs: &'a Procs,
        consumers: &'static [&'static str],
    ) -> Self {
        Self {
            run,
            rate,
            label: format!("{bench} {} {rate}/s", system.name()),
            procs,
            consumers,
        }
    }

    /// The cell's connections to `addr`, made before the schedule starts, and its counters
    /// (the window starts 200 ms from now).
    pub async fn prepare(&self, addr: &str) -> anyhow::Result<(Vec<HttpConn>, Counters)> {
        let conns = connect_pool(addr, self.run.connections).await?;
        let counters = Counters::new(Window::new(self.run.warmup, self.run.duration))?;
        Ok((conns, counters))
    }

    /// Runs the cell: `worker(jobs, connection)` on each connection of `conns`, the open loop
    /// over the counters' window (job numbers from `seq`), the server-side readings (`at_end` between the
    /// end of the window and the second one), a progress line a second (`progress(fold)`, see
    /// [`spawn_progress`]); then waits for every answer and for `follower`.
    #[allow(clippy::too_many_arguments)]
    pub async fn run<F, W, G>(
        &self,
        counters: &Counters,
        conns: Vec<HttpConn>,
        worker: impl Fn(Queue<Job>, Option<HttpConn>) -> F,
        seq: &mut u64,
        progress: impl Fn(&str, u64) -> String + Send + Sync + 'static,
        at_end: impl FnOnce() -> u64 + Send + 'static,
        follower: Follower<W, G>,
    ) -> anyhow::Result<Scheduled>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
        W: Fn() -> usize,
        G: Fn() -> bool,
    {
        let run = self.run;
        let window = counters.window;
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx: Queue<Job> = Arc::new(tokio::sync::Mutex::new(rx));
        let mut workers = tokio::task::JoinSet::new();
        for conn in conns {
            workers.spawn(worker(rx.clone(), Some(conn)));
        }
        let sampler = spawn_sampler(run.metrics_url.clone(), self.procs.clone(), window, at_end);
        let sent = Arc::new(AtomicU64::new(0));
        let ticker = {
            let sent = sent.clone();
            spawn_progress(
                window,
                self.label.clone(),
                run.metrics_url.clone(),
                self.consumers,
                move |fold| progress(fold, sent.load(Ordering::Relaxed)),
            )
        };
        let measured = open_loop(&window, self.rate, tx, &sent, |scheduled, measured| {
            *seq += 1;
            Job {
                n: *seq,
                scheduled,
                measured,
            }
        })
        .await;

        // Every answer (or its timeout); then every acknowledged write at the follower.
        let backlog = sent
            .load(Ordering::Relaxed)
            .saturating_sub(counters.finished.load(Ordering::Relaxed));
        let drain_for = Duration::from_secs(run.drain_timeout);
        join_workers(
            &mut workers,
            run.timeout(),
            drain_for,
            backlog,
            self.rate,
            &self.label,
        )
        .await;
        let unanswered = counters.unanswered(measured);
        drain(
            drain_for,
            follower.waiting,
            follower.gone,
            &self.label,
            follower.what,
        )
        .await;
        ticker.abort();
        let (a, b, at_end) = sampler.await.context("the metrics sampler failed")?;
        Ok(Scheduled {
            measured,
            unanswered,
            readings: (a, b),
            at_end,
        })
    }
}

// ------------------------------------------------------------------------------------------
// The peer process

/// `vigil-bench intake-peer`, started for a run and stopped when dropped.
pub struct PeerProcess {
    child: Child,
    /// `host:port` it listens on.
    pub addr: String,
}

impl PeerProcess {
    /// Starts the peer against the store of `nats` and waits until it listens.
    pub async fn start(nats: &NatsArgs) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding vigil-bench's own path")?;
        let mut command = Command::new(exe);
        command.args(["intake-peer", "--listen", "127.0.0.1:0"]);
        nats.pass_to(&mut command);
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

    /// The peer when `systems` has it (`bench` names the bench in the log line).
    pub async fn start_for(
        systems: &[Server],
        nats: &NatsArgs,
        bench: &str,
    ) -> anyhow::Result<Option<Self>> {
        if !systems.contains(&Server::Peer) {
            return Ok(None);
        }
        let p = Self::start(nats).await?;
        eprintln!("[{bench}] peer listening on {}", p.addr);
        Ok(Some(p))
    }

    /// Its PID (CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

// ------------------------------------------------------------------------------------------
// The server side

/// A reading of the server side at one instant.
pub struct Sample {
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
pub type Procs = Vec<(&'static str, Option<u32>)>;

/// The name of `vigil up` among the processes whose CPU time is read.
pub const VIGIL_PROC: &str = "vigil up";

/// `vigil up`, its nats-server, the peer and this bench: the processes a run follows.
pub fn procs(vigil_pid: Option<u32>, nats: &NatsArgs, peer: Option<&PeerProcess>) -> Procs {
    vec![
        (VIGIL_PROC, vigil_pid),
        ("nats-server", nats.nats_server_pid()),
        ("peer", peer.and_then(PeerProcess::pid)),
        ("vigil-bench", Some(std::process::id())),
    ]
    .into_iter()
    .filter(|(_, pid)| pid.is_some())
    .collect()
}

/// Reads `/metrics` and `/proc` now.
pub async fn sample(metrics_url: Option<&str>, procs: &Procs) -> Sample {
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

/// Reads the server side at the start and at the end of `window`'s measured part; `at_end()`
/// runs between the end and the second reading (e.g. a client's position then).
pub fn spawn_sampler(
    metrics_url: Option<String>,
    procs: Procs,
    window: Window,
    at_end: impl FnOnce() -> u64 + Send + 'static,
) -> tokio::task::JoinHandle<(Sample, Sample, u64)> {
    tokio::spawn(async move {
        tokio::time::sleep_until(window.measure_from.into()).await;
        let a = sample(metrics_url.as_deref(), &procs).await;
        tokio::time::sleep_until(window.stop.into()).await;
        let end = at_end();
        let b = sample(metrics_url.as_deref(), &procs).await;
        (a, b, end)
    })
}

/// What a bench reads from `vigil up`'s metrics beyond the store's and the gateway's.
pub struct Watch {
    /// `vigil_command_seconds` series: (service, command, what to call it).
    pub commands: &'static [(&'static str, &'static str, &'static str)],
    /// Services following the log whose position (`vigil_consumer_position{consumer}`) is
    /// printed beside the gateway's board.
    pub consumers: &'static [&'static str],
}

/// (log head, gateway board position) from a Prometheus page of `vigil up`.
pub fn fold_position(page: &str) -> Option<(u64, u64)> {
    let head = util::prom_sum(page, "vigil_store_head_position", &[])?;
    let board = util::prom_sum(page, "vigil_gateway_projection_position", &[])?;
    Some((head as u64, board as u64))
}

/// The position of service `consumer`'s follower of the log.
pub fn consumer_position(page: &str, consumer: &str) -> Option<u64> {
    util::prom_sum(
        page,
        "vigil_consumer_position",
        &[&format!("consumer=\"{consumer}\"")],
    )
    .map(|p| p as u64)
}

/// `  log head H, gateway board B[, <consumer> C…]` for a progress line (empty without a
/// page).
pub fn fold_text(page: Option<&str>, consumers: &[&str]) -> String {
    let Some((head, board)) = page.and_then(fold_position) else {
        return String::new();
    };
    let mut text = format!("  log head {head}, gateway board {board}");
    for c in consumers {
        if let Some(p) = page.and_then(|p| consumer_position(p, c)) {
            text.push_str(&format!(", {c} {p}"));
        }
    }
    text
}

/// The server side over a window.
#[derive(Default)]
pub struct ServerSide {
    /// The watched commands' times: (what, histogram).
    pub commands: Vec<(&'static str, PromHistogram)>,
    /// The store's commit (fsync) time.
    pub commit: Option<PromHistogram>,
    /// Events per store commit.
    pub group: Option<PromHistogram>,
    /// Deltas the gateway encoded (both views).
    pub deltas_encoded: Option<f64>,
    /// Cores used by each process: (name, cores).
    pub cpu: Vec<(&'static str, f64)>,
    /// Cores used by `vigil up`'s busiest threads (by name), most first.
    pub threads: Vec<(String, f64)>,
    /// (log head, gateway board position) at the end of the window.
    pub fold_at_end: Option<(u64, u64)>,
    /// Positions of the watched consumers at the end of the window.
    pub consumers_at_end: Vec<(&'static str, u64)>,
    /// `vigil up`'s resident memory at the start and the end of the window.
    pub rss: (Option<u64>, Option<u64>),
    /// Share of the machine's CPU time that was busy.
    pub machine_busy: Option<f64>,
}

/// What changed between readings `a` and `b`.
pub fn server_side(a: &Sample, b: &Sample, procs: &Procs, watch: &Watch) -> ServerSide {
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
        commands: watch
            .commands
            .iter()
            .filter_map(|(service, command, what)| {
                let labels = [
                    format!("service=\"{service}\""),
                    format!("command=\"{command}\""),
                ];
                let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
                Some((*what, hist("vigil_command_seconds", &labels)?))
            })
            .collect(),
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
        consumers_at_end: watch
            .consumers
            .iter()
            .filter_map(|c| Some((*c, consumer_position(b.page.as_deref()?, c)?)))
            .collect(),
        rss: (a.rss, b.rss),
        machine_busy: match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                Some((b1 - b0) as f64 / (t1 - t0) as f64)
            }
            _ => None,
        },
    }
}

/// An upper bound of a Prometheus bucket, in ms.
pub fn bound_ms(le: f64) -> String {
    if le.is_nan() {
        "-".into()
    } else if le.is_infinite() {
        "∞".into()
    } else {
        format!("{}", le * 1000.0)
    }
}

/// `a/b` as `1.23×` (`-` when either is missing).
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_nan() || b.is_nan() || b == 0.0 {
        "-".into()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// Cores used over the window by `vigil up` / by every process followed.
pub fn cpu_text(s: &ServerSide) -> String {
    if s.cpu.is_empty() {
        return "-".into();
    }
    let all: f64 = s.cpu.iter().map(|(_, c)| c).sum();
    let vigil = s
        .cpu
        .iter()
        .find(|(n, _)| *n == VIGIL_PROC)
        .map_or("-".into(), |(_, c)| format!("{c:.2}"));
    format!("{vigil} / {all:.2}")
}

/// Prints the server side of a window; `client` is appended to the line of positions at its
/// end (e.g. `, this client at 1234`).
pub fn print_server_side(s: &ServerSide, client: &str) {
    let hist_text = |h: &PromHistogram| {
        format!(
            "{} × mean {:.2} ms, p50 ≤ {} ms, p99 ≤ {} ms, max ≤ {} ms",
            thousands(h.count.round().max(0.0) as u64),
            h.mean() * 1000.0,
            bound_ms(h.quantile_bound(0.5)),
            bound_ms(h.quantile_bound(0.99)),
            bound_ms(h.quantile_bound(1.0))
        )
    };
    for (what, h) in s.commands.iter().filter(|(_, h)| h.count > 0.0) {
        println!("  {what}: {}", hist_text(h));
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
        let consumers: String = s
            .consumers_at_end
            .iter()
            .map(|(c, p)| format!(", {c} at {p} ({} behind)", head.saturating_sub(*p)))
            .collect();
        println!(
            "  at the end of the window: log head {head}, gateway board at {board} ({} behind){consumers}{client}",
            head.saturating_sub(board),
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

// ------------------------------------------------------------------------------------------
// A cell's totals

/// What every cell ends with, whatever it sends.
pub struct Totals {
    /// The system.
    pub system: Server,
    /// Jobs per second scheduled.
    pub rate: f64,
    /// Measured seconds.
    pub seconds: f64,
    /// Jobs scheduled in the measured window.
    pub scheduled: u64,
    /// Of those, done.
    pub done: u64,
    /// Of those, failed (another status, a transport error, a timeout).
    pub failed: u64,
    /// Of those, never answered before the bench gave up waiting.
    pub unanswered: u64,
    /// Jobs done inside the measured window, per second.
    pub per_sec: f64,
    /// Failures by kind (warm-up included).
    pub errors: BTreeMap<String, Tally>,
    /// Scheduled → written to a connection, of measured jobs.
    pub send_delay: Histogram<u64>,
    /// The server side over the window.
    pub server: ServerSide,
}

impl Totals {
    /// The totals of a cell of `system` at `rate` that ran to `done`, with `counters`.
    pub fn new(
        system: Server,
        rate: f64,
        done: &Scheduled,
        counters: &Counters,
        procs: &Procs,
        watch: &Watch,
    ) -> anyhow::Result<Self> {
        let (a, b) = &done.readings;
        let w = counters.window;
        Ok(Self {
            system,
            rate,
            seconds: w
                .stop
                .saturating_duration_since(w.measure_from)
                .as_secs_f64(),
            scheduled: done.measured,
            done: counters.measured_done.load(Ordering::Relaxed),
            failed: counters.errors.measured.load(Ordering::Relaxed),
            unanswered: done.unanswered,
            per_sec: counters.done_per_sec(),
            errors: counters.errors.take(),
            send_delay: take_histogram(&counters.send_delay)?,
            server: server_side(a, b, procs, watch),
        })
    }

    /// Prints the cell's first lines: `== … ==`, the answers (`done` says what a done job
    /// is, `per_sec` what the rate counts) and the errors.
    pub fn print_head(&self, unit: &str, done: &str, per_sec: &str) {
        println!();
        println!(
            "== {} at {} {unit}/s: {} {unit} scheduled in the {} s window ==",
            self.system.name(),
            self.rate,
            thousands(self.scheduled),
            self.seconds
        );
        println!(
            "  answers: {} {done}, {} failed, {} unanswered; {per_sec} in the window: {:.1}/s",
            thousands(self.done),
            thousands(self.failed),
            thousands(self.unanswered),
            self.per_sec
        );
        print_errors(&self.errors);
    }

    /// Prints the cell's last lines: the bench's send delay and the server side.
    pub fn print_tail(&self, client: &str) {
        print_send_delay(&self.send_delay);
        print_server_side(&self.server, client);
    }

    /// Whether every measured job was done.
    pub fn clean(&self) -> bool {
        self.failed == 0 && self.unanswered == 0
    }

    /// ` — N failed, M unanswered` unless clean.
    pub fn why_not_clean(&self) -> String {
        if self.clean() {
            String::new()
        } else {
            format!(
                " — {} failed, {} unanswered",
                thousands(self.failed),
                thousands(self.unanswered)
            )
        }
    }

    /// The summary row with `measures`.
    pub fn row<'a>(&'a self, measures: Vec<Measure<'a>>) -> Row<'a> {
        Row {
            rate: self.rate,
            system: self.system,
            per_sec: self.per_sec,
            errors: self.failed + self.unanswered,
            measures,
            server: &self.server,
        }
    }
}

/// The vigil cells at `rate` among `cells`, for the targets (a note when there is none).
pub fn judged<'a, T>(
    cells: &'a [T],
    totals: impl Fn(&T) -> &Totals,
    rate: f64,
    what: &str,
) -> Vec<&'a T> {
    let judged: Vec<&T> = cells
        .iter()
        .filter(|c| {
            let t = totals(c);
            t.system == Server::Vigil && (t.rate - rate).abs() < 1e-9
        })
        .collect();
    if judged.is_empty() {
        println!("  the target is set at {what} for vigil; this run has no such cell  n/a");
    }
    judged
}

// ------------------------------------------------------------------------------------------
// Summaries

/// A latency distribution of a cell, as the summaries print it.
pub struct Measure<'a> {
    /// Its name in the console table (e.g. `201`).
    pub short: &'static str,
    /// Its name in the Markdown table and the ratios (e.g. `POST→201`).
    pub long: &'static str,
    /// The latencies.
    pub hist: &'a Histogram<u64>,
    /// Also p99.9 and max (else p50 and p99 only).
    pub tail: bool,
}

/// One cell as the summaries print it.
pub struct Row<'a> {
    /// Jobs per second scheduled.
    pub rate: f64,
    /// The system.
    pub system: Server,
    /// Jobs done inside the measured window, per second.
    pub per_sec: f64,
    /// Measured jobs failed or unanswered.
    pub errors: u64,
    /// Its latencies, in the order of the columns.
    pub measures: Vec<Measure<'a>>,
    /// The server side.
    pub server: &'a ServerSide,
}

impl Row<'_> {
    fn cells(&self) -> Vec<String> {
        self.measures
            .iter()
            .flat_map(|m| {
                let q = quantiles(m.hist);
                q.into_iter().take(if m.tail { 4 } else { 2 })
            })
            .collect()
    }
}

/// The console table and the vigil/peer ratios per rate of `rows`; `done` names the
/// per-second column (e.g. `201/s`), `note` explains the columns. Rows come rate by rate,
/// `per_rate` cells each (one per system).
pub fn print_table(rows: &[Row], per_rate: usize, done: &str, note: &str) {
    let Some(first) = rows.first() else {
        return;
    };
    let mut head = vec![];
    for m in &first.measures {
        head.push(format!("{} p50", m.short));
        head.push("p99".to_owned());
        if m.tail {
            head.push("p99.9".to_owned());
            head.push("max".to_owned());
        }
    }
    let line = |rate: String,
                system: &str,
                per_sec: String,
                errors: String,
                cells: &[String],
                cpu: &str| {
        println!(
            "{rate:>7} {system:<6} {per_sec:>8} {errors:>7} | {} | {cpu:>11}",
            cells
                .iter()
                .map(|c| format!("{c:>8}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    };
    line(
        "rate/s".into(),
        "system",
        done.to_owned(),
        "errors".into(),
        &head,
        "CPU cores",
    );
    for r in rows {
        line(
            r.rate.to_string(),
            r.system.name(),
            format!("{:.1}", r.per_sec),
            thousands(r.errors),
            &r.cells(),
            &cpu_text(r.server),
        );
    }
    println!(
        "({note}; CPU: cores used by `vigil up` / by it, its nats-server, the peer and the bench, of {})",
        util::cores()
    );
    for cells in rows.chunks(per_rate.max(1)) {
        let find = |s| cells.iter().find(|r| r.system == s);
        if let (Some(v), Some(p)) = (find(Server::Vigil), find(Server::Peer)) {
            let parts: Vec<String> = v
                .measures
                .iter()
                .zip(&p.measures)
                .map(|(a, b)| {
                    format!(
                        "{} p50 {}, p99 {}",
                        a.long,
                        ratio(ms(a.hist, 0.5), ms(b.hist, 0.5)),
                        ratio(ms(a.hist, 0.99), ms(b.hist, 0.99))
                    )
                })
                .collect();
            println!("vigil/peer at {}/s: {}", v.rate, parts.join("; "));
        }
    }
}

/// The Markdown table of `rows`; `unit` names the rate (e.g. `reports/s`), `done` the
/// per-second column.
pub fn print_markdown(rows: &[Row], unit: &str, done: &str) {
    let Some(first) = rows.first() else {
        return;
    };
    let mut md = vec![];
    let mut align = vec![];
    for m in &first.measures {
        md.push(format!("{} p50 ms", m.long));
        md.push("p99 ms".to_owned());
        if m.tail {
            md.push("p99.9 ms".to_owned());
            md.push("max ms".to_owned());
        }
    }
    align.resize(md.len(), "---:");
    println!(
        "| {unit} | system | {done} | errors | {} | CPU cores: `vigil up` / all |",
        md.join(" | ")
    );
    println!("|---:|---|---:|---:|{}|---:|", align.join("|"));
    for r in rows {
        println!(
            "| {} | {} | {:.1} | {} | {} | {} |",
            thousands(r.rate.round() as u64),
            r.system.name(),
            r.per_sec,
            thousands(r.errors),
            r.cells().join(" | "),
            cpu_text(r.server)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_complete_whichever_comes_first() {
        let mut t = Tracker::new().unwrap();
        let s = Instant::now();
        // The ack first, then the follower.
        t.on_ack(5, s, true);
        assert_eq!(t.pending.len(), 1);
        t.on_board(6, s + Duration::from_millis(10));
        assert!(t.pending.is_empty());
        // The follower first (coalesced up to 8), then the ack of 7.
        t.on_board(8, s + Duration::from_millis(20));
        t.on_ack(7, s, true);
        assert!(t.pending.is_empty());
        assert_eq!(t.hist.len(), 2);
        assert_eq!(t.hist.max() / 1000, 20);
        // Not measured: completed, not recorded.
        t.on_ack(9, s, false);
        t.on_board(9, s + Duration::from_millis(1));
        assert_eq!(t.hist.len(), 2);
        t.on_ack(12, s, true);
        let (h, missing) = t.finish().unwrap();
        assert_eq!((h.len(), missing), (2, 1));
    }

    #[test]
    fn requests_are_well_formed() {
        let body = r#"{"a":1}"#;
        let req = String::from_utf8(request_bytes("/api/v1/incidents", "h:1", "tok", Some(body)))
            .unwrap();
        assert!(req.starts_with("POST /api/v1/incidents HTTP/1.1\r\nHost: h:1\r\n"));
        assert!(req.contains("Authorization: Bearer tok\r\n"));
        assert!(req.ends_with(&format!("Content-Length: {}\r\n\r\n{body}", body.len())));
        let get = String::from_utf8(request_bytes("/x?y=1", "h:1", "tok", None)).unwrap();
        assert!(get.starts_with("GET /x?y=1 HTTP/1.1\r\n"));
        assert!(get.ends_with("\r\n\r\n") && !get.contains("Content-Length"));
        assert_eq!(
            host_port("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080"
        );
    }

    #[test]
    fn windows_measure_the_middle() {
        let w = Window::new(2, 10);
        assert!(!w.measures(w.start));
        assert!(w.measures(w.measure_from));
        assert!(!w.measures(w.stop));
        assert_eq!(w.phase(w.start), "warm-up");
        assert_eq!(w.phase(w.stop), "draining");
    }
}
