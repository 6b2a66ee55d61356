//! `vigil-bench broadcast`: one all-agency broadcast to N agencies whose webhooks this bench
//! serves on loopback (issue #7): the time from the second duty officer's approval to every
//! agency's webhook, to every agency's acknowledgement answered 200, and to the broadcast's
//! own view (`GET /api/v1/broadcasts/{id}`) reporting every agency delivered and
//! acknowledged; beside a peer measured in the same run.
//!
//! # One Vigil round
//! - The webhook receiver (axum, on the host and port of the configuration's webhooks,
//!   `http://127.0.0.1:<port>/hook/<agency>`) checks every request: the agency is one of the
//!   configuration's, `X-Vigil-Signature` verifies under that agency's secret
//!   (`vigil_broadcast::deliver::verify`, 300 s tolerance), the body is a `Message` for that
//!   agency and `X-Vigil-Delivery` is `<broadcast>/<agency>`. A failed check is answered 4xx
//!   and counted (the run fails if a signature does not verify). The first delivery of the
//!   round's broadcast to each agency is timed on arrival; later ones are counted as
//!   duplicates; deliveries of another broadcast (an earlier round) as stray.
//! - `POST /api/v1/broadcasts` with the issuing duty officer's token: `{"id": <uuid>, "title",
//!   "body" (~600 characters), "severity": "high", "audience": "all_agencies",
//!   "requires_ack": true, "ack_deadline": <an hour ahead>}` → 201. Its view is read once to
//!   check that it went to all N agencies. Then `POST /api/v1/broadcasts/{id}/approve` with the
//!   second duty officer's token → 200: **t0 is the arrival of that 200** (a webhook that
//!   comes before it counts as 0 ms).
//! - Each simulated focal point acknowledges as soon as its agency's webhook arrives (the
//!   receiver triggers it): `POST /api/v1/broadcasts/{id}/ack` `{"id": <uuid>}` with the
//!   agency's focal-point token, on one shared keep-alive client (reqwest, as Vigil's sender).
//!   A 409 "too many changes at the same moment", a 408/429/5xx or a transport error is retried
//!   with the same id (so at most one acknowledgement is stored) after a jittered backoff of
//!   10 ms doubling to 500 ms, up to `--ack-attempts`; each retry is counted.
//! - A poller reads `GET /api/v1/broadcasts/{id}` every `--poll-ms` from t0 until the view
//!   reports `delivered == N`, every agency delivered over its webhook, and `acknowledged ==
//!   N`; each figure is the arrival of the first answer that shows it (an upper bound, late by
//!   at most one period plus one GET).
//! - `vigil up`'s `/metrics` and `/proc` are read before the issue and after the round (the
//!   broadcast service's commands, store commits, CPU per process).
//! - The round ends when every agency was reached and the view shows them delivered, every
//!   acknowledgement was answered 200 or given up on, and the view shows every one answered
//!   200 (or after `--round-timeout`). `--no-acks` (an experiment) leaves the acknowledgements
//!   out, to time the deliveries alone.
//!
//! # One peer round
//! The same N messages (`Message::new` of a broadcast with the same title, body, severity and
//! deadline, so the same bytes but for the broadcast id) POSTed by this bench with
//! `vigil_broadcast::deliver::over_webhook` — the service's own send: `sign`, the same headers,
//! the configured timeout — on a reqwest client built as the service builds its own, with at
//! most `vigil_broadcast::MAX_DELIVERIES` (256) in flight, all started at t0. The same receiver
//! checks and times them, and triggers the same acknowledgements, this time to a trivial axum
//! handler in this process (`POST /api/v1/broadcasts/{id}/ack`: checks there is a bearer token
//! and a JSON body, answers 200 with a body shaped like the gateway's). Between the two lies
//! what Vigil adds on top of loopback HTTP: the approval's path to the scheduler, claiming
//! every delivery attempt in the log before making it and recording every outcome, and for
//! each acknowledgement the gateway, the command over NATS, reading and folding the
//! broadcast's stream and appending with its version.
//!
//! # What it promises
//! Figures are wall-clock times on this machine, with vigil-bench, `vigil up` and its
//! nats-server sharing its cores; the peer's sender and receiver share the bench process.
//! Every round is a fresh broadcast. Nothing is retried silently: retries, duplicates, stray
//! and failed deliveries and failed acknowledgements are printed.
//!
//! # Layout
//! `receiver` (the agencies and the webhook receiver), `acks` (the focal points'
//! acknowledgements), `view` (the poller of the broadcast's view), `rounds` (a Vigil round and
//! a peer round), `print` (the figures); this module keeps the flags and the run (the rounds
//! as the cells of `cell::run_cells`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::routing::post;
use vigil_broadcast::rules::Config;

