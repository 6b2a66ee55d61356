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
//!
//! # Layout
//! `clients` (the K board clients and what they measure), `sources` (Vigil's appends and the
//! baseline server), `phase` (one system at one K), `print` (the figures); this module keeps
//! the flags and the run (the phases as the cells of `cell::run_cells`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cell::{self, Bench};
use crate::prom;
use crate::util;
use crate::workload::Generator;
use clients::Capture;
use phase::{PhaseResult, Target, run_phase};
use print::{print_metrics, print_phase, print_summary};
use sources::{Baseline, VigilLoad};

mod clients;
mod phase;
mod print;
mod sources;

/// The name of the vigil phase.
const VIGIL: &str = "vigil";
/// What every client sends after connecting.
pub const SUBSCRIBE: &str = r#"{"type":"subscribe","board":"situation","view":"wall_screen"}"#;
/// Histogram shards (clients record into `i % SHARDS`).
const SHARDS: usize = 32;
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

/// A system of the fan-out: a phase each.
#[derive(Debug, Clone, Copy)]
enum System {
    /// The gateway of `vigil up`, with the events appended to its store.
    Vigil,
    /// `vigil-bench baseline-server`, with the vigil phase's frames.
    Baseline,
}

/// The phases as cells: K clients on one system.
struct Phases<'a> {
    args: &'a FanoutArgs,
    vigil: VigilLoad,
    /// The gateway's counters before and after the vigil phase.
    metrics: (BTreeMap<String, f64>, BTreeMap<String, f64>),
    /// What client 0 received in the vigil phase, which the baseline sends.
    capture: Capture,
}

impl Bench for Phases<'_> {
    type Point = usize;
    type System = System;
    type Cell = PhaseResult;

    async fn run(&mut self, _clients: usize, system: System) -> anyhow::Result<PhaseResult> {
        let args = self.args;
        match system {
            System::Vigil => {
                let before = prom::scrape(args.metrics_url.as_deref()).await;
                let v = run_phase(
                    VIGIL,
                    args,
                    &args.ws_url,
                    args.vigil_pid,
                    Target::Vigil(&mut self.vigil),
                )
                .await?;
                let after = prom::scrape(args.metrics_url.as_deref()).await;
                self.metrics = (before, after);
                Ok(v)
            }
            System::Baseline => {
                let mut server =
                    Baseline::start(args.baseline_read_buffer, args.baseline_nodelay).await?;
                server.load_frames(&self.capture).await?;
                let url = format!("ws://{}/ws", server.addr);
                let pid = server.pid();
                run_phase("baseline", args, &url, pid, Target::Baseline(&mut server)).await
            }
        }
    }

    fn print(&self, r: &PhaseResult) {
        if r.name == VIGIL {
            let mix = self.vigil.generator.mix();
            println!(
                "  events: {} IncidentReported, {} IncidentClosed, {} AreaSecurityLevelSet over {} countries (preload included)",
                mix.reported,
                mix.closed,
                mix.levels,
                self.vigil.generator.country_count()
            );
            print_phase(r);
            print_metrics(&self.metrics.0, &self.metrics.1);
        } else {
            print_phase(r);
        }
    }

    fn after_cell(&mut self, r: &PhaseResult) -> anyhow::Result<()> {
        if r.name == VIGIL {
            self.capture = r.capture.clone();
        }
        Ok(())
    }
}

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
    let mut bench = Phases {
        args: &args,
        vigil,
        metrics: Default::default(),
        capture: Capture::default(),
    };
    let systems: &[System] = if args.no_baseline {
        &[System::Vigil]
    } else {
        &[System::Vigil, System::Baseline]
    };
    // Between the two, the gateway's sockets close before the baseline takes the machine.
    let mut phases = cell::run_cells(&mut bench, &[args.clients], systems, Duration::from_secs(2))
        .await?
        .into_iter();
    let v = phases.next().context("the vigil phase did not run")?;
    let b = phases.next();
    print_summary(&args, &v, b.as_ref());
    Ok(())
}
