//! The systems under test: how each appends one event, and how each is set up before a cell
//! and cleaned after it. The replicated ones (`--replicas 3`) connect to the cluster through
//! `replicated`, which also holds the replicated JetStream peer's worker.
//!
//! Every append carries one new event (a fresh UUID id, type `BenchAppended`, ~300 B of JSON
//! data) to one of the worker's own streams, round-robin, with expected version "any".

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::jetstream::{self, stream::StorageType};
use events::envelope::{ExpectedVersion, Meta, NewEvent, StreamName};
use events::store_api::{AppendReply, ReadRequest};
use events::{Category, subjects};
use serde_json::json;
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Statement};
use uuid::Uuid;

use crate::System;
use crate::driver::Failure;
use crate::replicated::{self, Cluster, JsR3Worker};

/// The JetStream stream the bench creates (and deletes) for each cell.
const JS_STREAM: &str = "VIGIL_BENCH";
/// Subjects of that stream.
const JS_SUBJECTS: &str = "bench.>";
/// PostgreSQL schema holding the bench's `events` table, dropped and recreated for each cell.
const PG_SCHEMA: &str = "vigil_bench";
/// The event type every append carries.
const EVENT_TYPE: &str = "BenchAppended";
/// How long to wait for `vigil store` to answer before giving up.
const STORE_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts of one PostgreSQL append that lost a race for a version.
const PG_ATTEMPTS: u32 = 10;

/// Connection settings and workload shape shared by the systems.
#[derive(Debug, Clone)]
pub struct Settings {
    /// NATS URL (Vigil's store and JetStream on the server's default sync).
    pub nats_url: String,
    /// NATS URL of the server with `sync_interval: always` (`jetstream-sync`).
    pub js_sync_url: Option<String>,
    /// PostgreSQL URL.
    pub pg_url: String,
    /// Streams per worker, used round-robin.
    pub streams_per_worker: usize,
    /// Approximate size of each event's `data` JSON.
    pub data_bytes: usize,
    /// Most PostgreSQL connections.
    pub pg_max_connections: usize,
    /// NATS connections to spread the workers over.
    pub nats_connections: usize,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// Send `Nats-Msg-Id` with JetStream publishes.
    pub js_msg_id: bool,
    /// The 3-node cluster of `--replicas 3` (`vigil-r3`, `jetstream-r3`).
    pub cluster: Option<Cluster>,
}

/// What the bench learnt about PostgreSQL's durability settings.
#[derive(Debug, Clone)]
struct PgInfo {
    version: String,
    fsync: String,
    synchronous_commit: String,
    wal_sync_method: String,
    data_directory: String,
}

/// Connections that live for the whole run.
pub struct Env {
    nats: Vec<async_nats::Client>,
    nats_version: Option<String>,
    /// Connections to the `sync_interval: always` server.
    js_sync: Vec<async_nats::Client>,
    /// Connections to the cluster as `cli`, spread over its nodes (`vigil-r3`).
    cluster_cli: Vec<async_nats::Client>,
    /// Connections to the cluster as `store` (`jetstream-r3`), spread the same way.
    cluster_store: Vec<async_nats::Client>,
    pg: Option<PgInfo>,
    pg_url: String,
    /// The cluster of `--replicas 3`, and its nodes' metrics pages when a `vigil-r3` cell
    /// started (read again when it ends: where the leader's time went).
    cluster: Option<Cluster>,
    r3_pages: std::sync::Mutex<Vec<Option<String>>>,
}

/// The workers of one cell and a line saying how the window is realised.
pub struct Prepared {
    /// One appender per request in flight.
    pub workers: Vec<Appender>,
    /// Printed with the results.
    pub note: Option<String>,
}

