//! The leader's term: serving appends and reads with the journal before the local commit.
//!
//! The write pipeline is the single-node one ([`crate::server`]: a preparing thread that
//! gathers groups when the committing thread asks for them, an outbox task sending answers
//! then the group on the live feed), with the committing split in two: one thread publishes the prepared groups to the journal, and
//! only after the journal's ack does another commit each to fjall, with its journal sequence
//! in the same batch, in order, while the first publishes the next round (up to
//! [`ROUNDS_AHEAD`] rounds wait for the local commit). One publish is in flight at a time,
//! expecting the sequence the last one ended at (the expected last sequence is a number, not
//! whose message holds it, so a second publish in flight could land on a rival's message:
//! docs/ARCHITECTURE.md); what is ready when the journal answers goes together in the next
//! round trip: the preparing thread gathers the next round only then, from every append
//! queued, as up to [`StoreConfig::journal_batch_groups`] groups ([`prepare_loop`]), sent as
//! one atomic batch (nats-server 2.12+), whose first message carries the expected last
//! sequence, so the journal takes all of them right after it or none. A failed publish refuses
//! those groups and every group prepared after them (they were judged on top of them) as
//! `unavailable` and ends the term; what was prepared is forgotten
//! ([`crate::Log::reset_ahead`]) and the replica follows the journal again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use events::store_api::{AppendReply, StoreError};
use events::subjects;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Shared, entry};
use crate::log::live::{LiveLog, PreparedGroup};
use crate::log::{Committed, Pending};
use crate::server::{
    Job, NATS_GRACE, Outbox, Requests, Stage, StoreConfig, group_replies, handle_append,
    handle_read, handle_stream, max_message_bytes, outbox_loop, prepare_loop, refuse_all,
};

/// How long a journal publish (one message, or one atomic batch) may take before the leader
/// gives up its term.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers of JetStream's atomic batch publish (nats-server 2.12+).
const BATCH_ID: &str = "Nats-Batch-Id";
const BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
const BATCH_COMMIT: &str = "Nats-Batch-Commit";
/// JetStream's error code for a wrong `Nats-Expected-Last-Sequence`.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// Most messages in one atomic batch (nats-server's default limit is 1,000).
const MAX_BATCH_MESSAGES: usize = 256;

/// Publishes prepared groups to the journal from the committing thread.
struct Journal {
    js: jetstream::Context,
    client: Client,
    runtime: tokio::runtime::Handle,
    /// The journal sequence the next publish expects to follow.
    last: u64,
    max_bytes: usize,
    /// Whether the journal takes atomic batches (`allow_atomic`).
    atomic: bool,
    /// Names this term's batches (with a counter): a batch id is unique per writer.
    term: uuid::Uuid,
    batches: u64,
}

/// The commit's answer to an atomic batch.
#[derive(serde::Deserialize)]
struct BatchAck {
    seq: Option<u64>,
    count: Option<u64>,
    error: Option<BatchError>,
}

#[derive(serde::Deserialize)]
struct BatchError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

impl Journal {
    /// Publishes the events of `groups`, prepared in this order, in one round trip: one
    /// message as before, several as one atomic batch whose first message expects the last
    /// journal sequence, so the journal takes all of them right after that sequence or none.
    /// Returns, per group, the journal sequence of its last message (`None` when it had
    /// nothing to publish), or why it failed.
    fn publish(&mut self, groups: &mut [&mut PreparedGroup]) -> Result<Vec<Option<u64>>, String> {
        let mut entries = Vec::new();
        let mut per_group = Vec::with_capacity(groups.len());
        for group in groups.iter_mut() {
            let before = entries.len();
            if let Some((_, prepared)) = group.parts() {
                entries.extend(entry::split(
                    prepared.events(),
                    prepared.hashes(),
                    self.max_bytes,
                ));
            }
            per_group.push(entries.len() - before);
        }
        let first = self.last;
        if entries.len() > 1 && self.atomic {
            for chunk in entries.chunks(MAX_BATCH_MESSAGES) {
                self.last = self.publish_batch(chunk)?;
            }
        } else {
            for e in &entries {
                self.last = self.publish_one(e)?;
            }
        }
        let mut seq = first;
        Ok(per_group
            .into_iter()
            .map(|n| {
                seq += n as u64;
                (n > 0).then_some(seq)
            })
            .collect())
    }

