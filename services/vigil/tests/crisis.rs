//! Crisis operations through the real centre (`vigil up`: nats-server, store, every service,
//! gateway), over HTTP, with reference data loaded by `vigil import` from the shipped sample.
//!
//! For each of relocation orders, surges, hostage cases and clearances, the full life
//! (open → … → closed) is driven through the API and every step must show on the situation
//! board within 1 s. Hostage details never reach the wall_screen or field_officer views, and a
//! crisis manager's read of them leaves an audit event. A clearance into an area puts the
//! traveller on the roll call of an order given there.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

// The shared test centre (`vigil up` with the sample imported) and this file's board checks.
common::centre_type!();

impl Centre {
    async fn start() -> Self {
        // The services have read the imported reference data once a list answers with it.
        Self(
            common::up()
                .import(common::SAMPLE)
                .token("duty", "duty_officer", "duty_officer", None)
                .token("crisis", "crisis_manager", "crisis_manager", None)
                .token("fso", "field_officer", "field_officer", Some("SO"))
                .token("wall", "wall_screen", "wall_screen", None)
                .token("admin", "admin", "admin", None)
                .probe("/api/v1/orders")
                .start()
                .await,
        )
    }

    async fn board(&self, token: &str) -> Value {
        self.call("GET", "/api/v1/boards/situation", token, None)
            .await
            .json()
    }

