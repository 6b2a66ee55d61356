//! Given the events of a stream, when a command arrives, then these events (or this
//! refusal).
use super::*;
use events::command::{RefusalCode, Role};
use events::{Meta, StreamName};
use serde_json::json;
use testkit::actor;
use testkit::aggregate::{Given, Stream};
use time::macros::datetime;

const ID: Uuid = Uuid::from_u128(0x4057);
const OPENED: OffsetDateTime = datetime!(2026-11-01 06:00 UTC);

fn crisis() -> Actor {
    actor(Role::CrisisManager, None)
}

fn open_body() -> Value {
    json!({"incident_id": Uuid::from_u128(7), "country": "ML",
           "persons": ["P-1", "P-2", "P-3"], "captors": "unknown armed group",
           "location": {"lat": 16.77, "lon": -3.0, "accuracy_m": 5000.0}})
}

/// The case's stream: events written by `crisis.lead`, one hour apart from [`OPENED`],
/// decided as for a case opened from a reported incident.
fn hostage() -> Stream<Case> {
    Stream::new(ID, |_| REPORTED)
        .recorded(OPENED, time::Duration::hours(1))
        .by("crisis.lead")
}

/// Nothing recorded yet.
fn nothing() -> Given<Case> {
    hostage().given(vec![])
}

/// Runs `name` on the history and returns the history with its events added.
fn then_ok(history: Vec<DomainEvent>, name: &str, body: Value) -> Vec<DomainEvent> {
    hostage()
        .given(history)
        .when(&crisis(), name, body)
        .accepted()
        .events()
        .to_vec()
}

fn opened() -> Vec<DomainEvent> {
    nothing().when(&crisis(), "open", open_body()).events()
}

fn at(person: &str) -> Value {
    json!({"person": person, "at": "2026-11-03T10:00:00Z"})
}

fn released(person: &str) -> DomainEvent {
    HostageReleased {
        person: person.into(),
        at: datetime!(2026-11-03 10:00 UTC),
    }
    .into()
}

#[test]
fn a_bulk_release_records_one_release_per_person_in_one_decision() {
    let history = hostage().given(opened());
    let out = history
        .when(
            &crisis(),
            "release_many",
            json!({"persons": ["P-3", "P-1"], "at": "2026-11-03T10:00:00Z"}),
        )
        .result()
        .unwrap();
    assert_eq!(out, vec![released("P-3"), released("P-1")]);
    let case = hostage().given([opened(), out].concat()).state().unwrap();
    assert_eq!(case.persons_held(), 1);
    assert_eq!(case.person("P-2").unwrap().status, PersonStatus::Held);
    assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
    assert_eq!(case.person("P-3").unwrap().status, PersonStatus::Released);
}

#[test]
fn a_bulk_proof_of_life_records_one_proof_per_person() {
    let history = hostage().given(opened());
    let out = history.when(&crisis(),
        "proof_of_life_many",
        json!({"persons": ["P-1", "P-2", "P-3"], "at": "2026-11-02T10:00:00Z", "note": "group video"}),
    ).result()
    .unwrap();
    assert_eq!(out.len(), 3);
    let case = hostage().given([opened(), out].concat()).state().unwrap();
    assert_eq!(case.proofs.len(), 3);
    assert!(
        case.persons
            .iter()
            .all(|p| p.last_proof_of_life == Some(datetime!(2026-11-02 10:00 UTC)))
    );
}

