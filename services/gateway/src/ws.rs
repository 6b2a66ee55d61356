//! The board WebSocket (`/ws`); the protocol is written down in `docs/PROTOCOL.md`
//! ("The WebSocket"), the board JSON and its deltas in `dashboards/boards/MODEL.md`.
//!
//! client → `{"type":"subscribe","board":"situation","view":"wall_screen","since":120,"token":"…"}`
//! server → one `snapshot` (or the deltas missed since `since`), then `delta`s in position
//! order, a `heartbeat` every [`HEARTBEAT`], and `error` before closing on bad input.
//!
//! Limits: client messages are small (a subscribe), so a frame over [`MAX_CLIENT_MESSAGE`]
//! (or one that cannot be read) gets an `error` and closes the connection; a client must
//! subscribe within [`SUBSCRIBE_TIMEOUT`]; a send that does not complete within
//! `ConnLimits::ws_send_timeout` drops the client (its socket is stuck). A client that falls more than the
//! fan-out ring behind gets a fresh snapshot (see `hub`).
//!
//! # Slow clients
//! A client whose socket does not take a frame at once (its buffer is full: the client reads
//! slower than deltas come) is *behind*: from then on, every [`MERGE_EVERY`] (75 ms), what
//! waits for it is sent as **one** merged delta (`hub::merged_delta`: the frames' ops, cut to
//! its scope first, merged by `boards::merge_ops` so that they do exactly what the frames do,
//! with the last frame's `position` and `as_of`), and heartbeats carry the position it was
//! last sent. It is no longer behind once its socket takes such a delta at once. So it gets
//! at most one merged delta per 75 ms instead of a snapshot storm, and never a frame older
//! than one it has (`vigil_gateway_frames_coalesced_total` counts the frames sent merged;
//! `protocol::a_client_that_falls_behind_gets_merged_deltas`). A client that keeps up gets
//! every delta as it is.
//!
//! # Promises
//! - Board protocol 2 (`hub::PROTOCOL`): snapshots say so, deltas are per entity; a subscribe
//!   that announces another `protocol` is refused with `unsupported_protocol` (close 1008),
//!   one that announces none is served protocol 2 (`docs/PROTOCOL.md`, "Protocol versions").
//! - The token is checked again at every heartbeat: a token revoked, expired, or whose
//!   user's record changed closes its open connections within [`HEARTBEAT`], with an `error`
//!   (`token_revoked` / `token_expired`) and the close code [`TOKEN_CLOSE`], which tells a
//!   screen to ask for a new token rather than reconnect
//!   (`sessions::a_revoked_token_closes_its_websocket_with_4001`,
//!   `sessions::an_expired_token_closes_its_websocket_with_4001`,
//!   `sessions::a_demotion_ends_old_sessions_at_once`).
//! - Subscribes are rate-limited per connection ([`SUBSCRIBE_BURST`], then
//!   [`SUBSCRIBES_PER_MINUTE`]): over it a subscribe gets `rate_limited` and no snapshot, and
//!   after [`SUBSCRIBE_REFUSALS`] such refusals the connection is closed
//!   (`sessions::resubscribing_in_a_loop_is_rate_limited_then_closed`).
//! - A heartbeat carries the position the board it follows reflects: the hub's folded
//!   position (events that change nothing on a view, or nothing in a cut, send no delta but
//!   move it), and every delta up to that position is sent before it, so "as of position N"
//!   on a screen is true (`heartbeat_position::a_heartbeat_carries_the_position_the_board_reflects`).
//! - Caps: at most `max_ws_per_address` open WebSockets per client address and
//!   `max_ws_per_token` per token (see `ConnLimits`); one over either is sent an `error`
//!   (`too_many_connections`, `too_many_token_connections`) and closed, and counted in
//!   `vigil_gateway_ws_refused_total{reason}`: `websockets_are_capped_per_address_and_per_token`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use boards::View;
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use crate::AppState;
use crate::hub::Subscription;
use boards::Cut;

