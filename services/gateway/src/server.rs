//! The HTTP server under the router: it accepts connections, holds each to its limits and
//! serves HTTP/1.1 (with WebSocket upgrades) on it. `axum::serve` has no header timeout and
//! no connection cap, and 2,000 sockets that sent half a request line held the centre's
//! file descriptors until `accept` failed (issue 13); this loop is hyper's connection
//! builder with those limits around it.
//!
//! # Promises
//! - A new connection that has not sent a whole request head within
//!   [`ConnLimits::header_timeout`] is closed (slow loris), and counted in
//!   `vigil_gateway_header_timeouts_total`: `half_open_connections_are_closed_after_the_header_timeout`.
//! - A kept-alive connection is closed when its next request head is not complete within
//!   [`ConnLimits::keepalive_timeout`] after the previous answer (hyper's header-read timer,
//!   which runs from the end of one answer to the end of the next head, idle time included):
//!   `idle_keep_alive_connections_are_closed`.
//! - At most [`ConnLimits::max_connections`] connections at once, and
//!   [`ConnLimits::max_connections_per_address`] per client address (an IPv6 client is its
//!   /64), WebSockets included: the count travels with the socket through the upgrade. The
//!   excess is answered at once with `503` JSON (`too_many_connections`, `Connection: close`,
//!   `Retry-After`), closed, and counted in `vigil_gateway_connections_refused_total{reason}`:
//!   `connections_over_the_address_cap_are_refused_at_once`.
//! - Running out of file descriptors never stops the server: `accept` errors are logged (at
//!   most every few seconds) and retried after a short pause.
//! - A request answered before its body was read (a 401/403 from the access check, a 413
//!   over the body limit, a 408) does not cost the client its connection: the rest of the
//!   body is read and dropped first, up to [`DRAIN_MAX_BYTES`] and with at most
//!   [`DRAIN_IDLE`] between two pieces, and the connection stays open for the next request.
//!   A body larger than that, or one that stalls, or one the client has not sent yet
//!   (`Expect: 100-continue`) is answered with `Connection: close` and the connection is
//!   closed after the answer, so a client never sends its next request on a connection the
//!   gateway is about to drop: `a_refusal_before_the_body_keeps_the_connection_or_says_close`.
//!   (Closing with more than the bound still unread may reset the connection before the
//!   client reads the answer: TCP's rule, not the gateway's choice.)
//! - On shutdown it stops accepting, asks every connection to finish the request in flight
//!   and close, and waits for them (upgraded WebSockets close themselves, see `ws`).
//!
//! Only HTTP/1.1 is served: browsers speak HTTP/2 only over TLS, and cleartext HTTP/2's
//! preface detection has no timeout of its own (a client that sends two bytes of it and
//! stops would be held).

use std::collections::HashMap;
use std::hash::Hash;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;

