//! One list shape and what a call triggered (issue 14, items 7 and 6), through the real
//! gateway with the real services behind it:
//! - every list route (`vigil_gateway::LIST_ROUTES`) answers `{"items", "position",
//!   "next"}`; walking its pages with `?limit=` and `?cursor=` lists each item exactly once,
//!   also while new items arrive between pages; a bad cursor or limit is a 422 JSON refusal;
//! - the calls whose events broadcast rules fire on answer a `triggered` link, and that
//!   link lists the rule broadcast the event caused (fired asynchronously: polled with a
//!   deadline), also when flap damping held a later trigger back.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Center, call, call_ready, import};
use events::validate::Country;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use vigil_gateway::auth::Role;

fn token(c: &Center, user: &str, role: Role) -> String {
    c.auth
        .issue(user, role, None, None, Duration::from_secs(3600), "session")
        .unwrap()
        .0
}

/// Somalia's reference data: the area `SOM-BAN`, station `SOM-MGQ`, agency `unicef` and
/// three people of it there.
async fn somalia(c: &Center) {
    c.register_area().await;
    let so = Country::parse("SO").unwrap();
    c.register_mogadishu().await;
    import(
        c,
        events::domain::agency::stream_for("unicef"),
        events::domain::agency::AgencyRegistered {
            agency: "unicef".into(),
            name: "UNICEF".into(),
            countries: vec![so],
        }
        .into(),
    )
    .await;
    for n in 1..=3 {
        let person = format!("P-UNICEF-{n}");
        import(
            c,
            events::domain::person::stream_for(&person),
            events::domain::person::PersonRegistered {
                person: person.clone(),
                name: format!("Person {n}"),
                agency: "unicef".into(),
                nationality: Country::parse("KE").unwrap(),
                duty_station: "SOM-MGQ".into(),
                dependants: 0,
                security_officer: false,
                essential: false,
            }
            .into(),
        )
        .await;
    }
}

/// Creates one thing with `token` (retried while the service starts) and returns the answer.
async fn make(c: &Center, token: &str, path: &str, body: Value) -> Value {
    let a = call_ready(c, "POST", path, token, &body).await;
    assert!(
        a.status == 201 || a.status == 200,
        "{path}: {} {}",
        a.status,
        a.body
    );
    a.json()
}

fn incident(n: usize) -> Value {
    json!({"id": Uuid::new_v4(), "country": "SO", "category": "crime", "severity": 2,
        "title": format!("List check {n}"), "occurred_at": testkit::recent()})
}

/// The id of a listed item: a hostage case's is `case`, every other's `id`.
fn id_of(item: &Value) -> String {
    item.get("case")
        .or_else(|| item.get("id"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("a listed item without an id: {item}"))
        .to_owned()
}

/// A page of `path`, checked for the one shape.
async fn page(c: &Center, path: &str) -> Value {
    let a = call(c, "GET", path, &c.duty_token, None).await;
    assert_eq!(a.status, 200, "GET {path}: {}", a.body);
    let v = a.json();
    let keys: BTreeSet<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("GET {path} is not an object: {}", a.body))
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["items", "next", "position"]),
        "GET {path}: {v}"
    );
    assert!(v["items"].is_array(), "GET {path}: {v}");
    assert!(v["position"].is_u64(), "GET {path}: {v}");
    assert!(
        v["next"].is_null() || v["next"].is_string(),
        "GET {path}: {v}"
    );
    v
}

fn with(path: &str, query: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{query}")
}

