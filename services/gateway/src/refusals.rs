//! The audit of refused requests, without making the log an amplifier.
//!
//! A refusal of a caller **with a valid token** (a role that may not do this, a rate limit
//! on a user) names a person: it is recorded alone, as an `AccessDenied` event. A refusal of
//! a caller **without one** (no token, an invalid token, a wrong password, a foreign origin)
//! names nobody, and anyone can send thousands a second: 2,000 anonymous GETs once added
//! 2,000 fsync'd events (380 KB → 2.2 MB). Those are counted here instead.
//!
//! # Promises
//! - Unauthenticated refusals are counted per (client address, method, route pattern, code)
//!   over a window of [`WINDOW`] and recorded as one `AccessDenied` per key with its `count`
//!   and window (`at`..`until`): 2,000 anonymous GETs give a handful of events whose counts
//!   add up to 2,000. Broken by `gateway/tests/refusal_audit.rs`
//!   `anonymous_refusals_are_counted_not_recorded_one_by_one`.
//! - An address past [`PER_ADDRESS_PER_MINUTE`] unauthenticated refusals (burst
//!   [`PER_ADDRESS_BURST`]) is answered 429 `rate_limited` before its token is even looked
//!   at, and those refusals are counted too (code `rate_limited`). Same test.
//! - Refusals of a valid token stay one event each. Broken by `gateway/tests/refusal_audit.rs`
//!   `a_refusal_of_a_valid_token_is_recorded_alone`.
//! - The counts are recorded at the end of every window and when the gateway stops, so a
//!   refusal is in the log within about a minute (or at shutdown). Broken by the first test
//!   (it stops the gateway), by the unit test `counts_are_sent_at_the_end_of_the_window`, and
//!   for `vigil up` (whose bus, store and audit service stop after the gateway) by
//!   `vigil/tests/refusal_audit.rs` `the_refusals_counted_when_vigil_up_stops_are_recorded`.
//! - Memory is bounded: at most [`MAX_KEYS`] keys a window; refusals past it are counted in
//!   one catch-all row (code `overflow`, no address, route `*`) and in
//!   `vigil_gateway_refusals_overflow_total`. Unit test `keys_past_the_cap_go_to_one_row`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use events::audit::AccessDenied;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// How long refusals are counted before their counts are recorded.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Distinct (address, method, route, code) counted in one window; more go to one row.
pub const MAX_KEYS: usize = 256;
/// Unauthenticated refusals an address may cause a minute before it is answered 429.
pub const PER_ADDRESS_PER_MINUTE: u32 = 300;
/// ... and how many at once (a page with a stale token retrying every request).
pub const PER_ADDRESS_BURST: u32 = 300;

type Limiter = governor::RateLimiter<
    IpAddr,
    governor::state::keyed::DefaultKeyedStateStore<IpAddr>,
    governor::clock::DefaultClock,
>;

/// What one counted row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    peer: Option<IpAddr>,
    method: String,
    route: String,
    code: String,
}

/// The window being counted.
#[derive(Debug)]
struct Window {
    started: OffsetDateTime,
    counts: HashMap<Key, u64>,
    /// Refusals past [`MAX_KEYS`] distinct keys.
    overflow: u64,
}

impl Window {
    fn new() -> Self {
        Self {
            started: OffsetDateTime::now_utc(),
            counts: HashMap::new(),
            overflow: 0,
        }
    }

    /// The window's rows as audit records ending `until`.
    fn records(self, until: OffsetDateTime) -> Vec<AccessDenied> {
        let row = |peer: Option<IpAddr>, method: String, path: String, code: String, count| {
            AccessDenied {
                id: uuid::Uuid::new_v4(),
                at: self.started,
                actor: None,
                role: None,
                peer: peer.map(|p| p.to_string()),
                method,
                path,
                code,
                count,
                until: Some(until),
            }
            .bounded()
        };
        let mut out: Vec<AccessDenied> = self
            .counts
            .iter()
            .map(|(k, n)| {
                row(
                    k.peer,
                    k.method.clone(),
                    k.route.clone(),
                    k.code.clone(),
                    *n,
                )
            })
            .collect();
        if self.overflow > 0 {
            out.push(row(
                None,
                "*".into(),
                "*".into(),
                "overflow".into(),
                self.overflow,
            ));
        }
        out
    }
}

/// Counts unauthenticated refusals and records them per window; sends the others alone.
pub struct Refusals {
    /// The audit service is reached over NATS (the gateway never appends itself).
    client: async_nats::Client,
    /// A std mutex: held only to bump a count or swap the window, never across an await.
    window: Mutex<Window>,
    /// Unauthenticated refusals per address; keys are dropped at each window's end.
    limiter: Limiter,
    /// [`WINDOW`], shorter in tests.
    every: Duration,
}

impl Refusals {
    /// Counting for a gateway whose NATS connection is `client`.
    pub fn new(client: async_nats::Client) -> Self {
        Self::with_window(client, WINDOW)
    }

    fn with_window(client: async_nats::Client, every: Duration) -> Self {
        let n = |v: u32| std::num::NonZeroU32::new(v).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::per_minute(n(PER_ADDRESS_PER_MINUTE))
            .allow_burst(n(PER_ADDRESS_BURST));
        Self {
            client,
            window: Mutex::new(Window::new()),
            limiter: governor::RateLimiter::keyed(quota),
            every,
        }
    }

    /// Whether `peer` may be refused once more the ordinary way; `Err(wait)` when it is over
    /// its rate and is to be answered 429 instead.
    pub fn admit(&self, peer: Option<IpAddr>) -> Result<(), Duration> {
        use governor::clock::Clock;
        let Some(peer) = peer else { return Ok(()) };
        let now = governor::clock::DefaultClock::default().now();
        self.limiter
            .check_key(&peer)
            .map_err(|nu| nu.wait_time_from(now))
    }

