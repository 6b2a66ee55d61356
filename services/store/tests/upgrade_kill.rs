//! The layout upgrade killed part-way, for real: a child process opens a layout-1 store (the
//! open upgrades it) and is killed with SIGKILL after a while; the next open resumes the
//! upgrade, and the result is byte for byte the store written natively in layout 2.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_store::{Durability, Log};

mod common;

use common::{entries, fill, ks, to_layout_1, with_fjall};

/// Set for the child process: the store directory it opens.
const CHILD_DIR: &str = "VIGIL_TEST_UPGRADE_DIR";

const EVENTS: u64 = 60_000;

/// Only as the child of the test below (it is ignored otherwise): opens the store, which
/// upgrades it, until killed.
#[test]
#[ignore = "run as a child process by a_killed_upgrade_resumes_and_ends_identical"]
fn child_opens_the_store() {
    let dir = std::env::var(CHILD_DIR).expect("run by a_killed_upgrade_resumes_and_ends_identical");
    Log::open(Path::new(&dir), Durability::SyncData).unwrap();
}

/// How far the upgrade of the stopped store in `dir` got (0: not started).
fn progress(dir: &Path) -> u64 {
    let mut at = 0;
    with_fjall(dir, |db| {
        if db.keyspace_exists("chain") {
            let mut key = vec![0u8; 8];
            key.extend_from_slice(b"layout-2");
            if let Some(v) = ks(db, "chain").get(key).unwrap() {
                at = u64::from_be_bytes(v[..8].try_into().unwrap());
            }
        }
    });
    at
}

/// Runs the child on `dir` and kills it after `after` (or lets it finish, if `None`); how
/// long it ran.
fn run_child(dir: &Path, after: Option<Duration>) -> Duration {
    let started = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_opens_the_store"])
        .env(CHILD_DIR, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    match after {
        Some(after) => {
            while started.elapsed() < after && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            child.kill().unwrap();
            child.wait().unwrap();
        }
        None => assert!(child.wait().unwrap().success(), "the upgrade failed"),
    }
    started.elapsed()
}

#[test]
fn a_killed_upgrade_resumes_and_ends_identical() {
    let native = tempfile::tempdir().unwrap();
    {
        let log = Log::open(native.path(), Durability::UnsafeNoSync).unwrap();
        fill(&log, EVENTS);
        log.close().unwrap();
    }
    let want = entries(native.path(), "log");
    let template = tempfile::tempdir().unwrap();
    testkit::copy_dir(native.path(), template.path()).unwrap();
    to_layout_1(template.path(), true, 0);
    // How long a whole upgrade takes here, then kills at fractions of that: each kill must
    // resume to the same bytes; at least one must land part-way (the pace varies).
    let whole = {
        let old = tempfile::tempdir().unwrap();
        testkit::copy_dir(template.path(), old.path()).unwrap();
        run_child(old.path(), None)
    };
    // Where the upgrade runs within a child's time varies (the open first recovers fjall's
    // journal): bisect the kill time between "before the first batch" and "after the last".
    let (mut early, mut late) = (Duration::ZERO, whole);
    let mut interrupted = Vec::new();
    for _ in 0..10 {
        if interrupted.len() == 2 {
            break;
        }
        let after = (early + late) / 2;
        let old = tempfile::tempdir().unwrap();
        testkit::copy_dir(template.path(), old.path()).unwrap();
        run_child(old.path(), Some(after));
        let at = progress(old.path());
        let done = old.path().join("layout").exists();
        eprintln!("killed after {after:?}: {at} events upgraded, finished {done}");
        if done || at == EVENTS {
            late = after;
        } else if at == 0 {
            early = after;
        } else {
            interrupted.push(at);
            // The next kill a little later, for another point of interruption.
            early = after;
        }
        let log = Log::open(old.path(), Durability::SyncData).unwrap();
        assert_eq!(log.head(), EVENTS);
        drop(log);
        assert_eq!(
            entries(old.path(), "log"),
            want,
            "killed after {at} events, resumed"
        );
        let report = Log::open_for_verify(old.path())
            .unwrap()
            .verify(|_, _| {})
            .unwrap();
        assert!(report.is_intact(), "{report}");
    }
    eprintln!(
        "a whole upgrade of {EVENTS} events took {whole:?}; killed part-way after {interrupted:?} events, each resumed intact"
    );
    assert!(
        !interrupted.is_empty(),
        "no kill landed part-way through the upgrade"
    );
}
