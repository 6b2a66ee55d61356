//! Slow loris: thousands of half-open connections against a running `vigil up` while field
//! reports keep flowing (issue 13, item 2: 2,000 such sockets used to hold the centre's file
//! descriptors until `accept` failed and authenticated reports timed out).
//!
//! `vigil up` is started the way many systems start a process, with a soft open-file limit
//! of 1,024 under a higher hard limit: it must raise its own. Then, on loopback only:
//! 1. **Baseline**: [`WRITERS`] field officers report at a steady [`REPORTS_PER_SECOND`] in
//!    all for `--seconds`; each report's latency (until acknowledged) is recorded.
//! 2. **Attack**: an attacker holds `--connections` half-open connections (`GET / HT` and
//!    nothing more) from 127.0.0.2, 127.0.0.3, … ([`PER_ADDRESS`] per address, under the
//!    gateway's per-address cap, so the total is what is tested), opening a new one as soon
//!    as the gateway closes one; the same writers report for `--seconds` more from
//!    127.0.0.1, and a prober asks `/readyz` every second.
//!
//! Then `vigil up` is stopped (SIGTERM) and the checker reads the store: every acknowledged
//! report must be there. PASS when nothing is lost, no report attempt failed, every `/readyz`
//! was answered 200, the attacker held its connections, none was held much past the header
//! timeout, `vigil up` runs at its hard open-file limit, and the attack's report p99 stays
//! within [`P99_FACTOR`] × the baseline's (or [`P99_SLACK`] above it, on a noisy machine).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use gateway::auth::Auth;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::check::{self, Verdict};
use crate::writers::AckFile;

/// Field officers reporting at once.
pub const WRITERS: usize = 4;
/// Reports a second, all writers together: a busy crisis in one country.
pub const REPORTS_PER_SECOND: u64 = 20;
/// Half-open connections per attacking address (the gateway allows 256 per address).
pub const PER_ADDRESS: usize = 250;
/// The attack's report p99 may be this many times the baseline's...
pub const P99_FACTOR: f64 = 3.0;
/// ...or this much above it, whichever is larger: the attacker shares the machine's 2 cores,
/// and each of its waves (thousands of connections closed by the header timeout and reopened
/// within a second) costs the centre CPU; the promise is that reports stay well under a
/// second, where before the fix they timed out.
pub const P99_SLACK: Duration = Duration::from_millis(250);
/// A half-open connection may be held this much past the header timeout (timer and
/// scheduling slack on a loaded machine).
pub const HOLD_SLACK: Duration = Duration::from_secs(3);

/// How a slow-loris run went.
pub struct Outcome {
    /// Report latencies without the attack, sorted.
    pub baseline: Vec<Duration>,
    /// Report latencies during the attack, sorted.
    pub attacked: Vec<Duration>,
    /// Report attempts that were not acknowledged (error, timeout or a refusal).
    pub failed_attempts: u64,
    /// `/readyz` probes during the attack, and how many were answered 200.
    pub probes: (u64, u64),
    /// Half-open connections the attacker held at once, at most.
    pub peak_held: u64,
    /// Connections the attacker opened in all.
    pub opened: u64,
    /// Of those, refused by the gateway (503 `too_many_connections`).
    pub refused: u64,
    /// The longest the gateway let a half-open connection live.
    pub longest_hold: Duration,
    /// The gateway's header timeout (its default).
    pub header_timeout: Duration,
    /// `vigil up`'s open-file limit while it ran: soft, hard.
    pub open_files: Option<(u64, u64)>,
    /// The most file descriptors `vigil up` had open during the attack.
    pub peak_fds: u64,
    /// The checker's verdict on the stopped store.
    pub verdict: Verdict,
    /// What went wrong besides the verdict.
    pub problems: Vec<String>,
}

/// The `q`-quantile of sorted `v` (zero when empty).
pub fn quantile(v: &[Duration], q: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl Outcome {
    /// Whether it held.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.problems.is_empty()
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "slowloris: {} half-open held (peak), {} opened, {} refused, longest held {:.1} s (header timeout {} s); reports p50/p99 {:.1}/{:.1} ms without, {:.1}/{:.1} ms with the attack ({} + {} reports, {} failed attempts); /readyz {}/{} answered 200; {} acknowledged, {} lost; vigil up open files soft/hard {}, peak {} fds — {}",
            self.peak_held,
            self.opened,
            self.refused,
            self.longest_hold.as_secs_f64(),
            self.header_timeout.as_secs(),
            ms(quantile(&self.baseline, 0.5)),
            ms(quantile(&self.baseline, 0.99)),
            ms(quantile(&self.attacked, 0.5)),
            ms(quantile(&self.attacked, 0.99)),
            self.baseline.len(),
            self.attacked.len(),
            self.failed_attempts,
            self.probes.1,
            self.probes.0,
            self.verdict.acknowledged,
            self.verdict.lost,
            self.open_files
                .map_or_else(|| "n/a".to_owned(), |(s, h)| format!("{s}/{h}")),
            self.peak_fds,
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }
}

