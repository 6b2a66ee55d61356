//! Given events, when folded, then the snapshot shows …: one group per event family.

use events::domain::broadcast::*;
use events::domain::clearance::*;
use events::domain::hostage::*;
use events::domain::incident::*;
use events::domain::level::*;
use events::domain::relocation::*;
use events::domain::surge::*;
use events::validate::{Country, SecurityLevel, Severity};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::{date, datetime};

use super::{Log, T0, page_after_deltas, typed, uuid};
use crate::{Op, Situation, View};

fn c(code: &str) -> Country {
    Country::parse(code).unwrap()
}

fn at(minutes: i64) -> OffsetDateTime {
    T0 + time::Duration::minutes(minutes)
}

fn at_text(minutes: i64) -> Value {
    crate::timestamp(at(minutes))
}

fn report(country: &str, severity: i64, title: &str, located: bool) -> IncidentReported {
    IncidentReported {
        country: c(country),
        category: IncidentCategory::ArmedConflict,
        severity: Severity::new(severity).unwrap(),
        title: title.into(),
        occurred_at: datetime!(2026-11-27 01:30 +03:00),
        location: located.then_some(Location {
            lat: 2.04,
            lon: 45.3,
            accuracy_m: Some(50.0),
        }),
        duty_station: Some("SOM-MGQ".into()),
        description: Some("Seen by the gate guard Ahmed Farah".into()),
        casualties: Some(Casualties {
            killed: 1,
            injured: 4,
        }),
        reporter: "fso.amina.yusuf".into(),
    }
}

fn level(area: &str, country: &str, n: i64) -> AreaSecurityLevelSet {
    AreaSecurityLevelSet {
        area: area.into(),
        country: c(country),
        level: SecurityLevel::new(n).unwrap(),
        reason: "Sustained attacks on the airport road".into(),
        previous_level: None,
    }
}

/// Asserts that the delta path agrees with the fold from every starting point of the log.
fn deltas_agree(log: &Log) {
    for view in View::ALL {
        let fresh = log.snapshot(view);
        for k in 0..=log.events.len() {
            assert_eq!(
                page_after_deltas(&log.events, k, view),
                fresh,
                "k={k} {view:?}"
            );
        }
    }
}

#[test]
fn an_empty_board_has_every_section() {
    let board = Situation::new();
    assert_eq!(board.position(), 0);
    let snap = board.snapshot(View::WallScreen);
    assert_eq!(
        snap,
        json!({
            "position": 0, "as_of": null,
            "counters": {
                "open_incidents": 0, "unverified_incidents": 0, "casualties_killed": 0,
                "casualties_injured": 0, "countries_level_5_plus": 0, "hostage_cases": 0,
                "persons_held": 0, "active_surges": 0, "active_orders": 0,
                "broadcasts_awaiting_ack": 0, "broadcasts_awaiting_approval": 0,
                "broadcast_deliveries_failed": 0
            },
            "countries": {}, "broadcasts": [], "timeline": []
        })
    );
    // The duty view adds the per-agency detail of the listed broadcasts.
    let mut duty = snap;
    duty["broadcast_agencies"] = json!({});
    assert_eq!(board.snapshot(View::Duty), duty);
}

#[test]
fn a_report_shows_on_the_map_and_in_the_counters() {
    let mut log = Log::default();
    log.push(
        1,
        report("SO", 4, "Exchange of fire near the compound", true),
    );
    let duty = log.snapshot(View::Duty);
    let wall = log.snapshot(View::WallScreen);
    assert_eq!(duty["position"], 1);
    assert_eq!(duty["as_of"], at_text(1));
    assert_eq!(duty["as_of"], "2026-11-27T02:01:00Z");
    let counters = &duty["counters"];
    assert_eq!(counters["open_incidents"], 1);
    assert_eq!(counters["unverified_incidents"], 1);
    assert_eq!(counters["casualties_killed"], 1);
    assert_eq!(counters["casualties_injured"], 4);
    let so = &duty["countries"]["SO"];
    assert_eq!(so["code"], "SO");
    assert_eq!(so["level"], Value::Null);
    assert_eq!(
        so["incidents"],
        json!({"open": 1, "unverified": 1, "by_severity": {"1": 0, "2": 0, "3": 0, "4": 1, "5": 0}})
    );
    assert_eq!(
        so["markers"],
        json!([{
            "id": uuid(1), "lat": 2.04, "lon": 45.3, "severity": 4, "category": "armed_conflict",
            "title": "Exchange of fire near the compound", "verified": false,
            "occurred_at": "2026-11-26T22:30:00Z",
            "reporter": "fso.amina.yusuf", "description": "Seen by the gate guard Ahmed Farah"
        }])
    );
    assert_eq!(
        so["hostage"],
        json!({"cases": 0, "persons_held": 0, "persons_released": 0, "persons_deceased": 0,
               "held_since": [], "by_case": []})
    );
    assert_eq!(so["surges"], json!([]));
    assert_eq!(so["orders"], json!([]));
    // The wall screen has the same marker without reporter and description.
    let marker = &wall["countries"]["SO"]["markers"][0];
    assert_eq!(marker["title"], "Exchange of fire near the compound");
    assert!(marker.get("reporter").is_none() && marker.get("description").is_none());
    let text = wall.to_string();
    assert!(!text.contains("amina") && !text.contains("Ahmed"), "{text}");
    assert_eq!(
        duty["timeline"],
        json!([{
            "position": 1, "at": at_text(1), "country": "SO", "kind": "incident",
            "severity": "high",
            "text": "Incident reported in SO: Exchange of fire near the compound (severity 4, armed conflict)"
        }])
    );
}

