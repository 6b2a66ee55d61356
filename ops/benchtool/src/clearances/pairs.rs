//! One cell (one system at one rate R pairs/s): each scheduled pair is a clearance request
//! and, as soon as its 201 arrives, its approval, by the same worker; the open loop, the
//! register's poller and the server side around them; and the probe before a system's first
//! cell.

use crate::cell::Bench;
use crate::cell::{self, Failure, Tally, lock, new_histogram, take_histogram};
use crate::http::{self, Ack, Answer, Http};
use crate::load::{PeerProcess, Server};
use crate::open_loop::{Counters, Follower, HttpBench, Job, Queue, Schedule};
use crate::summary::{Measure, Row, Totals};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

use super::register::{Visibility, poll_register};
use super::{ClearancesArgs, print_cell};

/// What the connection workers share.
pub(super) struct CellShared {
    pub(super) counters: Counters,
    /// Scheduled → the request's 201, of measured pairs.
    pub(super) request: Mutex<Histogram<u64>>,
    /// The approval's send → its 200, of measured pairs.
    pub(super) approve: Mutex<Histogram<u64>>,
    /// Scheduled → the approval's 200, of measured pairs.
    pub(super) pair: Mutex<Histogram<u64>>,
    pub(super) visibility: Arc<Mutex<Visibility>>,
}

pub(super) struct Target {
    pub(super) request_token: String,
    pub(super) duty_token: String,
    pub(super) country: String,
    /// The leg's first and last day.
    pub(super) from: String,
    pub(super) to: String,
    pub(super) travellers: Arc<Vec<String>>,
    pub(super) timeout: Duration,
}

impl Target {
    pub(super) fn traveller(&self, n: u64) -> &str {
        let i = usize::try_from(n).unwrap_or(0) % self.travellers.len().max(1);
        self.travellers.get(i).map_or("P-000000", String::as_str)
    }

    /// The request of pair `n`, with clearance id `id`.
    pub(super) fn request_body(&self, id: Uuid, n: u64) -> String {
        serde_json::json!({
            "id": id,
            "traveller": self.traveller(n),
            "itinerary": [{
                "country": self.country,
                "area": format!("{}-A{:02}", self.country, n % 4),
                "from": self.from,
                "to": self.to,
            }],
            "purpose": format!("bench {n}: crisis travel"),
        })
        .to_string()
    }
}

/// A failure of one of the pair's two requests.
fn tagged(step: &str, (kind, detail): Failure) -> Failure {
    (format!("{step}: {kind}"), detail)
}

/// The position in an answer with the `expected` status.
fn acknowledged(answer: Result<Answer, Failure>, expected: u16) -> Result<u64, Failure> {
    let answer = answer?;
    if answer.status != expected {
        return Err(http::status_failure(&answer));
    }
    serde_json::from_slice::<Ack>(&answer.body)
        .map(|a| a.position)
        .map_err(|e| {
            (
                format!("{expected} without a position"),
                format!("{e}: {}", String::from_utf8_lossy(&answer.body)),
            )
        })
}

