//! `vigil-bench`: the load generator behind `ops/bench`.
//!
//! Subcommands (without one, `store` runs, so `vigil-bench --windows 16 …` keeps working):
//! - `store`: Vigil's store (`vigil.store.append` over NATS, fsync before ack, group commit)
//!   beside two peers in the same run, on the same machine, with the same window of requests
//!   in flight and the same ~300 B events:
//!   - **jetstream-sync**: publish-with-ack to a file-storage JetStream stream on a
//!     nats-server of its own run with `jetstream { sync_interval: always }` (≥ 2.10): it
//!     fsyncs before it acks, the same promise as Vigil — the fair peer;
//!   - **jetstream**: the same on the server's default (`sync_interval` 2 min: acked before
//!     fsync, so its rate is not a durable rate; the moonshot peer);
//!   - **postgres**: one `INSERT … SELECT max(version)+1` per append with
//!     `synchronous_commit = on` (fsync before ack, the same promise as Vigil).
//!
//!   With `--replicas 3 --cluster cluster.json` (a centre `ops/cluster up` started) it
//!   measures instead, by default, the single-node store beside **vigil-r3** (the same
//!   appends to the replicated store, through all three nodes) and **jetstream-r3** (a
//!   3-replica JetStream stream on the same cluster, one event per message with an expected
//!   last subject sequence), and judges the cluster issue's targets (see `replicated`).
//!
//!   For each window W and each system it runs W concurrent in-flight appends for a warm-up
//!   (not measured) and then for the measured duration, records every ack latency in an HDR
//!   histogram, and prints rates, percentiles, errors, the ratios between the systems and the
//!   targets of the store's issue with PASS/MISS beside each.
//! - `fanout`: K WebSocket clients on the gateway's situation board while events are appended
//!   at R/s; latency per delta, frames/s, memory per connection, beside a baseline broadcast
//!   server that sends the same bytes with no projection (see `fanout`).
//! - `replay`: writes N events into a fresh log, times `vigil replay --from-disk` and a cold
//!   `vigil up` to a ready board (see `replay`).
//! - `intake`: field reports `POST`ed to the gateway at R/s (open loop): latency to the 201
//!   and to the delta on a WebSocket board client, beside a peer that takes the same requests
//!   on the same HTTP stack and appends straight to the same store (see `intake`,
//!   `intake_peer`).
//! - `clearances`: travel clearances requested and approved over HTTP at R pairs/s (open
//!   loop): latency to the 201, to the approval's 200 and to the approved clearance in the
//!   clearances register, beside the same peer; and `vigil import` of the reference data,
//!   timed twice, beside an import peer (see `clearances`).
//! - `broadcast`: one all-agency broadcast, approved by a second duty officer, to N agencies
//!   whose webhooks the bench serves: time to every webhook, to every focal point's
//!   acknowledgement answered 200 and to the broadcast's view showing all delivered and
//!   acknowledged, beside a peer that sends the same signed messages straight from the bench
//!   (see `broadcast`).
//! - `site`: a field site whose link to the centre is down queues N reports; the link
//!   returns: time until its outbox is empty (issue 19: 10,000 in ≤ 10 s), every report
//!   checked once and in order in the centre's log, beside a peer sending the same reports
//!   straight to the service (see `site`).
//!
//! # Layout
//! - `cell`: the harness every benchmark runs and measures its cells with: the run of every
//!   cell (each benchmark says how one cell runs and what it prints), the warm-up and
//!   measured window, the progress line a second, latency histograms, failures tallied by
//!   kind.
//! - `driver`: runs one store cell (one system at one window): workers, progress, histograms.
//! - `systems`: how each system appends one event, and how each is set up and torn down.
//! - `report`: the store tables, ratios and targets.
//! - `replicated`: `store --replicas 3`: the cluster's connections, the replicated JetStream
//!   peer, and the cluster issue's table, ratios and targets.
//! - `workload`: realistic domain events (incidents, security levels) over 50 countries.
//! - `fanout`, `baseline`: the WebSocket fan-out benchmark and its baseline server.
//! - `replay`: the replay and cold-start benchmark.
//! - `intake`, `intake_peer`: the field-intake benchmark and its peer server (which also
//!   takes the clearance routes).
//! - `clearances`: the clearances and import benchmark.
//! - `broadcast`: the all-agency broadcast benchmark, its webhook receiver and its peer.
//! - `site`: a field site's outbox drained once its link returns, beside a peer.
//! - what the HTTP benchmarks share: `load` (the systems, the peer process, the flags),
//!   `http` (the client), `open_loop` (one cell's schedule), `tracker` (writes waiting for a
//!   follower of the log), `server_side` (what `vigil up` did over a window), `summary` (a
//!   cell's totals and the tables).
//! - `prom`: `vigil up`'s Prometheus page, fetched and read (counters, gauges, histograms).
//! - `util`: HTTP GET, `/readyz`, NATS credentials, board frame heads, `/proc` readings.