#[test]
fn a_report_gives_a_country_counters_and_timeline_delta() {
    let mut board = Situation::new();
    let mut log = Log::default();
    let kinds = |ops: Vec<Op>| -> Vec<String> {
        ops.iter()
            .map(|op| match op {
                Op::Set { path, .. } => format!("set {}", path.join("/")),
                Op::Remove { path } => format!("remove {}", path.join("/")),
                Op::Item {
                    path, at, limit, ..
                } => {
                    format!("item {} {at} {limit:?}", path.join("/"))
                }
                Op::Drop { path, .. } => format!("drop {}", path.join("/")),
                Op::Merge { path, value } => format!(
                    "merge {} {}",
                    path.join("/"),
                    value.as_object().map_or(0, |m| m.len())
                ),
                Op::Timeline { limit, .. } => format!("timeline {limit}"),
            })
            .collect()
    };
    // A country that appears is sent whole (it holds this one incident); the counters that
    // moved, one by one.
    let changes = board.apply(typed(log.push(1, report("SO", 5, "IED", true))));
    assert_eq!(
        kinds(board.delta(&changes, View::WallScreen)),
        ["set countries/SO", "merge counters 4", "timeline 200"]
    );
    // Once it is there, a report sends its counts and the one new marker, never the country.
    let changes = board.apply(typed(log.push(2, report("SO", 3, "Roadblock", true))));
    assert_eq!(
        kinds(board.delta(&changes, View::WallScreen)),
        [
            "set countries/SO/incidents",
            "item countries/SO/markers 0 Some(100)",
            "merge counters 4",
            "timeline 200"
        ]
    );
    // A verification of the older one: its marker in its place.
    let changes = board.apply(typed(log.push(
        1,
        IncidentVerified {
            by: "duty.jean.dupont".into(),
            note: None,
        },
    )));
    assert_eq!(
        kinds(board.delta(&changes, View::Duty)),
        [
            "set countries/SO/incidents",
            "item countries/SO/markers 1 Some(100)",
            "merge counters 1",
            "timeline 200"
        ]
    );
}

#[test]
fn verification_updates_and_closure_follow_an_incident() {
    let mut log = Log::default();
    log.push(1, report("SO", 3, "Roadblock on the airport road", false));
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["countries"]["SO"]["incidents"]["open"], 1);
    assert_eq!(
        snap["countries"]["SO"]["markers"],
        json!([]),
        "no location, no marker"
    );

    log.push(
        1,
        IncidentVerified {
            by: "duty.jean.dupont".into(),
            note: Some("Confirmed by phone".into()),
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["counters"]["unverified_incidents"], 0);
    assert_eq!(snap["countries"]["SO"]["incidents"]["unverified"], 0);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Incident verified in SO: Roadblock on the airport road"
    );
    assert!(!snap.to_string().contains("jean"));

    // A later update gives it a location (a marker), a new severity, and moves it to Kenya.
    log.push(
        1,
        IncidentUpdated {
            country: Some(c("KE")),
            severity: Some(Severity::new(5).unwrap()),
            location: Some(Location {
                lat: -1.28,
                lon: 36.82,
                accuracy_m: None,
            }),
            casualties: Some(Casualties {
                killed: 2,
                injured: 0,
            }),
            note: Some("Wrong country at first".into()),
            ..Default::default()
        },
    );
    let snap = log.snapshot(View::WallScreen);
    assert!(snap["countries"].get("SO").is_none(), "{snap}");
    let ke = &snap["countries"]["KE"];
    assert_eq!(ke["incidents"]["by_severity"]["5"], 1);
    assert_eq!(ke["markers"][0]["lat"], -1.28);
    assert_eq!(ke["markers"][0]["verified"], true);
    assert_eq!(snap["counters"]["casualties_killed"], 2);
    assert_eq!(snap["counters"]["casualties_injured"], 0);
    assert_eq!(
        snap["timeline"].as_array().map(Vec::len),
        Some(2),
        "updates are not news"
    );

    log.push(
        1,
        IncidentEscalated {
            to: Escalation {
                kind: EscalationKind::Surge,
                id: uuid::Uuid::from_u128(99),
            },
            reason: "Needs more officers".into(),
        },
    );
    log.push(
        1,
        IncidentClosed {
            reason: "Resolved".into(),
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["countries"], json!({}));
    assert_eq!(snap["counters"]["open_incidents"], 0);
    assert_eq!(snap["counters"]["casualties_killed"], 0);
    assert_eq!(
        snap["timeline"][1]["text"],
        "Incident in KE escalated to a surge: Roadblock on the airport road"
    );
    assert_eq!(
        snap["timeline"][0]["text"],
        "Incident closed in KE: Roadblock on the airport road"
    );
    assert_eq!(snap["timeline"][0]["severity"], "info");
    deltas_agree(&log);
}

