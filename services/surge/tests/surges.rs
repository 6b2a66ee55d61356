//! The surge service against a real nats-server and a real store, over NATS with real
//! `Command` payloads: a surge's whole life, retries stored once, the refusals that need the
//! reference data and the register, and concurrent commands (one wins, the other is decided
//! again on the new state and refused — never both applied).

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::RecordedEvent;
use events::command::{Actor, Role};
use events::domain::DomainEvent;
use events::domain::person::{self, PersonRegistered};
use events::domain::station::{self, DutyStationRegistered};
use events::validate::Country;
use serde_json::{Value, json};
use testkit::inproc::Centre;
use uuid::Uuid;

fn actor(user: &str, role: Role, scope: Option<&str>) -> Actor {
    Actor {
        user: user.into(),
        role,
        scope: scope.map(|s| Country::parse(s).unwrap()),
        agency: None,
    }
}

fn fso() -> Actor {
    actor("fso.so", Role::FieldOfficer, Some("SO"))
}

fn fso_ke() -> Actor {
    actor("fso.ke", Role::FieldOfficer, Some("KE"))
}

fn duty() -> Actor {
    actor("duty.1", Role::DutyOfficer, None)
}

fn crisis() -> Actor {
    actor("crisis.1", Role::CrisisManager, None)
}

fn crisis2() -> Actor {
    actor("crisis.2", Role::CrisisManager, None)
}

fn station(id: &str, country: &str) -> DomainEvent {
    DutyStationRegistered {
        station: id.into(),
        country: Country::parse(country).unwrap(),
        area: format!("{id}-AREA"),
        name: id.into(),
        lat: 1.0,
        lon: 1.0,
    }
    .into()
}

fn person(id: &str, at: &str, officer: bool) -> DomainEvent {
    PersonRegistered {
        person: id.into(),
        name: format!("Person {id}"),
        agency: "undss".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: at.into(),
        dependants: 0,
        security_officer: officer,
        essential: false,
    }
    .into()
}

