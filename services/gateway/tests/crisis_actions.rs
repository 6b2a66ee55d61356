//! What a crisis manager does in bulk or calls off, through the real gateway, store,
//! nats-server and services (issue 14): 70 hostages released in one request and the board's
//! held / released / deceased counts; a bulk with one bad person changes nothing; an approved
//! surge cancelled and its officer assigned to another surge.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::domain::DomainEvent;
use events::domain::person::PersonRegistered;
use events::domain::station::DutyStationRegistered;
use events::validate::Country;
use serde_json::{Value, json};
use vigil_gateway::auth::Role;

mod common;

use common::{Center, call, call_ready};

fn token(c: &Center, role: Role, user: &str) -> String {
    c.auth
        .issue(user, role, None, None, Duration::from_secs(3600), "session")
        .unwrap()
        .0
}

fn parse(a: &testkit::http::Answer) -> Value {
    serde_json::from_str(&a.body).unwrap_or_else(|e| panic!("{e}: {}", a.body))
}

/// The wall screen's board once `ok` holds for it (the board follows the log).
async fn board_when(c: &Center, ok: impl Fn(&Value) -> bool) -> Value {
    let seen = std::sync::Mutex::new(Value::Null);
    let found = testkit::eventually(Duration::from_secs(10), || async {
        let a = call(c, "GET", "/api/v1/boards/situation", &c.screen_token, None).await;
        let board = parse(&a);
        *seen.lock().unwrap() = board.clone();
        ok(&board).then_some(board)
    })
    .await;
    found.unwrap_or_else(|| panic!("the board never got there: {}", seen.lock().unwrap()))
}

async fn register(c: &Center, stream: events::StreamName, event: DomainEvent) {
    let meta = events::Meta {
        actor: Some("import".into()),
        ..Default::default()
    };
    c.store
        .append(&events::AppendRequest {
            after: None,
            stream,
            expected_version: events::ExpectedVersion::Any,
            events: vec![event.to_new_event(uuid::Uuid::new_v4(), meta)],
        })
        .await
        .unwrap();
}