#[test]
fn a_closed_country_is_removed_by_a_remove_op() {
    let mut board = Situation::new();
    let mut log = Log::default();
    board.apply(typed(log.push(1, report("ML", 2, "Theft", false))));
    let changes = board.apply(typed(log.push(
        1,
        IncidentClosed {
            reason: "Done".into(),
        },
    )));
    let ops = board.delta(&changes, View::Duty);
    assert_eq!(
        ops[0],
        Op::Remove {
            path: vec!["countries".into(), "ML".into()]
        }
    );
}

#[test]
fn markers_are_the_newest_hundred_open_located_incidents() {
    let mut log = Log::default();
    // 120 reports, 12 of them without a location; then one located incident closes.
    for n in 1..=120 {
        log.push(n, report("SO", 2, &format!("Incident {n}"), n % 10 != 5));
    }
    log.push(
        119,
        IncidentClosed {
            reason: "Done".into(),
        },
    );
    let snap = log.snapshot(View::WallScreen);
    let markers = snap["countries"]["SO"]["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 100);
    assert_eq!(markers[0]["title"], "Incident 120");
    assert_eq!(markers[1]["title"], "Incident 118", "119 is closed");
    assert_eq!(
        markers[99]["title"], "Incident 9",
        "newest first, without 15, 25, …"
    );
    assert_eq!(snap["countries"]["SO"]["incidents"]["open"], 119);
    assert_eq!(snap["counters"]["casualties_injured"], 4 * 119);
}

#[test]
fn events_of_unknown_incidents_are_ignored() {
    let mut board = Situation::new();
    let mut log = Log::default();
    for event in [
        DomainEvent::from(IncidentVerified {
            by: "someone".into(),
            note: None,
        }),
        IncidentClosed { reason: "x".into() }.into(),
        IncidentUpdated {
            title: Some("t".into()),
            ..Default::default()
        }
        .into(),
        HostageReleased {
            person: "p".into(),
            at: T0,
        }
        .into(),
        SurgeDeployed { at: T0 }.into(),
        PersonMarked {
            person: "p".into(),
            status: PersonStatus::Missing,
            by: "u".into(),
            note: None,
        }
        .into(),
        BroadcastAcknowledged {
            agency: "wfp".into(),
            by: "u".into(),
        }
        .into(),
    ] {
        let changes = board.apply(typed(log.push(7, event)));
        assert!(changes.is_empty(), "{changes:?}");
    }
    assert_eq!(board.position(), 7);
    assert_eq!(board.snapshot(View::Duty)["countries"], json!({}));
    board.check_invariants().unwrap();
}

use events::domain::DomainEvent;

#[test]
fn unknown_types_unreadable_data_and_clearances_only_advance_the_position() {
    let mut board = Situation::new();
    let mut log = Log::default();
    let events = [
        log.push_raw(
            "incident",
            1,
            "IncidentTeleported",
            1,
            json!({"to": "Mars"}),
        )
        .clone(),
        log.push_raw("incident", 1, "IncidentReported", 1, json!({"title": 5}))
            .clone(),
        log.push_raw("incident", 1, "IncidentClosed", 9, json!({"reason": "x"}))
            .clone(),
        log.push_raw("weather", 3, "RainStarted", 1, Value::Null)
            .clone(),
        log.push(
            4,
            ClearanceRequested {
                traveller: "t.kofi".into(),
                itinerary: vec![Leg {
                    country: c("AF"),
                    area: None,
                    from: date!(2026 - 12 - 01),
                    to: date!(2026 - 12 - 03),
                }],
                purpose: None,
            },
        )
        .clone(),
        log.push(
            4,
            ArrivalRecorded {
                country: c("AF"),
                at: T0,
            },
        )
        .clone(),
    ];
    for (i, event) in events.iter().enumerate() {
        let changes = board.apply(typed(event));
        assert!(changes.is_empty());
        assert!(board.delta(&changes, View::Duty).is_empty());
        assert_eq!(board.position(), i as u64 + 1);
        assert_eq!(board.as_of(), Some(event.recorded_at));
    }
    let snap = board.snapshot(View::Duty);
    assert_eq!(snap["position"], 6);
    assert_eq!(snap["as_of"], at_text(6));
    assert_eq!(snap["countries"], json!({}));
    assert_eq!(snap["timeline"], json!([]));
}

#[test]
fn a_duplicate_or_older_position_is_ignored() {
    let mut log = Log::default();
    log.push(1, report("SO", 4, "First", true));
    log.push(2, report("SO", 4, "Second", true));
    let mut board = log.board();
    let before = board.snapshot(View::Duty);
    for event in log.events.clone() {
        assert!(board.apply(typed(&event)).is_empty());
    }
    assert_eq!(board.snapshot(View::Duty), before);
}

#[test]
fn a_second_report_for_the_same_stream_does_not_replace_the_first() {
    let mut log = Log::default();
    log.push(1, report("SO", 4, "First", true));
    log.push(1, report("ML", 1, "Second", true));
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["counters"]["open_incidents"], 1);
    assert_eq!(snap["countries"]["SO"]["markers"][0]["title"], "First");
    assert!(snap["countries"].get("ML").is_none());
}

