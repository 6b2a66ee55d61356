//! Checkpoints broken on purpose, with the real parts: `vigil up` on a real data directory
//! writes the boards' and the registers' checkpoints when it stops; between two starts the
//! test damages them as a disk, an upgrade, a restored backup or a kill -9 would; every start
//! must say why it ignored a checkpoint, fold the whole log instead, and serve the same board
//! and the same incidents as the fold without checkpoints. A restart with another board
//! retention ignores the boards' checkpoint too (it was folded with the old one), and one with
//! another broadcast configuration the broadcast register's (its rule firings and damping
//! were decided under the old one).

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::centre::Centre;
use uuid::Uuid;

const LOG: &str =
    "warn,vigil_gateway=info,vigil_runtime::read_model=info,vigil_runtime::checkpoint=info";

fn checkpoint(dir: &Path, name: &str) -> PathBuf {
    runtime::checkpoint::file(&runtime::checkpoint::dir_in(dir), name)
}

/// The board and the incidents list, without what a restart moves (`position`, `as_of`).
async fn seen(c: &Centre) -> (Value, Value) {
    let mut board = c.get("/api/v1/boards/situation", &c["duty"]).await;
    board.as_object_mut().map(|b| {
        b.remove("position");
        b.remove("as_of")
    });
    let list = c.get("/api/v1/incidents?limit=100", &c["duty"]).await;
    (board, list["items"].clone())
}

/// The version, position, event id and state of a checkpoint file (which must be valid).
fn parts(file: &Path) -> (u32, u64, Uuid, Vec<u8>) {
    let bytes = std::fs::read(file).unwrap();
    let version = u32::from_le_bytes(bytes[12..16].try_into().unwrap());
    let (position, id, state) = runtime::checkpoint::unframe(&bytes, version).unwrap();
    (version, position, id, state.to_vec())
}

/// How each start finds the checkpoints, and what it must log about them.
#[derive(Debug, Clone, Copy)]
enum Case {
    Valid,
    Truncated,
    OtherVersion,
    FromTheFuture,
    OtherHistory,
    BadChecksum,
    /// A kill -9 while writing: a partial temp file, the checkpoint intact.
    KilledWhileWriting,
    /// The same, on a disk that also lost the checkpoint's tail.
    KilledAndTruncated,
}

impl Case {
    /// Breaks checkpoint `file` as the case says.
    fn apply(self, file: &Path) {
        let (version, position, id, state) = parts(file);
        let write = |bytes: Vec<u8>| std::fs::write(file, bytes).unwrap();
        let frame = runtime::checkpoint::frame;
        let temp = || {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            let tmp = file.with_file_name(format!("{name}.tmp-4242-0"));
            std::fs::write(&tmp, &frame(version, position, id, &state)[..40]).unwrap();
        };
        match self {
            Case::Valid => {}
            Case::Truncated => {
                let whole = std::fs::read(file).unwrap();
                write(whole[..whole.len() / 2].to_vec());
            }
            Case::OtherVersion => write(frame(version + 1, position, id, &state)),
            Case::FromTheFuture => write(frame(version, position + 1_000, id, &state)),
            Case::OtherHistory => write(frame(version, position, Uuid::new_v4(), &state)),
            Case::BadChecksum => {
                let mut bytes = frame(version, position, id, &state);
                let last = bytes.len() - 2;
                bytes[last] ^= 0x01;
                write(bytes);
            }
            Case::KilledWhileWriting => temp(),
            Case::KilledAndTruncated => {
                temp();
                let whole = std::fs::read(file).unwrap();
                write(whole[..whole.len() - 7].to_vec());
            }
        }
    }

