//! Sending a broadcast to an agency: the message agency systems receive, its signature, and
//! one attempt over NATS (`vigil.alerts.<agency>`) or a webhook (HTTP POST).
//!
//! # What a receiver gets
//! The same JSON ([`Message`]) on both channels. A webhook request carries:
//! - `X-Vigil-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
//!   agency's secret ([`verify`] is the receiver's check; reject a stale `t` against replays);
//! - `X-Vigil-Delivery: <broadcast id>/<agency>`: the idempotency key. Delivery is at least
//!   once (an instance that stops between a receiver's 2xx and recording it will send again),
//!   so a receiver keeps the keys it has seen.
//!
//! A 2xx answer is a delivery; anything else, a timeout or no connection is a failed attempt.
//!
//! Over NATS the message is a **request** on `vigil.alerts.<agency>`: the agency's system
//! answers it with a [`Receipt`] (`{"received": "<broadcast id>"}`), and only that receipt
//! is a delivery. No responder (nobody of the agency connected), no receipt within the
//! delivery timeout, or a receipt naming another broadcast is a failed attempt, retried on
//! the delivery schedule. A receipt says a system has the message; a person's
//! acknowledgement is separate (a request on `vigil.alerts.<agency>.ack`, see the crate
//! docs). Agency identities and what they may do: `runtime::nats_agencies`.

use std::time::Duration;

use events::domain::broadcast::{BroadcastIssued, BroadcastSeverity};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use time::OffsetDateTime;
use uuid::Uuid;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Vigil-Signature";
/// The idempotency-key header.
pub const DELIVERY_HEADER: &str = "X-Vigil-Delivery";

/// What an agency system receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The broadcast's id.
    pub broadcast: Uuid,
    /// The agency it is addressed to.
    pub agency: String,
    /// `Actual` or `Exercise` (CAP's status).
    pub status: String,
    /// `Alert`, `Update` or `Cancel` (CAP's msgType).
    pub msg_type: String,
    /// The broadcast it updates or cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub references: Option<Uuid>,
    /// One line.
    pub title: String,
    /// The message.
    pub body: String,
    /// How urgent.
    pub severity: BroadcastSeverity,
    /// Whether the agency must acknowledge.
    pub requires_ack: bool,
    /// By when.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub ack_deadline: Option<OffsetDateTime>,
    /// Where to acknowledge over HTTP (relative to the centre's API).
    pub ack_path: String,
    /// 1: first sending, 2: re-sent because not acknowledged.
    pub round: u32,
}

impl Message {
    /// The message for `agency`.
    pub fn new(id: Uuid, issued: &BroadcastIssued, agency: &str, round: u32) -> Message {
        let (msg_type, references) = match (issued.updates, issued.cancels) {
            (Some(o), _) => ("Update", Some(o)),
            (_, Some(o)) => ("Cancel", Some(o)),
            _ => ("Alert", None),
        };
        Message {
            broadcast: id,
            agency: agency.to_owned(),
            status: if issued.exercise {
                "Exercise"
            } else {
                "Actual"
            }
            .to_owned(),
            msg_type: msg_type.to_owned(),
            references,
            title: if issued.exercise {
                format!("EXERCISE: {}", issued.title)
            } else {
                issued.title.clone()
            },
            body: issued.body.clone(),
            severity: issued.severity,
            requires_ack: issued.requires_ack,
            ack_deadline: issued.ack_deadline,
            ack_path: format!("/api/v1/broadcasts/{id}/ack"),
            round,
        }
    }
}

/// `X-Vigil-Signature` for `body` sent at `t` (unix seconds).
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body)))
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length: new_from_slice cannot fail for it.
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Whether `header` is a valid signature of `body` under `secret`, made within
/// `tolerance` of `now` (unix seconds). Constant-time in the comparison.
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now - t).abs() > tolerance {
        return false;
    }
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&v1).is_ok()
}

/// What an agency system answers to a broadcast delivered over NATS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The broadcast received.
    pub received: Uuid,
}

/// Sends `message` as a request on `vigil.alerts.<agency>` and waits up to `timeout` for the
/// agency system's [`Receipt`].
pub async fn over_nats(
    client: &async_nats::Client,
    message: &Message,
    timeout: Duration,
) -> Result<(), String> {
    use async_nats::RequestErrorKind;
    let subject = events::subjects::alert_subject(&message.agency).ok_or_else(|| {
        format!(
            "agency id {:?} cannot be a NATS subject token",
            message.agency
        )
    })?;
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let request = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(timeout));
    let answer = client
        .send_request(subject.clone(), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => {
                format!("no agency system is listening on {subject}")
            }
            RequestErrorKind::TimedOut => {
                format!("no receipt within {} ms", timeout.as_millis())
            }
            _ => format!("NATS request failed: {e}"),
        })?;
    match serde_json::from_slice::<Receipt>(&answer.payload) {
        Ok(r) if r.received == message.broadcast => Ok(()),
        Ok(r) => Err(format!(
            "the receipt names broadcast {}, not {}",
            r.received, message.broadcast
        )),
        Err(e) => Err(format!(
            "the agency system's answer is not a receipt ({{\"received\": \"<broadcast id>\"}}): {e}"
        )),
    }
}

/// POSTs `message` to `url`, signed with `secret`, at `now`.
pub async fn over_webhook(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    message: &Message,
    now: OffsetDateTime,
    timeout: Duration,
) -> Result<(), String> {
    let body = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let signature = sign(secret.as_bytes(), now.unix_timestamp(), &body);
    let answer = http
        .post(url)
        .timeout(timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .header(
            DELIVERY_HEADER,
            format!("{}/{}", message.broadcast, message.agency),
        )
        .body(body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                format!("no answer within {} ms", timeout.as_millis())
            } else if e.is_connect() {
                "could not connect".to_owned()
            } else {
                format!("request failed: {e}")
            }
        })?;
    let status = answer.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {status}"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_body_secret_and_time() {
        let sig = sign(b"k", 1_000, b"{\"a\":1}");
        assert!(verify(b"k", &sig, b"{\"a\":1}", 1_010, 300));
        assert!(!verify(b"k", &sig, b"{\"a\":2}", 1_010, 300), "other body");
        assert!(
            !verify(b"other", &sig, b"{\"a\":1}", 1_010, 300),
            "other key"
        );
        assert!(!verify(b"k", &sig, b"{\"a\":1}", 2_000, 300), "stale");
        assert!(!verify(b"k", "garbage", b"{}", 1_000, 300));
        assert!(!verify(b"k", "t=1000,v1=zz", b"{}", 1_000, 300));
    }
}