mod baseline;
mod broadcast;
mod cell;
mod clearances;
mod driver;
mod fanout;
mod http;
mod intake;
mod intake_peer;
mod load;
mod open_loop;
mod prom;
mod replay;
mod replicated;
mod report;
mod server_side;
mod site;
mod summary;
mod systems;
mod tracker;
mod util;
mod workload;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Load generator for `ops/bench`: the store beside JetStream and PostgreSQL (default), the
/// board fan-out over WebSocket, replay/cold start of the board projections, field intake
/// over HTTP, travel clearances with the reference import, and an all-agency broadcast to
/// webhooks.
#[derive(Debug, Parser)]
#[command(
    name = "vigil-bench",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand: the flags of `store`.
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Vigil's store beside JetStream and PostgreSQL: appends/s and ack latency per window
    /// (the default).
    Store(StoreArgs),
    /// K WebSocket clients on the situation board while events are appended at R/s, beside a
    /// baseline broadcast server with the same bytes.
    Fanout(fanout::FanoutArgs),
    /// Writes N events into a fresh log, then times `vigil replay --from-disk` and a cold
    /// `vigil up` until /readyz.
    Replay(replay::ReplayArgs),
    /// Field reports POSTed to the gateway at R/s (open loop): p50/p99 from the POST to the
    /// 201 and to the delta on a WebSocket board client, beside a peer that appends the same
    /// reports straight to the same store.
    Intake(intake::IntakeArgs),
    /// Travel clearances requested and approved at R pairs/s (open loop): p50/p99 from the
    /// POST to the 201, to the approval's 200 and to the approved clearance in the register,
    /// beside the same peer; `vigil import` of the reference data timed beside an import peer.
    Clearances(clearances::ClearancesArgs),
    /// One all-agency broadcast to N agencies with webhooks on loopback: time from approval to
    /// every webhook, to every acknowledgement answered 200 and to the view showing them all,
    /// beside a peer sending the same signed messages straight from the bench.
    Broadcast(broadcast::BroadcastArgs),
    /// A field site's outbox of N reports forwarded once its link to the centre returns:
    /// time to drain, reports/s, beside the same reports sent straight to the service.
    Site(site::SiteArgs),
    /// The peer server of `intake` and `clearances` (started by them).
    #[command(hide = true)]
    IntakePeer(intake_peer::PeerArgs),
    /// The fan-out baseline server (started by `fanout`; driven over stdin/stdout).
    #[command(hide = true)]
    BaselineServer(baseline::BaselineArgs),
}

