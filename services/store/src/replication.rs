//! A store replica of a several-node centre: the log replicated through a JetStream journal,
//! one leader at a time, failover without losing an acknowledged event.
//!
//! # The journal
//! A JetStream stream (`Replication::journal`, subject [`subjects::STORE_JOURNAL`], file
//! storage, `replicas` replicas, created by whichever replica starts first) holds every
//! group commit, in order, as one or more messages ([`entry`]: the first position, the exact
//! stored bytes of the events, the hash-chain head after them). JetStream's Raft replicates
//! it; with `sync_interval: always` on the servers, an acknowledged message is on the disk of
//! a quorum. The journal keeps everything (no age or size limit yet): a replica that starts
//! empty replays it from the first message.
//!
//! # The leader (see [`leader`])
//! Only the leader serves `vigil.store.append.*.*`, `vigil.store.read` and
//! `vigil.store.stream`, and publishes the live feed. It publishes the prepared groups to
//! the journal with `Nats-Expected-Last-Sequence` (and the same for the subject) set to the
//! journal sequence it last applied — one publish in flight; the groups ready when it is
//! answered go together next, as one atomic batch ([`leader`]) — and only once the journal
//! acknowledged does it commit each group to its own fjall log (with its journal sequence in
//! the same batch) and answer the clients. A publish that fails for any reason — another replica extended the journal
//! (JetStream error 10071), a timeout, no quorum — answers the group and every group prepared
//! after it `unavailable` (clients retry with the same ids), and the replica steps down and
//! follows: a group whose publish did reach the journal is then applied from there like any
//! other, and a retry finds it by its ids with its original positions. So the journal has
//! exactly one writer per sequence, whatever the lease says.
//!
//! # Followers
//! Every other replica applies the journal in order from its applied sequence: the messages
//! it finds are asked for a window at a time and applied as one fjall batch with the last
//! one's sequence, fsync'd ([`crate::log::journal`]), so a replica far behind pays one fsync
//! per window, not per message. A message that
//! does not continue its log (first position not head + 1, a version out of order, a
//! different chain head) stops the replica with an error naming the position and the
//! sequence: it never serves a history that is not the journal's. A replica whose log holds
//! events but has applied no journal message (a single-node store's directory) is refused
//! at start for the same reason.
//!
//! # The lease and failover (see [`lease`])
//! Leadership is a key in a JetStream KV bucket with a ttl. A follower tries to take it
//! every [`LEASE_POLL`] (unless it defers, see below). The new leader first applies the journal to its end (the stream's
//! last sequence, asked of the stream's leader), then subscribes to the append subjects, so
//! an append whose group reached the journal before the old leader died is found by its id.
//! A leader stops serving as soon as a renewal fails or is late (within ttl/2), or its
//! publish fails; an orderly stop deletes the key so another replica takes over at once.
//!
//! # Where the store leader runs
//! A JetStream stream whose Raft leader dies is without a leader for nats-server's election
//! timeout (4–9 s, fixed in nats-server's `raft.go`, no setting changes it): the journal takes
//! no publish and the lease bucket no renewal meanwhile. A store leader on the same node as
//! those stream leaders turns the loss of that node into a 4–9 s failover; a store leader on
//! another node turns it into a lease expiry. So a follower whose nats-server leads the
//! journal's or the lease bucket's stream defers ([`DEFER`]): it takes the lease only after
//! seeing it free that long, and a replica on another node, when one is up, takes it first.
//! Stream leaders are elected after the lease is taken too (at start, after a node loss), so
//! a new leader that finds its node leading one of those streams, while a node that leads
//! neither is current in both, hands the lease over before it serves (deleting the key; at
//! most once per [`HANDOVER_COOLDOWN`], so it never ping-pongs); a leader looks again every
//! [`PLACEMENT_CHECK`] and ends its term the same way (the groups in its pipeline are
//! answered `unavailable`, clients retry with the same ids).
//! Losing the node of the stream leaders still costs a JetStream election; this only keeps the
//! two costs from being paid by the same fault.
//!
//! # Reads
//! Reads are served by the leader only (followers are not subscribed), so that a reader does
//! not see a replica behind what it was acknowledged. One window remains: a leader paused
//! past its lease may answer reads from its own log after it resumes and before it notices
//! the lost lease (its writes cannot land: the journal refuses them). Such a read can be
//! behind; readers see it as a version conflict or a gap that catch-up repairs.
//!
//! # Damaged files
//! As on one machine, a background scan reads every block of the replica's log once after
//! start; damage stops the replica (no more writes, the lease handed over) and [`run`] returns
//! an error naming it.
//!
//! # Status
//! Every replica answers [`subjects::STORE_STATUS`] (not a queue group) with a
//! [`events::store_api::StoreStatus`]: node, role, head, applied journal sequence, leader
//! since. Metrics: `vigil_store_leader` (1 when leading), `vigil_store_journal_applied`,
//! `vigil_store_head_position`.
//!
//! # Not built yet
//! A bounded journal with a snapshot copy for a replica that starts empty or falls too far
//! behind; reads on followers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::{self, kv, stream};
use events::store_api::StoreStatus;
use events::subjects;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use runtime::store_client;

