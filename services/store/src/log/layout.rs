//! The store directory's layout version, the stored form of an event, and the one-time
//! upgrade of a directory written in the previous layout.
//!
//! # The layouts
//! - **Layout 2** (this build): `log` maps a position to its chain hash (32 bytes, see
//!   [`super::chain`]) followed by the recorded event's JSON, exactly as it is read back.
//!   The file `<store dir>/layout` holds `vigil-store-layout 2`. A commit writes three
//!   entries per event (`log`, `streams`, `ids`).
//! - **Layout 1** (before): `log` held the bare event JSON and a fourth keyspace, `chain`,
//!   held each position's hash (or, older still, no chain at all). No `layout` file.
//!
//! # Promises
//! - A new store is created in layout 2; [`Log::open`] upgrades a layout-1 directory in
//!   place, once, with its progress in the store's log, and refuses a directory whose layout
//!   is newer than this build's (or whose `layout` file does not parse), naming the cause.
//! - **The upgrade is atomic per batch and resumes where it stopped.** It rewrites
//!   [`UPGRADE_BATCH`] events per fjall batch, and each batch records, with the rewritten
//!   events, the last position rewritten (in the old `chain` keyspace, which nothing else
//!   reads any more). A crash or a kill at any point leaves positions up to that record in
//!   the new form and the rest in the old; the next open goes on from there. The `layout`
//!   file is written (atomically, after an fsync of everything) only once every event is
//!   rewritten, and the old `chain` keyspace is deleted only after that.
//! - **The upgrade checks every event against its old chain entry** (or, for a store from
//!   before the chain, builds the chain as the events are now, as the store always did), so
//!   damage is refused with its position rather than carried into the new layout.
//! - `vigil verify` reads layout 2 only: on a layout-1 directory it says to start the store
//!   once, which upgrades it.

use std::ops::Deref;
use std::path::Path;
use std::time::Instant;

use fjall::{KeyspaceCreateOptions, PersistMode};

use super::{Log, LogError, MEMTABLE_BYTES, be, chain, decode_stored, mark, read_u64};

/// The layout this build writes and reads.
pub const CURRENT: u32 = 2;

/// The layout file's name in the store directory (fjall ignores files without `.jnl` there).
pub const FILE: &str = "layout";

/// What the layout file holds before the version number.
const PREFIX: &str = "vigil-store-layout ";

/// Length of the chain hash before each event in the `log` keyspace.
pub const HASH_LEN: usize = 32;

/// The old keyspace of chain hashes (layout 1), kept only while an upgrade runs.
const OLD_CHAIN: &str = "chain";

/// Key 0 of the old chain keyspace: set while the old one-time build of the chain ran.
const OLD_BUILD_MARKER: [u8; 8] = [0; 8];

/// Key of the old chain keyspace that records the last position rewritten by the upgrade.
/// Eight zero bytes first, so it sorts before every position key (and after the marker).
const PROGRESS_KEY: &[u8] = b"\0\0\0\0\0\0\0\0layout-2";

/// Events rewritten per batch while upgrading.
const UPGRADE_BATCH: u64 = 10_000;

/// A stored event as read from the `log` keyspace: its chain hash and its JSON, which is
/// what it dereferences to, without a copy.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent(fjall::Slice);

impl StoredEvent {
    /// The value stored at `position`, checked to hold a hash.
    pub(super) fn new(value: fjall::Slice, position: u64) -> Result<Self, LogError> {
        if value.len() < HASH_LEN {
            return Err(chain::refuse(
                position,
                &format!(
                    "the stored value is {} bytes, shorter than its chain hash",
                    value.len()
                ),
            ));
        }
        Ok(Self(value))
    }

    /// The chain hash stored with the event.
    pub fn hash(&self) -> [u8; HASH_LEN] {
        split(&self.0).map_or([0; HASH_LEN], |(hash, _)| hash)
    }
}

impl Deref for StoredEvent {
    type Target = [u8];

