//! Regression tests for what the damage scenario (`ops/chaos damage`, issue #8 item 4) found:
//! damaged store files must be refused with a message that names the damage and the next
//! step, never a panic, and damage the checks at open do not reach must be found by the scan
//! after start (and by `vigil verify`) rather than served.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use events::{AppendRequest, ExpectedVersion, NewEvent};
use serde_json::json;
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use vigil_store::log::fjall::{Database, KeyspaceCreateOptions};
use vigil_store::log::layout::HASH_LEN;
use vigil_store::log::{Check, Pending};
use vigil_store::{Durability, Log, LogError, StoreConfig};

mod common;

use common::{event, fill, stream};

/// A closed store of `count` events, all flushed from the journal into table files.
fn store_in_tables(count: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Durability::SyncData).unwrap();
        fill(&log, count);
        log.close().unwrap();
    }
    let db = Database::builder(dir.path()).open().unwrap();
    for name in ["log", "streams", "ids"] {
        db.keyspace(name, KeyspaceCreateOptions::default)
            .unwrap()
            .rotate_memtable_and_wait()
            .unwrap();
    }
    dir
}

/// The table file of keyspace `id` (1 log, 2 streams, 3 ids; one after a flush).
fn table(dir: &Path, id: u32) -> PathBuf {
    let tables = dir.join("keyspaces").join(id.to_string()).join("tables");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&tables)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

fn flip(file: &Path, offset: u64, bit: u8) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.read_exact(&mut b).unwrap();
    b[0] ^= 1 << bit;
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&b).unwrap();
    f.sync_all().unwrap();
}

/// What `vigil verify` finds first in the store at `dir`, which must be damaged.
fn first_broken(dir: &Path) -> (Check, vigil_store::log::Broken, String) {
    let report = Log::open_for_verify(dir)
        .unwrap()
        .verify(|_, _| {})
        .unwrap();
    assert!(!report.is_intact(), "{report}");
    let (check, broken) = report.first_broken().unwrap();
    (check, broken.clone(), report.to_string())
}

/// The refusal's message; it must name the damage and what to do next.
fn clear_refusal(e: LogError) -> String {
    let m = match e {
        LogError::Damaged(m) => m,
        other => panic!("expected a damaged-log refusal, got {other}"),
    };
    assert!(m.contains("damaged"), "{m}");
    assert!(m.contains("vigil verify"), "{m}");
    assert!(m.contains("backup"), "{m}");
    m
}

#[test]
fn damage_a_truncated_or_deleted_table_is_refused_naming_the_damage_and_the_next_step() {
    let dir = store_in_tables(300);
    let cut = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), cut.path());
    let log_table = table(cut.path(), 1);
    let len = std::fs::metadata(&log_table).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log_table)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // Before: "storage error: FjallError: Storage(Unrecoverable)", with no next step.
    let m = clear_refusal(Log::open(cut.path(), Durability::SyncData).err().unwrap());
    assert!(m.contains("table file"), "{m}");
    // `vigil verify` cannot open it either, and says the same.
    clear_refusal(Log::open_for_verify(cut.path()).err().unwrap());

    let deleted = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), deleted.path());
    std::fs::remove_file(table(deleted.path(), 3)).unwrap();
    clear_refusal(
        Log::open(deleted.path(), Durability::SyncData)
            .err()
            .unwrap(),
    );

    // The original is untouched and opens.
    assert_eq!(
        Log::open(dir.path(), Durability::SyncData).unwrap().head(),
        300
    );
}

/// A store stopped by a kill after its acknowledged-head mark was recorded: 20 events, one
/// marked event at position 21, 20 more, all still only in its journal (an orderly close
/// writes them out to table files, where damage to the journal no longer reaches them); the
/// offset in its journal of the first record (the `Item` tag) of the log entry at position 21.
fn store_with_marked_event() -> (tempfile::TempDir, PathBuf, u64) {
    let dir = tempfile::tempdir().unwrap();
    let marker = "find-me-in-the-journal";
    {
        let log = Log::open(dir.path(), Durability::SyncData).unwrap();
        fill(&log, 20);
        let mut group = [Pending {
            request: AppendRequest {
                after: None,
                stream: stream(1),
                expected_version: ExpectedVersion::Any,
                events: vec![NewEvent {
                    data: json!({ "text": marker }),
                    ..event(99)
                }],
            }
            .into(),
            outcome: None,
        }];
        log.commit_group(&mut group).unwrap();
        fill(&log, 20);
        assert!(log.record_mark().unwrap());
    }
    let journal = dir.path().join("0.jnl");
    let bytes = std::fs::read(&journal).unwrap();
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker.as_bytes())
        .unwrap();
    // The key (position 21), then the value: the event's chain hash, then its JSON.
    let key = 21u64.to_be_bytes();
    let key_start = (0..at)
        .rev()
        .find(|&i| {
            bytes[i..].starts_with(&key) && bytes.get(i + key.len() + HASH_LEN) == Some(&b'{')
        })
        .unwrap();
    // An item: tag, value type, compression (1 byte each), keyspace id (8), key length (2),
    // value length (4), stored length (4), then the key.
    let tag = key_start - 21;
    assert_eq!(bytes[tag], 2, "fjall's journal item layout changed");
    (dir, journal, tag as u64)
}

