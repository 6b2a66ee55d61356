//! The store: Vigil's only writer of the event log and only publisher of committed events.
//!
//! # Layout
//! - [`incoming`]: the append request as the store reads it (borrowed, checked envelopes
//!   whose `data` is written as it came).
//! - [`log`]: the append-only log on fjall — layout, reads, and the atomic, fsync'd commit of
//!   a group of appends (positions gap-free from 1, versions per stream, permanent id index).
//! - [`server`]: the NATS API (`vigil.store.*`), group commit, and the publication of
//!   committed groups on `vigil.events.committed` ([`feed`]: their messages).
//! - [`replication`]: a store replica of a several-node centre — the journal on JetStream,
//!   the leader lease, following, failover (used when `StoreConfig::replication` is set).
//!
//! What each write path promises is written at the top of each module.

pub mod feed;
pub mod incoming;
pub mod log;
pub mod replication;
pub mod server;

pub use log::{Durability, Log, LogError};
pub use server::{Replication, StoreConfig, run};
