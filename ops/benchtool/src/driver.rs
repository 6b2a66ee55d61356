//! Runs one store cell: W workers, each keeping one append in flight, for a warm-up and then
//! the measured duration, recording every successful ack's latency (µs) in an HDR histogram.
//! [`StoreBench`] is what the store brings to the shared run of cells (`cell::run_cells`):
//! the system set up for the window, the cell, the system torn down, the tables it prints.
//!
//! An append counts in the measurement when it started after the warm-up and was answered
//! before the end, so the rate is `measured appends / measured seconds`. The window, the
//! progress line, the histograms and the tallies are the shared harness's (`cell`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::System;
use crate::cell::{self, Bench, Tally, Window, merge, micros, new_histogram, tally};
use crate::report;
use crate::systems::{Appender, Env, Settings};

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
                    out.hist
                        .saturating_record(micros(done.duration_since(started)));
                    out.ok += 1;
                }
            }
            Err(failure) => {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                let into = if measured {
                    &mut out.errors
                } else {
                    &mut out.warmup_errors
                };
                tally(into, failure.kind, failure.detail);
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
    let window = Window::starting(Instant::now(), spec.warmup, spec.duration);

    let handles: Vec<_> = workers
        .into_iter()
        .map(|a| {
            tokio::spawn(worker(
                a,
                window.measure_from,
                window.stop,
                progress.clone(),
            ))
        })
        .collect();

    let ticker = {
        let progress = progress.clone();
        cell::spawn_ticker(window, label.clone(), move || {
            std::future::ready(format!(
                "acked {:>10}  errors {}  workers running {}",
                crate::report::thousands(progress.ok.load(Ordering::Relaxed)),
                progress.errors.load(Ordering::Relaxed),
                progress.running.load(Ordering::Relaxed),
            ))
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

/// The store benchmark's cells: one system at one window (requests in flight).
pub struct StoreBench<'a> {
    /// The connections to every system.
    pub env: &'a Env,
    /// How the systems are set up.
    pub settings: &'a Settings,
    /// Unmeasured time before each measurement.
    pub warmup: Duration,
    /// Measured time per cell.
    pub duration: Duration,
}

impl Bench for StoreBench<'_> {
    type Point = usize;
    type System = System;
    type Cell = CellResult;

    async fn run(&mut self, window: usize, system: System) -> anyhow::Result<CellResult> {
        let appenders = self
            .env
            .prepare(self.settings, system, window)
            .await
            .with_context(|| format!("preparing {} at window {window}", system.name()))?;
        let spec = CellSpec {
            system,
            window,
            warmup: self.warmup,
            duration: self.duration,
            note: appenders.note.clone(),
        };
        let result = run_cell(&spec, appenders.workers).await;
        self.env.finish(system).await;
        result
    }

    fn print(&self, cell: &CellResult) {
        report::print_errors(cell);
    }

    fn after_point(&mut self, window: usize, row: &[CellResult]) {
        report::print_window(window, row);
    }
}
