//! Retention on the wall screen, in a real browser against the real binary: `vigil up` with a
//! board retention of a few seconds (`VIGIL_BOARD_RETENTION_SECS`); a broadcast that ended
//! as soon as it was issued (for the centre only, nothing to acknowledge) shows on the wall
//! screen, then leaves it by itself while nothing else happens — the gateway's tick delta,
//! at the position the page already has, applied by the page — and the page's position does
//! not move.
//!
//! Needs `chromium` and `chromedriver` (as `wall_screen.rs`); without them it fails and says so.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::browser;
use fantoccini::Client;
use serde_json::{Value, json};

const READ_PAGE: &str = r#"
const q = (id) => document.querySelector(`[data-testid="${id}"]`);
return {
  state: q("status")?.dataset.state ?? null,
  position: q("position")?.dataset.position ?? null,
  broadcasts: document.querySelectorAll('[data-testid="broadcast"]').length,
};
"#;

/// Polls the page until `ok` holds; panics with `what` and what the page showed.
async fn wait_for(
    client: &Client,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let page = client.execute(READ_PAGE, vec![]).await.unwrap();
        if ok(&page) {
            return page;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}; the page shows {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_broadcast_leaves_the_wall_screen_by_itself_on_a_quiet_centre() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let (_driver, client) = browser(
        &dir.path().join("chromium-profile"),
        &dir.path().join("chromedriver.log"),
    )
    .await;
    let centre = common::up()
        .data_dir(&data_dir)
        .env("VIGIL_BOARD_RETENTION_SECS", "4")
        .start()
        .await;
    let url = centre
        .banner()
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("wall screen    : "))
        .and_then(|rest| rest.split_whitespace().next())
        .expect("vigil up printed the wall screen's address")
        .to_owned();
    client.goto(&url).await.unwrap();
    wait_for(&client, Duration::from_secs(30), "live", |p| {
        p["state"] == "live"
    })
    .await;

    let issued = json!({"title": "Shift change", "body": "Handover at 18:00", "severity": "low",
        "audience": "duty_officers", "requires_ack": false, "exercise": false});
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["append", "--nats-url", centre.nats_url()])
        .args(["--stream", "broadcast-00000000-0000-4000-8000-00000000d001"])
        .args([
            "--type",
            "BroadcastIssued",
            "--v",
            "1",
            "--actor",
            "duty.ana",
        ])
        .args(["--data", &issued.to_string()])
        .arg("--data-dir")
        .arg(centre.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let shown = wait_for(
        &client,
        Duration::from_secs(10),
        "the broadcast shown",
        |p| p["broadcasts"] == 1,
    )
    .await;
    let left = wait_for(
        &client,
        Duration::from_secs(60),
        "the broadcast gone",
        |p| p["broadcasts"] == 0,
    )
    .await;
    assert_eq!(left["state"], "live", "{left}");
    assert_eq!(
        left["position"], shown["position"],
        "no event came: it left by the tick, at the position the page had"
    );
    let _ = client.close().await;
}
