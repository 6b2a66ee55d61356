//! The store's NATS API: `vigil.store.append.<user>.<category>`, `vigil.store.read`,
//! `vigil.store.stream`, and the committed-event feed `vigil.events.committed`.
//!
//! # Who appends
//! An append's subject names the NATS user that sends it and the category of the stream it
//! writes (`vigil.store.append.levels.level`). The nats-server config of `vigil up` lets each
//! user publish only on its own user token with the categories it owns (see
//! `runtime::nats_auth`), so the subject is as good as the connection's login. The store
//! refuses (`forbidden`) an append whose stream is not of the subject's category, and records
//! the subject's user in every event's `meta.appended_by`, replacing whatever the writer
//! sent: the log says which credential wrote each event, next to the actor it claims. On a
//! nats-server without Vigil's users (tests, an external bus) nobody enforces the user token
//! and `appended_by` is what the client said. The bare `vigil.store.append` is not served.
//!
//! # Write path and what it promises
//! 1. A request is decoded and size-checked in the NATS handler into borrowed envelopes
//!    ([`crate::incoming`]: `data` stays the bytes that came in); a bad one is answered
//!    `invalid` at once and never reaches the log.
//! 2. A good one goes into a bounded queue to the single writer. When the queue is
//!    full the request is answered `unavailable` (retry with the same ids) rather than
//!    letting memory grow or blocking the handler.
//! 3. The writer is two threads. When the committing thread has written a group it asks
//!    for the next; the preparing thread then takes everything queued, up to
//!    `max_group_events`, and judges it in order (expected versions, the id index, retries),
//!    encodes, hashes and batches it ([`crate::Log::prepare_group`]); the committing thread
//!    writes it as one fjall batch and fdatasyncs once (group commit,
//!    [`crate::Log::commit_prepared`]). Gathering a group only when the disk is free puts
//!    everything that arrived during the last fsync into the next one (a group prepared
//!    while the last was still being written took only what had arrived by then: 8-10 %
//!    fewer appends a second at 16 and 128 in flight, docs/BENCHMARKS.md).
//!    The cap keeps a group's commit short, so tail latency stays low under load. (On a
//!    replica's leader the same threads run ahead of the local commit: see
//!    `replication::leader`; a group judged ahead is refused whole if one before it fails.)
//! 4. Only once a group is durable does one outbox task send every answer of the group and
//!    publish the group's events on the live feed as one message (a few for a group over the
//!    server's payload limit; [`crate::feed`]) saying its first position and count.
//!    Publication is best-effort by design: a consumer that misses one sees the gap in
//!    positions and reads it from the log (see `vigil_runtime::catchup`); failures (per
//!    message) are counted in
//!    `vigil_store_publish_failed_total`. The outbox queue holds 1,024 groups; when it is full
//!    the writer waits, because answers are never dropped.
//!
//! # Disk full
//! A commit that fails because the disk is full stops writes (appends are answered
//! `unavailable`, saying so) and the writer reopens the log by itself once space returns
//! (see [`crate::log::live`]); reads are served throughout.
//!
//! # Damaged files
//! After start, a background scan reads every block of the store once ([`Log::scan`]); if it
//! (or any read) finds the files damaged, the store stops taking writes, shuts down as below
//! and `run` returns an error naming the damage and what to do. It never serves a damaged log
//! for long.
//!
//! # The acknowledged head
//! A thread records the head as the acknowledged-head mark about once a second, and the
//! close at shutdown records it last (see [`crate::log::mark`]): a log that later opens
//! shorter than that is refused instead of served.
//!
//! # Shutdown
//! On the shutdown token the store stops taking requests, the writer finishes the group in
//! flight, every waiting request gets its answer, the log is flushed, and `run` returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, Message};
use events::codec::{self, Limits};
use events::store_api::{AppendReply, MAX_READ_LIMIT, ReadRequest, StoreError, StreamReadRequest};
use events::subjects;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::incoming::{self, Append};
use crate::log::live::{LiveLog, PreparedGroup};
use crate::log::mark::MARK_EVERY;
use crate::log::{Committed, Durability, Failure, LogError, Pending, StoredEvent};

