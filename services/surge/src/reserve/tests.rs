//! Given the officer's reservation stream and the surge that holds them, when an assignment
//! reserves (or a closed surge releases), then these events (or this refusal).
use super::*;
use events::command::Role;
use events::domain::surge::{
    SurgeApproved, SurgeCancelled, SurgeCompleted, SurgeDeployed, SurgeRequested,
};
use events::validate::Country;
use serde_json::json;
use testkit::actor;
use testkit::aggregate::Stream;
use time::macros::datetime;

use crate::surge::Status;

const OFFICER: Uuid = Uuid::from_u128(0x0ff1);
const A: Uuid = Uuid::from_u128(0xa);
const B: Uuid = Uuid::from_u128(0xb);
const C1: Uuid = Uuid::from_u128(0xc1);
const C2: Uuid = Uuid::from_u128(0xc2);

fn duty() -> Actor {
    actor(Role::DutyOfficer, None)
}

fn reserved(surge: Uuid, command: Uuid) -> DomainEvent {
    SurgeOfficerReserved {
        officer: "P-1".into(),
        surge,
        command,
        from_duty_station: "KEN-NBO".into(),
    }
    .into()
}

fn released(surge: Uuid, command: Uuid) -> DomainEvent {
    SurgeOfficerReleased {
        officer: "P-1".into(),
        surge,
        command,
    }
    .into()
}

fn reserve(surge: Uuid, command: Uuid) -> Value {
    json!({"officer": "P-1", "surge": surge, "command": command, "from_duty_station": "KEN-NBO"})
}

/// Surge `id` at Mogadishu asking for `needed` officers, after `then`.
fn surge(id: Uuid, needed: u16, then: Vec<DomainEvent>) -> Surge {
    let mut events: Vec<DomainEvent> = vec![
        SurgeRequested {
            duty_station: "SOM-MGQ".into(),
            country: Country::parse("SO").unwrap(),
            reason: "attacks on the airport road".into(),
            officers_needed: needed,
            assets: vec![],
        }
        .into(),
    ];
    events.extend(then);
    Stream::<Surge>::new(id, |_| crate::surge::Facts::default())
        .by("someone")
        .given(events)
        .state()
        .unwrap()
}

fn approved() -> DomainEvent {
    SurgeApproved { by: "cm".into() }.into()
}

fn assigned(officer: &str) -> DomainEvent {
    SurgeOfficerAssigned {
        officer: officer.into(),
        from_duty_station: "KEN-NBO".into(),
    }
    .into()
}

fn at() -> time::OffsetDateTime {
    datetime!(2026-11-28 06:00 UTC)
}

/// The officer's stream, whose hold's surge stands as `holder`.
fn officer(holder: Option<Surge>) -> Stream<Reservation> {
    Stream::new(OFFICER, move |_| Holder(holder.clone())).by("duty_officer.user")
}

#[test]
fn a_free_officer_is_reserved_and_the_stream_holds_them() {
    let given = officer(None)
        .given(vec![])
        .when(&duty(), "reserve", reserve(A, C1))
        .then(vec![reserved(A, C1)]);
    let state = given.state().unwrap();
    assert_eq!(state.officer, "P-1");
    assert_eq!(state.version, 1);
    let hold = state.hold.unwrap();
    assert_eq!((hold.surge, hold.command), (A, C1));
    assert_eq!(hold.meta.actor.as_deref(), Some("duty_officer.user"));
    assert_eq!(
        hold.assignment("P-1"),
        SurgeOfficerAssigned {
            officer: "P-1".into(),
            from_duty_station: "KEN-NBO".into()
        }
    );
}

#[test]
fn an_officer_on_an_active_surge_is_refused_naming_it() {
    let on_a = surge(A, 2, vec![approved(), assigned("P-1")]);
    let r = officer(Some(on_a.clone()))
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(B, C2))
        .refused(RefusalCode::Conflict);
    assert!(r.message.contains(&A.to_string()), "{}", r.message);
    // Deployed is active too.
    let deployed = surge(
        A,
        2,
        vec![
            approved(),
            assigned("P-1"),
            SurgeDeployed { at: at() }.into(),
        ],
    );
    officer(Some(deployed))
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(B, C2))
        .refused(RefusalCode::Conflict);
}

#[test]
fn a_hold_whose_surge_still_takes_the_officer_is_finished_not_overridden() {
    // The reserving command stopped between its two appends (or is on its way): A is active,
    // has room and does not have the officer yet.
    let pending = surge(A, 2, vec![approved()]);
    let r = officer(Some(pending.clone()))
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(B, C2))
        .refused(RefusalCode::Conflict);
    assert!(r.message.contains(&A.to_string()), "{}", r.message);
    let given = officer(None).given(vec![reserved(A, C1)]);
    let hold = given.state().unwrap().hold.unwrap();
    assert_eq!(
        resolve(Some(&hold), Some(&pending), "P-1", B, C2).unwrap(),
        Step::Finish(hold.clone()),
        "the next assignment appends A's assignment under C1, then looks again"
    );
    // The same command again (a retry with its id) finishes its own hold.
    assert_eq!(
        resolve(Some(&hold), Some(&pending), "P-1", A, C1).unwrap(),
        Step::Ours(hold.clone())
    );
    officer(Some(pending))
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(A, C1))
        .then(vec![]);
    // The same id for another surge is a reused id.
    officer(None)
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(B, C1))
        .refused(RefusalCode::IdReused);
}

