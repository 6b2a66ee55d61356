//! The README's first command, for real: `vigil up` owns a nats-server and the store; its
//! banner comes once the store and the services answer (the first requests after it are
//! served); the CLI appends and tails through it; SIGTERM stops everything and exits 0.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use testkit::{ChildGuard, free_port, speaks_nats};

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

/// `GET path` on the loopback `port`, with a bearer `token` if given.
async fn http_get(port: u16, path: &str, token: Option<&str>) -> testkit::http::Answer {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    testkit::http::json(addr, "GET", path, token, None)
        .await
        .unwrap()
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
    // The banner comes once the store and every service answer: the first requests after it
    // reach both (the printed admin logs in and lists incidents, which the incidents
    // service's register answers; the log is read through the store).
    let password = banner
        .lines()
        .find_map(|l| {
            l.split_once("with password ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no admin password in the banner:\n{banner}"));
    let addr = format!("127.0.0.1:{http_port}").parse().unwrap();
    let login = testkit::http::json(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&serde_json::json!({"username": "admin", "password": password})),
    )
    .await
    .unwrap();
    assert_eq!(login.status, 200, "{}", login.body);
    let admin = login.json()["token"].as_str().unwrap().to_owned();
    for path in ["/api/v1/incidents", "/api/v1/events?limit=1"] {
        let a = http_get(http_port, path, Some(&admin)).await;
        assert_eq!(
            a.status, 200,
            "GET {path} right after the banner: {}",
            a.body
        );
    }

    // `vigil append` of a NoteAdded with `data`.
    let append = |data: &str| {
        vigil()
            .args(["append", "--nats-url", &nats_url, "--data-dir"])
            .arg(dir.path())
            .args(["--type", "NoteAdded", "--data", data])
            .output()
            .unwrap()
    };
    let out = append(r#"{"text":"hello"}"#);
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

    // `vigil tail` of the one event at position `from`, as JSON.
    let tail = |from: &str| {
        vigil()
            .args(["tail", "--nats-url", &nats_url, "--data-dir"])
            .arg(dir.path())
            .args(["--from", from, "--count", "1", "--json"])
            .output()
            .unwrap()
    };
    let out = tail("1");
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
    let out = append("{not json");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data is not valid JSON"));

    let metrics = http_get(metrics_port, "/metrics", None).await.body;
    assert!(metrics.contains("vigil_store_head_position 1"), "{metrics}");
    assert!(metrics.contains("vigil_store_commit_seconds"), "{metrics}");

    // A refused request of a valid token lands in the log at once as an audit event, via the
    // audit service (refusals without one are counted for a minute: tests/refusal_audit.rs).
    let screen_token = banner
        .split("token=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap();
    let refused = http_get(http_port, "/api/v1/events?from=1", Some(screen_token)).await;
    assert!(refused.head.starts_with("HTTP/1.0 403"), "{refused:?}");
    let out = tail("2");
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
