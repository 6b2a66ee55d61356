use super::broadcast::*;
use super::clearance::*;
use super::hostage::*;
use super::incident::*;
use super::level::*;
use super::relocation::*;
use super::surge::*;
use super::surge_officer::*;
use super::*;
use crate::codec::{self, Limits};
use crate::envelope::{Category, StreamName};
use crate::validate::{COUNTRY_CODES, Country, SecurityLevel, Severity};
use proptest::prelude::*;
use serde_json::json;
use time::macros::{date, datetime};
use time::{Date, OffsetDateTime, UtcOffset};

fn country(c: &str) -> Country {
    Country::parse(c).unwrap()
}

fn record(event_type: &str, v: u32, category: &str, data: Value) -> RecordedEvent {
    let id = Uuid::from_u128(0x42);
    let new = NewEvent {
        id,
        event_type: event_type.into(),
        v,
        data,
        meta: Meta::default(),
    };
    let stream = StreamName::new(Category::parse(category).unwrap(), Uuid::from_u128(9));
    RecordedEvent::record(new, stream, 1, 1, datetime!(2024-05-01 10:00 UTC))
}

fn recorded(ev: &DomainEvent) -> RecordedEvent {
    let new = ev
        .try_to_new_event(Uuid::from_u128(1), Meta::default())
        .unwrap();
    record(&new.event_type, new.v, ev.category(), new.data)
}

