//! Checkpoints: a projection's state saved at a log position, so that a start folds only the
//! tail of the log instead of all of it.
//!
//! # What it owns
//! The files `<data-dir>/checkpoints/<name>.ckpt`, one per projection (the gateway's boards,
//! each service's register). Deleting any of them (or the whole directory) is always safe:
//! the next start folds the whole log, as it did before checkpoints existed.
//!
//! # What it promises
//! - **Atomic.** A checkpoint is written to a temporary file in the same directory, fsynced,
//!   renamed over the old one, and the directory fsynced: after a crash at any moment the
//!   file is either the old checkpoint or the new one, never a mix. A temporary file left by a
//!   kill -9 is never read (and is removed at the next load).
//! - **Never trusted when bad.** [`load`] returns the checkpoint only if its magic, format,
//!   length and checksum are right and the state decodes; and only if it was written by the
//!   same code version of the projection ([`Codec::version`], bumped whenever the state or the
//!   fold changes). Anything else is a typed [`Ignored`] reason: the caller logs it and folds
//!   the whole log. [`check_against_log`] then refuses a checkpoint whose position is beyond
//!   the log's head (a log restored from an older backup) or whose position holds another
//!   event than when it was written (a log from another history).
//! - **Off the fold.** [`save`] is blocking file I/O: callers run it on a blocking thread with
//!   a copy of the state taken under their lock ([`Codec::copy`]), so the fold and the
//!   network never wait for the disk.
//!
//! # Format (version 1, little-endian)
//! `magic "VIGILCKP"` (8) · `format u32` · `code version u32` · `position u64` · `event id`
//! (16, the id of the event at `position`; zero at position 0) · `length u64` (of the state) ·
//! `crc32 u32` (of every byte before it and the state) · `state` (`length` bytes of JSON).
//! JSON costs about as much to write as the fold of a few thousand events; it is written in
//! the background and read once per start.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::StoreClient;

/// The first bytes of every checkpoint file.
pub const MAGIC: [u8; 8] = *b"VIGILCKP";
/// The version of the framing (not of any projection's state).
pub const FORMAT: u32 = 1;
/// Bytes before the state: magic, format, code version, position, event id, length, crc.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 16 + 8 + 4;
/// The directory under the data directory.
pub const DIR: &str = "checkpoints";

/// How a projection's state is checkpointed: its code version and how to copy it.
pub struct Codec<S> {
    /// The projection's code/schema version: a checkpoint written with another is ignored.
    pub version: u32,
    /// A copy of the state, taken under the projection's lock and saved after it is released.
    pub copy: fn(&S) -> S,
    encode: fn(&S) -> Result<Vec<u8>, String>,
    decode: fn(&[u8]) -> Result<S, String>,
}

impl<S> Clone for Codec<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Codec<S> {}

impl<S: Clone + Serialize + DeserializeOwned> Codec<S> {
    /// The state as JSON, at code version `version`.
    pub fn json(version: u32) -> Self {
        Self {
            version,
            copy: S::clone,
            encode: |s| serde_json::to_vec(s).map_err(|e| e.to_string()),
            decode: |b| serde_json::from_slice(b).map_err(|e| e.to_string()),
        }
    }
}

/// A checkpoint as loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint<S> {
    /// The last log position folded into `state`.
    pub position: u64,
    /// The id of the event at `position` when it was written (nil at position 0).
    pub event_id: Uuid,
    /// The projection's state.
    pub state: S,
}

/// Why a checkpoint was not used; the caller folds the whole log instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ignored {
    /// No checkpoint yet.
    #[error("no checkpoint")]
    Missing,
    /// Written by another code version of the projection (an upgrade or a downgrade).
    #[error("written by code version {found}, this is version {wanted}")]
    OtherVersion {
        /// The version in the file.
        found: u32,
        /// This build's version.
        wanted: u32,
    },
    /// Folded under other settings than the projection now runs with (the model's
    /// [`crate::Fold::adopt`] says which).
    #[error("folded under other settings: {0}")]
    OtherSettings(String),
    /// Unreadable: another framing format, truncated, checksum mismatch, a state that does
    /// not decode, or an I/O error.
    #[error("damaged: {0}")]
    Damaged(String),
    /// Its position is beyond the log's head: the log was restored from an older copy.
    #[error("from the future: it is at position {position} but the log ends at {head}")]
    FromTheFuture {
        /// The checkpoint's position.
        position: u64,
        /// The log's head.
        head: u64,
    },
    /// The event at its position is not the one it was written after: another history.
    #[error(
        "another history: position {position} held event {written} when it was written, the log has {found}"
    )]
    OtherHistory {
        /// The checkpoint's position.
        position: u64,
        /// The event id in the checkpoint.
        written: Uuid,
        /// The event id in the log now.
        found: Uuid,
    },
    /// The log could not be asked (the caller retries or folds everything).
    #[error("cannot check it against the log: {0}")]
    Unchecked(String),
}

