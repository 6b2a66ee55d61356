//! The generic service host: serves any [`Aggregate`] over NATS, so a domain service is its
//! aggregate, its register and a few lines of wiring (a [`Service`] impl).
//!
//! # What the host does for every service
//! - Takes `vigil.cmd.<service>.<command>` through [`commands::serve`] (queue group, at most
//!   `MAX_IN_FLIGHT` at once, the size limit, Unicode NFC) and dispatches by the command name
//!   through the service's table [`Service::COMMANDS`]; a name not in it is refused
//!   `invalid` with "unknown command …; <service> takes a, b, c", made from the table.
//! - [`Route::Create`]: the command's id is the aggregate's id, its stream's id and its first
//!   event's id; [`Create`] says how a retry is told from a reused id.
//! - [`Route::Change`]: body `{"<target>": <uuid>, "change": {…}}`; read the stream, decide,
//!   append with the version read, decide again after a lost race ([`commands::execute`]); a
//!   retry with the same command id is answered with the original outcome.
//! - [`Route::Get`]: body `{"<target>": <uuid>}`; the read policy, the aggregate folded from
//!   its own stream (always current), the visibility check, then the service's view.
//! - [`Route::List`]: one [`Page`] from the register that follows the log (`unavailable`
//!   until it has read the log as it stood at start).
//! - A batch (`vigil.cmd.<service>.<command>.batch`, [`events::subjects::batch_subject`],
//!   body a JSON array of commands): carried out in order, each answered as if sent alone
//!   once the one before had its answer, stopping after the first `unavailable`; blind
//!   creates ([`Create::Blind`]) are appended together, chained so that none is stored
//!   before the one it follows (a field site's reports after a cut link: one fsync for
//!   many, see `site::relay`).
//! - Readiness: every instance answers `vigil.status` ([`crate::status`]): ready once its
//!   register (and the shared reference register, for a service that reads it) has read the
//!   log as it stood at start.
//! - Reference data: a service that reads personnel or duty stations
//!   ([`Service::USES_REFERENCE`]) shares the process's one register of them
//!   ([`crate::reference`]) with the other hosted services of the process.
//! - Typed replies: `{"ok": …}` or `{"error": Refusal}`; `ok` for a change means the events
//!   are on disk; a refusal changes nothing.
//!
//! # Hooks, for what is special about a service
//! [`Service::facts`] (reference data read from other streams before deciding, and checks
//! that must come before that read), [`Service::decide`] (facts that depend on the state or
//! the register), [`Service::exclusive`] (decisions one at a time in this instance),
//! [`Service::wrote`] (the register learns a write before the feed brings it),
//! [`Service::view`] (what `get` answers: audited reads, names from the register),
//! [`Service::start`] (background tasks) and [`Service::custom`] (a command of its own).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::Decoded;
use events::aggregate::Aggregate;
use events::command::{Actor, Command, Refusal, RefusalCode, Role, Written};
use events::domain::DomainEvent;
use events::page::Page;
use events::{AppendRequest, ErrorCode, ExpectedVersion, RecordedEvent, StreamName};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use serde_json::value::RawValue;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::commands::{self, STORE_DEADLINE, reply, store_refusal};
use crate::reference::{self, Shared};
use crate::status::{self, ServiceStatus};
use crate::store_client::ClientError;
use crate::stream_cache::History;
use crate::{Fold, ReadModel, StoreClient};

/// How a command of a service's table is served.
#[derive(Debug, Clone, Copy)]
pub enum Route {
    /// Creates an aggregate from the command's body.
    Create(Create),
    /// Changes an existing aggregate: body [`Service::Change`].
    Change,
    /// One aggregate, folded from its stream: body [`Service::Get`].
    Get,
    /// A page of the register: body [`Listing::Query`].
    List,
    /// The service's own handler, [`Service::custom`].
    Custom,
}

