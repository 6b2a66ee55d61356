//! Soak: a steady, realistic load for a long time, with a crash now and then, watching
//! memory and open files of every process.
//!
//! The load: field reports through the gateway (2 writers), appends over NATS (1 writer),
//! security levels set by a duty officer, travel clearances requested and approved, a
//! broadcast to Somalia's agencies now and then, duty officers closing reported incidents
//! beyond the newest [`KEEP_OPEN`] (so open incidents reach a steady state, as in a centre),
//! and `--screens` WebSocket wall screens following the board (reference data from
//! `ops/reference/sample.jsonl` via `vigil import`).
//! Every `--crash-every` a random service (not the store or the gateway, so their memory
//! can be followed across the whole run) is killed -9 and started again.
//!
//! Every `--sample-every` it prints each process's resident memory and open file
//! descriptors. At the end: a process that ran the whole time must not have grown more than
//! [`MAX_GROWTH`] (plus a small allowance) between the first sample after warm-up and the
//! last, and the checker's verdict must hold.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rand::Rng;
use serde_json::json;

use crate::centre::Centre;
use crate::check::{self, Verdict};
use crate::writers::{self, AckFile, Progress};

/// Largest growth allowed between warm-up and the end, as a fraction.
pub const MAX_GROWTH: f64 = 0.5;
/// Memory growth always allowed (allocator noise, caches filling), in MiB.
const RSS_ALLOWANCE_MIB: f64 = 32.0;
/// Open files always allowed beyond the fraction.
const FD_ALLOWANCE: u64 = 16;

/// Resident memory (MiB) and open files of one process.
pub type Reading = (f64, u64);

/// A process's resident memory (MiB) and open files.
fn reading(pid: u32) -> Option<Reading> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((kb / 1024.0, fds))
}

/// Settings of a soak run.
pub struct Settings {
    /// How long.
    pub duration: Duration,
    /// WebSocket screens.
    pub screens: usize,
    /// A crash this often.
    pub crash_every: Duration,
    /// A reading this often.
    pub sample_every: Duration,
}

/// How a soak went.
pub struct Outcome {
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Crashes caused.
    pub crashes: usize,
    /// Per process: (name, first, last) readings of those that ran the whole time.
    pub growth: Vec<(String, Reading, Reading)>,
    /// Board frames the screens received.
    pub frames: u64,
    /// What went wrong besides the verdict.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether it held.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.problems.is_empty()
    }

    /// One line of figures.
    pub fn line(&self, duration: Duration) -> String {
        let worst = self
            .growth
            .iter()
            .map(|(n, a, b)| (n, b.0 - a.0, b.1 as i64 - a.1 as i64))
            .max_by(|x, y| x.1.total_cmp(&y.1));
        format!(
            "soak: {:.1} min, {} crashes, {} acknowledged, {} lost, {} duplicated, {} board frames to screens, largest memory growth {} — {}",
            duration.as_secs_f64() / 60.0,
            self.crashes,
            self.verdict.acknowledged,
            self.verdict.lost,
            self.verdict.duplicated,
            self.frames,
            worst.map_or_else(
                || "n/a".to_owned(),
                |(n, mib, fds)| format!("{n} {mib:+.1} MiB, {fds:+} fds")
            ),
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }
}

