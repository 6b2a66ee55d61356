//! Runs one cell: W workers, each keeping one append in flight, for a warm-up and then the
//! measured duration, recording every successful ack's latency (µs) in an HDR histogram.
//!
//! An append counts in the measurement when it started after the warm-up and was answered
//! before the end, so the rate is `measured appends / measured seconds`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::System;
use crate::systems::Appender;

/// Largest latency the histograms hold (60 s, in µs); larger values are clamped.
const MAX_LATENCY_US: u64 = 60_000_000;
/// Pause after a failed append, so a system that refuses at once is not spun on.
const ERROR_PAUSE: Duration = Duration::from_millis(1);

/// What one cell runs.
#[derive(Debug, Clone)]
pub struct CellSpec {
    /// The system under test.
    pub system: System,
    /// Requests in flight (= workers).
    pub window: usize,
    /// Unmeasured time before the measurement.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
    /// A line about how this system realises the window (printed with the results).
    pub note: Option<String>,
}

/// One kind of failure: how often, and one full message.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Occurrences.
    pub count: u64,
    /// The first message seen.
    pub sample: String,
}

/// Why one append failed: a short kind to group by, and the details.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Short, stable kind (`timeout`, `unavailable`, a SQLSTATE, …).
    pub kind: String,
    /// The whole message.
    pub detail: String,
}

impl Failure {
    /// A failure of `kind` with `detail`.
    pub fn new(kind: impl Into<String>, detail: impl ToString) -> Self {
        Self {
            kind: kind.into(),
            detail: detail.to_string(),
        }
    }
}

/// The outcome of a cell.
#[derive(Debug, Clone)]
pub struct CellResult {
    /// What ran.
    pub spec: CellSpec,
    /// Successful appends in the measured period.
    pub ok: u64,
    /// Measured seconds.
    pub seconds: f64,
    /// Ack latencies of the measured appends, µs.
    pub hist: Histogram<u64>,
    /// Failures in the measured period, by kind.
    pub errors: BTreeMap<String, Tally>,
    /// Failures during the warm-up, by kind.
    pub warmup_errors: BTreeMap<String, Tally>,
}

impl CellResult {
    /// Appends per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// Latency at quantile `q`, ms (0 when nothing was measured).
    pub fn ms_at(&self, q: f64) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(q) as f64 / 1000.0
        }
    }

    /// Measured failures, all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|t| t.count).sum()
    }
}

#[derive(Default)]
struct Progress {
    ok: AtomicU64,
    errors: AtomicU64,
    running: AtomicUsize,
}

struct WorkerOut {
    ok: u64,
    hist: Histogram<u64>,
    errors: BTreeMap<String, Tally>,
    warmup_errors: BTreeMap<String, Tally>,
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("creating a latency histogram")
}

fn tally(map: &mut BTreeMap<String, Tally>, failure: Failure) {
    let t = map.entry(failure.kind).or_default();
    if t.count == 0 {
        t.sample = failure.detail;
    }
    t.count += 1;
}

fn merge(into: &mut BTreeMap<String, Tally>, from: BTreeMap<String, Tally>) {
    for (kind, t) in from {
        let e = into.entry(kind).or_default();
        if e.count == 0 {
            e.sample = t.sample;
        }
        e.count += t.count;
    }
}

async fn worker(
    mut appender: Appender,
    measure_from: Instant,
    end: Instant,
    progress: Arc<Progress>,
) -> anyhow::Result<WorkerOut> {
    let mut out = WorkerOut {
        ok: 0,
        hist: new_histogram()?,
        errors: BTreeMap::new(),
        warmup_errors: BTreeMap::new(),
    };
    let mut seq: u64 = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let result = appender.append(seq).await;
        seq += 1;
        let done = Instant::now();
        let measured = started >= measure_from;
        match result {
            Ok(()) => {
                progress.ok.fetch_add(1, Ordering::Relaxed);
                if measured && done <= end {
                    let us =
                        u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                    out.hist.saturating_record(us.clamp(1, MAX_LATENCY_US));
                    out.ok += 1;
                }
            }
            Err(failure) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                if measured {
                    tally(&mut out.errors, failure);
                } else {
                    tally(&mut out.warmup_errors, failure);
                }
                tokio::time::sleep(ERROR_PAUSE).await;
            }
        }
    }
    progress.running.fetch_sub(1, Ordering::Relaxed);
    Ok(out)
}

/// Runs `workers` (one per request in flight) as one cell, printing a progress line to stderr
/// every second, and returns the merged measurement.
pub async fn run_cell(spec: &CellSpec, workers: Vec<Appender>) -> anyhow::Result<CellResult> {
    let label = format!("{} W={}", spec.system.name(), spec.window);
    if let Some(note) = &spec.note {
        eprintln!("[{label}] {note}");
    }
    let progress = Arc::new(Progress::default());
    progress.running.store(workers.len(), Ordering::Relaxed);
    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;

    let handles: Vec<_> = workers
        .into_iter()
        .map(|a| tokio::spawn(worker(a, measure_from, end, progress.clone())))
        .collect();

    let ticker = {
        let progress = progress.clone();
        let label = label.clone();
        let total = spec.warmup + spec.duration;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(
                tokio::time::Instant::from_std(start + Duration::from_secs(1)),
                Duration::from_secs(1),
            );
            loop {
                tick.tick().await;
                let now = Instant::now();
                let phase = if now < measure_from {
                    "warm-up"
                } else if now < end {
                    "measuring"
                } else {
                    "draining"
                };
                eprintln!(
                    "[{label}] {:>5.1}/{:.0} s {phase:<9} acked {:>10}  errors {}  workers running {}",
                    now.duration_since(start).as_secs_f64(),
                    total.as_secs_f64(),
                    crate::report::thousands(progress.ok.load(Ordering::Relaxed)),
                    progress.errors.load(Ordering::Relaxed),
                    progress.running.load(Ordering::Relaxed),
                );
            }
        })
    };

    let mut result = CellResult {
        spec: spec.clone(),
        ok: 0,
        seconds: spec.duration.as_secs_f64(),
        hist: new_histogram()?,
        errors: BTreeMap::new(),
        warmup_errors: BTreeMap::new(),
    };
    let mut failure: Option<anyhow::Error> = None;
    for h in handles {
        match h.await {
            Ok(Ok(out)) => {
                result.ok += out.ok;
                result
                    .hist
                    .add(&out.hist)
                    .context("merging latency histograms")?;
                merge(&mut result.errors, out.errors);
                merge(&mut result.warmup_errors, out.warmup_errors);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(e) => failure = Some(anyhow::anyhow!("a {label} worker died: {e}")),
        }
    }
    ticker.abort();
    if let Some(e) = failure {
        return Err(e);
    }
    eprintln!(
        "[{label}] done: {} appends in {:.0} s measured ({:.0}/s), {} errors",
        crate::report::thousands(result.ok),
        result.seconds,
        result.rate(),
        result.error_count()
    );
    Ok(result)
}
