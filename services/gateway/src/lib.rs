//! The gateway: where people meet Vigil. It folds the log into live boards and serves them
//! over HTTP and WebSocket, with the wall screen page.
//!
//! # Layout
//! - [`hub`]: the board fold, on its own thread, and its fan-out (snapshot, ring of deltas,
//!   bounded per-client queues, merged deltas for slow clients, resync of lost ones).
//! - [`ws`]: the WebSocket board protocol at `/ws`.
//! - [`http`]: board snapshots, login, the log, `/healthz`, `/readyz`, the embedded pages,
//!   JSON errors and security headers. `/metrics` is not here: it is served on the metrics
//!   address only (`--metrics`, loopback by default), never on the public port, so every
//!   path of the public port is in [`ROUTES`] or is a page.
//! - [`api`]: the domain API (incidents, security levels, crisis resources, broadcasts), sent
//!   as commands to the services that own them.
//! - [`bodies`]: every request and answer body as a Rust type; a request body is read as its
//!   type at the edge, with the refusal its service gives.
//! - [`openapi`]: the OpenAPI 3.1 document at `/openapi.json`, generated from [`ROUTES`] and
//!   the body types (shown by the Swagger UI page at `/docs/`).
//! - [`refusals`]: the audit of refused requests, counted per address and route for callers
//!   without a valid token so that they cannot flood the log.
//! - [`auth`]: users, tokens and the one authorization policy; [`ROUTES`] is the table every
//!   route is built from, with who may use it, so no route can exist without a policy.
//! - [`cluster`]: on a node of several, the store leader and this node's replica as the
//!   replicas report them, for `/readyz` and `/metrics`.
//! - [`site`]: the gateway at a field site (`vigil site`): writes answered 202 "pending at
//!   site" from the site's outbox, and the site's link and outbox at `/api/v1/site/state`.
//! - [`services`]: in a centre, the domain services as their status answers say (ready, or
//!   still loading their registers), for `/readyz`.
//! - [`server`]: the HTTP server under the router: header and keep-alive timeouts, the
//!   connection caps ([`ConnLimits`]), graceful shutdown.
//!
//! The gateway never writes to the log directly; it reads it through the catch-up
//! subscription, so any number of gateways can run side by side and agree.

pub mod api;
pub mod auth;
pub mod bodies;
pub mod cluster;
pub mod http;
pub mod hub;
pub mod openapi;
pub mod refusals;
pub mod server;
pub mod services;
pub mod site;
pub mod ws;

pub use server::{ConnLimits, send_buffer_bytes};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use axum::Router;
use axum::routing::get;
use boards::Situation;
use runtime::checkpoint::{Codec, Ignored, Schedule};
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
    /// On a node of several: the cluster as this gateway sees it (`/readyz`).
    pub cluster: Option<Arc<cluster::ClusterView>>,
    /// At a field site (`vigil site`): the site's name. Its writes are answered 202 "pending
    /// at site" by the site's outbox, `GET /api/v1/site/state` answers, and `/readyz` says
    /// what it waits for.
    pub site: Option<String>,
    /// In a centre: its domain services as this gateway sees them (`/readyz`).
    pub services: Option<Arc<services::ServicesView>>,
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

/// One HTTP route: its method, path and who may use it. The router is built from [`ROUTES`],
/// the authorization matrix test walks it, and the OpenAPI document is generated from it,
/// so a new route without a policy row or a documented body fails.
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

/// The route table: the router is built from it, the authorization matrix walks it, and the
/// OpenAPI document is generated from it (each route's [`openapi::Doc`] names its body and
/// answer types).
macro_rules! routes {
    ($($method:literal $path:literal $access:expr => $handler:expr, $doc:expr;)+) => {
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

        /// The documentation of route `spec` (see [`openapi`]).
        pub(crate) fn doc(spec: &RouteSpec) -> openapi::Doc {
            use crate::openapi::{ClientId, Doc};
            use utoipa::openapi::schema::Type;
            match (spec.method, spec.path) {
                $(($method, $path) => $doc,)+
                _ => Doc::new("A page"),
            }
        }
    };
}

use crate::bodies::{
    Acknowledged, Alive, Approval, Decision, ErrorBody, LevelSet, LoginAnswer, LoginRequest,
    NoFields, PendingAtSite, Readiness, ReportIncident, SetLevel, Verification,
};

