//! `vigil verify`, the real binary: exit 0 on an intact store; on a copy with one event
//! tampered, exit 1 naming the position; a clear refusal while the store is running.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use serde_json::json;
use store::log::{Pending, fjall};
use store::{Durability, Log};
use uuid::Uuid;

const EVENTS: u64 = 400;

/// A data directory whose store holds `EVENTS` events over 10 streams.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(&dir.path().join("store"), Durability::SyncData).unwrap();
    let streams: Vec<StreamName> = (0..10)
        .map(|_| StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap())
        .collect();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(25) {
        let mut group: Vec<Pending> = chunk
            .iter()
            .map(|&n| Pending {
                request: AppendRequest {
                    after: None,
                    stream: streams[n as usize % streams.len()].clone(),
                    expected_version: ExpectedVersion::Any,
                    events: vec![NewEvent {
                        id: Uuid::new_v4(),
                        event_type: "IncidentReported".into(),
                        v: 1,
                        data: json!({ "n": n, "title": "checkpoint fired upon" }),
                        meta: Meta {
                            actor: Some("test".into()),
                            ..Meta::default()
                        },
                    }],
                }
                .into(),
                outcome: None,
            })
            .collect();
        log.commit_group(&mut group).unwrap();
        assert!(group.iter().all(|p| matches!(p.outcome, Some(Ok(_)))));
    }
    assert_eq!(log.head(), EVENTS);
    log.close().unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    testkit::copy_dir(from, to).unwrap();
}

fn verify(data_dir: &Path) -> (Output, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn vigil_verify_passes_an_intact_store_and_names_a_tampered_position() {
    let data = data_dir();
    let (out, stdout, stderr) = verify(data.path());
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("INTACT"), "{stdout}");
    assert!(
        stdout.contains(&format!("last position {EVENTS}")),
        "{stdout}"
    );

    // Tamper with one event in a copy of the data directory, as someone opening the stopped
    // store's files with fjall directly would.
    let copy = tempfile::tempdir().unwrap();
    copy_dir(data.path(), copy.path());
    let tampered = 123u64;
    {
        let db = fjall::Database::builder(copy.path().join("store"))
            .open()
            .unwrap();
        let log = db
            .keyspace("log", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        let key = tampered.to_be_bytes();
        // Layout 2: the chain hash, then the event; the hash is left as it was.
        let stored = log.get(key).unwrap().unwrap();
        let (hash, event) = stored.split_at(store::log::layout::HASH_LEN);
        let mut event: serde_json::Value = serde_json::from_slice(event).unwrap();
        event["data"]["title"] = json!("all quiet");
        let mut value = hash.to_vec();
        value.extend_from_slice(&serde_json::to_vec(&event).unwrap());
        log.insert(key, value).unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let (out, stdout, stderr) = verify(copy.path());
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("BROKEN at position {tampered}")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("positions 1 to {}", tampered - 1)),
        "{stdout}"
    );
    assert!(stdout.contains("backup"), "{stdout}");
    assert!(
        stderr.contains(&format!("first broken position {tampered}")),
        "{stderr}"
    );

    // The original is untouched.
    let (out, stdout, _) = verify(data.path());
    assert_eq!(out.status.code(), Some(0), "{stdout}");
}

#[test]
fn vigil_verify_refuses_while_the_store_holds_the_directory() {
    let data = data_dir();
    let running = Log::open(&data.path().join("store"), Durability::SyncData).unwrap();
    let (out, stdout, stderr) = verify(data.path());
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("locked"), "{stderr}");
    assert!(stderr.contains("stop the store"), "{stderr}");
    drop(running);

    let empty = tempfile::tempdir().unwrap();
    let (out, _, stderr) = verify(empty.path());
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no event store"), "{stderr}");
}