/// Settings of the store service.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Directory of the fjall database.
    pub dir: std::path::PathBuf,
    /// Size limits of appends.
    pub limits: Limits,
    /// Most events in one group commit. Around 100–200 keeps p99 low on these disks
    /// (groups of 1,000 were measured to worsen the tail).
    pub max_group_events: usize,
    /// Appends that may wait for the writer before new ones are refused as `unavailable`.
    pub queue_capacity: usize,
    /// A replica's leader: most groups sent to the journal in one round trip (one atomic
    /// batch), gathered when the journal answered the last round (`prepare_loop`).
    pub journal_batch_groups: usize,
    /// fsync before ack (production) or not (only to prove the crash harness sees loss).
    pub durability: Durability,
    /// Replication through a JetStream journal (a centre of several nodes); `None` on one
    /// machine, where the store needs no JetStream.
    pub replication: Option<Replication>,
}

/// How a store replica of a several-node centre finds the journal and the leader lease.
#[derive(Debug, Clone)]
pub struct Replication {
    /// This node's name (in the lease, `vigil cluster status`, logs).
    pub node: String,
    /// The JetStream stream holding the journal.
    pub journal: String,
    /// The JetStream key-value bucket holding the leader lease.
    pub lease_bucket: String,
    /// How long a lease lives without renewal.
    pub lease_ttl: Duration,
    /// Replicas of the journal and of the lease bucket (3 in a 3-node centre).
    pub replicas: usize,
}

impl Replication {
    /// Defaults for node `node` of a 3-node centre.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            journal: "VIGIL_JOURNAL".into(),
            lease_bucket: "vigil_store_leader".into(),
            // Short for a quick failover; safety never rests on it (the journal's expected
            // last sequence does), a leader renews every ttl/4 and steps down when a renewal
            // takes longer than that.
            lease_ttl: Duration::from_secs(2),
            replicas: 3,
        }
    }
}

impl StoreConfig {
    /// Defaults for a store under `dir`.
    pub fn new(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            limits: Limits::default(),
            max_group_events: 128,
            queue_capacity: 8192,
            journal_batch_groups: 8,
            durability: Durability::SyncData,
            replication: None,
        }
    }
}

/// Largest read reply, in bytes of event JSON. Stays under nats-server's default 1 MiB
/// `max_payload` with room for the envelope.
const MAX_REPLY_BYTES: usize = 900 * 1024;
/// Largest read request; reads are tiny.
const MAX_READ_REQUEST_BYTES: usize = 4096;

/// Most appends taken from the subscription in one turn of the request loop, so reads and
/// a stop are still seen between bursts.
const APPEND_BURST: usize = 64;

/// An append waiting for the writer, with the subject its answer goes to.
pub(crate) type Job = (Append, async_nats::Subject);

/// A group on its way from the preparing thread to the committing one.
pub(crate) struct Stage {
    pub(crate) group: Vec<Pending>,
    pub(crate) reply_to: Vec<async_nats::Subject>,
    pub(crate) prepared: Result<PreparedGroup, LogError>,
    /// How long the preparation took.
    pub(crate) prepare: Duration,
}

/// What one group commit sends out, in this order: every answer, then the committed events.
pub(crate) struct Outbox {
    pub(crate) replies: Vec<(async_nats::Subject, AppendReply)>,
    pub(crate) committed: Committed,
}

/// How long shutdown waits for each NATS step (unsubscribe, the last answers, flush).
pub(crate) const NATS_GRACE: Duration = Duration::from_secs(2);

