//! The acknowledged-head mark: the last position known durable, recorded outside fjall's
//! journal, in `<store dir>/acknowledged-head`.
//!
//! # Why
//! fjall reads its journal front to back at open and discards everything from the first
//! record it cannot read: it cannot tell a damaged record header (a flipped tag or length)
//! from the torn tail a power loss leaves, so it truncates the journal and opens. Without a
//! record kept elsewhere, the log would then start shorter than what the store acknowledged,
//! consistent and gap-free, and nobody would be told. The mark is that record.
//!
//! # What it promises
//! - **It never names a position that was not durable.** It is written from [`Log::head`],
//!   which moves only after a group's fdatasync, and only by logs that fsync before
//!   acknowledging ([`Durability::SyncData`]). So after a power loss or a crash the log's
//!   head is at or past the mark, unless files were damaged or lost.
//! - **A log that ends before the mark, or holds another event at the mark's position,
//!   is refused** by [`Log::open`] (and failed by [`Log::verify`]), naming the positions that
//!   are missing and the next step, instead of being served.
//! - **The mark itself is written atomically**: a temporary file, fsync, rename, fsync of the
//!   directory. A crash leaves the old mark or the new one, never half of one.
//!
//! # What it does not promise
//! - It lags: the store records it about once a second ([`MARK_EVERY`]) and at a clean
//!   shutdown, off the write path (a per-group record would double the fsyncs of every
//!   append). Events acknowledged in the last second before damage hit are caught only if
//!   their chain entries or later records survived; otherwise they are lost silently, as
//!   before the mark existed.
//! - A damaged mark file is reported as damage ([`Log::open`] refuses): a bit flip in it
//!   cannot be told from a log that lost events. When `vigil verify` finds the log itself
//!   intact up to the position expected, deleting the file is safe (the store writes a new
//!   one within a second of starting).
//! - A store directory restored from a backup carries its own mark; a mark file copied
//!   from a newer store into an older one makes the older one refuse, as it should.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Durability, Log, LogError};

/// The mark's file name in the store directory (fjall ignores files without `.jnl` there).
pub const FILE: &str = "acknowledged-head";

/// How often the store records the mark while it runs.
pub const MARK_EVERY: Duration = Duration::from_secs(1);

/// Largest mark file read back; a real one is about 150 bytes.
const MAX_BYTES: u64 = 4096;

/// A durable position and the chain hash of the event there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The position (0: an empty log; nothing to check).
    pub head: u64,
    /// The chain hash at `head` ([`super::chain`]).
    pub chain: [u8; 32],
    /// When the mark was written (for the operator reading a refusal).
    pub written_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    acknowledged_head: u64,
    chain_hash: String,
    written_at: String,
}

/// Path of the mark in the store directory `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the mark of the store in `dir`: `Ok(None)` when there is none (a store written
/// before marks existed, or never run with fsync). A file that does not parse is
/// [`LogError::Damaged`].
pub fn read(dir: &Path) -> Result<Option<Mark>, LogError> {
    let path = path(dir);
    let damaged = |why: String| {
        LogError::Damaged(format!(
            "the acknowledged-head record {} is damaged ({why}). The store does not start without knowing what it acknowledged: keep it stopped, run `vigil verify --data-dir <data dir>`; if it reports the log intact up to the position you expect, delete that file and start again, otherwise restore the store directory from a backup",
            path.display()
        ))
    };
    let file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(damaged(format!("cannot open it: {e}"))),
    };
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, MAX_BYTES), &mut bytes)
        .map_err(|e| damaged(format!("cannot read it: {e}")))?;
    let on_disk: OnDisk =
        serde_json::from_slice(&bytes).map_err(|e| damaged(format!("not a mark: {e}")))?;
    let chain = hex::decode(&on_disk.chain_hash)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| damaged("its chain hash is not 32 bytes of hex".into()))?;
    let written_at = OffsetDateTime::parse(&on_disk.written_at, &Rfc3339)
        .map_err(|e| damaged(format!("its time does not parse: {e}")))?;
    Ok(Some(Mark {
        head: on_disk.acknowledged_head,
        chain,
        written_at,
    }))
}

/// Writes `mark` as the mark of the store in `dir`, atomically and durably.
pub fn write(dir: &Path, mark: &Mark) -> std::io::Result<()> {
    let on_disk = OnDisk {
        acknowledged_head: mark.head,
        chain_hash: hex::encode(mark.chain),
        written_at: mark
            .written_at
            .format(&Rfc3339)
            .map_err(std::io::Error::other)?,
    };
    let bytes = serde_json::to_vec(&on_disk).map_err(std::io::Error::other)?;
    write_atomically(dir, FILE, &bytes)
}

