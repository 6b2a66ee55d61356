//! The hash chain: written with every event, checked at open, and walked by `Log::verify`,
//! which names the first broken position of a copy of the store damaged on purpose.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use fjall::{Database, KeyspaceCreateOptions};
use serde_json::json;
use uuid::Uuid;
use vigil_store::log::Check;
use vigil_store::{Durability, Log, LogError};

mod common;

use common::fill;

fn store_with(count: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    fill(&log, count);
    log.close().unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::copy_dir(from, to).unwrap();
}

/// A copy of the (closed) store at `dir`, in a directory of its own.
fn copy_of(dir: &Path) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    copy
}

/// Opens a stopped store's directory with fjall directly, as an intruder or a broken tool
/// would, and lets `damage` change it.
fn with_fjall(dir: &Path, damage: impl FnOnce(&Database)) {
    let db = Database::builder(dir).open().unwrap();
    damage(&db);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

fn ks(db: &Database, name: &str) -> fjall::Keyspace {
    db.keyspace(name, KeyspaceCreateOptions::default).unwrap()
}

/// The event at `position` with its data changed, as the attacker rewrites it.
fn tamper_event(dir: &Path, position: u64) {
    with_fjall(dir, |db| {
        let log = ks(db, "log");
        let stored = log.get(position.to_be_bytes()).unwrap().unwrap();
        let mut event: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        assert_eq!(event["position"], json!(position));
        event["data"]["text"] = json!("nothing happened here");
        log.insert(position.to_be_bytes(), serde_json::to_vec(&event).unwrap())
            .unwrap();
    });
}

fn verify(dir: &Path) -> vigil_store::log::VerifyReport {
    let log = Log::open_for_verify(dir).unwrap();
    let mut last = (0, 0);
    let report = log
        .verify(|done, total| {
            assert!(done <= total, "progress {done}/{total}");
            last = (done, total);
        })
        .unwrap();
    assert_eq!(last.0, last.1, "progress ends at 100%");
    report
}

fn damaged(e: LogError) -> String {
    match e {
        LogError::Damaged(m) => m,
        other => panic!("expected a damaged-log refusal, got {other}"),
    }
}

#[test]
fn a_store_verifies_across_reopens_and_a_tampered_copy_names_the_position() {
    let dir = store_with(300);
    {
        // Reopen: the writer's chain hash is loaded and the chain goes on seamlessly.
        let log = Log::open(dir.path(), Durability::SyncData).unwrap();
        assert_eq!(log.head(), 300);
        fill(&log, 50);
        log.close().unwrap();
    }
    let report = verify(dir.path());
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.head, 350);
    assert_eq!(report.events, 350);
    assert_eq!(report.streams, 7);
    let mark = report
        .checks
        .iter()
        .find(|c| c.check == Check::AcknowledgedHead)
        .unwrap();
    assert_eq!((mark.checked, mark.failed), (1, 0), "{report}");
    for c in report
        .checks
        .iter()
        .filter(|c| c.check != Check::AcknowledgedHead)
    {
        assert_eq!(c.failed, 0, "{report}");
        assert_eq!(
            c.checked, 350,
            "{:?} checked {}\n{report}",
            c.check, c.checked
        );
    }
    assert!(report.to_string().contains("INTACT"), "{report}");

    // Tamper with one event in a copy; the original stays intact.
    let copy = copy_of(dir.path());
    tamper_event(copy.path(), 137);
    let report = verify(copy.path());
    assert!(!report.is_intact());
    let (check, broken) = report.first_broken().unwrap();
    assert_eq!((check, broken.position), (Check::Chain, 137), "{report}");
    // Only that link breaks: the chain goes on from the stored hash.
    assert_eq!(report.failures(), 1, "{report}");
    assert!(
        report.to_string().contains("BROKEN at position 137"),
        "{report}"
    );
    assert!(verify(dir.path()).is_intact());

    // Position 137 is within the tail the store checks at open: it refuses to start.
    let refusal = damaged(Log::open(copy.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 137"), "{refusal}");
    assert!(refusal.contains("vigil verify"), "{refusal}");
}

#[test]
fn an_old_event_beyond_the_tail_check_is_found_by_verify_only() {
    let dir = store_with(700);
    let copy = copy_of(dir.path());
    tamper_event(copy.path(), 42);
    // The store checks only the last few hundred events at open.
    let log = Log::open(copy.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 700);
    drop(log);
    let report = verify(copy.path());
    let (check, broken) = report.first_broken().unwrap();
    assert_eq!((check, broken.position), (Check::Chain, 42), "{report}");
}

#[test]
fn every_kind_of_check_reports_its_own_failure() {
    let dir = store_with(120);
    let copy = copy_of(dir.path());
    with_fjall(copy.path(), |db| {
        let log = ks(db, "log");
        // Position 30 claims to be at 31 (chain and position field both break).
        let stored = log.get(30u64.to_be_bytes()).unwrap().unwrap();
        let mut event: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        event["position"] = json!(31);
        log.insert(30u64.to_be_bytes(), serde_json::to_vec(&event).unwrap())
            .unwrap();
        // Position 60 is not JSON any more.
        log.insert(60u64.to_be_bytes(), b"{\"id\": garbage".to_vec())
            .unwrap();
        // Position 80 loses its ids entry, position 90 its streams entry.
        let at80: serde_json::Value =
            serde_json::from_slice(&log.get(80u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        let id = Uuid::parse_str(at80["id"].as_str().unwrap()).unwrap();
        ks(db, "ids").remove(id.as_bytes().to_vec()).unwrap();
        let at90: serde_json::Value =
            serde_json::from_slice(&log.get(90u64.to_be_bytes()).unwrap().unwrap()).unwrap();
        let mut key = at90["stream"].as_str().unwrap().as_bytes().to_vec();
        key.push(b'/');
        key.extend_from_slice(&at90["version"].as_u64().unwrap().to_be_bytes());
        ks(db, "streams").remove(key).unwrap();
    });
    let report = verify(copy.path());
    let first = |check: Check| {
        let c = report.checks.iter().find(|c| c.check == check).unwrap();
        c.first.as_ref().map(|b| b.position)
    };
    assert_eq!(first(Check::Chain), Some(30), "{report}");
    assert_eq!(first(Check::PositionField), Some(30), "{report}");
    assert_eq!(first(Check::Decode), Some(60), "{report}");
    assert_eq!(first(Check::EventInIds), Some(80), "{report}");
    assert_eq!(first(Check::EventInStreams), Some(90), "{report}");
    // The stream that lost a version shows a gap (unless it was its last version).
    assert_eq!(first(Check::Positions), None, "{report}");
    assert_eq!(report.first_broken().unwrap().1.position, 30);
    let text = report.to_string();
    assert!(text.contains("first at position 60"), "{text}");
    assert!(text.contains("first at position 80"), "{text}");
    assert!(text.contains("BROKEN at position 30"), "{text}");
    let decode = report
        .checks
        .iter()
        .find(|c| c.check == Check::Decode)
        .unwrap();
    assert_eq!((decode.checked, decode.failed), (120, 1), "{report}");
}

#[test]
fn open_refuses_a_log_entry_without_its_chain_entry_and_a_cut_off_end() {
    let dir = store_with(40);
    // A log entry without its chain entry.
    let copy = copy_of(dir.path());
    with_fjall(copy.path(), |db| {
        ks(db, "chain")
            .remove(40u64.to_be_bytes().to_vec())
            .unwrap();
    });
    let refusal = damaged(Log::open(copy.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 40"), "{refusal}");
    assert!(refusal.contains("no hash chain entry"), "{refusal}");
    let report = verify(copy.path());
    let (check, broken) = report.first_broken().unwrap();
    assert_eq!((check, broken.position), (Check::Chain, 40), "{report}");

    // The last events removed from the log (and its indexes), their chain entries left.
    let copy = copy_of(dir.path());
    with_fjall(copy.path(), |db| {
        for p in [39u64, 40] {
            ks(db, "log").remove(p.to_be_bytes().to_vec()).unwrap();
        }
    });
    let refusal = damaged(Log::open(copy.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 39"), "{refusal}");
    assert!(refusal.contains("missing"), "{refusal}");
    let report = verify(copy.path());
    let (check, broken) = report.first_broken().unwrap();
    assert_eq!(broken.position, 39, "{report}");
    assert!(
        matches!(check, Check::Chain | Check::StreamsIndex | Check::IdsIndex),
        "{report}"
    );
}

#[test]
fn a_store_from_before_the_chain_gets_it_built_once_at_open() {
    let dir = store_with(250);
    let original: Vec<(Vec<u8>, Vec<u8>)> = {
        let db = Database::builder(dir.path()).open().unwrap();
        ks(&db, "chain")
            .iter()
            .map(|kv| {
                let (k, v) = kv.into_inner().unwrap();
                (k.to_vec(), v.to_vec())
            })
            .collect()
    };
    assert_eq!(original.len(), 250);

    // What an older version left: three keyspaces, no chain.
    let old = copy_of(dir.path());
    with_fjall(old.path(), |db| {
        db.delete_keyspace(ks(db, "chain")).unwrap();
    });
    let report = verify(old.path());
    assert!(report.chain_pending && !report.is_intact(), "{report}");
    assert_eq!(report.failures(), 0, "{report}");
    assert!(
        report.to_string().contains("start the store once"),
        "{report}"
    );
    {
        let log = Log::open(old.path(), Durability::SyncData).unwrap();
        assert_eq!(log.head(), 250);
        fill(&log, 10);
        log.close().unwrap();
    }
    let report = verify(old.path());
    assert!(report.is_intact(), "{report}");
    // The chain is a pure function of the events: the rebuilt one is the original.
    let db = Database::builder(old.path()).open().unwrap();
    let rebuilt: Vec<(Vec<u8>, Vec<u8>)> = ks(&db, "chain")
        .iter()
        .take(250)
        .map(|kv| {
            let (k, v) = kv.into_inner().unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    assert_eq!(rebuilt, original);
    drop(db);

    // An upgrade interrupted by a crash (marker set, chain built up to 100) resumes.
    let interrupted = copy_of(dir.path());
    with_fjall(interrupted.path(), |db| {
        let chain = ks(db, "chain");
        for p in 101u64..=250 {
            chain.remove(p.to_be_bytes().to_vec()).unwrap();
        }
        chain.insert([0u8; 8], b"upgrading".to_vec()).unwrap();
    });
    assert!(verify(interrupted.path()).chain_pending);
    let log = Log::open(interrupted.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 250);
    drop(log);
    assert!(verify(interrupted.path()).is_intact());
}

#[test]
fn a_second_opener_is_told_the_directory_is_locked() {
    let dir = store_with(3);
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    match Log::open_for_verify(dir.path()) {
        Err(LogError::Locked(d)) => assert!(d.contains(&*dir.path().to_string_lossy())),
        Err(e) => panic!("expected Locked, got {e}"),
        Ok(_) => panic!("a second opener got the directory"),
    }
    drop(log);
}
