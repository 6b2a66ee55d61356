//! The append subject, `vigil.store.append.<user>.<category>`, against a real nats-server
//! (without Vigil's users: the store's own checks) and a real fjall directory: a stream of
//! another category is refused `forbidden`, the subject's user is recorded in
//! `meta.appended_by` whatever the writer sent, and the bare `vigil.store.append` is not
//! served.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::store_api::{AppendReply, ErrorCode};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, RecordedEvent, StreamName};
use runtime::StoreClient;
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_store::StoreConfig;

fn request(category: &str, appended_by: Option<&str>) -> AppendRequest {
    AppendRequest {
        after: None,
        stream: StreamName::parse(&format!("{category}-{}", Uuid::new_v4())).unwrap(),
        expected_version: ExpectedVersion::Any,
        events: vec![NewEvent {
            id: Uuid::new_v4(),
            event_type: "NoteAdded".into(),
            v: 1,
            data: serde_json::json!({"text": "x"}),
            meta: Meta {
                actor: Some("duty1".into()),
                appended_by: appended_by.map(str::to_owned),
                ..Meta::default()
            },
        }],
    }
}

async fn send(client: &async_nats::Client, subject: &str, req: &AppendRequest) -> AppendReply {
    let reply = client
        .request(subject.to_owned(), serde_json::to_vec(req).unwrap().into())
        .await
        .unwrap();
    serde_json::from_slice(&reply.payload).unwrap()
}

#[tokio::test]
async fn the_subject_decides_the_category_and_the_recorded_appender() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let client = nats.connect().await;
    let stop = CancellationToken::new();
    let task = tokio::spawn(vigil_store::run(
        client.clone(),
        StoreConfig::new(dir.path()),
        stop.clone(),
    ));
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    testkit::eventually(Duration::from_secs(10), || {
        let s = store.clone();
        async move { s.read(1, 1).await.ok() }
    })
    .await
    .expect("store did not come up");

    // A stream of another category than the subject's: refused, typed, nothing stored.
    let audit_as_level = request("level", None);
    match send(&client, "vigil.store.append.audit.audit", &audit_as_level).await {
        AppendReply::Error(e) => {
            assert_eq!(e.code, ErrorCode::Forbidden, "{e:?}");
            assert!(e.message.contains("audit"), "{}", e.message);
        }
        ok => panic!("appended a level stream on the audit subject: {ok:?}"),
    }
    let (_, head) = store.read(u64::MAX, 1).await.unwrap();
    assert_eq!(head, 0);

    // The bare prefix is not served: no answer.
    let bare = client
        .request(
            "vigil.store.append",
            serde_json::to_vec(&request("level", None)).unwrap().into(),
        )
        .await;
    assert!(bare.is_err(), "the bare subject answered: {bare:?}");

    // The subject's user is recorded, replacing what the writer claimed.
    let as_levels = request("level", Some("cli"));
    match send(&client, "vigil.store.append.levels.level", &as_levels).await {
        AppendReply::Ok(ok) => assert_eq!(ok.last_position, 1),
        e => panic!("{e:?}"),
    }
    // A client without credentials appends as `anonymous`, on its category's subject.
    assert_eq!(store.appender(), runtime::store_client::ANONYMOUS);
    let anonymous = request("incident", Some("incidents"));
    store.append(&anonymous).await.unwrap();

    let (events, head) = store.read(1, 10).await.unwrap();
    assert_eq!(head, 2);
    let by = |e: &RecordedEvent| (e.id, e.meta.appended_by.clone(), e.meta.actor.clone());
    assert_eq!(
        events.iter().map(by).collect::<Vec<_>>(),
        vec![
            (
                as_levels.events[0].id,
                Some("levels".into()),
                Some("duty1".into())
            ),
            (
                anonymous.events[0].id,
                Some("anonymous".into()),
                Some("duty1".into())
            ),
        ]
    );
    // A retry from another user of the same event is the same event (meta is not compared):
    // the original positions, and the original appender stays recorded.
    match send(&client, "vigil.store.append.other.level", &as_levels).await {
        AppendReply::Ok(ok) => assert!(ok.duplicate && ok.last_position == 1, "{ok:?}"),
        e => panic!("{e:?}"),
    }
    let (events, _) = store.read(1, 1).await.unwrap();
    assert_eq!(events[0].meta.appended_by.as_deref(), Some("levels"));

    // Events recorded before the store set `appended_by` stay readable.
    let old: RecordedEvent = serde_json::from_value(serde_json::json!({
        "id": Uuid::new_v4(), "stream": as_levels.stream, "type": "NoteAdded", "v": 1,
        "data": {}, "meta": {"actor": "duty1"}, "position": 1, "version": 1,
        "recorded_at": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    assert_eq!(old.meta.appended_by, None);

    stop.cancel();
    task.await.unwrap().unwrap();
}
