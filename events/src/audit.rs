//! Audit records: what the centre refused, and to whom. They are events in `audit-<uuid>`
//! streams (one stream per UTC day), appended by the audit service, so the log that holds
//! every change also holds every refusal.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::envelope::{Category, StreamName};

/// Subject on which the gateway (and later any service) reports a refusal.
pub const RECORD_SUBJECT: &str = "vigil.cmd.audit.record";
/// Event type of a refused request.
pub const ACCESS_DENIED: &str = "AccessDenied";
/// Event type of a read of sensitive details (a hostage case's names, captors, location).
pub const DETAILS_READ: &str = "DetailsRead";
/// Largest record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 8 * 1024;

/// A request that was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessDenied {
    /// Chosen by the reporter: the event id, so a re-sent record is stored once.
    pub id: Uuid,
    /// When it was refused (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who asked, when a token said so (a refused token's subject is not trusted, so it is
    /// only recorded for authorization refusals of a valid token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// Their role, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// `GET`, `POST`, `WS`…
    pub method: String,
    /// The path (without the query, which may carry a token).
    pub path: String,
    /// The refusal's code: `unauthorized`, `invalid_token`, `forbidden`, `foreign_origin`,
    /// `invalid_credentials`, `rate_limited`; `overflow` for the catch-all row of counted
    /// refusals past the cap of distinct (address, route, code) in a window.
    pub code: String,
    /// How many refusals this record stands for. Refusals of callers without a valid token
    /// are counted per client address, route pattern and code over a window (a minute) and
    /// recorded once with their count, so they cannot flood the log; a refusal of a valid
    /// token is recorded alone (1). Records written before counting existed read as 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub count: u64,
    /// For a counted record: the end of the window (`at` is its start).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub until: Option<OffsetDateTime>,
}

fn one() -> u64 {
    1
}

fn is_one(n: &u64) -> bool {
    *n == 1
}

impl AccessDenied {
    /// Cuts every text field to a sane length, so a hostile request cannot make a huge
    /// audit event.
    pub fn bounded(mut self) -> Self {
        fn cut(s: &mut String, n: usize) {
            if s.chars().count() > n {
                *s = s.chars().take(n).collect();
            }
        }
        cut(&mut self.method, 16);
        cut(&mut self.path, 256);
        cut(&mut self.code, 64);
        for s in [&mut self.actor, &mut self.role, &mut self.peer]
            .into_iter()
            .flatten()
        {
            cut(s, 128);
        }
        self
    }
}

/// Someone read sensitive details: recorded before the details are sent, in the day's audit
/// stream, by the service that holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailsRead {
    /// When (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who read them.
    pub actor: String,
    /// Their role.
    pub role: String,
    /// What was read: the stream, e.g. `hostage-<uuid>`.
    pub what: String,
    /// How (`http`, `nats`).
    pub source: String,
}

/// The audit stream of the UTC day of `at`: `audit-<uuid v5 of "YYYY-MM-DD">`, so every
/// reporter and every restart agrees on it without coordination.
pub fn stream_for(at: OffsetDateTime) -> StreamName {
    let day = at.to_offset(time::UtcOffset::UTC).date();
    let id = Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("vigil-audit-{day}").as_bytes(),
    );
    // "audit" is a valid category (lower-case letters), so no check is needed.
    StreamName::new(Category("audit".to_owned()), id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stream_per_day_and_bounded_fields() {
        let a = time::macros::datetime!(2026-11-27 01:00 UTC);
        let b = time::macros::datetime!(2026-11-27 23:59 UTC);
        let c = time::macros::datetime!(2026-11-28 00:00 UTC);
        assert_eq!(stream_for(a), stream_for(b));
        assert_ne!(stream_for(a), stream_for(c));
        assert_eq!(stream_for(a).category().as_str(), "audit");
        let r = AccessDenied {
            id: Uuid::nil(),
            at: a,
            actor: Some("x".repeat(1000)),
            role: None,
            peer: None,
            method: "GET".into(),
            path: "/".repeat(5000),
            code: "forbidden".into(),
            count: 1,
            until: None,
        }
        .bounded();
        assert_eq!(r.path.len(), 256);
        assert_eq!(r.actor.map(|a| a.len()), Some(128));
    }

    #[test]
    fn a_record_from_before_counting_reads_as_one_refusal() {
        let old = r#"{"id":"00000000-0000-0000-0000-000000000000","at":"2026-11-27T01:00:00Z","method":"GET","path":"/api/v1/events","code":"unauthorized"}"#;
        let r: AccessDenied = serde_json::from_str(old).unwrap();
        assert_eq!((r.count, r.until), (1, None));
        // A single refusal is written as before; a counted one carries its count and window.
        let again = serde_json::to_string(&r).unwrap();
        assert!(
            !again.contains("count") && !again.contains("until"),
            "{again}"
        );
        let counted = AccessDenied {
            count: 7,
            until: Some(time::macros::datetime!(2026-11-27 01:01 UTC)),
            ..r
        };
        let back: AccessDenied =
            serde_json::from_str(&serde_json::to_string(&counted).unwrap()).unwrap();
        assert_eq!(back, counted);
    }
}