#[test]
fn levels_are_per_area_and_the_country_shows_the_highest() {
    let mut log = Log::default();
    log.push(10, level("mogadishu", "SO", 3));
    log.push(11, level("kismayo", "SO", 4));
    log.push(10, level("mogadishu", "SO", 5));
    let snap = log.snapshot(View::WallScreen);
    let so = &snap["countries"]["SO"];
    assert_eq!(so["level"], 5);
    assert_eq!(
        so["areas"]["mogadishu"],
        json!({"level": 5, "name": "High", "reason": "Sustained attacks on the airport road", "set_at": at_text(3)})
    );
    assert_eq!(so["areas"]["kismayo"]["level"], 4);
    assert_eq!(snap["counters"]["countries_level_5_plus"], 1);
    assert_eq!(
        snap["timeline"][0],
        json!({"position": 3, "at": at_text(3), "country": "SO", "kind": "level", "severity": "high",
               "text": "Level 5 (High) set for area mogadishu, SO (up from 3)"})
    );
    assert_eq!(
        snap["timeline"][2]["text"],
        "Level 3 (Moderate) set for area mogadishu, SO"
    );

    // Lowering the top area brings the country down to its next highest area.
    log.push(10, level("mogadishu", "SO", 2));
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["countries"]["SO"]["level"], 4);
    assert_eq!(snap["counters"]["countries_level_5_plus"], 0);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Level 2 (Low) set for area mogadishu, SO (down from 5)"
    );
    assert_eq!(snap["timeline"][0]["severity"], "info");

    // A version 1 event (reason called `note`) is read through its upcaster.
    log.push_raw(
        "level",
        12,
        "AreaSecurityLevelSet",
        1,
        json!({"area": "gao", "country": "ML", "level": 6, "note": "Siege"}),
    );
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["countries"]["ML"]["areas"]["gao"]["reason"], "Siege");
    assert_eq!(snap["countries"]["ML"]["level"], 6);
    assert_eq!(snap["counters"]["countries_level_5_plus"], 1);
    assert_eq!(snap["timeline"][0]["severity"], "critical");
    deltas_agree(&log);
}