#[test]
fn a_bulk_with_one_bad_person_is_refused_whole_naming_that_person() {
    let history = hostage().given([opened(), vec![released("P-2")]].concat());
    let at = "2026-11-03T10:00:00Z";
    for (name, body, expect, names) in [
        (
            "release_many",
            json!({"persons": ["P-1", "P-2", "P-3"], "at": at}),
            RefusalCode::Conflict,
            "persons[1]: P-2 was already released",
        ),
        (
            "release_many",
            json!({"persons": ["P-1", "P-9"], "at": at}),
            RefusalCode::Invalid,
            "persons[1]: \"P-9\" is not held",
        ),
        (
            "release_many",
            json!({"persons": ["P-1", "P-3", "P-1"], "at": at}),
            RefusalCode::Invalid,
            "persons[2]: \"P-1\" is listed twice",
        ),
        (
            "release_many",
            json!({"persons": [], "at": at}),
            RefusalCode::Invalid,
            "persons: 1 to 500",
        ),
        (
            "release_many",
            json!({"persons": ["P-1", ""], "at": at}),
            RefusalCode::Invalid,
            "persons[1]",
        ),
        (
            "proof_of_life_many",
            json!({"persons": ["P-1", "P-2"], "at": at, "note": "video"}),
            RefusalCode::Conflict,
            "persons[1]: P-2 was released",
        ),
        (
            "proof_of_life_many",
            json!({"persons": ["P-1"], "at": at, "note": ""}),
            RefusalCode::Invalid,
            "note",
        ),
    ] {
        let r = history
            .when(&crisis(), name, body.clone())
            .result()
            .expect_err("refused");
        assert_eq!(r.code, expect, "{body}: {}", r.message);
        assert!(r.message.contains(names), "{body}: {}", r.message);
    }
    let too_many: Vec<String> = (0..=MAX_MANY).map(|i| format!("P-{i}")).collect();
    let r = history
        .when(
            &crisis(),
            "release_many",
            json!({"persons": too_many, "at": at}),
        )
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid, "{}", r.message);
    for bad in [
        json!({"persons": ["P-1"]}),
        json!({"persons": "P-1", "at": at}),
        json!({"persons": ["P-1"], "at": at, "extra": 1}),
    ] {
        // {bad}
        history
            .when(&crisis(), "release_many", bad.clone())
            .refused(RefusalCode::Invalid);
    }
}

#[test]
fn bulk_commands_are_for_crisis_managers_on_open_cases_in_scope() {
    let history = hostage().given(opened());
    let body = json!({"persons": ["P-1"], "at": "2026-11-03T10:00:00Z"});
    for role in [Role::DutyOfficer, Role::WallScreen, Role::Admin] {
        // {role:?}
        history
            .when(&actor(role, None), "release_many", body.clone())
            .refused(RefusalCode::Forbidden);
    }
    nothing()
        .when(&crisis(), "release_many", body.clone())
        .refused(RefusalCode::NotFound);
    let closing = then_ok(
        opened(),
        "close",
        json!({"outcome": "escaped", "accounting": [
            {"person": "P-1", "status": "other", "note": "escaped"},
            {"person": "P-2", "status": "other", "note": "escaped"},
            {"person": "P-3", "status": "other", "note": "escaped"}]}),
    );
    hostage()
        .given(closing)
        .when(&crisis(), "release_many", body)
        .refused(RefusalCode::Conflict);
}

#[test]
fn a_crisis_manager_opens_a_case_and_everyone_is_held() {
    let out = opened();
    let [DomainEvent::HostageCaseOpened(o)] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(o.persons.len(), 3);
    let case = hostage().given(out).state().unwrap();
    assert_eq!(case.id, ID);
    assert_eq!(case.status, Status::Open);
    assert_eq!(case.persons_held(), 3);
    assert_eq!(case.opened_at, OPENED);
    assert_eq!(case.opened_by.as_deref(), Some("crisis.lead"));
    assert_eq!(case.captors.as_deref(), Some("unknown armed group"));
    assert!(case.persons.iter().all(|p| p.status == PersonStatus::Held));
}

#[test]
fn only_crisis_managers_act_on_cases() {
    let history = hostage().given(opened());
    for role in [
        Role::FieldOfficer,
        Role::DutyOfficer,
        Role::AgencyFocalPoint,
        Role::WallScreen,
        Role::Admin,
    ] {
        let who = actor(role, (role == Role::FieldOfficer).then_some("ML"));
        let r = nothing()
            .when(&who, "open", open_body())
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Forbidden, "{role:?} opens");
        assert!(r.message.contains("crisis manager"), "{}", r.message);
        for (name, body) in [
            (
                "proof_of_life",
                json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": "video"}),
            ),
            (
                "negotiation",
                json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
            ),
            ("release", at("P-1")),
            ("deceased", at("P-1")),
            ("close", json!({"outcome": "x", "accounting": []})),
        ] {
            // {role:?} {name}
            history
                .when(&who, name, body)
                .refused(RefusalCode::Forbidden);
        }
    }
}

