//! The long streams a service decides on, kept between its commands.
//!
//! # Why
//! A command is decided on its stream's whole history ([`crate::commands::execute`]). For a
//! short stream that is one read. For a long one (a relocation order's roll call, one event
//! per person and per mark; a hostage case after weeks) it was the whole stream over NATS for
//! every command: the 4,000th mark on an order read 4,000 events to add one, and a site's
//! backlog of marks, forwarded after a cut, slowed as it drained.
//!
//! # What it owns and promises
//! A bounded cache ([`CACHED_EVENTS`] events in all; streams of at least [`MIN_EVENTS`]
//! events only, shorter ones cost one read either way) of each stream's committed events and
//! its version, behind [`crate::StoreClient::read_history`]. A read of a cached stream asks the
//! store for the stream from the last event it holds: that event must come back first, the
//! same event (its id), and the rest is the tail; otherwise (the store's stream is shorter
//! or another history: a store restored from a backup) the cached copy is dropped and the
//! whole stream read again. So what a read returns is always a prefix-exact copy of the
//! store's stream as the store answered it, never older than the read: exactly what reading
//! it whole would have returned. Committed events never change, which is what makes the
//! prefix safe to keep; the optimistic-concurrency append after a decision still catches a
//! writer that came in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use events::{RecordedEvent, StreamName};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::store_client::{ClientError, StoreClient};

/// A stream's events, in version order (shared: a read hands out the cached copy).
pub type History = Arc<Vec<RecordedEvent>>;

/// Events kept in all, per client: a roll call of 20,000 people, or tens of long
/// broadcasts' delivery records; at a few hundred bytes an event, some 10 MB at most.
pub const CACHED_EVENTS: u64 = 20_000;
/// Streams shorter than this are not kept.
pub const MIN_EVENTS: usize = 32;

/// The weight of a kept stream: its events.
#[derive(Clone)]
struct Events;

impl Weighter<StreamName, (History, u64)> for Events {
    fn weight(&self, _: &StreamName, kept: &(History, u64)) -> u64 {
        kept.0.len() as u64
    }
}

/// See the module docs.
pub struct StreamCache {
    streams: Cache<StreamName, (History, u64), Events>,
    /// Kept copies dropped because the store's stream did not continue them.
    dropped: AtomicU64,
}

impl Default for StreamCache {
    fn default() -> Self {
        Self::new(CACHED_EVENTS)
    }
}

impl StreamCache {
    /// A cache of at most `events` events.
    pub fn new(events: u64) -> Self {
        // One shard: a shard's share of the weight bounds the longest stream kept, and a
        // service's commands do not contend enough for more to matter.
        let options = quick_cache::OptionsBuilder::new()
            .shards(1)
            .estimated_items_capacity(64)
            .weight_capacity(events)
            .build();
        let streams = match options {
            Ok(o) => Cache::with_options(o, Events, Default::default(), Default::default()),
            // Only a zero shard count fails to build; fall back to the library's defaults.
            Err(_) => Cache::with_weighter(64, events, Events),
        };
        Self {
            streams,
            dropped: AtomicU64::new(0),
        }
    }

    /// `stream`'s events and version, read through the cache (see the module docs).
    pub async fn read(
        &self,
        store: &StoreClient,
        stream: &StreamName,
    ) -> Result<(History, u64), ClientError> {
        // Taken out, so the copy is extended in place when no earlier reader still holds it.
        let kept = self.streams.remove(stream).map(|(_, kept)| kept);
        let (history, version) = match kept {
            Some((mut history, version)) if version > 0 && history.len() as u64 == version => {
                let (page, now) = store
                    .read_stream_from(stream, version, std::time::Duration::ZERO)
                    .await?;
                let continues = now >= version
                    && page.first().map(|e| e.id) == history.last().map(|e| e.id)
                    && page.len() as u64 == now - version + 1;
                if continues {
                    Arc::make_mut(&mut history).extend(page.into_iter().skip(1));
                    (history, now)
                } else {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("vigil_stream_cache_dropped_total").increment(1);
                    let (all, now) = store
                        .read_whole_stream(stream, std::time::Duration::ZERO)
                        .await?;
                    (Arc::new(all), now)
                }
            }
            _ => {
                let (all, now) = store
                    .read_whole_stream(stream, std::time::Duration::ZERO)
                    .await?;
                (Arc::new(all), now)
            }
        };
        if history.len() >= MIN_EVENTS && history.len() as u64 == version {
            self.streams
                .insert(stream.clone(), (history.clone(), version));
        }
        Ok((history, version))
    }

    /// How many kept copies were dropped because the store's stream did not continue them
    /// (also the metric `vigil_stream_cache_dropped_total`).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Streams kept now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}
