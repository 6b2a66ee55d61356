//! The clock the broadcast service reads "now" from: the system's, or one a test sets and
//! moves (so a test of a deadline does not sleep until it).

use std::sync::Mutex;

use time::OffsetDateTime;
use tokio::sync::Notify;

/// Where "now" comes from.
pub trait Clock: Send + Sync + 'static {
    /// The current moment.
    fn now(&self) -> OffsetDateTime;
    /// Resolves when the clock was moved by hand (never for the system clock).
    fn moved(&self) -> Option<&Notify> {
        None
    }
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that stands still until moved.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<OffsetDateTime>,
    moved: Notify,
}

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            now: Mutex::new(now),
            moved: Notify::new(),
        }
    }

    /// Sets the time and wakes whoever waits on it.
    pub fn set(&self, now: OffsetDateTime) {
        if let Ok(mut t) = self.now.lock() {
            *t = now;
        }
        self.moved.notify_waiters();
    }

    /// Moves the time forward.
    pub fn advance(&self, by: time::Duration) {
        let now = self.now() + by;
        self.set(now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.now.lock().map_or_else(|p| *p.into_inner(), |t| *t)
    }

    fn moved(&self) -> Option<&Notify> {
        Some(&self.moved)
    }
}
