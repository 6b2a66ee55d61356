//! `failover`: a centre of three nodes (`ops/cluster up`, docs/CLUSTER.md) under 4 writers
//! (2 HTTP through the nodes' gateways, 2 NATS straight to the store, each moving to another
//! node when its node fails it), broken N times on purpose, each fault drawn at random from
//! a seeded generator (the seed is printed; `--seed` repeats the draw):
//!
//! - **kill the leader**: kill -9 of the node whose store holds the lease (its `vigil up` and
//!   its nats-server), a wait of 1–3 s, then the node started again;
//! - **cut the leader off**: `ops/cluster cut` (its routes to the other nodes dropped, its
//!   clients still reach it), held 2–5 s after the first acknowledgement elsewhere, then
//!   `ops/cluster heal`;
//! - **kill a follower**: kill -9 of a node that does not lead, a wait of 1–3 s, started again;
//! - **cut a follower off**: as the leader's cut, on a node that does not lead;
//! - **wipe a follower**: kill -9 of a node that does not lead, its data directory emptied
//!   (`ops/cluster wipe`: its store, its gateway's and services' checkpoints and its
//!   nats-server's JetStream copy; its secrets kept), then started again: it must rebuild
//!   everything from the other two before the next fault can begin (the time it takes, and
//!   how many journal messages it applied, is printed; bounded by 10 minutes, where the
//!   settle before any other fault is bounded by 90 s).
//!
//! The first five faults are one of each kind in a random order, later ones any kind (so
//! `--quick`, 5 faults, is one of each). Before each fault the cluster must be settled: three
//! replicas answering `vigil cluster status`, each having applied the journal at least up to
//! the last sequence a first look saw (so a node just started again has caught up; under
//! load the heads are never equal at one instant), and the journal's three JetStream replicas
//! online and current. Per fault it prints the time from the fault (for a kill, the moment the
//! node's `vigil up` was seen dead; for a cut, when `ops/cluster cut` returned, its drop rules
//! in place) to the next acknowledged write by any writer, and to the next field report
//! acknowledged through a gateway; and which nodes led the journal's and the lease bucket's
//! JetStream Raft groups just before it (losing one costs an election). A leader fault must
//! move the lease (the new leader's `leader_since` is after the fault), or the run fails.
//! The times are judged only against 60 s (no acknowledged write, or no field report, within
//! 60 s of a fault fails the run); their p50 and max are reported, not bounded.
//!
//! At the end the writers stop and the cluster settles; then **every node's gateway** must
//! serve the duty board of a fresh fold of the whole log (read through the store leader,
//! from any node, for up to 30 s), once it has reached the log's head (within 30 s): the
//! wall screens of a node that was killed, cut off or wiped must be as right as the
//! others'. Then `ops/cluster down` stops it (as it does on every other way out:
//! [`Cluster`]'s `Drop`), and the checker reads **every replica's**
//! store files against the ack file: 0 lost, 0 duplicated, 0 gaps on each; and the three
//! replicas must be identical: the same head and the same hash-chain head, each intact
//! (`vigil verify`'s walk, [`store::Log::verify`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use gateway::auth::Auth;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::check::{self, Verdict};
use crate::slowloris::quantile;
use crate::writers::{self, AckFile, NatsNodes, Progress};

/// How long a cluster may take to settle before a fault and at the end.
const SETTLE: Duration = Duration::from_secs(90);

/// How long a wiped node may take to apply the whole journal again and the cluster settle.
const REBUILD: Duration = Duration::from_secs(600);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the store leader's node, then start it again.
    KillLeader,
    /// The store leader's node cut off from the others, then healed.
    CutLeader,
    /// kill -9 of a follower's node, then start it again.
    KillFollower,
    /// A follower's node cut off from the others, then healed.
    CutFollower,
    /// kill -9 of a follower's node, its data directory emptied (its secrets kept), then
    /// started again: its store and its nats-server's JetStream copy must be rebuilt from
    /// the others.
    WipeFollower,
}

impl Fault {
    /// Every kind, in the order the line reports them.
    pub const ALL: [Fault; 5] = [
        Fault::KillLeader,
        Fault::CutLeader,
        Fault::KillFollower,
        Fault::CutFollower,
        Fault::WipeFollower,
    ];

