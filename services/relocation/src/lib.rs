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
//!   decided by `Order::decide` ([`order::Order`]) with optimistic concurrency; a retry with the same command
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
//! Served by the generic host (`runtime::host`): this crate is the aggregate
//! ([`order::Order`]), its register and the wiring below ([`Relocation`]); `order` is a
//! command of its own (`Route::Custom`) and the presence appender a background task.
//!
//! # Promises
//! An `ok` answer means every event of the command is on disk; a refusal changes nothing;
//! a field officer sees and marks only orders in their own country.

pub mod order;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use events::aggregate::Aggregate;
use events::command::{Actor, Command, Refusal, Role, Written, policy};
use events::domain::DomainEvent;
use events::domain::relocation::{self, RelocationOrdered, RollCallEntryAdded};
use events::{AppendRequest, ExpectedVersion, RecordedEvent, StreamName};
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use runtime::host::{self, Host, Route, Service};
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

// `Change` (body of `mark`, `mark_many`, `complete` and `rescind`) and `Get`, by `order`.
runtime::bodies!(order);

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

/// One order in a list (in `events`, as the lists answer it).
pub use events::domain::relocation::OrderSummary as Summary;

/// How often the presence changes decided by the register are looked for and appended.
const PRESENCE_TICK: Duration = Duration::from_millis(100);

/// The service's view of the log: reference data, every order, and who moved in or out of
/// the open ones.
///
/// Checkpointed (`runtime::checkpoint`): everything but the handle of the shared reference
/// register, which is given again to a register restored from one. The presence changes
/// decided and not yet seen in the log are saved with it, so a restart stores them (under
/// their ids: once) without deciding them again.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Register {
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
            Order::apply(self.orders.entry(e.stream.id()).or_default(), e);
            self.tracker.follow_order(e);
        } else if let Some((person, cause)) = self.reference.apply(e) {
            self.tracker.moved(&self.reference, e, &person, cause);
        }
    }

    fn attach(&mut self, reference: &runtime::reference::Shared) {
        self.reference.attach(reference);
    }

    fn checkpoint() -> Option<runtime::checkpoint::Codec<Self>> {
        Some(runtime::checkpoint::Codec::json(REGISTER_VERSION))
    }
}

/// The code version of the register's state and fold, written in its checkpoints
/// (`runtime::checkpoint`): bump it whenever the register's fields or its fold change, so that
/// an old checkpoint is ignored and the whole log folded again.
pub const REGISTER_VERSION: u32 = 1;

impl runtime::host::Listing for Register {
    type Query = ListQuery;
    type Item = Summary;

    fn list(
        &self,
        actor: &Actor,
        q: &ListQuery,
        now: OffsetDateTime,
    ) -> Result<Page<Summary>, Refusal> {
        let found: Vec<&Order> = self
            .orders
            .values()
            .flatten()
            .filter(|o| order::visible(actor, o))
            .filter(|o| q.country.is_none_or(|c| o.ordered.country == c))
            .filter(|o| q.status.is_none_or(|s| o.status == s))
            .collect();
        events::page::newest_first(
            found,
            |o| o.position,
            PageQuery::new(q.limit, q.cursor),
            self.position,
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

/// The relocation service, as the host serves it.
pub struct Relocation;

impl Service for Relocation {
    type Aggregate = Order;
    type Register = Register;
    type Change = Change;
    type Get = Get;
    type View = OrderView;

    const NAME: &'static str = SERVICE;
    // Personnel and duty stations come from the process's shared reference register.
    const USES_REFERENCE: bool = true;
    // `order` computes the roll call from the register and appends it in chunks: its own.
    const COMMANDS: &'static [(&'static str, Route)] = &[
        ("order", Route::Custom),
        ("mark", Route::Change),
        ("mark_many", Route::Change),
        ("complete", Route::Change),
        ("rescind", Route::Change),
        ("get", Route::Get),
        ("list", Route::List),
    ];
    const READ: (&'static [Role], &'static str) = (policy::ORDER_READ, "read orders");

    async fn facts(
        _host: &Host<Self>,
        _id: Uuid,
        _actor: &Actor,
        _command: &order::OrderCommand,
    ) -> Result<(), Refusal> {
        Ok(())
    }

    fn visible(actor: &Actor, o: &Order) -> bool {
        order::visible(actor, o)
    }

    fn not_found(id: Uuid) -> Refusal {
        Refusal::not_found(format!("no order {id} that you can see; check the id"))
    }

    async fn view(
        host: &Host<Self>,
        _command: &Command<Get>,
        _stream: &StreamName,
        order: Order,
    ) -> Result<OrderView, Refusal> {
        let register = host.register().read()?;
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
                    name: register.reference.name(&e.entry.person),
                    entry: e.clone(),
                })
                .collect(),
            position: order.position,
            version: order.version,
        })
    }

    fn start(host: &Arc<Host<Self>>, shutdown: &CancellationToken) {
        tokio::spawn(presence(host.clone(), shutdown.clone()));
    }

    async fn custom(host: &Arc<Host<Self>>, name: &str, payload: Bytes) -> Vec<u8> {
        match name {
            "order" => reply(give_order(host, &payload).await),
            other => reply::<()>(Err(host::unknown_command(SERVICE, Self::COMMANDS, other))),
        }
    }
}

/// Appends the presence changes the register decided, every tick, once it has read the
/// log (before that, a change may already be stored further on).
async fn presence(host: Arc<Host<Relocation>>, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PRESENCE_TICK) => {}
        }
        let pending = match host.register().caught_up() {
            Ok(register) => register.tracker.pending(),
            Err(_) => continue,
        };
        for (order, changes) in pending {
            for chunk in changes.chunks(CHUNK) {
                append_presence(&host, order, chunk).await;
            }
        }
    }
}

/// Appends one order's changes in one request; if the store says some are stored and
/// some not (another instance got there first), one by one.
async fn append_presence(host: &Host<Relocation>, order: Uuid, changes: &[Transition]) {
    let stored: Vec<Uuid> = match append_changes(host, order, changes).await {
        Ok(()) => changes.iter().map(|c| c.id).collect(),
        Err(e) if e.code == events::ErrorCode::IdReused => {
            let mut stored = Vec::new();
            for c in changes {
                match append_changes(host, order, std::slice::from_ref(c)).await {
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
    if let Ok(mut register) = host.register().write() {
        for id in stored {
            register.tracker.settle(id);
        }
    }
}

async fn append_changes(
    host: &Host<Relocation>,
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
        after: None,
        stream: relocation::stream_for(order),
        expected_version: ExpectedVersion::Any,
        events,
    };
    match host.store().append_retrying(&request, STORE_DEADLINE).await {
        Ok(_) => Ok(()),
        Err(runtime::store_client::ClientError::Store(e)) => Err(e),
        Err(e) => Err(events::StoreError::unavailable(e.to_string())),
    }
}

/// `order`: the order and its roll call (see the crate doc).
async fn give_order(host: &Host<Relocation>, payload: &[u8]) -> Result<Written, Refusal> {
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
    let (history, _) = host.load(&stream).await?;
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
    // The roll call counts personnel: not before the reference data is read either.
    if let Some(reference) = host.reference() {
        drop(reference.caught_up()?);
    }
    let roll_call = host
        .register()
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
            after: None,
            stream: stream.clone(),
            expected_version: expected,
            events,
        };
        let ok = host
            .store()
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

#[cfg(test)]
mod checkpoint_tests;
