//! `vigil up` records the refusals its gateway was counting when it stops (issue 13, item 6):
//! the gateway counts refusals of callers without a valid token for a minute, so at a clean
//! stop the bus, the store and the audit service must outlive it.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;
use std::time::Duration;

mod common;

use events::audit::{ACCESS_DENIED, AccessDenied};
use runtime::StoreClient;
use testkit::free_port;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refusals_counted_when_vigil_up_stops_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("data");
    let http_port = free_port();
    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (mut child, banner) =
        common::spawn_up(&data_dir, &nats_url, http_port, free_port(), Stdio::null()).await;
    assert!(banner.contains("Vigil is up."), "{banner}");
    let addr = format!("127.0.0.1:{http_port}").parse().unwrap();
    for _ in 0..120 {
        let a = testkit::http::request(addr, "GET", "/api/v1/events", &[], None)
            .await
            .unwrap();
        assert_eq!(a.status, 401, "{}", a.body);
    }
    // Well within the minute: only the stop can record them.
    common::stop_up(&mut child);
    let status = child.wait().await.unwrap();
    assert!(status.success(), "vigil up stopped cleanly: {status}");

    let nats_url = format!("nats://127.0.0.1:{}", free_port());
    let (mut child, _) = common::spawn_up(
        &data_dir,
        &nats_url,
        free_port(),
        free_port(),
        Stdio::null(),
    )
    .await;
    let credentials = runtime::nats_auth::load(&data_dir)
        .unwrap()
        .and_then(|u| u.credentials(runtime::nats_auth::CLI));
    let client = runtime::nats::connect(
        &nats_url,
        "refusal-audit-test",
        credentials,
        runtime::nats::Mode::Tool,
    )
    .await
    .unwrap();
    let store = StoreClient::new(client, Duration::from_secs(10));
    common::wait_ready(&store).await;
    let records: Vec<AccessDenied> = common::read_all(&store)
        .await
        .into_iter()
        .filter(|e| e.event_type == ACCESS_DENIED)
        .map(|e| serde_json::from_value(e.data).unwrap())
        .collect();
    common::stop_up(&mut child);
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].count, 120);
    assert_eq!(records[0].code, "unauthorized");
    assert_eq!(records[0].path, "/api/v1/events");
}
