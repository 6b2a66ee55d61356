//! The store's NATS API against a real nats-server and a real fjall directory.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use events::codec::Limits;
use events::store_api::{AppendOk, ErrorCode};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::{ClientError, StoreClient};
use serde_json::{Value, json};
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_store::StoreConfig;

struct RunningStore {
    store: StoreClient,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningStore {
    async fn start(nats: &NatsServer, dir: &Path, limits: Limits) -> Self {
        let mut config = StoreConfig::new(dir);
        config.limits = limits;
        Self::start_with(nats, config).await
    }

    async fn start_with(nats: &NatsServer, config: StoreConfig) -> Self {
        let client = nats.connect().await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(vigil_store::run(client.clone(), config, stop.clone()));
        let store = StoreClient::new(client, Duration::from_secs(5));
        // Ready when it answers a read.
        testkit::eventually(Duration::from_secs(10), || {
            let s = store.clone();
            async move { s.read(1, 1).await.ok() }
        })
        .await
        .expect("store did not come up");
        Self { store, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn stream(category: &str) -> StreamName {
    StreamName::parse(&format!("{category}-{}", Uuid::new_v4())).unwrap()
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "NoteAdded".into(),
        v: 1,
        data: json!({ "n": n, "text": "x".repeat(200) }),
        meta: Meta {
            actor: Some("test".into()),
            ..Meta::default()
        },
    }
}

fn req(s: &StreamName, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        after: None,
        stream: s.clone(),
        expected_version: expected,
        events,
    }
}

async fn read_all(store: &StoreClient) -> Vec<events::RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let (page, _) = store.read(all.len() as u64 + 1, 1000).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

#[tokio::test]
async fn append_read_and_stream_round_trip_with_paging() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let s = RunningStore::start(&nats, dir.path(), Limits::default()).await;
    let a = stream("incident");
    let b = stream("level");

    let sent: Vec<NewEvent> = (1..=5).map(event).collect();
    let ok = s
        .store
        .append(&req(&a, ExpectedVersion::NoStream, sent.clone()))
        .await
        .unwrap();
    assert_eq!(
        ok,
        AppendOk {
            first_position: 1,
            last_position: 5,
            stream_version: 5,
            duplicate: false,
        }
    );
    let ok = s
        .store
        .append(&req(&b, ExpectedVersion::Any, vec![event(6)]))
        .await
        .unwrap();
    assert_eq!(
        ok,
        AppendOk {
            first_position: 6,
            last_position: 6,
            stream_version: 1,
            duplicate: false,
        }
    );
    let ok = s
        .store
        .append(&req(&a, ExpectedVersion::Exact(5), vec![event(7)]))
        .await
        .unwrap();
    assert_eq!(
        ok,
        AppendOk {
            first_position: 7,
            last_position: 7,
            stream_version: 6,
            duplicate: false,
        }
    );

    // Global read, in pages of 3.
    let (p1, head) = s.store.read(1, 3).await.unwrap();
    let (p2, _) = s.store.read(4, 3).await.unwrap();
    let (p3, _) = s.store.read(7, 3).await.unwrap();
    let (p4, _) = s.store.read(8, 3).await.unwrap();
    assert_eq!(head, 7);
    let positions: Vec<u64> = p1
        .iter()
        .chain(&p2)
        .chain(&p3)
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=7).collect::<Vec<_>>());
    assert!(p4.is_empty());
    // What was written is what is read, with the store's coordinates (and the user that
    // appended, here one without credentials) added.
    for (sent, got) in sent.iter().zip(&p1) {
        let meta = Meta {
            appended_by: Some("anonymous".into()),
            ..sent.meta.clone()
        };
        assert_eq!(
            (sent.id, &sent.event_type, &sent.data, &meta),
            (got.id, &got.event_type, &got.data, &got.meta)
        );
        assert_eq!(got.stream, a);
    }

    // One stream, paged by version.
    let (first, version) = s.store.read_stream(&a, 1, 4).await.unwrap();
    let (rest, _) = s.store.read_stream(&a, 5, 4).await.unwrap();
    assert_eq!(version, 6);
    let versions: Vec<u64> = first.iter().chain(&rest).map(|e| e.version).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(rest.last().unwrap().position, 7);
    let (none, v0) = s
        .store
        .read_stream(&stream("incident"), 1, 10)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(v0, 0);
    s.stop().await;
}

