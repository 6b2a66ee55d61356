//! Recorded events read straight from their stored bytes into typed domain events, for the
//! folds that replay the log (the boards, `vigil replay`).
//!
//! A [`TypedRecorded`] is what a fold needs of a [`RecordedEvent`](crate::RecordedEvent): its
//! coordinates, its actor, and its data as a [`Decoded<DomainEvent>`]. It is read from the
//! JSON the store keeps (and sends) without building a tree: the envelope's strings are
//! borrowed where they have no escapes, `data` is taken as raw JSON text and deserialised from
//! that text into its typed event, with no `serde_json::Value` in between.
//!
//! # Promises
//! - The envelope is read as strictly as `RecordedEvent` reads it (the same fields, unknown
//!   fields refused, `meta` included); bytes it refuses are refused here too, never a panic.
//! - `event` is what [`DomainEvent::decode`] gives for the same recorded event: the same
//!   upcasting, the same validation, the same [`Decoded::Unknown`] for a type, version or
//!   data this build cannot read (property-tested on generated logs in
//!   `dashboards/boards/src/tests/decode.rs`). The one difference: a key named twice in one
//!   object of `data` (which the store never writes: it canonicalises such data on append)
//!   is unreadable here, where the tree kept the last one.
//! - Deserialising needs a borrowing deserializer (`serde_json::from_slice` / `from_str`,
//!   which every reader of the store's bytes uses): `data` is borrowed as raw text.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, Error as _, Visitor};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::codec::{CodecError, Decoded};
use crate::domain::DomainEvent;
use crate::envelope::{EventId, StreamName};

/// A recorded event as a fold reads it: coordinates, actor and typed event.
#[derive(Debug, Clone, PartialEq)]
pub struct TypedRecorded {
    /// Writer-chosen id.
    pub id: EventId,
    /// The stream it belongs to.
    pub stream: StreamName,
    /// Global position, gap-free from 1.
    pub position: u64,
    /// Version within the stream.
    pub version: u64,
    /// When the store committed it (UTC).
    pub recorded_at: OffsetDateTime,
    /// `meta.actor`: who caused it.
    pub actor: Option<String>,
    /// The data read as its typed event at the current schema version, or why it cannot be.
    pub event: Decoded<DomainEvent>,
}

impl TypedRecorded {
    /// Reads one stored event (the JSON of a `RecordedEvent`).
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
    }

    /// Reads a `RecordedEvent` already decoded (by a test, or a tool that read it over NATS)
    /// the way a fold reads the store's bytes: it is encoded, then read back with
    /// [`TypedRecorded::decode`]. Fails only for an event the store could not have recorded
    /// (a `recorded_at` outside years 0–9999).
    pub fn from_recorded(event: &crate::RecordedEvent) -> Result<Self, CodecError> {
        let bytes = serde_json::to_vec(event).map_err(|e| CodecError::Malformed(e.to_string()))?;
        Self::decode(&bytes)
    }
}

/// A string borrowed from the input when it has no escapes, copied when it has.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V(std::marker::PhantomData))
    }
}

/// `RecordedEvent`'s fields, as borrowed as they can be.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    id: EventId,
    #[serde(borrow)]
    stream: Text<'a>,
    #[serde(rename = "type", borrow)]
    event_type: Text<'a>,
    v: u32,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, borrow)]
    meta: MetaRef<'a>,
    position: u64,
    version: u64,
    #[serde(with = "time::serde::rfc3339")]
    recorded_at: OffsetDateTime,
}

/// `Meta`'s fields, read as strictly (the same names, types and refusals), of which the fold
/// keeps only `actor`.
#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaRef<'a> {
    #[serde(default, borrow)]
    actor: Option<Text<'a>>,
    #[serde(default, borrow, rename = "role")]
    _role: Option<Text<'a>>,
    #[serde(default, borrow, rename = "source")]
    _source: Option<Text<'a>>,
    #[serde(default, rename = "correlation_id")]
    _correlation_id: Option<Uuid>,
    #[serde(default, rename = "causation_id")]
    _causation_id: Option<Uuid>,
    #[serde(default, borrow, rename = "appended_by")]
    _appended_by: Option<Text<'a>>,
}

impl<'de> Deserialize<'de> for TypedRecorded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let e = Envelope::deserialize(d)?;
        let stream = StreamName::parse(&e.stream.0).map_err(D::Error::custom)?;
        let event = match DomainEvent::decode_json(&e.event_type.0, e.v, e.data.get()) {
            Ok(event) => Decoded::Known(event),
            Err(reason) => Decoded::Unknown { reason },
        };
        Ok(Self {
            id: e.id,
            stream,
            position: e.position,
            version: e.version,
            recorded_at: e.recorded_at,
            actor: e.meta.actor.map(|a| a.0.into_owned()),
            event,
        })
    }
}
