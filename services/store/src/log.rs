//! The append-only log on fjall: layout, reads, and the commit of one group of appends.
//!
//! # On-disk layout (layout 2: three keyspaces, written together in one atomic fjall batch)
//! - `log`:     position (u64 big-endian) → the event's chain hash (32 bytes) followed by the
//!   recorded event as JSON. Big-endian keys sort in position order, so a range scan is a
//!   read of the log in order. The hash is `SHA-256(the chain hash of the previous position,
//!   or 32 zero bytes for position 1 ‖ the exact stored event bytes at this position)`. What
//!   it promises, and what it does not, is written in [`chain`](self::chain) (the module that
//!   also holds the checks at open and [`Log::verify`]); reads hand out the event bytes after
//!   it without a copy ([`StoredEvent`]).
//! - `streams`: `<stream>/` + version (u64 BE) → position (u64 BE). `/` never occurs in a
//!   stream name, so the prefix `<stream>/` selects exactly one stream.
//! - `ids`:     event id (16 bytes) → position (u64 BE) + version (u64 BE). Permanent: an
//!   event id is an idempotency key for ever, across restarts.
//! - `replication` (only on a replica of a several-node centre, see [`journal`]): the last
//!   journal sequence applied, written in the same batch as the events it covers.
//! - The file `layout` records the layout; [`layout`] owns it and the one-time upgrade of a
//!   directory in layout 1 (which kept the chain hashes in a fourth keyspace).
//!
//! # Promises
//! - Positions are gap-free from 1 and versions gap-free from 1 per stream, because only
//!   [`Log::commit_group`] writes, from one thread, and a group is one atomic batch.
//! - A group is on disk (journal fdatasync'd) before `commit_group` returns `Ok`; fjall applies
//!   a batch to its memtables only after the journal write and sync, so readers never see an
//!   event that is not yet durable.
//! - A failed write or sync stops writes: every later append is refused as `unavailable`
//!   with the cause, rather than pretending. When the cause is a full disk (`ENOSPC`,
//!   `EDQUOT`), [`live::LiveLog`] reopens the log by itself once space returns (see there
//!   why that is safe); any other failure waits for an operator to restart the store.
//! - Damaged files are named as such: a storage error that says the files are damaged (a
//!   checksum, a truncated or missing file, a damaged journal record) becomes
//!   [`LogError::Damaged`] with what is damaged and what to do next, and [`Log::scan`] reads
//!   every block once after start to find damage the checks at open do not reach.
//! - **Memory is bounded by configuration, not by the number of events**: three memtables of
//!   at most 16 MiB (each with a sealed one while it is flushed), a 32 MiB block cache and a
//!   version cache of at most 200,000 streams (~20 MB). What still grows is fjall's index and
//!   filter data per table file, about 50 bytes an event (a one-hour soak: 176 MiB at 285,000
//!   events, 225 MiB at 1.25 million; docs/RELIABILITY.md).
//! - [`Log::open`] refuses a log whose head is not consistent (it must start at 1, the last
//!   few hundred events must match their chain hashes, and it must reach the
//!   acknowledged-head [`mark`]), naming the position, rather
//!   than serving a damaged or shortened log. [`Log::verify`] checks
//!   everything, offline (`vigil verify`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use events::store_api::StoreError;
use events::{RecordedEvent, StreamName};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use uuid::Uuid;

use crate::incoming::Incoming;

pub mod chain;
mod close;
pub mod journal;
pub mod layout;
pub mod live;
pub mod mark;
mod write;

pub use chain::{Broken, Check, CheckReport, VerifyReport};
pub use layout::StoredEvent;
pub use write::{Committed, CommittedEvent, Pending, Prepared, runs};

/// The storage engine, re-exported at the version this crate writes with, for tools and
/// tests that must open a stopped store's directory themselves (e.g. to damage a copy on
/// purpose and prove that [`Log::verify`] notices). Nothing in Vigil writes through it.
#[doc(hidden)]
pub use fjall;

