//! A long, mixed, deterministic log: the replay micro-check (invariants and the delta contract
//! over thousands of events, not a timing test), and a rate report to run by hand:
//! `cargo test -p vigil-boards --release -- --ignored --nocapture replay_rate` (set
//! `REPLAY_EVENTS` for another size than a million).

use events::domain::DomainEvent;
use events::domain::broadcast::*;
use events::domain::clearance::*;
use events::domain::hostage::*;
use events::domain::incident::*;
use events::domain::level::*;
use events::domain::relocation::*;
use events::domain::surge::*;
use events::validate::{COUNTRY_CODES, Country, SecurityLevel, Severity};
use time::macros::{date, datetime};

use super::{Log, page_after_deltas};
use crate::View;

/// A small deterministic generator (a 64-bit LCG): no dependency, same log every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A log shaped like a busy centre: mostly incident reports, verifications, updates and
/// closures over 40 countries, with levels, broadcasts and their acknowledgements, roll calls,
/// surges, hostage cases, clearances, and a few unknown types.
pub(crate) fn synthetic_log(n: usize) -> Log {
    let mut r = Lcg(0x5eed);
    let mut log = Log::default();
    let (mut incidents, mut broadcasts, mut orders, mut surges, mut cases) = (0u128, 0, 0, 0, 0);
    let country = |r: &mut Lcg| {
        let i = usize::try_from(r.below(40)).unwrap_or(0) * 6;
        Country::parse(COUNTRY_CODES[i % COUNTRY_CODES.len()]).unwrap()
    };
    let recent = |r: &mut Lcg, count: u128, base: u128| {
        base + count.saturating_sub(1 + u128::from(r.below(50)))
    };
    while log.events.len() < n {
        let roll = r.below(100);
        let (id, event): (u128, DomainEvent) = match roll {
            0..30 => {
                incidents += 1;
                let located = r.below(10) < 7;
                (
                    1_000_000 + incidents,
                    IncidentReported {
                        country: country(&mut r),
                        category: IncidentCategory::ArmedConflict,
                        severity: Severity::new(1 + r.below(5) as i64).unwrap(),
                        title: format!("Exchange of fire near compound {}", r.below(1000)),
                        occurred_at: datetime!(2026-11-27 01:30 UTC),
                        location: located.then_some(Location {
                            lat: 2.04,
                            lon: 45.3,
                            accuracy_m: Some(50.0),
                        }),
                        duty_station: Some("SOM-MGQ".into()),
                        description: (r.below(2) == 0)
                            .then(|| "Gunfire heard for twenty minutes".to_owned()),
                        casualties: (r.below(3) == 0).then_some(Casualties {
                            killed: 0,
                            injured: 2,
                        }),
                        reporter: "fso.ali".into(),
                    }
                    .into(),
                )
            }
            30..40 => (
                recent(&mut r, incidents, 1_000_001),
                IncidentUpdated {
                    severity: Some(Severity::new(1 + r.below(5) as i64).unwrap()),
                    note: Some("Confirmed by a second source".into()),
                    ..Default::default()
                }
                .into(),
            ),
            40..55 => (
                recent(&mut r, incidents, 1_000_001),
                IncidentVerified {
                    by: "duty.officer".into(),
                    note: None,
                }
                .into(),
            ),
            55..70 => (
                // Closes an older incident (some twice, some never reported: both ignored).
                1_000_001 + incidents.saturating_sub(100 + u128::from(r.below(200))),
                IncidentClosed {
                    reason: "Resolved".into(),
                }
                .into(),
            ),
            70..75 => (
                2_000_000 + u128::from(r.below(100)),
                AreaSecurityLevelSet {
                    area: format!("area-{}", r.below(100)),
                    country: country(&mut r),
                    level: SecurityLevel::new(1 + r.below(6) as i64).unwrap(),
                    reason: "Periodic review".into(),
                    previous_level: None,
                }
                .into(),
            ),
            75..84 => (
                7_000_000 + u128::from(r.below(1000)),
                ClearanceRequested {
                    traveller: "t.traveller".into(),
                    itinerary: vec![Leg {
                        country: country(&mut r),
                        area: None,
                        from: date!(2026 - 12 - 01),
                        to: date!(2026 - 12 - 03),
                    }],
                    purpose: None,
                }
                .into(),
            ),
            84..85 => {
                broadcasts += 1;
                (
                    6_000_000 + broadcasts,
                    BroadcastIssued {
                        title: "Curfew from 18:00".into(),
                        body: "Stay indoors.".into(),
                        severity: BroadcastSeverity::High,
                        audience: Audience::AllAgencies,
                        requires_ack: true,
                        ack_deadline: None,
                        exercise: false,
                        updates: None,
                        cancels: None,
                        recipients: vec![],
                        rule: None,
                    }
                    .into(),
                )
            }
            85..89 => {
                let agency = format!("agency-{}", r.below(40));
                let id = recent(&mut r, broadcasts, 6_000_001);
                let outcome = r.below(4);
                if outcome == 0 {
                    (
                        id,
                        BroadcastDelivered {
                            agency,
                            channel: Channel::Nats,
                            attempt: 1,
                            round: 1,
                        }
                        .into(),
                    )
                } else if outcome == 1 {
                    (
                        id,
                        BroadcastDeliveryFailed {
                            agency,
                            channel: Channel::Webhook,
                            round: 1,
                            attempt: 3,
                            error: "HTTP 503".into(),
                            gave_up: true,
                        }
                        .into(),
                    )
                } else {
                    (
                        id,
                        BroadcastAcknowledged {
                            agency,
                            by: "afp".into(),
                        }
                        .into(),
                    )
                }
            }
            89..90 => {
                orders += 1;
                (
                    5_000_000 + orders,
                    RelocationOrdered {
                        kind: OrderKind::Relocation,
                        country: country(&mut r),
                        area: None,
                        duty_station: None,
                        scope: Scope::AllPersonnel,
                        destination: "Nairobi".into(),
                        deadline: datetime!(2026-11-28 18:00 UTC),
                    }
                    .into(),
                )
            }
            90..95 => {
                let person = format!("p-{}", r.below(200));
                let id = recent(&mut r, orders.min(3), 5_000_001 + orders.saturating_sub(3));
                if r.below(2) == 0 {
                    (
                        id,
                        RollCallEntryAdded {
                            person,
                            agency: None,
                            duty_station: None,
                            dependants: 0,
                        }
                        .into(),
                    )
                } else {
                    (
                        id,
                        PersonMarked {
                            person,
                            status: PersonStatus::Safe,
                            by: "duty.officer".into(),
                            note: None,
                        }
                        .into(),
                    )
                }
            }
            95..97 => {
                surges += 1;
                let id = 4_000_000 + surges / 3;
                let event: DomainEvent = match surges % 3 {
                    0 => SurgeRequested {
                        duty_station: "HTI-PAP".into(),
                        country: country(&mut r),
                        reason: "Gang violence".into(),
                        officers_needed: 4,
                        assets: vec![],
                    }
                    .into(),
                    1 => SurgeOfficerAssigned {
                        officer: "o.1".into(),
                        from_duty_station: "KEN-NBO".into(),
                    }
                    .into(),
                    _ => SurgeDeployed {
                        at: datetime!(2026-11-27 03:00 UTC),
                    }
                    .into(),
                };
                (id, event)
            }
            97..98 => {
                cases += 1;
                let id = 3_000_000 + cases / 2;
                let event: DomainEvent = if cases % 2 == 0 {
                    HostageCaseOpened {
                        incident_id: uuid::Uuid::from_u128(1),
                        country: country(&mut r),
                        persons: vec!["p-1".into(), "p-2".into()],
                        captors: None,
                        location: None,
                    }
                    .into()
                } else {
                    HostageReleased {
                        person: "p-1".into(),
                        at: datetime!(2026-11-27 03:00 UTC),
                    }
                    .into()
                };
                (id, event)
            }
            _ => {
                log.push_raw(
                    "incident",
                    1_000_001,
                    "IncidentTeleported",
                    1,
                    serde_json::json!({"to": "elsewhere"}),
                );
                continue;
            }
        };
        log.push(id, event);
    }
    log
}

