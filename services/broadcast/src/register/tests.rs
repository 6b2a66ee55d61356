//! The register's checkpoint: for random histories (agencies registered, areas raised and
//! lowered so the level rule fires and damps, incidents with UN casualties, the firings and
//! suppressions stored at random moments, acknowledgements and deliveries on the broadcasts)
//! and any k, the register after event k written as a checkpoint (framed, read back) and fed
//! the events after k is the fold of the whole log: the same broadcasts, firings not yet
//! stored, damping and suppressions. A checkpoint folded under another configuration is
//! refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use events::Meta;
use events::domain::broadcast::{
    BroadcastAcknowledged, BroadcastDelivered, BroadcastDeliveryAttempted,
    BroadcastTriggerSuppressed, Channel,
};
use events::domain::level::AreaSecurityLevelSet;
use events::validate::SecurityLevel;
use proptest::prelude::*;
use runtime::Fold;
use time::macros::datetime;

use super::*;

const AGENCIES: [&str; 3] = ["unicef", "wfp", "who"];
const AREAS: [&str; 2] = ["SOM-BAN", "SOM-BAY"];

fn config() -> Arc<Config> {
    Arc::new(Config::parse(rules::DEFAULT_CONFIG).unwrap())
}

/// One generated step of a history.
#[derive(Debug, Clone)]
enum Step {
    /// Agency `i` registered in SO (or KE).
    Agency(usize, bool),
    /// Area `i` set to `level` from `previous`, `minutes` after the step before.
    Level(usize, u8, u8, i64),
    /// An incident with UN casualties.
    Casualties,
    /// The service stores the firings and suppressions decided so far.
    Store,
    /// Agency `i` acknowledges broadcast `j` (of those in the log).
    Ack(usize, usize),
    /// Broadcast `j` delivered to agency `i` over NATS.
    Delivered(usize, usize),
    /// An event no rule looks at.
    Other,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (0usize..3, any::<bool>()).prop_map(|(i, so)| Step::Agency(i, so)),
        4 => (0usize..2, 3u8..7, 1u8..7, 0i64..40).prop_map(|(a, l, p, m)| Step::Level(a, l, p, m)),
        1 => Just(Step::Casualties),
        2 => Just(Step::Store),
        1 => (0usize..3, 0usize..4).prop_map(|(i, j)| Step::Ack(i, j)),
        1 => (0usize..3, 0usize..4).prop_map(|(i, j)| Step::Delivered(i, j)),
        1 => Just(Step::Other),
    ]
}

/// A log being written, and the register that decides firings while it is.
struct Writing {
    register: Register,
    log: Vec<RecordedEvent>,
    versions: HashMap<events::StreamName, u64>,
    at: OffsetDateTime,
}

impl Writing {
    fn new() -> Self {
        Writing {
            register: Register::new(config()),
            log: Vec::new(),
            versions: HashMap::new(),
            at: datetime!(2026-11-27 03:00 UTC),
        }
    }

    fn append(&mut self, stream: events::StreamName, event: DomainEvent, id: Uuid) {
        let n = self.log.len() as u64 + 1;
        let version = self.versions.entry(stream.clone()).or_default();
        *version += 1;
        let recorded = RecordedEvent::record(
            event.to_new_event(id, Meta::default()),
            stream,
            n,
            *version,
            self.at,
        );
        self.register.apply(&recorded);
        self.log.push(recorded);
    }

    fn feed(&mut self, stream: events::StreamName, event: impl Into<DomainEvent>) {
        let id = Uuid::from_u128(10_000 + self.log.len() as u128);
        self.append(stream, event.into(), id);
    }

    /// Stores what the register decided and has not seen in the log, as the scheduler does.
    fn store(&mut self) {
        let firings: Vec<(Uuid, BroadcastIssued)> = self
            .register
            .pending
            .iter()
            .map(|(id, p)| (*id, p.issued.clone()))
            .collect();
        for (id, issued) in firings {
            self.feed(bevents::stream_for(id), issued);
        }
        let suppressions: Vec<(Uuid, Suppression)> = self
            .register
            .suppressions
            .iter()
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        for (id, s) in suppressions {
            if self.register.broadcasts.contains_key(&s.broadcast) {
                self.append(bevents::stream_for(s.broadcast), s.event.into(), id);
            }
        }
    }

    fn broadcast(&self, j: usize) -> Option<Uuid> {
        let order = &self.register.order;
        (!order.is_empty()).then(|| order[j % order.len()])
    }
}