/// One valid event of every type.
fn samples() -> Vec<DomainEvent> {
    let at = datetime!(2024-05-01 10:00 UTC);
    let id = || "user.1".to_owned();
    let reason = || "a reason".to_owned();
    let loc = Location {
        lat: 2.04,
        lon: 45.3,
        accuracy_m: Some(10.0),
    };
    vec![
        IncidentReported {
            country: country("SO"),
            category: IncidentCategory::Terrorism,
            severity: Severity::new(5).unwrap(),
            title: "IED on the airport road".into(),
            occurred_at: at,
            location: Some(loc),
            duty_station: Some("SOM-MGQ".into()),
            description: Some("Convoy hit.".into()),
            casualties: Some(Casualties {
                killed: 1,
                injured: 3,
            }),
            reporter: id(),
        }
        .into(),
        IncidentUpdated {
            note: Some("more detail".into()),
            ..Default::default()
        }
        .into(),
        IncidentVerified {
            by: id(),
            note: None,
        }
        .into(),
        IncidentEscalated {
            to: Escalation {
                kind: EscalationKind::Surge,
                id: Uuid::from_u128(5),
            },
            reason: reason(),
        }
        .into(),
        IncidentClosed { reason: reason() }.into(),
        AreaSecurityLevelSet {
            area: "SOM".into(),
            country: country("SO"),
            level: SecurityLevel::Substantial,
            reason: reason(),
            previous_level: None,
        }
        .into(),
        area::AreaRegistered {
            area: "SOM-BAN".into(),
            country: country("SO"),
            name: "Banaadir".into(),
        }
        .into(),
        station::DutyStationRegistered {
            station: "SOM-MGQ".into(),
            country: country("SO"),
            area: "SOM-BAN".into(),
            name: "Mogadishu".into(),
            lat: 2.04,
            lon: 45.3,
        }
        .into(),
        person::PersonRegistered {
            person: "P-1".into(),
            name: "Amina Hassan".into(),
            agency: "unicef".into(),
            nationality: country("KE"),
            duty_station: "SOM-MGQ".into(),
            dependants: 2,
            security_officer: false,
            essential: true,
        }
        .into(),
        agency::AgencyRegistered {
            agency: "unicef".into(),
            name: "UNICEF".into(),
            countries: vec![country("ML"), country("SO")],
        }
        .into(),
        HostageCaseOpened {
            incident_id: Uuid::from_u128(2),
            country: country("ML"),
            persons: vec!["p-1".into()],
            captors: None,
            location: None,
        }
        .into(),
        ProofOfLifeReceived {
            person: "p-1".into(),
            at,
            note: "photo".into(),
        }
        .into(),
        NegotiationContactLogged {
            at,
            summary: "call".into(),
        }
        .into(),
        HostageReleased {
            person: "p-1".into(),
            at,
        }
        .into(),
        HostageDeceased {
            person: "p-2".into(),
            at,
        }
        .into(),
        HostageCaseClosed {
            outcome: "released".into(),
            accounting: vec![PersonAccount {
                person: "p-1".into(),
                status: HostageOutcome::Released,
                note: None,
            }],
        }
        .into(),
        SurgeRequested {
            duty_station: "HTI-PAP".into(),
            country: country("HT"),
            reason: reason(),
            officers_needed: 4,
            assets: vec![],
        }
        .into(),
        SurgeApproved { by: id() }.into(),
        SurgeRejected {
            by: id(),
            reason: reason(),
        }
        .into(),
        SurgeOfficerAssigned {
            officer: "o.1".into(),
            from_duty_station: "KEN-NBO".into(),
        }
        .into(),
        SurgeDeployed { at }.into(),
        SurgeCompleted { at }.into(),
        SurgeCancelled {
            by: id(),
            reason: reason(),
        }
        .into(),
        SurgeOfficerReserved {
            officer: "o.1".into(),
            surge: Uuid::from_u128(7),
            command: Uuid::from_u128(8),
            from_duty_station: "KEN-NBO".into(),
        }
        .into(),
        SurgeOfficerReleased {
            officer: "o.1".into(),
            surge: Uuid::from_u128(7),
            command: Uuid::from_u128(8),
        }
        .into(),
        RelocationOrdered {
            kind: OrderKind::Relocation,
            country: country("SD"),
            area: None,
            duty_station: Some("SDN-KRT".into()),
            scope: Scope::AllPersonnel,
            destination: "Port Sudan".into(),
            deadline: at,
        }
        .into(),
        RollCallEntryAdded {
            person: "p-3".into(),
            agency: None,
            duty_station: None,
            dependants: 0,
        }
        .into(),
        PersonMarked {
            person: "p-3".into(),
            status: PersonStatus::Safe,
            by: id(),
            note: None,
        }
        .into(),
        OrderCompleted { note: None }.into(),
        OrderRescinded { reason: reason() }.into(),
        PersonArrivedInArea {
            person: "p-4".into(),
            agency: Some("wfp".into()),
            duty_station: Some("SDN-KRT".into()),
            dependants: 1,
            cause: PresenceCause::Assignment,
        }
        .into(),
        PersonLeftArea {
            person: "p-4".into(),
            cause: PresenceCause::Clearance,
        }
        .into(),
        ClearanceRequested {
            traveller: "t.1".into(),
            itinerary: vec![Leg {
                country: country("AF"),
                area: None,
                from: date!(2024 - 06 - 01),
                to: date!(2024 - 06 - 03),
            }],
            purpose: None,
        }
        .into(),
        ClearanceApproved { by: id() }.into(),
        ClearanceRefused {
            by: id(),
            reason: reason(),
        }
        .into(),
        ArrivalRecorded {
            country: country("AF"),
            at,
        }
        .into(),
        DepartureRecorded {
            country: country("AF"),
            at,
        }
        .into(),
        BroadcastIssued {
            title: "Curfew".into(),
            body: "Stay in.".into(),
            severity: BroadcastSeverity::Critical,
            audience: Audience::AllAgencies,
            requires_ack: true,
            ack_deadline: None,
            exercise: true,
            updates: None,
            cancels: None,
            recipients: vec!["wfp".into()],
            rule: None,
        }
        .into(),
        BroadcastApproved { by: id() }.into(),
        BroadcastDeliveryAttempted {
            agency: "wfp".into(),
            channel: Channel::Webhook,
            round: 1,
            attempt: 2,
        }
        .into(),
        BroadcastDelivered {
            agency: "wfp".into(),
            channel: Channel::Webhook,
            attempt: 2,
            round: 1,
        }
        .into(),
        BroadcastDeliveryFailed {
            agency: "wfp".into(),
            channel: Channel::Webhook,
            round: 1,
            attempt: 1,
            error: reason(),
            gave_up: false,
        }
        .into(),
        BroadcastAcknowledged {
            agency: "wfp".into(),
            by: id(),
        }
        .into(),
        BroadcastResent {
            agencies: vec!["wfp".into()],
        }
        .into(),
        BroadcastEscalated {
            reason: reason(),
            agencies: vec![],
        }
        .into(),
        BroadcastCancelled {
            reason: reason(),
            by_broadcast: None,
        }
        .into(),
        BroadcastTriggerSuppressed {
            rule: id(),
            trigger: Uuid::from_u128(4),
        }
        .into(),
    ]
}