/// The 202 of the writes a field site forwards.
const AT_SITE: &str = "At a field site: accepted into its outbox (on its disk), pending; forwarded to the centre with the same id when its link is up";
use events::domain::broadcast::{CancelBroadcast, IssueBroadcast};
use events::domain::hostage::{ProofOfLifeMany, ReleaseMany};
use events::domain::relocation::{MarkPerson, MarkPersons};
use events::domain::surge::AssignOfficer;
use events::domain::{
    clearance as cl, hostage as ho, incident as inc, relocation as rel, surge as su,
};

routes! {
    "POST" "/api/v1/auth/login" Access::Public => post(http::login),
        Doc::new("Log in: a session token for one shift").body::<LoginRequest>(ClientId::None).answers::<LoginAnswer>(200, "A token");
    "GET" "/api/v1/boards/{board}" Access::AnyRole => get(http::board),
        Doc::read("A board's snapshot, in the caller's view (boards: see dashboards/boards/MODEL.md)").query("view", "duty or wall_screen (a role gets at most its own view)", Type::String);
    "GET" "/api/v1/events" Access::Roles(LOG_READERS) => get(http::events),
        Doc::list::<events::RecordedEvent>("A page of the log (duty officers, admins), oldest first; next is null once the page reached the head (follow the log later with from=<position + 1>)").query("from", "The first position (default 1); give from or cursor", Type::Integer);
    "POST" "/api/v1/incidents" Access::Roles(policy::INCIDENT_REPORT) => post(api::report),
        Doc::new("A flash report. 201 the first time; 200 with the same body on a resend of the same id; 409 if the id comes with other content")
            .body::<ReportIncident>(ClientId::Required)
            .answers::<Acknowledged>(201, "Stored, durable on disk")
            .answers::<Acknowledged>(200, "Already stored (a resend): the original answer")
            .answers::<PendingAtSite>(202, AT_SITE);
    "GET" "/api/v1/incidents" Access::Roles(policy::INCIDENT_READ) => get(api::incidents),
        Doc::list::<events::domain::incident::Incident>("Incidents, newest first (field officers: their country)")
            .query("country", "Only this country", Type::String)
            .query("status", "reported, verified, closed, or open", Type::String)
            .query("severity", "At least this severity", Type::Integer)
            .query("since", "Reported at or after this time (RFC 3339)", Type::String);
    "GET" "/api/v1/incidents/{id}" Access::Roles(policy::INCIDENT_READ) => get(api::incident),
        Doc::read("One incident, always current");
    "POST" "/api/v1/incidents/{id}/updates" Access::Roles(policy::INCIDENT_UPDATE) => post(api::update),
        Doc::command::<inc::IncidentUpdated>("Add or correct details, or add a note").answers::<PendingAtSite>(202, AT_SITE);
    "POST" "/api/v1/incidents/{id}/verify" Access::Roles(policy::INCIDENT_VERIFY) => post(api::verify),
        Doc::command::<Verification>("Verify the report (duty officers)");
    "POST" "/api/v1/incidents/{id}/escalate" Access::Roles(policy::INCIDENT_ESCALATE) => post(api::escalate),
        Doc::command::<inc::IncidentEscalated>("Escalate into a hostage case, surge or relocation order");
    "POST" "/api/v1/incidents/{id}/close" Access::Roles(policy::INCIDENT_CLOSE) => post(api::close),
        Doc::command::<inc::IncidentClosed>("Close the incident");
    "PUT" "/api/v1/areas/{area}/level" Access::Roles(policy::LEVEL_SET) => put(api::set_level),
        Doc::new("Set an area's security level (duty officers)").body::<SetLevel>(ClientId::Optional).answers::<LevelSet>(200, "Stored");
    "GET" "/api/v1/areas/{area}/level" Access::Roles(policy::LEVEL_READ) => get(api::level_history),
        Doc::read("The level now and its history");
    "POST" "/api/v1/hostage-cases" Access::Roles(policy::HOSTAGE_MANAGE) => resource::create_triggering::<ho::HostageCaseOpened>("hostage", "open"),
        Doc::create::<ho::HostageCaseOpened>("Open a hostage case (crisis managers), from a reported incident");
    "GET" "/api/v1/hostage-cases" Access::Roles(policy::HOSTAGE_SUMMARY) => resource::list("hostage"),
        Doc::list::<events::domain::hostage::CaseSummary>("Hostage cases without names (duty officers, crisis managers, admins), newest opening first");
    "GET" "/api/v1/hostage-cases/{id}" Access::Roles(policy::HOSTAGE_DETAILS) => resource::one("hostage", "case"),
        Doc::read("Hostage case details (crisis managers only; every read is recorded in the audit log first)");
    "POST" "/api/v1/hostage-cases/{id}/proof-of-life" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ho::ProofOfLifeReceived>("hostage", "case", "proof_of_life"),
        Doc::command::<ho::ProofOfLifeReceived>("A proof of life of one person");
    "POST" "/api/v1/hostage-cases/{id}/proof-of-life-many" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ProofOfLifeMany>("hostage", "case", "proof_of_life_many"),
        Doc::command::<ProofOfLifeMany>("One proof of life for several persons (all or nothing)");
    "POST" "/api/v1/hostage-cases/{id}/negotiation" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ho::NegotiationContactLogged>("hostage", "case", "negotiation"),
        Doc::command::<ho::NegotiationContactLogged>("A negotiation contact");
    "POST" "/api/v1/hostage-cases/{id}/release" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ho::HostageReleased>("hostage", "case", "release"),
        Doc::command::<ho::HostageReleased>("A person released");
    "POST" "/api/v1/hostage-cases/{id}/release-many" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ReleaseMany>("hostage", "case", "release_many"),
        Doc::command::<ReleaseMany>("Several persons released together (all or nothing)");
    "POST" "/api/v1/hostage-cases/{id}/deceased" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ho::HostageDeceased>("hostage", "case", "deceased"),
        Doc::command::<ho::HostageDeceased>("A person deceased");
    "POST" "/api/v1/hostage-cases/{id}/close" Access::Roles(policy::HOSTAGE_MANAGE) => resource::transition::<ho::HostageCaseClosed>("hostage", "case", "close"),
        Doc::command::<ho::HostageCaseClosed>("Close the case, accounting for every person");
    "POST" "/api/v1/surges" Access::Roles(policy::SURGE_REQUEST) => resource::create::<su::SurgeRequested>("surge", "request"),
        Doc::create::<su::SurgeRequested>("Request a surge deployment");
    "GET" "/api/v1/surges" Access::Roles(policy::SURGE_READ) => resource::list("surge"),
        Doc::list::<events::domain::surge::SurgeView>("Surge deployments, newest first (query: status, country, …)");
    "GET" "/api/v1/surges/{id}" Access::Roles(policy::SURGE_READ) => resource::one("surge", "surge"),
        Doc::read("One surge, always current");
    "POST" "/api/v1/surges/{id}/approve" Access::Roles(policy::SURGE_DECIDE) => resource::transition::<Approval>("surge", "surge", "approve"),
        Doc::command::<Approval>("Approve the surge (crisis managers)");
    "POST" "/api/v1/surges/{id}/reject" Access::Roles(policy::SURGE_DECIDE) => resource::transition::<Decision>("surge", "surge", "reject"),
        Doc::command::<Decision>("Reject the surge (crisis managers)");
    "POST" "/api/v1/surges/{id}/assign" Access::Roles(policy::SURGE_RUN) => resource::transition::<AssignOfficer>("surge", "surge", "assign"),
        Doc::command::<AssignOfficer>("Assign an officer");
    "POST" "/api/v1/surges/{id}/deploy" Access::Roles(policy::SURGE_RUN) => resource::transition::<su::SurgeDeployed>("surge", "surge", "deploy"),
        Doc::command::<su::SurgeDeployed>("The officers are deployed");
    "POST" "/api/v1/surges/{id}/complete" Access::Roles(policy::SURGE_RUN) => resource::transition::<su::SurgeCompleted>("surge", "surge", "complete"),
        Doc::command::<su::SurgeCompleted>("The surge is over");
    "POST" "/api/v1/surges/{id}/cancel" Access::Roles(policy::SURGE_DECIDE) => resource::transition::<Decision>("surge", "surge", "cancel"),
        Doc::command::<Decision>("Cancel a requested or approved surge no longer needed (frees its officers)");
    "POST" "/api/v1/orders" Access::Roles(policy::ORDER_ISSUE) => resource::create_triggering::<rel::RelocationOrdered>("relocation", "order"),
        Doc::create::<rel::RelocationOrdered>("Order a relocation or evacuation; its roll call is drawn from personnel and clearances");
    "GET" "/api/v1/orders" Access::Roles(policy::ORDER_READ) => resource::list("relocation"),
        Doc::list::<events::domain::relocation::OrderSummary>("Relocation and evacuation orders, newest first (query: status, country, …)");
    "GET" "/api/v1/orders/{id}" Access::Roles(policy::ORDER_READ) => resource::one("relocation", "order"),
        Doc::read("One order with its roll call, always current");
    "POST" "/api/v1/orders/{id}/mark" Access::Roles(policy::ORDER_MARK) => resource::transition::<MarkPerson>("relocation", "order", "mark"),
        Doc::command::<MarkPerson>("Mark one person on the roll call").answers::<PendingAtSite>(202, AT_SITE);
    "POST" "/api/v1/orders/{id}/mark-many" Access::Roles(policy::ORDER_MARK) => resource::transition::<MarkPersons>("relocation", "order", "mark_many"),
        Doc::command::<MarkPersons>("Mark several people with one status");
    "POST" "/api/v1/orders/{id}/complete" Access::Roles(policy::ORDER_ISSUE) => resource::transition::<rel::OrderCompleted>("relocation", "order", "complete"),
        Doc::command::<rel::OrderCompleted>("Everyone is accounted for");
    "POST" "/api/v1/orders/{id}/rescind" Access::Roles(policy::ORDER_ISSUE) => resource::transition::<rel::OrderRescinded>("relocation", "order", "rescind"),
        Doc::command::<rel::OrderRescinded>("Withdraw the order");
    "POST" "/api/v1/clearances" Access::Roles(policy::CLEARANCE_REQUEST) => resource::create::<cl::ClearanceRequested>("clearances", "request"),
        Doc::create::<cl::ClearanceRequested>("Request a travel security clearance");
    "GET" "/api/v1/clearances" Access::Roles(policy::CLEARANCE_READ) => resource::list("clearances"),
        Doc::list::<events::domain::clearance::Clearance>("Travel security clearances, newest first (query: status, country, …)");
    "GET" "/api/v1/clearances/{id}" Access::Roles(policy::CLEARANCE_READ) => resource::one("clearances", "clearance"),
        Doc::read("One clearance, always current");
    "POST" "/api/v1/clearances/{id}/approve" Access::Roles(policy::CLEARANCE_DECIDE) => resource::transition::<Approval>("clearances", "clearance", "approve"),
        Doc::command::<Approval>("Approve the clearance");
    "POST" "/api/v1/clearances/{id}/refuse" Access::Roles(policy::CLEARANCE_DECIDE) => resource::transition::<Decision>("clearances", "clearance", "refuse"),
        Doc::command::<Decision>("Refuse the clearance");
    "POST" "/api/v1/clearances/{id}/arrive" Access::Roles(policy::CLEARANCE_MOVEMENT) => resource::transition::<cl::ArrivalRecorded>("clearances", "clearance", "arrive"),
        Doc::command::<cl::ArrivalRecorded>("The traveller arrived in a country");
    "POST" "/api/v1/clearances/{id}/depart" Access::Roles(policy::CLEARANCE_MOVEMENT) => resource::transition::<cl::DepartureRecorded>("clearances", "clearance", "depart"),
        Doc::command::<cl::DepartureRecorded>("The traveller left a country");
    "POST" "/api/v1/broadcasts" Access::Roles(policy::BROADCAST_ISSUE) => resource::create::<IssueBroadcast>("broadcast", "issue"),
        Doc::create::<IssueBroadcast>("Issue a broadcast (duty officers); another duty officer approves it before it goes out");
    "GET" "/api/v1/broadcasts" Access::Roles(policy::BROADCAST_READ) => resource::list("broadcast"),
        Doc::list::<events::domain::broadcast::BroadcastView>("Broadcasts, newest first; focal points see those sent to their agency")
            .query("caused_by", "Only those this event caused (the `triggered` link of an answer)", Type::String);
    "GET" "/api/v1/broadcasts/{id}" Access::Roles(policy::BROADCAST_READ) => resource::one("broadcast", "broadcast"),
        Doc::read("One broadcast, with per-agency delivered / acknowledged / failed, time to acknowledge, escalation");
    "GET" "/api/v1/broadcasts/{id}/chain" Access::Roles(policy::BROADCAST_READ) => resource::read("broadcast", "broadcast", "chain"),
        Doc::read("The causal chain from the triggering event to each acknowledgement");
    "GET" "/api/v1/broadcasts/{id}/cap" Access::Roles(policy::BROADCAST_READ) => get(api::cap::alert),
        Doc::new("The broadcast as a CAP 1.2 alert").answers_text(200, "CAP 1.2", "application/cap+xml");
    "POST" "/api/v1/broadcasts/{id}/approve" Access::Roles(policy::BROADCAST_APPROVE) => resource::transition::<NoFields>("broadcast", "broadcast", "approve"),
        Doc::command::<NoFields>("Approve another duty officer's broadcast (two-person rule; the issuer cannot)");
    "POST" "/api/v1/broadcasts/{id}/ack" Access::Roles(policy::BROADCAST_ACK) => resource::transition::<NoFields>("broadcast", "broadcast", "ack"),
        Doc::command::<NoFields>("Acknowledge for your agency (agency focal points; at a field site, a broadcast that reached it)").answers::<PendingAtSite>(202, AT_SITE);
    "POST" "/api/v1/broadcasts/{id}/cancel" Access::Roles(policy::BROADCAST_ISSUE) => resource::transition::<CancelBroadcast>("broadcast", "broadcast", "cancel"),
        Doc::command::<CancelBroadcast>("Cancel: issues a new broadcast cancelling the original");
    "GET" "/api/v1/cap/feed" Access::Roles(policy::BROADCAST_READ) => get(api::cap::feed),
        Doc::new("An agency's alerts as an Atom feed of CAP 1.2 alerts (focal points get their own)")
            .query("agency", "The agency", Type::String)
            .answers_text(200, "Atom feed", "application/atom+xml");
    "GET" "/api/v1/cap/public" Access::Public => get(api::cap::public),
        Doc::new("The public-safe all-agency feed (no token; live broadcasts to every agency only)").answers_text(200, "Atom feed", "application/atom+xml");
    "GET" "/openapi.json" Access::Public => get(openapi::serve),
        Doc::read("This document (OpenAPI 3.1), generated from the route table and the body types");
    "GET" "/ws" Access::Public => get(ws::upgrade),
        Doc::new("WebSocket boards: subscribe with a token in the first message (protocol in docs/PROTOCOL.md, \"The WebSocket\")")
            .answers_empty(101, "Switching protocols")
            .answers::<ErrorBody>(400, "Not a WebSocket upgrade, or a refused Origin");
    "GET" "/api/v1/site/state" Access::AnyRole => get(site::state),
        Doc::new("At a field site (`vigil site`): its link to the centre (up or down, for how long) and how many commands wait in its outbox; 404 on the centre's gateway")
            .answers::<crate::bodies::SiteState>(200, "The site's state")
            .answers::<ErrorBody>(404, "Not a field site")
            .answers::<ErrorBody>(503, "The site's outbox did not answer");
    "GET" "/healthz" Access::Public => get(http::healthz),
        Doc::new("Liveness").answers::<Alive>(200, "Alive");
    "GET" "/readyz" Access::Public => get(http::readyz),
        Doc::new("Readiness: NATS, store, boards caught up, services ready").answers::<Readiness>(200, "Ready").answers::<Readiness>(503, "Not ready (yet)");
}

