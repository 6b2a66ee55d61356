//! Disk full (issue #8, item 8): the store's disk fills up under load, then space returns.
//!
//! # What it breaks
//! A small tmpfs (64 MiB by default; `mount -t tmpfs`, so it needs root) is mounted as the
//! data directory of a `vigil store` of its own (with a nats-server of its own, loopback
//! only). Once the store serves, a **ballast** file fills the tmpfs but for a few MiB
//! (`--free-mib`, 12 by default), so the store's own files fit but the disk fills within
//! seconds. Four NATS writers append ~2 KiB events, one at a time, each retrying an append
//! with the same ids until it is acknowledged, and record every acknowledgement. When the
//! store has refused appends for a while, the ballast is deleted: space returns, and nothing
//! else is done — no restart, no operator.
//!
//! # What it promises
//! - **Refused clearly while full**: every append the store cannot store is answered
//!   `unavailable` with a message that says the disk is full and what to do (free space;
//!   retry with the same ids), and reads go on being served.
//! - **Nothing acknowledged is lost**: after space returns, the whole log (read through the
//!   running store, then from its files once stopped) holds every acknowledged event exactly
//!   once, where it was acknowledged, positions and versions without a hole.
//! - **It resumes by itself**: an append is acknowledged again within 30 s of the ballast
//!   being deleted, without restarting the store.
//!
//! The tmpfs is unmounted whatever happens (the store is killed first). Where it cannot be
//! mounted (not root, no `mount`), the scenario says so and is skipped.
//!
//! Figures: appends refused while full (and the message), acknowledged events lost, and how
//! long after space returned the first append was acknowledged.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use events::store_api::ErrorCode;
use events::{AppendRequest, ExpectedVersion, StreamName};
use runtime::{ClientError, StoreClient};
use serde_json::json;
use testkit::NatsServer;
use uuid::Uuid;

use crate::check;
use crate::damage::LoneStore;
use crate::writers::{self, Ack};

/// How long the writers may take to fill the disk.
const FILL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long appends are refused before space is given back.
const FULL_FOR: Duration = Duration::from_secs(3);
/// How long the store may take to resume once space returns.
const RESUME_TIMEOUT: Duration = Duration::from_secs(30);

/// How the scenario went.
pub struct Outcome {
    /// Set when the tmpfs could not be mounted: the scenario did not run.
    pub skipped: Option<String>,
    /// Append requests answered `unavailable` while the disk was full.
    pub refused: u64,
    /// The first `unavailable` message.
    pub message: String,
    /// Acknowledged events.
    pub acknowledged: usize,
    /// The checker's verdict on the log read through the running store, then from its files.
    pub lost: usize,
    /// Duplicated events and position/version gaps.
    pub damaged: usize,
    /// From deleting the ballast to the first acknowledged append.
    pub resumed: Option<Duration>,
    /// What went wrong, in words.
    pub problems: Vec<String>,
}

impl Outcome {
    fn skipped(why: String) -> Outcome {
        Outcome {
            skipped: Some(why),
            refused: 0,
            message: String::new(),
            acknowledged: 0,
            lost: 0,
            damaged: 0,
            resumed: None,
            problems: vec![],
        }
    }

    /// Whether every promise held (a skip is not a failure).
    pub fn ok(&self) -> bool {
        self.skipped.is_some()
            || (self.problems.is_empty()
                && self.refused > 0
                && self.lost == 0
                && self.damaged == 0
                && self.resumed.is_some())
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        if let Some(why) = &self.skipped {
            return format!("diskfull: SKIPPED — {why}");
        }
        format!(
            "diskfull: refused {} appends while full (message: {:?}), {} acknowledged, {} lost, resumed {} after space returned — {}",
            self.refused,
            self.message,
            self.acknowledged,
            self.lost,
            match self.resumed {
                Some(d) => format!("in {:.1} s", d.as_secs_f64()),
                None => "NEVER".to_owned(),
            },
            if self.ok() { "PASS" } else { "FAIL" }
        )
    }
}

/// A tmpfs mounted for the scenario; unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` at `path`; `Err` says why it cannot.
    fn mount(path: &Path, size_mib: u64) -> Result<Tmpfs, String> {
        fs::create_dir_all(path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size_mib}m,mode=0700"),
                "vigil-chaos-diskfull",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {} (the scenario needs root)",
                out.status,
                String::from_utf8_lossy(&out.stderr)
                    .trim()
                    .replace('\n', " ")
            ));
        }
        Ok(Tmpfs {
            path: path.to_owned(),
            mounted: true,
        })
    }

    fn unmount(&mut self) -> anyhow::Result<()> {
        if !self.mounted {
            return Ok(());
        }
        let ok = Command::new("umount")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it: detach it now; the kernel frees it when released.
            let lazy = Command::new("umount")
                .arg("-l")
                .arg(&self.path)
                .status()
                .is_ok_and(|s| s.success());
            if !lazy {
                anyhow::bail!("could not unmount the tmpfs at {}", self.path.display());
            }
        }
        self.mounted = false;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = self.unmount() {
            eprintln!("diskfull: {e}");
        }
    }
}