/// The writer's maps (stream versions, event ids of the groups in flight): hashed several
/// times per event, so with foldhash rather than SipHash (seeded per map, so ids a client
/// chooses cannot be aimed at one bucket without the seed).
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// Errors opening or reading the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// fjall refused (I/O error, poisoned after a failed sync). Errors that say the files are
    /// damaged become [`LogError::Damaged`] instead (see `From<fjall::Error>`).
    #[error("storage error: {0}")]
    Storage(fjall::Error),
    /// A stored value is not what this build wrote: the files are damaged or foreign.
    #[error("damaged log: {0}")]
    Damaged(String),
    /// Another process (a running store, `vigil up`, or a tool) holds the directory's lock.
    #[error(
        "the store directory {0} is locked by another process: a store (`vigil up` or `vigil store`) or a tool is using it; stop it first"
    )]
    Locked(String),
    /// The log is being reopened (after the disk was full); retry shortly.
    #[error("the event log is being reopened after the disk was full; retry shortly")]
    Reopening,
    /// The store directory is in a layout this build does not read ([`layout`]): the message
    /// says which and what to do.
    #[error("{0}")]
    Layout(String),
    /// Writing the acknowledged-head mark ([`mark`]) failed; the log itself is unaffected.
    #[error("cannot record the acknowledged head: {0}")]
    Mark(#[source] std::io::Error),
}

impl From<fjall::Error> for LogError {
    fn from(e: fjall::Error) -> Self {
        match damage_in(&e) {
            Some(what) => LogError::Damaged(format!(
                "{what} ({e}). The store does not run on damaged files: keep it stopped, run `vigil verify --data-dir <data dir>` for the full report, then restore the store directory from a backup"
            )),
            None => LogError::Storage(e),
        }
    }
}

/// What a storage error says is damaged, when it says the files are damaged (rather than
/// the disk failing, being full, or being locked).
fn damage_in(e: &fjall::Error) -> Option<&'static str> {
    use fjall::{Error as F, LsmError as L};
    let truncated = |io: &std::io::Error| io.kind() == std::io::ErrorKind::UnexpectedEof;
    match e {
        F::JournalRecovery(_) => Some(
            "the store's journal is damaged: a record before its end does not match its checksum or its length",
        ),
        F::Unrecoverable | F::Storage(L::Unrecoverable) => Some(
            "the store's files are damaged: a table file its manifest names is missing, truncated or unreadable",
        ),
        F::Storage(L::ChecksumMismatch { .. }) => Some(
            "the store's files are damaged: a block of a table file does not match its checksum",
        ),
        F::Storage(
            L::Decompress(_)
            | L::InvalidTag(_)
            | L::InvalidTrailer
            | L::InvalidHeader(_)
            | L::Utf8(_),
        )
        | F::Decompress(_)
        | F::InvalidTrailer
        | F::InvalidTag(_) => Some(
            "the store's files are damaged: a file is not as it was written (truncated or changed)",
        ),
        F::InvalidVersion(_) | F::Storage(L::InvalidVersion(_)) => Some(
            "the store's format version is unreadable or not one this build writes (a damaged `version` file, or files from another fjall version)",
        ),
        F::Io(io) | F::Storage(L::Io(io)) if truncated(io) => Some(
            "the store's files are damaged: a file is shorter than its contents say (truncated)",
        ),
        _ => None,
    }
}

thread_local! {
    /// Set while this thread opens a fjall database (see [`open_database`]).
    static OPENING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Opens fjall's database in `dir`.
///
/// fjall checks some of what it reads back from its journal with `debug_assert!` (e.g. that
/// an uncompressed record's two length fields agree): on a damaged record, a debug build
/// panics where a release build returns an error (and the record then fails its checksum).
/// The open runs under `catch_unwind`, with the panic's report kept off stderr (only on this
/// thread, only during the open), so both builds refuse damaged files the same way, with
/// [`LogError::Damaged`].
fn open_database(dir: &Path) -> Result<Database, LogError> {
    static QUIET_WHILE_OPENING: std::sync::Once = std::sync::Once::new();
    QUIET_WHILE_OPENING.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !OPENING.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    OPENING.with(|o| o.set(true));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Database::builder(dir).cache_size(BLOCK_CACHE_BYTES).open()
    }));
    OPENING.with(|o| o.set(false));
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(fjall::Error::Locked)) => Err(LogError::Locked(dir.display().to_string())),
        Ok(Err(e)) => Err(LogError::from(e)),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("no message");
            Err(LogError::Damaged(format!(
                "the store's files are damaged: reading them back failed a check of the storage engine ({}). The store does not run on damaged files: keep it stopped, run `vigil verify --data-dir <data dir>` for the full report, then restore the store directory from a backup",
                what.replace('\n', " ")
            )))
        }
    }
}

