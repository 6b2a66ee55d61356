//! The domain API: incidents and security levels over HTTP, turned into commands to the
//! services that own them (`vigil.cmd.incidents.*`, `vigil.cmd.levels.*`).
//!
//! The gateway checks what it can without the state of the domain (a JSON object, the size
//! limit, a client UUID where one is required, the route's roles, the field rate limits, and
//! the body's shape: read as the route's type, [`crate::bodies`]) and passes the
//! authenticated actor with every command; the service decides, with the actor's scope, and
//! its typed refusal becomes the HTTP status (`RefusalCode::http_status`).
//!
//! # Promises
//! - `POST /api/v1/incidents`: the body's `id` (a client UUID) is the incident's id and the
//!   idempotency key: 201 the first time, 200 with the same body on a retry, 409 if the id
//!   comes again with different content. 503 when the store or the service is down: nothing
//!   was stored, or the retry with the same id will say so.
//! - Transitions take an optional `id` (a client UUID) with the same retry rule; without one
//!   a retry may apply twice (a note recorded twice), never a transition twice (the state
//!   refuses it).
//! - At a field site (`vigil site`), the writes the site forwards are answered 202 with a
//!   `PendingAtSite` body: on the site's disk, not yet at the centre ([`crate::site`]).
//! - A refusal changes nothing; errors are JSON `{"error": {"code", "message"}}`.
//! - Every list answers one shape, `{"items", "position", "next"}`, paged with `?limit=`
//!   (1 to 500, default 100) and `?cursor=<next>` ([`events::page`]); a bad cursor or limit
//!   is a 422 `invalid`.
//! - A call whose event a broadcast rule may fire on (`PUT …/areas/{area}/level`,
//!   `POST /api/v1/incidents`, `POST /api/v1/hostage-cases`, `POST /api/v1/orders`) answers
//!   `"triggered": "/api/v1/broadcasts?caused_by=<event id>"`: the broadcasts that event
//!   caused (a rule's broadcast, or the one that stands for it when damping held the trigger
//!   back). A link, not ids: rule broadcast ids are derived from (rule, trigger), but
//!   whether a rule fires at all (which rules the centre runs, agencies present in the
//!   country, the trigger's age, flap damping) is decided by the broadcast service when it
//!   sees the event, after this answer; ids given here could name broadcasts that never
//!   exist. The broadcasts appear under the link within moments of the answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use events::command::{Command, Refusal, Reply, Written};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::auth::Claims;
use crate::bodies::{Acknowledged, Body, LevelSet, ReportIncident, RequestBody, SetLevel};
use crate::http::ApiError;
use crate::site::Landed;

/// How long the gateway waits for a service's answer. A command that takes longer may still
/// land: the client retries with the same id and gets the original outcome.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

fn refusal(r: Refusal) -> ApiError {
    let status =
        StatusCode::from_u16(r.code.http_status()).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY);
    ApiError::new(status, r.code.as_str(), r.message)
}

fn unavailable(service: &str, why: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!(
            "the {service} service {why}; retry with the same id (a retry is never stored twice)"
        ),
    )
}

/// Sends command `name` to `service` and reads its typed answer.
async fn call<B: Serialize, T: serde::de::DeserializeOwned>(
    state: &AppState,
    service: &'static str,
    name: &str,
    id: Uuid,
    claims: &Claims,
    body: B,
) -> Result<T, ApiError> {
    call_as(state, service, name, id, claims.actor(), body).await
}

