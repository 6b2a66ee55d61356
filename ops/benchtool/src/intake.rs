//! `vigil-bench intake`: field submissions over HTTP at R reports/s, from the POST to the 201
//! and from the POST to the delta on a WebSocket board client, beside a peer in the same run.
//!
//! # One cell (one system at one rate R)
//! - **Open loop**: report n is *scheduled* at `start + n/R`, whatever the answers;
//!   `--connections` workers take the scheduled reports in order, each with one request in
//!   flight at a time on a keep-alive HTTP/1.1 connection (reqwest, `TCP_NODELAY`; see `http`,
//!   `open_loop`). Every latency is measured **from the scheduled time**, so a report
//!   that waited for a free connection counts its wait (no coordinated omission); the wait
//!   itself is printed too (`send delay`), to show when the bench, not the server, was late.
//! - Each report is the brief's flash report: a fresh UUID v4 `id`, `country` (SO), category
//!   `road_traffic`, severity 3, title `bench <n>`, `occurred_at`, a location; `Authorization:
//!   Bearer <field officer token>`. **POST→201** is recorded when a 201 arrives; its body
//!   carries the report's log `position` P.
//! - One WebSocket client subscribed to the situation board (`duty` view by default) for the
//!   whole run. A report is *on the board* when a `delta` (or a resync `snapshot`) with
//!   position ≥ P arrives (deltas may be coalesced: matched by position); **POST→delta** =
//!   that arrival − the scheduled time. A delta can arrive before its 201: the arrival times of
//!   the deltas are kept, so the order does not matter.
//! - `--warmup` seconds at the rate are not measured, then `--duration` seconds are: the
//!   figures are for the reports scheduled in that window. After the schedule, the bench waits
//!   for every answer (each request times out after `--request-timeout`) and then for every
//!   201's position to reach the board (`--drain-timeout`); what never arrives is counted.
//! - At the start and the end of the measured window it reads `vigil up`'s `/metrics` (the
//!   incidents service's `vigil_command_seconds{command="report"}`, the store's commit time and
//!   group size) and the CPU time of `vigil up`, its nats-server, the peer and the bench
//!   (`/proc/<pid>/stat`) and of the whole machine (`/proc/stat`): where the time goes.
//!
//! # The systems
//! - **vigil**: `POST /api/v1/incidents` on the gateway of `vigil up`: token check, field rate
//!   limits (the script lifts them with `VIGIL_FIELD_REPORTS_PER_MINUTE`), the command over
//!   NATS to the incidents service, its decision, the store's append (fsync), the answers
//!   back; the delta comes from the gateway's fold of the log.
//! - **peer**: the same requests (same bytes, token included) to `vigil-bench intake-peer`, a
//!   separate process on the same HTTP stack (axum) that validates the report into the same
//!   typed event and appends it straight to the same store (see `intake_peer`). Its deltas
//!   come from the same gateway fold to the same board client. The difference between the
//!   two is the gateway's checks and the command hop through the incidents service.
//!
//! Progress goes to stderr every second. The targets (issue: p99 ≤ 50 ms at 1,000 reports/s
//! on a 2-core machine) are printed with PASS/MISS, then a Markdown table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::cell::{self, Bench, latency_text, lock, ms, new_histogram, take_histogram};
use crate::http::{self, Ack, Http, host_port};
use crate::load::{PeerProcess, RunArgs, Server};
use crate::open_loop::{Counters, Follower, HttpBench, Job, Queue, Schedule};
use crate::report::thousands;
use crate::server_side::{self, Watch};
use crate::summary::{self, Measure, Row, Totals};
use crate::tracker::Tracker;
use crate::util::{self, fmt_ms, head, verdict};

/// The target: p99 ≤ 50 ms at 1,000 reports/s.
const TARGET_RATE: f64 = 1000.0;
const TARGET_P99_MS: f64 = 50.0;

