//! Broadcasts over HTTP, end to end against a real gateway, store, nats-server and broadcast
//! service: issue, the two-person rule, acknowledgement by an agency focal point, the
//! causal chain, CAP 1.2 documents and feeds, and the board showing who approved and who
//! acknowledged.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;
use vigil_gateway::auth::Role;

mod common;

use common::{Center, call};

async fn register_agency(c: &Center, agency: &str, countries: &[&str]) {
    let e = events::domain::agency::AgencyRegistered {
        agency: agency.into(),
        name: agency.to_uppercase(),
        countries: countries
            .iter()
            .map(|c| events::validate::Country::parse(c).unwrap())
            .collect(),
    };
    let meta = events::Meta {
        actor: Some("import".into()),
        ..Default::default()
    };
    let event = events::domain::DomainEvent::from(e).to_new_event(uuid::Uuid::new_v4(), meta);
    c.store
        .append(&events::AppendRequest {
            after: None,
            stream: events::domain::agency::stream_for(agency),
            expected_version: events::ExpectedVersion::Any,
            events: vec![event],
        })
        .await
        .unwrap();
}

fn token(c: &Center, user: &str, role: Role, agency: Option<&str>) -> String {
    c.auth
        .issue(
            user,
            role,
            None,
            agency.map(str::to_owned),
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broadcast_over_http_from_issue_to_acknowledgement_with_cap_and_the_board() {
    let c = Center::start().await;
    register_agency(&c, "unicef", &["SO"]).await;
    register_agency(&c, "wfp", &["SO", "KE"]).await;
    let ben = token(&c, "ben", Role::DutyOfficer, None);
    let fp = token(&c, "fp.unicef", Role::AgencyFocalPoint, Some("unicef"));

    // Issued by ana: high severity, so it waits for a second duty officer.
    let body = json!({"id": "00000000-0000-4000-8000-00000000b001", "title": "Curfew 18:00",
        "body": "All staff remain in residences.", "severity": "high",
        "audience": {"country": "SO"}, "requires_ack": true,
        "ack_deadline": "2099-01-01T00:00:00Z"});
    let issued = testkit::eventually(Duration::from_secs(15), || async {
        let a = call(&c, "POST", "/api/v1/broadcasts", &c.duty_token, Some(&body)).await;
        (a.status != 503).then_some(a)
    })
    .await
    .unwrap();
    assert_eq!(issued.status, 201, "{}", issued.body);
    let id = "00000000-0000-4000-8000-00000000b001";
    let again = call(&c, "POST", "/api/v1/broadcasts", &c.duty_token, Some(&body)).await;
    assert_eq!(again.status, 200, "a resend is stored once: {}", again.body);

    let own = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/approve"),
        &c.duty_token,
        Some(&json!({})),
    )
    .await;
    assert_eq!(own.status, 403, "{}", own.body);
    assert_eq!(own.json()["error"]["code"], "second_person_required");
    assert!(
        own.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("two-person")
    );
    let unseen = call(&c, "GET", &format!("/api/v1/broadcasts/{id}"), &fp, None).await;
    assert_eq!(unseen.status, 404, "not sent to agencies before approval");

    let ok = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/approve"),
        &ben,
        Some(&json!({})),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let acked = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/ack"),
        &fp,
        Some(&json!({})),
    )
    .await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    let twice = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/ack"),
        &fp,
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        twice.status, 200,
        "the same focal point again: the first answer: {}",
        twice.body
    );
    let colleague = token(&c, "fp2.unicef", Role::AgencyFocalPoint, Some("unicef"));
    let other = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/ack"),
        &colleague,
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        other.status, 409,
        "unicef already acknowledged: {}",
        other.body
    );

    let view = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}"),
        &c.duty_token,
        None,
    )
    .await;
    let v = view.json();
    assert_eq!(
        (v["status"].as_str(), v["approved_by"].as_str()),
        (Some("live"), Some("ben"))
    );
    assert_eq!(v["agencies"]["unicef"]["ack"]["by"], "fp.unicef");
    let chain = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}/chain"),
        &c.duty_token,
        None,
    )
    .await;
    assert_eq!(chain.status, 200);
    let types: Vec<String> = chain.json()["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        types.starts_with(&["BroadcastIssued".into(), "BroadcastApproved".into()]),
        "{types:?}"
    );
    assert!(types.contains(&"BroadcastAcknowledged".into()));

    // CAP: the alert, the agency's feed, and the public feed (this one is to a country, so
    // not in the public feed).
    let alert = call(
        &c,
        "GET",
        &format!("/api/v1/broadcasts/{id}/cap"),
        &fp,
        None,
    )
    .await;
    assert_eq!(alert.status, 200);
    assert_eq!(alert.header("content-type"), Some("application/cap+xml"));
    broadcast::cap::parse(&alert.body).unwrap();
    let feed = call(&c, "GET", "/api/v1/cap/feed", &fp, None).await;
    assert_eq!(feed.header("content-type"), Some("application/atom+xml"));
    assert_eq!(broadcast::cap::alerts_in_feed(&feed.body).len(), 1);
    let public = testkit::http::request(c.addr, "GET", "/api/v1/cap/public", &[], None)
        .await
        .unwrap();
    assert_eq!(public.status, 200);
    assert!(broadcast::cap::alerts_in_feed(&public.body).is_empty());

    // Bad input: a JSON error, nothing stored.
    let bad = call(&c, "POST", "/api/v1/broadcasts", &c.duty_token,
        Some(&json!({"title": "x", "body": "y", "severity": "apocalyptic", "audience": "all_agencies"}))).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(
        bad.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("severity")
    );
    let list = call(&c, "GET", "/api/v1/broadcasts", &c.duty_token, None).await;
    assert_eq!(
        list.json()["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.body
    );
}
