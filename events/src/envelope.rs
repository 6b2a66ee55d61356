//! The event envelope: what a writer hands to the store and what the store records.
//!
//! A writer chooses the event `id` (a UUID); it is the idempotency key for ever. The store
//! assigns `position` (global, gap-free from 1), `version` (per stream, gap-free from 1) and
//! `recorded_at`. Streams are named `<category>-<uuid>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use uuid::Uuid;

/// The writer-chosen identity of an event; re-sending the same id is a safe retry.
pub type EventId = Uuid;

/// Longest accepted category name; categories are short lower-case words like `incident`.
pub const MAX_CATEGORY_LEN: usize = 32;

/// The category of a stream: the part before the `-<uuid>` (`incident`, `level`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(pub(crate) String);

impl Category {
    /// Parses a category: 1 to 32 characters of `a-z`, `0-9` and `_`, starting with a letter.
    /// These rules keep it a single NATS subject token.
    pub fn parse(s: &str) -> Result<Self, StreamNameError> {
        let ok_len = !s.is_empty() && s.len() <= MAX_CATEGORY_LEN;
        let ok_first = s.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        let ok_chars = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok_len && ok_first && ok_chars {
            Ok(Self(s.to_owned()))
        } else {
            Err(StreamNameError::BadCategory(s.chars().take(64).collect()))
        }
    }

    /// The category as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a stream name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    /// The name is empty.
    #[error("the stream name is empty; expected <category>-<uuid>, e.g. incident-0190a5d2-…")]
    Empty,
    /// The name has no `-<uuid>` part.
    #[error("stream name {0:?} is not <category>-<uuid>")]
    Shape(String),
    /// The category part breaks the category rules.
    #[error(
        "stream category {0:?} must be 1-32 characters of a-z, 0-9 and _, starting with a letter"
    )]
    BadCategory(String),
    /// The id part is not a UUID.
    #[error("stream id {0:?} is not a UUID")]
    BadId(String),
}

/// A validated stream name, `<category>-<uuid>`, e.g. `incident-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamName {
    category: Category,
    id: Uuid,
    /// The canonical text form, kept so that keys and subjects never re-format.
    text: String,
}

impl StreamName {
    /// Builds a stream name from its parts.
    pub fn new(category: Category, id: Uuid) -> Self {
        let text = format!("{}-{}", category.as_str(), id.hyphenated());
        Self { category, id, text }
    }

    /// Parses `<category>-<uuid>`; the UUID must be in its hyphenated lower-case form so that
    /// one stream has exactly one name.
    pub fn parse(s: &str) -> Result<Self, StreamNameError> {
        if s.is_empty() {
            return Err(StreamNameError::Empty);
        }
        // A hyphenated UUID is 36 characters; the category sits before the hyphen before it.
        let shape = || StreamNameError::Shape(s.chars().take(80).collect());
        if s.len() < 38 || !s.is_char_boundary(s.len() - 37) {
            return Err(shape());
        }
        let (cat, rest) = s.split_at(s.len() - 37);
        let Some(id_text) = rest.strip_prefix('-') else {
            return Err(shape());
        };
        let category = Category::parse(cat)?;
        let id =
            Uuid::parse_str(id_text).map_err(|_| StreamNameError::BadId(id_text.to_owned()))?;
        // Compared in a buffer on the stack: every event read from the log names its stream.
        if id.hyphenated().encode_lower(&mut Uuid::encode_buffer()) != id_text {
            return Err(StreamNameError::BadId(id_text.to_owned()));
        }
        // `s` is the canonical form just checked: kept as it is, not formatted again.
        Ok(Self {
            category,
            id,
            text: s.to_owned(),
        })
    }

    /// The category (`incident`, ...).
    pub fn category(&self) -> &Category {
        &self.category
    }

    /// The UUID part.
    pub fn id(&self) -> Uuid {
        self.id
    }

    /// The canonical text form.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for StreamName {
    type Err = StreamNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for StreamName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Optimistic concurrency for an append: what the writer believes the stream's version is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's current version must be exactly this (≥ 1).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream currently at `current` (0 = no stream) satisfies this expectation.
    pub fn admits(self, current: u64) -> bool {
        match self {
            Self::Any => true,
            Self::NoStream => current == 0,
            Self::Exact(v) => current == v,
        }
    }
}