#[test]
fn the_type_table_is_consistent() {
    let samples = samples();
    assert_eq!(
        samples.len(),
        DomainEvent::TYPES.len(),
        "one sample per type"
    );
    for (ev, (t, cat, v)) in samples.iter().zip(DomainEvent::TYPES) {
        assert_eq!(
            (ev.event_type(), ev.category(), ev.schema_version()),
            (*t, *cat, *v)
        );
        assert!(Category::parse(cat).is_ok());
    }
    for (i, (t, _, _)) in DomainEvent::TYPES.iter().enumerate() {
        assert!(
            DomainEvent::TYPES[..i].iter().all(|(u, _, _)| u != t),
            "{t} twice"
        );
    }
    for u in UPCASTERS {
        let current = DomainEvent::current_version(u.event_type).unwrap();
        assert!(
            u.from_v < current,
            "{u:?} upgrades past the current version"
        );
    }
    assert_eq!(
        DomainEvent::current_version("AreaSecurityLevelSet"),
        Some(2)
    );
    assert_eq!(DomainEvent::current_version("Nope"), None);
}

#[test]
fn every_event_type_round_trips() {
    for ev in samples() {
        assert!(ev.validate().is_ok(), "{ev:?}");
        let rec = recorded(&ev);
        assert_eq!(rec.event_type, ev.event_type());
        let back = codec::decode_recorded(&codec::encode(&rec)).unwrap();
        assert_eq!(DomainEvent::decode(&back), Decoded::Known(ev.clone()));
        let json = serde_json::to_string(&ev).unwrap();
        assert_eq!(serde_json::from_str::<DomainEvent>(&json).unwrap(), ev);
    }
}

#[test]
fn a_v1_level_change_is_upcast_on_read() {
    let v1 = json!({"area": "SOM", "country": "SO", "level": 4, "note": "attacks"});
    let got = DomainEvent::decode(&record("AreaSecurityLevelSet", 1, "level", v1));
    let want = AreaSecurityLevelSet {
        area: "SOM".into(),
        country: country("SO"),
        level: SecurityLevel::Substantial,
        reason: "attacks".into(),
        previous_level: None,
    };
    assert_eq!(got, Decoded::Known(want.into()));
    // A v2 event with the old field name is not silently accepted.
    let stale = json!({"area": "SOM", "country": "SO", "level": 4, "note": "attacks"});
    let got = DomainEvent::decode(&record("AreaSecurityLevelSet", 2, "level", stale));
    assert!(matches!(got, Decoded::Unknown { .. }));
}

fn unknown_reason(d: Decoded<DomainEvent>) -> String {
    match d {
        Decoded::Unknown { reason } => reason,
        Decoded::Known(e) => panic!("expected Unknown, got {e:?}"),
    }
}