#[test]
fn bad_openings_are_refused_with_the_field() {
    for (field, bad) in [
        ("persons", json!([])),
        ("persons", json!(["P-1", "P-1"])),
        ("persons", json!(["has space"])),
        ("country", json!("XX")),
        ("incident_id", json!("not-a-uuid")),
        ("captors", json!("  ")),
        ("location", json!({"lat": 91.0, "lon": 0.0})),
    ] {
        let mut body = open_body();
        body[field] = bad.clone();
        let r = nothing()
            .when(&crisis(), "open", body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{field} {bad}");
        assert!(r.message.contains(field), "{field}: {}", r.message);
    }
    let mut unknown = open_body();
    unknown["by"] = json!("someone");
    nothing()
        .when(&crisis(), "open", unknown)
        .refused(RefusalCode::Invalid);
    nothing()
        .when(&crisis(), "open", json!([1]))
        .refused(RefusalCode::Invalid);
    nothing()
        .when(&crisis(), "kidnap", json!({}))
        .refused(RefusalCode::Invalid);
    // Captors and location are optional.
    let minimal = json!({"incident_id": Uuid::from_u128(7), "country": "ML", "persons": ["P-1"]});
    assert!(nothing().when(&crisis(), "open", minimal).result().is_ok());
}

/// The facts of an opening from a reported incident.
const REPORTED: Facts = Facts {
    incident_reported: true,
};

#[test]
fn a_case_is_opened_from_a_reported_incident_only() {
    let unreported = nothing().with_facts(|_| Facts::default());
    let r = unreported
        .when(&crisis(), "open", open_body())
        .refused(RefusalCode::Invalid);
    assert!(r.message.starts_with("incident_id:"), "{}", r.message);
    // The role is checked first: a duty officer learns nothing about incidents here.
    let duty = Actor {
        user: "d".into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    };
    unreported
        .when(&duty, "open", open_body())
        .refused(RefusalCode::Forbidden);
}

#[test]
fn a_case_is_opened_once() {
    let r = hostage()
        .given(opened())
        .when(&crisis(), "open", open_body())
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Conflict);
    assert!(r.message.contains("new id"), "{}", r.message);
}

#[test]
fn the_life_of_a_case() {
    let mut events = opened();
    events = then_ok(
        events,
        "proof_of_life",
        json!({"person": "P-1", "at": "2026-11-02T08:00:00Z", "note": "video, dated newspaper"}),
    );
    events = then_ok(
        events,
        "proof_of_life",
        json!({"person": "P-1", "at": "2026-11-01T20:00:00Z", "note": "older photo"}),
    );
    events = then_ok(
        events,
        "negotiation",
        json!({"at": "2026-11-02T09:00:00Z", "summary": "first call through the elders"}),
    );
    events = then_ok(events, "release", at("P-1"));
    events = then_ok(events, "deceased", at("P-2"));
    let case = hostage().given(events.clone()).state().unwrap();
    assert_eq!(case.persons_held(), 1);
    assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
    assert_eq!(
        case.person("P-1").unwrap().last_proof_of_life,
        Some(datetime!(2026-11-02 08:00 UTC)),
        "the latest proof, not the latest recorded"
    );
    assert_eq!(case.person("P-2").unwrap().status, PersonStatus::Deceased);
    assert_eq!(case.proofs.len(), 2);
    assert_eq!(case.contacts[0].by.as_deref(), Some("crisis.lead"));
    events = then_ok(
        events,
        "close",
        json!({"outcome": "one released, one died, one escaped", "accounting": [
            {"person": "P-3", "status": "other", "note": "escaped on day 3"},
            {"person": "P-1", "status": "released"},
            {"person": "P-2", "status": "deceased"}]}),
    );
    let history = hostage().given(events);
    let case = history.state().unwrap();
    assert_eq!(case.status, Status::Closed);
    assert_eq!(case.accounting.len(), 3);
    assert_eq!(
        case.outcome.as_deref(),
        Some("one released, one died, one escaped")
    );
    assert_eq!(case.closed_at, Some(OPENED + time::Duration::hours(6)));
    assert_eq!(case.person("P-3").unwrap().status, PersonStatus::Other);
    assert_eq!(case.person("P-1").unwrap().status, PersonStatus::Released);
    assert_eq!(case.persons_held(), 0, "nobody is held in a closed case");
    assert_eq!(case.version, 7);
    for (name, body) in [
        ("open", open_body()),
        (
            "proof_of_life",
            json!({"person": "P-3", "at": "2026-11-02T10:00:00Z", "note": "x"}),
        ),
        (
            "negotiation",
            json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
        ),
        ("release", at("P-3")),
        ("deceased", at("P-3")),
        (
            "close",
            json!({"outcome": "again", "accounting": [
            {"person": "P-3", "status": "other", "note": "n"},
            {"person": "P-1", "status": "released"},
            {"person": "P-2", "status": "deceased"}]}),
        ),
    ] {
        // {name} after close
        history
            .when(&crisis(), name, body)
            .refused(RefusalCode::Conflict);
    }
}

