//! Target 2, **append**: `store::incoming::decode_append` — what the store's NATS handler
//! reads an append with (borrowed envelopes, `data` kept as sent) — and
//! `codec::decode_append`, the same rules over a `serde_json::Value` tree, on random bytes and
//! near-valid requests, under the default and under small limits: never a panic, the two
//! accept and refuse the same requests (except at a size limit, where `data` kept as sent may
//! measure a few bytes apart from its tree encoding), and whatever they accept keeps every
//! rule (1..max events, a 1-64 character type, an actor, the size limits, distinct ids). Then
//! the requests both refuse are published on `vigil.store.append` to the running store: each
//! gets a typed `invalid` reply, the log head does not move, the store stays up, and a valid
//! append still works afterwards.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use events::codec::{self, Limits};
use events::{AppendReply, ErrorCode};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};
use tokio::task::JoinSet;
use uuid::Uuid;

use super::catalog::Catalog;
use super::shrink::fuzz_sync;
use super::values::{apply, damage, edge_numbers, json_value, key};
use super::{Tally, WIRE_IN_FLIGHT, clip};
use crate::centre::Centre;

/// An append request's bytes and the limits to read it under (`None`: the store's defaults).
#[derive(Debug, Clone)]
struct AppendInput {
    payload: Vec<u8>,
    limits: Option<(usize, usize, usize)>,
}

fn append_input(c: &Arc<Catalog>) -> BoxedStrategy<AppendInput> {
    let value = json_value(c);
    let type_names: Vec<String> = c.types.iter().map(|t| t.name.to_owned()).collect();
    let stream = prop_oneof![
        6 => (proptest::sample::select(c.words.clone()), any::<u128>())
            .prop_map(|(cat, id)| Value::from(format!("{cat}-{}", Uuid::from_u128(id)))),
        3 => any::<u128>().prop_map(|id| Value::from(format!("chaos-{}", Uuid::from_u128(id)))),
        1 => value.clone(),
    ];
    let expected = prop_oneof![
        3 => Just(json!("any")),
        2 => Just(json!("no_stream")),
        2 => proptest::sample::select(edge_numbers()),
        1 => value.clone(),
    ];
    let id = prop_oneof![
        8 => any::<u128>().prop_map(|n| Value::from(Uuid::from_u128(n).to_string())),
        1 => value.clone(),
    ];
    let event_type = prop_oneof![
        6 => proptest::sample::select(type_names),
        1 => Just(String::new()),
        1 => Just("T".repeat(65)),
        1 => "\\PC{0,70}",
    ]
    .prop_map(Value::from);
    let actor = prop_oneof![
        6 => Just(json!({"actor": "fuzz"})),
        1 => Just(json!({})),
        1 => Just(json!({"actor": "   "})),
        1 => Just(json!({"actor": "a".repeat(129)})),
        1 => Just(json!({"actor": "fuzz", "admin": true})),
        1 => value.clone(),
    ];
    let event = (
        id,
        event_type,
        prop_oneof![6 => Just(json!(1)), 1 => proptest::sample::select(edge_numbers())],
        value.clone(),
        actor,
        proptest::option::weighted(0.1, (key(c), value.clone())),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec!["id", "type", "v", "data", "meta"]),
        ),
    )
        .prop_map(|(id, t, v, data, meta, extra, drop)| {
            let mut e = json!({"id": id, "type": t, "v": v, "data": data, "meta": meta});
            if let Some(obj) = e.as_object_mut() {
                if let Some((k, x)) = extra {
                    obj.insert(k, x);
                }
                if let Some(k) = drop {
                    obj.remove(k);
                }
            }
            e
        });
    let limits = proptest::option::weighted(0.3, (1usize..400, 1usize..3000, 1usize..4));
    (
        stream,
        expected,
        vec(event, 0..5),
        any::<bool>(),
        proptest::option::weighted(0.1, (key(c), value.clone())),
        damage(),
        limits,
    )
        .prop_map(
            |(stream, expected, mut events, twice, extra, damage, limits)| {
                if twice && let Some(first) = events.first().cloned() {
                    // The same event twice in one append.
                    events.push(first);
                }
                let mut req =
                    json!({"stream": stream, "expected_version": expected, "events": events});
                if let (Some((k, x)), Some(obj)) = (extra, req.as_object_mut()) {
                    obj.insert(k, x);
                }
                AppendInput {
                    payload: apply(&damage, codec::encode(&req)),
                    limits,
                }
            },
        )
        .boxed()
}

