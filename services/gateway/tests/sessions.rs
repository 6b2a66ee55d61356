//! Users, tokens and sessions take effect at once, against a real gateway, store and
//! nats-server: a user added or changed in `users.json` (as `vigil user add` does from another
//! process) logs in at once and ends the old sessions; a revoked token's open WebSocket is
//! closed with the token close code; re-subscribing in a loop is limited; the `Bearer` scheme
//! is matched in any case.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use vigil_gateway::auth::{Role, User, Users, hash_password};

mod common;

use common::{ANA_PASSWORD, Center};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Writes the user into `<data-dir>/users.json` the way `vigil user add` does.
fn put_user(c: &Center, name: &str, role: Role, password: &str) {
    let mut users = Users::load(c.dir()).unwrap();
    users
        .put(User {
            username: name.into(),
            role,
            scope: None,
            agency: None,
            password_hash: hash_password(password).unwrap(),
        })
        .unwrap();
}

/// `POST /api/v1/auth/login`: (status, body).
async fn login(c: &Center, name: &str, password: &str) -> (u16, Value) {
    let a = testkit::http::json(
        c.addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({"username": name, "password": password})),
    )
    .await
    .unwrap();
    (a.status, a.json())
}

/// The status of `GET /api/v1/boards/situation` with this token (any role may read it).
async fn board_status(c: &Center, token: &str) -> u16 {
    testkit::http::json(c.addr, "GET", "/api/v1/boards/situation", Some(token), None)
        .await
        .unwrap()
        .status
}

/// Waits until the gateway has folded the log, so boards answer 200.
async fn ready(c: &Center) {
    testkit::eventually(Duration::from_secs(10), || async {
        (board_status(c, &c.duty_token).await == 200).then_some(())
    })
    .await
    .expect("the gateway caught up");
}

/// A WebSocket subscribed with `token`, after its first snapshot.
async fn subscribed(c: &Center, token: &str) -> Ws {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": token});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_ne!(v["type"], "error", "{v}");
            if v["type"] == "snapshot" {
                return ws;
            }
        }
    }
}

