//! The gateway: where people meet Vigil. It folds the log into live boards and serves them
//! over HTTP and WebSocket, with the wall screen page.
//!
//! # Layout
//! - [`hub`]: the board fold and its fan-out (snapshot, ring of deltas, bounded per-client
//!   queues, resync of slow clients).
//! - [`ws`]: the WebSocket board protocol at `/ws`.
//! - [`http`]: board snapshots, login, the log, `/healthz`, `/readyz`, the embedded pages,
//!   JSON errors and security headers. `/metrics` is not here: it is served on the metrics
//!   address only (`--metrics`, loopback by default), never on the public port, so every
//!   path of the public port is in [`ROUTES`] or is a page.
//! - [`api`]: the domain API (incidents, security levels), sent as commands to the services
//!   that own them, and `/openapi.json`.
//! - [`refusals`]: the audit of refused requests, counted per address and route for callers
//!   without a valid token so that they cannot flood the log.
//! - [`auth`]: users, tokens and the one authorization policy; [`ROUTES`] is the table every
//!   route is built from, with who may use it, so no route can exist without a policy.
//! - [`server`]: the HTTP server under the router: header and keep-alive timeouts, the
//!   connection caps ([`ConnLimits`]), graceful shutdown.
//!
//! The gateway never writes to the log directly; it reads it through the catch-up
//! subscription, so any number of gateways can run side by side and agree.

pub mod api;
pub mod auth;
pub mod http;
pub mod hub;
pub mod refusals;
pub mod server;
pub mod ws;

pub use server::ConnLimits;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use axum::Router;
use axum::routing::get;
use runtime::{CatchUp, CatchUpConfig, StoreClient};
use tokio_util::sync::CancellationToken;

use crate::api::resource;
use crate::auth::{Access, Auth, Role};
use crate::hub::Hub;
use events::command::policy;

/// Shared by every request.
pub struct AppState {
    /// The boards.
    pub hub: Arc<Hub>,
    /// For readiness: is the store answering, and where is the head.
    pub store: StoreClient,
    /// Fired on shutdown so WebSocket clients are told to reconnect elsewhere.
    pub shutdown: CancellationToken,
    /// Users, tokens, policy.
    pub auth: Arc<Auth>,
    /// Login attempts per client address and per username.
    pub login_limits: http::RateLimits,
    /// Field submissions (reports and their changes) per client address and per user.
    pub field_limits: http::RateLimits,
    /// Origins allowed to open the WebSocket: this gateway's own, plus configured ones.
    pub allowed_origins: Vec<String>,
    /// The audit of refusals: counted for callers without a valid token, alone for others.
    pub refusals: Arc<refusals::Refusals>,
    /// Open WebSockets per client address (see [`ConnLimits::max_ws_per_address`]).
    pub ws_per_address: server::Slots<std::net::IpAddr>,
    /// Open WebSockets per token id (see [`ConnLimits::max_ws_per_token`]).
    pub ws_per_token: server::Slots<String>,
    /// See [`ConnLimits::ws_send_timeout`].
    pub ws_send_timeout: std::time::Duration,
}

impl AppState {
    /// Reports a refused request to the audit service, off the request's path: the answer
    /// to the client never waits for it. A refusal of a valid token (`who`) is recorded
    /// alone; one of a caller without a valid token is counted per address, `route` and code
    /// and recorded with its count at the end of the window (see [`refusals`]).
    pub fn audit_denied(
        &self,
        method: &str,
        route: &str,
        code: &str,
        peer: Option<SocketAddr>,
        who: Option<&auth::Claims>,
    ) {
        let Some(who) = who else {
            self.refusals
                .count(peer.map(|p| p.ip()), method, route, code);
            return;
        };
        self.refusals.record_alone(events::audit::AccessDenied {
            id: uuid::Uuid::new_v4(),
            at: time::OffsetDateTime::now_utc(),
            actor: Some(who.sub.clone()),
            role: Some(who.role.as_str().to_owned()),
            peer: peer.map(|p| p.ip().to_string()),
            method: method.to_owned(),
            path: route.to_owned(),
            code: code.to_owned(),
            count: 1,
            until: None,
        });
    }
}

/// One HTTP route: its method, path and who may use it. The router is built from [`ROUTES`]
/// and the authorization matrix test walks it, so a new route without a policy row fails.
#[derive(Debug, Clone, Copy)]
pub struct RouteSpec {
    /// HTTP method.
    pub method: &'static str,
    /// Path pattern (axum syntax).
    pub path: &'static str,
    /// Who may use it. The WebSocket is `Public` at the HTTP level: browsers cannot send
    /// headers on it, so its token is checked in the protocol (see `ws`), and its Origin here.
    pub access: Access,
}

