//! The K board clients: each connects, subscribes to the situation board and records, for
//! every delta of an event committed inside the measured window, `receive time − as_of` in
//! one of a few sharded histograms; client 0 keeps the snapshot and the deltas it got (what
//! the baseline sends). Clients that cannot connect or that end early are counted by reason.

use crate::cell::{MAX_LATENCY_US, Tally, lock, new_histogram, tally};
use crate::util::{self, error_kind, head, unix_nanos};
use anyhow::Context as _;
use futures::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

use super::{SHARDS, SUBSCRIBE};

fn parse_ns(as_of: &str) -> Option<i64> {
    OffsetDateTime::parse(as_of, &Rfc3339)
        .ok()
        .and_then(|t| i64::try_from(t.unix_timestamp_nanos()).ok())
}

#[derive(Default, Clone)]
pub(super) struct Capture {
    pub(super) snapshot: Option<String>,
    pub(super) deltas: Vec<String>,
}

pub(super) struct Shared {
    /// Deltas whose `as_of` is in [from, to) are measured (ns since the epoch).
    pub(super) from: AtomicI64,
    pub(super) to: AtomicI64,
    pub(super) shards: Vec<Mutex<Histogram<u64>>>,
    pub(super) subscribed: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) ended: AtomicUsize,
    pub(super) frames: AtomicU64,
    pub(super) bytes: AtomicU64,
    pub(super) deltas: AtomicU64,
    pub(super) measured: AtomicU64,
    pub(super) heartbeats: AtomicU64,
    pub(super) resyncs: AtomicU64,
    pub(super) order_errors: AtomicU64,
    pub(super) unparsed: AtomicU64,
    /// Largest latency measured since the last progress line, µs.
    pub(super) sec_max_us: AtomicU64,
    /// Last position each client has; `u64::MAX` once it has ended (or never started).
    pub(super) positions: Vec<AtomicU64>,
    pub(super) capture: Mutex<Capture>,
    pub(super) capture_limit: usize,
    /// Why clients could not connect/subscribe.
    pub(super) failures: Mutex<BTreeMap<String, Tally>>,
    /// Why subscribed clients ended before the bench closed them.
    pub(super) ends: Mutex<BTreeMap<String, Tally>>,
}

pub(super) fn note(map: &Mutex<BTreeMap<String, Tally>>, kind: String, detail: String) {
    tally(&mut lock(map), kind, detail);
}

impl Shared {
    pub(super) fn new(clients: usize, capture_limit: usize) -> anyhow::Result<Self> {
        Ok(Self {
            from: AtomicI64::new(i64::MAX),
            to: AtomicI64::new(i64::MAX),
            shards: (0..SHARDS)
                .map(|_| new_histogram().map(Mutex::new))
                .collect::<anyhow::Result<_>>()?,
            subscribed: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            ended: AtomicUsize::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            deltas: AtomicU64::new(0),
            measured: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            resyncs: AtomicU64::new(0),
            order_errors: AtomicU64::new(0),
            unparsed: AtomicU64::new(0),
            sec_max_us: AtomicU64::new(0),
            positions: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            capture: Mutex::new(Capture::default()),
            capture_limit,
            failures: Mutex::new(BTreeMap::new()),
            ends: Mutex::new(BTreeMap::new()),
        })
    }

    pub(super) fn set_position(&self, i: usize, p: u64) {
        if let Some(slot) = self.positions.get(i) {
            slot.store(p, Ordering::Relaxed);
        }
    }

    /// The lowest position over clients still connected (`None` when none is).
    pub(super) fn min_position(&self) -> Option<u64> {
        self.positions
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|&p| p != u64::MAX)
            .min()
    }

    pub(super) fn merged(&self) -> anyhow::Result<Histogram<u64>> {
        let mut h = new_histogram()?;
        for s in &self.shards {
            let s = lock(s);
            h.add(&*s).context("merging latency histograms")?;
        }
        Ok(h)
    }
}

