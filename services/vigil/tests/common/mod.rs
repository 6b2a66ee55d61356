//! Shared by the binary's tests: the real `vigil store` process and a log checker.

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use events::{RecordedEvent, StreamName};
use runtime::StoreClient;
use testkit::ChildGuard;
use uuid::Uuid;

pub mod browser;
pub mod console;

/// A real `vigil <command>` process (the store, a service, the gateway) against `nats_url`
/// with its data in `data_dir`; its stderr goes to `<data_dir>/<command>-process.log`.
pub struct VigilProcess {
    guard: ChildGuard,
    data_dir: PathBuf,
    nats_url: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

/// The store process.
pub type StoreProcess = VigilProcess;

impl VigilProcess {
    /// `vigil store`.
    pub fn spawn(data_dir: &Path, nats_url: &str) -> Self {
        Self::run(data_dir, nats_url, &["store"], &[])
    }

    /// `vigil <args…>` with extra environment.
    pub fn run(data_dir: &Path, nats_url: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join(format!("{}-process.log", args[0])))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(args)
            .args(["--nats-url", nats_url, "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Self {
            guard: ChildGuard(Some(child)),
            data_dir: data_dir.to_owned(),
            nats_url: nats_url.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill9(&mut self) {
        self.guard.kill9();
    }

    pub fn pid(&self) -> Option<u32> {
        self.guard.id()
    }

    /// SIGTERM: an orderly stop (see [`VigilProcess::wait_exit`]).
    pub fn sigterm(&self) {
        let pid = self.pid().expect("the process is running");
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Waits for the process to exit by itself; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.guard.0.as_mut().map(|c| c.try_wait()) {
                self.guard.0 = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills it (SIGKILL) and starts the same command again.
    pub fn restart(&mut self) {
        self.kill9();
        self.start_again();
    }

    /// Starts the same command again (after it was killed or exited).
    pub fn start_again(&mut self) {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        *self = Self::run(&self.data_dir.clone(), &self.nats_url.clone(), &args, &env);
    }
}

/// Waits until the store answers.
pub async fn wait_ready(store: &StoreClient) {
    testkit::eventually(Duration::from_secs(20), || {
        let s = store.clone();
        async move { s.read(1, 1).await.ok() }
    })
    .await
    .expect("the store did not answer within 20 s");
}

/// Reads the whole log.
pub async fn read_all(store: &StoreClient) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let (page, _) = store.read(all.len() as u64 + 1, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// An append the store acknowledged.
#[derive(Debug, Clone)]
pub struct Ack {
    pub id: Uuid,
    pub stream: StreamName,
    pub position: u64,
    pub version: u64,
}

/// Asserts the log's invariants and that every acknowledged append is in it exactly once,
/// where it was acknowledged.
pub fn check_log(all: &[RecordedEvent], acked: &[Ack]) {
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "positions are gap-free from 1"
    );
    let mut seen = HashSet::new();
    for e in all {
        assert!(seen.insert(e.id), "event {} stored twice", e.id);
    }
    let mut versions: HashMap<&StreamName, Vec<u64>> = HashMap::new();
    for e in all {
        versions.entry(&e.stream).or_default().push(e.version);
    }
    for (stream, v) in versions {
        assert_eq!(
            v,
            (1..=v.len() as u64).collect::<Vec<_>>(),
            "versions of {stream} are gap-free"
        );
    }
    for a in acked {
        let e = all.get((a.position - 1) as usize).unwrap_or_else(|| {
            panic!(
                "acknowledged event {} at position {} is missing: the log ends at {}",
                a.id,
                a.position,
                all.len()
            )
        });
        assert_eq!(
            (e.id, &e.stream, e.version),
            (a.id, &a.stream, a.version),
            "acknowledged event at position {}",
            a.position
        );
    }
}

/// Starts `vigil up` on the given NATS URL and ports with its data in `data_dir`, waits for
/// the banner it prints (up to the Ctrl-C line) and returns the process and that banner.
/// Its stdout keeps being drained, so it never blocks on a full pipe.
pub async fn spawn_up(
    data_dir: &Path,
    nats_url: &str,
    http_port: u16,
    metrics_port: u16,
    stderr: Stdio,
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["up", "--nats-url", nats_url])
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args(["--metrics", &format!("127.0.0.1:{metrics_port}")])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env_remove("VIGIL_NATS_USER")
        .env_remove("VIGIL_NATS_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            banner.push_str(&line);
            banner.push('\n');
            if line.starts_with("Ctrl-C") {
                break;
            }
        }
    })
    .await
    .expect("vigil up printed its banner");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, banner)
}

/// Stops `vigil up` the way an operator does — SIGCONT (in case a test paused it) then
/// SIGTERM, so it stops its own nats-server too — and SIGKILL after 10 s. A test's `Drop`
/// calls it, so a failed test leaves no nats-server behind.
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
