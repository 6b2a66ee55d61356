//! A batch of reports (`vigil.cmd.incidents.report.batch`, what a field site's relay sends
//! after a cut link) against a real nats-server and a real store: one answer per report in
//! its order, each as if sent alone; the reports in the log in the batch's order, including
//! around reports refused in the middle (by the decision, and by the store for a reused
//! id); the same batch sent again stores nothing new and gives the same positions.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::command::{Actor, Command, Role};
use events::validate::Country;
use serde_json::{Value, json};
use testkit::inproc::Centre;
use uuid::Uuid;

fn officer() -> Actor {
    Actor {
        user: "amina".into(),
        role: Role::FieldOfficer,
        scope: Some(Country::parse("AF").unwrap()),
        agency: None,
    }
}

fn report(id: Uuid, country: &str, title: &str) -> Value {
    serde_json::to_value(Command {
        id,
        actor: officer(),
        source: "site:kabul".to_owned(),
        correlation_id: None,
        body: json!({"country": country, "category": "crime", "severity": 2,
                     "title": title, "occurred_at": testkit::recent()}),
    })
    .unwrap()
}

/// A real nats-server, a real store and one incidents service.
async fn start() -> Centre {
    let mut c = Centre::start(vigil_incidents::SERVICE, |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    c.instance(runtime::host::run::<vigil_incidents::Incidents>)
        .await;
    c
}

/// Sends `batch` until the service answers it (it is `unavailable` until its register has
/// read the log); its `answers`.
async fn send(c: &Centre, batch: &[Value]) -> Vec<Value> {
    let payload = serde_json::to_vec(batch).unwrap();
    let subject = events::subjects::batch_subject(vigil_incidents::SERVICE, "report");
    testkit::eventually(Duration::from_secs(20), || {
        let (client, subject, payload) = (c.client().clone(), subject.clone(), payload.clone());
        async move {
            let reply = client.request(subject, payload.into()).await.ok()?;
            let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
            let answers = answer["ok"]["answers"].as_array()?.clone();
            (answers.len() == batch.len()).then_some(answers)
        }
    })
    .await
    .expect("the incidents service answers the whole batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_reports_is_stored_in_its_order_with_refusals_in_the_middle_kept_apart() {
    let c = start().await;

    let ids: Vec<Uuid> = (0..24).map(|_| Uuid::new_v4()).collect();
    let mut batch: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| report(*id, "AF", &format!("Report {i}")))
        .collect();
    // Refused by the decision: a field officer of AF reports for IQ.
    batch[7] = report(ids[7], "IQ", "Report 7, of another country");
    // Refused by the store: report 3's id with other content.
    batch[12] = report(ids[3], "AF", "Report 12 under report 3's id");

    let answers = send(&c, &batch).await;
    for (i, a) in answers.iter().enumerate() {
        match i {
            7 => assert_eq!(a["error"]["code"], "forbidden", "{i}: {a}"),
            12 => assert_eq!(a["error"]["code"], "id_reused", "{i}: {a}"),
            _ => {
                assert_eq!(a["ok"]["event_id"], json!(ids[i]), "{i}: {a}");
                assert_eq!(a["ok"]["duplicate"], false, "{i}: {a}");
            }
        }
    }
    let positions: Vec<u64> = answers
        .iter()
        .filter_map(|a| a["ok"]["position"].as_u64())
        .collect();
    assert_eq!(positions.len(), 22);
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "answered in the batch's order: {positions:?}"
    );

    // The log holds each stored report once, in the batch's order, and nothing else of it.
    let stored: Vec<Uuid> = ids
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 7 && *i != 12)
        .map(|(_, id)| *id)
        .collect();
    let log: Vec<Uuid> = c
        .log()
        .await
        .into_iter()
        .filter(|e| e.stream.category().as_str() == "incident")
        .map(|e| e.id)
        .collect();
    assert_eq!(log, stored);

    // The same batch again (a relay's answer lost): the same answers, nothing stored twice.
    let again = send(&c, &batch).await;
    for (i, (a, b)) in answers.iter().zip(&again).enumerate() {
        if a["ok"].is_object() {
            assert_eq!(b["ok"]["position"], a["ok"]["position"], "{i}: {b}");
            assert_eq!(b["ok"]["duplicate"], true, "{i}: {b}");
        } else {
            assert_eq!(b["error"]["code"], a["error"]["code"], "{i}: {b}");
        }
    }
    let after = c
        .log()
        .await
        .into_iter()
        .filter(|e| e.stream.category().as_str() == "incident")
        .count();
    assert_eq!(after, stored.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_is_not_a_list_of_commands_or_too_long_is_refused_whole() {
    let c = start().await;
    let subject = events::subjects::batch_subject(vigil_incidents::SERVICE, "report");
    let too_long: Vec<Value> = (0..runtime::commands::MAX_BATCH + 1)
        .map(|i| report(Uuid::new_v4(), "AF", &format!("Report {i}")))
        .collect();
    for payload in [
        b"{\"not\": \"a list\"}".to_vec(),
        b"[]".to_vec(),
        serde_json::to_vec(&too_long).unwrap(),
    ] {
        let reply = c
            .client()
            .request(subject.clone(), payload.into())
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
        assert_eq!(answer["error"]["code"], "invalid", "{answer}");
    }
    // One unreadable command in a batch is that command's refusal alone.
    let good = Uuid::new_v4();
    let answers = send(
        &c,
        &[json!({"id": "not an id"}), report(good, "AF", "Fine")],
    )
    .await;
    assert_eq!(answers[0]["error"]["code"], "invalid", "{}", answers[0]);
    assert_eq!(answers[1]["ok"]["event_id"], json!(good), "{}", answers[1]);
    assert!(c.log().await.iter().any(|e| e.id == good));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_updates_is_carried_out_one_at_a_time_in_its_order() {
    let c = start().await;
    let incident = Uuid::new_v4();
    let answers = send(&c, &[report(incident, "AF", "Reported")]).await;
    assert!(answers[0]["ok"].is_object(), "{}", answers[0]);

    let update = |id: Uuid, change: Value| {
        serde_json::to_value(Command {
            id,
            actor: officer(),
            source: "site:kabul".to_owned(),
            correlation_id: None,
            body: json!({"incident": incident, "change": change}),
        })
        .unwrap()
    };
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let batch = [
        update(ids[0], json!({"title": "First correction"})),
        update(ids[1], json!({"severity": 99})),
        update(ids[2], json!({"title": "Second correction"})),
    ];
    let subject = events::subjects::batch_subject(vigil_incidents::SERVICE, "update");
    let payload = serde_json::to_vec(&batch).unwrap();
    let reply = c.client().request(subject, payload.into()).await.unwrap();
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap();
    let answers = answer["ok"]["answers"].as_array().expect("answers");
    assert_eq!(answers.len(), 3, "{answer}");
    assert_eq!(answers[0]["ok"]["stream_version"], 2, "{answer}");
    assert_eq!(answers[1]["error"]["code"], "invalid", "{answer}");
    assert_eq!(answers[2]["ok"]["stream_version"], 3, "{answer}");
    let stream = c.stream(&vigil_incidents::stream_of(incident)).await;
    let stored: Vec<Uuid> = stream.iter().map(|e| e.id).collect();
    assert_eq!(stored, [incident, ids[0], ids[2]]);
    let last = stream.last().unwrap();
    assert_eq!(last.data["title"], "Second correction", "{:?}", last.data);
}
