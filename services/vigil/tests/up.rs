//! The README's first command, for real: `vigil up` owns a nats-server and the store; the
//! CLI appends and tails through it; SIGTERM stops everything and exits 0.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use testkit::{ChildGuard, free_port, speaks_nats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

async fn http_get(port: u16, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

async fn http_get_as(port: u16, path: &str, token: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vigil_up_runs_the_centre_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let nats_port = free_port();
    let metrics_port = free_port();
    let http_port = free_port();
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    let (mut child, banner) = common::spawn_up(
        dir.path(),
        &nats_url,
        http_port,
        metrics_port,
        Stdio::null(),
    )
    .await;
    assert!(banner.contains("Vigil is up."), "{banner}");
    assert!(banner.contains(&nats_url), "{banner}");
    assert!(banner.contains("wall screen"), "{banner}");
    assert!(speaks_nats(nats_port), "vigil up's own nats-server listens");

    let out = vigil()
        .args([
            "append",
            "--nats-url",
            &nats_url,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--type",
            "NoteAdded",
            "--data",
            r#"{"text":"hello"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("at position 1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = vigil()
        .args([
            "tail",
            "--nats-url",
            &nats_url,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--from",
            "1",
            "--count",
            "1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["type"], "NoteAdded");
    assert_eq!(event["data"]["text"], "hello");
    assert_eq!(event["position"], 1);

    // Bad CLI input: a clear message and a failing exit code, nothing appended.
    let out = vigil()
        .args([
            "append",
            "--nats-url",
            &nats_url,
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--type",
            "NoteAdded",
            "--data",
            "{not json",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data is not valid JSON"));

    let metrics = http_get(metrics_port, "/metrics").await;
    assert!(metrics.contains("vigil_store_head_position 1"), "{metrics}");
    assert!(metrics.contains("vigil_store_commit_seconds"), "{metrics}");

    // A refused request of a valid token lands in the log at once as an audit event, via the
    // audit service (refusals without one are counted for a minute: tests/refusal_audit.rs).
    let screen_token = banner
        .split("token=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    let refused = http_get_as(http_port, "/api/v1/events?from=1", screen_token).await;
    assert!(refused.starts_with("HTTP/1.0 403"), "{refused}");
    let out = vigil()
        .args([
            "tail",
            "--nats-url",
            &nats_url,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .args(["--from", "2", "--count", "1", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(audit["type"], "AccessDenied", "{audit}");
    assert_eq!(audit["data"]["path"], "/api/v1/events");
    assert_eq!(audit["data"]["code"], "forbidden");
    assert!(
        audit["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("audit-"))
    );
    assert_eq!(audit["meta"]["actor"], "audit");

    let pid = child.id().unwrap();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !speaks_nats(nats_port),
        "the owned nats-server is stopped too"
    );
}

#[test]
fn a_taken_port_gets_an_error_that_says_what_to_do() {
    // Something that is not NATS holds the port: vigil up must say so and exit non-zero.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let mut guard = ChildGuard(Some(
        vigil()
            .args([
                "up",
                "--nats-url",
                &format!("nats://127.0.0.1:{port}"),
                "--metrics",
                &format!("127.0.0.1:{}", free_port()),
                "--data-dir",
            ])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = guard.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already in use") && err.contains("--nats-url"),
        "{err}"
    );
}
