//! The hash chain over the log: how it is written, what [`Log::open`] checks of it, the
//! one-time upgrade of older stores, and [`Log::verify`], the full offline check behind
//! `vigil verify`.
//!
//! # The chain
//! The keyspace `chain` maps each position (u64 big-endian) to
//! `SHA-256(chain[position - 1] ‖ stored event bytes at position)`, with 32 zero bytes standing
//! in for `chain[0]`. It is written in the same atomic batch as the event, by the one writer,
//! which keeps the head's hash in memory (loaded at open). The recorded event JSON does not
//! change: reads never touch the chain.
//!
//! # What it promises
//! - **Accidental damage and naive tampering of stored events are detected**, at the exact
//!   position: a changed byte in an event (a bit flip that slipped past fjall's block
//!   checksums, a restored file from another store, an edit made by opening the directory with
//!   fjall and overwriting a value) no longer matches its chain entry. `vigil verify` walks
//!   every position and names the first one broken; the events before it are intact.
//! - **Events missing at the end are detected** when their chain entries survived (the chain's
//!   head is past the log's head), and the reverse (an event without its chain entry).
//! - At open, the store checks that the chain's head equals the log's head and that the last
//!   [`TAIL_CHECK`] events match their hashes; otherwise it refuses to start, naming the
//!   position. The whole log is checked only by `vigil verify` (it reads every event).
//!
//! # What it does not promise
//! - **It is not a defence against an attacker who can rewrite the whole directory.** Anyone
//!   able to change an event can recompute every later chain entry too, or cut the log and the
//!   chain back together; the chain then verifies. Catching that needs the head hash anchored
//!   somewhere the attacker cannot write (printed into an external audit record, signed,
//!   published to another system): future work. The head hash is in the `chain` keyspace
//!   under the head position for whoever builds that.
//! - A store written before the chain existed gets its chain built over its events as they
//!   are at that first open (logged as a one-time upgrade): the chain vouches for them only
//!   from then on. The same happens if the `chain` keyspace is found entirely empty while the
//!   log is not (it is indistinguishable from an old store), with a warning.
//! - The `streams` and `ids` indexes are not chained; `vigil verify` checks them against the
//!   chained events instead (every event has its entries, every entry points at its event).

use std::time::Instant;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use events::RecordedEvent;

use super::{Log, LogError, be, read_u64, stream_key};

mod report;

pub use report::{Broken, Check, CheckReport, VerifyReport};

/// Name of the chain's keyspace.
pub(super) const KEYSPACE: &str = "chain";

/// The hash that stands before position 1.
pub(super) const GENESIS: [u8; 32] = [0; 32];

/// Key 0 (never a position) of the chain keyspace marks an upgrade in progress, so an
/// upgrade interrupted by a crash resumes instead of looking like damage.
const UPGRADE_MARKER: [u8; 8] = [0; 8];

/// How many of the last positions [`Log::open`] checks against their chain hashes.
pub const TAIL_CHECK: u64 = 512;

/// Chain entries written per batch while building the chain of an older store.
const UPGRADE_BATCH: u64 = 10_000;

