//! A heartbeat carries the position the board reflects (issue 14, item 14): events that
//! change nothing on a board send no delta, yet the board is as of them; over a real
//! WebSocket, after such events, the next heartbeat's position is the HTTP board's, for the
//! whole wall view and for a field officer's country cut.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Center;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_gateway::auth::Role;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe(c: &Center, token: &str) -> (Ws, u64) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": token});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    (ws, snap["position"].as_u64().unwrap())
}

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn board_position(c: &Center, token: &str) -> u64 {
    let b = testkit::http::json(c.addr, "GET", "/api/v1/boards/situation", Some(token), None)
        .await
        .unwrap();
    assert_eq!(b.status, 200, "{}", b.body);
    b.json()["position"].as_u64().unwrap()
}

/// Waits until a heartbeat arrives after the HTTP board has reached `head` (the log's head),
/// and returns the position the WebSocket said last (a delta's or the heartbeat's).
async fn heartbeat_after(c: &Center, ws: &mut Ws, token: &str, head: u64) -> (u64, u64) {
    testkit::eventually(Duration::from_secs(10), || async {
        (board_position(c, token).await >= head).then_some(())
    })
    .await
    .unwrap();
    let http = board_position(c, token).await;
    let asked = time::OffsetDateTime::now_utc();
    // Heartbeats sent before the board got there wait in the socket: skip them.
    loop {
        let m = next(ws).await;
        let at = |m: &Value| {
            time::OffsetDateTime::parse(
                m["at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        };
        if m["type"] == "heartbeat" && at(&m) > asked {
            return (m["position"].as_u64().unwrap(), http);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heartbeat_carries_the_position_the_board_reflects() {
    let c = Center::start().await;
    let ke = c
        .auth
        .issue(
            "fo.ke",
            Role::FieldOfficer,
            Some("KE".into()),
            None,
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0;
    // The audit service records refusals as `AccessDenied` events, which no board shows.
    tokio::spawn(audit::run(c.nats().connect().await, c.stop.clone()));
    let (mut wall, _) = subscribe(&c, &c.screen_token).await;
    let (mut officer, _) = subscribe(&c, &ke).await;

    // Events the board ignores: refusals of valid tokens, each recorded as an audit event.
    for _ in 0..3 {
        let a = testkit::http::json(
            c.addr,
            "POST",
            "/api/v1/incidents",
            Some(&c.screen_token),
            Some(&json!({"title": "x"})),
        )
        .await
        .unwrap();
        assert_eq!(a.status, 403, "{}", a.body);
    }
    let head = testkit::eventually(Duration::from_secs(10), || async {
        let (_, p) = c.store.read(u64::MAX, 1).await.ok()?;
        (p >= 3).then_some(p)
    })
    .await
    .unwrap();
    let (said, http) = heartbeat_after(&c, &mut wall, &c.screen_token, head).await;
    assert!(http >= head);
    assert_eq!(
        said, http,
        "the wall screen's heartbeat is the HTTP board's position"
    );

    // An SO incident moves the wall view but nothing in the KE cut: no delta for the officer,
    // yet its board is as of that position.
    let so = json!({"id": "00000000-0000-4000-8000-00000000f001", "country": "SO",
        "category": "armed_conflict", "severity": 4, "title": "Checkpoint",
        "occurred_at": testkit::recent(), "location": {"lat": 2.05, "lon": 45.31}});
    let a = testkit::eventually(Duration::from_secs(15), || async {
        let a = testkit::http::json(
            c.addr,
            "POST",
            "/api/v1/incidents",
            Some(&c.duty_token),
            Some(&so),
        )
        .await
        .unwrap();
        (a.status != 503).then_some(a)
    })
    .await
    .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    let (_, head) = c.store.read(u64::MAX, 1).await.unwrap();
    let (said, http) = heartbeat_after(&c, &mut officer, &ke, head).await;
    assert!(http >= head);
    assert_eq!(
        said, http,
        "the KE officer's heartbeat is its HTTP board's position"
    );
}
