//! Request and reply shapes of the store's NATS API (`vigil.store.*`), shared by the store
//! and every client so the two can never drift apart. Requests refuse unknown fields.

use serde::{Deserialize, Serialize};

use crate::envelope::{ExpectedVersion, NewEvent, RecordedEvent, StreamName};

/// `vigil.store.append.<user>.<category>`: append a batch to one stream, all or nothing.
/// The stream must be of the subject's category (see [`crate::subjects::append_subject`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendRequest {
    /// Target stream.
    pub stream: StreamName,
    /// Optimistic concurrency check.
    pub expected_version: ExpectedVersion,
    /// Events to append, in order (at least one).
    pub events: Vec<NewEvent>,
    /// Stored only after the event with this id: if the log does not hold it yet (nor an
    /// earlier append of the same commit group), the append is refused `after_missing` and
    /// nothing is stored. A writer that sends several appends one behind the other without
    /// waiting for each answer chains them this way, so none lands before the one it
    /// follows, whatever happens to that one (refused, lost on the way, a store that
    /// restarted). A retry of an append already stored is answered as such first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<uuid::Uuid>,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppendOk {
    /// Position of the batch's first event.
    pub first_position: u64,
    /// Position of the batch's last event.
    pub last_position: u64,
    /// The stream's version after the batch (the last event's version).
    pub stream_version: u64,
    /// True when every event of the batch was already stored (a retry): nothing new was
    /// written and the positions are the original ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub duplicate: bool,
}

/// Reply to an append: `{"ok": …}` or `{"error": …}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AppendReply {
    /// Durable on disk.
    Ok(AppendOk),
    /// Refused; nothing was stored.
    Error(StoreError),
}

/// Stable machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The stream's version is not what the writer expected; `current_version` says what it is.
    WrongExpectedVersion,
    /// The request is malformed, has unknown fields, or breaks a size limit.
    Invalid,
    /// An event id is already stored with other content or in another stream: ids are
    /// idempotency keys and cannot be reused for something else.
    IdReused,
    /// The store cannot take writes now (overloaded, stopped after a disk error, shutting
    /// down). Retry with the same event ids.
    Unavailable,
    /// The append subject does not allow this stream: its category is not the one the
    /// subject names (each NATS user may append only to the categories it owns).
    Forbidden,
    /// The event the append must follow (its `after`) is not in the log; nothing was
    /// stored. Send the append again once that event is stored, or without `after` if it
    /// never will be.
    AfterMissing,
}

/// A typed refusal from the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(deny_unknown_fields)]
#[error("{code:?}: {message}")]
pub struct StoreError {
    /// What kind of refusal.
    pub code: ErrorCode,
    /// What went wrong and what to do next, for a human.
    pub message: String,
    /// With `wrong_expected_version`: the stream's current version (0 = no stream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<u64>,
}

impl StoreError {
    /// An `invalid` error.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Invalid,
            message: message.into(),
            current_version: None,
        }
    }

    /// An `unavailable` error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: message.into(),
            current_version: None,
        }
    }

    /// A `forbidden` error.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::Forbidden,
            message: message.into(),
            current_version: None,
        }
    }

    /// An `id_reused` error.
    pub fn id_reused(message: impl Into<String>) -> Self {
        Self {
            code: ErrorCode::IdReused,
            message: message.into(),
            current_version: None,
        }
    }

    /// An `after_missing` error: `after` is not in the log.
    pub fn after_missing(after: uuid::Uuid) -> Self {
        Self {
            code: ErrorCode::AfterMissing,
            message: format!(
                "this append must follow event {after}, which the log does not hold; nothing was stored"
            ),
            current_version: None,
        }
    }

    /// A `wrong_expected_version` error.
    pub fn wrong_version(expected: ExpectedVersion, current: u64) -> Self {
        let want = match expected {
            ExpectedVersion::Any => "any".to_owned(),
            ExpectedVersion::NoStream => "no stream".to_owned(),
            ExpectedVersion::Exact(v) => format!("version {v}"),
        };
        let have = if current == 0 {
            "does not exist".to_owned()
        } else {
            format!("is at version {current}")
        };
        Self {
            code: ErrorCode::WrongExpectedVersion,
            message: format!(
                "expected {want}, but the stream {have}; re-read the stream and decide again"
            ),
            current_version: Some(current),
        }
    }
}

