//! A service's read model of the whole log: the register a service answers lists from and
//! checks cross-stream rules against (who is on which surge, who is where).
//!
//! # Promises
//! - A background task folds every committed event into the model exactly once, in position
//!   order, through the catch-up subscription (so it survives store and NATS restarts). The
//!   fold runs on the model's own thread (`fold_thread`, `vigil-fold-<name>`): the service's
//!   answers never wait for it on an async worker, only for the write lock it holds while
//!   folding one batch.
//! - [`ReadModel::caught_up`] hands out the model only once it has read the log up to the head
//!   as it stood when the service started; before that it answers a typed `unavailable`, so a
//!   list never silently misses what was there before the restart.
//! - A model's `apply` must ignore events at or below what it has applied (the subscription
//!   delivers each once, but a service may also fold its own writes early).
//! - A model that opts in to checkpoints ([`Fold::checkpoint`]) starts from its checkpoint in
//!   the process's checkpoint directory (`runtime::checkpoint::default_dir`) when one is valid
//!   for this log and this code version, and folds only the log after it; any other checkpoint
//!   is logged and ignored, and the whole log is folded. It saves one in the background every
//!   `checkpoint::EVERY_EVENTS` events or `checkpoint::EVERY`, and once more at shutdown
//!   ([`ReadModel::stopped`] waits for that). The state replaces the initial model, so a
//!   model that carries settings (`start_with`) takes them from the initial model, and
//!   refuses a checkpoint folded under other settings, in [`Fold::adopt`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use async_nats::Client;
use events::RecordedEvent;
use events::command::Refusal;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{self, Codec, Schedule};
use crate::reference::Shared;
use crate::{CatchUp, CatchUpConfig, FoldThread, StoreClient};

/// What a read model folds.
pub trait Fold: Default + Send + Sync + 'static {
    /// Applies one committed event (of any category).
    fn apply(&mut self, event: &RecordedEvent);

    /// How the model is checkpointed, if it is (`None`, the default: it folds the whole log
    /// at every start). A model that opts in returns `Some(Codec::json(VERSION))` with a
    /// version it bumps whenever its state or its fold changes. Its state is saved with the
    /// position the subscription delivered; a model whose service folds its own writes early
    /// (`Service::wrote`) may be ahead of that, so it opts in only if its `apply` tells a
    /// repeated event per stream, not by one position for the whole log.
    fn checkpoint() -> Option<Codec<Self>> {
        None
    }

    /// Gives the model the process's shared reference register ([`crate::reference`]), when
    /// its service runs in the host: called on the initial model and again on a model
    /// restored from its checkpoint (the handle is not part of the saved state). A model that
    /// reads reference data from it leaves reference events alone in its `apply`; one that
    /// is never given it (a unit test, a tool) folds them itself, as before.
    fn attach(&mut self, reference: &Shared) {
        let _ = reference;
    }

    /// Called on a model restored from its checkpoint with the model the service started
    /// with (`start_with`'s `initial`), before anything is folded: the restored model takes
    /// the settings it does not save (its configuration) from `initial`, or refuses the
    /// checkpoint (`Err`: why, e.g. the settings it was folded under are not these). A
    /// refused checkpoint is logged and the whole log is folded into `initial`. The default
    /// keeps the restored model as it is.
    fn adopt(&mut self, initial: &Self) -> Result<(), String> {
        let _ = initial;
        Ok(())
    }
}

