//! A projection's own thread: where a fold of the log runs, off the async workers.
//!
//! A fold is CPU work under the projection's write lock. On an async worker it stalls every
//! task queued behind it there (HTTP requests, WebSocket writes, the services' answers): one
//! 1,024-event fold held a worker for hundreds of ms (ops/bench intake). So each projection
//! (the gateway's boards, each service's register) folds on a thread of its own, and its
//! async task only hands it what the catch-up subscription delivers ([`FoldThread::feed`]).
//!
//! # Promises
//! - Events are folded in the order they were sent, each once: the thread takes everything
//!   queued (at most `max_batch` events) as one batch and gives it to the fold.
//! - Bounded: at most [`QUEUE`] runs wait for the thread; then [`FoldThread::send`] waits,
//!   and behind it the catch-up subscription's own buffer fills (a slow fold slows only its
//!   own feed).
//! - [`FoldThread::finish`] closes the queue and returns once the thread has folded
//!   everything it was sent: a checkpoint taken then holds every event sent, none twice.

use events::RecordedEvent;
use tokio::sync::mpsc;

use crate::CatchUp;
use crate::catchup::Logged;

/// Runs of events queued for the thread before [`FoldThread::send`] waits.
pub const QUEUE: usize = 32;

/// A projection's fold on its own OS thread, of events read as `T` (see [`CatchUp`]).
pub struct FoldThread<T = RecordedEvent> {
    tx: mpsc::Sender<Vec<T>>,
    thread: std::thread::JoinHandle<()>,
}

impl<T: Logged> FoldThread<T> {
    /// Starts the thread `name`, giving `fold` every batch of events (in position order) until
    /// the queue closes. `fold` runs outside the async runtime: to start a task (a checkpoint
    /// write), it enters a `tokio::runtime::Handle` taken before.
    pub fn start(
        name: &str,
        max_batch: usize,
        mut fold: impl FnMut(Vec<T>) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, mut rx) = mpsc::channel::<Vec<T>>(QUEUE);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Some(mut batch) = rx.blocking_recv() {
                    while batch.len() < max_batch {
                        match rx.try_recv() {
                            Ok(more) => batch.extend(more),
                            Err(_) => break,
                        }
                    }
                    fold(batch);
                }
            })?;
        Ok(Self { tx, thread })
    }

    /// Queues a run of events, waiting while the queue is full; an error when the thread has
    /// ended (its fold panicked).
    pub async fn send(&self, events: Vec<T>) -> Result<(), ()> {
        self.tx.send(events).await.map_err(|_| ())
    }

    /// Hands the thread everything `sub` delivers, `run` events at most at a time, until the
    /// subscription ends (shutdown) or the thread does.
    pub async fn feed(&self, sub: &mut CatchUp<T>, run: usize) {
        let mut buf = Vec::with_capacity(run);
        while sub.recv_many(&mut buf, run).await > 0 {
            let events = std::mem::replace(&mut buf, Vec::with_capacity(run));
            if self.send(events).await.is_err() {
                return;
            }
        }
    }

    /// Closes the queue and waits until the thread has folded everything sent; false when it
    /// ended by a panic.
    pub async fn finish(self) -> bool {
        let Self { tx, thread } = self;
        drop(tx);
        tokio::task::spawn_blocking(move || thread.join().is_ok())
            .await
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn event(position: u64) -> RecordedEvent {
        let new = events::NewEvent {
            id: uuid::Uuid::new_v4(),
            event_type: "Noted".into(),
            v: 1,
            data: serde_json::json!({}),
            meta: events::Meta::default(),
        };
        let stream = events::StreamName::parse(&format!("note-{}", uuid::Uuid::nil()))
            .unwrap_or_else(|e| panic!("{e}"));
        RecordedEvent::record(
            new,
            stream,
            position,
            position,
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn everything_sent_is_folded_once_in_order_before_finish_returns() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let batches = Arc::new(Mutex::new(0usize));
        let (s, b) = (seen.clone(), batches.clone());
        let fold = FoldThread::start("test-fold", 64, move |batch: Vec<RecordedEvent>| {
            assert!(batch.len() <= 64 + 9, "one batch: what was queued");
            std::thread::sleep(std::time::Duration::from_millis(1));
            *b.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            s.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch.iter().map(|e| e.position));
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let mut next = 1;
        for _ in 0..100 {
            let run: Vec<_> = (next..next + 10).map(event).collect();
            next += 10;
            assert!(fold.send(run).await.is_ok());
        }
        assert!(fold.finish().await, "the thread ended by itself");
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen, (1..next).collect::<Vec<_>>());
        let batches = *batches.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            batches < 100,
            "queued runs are folded together: {batches} batches"
        );
    }
}
