//! HTTP routes of the gateway: board snapshots, login, the log, health, readiness, and the pages.
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

use crate::AppState;
use crate::bodies::{Alive, ErrorBody, ErrorDetail, LoginAnswer, LoginRequest, Readiness};

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

    /// The status, code and message.
    pub fn parts(&self) -> (StatusCode, &'static str, &str) {
        (self.status, self.code, &self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        });
        (self.status, body).into_response()
    }
}

/// Query of `GET /api/v1/boards/{board}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardQuery {
    view: Option<String>,
}

/// `GET /api/v1/boards/{board}`: the board as of the position it has folded, in the view
/// the caller's role gets.
pub async fn board(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<crate::auth::Claims>,
    Path(board): Path<String>,
    q: Result<Query<BoardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
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
    let asked = match q.view.as_deref() {
        None => None,
        Some(v) => Some(View::parse(v).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_view",
                "view must be duty or wall_screen",
            )
        })?),
    };
    let view = crate::auth::board_view(claims.role, asked);
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
    let board = state.hub.snapshot_json(view);
    let board = match crate::auth::board_scope(&claims) {
        Some(cut) => boards::scope_snapshot(&board, cut),
        None => board,
    };
    Ok(Json(board).into_response())
}

fn bad_query(e: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text())
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> impl IntoResponse {
    Json(Alive { status: "alive" })
}

/// `GET /readyz`: NATS connected, the store answering, and the boards caught up with the
/// log's head (within a small lag, since the head moves while we ask); in a centre, every
/// domain service ready (see [`crate::services`]). On a cluster node also a store leader
/// known (see [`crate::cluster`]); this node's replica's lag is reported, not judged.
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
    let cluster = state.cluster.as_ref().map(|view| view.readiness());
    let leader_known = cluster.as_ref().is_none_or(|c| c.leader_known);
    let services = state.services.as_ref().map(|view| view.readiness());
    let services_ready = services.as_ref().is_none_or(|s| s.ready);
    let ready = nats && head.is_some() && caught_up && leader_known && services_ready;
    // At a field site the store is the site's mirror of the centre's events: until it
    // answers (and the boards caught up with it) the site takes writes but shows no board.
    let waiting = (state.site.is_some() && !(head.is_some() && caught_up))
        .then(|| "waiting for the centre's events (the site's mirror of its scope); writes are taken into the site's outbox meanwhile".to_owned());
    let body = Readiness {
        waiting,
        ready,
        nats,
        store: head.is_some(),
        head,
        board_position: position,
        caught_up,
        cluster,
        services,
    };
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
    // A folder's page is its index.html; `/field` becomes `/field/` so the page's relative
    // links and its service worker's scope (`/field/`) are right.
    let index;
    let path = if path.is_empty() {
        "index.html"
    } else if path.ends_with('/') {
        index = format!("{path}index.html");
        &index
    } else {
        if Pages::get(&format!("{path}/index.html")).is_some() {
            return axum::response::Redirect::permanent(&format!("/{path}/")).into_response();
        }
        path
    };
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

