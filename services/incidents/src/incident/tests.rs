//! Given the events of a stream, when a command arrives, then these events (or this
//! refusal).
use super::*;
use events::Meta;
use events::command::{RefusalCode, Role};
use events::domain::incident::{Casualties, EscalationKind};
use runtime::Fold;
use serde_json::json;
use testkit::actor;
use testkit::aggregate::{Given, Stream};

const ID: Uuid = Uuid::from_u128(0x1234);

fn fso() -> Actor {
    actor(Role::FieldOfficer, Some("SO"))
}

fn duty() -> Actor {
    actor(Role::DutyOfficer, None)
}

fn report_body() -> Value {
    json!({"country": "SO", "category": "armed_conflict", "severity": 4,
           "title": "Exchange of fire near the compound",
           "occurred_at": "2026-11-27T03:10:00Z"})
}

/// The incident's stream, decided at the tests' clock [`NOW`].
fn stream() -> Stream<Incident> {
    stream_at(NOW)
}

/// The incident's stream decided at `now`, with the station the command names looked up as
/// the service does.
fn stream_at(now: OffsetDateTime) -> Stream<Incident> {
    Stream::new(ID, move |command| {
        let named = match command {
            IncidentCommand::Report(r) => r.duty_station.clone(),
            IncidentCommand::Update(u) => u.duty_station.clone(),
            _ => None,
        };
        Facts {
            now,
            station: stations()
                .into_iter()
                .find(|s| Some(&s.station) == named.as_ref()),
        }
    })
}

/// Nothing recorded yet.
fn nothing() -> Given<Incident> {
    stream().given(vec![])
}

fn reported() -> DomainEvent {
    match parse("report", &fso(), report_body()).unwrap() {
        IncidentCommand::Report(r) => r.into(),
        other => panic!("{other:?}"),
    }
}

/// The clock of the tests: 5 minutes after the report's `occurred_at`, a minute before
/// the stream's first event is recorded.
const NOW: OffsetDateTime = time::macros::datetime!(2026-11-27 03:15 UTC);

/// The duty stations registered in the tests.
fn stations() -> Vec<DutyStationRegistered> {
    let station = |id: &str, country: &str| DutyStationRegistered {
        station: id.into(),
        country: Country::parse(country).unwrap(),
        area: "A".into(),
        name: id.into(),
        lat: 0.0,
        lon: 0.0,
    };
    vec![station("SOM-MGQ", "SO"), station("KEN-NBO", "KE")]
}

#[test]
fn occurred_at_is_not_in_the_future_nor_older_than_a_month() {
    let at = |t: &str| {
        let mut body = report_body();
        body["occurred_at"] = json!(t);
        body
    };
    // Up to five minutes ahead of the centre's clock: a phone clock running fast.
    assert!(
        nothing()
            .when(&fso(), "report", at("2026-11-27T03:20:00Z"))
            .result()
            .is_ok()
    );
    assert!(
        nothing()
            .when(&fso(), "report", at("2026-10-28T03:15:00Z"))
            .result()
            .is_ok()
    );
    for bad in [
        "2026-11-27T03:20:01Z",
        "2026-11-28T03:00:00Z",
        "2026-10-28T03:14:59Z",
        "2020-01-01T00:00:00Z",
        // The future hidden behind an offset: 06:00+02:00 is 04:00 UTC.
        "2026-11-27T06:00:00+02:00",
    ] {
        let r = nothing()
            .when(&fso(), "report", at(bad))
            .result()
            .expect_err(bad);
        assert_eq!(r.code, RefusalCode::Invalid, "{bad}: {}", r.message);
        assert!(
            r.message.starts_with("occurred_at:"),
            "{bad}: {}",
            r.message
        );
    }
    // A correction is held to the same window, counted from when it was reported.
    let history = stream().given(vec![reported()]);
    let later = NOW + time::Duration::days(20);
    assert!(
        stream_at(later)
            .given(history.events().to_vec())
            .when(
                &fso(),
                "update",
                json!({"occurred_at": "2026-10-29T00:00:00Z"})
            )
            .result()
            .is_ok()
    );
    for bad in ["2026-10-27T00:00:00Z", "2026-12-18T00:00:00Z"] {
        let r = stream_at(later)
            .given(history.events().to_vec())
            .when(&fso(), "update", json!({"occurred_at": bad}))
            .refused(RefusalCode::Invalid);
        assert!(
            r.message.starts_with("occurred_at:"),
            "{bad}: {}",
            r.message
        );
    }
}

