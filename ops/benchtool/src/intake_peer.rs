//! `vigil-bench intake-peer`: the peer of the intake and clearances benchmarks, a separate
//! process started by `vigil-bench intake` and `vigil-bench clearances` (hidden subcommand).
//!
//! It answers the benchmarks' routes with the least a durable write must do, on the same HTTP
//! stack as the gateway (axum 0.8 through `axum::serve`, Nagle left on) and the same store:
//! read the JSON body, take the client's `id`, deserialise the rest into the typed event and
//! validate it, append it straight to `vigil.store.append` over NATS with the event id the
//! service would give it, and answer with the gateway's body (`id`, `stream`, `event_id`,
//! `position`, `stream_version`) once the store has it on disk:
//! - `POST /api/v1/incidents` → `IncidentReported` (`expected_version: no_stream`, the
//!   report's id as the event id, as the incidents service does), 201;
//! - `POST /api/v1/clearances` → `ClearanceRequested` on `clearance-<id>` (`no_stream`, the
//!   id, or a fresh one, as the event id, as the clearances service does), 201;
//! - `POST /api/v1/clearances/{id}/approve` → `ClearanceApproved` by `bench.peer`, appended
//!   with `expected_version: 1` (the store refuses it unless the clearance holds exactly its
//!   request: requested, not yet decided), the body's `id` (or a fresh one) as the event id,
//!   200.
//!
//! What it leaves out is what the benchmarks weigh: the token check, the field rate limits,
//! the gateway's middleware (security headers, request timeout), the command hop over NATS to
//! the service and that service's decision (scope, idempotency rules; for clearances also the
//! personnel register lookup and the read of the clearance's stream before deciding). The
//! store, the services and projections that follow the log and the gateway are the same for
//! both, so what the peer writes reaches the same board client and the same registers the same
//! way.
//!
//! It prints `listening <addr>` on stdout once it takes connections, and stops when its stdin
//! closes (the bench ended) or on SIGTERM/SIGKILL from the bench.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::domain::DomainEvent;
use events::domain::clearance::{self, ClearanceApproved, ClearanceRequested};
use events::domain::incident::{self, IncidentReported};
use events::store_api::{AppendOk, AppendReply, ErrorCode};
use events::{AppendRequest, ExpectedVersion, Meta, StreamName, subjects};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt as _;
use uuid::Uuid;

use crate::util::NatsArgs;

/// Flags of `vigil-bench intake-peer`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    // The store it appends to (`vigil.store.append`), as the `cli` user of --data-dir.
    #[command(flatten)]
    nats: NatsArgs,
    /// Seconds to wait for the store's answer before answering 503.
    #[arg(long, default_value_t = 10)]
    store_timeout: u64,
}

/// Who the peer writes as.
const ACTOR: &str = "bench.peer";

struct Peer {
    nats: async_nats::Client,
    store_timeout: Duration,
}

/// The gateway's answer to a write, field for field.
#[derive(Debug, Serialize)]
struct Acknowledged {
    id: Uuid,
    stream: String,
    event_id: Uuid,
    position: u64,
    stream_version: u64,
}

type Refused = (StatusCode, &'static str, String);

fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refused {
    (status, code, message.into())
}

fn invalid(message: String) -> Refused {
    refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", message)
}

/// The body as a JSON object, without its `id` (`None` when absent and not `required`).
fn read_body(body: &[u8], required: bool) -> Result<(Option<Uuid>, Map<String, Value>), Refused> {
    let mut fields: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
    let id = match fields.remove("id") {
        Some(Value::String(s)) => {
            Some(Uuid::parse_str(&s).map_err(|_| invalid("id: must be a UUID".into()))?)
        }
        None if !required => None,
        _ => return Err(invalid("id: a UUID string is required".into())),
    };
    Ok((id, fields))
}

/// `fields` as the typed event `T`.
fn typed<T: DeserializeOwned>(fields: Map<String, Value>) -> Result<T, Refused> {
    serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(e.to_string()))
}

