//! The register's checkpoint: for random histories (personnel moving between stations,
//! clearances approved, arrivals and departures, after an order on an area, with the
//! presence changes it decided stored at random moments) and any k, the register after
//! event k written as a checkpoint (framed, read back) and fed the events after k equals the
//! fold of the whole log: the same orders, roll calls, lists and pending presence changes.

use events::Meta;
use events::command::Role;
use events::domain::clearance::{
    ArrivalRecorded, ClearanceApproved, ClearanceRequested, DepartureRecorded, Leg,
};
use events::domain::person::PersonRegistered;
use events::domain::relocation::{OrderKind, Scope};
use events::domain::station::DutyStationRegistered;
use events::validate::Country;
use proptest::prelude::*;
use runtime::Fold;
use runtime::host::Listing;
use testkit::actor;
use time::macros::{date, datetime};

use super::*;

fn so() -> Country {
    Country::parse("SO").unwrap_or_else(|e| panic!("{e}"))
}

/// A log being written, and the register that decides presence changes while it is.
#[derive(Default)]
struct Writing {
    register: Register,
    log: Vec<RecordedEvent>,
}

impl Writing {
    fn append(&mut self, stream: StreamName, event: DomainEvent, id: Uuid) {
        let n = self.log.len() as u64 + 1;
        let recorded = RecordedEvent::record(
            event.to_new_event(id, Meta::default()),
            stream,
            n,
            n,
            datetime!(2026-11-27 06:00 UTC),
        );
        self.register.apply(&recorded);
        self.log.push(recorded);
    }

    fn feed(&mut self, stream: StreamName, event: impl Into<DomainEvent>) {
        let id = Uuid::from_u128(10_000 + self.log.len() as u128);
        self.append(stream, event.into(), id);
    }

    /// Stores the presence changes decided so far, as the service's background task does.
    fn store_pending(&mut self) {
        let changes: Vec<Transition> = self
            .register
            .tracker
            .pending()
            .into_values()
            .flatten()
            .collect();
        for t in changes {
            self.append(relocation::stream_for(t.order), t.event, t.id);
        }
    }
}

fn log_of(moves: &[(usize, usize, usize)], area: Option<&str>) -> Vec<RecordedEvent> {
    let areas = ["BAN", "BAY"];
    let stations = [("S0", "BAN"), ("S1", "BAN"), ("S2", "BAY"), ("S3", "BAY")];
    let person = |id: &str, station: &str| PersonRegistered {
        person: id.into(),
        name: format!("Name of {id}"),
        agency: "unicef".into(),
        nationality: Country::parse("KE").unwrap_or_else(|e| panic!("{e}")),
        duty_station: station.into(),
        dependants: 0,
        security_officer: false,
        essential: false,
    };
    let mut w = Writing::default();
    for (id, area) in stations {
        w.feed(
            events::domain::station::stream_for(id),
            DutyStationRegistered {
                station: id.into(),
                country: so(),
                area: area.into(),
                name: id.into(),
                lat: 2.0,
                lon: 45.0,
            },
        );
    }
    for i in 0..6usize {
        let id = format!("P{i}");
        w.feed(
            events::domain::person::stream_for(&id),
            person(&id, stations[i % 4].0),
        );
    }
    let ordered = RelocationOrdered {
        kind: OrderKind::Evacuation,
        country: so(),
        area: area.map(Into::into),
        duty_station: None,
        scope: Scope::AllPersonnel,
        destination: "Nairobi".into(),
        deadline: datetime!(2026-11-28 18:00 UTC),
    };
    let roll = w
        .register
        .reference
        .roll_call(&ordered, date!(2026 - 11 - 27));
    let order = relocation::stream_for(Uuid::from_u128(0x5eed));
    for e in order::decide_order(None, &actor(Role::DutyOfficer, None), ordered, roll)
        .unwrap_or_else(|e| panic!("{e:?}"))
    {
        w.feed(order.clone(), e);
    }
    for (kind, who, target) in moves {
        let id = format!("P{who}");
        let clearance = events::domain::clearance::stream_for(Uuid::from_u128(100 + *who as u128));
        let at = datetime!(2026-11-27 05:00 UTC);
        match kind {
            0 => w.feed(
                events::domain::person::stream_for(&id),
                person(&id, stations[*target].0),
            ),
            1 => {
                w.feed(
                    clearance.clone(),
                    ClearanceRequested {
                        traveller: id.clone(),
                        itinerary: vec![Leg {
                            country: so(),
                            area: Some(areas[target % 2].to_owned()),
                            from: date!(2026 - 11 - 20),
                            to: date!(2026 - 11 - 30),
                        }],
                        purpose: None,
                    },
                );
                w.feed(clearance, ClearanceApproved { by: "d".into() });
            }
            2 => w.feed(clearance, DepartureRecorded { country: so(), at }),
            _ => w.feed(clearance, ArrivalRecorded { country: so(), at }),
        }
        if *target == 0 {
            w.store_pending();
        }
    }
    w.log
}

fn fold(events: &[RecordedEvent]) -> Register {
    let mut register = Register::default();
    for e in events {
        register.apply(e);
    }
    register
}

/// The register's whole state as JSON (its maps compared as maps, whatever their order).
fn state(r: &Register) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or_else(|e| panic!("{e}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_fold(
        moves in proptest::collection::vec((0usize..4, 0usize..6, 0usize..4), 0..24),
        asked_area in proptest::option::of(0usize..2),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&moves, asked_area.map(|a| ["BAN", "BAY"][a]));
        let k = k.index(log.len() + 1);
        let codec = <Register as Fold>::checkpoint().unwrap_or_else(|| panic!("opted in"));
        let at_k = fold(&log[..k]);
        let bytes = runtime::checkpoint::frame(codec.version, k as u64, Uuid::nil(),
            &serde_json::to_vec(&at_k).unwrap_or_else(|e| panic!("{e}")));
        let (position, _, saved) = runtime::checkpoint::unframe(&bytes, REGISTER_VERSION)
            .unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(position, k as u64);
        let mut restored: Register = serde_json::from_slice(saved).unwrap_or_else(|e| panic!("{e}"));
        prop_assert_eq!(state(&restored), state(&at_k));
        for e in &log[k..] {
            restored.apply(e);
        }
        let whole = fold(&log);
        prop_assert_eq!(state(&restored), state(&whole));
        prop_assert_eq!(restored.tracker.pending(), whole.tracker.pending());
        let duty = actor(Role::DutyOfficer, None);
        let now = datetime!(2026-11-27 12:00 UTC);
        let list = |r: &Register| r.list(&duty, &ListQuery::default(), now)
            .map(|p| serde_json::to_value(p.items).unwrap_or_else(|e| panic!("{e}")))
            .unwrap_or_else(|e| panic!("{e:?}"));
        prop_assert_eq!(list(&restored), list(&whole));
    }
}
