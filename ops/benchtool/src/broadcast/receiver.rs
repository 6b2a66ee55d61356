//! The agencies of a run (from the broadcast configuration, with their focal points' tokens)
//! and the webhook receiver: every delivery is checked (a known agency, a signature that
//! verifies under its secret, a `Message` for that agency, the delivery header), the first
//! one of the round's broadcast to each agency is timed on arrival and triggers its
//! acknowledgement; later ones count as duplicates, another broadcast's as stray. The peer's
//! acknowledgements are answered here too.

use crate::cell::{Tally, lock};
use anyhow::{Context as _, bail};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use uuid::Uuid;
use vigil_broadcast::deliver::{self, DELIVERY_HEADER, Message, SIGNATURE_HEADER};
use vigil_broadcast::rules::Config;

use super::SIGNATURE_TOLERANCE_S;

/// One recipient: its id, webhook and secret (from the configuration), its focal point's
/// token.
pub(super) struct Agency {
    pub(super) id: String,
    pub(super) url: String,
    pub(super) secret: String,
    pub(super) token: String,
}

/// The agencies with a webhook in `config`, with their tokens from `tokens` (`<agency>
/// <token>` lines), and the `host:port` every webhook points at.
pub(super) fn agencies(config: &Config, tokens: &str) -> anyhow::Result<(Vec<Agency>, String)> {
    let mut by_agency: HashMap<&str, &str> = HashMap::new();
    for (n, line) in tokens.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(t), None) => {
                by_agency.insert(a, t);
            }
            _ => bail!("focal tokens, line {}: expected `<agency> <token>`", n + 1),
        }
    }
    let mut listen: Option<String> = None;
    let mut out = Vec::new();
    for (id, endpoint) in &config.agencies {
        let (Some(url), Some(secret)) = (&endpoint.webhook, &endpoint.secret) else {
            continue;
        };
        let rest = url.strip_prefix("http://").with_context(|| {
            format!("agency {id}: webhook {url} is not http:// (the bench serves plain HTTP)")
        })?;
        let (host, path) = rest
            .split_once('/')
            .with_context(|| format!("agency {id}: webhook {url} has no path"))?;
        if path != format!("hook/{id}") {
            bail!("agency {id}: webhook {url} must end in /hook/{id}");
        }
        match &listen {
            None => listen = Some(host.to_owned()),
            Some(l) if l == host => {}
            Some(l) => bail!("the webhooks point at {l} and {host}: the bench serves one address"),
        }
        let token = by_agency
            .get(id.as_str())
            .with_context(|| format!("no focal-point token for agency {id}"))?;
        out.push(Agency {
            id: id.clone(),
            url: url.clone(),
            secret: secret.clone(),
            token: (*token).to_owned(),
        });
    }
    let listen = listen.context("the configuration has no agency with a webhook")?;
    Ok((out, listen))
}

/// One round's broadcast as the receiver sees it.
pub(super) struct Round {
    /// The broadcast whose deliveries are timed.
    pub(super) broadcast: Uuid,
    /// First arrival per agency (index into the agencies).
    pub(super) arrivals: Mutex<Vec<Option<Instant>>>,
    /// Agencies reached.
    pub(super) received: AtomicUsize,
    /// Deliveries after the first, per agency.
    pub(super) duplicates: AtomicU64,
    /// Tells the acknowledging focal points which agency was reached.
    pub(super) trigger: mpsc::UnboundedSender<usize>,
}

impl Round {
    pub(super) fn new(broadcast: Uuid, n: usize, trigger: mpsc::UnboundedSender<usize>) -> Self {
        Self {
            broadcast,
            arrivals: Mutex::new(vec![None; n]),
            received: AtomicUsize::new(0),
            duplicates: AtomicU64::new(0),
            trigger,
        }
    }
}