/// Vigil's store beside JetStream and PostgreSQL: appends/s and ack latency per window.
#[derive(Debug, Clone, Args)]
struct StoreArgs {
    /// NATS server where `vigil store` serves `vigil.store.append` (JetStream must be on too).
    #[arg(
        long,
        env = "VIGIL_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// NATS server run with `jetstream { sync_interval: always }`, for `jetstream-sync`.
    #[arg(long, env = "VIGIL_BENCH_JS_SYNC_URL")]
    js_sync_url: Option<String>,
    /// PostgreSQL connection URL (a database the benchmark may create a schema in).
    #[arg(
        long,
        env = "VIGIL_BENCH_PG_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    pg_url: String,
    /// Measured seconds per cell (one system at one window).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Unmeasured warm-up seconds before each cell's measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Requests in flight, one cell per value.
    #[arg(long, value_delimiter = ',', default_value = "16,128,512")]
    windows: Vec<usize>,
    /// Systems to run, in this order within each window [default:
    /// vigil,jetstream-sync,jetstream,postgres; with --replicas: vigil,vigil-r3,jetstream-r3].
    #[arg(long, value_enum, value_delimiter = ',')]
    systems: Option<Vec<System>>,
    /// Also measure a replicated centre: the store on the 3-node cluster that --cluster
    /// describes (`vigil-r3`) and a JetStream stream with this many replicas on the same
    /// nats-servers (`jetstream-r3`). Only 3: the store's journal has 3 replicas.
    #[arg(long)]
    replicas: Option<usize>,
    /// The description `ops/cluster up` wrote (`cluster.json`: each node's NATS URL and the
    /// shared NATS credentials file), for --replicas.
    #[arg(long, env = "VIGIL_BENCH_CLUSTER")]
    cluster: Option<std::path::PathBuf>,
    /// Streams each worker appends to, round-robin.
    #[arg(long, default_value_t = 4)]
    streams_per_worker: usize,
    /// Approximate size of each event's JSON `data`, in bytes.
    #[arg(long, default_value_t = 300)]
    data_bytes: usize,
    /// Most PostgreSQL connections (the window is spread over min(W, this) connections).
    #[arg(long, default_value_t = 64)]
    pg_max_connections: usize,
    /// NATS connections the bench spreads its workers over (Vigil and JetStream alike; with
    /// --replicas at least one per node, for every system).
    #[arg(long, default_value_t = 1)]
    nats_connections: usize,
    /// Seconds before a request counts as timed out.
    #[arg(long, default_value_t = 5)]
    request_timeout: u64,
    /// Also send a `Nats-Msg-Id` header with JetStream publishes, so JetStream deduplicates by
    /// event id as Vigil and PostgreSQL do (off by default: a plain publish-with-ack).
    #[arg(long)]
    js_msg_id: bool,
}

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum System {
    /// Vigil's store: `vigil.store.append` over NATS.
    Vigil,
    /// JetStream publish-with-ack to a file stream on a server with `sync_interval: always`
    /// (fsync before ack).
    JetstreamSync,
    /// JetStream publish-with-ack to a file stream on the server's default sync (no fsync
    /// before ack).
    Jetstream,
    /// PostgreSQL `INSERT … SELECT` with `synchronous_commit = on`.
    Postgres,
    /// Vigil's store replicated on a 3-node cluster (`--replicas 3`): `vigil.store.append`
    /// through all three nodes' NATS servers, acked after a quorum of the journal fsynced.
    #[value(name = "vigil-r3")]
    VigilR3,
    /// JetStream publish-with-ack to a 3-replica file stream on the same cluster
    /// (`sync_interval: always`), one event per message with an expected last subject
    /// sequence (`--replicas 3`).
    #[value(name = "jetstream-r3")]
    JetstreamR3,
}

impl System {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vigil => "vigil",
            Self::JetstreamSync => "jetstream-sync",
            Self::Jetstream => "jetstream",
            Self::Postgres => "postgres",
            Self::VigilR3 => "vigil-r3",
            Self::JetstreamR3 => "jetstream-r3",
        }
    }

    /// Whether it runs on the cluster of `--replicas`.
    pub fn replicated(self) -> bool {
        matches!(self, Self::VigilR3 | Self::JetstreamR3)
    }
}