#[tokio::test]
async fn expected_version_rules_and_racing_writers() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let s = RunningStore::start(&nats, dir.path(), Limits::default()).await;
    let a = stream("incident");

    let err = s
        .store
        .append(&req(&a, ExpectedVersion::Exact(1), vec![event(1)]))
        .await
        .unwrap_err();
    let ClientError::Store(e) = err else {
        panic!("expected a store error, got {err:?}")
    };
    assert_eq!(
        (e.code, e.current_version),
        (ErrorCode::WrongExpectedVersion, Some(0))
    );

    s.store
        .append(&req(&a, ExpectedVersion::NoStream, vec![event(1)]))
        .await
        .unwrap();
    let err = s
        .store
        .append(&req(&a, ExpectedVersion::NoStream, vec![event(2)]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Store(ref e) if e.code == ErrorCode::WrongExpectedVersion && e.current_version == Some(1)),
        "{err:?}"
    );

    // Many pairs of writers race on the same expected version: exactly one of each pair wins.
    for round in 1..=20u64 {
        let (x, y) = (s.store.clone(), s.store.clone());
        let (ra, rb) = (
            req(&a, ExpectedVersion::Exact(round), vec![event(round)]),
            req(&a, ExpectedVersion::Exact(round), vec![event(round)]),
        );
        let (r1, r2) = tokio::join!(x.append(&ra), y.append(&rb));
        let (win, lose) = match (r1, r2) {
            (Ok(w), Err(l)) | (Err(l), Ok(w)) => (w, l),
            other => panic!("round {round}: expected one winner, got {other:?}"),
        };
        assert_eq!(win.stream_version, round + 1);
        let ClientError::Store(e) = lose else {
            panic!("{lose:?}")
        };
        assert_eq!(
            (e.code, e.current_version),
            (ErrorCode::WrongExpectedVersion, Some(round + 1))
        );
    }
    let (_, version) = s.store.read_stream(&a, 1, 1).await.unwrap();
    assert_eq!(version, 21);
    s.stop().await;
}

#[tokio::test]
async fn a_long_stream_read_through_the_cache_is_always_what_the_store_holds() {
    use runtime::stream_cache::{MIN_EVENTS, StreamCache};
    let nats = NatsServer::start();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let s = RunningStore::start(&nats, dirs[0].path(), Limits::default()).await;
    let (long, short) = (stream("relocation"), stream("relocation"));
    let fill = |store: StoreClient, st: StreamName, n: u64| async move {
        for i in 0..n {
            store
                .append(&req(&st, ExpectedVersion::Any, vec![event(i)]))
                .await
                .unwrap();
        }
    };
    fill(s.store.clone(), long.clone(), MIN_EVENTS as u64 + 8).await;
    fill(s.store.clone(), short.clone(), 3).await;
    let cache = StreamCache::new(10_000);
    let whole = |st: StreamName, store: StoreClient| async move {
        store.read_whole_stream(&st, Duration::ZERO).await.unwrap()
    };
    let ids = |events: &[events::RecordedEvent]| events.iter().map(|e| e.id).collect::<Vec<_>>();

    let (history, version) = cache.read(&s.store, &long).await.unwrap();
    let (all, v) = whole(long.clone(), s.store.clone()).await;
    assert_eq!((ids(&history), version), (ids(&all), v));
    let (history, _) = cache.read(&s.store, &short).await.unwrap();
    assert_eq!(history.len(), 3);
    assert_eq!(cache.len(), 1, "only the long stream is kept");

    // Another writer extends it: the next read has the tail too, and keeps sharing the prefix.
    let kept = history_of(&cache, &s.store, &long).await;
    fill(s.store.clone(), long.clone(), 5).await;
    let (history, version) = cache.read(&s.store, &long).await.unwrap();
    let (all, v) = whole(long.clone(), s.store.clone()).await;
    assert_eq!((ids(&history), version), (ids(&all), v));
    assert_eq!(version, MIN_EVENTS as u64 + 13);
    assert!(ids(&history).starts_with(&ids(&kept)));
    drop(kept);
    // Nothing new: the same.
    let (again, _) = cache.read(&s.store, &long).await.unwrap();
    assert_eq!(ids(&again), ids(&history));
    assert_eq!(cache.dropped(), 0, "each read went on from the copy kept");
    s.stop().await;

    // The store is replaced by one with another history of the same stream, longer and then
    // shorter than what is kept: each read is that store's stream, never the old prefix.
    let other = RunningStore::start(&nats, dirs[1].path(), Limits::default()).await;
    fill(other.store.clone(), long.clone(), MIN_EVENTS as u64 + 20).await;
    let (history, version) = cache.read(&other.store, &long).await.unwrap();
    let (all, v) = whole(long.clone(), other.store.clone()).await;
    assert_eq!((ids(&history), version), (ids(&all), v));
    other.stop().await;
    let third = tempfile::tempdir().unwrap();
    let shorter = RunningStore::start(&nats, third.path(), Limits::default()).await;
    fill(shorter.store.clone(), long.clone(), 4).await;
    let (history, version) = cache.read(&shorter.store, &long).await.unwrap();
    let (all, v) = whole(long.clone(), shorter.store.clone()).await;
    assert_eq!((ids(&history), version), (ids(&all), v));
    assert_eq!(version, 4);
    assert_eq!(
        cache.dropped(),
        2,
        "each replaced store's stream was read whole"
    );
    shorter.stop().await;
}