    fn describe(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill -9 leader",
            Fault::CutLeader => "cut leader off",
            Fault::KillFollower => "kill -9 follower",
            Fault::CutFollower => "cut follower off",
            Fault::WipeFollower => "wipe follower",
        }
    }

    /// Whether the fault is made on the store leader's node (and so must move the lease).
    fn on_leader(self) -> bool {
        matches!(self, Fault::KillLeader | Fault::CutLeader)
    }

    /// Whether the node is cut off (and healed after) rather than killed (and started).
    fn is_cut(self) -> bool {
        matches!(self, Fault::CutLeader | Fault::CutFollower)
    }
}

/// The faults of a run: the first ones one of each kind in a random order, the rest any.
pub fn plan(faults: usize, rng: &mut StdRng) -> Vec<Fault> {
    let mut first = Fault::ALL;
    first.shuffle(rng);
    (0..faults)
        .map(|i| match first.get(i) {
            Some(f) => *f,
            None => Fault::ALL[rng.random_range(0..Fault::ALL.len())],
        })
        .collect()
}

/// What one fault cost.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The fault.
    pub fault: Fault,
    /// From the fault to the next acknowledged write (any writer).
    pub next_ack: Duration,
    /// For a wiped node: from its start to the cluster settled again (it applied the journal
    /// from its first message), and how many journal messages that was.
    pub rebuilt: Option<(Duration, u64)>,
}

/// One replica's files after the run.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its node.
    pub node: String,
    /// The checker's verdict on its store.
    pub verdict: Verdict,
    /// Its last position.
    pub head: u64,
    /// Its hash-chain head, hex.
    pub chain_head: String,
    /// Whether `verify` found every check passed.
    pub intact: bool,
}