use crate::cell::{self, Bench};
use crate::load::Server;
use crate::server_side::{self, Watch};
use crate::util::{self, NatsArgs};
use print::{print_round, print_summary};
use receiver::{Receiver, agencies, hook, peer_ack, serve};
use rounds::{Ctx, RoundResult, peer_round, vigil_round, wait_register};

mod acks;
mod print;
mod receiver;
mod rounds;
mod view;

/// Seconds a webhook signature's `t` may be off (the receiver's replay window).
const SIGNATURE_TOLERANCE_S: i64 = 300;
/// Largest body the receiver and the peer's ack handler read.
const MAX_BODY: usize = 64 * 1024;

/// Flags of `vigil-bench broadcast`.
#[derive(Debug, Clone, clap::Args)]
pub struct BroadcastArgs {
    /// Rounds; each is one fresh all-agency broadcast through Vigil, then the same messages
    /// through the peer.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Systems, in this order within each round.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vigil,peer")]
    systems: Vec<Server>,
    /// The broadcast configuration `vigil up` runs with (`VIGIL_BROADCAST_CONFIG`): its agencies
    /// with a webhook are the recipients; every webhook must be served by this bench, on one
    /// host and port, at `/hook/<agency>`.
    #[arg(long)]
    config: PathBuf,
    /// The focal points' tokens: one `<agency> <token>` line per agency (`vigil token create
    /// --role agency_focal_point --agency <agency>`).
    #[arg(long)]
    focal_tokens: PathBuf,
    /// The duty officer who issues (`vigil token create --role duty_officer`).
    #[arg(long, env = "VIGIL_BENCH_ISSUER_TOKEN", hide_env_values = true)]
    issuer_token: String,
    /// A second duty officer, who approves (another label than the issuer's).
    #[arg(long, env = "VIGIL_BENCH_APPROVER_TOKEN", hide_env_values = true)]
    approver_token: String,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http_url: String,
    // Only for the nats-server's PID (CPU figures), through --data-dir.
    #[command(flatten)]
    nats: NatsArgs,
    /// `vigil up`'s Prometheus page (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    metrics_url: Option<String>,
    /// PID of the `vigil up` process (CPU time).
    #[arg(long)]
    vigil_pid: Option<u32>,
    /// Milliseconds between two reads of the broadcast's view.
    #[arg(long, default_value_t = 50)]
    poll_ms: u64,
    /// Seconds a round may take from t0 before the bench gives up on what is missing.
    #[arg(long, default_value_t = 120)]
    round_timeout: u64,
    /// Seconds before one HTTP request of the bench counts as unanswered.
    #[arg(long, default_value_t = 20)]
    request_timeout: u64,
    /// Attempts per acknowledgement (a retryable answer is tried again, same id).
    #[arg(long, default_value_t = 40)]
    ack_attempts: u32,
    /// An experiment: the focal points do not acknowledge (the rounds time the deliveries
    /// alone, without the acknowledgements' load on the same broadcast).
    #[arg(long)]
    no_acks: bool,
    /// Seconds of quiet between rounds.
    #[arg(long, default_value_t = 2)]
    pause: u64,
}

/// What `vigil up` is read for, beyond the store and the gateway.
const WATCH: Watch = Watch {
    commands: &[
        (
            "broadcast",
            "issue",
            "broadcast service, `issue` (resolve recipients, append)",
        ),
        (
            "broadcast",
            "approve",
            "broadcast service, `approve` (read stream, decide, append)",
        ),
        (
            "broadcast",
            "ack",
            "broadcast service, `ack` (read + fold the stream, decide, append with its version; retried on a race)",
        ),
        (
            "broadcast",
            "get",
            "broadcast service, `get` (read + fold the whole stream: the poller)",
        ),
    ],
    consumers: &["broadcast"],
};

/// The rounds as cells: round r (from 1) through one system.
struct RoundsBench(Ctx);

impl Bench for RoundsBench {
    type Point = usize;
    type System = Server;
    type Cell = RoundResult;

