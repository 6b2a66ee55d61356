//! The register of every hostage case, folded from the whole log, and what it answers
//! lists with: the [`Summary`] of a case that everyone allowed to list cases sees (counts
//! and days held, never a person reference, captors or a location), the [`ListQuery`]
//! filters, and the registered names a crisis manager's read is given.

use std::collections::HashMap;

use events::aggregate::Aggregate;
use events::command::{Actor, Refusal, policy};
use events::domain::DomainEvent;
use events::page::{Cursor, Page, PageQuery};
use events::validate::Country;
use events::{Decoded, RecordedEvent};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{Case, PersonStatus, Status};

/// What everyone allowed to list hostage cases sees of one (in `events`, as the lists
/// answer it).
pub use events::domain::hostage::CaseSummary as Summary;

/// The summary of `case` as of `now`.
pub fn summary(case: &Case, now: OffsetDateTime) -> Summary {
    Summary {
        case: case.id,
        country: case.country,
        incident_id: case.incident_id,
        persons_held: case.persons_held(),
        persons_released: case.count(PersonStatus::Released),
        persons_deceased: case.count(PersonStatus::Deceased),
        persons_total: case.persons.len(),
        opened_at: case.opened_at,
        days_held: case.days_held(now),
        status: case.status,
    }
}

/// Filters of a list (`GET /api/v1/hostage-cases`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `open` or `closed`; `null` or absent for both.
    #[serde(default)]
    pub status: Option<Status>,
    /// Only this country.
    #[serde(default)]
    pub country: Option<Country>,
    /// At most this many (1 to [`MAX_LIST`](super::MAX_LIST), default
    /// [`DEFAULT_LIST`](super::DEFAULT_LIST)).
    #[serde(default)]
    pub limit: Option<usize>,
    /// After this one: the `next` of the previous page (see [`events::page`]).
    #[serde(default)]
    pub cursor: Option<Cursor>,
}

/// The code version of the register's state and fold, written in its checkpoints
/// (`runtime::checkpoint`): bump it whenever the register's fields or its fold change, so that
/// an old checkpoint is ignored and the whole log folded again.
/// (2: names are read from the process's shared reference register, not kept here.)
pub const REGISTER_VERSION: u32 = 2;

/// Every hostage case, folded from the whole log, and every person's name: answers lists
/// and puts names on a crisis manager's read.
///
/// In the service the names come from the process's shared reference register
/// (`runtime::reference`, given by [`runtime::Fold::attach`]); without it (a test, a tool)
/// the register folds them itself.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Register {
    cases: HashMap<Uuid, Option<Case>>,
    names: HashMap<String, String>,
    position: u64,
    #[serde(skip)]
    reference: Option<runtime::reference::Shared>,
}

impl runtime::Fold for Register {
    fn apply(&mut self, event: &RecordedEvent) {
        Register::apply(self, event);
    }

    fn attach(&mut self, reference: &runtime::reference::Shared) {
        self.reference = Some(reference.clone());
    }

    fn checkpoint() -> Option<runtime::checkpoint::Codec<Self>> {
        Some(runtime::checkpoint::Codec::json(REGISTER_VERSION))
    }
}

impl runtime::host::Listing for Register {
    type Query = ListQuery;
    type Item = Summary;

    fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        now: OffsetDateTime,
    ) -> Result<Page<Summary>, Refusal> {
        Register::list(self, actor, q, now)
    }
}

impl Register {
    /// Applies one event of the log (any category; hostage cases and personnel are kept).
    /// Events at or below the register's position are duplicates and ignored.
    pub fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        match e.stream.category().as_str() {
            "hostage" => Case::apply(self.cases.entry(e.stream.id()).or_default(), e),
            "person" if self.reference.is_none() => {
                if let Decoded::Known(DomainEvent::PersonRegistered(p)) = DomainEvent::decode(e) {
                    // The latest registration of a person stands.
                    self.names.insert(p.person, p.name);
                }
            }
            _ => {}
        }
    }

    /// The last log position applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The registered name of `person`, as this register folded it (without the shared
    /// reference register).
    pub fn name(&self, person: &str) -> Option<&str> {
        self.names.get(person).map(String::as_str)
    }

    /// The registered name of `person`: from the shared reference register when the
    /// register has one, else as it folded it.
    pub fn name_of(&self, person: &str) -> Option<String> {
        use runtime::reference::Directory;
        match &self.reference {
            Some(shared) => shared.read().ok()?.person(person).map(|p| p.name.clone()),
            None => self.name(person).map(str::to_owned),
        }
    }

    /// Summaries of the cases `actor` may see that match `q`, newest opening first, as of
    /// `now`.
    pub fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        now: OffsetDateTime,
    ) -> Result<Page<Summary>, Refusal> {
        actor.may(
            policy::HOSTAGE_SUMMARY,
            "list hostage cases; ask the duty officer",
        )?;
        if let Some(c) = q.country
            && !actor.covers(c)
        {
            return Err(Refusal::forbidden(format!(
                "you see hostage cases of {} only; leave out the country",
                actor.scope.map_or("no country", |c| c.as_str())
            )));
        }
        let found: Vec<&Case> = self
            .cases
            .values()
            .flatten()
            .filter(|c| actor.covers(c.country))
            .filter(|c| q.country.is_none_or(|country| c.country == country))
            .filter(|c| q.status.is_none_or(|s| c.status == s))
            .collect();
        events::page::newest_first(
            found,
            |c| c.opened_position,
            PageQuery::new(q.limit, q.cursor),
            self.position,
            |c| summary(c, now),
        )
    }
}