impl Env {
    /// Connects to what `systems` need, and waits for `vigil store` to answer if Vigil is
    /// measured.
    pub async fn connect(settings: &Settings, systems: &[System]) -> anyhow::Result<Self> {
        let mut env = Self {
            nats: Vec::new(),
            nats_version: None,
            js_sync: Vec::new(),
            cluster_cli: Vec::new(),
            cluster_store: Vec::new(),
            pg: None,
            pg_url: settings.pg_url.clone(),
            cluster: settings.cluster.clone(),
            r3_pages: std::sync::Mutex::new(Vec::new()),
        };
        if systems
            .iter()
            .any(|s| matches!(s, System::Vigil | System::Jetstream))
        {
            for i in 0..settings.nats_connections {
                let client = async_nats::ConnectOptions::new()
                    .name(format!("vigil-bench-{i}"))
                    .request_timeout(Some(settings.request_timeout))
                    .connect(settings.nats_url.as_str())
                    .await
                    .with_context(|| format!("connecting to NATS at {}", settings.nats_url))?;
                env.nats.push(client);
            }
            env.nats_version = env.nats.first().map(|c| c.server_info().version);
        }
        if let (true, Some(url)) = (
            systems.contains(&System::JetstreamSync),
            settings.js_sync_url.as_deref(),
        ) {
            for i in 0..settings.nats_connections {
                let client = async_nats::ConnectOptions::new()
                    .name(format!("vigil-bench-sync-{i}"))
                    .request_timeout(Some(settings.request_timeout))
                    .connect(url)
                    .await
                    .with_context(|| format!("connecting to NATS at {url}"))?;
                env.js_sync.push(client);
            }
        }
        if let Some(cluster) = &settings.cluster {
            if systems.contains(&System::VigilR3) {
                env.cluster_cli = cluster
                    .connect(
                        &cluster.cli,
                        settings.nats_connections,
                        settings.request_timeout,
                    )
                    .await?;
            }
            if systems.contains(&System::JetstreamR3) {
                env.cluster_store = cluster
                    .connect(
                        &cluster.store,
                        settings.nats_connections,
                        settings.request_timeout,
                    )
                    .await?;
            }
        }
        if systems.contains(&System::Vigil) {
            Self::wait_for_store(env.nats.first()).await?;
        }
        if systems.contains(&System::VigilR3) {
            Self::wait_for_store(env.cluster_cli.first()).await?;
        }
        if systems.contains(&System::Postgres) {
            env.pg = Some(pg_info(&settings.pg_url).await?);
        }
        Ok(env)
    }

