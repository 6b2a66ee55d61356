//! The two systems' load: Vigil's (realistic events appended at R/s through
//! `vigil.store.append`) and the baseline's (`vigil-bench baseline-server`, a separate process
//! that broadcasts the captured frames at R/s with no projection).

use crate::cell::{MAX_LATENCY_US, Tally, lock, new_histogram, tally};
use crate::util::OwnServer;
use crate::workload::Generator;
use anyhow::{Context as _, bail};
use events::envelope::ExpectedVersion;
use events::store_api::{AppendReply, ReadReply, ReadRequest};
use events::{AppendRequest, subjects};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt as _;
use tokio::process::ChildStdin;
use tokio::sync::Semaphore;

use super::clients::Capture;

/// Appends through Vigil's store.
pub(super) struct VigilLoad {
    pub(super) nats: async_nats::Client,
    pub(super) generator: Generator,
}

/// Counters of the load (appends or baseline sends).
#[derive(Default)]
pub(super) struct LoadProgress {
    pub(super) ok: AtomicU64,
    pub(super) errors: AtomicU64,
}

/// What the load did.
pub(super) struct LoadOutcome {
    /// Events appended (or frames broadcast).
    pub(super) sent: u64,
    /// Failed appends by kind.
    pub(super) errors: BTreeMap<String, Tally>,
    /// Position every client should reach.
    pub(super) last_position: u64,
    /// First position of the run's load (Vigil only).
    pub(super) first_position: u64,
    /// Append ack latency, µs (Vigil only).
    pub(super) ack: Option<Histogram<u64>>,
    /// Frames in the window (baseline: counted by the server).
    pub(super) in_window: Option<u64>,
    /// Baseline server's own counters.
    pub(super) server_note: Option<String>,
}

#[derive(Default)]
pub(super) struct AppendAcc {
    pub(super) ok: u64,
    pub(super) errors: BTreeMap<String, Tally>,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) hist: Option<Histogram<u64>>,
}

