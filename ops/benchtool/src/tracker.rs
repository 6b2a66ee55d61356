//! Acknowledged writes waiting for a follower of the log (a board client, a service's
//! register) to reach their position: the time from a write's scheduled send to the moment
//! the follower was first seen at or past its position, whichever of the two (the
//! acknowledgement, the follower) comes first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::cell::{micros, new_histogram};

/// Acknowledged writes waiting for a follower of the log (the board client, a service's
/// register) to reach their position, and the times the follower reached each position.
pub struct Tracker {
    /// Highest position the follower was seen at.
    pub board_at: u64,
    /// When the follower was first seen at each position, this cell.
    arrivals: BTreeMap<u64, Instant>,
    /// Acknowledged writes the follower has not reached: position → (scheduled, measured).
    pub pending: BTreeMap<u64, (Instant, bool)>,
    /// Scheduled → reached, of measured writes, µs.
    pub hist: Histogram<u64>,
    /// Largest scheduled → reached since the last progress line, µs.
    pub sec_max_us: u64,
}

impl Tracker {
    /// Nothing seen, nothing pending.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            board_at: 0,
            arrivals: BTreeMap::new(),
            pending: BTreeMap::new(),
            hist: new_histogram()?,
            sec_max_us: 0,
        })
    }

    /// Forgets the cell (the follower's position stays).
    pub fn reset(&mut self) -> anyhow::Result<()> {
        self.arrivals.clear();
        self.pending.clear();
        self.hist = new_histogram()?;
        self.sec_max_us = 0;
        Ok(())
    }

    fn complete(&mut self, took: Duration, measured: bool) {
        let us = micros(took);
        self.sec_max_us = self.sec_max_us.max(us);
        if measured {
            self.hist.saturating_record(us);
        }
    }

    /// The follower reached `position` at `now`.
    pub fn on_board(&mut self, position: u64, now: Instant) {
        if position > self.board_at {
            self.board_at = position;
            self.arrivals.insert(position, now);
        }
        let rest = self.pending.split_off(&position.saturating_add(1));
        let done = std::mem::replace(&mut self.pending, rest);
        for (_, (scheduled, measured)) in done {
            self.complete(now.saturating_duration_since(scheduled), measured);
        }
    }

    /// A write scheduled at `scheduled` was acknowledged at `position`.
    pub fn on_ack(&mut self, position: u64, scheduled: Instant, measured: bool) {
        let arrived = self.arrivals.range(position..).next().map(|(_, &t)| t);
        match arrived {
            Some(t) => self.complete(t.saturating_duration_since(scheduled), measured),
            None => {
                self.pending.insert(position, (scheduled, measured));
            }
        }
    }

    /// For a progress line: where the follower is, how many writes wait for it, and the
    /// largest latency to it since the last call (µs).
    pub fn take_second(&mut self) -> (u64, usize, u64) {
        let worst = std::mem::take(&mut self.sec_max_us);
        (self.board_at, self.pending.len(), worst)
    }

    /// The histogram of the cell, and how many measured writes the follower never reached.
    pub fn finish(&mut self) -> anyhow::Result<(Histogram<u64>, u64)> {
        let missing = self.pending.values().filter(|(_, m)| *m).count() as u64;
        Ok((std::mem::replace(&mut self.hist, new_histogram()?), missing))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn acks_complete_whichever_comes_first() {
        let mut t = Tracker::new().unwrap();
        let s = Instant::now();
        // The ack first, then the follower.
        t.on_ack(5, s, true);
        assert_eq!(t.pending.len(), 1);
        t.on_board(6, s + Duration::from_millis(10));
        assert!(t.pending.is_empty());
        // The follower first (coalesced up to 8), then the ack of 7.
        t.on_board(8, s + Duration::from_millis(20));
        t.on_ack(7, s, true);
        assert!(t.pending.is_empty());
        assert_eq!(t.hist.len(), 2);
        assert_eq!(t.hist.max() / 1000, 20);
        // Not measured: completed, not recorded.
        t.on_ack(9, s, false);
        t.on_board(9, s + Duration::from_millis(1));
        assert_eq!(t.hist.len(), 2);
        t.on_ack(12, s, true);
        let (h, missing) = t.finish().unwrap();
        assert_eq!((h.len(), missing), (2, 1));
    }
}