/// The chain hash of an event stored as `event`, after the chain hash `prev`.
pub(super) fn link(prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

fn as_hash(value: &[u8]) -> Option<[u8; 32]> {
    <[u8; 32]>::try_from(value).ok()
}

pub(super) fn refuse(position: u64, what: &str) -> LogError {
    LogError::Damaged(format!(
        "position {position}: {what}. The store does not start on a damaged log: run `vigil verify --data-dir <data dir>` (with the store stopped) for the full report, then restore the store directory from a backup"
    ))
}

impl Log {
    /// Last position that has a chain entry (0 = none).
    fn chain_head(&self) -> Result<u64, LogError> {
        match self.chain.range(be(1)..).next_back() {
            Some(kv) => read_u64(&kv.key()?, 0),
            None => Ok(0),
        }
    }

    pub(super) fn chain_at(&self, position: u64) -> Result<Option<[u8; 32]>, LogError> {
        match self.chain.get(be(position))? {
            Some(v) => as_hash(&v)
                .map(Some)
                .ok_or_else(|| refuse(position, "its chain entry is not a 32-byte hash")),
            None => Ok(None),
        }
    }

    /// At open: build the chain if this store has none yet (or finish building it), then
    /// check that the chain's head equals the log's head and that the tail matches its
    /// hashes, and load the head's hash for the writer.
    pub(super) fn prepare_chain(&self) -> Result<(), LogError> {
        let head = self.head();
        let chain_head = self.chain_head()?;
        let upgrading = self.chain.get(UPGRADE_MARKER)?.is_some();
        if chain_head > head {
            return Err(refuse(
                head + 1,
                &format!(
                    "the log ends at position {head} but the hash chain goes on to position {chain_head}: events at the end of the log are missing"
                ),
            ));
        }
        if upgrading || (chain_head == 0 && head > 0) {
            self.build_chain(chain_head, upgrading)?;
        } else if chain_head < head {
            return Err(refuse(
                chain_head + 1,
                &format!(
                    "the event is in the log (whose head is {head}) but has no hash chain entry (the chain ends at {chain_head}); the two are only ever written together"
                ),
            ));
        }
        self.check_tail()
    }

    /// Builds chain entries after `from` (the last position already chained) up to the head.
    fn build_chain(&self, from: u64, resuming: bool) -> Result<(), LogError> {
        let head = self.head();
        if resuming {
            tracing::warn!(
                from = from + 1,
                head,
                "resuming the interrupted one-time build of the event log's hash chain"
            );
        } else {
            tracing::warn!(
                head,
                "this event log has no hash chain yet (it was written by an older version): building it once over the {head} stored events; they are vouched for as they are now"
            );
        }
        let started = Instant::now();
        let mut prev = match from {
            0 => GENESIS,
            p => self
                .chain_at(p)?
                .ok_or_else(|| refuse(p, "the chain entry vanished during the upgrade"))?,
        };
        let mut batch = self.db.batch();
        if !resuming {
            batch.insert(&self.chain, UPGRADE_MARKER, b"upgrading".to_vec());
        }
        let mut in_batch = 0u64;
        for (expected, kv) in (from + 1..).zip(self.log.range(be(from + 1)..)) {
            let (key, value) = kv.into_inner()?;
            let position = read_u64(&key, 0)?;
            if position != expected {
                return Err(refuse(
                    expected,
                    "the event is missing from the log (found while building the hash chain)",
                ));
            }
            prev = link(&prev, &value);
            batch.insert(&self.chain, be(position), prev);
            in_batch += 1;
            if in_batch == UPGRADE_BATCH {
                std::mem::replace(&mut batch, self.db.batch())
                    .durability(self.persist_mode())
                    .commit()?;
                in_batch = 0;
                tracing::info!(
                    chained = position,
                    head,
                    secs = started.elapsed().as_secs(),
                    "building the hash chain"
                );
            }
        }
        batch.remove(&self.chain, UPGRADE_MARKER);
        batch.durability(self.persist_mode()).commit()?;
        tracing::info!(
            head,
            secs = started.elapsed().as_secs_f64(),
            "hash chain built; the upgrade is done"
        );
        Ok(())
    }

    /// Recomputes the chain over the last [`TAIL_CHECK`] positions and loads the head's hash.
    fn check_tail(&self) -> Result<(), LogError> {
        let head = self.head();
        let mut ahead = self.ahead.lock().unwrap_or_else(|p| p.into_inner());
        ahead.head = head;
        if head == 0 {
            ahead.last_hash = GENESIS;
            return Ok(());
        }
        let start = head.saturating_sub(TAIL_CHECK - 1).max(1);
        let mut prev = match start {
            1 => GENESIS,
            p => self
                .chain_at(p - 1)?
                .ok_or_else(|| refuse(p - 1, "the event has no hash chain entry"))?,
        };
        let mut events = self.log.range(be(start)..);
        let mut hashes = self.chain.range(be(start)..);
        for position in start..=head {
            let Some(kv) = events.next() else {
                return Err(refuse(position, "the event is missing from the log"));
            };
            let (key, value) = kv.into_inner()?;
            if read_u64(&key, 0)? != position {
                return Err(refuse(position, "the event is missing from the log"));
            }
            let stored = match hashes.next() {
                Some(kv) => {
                    let (key, hash) = kv.into_inner()?;
                    if read_u64(&key, 0)? != position {
                        return Err(refuse(position, "the event has no hash chain entry"));
                    }
                    as_hash(&hash)
                        .ok_or_else(|| refuse(position, "its chain entry is not a 32-byte hash"))?
                }
                None => return Err(refuse(position, "the event has no hash chain entry")),
            };
            if link(&prev, &value) != stored {
                return Err(refuse(
                    position,
                    "the stored event does not match its hash chain entry: the event (or its chain entry) changed after it was written",
                ));
            }
            prev = stored;
        }
        ahead.last_hash = prev;
        Ok(())
    }

    /// Checks the whole store, offline: positions gap-free from 1, every event decodes and
    /// carries its own position, the chain recomputes, the `streams` index is gap-free per
    /// stream and points at the right events (and every event is in it), and the `ids` index
    /// points at the right events (and every event is in it).
    ///
    /// Every check runs to the end (none stops the others); each counts what it checked and
    /// what failed, and keeps its first failure. `progress(done, total)` is called as it goes.
    /// `Err` only when reading the files fails; damage is reported in the [`VerifyReport`].
    pub fn verify(&self, mut progress: impl FnMut(u64, u64)) -> Result<VerifyReport, LogError> {
        let head = self.head();
        let total = head.saturating_mul(3).max(1);
        let mut r = VerifyReport::new();
        let chain_head = self.chain_head()?;
        let upgrading = self.chain.get(UPGRADE_MARKER)?.is_some();
        // A store whose chain was never built (or whose build was interrupted) is not damaged
        // there; it says so instead of failing every position.
        let unchained_from = if upgrading || chain_head == 0 {
            r.chain_pending = head > 0;
            Some(chain_head + 1)
        } else {
            None
        };

        // 1. The log in order, with the chain beside it.
        let mut expected = 1u64;
        let mut hashes = self.chain.range(be(1)..);
        let mut next_hash = next_chain(&mut hashes, &mut r, 1);
        // The stored chain hash at position `prev.0`.
        let mut prev: (u64, [u8; 32]) = (0, GENESIS);
        let mut last_position = 0u64;
        for (walked, kv) in (1u64..).zip(self.log.iter()) {
            let (key, value) = match kv.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    // A damaged block: nothing after it can be walked in order.
                    r.fail(
                        Check::Decode,
                        expected,
                        format!("the log cannot be read from here on: {}", LogError::from(e)),
                    );
                    break;
                }
            };
            r.events += 1;
            let position = match <[u8; 8]>::try_from(&key[..]) {
                Ok(k) => u64::from_be_bytes(k),
                Err(_) => {
                    r.fail(
                        Check::Positions,
                        expected,
                        format!("a log key of {} bytes, not a position", key.len()),
                    );
                    continue;
                }
            };
            r.count(Check::Positions);
            if position != expected {
                r.fail(
                    Check::Positions,
                    expected,
                    if position > expected + 1 {
                        format!(
                            "positions {expected} to {} are missing from the log",
                            position - 1
                        )
                    } else {
                        format!("position {expected} is missing from the log")
                    },
                );
            }
            expected = position + 1;
            last_position = position;

            // Chain entries with no event before this one.
            while let Some((at, hash)) = next_hash
                && at < position
            {
                r.fail(
                    Check::Chain,
                    at,
                    "a hash chain entry with no event in the log".into(),
                );
                if let Some(h) = hash {
                    prev = (at, h);
                }
                next_hash = next_chain(&mut hashes, &mut r, at);
            }
            let stored = match next_hash {
                Some((at, hash)) if at == position => {
                    next_hash = next_chain(&mut hashes, &mut r, at);
                    Some(hash)
                }
                _ => None,
            };
            // Read by its key too, as the store does at open: that also reads the filter
            // and index blocks a walk in order skips.
            if stored.is_some() {
                match self.chain.get(be(position)) {
                    Ok(Some(_)) => {}
                    Ok(None) => r.fail(
                        Check::Chain,
                        position,
                        "the hash chain entry cannot be found by its key: an index or filter block is damaged".into(),
                    ),
                    Err(e) => r.fail(
                        Check::Chain,
                        position,
                        format!(
                            "the hash chain entry cannot be read by its key: {}",
                            LogError::from(e)
                        ),
                    ),
                }
            }
            match stored {
                Some(Some(hash)) => {
                    let before = if position == 1 {
                        Some(GENESIS)
                    } else if prev.0 == position - 1 {
                        Some(prev.1)
                    } else {
                        None // the previous position has no chain entry: reported there
                    };
                    if let Some(before) = before {
                        r.count(Check::Chain);
                        if link(&before, &value) != hash {
                            r.fail(
                                Check::Chain,
                                position,
                                "the stored event does not match its hash chain entry: the event (or its chain entry) changed after it was written".into(),
                            );
                        }
                    }
                    prev = (position, hash);
                }
                Some(None) => {
                    r.fail(
                        Check::Chain,
                        position,
                        "its chain entry is not a 32-byte hash".into(),
                    );
                }
                None => {
                    if unchained_from.is_none_or(|from| position < from) {
                        r.fail(
                            Check::Chain,
                            position,
                            "the event has no hash chain entry".into(),
                        );
                    }
                }
            }

            // The event itself, and its entries in the indexes.
            r.count(Check::Decode);
            match serde_json::from_slice::<RecordedEvent>(&value) {
                Err(e) => r.fail(
                    Check::Decode,
                    position,
                    format!("the stored bytes are not a readable event: {e}"),
                ),
                Ok(event) => {
                    r.count(Check::PositionField);
                    if event.position != position {
                        r.fail(
                            Check::PositionField,
                            position,
                            format!(
                                "the event stored at position {position} says it is at position {}",
                                event.position
                            ),
                        );
                    }
                    r.count(Check::EventInStreams);
                    let entry = self
                        .streams
                        .get(stream_key(&event.stream, event.version))
                        .map_err(|e| {
                            format!(
                                "the streams index cannot be read here: {}",
                                LogError::from(e)
                            )
                        });
                    match entry.as_ref().map(|e| e.as_deref().map(|v| read_u64(v, 0))) {
                        Err(unreadable) => r.fail(Check::EventInStreams, position, unreadable.clone()),
                        Ok(entry) => match entry {
                        Some(Ok(at)) if at == position => {}
                        Some(Ok(at)) => r.fail(
                            Check::EventInStreams,
                            position,
                            format!(
                                "{} version {} is here, but the streams index puts it at position {at}",
                                event.stream, event.version
                            ),
                        ),
                        Some(Err(_)) => r.fail(
                            Check::EventInStreams,
                            position,
                            format!(
                                "the streams index entry of {} version {} is not a position",
                                event.stream, event.version
                            ),
                        ),
                        None => r.fail(
                            Check::EventInStreams,
                            position,
                            format!(
                                "{} version {} is missing from the streams index",
                                event.stream, event.version
                            ),
                        ),
                    },
                    }
                    r.count(Check::EventInIds);
                    let found = match self.ids.get(event.id.as_bytes()) {
                        Ok(entry) => entry
                            .as_deref()
                            .map(|v| (read_u64(v, 0).ok(), read_u64(v, 8).ok())),
                        Err(e) => {
                            r.fail(
                                Check::EventInIds,
                                position,
                                format!("the ids index cannot be read here: {}", LogError::from(e)),
                            );
                            continue;
                        }
                    };
                    match found {
                        Some((Some(at), Some(version)))
                            if at == position && version == event.version => {}
                        Some((Some(at), Some(version))) => r.fail(
                            Check::EventInIds,
                            position,
                            format!(
                                "event id {} is here at version {}, but the ids index says position {at}, version {version}",
                                event.id, event.version
                            ),
                        ),
                        Some(_) => r.fail(
                            Check::EventInIds,
                            position,
                            format!("the ids index entry of event id {} is damaged", event.id),
                        ),
                        None => r.fail(
                            Check::EventInIds,
                            position,
                            format!("event id {} is missing from the ids index", event.id),
                        ),
                    }
                }
            }
            if walked % 1024 == 0 {
                progress(walked.min(head), total);
            }
        }
        r.head = last_position;
        r.chain_head = match last_position {
            0 => None,
            p => self.chain_at(p).ok().flatten(),
        };
        // Chain entries past the end of the log: events were cut off the end. One is enough
        // to say it; the rest are the same story.
        if let Some((at, _)) = next_hash {
            r.fail(
                Check::Chain,
                at,
                format!(
                    "the hash chain goes on past the log's last position {last_position}: events at the end of the log are missing"
                ),
            );
        }
        progress(head, total);

        // 2. The streams index, in key order (stream by stream, version by version).
        let mut current: Option<(Vec<u8>, u64)> = None;
        for (walked, kv) in (1u64..).zip(self.streams.iter()) {
            let (key, value) = match kv.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    // Which positions the unreadable entries name is unknown: say 1.
                    r.fail(
                        Check::StreamsIndex,
                        1,
                        format!(
                            "the streams index cannot be read from here on: {}",
                            LogError::from(e)
                        ),
                    );
                    break;
                }
            };
            r.count(Check::StreamsIndex);
            let split = key.len().checked_sub(9);
            let parsed = split.and_then(|at| {
                let name = key.get(..at)?;
                let version = read_u64(&key, at + 1).ok()?;
                (key.get(at) == Some(&b'/') && !name.is_empty()).then_some((name, version))
            });
            let target = read_u64(&value, 0).ok();
            let Some((name, version)) = parsed else {
                r.fail(
                    Check::StreamsIndex,
                    target.unwrap_or(1),
                    format!("a streams index key that is not <stream>/<version> ({key:?})"),
                );
                continue;
            };
            let shown = String::from_utf8_lossy(name).into_owned();
            let at = target.unwrap_or(0);
            let previous = match &current {
                Some((n, v)) if n.as_slice() == name => Some(*v),
                _ => {
                    r.streams += 1;
                    None
                }
            };
            let want = previous.map_or(1, |v| v + 1);
            if version != want {
                r.fail(
                    Check::StreamsIndex,
                    at,
                    match previous {
                        None => format!(
                            "stream {shown} starts at version {version} in the streams index, not 1"
                        ),
                        Some(v) => format!(
                            "stream {shown} jumps from version {v} to {version} in the streams index (version {want} is missing)"
                        ),
                    },
                );
            }
            current = Some((name.to_vec(), version));
            match target {
                None => r.fail(
                    Check::StreamsIndex,
                    1,
                    format!("the streams index entry of {shown} version {version} is not a position"),
                ),
                Some(at) => match self.coordinates(at)? {
                    Some(c) if c.stream.as_bytes() == name && c.version == version => {}
                    Some(c) => r.fail(
                        Check::StreamsIndex,
                        at,
                        format!(
                            "the streams index puts {shown} version {version} at position {at}, but the event there is {} version {}",
                            c.stream, c.version
                        ),
                    ),
                    None => r.fail(
                        Check::StreamsIndex,
                        at,
                        format!(
                            "the streams index puts {shown} version {version} at position {at}, which holds no readable event"
                        ),
                    ),
                },
            }
            if walked % 1024 == 0 {
                progress(head + walked.min(head), total);
            }
        }
        progress(head.saturating_mul(2), total);

        // 3. The ids index.
        for (walked, kv) in (1u64..).zip(self.ids.iter()) {
            let (key, value) = match kv.into_inner() {
                Ok(kv) => kv,
                Err(e) => {
                    r.fail(
                        Check::IdsIndex,
                        1,
                        format!(
                            "the ids index cannot be read from here on: {}",
                            LogError::from(e)
                        ),
                    );
                    break;
                }
            };
            r.count(Check::IdsIndex);
            let id = uuid::Uuid::from_slice(&key).ok();
            let (at, version) = (read_u64(&value, 0).ok(), read_u64(&value, 8).ok());
            match (id, at, version) {
                (Some(id), Some(at), Some(version)) => match self.coordinates(at)? {
                    Some(c) if c.id == id && c.version == version => {}
                    Some(c) => r.fail(
                        Check::IdsIndex,
                        at,
                        format!(
                            "the ids index puts event id {id} at position {at} version {version}, but the event there is {} at version {}",
                            c.id, c.version
                        ),
                    ),
                    None => r.fail(
                        Check::IdsIndex,
                        at,
                        format!(
                            "the ids index puts event id {id} at position {at}, which holds no readable event"
                        ),
                    ),
                },
                _ => r.fail(
                    Check::IdsIndex,
                    at.unwrap_or(1),
                    format!(
                        "a damaged ids index entry (key of {} bytes, value of {} bytes)",
                        key.len(),
                        value.len()
                    ),
                ),
            }
            if walked % 1024 == 0 {
                progress(head.saturating_mul(2) + walked.min(head), total);
            }
        }
        // 4. The log reaches what the store last recorded as acknowledged ([`super::mark`]).
        // A store without a mark (older, or never run with fsync) has nothing to check here.
        let checked = super::mark::read(&self.dir).and_then(|mark| match mark {
            Some(mark) => self.problem_with(&mark).map(Some),
            None => Ok(None),
        });
        match checked {
            Ok(None) => {}
            Ok(Some(problem)) => {
                r.count(Check::AcknowledgedHead);
                if let Some((position, problem)) = problem {
                    r.fail(Check::AcknowledgedHead, position, problem);
                }
            }
            Err(e) => {
                r.count(Check::AcknowledgedHead);
                r.fail(Check::AcknowledgedHead, r.head + 1, e.to_string());
            }
        }
        progress(total, total);
        Ok(r)
    }

    /// The id, stream and version of the event at `position`, if there is a readable one
    /// (an unreadable block is reported by the walk of the log).
    fn coordinates(&self, position: u64) -> Result<Option<Coordinates>, LogError> {
        Ok(match self.log.get(be(position)) {
            Ok(Some(v)) => serde_json::from_slice(&v).ok(),
            Ok(None) | Err(_) => None,
        })
    }
}

/// A chain entry as (position, hash if the value is 32 bytes).
type ChainEntry = (u64, Option<[u8; 32]>);

/// The next chain entry; keys that are not positions are
/// skipped (only key 0, the upgrade marker, is not, and it sorts first). An unreadable block
/// is a failure after position `after` and ends the chain's walk.
fn next_chain(iter: &mut fjall::Iter, r: &mut VerifyReport, after: u64) -> Option<ChainEntry> {
    for kv in iter.by_ref() {
        match kv.into_inner() {
            Ok((key, value)) => {
                if let Ok(at) = read_u64(&key, 0) {
                    return Some((at, as_hash(&value)));
                }
            }
            Err(e) => {
                r.fail(
                    Check::Chain,
                    after + 1,
                    format!(
                        "the hash chain cannot be read from here on: {}",
                        LogError::from(e)
                    ),
                );
                return None;
            }
        }
    }
    None
}

/// The fields of a stored event the index checks compare (the rest is skipped, not built).
#[derive(Deserialize)]
struct Coordinates {
    id: uuid::Uuid,
    stream: String,
    version: u64,
}