/// [`call`] for a given actor (the public feeds have no token).
async fn call_as<B: Serialize, T: serde::de::DeserializeOwned>(
    state: &AppState,
    service: &'static str,
    name: &str,
    id: Uuid,
    actor: events::command::Actor,
    body: B,
) -> Result<T, ApiError> {
    let command = Command {
        id,
        actor,
        source: "http".to_owned(),
        correlation_id: Some(Uuid::new_v4()),
        body,
    };
    let subject = events::subjects::command_subject(service, name);
    let payload = events::codec::encode(&command);
    let answer = tokio::time::timeout(
        COMMAND_TIMEOUT,
        state.store.nats().request(subject, payload.into()),
    )
    .await;
    let msg = match answer {
        Ok(Ok(msg)) => msg,
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(unavailable(service, "is not running"));
        }
        Ok(Err(_)) | Err(_) => {
            return Err(unavailable(service, "did not answer in time"));
        }
    };
    match serde_json::from_slice::<Reply<T>>(&msg.payload) {
        Ok(Reply::Ok(t)) => Ok(t),
        Ok(Reply::Error(r)) => Err(refusal(r)),
        Err(_) => Err(unavailable(
            service,
            "gave an answer this gateway cannot read",
        )),
    }
}

/// Records `claims`' read of the restricted stream `stream` the way its owning service
/// records a read of its details (the hostage service's `get` appends a `DetailsRead` to
/// the audit log before it answers, and checks the role and scope again). `true` once the
/// record is on disk; `false` when it is not (refused, not found, service down): then the
/// caller must not be shown the details.
pub(crate) async fn audit_restricted_read(
    state: &AppState,
    claims: &Claims,
    stream: &events::StreamName,
) -> bool {
    match stream.category().as_str() {
        "hostage" => call::<_, Value>(
            state,
            "hostage",
            "get",
            Uuid::new_v4(),
            claims,
            json!({"case": stream.id()}),
        )
        .await
        .is_ok(),
        // No other category holds restricted details; nothing else can be audited here.
        _ => false,
    }
}

/// The field rate limits for `claims` from `peer`: `Some(429 answer)` when over them.
fn field_limited(
    state: &AppState,
    peer: SocketAddr,
    claims: &Claims,
    path: &str,
) -> Option<Response> {
    let wait = state.field_limits.check(peer.ip(), &claims.sub).err()?;
    state.audit_denied("POST", path, "rate_limited", Some(peer), Some(claims));
    Some(crate::http::too_many(wait, "submissions"))
}

fn acknowledged(id: Uuid, w: &Written) -> Acknowledged {
    Acknowledged {
        id,
        stream: w.stream.as_str().to_owned(),
        event_id: w.event_id,
        position: w.position,
        stream_version: w.stream_version,
        triggered: None,
    }
}

/// The list of the broadcasts event `event` caused: rule broadcasts are fired by the
/// broadcast service when it sees the event, after this answer, so the caller gets where to
/// find them rather than their ids (see the module doc).
pub fn triggered(event: Uuid) -> String {
    format!("/api/v1/broadcasts?caused_by={event}")
}

/// [`acknowledged`] for a command whose event a broadcast rule may fire on.
fn acknowledged_triggering(id: Uuid, w: &Written) -> Acknowledged {
    Acknowledged {
        triggered: Some(triggered(w.event_id)),
        ..acknowledged(id, w)
    }
}

/// `POST /api/v1/incidents`: a flash report.
pub async fn report(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(claims): axum::Extension<Claims>,
    mut body: Body<ReportIncident>,
) -> Result<Response, Response> {
    if let Some(limited) = field_limited(&state, peer, &claims, "/api/v1/incidents") {
        return Err(limited);
    }
    let id = body
        .take_id(true)
        .map_err(IntoResponse::into_response)?
        .unwrap_or_default();
    let (_, fields) = body.read().map_err(IntoResponse::into_response)?;
    let landed: Landed = call(
        &state,
        "incidents",
        "report",
        id,
        &claims,
        Value::Object(fields),
    )
    .await
    .map_err(IntoResponse::into_response)?;
    let written = match landed {
        Landed::Written(w) => w,
        Landed::AtSite(at) => return Ok(crate::site::pending(id, &at)),
    };
    let status = if written.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    metrics::counter!("vigil_gateway_reports_total", "outcome" => if written.duplicate { "duplicate" } else { "created" })
        .increment(1);
    Ok((status, Json(acknowledged_triggering(id, &written))).into_response())
}

