//! Network partitions: the centre runs with its nats-server, its field client and its wall
//! screen each in a network namespace of their own, joined to the host by a veth pair; a cut
//! is an nftables table in that namespace dropping every packet (silently, like a dead link:
//! no resets, so clients see timeouts, not errors); healing deletes the table.
//!
//! ```text
//!   [netns nats]  nats-server ── veth ──┐
//!   [netns field] field writer ── veth ─┤ host: store, services, gateway, NATS writers
//!   [netns screen] WebSocket screen ─ veth ┘
//! ```
//!
//! Each cut (1–30 s, or 1–5 s with `--quick`) is one of: field client ↔ gateway, services ↔
//! nats-server, gateway ↔ screen. The field writer keeps retrying its report with the same
//! id through a cut; the screen reconnects with the position it last saw. After each heal the
//! screen must show the log's head as it stood at the heal within 10 s; at the end the checker
//! reads the whole log (every acknowledged write once, no gaps) and compares the board with a
//! fresh fold.
//!
//! Needs root (namespaces, veth, nftables: `ops/chaos` installs `nftables` when missing).
//! Everything it creates is named after this process's id and removed on the way out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use rand::Rng;

use crate::centre::{Centre, Nats};
use crate::check::{self, Verdict};
use crate::writers::{self, AckFile, Progress};

/// How long a screen may take to catch up after a heal.
pub const CATCH_UP_LIMIT: Duration = Duration::from_secs(10);

/// Runs `ip`/`nft` and fails with its stderr.
fn sh(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program).args(args).output().with_context(|| {
        format!("running {program} (is it installed? run ops/chaos, which installs it)")
    })?;
    if !out.status.success() {
        anyhow::bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// One namespace joined to the host by a veth pair: host side `.1`, namespace side `.2`.
struct Island {
    ns: String,
    host_if: String,
    host_ip: Ipv4Addr,
    inner_ip: Ipv4Addr,
    cut: bool,
}

impl Island {
    fn create(name: &str, tag: u32, subnet: u8) -> anyhow::Result<Island> {
        let ns = format!("vc{name}{tag}");
        let host_if = format!("vh{name}{tag}");
        let inner_if = format!("vi{name}{tag}");
        let island = Island {
            ns: ns.clone(),
            host_if: host_if.clone(),
            host_ip: Ipv4Addr::new(10, 211, subnet, 1),
            inner_ip: Ipv4Addr::new(10, 211, subnet, 2),
            cut: false,
        };
        sh("ip", &["netns", "add", &ns])?;
        sh(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &inner_if,
            ],
        )?;
        sh("ip", &["link", "set", &inner_if, "netns", &ns])?;
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", island.host_ip),
                "dev",
                &host_if,
            ],
        )?;
        sh("ip", &["link", "set", &host_if, "up"])?;
        let inner = format!("{}/30", island.inner_ip);
        for args in [
            vec!["addr", "add", inner.as_str(), "dev", inner_if.as_str()],
            vec!["link", "set", inner_if.as_str(), "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["netns", "exec", ns.as_str(), "ip"];
            full.extend(args);
            sh("ip", &full)?;
        }
        Ok(island)
    }

    /// `ip netns exec <ns> <program> <args>`.
    fn spawn(&self, program: &Path, args: &[String], log: &Path) -> anyhow::Result<Child> {
        let log = std::fs::File::create(log).context("creating a process log")?;
        Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} in {}", program.display(), self.ns))
    }

    /// Drops every packet in and out of the namespace.
    fn cut(&mut self) -> anyhow::Result<()> {
        let rules = "table inet chaos {
  chain input { type filter hook input priority 0; policy drop; iif lo accept; }
  chain output { type filter hook output priority 0; policy drop; oif lo accept; }
}";
        let file = std::env::temp_dir().join(format!("{}.nft", self.ns));
        std::fs::write(&file, rules)?;
        let path = file.display().to_string();
        sh("ip", &["netns", "exec", &self.ns, "nft", "-f", &path])?;
        self.cut = true;
        Ok(())
    }

    fn heal(&mut self) -> anyhow::Result<()> {
        if self.cut {
            sh(
                "ip",
                &[
                    "netns", "exec", &self.ns, "nft", "delete", "table", "inet", "chaos",
                ],
            )?;
            self.cut = false;
        }
        Ok(())
    }
}