impl Ignored {
    /// Whether an operator should hear about it loudly (not a routine first start or upgrade).
    pub fn is_alarming(&self) -> bool {
        !matches!(
            self,
            Ignored::Missing | Ignored::OtherVersion { .. } | Ignored::OtherSettings(_)
        )
    }
}

/// Where this process keeps checkpoints, if anywhere: set once by the `vigil` command that
/// starts a gateway or services ([`set_default_dir`]); `None` (tests, tools): no checkpoints.
static DEFAULT_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets where the projections of this process keep their checkpoints (`None`: nowhere).
pub fn set_default_dir(dir: Option<PathBuf>) {
    *DEFAULT_DIR.lock().unwrap_or_else(|p| p.into_inner()) = dir;
}

/// Where the projections of this process keep their checkpoints, if anywhere.
pub fn default_dir() -> Option<PathBuf> {
    DEFAULT_DIR
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Saves after this many events folded since the last save…
pub const EVERY_EVENTS: u64 = 100_000;
/// …or after this long, whichever comes first (only if something was folded).
pub const EVERY: Duration = Duration::from_secs(60);

/// When a projection saves: every [`EVERY_EVENTS`] events or [`EVERY`], one save at a time.
#[derive(Debug)]
pub struct Schedule {
    last_position: u64,
    last_at: Instant,
    saving: std::sync::Arc<AtomicBool>,
}

impl Schedule {
    /// A schedule whose last save (or load) was at `position`.
    pub fn from(position: u64) -> Self {
        Self {
            last_position: position,
            last_at: Instant::now(),
            saving: std::sync::Arc::default(),
        }
    }

    /// Whether a save is due at `position` (and none is running).
    pub fn due(&self, position: u64) -> bool {
        position > self.last_position
            && !self.saving.load(Ordering::Acquire)
            && (position - self.last_position >= EVERY_EVENTS || self.last_at.elapsed() >= EVERY)
    }

    /// Saves `state` (a copy taken under the projection's lock) on a blocking thread; the
    /// caller goes on folding. Returns the task, to be awaited at shutdown.
    pub fn save_in_background<S: Send + 'static>(
        &mut self,
        dir: PathBuf,
        name: &'static str,
        codec: Codec<S>,
        position: u64,
        event_id: Uuid,
        state: S,
    ) -> tokio::task::JoinHandle<()> {
        self.last_position = position;
        self.last_at = Instant::now();
        self.saving.store(true, Ordering::Release);
        let saving = self.saving.clone();
        tokio::task::spawn_blocking(move || {
            save_logged(&dir, name, &codec, position, event_id, &state);
            saving.store(false, Ordering::Release);
        })
    }
}

/// [`save`], logging the outcome (a failed save costs only a longer next start).
pub fn save_logged<S>(
    dir: &Path,
    name: &str,
    codec: &Codec<S>,
    position: u64,
    event_id: Uuid,
    state: &S,
) {
    let started = Instant::now();
    match save(dir, name, codec, position, event_id, state) {
        Ok(bytes) => {
            metrics::counter!("vigil_checkpoints_saved_total", "checkpoint" => name.to_owned())
                .increment(1);
            tracing::info!(
                checkpoint = name,
                position,
                bytes,
                ms = started.elapsed().as_secs_f64() * 1e3,
                "checkpoint saved"
            );
        }
        Err(e) => tracing::warn!(
            checkpoint = name, dir = %dir.display(), error = %e,
            "cannot save a checkpoint; the next start folds more of the log (check the disk)"
        ),
    }
}

/// The checkpoint directory under `data_dir`.
pub fn dir_in(data_dir: &Path) -> PathBuf {
    data_dir.join(DIR)
}

/// The file of checkpoint `name` in `dir`.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.ckpt"))
}

/// Frames `state` (already encoded) into the bytes of a checkpoint file.
pub fn frame(version: u32, position: u64, event_id: Uuid, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + state.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(event_id.as_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out);
    crc.update(state);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(state);
    out
}

