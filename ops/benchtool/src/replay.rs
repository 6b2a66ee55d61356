//! `vigil-bench replay`: how fast the board projections rebuild from the log, and how long
//! `vigil up` takes to be ready, and to answer commands, on a large log.
//!
//! 1. **Write**: N realistic events (`workload`: incidents reported and closed, security levels,
//!    over 50 countries) straight into a fresh store directory with `vigil_store::Log`, in
//!    groups of `--group` (one atomic, fdatasync'd batch each), the events made on a second
//!    thread a few groups ahead of the writer, printing progress every second. The disk must
//!    have room for them first (~800 bytes an event: 10,000,000 events are ~7 GB).
//! 2. **Replay**: runs `<vigil> replay --from-disk --data-dir D` (`--replay-runs` times, 2 by
//!    default: the first opens a log just written) and reads the events/s it prints (the fold
//!    of the whole log into the situation board, reading fjall directly).
//! 3. **Cold start**: spawns `<vigil> up --data-dir D …` on free loopback ports and times it
//!    from spawn until `GET /readyz` answers 200 (NATS up, the store answering, and the
//!    gateway's boards caught up with the head), until a command is answered (`POST
//!    /api/v1/incidents` 201, with a duty_officer token made by `vigil token create`) and
//!    until the incidents register lists (`GET /api/v1/incidents` 200), printing the board
//!    position every second; then stops it with SIGTERM, which writes the boards' and the
//!    registers' checkpoints; then once more, timed the same way, starting from those
//!    checkpoints (the restart).
//!
//! The replay runs and the cold starts are the cells of `cell::run_cells`.
//!
//! The page cache is warm (the log was just written and replayed): these are warm-cache
//! figures. Targets (issue 17): replay ≥ 1,000,000 events/s; cold start to `/readyz` ≤ 2 s,
//! and a restarted service answering commands ≤ 2 s, at 1,000,000 and at 10,000,000 events.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use events::AppendRequest;
use events::envelope::ExpectedVersion;
use store::{Durability, Log, log::Pending};
use time::OffsetDateTime;

use crate::cell::{self, Bench};
use crate::report::thousands;
use crate::util::{self, bytes_text, verdict};
use crate::workload::Generator;

const TARGET_REPLAY_RATE: f64 = 1_000_000.0;
/// Seconds from spawn to `/readyz`, and to a command answered after a restart.
const TARGET_COLD_START_S: f64 = 2.0;
/// The log sizes the start targets are set for.
const TARGET_SIZES: [u64; 2] = [1_000_000, 10_000_000];

/// Flags of `vigil-bench replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// Events to write.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Data directory for `vigil` (the log goes to `<dir>/store`); must not hold a log yet.
    #[arg(long)]
    data_dir: PathBuf,
    /// Events per group commit while writing.
    #[arg(long, default_value_t = 1000)]
    group: usize,
    /// The `vigil` binary.
    #[arg(long, default_value = "target/release/vigil")]
    vigil_bin: PathBuf,
    /// Port of the nats-server `vigil up` starts (cold start).
    #[arg(long)]
    nats_port: u16,
    /// Port of the gateway (cold start).
    #[arg(long)]
    http_port: u16,
    /// Port of `vigil up`'s /metrics (cold start).
    #[arg(long)]
    metrics_port: u16,
    /// Write the PID of `vigil up` here while it runs (for the caller's cleanup).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Times `vigil replay --from-disk` runs (the first one opens a log just written, whose
    /// fjall journal is recovered at open); the target is judged on the fastest.
    #[arg(long, default_value_t = 2)]
    replay_runs: u32,
    /// Seconds to wait for `/readyz` before giving up.
    #[arg(long, default_value_t = 300)]
    ready_timeout: u64,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

struct Written {
    seconds: f64,
    head: u64,
    reported: u64,
    closed: u64,
    levels: u64,
    open: usize,
}

/// Bytes a written event takes on disk, with its indexes (672 MiB for 1,000,000 events,
/// rounded up), for the free-space check before writing.
const BYTES_PER_EVENT: u64 = 800;