/// What a subscriber is allowed: its view, its cut, its token's expiry and id (the per-token cap).
type Allowed = (View, Option<Cut>, u64, String);

/// Largest message a client may send; a subscribe is ~200 bytes.
pub const MAX_CLIENT_MESSAGE: usize = 4 * 1024;
/// Read buffer per connection (client messages are at most [`MAX_CLIENT_MESSAGE`]).
pub const READ_BUFFER: usize = 8 * 1024;
/// The error sent before closing on a frame that cannot be read (too large, bad framing).
const UNREADABLE: &str =
    "unreadable message: a client message is one WebSocket text frame of at most 4096 bytes";
/// How often a subscribed client hears from the server when nothing happens (≤ 5 s).
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// Time allowed between connecting and subscribing.
pub const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// The close code for a token that is missing, invalid, expired or revoked: a screen that
/// gets it asks for a new token instead of reconnecting with the same one (4000-4999 are the
/// application's own, RFC 6455; 4001 mirrors HTTP 401).
pub const TOKEN_CLOSE: u16 = 4001;
/// Subscribes a connection may send at once (the first one included) before the rate applies.
pub const SUBSCRIBE_BURST: u32 = 5;
/// Subscribes a connection may send per minute after the burst: each one costs a snapshot.
pub const SUBSCRIBES_PER_MINUTE: u32 = 12;
/// Refused (over the rate) subscribes after which the connection is closed as abusive.
pub const SUBSCRIBE_REFUSALS: u32 = 5;
/// How often a client that fell behind is sent one merged delta of what is waiting for it.
pub const MERGE_EVERY: Duration = Duration::from_millis(75);

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum ClientMessage {
    Subscribe {
        board: String,
        #[serde(default)]
        view: Option<String>,
        #[serde(default)]
        since: Option<u64>,
        /// The bearer token (or `?token=` on the URL).
        #[serde(default)]
        token: Option<String>,
        /// The version of the board messages the client speaks (`hub::PROTOCOL`); none
        /// means the current one.
        #[serde(default)]
        protocol: Option<u32>,
    },
}

/// Query of `GET /ws`.
#[derive(Debug, Deserialize)]
pub struct WsQuery {
    /// A token for clients that cannot put it in the subscribe message.
    token: Option<String>,
}

/// `GET /ws`. A browser always sends `Origin`: one that is not this gateway's own (or
/// configured) is refused with 403 before the upgrade, so another site cannot ride a wall
/// screen's session (cross-site WebSocket hijacking). Clients without `Origin` are not
/// browsers and must present a token like anyone else.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
) -> Response {
    if let Some(origin) = headers.get(axum::http::header::ORIGIN) {
        let ok = origin
            .to_str()
            .is_ok_and(|o| state.allowed_origins.iter().any(|a| a == o));
        if !ok {
            state.audit_denied("WS", "/ws", "foreign_origin", Some(peer), None);
            metrics::counter!("vigil_gateway_denied_total", "code" => "foreign_origin")
                .increment(1);
            return crate::http::ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "foreign_origin",
                "this page's origin may not open the board WebSocket",
            )
            .into_response();
        }
    }
    let url_token = query.ok().and_then(|q| q.0.token);
    // Taken before the upgrade, so a burst of upgrades cannot pass the cap between checks.
    let address_slot = state
        .ws_per_address
        .try_take(crate::server::client_key(peer.ip()));
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        // Clients only send a subscribe: tungstenite's 128 KiB read buffer per connection
        // would be most of an idle screen's memory.
        .read_buffer_size(READ_BUFFER)
        .on_upgrade(move |socket| async move {
            metrics::gauge!("vigil_gateway_connections").increment(1.0);
            serve(socket, state, url_token, peer, address_slot).await;
            metrics::gauge!("vigil_gateway_connections").decrement(1.0);
        })
}

