//! The hash chain: written with every event, checked at open, and walked by `Log::verify`,
//! which names the first broken position of a copy of the store damaged on purpose; and the
//! store directory's layout: the one-time upgrade of a layout-1 directory (resumed after an
//! interruption), and the refusal of a layout this build does not read.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use fjall::Database;
use serde_json::json;
use uuid::Uuid;
use vigil_store::log::Check;
use vigil_store::log::layout::{self, HASH_LEN};
use vigil_store::{Durability, Log, LogError};

mod common;

use common::{entries, fill, ks, to_layout_1, with_fjall};

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

/// The event stored at `position` (after its chain hash), decoded.
fn event_at(log: &fjall::Keyspace, position: u64) -> serde_json::Value {
    let stored = log.get(position.to_be_bytes()).unwrap().unwrap();
    serde_json::from_slice(&stored[HASH_LEN..]).unwrap()
}

/// Stores `event` at `position`, keeping the chain hash stored there.
fn overwrite(log: &fjall::Keyspace, position: u64, event: &[u8]) {
    let stored = log.get(position.to_be_bytes()).unwrap().unwrap();
    let mut value = stored[..HASH_LEN].to_vec();
    value.extend_from_slice(event);
    log.insert(position.to_be_bytes(), value).unwrap();
}

