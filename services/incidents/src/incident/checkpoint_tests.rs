//! The register's checkpoint: for random incident histories and any k, the register after
//! event k written as a checkpoint (serialised, read back) and fed the events after k equals
//! the fold of the whole log, and lists the same.

use events::Meta;
use events::command::Role;
use events::domain::incident::{
    Casualties, Escalation, EscalationKind, IncidentCategory, IncidentClosed, IncidentEscalated,
    IncidentReported, IncidentUpdated, IncidentVerified,
};
use proptest::prelude::*;
use runtime::Fold;
use testkit::actor;

use super::*;

/// One generated event: on incident stream `stream` (0..4), or something else entirely.
#[derive(Debug, Clone)]
enum Step {
    Report(u128, &'static str, u8),
    Update(u128, u8, u32),
    Verify(u128),
    Escalate(u128, u128),
    Close(u128),
    /// An event of another category: only moves the position.
    Other,
}

fn step() -> impl Strategy<Value = Step> {
    let stream = 0u128..4;
    prop_oneof![
        3 => (stream.clone(), proptest::sample::select(vec!["SO", "ML", "HT"]), 1u8..=5)
            .prop_map(|(s, c, v)| Step::Report(s, c, v)),
        2 => (stream.clone(), 1u8..=5, 0u32..5).prop_map(|(s, v, k)| Step::Update(s, v, k)),
        1 => stream.clone().prop_map(Step::Verify),
        1 => (stream.clone(), 0u128..3).prop_map(|(s, t)| Step::Escalate(s, t)),
        1 => stream.prop_map(Step::Close),
        1 => Just(Step::Other),
    ]
}

fn event_of(step: &Step) -> (StreamName, DomainEvent) {
    let at = time::macros::datetime!(2026-11-27 03:00 UTC);
    let on = |s: u128| events::domain::incident::stream_for(Uuid::from_u128(s));
    match step {
        Step::Report(s, country, severity) => (
            on(*s),
            IncidentReported {
                country: Country::parse(country).unwrap_or_else(|e| panic!("{e}")),
                category: IncidentCategory::ArmedConflict,
                severity: Severity::new(i64::from(*severity)).unwrap_or_else(|e| panic!("{e}")),
                title: format!("Report on {s}"),
                occurred_at: at,
                location: None,
                duty_station: None,
                description: Some("described".into()),
                casualties: None,
                reporter: "fso.reporter".into(),
            }
            .into(),
        ),
        Step::Update(s, severity, killed) => (
            on(*s),
            IncidentUpdated {
                severity: Severity::new(i64::from(*severity)).ok(),
                casualties: Some(Casualties {
                    killed: *killed,
                    injured: 1,
                }),
                note: Some("more".into()),
                ..Default::default()
            }
            .into(),
        ),
        Step::Verify(s) => (
            on(*s),
            IncidentVerified {
                by: "duty.officer".into(),
                note: None,
            }
            .into(),
        ),
        Step::Escalate(s, to) => (
            on(*s),
            IncidentEscalated {
                to: Escalation {
                    kind: EscalationKind::HostageCase,
                    id: Uuid::from_u128(100 + to),
                },
                reason: "taken".into(),
            }
            .into(),
        ),
        Step::Close(s) => (
            on(*s),
            IncidentClosed {
                reason: "over".into(),
            }
            .into(),
        ),
        Step::Other => (
            events::domain::incident::stream_for(Uuid::from_u128(999)),
            IncidentClosed {
                reason: "a stream nobody opened".into(),
            }
            .into(),
        ),
    }
}

fn log_of(steps: &[Step]) -> Vec<RecordedEvent> {
    let mut versions = HashMap::new();
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let (stream, event) = event_of(step);
            let version = versions.entry(stream.clone()).or_insert(0u64);
            *version += 1;
            let position = i as u64 + 1;
            RecordedEvent::record(
                event.to_new_event(Uuid::from_u128(10_000 + i as u128), Meta::default()),
                stream,
                position,
                *version,
                time::macros::datetime!(2026-11-27 03:00 UTC)
                    + time::Duration::minutes(position as i64),
            )
        })
        .collect()
}

fn fold(events: &[RecordedEvent]) -> Register {
    let mut register = Register::default();
    for e in events {
        register.apply(e);
    }
    register
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_fold(
        steps in proptest::collection::vec(step(), 0..80),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.len() + 1);
        let codec = <Register as Fold>::checkpoint().unwrap_or_else(|| panic!("opted in"));
        let at_k = fold(&log[..k]);
        let bytes = runtime::checkpoint::frame(codec.version, at_k.position(), Uuid::nil(),
            &serde_json::to_vec(&at_k).unwrap_or_else(|e| panic!("{e}")));
        let (position, _, state) = runtime::checkpoint::unframe(&bytes, REGISTER_VERSION)
            .unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(position, at_k.position());
        let mut restored: Register = serde_json::from_slice(state).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(&restored, &at_k);
        for e in &log[k..] {
            restored.apply(e);
        }
        let whole = fold(&log);
        prop_assert_eq!(&restored, &whole);
        let duty = actor(Role::DutyOfficer, None);
        let list = |r: &Register| r.list(&duty, &ListQuery::default())
            .map(|p| p.items.into_iter().cloned().collect::<Vec<_>>())
            .unwrap_or_else(|e| panic!("{e:?}"));
        prop_assert_eq!(list(&restored), list(&whole));
    }
}