/// A `vigil up` a scenario started (its data in `<dir>/data`, its log `<dir>/vigil-up.log`);
/// stopped with SIGTERM (so it stops its nats-server too), or killed if it does not stop,
/// when dropped.
pub(crate) struct Up {
    child: Option<std::process::Child>,
    pid: u32,
}

impl Up {
    /// `vigil up` with `extra` arguments after the usual ones.
    pub(crate) fn start(
        vigil: &Path,
        dir: &Path,
        nats_port: u16,
        http: SocketAddr,
        metrics: SocketAddr,
        extra: &[String],
    ) -> anyhow::Result<Up> {
        let log = std::fs::File::create(dir.join("vigil-up.log")).context("the process log")?;
        let data = dir.join("data");
        // The soft limit many systems give a process; `vigil up` must raise its own.
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg(r#"ulimit -S -n 1024 && exec "$0" "$@""#)
            .arg(vigil)
            .args(["up", "--data-dir"])
            .arg(&data)
            .args(["--nats-url", &format!("nats://127.0.0.1:{nats_port}")])
            .args(["--http", &http.to_string()])
            .args(["--metrics", &metrics.to_string()])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("VIGIL_NATS_SERVER", testkit::nats_server_bin())
            // The writers report far more than a field officer may by hand.
            .env("VIGIL_FIELD_REPORTS_PER_MINUTE", "1000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // The gateway's own defaults are what is tested.
        for (k, _) in std::env::vars() {
            if k.starts_with("VIGIL_MAX_") || k.starts_with("VIGIL_HTTP_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().context("starting vigil up")?;
        Ok(Up {
            pid: child.id(),
            child: Some(child),
        })
    }

    /// SIGTERM, then up to 30 s for a clean stop, then SIGKILL.
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Soft and hard open-file limits from `/proc/<pid>/limits`.
    fn open_files(&self) -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{}/limits", self.pid)).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut numbers = line
            .trim_start_matches("Max open files")
            .split_whitespace()
            .map(|w| w.parse::<u64>().unwrap_or(u64::MAX));
        Some((numbers.next()?, numbers.next()?))
    }

    fn fds(&self) -> u64 {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).map_or(0, |d| d.count() as u64)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writers' tallies for one phase.
#[derive(Default)]
struct Tally {
    latencies: Mutex<Vec<Duration>>,
    failed: AtomicU64,
}

/// `WRITERS` field officers reporting at `REPORTS_PER_SECOND` in all for `duration`; each
/// report is resent with the same id until acknowledged (the latency counts from the first
/// try), and every acknowledgement is written to `acks`.
async fn report_for(
    http: SocketAddr,
    token: &str,
    duration: Duration,
    acks: &AckFile,
) -> anyhow::Result<(Vec<Duration>, u64)> {
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + duration;
    let every = Duration::from_millis(1000 * WRITERS as u64 / REPORTS_PER_SECOND);
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (tally, acks, auth) = (tally.clone(), acks.clone(), format!("Bearer {token}"));
        tasks.push(tokio::spawn(async move {
            // Spread the writers over the period.
            tokio::time::sleep(every * w as u32 / WRITERS as u32).await;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < until {
                tick.tick().await;
                let id = Uuid::new_v4();
                let body = crate::writers::report_body(id, "Slow loris report")?;
                let started = Instant::now();
                loop {
                    match crate::writers::post_report(http, &auth, id, &body).await {
                        Ok(ack) => {
                            let took = started.elapsed();
                            acks.record(&ack).await?;
                            tally.latencies.lock().await.push(took);
                            break;
                        }
                        Err(answer) => {
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                            if started.elapsed() > Duration::from_secs(60) {
                                anyhow::bail!(
                                    "a report was not acknowledged within 60 s: {answer}"
                                );
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let mut latencies = std::mem::take(&mut *tally.latencies.lock().await);
    latencies.sort();
    Ok((latencies, tally.failed.load(Ordering::Relaxed)))
}

/// What the attacker shares with the scenario.
#[derive(Default)]
struct Attack {
    /// Fired to end the attack (one wake-up per connection, no polling).
    stop: tokio_util::sync::CancellationToken,
    held: AtomicU64,
    peak: AtomicU64,
    opened: AtomicU64,
    refused: AtomicU64,
    connect_errors: AtomicU64,
    longest_hold_ms: AtomicU64,
}

/// One attacker's connection slot: connect from `from`, send half a request line, wait
/// until the gateway closes it, again, until stopped.
async fn hold_one(attack: Arc<Attack>, from: Ipv4Addr, to: SocketAddr) {
    while !attack.stop.is_cancelled() {
        let socket = match tokio::net::TcpSocket::new_v4() {
            Ok(s) => s,
            Err(_) => {
                attack.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let stream = async {
            socket.bind(SocketAddr::from((IpAddr::V4(from), 0)))?;
            let mut s = socket.connect(to).await?;
            s.write_all(b"GET / HT").await?;
            std::io::Result::Ok(s)
        }
        .await;
        let Ok(mut stream) = stream else {
            attack.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let opened = Instant::now();
        attack.opened.fetch_add(1, Ordering::Relaxed);
        let now = attack.held.fetch_add(1, Ordering::AcqRel) + 1;
        attack.peak.fetch_max(now, Ordering::AcqRel);
        let mut got = Vec::new();
        let mut buf = [0u8; 512];
        let stopped = loop {
            tokio::select! {
                r = stream.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break false,
                    Ok(n) => got.extend_from_slice(&buf[..n.min(buf.len())]),
                },
                _ = attack.stop.cancelled() => break true,
            }
        };
        attack.held.fetch_sub(1, Ordering::AcqRel);
        if stopped {
            return;
        }
        if got.starts_with(b"HTTP/1.1 503") {
            attack.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
        } else {
            attack
                .longest_hold_ms
                .fetch_max(opened.elapsed().as_millis() as u64, Ordering::AcqRel);
        }
    }
}

/// Runs the scenario in `dir`: `connections` half-open, `seconds` per phase.
pub async fn run(
    vigil: &Path,
    dir: &Path,
    connections: usize,
    seconds: u64,
) -> anyhow::Result<Outcome> {
    // The attacker holds a descriptor per connection too.
    runtime::open_files::raise_to_hard_limit();
    std::fs::create_dir_all(dir.join("data")).context("creating the data directory")?;
    let data: PathBuf = dir.join("data");
    let auth = Auth::open(&data, vec![]).context("opening the gateway's keys")?;
    let token = crate::writers::field_token(&auth, "slowloris.field")?;
    let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let mut up = Up::start(vigil, dir, testkit::free_port(), http, metrics, &[])?;
    let mut problems = Vec::new();
    let ready = testkit::eventually(Duration::from_secs(90), || async {
        let a = testkit::http::request(http, "GET", "/readyz", &[], None)
            .await
            .ok()?;
        (a.status == 200).then_some(())
    })
    .await;
    if ready.is_none() {
        anyhow::bail!(
            "vigil up was not ready within 90 s; see {}",
            dir.join("vigil-up.log").display()
        );
    }
    let open_files = up.open_files();
    match open_files {
        Some((soft, hard)) if soft < hard => problems.push(format!(
            "vigil up runs with an open-file soft limit of {soft} under a hard limit of {hard}: it did not raise its own"
        )),
        None => problems.push("cannot read vigil up's open-file limit".into()),
        _ => {}
    }
    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;
    let phase = Duration::from_secs(seconds.max(1));

    eprintln!(
        "slowloris: baseline, {WRITERS} writers at {REPORTS_PER_SECOND} reports/s for {} s",
        phase.as_secs()
    );
    let (baseline, failed_before) = report_for(http, &token, phase, &acks).await?;

    eprintln!(
        "slowloris: attack, {connections} half-open connections from {} addresses, same writers for {} s",
        connections.div_ceil(PER_ADDRESS),
        phase.as_secs()
    );
    let attack = Arc::new(Attack::default());
    // The attacker runs on a thread and runtime of its own: its bursts of thousands of
    // reconnects must not delay the writers' own clock (the latency measured is the centre's).
    let attacker = {
        let attack = attack.clone();
        std::thread::Builder::new()
            .name("slowloris-attacker".into())
            .spawn(move || -> anyhow::Result<()> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async move {
                    let mut tasks = Vec::with_capacity(connections);
                    for i in 0..connections {
                        let octet = 2 + (i / PER_ADDRESS) as u8;
                        let from = Ipv4Addr::new(127, 0, 0, octet);
                        tasks.push(tokio::spawn(hold_one(attack.clone(), from, http)));
                        if i % 500 == 499 {
                            // 5,000 at once would only measure the SYN backlog.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
                Ok(())
            })?
    };
    let ramp = Instant::now();
    while attack.held.load(Ordering::Acquire) < connections as u64
        && ramp.elapsed() < Duration::from_secs(15)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "slowloris: {} held after {:.1} s; vigil up has {} descriptors open",
        attack.held.load(Ordering::Acquire),
        ramp.elapsed().as_secs_f64(),
        up.fds()
    );
    let probing = Arc::new(AtomicBool::new(true));
    let prober = {
        let probing = probing.clone();
        tokio::spawn(async move {
            let (mut asked, mut ok) = (0u64, 0u64);
            while probing.load(Ordering::Acquire) {
                asked += 1;
                let a = tokio::time::timeout(
                    Duration::from_secs(2),
                    testkit::http::request(http, "GET", "/readyz", &[], None),
                )
                .await;
                if let Ok(Ok(a)) = a
                    && a.status == 200
                {
                    ok += 1;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (asked, ok)
        })
    };
    let peak_fds = Arc::new(AtomicU64::new(0));
    let watcher = {
        let (peak_fds, probing, pid) = (peak_fds.clone(), probing.clone(), up.pid);
        tokio::spawn(async move {
            while probing.load(Ordering::Acquire) {
                let n = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
                peak_fds.fetch_max(n as u64, Ordering::AcqRel);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let attacked = report_for(http, &token, phase, &acks).await;
    probing.store(false, Ordering::Release);
    attack.stop.cancel();
    let probes = prober.await.unwrap_or((0, 0));
    let _ = watcher.await;
    let _ = tokio::task::spawn_blocking(move || attacker.join()).await;
    let (attacked, failed_during) = attacked?;

    up.stop();
    let log = check::read_dir(&data.join("store"))?;
    let verdict = check::check(&log, &AckFile::read(&acks_path)?);

    let header_timeout = gateway::ConnLimits::default().header_timeout;
    let outcome_peak = attack.peak.load(Ordering::Acquire);
    let longest_hold = Duration::from_millis(attack.longest_hold_ms.load(Ordering::Acquire));
    let failed_attempts = failed_before + failed_during;
    if failed_attempts > 0 {
        problems.push(format!(
            "{failed_attempts} report attempts were not acknowledged"
        ));
    }
    if probes.0 == 0 || probes.1 < probes.0 {
        problems.push(format!(
            "/readyz answered 200 to {} of {} probes during the attack",
            probes.1, probes.0
        ));
    }
    if outcome_peak < connections as u64 * 95 / 100 {
        problems.push(format!(
            "the attacker held at most {outcome_peak} of {connections} connections ({} connect errors)",
            attack.connect_errors.load(Ordering::Acquire)
        ));
    }
    if longest_hold > header_timeout + HOLD_SLACK {
        problems.push(format!(
            "a half-open connection was held {:.1} s (header timeout {} s)",
            longest_hold.as_secs_f64(),
            header_timeout.as_secs()
        ));
    }
    let (p99_before, p99_during) = (quantile(&baseline, 0.99), quantile(&attacked, 0.99));
    let allowed = p99_before.mul_f64(P99_FACTOR).max(p99_before + P99_SLACK);
    if p99_during > allowed {
        problems.push(format!(
            "report p99 {:.1} ms under attack, {:.1} ms without (allowed {:.1} ms)",
            ms(p99_during),
            ms(p99_before),
            ms(allowed)
        ));
    }
    if baseline.is_empty() || attacked.is_empty() {
        problems.push("no report was acknowledged in a phase".into());
    }
    Ok(Outcome {
        baseline,
        attacked,
        failed_attempts,
        probes,
        peak_held: outcome_peak,
        opened: attack.opened.load(Ordering::Acquire),
        refused: attack.refused.load(Ordering::Acquire),
        longest_hold,
        header_timeout,
        open_files,
        peak_fds: peak_fds.load(Ordering::Acquire),
        verdict,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_latencies() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&[], 0.99), Duration::ZERO);
    }
}