use crate::log::journal::{ApplyError, Positioned};
use crate::log::live::LiveLog;
use crate::server::{Replication, StoreConfig, mark_loop};

mod entry;
mod leader;
mod lease;

pub use entry::{Entry, split};

/// How often a follower tries to take the lease.
const LEASE_POLL: Duration = Duration::from_millis(250);
/// How long a follower whose nats-server leads the journal's or the lease bucket's JetStream
/// stream lets the lease lie free before it takes it (see "Where the store leader runs").
const DEFER: Duration = Duration::from_secs(1);
/// How long after handing the lease over (because its node leads a JetStream stream of the
/// replication) a leader keeps it when it comes back (no ping-pong when every other node
/// hosts one too, or the other replicas' stores are down).
const HANDOVER_COOLDOWN: Duration = Duration::from_secs(10);
/// How often a leader looks where the stream leaders are.
const PLACEMENT_CHECK: Duration = Duration::from_secs(2);
/// A stream peer heard from longer ago than this counts as gone (Raft heartbeats are 1 s).
const PEER_SILENCE: Duration = Duration::from_millis(1500);
/// Timeout of the look-ups a follower makes before trying the lease (who leads the streams,
/// is the lease free): short, so a dead stream leader never holds up a takeover.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(250);
/// How long a follower waits for news of the journal before looking again.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Most journal messages a follower asks for at once and applies as one batch.
const APPLY_WINDOW: u64 = 64;
/// A batch being applied ends once its messages hold this many bytes (bounds the memory).
const APPLY_BYTES: usize = 16 << 20;
/// Timeout of one JetStream request (a journal read, the lease).
const JS_TIMEOUT: Duration = Duration::from_secs(2);

/// What every part of a replica shares.
pub(crate) struct Shared {
    pub(crate) node: String,
    pub(crate) log: Arc<LiveLog>,
    /// The last journal sequence in this replica's log.
    pub(crate) applied: AtomicU64,
    pub(crate) leading: AtomicBool,
    pub(crate) leader_since: Mutex<Option<String>>,
    /// Whether the journal takes atomic batches (set once it is found or created).
    pub(crate) atomic_journal: AtomicBool,
}

impl Shared {
    fn status(&self) -> StoreStatus {
        let leading = self.leading.load(Ordering::Acquire);
        StoreStatus {
            node: self.node.clone(),
            role: if leading { "leader" } else { "follower" }.into(),
            head: self.log.head(),
            journal_seq: self.applied.load(Ordering::Acquire),
            leader_since: if leading {
                self.leader_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone()
            } else {
                None
            },
        }
    }

    fn publish_metrics(&self) {
        metrics::gauge!("vigil_store_leader").set(if self.leading.load(Ordering::Acquire) {
            1.0
        } else {
            0.0
        });
        metrics::gauge!("vigil_store_journal_applied")
            .set(self.applied.load(Ordering::Acquire) as f64);
        metrics::gauge!("vigil_store_head_position").set(self.log.head() as f64);
    }
}