/// A nats-server, a store, the reference data (`vigil import` would write the same events)
/// and the surge service.
async fn start() -> Centre {
    let mut c = Centre::start(vigil_surge::SERVICE, |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    let mut reference = vec![
        (station::stream_for("SOM-MGQ"), station("SOM-MGQ", "SO")),
        (station::stream_for("SOM-BAI"), station("SOM-BAI", "SO")),
        (station::stream_for("KEN-NBO"), station("KEN-NBO", "KE")),
        (person::stream_for("P-1"), person("P-1", "SOM-BAI", true)),
        (person::stream_for("P-2"), person("P-2", "KEN-NBO", true)),
        (person::stream_for("P-3"), person("P-3", "SOM-BAI", false)),
        (person::stream_for("P-4"), person("P-4", "SOM-MGQ", true)),
    ];
    for i in 10..20 {
        let id = format!("P-{i}");
        reference.push((person::stream_for(&id), person(&id, "KEN-NBO", true)));
    }
    c.import(reference).await;
    c.instance(runtime::host::run::<vigil_surge::Surges>).await;
    c
}

/// A new surge at Mogadishu asking for `needed` officers, approved if `approve`.
async fn surge(c: &Centre, needed: u16, approve: bool) -> Uuid {
    let id = Uuid::new_v4();
    let answer = c.ask("request", &duty(), id, request_body(needed)).await;
    assert!(answer["ok"].is_object(), "{answer}");
    if approve {
        c.ok("approve", &crisis(), json!({"surge": id, "change": {}}))
            .await;
    }
    id
}

async fn stream(c: &Centre, id: Uuid) -> Vec<RecordedEvent> {
    c.stream(&vigil_surge::stream_of(id)).await
}

/// The list, once the register is caught up and `until` holds.
async fn list_until(
    c: &Centre,
    who: &Actor,
    filters: Value,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let found = testkit::eventually(Duration::from_secs(10), || {
        let filters = filters.clone();
        let until = &until;
        async move {
            let answer = c.ask("list", who, Uuid::new_v4(), filters).await;
            answer["ok"]
                .is_object()
                .then_some(answer["ok"].clone())
                .filter(until)
        }
    })
    .await;
    found.unwrap_or_else(|| panic!("the list never showed what was expected ({filters})"))
}

fn request_body(needed: u16) -> Value {
    json!({"duty_station": "SOM-MGQ", "country": "SO", "reason": "attacks on the airport road",
           "officers_needed": needed, "assets": ["armoured vehicle", "satellite phone"]})
}

fn types(events: &[RecordedEvent]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_surge_lives_from_request_to_completion_and_retries_are_stored_once() {
    let c = start().await;
    let id = Uuid::new_v4();

    // Request by a field officer of the station's country; a retry is the same outcome.
    let first = c.ask("request", &fso(), id, request_body(2)).await;
    assert_eq!(first["ok"]["duplicate"], false, "{first}");
    let again = c.ask("request", &fso(), id, request_body(2)).await;
    assert_eq!(again["ok"]["duplicate"], true, "{again}");
    assert_eq!(again["ok"]["position"], first["ok"]["position"]);
    let other = c.ask("request", &fso(), id, request_body(3)).await;
    assert_eq!(other["error"]["code"], "id_reused", "{other}");
    assert_eq!(types(&stream(&c, id).await), ["SurgeRequested"]);

    // Scope and reference data.
    let mut kenya = request_body(2);
    kenya["duty_station"] = json!("KEN-NBO");
    kenya["country"] = json!("KE");
    assert_eq!(c.refused("request", &fso(), kenya).await.0, "forbidden");
    let mut unknown = request_body(2);
    unknown["duty_station"] = json!("SOM-XXX");
    let (code, message) = c.refused("request", &duty(), unknown).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("vigil import"), "{message}");
    let mut wrong_country = request_body(2);
    wrong_country["country"] = json!("KE");
    assert_eq!(
        c.refused("request", &duty(), wrong_country).await.0,
        "invalid"
    );
    assert_eq!(
        c.refused("get", &fso_ke(), json!({"surge": id})).await.0,
        "not_found",
        "another country's surge is not revealed"
    );
    let seen = c.ok("get", &fso(), json!({"surge": id})).await;
    assert_eq!(seen["status"], "requested");
    assert_eq!(seen["requested_by"], "fso.so");

    // Approval, retried with the same command id: stored once.
    let approve = Uuid::new_v4();
    let body = json!({"surge": id, "change": {}});
    let a1 = c.ask("approve", &crisis(), approve, body.clone()).await;
    let a2 = c.ask("approve", &crisis(), approve, body).await;
    assert_eq!(a1["ok"]["duplicate"], false, "{a1}");
    assert_eq!(a2["ok"]["duplicate"], true, "{a2}");
    assert_eq!(a2["ok"]["position"], a1["ok"]["position"]);
    assert_eq!(
        c.refused("approve", &duty(), json!({"surge": id, "change": {}}))
            .await
            .0,
        "forbidden",
        "only a crisis manager decides"
    );

    // An officer from Baidoa: the surge shows the gap it leaves there.
    c.ok(
        "assign",
        &duty(),
        json!({"surge": id, "change": {"officer": "P-1"}}),
    )
    .await;
    let seen = c.ok("get", &duty(), json!({"surge": id})).await;
    assert_eq!(seen["status"], "approved");
    assert_eq!(seen["officers_assigned"], 1);
    assert_eq!(seen["officers"][0]["officer"], "P-1");
    assert_eq!(seen["officers"][0]["from_duty_station"], "SOM-BAI");
    assert_eq!(seen["away_from"], json!({"SOM-BAI": 1}));
    let listed = list_until(
        &c,
        &duty(),
        json!({"status": "approved", "country": "SO"}),
        |l| {
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["id"] == json!(id) && s["officers_assigned"] == 1)
        },
    )
    .await;
    let listed_surge = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(id))
        .unwrap();
    assert_eq!(listed_surge["away_from"]["SOM-BAI"], 1, "{listed}");
    let theirs = list_until(&c, &fso_ke(), json!({}), |_| true).await;
    assert!(
        theirs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != json!(id)),
        "{theirs}"
    );

    // Deployed, then completed: the officer is back.
    c.ok(
        "deploy",
        &duty(),
        json!({"surge": id, "change": {"at": "2026-11-28T06:00:00Z"}}),
    )
    .await;
    c.ok(
        "complete",
        &crisis(),
        json!({"surge": id, "change": {"at": "2026-12-05T06:00:00Z"}}),
    )
    .await;
    let seen = c.ok("get", &fso(), json!({"surge": id})).await;
    assert_eq!(seen["status"], "completed");
    assert_eq!(seen["away_from"], json!({}));
    assert_eq!(
        types(&stream(&c, id).await),
        [
            "SurgeRequested",
            "SurgeApproved",
            "SurgeOfficerAssigned",
            "SurgeDeployed",
            "SurgeCompleted"
        ]
    );
    list_until(&c, &duty(), json!({"status": "completed"}), |l| {
        l["items"][0]["id"] == json!(id)
    })
    .await;
    assert_eq!(
        c.refused(
            "complete",
            &duty(),
            json!({"surge": id, "change": {"at": "2026-12-06T00:00:00Z"}})
        )
        .await
        .0,
        "conflict"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_officer_already_deployed_is_refused_until_their_surge_completes() {
    let c = start().await;
    let first = surge(&c, 2, true).await;
    let second = surge(&c, 2, true).await;
    let assign = |surge: Uuid, change: Value| json!({"surge": surge, "change": change});

    c.ok("assign", &duty(), assign(first, json!({"officer": "P-2"})))
        .await;
    c.ok(
        "deploy",
        &duty(),
        assign(first, json!({"at": "2026-11-28T06:00:00Z"})),
    )
    .await;
    let (code, message) = c
        .refused(
            "assign",
            &crisis(),
            assign(second, json!({"officer": "P-2"})),
        )
        .await;
    assert_eq!(code, "conflict");
    assert!(
        message.contains(&first.to_string()),
        "names the surge: {message}"
    );

    // The other refusals that need the reference data.
    let (code, message) = c
        .refused(
            "assign",
            &duty(),
            assign(second, json!({"officer": "P-404"})),
        )
        .await;
    assert_eq!(code, "not_found");
    assert!(message.contains("vigil import"), "{message}");
    let (code, message) = c
        .refused("assign", &duty(), assign(second, json!({"officer": "P-3"})))
        .await;
    assert_eq!(code, "invalid");
    assert!(message.contains("not a security officer"), "{message}");
    let (code, _) = c
        .refused("assign", &duty(), assign(second, json!({"officer": "P-4"})))
        .await;
    assert_eq!(
        code, "invalid",
        "an officer of Mogadishu is not sent to Mogadishu"
    );
    let (code, message) = c
        .refused(
            "assign",
            &duty(),
            assign(
                second,
                json!({"officer": "P-1", "from_duty_station": "KEN-NBO"}),
            ),
        )
        .await;
    assert_eq!(code, "invalid");
    assert!(message.starts_with("from_duty_station"), "{message}");
    let unapproved = surge(&c, 1, false).await;
    assert_eq!(
        c.refused(
            "assign",
            &duty(),
            assign(unapproved, json!({"officer": "P-1"}))
        )
        .await
        .0,
        "conflict"
    );
    assert_eq!(
        c.refused(
            "assign",
            &duty(),
            assign(Uuid::new_v4(), json!({"officer": "P-1"}))
        )
        .await
        .0,
        "not_found"
    );

    // Completion frees the officer at once (this instance wrote it; no wait for the feed).
    c.ok(
        "complete",
        &duty(),
        assign(first, json!({"at": "2026-12-01T06:00:00Z"})),
    )
    .await;
    c.ok("assign", &duty(), assign(second, json!({"officer": "P-2"})))
        .await;
    let seen = c.ok("get", &duty(), json!({"surge": second})).await;
    assert_eq!(seen["away_from"], json!({"KEN-NBO": 1}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_assigns_of_one_officer_to_two_surges_exactly_one_wins() {
    let c = start().await;
    let a = surge(&c, 10, true).await;
    let b = surge(&c, 10, true).await;
    for i in 10..20 {
        let officer = format!("P-{i}");
        let to = |surge: Uuid| json!({"surge": surge, "change": {"officer": officer}});
        let (d, m) = (duty(), crisis());
        let (x, y) = tokio::join!(
            c.ask("assign", &d, Uuid::new_v4(), to(a)),
            c.ask("assign", &m, Uuid::new_v4(), to(b)),
        );
        let oks = [&x, &y].iter().filter(|r| r["ok"].is_object()).count();
        assert_eq!(oks, 1, "{officer}: {x} / {y}");
        let loser = if x["ok"].is_object() { &y } else { &x };
        assert_eq!(loser["error"]["code"], "conflict", "{loser}");
    }
    // The log agrees: each officer assigned exactly once over both surges.
    let mut assigned: Vec<String> = Vec::new();
    for surge in [a, b] {
        for e in stream(&c, surge).await {
            if e.event_type == "SurgeOfficerAssigned" {
                assigned.push(e.data["officer"].as_str().unwrap().to_owned());
            }
        }
    }
    assigned.sort();
    let expected: Vec<String> = (10..20).map(|i| format!("P-{i}")).collect();
    assert_eq!(assigned, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_approvals_of_one_surge_one_ok_the_other_conflict() {
    let c = start().await;
    for _ in 0..5 {
        let id = surge(&c, 1, false).await;
        let body = json!({"surge": id, "change": {}});
        let (m1, m2) = (crisis(), crisis2());
        let (x, y) = tokio::join!(
            c.ask("approve", &m1, Uuid::new_v4(), body.clone()),
            c.ask("approve", &m2, Uuid::new_v4(), body.clone()),
        );
        let oks = [&x, &y].iter().filter(|r| r["ok"].is_object()).count();
        assert_eq!(oks, 1, "{x} / {y}");
        let loser = if x["ok"].is_object() { &y } else { &x };
        assert_eq!(loser["error"]["code"], "conflict", "{loser}");
        assert!(
            loser["error"]["message"]
                .as_str()
                .unwrap()
                .contains("already approved"),
            "decided again on the new state: {loser}"
        );
        assert_eq!(
            types(&stream(&c, id).await),
            ["SurgeRequested", "SurgeApproved"]
        );
    }
}