impl VigilLoad {
    pub(super) async fn append_one(
        nats: &async_nats::Client,
        stream: events::StreamName,
        event: events::NewEvent,
    ) -> Result<events::store_api::AppendOk, (String, String)> {
        let subject =
            subjects::append_subject(&runtime::store_client::appender_of(nats), stream.category())
                .ok_or_else(|| ("subject".to_owned(), "no append subject".to_owned()))?;
        let request = AppendRequest {
            after: None,
            stream,
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        let payload =
            serde_json::to_vec(&request).map_err(|e| ("encode".to_owned(), e.to_string()))?;
        let reply = nats
            .request(subject, payload.into())
            .await
            .map_err(|e| (format!("nats {:?}", e.kind()), e.to_string()))?;
        match serde_json::from_slice::<AppendReply>(&reply.payload) {
            Ok(AppendReply::Ok(ok)) => Ok(ok),
            Ok(AppendReply::Error(e)) => Err((format!("{:?}", e.code), e.message)),
            Err(e) => Err(("bad reply".to_owned(), e.to_string())),
        }
    }

    /// Appends `n` events, `window` at a time, as fast as the store takes them.
    pub(super) async fn preload(&mut self, n: usize) -> anyhow::Result<u64> {
        let mut done = 0;
        let mut last = 0;
        while done < n {
            let batch = (n - done).min(64);
            let mut calls = Vec::with_capacity(batch);
            for _ in 0..batch {
                let (stream, event) = self.generator.next_event(OffsetDateTime::now_utc())?;
                let nats = self.nats.clone();
                calls.push(async move { Self::append_one(&nats, stream, event).await });
            }
            for r in futures::future::join_all(calls).await {
                match r {
                    Ok(ok) => last = last.max(ok.last_position),
                    Err((kind, detail)) => bail!("preloading the board: {kind}: {detail}"),
                }
            }
            done += batch;
        }
        Ok(last)
    }

    /// Appends at `rate`/s until `stop` (one event per request, each in its own task so a
    /// slow ack never delays the schedule; at most 1,024 in flight).
    pub(super) async fn run(
        &mut self,
        rate: f64,
        stop: Instant,
        progress: Arc<LoadProgress>,
    ) -> LoadOutcome {
        let acc = Arc::new(Mutex::new(AppendAcc {
            hist: new_histogram().ok(),
            ..AppendAcc::default()
        }));
        let inflight = Arc::new(Semaphore::new(1024));
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
        let mut tasks = tokio::task::JoinSet::new();
        let mut sent = 0u64;
        loop {
            tick.tick().await;
            if Instant::now() >= stop {
                break;
            }
            let (stream, event) = match self.generator.next_event(OffsetDateTime::now_utc()) {
                Ok(x) => x,
                Err(e) => {
                    let mut a = lock(&acc);
                    let t = a.errors.entry("generator".into()).or_default();
                    t.count += 1;
                    t.sample = format!("{e:#}");
                    continue;
                }
            };
            let Ok(permit) = inflight.clone().try_acquire_owned() else {
                progress.errors.fetch_add(1, Ordering::Relaxed);
                let mut a = lock(&acc);
                let t = a.errors.entry("over 1,024 in flight".into()).or_default();
                t.count += 1;
                t.sample = "the store is not keeping up with the rate".into();
                continue;
            };
            sent += 1;
            let nats = self.nats.clone();
            let acc = acc.clone();
            let progress = progress.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let r = Self::append_one(&nats, stream, event).await;
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                let mut a = lock(&acc);
                match r {
                    Ok(ok) => {
                        progress.ok.fetch_add(1, Ordering::Relaxed);
                        a.ok += 1;
                        a.last = a.last.max(ok.last_position);
                        a.first = if a.first == 0 {
                            ok.first_position
                        } else {
                            a.first.min(ok.first_position)
                        };
                        if let Some(h) = a.hist.as_mut() {
                            h.saturating_record(us.clamp(1, MAX_LATENCY_US));
                        }
                    }
                    Err((kind, detail)) => {
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        tally(&mut a.errors, kind, detail);
                    }
                }
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        // An append whose ack timed out may still have been committed: the log's head, not
        // the last ack, is where every client must get to.
        let head = self.head().await.unwrap_or(0);
        let mut a = lock(&acc);
        LoadOutcome {
            sent,
            errors: std::mem::take(&mut a.errors),
            last_position: a.last.max(head),
            first_position: a.first,
            ack: a.hist.take(),
            in_window: None,
            server_note: None,
        }
    }

    /// The log's head (this bench is its only writer).
    pub(super) async fn head(&self) -> anyhow::Result<u64> {
        let req = serde_json::to_vec(&ReadRequest {
            from: u64::MAX,
            limit: 1,
        })?;
        let reply = self.nats.request(subjects::STORE_READ, req.into()).await?;
        match serde_json::from_slice::<ReadReply>(&reply.payload)? {
            ReadReply::Page { head, .. } => Ok(head),
            ReadReply::Error { error } => bail!("reading the head: {}", error.message),
        }
    }

    /// Events the log recorded with `recorded_at` in [from, to), between positions `first`
    /// and `last` (each of the bench's events changes the board, so each is one delta).
    pub(super) async fn recorded_in_window(
        &self,
        first: u64,
        last: u64,
        from: i64,
        to: i64,
    ) -> anyhow::Result<u64> {
        let mut pos = first.max(1);
        let mut n = 0;
        while pos <= last {
            let req = serde_json::to_vec(&ReadRequest {
                from: pos,
                limit: 1000,
            })?;
            let reply = self.nats.request(subjects::STORE_READ, req.into()).await?;
            let events = match serde_json::from_slice::<ReadReply>(&reply.payload)? {
                ReadReply::Page { events, .. } => events,
                ReadReply::Error { error } => bail!("reading the log: {}", error.message),
            };
            if events.is_empty() {
                break;
            }
            for e in &events {
                if e.position > last {
                    break;
                }
                let at = i64::try_from(e.recorded_at.unix_timestamp_nanos()).unwrap_or(0);
                if at >= from && at < to {
                    n += 1;
                }
            }
            pos = events.last().map_or(last + 1, |e| e.position + 1);
        }
        Ok(n)
    }
}

/// The baseline server, a child process driven over its stdin/stdout.
pub(super) struct Baseline {
    pub(super) server: OwnServer,
    pub(super) stdin: ChildStdin,
    pub(super) addr: String,
}

impl Baseline {
    pub(super) async fn start(read_buffer: usize, nodelay: bool) -> anyhow::Result<Self> {
        let mut server = OwnServer::start(
            |command| {
                command
                    .args([
                        "baseline-server",
                        "--listen",
                        "127.0.0.1:0",
                        "--read-buffer",
                    ])
                    .arg(read_buffer.to_string());
                if nodelay {
                    command.arg("--nodelay");
                }
            },
            "the baseline server",
            Duration::from_secs(10),
        )
        .await?;
        let stdin = server
            .child
            .stdin
            .take()
            .context("the baseline server: no stdin")?;
        let addr = server.addr.clone();
        Ok(Self {
            server,
            stdin,
            addr,
        })
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.server.pid()
    }

    pub(super) async fn send(&mut self, line: &str) -> anyhow::Result<()> {
        self.stdin.write_all(line.as_bytes()).await?;
        self.stdin.write_all(b"\n").await?;
        self.stdin.flush().await?;
        Ok(())
    }

    pub(super) async fn load_frames(&mut self, capture: &Capture) -> anyhow::Result<()> {
        let snapshot = capture
            .snapshot
            .as_deref()
            .unwrap_or(r#"{"as_of":null,"board":"situation","data":{},"position":0,"type":"snapshot","view":"wall_screen"}"#);
        self.send(&format!("snapshot {snapshot}")).await?;
        for d in &capture.deltas {
            self.send(&format!("delta {d}")).await?;
        }
        Ok(())
    }

    pub(super) async fn run(
        &mut self,
        rate: f64,
        from: i64,
        to: i64,
        stop: i64,
    ) -> anyhow::Result<LoadOutcome> {
        self.send(&format!("run {rate} {from} {to} {stop}")).await?;
        let line = self
            .server
            .stdout
            .next_line()
            .await?
            .context("the baseline server exited during the run")?;
        // done <last_position> <in_window> <sent> <resyncs> <dropped>
        let mut it = line.split_whitespace();
        if it.next() != Some("done") {
            bail!("unexpected baseline answer {line:?}");
        }
        let mut num = || it.next().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
        let (last, in_window, sent, resyncs, dropped) = (num(), num(), num(), num(), num());
        Ok(LoadOutcome {
            sent,
            errors: BTreeMap::new(),
            last_position: last,
            first_position: 1,
            ack: None,
            in_window: Some(in_window),
            server_note: Some(format!(
                "baseline server: {resyncs} resyncs, {dropped} clients dropped (send timeout)"
            )),
        })
    }
}
