//! Power loss: `vigil store` keeps its data on a `vigil-lazyfs` mount (a FUSE passthrough
//! that holds every write in memory until the file is fsync'd), under 4 NATS writers. Each
//! cycle: write for a random short while, kill -9 the store, `clear-cache` (every unsynced
//! write is gone, as after a power cut), start the store again on the same mount, go on.
//! After the last cycle the store is killed and the cache cleared once more, the mount is
//! taken down, and the checker reads the backing directory (which holds exactly what was
//! fsync'd) against the ack file.
//!
//! The same run with `vigil store --unsafe-no-fsync` must lose acknowledged events: the proof
//! that this harness sees a store that acknowledges before its data is durable.
//!
//! Figures: cycles, acknowledged, lost, duplicated, gaps, the longest restart (from starting
//! the store again to its first answer, recovery of the log on the mount included), and what
//! `clear-cache` dropped (pages of unsynced file data, and never-synced files).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use runtime::StoreClient;
use testkit::NatsServer;

use crate::check::{self, Verdict};
use crate::writers::{self, AckFile, Progress};

/// The control file of a `vigil-lazyfs` mount.
const CONTROL: &str = ".lazyfs-control";
/// Concurrent NATS writers.
const WRITERS: usize = 4;

/// How one power-loss run went.
pub struct Outcome {
    /// Whether the store ran with fsync (the promise) or without (the control run).
    pub fsync: bool,
    /// Cycles run.
    pub cycles: usize,
    /// The checker's verdict on the backing directory, or why it could not read it.
    pub verdict: Result<Verdict, String>,
    /// The longest restart: from starting the store again to its first answer.
    pub max_restart: Duration,
    /// The store did not come back after a power loss (the cycle and its log's last lines).
    pub refused: Option<String>,
    /// `vigil-lazyfs`'s counters at the end.
    pub lazyfs: HashMap<String, u64>,
}

impl Outcome {
    /// With fsync: every promise held. Without: the harness saw the promise broken.
    pub fn ok(&self) -> bool {
        match (&self.verdict, self.fsync) {
            (Ok(v), true) => v.ok() && self.refused.is_none(),
            (Ok(v), false) => v.lost > 0,
            (Err(_), _) => false,
        }
    }

    fn dropped(&self) -> String {
        let n = |k: &str| self.lazyfs.get(k).copied().unwrap_or(0);
        format!(
            "clear-cache dropped {} unsynced pages in {} files and {} never-synced files",
            n("dropped_pages"),
            n("dropped_files"),
            n("removed_files")
        )
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        let Ok(v) = &self.verdict else {
            return format!(
                "powerloss{}: {} cycles, the backing directory could not be read — FAIL",
                if self.fsync {
                    ""
                } else {
                    " (fsync off, must lose)"
                },
                self.cycles
            );
        };
        if self.fsync {
            format!(
                "powerloss: {} cycles, {} acknowledged, {} lost, {} duplicated, {} gaps, {} misordered, max restart {:.2} s, {}{} — {}",
                self.cycles,
                v.acknowledged,
                v.lost,
                v.duplicated,
                v.position_gaps + v.version_gaps,
                v.misordered,
                self.max_restart.as_secs_f64(),
                self.dropped(),
                if self.refused.is_some() {
                    ", the store did not come back"
                } else {
                    ""
                },
                if self.ok() { "PASS" } else { "FAIL" },
            )
        } else {
            format!(
                "powerloss (fsync off, must lose): {} cycles, {} acknowledged, {} lost, {} duplicated, {} gaps, {} misordered, {}{} — harness sees loss: {}",
                self.cycles,
                v.acknowledged,
                v.lost,
                v.duplicated,
                v.position_gaps + v.version_gaps,
                v.misordered,
                self.dropped(),
                if self.refused.is_some() {
                    ", the store did not come back"
                } else {
                    ""
                },
                if self.ok() { "PASS" } else { "FAIL" },
            )
        }
    }

