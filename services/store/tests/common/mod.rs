//! Shared by the store's log tests: a realistic event, a log filled with many, and the
//! stopped store's files opened with fjall directly (to damage them, or to write what an
//! older version wrote).

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use serde_json::json;
use std::path::Path;
use uuid::Uuid;

use fjall::{Database, KeyspaceCreateOptions};
use vigil_store::Log;
use vigil_store::log::Pending;
use vigil_store::log::layout::{self, HASH_LEN};

pub fn stream(n: usize) -> StreamName {
    StreamName::parse(&format!("incident-{}", Uuid::from_u128(n as u128 + 1))).unwrap()
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "IncidentUpdated".into(),
        v: 1,
        data: json!({ "n": n, "text": "x".repeat(300) }),
        meta: Meta {
            actor: Some("test".into()),
            ..Meta::default()
        },
    }
}

/// Appends `count` events spread over 7 streams, in groups of up to 16 appends.
pub fn fill(log: &Log, count: u64) {
    let mut n = 0;
    while n < count {
        let mut group: Vec<Pending> = (0..16.min(count - n))
            .map(|i| Pending {
                request: AppendRequest {
                    after: None,
                    stream: stream(((n + i) % 7) as usize),
                    expected_version: ExpectedVersion::Any,
                    events: vec![event(n + i)],
                }
                .into(),
                outcome: None,
            })
            .collect();
        let committed = log.commit_group(&mut group).unwrap();
        assert_eq!(committed.events.len(), group.len());
        for p in &group {
            assert!(matches!(p.outcome, Some(Ok(_))), "{:?}", p.outcome);
        }
        n += group.len() as u64;
    }
}

/// Opens a stopped store's directory with fjall directly, as an intruder or a broken tool
/// would, and lets `damage` change it.
pub fn with_fjall(dir: &Path, damage: impl FnOnce(&Database)) {
    let db = Database::builder(dir).open().unwrap();
    damage(&db);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

pub fn ks(db: &Database, name: &str) -> fjall::Keyspace {
    db.keyspace(name, KeyspaceCreateOptions::default).unwrap()
}

/// Every (key, value) of keyspace `name` of the stopped store in `dir`.
pub fn entries(dir: &Path, name: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let db = Database::builder(dir).open().unwrap();
    ks(&db, name)
        .iter()
        .map(|kv| {
            let (k, v) = kv.into_inner().unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Turns the stopped layout-2 store in `dir` into what the previous version wrote (layout
/// 1): bare events in `log`, their hashes in a `chain` keyspace (none if `!chained`), no
/// layout file. Positions up to `keep_upgraded` stay in layout 2 and the upgrade's progress
/// record says so: what an upgrade interrupted after that many events leaves.
pub fn to_layout_1(dir: &Path, chained: bool, keep_upgraded: u64) {
    let positions = entries(dir, "log");
    std::fs::remove_file(dir.join(layout::FILE)).unwrap();
    with_fjall(dir, |db| {
        let log = ks(db, "log");
        let chain = chained.then(|| ks(db, "chain"));
        for (key, value) in &positions {
            let position = u64::from_be_bytes(key[..].try_into().unwrap());
            if let Some(chain) = &chain {
                chain
                    .insert(key.clone(), value[..HASH_LEN].to_vec())
                    .unwrap();
            }
            if position > keep_upgraded {
                log.insert(key.clone(), value[HASH_LEN..].to_vec()).unwrap();
            }
        }
        if keep_upgraded > 0 {
            let mut progress = vec![0u8; 8];
            progress.extend_from_slice(b"layout-2");
            ks(db, "chain")
                .insert(progress, keep_upgraded.to_be_bytes().to_vec())
                .unwrap();
        }
    });
}
