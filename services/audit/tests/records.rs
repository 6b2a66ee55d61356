//! The audit service against a real nats-server and a real store: a record is stored once,
//! bad records are refused and change nothing.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::audit::{AccessDenied, RECORD_SUBJECT};
use serde_json::Value;
use testkit::inproc::Centre;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_stored_once_and_bad_ones_change_nothing() {
    let mut c = Centre::start("audit", |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    c.instance(vigil_audit::run).await;
    let ask = |body: Vec<u8>| {
        let client = c.client().clone();
        async move {
            let reply = testkit::eventually(Duration::from_secs(10), || {
                let (client, body) = (client.clone(), body.clone());
                async move { client.request(RECORD_SUBJECT, body.into()).await.ok() }
            })
            .await
            .expect("the audit service answers");
            serde_json::from_slice::<Value>(&reply.payload).unwrap()
        }
    };

    let record = AccessDenied {
        id: uuid::Uuid::new_v4(),
        at: time::OffsetDateTime::now_utc(),
        actor: Some("ana".into()),
        role: Some("wall_screen".into()),
        peer: Some("10.0.0.7".into()),
        method: "GET".into(),
        path: "/api/v1/events".into(),
        code: "forbidden".into(),
        count: 1,
        until: None,
    };
    let body = serde_json::to_vec(&record).unwrap();
    let first = ask(body.clone()).await;
    let again = ask(body).await;
    assert_eq!(first["ok"]["position"], 1, "{first}");
    assert_eq!(again, first, "a re-sent record is stored once");

    for bad in [&b"not json"[..], br#"{"id":"x"}"#, &vec![b' '; 9000]] {
        let answer = ask(bad.to_vec()).await;
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
    }
    let (events, head) = c.store().read(1, 10).await.unwrap();
    assert_eq!(head, 1);
    assert_eq!(events[0].event_type, "AccessDenied");
    assert_eq!(events[0].stream, events::audit::stream_for(record.at));
    assert_eq!(events[0].data["code"], "forbidden");
}
