//! One rule for answers outside a caller's scope (issue 14, item 8): an existing object of
//! another country (for a field officer) or of another agency (for a focal point) is
//! answered 404, reading or acting on it alike, as for an id that does not exist; it is not
//! in the caller's lists either. Every kind of object is tried on real objects, made by the
//! duty officer over HTTP with the real services behind the gateway.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Center, import};
use events::validate::Country;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;
use vigil_gateway::auth::Role;

fn token(c: &Center, user: &str, role: Role, scope: Option<&str>, agency: Option<&str>) -> String {
    c.auth
        .issue(
            user,
            role,
            scope.map(str::to_owned),
            agency.map(str::to_owned),
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0
}

async fn call(
    c: &Center,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let a = testkit::http::json(c.addr, method, path, Some(token), body)
        .await
        .unwrap();
    let v = serde_json::from_str(&a.body).unwrap_or(Value::Null);
    (a.status, v)
}

/// Made by the duty officer: retried while the service behind the route is starting (503).
async fn make(c: &Center, path: &str, body: Value) {
    let (status, v) = testkit::eventually(Duration::from_secs(15), || async {
        let a = call(c, "POST", path, &c.duty_token, Some(&body)).await;
        (a.0 != 503).then_some(a)
    })
    .await
    .unwrap();
    assert!(status == 201 || status == 200, "{path}: {status} {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_outside_the_callers_scope_are_not_found_whatever_is_asked() {
    let c = Center::start().await;
    c.register_area().await;
    let so = Country::parse("SO").unwrap();
    let ke = Country::parse("KE").unwrap();
    c.register_mogadishu().await;
    for (agency, country) in [("unicef", so), ("undp", ke)] {
        import(
            &c,
            events::domain::agency::stream_for(agency),
            events::domain::agency::AgencyRegistered {
                agency: agency.into(),
                name: agency.to_uppercase(),
                countries: vec![country],
            }
            .into(),
        )
        .await;
    }
    import(
        &c,
        events::domain::person::stream_for("P-UNICEF-1"),
        events::domain::person::PersonRegistered {
            person: "P-UNICEF-1".into(),
            name: "Amina Hassan".into(),
            agency: "unicef".into(),
            nationality: ke,
            duty_station: "SOM-MGQ".into(),
            dependants: 0,
            security_officer: false,
            essential: false,
        }
        .into(),
    )
    .await;

    // One object of each kind, all in SO and (where an agency is named) unicef's.
    let incident = Uuid::new_v4();
    make(
        &c,
        "/api/v1/incidents",
        json!({"id": incident, "country": "SO", "category": "crime",
        "severity": 3, "title": "Scope check", "occurred_at": testkit::recent()}),
    )
    .await;
    let surge = Uuid::new_v4();
    make(
        &c,
        "/api/v1/surges",
        json!({"id": surge, "duty_station": "SOM-MGQ", "country": "SO",
        "reason": "Scope check", "officers_needed": 1, "assets": []}),
    )
    .await;
    let order = Uuid::new_v4();
    let deadline = (OffsetDateTime::now_utc() + time::Duration::hours(24))
        .format(&Rfc3339)
        .unwrap();
    make(&c, "/api/v1/orders", json!({"id": order, "kind": "relocation", "country": "SO",
        "area": "SOM-BAN", "scope": "all_personnel", "destination": "Kismayo", "deadline": deadline})).await;
    let clearance = Uuid::new_v4();
    make(
        &c,
        "/api/v1/clearances",
        json!({"id": clearance, "traveller": "P-UNICEF-1",
        "itinerary": [{"country": "SO", "from": "2026-12-01", "to": "2026-12-20"}]}),
    )
    .await;
    let cleared = Uuid::new_v4();
    make(
        &c,
        "/api/v1/clearances",
        json!({"id": cleared, "traveller": "P-UNICEF-1",
        "itinerary": [{"country": "SO", "from": "2026-12-01", "to": "2026-12-20"}]}),
    )
    .await;
    make(
        &c,
        &format!("/api/v1/clearances/{cleared}/approve"),
        json!({}),
    )
    .await;
    let broadcast = Uuid::new_v4();
    make(
        &c,
        "/api/v1/broadcasts",
        json!({"id": broadcast, "title": "Scope check",
        "body": "Stay in.", "severity": "low", "audience": {"country": "SO"},
        "requires_ack": true, "ack_deadline": "2099-01-01T00:00:00Z"}),
    )
    .await;
    let crisis = token(&c, "cm", Role::CrisisManager, None, None);
    let case = Uuid::new_v4();
    let (status, v) = call(
        &c,
        "POST",
        "/api/v1/hostage-cases",
        &crisis,
        Some(&json!({"id": case,
        "incident_id": incident, "country": "SO", "persons": ["P-UNICEF-1"],
        "captors": "unknown"})),
    )
    .await;
    assert_eq!(status, 201, "{v}");

    // Each one exists and is seen by those in scope (so a 404 below is the scope's).
    let seen = [
        format!("/api/v1/incidents/{incident}"),
        format!("/api/v1/surges/{surge}"),
        format!("/api/v1/orders/{order}"),
        format!("/api/v1/clearances/{clearance}"),
        format!("/api/v1/clearances/{cleared}"),
        format!("/api/v1/broadcasts/{broadcast}"),
        format!("/api/v1/hostage-cases/{case}"),
    ];
    for path in &seen {
        testkit::eventually(Duration::from_secs(10), || async {
            (call(&c, "GET", path, &crisis, None).await.0 == 200).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{path} is not seen by a crisis manager"));
    }
    let focal_unicef = token(
        &c,
        "fp.unicef",
        Role::AgencyFocalPoint,
        None,
        Some("unicef"),
    );
    let (status, v) = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{broadcast}"),
        &focal_unicef,
        None,
    )
    .await;
    assert_eq!(status, 200, "unicef's focal point sees its broadcast: {v}");

    let now = OffsetDateTime::now_utc().format(&Rfc3339).unwrap();
    let movement = json!({"country": "SO", "at": now});
    let officer_ke = token(&c, "fo.ke", Role::FieldOfficer, Some("KE"), None);
    let focal_undp = token(&c, "fp.undp", Role::AgencyFocalPoint, None, Some("undp"));
    let empty = json!({});
    let table: Vec<(&str, &str, String, Option<Value>)> = vec![
        // A field officer of KE, on SO's objects.
        (
            "fo.ke",
            "GET",
            format!("/api/v1/incidents/{incident}"),
            None,
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/incidents/{incident}/updates"),
            Some(json!({"note": "x"})),
        ),
        ("fo.ke", "GET", format!("/api/v1/surges/{surge}"), None),
        ("fo.ke", "GET", format!("/api/v1/orders/{order}"), None),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/orders/{order}/mark"),
            Some(json!({"person": "P-UNICEF-1", "status": "safe"})),
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/orders/{order}/mark-many"),
            Some(json!({"persons": ["P-UNICEF-1"], "status": "safe"})),
        ),
        (
            "fo.ke",
            "GET",
            format!("/api/v1/clearances/{clearance}"),
            None,
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/clearances/{clearance}/approve"),
            Some(empty.clone()),
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/clearances/{clearance}/refuse"),
            Some(json!({"reason": "no"})),
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/clearances/{cleared}/arrive"),
            Some(movement.clone()),
        ),
        (
            "fo.ke",
            "POST",
            format!("/api/v1/clearances/{cleared}/depart"),
            Some(movement.clone()),
        ),
        (
            "fo.ke",
            "GET",
            "/api/v1/areas/SOM-BAN/level".to_owned(),
            None,
        ),
        // A focal point of UNDP, on UNICEF's objects (focal points read no clearance at all:
        // that is their role's 403, in the authorization matrix).
        (
            "fp.undp",
            "GET",
            format!("/api/v1/broadcasts/{broadcast}"),
            None,
        ),
        (
            "fp.undp",
            "GET",
            format!("/api/v1/broadcasts/{broadcast}/chain"),
            None,
        ),
        (
            "fp.undp",
            "GET",
            format!("/api/v1/broadcasts/{broadcast}/cap"),
            None,
        ),
        (
            "fp.undp",
            "POST",
            format!("/api/v1/broadcasts/{broadcast}/ack"),
            Some(empty.clone()),
        ),
        (
            "fp.undp",
            "POST",
            format!("/api/v1/clearances/{cleared}/arrive"),
            Some(movement.clone()),
        ),
        (
            "fp.undp",
            "POST",
            format!("/api/v1/clearances/{cleared}/depart"),
            Some(movement.clone()),
        ),
    ];
    let mut wrong = Vec::new();
    for (who, method, path, body) in &table {
        let t = if *who == "fo.ke" {
            &officer_ke
        } else {
            &focal_undp
        };
        let (status, v) = call(&c, method, path, t, body.as_ref()).await;
        if status != 404 || v["error"]["code"] != "not_found" {
            wrong.push(format!("{who} {method} {path}: {status} {v}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "not answered 404 not_found:\n{}",
        wrong.join("\n")
    );

    // Nor are they in the caller's lists (a field officer lists no hostage case: its role's
    // 403, in the authorization matrix).
    for path in [
        "/api/v1/incidents",
        "/api/v1/surges",
        "/api/v1/orders",
        "/api/v1/clearances",
    ] {
        let (status, v) = call(&c, "GET", path, &officer_ke, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        for id in [incident, surge, order, clearance, cleared, case] {
            assert!(
                !v.to_string().contains(&id.to_string()),
                "{path} lists {id}: {v}"
            );
        }
    }
    for path in ["/api/v1/broadcasts"] {
        let (status, v) = call(&c, "GET", path, &focal_undp, None).await;
        assert_eq!(status, 200, "{path}: {v}");
        for id in [broadcast, clearance, cleared] {
            assert!(
                !v.to_string().contains(&id.to_string()),
                "{path} lists {id}: {v}"
            );
        }
    }

    // Asking for another country's or agency's list hides no object (the countries and
    // agencies are reference data): it is a question the caller may not ask, 403.
    for path in [
        "/api/v1/incidents?country=SO",
        "/api/v1/surges?country=SO",
        "/api/v1/clearances?country=SO",
    ] {
        let (status, v) = call(&c, "GET", path, &officer_ke, None).await;
        assert_eq!(status, 403, "{path}: {v}");
    }
    let (status, v) = call(
        &c,
        "GET",
        "/api/v1/cap/feed?agency=unicef",
        &focal_undp,
        None,
    )
    .await;
    assert_eq!(status, 403, "{v}");
}