/// Errors are JSON everywhere: an error answer made outside the handlers (axum's own
/// rejections — a path parameter that is not UTF-8, a `/ws` request that is not an upgrade,
/// a wrong method — and the request timeout) comes as plain text or empty; it is rewritten
/// as `{"error":{"code","message"}}` with the same status and headers. Found by
/// `ops/chaos fuzz`.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UPGRADE_REQUIRED => "upgrade_required",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    // A client error's text says what was wrong with the request; a server error's might
    // say something about the inside, so it gets only the status.
    let message = if text.is_empty() || status.is_server_error() {
        status.canonical_reason().unwrap_or("refused").to_owned()
    } else {
        text.chars().take(300).collect()
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    // The original headers (`Allow`, `WWW-Authenticate`, the security headers), but the body
    // is a new one.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    *answer.headers_mut() = parts.headers;
    answer
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

/// Enforces a route's [`Access`](crate::auth::Access): 401 without a valid token, 403 for a
/// role the route does not admit. The checked claims go into the request's extensions.
pub async fn require_access(
    State((state, access)): State<(Arc<AppState>, crate::auth::Access)>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::auth::{Access, AuthError};
    if access == Access::Public {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::auth::bearer_token);
    let verdict = match token.map(|t| state.auth.verify(t)) {
        None => Err((AuthError::Missing, None)),
        Some(Err(e)) => Err((e, None)),
        Some(Ok(c)) if !access.admits(c.role) => Err((AuthError::Forbidden, Some(c))),
        Some(Ok(c)) => Ok(c),
    };
    match verdict {
        Ok(claims) => {
            req.extensions_mut().insert(claims);
            next.run(req).await
        }
        Err((e, claims)) => {
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0);
            let method = req.method().as_str();
            if let Some(claims) = &claims {
                // A valid token refused: recorded alone, with the path it asked for.
                state.audit_denied(method, req.uri().path(), error_code(&e), peer, Some(claims));
                return deny(e);
            }
            // No valid token: counted under the route's pattern (ids in paths make no new
            // rows), and answered 429 past the address's rate (see `refusals`).
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map_or("*", |m| m.as_str());
            if let Err(wait) = state.refusals.admit(peer.map(|p| p.ip())) {
                metrics::counter!("vigil_gateway_denied_total", "code" => "rate_limited")
                    .increment(1);
                state.audit_denied(method, route, "rate_limited", peer, None);
                return too_many(wait, "requests without a valid token");
            }
            state.audit_denied(method, route, error_code(&e), peer, None);
            deny(e)
        }
    }
}

fn error_code(e: &crate::auth::AuthError) -> &'static str {
    use crate::auth::AuthError;
    match e {
        AuthError::Missing => "unauthorized",
        AuthError::Invalid => "invalid_token",
        AuthError::Forbidden => "forbidden",
    }
}

/// The refusal for an authentication or authorization failure, recorded in metrics.
pub fn deny(e: crate::auth::AuthError) -> Response {
    use crate::auth::AuthError;
    let code = error_code(&e);
    let status = match e {
        AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
        AuthError::Forbidden => StatusCode::FORBIDDEN,
    };
    metrics::counter!("vigil_gateway_denied_total", "code" => code).increment(1);
    let mut r = ApiError::new(status, code, e.to_string()).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    r
}

/// A JSON body whose rejections are JSON errors: 400 for malformed JSON, 422 for the wrong
/// shape or a key named twice in one object, 413 over the body limit, 415 without a JSON
/// content type. Every JSON body of the API is read through it.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is over {} bytes", crate::MAX_BODY_BYTES),
                )
            })?;
        // One meaning per body: a key named twice is refused before anything reads it
        // (422, like any other well-formed body the API cannot take; the key is named).
        events::codec::unique_keys(&bytes).map_err(|message| {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_body", message)
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.to_string(),
                ),
                _ => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()),
            }
        })
    }
}

type KeyedLimiter<K> = governor::RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
>;

/// Requests per client address and per user, each with its own quota: a burst is allowed,
/// then a steady rate; over it the answer is 429 with `Retry-After`. Memory follows the
/// clients seen recently, not every address or username ever tried (see [`prune`]).
pub struct RateLimits {
    by_addr: KeyedLimiter<std::net::IpAddr>,
    by_user: KeyedLimiter<String>,
    checks: std::sync::atomic::AtomicU64,
}

/// Checks between two prunings of a keyed limiter.
const PRUNE_EVERY: u64 = 1024;

/// Forgets the keys of `limiter` whose quota has refilled, since they are indistinguishable
/// from keys never seen: without it, an attacker cycling addresses or usernames grows the
/// gateway's memory for ever.
fn prune<K: std::hash::Hash + Eq + Clone>(limiter: &KeyedLimiter<K>) {
    limiter.retain_recent();
    limiter.shrink_to_fit();
}