impl Serialize for ExpectedVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Any => s.serialize_str("any"),
            Self::NoStream => s.serialize_str("no_stream"),
            Self::Exact(v) => s.serialize_u64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for ExpectedVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = ExpectedVersion;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""any", "no_stream" or a stream version ≥ 1"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "any" => Ok(ExpectedVersion::Any),
                    "no_stream" => Ok(ExpectedVersion::NoStream),
                    other => Err(E::invalid_value(serde::de::Unexpected::Str(other), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if v == 0 {
                    // Version 0 would mean "no stream"; one spelling per meaning.
                    Err(E::invalid_value(serde::de::Unexpected::Unsigned(0), &self))
                } else {
                    Ok(ExpectedVersion::Exact(v))
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Who did it and why: recorded with every event, so the log is the audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// The authenticated user or service that caused the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The actor's role at the time (`duty_officer`, `field_officer`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Where the command came from (`http`, `nats`, `cli`, `rule:<id>`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Ties together everything done for one user request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<Uuid>,
    /// The event that caused this one (a rule firing, an escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The NATS user that appended the event (`incidents`, `cli`, ...). Set by the store from
    /// the append subject, whose user token the NATS permissions hold each user to; whatever
    /// a writer puts here is replaced. Absent on events recorded before the store set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended_by: Option<String>,
}

/// An event as a writer sends it to the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Writer-chosen id; the idempotency key.
    pub id: EventId,
    /// Event type name, e.g. `IncidentReported`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of that type.
    pub v: u32,
    /// The event's payload.
    pub data: serde_json::Value,
    /// Actor, role, source, correlation and causation.
    #[serde(default)]
    pub meta: Meta,
}

/// An event as the store recorded it (each item of `GET /api/v1/events`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordedEvent {
    /// Writer-chosen id.
    #[schema(value_type = String, format = Uuid)]
    pub id: EventId,
    /// The stream it belongs to (`<category>-<uuid>`).
    #[schema(value_type = String, examples("incident-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f"))]
    pub stream: StreamName,
    /// Event type name.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of that type as written.
    pub v: u32,
    /// The payload as written.
    pub data: serde_json::Value,
    /// Actor, role, source, correlation and causation.
    #[serde(default)]
    pub meta: Meta,
    /// Global position, gap-free from 1.
    pub position: u64,
    /// Version within the stream, gap-free from 1.
    pub version: u64,
    /// When the store committed it (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
}

impl RecordedEvent {
    /// Records `event` in `stream` at the given coordinates.
    pub fn record(
        event: NewEvent,
        stream: StreamName,
        position: u64,
        version: u64,
        recorded_at: OffsetDateTime,
    ) -> Self {
        Self {
            id: event.id,
            stream,
            event_type: event.event_type,
            v: event.v,
            data: event.data,
            meta: event.meta,
            position,
            version,
            recorded_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_round_trip_and_refuse_bad_shapes() {
        let id = Uuid::new_v4();
        let name = format!("incident-{id}");
        let parsed = StreamName::parse(&name).unwrap();
        assert_eq!(parsed.as_str(), name);
        assert_eq!(parsed.category().as_str(), "incident");
        assert_eq!(parsed.id(), id);

        assert_eq!(StreamName::parse(""), Err(StreamNameError::Empty));
        assert!(matches!(
            StreamName::parse("incident"),
            Err(StreamNameError::Shape(_))
        ));
        assert!(matches!(
            StreamName::parse(&format!("Incident-{id}")),
            Err(StreamNameError::BadCategory(_))
        ));
        assert!(matches!(
            StreamName::parse(&format!("incident-{}", id.simple())),
            Err(StreamNameError::Shape(_))
        ));
        let upper = format!("incident-{}", id.hyphenated()).to_uppercase();
        assert!(StreamName::parse(&upper).is_err());
        assert!(matches!(
            StreamName::parse("incident-zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"),
            Err(StreamNameError::BadId(_))
        ));
        // Multi-byte characters where the split would fall must not panic.
        assert!(StreamName::parse(&"é".repeat(30)).is_err());
    }

    #[test]
    fn expected_version_has_one_spelling_per_meaning() {
        let p = |s: &str| serde_json::from_str::<ExpectedVersion>(s);
        assert_eq!(p("\"any\"").unwrap(), ExpectedVersion::Any);
        assert_eq!(p("\"no_stream\"").unwrap(), ExpectedVersion::NoStream);
        assert_eq!(p("3").unwrap(), ExpectedVersion::Exact(3));
        for bad in ["0", "-1", "\"3\"", "1.5", "null", "\"ANY\""] {
            assert!(p(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            serde_json::to_string(&ExpectedVersion::Exact(7)).unwrap(),
            "7"
        );
        assert!(ExpectedVersion::NoStream.admits(0));
        assert!(!ExpectedVersion::NoStream.admits(1));
        assert!(ExpectedVersion::Exact(2).admits(2));
        assert!(!ExpectedVersion::Exact(2).admits(3));
        assert!(ExpectedVersion::Any.admits(9));
    }
}
