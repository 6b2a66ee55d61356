//! Target 4, **ws**: `/ws` with its own, a foreign or no `Origin`, then random text,
//! binary, ping, oversized and random subscribe messages (valid, near-miss and garbage
//! tokens): a foreign origin gets a JSON 403, every server frame is protocol JSON, an
//! `error` is followed by a close frame, only an oversized frame may cut the connection
//! without one, nothing hangs, and a valid subscribe still gets its snapshot after
//! ([`subscribe_works`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{self, Message};

use super::catalog::Catalog;
use super::http::pct;
use super::values::{edge_numbers, json_value, key};
use super::{Tally, WS_IN_FLIGHT, clip, clip_debug, settle_labelled};
use crate::centre::Centre;

#[derive(Debug, Clone)]
enum Tok {
    Duty,
    Field,
    /// The duty token with one character changed.
    Tampered(usize),
    Garbage(String),
}

#[derive(Debug, Clone)]
enum Origin {
    None,
    Own,
    Localhost,
    Foreign(String),
}

#[derive(Debug, Clone)]
struct Subscribe {
    ty: Option<Value>,
    board: Option<Value>,
    view: Option<Value>,
    since: Option<Value>,
    token: Option<Tok>,
    extra: Option<(String, Value)>,
}

#[derive(Debug, Clone)]
enum WsMsg {
    Subscribe(Subscribe),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    /// Text over the 4 KiB client limit.
    Huge(usize),
}

#[derive(Debug, Clone)]
struct WsCase {
    origin: Origin,
    url_token: Option<Tok>,
    messages: Vec<WsMsg>,
}

fn tok() -> BoxedStrategy<Tok> {
    prop_oneof![
        4 => Just(Tok::Duty),
        2 => Just(Tok::Field),
        1 => any::<usize>().prop_map(Tok::Tampered),
        1 => "\\PC{0,60}".prop_map(Tok::Garbage),
    ]
    .boxed()
}

fn ws_case(c: &Arc<Catalog>) -> BoxedStrategy<WsCase> {
    let value = json_value(c);
    let words = proptest::sample::select(c.words.clone()).prop_map(Value::from);
    let subscribe = (
        proptest::option::weighted(
            0.95,
            prop_oneof![8 => Just(json!("subscribe")), 1 => words.clone(), 1 => value.clone()],
        ),
        proptest::option::weighted(
            0.95,
            prop_oneof![8 => Just(json!("situation")), 1 => words.clone(), 1 => value.clone()],
        ),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                3 => Just(json!("duty")),
                3 => Just(json!("wall_screen")),
                1 => words.clone(),
                1 => value.clone(),
            ],
        ),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                2 => (0u64..1_000).prop_map(Value::from),
                2 => proptest::sample::select(edge_numbers()),
                1 => value.clone(),
            ],
        ),
        proptest::option::weighted(0.8, tok()),
        proptest::option::weighted(0.1, (key(c), value.clone())),
    )
        .prop_map(|(ty, board, view, since, token, extra)| Subscribe {
            ty,
            board,
            view,
            since,
            token,
            extra,
        });
    let message = prop_oneof![
        8 => subscribe.prop_map(WsMsg::Subscribe),
        2 => prop_oneof!["\\PC{0,200}", value.clone().prop_map(|v| v.to_string())]
            .prop_map(WsMsg::Text),
        1 => vec(any::<u8>(), 0..300).prop_map(WsMsg::Binary),
        1 => vec(any::<u8>(), 0..100).prop_map(WsMsg::Ping),
        1 => (4 * 1024 + 1..64 * 1024usize).prop_map(WsMsg::Huge),
    ];
    let origin = prop_oneof![
        6 => Just(Origin::None),
        2 => Just(Origin::Own),
        1 => Just(Origin::Localhost),
        1 => prop_oneof![
            Just("http://evil.example".to_owned()),
            Just("null".to_owned()),
            "[a-z]{1,8}://[a-z.]{1,20}",
        ]
        .prop_map(Origin::Foreign),
    ];
    (
        origin,
        proptest::option::weighted(0.2, tok()),
        vec(message, 1..4),
    )
        .prop_map(|(origin, url_token, mut messages)| {
            if messages.iter().all(|m| matches!(m, WsMsg::Ping(_))) {
                messages.push(WsMsg::Text(String::new()));
            }
            WsCase {
                origin,
                url_token,
                messages,
            }
        })
        .boxed()
}

