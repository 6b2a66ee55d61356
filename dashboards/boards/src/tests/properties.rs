//! Property tests: random logs over a handful of countries, streams and areas — with events
//! for streams never opened, unknown types and unreadable data — checked against the contract.
//!
//! - snapshot at k + deltas after k (applied like the page does) = snapshot of the whole fold;
//! - the same log folded twice gives identical snapshots;
//! - the counters kept incrementally equal a recount;
//! - no view shows a person: the wall screen never shows the reporters, descriptions, users,
//!   hostages, officers, roll-call persons or broadcast issuers and approvers used in the
//!   input; the duty view shows reporters, descriptions, and who issued and approved a
//!   broadcast, only.

use events::domain::DomainEvent;
use events::domain::broadcast::*;
use events::domain::clearance::*;
use events::domain::hostage::*;
use events::domain::incident::*;
use events::domain::level::*;
use events::domain::relocation::*;
use events::domain::surge::*;
use events::validate::{Country, SecurityLevel, Severity};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::{date, datetime};

use super::{Log, page_after_deltas, typed};
use crate::{Situation, View, apply_ops, timestamp};
use events::RecordedEvent;

const COUNTRIES: &[&str] = &["SO", "ML", "HT", "SD", "AF"];
const AREAS: &[&str] = &["mogadishu", "kismayo", "gao", "port-au-prince", "kabul"];
const TITLES: &[&str] = &[
    "Gunfire",
    "Roadblock",
    "IED on the road",
    "Flooding",
    "Protest",
];
const REASONS: &[&str] = &["Attacks", "Calm returned", "Overdue"];
const AGENCIES: &[&str] = &["wfp", "unicef", "unhcr", "who"];
const STATIONS: &[&str] = &["SOM-MGQ", "HTI-PAP", "SDN-KRT"];

/// Reporters: the duty view shows them, the wall screen never.
const REPORTERS: &[&str] = &["fso.zainab.qadir", "fso.pieter.jansen"];
/// Descriptions: the duty view shows them, the wall screen never.
const DESCRIPTIONS: &[&str] = &["Witness Nadia Rahman saw it", "Driver Samuel Okoro hurt"];
/// Users who acted, hostages, officers, roll-call persons, captors: no view shows them.
const HIDDEN: &[&str] = &[
    "duty.olga.petrova",
    "cm.kofi.mensah",
    "person.yara.haddad",
    "person.tomas.silva",
    "person.aiko.tanaka",
    "officer.ravi.kumar",
    "Captor Abu Hamza",
];
/// Who issued (the event's `meta.actor`) and approved broadcasts: the duty view shows them on
/// the broadcast, the wall screen never.
const APPROVERS: &[&str] = &["duty.amara.diallo", "duty.lena.schmidt"];
const PERSONS: &[&str] = &[
    "person.yara.haddad",
    "person.tomas.silva",
    "person.aiko.tanaka",
];
const USERS: &[&str] = &["duty.olga.petrova", "cm.kofi.mensah"];

/// One step of a generated log.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A domain event on stream `<its category>-<id>`.
    Known(u128, DomainEvent),
    /// Anything as written: unknown types, unreadable data.
    Raw(&'static str, u128, &'static str, u32, Value),
}

/// Stream ids: a few per family, so events often meet the same case and sometimes a case
/// that was never opened.
fn stream(base: u128) -> impl Strategy<Value = u128> {
    (0u128..4).prop_map(move |i| base + i)
}

fn country() -> impl Strategy<Value = Country> {
    select(COUNTRIES).prop_map(|c| Country::parse(c).unwrap())
}

fn text(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(options).prop_map(str::to_owned)
}

fn time() -> impl Strategy<Value = OffsetDateTime> {
    select(vec![
        datetime!(2026-11-26 22:00 UTC),
        datetime!(2026-11-27 01:30 +03:00),
        datetime!(2026-11-28 18:00 UTC),
    ])
}

fn location() -> impl Strategy<Value = Location> {
    (
        select(vec![2.04, -1.28, 16.27]),
        select(vec![45.3, 36.82, -0.04]),
    )
        .prop_map(|(lat, lon)| Location {
            lat,
            lon,
            accuracy_m: None,
        })
}