/// What `cache` reads of `stream` now.
async fn history_of(
    cache: &runtime::stream_cache::StreamCache,
    store: &StoreClient,
    stream: &StreamName,
) -> runtime::stream_cache::History {
    cache.read(store, stream).await.unwrap().0
}

#[tokio::test]
async fn retried_ids_return_original_positions_also_after_restart() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let a = stream("incident");
    let batch = vec![event(1), event(2), event(3)];
    let first = {
        let s = RunningStore::start(&nats, dir.path(), Limits::default()).await;
        s.store
            .append(&req(&stream("level"), ExpectedVersion::Any, vec![event(0)]))
            .await
            .unwrap();
        let ok = s
            .store
            .append(&req(&a, ExpectedVersion::NoStream, batch.clone()))
            .await
            .unwrap();
        // Same ids again, even with a stale expected version: the original answer.
        let again = s
            .store
            .append(&req(&a, ExpectedVersion::NoStream, batch.clone()))
            .await
            .unwrap();
        assert_eq!(
            again,
            AppendOk {
                duplicate: true,
                ..ok
            }
        );
        s.stop().await;
        ok
    };
    assert_eq!(
        first,
        AppendOk {
            first_position: 2,
            last_position: 4,
            stream_version: 3,
            duplicate: false,
        }
    );

    let s = RunningStore::start(&nats, dir.path(), Limits::default()).await;
    let again = s
        .store
        .append(&req(&a, ExpectedVersion::NoStream, batch.clone()))
        .await
        .unwrap();
    assert_eq!(
        again,
        AppendOk {
            duplicate: true,
            ..first
        }
    );
    assert_eq!(
        read_all(&s.store).await.len(),
        4,
        "the retry stored nothing new"
    );

    // The same id with other content is refused: ids are not reusable.
    let mut changed = batch.clone();
    changed[0].data = json!({"other": true});
    let err = s
        .store
        .append(&req(&a, ExpectedVersion::Any, changed))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Store(ref e) if e.code == ErrorCode::IdReused),
        "{err:?}"
    );
    // Part old, part new: refused, nothing stored.
    let err = s
        .store
        .append(&req(
            &a,
            ExpectedVersion::Any,
            vec![batch[0].clone(), event(9)],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Store(ref e) if e.code == ErrorCode::IdReused),
        "{err:?}"
    );
    assert_eq!(read_all(&s.store).await.len(), 4);
    s.stop().await;
}

