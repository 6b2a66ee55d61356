//! Slow, idle and too many connections against a real gateway (issue 13, item 2): raw
//! `TcpStream`s that send half a request line, kept-alive connections left idle, more
//! connections and WebSockets than one address or one token may hold. Other client
//! addresses are other loopback addresses (127.0.0.2, ...), bound as the source.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::Center;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;
use vigil_gateway::ConnLimits;
use vigil_gateway::auth::Role;

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A TCP connection to `to` from the loopback address `from` (127.0.0.x).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((IpAddr::from(from), 0)))
        .unwrap();
    socket.connect(to).await.unwrap()
}

/// A connection that has sent half a request line and nothing more.
async fn half_open(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let mut s = connect_from(from, to).await;
    s.write_all(b"GET /readyz HT").await.unwrap();
    s
}

/// Whether the server has closed `s` (EOF or reset) within `wait`; `false` if it is still
/// open then. Whatever the server sent before closing is returned too.
async fn closed_within(s: &mut TcpStream, wait: Duration) -> (bool, String) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// One whole request (HTTP/1.0, so the server closes after answering) from `from`.
async fn get_from(from: [u8; 4], to: SocketAddr, path: &str) -> (u16, Value) {
    let mut s = connect_from(from, to).await;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (_, raw) = closed_within(&mut s, Duration::from_secs(10)).await;
    parse_answer(&raw)
}

