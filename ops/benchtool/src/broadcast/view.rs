//! The broadcast's own view (`GET /api/v1/broadcasts/{id}`), polled every `--poll-ms` from t0:
//! the first answer showing every agency delivered, delivered over its webhook and
//! acknowledged (each an upper bound, late by at most one period plus one GET).

use crate::cell::{self, Tally, lock, tally};
use anyhow::Context as _;
use hdrhistogram::Histogram;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the poller saw of `GET /api/v1/broadcasts/{id}`.
#[derive(Default)]
pub(super) struct Seen {
    /// First answer with `delivered == N` (any channel).
    pub(super) delivered: Option<Instant>,
    /// First answer with every agency delivered over its webhook.
    pub(super) webhooks: Option<Instant>,
    /// First answer with `acknowledged == N`.
    pub(super) acknowledged: Option<Instant>,
    /// The last answer's (delivered, over webhooks, acknowledged, failed).
    pub(super) last: (usize, usize, usize, usize),
    /// Answers read.
    pub(super) gets: u64,
    /// Failed reads, by kind.
    pub(super) errors: BTreeMap<String, Tally>,
}

impl Seen {
    pub(super) fn complete(&self) -> bool {
        self.delivered.is_some() && self.webhooks.is_some() && self.acknowledged.is_some()
    }
}

/// (delivered, delivered over the webhook, acknowledged, failed) of a broadcast's view.
pub(super) fn counts(view: &Value) -> (usize, usize, usize, usize) {
    let n = |k: &str| {
        view.get(k)
            .and_then(Value::as_u64)
            .map_or(0, |v| usize::try_from(v).unwrap_or(usize::MAX))
    };
    let webhooks = view
        .get("agencies")
        .and_then(Value::as_object)
        .map_or(0, |m| {
            m.values()
                .filter(|s| {
                    s.get("delivered")
                        .and_then(Value::as_array)
                        .is_some_and(|d| d.iter().any(|c| c.as_str() == Some("webhook")))
                })
                .count()
        });
    (n("delivered"), webhooks, n("acknowledged"), n("failed"))
}

/// A request with a bearer token (a `POST` of `body`, or a `GET`): status and body.
pub(super) async fn call(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    body: Option<String>,
    timeout: Duration,
) -> anyhow::Result<(u16, String)> {
    let request = match body {
        Some(b) => http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(b),
        None => http.get(url),
    };
    let answer = request
        .bearer_auth(token)
        .timeout(timeout)
        .send()
        .await
        .with_context(|| url.to_owned())?;
    let status = answer.status().as_u16();
    let text = answer
        .text()
        .await
        .with_context(|| format!("{url}: reading the answer"))?;
    Ok((status, text))
}

/// Reads the view every `period` until it shows everything (or the task is aborted).
#[allow(clippy::too_many_arguments)]
pub(super) fn spawn_poller(
    http: reqwest::Client,
    url: String,
    token: String,
    n: usize,
    period: Duration,
    timeout: Duration,
    seen: Arc<Mutex<Seen>>,
    gets: Arc<Mutex<Histogram<u64>>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let start = Instant::now();
            let outcome = call(&http, &url, &token, None, timeout).await;
            let now = Instant::now();
            let complete = {
                let mut s = lock(&seen);
                record_view(&mut s, outcome, now, start, n, &gets);
                s.complete()
            };
            if complete {
                return;
            }
            tokio::time::sleep_until((start + period).into()).await;
        }
    })
}

/// Notes one read of the view in `s`.
fn record_view(
    s: &mut Seen,
    outcome: anyhow::Result<(u16, String)>,
    now: Instant,
    start: Instant,
    n: usize,
    gets: &Mutex<Histogram<u64>>,
) {
    match outcome {
        Ok((200, text)) => match serde_json::from_str::<Value>(&text) {
            Ok(view) => {
                cell::record(gets, now.saturating_duration_since(start));
                s.gets += 1;
                let c = counts(&view);
                s.last = c;
                if c.0 >= n {
                    s.delivered.get_or_insert(now);
                }
                if c.1 >= n {
                    s.webhooks.get_or_insert(now);
                }
                if c.2 >= n {
                    s.acknowledged.get_or_insert(now);
                }
            }
            Err(e) => tally(&mut s.errors, "unreadable view".into(), e.to_string()),
        },
        Ok((status, text)) => tally(
            &mut s.errors,
            format!("HTTP {status}"),
            text.chars().take(200).collect(),
        ),
        Err(e) => tally(&mut s.errors, "transport error".into(), format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn views_are_counted_per_channel() {
        let view = json!({
            "delivered": 2, "acknowledged": 1, "failed": 0,
            "agencies": {
                "a1": {"delivered": ["nats", "webhook"]},
                "a2": {"delivered": ["nats"]},
                "a3": {"delivered": []}
            }
        });
        assert_eq!(counts(&view), (2, 1, 1, 0));
    }
}