fn main() -> ExitCode {
    // Before any thread exists: the data directories this tool makes (and the files in
    // them) are owner-only, as `vigil` makes its own; `vigil` refuses one open to others.
    runtime::data_dir::restrict_umask();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run_main()),
        Err(e) => {
            eprintln!("vigil-bench: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(cli.store).await,
        Some(Command::Store(args)) => run(args).await,
        Some(Command::Fanout(args)) => fanout::run(args).await,
        Some(Command::Replay(args)) => replay::run(args).await,
        Some(Command::Intake(args)) => intake::run(args).await,
        Some(Command::Clearances(args)) => clearances::run(args).await,
        Some(Command::Broadcast(args)) => broadcast::run(args).await,
        Some(Command::Site(args)) => site::run(args).await,
        Some(Command::IntakePeer(args)) => intake_peer::serve(args).await,
        Some(Command::BaselineServer(args)) => baseline::serve(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `vigil-bench store`.
async fn run(cli: StoreArgs) -> anyhow::Result<()> {
    if cli.windows.is_empty() || cli.windows.contains(&0) {
        bail!("--windows needs at least one window, each ≥ 1");
    }
    if cli.duration == 0 {
        bail!("--duration must be ≥ 1 second");
    }
    if cli.streams_per_worker == 0 || cli.nats_connections == 0 || cli.pg_max_connections == 0 {
        bail!("--streams-per-worker, --nats-connections and --pg-max-connections must be ≥ 1");
    }
    let cluster = match (cli.replicas, cli.cluster.as_deref()) {
        (None, _) => None,
        (Some(replicated::REPLICAS), Some(path)) => {
            Some(replicated::Cluster::load(path, replicated::REPLICAS)?)
        }
        (Some(replicated::REPLICAS), None) => bail!(
            "--replicas needs --cluster (the cluster.json of `ops/cluster up`; `ops/bench store --replicas 3` starts one)"
        ),
        (Some(n), _) => bail!(
            "--replicas {n}: only {} (the store's journal has {} replicas)",
            replicated::REPLICAS,
            replicated::REPLICAS
        ),
    };
    let mut systems = cli.systems.clone().unwrap_or_else(|| {
        if cluster.is_some() {
            vec![System::Vigil, System::VigilR3, System::JetstreamR3]
        } else {
            vec![
                System::Vigil,
                System::JetstreamSync,
                System::Jetstream,
                System::Postgres,
            ]
        }
    });
    systems.dedup();
    if cluster.is_none() && systems.iter().any(|s| s.replicated()) {
        bail!("vigil-r3 and jetstream-r3 need --replicas 3 and --cluster");
    }
    if cli.js_sync_url.is_none() && systems.contains(&System::JetstreamSync) {
        eprintln!(
            "vigil-bench: no --js-sync-url (a nats-server with `jetstream {{ sync_interval: always }}`): jetstream-sync is not run"
        );
        systems.retain(|s| *s != System::JetstreamSync);
    }

    let settings = systems::Settings {
        nats_url: cli.nats_url.clone(),
        js_sync_url: cli.js_sync_url.clone(),
        pg_url: cli.pg_url.clone(),
        streams_per_worker: cli.streams_per_worker,
        data_bytes: cli.data_bytes,
        pg_max_connections: cli.pg_max_connections,
        // One connection per node at least for the replicated cells, and as many for the
        // single node, so the two see the same client side.
        nats_connections: cluster.as_ref().map_or(cli.nats_connections, |c| {
            cli.nats_connections.max(c.nodes.len())
        }),
        request_timeout: Duration::from_secs(cli.request_timeout.max(1)),
        js_msg_id: cli.js_msg_id,
        cluster,
    };
    let env = systems::Env::connect(&settings, &systems).await?;
    env.print_preamble(&settings);
    println!(
        "each cell: {} s warm-up (not measured) + {} s measured; windows {:?}; systems {}",
        cli.warmup,
        cli.duration,
        cli.windows,
        cell::names(&systems, |s| s.name())
    );

    let mut bench = driver::StoreBench {
        env: &env,
        settings: &settings,
        warmup: Duration::from_secs(cli.warmup),
        duration: Duration::from_secs(cli.duration),
    };
    // A second between cells lets the previous system's writes settle before the next one
    // measures.
    let results =
        cell::run_cells(&mut bench, &cli.windows, &systems, Duration::from_secs(1)).await?;
    if results.iter().any(|r| r.spec.system.replicated()) {
        replicated::print_summary(&results, &cli.windows);
    } else {
        report::print_summary(&results, &cli.windows);
    }
    Ok(())
}
