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
//! 2. Follow the live feed: an event at or below the last position is a duplicate and is
//!    skipped; the next position is delivered; a later one means a gap, which is filled by
//!    reading the log before the live event is considered again.
//! 3. When the live feed is quiet for `poll_interval`, ask the log whether anything was
//!    committed that the feed never brought (a publication lost in a NATS restart).
//! 4. When the store cannot be reached, retry with backoff; nothing is delivered out of order
//!    meanwhile.
//!
//! Delivery goes through a bounded channel: a slow consumer slows only its own subscription
//! (the live buffer then overflows in async-nats, and step 2 repairs it from the log).

use std::time::Duration;

use async_nats::Client;
use events::{RecordedEvent, codec, subjects};
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

/// A running catch-up subscription; receive events with [`CatchUp::recv`].
pub struct CatchUp {
    rx: mpsc::Receiver<RecordedEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl CatchUp {
    /// Starts the subscription on `client`. It runs until `shutdown` fires or the `CatchUp`
    /// is dropped.
    pub fn start(client: Client, config: CatchUpConfig, shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(config.buffer.max(1));
        let task = tokio::spawn(run(client, config, tx, shutdown));
        Self { rx, task }
    }

    /// The next event in position order; `None` after shutdown.
    pub async fn recv(&mut self) -> Option<RecordedEvent> {
        self.rx.recv().await
    }

    /// Waits for the next event, then also takes up to `max - 1` more that are already
    /// waiting, so a consumer can fold a burst under one lock.
    pub async fn recv_many(&mut self, buf: &mut Vec<RecordedEvent>, max: usize) -> usize {
        self.rx.recv_many(buf, max.max(1)).await
    }
}

impl Drop for CatchUp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The subscription's own state: where it is and where it knows the log to be.
struct Follower {
    config: CatchUpConfig,
    store: StoreClient,
    tx: mpsc::Sender<RecordedEvent>,
    last: u64,
    known_head: u64,
}

/// Why following stopped.
enum Stop {
    /// Shutdown or the consumer went away.
    Done,
}

impl Follower {
    async fn deliver(&mut self, event: RecordedEvent) -> Result<(), Stop> {
        debug_assert_eq!(event.position, self.last + 1);
        let position = event.position;
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
                r = self.store.read(self.last + 1, self.config.page) => r,
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
                        if event.position <= self.last {
                            continue;
                        }
                        if event.position != self.last + 1 {
                            tracing::error!(consumer = %self.config.name, expected = self.last + 1, got = event.position, "the store returned a gap; re-reading");
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

async fn run(
    client: Client,
    config: CatchUpConfig,
    tx: mpsc::Sender<RecordedEvent>,
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
            match client.subscribe(subjects::EVENTS_ALL).await {
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

async fn on_live(
    f: &mut Follower,
    msg: async_nats::Message,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let header = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(subjects::POSITION_HEADER))
        .and_then(|v| v.as_str().parse::<u64>().ok());
    let event = match header {
        Some(p) if p <= f.last => return Ok(()),
        _ => match codec::decode_recorded(&msg.payload) {
            Ok(e) => e,
            Err(e) => {
                // Only the store may publish here; a foreign message is logged, not applied.
                tracing::warn!(consumer = %f.config.name, subject = %msg.subject, error = %e, "ignoring an unreadable message on the event feed");
                return Ok(());
            }
        },
    };
    f.known_head = f.known_head.max(event.position);
    if event.position <= f.last {
        return Ok(());
    }
    if event.position > f.last + 1 {
        metrics::counter!("vigil_consumer_gaps_total", "consumer" => f.config.name.clone())
            .increment(1);
        tracing::debug!(consumer = %f.config.name, from = f.last + 1, to = event.position, "gap in the live feed; reading the log");
        f.read_log(Some(event.position), shutdown).await?;
        if event.position <= f.last {
            return Ok(());
        }
    }
    f.deliver(event).await
}
