//! Users take effect at once in the real `vigil up`, changed by the real `vigil user add` in
//! another process: the admin password printed at the very first start logs in at once; a
//! user added while the centre runs logs in; changing a user's role and password ends its old
//! session and the old password. And `/metrics` is served on the metrics address only, never
//! on the public port.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use testkit::free_port;

/// `vigil user add <name> --role <role> --password-stdin` on `dir`, as an operator runs it
/// while the centre is up.
fn user_add(dir: &Path, name: &str, role: &str, password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["user", "add", name, "--role", role, "--password-stdin"])
        .arg("--data-dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "vigil user add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn login(addr: SocketAddr, name: &str, password: &str) -> (u16, Value) {
    let a = testkit::http::json(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": name, "password": password})),
    )
    .await
    .unwrap();
    (a.status, a.json())
}

async fn events_status(addr: SocketAddr, token: &str) -> u16 {
    testkit::http::json(addr, "GET", "/api/v1/events?limit=1", Some(token), None)
        .await
        .unwrap()
        .status
}

struct Up(tokio::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        common::stop_up(&mut self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_changed_while_vigil_up_runs_take_effect_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (http_port, metrics_port) = (free_port(), free_port());
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (child, banner) = common::spawn_up(
        dir.path(),
        &nats_url,
        http_port,
        metrics_port,
        Stdio::null(),
    )
    .await;
    let _up = Up(child);
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();

    // (a) The very first start: the printed admin password works from the first request.
    let password = banner
        .lines()
        .find_map(|l| {
            l.split_once("with password ")
                .map(|(_, p)| p.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no admin password in the banner:\n{banner}"));
    let (status, body) = login(addr, "admin", &password).await;
    assert_eq!(status, 200, "the printed admin password logs in: {body}");
    assert_eq!(body["role"], "admin");

    // (b) A user added by another process while the centre runs logs in at once.
    user_add(dir.path(), "bo", "duty_officer", "first password 1");
    let (status, body) = login(addr, "bo", "first password 1").await;
    assert_eq!(status, 200, "a user added while running logs in: {body}");
    let old = body["token"].as_str().unwrap().to_owned();
    assert_eq!(events_status(addr, &old).await, 200);

    // (c) Demoted with a new password: the old session and the old password are refused.
    user_add(dir.path(), "bo", "wall_screen", "second password 2");
    assert_eq!(
        events_status(addr, &old).await,
        401,
        "the old session ended"
    );
    assert_eq!(login(addr, "bo", "first password 1").await.0, 401);
    let (status, body) = login(addr, "bo", "second password 2").await;
    assert_eq!((status, body["role"].as_str()), (200, Some("wall_screen")));
    assert_eq!(
        events_status(addr, body["token"].as_str().unwrap()).await,
        403
    );

    // `/metrics` is not on the public port (a JSON 404), only on the metrics address.
    let public = testkit::http::json(addr, "GET", "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(public.status, 404, "{}", public.body);
    assert_eq!(public.json()["error"]["code"], "not_found");
    let metrics_addr: SocketAddr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let metrics = testkit::http::json(metrics_addr, "GET", "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("vigil_gateway_denied_total"),
        "{}",
        metrics.body
    );
}