#[test]
fn hostage_cases_show_counts_and_dates_but_never_persons() {
    let mut log = Log::default();
    log.push(
        20,
        HostageCaseOpened {
            incident_id: uuid::Uuid::from_u128(1),
            country: c("ML"),
            persons: vec!["hostage.omar.sidibe".into(), "hostage.claire.martin".into()],
            captors: Some("Group led by Ag Ghaly".into()),
            location: None,
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["countries"]["ML"]["hostage"],
        json!({"cases": 1, "persons_held": 2, "persons_released": 0, "persons_deceased": 0,
               "held_since": [at_text(1)],
               "by_case": [{"held_since": at_text(1), "held": 2, "released": 0, "deceased": 0}]})
    );
    assert_eq!(snap["counters"]["hostage_cases"], 1);
    assert_eq!(snap["counters"]["persons_held"], 2);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Hostage case opened in ML: 2 persons held"
    );
    assert_eq!(snap["timeline"][0]["severity"], "critical");

    log.push(
        20,
        ProofOfLifeReceived {
            person: "hostage.omar.sidibe".into(),
            at: T0,
            note: "Video".into(),
        },
    );
    log.push(
        20,
        HostageReleased {
            person: "hostage.omar.sidibe".into(),
            at: T0,
        },
    );
    // Released twice, or someone not in the case: nothing more.
    log.push(
        20,
        HostageReleased {
            person: "hostage.omar.sidibe".into(),
            at: T0,
        },
    );
    log.push(
        20,
        HostageDeceased {
            person: "hostage.unknown".into(),
            at: T0,
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["countries"]["ML"]["hostage"]["persons_held"], 1);
    assert_eq!(snap["counters"]["persons_held"], 1);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Hostage released in ML: 1 person still held in this case"
    );
    log.push(
        20,
        HostageDeceased {
            person: "hostage.claire.martin".into(),
            at: T0,
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["counters"]["persons_held"], 0);
    assert_eq!(snap["counters"]["hostage_cases"], 1, "still open");

    for view in View::ALL {
        let text = log.snapshot(view).to_string();
        for secret in ["omar", "claire", "Ghaly", "Video"] {
            assert!(!text.contains(secret), "{view:?} shows {secret}: {text}");
        }
    }
    log.push(
        20,
        HostageCaseClosed {
            outcome: "Claire Martin died; Omar released".into(),
            accounting: vec![PersonAccount {
                person: "hostage.omar.sidibe".into(),
                status: HostageOutcome::Released,
                note: None,
            }],
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["countries"], json!({}));
    assert_eq!(snap["counters"]["hostage_cases"], 0);
    assert_eq!(snap["timeline"][0]["text"], "Hostage case closed in ML");
    assert!(!snap.to_string().contains("Claire"));
    deltas_agree(&log);
}

#[test]
fn surges_are_active_from_request_to_rejection_or_completion() {
    let mut log = Log::default();
    log.push(
        30,
        SurgeRequested {
            duty_station: "HTI-PAP".into(),
            country: c("HT"),
            reason: "Gang violence".into(),
            officers_needed: 4,
            assets: vec!["armoured vehicle".into()],
        },
    );
    log.push(
        31,
        SurgeRequested {
            duty_station: "HTI-CAP".into(),
            country: c("HT"),
            reason: "Riots".into(),
            officers_needed: 1,
            assets: vec![],
        },
    );
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["counters"]["active_surges"], 2);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Surge requested for HTI-CAP, HT: 1 officer needed"
    );
    log.push(
        30,
        SurgeApproved {
            by: "cm.lena.schmidt".into(),
        },
    );
    for officer in ["o.kwame", "o.ines"] {
        log.push(
            30,
            SurgeOfficerAssigned {
                officer: officer.into(),
                from_duty_station: "KEN-NBO".into(),
            },
        );
    }
    log.push(31, SurgeDeployed { at: T0 });
    log.push(31, SurgeApproved { by: "late".into() });
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(
        snap["countries"]["HT"]["surges"],
        json!([
            {"id": uuid(31), "duty_station": "HTI-CAP", "status": "deployed", "officers_needed": 1, "officers_assigned": 0, "away_from": {}},
            {"id": uuid(30), "duty_station": "HTI-PAP", "status": "approved", "officers_needed": 4, "officers_assigned": 2, "away_from": {"KEN-NBO": 2}},
        ])
    );
    assert_eq!(
        snap["timeline"][0]["text"],
        "Surge deployed to HTI-CAP, HT: 0 of 1 officers assigned"
    );
    let text = snap.to_string();
    assert!(!text.contains("kwame") && !text.contains("lena"));

    log.push(
        31,
        SurgeRejected {
            by: "x".into(),
            reason: "y".into(),
        },
    );
    log.push(30, SurgeCompleted { at: T0 });
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["counters"]["active_surges"], 0);
    assert_eq!(snap["countries"], json!({}));
    deltas_agree(&log);
}