/// Flags of `vigil-bench intake`.
#[derive(Debug, Clone, clap::Args)]
pub struct IntakeArgs {
    /// Reports per second, one cell per value and system.
    #[arg(long, value_delimiter = ',', default_value = "250,500,1000")]
    rates: Vec<f64>,
    // Duration, systems, connections, the gateway, NATS, metrics, timeouts.
    #[command(flatten)]
    run: RunArgs,
    /// The board WebSocket (default: `ws://<host of --http-url>/ws`).
    #[arg(long)]
    ws_url: Option<String>,
    /// A field_officer token whose scope is --country (`vigil token create --role
    /// field_officer --scope SO`).
    #[arg(long, env = "VIGIL_BENCH_FIELD_TOKEN", hide_env_values = true)]
    field_token: String,
    /// A token for the board client (duty_officer for the `duty` view, or wall_screen).
    #[arg(long, env = "VIGIL_BENCH_BOARD_TOKEN", hide_env_values = true)]
    board_token: String,
    /// The board view the client asks for (`duty` or `wall_screen`; the token's role decides).
    #[arg(long, default_value = "duty")]
    view: String,
    /// Country of the reports (the field officer's scope).
    #[arg(long, default_value = "SO")]
    country: String,
}

/// The report body the brief gives, with a fresh id.
fn report_body(n: u64, country: &str) -> String {
    serde_json::json!({
        "id": Uuid::new_v4(),
        "country": country,
        "category": "road_traffic",
        "severity": 3,
        "title": format!("bench {n}"),
        // Now: a report may be at most 30 days late and never ahead of the centre's clock.
        "occurred_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        "location": {"lat": 2.04, "lon": 45.3},
    })
    .to_string()
}

// ------------------------------------------------------------------------------------------
// The board client and the match of positions

/// What the board client saw over the whole run.
#[derive(Default)]
struct BoardStats {
    deltas: AtomicU64,
    bytes: AtomicU64,
    resyncs: AtomicU64,
    ended: Mutex<Option<String>>,
}