fn parse_answer(raw: &str) -> (u16, Value) {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn field_token(c: &Center) -> String {
    c.auth
        .issue(
            "fso.ali",
            Role::FieldOfficer,
            Some("SO".into()),
            None,
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0
}

async fn report(c: &Center, token: &str) -> testkit::http::Answer {
    let body = json!({"id": Uuid::new_v4(), "country": "SO", "category": "crime", "severity": 2,
        "title": "Car-jacking at the checkpoint", "occurred_at": "2026-11-27T03:00:00Z"});
    tokio::time::timeout(
        Duration::from_secs(10),
        testkit::http::json(
            c.addr,
            "POST",
            "/api/v1/incidents",
            Some(token),
            Some(&body),
        ),
    )
    .await
    .expect("the report is answered within 10 s")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_are_closed_after_the_header_timeout() {
    let header_timeout = Duration::from_secs(2);
    let c = Center::start_with_limits(ConnLimits {
        header_timeout,
        // Far longer than the test: what closes them must be the header timeout.
        keepalive_timeout: Duration::from_secs(120),
        ..ConnLimits::default()
    })
    .await;
    let token = field_token(&c);
    // 200 sockets from each of three addresses, each with half a request line.
    let opened = Instant::now();
    let mut held = Vec::new();
    for from in [[127, 0, 0, 2], [127, 0, 0, 3], [127, 0, 0, 4]] {
        for _ in 0..200 {
            held.push(half_open(from, c.addr).await);
        }
    }
    // While they are held, a field officer's report goes through.
    let a = report(&c, &token).await;
    assert_eq!(a.status, 201, "{} {}", a.head, a.body);
    let (status, _) = get_from([127, 0, 0, 1], c.addr, "/readyz").await;
    assert_eq!(status, 200);
    // Every one of them is closed once the header timeout has passed.
    let mut still_open = 0;
    for s in &mut held {
        let left = (opened + header_timeout + Duration::from_secs(3))
            .saturating_duration_since(Instant::now());
        let (closed, _) = closed_within(s, left.max(Duration::from_millis(10))).await;
        if !closed {
            still_open += 1;
        }
    }
    assert_eq!(
        still_open,
        0,
        "{still_open} of {} half-open connections still open {:?} after opening (header timeout {header_timeout:?})",
        held.len(),
        opened.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let c = Center::start_with_limits(ConnLimits {
        header_timeout: Duration::from_secs(1),
        keepalive_timeout: Duration::from_secs(3),
        ..ConnLimits::default()
    })
    .await;
    let mut s = connect_from([127, 0, 0, 1], c.addr).await;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", c.addr);
    // Two requests on the same connection, the second after more than the header timeout:
    // kept-alive connections wait longer than new ones.
    for round in 0..2 {
        s.write_all(request.as_bytes()).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        let (status, body) = parse_answer(&String::from_utf8_lossy(&buf[..n]));
        assert_eq!(
            (status, &body["status"]),
            (200, &json!("alive")),
            "round {round}"
        );
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
    }
    // Then idle: closed after the keep-alive timeout, not before the header timeout's end.
    let idle = Instant::now();
    let (closed, _) = closed_within(&mut s, Duration::from_secs(6)).await;
    assert!(closed, "an idle kept-alive connection is closed");
    let after = idle.elapsed();
    assert!(
        after >= Duration::from_millis(2500),
        "closed after {after:?}, before the keep-alive timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_address_cap_are_refused_at_once() {
    let c = Center::start_with_limits(ConnLimits {
        max_connections: 8,
        max_connections_per_address: 5,
        header_timeout: Duration::from_secs(60),
        ..ConnLimits::default()
    })
    .await;
    let one = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(half_open(one, c.addr).await);
    }
    // The sixth from the same address: 503 JSON, Connection: close, closed at once.
    let mut sixth = connect_from(one, c.addr).await;
    sixth
        .write_all(format!("GET /readyz HTTP/1.1\r\nHost: {}\r\n\r\n", c.addr).as_bytes())
        .await
        .unwrap();
    let (closed, raw) = closed_within(&mut sixth, Duration::from_secs(2)).await;
    assert!(closed, "the connection over the cap is closed at once");
    let (status, body) = parse_answer(&raw);
    assert_eq!(status, 503, "{raw}");
    assert_eq!(body["error"]["code"], "too_many_connections", "{raw}");
    assert!(
        raw.to_ascii_lowercase().contains("connection: close"),
        "{raw}"
    );
    // Another address is served meanwhile.
    let (status, _) = get_from([127, 0, 0, 3], c.addr, "/healthz").await;
    assert_eq!(status, 200);
    // One of the five closes: its place is free again.
    drop(held.pop());
    let served = testkit::eventually(Duration::from_secs(5), || async {
        (get_from(one, c.addr, "/healthz").await.0 == 200).then_some(())
    })
    .await;
    assert!(
        served.is_some(),
        "a freed place is given to the next connection"
    );
    // The total cap: 4 held from `one`, 4 more from another address fill the 8.
    for _ in 0..4 {
        held.push(half_open([127, 0, 0, 4], c.addr).await);
    }
    // The gateway counts a connection once it has accepted it, which under load may come a
    // little after our connect returned: ask until all eight are counted (at most 5 s).
    let addr = c.addr;
    let full = testkit::eventually(Duration::from_secs(5), || async move {
        let answer = get_from([127, 0, 0, 5], addr, "/healthz").await;
        (answer.0 == 503).then_some(answer)
    })
    .await;
    let Some(last) = full else {
        panic!("the ninth connection was still served after 5 s");
    };
    assert_eq!(last.1["error"]["code"], "too_many_connections");
}

/// A board WebSocket from `from` with `token`, subscribed; the first message it hears.
async fn subscribe_from(from: [u8; 4], c: &Center, token: &str) -> (Ws, Value) {
    let stream = connect_from(from, c.addr).await;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{}/ws", c.addr), stream)
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": token});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let first = next_json(&mut ws).await;
    (ws, first)
}

/// The next JSON message that is not a heartbeat (`Null` once the connection is closed).
async fn next_json(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a message other than a heartbeat within 10 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] != "heartbeat" {
                    return v;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Value::Null,
            Some(Ok(_)) => {}
        }
    }
}

/// After an `error`, the server closes the connection.
async fn assert_closed(ws: &mut Ws) {
    assert_eq!(next_json(ws).await, Value::Null, "closed after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_capped_per_address_and_per_token() {
    let c = Center::start_with_limits(ConnLimits {
        max_ws_per_address: 3,
        max_ws_per_token: 2,
        ..ConnLimits::default()
    })
    .await;
    let hour = Duration::from_secs(3600);
    let other_screen = c
        .auth
        .issue("screen-2", Role::WallScreen, None, None, hour, "api")
        .unwrap()
        .0;
    let here = [127, 0, 0, 2];
    // Two with the same token are served; the third is told why and closed.
    let (mut a, first) = subscribe_from(here, &c, &c.screen_token).await;
    assert_eq!(first["type"], "snapshot", "{first}");
    let (_b, first) = subscribe_from(here, &c, &c.screen_token).await;
    assert_eq!(first["type"], "snapshot", "{first}");
    let (mut third, first) = subscribe_from([127, 0, 0, 3], &c, &c.screen_token).await;
    assert_eq!(
        (&first["type"], &first["code"]),
        (&json!("error"), &json!("too_many_token_connections")),
        "{first}"
    );
    assert_closed(&mut third).await;
    // Subscribing again with the same token on a held connection takes no second place.
    let again = json!({"type": "subscribe", "board": "situation", "token": c.screen_token});
    a.send(Message::Text(again.to_string().into()))
        .await
        .unwrap();
    // (Same view: it continues from its position, so only heartbeats follow, no error.)
    let heard = tokio::time::timeout(Duration::from_secs(3), next_json(&mut a)).await;
    assert!(
        heard.is_err(),
        "no error and no close after subscribing again: {heard:?}"
    );
    // Another token from the same address: the address's third place.
    let (_d, first) = subscribe_from(here, &c, &c.duty_token).await;
    assert_eq!(first["type"], "snapshot", "{first}");
    // A fourth from this address, whatever its token, is refused before it subscribes.
    let (mut e, first) = subscribe_from(here, &c, &other_screen).await;
    assert_eq!(
        (&first["type"], &first["code"]),
        (&json!("error"), &json!("too_many_connections")),
        "{first}"
    );
    assert_closed(&mut e).await;
    // Another address is served with that token.
    let (_f, first) = subscribe_from([127, 0, 0, 4], &c, &other_screen).await;
    assert_eq!(first["type"], "snapshot", "{first}");
    // A screen closes: its token's place and its address's place are free again.
    a.close(None).await.unwrap();
    drop(a);
    let back = testkit::eventually(Duration::from_secs(5), || async {
        let (_ws, first) = subscribe_from(here, &c, &c.screen_token).await;
        (first["type"] == "snapshot").then_some(())
    })
    .await;
    assert!(back.is_some(), "a closed WebSocket gives its places back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_count_against_the_connection_cap() {
    let c = Center::start_with_limits(ConnLimits {
        max_connections_per_address: 3,
        ..ConnLimits::default()
    })
    .await;
    let here = [127, 0, 0, 2];
    let mut held = Vec::new();
    for _ in 0..3 {
        let (ws, first) = subscribe_from(here, &c, &c.screen_token).await;
        assert_eq!(first["type"], "snapshot", "{first}");
        held.push(ws);
    }
    // The upgraded sockets still hold their places: a plain request from there is refused.
    let (status, body) = get_from(here, c.addr, "/healthz").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (503, &json!("too_many_connections"))
    );
}
