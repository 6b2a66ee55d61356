//! The one Vigil binary. `main` only wires: parse the command line, resolve settings, run.
//!
//! # Layout
//! - `cli`: commands, flags, and how flags, environment and the config file combine.
//! - `up`: `vigil up`, the whole centre on one machine (owns its nats-server).
//! - `services`: the domain services, run together by `up` or one by one.
//! - `import`: `vigil import`, reference data into the log.
//! - `gen_reference`: `vigil gen-reference`, a large reference dataset for `import`.
//! - `tools`: operator verbs (`tail`, `append`, `replay`, `verify`).
//! - `agency`: `vigil agency`, the NATS identities of agency systems.
//! - `sites`: `vigil site-user` (the NATS users of field sites) and `vigil site`.
//! - `users`: `vigil user` and `vigil token`, and the first admin of a new centre.
//! - `cluster`: `vigil cluster status` (the store replicas, the lease, the journal) and
//!   `vigil cluster secrets` (the credentials the nodes of a cluster share).

mod agency;
mod cli;
mod cluster;
mod gen_reference;
mod import;
mod services;
mod sites;
mod tools;
mod up;
mod users;

use std::process::ExitCode;

use clap::Parser;
use runtime::nats::Mode;

use crate::cli::{Cli, Command, GatewayArgs, StoreArgs};

// The store's writer allocates per event (the recorded JSON, batch keys, fjall's memtable
// skiplist nodes) on one thread while the NATS tasks allocate on others: under glibc's malloc
// that was about a sixth of the store's CPU in the profile of the 128-in-flight cell
// (docs/BENCHMARKS.md). mimalloc's per-thread heaps make those allocations cheap.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Before any thread exists (the umask is per process): everything this process and the
    // libraries in it create (fjall's tables and journals too) is owner-only.
    runtime::data_dir::restrict_umask();
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(run()),
        Err(e) => {
            eprintln!("vigil: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> ExitCode {
    let cli = Cli::parse();
    if let Command::GenReference(args) = &cli.command {
        // Offline: no settings, no data directory, no log lines; only the records on stdout.
        return match gen_reference::write(args, std::io::stdout().lock()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vigil gen-reference: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    runtime::telemetry::init_tracing();
    // A server holds a descriptor per client, per NATS connection and per store file: it
    // raises its own soft limit (often 1,024) to the hard limit, once, before it starts.
    if cli.command.is_server() {
        runtime::open_files::raise_to_hard_limit();
    }
    // `vigil up` decides the NATS URL; every other command finds the running centre's.
    let use_record = !matches!(cli.command, Command::Up(_));
    let result = match cli.common.resolve(use_record) {
        Ok(settings) if cli.command.writes_data_dir() => {
            // Before anything is written: a data directory other users can read is refused.
            match runtime::data_dir::check_private(&settings.data_dir) {
                Ok(()) => dispatch(settings, cli.command).await,
                Err(e) => Err(e.into()),
            }
        }
        Ok(settings) => dispatch(settings, cli.command).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vigil: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(settings: cli::Resolved, command: Command) -> anyhow::Result<()> {
    if command.folds_log() {
        runtime::checkpoint::set_default_dir(Some(runtime::checkpoint::dir_in(&settings.data_dir)));
    }
    match command {
        Command::Up(args) => up::run(settings, args).await,
        Command::Store(args) => run_store(settings, args).await,
        Command::Tail(args) => tools::tail(settings, args).await,
        Command::Append(args) => tools::append(settings, args).await,
        Command::Gateway(args) => run_gateway(settings, args).await,
        Command::Audit => services::run_one(settings, "audit").await,
        Command::Incidents => services::run_one(settings, incidents::SERVICE).await,
        Command::Levels => services::run_one(settings, levels::SERVICE).await,
        Command::Relocation => services::run_one(settings, relocation::SERVICE).await,
        Command::Surge => services::run_one(settings, surge::SERVICE).await,
        Command::Hostage => services::run_one(settings, hostage::SERVICE).await,
        Command::Clearances => services::run_one(settings, clearances::SERVICE).await,
        Command::Broadcast => services::run_one(settings, broadcast::SERVICE).await,
        Command::Import(args) => import::run(settings, args).await,
        Command::Replay(args) => tools::replay(settings, args).await,
        Command::Verify(args) => tools::verify(settings, args).await,
        Command::User { command } => users::user(settings, command),
        Command::Token { command } => users::token(settings, command),
        Command::Agency { command } => agency::run(settings, command).await,
        Command::SiteUser { command } => sites::site_user(settings, command),
        Command::Site(args) => sites::run(settings, args).await,
        Command::Cluster { command } => cluster::run(settings, command).await,
        // Normally answered in `run` before any settings are read.
        Command::GenReference(args) => gen_reference::write(&args, std::io::stdout().lock()),
    }
}

async fn run_store(settings: cli::Resolved, args: StoreArgs) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown::on_signals();
    let mut config = settings.store_config();
    if args.unsafe_no_fsync {
        tracing::warn!(
            "--unsafe-no-fsync: acknowledged appends can be lost on power loss (test harness only)"
        );
        config.durability = store::Durability::UnsafeNoSync;
    }
    if let Some(node) = args.cluster_node {
        config.replication = Some(store::Replication::new(node));
    }
    if let Some(addr) = args.metrics {
        runtime::telemetry::serve_metrics_at(addr, shutdown.clone()).await?;
    }
    let credentials = settings.nats_credentials_for(runtime::nats_auth::STORE)?;
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-store",
        credentials,
        Mode::Service,
    )
    .await?;
    store::run(client, config, shutdown).await
}

async fn run_gateway(settings: cli::Resolved, args: GatewayArgs) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown::on_signals();
    let addr = settings.http_addr(args.http.as_deref())?;
    // `/metrics` only on its own address (loopback by default), never on the public port.
    if let Some(metrics) = args.metrics {
        runtime::telemetry::serve_metrics_at(metrics, shutdown.clone()).await?;
    }
    let auth = std::sync::Arc::new(gateway::auth::Auth::open(&settings.data_dir, vec![])?);
    let credentials = settings.nats_credentials_for(runtime::nats_auth::GATEWAY)?;
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-gateway",
        credentials,
        Mode::Service,
    )
    .await?;
    let limits = settings.connection_limits()?;
    // Ready only once every domain service of the centre (or those named) is.
    let ready_with = args.ready_with()?;
    let (bound, task) =
        gateway::start_node(addr, client, auth, shutdown, limits, None, &ready_with).await?;
    println!("gateway: wall screen at http://{bound}/");
    task.await?
}