/// The connection limits of a gateway. Defaults are for one centre on one machine; each can
/// be set in the environment (names beside the fields) or the config file's `[gateway]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// A new connection must deliver its first whole request head within this
    /// (`VIGIL_HTTP_HEADER_TIMEOUT_SECS`, default 5 s). A head is a few hundred bytes: one
    /// or two TCP segments even on a field officer's satellite link, where a lost segment
    /// costs a second or two; the field page queues and resends a report that was cut.
    pub header_timeout: Duration,
    /// After an answer, the next request head on a kept-alive connection must be complete
    /// within this, idle time included (`VIGIL_HTTP_KEEPALIVE_SECS`, default 30 s): long
    /// enough that a page's burst of requests and a screen's polling reuse the connection,
    /// short enough that idle browsers do not hold descriptors for minutes.
    pub keepalive_timeout: Duration,
    /// Connections open at once, WebSockets included (`VIGIL_MAX_CONNECTIONS`). Default: half
    /// the process's open-file limit, at most 10,000: the other half is for the store's
    /// files, NATS and the services when `vigil up` runs them in the same process.
    pub max_connections: usize,
    /// Connections open at once from one client address (`VIGIL_MAX_CONNECTIONS_PER_ADDRESS`,
    /// default 256). The wall screens and consoles of an operations centre, or the phones of a
    /// duty station, share one NAT address: ~40 browsers with their usual 6 connections each
    /// fit, while one address cannot take the whole table.
    pub max_connections_per_address: usize,
    /// WebSockets open at once from one client address (`VIGIL_MAX_WS_PER_ADDRESS`, default
    /// 128): one per wall screen or console behind a NAT, with room for reconnects.
    pub max_ws_per_address: usize,
    /// WebSockets open at once with one token (`VIGIL_MAX_WS_PER_TOKEN`, default 32): one
    /// wall-screen token is often shown on every screen of a wall; a leaked token cannot
    /// open thousands.
    pub max_ws_per_token: usize,
    /// A WebSocket frame that cannot be handed to the client's socket within this means the
    /// client stopped reading: it is dropped (`VIGIL_WS_SEND_TIMEOUT_SECS`, default 10 s).
    /// A screen that merely fell behind is resynced with a snapshot long before this.
    pub ws_send_timeout: Duration,
    /// The kernel's send buffer of each connection (`SO_SNDBUF`, `VIGIL_SEND_BUFFER_BYTES`);
    /// default none: the kernel sizes it (on Linux it grows to 4 MiB). A WebSocket client is
    /// seen to fall behind (and sent merged deltas, `ws`) only once its socket's buffer is
    /// full: a smaller buffer sees it sooner, and bounds the kernel memory a slow screen can
    /// pin (an idle one holds none: the buffer is filled only by frames in flight).
    pub send_buffer: Option<u32>,
    /// How long an ended broadcast stays on the live board after it ended
    /// (`VIGIL_BOARD_RETENTION_SECS`, default 24 h; 0 allowed: it leaves at the next event or
    /// tick). Not a connection limit, but the gateway's other memory bound: see
    /// `boards::Situation::with_retention`.
    pub board_retention: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        let fds = runtime::open_files::soft_limit().unwrap_or(1024);
        let half = usize::try_from(fds / 2).unwrap_or(usize::MAX);
        Self {
            header_timeout: Duration::from_secs(5),
            keepalive_timeout: Duration::from_secs(30),
            max_connections: half.clamp(64, 10_000),
            max_connections_per_address: 256,
            max_ws_per_address: 128,
            max_ws_per_token: 32,
            ws_send_timeout: Duration::from_secs(10),
            send_buffer: None,
            board_retention: boards::DEFAULT_RETENTION,
        }
    }
}

impl ConnLimits {
    /// The defaults with the environment's values over them.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::default().with_env()
    }

    /// These limits with any set in the environment over them; a value that is not a
    /// positive whole number is an error (a typo must not silently mean "default").
    pub fn with_env(mut self) -> anyhow::Result<Self> {
        let var = |name: &str| -> anyhow::Result<Option<u64>> {
            match std::env::var(name) {
                Ok(text) => match text.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Some(n)),
                    _ => anyhow::bail!("{name}={text:?} is not a positive whole number"),
                },
                Err(_) => Ok(None),
            }
        };
        let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(s) = var("VIGIL_HTTP_HEADER_TIMEOUT_SECS")? {
            self.header_timeout = Duration::from_secs(s);
        }
        if let Some(s) = var("VIGIL_HTTP_KEEPALIVE_SECS")? {
            self.keepalive_timeout = Duration::from_secs(s);
        }
        if let Some(n) = var("VIGIL_MAX_CONNECTIONS")? {
            self.max_connections = count(n);
        }
        if let Some(n) = var("VIGIL_MAX_CONNECTIONS_PER_ADDRESS")? {
            self.max_connections_per_address = count(n);
        }
        if let Some(n) = var("VIGIL_MAX_WS_PER_ADDRESS")? {
            self.max_ws_per_address = count(n);
        }
        if let Some(n) = var("VIGIL_MAX_WS_PER_TOKEN")? {
            self.max_ws_per_token = count(n);
        }
        if let Some(s) = var("VIGIL_WS_SEND_TIMEOUT_SECS")? {
            self.ws_send_timeout = Duration::from_secs(s);
        }
        if let Some(n) = var("VIGIL_SEND_BUFFER_BYTES")? {
            self.send_buffer = Some(send_buffer_bytes(n)?);
        }
        if let Ok(text) = std::env::var("VIGIL_BOARD_RETENTION_SECS") {
            self.board_retention = retention_secs("VIGIL_BOARD_RETENTION_SECS", &text)?;
        }
        Ok(self)
    }
}