/// POST/PUT with the duty officer's token; the status.
async fn send(
    http: SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> u16 {
    testkit::http::json(http, method, path, Some(token), Some(&body))
        .await
        .map_or(0, |a| a.status)
}

/// The duty officer's work: levels, clearances, broadcasts, at a steady pace.
async fn duty_load(http: SocketAddr, token: String, progress: Progress) {
    let mut n = 0u64;
    let areas = ["SOM-BAN", "SOM-BAY", "SOM-WOQ"];
    while !progress.stop.load(Ordering::Acquire) {
        n += 1;
        let area = areas[(n % 3) as usize];
        let level = 2 + (n % 3);
        send(
            http,
            &token,
            "PUT",
            &format!("/api/v1/areas/{area}/level"),
            json!({"level": level, "reason": format!("soak {n}")}),
        )
        .await;
        let id = uuid::Uuid::new_v4();
        let today = time::OffsetDateTime::now_utc().date();
        let itinerary = json!([{"country": "SO", "area": "SOM-BAN",
            "from": today.to_string(), "to": (today + time::Duration::days(3)).to_string()}]);
        if send(
            http,
            &token,
            "POST",
            "/api/v1/clearances",
            json!({"id": id, "traveller": "P-0010", "itinerary": itinerary, "purpose": "soak"}),
        )
        .await
            == 201
        {
            send(
                http,
                &token,
                "POST",
                &format!("/api/v1/clearances/{id}/approve"),
                json!({}),
            )
            .await;
        }
        if n.is_multiple_of(10) {
            send(
                http,
                &token,
                "POST",
                "/api/v1/broadcasts",
                json!({"title": format!("Soak advisory {n}"), "body": "Routine check.",
                    "severity": "low", "audience": {"country": "SO"}}),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Open incidents the closer leaves open; the rest are closed as they come.
const KEEP_OPEN: usize = 100;

/// The duty officers closing incidents, so that open incidents stay about [`KEEP_OPEN`]
/// (as in a real centre, where reports are resolved) and what the board and the services
/// hold for open incidents reaches a steady state: a soak whose open incidents only grow
/// measures that growth, not leaks.
async fn closer(http: SocketAddr, token: String, progress: Progress, closed: Arc<AtomicU64>) {
    while !progress.stop.load(Ordering::Acquire) {
        let open = testkit::http::json(
            http,
            "GET",
            "/api/v1/incidents?status=open&limit=500",
            Some(&token),
            None,
        )
        .await
        .map(|a| a.json())
        .unwrap_or_default();
        let items = open["items"].as_array();
        let ids: Vec<String> = items
            .into_iter()
            .flatten()
            .skip(KEEP_OPEN)
            .filter_map(|i| i["id"].as_str().map(str::to_owned))
            .collect();
        futures::stream::iter(ids)
            .for_each_concurrent(8, |id| {
                let (token, closed) = (token.clone(), closed.clone());
                async move {
                    let status = send(
                        http,
                        &token,
                        "POST",
                        &format!("/api/v1/incidents/{id}/close"),
                        json!({"reason": "soak: resolved"}),
                    )
                    .await;
                    if status == 200 {
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A wall screen: follows the board, counting frames, reconnecting when cut.
async fn screen(http: SocketAddr, token: String, frames: Arc<AtomicU64>, progress: Progress) {
    while !progress.stop.load(Ordering::Acquire) {
        let Some(mut ws) = writers::subscribe_board(http, &token, 0).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            frames.fetch_add(1, Ordering::Relaxed);
            if progress.stop.load(Ordering::Acquire) {
                return;
            }
        }
    }
}

/// Runs a soak in `dir`.
pub async fn run(vigil: &Path, dir: &Path, s: &Settings) -> anyhow::Result<Outcome> {
    let mut centre = Centre::start(vigil, dir, &[]).await?;
    let import = std::process::Command::new(vigil)
        .args([
            "import",
            "ops/reference/sample.jsonl",
            "--nats-url",
            &centre.nats_url(),
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .context("running vigil import")?;
    if !import.status.success() {
        anyhow::bail!(
            "vigil import failed: {}",
            String::from_utf8_lossy(&import.stderr)
        );
    }
    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;
    let progress = Progress::default();
    let tasks = writers::spawn(
        Some((centre.http, &centre.field_token)),
        2,
        &centre.nats_url(),
        1,
        &acks,
        &progress,
    );
    let duty = tokio::spawn(duty_load(
        centre.http,
        centre.duty_token.clone(),
        progress.clone(),
    ));
    let closed = Arc::new(AtomicU64::new(0));
    let closing = tokio::spawn(closer(
        centre.http,
        centre.duty_token.clone(),
        progress.clone(),
        closed.clone(),
    ));
    let frames = Arc::new(AtomicU64::new(0));
    let screens: Vec<_> = (0..s.screens)
        .map(|_| {
            tokio::spawn(screen(
                centre.http,
                centre.duty_token.clone(),
                frames.clone(),
                progress.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let warm_up = s.duration / 4;
    let mut first: std::collections::HashMap<String, (u32, Reading)> = Default::default();
    let mut last: std::collections::HashMap<String, (u32, Reading)> = Default::default();
    let mut next_crash = started + s.crash_every;
    let mut next_sample = started;
    let mut crashes = 0;
    let mut rng = rand::rng();
    let victims: Vec<String> = centre
        .victims()
        .into_iter()
        .filter(|v| !matches!(v.as_str(), "store" | "gateway" | "nats-server"))
        .collect();
    while started.elapsed() < s.duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = Instant::now();
        if now >= next_crash && !victims.is_empty() {
            let v = &victims[rng.random_range(0..victims.len())];
            centre.kill(v);
            centre.start_again(v)?;
            crashes += 1;
            next_crash = now + s.crash_every;
        }
        if now >= next_sample {
            next_sample = now + s.sample_every;
            let mut parts = Vec::new();
            for (name, pid) in centre.pids() {
                let Some(r) = reading(pid) else { continue };
                parts.push(format!("{name} {:.0} MiB/{} fds", r.0, r.1));
                if started.elapsed() >= warm_up {
                    first.entry(name.clone()).or_insert((pid, r));
                }
                last.insert(name, (pid, r));
            }
            eprintln!(
                "  t={:>5.0}s acknowledged {} closed {} frames {} | {}",
                started.elapsed().as_secs_f64(),
                progress.acked.load(Ordering::Acquire),
                closed.load(Ordering::Relaxed),
                frames.load(Ordering::Relaxed),
                parts.join(", ")
            );
        }
    }
    writers::stop(tasks, &progress).await?;
    duty.abort();
    closing.abort();
    for sc in screens {
        sc.abort();
    }
    let mut problems = centre.crashed();
    let mut growth = Vec::new();
    for (name, (pid, a)) in &first {
        let Some((pid_end, b)) = last.get(name) else {
            continue;
        };
        if pid != pid_end {
            continue; // restarted by a crash: not one process's whole life
        }
        if b.0 > a.0 * (1.0 + MAX_GROWTH) + RSS_ALLOWANCE_MIB
            || b.1 as f64 > a.1 as f64 * (1.0 + MAX_GROWTH) + FD_ALLOWANCE as f64
        {
            problems.push(format!(
                "{name} grew from {:.0} MiB/{} fds to {:.0} MiB/{} fds",
                a.0, a.1, b.0, b.1
            ));
        }
        growth.push((name.clone(), *a, *b));
    }
    centre.stop();
    let log = check::read_dir(&dir.join("store"))?;
    let verdict = check::check(&log, &AckFile::read(&acks_path)?);
    Ok(Outcome {
        verdict,
        crashes,
        growth,
        frames: frames.load(Ordering::Relaxed),
        problems,
    })
}
