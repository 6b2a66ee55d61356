//! The harness every benchmark runs its cells with (a cell: one system under one load, a
//! warm-up and then a measured window): the run of every cell ([`Bench`], [`run_cells`]), the
//! window and whether an instant is measured, the progress line printed to stderr every
//! second, the latency histograms (µs, 3 significant digits, up to [`MAX_LATENCY_US`]) and
//! their quantiles, and the failures tallied by kind with one full message each.
//!
//! Every benchmark runs its cells through [`run_cells`] — the store cells (`driver`), the
//! fan-out phases (`fanout`), the open-loop HTTP cells (`open_loop`: `intake`,
//! `clearances`), the broadcast rounds (`broadcast`) and the replay runs and cold starts
//! (`replay`) — and measures with the rest, so a p99 or an error count means the same thing
//! in every table.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;

use crate::report::thousands;
use crate::util::fmt_ms;

/// Largest latency the histograms hold, µs (larger values are clamped).
pub const MAX_LATENCY_US: u64 = 300_000_000;

/// The lock, also after a panic elsewhere (the figures are still worth printing).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

// ------------------------------------------------------------------------------------------
// The cells

/// What one benchmark brings to [`run_cells`]: how one cell runs and what it prints.
///
/// A benchmark sweeps one quantity (the store's window, an HTTP rate, a broadcast round, …);
/// each value of it is a *point*, and each point runs once on every system under test.
pub(crate) trait Bench {
    /// One value of the swept quantity.
    type Point: Copy;
    /// A system under test.
    type System: Copy;
    /// What one cell measured.
    type Cell;

    /// Runs one cell: starts `system` (or readies it), runs the load of `point` (warm-up, then
    /// the measured window), stops it and collects what it measured.
    async fn run(&mut self, point: Self::Point, system: Self::System)
    -> anyhow::Result<Self::Cell>;

    /// Prints a cell's figures as soon as it ended.
    fn print(&self, cell: &Self::Cell);

    /// After a cell is printed: whether the run may go on (an error stops it), and anything a
    /// later cell takes from this one.
    fn after_cell(&mut self, _cell: &Self::Cell) -> anyhow::Result<()> {
        Ok(())
    }

    /// After every system ran at `point`: `cells` are that point's cells, in order.
    fn after_point(&mut self, _point: Self::Point, _cells: &[Self::Cell]) {}
}

/// Runs every cell of `bench`: for each point in order, each system in order, with `pause` of
/// quiet between two cells (time for one system's work to settle before the next measures).
/// Returns the cells in the order they ran.
pub(crate) async fn run_cells<B: Bench>(
    bench: &mut B,
    points: &[B::Point],
    systems: &[B::System],
    pause: Duration,
) -> anyhow::Result<Vec<B::Cell>> {
    let mut cells: Vec<B::Cell> = Vec::with_capacity(points.len() * systems.len());
    for &point in points {
        let first = cells.len();
        for &system in systems {
            if !cells.is_empty() {
                tokio::time::sleep(pause).await;
            }
            let cell = bench.run(point, system).await?;
            bench.print(&cell);
            bench.after_cell(&cell)?;
            cells.push(cell);
        }
        bench.after_point(point, &cells[first..]);
    }
    Ok(cells)
}

/// The systems' names joined with `, ` (for a run's first line).
pub fn names<S>(systems: &[S], name: impl Fn(&S) -> &'static str) -> String {
    systems.iter().map(name).collect::<Vec<_>>().join(", ")
}

// ------------------------------------------------------------------------------------------
// The window

/// The times of one cell: the load starts at `start`, is measured from `measure_from` and
/// ends at `stop`.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// The start of the load.
    pub start: Instant,
    /// The end of the warm-up.
    pub measure_from: Instant,
    /// The end of the load.
    pub stop: Instant,
}

impl Window {
    /// `warmup` unmeasured seconds, then `duration` measured ones, starting 200 ms from now
    /// (time to hand the first jobs out on time).
    pub fn new(warmup: u64, duration: u64) -> Self {
        Self::starting(
            Instant::now() + Duration::from_millis(200),
            Duration::from_secs(warmup),
            Duration::from_secs(duration),
        )
    }

    /// `warmup` unmeasured, then `duration` measured, from `start`.
    pub fn starting(start: Instant, warmup: Duration, duration: Duration) -> Self {
        let measure_from = start + warmup;
        Self {
            start,
            measure_from,
            stop: measure_from + duration,
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

    /// The measured seconds.
    pub fn measured_secs(&self) -> f64 {
        self.stop
            .saturating_duration_since(self.measure_from)
            .as_secs_f64()
    }
}

// ------------------------------------------------------------------------------------------
// Progress

/// Calls `tick` every second from `first` until aborted, and prints the line it makes to
/// stderr.
pub fn every_second<F>(
    first: Instant,
    mut tick: impl FnMut() -> F + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = String> + Send + 'static,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval_at(first.into(), Duration::from_secs(1));
        loop {
            interval.tick().await;
            let line = tick().await;
            eprintln!("{line}");
        }
    })
}

