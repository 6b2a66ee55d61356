//! One test centre for the integration tests: the real parts of Vigil started as an operator
//! starts them, and the HTTP helpers the tests drive them with.
//!
//! Two shapes, chosen by the builder:
//! - [`Centre::up`]: `vigil up` (it starts its own nats-server, the store, every service and
//!   the gateway), stopped with SIGTERM like an operator's Ctrl-C;
//! - [`Centre::parts`]: a [`NatsServer`] of its own, `vigil store`, the named services and
//!   `vigil gateway`, each its own process that a test can kill and start again.
//!
//! The `vigil` binary is given by the test (`env!("CARGO_BIN_EXE_vigil")`), and so is the way
//! tokens are signed ([`Issuer`]): testkit depends on neither the binary's crate nor the
//! gateway. [`Builder::start`] returns once the gateway answers `/readyz` and every probe
//! (one GET per started service) answers 200, so the first request of a test is not refused
//! as "not running". Everything started is stopped on `Drop`, also when a test fails.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::http::Answer;
use crate::{ChildGuard, NatsServer, free_port};

/// How long the start (and [`Centre::ready`]) may take before the test fails.
pub const READY: Duration = Duration::from_secs(30);

/// A token the centre issues at the start, reachable as `centre["<name>"]`.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    /// The name the test reads it by.
    pub name: String,
    /// Who the token says did it (`sub`).
    pub user: String,
    /// The role, as the API spells it (`duty_officer`, `field_officer`, …).
    pub role: String,
    /// The country a field officer is limited to.
    pub scope: Option<String>,
    /// The agency the token speaks for.
    pub agency: Option<String>,
}

/// Signs a token for `spec` with the signing key in the data directory (the test passes the
/// gateway's own issuing code, so the tokens are the real ones).
pub type Issuer = Arc<dyn Fn(&Path, &TokenSpec) -> String + Send + Sync>;

enum Shape {
    Up,
    Parts { services: Vec<String> },
}

/// What to start; see [`Centre::up`] and [`Centre::parts`].
pub struct Builder {
    bin: PathBuf,
    shape: Shape,
    dir: Option<PathBuf>,
    env: Vec<(String, String)>,
    imports: Vec<PathBuf>,
    tokens: Vec<TokenSpec>,
    issuer: Option<Issuer>,
    probes: Vec<String>,
}

impl Builder {
    /// Keeps the data in `dir` (made by the test, kept after the centre stops) instead of a
    /// fresh temp directory.
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.dir = Some(dir.to_owned());
        self
    }

    /// An environment variable for every `vigil` process the centre starts (limits, keys).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Reference data (JSON Lines) loaded with `vigil import` once the centre runs.
    pub fn import(mut self, file: impl Into<PathBuf>) -> Self {
        self.imports.push(file.into());
        self
    }

    /// How tokens are signed; needed by [`Builder::token`].
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// A token `name` for `user` in `role` (optionally limited to country `scope`). The first
    /// token is the one the readiness probes send.
    pub fn token(mut self, name: &str, user: &str, role: &str, scope: Option<&str>) -> Self {
        self.tokens.push(TokenSpec {
            name: name.to_owned(),
            user: user.to_owned(),
            role: role.to_owned(),
            scope: scope.map(Into::into),
            agency: None,
        });
        self
    }

    /// A GET `path` that must answer 200 before the centre counts as ready: one per service
    /// the test talks to (`/api/v1/incidents`, `/api/v1/orders`, …). In [`Centre::parts`]
    /// use [`Builder::service`], which adds the probe with the service.
    pub fn probe(mut self, path: &str) -> Self {
        self.probes.push(path.to_owned());
        self
    }

    /// In [`Centre::parts`]: also start `vigil <name>`, ready once GET `probe` answers 200
    /// (`None` for a service with no read the tests can wait on, e.g. `levels` before any
    /// area is imported).
    pub fn service(mut self, name: &str, probe: Option<&str>) -> Self {
        if let Shape::Parts { services } = &mut self.shape {
            services.push(name.to_owned());
        }
        self.probes.extend(probe.map(str::to_owned));
        self
    }

    /// Starts everything, issues the tokens, imports the reference data and waits until the
    /// gateway and every probe answer.
    pub async fn start(self) -> Centre {
        let temp = match &self.dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().unwrap_or_else(|e| panic!("no temp dir: {e}"))),
        };
        let dir = match (&self.dir, &temp) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.path().to_owned(),
            (None, None) => unreachable!("a temp dir when none is given"),
        };
        let http = free_port();
        let mut c = Centre {
            bin: self.bin,
            _temp: temp,
            dir,
            nats_url: String::new(),
            http,
            metrics: free_port(),
            addr: SocketAddr::from(([127, 0, 0, 1], http)),
            env: self.env,
            up: None,
            banner: String::new(),
            nats: None,
            processes: BTreeMap::new(),
            tokens: Vec::new(),
            probes: self.probes,
        };
        let issue = |c: &mut Centre| {
            if self.tokens.is_empty() {
                return;
            }
            let issuer = self
                .issuer
                .as_ref()
                .unwrap_or_else(|| panic!("Builder::issuer before Builder::token"));
            for spec in &self.tokens {
                let token = issuer(&c.dir, spec);
                c.tokens.push((spec.name.clone(), token));
            }
        };
        match self.shape {
            Shape::Up => {
                c.nats_url = format!("nats://127.0.0.1:{}", free_port());
                c.start_up().await;
                issue(&mut c);
            }
            Shape::Parts { services } => {
                let nats = NatsServer::start();
                c.nats_url = nats.url();
                c.nats = Some(nats);
                // The signing key first, so the gateway and the tokens agree on it.
                issue(&mut c);
                c.spawn("store", &["store"]);
                for s in &services {
                    c.spawn(s, &[s.as_str()]);
                }
                let listen = c.addr.to_string();
                // Ready once the services this centre runs are (it runs only some).
                let ready_with = if services.is_empty() {
                    "none".to_owned()
                } else {
                    services.join(",")
                };
                c.spawn(
                    "gateway",
                    &["gateway", "--http", &listen, "--ready-with", &ready_with],
                );
            }
        }
        for file in &self.imports {
            c.import(file);
        }
        c.ready().await;
        c
    }
}

