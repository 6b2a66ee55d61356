//! The orderly close of the log: everything synced, the memtables written out as table
//! files, and the head recorded as the acknowledged-head mark ([`super::mark`]).
//!
//! Why the memtables are written out: fjall rebuilds at every open the memtables it had not
//! flushed, by reading its journal back and inserting every entry again (up to three
//! memtables of 16 MiB). After an orderly close there are none, so the open only reads the
//! journal past them. A kill skips this, and the next open rebuilds them as before: the
//! journal, synced before every acknowledgement, holds every event either way.

use std::time::{Duration, Instant};

use fjall::PersistMode;

use super::{Log, LogError};

/// How long [`Log::close`] waits for the memtables to be written out: three memtables of at
/// most [`super::MEMTABLE_BYTES`] take well under a second on a healthy disk.
const CLOSE_FLUSH_WAIT: Duration = Duration::from_secs(10);

impl Log {
    /// Flushes everything to disk and records the head as the acknowledged-head mark;
    /// called once at shutdown.
    ///
    /// The memtables are written out as table files too (waiting at most
    /// [`CLOSE_FLUSH_WAIT`]), so that the next open finds every journal entry already in a
    /// table and rebuilds no memtable from the journal (up to 3 × 16 MiB of events,
    /// otherwise inserted again one by one at every start).
    pub fn close(&self) -> Result<(), LogError> {
        self.db.persist(PersistMode::SyncAll)?;
        self.flush_memtables(CLOSE_FLUSH_WAIT);
        // The log is on disk; a mark that cannot be written (a full disk) leaves the last
        // one, which is still true, so the stop goes on.
        if let Err(e) = self.record_mark() {
            tracing::warn!(error = %e, "the acknowledged-head mark was not recorded at shutdown; the previous one stays");
        }
        Ok(())
    }

    /// Seals each keyspace's memtable and waits (at most `wait`) until fjall has written the
    /// sealed ones to table files. Only a shortcut for the next open: the journal, already
    /// synced, holds every event either way, so a flush that fails or does not finish in
    /// time (a slow or full disk) is logged and the close goes on.
    fn flush_memtables(&self, wait: Duration) {
        let keyspaces = [&self.log, &self.streams, &self.ids];
        for keyspace in keyspaces {
            if let Err(e) = keyspace.rotate_memtable() {
                tracing::warn!(error = %e, "the memtables were not written out at shutdown; the next start reads them back from the journal");
                return;
            }
        }
        let started = Instant::now();
        while keyspaces.iter().any(|k| k.sealed_memtable_count() > 0) {
            if started.elapsed() >= wait {
                tracing::warn!(
                    waited_ms = started.elapsed().as_millis() as u64,
                    "the memtables were not all written out at shutdown in time; the next start reads them back from the journal"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "memtables written out at shutdown"
        );
    }
}
