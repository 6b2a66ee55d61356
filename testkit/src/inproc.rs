//! The in-process centre for a service's own integration tests: a real nats-server, the real
//! store running as a task of the test process on a temp directory, reference data appended
//! as `vigil import` writes it, instances of the service under test as tasks (each one
//! stoppable on its own, as a node going down), and the helpers the tests speak with:
//! [`ask`] sends one real `Command` over NATS, [`Centre::log`] reads the whole log back.
//!
//! The store is started by the caller (`Centre::start(|nats, dir, stop| store::run(nats,
//! store::StoreConfig::new(dir), stop))`) and so is every service instance
//! ([`Centre::instance`]): testkit depends on no service crate, and the store's own tests
//! can keep using testkit. For tests of the real processes (`vigil up`, `vigil store`, the
//! gateway) use [`crate::centre`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use events::command::{Actor, Command};
use events::domain::DomainEvent;
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, RecordedEvent, StreamName};
use runtime::StoreClient;
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::NatsServer;

/// How long the store, a service and each append may take to answer before the test fails.
pub const ANSWER: Duration = Duration::from_secs(10);

/// A nats-server, a store on a temp directory and the service instances a test started; all
/// of it stops on `Drop`.
pub struct Centre {
    nats: NatsServer,
    dir: TempDir,
    stop: CancellationToken,
    client: async_nats::Client,
    store: StoreClient,
    service: &'static str,
    instances: Vec<CancellationToken>,
}

impl Centre {
    /// Starts a nats-server and the store (`store` is the store crate's `run`, given the
    /// client, the log's directory and the stop token) and returns once the store answers.
    /// Commands go to `service` (`vigil.cmd.<service>.<command>`).
    pub async fn start<S, F>(service: &'static str, store: S) -> Self
    where
        S: FnOnce(async_nats::Client, PathBuf, CancellationToken) -> F,
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
        let stop = CancellationToken::new();
        let client = nats.connect().await;
        tokio::spawn(store(
            nats.connect().await,
            dir.path().join("store"),
            stop.clone(),
        ));
        let store = StoreClient::new(client.clone(), Duration::from_secs(5));
        // Commands before the store answers are refused `unavailable`: wait for it.
        crate::eventually(ANSWER, || {
            let store = store.clone();
            async move { store.read(1, 1).await.ok() }
        })
        .await
        .unwrap_or_else(|| panic!("the store does not answer"));
        Self {
            nats,
            dir,
            stop,
            client,
            store,
            service,
            instances: vec![],
        }
    }

    /// The nats-server.
    pub fn nats(&self) -> &NatsServer {
        &self.nats
    }

    /// The centre's temp directory; the store's log is in `store/` under it, and a test may
    /// keep files of its own beside it (the gateway's users and signing keys, say).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The test's own NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// A client of the store.
    pub fn store(&self) -> &StoreClient {
        &self.store
    }

    /// Fires when the centre stops: for tasks the test adds (an agency's system, say).
    pub fn stopping(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// Starts one more instance of a service: `run` gets its own NATS connection and its own
    /// stop token (see [`Centre::stop_instance`]).
    pub async fn instance<R, F>(&mut self, run: R)
    where
        R: FnOnce(async_nats::Client, CancellationToken) -> F,
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let token = self.stop.child_token();
        tokio::spawn(run(self.nats.connect().await, token.clone()));
        self.instances.push(token);
    }

    /// Stops the instance started `n`-th (from 0), as a node going down.
    pub fn stop_instance(&self, n: usize) {
        self.instances[n].cancel();
    }

    /// Stops every instance started so far.
    pub fn stop_instances(&mut self) {
        for t in self.instances.drain(..) {
            t.cancel();
        }
    }

    /// Appends `events` to `stream` in one request, as `actor` would have (`meta.actor`),
    /// each under a new id; their ids. Each event is validated as the services validate it.
    pub async fn append(
        &self,
        stream: StreamName,
        events: Vec<DomainEvent>,
        actor: &str,
    ) -> Vec<Uuid> {
        let news: Vec<NewEvent> = events
            .iter()
            .map(|e| new_event(e, Uuid::new_v4(), actor))
            .collect();
        let ids = news.iter().map(|e| e.id).collect();
        self.append_new(stream, news).await;
        ids
    }

    /// Appends one event under the id `id` (what a stopped instance left behind, say).
    pub async fn append_with_id(
        &self,
        stream: StreamName,
        event: DomainEvent,
        id: Uuid,
        actor: &str,
    ) {
        self.append_new(stream, vec![new_event(&event, id, actor)])
            .await;
    }

    /// Appends reference data event by event, as `vigil import` writes it (actor `import`).
    pub async fn import(&self, reference: impl IntoIterator<Item = (StreamName, DomainEvent)>) {
        for (stream, event) in reference {
            self.append(stream, vec![event], "import").await;
        }
    }

    /// Appends `events` to `stream` (any version), retried until the store takes them.
    pub async fn append_new(&self, stream: StreamName, events: Vec<NewEvent>) {
        let request = AppendRequest {
            after: None,
            stream,
            expected_version: ExpectedVersion::Any,
            events,
        };
        crate::eventually(ANSWER, || {
            let (store, request) = (self.store.clone(), request.clone());
            async move { store.append(&request).await.ok() }
        })
        .await
        .unwrap_or_else(|| panic!("the store does not take {}", request.stream));
    }

