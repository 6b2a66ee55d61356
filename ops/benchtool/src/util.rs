//! Small helpers shared by the benchmarks that run against a `vigil up`: an HTTP GET (reqwest),
//! waiting for `/readyz`, the NATS credentials of a data dir, the board frames' heads, process
//! memory, CPU time and file limits from `/proc`, wall-clock time, and the servers this
//! executable starts of itself (the intake peer, the fan-out baseline).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// A subcommand of this executable run as a server (stdin and stdout piped, killed when
/// dropped), whose first line is `listening <host:port>`.
pub struct OwnServer {
    /// The process.
    pub child: Child,
    /// Its stdout after the first line.
    pub stdout: Lines<BufReader<ChildStdout>>,
    /// `host:port` it listens on.
    pub addr: String,
}

impl OwnServer {
    /// Starts `vigil-bench` with the arguments `args` adds and waits at most `within` for it
    /// to listen; `what` names it in the errors (e.g. "the peer").
    pub async fn start(
        args: impl FnOnce(&mut Command),
        what: &str,
        within: Duration,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding vigil-bench's own path")?;
        let mut command = Command::new(exe);
        args(&mut command);
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        let stdout = child
            .stdout
            .take()
            .with_context(|| format!("{what}: no stdout"))?;
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(within, stdout.next_line())
            .await
            .with_context(|| format!("{what} did not start within {} s", within.as_secs()))??
            .with_context(|| format!("{what} exited at start"))?;
        let addr = line
            .strip_prefix("listening ")
            .with_context(|| format!("unexpected greeting from {what}: {line:?}"))?
            .to_owned();
        Ok(Self {
            child,
            stdout,
            addr,
        })
    }

    /// Its PID.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn unix_nanos() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// The one HTTP client of the bench's small requests (`/readyz`, `/metrics`, the replay's
/// probes): no proxy (loopback), and no idle connection kept, so a request leaves no
/// connection open on the server it reads.
pub fn client() -> anyhow::Result<&'static reqwest::Client> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .context("building the HTTP client")?;
    Ok(CLIENT.get_or_init(|| c))
}

/// `GET url` within `timeout`; returns the status and the body.
pub async fn http_get(url: &str, timeout: Duration) -> anyhow::Result<(u16, String)> {
    let answer = client()?
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = answer.status().as_u16();
    let body = answer
        .text()
        .await
        .with_context(|| format!("GET {url}: reading the body"))?;
    Ok((status, body))
}

/// A `VmXxx:` line of `/proc/<pid>/status`, in bytes.
pub fn proc_status_bytes(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(key).and_then(|r| r.strip_prefix(':')) {
            let kb: u64 = rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("{path}: bad {key} line {line:?}"))?;
            return Ok(kb * 1024);
        }
    }
    bail!("{path} has no {key} line")
}

/// Resident memory of `pid` (`VmRSS`), bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    proc_status_bytes(pid, "VmRSS")
}

/// The soft limit on open files of `pid` (`self` for this process), if readable.
pub fn open_file_limit(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Open file descriptors of `pid` right now, if readable.
pub fn open_files(pid: &str) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// CPU time (user + system) `pid` has used so far, seconds (`/proc/<pid>/stat`; Linux's
/// clock tick for it is fixed at 1/100 s).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields are counted after its closing parenthesis.
    let after = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3 of the line, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU time (user + system) of each thread of `pid` so far, seconds, added up by thread name
/// (`/proc/<pid>/task/*/stat`; names are cut at 15 bytes by the kernel).
pub fn thread_cpu(pid: u32) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (text.find('('), text.rfind(')')) else {
            continue;
        };
        let name = text.get(open + 1..close).unwrap_or("?").to_owned();
        let fields: Vec<&str> = text
            .get(close + 1..)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        if let (Some(u), Some(s)) = (ticks(11), ticks(12)) {
            *out.entry(name).or_insert(0.0) += (u + s) / 100.0;
        }
    }
    out
}

