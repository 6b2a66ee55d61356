//! Retention: how long something that ended stays on the live board.
//!
//! Incidents, hostage cases, surges and orders leave the board when they end (MODEL.md): the
//! state holds only open ones. A broadcast is different: an old one may still await
//! acknowledgements, so it stays while it counts (awaits approval or an acknowledgement, or
//! has a failure standing), and once it has **ended** (cancelled, or live with nothing left
//! to wait for) it stays the board's retention longer (default [`DEFAULT_RETENTION`]), then
//! leaves. The log and the broadcast service's lists keep it; only the live board forgets it.
//!
//! Time is the board's own clock, never the wall clock: the latest `recorded_at` folded, or a
//! later time given to [`Situation::expire`] (the gateway's tick for a quiet centre). Before
//! each event is folded (and on a tick), every broadcast that ended at or before
//! `clock - retention` leaves the state; a listed one leaves the page with a `drop` and the
//! next kept broadcast comes into view at the end of the list (MODEL.md, "Retention"). An
//! ended broadcast counts for nothing, so no counter moves.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{Broadcast, Changes, MAX_BROADCASTS, Situation};

/// How long an ended broadcast stays on the live board by default: a day.
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// What the retention took off the board in one step (an event's fold or a tick).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Expired {
    /// Listed broadcasts that left, newest first (list order).
    pub(super) left: Vec<Uuid>,
    /// Broadcasts that came into view at the end of the list in their place, in list order.
    pub(super) into_view: Vec<Uuid>,
}

impl Expired {
    pub(super) fn is_empty(&self) -> bool {
        self.left.is_empty() && self.into_view.is_empty()
    }
}

/// Keeps `b.ended_at` and the index of ended broadcasts (`ended`) in step with whether `b`
/// (stream `id`) has ended, after a change at `at`: it ends at the first change that leaves
/// it counting for nothing, and stops having ended if a later change makes it count again.
pub(super) fn settle(
    ended: &mut BTreeSet<(OffsetDateTime, Uuid)>,
    id: Uuid,
    b: &mut Broadcast,
    at: OffsetDateTime,
) {
    match (b.ended(), b.ended_at) {
        (true, None) => {
            b.ended_at = Some(at);
            ended.insert((at, id));
        }
        (false, Some(t)) => {
            ended.remove(&(t, id));
            b.ended_at = None;
        }
        _ => {}
    }
}

#[cfg(test)]
impl Changes {
    /// How many broadcasts came into view in place of those the retention took off.
    pub(crate) fn came_into_view(&self) -> usize {
        self.expired.into_view.len()
    }
}

impl Situation {
    /// How many broadcasts the board keeps (listed or not). For tests.
    #[cfg(test)]
    pub(crate) fn kept_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// An empty board whose ended broadcasts leave it `retention` after they ended.
    pub fn with_retention(retention: std::time::Duration) -> Self {
        Self {
            retention_secs: retention.as_secs(),
            ..Self::empty()
        }
    }

    /// How long an ended broadcast stays on this board (whole seconds).
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retention_secs)
    }

    /// The board's clock: the latest time it has seen, an event's `recorded_at` or a tick's.
    pub fn clock(&self) -> Option<OffsetDateTime> {
        self.clock
    }

    /// A tick: moves the board's clock to `now` (never back) and takes off what the retention
    /// expired by then, as [`Situation::apply`] does before an event. `position` and `as_of`
    /// do not move. Returns what changed, for [`Situation::delta`] (empty when nothing left).
    /// Deterministic: the same board and `now` give the same result; a tick at a time no later
    /// than the next event's `recorded_at` changes nothing that event's fold would not.
    pub fn expire(&mut self, now: OffsetDateTime) -> Changes {
        self.advance_clock(now);
        Changes {
            expired: self.expire_due(),
            ..Changes::default()
        }
    }

    pub(super) fn advance_clock(&mut self, to: OffsetDateTime) {
        if self.clock.is_none_or(|c| c < to) {
            self.clock = Some(to);
        }
    }

    /// Takes off every broadcast that ended at or before `clock - retention`.
    pub(super) fn expire_due(&mut self) -> Expired {
        let secs = i64::try_from(self.retention_secs).unwrap_or(i64::MAX);
        let Some(cutoff) = self
            .clock
            .and_then(|c| c.checked_sub(time::Duration::seconds(secs)))
        else {
            return Expired::default();
        };
        if self.ended.first().is_none_or(|(t, _)| *t > cutoff) {
            return Expired::default();
        }
        let was_listed: Vec<Uuid> = self
            .broadcast_order
            .values()
            .rev()
            .take(MAX_BROADCASTS)
            .copied()
            .collect();
        while let Some(&(t, id)) = self.ended.first()
            && t <= cutoff
        {
            self.ended.pop_first();
            if let Some(b) = self.broadcasts.remove(&id) {
                self.broadcast_order.remove(&b.issued_pos);
            }
        }
        let left: Vec<Uuid> = was_listed
            .iter()
            .filter(|id| !self.broadcasts.contains_key(id))
            .copied()
            .collect();
        let kept = was_listed.len() - left.len();
        let into_view = self
            .broadcast_order
            .values()
            .rev()
            .take(MAX_BROADCASTS)
            .skip(kept)
            .copied()
            .collect();
        Expired { left, into_view }
    }
}