#[test]
fn orders_count_their_roll_call() {
    let mut log = Log::default();
    log.push(
        40,
        RelocationOrdered {
            kind: OrderKind::Evacuation,
            country: c("SD"),
            area: None,
            duty_station: Some("SDN-KRT".into()),
            scope: Scope::NonEssential,
            destination: "Port Sudan".into(),
            deadline: datetime!(2026-11-28 18:00 UTC),
        },
    );
    let snap = log.snapshot(View::WallScreen);
    let order = &snap["countries"]["SD"]["orders"][0];
    assert_eq!(order["total"], 0);
    assert_eq!(order["accounted_pct"], 0.0);
    assert_eq!(snap["counters"]["active_orders"], 1);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Evacuation ordered in SD (SDN-KRT): non-essential personnel to Port Sudan by 2026-11-28 18:00 UTC"
    );
    assert_eq!(snap["timeline"][0]["severity"], "critical");

    for person in ["rc.a", "rc.b", "rc.c", "rc.d", "rc.a"] {
        log.push(
            40,
            RollCallEntryAdded {
                person: person.into(),
                agency: Some("wfp".into()),
                duty_station: None,
                dependants: 1,
            },
        );
    }
    let mark = |person: &str, status| PersonMarked {
        person: person.into(),
        status,
        by: "duty.jean.dupont".into(),
        note: None,
    };
    log.push(40, mark("rc.a", PersonStatus::Missing));
    log.push(40, mark("rc.a", PersonStatus::Safe));
    log.push(40, mark("rc.b", PersonStatus::Relocated));
    log.push(40, mark("rc.c", PersonStatus::Missing));
    log.push(40, mark("rc.e", PersonStatus::Injured));
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["countries"]["SD"]["orders"],
        json!([{
            "id": uuid(40), "kind": "evacuation", "scope": "non_essential", "area": null,
            "duty_station": "SDN-KRT", "destination": "Port Sudan",
            "deadline": "2026-11-28T18:00:00Z", "status": "active",
            "total": 5, "accounted": 3, "accounted_pct": 60.0, "missing": 1,
            "late_arrivals": 0, "left_area": 0
        }])
    );
    assert!(!snap.to_string().contains("rc."), "no roll call names");

    log.push(40, mark("rc.d", PersonStatus::Safe));
    log.push(
        40,
        RollCallEntryAdded {
            person: "rc.f".into(),
            agency: None,
            duty_station: None,
            dependants: 0,
        },
    );
    let snap = log.snapshot(View::Duty);
    // 4 of 6: 66.666… shown with one decimal.
    assert_eq!(snap["countries"]["SD"]["orders"][0]["accounted_pct"], 66.7);

    log.push(40, OrderCompleted { note: None });
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["countries"], json!({}));
    assert_eq!(snap["counters"]["active_orders"], 0);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Evacuation order completed in SD: 4 of 6 accounted for"
    );
    deltas_agree(&log);
}

#[test]
fn orders_count_late_arrivals_and_people_who_left() {
    let mut log = Log::default();
    log.push(
        41,
        RelocationOrdered {
            kind: OrderKind::Relocation,
            country: c("SO"),
            area: Some("SOM-BAN".into()),
            duty_station: None,
            scope: Scope::AllPersonnel,
            destination: "Kismayo".into(),
            deadline: datetime!(2026-11-28 18:00 UTC),
        },
    );
    for person in ["rc.a", "rc.b"] {
        log.push(
            41,
            RollCallEntryAdded {
                person: person.into(),
                agency: None,
                duty_station: None,
                dependants: 0,
            },
        );
    }
    let arrived = |person: &str| PersonArrivedInArea {
        person: person.into(),
        agency: Some("wfp".into()),
        duty_station: Some("SOM-MGQ".into()),
        dependants: 0,
        cause: PresenceCause::Clearance,
    };
    let left = |person: &str| PersonLeftArea {
        person: person.into(),
        cause: PresenceCause::Assignment,
    };
    let counts = |log: &Log| {
        let snap = log.snapshot(View::WallScreen);
        let o = &snap["countries"]["SO"]["orders"][0];
        (
            o["total"].clone(),
            o["late_arrivals"].clone(),
            o["left_area"].clone(),
        )
    };
    log.push(41, arrived("rc.c"));
    log.push(41, arrived("rc.c"));
    assert_eq!(
        counts(&log),
        (json!(3), json!(1), json!(0)),
        "one late arrival, once"
    );
    log.push(41, left("rc.a"));
    log.push(41, left("rc.c"));
    log.push(41, left("rc.z"));
    assert_eq!(
        counts(&log),
        (json!(3), json!(1), json!(2)),
        "those who left stay on the roll call; someone never on it does not count"
    );
    log.push(41, arrived("rc.a"));
    assert_eq!(
        counts(&log),
        (json!(3), json!(1), json!(1)),
        "rc.a is back, not late"
    );
    log.push(
        41,
        RollCallEntryAdded {
            person: "rc.c".into(),
            agency: None,
            duty_station: None,
            dependants: 0,
        },
    );
    assert_eq!(
        counts(&log),
        (json!(3), json!(0), json!(1)),
        "on the order's own roll call after all: not late"
    );
    let snap = log.snapshot(View::WallScreen);
    assert!(!snap.to_string().contains("rc."), "no roll call names");
    log.push(41, OrderCompleted { note: None });
    log.push(41, arrived("rc.d"));
    assert_eq!(log.snapshot(View::Duty)["countries"], json!({}));
    deltas_agree(&log);
}

fn issue(title: &str, audience: Audience, requires_ack: bool) -> BroadcastIssued {
    BroadcastIssued {
        title: title.into(),
        body: "Stay indoors.".into(),
        severity: BroadcastSeverity::High,
        audience,
        requires_ack,
        ack_deadline: None,
        exercise: false,
        updates: None,
        cancels: None,
        recipients: vec![],
        rule: None,
    }
}

