//! The catch-up subscription: every consumer of the log uses this one.
//!
//! # What it promises
//! The consumer receives every committed event after its starting position exactly once, in
//! position order, with no gaps — across store restarts, nats-server restarts and dropped
//! publications. The consumer says where to start (the last position it applied, 0 for the
//! whole log); it persists its own position if it needs to resume after its own restart.
//!
//! # How
//! 1. Subscribe to the live feed first (buffering), then read the log from the last applied
//!    position up to the head with `vigil.store.read`.
//! 2. Follow the live feed, where the store publishes each committed group as one message (a
//!    few for a large group) of consecutive positions: what is at or below the last position
//!    is a duplicate and is skipped (a message wholly below it is not even decoded); the rest
//!    is delivered in order; a message starting after the next position means a gap, which is
//!    filled by reading the log before the message's events are considered again. A message
//!    that does not read as a group (headers, body, positions) is ignored with a warning.
//! 3. When the live feed is quiet for `poll_interval`, ask the log whether anything was
//!    committed that the feed never brought (a publication lost in a NATS restart).
//! 4. When the store cannot be reached, retry with backoff; nothing is delivered out of order
//!    meanwhile.
//!
//! Each event is delivered read as the consumer asks ([`Logged`]): a `RecordedEvent` (the
//! services' registers), or a `TypedRecorded`, read from the store's bytes straight into its
//! typed domain event (the boards' fold).
//!
//! Delivery goes through a bounded channel: a slow consumer slows only its own subscription
//! (the live buffer then overflows in async-nats, and step 2 repairs it from the log).

use std::time::Duration;

use async_nats::Client;
use events::{RecordedEvent, TypedRecorded, subjects};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store_client::StoreClient;

/// Settings of one catch-up subscription.
#[derive(Debug, Clone)]
pub struct CatchUpConfig {
    /// Name in metrics and logs (`gateway`, `incidents`, ...).
    pub name: String,
    /// Last position already applied by the consumer (0 = read the whole log).
    pub after: u64,
    /// Page size of log reads.
    pub page: u32,
    /// How long the live feed may be quiet before the log is asked for missed events.
    pub poll_interval: Duration,
    /// Events buffered between the subscription and the consumer.
    pub buffer: usize,
    /// Timeout of one store call.
    pub store_timeout: Duration,
}

impl CatchUpConfig {
    /// Defaults for a consumer named `name` starting after position `after`.
    pub fn new(name: impl Into<String>, after: u64) -> Self {
        Self {
            name: name.into(),
            after,
            page: 1000,
            poll_interval: Duration::from_secs(1),
            buffer: 4096,
            store_timeout: Duration::from_secs(5),
        }
    }
}

/// What a catch-up subscription delivers: an event read from the JSON the store sends (a
/// page of `vigil.store.read`, a group of the live feed), with its log position.
pub trait Logged: for<'de> serde::Deserialize<'de> + Send + 'static {
    /// The event's global position.
    fn position(&self) -> u64;
}

/// The whole event, `data` as a JSON tree: what the services' registers read.
impl Logged for RecordedEvent {
    fn position(&self) -> u64 {
        self.position
    }
}

/// The event read straight into its typed domain event: what the boards' fold reads.
impl Logged for TypedRecorded {
    fn position(&self) -> u64 {
        self.position
    }
}

/// A running catch-up subscription; receive events with [`CatchUp::recv`].
pub struct CatchUp<T = RecordedEvent> {
    rx: mpsc::Receiver<T>,
    task: tokio::task::JoinHandle<()>,
}

impl CatchUp {
    /// Starts the subscription on `client`, delivering `RecordedEvent`s. It runs until
    /// `shutdown` fires or the `CatchUp` is dropped.
    pub fn start(client: Client, config: CatchUpConfig, shutdown: CancellationToken) -> Self {
        Self::start_as(client, config, shutdown)
    }
}

