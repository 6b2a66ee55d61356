//! The wall screen in a real browser when its token is revoked: the centre closes the socket
//! with the token close code (4001), and the page says a new token is needed instead of
//! reconnecting with the dead one in a loop; a new token pasted on the page brings it back.
//!
//! Needs `chromium` and `chromedriver` like `wall_screen.rs` (`apt-get install -y chromium
//! chromium-driver`); without them it fails and says so.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::browser;
use fantoccini::{Client, Locator};
use serde_json::Value;
use testkit::free_port;

const READ: &str = r#"
const q = (id) => document.querySelector(`[data-testid="${id}"]`);
return {
  state: q("status")?.dataset.state ?? null,
  token_needed: q("token-needed")?.dataset.code ?? null,
};
"#;

async fn wait_page(client: &Client, what: &str, ok: impl Fn(&Value) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let page = client.execute(READ, vec![]).await.unwrap();
        if ok(&page) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what}: the page shows {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `vigil token create --role wall_screen`: (token, id).
fn create_token(dir: &Path) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["token", "create", "--role", "wall_screen", "--data-dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let id = stderr
        .split_once("token id ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("token id <id> on stderr: {stderr}"))
        .to_owned();
    (String::from_utf8_lossy(&out.stdout).trim().to_owned(), id)
}

/// `vigil_gateway_denied_total{code="token_revoked"}`: subscribes refused with a revoked token.
async fn revoked_subscribes(metrics_port: u16) -> u64 {
    let addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let page = testkit::http::json(addr, "GET", "/metrics", None, None)
        .await
        .unwrap()
        .body;
    page.lines()
        .find(|l| l.starts_with("vigil_gateway_denied_total{code=\"token_revoked\"}"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

struct Up(tokio::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        common::stop_up(&mut self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_wall_screen_asks_for_a_new_token_instead_of_reconnecting() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (http_port, metrics_port) = (free_port(), free_port());
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (child, _) =
        common::spawn_up(&data, &nats_url, http_port, metrics_port, Stdio::null()).await;
    let _up = Up(child);
    let (_driver, client) = browser(
        &dir.path().join("profile"),
        &dir.path().join("chromedriver.log"),
    )
    .await;

    let (token, id) = create_token(&data);
    client
        .goto(&format!(
            "http://127.0.0.1:{http_port}/?kiosk&token={token}"
        ))
        .await
        .unwrap();
    wait_page(&client, "the screen goes live", |p| p["state"] == "live").await;

    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["token", "revoke", &id, "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let took = wait_page(&client, "the screen asks for a new token", |p| {
        p["token_needed"] == "token_revoked"
    })
    .await;
    eprintln!("the wall screen showed 'new token needed' {took:?} after the revoke");
    // It does not keep knocking with the dead token (a reconnect would be refused at
    // subscribe and counted).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        revoked_subscribes(metrics_port).await,
        0,
        "no reconnect loop"
    );
    let page = client.execute(READ, vec![]).await.unwrap();
    assert_eq!(page["token_needed"], "token_revoked", "{page}");

    // A new token pasted on the page brings it back.
    let (fresh, _) = create_token(&data);
    client
        .find(Locator::Css(".token-form input"))
        .await
        .unwrap()
        .send_keys(&fresh)
        .await
        .unwrap();
    client
        .find(Locator::Css(".token-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_page(&client, "live again with the new token", |p| {
        p["state"] == "live" && p["token_needed"].is_null()
    })
    .await;
    let _ = client.close().await;
}