fn quota(per_minute: u32, burst: u32) -> governor::Quota {
    let n = |v: u32| std::num::NonZeroU32::new(v.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
    governor::Quota::per_minute(n(per_minute)).allow_burst(n(burst))
}

impl Default for RateLimits {
    fn default() -> Self {
        Self::login()
    }
}

impl RateLimits {
    /// Login attempts: 10 a minute per client address and per username (a burst of 5), so a
    /// password cannot be guessed quickly from one place or against one account from many.
    pub fn login() -> Self {
        Self::new(quota(10, 5), quota(10, 5))
    }

    /// Field submissions (reports and their changes): `per_user` a minute per user with a
    /// burst of half that (a phone flushing a day of queued reports), and ten times that per
    /// client address (many officers behind one NAT).
    pub fn field(per_user: u32) -> Self {
        Self::new(
            quota(per_user.saturating_mul(10), per_user.saturating_mul(5)),
            quota(per_user, (per_user / 2).max(1)),
        )
    }

    fn new(addr: governor::Quota, user: governor::Quota) -> Self {
        Self {
            by_addr: governor::RateLimiter::keyed(addr),
            by_user: governor::RateLimiter::keyed(user),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// How many client addresses and users it keeps state for.
    pub fn tracked(&self) -> (usize, usize) {
        (self.by_addr.len(), self.by_user.len())
    }

    /// `Ok`, or how long to wait.
    pub fn check(&self, addr: std::net::IpAddr, user: &str) -> Result<(), Duration> {
        use governor::clock::Clock;
        let now = governor::clock::DefaultClock::default().now();
        let wait = |nu: governor::NotUntil<governor::clock::QuantaInstant>| nu.wait_time_from(now);
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            prune(&self.by_addr);
            prune(&self.by_user);
        }
        self.by_addr.check_key(&addr).map_err(wait)?;
        self.by_user.check_key(&user.to_owned()).map_err(wait)?;
        Ok(())
    }
}

/// The 429 answer: JSON error and `Retry-After` in whole seconds.
pub fn too_many(wait: Duration, what: &str) -> Response {
    let secs = wait.as_secs().max(1);
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many {what}; retry in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// `POST /api/v1/auth/login`: a session token for a username and password.
pub async fn login(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    if body.username.len() > 128 || body.password.len() > 1024 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "username or password too long",
        ));
    }
    if let Err(wait) = state.login_limits.check(peer.ip(), &body.username) {
        state.audit_denied(
            "POST",
            "/api/v1/auth/login",
            "rate_limited",
            Some(peer),
            None,
        );
        return Ok(too_many(wait, "login attempts"));
    }
    let auth = state.auth.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    let outcome = tokio::task::spawn_blocking(move || auth.login(&body.username, &body.password))
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "login failed; try again",
            )
        })?
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "login failed; try again",
            )
        })?;
    match outcome {
        Some((token, claims)) => {
            let expires_at = time::OffsetDateTime::from_unix_timestamp(claims.exp as i64)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
            Ok(Json(LoginAnswer {
                token,
                role: claims.role,
                scope: claims.scope,
                agency: claims.agency,
                expires_at,
            })
            .into_response())
        }
        None => {
            metrics::counter!("vigil_gateway_denied_total", "code" => "invalid_credentials")
                .increment(1);
            state.audit_denied(
                "POST",
                "/api/v1/auth/login",
                "invalid_credentials",
                Some(peer),
                None,
            );
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "wrong username or password",
            ))
        }
    }
}