/// One `vigil <command>` of a [`Centre::parts`] centre.
pub struct Process {
    guard: ChildGuard,
    args: Vec<String>,
}

impl Process {
    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        self.guard.kill9();
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.guard.id()
    }
}

/// The running centre; see the module docs. Tokens are `centre["<name>"]`.
pub struct Centre {
    bin: PathBuf,
    _temp: Option<TempDir>,
    dir: PathBuf,
    nats_url: String,
    http: u16,
    metrics: u16,
    addr: SocketAddr,
    env: Vec<(String, String)>,
    up: Option<tokio::process::Child>,
    banner: String,
    nats: Option<NatsServer>,
    processes: BTreeMap<String, Process>,
    tokens: Vec<(String, String)>,
    probes: Vec<String>,
}

impl Drop for Centre {
    fn drop(&mut self) {
        if let Some(child) = self.up.as_mut() {
            stop_up(child);
        }
    }
}

impl std::ops::Index<&str> for Centre {
    type Output = str;

    fn index(&self, name: &str) -> &str {
        self.tokens
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str())
            .unwrap_or_else(|| panic!("no token {name:?}: add it with Builder::token"))
    }
}

impl Centre {
    /// `vigil up` from binary `bin`.
    pub fn up(bin: impl Into<PathBuf>) -> Builder {
        Self::builder(bin.into(), Shape::Up)
    }

    /// A nats-server, `vigil store`, the services added with [`Builder::service`] and `vigil
    /// gateway`, each its own process, from binary `bin`.
    pub fn parts(bin: impl Into<PathBuf>) -> Builder {
        Self::builder(bin.into(), Shape::Parts { services: vec![] })
    }

    fn builder(bin: PathBuf, shape: Shape) -> Builder {
        Builder {
            bin,
            shape,
            dir: None,
            env: vec![],
            imports: vec![],
            tokens: vec![],
            issuer: None,
            probes: vec![],
        }
    }

    /// The gateway's HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The NATS URL every part uses.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// The nats-server of a [`Centre::parts`] centre.
    pub fn nats(&mut self) -> &mut NatsServer {
        self.nats
            .as_mut()
            .unwrap_or_else(|| panic!("a Centre::parts centre"))
    }

    /// What `vigil up` printed each time it started, in order (empty for [`Centre::parts`]).
    pub fn banner(&self) -> &str {
        &self.banner
    }

    /// The process `vigil <name>` of a [`Centre::parts`] centre (`store`, `gateway`, or a
    /// service).
    pub fn process(&mut self, name: &str) -> &mut Process {
        self.processes
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process {name:?} in this centre"))
    }

    /// SIGKILL of process `name`, then the same command again (SIGKILL first, so it also
    /// starts a process that is already gone).
    pub fn restart_process(&mut self, name: &str) {
        self.process(name).kill9();
        self.start_again(name);
    }