async fn report(c: &Center, id: &str) {
    let body = json!({"id": id, "country": "ML", "category": "crime",
        "severity": 5, "title": "Bus taken on the Gao road", "occurred_at": testkit::recent()});
    let a = call_ready(c, "POST", "/api/v1/incidents", &c.duty_token, &body).await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Opens case `id` with `persons` (`H-0`, `H-1`, …) from incident `incident`.
async fn open_case(c: &Center, cm: &str, id: &str, incident: &str, persons: usize) {
    let persons: Vec<String> = (0..persons).map(|i| format!("H-{i}")).collect();
    let body = json!({"id": id, "incident_id": incident, "country": "ML", "persons": persons});
    let a = call_ready(c, "POST", "/api/v1/hostage-cases", cm, &body).await;
    assert_eq!(a.status, 201, "{}", a.body);
}

async fn case_persons(c: &Center, cm: &str, id: &str) -> Vec<(String, String)> {
    let a = call(c, "GET", &format!("/api/v1/hostage-cases/{id}"), cm, None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    parse(&a)["persons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["person"].as_str().unwrap().to_owned(),
                p["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seventy_of_seventy_one_released_in_one_request_and_the_board_counts_them() {
    let c = Center::start().await;
    let cm = token(&c, Role::CrisisManager, "cm.sara");
    let incident = "00000000-0000-4000-8000-00000000a014";
    report(&c, incident).await;
    let case = "00000000-0000-4000-8000-00000000c014";
    open_case(&c, &cm, case, incident, 71).await;

    let freed: Vec<String> = (0..70).map(|i| format!("H-{i}")).collect();
    let release = json!({"id": "00000000-0000-4000-8000-0000000000e1", "persons": freed,
        "at": testkit::recent()});
    let path = format!("/api/v1/hostage-cases/{case}/release-many");
    let first = call(&c, "POST", &path, &cm, Some(&release)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    // One append of 70 events: the stream went from 1 to 71.
    let ack = parse(&first);
    assert_eq!(ack["stream_version"], 2, "the first of the 70: {ack}");
    // A resend with the same id is answered with the original outcome, and stores nothing.
    let again = call(&c, "POST", &path, &cm, Some(&release)).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(parse(&again)["position"], ack["position"]);
    let persons = case_persons(&c, &cm, case).await;
    assert_eq!(
        persons.iter().filter(|(_, s)| s == "released").count(),
        70,
        "{persons:?}"
    );
    assert_eq!(persons.iter().filter(|(_, s)| s == "held").count(), 1);

    let died = json!({"person": "H-70", "at": testkit::recent()});
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/hostage-cases/{case}/deceased"),
        &cm,
        Some(&died),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    let board = board_when(&c, |b| {
        b["countries"]["ML"]["hostage"]["persons_deceased"] == 1
    })
    .await;
    let h = &board["countries"]["ML"]["hostage"];
    assert_eq!(h["cases"], 1, "{h}");
    assert_eq!(h["persons_held"], 0, "{h}");
    assert_eq!(h["persons_released"], 70, "{h}");
    assert_eq!(h["by_case"][0]["released"], 70, "{h}");
    assert_eq!(h["by_case"][0]["deceased"], 1, "{h}");
    assert_eq!(h["by_case"][0]["held"], 0, "{h}");
    // Counts only: the wall screen never gets a person's reference.
    assert!(!board.to_string().contains("H-1"), "{board}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_with_one_bad_person_changes_nothing() {
    let c = Center::start().await;
    let cm = token(&c, Role::CrisisManager, "cm.sara");
    let incident = "00000000-0000-4000-8000-00000000a015";
    report(&c, incident).await;
    let case = "00000000-0000-4000-8000-00000000c015";
    open_case(&c, &cm, case, incident, 4).await;
    let release = |persons: Value| json!({"persons": persons, "at": testkit::recent()});
    let path = format!("/api/v1/hostage-cases/{case}/release-many");
    let one = call(
        &c,
        "POST",
        &format!("/api/v1/hostage-cases/{case}/release"),
        &cm,
        Some(&json!({"person": "H-3", "at": testkit::recent()})),
    )
    .await;
    assert_eq!(one.status, 200, "{}", one.body);
    let before = case_persons(&c, &cm, case).await;

    for (persons, status, names) in [
        (json!(["H-0", "H-1", "H-9"]), 422, "persons[2]"),
        (json!(["H-0", "H-3"]), 409, "persons[1]"),
        (json!(["H-0", "H-1", "H-0"]), 422, "persons[2]"),
        (json!([]), 422, "persons"),
    ] {
        let a = call(&c, "POST", &path, &cm, Some(&release(persons.clone()))).await;
        assert_eq!(a.status, status, "{persons}: {}", a.body);
        let e = parse(&a);
        let message = e["error"]["message"].as_str().unwrap();
        assert!(message.contains(names), "{persons}: {message}");
    }
    let proof = json!({"persons": ["H-0", "H-3"], "at": testkit::recent(), "note": "group video"});
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/hostage-cases/{case}/proof-of-life-many"),
        &cm,
        Some(&proof),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    let too_many: Vec<String> = (0..501).map(|i| format!("H-{i}")).collect();
    let a = call(&c, "POST", &path, &cm, Some(&release(json!(too_many)))).await;
    assert_eq!(a.status, 422, "{}", a.body);
    // Only a crisis manager.
    let a = call(
        &c,
        "POST",
        &path,
        &c.duty_token,
        Some(&release(json!(["H-0"]))),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);

    assert_eq!(case_persons(&c, &cm, case).await, before, "nothing changed");

    // The good part alone goes through, and the proof of life too.
    let proof =
        json!({"persons": ["H-0", "H-1", "H-2"], "at": testkit::recent(), "note": "group video"});
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/hostage-cases/{case}/proof-of-life-many"),
        &cm,
        Some(&proof),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &c,
        "POST",
        &path,
        &cm,
        Some(&release(json!(["H-0", "H-1"]))),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let board = board_when(&c, |b| {
        b["countries"]["ML"]["hostage"]["persons_released"] == 3
    })
    .await;
    assert_eq!(board["countries"]["ML"]["hostage"]["persons_held"], 1);
}

fn station(id: &str, country: &str) -> DomainEvent {
    DutyStationRegistered {
        station: id.into(),
        country: Country::parse(country).unwrap(),
        area: format!("{id}-area"),
        name: format!("Station {id}"),
        lat: 2.0,
        lon: 45.0,
    }
    .into()
}

fn officer(id: &str, at: &str) -> DomainEvent {
    PersonRegistered {
        person: id.into(),
        name: format!("Officer {id}"),
        agency: "undss".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: at.into(),
        dependants: 0,
        security_officer: true,
        essential: true,
    }
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_approved_surge_is_cancelled_and_its_officer_goes_to_another() {
    let c = Center::start().await;
    for (id, country) in [("SOM-MGQ", "SO"), ("SOM-KIS", "SO"), ("KEN-NBO", "KE")] {
        register(
            &c,
            events::domain::station::stream_for(id),
            station(id, country),
        )
        .await;
    }
    register(
        &c,
        events::domain::person::stream_for("P-1"),
        officer("P-1", "KEN-NBO"),
    )
    .await;
    let cm = token(&c, Role::CrisisManager, "cm.sara");
    let first = "00000000-0000-4000-8000-00000000d001";
    let second = "00000000-0000-4000-8000-00000000d002";
    for (id, station) in [(first, "SOM-MGQ"), (second, "SOM-KIS")] {
        let body = json!({"id": id, "duty_station": station, "country": "SO",
            "reason": "attacks on the airport road", "officers_needed": 1, "assets": []});
        let a = call_ready(&c, "POST", "/api/v1/surges", &c.duty_token, &body).await;
        assert_eq!(a.status, 201, "{}", a.body);
        let a = call(
            &c,
            "POST",
            &format!("/api/v1/surges/{id}/approve"),
            &cm,
            Some(&json!({})),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let assign = json!({"officer": "P-1"});
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{first}/assign"),
        &c.duty_token,
        Some(&assign),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // On one active surge, not two.
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{second}/assign"),
        &c.duty_token,
        Some(&assign),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);

    let cancel = |reason: &str| json!({"reason": reason});
    let path = format!("/api/v1/surges/{first}/cancel");
    // The reason is one line of text, and it is the crisis manager's call.
    for bad in [json!({}), cancel(""), cancel("two\nlines")] {
        let a = call(&c, "POST", &path, &cm, Some(&bad)).await;
        assert_eq!(a.status, 422, "{bad}: {}", a.body);
    }
    let a = call(&c, "POST", &path, &c.duty_token, Some(&cancel("no"))).await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = call(&c, "POST", &path, &cm, Some(&cancel("the road reopened"))).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = call(&c, "GET", &format!("/api/v1/surges/{first}"), &cm, None).await;
    let got = parse(&got);
    assert_eq!(got["status"], "cancelled", "{got}");
    assert_eq!(got["cancelled_by"], "cm.sara", "{got}");
    assert_eq!(got["cancelled_reason"], "the road reopened", "{got}");
    assert_eq!(got["away_from"], json!({}), "{got}");
    // Cancelled once: a second cancel is a conflict, and so is everything else.
    let a = call(&c, "POST", &path, &cm, Some(&cancel("again"))).await;
    assert_eq!(a.status, 409, "{}", a.body);

    // The freed officer goes to the other surge at once.
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{second}/assign"),
        &c.duty_token,
        Some(&assign),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    // A deployed surge is completed, not cancelled.
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{second}/deploy"),
        &c.duty_token,
        Some(&json!({"at": testkit::recent()})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{second}/cancel"),
        &cm,
        Some(&cancel("too late")),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);

    let board = board_when(&c, |b| {
        b["countries"]["SO"]["surges"]
            .as_array()
            .is_some_and(|s| s.len() == 1)
            && b["timeline"].as_array().is_some_and(|t| {
                t.iter().any(|i| {
                    i["text"]
                        .as_str()
                        .is_some_and(|t| t.starts_with("Surge cancelled for SOM-MGQ"))
                })
            })
    })
    .await;
    assert_eq!(board["countries"]["SO"]["surges"][0]["id"], second);
    assert_eq!(board["counters"]["active_surges"], 1);
    assert!(!board.to_string().contains("road reopened"), "{board}");
}