#[test]
fn what_cannot_be_read_is_unknown_with_a_reason() {
    let r = unknown_reason(DomainEvent::decode(&record(
        "VehicleTracked",
        1,
        "fleet",
        json!({}),
    )));
    assert_eq!(r, r#"unknown event type "VehicleTracked""#);
    let closed = json!({"reason": "done"});
    let r = unknown_reason(DomainEvent::decode(&record(
        "IncidentClosed",
        2,
        "incident",
        closed.clone(),
    )));
    assert!(r.contains("newer than this build"), "{r}");
    let r = unknown_reason(DomainEvent::decode(&record(
        "IncidentClosed",
        0,
        "incident",
        closed,
    )));
    assert!(r.contains("no upcaster"), "{r}");
    let seven = json!({"area": "SOM", "country": "SO", "level": 7, "reason": "r"});
    let r = unknown_reason(DomainEvent::decode(&record(
        "AreaSecurityLevelSet",
        2,
        "level",
        seven,
    )));
    assert!(r.contains("level: 7 is not a security level"), "{r}");
    let blank = json!({"reason": "  "});
    let r = unknown_reason(DomainEvent::decode(&record(
        "IncidentClosed",
        1,
        "incident",
        blank,
    )));
    assert_eq!(
        r,
        "IncidentClosed v1: invalid data: reason: must not be blank"
    );
    let r = unknown_reason(DomainEvent::decode(&record(
        "IncidentClosed",
        1,
        "incident",
        json!({"reason": 5}),
    )));
    assert!(r.starts_with("IncidentClosed v1: unreadable data"), "{r}");
    let r = unknown_reason(DomainEvent::decode(&record(
        "IncidentClosed",
        1,
        "incident",
        json!(["done"]),
    )));
    assert_eq!(r, "IncidentClosed v1: data must be a JSON object");
    let long = "X".repeat(10_000);
    assert!(unknown_reason(DomainEvent::decode(&record(&long, 1, "x", Value::Null))).len() < 100);
}

// ---- property tests ----

fn arb_country() -> impl Strategy<Value = Country> {
    proptest::sample::select(&COUNTRY_CODES[..]).prop_map(country)
}

fn arb_text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9é][ -~é漢\n]{0,40}"
}

/// A single-line text (a title).
fn arb_line() -> impl Strategy<Value = String> {
    "[A-Za-z0-9é][ -~é漢]{0,40}"
}

fn arb_id() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9._-]{0,20}"
}

fn arb_time() -> impl Strategy<Value = OffsetDateTime> {
    (
        946_684_800i128..4_102_444_800,
        0i128..1_000_000_000,
        -720i32..=840,
    )
        .prop_map(|(s, ns, min)| {
            let utc = OffsetDateTime::from_unix_timestamp_nanos(s * 1_000_000_000 + ns).unwrap();
            utc.to_offset(UtcOffset::from_whole_seconds(min * 60).unwrap())
        })
}

fn arb_location() -> impl Strategy<Value = Location> {
    // Micro-degrees and decimetres: values whose JSON text reads back bit for bit.
    (
        -90_000_000i32..=90_000_000,
        -180_000_000i32..=180_000_000,
        proptest::option::of(0u32..=1_000_000),
    )
        .prop_map(|(lat, lon, acc)| Location {
            lat: f64::from(lat) / 1e6,
            lon: f64::from(lon) / 1e6,
            accuracy_m: acc.map(|a| f64::from(a) / 10.0),
        })
}

fn arb_incident() -> impl Strategy<Value = DomainEvent> {
    let category = proptest::sample::select(vec![
        IncidentCategory::ArmedConflict,
        IncidentCategory::Terrorism,
        IncidentCategory::Crime,
        IncidentCategory::CivilUnrest,
        IncidentCategory::Hazard,
        IncidentCategory::RoadTraffic,
        IncidentCategory::Other,
    ]);
    let severity = (1i64..=5).prop_map(|n| Severity::new(n).unwrap());
    let casualties =
        (any::<u32>(), any::<u32>()).prop_map(|(killed, injured)| Casualties { killed, injured });
    // What every report has, then what it may leave out (and who reported it).
    let reported = (
        (
            arb_country(),
            category,
            severity.clone(),
            arb_line(),
            arb_time(),
        ),
        (
            proptest::option::of(arb_location()),
            proptest::option::of(arb_id()),
            proptest::option::of(arb_text()),
            proptest::option::of(casualties),
            arb_id(),
        ),
    )
        .prop_map(
            |(
                (country, category, severity, title, occurred_at),
                (location, duty_station, description, casualties, reporter),
            )| {
                DomainEvent::from(IncidentReported {
                    country,
                    category,
                    severity,
                    title,
                    occurred_at,
                    location,
                    duty_station,
                    description,
                    casualties,
                    reporter,
                })
            },
        );
    let updated = (
        proptest::option::of(severity),
        proptest::option::of(arb_line()),
        proptest::option::of(arb_time()),
        proptest::option::of(arb_location()),
        arb_text(),
    )
        .prop_map(|(severity, title, occurred_at, location, note)| {
            DomainEvent::from(IncidentUpdated {
                severity,
                title,
                occurred_at,
                location,
                note: Some(note),
                ..Default::default()
            })
        });
    let kind = proptest::sample::select(vec![
        EscalationKind::HostageCase,
        EscalationKind::Surge,
        EscalationKind::RelocationOrder,
    ]);
    prop_oneof![
        reported,
        updated,
        (arb_id(), proptest::option::of(arb_text())).prop_map(|(by, note)| IncidentVerified {
            by,
            note
        }
        .into()),
        (kind, any::<u128>(), arb_text()).prop_map(|(kind, id, reason)| {
            IncidentEscalated {
                to: Escalation {
                    kind,
                    id: Uuid::from_u128(id),
                },
                reason,
            }
            .into()
        }),
        arb_text().prop_map(|reason| IncidentClosed { reason }.into()),
    ]
}