#[test]
fn damage_a_bit_flip_in_a_journal_record_length_is_refused_not_a_panic() {
    let (dir, journal, tag) = store_with_marked_event();
    // Flip a bit of the item's value length (13 bytes after its tag), so it disagrees with
    // the stored length: fjall's debug build asserts they agree (a panic), its release build
    // finds the record's checksum wrong.
    flip(&journal, tag + 13, 1);
    // Before: a debug build died of fjall's assertion ("task panicked"), with no next step.
    let m = clear_refusal(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    if cfg!(debug_assertions) {
        assert!(m.contains("failed a check of the storage engine"), "{m}");
    } else {
        assert!(m.contains("journal"), "{m}");
    }
}

#[test]
fn damage_a_flipped_journal_record_tag_no_longer_drops_acknowledged_events_silently() {
    let (dir, journal, tag) = store_with_marked_event();
    assert_eq!(
        vigil_store::log::mark::read(dir.path())
            .unwrap()
            .unwrap()
            .head,
        41,
        "the mark records the acknowledged head"
    );
    // An unknown tag ends fjall's reading of the journal there, as a torn tail would: it
    // truncates the journal and opens the 20 events before it.
    flip(&journal, tag, 2);
    let unmarked = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), unmarked.path());
    std::fs::remove_file(vigil_store::log::mark::path(unmarked.path())).unwrap();
    assert_eq!(
        Log::open(unmarked.path(), Durability::SyncData)
            .unwrap()
            .head(),
        20,
        "without the mark the loss is silent (what the damage scenario found)"
    );
    // With it, the store refuses, naming the missing positions and the next step.
    let m = clear_refusal(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    assert!(m.contains("missing"), "{m}");
    assert!(m.contains("ends at position 20"), "{m}");
    assert!(m.contains("up to 41"), "{m}");
    // And `vigil verify` agrees: every check passes up to 20, the mark fails at 21.
    let (check, broken, report) = first_broken(dir.path());
    assert_eq!(check, Check::AcknowledgedHead, "{report}");
    assert_eq!(broken.position, 21, "{report}");
}

#[test]
fn damage_a_mark_from_another_log_or_a_damaged_mark_is_refused() {
    let (dir, _, _) = store_with_marked_event();
    // Another store of the same length: the event at the mark's position is not the same.
    let other = tempfile::tempdir().unwrap();
    {
        let log = Log::open(other.path(), Durability::SyncData).unwrap();
        fill(&log, 41);
        log.close().unwrap();
    }
    let mark = vigil_store::log::mark::path(dir.path());
    std::fs::copy(vigil_store::log::mark::path(other.path()), &mark).unwrap();
    let m = clear_refusal(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    assert!(m.contains("not the one acknowledged"), "{m}");
    // A mark that is not one.
    std::fs::write(&mark, b"{\"acknowledged_head\": 4").unwrap();
    let m = clear_refusal(Log::open(dir.path(), Durability::SyncData).err().unwrap());
    assert!(m.contains("acknowledged-head record"), "{m}");
    // Deleting it, as the refusal allows once `vigil verify` is content, starts the store,
    // and the close writes a new one.
    std::fs::remove_file(&mark).unwrap();
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 41);
    fill(&log, 1);
    log.close().unwrap();
    assert_eq!(
        vigil_store::log::mark::read(dir.path())
            .unwrap()
            .unwrap()
            .head,
        42
    );
}