fn append_limits(input: &AppendInput) -> Limits {
    input
        .limits
        .map_or_else(Limits::default, |(e, a, n)| Limits {
            max_event_bytes: e,
            max_append_bytes: a,
            max_events_per_append: n,
        })
}

/// The store's `decode_append` and the codec's never panic, agree, and what they accept keeps
/// every rule.
fn check_append(input: &AppendInput) -> Result<&'static str, String> {
    let limits = append_limits(input);
    let ours = store::incoming::decode_append(&Bytes::copy_from_slice(&input.payload), &limits);
    let size_only = |e: &codec::CodecError| matches!(e, codec::CodecError::TooLarge { .. });
    let req = match (codec::decode_append(&input.payload, &limits), ours) {
        (Err(_), Err(_)) => return Ok("refused"),
        (Ok(_), Err(e)) | (Err(e), Ok(_)) if size_only(&e) => return Ok("refused"),
        (Ok(_), Err(e)) => {
            return Err(format!(
                "the store's decoder refused a request the codec accepts: {e}"
            ));
        }
        (Err(e), Ok(_)) => {
            return Err(format!(
                "the store's decoder accepted a request the codec refuses: {e}"
            ));
        }
        (Ok(req), Ok(ours)) => {
            if ours.events.len() != req.events.len()
                || ours.events.iter().zip(&req.events).any(|(o, r)| {
                    o.id != r.id
                        || serde_json::from_slice::<Value>(&o.data).ok().as_ref() != Some(&r.data)
                })
            {
                return Err(
                    "the store's decoder read other events (ids or data) than the codec".into(),
                );
            }
            req
        }
    };
    let mut broken = Vec::new();
    if input.payload.len() > limits.max_append_bytes {
        broken.push(format!(
            "{} bytes over the {}-byte limit",
            input.payload.len(),
            limits.max_append_bytes
        ));
    }
    if req.events.is_empty() || req.events.len() > limits.max_events_per_append {
        broken.push(format!("{} events", req.events.len()));
    }
    for (i, e) in req.events.iter().enumerate() {
        if e.event_type.is_empty() || e.event_type.len() > 64 {
            broken.push(format!("event {i}: type of {} bytes", e.event_type.len()));
        }
        if e.meta.actor.as_deref().is_none_or(|a| a.trim().is_empty()) {
            broken.push(format!("event {i}: no actor"));
        }
        let size = serde_json::to_vec(e).map_or(usize::MAX, |b| b.len());
        if size > limits.max_event_bytes {
            broken.push(format!("event {i}: {size} bytes"));
        }
        if req.events[..i].iter().any(|o| o.id == e.id) {
            broken.push(format!("event {i}: id repeated"));
        }
    }
    if broken.is_empty() {
        Ok("accepted")
    } else {
        Err(format!(
            "decode_append accepted a request that breaks its rules: {}",
            broken.join("; ")
        ))
    }
}

pub(super) fn fuzz_append_decoder(
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
) -> Tally {
    let mut tally = Tally::new("append");
    fuzz_sync(
        &mut tally,
        &mut runner,
        &append_input(c),
        budget,
        check_append,
    );
    let in_process = tally.cases;
    tally.notes.insert("in process", in_process);
    tally
}