/// Whether a storage error is the disk (or the user's quota) being full.
pub(crate) fn is_disk_full(e: &fjall::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return io_is_full(io);
        }
        source = err.source();
    }
    false
}

/// `ENOSPC` or `EDQUOT`.
pub(crate) fn io_is_full(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    ) || matches!(io.raw_os_error(), Some(28 | 122))
}

/// Why a log takes no writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Opened by [`Log::open_for_verify`]: never a writer.
    ReadOnly,
    /// A write failed because the disk is full; [`live::LiveLog`] reopens it once space
    /// returns.
    DiskFull,
    /// A write or sync failed for another reason: an operator must check the disk and
    /// restart the store.
    Failed(String),
    /// The files are damaged (found after start by [`Log::scan`] or a read).
    Damaged(String),
}

impl Failure {
    /// The refusal an append gets.
    pub fn refusal(&self) -> StoreError {
        StoreError::unavailable(match self {
            Failure::ReadOnly => {
                "this copy of the event log is open read-only, for checking; it takes no writes"
                    .to_owned()
            }
            Failure::DiskFull => {
                "the disk holding the event log is full, so this append was not acknowledged. Free space on that disk (or grow it): the store resumes writing by itself within seconds of space returning. Retry with the same event ids (safe: an append that did reach the disk is answered with its original positions)".to_owned()
            }
            Failure::Failed(cause) => format!(
                "the store stopped taking writes after a disk write or sync failed ({cause}); this append was not acknowledged. An operator must check the disk and restart the store; retry with the same event ids afterwards"
            ),
            Failure::Damaged(what) => format!(
                "the store stopped taking writes because its files are damaged: {what}"
            ),
        })
    }
}

/// Whether a commit waits for the disk. Only tests that prove the crash harness can see
/// loss turn it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fdatasync the journal before acknowledging (the only production setting).
    SyncData,
    /// Leave the data in OS buffers: survives a process crash, not a power loss.
    UnsafeNoSync,
}

/// The log and its indexes.
pub struct Log {
    db: Database,
    log: Keyspace,
    streams: Keyspace,
    ids: Keyspace,
    durability: Durability,
    /// Last committed position; read by request handlers and metrics without taking a lock.
    head: AtomicU64,
    /// Set when writes stop (see `failure`); never cleared on this `Log` (after a full disk,
    /// [`live::LiveLog`] opens a new one).
    poisoned: AtomicBool,
    /// Why writes stopped.
    failure: std::sync::Mutex<Option<Failure>>,
    /// Set when this `Log` is about to be dropped and reopened: [`Log::scan`] stops early.
    closing: AtomicBool,
    /// The directory, for the free-space probe.
    dir: std::path::PathBuf,
    /// The writer's view of the log, which runs ahead of `head` by the groups prepared but
    /// not yet committed (see [`Log::prepare_group`]). Only the preparing thread touches it,
    /// so the mutex is never contended; it only makes `Log` shareable with the readers.
    ahead: std::sync::Mutex<Ahead>,
    /// Groups prepared but not yet committed, oldest first: their ids and stream versions
    /// are visible to the groups prepared after them. The committer removes a group once its
    /// batch is applied, when the same entries are found on disk.
    inflight: std::sync::Mutex<VecDeque<Inflight>>,
    /// The highest position recorded in the acknowledged-head mark ([`mark`]). Held while
    /// the mark is written, so the periodic record and the one at close never interleave.
    marked: std::sync::Mutex<u64>,
    /// The keyspace of the replicated journal's applied sequence ([`journal`]), opened (and
    /// created) only by a replica: a store that does not replicate never creates it, so its
    /// files stay exactly as before.
    journal: std::sync::OnceLock<Keyspace>,
}