#[derive(Clone)]
struct Tokens {
    duty: Arc<str>,
    field: Arc<str>,
}

impl Tokens {
    fn text(&self, t: &Tok) -> String {
        match t {
            Tok::Duty => self.duty.to_string(),
            Tok::Field => self.field.to_string(),
            Tok::Tampered(i) => {
                let mut chars: Vec<char> = self.duty.chars().collect();
                if !chars.is_empty() {
                    let n = chars.len();
                    let c = &mut chars[i % n];
                    *c = if *c == 'A' { 'B' } else { 'A' };
                }
                chars.into_iter().collect()
            }
            Tok::Garbage(s) => s.clone(),
        }
    }
}

fn subscribe_json(s: &Subscribe, tokens: &Tokens) -> String {
    let mut m = Map::new();
    for (k, v) in [
        ("type", &s.ty),
        ("board", &s.board),
        ("view", &s.view),
        ("since", &s.since),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v.clone());
        }
    }
    if let Some(t) = &s.token {
        m.insert("token".into(), Value::from(tokens.text(t)));
    }
    if let Some((k, v)) = &s.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m).to_string()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a WebSocket case ended.
enum End {
    /// The server sent a close frame.
    Closed,
    /// The connection ended without one.
    Dropped(String),
    /// Still open and talking (subscribed).
    Alive,
    /// Neither a frame nor a close in time.
    Hang,
}

async fn ws_one(http: SocketAddr, tokens: Tokens, case: WsCase) -> Result<&'static str, String> {
    use tungstenite::client::IntoClientRequest;
    let query = case
        .url_token
        .as_ref()
        .map(|t| format!("?token={}", pct(tokens.text(t).as_bytes())))
        .unwrap_or_default();
    let mut request = format!("ws://{http}/ws{query}")
        .into_client_request()
        .map_err(|e| format!("building the request: {e}"))?;
    let origin = match &case.origin {
        Origin::None => None,
        Origin::Own => Some(format!("http://{http}")),
        Origin::Localhost => Some(format!("http://localhost:{}", http.port())),
        Origin::Foreign(o) => Some(o.clone()),
    };
    if let Some(o) = &origin
        && let Ok(v) = tungstenite::http::HeaderValue::from_str(o)
    {
        request.headers_mut().insert("Origin", v);
    }
    let foreign = matches!(case.origin, Origin::Foreign(_));
    let what = || clip_debug(&case);
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| format!("no handshake within 10 s: {}", what()))?;
    let mut ws: Ws = match connected {
        Ok((ws, _)) if foreign => {
            drop(ws);
            return Err(format!("a foreign Origin was let in: {}", what()));
        }
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(answer)) if foreign => {
            let body: Value = answer
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            return if answer.status().as_u16() == 403 && body["error"]["code"].is_string() {
                Ok("foreign origin refused")
            } else {
                Err(format!(
                    "a foreign Origin got {} {body}: {}",
                    answer.status(),
                    what()
                ))
            };
        }
        Err(e) => return Err(format!("the upgrade failed ({e}): {}", what())),
    };
    let mut oversized = false;
    for m in &case.messages {
        let frame = match m {
            WsMsg::Subscribe(s) => Message::Text(subscribe_json(s, &tokens).into()),
            WsMsg::Text(t) => Message::Text(t.clone().into()),
            WsMsg::Binary(b) => Message::Binary(b.clone().into()),
            WsMsg::Ping(b) => Message::Ping(b.clone().into()),
            WsMsg::Huge(n) => {
                oversized = true;
                Message::Text("x".repeat(*n).into())
            }
        };
        if frame.len() > gateway::ws::MAX_CLIENT_MESSAGE {
            oversized = true;
        }
        if ws.send(frame).await.is_err() {
            break;
        }
    }
    let sent = Instant::now();
    let mut error: Option<String> = None;
    let mut frames = 0u32;
    let end = loop {
        // Subscribed: a frame within 2.5 s (heartbeats come every 2 s) is enough.
        let wait = if frames > 0 {
            Duration::from_millis(2_500)
        } else {
            Duration::from_secs(8)
        };
        let Some(left) = wait.checked_sub(sent.elapsed()) else {
            break if frames > 0 { End::Alive } else { End::Hang };
        };
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break if frames > 0 { End::Alive } else { End::Hang },
            Ok(None) => break End::Dropped("end of stream".into()),
            Ok(Some(Err(e))) => break End::Dropped(e.to_string()),
            Ok(Some(Ok(Message::Close(_)))) => break End::Closed,
            Ok(Some(Ok(Message::Text(t)))) => {
                frames += 1;
                let v: Value = serde_json::from_str(&t).map_err(|e| {
                    format!(
                        "the server sent text that is not JSON ({e}): {:?} after {}",
                        clip(&t, 200),
                        what()
                    )
                })?;
                match v["type"].as_str() {
                    Some("snapshot" | "delta" | "heartbeat") => {}
                    Some("error") => {
                        if !(v["code"].is_string() && v["message"].is_string()) {
                            return Err(format!("an error frame without code/message: {v}"));
                        }
                        error = v["code"].as_str().map(str::to_owned);
                    }
                    _ => {
                        return Err(format!(
                            "a frame of no known type: {}",
                            clip(&v.to_string(), 200)
                        ));
                    }
                }
            }
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(format!("the server sent a binary frame after {}", what()));
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    match end {
        End::Closed => Ok(if error.is_some() {
            "error then close"
        } else {
            "closed"
        }),
        End::Dropped(_) if oversized => Ok("dropped after an oversized frame"),
        End::Dropped(why) => Err(format!(
            "the connection was dropped without a close frame ({why}; error frame: {}): {}",
            error.as_deref().unwrap_or("none"),
            what()
        )),
        End::Alive if error.is_some() => Err(format!(
            "an error frame ({}) but the connection stayed open: {}",
            error.as_deref().unwrap_or(""),
            what()
        )),
        End::Alive => {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            Ok("subscribed")
        }
        End::Hang => Err(format!(
            "no frame and no close within 8 s of the last message: {}",
            what()
        )),
    }
}