/// A read model kept up to date from the log by a background task.
pub struct ReadModel<R> {
    name: &'static str,
    state: RwLock<R>,
    /// The last position folded.
    position: AtomicU64,
    /// The log's head when the service started (`u64::MAX` until known).
    start_head: AtomicU64,
    /// The store answered and the model is loading its checkpoint (a large register's takes
    /// a second or more: say so, not "waiting for the store").
    restoring: std::sync::atomic::AtomicBool,
    /// The task that follows the log (taken by [`ReadModel::stopped`]).
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Given to the model again after a restore ([`Fold::attach`]).
    reference: Option<Shared>,
    /// Wakes [`ReadModel::wait_for`] after each batch folded (a std pair: the waiters are
    /// other fold threads, not async tasks).
    folded: (std::sync::Mutex<()>, std::sync::Condvar),
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
        Self::start_attached(client, name, shutdown, initial, None)
    }

    /// [`ReadModel::start_with`], the model given the process's shared reference register
    /// ([`Fold::attach`]) when there is one.
    pub fn start_attached(
        client: Client,
        name: &'static str,
        shutdown: CancellationToken,
        mut initial: R,
        reference: Option<Shared>,
    ) -> Arc<Self> {
        if let Some(r) = &reference {
            initial.attach(r);
        }
        let model = Arc::new(Self::new(name, initial, reference));
        let task = tokio::spawn(follow(model.clone(), client, shutdown));
        if let Ok(mut slot) = model.task.lock() {
            *slot = Some(task);
        }
        model
    }

    /// A model its owner folded up to `position`, never following a log, and counted as
    /// caught up (tests and tools that fold events themselves).
    pub fn detached(name: &'static str, state: R, position: u64) -> Arc<Self> {
        let model = Self::new(name, state, None);
        model.position.store(position, Ordering::Release);
        model.start_head.store(position, Ordering::Release);
        Arc::new(model)
    }

    fn new(name: &'static str, state: R, reference: Option<Shared>) -> Self {
        Self {
            name,
            state: RwLock::new(state),
            position: AtomicU64::new(0),
            start_head: AtomicU64::new(u64::MAX),
            restoring: std::sync::atomic::AtomicBool::new(false),
            task: std::sync::Mutex::new(None),
            reference,
            folded: (std::sync::Mutex::new(()), std::sync::Condvar::new()),
        }
    }

    /// Waits, blocking the calling thread (a fold thread, never an async worker), until the
    /// model has folded `position`, at most `timeout`; whether it has.
    pub fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let (lock, woken) = &self.folded;
        let mut guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.position() < position {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            guard = match woken.wait_timeout(guard, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }

    /// What the model still has to read before it answers, in words for an operator (`None`
    /// once it has caught up with the log as it stood at start).
    pub fn loading(&self) -> Option<String> {
        let position = self.position();
        match self.start_head.load(Ordering::Acquire) {
            u64::MAX if self.restoring.load(Ordering::Acquire) => Some(format!(
                "the {} register is loading its checkpoint",
                self.name
            )),
            u64::MAX => Some(format!(
                "the {} register is waiting for the store to answer",
                self.name
            )),
            head if position < head => Some(format!(
                "the {} register is reading the log (at position {position} of {head})",
                self.name
            )),
            _ => None,
        }
    }

    /// Waits (at most 10 s) until the task following the log has ended after shutdown,
    /// having saved its last checkpoint.
    pub async fn stopped(&self) {
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task
            && tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
        {
            tracing::warn!(service = self.name, "the register did not stop within 10 s");
        }
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
    let saving = match (checkpoint::default_dir(), R::checkpoint()) {
        (Some(dir), Some(codec)) => Some((dir, codec)),
        _ => None,
    };
    let mut last_id = uuid::Uuid::nil();
    model.restoring.store(saving.is_some(), Ordering::Release);
    if let Some((dir, codec)) = &saving
        && let Some((position, id)) = restore(&model, &store, dir, codec).await
    {
        last_id = id;
        model.position.store(position, Ordering::Release);
    }
    model.start_head.store(head, Ordering::Release);
    model.restoring.store(false, Ordering::Release);
    let after = model.position.load(Ordering::Acquire);
    // The fold runs on the model's own thread (`FoldThread`): a service's answers never
    // wait for it on an async worker. The id of the last event folded, for the checkpoint.
    let last = Arc::new(std::sync::Mutex::new(last_id));
    let fold = {
        let (model, last, saving) = (model.clone(), last.clone(), saving.clone());
        let tokio_rt = tokio::runtime::Handle::current();
        let mut schedule = Schedule::from(after);
        move |batch: Vec<RecordedEvent>| {
            let mut copy = None;
            if let Ok(mut state) = model.state.write() {
                for e in &batch {
                    state.apply(e);
                }
                if let Some(e) = batch.last() {
                    model.position.fetch_max(e.position, Ordering::AcqRel);
                    {
                        // Under the waiters' lock, so none misses the wake-up.
                        let _waiters = model.folded.0.lock();
                        model.folded.1.notify_all();
                    }
                    if let Ok(mut id) = last.lock() {
                        *id = e.id;
                    }
                    if let Some((_, codec)) = &saving
                        && schedule.due(e.position)
                    {
                        // Copied under the lock, written after it is released.
                        copy = Some((e.position, e.id, (codec.copy)(&state)));
                    }
                }
            }
            if let (Some((dir, codec)), Some((position, id, state))) = (&saving, copy) {
                // Written on the runtime's blocking pool, never on the fold thread.
                let _in_runtime = tokio_rt.enter();
                schedule.save_in_background(dir.clone(), model.name, *codec, position, id, state);
            }
        }
    };
    let fold = match FoldThread::start(&format!("vigil-fold-{}", model.name), 1024, fold) {
        Ok(fold) => fold,
        Err(e) => {
            tracing::error!(service = model.name, error = %e, "cannot start the register's fold thread");
            return;
        }
    };
    let mut sub = CatchUp::start(client, CatchUpConfig::new(model.name, after), shutdown);
    fold.feed(&mut sub, 256).await;
    // The thread folds what it was sent, then ends: nothing is lost or folded twice.
    if !fold.finish().await {
        tracing::error!(
            service = model.name,
            "the register's fold thread panicked; no checkpoint is written"
        );
        return;
    }
    let last_id = last.lock().map_or(last_id, |id| *id);
    // Shutdown: one last checkpoint of what was folded.
    let position = model.position.load(Ordering::Acquire);
    let last = match &saving {
        Some((_, codec)) if position > after => model.state.read().ok().map(|s| (codec.copy)(&s)),
        _ => None,
    };
    if let (Some((dir, codec)), Some(state)) = (saving, last) {
        let name = model.name;
        let _ = tokio::task::spawn_blocking(move || {
            checkpoint::save_logged(&dir, name, &codec, position, last_id, &state)
        })
        .await;
    }
}

/// Loads the model's checkpoint into it if it is valid for this log; returns its position and
/// event id. Logs why it was ignored otherwise.
async fn restore<R: Fold>(
    model: &ReadModel<R>,
    store: &StoreClient,
    dir: &std::path::Path,
    codec: &Codec<R>,
) -> Option<(u64, uuid::Uuid)> {
    let file = checkpoint::file(dir, model.name);
    let loaded = {
        let (dir, name, codec) = (dir.to_owned(), model.name, *codec);
        tokio::task::spawn_blocking(move || checkpoint::load(&dir, name, &codec))
            .await
            .unwrap_or_else(|e| {
                Err(checkpoint::Ignored::Damaged(format!(
                    "the load failed: {e}"
                )))
            })
    };
    let loaded = match loaded {
        Ok(c) => checkpoint::check_against_log(store, c.position, c.event_id)
            .await
            .map(|()| c),
        Err(why) => Err(why),
    };
    let mut state = model.state.write().ok()?;
    let loaded = loaded.and_then(|mut c| {
        c.state
            .adopt(&state)
            .map_err(checkpoint::Ignored::OtherSettings)?;
        Ok(c)
    });
    match loaded {
        Ok(c) => {
            tracing::info!(
                service = model.name,
                position = c.position,
                "register starts from its checkpoint"
            );
            *state = c.state;
            if let Some(r) = &model.reference {
                state.attach(r);
            }
            Some((c.position, c.event_id))
        }
        Err(why) => {
            checkpoint::log_ignored(model.name, &file, &why);
            None
        }
    }
}
