//! What JetStream's own fences do on a replicated stream, measured on the nats-server the
//! replicated store runs on (2.15.1), on a real 3-node cluster. The store's journal writer
//! keeps one publish in flight because `Nats-Expected-Last-Sequence` compares a number, not
//! whose message holds it (docs/ARCHITECTURE.md, "Exactly one writer"). These tests pin what
//! the candidate ways past that do, so that a nats-server upgrade that changes it fails here
//! first:
//!
//! - `Nats-Expected-Last-Msg-Id` ("my previous message is the last one") is checked when the
//!   replicas apply the message, not before the leader proposes it: a chain of publishes in
//!   flight is accepted and a writer whose previous message is no longer the last is refused,
//!   but that refusal leaves the stream without a leader for seconds (a refusal on the
//!   expected last sequence, checked before the proposal, does not). A replica that restarts
//!   and catches up judges the last msg id like the others on 2.15.1.
//! - an atomic batch (`Nats-Batch-Id`, nats-server 2.12+) lands whole or not at all, behind
//!   one `Nats-Expected-Last-Sequence` checked before it is proposed: what the leader uses to
//!   send several groups in one round trip.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, message::PublishMessage, stream};
use bytes::Bytes;
use serde_json::Value;
use testkit::NatsCluster;

const SUBJECT: &str = "fence.journal";

/// A stream shaped like the store's journal (file, 3 replicas, 2 s duplicate window), once
/// it has a leader.
async fn journal_like(js: &jetstream::Context, name: &str, atomic: bool) {
    js.create_stream(stream::Config {
        name: name.into(),
        subjects: vec![format!("{SUBJECT}.{name}")],
        storage: stream::StorageType::File,
        num_replicas: 3,
        duplicate_window: Duration::from_secs(2),
        allow_atomic_publish: atomic,
        ..Default::default()
    })
    .await
    .unwrap();
    info(&js.client(), name).await;
}

