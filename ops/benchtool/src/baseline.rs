//! `vigil-bench baseline-server` (hidden): the fan-out baseline of `vigil-bench fanout`.
//!
//! A minimal tokio-tungstenite broadcast server with the gateway's delivery rules and none of
//! its work: it accepts WebSocket connections with the gateway's limits (4 KiB client
//! messages, tungstenite's defaults otherwise, as axum uses them; Nagle left on, as
//! `axum::serve` leaves it), waits for any text message
//! (the subscribe), sends the snapshot it was given, then every broadcast frame, a heartbeat
//! every 2 s, and a fresh snapshot to a client that falls more than 1,024 frames behind (a
//! send that takes over 10 s drops the client) — like `services/gateway`, minus the log, the
//! fold and the encoding of deltas.
//!
//! It is driven over stdin/stdout by `vigil-bench fanout`, one command per line:
//! - it prints `listening <addr>` once bound;
//! - `snapshot <json>` sets the snapshot frame; `delta <json>` adds a delta template (real
//!   frames captured from the gateway);
//! - `run <rate> <from_ns> <to_ns> <stop_ns>` broadcasts the templates in turn at `rate`/s,
//!   each with `as_of` = now (RFC 3339) and `position` = 1, 2, …, encoded once and shared by
//!   every client, until `stop_ns` (Unix ns), then prints
//!   `done <last_position> <frames with as_of in [from,to)> <sent> <resyncs> <dropped>`;
//! - end of input ends the process.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::util::unix_nanos;

/// The gateway's fan-out capacity (`hub::FANOUT_CAPACITY`).
const FANOUT_CAPACITY: usize = 1024;
/// The gateway's heartbeat period.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// The gateway's send timeout.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway's client message limit.
const MAX_CLIENT_MESSAGE: usize = 4 * 1024;

/// Flags of the baseline server.
#[derive(Debug, Clone, clap::Args)]
pub struct BaselineArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// tungstenite's read buffer per connection (its default, which axum keeps, is 128 KiB).
    #[arg(long, default_value_t = 128 * 1024)]
    read_buffer: usize,
    /// Set TCP_NODELAY on accepted sockets (axum's `serve`, and so the gateway, does not).
    #[arg(long)]
    nodelay: bool,
}

struct State {
    read_buffer: usize,
    nodelay: bool,
    snapshot: RwLock<Utf8Bytes>,
    tx: broadcast::Sender<Utf8Bytes>,
    resyncs: AtomicU64,
    dropped: AtomicU64,
}

/// Runs the baseline server until its stdin closes.
pub async fn serve(args: BaselineArgs) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    println!("listening {}", listener.local_addr()?);
    let state = Arc::new(State {
        read_buffer: args.read_buffer,
        nodelay: args.nodelay,
        snapshot: RwLock::new(Utf8Bytes::from_static("{}")),
        tx: broadcast::channel(FANOUT_CAPACITY).0,
        resyncs: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
    });
    {
        let state = state.clone();
        tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(connection(stream, state.clone()));
                    }
                    Err(e) => {
                        eprintln!("baseline-server: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
    }

    let mut templates: Vec<Value> = Vec::new();
    let mut position = 0u64;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let (cmd, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        match cmd {
            "snapshot" => {
                // Deltas continue from the snapshot's position, as they would on the gateway.
                position = serde_json::from_str::<Value>(rest)
                    .ok()
                    .and_then(|v| v.get("position").and_then(Value::as_u64))
                    .unwrap_or(0);
                *state.snapshot.write().unwrap_or_else(|p| p.into_inner()) =
                    Utf8Bytes::from(rest.to_owned());
            }
            "delta" => templates.push(serde_json::from_str(rest).context("a delta template")?),
            "run" => {
                let nums: Vec<f64> = rest
                    .split_whitespace()
                    .map(|s| s.parse::<f64>())
                    .collect::<Result<_, _>>()
                    .context("run <rate> <from_ns> <to_ns> <stop_ns>")?;
                let [rate, from, to, stop] = nums[..] else {
                    bail!("run <rate> <from_ns> <to_ns> <stop_ns>");
                };
                if templates.is_empty() {
                    templates.push(synthetic_delta());
                }
                let (sent, in_window) = publish(
                    &state,
                    &templates,
                    &mut position,
                    rate,
                    from as i64,
                    to as i64,
                    stop as i64,
                )
                .await;
                println!(
                    "done {position} {in_window} {sent} {} {}",
                    state.resyncs.load(Ordering::Relaxed),
                    state.dropped.load(Ordering::Relaxed)
                );
            }
            "" => {}
            other => bail!("unknown command {other:?}"),
        }
    }
    Ok(())
}

/// A delta of typical size, for when no real frame was captured.
fn synthetic_delta() -> Value {
    serde_json::json!({
        "as_of": null, "board": "situation", "position": 0, "type": "delta", "view": "wall_screen",
        "ops": [{"op": "set", "path": ["countries", "SO"], "value": {"pad": "x".repeat(600)}}],
    })
}

async fn publish(
    state: &State,
    templates: &[Value],
    position: &mut u64,
    rate: f64,
    from: i64,
    to: i64,
    stop: i64,
) -> (u64, u64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    let (mut sent, mut in_window) = (0u64, 0u64);
    loop {
        tick.tick().await;
        let now = unix_nanos();
        if now >= stop {
            break;
        }
        let Some(template) = templates.get(sent as usize % templates.len()) else {
            break;
        };
        *position += 1;
        let mut frame = template.clone();
        if let Some(obj) = frame.as_object_mut() {
            let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(now))
                .ok()
                .and_then(|t| t.format(&Rfc3339).ok());
            obj.insert("as_of".into(), at.into());
            obj.insert("position".into(), (*position).into());
        }
        // Encoded once, the same bytes to every client (as the gateway does).
        let bytes = Utf8Bytes::from(frame.to_string());
        let _ = state.tx.send(bytes);
        sent += 1;
        if now >= from && now < to {
            in_window += 1;
        }
    }
    (sent, in_window)
}

async fn send(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    state: &State,
    text: Utf8Bytes,
) -> bool {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(Message::Text(text))).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            state.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    if state.nodelay {
        let _ = stream.set_nodelay(true);
    }
    let config = WebSocketConfig::default()
        .read_buffer_size(state.read_buffer)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE));
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => {}
        _ => return,
    }
    // Subscribed before the snapshot is taken: nothing published in between is lost.
    let mut rx = state.tx.subscribe();
    let snapshot = state
        .snapshot
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if !send(&mut ws, &state, snapshot).await {
        return;
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut position = 0u64;
    loop {
        let ok = tokio::select! {
            frame = rx.recv() => match frame {
                Ok(f) => {
                    position += 1;
                    send(&mut ws, &state, f).await
                }
                Err(RecvError::Lagged(_)) => {
                    state.resyncs.fetch_add(1, Ordering::Relaxed);
                    let snapshot = state.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
                    send(&mut ws, &state, snapshot).await
                }
                Err(RecvError::Closed) => false,
            },
            _ = heartbeat.tick() => {
                let at = OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default();
                let body = serde_json::json!({"type": "heartbeat", "position": position, "at": at}).to_string();
                send(&mut ws, &state, body.into()).await
            }
            msg = ws.next() => !matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        };
        if !ok {
            return;
        }
    }
}
