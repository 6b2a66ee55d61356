//! `vigil-bench intake-peer`: the peer of the intake benchmark, a separate process started by
//! `vigil-bench intake` (hidden subcommand).
//!
//! It answers `POST /api/v1/incidents` with the least a durable intake must do, on the same
//! HTTP stack as the gateway (axum 0.8 through `axum::serve`, Nagle left on) and the same
//! store: read the JSON body, take the client's `id`, deserialise the rest into the typed
//! `events::domain::incident::IncidentReported` and validate it, append it straight to
//! `vigil.store.append` over NATS (`expected_version: no_stream`, the report's id as the event
//! id, as the incidents service does), and answer 201 with the same body as the gateway
//! (`id`, `stream`, `event_id`, `position`, `stream_version`) once the store has it on disk.
//!
//! What it leaves out is what the benchmark weighs: the token check, the field rate limits,
//! the gateway's middleware (security headers, request timeout), the command hop over NATS to
//! the incidents service and that service's decision (scope, idempotency rules). The store,
//! the board fold and the WebSocket are the same for both, so the deltas of its reports reach
//! the same board client the same way.
//!
//! It prints `listening <addr>` on stdout once it takes connections, and stops when its stdin
//! closes (the bench ended) or on SIGTERM/SIGKILL from the bench.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use events::domain::DomainEvent;
use events::domain::incident::{IncidentReported, stream_for};
use events::store_api::{AppendReply, ErrorCode};
use events::{AppendRequest, ExpectedVersion, Meta, subjects};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt as _;
use uuid::Uuid;

use crate::util;

/// Flags of `vigil-bench intake-peer`.
#[derive(Debug, Clone, clap::Args)]
pub struct PeerArgs {
    /// Address to listen on (port 0: any free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
    /// NATS URL of the store (`vigil.store.append`).
    #[arg(long, default_value = "nats://127.0.0.1:4290")]
    nats_url: String,
    /// Data directory of the `vigil up` under test (for the `cli` NATS user's password).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// NATS user (instead of --data-dir).
    #[arg(long, env = "VIGIL_BENCH_NATS_USER")]
    nats_user: Option<String>,
    /// NATS password of --nats-user.
    #[arg(long, env = "VIGIL_BENCH_NATS_PASSWORD", hide_env_values = true)]
    nats_password: Option<String>,
    /// Seconds to wait for the store's answer before answering 503.
    #[arg(long, default_value_t = 10)]
    store_timeout: u64,
}

struct Peer {
    nats: async_nats::Client,
    store_timeout: Duration,
}

/// The gateway's answer to a report, field for field.
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

impl Peer {
    async fn report(&self, body: &[u8]) -> Result<(StatusCode, Acknowledged), Refused> {
        let mut fields: Map<String, Value> = serde_json::from_slice(body)
            .map_err(|e| refused(StatusCode::BAD_REQUEST, "malformed", e.to_string()))?;
        let invalid = |m: String| refused(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
        let id = match fields.remove("id") {
            Some(Value::String(s)) => {
                Uuid::parse_str(&s).map_err(|_| invalid("id: must be a UUID".into()))?
            }
            _ => return Err(invalid("id: a UUID string is required".into())),
        };
        let reporter = "bench.peer".to_owned();
        fields.insert("reporter".into(), Value::String(reporter.clone()));
        let report: IncidentReported =
            serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(e.to_string()))?;
        let meta = Meta {
            actor: Some(reporter),
            role: Some("field_officer".into()),
            source: Some("http".into()),
            correlation_id: Some(Uuid::new_v4()),
            causation_id: None,
        };
        let event = DomainEvent::from(report)
            .try_to_new_event(id, meta)
            .map_err(|e| invalid(e.to_string()))?;
        let stream = stream_for(id);
        let request = AppendRequest {
            stream: stream.clone(),
            expected_version: ExpectedVersion::NoStream,
            events: vec![event],
        };
        let payload = serde_json::to_vec(&request)
            .map_err(|e| refused(StatusCode::INTERNAL_SERVER_ERROR, "encode", e.to_string()))?;
        let unavailable = |m: String| refused(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m);
        let reply = tokio::time::timeout(
            self.store_timeout,
            self.nats.request(subjects::STORE_APPEND, payload.into()),
        )
        .await
        .map_err(|_| unavailable("the store did not answer in time".into()))?
        .map_err(|e| unavailable(e.to_string()))?;
        match serde_json::from_slice::<AppendReply>(&reply.payload) {
            Ok(AppendReply::Ok(ok)) => Ok((
                if ok.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                Acknowledged {
                    id,
                    stream: stream.as_str().to_owned(),
                    event_id: id,
                    position: ok.first_position,
                    stream_version: ok.stream_version,
                },
            )),
            Ok(AppendReply::Error(e))
                if matches!(
                    e.code,
                    ErrorCode::WrongExpectedVersion | ErrorCode::IdReused
                ) =>
            {
                Err(refused(StatusCode::CONFLICT, "id_reused", e.message))
            }
            Ok(AppendReply::Error(e)) if e.code == ErrorCode::Invalid => Err(invalid(e.message)),
            Ok(AppendReply::Error(e)) => Err(unavailable(e.message)),
            Err(e) => Err(unavailable(format!("unreadable store answer: {e}"))),
        }
    }
}

async fn report(State(peer): State<Arc<Peer>>, body: axum::body::Bytes) -> Response {
    match peer.report(&body).await {
        Ok((status, ack)) => (status, Json(ack)).into_response(),
        Err((status, code, message)) => (
            status,
            Json(json!({"error": {"code": code, "message": message}})),
        )
            .into_response(),
    }
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
    let credentials = util::nats_credentials(
        args.nats_user.as_deref(),
        args.nats_password.as_deref(),
        args.data_dir.as_deref(),
    )?;
    let nats = util::nats_connect(&args.nats_url, "vigil-bench-intake-peer", credentials).await?;
    let peer = Arc::new(Peer {
        nats,
        store_timeout: Duration::from_secs(args.store_timeout.max(1)),
    });
    let app = Router::new()
        .route("/api/v1/incidents", post(report))
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