fn incident_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such incident: the id in the path must be the report's UUID",
        )
    })
}

/// A transition's handler: `POST /api/v1/incidents/{id}/<action>` sends command `name`.
macro_rules! transitions {
    ($($(#[$doc:meta])* $handler:ident => $name:literal $body:ty),+ $(,)?) => {$(
        $(#[$doc])*
        pub async fn $handler(
            state: State<Arc<AppState>>,
            peer: ConnectInfo<SocketAddr>,
            claims: axum::Extension<Claims>,
            id: Path<String>,
            body: Body<$body>,
        ) -> Result<Response, Response> {
            transition(state, peer, claims, id, body, $name).await
        }
    )+};
}

transitions! {
    /// `POST /api/v1/incidents/{id}/updates`: details added or corrected, or a note.
    update => "update" events::domain::incident::IncidentUpdated,
    /// `POST /api/v1/incidents/{id}/verify`: a duty officer confirms the report.
    verify => "verify" crate::bodies::Verification,
    /// `POST /api/v1/incidents/{id}/escalate`: linked to a hostage case, surge or order.
    escalate => "escalate" events::domain::incident::IncidentEscalated,
    /// `POST /api/v1/incidents/{id}/close`.
    close => "close" events::domain::incident::IncidentClosed,
}

async fn transition<T: RequestBody>(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::Extension(claims): axum::Extension<Claims>,
    Path(id): Path<String>,
    mut body: Body<T>,
    name: &'static str,
) -> Result<Response, Response> {
    let incident = incident_id(&id).map_err(IntoResponse::into_response)?;
    if let Some(limited) = field_limited(&state, peer, &claims, "/api/v1/incidents/{id}") {
        return Err(limited);
    }
    let command_id = body
        .take_id(false)
        .map_err(IntoResponse::into_response)?
        .unwrap_or_else(Uuid::new_v4);
    let (_, fields) = body.read().map_err(IntoResponse::into_response)?;
    let change = json!({"incident": incident, "change": Value::Object(fields)});
    let landed: Landed = call(&state, "incidents", name, command_id, &claims, change)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(match landed {
        Landed::Written(w) => Json(acknowledged(incident, &w)).into_response(),
        Landed::AtSite(at) => crate::site::pending(incident, &at),
    })
}

/// `GET /api/v1/incidents/{id}`.
pub async fn incident(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<Claims>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let incident = incident_id(&id)?;
    let found: Value = call(
        &state,
        "incidents",
        "get",
        Uuid::new_v4(),
        &claims,
        json!({"incident": incident}),
    )
    .await?;
    Ok(Json(found).into_response())
}

/// Query of `GET /api/v1/incidents`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    severity: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// `GET /api/v1/incidents?country=&status=&severity=&since=&limit=&cursor=`: one page
/// (see [`events::page`]).
pub async fn incidents(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<Claims>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let list: Value = call(&state, "incidents", "list", Uuid::new_v4(), &claims, q).await?;
    Ok(Json(list).into_response())
}

/// `PUT /api/v1/areas/{area}/level`: `{level 1..6, reason, id?}`.
pub async fn set_level(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<Claims>,
    Path(area): Path<String>,
    mut body: Body<SetLevel>,
) -> Result<Response, ApiError> {
    let command_id = body.take_id(false)?.unwrap_or_else(Uuid::new_v4);
    if body.contains("area") {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "area: it is in the path; leave it out of the body",
        ));
    }
    let (_, mut fields) = body.read()?;
    fields.insert("area".to_owned(), Value::String(area.clone()));
    let written: Written = call(
        &state,
        "levels",
        "set",
        command_id,
        &claims,
        Value::Object(fields),
    )
    .await?;
    Ok(Json(LevelSet {
        triggered: triggered(written.event_id),
        area,
        stream: written.stream.as_str().to_owned(),
        event_id: written.event_id,
        position: written.position,
        stream_version: written.stream_version,
    })
    .into_response())
}