/// A retention in whole seconds, 0 or more, as `name` gives it; anything else (a unit, a
/// sign, a fraction, nothing) is an error naming `name`: a typo must not mean "default".
pub fn retention_secs(name: &str, text: &str) -> anyhow::Result<Duration> {
    match text.trim().parse::<u64>() {
        Ok(s) => Ok(Duration::from_secs(s)),
        Err(_) => anyhow::bail!("{name}={text:?} is not a whole number of seconds (0 or more)"),
    }
}

/// A send buffer size (`SO_SNDBUF`) checked: at least 4 KiB (one page; Linux doubles what
/// it is given and keeps a floor anyway) and at most 64 MiB.
pub fn send_buffer_bytes(n: u64) -> anyhow::Result<u32> {
    match u32::try_from(n) {
        Ok(b) if (4096..=64 << 20).contains(&b) => Ok(b),
        _ => anyhow::bail!("a send buffer of {n} bytes is outside 4096 to 67108864"),
    }
}

/// What a per-address limit counts: the IP address, except that an IPv6 client is its /64
/// (one host commonly holds a whole /64 and could otherwise spread over 2^64 "addresses"),
/// and an IPv4-mapped IPv6 address is the IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A counted resource with at most `limit` in use per key: connections per address,
/// WebSockets per token. A [`Slot`] is one in use, given back when dropped.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash> {
    /// In use per key; a key whose count falls to 0 is removed, so the map holds only keys
    /// in use. A std mutex: held for one map operation, never across an await.
    taken: Arc<Mutex<HashMap<K, usize>>>,
    limit: usize,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    /// At most `limit` per key.
    pub fn new(limit: usize) -> Self {
        Self {
            taken: Arc::default(),
            limit,
        }
    }

    /// One slot for `key`, or `None` when `key` has `limit` in use.
    pub fn try_take(&self, key: K) -> Option<Slot<K>> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        let n = taken.entry(key.clone()).or_insert(0);
        if *n >= self.limit {
            if *n == 0 {
                taken.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(Slot {
            taken: self.taken.clone(),
            key,
        })
    }

    /// How many `key` has in use.
    pub fn in_use(&self, key: &K) -> usize {
        let taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        taken.get(key).copied().unwrap_or(0)
    }
}

/// One slot of [`Slots`], given back on drop.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash> {
    taken: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash> Slot<K> {
    /// The key it counts against.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Eq + Hash> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = taken.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                taken.remove(&self.key);
            }
        }
    }
}

/// Why a connection was refused at the door.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    fn reason(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerAddress => "per_address",
        }
    }
}

/// The open connections, in all and per client address.
struct ConnTable {
    total: Slots<()>,
    per_address: Slots<IpAddr>,
}

/// An admitted connection's place in the table; leaving it (on drop) frees the place.
struct Admission {
    _total: Slot<()>,
    _address: Slot<IpAddr>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        metrics::gauge!("vigil_gateway_http_connections").decrement(1.0);
    }
}

impl ConnTable {
    fn admit(&self, peer: IpAddr) -> Result<Admission, Refusal> {
        let total = self.total.try_take(()).ok_or(Refusal::Total)?;
        let address = self
            .per_address
            .try_take(client_key(peer))
            .ok_or(Refusal::PerAddress)?;
        metrics::gauge!("vigil_gateway_http_connections").increment(1.0);
        Ok(Admission {
            _total: total,
            _address: address,
        })
    }
}