    /// What the checker found and why the store did not come back, in words.
    pub fn problems(&self) -> Vec<String> {
        let mut p = match &self.verdict {
            Ok(v) => v.problems.clone(),
            Err(e) => vec![e.clone()],
        };
        p.extend(self.refused.clone());
        p
    }
}

/// A `vigil-lazyfs` mount, run as a child process; unmounted (lazily if busy) on drop.
struct LazyMount {
    mountpoint: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl LazyMount {
    /// Mounts `backing` at `mountpoint` and waits until the control file answers.
    fn start(bin: &Path, backing: &Path, mountpoint: &Path, log: &Path) -> anyhow::Result<Self> {
        let log_file = std::fs::File::create(log).context("creating the vigil-lazyfs log")?;
        let child = Command::new(bin)
            .arg(backing)
            .arg(mountpoint)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with `cargo build -p vigil-lazyfs`)",
                    bin.display()
                )
            })?;
        let mut mount = LazyMount {
            mountpoint: mountpoint.to_owned(),
            log: log.to_owned(),
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::fs::metadata(mountpoint.join(CONTROL)).is_ok() {
                return Ok(mount);
            }
            if let Some(Ok(Some(status))) = mount.child.as_mut().map(Child::try_wait) {
                mount.child = None;
                anyhow::bail!(
                    "vigil-lazyfs exited ({status}) before mounting {}: {}",
                    mountpoint.display(),
                    tail(&mount.log, 5)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!(
            "vigil-lazyfs did not mount {} within 15 s: {}",
            mountpoint.display(),
            tail(&mount.log, 5)
        )
    }

    /// Sends one command (`clear-cache`, `sync`); it is done when this returns.
    fn command(&self, cmd: &str) -> anyhow::Result<()> {
        std::fs::write(self.mountpoint.join(CONTROL), cmd)
            .with_context(|| format!("sending {cmd} to vigil-lazyfs"))
    }

    /// The counters (`name value` lines of the control file).
    fn counters(&self) -> anyhow::Result<HashMap<String, u64>> {
        let text = std::fs::read_to_string(self.mountpoint.join(CONTROL))
            .context("reading vigil-lazyfs's counters")?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(' ')?;
                Some((k.to_owned(), v.trim().parse().ok()?))
            })
            .collect())
    }

    /// Unmounts (lazily when busy) and reaps the process; safe to call twice.
    fn unmount(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let quiet = |args: &[&str]| {
            Command::new("umount")
                .args(args)
                .arg(&self.mountpoint)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !quiet(&[]) && !quiet(&["-l"]) {
            // Not root after all: the setuid helper of Debian's fuse3.
            let _ = Command::new("fusermount3")
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .stderr(Stdio::null())
                .status();
        }
        // The session ends by itself once unmounted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for LazyMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// `vigil store` on the mount; killed on drop.
struct Store {
    vigil: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Store {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .context("opening the store's log")?;
        let child = Command::new(&self.vigil)
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .env_remove("VIGIL_NATS_USER")
            .env_remove("VIGIL_NATS_PASSWORD")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} {:?}", self.vigil.display(), self.args))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `n` lines of a log file, on one line.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Waits until the store answers a read and then until an append is acknowledged beyond
/// `before` (the writers are back); the time until the first answer, or why not.
async fn back(
    probe: &StoreClient,
    progress: &Progress,
    before: u64,
    store: &mut Store,
    timeout: Duration,
) -> Result<Duration, String> {
    let started = Instant::now();
    let mut up = None;
    while started.elapsed() < timeout {
        if up.is_none() && probe.read(1, 1).await.is_ok() {
            up = Some(started.elapsed());
        }
        if let Some(up) = up
            && progress.acked.load(Ordering::Acquire) > before
        {
            return Ok(up);
        }
        if let Some(status) = store.exited() {
            return Err(format!(
                "the store exited ({status}): {}",
                tail(&store.log, 3)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!(
        "no append acknowledged within {} s: {}",
        timeout.as_secs(),
        tail(&store.log, 3)
    ))
}

/// Runs `cycles` power-loss cycles in `dir` (fresh), the store with fsync or without.
pub async fn run(
    vigil: &Path,
    lazyfs: &Path,
    dir: &Path,
    cycles: usize,
    fsync: bool,
) -> anyhow::Result<Outcome> {
    let backing = dir.join("backing");
    let mountpoint = dir.join("mnt");
    std::fs::create_dir_all(&backing).context("creating the backing directory")?;
    std::fs::create_dir_all(&mountpoint).context("creating the mount point")?;
    // Dropped last: everything that uses the mount is gone before it is unmounted.
    let mut mount = LazyMount::start(lazyfs, &backing, &mountpoint, &dir.join("lazyfs.log"))?;
    let nats = NatsServer::start();
    let mut args = vec![
        "store".to_owned(),
        "--nats-url".to_owned(),
        nats.url(),
        "--data-dir".to_owned(),
        mountpoint.display().to_string(),
    ];
    if !fsync {
        args.push("--unsafe-no-fsync".to_owned());
    }
    let mut store = Store {
        vigil: vigil.to_owned(),
        args,
        log: dir.join("store.log"),
        child: None,
    };
    store.spawn()?;

    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;
    let progress = Progress::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        tasks.push(tokio::spawn(writers::nats_writer(
            nats.url(),
            w,
            acks.clone(),
            progress.clone(),
        )));
    }
    let name = if fsync {
        "powerloss"
    } else {
        "powerloss (fsync off)"
    };
    let mut refused = None;
    // Reads with a short timeout: how soon the restarted store answers.
    let probe = StoreClient::new(
        runtime::nats::connect(
            &nats.url(),
            "chaos-powerloss-probe",
            None,
            runtime::nats::Mode::Tool,
        )
        .await?,
        Duration::from_millis(250),
    );
    if let Err(e) = back(&probe, &progress, 0, &mut store, Duration::from_secs(60)).await {
        anyhow::bail!(
            "the store on vigil-lazyfs never acknowledged an append: {e}; see the logs in {}",
            dir.display()
        );
    }
    let mut max_restart = Duration::ZERO;
    let mut done = 0;
    let mut rng = rand::rng();
    for cycle in 1..=cycles {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_500))).await;
        store.kill9();
        let before = progress.acked.load(Ordering::Acquire);
        let dropped_before = mount.counters()?.get("dropped_pages").copied();
        mount.command("clear-cache")?;
        let dropped = mount
            .counters()?
            .get("dropped_pages")
            .copied()
            .unwrap_or(0)
            .saturating_sub(dropped_before.unwrap_or(0));
        store.spawn()?;
        done = cycle;
        match back(
            &probe,
            &progress,
            before,
            &mut store,
            Duration::from_secs(60),
        )
        .await
        {
            Ok(restart) => {
                max_restart = max_restart.max(restart);
                eprintln!(
                    "  {name} cycle {cycle}/{cycles}: kill -9 store, clear-cache ({dropped} unsynced pages dropped), answering again in {:.2} s, {} acknowledged so far",
                    restart.as_secs_f64(),
                    before
                );
            }
            Err(e) => {
                eprintln!("  {name} cycle {cycle}/{cycles}: the store did not come back: {e}");
                refused = Some(format!(
                    "after the power loss of cycle {cycle} the store did not come back: {e}"
                ));
                break;
            }
        }
    }
    progress.stop.store(true, Ordering::Release);
    for t in tasks {
        t.await??;
    }
    // The last power loss; then only what was fsync'd is left in the backing directory.
    store.kill9();
    mount.command("clear-cache")?;
    let lazyfs_counters = mount.counters()?;
    mount.unmount();
    drop(nats);
    let verdict = match check::read_dir(&backing.join("store")) {
        Ok(log) => Ok(check::check(&log, &AckFile::read(&acks_path)?)),
        Err(e) => Err(format!(
            "the checker could not read the backing directory: {e:#}"
        )),
    };
    Ok(Outcome {
        fsync,
        cycles: done,
        verdict,
        max_restart,
        refused,
        lazyfs: lazyfs_counters,
    })
}
