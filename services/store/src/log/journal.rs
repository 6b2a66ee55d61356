//! The log's side of replication: the journal sequence a replica has applied, and the
//! commit of events the journal already positioned.
//!
//! Owns the `replication` keyspace (one key, [`APPLIED_KEY`]: the last journal sequence
//! whose events are in this log, u64 big-endian). It is created only when a replica first
//! asks for it ([`Log::applied_journal_seq`]), so a store that does not replicate keeps
//! exactly the three keyspaces of its layout ([`super::layout`]). The sequence is written in the same atomic
//! batch as the events it covers (by the leader through [`super::Prepared::record_journal_seq`],
//! by a follower in [`Log::apply_positioned`]), so after any crash a replica resumes the
//! journal exactly after the last message it holds.
//!
//! Promises of [`Log::apply_positioned`]: the events land at exactly the positions the
//! journal says, byte for byte, in the same three keyspaces (log, streams, ids) and with the
//! same keys and values (each event after its chain hash) as a normal commit; nothing is written unless the message starts right
//! after this log's head, every event carries its position and the next version of its
//! stream, and the hash chain computed over the bytes ends on the head the message carries.
//! Anything else is [`ApplyError::Diverged`], naming the position and the sequence: this
//! replica's history is not the journal's, and it must not serve.

use bytes::Bytes;
use fjall::{Keyspace, KeyspaceCreateOptions, OwnedWriteBatch};

use super::{
    CommittedEvent, Failure, Log, LogError, be, chain, decode_stored, layout, read_u64, stream_key,
};

/// Name of the keyspace holding the applied journal sequence.
const KEYSPACE: &str = "replication";

/// The key of the last applied journal sequence.
pub(super) const APPLIED_KEY: &[u8] = b"journal_seq";

/// Why a journal message was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The message does not continue this log: its history differs from the journal's.
    #[error("this replica's log disagrees with the journal: {0}")]
    Diverged(String),
    /// Reading or writing the log failed.
    #[error(transparent)]
    Log(#[from] LogError),
}

/// One journal message to apply: its sequence, the position of its first event, the
/// events exactly as stored, and the hash-chain head after the last.
#[derive(Debug, Clone, Copy)]
pub struct Positioned<'a> {
    /// The journal sequence of the message.
    pub seq: u64,
    /// Position of `events[0]`.
    pub first: u64,
    /// The stored event bytes, in position order.
    pub events: &'a [Bytes],
    /// Chain hash at the last event.
    pub chain_head: &'a [u8; 32],
}

impl Log {
    /// The replication keyspace, created on first use.
    pub(super) fn journal_keyspace(&self) -> Result<&Keyspace, LogError> {
        if let Some(k) = self.journal.get() {
            return Ok(k);
        }
        let k = self.db.keyspace(KEYSPACE, KeyspaceCreateOptions::default)?;
        Ok(self.journal.get_or_init(|| k))
    }

    /// The last journal sequence whose events this log holds (0: none).
    pub fn applied_journal_seq(&self) -> Result<u64, LogError> {
        match self.journal_keyspace()?.get(APPLIED_KEY)? {
            Some(v) => read_u64(&v, 0),
            None => Ok(0),
        }
    }

    /// Writes the events of journal message `seq` (`events`, exactly as stored, the first at
    /// position `first`) as one atomic, durable batch with `seq` as the applied sequence,
    /// after checking them against this log (see the module docs). Only for a replica that is
    /// not preparing groups of its own (a follower, or a leader before it serves).
    pub fn apply_positioned(
        &self,
        seq: u64,
        first: u64,
        events: &[Bytes],
        chain_head: &[u8; 32],
    ) -> Result<Vec<CommittedEvent>, ApplyError> {
        self.apply_journal(&[Positioned {
            seq,
            first,
            events,
            chain_head,
        }])
    }