/// How a create tells a retry from a reused id. Each names what is created (`noun`:
/// "incident") and the command that creates one (`verb`: "report"), for the `id_reused`
/// refusal ([`Create::reused`]).
#[derive(Debug, Clone, Copy)]
pub enum Create {
    /// No read first: appended with `no_stream`. The store's id index answers a retry (same
    /// id, same content) with the original positions and refuses the same id with other
    /// content; `no_stream` refuses a second create on the stream (`id_reused`).
    Blind {
        /// What is created.
        noun: &'static str,
        /// The command that creates one.
        verb: &'static str,
    },
    /// Read, decide and append like a change; a retry found in the stream must carry the
    /// same creating event ([`Service::created`]), else `id_reused`.
    Checked {
        /// What is created.
        noun: &'static str,
        /// The command that creates one.
        verb: &'static str,
    },
}

impl Create {
    /// The message of the `id_reused` refusal for `id`: it exists (with other content, for a
    /// checked create, which has read it), and what to do instead.
    pub fn reused(self, id: Uuid) -> String {
        match self {
            Create::Blind { noun, verb } => {
                format!("{noun} {id} already exists; {verb} a new {noun} with a new id")
            }
            Create::Checked { noun, verb } => format!(
                "{noun} {id} already exists with other content; {verb} a new {noun} with a new id"
            ),
        }
    }
}

/// A body that names one aggregate (`{"incident": <uuid>, …}`).
pub trait Target {
    /// The aggregate's id.
    fn target(&self) -> Uuid;
}

/// The body of a change: the aggregate and the change's fields.
pub trait Change: Target {
    /// The change's fields, as sent.
    fn change(&self) -> &Value;
}

/// A register that answers lists: one [`Page`] per query.
pub trait Listing: Fold {
    /// The list's body: its filters, `limit` and `cursor`. A bad one is refused `invalid`
    /// naming the field alone (`status: …`).
    type Query: DeserializeOwned + Send;
    /// One item of a page.
    type Item: Serialize;
    /// The page `query` asks for, of what `actor` may see, as of `now`.
    fn list(
        &self,
        actor: &Actor,
        query: &Self::Query,
        now: OffsetDateTime,
    ) -> Result<Page<Self::Item>, Refusal>;
}

/// Defines a service's `Change` and `Get` bodies for the target field `$target` (`incident`,
/// `case`, …): `{"<target>": <uuid>, "change": {…}}` and `{"<target>": <uuid>}`, unknown
/// fields refused.
#[macro_export]
macro_rules! bodies {
    ($target:ident) => {
        /// Body of a change: the target and the change's fields.
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Change {
            /// The target's id.
            pub $target: uuid::Uuid,
            /// The change's fields.
            pub change: serde_json::Value,
        }

        /// Body of `get`.
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Get {
            /// The target's id.
            pub $target: uuid::Uuid,
        }

        impl $crate::host::Target for Change {
            fn target(&self) -> uuid::Uuid {
                self.$target
            }
        }

        impl $crate::host::Change for Change {
            fn change(&self) -> &serde_json::Value {
                &self.change
            }
        }

        impl $crate::host::Target for Get {
            fn target(&self) -> uuid::Uuid {
                self.$target
            }
        }
    };
}

