//! A field site for the tests: the centre with a leaf-node listener, and `vigil site` as its
//! own process with its own nats-server (`services/vigil/tests/site.rs`, `site_mirror.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use async_nats::Client;
use runtime::nats::Mode;
use serde_json::Value;
use testkit::ChildGuard;
use testkit::centre::Centre;

/// The scope of a site issued without one.
pub const SCOPE: &str = "AF";

/// The centre with a leaf-node listener on a free port.
pub async fn centre() -> (Centre, String) {
    let leaf = format!("127.0.0.1:{}", testkit::free_port());
    let c = super::up().env("VIGIL_LEAF_ADDR", &leaf).start().await;
    (c, format!("nats-leaf://{leaf}"))
}

/// One `vigil site` process and its data.
pub struct Site {
    pub name: String,
    pub scope: String,
    pub dir: PathBuf,
    pub creds: PathBuf,
    pub centre: String,
    pub listen: String,
    /// The site's gateway (`--http-addr`).
    pub http: std::net::SocketAddr,
    pub guard: Option<ChildGuard>,
}

impl Drop for Site {
    /// Stops the site as an operator does (SIGTERM: it stops its nats-server too), and a
    /// nats-server a site killed with -9 left behind.
    fn drop(&mut self) {
        if let Some(child) = self.guard.as_mut().and_then(|g| g.0.as_mut()) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.guard = None;
        let conf = self.dir.join("nats/nats-server.conf");
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nats/nats-server.pid")) {
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*conf.to_string_lossy()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

impl Site {
    /// Issues site `name` (of `AF`) at `centre` with `vigil site-user add` and starts it.
    pub fn issue_and_start(c: &Centre, leaf: &str, name: &str, dir: &Path) -> Site {
        Self::issue_and_start_in(c, leaf, name, SCOPE, dir)
    }

    /// Issues site `name` of `scope` at `centre` with `vigil site-user add` and starts it.
    pub fn issue_and_start_in(c: &Centre, leaf: &str, name: &str, scope: &str, dir: &Path) -> Site {
        let creds = dir.join(format!("{name}.site-credentials.json"));
        let out = c.vigil(&[
            "site-user",
            "add",
            name,
            "--scope",
            scope,
            "--out",
            creds.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(&format!("vigil site --name {name}")),
            "{printed}"
        );
        let issued: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
        assert_eq!(
            issued["centre"], leaf,
            "the running centre's leaf URL is in the file"
        );
        let mut site = Site {
            name: name.to_owned(),
            scope: scope.to_owned(),
            dir: dir.join(name),
            creds,
            centre: leaf.to_owned(),
            listen: format!("127.0.0.1:{}", testkit::free_port()),
            http: ([127, 0, 0, 1], testkit::free_port()).into(),
            guard: None,
        };
        std::fs::create_dir_all(&site.dir).unwrap();
        site.start();
        site
    }

    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("site.stderr.log"))
            .unwrap();
        // What `vigil site` prints (its addresses) is read back by the tests.
        let out = std::fs::File::create(self.dir.join("site.stdout.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "site",
                "--name",
                &self.name,
                "--scope",
                &self.scope,
                "--centre",
            ])
            .arg(&self.centre)
            .arg("--credentials")
            .arg(&self.creds)
            .args([
                "--listen",
                &self.listen,
                "--http-addr",
                &self.http.to_string(),
                "--data-dir",
            ])
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(log)
            .spawn()
            .unwrap();
        self.guard = Some(ChildGuard(Some(child)));
    }

    /// kill -9 of the site process alone (its nats-server is left behind, as after a real
    /// SIGKILL; the next start must cope).
    pub fn kill9(&mut self) {
        self.guard.as_mut().unwrap().kill9();
        self.guard = None;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("site.stderr.log")).unwrap_or_default()
    }

    /// A client of the site's own bus (waits until the site answers on it).
    pub async fn client(&self) -> Client {
        let url = format!("nats://{}", self.listen);
        let got = testkit::eventually(Duration::from_secs(60), || async {
            let creds = runtime::nats_auth::load(&self.dir)
                .ok()
                .flatten()?
                .credentials(&runtime::nats_sites::user_of(&self.name))?;
            let client = runtime::nats::connect(&url, "site-test", Some(creds), Mode::Tool)
                .await
                .ok()?;
            let asked = client
                .request(site::subjects::STATE, Vec::new().into())
                .await
                .ok()?;
            asked.payload.starts_with(b"{\"ok\"").then_some(client)
        })
        .await;
        got.unwrap_or_else(|| panic!("the site's bus is up; log:\n{}", self.log()))
    }
}

/// A store client on centre `c`'s bus as the operator's `cli` user (the centre's log, read
/// or appended to by a test).
pub async fn cli_store(c: &Centre, name: &str) -> runtime::StoreClient {
    let creds = runtime::nats_auth::load(c.data_dir())
        .unwrap()
        .unwrap()
        .credentials(runtime::nats_auth::CLI);
    let client = runtime::nats::connect(c.nats_url(), name, creds, Mode::Service)
        .await
        .unwrap();
    runtime::StoreClient::new(client, Duration::from_secs(10))
}
