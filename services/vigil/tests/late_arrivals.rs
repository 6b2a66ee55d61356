//! Late arrivals on an open relocation order, through the real centre (`vigil up`), over
//! HTTP, with reference data loaded by `vigil import` (issue 14 item 11).
//!
//! An order's roll call follows who comes into and leaves its area while it is open: a
//! clearance arrival and a new assignment put people on it as late arrivals; a departure and
//! an assignment elsewhere mark them "left the area" without dropping them; the board counts
//! both. A restart of the centre replays every trigger and stores nothing twice; a completed
//! order does not change.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

// The shared test centre (`vigil up` with the sample imported) and this file's order checks.
common::centre_type!();

impl Centre {
    /// Ready once the relocation service has read the log.
    async fn start() -> Self {
        Self(
            common::up()
                .import(common::SAMPLE)
                .token("duty", "duty_officer", "duty_officer", None)
                .token("fso", "field_officer", "field_officer", Some("SO"))
                .probe("/api/v1/orders")
                .start()
                .await,
        )
    }

    /// Personnel records (JSON Lines) through `vigil import`, as an operator loads them.
    fn assign(&self, lines: &[Value]) {
        self.import_lines(lines);
    }

    /// Gives an evacuation of Banaadir; returns its id.
    async fn give(&self) -> Uuid {
        let id = Uuid::new_v4();
        let body = json!({"id": id, "kind": "evacuation", "country": "SO", "area": "SOM-BAN",
            "scope": "all_personnel", "destination": "Nairobi", "deadline": now_plus(24 * 60)});
        self.ok("POST", "/api/v1/orders", &self["duty"], body).await;
        id
    }

    async fn order(&self, id: Uuid) -> Value {
        let a = self
            .call("GET", &format!("/api/v1/orders/{id}"), &self["duty"], None)
            .await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.json()
    }

    /// Waits (up to 5 s) until the order satisfies `ok`.
    async fn order_shows(&self, id: Uuid, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..250 {
            last = self.order(id).await;
            if ok(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: the order shows {last:#}");
    }

    async fn board_order(&self, id: Uuid) -> Value {
        let board = self
            .call("GET", "/api/v1/boards/situation", &self["duty"], None)
            .await
            .json();
        board["countries"]["SO"]["orders"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["id"] == json!(id))
            .cloned()
            .unwrap_or(Value::Null)
    }
}

fn now_plus(minutes: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn today_plus(days: i64) -> String {
    (time::OffsetDateTime::now_utc().date() + time::Duration::days(days)).to_string()
}

/// The roll call as `person → (late_arrival, left_area)`.
fn flags(view: &Value) -> std::collections::BTreeMap<String, (bool, bool)> {
    view["roll_call"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["person"].as_str().unwrap().to_owned(),
                (e["late_arrival"] == true, e["left_area"] == true),
            )
        })
        .collect()
}

fn person(id: &str, name: &str, station: &str) -> Value {
    json!({"kind": "person", "person": id, "name": name, "agency": "unicef", "nationality": "KE",
           "duty_station": station, "dependants": 0, "security_officer": false, "essential": false})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_arrivals_and_leavers_on_an_open_order_survive_a_restart() {
    let mut c = Centre::start().await;

    // P-0010 (based in Hargeisa) is cleared into Banaadir this week, came and left the
    // country before the order: not on its roll call.
    let clearance = Uuid::new_v4();
    let itinerary =
        json!([{"country": "SO", "area": "SOM-BAN", "from": today_plus(-1), "to": today_plus(5)}]);
    c.ok(
        "POST",
        "/api/v1/clearances",
        &c["duty"],
        json!({"id": clearance, "traveller": "P-0010", "itinerary": itinerary}),
    )
    .await;
    let moves = format!("/api/v1/clearances/{clearance}");
    c.ok("POST", &format!("{moves}/approve"), &c["fso"], json!({}))
        .await;
    c.ok(
        "POST",
        &format!("{moves}/arrive"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(-3)}),
    )
    .await;
    c.ok(
        "POST",
        &format!("{moves}/depart"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(-2)}),
    )
    .await;

    // The relocation service learns of the departure from the log: give it a moment (an
    // order given before that counts the traveller, and stays open beside ours).
    let view = testkit::eventually(Duration::from_secs(5), || async {
        let v = c.order(c.give().await).await;
        (v["tally"]["total"] == 4).then_some(v)
    })
    .await
    .expect("an order without the traveller who left");
    let order: Uuid = view["id"].as_str().unwrap().parse().unwrap();
    let expected_start: Vec<(&str, (bool, bool))> = ["P-0001", "P-0002", "P-0003", "P-0004"]
        .into_iter()
        .map(|p| (p, (false, false)))
        .collect();
    assert_eq!(
        flags(&view)
            .iter()
            .map(|(p, f)| (p.as_str(), *f))
            .collect::<Vec<_>>(),
        expected_start,
        "Mogadishu's four, none late"
    );

    // The traveller arrives again; P-0011 is reassigned from Hargeisa to Mogadishu; P-0100
    // joins at Mogadishu: three late arrivals.
    c.ok(
        "POST",
        &format!("{moves}/arrive"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(-1)}),
    )
    .await;
    c.assign(&[
        person("P-0011", "Lena Garcia", "SOM-MGQ"),
        person("P-0100", "Nadia Rahman", "SOM-MGQ"),
    ]);
    let view = c
        .order_shows(order, "three late arrivals", |v| {
            v["tally"]["late_arrivals"] == 3
        })
        .await;
    let f = flags(&view);
    for p in ["P-0010", "P-0011", "P-0100"] {
        assert_eq!(f[p], (true, false), "{p} is a late arrival: {view:#}");
    }
    assert_eq!(view["tally"]["total"], 7);
    let late_line = view["roll_call"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["person"] == "P-0100")
        .unwrap();
    assert_eq!(
        (&late_line["name"], &late_line["duty_station"]),
        (&json!("Nadia Rahman"), &json!("SOM-MGQ"))
    );