/// Publishes refused requests to the running store: typed `invalid` replies, the head
/// unmoved, the store alive, and a valid append still accepted afterwards.
pub(super) async fn fuzz_append_wire(
    centre: &Centre,
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let client = runtime::nats::connect(
        &centre.nats_url(),
        "chaos-fuzz",
        None,
        runtime::nats::Mode::Tool,
    )
    .await?;
    let store = runtime::StoreClient::new(client.clone(), Duration::from_secs(5));
    // The store decodes before it checks the subject's category, so any category will do:
    // every payload sent here is refused by the decoder.
    let subject = format!(
        "{}.{}.fuzz",
        events::subjects::STORE_APPEND,
        store.appender()
    );
    let (_, head_before) = store
        .read(u64::MAX, 1)
        .await
        .map_err(|e| anyhow::anyhow!("reading the head: {e}"))?;
    let strategy = append_input(c);
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<(), String>> = JoinSet::new();
    let mut sent = 0u64;
    let limits = Limits::default();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let mut input = tree.current();
        // Only what the decoder refuses (with the store's own limits), so nothing may land.
        input.limits = None;
        if input.payload.len() > 512 * 1024
            || codec::decode_append(&input.payload, &limits).is_ok()
            || store::incoming::decode_append(&Bytes::copy_from_slice(&input.payload), &limits)
                .is_ok()
        {
            continue;
        }
        while in_flight.len() >= WIRE_IN_FLIGHT {
            settle(&mut in_flight, tally).await;
        }
        sent += 1;
        let client = client.clone();
        let subject = subject.clone();
        in_flight.spawn(async move {
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject, input.payload.clone().into()),
            )
            .await;
            let what = || clip(&String::from_utf8_lossy(&input.payload), 300);
            match answer {
                Err(_) => Err(format!("no answer within 5 s to {}", what())),
                Ok(Err(e)) => Err(format!("request failed ({e}) for {}", what())),
                Ok(Ok(msg)) => match serde_json::from_slice::<AppendReply>(&msg.payload) {
                    Ok(AppendReply::Error(e)) if e.code == ErrorCode::Invalid => Ok(()),
                    Ok(other) => Err(format!(
                        "answered {other:?} to an invalid request: {}",
                        what()
                    )),
                    Err(e) => Err(format!(
                        "an answer that is not an AppendReply ({e}): {}",
                        clip(&String::from_utf8_lossy(&msg.payload), 200)
                    )),
                },
            }
        });
    }
    while !in_flight.is_empty() {
        settle(&mut in_flight, tally).await;
    }
    tally.notes.insert("on the wire", sent);
    let (_, head_after) = store
        .read(u64::MAX, 1)
        .await
        .map_err(|e| anyhow::anyhow!("the store does not answer after the fuzzing: {e}"))?;
    if head_after != head_before {
        tally.fail(format!(
            "the log head moved from {head_before} to {head_after} under invalid appends only"
        ));
    }
    // A valid append still works.
    let stream = events::StreamName::parse(&format!("chaos-{}", Uuid::new_v4()))?;
    let ok = store
        .append(&events::AppendRequest {
            after: None,
            stream,
            expected_version: events::ExpectedVersion::NoStream,
            events: vec![events::NewEvent {
                id: Uuid::new_v4(),
                event_type: "ChaosFuzzed".into(),
                v: 1,
                data: json!({}),
                meta: events::Meta {
                    actor: Some("chaos-fuzz".into()),
                    ..events::Meta::default()
                },
            }],
        })
        .await
        .map_err(|e| anyhow::anyhow!("a valid append after the fuzzing failed: {e}"))?;
    if ok.first_position != head_after + 1 {
        tally.fail(format!(
            "a valid append after the fuzzing landed at {} with the head at {head_after}",
            ok.first_position
        ));
    }
    tally.cases += sent;
    Ok(())
}

/// Waits for one request in flight and counts its verdict.
async fn settle(set: &mut JoinSet<Result<(), String>>, tally: &mut Tally) {
    match set.join_next().await {
        Some(Ok(Ok(()))) | None => {}
        Some(Ok(Err(e))) => tally.fail(e),
        Some(Err(e)) => tally.fail(format!("the fuzzer's own task failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::fuzz::runner;
    use crate::fuzz::shrink::install_panic_hook;

    #[test]
    fn a_few_thousand_append_cases_pass() {
        install_panic_hook();
        let c = Arc::new(Catalog::learn());
        let append = fuzz_append_decoder(&c, runner(7, 2), Duration::from_millis(500));
        assert!(append.cases > 100 && append.failures == 0, "{append:?}");
    }
}
