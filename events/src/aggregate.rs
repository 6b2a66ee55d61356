//! The one shape of a domain aggregate: read a command, decide, fold. Pure: no I/O, no clock
//! (what a decision needs from outside its stream, the time included, comes in as
//! [`Aggregate::Facts`], gathered by the service before it decides).
//!
//! # Promises
//! - [`Aggregate::decide`] is the one place a rule lives: the same history, actor, command
//!   and facts give the same events or the same refusal, on every instance and in every test.
//! - [`Aggregate::fold`] is [`Aggregate::apply`] over a stream's events in order; `None`
//!   until the stream holds the event that creates the aggregate. An event this build
//!   cannot read (unknown type or newer version) moves only the version on.
//!
//! Why these shapes: every aggregate's events are [`DomainEvent`]s (the log has one
//! vocabulary, and the host turns them into `NewEvent`s with the command's ids), and `apply`
//! takes the recorded event, not just its data, because states keep the log position, the
//! stream version, `recorded_at` and who wrote it (`meta.actor`).

use serde_json::Value;
use uuid::Uuid;

use crate::StreamName;
use crate::command::{Actor, Refusal};
use crate::domain::DomainEvent;
use crate::{Decoded, RecordedEvent};

/// A domain aggregate: the state of one stream, the commands it takes and its rules.
pub trait Aggregate: Sized {
    /// A command on one aggregate, its body read and checked for shape.
    type Command: Clone;
    /// What `decide` knows besides the stream (the clock, reference data the command names),
    /// looked up by the service before it decides.
    type Facts;

    /// The stream of aggregate `id` (`incident-<id>`, …).
    fn stream(id: Uuid) -> StreamName;

    /// Reads the body of command `name` (for a change of an existing aggregate, its
    /// `change` part) for `actor`. Fields that come from the login are set here and refused
    /// in the body. Errors are `invalid` and name the field.
    fn parse(name: &str, actor: &Actor, body: Value) -> Result<Self::Command, Refusal>;

    /// Applies one event of the aggregate's stream that this build can read (`event`, decoded
    /// from `recorded`) to `state` (`None`: not created yet).
    fn apply_known(state: &mut Option<Self>, event: DomainEvent, recorded: &RecordedEvent);

    /// Moves the state on to `recorded`'s version, for an event this build cannot read.
    fn skip(&mut self, recorded: &RecordedEvent);

    /// Applies one recorded event of the aggregate's stream to `state`. An event of a type
    /// or version this build cannot read is kept in the log; the aggregate only moves its
    /// version on ([`Aggregate::skip`]).
    fn apply(state: &mut Option<Self>, recorded: &RecordedEvent) {
        match DomainEvent::decode(recorded) {
            Decoded::Known(event) => Self::apply_known(state, event, recorded),
            Decoded::Unknown { .. } => {
                if let Some(s) = state.as_mut() {
                    s.skip(recorded);
                }
            }
        }
    }

    /// Folds a stream's events; `None` when the stream holds no creating event.
    fn fold(events: &[RecordedEvent]) -> Option<Self> {
        let mut state = None;
        for e in events {
            Self::apply(&mut state, e);
        }
        state
    }

    /// Decides what `command` by `actor` does to aggregate `id` in `state`: the events to
    /// append (at least one), or why not.
    fn decide(
        id: Uuid,
        state: Option<&Self>,
        actor: &Actor,
        command: Self::Command,
        facts: &Self::Facts,
    ) -> Result<Vec<DomainEvent>, Refusal>;
}