    // The traveller departs; P-0004 is reassigned to Baidoa: both left the area, still on
    // the roll call.
    c.ok(
        "POST",
        &format!("{moves}/depart"),
        &c["fso"],
        json!({"country": "SO", "at": now_plus(0)}),
    )
    .await;
    let mut p4 = person("P-0004", "Samir Mohamed", "SOM-BAI");
    p4["agency"] = json!("undp");
    p4["nationality"] = json!("SN");
    c.assign(&[p4]);
    let view = c
        .order_shows(order, "two left the area", |v| v["tally"]["left_area"] == 2)
        .await;
    let f = flags(&view);
    assert_eq!(f["P-0010"], (true, true), "late, then left: {view:#}");
    assert_eq!(f["P-0004"], (false, true));
    assert_eq!(f["P-0001"], (false, false));
    assert_eq!(view["tally"]["total"], 7, "nobody is dropped");

    // The board counts them, without names.
    let mut on_board = Value::Null;
    for _ in 0..50 {
        on_board = c.board_order(order).await;
        if on_board["left_area"] == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        (
            &on_board["total"],
            &on_board["late_arrivals"],
            &on_board["left_area"]
        ),
        (&json!(7), &json!(3), &json!(2)),
        "{on_board}"
    );

    // A restart replays every trigger: nothing is stored twice, the roll call is the same.
    let before = c.order(order).await;
    c.restart().await;
    // Give the replayed register time to act if it were going to append anything again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = c.order(order).await;
    assert_eq!(
        after["version"], before["version"],
        "no event appended again"
    );
    assert_eq!(after["roll_call"], before["roll_call"]);
    assert_eq!(after["tally"], before["tally"]);
    assert_eq!(c.board_order(order).await["late_arrivals"], 3);

    // After the restart the order still follows: P-0004 comes back to Mogadishu, with the
    // very record the sample imported at the start (A → B → A: stored again, because it
    // differs from the latest registration).
    let mut p4 = person("P-0004", "Samir Mohamed", "SOM-MGQ");
    p4["agency"] = json!("undp");
    p4["nationality"] = json!("SN");
    c.assign(&[p4]);
    let view = c
        .order_shows(order, "P-0004 is back", |v| v["tally"]["left_area"] == 1)
        .await;
    assert_eq!(flags(&view)["P-0004"], (false, false));

    // A completed order does not change any more; one still open does.
    let open = c.give().await;
    c.ok(
        "POST",
        &format!("/api/v1/orders/{order}/complete"),
        &c["duty"],
        json!({}),
    )
    .await;
    let done = c.order(order).await;
    c.assign(&[person("P-0101", "Tomas Silva", "SOM-MGQ")]);
    c.order_shows(open, "the open order takes the newcomer", |v| {
        flags(v).contains_key("P-0101")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = c.order(order).await;
    assert_eq!(still["version"], done["version"], "{still:#}");
    assert!(!flags(&still).contains_key("P-0101"));
}