fn severity() -> impl Strategy<Value = Severity> {
    (1i64..=5).prop_map(|n| Severity::new(n).unwrap())
}

fn casualties() -> impl Strategy<Value = Casualties> {
    (0u32..4, 0u32..6).prop_map(|(killed, injured)| Casualties { killed, injured })
}

fn incident() -> impl Strategy<Value = Step> {
    let reported = (
        stream(1000),
        country(),
        severity(),
        text(TITLES),
        time(),
        proptest::option::of(location()),
        proptest::option::of(text(DESCRIPTIONS)),
        proptest::option::of(casualties()),
        text(REPORTERS),
    )
        .prop_map(
            |(
                id,
                country,
                severity,
                title,
                occurred_at,
                location,
                description,
                casualties,
                reporter,
            )| {
                Step::Known(
                    id,
                    IncidentReported {
                        country,
                        category: IncidentCategory::Crime,
                        severity,
                        title,
                        occurred_at,
                        location,
                        duty_station: None,
                        description,
                        casualties,
                        reporter,
                    }
                    .into(),
                )
            },
        );
    let updated = (
        stream(1000),
        proptest::option::of(country()),
        proptest::option::of(severity()),
        proptest::option::of(text(TITLES)),
        proptest::option::of(location()),
        proptest::option::of(text(DESCRIPTIONS)),
        proptest::option::of(casualties()),
    )
        .prop_map(
            |(id, country, severity, title, location, description, casualties)| {
                Step::Known(
                    id,
                    IncidentUpdated {
                        country,
                        severity,
                        title,
                        location,
                        description,
                        casualties,
                        note: Some("More detail".into()),
                        ..Default::default()
                    }
                    .into(),
                )
            },
        );
    prop_oneof![
        4 => reported,
        2 => updated,
        2 => (stream(1000), text(USERS)).prop_map(|(id, by)| Step::Known(id, IncidentVerified { by, note: None }.into())),
        1 => stream(1000).prop_map(|id| Step::Known(id, IncidentEscalated {
            to: Escalation { kind: EscalationKind::HostageCase, id: uuid::Uuid::from_u128(3000) },
            reason: "Abduction".into(),
        }.into())),
        2 => stream(1000).prop_map(|id| Step::Known(id, IncidentClosed { reason: "Resolved".into() }.into())),
    ]
}

fn level() -> impl Strategy<Value = Step> {
    (
        stream(2000),
        select(AREAS),
        country(),
        1i64..=6,
        text(REASONS),
    )
        .prop_map(|(id, area, country, n, reason)| {
            Step::Known(
                id,
                AreaSecurityLevelSet {
                    area: area.into(),
                    country,
                    level: SecurityLevel::new(n).unwrap(),
                    reason,
                    previous_level: None,
                }
                .into(),
            )
        })
}

fn hostage() -> impl Strategy<Value = Step> {
    let persons = proptest::sample::subsequence(PERSONS, 1..=3)
        .prop_map(|p| p.into_iter().map(str::to_owned).collect::<Vec<_>>());
    let person = || text(PERSONS);
    prop_oneof![
        2 => (stream(3000), country(), persons).prop_map(|(id, country, persons)| Step::Known(id, HostageCaseOpened {
            incident_id: uuid::Uuid::from_u128(1000), country, persons,
            captors: Some("Captor Abu Hamza".into()), location: None,
        }.into())),
        1 => (stream(3000), person()).prop_map(|(id, person)| Step::Known(id, ProofOfLifeReceived {
            person, at: datetime!(2026-11-27 00:00 UTC), note: "Video".into(),
        }.into())),
        2 => (stream(3000), person()).prop_map(|(id, person)| Step::Known(id, HostageReleased {
            person, at: datetime!(2026-11-27 00:00 UTC),
        }.into())),
        1 => (stream(3000), person()).prop_map(|(id, person)| Step::Known(id, HostageDeceased {
            person, at: datetime!(2026-11-27 00:00 UTC),
        }.into())),
        1 => (stream(3000), person()).prop_map(|(id, person)| Step::Known(id, HostageCaseClosed {
            outcome: "Ended".into(),
            accounting: vec![PersonAccount { person, status: HostageOutcome::Released, note: None }],
        }.into())),
    ]
}

