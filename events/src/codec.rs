//! JSON codecs with size limits, and the upcasting hook.
//!
//! Promises: decoding never panics on any input (property-tested); a request over a limit is
//! refused before it is parsed in full where the size is known up front; an event of an old
//! schema version is upcast to the current one before it is read as a typed event; an event
//! whose type (or version) this build does not know is kept as raw JSON ([`Decoded::Unknown`]),
//! never dropped.

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::envelope::RecordedEvent;
use crate::store_api::{AppendRequest, StoreError};

/// Size limits of the store's append API. All configurable; the defaults fit field reports
/// with a long description and a batch of a few hundred events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single event, as JSON bytes (type, data and meta).
    pub max_event_bytes: usize,
    /// Largest append request, as JSON bytes.
    pub max_append_bytes: usize,
    /// Most events in one append.
    pub max_events_per_append: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            max_append_bytes: 1024 * 1024,
            max_events_per_append: 500,
        }
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Over a size limit.
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not the expected JSON shape (syntax, unknown fields, wrong types, bad values).
    #[error("malformed request: {0}")]
    Malformed(String),
    /// Well-formed but breaks a rule (empty batch, too many events).
    #[error("{0}")]
    Rule(String),
}

impl From<CodecError> for StoreError {
    fn from(e: CodecError) -> Self {
        StoreError::invalid(e.to_string())
    }
}

/// Reads a `T` out of a JSON tree; the error names the field that is wrong
/// (`location.lat: invalid type: string "x", expected f64`), so a person can fix it.
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, String> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Decodes any JSON request, refusing it if it is larger than `max_bytes`.
pub fn decode_json<T: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
    max_bytes: usize,
) -> Result<T, CodecError> {
    if bytes.len() > max_bytes {
        return Err(CodecError::TooLarge {
            what: what.to_owned(),
            size: bytes.len(),
            limit: max_bytes,
        });
    }
    // serde also accepts a struct written as an array; requests are objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(CodecError::Malformed(format!(
            "{what} must be a JSON object"
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Checks that no JSON object in `bytes` names a key twice, and says which key (with its
/// path, e.g. `location.lat`) if one does. serde_json keeps the last of two equal keys of a
/// map without a word, and a derived struct refuses them only where it reads a struct: a body
/// with `"country": "SO", …, "country": "KE"` would mean one thing to this service and
/// another to a proxy, a log reader or a client library that keeps the first. Malformed JSON
/// is left for the real parse to report.
pub fn unique_keys(bytes: &[u8]) -> Result<(), String> {
    use serde::de::Deserializer as _;

    let mut de = serde_json::Deserializer::from_slice(bytes);
    match de.deserialize_any(KeysOnce(Path(String::new()))) {
        Ok(()) => Ok(()),
        // A syntax or depth error: the typed parse that follows reports it in its own words.
        Err(e) if !e.is_data() => Ok(()),
        Err(e) => {
            // serde_json appends " at line L column C" to a custom message; keep ours only.
            let text = e.to_string();
            let message = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m);
            Err(message.to_owned())
        }
    }
}

/// What a [`KeysOnce`] walk keeps of where it is in the value, and how it words a key named
/// twice there.
pub trait Place: Sized {
    /// The place of element `i` of the array here.
    fn element(&self, i: usize) -> Self;
    /// The place of `key`'s value in the object here.
    fn field(&self, key: &str) -> Self;
    /// The error for a key named twice, this being the place of its (second) value.
    fn named_twice<E: serde::de::Error>(self) -> E;
}

/// Keeps nothing: the walk allocates nothing but for objects of many keys, and a key named
/// twice is one fixed data error.
impl Place for () {
    fn element(&self, _: usize) -> Self {}
    fn field(&self, _: &str) -> Self {}
    fn named_twice<E: serde::de::Error>(self) -> E {
        E::custom("a key appears twice in one object")
    }
}

/// The path from the top (`legs[1].to`), so the error names the key a person must fix.
struct Path(String);

impl Place for Path {
    fn element(&self, i: usize) -> Self {
        Path(format!("{}[{i}]", self.0))
    }
    fn field(&self, key: &str) -> Self {
        if self.0.is_empty() {
            Path(key.to_owned())
        } else {
            Path(format!("{}.{key}", self.0))
        }
    }
    fn named_twice<E: serde::de::Error>(self) -> E {
        E::custom(format_args!(
            "{}: this key appears twice in one object; send it once",
            self.0
        ))
    }
}

/// Walks one JSON value without building it, failing (with a data error, worded by the
/// [`Place`]) at the first object that names a key twice. Keys without escapes are compared
/// in place. Deserialize with it: `deserializer.deserialize_any(KeysOnce(()))`.
pub struct KeysOnce<P>(pub P);

impl<'de, P: Place> serde::de::DeserializeSeed<'de> for KeysOnce<P> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, P: Place> serde::de::Visitor<'de> for KeysOnce<P> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while seq
            .next_element_seed(KeysOnce(self.0.element(i)))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use std::borrow::Cow;
        // Objects are small; a list beats a hash set until they are not.
        let mut seen: Vec<Cow<'de, str>> = Vec::new();
        let mut set: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let at = self.0.field(&key);
            let repeated = match &mut set {
                Some(set) => !set.insert(key),
                None if seen.len() >= 16 => {
                    let mut all: std::collections::HashSet<_> = seen.drain(..).collect();
                    let repeated = !all.insert(key);
                    set = Some(all);
                    repeated
                }
                None => {
                    let repeated = seen.contains(&key);
                    seen.push(key);
                    repeated
                }
            };
            if repeated {
                return Err(at.named_twice());
            }
            map.next_value_seed(KeysOnce(at))?;
        }
        Ok(())
    }
}

