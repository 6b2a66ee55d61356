//! Damaged files (issue #8, item 4): what `vigil store` does when the files of a stopped
//! store are damaged on disk.
//!
//! # What it breaks
//! It writes acknowledged events into a real store (`vigil store` over NATS, loopback only)
//! in two phases, so that the store holds both kinds of fjall data file:
//! - **phase A**: two NATS writers append concurrently for a few seconds; the store is
//!   stopped and its memtables are flushed (opening the directory with fjall, as
//!   `services/store/tests/chain.rs` does), so phase A's events live in **table files**
//!   (`keyspaces/<n>/tables/<id>`; keyspaces 1–3 are `log`, `streams`, `ids`);
//! - **phase B**: the store starts again and one writer appends a few hundred events one
//!   append at a time; after each acknowledgement the scenario records the length of the
//!   **journal** (`<n>.jnl`), i.e. the byte where that group's journal record ends. Then one
//!   more append is made and *not* counted as acknowledged: it stands for the group in flight
//!   when the power went. The store's acknowledged-head mark (`<store>/acknowledged-head`,
//!   see `vigil_store::log::mark`) is then set to the last acknowledged position, as a power
//!   loss during the in-flight group would leave it (a clean stop records the in-flight one).
//!
//! Then, each on a fresh copy of that store directory, one kind of damage:
//! - **torn tail**: the journal cut at a random byte of the in-flight group (what a power loss
//!   can leave: only bytes written after the last fsync are torn), several seeds;
//! - **torn deep**: the journal cut at a random byte below that (a disk that lost synced
//!   writes), several seeds; and a table file cut by a few bytes;
//! - **truncated in the middle**: the journal, a `log` table and an `ids` table cut to half;
//! - **bit flip**: one bit flipped at a random offset of a random data file (journal or
//!   table), several seeds;
//! - **deleted**: the journal, a `log` table, an `ids` table;
//! - **the mark**: deleted (a store from before marks), one bit flipped in it, and the
//!   journal cut to half with the mark deleted (what the mark's one-second lag leaves).
//!
//! After each, `vigil store` is started on the copy. If it serves, the scenario waits for the
//! verdict of the store's scan of the whole store after start (`event log scanned` on its
//! stderr, or its exit), then reads the whole log back through it and stops it. Then
//! `vigil verify` is run on the copy.
//!
//! # What it promises
//! Each case must end in one of two ways, and never in a panic (`panicked` on stderr of the
//! store or of `vigil verify`):
//! - **recovered**: the store starts; the log it serves is a consistent prefix (positions
//!   1…head without a hole, each stream's versions without a hole, no event twice, every
//!   acknowledged event at or below the head exactly where it was acknowledged) that contains
//!   every acknowledged event the damage left provable, and `vigil verify` finds it intact;
//! - **refused clearly**: the store exits by itself — at open, or as soon as its scan after
//!   start finds the damage — with a message that names the damage (damaged, missing,
//!   checksum, corrupt…) and the next step (`vigil verify`, restore from a backup); and
//!   `vigil verify` finds the copy damaged too (the operator's two tools agree).
//!
//! The torn tail of the in-flight group and the undamaged control must be *recovered* with
//! every acknowledgement: the store fsyncs before it acknowledges, so a power loss cannot take
//! anything acknowledged, and must not stop the store either.
//!
//! **What "provable" means.** With the mark in place, every acknowledged event up to the mark
//! is provable: the store refuses a log that ends before it, so a store that serves must hold
//! all of them (before the mark, a damaged journal record lost what followed it silently).
//! Without a mark, an acknowledged event is provable when every byte that holds it is intact
//! *and still reachable*:
//! - damage in the journal at byte `o` (a cut at `o`, a flipped bit at `o`, a cut to half, a
//!   deleted journal: `o = 0`) leaves provable the phase A events (in table files) and the
//!   phase B events whose group's journal record ends at or before `o`. The journal is read
//!   front to back and groups are atomic, so a damaged record hides every group after it,
//!   and a group cut in two is discarded whole — those events were acknowledged, but their only
//!   copy is gone or unreadable, and no store could give them back;
//! - damage in a table file leaves provable the phase B events (all in the journal); which
//!   phase A events a table block held is not known to the scenario, so none of them is
//!   claimed — but any that the store serves must be where they were acknowledged, without
//!   a hole.
//!
//! Figures: cases, how many recovered with every provable ack, how many refused clearly, panics
//! and silent gaps (a served log with a hole, a duplicate, or another event where an
//! acknowledged one was).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::SeedableRng;
use rand::rngs::StdRng;
use runtime::StoreClient;
use runtime::store_client::ClientError;