/// Opens the log and serves it over NATS until `shutdown` fires. A stop is honoured also
/// while NATS is unreachable: the NATS steps of shutdown wait at most [`NATS_GRACE`] each.
pub async fn run(
    client: Client,
    config: StoreConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(replication) = config.replication.clone() {
        return crate::replication::run(client, config, replication, shutdown).await;
    }
    let dir = config.dir.clone();
    let log = tokio::task::spawn_blocking(move || LiveLog::open(&dir, config.durability))
        .await?
        .map_err(|e| {
            anyhow::anyhow!("cannot open the event log at {}: {e}", config.dir.display())
        })?;
    let log = Arc::new(log);
    tracing::info!(dir = %config.dir.display(), head = log.head(), "event log open");
    metrics::gauge!("vigil_store_head_position").set(log.head() as f64);

    // Damage found after start (by the scan or by a read) stops the store.
    let (damage_tx, mut damage_rx) = mpsc::unbounded_channel::<String>();
    let damage = damage_tx.clone();
    scan_in_background(&log, move |what| {
        let _ = damage.send(what);
    })?;

    // The acknowledged-head mark (see `crate::log::mark`), recorded off the write path.
    // Dropping `stop_marking` ends it at once; it is joined before the close, so nothing
    // holds the log (and fjall's directory lock) after `run` returns.
    let (stop_marking, marking) = std::sync::mpsc::channel::<()>();
    let marker = {
        let log = log.clone();
        std::thread::Builder::new()
            .name("vigil-store-mark".into())
            .spawn(move || mark_loop(&log, &marking))?
    };

    let (job_tx, job_rx) = mpsc::channel::<Job>(config.queue_capacity);
    // Answers and publications, one entry per group. The writer waits when it is full
    // (answers must not be dropped); 1024 groups is seconds of NATS trouble.
    let (out_tx, out_rx) = mpsc::channel::<Outbox>(1024);

    // The committing thread asks for each group when it has written the last one
    // (`prepare_loop`, rounds of one group here).
    let (wants_tx, wants_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let (stage_tx, stage_rx) = std::sync::mpsc::sync_channel::<Vec<Stage>>(1);
    let committer = {
        let log = log.clone();
        std::thread::Builder::new()
            .name("vigil-store-commit".into())
            .spawn(move || commit_loop(&log, (&wants_tx, &stage_rx), &out_tx))?
    };
    let writer = {
        let log = log.clone();
        let max = config.max_group_events;
        std::thread::Builder::new()
            .name("vigil-store-writer".into())
            .spawn(move || prepare_loop(&log, job_rx, (&wants_rx, &stage_tx), max, 1))?
    };
    let outbox = tokio::spawn(outbox_loop(client.clone(), out_rx));

    let Requests {
        mut appends,
        mut reads,
        mut streams,
    } = Requests::subscribe(&client).await?;
    // Until the server confirms the subscriptions; a stop asked meanwhile (NATS not there
    // yet) goes straight to the orderly shutdown below.
    let serving = tokio::select! {
        r = client.flush() => {
            r?;
            tracing::info!("store serving {}", subjects::STORE_ALL);
            true
        }
        _ = shutdown.cancelled() => false,
    };

    let tasks = TaskTracker::new();
    let mut damaged = None;
    loop {
        if !serving {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(what) = damage_rx.recv() => {
                tracing::error!(damage = %what, "the event log is damaged: the store stops taking writes and shuts down");
                log.stop_writes(Failure::Damaged(what.clone()));
                damaged = Some(what);
                break;
            }
            Some(msg) = appends.next() => {
                handle_append(&client, &config.limits, &job_tx, msg).await;
                // What else has arrived, before every branch is polled again: a round of the
                // select per append cost ~700 instructions (docs/BENCHMARKS.md).
                for _ in 1..APPEND_BURST {
                    let Some(Some(msg)) = appends.next().now_or_never() else { break };
                    handle_append(&client, &config.limits, &job_tx, msg).await;
                }
            }
            Some(msg) = reads.next() => {
                let (client, log, damage) = (client.clone(), log.clone(), damage_tx.clone());
                tasks.spawn(async move { handle_read(&client, &log, &damage, msg).await });
            }
            Some(msg) = streams.next() => {
                let (client, log, damage) = (client.clone(), log.clone(), damage_tx.clone());
                tasks.spawn(async move { handle_stream(&client, &log, &damage, msg).await });
            }
            else => break,
        }
    }

    tracing::info!("store stopping: finishing the commit in flight");
    let requests = Requests {
        appends,
        reads,
        streams,
    };
    requests
        .stop(&client, job_tx, (writer, committer), tasks, outbox)
        .await;
    drop(stop_marking);
    let _ = tokio::task::spawn_blocking(move || marker.join()).await;
    let closing = log.clone();
    tokio::task::spawn_blocking(move || closing.close()).await??;
    tracing::info!(head = log.head(), "store stopped");
    match damaged {
        Some(what) => Err(anyhow::anyhow!(
            "the event log at {} is damaged (found after start): {what}",
            config.dir.display()
        )),
        None => Ok(()),
    }
}

/// Reads every block of the log once in a thread ([`crate::Log::scan`]) and hands the damage
/// it finds, if any, to `damaged`. A log that is reopening is not scanned.
pub(crate) fn scan_in_background(
    log: &LiveLog,
    damaged: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<()> {
    let Ok(scanned) = log.get() else {
        return Ok(());
    };
    std::thread::Builder::new()
        .name("vigil-store-scan".into())
        .spawn(move || {
            let started = Instant::now();
            match scanned.scan() {
                Ok(Some(head)) => tracing::info!(
                    head,
                    secs = started.elapsed().as_secs_f64(),
                    "event log scanned: every block readable, positions and hash chain gap-free"
                ),
                Ok(None) => tracing::info!("event log scan stopped: the log was reopened"),
                Err(LogError::Damaged(what)) => damaged(what),
                Err(e) => {
                    tracing::error!(error = %e, "the scan of the event log could not finish")
                }
            }
        })?;
    Ok(())
}

/// The request subscriptions of a serving store, all in the store's queue group.
pub(crate) struct Requests {
    pub(crate) appends: async_nats::Subscriber,
    pub(crate) reads: async_nats::Subscriber,
    pub(crate) streams: async_nats::Subscriber,
}

impl Requests {
    /// Subscribes to appends, reads and stream reads.
    pub(crate) async fn subscribe(client: &Client) -> anyhow::Result<Self> {
        let queue = || subjects::STORE_QUEUE.to_owned();
        Ok(Self {
            appends: client
                .queue_subscribe(subjects::STORE_APPEND_ALL, queue())
                .await?,
            reads: client
                .queue_subscribe(subjects::STORE_READ, queue())
                .await?,
            streams: client
                .queue_subscribe(subjects::STORE_STREAM, queue())
                .await?,
        })
    }

    /// Stops serving in the one safe order: take no more requests, let the writer finish
    /// (every request it holds is answered), let the read tasks and the outbox finish, flush.
    /// Every step that needs NATS is bounded by [`NATS_GRACE`]: with the server gone it would
    /// wait for ever, and a store must stop when asked (what is committed is on disk; an
    /// unanswered client retries with its ids).
    pub(crate) async fn stop(
        mut self,
        client: &Client,
        jobs: mpsc::Sender<Job>,
        (writer, committer): (std::thread::JoinHandle<()>, std::thread::JoinHandle<()>),
        tasks: TaskTracker,
        outbox: tokio::task::JoinHandle<()>,
    ) {
        let _ = tokio::time::timeout(NATS_GRACE, async {
            drop((
                self.appends.unsubscribe().await,
                self.reads.unsubscribe().await,
                self.streams.unsubscribe().await,
            ))
        })
        .await;
        drop(jobs);
        let _ = tokio::task::spawn_blocking(move || (writer.join(), committer.join())).await;
        tasks.close();
        let _ = tokio::time::timeout(NATS_GRACE, tasks.wait()).await;
        let _ = tokio::time::timeout(NATS_GRACE, outbox).await;
        let _ = tokio::time::timeout(NATS_GRACE, client.flush()).await;
    }
}

/// Records the acknowledged-head mark every [`MARK_EVERY`] until `stop`'s sender is dropped.
/// A failure (a full disk) is logged once and retried; appends are not affected by it.
pub(crate) fn mark_loop(log: &LiveLog, stop: &std::sync::mpsc::Receiver<()>) {
    let mut failing = false;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(MARK_EVERY) {
        let Ok(current) = log.get() else { continue };
        match current.record_mark() {
            Ok(_) if failing => {
                failing = false;
                tracing::info!("the acknowledged-head mark is recorded again");
            }
            Ok(_) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot record the acknowledged-head mark; retrying every second (the log itself is unaffected)");
            }
            Err(_) => {}
        }
    }
}

pub(crate) async fn handle_append(
    client: &Client,
    limits: &Limits,
    jobs: &mpsc::Sender<Job>,
    msg: Message,
) {
    let Some(reply_to) = msg.reply.clone() else {
        metrics::counter!("vigil_store_requests_without_reply_total").increment(1);
        return;
    };
    let request = match incoming::decode_append(&msg.payload, limits)
        .map_err(StoreError::from)
        .and_then(|r| attribute(r, &msg.subject))
    {
        Ok(r) => r,
        Err(e) => {
            metrics::counter!("vigil_store_appends_total", "outcome" => outcome_label_of(&e))
                .increment(1);
            respond(client, reply_to, &AppendReply::Error(e)).await;
            return;
        }
    };
    if let Err(e) = jobs.try_send((request, reply_to)) {
        let (message, reply_to) = match e {
            mpsc::error::TrySendError::Full((_, r)) => (
                "the store is at capacity; retry shortly with the same event ids",
                r,
            ),
            mpsc::error::TrySendError::Closed((_, r)) => (
                "the store is shutting down; retry with the same event ids",
                r,
            ),
        };
        metrics::counter!("vigil_store_appends_total", "outcome" => "unavailable").increment(1);
        respond(
            client,
            reply_to,
            &AppendReply::Error(StoreError::unavailable(message)),
        )
        .await;
    }
}

/// Checks `request` against its subject, `vigil.store.append.<user>.<category>`: the stream
/// must be of that category (`forbidden` otherwise). Records the user in every event's
/// `meta.appended_by`, replacing what the writer sent.
fn attribute(mut request: Append, subject: &str) -> Result<Append, StoreError> {
    let Some((user, category)) = subjects::parse_append_subject(subject) else {
        return Err(StoreError::invalid(format!(
            "append on {subject:?}: send appends to vigil.store.append.<user>.<category>"
        )));
    };
    let stream_category = request.stream.category().as_str();
    if stream_category != category {
        return Err(StoreError::forbidden(format!(
            "{subject} appends only to `{category}` streams, not to {}; each NATS user appends only to the categories it owns",
            request.stream
        )));
    }
    for event in &mut request.events {
        event.meta.appended_by = Some(user.to_owned());
    }
    Ok(request)
}

fn outcome_label(reply: &AppendReply) -> &'static str {
    match reply {
        AppendReply::Ok(_) => "ok",
        AppendReply::Error(e) => outcome_label_of(e),
    }
}

