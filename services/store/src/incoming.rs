//! The append request as the store reads it: decoded in place from the NATS payload into
//! typed envelopes whose `data` is the JSON the writer sent, checked, and written to the log
//! without being parsed into a tree and encoded again.
//!
//! # What it owns
//! - [`decode_append`]: the store's reading of an append request. It keeps every rule of
//!   [`events::codec::decode_append`] (same limits, same refusals, same messages; a property
//!   test holds the two together) but borrows `data` as a [`RawValue`] and keeps it as a slice
//!   of the payload ([`Bytes`], no copy).
//! - [`Append`] / [`Incoming`]: an append on its way to the writer.
//! - [`Incoming::encode_recorded`]: the recorded event's JSON, with `data` spliced in as it came.
//!
//! # What it promises
//! - **What is stored reads back as the same JSON value as before**: `data` is kept as sent
//!   only when it is already compact (no whitespace between tokens) and names no key twice in
//!   one object. Anything else (pretty-printed data, a key named twice) is parsed and encoded
//!   again exactly as the store always did (`serde_json::Value`: compact, the last of two
//!   equal keys wins), so a reader that parses the stored event gets the value it always got,
//!   and one event is always one line of JSON.
//! - `data` nested deeper than serde_json's limit (128) is refused, as the tree decode refused
//!   it: the store never writes an event its own readers cannot parse.
//! - Never panics on any input (property-tested); a refusal changes nothing.

use std::borrow::Cow;
use std::io::Write;

use bytes::Bytes;
use events::codec::{CodecError, KeysOnce, Limits};
use events::{AppendRequest, ExpectedVersion, Meta, StreamName};
use serde::de::Deserializer as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

/// An append to one stream, decoded and checked, waiting for the writer.
#[derive(Debug, Clone)]
pub struct Append {
    /// Target stream.
    pub stream: StreamName,
    /// Optimistic concurrency check.
    pub expected_version: ExpectedVersion,
    /// Events to append, in order (at least one).
    pub events: Vec<Incoming>,
    /// Stored only after this event ([`events::AppendRequest::after`]).
    pub after: Option<Uuid>,
}

/// One event of an [`Append`].
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Writer-chosen id; the idempotency key.
    pub id: Uuid,
    /// Event type name.
    pub event_type: String,
    /// Schema version of that type.
    pub v: u32,
    /// The payload: one compact JSON value (see the module docs), usually a slice of the
    /// request's bytes.
    pub data: Bytes,
    /// Actor, role, source, correlation and causation.
    pub meta: Meta,
}

impl From<AppendRequest> for Append {
    /// An append built in process (tools, tests): `data` encoded as the store always did.
    fn from(req: AppendRequest) -> Self {
        Self {
            stream: req.stream,
            expected_version: req.expected_version,
            after: req.after,
            events: req
                .events
                .into_iter()
                .map(|ev| Incoming {
                    id: ev.id,
                    event_type: ev.event_type,
                    v: ev.v,
                    // Serialising a `Value` cannot fail (its keys are strings).
                    data: Bytes::from(serde_json::to_vec(&ev.data).unwrap_or_default()),
                    meta: ev.meta,
                })
                .collect(),
        }
    }
}

/// The request as it is in the payload.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestIn<'a> {
    stream: StreamName,
    expected_version: ExpectedVersion,
    #[serde(borrow)]
    events: Vec<EventIn<'a>>,
    #[serde(default)]
    after: Option<Uuid>,
}

/// One event as it is in the payload; the field names and rules of [`events::NewEvent`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn<'a> {
    id: Uuid,
    #[serde(rename = "type", borrow)]
    event_type: Cow<'a, str>,
    v: u32,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default)]
    meta: Meta,
}

/// An event in the shape a writer sends it ([`events::NewEvent`]), to measure its size.
#[derive(Serialize)]
struct EventOut<'a> {
    id: &'a Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    v: u32,
    data: &'a RawValue,
    meta: &'a Meta,
}