/// Walks `path` page by page (`limit` a page), calling `between` after the first page;
/// returns the ids in the order listed and the number of pages. Only the log may answer an
/// empty page that is not the last (the events a caller may not see are left out of it).
async fn walk(
    c: &Center,
    path: &str,
    limit: usize,
    between: impl AsyncFnOnce(),
) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut url = with(path, &format!("limit={limit}"));
    let mut between = Some(between);
    loop {
        let v = page(c, &url).await;
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= limit, "GET {url}: {} items", items.len());
        ids.extend(items.iter().map(id_of));
        pages += 1;
        if let Some(f) = between.take() {
            f().await;
        }
        match v["next"].as_str() {
            Some(cursor) => {
                assert!(
                    !items.is_empty() || path.starts_with("/api/v1/events"),
                    "GET {url}: an empty page with a next: {v}"
                );
                url = with(path, &format!("limit={limit}&cursor={cursor}"));
            }
            None => return (ids, pages),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_list_has_one_shape_and_its_pages_list_each_item_once() {
    let c = Center::start().await;
    somalia(&c).await;
    let crisis = token(&c, "cm.sara", Role::CrisisManager);
    let deadline = (OffsetDateTime::now_utc() + time::Duration::hours(24))
        .format(&Rfc3339)
        .unwrap();

    // Three of every kind: more than a page of two.
    let mut incidents = Vec::new();
    for n in 0..3 {
        let a = make(&c, &c.duty_token, "/api/v1/incidents", incident(n)).await;
        incidents.push(a["id"].as_str().unwrap().to_owned());
    }
    for (n, person) in ["P-UNICEF-1", "P-UNICEF-2", "P-UNICEF-3"]
        .iter()
        .enumerate()
    {
        make(
            &c,
            &crisis,
            "/api/v1/hostage-cases",
            json!({"incident_id": incidents[n],
            "country": "SO", "persons": [person], "captors": "unknown"}),
        )
        .await;
        make(&c, &c.duty_token, "/api/v1/surges", json!({"duty_station": "SOM-MGQ",
            "country": "SO", "reason": format!("List check {n}"), "officers_needed": 1, "assets": []}))
        .await;
        make(
            &c,
            &c.duty_token,
            "/api/v1/orders",
            json!({"kind": "relocation", "country": "SO",
            "area": "SOM-BAN", "scope": "all_personnel", "destination": format!("Kismayo {n}"),
            "deadline": deadline}),
        )
        .await;
        make(
            &c,
            &c.duty_token,
            "/api/v1/clearances",
            json!({"traveller": person,
            "itinerary": [{"country": "SO", "from": "2026-12-01", "to": "2026-12-20"}]}),
        )
        .await;
        make(
            &c,
            &c.duty_token,
            "/api/v1/broadcasts",
            json!({"title": format!("List check {n}"),
            "body": "Stay in.", "severity": "low", "audience": {"country": "SO"},
            "requires_ack": false}),
        )
        .await;
    }

    for path in vigil_gateway::LIST_ROUTES {
        // The registers follow the log: wait until the whole list holds what was made (the
        // broadcasts: three issued, three fired by the orders' rule).
        let made = match *path {
            "/api/v1/broadcasts" => 6,
            _ => 3,
        };
        let whole = testkit::eventually(Duration::from_secs(15), || async {
            let v = page(&c, &with(path, "limit=500")).await;
            (v["items"].as_array().unwrap().len() >= made).then_some(v)
        })
        .await
        .unwrap_or_else(|| panic!("GET {path} never listed {made} items"));
        assert_eq!(
            whole["next"],
            Value::Null,
            "GET {path}: one page holds it all"
        );
        let all: Vec<String> = whole["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect();

        let (walked, pages) = walk(&c, path, 2, async || {}).await;
        assert!(
            pages >= 2,
            "GET {path}: {} items in {pages} page(s)",
            walked.len()
        );
        let once: BTreeSet<&String> = walked.iter().collect();
        assert_eq!(
            once.len(),
            walked.len(),
            "GET {path}: an item listed twice: {walked:?}"
        );
        if *path == "/api/v1/events" {
            // The log grows at its end meanwhile (deliveries are recorded as they happen).
            assert_eq!(
                walked[..all.len()],
                all[..],
                "GET {path}: the log, in order"
            );
        } else {
            assert_eq!(
                walked, all,
                "GET {path}: the pages, end to end, are the whole list"
            );
        }

        // Refusals: JSON, 422, nothing listed.
        for bad in [
            "cursor=garbage",
            "cursor=c1-zz",
            "cursor=",
            "limit=0",
            "limit=501",
        ] {
            let url = with(path, bad);
            let a = call(&c, "GET", &url, &c.duty_token, None).await;
            assert_eq!(a.status, 422, "GET {url}: {}", a.body);
            assert_eq!(
                a.json()["error"]["code"],
                "invalid",
                "GET {url}: {}",
                a.body
            );
        }
    }

    // A report arriving between two pages is on none of the later pages, and nothing of the
    // first walk is lost or repeated.
    let before = testkit::http::all_items(c.addr, "/api/v1/incidents?limit=500", &c.duty_token)
        .await
        .unwrap();
    let before: Vec<String> = before.iter().map(id_of).collect();
    let (walked, _) = walk(&c, "/api/v1/incidents", 1, async || {
        let a = make(&c, &c.duty_token, "/api/v1/incidents", incident(9)).await;
        let new = a["id"].as_str().unwrap().to_owned();
        testkit::eventually(Duration::from_secs(10), || async {
            let v = page(&c, "/api/v1/incidents?limit=1").await;
            (v["items"][0]["id"] == json!(new)).then_some(())
        })
        .await
        .expect("the new report is listed");
    })
    .await;
    assert_eq!(walked, before, "a walk is not disturbed by newer items");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_level_raise_links_to_the_rule_broadcast_it_caused() {
    let c = Center::start().await;
    somalia(&c).await;
    let set = |level: u8| json!({"level": level, "reason": format!("list check: level {level}")});
    let caused = async |link: &str| -> Vec<Value> {
        testkit::eventually(Duration::from_secs(15), || async {
            let v = page(&c, link).await;
            let items = v["items"].as_array().unwrap().clone();
            (!items.is_empty()).then_some(items)
        })
        .await
        .unwrap_or_else(|| panic!("{link} listed nothing within 15 s"))
    };

    // Raised to 5: the rule "level-5-6-to-country" fires for unicef, after the answer.
    let a = call_ready(
        &c,
        "PUT",
        "/api/v1/areas/SOM-BAN/level",
        &c.duty_token,
        &set(5),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let raised = a.json();
    let event = raised["event_id"].as_str().unwrap();
    let link = format!("/api/v1/broadcasts?caused_by={event}");
    assert_eq!(raised["triggered"], json!(link), "{raised}");
    let fired = caused(&link).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    let b = &fired[0];
    assert_eq!(b["rule"]["rule"], "level-5-6-to-country", "{b}");
    assert_eq!(b["rule"]["trigger"], json!(event), "{b}");
    assert_eq!(b["recipients"], json!(["unicef"]), "{b}");
    let first = b["id"].clone();
    assert_eq!(
        first,
        json!(broadcast::rules::firing_id(
            "level-5-6-to-country",
            Uuid::parse_str(event).unwrap()
        )),
        "the rule broadcast's id is derived from rule and trigger"
    );

    // Lowered, then raised to 5 again within the damping window: no new broadcast; the
    // link of the second raise lists the broadcast that stands for it.
    let a = call(
        &c,
        "PUT",
        "/api/v1/areas/SOM-BAN/level",
        &c.duty_token,
        Some(&set(3)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = call(
        &c,
        "PUT",
        "/api/v1/areas/SOM-BAN/level",
        &c.duty_token,
        Some(&set(5)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let again = a.json();
    let damped = caused(again["triggered"].as_str().unwrap()).await;
    assert_eq!(damped.len(), 1, "{damped:?}");
    assert_eq!(damped[0]["id"], first, "{damped:?}");

    // An order's answer links to the broadcast its rule fires, too.
    let deadline = (OffsetDateTime::now_utc() + time::Duration::hours(24))
        .format(&Rfc3339)
        .unwrap();
    let order = make(
        &c,
        &c.duty_token,
        "/api/v1/orders",
        json!({"kind": "evacuation",
        "country": "SO", "area": "SOM-BAN", "scope": "all_personnel",
        "destination": "Nairobi", "deadline": deadline}),
    )
    .await;
    let link = order["triggered"].as_str().unwrap();
    assert_eq!(
        link,
        format!(
            "/api/v1/broadcasts?caused_by={}",
            order["event_id"].as_str().unwrap()
        )
    );
    let fired = caused(link).await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(fired[0]["rule"]["rule"], "order-to-country", "{fired:?}");

    // A report and a hostage case answer the link as well; a transition does not.
    let report = make(&c, &c.duty_token, "/api/v1/incidents", incident(0)).await;
    assert_eq!(
        report["triggered"],
        json!(format!(
            "/api/v1/broadcasts?caused_by={}",
            report["event_id"].as_str().unwrap()
        ))
    );
    let verified = call(
        &c,
        "POST",
        &format!(
            "/api/v1/incidents/{}/verify",
            report["id"].as_str().unwrap()
        ),
        &c.duty_token,
        Some(&json!({})),
    )
    .await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert!(
        verified.json().get("triggered").is_none(),
        "{}",
        verified.body
    );

    // caused_by is an event id.
    let a = call(
        &c,
        "GET",
        "/api/v1/broadcasts?caused_by=yesterday",
        &c.duty_token,
        None,
    )
    .await;
    assert_eq!(a.status, 422, "{}", a.body);
}