/// A domain service: its aggregate, its register, its command table and its hooks.
pub trait Service: Sized + Send + Sync + 'static {
    /// The aggregate of its streams.
    type Aggregate: Aggregate<Command: Send + Sync, Facts: Send + Sync> + Send + Sync + 'static;
    /// The register that follows the log and answers lists.
    type Register: Listing;
    /// Body of a change (see [`bodies!`]).
    type Change: Change + DeserializeOwned + Send + Sync;
    /// Body of `get` (see [`bodies!`]).
    type Get: Target + DeserializeOwned + Send + Sync;
    /// What `get` answers.
    type View: Serialize + Send;

    /// The service's name in subjects, NATS users and metrics.
    const NAME: &'static str;
    /// Its commands, in the order the "unknown command" refusal lists them.
    const COMMANDS: &'static [(&'static str, Route)];
    /// Who may read one aggregate, and what the refusal says they may not do.
    const READ: (&'static [Role], &'static str);
    /// Whether `list` checks [`Service::READ`] before the register is asked (else the
    /// register's `list` checks it).
    const LIST_CHECKS_READ: bool = true;
    /// Whether [`Service::wrote`] wants the state after each write of this instance.
    const FOLDS_WRITES: bool = false;
    /// Whether it reads reference data (personnel, duty stations, …) from the process's
    /// shared register ([`crate::reference`]), which its register is then given
    /// ([`crate::Fold::attach`]) and its readiness waits for.
    const USES_REFERENCE: bool = false;

    /// What the decision on aggregate `id` needs besides its stream, read before deciding
    /// (once per command, not per race), with any check that must come before that read.
    fn facts(
        host: &Host<Self>,
        id: Uuid,
        actor: &Actor,
        command: &<Self::Aggregate as Aggregate>::Command,
    ) -> impl Future<Output = Result<<Self::Aggregate as Aggregate>::Facts, Refusal>> + Send;

    /// Decides, inside the optimistic-concurrency loop (so once per read of the stream):
    /// the aggregate's own `decide`, unless the service adds facts from its register.
    fn decide(
        host: &Host<Self>,
        id: Uuid,
        state: Option<&Self::Aggregate>,
        actor: &Actor,
        command: <Self::Aggregate as Aggregate>::Command,
        facts: &<Self::Aggregate as Aggregate>::Facts,
    ) -> Result<Vec<DomainEvent>, Refusal> {
        let _ = host;
        Self::Aggregate::decide(id, state, actor, command, facts)
    }

    /// Whether `command` is decided one at a time in this instance (read, decide, append
    /// under one lock): for a rule that spans streams, which optimistic concurrency on one
    /// stream cannot hold.
    fn exclusive(command: &<Self::Aggregate as Aggregate>::Command) -> bool {
        let _ = command;
        false
    }

    /// For a [`Create::Checked`] create: the event the stream must start with for a retry
    /// to be the same command.
    fn created(command: &<Self::Aggregate as Aggregate>::Command) -> Option<DomainEvent> {
        let _ = command;
        None
    }

    /// The aggregate as it stands right after a write of this instance (when
    /// [`Service::FOLDS_WRITES`]), ahead of the feed.
    fn wrote(host: &Host<Self>, state: Self::Aggregate) {
        let _ = (host, state);
    }

    /// Whether `actor` may see `state` (after the read policy).
    fn visible(actor: &Actor, state: &Self::Aggregate) -> bool;

    /// The refusal for an aggregate that does not exist or that the actor may not see.
    fn not_found(id: Uuid) -> Refusal;

    /// What `get` answers for `state`, which `command`'s actor may see (read from `stream`).
    fn view(
        host: &Host<Self>,
        command: &Command<Self::Get>,
        stream: &StreamName,
        state: Self::Aggregate,
    ) -> impl Future<Output = Result<Self::View, Refusal>> + Send;

    /// Starts the service's background tasks, if any, until `shutdown`.
    fn start(host: &Arc<Host<Self>>, shutdown: &CancellationToken) {
        let _ = (host, shutdown);
    }

    /// A command of its own ([`Route::Custom`]): the reply body.
    fn custom(
        host: &Arc<Host<Self>>,
        name: &str,
        payload: Bytes,
    ) -> impl Future<Output = Vec<u8>> + Send {
        let _ = (host, payload);
        let refusal = unknown_command(Self::NAME, Self::COMMANDS, name);
        async move { reply::<()>(Err(refusal)) }
    }
}

/// The refusal for a command name not in `commands`.
pub fn unknown_command(service: &str, commands: &[(&str, Route)], name: &str) -> Refusal {
    let names: Vec<&str> = commands.iter().map(|(n, _)| *n).collect();
    Refusal::invalid(format!(
        "unknown command {:?}; {service} takes {}",
        name.chars().take(32).collect::<String>(),
        names.join(", ")
    ))
}

/// A running service: the store, the register, the shared reference register (when it uses
/// one) and the lock of [`Service::exclusive`].
pub struct Host<S: Service> {
    store: StoreClient,
    register: Arc<ReadModel<S::Register>>,
    reference: Option<Shared>,
    exclusive: tokio::sync::Mutex<()>,
}