/// The machine's CPU time so far from `/proc/stat`: (busy, total) in clock ticks over every
/// core (busy = everything but idle and iowait).
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// Logical CPUs of this machine.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Waits (up to 120 s) until `GET <http_url>/readyz` answers 200.
pub async fn wait_ready(http_url: &str) -> anyhow::Result<()> {
    let url = format!("{}/readyz", http_url.trim_end_matches('/'));
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match http_get(&url, Duration::from_secs(5)).await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) if Instant::now() >= deadline => {
                bail!("{url} still answers {status} after 120 s: {body}")
            }
            Err(e) if Instant::now() >= deadline => return Err(e),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The NATS user and password to use: `user` and `password` when both are given, else the
/// `cli` user of `<data_dir>/secrets/nats-users.json` (`{"users": {"cli": "<password>", …}}`),
/// else none (an open server).
pub fn nats_credentials(
    user: Option<&str>,
    password: Option<&str>,
    data_dir: Option<&Path>,
) -> anyhow::Result<Option<(String, String)>> {
    if let (Some(u), Some(p)) = (user, password) {
        return Ok(Some((u.to_owned(), p.to_owned())));
    }
    let Some(dir) = data_dir else {
        return Ok(None);
    };
    let path = dir.join("secrets").join("nats-users.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: serde_json::Value =
        serde_json::from_slice(&bytes).with_context(|| format!("reading {}", path.display()))?;
    let password = file["users"]["cli"]
        .as_str()
        .with_context(|| format!("{} has no `cli` user", path.display()))?;
    Ok(Some(("cli".to_owned(), password.to_owned())))
}

/// How a benchmark reaches the NATS server of the `vigil up` under test (flattened into the
/// flags of `fanout`, `intake`, `intake-peer` and `clearances`).
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS URL of the `vigil up` under test.
    #[arg(long, default_value = "nats://127.0.0.1:4290")]
    pub nats_url: String,
    /// Data directory of the `vigil up` under test: when it holds `secrets/nats-users.json`,
    /// the bench connects to NATS as its `cli` user (the store refuses anonymous clients); the
    /// HTTP benches read `nats/nats-server.pid` there for the CPU figures.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// NATS user (instead of --data-dir).
    #[arg(long, env = "VIGIL_BENCH_NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password of --nats-user.
    #[arg(long, env = "VIGIL_BENCH_NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
}

impl NatsArgs {
    /// Connects with these credentials (see [`nats_credentials`], [`nats_connect`]).
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let credentials = nats_credentials(
            self.nats_user.as_deref(),
            self.nats_password.as_deref(),
            self.data_dir.as_deref(),
        )?;
        nats_connect(&self.nats_url, name, credentials).await
    }

    /// The same flags for a child process (the password through its environment).
    pub fn pass_to(&self, command: &mut tokio::process::Command) {
        command.arg("--nats-url").arg(&self.nats_url);
        if let Some(dir) = &self.data_dir {
            command.arg("--data-dir").arg(dir);
        }
        if let (Some(u), Some(p)) = (&self.nats_user, &self.nats_password) {
            command
                .env("VIGIL_BENCH_NATS_USER", u)
                .env("VIGIL_BENCH_NATS_PASSWORD", p);
        }
    }

    /// The PID of the nats-server `vigil up` started (`<data dir>/nats/nats-server.pid`).
    pub fn nats_server_pid(&self) -> Option<u32> {
        let dir = self.data_dir.as_ref()?;
        std::fs::read_to_string(dir.join("nats").join("nats-server.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    }
}

/// Connects to NATS as the operator tools do (`runtime::nats::connect`, one attempt): with
/// `credentials`, replies come on the user's own inbox prefix (`_INBOX_<user>`), the only one
/// the server of `vigil up` lets that user read. Requests time out after 10 s.
pub async fn nats_connect(
    url: &str,
    name: &str,
    credentials: Option<(String, String)>,
) -> anyhow::Result<async_nats::Client> {
    runtime::nats::connect(url, name, credentials, runtime::nats::Mode::Tool)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))
}

