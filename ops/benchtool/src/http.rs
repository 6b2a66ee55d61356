//! The HTTP client of the open-loop benchmarks (`intake`, `clearances`): reqwest over
//! HTTP/1.1 keep-alive connections with `TCP_NODELAY`, no proxy (everything is on
//! loopback), a bearer token and JSON both ways. Each worker of a cell sends one request at
//! a time, so a cell with `--connections` workers keeps at most that many connections busy;
//! they are opened before the schedule starts ([`Http::open`]) and kept idle between
//! requests, so no measured request pays for a connect.
//!
//! An exchange ends as an [`Answer`] (any status, its body up to 1 MiB) or a [`Failure`]
//! grouped by kind: `timeout`, or the innermost cause of a transport error (e.g.
//! `Connection refused (os error 111)`).

use std::time::Duration;

use anyhow::Context as _;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Deserialize;

use crate::cell::Failure;
use crate::util;

/// Largest HTTP response body read.
const MAX_BODY: usize = 1 << 20;

/// One answer.
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

/// The log position in a write's answer (`{id, stream, event_id, position, stream_version}`).
#[derive(Deserialize)]
pub struct Ack {
    /// Where the write landed in the log.
    pub position: u64,
}

/// A client of one server (`host:port`), shared by the workers of a cell (cloning it shares
/// its connections).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    base: String,
}

impl Http {
    /// A client of `addr` that keeps up to `connections` idle connections.
    pub fn new(addr: &str, connections: usize) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .http1_only()
            .tcp_nodelay(true)
            .no_proxy()
            .pool_max_idle_per_host(connections.max(1))
            .pool_idle_timeout(None)
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            client,
            base: format!("http://{addr}"),
        })
    }

    /// Opens `count` connections at once (one `GET /readyz` on each; any answer will do), so
    /// the cell's requests find them open.
    pub async fn open(&self, count: usize) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.base);
        let gets = (0..count.max(1)).map(|_| self.client.get(&url).send());
        for answer in futures::future::join_all(gets).await {
            answer.with_context(|| format!("connecting to {}", self.base))?;
        }
        Ok(())
    }

    /// `POST path` with JSON `body`, or `GET path` without one, with `token`, answered within
    /// `timeout`.
    pub async fn exchange(
        &self,
        path: &str,
        token: &str,
        body: Option<&str>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let url = format!("{}{path}", self.base);
        let request = match body {
            Some(body) => self
                .client
                .post(url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_owned()),
            None => self.client.get(url),
        };
        let answer = async {
            let answer = request
                .bearer_auth(token)
                .header(ACCEPT, "application/json")
                .timeout(timeout)
                .send()
                .await?;
            let status = answer.status().as_u16();
            if answer.content_length().is_some_and(|n| n > MAX_BODY as u64) {
                return Ok(Err((
                    "answer too large".to_owned(),
                    format!("HTTP {status} with a body over {MAX_BODY} bytes"),
                )));
            }
            let body = answer.bytes().await?;
            if body.len() > MAX_BODY {
                return Ok(Err((
                    "answer too large".to_owned(),
                    format!("HTTP {status} with a body of {} bytes", body.len()),
                )));
            }
            Ok(Ok(Answer {
                status,
                body: body.to_vec(),
            }))
        };
        match answer.await {
            Ok(answer) => answer,
            Err(e) => Err(failure(&e, timeout)),
        }
    }
}

/// A transport error as a failure: `timeout`, or grouped by its innermost cause.
fn failure(e: &reqwest::Error, timeout: Duration) -> Failure {
    if e.is_timeout() {
        return ("timeout".into(), format!("no answer within {timeout:?}"));
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    (util::error_kind(&text), text)
}

/// An answer with another status than the one expected, as a failure.
pub fn status_failure(answer: &Answer) -> Failure {
    (
        format!("HTTP {}", answer.status),
        String::from_utf8_lossy(&answer.body)
            .chars()
            .take(200)
            .collect(),
    )
}

/// `http://host:port[/…]` → `host:port`.
pub fn host_port(url: &str) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("http://")
        .with_context(|| format!("{url}: only http:// URLs are supported"))?;
    Ok(rest.split('/').next().unwrap_or(rest).to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    use super::*;

    /// Echoes what a server sees: the token, the content type and the body.
    async fn echo(headers: HeaderMap, body: String) -> (axum::http::StatusCode, String) {
        let h = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        (
            axum::http::StatusCode::CREATED,
            serde_json::json!({"auth": h("authorization"), "type": h("content-type"),
                "body": body, "position": 7})
            .to_string(),
        )
    }

    #[tokio::test]
    async fn requests_are_sent_and_answers_read_over_real_http() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = Router::new()
            .route("/w", post(echo))
            .route("/readyz", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        let http = Http::new(&addr, 4).unwrap();
        http.open(4).await.unwrap();
        let t = Duration::from_secs(5);
        let a = http
            .exchange("/w", "tok", Some(r#"{"a":1}"#), t)
            .await
            .unwrap();
        assert_eq!(a.status, 201);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["auth"], "Bearer tok");
        assert_eq!(v["type"], "application/json");
        assert_eq!(v["body"], r#"{"a":1}"#);
        let ack: Ack = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(ack.position, 7);
        let missing = http.exchange("/nothing", "tok", None, t).await.unwrap();
        assert_eq!(status_failure(&missing).0, "HTTP 404");
        let late = http
            .exchange("/slow", "tok", None, Duration::from_millis(100))
            .await;
        assert_eq!(late.err().map(|f| f.0).as_deref(), Some("timeout"));
        let closed = Http::new("127.0.0.1:1", 1).unwrap();
        let refused = closed.exchange("/w", "tok", None, t).await.err().unwrap();
        assert!(refused.0.contains("os error"), "{refused:?}");
        assert_eq!(
            host_port("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080"
        );
    }
}