#[test]
fn a_long_mixed_log_replays_consistently() {
    let log = synthetic_log(20_000);
    let board = log.board(); // checks the invariants
    let snap = board.snapshot(View::Duty);
    assert_eq!(snap["position"], 20_000);
    assert!(
        snap["counters"]["open_incidents"].as_u64() > Some(100),
        "{}",
        snap["counters"]
    );
    for view in View::ALL {
        assert_eq!(
            page_after_deltas(&log.events, 19_000, view),
            board.snapshot(view),
            "{view:?}"
        );
    }
}

/// Prints the replay rate; not a pass/fail test of speed (run it by hand, in release).
#[test]
#[ignore = "a measurement to run by hand in release, not a test"]
fn replay_rate_report() {
    let n = std::env::var("REPLAY_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let log = synthetic_log(n);
    // What the store keeps and sends: the fold reads these bytes, as `vigil replay` does.
    let stored: Vec<Vec<u8>> = log
        .events
        .iter()
        .map(|e| serde_json::to_vec(e).unwrap_or_default())
        .collect();
    let read = |bytes: &Vec<u8>| events::TypedRecorded::decode(bytes).ok();
    // Best of three: the first run also pays for the pages the board grows into.
    let mut best = std::time::Duration::MAX;
    let mut board = crate::Situation::new();
    for _ in 0..3 {
        drop(board);
        let started = std::time::Instant::now();
        board = crate::fold(stored.iter().filter_map(read));
        best = best.min(started.elapsed());
    }
    let rate = n as f64 / best.as_secs_f64();
    println!(
        "decoded and folded {n} events in {best:?} (best of 3): {rate:.0} events/s; open incidents {}",
        board.snapshot(View::WallScreen)["counters"]["open_incidents"]
    );
    let started = std::time::Instant::now();
    let known = stored
        .iter()
        .filter_map(read)
        .filter(|e| matches!(e.event, events::Decoded::Known(_)))
        .count();
    let took = started.elapsed();
    println!(
        "decoding alone ({known} known): {took:?}, {:.0} events/s",
        n as f64 / took.as_secs_f64()
    );
    let started = std::time::Instant::now();
    let _ = board.snapshot(View::Duty);
    println!("one duty snapshot took {:?}", started.elapsed());
}
