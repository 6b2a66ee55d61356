//! The log as the server holds it, and how writes resume by themselves after the disk was
//! full.
//!
//! # Why a reopen
//! When a journal write or sync fails, fjall poisons the database: it takes no more writes,
//! and its journal writer may still hold, in its buffer, the part of the failed group that did
//! not reach the file. Neither can be cleared in place; the way out is to drop the database
//! and open it again — what a restart of the store does. [`LiveLog`] does exactly that
//! in-process, but only when the cause is a **full disk** (`ENOSPC`, `EDQUOT`) and only once
//! a probe write ([`probe_space`]: 1 MiB written, fdatasync'd and removed in the store's
//! directory) shows there is space again; it tries at most every [`RETRY_EVERY`], when an
//! append arrives. Any other failure (an I/O error, a failed fsync) still stops writes until
//! an operator has checked the disk and restarted the store: after a failed fsync the page
//! cache may hold data that never reached the disk, and reopening would read it back as if it
//! had.
//!
//! # Why it is safe
//! - **Nothing of the failed group was acknowledged**: every append of it, and every append
//!   after it until the reopen, is answered `unavailable` (disk full, retry with the same ids).
//! - **The failed group is either whole or absent, never half**: what reached the journal is
//!   either cut short (its end marker and checksum missing: fjall discards it at open, as it
//!   discards a torn tail after a power loss) or, if the rest of the buffer is written when
//!   the old database is dropped (space has returned by then), whole and checksummed: fjall
//!   replays it, and its events sit right after the last acknowledged ones, exactly as if the
//!   commit had succeeded and its answer been lost. A client's retry with the same ids is then
//!   answered with those positions (`duplicate`). Positions and versions stay gap-free.
//! - **What the reopen found is durable before anything is built on it**: the journal is
//!   fsync'd ([`Log::sync_all`]) before the new log takes its first append.
//! - **The reopened log is checked like a restarted one** ([`Log::open`]: head, chain, tail),
//!   and the writer's caches (stream versions, the head's chain hash) are loaded afresh.
//! - Reads go on while the disk is full (the old log still reads); during the reopen itself
//!   (milliseconds) they are answered `unavailable` ([`LogError::Reopening`]), and retried.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::{Committed, Durability, Failure, Log, LogError, Pending, Prepared};

/// How often, at most, the writer tries to resume while the disk is full.
pub const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How much the probe writes.
const PROBE_BYTES: usize = 1 << 20;

/// The probe's file, in the store's directory (fjall ignores files it does not know there).
const PROBE_FILE: &str = "vigil-space-probe";

/// How long the reopen waits for reads still using the old log before trying again later.
const READERS_GRACE: Duration = Duration::from_secs(5);

/// Whether the disk of `dir` takes writes: 1 MiB written, fdatasync'd and removed. The
/// error (e.g. `ENOSPC`) if not.
pub fn probe_space(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let written = (|| {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_data()
    })();
    let _ = std::fs::remove_file(&path);
    written
}

/// A group prepared by [`LiveLog::prepare_group`], held with the log it was prepared on (a
/// reopen in between must not move it to another one). It holds that log open until it is
/// committed; a reopen waits for that, as it waits for reads.
pub struct PreparedGroup {
    log: Option<(Arc<Log>, Prepared)>,
}

impl PreparedGroup {
    /// The log it was prepared on and the prepared group, unless it was refused whole.
    pub fn parts(&mut self) -> Option<(&Log, &mut Prepared)> {
        self.log.as_mut().map(|(log, p)| (&**log, p))
    }
}

/// The open log, replaced by a freshly opened one after the disk was full (see the module
/// docs). Readers take the current one for each request.
pub struct LiveLog {
    dir: PathBuf,
    durability: Durability,
    current: RwLock<Option<Arc<Log>>>,
    /// When the writer last tried to resume.
    last_try: Mutex<Option<Instant>>,
    /// The last head seen, for metrics while the log is being reopened.
    head: AtomicU64,
}

