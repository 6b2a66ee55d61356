//! `vigil-chaos`: the reliability battery behind `ops/chaos`. Each scenario breaks a real
//! centre on purpose (loopback only, bounded in time, cleaning up what it started), then the
//! checker reads the whole log back, and the scenario prints one line of figures ending in
//! PASS or FAIL (the exit status says the same).
//!
//! - `crash --cycles N`: kill -9 of the store, each service, the gateway and nats-server at
//!   random moments under 4 concurrent writers (see [`crash`]).
//! - `failover [--faults N] [--quick]`: a 3-node centre (`ops/cluster`) under 4 writers that
//!   move between nodes; kill -9 of the store leader's node, the leader cut off, kill -9 of
//!   a follower, drawn at random; then the checker on every replica, which must be
//!   identical (see [`failover`]).
//! - `check --data-dir D --acks F`: the checker alone, on a stopped store (see [`check`]).
//! - `damage [--seeds N]`: truncated, torn, bit-flipped and deleted store files, each on a
//!   copy of a stopped store (see [`damage`]).
//! - `diskfull`: the store on a small tmpfs written until it is full, then given space
//!   again (see [`diskfull`]).
//! - `fuzz --minutes N`: random and structured input against the event codec, the store's
//!   append decoder, the HTTP JSON bodies and the WebSocket client messages (see [`fuzz`]).
//! - `soak --minutes M`: steady realistic load with a crash now and then; memory and open
//!   files of every process over time must stay flat (see [`soak`]).
//! - `partition --cuts N [--quick]`: nats-server, a field client and a wall screen each in a
//!   network namespace, cut off and healed at random (see [`partition`]).
//! - `powerloss --cycles N`: the store on a `vigil-lazyfs` mount, killed and its unsynced
//!   writes dropped N times; then the same without fsync, which must lose (see
//!   [`powerloss`]).
//! - `slowloris [--connections 5000] [--seconds 30]`: thousands of half-open connections
//!   against a running `vigil up` while field reports flow; report latency with and without
//!   (see [`slowloris`]).
//! - `site [--minutes 30] [--quick] [--seed S]`: a centre and two field sites (`ops/site`,
//!   root), each site's link cut, flapped and healed at random and each site killed -9 once
//!   while reports and roll-call marks are submitted at the sites; every item a site
//!   acknowledged must reach the centre's log once, in the site's order (see [`site`]).
//!
//! # Layout
//! - `centre`: a centre as separate processes that can be killed and started again.
//! - `writers`: the HTTP and NATS writers and their ack file.
//! - `check`: the checker.
//! - one module per scenario.