    /// One message after `self.last`; its journal sequence.
    fn publish_one(&self, e: &entry::Entry) -> Result<u64, String> {
        let seq = self.last;
        let message = PublishMessage::build()
            .payload(e.payload())
            .headers(e.headers())
            .expected_last_sequence(seq)
            .expected_last_subject_sequence(seq);
        let js = self.js.clone();
        let acked = self.runtime.block_on(async move {
            tokio::time::timeout(PUBLISH_TIMEOUT, async move {
                js.send_publish(subjects::STORE_JOURNAL, message)
                    .await?
                    .await
            })
            .await
        });
        match acked {
            Ok(Ok(ack)) if ack.sequence == seq + 1 => Ok(ack.sequence),
            Ok(Ok(ack)) => Err(format!(
                "the journal put the group at sequence {} where {} was expected",
                ack.sequence,
                seq + 1
            )),
            Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => Err(format!(
                "another replica extended the journal past sequence {seq}: this one is no longer the leader"
            )),
            Ok(Err(e)) => Err(format!("publishing to the journal failed: {e}")),
            Err(_) => Err(format!(
                "the journal did not acknowledge within {} s",
                PUBLISH_TIMEOUT.as_secs()
            )),
        }
    }

    /// `entries` as one atomic batch after `self.last`: the sequence of its last message.
    fn publish_batch(&mut self, entries: &[entry::Entry]) -> Result<u64, String> {
        let seq = self.last;
        self.batches += 1;
        let id = format!("{}-{}", self.term.simple(), self.batches);
        let client = self.client.clone();
        let answer = self.runtime.block_on(async move {
            tokio::time::timeout(PUBLISH_TIMEOUT, async move {
                let last = entries.len();
                for (i, e) in entries.iter().enumerate() {
                    let mut h = e.headers();
                    h.insert(BATCH_ID, id.as_str());
                    h.insert(BATCH_SEQUENCE, (i + 1).to_string().as_str());
                    if i == 0 {
                        let s = seq.to_string();
                        h.insert(async_nats::header::NATS_EXPECTED_LAST_SEQUENCE, s.as_str());
                        h.insert(
                            async_nats::header::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
                            s.as_str(),
                        );
                    }
                    if i + 1 < last {
                        client
                            .publish_with_headers(subjects::STORE_JOURNAL, h, e.payload())
                            .await
                            .map_err(|e| e.to_string())?;
                    } else {
                        h.insert(BATCH_COMMIT, "1");
                        return client
                            .request_with_headers(subjects::STORE_JOURNAL, h, e.payload())
                            .await
                            .map_err(|e| e.to_string());
                    }
                }
                Err("an empty batch".to_string())
            })
            .await
        });
        let n = entries.len() as u64;
        let reply = match answer {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(format!("publishing to the journal failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "the journal did not acknowledge within {} s",
                    PUBLISH_TIMEOUT.as_secs()
                ));
            }
        };
        match serde_json::from_slice::<BatchAck>(&reply.payload) {
            Ok(BatchAck { error: Some(e), .. }) if e.err_code == WRONG_LAST_SEQUENCE => {
                Err(format!(
                    "another replica extended the journal past sequence {seq}: this one is no longer the leader"
                ))
            }
            Ok(BatchAck { error: Some(e), .. }) => Err(format!(
                "the journal refused the batch: {} (error {})",
                e.description, e.err_code
            )),
            Ok(BatchAck {
                seq: Some(at),
                count,
                error: None,
            }) if at == seq + n && count.is_none_or(|c| c == n) => Ok(at),
            Ok(BatchAck { seq: at, .. }) => Err(format!(
                "the journal put the batch's last message at sequence {at:?} where {} was expected",
                seq + n
            )),
            Err(e) => Err(format!(
                "the journal's answer to the batch is unreadable: {e}"
            )),
        }
    }
}

/// How a term ended badly enough to stop the replica.
type Fatal = Arc<std::sync::Mutex<Option<String>>>;