impl Peer {
    /// Appends `event` with id `event_id` to `stream` and waits for the store's answer.
    async fn append(
        &self,
        stream: &StreamName,
        expected_version: ExpectedVersion,
        event: DomainEvent,
        event_id: Uuid,
        role: &str,
    ) -> Result<AppendOk, Refused> {
        let meta = Meta {
            actor: Some(ACTOR.to_owned()),
            role: Some(role.to_owned()),
            source: Some("http".into()),
            correlation_id: Some(Uuid::new_v4()),
            causation_id: None,
            appended_by: None,
        };
        let event = event
            .try_to_new_event(event_id, meta)
            .map_err(|e| invalid(e.to_string()))?;
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version,
            events: vec![event],
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|e| refused(StatusCode::INTERNAL_SERVER_ERROR, "encode", e.to_string()))?;
        let unavailable = |m: String| refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
        // As the services do: the subject names this connection's NATS user and the category.
        let subject = subjects::append_subject(
            &runtime::store_client::appender_of(&self.nats),
            stream.category(),
        )
        .ok_or_else(|| unavailable("this NATS user cannot name an append subject".into()))?;
        let reply = tokio::time::timeout(
            self.store_timeout,
            self.nats.request(subject, payload.into()),
        )
        .await
        .map_err(|_| unavailable("the store did not answer in time".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
        match serde_json::from_slice::<AppendReply>(&reply.payload) {
            Ok(AppendReply::Ok(ok)) => Ok(ok),
            Ok(AppendReply::Error(e))
                if matches!(
                    e.code,
                    ErrorCode::WrongExpectedVersion | ErrorCode::IdReused
                ) =>
            {
                Err(refused(StatusCode::CONFLICT, "conflict", e.message))
            }
            Ok(AppendReply::Error(e)) if e.code == ErrorCode::Invalid => Err(invalid(e.message)),
            Ok(AppendReply::Error(e)) => Err(unavailable(e.message)),
            Err(e) => Err(unavailable(format!("unreadable store answer: {e}"))),
        }
    }

    /// A new stream `stream` opened by `event` (id `id`): 201, or 200 on a resend.
    async fn create(
        &self,
        id: Uuid,
        stream: StreamName,
        event: DomainEvent,
        role: &str,
    ) -> Result<(StatusCode, Acknowledged), Refused> {
        let ok = self
            .append(&stream, ExpectedVersion::NoStream, event, id, role)
            .await?;
        let status = if ok.duplicate {
            StatusCode::OK
        } else {
            StatusCode::CREATED
        };
        Ok((status, acknowledged(id, &stream, id, &ok)))
    }

    async fn report(&self, body: &[u8]) -> Result<(StatusCode, Acknowledged), Refused> {
        let (id, mut fields) = read_body(body, true)?;
        let id = id.unwrap_or_default();
        fields.insert("reporter".into(), Value::String(ACTOR.to_owned()));
        let report: IncidentReported = typed(fields)?;
        self.create(id, incident::stream_for(id), report.into(), "field_officer")
            .await
    }

    async fn request_clearance(&self, body: &[u8]) -> Result<(StatusCode, Acknowledged), Refused> {
        let (id, fields) = read_body(body, false)?;
        let id = id.unwrap_or_else(Uuid::new_v4);
        let requested: ClearanceRequested = typed(fields)?;
        self.create(
            id,
            clearance::stream_for(id),
            requested.into(),
            "field_officer",
        )
        .await
    }

    async fn approve(
        &self,
        clearance: &str,
        body: &[u8],
    ) -> Result<(StatusCode, Acknowledged), Refused> {
        let id = Uuid::parse_str(clearance).map_err(|_| {
            refused(
                StatusCode::NOT_FOUND,
                "not_found",
                "the id in the path is a UUID",
            )
        })?;
        let (command, fields) = read_body(body, false)?;
        if !fields.is_empty() {
            return Err(invalid("approve takes only an id".into()));
        }
        let command = command.unwrap_or_else(Uuid::new_v4);
        let stream = clearance::stream_for(id);
        let approved = ClearanceApproved {
            by: ACTOR.to_owned(),
        };
        // Version 1: the stream holds the request and nothing else (requested, undecided).
        let ok = self
            .append(
                &stream,
                ExpectedVersion::Exact(1),
                approved.into(),
                command,
                "duty_officer",
            )
            .await?;
        Ok((StatusCode::OK, acknowledged(id, &stream, command, &ok)))
    }
}

fn acknowledged(id: Uuid, stream: &StreamName, event_id: Uuid, ok: &AppendOk) -> Acknowledged {
    Acknowledged {
        id,
        stream: stream.as_str().to_owned(),
        event_id,
        position: ok.first_position,
        stream_version: ok.stream_version,
    }
}

fn answer(outcome: Result<(StatusCode, Acknowledged), Refused>) -> Response {
    match outcome {
        Ok((status, ack)) => (status, Json(ack)).into_response(),
        Err((status, code, message)) => (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response(),
    }
}

async fn report(State(peer): State<Arc<Peer>>, body: axum::body::Bytes) -> Response {
    answer(peer.report(&body).await)
}

async fn request_clearance(State(peer): State<Arc<Peer>>, body: axum::body::Bytes) -> Response {
    answer(peer.request_clearance(&body).await)
}

async fn approve(
    State(peer): State<Arc<Peer>>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    answer(peer.approve(&id, &body).await)
}

/// Resolves when stdin reaches its end (the bench that started this process is gone).
async fn stdin_closed() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Runs `vigil-bench intake-peer` until stdin closes.
pub async fn serve(args: PeerArgs) -> anyhow::Result<()> {
    let nats = args.nats.connect("vigil-bench-intake-peer").await?;
    let peer = Arc::new(Peer {
        nats,
        store_timeout: Duration::from_secs(args.store_timeout.max(1)),
    });
    let app = Router::new()
        .route("/api/v1/incidents", post(report))
        .route("/api/v1/clearances", post(request_clearance))
        .route("/api/v1/clearances/{id}/approve", post(approve))
        .with_state(peer);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stdin_closed())
    .await?;
    Ok(())
}
