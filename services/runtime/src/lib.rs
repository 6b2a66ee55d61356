//! Shared plumbing of Vigil's services. Every service uses these pieces the same way.
//!
//! # Layout
//! - [`data_dir`]: owner-only files and directories, and the check of a data directory's
//!   modes at start.
//! - [`nats`]: connecting to NATS (reconnect forever for services, fail fast for tools).
//! - [`nats_server`]: which nats-server binary to start (one lookup for `vigil up`, tests,
//!   chaos and bench).
//! - [`nats_auth`]: the NATS users of the services, their credentials file and their
//!   per-subject permissions (the nats-server config `vigil up` writes).
//! - [`nats_cluster`]: a node of a several-node centre: its cluster and JetStream config
//!   and what the store and the operator tools may do with JetStream.
//! - [`nats_agencies`]: the NATS identities (nkeys) of agency systems, issued and revoked by
//!   the operator, and what each may do on the bus.
//! - [`nats_sites`]: field sites: their leaf-node users, issued and revoked by the
//!   operator, the centre's leaf listener, and which commands a site may forward.
//! - [`store_client`]: the typed client of the store's API, with idempotent retries.
//! - [`catchup`]: the catch-up subscription every consumer uses: read the log from the last
//!   applied position, then follow the live feed, filling gaps from the log.
//! - [`commands`]: how a domain service takes commands and turns a pure decision into
//!   events (optimistic concurrency, idempotent retries, typed refusals).
//! - [`host`]: the generic service host: serves any aggregate over NATS from a command
//!   table (create, change, get, list), with hooks for what is special about a service.
//! - [`fold_thread`]: a projection's own thread, where its fold of the log runs off the
//!   async workers (the gateway's boards, each service's register).
//! - [`read_model`]: a service's register of the whole log, folded in the background,
//!   readable once caught up, started from its checkpoint when it has one.
//! - [`reference`]: reference data (areas, stations, agencies, personnel) folded once per
//!   process and shared by its hosted services.
//! - [`status`]: each service instance says whether it is ready (the gateway's `/readyz`).
//! - [`checkpoint`]: a projection's state saved at a log position (atomic, versioned,
//!   checksummed; a bad one is refused and the whole log folded instead).
//! - [`config`]: settings from flags, environment and an optional file.
//! - [`telemetry`]: tracing setup and the Prometheus `/metrics` endpoint.
//! - [`open_files`]: raising the open-file soft limit to the hard limit at start.
//! - [`shutdown`]: one cancellation token that SIGINT and SIGTERM fire.

pub mod catchup;
pub mod checkpoint;
pub mod commands;
pub mod config;
pub mod data_dir;
pub mod fold_thread;
pub mod host;
pub mod nats;
pub mod nats_agencies;
pub mod nats_auth;
pub mod nats_cluster;
pub mod nats_server;
pub mod nats_sites;
pub mod open_files;
pub mod read_model;
pub mod reference;
pub mod shutdown;
pub mod status;
pub mod store_client;
pub mod stream_cache;
pub mod telemetry;

pub use catchup::{CatchUp, CatchUpConfig, Logged};
pub use fold_thread::FoldThread;
pub use read_model::{Fold, ReadModel};
pub use store_client::{ClientError, StoreClient};