#[test]
fn a_hold_whose_surge_can_never_take_the_officer_blocks_nobody() {
    let stale = [
        // Completed with the officer: the release was not written yet.
        surge(
            A,
            2,
            vec![
                approved(),
                assigned("P-1"),
                SurgeDeployed { at: at() }.into(),
                completed(),
            ],
        ),
        // Cancelled before the assignment was appended.
        surge(
            A,
            2,
            vec![
                approved(),
                SurgeCancelled {
                    by: "cm".into(),
                    reason: "not needed".into(),
                }
                .into(),
            ],
        ),
        // Filled by others before it was appended (officers are never taken off a surge).
        surge(A, 1, vec![approved(), assigned("P-9")]),
    ];
    for holder in stale {
        let status = holder.status;
        officer(Some(holder))
            .given(vec![reserved(A, C1)])
            .when(&duty(), "reserve", reserve(B, C2))
            .then(vec![reserved(B, C2)]);
        assert!(matches!(
            status,
            Status::Completed | Status::Cancelled | Status::Approved
        ));
    }
    // A hold on a surge that does not exist holds nothing.
    officer(None)
        .given(vec![reserved(A, C1)])
        .when(&duty(), "reserve", reserve(B, C2))
        .then(vec![reserved(B, C2)]);
}

/// A completion, a day after the deployment.
fn completed() -> DomainEvent {
    SurgeCompleted {
        at: at() + time::Duration::days(1),
    }
    .into()
}

#[test]
fn a_release_ends_only_the_hold_it_names() {
    let given = officer(None)
        .given(vec![reserved(A, C1)])
        .when(&duty(), "release", json!({"surge": A}))
        .then(vec![released(A, C1)]);
    assert_eq!(given.state().unwrap().hold, None);
    assert_eq!(given.state().unwrap().version, 2);
    // Free again: the next reservation needs no surge read.
    given
        .when(&duty(), "reserve", reserve(B, C2))
        .then(vec![reserved(B, C2)]);
    // Another surge's release changes nothing.
    officer(None)
        .given(vec![reserved(A, C1)])
        .when(&duty(), "release", json!({"surge": B}))
        .then(vec![]);
    officer(None)
        .given(vec![])
        .when(&duty(), "release", json!({"surge": A}))
        .then(vec![]);
    // A late release of an older hold leaves the newer one standing.
    let late = officer(None).given(vec![reserved(A, C1), reserved(B, C2), released(A, C1)]);
    let hold = late.state().unwrap().hold.unwrap();
    assert_eq!((hold.surge, hold.command), (B, C2));
}

#[test]
fn bad_steps_are_refused() {
    officer(None)
        .given(vec![])
        .when(&duty(), "steal", json!({}))
        .refused(RefusalCode::Invalid);
    officer(None)
        .given(vec![])
        .when(&duty(), "release", json!({"surge": A, "extra": 1}))
        .refused(RefusalCode::Invalid);
    let mut blank = reserve(A, C1);
    blank["officer"] = json!(" ");
    officer(None)
        .given(vec![])
        .when(&duty(), "reserve", blank)
        .refused(RefusalCode::Invalid);
}

#[test]
fn ids_are_one_per_try_and_one_release_per_reservation() {
    assert_eq!(reservation_id(C1, 3), reservation_id(C1, 3));
    assert_ne!(reservation_id(C1, 3), reservation_id(C1, 4));
    assert_ne!(reservation_id(C1, 3), reservation_id(C2, 3));
    assert_ne!(reservation_id(C1, 0), C1, "not the assignment's id");
    assert_eq!(release_id(C1), release_id(C1));
    assert_ne!(release_id(C1), release_id(C2));
}

#[test]
fn can_take_says_why_not() {
    let open = surge(A, 2, vec![approved()]);
    assert!(can_take(&open, "P-1").is_ok());
    let requested = surge(A, 2, vec![]);
    assert!(
        can_take(&requested, "P-1")
            .unwrap_err()
            .message
            .contains("requested")
    );
    let full = surge(A, 1, vec![approved(), assigned("P-9")]);
    assert!(can_take(&full, "P-1").unwrap_err().message.contains("full"));
    let has = surge(A, 2, vec![approved(), assigned("P-1")]);
    assert!(
        can_take(&has, "P-1")
            .unwrap_err()
            .message
            .contains("already assigned")
    );
}
