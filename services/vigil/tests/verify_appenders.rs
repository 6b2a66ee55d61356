//! `vigil verify` says who appended what (each event's `meta.appended_by`, the NATS user the
//! store saw) and flags events a user appended outside the categories it owns, so an auditor
//! sees a service writing outside its category even if a bus let it through.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use store::log::Pending;
use store::{Durability, Log};
use uuid::Uuid;

/// Appends one event to a new stream of `category`, recorded as appended by `user`.
fn append(dir: &Path, category: &str, user: Option<&str>) {
    let log = Log::open(&dir.join("store"), Durability::SyncData).unwrap();
    let mut group = vec![Pending {
        request: AppendRequest {
            after: None,
            stream: StreamName::parse(&format!("{category}-{}", Uuid::new_v4())).unwrap(),
            expected_version: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: "AreaSecurityLevelSet".into(),
                v: 2,
                data: serde_json::json!({"area": "SOM-BAN", "level": 6, "reason": "x"}),
                meta: Meta {
                    actor: Some("duty1".into()),
                    appended_by: user.map(str::to_owned),
                    ..Meta::default()
                },
            }],
        }
        .into(),
        outcome: None,
    }];
    log.commit_group(&mut group).unwrap();
    assert!(matches!(group[0].outcome, Some(Ok(_))));
    log.close().unwrap();
}

fn verify(dir: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("verify")
        .arg("--data-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .env_remove("VIGIL_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Not damage: the log is intact, so the exit code stays 0.
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn vigil_verify_counts_appenders_and_flags_writes_outside_a_users_categories() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), "incident", None);
    append(dir.path(), "level", Some("levels"));
    append(dir.path(), "note", Some("cli"));
    let stdout = verify(dir.path());
    assert!(stdout.contains("(not recorded): incident 1"), "{stdout}");
    assert!(stdout.contains("levels: level 1"), "{stdout}");
    assert!(stdout.contains("cli: note 1"), "{stdout}");
    assert!(!stdout.contains("OUTSIDE"), "{stdout}");

    // The probe's forgery, had a bus let it through: the audit user writing a level.
    append(dir.path(), "level", Some("audit"));
    let stdout = verify(dir.path());
    assert!(stdout.contains("audit: level 1"), "{stdout}");
    assert!(
        stdout.contains("OUTSIDE THEIR CATEGORIES: 1 event(s)")
            && stdout.contains("position 4, `audit` wrote a `level` stream"),
        "{stdout}"
    );
}
