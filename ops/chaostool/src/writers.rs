//! The writers a scenario runs while it breaks things, and the file they record every
//! acknowledged write in.
//!
//! - HTTP writers report incidents through the gateway (`POST /api/v1/incidents` with a
//!   client id), the path a field officer's phone takes: gateway → incidents service → store.
//! - NATS writers append straight to the store (`vigil.store.append`), several streams each,
//!   the path every service takes.
//!
//! Against a centre of several nodes ([`http_writer_over`], [`nats_writer_over`]) a writer
//! is given every node and moves to the next one when its node fails it, as a client of a
//! cluster must.
//!
//! Each writer retries a write with the same ids until it is acknowledged (or the scenario
//! ends), exactly as a client must; an acknowledgement is written to the ack file (one JSON
//! line, flushed) before the next write starts, so the file holds every acknowledged write.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::StoreClient;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Mutex;
use uuid::Uuid;

/// A new event of the kind every chaos writer appends (`ChaosWritten`), by `actor`.
pub fn chaos_event(actor: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "ChaosWritten".into(),
        v: 1,
        data,
        meta: Meta {
            actor: Some(actor.to_owned()),
            ..Meta::default()
        },
    }
}

/// One acknowledged write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The event's id.
    pub id: Uuid,
    /// Its stream.
    pub stream: String,
    /// The position the store gave.
    pub position: u64,
    /// The stream version the store gave.
    pub version: u64,
    /// `http` or `nats`.
    pub via: String,
}

/// The ack file, shared by the writers.
#[derive(Clone)]
pub struct AckFile(Arc<Mutex<std::fs::File>>);

impl AckFile {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> anyhow::Result<AckFile> {
        let f = std::fs::File::create(path)
            .with_context(|| format!("creating the ack file {}", path.display()))?;
        Ok(AckFile(Arc::new(Mutex::new(f))))
    }

    /// Appends `ack` (one flushed line).
    pub async fn record(&self, ack: &Ack) -> anyhow::Result<()> {
        let mut line = serde_json::to_vec(ack)?;
        line.push(b'\n');
        let mut f = self.0.lock().await;
        f.write_all(&line)?;
        f.flush()?;
        Ok(())
    }

    /// Reads every ack of `path`.
    pub fn read(path: &Path) -> anyhow::Result<Vec<Ack>> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the ack file {}", path.display()))?;
        // A writer killed mid-line leaves a torn last line: that write was never recorded
        // as acknowledged (the line is flushed whole before the next write starts).
        let complete = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).context("a line of the ack file"))
            .collect()
    }
}

/// What the writers share with the scenario.
#[derive(Clone, Default)]
pub struct Progress {
    /// Set to stop the writers (each finishes or abandons its write in flight).
    pub stop: Arc<AtomicBool>,
    /// Writes acknowledged so far.
    pub acked: Arc<AtomicU64>,
    /// Milliseconds since `epoch` of the last acknowledgement through the gateway.
    pub last_http_ack_ms: Arc<AtomicU64>,
    /// Milliseconds since `epoch` of the last acknowledgement by either path.
    pub last_ack_ms: Arc<AtomicU64>,
    /// When the writers started.
    pub epoch: Arc<std::sync::OnceLock<Instant>>,
}

impl Progress {
    fn now_ms(&self) -> u64 {
        let epoch = *self.epoch.get_or_init(Instant::now);
        epoch.elapsed().as_millis() as u64
    }

    fn mark(&self) {
        self.last_ack_ms.store(self.now_ms(), Ordering::Release);
    }

    fn mark_http(&self) {
        let now = self.now_ms();
        self.last_http_ack_ms.store(now, Ordering::Release);
        self.last_ack_ms.store(now, Ordering::Release);
    }

    /// Waits until an HTTP write is acknowledged after `since` (the centre serves field
    /// reports again); the time it took, or `None` after `timeout`.
    pub async fn http_ack_after(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        self.after(&self.last_http_ack_ms, since, timeout).await
    }

    /// Waits until any write (HTTP or NATS) is acknowledged after `since`; the time it took,
    /// or `None` after `timeout`.
    pub async fn ack_after(&self, since: Instant, timeout: Duration) -> Option<Duration> {
        self.after(&self.last_ack_ms, since, timeout).await
    }