fn arb_level() -> impl Strategy<Value = DomainEvent> {
    let level = || (1i64..=6).prop_map(|n| SecurityLevel::new(n).unwrap());
    (
        arb_id(),
        arb_country(),
        level(),
        arb_text(),
        proptest::option::of(level()),
    )
        .prop_map(|(area, country, level, reason, previous_level)| {
            AreaSecurityLevelSet {
                area,
                country,
                level,
                reason,
                previous_level,
            }
            .into()
        })
}

fn arb_broadcast() -> impl Strategy<Value = DomainEvent> {
    let severity = proptest::sample::select(vec![
        BroadcastSeverity::Info,
        BroadcastSeverity::Low,
        BroadcastSeverity::Medium,
        BroadcastSeverity::High,
        BroadcastSeverity::Critical,
    ]);
    let audience = prop_oneof![
        Just(Audience::AllAgencies),
        arb_country().prop_map(Audience::Country),
        proptest::collection::btree_set(arb_id(), 1..10)
            .prop_map(|s| Audience::Agencies(s.into_iter().collect())),
    ];
    let issued = (
        arb_line(),
        arb_text(),
        severity,
        audience,
        proptest::option::of(arb_time()),
        any::<bool>(),
        proptest::option::of(any::<u128>()),
    )
        .prop_map(
            |(title, body, severity, audience, ack_deadline, exercise, updates)| {
                DomainEvent::from(BroadcastIssued {
                    title,
                    body,
                    severity,
                    audience,
                    requires_ack: ack_deadline.is_some() || exercise,
                    ack_deadline,
                    exercise,
                    updates: updates.map(Uuid::from_u128),
                    cancels: None,
                    recipients: vec![],
                    rule: None,
                })
            },
        );
    let channel = proptest::sample::select(vec![Channel::Nats, Channel::Webhook, Channel::Cap]);
    prop_oneof![
        issued,
        (arb_id(), channel, 1u32..10).prop_map(|(agency, channel, attempt)| {
            BroadcastDelivered {
                agency,
                channel,
                attempt,
                round: 1,
            }
            .into()
        }),
        (arb_id(), arb_id()).prop_map(|(agency, by)| BroadcastAcknowledged { agency, by }.into()),
        arb_text().prop_map(|reason| BroadcastEscalated {
            reason,
            agencies: vec![]
        }
        .into()),
        arb_text().prop_map(|reason| BroadcastCancelled {
            reason,
            by_broadcast: None
        }
        .into()),
    ]
}

fn arb_clearance() -> impl Strategy<Value = DomainEvent> {
    let leg = (
        arb_country(),
        proptest::option::of(arb_id()),
        2_451_545i32..2_488_070,
        0i32..60,
    )
        .prop_map(|(country, area, jd, days)| Leg {
            country,
            area,
            from: Date::from_julian_day(jd).unwrap(),
            to: Date::from_julian_day(jd + days).unwrap(),
        });
    (
        arb_id(),
        proptest::collection::vec(leg, 1..=20),
        proptest::option::of(arb_text()),
    )
        .prop_map(|(traveller, itinerary, purpose)| {
            ClearanceRequested {
                traveller,
                itinerary,
                purpose,
            }
            .into()
        })
}