enum Outcome {
    Continue,
    Close,
}

struct Conn {
    socket: WebSocket,
    view: View,
    /// The cut of this caller's board (`auth::board_scope`), if any.
    scope: Option<Cut>,
    /// Last position this client has been sent.
    position: u64,
    /// See `ConnLimits::ws_send_timeout`.
    send_timeout: Duration,
    /// The socket did not take a frame at once (the client reads slower than deltas come):
    /// what waits for it is sent merged, every [`MERGE_EVERY`], until it has caught up.
    behind: bool,
    /// The earliest time of the next merged delta.
    next_merge: tokio::time::Instant,
}

impl Conn {
    async fn send(&mut self, text: Utf8Bytes) -> Outcome {
        let send = tokio::time::timeout(self.send_timeout, self.socket.send(Message::Text(text)));
        // Outside the runtime's cooperative budget, the send is pending only when the
        // socket's buffer is full: the client is not reading as fast as frames come.
        let mut send = std::pin::pin!(tokio::task::unconstrained(send));
        let mut first = true;
        let sent = std::future::poll_fn(|cx| {
            let poll = send.as_mut().poll(cx);
            if first && poll.is_pending() {
                self.behind = true;
            }
            first = false;
            poll
        })
        .await;
        match sent {
            Ok(Ok(())) => {
                metrics::counter!("vigil_gateway_frames_sent_total").increment(1);
                Outcome::Continue
            }
            Ok(Err(_)) => Outcome::Close,
            Err(_) => {
                metrics::counter!("vigil_gateway_stuck_clients_dropped_total").increment(1);
                Outcome::Close
            }
        }
    }

    async fn error_and_close(&mut self, code: &str, message: &str) {
        let body = json!({"type": "error", "code": code, "message": message}).to_string();
        // A token problem gets its own close code; anything else is a policy violation.
        let close = if matches!(
            code,
            "unauthorized" | "invalid_token" | "token_expired" | "token_revoked"
        ) {
            CloseFrame {
                code: TOKEN_CLOSE,
                reason: Utf8Bytes::from_static("token"),
            }
        } else {
            CloseFrame {
                code: 1008,
                reason: Utf8Bytes::from_static("policy"),
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = self.socket.send(Message::Text(body.into())).await;
            let _ = self.socket.send(Message::Close(Some(close))).await;
        })
        .await;
    }

    /// Subscribes to this connection's view, cut to its country when it has one.
    fn subscribe(&mut self, state: &AppState, since: Option<u64>) -> Subscription {
        // A fresh start: nothing waits for this client.
        self.behind = false;
        match self.scope {
            Some(cut) => state.hub.subscribe_scoped(cut, since),
            None => state.hub.subscribe(self.view, since),
        }
    }

    /// Sends a live delta (cut to this connection's scope) unless already past it.
    async fn forward(&mut self, f: crate::hub::Frame) -> Outcome {
        if !f.is_after(self.position) {
            return Outcome::Continue;
        }
        let p = f.position;
        let bytes = match self.scope {
            None => Some(f.bytes),
            Some(cut) => crate::hub::scoped_delta(&f, cut),
        };
        let out = match bytes {
            Some(b) => self.send(b).await,
            None => Outcome::Continue,
        };
        self.position = p;
        out
    }