/// `GET /api/v1/areas/{area}/level`: the level now and its history.
pub async fn level_history(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<Claims>,
    Path(area): Path<String>,
) -> Result<Response, ApiError> {
    let history: Value = call(
        &state,
        "levels",
        "history",
        Uuid::new_v4(),
        &claims,
        json!({"area": area}),
    )
    .await?;
    Ok(Json(history).into_response())
}

/// The crisis resources (hostage cases, surges, orders, clearances) follow one shape, so
/// their routes are built by these four functions from (service, command) names:
/// - `POST /api/v1/<things>` creates (optional client `id`: the new thing's id and the
///   idempotency key; 201 the first time, 200 on a resend),
/// - `GET /api/v1/<things>?…` lists (query parameters become the list's filters),
/// - `GET /api/v1/<things>/{id}` reads one,
/// - `POST /api/v1/<things>/{id}/<action>` sends a transition (optional command `id`).
pub mod resource {
    use axum::routing::{MethodRouter, get, post};

    use super::*;

    type Routed = MethodRouter<Arc<AppState>>;

    /// `POST /api/v1/<things>`: command `command` of `service` creates one from a `T`.
    pub fn create<T: RequestBody>(service: &'static str, command: &'static str) -> Routed {
        creating::<T>(service, command, acknowledged)
    }

    /// [`create`] for a thing whose creation a broadcast rule may fire on (a hostage case,
    /// an order): the answer carries `triggered`, where the broadcasts it caused are listed.
    pub fn create_triggering<T: RequestBody>(
        service: &'static str,
        command: &'static str,
    ) -> Routed {
        creating::<T>(service, command, acknowledged_triggering)
    }

    fn creating<T: RequestBody>(
        service: &'static str,
        command: &'static str,
        answer: fn(Uuid, &Written) -> Acknowledged,
    ) -> Routed {
        post(
            move |State(state): State<Arc<AppState>>,
                  axum::Extension(claims): axum::Extension<Claims>,
                  mut body: Body<T>| async move {
                let id = body.take_id(false)?.unwrap_or_else(Uuid::new_v4);
                let (_, fields) = body.read()?;
                let written: Written =
                    call(&state, service, command, id, &claims, Value::Object(fields)).await?;
                let status = if written.duplicate {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                Ok::<_, ApiError>((status, Json(answer(id, &written))).into_response())
            },
        )
    }

    /// `GET /api/v1/<things>?…`: `list` of `service`, the query as its filters (`limit` a
    /// number, the rest text; the service refuses unknown filters and bad cursors), answered
    /// as one page (see [`events::page`]).
    pub fn list(service: &'static str) -> Routed {
        get(
            move |State(state): State<Arc<AppState>>,
                  axum::Extension(claims): axum::Extension<Claims>,
                  q: Result<
                Query<std::collections::BTreeMap<String, String>>,
                axum::extract::rejection::QueryRejection,
            >| async move {
                let Query(q) = q.map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
                })?;
                let mut filters = Map::new();
                for (k, v) in q {
                    let value = if k == "limit" {
                        Value::from(v.parse::<u64>().map_err(|_| {
                            ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "invalid",
                                "limit: must be a whole number",
                            )
                        })?)
                    } else {
                        Value::String(v)
                    };
                    filters.insert(k, value);
                }
                let list: Value = call(
                    &state,
                    service,
                    "list",
                    Uuid::new_v4(),
                    &claims,
                    Value::Object(filters),
                )
                .await?;
                Ok::<_, ApiError>(Json(list).into_response())
            },
        )
    }

    pub(super) fn path_id(raw: &str) -> Result<Uuid, ApiError> {
        Uuid::parse_str(raw).map_err(|_| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "nothing with that id: the id in the path is a UUID",
            )
        })
    }

    /// `GET /api/v1/<things>/{id}`: `get` of `service` with `{key: id}`.
    pub fn one(service: &'static str, key: &'static str) -> Routed {
        read(service, key, "get")
    }

    /// `GET /api/v1/<things>/{id}/<view>`: query `command` of `service` with `{key: id}`.
    pub fn read(service: &'static str, key: &'static str, command: &'static str) -> Routed {
        get(
            move |State(state): State<Arc<AppState>>,
                  axum::Extension(claims): axum::Extension<Claims>,
                  Path(id): Path<String>| async move {
                let id = path_id(&id)?;
                let found: Value = call(
                    &state,
                    service,
                    command,
                    Uuid::new_v4(),
                    &claims,
                    json!({ key: id }),
                )
                .await?;
                Ok::<_, ApiError>(Json(found).into_response())
            },
        )
    }

    /// `POST /api/v1/<things>/{id}/<action>`: command `command` of `service` with
    /// `{key: id, "change": body}`.
    pub fn transition<T: RequestBody>(
        service: &'static str,
        key: &'static str,
        command: &'static str,
    ) -> Routed {
        post(
            move |State(state): State<Arc<AppState>>,
                  axum::Extension(claims): axum::Extension<Claims>,
                  Path(id): Path<String>,
                  mut body: Body<T>| async move {
                let id = path_id(&id)?;
                let command_id = body.take_id(false)?.unwrap_or_else(Uuid::new_v4);
                let (_, fields) = body.read()?;
                let change = json!({ key: id, "change": Value::Object(fields) });
                let landed: Landed =
                    call(&state, service, command, command_id, &claims, change).await?;
                Ok::<_, ApiError>(match landed {
                    Landed::Written(w) => Json(acknowledged(id, &w)).into_response(),
                    Landed::AtSite(at) => crate::site::pending(id, &at),
                })
            },
        )
    }
}