/// Replaces the file `name` in `dir` with `bytes` so that a crash leaves the old file or the
/// new one, never half of one: a temporary file, fsync, rename, fsync of the directory.
pub(super) fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(name))?;
    fs::File::open(dir)?.sync_all()
}

impl Log {
    /// The mark for `position` of this log: its chain hash, stamped now. `Ok(None)` when the
    /// position has no chain entry. For tools that set a mark by hand (the damage scenario
    /// sets the one a power loss would leave).
    pub fn mark_for(&self, position: u64) -> Result<Option<Mark>, LogError> {
        let chain = if position == 0 {
            Some(super::chain::GENESIS)
        } else {
            self.chain_at(position)?
        };
        Ok(chain.map(|chain| Mark {
            head: position,
            chain,
            written_at: OffsetDateTime::now_utc(),
        }))
    }

    /// Records the current head as the mark if it moved since the last one. Nothing for a
    /// log that does not fsync before acknowledging, or that takes no writes. Whether it
    /// wrote.
    pub fn record_mark(&self) -> Result<bool, LogError> {
        if self.durability != Durability::SyncData || self.is_poisoned() {
            return Ok(false);
        }
        let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
        let head = self.head();
        if head <= *marked {
            return Ok(false);
        }
        let Some(mark) = self.mark_for(head)? else {
            return Err(LogError::Damaged(format!(
                "position {head} was committed but has no chain entry; run `vigil verify --data-dir <data dir>`"
            )));
        };
        write(&self.dir, &mark).map_err(LogError::Mark)?;
        *marked = head;
        Ok(true)
    }

    /// What is wrong with this log measured against its mark, as (the first position that
    /// fails, the problem): `None` when there is no mark or the log holds it.
    pub(super) fn mark_problem(&self) -> Result<Option<(u64, String)>, LogError> {
        match read(&self.dir)? {
            Some(mark) => self.problem_with(&mark),
            None => Ok(None),
        }
    }

    /// What is wrong with this log measured against `mark` (see [`Log::mark_problem`]).
    pub(super) fn problem_with(&self, mark: &Mark) -> Result<Option<(u64, String)>, LogError> {
        {
            let mut marked = self.marked.lock().unwrap_or_else(|p| p.into_inner());
            *marked = (*marked).max(mark.head);
        }
        let head = self.head();
        let when = mark
            .written_at
            .format(&Rfc3339)
            .unwrap_or_else(|_| "an unknown time".into());
        let next = "The store does not serve a log shorter than what it acknowledged: keep it stopped, copy the store directory aside, run `vigil verify --data-dir <data dir>`, then restore the store directory from a backup";
        if head < mark.head {
            return Ok(Some((
                head + 1,
                format!(
                    "acknowledged events are missing: the log ends at position {head}, but positions up to {} had been acknowledged (recorded in {} at {when}). A damaged journal record makes the storage engine drop everything after it without an error. {next}",
                    mark.head,
                    path(&self.dir).display()
                ),
            )));
        }
        match self.mark_for(mark.head)? {
            Some(now) if now.chain != mark.chain => Ok(Some((
                mark.head,
                format!(
                    "the event at position {} is not the one acknowledged there (its chain hash differs from the one recorded in {} at {when}): the log was damaged or replaced. {next}",
                    mark.head,
                    path(&self.dir).display()
                ),
            ))),
            // No chain entry there (a chain still being built for an older store, or one
            // lost): nothing to compare; the chain's own checks report a lost one.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn mark(head: u64) -> Mark {
        Mark {
            head,
            chain: [7; 32],
            written_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
        }
    }

    #[test]
    fn a_written_mark_reads_back_and_replaces_the_last() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), &mark(3)).unwrap();
        write(dir.path(), &mark(9)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), Some(mark(9)));
        assert!(!dir.path().join(format!("{FILE}.tmp")).exists());
    }

    #[test]
    fn a_damaged_mark_is_damage_that_names_the_file_and_the_next_step() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [
            &b""[..],
            b"{\"acknowledged_head\":1",
            b"{\"acknowledged_head\":1,\"chain_hash\":\"zz\",\"written_at\":\"2027-01-15T08:00:00Z\"}",
            b"{\"acknowledged_head\":1,\"chain_hash\":\"00\",\"written_at\":\"2027-01-15T08:00:00Z\"}",
        ] {
            fs::write(path(dir.path()), bytes).unwrap();
            match read(dir.path()) {
                Err(LogError::Damaged(m)) => {
                    assert!(m.contains(FILE) && m.contains("vigil verify"), "{m}")
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
