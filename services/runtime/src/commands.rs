//! How a domain service takes commands (`vigil.cmd.<service>.<command>`) and turns a pure
//! decision into events in its stream.
//!
//! # Promises
//! - [`serve`] answers every request on `vigil.cmd.<service>.>` exactly once with a JSON
//!   [`Reply`], in a queue group (instances share the work), with at most
//!   [`MAX_IN_FLIGHT`] requests handled at once; a request it cannot read gets a typed
//!   `invalid` refusal. It never panics on input.
//! - [`execute`] is optimistic concurrency around a pure `decide`: read the stream (a long one
//!   through the client's cache, [`crate::stream_cache`]: what the store holds, read from the
//!   last event kept), decide, append with the version it read; if someone wrote in between,
//!   read and decide again.
//!   The command's id is the id of the first event it produces, so:
//!   - a retry of a command already carried out is answered with the original outcome
//!     (`duplicate: true`) and stores nothing, found in the stream or by the store's id index;
//!   - the reply is sent only after the store has the events on disk.
//! - A refusal (from `decide` or from the store) changes nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Command, MAX_COMMAND_BYTES, Refusal, RefusalCode, Reply, Written};
use events::domain::DomainEvent;
use events::{AppendRequest, ErrorCode, ExpectedVersion, RecordedEvent, StreamName, codec};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::store_client::{ClientError, StoreClient};
use crate::stream_cache::History;

/// Requests one service instance handles at the same time.
pub const MAX_IN_FLIGHT: usize = 256;
/// How long [`execute`] keeps retrying an unreachable store before answering `unavailable`
/// (the caller then retries with the same id).
pub const STORE_DEADLINE: Duration = Duration::from_secs(2);
/// How many times [`execute`] decides again after losing a race for the stream.
const MAX_RACES: usize = 8;

/// Serves `vigil.cmd.<service>.>` until `shutdown`. `handle` gets the command name (what
/// follows `vigil.cmd.<service>.`: `report`, or `report.batch` for a batch) and the payload,
/// and returns the reply body.
pub async fn serve<H, F>(
    client: Client,
    service: &'static str,
    shutdown: CancellationToken,
    handle: H,
) -> anyhow::Result<()>
where
    H: Fn(String, Bytes) -> F + Send + Sync + 'static,
    F: Future<Output = Vec<u8>> + Send + 'static,
{
    let prefix = format!("vigil.cmd.{service}.");
    let subject = format!("{prefix}>");
    let mut requests = client
        .queue_subscribe(subject.clone(), format!("vigil-{service}"))
        .await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let handle = Arc::new(handle);
    tracing::info!(%subject, "{service} service taking commands");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = requests.next() => match m { Some(m) => m, None => break },
        };
        let Some(reply_to) = msg.reply.clone() else {
            continue; // nobody to answer: a command is always a request
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        // What follows `vigil.cmd.<service>.`: a command's name, or `<name>.batch`.
        let command = msg
            .subject
            .strip_prefix(prefix.as_str())
            .unwrap_or_default()
            .to_owned();
        let handle = handle.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let body = handle(command.clone(), msg.payload).await;
            metrics::histogram!("vigil_command_seconds", "service" => service, "command" => command)
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = client.publish(reply_to, body.into()).await {
                tracing::warn!(error = %e, "could not answer a command");
            }
            drop(permit);
        });
    }
    Ok(())
}

/// The most commands in one batch ([`events::subjects::batch_subject`]).
pub const MAX_BATCH: usize = 256;
/// A batch carried out one command at a time starts none after this long: it is answered
/// within about this plus one command's time, well before a caller's request times out
/// (the relay of field sites waits 10 s).
pub const BATCH_BUDGET: Duration = Duration::from_secs(2);

/// The answer to a batch ([`events::subjects::batch_subject`], inside `{"ok": …}`): one
/// reply per command tried, in order, each as the command sent alone would have been
/// answered. It stops after the first that must be sent again ([`must_send_again`]), or once
/// [`BATCH_BUDGET`] has passed: the commands after the last answer were not tried.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchAnswers {
    /// The replies.
    pub answers: Vec<Box<RawValue>>,
}

/// Whether `reply` says "send the same command again" (`unavailable`, or not a reply at
/// all) rather than a final outcome (`ok` or a refusal).
pub fn must_send_again(reply: &[u8]) -> bool {
    #[derive(Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Answer {
        Ok(serde::de::IgnoredAny),
        Error(Refusal),
    }
    match serde_json::from_slice::<Answer>(reply) {
        Ok(Answer::Ok(_)) => false,
        Ok(Answer::Error(r)) => r.code == RefusalCode::Unavailable,
        Err(_) => true,
    }
}

