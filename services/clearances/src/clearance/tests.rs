//! Given the events of a stream, when a command arrives, then these events (or this
//! refusal).
use super::*;
use events::Meta;
use events::command::{RefusalCode, Role};
use serde_json::json;
use testkit::aggregate::{Given, Stream};
use time::macros::{date, datetime};

const ID: Uuid = Uuid::from_u128(0xc1ea);

/// The tests' actor of `role`; a focal point speaks for `unicef`, the agency of the
/// travellers of these tests.
fn actor(role: Role, scope: Option<&str>) -> Actor {
    Actor {
        agency: (role == Role::AgencyFocalPoint).then(|| "unicef".to_owned()),
        ..testkit::actor(role, scope)
    }
}

fn focal(agency: &str) -> Actor {
    Actor {
        agency: Some(agency.to_owned()),
        ..actor(Role::AgencyFocalPoint, None)
    }
}

/// Traveller `person` as registered, working for `agency`.
fn person(person: &str, agency: &str) -> PersonRegistered {
    PersonRegistered {
        person: person.into(),
        name: "Amina Hassan".into(),
        agency: agency.into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: "KEN-NBO".into(),
        dependants: 0,
        security_officer: false,
        essential: false,
    }
}

fn fso() -> Actor {
    actor(Role::FieldOfficer, Some("SO"))
}

fn duty() -> Actor {
    actor(Role::DutyOfficer, None)
}

fn so() -> Country {
    Country::parse("SO").unwrap()
}

fn ke() -> Country {
    Country::parse("KE").unwrap()
}

/// A journey Nairobi → Mogadishu (Banaadir) → Nairobi.
fn request_body() -> Value {
    json!({"traveller": "P-0010", "purpose": "assessment mission", "itinerary": [
        {"country": "KE", "from": "2026-11-20", "to": "2026-11-21"},
        {"country": "SO", "area": "SOM-BAN", "from": "2026-11-21", "to": "2026-11-30"},
        {"country": "KE", "from": "2026-11-30", "to": "2026-12-01"}
    ]})
}

fn so_only_body() -> Value {
    json!({"traveller": "P-0010", "itinerary": [
        {"country": "SO", "from": "2026-11-21", "to": "2026-11-30"}
    ]})
}

/// The clearance's stream, requested by `requester`; its traveller (P-0010, or the one a
/// request names) is registered with `unicef`.
fn clearance() -> Stream<ClearanceState> {
    Stream::new(ID, |command| {
        let traveller = match command {
            ClearanceCommand::Request(r) => r.traveller.as_str(),
            _ => "P-0010",
        };
        Facts {
            traveller: Some(person(traveller, "unicef")),
        }
    })
    .recorded(datetime!(2026-11-19 08:01 UTC), time::Duration::minutes(1))
    .by("requester")
}

/// Nothing recorded yet.
fn nothing() -> Given<ClearanceState> {
    clearance().given(vec![])
}

fn requested(body: Value) -> DomainEvent {
    parse_request(body).unwrap().into()
}

fn approved() -> DomainEvent {
    ClearanceApproved {
        by: "duty.one".into(),
    }
    .into()
}

fn arrival(country: &str, at: OffsetDateTime) -> DomainEvent {
    ArrivalRecorded {
        country: Country::parse(country).unwrap(),
        at,
    }
    .into()
}

fn departure(country: &str, at: OffsetDateTime) -> DomainEvent {
    DepartureRecorded {
        country: Country::parse(country).unwrap(),
        at,
    }
    .into()
}

fn at(day: u8, hour: u8) -> OffsetDateTime {
    datetime!(2026-11-01 00:00 UTC)
        + time::Duration::days(i64::from(day) - 1)
        + time::Duration::hours(i64::from(hour))
}

