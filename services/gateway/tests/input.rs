//! Input the centre must refuse, and acting only inside one's scope, through the real
//! gateway, services, store and nats-server: a JSON key sent twice, a time in the future or
//! long past, an unknown duty station or another country's, a hostage case from no incident,
//! titles of controls, bidi overrides or invisible characters (and NFC on the way in), a
//! focal point acting for another agency's traveller, a field officer requesting a journey
//! with no leg in their country, a body of the wrong shape (read as its type at the edge).
//! Each refusal is 422 naming the field (404 for what is
//! outside the caller's scope, 403 for what the caller may never do), and stores nothing.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::domain::DomainEvent;
use events::domain::person::PersonRegistered;
use events::domain::station::DutyStationRegistered;
use events::validate::Country;
use serde_json::{Value, json};
use time::OffsetDateTime;
use uuid::Uuid;
use vigil_gateway::auth::Role;

mod common;

use common::Center;

fn token(c: &Center, user: &str, role: Role, scope: Option<&str>, agency: Option<&str>) -> String {
    let scope = scope.map(str::to_owned);
    c.auth
        .issue(
            user,
            role,
            scope,
            agency.map(str::to_owned),
            Duration::from_secs(3600),
            "api",
        )
        .unwrap()
        .0
}

async fn call(c: &Center, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let a = testkit::http::json(c.addr, method, path, Some(token), Some(body))
        .await
        .unwrap();
    (a.status, a.json())
}

async fn get(c: &Center, path: &str, token: &str) -> (u16, Value) {
    let a = testkit::http::json(c.addr, "GET", path, Some(token), None)
        .await
        .unwrap();
    (a.status, a.json())
}