fn log_of(steps: &[Step]) -> Vec<RecordedEvent> {
    let mut w = Writing::new();
    for step in steps {
        match step {
            Step::Agency(i, so) => w.feed(
                events::domain::agency::stream_for(AGENCIES[*i]),
                AgencyRegistered {
                    agency: AGENCIES[*i].into(),
                    name: AGENCIES[*i].to_uppercase(),
                    countries: vec![Country::parse(if *so { "SO" } else { "KE" }).unwrap()],
                },
            ),
            Step::Level(a, level, previous, minutes) => {
                w.at += time::Duration::minutes(*minutes);
                w.feed(
                    events::domain::level::stream_for(AREAS[*a]),
                    AreaSecurityLevelSet {
                        area: AREAS[*a].into(),
                        country: Country::parse("SO").unwrap(),
                        level: SecurityLevel::new(i64::from(*level)).unwrap(),
                        reason: "Fighting near the airport".into(),
                        previous_level: Some(SecurityLevel::new(i64::from(*previous)).unwrap()),
                    },
                );
            }
            Step::Casualties => {
                let event: DomainEvent = serde_json::from_value(serde_json::json!({
                    "type": "IncidentReported",
                    "data": {"country": "SO", "category": "armed_conflict", "severity": 4,
                        "title": "Convoy attacked", "occurred_at": "2026-11-27T02:00:00Z",
                        "casualties": {"killed": 1, "injured": 2}, "reporter": "fso.so"}
                }))
                .unwrap();
                let id = Uuid::from_u128(20_000 + w.log.len() as u128);
                w.append(events::domain::incident::stream_for(id), event, id);
            }
            Step::Store => w.store(),
            Step::Ack(i, j) => {
                if let Some(b) = w.broadcast(*j) {
                    w.feed(
                        bevents::stream_for(b),
                        BroadcastAcknowledged {
                            agency: AGENCIES[*i].into(),
                            by: "focal".into(),
                        },
                    );
                }
            }
            Step::Delivered(i, j) => {
                if let Some(b) = w.broadcast(*j) {
                    let (agency, channel) = (AGENCIES[*i].to_owned(), Channel::Nats);
                    w.feed(
                        bevents::stream_for(b),
                        BroadcastDeliveryAttempted {
                            agency: agency.clone(),
                            channel,
                            round: 1,
                            attempt: 1,
                        },
                    );
                    w.feed(
                        bevents::stream_for(b),
                        BroadcastDelivered {
                            agency,
                            channel,
                            attempt: 1,
                            round: 1,
                        },
                    );
                }
            }
            Step::Other => w.feed(
                events::domain::agency::stream_for("unicef"),
                BroadcastTriggerSuppressed {
                    rule: "not-a-broadcast-stream".into(),
                    trigger: Uuid::nil(),
                },
            ),
        }
    }
    w.log
}

fn fold(events: &[RecordedEvent]) -> Register {
    let mut register = Register::new(config());
    for e in events {
        register.apply(e);
    }
    register
}

/// The register's whole saved state as JSON (its maps compared as maps).
fn state(r: &Register) -> serde_json::Value {
    serde_json::to_value(r).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_fold(
        steps in proptest::collection::vec(step(), 0..40),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.len() + 1);
        let codec = <Register as Fold>::checkpoint().expect("opted in");
        let at_k = fold(&log[..k]);
        let bytes = runtime::checkpoint::frame(
            codec.version,
            k as u64,
            Uuid::nil(),
            &serde_json::to_vec(&(codec.copy)(&at_k)).unwrap(),
        );
        let (position, _, saved) = runtime::checkpoint::unframe(&bytes, REGISTER_VERSION).unwrap();
        prop_assert_eq!(position, k as u64);
        let mut restored: Register = serde_json::from_slice(saved).unwrap();
        let initial = Register::new(config());
        prop_assert!(restored.adopt(&initial).is_ok());
        prop_assert!(Arc::ptr_eq(&restored.config, &initial.config));
        prop_assert_eq!(state(&restored), state(&at_k));
        for e in &log[k..] {
            restored.apply(e);
        }
        let whole = fold(&log);
        prop_assert_eq!(state(&restored), state(&whole));
        prop_assert_eq!(&restored.pending, &whole.pending);
        prop_assert_eq!(&restored.suppressions, &whole.suppressions);
        prop_assert_eq!(&restored.damper, &whole.damper);
    }
}

#[test]
fn the_histories_fire_damp_and_store() {
    // The generator reaches what the property is about: firings stored and pending,
    // suppressions, and broadcasts with deliveries and acknowledgements.
    let steps = [
        Step::Agency(0, true),
        Step::Level(0, 5, 3, 0),
        Step::Level(0, 5, 3, 10),
        Step::Casualties,
        Step::Store,
        Step::Ack(0, 0),
        Step::Delivered(0, 0),
        Step::Level(1, 6, 4, 5),
    ];
    let r = fold(&log_of(&steps));
    assert_eq!(
        r.broadcasts.len(),
        2,
        "the level and the casualties firings"
    );
    assert_eq!(
        r.pending.len(),
        1,
        "the second area's firing is not stored yet"
    );
    assert!(r.suppressions.is_empty(), "the damped raise was stored");
    assert!(r.broadcasts.values().any(|b| b.suppressed == 1));
    assert!(r.broadcasts.values().any(|b| !b.acks.is_empty()));
    assert!(r.broadcasts.values().any(|b| !b.deliveries.is_empty()));
}

#[test]
fn a_checkpoint_folded_under_another_configuration_is_refused() {
    let log = log_of(&[Step::Agency(0, true), Step::Level(0, 5, 3, 0)]);
    let saved = serde_json::to_vec(&fold(&log)).unwrap();
    let mut other = (*config()).clone();
    other.damp_minutes += 1;
    let mut restored: Register = serde_json::from_slice(&saved).unwrap();
    let e = restored.adopt(&Register::new(Arc::new(other))).unwrap_err();
    assert!(e.contains("configuration"), "{e}");
    // The same configuration read again is taken.
    assert!(restored.adopt(&Register::new(config())).is_ok());
    assert_eq!(*restored.config, *config());
    // A saved state without its configuration's digest is never taken.
    let mut blank: Register = serde_json::from_slice(&saved).unwrap();
    blank.config_digest.clear();
    assert!(blank.adopt(&Register::new(config())).is_err());
}
