//! The focal points' acknowledgements: `POST /api/v1/broadcasts/{id}/ack` with the agency's
//! token as soon as its webhook arrives, retried with the same id (so at most one is stored)
//! after a jittered backoff on a 409 "too many changes at the same moment", a 408/429/5xx
//! or a transport error, up to `--ack-attempts`; every retry and failure is counted.

use crate::cell::{Tally, lock};
use rand::Rng as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use uuid::Uuid;

/// One focal point's acknowledgement.
#[derive(Clone, Copy)]
pub(super) struct AckOutcome {
    /// First send.
    pub(super) sent: Instant,
    /// The last answer.
    pub(super) answered: Instant,
    /// Answered 200.
    pub(super) ok: bool,
}

/// The acknowledgements of a round.
pub(super) struct Acks {
    pub(super) outcomes: Mutex<Vec<Option<AckOutcome>>>,
    pub(super) ok: AtomicUsize,
    pub(super) failed: AtomicUsize,
    pub(super) retries: AtomicU64,
    pub(super) errors: Mutex<BTreeMap<String, Tally>>,
}

impl Acks {
    pub(super) fn new(n: usize) -> Self {
        Self {
            outcomes: Mutex::new(vec![None; n]),
            ok: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            retries: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
        }
    }

    pub(super) fn finished(&self) -> usize {
        self.ok.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed)
    }

    pub(super) fn error(&self, kind: String, detail: String) {
        let mut m = lock(&self.errors);
        let t = m.entry(kind).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }

    pub(super) fn done(&self, i: usize, outcome: AckOutcome) {
        if let Some(slot) = lock(&self.outcomes).get_mut(i) {
            *slot = Some(outcome);
        }
        if outcome.ok {
            self.ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What every acknowledgement of a round shares.
#[derive(Clone)]
pub(super) struct AckPlan {
    pub(super) http: reqwest::Client,
    /// `http://host:port` of the gateway or of the peer's handler.
    pub(super) base: String,
    pub(super) broadcast: Uuid,
    pub(super) tokens: Arc<Vec<String>>,
    pub(super) attempts: u32,
    pub(super) timeout: Duration,
    pub(super) acks: Arc<Acks>,
}

/// Wait before attempt `attempt + 1`: 10 ms doubling to 500 ms, jittered by up to half.
pub(super) fn backoff(attempt: u32) -> Duration {
    let base = 10u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(500);
    let jitter = rand::rng().random_range(0..=base / 2);
    Duration::from_millis(base + jitter)
}

/// Acknowledges for agency `i`, retrying what may be retried with the same command id.
async fn ack_one(plan: AckPlan, i: usize) {
    let url = format!("{}/api/v1/broadcasts/{}/ack", plan.base, plan.broadcast);
    let body = json!({ "id": Uuid::new_v4() }).to_string();
    let token = plan.tokens.get(i).cloned().unwrap_or_default();
    let sent = Instant::now();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let answer = plan
            .http
            .post(&url)
            .timeout(plan.timeout)
            .bearer_auth(&token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone())
            .send()
            .await;
        let (retry, kind, detail) = match answer {
            Ok(a) => {
                let status = a.status();
                let text = a.bytes().await.unwrap_or_default();
                if status == reqwest::StatusCode::OK {
                    plan.acks.done(
                        i,
                        AckOutcome {
                            sent,
                            answered: Instant::now(),
                            ok: true,
                        },
                    );
                    return;
                }
                let text: String = String::from_utf8_lossy(&text).chars().take(200).collect();
                let retry = matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
                    || (status == reqwest::StatusCode::CONFLICT
                        && !text.contains("already acknowledged"));
                (retry, format!("HTTP {}", status.as_u16()), text)
            }
            Err(e) => (
                true,
                if e.is_timeout() {
                    "timeout".to_owned()
                } else {
                    "transport error".to_owned()
                },
                format!("{e:#}"),
            ),
        };
        if retry && attempt < plan.attempts {
            plan.acks.retries.fetch_add(1, Ordering::Relaxed);
            plan.acks.error(format!("{kind}, retried"), detail);
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        plan.acks.error(
            format!("{kind}, given up after {attempt} attempt(s)"),
            detail,
        );
        plan.acks.done(
            i,
            AckOutcome {
                sent,
                answered: Instant::now(),
                ok: false,
            },
        );
        return;
    }
}

/// Acknowledges for every agency the receiver reports, until the round ends (aborting it
/// aborts the acknowledgements in flight).
pub(super) fn spawn_acker(
    plan: AckPlan,
    mut reached: mpsc::UnboundedReceiver<usize>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut running = JoinSet::new();
        loop {
            tokio::select! {
                next = reached.recv() => match next {
                    Some(i) => {
                        running.spawn(ack_one(plan.clone(), i));
                    }
                    None => break,
                },
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        while running.join_next().await.is_some() {}
    })
}
