//! Tracing and metrics: one style for every service.
//!
//! Logs are structured (`tracing`), at info for state changes an operator wants to see and
//! never per message. Metrics are Prometheus text served from our own router at `/metrics`
//! (the exporter's own HTTP listener is off: it pulls a TLS stack we do not need).

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

/// Sets up logging to stderr; `RUST_LOG` overrides the default level.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,async_nats=warn,fjall=warn,lsm_tree=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Installs the process-wide Prometheus recorder, with latency buckets fit for an fsync
/// (0.1 ms) up to a stall (5 s).
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    const SECONDS: &[f64] = &[
        0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    ];
    const COUNTS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)?
        .set_buckets_for_metric(Matcher::Suffix("_events".into()), COUNTS)?
        .install_recorder()?)
}

/// A router with `/metrics`, to serve alone or merge into a service's router.
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(move || std::future::ready(handle.render())))
}

/// Binds `addr` for `/metrics`, so a taken port is an error at start, not a silent
/// absence later; then serve it with [`serve_metrics`].
pub async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen for /metrics on {addr}: {e}; pick another with --metrics")
    })
}

/// Installs the recorder, binds `addr` (an error names it) and serves `/metrics` there in a
/// task until `shutdown`: what a process run on its own does with `--metrics ADDR`.
pub async fn serve_metrics_at(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let handle = install_metrics()?;
    let listener = bind_metrics(addr).await?;
    tokio::spawn(serve_metrics(listener, handle, shutdown));
    Ok(())
}

/// Serves `/metrics` on a bound listener until `shutdown`.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, metrics_router(handle))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
    Ok(())
}
