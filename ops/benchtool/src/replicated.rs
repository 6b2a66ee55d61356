//! `vigil-bench store --replicas 3`: the store of a 3-node centre (`ops/cluster up`,
//! docs/CLUSTER.md) beside the single-node store and beside a replicated JetStream peer, with
//! the cluster issue's targets (docs/BENCHMARKS.md).
//!
//! This module owns what only the replicated cells need:
//! - [`Cluster`]: the cluster as `cluster.json` describes it, and connections to it spread
//!   over its nodes (connection *i* goes to node *i* mod 3 first), so the appends of
//!   `vigil-r3` reach the leader through every node's nats-server, as the clients of a real
//!   centre do;
//! - the peer **jetstream-r3**: a file stream with 3 replicas on the same nats-servers (which
//!   run `sync_interval: always`: every replica fsyncs before JetStream acks), one event per
//!   message on one subject per event stream, each publish carrying
//!   `Nats-Expected-Last-Subject-Sequence` — the optimistic concurrency of a plain JetStream
//!   event store (a stream's version is its subject's last sequence; an append states the one
//!   it read, and JetStream refuses it when another writer got there first). Vigil's appends
//!   in this benchmark state no version (the single-node cells' workload), so the peer does a
//!   check Vigil skips; it is what an event store on JetStream must send, and costs JetStream
//!   a lookup in its per-subject index;
//! - the summary: the table, the ratios and the targets (replicated ≥ 50 % of the single node,
//!   ≥ 3× jetstream-r3, p99 ≤ 20 ms with 128 in flight) with PASS/MISS.
//!
//! On a cluster node only the `store` user may use the JetStream API and publish outside the
//! store's subjects (`runtime::nats_cluster`): the peer connects as `store` and publishes
//! under `vigil.journal.bench.>`, a subject the store's permissions leave room for and the
//! journal stream (`vigil.journal` only) does not hold. `vigil-r3` appends as `cli`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::{self, stream::StorageType};
use async_nats::{HeaderMap, header};

use crate::System;
use crate::driver::{CellResult, Failure};
use crate::report::{self, Verdict, find, rate_text, thousands};
use crate::systems::EventMaker;

/// Replicas of the store's journal, and of the peer's stream.
pub const REPLICAS: usize = 3;
/// The peer's JetStream stream (created and deleted for each cell).
const JS_R3_STREAM: &str = "VIGIL_BENCH_R3";
/// Its subjects' prefix: one subject per event stream, `<prefix>.w<worker>.s<stream>`.
const JS_R3_PREFIX: &str = "vigil.journal.bench";
/// The replicated store's throughput must be at least this share of the single node's.
const MIN_SHARE_OF_SINGLE: f64 = 0.5;
/// … and at least this multiple of the replicated JetStream peer's.
const MIN_TIMES_JS_R3: f64 = 3.0;
/// Its p99 must be at most this many ms with [`P99_WINDOW`] in flight.
const MAX_P99_MS: f64 = 20.0;
/// The window of the p99 target.
const P99_WINDOW: usize = 128;

/// A centre `ops/cluster up` started, as its `cluster.json` describes it.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The description's path.
    pub description: PathBuf,
    /// Each node's NATS client URL, in node order.
    pub nodes: Vec<String>,
    /// Each node's `/metrics` URL, in node order (empty when the description names none).
    pub metrics: Vec<String>,
    /// The `cli` user (appends, reads).
    pub cli: (String, String),
    /// The `store` user (the only one that may use the JetStream API).
    pub store: (String, String),
}