    /// Writes consecutive journal messages as one atomic, durable batch (one fsync for all,
    /// which is what lets a replica that is far behind catch up at the disk's pace rather
    /// than one fsync per message), with the last one's sequence as the applied sequence.
    /// Each message is checked as [`Log::apply_positioned`] checks one, against the log as
    /// the messages before it in `messages` leave it; if any does not continue it, nothing
    /// is written.
    pub fn apply_journal(
        &self,
        messages: &[Positioned<'_>],
    ) -> Result<Vec<CommittedEvent>, ApplyError> {
        let Some(last_seq) = messages.last().map(|m| m.seq) else {
            return Ok(Vec::new());
        };
        let journal = self.journal_keyspace()?.clone();
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        if !self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
        {
            return Err(ApplyError::Log(LogError::Damaged(
                "a journal message was applied while groups of this replica were in flight".into(),
            )));
        }
        if self.is_poisoned() {
            return Err(ApplyError::Log(LogError::Damaged(format!(
                "this replica takes no writes: {}",
                self.refusal().message
            ))));
        }
        let count: usize = messages.iter().map(|m| m.events.len()).sum();
        let mut batch = OwnedWriteBatch::with_capacity(self.db.clone(), count * 3 + 1);
        let mut head = self.head();
        let mut chained = ahead.last_hash;
        let mut versions = super::Map::default();
        let mut out = Vec::with_capacity(count);
        for (k, m) in messages.iter().enumerate() {
            let seq = m.seq;
            if k > 0 && seq != messages[k - 1].seq + 1 {
                return Err(ApplyError::Diverged(format!(
                    "journal message {seq} was given to apply right after message {}",
                    messages[k - 1].seq
                )));
            }
            if m.first != head + 1 {
                return Err(ApplyError::Diverged(format!(
                    "journal message {seq} starts at position {}, but this replica's log ends at position {head}",
                    m.first
                )));
            }
            for (i, bytes) in m.events.iter().enumerate() {
                let position = m.first + i as u64;
                let rec = decode_stored(bytes).map_err(|e| {
                    ApplyError::Diverged(format!(
                        "position {position} (journal message {seq}): the event does not decode ({e})"
                    ))
                })?;
                if rec.position != position {
                    return Err(ApplyError::Diverged(format!(
                        "position {position} (journal message {seq}): the event says it is at position {}",
                        rec.position
                    )));
                }
                let current = match versions.get(&rec.stream) {
                    Some(v) => *v,
                    None => self.cached_version(&mut ahead.versions, &rec.stream)?,
                };
                if rec.version != current + 1 {
                    return Err(ApplyError::Diverged(format!(
                        "position {position} (journal message {seq}): {} is at version {current} here, the event has version {}",
                        rec.stream, rec.version
                    )));
                }
                chained = chain::link(&chained, bytes);
                batch.insert(&self.log, be(position), layout::encode(&chained, bytes));
                batch.insert(
                    &self.streams,
                    stream_key(&rec.stream, rec.version),
                    be(position),
                );
                let mut idv = [0u8; 16];
                idv[..8].copy_from_slice(&be(position));
                idv[8..].copy_from_slice(&be(rec.version));
                batch.insert(&self.ids, rec.id.as_bytes(), idv);
                versions.insert(rec.stream.clone(), rec.version);
                out.push(CommittedEvent {
                    position,
                    stream: rec.stream,
                    bytes: bytes.clone(),
                });
            }
            head += m.events.len() as u64;
            if &chained != m.chain_head {
                return Err(ApplyError::Diverged(format!(
                    "position {head} (journal message {seq}): the hash chain computed here is {} but the journal's is {}",
                    hex::encode(chained),
                    hex::encode(m.chain_head)
                )));
            }
        }
        batch.insert(&journal, APPLIED_KEY, be(last_seq));
        if let Err(e) = batch.durability(self.persist_mode()).commit() {
            self.stop_writes(Failure::Failed(e.to_string()));
            return Err(ApplyError::Log(e.into()));
        }
        self.head.store(head, std::sync::atomic::Ordering::Release);
        ahead.head = head;
        ahead.last_hash = chained;
        ahead.versions.extend(versions);
        Ok(out)
    }

    /// Forgets every group prepared but not committed (a leader that stepped down: they were
    /// never acknowledged) and reloads the writer's view of the log from what is on disk.
    pub fn reset_ahead(&self) -> Result<(), LogError> {
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let head = self.head();
        ahead.head = head;
        ahead.last_hash = match head {
            0 => chain::GENESIS,
            h => self
                .chain_at(h)?
                .ok_or_else(|| chain::refuse(h, "the event has no hash chain entry"))?,
        };
        ahead.versions.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::log::{Durability, Pending};
    use events::{AppendRequest, ExpectedVersion, NewEvent, StreamName};
    use serde_json::json;
    use uuid::Uuid;

    fn request(stream: &StreamName, n: usize) -> AppendRequest {
        AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events: (0..n)
                .map(|i| NewEvent {
                    id: Uuid::new_v4(),
                    event_type: "Tested".into(),
                    v: 1,
                    data: json!({ "i": i }),
                    meta: Default::default(),
                })
                .collect(),
        }
    }

    /// What a leader journals for one group: (first, bytes, chain head), committed on
    /// `leader` with `seq`.
    fn lead(leader: &Log, req: AppendRequest, seq: u64) -> (u64, Vec<Bytes>, [u8; 32]) {
        let mut group = [Pending::new(req)];
        let mut prepared = leader.prepare_group(&mut group).unwrap();
        let first = prepared.events()[0].position;
        let bytes: Vec<Bytes> = prepared.events().iter().map(|e| e.bytes.clone()).collect();
        let head = *prepared.hashes().last().unwrap();
        prepared.record_journal_seq(leader, seq).unwrap();
        let committed = leader.commit_prepared(&mut group, prepared);
        assert_eq!(committed.events.len(), bytes.len());
        (first, bytes, head)
    }

    #[test]
    fn a_follower_holds_the_leaders_log_byte_for_byte() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Log::open(ld.path(), Durability::SyncData).unwrap();
        let follower = Log::open(fd.path(), Durability::SyncData).unwrap();
        let s = StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap();
        let retried = request(&s, 2);
        for (seq, req) in [
            (1, request(&s, 3)),
            (2, retried.clone()),
            (3, request(&s, 1)),
        ] {
            let (first, bytes, head) = lead(&leader, req, seq);
            follower
                .apply_positioned(seq, first, &bytes, &head)
                .unwrap();
        }
        assert_eq!(
            (follower.head(), follower.applied_journal_seq().unwrap()),
            (6, 3)
        );
        assert_eq!(leader.applied_journal_seq().unwrap(), 3);
        assert_eq!(follower.stream_version(&s).unwrap(), 6);
        let raw = |l: &Log| l.read_raw(1, 100, usize::MAX).unwrap();
        assert_eq!(raw(&leader), raw(&follower));
        assert_eq!(leader.chain_at(6).unwrap(), follower.chain_at(6).unwrap());
        // The follower's id index answers a retry with the original positions.
        let mut group = [Pending::new(retried)];
        follower.reset_ahead().unwrap();
        follower.commit_group(&mut group).unwrap();
        let ok = group[0].outcome.take().unwrap().unwrap();
        assert!(ok.duplicate);
        assert_eq!((ok.first_position, ok.last_position), (4, 5));
        // Reopened, it resumes after the same sequence and verifies intact.
        follower.close().unwrap();
        drop(follower);
        let again = Log::open(fd.path(), Durability::SyncData).unwrap();
        assert_eq!((again.head(), again.applied_journal_seq().unwrap()), (6, 3));
        assert!(again.verify(|_, _| {}).unwrap().is_intact());
    }