    /// The recorded event's JSON.
    fn deref(&self) -> &[u8] {
        self.0.get(HASH_LEN..).unwrap_or_default()
    }
}

impl AsRef<[u8]> for StoredEvent {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// The `log` value of an event: its chain hash, then its JSON.
pub(super) fn encode(hash: &[u8; HASH_LEN], event: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(HASH_LEN + event.len());
    value.extend_from_slice(hash);
    value.extend_from_slice(event);
    value
}

/// A `log` value as (chain hash, event JSON); `None` if it is too short to hold a hash.
pub(super) fn split(value: &[u8]) -> Option<([u8; HASH_LEN], &[u8])> {
    let (hash, event) = value.split_at_checked(HASH_LEN)?;
    Some((<[u8; HASH_LEN]>::try_from(hash).ok()?, event))
}

/// The layout recorded in `dir`: `None` when there is no layout file.
pub(super) fn read(dir: &Path) -> Result<Option<u32>, LogError> {
    let path = dir.join(FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LogError::Layout(format!(
                "cannot read the store's layout file {}: {e}",
                path.display()
            )));
        }
    };
    String::from_utf8_lossy(&text)
        .trim()
        .strip_prefix(PREFIX)
        .and_then(|v| v.parse::<u32>().ok())
        .map(Some)
        .ok_or_else(|| {
            LogError::Damaged(format!(
                "the store's layout file {} is damaged (it should read `{PREFIX}{CURRENT}`); keep the store stopped and restore the store directory from a backup",
                path.display()
            ))
        })
}

/// Refuses a layout this build does not read.
pub(super) fn check(dir: &Path, layout: u32) -> Result<(), LogError> {
    if layout == CURRENT {
        return Ok(());
    }
    let newer = layout > CURRENT;
    Err(LogError::Layout(format!(
        "the store directory {} is in layout {layout}, {}; this build of Vigil reads layout {CURRENT}. {}",
        dir.display(),
        if newer {
            "written by a newer version of Vigil"
        } else {
            "which no version of Vigil writes"
        },
        if newer {
            "Run the version that wrote it (or a newer one); an older one does not downgrade a store"
        } else {
            "Keep the store stopped and restore the store directory from a backup"
        },
    )))
}

fn write(dir: &Path) -> Result<(), LogError> {
    mark::write_atomically(dir, FILE, format!("{PREFIX}{CURRENT}\n").as_bytes())
        .map_err(|e| LogError::Storage(fjall::Error::from(e)))
}

impl Log {
    /// At open, for a directory with no layout file: records layout 2 for a new store, or
    /// upgrades a layout-1 store (see the module docs).
    pub(super) fn adopt_layout(&self) -> Result<(), LogError> {
        let old_chain = self.db.keyspace_exists(OLD_CHAIN);
        if self.head() > 0 || old_chain {
            self.upgrade_from_layout_1()?;
        }
        write(&self.dir)?;
        self.drop_old_chain()
    }

    /// Deletes the old chain keyspace, left by an upgrade that stopped after it wrote the
    /// layout file.
    pub(super) fn drop_old_chain(&self) -> Result<(), LogError> {
        if self.db.keyspace_exists(OLD_CHAIN) {
            let old = self
                .db
                .keyspace(OLD_CHAIN, KeyspaceCreateOptions::default)?;
            self.db.delete_keyspace(old)?;
            tracing::info!("removed the old hash chain keyspace (layout 1)");
        }
        Ok(())
    }