    /// What the start logs for checkpoint `name` (each on a line that names it).
    fn logged(self, name: &str) -> Vec<String> {
        let used = if name == "boards" {
            "boards start from their checkpoint".to_owned()
        } else {
            "register starts from its checkpoint".to_owned()
        };
        let refused = |why: &str| vec!["checkpoint refused".to_owned(), why.to_owned()];
        match self {
            Case::Valid => vec![used],
            Case::KilledWhileWriting => vec![
                used,
                "removing the temporary file of an unfinished checkpoint".to_owned(),
            ],
            Case::Truncated | Case::KilledAndTruncated => refused("truncated"),
            Case::BadChecksum => refused("checksum mismatch"),
            Case::OtherVersion => vec!["checkpoint from another version ignored".to_owned()],
            Case::FromTheFuture => vec![
                "checkpoint REFUSED".to_owned(),
                "from the future".to_owned(),
            ],
            Case::OtherHistory => vec![
                "checkpoint REFUSED".to_owned(),
                "another history".to_owned(),
            ],
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_checkpoint_is_refused_and_the_board_is_the_fresh_fold() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::up()
        .data_dir(dir.path())
        .env("RUST_LOG", LOG)
        .token("duty", "duty_officer", "duty_officer", None)
        .probe("/api/v1/incidents")
        .start()
        .await;
    let occurred = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut ids = Vec::new();
    for (i, country) in ["SO", "SO", "ML", "HT", "SO"].into_iter().enumerate() {
        let id = Uuid::new_v4();
        c.ok(
            "POST",
            "/api/v1/incidents",
            &c["duty"],
            json!({"id": id, "country": country, "category": "crime", "severity": 1 + i,
                   "title": format!("Incident {i}"), "occurred_at": occurred}),
        )
        .await;
        ids.push(id);
    }
    c.ok(
        "POST",
        &format!("/api/v1/incidents/{}/verify", ids[0]),
        &c["duty"],
        json!({}),
    )
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/incidents/{}/close", ids[1]),
        &c["duty"],
        json!({"reason": "resolved"}),
    )
    .await;
    // The first start had no checkpoint: what it serves is the fold of the whole log, once
    // both have read all 7 events (the board and the list follow the log each on its own: the
    // list's versions add up to 7 only when it has the verification and the closure too).
    let cr = &c;
    let fresh = testkit::eventually(Duration::from_secs(10), || async move {
        let (board, list) = seen(cr).await;
        let versions: u64 = list
            .as_array()
            .map(|items| items.iter().filter_map(|i| i["version"].as_u64()).sum())
            .unwrap_or_default();
        (board["counters"]["open_incidents"] == 4
            && list.as_array().map(Vec::len) == Some(5)
            && versions == 7)
            .then_some((board, list))
    })
    .await
    .expect("the board shows the incidents");

    let boards = checkpoint(dir.path(), "boards");
    let incidents = checkpoint(dir.path(), "incidents");
    for case in [
        Case::Valid,
        Case::Truncated,
        Case::OtherVersion,
        Case::FromTheFuture,
        Case::OtherHistory,
        Case::BadChecksum,
        Case::KilledWhileWriting,
        Case::KilledAndTruncated,
        Case::Valid,
    ] {
        c.stop().await;
        // Stopping wrote both (again, when the last start folded anything).
        assert!(
            boards.exists() && incidents.exists(),
            "{case:?}: no checkpoint after a stop"
        );
        case.apply(&boards);
        case.apply(&incidents);
        let log_before = c.up_stderr().len();
        c.up_again().await;
        c.ready().await;
        let log = c.up_stderr()[log_before..].to_owned();
        for (name, file) in [("boards", &boards), ("incidents", &incidents)] {
            for words in case.logged(name) {
                let line = log.lines().find(|l| l.contains(&words) && l.contains(name));
                assert!(
                    line.is_some(),
                    "{case:?}: the start did not log {words:?} for {name}:\n{log}"
                );
                eprintln!("{case:?} {name}: {}", line.unwrap_or_default());
            }
            let leftovers = std::fs::read_dir(file.parent().unwrap())
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
                .count();
            assert_eq!(leftovers, 0, "{case:?}: a temp file is left");
        }
        let (cr, fr) = (&c, &fresh);
        let now = testkit::eventually(Duration::from_secs(10), || async move {
            let seen = seen(cr).await;
            (&seen == fr).then_some(seen)
        })
        .await;
        assert!(
            now.is_some(),
            "{case:?}: the board or the list is not the fresh fold: {:#?}\nfresh: {fresh:#?}",
            seen(&c).await
        );
    }

    // And once more with no checkpoints at all: deleting them is always safe.
    c.stop().await;
    std::fs::remove_dir_all(runtime::checkpoint::dir_in(dir.path())).unwrap();
    c.up_again().await;
    c.ready().await;
    assert_eq!(seen(&c).await, fresh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boards_checkpoint_of_another_retention_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::up()
        .data_dir(dir.path())
        .env("RUST_LOG", LOG)
        .token("duty", "duty_officer", "duty_officer", None)
        .probe("/api/v1/incidents")
        .start()
        .await;
    let occurred = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    c.ok(
        "POST",
        "/api/v1/incidents",
        &c["duty"],
        json!({"id": Uuid::new_v4(), "country": "SO", "category": "crime", "severity": 2,
               "title": "Roadblock", "occurred_at": occurred}),
    )
    .await;
    let cr = &c;
    let fresh = testkit::eventually(Duration::from_secs(10), || async move {
        let (board, _) = seen(cr).await;
        (board["counters"]["open_incidents"] == 1).then_some(board)
    })
    .await
    .expect("the board shows the incident");
    let boards = checkpoint(dir.path(), "boards");
    let ignored = "checkpoint written with another board retention ignored";
    for (retention, expect_ignored) in [("3600", true), ("3600", false)] {
        c.stop().await;
        assert!(boards.exists(), "no boards checkpoint after a stop");
        c.set_env("VIGIL_BOARD_RETENTION_SECS", retention);
        let log_before = c.up_stderr().len();
        c.up_again().await;
        c.ready().await;
        let log = c.up_stderr()[log_before..].to_owned();
        assert_eq!(
            log.lines().any(|l| l.contains(ignored)),
            expect_ignored,
            "retention {retention}:\n{log}"
        );
        if !expect_ignored {
            assert!(
                log.lines()
                    .any(|l| l.contains("boards start from their checkpoint")),
                "the same retention uses the checkpoint:\n{log}"
            );
        }
        let cr = &c;
        let fr = &fresh;
        let now = testkit::eventually(Duration::from_secs(10), || async move {
            let (board, _) = seen(cr).await;
            (&board == fr).then_some(board)
        })
        .await;
        assert!(now.is_some(), "the board is not the fresh fold");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_register_checkpoint_of_another_configuration_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = common::up()
        .data_dir(dir.path())
        .env("RUST_LOG", LOG)
        .token("duty", "duty_officer", "duty_officer", None)
        .probe("/api/v1/broadcasts")
        .start()
        .await;
    let body = json!({"id": Uuid::new_v4(), "title": "Shift change", "body": "Handover at 18:00",
        "severity": "low", "audience": "duty_officers", "requires_ack": false});
    let cr = &c;
    let issued = testkit::eventually(Duration::from_secs(20), || async {
        let a = cr
            .call("POST", "/api/v1/broadcasts", &cr["duty"], Some(&body))
            .await;
        (a.status != 503).then_some(a)
    })
    .await
    .unwrap();
    assert_eq!(issued.status, 201, "{}", issued.body);
    let cr = &c;
    let fresh = testkit::eventually(Duration::from_secs(10), || async move {
        let l = cr.get("/api/v1/broadcasts", &cr["duty"]).await;
        (l["items"].as_array().map(Vec::len) == Some(1)).then_some(l["items"].clone())
    })
    .await
    .expect("the broadcast is listed");
    let register = checkpoint(dir.path(), "broadcast");
    // The shipped configuration with another damping window: another configuration.
    let mut config: Value =
        serde_json::from_str(include_str!("../../broadcast/broadcast.json")).unwrap();
    config["damp_minutes"] = json!(30);
    let config_file = dir.path().join("broadcast-30.json");
    std::fs::write(&config_file, config.to_string()).unwrap();
    for (changed, logged) in [
        (true, "checkpoint from another configuration ignored"),
        (false, "register starts from its checkpoint"),
    ] {
        c.stop().await;
        assert!(register.exists(), "no broadcast checkpoint after a stop");
        if changed {
            c.set_env("VIGIL_BROADCAST_CONFIG", config_file.to_str().unwrap());
        }
        let log_before = c.up_stderr().len();
        c.up_again().await;
        c.ready().await;
        let log = c.up_stderr()[log_before..].to_owned();
        assert!(
            log.lines()
                .any(|l| l.contains(logged) && l.contains("broadcast")),
            "changed {changed}: the start did not log {logged:?} for broadcast:\n{log}"
        );
        let cr = &c;
        let fr = &fresh;
        let now = testkit::eventually(Duration::from_secs(10), || async move {
            let l = cr.get("/api/v1/broadcasts", &cr["duty"]).await;
            (&l["items"] == fr).then_some(())
        })
        .await;
        assert!(now.is_some(), "changed {changed}: the list is not the fold");
    }
}