/// Room for everything of an [`EventOut`] but its strings and `data`: the keys, quotes,
/// colons, commas and braces with every field of `meta` present, the id (38 bytes) and two
/// uuids of `meta`, the longest `u32` (10 digits); 248 bytes, with a margin.
const FIXED_BOUND: usize = 320;

/// A size `shape` cannot encode beyond: [`FIXED_BOUND`], `data` as it is, and each string at
/// its longest escaping (6 bytes per byte, `\u00XX`).
fn size_bound(shape: &EventOut<'_>) -> usize {
    // Every field named, so a field added to `Meta` does not compile until it is counted here.
    let Meta {
        actor,
        role,
        source,
        correlation_id: _,
        causation_id: _,
        appended_by,
    } = shape.meta;
    let strings: usize = [actor, role, source, appended_by]
        .iter()
        .map(|s| s.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + shape.event_type.len();
    FIXED_BOUND
        .saturating_add(shape.data.get().len())
        .saturating_add(strings.saturating_mul(6))
}

/// The exact size of `shape`'s JSON.
fn encoded_size(shape: &EventOut<'_>) -> usize {
    let mut size = Counter(0);
    match serde_json::to_writer(&mut size, shape) {
        Ok(()) => size.0,
        Err(_) => usize::MAX,
    }
}

/// Counts what is written to it.
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Decodes and checks an append request against `limits`, borrowing `data` from `payload`.
/// The rules and messages are those of [`events::codec::decode_append`].
pub fn decode_append(payload: &Bytes, limits: &Limits) -> Result<Append, CodecError> {
    let bytes: &[u8] = payload;
    if bytes.len() > limits.max_append_bytes {
        return Err(CodecError::TooLarge {
            what: "the append request".to_owned(),
            size: bytes.len(),
            limit: limits.max_append_bytes,
        });
    }
    // serde also accepts a struct written as an array; requests are objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(CodecError::Malformed(
            "the append request must be a JSON object".to_owned(),
        ));
    }
    let req: RequestIn<'_> =
        serde_json::from_slice(bytes).map_err(|e| CodecError::Malformed(e.to_string()))?;
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
    let mut events = Vec::with_capacity(req.events.len());
    for (i, ev) in req.events.into_iter().enumerate() {
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
        let canonical = match check_data(ev.data.get()) {
            DataShape::Compact => None,
            DataShape::Canonicalise => Some(canonical(ev.data)?),
            DataShape::Refused(why) => {
                return Err(CodecError::Malformed(format!("event {i}: data: {why}")));
            }
        };
        let data: &RawValue = canonical.as_deref().unwrap_or(ev.data);
        let shape = EventOut {
            id: &ev.id,
            event_type: &ev.event_type,
            v: ev.v,
            data,
            meta: &ev.meta,
        };
        // Measure what will be stored, in the shape the writer sent it, unless even its
        // longest possible encoding is within the limit (nearly every event: measuring is a
        // second encoding of the event).
        if size_bound(&shape) > limits.max_event_bytes {
            let size = encoded_size(&shape);
            if size > limits.max_event_bytes {
                return Err(CodecError::TooLarge {
                    what: format!("event {i} ({})", ev.id),
                    size,
                    limit: limits.max_event_bytes,
                });
            }
        }
        let data = match canonical {
            Some(owned) => Bytes::from(String::from(Box::<str>::from(owned)).into_bytes()),
            None => slice_of(payload, ev.data.get().as_bytes()),
        };
        events.push(Incoming {
            id: ev.id,
            event_type: ev.event_type.into_owned(),
            v: ev.v,
            data,
            meta: ev.meta,
        });
    }
    for (i, a) in events.iter().enumerate() {
        if events[..i].iter().any(|b| b.id == a.id) {
            return Err(CodecError::Rule(format!(
                "event id {} appears twice in one append",
                a.id
            )));
        }
    }
    Ok(Append {
        stream: req.stream,
        expected_version: req.expected_version,
        events,
        after: req.after,
    })
}

