//! Starts the real parts for tests: `nats-server` processes on free loopback ports, each with
//! its own temp directory, killed on `Drop`; Vigil's processes ([`centre`]); the store and a
//! service as tasks of the test ([`inproc`]). Nothing here is a mock.
//!
//! The server binary is the one `runtime::nats_server::binary` picks for every part of Vigil:
//! `$VIGIL_NATS_SERVER`, else the pinned install under the target directory (`ops/test`
//! installs it when the system's is older than 2.11), else `nats-server` on `PATH`, else
//! `/usr/sbin/nats-server`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

pub mod aggregate;
pub mod browser;
pub mod centre;
pub mod cluster;
pub mod inproc;

pub use cluster::NatsCluster;

/// Copies the directory tree `from` into `to` (created), file by file: for tests and tools
/// that damage or inspect a copy of a stopped store. Modes are copied too (a store's
/// directories are 0700, and a writer refuses a store open to other users).
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    std::fs::set_permissions(to, std::fs::metadata(from)?.permissions())?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| {
                std::io::Error::new(e.kind(), format!("copying {}: {e}", entry.path().display()))
            })?;
        }
    }
    Ok(())
}

/// The actor of an aggregate's unit tests: user `<role>.user` (the login `decide` records
/// as who did it), limited to the country `scope` (a field officer's), speaking for no agency.
pub fn actor(role: events::command::Role, scope: Option<&str>) -> events::command::Actor {
    events::command::Actor {
        user: format!("{}.user", role.as_str()),
        role,
        scope: scope.map(|s| {
            events::validate::Country::parse(s)
                .unwrap_or_else(|e| panic!("test country {s:?}: {e}"))
        }),
        agency: None,
    }
}

/// An hour ago, as RFC 3339: an `occurred_at` the incidents service accepts on any day the
/// tests run (it refuses reports older than 30 days, so a fixed date in a test is a time bomb).
pub fn recent() -> String {
    let at = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("formatting the current time: {e}"))
}

/// Lowest port [`free_port`] hands out.
const FREE_PORTS_FROM: u16 = 20_000;
/// How many ports [`free_port`] hands out from; they end below Linux's ephemeral range
/// (32768–60999), with room above for a few consecutive ports per pick.
const FREE_PORTS: u16 = 12_000;

/// Finds a free loopback TCP port for a server a test starts.
///
/// Not the OS's pick (`bind` to port 0): that comes from the ephemeral range, which every
/// outgoing connection of every test running in parallel also draws from, so a port found
/// free could be taken by some client's connection before the server binds it (a `vigil up`
/// then exits "address in use"). These ports sit below that range, where only explicit binds
/// land; each process walks them from a random start, so parallel test processes rarely
/// meet, and a port is handed out only if it binds now.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let start = || {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        ((nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % u32::from(FREE_PORTS)) as u16
    };
    let _ = NEXT.compare_exchange(u16::MAX, start(), Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..FREE_PORTS {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % FREE_PORTS;
        let port = FREE_PORTS_FROM + offset;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FREE_PORTS_FROM} and {}",
        FREE_PORTS_FROM + FREE_PORTS
    )
}

/// Path of the nats-server binary (see `runtime::nats_server`).
pub fn nats_server_bin() -> PathBuf {
    runtime::nats_server::binary()
}

/// Waits until something accepts TCP connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Whether a NATS server answers on `port`: it greets every client with `INFO`. Checking
/// the greeting (not just the TCP connect) rules out a loopback self-connect, where a client
/// whose ephemeral port equals the target port "connects" to itself.
pub fn speaks_nats(port: u16) -> bool {
    use std::io::Read;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).is_ok() && &buf == b"INFO"
}

/// A real nats-server on a free loopback port.
pub struct NatsServer {
    port: u16,
    jetstream: bool,
    dir: TempDir,
    child: Option<Child>,
    started_once: bool,
}

impl NatsServer {
    /// Starts a core-NATS server.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Starts a server with JetStream (file storage in its temp dir).
    pub fn start_with_jetstream() -> Self {
        Self::launch(true)
    }