/// Decodes and checks an append request against `limits`.
pub fn decode_append(bytes: &[u8], limits: &Limits) -> Result<AppendRequest, CodecError> {
    let req: AppendRequest = decode_json(bytes, "the append request", limits.max_append_bytes)?;
    if req.events.is_empty() {
        return Err(CodecError::Rule(
            "an append needs at least one event".into(),
        ));
    }
    if req.events.len() > limits.max_events_per_append {
        return Err(CodecError::Rule(format!(
            "an append may carry at most {} events, this one has {}; split it into several appends",
            limits.max_events_per_append,
            req.events.len()
        )));
    }
    for (i, ev) in req.events.iter().enumerate() {
        if ev.event_type.is_empty() || ev.event_type.len() > 64 {
            return Err(CodecError::Rule(format!(
                "event {i}: type must be 1-64 characters"
            )));
        }
        // The log is the audit trail: every event says who caused it.
        match ev.meta.actor.as_deref() {
            Some(a) if !a.trim().is_empty() && a.chars().count() <= 128 => {}
            _ => {
                return Err(CodecError::Rule(format!(
                    "event {i}: meta.actor must name the authenticated user or service (1-128 characters)"
                )));
            }
        }
        // Serialising a value we just parsed cannot fail; measure what will be stored.
        let size = serde_json::to_vec(ev)
            .map(|b| b.len())
            .unwrap_or(usize::MAX);
        if size > limits.max_event_bytes {
            return Err(CodecError::TooLarge {
                what: format!("event {i} ({})", ev.id),
                size,
                limit: limits.max_event_bytes,
            });
        }
    }
    for (i, a) in req.events.iter().enumerate() {
        if req.events[..i].iter().any(|b| b.id == a.id) {
            return Err(CodecError::Rule(format!(
                "event id {} appears twice in one append",
                a.id
            )));
        }
    }
    Ok(req)
}

/// Decodes a recorded event (as the store publishes and returns it).
pub fn decode_recorded(bytes: &[u8]) -> Result<RecordedEvent, CodecError> {
    serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Encodes any value to JSON bytes. Serialising our own types cannot fail (no maps with
/// non-string keys, no failing `Serialize` impls), so a failure here is a bug, reported as
/// a JSON error object rather than a panic.
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        format!(r#"{{"error":{{"code":"invalid","message":"encoding failed: {e}"}}}}"#).into_bytes()
    })
}

/// One step of schema evolution: turns `data` of `event_type` at version `from_v` into the
/// data of version `from_v + 1`. Old versions are frozen: a step is written once and kept.
#[derive(Clone, Copy)]
pub struct Upcaster {
    /// The event type this step applies to.
    pub event_type: &'static str,
    /// The version it upgrades from.
    pub from_v: u32,
    /// The transformation.
    pub up: fn(Value) -> Result<Value, String>,
}

impl std::fmt::Debug for Upcaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Upcaster({} v{})", self.event_type, self.from_v)
    }
}

/// Runs the upcasting chain until `data` is at `current_v`. Returns an error when a step is
/// missing or fails, or when `v` is newer than this build knows.
pub fn upcast(
    table: &[Upcaster],
    event_type: &str,
    mut v: u32,
    current_v: u32,
    mut data: Value,
) -> Result<Value, String> {
    if v > current_v {
        return Err(format!(
            "{event_type} v{v} is newer than this build knows (v{current_v})"
        ));
    }
    while v < current_v {
        let step = table
            .iter()
            .find(|u| u.event_type == event_type && u.from_v == v)
            .ok_or_else(|| format!("no upcaster for {event_type} v{v}"))?;
        data = (step.up)(data)?;
        v += 1;
    }
    Ok(data)
}