#[test]
fn a_focal_point_acts_for_its_own_agencys_travellers_only() {
    let wfp = person("P-0010", "wfp");
    let undp = person("P-0010", "undp");
    let request = || parse_request(request_body()).unwrap();
    fn as_of(t: &PersonRegistered) -> Facts {
        Facts {
            traveller: Some(t.clone()),
        }
    }
    assert!(decide_request(ID, None, &focal("wfp"), request(), &as_of(&wfp)).is_ok());
    // Another agency's traveller is answered like an unknown one.
    let r = decide_request(ID, None, &focal("wfp"), request(), &as_of(&undp)).unwrap_err();
    assert_eq!(r.code, RefusalCode::NotFound);
    let unknown =
        decide_request(ID, None, &focal("wfp"), request(), &Facts::default()).unwrap_err();
    assert_eq!(unknown.code, RefusalCode::NotFound);
    // A focal point without an agency speaks for nobody.
    let nobody = Actor {
        agency: None,
        ..focal("wfp")
    };
    assert_eq!(
        decide_request(ID, None, &nobody, request(), &as_of(&wfp)).map_err(|r| r.code),
        Err(RefusalCode::NotFound)
    );
    // A registration of someone else than the traveller is no proof.
    let other = person("P-0099", "wfp");
    assert_eq!(
        decide_request(ID, None, &focal("wfp"), request(), &as_of(&other)).map_err(|r| r.code),
        Err(RefusalCode::NotFound)
    );

    // Movements on another agency's clearance: not found, as if it did not exist.
    let history = clearance().given(vec![requested(request_body()), approved()]);
    let state = history.state().unwrap();
    let arrive = || {
        parse(
            "arrive",
            &focal("wfp"),
            json!({"country": "KE", "at": "2026-11-20T08:00:00Z"}),
        )
        .unwrap()
    };
    assert!(
        ClearanceState::decide(ID, Some(&state), &focal("wfp"), arrive(), &as_of(&wfp)).is_ok()
    );
    for facts in [as_of(&undp), Facts::default(), as_of(&other)] {
        assert_eq!(
            ClearanceState::decide(ID, Some(&state), &focal("wfp"), arrive(), &facts)
                .map_err(|r| r.code),
            Err(RefusalCode::NotFound),
            "{facts:?}"
        );
    }
    // The duty officer's scope does not depend on the traveller.
    assert!(ClearanceState::decide(ID, Some(&state), &duty(), arrive(), &Facts::default()).is_ok());
}

#[test]
fn a_field_officer_requests_journeys_with_a_leg_in_their_country() {
    // Nairobi → Mogadishu → Nairobi: one leg in Somalia is enough.
    assert!(
        nothing()
            .when(&fso(), "request", request_body())
            .result()
            .is_ok()
    );
    let kenya_only = json!({"traveller": "P-0010", "itinerary": [
        {"country": "KE", "from": "2026-11-20", "to": "2026-11-21"}
    ]});
    let r = nothing()
        .when(&fso(), "request", kenya_only.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Forbidden);
    assert!(r.message.contains("SO"), "{}", r.message);
    // The role decides, not the register: the same answer for an unknown traveller.
    nothing()
        .with_facts(|_| Facts::default())
        .when(&fso(), "request", kenya_only.clone())
        .refused(RefusalCode::Forbidden);
    assert!(
        nothing()
            .when(&duty(), "request", kenya_only)
            .result()
            .is_ok()
    );
}

#[test]
fn the_life_of_a_clearance() {
    let mut events = nothing().when(&duty(), "request", request_body()).events();
    let state = clearance().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Requested);
    assert_eq!(state.id, ID);
    assert_eq!(state.traveller, "P-0010");
    assert_eq!(state.requested_by.as_deref(), Some("requester"));
    assert_eq!(state.countries(), vec![ke(), so()]);

    events.extend(
        clearance()
            .given(events.clone())
            .when(&duty(), "approve", json!({}))
            .events(),
    );
    let moves = [
        ("arrive", "KE", at(20, 6)),
        ("depart", "KE", at(21, 7)),
        ("arrive", "SO", at(21, 9)),
        ("depart", "SO", at(30, 10)),
        // Back through Nairobi: a second arrival after the departure is fine.
        ("arrive", "KE", at(30, 12)),
        ("depart", "KE", at(30, 12)),
    ];
    for (name, country, t) in moves {
        let change = json!({"country": country, "at": rfc3339(t)});
        events.extend(
            clearance()
                .given(events.clone())
                .when(&duty(), name, change)
                .result()
                .unwrap_or_else(|e| panic!("{name} {country}: {e}")),
        );
    }
    let state = clearance().given(events).state().unwrap();
    assert_eq!(state.status, Status::Approved);
    assert_eq!(state.decided_by.as_deref(), Some("duty_officer.user"));
    assert_eq!(state.movements.len(), 6);
    assert_eq!(state.movements[2].kind, MovementKind::Arrival);
    assert_eq!(state.version, 8);
}

