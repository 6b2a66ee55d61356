//! Process crashes: kill -9 of the store, of each service, of the gateway and of nats-server,
//! at random moments, under 4 concurrent writers (2 through the HTTP API, 2 over NATS);
//! start it again; repeat. Then stop the writers and let the checker read the whole log.
//!
//! Figures: cycles, acknowledged writes, lost, duplicated, and the longest recovery (from a
//! restart to the next field report acknowledged through the gateway).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::centre::Centre;
use crate::check::{self, Verdict};
use crate::writers::{self, AckFile, Progress};

/// How a crash run went.
pub struct Outcome {
    /// Cycles run.
    pub cycles: usize,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// The longest recovery.
    pub max_recovery: Duration,
    /// Whether the board equals a fresh fold (the error says how not).
    pub board: Result<(), String>,
    /// Processes that died without being killed.
    pub crashed: Vec<String>,
}

impl Outcome {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.board.is_ok() && self.crashed.is_empty()
    }

    /// One line of figures.
    pub fn line(&self, name: &str) -> String {
        format!(
            "{name}: {} cycles, {} acknowledged, {} lost, {} duplicated, {} gaps, max recovery {:.1} s, board {} — {}",
            self.cycles,
            self.verdict.acknowledged,
            self.verdict.lost,
            self.verdict.duplicated,
            self.verdict.position_gaps + self.verdict.version_gaps,
            self.max_recovery.as_secs_f64(),
            if self.board.is_ok() {
                "= fresh fold"
            } else {
                "DIFFERS"
            },
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }
}

/// Runs `cycles` kill -9/restart cycles against a fresh centre in `dir`.
pub async fn run(vigil: &Path, dir: &Path, cycles: usize) -> anyhow::Result<Outcome> {
    let mut centre = Centre::start(vigil, dir, &[]).await?;
    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;
    let progress = Progress::default();
    let tasks = writers::spawn(
        Some((centre.http, &centre.field_token)),
        2,
        &centre.nats_url(),
        2,
        &acks,
        &progress,
    );
    let victims = centre.victims();
    let mut max_recovery = Duration::ZERO;
    let mut rng = rand::rng();
    for cycle in 1..=cycles {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_200))).await;
        let victim = victims[rng.random_range(0..victims.len())].clone();
        centre.kill(&victim);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..500))).await;
        let restarted = Instant::now();
        centre.start_again(&victim)?;
        let recovery = progress
            .http_ack_after(restarted, Duration::from_secs(60))
            .await
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no field report was acknowledged within 60 s of restarting {victim} (cycle {cycle}); see the logs in {}",
                    dir.display()
                )
            })?;
        max_recovery = max_recovery.max(recovery);
        eprintln!(
            "  cycle {cycle}/{cycles}: kill -9 {victim}, back in {:.2} s, {} acknowledged so far",
            recovery.as_secs_f64(),
            progress.acked.load(Ordering::Acquire)
        );
    }
    writers::stop(tasks, &progress).await?;
    let crashed = centre.crashed();
    // The board is read from the running gateway; the log from the store's files once the
    // store is stopped (what a restart would read).
    let store = writers::store_client(
        &centre.nats_url(),
        "chaos-checker",
        runtime::nats::Mode::Tool,
        Duration::from_secs(5),
    )
    .await?;
    let running = check::read_running(&store).await?;
    let board = check::board_matches(
        centre.http,
        &centre.duty_token,
        &running,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| e.to_string());
    centre.stop();
    let log = check::read_dir(&dir.join("store"))?;
    let verdict = check::check(&log, &AckFile::read(&acks_path)?);
    Ok(Outcome {
        cycles,
        verdict,
        max_recovery,
        board,
        crashed,
    })
}