/// What the writers saw.
#[derive(Default)]
struct Tally {
    acks: Vec<Ack>,
    /// `unavailable` answers.
    refused: u64,
    /// The first `unavailable` message.
    message: Option<String>,
    /// When the first `unavailable` came.
    first_refusal: Option<Instant>,
    /// When the last acknowledgement came.
    last_ack: Option<Instant>,
    /// Refusals other than `unavailable` (each one is a defect).
    other: Vec<String>,
}

/// Runs the scenario in `dir`, on a tmpfs of `size_mib` with `free_mib` left free.
pub async fn run(
    vigil: &Path,
    dir: &Path,
    size_mib: u64,
    free_mib: u64,
) -> anyhow::Result<Outcome> {
    let data = dir.join("data");
    let mut tmpfs = match Tmpfs::mount(&data, size_mib) {
        Ok(t) => t,
        Err(why) => return Ok(Outcome::skipped(format!("cannot mount a tmpfs: {why}"))),
    };
    let nats = NatsServer::start();
    let mut store = LoneStore::start(vigil, &nats.url(), &data, &dir.join("store.log"))?;
    let result = fill_and_free(&nats, &mut store, &data, free_mib).await;
    // Kill the store before unmounting its disk, whatever happened.
    let stopped = store.stop(Duration::from_secs(15)).await;
    let (mut outcome, acks) = match result {
        Ok(r) => r,
        Err(e) => {
            drop(store);
            tmpfs.unmount()?;
            return Err(e);
        }
    };
    if stopped.is_none() {
        outcome
            .problems
            .push("the store did not stop on SIGTERM within 15 s".into());
    }
    // For `ops/chaos check` on a kept directory.
    let mut lines = Vec::new();
    for a in &acks {
        lines.extend(serde_json::to_vec(a)?);
        lines.push(b'\n');
    }
    fs::write(dir.join("acks.jsonl"), lines)?;
    let stderr = store.stderr();
    if stderr.contains("panicked") {
        outcome.problems.push(format!(
            "the store panicked; see {}",
            dir.join("store.log").display()
        ));
    }
    // The durable view: the stopped store's files against every acknowledgement.
    if stopped.is_some() {
        match check::read_dir(&data.join("store")) {
            Ok(log) => {
                let v = check::check(&log, &acks);
                outcome.lost = outcome.lost.max(v.lost);
                outcome.damaged += v.duplicated + v.position_gaps + v.version_gaps;
                outcome
                    .problems
                    .extend(v.problems.iter().map(|p| format!("on disk: {p}")));
            }
            Err(e) => outcome
                .problems
                .push(format!("reading the stopped store's files: {e:#}")),
        }
    }
    drop(store);
    if !outcome.ok() {
        // The store's files go with the tmpfs: keep a copy for the kept directory.
        if let Err(e) = crate::damage::copy_dir(&data.join("store"), &dir.join("store")) {
            eprintln!("diskfull: could not copy the store's files out of the tmpfs: {e:#}");
        }
    }
    tmpfs.unmount()?;
    Ok(outcome)
}