/// Refuses to start writing `n` events into `dir` when its disk cannot hold them (with the
/// checkpoints and a margin): 10,000,000 events are ~7 GB.
fn check_space(dir: &Path, n: u64) -> anyhow::Result<()> {
    let probe = dir
        .ancestors()
        .find(|d| d.exists())
        .unwrap_or_else(|| Path::new("."));
    let fs = nix::sys::statvfs::statvfs(probe)
        .with_context(|| format!("reading the free space under {}", probe.display()))?;
    let free = fs.blocks_available().saturating_mul(fs.fragment_size());
    let need = n.saturating_mul(BYTES_PER_EVENT).saturating_mul(3) / 2;
    if free < need {
        bail!(
            "{} events need about {} on disk (log, indexes and checkpoints), but {} has {} free",
            thousands(n),
            bytes_text(need as f64),
            probe.display(),
            bytes_text(free as f64)
        );
    }
    Ok(())
}

/// Groups of events made ahead of the writer.
const GROUPS_AHEAD: usize = 4;

fn write_log(dir: &Path, n: u64, group: usize, seed: u64) -> anyhow::Result<Written> {
    if dir.join("log").exists() || std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!("{} is not empty: use a fresh directory", dir.display());
    }
    check_space(dir, n)?;
    std::fs::create_dir_all(dir)?;
    let log = Log::open(dir, Durability::SyncData)
        .map_err(|e| anyhow::anyhow!("opening the log at {}: {e}", dir.display()))?;
    let group = group.max(1) as u64;
    // The events are made on a thread of their own, a few groups ahead of the writer, so that
    // making them (typed, validated, encoded) and committing them (hashed, indexed, fsync'd)
    // use both cores: 10,000,000 events must be written in minutes, not in an hour.
    let (groups, made) = std::sync::mpsc::sync_channel::<Vec<Pending>>(GROUPS_AHEAD);
    let maker = std::thread::Builder::new()
        .name("bench-events".into())
        .spawn(move || -> anyhow::Result<Generator> {
            let mut generator = Generator::new(seed)?;
            let mut done = 0u64;
            while done < n {
                let size = (n - done).min(group);
                let now = OffsetDateTime::now_utc();
                let mut pending = Vec::with_capacity(size as usize);
                for _ in 0..size {
                    let (stream, event) = generator.next_event(now)?;
                    pending.push(Pending::new(AppendRequest {
                        after: None,
                        stream,
                        expected_version: ExpectedVersion::Any,
                        events: vec![event],
                    }));
                }
                done += size;
                // A closed channel: the writer stopped, and reports why.
                if groups.send(pending).is_err() {
                    break;
                }
            }
            Ok(generator)
        })
        .context("starting the event maker")?;
    let started = Instant::now();
    let mut last_print = Instant::now();
    let mut written = 0u64;
    for mut pending in made {
        log.commit_group(&mut pending)
            .map_err(|e| anyhow::anyhow!("writing the log: {e}"))?;
        for p in &pending {
            match &p.outcome {
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("the log refused an event: {}", e.message),
                None => bail!("the log left an append without an outcome"),
            }
        }
        written += pending.len() as u64;
        if last_print.elapsed() >= Duration::from_secs(1) || written == n {
            last_print = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            let rate = written as f64 / secs.max(1e-9);
            let pct = written as f64 * 100.0 / n as f64;
            let filled = (pct / 5.0) as usize;
            eprintln!(
                "[replay] writing [{}{}] {:>5.1} % {}/{} events, {:.0}/s, {:.0} s left",
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20)),
                pct,
                thousands(written),
                thousands(n),
                rate,
                (n - written) as f64 / rate.max(1.0)
            );
        }
    }
    let generator = maker
        .join()
        .map_err(|_| anyhow::anyhow!("the event maker panicked"))??;
    if written != n {
        bail!("wrote {written} events of {n}");
    }
    let seconds = started.elapsed().as_secs_f64();
    let head = log.head();
    log.close()
        .map_err(|e| anyhow::anyhow!("flushing the log: {e}"))?;
    let mix = generator.mix();
    Ok(Written {
        seconds,
        head,
        reported: mix.reported,
        closed: mix.closed,
        levels: mix.levels,
        open: generator.open_incidents(),
    })
}

fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Reads `(events, events/s)` from `vigil replay`'s summary line:
/// `replayed N events in S s (R events/s); …`.
fn parse_replay_line(out: &str) -> Option<(u64, f64)> {
    let line = out.lines().find(|l| l.starts_with("replayed "))?;
    let n = line.split_whitespace().nth(1)?.parse().ok()?;
    let open = line.find('(')?;
    let rate = line
        .get(open + 1..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((n, rate))
}

async fn stop(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .is_ok()
        {
            return;
        }
        eprintln!("[replay] vigil up did not stop within 15 s; killing it");
    }
    let _ = child.kill().await;
}

/// What a cold start measured, in seconds after spawn (`None`: not within `--ready-timeout`).
#[derive(Debug, Clone, Copy, Default)]
struct Start {
    /// `GET /readyz` answered 200: NATS up, the store answering, the boards at the head.
    ready: Option<f64>,
    /// A command answered: `POST /api/v1/incidents` (the incidents service deciding and
    /// appending through the store) answered 201.
    command: Option<f64>,
    /// The incidents register caught up: `GET /api/v1/incidents` answered 200 (a 503 says
    /// the service is still reading the log).
    listed: Option<f64>,
    /// RSS of `vigil up` once all three answered (or at the deadline).
    rss: Option<u64>,
}