    /// Every event in the log, in order.
    pub async fn log(&self) -> Vec<RecordedEvent> {
        let mut all = vec![];
        let mut from = 1;
        loop {
            let (page, head) = self
                .store
                .read(from, 500)
                .await
                .unwrap_or_else(|e| panic!("reading the log from {from}: {e}"));
            let n = page.len() as u64;
            all.extend(page);
            if n == 0 || from + n > head {
                return all;
            }
            from += n;
        }
    }

    /// Every event of `stream`, in order.
    pub async fn stream(&self, stream: &StreamName) -> Vec<RecordedEvent> {
        self.store
            .read_whole_stream(stream, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("reading {stream}: {e}"))
            .0
    }

    /// Commands to this centre's service, sendable from another task.
    pub fn commands(&self) -> Commands {
        Commands {
            client: self.client.clone(),
            service: self.service,
        }
    }

    /// [`ask`]s the centre's service.
    pub async fn ask(&self, command: &str, actor: &Actor, id: Uuid, body: Value) -> Value {
        ask(&self.client, self.service, command, actor, id, body).await
    }

    /// [`Commands::ok`] to the centre's service.
    pub async fn ok(&self, command: &str, actor: &Actor, body: Value) -> Value {
        self.commands().ok(command, actor, body).await
    }

    /// [`Commands::ok_with`] to the centre's service.
    pub async fn ok_with(&self, command: &str, actor: &Actor, id: Uuid, body: Value) -> Value {
        self.commands().ok_with(command, actor, id, body).await
    }

    /// [`Commands::refused`] by the centre's service.
    pub async fn refused(&self, command: &str, actor: &Actor, body: Value) -> (String, String) {
        self.commands().refused(command, actor, body).await
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        // The instances' tokens are children of this one.
        self.stop.cancel();
    }
}

/// The event as the store takes it, with `meta.actor` set; panics if it is invalid (a test
/// wrote it).
pub fn new_event(event: &DomainEvent, id: Uuid, actor: &str) -> NewEvent {
    let meta = Meta {
        actor: Some(actor.to_owned()),
        ..Meta::default()
    };
    event
        .try_to_new_event(id, meta)
        .unwrap_or_else(|e| panic!("test event {}: {e}", event.event_type()))
}

/// Sends command `command` with id `id` as `actor` to `service` over NATS
/// (`vigil.cmd.<service>.<command>`, source `test`); the service's JSON answer. Asked again
/// while no instance answers yet or the one that answers is still reading the log (error
/// `unavailable`, which asks the caller to retry): a retry has the same id, so it is
/// stored once.
pub async fn ask(
    client: &async_nats::Client,
    service: &str,
    command: &str,
    actor: &Actor,
    id: Uuid,
    body: Value,
) -> Value {
    let cmd = Command {
        id,
        actor: actor.clone(),
        source: "test".to_owned(),
        correlation_id: None,
        body,
    };
    let payload = serde_json::to_vec(&cmd).unwrap_or_else(|e| panic!("command {command}: {e}"));
    let subject = format!("vigil.cmd.{service}.{command}");
    crate::eventually(ANSWER, || {
        let (client, subject, payload) = (client.clone(), subject.clone(), payload.clone());
        async move {
            let reply = client.request(subject, payload.into()).await.ok()?;
            let answer: Value = serde_json::from_slice(&reply.payload)
                .unwrap_or_else(|e| panic!("the {service} service's answer is not JSON: {e}"));
            (answer["error"]["code"] != "unavailable").then_some(answer)
        }
    })
    .await
    .unwrap_or_else(|| panic!("the {service} service does not answer {command}"))
}

/// A NATS client and the service it speaks to: [`ask`] and two checked forms of it.
#[derive(Clone)]
pub struct Commands {
    client: async_nats::Client,
    service: &'static str,
}

impl Commands {
    /// [`ask`]s the service.
    pub async fn ask(&self, command: &str, actor: &Actor, id: Uuid, body: Value) -> Value {
        ask(&self.client, self.service, command, actor, id, body).await
    }

    /// Sends a command (new id) that must succeed; its `ok` object.
    pub async fn ok(&self, command: &str, actor: &Actor, body: Value) -> Value {
        self.ok_with(command, actor, Uuid::new_v4(), body).await
    }

    /// Sends command `id` that must succeed; its `ok` object.
    pub async fn ok_with(&self, command: &str, actor: &Actor, id: Uuid, body: Value) -> Value {
        let answer = self.ask(command, actor, id, body).await;
        assert!(answer["ok"].is_object(), "{command}: {answer}");
        answer["ok"].clone()
    }

    /// Sends a command (new id) that must be refused; the error's code and message.
    pub async fn refused(&self, command: &str, actor: &Actor, body: Value) -> (String, String) {
        let answer = self.ask(command, actor, Uuid::new_v4(), body).await;
        let e = &answer["error"];
        let (Some(code), Some(message)) = (e["code"].as_str(), e["message"].as_str()) else {
            panic!("{command} should be refused: {answer}")
        };
        (code.to_owned(), message.to_owned())
    }
}