/// Streams whose version is kept in memory; past this the cache starts over (a miss costs
/// one prefix scan, so clearing is cheap and bounds memory to ~20 MB).
const MAX_CACHED_VERSIONS: usize = 200_000;

/// Largest memtable of each of the three keyspaces before fjall flushes it to a table file.
/// fjall's default, 64 MiB, let a store hold up to four of them (one per keyspace in layout 1) (and their sealed copies
/// while flushing) in memory: a soak saw the store pass 330 MiB after 290,000 events, still
/// climbing.
const MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;

/// fjall's block cache (its default, stated so the bound below is written in one place).
const BLOCK_CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The writer's view of the log: where the next group starts, if every group prepared so
/// far commits.
struct Ahead {
    /// Last position prepared (≥ the durable head).
    head: u64,
    /// Chain hash of that position (32 zero bytes for an empty log).
    last_hash: [u8; 32],
    /// Current version of recently written streams, prepared groups included. It saves a
    /// reverse prefix scan of the `streams` keyspace per append, the costliest lookup on the
    /// write path.
    versions: Map<StreamName, u64>,
}

/// A prepared group not yet committed, as later groups must see it.
struct Inflight {
    /// Its last position.
    last: u64,
    /// Its event ids: where each landed and its index in `bytes`.
    ids: Map<Uuid, (IdEntry, usize)>,
    /// Its recorded events, to answer a retry that arrives before the commit.
    bytes: Vec<Bytes>,
    /// The versions its streams reach.
    versions: Map<StreamName, u64>,
}

fn be(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

fn read_u64(bytes: &[u8], at: usize) -> Result<u64, LogError> {
    bytes
        .get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| {
            LogError::Damaged(format!(
                "expected 8 bytes at offset {at}, found {} bytes",
                bytes.len()
            ))
        })
}

fn stream_key(stream: &StreamName, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 9);
    k.extend_from_slice(stream.as_str().as_bytes());
    k.push(b'/');
    k.extend_from_slice(&be(version));
    k
}

fn stream_prefix(stream: &StreamName) -> Vec<u8> {
    let mut k = Vec::with_capacity(stream.as_str().len() + 1);
    k.extend_from_slice(stream.as_str().as_bytes());
    k.push(b'/');
    k
}

/// Where an already-stored event id lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IdEntry {
    position: u64,
    version: u64,
}