/// Asks `ask` every 10 ms until it answers one of `ok`; the seconds after `spawned` then.
async fn probe<F, Fut>(spawned: Instant, deadline: Instant, ok: &[u16], ask: F) -> Option<f64>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<u16>>,
{
    loop {
        if ask().await.is_some_and(|s| ok.contains(&s)) {
            return Some(spawned.elapsed().as_secs_f64());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A new incident, as the duty desk reports one: the command a restarted centre must answer.
fn probe_incident() -> serde_json::Value {
    let now = OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-12-07T00:00:00Z".into());
    serde_json::json!({
        "id": uuid::Uuid::new_v4(),
        "country": "SO",
        "category": "armed_conflict",
        "severity": 2,
        "title": "Bench probe: reported while the centre starts",
        "occurred_at": now,
        "location": {"lat": 2.04, "lon": 45.34},
    })
}

/// Spawns `vigil up` on `data_dir` and times it until `/readyz` answers 200, a command is
/// answered and the incidents register lists (each `None` if not within `--ready-timeout`),
/// then stops it with SIGTERM (which writes its checkpoints).
async fn cold_start(
    args: &ReplayArgs,
    data_dir: &Path,
    token: &str,
    label: &str,
) -> anyhow::Result<Start> {
    let log_path = data_dir.join("vigil-up.log");
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let nats_url = format!("nats://127.0.0.1:{}", args.nats_port);
    let http = format!("127.0.0.1:{}", args.http_port);
    let metrics = format!("127.0.0.1:{}", args.metrics_port);
    let spawned = Instant::now();
    let mut child = tokio::process::Command::new(&args.vigil_bin)
        .arg("up")
        .arg("--data-dir")
        .arg(data_dir)
        .args([
            "--nats-url",
            &nats_url,
            "--http",
            &http,
            "--metrics",
            &metrics,
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} up", args.vigil_bin.display()))?;
    let pid = child.id();
    if let (Some(path), Some(pid)) = (&args.pid_file, pid) {
        std::fs::write(path, format!("{pid}\n"))?;
    }
    let deadline = spawned + Duration::from_secs(args.ready_timeout);
    let client = util::client()?;
    let readyz = format!("http://{http}/readyz");
    let incidents = format!("http://{http}/api/v1/incidents");
    // The same incident each try: a retry of one that did land is answered, not doubled.
    let incident = probe_incident().to_string();
    let board = std::sync::Mutex::new(String::new());
    let ask = |request: reqwest::RequestBuilder| async move {
        let answer = request.timeout(Duration::from_secs(2)).send().await.ok()?;
        Some(answer.status().as_u16())
    };
    let ready = probe(spawned, deadline, &[200], || async {
        let answer = client
            .get(&readyz)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = answer.status().as_u16();
        if status != 200
            && let Ok(body) = answer.text().await
        {
            *cell::lock(&board) = body;
        }
        Some(status)
    });
    let command = probe(spawned, deadline, &[200, 201], || {
        ask(client
            .post(&incidents)
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(incident.clone()))
    });
    let listed = probe(spawned, deadline, &[200], || {
        ask(client
            .get(format!("{incidents}?limit=1"))
            .bearer_auth(token))
    });
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            let body = cell::lock(&board).clone();
            let at = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .map(|v| {
                    // The domain services /readyz still waits for, named while there are any.
                    let waiting = v["services"]["waiting_for"]
                        .as_array()
                        .filter(|w| !w.is_empty())
                        .map(|w| {
                            let names: Vec<String> = w
                                .iter()
                                .map(|n| format!("{} ({})", n["service"], n["reason"]))
                                .collect();
                            format!(", waiting for {}", names.join(", "))
                        })
                        .unwrap_or_default();
                    format!(
                        "board at {} of head {}{waiting}",
                        v["board_position"], v["head"]
                    )
                })
                .unwrap_or_else(|| "not answering yet".into());
            eprintln!(
                "[replay] cold start {label} {:>5.1} s: {at}; RSS {}",
                spawned.elapsed().as_secs_f64(),
                pid.and_then(|p| util::rss(p).ok())
                    .map_or("-".into(), |b| bytes_text(b as f64))
            );
        }
    };
    let probes = async { tokio::join!(ready, command, listed) };
    let (ready, command, listed) = tokio::select! {
        probed = probes => probed,
        status = watch => bail!(
            "vigil up exited during start-up ({status}); see {}",
            log_path.display()
        ),
    };
    let rss = pid.and_then(|p| util::rss(p).ok());
    stop(&mut child).await;
    if let Some(path) = &args.pid_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(Start {
        ready,
        command,
        listed,
        rss,
    })
}

/// `12.34 s`, or that it did not happen within `--ready-timeout`.
fn seconds_text(s: Option<f64>, args: &ReplayArgs) -> String {
    s.map_or_else(
        || format!("not within {} s", args.ready_timeout),
        |s| format!("{s:.2} s"),
    )
}

fn report_cold_start(label: &str, start: &Start, head: u64, args: &ReplayArgs, data_dir: &Path) {
    println!(
        "  cold start {label} with {} events: ready (GET /readyz 200) {}; a command answered (POST /api/v1/incidents 201) {}; the incidents register caught up (GET /api/v1/incidents 200) {}; RSS then {}",
        thousands(head),
        seconds_text(start.ready, args),
        seconds_text(start.command, args),
        seconds_text(start.listed, args),
        start.rss.map_or("-".into(), |b| bytes_text(b as f64))
    );
    if start.ready.is_none() || start.command.is_none() || start.listed.is_none() {
        println!("    see {}", data_dir.join("vigil-up.log").display());
    }
}

/// The cold start on a fresh data directory, and the one on the checkpoints it wrote.
const WITHOUT: &str = "without checkpoints";
const FROM: &str = "from checkpoints";

/// What a cell of the replay benchmark runs.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// `vigil replay --from-disk`.
    Replay,
    /// A cold `vigil up` until `/readyz`, labelled.
    ColdStart(&'static str),
}

/// What a cell measured.
enum Outcome {
    /// Run `run` of `vigil replay`: its summary line, events folded, events/s, wall seconds.
    Replay {
        run: u32,
        line: String,
        replayed: u64,
        rate: f64,
        wall: f64,
    },
    /// A cold start, labelled.
    ColdStart { label: &'static str, start: Start },
}

impl Outcome {
    fn rate(&self) -> Option<f64> {
        match self {
            Self::Replay { rate, .. } => Some(*rate),
            Self::ColdStart { .. } => None,
        }
    }

    fn start(&self) -> Option<Start> {
        match self {
            Self::Replay { .. } => None,
            Self::ColdStart { start, .. } => Some(*start),
        }
    }
}

/// The replay runs and the cold starts as cells, on the log written first.
struct Steps<'a> {
    args: &'a ReplayArgs,
    data_dir: &'a Path,
    /// The log's head.
    head: u64,
    /// A duty_officer token for the probes' requests.
    token: String,
}

impl Bench for Steps<'_> {
    type Point = u32;
    type System = Step;
    type Cell = Outcome;

    async fn run(&mut self, run: u32, step: Step) -> anyhow::Result<Outcome> {
        let args = self.args;
        match step {
            Step::Replay => {
                let started = Instant::now();
                let out = tokio::process::Command::new(&args.vigil_bin)
                    .arg("replay")
                    .arg("--from-disk")
                    .arg("--data-dir")
                    .arg(self.data_dir)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .await
                    .with_context(|| format!("running {} replay", args.vigil_bin.display()))?;
                let wall = started.elapsed().as_secs_f64();
                let stdout = String::from_utf8_lossy(&out.stdout);
                if !out.status.success() {
                    bail!("vigil replay failed ({}): {stdout}", out.status);
                }
                let line = stdout
                    .lines()
                    .find(|l| l.starts_with("replayed "))
                    .unwrap_or("")
                    .to_owned();
                let (replayed, rate) = parse_replay_line(&stdout).with_context(|| {
                    format!("could not read events/s from vigil replay's output: {stdout}")
                })?;
                Ok(Outcome::Replay {
                    run,
                    line,
                    replayed,
                    rate,
                    wall,
                })
            }
            Step::ColdStart(label) => {
                let start = cold_start(args, self.data_dir, &self.token, label).await?;
                Ok(Outcome::ColdStart { label, start })
            }
        }
    }

    fn print(&self, cell: &Outcome) {
        match cell {
            Outcome::Replay {
                run,
                line,
                replayed,
                rate,
                wall,
            } => {
                println!("  vigil replay, run {run}: {line}");
                println!(
                    "    {} events at {} events/s (process wall time {wall:.2} s, including opening the log)",
                    thousands(*replayed),
                    thousands(rate.round() as u64),
                );
                if *replayed != self.head {
                    println!(
                        "    WARNING: vigil replay folded {replayed} events but the log holds {}",
                        self.head
                    );
                }
            }
            Outcome::ColdStart { label, start } => {
                report_cold_start(label, start, self.head, self.args, self.data_dir);
            }
        }
    }

    fn after_cell(&mut self, cell: &Outcome) -> anyhow::Result<()> {
        if let Outcome::ColdStart { label: WITHOUT, .. } = cell {
            let checkpoints = self.data_dir.join("checkpoints");
            let saved = std::fs::read_dir(&checkpoints)
                .map(|d| d.flatten().count())
                .unwrap_or(0);
            println!(
                "  checkpoints written at the stop: {saved} in {} ({})",
                checkpoints.display(),
                bytes_text(dir_size(&checkpoints) as f64)
            );
        }
        Ok(())
    }
}

/// Runs `vigil-bench replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    if args.events == 0 {
        bail!("--events must be ≥ 1");
    }
    let data_dir = args.data_dir.clone();
    let store_dir = data_dir.join("store");
    println!(
        "vigil-bench replay: {} events into {}, then `vigil replay --from-disk` and a cold `vigil up`",
        thousands(args.events),
        store_dir.display()
    );

    // 1. Write.
    let (n, group, seed, dir) = (args.events, args.group, args.seed, store_dir.clone());
    let w = tokio::task::spawn_blocking(move || write_log(&dir, n, group, seed)).await??;
    let size = dir_size(&store_dir);
    println!(
        "  wrote {} events in {:.1} s ({:.0}/s, groups of {}, fdatasync per group); log head {}, {} on disk",
        thousands(args.events),
        w.seconds,
        args.events as f64 / w.seconds.max(1e-9),
        args.group,
        thousands(w.head),
        bytes_text(size as f64)
    );
    println!(
        "  mix: {} IncidentReported, {} IncidentClosed, {} AreaSecurityLevelSet; {} incidents open at the end",
        thousands(w.reported),
        thousands(w.closed),
        thousands(w.levels),
        thousands(w.open as u64)
    );

    // 2. Replay from disk, --replay-runs times.
    let token = duty_token(&args, &data_dir).await?;
    let mut bench = Steps {
        args: &args,
        data_dir: &data_dir,
        head: w.head,
        token,
    };
    let runs: Vec<u32> = (1..=args.replay_runs.max(1)).collect();
    let rates: Vec<f64> = cell::run_cells(&mut bench, &runs, &[Step::Replay], Duration::ZERO)
        .await?
        .iter()
        .filter_map(Outcome::rate)
        .collect();
    let rate = rates.iter().copied().fold(0.0, f64::max);
    let rates_text = rates
        .iter()
        .map(|r| thousands(r.round() as u64))
        .collect::<Vec<_>>()
        .join(" / ");

    // 3. Cold start: without checkpoints (a fresh data directory), then again on the
    // checkpoints the first start wrote when it was stopped.
    let starts = cell::run_cells(
        &mut bench,
        &[1],
        &[Step::ColdStart(WITHOUT), Step::ColdStart(FROM)],
        Duration::ZERO,
    )
    .await?;
    let [cold, warm] = [0, 1].map(|i| starts.get(i).and_then(Outcome::start).unwrap_or_default());

    println!();
    println!("== targets (issue 17) ==");
    println!(
        "  replay ≥ {} events/s: {} events/s (fastest of {rates_text}){}  {}",
        thousands(TARGET_REPLAY_RATE as u64),
        thousands(rate.round() as u64),
        if args.events < TARGET_SIZES[0] {
            format!(" (over {} events, not 1,000,000)", thousands(args.events))
        } else {
            String::new()
        },
        verdict(rate >= TARGET_REPLAY_RATE)
    );
    let judged = TARGET_SIZES.contains(&args.events);
    let within = |s: Option<f64>| -> &'static str {
        if judged {
            verdict(s.is_some_and(|s| s <= TARGET_COLD_START_S))
        } else {
            "n/a"
        }
    };
    if !judged {
        println!(
            "  (the start targets are set for 1,000,000 and 10,000,000 events; this run has {}: n/a)",
            thousands(args.events)
        );
    }
    for (label, start) in [(FROM, &warm), (WITHOUT, &cold)] {
        println!(
            "  {label}, {} events: cold start to /readyz ≤ {TARGET_COLD_START_S} s: {}  {}; a restarted service answers commands ≤ {TARGET_COLD_START_S} s: {}  {}",
            thousands(w.head),
            seconds_text(start.ready, &args),
            within(start.ready),
            seconds_text(start.command, &args),
            within(start.command)
        );
    }
    println!();
    println!("== markdown ==");
    println!(
        "| events | write events/s | replay events/s (each run) | start | /readyz 200 | command answered | register caught up | RSS |"
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|");
    let write_rate = thousands((args.events as f64 / w.seconds.max(1e-9)).round() as u64);
    for (label, start) in [(WITHOUT, &cold), (FROM, &warm)] {
        println!(
            "| {} | {write_rate} | {rates_text} | {label} | {} | {} | {} | {} |",
            thousands(args.events),
            seconds_text(start.ready, &args),
            seconds_text(start.command, &args),
            seconds_text(start.listed, &args),
            start.rss.map_or("-".into(), |b| bytes_text(b as f64))
        );
    }
    Ok(())
}

/// A duty_officer token for the probes, made with `vigil token create` on the data directory
/// (it makes the signing key `vigil up` then finds; no server is involved).
async fn duty_token(args: &ReplayArgs, data_dir: &Path) -> anyhow::Result<String> {
    let out = tokio::process::Command::new(&args.vigil_bin)
        .args(["token", "create", "--data-dir"])
        .arg(data_dir)
        .args([
            "--role",
            "duty_officer",
            "--label",
            "bench-replay",
            "--days",
            "1",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} token create", args.vigil_bin.display()))?;
    let token = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned();
    if !out.status.success() || token.is_empty() {
        bail!(
            "vigil token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::parse_replay_line;

    #[test]
    fn the_replay_summary_is_read() {
        let out = "replayed 1000000 events in 1.52 s (657894 events/s); board at position 1000000: 50 countries, 4000 open incidents\n";
        assert_eq!(parse_replay_line(out), Some((1_000_000, 657_894.0)));
        assert_eq!(parse_replay_line("nothing"), None);
    }
}