#[test]
fn the_duty_station_is_registered_and_in_the_incidents_country() {
    let with = |station: &str| {
        let mut body = report_body();
        body["duty_station"] = json!(station);
        body
    };
    assert!(
        nothing()
            .when(&fso(), "report", with("SOM-MGQ"))
            .result()
            .is_ok()
    );
    for bad in ["SOM-XXX", "KEN-NBO", "two words"] {
        let r = nothing()
            .when(&fso(), "report", with(bad))
            .result()
            .expect_err(bad);
        assert_eq!(r.code, RefusalCode::Invalid, "{bad}: {}", r.message);
        assert!(
            r.message.starts_with("duty_station:"),
            "{bad}: {}",
            r.message
        );
    }
    let r = nothing()
        .when(&fso(), "report", with("KEN-NBO"))
        .result()
        .unwrap_err();
    assert!(r.message.contains("is in KE, not SO"), "{}", r.message);

    // Updates: a station of the incident's country, or of the country it moves to.
    let plain = stream().given(vec![reported()]);
    assert!(
        plain
            .when(&duty(), "update", json!({"duty_station": "SOM-MGQ"}))
            .result()
            .is_ok()
    );
    assert!(
        plain
            .when(&duty(), "update", json!({"duty_station": "KEN-NBO"}))
            .result()
            .is_err()
    );
    assert!(
        plain
            .when(
                &duty(),
                "update",
                json!({"country": "KE", "duty_station": "KEN-NBO"})
            )
            .result()
            .is_ok()
    );
    let stationed = stream().given(vec![
        match parse("report", &fso(), with("SOM-MGQ")).unwrap() {
            IncidentCommand::Report(r) => r.into(),
            other => panic!("{other:?}"),
        },
    ]);
    let r = stationed
        .when(&duty(), "update", json!({"country": "KE"}))
        .result()
        .unwrap_err();
    assert!(r.message.starts_with("duty_station:"), "{}", r.message);
    assert!(
        stationed
            .when(&duty(), "update", json!({"note": "more"}))
            .result()
            .is_ok()
    );
}

fn refused(r: Result<Vec<DomainEvent>, Refusal>) -> RefusalCode {
    r.expect_err("refused").code
}