/// Runs a replica until `shutdown` fires; an error when its log disagrees with the journal,
/// its disk fails, or it cannot start.
pub async fn run(
    client: Client,
    config: StoreConfig,
    replication: Replication,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let dir = config.dir.clone();
    let durability = config.durability;
    let log = tokio::task::spawn_blocking(move || LiveLog::open(&dir, durability))
        .await?
        .map_err(|e| {
            anyhow::anyhow!("cannot open the event log at {}: {e}", config.dir.display())
        })?;
    let log = Arc::new(log);
    let current = log.get()?;
    let applied = tokio::task::spawn_blocking(move || current.applied_journal_seq()).await??;
    if applied == 0 && log.head() > 0 {
        anyhow::bail!(
            "the event log at {} holds {} events but none came from the journal (a single-node store, or a copy from another history): a replica starts empty or from a copy of a replica of this centre. This replica does not serve",
            config.dir.display(),
            log.head()
        );
    }
    tracing::info!(node = %replication.node, head = log.head(), journal_seq = applied, "replica's event log open");
    let shared = Arc::new(Shared {
        node: replication.node.clone(),
        log: log.clone(),
        applied: AtomicU64::new(applied),
        leading: AtomicBool::new(false),
        leader_since: Mutex::new(None),
        atomic_journal: AtomicBool::new(false),
    });
    shared.publish_metrics();

    let (stop_marking, marking) = std::sync::mpsc::channel::<()>();
    let marker = {
        let log = log.clone();
        std::thread::Builder::new()
            .name("vigil-store-mark".into())
            .spawn(move || mark_loop(&log, &marking))?
    };
    // Damage the background scan finds stops this replica (as it stops a single-node store):
    // it takes no more writes, hands the lease over and `run` returns the error.
    let damage: Arc<Mutex<Option<String>>> = Arc::default();
    let stop = shutdown.child_token();
    scan_in_background(&log, &damage, &stop)?;
    let status = tokio::spawn(serve_status(client.clone(), shared.clone(), stop.clone()));

    let result = roles(&client, &config, &replication, &shared, &stop).await;

    stop.cancel();
    let _ = tokio::time::timeout(crate::server::NATS_GRACE, status).await;
    drop(stop_marking);
    let _ = tokio::task::spawn_blocking(move || marker.join()).await;
    let closing = log.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    tracing::info!(head = log.head(), "replica stopped");
    if let Some(what) = damage.lock().unwrap_or_else(|p| p.into_inner()).take() {
        anyhow::bail!("the event log is damaged (found after start): {what}");
    }
    result
}

/// Scans the log in the background ([`crate::server::scan_in_background`]); damage stops
/// writes, is kept in `damage` and fires `stop`.
fn scan_in_background(
    log: &Arc<LiveLog>,
    damage: &Arc<Mutex<Option<String>>>,
    stop: &CancellationToken,
) -> std::io::Result<()> {
    let (stopping, damage, stop) = (log.clone(), damage.clone(), stop.clone());
    crate::server::scan_in_background(log, move |what| {
        tracing::error!(%what, "the scan found the event log damaged: this replica stops");
        stopping.stop_writes(crate::log::Failure::Damaged(what.clone()));
        *damage.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
        stop.cancel();
    })
}

/// Answers every status request with this replica's state.
async fn serve_status(client: Client, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut sub = match client.subscribe(subjects::STORE_STATUS).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot serve {}", subjects::STORE_STATUS);
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                if let Some(reply) = msg.reply {
                    let body = events::codec::encode(&shared.status());
                    let _ = client.publish(reply, body.into()).await;
                }
            }
        }
    }
    let _ = tokio::time::timeout(crate::server::NATS_GRACE, sub.unsubscribe()).await;
}

/// Whether the journal takes atomic batches (nats-server 2.12+), which let the leader send
/// several groups in one round trip. A journal created before they were used is updated to
/// take them; on a server that does not know them it stays without, and the leader publishes
/// one message per round trip.
async fn atomic_batches(js: &jetstream::Context, journal: &mut stream::Stream) -> bool {
    let mut config = journal.cached_info().config.clone();
    if config.allow_atomic_publish {
        return true;
    }
    config.allow_atomic_publish = true;
    match js.update_stream(&config).await {
        Ok(info) if info.config.allow_atomic_publish => true,
        Ok(_) => {
            tracing::warn!(
                "this nats-server does not take atomic batches (2.12+ does): the leader publishes one journal message per round trip"
            );
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "the journal could not be set to take atomic batches: the leader publishes one journal message per round trip");
            false
        }
    }
}

