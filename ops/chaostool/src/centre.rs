//! A whole centre as separate processes on loopback, each of which a scenario may kill -9 and
//! start again: a `nats-server` of its own, `vigil store`, every domain service and
//! `vigil gateway`, all on one data directory. Tokens are signed with the gateway's key in
//! that directory, as `vigil token create` does.
//!
//! Everything started here is killed when the [`Centre`] is dropped (and the nats-server's
//! temp dir removed), so a failed scenario leaves nothing running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use gateway::auth::Auth;
use testkit::NatsServer;

/// The domain services, each its own `vigil <name>` process.
pub const SERVICES: [&str; 8] = [
    "audit",
    "incidents",
    "levels",
    "relocation",
    "clearances",
    "hostage",
    "surge",
    "broadcast",
];

/// One `vigil <name>` process.
pub struct Proc {
    /// `store`, `gateway` or a service's name.
    pub name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Proc {
    fn spawn(&mut self, vigil: &Path, dir: &Path) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", self.name)))
            .context("opening a process log")?;
        let child = Command::new(vigil)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("VIGIL_NATS_USER")
            .env_remove("VIGIL_NATS_PASSWORD")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {:?}", vigil.display(), self.args))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether it exited by itself (a crash the scenario did not cause).
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The centre's NATS server.
pub enum Nats {
    /// Its own, on loopback: a crash victim like the rest.
    Local(NatsServer),
    /// Run by the scenario (e.g. in another network namespace), at this URL.
    External(String),
}

/// A running centre.
pub struct Centre {
    /// The NATS server.
    pub nats: Nats,
    /// The data directory.
    pub dir: PathBuf,
    /// The `vigil` binary.
    pub vigil: PathBuf,
    /// The gateway's address.
    pub http: SocketAddr,
    /// Every vigil process.
    pub procs: Vec<Proc>,
    /// Field officer of SO, duty officer.
    pub field_token: String,
    /// A duty officer's token.
    pub duty_token: String,
}

impl Centre {
    /// Starts nats-server, the store, every service and the gateway; waits until the gateway
    /// is ready. `store_args` are added to `vigil store` (e.g. `--unsafe-no-fsync`).
    pub async fn start(vigil: &Path, dir: &Path, store_args: &[&str]) -> anyhow::Result<Centre> {
        let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
        Self::start_on(
            vigil,
            dir,
            store_args,
            Nats::Local(NatsServer::start()),
            http,
        )
        .await
    }

    /// [`Centre::start`] on a given NATS server, with the gateway on `http`.
    pub async fn start_on(
        vigil: &Path,
        dir: &Path,
        store_args: &[&str],
        nats: Nats,
        http: SocketAddr,
    ) -> anyhow::Result<Centre> {
        std::fs::create_dir_all(dir).context("creating the data directory")?;
        let nats_url = match &nats {
            Nats::Local(n) => n.url(),
            Nats::External(url) => url.clone(),
        };
        let common = |cmd: &str| {
            vec![
                cmd.to_owned(),
                "--nats-url".to_owned(),
                nats_url.clone(),
                "--data-dir".to_owned(),
                dir.display().to_string(),
            ]
        };
        let mut procs = Vec::new();
        let mut store = common("store");
        store.extend(store_args.iter().map(|s| (*s).to_owned()));
        procs.push(Proc {
            name: "store".into(),
            args: store,
            env: vec![],
            child: None,
        });
        for s in SERVICES {
            procs.push(Proc {
                name: s.into(),
                args: common(s),
                env: vec![],
                child: None,
            });
        }
        let mut gw = common("gateway");
        gw.extend(["--http".to_owned(), http.to_string()]);
        procs.push(Proc {
            name: "gateway".into(),
            args: gw,
            // The writers submit far more than a field officer may by hand, and the soak's
            // hundreds of screens all come from 127.0.0.1 with one token.
            env: [
                ("VIGIL_FIELD_REPORTS_PER_MINUTE", "1000000"),
                ("VIGIL_MAX_CONNECTIONS_PER_ADDRESS", "100000"),
                ("VIGIL_MAX_WS_PER_ADDRESS", "100000"),
                ("VIGIL_MAX_WS_PER_TOKEN", "100000"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .to_vec(),
            child: None,
        });
        // The gateway's signing key lives in the data directory; make it before the gateway
        // starts so both use the same one.
        let auth = Auth::open(dir, vec![]).context("opening the gateway's keys")?;
        let field_token = crate::writers::field_token(&auth, "chaos.field")?;
        let duty_token = crate::writers::duty_token(&auth)?;
        let mut centre = Centre {
            nats,
            dir: dir.to_owned(),
            vigil: vigil.to_owned(),
            http,
            procs,
            field_token,
            duty_token,
        };
        for i in 0..centre.procs.len() {
            let (vigil, dir) = (centre.vigil.clone(), centre.dir.clone());
            centre.procs[i].spawn(&vigil, &dir)?;
        }
        centre.ready(Duration::from_secs(60)).await?;
        Ok(centre)
    }

    /// The NATS URL.
    pub fn nats_url(&self) -> String {
        match &self.nats {
            Nats::Local(n) => n.url(),
            Nats::External(url) => url.clone(),
        }
    }

    /// Every victim a crash scenario may pick: each process and its own nats-server.
    pub fn victims(&self) -> Vec<String> {
        let mut v: Vec<String> = self.procs.iter().map(|p| p.name.clone()).collect();
        if matches!(self.nats, Nats::Local(_)) {
            v.push("nats-server".into());
        }
        v
    }

    /// kill -9 of `name`.
    pub fn kill(&mut self, name: &str) {
        if name == "nats-server" {
            if let Nats::Local(n) = &mut self.nats {
                n.kill();
            }
        } else if let Some(p) = self.procs.iter_mut().find(|p| p.name == name) {
            p.kill9();
        }
    }

    /// Starts `name` again after [`Centre::kill`].
    pub fn start_again(&mut self, name: &str) -> anyhow::Result<()> {
        if name == "nats-server" {
            if let Nats::Local(n) = &mut self.nats {
                n.restart();
            }
            return Ok(());
        }
        let (vigil, dir) = (self.vigil.clone(), self.dir.clone());
        match self.procs.iter_mut().find(|p| p.name == name) {
            Some(p) => p.spawn(&vigil, &dir),
            None => anyhow::bail!("no process named {name}"),
        }
    }

    /// The process id of each running vigil process and of its own nats-server.
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut p: Vec<(String, u32)> = self
            .procs
            .iter()
            .filter_map(|p| p.child.as_ref().map(|c| (p.name.clone(), c.id())))
            .collect();
        if let Nats::Local(n) = &self.nats
            && let Some(pid) = n.pid()
        {
            p.push(("nats-server".into(), pid));
        }
        p
    }

    /// Processes that exited without being killed, with their status: each is a crash.
    pub fn crashed(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|p| {
                p.exited()
                    .map(|s| format!("{} exited by itself ({s})", p.name))
            })
            .collect()
    }

    /// Stops every vigil process (kill -9) and nats-server.
    pub fn stop(&mut self) {
        for p in &mut self.procs {
            p.kill9();
        }
        if let Nats::Local(n) = &mut self.nats {
            n.kill();
        }
    }

    /// Waits until `/readyz` answers 200 (store and NATS reachable, boards caught up).
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let ok = testkit::eventually(timeout, || async {
            let a = testkit::http::request(self.http, "GET", "/readyz", &[], None)
                .await
                .ok()?;
            (a.status == 200).then_some(())
        })
        .await;
        match ok {
            Some(()) => Ok(started.elapsed()),
            None => anyhow::bail!(
                "the centre was not ready within {} s; see the process logs in {}",
                timeout.as_secs(),
                self.dir.display()
            ),
        }
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        self.stop();
    }
}