    /// Writes every event of a layout-1 log with its chain hash, checking it against the old
    /// chain entry, then fsyncs everything. Resumes an interrupted upgrade.
    fn upgrade_from_layout_1(&self) -> Result<(), LogError> {
        let head = self.head();
        let options = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let old = self.db.keyspace(OLD_CHAIN, options)?;
        let done = match old.get(PROGRESS_KEY)? {
            Some(v) => read_u64(&v, 0)?,
            None => 0,
        };
        let chain_head = match old.range(be(1)..).next_back() {
            Some(kv) => read_u64(&kv.key()?, 0)?,
            None => 0,
        };
        let building = old.get(OLD_BUILD_MARKER)?.is_some();
        if chain_head > head {
            return Err(chain::refuse(
                head + 1,
                &format!(
                    "the log ends at position {head} but the hash chain goes on to position {chain_head}: events at the end of the log are missing"
                ),
            ));
        }
        // Positions from here on have no old chain entry to check against: a store from
        // before the chain, or one whose one-time build of it was interrupted.
        let unchained_from = if building || chain_head == 0 {
            chain_head + 1
        } else if chain_head < head {
            return Err(chain::refuse(
                chain_head + 1,
                &format!(
                    "the event is in the log (whose head is {head}) but has no hash chain entry (the chain ends at {chain_head}); the two are only ever written together"
                ),
            ));
        } else {
            u64::MAX
        };
        if done == 0 {
            tracing::warn!(
                head,
                "this store directory is in layout 1 (written by an older version): upgrading it once to layout 2, which keeps each event's chain hash beside it; every event is rewritten and checked against its hash chain"
            );
        } else {
            tracing::warn!(
                from = done + 1,
                head,
                "resuming the interrupted upgrade of this store directory to layout 2"
            );
        }
        let started = Instant::now();
        let mut prev = match done {
            0 => chain::GENESIS,
            p => self
                .chain_at(p)?
                .ok_or_else(|| chain::refuse(p, "the event vanished during the upgrade"))?,
        };
        let mut hashes = old.range(be(done + 1)..);
        let mut batch = self.db.batch();
        let mut in_batch = 0u64;
        for (position, kv) in (done + 1..).zip(self.log.range(be(done + 1)..)) {
            let (key, event) = kv.into_inner()?;
            if read_u64(&key, 0)? != position {
                return Err(chain::refuse(
                    position,
                    "the event is missing from the log (found while upgrading the store's layout)",
                ));
            }
            let hash = chain::link(&prev, &event);
            if position < unchained_from {
                let stored = match hashes.next() {
                    Some(kv) => {
                        let (key, value) = kv.into_inner()?;
                        (read_u64(&key, 0)? == position)
                            .then(|| <[u8; HASH_LEN]>::try_from(&value[..]).ok())
                            .flatten()
                    }
                    None => None,
                };
                if stored != Some(hash) {
                    return Err(chain::refuse(
                        position,
                        "the stored event does not match its hash chain entry (found while upgrading the store's layout): the event (or its chain entry) changed after it was written",
                    ));
                }
            } else if decode_stored(&event).map(|e| e.position).ok() != Some(position) {
                // Without a chain entry to check it against, the event must at least be one
                // (a layout-2 value, whose `layout` file was lost, is not).
                return Err(chain::refuse(
                    position,
                    "the stored value is not an event of layout 1 recorded at this position (found while upgrading the store's layout; was the `layout` file deleted?)",
                ));
            }
            batch.insert(&self.log, be(position), encode(&hash, &event));
            prev = hash;
            in_batch += 1;
            if in_batch == UPGRADE_BATCH || position == head {
                batch.insert(&old, PROGRESS_KEY, be(position));
                std::mem::replace(&mut batch, self.db.batch())
                    .durability(Some(PersistMode::SyncData))
                    .commit()?;
                in_batch = 0;
                tracing::info!(
                    upgraded = position,
                    head,
                    secs = started.elapsed().as_secs(),
                    "upgrading the store's layout"
                );
            }
        }
        self.db.persist(PersistMode::SyncAll)?;
        let upgraded = old
            .get(PROGRESS_KEY)?
            .map(|v| read_u64(&v, 0))
            .transpose()?;
        if upgraded.unwrap_or(0) != head {
            return Err(chain::refuse(
                upgraded.unwrap_or(0) + 1,
                "the event is missing from the log (found while upgrading the store's layout)",
            ));
        }
        tracing::info!(
            head,
            secs = started.elapsed().as_secs_f64(),
            "store directory upgraded to layout 2"
        );
        Ok(())
    }
}