#[test]
fn a_refused_clearance_keeps_its_reason_and_takes_nothing_more() {
    let history = clearance().given(vec![requested(so_only_body())]);
    let out = history
        .when(&fso(), "refuse", json!({"reason": "level 6 in the area"}))
        .result()
        .unwrap();
    let [DomainEvent::ClearanceRefused(r)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(r.by, "field_officer.user", "the decider is the login");
    let mut events = vec![requested(so_only_body())];
    events.extend(out);
    let refused_history = clearance().given(events);
    let state = refused_history.state().unwrap();
    assert_eq!(state.status, Status::Refused);
    assert_eq!(state.refusal_reason.as_deref(), Some("level 6 in the area"));
    let r = refused_history
        .when(&duty(), "approve", json!({}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("already refused by"), "{}", r.message);
    refused_history
        .when(&duty(), "refuse", json!({"reason": "again"}))
        .refused(RefusalCode::Conflict);
    let arrive = json!({"country": "SO", "at": "2026-11-22T08:00:00Z"});
    refused_history
        .when(&duty(), "arrive", arrive)
        .refused(RefusalCode::Conflict);
}

#[test]
fn a_decision_is_taken_once() {
    let history = clearance().given(vec![requested(request_body()), approved()]);
    let r = history
        .when(&duty(), "approve", json!({}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(
        r.message.contains("already approved by duty.one"),
        "{}",
        r.message
    );
    history
        .when(&duty(), "refuse", json!({"reason": "late"}))
        .refused(RefusalCode::Conflict);
}

#[test]
fn requests_need_a_registered_traveller_and_a_good_itinerary() {
    let r = nothing()
        .with_facts(|_| Facts::default())
        .when(&duty(), "request", request_body())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::NotFound);
    assert!(r.message.contains("vigil import"), "{}", r.message);
    assert!(r.message.contains("P-0010"), "{}", r.message);

    for (body, field) in [
        (json!({"traveller": "P-1", "itinerary": []}), "itinerary"),
        (
            json!({"traveller": "P-1", "itinerary": [{"country": "SO", "from": "2026-11-30", "to": "2026-11-21"}]}),
            "itinerary[0].to",
        ),
        (
            json!({"traveller": "P-1", "itinerary": [{"country": "XX", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "itinerary[0].country",
        ),
        (
            json!({"traveller": "P-1", "itinerary": [{"country": "SO", "from": "2026-02-30", "to": "2026-03-01"}]}),
            "itinerary[0].from",
        ),
        (
            json!({"traveller": "P-1", "itinerary": [{"country": "SO", "area": "two words", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "itinerary[0].area",
        ),
        (
            json!({"traveller": "has space", "itinerary": [{"country": "SO", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "traveller",
        ),
        (
            json!({"traveller": "P-1", "purpose": " ", "itinerary": [{"country": "SO", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "purpose",
        ),
        (
            json!({"itinerary": [{"country": "SO", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "traveller",
        ),
        (
            json!({"traveller": "P-1", "by": "x", "itinerary": [{"country": "SO", "from": "2026-11-21", "to": "2026-11-21"}]}),
            "by",
        ),
    ] {
        let r = nothing()
            .when(&duty(), "request", body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{field}: {}", r.message);
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
    let legs: Vec<Value> = (0..21)
        .map(|_| json!({"country": "SO", "from": "2026-11-21", "to": "2026-11-21"}))
        .collect();
    // at most 20 legs
    nothing()
        .when(
            &duty(),
            "request",
            json!({"traveller": "P-1", "itinerary": legs}),
        )
        .refused(RefusalCode::Invalid);
    nothing()
        .when(&duty(), "request", json!([1]))
        .refused(RefusalCode::Invalid);
    // A stream that already holds a request (written with another id).
    let history = clearance().given(vec![requested(request_body())]);
    history
        .when(&duty(), "request", request_body())
        .refused(RefusalCode::Conflict);
}

#[test]
fn who_may_request() {
    for role in [
        Role::FieldOfficer,
        Role::DutyOfficer,
        Role::AgencyFocalPoint,
    ] {
        let who = actor(role, (role == Role::FieldOfficer).then_some("SO"));
        assert!(
            nothing()
                .when(&who, "request", request_body())
                .result()
                .is_ok(),
            "{role:?}"
        );
    }
    for role in [Role::CrisisManager, Role::WallScreen, Role::Admin] {
        // {role:?}
        nothing()
            .when(&actor(role, None), "request", request_body())
            .refused(RefusalCode::Forbidden);
    }
    // The role is checked before the register is consulted: no probing for names.
    nothing()
        .with_facts(|_| Facts::default())
        .when(&actor(Role::WallScreen, None), "request", request_body())
        .refused(RefusalCode::Forbidden);
}

#[test]
fn who_may_decide() {
    let history = clearance().given(vec![requested(so_only_body())]);
    for role in [
        Role::CrisisManager,
        Role::AgencyFocalPoint,
        Role::WallScreen,
        Role::Admin,
    ] {
        // {role:?}
        history
            .when(&actor(role, None), "approve", json!({}))
            .refused(RefusalCode::Forbidden);
        // {role:?}
        history
            .when(&actor(role, None), "refuse", json!({"reason": "r"}))
            .refused(RefusalCode::Forbidden);
    }
    // A field officer of the only country decides.
    assert!(history.when(&fso(), "approve", json!({})).result().is_ok());
    // A journey through KE and SO: the SO officer sees it but may not decide it.
    let crossing = clearance().given(vec![requested(request_body())]);
    let r = crossing
        .when(&fso(), "approve", json!({}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Forbidden);
    assert!(
        r.message.contains("KE") && r.message.contains("duty officer"),
        "{}",
        r.message
    );
    crossing
        .when(&fso(), "refuse", json!({"reason": "no"}))
        .refused(RefusalCode::Forbidden);
    // An officer of a country off the itinerary does not learn that it exists.
    let ethiopia = actor(Role::FieldOfficer, Some("ET"));
    crossing
        .when(&ethiopia, "approve", json!({}))
        .refused(RefusalCode::NotFound);
    // a field officer without a country sees nothing
    history
        .when(&actor(Role::FieldOfficer, None), "approve", json!({}))
        .refused(RefusalCode::NotFound);
    assert!(
        crossing
            .when(&duty(), "approve", json!({}))
            .result()
            .is_ok()
    );
}

#[test]
fn decision_fields_are_checked() {
    let history = clearance().given(vec![requested(so_only_body())]);
    let r = history
        .when(&duty(), "approve", json!({"by": "someone.else"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.starts_with("by"), "{}", r.message);
    let r = history
        .when(
            &duty(),
            "refuse",
            json!({"reason": "x", "by": "someone.else"}),
        )
        .result()
        .expect_err("refused");
    assert!(r.message.starts_with("by"), "{}", r.message);
    for (change, field) in [
        (json!({}), "reason"),
        (json!({"reason": "  "}), "reason"),
        (json!({"reason": "x".repeat(2001)}), "reason"),
        (json!({"reason": "x", "note": "y"}), "note"),
    ] {
        let r = history
            .when(&duty(), "refuse", change)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{field}: {}", r.message);
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
    let r = history
        .when(&duty(), "approve", json!({"note": "ok"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    history
        .when(&duty(), "approve", json!("yes"))
        .refused(RefusalCode::Invalid);
    history
        .when(&duty(), "cancel", json!({}))
        .refused(RefusalCode::Invalid);
    // Nothing to decide on.
    nothing()
        .when(&duty(), "approve", json!({}))
        .refused(RefusalCode::NotFound);
    nothing()
        .when(&duty(), "refuse", json!({"reason": "r"}))
        .refused(RefusalCode::NotFound);
}

#[test]
fn movements_need_an_approved_clearance() {
    let history = clearance().given(vec![requested(request_body())]);
    let arrive = json!({"country": "SO", "at": "2026-11-22T08:00:00Z"});
    let r = history
        .when(&duty(), "arrive", arrive.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("not approved"), "{}", r.message);
    history
        .when(&duty(), "depart", arrive.clone())
        .refused(RefusalCode::Conflict);
    nothing()
        .when(&duty(), "arrive", arrive.clone())
        .refused(RefusalCode::NotFound);
    nothing()
        .when(&duty(), "depart", arrive)
        .refused(RefusalCode::NotFound);
}

#[test]
fn movements_follow_the_itinerary_and_each_other() {
    let history = clearance().given(vec![requested(request_body()), approved()]);
    let change = |country: &str, t: &str| json!({"country": country, "at": t});
    // A country off the itinerary.
    let r = history
        .when(&duty(), "arrive", change("ET", "2026-11-22T08:00:00Z"))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(
        r.message.starts_with("country") && r.message.contains("KE, SO"),
        "{}",
        r.message
    );
    history
        .when(&duty(), "depart", change("ET", "2026-11-22T08:00:00Z"))
        .refused(RefusalCode::Invalid);
    // Departing without arriving.
    let r = history
        .when(&duty(), "depart", change("SO", "2026-11-22T08:00:00Z"))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("arrival first"), "{}", r.message);

    let arrived = clearance().given(vec![
        requested(request_body()),
        approved(),
        arrival("SO", at(22, 8)),
    ]);
    // Arriving twice.
    let r = arrived
        .when(&duty(), "arrive", change("SO", "2026-11-23T08:00:00Z"))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("departure first"), "{}", r.message);
    // Arriving in another country of the itinerary is independent.
    assert!(
        arrived
            .when(&duty(), "arrive", change("KE", "2026-11-20T08:00:00Z"))
            .result()
            .is_ok()
    );
    // Departing before the arrival.
    let r = arrived
        .when(&duty(), "depart", change("SO", "2026-11-22T07:59:00Z"))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.starts_with("at:"), "{}", r.message);
    // Departing at the minute of arrival is fine (a transit).
    assert!(
        arrived
            .when(&duty(), "depart", change("SO", "2026-11-22T08:00:00Z"))
            .result()
            .is_ok()
    );
    // The arrival's time in another offset compares as an instant.
    arrived
        .when(&duty(), "depart", change("SO", "2026-11-22T10:30:00+03:00"))
        .refused(RefusalCode::Invalid);
    assert!(
        arrived
            .when(&duty(), "depart", change("SO", "2026-11-22T11:30:00+03:00"))
            .result()
            .is_ok()
    );

    let departed = clearance().given(vec![
        requested(request_body()),
        approved(),
        arrival("SO", at(22, 8)),
        departure("SO", at(25, 8)),
    ]);
    // Departing twice.
    departed
        .when(&duty(), "depart", change("SO", "2026-11-26T08:00:00Z"))
        .refused(RefusalCode::Conflict);
    // Coming back before having left.
    let r = departed
        .when(&duty(), "arrive", change("SO", "2026-11-24T08:00:00Z"))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.contains("before the departure"), "{}", r.message);
    assert!(
        departed
            .when(&duty(), "arrive", change("SO", "2026-11-27T08:00:00Z"))
            .result()
            .is_ok()
    );
}

#[test]
fn movement_fields_are_checked() {
    let history = clearance().given(vec![requested(request_body()), approved()]);
    for (change, field) in [
        (json!({"country": "SO"}), "at"),
        (json!({"at": "2026-11-22T08:00:00Z"}), "country"),
        (json!({"country": "SO", "at": "yesterday"}), "at"),
        (
            json!({"country": "so", "at": "2026-11-22T08:00:00Z"}),
            "country",
        ),
        (json!({"country": "SO", "at": "1800-11-22T08:00:00Z"}), "at"),
        (
            json!({"country": "SO", "at": "2026-11-22T08:00:00Z", "by": "x"}),
            "by",
        ),
    ] {
        for name in ["arrive", "depart"] {
            let r = history
                .when(&duty(), name, change.clone())
                .result()
                .expect_err("refused");
            assert_eq!(
                r.code,
                RefusalCode::Invalid,
                "{name} {field}: {}",
                r.message
            );
            assert!(r.message.contains(field), "{name} {field}: {}", r.message);
        }
    }
}

#[test]
fn who_may_record_movements() {
    let history = clearance().given(vec![requested(request_body()), approved()]);
    let so_arrival = json!({"country": "SO", "at": "2026-11-22T08:00:00Z"});
    let ke_arrival = json!({"country": "KE", "at": "2026-11-20T08:00:00Z"});
    for role in [Role::DutyOfficer, Role::AgencyFocalPoint] {
        assert!(
            history
                .when(&actor(role, None), "arrive", ke_arrival.clone())
                .result()
                .is_ok(),
            "{role:?}"
        );
    }
    for role in [Role::CrisisManager, Role::WallScreen, Role::Admin] {
        // {role:?}
        history
            .when(&actor(role, None), "arrive", so_arrival.clone())
            .refused(RefusalCode::Forbidden);
        // {role:?}
        history
            .when(&actor(role, None), "depart", so_arrival.clone())
            .refused(RefusalCode::Forbidden);
    }
    // The SO officer records in SO, not in KE, though KE is on the same journey.
    assert!(
        history
            .when(&fso(), "arrive", so_arrival.clone())
            .result()
            .is_ok()
    );
    let r = history
        .when(&fso(), "arrive", ke_arrival.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Forbidden);
    assert!(r.message.contains("KE"), "{}", r.message);
    let arrived_ke = clearance().given(vec![
        requested(request_body()),
        approved(),
        arrival("KE", at(20, 8)),
    ]);
    arrived_ke
        .when(
            &fso(),
            "depart",
            json!({"country": "KE", "at": "2026-11-21T08:00:00Z"}),
        )
        .refused(RefusalCode::Forbidden);
    // An officer of a country off the itinerary: not found, whatever the country asked.
    let ethiopia = actor(Role::FieldOfficer, Some("ET"));
    history
        .when(
            &ethiopia,
            "arrive",
            json!({"country": "ET", "at": "2026-11-22T08:00:00Z"}),
        )
        .refused(RefusalCode::NotFound);
    history
        .when(&ethiopia, "depart", so_arrival)
        .refused(RefusalCode::NotFound);
}

#[test]
fn visibility_follows_the_legs() {
    let state = clearance()
        .given(vec![requested(request_body())])
        .state()
        .unwrap();
    assert!(visible(&fso(), &state));
    assert!(visible(&actor(Role::FieldOfficer, Some("KE")), &state));
    assert!(!visible(&actor(Role::FieldOfficer, Some("ET")), &state));
    assert!(!visible(&actor(Role::FieldOfficer, None), &state));
    for role in [Role::DutyOfficer, Role::CrisisManager, Role::Admin] {
        assert!(visible(&actor(role, None), &state), "{role:?}");
    }
    for role in [Role::WallScreen, Role::AgencyFocalPoint] {
        assert!(!visible(&actor(role, None), &state), "{role:?}");
    }
}

#[test]
fn unknown_events_move_the_version_only() {
    let mut history = clearance()
        .given(vec![requested(so_only_body()), approved()])
        .history();
    let mut odd = history[1].clone();
    odd.event_type = "ClearanceExtended".into();
    odd.version = 3;
    odd.position = 30;
    history.push(odd);
    let state = ClearanceState::fold(&history).unwrap();
    assert_eq!(state.version, 3);
    assert_eq!(state.status, Status::Approved);
    // Events before a request, and a second request, change nothing.
    let stray = clearance().given(vec![approved(), requested(so_only_body())]);
    let state = stray.state().unwrap();
    assert_eq!(
        state.status,
        Status::Requested,
        "the stray approval came first"
    );
    // An approval written by hand after a refusal does not undo it.
    let hand = clearance().given(vec![
        requested(so_only_body()),
        ClearanceRefused {
            by: "a".into(),
            reason: "b".into(),
        }
        .into(),
        approved(),
    ]);
    assert_eq!(hand.state().unwrap().status, Status::Refused);
}

/// Builds a register from clearances, each given as the events of its stream.
fn register_of(clearances: Vec<Vec<DomainEvent>>) -> Register {
    let mut register = Register::default();
    let mut position = 0;
    for (i, events) in clearances.into_iter().enumerate() {
        let stream = events::domain::clearance::stream_for(Uuid::from_u128(i as u128 + 1));
        for (v, e) in events.into_iter().enumerate() {
            position += 1;
            register.apply(&RecordedEvent::record(
                e.to_new_event(Uuid::from_u128(1000 + position as u128), Meta::default()),
                stream.clone(),
                position,
                v as u64 + 1,
                OffsetDateTime::UNIX_EPOCH,
            ));
        }
    }
    register
}

fn body(traveller: &str, country: &str, area: Option<&str>) -> Value {
    let mut leg = json!({"country": country, "from": "2026-11-21", "to": "2026-11-30"});
    if let Some(a) = area {
        leg["area"] = json!(a);
    }
    json!({"traveller": traveller, "itinerary": [leg]})
}

#[test]
fn the_register_lists_within_scope_with_filters() {
    let register = register_of(vec![
        vec![requested(body("P-1", "SO", Some("SOM-BAN"))), approved()],
        vec![requested(body("P-2", "SO", None))],
        vec![requested(body("P-3", "KE", None)), approved()],
        vec![
            requested(body("P-1", "SO", Some("SOM-BAY"))),
            ClearanceRefused {
                by: "d".into(),
                reason: "no".into(),
            }
            .into(),
        ],
    ]);
    let all = register.list(&duty(), &ListQuery::default()).unwrap().items;
    assert_eq!(all.len(), 4);
    assert!(
        all.windows(2)
            .all(|w| w[0].requested_position > w[1].requested_position),
        "newest first"
    );
    assert_eq!(
        register
            .list(&fso(), &ListQuery::default())
            .unwrap()
            .items
            .len(),
        3
    );
    let q = |f: Value| -> ListQuery { serde_json::from_value(f).unwrap() };
    let count = |who: &Actor, f: Value| register.list(who, &q(f)).map(|l| l.items.len());
    assert_eq!(count(&duty(), json!({"status": "approved"})), Ok(2));
    assert_eq!(count(&duty(), json!({"status": "refused"})), Ok(1));
    assert_eq!(count(&duty(), json!({"country": "KE"})), Ok(1));
    assert_eq!(count(&duty(), json!({"traveller": "P-1"})), Ok(2));
    assert_eq!(count(&duty(), json!({"limit": 1})), Ok(1));
    // Who is in Banaadir on the 25th: approved, a leg there (or the whole country).
    assert_eq!(
        count(
            &duty(),
            json!({"country": "SO", "area": "SOM-BAN", "on": "2026-11-25"})
        ),
        Ok(1)
    );
    assert_eq!(
        count(&duty(), json!({"country": "SO", "on": "2026-12-25"})),
        Ok(0)
    );
    assert_eq!(count(&fso(), json!({"country": "SO"})), Ok(3));
    for bad in [
        json!({"status": "lost"}),
        json!({"limit": 0}),
        json!({"limit": 501}),
        json!({"on": "2026-11-25"}),
        json!({"area": "SOM-BAN", "country": "SO"}),
        json!({"traveller": "two words"}),
    ] {
        assert_eq!(
            count(&duty(), bad.clone()).map_err(|r| r.code),
            Err(RefusalCode::Invalid),
            "{bad}"
        );
    }
    assert!(serde_json::from_value::<ListQuery>(json!({"colour": "red"})).is_err());
    assert!(serde_json::from_value::<ListQuery>(json!({"on": "25/11/2026"})).is_err());
    assert_eq!(
        count(&fso(), json!({"country": "KE"})).map_err(|r| r.code),
        Err(RefusalCode::Forbidden)
    );
    for role in [Role::WallScreen, Role::AgencyFocalPoint] {
        assert_eq!(
            count(&actor(role, None), json!({})).map_err(|r| r.code),
            Err(RefusalCode::Forbidden)
        );
    }
    assert_eq!(register.position(), 7);
    assert_eq!(
        register
            .get(Uuid::from_u128(3))
            .map(|c| c.traveller.as_str()),
        Some("P-3")
    );
}

#[test]
fn travellers_in_counts_each_present_traveller_once() {
    let register = register_of(vec![
        vec![requested(body("P-1", "SO", Some("SOM-BAN"))), approved()],
        // The same traveller on a second clearance covering the same days.
        vec![requested(body("P-1", "SO", None)), approved()],
        vec![requested(body("P-2", "SO", None)), approved()],
        vec![requested(body("P-3", "SO", Some("SOM-BAY"))), approved()],
        // Not approved: not counted.
        vec![requested(body("P-4", "SO", None))],
        // Left on the 24th.
        vec![
            requested(body("P-5", "SO", None)),
            approved(),
            arrival("SO", at(21, 9)),
            departure("SO", at(24, 9)),
        ],
    ]);
    let on = date!(2026 - 11 - 25);
    assert_eq!(
        register.travellers_in(so(), Some("SOM-BAN"), on),
        ["P-1", "P-2"]
    );
    assert_eq!(
        register.travellers_in(so(), None, on),
        ["P-1", "P-2", "P-3"]
    );
    assert_eq!(
        register.travellers_in(so(), None, date!(2026 - 11 - 23)),
        ["P-1", "P-2", "P-3", "P-5"]
    );
    assert!(register.travellers_in(ke(), None, on).is_empty());
    assert!(
        register
            .travellers_in(so(), None, date!(2026 - 12 - 01))
            .is_empty()
    );
}

#[test]
fn the_register_ignores_replays_and_other_categories() {
    let mut register = register_of(vec![vec![requested(body("P-1", "SO", None))]]);
    let again = RecordedEvent::record(
        approved().to_new_event(Uuid::from_u128(77), Meta::default()),
        events::domain::clearance::stream_for(Uuid::from_u128(1)),
        1,
        2,
        OffsetDateTime::UNIX_EPOCH,
    );
    register.apply(&again);
    assert_eq!(
        register.get(Uuid::from_u128(1)).unwrap().status,
        Status::Requested,
        "an event at or below the position is a duplicate"
    );
    let elsewhere = RecordedEvent::record(
        approved().to_new_event(Uuid::from_u128(78), Meta::default()),
        events::domain::incident::stream_for(Uuid::from_u128(1)),
        2,
        1,
        OffsetDateTime::UNIX_EPOCH,
    );
    register.apply(&elsewhere);
    assert_eq!(register.position(), 2);
    assert_eq!(
        register.get(Uuid::from_u128(1)).unwrap().status,
        Status::Requested
    );
}

proptest::proptest! {
    /// The traveller index agrees with a scan: over random interleavings of requests (a
    /// second request on a stream included), decisions and movements on several streams,
    /// every traveller's list equals the full list filtered by traveller, and the index
    /// holds exactly the clearances whose traveller it names.
    #[test]
    fn the_traveller_index_agrees_with_a_scan(
        history in proptest::collection::vec((0u128..8, 0u8..4, 0usize..4), 0..60),
    ) {
        let travellers = ["P-1", "P-2", "P-3", "P-4"];
        let mut register = Register::default();
        let mut versions: HashMap<u128, u64> = HashMap::new();
        for (n, (stream, kind, who)) in history.into_iter().enumerate() {
            let event = match kind {
                0 => requested(body(travellers[who], if who % 2 == 0 { "SO" } else { "KE" }, None)),
                1 => approved(),
                2 => ClearanceRefused { by: "d".into(), reason: "no".into() }.into(),
                _ => arrival("SO", at(21, 9)),
            };
            let version = versions.entry(stream).or_default();
            *version += 1;
            register.apply(&RecordedEvent::record(
                event.to_new_event(Uuid::from_u128(1000 + n as u128), Meta::default()),
                events::domain::clearance::stream_for(Uuid::from_u128(stream + 1)),
                n as u64 + 1,
                *version,
                OffsetDateTime::UNIX_EPOCH,
            ));
        }
        let everything = ListQuery { limit: Some(MAX_LIST), ..ListQuery::default() };
        let all = register.list(&duty(), &everything).unwrap().items;
        for t in travellers.iter().chain(&["P-9"]) {
            let scanned: Vec<Uuid> = all.iter().filter(|c| c.traveller == *t).map(|c| c.id).collect();
            let indexed: Vec<Uuid> = register
                .list(&duty(), &ListQuery { traveller: Some((*t).to_owned()), ..everything.clone() })
                .unwrap()
                .items
                .iter()
                .map(|c| c.id)
                .collect();
            proptest::prop_assert_eq!(&indexed, &scanned, "traveller {}", t);
            let held: BTreeSet<Uuid> = register.by_traveller.get(*t).cloned().unwrap_or_default();
            proptest::prop_assert_eq!(held, scanned.into_iter().collect::<BTreeSet<Uuid>>());
            let approved_only = ListQuery {
                traveller: Some((*t).to_owned()),
                status: Some("approved".into()),
                ..everything.clone()
            };
            let both = register.list(&duty(), &approved_only).unwrap().items.len();
            let by_scan = all.iter().filter(|c| c.traveller == *t && c.status == Status::Approved).count();
            proptest::prop_assert_eq!(both, by_scan);
        }
    }
}
