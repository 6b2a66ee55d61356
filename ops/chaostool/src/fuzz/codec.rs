//! Target 1, **codec** (in process): `codec::decode_recorded`, `codec::decode_json` and
//! `DomainEvent::decode` of arbitrary bytes, of JSON text (whole, cut short, nested
//! thousands deep) and of recorded events with a random or near-valid type, version and
//! data. Never a panic; an unknown type or a version newer than the build is
//! `Decoded::Unknown` with a reason; a `Known` event is valid and survives a round trip
//! through the log's envelope unchanged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use events::codec::{self, Limits};
use events::domain::DomainEvent;
use events::{Decoded, RecordedEvent};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use uuid::Uuid;

use super::Tally;
use super::catalog::Catalog;
use super::shrink::fuzz_sync;
use super::values::{Damage, apply, damage, event_data, json_value, nested, seeded_event};

#[derive(Debug, Clone)]
enum CodecInput {
    /// Anything.
    Bytes(Vec<u8>),
    /// A JSON value's text, perhaps damaged.
    Json(Value, Damage),
    /// Nesting `n` deep.
    Deep(usize, bool, bool),
    /// A recorded event with a random type, version and data; `envelope` changes one field
    /// of the envelope (`None`: the envelope is well-formed).
    Recorded {
        event_type: String,
        v: u32,
        data: Value,
        envelope: Option<(String, Option<Value>)>,
        damage: Damage,
    },
}

fn codec_input(c: &Arc<Catalog>) -> BoxedStrategy<CodecInput> {
    let envelope_keys = proptest::sample::select(vec![
        "id",
        "stream",
        "type",
        "v",
        "data",
        "meta",
        "position",
        "version",
        "recorded_at",
        "extra",
    ]);
    let envelope = proptest::option::weighted(
        0.15,
        (
            envelope_keys.prop_map(str::to_owned),
            proptest::option::of(json_value(c)),
        ),
    );
    prop_oneof![
        2 => vec(any::<u8>(), 0..512).prop_map(CodecInput::Bytes),
        2 => (json_value(c), damage()).prop_map(|(v, d)| CodecInput::Json(v, d)),
        1 => (1usize..20_000, any::<bool>(), any::<bool>()).prop_map(|(n, o, c)| CodecInput::Deep(n, o, c)),
        8 => (prop_oneof![1 => event_data(c), 2 => seeded_event(c)], envelope, damage()).prop_map(
            |((event_type, v, data), envelope, damage)| {
                CodecInput::Recorded { event_type, v, data, envelope, damage }
            },
        ),
    ]
    .boxed()
}

fn recorded_json(event_type: &str, v: u32, data: &Value) -> Value {
    let category = DomainEvent::TYPES
        .iter()
        .find(|(t, _, _)| *t == event_type)
        .map_or("incident", |(_, c, _)| *c);
    json!({
        "id": Uuid::from_u128(0x0190_a5d2_7f3e_7c1a_9b1e_1a2b_3c4d_5e6f),
        "stream": format!("{category}-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f"),
        "type": event_type,
        "v": v,
        "data": data,
        "meta": {"actor": "fuzz", "source": "http"},
        "position": 1,
        "version": 1,
        "recorded_at": "2026-11-27T03:00:00Z",
    })
}

fn check_codec(input: &CodecInput) -> Result<&'static str, String> {
    let limits = Limits::default();
    match input {
        CodecInput::Bytes(bytes) => check_bytes(bytes, &limits),
        CodecInput::Json(v, d) => check_bytes(&apply(d, codec::encode(v)), &limits),
        CodecInput::Deep(n, objects, closed) => {
            check_bytes(&nested(*n, *objects, *closed), &limits)
        }
        CodecInput::Recorded {
            event_type,
            v,
            data,
            envelope,
            damage,
        } => {
            let mut env = recorded_json(event_type, *v, data);
            if let (Some((k, replacement)), Some(obj)) = (envelope, env.as_object_mut()) {
                match replacement {
                    Some(x) => obj.insert(k.clone(), x.clone()),
                    None => obj.remove(k),
                };
            }
            let bytes = apply(damage, codec::encode(&env));
            let well_formed = envelope.is_none() && matches!(damage, Damage::None);
            match codec::decode_recorded(&bytes) {
                Ok(rec) => check_recorded(&rec),
                Err(e) if well_formed => Err(format!(
                    "a well-formed recorded event was refused by decode_recorded: {e}"
                )),
                Err(_) => Ok("refused"),
            }
        }
    }
}