    /// Counts one refusal of a caller without a valid token. `route` is the route's pattern
    /// (`/api/v1/incidents/{id}`), so ids in paths do not make new keys.
    pub fn count(&self, peer: Option<IpAddr>, method: &str, route: &str, code: &str) {
        let key = Key {
            peer,
            method: method.to_owned(),
            route: route.to_owned(),
            code: code.to_owned(),
        };
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        let full = w.counts.len() >= MAX_KEYS;
        match w.counts.get_mut(&key) {
            Some(n) => *n += 1,
            None if !full => {
                w.counts.insert(key, 1);
            }
            None => {
                w.overflow += 1;
                metrics::counter!("vigil_gateway_refusals_overflow_total").increment(1);
            }
        }
    }

    /// Records the window counted so far (one event per key) and starts a new one; waits
    /// until the audit service has them or gave up on them.
    pub async fn flush(&self) {
        let window = match self.window.lock() {
            Ok(mut w) => std::mem::replace(&mut *w, Window::new()),
            Err(_) => return,
        };
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let records = window.records(OffsetDateTime::now_utc());
        futures::future::join_all(records.into_iter().map(|r| send(self.client.clone(), r))).await;
    }

    /// Records the counts at the end of every [`WINDOW`] until `shutdown` (the gateway's
    /// server task flushes the last window after its last request).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.every) => self.flush().await,
            }
        }
    }

    /// Records one refusal of a valid token now (off the request's path).
    pub fn record_alone(&self, record: AccessDenied) {
        tokio::spawn(send(self.client.clone(), record.bounded()));
    }
}

/// Sends `record` to the audit service, retried a few times with the same id (stored once);
/// one that cannot be delivered is counted in `vigil_gateway_audit_failed_total`.
async fn send(client: async_nats::Client, record: AccessDenied) {
    let body: bytes::Bytes = events::codec::encode(&record).into();
    for attempt in 0..3u32 {
        let answer = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(events::audit::RECORD_SUBJECT, body.clone()),
        )
        .await;
        if let Ok(Ok(msg)) = answer
            && serde_json::from_slice::<serde_json::Value>(&msg.payload)
                .is_ok_and(|v| v.get("ok").is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * (attempt as u64 + 1))).await;
    }
    metrics::counter!("vigil_gateway_audit_failed_total").increment(1);
    tracing::warn!("could not record a refused request with the audit service");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn key_window(n: usize) -> Window {
        let mut w = Window::new();
        for i in 0..n {
            w.counts.insert(
                Key {
                    peer: Some(IpAddr::from([10, 0, 0, (i % 250) as u8])),
                    method: "GET".into(),
                    route: format!("/r{i}"),
                    code: "unauthorized".into(),
                },
                2,
            );
        }
        w
    }

    #[test]
    fn a_window_becomes_one_record_per_key_with_its_count() {
        let mut w = key_window(3);
        w.overflow = 5;
        let until = OffsetDateTime::now_utc();
        let records = w.records(until);
        assert_eq!(records.len(), 4);
        assert_eq!(records.iter().map(|r| r.count).sum::<u64>(), 11);
        assert!(
            records
                .iter()
                .all(|r| r.until == Some(until) && r.actor.is_none())
        );
        let catch_all = records.iter().find(|r| r.code == "overflow").unwrap();
        assert_eq!(
            (catch_all.path.as_str(), catch_all.peer.as_deref()),
            ("*", None)
        );
    }

    #[tokio::test]
    async fn keys_past_the_cap_go_to_one_row() {
        // Counting never touches the bus (only a flush does).
        let nats = testkit::NatsServer::start();
        let refusals = Refusals::new(nats.connect().await);
        for i in 0..(MAX_KEYS + 100) {
            let peer = Some(IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]));
            refusals.count(peer, "GET", "/api/v1/events", "unauthorized");
            refusals.count(peer, "GET", "/api/v1/events", "unauthorized");
        }
        let w = refusals.window.lock().unwrap();
        assert_eq!(w.counts.len(), MAX_KEYS);
        assert_eq!(w.overflow, 200);
        assert_eq!(
            w.counts.values().sum::<u64>() + w.overflow,
            2 * (MAX_KEYS as u64 + 100)
        );
    }

    #[tokio::test]
    async fn counts_are_sent_at_the_end_of_the_window() {
        use futures::StreamExt;
        let nats = testkit::NatsServer::start();
        // Here the test answers for the audit service, on the real bus.
        let listener = nats.connect().await;
        let mut records = listener
            .subscribe(events::audit::RECORD_SUBJECT)
            .await
            .unwrap();
        listener.flush().await.unwrap();
        let refusals = Arc::new(Refusals::with_window(
            nats.connect().await,
            Duration::from_millis(500),
        ));
        let stop = CancellationToken::new();
        let task = tokio::spawn(refusals.clone().run(stop.clone()));
        let peer = Some(IpAddr::from([192, 0, 2, 1]));
        for _ in 0..3 {
            refusals.count(peer, "GET", "/api/v1/events", "unauthorized");
        }
        let msg = tokio::time::timeout(Duration::from_secs(5), records.next())
            .await
            .expect("the window's counts were sent without a shutdown")
            .unwrap();
        let record: AccessDenied = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!((record.count, record.code.as_str()), (3, "unauthorized"));
        assert_eq!(record.peer.as_deref(), Some("192.0.2.1"));
        assert!(record.until.is_some_and(|u| u >= record.at));
        if let Some(reply) = msg.reply {
            listener
                .publish(reply, r#"{"ok":{"position":1}}"#.into())
                .await
                .unwrap();
        }
        stop.cancel();
        task.await.unwrap();
    }
}