#[test]
fn a_field_officer_reports_in_their_country_and_the_reporter_is_the_login() {
    let out = nothing().when(&fso(), "report", report_body()).events();
    let [DomainEvent::IncidentReported(r)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(r.reporter, "field_officer.user");
    let state = stream().given(out).state().unwrap();
    assert_eq!(state.status, Status::Reported);
    assert_eq!(state.id, ID);
    assert_eq!(state.reported_position, 10);
}

#[test]
fn a_field_officer_cannot_report_for_another_country() {
    let mut body = report_body();
    body["country"] = json!("KE");
    nothing()
        .when(&fso(), "report", body)
        .refused(RefusalCode::Forbidden);
    let unscoped = actor(Role::FieldOfficer, None);
    nothing()
        .when(&unscoped, "report", report_body())
        .refused(RefusalCode::Forbidden);
    // A duty officer reports anywhere.
    let mut body = report_body();
    body["country"] = json!("KE");
    assert!(nothing().when(&duty(), "report", body).result().is_ok());
}

#[test]
fn roles_without_the_right_are_refused() {
    for role in [Role::WallScreen, Role::AgencyFocalPoint, Role::Admin] {
        let who = actor(role, None);
        nothing()
            .when(&who, "report", report_body())
            .refused(RefusalCode::Forbidden);
    }
    let history = stream().given(vec![reported()]);
    // a field officer does not verify
    history
        .when(&fso(), "verify", json!({}))
        .refused(RefusalCode::Forbidden);
}

#[test]
fn bad_reports_are_refused_with_the_field() {
    for (field, bad) in [
        ("country", json!("XX")),
        ("severity", json!(9)),
        ("title", json!("")),
        ("occurred_at", json!("yesterday")),
        ("category", json!(3)),
    ] {
        let mut body = report_body();
        body[field] = bad;
        let r = nothing().when(&fso(), "report", body).result().unwrap_err();
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
    let mut spoofed = report_body();
    spoofed["reporter"] = json!("someone.else");
    let r = nothing()
        .when(&fso(), "report", spoofed)
        .result()
        .unwrap_err();
    assert!(r.message.starts_with("reporter"), "{}", r.message);
    nothing()
        .when(&fso(), "report", json!([1]))
        .refused(RefusalCode::Invalid);
}

#[test]
fn the_life_of_an_incident() {
    let mut events = vec![reported()];
    let update = json!({"casualties": {"killed": 0, "injured": 2}, "note": "two staff hurt"});
    events.extend(
        stream()
            .given(events.clone())
            .when(&fso(), "update", update)
            .events(),
    );
    events.extend(
        stream()
            .given(events.clone())
            .when(&duty(), "verify", json!({"note": "confirmed by phone"}))
            .result()
            .unwrap(),
    );
    let to = json!({"to": {"kind": "hostage_case", "id": Uuid::from_u128(9)}, "reason": "two staff taken"});
    events.extend(
        stream()
            .given(events.clone())
            .when(&duty(), "escalate", to.clone())
            .events(),
    );
    // once per target
    stream()
        .given(events.clone())
        .when(&duty(), "escalate", to)
        .refused(RefusalCode::Conflict);
    // already verified
    stream()
        .given(events.clone())
        .when(&duty(), "verify", json!({}))
        .refused(RefusalCode::Conflict);
    events.extend(
        stream()
            .given(events.clone())
            .when(&duty(), "close", json!({"reason": "staff released"}))
            .result()
            .unwrap(),
    );
    let state = stream().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Closed);
    assert_eq!(state.verified_by.as_deref(), Some("duty_officer.user"));
    assert_eq!(
        state.casualties,
        Some(Casualties {
            killed: 0,
            injured: 2
        })
    );
    assert_eq!(state.escalations[0].kind, EscalationKind::HostageCase);
    assert_eq!(state.version, 5);
    let closed = stream().given(events);
    for (name, body) in [
        ("update", json!({"note": "more"})),
        ("verify", json!({})),
        ("close", json!({"reason": "again"})),
    ] {
        // {name} after close
        closed
            .when(&duty(), name, body)
            .refused(RefusalCode::Conflict);
    }
}

#[test]
fn another_countrys_incident_is_not_found_for_a_field_officer() {
    let history = stream().given(vec![reported()]);
    let kenya = actor(Role::FieldOfficer, Some("KE"));
    history
        .when(&kenya, "update", json!({"note": "x"}))
        .refused(RefusalCode::NotFound);
    let state = history.state().unwrap();
    assert!(!visible(&kenya, &state));
    assert!(visible(&fso(), &state));
    assert!(!visible(&actor(Role::WallScreen, None), &state));
    // Nor may one move an incident out of their scope.
    history
        .when(&fso(), "update", json!({"country": "KE"}))
        .refused(RefusalCode::Forbidden);
    // Changes to an incident that does not exist.
    nothing()
        .when(&duty(), "close", json!({"reason": "r"}))
        .refused(RefusalCode::NotFound);
    nothing()
        .when(&duty(), "update", json!({}))
        .refused(RefusalCode::NotFound);
    // an empty update
    history
        .when(&duty(), "update", json!({}))
        .refused(RefusalCode::Invalid);
}

#[test]
fn the_register_lists_within_scope_with_filters() {
    let mut register = Register::default();
    let mut position = 0;
    for (i, (country, severity)) in [("SO", 2), ("SO", 5), ("KE", 4)].into_iter().enumerate() {
        position += 1;
        let mut body = report_body();
        body["country"] = json!(country);
        body["severity"] = json!(severity);
        let IncidentCommand::Report(r) = parse("report", &duty(), body).unwrap() else {
            unreachable!()
        };
        let e =
            DomainEvent::from(r).to_new_event(Uuid::from_u128(100 + i as u128), Meta::default());
        register.apply(&RecordedEvent::record(
            e,
            events::domain::incident::stream_for(Uuid::from_u128(i as u128)),
            position,
            1,
            time::OffsetDateTime::UNIX_EPOCH,
        ));
    }
    let all = register.list(&duty(), &ListQuery::default()).unwrap().items;
    assert_eq!(all.len(), 3);
    assert!(
        all[0].reported_position > all[1].reported_position,
        "newest first"
    );
    assert_eq!(
        register
            .list(&fso(), &ListQuery::default())
            .unwrap()
            .items
            .len(),
        2
    );
    let q = ListQuery {
        severity: Some(Severity::new(4).unwrap()),
        ..Default::default()
    };
    assert_eq!(register.list(&duty(), &q).unwrap().items.len(), 2);
    let q = ListQuery {
        country: Some(Country::parse("KE").unwrap()),
        ..Default::default()
    };
    assert_eq!(
        refused(register.list(&fso(), &q).map(|_| vec![])),
        RefusalCode::Forbidden
    );
    let q = ListQuery {
        status: Some("open".into()),
        limit: Some(1),
        ..Default::default()
    };
    assert_eq!(register.list(&duty(), &q).unwrap().items.len(), 1);
    let q = ListQuery {
        status: Some("lost".into()),
        ..Default::default()
    };
    assert_eq!(
        refused(register.list(&duty(), &q).map(|_| vec![])),
        RefusalCode::Invalid
    );
    assert_eq!(
        refused(
            register
                .list(&actor(Role::WallScreen, None), &ListQuery::default())
                .map(|_| vec![])
        ),
        RefusalCode::Forbidden
    );
}