pub(crate) fn outcome_label_of(e: &StoreError) -> &'static str {
    match e.code {
        events::ErrorCode::WrongExpectedVersion => "wrong_expected_version",
        events::ErrorCode::Invalid => "invalid",
        events::ErrorCode::IdReused => "id_reused",
        events::ErrorCode::Unavailable => "unavailable",
        events::ErrorCode::Forbidden => "forbidden",
        events::ErrorCode::AfterMissing => "after_missing",
    }
}

pub(crate) async fn handle_read(
    client: &Client,
    log: &Arc<LiveLog>,
    damage: &mpsc::UnboundedSender<String>,
    msg: Message,
) {
    let Some(reply_to) = msg.reply.clone() else {
        return;
    };
    let req: ReadRequest =
        match codec::decode_json(&msg.payload, "the read request", MAX_READ_REQUEST_BYTES) {
            Ok(r) => r,
            Err(e) => return respond_error(client, reply_to, e.into()).await,
        };
    let log = log.clone();
    let limit = req.limit.clamp(1, MAX_READ_LIMIT) as usize;
    send_page(client, reply_to, damage, "head", move || {
        let log = log.get()?;
        let events = log.read_raw(req.from, limit, MAX_REPLY_BYTES)?;
        Ok((events, log.head()))
    })
    .await;
}