/// The webhook receiver's state.
pub(super) struct Receiver {
    /// Agency id → index.
    pub(super) index: HashMap<String, usize>,
    /// Secrets by index.
    pub(super) secrets: Vec<Vec<u8>>,
    /// The round being timed, if any.
    pub(super) round: Mutex<Option<Arc<Round>>>,
    /// Requests whose signature did not verify (must stay 0).
    pub(super) invalid: AtomicU64,
    /// Valid deliveries of another broadcast than the round's.
    pub(super) stray: AtomicU64,
    /// Every refused or stray request, by kind.
    pub(super) problems: Mutex<BTreeMap<String, Tally>>,
}

impl Receiver {
    pub(super) fn problem(&self, kind: &str, detail: String) {
        let mut m = lock(&self.problems);
        let t = m.entry(kind.to_owned()).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }

    /// Checks and times one webhook request for `agency`, arrived at `now`.
    pub(super) fn take(
        &self,
        agency: &str,
        headers: &HeaderMap,
        body: &[u8],
        now: Instant,
    ) -> StatusCode {
        let Some((&i, secret)) = self
            .index
            .get(agency)
            .and_then(|i| Some((i, self.secrets.get(*i)?)))
        else {
            self.problem("unknown agency (404)", agency.chars().take(64).collect());
            return StatusCode::NOT_FOUND;
        };
        let signature = headers
            .get(SIGNATURE_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let unix = OffsetDateTime::now_utc().unix_timestamp();
        if !deliver::verify(secret, signature, body, unix, SIGNATURE_TOLERANCE_S) {
            self.invalid.fetch_add(1, Ordering::Relaxed);
            self.problem(
                "invalid signature (401)",
                format!("agency {agency}, header {signature:?}"),
            );
            return StatusCode::UNAUTHORIZED;
        }
        let message: Message = match serde_json::from_slice(body) {
            Ok(m) => m,
            Err(e) => {
                self.problem("unreadable message (400)", format!("agency {agency}: {e}"));
                return StatusCode::BAD_REQUEST;
            }
        };
        let key = headers
            .get(DELIVERY_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if message.agency != agency || key != format!("{}/{agency}", message.broadcast) {
            self.problem(
                "message for another agency or wrong delivery key (400)",
                format!(
                    "path agency {agency}, message agency {}, key {key:?}",
                    message.agency
                ),
            );
            return StatusCode::BAD_REQUEST;
        }
        let round = lock(&self.round).clone();
        match round {
            Some(r) if r.broadcast == message.broadcast => {
                let first = {
                    let mut arrivals = lock(&r.arrivals);
                    match arrivals.get_mut(i) {
                        Some(slot) if slot.is_none() => {
                            *slot = Some(now);
                            true
                        }
                        _ => false,
                    }
                };
                if first {
                    r.received.fetch_add(1, Ordering::Relaxed);
                    // The focal point's acknowledgement; nobody listens after the round.
                    let _ = r.trigger.send(i);
                } else {
                    r.duplicates.fetch_add(1, Ordering::Relaxed);
                }
            }
            _ => {
                self.stray.fetch_add(1, Ordering::Relaxed);
                self.problem(
                    "delivery of a broadcast outside its round (answered 200)",
                    format!(
                        "broadcast {}, agency {agency}, round {}",
                        message.broadcast, message.round
                    ),
                );
            }
        }
        StatusCode::OK
    }
}

pub(super) async fn hook(
    State(receiver): State<Arc<Receiver>>,
    Path(agency): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    receiver.take(&agency, &headers, &body, now)
}

/// The peer's acknowledgement handler: a bearer token and a JSON object, answered 200 with a
/// body shaped like the gateway's.
pub(super) async fn peer_ack(
    State(count): State<Arc<AtomicU64>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        // The scheme in any case (RFC 7235), as the gateway reads it.
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, token)| {
            scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
        });
    if !bearer {
        return (StatusCode::UNAUTHORIZED, "{}".to_owned());
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "{}".to_owned());
    };
    let Ok(id) = Uuid::parse_str(&id) else {
        return (StatusCode::NOT_FOUND, "{}".to_owned());
    };
    let event_id = fields
        .get("id")
        .and_then(Value::as_str)
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(Uuid::new_v4);
    let n = count.fetch_add(1, Ordering::Relaxed) + 1;
    let answer = json!({
        "id": id,
        "stream": format!("broadcast-{id}"),
        "event_id": event_id,
        "position": n,
        "stream_version": n,
    });
    (StatusCode::OK, answer.to_string())
}

