//! HTTP routes of the gateway: board snapshots, health, readiness, metrics, and the pages.
//!
//! Errors are JSON `{"error":{"code","message"}}` with the right status, never internals.
//! Pages are embedded in the binary (no CDN, no files to deploy) and served with a strict
//! Content-Security-Policy (no inline script).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use boards::View;
use rust_embed::Embed;
use serde::Deserialize;
use serde_json::json;

use crate::AppState;

/// The wall screen and other pages, from `dashboards/web/public/`, inside the binary.
#[derive(Embed)]
#[folder = "../../dashboards/web/public/"]
struct Pages;

/// A refusal with a stable code and a message that says what to do next.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        (self.status, body).into_response()
    }
}

/// Query of `GET /api/v1/boards/{board}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    view: Option<String>,
}

/// `GET /api/v1/boards/{board}`: the board as of the position it has folded.
pub async fn board(
    State(state): State<Arc<AppState>>,
    Path(board): Path<String>,
    Query(q): Query<BoardQuery>,
) -> Result<Response, ApiError> {
    if !boards::BOARDS.contains(&board.as_str()) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_board",
            format!(
                "no board named {:?}; boards: {}",
                board.chars().take(40).collect::<String>(),
                boards::BOARDS.join(", ")
            ),
        ));
    }
    let view = match q.view.as_deref() {
        None => View::WallScreen,
        Some(v) => View::parse(v).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_view",
                "view must be duty or wall_screen",
            )
        })?,
    };
    if !state.hub.caught_up() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "catching_up",
            format!(
                "the board is still folding the log (at position {}); retry in a few seconds",
                state.hub.position()
            ),
        ));
    }
    Ok(Json(state.hub.snapshot_json(view)).into_response())
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "alive"}))
}

/// `GET /readyz`: NATS connected, the store answering, and the boards caught up with the
/// log's head (within a small lag, since the head moves while we ask).
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    const MAX_LAG: u64 = 1000;
    let nats = state.store.nats().connection_state() == async_nats::connection::State::Connected;
    let head = tokio::time::timeout(Duration::from_secs(2), state.store.read(u64::MAX, 1))
        .await
        .ok()
        .and_then(Result::ok)
        .map(|(_, head)| head);
    let position = state.hub.position();
    let caught_up =
        state.hub.caught_up() && head.is_some_and(|h| h.saturating_sub(position) <= MAX_LAG);
    let ready = nats && head.is_some() && caught_up;
    let body = json!({
        "ready": ready,
        "nats": nats,
        "store": head.is_some(),
        "head": head,
        "board_position": position,
        "caught_up": caught_up,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Pages: `/` is the wall screen; other paths are files under `public/`.
pub async fn page(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Pages::get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("nothing at /{path}"),
        )
        .into_response();
    };
    let mime = file.metadata.mimetype();
    let mut response = (StatusCode::OK, file.data).into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(mime) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    // Vendored libraries never change for a given binary; the app files may on upgrade.
    let cache = if path.starts_with("vendor/") {
        "public, max-age=86400"
    } else {
        "no-cache"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// Security headers on every response.
pub async fn security_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