/// Connects, subscribes, and returns once the first snapshot is in; then keeps feeding
/// `tracker` from a task until the connection ends.
async fn start_board_client(
    url: &str,
    subscribe: String,
    tracker: Arc<Mutex<Tracker>>,
    stats: Arc<BoardStats>,
) -> anyhow::Result<(u64, usize)> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(url, Some(util::ws_client_config()), true),
    )
    .await
    .with_context(|| format!("{url}: no WebSocket within 30 s"))?
    .with_context(|| format!("connecting to {url}"))?;
    ws.send(Message::Text(subscribe.into()))
        .await
        .context("sending the subscribe")?;
    let (position, size) = loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .context("no snapshot within 30 s of subscribing")?;
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => bail!("the gateway closed the board socket: {f:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("board socket: {e}"),
            None => bail!("the board socket ended before the snapshot"),
        };
        match head(text.as_str()) {
            Some(h) if h.kind == "snapshot" => break (h.position.unwrap_or(0), text.len()),
            Some(h) if h.kind == "error" => bail!("the gateway refused the subscribe: {text}"),
            _ => continue,
        }
    };
    lock(&tracker).on_board(position, Instant::now());
    tokio::spawn(async move {
        let why = loop {
            let text = match ws.next().await {
                Some(Ok(Message::Text(t))) => t,
                Some(Ok(Message::Close(f))) => break format!("closed by the gateway: {f:?}"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => break format!("socket error: {e}"),
                None => break "the socket ended".to_owned(),
            };
            let now = Instant::now();
            let Some(h) = head(text.as_str()) else {
                continue;
            };
            match h.kind {
                "delta" | "snapshot" => {
                    if h.kind == "delta" {
                        stats.deltas.fetch_add(1, Ordering::Relaxed);
                        stats.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                    } else {
                        stats.resyncs.fetch_add(1, Ordering::Relaxed);
                    }
                    if let Some(p) = h.position {
                        lock(&tracker).on_board(p, now);
                    }
                }
                "error" => {
                    break format!(
                        "error frame: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
                _ => {}
            }
        };
        eprintln!("[intake] WARNING: the board client stopped: {why}");
        *lock(&stats.ended) = Some(why);
    });
    Ok((position, size))
}

// ------------------------------------------------------------------------------------------
// One cell

/// What the connection workers share.
struct CellShared {
    counters: Counters,
    /// POST→201 of measured reports.
    hist: Mutex<Histogram<u64>>,
    tracker: Arc<Mutex<Tracker>>,
}

struct Target {
    token: String,
    country: String,
    timeout: Duration,
}

async fn worker(target: Arc<Target>, jobs: Queue<Job>, shared: Arc<CellShared>, http: Http) {
    let c = &shared.counters;
    while let Some(job) = crate::open_loop::next_job(&jobs).await {
        let body = report_body(job.n, &target.country);
        c.sending(job.scheduled, job.measured);
        let result = http
            .exchange(
                "/api/v1/incidents",
                &target.token,
                Some(&body),
                target.timeout,
            )
            .await;
        let now = Instant::now();
        match result {
            Ok(answer) if answer.status == 201 => {
                match serde_json::from_slice::<Ack>(&answer.body) {
                    Ok(ack) => {
                        c.latency(job.scheduled, now, job.measured, &shared.hist);
                        c.done(now, job.measured);
                        lock(&shared.tracker).on_ack(ack.position, job.scheduled, job.measured);
                    }
                    Err(e) => c.errors.record(
                        (
                            "201 without a position".into(),
                            format!("{e}: {}", String::from_utf8_lossy(&answer.body)),
                        ),
                        job.measured,
                    ),
                }
            }
            Ok(answer) => c.errors.record(http::status_failure(&answer), job.measured),
            Err(failure) => c.errors.record(failure, job.measured),
        }
        c.finished.fetch_add(1, Ordering::Relaxed);
    }
}

struct CellResult {
    totals: Totals,
    /// POST→201.
    http: Histogram<u64>,
    /// POST→delta.
    delta: Histogram<u64>,
    /// Measured 201s whose position never reached the board client.
    not_on_board: u64,
    /// The board client's position at the end of the window.
    client_at_end: u64,
}

impl CellResult {
    fn row(&self) -> Row<'_> {
        self.totals.row(vec![
            Measure {
                short: "201",
                long: "POST→201",
                hist: &self.http,
                tail: true,
            },
            Measure {
                short: "Δ",
                long: "POST→delta",
                hist: &self.delta,
                tail: true,
            },
        ])
    }
}

/// What `vigil up` is read for, beyond the store and the gateway.
const WATCH: Watch = Watch {
    commands: &[(
        "incidents",
        "report",
        "incidents service, `report` command (decode → store ack)",
    )],
    consumers: &[],
};

struct CellContext<'a> {
    args: &'a IntakeArgs,
    bench: HttpBench<'a>,
    tracker: Arc<Mutex<Tracker>>,
    board: Arc<BoardStats>,
    gateway: String,
    peer: Option<&'a PeerProcess>,
    seq: u64,
}

impl Bench for CellContext<'_> {
    type Point = f64;
    type System = Server;
    type Cell = CellResult;

    async fn run(&mut self, rate: f64, system: Server) -> anyhow::Result<CellResult> {
        let addr = system.addr(&self.gateway, self.peer);
        run_cell(self, system, &addr, rate).await
    }

    fn print(&self, cell: &CellResult) {
        print_cell(cell);
    }

    fn after_cell(&mut self, _cell: &CellResult) -> anyhow::Result<()> {
        if let Some(why) = lock(&self.board.ended).clone() {
            bail!("the board client stopped ({why}); the POST→delta figures would be wrong");
        }
        Ok(())
    }
}