fn surge() -> impl Strategy<Value = Step> {
    prop_oneof![
        2 => (stream(4000), select(STATIONS), country(), 1u16..6).prop_map(|(id, station, country, n)| Step::Known(id, SurgeRequested {
            duty_station: station.into(), country, reason: "Violence".into(), officers_needed: n, assets: vec![],
        }.into())),
        1 => (stream(4000), text(USERS)).prop_map(|(id, by)| Step::Known(id, SurgeApproved { by }.into())),
        1 => (stream(4000), text(USERS)).prop_map(|(id, by)| Step::Known(id, SurgeRejected { by, reason: "No staff".into() }.into())),
        2 => stream(4000).prop_map(|id| Step::Known(id, SurgeOfficerAssigned {
            officer: "officer.ravi.kumar".into(), from_duty_station: "KEN-NBO".into(),
        }.into())),
        1 => stream(4000).prop_map(|id| Step::Known(id, SurgeDeployed { at: datetime!(2026-11-27 00:00 UTC) }.into())),
        1 => stream(4000).prop_map(|id| Step::Known(id, SurgeCompleted { at: datetime!(2026-11-27 00:00 UTC) }.into())),
        1 => (stream(4000), text(USERS), text(PERSONS)).prop_map(|(id, by, who)| Step::Known(id, SurgeCancelled { by, reason: format!("Not needed, says {who}") }.into())),
    ]
}

fn order() -> impl Strategy<Value = Step> {
    let status = select(vec![
        PersonStatus::Safe,
        PersonStatus::Relocated,
        PersonStatus::Missing,
        PersonStatus::Injured,
    ]);
    prop_oneof![
        2 => (stream(5000), country(), any::<bool>(), proptest::option::of(select(AREAS)), time()).prop_map(
            |(id, country, evac, area, deadline)| Step::Known(id, RelocationOrdered {
                kind: if evac { OrderKind::Evacuation } else { OrderKind::Relocation },
                country, area: area.map(str::to_owned), duty_station: None, scope: Scope::AllPersonnel,
                destination: "Nairobi".into(), deadline,
            }.into())),
        3 => (stream(5000), text(PERSONS)).prop_map(|(id, person)| Step::Known(id, RollCallEntryAdded {
            person, agency: Some("wfp".into()), duty_station: None, dependants: 0,
        }.into())),
        3 => (stream(5000), text(PERSONS), status, text(USERS)).prop_map(|(id, person, status, by)| Step::Known(id, PersonMarked {
            person, status, by, note: None,
        }.into())),
        2 => (stream(5000), text(PERSONS), any::<bool>()).prop_map(|(id, person, clearance)| Step::Known(id, PersonArrivedInArea {
            person, agency: Some("wfp".into()), duty_station: Some("SOM-MGQ".into()), dependants: 1,
            cause: if clearance { PresenceCause::Clearance } else { PresenceCause::Assignment },
        }.into())),
        2 => (stream(5000), text(PERSONS)).prop_map(|(id, person)| Step::Known(id, PersonLeftArea {
            person, cause: PresenceCause::Clearance,
        }.into())),
        1 => stream(5000).prop_map(|id| Step::Known(id, OrderCompleted { note: None }.into())),
        1 => stream(5000).prop_map(|id| Step::Known(id, OrderRescinded { reason: "Calm".into() }.into())),
    ]
}

fn agencies(min: usize) -> impl Strategy<Value = Vec<String>> {
    proptest::sample::subsequence(AGENCIES, min..=3)
        .prop_map(|a| a.into_iter().map(str::to_owned).collect())
}

fn channel() -> impl Strategy<Value = Channel> {
    select(vec![Channel::Nats, Channel::Webhook, Channel::Cap])
}