impl Drop for Island {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}

/// A child process killed on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a partition run went.
pub struct Outcome {
    /// Cuts made.
    pub cuts: usize,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// The longest time a screen took to show the head after a heal.
    pub max_catch_up: Duration,
    /// The board against a fresh fold.
    pub board: Result<(), String>,
    /// What went wrong besides the verdict.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.verdict.ok() && self.board.is_ok() && self.problems.is_empty()
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "partition: {} cuts, {} acknowledged, {} lost, {} duplicated, {} gaps, screens caught up in ≤ {:.1} s (limit {} s), board {} — {}",
            self.cuts,
            self.verdict.acknowledged,
            self.verdict.lost,
            self.verdict.duplicated,
            self.verdict.position_gaps + self.verdict.version_gaps,
            self.max_catch_up.as_secs_f64(),
            CATCH_UP_LIMIT.as_secs(),
            if self.board.is_ok() {
                "= fresh fold"
            } else {
                "DIFFERS"
            },
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }
}

/// The client roles `vigil-chaos partition-client` plays inside a namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientRole {
    /// Reports incidents, retrying each with its id, recording acks.
    Field,
    /// A wall screen: follows the board, writing the last position it saw to a file.
    Screen,
}

/// `vigil-chaos partition-client`: one client, run inside a namespace until killed.
pub async fn client(
    role: ClientRole,
    http: SocketAddr,
    token: String,
    out: PathBuf,
) -> anyhow::Result<()> {
    match role {
        ClientRole::Field => {
            let acks = AckFile::create(&out)?;
            writers::http_writer(http, token, acks, Progress::default()).await
        }
        ClientRole::Screen => screen(http, token, &out).await,
    }
}

/// Follows the board for ever, reconnecting with the last position seen; writes that
/// position to `out` whenever it changes.
async fn screen(http: SocketAddr, token: String, out: &Path) -> anyhow::Result<()> {
    let mut position = 0u64;
    loop {
        let Some(mut ws) = writers::subscribe_board(http, &token, position).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        // A heartbeat comes every 2 s: 5 s of silence means the link is gone.
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        {
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                continue;
            };
            if let Some(p) = v["position"].as_u64()
                && p > position
            {
                position = p;
                let tmp = out.with_extension("tmp");
                std::fs::write(&tmp, position.to_string())?;
                std::fs::rename(&tmp, out)?;
            }
        }
    }
}