/// The result of reading a recorded event as a typed domain event.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded<T> {
    /// A type this build knows, upcast to its current version.
    Known(T),
    /// A type or version this build does not know, or data it cannot read: kept as it was
    /// written so it can be shown and re-read by a newer build.
    Unknown {
        /// Why it could not be read as a known event.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_named_twice_is_found_with_its_path() {
        assert_eq!(
            unique_keys(br#"{"a": 1, "b": {"c": [1, {"d": 2}]}}"#),
            Ok(())
        );
        // The same key in two different objects is fine.
        assert_eq!(unique_keys(br#"[{"a": 1}, {"a": 2}]"#), Ok(()));
        assert_eq!(
            unique_keys(br#"{"country": "SO", "title": "x", "country": "KE"}"#),
            Err("country: this key appears twice in one object; send it once".into())
        );
        assert_eq!(
            unique_keys(br#"{"location": {"lat": 1, "lat": 2}}"#).unwrap_err(),
            "location.lat: this key appears twice in one object; send it once"
        );
        assert!(
            unique_keys(br#"{"legs": [{"to": 1}, {"to": 1, "to": 2}]}"#)
                .unwrap_err()
                .starts_with("legs[1].to:")
        );
        // An escaped key is the same key.
        assert!(unique_keys(br#"{"id": 1, "\u0069d": 2}"#).is_err());
        // Malformed JSON is for the real parse to report.
        assert_eq!(unique_keys(b"{\"a\": "), Ok(()));
        assert_eq!(unique_keys(&[b'['; 10_000]), Ok(()));
    }

    proptest::proptest! {
        #[test]
        fn unique_keys_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = unique_keys(&bytes);
        }

        #[test]
        fn a_serialised_map_has_unique_keys(
            m in proptest::collection::btree_map("[a-z\u{E9}]{0,4}", proptest::prelude::any::<i32>(), 0..8)
        ) {
            let bytes = serde_json::to_vec(&m).unwrap_or_default();
            proptest::prop_assert_eq!(unique_keys(&bytes), Ok(()));
        }
    }

    fn rename_field(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("not an object")?;
        let old = obj.remove("name").ok_or("missing name")?;
        obj.insert("title".into(), old);
        Ok(v)
    }

    fn add_default(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("not an object")?;
        obj.entry("severity").or_insert(json!(3));
        Ok(v)
    }

    const TABLE: &[Upcaster] = &[
        Upcaster {
            event_type: "Thing",
            from_v: 1,
            up: rename_field,
        },
        Upcaster {
            event_type: "Thing",
            from_v: 2,
            up: add_default,
        },
    ];

    #[test]
    fn upcasting_runs_the_chain_in_order() {
        let out = upcast(TABLE, "Thing", 1, 3, json!({"name": "x"})).unwrap();
        assert_eq!(out, json!({"title": "x", "severity": 3}));
        let same = upcast(TABLE, "Thing", 3, 3, json!({"title": "y"})).unwrap();
        assert_eq!(same, json!({"title": "y"}));
        assert!(upcast(TABLE, "Thing", 4, 3, json!({})).is_err());
        assert!(upcast(TABLE, "Other", 1, 2, json!({})).is_err());
    }

    #[test]
    fn append_limits_are_enforced() {
        let limits = Limits {
            max_event_bytes: 200,
            max_append_bytes: 2000,
            max_events_per_append: 2,
        };
        let ev = |id: u8, data: &str| json!({"id": format!("00000000-0000-4000-8000-0000000000{id:02}"), "type": "T", "v": 1, "data": {"x": data}, "meta": {"actor": "test"}});
        let stream = "incident-00000000-0000-4000-8000-000000000000";
        let req = |events: Vec<Value>| {
            serde_json::to_vec(
                &json!({"stream": stream, "expected_version": "any", "events": events}),
            )
            .unwrap()
        };
        assert!(decode_append(&req(vec![ev(1, "a")]), &limits).is_ok());
        let anonymous =
            json!({"id": "00000000-0000-4000-8000-000000000009", "type": "T", "v": 1, "data": {}});
        assert!(
            matches!(decode_append(&req(vec![anonymous]), &limits), Err(CodecError::Rule(m)) if m.contains("meta.actor"))
        );
        let blank = json!({"id": "00000000-0000-4000-8000-000000000009", "type": "T", "v": 1, "data": {}, "meta": {"actor": "  "}});
        assert!(matches!(
            decode_append(&req(vec![blank]), &limits),
            Err(CodecError::Rule(_))
        ));
        assert!(matches!(
            decode_append(&req(vec![]), &limits),
            Err(CodecError::Rule(_))
        ));
        assert!(matches!(
            decode_append(&req(vec![ev(1, "a"), ev(2, "b"), ev(3, "c")]), &limits),
            Err(CodecError::Rule(_))
        ));
        assert!(matches!(
            decode_append(&req(vec![ev(1, &"x".repeat(300))]), &limits),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(matches!(
            decode_append(&req(vec![ev(1, "a"), ev(1, "a")]), &limits),
            Err(CodecError::Rule(_))
        ));
        assert!(matches!(
            decode_append(&vec![b' '; 2001], &limits),
            Err(CodecError::TooLarge { .. })
        ));
        let unknown = serde_json::to_vec(&json!({"stream": stream, "expected_version": "any", "events": [ev(1, "a")], "extra": 1})).unwrap();
        assert!(matches!(
            decode_append(&unknown, &limits),
            Err(CodecError::Malformed(_))
        ));
    }
}