#[test]
fn broadcasts_count_acknowledgements_by_agency() {
    let mut log = Log::default();
    let list = Audience::Agencies(vec!["wfp".into(), "unicef".into(), "unhcr".into()]);
    log.push(50, issue("Curfew in Mogadishu", list, true));
    let ack = |agency: &str| BroadcastAcknowledged {
        agency: agency.into(),
        by: "afp.maria.lopez".into(),
    };
    log.push(50, ack("wfp"));
    log.push(50, ack("wfp"));
    log.push(50, ack("who")); // not in the audience
    let snap = log.snapshot(View::WallScreen);
    // An older event (no recipients, from before the two-person rule): live when issued.
    assert_eq!(
        snap["broadcasts"],
        json!([{
            "id": uuid(50), "title": "Curfew in Mogadishu", "severity": "high", "exercise": false,
            "issued_at": at_text(1), "status": "live", "internal": false, "rule": null,
            "requires_ack": true, "ack_deadline": null, "total": 3, "sent": 0, "delivered": 0, "acked": 1,
            "failed": 0, "resent": 0, "escalated": false, "escalations": 0,
            "suppressed": 0
        }])
    );
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 1);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast issued: Curfew in Mogadishu"
    );
    log.push(50, ack("unicef"));
    log.push(50, ack("unhcr"));
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["broadcasts"][0]["acked"], 3);
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 0);
    assert!(!snap.to_string().contains("maria"));

    // All agencies: the total is what deliveries (and acknowledgements) tell.
    log.push(51, issue("Airport closed", Audience::AllAgencies, true));
    assert_eq!(log.snapshot(View::Duty)["broadcasts"][0]["total"], 0);
    assert_eq!(
        log.snapshot(View::Duty)["counters"]["broadcasts_awaiting_ack"],
        1
    );
    for agency in ["wfp", "unicef", "wfp"] {
        log.push(
            51,
            BroadcastDelivered {
                agency: agency.into(),
                channel: Channel::Nats,
                attempt: 1,
                round: 1,
            },
        );
    }
    log.push(51, ack("wfp"));
    log.push(
        51,
        BroadcastEscalated {
            reason: "Overdue".into(),
            agencies: vec![],
        },
    );
    let snap = log.snapshot(View::Duty);
    let b = &snap["broadcasts"][0];
    assert_eq!(
        (&b["acked"], &b["delivered"], &b["total"], &b["status"]),
        (&json!(1), &json!(2), &json!(2), &json!("live"))
    );
    assert_eq!(
        (&b["escalated"], &b["escalations"]),
        (&json!(true), &json!(1))
    );
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast escalated: Airport closed (1 of 2 acknowledged)"
    );
    log.push(
        51,
        BroadcastCancelled {
            reason: "Reopened".into(),
            by_broadcast: None,
        },
    );
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["broadcasts"][0]["status"], "cancelled");
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 0);
    assert_eq!(snap["timeline"][0]["severity"], "info");

    // A broadcast for a country puts the country on its timeline items; no ack, no waiting.
    log.push(52, issue("Heat wave", Audience::Country(c("SO")), false));
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["timeline"][0]["country"], "SO");
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 0);
    deltas_agree(&log);
}

#[test]
fn only_the_latest_twenty_broadcasts_are_listed_but_all_are_counted() {
    let mut log = Log::default();
    for n in 0..25 {
        log.push(
            100 + n,
            issue(&format!("B{n}"), Audience::AllAgencies, true),
        );
    }
    let snap = log.snapshot(View::WallScreen);
    let list = snap["broadcasts"].as_array().unwrap();
    assert_eq!(list.len(), 20);
    assert_eq!(list[0]["title"], "B24");
    assert_eq!(list[19]["title"], "B5");
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 25);
    // An old broadcast cancelled: the list does not change, the counter does.
    let mut board = log.board();
    let changes = board.apply(typed(log.push(
        100,
        BroadcastCancelled {
            reason: "Old".into(),
            by_broadcast: None,
        },
    )));
    for view in View::ALL {
        let ops = board.delta(&changes, view);
        assert!(
            ops.iter()
                .all(|op| !matches!(op, Op::Set { path, .. } if path[0].starts_with("broadcast"))),
            "{ops:?}"
        );
    }
    assert_eq!(
        board.snapshot(View::Duty)["counters"]["broadcasts_awaiting_ack"],
        24
    );
    deltas_agree(&log);
}

