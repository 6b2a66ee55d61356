//! The relocation service: relocation and evacuation orders and their roll calls, over NATS
//! only.
//!
//! # Commands (`vigil.cmd.relocation.<name>`, a `Command` in, a `Reply` out)
//! - `order` — body: `RelocationOrdered`'s fields. The command's id is the order's id. The
//!   roll call is computed from the register (personnel, duty stations, clearances: see
//!   [`order::Reference::roll_call`]) and appended with the order: one append when it has
//!   fewer than 500 people, else in chunks of 500, each person's entry with an id derived
//!   from the order and the person. A retry of the same order appends only what is missing
//!   (a roll call cut short by a crash is completed; nothing is stored twice) and answers
//!   with the order's original position (`duplicate: true`).
//! - `mark`, `mark_many`, `complete`, `rescind` — body `{"order": <uuid>, "change": {…}}`,
//!   decided by [`order::decide`] with optimistic concurrency; a retry with the same command
//!   id is answered with the original outcome.
//! - `get` — `{"order": <uuid>}`: the order, its roll call with names (duty views only),
//!   its tally and findings (people missing or unmarked after the deadline).
//! - `list` — [`order::ListQuery`] (`country`, `status`, `limit`, `cursor`): one
//!   [`events::page::Page`] of summaries, newest first.
//!
//! # Late arrivals and departures
//! The register decides, at each personnel or clearance event, who comes into or leaves the
//! place of each active order ([`order::Tracker`]); a background task appends those changes
//! (`PersonArrivedInArea`, `PersonLeftArea`) to the order's stream once the register has
//! read the log, under ids derived from order, trigger and person
//! ([`order::presence_id`]): a restart, a replay or a second instance stores each once.
//!
//! # Promises
//! An `ok` answer means every event of the command is on disk; a refusal changes nothing;
//! a field officer sees and marks only orders in their own country.

pub mod order;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Command, Refusal, Written, policy};
use events::domain::DomainEvent;
use events::domain::relocation::{self, RelocationOrdered, RollCallEntryAdded};
use events::{AppendRequest, ExpectedVersion, RecordedEvent};
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use runtime::{ReadModel, StoreClient};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use events::page::{Page, PageQuery};

use crate::order::{ListQuery, Order, Reference, Status, Tally, Tracker, Transition};

/// The service's name in subjects, NATS users and metrics.
pub const SERVICE: &str = "relocation";

/// Events per append when a roll call is written (the store's default limit is 500).
pub const CHUNK: usize = 500;

/// Body of `mark`, `mark_many`, `complete` and `rescind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The order.
    pub order: Uuid,
    /// The command's fields.
    pub change: Value,
}

/// Body of `get`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The order.
    pub order: Uuid,
}

/// One person of a roll call as `get` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RollCallLine {
    /// The roll-call entry and its latest mark.
    #[serde(flatten)]
    pub entry: order::Entry,
    /// Their name, from the reference data.
    pub name: Option<String>,
}

/// Answer of `get`.
#[derive(Debug, Clone, Serialize)]
pub struct OrderView {
    /// The order.
    pub id: Uuid,
    /// What was ordered.
    #[serde(flatten)]
    pub ordered: RelocationOrdered,
    /// Where it is in its life.
    pub status: Status,
    /// Counts.
    pub tally: Tally,
    /// People missing or unmarked after the deadline.
    pub findings: Vec<String>,
    /// Everyone on the roll call, by person id.
    pub roll_call: Vec<RollCallLine>,
    /// Log position of the order.
    pub position: u64,
    /// The stream's version.
    pub version: u64,
}

/// One order in a list.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The order.
    pub id: Uuid,
    /// What was ordered.
    #[serde(flatten)]
    pub ordered: RelocationOrdered,
    /// Where it is in its life.
    pub status: Status,
    /// Counts.
    pub tally: Tally,
    /// How many people are missing or unmarked after the deadline.
    pub findings: usize,
    /// Log position of the order.
    pub position: u64,
}

/// How often the presence changes decided by the register are looked for and appended.
const PRESENCE_TICK: Duration = Duration::from_millis(100);

/// The service's view of the log: reference data, every order, and who moved in or out of
/// the open ones.
#[derive(Debug, Default)]
struct Register {
    reference: Reference,
    orders: HashMap<Uuid, Option<Order>>,
    tracker: Tracker,
    /// The last position applied: events at or below it are duplicates.
    position: u64,
}