    #[test]
    fn a_message_that_does_not_continue_the_log_is_refused_and_writes_nothing() {
        let (ld, fd) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let leader = Log::open(ld.path(), Durability::SyncData).unwrap();
        let follower = Log::open(fd.path(), Durability::SyncData).unwrap();
        let s = StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap();
        let (first, bytes, head) = lead(&leader, request(&s, 2), 1);
        let (first2, bytes2, head2) = lead(&leader, request(&s, 1), 2);
        // Starts after a gap.
        let e = follower
            .apply_positioned(2, first2, &bytes2, &head2)
            .unwrap_err();
        assert!(
            matches!(&e, ApplyError::Diverged(m) if m.contains("journal message 2") && m.contains("position 3")),
            "{e}"
        );
        // Another chain head.
        let e = follower
            .apply_positioned(1, first, &bytes, &[7; 32])
            .unwrap_err();
        assert!(
            matches!(&e, ApplyError::Diverged(m) if m.contains("position 2") && m.contains("journal message 1")),
            "{e}"
        );
        assert_eq!(
            (follower.head(), follower.applied_journal_seq().unwrap()),
            (0, 0)
        );
        // Events out of order.
        let swapped = vec![bytes[1].clone(), bytes[0].clone()];
        assert!(matches!(
            follower.apply_positioned(1, first, &swapped, &head),
            Err(ApplyError::Diverged(_))
        ));
        follower.apply_positioned(1, first, &bytes, &head).unwrap();
        assert_eq!(follower.head(), 2);
    }

