//! Given the events of a stream (and the reference data), when a command arrives, then
//! these events (or this refusal).
use super::*;
use events::Meta;
use events::command::{RefusalCode, Role};
use serde_json::json;
use testkit::actor;
use testkit::aggregate::{Given, Stream};

const ID: Uuid = Uuid::from_u128(0x5u128);
const OTHER: Uuid = Uuid::from_u128(0x6u128);

fn fso() -> Actor {
    actor(Role::FieldOfficer, Some("SO"))
}

fn duty() -> Actor {
    actor(Role::DutyOfficer, None)
}

fn crisis() -> Actor {
    actor(Role::CrisisManager, None)
}

fn station(id: &str, country: &str) -> DutyStationRegistered {
    DutyStationRegistered {
        station: id.into(),
        country: Country::parse(country).unwrap(),
        area: "A".into(),
        name: id.into(),
        lat: 1.0,
        lon: 1.0,
    }
}

fn person(id: &str, at: &str, officer: bool) -> PersonRegistered {
    PersonRegistered {
        person: id.into(),
        name: "Some One".into(),
        agency: "undss".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: at.into(),
        dependants: 0,
        security_officer: officer,
        essential: false,
    }
}

fn request_body() -> Value {
    json!({"duty_station": "SOM-MGQ", "country": "SO", "reason": "attacks on the airport road",
           "officers_needed": 2, "assets": ["armoured vehicle"]})
}

/// Records `events` as the stream of surge `id`, from position `first`, written by
/// `someone`.
fn record(id: Uuid, events: Vec<DomainEvent>, first: u64) -> Vec<RecordedEvent> {
    Stream::<Surge>::new(id, |_| Facts::default())
        .positions(first, 1)
        .by("someone")
        .record(&events)
}

/// Surge [`ID`]'s stream: its duty station SOM-MGQ is registered in SO; officers P-1
/// (from SOM-BAI) and P-2 (from KEN-NBO) are registered security officers.
fn surge() -> Stream<Surge> {
    Stream::new(ID, |command| {
        let officer = match command {
            SurgeCommand::Assign(a) if a.officer == "P-1" => Some(person("P-1", "SOM-BAI", true)),
            SurgeCommand::Assign(a) if a.officer == "P-2" => Some(person("P-2", "KEN-NBO", true)),
            _ => None,
        };
        Facts {
            station: Some(station("SOM-MGQ", "SO")),
            officer,
            officer_on: None,
        }
    })
    .positions(10, 1)
    .by("someone")
}

/// Nothing recorded yet.
fn nothing() -> Given<Surge> {
    surge().given(vec![])
}

fn requested() -> DomainEvent {
    match parse("request", &fso(), request_body()).unwrap() {
        SurgeCommand::Request(r) => r.into(),
        other => panic!("{other:?}"),
    }
}

fn approved() -> DomainEvent {
    SurgeApproved {
        by: "crisis.1".into(),
    }
    .into()
}

fn assigned(officer: &str, from: &str) -> DomainEvent {
    SurgeOfficerAssigned {
        officer: officer.into(),
        from_duty_station: from.into(),
    }
    .into()
}

fn deployed() -> DomainEvent {
    SurgeDeployed {
        at: time::macros::datetime!(2026-11-28 06:00 UTC),
    }
    .into()
}

fn refused(r: Result<Vec<DomainEvent>, Refusal>) -> Refusal {
    r.expect_err("refused")
}

fn code(r: Result<Vec<DomainEvent>, Refusal>) -> RefusalCode {
    refused(r).code
}