fn arb_event() -> impl Strategy<Value = DomainEvent> {
    prop_oneof![
        arb_incident(),
        arb_level(),
        arb_broadcast(),
        arb_clearance()
    ]
}

/// Field names the events use, so random objects sometimes look almost right.
const KEYS: &[&str] = &[
    "country",
    "category",
    "severity",
    "title",
    "occurred_at",
    "location",
    "lat",
    "lon",
    "accuracy_m",
    "reporter",
    "reason",
    "note",
    "level",
    "area",
    "persons",
    "itinerary",
    "from",
    "to",
    "kind",
    "id",
    "audience",
    "agencies",
    "body",
    "requires_ack",
    "exercise",
    "accounting",
    "status",
    "person",
    "at",
    "by",
    "agency",
    "channel",
    "attempt",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let text = prop_oneof![
        proptest::sample::select(vec![
            "SO",
            "so",
            "2024-05-01T10:00:00Z",
            "2024-02-30",
            "armed_conflict",
            "all_agencies",
            "",
            " "
        ])
        .prop_map(str::to_owned),
        ".{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-2i64..10).prop_map(Value::from),
        text.prop_map(Value::from),
    ];
    let key = prop_oneof![
        proptest::sample::select(KEYS).prop_map(str::to_owned),
        "[a-z_]{1,8}"
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn arb_mutated_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        arb_event(),
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
    )
        .prop_map(|(ev, edits)| {
            let mut bytes = codec::encode(&recorded(&ev));
            for (at, b) in edits {
                let i = at % bytes.len();
                if b % 3 == 0 {
                    bytes.remove(i);
                } else {
                    bytes[i] = b;
                }
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn well_formed_events_round_trip(ev in arb_event()) {
        prop_assert!(ev.validate().is_ok(), "{:?}", ev.validate());
        let bytes = codec::encode(&recorded(&ev));
        let back = codec::decode_recorded(&bytes).unwrap();
        prop_assert_eq!(DomainEvent::decode(&back), Decoded::Known(ev));
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop_oneof![proptest::collection::vec(any::<u8>(), 0..512), arb_mutated_bytes()]
    ) {
        let _ = codec::decode_recorded(&bytes);
        let _ = codec::decode_append(&bytes, &Limits::default());
        let _ = serde_json::from_slice::<DomainEvent>(&bytes);
        let _ = serde_json::from_slice::<IncidentReported>(&bytes);
        let _ = serde_json::from_slice::<BroadcastIssued>(&bytes);
        let _ = serde_json::from_slice::<ClearanceRequested>(&bytes);
        let _ = serde_json::from_slice::<Country>(&bytes);
        let _ = serde_json::from_slice::<SecurityLevel>(&bytes);
        if let Ok(rec) = codec::decode_recorded(&bytes) {
            let _ = DomainEvent::decode(&rec);
        }
    }

    #[test]
    fn arbitrary_data_never_panics(
        t in proptest::sample::select(DomainEvent::TYPES),
        v in 0u32..4,
        data in arb_json(),
    ) {
        let (event_type, category, _) = t;
        if let Decoded::Known(ev) = DomainEvent::decode(&record(event_type, v, category, data)) {
            prop_assert_eq!(ev.event_type(), event_type);
            prop_assert!(ev.validate().is_ok());
        }
    }

    #[test]
    fn a_valid_event_with_one_field_replaced_never_panics(
        ev in arb_event(), key in proptest::sample::select(KEYS), value in proptest::option::of(arb_json()),
    ) {
        let mut rec = recorded(&ev);
        if let Some(obj) = rec.data.as_object_mut() {
            match value {
                Some(v) => obj.insert(key.to_owned(), v),
                None => obj.remove(key),
            };
        }
        let _ = DomainEvent::decode(&rec);
    }
}