/// Duty officers and admins read the raw log.
const LOG_READERS: &[Role] = &[Role::DutyOfficer, Role::Admin];

/// The route table: the router is built from it and the authorization matrix walks it.
macro_rules! routes {
    ($($method:literal $path:literal $access:expr => $handler:expr;)+) => {
        /// Every API route.
        pub const ROUTES: &[RouteSpec] = &[$(RouteSpec { method: $method, path: $path, access: $access },)+];

        fn handler(spec: &RouteSpec) -> axum::routing::MethodRouter<Arc<AppState>> {
            use axum::routing::{get, post, put};
            match (spec.method, spec.path) {
                $(($method, $path) => $handler,)+
                // Every (method, path) above has its arm; the table and the match are one.
                _ => get(http::page),
            }
        }
    };
}

routes! {
    "POST" "/api/v1/auth/login" Access::Public => post(http::login);
    "GET" "/api/v1/boards/{board}" Access::AnyRole => get(http::board);
    "GET" "/api/v1/events" Access::Roles(LOG_READERS) => get(http::events);
    "POST" "/api/v1/incidents" Access::Roles(policy::INCIDENT_REPORT) => post(api::report);
    "GET" "/api/v1/incidents" Access::Roles(policy::INCIDENT_READ) => get(api::incidents);
    "GET" "/api/v1/incidents/{id}" Access::Roles(policy::INCIDENT_READ) => get(api::incident);
    "POST" "/api/v1/incidents/{id}/updates" Access::Roles(policy::INCIDENT_UPDATE) => post(api::update);
    "POST" "/api/v1/incidents/{id}/verify" Access::Roles(policy::INCIDENT_VERIFY) => post(api::verify);
    "POST" "/api/v1/incidents/{id}/escalate" Access::Roles(policy::INCIDENT_ESCALATE) => post(api::escalate);
    "POST" "/api/v1/incidents/{id}/close" Access::Roles(policy::INCIDENT_CLOSE) => post(api::close);
    "PUT" "/api/v1/areas/{area}/level" Access::Roles(policy::LEVEL_SET) => put(api::set_level);
    "GET" "/api/v1/areas/{area}/level" Access::Roles(policy::LEVEL_READ) => get(api::level_history);
    "POST" "/api/v1/hostage-cases" Access::Roles(policy::HOSTAGE_MANAGE) => resource::create_triggering("hostage", "open");
    "GET" "/api/v1/hostage-cases" Access::Roles(policy::HOSTAGE_SUMMARY) => resource::list("hostage");
    "GET" "/api/v1/hostage-cases/{id}" Access::Roles(policy::HOSTAGE_DETAILS) => resource::one("hostage", "case");
    "POST" "/api/v1/hostage-cases/{id}/proof-of-life" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "proof_of_life");
    "POST" "/api/v1/hostage-cases/{id}/proof-of-life-many" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "proof_of_life_many");
    "POST" "/api/v1/hostage-cases/{id}/negotiation" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "negotiation");
    "POST" "/api/v1/hostage-cases/{id}/release" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "release");
    "POST" "/api/v1/hostage-cases/{id}/release-many" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "release_many");
    "POST" "/api/v1/hostage-cases/{id}/deceased" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "deceased");
    "POST" "/api/v1/hostage-cases/{id}/close" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition("hostage", "case", "close");
    "POST" "/api/v1/surges" Access::Roles(policy::SURGE_REQUEST) => resource::create("surge", "request");
    "GET" "/api/v1/surges" Access::Roles(policy::SURGE_READ) => resource::list("surge");
    "GET" "/api/v1/surges/{id}" Access::Roles(policy::SURGE_READ) => resource::one("surge", "surge");
    "POST" "/api/v1/surges/{id}/approve" Access::Roles(policy::SURGE_DECIDE) => resource::transition("surge", "surge", "approve");
    "POST" "/api/v1/surges/{id}/reject" Access::Roles(policy::SURGE_DECIDE) => resource::transition("surge", "surge", "reject");
    "POST" "/api/v1/surges/{id}/assign" Access::Roles(policy::SURGE_RUN) => resource::transition("surge", "surge", "assign");
    "POST" "/api/v1/surges/{id}/deploy" Access::Roles(policy::SURGE_RUN) => resource::transition("surge", "surge", "deploy");
    "POST" "/api/v1/surges/{id}/complete" Access::Roles(policy::SURGE_RUN) => resource::transition("surge", "surge", "complete");
    "POST" "/api/v1/surges/{id}/cancel" Access::Roles(policy::SURGE_DECIDE) => resource::transition("surge", "surge", "cancel");
    "POST" "/api/v1/orders" Access::Roles(policy::ORDER_ISSUE) => resource::create_triggering("relocation", "order");
    "GET" "/api/v1/orders" Access::Roles(policy::ORDER_READ) => resource::list("relocation");
    "GET" "/api/v1/orders/{id}" Access::Roles(policy::ORDER_READ) => resource::one("relocation", "order");
    "POST" "/api/v1/orders/{id}/mark" Access::Roles(policy::ORDER_MARK) => resource::transition("relocation", "order", "mark");
    "POST" "/api/v1/orders/{id}/mark-many" Access::Roles(policy::ORDER_MARK) => resource::transition("relocation", "order", "mark_many");
    "POST" "/api/v1/orders/{id}/complete" Access::Roles(policy::ORDER_ISSUE) => resource::transition("relocation", "order", "complete");
    "POST" "/api/v1/orders/{id}/rescind" Access::Roles(policy::ORDER_ISSUE) => resource::transition("relocation", "order", "rescind");
    "POST" "/api/v1/clearances" Access::Roles(policy::CLEARANCE_REQUEST) => resource::create("clearances", "request");
    "GET" "/api/v1/clearances" Access::Roles(policy::CLEARANCE_READ) => resource::list("clearances");
    "GET" "/api/v1/clearances/{id}" Access::Roles(policy::CLEARANCE_READ) => resource::one("clearances", "clearance");
    "POST" "/api/v1/clearances/{id}/approve" Access::Roles(policy::CLEARANCE_DECIDE) => resource::transition("clearances", "clearance", "approve");
    "POST" "/api/v1/clearances/{id}/refuse" Access::Roles(policy::CLEARANCE_DECIDE) => resource::transition("clearances", "clearance", "refuse");
    "POST" "/api/v1/clearances/{id}/arrive" Access::Roles(policy::CLEARANCE_MOVEMENT) => resource::transition("clearances", "clearance", "arrive");
    "POST" "/api/v1/clearances/{id}/depart" Access::Roles(policy::CLEARANCE_MOVEMENT) => resource::transition("clearances", "clearance", "depart");
    "POST" "/api/v1/broadcasts" Access::Roles(policy::BROADCAST_ISSUE) => resource::create("broadcast", "issue");
    "GET" "/api/v1/broadcasts" Access::Roles(policy::BROADCAST_READ) => resource::list("broadcast");
    "GET" "/api/v1/broadcasts/{id}" Access::Roles(policy::BROADCAST_READ) => resource::one("broadcast", "broadcast");
    "GET" "/api/v1/broadcasts/{id}/chain" Access::Roles(policy::BROADCAST_READ) => resource::read("broadcast", "broadcast", "chain");
    "GET" "/api/v1/broadcasts/{id}/cap" Access::Roles(policy::BROADCAST_READ) => get(api::cap::alert);
    "POST" "/api/v1/broadcasts/{id}/approve" Access::Roles(policy::BROADCAST_APPROVE) => resource::transition("broadcast", "broadcast", "approve");
    "POST" "/api/v1/broadcasts/{id}/ack" Access::Roles(policy::BROADCAST_ACK) => resource::transition("broadcast", "broadcast", "ack");
    "POST" "/api/v1/broadcasts/{id}/cancel" Access::Roles(policy::BROADCAST_ISSUE) => resource::transition("broadcast", "broadcast", "cancel");
    "GET" "/api/v1/cap/feed" Access::Roles(policy::BROADCAST_READ) => get(api::cap::feed);
    "GET" "/api/v1/cap/public" Access::Public => get(api::cap::public);
    "GET" "/openapi.json" Access::Public => get(api::openapi);
    "GET" "/ws" Access::Public => get(ws::upgrade);
    "GET" "/healthz" Access::Public => get(http::healthz);
    "GET" "/readyz" Access::Public => get(http::readyz);
}

