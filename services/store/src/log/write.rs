//! The group commit: judging a group of appends in order, preparing its batch while the
//! previous group is written, and writing it as one atomic, durable fjall batch.
//!
//! Owns [`Pending`] (an append and its outcome), [`Prepared`] (a group judged, encoded,
//! hashed and batched, not yet written) and what a commit produced for publication
//! ([`Committed`], [`CommittedEvent`]). Promises: appends are judged in order, each gets its
//! own outcome, a prepared group counts as written for the groups prepared after it, and
//! nothing is acknowledged before it is durable (see the promises in [`super`]).

use std::sync::atomic::Ordering;

use bytes::{Buf, Bytes};
use events::StreamName;
use events::store_api::{AppendOk, StoreError};
use fjall::OwnedWriteBatch;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    Failure, IdEntry, Inflight, Log, LogError, MAX_CACHED_VERSIONS, Map, be, chain, decode_stored,
    io_is_full, is_disk_full, layout, live, same_event, stream_key,
};
use crate::incoming::Append;

/// Room for a recorded event's JSON beyond its `data` (the envelope's fields and `meta`), so
/// its buffer is rarely grown.
const RECORDED_ROOM: usize = 384;

/// One append waiting in a commit group, and the answer it gets once the group is durable.
pub struct Pending {
    /// The validated request.
    pub request: Append,
    /// Filled by `commit_group` (or `prepare_group` and `commit_prepared`).
    pub outcome: Option<Result<AppendOk, StoreError>>,
}

impl Pending {
    /// An append not yet judged; `request` is an [`Append`] or an
    /// [`events::AppendRequest`] built in process.
    pub fn new(request: impl Into<Append>) -> Self {
        Self {
            request: request.into(),
            outcome: None,
        }
    }
}

/// One newly recorded event, for publication.
#[derive(Debug, Clone)]
pub struct CommittedEvent {
    /// Its global position.
    pub position: u64,
    /// Its stream.
    pub stream: StreamName,
    /// The recorded event's JSON, exactly as stored.
    pub bytes: Bytes,
}

/// What a successful group commit produced, for publication.
pub struct Committed {
    /// Newly recorded events in position order.
    pub events: Vec<CommittedEvent>,
}

/// Cuts `events` into runs of consecutive events whose bytes, each event's own plus
/// `overhead`, stay within `max_bytes`; a run always holds at least one event (an event
/// larger than `max_bytes` travels alone). How a group is split into messages under the
/// server's payload limit, for the journal and for the live feed alike.
pub fn runs(
    events: &[CommittedEvent],
    overhead: usize,
    max_bytes: usize,
) -> Vec<std::ops::Range<usize>> {
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, e) in events.iter().enumerate() {
        let need = e.bytes.len() + overhead;
        match out.last_mut() {
            Some(run) if size + need <= max_bytes => {
                run.end = i + 1;
                size += need;
            }
            _ => {
                out.push(i..i + 1);
                size = need;
            }
        }
    }
    out
}

/// A group judged, encoded, hashed and batched by [`Log::prepare_group`], to be written by
/// [`Log::commit_prepared`] on the same `Log`.
pub struct Prepared {
    /// Nothing to write when `None` (every append refused or a retry).
    batch: Option<OwnedWriteBatch>,
    /// The head once this group is written.
    head: u64,
    events: Vec<CommittedEvent>,
    /// The chain hash at each of `events` (for the replicated journal, which carries the
    /// chain head after each of its messages).
    hashes: Vec<[u8; 32]>,
}

impl Prepared {
    /// The events this group records, in position order (empty: nothing to write).
    pub fn events(&self) -> &[CommittedEvent] {
        &self.events
    }

    /// The chain hash at each of [`Prepared::events`].
    pub fn hashes(&self) -> &[[u8; 32]] {
        &self.hashes
    }