/// CAP 1.2 over HTTP: one broadcast's alert, an agency's feed, and the public all-agency
/// feed (no token: it holds only live broadcasts to every agency, which every agency gets
/// anyway; nothing internal).
pub mod cap {
    use super::*;
    use events::command::{Actor, Role};

    fn xml(body: String, content_type: &'static str) -> Response {
        ([(axum::http::header::CONTENT_TYPE, content_type)], body).into_response()
    }

    /// `GET /api/v1/broadcasts/{id}/cap`: the broadcast as a CAP 1.2 alert.
    pub async fn alert(
        State(state): State<Arc<AppState>>,
        axum::Extension(claims): axum::Extension<Claims>,
        Path(id): Path<String>,
    ) -> Result<Response, ApiError> {
        let id = resource::path_id(&id)?;
        let body: String = call(
            &state,
            "broadcast",
            "cap",
            Uuid::new_v4(),
            &claims,
            json!({ "broadcast": id }),
        )
        .await?;
        Ok(xml(body, "application/cap+xml"))
    }

    /// Query of the feed.
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct FeedQuery {
        agency: Option<String>,
    }

    /// `GET /api/v1/cap/feed?agency=`: an agency's alerts as an Atom feed of CAP alerts (a
    /// focal point gets their own agency's).
    pub async fn feed(
        State(state): State<Arc<AppState>>,
        axum::Extension(claims): axum::Extension<Claims>,
        q: Result<Query<FeedQuery>, axum::extract::rejection::QueryRejection>,
    ) -> Result<Response, ApiError> {
        let Query(q) =
            q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
        let body: String = call(
            &state,
            "broadcast",
            "feed",
            Uuid::new_v4(),
            &claims,
            json!({ "agency": q.agency }),
        )
        .await?;
        Ok(xml(body, "application/atom+xml"))
    }

    /// `GET /api/v1/cap/public`: the public-safe all-agency feed.
    pub async fn public(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
        let anyone = Actor {
            user: "public".to_owned(),
            role: Role::WallScreen,
            scope: None,
            agency: None,
        };
        let body: String = call_as(
            &state,
            "broadcast",
            "feed",
            Uuid::new_v4(),
            anyone,
            json!({}),
        )
        .await?;
        Ok(xml(body, "application/atom+xml"))
    }
}