#[tokio::test]
async fn eight_concurrent_writers_get_gap_free_positions_and_versions() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let s = RunningStore::start(&nats, dir.path(), Limits::default()).await;
    const WRITERS: u64 = 8;
    const EACH: u64 = 2000;
    let shared = stream("incident"); // every writer also appends to one shared stream
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = s.store.clone();
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            let own = [stream("incident"), stream("clearance")];
            let mut acked = Vec::new();
            for i in 0..EACH {
                let target = if i % 4 == 0 {
                    shared.clone()
                } else {
                    own[(i % 2) as usize].clone()
                };
                let ev = event(w * EACH + i);
                let ok = store
                    .append(&req(&target, ExpectedVersion::Any, vec![ev.clone()]))
                    .await
                    .unwrap();
                acked.push((ev.id, ok.last_position, target, ok.stream_version));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let all = read_all(&s.store).await;
    assert_eq!(all.len() as u64, WRITERS * EACH);
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=WRITERS * EACH).collect::<Vec<_>>()
    );
    let mut by_stream: std::collections::HashMap<StreamName, Vec<u64>> = Default::default();
    for e in &all {
        by_stream
            .entry(e.stream.clone())
            .or_default()
            .push(e.version);
    }
    for (name, versions) in by_stream {
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "versions of {name}"
        );
    }
    for (id, position, target, version) in acked {
        let e = &all[(position - 1) as usize];
        assert_eq!((e.id, &e.stream, e.version), (id, &target, version));
    }
    s.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_typed_error_and_changes_nothing() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_event_bytes: 2048,
        max_append_bytes: 64 * 1024,
        max_events_per_append: 50,
    };
    let s = RunningStore::start(&nats, dir.path(), limits).await;
    let a = stream("incident");
    s.store
        .append(&req(&a, ExpectedVersion::Any, vec![event(1)]))
        .await
        .unwrap();
    let client = s.store.nats().clone();
    let good_event = || serde_json::to_value(event(2)).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed JSON", b"{\"stream\": ".to_vec()),
        ("not JSON at all", vec![0xff, 0xfe, 0x00]),
        ("unknown field", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [good_event()], "sneaky": 1})).unwrap()),
        ("unknown event field", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [{"id": Uuid::new_v4(), "type": "T", "v": 1, "data": {}, "extra": 1}]})).unwrap()),
        ("oversized event", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [{"id": Uuid::new_v4(), "type": "T", "v": 1, "data": {"x": "y".repeat(3000)}}]})).unwrap()),
        ("oversized batch", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": (0..60).map(|_| good_event()).collect::<Vec<Value>>()})).unwrap()),
        ("oversized request", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": (0..40).map(|_| json!({"id": Uuid::new_v4(), "type": "T", "v": 1, "data": {"x": "y".repeat(1900)}})).collect::<Vec<Value>>()})).unwrap()),
        ("empty stream name", serde_json::to_vec(&json!({"stream": "", "expected_version": "any", "events": [good_event()]})).unwrap()),
        ("stream without uuid", serde_json::to_vec(&json!({"stream": "incident-42", "expected_version": "any", "events": [good_event()]})).unwrap()),
        ("bad expected_version", serde_json::to_vec(&json!({"stream": a, "expected_version": "latest", "events": [good_event()]})).unwrap()),
        ("zero expected_version", serde_json::to_vec(&json!({"stream": a, "expected_version": 0, "events": [good_event()]})).unwrap()),
        ("negative expected_version", serde_json::to_vec(&json!({"stream": a, "expected_version": -3, "events": [good_event()]})).unwrap()),
        ("no events", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": []})).unwrap()),
        ("bad event id", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [{"id": "nope", "type": "T", "v": 1, "data": {}}]})).unwrap()),
        ("empty type", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [{"id": Uuid::new_v4(), "type": "", "v": 1, "data": {}, "meta": {"actor": "t"}}]})).unwrap()),
        ("no actor (the log is the audit trail)", serde_json::to_vec(&json!({"stream": a, "expected_version": "any", "events": [{"id": Uuid::new_v4(), "type": "T", "v": 1, "data": {}}]})).unwrap()),
    ];
    for (what, body) in cases {
        let reply = client
            .request("vigil.store.append.anonymous.incident", body.into())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&reply.payload)
            .unwrap_or_else(|e| panic!("{what}: reply is not JSON: {e}"));
        assert_eq!(v["error"]["code"], "invalid", "{what}: {v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{what}: {v}"
        );
    }
    // Bad reads are refused the same way.
    for body in [&b"{\"from\": -1}"[..], b"{\"form\": 1}", b"[]"] {
        let reply = client
            .request(events::subjects::STORE_READ, body.to_vec().into())
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(v["error"]["code"], "invalid", "{v}");
    }
    let reply = client
        .request(
            events::subjects::STORE_STREAM,
            b"{\"stream\": \"\"}".to_vec().into(),
        )
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&reply.payload).unwrap();
    assert_eq!(v["error"]["code"], "invalid", "{v}");

    let all = read_all(&s.store).await;
    assert_eq!(all.len(), 1, "the log is unchanged");
    let (_, version) = s.store.read_stream(&a, 1, 1).await.unwrap();
    assert_eq!(version, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_unavailable_and_stores_nothing_of_those_appends() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    // One waiting append and one event per group: a burst must overflow.
    config.queue_capacity = 1;
    config.max_group_events = 1;
    let s = RunningStore::start_with(&nats, config).await;
    let mut tasks = Vec::new();
    for n in 0..300 {
        let store = s.store.clone();
        tasks.push(tokio::spawn(async move {
            let ev = event(n);
            let out = store
                .append(&req(
                    &stream("incident"),
                    ExpectedVersion::Any,
                    vec![ev.clone()],
                ))
                .await;
            (ev.id, out)
        }));
    }
    let (mut acked, mut refused) = (Vec::new(), Vec::new());
    for t in tasks {
        match t.await.unwrap() {
            (id, Ok(ok)) => acked.push((id, ok.last_position)),
            (id, Err(ClientError::Store(e))) if e.code == ErrorCode::Unavailable => {
                refused.push(id)
            }
            (_, other) => panic!("expected ok or unavailable, got {other:?}"),
        }
    }
    assert!(
        !refused.is_empty(),
        "a queue of 1 under a burst of 300 refuses some"
    );
    let all = read_all(&s.store).await;
    assert_eq!(
        all.len(),
        acked.len(),
        "exactly the acknowledged appends are stored"
    );
    for (id, position) in acked {
        assert_eq!(all[(position - 1) as usize].id, id);
    }
    assert!(
        refused.iter().all(|id| all.iter().all(|e| e.id != *id)),
        "nothing of a refused append is stored"
    );
    s.stop().await;
}