/// The list routes: each answers one page in the one shape of every list
/// ([`events::page::Page`]: `items`, `position`, `next`), paged with `?limit=` and
/// `?cursor=`. The OpenAPI test checks that these, and only these, are documented with the
/// shared `Page` schema, each with its item type; the list tests walk them.
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

/// The name of the boards' checkpoint (`<data-dir>/checkpoints/boards.ckpt`).
pub const CHECKPOINT: &str = "boards";

/// Reads the log into the hub, then follows it, until `shutdown`. With a checkpoint directory
/// (`runtime::checkpoint::default_dir`), the boards start from their checkpoint when it is
/// valid for this log and this build, save one every `checkpoint::EVERY_EVENTS` events or
/// `checkpoint::EVERY` (copied under the hub's read lock, written on a blocking thread), and
/// one more when `shutdown` fires. The fold itself runs on its own thread
/// ([`Hub::start_fold`]); this task hands it what the catch-up subscription delivers.
pub async fn follow(hub: Arc<Hub>, client: Client, shutdown: CancellationToken) {
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    // The head now: the fold builds no deltas until it gets there (nobody can be behind).
    let mut attempts = 0u32;
    let head = loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = store.read(u64::MAX, 1) => match r {
                Ok((_, head)) => break head,
                Err(e) => {
                    // `vigil up` starts the store beside the gateway, so the first tries
                    // often find nobody: say so only when the wait gets long (every 10 s
                    // from 5 s on), as the services' registers do.
                    attempts += 1;
                    if attempts % 100 == 50 {
                        tracing::warn!(error = %e, "gateway waiting for the store");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    };
    let checkpoints = runtime::checkpoint::default_dir();
    let codec = Codec::<Situation>::json(boards::CHECKPOINT_VERSION);
    if let Some(dir) = &checkpoints {
        restore(&hub, &store, dir, codec).await;
    }
    tracing::info!(
        head,
        from = hub.position(),
        "folding the log into the boards"
    );
    hub.set_live_from(head);
    let after = hub.position();
    // The fold is CPU work under the hub's write lock: it runs on its own thread, so HTTP,
    // WebSocket writes and the services' answers never wait for it on the async workers (one
    // 1,024-event fold on a worker stalled everything behind it for hundreds of ms,
    // ops/bench intake). This task only hands it what the catch-up subscription delivers.
    let after_batch = {
        let (checkpoints, tokio_rt) = (checkpoints.clone(), tokio::runtime::Handle::current());
        let mut schedule = Schedule::from(after);
        move |hub: &Hub| {
            if let Some(dir) = &checkpoints
                && schedule.due(hub.position())
            {
                let (board, position, id, held) = hub.checkpoint_copy();
                metrics::histogram!("vigil_checkpoint_copy_seconds", "checkpoint" => CHECKPOINT)
                    .record(held.as_secs_f64());
                // Written on the runtime's blocking pool, never on the fold thread.
                let _in_runtime = tokio_rt.enter();
                schedule.save_in_background(dir.clone(), CHECKPOINT, codec, position, id, board);
            }
        }
    };
    let fold = match hub.start_fold(after_batch) {
        Ok(fold) => fold,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the boards' fold thread");
            return;
        }
    };
    // Each event is read straight from the store's bytes into its typed domain event.
    let mut sub = CatchUp::<events::TypedRecorded>::start_as(
        client,
        CatchUpConfig::new("gateway", after),
        shutdown.clone(),
    );
    fold.feed(&mut sub, hub::SLICE).await;
    // The thread folds what it was sent, then ends: nothing is lost or folded twice.
    if !fold.finish().await {
        tracing::error!("the boards' fold thread panicked; no checkpoint is written");
        return;
    }
    // Shutdown: one last checkpoint of what was folded.
    if let Some(dir) = checkpoints
        && hub.position() > after
    {
        let (board, position, id, held) = hub.checkpoint_copy();
        tracing::info!(
            position,
            held_ms = held.as_secs_f64() * 1e3,
            "boards copied for their checkpoint (the fold waits this long, never for the disk)"
        );
        let _ = tokio::task::spawn_blocking(move || {
            runtime::checkpoint::save_logged(&dir, CHECKPOINT, &codec, position, id, &board)
        })
        .await;
    }
}

/// Starts the hub from the boards' checkpoint in `dir` if it is valid for this log; logs why
/// not otherwise (the whole log is folded then).
async fn restore(hub: &Hub, store: &StoreClient, dir: &std::path::Path, codec: Codec<Situation>) {
    let file = runtime::checkpoint::file(dir, CHECKPOINT);
    let started = std::time::Instant::now();
    let owned = dir.to_owned();
    let loaded =
        tokio::task::spawn_blocking(move || runtime::checkpoint::load(&owned, CHECKPOINT, &codec))
            .await
            .unwrap_or_else(|e| Err(Ignored::Damaged(format!("the load failed: {e}"))));
    let loaded = match loaded {
        Ok(c) => runtime::checkpoint::check_against_log(store, c.position, c.event_id)
            .await
            .map(|()| c),
        Err(why) => Err(why),
    };
    match loaded {
        Ok(c) if c.state.retention() != hub.retention() => tracing::info!(
            checkpoint = CHECKPOINT,
            written_with_s = c.state.retention().as_secs(),
            retention_s = hub.retention().as_secs(),
            "checkpoint written with another board retention ignored; folding the whole log"
        ),
        Ok(c) => {
            let position = c.position;
            if hub.restore(c.state, c.event_id) {
                tracing::info!(
                    position,
                    ms = started.elapsed().as_secs_f64() * 1e3,
                    "boards start from their checkpoint"
                );
            }
        }
        Err(why) => runtime::checkpoint::log_ignored(CHECKPOINT, &file, &why),
    }
}

/// How often the board's clock is ticked for a quiet centre: an eighth of the retention,
/// between 1 s and 1 min, so that an ended broadcast leaves within an eighth of its retention
/// late (or a minute) even when no event comes.
pub fn tick_every(retention: Duration) -> Duration {
    (retention / 8).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Ticks the hub's board with the wall clock every [`tick_every`] until `shutdown`
/// ([`Hub::tick`]): without events, ended broadcasts still leave the board on time.
async fn tick(hub: Arc<Hub>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(tick_every(hub.retention()));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {
                let hub = hub.clone();
                // The write lock may wait for a slice of the fold: not on an async worker.
                let _ = tokio::task::spawn_blocking(move || {
                    hub.tick(time::OffsetDateTime::now_utc())
                })
                .await;
            }
        }
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
    start_node(addr, client, auth, shutdown, limits, None, &[]).await
}

/// [`start_with_limits`] on node `cluster_node` of a several-node centre (`None`: a single
/// node): `/readyz` and `/metrics` then show the store leader and this node's replica
/// ([`cluster`]). `/readyz` is ready only once every service of `services` (the centre's
/// domain services; none: not asked) answers ready ([`services`]).
pub async fn start_node(
    addr: SocketAddr,
    client: Client,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
    limits: ConnLimits,
    cluster_node: Option<String>,
    services: &[&str],
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    start_inner(
        addr,
        client,
        auth,
        shutdown,
        limits,
        Place {
            cluster_node,
            domain_services: services,
            site: None,
        },
    )
    .await
}

/// [`start_with_limits`] at field site `site` (`vigil site`): `client` is on the site's own
/// bus, where the site's outbox answers the writes it forwards (HTTP 202, "pending at site")
/// and refuses the rest, and where the boards come from the site's mirror of the centre's
/// events when it has one (until then the boards are empty and `/readyz` says it waits).
pub async fn start_at_site(
    addr: SocketAddr,
    client: Client,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
    limits: ConnLimits,
    site: String,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    start_inner(
        addr,
        client,
        auth,
        shutdown,
        limits,
        Place {
            cluster_node: None,
            domain_services: &[],
            site: Some(site),
        },
    )
    .await
}

/// Where a gateway runs: a node of a centre (its cluster node, the domain services its
/// `/readyz` waits for) or a field site.
struct Place<'a> {
    cluster_node: Option<String>,
    domain_services: &'a [&'a str],
    site: Option<String>,
}

