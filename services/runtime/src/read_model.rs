//! A service's read model of the whole log: the register a service answers lists from and
//! checks cross-stream rules against (who is on which surge, who is where).
//!
//! # Promises
//! - A background task folds every committed event into the model exactly once, in position
//!   order, through the catch-up subscription (so it survives store and NATS restarts).
//! - [`ReadModel::caught_up`] hands out the model only once it has read the log up to the head
//!   as it stood when the service started; before that it answers a typed `unavailable`, so a
//!   list never silently misses what was there before the restart.
//! - A model's `apply` must ignore events at or below what it has applied (the subscription
//!   delivers each once, but a service may also fold its own writes early).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_nats::Client;
use events::RecordedEvent;
use events::command::Refusal;
use tokio_util::sync::CancellationToken;

use crate::{CatchUp, CatchUpConfig, StoreClient};

/// What a read model folds.
pub trait Fold: Default + Send + Sync + 'static {
    /// Applies one committed event (of any category).
    fn apply(&mut self, event: &RecordedEvent);
}

/// A read model kept up to date from the log by a background task.
pub struct ReadModel<R> {
    name: &'static str,
    state: RwLock<R>,
    /// The last position folded.
    position: AtomicU64,
    /// The log's head when the service started (`u64::MAX` until known).
    start_head: AtomicU64,
}

impl<R: Fold> ReadModel<R> {
    /// Starts folding the log from position 1 into a fresh model, until `shutdown`.
    pub fn start(client: Client, name: &'static str, shutdown: CancellationToken) -> Arc<Self> {
        Self::start_with(client, name, shutdown, R::default())
    }

    /// Starts folding the log from position 1 into `initial` (a model that carries its
    /// settings, e.g. rules), until `shutdown`.
    pub fn start_with(
        client: Client,
        name: &'static str,
        shutdown: CancellationToken,
        initial: R,
    ) -> Arc<Self> {
        let model = Arc::new(Self {
            name,
            state: RwLock::new(initial),
            position: AtomicU64::new(0),
            start_head: AtomicU64::new(u64::MAX),
        });
        tokio::spawn(follow(model.clone(), client, shutdown));
        model
    }

    fn poisoned(&self) -> Refusal {
        Refusal::unavailable(format!(
            "the {} service's register is unavailable; restart the service",
            self.name
        ))
    }

    /// The model, if it has caught up with the log as it stood at start.
    pub fn caught_up(&self) -> Result<RwLockReadGuard<'_, R>, Refusal> {
        let state = self.read()?;
        let position = self.position.load(Ordering::Acquire);
        if position < self.start_head.load(Ordering::Acquire) {
            return Err(Refusal::unavailable(format!(
                "the {} service is still reading the log (at position {position}); retry in a few seconds",
                self.name
            )));
        }
        Ok(state)
    }

    /// The model as it is now, caught up or not.
    pub fn read(&self) -> Result<RwLockReadGuard<'_, R>, Refusal> {
        self.state.read().map_err(|_| self.poisoned())
    }

    /// The model for a change the service makes itself (its own writes, folded early).
    pub fn write(&self) -> Result<RwLockWriteGuard<'_, R>, Refusal> {
        self.state.write().map_err(|_| self.poisoned())
    }

    /// The last log position folded.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }
}

async fn follow<R: Fold>(model: Arc<ReadModel<R>>, client: Client, shutdown: CancellationToken) {
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    let mut attempts = 0u32;
    let head = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = store.read(u64::MAX, 1) => match r {
                Ok((_, head)) => break head,
                Err(e) => {
                    // The store often starts a moment after the services: say so only when
                    // the wait gets long (every 10 s from 5 s on).
                    attempts += 1;
                    if attempts % 50 == 25 {
                        tracing::warn!(error = %e, service = model.name, "still waiting for the store");
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    };
    model.start_head.store(head, Ordering::Release);
    let mut sub = CatchUp::start(client, CatchUpConfig::new(model.name, 0), shutdown);
    let mut buf = Vec::with_capacity(256);
    while sub.recv_many(&mut buf, 256).await > 0 {
        if let Ok(mut state) = model.state.write() {
            for e in &buf {
                state.apply(e);
            }
        }
        if let Some(last) = buf.last() {
            model.position.fetch_max(last.position, Ordering::AcqRel);
        }
        buf.clear();
    }
}
