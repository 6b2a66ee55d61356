//! One phase (one system, one K): memory before and after K idle clients, then the load for
//! the warm-up and the measured seconds (the shared `cell` window and progress line), the wait
//! for the last position, and what every client measured.

use crate::cell::{self, Tally, Window, lock};
use crate::prom;
use crate::report::thousands;
use crate::util::{self, bytes_text, unix_nanos};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

use super::FanoutArgs;
use super::clients::{Capture, Shared, client};
use super::sources::{Baseline, LoadOutcome, LoadProgress, VigilLoad};

pub(super) enum Target<'a> {
    Vigil(&'a mut VigilLoad),
    Baseline(&'a mut Baseline),
}

pub(super) struct PhaseResult {
    pub(super) name: &'static str,
    pub(super) wanted: usize,
    pub(super) subscribed: usize,
    pub(super) failed: usize,
    pub(super) failures: BTreeMap<String, Tally>,
    pub(super) connect_secs: f64,
    pub(super) rss_before: Option<u64>,
    pub(super) rss_idle: Option<u64>,
    pub(super) rss_after: Option<u64>,
    pub(super) hist: Histogram<u64>,
    pub(super) measured: u64,
    pub(super) expected_per_client: Option<u64>,
    pub(super) seconds: f64,
    pub(super) resyncs: u64,
    pub(super) order_errors: u64,
    pub(super) unparsed: u64,
    pub(super) ended: usize,
    pub(super) ends: BTreeMap<String, Tally>,
    pub(super) heartbeats: u64,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) drained: bool,
    pub(super) fold_note: Option<String>,
    pub(super) load: LoadOutcome,
    pub(super) capture: Capture,
}

impl PhaseResult {
    pub(super) fn ms_at(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    pub(super) fn max_ms(&self) -> f64 {
        if self.hist.is_empty() {
            f64::NAN
        } else {
            self.hist.max() as f64 / 1000.0
        }
    }

    pub(super) fn frames_per_sec(&self) -> f64 {
        self.measured as f64 / self.seconds
    }

    pub(super) fn bytes_per_client(&self) -> Option<f64> {
        match (self.rss_before, self.rss_idle) {
            (Some(b), Some(i)) if self.subscribed > 0 => {
                Some((i as f64 - b as f64) / self.subscribed as f64)
            }
            _ => None,
        }
    }

    /// Deltas that should have arrived (every subscribed client × every event in the window)
    /// but did not.
    pub(super) fn missing(&self) -> Option<u64> {
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

pub(super) async fn run_phase(
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
        let failures = lock(&shared.failures);
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
        let window = Window::starting(
            load_started,
            Duration::from_secs(args.warmup),
            Duration::from_secs(args.duration),
        );
        let mut last_frames = shared.frames.load(Ordering::Relaxed);
        cell::spawn_ticker(window, label.clone(), move || {
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
            let line = format!(
                "{load}  frames {:>9}/s  worst latency this second {:>8.1} ms  resyncs {}  ended {}  clients {}",
                thousands(frames - last_frames),
                max as f64 / 1000.0,
                shared.resyncs.load(Ordering::Relaxed),
                shared.ended.load(Ordering::Relaxed),
                shared.subscribed.load(Ordering::Relaxed) - shared.ended.load(Ordering::Relaxed),
            );
            last_frames = frames;
            std::future::ready(line)
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
        let m = prom::scrape(args.metrics_url.as_deref()).await;
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
    let capture = std::mem::take(&mut *lock(&shared.capture));
    let failures = std::mem::take(&mut *lock(&shared.failures));
    let ends = std::mem::take(&mut *lock(&shared.ends));
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