impl<T: Logged> CatchUp<T> {
    /// Starts the subscription on `client`, delivering each event read as a `T`.
    pub fn start_as(client: Client, config: CatchUpConfig, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(run(client, config, tx, shutdown));
        Self { rx, task }
    }

    /// The next event in position order; `None` after shutdown.
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }

    /// Waits for the next event, then also takes up to `max - 1` more that are already
    /// waiting, so a consumer can fold a burst under one lock.
    pub async fn recv_many(&mut self, buf: &mut Vec<T>, max: usize) -> usize {
        self.rx.recv_many(buf, max.max(1)).await
    }
}

impl<T> Drop for CatchUp<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The subscription's own state: where it is and where it knows the log to be.
struct Follower<T> {
    config: CatchUpConfig,
    store: StoreClient,
    tx: mpsc::Sender<T>,
    last: u64,
    known_head: u64,
}

/// Why following stopped.
enum Stop {
    /// Shutdown or the consumer went away.
    Done,
}

impl<T: Logged> Follower<T> {
    async fn deliver(&mut self, event: T) -> Result<(), Stop> {
        debug_assert_eq!(event.position(), self.last + 1);
        let position = event.position();
        self.tx.send(event).await.map_err(|_| Stop::Done)?;
        self.last = position;
        self.known_head = self.known_head.max(position);
        let name = self.config.name.clone();
        metrics::gauge!("vigil_consumer_position", "consumer" => name.clone()).set(position as f64);
        metrics::gauge!("vigil_consumer_lag", "consumer" => name)
            .set(self.known_head.saturating_sub(position) as f64);
        Ok(())
    }

