//! The fold reads stored bytes straight into typed events (`events::TypedRecorded`); the
//! services read the same events through a `Value` tree (`DomainEvent::decode`). Both must
//! read every recorded event alike: the same coordinates and actor, the same typed event, and
//! an unknown, unreadable, invalid or future event unknown to both.

use events::domain::DomainEvent;
use events::{Decoded, RecordedEvent, TypedRecorded};
use proptest::prelude::*;
use serde_json::json;

use super::properties::{log_of, step};
use super::replay::synthetic_log;
use super::{Log, typed};

/// Checks that the typed read of `event`'s stored bytes agrees with the tree read.
fn agree(event: &RecordedEvent) -> Result<(), TestCaseError> {
    let bytes = serde_json::to_vec(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let fast = TypedRecorded::decode(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(fast.id, event.id);
    prop_assert_eq!(&fast.stream, &event.stream);
    prop_assert_eq!(fast.position, event.position);
    prop_assert_eq!(fast.version, event.version);
    prop_assert_eq!(fast.recorded_at, event.recorded_at);
    prop_assert_eq!(&fast.actor, &event.meta.actor);
    match (&fast.event, DomainEvent::decode(event)) {
        (Decoded::Known(a), Decoded::Known(b)) => prop_assert_eq!(a, &b),
        // The reasons are worded by serde_json from text or from a tree: they differ in
        // where they point, not in whether the event is read.
        (Decoded::Unknown { .. }, Decoded::Unknown { .. }) => {}
        (a, b) => prop_assert!(false, "{}: typed {:?}, tree {:?}", event.event_type, a, b),
    }
    Ok(())
}

proptest! {
    #[test]
    fn the_typed_read_agrees_with_the_tree_on_generated_logs(
        steps in proptest::collection::vec(step(), 0..200)
    ) {
        for event in &log_of(&steps).events {
            agree(event)?;
        }
    }
}

#[test]
fn the_typed_read_agrees_with_the_tree_on_the_synthetic_log() {
    for event in &synthetic_log(20_000).events {
        if let Err(e) = agree(event) {
            panic!("position {}: {e}", event.position);
        }
    }
}

#[test]
fn old_versions_odd_data_and_escapes_read_alike() {
    let mut log = Log::default();
    let level = json!({"area": "som-ban", "country": "SO", "level": 4, "note": "Shelling \"near\" the port"});
    log.push_raw("level", 1, "AreaSecurityLevelSet", 1, level.clone());
    log.push_raw("level", 1, "AreaSecurityLevelSet", 2, level);
    log.push_raw("level", 2, "AreaSecurityLevelSet", 1, json!({"area": "x"}));
    log.push_raw("level", 2, "AreaSecurityLevelSet", 3, json!({}));
    log.push_raw("incident", 3, "IncidentClosed", 1, json!(["outcome"]));
    log.push_raw("incident", 3, "IncidentClosed", 1, json!(null));
    log.push_raw("incident", 3, "IncidentClosed", 1, json!({"outcome": ""}));
    log.push_raw(
        "incident",
        3,
        "IncidentClosed",
        1,
        json!({"outcome": "Cleared \u{e9}\u{1F600}\n\\"}),
    );
    log.push_raw("incident", 3, "", 1, json!({}));
    let escaped = RecordedEvent {
        meta: events::Meta {
            actor: Some("duty.\"olga\"\u{7}".into()),
            role: Some("duty_officer".into()),
            source: Some("rule:\\1".into()),
            correlation_id: Some(uuid::Uuid::from_u128(9)),
            causation_id: None,
            appended_by: Some("incidents".into()),
        },
        ..log.events[0].clone()
    };
    for event in log.events.iter().chain([&escaped]) {
        if let Err(e) = agree(event) {
            panic!("position {} ({}): {e}", event.position, event.event_type);
        }
    }
    // The v1 level reads as v2 in both, its note become the reason.
    let Decoded::Known(DomainEvent::AreaSecurityLevelSet(set)) = typed(&log.events[0]).event else {
        panic!("the v1 level was not read");
    };
    assert_eq!(set.reason, "Shelling \"near\" the port");
}

#[test]
fn envelopes_the_recorded_event_refuses_are_refused() {
    let mut log = Log::default();
    log.push_raw("incident", 3, "IncidentClosed", 1, json!({"outcome": "x"}));
    let good = serde_json::to_value(&log.events[0]).unwrap_or_default();
    let mut cases = Vec::new();
    for (path, value) in [
        ("extra", json!(1)),
        ("stream", json!("incident")),
        ("position", json!(-1)),
        ("recorded_at", json!("yesterday")),
        ("id", json!("not-a-uuid")),
        ("meta", json!({"actor": "a", "mood": "calm"})),
        ("meta", json!({"actor": 7})),
    ] {
        let mut bad = good.clone();
        bad[path] = value;
        cases.push(bad);
    }
    let mut no_data = good.clone();
    if let Some(fields) = no_data.as_object_mut() {
        fields.remove("data");
    }
    cases.push(no_data);
    for bad in cases {
        let bytes = serde_json::to_vec(&bad).unwrap_or_default();
        assert!(
            serde_json::from_slice::<RecordedEvent>(&bytes).is_err(),
            "the tree read takes {bad}"
        );
        assert!(
            TypedRecorded::decode(&bytes).is_err(),
            "the typed read takes {bad}"
        );
    }
    for junk in [&b""[..], b"{", b"[]", b"null", &[0xff, 0xfe]] {
        assert!(TypedRecorded::decode(junk).is_err());
    }
}