/// Broadcasts on `streams` stream ids: issues of every kind (older events with no recipients,
/// internal audiences, rule firings, cancellations) and everything that follows an issue.
pub(super) fn broadcast_on(streams: u128, issue_weight: u32) -> impl Strategy<Value = Step> {
    let id = move || (0..streams).prop_map(|i| 6000 + i);
    let audience = prop_oneof![
        Just(Audience::AllAgencies),
        country().prop_map(Audience::Country),
        agencies(1).prop_map(Audience::Agencies),
        Just(Audience::DutyOfficers),
        Just(Audience::CrisisManagers),
    ];
    let severity = select(vec![
        BroadcastSeverity::Info,
        BroadcastSeverity::Medium,
        BroadcastSeverity::High,
        BroadcastSeverity::Critical,
    ]);
    let rule = proptest::option::weighted(
        0.2,
        Just(Firing {
            rule: "curfew-level-5".into(),
            rules_version: 3,
            trigger: uuid::Uuid::from_u128(2000),
            trigger_type: "AreaSecurityLevelSet".into(),
        }),
    );
    let issued = (
        (
            id(),
            text(TITLES),
            severity,
            audience,
            any::<bool>(),
            any::<bool>(),
        ),
        (
            agencies(0),
            rule,
            any::<bool>(),
            proptest::option::weighted(0.3, time()),
        ),
    )
        .prop_map(
            |(
                (id, title, severity, audience, requires_ack, exercise),
                (recipients, rule, cancels, deadline),
            )| {
                Step::Known(
                    id,
                    BroadcastIssued {
                        title,
                        body: "Stay indoors".into(),
                        severity,
                        audience,
                        requires_ack,
                        ack_deadline: deadline.filter(|_| requires_ack),
                        exercise,
                        updates: None,
                        cancels: cancels.then(|| uuid::Uuid::from_u128(6001)),
                        recipients,
                        rule,
                    }
                    .into(),
                )
            },
        );
    prop_oneof![
        issue_weight => issued,
        2 => (id(), text(APPROVERS)).prop_map(|(id, by)| Step::Known(id, BroadcastApproved { by }.into())),
        1 => (id(), text(AGENCIES), channel(), 1u32..3, 1u32..4).prop_map(|(id, agency, channel, round, attempt)| {
            Step::Known(id, BroadcastDeliveryAttempted { agency, channel, round, attempt }.into())
        }),
        3 => (id(), text(AGENCIES), channel(), 1u32..3).prop_map(|(id, agency, channel, round)| Step::Known(id, BroadcastDelivered {
            agency, channel, attempt: 1, round,
        }.into())),
        3 => (id(), text(AGENCIES), channel(), any::<bool>()).prop_map(|(id, agency, channel, gave_up)| {
            Step::Known(id, BroadcastDeliveryFailed {
                agency, channel, round: 1, attempt: 3, error: "HTTP 503".into(), gave_up,
            }.into())
        }),
        3 => (id(), text(AGENCIES), text(USERS)).prop_map(|(id, agency, by)| Step::Known(id, BroadcastAcknowledged {
            agency, by,
        }.into())),
        1 => (id(), agencies(1)).prop_map(|(id, agencies)| Step::Known(id, BroadcastResent { agencies }.into())),
        1 => (id(), agencies(0)).prop_map(|(id, agencies)| Step::Known(id, BroadcastEscalated { reason: "Overdue".into(), agencies }.into())),
        1 => (id(), any::<bool>()).prop_map(|(id, by)| Step::Known(id, BroadcastCancelled {
            reason: "Wrong".into(), by_broadcast: by.then(|| uuid::Uuid::from_u128(6002)),
        }.into())),
    ]
}

fn broadcast() -> impl Strategy<Value = Step> {
    broadcast_on(4, 3)
}