async fn run_cell(
    ctx: &mut CellContext<'_>,
    system: Server,
    addr: &str,
    rate: f64,
) -> anyhow::Result<CellResult> {
    lock(&ctx.tracker).reset()?;
    let (schedule, http, counters) = Schedule::start(&ctx.bench, system, rate, addr).await?;
    let shared = Arc::new(CellShared {
        counters,
        hist: Mutex::new(new_histogram()?),
        tracker: ctx.tracker.clone(),
    });
    let target = Arc::new(Target {
        token: ctx.args.field_token.clone(),
        country: ctx.args.country.clone(),
        timeout: ctx.args.run.timeout(),
    });
    let progress = {
        let shared = shared.clone();
        move |fold: &str, sent: u64| {
            let (board_at, waiting, worst_delta) = lock(&shared.tracker).take_second();
            let c = &shared.counters;
            format!(
                "{}  client board at {board_at}  awaiting delta {waiting}{fold}  {}",
                c.progress(sent, "201"),
                c.worst("POST→201", "POST→delta", worst_delta),
            )
        }
    };
    let tracker = ctx.tracker.clone();
    let done = schedule
        .run(
            &shared.counters,
            http,
            |jobs, http| worker(target.clone(), jobs, shared.clone(), http),
            &mut ctx.seq,
            progress,
            move || lock(&tracker).board_at,
            Follower {
                waiting: || lock(&ctx.tracker).pending.len(),
                gone: || lock(&ctx.board.ended).is_some(),
                what: "acknowledged reports not on the board",
            },
        )
        .await?;
    let (delta, not_on_board) = lock(&ctx.tracker).finish()?;
    Ok(CellResult {
        totals: schedule.totals(&done, &shared.counters)?,
        http: take_histogram(&shared.hist)?,
        delta,
        not_on_board,
        client_at_end: done.at_end,
    })
}

