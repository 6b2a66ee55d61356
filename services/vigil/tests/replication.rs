//! The replicated store: three real `vigil store --cluster-node` processes on a real 3-node
//! nats-server cluster (JetStream, `sync_interval: always`), each with its own data dir.
//!
//! - every replica reaches the same head, and `vigil verify` gives the same hash-chain head;
//! - kill -9 of the leader's store AND its nats-server under a writer: a new leader serves
//!   (the time from the kill to the next acknowledged append is printed), the killed node
//!   catches up after its restart, and every acknowledged event is in every replica, at the
//!   same position, with no duplicate and no gap;
//! - a retry with the same ids after the failover is answered with the original positions;
//! - a replica whose log is of another history (or a single-node store) refuses to serve.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Ack, VigilProcess, check_log, wait_ready};
use events::store_api::StoreStatus;
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, RecordedEvent, StreamName, subjects};
use futures::StreamExt;
use runtime::StoreClient;
use serde_json::json;
use testkit::NatsCluster;
use uuid::Uuid;

/// `vigil store --cluster-node <node>` on `dir`, connected to `urls`.
fn replica(dir: &Path, urls: &str, node: &str) -> VigilProcess {
    VigilProcess::run(
        dir,
        urls,
        &["store", "--cluster-node", node],
        &[("RUST_LOG", "info")],
    )
}

/// Node `i`'s own server first, then the others.
fn urls_from(cluster: &NatsCluster, i: usize, n: usize) -> String {
    (0..n)
        .map(|k| cluster.url((i + k) % n))
        .collect::<Vec<_>>()
        .join(",")
}

fn one_append(stream: &StreamName, n: usize) -> AppendRequest {
    AppendRequest {
        stream: stream.clone(),
        expected_version: ExpectedVersion::Any,
        events: vec![NewEvent {
            id: Uuid::new_v4(),
            event_type: "IncidentReported".into(),
            v: 1,
            data: json!({ "n": n, "text": "r".repeat(200) }),
            meta: Meta {
                actor: Some("replication-test".into()),
                ..Meta::default()
            },
        }],
    }
}

/// Every replica's answer to `vigil.store.status`, gathered for 300 ms.
async fn statuses(client: &async_nats::Client) -> Vec<StoreStatus> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(subjects::STORE_STATUS, inbox, "".into())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    let mut out = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(s) = serde_json::from_slice::<StoreStatus>(&m.payload) {
            out.push(s);
        }
    }
    out
}

/// Waits until `n` replicas answer, all at the same head ≥ `at_least`; that head.
async fn converged(client: &async_nats::Client, n: usize, at_least: u64) -> u64 {
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        last = statuses(client).await;
        if last.len() == n
            && last.iter().all(|s| s.head == last[0].head)
            && last[0].head >= at_least
            && last.iter().filter(|s| s.role == "leader").count() == 1
        {
            return last[0].head;
        }
    }
    panic!("the replicas did not converge on a head ≥ {at_least}: {last:?}");
}

/// The leader's node name.
async fn leader(client: &async_nats::Client) -> String {
    for _ in 0..50 {
        if let Some(s) = statuses(client)
            .await
            .into_iter()
            .find(|s| s.role == "leader")
        {
            return s.node;
        }
    }
    panic!("no replica leads");
}

/// The whole log in a stopped replica's directory.
fn log_of(data_dir: &Path) -> Vec<RecordedEvent> {
    let log = store::Log::open_for_verify(&data_dir.join("store")).unwrap();
    log.read_from(1, usize::MAX).unwrap()
}

/// `vigil verify` on a stopped replica: (last position, hash-chain head line).
fn verify(data_dir: &Path) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "vigil verify failed: {text}");
    let line = |prefix: &str| {
        text.lines()
            .find(|l| l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
            .to_owned()
    };
    (line("last position"), line("hash-chain head"))
}

