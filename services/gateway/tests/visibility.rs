//! Who may see which events and board entries, against a real gateway, store, nats-server
//! and the domain services: the raw log redacted per role (`events::visibility`), a
//! broadcast's chain and recipients cut to a focal point's agency, and the situation board
//! cut to a field officer's country over HTTP and WebSocket.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_gateway::auth::Role;

mod common;

use common::{Center, call, call_ready};

const PERSON: &str = "P-7781";
const CAPTORS: &str = "Testaab brigade";
const LAT: f64 = 2.046_113;

fn token(c: &Center, role: Role, scope: Option<&str>, agency: Option<&str>) -> String {
    c.auth
        .issue(
            &format!("{}.{}", role.as_str(), agency.or(scope).unwrap_or("x")),
            role,
            scope.map(str::to_owned),
            agency.map(str::to_owned),
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0
}

async fn append(c: &Center, stream: events::StreamName, event: events::NewEvent) {
    c.store
        .append(&events::AppendRequest {
            after: None,
            stream,
            expected_version: events::ExpectedVersion::Any,
            events: vec![event],
        })
        .await
        .unwrap();
}

async fn report(c: &Center, id: &str, country: &str, title: &str, lat: f64, lon: f64) {
    let body = json!({"id": id, "country": country, "category": "armed_conflict",
        "severity": 4, "title": title, "occurred_at": testkit::recent(),
        "location": {"lat": lat, "lon": lon}});
    let a = call_ready(c, "POST", "/api/v1/incidents", &c.duty_token, &body).await;
    assert_eq!(a.status, 201, "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_raw_log_shows_each_role_only_what_its_class_allows() {
    let c = Center::start().await;
    let incident = "00000000-0000-4000-8000-00000000a001";
    report(
        &c,
        incident,
        "SO",
        "Kidnapping on the airport road",
        2.0,
        45.0,
    )
    .await;
    let cm = token(&c, Role::CrisisManager, None, None);
    let case = json!({"id": "00000000-0000-4000-8000-00000000c001", "incident_id": incident,
        "country": "SO", "persons": [PERSON, "P-7782"], "captors": CAPTORS,
        "location": {"lat": LAT, "lon": 45.318_207}});
    let opened = call_ready(&c, "POST", "/api/v1/hostage-cases", &cm, &case).await;
    assert_eq!(opened.status, 201, "{}", opened.body);
    // A type this build does not know: its data could be anything.
    let mystery = events::NewEvent {
        id: uuid::Uuid::new_v4(),
        event_type: "MysteryHappened".into(),
        v: 1,
        data: json!({"secret": "MYSTERY-TEXT"}),
        meta: events::Meta {
            actor: Some("a-newer-service".into()),
            ..Default::default()
        },
    };
    append(
        &c,
        events::StreamName::parse(&format!("mystery-{}", uuid::Uuid::new_v4())).unwrap(),
        mystery,
    )
    .await;

    for role in [Role::DutyOfficer, Role::Admin] {
        let t = token(&c, role, None, None);
        let log = call(&c, "GET", "/api/v1/events?from=1&limit=500", &t, None).await;
        assert_eq!(log.status, 200, "{role:?}: {}", log.body);
        for secret in [PERSON, CAPTORS, "2.046113", "MYSTERY-TEXT"] {
            assert!(
                !log.body.contains(secret),
                "{role:?} read {secret:?} in the raw log: {}",
                log.body
            );
        }
        let v = log.json();
        let evs = v["items"].as_array().unwrap();
        let case = evs
            .iter()
            .find(|e| e["type"] == "HostageCaseOpened")
            .expect("the case is in the log, redacted");
        assert_eq!(
            case["data"],
            json!({"redacted": true, "incident_id": incident, "country": "SO", "persons_count": 2}),
            "{role:?}"
        );
        let unknown = evs.iter().find(|e| e["type"] == "MysteryHappened").unwrap();
        assert_eq!(unknown["data"], json!({"redacted": true}));
        // Operational events stay whole.
        let reported = evs
            .iter()
            .find(|e| e["type"] == "IncidentReported")
            .unwrap();
        assert_eq!(reported["data"]["title"], "Kidnapping on the airport road");
        assert_eq!(v["next"], Value::Null, "one page reaches the head: {v}");
        assert!(v["position"].as_u64().is_some_and(|p| p > 0), "{v}");
    }
    // No role outside the log's readers gets anything of it.
    for (role, scope, agency) in [
        (Role::CrisisManager, None, None),
        (Role::FieldOfficer, Some("SO"), None),
        (Role::AgencyFocalPoint, None, Some("wfp")),
        (Role::WallScreen, None, None),
    ] {
        let t = token(&c, role, scope, agency);
        let log = call(&c, "GET", "/api/v1/events?from=1&limit=500", &t, None).await;
        assert_eq!(log.status, 403, "{role:?}: {}", log.body);
        assert!(!log.body.contains(PERSON));
    }
    // Nothing restricted was shown, so nothing was audited as read; the crisis manager's
    // read through the resource is (the mechanism a whole read through the log reuses).
    let reads = |log: &Value| {
        log["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "DetailsRead")
            .count()
    };
    let before = reads(
        &call(&c, "GET", "/api/v1/events?limit=500", &c.duty_token, None)
            .await
            .json(),
    );
    assert_eq!(before, 0);
    let details = call(
        &c,
        "GET",
        "/api/v1/hostage-cases/00000000-0000-4000-8000-00000000c001",
        &cm,
        None,
    )
    .await;
    assert_eq!(details.status, 200, "{}", details.body);
    let after = call(&c, "GET", "/api/v1/events?limit=500", &c.duty_token, None).await;
    assert_eq!(reads(&after.json()), 1);
    assert!(!after.body.contains(PERSON));
}

async fn register_agency(c: &Center, agency: &str) {
    let e = events::domain::agency::AgencyRegistered {
        agency: agency.into(),
        name: agency.to_uppercase(),
        countries: vec![events::validate::Country::parse("SO").unwrap()],
    };
    let meta = events::Meta {
        actor: Some("import".into()),
        ..Default::default()
    };
    let event = events::domain::DomainEvent::from(e).to_new_event(uuid::Uuid::new_v4(), meta);
    append(c, events::domain::agency::stream_for(agency), event).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_focal_point_sees_its_own_agency_in_a_broadcast_and_counts_of_the_others() {
    let c = Center::start().await;
    register_agency(&c, "unicef").await;
    register_agency(&c, "wfp").await;
    let id = "00000000-0000-4000-8000-00000000b001";
    let body = json!({"id": id, "title": "Curfew 18:00", "body": "Stay in.",
        "severity": "low", "audience": {"country": "SO"}, "requires_ack": true,
        "ack_deadline": "2099-01-01T00:00:00Z"});
    let issued = call_ready(&c, "POST", "/api/v1/broadcasts", &c.duty_token, &body).await;
    assert_eq!(issued.status, 201, "{}", issued.body);
    let unicef = token(&c, Role::AgencyFocalPoint, None, Some("unicef"));
    let wfp = token(&c, Role::AgencyFocalPoint, None, Some("wfp"));
    for fp in [&unicef, &wfp] {
        // An acknowledgement is decided on the broadcast service's register, which follows
        // the log: right after the 201 it may not have read the broadcast yet (404), as a
        // focal point who learns of it from its alert never sees.
        let a = testkit::eventually(Duration::from_secs(10), || async {
            let a = call(
                &c,
                "POST",
                &format!("/api/v1/broadcasts/{id}/ack"),
                fp,
                Some(&json!({})),
            )
            .await;
            (a.status != 404).then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("the broadcast was not found for 10 s"));
        assert_eq!(a.status, 200, "{}", a.body);
    }
    // The centre sees both agencies.
    let all = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}/chain"),
        &c.duty_token,
        None,
    )
    .await;
    assert_eq!(all.status, 200, "{}", all.body);
    assert!(all.body.contains("agency_focal_point.wfp"), "{}", all.body);
    assert!(
        all.json()["other_agencies"]
            .as_object()
            .is_none_or(|m| m.is_empty())
    );

    let chain = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}/chain"),
        &unicef,
        None,
    )
    .await;
    assert_eq!(chain.status, 200, "{}", chain.body);
    assert!(
        !chain.body.contains("wfp"),
        "another agency in the chain: {}",
        chain.body
    );
    let v = chain.json();
    assert_eq!(v["other_agencies"]["BroadcastAcknowledged"], 1, "{v}");
    let own: Vec<&Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["event_type"] == "BroadcastAcknowledged")
        .collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0]["agency"], "unicef");

    let one = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}"),
        &unicef,
        None,
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert!(
        !one.body.contains("wfp"),
        "another agency in the broadcast: {}",
        one.body
    );
    let v = one.json();
    assert_eq!(v["recipients"], json!(["unicef"]));
    assert_eq!(
        (
            v["totals"]["recipients"].as_u64(),
            v["totals"]["acknowledged"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let list = call(&c, "GET", "/api/v1/broadcasts", &unicef, None).await;
    assert!(!list.body.contains("wfp"), "{}", list.body);
    let cap = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}/cap"),
        &unicef,
        None,
    )
    .await;
    assert_eq!(cap.status, 200);
    assert!(!cap.body.contains("wfp"), "{}", cap.body);
    // The board: a focal point's cut has no broadcast list (the centre's internal notices
    // and other agencies' broadcasts are on the wall screen's), only the counts.
    let internal = json!({"id": "00000000-0000-4000-8000-00000000b002",
        "title": "Internal: duty roster change", "body": "Centre only.", "severity": "low",
        "audience": "duty_officers", "requires_ack": false});
    let a = call(
        &c,
        "POST",
        "/api/v1/broadcasts",
        &c.duty_token,
        Some(&internal),
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let screen = testkit::eventually(Duration::from_secs(10), || async {
        let b = call(&c, "GET", "/api/v1/boards/situation", &c.screen_token, None).await;
        b.body.contains("duty roster").then_some(b)
    })
    .await;
    assert!(
        screen.is_some(),
        "the wall screen lists the internal notice"
    );
    let board = call(&c, "GET", "/api/v1/boards/situation", &unicef, None).await;
    assert_eq!(board.status, 200, "{}", board.body);
    assert!(!board.body.contains("duty roster"), "{}", board.body);
    assert_eq!(board.json()["broadcasts"], json!([]));
    assert!(board.json()["counters"]["broadcasts_awaiting_ack"].is_u64());
}

/// Reads WebSocket messages until one of type `kind`; panics after 10 s.
async fn next_of<S>(ws: &mut S, kind: &str, seen: &mut Vec<String>) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} within 10 s; seen {seen:?}"));
        if let Some(Ok(Message::Text(t))) = msg {
            seen.push(t.to_string());
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_field_officer_board_holds_only_its_own_country_over_http_and_websocket() {
    let c = Center::start().await;
    let ke = "00000000-0000-4000-8000-00000000e001";
    report(&c, ke, "KE", "Nairobi roadblock", -1.292_066, 36.821_946).await;
    report(
        &c,
        "00000000-0000-4000-8000-00000000e002",
        "SO",
        "Mogadishu checkpoint",
        2.05,
        45.31,
    )
    .await;
    let so = token(&c, Role::FieldOfficer, Some("SO"), None);
    // The API answers 404 for the KE incident; the board must not show it either.
    let api = call(&c, "GET", &format!("/api/v1/incidents/{ke}"), &so, None).await;
    assert_eq!(api.status, 404, "{}", api.body);
    let secrets = [ke, "Nairobi", "-1.292066", "36.821946", "\"KE\""];
    let board = testkit::eventually(Duration::from_secs(10), || async {
        let b = call(&c, "GET", "/api/v1/boards/situation", &so, None).await;
        (b.status == 200 && b.json()["counters"]["open_incidents"] == 2).then_some(b)
    })
    .await
    .unwrap();
    for s in secrets {
        assert!(
            !board.body.contains(s),
            "{s} on the SO officer's board: {}",
            board.body
        );
    }
    let v = board.json();
    assert_eq!(
        v["countries"]["SO"]["markers"][0]["title"],
        "Mogadishu checkpoint"
    );
    assert_eq!(v["broadcasts"], json!([]));
    // The duty officer still sees both.
    let duty = call(&c, "GET", "/api/v1/boards/situation", &c.duty_token, None).await;
    assert!(duty.body.contains("Nairobi roadblock"));

    // Over the WebSocket: the snapshot, then live deltas, never KE.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "view": "duty", "token": so});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let snap = next_of(&mut ws, "snapshot", &mut seen).await;
    assert_eq!(snap["view"], "wall_screen");
    assert_eq!(snap["scope"], "SO");
    assert_eq!(
        snap["data"]["countries"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec!["SO"]
    );
    report(
        &c,
        "00000000-0000-4000-8000-00000000e003",
        "KE",
        "Mombasa port closure",
        -4.05,
        39.66,
    )
    .await;
    report(
        &c,
        "00000000-0000-4000-8000-00000000e004",
        "SO",
        "Kismayo market",
        -0.36,
        42.54,
    )
    .await;
    loop {
        let d = next_of(&mut ws, "delta", &mut seen).await;
        if d.to_string().contains("Kismayo market") {
            break;
        }
    }
    let all = seen.join("\n");
    for s in secrets
        .iter()
        .chain(&["Mombasa", "00000000-0000-4000-8000-00000000e003"])
    {
        assert!(!all.contains(s), "{s} sent to the SO officer: {all}");
    }
    // A resume from a position before the KE report gets the cut deltas only.
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let since = snap["position"].as_u64().unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "since": since, "token": so});
    ws2.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let mut again = Vec::new();
    loop {
        let d = next_of(&mut ws2, "delta", &mut again).await;
        if d.to_string().contains("Kismayo market") {
            break;
        }
    }
    assert!(!again.join("\n").contains("Mombasa"), "{again:?}");
}