#[test]
fn release_and_death_once_per_person_and_never_both() {
    let released = then_ok(opened(), "release", at("P-1"));
    let dead = then_ok(opened(), "deceased", at("P-1"));
    for (history, name) in [
        (&released, "release"),
        (&released, "deceased"),
        (&dead, "release"),
        (&dead, "deceased"),
    ] {
        let r = hostage()
            .given(history.clone())
            .when(&crisis(), name, at("P-1"))
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Conflict, "{name}");
        assert!(r.message.contains("P-1"), "{}", r.message);
    }
    // The others are unaffected.
    assert!(
        hostage()
            .given(released)
            .when(&crisis(), "deceased", at("P-2"))
            .result()
            .is_ok()
    );
    assert!(
        hostage()
            .given(dead)
            .when(&crisis(), "release", at("P-2"))
            .result()
            .is_ok()
    );
}

#[test]
fn the_fold_keeps_the_first_release_or_death() {
    // Written around the service: the fold still never makes a person both.
    let mut events = opened();
    events.push(
        HostageReleased {
            person: "P-1".into(),
            at: datetime!(2026-11-03 10:00 UTC),
        }
        .into(),
    );
    events.push(
        HostageDeceased {
            person: "P-1".into(),
            at: datetime!(2026-11-04 10:00 UTC),
        }
        .into(),
    );
    let case = hostage().given(events).state().unwrap();
    let p = case.person("P-1").unwrap();
    assert_eq!(p.status, PersonStatus::Released);
    assert_eq!(p.at, Some(datetime!(2026-11-03 10:00 UTC)));
    assert_eq!(case.version, 3);
}

#[test]
fn proof_of_life_only_for_a_person_still_held() {
    let pol = |p: &str| json!({"person": p, "at": "2026-11-02T10:00:00Z", "note": "call"});
    let history = then_ok(
        then_ok(opened(), "release", at("P-1")),
        "deceased",
        at("P-2"),
    );
    let history = hostage().given(history);
    for p in ["P-1", "P-2"] {
        let r = history
            .when(&crisis(), "proof_of_life", pol(p))
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Conflict, "{p}");
        assert!(r.message.contains("still held"), "{}", r.message);
    }
    assert!(
        history
            .when(&crisis(), "proof_of_life", pol("P-3"))
            .result()
            .is_ok()
    );
}