fn seen(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `cuts` partitions against a fresh centre in `dir`.
pub async fn run(
    vigil: &Path,
    chaos: &Path,
    dir: &Path,
    cuts: usize,
    quick: bool,
) -> anyhow::Result<Outcome> {
    std::fs::create_dir_all(dir)?;
    let tag = std::process::id() % 10_000;
    let mut nats_island = Island::create("n", tag, 1)?;
    let mut field_island = Island::create("f", tag, 2)?;
    let mut screen_island = Island::create("s", tag, 3)?;
    let nats_port = testkit::free_port();
    let nats_bin = testkit::nats_server_bin();
    let nats = Guard(nats_island.spawn(
        &nats_bin,
        &[
            "-a".into(),
            nats_island.inner_ip.to_string(),
            "-p".into(),
            nats_port.to_string(),
        ],
        &dir.join("nats-server.log"),
    )?);
    let nats_url = format!("nats://{}:{nats_port}", nats_island.inner_ip);
    // The gateway listens on every host address, so the islands reach it through their veth.
    let port = testkit::free_port();
    let http = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
    let centre = Centre::start_on(vigil, dir, &[], Nats::External(nats_url.clone()), http).await?;
    let field_acks = dir.join("field-acks.jsonl");
    let screen_seen = dir.join("screen-position");
    let client_args = |role: &str, island: &Island, token: &str, out: &Path| -> Vec<String> {
        vec![
            "partition-client".into(),
            "--role".into(),
            role.into(),
            "--http".into(),
            SocketAddr::new(IpAddr::V4(island.host_ip), port).to_string(),
            "--token".into(),
            token.into(),
            "--out".into(),
            out.display().to_string(),
        ]
    };
    let _field = Guard(field_island.spawn(
        chaos,
        &client_args("field", &field_island, &centre.field_token, &field_acks),
        &dir.join("field-client.log"),
    )?);
    let _screen = Guard(screen_island.spawn(
        chaos,
        &client_args("screen", &screen_island, &centre.duty_token, &screen_seen),
        &dir.join("screen-client.log"),
    )?);
    let host_acks_path = dir.join("acks.jsonl");
    let host_acks = AckFile::create(&host_acks_path)?;
    let progress = Progress::default();
    let tasks = writers::spawn(None, 0, &nats_url, 2, &host_acks, &progress);
    let checker = writers::store_client(
        &nats_url,
        "chaos-checker",
        runtime::nats::Mode::Service,
        Duration::from_secs(5),
    )
    .await?;
    let head = || async {
        checker
            .read(u64::MAX, 1)
            .await
            .map(|(_, head)| head)
            .map_err(|e| anyhow::anyhow!("reading the log's head: {e}"))
    };
    let mut rng = rand::rng();
    let mut max_catch_up = Duration::ZERO;
    let mut problems = Vec::new();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for n in 1..=cuts {
        let (name, island) = match rng.random_range(0..3) {
            0 => ("field client ↔ gateway", &mut field_island),
            1 => ("services ↔ nats-server", &mut nats_island),
            _ => ("gateway ↔ screen", &mut screen_island),
        };
        let secs = if quick {
            rng.random_range(1..=5)
        } else {
            rng.random_range(1..=30)
        };
        island.cut()?;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        island.heal()?;
        let healed = Instant::now();
        // Once NATS is back the services and the store answer again; the head then is what
        // the screen must reach.
        let target = testkit::eventually(Duration::from_secs(30), || async { head().await.ok() })
            .await
            .ok_or_else(|| anyhow::anyhow!("the store did not answer within 30 s of healing"))?;
        let caught = testkit::eventually(CATCH_UP_LIMIT * 3, || async {
            (seen(&screen_seen) >= target).then_some(())
        })
        .await;
        let took = healed.elapsed();
        max_catch_up = max_catch_up.max(took);
        if caught.is_none() || took > CATCH_UP_LIMIT {
            problems.push(format!(
                "cut {n} ({name}, {secs} s): the screen showed position {} of {target} {:.1} s after healing",
                seen(&screen_seen),
                took.as_secs_f64()
            ));
        }
        eprintln!(
            "  cut {n}/{cuts}: {name} for {secs} s; screen at the head {:.2} s after healing; {} acknowledged over NATS so far",
            took.as_secs_f64(),
            progress.acked.load(Ordering::Acquire)
        );
    }
    writers::stop(tasks, &progress).await?;
    drop(_field);
    drop(_screen);
    let running = check::read_running(&checker).await?;
    let board = check::board_matches(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &centre.duty_token,
        &running,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| e.to_string());
    let mut centre = centre;
    problems.extend(centre.crashed());
    centre.stop();
    drop(nats);
    let log = check::read_dir(&dir.join("store"))?;
    let mut acks = AckFile::read(&host_acks_path)?;
    acks.extend(AckFile::read(&field_acks)?);
    let verdict = check::check(&log, &acks);
    if acks.iter().filter(|a| a.via == "http").count() == 0 {
        problems.push("the field client had nothing acknowledged".into());
    }
    Ok(Outcome {
        cuts,
        verdict,
        max_catch_up,
        board,
        problems,
    })
}