impl runtime::Fold for Register {
    fn apply(&mut self, e: &RecordedEvent) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        if e.stream.category().as_str() == "relocation" {
            order::apply(self.orders.entry(e.stream.id()).or_default(), e);
            self.tracker.follow_order(e);
        } else if let Some((person, cause)) = self.reference.apply(e) {
            self.tracker.moved(&self.reference, e, &person, cause);
        }
    }
}

struct Service {
    store: StoreClient,
    register: Arc<ReadModel<Register>>,
}

/// Serves the relocation commands until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let service = Arc::new(Service {
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        register: ReadModel::start(client.clone(), SERVICE, shutdown.clone()),
    });
    tokio::spawn(service.clone().presence(shutdown.clone()));
    commands::serve(client, SERVICE, shutdown, move |name, payload| {
        let service = service.clone();
        async move { service.handle(&name, payload).await }
    })
    .await
}

impl Service {
    /// Appends the presence changes the register decided, every tick, once it has read the
    /// log (before that, a change may already be stored further on).
    async fn presence(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PRESENCE_TICK) => {}
            }
            let pending = match self.register.caught_up() {
                Ok(register) => register.tracker.pending(),
                Err(_) => continue,
            };
            for (order, changes) in pending {
                for chunk in changes.chunks(CHUNK) {
                    self.append_presence(order, chunk).await;
                }
            }
        }
    }

    /// Appends one order's changes in one request; if the store says some are stored and
    /// some not (another instance got there first), one by one.
    async fn append_presence(&self, order: Uuid, changes: &[Transition]) {
        let stored: Vec<Uuid> = match self.append_changes(order, changes).await {
            Ok(()) => changes.iter().map(|c| c.id).collect(),
            Err(e) if e.code == events::ErrorCode::IdReused => {
                let mut stored = Vec::new();
                for c in changes {
                    match self.append_changes(order, std::slice::from_ref(c)).await {
                        Ok(()) => stored.push(c.id),
                        // Stored already with other content (by an instance whose register
                        // differed): the change is recorded once, which is what matters.
                        Err(e) if e.code == events::ErrorCode::IdReused => {
                            tracing::info!(%order, id = %c.id, "presence change already stored");
                            stored.push(c.id);
                        }
                        Err(e) => {
                            tracing::warn!(%order, id = %c.id, error = %e.message, "a presence change was not stored; will retry");
                        }
                    }
                }
                stored
            }
            Err(e) => {
                tracing::warn!(%order, error = %e.message, "presence changes were not stored; will retry");
                return;
            }
        };
        if let Ok(mut register) = self.register.write() {
            for id in stored {
                register.tracker.settle(id);
            }
        }
    }

    async fn append_changes(
        &self,
        order: Uuid,
        changes: &[Transition],
    ) -> Result<(), events::StoreError> {
        let events = changes
            .iter()
            .map(|c| {
                let meta = events::Meta {
                    actor: Some(format!("system:{SERVICE}")),
                    role: None,
                    source: Some("presence".to_owned()),
                    correlation_id: c.correlation_id,
                    causation_id: Some(c.trigger),
                    appended_by: None,
                };
                c.event.to_new_event(c.id, meta)
            })
            .collect();
        let request = AppendRequest {
            stream: relocation::stream_for(order),
            expected_version: ExpectedVersion::Any,
            events,
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(_) => Ok(()),
            Err(runtime::store_client::ClientError::Store(e)) => Err(e),
            Err(e) => Err(events::StoreError::unavailable(e.to_string())),
        }
    }

    async fn handle(&self, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "order" => reply(self.order(&payload).await),
            "mark" | "mark_many" | "complete" | "rescind" => {
                reply(self.transition(name, &payload).await)
            }
            "get" => reply(self.get(&payload).await),
            "list" => reply(self.list(&payload)),
            other => reply::<()>(Err(Refusal::invalid(format!(
                "unknown command {:?}; relocation takes order, mark, mark_many, complete, rescind, get, list",
                other.chars().take(32).collect::<String>()
            )))),
        }
    }

    async fn order(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let ordered: RelocationOrdered =
            events::codec::from_value(cmd.body.clone()).map_err(Refusal::invalid)?;
        cmd.actor
            .may(policy::ORDER_ISSUE, "give relocation or evacuation orders")?;
        if !cmd.actor.covers(ordered.country) {
            return Err(Refusal::forbidden(
                "you may give orders in your own country only",
            ));
        }
        let stream = relocation::stream_for(cmd.id);
        let (history, _) = commands::load(&self.store, &stream).await?;
        let existing = Order::fold(&history);
        if let Some(first) = history.first()
            && first.id != cmd.id
        {
            return Err(Refusal::new(
                events::command::RefusalCode::IdReused,
                "this order id is taken; give the order with a new id",
            ));
        }
        let today = OffsetDateTime::now_utc().date();
        let roll_call = self
            .register
            .caught_up()?
            .reference
            .roll_call(&ordered, today);
        let (new, expected) = match &existing {
            // A retry: complete the roll call if a crash cut it short, store nothing twice.
            Some(o) => {
                let on_it: BTreeSet<&String> = o.roll_call.keys().collect();
                let missing: Vec<DomainEvent> = roll_call
                    .into_iter()
                    .filter(|e| !on_it.contains(&e.person))
                    .map(DomainEvent::from)
                    .collect();
                (missing, ExpectedVersion::Any)
            }
            None => (
                order::decide_order(None, &cmd.actor, ordered, roll_call)?,
                ExpectedVersion::NoStream,
            ),
        };
        let meta = cmd.meta();
        let id_of = |e: &DomainEvent| match e {
            DomainEvent::RollCallEntryAdded(RollCallEntryAdded { person, .. }) => {
                Uuid::new_v5(&cmd.id, person.as_bytes())
            }
            _ => cmd.id,
        };
        let mut first_position = existing.as_ref().map(|o| o.position);
        let mut expected = expected;
        for chunk in new.chunks(CHUNK) {
            let events = chunk
                .iter()
                .map(|e| e.try_to_new_event(id_of(e), meta.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let request = AppendRequest {
                stream: stream.clone(),
                expected_version: expected,
                events,
            };
            let ok = self
                .store
                .append_retrying(&request, STORE_DEADLINE)
                .await
                .map_err(store_refusal)?;
            first_position.get_or_insert(ok.first_position);
            expected = ExpectedVersion::Any;
        }
        Ok(Written {
            stream,
            event_id: cmd.id,
            position: first_position.unwrap_or_default(),
            stream_version: 1,
            duplicate: existing.is_some(),
        })
    }

    async fn transition(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let parsed = order::parse(name, cmd.body.change.clone())?;
        let id = cmd.body.order;
        commands::execute(&self.store, &relocation::stream_for(id), &cmd, |history| {
            order::decide(
                id,
                Order::fold(history).as_ref(),
                &cmd.actor,
                parsed.clone(),
            )
        })
        .await
    }

    async fn get(&self, payload: &[u8]) -> Result<OrderView, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::ORDER_READ, "read orders")?;
        let (history, _) =
            commands::load(&self.store, &relocation::stream_for(cmd.body.order)).await?;
        let order = Order::fold(&history)
            .filter(|o| order::visible(&cmd.actor, o))
            .ok_or_else(|| {
                Refusal::not_found(format!(
                    "no order {} that you can see; check the id",
                    cmd.body.order
                ))
            })?;
        let register = self.register.read()?;
        let now = OffsetDateTime::now_utc();
        Ok(OrderView {
            id: order.id,
            ordered: order.ordered.clone(),
            status: order.status,
            tally: order.tally(),
            findings: order.findings(now).into_iter().map(str::to_owned).collect(),
            roll_call: order
                .roll_call
                .values()
                .map(|e| RollCallLine {
                    name: register.reference.name(&e.entry.person).map(str::to_owned),
                    entry: e.clone(),
                })
                .collect(),
            position: order.position,
            version: order.version,
        })
    }

    fn list(&self, payload: &[u8]) -> Result<Page<Summary>, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        cmd.actor.may(policy::ORDER_READ, "read orders")?;
        let register = self.register.caught_up()?;
        let now = OffsetDateTime::now_utc();
        let found: Vec<&Order> = register
            .orders
            .values()
            .flatten()
            .filter(|o| order::visible(&cmd.actor, o))
            .filter(|o| cmd.body.country.is_none_or(|c| o.ordered.country == c))
            .filter(|o| cmd.body.status.is_none_or(|s| o.status == s))
            .collect();
        events::page::newest_first(
            found,
            |o| o.position,
            PageQuery::new(cmd.body.limit, cmd.body.cursor),
            register.position,
            |o| Summary {
                id: o.id,
                ordered: o.ordered.clone(),
                status: o.status,
                tally: o.tally(),
                findings: o.findings(now).len(),
                position: o.position,
            },
        )
    }
}