    /// Waits until a store answers reads through `client` (on a cluster: until a leader
    /// serves).
    async fn wait_for_store(client: Option<&async_nats::Client>) -> anyhow::Result<()> {
        let client = client.context("no NATS connection")?;
        let probe = serde_json::to_vec(&ReadRequest { from: 1, limit: 1 })?;
        let deadline = Instant::now() + STORE_READY_TIMEOUT;
        let mut told = false;
        loop {
            match client
                .request(subjects::STORE_READ, probe.clone().into())
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() < deadline => {
                    if !told {
                        eprintln!("vigil-bench: waiting for vigil store to answer ({e})");
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => bail!(
                    "vigil store did not answer {} within {} s: {e}",
                    subjects::STORE_READ,
                    STORE_READY_TIMEOUT.as_secs()
                ),
            }
        }
    }

    /// Prints what is being compared and the durability each peer promises here.
    pub fn print_preamble(&self, settings: &Settings) {
        println!(
            "vigil-bench: appends of one ~{} B event each",
            settings.data_bytes
        );
        if let Some(v) = &self.nats_version {
            println!(
                "  nats-server {v} at {} ({} client connection(s))",
                settings.nats_url,
                self.nats.len()
            );
            println!(
                "  vigil:     vigil.store.append request/reply; the store fsyncs (group commit) before it acks"
            );
            let ver = v.trim_start_matches('v');
            let old = ver.starts_with("2.9.") || ver.starts_with("2.8.") || ver.starts_with("2.7.");
            println!(
                "  jetstream: publish-with-ack to a file-storage stream{}, server default sync_interval (2 min): acked BEFORE fsync, not a durable rate{}",
                if settings.js_msg_id {
                    " with Nats-Msg-Id dedup"
                } else {
                    ""
                },
                if old {
                    "; NOTE: nats-server 2.9 cannot fsync before ack at all"
                } else {
                    ""
                }
            );
        }
        if let Some(c) = self.js_sync.first() {
            println!(
                "  jetstream-sync: the same on nats-server {} at {} with jetstream {{ sync_interval: always }}: fsync before ack (the fair peer)",
                c.server_info().version,
                settings.js_sync_url.as_deref().unwrap_or("?")
            );
        }
        if let Some(cluster) = &settings.cluster {
            replicated::print_preamble(
                cluster,
                self.cluster_cli.first().or(self.cluster_store.first()),
                self.cluster_cli.len().max(self.cluster_store.len()),
                settings.js_msg_id,
            );
        }
        if let Some(pg) = &self.pg {
            println!(
                "  postgres:  {} — INSERT … SELECT max(version)+1 per append, fsync={}, synchronous_commit={}, wal_sync_method={}, data at {}",
                pg.version, pg.fsync, pg.synchronous_commit, pg.wal_sync_method, pg.data_directory
            );
            if pg.fsync != "on" {
                println!(
                    "  WARNING: PostgreSQL runs with fsync={}: its commits are not durable, the comparison is unfair to Vigil",
                    pg.fsync
                );
            }
        }
    }

    /// Sets `system` up fresh for a cell of `window` requests in flight and returns one
    /// appender per request.
    pub async fn prepare(
        &self,
        settings: &Settings,
        system: System,
        window: usize,
    ) -> anyhow::Result<Prepared> {
        match system {
            System::Vigil | System::VigilR3 => {
                let clients = if system == System::VigilR3 {
                    &self.cluster_cli
                } else {
                    &self.nats
                };
                let workers = (0..window)
                    .map(|w| {
                        let client = clients
                            .get(w % clients.len().max(1))
                            .cloned()
                            .context("no NATS connection")?;
                        let streams = (0..settings.streams_per_worker)
                            .map(|_| -> anyhow::Result<StreamName> {
                                Ok(StreamName::new(Category::parse("bench")?, Uuid::new_v4()))
                            })
                            .collect::<anyhow::Result<Vec<_>>>()?;
                        Ok(Appender::Vigil(VigilWorker {
                            client,
                            streams: RoundRobin::new(streams, "no stream"),
                            event: EventMaker::new(w, settings.data_bytes),
                        }))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                if let (System::VigilR3, Some(cluster)) = (system, &self.cluster) {
                    let pages = replicated::scrape(cluster).await;
                    *self.r3_pages.lock().unwrap_or_else(|p| p.into_inner()) = pages;
                }
                let note = format!(
                    "{window} requests in flight over {} NATS connection(s){}",
                    clients.len(),
                    if system == System::VigilR3 {
                        ", spread over the cluster's nodes, as `cli`; acked once a quorum of the journal fsynced and the leader applied"
                    } else {
                        ""
                    }
                );
                Ok(Prepared {
                    workers,
                    note: Some(note),
                })
            }
            System::Jetstream | System::JetstreamSync => {
                let clients = self.js_clients(system);
                let js = jetstream::new(clients.first().cloned().context("no NATS connection")?);
                // Start from an empty stream; a missing one is fine.
                let _ = js.delete_stream(JS_STREAM).await;
                js.create_stream(jetstream::stream::Config {
                    name: JS_STREAM.to_owned(),
                    subjects: vec![JS_SUBJECTS.to_owned()],
                    storage: StorageType::File,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating the JetStream stream {JS_STREAM} (is JetStream on: nats-server -js?)"))?;
                let contexts: Vec<_> = clients.iter().map(|c| jetstream::new(c.clone())).collect();
                let workers = (0..window)
                    .map(|w| {
                        let js = contexts
                            .get(w % contexts.len())
                            .context("no NATS connection")?
                            .clone();
                        let subjects = (0..settings.streams_per_worker)
                            .map(|s| format!("bench.w{w}.s{s}"))
                            .collect();
                        Ok(Appender::Jetstream(JsWorker {
                            js,
                            subjects: RoundRobin::new(subjects, "no subject"),
                            msg_id: settings.js_msg_id,
                            event: EventMaker::new(w, settings.data_bytes),
                        }))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let note = format!(
                    "{window} publishes in flight over {} NATS connection(s); file storage, R1; {}",
                    clients.len(),
                    if system == System::JetstreamSync {
                        "sync_interval: always (fsync before ack)"
                    } else {
                        "default sync_interval (acked before fsync)"
                    }
                );
                Ok(Prepared {
                    workers,
                    note: Some(note),
                })
            }
            System::JetstreamR3 => {
                let workers = replicated::prepare_js(
                    &self.cluster_store,
                    window,
                    settings.streams_per_worker,
                    settings.js_msg_id,
                    |w| EventMaker::new(w, settings.data_bytes),
                )
                .await?
                .into_iter()
                .map(|w| Appender::JetstreamR3(Box::new(w)))
                .collect();
                let note = format!(
                    "{window} publishes in flight over {} NATS connection(s) as `store`, spread over the cluster's nodes; file storage, R{}, sync_interval: always; Nats-Expected-Last-Subject-Sequence on each{}",
                    self.cluster_store.len(),
                    replicated::REPLICAS,
                    if settings.js_msg_id {
                        ", Nats-Msg-Id"
                    } else {
                        ""
                    }
                );
                Ok(Prepared {
                    workers,
                    note: Some(note),
                })
            }
            System::Postgres => {
                reset_pg_table(&settings.pg_url).await?;
                let conns = window.min(settings.pg_max_connections);
                let pool = futures::future::try_join_all(
                    (0..conns).map(|_| pg_connection(&settings.pg_url)),
                )
                .await?;
                let workers = (0..window)
                    .map(|w| {
                        let (client, stmt) = pool
                            .get(w % pool.len())
                            .context("no PostgreSQL connection")?
                            .clone();
                        let streams = (0..settings.streams_per_worker)
                            .map(|_| format!("bench-{}", Uuid::new_v4()))
                            .collect();
                        Ok(Appender::Postgres(PgWorker {
                            client,
                            stmt,
                            streams: RoundRobin::new(streams, "no stream"),
                            event: EventMaker::new(w, settings.data_bytes),
                        }))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                let note = format!(
                    "{window} appends in flight pipelined over {conns} connection(s): the server runs at most {conns} at once (one transaction per connection); synchronous_commit=on"
                );
                Ok(Prepared {
                    workers,
                    note: Some(note),
                })
            }
        }
    }

    /// Frees what a cell of `system` left behind (best effort: failures are printed).
    pub async fn finish(&self, system: System) {
        match system {
            System::Vigil => {}
            System::VigilR3 => {
                if let Some(cluster) = &self.cluster {
                    let after = replicated::scrape(cluster).await;
                    let before = std::mem::take(
                        &mut *self.r3_pages.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    if let Some(line) = replicated::leader_side(cluster, &before, &after) {
                        println!("  {line}");
                    }
                }
            }
            System::JetstreamR3 => replicated::finish_js(&self.cluster_store).await,
            System::Jetstream | System::JetstreamSync => {
                let deleted = match self.js_clients(system).first().cloned() {
                    Some(client) => jetstream::new(client)
                        .delete_stream(JS_STREAM)
                        .await
                        .map(drop)
                        .map_err(anyhow::Error::from),
                    None => Err(anyhow::anyhow!("no NATS connection")),
                };
                if let Err(e) = deleted {
                    eprintln!(
                        "vigil-bench: could not delete the JetStream stream {JS_STREAM}: {e}"
                    );
                }
            }
            System::Postgres => {
                let drop = async {
                    let client = pg_connect(&self.pg_url).await?;
                    client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE"))
                        .await?;
                    anyhow::Ok(())
                };
                if let Err(e) = drop.await {
                    eprintln!(
                        "vigil-bench: could not drop the PostgreSQL schema {PG_SCHEMA}: {e:#}"
                    );
                }
            }
        }
    }

    /// The connections a JetStream system publishes over.
    fn js_clients(&self, system: System) -> &[async_nats::Client] {
        if system == System::JetstreamSync {
            &self.js_sync
        } else {
            &self.nats
        }
    }
}

/// Builds one worker's events: a fresh id each, data of about the asked size.
pub(crate) struct EventMaker {
    worker: usize,
    pad: String,
}

impl EventMaker {
    fn new(worker: usize, data_bytes: usize) -> Self {
        // Size the padding for a six-digit sequence number; the rest varies by a few bytes.
        let base =
            serde_json::to_string(&Self::data_of(worker, 100_000, "")).map_or(0, |s| s.len());
        Self {
            worker,
            pad: "x".repeat(data_bytes.saturating_sub(base)),
        }
    }

    fn data_of(worker: usize, seq: u64, pad: &str) -> serde_json::Value {
        json!({
            "worker": worker,
            "seq": seq,
            "country": "SO",
            "summary": "benchmark event: one append of about three hundred bytes",
            "pad": pad,
        })
    }

    fn data(&self, seq: u64) -> serde_json::Value {
        Self::data_of(self.worker, seq, &self.pad)
    }

    pub(crate) fn event(&self, seq: u64) -> NewEvent {
        NewEvent {
            id: Uuid::new_v4(),
            event_type: EVENT_TYPE.to_owned(),
            v: 1,
            data: self.data(seq),
            // The store refuses events whose meta names no actor (the log is the audit trail).
            meta: Meta {
                actor: Some("vigil-bench".to_owned()),
                source: Some("bench".to_owned()),
                ..Meta::default()
            },
        }
    }
}

/// One request in flight against one system.
pub enum Appender {
    /// Vigil's store.
    Vigil(VigilWorker),
    /// JetStream.
    Jetstream(JsWorker),
    /// PostgreSQL.
    Postgres(PgWorker),
    /// JetStream with 3 replicas on the cluster (boxed: it holds the stream's info).
    JetstreamR3(Box<JsR3Worker>),
}

impl Appender {
    /// Appends one event and waits for the system's ack.
    pub async fn append(&mut self, seq: u64) -> Result<(), Failure> {
        match self {
            Self::Vigil(w) => w.append(seq).await,
            Self::Jetstream(w) => w.append(seq).await,
            Self::Postgres(w) => w.append(seq).await,
            Self::JetstreamR3(w) => w.append(seq).await,
        }
    }
}

/// What a worker appends to (its streams, or subjects), one after the other.
struct RoundRobin<T> {
    items: Vec<T>,
    next: usize,
    /// The failure's detail when there is nothing to append to.
    none: &'static str,
}

impl<T: Clone> RoundRobin<T> {
    fn new(items: Vec<T>, none: &'static str) -> Self {
        Self {
            items,
            next: 0,
            none,
        }
    }

    /// The next one in turn.
    fn next(&mut self) -> Result<T, Failure> {
        let item = self
            .items
            .get(self.next % self.items.len().max(1))
            .cloned()
            .ok_or_else(|| Failure::new("bench", self.none))?;
        self.next = self.next.wrapping_add(1);
        Ok(item)
    }
}

/// A worker appending through `vigil.store.append.<user>.<category>`.
pub struct VigilWorker {
    client: async_nats::Client,
    streams: RoundRobin<StreamName>,
    event: EventMaker,
}

impl VigilWorker {
    async fn append(&mut self, seq: u64) -> Result<(), Failure> {
        let stream = self.streams.next()?;
        let subject = subjects::append_subject(
            &runtime::store_client::appender_of(&self.client),
            stream.category(),
        )
        .ok_or_else(|| Failure::new("bench", "no append subject"))?;
        let request = events::AppendRequest {
            after: None,
            stream,
            expected_version: ExpectedVersion::Any,
            events: vec![self.event.event(seq)],
        };
        let payload = serde_json::to_vec(&request).map_err(|e| Failure::new("encode", e))?;
        let reply = self
            .client
            .request(subject, payload.into())
            .await
            .map_err(|e| {
                let kind = match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => "timeout",
                    async_nats::RequestErrorKind::NoResponders => "no_responders",
                    _ => "nats",
                };
                Failure::new(kind, e)
            })?;
        match serde_json::from_slice::<AppendReply>(&reply.payload) {
            Ok(AppendReply::Ok(_)) => Ok(()),
            Ok(AppendReply::Error(e)) => {
                let kind = serde_json::to_value(e.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| format!("{:?}", e.code));
                Err(Failure::new(kind, e.message))
            }
            Err(e) => Err(Failure::new(
                "bad_reply",
                format!(
                    "{e}: {}",
                    String::from_utf8_lossy(&reply.payload)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            )),
        }
    }
}

/// A worker publishing to JetStream and waiting for the ack.
pub struct JsWorker {
    js: jetstream::Context,
    subjects: RoundRobin<String>,
    msg_id: bool,
    event: EventMaker,
}

impl JsWorker {
    async fn append(&mut self, seq: u64) -> Result<(), Failure> {
        let subject = self.subjects.next()?;
        let event = self.event.event(seq);
        let payload = serde_json::to_vec(&event).map_err(|e| Failure::new("encode", e))?;
        let ack = if self.msg_id {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.id.to_string().as_str());
            self.js
                .publish_with_headers(subject, headers, payload.into())
                .await
        } else {
            self.js.publish(subject, payload.into()).await
        }
        .map_err(|e| Failure::new("publish", e))?;
        ack.await
            .map_err(|e| Failure::new(format!("ack: {:?}", e.kind()), e))?;
        Ok(())
    }
}

/// A worker appending to PostgreSQL over a connection it may share (pipelined).
pub struct PgWorker {
    client: Arc<tokio_postgres::Client>,
    stmt: Statement,
    streams: RoundRobin<String>,
    event: EventMaker,
}

impl PgWorker {
    async fn append(&mut self, seq: u64) -> Result<(), Failure> {
        let stream = self.streams.next()?;
        let id = Uuid::new_v4().to_string();
        let data =
            serde_json::to_string(&self.event.data(seq)).map_err(|e| Failure::new("encode", e))?;
        let mut attempt = 1;
        loop {
            match self
                .client
                .execute(&self.stmt, &[&stream, &id, &EVENT_TYPE, &data])
                .await
            {
                Ok(1) => return Ok(()),
                Ok(n) => {
                    return Err(Failure::new(
                        "rows",
                        format!("the insert stored {n} rows, not 1"),
                    ));
                }
                Err(e)
                    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && attempt < PG_ATTEMPTS =>
                {
                    attempt += 1
                }
                Err(e) => {
                    let kind = e.code().map_or_else(
                        || "connection".to_owned(),
                        |c| format!("sqlstate {}", c.code()),
                    );
                    return Err(Failure::new(kind, e));
                }
            }
        }
    }
}

async fn pg_connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("vigil-bench: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}

async fn pg_info(url: &str) -> anyhow::Result<PgInfo> {
    let client = pg_connect(url).await?;
    let mut show = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "data_directory",
    ] {
        let value = match client.query_one(&format!("SHOW {name}"), &[]).await {
            Ok(row) => row
                .try_get::<_, String>(0)
                .unwrap_or_else(|e| format!("? ({e})")),
            // data_directory needs privileges; the rest is readable by anyone.
            Err(e) => format!("? ({})", e.code().map_or("error", |c| c.code())),
        };
        show.push(value);
    }
    let mut it = show.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(PgInfo {
        version: next(),
        fsync: next(),
        synchronous_commit: next(),
        wal_sync_method: next(),
        data_directory: next(),
    })
}

async fn reset_pg_table(url: &str) -> anyhow::Result<()> {
    let client = pg_connect(url).await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {PG_SCHEMA} CASCADE;
             CREATE SCHEMA {PG_SCHEMA};
             CREATE TABLE {PG_SCHEMA}.events (
                 position bigserial PRIMARY KEY,
                 stream   text   NOT NULL,
                 version  bigint NOT NULL,
                 id       uuid   NOT NULL UNIQUE,
                 type     text   NOT NULL,
                 data     jsonb  NOT NULL,
                 UNIQUE (stream, version)
             );"
        ))
        .await
        .context("creating the PostgreSQL events table")?;
    Ok(())
}

async fn pg_connection(url: &str) -> anyhow::Result<(Arc<tokio_postgres::Client>, Statement)> {
    let client = pg_connect(url).await?;
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .context("SET synchronous_commit")?;
    // One statement = one transaction (autocommit). The version is read and written in the
    // same statement; two writers racing on a stream collide on UNIQUE (stream, version) and
    // the loser retries, so versions stay gap-free without a lock.
    let stmt = client
        .prepare(&format!(
            "INSERT INTO {PG_SCHEMA}.events (stream, version, id, type, data)
             SELECT $1::text, coalesce(max(version), 0) + 1, $2::text::uuid, $3::text, $4::text::jsonb
             FROM {PG_SCHEMA}.events WHERE stream = $1::text"
        ))
        .await
        .context("preparing the append statement")?;
    Ok((Arc::new(client), stmt))
}