async fn start_inner(
    addr: SocketAddr,
    client: Client,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
    limits: ConnLimits,
    place: Place<'_>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let Place {
        cluster_node,
        domain_services,
        site,
    } = place;
    let listener = server::listen(addr, limits.send_buffer).map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with --http")
    })?;
    let bound = listener.local_addr()?;
    let hub = Arc::new(Hub::with_retention(limits.board_retention));
    let refusals = Arc::new(refusals::Refusals::new(client.clone()));
    let counting = tokio::spawn(refusals.clone().run(shutdown.clone()));
    let cluster = cluster_node.map(|node| Arc::new(cluster::ClusterView::new(node)));
    if let Some(view) = &cluster {
        tokio::spawn(cluster::watch(
            client.clone(),
            view.clone(),
            shutdown.clone(),
        ));
    }
    let services_view = (!domain_services.is_empty())
        .then(|| Arc::new(services::ServicesView::new(domain_services)));
    if let Some(view) = &services_view {
        tokio::spawn(services::watch(
            client.clone(),
            view.clone(),
            shutdown.clone(),
        ));
    }
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
        cluster,
        site,
        services: services_view,
    });
    let mut follower = tokio::spawn(follow(hub.clone(), client, shutdown.clone()));
    tokio::spawn(tick(hub.clone(), shutdown.clone()));
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
        // The follower ends by itself on shutdown, after writing the boards' checkpoint.
        if tokio::time::timeout(Duration::from_secs(10), &mut follower)
            .await
            .is_err()
        {
            tracing::warn!("the boards' fold did not stop within 10 s");
            follower.abort();
        }
        // After the last request: the refusals counted in the window that did not end.
        let _ = counting.await;
        refusals.flush().await;
        Ok(())
    });
    Ok((bound, task))
}