    /// Records, in this group's own batch, that the log is the replicated journal applied up
    /// to `seq` (see [`super::journal`]): the group and the mark land together or not at all.
    pub fn record_journal_seq(&mut self, log: &Log, seq: u64) -> Result<(), LogError> {
        let keyspace = log.journal_keyspace()?;
        if let Some(batch) = self.batch.as_mut() {
            batch.insert(keyspace, super::journal::APPLIED_KEY, be(seq));
        }
        Ok(())
    }
}

impl Log {
    /// Validates and commits a group of appends as one atomic, durable batch:
    /// [`Log::prepare_group`] then [`Log::commit_prepared`].
    ///
    /// Each pending append gets its own outcome: accepted appends get their positions,
    /// refused ones a typed error, and neither affects the others, except that all of them
    /// fail as `unavailable` if the disk write fails. Appends are judged in order, so the
    /// second of two racing appends with the same expected version sees the first one's
    /// effect and is refused.
    pub fn commit_group(&self, group: &mut [Pending]) -> Result<Committed, LogError> {
        let prepared = self.prepare_group(group)?;
        Ok(self.commit_prepared(group, prepared))
    }

    /// Judges a group of appends in order (expected versions, the permanent id index,
    /// retries), assigns positions and versions, encodes the recorded events, links them
    /// into the hash chain and builds the batch, without writing anything.
    ///
    /// The server prepares group N+1 while group N is written and fsync'd: a prepared group
    /// counts as written for the groups prepared after it (its ids, versions, head and chain
    /// hash), until [`Log::commit_prepared`] writes it. Groups must be committed in the order
    /// they were prepared, each exactly once. If one fails, the log stops taking writes and
    /// every group prepared after it is refused whole, so nothing built on it is ever
    /// acknowledged.
    ///
    /// An error means an index could not be read: nothing of the group is kept (the outcomes
    /// may be partly filled and must be ignored), and the log is unchanged.
    pub fn prepare_group(&self, group: &mut [Pending]) -> Result<Prepared, LogError> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        let nothing = |head| Prepared {
            batch: None,
            head,
            events: Vec::new(),
            hashes: Vec::new(),
        };
        if self.is_poisoned() {
            let refusal = self.refusal();
            for p in group.iter_mut() {
                p.outcome = Some(Err(refusal.clone()));
            }
            return Ok(nothing(ahead.head));
        }
        let recorded_at = OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| LogError::Damaged(format!("cannot encode the commit time: {e}")))?;
        let mut head = ahead.head;
        // What this group has already written, visible to the appends after it in the group.
        let events: usize = group.iter().map(|p| p.request.events.len()).sum();
        let mut group_versions: Map<StreamName, u64> =
            Map::with_capacity_and_hasher(group.len(), Default::default());
        let mut group_ids: Map<Uuid, (IdEntry, usize)> =
            Map::with_capacity_and_hasher(events, Default::default());
        let mut batch = OwnedWriteBatch::with_capacity(self.db.clone(), events * 3);
        let mut recorded: Vec<CommittedEvent> = Vec::with_capacity(events);
        let mut hashes: Vec<[u8; 32]> = Vec::with_capacity(events);
        // Chain hash of the last event of this group so far.
        let mut chained = ahead.last_hash;

        for p in group.iter_mut() {
            let retry = self.retry_outcome(&p.request, &group_ids, &recorded)?;
            // A retry is answered as one whatever it follows; anything else only once what it
            // must follow is stored (or ahead of it in this group or one in flight).
            let missing = match p.request.after {
                Some(after) if retry.is_none() && !self.holds(&after, &group_ids)? => Some(after),
                _ => None,
            };
            let outcome = match (retry, missing) {
                (Some(outcome), _) => outcome,
                (None, Some(after)) => Err(StoreError::after_missing(after)),
                (None, None) => {
                    let request = &mut p.request;
                    let stream = &request.stream;
                    let current = match group_versions.get(stream) {
                        Some(v) => *v,
                        None => self.cached_version(&mut ahead.versions, stream)?,
                    };
                    let expected = request.expected_version;
                    if !expected.admits(current) {
                        Err(StoreError::wrong_version(expected, current))
                    } else {
                        let first_position = head + 1;
                        let mut version = current;
                        // The request is answered from `outcome`; its events move into the log.
                        for ev in std::mem::take(&mut request.events) {
                            head += 1;
                            version += 1;
                            // The stored value (chain hash, then the event) is built in one
                            // buffer; the event's bytes for publication are its tail.
                            let mut value = Vec::with_capacity(
                                layout::HASH_LEN + ev.data.len() + RECORDED_ROOM,
                            );
                            value.resize(layout::HASH_LEN, 0);
                            ev.encode_recorded_into(
                                &mut value,
                                stream,
                                head,
                                version,
                                &recorded_at,
                            )
                            .map_err(|e| LogError::Damaged(format!("cannot encode event: {e}")))?;
                            chained = chain::link(&chained, &value[layout::HASH_LEN..]);
                            hashes.push(chained);
                            value[..layout::HASH_LEN].copy_from_slice(&chained);
                            batch.insert(&self.log, be(head), value.as_slice());
                            batch.insert(&self.streams, stream_key(stream, version), be(head));
                            let mut idv = [0u8; 16];
                            idv[..8].copy_from_slice(&be(head));
                            idv[8..].copy_from_slice(&be(version));
                            batch.insert(&self.ids, ev.id.as_bytes(), idv);
                            let entry = IdEntry {
                                position: head,
                                version,
                            };
                            group_ids.insert(ev.id, (entry, recorded.len()));
                            let mut bytes = Bytes::from(value);
                            bytes.advance(layout::HASH_LEN);
                            recorded.push(CommittedEvent {
                                position: head,
                                stream: stream.clone(),
                                bytes,
                            });
                        }
                        group_versions.insert(stream.clone(), version);
                        Ok(AppendOk {
                            first_position,
                            last_position: head,
                            stream_version: version,
                            duplicate: false,
                        })
                    }
                }
            };
            p.outcome = Some(outcome);
        }

        if recorded.is_empty() {
            return Ok(nothing(ahead.head));
        }
        ahead.head = head;
        ahead.last_hash = chained;
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if ahead.versions.len() + group_versions.len() > MAX_CACHED_VERSIONS {
            ahead.versions.clear();
            // What is in flight is not on disk yet: a miss must not read it from there.
            for g in inflight.iter() {
                ahead
                    .versions
                    .extend(g.versions.iter().map(|(s, v)| (s.clone(), *v)));
            }
        }
        ahead
            .versions
            .extend(group_versions.iter().map(|(s, v)| (s.clone(), *v)));
        inflight.push_back(Inflight {
            last: head,
            ids: group_ids,
            bytes: recorded.iter().map(|e| e.bytes.clone()).collect(),
            versions: group_versions,
        });
        Ok(Prepared {
            batch: Some(batch),
            head,
            events: recorded,
            hashes,
        })
    }

    /// Writes a group [`Log::prepare_group`] prepared on this `Log` as one atomic fjall batch
    /// and fdatasyncs it; returns only once it is durable (or refused). Its appends' outcomes
    /// stand if it is written; if the write fails (or an earlier group's did) they become
    /// `unavailable` and nothing of the group is acknowledged.
    pub fn commit_prepared(&self, group: &mut [Pending], prepared: Prepared) -> Committed {
        let Prepared {
            batch,
            head,
            events,
            hashes: _,
        } = prepared;
        // Only a group with something to write was added to `inflight`.
        let in_flight = batch.is_some();
        let written = if self.is_poisoned() {
            // An earlier group failed: this one was judged as if that one had been written
            // (its refusals and its retries' answers too), so none of its outcomes holds.
            let refusal = self.refusal();
            for p in group.iter_mut() {
                p.outcome = Some(Err(refusal.clone()));
            }
            false
        } else if let Some(batch) = batch
            && let Err(e) = batch.durability(self.persist_mode()).commit()
        {
            // fjall has poisoned itself: this `Log` takes no more writes. What reached the
            // journal of this group is either whole (and found again at the next open) or
            // cut (and discarded at the next open); either way nothing of it is acknowledged.
            // A poison left by a background flush carries no cause: the probe tells.
            let full = is_disk_full(&e)
                || (matches!(e, fjall::Error::Poisoned)
                    && matches!(live::probe_space(&self.dir), Err(ref io) if io_is_full(io)));
            if full {
                tracing::error!(error = %e, "commit failed: the disk is full; appends are refused until space returns, then the store resumes by itself");
                self.stop_writes(Failure::DiskFull);
            } else {
                tracing::error!(error = %e, "commit failed: the store stops taking writes; check the disk, then restart");
                self.stop_writes(Failure::Failed(e.to_string()));
            }
            let refusal = self.refusal();
            for p in group.iter_mut() {
                if matches!(p.outcome, Some(Ok(_))) {
                    p.outcome = Some(Err(refusal.clone()));
                }
            }
            false
        } else {
            if !events.is_empty() {
                self.head.store(head, Ordering::Release);
            }
            true
        };
        // Applied (or never to be): from now on its entries are on disk, or the log is
        // poisoned and nothing is judged on it any more.
        let mut inflight = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if in_flight && inflight.front().is_some_and(|g| g.last == head) {
            inflight.pop_front();
        }
        drop(inflight);
        Committed {
            events: if written { events } else { vec![] },
        }
    }

    /// Whether event `id` is stored, in a group in flight, or earlier in this group.
    fn holds(&self, id: &Uuid, group_ids: &Map<Uuid, (IdEntry, usize)>) -> Result<bool, LogError> {
        Ok(group_ids.contains_key(id)
            || self.inflight_id(id).is_some()
            || self.lookup_id(id)?.is_some())
    }

    /// If every event id of `req` is already stored (or earlier in this group, or in a group
    /// in flight), the original outcome; `None` if none is. Mixed or reused ids are refused.
    fn retry_outcome(
        &self,
        req: &Append,
        group_ids: &Map<Uuid, (IdEntry, usize)>,
        group_events: &[CommittedEvent],
    ) -> Result<Option<Result<AppendOk, StoreError>>, LogError> {
        let mut found = Vec::with_capacity(req.events.len());
        for ev in &req.events {
            let hit = match group_ids.get(&ev.id) {
                Some((entry, idx)) => match group_events.get(*idx) {
                    Some(e) => Some((*entry, decode_stored(&e.bytes)?)),
                    None => None,
                },
                None => match self.inflight_id(&ev.id) {
                    Some((entry, bytes)) => Some((entry, decode_stored(&bytes)?)),
                    None => match self.lookup_id(&ev.id)? {
                        Some(entry) => Some((entry, self.event_at(entry.position)?)),
                        None => None,
                    },
                },
            };
            found.push(hit);
        }
        let stored = found.iter().filter(|f| f.is_some()).count();
        if stored == 0 {
            return Ok(None);
        }
        if stored < req.events.len() {
            return Ok(Some(Err(StoreError::id_reused(
                "some of these event ids are already stored and some are not; retry the original batch unchanged, or use new ids for new events",
            ))));
        }
        for (ev, hit) in req.events.iter().zip(&found) {
            if let Some((_, rec)) = hit
                && !same_event(ev, &req.stream, rec)
            {
                return Ok(Some(Err(StoreError::id_reused(format!(
                    "event id {} is already stored with other content (at position {}); use a new id for a new event",
                    ev.id, rec.position
                )))));
            }
        }
        let entries: Vec<IdEntry> = found.iter().flatten().map(|(e, _)| *e).collect();
        let first = entries.iter().map(|e| e.position).min().unwrap_or(0);
        let last = entries.iter().map(|e| e.position).max().unwrap_or(0);
        let version = entries.iter().map(|e| e.version).max().unwrap_or(0);
        Ok(Some(Ok(AppendOk {
            first_position: first,
            last_position: last,
            stream_version: version,
            duplicate: true,
        })))
    }
}