/// A socket that carries its [`Admission`]: after a WebSocket upgrade hyper hands the socket
/// to the WebSocket task, and the place in the table goes with it until the socket closes.
struct Counted {
    io: TcpStream,
    _admission: Admission,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The answer to a connection over a cap: complete, so it can be written in one go without
/// reading the request.
fn refusal_answer(refusal: Refusal) -> Vec<u8> {
    let message = match refusal {
        Refusal::Total => "the gateway has as many connections open as it takes; retry shortly",
        Refusal::PerAddress => {
            "your address has as many connections open as one address may; close some or retry shortly"
        }
    };
    let body = serde_json::json!({"error": {"code": "too_many_connections", "message": message}})
        .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 5\r\nCache-Control: no-store\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers 503 and closes, without waiting on the client: never blocks, never holds the
/// socket. Whatever the client already sent is read first (without waiting), so closing
/// does not reset the connection before the answer is read.
fn refuse(stream: TcpStream, refusal: Refusal) {
    metrics::counter!("vigil_gateway_connections_refused_total", "reason" => refusal.reason())
        .increment(1);
    let mut scratch = [0u8; 4096];
    let _ = stream.try_read(&mut scratch);
    let _ = stream.try_write(&refusal_answer(refusal));
}

/// Logs a recurring condition at most once per [`QUIET`], with how often it happened.
struct Throttled {
    last: Option<Instant>,
    since: u64,
}

/// The shortest time between two log lines about refused connections or accept errors.
const QUIET: Duration = Duration::from_secs(10);

impl Throttled {
    fn new() -> Self {
        Self {
            last: None,
            since: 0,
        }
    }

    /// Counts one occurrence; `Some(count)` when it is time to log (count since last time).
    fn tick(&mut self) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|t| t.elapsed() < QUIET) {
            return None;
        }
        self.last = Some(Instant::now());
        Some(std::mem::take(&mut self.since))
    }
}