impl Cluster {
    /// Reads `cluster.json` (`{"nodes": [{"nats": "nats://…", …}, …], "nats_credentials":
    /// "<users file>"}`) and the credentials file it names; the cluster must have at least
    /// `replicas` nodes.
    pub fn load(path: &Path, replicas: usize) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading the cluster description {}", path.display()))?;
        let desc: serde_json::Value = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        let nodes: Vec<String> = desc["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["nats"].as_str().map(str::to_owned))
            .collect();
        anyhow::ensure!(
            nodes.len() >= replicas,
            "{} describes {} node(s) with a NATS URL; {replicas} replicas need {replicas}",
            path.display(),
            nodes.len()
        );
        let metrics = desc["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| n["metrics"].as_str().unwrap_or_default().to_owned())
            .collect();
        let users_path = desc["nats_credentials"]
            .as_str()
            .with_context(|| format!("{} names no nats_credentials", path.display()))?;
        let users: runtime::nats_auth::NatsUsers = serde_json::from_slice(
            &std::fs::read(users_path)
                .with_context(|| format!("reading the NATS credentials {users_path}"))?,
        )
        .with_context(|| format!("the NATS credentials {users_path} are damaged"))?;
        let user = |name: &str| {
            users
                .credentials(name)
                .with_context(|| format!("{users_path} has no `{name}` user"))
        };
        Ok(Self {
            description: path.to_owned(),
            cli: user(runtime::nats_auth::CLI)?,
            store: user(runtime::nats_auth::STORE)?,
            nodes,
            metrics,
        })
    }

    /// At least `min` connections (and one per node) as `user`: connection *i* lists node
    /// *i* mod N first and the others after it, so the load enters the cluster through every
    /// node. Replies arrive on the user's own inbox, the only one its permissions let it read.
    pub async fn connect(
        &self,
        (user, password): &(String, String),
        min: usize,
        request_timeout: Duration,
    ) -> anyhow::Result<Vec<async_nats::Client>> {
        let n = self.nodes.len();
        let mut clients = Vec::new();
        for i in 0..min.max(n) {
            let urls: Vec<String> = (0..n)
                .filter_map(|k| self.nodes.get((i + k) % n).cloned())
                .collect();
            let first = urls.first().cloned().unwrap_or_default();
            let client = async_nats::ConnectOptions::new()
                .name(format!("vigil-bench-{user}-{i}"))
                .request_timeout(Some(request_timeout))
                .custom_inbox_prefix(runtime::nats_auth::inbox_prefix(user))
                .user_and_password(user.clone(), password.clone())
                .retain_servers_order()
                .connect(urls)
                .await
                .with_context(|| format!("connecting to the cluster at {first} as `{user}`"))?;
            clients.push(client);
        }
        Ok(clients)
    }
}

/// Every node's metrics page now (`None` where it did not answer).
pub async fn scrape(cluster: &Cluster) -> Vec<Option<String>> {
    let Ok(client) = crate::util::client() else {
        return vec![None; cluster.metrics.len()];
    };
    let mut pages = Vec::with_capacity(cluster.metrics.len());
    for url in &cluster.metrics {
        let page = async {
            let answer = client
                .get(url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()?;
            answer.text().await.ok()
        };
        pages.push(if url.is_empty() { None } else { page.await });
    }
    pages
}

/// Where the leader's time went between two scrapes of every node (`before`, `after`): the
/// node whose journal round trips grew most, its round trips (mean), groups per round, its
/// local commit per group (mean) and events per group. `None` when no node published to the
/// journal in between (or no page was read).
pub fn leader_side(
    cluster: &Cluster,
    before: &[Option<String>],
    after: &[Option<String>],
) -> Option<String> {
    use crate::prom::PromHistogram;
    let delta = |node: usize, name: &str| {
        let now = PromHistogram::read(after.get(node)?.as_deref()?, name, &[])?;
        let then = before
            .get(node)
            .and_then(|p| p.as_deref())
            .and_then(|p| PromHistogram::read(p, name, &[]));
        Some(now.since(then.as_ref()))
    };
    let rounds = |node: usize| delta(node, "vigil_store_journal_round_seconds");
    let leader = (0..after.len())
        .filter_map(|n| Some((n, rounds(n)?)))
        .max_by(|a, b| a.1.count.total_cmp(&b.1.count))
        .filter(|(_, r)| r.count > 0.0)?;
    let (node, round) = leader;
    let ms = |h: Option<PromHistogram>| h.map_or(f64::NAN, |h| h.mean() * 1000.0);
    let mean = |h: Option<PromHistogram>| h.map_or(f64::NAN, |h| h.mean());
    Some(format!(
        "leader {} over the cell: {} journal round trips, mean {:.2} ms, {:.1} groups each; local commit {:.2} ms per group (mean), {:.1} events per group",
        cluster.nodes.get(node).map_or("?", String::as_str),
        thousands(round.count as u64),
        round.mean() * 1000.0,
        mean(delta(node, "vigil_store_journal_batch_groups")),
        ms(delta(node, "vigil_store_local_commit_seconds")),
        mean(delta(node, "vigil_store_group_events")),
    ))
}

/// Prints what the replicated cells compare; `client` is one of the cluster connections.
pub fn print_preamble(
    cluster: &Cluster,
    client: Option<&async_nats::Client>,
    connections: usize,
    msg_id: bool,
) {
    let version = client.map_or_else(|| "?".to_owned(), |c| c.server_info().version);
    println!(
        "  cluster ({}): {} nodes, nats-server {version}, {connections} client connection(s) spread over {}",
        cluster.description.display(),
        cluster.nodes.len(),
        cluster.nodes.join(", ")
    );
    println!(
        "  vigil-r3:  the same appends to the replicated store (as `cli`): the leader acks a group once a quorum of the {REPLICAS}-replica journal fsynced it and it applied it"
    );
    println!(
        "  jetstream-r3: publish-with-ack (as `store`) to a file stream with {REPLICAS} replicas on the same nats-servers (sync_interval: always), one event per message, Nats-Expected-Last-Subject-Sequence on each (a plain JetStream event store's optimistic concurrency){}",
        if msg_id { ", Nats-Msg-Id dedup" } else { "" }
    );
}

/// Creates the peer's stream afresh and returns `window` workers, worker *w* publishing over
/// `clients[w mod len]` to `streams_per_worker` subjects of its own.
pub async fn prepare_js(
    clients: &[async_nats::Client],
    window: usize,
    streams_per_worker: usize,
    msg_id: bool,
    event: impl Fn(usize) -> EventMaker,
) -> anyhow::Result<Vec<JsR3Worker>> {
    let first = clients.first().cloned().context("no cluster connection")?;
    let js = jetstream::new(first);
    // Start from an empty stream; a missing one is fine.
    let _ = js.delete_stream(JS_R3_STREAM).await;
    let stream = js
        .create_stream(jetstream::stream::Config {
            name: JS_R3_STREAM.to_owned(),
            subjects: vec![format!("{JS_R3_PREFIX}.>")],
            storage: StorageType::File,
            num_replicas: REPLICAS,
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!("creating the JetStream stream {JS_R3_STREAM} with {REPLICAS} replicas")
        })?;
    let contexts: Vec<_> = clients.iter().map(|c| jetstream::new(c.clone())).collect();
    (0..window)
        .map(|w| {
            let js = contexts
                .get(w % contexts.len())
                .context("no cluster connection")?
                .clone();
            Ok(JsR3Worker {
                js,
                stream: stream.clone(),
                // A new subject has no message: its expected last sequence is 0.
                subjects: (0..streams_per_worker.max(1))
                    .map(|s| (format!("{JS_R3_PREFIX}.w{w}.s{s}"), Some(0)))
                    .collect(),
                next: 0,
                msg_id,
                event: event(w),
            })
        })
        .collect()
}

/// Deletes the peer's stream (best effort: a failure is printed).
pub async fn finish_js(clients: &[async_nats::Client]) {
    let Some(client) = clients.first().cloned() else {
        return;
    };
    if let Err(e) = jetstream::new(client).delete_stream(JS_R3_STREAM).await {
        eprintln!("vigil-bench: could not delete the JetStream stream {JS_R3_STREAM}: {e}");
    }
}

/// One request in flight of `jetstream-r3`: appends to its subjects in turn, each publish
/// stating the subject's last sequence it knows.
pub struct JsR3Worker {
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    /// Each subject and its last sequence (`None` after a failure: read it again).
    subjects: Vec<(String, Option<u64>)>,
    next: usize,
    msg_id: bool,
    event: EventMaker,
}

impl JsR3Worker {
    /// Publishes one event and waits for the ack of the quorum.
    pub async fn append(&mut self, seq: u64) -> Result<(), Failure> {
        let i = self.next % self.subjects.len().max(1);
        self.next = self.next.wrapping_add(1);
        let (subject, known) = self
            .subjects
            .get(i)
            .cloned()
            .ok_or_else(|| Failure::new("bench", "no subject"))?;
        let expected = match known {
            Some(s) => s,
            None => self.last_sequence(&subject).await?,
        };
        let event = self.event.event(seq);
        let payload = serde_json::to_vec(&event).map_err(|e| Failure::new("encode", e))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
            expected.to_string().as_str(),
        );
        if self.msg_id {
            headers.insert(header::NATS_MESSAGE_ID, event.id.to_string().as_str());
        }
        let result = async {
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .map_err(|e| Failure::new("publish", e))?;
            ack.await
                .map_err(|e| Failure::new(format!("ack: {:?}", e.kind()), e))
        }
        .await;
        if let Some(slot) = self.subjects.get_mut(i) {
            slot.1 = result.as_ref().ok().map(|ack| ack.sequence);
        }
        result.map(drop)
    }

    /// The subject's last sequence as the stream has it (0 when it holds none): after a
    /// failed publish the worker cannot know whether it was stored.
    async fn last_sequence(&self, subject: &str) -> Result<u64, Failure> {
        use jetstream::stream::LastRawMessageErrorKind;
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(Failure::new("last sequence", e)),
        }
    }
}