pub(super) async fn worker(
    target: Arc<Target>,
    jobs: Queue<Job>,
    shared: Arc<CellShared>,
    http: Http,
) {
    let c = &shared.counters;
    while let Some(job) = crate::open_loop::next_job(&jobs).await {
        let id = Uuid::new_v4();
        let body = target.request_body(id, job.n);
        c.sending(job.scheduled, job.measured);
        let answer = http
            .exchange(
                "/api/v1/clearances",
                &target.request_token,
                Some(&body),
                target.timeout,
            )
            .await;
        if let Err(f) = acknowledged(answer, 201) {
            c.errors.record(tagged("request", f), job.measured);
            c.finished.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        c.latency(job.scheduled, Instant::now(), job.measured, &shared.request);

        // The approval, at once, by the same worker.
        let body = serde_json::json!({ "id": Uuid::new_v4() }).to_string();
        let path = format!("/api/v1/clearances/{id}/approve");
        let sent = Instant::now();
        let answer = http
            .exchange(&path, &target.duty_token, Some(&body), target.timeout)
            .await;
        let now = Instant::now();
        match acknowledged(answer, 200) {
            Ok(position) => {
                if job.measured {
                    cell::record(&shared.approve, now.saturating_duration_since(sent));
                    cell::record(&shared.pair, now.saturating_duration_since(job.scheduled));
                }
                c.done(now, job.measured);
                lock(&shared.visibility).on_approved(
                    position,
                    job.scheduled,
                    job.measured,
                    (id, target.traveller(job.n).to_owned()),
                );
            }
            Err(f) => c.errors.record(tagged("approve", f), job.measured),
        }
        c.finished.fetch_add(1, Ordering::Relaxed);
    }
}

pub(super) struct CellResult {
    pub(super) totals: Totals,
    pub(super) request: Histogram<u64>,
    pub(super) approve: Histogram<u64>,
    pub(super) pair: Histogram<u64>,
    /// Scheduled → approved in the register.
    pub(super) visible: Histogram<u64>,
    /// Measured approvals the register never showed.
    pub(super) not_visible: u64,
    pub(super) polls: u64,
    pub(super) poll_rtt: Histogram<u64>,
    pub(super) confirmed: u64,
    pub(super) contradicted: u64,
    pub(super) contradiction: Option<String>,
    pub(super) poll_errors: BTreeMap<String, Tally>,
    /// The register's position last seen.
    pub(super) register_at: u64,
}

impl CellResult {
    pub(super) fn row(&self) -> Row<'_> {
        let measure = |short, long, hist, tail| Measure {
            short,
            long,
            hist,
            tail,
        };
        self.totals.row(vec![
            measure("req", "request POST→201", &self.request, false),
            measure("appr", "approve POST→200", &self.approve, false),
            measure("reg", "POST→approved in register", &self.visible, true),
        ])
    }
}

pub(super) struct CellContext<'a> {
    pub(super) args: &'a ClearancesArgs,
    pub(super) bench: HttpBench<'a>,
    pub(super) travellers: Arc<Vec<String>>,
    pub(super) visibility: Arc<Mutex<Visibility>>,
    pub(super) gateway: String,
    pub(super) peer: Option<&'a PeerProcess>,
    pub(super) seq: u64,
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
}

impl CellContext<'_> {
    pub(super) fn target(&self) -> Target {
        let today = time::OffsetDateTime::now_utc().date();
        Target {
            request_token: self.args.request_token.clone(),
            duty_token: self.args.duty_token.clone(),
            country: self.args.country.clone(),
            from: (today + time::Duration::days(1)).to_string(),
            to: (today + time::Duration::days(14)).to_string(),
            travellers: self.travellers.clone(),
            timeout: self.args.run.timeout(),
        }
    }

    /// The register's poller (always through the gateway: the register is `vigil up`'s).
    pub(super) fn poller(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(poll_register(
            self.gateway.clone(),
            self.args.duty_token.clone(),
            self.visibility.clone(),
            Duration::from_millis(self.args.poll_ms.max(1)),
            self.args.run.timeout(),
        ))
    }
}