/// What the run found.
pub struct Outcome {
    /// The seed of the draw.
    pub seed: u64,
    /// The faults made, with their cost.
    pub faults: Vec<Measured>,
    /// Acknowledged writes.
    pub acknowledged: usize,
    /// Every replica.
    pub replicas: Vec<Replica>,
    /// What went wrong besides the verdicts.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether the three replicas hold the same history, each intact.
    pub fn identical(&self) -> bool {
        self.replicas.iter().all(|r| r.intact)
            && self
                .replicas
                .windows(2)
                .all(|w| (w[0].head, &w[0].chain_head) == (w[1].head, &w[1].chain_head))
    }

    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && !self.replicas.is_empty()
            && self.replicas.iter().all(|r| r.verdict.ok())
            && self.identical()
    }

    /// One line of figures; lost, duplicated and gaps are the worst replica's.
    pub fn line(&self) -> String {
        let worst = |f: fn(&Verdict) -> usize| {
            self.replicas
                .iter()
                .map(|r| f(&r.verdict))
                .max()
                .unwrap_or(0)
        };
        let mut times: Vec<Duration> = self.faults.iter().map(|m| m.next_ack).collect();
        times.sort();
        format!(
            "failover: {} faults (seed {}), {} acknowledged, {} lost, {} duplicated, {} gaps on each of {} replicas, replicas {} (head {}), failover p50 {:.1} s, max {:.1} s (worst per kind: {}){} — {}",
            self.faults.len(),
            self.seed,
            self.acknowledged,
            worst(|v| v.lost),
            worst(|v| v.duplicated),
            worst(|v| v.position_gaps + v.version_gaps),
            self.replicas.len(),
            if self.identical() {
                "identical"
            } else {
                "DIFFER"
            },
            self.replicas
                .iter()
                .map(|r| r.head.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            quantile(&times, 0.5).as_secs_f64(),
            times.last().copied().unwrap_or_default().as_secs_f64(),
            Fault::ALL
                .iter()
                .filter_map(|kind| {
                    let worst = self
                        .faults
                        .iter()
                        .filter(|m| m.fault == *kind)
                        .map(|m| m.next_ack)
                        .max()?;
                    Some(format!("{} {:.1} s", kind.describe(), worst.as_secs_f64()))
                })
                .collect::<Vec<_>>()
                .join(", "),
            self.faults
                .iter()
                .filter_map(|m| m.rebuilt)
                .max_by_key(|(took, _)| *took)
                .map_or_else(String::new, |(took, messages)| format!(
                    "; slowest rebuild of a wiped node {:.1} s for {messages} journal messages",
                    took.as_secs_f64()
                )),
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }

    /// Every problem, each replica's named.
    pub fn all_problems(&self) -> Vec<String> {
        let mut all = self.problems.clone();
        for r in &self.replicas {
            all.extend(
                r.verdict
                    .problems
                    .iter()
                    .map(|p| format!("{}: {p}", r.node)),
            );
            if !r.intact {
                all.push(format!("{}: verify found damage", r.node));
            }
        }
        all
    }
}

/// Who leads, as `vigil cluster status` says.
struct Leading {
    /// The store leader's node (an index of [`Cluster::nodes`]).
    store: usize,
    /// Since when it leads.
    since: Option<time::OffsetDateTime>,
    /// The node whose nats-server leads the journal's Raft group.
    journal: String,
    /// The node whose nats-server leads the lease bucket's Raft group.
    lease: String,
}

/// One node, as `cluster.json` describes it.
struct Node {
    name: String,
    http: SocketAddr,
    nats: String,
    data_dir: PathBuf,
}

/// A cluster started with `ops/cluster up`; dropping it runs `ops/cluster down`.
struct Cluster {
    script: PathBuf,
    vigil: PathBuf,
    dir: PathBuf,
    nodes: Vec<Node>,
    /// The `cli` user's NATS credentials (read after `up`).
    cli: Option<(String, String)>,
}

impl Cluster {
    /// `ops/cluster up` into `dir` on free ports.
    async fn up(script: &Path, vigil: &Path, dir: &Path) -> anyhow::Result<Cluster> {
        let script = std::fs::canonicalize(script).with_context(|| {
            format!(
                "no {} (run from the repository's root, or pass --script)",
                script.display()
            )
        })?;
        let vigil = std::fs::canonicalize(vigil)
            .with_context(|| format!("no vigil binary at {}", vigil.display()))?;
        let mut cluster = Cluster {
            script,
            vigil,
            dir: dir.to_owned(),
            nodes: Vec::new(),
            cli: None,
        };
        let base = base_port().to_string();
        let out = cluster.run(&["up", "--base-port", &base]).await?;
        let described = out.trim().lines().last().unwrap_or_default().to_owned();
        let desc: Value = serde_json::from_slice(
            &std::fs::read(&described)
                .with_context(|| format!("reading the cluster's description {described:?}"))?,
        )?;
        for n in desc["nodes"].as_array().into_iter().flatten() {
            let field = |k: &str| n[k].as_str().unwrap_or_default().to_owned();
            cluster.nodes.push(Node {
                name: field("name"),
                http: field("http")
                    .trim_start_matches("http://")
                    .parse()
                    .context("a node's HTTP address")?,
                nats: field("nats"),
                data_dir: PathBuf::from(field("data_dir")),
            });
        }
        anyhow::ensure!(cluster.nodes.len() == 3, "ops/cluster up made no 3 nodes");
        // The nodes share one NATS users file; `cli` may append to any stream and read the
        // JetStream state `vigil cluster status` reads.
        cluster.cli = runtime::nats_auth::load(&cluster.dir)?
            .and_then(|u| u.credentials(runtime::nats_auth::CLI));
        anyhow::ensure!(
            cluster.cli.is_some(),
            "the cluster's NATS users file has no cli user"
        );
        Ok(cluster)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("bash");
        c.arg(&self.script)
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("VIGIL_BIN", &self.vigil)
            .env("VIGIL_NATS_SERVER", testkit::nats_server_bin())
            // The writers submit far more than a field officer may by hand.
            .env("VIGIL_FIELD_REPORTS_PER_MINUTE", "1000000")
            .env("VIGIL_MAX_CONNECTIONS_PER_ADDRESS", "100000")
            .stdin(std::process::Stdio::null());
        c
    }

    /// `ops/cluster ARGS`; its stdout, or an error with its stderr.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::script::output(self.command(args), "ops/cluster", args).await
    }

    /// Who leads now, asking through a node other than `not`.
    async fn leader(&self, not: usize) -> Option<Leading> {
        for through in (0..self.nodes.len()).filter(|k| *k != not) {
            if let Some((true, report)) = self.status(through, 400).await
                && let Some(name) = report["leader"].as_str()
            {
                let since = report["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["node"] == name)
                    .and_then(|r| r["leader_since"].as_str())
                    .and_then(|s| time::OffsetDateTime::parse(s, &Rfc3339).ok());
                let journal = report["journal"]["replicas"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|p| p["leader"] == true)
                    .and_then(|p| p["name"].as_str())
                    .unwrap_or("none")
                    .to_owned();
                return Some(Leading {
                    store: self.nodes.iter().position(|n| n.name == name)?,
                    since,
                    journal,
                    lease: self.lease_stream_leader(through).await,
                });
            }
        }
        None
    }

    /// The node leading the lease bucket's stream, as JetStream says through `through`.
    async fn lease_stream_leader(&self, through: usize) -> String {
        let ask = async {
            let client = runtime::nats::connect(
                &self.nodes[through].nats,
                "chaos-status",
                self.cli.clone(),
                runtime::nats::Mode::Tool,
            )
            .await
            .ok()?;
            let js = async_nats::jetstream::new(client);
            let stream = format!("KV_{}", runtime::nats_cluster::LEASE_BUCKET);
            let mut stream = js.get_stream(stream).await.ok()?;
            stream.info().await.ok()?.cluster.as_ref()?.leader.clone()
        };
        tokio::time::timeout(Duration::from_secs(3), ask)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| "unknown".to_owned())
    }

    /// `ops/cluster kill|cut NODE`; when the fault took effect. For a kill that is the moment
    /// the node's `vigil up` was seen dead (polled every 5 ms while the script runs: the
    /// script itself returns a few hundred ms later); for a cut, when the script returned
    /// (its last step adds the last drop rule).
    async fn fault(&self, verb: &str, node: &str) -> anyhow::Result<Instant> {
        let pid = std::fs::read_to_string(self.dir.join(node).join("pid")).unwrap_or_default();
        let stat = PathBuf::from(format!("/proc/{}/stat", pid.trim()));
        let args = [verb, node];
        let script = self.run(&args);
        tokio::pin!(script);
        let mut dead = None;
        loop {
            tokio::select! {
                r = &mut script => {
                    r?;
                    break;
                }
                _ = tokio::time::sleep(Duration::from_millis(5)), if verb == "kill" && dead.is_none() => {
                    // Gone, or a zombie: SIGKILL has landed.
                    let state = std::fs::read_to_string(&stat).unwrap_or_default();
                    if state.is_empty() || state.contains(") Z ") || state.contains(") X ") {
                        dead = Some(Instant::now());
                    }
                }
            }
        }
        Ok(dead.unwrap_or_else(Instant::now))
    }

    /// `ops/cluster down`, once (it removes the state file a second one would need).
    fn down(&self) {
        if self.dir.join("state").exists() {
            match self.command(&["down"]).output() {
                Ok(o) if o.status.success() => {}
                Ok(o) => eprintln!(
                    "ops/cluster down failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                Err(e) => eprintln!("cannot run ops/cluster down: {e}"),
            }
        }
    }

    /// `vigil cluster status --json` through node `through`, collecting answers for
    /// `wait_ms`.
    async fn status(&self, through: usize, wait_ms: u64) -> Option<(bool, Value)> {
        let n = &self.nodes[through];
        let out = tokio::process::Command::new(&self.vigil)
            .arg("--data-dir")
            .arg(&n.data_dir)
            .args(["--nats-url", &n.nats, "cluster", "status", "--json"])
            .args(["--wait-ms", &wait_ms.to_string()])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .await
            .ok()?;
        let report = serde_json::from_slice(&out.stdout).ok()?;
        Some((out.status.success(), report))
    }

    /// Waits until the cluster is settled (see the module doc); the leader's index and the
    /// journal's last sequence every replica applied.
    async fn settled(&self, timeout: Duration) -> anyhow::Result<(usize, u64)> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        let mut through = 0;
        // The journal's last sequence at the first look: every replica must apply up to it.
        let mut mark = None;
        loop {
            through = (through + 1) % self.nodes.len();
            if let Some((healthy, report)) = self.status(through, 1_000).await {
                if let (Some(m), true) = (mark, healthy)
                    && let Some(leader) = settled_leader(&report, m)
                    && let Some(i) = self.nodes.iter().position(|n| n.name == leader)
                {
                    return Ok((i, m));
                }
                mark = mark.or(report["journal"]["last_seq"].as_u64());
                last = report;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cluster did not settle within {} s; last status: {last}",
                timeout.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.down();
    }
}

/// The leader's name when `report` (`vigil cluster status --json`) shows three replicas
/// that have each applied the journal up to `mark` at least, and the journal's three
/// replicas online and current (or less than 100 operations behind: under load a replica
/// is a message or so behind at any instant).
fn settled_leader(report: &Value, mark: u64) -> Option<String> {
    let rows = report["replicas"].as_array()?;
    let journal = report["journal"]["replicas"].as_array()?;
    let applied = rows
        .iter()
        .all(|r| r["applied"].as_u64().is_some_and(|a| a >= mark));
    let current = journal.iter().all(|p| {
        p["offline"] != true && (p["current"] == true || p["lag"].as_u64().is_some_and(|l| l < 100))
    });
    (rows.len() == 3 && journal.len() == 3 && applied && current)
        .then(|| report["leader"].as_str().map(str::to_owned))
        .flatten()
}

/// A base port whose node ports (base+1..=base+303 on 127.0.0.1–3) are free now.
fn base_port() -> u16 {
    loop {
        let base = testkit::free_port();
        let free = (1..=3u16).all(|k| {
            [0u16, 100, 200, 300].iter().all(|off| {
                std::net::TcpListener::bind((format!("127.0.0.{k}").as_str(), base + off + k))
                    .is_ok()
            })
        });
        if free {
            return base;
        }
    }
}

/// Runs the scenario in `dir` with `faults` faults drawn from `seed`.
pub async fn run(
    vigil: &Path,
    script: &Path,
    dir: &Path,
    faults: usize,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let mut rng = StdRng::seed_from_u64(seed);
    let kinds = plan(faults, &mut rng);
    let cluster = Cluster::up(script, vigil, &dir.join("cluster")).await?;
    let started = Instant::now();
    eprintln!(
        "  ops/cluster up: {} ready",
        cluster
            .nodes
            .iter()
            .map(|n| n.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    // The nodes share one token key (a token works on every gateway) and one NATS users file;
    // `cli` may append to any stream.
    let auth = Auth::open(&cluster.dir, vec![]).context("opening the cluster's token key")?;
    let token = crate::writers::field_token(&auth, "chaos.field")?;
    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;
    let progress = Progress::default();
    let gateways: Vec<SocketAddr> = cluster.nodes.iter().map(|n| n.http).collect();
    let nats = NatsNodes {
        urls: cluster.nodes.iter().map(|n| n.nats.clone()).collect(),
        credentials: cluster.cli.clone(),
    };
    let mut tasks = Vec::new();
    for w in 0..2 {
        tasks.push(tokio::spawn(writers::http_writer_over(
            gateways.clone(),
            w,
            token.clone(),
            acks.clone(),
            progress.clone(),
        )));
        // NATS writer w starts on node w + 1, so every node has a writer at the start.
        tasks.push(tokio::spawn(writers::nats_writer_over(
            nats.clone(),
            w + 1,
            acks.clone(),
            progress.clone(),
        )));
    }
    let mut measured = Vec::new();
    let mut problems = Vec::new();
    for (i, fault) in kinds.iter().enumerate() {
        let (settled, _) = cluster.settled(SETTLE).await?;
        // Some writes before each fault, so that the next one is the centre failing over.
        let calm = Instant::now();
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..1_500))).await;
        if progress
            .ack_after(calm, Duration::from_secs(30))
            .await
            .is_none()
        {
            problems.push(format!(
                "nothing acknowledged for 30 s before fault {}",
                i + 1
            ));
            break;
        }
        // The lease may have moved since (a leader hands it over when its node leads a
        // JetStream stream): ask again just before the fault.
        let before = cluster.leader(usize::MAX).await;
        let leader = before.as_ref().map_or(settled, |l| l.store);
        let (journal, lease) = before.map_or_else(
            || ("unknown".to_owned(), "unknown".to_owned()),
            |l| (l.journal, l.lease),
        );
        let victim = if fault.on_leader() {
            leader
        } else {
            let followers: Vec<usize> = (0..cluster.nodes.len()).filter(|k| *k != leader).collect();
            followers[rng.random_range(0..followers.len())]
        };
        let name = cluster.nodes[victim].name.clone();
        let verb = if fault.is_cut() { "cut" } else { "kill" };
        let at = cluster.fault(verb, &name).await?;
        let Some(next_ack) = progress.ack_after(at, Duration::from_secs(60)).await else {
            problems.push(format!(
                "nothing acknowledged within 60 s of fault {} ({} {name})",
                i + 1,
                fault.describe()
            ));
            break;
        };
        let next_report = progress.http_ack_after(at, Duration::from_secs(60)).await;
        eprintln!(
            "  fault {}/{}: {} {name} (Raft leaders: journal {journal}, lease bucket {lease}): next ack after {:.2} s, next field report via a gateway after {}, {} acknowledged so far",
            i + 1,
            kinds.len(),
            fault.describe(),
            next_ack.as_secs_f64(),
            next_report.map_or("(none in 60 s)".to_owned(), |d| format!(
                "{:.2} s",
                d.as_secs_f64()
            )),
            progress.acked.load(Ordering::Acquire)
        );
        if next_report.is_none() {
            problems.push(format!(
                "no field report acknowledged within 60 s of fault {}",
                i + 1
            ));
        }
        // A leader fault must move the lease: the leader now began leading after the fault
        // (asked again for a few seconds: a status taken mid-election is not healthy).
        let fault_wall = time::OffsetDateTime::now_utc() - at.elapsed();
        let mut moved = false;
        let asked = Instant::now();
        while fault.on_leader() && !moved && asked.elapsed() < Duration::from_secs(10) {
            moved = cluster
                .leader(victim)
                .await
                .and_then(|l| l.since)
                .is_some_and(|t| t > fault_wall);
            if !moved {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        if fault.on_leader() && !moved {
            problems.push(format!(
                "fault {} ({} {name}): the lease did not move (was {name} leading at the fault?)",
                i + 1,
                fault.describe()
            ));
        }
        let mut rebuilt = None;
        if fault.is_cut() {
            tokio::time::sleep(Duration::from_millis(rng.random_range(2_000..5_000))).await;
            cluster.run(&["heal"]).await?;
        } else {
            tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..3_000))).await;
            if *fault == Fault::WipeFollower {
                cluster.run(&["wipe", &name]).await?;
            }
            cluster.run(&["start", &name]).await?;
            if *fault == Fault::WipeFollower {
                // A wiped replica applies the whole journal again (it keeps everything): the
                // time that takes is this fault's figure, bounded more loosely than a settle.
                let start = Instant::now();
                let (_, messages) = cluster
                    .settled(REBUILD)
                    .await
                    .with_context(|| format!("{name} wiped and started again did not catch up"))?;
                let took = start.elapsed();
                eprintln!(
                    "    {name} rebuilt from the others: {messages} journal messages in {:.1} s ({:.0}/s)",
                    took.as_secs_f64(),
                    messages as f64 / took.as_secs_f64().max(0.001)
                );
                rebuilt = Some((took, messages));
            }
        }
        measured.push(Measured {
            fault: *fault,
            next_ack,
            rebuilt,
        });
    }
    writers::stop(tasks, &progress).await?;
    if let Err(e) = cluster.settled(SETTLE).await {
        problems.push(format!("at the end: {e:#}"));
    }
    let boards = boards_match(&cluster, &auth, &nats).await;
    eprintln!(
        "  boards: {}",
        if boards.is_empty() {
            format!(
                "each of the {} gateways = a fresh fold of the log",
                cluster.nodes.len()
            )
        } else {
            boards.join("; ")
        }
    );
    problems.extend(boards);
    eprintln!(
        "  {} faults in {:.0} s; stopping the cluster",
        measured.len(),
        started.elapsed().as_secs_f64()
    );
    cluster.down();
    let acked = AckFile::read(&acks_path)?;
    let mut replicas = Vec::new();
    for n in &cluster.nodes {
        replicas.push(replica(&n.name, &n.data_dir.join("store"), &acked)?);
    }
    Ok(Outcome {
        seed,
        faults: measured,
        acknowledged: acked.len(),
        replicas,
        problems,
    })
}

