//! The clearances service against a real nats-server and a real store, spoken to over NATS
//! with real `Command` payloads: the life of a clearance, retries stored once, and two duty
//! officers deciding the same clearance at once.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::command::{Actor, Role};
use events::domain::person::{self, PersonRegistered};
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

fn duty(user: &str) -> Actor {
    actor(user, Role::DutyOfficer, None)
}

fn field(user: &str, country: &str) -> Actor {
    actor(user, Role::FieldOfficer, Some(country))
}

async fn start() -> Centre {
    let mut c = Centre::start(vigil_clearances::SERVICE, |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    c.instance(runtime::host::run::<vigil_clearances::Clearances>)
        .await;
    c
}

/// Puts `id` in the personnel register, as `vigil import` does.
async fn register_person(c: &Centre, id: &str) {
    let event = PersonRegistered {
        person: id.into(),
        name: format!("Person {id}"),
        agency: "unicef".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: "KEN-NBO".into(),
        dependants: 0,
        security_officer: false,
        essential: false,
    };
    c.import([(person::stream_for(id), event.into())]).await;
}

/// The event types of clearance `id`'s stream, in order.
async fn stream_types(c: &Centre, id: Uuid) -> Vec<String> {
    let events = c.stream(&vigil_clearances::stream_of(id)).await;
    events.into_iter().map(|e| e.event_type).collect()
}

/// `list` with `filters`, once the register has caught up and shows `until`.
async fn list_until(
    c: &Centre,
    actor: &Actor,
    filters: Value,
    until: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    testkit::eventually(Duration::from_secs(10), || {
        let filters = filters.clone();
        let until = &until;
        async move {
            let answer = c.ask("list", actor, Uuid::new_v4(), filters).await;
            let list = answer["ok"]["items"].as_array()?.clone();
            until(&list).then_some(list)
        }
    })
    .await
    .unwrap_or_else(|| panic!("the list never showed what was expected ({filters})"))
}

fn journey() -> Value {
    // Nairobi, then Banaadir (Mogadishu) for ten days, then Nairobi again.
    json!([
        {"country": "KE", "from": "2026-11-20", "to": "2026-11-21"},
        {"country": "SO", "area": "SOM-BAN", "from": "2026-11-21", "to": "2026-11-30"},
        {"country": "KE", "from": "2026-11-30", "to": "2026-12-01"}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearance_from_request_to_departure() {
    let c = start().await;
    let desk = duty("duty.one");
    let somalia = field("fso.so", "SO");
    let id = Uuid::new_v4();
    let request = json!({"traveller": "P-0010", "itinerary": journey(), "purpose": "assessment"});

    // Not in the personnel register yet.
    let (code, message) = c.refused("request", &desk, request.clone()).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("vigil import"), "{message}");
    register_person(&c, "P-0010").await;

    let written = c.ok_with("request", &desk, id, request).await;
    assert_eq!(written["stream"], format!("clearance-{id}"));
    assert_eq!(written["duplicate"], false);
    let got = c
        .ok_with("get", &somalia, Uuid::new_v4(), json!({"clearance": id}))
        .await;
    assert_eq!(got["status"], "requested");
    assert_eq!(got["traveller"], "P-0010");
    assert_eq!(got["requested_by"], "duty.one");

    // Another country's officer does not learn it exists; the SO officer may not decide a
    // journey through Kenya.
    let ethiopia = field("fso.et", "ET");
    let (code, _) = c.refused("get", &ethiopia, json!({"clearance": id})).await;
    assert_eq!(code, "not_found");
    let (code, _) = c
        .refused("approve", &somalia, json!({"clearance": id, "change": {}}))
        .await;
    assert_eq!(code, "forbidden");
    let (code, _) = c
        .refused(
            "arrive",
            &desk,
            json!({"clearance": id, "change": {"country": "SO", "at": "2026-11-21T09:00:00Z"}}),
        )
        .await;
    assert_eq!(code, "conflict", "not approved yet");

    c.ok_with(
        "approve",
        &desk,
        Uuid::new_v4(),
        json!({"clearance": id, "change": {}}),
    )
    .await;
    let (code, _) = c
        .refused(
            "refuse",
            &desk,
            json!({"clearance": id, "change": {"reason": "too late"}}),
        )
        .await;
    assert_eq!(code, "conflict", "decided once");

    let moves = [
        ("arrive", "SO", "2026-11-21T09:00:00Z"),
        ("depart", "SO", "2026-11-29T15:00:00+03:00"),
    ];
    for (name, country, at) in moves {
        c.ok_with(
            name,
            &somalia,
            Uuid::new_v4(),
            json!({"clearance": id, "change": {"country": country, "at": at}}),
        )
        .await;
    }
    let change = |country: &str, at: &str| json!({"clearance": id, "change": {"country": country, "at": at}});
    let (code, _) = c
        .refused("depart", &somalia, change("SO", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "conflict", "departed already");
    let (code, _) = c
        .refused("arrive", &somalia, change("KE", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "forbidden", "Kenya is not the SO officer's");
    let (code, _) = c
        .refused("arrive", &desk, change("ET", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "invalid", "Ethiopia is not on the itinerary");
    let (code, _) = c
        .refused("depart", &desk, change("KE", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "conflict", "never arrived in Kenya");

    let got = c
        .ok_with("get", &desk, Uuid::new_v4(), json!({"clearance": id}))
        .await;
    assert_eq!(got["status"], "approved");
    assert_eq!(got["decided_by"], "duty.one");
    assert_eq!(got["movements"].as_array().unwrap().len(), 2);
    assert_eq!(got["version"], 4);
    assert_eq!(
        stream_types(&c, id).await,
        [
            "ClearanceRequested",
            "ClearanceApproved",
            "ArrivalRecorded",
            "DepartureRecorded"
        ]
    );

    // A second traveller, requested and refused.
    register_person(&c, "P-0011").await;
    let other = Uuid::new_v4();
    c.ok_with(
        "request",
        &field("fso.so2", "SO"),
        other,
        json!({"traveller": "P-0011", "itinerary": [{"country": "SO", "from": "2026-11-25", "to": "2026-11-28"}]}),
    )
    .await;
    c.ok_with(
        "refuse",
        &somalia,
        Uuid::new_v4(),
        json!({"clearance": other, "change": {"reason": "level 6 in the area"}}),
    )
    .await;

    // The register follows the log: lists, filters, the headcount.
    let all = list_until(&c, &desk, json!({}), |l| l.len() == 2).await;
    assert_eq!(all[0]["id"], json!(other), "newest first");
    let approved = list_until(
        &c,
        &desk,
        json!({"status": "approved", "country": "SO"}),
        |l| l.len() == 1,
    )
    .await;
    assert_eq!(approved[0]["id"], json!(id));
    list_until(&c, &desk, json!({"traveller": "P-0011"}), |l| {
        l.len() == 1 && l[0]["status"] == "refused"
    })
    .await;
    // In Banaadir on the 25th; gone on the 29th (departed that day, local time).
    list_until(
        &c,
        &somalia,
        json!({"country": "SO", "area": "SOM-BAN", "on": "2026-11-25"}),
        |l| l.len() == 1 && l[0]["traveller"] == "P-0010",
    )
    .await;
    list_until(
        &c,
        &desk,
        json!({"country": "SO", "on": "2026-11-29"}),
        <[Value]>::is_empty,
    )
    .await;
    let (code, _) = c.refused("list", &somalia, json!({"country": "KE"})).await;
    assert_eq!(code, "forbidden");
    let (code, _) = c.refused("list", &desk, json!({"status": "lost"})).await;
    assert_eq!(code, "invalid");
    let (code, _) = c
        .refused("list", &actor("wall", Role::WallScreen, None), json!({}))
        .await;
    assert_eq!(code, "forbidden");
    let (code, _) = c.refused("cancel", &desk, json!({"clearance": id})).await;
    assert_eq!(code, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_is_stored_once() {
    let c = start().await;
    register_person(&c, "P-0020").await;
    let desk = duty("duty.one");
    let id = Uuid::new_v4();
    let request = json!({"traveller": "P-0020", "itinerary": journey()});

    let first = c.ok_with("request", &desk, id, request.clone()).await;
    let again = c.ok_with("request", &desk, id, request).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);
    // The same id for another request.
    let other = c
        .ask(
            "request",
            &desk,
            id,
            json!({"traveller": "P-0020", "itinerary": [{"country": "ET", "from": "2026-12-01", "to": "2026-12-02"}]}),
        )
        .await;
    assert_eq!(other["error"]["code"], "id_reused", "{other}");

    let approve = Uuid::new_v4();
    let body = json!({"clearance": id, "change": {}});
    let (a, b) = tokio::join!(
        c.ask("approve", &desk, approve, body.clone()),
        c.ask("approve", &desk, approve, body.clone())
    );
    assert!(a["ok"].is_object() && b["ok"].is_object(), "{a} {b}");
    assert_eq!(a["ok"]["position"], b["ok"]["position"]);
    let later = c.ok_with("approve", &desk, approve, body).await;
    assert_eq!(later["duplicate"], true);
    assert_eq!(later["position"], a["ok"]["position"]);

    let arrive = Uuid::new_v4();
    let body = json!({"clearance": id, "change": {"country": "SO", "at": "2026-11-21T09:00:00Z"}});
    let first = c.ok_with("arrive", &desk, arrive, body.clone()).await;
    let again = c.ok_with("arrive", &desk, arrive, body).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);

    assert_eq!(
        stream_types(&c, id).await,
        ["ClearanceRequested", "ClearanceApproved", "ArrivalRecorded"],
        "each command stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_and_refusing_at_once_one_wins_the_other_is_refused() {
    let c = start().await;
    register_person(&c, "P-0030").await;
    let (amina, omar) = (duty("duty.amina"), duty("duty.omar"));
    let mut winners = (0, 0);
    for _ in 0..12 {
        let id = Uuid::new_v4();
        c.ok_with(
            "request",
            &amina,
            id,
            json!({"traveller": "P-0030", "itinerary": journey()}),
        )
        .await;
        let (approve, refuse) = tokio::join!(
            c.ask(
                "approve",
                &amina,
                Uuid::new_v4(),
                json!({"clearance": id, "change": {}})
            ),
            c.ask(
                "refuse",
                &omar,
                Uuid::new_v4(),
                json!({"clearance": id, "change": {"reason": "no escort available"}})
            ),
        );
        let types = stream_types(&c, id).await;
        assert_eq!(types.len(), 2, "never both applied: {types:?}");
        let got = c
            .ok_with("get", &amina, Uuid::new_v4(), json!({"clearance": id}))
            .await;
        match (approve["ok"].is_object(), refuse["ok"].is_object()) {
            (true, false) => {
                assert_eq!(refuse["error"]["code"], "conflict", "{refuse}");
                assert!(
                    refuse["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("already approved by duty.amina"),
                    "{refuse}"
                );
                assert_eq!(types[1], "ClearanceApproved");
                assert_eq!(got["status"], "approved");
                winners.0 += 1;
            }
            (false, true) => {
                assert_eq!(approve["error"]["code"], "conflict", "{approve}");
                assert!(
                    approve["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("already refused by duty.omar"),
                    "{approve}"
                );
                assert_eq!(types[1], "ClearanceRefused");
                assert_eq!(got["status"], "refused");
                assert_eq!(got["refusal_reason"], "no escort available");
                winners.1 += 1;
            }
            _ => panic!("exactly one must win: {approve} / {refuse}"),
        }
    }
    assert_eq!(winners.0 + winners.1, 12, "{winners:?}");
}