    /// A client that fell behind: everything waiting for it as one merged delta (or the one
    /// frame waiting, as it is); it is no longer behind once its socket takes that at once.
    /// Too far behind (the channel lost frames): a fresh snapshot.
    async fn catch_up(&mut self, state: &AppState, sub: &mut Subscription) -> Outcome {
        let mut run = Vec::new();
        loop {
            match sub.live.try_recv() {
                Ok(f) if f.is_after(self.position) => run.push(f),
                Ok(_) => {}
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Lagged(n)) => {
                    metrics::counter!("vigil_gateway_resyncs_total").increment(1);
                    tracing::debug!(skipped = n, "slow client resynced with a snapshot");
                    *sub = self.subscribe(state, None);
                    return self.start(sub).await;
                }
                Err(TryRecvError::Closed) => return Outcome::Close,
            }
        }
        self.next_merge = tokio::time::Instant::now() + MERGE_EVERY;
        // Caught up, unless its socket does not take this one at once either (`send`).
        self.behind = false;
        let Some(last) = run.last().map(|f| f.position) else {
            return Outcome::Continue;
        };
        if run.len() > 1 {
            metrics::counter!("vigil_gateway_frames_coalesced_total").increment(run.len() as u64);
        }
        let out = match crate::hub::merged_delta(&run, self.scope) {
            Some(bytes) => self.send(bytes).await,
            None => Outcome::Continue,
        };
        self.position = last;
        out
    }

    async fn start(&mut self, sub: &mut Subscription) -> Outcome {
        for frame in std::mem::take(&mut sub.initial) {
            if let Outcome::Close = self.send(frame).await {
                return Outcome::Close;
            }
        }
        self.position = sub.position;
        Outcome::Continue
    }
}

/// A parsed subscribe: the view asked for (if any), `since`, and the token it carried.
type Subscribe = (Option<View>, Option<u64>, Option<String>);

/// Parses a client text message into a subscribe, or a refusal.
fn parse_subscribe(text: &str) -> Result<Subscribe, (&'static str, String)> {
    let msg: ClientMessage = serde_json::from_str(text).map_err(|e| {
        (
            "invalid_message",
            format!("expected {{\"type\":\"subscribe\",\"board\":\"situation\"}}: {e}"),
        )
    })?;
    let ClientMessage::Subscribe {
        board,
        view,
        since,
        token,
        protocol,
    } = msg;
    if let Some(p) = protocol.filter(|p| *p != crate::hub::PROTOCOL) {
        return Err((
            "unsupported_protocol",
            format!(
                "this gateway speaks board protocol {} only, not {p}: reload the page",
                crate::hub::PROTOCOL
            ),
        ));
    }
    if !boards::BOARDS.contains(&board.as_str()) {
        return Err((
            "unknown_board",
            format!(
                "no board named {:?}; boards: {}",
                board.chars().take(40).collect::<String>(),
                boards::BOARDS.join(", ")
            ),
        ));
    }
    let view = match view.as_deref() {
        None => None,
        Some(v) => Some(View::parse(v).ok_or((
            "unknown_view",
            "view must be duty or wall_screen".to_owned(),
        ))?),
    };
    Ok((view, since, token))
}

/// Checks the token and picks the view the role gets; the view, the token's expiry and its
/// id.
fn authorize(
    state: &AppState,
    token: Option<&str>,
    asked: Option<View>,
) -> Result<Allowed, (&'static str, String)> {
    let Some(token) = token else {
        return Err((
            "unauthorized",
            "send a token in the subscribe message (\"token\") or as ?token= on the URL".into(),
        ));
    };
    let claims = state.auth.check(token).map_err(refusal)?;
    Ok((
        crate::auth::board_view(claims.role, asked),
        crate::auth::board_scope(&claims),
        claims.exp,
        claims.jti,
    ))
}

/// What a client is told about a refused token.
fn refusal(r: crate::auth::Refusal) -> (&'static str, String) {
    use crate::auth::Refusal;
    let message = match r {
        Refusal::Malformed => "the token is not valid: get a new one",
        Refusal::Expired => "the token expired: log in again or get a new token",
        Refusal::Revoked => {
            "the token was revoked (or its user changed): log in again or get a new token"
        }
    };
    (r.code(), message.to_owned())
}

/// A limiter on one connection's subscribes.
type SubscribeLimiter = governor::DefaultDirectRateLimiter;