/// Reads until the server closes: the `error` codes it sent, its close code, and how long
/// it took.
async fn until_closed(ws: &mut Ws, within: Duration) -> (Vec<String>, Option<u16>, Duration) {
    let start = Instant::now();
    let mut errors = Vec::new();
    let closed = tokio::time::timeout(within, async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "error" {
                        errors.push(v["code"].as_str().unwrap_or("").to_owned());
                    }
                }
                Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    })
    .await;
    let code = closed.unwrap_or_else(|_| panic!("not closed within {within:?}; errors {errors:?}"));
    (errors, code, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_ends_old_sessions_and_the_old_password() {
    let c = Center::start().await;
    ready(&c).await;
    // Added after the gateway started: logs in at once.
    put_user(&c, "bo", Role::DutyOfficer, "first password 1");
    let (status, body) = login(&c, "bo", "first password 1").await;
    assert_eq!(status, 200, "a user added while running logs in: {body}");
    let old = body["token"].as_str().unwrap().to_owned();
    assert_eq!(board_status(&c, &old).await, 200);

    // A new password: the old session and the old password are refused, the new one works.
    put_user(&c, "bo", Role::DutyOfficer, "second password 2");
    assert_eq!(board_status(&c, &old).await, 401, "the old session ended");
    assert_eq!(login(&c, "bo", "first password 1").await.0, 401);
    let (status, body) = login(&c, "bo", "second password 2").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(board_status(&c, body["token"].as_str().unwrap()).await, 200);
    // Another user's session is untouched.
    assert_eq!(board_status(&c, &c.duty_token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_demotion_ends_old_sessions_at_once() {
    let c = Center::start().await;
    ready(&c).await;
    // `ana` (a duty officer) exists from the start: only the demotion is new here.
    let (status, body) = login(&c, "ana", ANA_PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let duty = body["token"].as_str().unwrap().to_owned();
    let events = |t: String| {
        let addr = c.addr;
        async move {
            testkit::http::json(addr, "GET", "/api/v1/events", Some(&t), None)
                .await
                .unwrap()
                .status
        }
    };
    assert_eq!(events(duty.clone()).await, 200);
    // Its open WebSocket too.
    let mut ws = subscribed(&c, &duty).await;

    // Demoted (same password): the duty session is refused over HTTP and its socket closed.
    put_user(&c, "ana", Role::WallScreen, ANA_PASSWORD);
    assert_eq!(
        events(duty.clone()).await,
        401,
        "the duty officer's session ended"
    );
    let (errors, code, took) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(errors, ["token_revoked"]);
    assert_eq!(code, Some(vigil_gateway::ws::TOKEN_CLOSE));
    eprintln!("demoted user's WebSocket closed after {took:?}");
    // Logging in again gives the new role only.
    let (status, body) = login(&c, "ana", ANA_PASSWORD).await;
    assert_eq!((status, body["role"].as_str()), (200, Some("wall_screen")));
    assert_eq!(
        events(body["token"].as_str().unwrap().to_owned()).await,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_closes_its_websocket_with_4001() {
    let c = Center::start().await;
    ready(&c).await;
    let (token, claims) = c
        .auth
        .issue(
            "screen-r",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(600),
            "api",
        )
        .unwrap();
    let mut ws = subscribed(&c, &token).await;
    // What `vigil token revoke` does.
    vigil_gateway::auth::revoke(c.dir(), &claims.jti).unwrap();
    let (errors, code, took) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(errors, ["token_revoked"]);
    assert_eq!(code, Some(vigil_gateway::ws::TOKEN_CLOSE));
    assert!(took <= Duration::from_secs(5), "closed after {took:?}");
    eprintln!("revoked token's WebSocket closed after {took:?}");

    // A token refused at subscribe gets the same close code (the screen asks for a new one).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": token});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let (errors, code, _) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(errors, ["token_revoked"]);
    assert_eq!(code, Some(vigil_gateway::ws::TOKEN_CLOSE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_closes_its_websocket_with_4001() {
    let c = Center::start().await;
    ready(&c).await;
    let (token, _) = c
        .auth
        .issue(
            "screen-e",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(2),
            "api",
        )
        .unwrap();
    let mut ws = subscribed(&c, &token).await;
    let (errors, code, _) = until_closed(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(errors, ["token_expired"]);
    assert_eq!(code, Some(vigil_gateway::ws::TOKEN_CLOSE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_in_a_loop_is_rate_limited_then_closed() {
    let c = Center::start().await;
    ready(&c).await;
    let mut ws = subscribed(&c, &c.duty_token).await;
    // Switching views: without a limit, every subscribe is answered with a full snapshot.
    // Each answer is read before the next subscribe, so the server's close is seen (closing
    // with unread input would reset the connection).
    let mut snapshots = 0;
    let mut errors: Vec<String> = Vec::new();
    let mut close = None;
    let mut sent = 0;
    'sending: for i in 0..300 {
        let view = if i % 2 == 0 { "wall_screen" } else { "duty" };
        let sub = json!({"type": "subscribe", "board": "situation", "view": view,
            "token": c.duty_token});
        ws.send(Message::Text(sub.to_string().into()))
            .await
            .unwrap();
        sent += 1;
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("an answer to each subscribe")
                .expect("open")
                .unwrap_or_else(|e| panic!("after {snapshots} snapshots, {errors:?}: {e}"));
            match m {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    match v["type"].as_str() {
                        Some("snapshot") => {
                            snapshots += 1;
                            break;
                        }
                        Some("error") => {
                            errors.push(v["code"].as_str().unwrap().to_owned());
                            break;
                        }
                        _ => {}
                    }
                }
                Message::Close(f) => {
                    close = f.map(|f| f.code);
                    break 'sending;
                }
                _ => {}
            }
        }
    }
    if close.is_none() {
        // The last refusal is followed by the close.
        if let Ok(Some(Ok(Message::Close(f)))) =
            tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        {
            close = f.map(|f| f.code);
        }
    }
    eprintln!(
        "{sent} of 300 re-subscribes sent: {snapshots} snapshots, {} refusals, close {close:?}",
        errors.len()
    );
    // The first subscribe took one of the burst.
    assert!(
        snapshots <= vigil_gateway::ws::SUBSCRIBE_BURST as usize,
        "{snapshots} snapshots for 300 re-subscribes"
    );
    assert_eq!(
        errors,
        vec!["rate_limited"; vigil_gateway::ws::SUBSCRIBE_REFUSALS as usize]
    );
    assert_eq!(close, Some(CloseCode::Policy), "closed as abusive");
    assert!(sent < 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive() {
    let c = Center::start().await;
    ready(&c).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let header = format!("{scheme} {}", c.duty_token);
        let a = testkit::http::request(
            c.addr,
            "GET",
            "/api/v1/events",
            &[("Authorization", header.as_str())],
            None,
        )
        .await
        .unwrap();
        assert_eq!(a.status, 200, "{scheme}: {}", a.body);
    }
    let basic = format!("Basic {}", c.duty_token);
    let a = testkit::http::request(
        c.addr,
        "GET",
        "/api/v1/events",
        &[("Authorization", basic.as_str())],
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 401);
}