/// Judges the cluster issue's targets: at every window with both cells, vigil-r3's rate over
/// the single node's (≥ 50 %) and over jetstream-r3's (≥ 3×); vigil-r3's p99 with 128 in
/// flight (≤ 20 ms, no errors).
pub fn targets(results: &[CellResult], windows: &[usize]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for &w in windows {
        let Some(r) = find(results, System::VigilR3, w) else {
            continue;
        };
        for (peer, min, goal) in [
            (
                System::Vigil,
                MIN_SHARE_OF_SINGLE,
                format!(
                    "replicated ≥ {:.0} % of the single node with {w} in flight",
                    MIN_SHARE_OF_SINGLE * 100.0
                ),
            ),
            (
                System::JetstreamR3,
                MIN_TIMES_JS_R3,
                format!("replicated ≥ {MIN_TIMES_JS_R3}× JetStream R3 with {w} in flight"),
            ),
        ] {
            let Some(p) = find(results, peer, w) else {
                continue;
            };
            let ratio = if p.rate() > 0.0 {
                r.rate() / p.rate()
            } else {
                f64::INFINITY
            };
            out.push(Verdict {
                goal,
                measured: format!(
                    "{ratio:.2}× ({}/s vs {}/s)",
                    rate_text(r.rate()),
                    rate_text(p.rate())
                ),
                pass: Some(ratio >= min),
            });
        }
    }
    let goal = format!("replicated p99 ≤ {MAX_P99_MS} ms with {P99_WINDOW} in flight");
    out.push(match find(results, System::VigilR3, P99_WINDOW) {
        Some(r) => {
            let errors = r.error_count();
            Verdict {
                goal,
                measured: format!(
                    "p99 {:.2} ms, {}/s{}",
                    r.ms_at(0.99),
                    rate_text(r.rate()),
                    if errors > 0 {
                        format!(", {} errors", thousands(errors))
                    } else {
                        String::new()
                    }
                ),
                pass: Some(r.ms_at(0.99) <= MAX_P99_MS && errors == 0 && r.ok > 0),
            }
        }
        None => Verdict {
            goal,
            measured: format!("not run (add {P99_WINDOW} to --windows)"),
            pass: None,
        },
    });
    out
}