#[test]
fn the_timeline_keeps_the_newest_two_hundred() {
    let mut log = Log::default();
    for n in 1..=230 {
        log.push(n, report("AF", 1, &format!("Incident {n}"), false));
    }
    let snap = log.snapshot(View::WallScreen);
    let timeline = snap["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 200);
    assert_eq!(timeline[0]["position"], 230);
    assert_eq!(timeline[199]["position"], 31);
    assert_eq!(timeline[0]["severity"], "low");
    assert_eq!(page_after_deltas(&log.events, 17, View::WallScreen), snap);
}

#[test]
fn replay_folds_a_log_in_order() {
    let mut log = Log::default();
    log.push(1, report("SO", 4, "A", true));
    log.push(2, level("mogadishu", "SO", 5));
    let board = crate::replay(&log.events);
    assert_eq!(board.position(), 2);
    assert_eq!(board.as_of(), Some(at(2)));
    assert_eq!(
        board.snapshot(View::Duty),
        crate::replay(log.events.iter()).snapshot(View::Duty)
    );
}

#[test]
fn views_parse_and_print() {
    for view in View::ALL {
        assert_eq!(View::parse(view.as_str()), Some(view));
        assert_eq!(serde_json::to_value(view).unwrap(), view.as_str());
    }
    assert_eq!(View::parse("wall"), None);
    assert_eq!(crate::BOARDS, ["situation"]);
}

/// `count` located reports in `country` on streams `first..`, each a minute apart.
fn crowd(log: &mut Log, country: &str, first: u128, count: u128) {
    for i in 0..count {
        let severity = i64::try_from(i % 5).unwrap() + 1;
        log.push(
            first + i,
            report(country, severity, &format!("Report {i}"), true),
        );
    }
}

#[test]
fn a_crowded_country_keeps_its_newest_markers_through_item_and_drop() {
    let mut log = Log::default();
    crowd(&mut log, "SO", 1, 130);
    // The newest closes: the 101st newest comes into view at the end of the list.
    log.push(
        130,
        IncidentClosed {
            reason: "Resolved".into(),
        },
    );
    // An old one (not shown) closes: nothing to see but counts.
    log.push(
        2,
        IncidentClosed {
            reason: "Resolved".into(),
        },
    );
    // A shown one moves to Kenya: it leaves SO's list (another comes in) and enters KE's.
    log.push(
        100,
        IncidentUpdated {
            country: Some(c("KE")),
            ..Default::default()
        },
    );
    // One in the middle is verified: it changes in place.
    log.push(
        60,
        IncidentVerified {
            by: "duty.jean.dupont".into(),
            note: None,
        },
    );
    let snap = log.snapshot(View::Duty);
    let markers = snap["countries"]["SO"]["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 100);
    assert_eq!(markers[0]["title"], "Report 128", "newest first");
    assert_eq!(
        markers[99]["title"], "Report 28",
        "the 100th newest open one"
    );
    assert_eq!(snap["countries"]["KE"]["markers"][0]["title"], "Report 99");
    for k in [0, 1, 100, 129, 130, 131, 132, 133] {
        for view in View::ALL {
            assert_eq!(
                page_after_deltas(&log.events, k, view),
                log.snapshot(view),
                "k = {k}, {view:?}"
            );
        }
    }
}

/// The `delta` message the gateway sends for `ops` (`services/gateway/src/hub.rs`).
fn delta_message(board: &Situation, ops: &[Op], view: View) -> String {
    json!({
        "type": "delta",
        "board": "situation",
        "view": view.as_str(),
        "position": board.position(),
        "as_of": board.as_of().map_or(Value::Null, crate::timestamp),
        "ops": ops,
    })
    .to_string()
}

#[test]
fn an_incidents_delta_is_at_most_1_kb_encoded() {
    // A busy board: a crowded country, levels, a broadcast.
    let mut log = Log::default();
    crowd(&mut log, "SO", 1, 150);
    log.push(1000, level("mogadishu", "SO", 5));
    let mut board = crate::replay(&log.events);
    let report = IncidentReported {
        description: Some("Two vehicles hit near the checkpoint".into()),
        casualties: Some(Casualties {
            killed: 1,
            injured: 3,
        }),
        ..report("SO", 4, "Gunfire near the compound", true)
    };
    let steps: Vec<(u128, DomainEvent)> = vec![
        (2000, report.into()),
        (
            2000,
            IncidentVerified {
                by: "duty.jean.dupont".into(),
                note: None,
            }
            .into(),
        ),
        (
            2000,
            IncidentUpdated {
                severity: Some(Severity::new(5).unwrap()),
                ..Default::default()
            }
            .into(),
        ),
        (
            2000,
            IncidentClosed {
                reason: "Resolved".into(),
            }
            .into(),
        ),
    ];
    for (id, event) in steps {
        let changes = board.apply(typed(log.push(id, event)));
        for view in View::ALL {
            let msg = delta_message(&board, &board.delta(&changes, view), view);
            assert!(msg.len() <= 1024, "{} bytes: {msg}", msg.len());
        }
    }
}