    fn launch(jetstream: bool) -> Self {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let mut server = Self {
            port: free_port(),
            jetstream,
            dir,
            child: None,
            started_once: false,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        // A port picked as free can be taken before the server binds it; pick another then
        // (only before the first start: a restart must keep its port for clients to return).
        for attempt in 0..5 {
            if self.try_spawn() {
                return;
            }
            if self.child.is_some() {
                self.kill();
            }
            if attempt < 4 && !self.started_once {
                self.port = free_port();
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        panic!(
            "nats-server did not start on port {} after 5 attempts",
            self.port
        );
    }

    fn try_spawn(&mut self) -> bool {
        let mut cmd = Command::new(nats_server_bin());
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.jetstream {
            cmd.arg("-js").arg("-sd").arg(self.dir.path());
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; install it with `apt-get install -y nats-server`",
                nats_server_bin().display()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false; // exited: most likely the port was taken
            }
            if speaks_nats(self.port) {
                self.started_once = true;
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connects a plain client.
    pub async fn connect(&self) -> async_nats::Client {
        async_nats::connect(self.url())
            .await
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url()))
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A child process killed on `Drop`, for tests that spawn Vigil's own binary.
pub struct ChildGuard(pub Option<Child>);

impl ChildGuard {
    /// SIGKILL, like a power cut for the process; waits until it is gone.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id, while running.
    pub fn id(&self) -> Option<u32> {
        self.0.as_ref().map(Child::id)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Polls `f` every 20 ms until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.0 exchange over a fresh TCP connection (no client library between the test
/// and the server: what is sent is exactly what the test wrote).
pub mod http {
    use std::net::SocketAddr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An answer: status, the head (status line and headers) and the body.
    #[derive(Debug, Clone)]
    pub struct Answer {
        /// HTTP status; 0 if the answer was not HTTP.
        pub status: u16,
        /// Status line and headers.
        pub head: String,
        /// The body as text.
        pub body: String,
    }

    impl Answer {
        /// The body as JSON (`Null` if it is not JSON).
        pub fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
        }

        /// A header's value (case-insensitive name).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim())
            })
        }
    }

    /// Sends one request; `headers` are added as given, `Content-Length` when there is a body.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> std::io::Result<Answer> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            head.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).await?;
        if let Some(b) = body {
            // The server may answer (413) and close before reading all of a large body.
            let _ = s.write_all(b).await;
        }
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let raw = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    /// A JSON request with a bearer token (either may be absent).
    pub async fn json(
        addr: SocketAddr,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> std::io::Result<Answer> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let bytes = body.map(|b| b.to_string().into_bytes());
        if bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        request(addr, method, path, &headers, bytes.as_deref()).await
    }

    /// Every item of the list at `path` (a list route of the API with its filters, e.g.
    /// `/api/v1/events?limit=500`), following each page's `next` cursor until it is `null`.
    /// An answer that is not a 200 page (`{"items", "position", "next"}`) is an error that
    /// quotes it.
    pub async fn all_items(
        addr: SocketAddr,
        path: &str,
        token: &str,
    ) -> std::io::Result<Vec<serde_json::Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                None => path.to_owned(),
                Some(c) => {
                    let sep = if path.contains('?') { '&' } else { '?' };
                    format!("{path}{sep}cursor={c}")
                }
            };
            let a = json(addr, "GET", &url, Some(token), None).await?;
            let page = a.json();
            let (Some(got), Some(next)) = (page["items"].as_array(), page.get("next")) else {
                return Err(std::io::Error::other(format!(
                    "GET {url} is not a page: {} {}",
                    a.status, a.body
                )));
            };
            if a.status != 200 || !page["position"].is_u64() {
                return Err(std::io::Error::other(format!(
                    "GET {url}: {} {}",
                    a.status, a.body
                )));
            }
            items.extend(got.iter().cloned());
            match next.as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(items),
            }
        }
    }
}
