//! The gateway: where people meet Vigil. It folds the log into live boards and serves them
//! over HTTP and WebSocket, with the wall screen page.
//!
//! # Layout
//! - [`hub`]: the board fold and its fan-out (snapshot, ring of deltas, bounded per-client
//!   queues, resync of slow clients).
//! - [`ws`]: the WebSocket board protocol at `/ws`.
//! - [`http`]: board snapshots, `/healthz`, `/readyz`, `/metrics`, the embedded pages, and
//!   JSON errors.
//!
//! The gateway never writes to the log directly; it reads it through the catch-up
//! subscription, so any number of gateways can run side by side and agree.

pub mod http;
pub mod hub;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use runtime::{CatchUp, CatchUpConfig, StoreClient};
use tokio_util::sync::CancellationToken;

use crate::hub::Hub;

/// Shared by every request.
pub struct AppState {
    /// The boards.
    pub hub: Arc<Hub>,
    /// For readiness: is the store answering, and where is the head.
    pub store: StoreClient,
    /// Fired on shutdown so WebSocket clients are told to reconnect elsewhere.
    pub shutdown: CancellationToken,
}

/// Largest HTTP request body the gateway reads (the API's bodies are small JSON).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The router, for `serve` and for tests.
pub fn router(state: Arc<AppState>, metrics: Option<PrometheusHandle>) -> Router {
    let mut app = Router::new()
        .route("/api/v1/boards/{board}", get(http::board))
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(http::healthz))
        .route("/readyz", get(http::readyz))
        .fallback(get(http::page))
        .with_state(state);
    if let Some(handle) = metrics {
        app = app.merge(runtime::telemetry::metrics_router(handle));
    }
    app.layer(axum::middleware::from_fn(http::security_headers))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
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
                    tokio::time::sleep(Duration::from_millis(500)).await;
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
    let mut buf = Vec::with_capacity(1024);
    while sub.recv_many(&mut buf, 1024).await > 0 {
        hub.apply(&buf);
        buf.clear();
    }
}

/// Binds `addr` and serves until `shutdown`; returns the bound address and the server task.
pub async fn start(
    addr: SocketAddr,
    client: Client,
    metrics: Option<PrometheusHandle>,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<anyhow::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {addr}: {e}; choose another address with --http")
    })?;
    let bound = listener.local_addr()?;
    let hub = Arc::new(Hub::new());
    let state = Arc::new(AppState {
        hub: hub.clone(),
        store: StoreClient::new(client.clone(), Duration::from_secs(5)),
        shutdown: shutdown.clone(),
    });
    let follower = tokio::spawn(follow(hub.clone(), client, shutdown.clone()));
    let app = router(state, metrics);
    let task = tokio::spawn(async move {
        let stop = shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await?;
        follower.abort();
        Ok(())
    });
    tracing::info!(%bound, "gateway listening");
    Ok((bound, task))
}
