//! The mirror on disk: a fjall database of its own under `<site data dir>/mirror` (not the
//! outbox's, not the store's format). Keyspace `events`: key the LOCAL position (8 bytes
//! big-endian, 1..n without a gap), value the centre position (8 bytes big-endian) then the
//! event as JSON with its local position; keyspace `state`: `covered`, the centre position
//! the mirror holds every event of its scope up to.
//!
//! # Promises
//! - Local positions are 1..n, gap-free, in centre order; each centre event is held once
//!   ([`MirrorLog::apply`] takes only events after the last centre position it holds).
//! - A slice with new events is on disk (`PersistMode::SyncAll`, one batch per slice) before
//!   `apply` returns, so what the site's bus was shown survives a crash; a slice that only
//!   moves `covered` is not synced (losing it means reading the same range again).
//! - Read back whole at open and checked (keys 1..n, centre positions increasing); a
//!   damaged mirror refuses to open rather than serve a wrong log.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use events::RecordedEvent;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

const COVERED: &[u8] = b"covered";

fn key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

fn number(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// The part of a stored event [`MirrorLog::open`] needs.
#[derive(serde::Deserialize)]
struct Coordinates {
    stream: String,
    version: u64,
    position: u64,
}

/// What one [`MirrorLog::apply`] added: the events' JSON at their local positions from
/// `first`.
#[derive(Debug, Default)]
pub struct Appended {
    /// The local position of the first event (0 when none was added).
    pub first: u64,
    /// Each event as stored, in order.
    pub events: Vec<Bytes>,
}

/// The mirror of the centre's events for a site's scope.
pub struct MirrorLog {
    db: Database,
    events: Keyspace,
    state: Keyspace,
    /// The last local position.
    head: u64,
    /// The centre position of the last event held (dedupes a slice that overlaps).
    last_centre: u64,
    /// See the module docs; ≥ `last_centre`.
    covered: u64,
    /// Stream → (version, local position) of its events held, for stream reads.
    streams: HashMap<String, Vec<(u64, u64)>>,
}

impl MirrorLog {
    /// Opens (or creates) the mirror in `dir` and reads it back.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        runtime::data_dir::create_private_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let db = Database::builder(dir)
            .open()
            .map_err(|e| anyhow::anyhow!("cannot open the mirror in {}: {e}", dir.display()))?;
        let events = db.keyspace("events", KeyspaceCreateOptions::default)?;
        let state = db.keyspace("state", KeyspaceCreateOptions::default)?;
        let damaged =
            |what: String| anyhow::anyhow!("the mirror in {} is damaged: {what}", dir.display());
        let mut log = Self {
            db,
            events,
            state,
            head: 0,
            last_centre: 0,
            covered: 0,
            streams: HashMap::new(),
        };
        for kv in log.events.iter() {
            let (k, v) = kv.into_inner()?;
            let local = number(&k).ok_or_else(|| damaged(format!("key {k:?}")))?;
            let centre = number(&v).ok_or_else(|| damaged(format!("value at {local}")))?;
            let c: Coordinates = serde_json::from_slice(&v[8..])
                .map_err(|e| damaged(format!("event at {local}: {e}")))?;
            if local != log.head + 1 || c.position != local || centre <= log.last_centre {
                return Err(damaged(format!(
                    "event at {local} (centre {centre}) does not follow {} (centre {})",
                    log.head, log.last_centre
                )));
            }
            log.head = local;
            log.last_centre = centre;
            log.streams
                .entry(c.stream)
                .or_default()
                .push((c.version, local));
        }
        let covered = log
            .state
            .get(COVERED)?
            .and_then(|v| number(&v))
            .unwrap_or(0);
        log.covered = covered.max(log.last_centre);
        Ok(log)
    }

    /// The last local position (0: empty).
    pub fn head(&self) -> u64 {
        self.head
    }

    /// The centre position the mirror holds every event of its scope up to.
    pub fn covered(&self) -> u64 {
        self.covered
    }

    /// Adds the events of a slice `(after, upto]` of the centre's log that come after what
    /// is held (`after` must be at or before [`Self::covered`], else nothing changes and
    /// `Ok(None)` says a catch-up is needed), and moves `covered` to `upto`.
    pub fn apply(
        &mut self,
        after: u64,
        upto: u64,
        events: &[RecordedEvent],
    ) -> anyhow::Result<Option<Appended>> {
        if after > self.covered {
            return Ok(None);
        }
        let mut batch_events = Vec::new();
        let mut last = self.last_centre;
        for e in events.iter().filter(|e| e.position > self.last_centre) {
            anyhow::ensure!(
                e.position > last && e.position <= upto,
                "the centre sent event {} out of order in the slice ({after}, {upto}]",
                e.position
            );
            last = e.position;
            batch_events.push(e);
        }
        if batch_events.is_empty() && upto <= self.covered {
            return Ok(Some(Appended::default()));
        }
        let mut batch = self
            .db
            .batch()
            .durability((!batch_events.is_empty()).then_some(PersistMode::SyncAll));
        let mut appended = Appended {
            first: self.head + 1,
            events: Vec::with_capacity(batch_events.len()),
        };
        let mut local = self.head;
        let mut added = Vec::with_capacity(batch_events.len());
        for e in &batch_events {
            local += 1;
            let mut at_site = (*e).clone();
            at_site.position = local;
            let json = serde_json::to_vec(&at_site)?;
            let mut value = Vec::with_capacity(8 + json.len());
            value.extend_from_slice(&key(e.position));
            value.extend_from_slice(&json);
            batch.insert(&self.events, key(local), value);
            added.push((e.stream.as_str().to_owned(), e.version, local));
            appended.events.push(Bytes::from(json));
        }
        let covered = upto.max(self.covered);
        batch.insert(&self.state, COVERED, key(covered).to_vec());
        batch.commit()?;
        self.head = local;
        self.last_centre = last;
        self.covered = covered;
        for (stream, version, local) in added {
            self.streams
                .entry(stream)
                .or_default()
                .push((version, local));
        }
        Ok(Some(appended))
    }

    fn event(&self, local: u64) -> anyhow::Result<Bytes> {
        let v = self
            .events
            .get(key(local))?
            .ok_or_else(|| anyhow::anyhow!("the mirror lost its event {local}"))?;
        Ok(Bytes::copy_from_slice(&v[8..]))
    }

    /// Events from local position `from`, at most `limit` and about `max_bytes` (at least
    /// one), as stored.
    pub fn read(&self, from: u64, limit: usize, max_bytes: usize) -> anyhow::Result<Vec<Bytes>> {
        let mut out = Vec::new();
        let mut bytes = 0;
        for kv in self.events.range(key(from.max(1))..) {
            let (_, v) = kv.into_inner()?;
            let e = Bytes::copy_from_slice(&v[8.min(v.len())..]);
            bytes += e.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Events of `stream` from version `from_version`, at most `limit` and about
    /// `max_bytes`, and the stream's last version held (0: none).
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> anyhow::Result<(Vec<Bytes>, u64)> {
        let Some(held) = self.streams.get(stream) else {
            return Ok((Vec::new(), 0));
        };
        let version = held.last().map_or(0, |(v, _)| *v);
        let mut out = Vec::new();
        let mut bytes = 0;
        for (_, local) in held.iter().filter(|(v, _)| *v >= from_version) {
            let e = self.event(*local)?;
            bytes += e.len();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e);
            if out.len() >= limit {
                break;
            }
        }
        Ok((out, version))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    fn event(centre: u64, n: u8, version: u64) -> RecordedEvent {
        serde_json::from_value(json!({
            "id": uuid::Uuid::new_v4(),
            "stream": format!("incident-00000000-0000-0000-0000-0000000000{n:02x}"),
            "type": "IncidentReported", "v": 1, "data": {"c": centre}, "meta": {},
            "position": centre, "version": version,
            "recorded_at": "2026-11-27T02:40:03.123Z",
        }))
        .unwrap()
    }

    fn positions(log: &MirrorLog) -> Vec<(u64, u64)> {
        log.read(1, 1000, usize::MAX)
            .unwrap()
            .iter()
            .map(|b| {
                let e: RecordedEvent = serde_json::from_slice(b).unwrap();
                (e.position, e.data["c"].as_u64().unwrap())
            })
            .collect()
    }

    /// Overlapping slices add each centre event once at the next local position; a slice
    /// after a gap is refused; all of it is read back after a reopen.
    #[test]
    fn slices_become_a_gap_free_local_log_once_each_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut log = MirrorLog::open(dir.path()).unwrap();
            let a = log
                .apply(0, 10, &[event(3, 1, 1), event(7, 2, 1)])
                .unwrap()
                .unwrap();
            assert_eq!((a.first, a.events.len()), (1, 2));
            // Overlaps what is held: only 12 is new.
            let b = log
                .apply(5, 14, &[event(7, 2, 1), event(12, 1, 2)])
                .unwrap()
                .unwrap();
            assert_eq!((b.first, b.events.len()), (3, 1));
            // A gap: (20, 30] after covered 14.
            assert!(log.apply(20, 30, &[event(25, 1, 3)]).unwrap().is_none());
            // Empty: moves covered only.
            log.apply(14, 18, &[]).unwrap().unwrap();
            assert_eq!(log.covered(), 18);
            assert!(log.apply(18, 20, &[event(30, 1, 3)]).is_err(), "past upto");
        }
        let log = MirrorLog::open(dir.path()).unwrap();
        assert_eq!(positions(&log), [(1, 3), (2, 7), (3, 12)]);
        assert_eq!(log.head(), 3);
        assert!(log.covered() >= 12);
        let stream = "incident-00000000-0000-0000-0000-000000000001";
        let (events, version) = log.read_stream(stream, 2, 10, usize::MAX).unwrap();
        assert_eq!((events.len(), version), (1, 2));
        assert_eq!(log.read_stream("incident-x", 1, 10, 1).unwrap().1, 0);
        assert_eq!(log.read(3, 10, 1).unwrap().len(), 1);
    }
}