/// Serves service `S` until `shutdown`: its register follows the log, its background tasks
/// run, it answers status requests ([`crate::status`]), and its commands are answered.
pub async fn run<S: Service>(client: Client, shutdown: CancellationToken) -> anyhow::Result<()>
where
    S::Register: Default,
{
    let lease = S::USES_REFERENCE.then(|| reference::acquire(&client));
    let shared = lease.as_ref().map(|l| l.shared().clone());
    let register = ReadModel::start_attached(
        client.clone(),
        S::NAME,
        shutdown.clone(),
        S::Register::default(),
        shared.clone(),
    );
    let probe = {
        let (register, shared) = (register.clone(), shared.clone());
        move || {
            let loading = register
                .loading()
                .or_else(|| shared.as_ref().and_then(|s| s.loading()));
            match loading {
                None => ServiceStatus::ready(S::NAME),
                Some(what) => ServiceStatus::loading(S::NAME, what),
            }
        }
    };
    let status = status::serve(client.clone(), S::NAME, probe, shutdown.clone());
    let host = Arc::new(Host::<S> {
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        register,
        reference: shared,
        exclusive: tokio::sync::Mutex::new(()),
    });
    S::start(&host, &shutdown);
    let register = host.register.clone();
    let served = commands::serve(client, S::NAME, shutdown, move |name, payload| {
        let host = host.clone();
        async move { host.handle(&name, payload).await }
    })
    .await;
    // Its last checkpoint is written before the service counts as stopped; the last service
    // of the process to let go of the reference register waits for its last checkpoint too.
    register.stopped().await;
    if let Some(lease) = lease {
        lease.release().await;
    }
    let _ = status.await;
    served
}

/// The refusal for a blind create's append the store did not take: its stream exists (the
/// id was used for another one), or the store's own refusal.
fn blind_refusal<T>(cmd: &Command<T>, how: Create, e: ClientError) -> Refusal {
    match e {
        ClientError::Store(e) if e.code == ErrorCode::WrongExpectedVersion => {
            Refusal::new(RefusalCode::IdReused, how.reused(cmd.id))
        }
        e => store_refusal(e),
    }
}

type Of<S> = <S as Service>::Aggregate;
type CommandOf<S> = <Of<S> as Aggregate>::Command;
type FactsOf<S> = <Of<S> as Aggregate>::Facts;

impl<S: Service> Host<S> {
    /// The store.
    pub fn store(&self) -> &StoreClient {
        &self.store
    }

    /// The register that follows the log.
    pub fn register(&self) -> &ReadModel<S::Register> {
        &self.register
    }

    /// The process's shared reference register, when the service uses one
    /// ([`Service::USES_REFERENCE`]).
    pub fn reference(&self) -> Option<&Shared> {
        self.reference.as_ref()
    }

    /// Every event of `stream` and its version (0: no such stream), through the store
    /// client's cache of long streams ([`crate::stream_cache`]).
    pub async fn load(&self, stream: &StreamName) -> Result<(History, u64), Refusal> {
        commands::load(&self.store, stream).await
    }

    /// The latest event of `stream` that `pick` takes (a reference registration: the
    /// latest one stands), read now, so what was imported a moment ago counts.
    pub async fn latest<T>(
        &self,
        stream: &StreamName,
        pick: impl Fn(DomainEvent) -> Option<T>,
    ) -> Result<Option<T>, Refusal> {
        let (history, _) = self.load(stream).await?;
        Ok(history
            .iter()
            .rev()
            .find_map(|e| match DomainEvent::decode(e) {
                Decoded::Known(d) => pick(d),
                Decoded::Unknown { .. } => None,
            }))
    }

    async fn handle(self: Arc<Self>, name: &str, payload: Bytes) -> Vec<u8> {
        match name
            .strip_suffix(events::subjects::BATCH)
            .and_then(|n| n.strip_suffix('.'))
        {
            Some(command) => self.batch(command, &payload).await,
            None => self.dispatch(name, payload).await,
        }
    }

