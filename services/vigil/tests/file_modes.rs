//! The data directory is private (issue 13, item 5: `store/*.jnl` and fjall's tables were
//! 0644 under 0755 directories, and `runuser -u nobody -- grep` read hostage captors).
//! Through the real `vigil` binary: what the centre writes is owner-only, including fjall's
//! own files, and a data directory open to others is refused with the `chmod` to run.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use events::{AppendRequest, Category, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::StoreClient;
use testkit::free_port;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// Every path under `dir` (not following links) with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.clone(),
            meta.is_dir(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            out.extend(modes(&path));
        }
    }
    out
}

/// Runs `vigil up` on `data_dir`, appends `mebibytes` of events (past fjall's memtable, so
/// tables are written, not only the journal), adds a user and revokes a token, and stops it.
async fn run_centre(data_dir: &Path, mebibytes: usize) {
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (mut child, banner) =
        common::spawn_up(data_dir, &nats_url, free_port(), free_port(), Stdio::null()).await;
    assert!(banner.contains("Vigil is up."), "{banner}");
    let credentials = runtime::nats_auth::load(data_dir)
        .unwrap()
        .and_then(|u| u.credentials(runtime::nats_auth::CLI));
    let client = runtime::nats::connect(
        &nats_url,
        "file-modes-test",
        credentials,
        runtime::nats::Mode::Tool,
    )
    .await
    .unwrap();
    let store = StoreClient::new(client, Duration::from_secs(10));
    let text = "captors: ".to_owned() + &"x".repeat(1000);
    for _ in 0..mebibytes {
        let events = (0..1000)
            .map(|_| NewEvent {
                id: uuid::Uuid::now_v7(),
                event_type: "NoteAdded".into(),
                v: 1,
                data: serde_json::json!({ "text": text }),
                meta: Meta {
                    actor: Some("file-modes-test".into()),
                    role: Some("admin".into()),
                    source: Some("cli".into()),
                    ..Meta::default()
                },
            })
            .collect::<Vec<_>>();
        for chunk in events.chunks(100) {
            let request = AppendRequest {
                after: None,
                stream: StreamName::new(Category::parse("note").unwrap(), uuid::Uuid::now_v7()),
                expected_version: ExpectedVersion::Any,
                events: chunk.to_vec(),
            };
            store
                .append_retrying(&request, Duration::from_secs(20))
                .await
                .unwrap();
        }
    }
    let dir = data_dir.to_str().unwrap();
    let out = vigil()
        .args([
            "token",
            "create",
            "--data-dir",
            dir,
            "--role",
            "wall_screen",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = vigil()
        .args(["token", "revoke", "--data-dir", dir, "some-token-id"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    common::stop_up(&mut child);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "vigil up stopped cleanly: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_the_centre_writes_is_owner_only() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    run_centre(&data_dir, 20).await;

    let all = modes(&data_dir);
    let names: Vec<String> = all
        .iter()
        .map(|(p, _, _)| p.strip_prefix(&data_dir).unwrap().display().to_string())
        .collect();
    // What the probe read: the journal and fjall's tables; and the secrets.
    for expected in ["store", "secrets", "users.json", "revoked-tokens", "nats"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n.ends_with(".jnl")),
        "a journal in {names:?}"
    );
    assert!(
        names.iter().any(|n| n.contains("/tables/")),
        "a table (past the memtable) in {names:?}"
    );
    let mode = std::fs::metadata(&data_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the data directory itself");
    let open: Vec<String> = all
        .iter()
        .filter(|(_, is_dir, mode)| *mode != if *is_dir { 0o700 } else { 0o600 })
        .map(|(p, _, mode)| format!("{} {mode:03o}", p.display()))
        .collect();
    assert!(open.is_empty(), "not owner-only: {open:#?}");

    // As the probe did it, when this runs as root with `runuser`: another local user cannot
    // read the journal.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let journal = all
        .iter()
        .find(|(p, _, _)| p.extension().is_some_and(|e| e == "jnl"));
    if let (true, Some((journal, _, _))) = (root, journal)
        && Path::new("/usr/sbin/runuser").exists()
    {
        let out = Command::new("/usr/sbin/runuser")
            .args(["-u", "nobody", "--", "cat"])
            .arg(journal)
            .output()
            .unwrap();
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "nobody read {}: {out:?}",
            journal.display()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{out:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_open_to_others_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    run_centre(&data_dir, 1).await;
    // As an older version left it: directories 0755, files 0644.
    let status = Command::new("chmod")
        .args(["-R", "u=rwX,go=rX"])
        .arg(&data_dir)
        .status()
        .unwrap();
    assert!(status.success());
    let before = modes(&data_dir);
    let sizes = |all: &[(PathBuf, bool, u32)]| -> Vec<(PathBuf, u64)> {
        all.iter()
            .filter(|(_, is_dir, _)| !is_dir)
            .map(|(p, _, _)| (p.clone(), std::fs::metadata(p).unwrap().len()))
            .collect()
    };
    let sizes_before = sizes(&before);
    let advice = format!("chmod -R go-rwx {}", data_dir.display());

    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let dir = data_dir.to_str().unwrap();
    let http = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    for args in [
        vec![
            "up",
            "--nats-url",
            &nats_url,
            "--http",
            &http,
            "--metrics",
            &metrics,
        ],
        vec!["store", "--nats-url", &nats_url],
        vec!["gateway", "--nats-url", &nats_url, "--http", &http],
        vec!["token", "create", "--role", "wall_screen"],
    ] {
        let mut cmd = vigil();
        cmd.args(&args).args(["--data-dir", dir]);
        let out = tokio::task::spawn_blocking(move || {
            let mut child = cmd
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // It must refuse at once; a process that started instead is killed.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "vigil {args:?} refused: {stderr}");
        assert!(
            stderr.contains(&advice),
            "vigil {args:?} says {advice:?}: {stderr}"
        );
        assert_eq!(modes(&data_dir), before, "vigil {args:?} changed no mode");
        assert_eq!(sizes(&modes(&data_dir)), sizes_before, "and wrote nothing");
    }

    // The advice works.
    let status = Command::new("sh").args(["-c", &advice]).status().unwrap();
    assert!(status.success());
    let (mut child, banner) = common::spawn_up(
        &data_dir,
        &nats_url,
        free_port(),
        free_port(),
        Stdio::null(),
    )
    .await;
    assert!(banner.contains("Vigil is up."), "{banner}");
    common::stop_up(&mut child);
}