async fn fill_and_free(
    nats: &NatsServer,
    store: &mut LoneStore,
    data: &Path,
    free_mib: u64,
) -> anyhow::Result<(Outcome, Vec<Ack>)> {
    let client = StoreClient::new(
        runtime::nats::connect(
            &nats.url(),
            "chaos-diskfull",
            None,
            runtime::nats::Mode::Tool,
        )
        .await?,
        Duration::from_secs(5),
    );
    if let Some(status) = store.serving(&client, Duration::from_secs(30)).await? {
        anyhow::bail!(
            "the store did not start on the tmpfs ({status}): {}",
            store.stderr()
        );
    }
    // The ballast: everything but `free_mib`.
    let avail = available_bytes(data)?;
    let ballast = data.join("ballast");
    let ballast_bytes = avail.saturating_sub(free_mib * 1024 * 1024);
    write_ballast(&ballast, ballast_bytes)?;
    eprintln!(
        "  tmpfs at {}: ballast of {} MiB, {} MiB left for the store",
        data.display(),
        ballast_bytes / (1024 * 1024),
        available_bytes(data)? / (1024 * 1024)
    );

    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|w| tokio::spawn(writer(client.clone(), w, tally.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    let mut problems = Vec::new();

    // Fill: wait for the first refusal, then keep it full for a while.
    let full_since = loop {
        if let Some(t) = lock(&tally).first_refusal {
            break Some(t);
        }
        if started.elapsed() > FILL_TIMEOUT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(full_since) = full_since else {
        stop.store(true, Ordering::Release);
        anyhow::bail!(
            "the disk did not fill within {} s ({} acknowledged)",
            FILL_TIMEOUT.as_secs(),
            lock(&tally).acks.len()
        );
    };
    eprintln!(
        "  disk full after {:.1} s: {} acknowledged, appends refused",
        full_since.duration_since(started).as_secs_f64(),
        lock(&tally).acks.len()
    );
    tokio::time::sleep(FULL_FOR).await;
    // While full, reads are served.
    if let Err(e) = client.read(1, 10).await {
        problems.push(format!("a read while the disk was full failed: {e}"));
    }
    let (refused, acked_while_full) = {
        let t = lock(&tally);
        let acked = t
            .last_ack
            .is_some_and(|a| a > full_since + Duration::from_secs(1));
        (t.refused, acked)
    };
    if acked_while_full {
        // Not a failure of the store: the disk had room again (e.g. fjall freed a journal).
        eprintln!("  note: appends were acknowledged again while the ballast was still there");
    }

    // Space returns.
    fs::remove_file(&ballast).context("deleting the ballast")?;
    let freed = Instant::now();
    eprintln!("  ballast deleted: waiting for the store to resume by itself");
    let resumed = loop {
        if lock(&tally).last_ack.is_some_and(|a| a > freed) {
            break Some(freed.elapsed());
        }
        if freed.elapsed() > RESUME_TIMEOUT {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    if resumed.is_none() {
        problems.push(format!(
            "no append was acknowledged within {} s of space returning; the store's last words: {}",
            RESUME_TIMEOUT.as_secs(),
            store.stderr().lines().last().unwrap_or("")
        ));
    } else {
        // Write on for a moment after resuming.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    stop.store(true, Ordering::Release);
    for t in tasks {
        t.await??;
    }

    let (acks, message, other) = {
        let t = lock(&tally);
        (
            t.acks.clone(),
            t.message.clone().unwrap_or_default(),
            t.other.clone(),
        )
    };
    problems.extend(other);
    if !message.to_lowercase().contains("full") {
        problems.push(format!(
            "the refusal does not say the disk is full: {message:?}"
        ));
    }
    // The live view: the whole log through the running store.
    let (lost, damaged) = match check::read_running(&client).await {
        Ok(log) => {
            let v = check::check(&log, &acks);
            problems.extend(v.problems.iter().cloned());
            (v.lost, v.duplicated + v.position_gaps + v.version_gaps)
        }
        Err(e) => {
            problems.push(format!("reading the log through the store: {e:#}"));
            (0, 0)
        }
    };
    let outcome = Outcome {
        skipped: None,
        refused,
        message,
        acknowledged: acks.len(),
        lost,
        damaged,
        resumed,
        problems,
    };
    Ok((outcome, acks))
}

fn lock(t: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    t.lock().unwrap_or_else(|p| p.into_inner())
}

/// Appends ~2 KiB events to a stream of its own, one at a time, each retried with the same
/// ids until acknowledged, until `stop`.
async fn writer(
    store: StoreClient,
    w: usize,
    tally: Arc<Mutex<Tally>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let stream = StreamName::parse(&format!("chaos-{}", Uuid::new_v4()))?;
    let pad = "x".repeat(2000);
    let mut n = 0u64;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let event = writers::chaos_event(
            &format!("chaos-diskfull-{w}"),
            json!({"writer": w, "n": n, "pad": pad}),
        );
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events: vec![event.clone()],
        };
        loop {
            match store.append(&request).await {
                Ok(ok) => {
                    let mut t = lock(&tally);
                    t.acks.push(Ack {
                        id: event.id,
                        stream: stream.as_str().to_owned(),
                        position: ok.first_position,
                        version: ok.stream_version,
                        via: "nats".into(),
                    });
                    t.last_ack = Some(Instant::now());
                    break;
                }
                Err(ClientError::Store(e)) if e.code == ErrorCode::Unavailable => {
                    let mut t = lock(&tally);
                    t.refused += 1;
                    t.first_refusal.get_or_insert_with(Instant::now);
                    if t.message.is_none() {
                        t.message = Some(e.message);
                    }
                }
                Err(ClientError::Store(e)) => {
                    lock(&tally).other.push(format!(
                        "an append was refused as {:?}: {}",
                        e.code, e.message
                    ));
                    break;
                }
                // No answer: the outcome is unknown; the retry with the same ids settles it.
                Err(_) => {}
            }
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Bytes available to an unprivileged writer on the filesystem of `path` (`df`).
fn available_bytes(path: &Path) -> anyhow::Result<u64> {
    let out = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(path)
        .output()
        .context("running df")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read df's answer for {}", path.display()))
}

/// Writes `bytes` of real (non-sparse) data at `path`.
fn write_ballast(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut f = fs::File::create(path).context("creating the ballast")?;
    let chunk = vec![0xA5u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).context("writing the ballast")?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}