fn other() -> impl Strategy<Value = Step> {
    prop_oneof![
        stream(7000).prop_map(|id| Step::Known(
            id,
            ClearanceRequested {
                traveller: "person.tomas.silva".into(),
                itinerary: vec![Leg {
                    country: Country::parse("AF").unwrap(),
                    area: None,
                    from: date!(2026 - 12 - 01),
                    to: date!(2026 - 12 - 02),
                }],
                purpose: None,
            }
            .into()
        )),
        stream(1000).prop_map(|id| Step::Raw(
            "incident",
            id,
            "IncidentTeleported",
            1,
            json!({"reporter": "fso.zainab.qadir"})
        )),
        stream(1000).prop_map(|id| Step::Raw(
            "incident",
            id,
            "IncidentReported",
            1,
            json!({"country": "SO", "reporter": "fso.zainab.qadir"})
        )),
        stream(3000).prop_map(|id| Step::Raw(
            "hostage",
            id,
            "HostageCaseOpened",
            7,
            json!({"persons": ["person.yara.haddad"]})
        )),
    ]
}

/// Incident steps on 240 streams, nine in ten in one country and every report located: more
/// open markers than a country shows (`MAX_MARKERS`), so markers come into view at the end of
/// the list as others close or move away.
pub(super) fn crowded_incident() -> impl Strategy<Value = Step> {
    let is_report = |s: &Step| matches!(s, Step::Known(_, DomainEvent::IncidentReported(_)));
    let any_step = prop_oneof![2 => incident(), 3 => incident().prop_filter("a report", is_report)];
    (any_step, 0u128..60, 0u8..10, location()).prop_map(|(step, spread, where_, at)| {
        let country = Country::parse(if where_ == 0 { "ML" } else { "SO" }).unwrap();
        match step {
            Step::Known(id, mut event) => {
                match &mut event {
                    DomainEvent::IncidentReported(e) => {
                        e.country = country;
                        e.location = Some(at);
                    }
                    DomainEvent::IncidentUpdated(e) => {
                        e.country = e.country.map(|_| country);
                    }
                    _ => {}
                }
                Step::Known(id + 4 * spread, event)
            }
            other => other,
        }
    })
}

pub(super) fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => incident(),
        2 => level(),
        2 => hostage(),
        2 => surge(),
        3 => order(),
        3 => broadcast(),
        1 => other(),
    ]
}

/// Who acted: a broadcast's issuer is an approver (the duty view shows it); any other event's
/// actor is a user no view may show (the board never reads it).
fn actor_of(id: u128, event: &DomainEvent) -> &'static str {
    let i = usize::try_from(id % 2).unwrap_or(0);
    match event {
        DomainEvent::BroadcastIssued(_) => APPROVERS[i],
        _ => USERS[i],
    }
}

pub(super) fn log_of(steps: &[Step]) -> Log {
    let mut log = Log::default();
    for step in steps {
        push_step(&mut log, step);
    }
    log
}

/// Appends the event of one generated step.
pub(super) fn push_step(log: &mut Log, step: &Step) {
    match step {
        Step::Known(id, event) => log.push_by(*id, event.clone(), actor_of(*id, event)),
        Step::Raw(category, id, event_type, v, data) => {
            log.push_raw(category, *id, event_type, *v, data.clone())
        }
    };
}