/// Sends `body` as it is (bytes: a duplicate key survives only this way).
async fn raw(c: &Center, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let headers = [
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    let a = testkit::http::request(c.addr, method, path, &headers, Some(body.as_bytes()))
        .await
        .unwrap();
    (a.status, a.json())
}

/// Asserts a 422 whose message starts with `field:`.
fn refused_on(field: &str, (status, body): &(u16, Value)) {
    assert_eq!(*status, 422, "{field}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!("{field}:")),
        "the refusal names {field}: {body}"
    );
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn report(title: &str, occurred_at: OffsetDateTime) -> Value {
    json!({"id": Uuid::new_v4(), "country": "SO", "category": "crime", "severity": 3,
           "title": title, "occurred_at": rfc3339(occurred_at)})
}

/// Appends reference data as `vigil import` does.
async fn import(c: &Center, stream: events::StreamName, event: DomainEvent) {
    let meta = events::Meta {
        actor: Some("import".into()),
        ..Default::default()
    };
    c.store
        .append(&events::AppendRequest {
            after: None,
            stream,
            expected_version: events::ExpectedVersion::Any,
            events: vec![event.try_to_new_event(Uuid::new_v4(), meta).unwrap()],
        })
        .await
        .unwrap();
}

async fn import_station(c: &Center, station: &str, country: &str) {
    let s = DutyStationRegistered {
        station: station.into(),
        country: Country::parse(country).unwrap(),
        area: format!("{country}-AREA"),
        name: station.into(),
        lat: 1.0,
        lon: 40.0,
    };
    import(c, events::domain::station::stream_for(station), s.into()).await;
}

async fn import_person(c: &Center, person: &str, agency: &str) {
    let p = PersonRegistered {
        person: person.into(),
        name: "Amina Hassan".into(),
        agency: agency.into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: "KEN-NBO".into(),
        dependants: 0,
        security_officer: false,
        essential: false,
    };
    import(c, events::domain::person::stream_for(person), p.into()).await;
}

/// The incident `id` is not stored.
async fn not_stored(c: &Center, id: &Value) {
    let (status, body) = get(
        c,
        &format!("/api/v1/incidents/{}", id.as_str().unwrap()),
        &c.duty_token,
    )
    .await;
    assert_eq!(status, 404, "a refused report stored nothing: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_twice_is_refused_naming_it() {
    let c = Center::start().await;
    c.register_area().await;
    let id = Uuid::new_v4();
    let now = rfc3339(OffsetDateTime::now_utc());
    // Which country is this? A proxy keeping the first says SO, serde_json the last: KE.
    let twice = format!(
        r#"{{"id":"{id}","country":"SO","category":"crime","severity":3,"title":"Twice","occurred_at":"{now}","country":"KE"}}"#
    );
    let answer = raw(&c, "POST", "/api/v1/incidents", &c.duty_token, &twice).await;
    refused_on("country", &answer);
    assert_eq!(answer.1["error"]["code"], "invalid_body", "{}", answer.1);
    not_stored(&c, &json!(id.to_string())).await;

    // Nested, in an array, and on the other kinds of body: one rule at the edge.
    let nested = format!(
        r#"{{"id":"{id}","country":"SO","category":"crime","severity":3,"title":"Twice","occurred_at":"{now}","location":{{"lat":2.0,"lon":45.0,"lat":-2.0}}}}"#
    );
    refused_on(
        "location.lat",
        &raw(&c, "POST", "/api/v1/incidents", &c.duty_token, &nested).await,
    );
    refused_on(
        "level",
        &raw(
            &c,
            "PUT",
            "/api/v1/areas/SOM-BAN/level",
            &c.duty_token,
            r#"{"level": 2, "reason": "calm", "level": 6}"#,
        )
        .await,
    );
    let legs = r#"{"traveller":"P-1","itinerary":[{"country":"SO","from":"2026-12-01","to":"2026-12-02","to":"2026-12-09"}]}"#;
    refused_on(
        "itinerary[0].to",
        &raw(&c, "POST", "/api/v1/clearances", &c.duty_token, legs).await,
    );
    // An escaped spelling of the same key is the same key.
    let escaped = format!(
        r#"{{"id":"{id}","country":"SO","category":"crime","severity":3,"title":"Twice","occurred_at":"{now}","\u0074itle":"Other"}}"#
    );
    refused_on(
        "title",
        &raw(&c, "POST", "/api/v1/incidents", &c.duty_token, &escaped).await,
    );
    not_stored(&c, &json!(id.to_string())).await;
    // The same body with each key once is taken.
    let once = format!(
        r#"{{"id":"{id}","country":"SO","category":"crime","severity":3,"title":"Once","occurred_at":"{now}"}}"#
    );
    assert_eq!(
        raw(&c, "POST", "/api/v1/incidents", &c.duty_token, &once)
            .await
            .0,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn occurred_at_must_be_neither_in_the_future_nor_long_past() {
    let c = Center::start().await;
    let fso = token(&c, "fso.ali", Role::FieldOfficer, Some("SO"), None);
    let now = OffsetDateTime::now_utc();
    for (t, why) in [
        (now + time::Duration::hours(1), "an hour ahead"),
        (now + time::Duration::days(365), "next year"),
        (now - time::Duration::days(31), "a month and a day ago"),
        (now - time::Duration::days(3650), "ten years ago"),
    ] {
        let body = report("Roadblock", t);
        let answer = call(&c, "POST", "/api/v1/incidents", &fso, &body).await;
        refused_on("occurred_at", &answer);
        assert!(!why.is_empty());
        not_stored(&c, &body["id"]).await;
    }
    // A fast phone clock (a minute ahead) and a report flushed after a week offline.
    for t in [
        now + time::Duration::minutes(1),
        now - time::Duration::days(7),
    ] {
        let answer = call(
            &c,
            "POST",
            "/api/v1/incidents",
            &fso,
            &report("Roadblock", t),
        )
        .await;
        assert_eq!(answer.0, 201, "{}", answer.1);
    }
    // A correction into the future is refused the same way.
    let body = report("Roadblock", now - time::Duration::hours(2));
    assert_eq!(
        call(&c, "POST", "/api/v1/incidents", &fso, &body).await.0,
        201
    );
    let id = body["id"].as_str().unwrap();
    let answer = call(
        &c,
        "POST",
        &format!("/api/v1/incidents/{id}/updates"),
        &fso,
        &json!({"occurred_at": rfc3339(now + time::Duration::days(1))}),
    )
    .await;
    refused_on("occurred_at", &answer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duty_station_must_be_registered_in_the_reports_country() {
    let c = Center::start().await;
    import_station(&c, "SOM-MGQ", "SO").await;
    import_station(&c, "KEN-NBO", "KE").await;
    let fso = token(&c, "fso.ali", Role::FieldOfficer, Some("SO"), None);
    let now = OffsetDateTime::now_utc();
    for station in ["SOM-XXX", "KEN-NBO"] {
        let mut body = report("Gunfire", now);
        body["duty_station"] = json!(station);
        let answer = call(&c, "POST", "/api/v1/incidents", &fso, &body).await;
        refused_on("duty_station", &answer);
        not_stored(&c, &body["id"]).await;
    }
    let mut body = report("Gunfire", now);
    body["duty_station"] = json!("SOM-MGQ");
    let answer = call(&c, "POST", "/api/v1/incidents", &fso, &body).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    // Moving the incident to Kenya keeps a Somali station: refused until the station moves too.
    let id = body["id"].as_str().unwrap();
    let path = format!("/api/v1/incidents/{id}/updates");
    refused_on(
        "duty_station",
        &call(&c, "POST", &path, &c.duty_token, &json!({"country": "KE"})).await,
    );
    let answer = call(
        &c,
        "POST",
        &path,
        &c.duty_token,
        &json!({"country": "KE", "duty_station": "KEN-NBO"}),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostage_case_opens_from_a_reported_incident_only() {
    let c = Center::start().await;
    let crisis = token(&c, "cm.sara", Role::CrisisManager, None, None);
    let case = |incident: &Value| {
        json!({"id": Uuid::new_v4(), "incident_id": incident, "country": "SO",
               "persons": ["P-0002"]})
    };
    let nowhere = json!(Uuid::new_v4());
    let body = case(&nowhere);
    let answer = call(&c, "POST", "/api/v1/hostage-cases", &crisis, &body).await;
    refused_on("incident_id", &answer);
    let path = format!("/api/v1/hostage-cases/{}", body["id"].as_str().unwrap());
    assert_eq!(get(&c, &path, &crisis).await.0, 404, "nothing was opened");

    let incident = report("Two staff abducted", OffsetDateTime::now_utc());
    assert_eq!(
        call(&c, "POST", "/api/v1/incidents", &crisis, &incident)
            .await
            .0,
        201
    );
    let answer = call(
        &c,
        "POST",
        "/api/v1/hostage-cases",
        &crisis,
        &case(&incident["id"]),
    )
    .await;
    assert_eq!(answer.0, 201, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn titles_of_controls_bidi_overrides_or_nothing_visible_are_refused() {
    let c = Center::start().await;
    let now = OffsetDateTime::now_utc();
    for title in [
        "   ",
        "\u{200B}\u{200B}",
        "\u{FEFF} \u{2060}",
        "Roadblock\u{202E}kcolbdaoR",
        "Roadblock \u{2066}x\u{2069}",
        "Two\nlines",
        "Bell\u{7}",
        "Escape\u{1B}[2J",
    ] {
        let body = report(title, now);
        let answer = call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body).await;
        refused_on("title", &answer);
        not_stored(&c, &body["id"]).await;
    }
    // A description may hold line breaks and tabs, not a bidi override.
    let mut body = report("Roadblock", now);
    body["description"] = json!("Checkpoint on the\nairport road \u{202E}closed");
    refused_on(
        "description",
        &call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body).await,
    );
    body["description"] = json!("Checkpoint on the\nairport road\tclosed");
    assert_eq!(
        call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body)
            .await
            .0,
        201
    );
    // A title typed with a combining accent is stored as its NFC spelling.
    let body = report("Cafe\u{301} attacked", now);
    assert_eq!(
        call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body)
            .await
            .0,
        201
    );
    let (_, stored) = get(
        &c,
        &format!("/api/v1/incidents/{}", body["id"].as_str().unwrap()),
        &c.duty_token,
    )
    .await;
    assert_eq!(stored["title"], "Caf\u{E9} attacked", "{stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn focal_points_act_for_their_own_agencys_travellers_only() {
    let c = Center::start().await;
    import_person(&c, "P-WFP-1", "wfp").await;
    import_person(&c, "P-UNDP-1", "undp").await;
    let wfp = token(&c, "fp.wfp", Role::AgencyFocalPoint, None, Some("wfp"));
    let undp = token(&c, "fp.undp", Role::AgencyFocalPoint, None, Some("undp"));
    let journey = |traveller: &str| {
        json!({"id": Uuid::new_v4(), "traveller": traveller, "itinerary": [
            {"country": "SO", "from": "2026-12-01", "to": "2026-12-20"}]})
    };

    // Requesting for another agency's traveller: as if there were no such traveller.
    let answer = call(&c, "POST", "/api/v1/clearances", &wfp, &journey("P-UNDP-1")).await;
    assert_eq!(answer.0, 404, "{}", answer.1);
    let unknown = call(&c, "POST", "/api/v1/clearances", &wfp, &journey("P-NOBODY")).await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    let answer = call(&c, "POST", "/api/v1/clearances", &wfp, &journey("P-WFP-1")).await;
    assert_eq!(answer.0, 201, "{}", answer.1);

    // A UNDP clearance, approved: WFP cannot record an arrival on it, UNDP can.
    let body = journey("P-UNDP-1");
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(&c, "POST", "/api/v1/clearances", &c.duty_token, &body)
            .await
            .0,
        201
    );
    let approve = format!("/api/v1/clearances/{id}/approve");
    assert_eq!(
        call(&c, "POST", &approve, &c.duty_token, &json!({}))
            .await
            .0,
        200
    );
    let arrive = format!("/api/v1/clearances/{id}/arrive");
    let arrival = json!({"country": "SO", "at": rfc3339(OffsetDateTime::now_utc())});
    let answer = call(&c, "POST", &arrive, &wfp, &arrival).await;
    assert_eq!(answer.0, 404, "{}", answer.1);
    let (_, seen) = get(&c, &format!("/api/v1/clearances/{id}"), &c.duty_token).await;
    assert_eq!(seen["movements"], json!([]), "nothing recorded: {seen}");
    let answer = call(&c, "POST", &arrive, &undp, &arrival).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_officer_requests_journeys_through_their_country_only() {
    let c = Center::start().await;
    import_person(&c, "P-0010", "unicef").await;
    let fso = token(&c, "fso.ali", Role::FieldOfficer, Some("SO"), None);
    let journey =
        |legs: Value| json!({"id": Uuid::new_v4(), "traveller": "P-0010", "itinerary": legs});
    let kenya_only = journey(json!([{"country": "KE", "from": "2026-12-01", "to": "2026-12-05"}]));
    let answer = call(&c, "POST", "/api/v1/clearances", &fso, &kenya_only).await;
    assert_eq!(answer.0, 403, "{}", answer.1);
    let path = format!("/api/v1/clearances/{}", kenya_only["id"].as_str().unwrap());
    assert_eq!(
        get(&c, &path, &c.duty_token).await.0,
        404,
        "nothing was stored"
    );
    // Nairobi → Mogadishu: a leg in Somalia, so the Somali officer may ask (and sees it).
    let through = journey(json!([
        {"country": "KE", "from": "2026-12-01", "to": "2026-12-02"},
        {"country": "SO", "from": "2026-12-02", "to": "2026-12-09"}]));
    let answer = call(&c, "POST", "/api/v1/clearances", &fso, &through).await;
    assert_eq!(answer.0, 201, "{}", answer.1);
    let id = through["id"].as_str().unwrap();
    assert_eq!(
        get(&c, &format!("/api/v1/clearances/{id}"), &fso).await.0,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_of_the_wrong_shape_is_refused_at_the_edge_naming_what_to_fix() {
    let c = Center::start().await;
    let now = OffsetDateTime::now_utc();
    // A wrong type deep in a report: 422 `invalid`, the field named by its path.
    let mut body = report("Roadblock", now);
    body["location"] = json!({"lat": "north", "lon": 45.0});
    let answer = call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body).await;
    refused_on("location.lat", &answer);
    assert_eq!(answer.1["error"]["code"], "invalid", "{}", answer.1);
    not_stored(&c, &body["id"]).await;
    // A field the login fills in, and one the reference data fills in, refused by name.
    let mut body = report("Roadblock", now);
    body["reporter"] = json!("someone.else");
    let answer = call(&c, "POST", "/api/v1/incidents", &c.duty_token, &body).await;
    refused_on("reporter", &answer);
    not_stored(&c, &body["id"]).await;
    let surge = Uuid::new_v4();
    let answer = call(
        &c,
        "POST",
        &format!("/api/v1/surges/{surge}/assign"),
        &c.duty_token,
        &json!({"officer": "P-0001", "from_duty_station": "SOM-MGQ"}),
    )
    .await;
    refused_on("from_duty_station", &answer);
    // A broadcast with a field it does not take (the hand-written document had no schema
    // for this body): refused with the field named, and nothing issued.
    let id = Uuid::new_v4();
    let answer = call(
        &c,
        "POST",
        "/api/v1/broadcasts",
        &c.duty_token,
        &json!({"id": id, "title": "Curfew", "body": "From 18:00", "severity": "high",
                "audience": "all_agencies", "weather": "fine"}),
    )
    .await;
    assert_eq!(answer.0, 422, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], "invalid", "{}", answer.1);
    let message = answer.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("weather"), "names the field: {message}");
    let (status, _) = get(&c, &format!("/api/v1/broadcasts/{id}"), &c.duty_token).await;
    assert_eq!(status, 404, "nothing was issued");
    // An approval takes no fields.
    let answer = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{id}/approve"),
        &c.duty_token,
        &json!({"note": "fine by me"}),
    )
    .await;
    assert_eq!(answer.0, 422, "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("note"),
        "{}",
        answer.1
    );
}