/// One report and its delta, before the first cell of a system: the token, the route and the
/// board work, or the bench stops with the reason.
async fn probe(
    system: Server,
    addr: &str,
    args: &IntakeArgs,
    tracker: &Arc<Mutex<Tracker>>,
    seq: &mut u64,
) -> anyhow::Result<()> {
    lock(tracker).reset()?;
    let http = Http::new(addr, 1)?;
    *seq += 1;
    let started = Instant::now();
    let answer = http
        .exchange(
            "/api/v1/incidents",
            &args.field_token,
            Some(&report_body(*seq, &args.country)),
            args.run.timeout(),
        )
        .await
        .map_err(|(kind, detail)| {
            anyhow::anyhow!(
                "{}: no answer to the probe report ({kind}: {detail})",
                system.name()
            )
        })?;
    let took = started.elapsed();
    if answer.status != 201 {
        bail!(
            "{}: the probe report was answered {} {} (a field_officer token with scope {} is needed; and VIGIL_FIELD_REPORTS_PER_MINUTE raised on `vigil up`)",
            system.name(),
            answer.status,
            String::from_utf8_lossy(&answer.body),
            args.country
        );
    }
    let ack: Ack = serde_json::from_slice(&answer.body).context("reading the probe's 201")?;
    lock(tracker).on_ack(ack.position, started, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let board_at = lock(tracker).board_at;
        if board_at >= ack.position {
            eprintln!(
                "[intake] probe {}: 201 in {:.1} ms at position {}; on the board within {:.1} ms",
                system.name(),
                took.as_secs_f64() * 1000.0,
                ack.position,
                started.elapsed().as_secs_f64() * 1000.0
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{}: the probe report (position {}) did not reach the board client within 10 s (board at {board_at})",
                system.name(),
                ack.position
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Printing

fn print_cell(r: &CellResult) {
    r.totals.print_head("reports", "× 201", "201s arriving");
    println!("  POST → 201:   {}", latency_text(&r.http));
    println!(
        "  POST → delta: {} ({} reports on the board, {} never seen there)",
        latency_text(&r.delta),
        thousands(r.delta.len()),
        thousands(r.not_on_board)
    );
    r.totals
        .print_tail(&format!(", this client at {}", r.client_at_end));
}

/// `per_rate`: cells per rate (one per system), in the order they ran.
fn print_summary(args: &IntakeArgs, results: &[CellResult], per_rate: usize) {
    let board_view = &args.view;
    println!();
    println!(
        "== intake summary: {} s measured per cell, {} connections, board view {board_view} ==",
        args.run.duration, args.run.connections
    );
    let rows: Vec<Row> = results.iter().map(CellResult::row).collect();
    summary::print_table(
        &rows,
        per_rate,
        "201/s",
        "latencies in ms from the scheduled send; Δ = POST → delta on the board client",
    );
    println!();
    println!("== targets (from the intake issue) ==");
    for v in summary::judged(results, |r| &r.totals, TARGET_RATE, "1,000 reports/s") {
        let clean = v.totals.clean();
        let why = v.totals.why_not_clean();
        let p99 = ms(&v.http, 0.99);
        println!(
            "  POST → 201 p99 ≤ {TARGET_P99_MS} ms at 1,000 reports/s: {} ms{why}  {}",
            fmt_ms(p99),
            verdict(clean && p99 <= TARGET_P99_MS)
        );
        let d99 = ms(&v.delta, 0.99);
        let on_board = v.not_on_board == 0;
        println!(
            "  POST → delta p99 ≤ {TARGET_P99_MS} ms at 1,000 reports/s: {} ms{}{}  {}",
            fmt_ms(d99),
            why,
            if on_board {
                String::new()
            } else {
                format!(" — {} reports never on the board", v.not_on_board)
            },
            verdict(clean && on_board && d99 <= TARGET_P99_MS)
        );
    }

    println!();
    println!("== markdown ==");
    summary::print_markdown(&rows, "reports/s", "201/s");
}

// ------------------------------------------------------------------------------------------
// The run

/// Runs `vigil-bench intake`.
pub async fn run(args: IntakeArgs) -> anyhow::Result<()> {
    let run = &args.run;
    let systems = run.check(&args.rates)?;
    let gateway = host_port(&run.http_url)?;
    let ws_url = args
        .ws_url
        .clone()
        .unwrap_or_else(|| format!("ws://{gateway}/ws"));
    println!(
        "{}; reports for {}; board client on {} (view {})",
        run.header("intake", &args.rates, "reports", &systems),
        args.country,
        ws_url,
        args.view
    );
    util::wait_ready(&run.http_url).await?;

    let tracker = Arc::new(Mutex::new(Tracker::new()?));
    let board = Arc::new(BoardStats::default());
    let subscribe = serde_json::json!({
        "type": "subscribe",
        "board": "situation",
        "view": args.view,
        "token": args.board_token,
    })
    .to_string();
    let (snapshot_at, snapshot_size) =
        start_board_client(&ws_url, subscribe, tracker.clone(), board.clone()).await?;
    eprintln!(
        "[intake] board client subscribed: snapshot at position {snapshot_at}, {snapshot_size} B"
    );

    let peer = PeerProcess::start_for(&systems, &run.nats, "intake").await?;
    let procs = server_side::procs(run.vigil_pid, &run.nats, peer.as_ref());

    let mut ctx = CellContext {
        args: &args,
        bench: HttpBench {
            name: "intake",
            run,
            procs: &procs,
            watch: &WATCH,
        },
        tracker: tracker.clone(),
        board: board.clone(),
        gateway,
        peer: peer.as_ref(),
        seq: 0,
    };
    for &system in &systems {
        let addr = system.addr(&ctx.gateway, ctx.peer);
        probe(system, &addr, &args, &tracker, &mut ctx.seq).await?;
    }
    let results = cell::run_cells(
        &mut ctx,
        &args.rates,
        &systems,
        Duration::from_secs(run.pause),
    )
    .await?;
    println!();
    println!(
        "board client: {} deltas ({}), {} resyncs (snapshot after the first)",
        thousands(board.deltas.load(Ordering::Relaxed)),
        util::bytes_text(board.bytes.load(Ordering::Relaxed) as f64),
        board.resyncs.load(Ordering::Relaxed)
    );
    print_summary(&args, &results, systems.len());
    drop(ctx);
    drop(peer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_bodies_are_well_formed() {
        let body = report_body(3, "SO");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["title"], "bench 3");
        assert!(Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
    }
}