/// Runs a log read off the async workers and answers with the page or a typed error.
async fn send_page<F>(
    client: &Client,
    reply_to: async_nats::Subject,
    damage: &mpsc::UnboundedSender<String>,
    key: &'static str,
    read: F,
) where
    F: FnOnce() -> Result<(Vec<StoredEvent>, u64), LogError> + Send + 'static,
{
    match tokio::task::spawn_blocking(read).await {
        Ok(Ok((events, n))) => {
            let body = page_json(&events, key, n);
            let _ = client.publish(reply_to, body.into()).await;
        }
        Ok(Err(e)) => {
            if let LogError::Damaged(what) = &e {
                let _ = damage.send(what.clone());
            }
            respond_error(client, reply_to, read_failed(&e)).await
        }
        Err(e) => {
            let error = StoreError::unavailable(format!("read task failed: {e}"));
            respond_error(client, reply_to, error).await
        }
    }
}

pub(crate) async fn handle_stream(
    client: &Client,
    log: &Arc<LiveLog>,
    damage: &mpsc::UnboundedSender<String>,
    msg: Message,
) {
    let Some(reply_to) = msg.reply.clone() else {
        return;
    };
    let req: StreamReadRequest = match codec::decode_json(
        &msg.payload,
        "the stream read request",
        MAX_READ_REQUEST_BYTES,
    ) {
        Ok(r) => r,
        Err(e) => return respond_error(client, reply_to, e.into()).await,
    };
    let log = log.clone();
    let limit = req.limit.clamp(1, MAX_READ_LIMIT) as usize;
    send_page(client, reply_to, damage, "version", move || {
        log.get()?
            .read_stream_raw(&req.stream, req.from_version, limit, MAX_REPLY_BYTES)
    })
    .await;
}