    /// Starts process `name` again with the same command (after it was killed).
    pub fn start_again(&mut self, name: &str) {
        let args = self.process(name).args.clone();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn(name, &args);
    }

    /// A `vigil <args…> --nats-url <url> --data-dir <dir>` process; stderr to
    /// `<data_dir>/<args[0]>-process.log`.
    fn spawn(&mut self, name: &str, args: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("{}-process.log", args[0])))
            .unwrap_or_else(|e| panic!("the log of vigil {}: {e}", args[0]));
        let child = Command::new(&self.bin)
            .args(args)
            .args(["--nats-url", &self.nats_url, "--data-dir"])
            .arg(&self.dir)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {args:?}: {e}", self.bin.display()));
        self.processes.insert(
            name.to_owned(),
            Process {
                guard: ChildGuard(Some(child)),
                args: args.iter().map(|a| (*a).to_owned()).collect(),
            },
        );
    }

    async fn start_up(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("vigil-up.stderr.log"))
            .unwrap_or_else(|e| panic!("the log of vigil up: {e}"));
        let (child, banner) = spawn_up(
            &self.bin,
            &self.dir,
            &self.nats_url,
            self.http,
            self.metrics,
            &self.env,
            log.into(),
        )
        .await;
        self.up = Some(child);
        // Every start's banner is kept: a test reads what the first start printed.
        self.banner.push_str(&banner);
    }

    /// What `vigil up` wrote to stderr so far (for a failure message).
    pub fn up_stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("vigil-up.stderr.log")).unwrap_or_default()
    }

    /// Stops the whole `vigil up` centre the way an operator does and starts it again on the
    /// same data, addresses and tokens; returns once it is ready.
    pub async fn restart(&mut self) {
        if let Some(child) = self.up.as_mut() {
            stop_up(child);
        }
        self.up = None;
        self.start_up().await;
        self.ready().await;
    }

    /// Sends signal `name` (`STOP`, `CONT`, …) to `vigil up`.
    pub fn signal(&self, name: &str) {
        let pid = self
            .up
            .as_ref()
            .and_then(tokio::process::Child::id)
            .unwrap_or_else(|| panic!("vigil up is running"));
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -{name} {pid}: {e}"));
        assert!(sent.success(), "kill -{name} {pid}: {sent}");
    }

    /// SIGTERM to `vigil up`, which must exit cleanly within 30 s (it stops its nats-server).
    pub async fn stop(&mut self) {
        let mut child = self
            .up
            .take()
            .unwrap_or_else(|| panic!("vigil up is running"));
        let pid = child.id().unwrap_or_else(|| panic!("vigil up has a pid"));
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill -TERM {pid}: {e}"));
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
        let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .unwrap_or_else(|_| panic!("vigil up exits within 30 s of SIGTERM"))
            .unwrap_or_else(|e| panic!("waiting for vigil up: {e}"));
        assert!(status.success(), "vigil up exit status {status:?}");
    }

    /// kill -9 of the whole `vigil up` centre: `vigil up` and the nats-server it started (its
    /// pid is in `<data_dir>/nats/nats-server.pid`), at once; returns once the NATS port is
    /// free again.
    pub async fn kill9(&mut self) {
        let pid_file = self.dir.join("nats/nats-server.pid");
        let nats_pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", pid_file.display()))
            .trim()
            .to_owned();
        let mut child = self
            .up
            .take()
            .unwrap_or_else(|| panic!("vigil up is running"));
        let up_pid = child
            .id()
            .unwrap_or_else(|| panic!("vigil up has a pid"))
            .to_string();
        let killed = Command::new("kill")
            .args(["-KILL", &up_pid, &nats_pid])
            .status()
            .unwrap_or_else(|e| panic!("kill -9 {up_pid} {nats_pid}: {e}"));
        assert!(killed.success(), "kill -9 {up_pid} {nats_pid}");
        child
            .wait()
            .await
            .unwrap_or_else(|e| panic!("waiting for vigil up: {e}"));
        // The nats-server's port is free once it is gone.
        let port: u16 = self
            .nats_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.nats_url));
        crate::eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
                .then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("nats-server is gone after kill -9"));
    }

    /// Sets an environment variable for every `vigil` process started from now on (the next
    /// [`Centre::up_again`]), replacing the value the builder gave: a restart with another
    /// setting.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts `vigil up` again after [`Centre::stop`] or [`Centre::kill9`], on the same data and addresses, and
    /// waits only for its banner and its HTTP port: a test that watches the parts come back
    /// by themselves must not wait for them here.
    pub async fn up_again(&mut self) {
        assert!(
            self.up.is_none(),
            "vigil up is still running: stop it first"
        );
        self.start_up().await;
        let port = self.http;
        let listening = tokio::task::spawn_blocking(move || {
            crate::wait_for_port(port, Duration::from_secs(20))
        })
        .await
        .unwrap_or_else(|e| panic!("waiting for port {port}: {e}"));
        assert!(
            listening,
            "vigil up printed its banner but nothing listens on its --http port {port}.\n{}",
            self.up_stderr()
        );
    }

    /// Waits until the gateway answers `/readyz` and every probe answers 200.
    pub async fn ready(&self) {
        let addr = self.addr;
        // The last answer, for the failure message: what the centre still waited for.
        let last = std::sync::Mutex::new(String::from("(no answer)"));
        crate::eventually(READY, || async {
            let a = crate::http::request(addr, "GET", "/readyz", &[], None)
                .await
                .ok()?;
            if let Ok(mut l) = last.lock() {
                *l = format!("{} {}", a.status, a.body);
            }
            (a.status == 200).then_some(())
        })
        .await
        .unwrap_or_else(|| {
            let last = last.lock().map(|l| l.clone()).unwrap_or_default();
            panic!("the gateway is not ready within {READY:?}; its last /readyz: {last}")
        });
        let token = self.tokens.first().map(|(_, t)| t.as_str());
        for probe in &self.probes {
            crate::eventually(READY, || async move {
                let a = crate::http::json(addr, "GET", probe, token, None)
                    .await
                    .ok()?;
                (a.status == 200).then_some(())
            })
            .await
            .unwrap_or_else(|| panic!("GET {probe} does not answer 200 within {READY:?}"));
        }
    }

    /// One JSON request; a connection that fails (the centre restarting) is status 0 with the
    /// error as the body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Answer {
        match crate::http::json(self.addr, method, path, Some(token), body).await {
            Ok(a) => a,
            Err(e) => Answer {
                status: 0,
                head: String::new(),
                body: e.to_string(),
            },
        }
    }

    /// A command that must succeed (200 or 201); its answer.
    pub async fn ok(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let a = self.call(method, path, token, Some(&body)).await;
        assert!(
            a.status == 200 || a.status == 201,
            "{method} {path}: {} {}",
            a.status,
            a.body
        );
        a.json()
    }

    /// GET `path`, which must answer 200; its answer.
    pub async fn get(&self, path: &str, token: &str) -> Value {
        let a = self.call("GET", path, token, None).await;
        assert_eq!(a.status, 200, "GET {path}: {}", a.body);
        a.json()
    }

    /// `vigil <args…> --nats-url <url> --data-dir <dir>` run to its end.
    pub fn vigil(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .args(["--nats-url", &self.nats_url, "--data-dir"])
            .arg(&self.dir)
            .env_remove("VIGIL_NATS_USER")
            .env_remove("VIGIL_NATS_PASSWORD")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {} {args:?}: {e}", self.bin.display()))
    }

    /// Loads reference data (JSON Lines) with `vigil import`, which must succeed.
    pub fn import(&self, file: &Path) {
        let file = file.to_string_lossy();
        let out = self.vigil(&["import", &file]);
        assert!(
            out.status.success(),
            "vigil import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Writes `lines` as a JSON Lines file in the data directory and imports it.
    pub fn import_lines(&self, lines: &[Value]) {
        let file = self
            .dir
            .join(format!("import-{}.jsonl", uuid::Uuid::new_v4()));
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(&file, text.join("\n"))
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        self.import(&file);
    }
}

/// Starts `vigil up` (binary `bin`) on the given NATS URL and ports with its data in
/// `data_dir`, waits for the banner it prints (up to the Ctrl-C line) and returns the process
/// and that banner. Its stdout keeps being drained, so it never blocks on a full pipe.
pub async fn spawn_up(
    bin: &Path,
    data_dir: &Path,
    nats_url: &str,
    http_port: u16,
    metrics_port: u16,
    env: &[(String, String)],
    stderr: Stdio,
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(bin)
        .args(["up", "--nats-url", nats_url])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("VIGIL_NATS_USER")
        .env_remove("VIGIL_NATS_PASSWORD")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {} up: {e}", bin.display()));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("vigil up without its stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("vigil up printed no banner within 60 s; so far:\n{banner}"));
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

/// Stops `vigil up` the way an operator does — SIGCONT (in case a test paused it) then
/// SIGTERM, so it stops its own nats-server too — and SIGKILL after 10 s. A `Drop` calls it,
/// so a failed test leaves no nats-server behind.
pub fn stop_up(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        for signal in ["-CONT", "-TERM"] {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let _ = child.start_kill();
}