/// Serves as leader until the lease is lost, a publish fails or `shutdown` fires.
pub(super) async fn lead(
    client: &Client,
    js: &jetstream::Context,
    config: &StoreConfig,
    shared: &Arc<Shared>,
    lost: &CancellationToken,
    shutdown: &CancellationToken,
    news: &mut async_nats::Subscriber,
) -> anyhow::Result<()> {
    let log = shared.log.clone();
    log.get()?.reset_ahead()?;
    shared.leading.store(true, Ordering::Release);
    *shared
        .leader_since
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .ok();
    shared.publish_metrics();
    let step_down = CancellationToken::new();
    let fatal: Fatal = Arc::default();

    let (job_tx, job_rx) = mpsc::channel::<Job>(config.queue_capacity);
    let (out_tx, out_rx) = mpsc::channel::<Outbox>(1024);
    // The preparing thread makes each round's groups (up to `batch`) when the committing
    // one asks for them, which is when the journal answered the last round.
    let batch = config.journal_batch_groups.max(1);
    let (wants_tx, wants_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let (stage_tx, stage_rx) = std::sync::mpsc::sync_channel::<Vec<Stage>>(1);
    let journal = Journal {
        js: js.clone(),
        client: client.clone(),
        runtime: tokio::runtime::Handle::current(),
        last: shared.applied.load(Ordering::Acquire),
        max_bytes: max_message_bytes(client),
        atomic: shared.atomic_journal.load(Ordering::Acquire),
        term: uuid::Uuid::new_v4(),
        batches: 0,
    };
    let (rounds_tx, rounds_rx) = std::sync::mpsc::sync_channel::<Round>(ROUNDS_AHEAD);
    let local = {
        let (shared, step_down, fatal) = (shared.clone(), step_down.clone(), fatal.clone());
        std::thread::Builder::new()
            .name("vigil-store-local".into())
            .spawn(move || local_loop(&shared, &rounds_rx, &out_tx, &step_down, &fatal))?
    };
    let committer = {
        let step_down = step_down.clone();
        std::thread::Builder::new()
            .name("vigil-store-commit".into())
            .spawn(move || {
                commit_loop(
                    journal,
                    (&wants_tx, &stage_rx),
                    (rounds_tx, local),
                    &step_down,
                )
            })?
    };
    let writer = {
        let log = log.clone();
        let max = config.max_group_events;
        std::thread::Builder::new()
            .name("vigil-store-writer".into())
            .spawn(move || prepare_loop(&log, job_rx, (&wants_rx, &stage_tx), max, batch))?
    };
    let outbox = tokio::spawn(outbox_loop(client.clone(), out_rx));

    let (damage_tx, mut damage_rx) = mpsc::unbounded_channel::<String>();
    let Requests {
        mut appends,
        mut reads,
        mut streams,
    } = Requests::subscribe(client).await?;
    let _ = tokio::time::timeout(NATS_GRACE, client.flush()).await;
    tracing::info!(node = %shared.node, head = log.head(), journal_seq = shared.applied.load(Ordering::Acquire), "leading: serving {}", subjects::STORE_ALL);

    let tasks = TaskTracker::new();
    let mut damaged = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = lost.cancelled() => break,
            _ = step_down.cancelled() => break,
            Some(what) = damage_rx.recv() => {
                log.stop_writes(crate::log::Failure::Damaged(what.clone()));
                damaged = Some(what);
                break;
            }
            Some(msg) = appends.next() => handle_append(client, &config.limits, &job_tx, msg).await,
            Some(msg) = reads.next() => {
                let (client, log, damage) = (client.clone(), log.clone(), damage_tx.clone());
                tasks.spawn(async move { handle_read(&client, &log, &damage, msg).await });
            }
            Some(msg) = streams.next() => {
                let (client, log, damage) = (client.clone(), log.clone(), damage_tx.clone());
                tasks.spawn(async move { handle_stream(&client, &log, &damage, msg).await });
            }
            // Its own journal messages: nothing to do but keep the buffer empty.
            Some(_) = news.next() => {}
            else => break,
        }
    }
    let started = Instant::now();
    // No more appends reach the writer; whatever it holds is answered (committed if the
    // journal takes it, `unavailable` once the term is over).
    if lost.is_cancelled() {
        step_down.cancel();
    }
    let requests = Requests {
        appends,
        reads,
        streams,
    };
    requests
        .stop(client, job_tx, (writer, committer), tasks, outbox)
        .await;
    shared.leading.store(false, Ordering::Release);
    *shared
        .leader_since
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = None;
    shared.publish_metrics();
    if let Some(what) = damaged {
        anyhow::bail!("the event log is damaged (found after start): {what}");
    }
    if let Some(what) = fatal.lock().unwrap_or_else(|p| p.into_inner()).take() {
        anyhow::bail!(what);
    }
    log.get()?.reset_ahead()?;
    tracing::warn!(
        node = %shared.node,
        ms = started.elapsed().as_millis() as u64,
        "no longer leading: following the journal"
    );
    Ok(())
}