pub(super) async fn client(i: usize, url: Arc<str>, shared: Arc<Shared>, gate: Arc<Semaphore>) {
    let mut permit = gate.acquire_owned().await.ok();
    let mut attempt = 0;
    let mut ws = loop {
        attempt += 1;
        let tried = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_with_config(
                &*url,
                Some(util::ws_client_config()),
                true,
            ),
        )
        .await;
        let err = match tried {
            Ok(Ok((ws, _))) => break ws,
            Ok(Err(e)) => e.to_string(),
            Err(_) => "connect timed out after 30 s".to_owned(),
        };
        // Out of file descriptors will not get better by retrying.
        if attempt >= 3 || err.contains("os error 24") {
            note(&shared.failures, error_kind(&err), err);
            shared.failed.fetch_add(1, Ordering::Relaxed);
            shared.set_position(i, u64::MAX);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    };
    if let Err(e) = ws.send(Message::Text(SUBSCRIBE.into())).await {
        note(&shared.failures, "subscribe send".into(), e.to_string());
        shared.failed.fetch_add(1, Ordering::Relaxed);
        shared.set_position(i, u64::MAX);
        return;
    }
    let shard = shared.shards.get(i % SHARDS);
    let mut subscribed = false;
    let mut last = 0u64;
    let end_reason: (String, String) = loop {
        let msg = match ws.next().await {
            None => break ("connection ended".into(), "stream ended".into()),
            Some(Err(e)) => break (error_kind(&e.to_string()), e.to_string()),
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                break ("closed by the server".into(), format!("{frame:?}"));
            }
            Some(Ok(_)) => continue,
        };
        let now = unix_nanos();
        let text = msg.as_str();
        shared.frames.fetch_add(1, Ordering::Relaxed);
        shared.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
        let Some(h) = head(text) else {
            shared.unparsed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        match h.kind {
            "delta" => {
                shared.deltas.fetch_add(1, Ordering::Relaxed);
                if let Some(p) = h.position {
                    if p <= last {
                        shared.order_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    last = p;
                    shared.set_position(i, p);
                }
                if i == 0 {
                    let mut c = lock(&shared.capture);
                    if c.deltas.len() < shared.capture_limit {
                        c.deltas.push(text.to_owned());
                    }
                }
                if let Some(at) = h.as_of.and_then(parse_ns)
                    && at >= shared.from.load(Ordering::Relaxed)
                    && at < shared.to.load(Ordering::Relaxed)
                {
                    let us = u64::try_from((now - at).max(0) / 1000).unwrap_or(0);
                    let us = us.clamp(1, MAX_LATENCY_US);
                    if let Some(s) = shard {
                        lock(s).saturating_record(us);
                    }
                    shared.measured.fetch_add(1, Ordering::Relaxed);
                    shared.sec_max_us.fetch_max(us, Ordering::Relaxed);
                }
            }
            "snapshot" => {
                if subscribed {
                    shared.resyncs.fetch_add(1, Ordering::Relaxed);
                } else {
                    subscribed = true;
                    shared.subscribed.fetch_add(1, Ordering::Relaxed);
                    drop(permit.take());
                    if i == 0 {
                        let mut c = lock(&shared.capture);
                        c.snapshot = Some(text.to_owned());
                    }
                }
                last = h.position.unwrap_or(last);
                shared.set_position(i, last);
            }
            "heartbeat" => {
                shared.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            "error" => {
                break ("error frame".into(), text.chars().take(300).collect());
            }
            _ => {}
        }
    };
    shared.set_position(i, u64::MAX);
    if subscribed {
        shared.ended.fetch_add(1, Ordering::Relaxed);
        note(&shared.ends, end_reason.0, end_reason.1);
    } else {
        shared.failed.fetch_add(1, Ordering::Relaxed);
        note(&shared.failures, end_reason.0, end_reason.1);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn event_times_are_read() {
        assert!(parse_ns("2026-11-27T03:29:25.5Z").is_some());
        assert!(parse_ns("yesterday").is_none());
    }
}