/// The progress line of a cell, every second from a second after `window.start` until
/// aborted: `[label] t/total s phase <line>`.
pub fn spawn_ticker<F>(
    window: Window,
    label: String,
    mut line: impl FnMut() -> F + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    F: Future<Output = String> + Send + 'static,
{
    let total = window
        .stop
        .saturating_duration_since(window.start)
        .as_secs();
    let label: std::sync::Arc<str> = label.into();
    every_second(window.start + Duration::from_secs(1), move || {
        let rest = line();
        let label = label.clone();
        let now = Instant::now();
        async move {
            let rest = rest.await;
            format!(
                "[{label}] {:>5.1}/{total} s {:<9} {rest}",
                window.elapsed(now),
                window.phase(now),
            )
        }
    })
}

// ------------------------------------------------------------------------------------------
// Histograms

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

/// The histogram in `m`, leaving an empty one.
pub fn take_histogram(m: &Mutex<Histogram<u64>>) -> anyhow::Result<Histogram<u64>> {
    let fresh = new_histogram()?;
    Ok(std::mem::replace(&mut *lock(m), fresh))
}

/// Records `d` in the histogram behind `m`.
pub fn record(m: &Mutex<Histogram<u64>>, d: Duration) {
    lock(m).saturating_record(micros(d));
}

// ------------------------------------------------------------------------------------------
// Failures

/// One kind of failure: how often, and one full message.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Occurrences.
    pub count: u64,
    /// The first message seen.
    pub sample: String,
}

/// Counts one failure of `kind` in `map`, keeping the first `detail`.
pub fn tally(map: &mut BTreeMap<String, Tally>, kind: String, detail: String) {
    let t = map.entry(kind).or_default();
    if t.count == 0 {
        t.sample = detail;
    }
    t.count += 1;
}

/// Adds the tallies of `from` to `into`.
pub fn merge(into: &mut BTreeMap<String, Tally>, from: BTreeMap<String, Tally>) {
    for (kind, t) in from {
        let e = into.entry(kind).or_default();
        if e.count == 0 {
            e.sample = t.sample;
        }
        e.count += t.count;
    }
}

/// Why a request failed: (kind to group by, details).
pub type Failure = (String, String);

/// Failed requests of a cell, by kind, shared by its workers.
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
        tally(&mut lock(&self.kinds), kind, detail);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn windows_measure_the_middle() {
        let w = Window::new(2, 10);
        assert!(!w.measures(w.start));
        assert!(w.measures(w.measure_from));
        assert!(!w.measures(w.stop));
        assert_eq!(w.phase(w.start), "warm-up");
        assert_eq!(w.phase(w.stop), "draining");
        assert_eq!(w.measured_secs(), 10.0);
    }

    #[test]
    fn failures_keep_their_first_message_and_add_up() {
        let mut a = BTreeMap::new();
        tally(&mut a, "timeout".into(), "first".into());
        tally(&mut a, "timeout".into(), "second".into());
        let mut b = BTreeMap::new();
        tally(&mut b, "timeout".into(), "third".into());
        tally(&mut b, "HTTP 503".into(), "busy".into());
        merge(&mut a, b);
        assert_eq!(a["timeout"].count, 3);
        assert_eq!(a["timeout"].sample, "first");
        assert_eq!(a["HTTP 503"].count, 1);
        let h = Mutex::new(new_histogram().unwrap());
        record(&h, Duration::from_secs(3600));
        assert_eq!(take_histogram(&h).unwrap().max(), h_max());
        assert!(lock(&h).is_empty());
    }

    /// Records what the runner asked, in order.
    #[derive(Default)]
    struct Log(Vec<String>);

    impl Bench for Log {
        type Point = u32;
        type System = char;
        type Cell = String;

        async fn run(&mut self, point: u32, system: char) -> anyhow::Result<String> {
            self.0.push(format!("run {system}{point}"));
            if point == 9 {
                anyhow::bail!("cell {system}{point} failed");
            }
            Ok(format!("{system}{point}"))
        }

        fn print(&self, cell: &String) {
            println!("{cell}");
        }

        fn after_cell(&mut self, cell: &String) -> anyhow::Result<()> {
            self.0.push(format!("after {cell}"));
            if cell == "b3" {
                anyhow::bail!("stop after b3");
            }
            Ok(())
        }

        fn after_point(&mut self, point: u32, cells: &[String]) {
            self.0.push(format!("point {point}: {}", cells.join(" ")));
        }
    }

    #[tokio::test]
    async fn every_system_runs_at_every_point_in_order_with_pauses_between() {
        let mut log = Log::default();
        let started = Instant::now();
        let cells = run_cells(&mut log, &[1, 2], &['a', 'b'], Duration::from_millis(20))
            .await
            .unwrap();
        assert_eq!(cells, ["a1", "b1", "a2", "b2"]);
        assert_eq!(
            log.0,
            [
                "run a1",
                "after a1",
                "run b1",
                "after b1",
                "point 1: a1 b1",
                "run a2",
                "after a2",
                "run b2",
                "after b2",
                "point 2: a2 b2"
            ]
        );
        // A pause between two cells: three of them.
        assert!(started.elapsed() >= Duration::from_millis(60));

        let mut log = Log::default();
        let stopped = run_cells(&mut log, &[3, 9], &['a', 'b'], Duration::ZERO).await;
        assert_eq!(stopped.unwrap_err().to_string(), "stop after b3");
        let mut log = Log::default();
        let failed = run_cells(&mut log, &[9], &['a', 'b'], Duration::ZERO).await;
        assert_eq!(failed.unwrap_err().to_string(), "cell a9 failed");
        assert_eq!(log.0, ["run a9"]);
    }

    fn h_max() -> u64 {
        let mut h = new_histogram().unwrap();
        h.saturating_record(MAX_LATENCY_US);
        h.max()
    }
}