/// The list routes: each answers one page in the one shape of every list
/// ([`events::page::Page`]: `items`, `position`, `next`), paged with `?limit=` and
/// `?cursor=`. The OpenAPI test checks that these, and only these, are documented with the
/// shared `Page` schema; the list tests walk them.
pub const LIST_ROUTES: &[&str] = &[
    "/api/v1/events",
    "/api/v1/incidents",
    "/api/v1/hostage-cases",
    "/api/v1/surges",
    "/api/v1/orders",
    "/api/v1/clearances",
    "/api/v1/broadcasts",
];

/// Field submissions a user may make per minute (reports and their changes); ten times that
/// per client address. `VIGIL_FIELD_REPORTS_PER_MINUTE` overrides the default of 60 (a load
/// test raises it).
pub fn field_reports_per_minute() -> u32 {
    std::env::var("VIGIL_FIELD_REPORTS_PER_MINUTE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(60)
}

/// Largest HTTP request body the gateway reads (the API's bodies are small JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// A request that takes longer is answered 408 (the WebSocket, once upgraded, is not
/// a request any more and is not cut).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The router, for `serve` and for tests.
pub fn router(state: Arc<AppState>) -> Router {
    let mut app = Router::new();
    for spec in ROUTES {
        let access = spec.access;
        let guard =
            axum::middleware::from_fn_with_state((state.clone(), access), http::require_access);
        app = app.route(spec.path, handler(spec).route_layer(guard));
    }
    app.fallback(get(http::page))
        .with_state(state)
        .layer(axum::middleware::from_fn(http::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outermost, so the timeout's answer is JSON too.
        .layer(axum::middleware::from_fn(http::json_errors))
}

/// Reads the log into the hub, then follows it, until `shutdown`.
pub async fn follow(hub: Arc<Hub>, client: Client, shutdown: CancellationToken) {
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    // The head now: the fold builds no deltas until it gets there (nobody can be behind).
    let head = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = store.read(u64::MAX, 1) => match r {
                Ok((_, head)) => break head,
                Err(e) => {
                    tracing::warn!(error = %e, "gateway waiting for the store");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    tracing::info!(head, "folding the log into the boards");
    hub.set_live_from(head);
    let mut sub = CatchUp::start(
        client,
        CatchUpConfig::new("gateway", hub.position()),
        shutdown.clone(),
    );
    // The fold is CPU work under the hub's write lock: in small slices, so the lock is never
    // held long, and (on a multi-threaded runtime) marked as blocking, so the runtime moves
    // HTTP requests and the services' answers to another worker meanwhile. One 1,024-event
    // fold on a worker stalled everything behind it for hundreds of ms (ops/bench intake).
    const SLICE: usize = 128;
    let multi_thread = tokio::runtime::Handle::current().runtime_flavor()
        == tokio::runtime::RuntimeFlavor::MultiThread;
    let mut buf = Vec::with_capacity(SLICE);
    while sub.recv_many(&mut buf, SLICE).await > 0 {
        if multi_thread {
            tokio::task::block_in_place(|| hub.apply(&buf));
        } else {
            hub.apply(&buf);
        }
        buf.clear();
    }
}

/// The origins a browser page served by a gateway at `addr` sends: the WebSocket accepts
/// these (plus any configured), and refuses other sites (cross-site WebSocket hijacking).
pub fn default_origins(addr: SocketAddr) -> Vec<String> {
    let mut v = vec![format!("http://{addr}")];
    if addr.ip().is_loopback() {
        v.push(format!("http://localhost:{}", addr.port()));
        v.push(format!("http://127.0.0.1:{}", addr.port()));
    }
    v
}

/// Binds `addr` and serves until `shutdown`, with the connection limits of the environment
/// (see [`ConnLimits::from_env`]); returns the bound address and the server task.
pub async fn start(
    addr: SocketAddr,
    client: Client,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let limits = ConnLimits::from_env()?;
    start_with_limits(addr, client, auth, shutdown, limits).await
}

/// [`start`] with the given connection limits.
pub async fn start_with_limits(
    addr: SocketAddr,
    client: Client,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
    limits: ConnLimits,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let listener = server::listen(addr).map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with --http")
    })?;
    let bound = listener.local_addr()?;
    let hub = Arc::new(Hub::new());
    let refusals = Arc::new(refusals::Refusals::new(client.clone()));
    let counting = tokio::spawn(refusals.clone().run(shutdown.clone()));
    let state = Arc::new(AppState {
        hub: hub.clone(),
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        shutdown: shutdown.clone(),
        allowed_origins: default_origins(bound)
            .into_iter()
            .chain(auth.allowed_origins.iter().cloned())
            .collect(),
        auth,
        login_limits: http::RateLimits::login(),
        field_limits: http::RateLimits::field(field_reports_per_minute()),
        refusals: refusals.clone(),
        ws_per_address: server::Slots::new(limits.max_ws_per_address),
        ws_per_token: server::Slots::new(limits.max_ws_per_token),
        ws_send_timeout: limits.ws_send_timeout,
    });
    let follower = tokio::spawn(follow(hub.clone(), client, shutdown.clone()));
    let app = router(state);
    tracing::info!(
        %bound,
        header_timeout_s = limits.header_timeout.as_secs_f64(),
        keepalive_s = limits.keepalive_timeout.as_secs_f64(),
        max_connections = limits.max_connections,
        max_per_address = limits.max_connections_per_address,
        max_ws_per_address = limits.max_ws_per_address,
        max_ws_per_token = limits.max_ws_per_token,
        "gateway listening"
    );
    let task = tokio::spawn(async move {
        server::serve(listener, app, limits, shutdown).await?;
        follower.abort();
        // After the last request: the refusals counted in the window that did not end.
        let _ = counting.await;
        refusals.flush().await;
        Ok(())
    });
    Ok((bound, task))
}