fn read_failed(e: &LogError) -> StoreError {
    if !matches!(e, LogError::Reopening) {
        tracing::error!(error = %e, "read failed");
    }
    StoreError::unavailable(format!("the store could not read the log: {e}"))
}

/// `{"events":[<stored json>,…],"<key>":n}` built from the stored bytes as they are.
fn page_json(events: &[StoredEvent], key: &str, n: u64) -> Vec<u8> {
    let mut body = Vec::with_capacity(48);
    body.extend_from_slice(b"{\"events\":");
    events::store_api::push_json_array(&mut body, events);
    body.extend_from_slice(format!(",\"{key}\":{n}}}").as_bytes());
    body
}

async fn respond_error(client: &Client, reply_to: async_nats::Subject, error: StoreError) {
    let _ = client
        .publish(
            reply_to,
            codec::encode(&serde_json::json!({ "error": error })).into(),
        )
        .await;
}

async fn respond(client: &Client, reply_to: async_nats::Subject, reply: &AppendReply) {
    if let Err(e) = client.publish(reply_to, codec::encode(reply).into()).await {
        // The client will time out and retry with the same ids; nothing is lost.
        tracing::warn!(error = %e, "could not send an append reply");
    }
}

/// The preparing half of the writer: when the committing thread asks for its next round
/// (`wants`: it has written the last one), the groups of everything queued by then, at least
/// one append (it waits for one), up to `batch` groups of up to `max_group_events` events,
/// each prepared ([`LiveLog::prepare_group`]).
///
/// Gathering late is the point: a preparing thread that ran ahead of the write cut the
/// appends into a group per moment it could run (at 16 in flight, groups of ~2 events on a
/// replica's leader, each a journal message and an fsync); gathered when the write is free,
/// one group takes everything that arrived during the last write. Preparing costs
/// microseconds per event; the write, an fsync or a journal round trip, milliseconds
/// (docs/BENCHMARKS.md, "rounds gathered when the journal answers").
pub(crate) fn prepare_loop(
    log: &LiveLog,
    mut jobs: mpsc::Receiver<Job>,
    (wants, rounds): (
        &std::sync::mpsc::Receiver<()>,
        &std::sync::mpsc::SyncSender<Vec<Stage>>,
    ),
    max_group_events: usize,
    batch: usize,
) {
    while wants.recv().is_ok() {
        let Some(mut next) = jobs.blocking_recv() else {
            return;
        };
        let mut round = Vec::new();
        loop {
            round.push(prepare_next(log, next, &mut jobs, max_group_events));
            if round.len() >= batch {
                break;
            }
            match jobs.try_recv() {
                Ok(job) => next = job,
                Err(_) => break,
            }
        }
        if rounds.send(round).is_err() {
            tracing::error!("the committing thread stopped; the store takes no more writes");
            return;
        }
    }
}