    async fn after(&self, last: &AtomicU64, since: Instant, timeout: Duration) -> Option<Duration> {
        let epoch = *self.epoch.get_or_init(Instant::now);
        let since_ms = since.saturating_duration_since(epoch).as_millis() as u64;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if last.load(Ordering::Acquire) > since_ms {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// A store client of its own on `nats_url` (`Service` mode reconnects for ever; `Tool` fails
/// at once when the server is not there).
pub async fn store_client(
    nats_url: &str,
    name: &str,
    mode: runtime::nats::Mode,
    timeout: Duration,
) -> anyhow::Result<StoreClient> {
    store_client_as(nats_url, name, None, mode, timeout).await
}

/// [`store_client`] logged in as a NATS user (a cluster's servers require one).
pub async fn store_client_as(
    nats_url: &str,
    name: &str,
    credentials: Option<(String, String)>,
    mode: runtime::nats::Mode,
    timeout: Duration,
) -> anyhow::Result<StoreClient> {
    let client = runtime::nats::connect(nats_url, name, credentials, mode).await?;
    Ok(StoreClient::new(client, timeout))
}

/// The writers of a scenario: `http` writers through the gateway at `gateway` (with a field
/// officer's token), `nats` writers straight to the store.
pub fn spawn(
    gateway: Option<(SocketAddr, &str)>,
    http: usize,
    nats_url: &str,
    nats: usize,
    acks: &AckFile,
    progress: &Progress,
) -> Vec<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let mut tasks = Vec::new();
    if let Some((addr, token)) = gateway {
        for _ in 0..http {
            tasks.push(tokio::spawn(http_writer(
                addr,
                token.to_owned(),
                acks.clone(),
                progress.clone(),
            )));
        }
    }
    for w in 0..nats {
        tasks.push(tokio::spawn(nats_writer(
            nats_url.to_owned(),
            w,
            acks.clone(),
            progress.clone(),
        )));
    }
    tasks
}

/// Stops the writers and waits for each (a writer's error is the scenario's).
pub async fn stop(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
    progress: &Progress,
) -> anyhow::Result<()> {
    progress.stop.store(true, Ordering::Release);
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// A WebSocket subscribed to the situation board's wall-screen view from `since`, or `None`
/// when the gateway cannot be reached within 3 s.
pub async fn subscribe_board(
    http: SocketAddr,
    token: &str,
    since: u64,
) -> Option<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
> {
    use futures::SinkExt;
    let url = format!("ws://{http}/ws");
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .ok()?
    .ok()?;
    let subscribe = json!({"type": "subscribe", "board": "situation",
        "view": "wall_screen", "since": since, "token": token});
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        subscribe.to_string(),
    ))
    .await
    .ok()?;
    Some(ws)
}

/// A duty officer's token (`chaos.duty`, every country), valid a day: what reads the board.
pub fn duty_token(auth: &gateway::auth::Auth) -> anyhow::Result<String> {
    let day = Duration::from_secs(24 * 3600);
    let (token, _) = auth.issue(
        "chaos.duty",
        gateway::auth::Role::DutyOfficer,
        None,
        None,
        day,
        "api",
    )?;
    Ok(token)
}

/// The token an HTTP writer reports with: user `user`, a field officer of Somalia (the
/// country of [`report_body`]'s reports), valid a day.
pub fn field_token(auth: &gateway::auth::Auth, user: &str) -> anyhow::Result<String> {
    let day = Duration::from_secs(24 * 3600);
    let (token, _) = auth.issue(
        user,
        gateway::auth::Role::FieldOfficer,
        Some("SO".into()),
        None,
        day,
        "api",
    )?;
    Ok(token)
}

/// One `POST /api/v1/incidents` of report `id` (`body`) with `auth`, within 5 s: its
/// acknowledgement when answered 201 (or 200: already stored), else what came back.
pub async fn post_report(
    http: SocketAddr,
    auth: &str,
    id: Uuid,
    body: &[u8],
) -> Result<Ack, String> {
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        testkit::http::request(
            http,
            "POST",
            "/api/v1/incidents",
            &[
                ("Authorization", auth),
                ("Content-Type", "application/json"),
            ],
            Some(body),
        ),
    )
    .await;
    match answer {
        Ok(Ok(a)) if a.status == 201 || a.status == 200 => {
            let v = a.json();
            Ok(Ack {
                id,
                stream: v["stream"].as_str().unwrap_or_default().to_owned(),
                position: v["position"].as_u64().unwrap_or_default(),
                version: v["stream_version"].as_u64().unwrap_or_default(),
                via: "http".into(),
            })
        }
        other => Err(format!("{other:?}")),
    }
}

/// Reports incidents through the gateway until stopped.
pub async fn http_writer(
    http: SocketAddr,
    token: String,
    acks: AckFile,
    progress: Progress,
) -> anyhow::Result<()> {
    http_writer_over(vec![http], 0, token, acks, progress).await
}