/// Largest page a read returns, whatever the request asks for.
pub const MAX_READ_LIMIT: u32 = 1000;
/// Page size when a read does not say.
pub const DEFAULT_READ_LIMIT: u32 = 500;

fn default_limit() -> u32 {
    DEFAULT_READ_LIMIT
}

fn one() -> u64 {
    1
}

/// A store replica's answer on [`crate::subjects::STORE_STATUS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStatus {
    /// The node's name (`--cluster-node`), or `"single"` for a store that does not replicate.
    pub node: String,
    /// `leader`, `follower`, or `single`.
    pub role: String,
    /// The last position in this replica's own log.
    pub head: u64,
    /// The last journal sequence this replica applied (0 when it does not replicate).
    pub journal_seq: u64,
    /// When this replica last became leader (RFC 3339), if it leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_since: Option<String>,
}

/// `vigil.store.read`: the global log from a position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// First position wanted (1 = from the start).
    #[serde(default = "one")]
    pub from: u64,
    /// Page size, capped at [`MAX_READ_LIMIT`].
    #[serde(default = "default_limit")]
    pub limit: u32,
}

/// Reply to a global read: a page of events and the log's durable head, or an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadReply {
    /// A page (possibly empty when `from` is past the head).
    Page {
        /// Events in position order.
        events: Vec<RecordedEvent>,
        /// The last durable position in the log (0 = empty log).
        head: u64,
    },
    /// Refused.
    Error {
        /// Why.
        error: StoreError,
    },
}

/// `vigil.store.stream`: one stream from a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamReadRequest {
    /// The stream.
    pub stream: StreamName,
    /// First version wanted (1 = from the start).
    #[serde(default = "one")]
    pub from_version: u64,
    /// Page size, capped at [`MAX_READ_LIMIT`].
    #[serde(default = "default_limit")]
    pub limit: u32,
}

/// Reply to a stream read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StreamReadReply {
    /// A page of the stream.
    Page {
        /// Events in version order.
        events: Vec<RecordedEvent>,
        /// The stream's current version (0 = no such stream).
        version: u64,
    },
    /// Refused.
    Error {
        /// Why.
        error: StoreError,
    },
}

/// Appends `items`, each one JSON value already encoded (an event as stored), to `out` as one
/// JSON array, `[a,b,…]`, without decoding or re-encoding them: how the store's pages and a
/// field site's slices and pages carry events.
pub fn push_json_array<T: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[T]) {
    out.reserve(items.iter().map(|e| e.as_ref().len() + 1).sum::<usize>() + 1);
    out.push(b'[');
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(e.as_ref());
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_have_the_documented_shapes() {
        let ok = AppendReply::Ok(AppendOk {
            first_position: 41,
            last_position: 41,
            stream_version: 4,
            duplicate: false,
        });
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            r#"{"ok":{"first_position":41,"last_position":41,"stream_version":4}}"#
        );
        let err = AppendReply::Error(StoreError::wrong_version(ExpectedVersion::Exact(3), 5));
        let v: serde_json::Value = serde_json::to_value(&err).unwrap();
        assert_eq!(v["error"]["code"], "wrong_expected_version");
        assert_eq!(v["error"]["current_version"], 5);
        let page = ReadReply::Page {
            events: vec![],
            head: 9,
        };
        assert_eq!(
            serde_json::to_string(&page).unwrap(),
            r#"{"events":[],"head":9}"#
        );
        let back: ReadReply =
            serde_json::from_str(r#"{"error":{"code":"invalid","message":"x"}}"#).unwrap();
        assert!(matches!(back, ReadReply::Error { .. }));
        let req: ReadRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(
            req,
            ReadRequest {
                from: 1,
                limit: DEFAULT_READ_LIMIT
            }
        );
        assert!(serde_json::from_str::<ReadRequest>(r#"{"from":1,"lmit":3}"#).is_err());
    }

    #[test]
    fn raw_json_items_join_into_one_array_that_parses() {
        let mut out = b"{\"events\":".to_vec();
        push_json_array::<&[u8]>(&mut out, &[]);
        assert_eq!(out, b"{\"events\":[]");
        let mut out = Vec::new();
        push_json_array(&mut out, &[&br#"{"a":1}"#[..], b"2", br#""x""#]);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, serde_json::json!([{"a": 1}, 2, "x"]));
    }
}