/// Every string of `names` found in `json`.
fn found<'a>(json: &str, names: &[&'a str]) -> Vec<&'a str> {
    names.iter().copied().filter(|n| json.contains(n)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn snapshot_plus_deltas_equals_the_fold(
        steps in proptest::collection::vec(step(), 0..220),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board(); // checks the invariants
        for view in View::ALL {
            let page = page_after_deltas(&log.events, k, view);
            prop_assert_eq!(page, board.snapshot(view), "k = {}, {:?}", k, view);
        }
    }

    #[test]
    fn invariants_hold_after_every_event(steps in proptest::collection::vec(step(), 0..120)) {
        let log = log_of(&steps);
        let mut board = Situation::new();
        for event in &log.events {
            board.apply(typed(event));
            if let Err(e) = board.check_invariants() {
                prop_assert!(false, "after position {}: {}", event.position, e);
            }
        }
    }

    #[test]
    fn the_same_log_gives_the_same_board(steps in proptest::collection::vec(step(), 0..220)) {
        let log = log_of(&steps);
        let one = crate::replay(&log.events);
        let two = crate::replay(&log.events);
        for view in View::ALL {
            prop_assert_eq!(one.snapshot(view).to_string(), two.snapshot(view).to_string());
        }
        // A copy taken half-way and fed the rest ends the same.
        let half = log.events.len() / 2;
        let mut copy = crate::replay(&log.events[..half]).clone();
        for event in &log.events[half..] {
            copy.apply(typed(event));
        }
        prop_assert_eq!(copy.snapshot(View::Duty), one.snapshot(View::Duty));
    }

    #[test]
    fn no_view_shows_a_person(steps in proptest::collection::vec(step(), 0..220)) {
        let log = log_of(&steps);
        let mut board = Situation::new();
        let mut wall_texts = Vec::new();
        let mut duty_texts = Vec::new();
        for event in &log.events {
            let changes = board.apply(typed(event));
            wall_texts.push(serde_json::to_string(&board.delta(&changes, View::WallScreen)).unwrap());
            duty_texts.push(serde_json::to_string(&board.delta(&changes, View::Duty)).unwrap());
        }
        wall_texts.push(board.snapshot(View::WallScreen).to_string());
        duty_texts.push(board.snapshot(View::Duty).to_string());
        for text in &wall_texts {
            let shown = found(text, &[REPORTERS, DESCRIPTIONS, HIDDEN, APPROVERS].concat());
            prop_assert!(shown.is_empty(), "wall screen shows {:?}: {}", shown, text);
        }
        for text in &duty_texts {
            let shown = found(text, HIDDEN);
            prop_assert!(shown.is_empty(), "duty view shows {:?}: {}", shown, text);
        }
        // The duty view does show the reporter of an open, located incident.
        let duty = board.snapshot(View::Duty);
        let reporters_on_duty_markers = duty["countries"]
            .as_object()
            .into_iter()
            .flat_map(|c| c.values())
            .flat_map(|c| c["markers"].as_array().cloned().unwrap_or_default())
            .all(|m| m["reporter"].as_str().is_some_and(|r| REPORTERS.contains(&r)));
        prop_assert!(reporters_on_duty_markers);
        // It shows who issued and approved a broadcast, and nobody else.
        for b in duty["broadcasts"].as_array().into_iter().flatten() {
            for key in ["issued_by", "approved_by"] {
                prop_assert!(
                    b[key].is_null() || b[key].as_str().is_some_and(|a| APPROVERS.contains(&a)),
                    "{} = {}", key, b[key]
                );
            }
        }
    }

    #[test]
    fn more_broadcasts_than_the_list_shows_keep_the_delta_contract(
        steps in proptest::collection::vec(broadcast_on(26, 8), 0..200),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board(); // checks the invariants
        for view in View::ALL {
            let page = page_after_deltas(&log.events, k, view);
            prop_assert_eq!(page, board.snapshot(view), "k = {}, {:?}", k, view);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Per-entity marker ops (`item`, `drop`) keep the contract past `MAX_MARKERS`.
    #[test]
    fn more_markers_than_a_country_shows_keep_the_delta_contract(
        steps in proptest::collection::vec(crowded_incident(), 0..600),
        k in any::<proptest::sample::Index>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board(); // checks the invariants
        for view in View::ALL {
            let page = page_after_deltas(&log.events, k, view);
            prop_assert_eq!(page, board.snapshot(view), "k = {}, {:?}", k, view);
        }
    }
}

#[test]
fn the_generated_logs_reach_every_broadcast_state() {
    // Guards the broadcast generator: statuses, failures, acknowledgement times, internal and
    // rule-issued broadcasts, and more broadcasts than the list shows.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = proptest::collection::vec(broadcast_on(26, 8), 150..=150);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let log = log_of(&steps.new_tree(&mut runner).unwrap().current());
        let snap = log.snapshot(View::Duty);
        for b in snap["broadcasts"].as_array().unwrap() {
            seen.insert(format!("status {}", b["status"].as_str().unwrap()));
            for key in ["failed", "sent", "delivered", "acked", "resent"] {
                if b[key].as_u64() > Some(0) {
                    seen.insert(key.to_owned());
                }
            }
            for key in ["internal", "exercise", "escalated"] {
                if b[key] == true {
                    seen.insert(key.to_owned());
                }
            }
            if b["rule"].is_string() {
                seen.insert("rule".into());
            }
        }
        let counters = &snap["counters"];
        if counters["broadcast_deliveries_failed"].as_u64() > Some(0) {
            seen.insert("counted failures".into());
        }
        let acked_in = snap["broadcast_agencies"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|agencies| agencies.as_object().unwrap().values())
            .any(|r| r["ack_seconds"].is_i64());
        if acked_in {
            seen.insert("ack_seconds".into());
        }
        let listed: std::collections::BTreeSet<_> = log
            .events
            .iter()
            .filter(|e| {
                e.event_type == "BroadcastIssued" && e.data["audience"] != "crisis_managers"
            })
            .map(|e| e.stream.id())
            .collect();
        if listed.len() > crate::situation::MAX_BROADCASTS {
            seen.insert("more than listed".into());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "ack_seconds",
            "acked",
            "counted failures",
            "delivered",
            "escalated",
            "exercise",
            "failed",
            "internal",
            "more than listed",
            "resent",
            "rule",
            "sent",
            "status awaiting_approval",
            "status cancelled",
            "status live",
        ]
    );
}

#[test]
fn the_crowded_logs_bring_markers_into_view_at_the_end_of_the_list() {
    // Guards the generator of `more_markers_than_a_country_shows_keep_the_delta_contract`:
    // its logs must crowd a country past `MAX_MARKERS` and then close or move shown ones, so
    // that a marker comes into view at index 99.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = proptest::collection::vec(crowded_incident(), 600..=600);
    let mut into_view = 0;
    for _ in 0..5 {
        let log = log_of(&steps.new_tree(&mut runner).unwrap().current());
        let mut board = Situation::new();
        for event in &log.events {
            let changes = board.apply(typed(event));
            let ops = board.delta(&changes, View::WallScreen);
            // A shown marker dropped, and the next one brought in at the end of the list.
            let dropped = ops.iter().any(|op| matches!(op, crate::Op::Drop { .. }));
            let brought = ops
                .iter()
                .any(|op| matches!(op, crate::Op::Item { at: 99, .. }));
            into_view += usize::from(dropped && brought);
        }
    }
    assert!(
        into_view > 0,
        "no marker came into view at the end of a full list"
    );
}

#[test]
fn the_generated_logs_reach_every_family() {
    // Guards the generator: a property test over logs that never open a case proves little.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = proptest::collection::vec(step(), 200..=200);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let log = log_of(&steps.new_tree(&mut runner).unwrap().current());
        let snap = log.snapshot(View::Duty);
        for country in snap["countries"].as_object().unwrap().values() {
            for key in ["markers", "surges", "orders"] {
                if !country[key].as_array().unwrap().is_empty() {
                    seen.insert(key.to_owned());
                }
            }
            if country["hostage"]["cases"] != 0 {
                seen.insert("hostage".into());
            }
            if !country["areas"].as_object().unwrap().is_empty() {
                seen.insert("areas".into());
            }
        }
        if !snap["broadcasts"].as_array().unwrap().is_empty() {
            seen.insert("broadcasts".into());
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [
            "areas",
            "broadcasts",
            "hostage",
            "markers",
            "orders",
            "surges"
        ]
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// The cuts of the wall screen view (a field officer's country, a focal point's agency):
    /// never another country's entry or timeline item for an officer, never a broadcast, and
    /// the cut snapshot plus the cut deltas equals the cut of the fold (logs shorter than
    /// the timeline's limit, see `crate::scope`).
    #[test]
    fn a_country_cut_holds_only_that_country_and_keeps_the_delta_contract(
        steps in proptest::collection::vec(step(), 0..190),
        k in any::<proptest::sample::Index>(),
        own in country(),
        agency in any::<bool>(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board();
        let cut = if agency { crate::Cut::Agency } else { crate::Cut::Country(Some(own)) };
        let whole = crate::scope_snapshot(&board.snapshot(View::WallScreen), cut);
        for (code, _) in whole["countries"].as_object().unwrap() {
            prop_assert!(agency || code.as_str() == own.as_str());
        }
        for item in whole["timeline"].as_array().unwrap() {
            prop_assert!(agency || item["country"].as_str() == Some(own.as_str()));
            prop_assert!(item["kind"] != "broadcast");
        }
        prop_assert_eq!(&whole["broadcasts"], &json!([]));
        let mut live = crate::replay(&log.events[..k]);
        let mut page = crate::scope_snapshot(&live.snapshot(View::WallScreen), cut);
        for event in &log.events[k..] {
            let changes = live.apply(typed(event));
            let ops = crate::scope_ops(&live.delta(&changes, View::WallScreen), cut);
            crate::apply_ops(&mut page, &ops);
            page["position"] = Value::from(live.position());
            page["as_of"] = live.as_of().map_or(Value::Null, crate::timestamp);
        }
        prop_assert_eq!(page, whole, "k = {}", k);
    }
}

/// The page after the deltas of `events[k..]`, merged `chunk` at a time with `merge_ops` as
/// the gateway merges them for a client that fell behind (`cut`: a scoped connection, whose
/// ops are cut before they are merged); and the page after the same deltas one by one.
fn merged_and_one_by_one(
    events: &[RecordedEvent],
    k: usize,
    chunk: usize,
    view: View,
    cut: Option<crate::Cut>,
) -> (Value, Value) {
    let mut board = crate::replay(&events[..k]);
    let snapshot = board.snapshot(view);
    let snapshot = cut.map_or(snapshot.clone(), |c| crate::scope_snapshot(&snapshot, c));
    let (mut merged, mut one_by_one) = (snapshot.clone(), snapshot);
    for run in events[k..].chunks(chunk.max(1)) {
        let mut ops = Vec::new();
        for event in run {
            let changes = board.apply(typed(event));
            let delta = board.delta(&changes, view);
            let delta = cut.map_or(delta.clone(), |c| crate::scope_ops(&delta, c));
            apply_ops(&mut one_by_one, &delta);
            ops.extend(delta);
        }
        let short = crate::merge_ops(&ops);
        assert!(short.len() <= ops.len());
        apply_ops(&mut merged, &short);
    }
    (merged, one_by_one)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A client that fell behind gets merged deltas: the page they make is the page the
    /// deltas make one by one, in every view and cut, and the board's snapshot.
    #[test]
    fn merged_deltas_make_the_page_the_deltas_make(
        steps in proptest::collection::vec(step(), 0..220),
        k in any::<proptest::sample::Index>(),
        chunk in 1usize..80,
        own in country(),
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board();
        for view in View::ALL {
            let (mut merged, one_by_one) = merged_and_one_by_one(&log.events, k, chunk, view, None);
            prop_assert_eq!(&merged, &one_by_one, "k = {}, chunk = {}, {:?}", k, chunk, view);
            merged["position"] = Value::from(board.position());
            merged["as_of"] = board.as_of().map_or(Value::Null, timestamp);
            prop_assert_eq!(merged, board.snapshot(view), "k = {}, {:?}", k, view);
        }
        for cut in [crate::Cut::Agency, crate::Cut::Country(Some(own))] {
            let (merged, one_by_one) =
                merged_and_one_by_one(&log.events, k, chunk, View::WallScreen, Some(cut));
            prop_assert_eq!(merged, one_by_one, "k = {}, chunk = {}, {:?}", k, chunk, cut);
        }
    }

    /// The same past `MAX_MARKERS`, where markers come into view at the end of the list.
    #[test]
    fn merged_deltas_keep_the_contract_past_the_markers_shown(
        steps in proptest::collection::vec(crowded_incident(), 0..400),
        k in any::<proptest::sample::Index>(),
        chunk in 1usize..200,
    ) {
        let log = log_of(&steps);
        let k = k.index(log.events.len() + 1);
        let board = log.board();
        for view in View::ALL {
            let (mut merged, one_by_one) = merged_and_one_by_one(&log.events, k, chunk, view, None);
            prop_assert_eq!(&merged, &one_by_one, "k = {}, chunk = {}, {:?}", k, chunk, view);
            merged["position"] = Value::from(board.position());
            merged["as_of"] = board.as_of().map_or(Value::Null, timestamp);
            prop_assert_eq!(merged, board.snapshot(view), "k = {}, {:?}", k, view);
        }
    }
}