/// The event at `position` with its data changed, as the attacker rewrites it.
fn tamper_event(dir: &Path, position: u64) {
    with_fjall(dir, |db| {
        let log = ks(db, "log");
        let mut event = event_at(&log, position);
        assert_eq!(event["position"], json!(position));
        event["data"]["text"] = json!("nothing happened here");
        overwrite(&log, position, &serde_json::to_vec(&event).unwrap());
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
        let mut event = event_at(&log, 30);
        event["position"] = json!(31);
        overwrite(&log, 30, &serde_json::to_vec(&event).unwrap());
        // Position 60 is not JSON any more.
        overwrite(&log, 60, b"{\"id\": garbage");
        // Position 80 loses its ids entry, position 90 its streams entry.
        let at80 = event_at(&log, 80);
        let id = Uuid::parse_str(at80["id"].as_str().unwrap()).unwrap();
        ks(db, "ids").remove(id.as_bytes().to_vec()).unwrap();
        let at90 = event_at(&log, 90);
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
fn open_refuses_a_value_without_its_hash_and_a_cut_off_end() {
    let dir = store_with(40);
    // A value cut shorter than a chain hash.
    let copy = copy_of(dir.path());
    with_fjall(copy.path(), |db| {
        ks(db, "log")
            .insert(40u64.to_be_bytes(), vec![b'{'; HASH_LEN - 2])
            .unwrap();
    });
    let refusal = damaged(Log::open(copy.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 40"), "{refusal}");
    assert!(refusal.contains("shorter than a chain hash"), "{refusal}");
    let report = verify(copy.path());
    assert_eq!(report.first_broken().unwrap().1.position, 40, "{report}");
    for check in [Check::Chain, Check::Decode] {
        let c = report.checks.iter().find(|c| c.check == check).unwrap();
        assert_eq!(c.first.as_ref().map(|b| b.position), Some(40), "{report}");
    }

    // The last events removed from the log, their index entries left: the acknowledged-head
    // mark refuses the open, and verify names the first missing position.
    let copy = copy_of(dir.path());
    with_fjall(copy.path(), |db| {
        for p in [39u64, 40] {
            ks(db, "log").remove(p.to_be_bytes().to_vec()).unwrap();
        }
    });
    let refusal = damaged(Log::open(copy.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("ends at position 38"), "{refusal}");
    assert!(refusal.contains("missing"), "{refusal}");
    let report = verify(copy.path());
    let (check, broken) = report.first_broken().unwrap();
    assert_eq!(broken.position, 39, "{report}");
    assert!(
        matches!(
            check,
            Check::StreamsIndex | Check::IdsIndex | Check::AcknowledgedHead
        ),
        "{report}"
    );
}

/// Opens the layout-1 copy `old`, which must upgrade to exactly what `native` (the same
/// events written in layout 2) holds, and go on taking appends.
fn upgrades_to(old: &Path, native: &Path) {
    let refusal = match Log::open_for_verify(old) {
        Err(LogError::Layout(m)) => m,
        Err(e) => panic!("expected a layout refusal, got {e}"),
        Ok(_) => panic!("verify read a layout-1 store"),
    };
    assert!(refusal.contains("layout 1"), "{refusal}");
    assert!(refusal.contains("Start the store once"), "{refusal}");
    {
        let log = Log::open(old, Durability::SyncData).unwrap();
        assert_eq!(log.head(), 250);
    }
    assert_eq!(
        std::fs::read_to_string(old.join(layout::FILE)).unwrap(),
        "vigil-store-layout 2\n"
    );
    // The hash is a pure function of the events: the upgraded log is the native one.
    assert_eq!(entries(old, "log"), entries(native, "log"));
    let db = Database::builder(old).open().unwrap();
    assert!(
        !db.keyspace_exists("chain"),
        "the old chain keyspace is gone"
    );
    drop(db);
    let report = verify(old);
    assert!(report.is_intact(), "{report}");
    let log = Log::open(old, Durability::SyncData).unwrap();
    fill(&log, 10);
    log.close().unwrap();
    drop(log);
    assert!(verify(old).is_intact());
}

#[test]
fn a_layout_1_store_is_upgraded_once_at_open() {
    let dir = store_with(250);
    assert_eq!(
        std::fs::read_to_string(dir.path().join(layout::FILE)).unwrap(),
        "vigil-store-layout 2\n",
        "a new store records its layout"
    );
    let db = Database::builder(dir.path()).open().unwrap();
    assert!(
        !db.keyspace_exists("chain"),
        "layout 2 has no chain keyspace"
    );
    drop(db);

    // With its chain in the fourth keyspace.
    let old = copy_of(dir.path());
    to_layout_1(old.path(), true, 0);
    upgrades_to(old.path(), dir.path());

    // From before the chain existed: the upgrade builds it.
    let old = copy_of(dir.path());
    to_layout_1(old.path(), false, 0);
    upgrades_to(old.path(), dir.path());

    // Whose one-time build of the chain was interrupted (marker set, built up to 100).
    let old = copy_of(dir.path());
    to_layout_1(old.path(), true, 0);
    with_fjall(old.path(), |db| {
        let chain = ks(db, "chain");
        for p in 101u64..=250 {
            chain.remove(p.to_be_bytes().to_vec()).unwrap();
        }
        chain.insert([0u8; 8], b"upgrading".to_vec()).unwrap();
    });
    upgrades_to(old.path(), dir.path());
}

#[test]
fn an_interrupted_upgrade_resumes_where_it_stopped() {
    let dir = store_with(250);
    // Stopped after a batch: positions up to 120 rewritten, recorded with that batch.
    let old = copy_of(dir.path());
    to_layout_1(old.path(), true, 120);
    upgrades_to(old.path(), dir.path());
    // Stopped after the last batch, before the layout file was written.
    let old = copy_of(dir.path());
    to_layout_1(old.path(), true, 250);
    upgrades_to(old.path(), dir.path());
    // Stopped after the layout file was written, before the old keyspace was deleted.
    let old = copy_of(dir.path());
    with_fjall(old.path(), |db| {
        ks(db, "chain")
            .insert(1u64.to_be_bytes(), vec![0; 32])
            .unwrap();
    });
    drop(Log::open(old.path(), Durability::SyncData).unwrap());
    let db = Database::builder(old.path()).open().unwrap();
    assert!(!db.keyspace_exists("chain"));
    drop(db);
    assert_eq!(entries(old.path(), "log"), entries(dir.path(), "log"));
}

#[test]
fn the_upgrade_checks_every_event_and_refuses_damage_by_position() {
    let dir = store_with(700);
    let old = copy_of(dir.path());
    to_layout_1(old.path(), true, 0);
    // Far below the tail checked at open: the upgrade reads every event against its hash.
    with_fjall(old.path(), |db| {
        let log = ks(db, "log");
        let stored = log.get(42u64.to_be_bytes()).unwrap().unwrap();
        let mut event: serde_json::Value = serde_json::from_slice(&stored).unwrap();
        event["data"]["text"] = json!("nothing happened here");
        log.insert(42u64.to_be_bytes(), serde_json::to_vec(&event).unwrap())
            .unwrap();
    });
    let refusal = damaged(Log::open(old.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 42"), "{refusal}");
    assert!(refusal.contains("upgrading"), "{refusal}");
    assert!(
        !old.path().join(layout::FILE).exists(),
        "not marked upgraded"
    );
}

#[test]
fn a_layout_from_the_future_or_a_damaged_layout_file_is_refused() {
    let dir = store_with(5);
    std::fs::write(dir.path().join(layout::FILE), "vigil-store-layout 3\n").unwrap();
    for refusal in [
        Log::open(dir.path(), Durability::SyncData).err().unwrap(),
        Log::open_for_verify(dir.path()).err().unwrap(),
    ] {
        match refusal {
            LogError::Layout(m) => {
                assert!(m.contains("layout 3"), "{m}");
                assert!(m.contains("newer version of Vigil"), "{m}");
                assert!(m.contains("reads layout 2"), "{m}");
            }
            other => panic!("expected a layout refusal, got {other}"),
        }
    }
    std::fs::write(dir.path().join(layout::FILE), "vigil-store-layout two\n").unwrap();
    let refusal = damaged(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("layout file"), "{refusal}");
    // A layout-2 store whose layout file was deleted is not taken for layout 1.
    std::fs::remove_file(dir.path().join(layout::FILE)).unwrap();
    let before = entries(dir.path(), "log");
    let refusal = damaged(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    assert!(refusal.contains("position 1"), "{refusal}");
    assert!(refusal.contains("`layout` file deleted"), "{refusal}");
    assert_eq!(entries(dir.path(), "log"), before, "nothing rewritten");
    std::fs::write(dir.path().join(layout::FILE), "vigil-store-layout 2\n").unwrap();
    assert_eq!(
        Log::open(dir.path(), Durability::SyncData).unwrap().head(),
        5
    );
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