struct Acked {
    ack: Ack,
    request: AppendRequest,
    at: Instant,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_agree_and_survive_the_loss_of_the_leaders_node() {
    let mut cluster = NatsCluster::start(3).await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let names = ["n1", "n2", "n3"];
    let mut stores: Vec<VigilProcess> = (0..3)
        .map(|i| replica(dirs[i].path(), &urls_from(&cluster, i, 3), names[i]))
        .collect();
    let client = async_nats::connect(cluster.url_list()).await.unwrap();
    let store = StoreClient::new(client.clone(), Duration::from_secs(2));
    wait_ready(&store).await;

    // (a) Appends are acknowledged and reach every replica.
    let first = StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap();
    for n in 0..20 {
        let ok = store
            .append_retrying(&one_append(&first, n), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(ok.last_position, n as u64 + 1);
    }
    assert_eq!(converged(&client, 3, 20).await, 20);

    // (b) A writer appends continuously, recording every acknowledged append.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let streams: Vec<StreamName> = (0..3)
                .map(|_| StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap())
                .collect();
            let mut acked = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let stream = streams[n % 3].clone();
                let request = one_append(&stream, n);
                let ok = store
                    .append_retrying(&request, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|e| panic!("append {n} failed for good: {e}"));
                acked.push(Acked {
                    ack: Ack {
                        id: request.events[0].id,
                        stream,
                        position: ok.last_position,
                        version: ok.stream_version,
                    },
                    request,
                    at: Instant::now(),
                });
                n += 1;
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let old = leader(&client).await;
    let k = names.iter().position(|n| *n == old).unwrap();
    stores[k].kill9();
    cluster.kill(k);
    let killed = Instant::now();
    // A new leader serves: wait for the first acknowledgement after the kill.
    let new_leader = loop {
        let s = statuses(&client).await;
        if let Some(l) = s.iter().find(|s| s.role == "leader" && s.node != old) {
            break l.node.clone();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(30),
            "no new leader 30 s after the kill: {s:?}"
        );
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart(k);
    stores[k].start_again();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();
    let after_kill = acked
        .iter()
        .find(|a| a.at > killed)
        .map(|a| a.at - killed)
        .expect("an append was acknowledged after the kill");
    eprintln!(
        "failover: {old} killed (store and nats-server); {new_leader} leads; first acknowledged append {} ms after the kill; {} appends acknowledged under load",
        after_kill.as_millis(),
        acked.len()
    );
    assert!(acked.len() > 20, "the load was real: {}", acked.len());
    let last = acked.last().unwrap().ack.position;
    let head = converged(&client, 3, last).await;

    // (c) Retries with the same ids after the failover get the original positions.
    for a in acked.iter().filter(|a| a.at < killed).rev().take(3) {
        let ok = store
            .append_retrying(&a.request, Duration::from_secs(10))
            .await
            .unwrap();
        assert!(ok.duplicate, "a retry is answered as a duplicate");
        assert_eq!(
            (ok.last_position, ok.stream_version),
            (a.ack.position, a.ack.version),
            "a retry after the failover is answered with the original positions"
        );
    }
    assert_eq!(
        converged(&client, 3, head).await,
        head,
        "retries add nothing"
    );

    // Every replica holds the same log, with every acknowledged event once.
    for s in &stores {
        s.sigterm();
    }
    for s in &mut stores {
        let status = s.wait_exit(Duration::from_secs(15)).expect("store stopped");
        assert!(status.success(), "a replica stopped cleanly: {status}");
    }
    let logs: Vec<Vec<RecordedEvent>> = dirs.iter().map(|d| log_of(d.path())).collect();
    let mut all_acked: Vec<Ack> = acked.iter().map(|a| a.ack.clone()).collect();
    all_acked.sort_by_key(|a| a.position);
    for (i, log) in logs.iter().enumerate() {
        assert_eq!(
            log.len() as u64,
            head,
            "replica {} holds the whole log",
            names[i]
        );
        check_log(log, &all_acked);
        assert_eq!(log, &logs[0], "replica {} holds the same events", names[i]);
    }
    let verified: Vec<_> = dirs.iter().map(|d| verify(d.path())).collect();
    assert!(verified.iter().all(|v| v == &verified[0]), "{verified:?}");
    eprintln!("{} events on every replica; {}", head, verified[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_of_another_history_refuses_to_serve() {
    // Centre A: one event, then another (two journal messages).
    let a = NatsCluster::start(3).await;
    let a_dir = tempfile::tempdir().unwrap();
    let mut a1 = replica(a_dir.path(), &a.urls(), "a1");
    let a_client = async_nats::connect(a.url_list()).await.unwrap();
    let a_store = StoreClient::new(a_client.clone(), Duration::from_secs(2));
    wait_ready(&a_store).await;
    let stream = StreamName::parse(&format!("incident-{}", Uuid::new_v4())).unwrap();
    for n in 0..2 {
        a_store
            .append_retrying(&one_append(&stream, n), Duration::from_secs(10))
            .await
            .unwrap();
    }

    // Centre B: one other event, in a replica's directory.
    let b = NatsCluster::start(3).await;
    let b_dir = tempfile::tempdir().unwrap();
    let mut b1 = replica(b_dir.path(), &b.urls(), "b1");
    let b_store = StoreClient::new(
        async_nats::connect(b.url_list()).await.unwrap(),
        Duration::from_secs(2),
    );
    wait_ready(&b_store).await;
    b_store
        .append_retrying(&one_append(&stream, 9), Duration::from_secs(10))
        .await
        .unwrap();
    b1.sigterm();
    assert!(b1.wait_exit(Duration::from_secs(15)).unwrap().success());

    // B's directory on A: position 1 is another event, so A's second message does not
    // continue it.
    let mut foreign = replica(b_dir.path(), &a.urls(), "a2");
    let status = foreign
        .wait_exit(Duration::from_secs(20))
        .expect("the replica of another history stops by itself");
    assert!(!status.success());
    let said = std::fs::read_to_string(b_dir.path().join("store-process.log")).unwrap();
    assert!(
        said.contains("disagrees with the journal") && said.contains("journal message 2"),
        "it names the journal message: {said}"
    );

    // A single-node store's directory is refused at start.
    let single = tempfile::tempdir().unwrap();
    {
        let log =
            store::Log::open(&single.path().join("store"), store::Durability::SyncData).unwrap();
        let mut group = [store::log::Pending::new(one_append(&stream, 5))];
        log.commit_group(&mut group).unwrap();
        assert!(matches!(group[0].outcome, Some(Ok(_))));
        log.close().unwrap();
    }
    // Owner-only, as the store makes its files (Vigil refuses a data dir others can read).
    assert!(
        std::process::Command::new("chmod")
            .args(["-R", "go-rwx"])
            .arg(single.path())
            .status()
            .unwrap()
            .success()
    );
    let mut lone = replica(single.path(), &a.urls(), "a3");
    let status = lone
        .wait_exit(Duration::from_secs(20))
        .expect("the single-node store's copy stops by itself");
    assert!(!status.success());
    let said = std::fs::read_to_string(single.path().join("store-process.log")).unwrap();
    assert!(said.contains("none came from the journal"), "{said}");

    // A itself still serves, untouched.
    let (events, head) = a_store.read(1, 10).await.unwrap();
    assert_eq!((events.len(), head), (2, 2));
    a1.sigterm();
    assert!(a1.wait_exit(Duration::from_secs(15)).unwrap().success());
}
