//! The open loop of one HTTP cell (`intake`, `clearances`): job n is scheduled at
//! `start + n/R` whatever the answers and taken by the next free worker (one request in
//! flight each, `--connections` of them), so a job that waited for a worker counts its wait
//! (no coordinated omission). Around it: the cell's counters, a progress line a second, the
//! server side read at both ends of the measured window, then the wait for every answer and
//! for the follower of the log to reach every acknowledged write. The benchmarks' cells
//! themselves run through `cell::run_cells`; a cell's [`Schedule`] starts from its
//! [`HttpBench`] (the benchmark's name, flags, processes and what of `vigil up` it watches).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;

use crate::cell::{self, Errors, Window, lock, micros, new_histogram, record};
use crate::http::Http;
use crate::load::{RunArgs, Server};
use crate::prom;
use crate::report::thousands;
use crate::server_side::{Procs, Sample, Watch, fold_text, spawn_sampler};
use crate::summary::Totals;
use crate::util::fmt_ms;

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
        self.done_in_window.load(Ordering::Relaxed) as f64 / self.window.measured_secs().max(1e-9)
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

    /// `worst this second: <answer> … ms, <follower> … ms` for a progress line: the largest
    /// latency to an answer since the last call, and `follower_us` (µs).
    pub fn worst(&self, answer: &str, follower: &str, follower_us: u64) -> String {
        format!(
            "worst this second: {answer} {} ms, {follower} {} ms",
            fmt_ms(self.take_sec_max_ms()),
            fmt_ms(follower_us as f64 / 1000.0),
        )
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
    line: impl Fn(&str) -> String + Send + Sync + 'static,
) -> tokio::task::JoinHandle<()> {
    let line = Arc::new(line);
    cell::spawn_ticker(window, label, move || {
        let (metrics_url, line) = (metrics_url.clone(), line.clone());
        async move {
            let page = prom::scrape_page(metrics_url.as_deref()).await;
            line(&fold_text(page.as_deref(), consumers))
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

/// The HTTP benchmark a cell belongs to: its name (it starts the lines), its flags, the
/// processes whose CPU time is read and what of `vigil up` it watches.
pub struct HttpBench<'a> {
    /// `intake`, `clearances`.
    pub name: &'static str,
    /// The flags.
    pub run: &'a RunArgs,
    /// The processes whose CPU time is read.
    pub procs: &'a Procs,
    /// What `vigil up` is read for; its followers are printed in the progress lines.
    pub watch: &'static Watch,
}

/// How one cell runs: `rate` jobs a second for `system` under the bench's flags; `label`
/// starts its lines.
pub struct Schedule<'a> {
    /// The benchmark.
    pub bench: &'a HttpBench<'a>,
    /// The system under test.
    pub system: Server,
    /// Jobs per second.
    pub rate: f64,
    /// E.g. `intake vigil 1000/s`.
    pub label: String,
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
    /// A cell of `bench` for `system` at `rate` on `addr`: its schedule, its client with its
    /// connections open (made before the schedule starts), and its counters (the window
    /// starts 200 ms from now).
    pub async fn start(
        bench: &'a HttpBench<'a>,
        system: Server,
        rate: f64,
        addr: &str,
    ) -> anyhow::Result<(Self, Http, Counters)> {
        let schedule = Self {
            bench,
            system,
            rate,
            label: format!("{} {} {rate}/s", bench.name, system.name()),
        };
        let run = bench.run;
        let http = Http::new(addr, run.connections)?;
        http.open(run.connections).await?;
        let counters = Counters::new(Window::new(run.warmup, run.duration))?;
        Ok((schedule, http, counters))
    }

    /// The cell's totals, once [`Schedule::run`] returned `done`.
    pub fn totals(&self, done: &Scheduled, counters: &Counters) -> anyhow::Result<Totals> {
        Totals::new(
            self.system,
            self.rate,
            done,
            counters,
            self.bench.procs,
            self.bench.watch,
        )
    }

    /// Runs the cell: `--connections` workers `worker(jobs, http)` sharing `http`, the open loop
    /// over the counters' window (job numbers from `seq`), the server-side readings (`at_end` between the
    /// end of the window and the second one), a progress line a second (`progress(fold)`, see
    /// [`spawn_progress`]); then waits for every answer and for `follower`.
    #[allow(clippy::too_many_arguments)]
    pub async fn run<F, W, G>(
        &self,
        counters: &Counters,
        http: Http,
        worker: impl Fn(Queue<Job>, Http) -> F,
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
        let run = self.bench.run;
        let window = counters.window;
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx: Queue<Job> = Arc::new(tokio::sync::Mutex::new(rx));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..run.connections.max(1) {
            workers.spawn(worker(rx.clone(), http.clone()));
        }
        let sampler = spawn_sampler(
            run.metrics_url.clone(),
            self.bench.procs.clone(),
            window,
            at_end,
        );
        let sent = Arc::new(AtomicU64::new(0));
        let ticker = {
            let sent = sent.clone();
            spawn_progress(
                window,
                self.label.clone(),
                run.metrics_url.clone(),
                self.bench.watch.consumers,
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