/// Arbitrary bytes through every decoder of the codec.
fn check_bytes(bytes: &[u8], limits: &Limits) -> Result<&'static str, String> {
    let _ = codec::decode_json::<Value>(bytes, "fuzz", limits.max_append_bytes);
    let _ = codec::decode_json::<RecordedEvent>(bytes, "fuzz", limits.max_append_bytes);
    let _ = codec::decode_append(bytes, limits);
    let _ = store::incoming::decode_append(&Bytes::copy_from_slice(bytes), limits);
    match codec::decode_recorded(bytes) {
        Ok(rec) => check_recorded(&rec),
        Err(_) => Ok("refused"),
    }
}

/// A recorded event through `DomainEvent::decode`: `Unknown` with a reason, or a valid known
/// event that survives the round trip.
fn check_recorded(rec: &RecordedEvent) -> Result<&'static str, String> {
    let current = DomainEvent::current_version(&rec.event_type);
    match DomainEvent::decode(rec) {
        Decoded::Unknown { reason } if reason.trim().is_empty() => Err(format!(
            "{} v{}: Unknown without a reason",
            rec.event_type, rec.v
        )),
        Decoded::Unknown { .. } => Ok("unknown"),
        Decoded::Known(e) => {
            let Some(current) = current else {
                return Err(format!(
                    "type {:?} is not in DomainEvent::TYPES but decoded as {}",
                    rec.event_type,
                    e.event_type()
                ));
            };
            if rec.v > current {
                return Err(format!(
                    "{} v{} is newer than this build (v{current}) but decoded as known",
                    rec.event_type, rec.v
                ));
            }
            if e.event_type() != rec.event_type {
                return Err(format!(
                    "{} decoded as a {}",
                    rec.event_type,
                    e.event_type()
                ));
            }
            if let Err(v) = e.validate() {
                return Err(format!(
                    "{} v{} decoded as known but does not validate: {v}",
                    rec.event_type, rec.v
                ));
            }
            // Written back as the current version and read again: the same event.
            let again = RecordedEvent::record(
                e.to_new_event(rec.id, rec.meta.clone()),
                rec.stream.clone(),
                rec.position,
                rec.version,
                rec.recorded_at,
            );
            let back = codec::decode_recorded(&codec::encode(&again))
                .map_err(|x| format!("{}: re-encoded event unreadable: {x}", rec.event_type))?;
            match DomainEvent::decode(&back) {
                Decoded::Known(e2) if e2 == e => Ok("known"),
                Decoded::Known(e2) => Err(format!(
                    "{} v{}: round trip changed the event: {e:?} became {e2:?}",
                    rec.event_type, rec.v
                )),
                Decoded::Unknown { reason } => Err(format!(
                    "{} v{}: decoded as known, but once written back it is unknown: {reason}",
                    rec.event_type, rec.v
                )),
            }
        }
    }
}

pub(super) fn fuzz_codec(c: &Arc<Catalog>, mut runner: TestRunner, budget: Duration) -> Tally {
    let mut tally = Tally::new("codec");
    fuzz_sync(
        &mut tally,
        &mut runner,
        &codec_input(c),
        budget,
        check_codec,
    );
    tally
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fuzz::runner;
    use crate::fuzz::shrink::install_panic_hook;

    #[test]
    fn a_few_thousand_codec_cases_pass() {
        install_panic_hook();
        let c = Arc::new(Catalog::learn());
        let codec = fuzz_codec(&c, runner(7, 1), Duration::from_millis(500));
        assert!(codec.cases > 100 && codec.failures == 0, "{codec:?}");
    }
}