/// A group's answers, each to its reply subject.
type Replies = Vec<(async_nats::Subject, AppendReply)>;

/// A group taken by the committing thread: refused whole, or prepared and on its way to the
/// journal.
enum Taken {
    Refused(Replies),
    Ready {
        group: Vec<Pending>,
        reply_to: Vec<async_nats::Subject>,
        prepared: PreparedGroup,
        prepare: Duration,
    },
}

/// How many journaled rounds may wait for the local commit while the next is published.
const ROUNDS_AHEAD: usize = 2;

/// One round trip's groups on their way from the journal to this replica's log.
struct Round {
    taken: Vec<Taken>,
    /// Per ready group, the journal sequence of its last message (`None`: nothing to
    /// publish); or, when the round was not journaled, the refusal for its groups.
    journaled: Result<Vec<Option<u64>>, StoreError>,
    started: Instant,
}

/// The committing half of the leader's writer, itself two threads in a pipeline: this one
/// asks the preparing thread for a round, publishes it to the journal in one round trip and
/// hands it to `local` ([`local_loop`]), which commits the journaled groups to fjall group by
/// group, then hands them to the outbox, in order. The next round trip starts as soon as the
/// journal answered the last one, while `local` commits that one: the journal is the record,
/// a group it holds is the centre's whether or not this replica's own commit of it is done,
/// and an append is answered only after both. So a round costs the longer of the two, not
/// their sum.
fn commit_loop(
    mut journal: Journal,
    (wants, stages): (
        &std::sync::mpsc::SyncSender<()>,
        &std::sync::mpsc::Receiver<Vec<Stage>>,
    ),
    (rounds_tx, local): (
        std::sync::mpsc::SyncSender<Round>,
        std::thread::JoinHandle<()>,
    ),
    step_down: &CancellationToken,
) {
    let mut refusing: Option<StoreError> = None;
    loop {
        // The next round is gathered only now, from everything queued meanwhile.
        if wants.send(()).is_err() {
            break;
        }
        let Ok(stages_now) = stages.recv() else {
            break;
        };
        let started = Instant::now();
        // The local thread cancels `step_down` when a commit fails: what comes after is
        // not published.
        if refusing.is_none() && step_down.is_cancelled() {
            refusing = Some(StoreError::unavailable(
                "this store replica stopped leading before the append was journaled; retry with the same event ids",
            ));
        }
        let mut taken: Vec<Taken> = stages_now
            .into_iter()
            .map(|stage| take(stage, refusing.as_ref()))
            .collect();
        let mut ready: Vec<&mut PreparedGroup> = taken
            .iter_mut()
            .filter_map(|t| match t {
                Taken::Ready { prepared, .. } => Some(prepared),
                Taken::Refused(_) => None,
            })
            .collect();
        let journaled = if ready.is_empty() {
            Ok(vec![])
        } else {
            metrics::histogram!("vigil_store_journal_batch_groups").record(ready.len() as f64);
            let round = Instant::now();
            let published = journal.publish(&mut ready);
            metrics::histogram!("vigil_store_journal_round_seconds")
                .record(round.elapsed().as_secs_f64());
            published.map_err(|why| {
                tracing::warn!(%why, "a group was not journaled: stepping down");
                step_down.cancel();
                let refusal = StoreError::unavailable(format!(
                    "the append was not acknowledged ({why}); retry with the same event ids"
                ));
                refusing = Some(refusal.clone());
                refusal
            })
        };
        let round = Round {
            taken,
            journaled,
            started,
        };
        if rounds_tx.send(round).is_err() {
            tracing::error!("the local commit thread stopped; this term's answers are lost");
            break;
        }
    }
    drop(rounds_tx);
    if local.join().is_err() {
        tracing::error!("the local commit thread panicked");
    }
}

