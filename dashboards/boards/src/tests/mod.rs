//! Tests of the situation board: a small kit to write a log, unit tests per event family, and
//! property tests of the delta contract and of redaction.

use std::collections::HashMap;

use events::domain::DomainEvent;
use events::{Category, Meta, NewEvent, RecordedEvent, StreamName};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

use crate::{Situation, View, apply_ops, timestamp};

mod broadcasts;
mod checkpoint;
mod crisis_counts;
mod decode;
mod families;
mod properties;
mod replay;
mod retention;

/// When the test log starts; event n is recorded n minutes later.
const T0: OffsetDateTime = datetime!(2026-11-27 02:00 UTC);

/// A log being written by a test: positions from 1, versions per stream, a minute apart
/// (plus any [`Log::wait`]).
#[derive(Default)]
pub(crate) struct Log {
    pub(crate) events: Vec<RecordedEvent>,
    versions: HashMap<StreamName, u64>,
    /// Minutes waited so far, added to every later event's time.
    waited: i64,
}

impl Log {
    /// Lets `minutes` pass before the next event.
    pub(crate) fn wait(&mut self, minutes: i64) {
        self.waited += minutes;
    }

    /// When the next event will be recorded.
    pub(crate) fn next_time(&self) -> OffsetDateTime {
        T0 + time::Duration::minutes(self.events.len() as i64 + 1 + self.waited)
    }

    /// Appends a domain event to `<its category>-<id>`.
    pub(crate) fn push(&mut self, id: u128, event: impl Into<DomainEvent>) -> &RecordedEvent {
        let event = event.into();
        let new = event.to_new_event(Uuid::new_v4(), Meta::default());
        self.push_new(event.category(), id, new)
    }

    /// Appends a domain event to `<its category>-<id>`, done by `actor` (`meta.actor`).
    pub(crate) fn push_by(
        &mut self,
        id: u128,
        event: impl Into<DomainEvent>,
        actor: &str,
    ) -> &RecordedEvent {
        let event = event.into();
        let meta = Meta {
            actor: Some(actor.to_owned()),
            ..Meta::default()
        };
        let new = event.to_new_event(Uuid::new_v4(), meta);
        self.push_new(event.category(), id, new)
    }

    /// Appends an event as written, whatever its type and data.
    pub(crate) fn push_raw(
        &mut self,
        category: &str,
        id: u128,
        event_type: &str,
        v: u32,
        data: Value,
    ) -> &RecordedEvent {
        let new = NewEvent {
            id: Uuid::new_v4(),
            event_type: event_type.to_owned(),
            v,
            data,
            meta: Meta::default(),
        };
        self.push_new(category, id, new)
    }

    fn push_new(&mut self, category: &str, id: u128, new: NewEvent) -> &RecordedEvent {
        let category = Category::parse(category).unwrap_or_else(|e| panic!("{e}"));
        let stream = StreamName::new(category, Uuid::from_u128(id));
        let at = self.next_time();
        let version = self.versions.entry(stream.clone()).or_default();
        *version += 1;
        let position = self.events.len() as u64 + 1;
        self.events
            .push(RecordedEvent::record(new, stream, position, *version, at));
        &self.events[self.events.len() - 1]
    }

    /// The board after every event.
    pub(crate) fn board(&self) -> Situation {
        let board = crate::replay(&self.events);
        board.check_invariants().unwrap_or_else(|e| panic!("{e}"));
        board
    }

    /// The snapshot after every event.
    pub(crate) fn snapshot(&self, view: View) -> Value {
        self.board().snapshot(view)
    }
}

/// Folds `events[..k]`, takes the snapshot, then folds the rest applying each delta as the
/// page does (ops, then `position` and `as_of` from the delta message). Returns the page.
pub(crate) fn page_after_deltas(events: &[RecordedEvent], k: usize, view: View) -> Value {
    let mut board = crate::replay(&events[..k]);
    let mut page = board.snapshot(view);
    for event in &events[k..] {
        let changes = board.apply(typed(event));
        let ops = board.delta(&changes, view);
        assert_eq!(
            changes.is_empty(),
            ops.is_empty(),
            "{changes:?} gave {ops:?}"
        );
        apply_ops(&mut page, &ops);
        page["position"] = Value::from(board.position());
        page["as_of"] = board.as_of().map_or(Value::Null, timestamp);
    }
    page
}

/// `event` as the fold reads it from the store's bytes: encoded, then decoded typed.
pub(crate) fn typed(event: &RecordedEvent) -> events::TypedRecorded {
    events::TypedRecorded::from_recorded(event).unwrap_or_else(|e| panic!("{e}"))
}

/// The stream id of test entity `n` (any category).
pub(crate) fn uuid(n: u128) -> String {
    Uuid::from_u128(n).to_string()
}