/// Reads the frame of a checkpoint file: `(version, position, event id, state bytes)`.
pub fn unframe(bytes: &[u8], wanted: u32) -> Result<(u64, Uuid, &[u8]), Ignored> {
    let damaged = |why: &str| Ignored::Damaged(why.to_owned());
    if bytes.len() < HEADER_LEN {
        return Err(damaged("truncated: shorter than its header"));
    }
    let (header, state) = bytes.split_at(HEADER_LEN);
    let field = |from: usize, to: usize| header.get(from..to).unwrap_or_default();
    if field(0, 8) != MAGIC {
        return Err(damaged("not a checkpoint file (wrong magic)"));
    }
    let u32_at = |at: usize| u32::from_le_bytes(field(at, at + 4).try_into().unwrap_or_default());
    let u64_at = |at: usize| u64::from_le_bytes(field(at, at + 8).try_into().unwrap_or_default());
    let format = u32_at(8);
    if format != FORMAT {
        return Err(Ignored::Damaged(format!(
            "framing format {format}, this build reads {FORMAT}"
        )));
    }
    let position = u64_at(16);
    let event_id = Uuid::from_slice(field(24, 40)).map_err(|_| damaged("bad event id"))?;
    let length = u64_at(40);
    let stored_crc = u32_at(48);
    if length != state.len() as u64 {
        return Err(Ignored::Damaged(format!(
            "truncated or padded: the header says {length} bytes of state, the file has {}",
            state.len()
        )));
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(field(0, 48));
    crc.update(state);
    if crc.finalize() != stored_crc {
        return Err(damaged("checksum mismatch"));
    }
    // The version is read only once the bytes are known good: a flipped bit there would
    // otherwise pass as an honest upgrade.
    let found = u32_at(12);
    if found != wanted {
        return Err(Ignored::OtherVersion { found, wanted });
    }
    Ok((position, event_id, state))
}

/// Loads checkpoint `name` from `dir` if it is valid for `codec` (see [`Ignored`]); also
/// removes temporary files a kill -9 left behind while writing one.
pub fn load<S>(dir: &Path, name: &str, codec: &Codec<S>) -> Result<Checkpoint<S>, Ignored> {
    remove_leftovers(dir, name);
    let path = file(dir, name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Ignored::Missing),
        Err(e) => return Err(Ignored::Damaged(format!("cannot read it: {e}"))),
    };
    let (position, event_id, state) = unframe(&bytes, codec.version)?;
    let state = (codec.decode)(state)
        .map_err(|e| Ignored::Damaged(format!("the state does not decode: {e}")))?;
    Ok(Checkpoint {
        position,
        event_id,
        state,
    })
}

/// Removes `<name>.ckpt.tmp-*` in `dir`: a save that never reached its rename.
fn remove_leftovers(dir: &Path, name: &str) {
    let prefix = format!("{name}.ckpt.tmp-");
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(file = %entry.path().display(), "removing the temporary file of an unfinished checkpoint");
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Saves `state` as checkpoint `name` in `dir` (created if needed), atomically; blocking.
/// Returns the file's size.
pub fn save<S>(
    dir: &Path,
    name: &str,
    codec: &Codec<S>,
    position: u64,
    event_id: Uuid,
    state: &S,
) -> std::io::Result<u64> {
    let body = (codec.encode)(state).map_err(std::io::Error::other)?;
    let bytes = frame(codec.version, position, event_id, &body);
    write_atomically(dir, name, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Writes `bytes` as `<name>.ckpt` in `dir`: temp file, fsync, rename, fsync of the directory.
pub fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(dir)?;
    // Unique per process and save: two processes on one data directory never share a temp.
    let tmp = dir.join(format!(
        "{name}.ckpt.tmp-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, file(dir, name))?;
        File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

/// Checks a loaded checkpoint against the log: its position must not be beyond the head, and
/// the event at its position must be the one it was written after.
pub async fn check_against_log(
    store: &StoreClient,
    position: u64,
    event_id: Uuid,
) -> Result<(), Ignored> {
    if position == 0 {
        return Ok(());
    }
    let (events, head) = store
        .read(position, 1)
        .await
        .map_err(|e| Ignored::Unchecked(e.to_string()))?;
    if position > head {
        return Err(Ignored::FromTheFuture { position, head });
    }
    match events.first() {
        Some(e) if e.position == position && e.id == event_id => Ok(()),
        Some(e) if e.position == position => Err(Ignored::OtherHistory {
            position,
            written: event_id,
            found: e.id,
        }),
        _ => Err(Ignored::Unchecked(format!(
            "the store returned no event at position {position}"
        ))),
    }
}

/// Logs why checkpoint `name` was not used: loudly when it should not happen, with what to do.
pub fn log_ignored(name: &str, file: &Path, why: &Ignored) {
    match why {
        Ignored::Missing => {
            tracing::info!(checkpoint = name, "no checkpoint; folding the whole log")
        }
        Ignored::OtherVersion { .. } => tracing::info!(
            checkpoint = name, reason = %why,
            "checkpoint from another version ignored; folding the whole log (a new one is written soon)"
        ),
        Ignored::OtherSettings(_) => tracing::info!(
            checkpoint = name, reason = %why,
            "checkpoint from another configuration ignored; folding the whole log (a new one is written soon)"
        ),
        Ignored::FromTheFuture { .. } | Ignored::OtherHistory { .. } => tracing::error!(
            checkpoint = name, file = %file.display(), reason = %why,
            "checkpoint REFUSED: it does not belong to this log (was the store restored from a backup or another centre?); folding the whole log. Check the store; the checkpoint is replaced by the next save"
        ),
        Ignored::Damaged(_) | Ignored::Unchecked(_) => tracing::warn!(
            checkpoint = name, file = %file.display(), reason = %why,
            "checkpoint refused; folding the whole log. Nothing to do: it is replaced by the next save (deleting it is always safe; if this repeats, check the disk)"
        ),
    }
}

/// A map with keys that are not strings (tuples) as a list of `[key, value]` pairs, for
/// `#[serde(with = "runtime::checkpoint::pairs")]` on a checkpointed `BTreeMap` (JSON object
/// keys are strings only).
pub mod pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The pairs in key order.
    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    /// The map back from its pairs.
    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
