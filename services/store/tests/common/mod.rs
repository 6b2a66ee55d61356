//! Shared by the store's log tests: a realistic event and a log filled with many.

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use serde_json::json;
use uuid::Uuid;
use vigil_store::Log;
use vigil_store::log::Pending;

pub fn stream(n: usize) -> StreamName {
    StreamName::parse(&format!("incident-{}", Uuid::from_u128(n as u128 + 1))).unwrap()
}

pub fn event(n: u64) -> NewEvent {
    NewEvent {
        id: Uuid::new_v4(),
        event_type: "IncidentUpdated".into(),
        v: 1,
        data: json!({ "n": n, "text": "x".repeat(300) }),
        meta: Meta {
            actor: Some("test".into()),
            ..Meta::default()
        },
    }
}

/// Appends `count` events spread over 7 streams, in groups of up to 16 appends.
pub fn fill(log: &Log, count: u64) {
    let mut n = 0;
    while n < count {
        let mut group: Vec<Pending> = (0..16.min(count - n))
            .map(|i| Pending {
                request: AppendRequest {
                    stream: stream(((n + i) % 7) as usize),
                    expected_version: ExpectedVersion::Any,
                    events: vec![event(n + i)],
                }
                .into(),
                outcome: None,
            })
            .collect();
        let committed = log.commit_group(&mut group).unwrap();
        assert_eq!(committed.events.len(), group.len());
        for p in &group {
            assert!(matches!(p.outcome, Some(Ok(_))), "{:?}", p.outcome);
        }
        n += group.len() as u64;
    }
}