    /// Reads the log from `last + 1` until the page is empty or `until` is reached.
    /// Retries an unreachable store with backoff until `shutdown`.
    async fn read_log(
        &mut self,
        until: Option<u64>,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let mut backoff = Duration::from_millis(50);
        loop {
            if until.is_some_and(|u| self.last >= u) {
                return Ok(());
            }
            let read = tokio::select! {
                _ = shutdown.cancelled() => return Err(Stop::Done),
                r = self.store.read_as::<T>(self.last + 1, self.config.page) => r,
            };
            match read {
                Ok((events, head)) => {
                    backoff = Duration::from_millis(50);
                    self.known_head = self.known_head.max(head);
                    if events.is_empty() {
                        if until.is_some_and(|u| u > head) {
                            // The live feed saw a position the store does not report yet
                            // (it cannot: the store publishes after commit), so wait a little.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                        return Ok(());
                    }
                    for event in events {
                        if event.position() <= self.last {
                            continue;
                        }
                        if event.position() != self.last + 1 {
                            tracing::error!(consumer = %self.config.name, expected = self.last + 1, got = event.position(), "the store returned a gap; re-reading");
                            break;
                        }
                        self.deliver(event).await?;
                    }
                }
                Err(e) => {
                    metrics::counter!("vigil_consumer_store_errors_total", "consumer" => self.config.name.clone()).increment(1);
                    tracing::warn!(consumer = %self.config.name, error = %e, "cannot read the log; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(Stop::Done),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

async fn run<T: Logged>(
    client: Client,
    config: CatchUpConfig,
    tx: mpsc::Sender<T>,
    shutdown: CancellationToken,
) {
    let store = StoreClient::new(client.clone(), config.store_timeout);
    let mut f = Follower {
        last: config.after,
        known_head: config.after,
        config,
        store,
        tx,
    };
    loop {
        let mut live = loop {
            match client.subscribe(subjects::EVENTS).await {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(consumer = %f.config.name, error = %e, "cannot subscribe to the live feed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        if f.read_log(None, &shutdown).await.is_err() {
            return;
        }
        tracing::debug!(consumer = %f.config.name, position = f.last, "caught up; following the live feed");
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = f.tx.closed() => return,
                m = tokio::time::timeout(f.config.poll_interval, live.next()) => m,
            };
            let step = match next {
                // Quiet: ask the log whether the feed missed anything.
                Err(_) => f.read_log(None, &shutdown).await,
                // The subscription ended (connection closed for good): subscribe again.
                Ok(None) => break,
                Ok(Some(msg)) => on_live(&mut f, msg, &shutdown).await,
            };
            if step.is_err() {
                return;
            }
        }
    }
}

/// A live-feed message read: the events of consecutive positions from `first`.
struct LiveGroup {
    first: u64,
    count: u64,
}

impl LiveGroup {
    /// The group a message's headers announce; `None` when they are missing or not numbers.
    fn of(msg: &async_nats::Message) -> Option<LiveGroup> {
        let headers = msg.headers.as_ref()?;
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.as_str().parse::<u64>().ok())
        };
        let first = number(subjects::FIRST_POSITION_HEADER).filter(|p| *p > 0)?;
        let count = number(subjects::COUNT_HEADER).filter(|c| *c > 0)?;
        first.checked_add(count - 1)?;
        Some(LiveGroup { first, count })
    }

    fn last(&self) -> u64 {
        self.first + (self.count - 1)
    }

    /// The message's events, checked against its headers: exactly `count` of them, at
    /// consecutive positions from `first`.
    fn events<T: Logged>(&self, payload: &[u8]) -> Result<Vec<T>, String> {
        let events: Vec<T> = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
        if events.len() as u64 != self.count {
            return Err(format!(
                "the message says it holds {} events but holds {}",
                self.count,
                events.len()
            ));
        }
        for (i, e) in events.iter().enumerate() {
            if e.position() != self.first + i as u64 {
                return Err(format!(
                    "event {i} is at position {}, not {}",
                    e.position(),
                    self.first + i as u64
                ));
            }
        }
        Ok(events)
    }
}

async fn on_live<T: Logged>(
    f: &mut Follower<T>,
    msg: async_nats::Message,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let read = LiveGroup::of(&msg)
        .ok_or_else(|| {
            format!(
                "no valid {} and {} headers",
                subjects::FIRST_POSITION_HEADER,
                subjects::COUNT_HEADER
            )
        })
        .and_then(|group| {
            // What was applied already is not even decoded.
            if group.last() <= f.last {
                return Ok(None);
            }
            group
                .events::<T>(&msg.payload)
                .map(|events| Some((group, events)))
        });
    let (group, events) = match read {
        Ok(Some(read)) => read,
        Ok(None) => return Ok(()),
        Err(e) => {
            // Only the store may publish here; a foreign message is logged, not applied.
            tracing::warn!(consumer = %f.config.name, subject = %msg.subject, error = %e, "ignoring an unreadable message on the event feed");
            return Ok(());
        }
    };
    f.known_head = f.known_head.max(group.last());
    if group.first > f.last + 1 {
        metrics::counter!("vigil_consumer_gaps_total", "consumer" => f.config.name.clone())
            .increment(1);
        tracing::debug!(consumer = %f.config.name, from = f.last + 1, to = group.first - 1, "gap in the live feed; reading the log");
        f.read_log(Some(group.first - 1), shutdown).await?;
    }
    for event in events {
        if event.position() <= f.last {
            continue;
        }
        if event.position() != f.last + 1 {
            // The log did not reach the group (it cannot, short of a store that lost its
            // head); the next quiet poll or message repairs from the log.
            break;
        }
        f.deliver(event).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_nats::HeaderMap;
    use events::store_api::{ReadReply, ReadRequest};

    use super::*;

    /// The log of the fake store: positions 1..=20 of one stream, as the store records them.
    fn log() -> Vec<(RecordedEvent, Vec<u8>)> {
        (1..=20u64)
            .map(|p| {
                let bytes = serde_json::to_vec(&serde_json::json!({
                    "id": uuid::Uuid::new_v4(),
                    "stream": "note-00000000-0000-0000-0000-000000000001",
                    "type": "Noted", "v": 1, "data": {"p": p}, "meta": {},
                    "position": p, "version": p, "recorded_at": "2026-11-27T02:40:03.123Z",
                }))
                .unwrap();
                (serde_json::from_slice(&bytes).unwrap(), bytes)
            })
            .collect()
    }

    /// Answers `vigil.store.read` from `log` up to `head`, counting the reads. The one place
    /// a test stands in for the store, on purpose: the cases below need a head the test moves
    /// by hand (a group published before the log shows it, a gap only the log fills), which a
    /// real store, publishing its own feed for every append, cannot hold still. The real store
    /// end to end, across store and nats-server restarts, is `services/vigil/tests/catchup.rs`.
    async fn fake_store(
        client: Client,
        log: Arc<Vec<(RecordedEvent, Vec<u8>)>>,
        head: Arc<AtomicU64>,
        reads: Arc<std::sync::Mutex<Vec<u64>>>,
    ) {
        let mut sub = client.subscribe(subjects::STORE_READ).await.unwrap();
        client.flush().await.unwrap();
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let req: ReadRequest = serde_json::from_slice(&msg.payload).unwrap();
                reads.lock().unwrap().push(req.from);
                let head = head.load(Ordering::SeqCst);
                let events = log
                    .iter()
                    .map(|(e, _)| e.clone())
                    .filter(|e| e.position >= req.from && e.position <= head)
                    .take(req.limit as usize)
                    .collect();
                let reply = serde_json::to_vec(&ReadReply::Page { events, head }).unwrap();
                client
                    .publish(msg.reply.unwrap(), reply.into())
                    .await
                    .unwrap();
            }
        });
    }

    /// Publishes a feed message as the store does: `headers` first position and count,
    /// the body the stored bytes as a JSON array.
    async fn publish(client: &Client, first: u64, count: u64, body: Vec<u8>) {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::FIRST_POSITION_HEADER, first.to_string().as_str());
        headers.insert(subjects::COUNT_HEADER, count.to_string().as_str());
        client
            .publish_with_headers(subjects::EVENTS, headers, body.into())
            .await
            .unwrap();
        client.flush().await.unwrap();
    }

    fn group(log: &[(RecordedEvent, Vec<u8>)], first: u64, last: u64) -> Vec<u8> {
        let parts: Vec<&[u8]> = (first..=last)
            .map(|p| log[p as usize - 1].1.as_slice())
            .collect();
        [b"[".as_slice(), &parts.join(&b","[..]), b"]"].concat()
    }

    async fn expect(sub: &mut CatchUp, positions: std::ops::RangeInclusive<u64>) {
        for p in positions {
            let e = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                .await
                .unwrap_or_else(|_| panic!("position {p} was not delivered"))
                .unwrap();
            assert_eq!(e.position, p);
            assert_eq!(e.data["p"], p);
        }
    }

    /// The live feed carries groups: the part of a group already applied is skipped, a group
    /// after a gap waits for the log to fill the gap, a group cut in several messages is
    /// delivered whole and in order, and a message that does not read as a group is ignored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_live_feed_delivers_groups_once_and_in_order() {
        let nats = testkit::NatsServer::start();
        let log = Arc::new(log());
        let head = Arc::new(AtomicU64::new(3));
        // The `from` of every read the store was asked.
        let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
        let read_from = || reads.lock().unwrap().clone();
        fake_store(
            nats.connect().await,
            log.clone(),
            head.clone(),
            reads.clone(),
        )
        .await;
        let store = nats.connect().await;

        let mut config = CatchUpConfig::new("test", 0);
        config.page = 2;
        // No quiet polls during the test: only the feed and its gaps bring events.
        config.poll_interval = Duration::from_secs(600);
        let stop = CancellationToken::new();
        let mut sub = CatchUp::start(nats.connect().await, config, stop.clone());
        // Caught up from the log: 1..=3.
        expect(&mut sub, 1..=3).await;
        // ...and found its end (a read from 4 came back empty) before the feed starts.
        while read_from().len() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }

        // A group overlapping what was applied: only 4 and 5 are new.
        head.store(5, Ordering::SeqCst);
        publish(&store, 2, 4, group(&log, 2, 5)).await;
        expect(&mut sub, 4..=5).await;
        // Wholly applied already: skipped without decoding the body.
        publish(&store, 1, 5, b"not even json".to_vec()).await;

        // Unreadable messages: a count that does not match the body, positions that do not
        // follow the header, no headers at all.
        head.store(12, Ordering::SeqCst);
        publish(&store, 6, 3, group(&log, 6, 7)).await;
        publish(&store, 6, 2, group(&log, 7, 8)).await;
        store
            .publish(subjects::EVENTS, group(&log, 6, 6).into())
            .await
            .unwrap();

        // A group after a gap (6..=9 never published): the log fills the gap first.
        publish(&store, 10, 3, group(&log, 10, 12)).await;
        expect(&mut sub, 6..=12).await;
        // Read from the log: the catch-up (1, 3, then 4 to find the end) and the gap (6, 8),
        // not what the groups brought.
        assert_eq!(read_from(), [1, 3, 4, 6, 8]);

        // A group cut in several messages.
        head.store(20, Ordering::SeqCst);
        publish(&store, 13, 3, group(&log, 13, 15)).await;
        publish(&store, 16, 4, group(&log, 16, 19)).await;
        publish(&store, 20, 1, group(&log, 20, 20)).await;
        expect(&mut sub, 13..=20).await;
        assert_eq!(read_from(), [1, 3, 4, 6, 8]);

        // Nothing twice.
        let more = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
        assert!(more.is_err(), "delivered again: {more:?}");
        stop.cancel();
    }