/// `$JS.API.STREAM.INFO.<name>` as JSON: answered by the stream's current leader.
async fn info(client: &async_nats::Client, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Ok(m)) = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(format!("$JS.API.STREAM.INFO.{name}"), Bytes::new()),
        )
        .await
        {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            if v.get("error").is_none() && v["cluster"]["leader"].is_string() {
                return v;
            }
        }
        assert!(Instant::now() < deadline, "no stream info for {name}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Moves the stream's leadership to `server` and returns what that replica holds:
/// (last sequence, message count).
async fn held_by(client: &async_nats::Client, name: &str, server: &str) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = info(client, name).await;
        if i["cluster"]["leader"] == server {
            return (
                i["state"]["last_seq"].as_u64().unwrap(),
                i["state"]["messages"].as_u64().unwrap(),
            );
        }
        let body = serde_json::json!({ "placement": { "preferred": server } });
        let _ = client
            .request(
                format!("$JS.API.STREAM.LEADER.STEPDOWN.{name}"),
                Bytes::from(body.to_string()),
            )
            .await;
        assert!(
            Instant::now() < deadline,
            "{server} did not become the leader of {name}: {i}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn message(n: u64) -> PublishMessage {
    PublishMessage::build().payload(Bytes::from(format!("group {n}")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expected_last_msg_id_passes_a_chain_in_flight_but_its_refusal_leaves_the_stream_leaderless()
 {
    let cluster = NatsCluster::start(3).await;
    let client = async_nats::connect(cluster.url_list()).await.unwrap();
    let js = jetstream::new(client.clone());
    journal_like(&js, "CHAIN", false).await;
    let subject = format!("{SUBJECT}.CHAIN");

    // Eight publishes in flight at once, each naming the one before it as the last message:
    // the check is made when a replica applies the message (after its predecessor), not when
    // the leader proposes it, so every one of them is accepted, in order.
    let mut acks = Vec::new();
    for n in 1..=8u64 {
        let mut m = message(n).message_id(format!("epoch-a-{n}"));
        m = if n == 1 {
            m.expected_last_sequence(0)
        } else {
            m.expected_last_message_id(format!("epoch-a-{}", n - 1))
        };
        acks.push(js.send_publish(subject.clone(), m).await.unwrap());
    }
    for (n, ack) in acks.into_iter().enumerate() {
        assert_eq!(ack.await.unwrap().sequence, n as u64 + 1);
    }

    // A rival writes after the chain; the old writer's next message, built on its own last
    // one, is refused: the fence says whose message is last, not just a number.
    js.send_publish(
        subject.clone(),
        message(9).message_id("epoch-b-1").expected_last_sequence(8),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let stale = js
        .send_publish(
            subject.clone(),
            message(10)
                .message_id("epoch-a-9")
                .expected_last_message_id("epoch-a-8"),
        )
        .await
        .unwrap()
        .await;
    assert_eq!(
        stale.map(|a| a.sequence).map_err(|e| e.kind()),
        Err(PublishErrorKind::WrongLastMessageId)
    );
    // The refusal came when the replicas applied the message: it leaves the stream without
    // a leader (every replica "not current"), for far longer than an election. Measured for
    // 20 s: the store's journal would take no append meanwhile.
    let leaderless = leaderless_within(&client, "CHAIN", Duration::from_secs(20)).await;
    println!(
        "after the apply-time refusal the stream had no leader for {} ms of the 20 s watched",
        leaderless.as_millis()
    );
    assert!(
        leaderless > Duration::from_secs(10),
        "a refusal on Nats-Expected-Last-Msg-Id no longer costs the stream its leader \
         ({} ms): re-read docs/ARCHITECTURE.md \"Why not a fence on the previous message's id\"",
        leaderless.as_millis()
    );

    // The same stale writer fenced by the expected last sequence (what the journal uses) on
    // a stream of its own: refused before it is proposed, and the stream keeps its leader.
    journal_like(&js, "SEQ", false).await;
    let subject = format!("{SUBJECT}.SEQ");
    for n in 0..2u64 {
        js.send_publish(subject.clone(), message(n).expected_last_sequence(n))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let stale = js
        .send_publish(subject.clone(), message(3).expected_last_sequence(1))
        .await
        .unwrap()
        .await;
    assert_eq!(
        stale.map(|a| a.sequence).map_err(|e| e.kind()),
        Err(PublishErrorKind::WrongLastSequence)
    );
    let leaderless = leaderless_within(&client, "SEQ", Duration::from_secs(3)).await;
    println!(
        "after a refusal on the expected last sequence the stream had no leader for {} ms",
        leaderless.as_millis()
    );
    assert!(leaderless < Duration::from_millis(500), "{leaderless:?}");
    assert_eq!(info(&client, "SEQ").await["state"]["last_seq"], 2);
}

/// Within `window` from now, how long `name` was seen answering stream info without a
/// leader (the time of the last such answer).
async fn leaderless_within(client: &async_nats::Client, name: &str, window: Duration) -> Duration {
    let started = Instant::now();
    let mut last_without = Duration::ZERO;
    while started.elapsed() < window {
        let led = match tokio::time::timeout(
            Duration::from_secs(1),
            client.request(format!("$JS.API.STREAM.INFO.{name}"), Bytes::new()),
        )
        .await
        {
            Ok(Ok(m)) => serde_json::from_slice::<Value>(&m.payload)
                .map(|v| v["cluster"]["leader"].is_string())
                .unwrap_or(false),
            _ => false,
        };
        if !led {
            last_without = started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    last_without
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_restarts_and_catches_up_judges_the_last_msg_id_like_the_others() {
    let mut cluster = NatsCluster::start(3).await;
    let client = async_nats::connect(cluster.url_list()).await.unwrap();
    let js = jetstream::new(client.clone());
    journal_like(&js, "FORGET", false).await;
    let subject = format!("{SUBJECT}.FORGET");

    js.send_publish(
        subject.clone(),
        message(1).message_id("epoch-a-1").expected_last_sequence(0),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let i = info(&client, "FORGET").await;
    let leader = i["cluster"]["leader"].as_str().unwrap().to_string();
    let follower = (1..=3)
        .map(|n| format!("n{n}"))
        .find(|n| *n != leader)
        .unwrap();
    let index: usize = follower[1..].parse::<usize>().unwrap() - 1;

    // The follower's nats-server is down while the others take more than 8 MB (so the
    // stream's leader snapshots and compacts its Raft log: the follower catches up from the
    // snapshot, through the catch-up path, not by applying entries); it restarts after the
    // last message left the duplicate window (2 s, the journal's).
    cluster.kill(index);
    let big = Bytes::from(vec![b'x'; 900 * 1024]);
    let mut last_id = "epoch-a-1".to_string();
    for n in 2..=12u64 {
        last_id = format!("epoch-a-{n}");
        js.send_publish(
            subject.clone(),
            PublishMessage::build()
                .payload(big.clone())
                .message_id(&last_id),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.restart(index);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = info(&client, "FORGET").await;
        let current = i["cluster"]["replicas"]
            .as_array()
            .map(|r| {
                r.iter()
                    .any(|p| p["name"] == follower.as_str() && p["current"] == true)
            })
            .unwrap_or(false);
        if current {
            break;
        }
        assert!(Instant::now() < deadline, "{follower} never caught up: {i}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The next message in the chain: the leader (never restarted) remembers epoch-a-1 as the
    // last message id and acknowledges it.
    let ack = js
        .send_publish(
            subject.clone(),
            message(13)
                .message_id("epoch-a-13")
                .expected_last_message_id(&last_id),
        )
        .await
        .unwrap()
        .await;
    let acked = ack.map(|a| a.sequence).map_err(|e| e.to_string());
    println!("leader {leader}: the chained publish answered {acked:?}");

    // What each replica holds, asked of each as the stream's leader.
    let mut held = Vec::new();
    for server in ["n1", "n2", "n3"] {
        let h = held_by(&client, "FORGET", server).await;
        println!("{server} holds last sequence {}, {} messages", h.0, h.1);
        held.push((server, h));
    }
    // Older nats-server kept the last msg id only in memory and rebuilt it after a restart
    // only from messages inside the duplicate window, and the catch-up path did not set it
    // (docs/ARCHITECTURE.md): the restarted replica would have refused what the others
    // stored. 2.15.1 agrees.
    assert_eq!(acked, Ok(13), "the leader accepted the chained publish");
    assert!(
        held.iter().all(|(_, h)| *h == (13, 13)),
        "every replica holds the acknowledged message, the restarted {follower} too: {held:?}"
    );
}

/// Publishes `messages` as one atomic batch, the first carrying `expected_last`; the
/// commit's answer as JSON.
async fn batch(
    client: &async_nats::Client,
    subject: &str,
    id: &str,
    messages: usize,
    expected_last: u64,
) -> Value {
    for n in 1..=messages {
        let mut h = HeaderMap::new();
        h.insert("Nats-Batch-Id", id);
        h.insert("Nats-Batch-Sequence", n.to_string().as_str());
        if n == 1 {
            h.insert(
                "Nats-Expected-Last-Sequence",
                expected_last.to_string().as_str(),
            );
        }
        let payload = Bytes::from(format!("{id} part {n}"));
        if n < messages {
            client
                .publish_with_headers(subject.to_string(), h, payload)
                .await
                .unwrap();
        } else {
            h.insert("Nats-Batch-Commit", "1");
            let m = client
                .request_with_headers(subject.to_string(), h, payload)
                .await
                .unwrap();
            return serde_json::from_slice(&m.payload).unwrap();
        }
    }
    unreachable!("a batch has at least one message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_batch_lands_whole_behind_its_expected_last_sequence_or_not_at_all() {
    let cluster = NatsCluster::start(3).await;
    let client = async_nats::connect(cluster.url_list()).await.unwrap();
    let js = jetstream::new(client.clone());
    journal_like(&js, "BATCH", true).await;
    let subject = format!("{SUBJECT}.BATCH");

    let first = batch(&client, &subject, "leader-a-1", 4, 0).await;
    assert!(first.get("error").is_none(), "{first}");
    assert_eq!(first["seq"], 4, "{first}");

    // A writer whose view is stale: the whole batch is refused, none of it stored.
    let stale = batch(&client, &subject, "leader-b-1", 3, 2).await;
    assert!(stale.get("error").is_some(), "{stale}");
    println!("stale batch answered {stale}");
    assert_eq!(info(&client, "BATCH").await["state"]["last_seq"], 4);

    let next = batch(&client, &subject, "leader-a-2", 3, 4).await;
    assert_eq!(next["seq"], 7, "{next}");
}