/// Whether every node's gateway serves the duty board of a fresh fold of the whole log, read
/// through the store leader from the first node that answers: what differs, per node (empty:
/// every board is right).
async fn boards_match(cluster: &Cluster, auth: &Auth, nats: &NatsNodes) -> Vec<String> {
    let duty = match writers::duty_token(auth) {
        Ok(token) => token,
        Err(e) => return vec![format!("boards: no duty officer token: {e:#}")],
    };
    // Each node in turn for up to 30 s: a read can meet a lease changing hands.
    let mut log = Err(anyhow::anyhow!("no node to read it through"));
    let tried = Instant::now();
    for url in nats.urls.iter().cycle() {
        if tried.elapsed() > Duration::from_secs(30) {
            break;
        }
        log = async {
            let store = writers::store_client_as(
                url,
                "chaos-boards",
                nats.credentials.clone(),
                runtime::nats::Mode::Tool,
                Duration::from_secs(10),
            )
            .await?;
            check::read_running(&store).await
        }
        .await;
        match &log {
            Ok(_) => break,
            Err(e) => {
                eprintln!("  boards: reading the log through {url}: {e:#}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let log = match log {
        Ok(log) => log,
        Err(e) => return vec![format!("boards: the log could not be read: {e:#}")],
    };
    let mut differ = Vec::new();
    for n in &cluster.nodes {
        if let Err(e) = check::board_matches(n.http, &duty, &log, Duration::from_secs(30)).await {
            differ.push(format!("{}'s board: {e:#}", n.name));
        }
    }
    differ
}

/// The checker and `verify` on one stopped replica's store.
fn replica(node: &str, store: &Path, acked: &[writers::Ack]) -> anyhow::Result<Replica> {
    let verdict = check::check(&check::read_dir(store)?, acked);
    let log = store::Log::open_for_verify(store)
        .with_context(|| format!("opening {node}'s store {}", store.display()))?;
    let report = log.verify(|_, _| {})?;
    Ok(Replica {
        node: node.to_owned(),
        verdict,
        head: report.head,
        chain_head: report.chain_head.map(hex).unwrap_or_default(),
        intact: report.is_intact(),
    })
}

fn hex(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_faults_are_one_of_each_kind_and_a_seed_repeats_the_draw() {
        for seed in 0..20 {
            let quick = plan(Fault::ALL.len(), &mut StdRng::seed_from_u64(seed));
            for kind in Fault::ALL {
                assert_eq!(quick.iter().filter(|f| **f == kind).count(), 1, "{quick:?}");
            }
            let long = plan(12, &mut StdRng::seed_from_u64(seed));
            assert_eq!(long.len(), 12);
            assert_eq!(long, plan(12, &mut StdRng::seed_from_u64(seed)));
        }
    }

    #[test]
    fn settled_means_three_replicas_past_the_mark_and_an_online_journal() {
        let peer = |current: bool, lag: u64| json!({"name": "n", "current": current, "offline": false, "lag": lag});
        let row = |applied: u64| json!({"node": "n", "applied": applied, "head": applied + 3});
        let report = |rows: Vec<Value>, peers: Vec<Value>| json!({"replicas": rows, "leader": "n2", "journal": {"last_seq": 9, "replicas": peers}});
        let good = report(
            vec![row(9), row(8), row(10)],
            vec![peer(true, 0), peer(false, 1), peer(true, 0)],
        );
        assert_eq!(settled_leader(&good, 8).as_deref(), Some("n2"));
        assert_eq!(
            settled_leader(&good, 9),
            None,
            "a replica short of the mark"
        );
        for bad in [
            report(
                vec![row(9), row(9)],
                vec![peer(true, 0), peer(true, 0), peer(true, 0)],
            ),
            report(
                vec![row(9), row(9), row(9)],
                vec![peer(true, 0), peer(false, 500), peer(true, 0)],
            ),
            report(
                vec![row(9), row(9), row(9)],
                vec![peer(true, 0), peer(true, 0)],
            ),
        ] {
            assert_eq!(settled_leader(&bad, 8), None, "{bad}");
        }
    }
}