async fn run_cell(
    ctx: &mut CellContext<'_>,
    system: Server,
    addr: &str,
    rate: f64,
) -> anyhow::Result<CellResult> {
    lock(&ctx.visibility).reset()?;
    let (schedule, http, counters) = Schedule::start(&ctx.bench, system, rate, addr).await?;
    let shared = Arc::new(CellShared {
        counters,
        request: Mutex::new(new_histogram()?),
        approve: Mutex::new(new_histogram()?),
        pair: Mutex::new(new_histogram()?),
        visibility: ctx.visibility.clone(),
    });
    let target = Arc::new(ctx.target());
    let poller = ctx.poller();
    let progress = {
        let shared = shared.clone();
        move |fold: &str, sent: u64| {
            let ((register_at, waiting, worst), polls) = {
                let mut v = lock(&shared.visibility);
                (v.tracker.take_second(), v.polls)
            };
            let c = &shared.counters;
            format!(
                "{}  register at {register_at} ({polls} reads)  awaiting the register {waiting}{fold}  {}",
                c.progress(sent, "approved"),
                c.worst("request POST→201", "POST→approved in the register", worst),
            )
        }
    };
    let visibility = ctx.visibility.clone();
    let done = schedule
        .run(
            &shared.counters,
            http,
            |jobs, http| worker(target.clone(), jobs, shared.clone(), http),
            &mut ctx.seq,
            progress,
            || 0,
            Follower {
                waiting: || lock(&visibility).tracker.pending.len(),
                gone: || poller.is_finished(),
                what: "approvals not in the register",
            },
        )
        .await;
    poller.abort();
    let done = done?;
    let totals = schedule.totals(&done, &shared.counters)?;
    let mut v = lock(&ctx.visibility);
    let (visible, not_visible) = v.tracker.finish()?;
    Ok(CellResult {
        totals,
        request: take_histogram(&shared.request)?,
        approve: take_histogram(&shared.approve)?,
        pair: take_histogram(&shared.pair)?,
        visible,
        not_visible,
        polls: v.polls,
        poll_rtt: std::mem::replace(&mut v.rtt, new_histogram()?),
        confirmed: v.confirmed,
        contradicted: v.contradicted,
        contradiction: v.contradiction.take(),
        poll_errors: std::mem::take(&mut v.errors),
        register_at: v.tracker.board_at,
    })
}

/// One pair and its visibility, before the first cell of a system: the tokens, the
/// travellers, the routes and the register work, or the bench stops with the reason.
pub(super) async fn probe(
    ctx: &mut CellContext<'_>,
    system: Server,
    addr: &str,
) -> anyhow::Result<()> {
    lock(&ctx.visibility).reset()?;
    let target = ctx.target();
    ctx.seq += 1;
    let n = ctx.seq;
    let id = Uuid::new_v4();
    let timeout = target.timeout;
    let http = Http::new(addr, 1)?;
    let started = Instant::now();
    let body = target.request_body(id, n);
    let answer = http
        .exchange(
            "/api/v1/clearances",
            &target.request_token,
            Some(&body),
            timeout,
        )
        .await;
    acknowledged(answer, 201).map_err(|(kind, detail)| {
        anyhow::anyhow!(
            "{}: the probe request was answered {kind}: {detail} (a token that may request clearances, e.g. a field officer of {}; and the traveller {} imported: `vigil import` of the reference data)",
            system.name(),
            target.country,
            target.traveller(n)
        )
    })?;
    let requested = started.elapsed();
    let body = serde_json::json!({ "id": Uuid::new_v4() }).to_string();
    let path = format!("/api/v1/clearances/{id}/approve");
    let answer = http
        .exchange(&path, &target.duty_token, Some(&body), timeout)
        .await;
    let position = acknowledged(answer, 200).map_err(|(kind, detail)| {
        anyhow::anyhow!(
            "{}: the probe approval was answered {kind}: {detail} (a duty officer token is needed)",
            system.name()
        )
    })?;
    let approved = started.elapsed();
    lock(&ctx.visibility).on_approved(
        position,
        started,
        false,
        (id, target.traveller(n).to_owned()),
    );
    let poller = ctx.poller();
    let deadline = Instant::now() + Duration::from_secs(10);
    let outcome = loop {
        let (at, waiting) = {
            let v = lock(&ctx.visibility);
            (v.tracker.board_at, v.tracker.pending.len())
        };
        if waiting == 0 {
            eprintln!(
                "[clearances] probe {}: 201 in {:.1} ms, approval 200 at {:.1} ms (position {position}); approved in the register within {:.1} ms",
                system.name(),
                requested.as_secs_f64() * 1000.0,
                approved.as_secs_f64() * 1000.0,
                started.elapsed().as_secs_f64() * 1000.0
            );
            break Ok(());
        }
        if Instant::now() >= deadline {
            let errors = format!(
                "{:?}",
                lock(&ctx.visibility).errors.keys().collect::<Vec<_>>()
            );
            break Err(anyhow::anyhow!(
                "{}: the probe approval (position {position}) was not in the register within 10 s (register at {at}; read errors {errors})",
                system.name()
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    poller.abort();
    outcome
}