#[test]
fn the_person_must_be_one_of_the_case() {
    let history = hostage().given(opened());
    for (name, body) in [
        ("release", at("P-9")),
        ("deceased", at("P-9")),
        (
            "proof_of_life",
            json!({"person": "P-9", "at": "2026-11-02T10:00:00Z", "note": "x"}),
        ),
    ] {
        let r = history
            .when(&crisis(), name, body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{name}");
        assert!(r.message.starts_with("person:"), "{}", r.message);
        assert!(r.message.contains("P-1, P-2, P-3"), "{}", r.message);
    }
}

#[test]
fn bad_changes_are_refused_with_the_field() {
    let history = hostage().given(opened());
    for (name, body, field) in [
        ("release", json!({"person": "P-1"}), "at"),
        ("release", json!({"person": "P-1", "at": "soon"}), "at"),
        (
            "release",
            json!({"person": "", "at": "2026-11-02T10:00:00Z"}),
            "person",
        ),
        (
            "deceased",
            json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "cause": "x"}),
            "cause",
        ),
        (
            "proof_of_life",
            json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": " "}),
            "note",
        ),
        (
            "negotiation",
            json!({"at": "2026-11-02T10:00:00Z", "summary": ""}),
            "summary",
        ),
        ("negotiation", json!({"summary": "call"}), "at"),
        ("close", json!({"accounting": []}), "outcome"),
        (
            "close",
            json!({"outcome": "x", "accounting": []}),
            "accounting",
        ),
    ] {
        let r = history
            .when(&crisis(), name, body)
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Invalid, "{name} {field}");
        assert!(r.message.contains(field), "{name} {field}: {}", r.message);
    }
    history
        .when(&crisis(), "release", json!("P-1"))
        .refused(RefusalCode::Invalid);
}

#[test]
fn changes_to_a_case_that_does_not_exist_are_not_found() {
    for (name, body) in [
        (
            "proof_of_life",
            json!({"person": "P-1", "at": "2026-11-02T10:00:00Z", "note": "x"}),
        ),
        (
            "negotiation",
            json!({"at": "2026-11-02T10:00:00Z", "summary": "call"}),
        ),
        ("release", at("P-1")),
        ("deceased", at("P-1")),
        (
            "close",
            json!({"outcome": "x", "accounting": [{"person": "P-1", "status": "released"}]}),
        ),
    ] {
        // {name}
        nothing()
            .when(&crisis(), name, body)
            .refused(RefusalCode::NotFound);
    }
}

fn close(accounting: Value) -> Value {
    json!({"outcome": "ended", "accounting": accounting})
}

#[test]
fn the_closing_account_names_every_person_once() {
    let history = hostage().given(then_ok(
        then_ok(opened(), "release", at("P-1")),
        "deceased",
        at("P-2"),
    ));
    let right = || {
        vec![
            json!({"person": "P-1", "status": "released"}),
            json!({"person": "P-2", "status": "deceased"}),
            json!({"person": "P-3", "status": "other", "note": "unaccounted for"}),
        ]
    };
    assert!(
        history
            .when(&crisis(), "close", close(json!(right())))
            .result()
            .is_ok()
    );

    let mut missing = right();
    missing.pop();
    let r = history
        .when(&crisis(), "close", close(json!(missing)))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.contains("add P-3"), "{}", r.message);

    let mut twice = right();
    twice.push(json!({"person": "P-1", "status": "released"}));
    let r = history
        .when(&crisis(), "close", close(json!(twice)))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.contains("accounting[3]"), "{}", r.message);

    let mut stranger = right();
    stranger.push(json!({"person": "P-9", "status": "released"}));
    let r = history
        .when(&crisis(), "close", close(json!(stranger)))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(
        r.message.starts_with("accounting[3].person"),
        "{}",
        r.message
    );

    let mut no_note = right();
    no_note[2] = json!({"person": "P-3", "status": "other"});
    let r = history
        .when(&crisis(), "close", close(json!(no_note)))
        .result()
        .expect_err("refused");
    assert_eq!(r.code, RefusalCode::Invalid);
    assert!(r.message.contains("accounting[2].note"), "{}", r.message);
}

