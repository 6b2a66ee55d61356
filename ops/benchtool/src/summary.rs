//! A cell's totals (what was scheduled, done, failed, unanswered; the errors; the bench's
//! send delay; the server side) and the tables the HTTP benchmarks end with: the console
//! table with the vigil/peer ratios per rate, and the Markdown table.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;

use crate::cell::{Tally, max_ms, ms, print_errors, quantiles, take_histogram};
use crate::load::Server;
use crate::open_loop::{Counters, Scheduled};
use crate::report::thousands;
use crate::server_side::{
    Procs, ServerSide, Watch, cpu_text, print_server_side, ratio, server_side,
};
use crate::util::{self, fmt_ms};

/// Prints how late the bench wrote the measured requests (when it grows, the workers were
/// all busy with a slow server, not the bench).
pub fn print_send_delay(h: &Histogram<u64>) {
    println!(
        "  bench send delay (scheduled → written to a connection): p50 {} ms, p99 {} ms, max {} ms",
        fmt_ms(ms(h, 0.5)),
        fmt_ms(ms(h, 0.99)),
        fmt_ms(max_ms(h))
    );
}

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
            seconds: w.measured_secs(),
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