/// One group: the job given and what else is queued in `jobs` now, up to
/// `max_group_events` events, prepared ([`LiveLog::prepare_group`]).
fn prepare_next(
    log: &LiveLog,
    (req, subject): Job,
    jobs: &mut mpsc::Receiver<Job>,
    max_group_events: usize,
) -> Stage {
    let mut n = req.events.len();
    let mut group = vec![Pending::new(req)];
    let mut reply_to = vec![subject];
    while n < max_group_events {
        match jobs.try_recv() {
            Ok((req, subject)) => {
                n += req.events.len();
                group.push(Pending::new(req));
                reply_to.push(subject);
            }
            Err(_) => break,
        }
    }
    let started = Instant::now();
    let prepared = log.prepare_group(&mut group);
    Stage {
        group,
        reply_to,
        prepared,
        prepare: started.elapsed(),
    }
}

/// The committing half of the writer: asks for the next group once it has written the last,
/// writes it, then hands its answers and events to the outbox.
fn commit_loop(
    log: &LiveLog,
    (wants, stages): (
        &std::sync::mpsc::SyncSender<()>,
        &std::sync::mpsc::Receiver<Vec<Stage>>,
    ),
    outbox: &mpsc::Sender<Outbox>,
) {
    while wants.send(()).is_ok()
        && let Ok(round) = stages.recv()
    {
        for stage in round {
            commit_one(log, stage, outbox);
        }
    }
}