#[test]
fn the_closing_account_agrees_with_the_record() {
    let history = hostage().given(then_ok(
        then_ok(opened(), "release", at("P-1")),
        "deceased",
        at("P-2"),
    ));
    for (i, wrong, hint) in [
        (
            0,
            json!({"person": "P-1", "status": "deceased"}),
            "as released",
        ),
        (
            0,
            json!({"person": "P-1", "status": "other", "note": "n"}),
            "as released",
        ),
        (
            1,
            json!({"person": "P-2", "status": "released"}),
            "as deceased",
        ),
        (
            1,
            json!({"person": "P-2", "status": "other", "note": "n"}),
            "as deceased",
        ),
        (
            2,
            json!({"person": "P-3", "status": "released"}),
            "still held",
        ),
        (
            2,
            json!({"person": "P-3", "status": "deceased"}),
            "still held",
        ),
    ] {
        let mut accounting = vec![
            json!({"person": "P-1", "status": "released"}),
            json!({"person": "P-2", "status": "deceased"}),
            json!({"person": "P-3", "status": "other", "note": "escaped"}),
        ];
        accounting[i] = wrong.clone();
        let r = history
            .when(&crisis(), "close", close(json!(accounting)))
            .result()
            .expect_err("refused");
        assert_eq!(r.code, RefusalCode::Conflict, "{wrong}");
        assert!(r.message.contains(hint), "{wrong}: {}", r.message);
        assert!(
            r.message.starts_with(&format!("accounting[{i}]")),
            "{}",
            r.message
        );
    }
}

