//! The audit service: turns reports of refused requests (`vigil.cmd.audit.record`) into
//! `AccessDenied` events in the day's `audit-<uuid>` stream.
//!
//! # Promises
//! - A record is stored once: its id is the event id, and the store's idempotency makes a
//!   re-sent record (a reporter's retry, a redelivery) a no-op.
//! - Bad records (not JSON, unknown fields, over 8 KiB) are refused with a typed answer and
//!   change nothing.
//! - A record is answered `ok` only after the store has it on disk; until then the reporter
//!   may retry with the same id.
//!
//! It runs in a queue group, so several instances share the work.

use std::time::Duration;

use async_nats::Client;
use events::audit::{ACCESS_DENIED, AccessDenied, MAX_RECORD_BYTES, RECORD_SUBJECT, stream_for};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, codec};
use futures::StreamExt;
use runtime::StoreClient;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// Queue group of the audit service's instances.
pub const QUEUE: &str = "vigil-audit";

/// Serves `vigil.cmd.audit.record` until `shutdown`.
pub async fn run(client: Client, shutdown: CancellationToken) -> anyhow::Result<()> {
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    let mut records = client.queue_subscribe(RECORD_SUBJECT, QUEUE.into()).await?;
    // No register: ready as soon as it records.
    let ready = || runtime::status::ServiceStatus::ready("audit");
    runtime::status::serve(client.clone(), "audit", ready, shutdown.clone());
    tracing::info!("audit service recording {RECORD_SUBJECT}");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = records.next() => match m { Some(m) => m, None => break },
        };
        let outcome = record(&store, &msg.payload).await;
        let label = if outcome.is_ok() { "ok" } else { "refused" };
        metrics::counter!("vigil_audit_records_total", "outcome" => label).increment(1);
        if let Some(reply) = msg.reply {
            let body = match outcome {
                Ok(position) => json!({"ok": {"position": position}}),
                Err(message) => json!({"error": {"code": "invalid", "message": message}}),
            };
            let _ = client.publish(reply, body.to_string().into()).await;
        }
    }
    Ok(())
}

async fn record(store: &StoreClient, payload: &[u8]) -> Result<u64, String> {
    let record: AccessDenied = codec::decode_json(payload, "the audit record", MAX_RECORD_BYTES)
        .map_err(|e| e.to_string())?;
    let record = record.bounded();
    let stream = stream_for(record.at);
    let data = serde_json::to_value(&record).map_err(|e| e.to_string())?;
    let event = NewEvent {
        id: record.id,
        event_type: ACCESS_DENIED.to_owned(),
        v: 1,
        data,
        meta: Meta {
            actor: Some("audit".to_owned()),
            role: Some("service".to_owned()),
            source: Some("gateway".to_owned()),
            ..Meta::default()
        },
    };
    let request = AppendRequest {
        after: None,
        stream,
        expected_version: ExpectedVersion::Any,
        events: vec![event],
    };
    store
        .append_retrying(&request, Duration::from_secs(10))
        .await
        .map(|ok| ok.last_position)
        .map_err(|e| e.to_string())
}