/// `part` as a slice of `whole` when it lies inside it (a value borrowed from the payload
/// always does), else a copy.
fn slice_of(whole: &Bytes, part: &[u8]) -> Bytes {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    match start.checked_add(part.len()) {
        Some(end) if start <= whole.len() && end <= whole.len() => whole.slice(start..end),
        _ => Bytes::copy_from_slice(part),
    }
}

/// What `data` needs before it is stored.
enum DataShape {
    /// Compact, every key once: stored as it came.
    Compact,
    /// Valid, but with whitespace between tokens or a key named twice in one object:
    /// stored as the store always encoded it.
    Canonicalise,
    /// Not storable (nested deeper than the readers can parse).
    Refused(String),
}

/// Looks at `data` (valid JSON, as serde_json has already read it once) without building it.
fn check_data(data: &str) -> DataShape {
    let mut de = serde_json::Deserializer::from_str(data);
    let keys_once = match de.deserialize_any(KeysOnce(())) {
        Ok(()) => true,
        Err(e) if e.is_data() => false,
        // The recursion limit (or anything else the tree decode would also have refused).
        Err(e) => {
            let text = e.to_string();
            let message = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m);
            return DataShape::Refused(message.to_owned());
        }
    };
    if keys_once && is_compact(data.as_bytes()) {
        DataShape::Compact
    } else {
        DataShape::Canonicalise
    }
}

/// `data` parsed into a tree and encoded again: what the store stored before it kept `data`
/// as sent.
fn canonical(data: &RawValue) -> Result<Box<RawValue>, CodecError> {
    let value: serde_json::Value =
        serde_json::from_str(data.get()).map_err(|e| CodecError::Malformed(e.to_string()))?;
    serde_json::value::to_raw_value(&value).map_err(|e| CodecError::Malformed(e.to_string()))
}

/// Whether valid JSON `bytes` has no whitespace outside its strings.
fn is_compact(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            return false;
        }
    }
    true
}

/// The recorded event, `data` aside, in the field order of [`events::RecordedEvent`].
#[derive(Serialize)]
struct RecordedHead<'a> {
    id: &'a Uuid,
    stream: &'a StreamName,
    #[serde(rename = "type")]
    event_type: &'a str,
    v: u32,
}

/// The recorded event's fields after `data`.
#[derive(Serialize)]
struct RecordedTail<'a> {
    meta: &'a Meta,
    position: u64,
    version: u64,
    recorded_at: &'a str,
}

impl Incoming {
    /// The event as recorded at `position`/`version` of `stream`: the JSON of
    /// [`events::RecordedEvent`] (same fields, same order), with `data` as it is held, and
    /// `recorded_at` already formatted as RFC 3339 (once per group).
    pub fn encode_recorded(
        &self,
        stream: &StreamName,
        position: u64,
        version: u64,
        recorded_at: &str,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut out = Vec::with_capacity(self.data.len() + 320);
        self.encode_recorded_into(&mut out, stream, position, version, recorded_at)?;
        Ok(out)
    }