    /// Waits until the duty board satisfies `ok`; asserts it took at most 1 s.
    async fn shows(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let started = Instant::now();
        loop {
            let board = self.board(&self["duty"]).await;
            if ok(&board) {
                let took = started.elapsed();
                eprintln!("crisis: {what}: on the board after {took:?}");
                assert!(took <= Duration::from_secs(1), "{what} took {took:?}");
                return board;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{what}: not on the board; it shows {board:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn now_plus(hours: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(hours))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn today_plus(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}

fn so_orders(board: &Value) -> Vec<Value> {
    board["countries"]["SO"]["orders"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relocation_orders_and_clearances_through_the_centre() {
    let c = Centre::start().await;

    // A traveller cleared into Banaadir for this week.
    let clearance = Uuid::new_v4();
    let itinerary =
        json!([{"country": "SO", "area": "SOM-BAN", "from": today_plus(-1), "to": today_plus(5)}]);
    c.ok(
        "POST",
        "/api/v1/clearances",
        &c["duty"],
        json!({"id": clearance, "traveller": "P-0010", "itinerary": itinerary, "purpose": "mission"}),
    )
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/clearances/{clearance}/approve"),
        &c["fso"],
        json!({}),
    )
    .await;

    // An evacuation of Banaadir: the four people of Mogadishu and the cleared traveller.
    let order = Uuid::new_v4();
    let given = c
        .ok(
            "POST",
            "/api/v1/orders",
            &c["duty"],
            json!({"id": order, "kind": "evacuation", "country": "SO", "area": "SOM-BAN",
                   "scope": "all_personnel", "destination": "Nairobi", "deadline": now_plus(24)}),
        )
        .await;
    assert!(given["position"].as_u64().unwrap() > 0);
    let board = c
        .shows("order given", |b| {
            so_orders(b).iter().any(|o| o["id"] == json!(order))
        })
        .await;
    let on_board = so_orders(&board)
        .into_iter()
        .find(|o| o["id"] == json!(order))
        .unwrap();
    // The shipped rule `order-to-country` turned the order into one broadcast to the agencies
    // present in Somalia, caused by the order, on the board and in the API.
    let alert = broadcast::rules::firing_id("order-to-country", order);
    c.shows("the order's broadcast", |b| {
        b["broadcasts"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["id"] == json!(alert)))
    })
    .await;
    let sent = c
        .call(
            "GET",
            &format!("/api/v1/broadcasts/{alert}"),
            &c["duty"],
            None,
        )
        .await
        .json();
    assert_eq!(sent["rule"]["trigger"], json!(order), "{sent}");
    assert_eq!(sent["severity"], "critical");
    let recipients: Vec<&str> = sent["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        recipients.contains(&"unicef") && recipients.contains(&"undss"),
        "{recipients:?}"
    );
    assert!(
        !recipients.contains(&"wfp"),
        "wfp has nobody in Somalia: {recipients:?}"
    );
    let all = c
        .call("GET", "/api/v1/broadcasts", &c["duty"], None)
        .await
        .json();
    let fired = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["rule"]["trigger"] == json!(order))
        .count();
    assert_eq!(fired, 1, "one broadcast per order");
    let view = c
        .call("GET", &format!("/api/v1/orders/{order}"), &c["duty"], None)
        .await
        .json();
    let people: Vec<String> = view["roll_call"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["person"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        people,
        ["P-0001", "P-0002", "P-0003", "P-0004", "P-0010"],
        "assigned to Mogadishu, plus the traveller cleared into the area"
    );
    assert_eq!(on_board["total"], 5, "{on_board}");
    assert!(
        view["roll_call"][0]["name"].is_string(),
        "duty views have names"
    );
    let wall = c.board(&c["wall"]).await.to_string();
    for p in &people {
        assert!(!wall.contains(p.as_str()), "the wall screen names nobody");
    }

    // A field officer marks one; a duty officer bulk-marks the rest; the % follows.
    c.ok(
        "POST",
        &format!("/api/v1/orders/{order}/mark"),
        &c["fso"],
        json!({"person": "P-0001", "status": "safe"}),
    )
    .await;
    c.shows("one of five accounted", |b| {
        so_orders(b)
            .iter()
            .any(|o| o["id"] == json!(order) && o["accounted"] == 1)
    })
    .await;
    let bulk = json!({"id": Uuid::new_v4(), "persons": people, "status": "relocated"});
    c.ok(
        "POST",
        &format!("/api/v1/orders/{order}/mark-many"),
        &c["duty"],
        bulk.clone(),
    )
    .await;
    let resent = c
        .ok(
            "POST",
            &format!("/api/v1/orders/{order}/mark-many"),
            &c["duty"],
            bulk,
        )
        .await;
    assert!(
        resent["position"].is_u64(),
        "a resent bulk mark is answered"
    );
    c.shows("everyone accounted", |b| {
        so_orders(b)
            .iter()
            .any(|o| o["id"] == json!(order) && o["accounted_pct"] == 100.0)
    })
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/orders/{order}/complete"),
        &c["duty"],
        json!({"note": "all out"}),
    )
    .await;
    c.shows("order completed and off the board", |b| {
        so_orders(b).iter().all(|o| o["id"] != json!(order))
    })
    .await;
    let after = c
        .call(
            "POST",
            &format!("/api/v1/orders/{order}/mark"),
            &c["duty"],
            Some(&json!({"person": "P-0001", "status": "missing"})),
        )
        .await;
    assert_eq!(after.status, 409, "{}", after.body);

    // The clearance's traveller arrives and departs; a second order no longer counts them.
    c.ok(
        "POST",
        &format!("/api/v1/clearances/{clearance}/arrive"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(-2)}),
    )
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/clearances/{clearance}/depart"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(0)}),
    )
    .await;
    // The relocation service learns of the departure from the log: give it a moment.
    let roll = testkit::eventually(Duration::from_secs(5), || async {
        let id = Uuid::new_v4();
        let a = c
            .call("POST", "/api/v1/orders", &c["duty"], Some(&json!({"id": id, "kind": "relocation", "country": "SO",
                "area": "SOM-BAN", "scope": "all_personnel", "destination": "Kismayo", "deadline": now_plus(24)})))
            .await;
        assert_eq!(a.status, 201, "{}", a.body);
        let v = c.call("GET", &format!("/api/v1/orders/{id}"), &c["duty"], None).await.json();
        (v["tally"]["total"] == 4).then_some(v)
    })
    .await;
    assert!(
        roll.is_some(),
        "the departed traveller is off the next roll call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surges_and_hostage_cases_through_the_centre() {
    let c = Centre::start().await;

    // A surge to Mogadishu with an officer from Baidoa: the board shows the gap at Baidoa.
    let surge = Uuid::new_v4();
    c.ok(
        "POST",
        "/api/v1/surges",
        &c["duty"],
        json!({"id": surge, "duty_station": "SOM-MGQ", "country": "SO",
               "reason": "Attacks on the airport road", "officers_needed": 1, "assets": ["armoured vehicle"]}),
    )
    .await;
    let surges = |b: &Value| -> Vec<Value> {
        b["countries"]["SO"]["surges"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    c.shows("surge requested", |b| {
        surges(b).iter().any(|s| s["id"] == json!(surge))
    })
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/surges/{surge}/approve"),
        &c["crisis"],
        json!({}),
    )
    .await;
    c.shows("surge approved", |b| {
        surges(b)
            .iter()
            .any(|s| s["id"] == json!(surge) && s["status"] == "approved")
    })
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/surges/{surge}/assign"),
        &c["duty"],
        json!({"officer": "P-0005"}),
    )
    .await;
    c.shows("officer assigned, gap at Baidoa", |b| {
        surges(b).iter().any(|s| {
            s["id"] == json!(surge) && s["officers_assigned"] == 1 && s["away_from"]["SOM-BAI"] == 1
        })
    })
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/surges/{surge}/deploy"),
        &c["duty"],
        json!({"at": now_plus(0)}),
    )
    .await;
    c.shows("surge deployed", |b| {
        surges(b)
            .iter()
            .any(|s| s["id"] == json!(surge) && s["status"] == "deployed")
    })
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/surges/{surge}/complete"),
        &c["duty"],
        json!({"at": now_plus(1)}),
    )
    .await;
    c.shows("surge completed", |b| {
        surges(b).iter().all(|s| s["id"] != json!(surge))
    })
    .await;

    // A hostage case: counts on every board, names nowhere but the crisis manager's read.
    // It opens from a reported incident.
    let incident = Uuid::new_v4();
    c.ok(
        "POST",
        "/api/v1/incidents",
        &c["crisis"],
        json!({"id": incident, "country": "SO", "category": "crime", "severity": 5,
               "title": "Two staff abducted", "occurred_at": now_plus(-1)}),
    )
    .await;
    let case = Uuid::new_v4();
    c.ok(
        "POST",
        "/api/v1/hostage-cases",
        &c["crisis"],
        json!({"id": case, "incident_id": incident, "country": "SO",
               "persons": ["P-0002", "P-0003"], "captors": "unknown armed group"}),
    )
    .await;
    let held = |n: u64| move |b: &Value| b["counters"]["persons_held"] == n;
    c.shows("case opened, two held", held(2)).await;
    for token in [&c["wall"], &c["fso"]] {
        let board = c.board(token).await.to_string();
        for secret in [
            "P-0002",
            "P-0003",
            "unknown armed group",
            "Fatima",
            "Zainab",
        ] {
            assert!(
                !board.contains(secret),
                "{secret} leaked into a redacted view"
            );
        }
    }
    let denied = c
        .call(
            "GET",
            &format!("/api/v1/hostage-cases/{case}"),
            &c["duty"],
            None,
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    let details = c
        .call(
            "GET",
            &format!("/api/v1/hostage-cases/{case}"),
            &c["crisis"],
            None,
        )
        .await;
    assert_eq!(details.status, 200, "{}", details.body);
    assert!(details.body.contains("P-0002"), "{}", details.body);
    let log = testkit::http::all_items(c.addr(), "/api/v1/events?limit=500", &c["admin"])
        .await
        .unwrap();
    let reads: Vec<&Value> = log.iter().filter(|e| e["type"] == "DetailsRead").collect();
    assert_eq!(reads.len(), 1, "one audited read");
    assert_eq!(reads[0]["data"]["what"], format!("hostage-{case}"));
    assert_eq!(reads[0]["data"]["role"], "crisis_manager");

    c.ok(
        "POST",
        &format!("/api/v1/hostage-cases/{case}/release"),
        &c["crisis"],
        json!({"person": "P-0002", "at": now_plus(0)}),
    )
    .await;
    c.shows("one released", held(1)).await;
    let again = c
        .call(
            "POST",
            &format!("/api/v1/hostage-cases/{case}/release"),
            &c["crisis"],
            Some(&json!({"person": "P-0002", "at": now_plus(0)})),
        )
        .await;
    assert_eq!(again.status, 409, "released once: {}", again.body);
    c.ok(
        "POST",
        &format!("/api/v1/hostage-cases/{case}/release"),
        &c["crisis"],
        json!({"person": "P-0003", "at": now_plus(0)}),
    )
    .await;
    c.ok(
        "POST",
        &format!("/api/v1/hostage-cases/{case}/close"),
        &c["crisis"],
        json!({"outcome": "both released", "accounting": [
            {"person": "P-0002", "status": "released"}, {"person": "P-0003", "status": "released"}]}),
    )
    .await;
    c.shows("case closed", |b| b["counters"]["hostage_cases"] == 0)
        .await;
}