#[test]
fn the_life_of_a_surge() {
    let out = nothing().when(&fso(), "request", request_body()).events();
    let mut events = out.clone();
    let state = surge().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Requested);
    assert_eq!(state.id, ID);
    assert_eq!(state.requested_by.as_deref(), Some("someone"));
    assert_eq!(state.assets, vec!["armoured vehicle".to_owned()]);

    events.extend(
        surge()
            .given(events.clone())
            .when(&crisis(), "approve", json!({}))
            .events(),
    );
    let state = surge().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Approved);
    assert_eq!(state.decided_by.as_deref(), Some("crisis_manager.user"));

    let out = surge()
        .given(events.clone())
        .when(&duty(), "assign", json!({"officer": "P-1"}))
        .result()
        .unwrap();
    assert_eq!(out, vec![assigned("P-1", "SOM-BAI")], "from their station");
    events.extend(out);
    events.extend(
        surge()
            .given(events.clone())
            .when(&duty(), "deploy", json!({"at": "2026-11-28T06:00:00Z"}))
            .result()
            .unwrap(),
    );
    // Reinforcing a deployed surge.
    events.extend(
        surge()
            .given(events.clone())
            .when(&crisis(), "assign", json!({"officer": "P-2"}))
            .result()
            .unwrap(),
    );
    let state = surge().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Deployed);
    assert_eq!(state.officers.len(), 2);
    assert_eq!(
        away_from([&state]),
        BTreeMap::from([("KEN-NBO".to_owned(), 1), ("SOM-BAI".to_owned(), 1)])
    );
    events.extend(
        surge()
            .given(events.clone())
            .when(
                &duty(),
                "complete",
                json!({"at": "2026-12-05T06:00:00+03:00"}),
            )
            .result()
            .unwrap(),
    );
    let state = surge().given(events.clone()).state().unwrap();
    assert_eq!(state.status, Status::Completed);
    assert_eq!(state.version, 6);
    assert!(away_from([&state]).is_empty(), "the officers went home");
    let done = surge().given(events);
    for (name, body) in [
        ("approve", json!({})),
        ("reject", json!({"reason": "r"})),
        ("assign", json!({"officer": "P-1"})),
        ("deploy", json!({"at": "2026-12-06T00:00:00Z"})),
        ("complete", json!({"at": "2026-12-06T00:00:00Z"})),
    ] {
        let r = done
            .when(&crisis(), name, body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Conflict, "{name} after completion");
        assert!(r.message.contains("completed"), "{}", r.message);
    }
}

#[test]
fn a_rejected_surge_takes_no_more_changes() {
    let history = surge().given(vec![requested()]);
    let out = history
        .when(&crisis(), "reject", json!({"reason": "no capacity"}))
        .result()
        .unwrap();
    let rejected = surge().given(vec![requested(), out[0].clone()]);
    let state = rejected.state().unwrap();
    assert_eq!(state.status, Status::Rejected);
    assert_eq!(state.rejected_reason.as_deref(), Some("no capacity"));
    for (name, body) in [
        ("approve", json!({})),
        ("reject", json!({"reason": "again"})),
        ("assign", json!({"officer": "P-1"})),
        ("deploy", json!({"at": "2026-12-06T00:00:00Z"})),
    ] {
        // {name} after rejection
        rejected
            .when(&crisis(), name, body)
            .refused(RefusalCode::Conflict);
    }
}

