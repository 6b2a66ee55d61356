//! The systems under test of the HTTP benchmarks against a `vigil up` (`intake`,
//! `clearances`): the gateway, and the peer process (`vigil-bench intake-peer`, started for a
//! run and stopped with it); and the flags those benchmarks share.
//!
//! The rest of what they share has a module each: `http` (the client), `open_loop` (the
//! schedule of one cell), `tracker` (writes waiting for a follower of the log),
//! `server_side` (what `vigil up` did over a window), `summary` (a cell's totals and the
//! tables), and `cell` (the window, histograms and tallies every benchmark uses).

use std::time::Duration;

use anyhow::bail;

use crate::util::{NatsArgs, OwnServer};

/// A system under test of the HTTP benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Server {
    /// The gateway of `vigil up`.
    Vigil,
    /// `vigil-bench intake-peer`: same HTTP stack, straight to the store.
    Peer,
}

impl Server {
    /// The name printed in tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Vigil => "vigil",
            Self::Peer => "peer",
        }
    }
}

impl Server {
    /// Where this system listens: the gateway, or the peer (empty when there is none).
    pub fn addr(self, gateway: &str, peer: Option<&PeerProcess>) -> String {
        match self {
            Self::Vigil => gateway.to_owned(),
            Self::Peer => peer.map(|p| p.addr.clone()).unwrap_or_default(),
        }
    }
}

/// The flags the HTTP benchmarks share (each adds its rates and what it sends).
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Measured seconds per cell.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Unmeasured seconds at the rate before each cell's measurement.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Systems, in this order within each rate.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "vigil,peer")]
    pub systems: Vec<Server>,
    /// Keep-alive HTTP connections (requests in flight at most).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// The gateway's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub http_url: String,
    // The store the peer appends to; `--data-dir` also gives the nats-server's PID.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// `vigil up`'s Prometheus page (e.g. http://127.0.0.1:9490/metrics).
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// PID of the `vigil up` process (CPU time).
    #[arg(long)]
    pub vigil_pid: Option<u32>,
    /// Seconds before a request counts as unanswered (the gateway answers 408 after 15).
    #[arg(long, default_value_t = 20)]
    pub request_timeout: u64,
    /// Seconds to wait, after the last answer, for the last write to reach its follower (the
    /// board client, the register).
    #[arg(long, default_value_t = 30)]
    pub drain_timeout: u64,
    /// Seconds of quiet between cells.
    #[arg(long, default_value_t = 2)]
    pub pause: u64,
}

impl RunArgs {
    /// Checks the rates and the counts; the systems, each once.
    pub fn check(&self, rates: &[f64]) -> anyhow::Result<Vec<Server>> {
        if rates.is_empty() || rates.iter().any(|r| r.is_nan() || *r <= 0.0) {
            bail!("--rates needs at least one rate, each > 0");
        }
        if self.duration == 0 || self.connections == 0 {
            bail!("--duration and --connections must be ≥ 1");
        }
        let mut systems = self.systems.clone();
        systems.dedup();
        Ok(systems)
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout.max(1))
    }

    /// The start of a run's first line: `vigil-bench <bench>: rates [..] <unit>/s × systems
    /// …; … s warm-up + … s measured per cell; … keep-alive connections`.
    pub fn header(&self, bench: &str, rates: &[f64], unit: &str, systems: &[Server]) -> String {
        format!(
            "vigil-bench {bench}: rates {rates:?} {unit}/s × systems {} ; {} s warm-up + {} s measured per cell; {} keep-alive connections",
            crate::cell::names(systems, |s| s.name()),
            self.warmup,
            self.duration,
            self.connections,
        )
    }
}

/// `vigil-bench intake-peer`, started for a run and stopped when dropped.
pub struct PeerProcess {
    server: OwnServer,
    /// `host:port` it listens on.
    pub addr: String,
}

impl PeerProcess {
    /// Starts the peer against the store of `nats` and waits until it listens.
    pub async fn start(nats: &NatsArgs) -> anyhow::Result<Self> {
        let server = OwnServer::start(
            |command| {
                command.args(["intake-peer", "--listen", "127.0.0.1:0"]);
                nats.pass_to(command);
            },
            "the peer",
            Duration::from_secs(15),
        )
        .await?;
        let addr = server.addr.clone();
        Ok(Self { server, addr })
    }

    /// The peer when `systems` has it (`bench` names the bench in the log line).
    pub async fn start_for(
        systems: &[Server],
        nats: &NatsArgs,
        bench: &str,
    ) -> anyhow::Result<Option<Self>> {
        if !systems.contains(&Server::Peer) {
            return Ok(None);
        }
        let p = Self::start(nats).await?;
        eprintln!("[{bench}] peer listening on {}", p.addr);
        Ok(Some(p))
    }

    /// Its PID (CPU time).
    pub fn pid(&self) -> Option<u32> {
        self.server.pid()
    }
}