/// The local half of [`commit_loop`]: commits each journaled group to this replica's log in
/// the journal's order and sends its answers and events to the outbox; refuses the groups
/// of a round that was not journaled, and every group after one it could not commit.
fn local_loop(
    shared: &Shared,
    rounds: &std::sync::mpsc::Receiver<Round>,
    outbox: &mpsc::Sender<Outbox>,
    step_down: &CancellationToken,
    fatal: &Fatal,
) {
    let mut refusing: Option<StoreError> = None;
    while let Ok(Round {
        taken,
        journaled,
        started,
    }) = rounds.recv()
    {
        let mut seqs = match journaled {
            Ok(seqs) => seqs.into_iter(),
            Err(refusal) => {
                refusing.get_or_insert(refusal);
                vec![].into_iter()
            }
        };
        for t in taken {
            let (replies, committed) = match t {
                Taken::Refused(replies) => (replies, empty()),
                Taken::Ready {
                    group,
                    reply_to,
                    prepared,
                    prepare,
                } => match (seqs.next(), refusing.clone()) {
                    (Some(seq), None) => {
                        commit_journaled(shared, group, reply_to, prepared, seq, fatal, step_down)
                            .map(|(replies, committed)| {
                                if seq.is_some() {
                                    let took = prepare + started.elapsed();
                                    metrics::histogram!("vigil_store_commit_seconds")
                                        .record(took.as_secs_f64());
                                }
                                (replies, committed)
                            })
                            .unwrap_or_else(|(replies, refusal)| {
                                refusing = Some(refusal);
                                (replies, empty())
                            })
                    }
                    // Not journaled (the round failed), or after a group this replica could
                    // not commit: journaled or not, it is not acknowledged here.
                    (_, refusal) => {
                        let refusal = refusal.unwrap_or_else(|| {
                            StoreError::unavailable(
                                "the append was not acknowledged; retry with the same event ids",
                            )
                        });
                        (refuse_all(reply_to, &refusal), empty())
                    }
                },
            };
            if outbox.blocking_send(Outbox { replies, committed }).is_err() {
                tracing::error!(
                    "the outbox stopped; answers of this group are lost, clients will retry"
                );
            }
        }
    }
}

/// A stage as the committing thread takes it.
fn take(stage: Stage, refusing: Option<&StoreError>) -> Taken {
    let Stage {
        group,
        reply_to,
        prepared,
        prepare,
    } = stage;
    match (prepared, refusing) {
        (_, Some(refusal)) => Taken::Refused(refuse_all(reply_to, refusal)),
        (Err(e), None) => {
            tracing::error!(error = %e, "group refused before commit");
            let error = StoreError::unavailable(format!(
                "the store could not check this append against the log: {e}"
            ));
            Taken::Refused(refuse_all(reply_to, &error))
        }
        (Ok(prepared), None) => Taken::Ready {
            group,
            reply_to,
            prepared,
            prepare,
        },
    }
}

/// Commits a group the journal acknowledged (at `seq`, `None` if it had no events) to this
/// replica's log; its answers and events, or, when this replica could not commit it (the
/// journal has it, the other replicas serve it), the answers refusing it and the refusal
/// for every group after it.
fn commit_journaled(
    shared: &Shared,
    mut group: Vec<Pending>,
    reply_to: Vec<async_nats::Subject>,
    mut prepared: PreparedGroup,
    seq: Option<u64>,
    fatal: &Fatal,
    step_down: &CancellationToken,
) -> Result<(Replies, Committed), (Replies, StoreError)> {
    let log: &LiveLog = &shared.log;
    let started = Instant::now();
    let recorded = match (seq, prepared.parts()) {
        (Some(seq), Some((l, p))) => p.record_journal_seq(l, seq),
        _ => Ok(()),
    };
    let committed = match recorded {
        Ok(()) => log.commit_prepared(&mut group, prepared),
        Err(e) => {
            log.stop_writes(crate::log::Failure::Failed(e.to_string()));
            log.commit_prepared(&mut group, prepared)
        }
    };
    if let Some(seq) = seq {
        if committed.events.is_empty() {
            // The journal has the group but this disk does not: the other replicas serve
            // it; this one must not go on.
            let what = format!(
                "journal message {seq} was acknowledged but this replica's own commit failed ({}); it stops",
                log.get()
                    .ok()
                    .and_then(|l| l.failure())
                    .map(|f| format!("{f:?}"))
                    .unwrap_or_else(|| "unknown".into())
            );
            tracing::error!(%what);
            *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
            step_down.cancel();
            let refusal = StoreError::unavailable(
                "this store replica stopped; retry with the same event ids",
            );
            return Err((refuse_all(reply_to, &refusal), refusal));
        }
        metrics::histogram!("vigil_store_local_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        shared.applied.store(seq, Ordering::Release);
        shared.publish_metrics();
        metrics::histogram!("vigil_store_group_events").record(committed.events.len() as f64);
        metrics::counter!("vigil_store_events_appended_total")
            .increment(committed.events.len() as u64);
    }
    Ok((group_replies(group, reply_to), committed))
}

fn empty() -> Committed {
    Committed { events: vec![] }
}