/// Reads a command with the size limit; an unreadable one is an `invalid` refusal. Every
/// string in it is normalised to Unicode NFC first (`events::validate::nfc_json`), so what a
/// service checks and stores is one spelling of the text, whatever keyboard typed it.
pub fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<Command<T>, Refusal> {
    let mut tree: serde_json::Value = codec::decode_json(payload, "the command", MAX_COMMAND_BYTES)
        .map_err(|e| Refusal::invalid(e.to_string()))?;
    events::validate::nfc_json(&mut tree);
    codec::from_value(tree).map_err(|e| Refusal::invalid(format!("malformed request: {e}")))
}

/// The reply body of an outcome.
pub fn reply<T: Serialize>(outcome: Result<T, Refusal>) -> Vec<u8> {
    codec::encode(&Reply::from(outcome))
}

/// The refusal for a store failure.
pub fn store_refusal(e: ClientError) -> Refusal {
    match e {
        ClientError::Store(s) => match s.code {
            ErrorCode::IdReused => Refusal::new(RefusalCode::IdReused, s.message),
            ErrorCode::Unavailable => Refusal::unavailable(format!(
                "the event store cannot take writes now ({}); nothing was stored: retry with the same id",
                s.message
            )),
            ErrorCode::Invalid => Refusal::invalid(s.message),
            // This service wrote outside its categories: a bug, not the caller's fault.
            ErrorCode::Forbidden => Refusal::unavailable(format!(
                "the event store refused this service's write ({}); nothing was stored",
                s.message
            )),
            // Only an append chained behind another (`after`) meets it: that one is not
            // stored yet, so neither is this.
            ErrorCode::AfterMissing => {
                Refusal::unavailable(format!("{}; retry with the same id", s.message))
            }
            ErrorCode::WrongExpectedVersion => Refusal::conflict(
                "someone else changed this at the same moment; reload it and try again",
            ),
        },
        ClientError::Transport(_) => Refusal::unavailable(
            "the event store is not answering; nothing was stored: retry with the same id",
        ),
        ClientError::Decode(m) => Refusal::unavailable(format!(
            "unreadable answer from the event store ({m}); retry with the same id"
        )),
    }
}

/// Every event of `stream` and its version (0: no such stream), through the client's cache
/// of long streams ([`crate::stream_cache`]).
pub async fn load(store: &StoreClient, stream: &StreamName) -> Result<(History, u64), Refusal> {
    store.read_history(stream).await.map_err(store_refusal)
}

/// The id of the `i`-th event of a command that produces several (the first is the
/// command's own id).
pub fn event_id(command: Uuid, i: usize) -> Uuid {
    if i == 0 {
        command
    } else {
        Uuid::new_v5(&command, &i.to_le_bytes())
    }
}

/// Carries out `command` on `stream`: `decide` sees the stream's events and returns the new
/// events (or a refusal); they are appended with the version that was read.
pub async fn execute<T, D>(
    store: &StoreClient,
    stream: &StreamName,
    command: &Command<T>,
    decide: D,
) -> Result<Written, Refusal>
where
    D: Fn(&[RecordedEvent]) -> Result<Vec<DomainEvent>, Refusal>,
{
    for _ in 0..MAX_RACES {
        let (history, version) = load(store, stream).await?;
        if let Some(done) = history.iter().find(|e| e.id == command.id) {
            return Ok(Written {
                stream: stream.clone(),
                event_id: command.id,
                position: done.position,
                stream_version: done.version,
                duplicate: true,
            });
        }
        let new = decide(&history)?;
        if new.is_empty() {
            return Err(Refusal::conflict("nothing to change"));
        }
        let meta = command.meta();
        let events = new
            .iter()
            .enumerate()
            .map(|(i, e)| e.try_to_new_event(event_id(command.id, i), meta.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: if version == 0 {
                ExpectedVersion::NoStream
            } else {
                ExpectedVersion::Exact(version)
            },
            events,
        };
        match store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => {
                return Ok(Written {
                    stream: stream.clone(),
                    event_id: command.id,
                    position: ok.first_position,
                    stream_version: ok.stream_version - (new.len() as u64 - 1),
                    duplicate: ok.duplicate,
                });
            }
            Err(ClientError::Store(e)) if e.code == ErrorCode::WrongExpectedVersion => continue,
            Err(e) => return Err(store_refusal(e)),
        }
    }
    Err(Refusal::conflict(
        "too many changes to this at the same moment; try again",
    ))
}