#[test]
fn decisions_are_taken_once_and_only_while_requested() {
    let history = surge().given(vec![requested(), approved()]);
    let r = history
        .when(&crisis(), "approve", json!({}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(
        r.message.contains("already approved by crisis.1"),
        "{}",
        r.message
    );
    history
        .when(&crisis(), "reject", json!({"reason": "late"}))
        .refused(RefusalCode::Conflict);
}

#[test]
fn each_command_is_refused_to_roles_without_the_right() {
    let requested_only = surge().given(vec![requested()]);
    let running = surge().given(vec![requested(), approved()]);
    let cases: [(&str, Value, &Given<Surge>, &[Role]); 6] = [
        ("request", request_body(), &nothing(), policy::SURGE_REQUEST),
        ("approve", json!({}), &requested_only, policy::SURGE_DECIDE),
        (
            "reject",
            json!({"reason": "r"}),
            &requested_only,
            policy::SURGE_DECIDE,
        ),
        (
            "assign",
            json!({"officer": "P-1"}),
            &running,
            policy::SURGE_RUN,
        ),
        (
            "deploy",
            json!({"at": "2026-11-28T06:00:00Z"}),
            &running,
            policy::SURGE_RUN,
        ),
        (
            "complete",
            json!({"at": "2026-11-28T06:00:00Z"}),
            &running,
            policy::SURGE_RUN,
        ),
    ];
    for (name, body, history, allowed) in cases {
        for role in Role::ALL {
            let who = actor(role, (role == Role::FieldOfficer).then_some("SO"));
            let got = history.when(&who, name, body.clone()).result();
            if allowed.contains(&role) {
                assert!(
                    !matches!(&got, Err(r) if r.code == RefusalCode::Forbidden),
                    "{name} as {role:?}: {got:?}"
                );
            } else {
                assert_eq!(code(got), RefusalCode::Forbidden, "{name} as {role:?}");
            }
        }
    }
}

#[test]
fn a_field_officer_requests_only_for_their_country_and_sees_only_it() {
    let mut body = request_body();
    body["country"] = json!("KE");
    body["duty_station"] = json!("KEN-NBO");
    let nbo = station("KEN-NBO", "KE");
    let facts = Facts {
        station: Some(nbo.clone()),
        ..Facts::default()
    };
    assert_eq!(
        code(
            nothing()
                .with_facts({
                    let facts = facts.clone();
                    move |_| facts.clone()
                })
                .when(&fso(), "request", body.clone())
                .result()
        ),
        RefusalCode::Forbidden
    );
    assert!(
        nothing()
            .with_facts({
                let facts = facts.clone();
                move |_| facts.clone()
            })
            .when(&duty(), "request", body)
            .result()
            .is_ok()
    );
    let unscoped = actor(Role::FieldOfficer, None);
    nothing()
        .when(&unscoped, "request", request_body())
        .refused(RefusalCode::Forbidden);
    let history = surge().given(vec![requested()]);
    let state = history.state().unwrap();
    let kenya = actor(Role::FieldOfficer, Some("KE"));
    assert!(visible(&fso(), &state));
    assert!(!visible(&kenya, &state));
    assert!(!visible(&actor(Role::WallScreen, None), &state));
    assert!(visible(&actor(Role::Admin, None), &state));
}

#[test]
fn a_request_needs_a_registered_station_in_its_country() {
    let r = refused(
        nothing()
            .with_facts({
                let facts = Facts::default();
                move |_| facts.clone()
            })
            .when(&duty(), "request", request_body())
            .result(),
    );
    assert_eq!(r.code, RefusalCode::NotFound);
    assert!(r.message.contains("vigil import"), "{}", r.message);
    let elsewhere = station("SOM-MGQ", "KE");
    let r = refused(
        nothing()
            .with_facts({
                let facts = Facts {
                    station: Some(elsewhere.clone()),
                    ..Facts::default()
                };
                move |_| facts.clone()
            })
            .when(&duty(), "request", request_body())
            .result(),
    );
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.starts_with("country"), "{}", r.message);
    // The same surge requested twice.
    surge()
        .given(vec![requested()])
        .when(&duty(), "request", request_body())
        .refused(RefusalCode::Conflict);
}

#[test]
fn bad_bodies_are_refused_with_the_field() {
    for (field, bad) in [
        ("country", json!("XX")),
        ("officers_needed", json!(0)),
        ("officers_needed", json!(201)),
        ("reason", json!(" ")),
        ("duty_station", json!("has space")),
        ("assets", json!(["ok", ""])),
    ] {
        let mut body = request_body();
        body[field] = bad;
        let r = nothing()
            .when(&duty(), "request", body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{field}");
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
    let mut extra = request_body();
    extra["by"] = json!("x");
    nothing()
        .when(&duty(), "request", extra)
        .refused(RefusalCode::Invalid);
    let history = surge().given(vec![requested()]);
    let r = history
        .when(&crisis(), "approve", json!({"by": "someone.else"}))
        .result()
        .expect_err("refused");
    assert!(r.message.starts_with("by"), "{}", r.message);
    history
        .when(&crisis(), "approve", json!([]))
        .refused(RefusalCode::Invalid);
    let r = history
        .when(&crisis(), "reject", json!({"reason": ""}))
        .result()
        .expect_err("refused");
    assert!(r.message.starts_with("reason"), "{}", r.message);
    // a rejection needs a reason
    history
        .when(&crisis(), "reject", json!({}))
        .refused(RefusalCode::Invalid);
    let running = surge().given(vec![requested(), approved()]);
    let r = running
        .when(
            &duty(),
            "assign",
            json!({"officer": "P-1", "from_duty_station": "SOM-BAI"}),
        )
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.starts_with("from_duty_station"), "{}", r.message);
    for bad in [
        json!({}),
        json!({"officer": ""}),
        json!({"officer": "P 1"}),
        json!({"officer": "P-1", "x": 1}),
        json!("P-1"),
    ] {
        // {bad}
        running
            .when(&duty(), "assign", bad.clone())
            .refused(RefusalCode::Invalid);
    }
    for name in ["deploy", "complete"] {
        let r = running
            .when(&duty(), name, json!({"at": "tomorrow"}))
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid);
        assert!(r.message.starts_with("at"), "{}", r.message);
    }
    running
        .when(&duty(), "launch", json!({}))
        .refused(RefusalCode::Invalid);
}

#[test]
fn changes_to_a_surge_that_does_not_exist_or_is_out_of_scope_are_not_found() {
    for (name, body) in [
        ("approve", json!({})),
        ("reject", json!({"reason": "r"})),
        ("assign", json!({"officer": "P-1"})),
        ("deploy", json!({"at": "2026-11-28T06:00:00Z"})),
        ("complete", json!({"at": "2026-11-28T06:00:00Z"})),
    ] {
        // {name}
        nothing()
            .when(&crisis(), name, body)
            .refused(RefusalCode::NotFound);
    }
}

#[test]
fn officers_are_assigned_only_to_an_approved_surge_that_is_not_full() {
    let requested_only = surge().given(vec![requested()]);
    let r = requested_only
        .when(&duty(), "assign", json!({"officer": "P-1"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("not approved"), "{}", r.message);
    let full = surge().given(vec![
        requested(),
        approved(),
        assigned("P-7", "X"),
        assigned("P-8", "Y"),
    ]);
    let r = full
        .when(&duty(), "assign", json!({"officer": "P-1"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("full: 2 of 2"), "{}", r.message);
}

#[test]
fn the_officer_must_be_a_registered_security_officer_from_elsewhere() {
    let running = surge().given(vec![requested(), approved()]);
    let r = running
        .when(&duty(), "assign", json!({"officer": "P-404"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::NotFound);
    assert!(r.message.contains("vigil import"), "{}", r.message);
    let clerk = person("P-3", "SOM-BAI", false);
    let r = refused(
        running
            .with_facts({
                let facts = Facts {
                    officer: Some(clerk.clone()),
                    ..Facts::default()
                };
                move |_| facts.clone()
            })
            .when(&duty(), "assign", json!({"officer": "P-3"}))
            .result(),
    );
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(
        r.message.contains("not a security officer"),
        "{}",
        r.message
    );
    let local = person("P-4", "SOM-MGQ", true);
    let r = refused(
        running
            .with_facts({
                let facts = Facts {
                    officer: Some(local.clone()),
                    ..Facts::default()
                };
                move |_| facts.clone()
            })
            .when(&duty(), "assign", json!({"officer": "P-4"}))
            .result(),
    );
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.contains("another duty station"), "{}", r.message);
    // Facts about someone else are not facts about this officer.
    let other = person("P-9", "SOM-BAI", true);
    assert_eq!(
        code(
            running
                .with_facts({
                    let facts = Facts {
                        officer: Some(other.clone()),
                        ..Facts::default()
                    };
                    move |_| facts.clone()
                })
                .when(&duty(), "assign", json!({"officer": "P-1"}))
                .result()
        ),
        RefusalCode::NotFound
    );
    let twice = surge().given(vec![requested(), approved(), assigned("P-1", "SOM-BAI")]);
    let r = twice
        .when(&duty(), "assign", json!({"officer": "P-1"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(
        r.message.contains("already assigned to surge"),
        "{}",
        r.message
    );
}

#[test]
fn an_officer_already_on_an_active_surge_is_refused_naming_it() {
    let running = surge().given(vec![requested(), approved()]);
    let o1 = person("P-1", "SOM-BAI", true);
    let facts = Facts {
        officer: Some(o1.clone()),
        officer_on: Some(OTHER),
        ..Facts::default()
    };
    let r = refused(
        running
            .with_facts({
                let facts = facts.clone();
                move |_| facts.clone()
            })
            .when(&duty(), "assign", json!({"officer": "P-1"}))
            .result(),
    );
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains(&OTHER.to_string()), "{}", r.message);
}

#[test]
fn deployment_needs_approval_and_an_officer_and_completion_needs_deployment() {
    let at = json!({"at": "2026-11-28T06:00:00Z"});
    let r = surge()
        .given(vec![requested()])
        .when(&duty(), "deploy", at.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("not approved"), "{}", r.message);
    let r = surge()
        .given(vec![requested(), approved()])
        .when(&duty(), "deploy", at.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("no officer"), "{}", r.message);
    let d = surge().given(vec![
        requested(),
        approved(),
        assigned("P-1", "SOM-BAI"),
        deployed(),
    ]);
    let r = d
        .when(&duty(), "deploy", at.clone())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("already deployed"), "{}", r.message);
    for history in [
        surge().given(vec![requested()]),
        surge().given(vec![requested(), approved(), assigned("P-1", "SOM-BAI")]),
    ] {
        history
            .when(&duty(), "complete", at.clone())
            .refused(RefusalCode::Conflict);
    }
    let r = d
        .when(&duty(), "complete", json!({"at": "2026-11-27T06:00:00Z"}))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid, "before the deployment");
    assert!(r.message.starts_with("at"), "{}", r.message);
}

#[test]
fn the_fold_follows_the_log_even_where_decide_would_not_have() {
    // A second approval, a duplicate assignment and events before a request move only
    // the version.
    let mut state = None;
    for e in record(ID, vec![approved()], 1) {
        Surge::apply(&mut state, &e);
    }
    assert!(state.is_none());
    let s = surge()
        .given(vec![
            requested(),
            approved(),
            approved(),
            assigned("P-1", "A"),
            assigned("P-1", "A"),
        ])
        .state()
        .unwrap();
    assert_eq!(s.officers.len(), 1);
    assert_eq!(s.version, 5);
    assert_eq!(s.status, Status::Approved);
}

fn feed(register: &mut Register, events: &[RecordedEvent]) {
    for e in events {
        register.apply(e);
    }
}

#[test]
fn the_register_knows_who_is_on_which_surge_and_frees_them() {
    let mut register = Register::default();
    let a = record(
        ID,
        vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
        1,
    );
    feed(&mut register, &a);
    assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
    assert_eq!(register.active_surge_of("P-1", ID), None, "not on another");
    assert_eq!(register.active_surge_of("P-2", OTHER), None);
    assert_eq!(gaps(&register), BTreeMap::from([("SOM-BAI".to_owned(), 1)]));
    let done = record(
        ID,
        vec![
            requested(),
            approved(),
            assigned("P-1", "SOM-BAI"),
            deployed(),
            SurgeCompleted {
                at: time::macros::datetime!(2026-12-01 00:00 UTC),
            }
            .into(),
        ],
        1,
    );
    feed(&mut register, &done);
    assert_eq!(register.active_surge_of("P-1", OTHER), None, "back home");
    assert!(gaps(&register).is_empty());
    // Positions already applied are ignored.
    assert_eq!(register.position(), 5);
    feed(&mut register, &a);
    assert_eq!(register.get(ID).unwrap().status, Status::Completed);
}

fn cancelled() -> DomainEvent {
    SurgeCancelled {
        by: "crisis.1".into(),
        reason: "the road reopened".into(),
    }
    .into()
}

#[test]
fn a_requested_or_approved_surge_is_cancelled_with_a_reason_and_by_the_login() {
    let reason = json!({"reason": "the road reopened"});
    for before in [
        vec![requested()],
        vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
    ] {
        let events = surge()
            .given(before.clone())
            .when(&crisis(), "cancel", reason.clone())
            .events();
        let by_login: DomainEvent = SurgeCancelled {
            by: crisis().user,
            reason: "the road reopened".into(),
        }
        .into();
        assert_eq!(events, vec![by_login]);
        let state = surge().given([before, events].concat()).state().unwrap();
        assert_eq!(state.status, Status::Cancelled);
        assert_eq!(state.cancelled_by, Some(crisis().user));
        assert_eq!(state.cancelled_reason.as_deref(), Some("the road reopened"));
        assert!(!state.is_open());
        assert!(away_from([&state]).is_empty(), "its officers are back");
    }
}

#[test]
fn cancel_needs_a_one_line_reason_and_the_right_to_decide_surges() {
    let history = surge().given(vec![requested(), approved()]);
    for bad in [
        json!({}),
        json!({"reason": ""}),
        json!({"reason": "   "}),
        json!({"reason": "two\nlines"}),
        json!({"reason": "x".repeat(events::domain::MAX_REASON + 1)}),
        json!({"reason": "ok", "by": "someone.else"}),
        json!({"reason": "ok", "extra": 1}),
    ] {
        let r = history
            .when(&crisis(), "cancel", bad.clone())
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{bad}: {}", r.message);
    }
    for who in [
        fso(),
        actor(Role::WallScreen, None),
        actor(Role::AgencyFocalPoint, None),
    ] {
        // {who:?}
        history
            .when(&who, "cancel", json!({"reason": "not needed"}))
            .refused(RefusalCode::Forbidden);
    }
}

#[test]
fn a_deployed_or_closed_surge_cannot_be_cancelled() {
    let reason = json!({"reason": "not needed"});
    let done = SurgeCompleted {
        at: time::macros::datetime!(2026-12-01 00:00 UTC),
    };
    let rejected: DomainEvent = SurgeRejected {
        by: "crisis.1".into(),
        reason: "no".into(),
    }
    .into();
    for (history, says) in [
        (
            surge().given(vec![
                requested(),
                approved(),
                assigned("P-1", "SOM-BAI"),
                deployed(),
            ]),
            "deployed",
        ),
        (
            surge().given(vec![
                requested(),
                approved(),
                assigned("P-1", "SOM-BAI"),
                deployed(),
                done.into(),
            ]),
            "completed",
        ),
        (surge().given(vec![requested(), rejected]), "rejected"),
        (surge().given(vec![requested(), cancelled()]), "cancelled"),
    ] {
        let r = history
            .when(&crisis(), "cancel", reason.clone())
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Conflict, "{says}: {}", r.message);
        assert!(r.message.contains(says), "{says}: {}", r.message);
    }
    // Nothing else moves a cancelled surge either.
    let gone = surge().given(vec![requested(), approved(), cancelled()]);
    for (name, body) in [
        ("approve", json!({})),
        ("assign", json!({"officer": "P-1"})),
        ("deploy", json!({"at": "2026-11-28T06:00:00Z"})),
    ] {
        // {name}
        gone.when(&crisis(), name, body)
            .refused(RefusalCode::Conflict);
    }
}

#[test]
fn a_cancelled_surge_frees_its_officers_for_another() {
    let mut register = Register::default();
    feed(
        &mut register,
        &record(
            ID,
            vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
            1,
        ),
    );
    assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
    feed(
        &mut register,
        &record(
            ID,
            vec![
                requested(),
                approved(),
                assigned("P-1", "SOM-BAI"),
                cancelled(),
            ],
            1,
        ),
    );
    assert_eq!(register.active_surge_of("P-1", OTHER), None, "free again");
    assert!(gaps(&register).is_empty());
    let q = ListQuery {
        status: Some("cancelled".into()),
        ..ListQuery::default()
    };
    assert_eq!(register.list(&crisis(), &q).unwrap().items.len(), 1);
}

#[test]
fn what_this_instance_wrote_counts_before_the_feed_brings_it() {
    let mut register = Register::default();
    let history = record(ID, vec![requested(), approved()], 1);
    feed(&mut register, &history);
    let mut ahead = history.clone();
    ahead.extend(
        record(
            ID,
            vec![requested(), approved(), assigned("P-1", "SOM-BAI")],
            1,
        )
        .pop(),
    );
    let written = Surge::fold(&ahead).unwrap();
    assert_eq!(written.version, 3);
    register.wrote(written.clone());
    assert_eq!(register.active_surge_of("P-1", OTHER), Some(ID));
    assert_eq!(register.surges().count(), 1);
    // An older state written late does not replace a newer one.
    register.wrote(Surge::fold(&history).unwrap());
    assert_eq!(register.get(ID).unwrap().version, 3);
    // The feed's copy takes over.
    feed(&mut register, &ahead[2..]);
    assert!(register.ahead.is_empty());
    assert_eq!(register.get(ID).unwrap().officers.len(), 1);
    // A surge known only from this instance's write is listed too.
    let other = Surge::fold(&record(OTHER, vec![requested()], 50)).unwrap();
    register.wrote(other);
    assert_eq!(register.surges().count(), 2);
    assert_eq!(
        register
            .list(&duty(), &ListQuery::default())
            .unwrap()
            .items
            .len(),
        2
    );
}

#[test]
fn the_register_lists_within_scope_with_filters() {
    let mut register = Register::default();
    let mut kenya = request_body();
    kenya["country"] = json!("KE");
    kenya["duty_station"] = json!("KEN-NBO");
    let SurgeCommand::Request(ke) = parse("request", &duty(), kenya).unwrap() else {
        unreachable!()
    };
    feed(
        &mut register,
        &record(Uuid::from_u128(1), vec![requested()], 1),
    );
    feed(
        &mut register,
        &record(Uuid::from_u128(2), vec![requested(), approved()], 2),
    );
    feed(
        &mut register,
        &record(Uuid::from_u128(3), vec![ke.into()], 4),
    );
    // Another category is skipped but moves the position.
    let other = events::domain::person::stream_for("P-1");
    register.apply(&RecordedEvent::record(
        DomainEvent::from(person("P-1", "X", true))
            .to_new_event(Uuid::from_u128(99), Meta::default()),
        other,
        5,
        1,
        OffsetDateTime::UNIX_EPOCH,
    ));
    assert_eq!(register.position(), 5);
    let all = register.list(&duty(), &ListQuery::default()).unwrap().items;
    assert_eq!(all.len(), 3);
    assert!(all[0].position > all[1].position, "newest first");
    assert_eq!(
        register
            .list(&fso(), &ListQuery::default())
            .unwrap()
            .items
            .len(),
        2
    );
    let q = |status: Option<&str>, country: Option<&str>, limit: Option<usize>| ListQuery {
        status: status.map(Into::into),
        country: country.map(|c| Country::parse(c).unwrap()),
        limit,
        cursor: None,
    };
    assert_eq!(
        register
            .list(&duty(), &q(Some("approved"), None, None))
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        register
            .list(&duty(), &q(Some("active"), None, None))
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        register
            .list(&duty(), &q(Some("requested"), None, None))
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        register
            .list(&duty(), &q(None, Some("KE"), None))
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        register
            .list(&duty(), &q(None, None, Some(1)))
            .unwrap()
            .items
            .len(),
        1
    );
    let refused = |who: &Actor, q: ListQuery| register.list(who, &q).map(|_| ()).unwrap_err().code;
    assert_eq!(
        refused(&fso(), q(None, Some("KE"), None)),
        RefusalCode::Forbidden
    );
    assert_eq!(
        refused(&duty(), q(Some("lost"), None, None)),
        RefusalCode::Invalid
    );
    assert_eq!(
        refused(&duty(), q(None, None, Some(0))),
        RefusalCode::Invalid
    );
    assert_eq!(
        refused(&duty(), q(None, None, Some(501))),
        RefusalCode::Invalid
    );
    assert_eq!(
        refused(&actor(Role::WallScreen, None), ListQuery::default()),
        RefusalCode::Forbidden
    );
}

mod properties {
    //! Whatever commands arrive in whatever order, decided against the register as the
    //! service does, no officer is ever on two active surges and no surge takes more
    //! officers than it asked for.
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Step {
        Approve(usize),
        Reject(usize),
        Assign(usize, usize),
        Deploy(usize),
        Complete(usize),
        Cancel(usize),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize).prop_map(Step::Approve),
            (0..3usize).prop_map(Step::Reject),
            (0..3usize, 0..4usize).prop_map(|(s, o)| Step::Assign(s, o)),
            (0..3usize).prop_map(Step::Deploy),
            (0..3usize).prop_map(Step::Complete),
            (0..3usize).prop_map(Step::Cancel),
        ]
    }

    proptest! {
        #[test]
        fn no_officer_is_ever_on_two_active_surges(steps in proptest::collection::vec(step(), 0..60)) {
            let ids = [Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3)];
            let officers: Vec<PersonRegistered> = (0..4)
                .map(|i| person(&format!("P-{i}"), "SOM-BAI", true))
                .collect();
            let mut streams: Vec<Vec<DomainEvent>> = ids.iter().map(|_| vec![requested()]).collect();
            let mut position = 0;
            let mut register = Register::default();
            for (i, s) in streams.iter().enumerate() {
                let r = record(ids[i], s.clone(), position + 1);
                position += r.len() as u64;
                feed(&mut register, &r);
            }
            let at = json!({"at": "2026-11-28T06:00:00Z"});
            for step in steps {
                let (i, name, body) = match step {
                    Step::Approve(i) => (i, "approve", json!({})),
                    Step::Reject(i) => (i, "reject", json!({"reason": "no"})),
                    Step::Assign(i, o) => (i, "assign", json!({"officer": format!("P-{o}")})),
                    Step::Deploy(i) => (i, "deploy", at.clone()),
                    Step::Complete(i) => (i, "complete", at.clone()),
                    Step::Cancel(i) => (i, "cancel", json!({"reason": "not needed"})),
                };
                let history = record(ids[i], streams[i].clone(), 0);
                let officer = body["officer"].as_str().and_then(|o| officers.iter().find(|p| p.person == o));
                let facts = Facts {
                    station: None,
                    officer: officer.cloned(),
                    officer_on: officer.and_then(|o| register.active_surge_of(&o.person, ids[i])),
                };
                let command = parse(name, &crisis(), body).unwrap();
                if let Ok(new) = Surge::decide(ids[i], Surge::fold(&history).as_ref(), &crisis(), command, &facts) {
                    let version = streams[i].len();
                    streams[i].extend(new.clone());
                    let all = record(ids[i], streams[i].clone(), 0);
                    for e in &all[version..] {
                        let mut e = e.clone();
                        position += 1;
                        e.position = position;
                        register.apply(&e);
                    }
                }
                let mut on: HashMap<&str, usize> = HashMap::new();
                for s in register.surges() {
                    prop_assert!(s.officers.len() <= usize::from(s.officers_needed));
                    if s.status.is_active() {
                        for a in &s.officers {
                            *on.entry(a.officer.as_str()).or_default() += 1;
                        }
                    }
                }
                prop_assert!(on.values().all(|n| *n == 1), "{on:?}");
            }
        }
    }
}

/// One generated event of a checkpoint test: on surge stream `0..3`, or of another category.
#[derive(Debug, Clone)]
enum Step {
    Requested(u128),
    Approved(u128),
    Assigned(u128, usize),
    Deployed(u128),
    Completed(u128),
    Cancelled(u128),
    Other,
}

fn step() -> impl proptest::strategy::Strategy<Value = Step> {
    use proptest::prelude::*;
    let s = 0u128..3;
    prop_oneof![
        2 => s.clone().prop_map(Step::Requested),
        2 => s.clone().prop_map(Step::Approved),
        3 => (s.clone(), 0usize..3).prop_map(|(s, o)| Step::Assigned(s, o)),
        1 => s.clone().prop_map(Step::Deployed),
        1 => s.clone().prop_map(Step::Completed),
        1 => s.prop_map(Step::Cancelled),
        1 => Just(Step::Other),
    ]
}

/// The log of `steps`, gap-free positions and per-stream versions (the fold follows it even
/// where `decide` would have refused, so any order will do).
fn log_of(steps: &[Step]) -> Vec<RecordedEvent> {
    let officers = [("P-1", "SOM-BAI"), ("P-2", "KEN-NBO"), ("P-3", "SOM-BAI")];
    let mut versions: HashMap<StreamName, u64> = HashMap::new();
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let on = |s: u128| events::domain::surge::stream_for(Uuid::from_u128(0x100 + s));
            let (stream, event) = match step {
                Step::Requested(s) => (on(*s), requested()),
                Step::Approved(s) => (on(*s), approved()),
                Step::Assigned(s, o) => (on(*s), assigned(officers[*o].0, officers[*o].1)),
                Step::Deployed(s) => (on(*s), deployed()),
                Step::Completed(s) => (
                    on(*s),
                    SurgeCompleted {
                        at: time::macros::datetime!(2026-12-01 00:00 UTC),
                    }
                    .into(),
                ),
                Step::Cancelled(s) => (on(*s), cancelled()),
                Step::Other => (
                    events::domain::incident::stream_for(Uuid::from_u128(7)),
                    events::domain::incident::IncidentClosed {
                        reason: "another category".into(),
                    }
                    .into(),
                ),
            };
            let version = versions.entry(stream.clone()).or_insert(0);
            *version += 1;
            let position = i as u64 + 1;
            RecordedEvent::record(
                event.to_new_event(Uuid::from_u128(10_000 + i as u128), Meta::default()),
                stream,
                position,
                *version,
                time::macros::datetime!(2026-11-28 03:00 UTC) + time::Duration::minutes(i as i64),
            )
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    /// The register after event k written as a checkpoint (framed, read back) and fed the
    /// events after k equals the fold of the whole log, and answers the same: lists, who is
    /// on which surge, the gaps. A surge written ahead of the feed is not saved.
    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_fold(
        steps in proptest::collection::vec(step(), 0..60),
        k in proptest::prelude::any::<proptest::sample::Index>(),
    ) {
        use runtime::Fold;
        let log = log_of(&steps);
        let k = k.index(log.len() + 1);
        let codec = <Register as Fold>::checkpoint().unwrap_or_else(|| panic!("opted in"));
        let mut at_k = Register::default();
        feed(&mut at_k, &log[..k]);
        // The same register with a write of this instance ahead of the feed.
        let mut ahead = Register::default();
        feed(&mut ahead, &log[..k]);
        let first = ahead.surges().next().cloned();
        if let Some(s) = first {
            let (id, version) = (s.id, s.version + 1);
            ahead.wrote(Surge(events::domain::surge::Surge { version, ..s.0 }));
            proptest::prop_assert_eq!(ahead.get(id).map(|w| w.version), Some(version));
        }
        let bytes = runtime::checkpoint::frame(codec.version, ahead.position(), Uuid::nil(),
            &serde_json::to_vec(&ahead).unwrap_or_else(|e| panic!("{e}")));
        let (position, _, state) = runtime::checkpoint::unframe(&bytes, REGISTER_VERSION)
            .unwrap_or_else(|e| panic!("{e}"));
        proptest::prop_assert_eq!(position, at_k.position());
        let mut restored: Register = serde_json::from_slice(state).unwrap_or_else(|e| panic!("{e}"));
        proptest::prop_assert_eq!(&restored, &at_k);
        feed(&mut restored, &log[k..]);
        let mut whole = Register::default();
        feed(&mut whole, &log);
        proptest::prop_assert_eq!(&restored, &whole);
        let list = |r: &Register| r.list(&duty(), &ListQuery::default())
            .map(|p| p.items.into_iter().cloned().collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e:?}"));
        proptest::prop_assert_eq!(list(&restored), list(&whole));
        proptest::prop_assert_eq!(gaps(&restored), gaps(&whole));
        for officer in ["P-1", "P-2", "P-3"] {
            proptest::prop_assert_eq!(
                restored.active_surge_of(officer, OTHER),
                whole.active_surge_of(officer, OTHER)
            );
        }
    }
}