/// A valid subscribe gets its snapshot.
pub(super) async fn subscribe_works(http: SocketAddr, token: &str) -> Result<(), String> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{http}/ws")),
    )
    .await
    .map_err(|_| "no handshake within 10 s".to_owned())?
    .map_err(|e| format!("the upgrade failed: {e}"))?;
    let hello = json!({"type": "subscribe", "board": "situation", "token": token}).to_string();
    ws.send(Message::Text(hello.into()))
        .await
        .map_err(|e| format!("sending the subscribe: {e}"))?;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no snapshot within 10 s".to_owned())?;
    let _ = ws.close(None).await;
    match first {
        Some(Ok(Message::Text(t)))
            if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["type"] == "snapshot") =>
        {
            Ok(())
        }
        other => Err(format!("expected a snapshot, got {other:?}")),
    }
}

pub(super) async fn fuzz_ws(
    centre: &Centre,
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
) -> Tally {
    let mut tally = Tally::new("ws");
    let strategy = ws_case(c);
    let tokens = Tokens {
        duty: centre.duty_token.as_str().into(),
        field: centre.field_token.as_str().into(),
    };
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<&'static str, String>> = JoinSet::new();
    let mut checked = Instant::now();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        while in_flight.len() >= WS_IN_FLIGHT {
            settle_labelled(&mut in_flight, &mut tally).await;
        }
        // Every 20 s: a valid subscribe still works while the fuzzing goes on.
        if checked.elapsed() > Duration::from_secs(20) {
            checked = Instant::now();
            if let Err(e) = subscribe_works(centre.http, &centre.duty_token).await {
                tally.fail(format!("a valid subscribe failed during the fuzzing: {e}"));
            }
        }
        tally.cases += 1;
        in_flight.spawn(ws_one(centre.http, tokens.clone(), tree.current()));
    }
    while !in_flight.is_empty() {
        settle_labelled(&mut in_flight, &mut tally).await;
    }
    tally
}