/// Pending connections the kernel may queue for `accept` (capped by `net.core.somaxconn`,
/// 4,096 on current Linux). Tokio's default of 1,024 overflowed when thousands of half-open
/// connections were closed and reopened at once (`ops/chaos slowloris`): the kernel then
/// drops new SYNs, and a field officer's connection waits a whole second for its retry.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds `addr` with [`LISTEN_BACKLOG`] (and `SO_REUSEADDR`, as `TcpListener::bind` does, so
/// a restart does not wait for old connections' TIME_WAIT), and `send_buffer` as the send
/// buffer of every connection it accepts (they inherit it; see [`ConnLimits::send_buffer`]).
pub fn listen(addr: SocketAddr, send_buffer: Option<u32>) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `listener` until `shutdown`, within `limits`; returns once every
/// connection has finished.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let table = Arc::new(ConnTable {
        total: Slots::new(limits.max_connections),
        per_address: Slots::new(limits.max_connections_per_address),
    });
    let tracker = TaskTracker::new();
    let mut refused_log = Throttled::new();
    let mut accept_log = Throttled::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                ) {
                    continue;
                }
                // Most likely out of file descriptors: connections will close (their
                // timeouts see to it); wait a little rather than spin.
                metrics::counter!("vigil_gateway_accept_errors_total").increment(1);
                if let Some(n) = accept_log.tick() {
                    tracing::error!(error = %e, errors = n, "cannot accept connections");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match table.admit(peer.ip()) {
            Ok(admission) => {
                let io = Counted {
                    io: stream,
                    _admission: admission,
                };
                tracker.spawn(connection(
                    io,
                    peer,
                    app.clone(),
                    limits.clone(),
                    shutdown.clone(),
                ));
            }
            Err(refusal) => {
                refuse(stream, refusal);
                if let Some(n) = refused_log.tick() {
                    tracing::warn!(
                        reason = refusal.reason(),
                        %peer,
                        refused = n,
                        max_connections = limits.max_connections,
                        max_per_address = limits.max_connections_per_address,
                        "refusing connections over the cap"
                    );
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// The most of an unread request body drained after an early answer so that the connection
/// can be kept (a few requests' worth of the 64 KiB limit: a client that sends 3 MB by
/// mistake gets its 413 and keeps its connection; beyond this, reading is the attacker's
/// bandwidth spent on our time, and the connection is closed instead).
pub const DRAIN_MAX_BYTES: usize = 8 * 1024 * 1024;
/// While draining, the longest wait for the next piece of the body; a client that stalls is
/// answered with `Connection: close` instead.
pub const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// The longest a drain may take in all.
pub const DRAIN_TOTAL: Duration = Duration::from_secs(10);

/// A request body that comes back to the connection when the router drops it unfinished,
/// so the connection can drain it (hyper alone gives up on it and closes the socket after
/// the answer, without `Connection: close`: the client's next request then finds it dead).
struct Returned {
    inner: Option<Incoming>,
    back: Option<tokio::sync::oneshot::Sender<Incoming>>,
}

impl Body for Returned {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        if let (Some(inner), Some(back)) = (self.inner.take(), self.back.take())
            && !inner.is_end_stream()
        {
            let _ = back.send(inner);
        }
    }
}

/// Reads and drops the rest of `body`: `true` when it ended within the bounds.
async fn drain(mut body: Incoming) -> bool {
    let mut read = 0usize;
    let all = async {
        loop {
            let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
            match tokio::time::timeout(DRAIN_IDLE, next).await {
                Ok(None) => return true,
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        read = read.saturating_add(data.len());
                        if read > DRAIN_MAX_BYTES {
                            return false;
                        }
                    }
                }
                Ok(Some(Err(_))) | Err(_) => return false,
            }
        }
    };
    tokio::time::timeout(DRAIN_TOTAL, all)
        .await
        .unwrap_or(false)
}

/// Serves one connection: HTTP/1.1 with upgrades, the header timeout on its first request,
/// hyper's header-read timer (the keep-alive limit) on the later ones.
async fn connection(
    io: Counted,
    peer: SocketAddr,
    app: Router,
    limits: ConnLimits,
    shutdown: CancellationToken,
) {
    // Set when the first request head is complete (the router is called with it).
    let served = Arc::new(AtomicBool::new(false));
    let seen = served.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        seen.store(true, Ordering::Release);
        // Handlers read the client's address through `ConnectInfo`, as under axum::serve.
        req.extensions_mut().insert(ConnectInfo(peer));
        // A client that waits for `100 Continue` has not sent its body: nothing to drain.
        let expects = req.headers().contains_key(hyper::header::EXPECT);
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        let req = req.map(|inner| Returned {
            inner: Some(inner),
            back: Some(tx),
        });
        let mut app = app.clone();
        async move {
            let mut answer = app.call(req).await?;
            if let Ok(rest) = rx.try_recv() {
                // Answered before the body was read: read it now so the connection can
                // carry the next request, or say that it will not.
                let kept = !expects && drain(rest).await;
                if !kept {
                    metrics::counter!("vigil_gateway_undrained_bodies_total").increment(1);
                    answer.headers_mut().insert(
                        hyper::header::CONNECTION,
                        hyper::header::HeaderValue::from_static("close"),
                    );
                }
            }
            Ok::<_, std::convert::Infallible>(answer)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.keepalive_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    tokio::pin!(conn);
    let first_head = tokio::time::sleep(limits.header_timeout);
    tokio::pin!(first_head);
    let mut watching = true;
    let mut stopping = false;
    loop {
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    if e.is_timeout() {
                        metrics::counter!("vigil_gateway_header_timeouts_total").increment(1);
                    }
                    tracing::debug!(error = %e, %peer, "connection ended");
                }
                return;
            }
            _ = &mut first_head, if watching => {
                watching = false;
                if !served.load(Ordering::Acquire) {
                    // Dropping the connection closes the socket.
                    metrics::counter!("vigil_gateway_header_timeouts_total").increment(1);
                    return;
                }
            }
            _ = shutdown.cancelled(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_count_per_key_and_come_back_on_drop() {
        let slots = Slots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let _a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none());
        let _b = slots.try_take("b").unwrap();
        assert_eq!(slots.in_use(&"a"), 2);
        drop(a1);
        assert_eq!(slots.in_use(&"a"), 1);
        assert!(slots.try_take("a").is_some());
        let none: Slots<&str> = Slots::new(0);
        assert!(none.try_take("x").is_none());
        assert_eq!(none.in_use(&"x"), 0);
    }

    #[test]
    fn a_retention_and_a_send_buffer_are_checked() {
        let name = "VIGIL_BOARD_RETENTION_SECS";
        assert_eq!(
            retention_secs(name, " 86400 ").unwrap(),
            Duration::from_secs(86400)
        );
        assert_eq!(retention_secs(name, "0").unwrap(), Duration::ZERO);
        for bad in ["", "24h", "-1", "1.5", "ten"] {
            let e = retention_secs(name, bad).unwrap_err().to_string();
            assert!(
                e.contains(name) && e.contains("whole number"),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(send_buffer_bytes(16 * 1024).unwrap(), 16 * 1024);
        for bad in [0, 4095, (64 << 20) + 1, u64::MAX] {
            assert!(send_buffer_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(client_key(v4), v4);
    }

    #[test]
    fn the_refusal_is_a_whole_json_answer() {
        let text = String::from_utf8(refusal_answer(Refusal::PerAddress)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("Connection: close"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
