//! The outbox on disk: a fjall database of its own under `<site data dir>/outbox` (never
//! the store's log format), one keyspace `items`, key the position (8 bytes big-endian),
//! value the [`Item`] as JSON.
//!
//! # Promises
//! - [`Outbox::submit`] returns a new item only after it is on disk (`PersistMode::SyncAll`):
//!   "accepted at site" survives a crash of the process or the machine.
//! - [`Outbox::settle`] writes the answer without waiting for the disk: losing it in a crash
//!   only means the item is sent again with the same id, which the centre answers with the
//!   original outcome (`duplicate: true`), so nothing is carried out twice.
//! - The whole outbox is read back at open ([`Queue::restore`]); settled items stay on disk
//!   and readable by id (pruning them is for later).

use std::path::Path;

use events::command::Refusal;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde_json::Value;
use uuid::Uuid;

use crate::outbox::{Counts, Item, Outcome, Queue, Submitted};

/// The outbox: its items in memory ([`Queue`]) and on disk.
pub struct Outbox {
    db: Database,
    items: Keyspace,
    queue: Queue,
}

fn key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

/// The time to record, RFC 3339.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` and reads it back.
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        runtime::data_dir::create_private_dir(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let db = Database::builder(dir)
            .open()
            .map_err(|e| anyhow::anyhow!("cannot open the outbox in {}: {e}", dir.display()))?;
        let items = db.keyspace("items", KeyspaceCreateOptions::default)?;
        let mut read = Vec::new();
        for kv in items.iter() {
            let (k, v) = kv.into_inner()?;
            let item: Item = serde_json::from_slice(&v).map_err(|e| {
                anyhow::anyhow!(
                    "the outbox in {} is damaged at key {k:?}: {e}",
                    dir.display()
                )
            })?;
            anyhow::ensure!(
                *k == key(item.position),
                "the outbox in {} is damaged: item {} is stored under another key",
                dir.display(),
                item.position
            );
            read.push(item);
        }
        let queue = Queue::restore(read)
            .map_err(|e| anyhow::anyhow!("the outbox in {} is damaged: {e}", dir.display()))?;
        Ok(Self { db, items, queue })
    }

    /// Takes a command (see [`Queue::submit`]); a new item is on disk when this returns.
    /// `Err(Ok(refusal))` refuses it; `Err(Err(e))` is a disk failure (nothing accepted).
    pub fn submit(
        &mut self,
        id: Uuid,
        service: &str,
        command: &str,
        payload: Value,
    ) -> Result<Submitted, Result<Refusal, anyhow::Error>> {
        let submitted = self
            .queue
            .submit(id, service, command, payload, &now())
            .map_err(Ok)?;
        if let Submitted::New(item) = &submitted {
            self.write(item, true).map_err(Err)?;
            self.queue
                .push(item.clone())
                .map_err(|e| Err(anyhow::anyhow!(e)))?;
        }
        Ok(submitted)
    }

    /// Writes `item`; with `sync`, returns once fjall's journal is fsync'd (data and
    /// metadata), else once it is in the journal's buffer.
    fn write(&self, item: &Item, sync: bool) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec(item)?;
        let mut batch = self
            .db
            .batch()
            .durability(sync.then_some(PersistMode::SyncAll));
        batch.insert(&self.items, key(item.position), bytes);
        batch.commit()?;
        Ok(())
    }

    /// The item to forward next.
    pub fn head(&self) -> Option<Item> {
        self.queue.head().cloned()
    }

    /// The next items to forward (see [`Queue::batch`]).
    pub fn batch(&self, items: usize, bytes: usize) -> Vec<Item> {
        self.queue
            .batch(items, bytes)
            .into_iter()
            .cloned()
            .collect()
    }

    /// Records a final answer for the head `position`; false when it is not the head or
    /// `outcome` is a retry (nothing changes).
    pub fn settle(&mut self, position: u64, outcome: &Outcome) -> anyhow::Result<bool> {
        let Some(item) = self.queue.settled(position, outcome, &now()) else {
            return Ok(false);
        };
        self.write(&item, false)?;
        Ok(self.queue.settle(item))
    }

    /// The item of command `id`.
    pub fn get(&self, id: Uuid) -> Option<Item> {
        self.queue.get(id).cloned()
    }

    /// How many items stand where.
    pub fn counts(&self) -> Counts {
        self.queue.counts()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::outbox::ItemState;
    use serde_json::json;

    #[test]
    fn accepted_items_and_answers_are_read_back_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        {
            let mut o = Outbox::open(dir.path()).unwrap();
            assert!(matches!(
                o.submit(a, "incidents", "report", json!({"n": 1})),
                Ok(Submitted::New(_))
            ));
            assert!(matches!(
                o.submit(b, "relocation", "mark", json!({"n": 2})),
                Ok(Submitted::New(_))
            ));
            assert!(
                o.settle(1, &Outcome::Refused(Refusal::forbidden("no")))
                    .unwrap()
            );
            // Answers are written without fsync; the drop below persists them (a crash
            // losing one only resends the item).
            o.db.persist(PersistMode::SyncAll).unwrap();
        }
        let o = Outbox::open(dir.path()).unwrap();
        assert!(matches!(o.get(a).unwrap().state, ItemState::Refused { .. }));
        let head = o.head().unwrap();
        assert_eq!((head.position, head.id), (2, b));
        assert_eq!(o.counts().pending, 1);
        assert_eq!(o.counts().refused, 1);
    }
}