    #[test]
    fn messages_applied_together_are_the_same_log_as_applied_one_by_one() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let leader = Log::open(dirs[0].path(), Durability::SyncData).unwrap();
        let single = Log::open(dirs[1].path(), Durability::SyncData).unwrap();
        let together = Log::open(dirs[2].path(), Durability::SyncData).unwrap();
        let streams: Vec<StreamName> = (0..3)
            .map(|_| StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap())
            .collect();
        let msgs: Vec<(u64, Vec<Bytes>, [u8; 32])> = (1..=9u64)
            .map(|seq| {
                lead(
                    &leader,
                    request(&streams[seq as usize % 3], seq as usize % 4 + 1),
                    seq,
                )
            })
            .collect();
        let positioned: Vec<Positioned<'_>> = msgs
            .iter()
            .enumerate()
            .map(|(i, (first, events, head))| Positioned {
                seq: i as u64 + 1,
                first: *first,
                events,
                chain_head: head,
            })
            .collect();
        for p in &positioned {
            single
                .apply_positioned(p.seq, p.first, p.events, p.chain_head)
                .unwrap();
        }
        // A bad message among good ones writes none of them.
        let mut bad = positioned[..4].to_vec();
        bad[2].chain_head = &[9; 32];
        assert!(matches!(
            together.apply_journal(&bad),
            Err(ApplyError::Diverged(m)) if m.contains("journal message 3")
        ));
        // So does a sequence that skips one.
        let skipping = [positioned[0], positioned[2]];
        assert!(matches!(
            together.apply_journal(&skipping),
            Err(ApplyError::Diverged(_))
        ));
        assert_eq!(
            (together.head(), together.applied_journal_seq().unwrap()),
            (0, 0)
        );
        let applied = together.apply_journal(&positioned[..5]).unwrap();
        assert_eq!(applied.len() as u64, together.head());
        together.apply_journal(&positioned[5..]).unwrap();
        let raw = |l: &Log| l.read_raw(1, 1000, usize::MAX).unwrap();
        assert_eq!(raw(&single), raw(&together));
        assert_eq!(raw(&leader), raw(&together));
        assert_eq!(
            (together.head(), together.applied_journal_seq().unwrap()),
            (single.head(), 9)
        );
        for s in &streams {
            assert_eq!(
                together.stream_version(s).unwrap(),
                leader.stream_version(s).unwrap()
            );
        }
        let head = leader.head();
        assert_eq!(
            leader.chain_at(head).unwrap(),
            together.chain_at(head).unwrap()
        );
        assert!(together.verify(|_, _| {}).unwrap().is_intact());
    }
}