/// Groups an error message into a short kind (the OS error when there is one).
pub fn error_kind(msg: &str) -> String {
    if let Some(i) = msg.find("(os error") {
        let start = msg
            .get(..i)
            .and_then(|s| s.rfind(": "))
            .map_or(0, |j| j + 2);
        return msg.get(start..).unwrap_or(msg).trim().to_owned();
    }
    msg.chars().take(60).collect()
}

/// The WebSocket settings of the bench's board clients: small buffers (the fan-out bench holds
/// up to 10,000 of them; snapshots grow them), large messages allowed.
pub fn ws_client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(16 << 20))
        .max_frame_size(Some(16 << 20))
}

/// The fields of a board frame the clients need.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    /// `snapshot`, `delta`, `heartbeat`, `error`.
    pub kind: &'a str,
    /// The board position.
    pub position: Option<u64>,
    /// RFC 3339 time of the event (deltas and snapshots).
    pub as_of: Option<&'a str>,
}

#[derive(Deserialize)]
struct HeadDe<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    position: Option<u64>,
    #[serde(default, borrow)]
    as_of: Option<&'a str>,
}

/// Reads the head of a frame. serde_json writes keys sorted (`as_of`, `board`, `data|ops`,
/// `position`, `type`, `view`), so the fast path reads `as_of` at the start and `position`
/// and `type` from the end without walking the ops; anything else goes through serde.
pub fn head(text: &str) -> Option<Head<'_>> {
    fast_head(text).or_else(|| {
        serde_json::from_str::<HeadDe<'_>>(text).ok().map(|h| Head {
            kind: h.kind,
            position: h.position,
            as_of: h.as_of,
        })
    })
}

fn fast_head(t: &str) -> Option<Head<'_>> {
    let rest = t.strip_prefix("{\"as_of\":")?;
    let as_of = if rest.starts_with("null") {
        None
    } else {
        let r = rest.strip_prefix('"')?;
        Some(r.get(..r.find('"')?)?)
    };
    let ti = t.rfind("\"type\":\"")?;
    let r = t.get(ti + 8..)?;
    let kind = r.get(..r.find('"')?)?;
    let pi = t.rfind("\"position\":")?;
    let r = t.get(pi + 11..)?;
    let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
    let position = r.get(..end)?.parse().ok();
    Some(Head {
        kind,
        position,
        as_of,
    })
}

/// Milliseconds with one decimal, `-` for `NaN`.
pub fn fmt_ms(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else {
        format!("{x:.1}")
    }
}

/// `PASS` or `MISS`.
pub fn verdict(pass: bool) -> &'static str {
    if pass { "PASS" } else { "MISS" }
}

/// Bytes as `12.3 KiB` / `4.5 MiB`.
pub fn bytes_text(b: f64) -> String {
    if b.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_heads_are_read_fast_and_slow() {
        let d = r#"{"as_of":"2026-11-27T03:29:25.123456789Z","board":"situation","ops":[{"op":"set","path":["x"],"value":{"type":"x","position":3}}],"position":42,"type":"delta","view":"wall_screen"}"#;
        assert_eq!(
            fast_head(d),
            Some(Head {
                kind: "delta",
                position: Some(42),
                as_of: Some("2026-11-27T03:29:25.123456789Z")
            })
        );
        let hb = r#"{"at":"2026-11-27T03:29:25Z","position":7,"type":"heartbeat"}"#;
        assert_eq!(fast_head(hb), None);
        assert_eq!(
            head(hb),
            Some(Head {
                kind: "heartbeat",
                position: Some(7),
                as_of: None
            })
        );
        let s = r#"{"as_of":null,"board":"situation","data":{},"position":0,"type":"snapshot","view":"wall_screen"}"#;
        assert_eq!(
            head(s).map(|h| (h.kind, h.position, h.as_of)),
            Some(("snapshot", Some(0), None))
        );
    }

    #[test]
    fn os_errors_are_grouped() {
        assert_eq!(
            error_kind("IO error: Too many open files (os error 24)"),
            "Too many open files (os error 24)"
        );
    }
}