use crate::check;
use crate::writers::Ack;
use plan::{Plan, plan, provable};
use write::{Written, write};

mod plan;
mod write;

/// fjall preallocates each new journal to this size (zeros after the data).
const JOURNAL_PREALLOCATED: u64 = 64 * 1024 * 1024;

/// The fjall keyspaces of the store, by id (they are created in this order).
const KEYSPACES: [(&str, &str); 3] = [("1", "log"), ("2", "streams"), ("3", "ids")];

/// One `vigil store` process on its own, its stderr in a file; killed when dropped.
pub struct LoneStore {
    child: Option<Child>,
    /// Its stderr.
    pub log: PathBuf,
}

impl LoneStore {
    /// Starts `vigil store` on `data_dir` (the store's files are in `<data_dir>/store`).
    pub fn start(
        vigil: &Path,
        nats_url: &str,
        data_dir: &Path,
        log: &Path,
    ) -> anyhow::Result<LoneStore> {
        let stderr = fs::File::create(log)
            .with_context(|| format!("creating the store's log {}", log.display()))?;
        let child = Command::new(vigil)
            .args(["store", "--nats-url", nats_url, "--data-dir"])
            .arg(data_dir)
            // The server's info lines say when the scan after start is done.
            .env("RUST_LOG", "warn,vigil_store::server=info")
            .env_remove("VIGIL_NATS_USER")
            .env_remove("VIGIL_NATS_PASSWORD")
            .env_remove("VIGIL_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} store", vigil.display()))?;
        Ok(LoneStore {
            child: Some(child),
            log: log.to_owned(),
        })
    }

    /// Waits until the store answers a read (`Ok(None)`: it serves) or exits (`Ok(Some)`).
    pub async fn serving(
        &mut self,
        store: &StoreClient,
        timeout: Duration,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.as_mut() {
                Some(c) => {
                    if let Some(status) = c.try_wait()? {
                        self.child = None;
                        return Ok(Some(status));
                    }
                }
                None => anyhow::bail!("the store is not running"),
            }
            match store.read(1, 1).await {
                // Any answer, even a refusal to read, means it is up and serving.
                Ok(_) | Err(ClientError::Store(_)) => return Ok(None),
                Err(_) => {}
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the store neither served nor exited within {} s; see {}",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `needle` is on its stderr (`Ok(None)`) or it exits (`Ok(Some)`).
    pub async fn wait_for(
        &mut self,
        needle: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return Ok(None);
            }
            match self.child.as_mut() {
                Some(c) => {
                    if let Some(status) = c.try_wait()? {
                        self.child = None;
                        return Ok(Some(status));
                    }
                }
                None => anyhow::bail!("the store is not running"),
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "the store neither said {needle:?} nor exited within {} s; see {}",
                    timeout.as_secs(),
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM (a clean stop: the commit in flight finishes, the log is flushed), then
    /// SIGKILL after `grace`. The exit status, if it exited by itself.
    pub async fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// What it wrote on stderr so far.
    pub fn stderr(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for LoneStore {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How one case ended.
#[derive(Debug, Clone)]
pub enum Ending {
    /// Started and served a consistent prefix with every provable ack.
    Recovered {
        /// Its head.
        head: u64,
        /// Acknowledged events in that prefix.
        acked: usize,
        /// Provable acknowledged events (all of them are in it).
        provable: usize,
    },
    /// Refused to start with a clear message.
    Refused {
        /// The message.
        message: String,
    },
    /// Anything else.
    Failed {
        /// What went wrong.
        why: String,
        /// A served log with a hole, a duplicate, or another event where an acknowledged one
        /// was.
        silent_gap: bool,
    },
}

/// One case's result.
pub struct Case {
    /// What was damaged.
    pub name: String,
    /// How it ended.
    pub ending: Ending,
    /// `panicked` on the store's or `vigil verify`'s stderr.
    pub panicked: bool,
    /// What `vigil verify` said, in one line.
    pub verify: String,
}

/// How the scenario went.
pub struct Outcome {
    /// Every case.
    pub cases: Vec<Case>,
}

impl Outcome {
    fn count(&self, f: impl Fn(&Case) -> bool) -> usize {
        self.cases.iter().filter(|c| f(c)).count()
    }

    /// Whether every case ended well.
    pub fn ok(&self) -> bool {
        !self.cases.is_empty()
            && self
                .cases
                .iter()
                .all(|c| !c.panicked && !matches!(c.ending, Ending::Failed { .. }))
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        let recovered = self.count(|c| matches!(c.ending, Ending::Recovered { .. }));
        let refused = self.count(|c| matches!(c.ending, Ending::Refused { .. }));
        let panics = self.count(|c| c.panicked);
        let gaps = self.count(|c| {
            matches!(
                c.ending,
                Ending::Failed {
                    silent_gap: true,
                    ..
                }
            )
        });
        let other = self.count(|c| {
            matches!(
                c.ending,
                Ending::Failed {
                    silent_gap: false,
                    ..
                }
            )
        });
        let other = if other > 0 {
            format!(", {other} other failures")
        } else {
            String::new()
        };
        format!(
            "damage: {} cases ({recovered} recovered with every provable ack, {refused} refused clearly), {panics} panics, {gaps} silent gaps{other} — {}",
            self.cases.len(),
            if self.ok() { "PASS" } else { "FAIL" }
        )
    }

    /// The failed cases, in words.
    pub fn problems(&self) -> Vec<String> {
        self.cases
            .iter()
            .filter_map(|c| match (&c.ending, c.panicked) {
                (Ending::Failed { why, .. }, _) => Some(format!("{}: {why}", c.name)),
                (_, true) => Some(format!("{}: panicked", c.name)),
                _ => None,
            })
            .collect()
    }
}

/// Runs the scenario in `dir`: `seeds` seeds per random kind of damage, starting at `seed`.
pub async fn run(vigil: &Path, dir: &Path, seeds: usize, seed: u64) -> anyhow::Result<Outcome> {
    let written = write(vigil, dir).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let plans = plan(&written, seeds.max(1), &mut rng)?;
    let total = plans.len();
    let mut cases = Vec::with_capacity(total);
    for (i, p) in plans.into_iter().enumerate() {
        let case = run_case(vigil, dir, &written, i + 1, p).await?;
        let shown = match &case.ending {
            Ending::Recovered {
                head,
                acked,
                provable,
            } => format!(
                "recovered to position {head}: {acked} acknowledged in it, all {provable} provable present"
            ),
            Ending::Refused { message } => format!("refused: {message}"),
            Ending::Failed { why, .. } => format!("FAILED: {why}"),
        };
        eprintln!(
            "  case {}/{total} {}: {shown}; verify: {}{}",
            i + 1,
            case.name,
            case.verify,
            if case.panicked { " — PANICKED" } else { "" }
        );
        cases.push(case);
    }
    Ok(Outcome { cases })
}

/// Words that name damage, and words that name the next step, in a refusal.
const NAMES_DAMAGE: [&str; 6] = [
    "damaged",
    "missing",
    "checksum",
    "corrupt",
    "truncated",
    "unreadable",
];
const NAMES_NEXT_STEP: [&str; 2] = ["vigil verify", "backup"];

fn clear(message: &str) -> bool {
    let m = message.to_lowercase();
    NAMES_DAMAGE.iter().any(|w| m.contains(w)) && NAMES_NEXT_STEP.iter().any(|w| m.contains(w))
}

/// The line of a store's stderr that says why it stopped.
fn refusal(stderr: &str) -> String {
    stderr
        .lines()
        .rev()
        .find(|l| l.contains("vigil:"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(nothing on stderr)")
        .trim()
        .to_owned()
}

/// `vigil verify` on a data directory: (exit code, its output, one line saying what it found).
fn verify(vigil: &Path, data_dir: &Path) -> anyhow::Result<(Option<i32>, String, String)> {
    let out = Command::new(vigil)
        .arg("verify")
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .context("running vigil verify")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("INTACT") || l.starts_with("BROKEN") || l.starts_with("NOT"))
        .or_else(|| text.lines().rev().find(|l| l.contains("vigil:")))
        .unwrap_or("(no verdict)")
        .trim()
        .to_owned();
    Ok((out.status.code(), text, summary))
}

async fn run_case(
    vigil: &Path,
    dir: &Path,
    w: &Written,
    index: usize,
    p: Plan,
) -> anyhow::Result<Case> {
    let case_dir = dir.join(format!("case-{index:02}"));
    copy_dir(&w.original, &case_dir)?;
    let store_dir = case_dir.join("store");
    if !p.marked {
        fs::remove_file(store::log::mark::path(&store_dir))?;
    }
    p.damage
        .apply(&store_dir)
        .with_context(|| format!("damaging {:?} in {}", p.damage.file(), store_dir.display()))?;
    let provable = provable(w, &p);

    let mut s = LoneStore::start(vigil, &w.nats.url(), &case_dir, &case_dir.join("store.log"))?;
    let mut served = s.serving(&w.store, Duration::from_secs(30)).await;
    if let Ok(None) = served {
        // It serves: wait for the verdict of its scan of the whole store after start.
        served = s
            .wait_for("event log scanned", Duration::from_secs(60))
            .await;
    }
    let (ending, stderr) = match served {
        Err(e) => (
            Ending::Failed {
                why: e.to_string(),
                silent_gap: false,
            },
            s.stderr(),
        ),
        Ok(Some(status)) => {
            let stderr = s.stderr();
            (refused(&p, status, &stderr), stderr)
        }
        Ok(None) => {
            let read = tokio::time::timeout(Duration::from_secs(60), check::read_running(&w.store))
                .await
                .map_err(|_| anyhow::anyhow!("reading the whole log took over 60 s"))
                .and_then(|r| r);
            let stopped = s.stop(Duration::from_secs(15)).await;
            let stderr = s.stderr();
            let ending = match read {
                Err(e) => Ending::Failed {
                    why: format!("the store started on a damaged log, whose reads fail: {e:#}"),
                    silent_gap: false,
                },
                Ok(log) => judge(w, &log, &provable),
            };
            let ending = match (ending, stopped) {
                (ending @ Ending::Failed { .. }, _) => ending,
                (_, None) => Ending::Failed {
                    why: "the store did not stop on SIGTERM within 15 s".into(),
                    silent_gap: false,
                },
                (ending, Some(_)) => ending,
            };
            (ending, stderr)
        }
    };
    let (code, verify_text, verify_line) = verify(vigil, &case_dir)?;
    let panicked = stderr.contains("panicked") || verify_text.contains("panicked");
    // A store that serves must be one `vigil verify` finds intact, and a refused one must be
    // one it finds damaged: the operator's two tools agree.
    let ending = match ending {
        Ending::Recovered { .. } if code != Some(0) => Ending::Failed {
            why: format!("the store started, but `vigil verify` finds damage: {verify_line}"),
            silent_gap: false,
        },
        Ending::Refused { .. } if code == Some(0) => Ending::Failed {
            why: "the store refused, but `vigil verify` finds the store intact".into(),
            silent_gap: false,
        },
        ending => ending,
    };
    if !panicked && !matches!(ending, Ending::Failed { .. }) {
        let _ = fs::remove_dir_all(&case_dir);
    }
    Ok(Case {
        name: p.name,
        ending,
        panicked,
        verify: verify_line,
    })
}

/// Judges a store that exited by itself after a damage.
fn refused(p: &Plan, status: ExitStatus, stderr: &str) -> Ending {
    let message = refusal(stderr);
    if status.success() {
        Ending::Failed {
            why: format!("the store exited by itself with success: {message}"),
            silent_gap: false,
        }
    } else if p.must_recover {
        Ending::Failed {
            why: format!("refused a store it must recover: {message}"),
            silent_gap: false,
        }
    } else if clear(stderr) {
        Ending::Refused { message }
    } else {
        Ending::Failed {
            why: format!(
                "refused without naming the damage and the next step (`vigil verify`, a backup): {message}"
            ),
            silent_gap: false,
        }
    }
}

/// Judges a log the store served after a damage.
fn judge(w: &Written, log: &[events::RecordedEvent], provable: &[&Ack]) -> Ending {
    let head = log.len() as u64;
    let within: Vec<Ack> = w
        .acks
        .iter()
        .filter(|a| a.position <= head)
        .cloned()
        .collect();
    let v = check::check(log, &within);
    if v.position_gaps + v.version_gaps + v.duplicated + v.lost + v.misordered > 0 {
        return Ending::Failed {
            why: format!(
                "the store served a log with {} position gaps, {} version gaps, {} duplicates and {} acknowledged events replaced: {}",
                v.position_gaps,
                v.version_gaps,
                v.duplicated,
                v.lost,
                v.problems.join("; ")
            ),
            silent_gap: true,
        };
    }
    let missing: Vec<&&Ack> = provable.iter().filter(|a| a.position > head).collect();
    if let Some(first) = missing.first() {
        return Ending::Failed {
            why: format!(
                "{} provable acknowledged events are missing (the log ends at {head}; the first missing is at position {})",
                missing.len(),
                first.position
            ),
            silent_gap: false,
        };
    }
    Ending::Recovered {
        head,
        acked: within.len(),
        provable: provable.len(),
    }
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    Ok(testkit::copy_dir(from, to)?)
}