/// Reports incidents through the gateways of a cluster's nodes until stopped, starting with
/// `gateways[first]` and moving to the next gateway after each failed try.
pub async fn http_writer_over(
    gateways: Vec<SocketAddr>,
    first: usize,
    token: String,
    acks: AckFile,
    progress: Progress,
) -> anyhow::Result<()> {
    anyhow::ensure!(!gateways.is_empty(), "an HTTP writer needs a gateway");
    let auth = format!("Bearer {token}");
    let mut at = first % gateways.len();
    while !progress.stop.load(Ordering::Acquire) {
        let id = Uuid::new_v4();
        let body = report_body(id, "Chaos report")?;
        // The same id until it lands: a retry is never stored twice.
        loop {
            if let Ok(ack) = post_report(gateways[at], &auth, id, &body).await {
                acks.record(&ack).await?;
                progress.acked.fetch_add(1, Ordering::AcqRel);
                progress.mark_http();
                break;
            }
            if progress.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            at = (at + 1) % gateways.len();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Appends to the store over NATS, round-robin over 3 streams of its own, until stopped.
pub async fn nats_writer(
    nats_url: String,
    writer: usize,
    acks: AckFile,
    progress: Progress,
) -> anyhow::Result<()> {
    let nodes = NatsNodes {
        urls: vec![nats_url],
        credentials: None,
    };
    nats_writer_over(nodes, writer, acks, progress).await
}

/// The NATS servers of a centre's nodes, and the user to log in as.
#[derive(Clone)]
pub struct NatsNodes {
    /// One client URL per node.
    pub urls: Vec<String>,
    /// The NATS user and password (a cluster's servers require one that may append).
    pub credentials: Option<(String, String)>,
}

/// [`nats_writer`] against `nodes`. With one URL the client reconnects to it for ever; with
/// several it starts on node `writer` and, after two failed tries in a row, connects to the
/// next node (a node cut off from the others still accepts its clients, so reconnecting
/// alone would never move the writer).
pub async fn nats_writer_over(
    nodes: NatsNodes,
    writer: usize,
    acks: AckFile,
    progress: Progress,
) -> anyhow::Result<()> {
    anyhow::ensure!(!nodes.urls.is_empty(), "a NATS writer needs a server");
    let name = format!("chaos-writer-{writer}");
    let connect = |url: String, mode| {
        let (name, credentials) = (name.clone(), nodes.credentials.clone());
        async move { store_client_as(&url, &name, credentials, mode, Duration::from_secs(2)).await }
    };
    let moves = nodes.urls.len() > 1;
    let mut at = writer % nodes.urls.len();
    let mut store = if moves {
        None
    } else {
        Some(connect(nodes.urls[at].clone(), runtime::nats::Mode::Service).await?)
    };
    let streams: Vec<StreamName> = (0..3)
        .map(|_| StreamName::parse(&format!("chaos-{}", Uuid::new_v4())))
        .collect::<Result<_, _>>()?;
    let mut i = 0usize;
    let mut failures = 0;
    while !progress.stop.load(Ordering::Acquire) {
        let stream = &streams[i % streams.len()];
        i += 1;
        let event = chaos_event(&name, json!({"writer": writer, "n": i}));
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events: vec![event.clone()],
        };
        loop {
            if store.is_none() {
                let url = nodes.urls[at].clone();
                store = connect(url, runtime::nats::Mode::Tool).await.ok();
            }
            if let Some(s) = &store
                && let Ok(ok) = s.append(&request).await
            {
                let ack = Ack {
                    id: event.id,
                    stream: stream.as_str().to_owned(),
                    position: ok.first_position,
                    version: ok.stream_version,
                    via: "nats".into(),
                };
                acks.record(&ack).await?;
                progress.acked.fetch_add(1, Ordering::AcqRel);
                progress.mark();
                failures = 0;
                break;
            }
            if progress.stop.load(Ordering::Acquire) {
                return Ok(());
            }
            failures += 1;
            if moves && (store.is_none() || failures >= 2) {
                store = None;
                failures = 0;
                at = (at + 1) % nodes.urls.len();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// A field report's body, `occurred_at` now: the incidents service refuses reports more than
/// 30 days late, so a fixed date would make the scenario fail a month after it was written;
/// the bytes are fixed once, so a retry carries the same body.
pub fn report_body(id: Uuid, title: &str) -> anyhow::Result<Vec<u8>> {
    let occurred_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Ok(serde_json::to_vec(&json!({
        "id": id, "country": "SO", "category": "crime", "severity": 2,
        "title": title, "occurred_at": occurred_at
    }))?)
}
