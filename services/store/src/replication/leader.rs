//! The leader's term: serving appends and reads with the journal before the local commit.
//!
//! The write pipeline is the single-node one ([`crate::server`]: a preparing thread one
//! group ahead of a committing thread, an outbox task sending answers then the group on the
//! live feed), with one step added in the committing thread: each prepared group is published to the
//! journal (expected last sequence = the last applied) and only after the journal's ack is it
//! committed to fjall, with the journal sequence in the same batch. A failed publish refuses
//! that group and every group prepared after it (they were judged on top of it) as
//! `unavailable` and ends the term; what was prepared is forgotten
//! ([`crate::Log::reset_ahead`]) and the replica follows the journal again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::Client;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage};
use events::store_api::StoreError;
use events::subjects;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Shared, entry};
use crate::log::Committed;
use crate::log::live::{LiveLog, PreparedGroup};
use crate::server::{
    Job, NATS_GRACE, Outbox, Requests, Stage, StoreConfig, group_replies, handle_append,
    handle_read, handle_stream, max_message_bytes, outbox_loop, prepare_loop, refuse_all,
};

/// How long a journal publish may take before the leader gives up its term.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Publishes prepared groups to the journal from the committing thread.
struct Journal {
    js: jetstream::Context,
    runtime: tokio::runtime::Handle,
    /// The journal sequence the next publish expects to follow.
    last: u64,
    max_bytes: usize,
}

impl Journal {
    /// Publishes the group's events; the journal sequence of its last message, `None` when
    /// there is nothing to publish, or why it failed.
    fn publish(&mut self, group: &mut PreparedGroup) -> Result<Option<u64>, String> {
        let Some((_, prepared)) = group.parts() else {
            return Ok(None);
        };
        if prepared.events().is_empty() {
            return Ok(None);
        }
        let mut seq = self.last;
        for e in entry::split(prepared.events(), prepared.hashes(), self.max_bytes) {
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
                Ok(Ok(ack)) if ack.sequence == seq + 1 => seq = ack.sequence,
                Ok(Ok(ack)) => {
                    return Err(format!(
                        "the journal put the group at sequence {} where {} was expected",
                        ack.sequence,
                        seq + 1
                    ));
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(format!(
                        "another replica extended the journal past sequence {seq}: this one is no longer the leader"
                    ));
                }
                Ok(Err(e)) => return Err(format!("publishing to the journal failed: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the journal did not acknowledge within {} s",
                        PUBLISH_TIMEOUT.as_secs()
                    ));
                }
            }
        }
        self.last = seq;
        Ok(Some(seq))
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
    let (stage_tx, stage_rx) = std::sync::mpsc::sync_channel::<Stage>(0);
    let journal = Journal {
        js: js.clone(),
        runtime: tokio::runtime::Handle::current(),
        last: shared.applied.load(Ordering::Acquire),
        max_bytes: max_message_bytes(client),
    };
    let committer = {
        let (shared, step_down, fatal) = (shared.clone(), step_down.clone(), fatal.clone());
        std::thread::Builder::new()
            .name("vigil-store-commit".into())
            .spawn(move || commit_loop(&shared, journal, &stage_rx, &out_tx, &step_down, &fatal))?
    };
    let writer = {
        let log = log.clone();
        let max = config.max_group_events;
        std::thread::Builder::new()
            .name("vigil-store-writer".into())
            .spawn(move || prepare_loop(&log, job_rx, &stage_tx, max))?
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

/// The committing half of the leader's writer: journal first, then fjall, then the outbox.
fn commit_loop(
    shared: &Shared,
    mut journal: Journal,
    stages: &std::sync::mpsc::Receiver<Stage>,
    outbox: &mpsc::Sender<Outbox>,
    step_down: &CancellationToken,
    fatal: &Fatal,
) {
    let log: &LiveLog = &shared.log;
    let mut refusing: Option<StoreError> = None;
    while let Ok(Stage {
        mut group,
        reply_to,
        prepared,
        prepare,
    }) = stages.recv()
    {
        let started = Instant::now();
        if refusing.is_none() && step_down.is_cancelled() {
            refusing = Some(StoreError::unavailable(
                "this store replica stopped leading before the append was journaled; retry with the same event ids",
            ));
        }
        let (replies, committed) = match (prepared, refusing.clone()) {
            (_, Some(refusal)) => (refuse_all(reply_to, &refusal), empty()),
            (Err(e), None) => {
                tracing::error!(error = %e, "group refused before commit");
                let error = StoreError::unavailable(format!(
                    "the store could not check this append against the log: {e}"
                ));
                (refuse_all(reply_to, &error), empty())
            }
            (Ok(mut prepared), None) => match journal.publish(&mut prepared) {
                Err(why) => {
                    tracing::warn!(%why, "a group was not journaled: stepping down");
                    let refusal = StoreError::unavailable(format!(
                        "the append was not acknowledged ({why}); retry with the same event ids"
                    ));
                    step_down.cancel();
                    let replies = refuse_all(reply_to, &refusal);
                    refusing = Some(refusal);
                    (replies, empty())
                }
                Ok(seq) => {
                    let had_events = seq.is_some();
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
                    if had_events && committed.events.is_empty() {
                        // The journal has the group but this disk does not: the other
                        // replicas serve it; this one must not go on.
                        let what = format!(
                            "journal message {} was acknowledged but this replica's own commit failed ({}); it stops",
                            journal.last,
                            log.get()
                                .ok()
                                .and_then(|l| l.failure())
                                .map(|f| format!("{f:?}"))
                                .unwrap_or_else(|| "unknown".into())
                        );
                        tracing::error!(%what);
                        *fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
                        step_down.cancel();
                        refusing = Some(StoreError::unavailable(
                            "this store replica stopped; retry with the same event ids",
                        ));
                    } else if let Some(seq) = seq {
                        shared.applied.store(seq, Ordering::Release);
                        shared.publish_metrics();
                        let took = prepare + started.elapsed();
                        metrics::histogram!("vigil_store_commit_seconds")
                            .record(took.as_secs_f64());
                        metrics::histogram!("vigil_store_group_events")
                            .record(committed.events.len() as f64);
                        metrics::counter!("vigil_store_events_appended_total")
                            .increment(committed.events.len() as u64);
                    }
                    (group_replies(group, reply_to), committed)
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

fn empty() -> Committed {
    Committed { events: vec![] }
}