/// Prints the cluster issue's table (one row per window: appends/s, p50 and p99 of each
/// system), the ratios, the targets with PASS/MISS, and the Markdown table of every cell.
pub fn print_summary(results: &[CellResult], windows: &[usize]) {
    let mut present: Vec<System> = Vec::new();
    for r in results {
        if !present.contains(&r.spec.system) {
            present.push(r.spec.system);
        }
    }
    report::print_table(
        "the cluster issue's table (appends/s, p50/p99)",
        results,
        windows,
        &present,
        |r| {
            format!(
                "{}/s, p50 {:.1} ms, p99 {:.1} ms",
                rate_text(r.rate()),
                r.ms_at(0.5),
                r.ms_at(0.99)
            )
        },
    );
    report::print_ratios(results, windows, System::VigilR3, &present);
    report::print_verdicts("the cluster issue", &targets(results, windows));
    report::print_markdown(results, windows);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A cell of `ok` appends in one second, every latency `p99_us`.
    fn cell(system: System, window: usize, ok: u64, p99_us: u64) -> CellResult {
        crate::report::tests::cell(system, window, ok, p99_us, p99_us)
    }

    fn verdict_of(results: &[CellResult], goal_starts: &str) -> Option<bool> {
        targets(results, &[16, 128])
            .into_iter()
            .find(|v| v.goal.starts_with(goal_starts))
            .unwrap_or_else(|| panic!("no target starting {goal_starts:?}"))
            .pass
    }

    #[test]
    fn the_share_the_peer_and_the_p99_are_judged_per_window() {
        let results = vec![
            cell(System::Vigil, 16, 10_000, 1_500),
            cell(System::VigilR3, 16, 4_900, 3_000),
            cell(System::JetstreamR3, 16, 1_000, 15_000),
            cell(System::Vigil, 128, 40_000, 3_000),
            cell(System::VigilR3, 128, 20_000, 19_000),
            cell(System::JetstreamR3, 128, 7_000, 20_000),
        ];
        // 49 % of the single node with 16 in flight; 50 % with 128.
        assert_eq!(
            verdict_of(&results, "replicated ≥ 50 % of the single node with 16 "),
            Some(false)
        );
        assert_eq!(
            verdict_of(&results, "replicated ≥ 50 % of the single node with 128"),
            Some(true)
        );
        // 4.9× and 2.86× JetStream R3.
        assert_eq!(
            verdict_of(&results, "replicated ≥ 3× JetStream R3 with 16 "),
            Some(true)
        );
        assert_eq!(
            verdict_of(&results, "replicated ≥ 3× JetStream R3 with 128"),
            Some(false)
        );
        assert_eq!(verdict_of(&results, "replicated p99 ≤ 20 ms"), Some(true));
    }

    #[test]
    fn a_slow_p99_misses_and_a_missing_window_says_so() {
        let slow = vec![cell(System::VigilR3, 128, 20_000, 25_000)];
        assert_eq!(verdict_of(&slow, "replicated p99 ≤ 20 ms"), Some(false));
        let only_16 = vec![cell(System::VigilR3, 16, 5_000, 2_000)];
        let all = targets(&only_16, &[16]);
        // No peer cells: only the p99 target, not run.
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].pass, None);
        assert!(all[0].measured.contains("add 128"), "{:?}", all[0]);
    }
}