    /// [`Incoming::encode_recorded`] appended to `out` (after what it holds already: the log
    /// writes the chain hash first).
    pub fn encode_recorded_into(
        &self,
        out: &mut Vec<u8>,
        stream: &StreamName,
        position: u64,
        version: u64,
        recorded_at: &str,
    ) -> Result<(), serde_json::Error> {
        serde_json::to_writer(
            &mut *out,
            &RecordedHead {
                id: &self.id,
                stream,
                event_type: &self.event_type,
                v: self.v,
            },
        )?;
        // `{…}` + `,"data":<data>,` + the tail's fields without its opening brace.
        out.pop();
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&self.data);
        out.push(b',');
        let tail_at = out.len();
        serde_json::to_writer(
            &mut *out,
            &RecordedTail {
                meta: &self.meta,
                position,
                version,
                recorded_at,
            },
        )?;
        out.remove(tail_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use events::{NewEvent, RecordedEvent};
    use proptest::prelude::*;
    use serde_json::json;
    use time::OffsetDateTime;

    fn event(data: &str) -> String {
        format!(
            r#"{{"id":"00000000-0000-4000-8000-000000000001","type":"T","v":1,"data":{data},"meta":{{"actor":"test"}}}}"#
        )
    }

    fn raw_request(events: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"stream":"incident-00000000-0000-4000-8000-000000000000","expected_version":"any","events":[{events}]}}"#
        ))
    }

    #[test]
    fn compact_data_is_kept_as_sent_and_borrowed_from_the_payload() {
        let payload = raw_request(&event(r#"{"z":1,"a":[true,null,"x y"],"n":1.50}"#));
        let append = decode_append(&payload, &Limits::default()).unwrap();
        let data = &append.events[0].data;
        assert_eq!(&data[..], br#"{"z":1,"a":[true,null,"x y"],"n":1.50}"#);
        let start = data.as_ptr() as usize - payload.as_ptr() as usize;
        assert!(
            start + data.len() <= payload.len(),
            "a slice of the payload"
        );
    }

    #[test]
    fn spaced_or_repeated_data_is_stored_as_the_tree_encoding_was() {
        for (sent, stored) in [
            (r#"{ "b" : 1 ,"a":[1, 2] }"#, r#"{"a":[1,2],"b":1}"#),
            (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
            (
                r#"{"x":{"a":1,"b":{"c":1,"c":3}}}"#,
                r#"{"x":{"a":1,"b":{"c":3}}}"#,
            ),
            ("\n7\n", "7"),
        ] {
            let payload = raw_request(&event(sent));
            let append = decode_append(&payload, &Limits::default()).unwrap();
            assert_eq!(
                std::str::from_utf8(&append.events[0].data).unwrap(),
                stored,
                "{sent}"
            );
        }
    }

    #[test]
    fn data_nested_beyond_what_readers_parse_is_refused() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let payload = raw_request(&event(&deep));
        assert!(matches!(
            decode_append(&payload, &Limits::default()),
            Err(CodecError::Malformed(m)) if m.contains("recursion limit")
        ));
        assert!(events::codec::decode_append(&payload, &Limits::default()).is_err());
    }

    #[test]
    fn the_recorded_encoding_is_the_recorded_event() {
        // Keys in the order a tree encodes them, so the two encodings are the same bytes.
        let payload = raw_request(&event(
            r#"{"n":[1,2.5,-3e-7],"title":"Gunfire \"near\" the compound é"}"#,
        ));
        let mut append = decode_append(&payload, &Limits::default()).unwrap();
        append.events[0].meta.appended_by = Some("incidents".into());
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let formatted = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let ev = &append.events[0];
        let ours = ev
            .encode_recorded(&append.stream, 7, 3, &formatted)
            .unwrap();
        let expected = RecordedEvent::record(
            NewEvent {
                id: ev.id,
                event_type: ev.event_type.clone(),
                v: ev.v,
                data: serde_json::from_slice(&ev.data).unwrap(),
                meta: ev.meta.clone(),
            },
            append.stream.clone(),
            7,
            3,
            at,
        );
        assert_eq!(
            String::from_utf8(ours.clone()).unwrap(),
            String::from_utf8(serde_json::to_vec(&expected).unwrap()).unwrap()
        );
        assert_eq!(events::codec::decode_recorded(&ours).unwrap(), expected);
    }

    #[test]
    fn in_process_appends_encode_data_as_before() {
        let req = AppendRequest {
            after: None,
            stream: StreamName::parse("incident-00000000-0000-4000-8000-000000000000").unwrap(),
            expected_version: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: Uuid::nil(),
                event_type: "T".into(),
                v: 1,
                data: json!({"b": 1, "a": "x"}),
                meta: Meta::default(),
            }],
        };
        let append = Append::from(req);
        assert_eq!(&append.events[0].data[..], br#"{"a":"x","b":1}"#);
    }

    fn data_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#"{"a":1}"#.to_owned()),
            Just(r#"{ "a" : [1, 2] }"#.to_owned()),
            Just(r#"{"a":1,"a":"x"}"#.to_owned()),
            "[a-z]{0,80}".prop_map(|s| format!(r#"{{"s":"{s}"}}"#)),
            Just("null".to_owned()),
        ]
    }

    proptest! {
        /// The bound that spares measuring an event is never below its measured size, for
        /// any strings (control characters, quotes and non-ASCII included) in every field.
        #[test]
        fn the_size_bound_is_never_below_the_size(
            event_type in any::<String>(),
            strings in proptest::collection::vec(proptest::option::of(any::<String>()), 4),
            uuids in proptest::collection::vec(proptest::option::of(any::<u128>()), 2),
            id in any::<u128>(),
            v in any::<u32>(),
            data in data_strategy(),
        ) {
            let meta = Meta {
                actor: strings[0].clone(),
                role: strings[1].clone(),
                source: strings[2].clone(),
                correlation_id: uuids[0].map(Uuid::from_u128),
                causation_id: uuids[1].map(Uuid::from_u128),
                appended_by: strings[3].clone(),
            };
            let data = RawValue::from_string(data).unwrap();
            let id = Uuid::from_u128(id);
            let shape = EventOut { id: &id, event_type: &event_type, v, data: &data, meta: &meta };
            prop_assert!(size_bound(&shape) >= encoded_size(&shape));
        }

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_append(&Bytes::from(bytes), &Limits::default());
        }

        /// The store's reading keeps the rules of `events::codec::decode_append`: the same
        /// requests are accepted or refused (with the same message), and what is stored
        /// parses back to what the tree held.
        #[test]
        fn agrees_with_the_tree_decoder(
            ids in proptest::collection::vec(0u8..4, 0..5),
            types in proptest::collection::vec("[A-Za-z]{0,3}", 5),
            actors in proptest::collection::vec(proptest::option::of("[ a]{0,3}"), 5),
            datas in proptest::collection::vec(data_strategy(), 5),
            max_event_bytes in 60usize..260,
        ) {
            let events: Vec<String> = ids.iter().enumerate().map(|(i, id)| {
                let meta = match &actors[i] {
                    Some(a) => format!(r#"{{"actor":"{a}"}}"#),
                    None => "{}".to_owned(),
                };
                format!(
                    r#"{{"id":"00000000-0000-4000-8000-0000000000{id:02}","type":"{}","v":1,"data":{},"meta":{meta}}}"#,
                    types[i], datas[i]
                )
            }).collect();
            let payload = raw_request(&events.join(","));
            let limits = Limits { max_event_bytes, max_append_bytes: 4096, max_events_per_append: 3 };
            let ours = decode_append(&payload, &limits);
            let tree = events::codec::decode_append(&payload, &limits);
            match (&ours, &tree) {
                (Ok(a), Ok(t)) => {
                    prop_assert_eq!(a.events.len(), t.events.len());
                    for (x, y) in a.events.iter().zip(&t.events) {
                        let stored: serde_json::Value = serde_json::from_slice(&x.data).unwrap();
                        prop_assert_eq!(&stored, &y.data);
                        prop_assert_eq!(x.id, y.id);
                        prop_assert_eq!(&x.meta, &y.meta);
                    }
                }
                (Err(a), Err(t)) => prop_assert_eq!(a.to_string(), t.to_string()),
                _ => prop_assert!(false, "ours {:?}, tree {:?}", ours.as_ref().err(), tree.as_ref().err()),
            }
        }
    }
}