/// Creates (or finds) the journal and the lease bucket, retrying until the cluster answers.
async fn setup(
    js: &jetstream::Context,
    r: &Replication,
    shutdown: &CancellationToken,
) -> Option<(stream::Stream, kv::Store)> {
    let started = Instant::now();
    let mut warned = Instant::now();
    loop {
        let journal = js
            .get_or_create_stream(stream::Config {
                name: r.journal.clone(),
                subjects: vec![subjects::STORE_JOURNAL.into()],
                storage: stream::StorageType::File,
                num_replicas: r.replicas,
                duplicate_window: Duration::from_secs(2),
                allow_atomic_publish: true,
                ..Default::default()
            })
            .await;
        let bucket = match js.get_key_value(&r.lease_bucket).await {
            Ok(kv) => Ok(kv),
            Err(_) => match js
                .create_key_value(kv::Config {
                    bucket: r.lease_bucket.clone(),
                    history: 1,
                    max_age: r.lease_ttl,
                    storage: stream::StorageType::File,
                    num_replicas: r.replicas,
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => Ok(kv),
                // Another replica created it meanwhile.
                Err(_) => js.get_key_value(&r.lease_bucket).await,
            },
        };
        match (journal, bucket) {
            (Ok(journal), Ok(bucket)) => {
                tracing::info!(journal = %r.journal, lease = %r.lease_bucket, "journal and lease bucket ready");
                return Some((journal, bucket));
            }
            (j, b) => {
                if warned.elapsed() > Duration::from_secs(5) {
                    warned = Instant::now();
                    tracing::warn!(
                        secs = started.elapsed().as_secs(),
                        journal = ?j.err().map(|e| e.to_string()),
                        lease = ?b.err().map(|e| e.to_string()),
                        "waiting for JetStream to create or find the journal and the lease bucket"
                    );
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

/// Follows, leads when it holds the lease, follows again when it loses it, until shutdown.
async fn roles(
    client: &Client,
    config: &StoreConfig,
    r: &Replication,
    shared: &Arc<Shared>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let js = jetstream::new(client.clone());
    let Some((mut journal, bucket)) = setup(&js, r, shutdown).await else {
        return Ok(());
    };
    shared
        .atomic_journal
        .store(atomic_batches(&js, &mut journal).await, Ordering::Release);
    // News of the journal (every message the leader publishes), to apply it promptly.
    let mut news = client.subscribe(subjects::STORE_JOURNAL).await?;
    let mut handed_over: Option<Instant> = None;
    loop {
        // Following.
        // The first round tries at once.
        let mut last_try: Option<Instant> = None;
        // Since when this replica has seen the lease free (only looked at when it defers).
        let mut free_since: Option<Instant> = None;
        let revision = loop {
            if shutdown.is_cancelled() {
                return Ok(());
            }
            apply_available(&journal, shared, None).await?;
            if last_try.is_none_or(|t| t.elapsed() >= LEASE_POLL) {
                last_try = Some(Instant::now());
                let server = client.server_info().server_name;
                if may_take_lease(client, &journal, &bucket, own_server(r), &mut free_since).await
                    && let Some(rev) =
                        lease::try_acquire(&bucket, lease::value(&r.node, &server), JS_TIMEOUT)
                            .await
                {
                    break rev;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = news.next() => {}
                _ = tokio::time::sleep(FOLLOW_POLL) => {}
            }
        };
        let took = Instant::now();
        let server = client.server_info().server_name;
        let held = lease::Lease::hold(
            bucket.clone(),
            lease::value(&r.node, &server),
            revision,
            r.lease_ttl,
        );
        tracing::info!(node = %r.node, "took the leader lease: applying the journal to its end");
        let caught_up = catch_up_to_end(&journal, shared, held.lost(), shutdown).await?;
        if !caught_up {
            held.release(false).await;
            continue;
        }
        let (journal_at, lease_at) = (
            stream_placement(&journal).await,
            stream_placement(&bucket.stream).await,
        );
        tracing::info!(
            node = %r.node,
            connected_to = %server,
            ms = took.elapsed().as_millis() as u64,
            journal_seq = shared.applied.load(Ordering::Acquire),
            journal_stream = ?journal_at,
            lease_stream = ?lease_at,
            "applied the journal to its end"
        );
        if handed_over.is_none_or(|t| t.elapsed() >= HANDOVER_COOLDOWN)
            && let Some(peer) = better_placed(client, &journal, &bucket, own_server(r)).await
        {
            tracing::info!(node = %r.node, %peer, "this node leads a JetStream stream of the replication: handing the lease to a replica on another node");
            handed_over = Some(Instant::now());
            held.release(true).await;
            continue;
        }
        // The term ends when the lease is lost, or to hand the lease over when a stream
        // leader of the replication is (or comes) on this node and a better node is up.
        let term_end = CancellationToken::new();
        let watcher = tokio::spawn(watch_placement(
            client.clone(),
            journal.clone(),
            bucket.clone(),
            r.node.clone(),
            handed_over,
            held.lost().clone(),
            term_end.clone(),
        ));
        let outcome =
            leader::lead(client, &js, config, shared, &term_end, shutdown, &mut news).await;
        watcher.abort();
        let handing_over = !held.lost().is_cancelled() && term_end.is_cancelled();
        if handing_over {
            handed_over = Some(Instant::now());
        }
        held.release(shutdown.is_cancelled() || handing_over).await;
        outcome?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
    }
}

/// Ends the term (`term_end`) when the lease is lost, or when this node leads a JetStream
/// stream of the replication while a better-placed node is up (looked at every
/// [`PLACEMENT_CHECK`], never within [`HANDOVER_COOLDOWN`] of the last hand-over).
async fn watch_placement(
    client: Client,
    journal: stream::Stream,
    bucket: kv::Store,
    node: String,
    handed_over: Option<Instant>,
    lost: CancellationToken,
    term_end: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = lost.cancelled() => break,
            _ = tokio::time::sleep(PLACEMENT_CHECK) => {}
        }
        if handed_over.is_none_or(|t| t.elapsed() >= HANDOVER_COOLDOWN)
            && let Some(peer) = better_placed(&client, &journal, &bucket, &node).await
        {
            tracing::info!(%node, %peer, "this node leads a JetStream stream of the replication: handing the lease to a replica on another node");
            break;
        }
    }
    term_end.cancel();
}

/// The name of this node's nats-server: the node's name (a centre names each node's
/// nats-server like the node, `server_name`), which is what placement compares with the
/// stream leaders; the store's connection may be to any server of the cluster.
fn own_server(r: &Replication) -> &str {
    &r.node
}

/// Who leads the stream (its nats-server's name) and its peers that are current, when the
/// stream's leader answers within [`LOOKUP_TIMEOUT`].
async fn stream_placement(s: &stream::Stream) -> Option<(String, Vec<String>)> {
    let info = tokio::time::timeout(LOOKUP_TIMEOUT, s.get_info())
        .await
        .ok()?
        .ok()?;
    let cluster = info.cluster?;
    let current = cluster
        .replicas
        .iter()
        .filter(|p| p.current && !p.offline && p.active < PEER_SILENCE)
        .map(|p| p.name.clone())
        .collect();
    Some((cluster.leader?, current))
}

/// A nats-server, other than `server`, that leads neither the journal's nor the lease
/// bucket's stream and is current in both, **and whose store replica answers its status**,
/// when `server` leads one of them: a store leader there would survive the loss of this node
/// without waiting for a JetStream election. A node whose nats-server is well but whose store
/// is stopped, paused or hung is not better placed: handing the lease to it would hand it to
/// nobody (and, before this check, did so again every [`HANDOVER_COOLDOWN`]).
async fn better_placed(
    client: &Client,
    journal: &stream::Stream,
    bucket: &kv::Store,
    server: &str,
) -> Option<String> {
    let (j_leader, j_current) = stream_placement(journal).await?;
    let (k_leader, k_current) = stream_placement(&bucket.stream).await?;
    if j_leader != server && k_leader != server {
        return None;
    }
    let candidates: Vec<String> = j_current
        .into_iter()
        .filter(|p| p != server && *p != j_leader && *p != k_leader && k_current.contains(p))
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let live = |answers: &[StoreStatus]| {
        answers
            .iter()
            .find(|a| candidates.contains(&a.node))
            .map(|a| a.node.clone())
    };
    let answers = store_client::collect_statuses(client, LOOKUP_TIMEOUT, |a| live(a).is_some())
        .await
        .ok()?;
    live(&answers)
}

/// Whether this follower may try to take the lease now. A follower whose nats-server leads
/// the journal's or the lease bucket's stream defers: it takes the lease only once it has
/// seen it free for [`DEFER`], so a replica on another node takes it first when there is one.
/// Look-ups that fail or time out count as "not this server": they never hold up a takeover.
async fn may_take_lease(
    client: &Client,
    journal: &stream::Stream,
    bucket: &kv::Store,
    server: &str,
    free_since: &mut Option<Instant>,
) -> bool {
    if better_placed(client, journal, bucket, server)
        .await
        .is_none()
    {
        return true;
    }
    match tokio::time::timeout(LOOKUP_TIMEOUT, bucket.entry(lease::KEY)).await {
        Ok(Ok(None)) => free_since.get_or_insert_with(Instant::now).elapsed() >= DEFER,
        // Deleted by an orderly hand-over: free too.
        Ok(Ok(Some(e))) if e.operation != kv::Operation::Put => {
            free_since.get_or_insert_with(Instant::now).elapsed() >= DEFER
        }
        Ok(Ok(Some(_))) => {
            *free_since = None;
            false
        }
        // Unknown: let `create` decide, which fails while the key is held.
        _ => free_since.get_or_insert_with(Instant::now).elapsed() >= DEFER,
    }
}

/// Applies the journal up to its last sequence (asked of the stream's leader). `false` when
/// the lease was lost or a stop asked before it got there.
async fn catch_up_to_end(
    journal: &stream::Stream,
    shared: &Arc<Shared>,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    loop {
        if lost.is_cancelled() || shutdown.is_cancelled() {
            return Ok(false);
        }
        let mut info = journal.clone();
        let last = match tokio::time::timeout(JS_TIMEOUT, info.info()).await {
            Ok(Ok(i)) => i.state.last_sequence,
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        apply_available(journal, shared, Some(last)).await?;
        if shared.applied.load(Ordering::Acquire) >= last {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Applies journal messages after the applied sequence until there is none (or `until` is
/// reached). Unreachable JetStream is logged and left for the next round; a message that
/// does not continue this log is an error.
///
/// The messages are asked for in windows, concurrently (a window grows from one message up
/// to [`APPLY_WINDOW`] while every message asked for is there, so a follower that is current
/// asks for little more than the message it was told of), and each window is applied as one
/// batch with one fsync ([`crate::log::Log::apply_journal`]): a replica that starts far
/// behind catches up at the disk's and the network's pace, not one round trip and one fsync
/// per message.
async fn apply_available(
    journal: &stream::Stream,
    shared: &Arc<Shared>,
    until: Option<u64>,
) -> anyhow::Result<()> {
    let mut window = 1u64;
    loop {
        let next = shared.applied.load(Ordering::Acquire) + 1;
        let end = until.unwrap_or(u64::MAX);
        if next > end {
            return Ok(());
        }
        let asked = window.min(end - next + 1);
        let mut answers = futures::stream::iter(next..next + asked)
            .map(|seq| async move {
                (
                    seq,
                    tokio::time::timeout(JS_TIMEOUT, journal.get_raw_message(seq)).await,
                )
            })
            .buffered(asked as usize);
        let mut entries: Vec<(u64, Entry)> = Vec::new();
        let mut bytes = 0usize;
        // Whether every message asked for was there (so there may be more).
        let mut more = true;
        while let Some((seq, answer)) = answers.next().await {
            let msg = match answer {
                Ok(Ok(m)) => m,
                Ok(Err(e))
                    if matches!(
                        e.kind(),
                        jetstream::stream::LastRawMessageErrorKind::NoMessageFound
                    ) =>
                {
                    more = false;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, seq, "cannot read the journal now");
                    more = false;
                    break;
                }
                Err(_) => {
                    more = false;
                    break;
                }
            };
            if msg.sequence != seq {
                anyhow::bail!(
                    "asked the journal for sequence {seq} and got {}",
                    msg.sequence
                );
            }
            let entry = Entry::decode(Some(&msg.headers), &msg.payload).map_err(|e| {
                anyhow::anyhow!("journal message {seq} is unreadable: {e}; this replica stops")
            })?;
            bytes += msg.payload.len();
            entries.push((seq, entry));
            if bytes >= APPLY_BYTES {
                break;
            }
        }
        drop(answers);
        let Some(&(last, _)) = entries.last() else {
            return Ok(());
        };
        let log = shared.log.get()?;
        let applied = tokio::task::spawn_blocking(move || {
            let positioned: Vec<Positioned<'_>> = entries
                .iter()
                .map(|(seq, e)| Positioned {
                    seq: *seq,
                    first: e.first,
                    events: &e.events,
                    chain_head: &e.chain_head,
                })
                .collect();
            log.apply_journal(&positioned)
        })
        .await?;
        match applied {
            Ok(_) => {
                shared.applied.store(last, Ordering::Release);
                shared.publish_metrics();
            }
            Err(ApplyError::Diverged(what)) => {
                tracing::error!(%what, "this replica's log disagrees with the journal: it stops and never serves");
                anyhow::bail!(
                    "this replica's log disagrees with the journal: {what}. It does not serve: replace its store directory with a copy of a healthy replica's (or empty it to replay the journal)"
                );
            }
            Err(ApplyError::Log(e)) => {
                anyhow::bail!("applying journal messages {next} to {last} failed: {e}")
            }
        }
        if !more {
            return Ok(());
        }
        window = (window * 2).min(APPLY_WINDOW);
    }
}