impl Log {
    /// Opens (or creates) the log under `dir` and checks that its head is consistent.
    ///
    /// A store directory in the previous layout is upgraded here, once, with progress in the
    /// log ([`layout`]); one in a newer layout is refused with [`LogError::Layout`]. A head
    /// that does not hold together is refused with [`LogError::Damaged`] naming the position.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self, LogError> {
        // Owner-only: the log holds hostage cases' details. fjall creates its files under the
        // process umask (see `runtime::data_dir`); the directory is made 0700 here.
        runtime::data_dir::create_private_dir(dir)
            .map_err(|e| LogError::Storage(fjall::Error::from(e)))?;
        let layout = layout::read(dir)?;
        if let Some(layout) = layout {
            layout::check(dir, layout)?;
        }
        let log = Self::open_keyspaces(dir, durability)?;
        match layout {
            None => log.adopt_layout()?,
            Some(_) => log.drop_old_chain()?,
        }
        let head = log.head();
        // Positions are dense, so the count of entries must equal the head; anything else
        // means files were lost or damaged in the middle, and serving would hide a gap.
        let first = match log.log.first_key_value() {
            Some(kv) => read_u64(&kv.key()?, 0)?,
            None => 1,
        };
        if head > 0 && first != 1 {
            return Err(LogError::Damaged(format!(
                "the log starts at position {first}, not 1; restore from a backup"
            )));
        }
        log.check_tail()?;
        if let Some((_, problem)) = log.mark_problem()? {
            return Err(LogError::Damaged(problem));
        }
        Ok(log)
    }

    /// Opens the log under `dir` without any check, upgrade or repair, for [`Log::verify`]
    /// to examine a store that [`Log::open`] may refuse. Appending through it is refused.
    /// The store must be stopped (fjall locks the directory).
    pub fn open_for_verify(dir: &Path) -> Result<Self, LogError> {
        let layout = layout::read(dir)?;
        if let Some(layout) = layout {
            layout::check(dir, layout)?;
        }
        let log = Self::open_keyspaces(dir, Durability::SyncData)?;
        if layout.is_none() && (log.head() > 0 || log.db.keyspace_exists("chain")) {
            return Err(LogError::Layout(format!(
                "the store directory {} is in layout 1 (written by an older version of Vigil); `vigil verify` reads layout {}. Start the store once (`vigil store` or `vigil up` on this data directory): it upgrades the directory in place, checking every event against its hash chain, and then verify",
                dir.display(),
                layout::CURRENT
            )));
        }
        // Never a writer: nothing checked its head.
        log.stop_writes(Failure::ReadOnly);
        Ok(log)
    }

    fn open_keyspaces(dir: &Path, durability: Durability) -> Result<Self, LogError> {
        let db = open_database(dir)?;
        // Applies when a keyspace is created; fjall keeps a keyspace's options for ever.
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let log = db.keyspace("log", options)?;
        let streams = db.keyspace("streams", options)?;
        let ids = db.keyspace("ids", options)?;
        let head = match log.last_key_value() {
            Some(kv) => read_u64(&kv.key()?, 0)?,
            None => 0,
        };
        Ok(Self {
            db,
            log,
            streams,
            ids,
            durability,
            head: AtomicU64::new(head),
            poisoned: AtomicBool::new(false),
            failure: std::sync::Mutex::new(None),
            closing: AtomicBool::new(false),
            dir: dir.to_owned(),
            ahead: std::sync::Mutex::new(Ahead {
                head,
                last_hash: chain::GENESIS,
                versions: Map::default(),
            }),
            inflight: std::sync::Mutex::new(VecDeque::new()),
            marked: std::sync::Mutex::new(0),
            journal: std::sync::OnceLock::new(),
        })
    }

    /// The fjall persist mode of this log's commits.
    fn persist_mode(&self) -> Option<PersistMode> {
        match self.durability {
            Durability::SyncData => Some(PersistMode::SyncData),
            Durability::UnsafeNoSync => None,
        }
    }

    /// Last durable position (0 = empty log).
    pub fn head(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// Whether writes have stopped (a failed commit, damage found, or a read-only copy).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Why writes stopped, if they did.
    pub fn failure(&self) -> Option<Failure> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether writes stopped because the disk is full (and may resume by a reopen).
    pub fn is_disk_full(&self) -> bool {
        self.is_poisoned() && self.failure() == Some(Failure::DiskFull)
    }

    /// Stops writes for `why` (the first reason stays).
    pub fn stop_writes(&self, why: Failure) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            *f = Some(why);
        }
        self.poisoned.store(true, Ordering::Release);
    }

    /// Tells a running [`Log::scan`] to stop: this `Log` is about to be closed.
    pub(crate) fn start_closing(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Reads up to `limit` events from global position `from`, decoded.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_raw(from, limit, usize::MAX)?
            .iter()
            .map(|b| decode_stored(b))
            .collect()
    }

    /// Reads up to `limit` events from global position `from` as their stored JSON, stopping
    /// early once `max_bytes` are gathered (always at least one event, so paging advances).
    /// Replies are built from these bytes without decoding them again.
    pub fn read_raw(
        &self,
        from: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredEvent>, LogError> {
        let from = from.max(1);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0usize;
        for kv in self.log.range(be(from)..).take(limit) {
            let (key, value) = kv.into_inner()?;
            let position = read_u64(&key, 0)?;
            if position != from + out.len() as u64 {
                return Err(LogError::Damaged(format!(
                    "position {} is missing from the log; run `vigil verify`",
                    from + out.len() as u64
                )));
            }
            let value = StoredEvent::new(value, position)?;
            bytes += value.len() + 1;
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(value);
        }
        Ok(out)
    }

    /// Reads up to `limit` events of `stream` from `from_version`, decoded, and the stream's
    /// version.
    pub fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), LogError> {
        let (raw, version) = self.read_stream_raw(stream, from_version, limit, usize::MAX)?;
        let events = raw
            .iter()
            .map(|b| decode_stored(b))
            .collect::<Result<_, _>>()?;
        Ok((events, version))
    }

    /// Like [`Log::read_stream`], as stored JSON, stopping once `max_bytes` are gathered.
    pub fn read_stream_raw(
        &self,
        stream: &StreamName,
        from_version: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(Vec<StoredEvent>, u64), LogError> {
        // One snapshot so the version and the events agree with each other.
        let snap = self.db.snapshot();
        let version = self.stream_version_in(&snap, stream)?;
        let start = stream_key(stream, from_version.max(1));
        let end = stream_key(stream, u64::MAX);
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut bytes = 0usize;
        use fjall::Readable;
        for kv in snap.range(&self.streams, start..=end).take(limit) {
            let (_, pos) = kv.into_inner()?;
            let position = read_u64(&pos, 0)?;
            let value = snap.get(&self.log, be(position))?.ok_or_else(|| {
                LogError::Damaged(format!("{stream} points at missing position {position}"))
            })?;
            let value = StoredEvent::new(value, position)?;
            bytes += value.len() + 1;
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(value);
        }
        Ok((out, version))
    }

    /// The current version of `stream` (0 = no such stream).
    pub fn stream_version(&self, stream: &StreamName) -> Result<u64, LogError> {
        self.stream_version_in(&self.db.snapshot(), stream)
    }

    fn stream_version_in(
        &self,
        snap: &fjall::Snapshot,
        stream: &StreamName,
    ) -> Result<u64, LogError> {
        use fjall::Readable;
        match snap
            .prefix(&self.streams, stream_prefix(stream))
            .next_back()
        {
            Some(kv) => {
                let key = kv.key()?;
                read_u64(&key, key.len().saturating_sub(8))
            }
            None => Ok(0),
        }
    }

    fn cached_version(
        &self,
        cache: &mut Map<StreamName, u64>,
        stream: &StreamName,
    ) -> Result<u64, LogError> {
        if let Some(v) = cache.get(stream) {
            return Ok(*v);
        }
        // The groups in flight first, then the disk: a group leaves `inflight` only after
        // its batch is applied, so the stream's latest version is in one or the other.
        let inflight = self
            .inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find_map(|g| g.versions.get(stream).copied());
        let v = match inflight {
            Some(v) => v,
            None => self.stream_version(stream)?,
        };
        cache.insert(stream.clone(), v);
        Ok(v)
    }

    /// Where `id` landed in a group prepared but not yet committed, with its recorded event.
    fn inflight_id(&self, id: &Uuid) -> Option<(IdEntry, Bytes)> {
        self.inflight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .rev()
            .find_map(|g| {
                let (entry, idx) = g.ids.get(id)?;
                Some((*entry, g.bytes.get(*idx)?.clone()))
            })
    }

    fn lookup_id(&self, id: &Uuid) -> Result<Option<IdEntry>, LogError> {
        Ok(match self.ids.get(id.as_bytes())? {
            Some(v) => Some(IdEntry {
                position: read_u64(&v, 0)?,
                version: read_u64(&v, 8)?,
            }),
            None => None,
        })
    }

    fn event_at(&self, position: u64) -> Result<RecordedEvent, LogError> {
        let value = self.log.get(be(position))?.ok_or_else(|| {
            LogError::Damaged(format!("id index points at missing position {position}"))
        })?;
        decode_stored(&StoredEvent::new(value, position)?)
    }

    /// The refusal an append gets while writes are stopped.
    fn refusal(&self) -> StoreError {
        self.failure()
            .unwrap_or_else(|| Failure::Failed("unknown cause".into()))
            .refusal()
    }

    /// Reads every entry of every keyspace once, as of now, in order and by key, to find
    /// damage that the checks at [`Log::open`] do not reach (they read only the head and the
    /// last [`chain::TAIL_CHECK`] events): fjall checks each block's checksum as it reads it
    /// (the lookup by key also reads the filter and index blocks a walk in order skips), and
    /// this checks that the log's positions run gap-free from 1 to the head and that each
    /// value is long enough to hold its chain hash.
    ///
    /// The server runs it once, in the background, after start (it reads the whole store, so
    /// it must not delay start). `Ok(Some(head))`: all of it is readable and gap-free up to
    /// `head`; `Ok(None)`: stopped early because this `Log` is being closed;
    /// [`LogError::Damaged`] names the first damage and what to do.
    pub fn scan(&self) -> Result<Option<u64>, LogError> {
        use fjall::Readable;
        let snap = self.db.snapshot();
        let at = |position: u64, e: LogError| match e {
            LogError::Damaged(m) => {
                LogError::Damaged(format!("reading the log after position {position}: {m}"))
            }
            e => e,
        };
        // Each entry read in order is looked up by its key too.
        let lookup = |keyspace: &Keyspace, key: &[u8]| -> Result<(), LogError> {
            match snap.get(keyspace, key)? {
                Some(_) => Ok(()),
                None => Err(LogError::Damaged(
                    "an entry read in order cannot be found by its key: an index or filter block is damaged. The store does not run on damaged files: keep it stopped, run `vigil verify --data-dir <data dir>` for the full report, then restore the store directory from a backup".into(),
                )),
            }
        };
        let mut positions = 0u64;
        for kv in snap.iter(&self.log) {
            if positions.is_multiple_of(4096) && self.closing.load(Ordering::Acquire) {
                return Ok(None);
            }
            let (key, value) = kv.into_inner().map_err(|e| at(positions, e.into()))?;
            lookup(&self.log, &key).map_err(|e| at(positions, e))?;
            StoredEvent::new(value, positions + 1)?;
            if read_u64(&key, 0)? != positions + 1 {
                return Err(chain::refuse(
                    positions + 1,
                    "the event is missing from the log (found by the scan of the whole store after start)",
                ));
            }
            positions += 1;
        }
        for (name, keyspace) in [("streams", &self.streams), ("ids", &self.ids)] {
            let index = |e: LogError| match e {
                LogError::Damaged(m) => LogError::Damaged(format!("reading the {name} index: {m}")),
                e => e,
            };
            for (n, kv) in snap.iter(keyspace).enumerate() {
                if n.is_multiple_of(4096) && self.closing.load(Ordering::Acquire) {
                    return Ok(None);
                }
                let (key, _) = kv.into_inner().map_err(|e| index(e.into()))?;
                lookup(keyspace, &key).map_err(index)?;
            }
        }
        Ok(Some(positions))
    }

    /// fsyncs the journal and everything fjall holds open (after a reopen, so that what the
    /// reopen found in the journal is on disk before anything after it is acknowledged).
    pub(crate) fn sync_all(&self) -> Result<(), LogError> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}

/// A retry is the same event when stream, type, version and data (as JSON values) match;
/// `meta` may differ (a retry can carry a new correlation id) and is not compared.
fn same_event(ev: &Incoming, stream: &StreamName, rec: &RecordedEvent) -> bool {
    &rec.stream == stream
        && rec.event_type == ev.event_type
        && rec.v == ev.v
        && serde_json::from_slice::<serde_json::Value>(&ev.data).is_ok_and(|d| d == rec.data)
}

fn decode_stored(bytes: &[u8]) -> Result<RecordedEvent, LogError> {
    serde_json::from_slice(bytes).map_err(|e| LogError::Damaged(format!("unreadable event: {e}")))
}

#[cfg(test)]
mod tests;
