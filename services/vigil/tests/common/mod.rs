//! Shared by the binary's tests: the real `vigil store` process and a log checker.

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use events::{RecordedEvent, StreamName};
use runtime::StoreClient;

use testkit::ChildGuard;
use testkit::centre::{Builder, Centre, Issuer, TokenSpec};
use uuid::Uuid;

pub mod browser;
pub mod console;
pub mod site;

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
/// the banner it prints (up to the Ctrl-C line) and returns the process and that banner
/// (see `testkit::centre::spawn_up`).
pub async fn spawn_up(
    data_dir: &Path,
    nats_url: &str,
    http_port: u16,
    metrics_port: u16,
    stderr: Stdio,
) -> (tokio::process::Child, String) {
    testkit::centre::spawn_up(
        Path::new(env!("CARGO_BIN_EXE_vigil")),
        data_dir,
        nats_url,
        http_port,
        metrics_port,
        &[],
        stderr,
    )
    .await
}

/// Stops `vigil up` the way an operator does (see `testkit::centre::stop_up`).
pub fn stop_up(child: &mut tokio::process::Child) {
    testkit::centre::stop_up(child);
}

/// The shipped sample reference data (`vigil import`).
pub const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../ops/reference/sample.jsonl"
);

/// Signs the test centre's tokens with the gateway's own code: session tokens valid an hour.
pub fn issuer() -> Issuer {
    Arc::new(|dir: &Path, spec: &TokenSpec| {
        let role = gateway::auth::Role::parse(&spec.role)
            .unwrap_or_else(|| panic!("unknown role {:?}", spec.role));
        gateway::auth::Auth::open(dir, vec![])
            .unwrap()
            .issue(
                &spec.user,
                role,
                spec.scope.clone(),
                spec.agency.clone(),
                Duration::from_secs(3600),
                "session",
            )
            .unwrap()
            .0
    })
}

/// Declares a test file's `Centre`: the shared test centre ([`Centre`], reached through
/// `Deref`), a type of the file's own so that it can add its helpers in an `impl Centre`.
#[allow(unused_macros)]
macro_rules! centre_type {
    () => {
        /// The shared test centre with this file's helpers.
        struct Centre(testkit::centre::Centre);

        impl std::ops::Deref for Centre {
            type Target = testkit::centre::Centre;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl std::ops::DerefMut for Centre {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use centre_type;

/// `vigil up` from this crate's binary, signing tokens with [`issuer`].
pub fn up() -> Builder {
    Centre::up(env!("CARGO_BIN_EXE_vigil")).issuer(issuer())
}

/// nats-server, `vigil store`, services and `vigil gateway` as separate processes from this
/// crate's binary, signing tokens with [`issuer`].
pub fn parts() -> Builder {
    Centre::parts(env!("CARGO_BIN_EXE_vigil")).issuer(issuer())
}