    async fn run(&mut self, round: usize, system: Server) -> anyhow::Result<RoundResult> {
        match system {
            Server::Vigil => vigil_round(&self.0, round).await,
            Server::Peer => peer_round(&self.0, round).await,
        }
    }

    fn print(&self, cell: &RoundResult) {
        print_round(cell);
    }
}

/// Runs `vigil-bench broadcast`.
pub async fn run(args: BroadcastArgs) -> anyhow::Result<()> {
    if args.rounds == 0 {
        bail!("--rounds must be ≥ 1");
    }
    let mut systems = args.systems.clone();
    systems.dedup();
    if systems.is_empty() {
        bail!("--systems needs vigil, peer or both");
    }
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let config = Config::parse(&text)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("reading {}", args.config.display()))?;
    let tokens = std::fs::read_to_string(&args.focal_tokens)
        .with_context(|| format!("reading {}", args.focal_tokens.display()))?;
    let (agencies, listen) = agencies(&config, &tokens)?;
    let n = agencies.len();

    let receiver = Arc::new(Receiver {
        index: agencies
            .iter()
            .enumerate()
            .map(|(i, a)| (a.id.clone(), i))
            .collect(),
        secrets: agencies
            .iter()
            .map(|a| a.secret.as_bytes().to_vec())
            .collect(),
        round: Mutex::new(None),
        invalid: AtomicU64::new(0),
        stray: AtomicU64::new(0),
        problems: Mutex::new(BTreeMap::new()),
    });
    let hooks = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen} for the webhooks"))?;
    serve(
        hooks,
        axum::Router::new()
            .route("/hook/{agency}", post(hook))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(receiver.clone()),
        "webhook receiver",
    );
    let peer_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening for the peer's acknowledgements")?;
    let peer_addr = peer_listener
        .local_addr()
        .context("the peer ack handler's address")?;
    serve(
        peer_listener,
        axum::Router::new()
            .route("/api/v1/broadcasts/{id}/ack", post(peer_ack))
            .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
            .with_state(Arc::new(AtomicU64::new(0))),
        "peer ack handler",
    );
    // As the broadcast service builds its client (`vigil_broadcast::run_with`).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the HTTP client")?;

    util::wait_ready(&args.http_url).await?;
    wait_register(args.metrics_url.as_deref()).await;

    println!(
        "broadcast: {n} agencies with webhooks on http://{listen}/hook/<agency>; {} round(s) of {}; \
         Vigil's delivery settings: {} attempts, backoff {} ms (max {} ms), timeout {} ms, claim timeout {} s; \
         peer: the same messages with vigil_broadcast::deliver::over_webhook, ≤ {} in flight; peer acks to http://{peer_addr}; \
         the view read every {} ms; {} cores",
        args.rounds,
        cell::names(&systems, |s| s.name()),
        config.delivery.attempts,
        config.delivery.backoff_ms,
        config.delivery.max_backoff_ms,
        config.delivery.timeout_ms,
        config.delivery.claim_timeout_s,
        vigil_broadcast::MAX_DELIVERIES,
        args.poll_ms,
        util::cores(),
    );

    let ctx = Ctx {
        tokens: Arc::new(agencies.iter().map(|a| a.token.clone()).collect()),
        agencies,
        receiver: receiver.clone(),
        peer_ack: format!("http://{peer_addr}"),
        http,
        hook_timeout: Duration::from_millis(config.delivery.timeout_ms.max(1)),
        procs: server_side::procs(args.vigil_pid, &args.nats, None),
        args: args.clone(),
    };
    let rounds: Vec<usize> = (1..=args.rounds).collect();
    let results = cell::run_cells(
        &mut RoundsBench(ctx),
        &rounds,
        &systems,
        Duration::from_secs(args.pause),
    )
    .await?;
    print_summary(&results, n, &receiver, args.no_acks);
    let invalid = receiver.invalid.load(Ordering::Relaxed);
    if invalid > 0 {
        bail!("{invalid} webhook request(s) carried a signature that did not verify");
    }
    if results
        .iter()
        .any(|r| r.timed_out || r.hooks.len() != r.n || (!args.no_acks && r.acks_ok != r.n))
    {
        bail!(
            "some rounds did not reach every agency or did not get every acknowledgement (see above)"
        );
    }
    Ok(())
}