impl LiveLog {
    /// Opens the log under `dir` ([`Log::open`]).
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, LogError> {
        let log = Log::open(dir, durability)?;
        Ok(Self {
            dir: dir.to_owned(),
            durability,
            head: AtomicU64::new(log.head()),
            current: RwLock::new(Some(Arc::new(log))),
            last_try: Mutex::new(None),
        })
    }

    /// The current log, or [`LogError::Reopening`] while it is being reopened.
    pub fn get(&self) -> Result<Arc<Log>, LogError> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(LogError::Reopening)
    }

    /// Last durable position.
    pub fn head(&self) -> u64 {
        match self.get() {
            Ok(log) => log.head(),
            Err(_) => self.head.load(Ordering::Acquire),
        }
    }

    /// Stops writes on the current log for `why`.
    pub fn stop_writes(&self, why: Failure) {
        if let Ok(log) = self.get() {
            log.stop_writes(why);
        }
    }

    /// Commits a group on the current log ([`Log::commit_group`]): [`LiveLog::prepare_group`]
    /// then [`LiveLog::commit_prepared`].
    pub fn commit_group(&self, group: &mut [Pending]) -> Result<Committed, LogError> {
        let prepared = self.prepare_group(group)?;
        Ok(self.commit_prepared(group, prepared))
    }

    /// Prepares a group on the current log ([`Log::prepare_group`]). While the disk is full it
    /// first tries to resume (at most every [`RETRY_EVERY`]); until it has, the group is
    /// refused as `unavailable`, saying the disk is full.
    pub fn prepare_group(&self, group: &mut [Pending]) -> Result<PreparedGroup, LogError> {
        let stalled = self.get().map_or(true, |log| log.is_disk_full());
        if stalled {
            self.try_resume();
        }
        match self.get() {
            Ok(log) => {
                let prepared = log.prepare_group(group)?;
                Ok(PreparedGroup {
                    log: Some((log, prepared)),
                })
            }
            Err(_) => {
                let refusal = Failure::DiskFull.refusal();
                for p in group.iter_mut() {
                    p.outcome = Some(Err(refusal.clone()));
                }
                Ok(PreparedGroup { log: None })
            }
        }
    }

    /// Writes a prepared group on the log it was prepared on ([`Log::commit_prepared`]).
    /// Groups are committed in the order they were prepared.
    pub fn commit_prepared(&self, group: &mut [Pending], prepared: PreparedGroup) -> Committed {
        match prepared.log {
            Some((log, prepared)) => {
                let committed = log.commit_prepared(group, prepared);
                self.head.store(log.head(), Ordering::Release);
                committed
            }
            None => Committed { events: vec![] },
        }
    }

    /// Drops the log and opens it again if the disk takes writes again. Whether it did.
    fn try_resume(&self) -> bool {
        {
            let mut last = self.last_try.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|t| t.elapsed() < RETRY_EVERY) {
                return false;
            }
            *last = Some(Instant::now());
        }
        if let Err(e) = probe_space(&self.dir) {
            tracing::debug!(error = %e, "the disk still takes no writes");
            return false;
        }
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old {
            // Reads in flight finish on the old log; a background scan stops.
            old.start_closing();
            let deadline = Instant::now() + READERS_GRACE;
            while Arc::strong_count(&old) > 1 {
                if Instant::now() > deadline {
                    tracing::warn!("reads still hold the event log; reopening it later");
                    *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(old);
                    return false;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            // fjall writes what its journal buffer still holds (space is back), fsyncs it,
            // stops its workers and releases the directory's lock.
            drop(old);
        }
        let reopened = Log::open(&self.dir, self.durability).and_then(|log| {
            log.sync_all()?;
            Ok(log)
        });
        match reopened {
            Ok(log) => {
                tracing::warn!(
                    head = log.head(),
                    "disk space is back: the event log was reopened and takes writes again"
                );
                self.head.store(log.head(), Ordering::Release);
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(log));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "reopening the event log after the disk was full failed; trying again");
                false
            }
        }
    }

    /// Flushes the current log to disk; called once at shutdown.
    pub fn close(&self) -> Result<(), LogError> {
        match self.get() {
            Ok(log) if !log.is_poisoned() => log.close(),
            _ => Ok(()),
        }
    }
}