/// Writes one prepared group and hands its answers and events to the outbox.
fn commit_one(log: &LiveLog, stage: Stage, outbox: &mpsc::Sender<Outbox>) {
    let Stage {
        mut group,
        reply_to,
        prepared,
        prepare,
    } = stage;
    let started = Instant::now();
    let committed = prepared.map(|prepared| log.commit_prepared(&mut group, prepared));
    let took = prepare + started.elapsed();
    let (replies, committed) = match committed {
        Ok(committed) => {
            if !committed.events.is_empty() {
                metrics::histogram!("vigil_store_commit_seconds").record(took.as_secs_f64());
                metrics::histogram!("vigil_store_group_events")
                    .record(committed.events.len() as f64);
                metrics::counter!("vigil_store_events_appended_total")
                    .increment(committed.events.len() as u64);
                metrics::gauge!("vigil_store_head_position").set(log.head() as f64);
                if took > Duration::from_millis(500) {
                    tracing::warn!(
                        ms = took.as_millis() as u64,
                        events = committed.events.len(),
                        "slow commit"
                    );
                }
            }
            (group_replies(group, reply_to), committed)
        }
        Err(e) => {
            // Reading an index or encoding failed before anything was written: refuse this
            // group; the log on disk is unchanged.
            tracing::error!(error = %e, "group refused before commit");
            let error = StoreError::unavailable(format!(
                "the store could not check this append against the log: {e}"
            ));
            (refuse_all(reply_to, &error), Committed { events: vec![] })
        }
    };
    if outbox.blocking_send(Outbox { replies, committed }).is_err() {
        tracing::error!("the outbox stopped; answers of this group are lost, clients will retry");
    }
}

/// Each append's answer from its outcome.
pub(crate) fn group_replies(
    group: Vec<Pending>,
    reply_to: Vec<async_nats::Subject>,
) -> Vec<(async_nats::Subject, AppendReply)> {
    group
        .into_iter()
        .zip(reply_to)
        .map(|(p, subject)| {
            let reply = match p.outcome {
                Some(Ok(ok)) => AppendReply::Ok(ok),
                Some(Err(e)) => AppendReply::Error(e),
                None => AppendReply::Error(StoreError::unavailable(
                    "the append was not decided; retry with the same event ids",
                )),
            };
            (subject, reply)
        })
        .collect()
}

/// The same refusal for every append of a group.
pub(crate) fn refuse_all(
    reply_to: Vec<async_nats::Subject>,
    error: &StoreError,
) -> Vec<(async_nats::Subject, AppendReply)> {
    reply_to
        .into_iter()
        .map(|s| (s, AppendReply::Error(error.clone())))
        .collect()
}

/// Room left in a message for its headers when a group is cut to the server's payload limit.
const HEADER_ROOM: usize = 4 * 1024;

/// Largest body of one message carrying part of a group (journal or live feed): the server's
/// `max_payload` less room for the headers, at least 64 KiB.
pub(crate) fn max_message_bytes(client: &Client) -> usize {
    client
        .server_info()
        .max_payload
        .saturating_sub(HEADER_ROOM)
        .max(64 * 1024)
}

/// Sends each group's answers, then publishes its events on the live feed, one message per
/// group (a few for a group over the server's payload limit, see [`crate::feed`]). One task
/// for all, so an append costs no task or channel of its own.
pub(crate) async fn outbox_loop(client: Client, mut rx: mpsc::Receiver<Outbox>) {
    while let Some(Outbox { replies, committed }) = rx.recv().await {
        // Counted per group, not per answer: with a recorder installed each increment is a
        // look-up of the labelled counter.
        let mut outcomes: Vec<(&'static str, u64)> = Vec::new();
        for (subject, reply) in replies {
            let label = outcome_label(&reply);
            match outcomes.iter_mut().find(|(l, _)| *l == label) {
                Some((_, n)) => *n += 1,
                None => outcomes.push((label, 1)),
            }
            respond(&client, subject, &reply).await;
        }
        for (label, n) in outcomes {
            metrics::counter!("vigil_store_appends_total", "outcome" => label).increment(n);
        }
        if committed.events.is_empty() {
            continue;
        }
        for message in crate::feed::messages(&committed.events, max_message_bytes(&client)) {
            if let Err(e) = client
                .publish_with_headers(subjects::EVENTS, message.headers, message.payload)
                .await
            {
                // Consumers fill gaps from the log; count it so an operator can see it.
                metrics::counter!("vigil_store_publish_failed_total").increment(1);
                tracing::debug!(error = %e, "publish failed");
            }
        }
    }
}