mod centre;
mod check;
mod crash;
mod damage;
mod diskfull;
mod failover;
mod fuzz;
mod partition;
mod powerloss;
mod script;
mod site;
mod slowloris;
mod soak;
mod writers;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vigil-chaos",
    about = "Break a Vigil centre on purpose and check nothing acknowledged was lost"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// The `vigil` binary to run.
    #[arg(long, default_value = "target/debug/vigil")]
    vigil: PathBuf,
    /// Where the scenario keeps its data and process logs (a fresh temp dir by default,
    /// removed after a PASS, kept after a FAIL).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// kill -9 of every part at random under 4 writers, N times; then the checker.
    Crash {
        /// kill/restart cycles.
        #[arg(long, default_value_t = 10)]
        cycles: usize,
        #[command(flatten)]
        common: Common,
    },
    /// Network cuts between field client and gateway, services and nats-server, gateway and
    /// screen (network namespaces and nftables; needs root).
    Partition {
        /// Cuts to make.
        #[arg(long, default_value_t = 5)]
        cuts: usize,
        /// Cuts of 1–5 s instead of 1–30 s.
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Steady load (reports, levels, clearances, broadcasts, screens) with periodic crashes,
    /// watching memory and open files.
    Soak {
        /// How long, in minutes (`ops/chaos soak --hours H` passes H × 60).
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        /// WebSocket wall screens.
        #[arg(long, default_value_t = 500)]
        screens: usize,
        /// Seconds between crashes.
        #[arg(long, default_value_t = 60)]
        crash_every: u64,
        /// Seconds between readings.
        #[arg(long, default_value_t = 30)]
        sample_every: u64,
        #[command(flatten)]
        common: Common,
    },
    /// A 3-node centre (`ops/cluster`, root for its cuts) under 4 writers: the store leader's
    /// node killed or cut off, a follower killed, cut off or wiped, at random; then every
    /// replica checked (nothing acknowledged lost, the three identical).
    Failover {
        /// Faults to make (the first five are one of each kind).
        #[arg(long, default_value_t = 6)]
        faults: usize,
        /// 5 faults, one of each kind (overrides `--faults`).
        #[arg(long)]
        quick: bool,
        /// Seed of the draw (random by default; printed, to repeat a run).
        #[arg(long)]
        seed: Option<u64>,
        /// The `ops/cluster` script.
        #[arg(long, default_value = "ops/cluster")]
        script: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// One client of the partition scenario, run by it inside a network namespace.
    #[command(hide = true)]
    PartitionClient {
        #[arg(long, value_enum)]
        role: partition::ClientRole,
        #[arg(long)]
        http: std::net::SocketAddr,
        #[arg(long)]
        token: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fuzz the event codec, the store's append decoder, the HTTP bodies and the WebSocket
    /// messages of a running centre for N minutes in all.
    Fuzz {
        /// The time budget, shared by the four targets.
        #[arg(long, default_value_t = 5.0)]
        minutes: f64,
        /// Seed of the generators (random by default; printed, to replay a run).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// Damaged store files (torn, truncated, bit-flipped, deleted), each on a copy: the store
    /// recovers a consistent prefix with every provable ack, or refuses clearly.
    Damage {
        /// Seeds per random kind of damage (torn tails, torn deep, and twice as many bit
        /// flips).
        #[arg(long, default_value_t = 8)]
        seeds: usize,
        /// The first seed (random by default; printed, so a run can be repeated).
        #[arg(long)]
        seed: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// The store on a small tmpfs written until the disk is full: appends refused clearly,
    /// nothing acknowledged lost, writes resume by themselves once space returns.
    #[command(name = "diskfull")]
    DiskFull {
        /// Size of the tmpfs mounted as the store's directory, in MiB.
        #[arg(long, default_value_t = 64)]
        size_mib: u64,
        /// Free space left to the store (the rest is taken by a ballast file), in MiB.
        #[arg(long, default_value_t = 12)]
        free_mib: u64,
        #[command(flatten)]
        common: Common,
    },
    /// The store on a `vigil-lazyfs` mount under 4 NATS writers: kill -9, drop every
    /// unsynced write (power loss), restart, N times; nothing acknowledged may be lost. Then
    /// the same with the store's fsync off, which must lose (the harness sees loss).
    #[command(name = "powerloss")]
    PowerLoss {
        /// Power-loss cycles with fsync on (the promise).
        #[arg(long, default_value_t = 100)]
        cycles: usize,
        /// Power-loss cycles of the control run with fsync off (0 skips it).
        #[arg(long, default_value_t = 20)]
        unsafe_cycles: usize,
        /// The `vigil-lazyfs` binary.
        #[arg(long, default_value = "target/debug/vigil-lazyfs")]
        lazyfs: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// Half-open connections (slow loris) against a running `vigil up` while field reports
    /// flow: report latency with and without, nothing lost, /readyz answering.
    #[command(name = "slowloris")]
    SlowLoris {
        /// Half-open connections to hold.
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// Seconds of reports without, then with, the attack.
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        /// 15 s phases instead of `--seconds`.
        #[arg(long)]
        quick: bool,
        #[command(flatten)]
        common: Common,
    },
    /// A centre and two field sites (`ops/site`, root): each site's link cut (1–30 s),
    /// flapped and healed at random, each site killed -9 once during a cut, while field
    /// officers submit at the sites and a duty officer at the centre; every item a site
    /// acknowledged must be in the centre's log once, in the site's order.
    Site {
        /// Minutes of cuts (the full-length run).
        #[arg(long, default_value_t = 30.0)]
        minutes: f64,
        /// 75 s of cuts instead of `--minutes` (for CI: the whole run stays under 3 min).
        #[arg(long)]
        quick: bool,
        /// Seed of the draw (random by default; printed, to repeat a run).
        #[arg(long)]
        seed: Option<u64>,
        /// The `ops/site` script.
        #[arg(long, default_value = "ops/site")]
        script: PathBuf,
        #[command(flatten)]
        common: Common,
    },
    /// The checker alone: a stopped store's directory against an ack file.
    Check {
        /// The store's directory (`<data-dir>/store`).
        #[arg(long)]
        store: PathBuf,
        /// The ack file the writers wrote.
        #[arg(long)]
        acks: PathBuf,
    },
}

/// A scenario's working directory: the one asked for, or a temp dir kept only on failure.
struct WorkDir {
    path: PathBuf,
    temp: Option<tempfile::TempDir>,
}

impl WorkDir {
    fn new(asked: Option<PathBuf>, name: &str) -> anyhow::Result<WorkDir> {
        match asked {
            Some(path) => Ok(WorkDir { path, temp: None }),
            None => {
                let temp = tempfile::Builder::new()
                    .prefix(&format!("vigil-chaos-{name}-"))
                    .tempdir()?;
                Ok(WorkDir {
                    path: temp.path().to_owned(),
                    temp: Some(temp),
                })
            }
        }
    }

    /// Keeps the directory (for the logs of a failed run) and says where it is, when the run
    /// did not pass (`ok`); returns `ok`.
    fn finish(mut self, ok: bool) -> bool {
        if !ok && let Some(t) = self.temp.take() {
            let path = t.keep();
            eprintln!("kept {} for its logs", path.display());
        }
        ok
    }

    /// The end of a scenario: prints its `line` and its problems, and [`WorkDir::finish`]es.
    fn conclude(
        self,
        line: String,
        problems: &[String],
        board: &Result<(), String>,
        crashed: &[String],
        ok: bool,
    ) -> bool {
        println!("{line}");
        report_problems(problems, board, crashed);
        self.finish(ok)
    }
}

fn main() -> ExitCode {
    // Before any thread exists: the data directories this tool makes (and the files in
    // them) are owner-only, as `vigil` makes its own; `vigil` refuses one open to others.
    runtime::data_dir::restrict_umask();
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(run_main()),
        Err(e) => {
            eprintln!("vigil-chaos: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run_main() -> ExitCode {
    let cli = Cli::parse();
    // On Ctrl-C or SIGTERM the scenario's future is dropped, and with it everything it
    // started (each process, nats-server, mount and namespace is owned by a value whose
    // `Drop` stops or removes it): an interrupted run leaves nothing behind.
    let interrupted = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "interrupted (Ctrl-C)",
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => "terminated (SIGTERM)",
        }
    };
    let outcome = tokio::select! {
        r = run(cli.command) => r,
        why = interrupted => {
            eprintln!("vigil-chaos: {why}: stopped what the scenario started; no verdict");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("vigil-chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(command: Command) -> anyhow::Result<bool> {
    match command {
        Command::Crash { cycles, common } => {
            let work = WorkDir::new(common.dir, "crash")?;
            let outcome = crash::run(&common.vigil, &work.path, cycles).await?;
            Ok(work.conclude(
                outcome.line("crash"),
                &outcome.verdict.problems,
                &outcome.board,
                &outcome.crashed,
                outcome.ok(),
            ))
        }
        Command::Partition {
            cuts,
            quick,
            common,
        } => {
            let work = WorkDir::new(common.dir, "partition")?;
            let chaos = std::env::current_exe()?;
            let outcome = partition::run(&common.vigil, &chaos, &work.path, cuts, quick).await?;
            Ok(work.conclude(
                outcome.line(),
                &outcome.verdict.problems,
                &outcome.board,
                &outcome.problems,
                outcome.ok(),
            ))
        }
        Command::Soak {
            minutes,
            screens,
            crash_every,
            sample_every,
            common,
        } => {
            let work = WorkDir::new(common.dir, "soak")?;
            let settings = soak::Settings {
                duration: std::time::Duration::from_secs_f64(minutes.max(0.1) * 60.0),
                screens,
                crash_every: std::time::Duration::from_secs(crash_every.max(1)),
                sample_every: std::time::Duration::from_secs(sample_every.max(1)),
            };
            let outcome = soak::run(&common.vigil, &work.path, &settings).await?;
            Ok(work.conclude(
                outcome.line(settings.duration),
                &outcome.verdict.problems,
                &Ok(()),
                &outcome.problems,
                outcome.ok(),
            ))
        }
        Command::Failover {
            faults,
            quick,
            seed,
            script,
            common,
        } => {
            let work = WorkDir::new(common.dir, "failover")?;
            let seed = seed.unwrap_or_else(rand::random);
            let faults = if quick {
                failover::Fault::ALL.len()
            } else {
                faults
            };
            eprintln!("failover: {faults} faults, seed {seed} (repeat with --seed {seed})");
            let outcome =
                match failover::run(&common.vigil, &script, &work.path, faults, seed).await {
                    Ok(o) => o,
                    Err(e) => {
                        work.finish(false);
                        return Err(e);
                    }
                };
            let ok = outcome.ok();
            Ok(work.conclude(outcome.line(), &outcome.all_problems(), &Ok(()), &[], ok))
        }
        Command::PartitionClient {
            role,
            http,
            token,
            out,
        } => {
            partition::client(role, http, token, out).await?;
            Ok(true)
        }
        Command::Fuzz {
            minutes,
            seed,
            common,
        } => {
            let work = WorkDir::new(common.dir, "fuzz")?;
            let seed = seed.unwrap_or_else(rand::random);
            let outcome = fuzz::run(&common.vigil, &work.path, minutes, seed).await?;
            for t in &outcome.tallies {
                println!("{}", t.line());
            }
            println!("{}", outcome.line());
            for t in &outcome.tallies {
                for e in &t.examples {
                    eprintln!("  problem ({}): {e}", t.name);
                }
            }
            report_problems(&outcome.problems, &Ok(()), &outcome.crashed);
            let ok = outcome.ok();
            if !ok {
                eprintln!("  replay the generators with --seed {seed}");
            }
            Ok(work.finish(ok))
        }
        Command::Damage {
            seeds,
            seed,
            common,
        } => {
            let work = WorkDir::new(common.dir, "damage")?;
            let seed = seed.unwrap_or_else(rand::random);
            eprintln!("damage: seed {seed} (repeat with --seed {seed})");
            let outcome = damage::run(&common.vigil, &work.path, seeds, seed).await?;
            Ok(work.conclude(
                outcome.line(),
                &outcome.problems(),
                &Ok(()),
                &[],
                outcome.ok(),
            ))
        }
        Command::DiskFull {
            size_mib,
            free_mib,
            common,
        } => {
            let work = WorkDir::new(common.dir, "diskfull")?;
            let outcome = diskfull::run(&common.vigil, &work.path, size_mib, free_mib).await?;
            Ok(work.conclude(
                outcome.line(),
                &outcome.problems,
                &Ok(()),
                &[],
                outcome.ok(),
            ))
        }
        Command::PowerLoss {
            cycles,
            unsafe_cycles,
            lazyfs,
            common,
        } => {
            let work = WorkDir::new(common.dir, "powerloss")?;
            let mut ok = true;
            let on = powerloss::run(
                &common.vigil,
                &lazyfs,
                &work.path.join("fsync-on"),
                cycles,
                true,
            )
            .await?;
            println!("{}", on.line());
            report_problems(&on.problems(), &Ok(()), &[]);
            ok &= on.ok();
            if unsafe_cycles > 0 {
                let off = powerloss::run(
                    &common.vigil,
                    &lazyfs,
                    &work.path.join("fsync-off"),
                    unsafe_cycles,
                    false,
                )
                .await?;
                println!("{}", off.line());
                // Expected here: what the harness saw, not a failure.
                for p in off.problems().iter().take(3) {
                    eprintln!("  seen (fsync off): {p}");
                }
                ok &= off.ok();
            }
            Ok(work.finish(ok))
        }
        Command::SlowLoris {
            connections,
            seconds,
            quick,
            common,
        } => {
            let work = WorkDir::new(common.dir, "slowloris")?;
            let seconds = if quick { 15 } else { seconds };
            let outcome = slowloris::run(&common.vigil, &work.path, connections, seconds).await?;
            Ok(work.conclude(
                outcome.line(),
                &outcome.verdict.problems,
                &Ok(()),
                &outcome.problems,
                outcome.ok(),
            ))
        }
        Command::Site {
            minutes,
            quick,
            seed,
            script,
            common,
        } => {
            if !site::is_root() {
                println!(
                    "site: skipped: not root (ops/site needs network namespaces and nftables)"
                );
                return Ok(true);
            }
            let work = WorkDir::new(common.dir, "site")?;
            let seed = seed.unwrap_or_else(rand::random);
            let duration = if quick {
                std::time::Duration::from_secs(75)
            } else {
                std::time::Duration::from_secs_f64(minutes.max(0.5) * 60.0)
            };
            let outcome =
                match site::run(&common.vigil, &script, &work.path, duration, 30.0, seed).await {
                    Ok(o) => o,
                    Err(e) => {
                        work.finish(false);
                        return Err(e);
                    }
                };
            let ok = outcome.ok();
            let passed = work.conclude(outcome.line(), &outcome.all_problems(), &Ok(()), &[], ok);
            Ok(passed)
        }
        Command::Check { store, acks } => {
            let log = check::read_dir(&store)?;
            let verdict = check::check(&log, &writers::AckFile::read(&acks)?);
            println!(
                "check: {} acknowledged, {} stored, {} lost, {} duplicated, {} position gaps, {} version gaps, {} misordered — {}",
                verdict.acknowledged,
                verdict.stored,
                verdict.lost,
                verdict.duplicated,
                verdict.position_gaps,
                verdict.version_gaps,
                verdict.misordered,
                if verdict.ok() { "PASS" } else { "FAIL" }
            );
            report_problems(&verdict.problems, &Ok(()), &[]);
            Ok(verdict.ok())
        }
    }
}

fn report_problems(problems: &[String], board: &Result<(), String>, crashed: &[String]) {
    for p in problems {
        eprintln!("  problem: {p}");
    }
    if let Err(e) = board {
        eprintln!("  problem: {e}");
    }
    for c in crashed {
        eprintln!("  problem: {c}");
    }
}
