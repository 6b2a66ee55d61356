//! The catch-up subscription sees every event exactly once, in order, across a kill -9 of
//! the store and a restart of nats-server in the middle of a load.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Ack, StoreProcess, check_log, read_all, wait_ready};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::{CatchUp, CatchUpConfig, StoreClient};
use serde_json::json;
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const TOTAL: usize = 1500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_sees_every_event_once_across_store_and_nats_restarts() {
    let mut nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut store_proc = StoreProcess::spawn(dir.path(), &nats.url());
    let writer_client =
        runtime::nats::connect(&nats.url(), "writer", None, runtime::nats::Mode::Service)
            .await
            .unwrap();
    let store = StoreClient::new(writer_client, Duration::from_secs(2));
    wait_ready(&store).await;

    // Some history before the consumer starts, so it has to catch up first.
    let acked_count = Arc::new(AtomicUsize::new(0));
    let writer = {
        let store = store.clone();
        let acked_count = acked_count.clone();
        tokio::spawn(async move {
            let streams: Vec<StreamName> = (0..5)
                .map(|_| StreamName::parse(&format!("level-{}", Uuid::new_v4())).unwrap())
                .collect();
            let mut acked = Vec::new();
            for i in 0..TOTAL {
                let stream = streams[i % streams.len()].clone();
                let ev = NewEvent {
                    id: Uuid::new_v4(),
                    event_type: "AreaSecurityLevelSet".into(),
                    v: 2,
                    data: json!({ "n": i }),
                    meta: Meta {
                        actor: Some("catchup-writer".into()),
                        ..Meta::default()
                    },
                };
                let req = AppendRequest {
                    after: None,
                    stream: stream.clone(),
                    expected_version: ExpectedVersion::Any,
                    events: vec![ev.clone()],
                };
                let ok = store
                    .append_retrying(&req, Duration::from_secs(60))
                    .await
                    .unwrap();
                acked.push(Ack {
                    id: ev.id,
                    stream,
                    position: ok.last_position,
                    version: ok.stream_version,
                });
                acked_count.fetch_add(1, Ordering::Relaxed);
                if i % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            acked
        })
    };
    while acked_count.load(Ordering::Relaxed) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let consumer_client =
        runtime::nats::connect(&nats.url(), "consumer", None, runtime::nats::Mode::Service)
            .await
            .unwrap();
    let stop = CancellationToken::new();
    let mut config = CatchUpConfig::new("test", 0);
    config.page = 100; // several pages of catch-up
    config.poll_interval = Duration::from_millis(200);
    config.store_timeout = Duration::from_secs(1);
    let mut sub = CatchUp::start(consumer_client, config, stop.clone());
    let seen = Arc::new(std::sync::Mutex::new(Vec::<events::RecordedEvent>::new()));
    let collector = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(e) = sub.recv().await {
                seen.lock().unwrap().push(e);
            }
        })
    };

    while acked_count.load(Ordering::Relaxed) < 500 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store_proc.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    store_proc.restart();
    eprintln!(
        "store killed and restarted at ~{} acks",
        acked_count.load(Ordering::Relaxed)
    );

    while acked_count.load(Ordering::Relaxed) < 1000 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nats.restart();
    eprintln!(
        "nats-server restarted at ~{} acks",
        acked_count.load(Ordering::Relaxed)
    );

    let acked = writer.await.unwrap();
    let all = read_all(&store).await;
    check_log(&all, &acked);
    let head = all.len();
    let caught_up = testkit::eventually(Duration::from_secs(30), || {
        let n = seen.lock().unwrap().len();
        async move { (n >= head).then_some(()) }
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        caught_up.is_some(),
        "the consumer saw {} of {head} events",
        seen.len()
    );
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    assert_eq!(
        positions,
        (1..=head as u64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    for (got, want) in seen.iter().zip(&all) {
        assert_eq!(got, want);
    }
    stop.cancel();
    let _ = collector.await;
}
