//! Given/when/then for domain aggregates, on the [`Aggregate`] trait: given the events of a
//! stream, when an actor sends a command, then these events (or this refusal). Pure: no
//! NATS, no disk, no clock (the facts a decision needs are given, like the events).
//!
//! ```ignore
//! let stream = Stream::<Incident>::new(ID, |_| Facts::at(NOW));
//! stream
//!     .given(vec![reported()])
//!     .when(&duty(), "verify", json!({}))
//!     .then(vec![verified()]);
//! stream.given(vec![]).when(&duty(), "close", json!({"reason": "r"})).refused(RefusalCode::NotFound);
//! ```

use std::rc::Rc;

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, RefusalCode};
use events::domain::DomainEvent;
use events::{Meta, RecordedEvent};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// The facts a decision gets, given the parsed command.
type FactsOf<A> = Rc<dyn Fn(&<A as Aggregate>::Command) -> <A as Aggregate>::Facts>;

/// One aggregate's stream as the tests record it: its id, how its events are stamped, and
/// the facts a decision is given.
pub struct Stream<A: Aggregate> {
    id: Uuid,
    first_position: u64,
    position_step: u64,
    first_at: OffsetDateTime,
    every: Duration,
    by: Option<String>,
    facts: FactsOf<A>,
}

impl<A: Aggregate> Clone for Stream<A> {
    fn clone(&self) -> Self {
        Self {
            id: self.id,
            first_position: self.first_position,
            position_step: self.position_step,
            first_at: self.first_at,
            every: self.every,
            by: self.by.clone(),
            facts: self.facts.clone(),
        }
    }
}

impl<A: Aggregate> Stream<A> {
    /// The stream of aggregate `id`, whose decisions get `facts(command)`. Its `n`-th event
    /// (from 1) has version `n`, log position `10 n`, id `n`, no writer, and is recorded at
    /// 2026-11-27 03:15 UTC plus `n` minutes.
    pub fn new(id: Uuid, facts: impl Fn(&A::Command) -> A::Facts + 'static) -> Self {
        Self {
            id,
            first_position: 10,
            position_step: 10,
            first_at: time::macros::datetime!(2026-11-27 03:16 UTC),
            every: Duration::minutes(1),
            by: None,
            facts: Rc::new(facts),
        }
    }

    /// Events recorded from `first` on, `every` apart.
    #[must_use]
    pub fn recorded(mut self, first: OffsetDateTime, every: Duration) -> Self {
        self.first_at = first;
        self.every = every;
        self
    }

    /// Events at log positions `first`, `first + step`, ….
    #[must_use]
    pub fn positions(mut self, first: u64, step: u64) -> Self {
        self.first_position = first;
        self.position_step = step;
        self
    }

    /// Events written by `user` (their `meta.actor`).
    #[must_use]
    pub fn by(mut self, user: &str) -> Self {
        self.by = Some(user.to_owned());
        self
    }

    /// The aggregate's id.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// `events` as the stream's history.
    pub fn record(&self, events: &[DomainEvent]) -> Vec<RecordedEvent> {
        let stream = A::stream(self.id);
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let n = i as u64 + 1;
                let meta = Meta {
                    actor: self.by.clone(),
                    ..Meta::default()
                };
                RecordedEvent::record(
                    e.to_new_event(Uuid::from_u128(u128::from(n)), meta),
                    stream.clone(),
                    self.first_position + i as u64 * self.position_step,
                    n,
                    self.first_at + self.every * i as i32,
                )
            })
            .collect()
    }

    /// Given `events` in the stream.
    pub fn given(&self, events: Vec<DomainEvent>) -> Given<A> {
        Given {
            stream: self.clone(),
            events,
        }
    }
}

/// A stream's history, before a command.
pub struct Given<A: Aggregate> {
    stream: Stream<A>,
    events: Vec<DomainEvent>,
}

impl<A: Aggregate> Clone for Given<A> {
    fn clone(&self) -> Self {
        Self {
            stream: self.stream.clone(),
            events: self.events.clone(),
        }
    }
}

impl<A: Aggregate> Given<A> {
    /// The same history followed by `more`.
    #[must_use]
    pub fn and(mut self, more: impl IntoIterator<Item = DomainEvent>) -> Self {
        self.events.extend(more);
        self
    }

    /// The events given.
    pub fn events(&self) -> &[DomainEvent] {
        &self.events
    }

    /// The events given, as recorded.
    pub fn history(&self) -> Vec<RecordedEvent> {
        self.stream.record(&self.events)
    }

    /// The aggregate folded from the history.
    pub fn state(&self) -> Option<A> {
        A::fold(&self.history())
    }

    /// With other facts for the next decisions.
    #[must_use]
    pub fn with_facts(&self, facts: impl Fn(&A::Command) -> A::Facts + 'static) -> Self {
        let mut given = self.clone();
        given.stream.facts = Rc::new(facts);
        given
    }

    /// When `actor` sends command `name` with `body`: parsed, then decided against the
    /// folded history with the stream's facts.
    pub fn when(&self, actor: &Actor, name: &str, body: Value) -> When<A> {
        let result = A::parse(name, actor, body).and_then(|command| {
            let facts = (self.stream.facts)(&command);
            A::decide(
                self.stream.id,
                self.state().as_ref(),
                actor,
                command,
                &facts,
            )
        });
        When {
            given: self.clone(),
            what: format!("{name} by {}", actor.user),
            result,
        }
    }
}

/// The outcome of a command.
#[must_use]
pub struct When<A: Aggregate> {
    given: Given<A>,
    what: String,
    result: Result<Vec<DomainEvent>, Refusal>,
}

impl<A: Aggregate> When<A> {
    /// The decision as it came.
    pub fn result(self) -> Result<Vec<DomainEvent>, Refusal> {
        self.result
    }

    /// The events decided; panics with the refusal if it was refused.
    pub fn events(self) -> Vec<DomainEvent> {
        match self.result {
            Ok(events) => events,
            Err(r) => panic!("{}: refused {:?}: {}", self.what, r.code, r.message),
        }
    }

    /// Then exactly `expected` are decided: the history with them, for the next command.
    pub fn then(self, expected: Vec<DomainEvent>) -> Given<A> {
        let what = self.what.clone();
        let mut given = self.given.clone();
        let decided = self.events();
        assert_eq!(decided, expected, "{what}");
        given.events.extend(decided);
        given
    }

    /// The command is accepted: the history with its events, for the next command.
    pub fn accepted(self) -> Given<A> {
        let mut given = self.given.clone();
        given.events.extend(self.events());
        given
    }

    /// Then it is refused with `code`: the refusal, for its message.
    pub fn refused(self, code: RefusalCode) -> Refusal {
        match self.result {
            Ok(events) => panic!("{}: expected {code:?}, decided {events:?}", self.what),
            Err(r) => {
                assert_eq!(r.code, code, "{}: {}", self.what, r.message);
                r
            }
        }
    }
}