    async fn expect_typed(
        sub: &mut CatchUp<TypedRecorded>,
        log: &[(RecordedEvent, Vec<u8>)],
        positions: std::ops::RangeInclusive<u64>,
    ) {
        for p in positions {
            let e = tokio::time::timeout(Duration::from_secs(5), sub.recv())
                .await
                .unwrap_or_else(|_| panic!("position {p} was not delivered"))
                .unwrap();
            let recorded = &log[p as usize - 1].0;
            assert_eq!((e.position, e.version, e.id), (p, p, recorded.id));
            assert_eq!(e.stream, recorded.stream);
            assert_eq!(e.recorded_at, recorded.recorded_at);
            assert!(matches!(e.event, events::Decoded::Unknown { .. }), "{e:?}");
        }
    }

    /// A subscription of typed events (the boards') reads the log's pages and the feed's
    /// groups from the same bytes: every position once, in order, with its coordinates
    /// (`Noted` is no domain event: it is delivered, as unknown).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_typed_subscription_reads_pages_and_groups() {
        let nats = testkit::NatsServer::start();
        let log = Arc::new(log());
        let head = Arc::new(AtomicU64::new(3));
        let reads = Arc::new(std::sync::Mutex::new(Vec::new()));
        fake_store(nats.connect().await, log.clone(), head.clone(), reads).await;
        let store = nats.connect().await;
        let mut config = CatchUpConfig::new("test", 0);
        config.page = 2;
        config.poll_interval = Duration::from_secs(600);
        let stop = CancellationToken::new();
        let mut sub =
            CatchUp::<TypedRecorded>::start_as(nats.connect().await, config, stop.clone());
        // From the log, in pages of 2.
        expect_typed(&mut sub, &log, 1..=3).await;
        // From the feed, a group overlapping what was applied.
        head.store(6, Ordering::SeqCst);
        publish(&store, 2, 5, group(&log, 2, 6)).await;
        expect_typed(&mut sub, &log, 4..=6).await;
        stop.cancel();
    }
}