#[test]
fn the_summary_counts_without_naming_anyone() {
    let events = then_ok(opened(), "release", at("P-1"));
    let case = hostage().given(events).state().unwrap();
    let s = summary(&case, OPENED + time::Duration::hours(71));
    assert_eq!(s.persons_held, 2);
    assert_eq!((s.persons_released, s.persons_deceased), (1, 0));
    assert_eq!(s.persons_total, 3);
    assert_eq!(s.days_held, 2, "whole days");
    assert_eq!(s.status, Status::Open);
    assert_eq!(s.opened_at, OPENED);
    let text = serde_json::to_string(&s).unwrap();
    for secret in ["P-1", "P-2", "armed group", "16.77", "crisis.lead"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert_eq!(
        summary(&case, OPENED - time::Duration::hours(1)).days_held,
        0,
        "a clock behind the store's is not negative"
    );
}

#[test]
fn days_held_stop_at_the_closure() {
    let mut events = then_ok(opened(), "release", at("P-1"));
    events = then_ok(events, "release", at("P-2"));
    events = then_ok(events, "release", at("P-3"));
    // Recorded one hour apart: closed 3 h after opening. Push it days later.
    events = then_ok(
        events,
        "close",
        close(json!([
            {"person": "P-1", "status": "released"},
            {"person": "P-2", "status": "released"},
            {"person": "P-3", "status": "released"}])),
    );
    let mut history = hostage().given(events).history();
    let last = history.len() - 1;
    history[last].recorded_at = OPENED + time::Duration::days(12) + time::Duration::hours(5);
    let case = Case::fold(&history).unwrap();
    let s = summary(&case, OPENED + time::Duration::days(400));
    assert_eq!(s.days_held, 12);
    assert_eq!(s.persons_held, 0);
    assert_eq!(s.status, Status::Closed);
}

#[test]
fn names_are_put_on_a_read() {
    let case = hostage().given(opened()).state().unwrap();
    assert!(
        case.persons.iter().all(|p| p.name.is_none()),
        "the fold has no names"
    );
    let named = case.named(|p| (p == "P-2").then(|| "Fatima Garcia".to_owned()));
    assert_eq!(named.persons[1].name.as_deref(), Some("Fatima Garcia"));
    assert_eq!(named.persons[0].name, None);
}

fn record_in(stream: StreamName, e: DomainEvent, position: u64, version: u64) -> RecordedEvent {
    RecordedEvent::record(
        e.to_new_event(Uuid::from_u128(1000 + position as u128), Meta::default()),
        stream,
        position,
        version,
        OPENED + time::Duration::days(position as i64),
    )
}

#[test]
fn the_register_lists_summaries_newest_first_with_filters() {
    let mut register = Register::default();
    let mut position = 0;
    let mut ids = vec![];
    for (i, country) in ["ML", "SO", "ML"].into_iter().enumerate() {
        position += 1;
        let mut body = open_body();
        body["country"] = json!(country);
        let HostageCommand::Open(o) = parse("open", body).unwrap() else {
            unreachable!()
        };
        let id = Uuid::from_u128(100 + i as u128);
        ids.push(id);
        register.apply(&record_in(
            events::domain::hostage::stream_for(id),
            o.into(),
            position,
            1,
        ));
    }
    // The first case is closed.
    for (v, person) in ["P-1", "P-2", "P-3"].into_iter().enumerate() {
        position += 1;
        register.apply(&record_in(
            events::domain::hostage::stream_for(ids[0]),
            HostageReleased {
                person: person.into(),
                at: OPENED,
            }
            .into(),
            position,
            v as u64 + 2,
        ));
    }
    position += 1;
    let closed = HostageCaseClosed {
        outcome: "all released".into(),
        accounting: ["P-1", "P-2", "P-3"]
            .into_iter()
            .map(|p| PersonAccount {
                person: p.into(),
                status: HostageOutcome::Released,
                note: None,
            })
            .collect(),
    };
    let closing = record_in(
        events::domain::hostage::stream_for(ids[0]),
        closed.into(),
        position,
        5,
    );
    register.apply(&closing);
    register.apply(&closing); // a duplicate delivery changes nothing
    assert_eq!(register.position(), position);
    // Reference data gives names.
    position += 1;
    register.apply(&record_in(
        events::domain::person::stream_for("P-2"),
        events::domain::person::PersonRegistered {
            person: "P-2".into(),
            name: "Fatima Garcia".into(),
            agency: "unicef".into(),
            nationality: Country::parse("UA").unwrap(),
            duty_station: "SOM-MGQ".into(),
            dependants: 0,
            security_officer: false,
            essential: false,
        }
        .into(),
        position,
        1,
    ));
    assert_eq!(register.name("P-2"), Some("Fatima Garcia"));
    assert_eq!(register.name("P-1"), None);

    let now = OPENED + time::Duration::days(30);
    let duty = actor(Role::DutyOfficer, None);
    let all = register
        .list(&duty, &ListQuery::default(), now)
        .unwrap()
        .items;
    assert_eq!(
        all.iter().map(|s| s.case).collect::<Vec<_>>(),
        vec![ids[2], ids[1], ids[0]],
        "newest opening first"
    );
    assert_eq!(all[2].status, Status::Closed);
    assert_eq!(all[2].persons_held, 0);
    assert_eq!(
        all[2].days_held, 6,
        "from opening (day 1) to closing (day 7)"
    );
    assert_eq!(all[0].days_held, 27);
    let q = |status, country: Option<&str>, limit| ListQuery {
        status,
        country: country.map(|c| Country::parse(c).unwrap()),
        limit,
        cursor: None,
    };
    assert_eq!(
        register
            .list(&duty, &q(Some(Status::Open), None, None), now)
            .unwrap()
            .items
            .len(),
        2
    );
    assert_eq!(
        register
            .list(&duty, &q(Some(Status::Closed), None, None), now)
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        register
            .list(&duty, &q(None, Some("SO"), None), now)
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        register
            .list(&duty, &q(None, None, Some(1)), now)
            .unwrap()
            .items[0]
            .case,
        ids[2]
    );
    for limit in [0, 501] {
        let r = register.list(&duty, &q(None, None, Some(limit)), now);
        assert_eq!(r.unwrap_err().code, RefusalCode::Invalid, "limit {limit}");
    }
    for role in [Role::CrisisManager, Role::Admin] {
        assert!(
            register
                .list(&actor(role, None), &ListQuery::default(), now)
                .is_ok()
        );
    }
    for who in [
        actor(Role::FieldOfficer, Some("ML")),
        actor(Role::WallScreen, None),
        actor(Role::AgencyFocalPoint, None),
    ] {
        let r = register.list(&who, &ListQuery::default(), now);
        assert_eq!(r.unwrap_err().code, RefusalCode::Forbidden, "{who:?}");
    }
}

#[test]
fn list_filters_are_read_strictly() {
    let q: ListQuery = events::codec::from_value(json!({"status": null, "limit": 5})).unwrap();
    assert_eq!(q.status, None);
    let q: ListQuery =
        events::codec::from_value(json!({"status": "closed", "country": "SO"})).unwrap();
    assert_eq!(q.status, Some(Status::Closed));
    for bad in [
        json!({"status": "lost"}),
        json!({"country": "XX"}),
        json!({"names": true}),
        json!({"limit": "ten"}),
    ] {
        assert!(
            events::codec::from_value::<ListQuery>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}
