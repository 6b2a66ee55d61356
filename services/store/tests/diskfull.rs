//! Regression tests for what the disk-full scenario (`ops/chaos diskfull`, issue #8 item 8)
//! found: a commit that failed because the disk was full stopped writes until an operator
//! restarted the store. Now appends are refused saying the disk is full, and the log is
//! reopened by itself once the disk takes writes again, losing nothing acknowledged.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use events::store_api::{AppendOk, ErrorCode, StoreError};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use serde_json::json;
use uuid::Uuid;
use vigil_store::log::live::{LiveLog, RETRY_EVERY};
use vigil_store::log::{Failure, Pending};
use vigil_store::{Durability, Log};

fn stream(n: usize) -> StreamName {
    StreamName::parse(&format!("incident-{}", Uuid::from_u128(n as u128 + 1))).unwrap()
}

fn event(n: u64, pad: usize) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "IncidentUpdated".into(),
        v: 1,
        data: json!({ "n": n, "text": "x".repeat(pad) }),
        meta: Meta {
            actor: Some("test".into()),
            ..Meta::default()
        },
    }
}

/// One append of one event through the live log.
fn append(live: &LiveLog, n: u64, pad: usize) -> (NewEvent, Result<AppendOk, StoreError>) {
    let e = event(n, pad);
    let mut group = [Pending {
        request: AppendRequest {
            after: None,
            stream: stream((n % 5) as usize),
            expected_version: ExpectedVersion::Any,
            events: vec![e.clone()],
        }
        .into(),
        outcome: None,
    }];
    live.commit_group(&mut group).unwrap();
    (e, group[0].outcome.take().unwrap())
}

/// Every acknowledged event is where it was acknowledged, and positions run 1..=head.
fn assert_holds(live: &LiveLog, acked: &[(NewEvent, AppendOk)]) {
    let log = live.get().unwrap();
    let all = log.read_from(1, 1_000_000).unwrap();
    assert_eq!(all.len() as u64, log.head());
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e.position, i as u64 + 1);
    }
    for (e, ok) in acked {
        let stored = &all[ok.first_position as usize - 1];
        assert_eq!(stored.id, e.id);
        assert_eq!(stored.version, ok.stream_version);
    }
}

#[test]
fn diskfull_a_full_disk_stop_resumes_by_itself_once_the_disk_takes_writes() {
    let dir = tempfile::tempdir().unwrap();
    let live = LiveLog::open(dir.path(), Durability::SyncData).unwrap();
    let mut acked = Vec::new();
    for n in 0..50 {
        let (e, ok) = append(&live, n, 100);
        acked.push((e, ok.unwrap()));
    }
    // As a commit that failed with ENOSPC leaves it (the disk here has room again).
    live.stop_writes(Failure::DiskFull);
    assert!(live.get().unwrap().is_disk_full());
    // The next append finds the disk writable, reopens the log and is stored.
    let (e, ok) = append(&live, 50, 100);
    let ok = ok.unwrap();
    assert_eq!(ok.first_position, 51);
    acked.push((e, ok));
    assert!(!live.get().unwrap().is_poisoned());
    for n in 51..60 {
        let (e, ok) = append(&live, n, 100);
        acked.push((e, ok.unwrap()));
    }
    assert_holds(&live, &acked);
    // And the files agree after a restart.
    live.close().unwrap();
    drop(live);
    assert_eq!(
        Log::open(dir.path(), Durability::SyncData).unwrap().head(),
        60
    );
}

#[test]
fn diskfull_only_a_full_disk_resumes_by_itself_another_failure_waits_for_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    let live = LiveLog::open(dir.path(), Durability::SyncData).unwrap();
    append(&live, 0, 10).1.unwrap();
    live.stop_writes(Failure::Failed("Input/output error (os error 5)".into()));
    for n in 1..4 {
        let refused = append(&live, n, 10).1.unwrap_err();
        assert_eq!(refused.code, ErrorCode::Unavailable);
        assert!(refused.message.contains("restart the store"), "{refused:?}");
        assert!(refused.message.contains("os error 5"), "{refused:?}");
        std::thread::sleep(RETRY_EVERY);
    }
    assert_eq!(live.head(), 1);
}

/// A tmpfs mounted for a test; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size_mib: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m")])
            .arg("vigil-test-diskfull")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(path.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

fn available(path: &Path) -> u64 {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn diskfull_on_a_full_tmpfs_appends_are_refused_nothing_acknowledged_is_lost_and_writes_resume() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(_tmpfs) = Tmpfs::mount(mount_point.path(), 24) else {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); `ops/chaos diskfull` runs the same check"
        );
        return;
    };
    let dir = mount_point.path().join("store");
    let live = LiveLog::open(&dir, Durability::SyncData).unwrap();
    // Leave the log ~3 MiB.
    let ballast = mount_point.path().join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).unwrap();
        let chunk = vec![0x5au8; 1 << 20];
        let mut left = available(mount_point.path()).saturating_sub(3 << 20);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            f.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        f.sync_all().unwrap();
    }
    let mut acked = Vec::new();
    let mut refused = None;
    let started = Instant::now();
    let mut n = 0;
    while refused.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the disk never filled"
        );
        let (e, outcome) = append(&live, n, 2000);
        n += 1;
        match outcome {
            Ok(ok) => acked.push((e, ok)),
            Err(err) => refused = Some(err),
        }
    }
    let refused = refused.unwrap();
    assert_eq!(refused.code, ErrorCode::Unavailable);
    assert!(
        refused
            .message
            .contains("disk holding the event log is full"),
        "{refused:?}"
    );
    assert!(live.get().unwrap().is_disk_full());
    // While full: refused again (the probe finds no room), and reads go on.
    std::thread::sleep(RETRY_EVERY);
    assert!(append(&live, n, 2000).1.is_err());
    n += 1;
    assert_holds(&live, &acked);

    // Space returns: the next append (after the retry interval) reopens and is stored.
    std::fs::remove_file(&ballast).unwrap();
    std::thread::sleep(RETRY_EVERY);
    let (e, ok) = append(&live, n, 2000);
    let ok = ok.unwrap();
    acked.push((e, ok));
    assert!(!live.get().unwrap().is_poisoned());
    assert_holds(&live, &acked);
    let head = live.head();
    live.close().unwrap();
    drop(live);
    // What a restart reads is the same log.
    let log = Log::open(&dir, Durability::SyncData).unwrap();
    assert_eq!(log.head(), head);
    drop(log);
}