fn subscribe_limiter() -> SubscribeLimiter {
    let n = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::direct(
        governor::Quota::per_minute(n(SUBSCRIBES_PER_MINUTE)).allow_burst(n(SUBSCRIBE_BURST)),
    )
}

/// A place among the token's WebSockets: the one held when it is the same token, else a new
/// one (the old one is given back when the caller replaces it).
fn token_slot(
    state: &AppState,
    held: Option<&TokenSlot>,
    jti: String,
) -> Result<Option<TokenSlot>, (&'static str, String)> {
    if held.is_some_and(|h| *h.key() == jti) {
        return Ok(None);
    }
    match state.ws_per_token.try_take(jti) {
        Some(slot) => Ok(Some(slot)),
        None => {
            metrics::counter!("vigil_gateway_ws_refused_total", "reason" => "per_token")
                .increment(1);
            Err((
                "too_many_token_connections",
                "this token has as many board connections open as one token may; close one or use another token".into(),
            ))
        }
    }
}

type TokenSlot = crate::server::Slot<String>;

fn deadline_of(exp: u64) -> tokio::time::Instant {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now))
}

async fn serve(
    socket: WebSocket,
    state: Arc<AppState>,
    url_token: Option<String>,
    peer: std::net::SocketAddr,
    address_slot: Option<crate::server::Slot<std::net::IpAddr>>,
) {
    let mut conn = Conn {
        socket,
        view: View::WallScreen,
        scope: None,
        position: 0,
        send_timeout: state.ws_send_timeout,
        behind: false,
        next_merge: tokio::time::Instant::now(),
    };
    // Held until this function returns (the connection closes).
    let Some(_address_slot) = address_slot else {
        metrics::counter!("vigil_gateway_ws_refused_total", "reason" => "per_address").increment(1);
        return conn
            .error_and_close(
                "too_many_connections",
                "your address has as many board connections open as one address may; close one or retry shortly",
            )
            .await;
    };
    // 1. Wait for a subscribe.
    let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, conn.socket.recv()).await;
    let (asked, since, token) =
        match first {
            Ok(Some(Ok(Message::Text(text)))) => match parse_subscribe(&text) {
                Ok(s) => s,
                Err((code, msg)) => return conn.error_and_close(code, &msg).await,
            },
            Ok(Some(Ok(_))) => return conn
                .error_and_close(
                    "invalid_message",
                    "send a JSON text message: {\"type\":\"subscribe\",\"board\":\"situation\"}",
                )
                .await,
            Err(_) => {
                return conn
                    .error_and_close("timeout", "subscribe within 10 s of connecting")
                    .await;
            }
            Ok(Some(Err(_))) => return conn.error_and_close("invalid_message", UNREADABLE).await,
            Ok(None) => return,
        };
    let limiter = subscribe_limiter();
    let mut refused_subscribes = 0u32;
    // The first subscribe counts against the burst.
    let _ = limiter.check();
    // The token this connection is served under, checked again at every heartbeat.
    let mut current = token.or(url_token.clone());
    let (view, scope, exp, jti) = match authorize(&state, current.as_deref(), asked) {
        Ok(v) => v,
        Err((code, msg)) => {
            metrics::counter!("vigil_gateway_denied_total", "code" => code).increment(1);
            state.audit_denied("WS", "/ws", code, Some(peer), None);
            return conn.error_and_close(code, &msg).await;
        }
    };
    let mut held = match token_slot(&state, None, jti) {
        Ok(slot) => slot,
        Err((code, msg)) => return conn.error_and_close(code, &msg).await,
    };
    let expires = tokio::time::sleep_until(deadline_of(exp));
    tokio::pin!(expires);
    conn.view = view;
    conn.scope = scope;
    state.hub.wait_caught_up().await;
    let mut sub = conn.subscribe(&state, since);
    if let Outcome::Close = conn.start(&mut sub).await {
        return;
    }

    // 2. Follow.
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outcome = tokio::select! {
            _ = &mut expires => {
                let (code, msg) = refusal(crate::auth::Refusal::Expired);
                conn.error_and_close(code, &msg).await;
                Outcome::Close
            }
            _ = state.shutdown.cancelled() => {
                let _ = conn.socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: Utf8Bytes::from_static("gateway restarting") }))).await;
                Outcome::Close
            }
            // Behind: what waits is merged and sent every MERGE_EVERY instead.
            _ = tokio::time::sleep_until(conn.next_merge), if conn.behind => {
                conn.catch_up(&state, &mut sub).await
            }
            frame = sub.live.recv(), if !conn.behind => match frame {
                Ok(f) => conn.forward(f).await,
                Err(RecvError::Lagged(n)) => {
                    // Too far behind: a snapshot instead of the backlog.
                    metrics::counter!("vigil_gateway_resyncs_total").increment(1);
                    tracing::debug!(skipped = n, "slow client resynced with a snapshot");
                    sub = conn.subscribe(&state, None);
                    conn.start(&mut sub).await
                }
                Err(RecvError::Closed) => Outcome::Close,
            },
            _ = heartbeat.tick() => {
                // Revocation and user changes are not pushed to connections: each one looks
                // again here, so it ends within a heartbeat.
                if let Err(r) = state.auth.check(current.as_deref().unwrap_or_default()) {
                    metrics::counter!("vigil_gateway_ws_token_ended_total", "code" => r.code()).increment(1);
                    let (code, msg) = refusal(r);
                    conn.error_and_close(code, &msg).await;
                    return;
                }
                // The position the board reflects, not the last delta's: events that change
                // nothing on this view send no delta, and a screen says "as of position N".
                // Read before draining: every delta up to it is already in the channel, so
                // it goes out before the heartbeat that claims it.
                let folded = state.hub.position();
                let mut out = Outcome::Continue;
                // A client behind gets its deltas merged, at their own pace (not drained here).
                while !conn.behind {
                    match sub.live.try_recv() {
                        Ok(f) => {
                            out = conn.forward(f).await;
                            if let Outcome::Close = out {
                                break;
                            }
                        }
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(_)) => {
                            metrics::counter!("vigil_gateway_resyncs_total").increment(1);
                            sub = conn.subscribe(&state, None);
                            out = conn.start(&mut sub).await;
                            break;
                        }
                        Err(TryRecvError::Closed) => {
                            out = Outcome::Close;
                            break;
                        }
                    }
                }
                if let Outcome::Close = out {
                    return;
                }
                // Behind: the position its board reflects is the last one sent.
                if !conn.behind {
                    conn.position = conn.position.max(folded);
                }
                let at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
                let body = json!({"type": "heartbeat", "position": conn.position, "at": at}).to_string();
                conn.send(body.into()).await
            }
            msg = conn.socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => match parse_subscribe(&text) {
                    Ok(_) if limiter.check().is_err() => {
                        // Each subscribe costs a snapshot: a loop of them is refused, and
                        // closed once it goes on.
                        refused_subscribes += 1;
                        metrics::counter!("vigil_gateway_ws_subscribes_refused_total").increment(1);
                        let message = format!(
                            "too many subscribes on this connection: at most {SUBSCRIBE_BURST} at once, then {SUBSCRIBES_PER_MINUTE} a minute"
                        );
                        if refused_subscribes >= SUBSCRIBE_REFUSALS {
                            conn.error_and_close("rate_limited", &message).await;
                            Outcome::Close
                        } else {
                            let body = json!({"type": "error", "code": "rate_limited", "message": message});
                            conn.send(body.to_string().into()).await
                        }
                    }
                    Ok((asked, since, token)) => {
                        // A new subscribe on the same connection: checked again, as if new.
                        let token = token.or(url_token.clone());
                        match authorize(&state, token.as_deref(), asked)
                            .and_then(|(view, scope, exp, jti)| {
                                Ok((view, scope, exp, token_slot(&state, held.as_ref(), jti)?))
                            }) {
                            Ok((view, scope, exp, slot)) => {
                                current = token;
                                if slot.is_some() {
                                    held = slot;
                                }
                                expires.as_mut().reset(deadline_of(exp));
                                // Same view: continue from where this connection is, unless told otherwise.
                                let same = view == conn.view && scope == conn.scope;
                                let resume = since.or(same.then_some(conn.position));
                                conn.view = view;
                                conn.scope = scope;
                                sub = conn.subscribe(&state, resume);
                                conn.start(&mut sub).await
                            }
                            Err((code, msg)) => {
                                conn.error_and_close(code, &msg).await;
                                Outcome::Close
                            }
                        }
                    }
                    Err((code, msg)) => {
                        conn.error_and_close(code, &msg).await;
                        Outcome::Close
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    conn.error_and_close("invalid_message", "binary messages are not part of the protocol").await;
                    Outcome::Close
                }
                Some(Ok(Message::Close(_))) | None => Outcome::Close,
                // Pings are answered by the library; pongs need nothing.
                Some(Ok(_)) => Outcome::Continue,
                // Over the size limit, bad framing, reset: this connection only, told why
                // when it can still hear it (ops/chaos fuzz found it cut without a word).
                Some(Err(_)) => {
                    conn.error_and_close("invalid_message", UNREADABLE).await;
                    Outcome::Close
                }
            },
        };
        if let Outcome::Close = outcome {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_messages_are_strict() {
        assert!(matches!(
            parse_subscribe(r#"{"type":"subscribe","board":"situation"}"#),
            Ok((None, None, None))
        ));
        assert!(matches!(
            parse_subscribe(
                r#"{"type":"subscribe","board":"situation","view":"duty","since":7,"token":"t"}"#
            ),
            Ok((Some(View::Duty), Some(7), Some(_)))
        ));
        assert!(matches!(
            parse_subscribe(r#"{"type":"subscribe","board":"situation","protocol":2}"#),
            Ok((None, None, None))
        ));
        for (bad, code) in [
            (r#"{"type":"subscribe","board":"nope"}"#, "unknown_board"),
            (
                r#"{"type":"subscribe","board":"situation","view":"god"}"#,
                "unknown_view",
            ),
            (
                r#"{"type":"subscribe","board":"situation","extra":1}"#,
                "invalid_message",
            ),
            (r#"{"type":"unsubscribe"}"#, "invalid_message"),
            (
                r#"{"type":"subscribe","board":"situation","protocol":1}"#,
                "unsupported_protocol",
            ),
            (
                r#"{"type":"subscribe","board":"situation","since":-1}"#,
                "invalid_message",
            ),
            ("not json", "invalid_message"),
        ] {
            assert_eq!(parse_subscribe(bad).unwrap_err().0, code, "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_client_text_never_panics(text in "\\PC{0,300}") {
            let _ = parse_subscribe(&text);
        }

        #[test]
        fn near_miss_subscribes_never_panic(
            board in "[a-z_]{0,12}",
            view in proptest::option::of("[a-z_]{0,12}"),
            since in proptest::option::of(proptest::num::i64::ANY),
            extra in proptest::option::of("[a-z]{1,8}"),
        ) {
            let mut msg = serde_json::json!({"type": "subscribe", "board": board});
            if let Some(v) = view { msg["view"] = v.into(); }
            if let Some(s) = since { msg["since"] = s.into(); }
            if let Some(e) = extra { msg[e] = true.into(); }
            let parsed = parse_subscribe(&msg.to_string());
            // Only well-formed subscribes to a known board are accepted.
            if let Ok((_, since, _)) = parsed {
                proptest::prop_assert!(boards::BOARDS.contains(&board.as_str()));
                proptest::prop_assert!(since.is_none_or(|s| i64::try_from(s).is_ok()));
            }
        }
    }
}
