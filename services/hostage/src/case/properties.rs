//! Whatever crisis managers send, in whatever order, the recorded case never makes a
//! person both released and deceased, never changes after closure, and closes only with
//! an account that agrees with the record.
use super::*;
use events::Decoded;
use events::command::Role;
use proptest::prelude::*;
use serde_json::json;
use testkit::aggregate::Stream;

const ID: Uuid = Uuid::from_u128(0xCA5E);
const PERSONS: [&str; 4] = ["P-1", "P-2", "P-3", "P-4"];

/// One command: which, about whom (an index into [`PERSONS`], 3 is never in the case),
/// and for `close`, what each person is accounted as (0 released, 1 deceased, 2 other).
/// Kind 6 is a close that accounts for everyone as recorded, so closes are often accepted.
fn arb_command() -> impl Strategy<Value = (u8, usize, Vec<u8>)> {
    (0u8..7, 0usize..4, proptest::collection::vec(0u8..3, 0..=4))
}

fn body(kind: u8, who: usize, accounting: &[u8], case: &Case) -> (&'static str, Value) {
    let person = PERSONS[who];
    if kind == 6 {
        let recorded: Vec<u8> = case
            .persons
            .iter()
            .map(|p| match p.status {
                PersonStatus::Released => 0,
                PersonStatus::Deceased => 1,
                PersonStatus::Held | PersonStatus::Other => 2,
            })
            .collect();
        return body(5, who, &recorded, case);
    }
    let at = "2026-11-02T10:00:00Z";
    match kind {
        0 => (
            "proof_of_life",
            json!({"person": person, "at": at, "note": "call"}),
        ),
        1 => ("negotiation", json!({"at": at, "summary": "call"})),
        2 => ("release", json!({"person": person, "at": at})),
        3 => ("deceased", json!({"person": person, "at": at})),
        4 => (
            "open",
            json!({"incident_id": Uuid::nil(), "country": "ML", "persons": ["P-1"]}),
        ),
        _ => {
            let accounting: Vec<Value> = accounting
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    0 => json!({"person": PERSONS[i], "status": "released"}),
                    1 => json!({"person": PERSONS[i], "status": "deceased"}),
                    _ => json!({"person": PERSONS[i], "status": "other", "note": "n"}),
                })
                .collect();
            (
                "close",
                json!({"outcome": "ended", "accounting": accounting}),
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_record_stays_consistent(commands in proptest::collection::vec(arb_command(), 0..40)) {
        let crisis = Actor { user: "c".into(), role: Role::CrisisManager, scope: None, agency: None };
        let open = json!({"incident_id": Uuid::nil(), "country": "ML",
                          "persons": ["P-1", "P-2", "P-3"]});
        let stream = Stream::<Case>::new(ID, |_| Facts { incident_reported: true });
        let mut given = stream.given(vec![]).when(&crisis, "open", open).accepted();
        for (kind, who, accounting) in commands {
            let before = given.state().unwrap();
            let (name, body) = body(kind, who, &accounting, &before);
            let outcome = given.when(&crisis, name, body).result();
            if kind == 6 && before.is_open() {
                prop_assert!(outcome.is_ok(), "an account as recorded is refused: {:?}", outcome);
            }
            let Ok(new) = outcome else {
                continue;
            };
            prop_assert!(before.is_open(), "{name} accepted on a closed case");
            prop_assert_eq!(new.len(), 1);
            if let DomainEvent::HostageCaseClosed(c) = &new[0] {
                prop_assert_eq!(c.accounting.len(), 3);
                for a in &c.accounting {
                    let p = before.person(&a.person).unwrap();
                    let expected = match p.status {
                        PersonStatus::Held | PersonStatus::Other => HostageOutcome::Other,
                        PersonStatus::Released => HostageOutcome::Released,
                        PersonStatus::Deceased => HostageOutcome::Deceased,
                    };
                    prop_assert_eq!(a.status, expected);
                }
            }
            given = given.and(new);
        }
        let log = given.history();
        // Each person is released or dies at most once in the whole log, never both.
        for person in PERSONS {
            let settled = log
                .iter()
                .filter(|e| match DomainEvent::decode(e) {
                    Decoded::Known(DomainEvent::HostageReleased(r)) => r.person == person,
                    Decoded::Known(DomainEvent::HostageDeceased(d)) => d.person == person,
                    _ => false,
                })
                .count();
            prop_assert!(settled <= 1, "{person} settled {settled} times");
        }
        let case = Case::fold(&log).unwrap();
        let s = summary(&case, time::OffsetDateTime::UNIX_EPOCH);
        prop_assert_eq!(s.persons_total, 3);
        let settled = log
            .iter()
            .filter(|e| matches!(e.event_type.as_str(), "HostageReleased" | "HostageDeceased"))
            .count();
        let held = if case.is_open() { 3 - settled } else { 0 };
        prop_assert_eq!(s.persons_held, held);
    }
}
