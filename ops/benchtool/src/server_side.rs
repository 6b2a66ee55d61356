//! What `vigil up` did over a cell's measured window, read at both ends: its Prometheus page
//! (the watched services' command times, the store's commit time and group size, the
//! gateway's deltas, the positions of the log's followers) and `/proc` (CPU time per process
//! and per thread of `vigil up`, its memory, the machine's busy share); and its printing.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::cell::Window;
use crate::load::PeerProcess;
use crate::prom::{self, PromHistogram};
use crate::report::thousands;
use crate::util::{self, NatsArgs};

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
    let page = prom::scrape_page(metrics_url).await;
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
    let head = prom::prom_sum(page, "vigil_store_head_position", &[])?;
    let board = prom::prom_sum(page, "vigil_gateway_projection_position", &[])?;
    Some((head as u64, board as u64))
}

/// The position of service `consumer`'s follower of the log.
pub fn consumer_position(page: &str, consumer: &str) -> Option<u64> {
    prom::prom_sum(page, "vigil_consumer_position", &[("consumer", consumer)]).map(|p| p as u64)
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
    let hist = |name: &str, labels: &prom::Labels| {
        let after = PromHistogram::read(b.page.as_deref()?, name, labels)?;
        let before = a
            .page
            .as_deref()
            .and_then(|p| PromHistogram::read(p, name, labels));
        Some(after.since(before.as_ref()))
    };
    let counter = |name: &str| {
        let after = prom::prom_sum(b.page.as_deref()?, name, &[])?;
        let before = a
            .page
            .as_deref()
            .and_then(|p| prom::prom_sum(p, name, &[]))
            .unwrap_or(0.0);
        Some(after - before)
    };
    ServerSide {
        commands: watch
            .commands
            .iter()
            .filter_map(|(service, command, what)| {
                let labels = [("service", *service), ("command", *command)];
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