/// Serves `router` on `listener` until the process ends.
pub(super) fn serve(listener: tokio::net::TcpListener, router: axum::Router, what: &'static str) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("[broadcast] the {what} stopped: {e}");
        }
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::broadcast::rounds::{deadline, text};
    use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity};

    #[test]
    fn agencies_come_from_the_configuration_with_their_tokens() {
        let config = Config::parse(
            r#"{"version": 1, "agencies": {
                "a1": {"webhook": "http://127.0.0.1:9/hook/a1", "secret": "s1"},
                "a2": {"webhook": "http://127.0.0.1:9/hook/a2", "secret": "s2"},
                "a3": {}
            }}"#,
        )
        .unwrap();
        let (list, listen) = agencies(&config, "a1 t1\n\na2 t2\n").unwrap();
        assert_eq!(listen, "127.0.0.1:9");
        assert_eq!(
            list.iter()
                .map(|a| (a.id.as_str(), a.token.as_str()))
                .collect::<Vec<_>>(),
            [("a1", "t1"), ("a2", "t2")]
        );
        assert!(agencies(&config, "a1 t1\n").is_err(), "a2 has no token");
    }

    #[test]
    fn the_receiver_checks_signatures_and_times_first_deliveries() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = Uuid::new_v4();
        let receiver = Receiver {
            index: [("a1".to_owned(), 0)].into_iter().collect(),
            secrets: vec![b"k".to_vec()],
            round: Mutex::new(Some(Arc::new(Round::new(id, 1, tx)))),
            invalid: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            problems: Mutex::new(BTreeMap::new()),
        };
        let (title, body) = text(1);
        let issued = BroadcastIssued {
            title,
            body,
            severity: BroadcastSeverity::High,
            audience: Audience::AllAgencies,
            requires_ack: true,
            ack_deadline: Some(deadline().unwrap()),
            exercise: false,
            updates: None,
            cancels: None,
            recipients: vec![],
            rule: None,
        };
        let bytes = serde_json::to_vec(&Message::new(id, &issued, "a1", 1)).unwrap();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let mut headers = HeaderMap::new();
        headers.insert(
            SIGNATURE_HEADER,
            deliver::sign(b"k", now, &bytes).parse().unwrap(),
        );
        headers.insert(DELIVERY_HEADER, format!("{id}/a1").parse().unwrap());
        assert_eq!(
            receiver.take("a1", &headers, &bytes, Instant::now()),
            StatusCode::OK
        );
        assert_eq!(rx.try_recv().unwrap(), 0);
        assert_eq!(
            receiver.take("a1", &headers, &bytes, Instant::now()),
            StatusCode::OK
        );
        assert!(rx.try_recv().is_err(), "a duplicate triggers no second ack");
        let mut bad = headers.clone();
        bad.insert(
            SIGNATURE_HEADER,
            deliver::sign(b"x", now, &bytes).parse().unwrap(),
        );
        assert_eq!(
            receiver.take("a1", &bad, &bytes, Instant::now()),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(receiver.invalid.load(Ordering::Relaxed), 1);
        assert_eq!(
            receiver.take("zz", &headers, &bytes, Instant::now()),
            StatusCode::NOT_FOUND
        );
        let round = lock(&receiver.round).clone().unwrap();
        assert_eq!(round.received.load(Ordering::Relaxed), 1);
        assert_eq!(round.duplicates.load(Ordering::Relaxed), 1);
    }
}