#[test]
fn damage_a_store_without_fsync_records_no_mark() {
    // Its head may not be durable, so a mark could claim what a power loss takes.
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), Durability::UnsafeNoSync).unwrap();
    fill(&log, 5);
    assert!(!log.record_mark().unwrap());
    log.close().unwrap();
    assert_eq!(vigil_store::log::mark::read(dir.path()).unwrap(), None);
    drop(log);
    // With no mark there is nothing to check it against: verify says so (0 checked).
    let report = Log::open_for_verify(dir.path())
        .unwrap()
        .verify(|_, _| {})
        .unwrap();
    assert!(report.is_intact(), "{report}");
    let mark = report
        .checks
        .iter()
        .find(|c| c.check == Check::AcknowledgedHead)
        .unwrap();
    assert_eq!(mark.checked, 0, "{report}");
}

#[tokio::test]
async fn damage_the_running_store_records_the_acknowledged_head_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let stop = CancellationToken::new();
    let run = tokio::spawn(vigil_store::run(
        client.clone(),
        StoreConfig::new(dir.path()),
        stop.clone(),
    ));
    let store = runtime::StoreClient::new(client, Duration::from_secs(5));
    let ok = store
        .append_retrying(
            &AppendRequest {
                after: None,
                stream: stream(3),
                expected_version: ExpectedVersion::Any,
                events: (0..3).map(event).collect(),
            },
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    // Without a stop (a kill -9 now would leave this mark): the mark reaches the append.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mark = vigil_store::log::mark::read(dir.path()).unwrap();
        if mark.as_ref().is_some_and(|m| m.head == ok.last_position) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no mark at {} after 10 s: {mark:?}",
            ok.last_position
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();
}

#[test]
fn damage_a_flipped_bit_in_an_old_table_block_is_found_by_the_scan_and_verify() {
    let dir = store_in_tables(2000);
    // A quarter into the log's table: a data block of events far below the tail that the
    // store checks at open, and past the first block it reads there.
    let log_table = table(dir.path(), 1);
    let len = std::fs::metadata(&log_table).unwrap().len();
    flip(&log_table, len / 4, 3);
    // The checks at open do not reach it: the store starts …
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 2000);
    // … and the scan after start finds it (the server then stops; see below).
    let m = clear_refusal(log.scan().err().unwrap());
    assert!(m.contains("checksum"), "{m}");
    assert!(m.contains("reading the log after position"), "{m}");
    drop(log);
    // `vigil verify` reports it as damage at a position, not as an error reading the files.
    let (check, broken, report) = first_broken(dir.path());
    assert_eq!(check, Check::Decode, "{report}");
    assert!(broken.position > 1 && broken.position < 1500, "{report}");
    assert!(broken.problem.contains("cannot be read"), "{report}");
}

#[test]
fn damage_a_gap_in_the_middle_beyond_the_tail_check_is_found_by_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = Log::open(dir.path(), Durability::SyncData).unwrap();
        fill(&log, 1000);
        log.close().unwrap();
    }
    {
        // What a journal record skipped at recovery leaves: events (each with its chain
        // hash) missing in the middle.
        let db = Database::builder(dir.path()).open().unwrap();
        let ks = db.keyspace("log", KeyspaceCreateOptions::default).unwrap();
        for p in 100u64..=102 {
            ks.remove(p.to_be_bytes().to_vec()).unwrap();
        }
        db.persist(vigil_store::log::fjall::PersistMode::SyncAll)
            .unwrap();
    }
    // Far below the tail the store checks at open: it starts …
    let log = Log::open(dir.path(), Durability::SyncData).unwrap();
    assert_eq!(log.head(), 1000);
    // … and the scan finds the hole rather than letting it be served.
    let m = clear_refusal(log.scan().err().unwrap());
    assert!(m.contains("position 100"), "{m}");
    assert!(m.contains("missing"), "{m}");
    // An intact store scans clean.
    let intact = tempfile::tempdir().unwrap();
    let log = Log::open(intact.path(), Durability::SyncData).unwrap();
    fill(&log, 50);
    assert_eq!(log.scan().unwrap(), Some(50));
}

#[tokio::test]
async fn damage_found_after_start_stops_the_store_with_a_clear_error() {
    let dir = store_in_tables(2000);
    let log_table = table(dir.path(), 1);
    let len = std::fs::metadata(&log_table).unwrap().len();
    flip(&log_table, len / 4, 5);
    let nats = NatsServer::start();
    let client = nats.connect().await;
    let stop = CancellationToken::new();
    let run = vigil_store::run(client, StoreConfig::new(dir.path()), stop.clone());
    // It opens (the damage is beyond the checks at open), scans, and stops by itself.
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the store went on serving a damaged log");
    let e = format!("{:#}", result.err().unwrap());
    assert!(e.contains("damaged (found after start)"), "{e}");
    assert!(e.contains("vigil verify") && e.contains("backup"), "{e}");
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::copy_dir(from, to).unwrap();
}
