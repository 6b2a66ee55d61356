//! The hash chain over the log: how it is written, what [`Log::open`] checks of it, and
//! [`Log::verify`], the full offline check behind `vigil verify`.
//!
//! # The chain
//! Each event's value in the `log` keyspace starts with its chain hash,
//! `SHA-256(chain hash at position - 1 ‖ stored event bytes at position)`, with 32 zero bytes
//! standing in for position 0, followed by the event bytes themselves ([`super::layout`]).
//! The hash is written in the same entry as the event, by the one writer, which keeps the
//! head's hash in memory (loaded at open). Reads hand out the event bytes after the hash,
//! without a copy; the recorded event JSON does not change.
//!
//! # What it promises
//! - **Accidental damage and naive tampering of stored events are detected**, at the exact
//!   position: a changed byte in an event (a bit flip that slipped past fjall's block
//!   checksums, a restored file from another store, an edit made by opening the directory with
//!   fjall and overwriting a value) no longer matches its chain hash. `vigil verify` walks
//!   every position and names the first one broken; the events before it are intact.
//! - **Events missing at the end are detected** by the acknowledged-head [`super::mark`]
//!   (the store refuses to open a log shorter than it), and by `vigil verify`, whose index
//!   checks find the `streams` and `ids` entries that point past the log's end.
//! - At open, the store checks that the last [`TAIL_CHECK`] events match their hashes;
//!   otherwise it refuses to start, naming the position. The whole log is checked only by
//!   `vigil verify` (it reads every event) and, for its readability and gap-free positions,
//!   by the background [`Log::scan`].
//!
//! # What it does not promise
//! - **It is not a defence against an attacker who can rewrite the whole directory.** Anyone
//!   able to change an event can recompute every later chain hash too, or cut the log back;
//!   the chain then verifies. Catching that needs the head hash anchored somewhere the
//!   attacker cannot write (printed into an external audit record, signed, published to
//!   another system): future work. The head hash is the first 32 bytes of the head's value.
//! - A store written before the chain existed got its chain built over its events as they
//!   were when it was first upgraded ([`super::layout`]): the chain vouches for them only
//!   from then on.
//! - The `streams` and `ids` indexes are not chained; `vigil verify` checks them against the
//!   chained events instead (every event has its entries, every entry points at its event).

use serde::Deserialize;
use sha2::{Digest, Sha256};

use events::RecordedEvent;

use super::layout;
use super::{Log, LogError, be, read_u64, stream_key};

mod report;

pub use report::{Broken, Check, CheckReport, VerifyReport};

/// The hash that stands before position 1.
pub(super) const GENESIS: [u8; 32] = [0; 32];

/// How many of the last positions [`Log::open`] checks against their chain hashes.
pub const TAIL_CHECK: u64 = 512;

/// The chain hash of an event stored as `event`, after the chain hash `prev`.
pub(super) fn link(prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

pub(super) fn refuse(position: u64, what: &str) -> LogError {
    LogError::Damaged(format!(
        "position {position}: {what}. The store does not start on a damaged log: run `vigil verify --data-dir <data dir>` (with the store stopped) for the full report, then restore the store directory from a backup"
    ))
}

/// What a value too short to hold a chain hash is.
const TOO_SHORT: &str = "the stored value is shorter than a chain hash";

impl Log {
    /// The chain hash stored with the event at `position`, `None` if there is no event.
    pub(super) fn chain_at(&self, position: u64) -> Result<Option<[u8; 32]>, LogError> {
        match self.log.get(be(position))? {
            Some(v) => layout::split(&v)
                .map(|(hash, _)| Some(hash))
                .ok_or_else(|| refuse(position, TOO_SHORT)),
            None => Ok(None),
        }
    }

    /// At open: recomputes the chain over the last [`TAIL_CHECK`] positions and loads the
    /// head's hash for the writer.
    pub(super) fn check_tail(&self) -> Result<(), LogError> {
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
                .ok_or_else(|| refuse(p - 1, "the event is missing from the log"))?,
        };
        let mut events = self.log.range(be(start)..);
        for position in start..=head {
            let Some(kv) = events.next() else {
                return Err(refuse(position, "the event is missing from the log"));
            };
            let (key, value) = kv.into_inner()?;
            if read_u64(&key, 0)? != position {
                return Err(refuse(position, "the event is missing from the log"));
            }
            let (stored, event) =
                layout::split(&value).ok_or_else(|| refuse(position, TOO_SHORT))?;
            if link(&prev, event) != stored {
                return Err(refuse(
                    position,
                    "the stored event does not match its chain hash: the event (or its hash) changed after it was written",
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

        // 1. The log in order, each event with its chain hash.
        let mut expected = 1u64;
        // The stored chain hash at position `prev.0`.
        let mut prev: (u64, [u8; 32]) = (0, GENESIS);
        let mut last_position = 0u64;
        for (walked, kv) in (1u64..).zip(self.log.iter()) {
            let (key, stored) = match kv.into_inner() {
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

            let Some((hash, value)) = layout::split(&stored) else {
                r.count(Check::Chain);
                r.fail(Check::Chain, position, TOO_SHORT.into());
                r.count(Check::Decode);
                r.fail(
                    Check::Decode,
                    position,
                    "the stored value holds no event".into(),
                );
                continue;
            };
            let before = if position == 1 {
                Some(GENESIS)
            } else if prev.0 == position - 1 {
                Some(prev.1)
            } else {
                None // the previous position is missing: reported there
            };
            if let Some(before) = before {
                r.count(Check::Chain);
                if link(&before, value) != hash {
                    r.fail(
                        Check::Chain,
                        position,
                        "the stored event does not match its chain hash: the event (or its hash) changed after it was written".into(),
                    );
                }
            }
            // The chain goes on from the stored hash: one changed event breaks one link.
            prev = (position, hash);

            // The event itself, and its entries in the indexes.
            r.count(Check::Decode);
            match serde_json::from_slice::<RecordedEvent>(value) {
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
            Ok(Some(v)) => {
                layout::split(&v).and_then(|(_, event)| serde_json::from_slice(event).ok())
            }
            Ok(None) | Err(_) => None,
        })
    }
}

/// The fields of a stored event the index checks compare (the rest is skipped, not built).
#[derive(Deserialize)]
struct Coordinates {
    id: uuid::Uuid,
    stream: String,
    version: u64,
}