/// Query of `GET /api/v1/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    from: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/v1/events?from=&limit=&cursor=`: a page of the log (duty officers and admins),
/// oldest first, in the shape of every list ([`events::page::Page`]: `items`, `position`
/// the log's head, `next` the cursor of the following page or `null` once the page reached
/// the head; follow the log later with `from=<position + 1>`). `from` (default 1) and
/// `cursor` are two ways to say where to start: give one. Each event is shown as
/// [`events::visibility`] lets the caller see it: whole, redacted (a hostage case without
/// persons, captors or location) or not at all (left out: `items` may hold fewer than
/// `limit` events, and an empty page with a `next` is not the end). An event shown whole
/// only after an audited read is shown whole only once the owning service has recorded the
/// read; when it cannot, the event is shown redacted.
pub async fn events(
    State(state): State<Arc<AppState>>,
    axum::Extension(claims): axum::Extension<crate::auth::Claims>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(bad_query)?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m);
    let limit = events::page::page_limit(q.limit).map_err(|r| invalid(r.message))?;
    let from = match (q.from, q.cursor.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "from, cursor: give one (a cursor already says where the page starts)".into(),
            ));
        }
        (_, Some(c)) => events::page::Cursor::parse(c)
            .map_err(invalid)?
            .key()
            .saturating_add(1),
        (from, None) => from.unwrap_or(1).max(1),
    };
    // Within `limit`, as `page_limit` checked; the store's read takes a u32.
    let count = u32::try_from(limit).unwrap_or(u32::MAX);
    let Ok((page, head)) = state.store.read(from, count).await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            "the event store is not answering; retry shortly",
        ));
    };
    // The last position read, shown or not: the next page starts after it.
    let last = page.last().map(|e| e.position);
    let next = last.filter(|l| *l < head).map(events::page::Cursor::after);
    let actor = claims.actor();
    let mut audited: std::collections::HashMap<events::StreamName, bool> =
        std::collections::HashMap::new();
    let mut shown = Vec::with_capacity(page.len());
    for event in &page {
        let Some((mut event, audit)) = events::visibility::shown(&actor, event) else {
            continue;
        };
        if audit {
            let ok = match audited.get(&event.stream) {
                Some(ok) => *ok,
                None => {
                    let ok =
                        crate::api::audit_restricted_read(&state, &claims, &event.stream).await;
                    audited.insert(event.stream.clone(), ok);
                    ok
                }
            };
            if !ok {
                event = events::visibility::redact(&event);
            }
        }
        shown.push(event);
    }
    Ok(Json(events::page::Page {
        items: shown,
        position: head,
        next,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_login_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = serde_json::from_slice::<LoginRequest>(&bytes);
        }

        #[test]
        fn login_bodies_with_unknown_fields_are_refused(u in "\\PC{0,40}", p in "\\PC{0,40}", extra in proptest::option::of("[a-z]{1,6}")) {
            let mut v = serde_json::json!({"username": u, "password": p});
            if let Some(e) = &extra { v[e.as_str()] = 1.into(); }
            let parsed = serde_json::from_value::<LoginRequest>(v);
            let unknown = extra.as_deref().is_some_and(|e| e != "username" && e != "password");
            let clobbered = extra.is_some() && !unknown; // a field replaced by a number
            proptest::prop_assert_eq!(parsed.is_ok(), !unknown && !clobbered);
        }
    }

    /// The pages are ES modules with no build step: every module a page imports must be
    /// embedded, and the field page's service worker must keep every one of its modules, or
    /// the page opens without a network but breaks (`SHELL` in `field/sw.js`).
    #[test]
    fn every_imported_module_is_embedded_and_in_the_field_shell() {
        let text = |path: &str| {
            let file = Pages::get(path).unwrap_or_else(|| panic!("{path} is not embedded"));
            String::from_utf8(file.data.into_owned()).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let sw = text("field/sw.js");
        let mut modules = 0;
        for path in Pages::iter() {
            if !path.ends_with(".js") || path.starts_with("vendor/") {
                continue;
            }
            modules += 1;
            let source = text(&path);
            let imports = source.lines().map(str::trim_start).filter_map(|l| {
                let statement = l.starts_with("import ") || l.starts_with("} from ");
                let spec = l.rsplit_once(" from \"")?.1.strip_suffix("\";")?;
                statement.then_some(spec)
            });
            for spec in imports {
                let mut parts: Vec<&str> = path.split('/').collect();
                parts.pop();
                for part in spec.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        _ => parts.push(part),
                    }
                }
                let target = parts.join("/");
                assert!(
                    Pages::get(&target).is_some(),
                    "{path} imports {spec}, and {target} is not embedded"
                );
            }
            if let Some(name) = path.strip_prefix("field/")
                && name != "sw.js"
            {
                assert!(
                    sw.contains(&format!("\"./{name}\"")),
                    "field/sw.js SHELL lacks ./{name}: the field page would break offline"
                );
            }
        }
        assert!(modules > 10, "only {modules} page modules found");
    }

    /// Usernames and addresses tried once and never again are forgotten once their quota has
    /// refilled (here within microseconds), so guessing from many addresses or against many
    /// names does not grow the gateway's memory without bound.
    #[test]
    fn limiters_forget_clients_whose_quota_has_refilled() {
        let limits = RateLimits::field(6_000_000);
        for i in 0..4_000u32 {
            let addr = std::net::IpAddr::from(i.to_be_bytes());
            limits.check(addr, &format!("guess-{i}")).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        let loopback = std::net::IpAddr::from([127, 0, 0, 1]);
        for _ in 0..PRUNE_EVERY {
            limits.check(loopback, "duty").unwrap();
        }
        let (addrs, users) = limits.tracked();
        assert!(
            addrs < 100 && users < 100,
            "still tracked: {addrs} addresses, {users} users"
        );
    }
}