    /// One command by its route in the service's table.
    async fn dispatch(self: &Arc<Self>, name: &str, payload: Bytes) -> Vec<u8> {
        let route = S::COMMANDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r);
        match route {
            Some(Route::Create(how)) => reply(self.create(name, how, &payload).await),
            Some(Route::Change) => reply(self.change(name, &payload).await),
            Some(Route::Get) => reply(self.get(&payload).await),
            Some(Route::List) => reply(self.list(&payload)),
            Some(Route::Custom) => S::custom(self, name, payload).await,
            None => reply::<()>(Err(unknown_command(S::NAME, S::COMMANDS, name))),
        }
    }

    /// A batch of `name` commands ([`events::subjects::batch_subject`]): carried out in
    /// order, each answered as if sent alone once the one before had its answer; it stops
    /// after the first answer that says "send it again" (`unavailable`). Creates that need
    /// no read ([`Create::Blind`]) go to the store together ([`Host::create_run`]); other
    /// commands one at a time, none started after [`commands::BATCH_BUDGET`] (the answer then
    /// lists fewer: the caller sends the rest again).
    async fn batch(self: &Arc<Self>, name: &str, payload: &[u8]) -> Vec<u8> {
        let items: Vec<Box<RawValue>> = match serde_json::from_slice(payload) {
            Ok(items) => items,
            Err(e) => {
                return reply::<()>(Err(Refusal::invalid(format!(
                    "a batch is a JSON array of commands: {e}"
                ))));
            }
        };
        if items.is_empty() || items.len() > commands::MAX_BATCH {
            return reply::<()>(Err(Refusal::invalid(format!(
                "a batch holds 1 to {} commands, not {}",
                commands::MAX_BATCH,
                items.len()
            ))));
        }
        let route = S::COMMANDS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| *r);
        let answers = match route {
            Some(Route::Create(how @ Create::Blind { .. })) => {
                self.create_run(name, how, &items).await
            }
            _ => {
                let started = std::time::Instant::now();
                let mut answers = Vec::with_capacity(items.len());
                for item in &items {
                    if !answers.is_empty() && started.elapsed() >= commands::BATCH_BUDGET {
                        break;
                    }
                    let payload = Bytes::copy_from_slice(item.get().as_bytes());
                    let answer = self.dispatch(name, payload).await;
                    let again = commands::must_send_again(&answer);
                    answers.push(answer);
                    if again {
                        break;
                    }
                }
                answers
            }
        };
        let answers = answers
            .into_iter()
            .map(|a| {
                String::from_utf8(a)
                    .ok()
                    .and_then(|a| RawValue::from_string(a).ok())
            })
            .collect::<Option<Vec<_>>>();
        match answers {
            Some(answers) => reply(Ok(commands::BatchAnswers { answers })),
            // Every reply is JSON the host encoded: not reached.
            None => reply::<()>(Err(Refusal::unavailable(
                "the batch's answers could not be encoded; retry with the same ids",
            ))),
        }
    }

    /// A batch of blind creates, in order ([`Host::batch`]). Each is read and decided as when
    /// sent alone (their facts read side by side); their appends then go to the store at once,
    /// each chained after the one before ([`events::AppendRequest::after`]), so they usually
    /// share one commit group and one fsync, and none is stored before the one it follows. One
    /// that was not stored on the way for a reason that may pass (`after_missing` behind one
    /// that was not, `unavailable`, no answer) is carried out alone in its turn, once every one
    /// before it has its answer; one not decided for such a reason stops the batch there. One
    /// answer per command tried.
    async fn create_run(
        self: &Arc<Self>,
        name: &str,
        how: Create,
        items: &[Box<RawValue>],
    ) -> Vec<Vec<u8>> {
        let decided = futures::future::join_all(items.iter().map(|item| async move {
            let (cmd, parsed, facts) = self.read_create(name, item.get().as_bytes()).await?;
            let (new, request) = self.blind_request(&cmd, parsed, &facts)?;
            Ok::<_, Refusal>((cmd, new, request))
        }))
        .await;
        // A command not decided for a reason that may pass (`unavailable`) must be sent again
        // before any after it is carried out.
        let cut = decided
            .iter()
            .position(|d| matches!(d, Err(r) if r.code == RefusalCode::Unavailable))
            .unwrap_or(decided.len());
        let mut after = None;
        let mut requests = Vec::with_capacity(cut);
        for (_, _, request) in decided[..cut].iter().flatten() {
            let mut request = request.clone();
            request.after = after;
            after = request.events.first().map(|e| e.id);
            requests.push(request);
        }
        let mut stored = self.store.append_in_order(&requests).await.into_iter();
        let mut answers = Vec::with_capacity(items.len());
        for (item, decision) in items.iter().zip(decided) {
            let answer = match decision {
                Err(refusal) => reply::<Written>(Err(refusal)),
                Ok((cmd, new, request)) => match stored.next() {
                    Some(Ok(ok)) => reply(Ok(self.blind_written(&cmd, &request.stream, &new, ok))),
                    Some(Err(ClientError::Store(e)))
                        if e.code != ErrorCode::AfterMissing
                            && e.code != ErrorCode::Unavailable =>
                    {
                        reply::<Written>(Err(blind_refusal(&cmd, how, ClientError::Store(e))))
                    }
                    // Not stored on the way, or not known: carried out alone now, after every
                    // one before it has its answer (a command stored after all is answered as
                    // such).
                    _ => {
                        let payload = Bytes::copy_from_slice(item.get().as_bytes());
                        self.dispatch(name, payload).await
                    }
                },
            };
            let again = commands::must_send_again(&answer);
            answers.push(answer);
            if again {
                break;
            }
        }
        answers
    }

    /// A create's command, parsed, and the facts its decision needs.
    async fn read_create(
        &self,
        name: &str,
        payload: &[u8],
    ) -> Result<(Command<Value>, CommandOf<S>, FactsOf<S>), Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        let parsed = Of::<S>::parse(name, &cmd.actor, cmd.body.clone())?;
        let facts = S::facts(self, cmd.id, &cmd.actor, &parsed).await?;
        Ok((cmd, parsed, facts))
    }

    async fn create(&self, name: &str, how: Create, payload: &[u8]) -> Result<Written, Refusal> {
        let (cmd, parsed, facts) = self.read_create(name, payload).await?;
        match how {
            Create::Blind { .. } => self.create_blind(&cmd, parsed, &facts, how).await,
            Create::Checked { .. } => {
                let asked = S::created(&parsed);
                let written = self.decide_and_append(&cmd, cmd.id, parsed, &facts).await?;
                if written.duplicate
                    && let Some(asked) = asked
                {
                    // `execute` recognises a retry by its id alone: make sure it is the same
                    // creation, so a reused id is refused rather than answered as stored.
                    let (history, _) = self.load(&written.stream).await?;
                    let same = history.iter().find(|e| e.id == cmd.id).is_some_and(|e| {
                        matches!(DomainEvent::decode(e), Decoded::Known(stored) if stored == asked)
                    });
                    if !same {
                        return Err(Refusal::new(RefusalCode::IdReused, how.reused(cmd.id)));
                    }
                }
                Ok(written)
            }
        }
    }

    async fn create_blind(
        &self,
        cmd: &Command<Value>,
        parsed: CommandOf<S>,
        facts: &FactsOf<S>,
        how: Create,
    ) -> Result<Written, Refusal> {
        let (new, request) = self.blind_request(cmd, parsed, facts)?;
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => Ok(self.blind_written(cmd, &request.stream, &new, ok)),
            Err(e) => Err(blind_refusal(cmd, how, e)),
        }
    }

    /// A blind create's decision and the append that stores it.
    fn blind_request(
        &self,
        cmd: &Command<Value>,
        parsed: CommandOf<S>,
        facts: &FactsOf<S>,
    ) -> Result<(Vec<DomainEvent>, AppendRequest), Refusal> {
        let new = S::decide(self, cmd.id, None, &cmd.actor, parsed, facts)?;
        let events = new
            .iter()
            .enumerate()
            .map(|(i, e)| e.try_to_new_event(commands::event_id(cmd.id, i), cmd.meta()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = AppendRequest {
            after: None,
            stream: Of::<S>::stream(cmd.id),
            expected_version: ExpectedVersion::NoStream,
            events,
        };
        Ok((new, request))
    }

    /// The answer to a blind create the store took (`ok`).
    fn blind_written(
        &self,
        cmd: &Command<Value>,
        stream: &StreamName,
        new: &[DomainEvent],
        ok: events::store_api::AppendOk,
    ) -> Written {
        let written = Written {
            stream: stream.clone(),
            event_id: cmd.id,
            position: ok.first_position,
            stream_version: 1,
            duplicate: ok.duplicate,
        };
        if S::FOLDS_WRITES && !written.duplicate {
            self.wrote(cmd, vec![], new, &written);
        }
        written
    }

    async fn change(&self, name: &str, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<S::Change> = commands::decode(payload)?;
        let parsed = Of::<S>::parse(name, &cmd.actor, cmd.body.change().clone())?;
        let id = cmd.body.target();
        let facts = S::facts(self, id, &cmd.actor, &parsed).await?;
        self.decide_and_append(&cmd, id, parsed, &facts).await
    }

    /// Decides `command` against aggregate `id`'s stream and appends the events
    /// ([`commands::execute`]); with [`Service::FOLDS_WRITES`], hands the new state to
    /// [`Service::wrote`].
    async fn decide_and_append<T: Sync>(
        &self,
        cmd: &Command<T>,
        id: Uuid,
        command: CommandOf<S>,
        facts: &FactsOf<S>,
    ) -> Result<Written, Refusal> {
        let stream = Of::<S>::stream(id);
        let _one_at_a_time = if S::exclusive(&command) {
            Some(self.exclusive.lock().await)
        } else {
            None
        };
        // What the winning decision saw and produced, for `wrote`.
        let seen: std::sync::Mutex<Option<(Vec<RecordedEvent>, Vec<DomainEvent>)>> =
            std::sync::Mutex::new(None);
        let written = commands::execute(&self.store, &stream, cmd, |history| {
            let state = Of::<S>::fold(history);
            let new = S::decide(self, id, state.as_ref(), &cmd.actor, command.clone(), facts)?;
            if S::FOLDS_WRITES
                && let Ok(mut seen) = seen.lock()
            {
                *seen = Some((history.to_vec(), new.clone()));
            }
            Ok(new)
        })
        .await?;
        if S::FOLDS_WRITES
            && !written.duplicate
            && let Ok(Some((history, new))) = seen.into_inner()
        {
            self.wrote(cmd, history, &new, &written);
        }
        Ok(written)
    }

    /// Folds `history` and the `new` events as stored (`written`) and hands the state to
    /// [`Service::wrote`]; only `recorded_at` differs from the feed's copy, by the time the
    /// append took.
    fn wrote<T>(
        &self,
        cmd: &Command<T>,
        mut history: Vec<RecordedEvent>,
        new: &[DomainEvent],
        written: &Written,
    ) {
        let meta = cmd.meta();
        let now = OffsetDateTime::now_utc();
        for (i, e) in new.iter().enumerate() {
            history.push(RecordedEvent::record(
                e.to_new_event(commands::event_id(cmd.id, i), meta.clone()),
                written.stream.clone(),
                written.position + i as u64,
                written.stream_version + i as u64,
                now,
            ));
        }
        if let Some(state) = Of::<S>::fold(&history) {
            S::wrote(self, state);
        }
    }

    async fn get(&self, payload: &[u8]) -> Result<S::View, Refusal> {
        let cmd: Command<S::Get> = commands::decode(payload)?;
        let (roles, what) = S::READ;
        cmd.actor.may(roles, what)?;
        let id = cmd.body.target();
        let stream = Of::<S>::stream(id);
        let (history, _) = self.load(&stream).await?;
        let found = Of::<S>::fold(&history)
            .filter(|a| S::visible(&cmd.actor, a))
            .ok_or_else(|| S::not_found(id))?;
        S::view(self, &cmd, &stream, found).await
    }

    fn list(&self, payload: &[u8]) -> Result<Page<<S::Register as Listing>::Item>, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        // Read here, not by the command's decoder, so the refusal names the field alone.
        let query: <S::Register as Listing>::Query =
            events::codec::from_value(cmd.body).map_err(Refusal::invalid)?;
        if S::LIST_CHECKS_READ {
            let (roles, what) = S::READ;
            cmd.actor.may(roles, what)?;
        }
        let register = self.register.caught_up()?;
        register.list(&cmd.actor, &query, OffsetDateTime::now_utc())
    }
}
