//! Given the events of an order's stream (and what the centre knows), when a command
//! arrives, then these events or this refusal.
use super::*;
use events::command::{RefusalCode, Role};
use events::domain::clearance::{ClearanceApproved, ClearanceRequested, Leg};
use events::domain::relocation::OrderKind;
use events::{Meta, StreamName};
use proptest::prelude::*;
use serde_json::json;
use testkit::actor;
use testkit::aggregate::{Given, Stream};
use time::macros::{date, datetime};

const ID: Uuid = Uuid::from_u128(0x5eed);

fn so() -> Country {
    Country::parse("SO").unwrap()
}

fn duty() -> Actor {
    actor(Role::DutyOfficer, None)
}

fn record(stream: &StreamName, events: Vec<DomainEvent>, from: u64) -> Vec<RecordedEvent> {
    events
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            let n = from + i as u64;
            RecordedEvent::record(
                e.to_new_event(Uuid::new_v4(), Meta::default()),
                stream.clone(),
                n,
                n,
                datetime!(2026-11-27 06:00 UTC),
            )
        })
        .collect()
}

fn ordered(area: Option<&str>, scope: Scope) -> RelocationOrdered {
    RelocationOrdered {
        kind: OrderKind::Evacuation,
        country: so(),
        area: area.map(Into::into),
        duty_station: None,
        scope,
        destination: "Nairobi".into(),
        deadline: datetime!(2026-11-28 18:00 UTC),
    }
}

fn person(id: &str, station: &str, dependants: u16, essential: bool) -> PersonRegistered {
    PersonRegistered {
        person: id.into(),
        name: format!("Name of {id}"),
        agency: "unicef".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: station.into(),
        dependants,
        security_officer: false,
        essential,
    }
}

fn station(id: &str, area: &str) -> DutyStationRegistered {
    DutyStationRegistered {
        station: id.into(),
        country: so(),
        area: area.into(),
        name: id.into(),
        lat: 2.0,
        lon: 45.0,
    }
}

/// A centre with two stations in two areas, three people, one approved traveller.
fn reference() -> Reference {
    let mut r = Reference::default();
    let mut pos = 0;
    let mut feed = |stream: StreamName, e: DomainEvent, r: &mut Reference| {
        pos += 1;
        r.apply(&record(&stream, vec![e], pos)[0]);
    };
    use events::domain::{person as p, station as s};
    feed(s::stream_for("MGQ"), station("MGQ", "BAN").into(), &mut r);
    feed(s::stream_for("BAI"), station("BAI", "BAY").into(), &mut r);
    feed(
        p::stream_for("P1"),
        person("P1", "MGQ", 2, false).into(),
        &mut r,
    );
    feed(
        p::stream_for("P2"),
        person("P2", "MGQ", 0, true).into(),
        &mut r,
    );
    feed(
        p::stream_for("P3"),
        person("P3", "BAI", 1, false).into(),
        &mut r,
    );
    let c = events::domain::clearance::stream_for(Uuid::from_u128(1));
    let req = ClearanceRequested {
        traveller: "T1".into(),
        itinerary: vec![Leg {
            country: so(),
            area: Some("BAN".into()),
            from: date!(2026 - 11 - 20),
            to: date!(2026 - 11 - 30),
        }],
        purpose: None,
    };
    feed(c.clone(), req.into(), &mut r);
    feed(c, ClearanceApproved { by: "d".into() }.into(), &mut r);
    r
}

fn people(entries: &[RollCallEntryAdded]) -> Vec<&str> {
    entries.iter().map(|e| e.person.as_str()).collect()
}

#[test]
fn the_roll_call_is_who_is_assigned_or_cleared_there_by_scope() {
    let r = reference();
    let on = date!(2026 - 11 - 27);
    assert_eq!(
        people(&r.roll_call(&ordered(Some("BAN"), Scope::AllPersonnel), on)),
        ["P1", "P2", "T1"]
    );
    assert_eq!(
        people(&r.roll_call(&ordered(Some("BAN"), Scope::NonEssential), on)),
        ["P1", "T1"],
        "P2 is essential; the unknown traveller is kept"
    );
    assert_eq!(
        people(&r.roll_call(&ordered(Some("BAN"), Scope::Dependants), on)),
        ["P1"]
    );
    assert_eq!(
        people(&r.roll_call(&ordered(None, Scope::AllPersonnel), on)),
        ["P1", "P2", "P3", "T1"]
    );
    assert_eq!(
        people(&r.roll_call(
            &ordered(Some("BAN"), Scope::AllPersonnel),
            date!(2026 - 12 - 05)
        )),
        ["P1", "P2"],
        "the traveller's leg is over"
    );
    let mut at_station = ordered(None, Scope::AllPersonnel);
    at_station.duty_station = Some("BAI".into());
    assert_eq!(people(&r.roll_call(&at_station, on)), ["P3"]);
    let entry = &r.roll_call(&ordered(Some("BAN"), Scope::AllPersonnel), on)[0];
    assert_eq!(
        (entry.agency.as_deref(), entry.dependants),
        (Some("unicef"), 2)
    );
}

/// Order [`ID`]'s stream: events at positions 1, 2, … (version = position), all recorded
/// at 06:00.
fn order() -> Stream<Order> {
    Stream::new(ID, |_| ())
        .positions(1, 1)
        .recorded(datetime!(2026-11-27 06:00 UTC), time::Duration::ZERO)
}

/// An evacuation of area BAN given with its roll call (P1, P2, T1).
fn given_order() -> Given<Order> {
    let r = reference();
    let o = ordered(Some("BAN"), Scope::AllPersonnel);
    let roll = r.roll_call(&o, date!(2026 - 11 - 27));
    order().given(decide_order(None, &duty(), o, roll).unwrap())
}

fn relocation_stream() -> StreamName {
    events::domain::relocation::stream_for(ID)
}

fn when(
    history: &[RecordedEvent],
    who: &Actor,
    name: &str,
    body: serde_json::Value,
) -> Result<Vec<DomainEvent>, Refusal> {
    Order::decide(
        ID,
        Order::fold(history).as_ref(),
        who,
        parse(name, body)?,
        &(),
    )
}

#[test]
fn the_life_of_an_order() {
    let mut history = given_order();
    let o = history.state().unwrap();
    assert_eq!(o.tally().total, 3);
    assert_eq!(o.tally().accounted_pct, 0.0);
    let fso = actor(Role::FieldOfficer, Some("SO"));
    let marked = history
        .when(&fso, "mark", json!({"person": "P1", "status": "safe"}))
        .result()
        .unwrap();
    history = history.and(marked);
    assert_eq!(
        history
            .when(&fso, "mark", json!({"person": "P1", "status": "safe"}))
            .result()
            .unwrap_err()
            .code,
        RefusalCode::Conflict,
        "already safe"
    );
    let many = history
        .when(
            &duty(),
            "mark_many",
            json!({"persons": ["P1", "P2", "T1"], "status": "safe"}),
        )
        .result()
        .unwrap();
    assert_eq!(many.len(), 2, "P1 is skipped: already safe");
    history = history.and(many);
    let o = history.state().unwrap();
    assert_eq!((o.tally().accounted, o.tally().accounted_pct), (3, 100.0));
    assert_eq!(
        o.roll_call["P1"].marked_by.as_deref(),
        Some("field_officer.user")
    );
    assert_eq!(
        history
            .when(&fso, "complete", json!({}))
            .result()
            .unwrap_err()
            .code,
        RefusalCode::Forbidden,
        "a field officer marks but does not complete"
    );
    let done = history
        .when(&duty(), "complete", json!({"note": "all out"}))
        .events();
    history = history.and(done);
    assert_eq!(history.state().unwrap().status, Status::Completed);
    for (name, body) in [
        ("mark", json!({"person": "P1", "status": "missing"})),
        ("rescind", json!({"reason": "late"})),
        ("complete", json!({})),
    ] {
        assert_eq!(
            history.when(&duty(), name, body).result().unwrap_err().code,
            RefusalCode::Conflict,
            "{name}"
        );
    }
}

#[test]
fn refusals_and_findings() {
    let history = given_order();
    let ke = actor(Role::FieldOfficer, Some("KE"));
    history
        .when(&ke, "mark", json!({"person": "P1", "status": "safe"}))
        .refused(RefusalCode::NotFound);
    history
        .when(&duty(), "mark", json!({"person": "P9", "status": "safe"}))
        .refused(RefusalCode::NotFound);
    history
        .when(&duty(), "mark", json!({"person": "P1", "status": "fine"}))
        .refused(RefusalCode::Invalid);
    history
        .when(
            &duty(),
            "mark_many",
            json!({"persons": [], "status": "safe"}),
        )
        .refused(RefusalCode::Invalid);
    history
        .when(
            &duty(),
            "mark_many",
            json!({"persons": ["P1", "P1"], "status": "safe"}),
        )
        .refused(RefusalCode::Invalid);
    order()
        .given(vec![])
        .when(&duty(), "rescind", json!({"reason": "r"}))
        .refused(RefusalCode::NotFound);
    history
        .when(
            &actor(Role::WallScreen, None),
            "mark",
            json!({"person": "P1", "status": "safe"}),
        )
        .refused(RefusalCode::Forbidden);
    assert_eq!(
        decide_order(
            history.state().as_ref(),
            &duty(),
            ordered(None, Scope::AllPersonnel),
            vec![]
        )
        .unwrap_err()
        .code,
        RefusalCode::Conflict
    );
    assert_eq!(
        decide_order(
            None,
            &actor(Role::AgencyFocalPoint, None),
            ordered(None, Scope::AllPersonnel),
            vec![]
        )
        .unwrap_err()
        .code,
        RefusalCode::Forbidden
    );
    let o = history.state().unwrap();
    assert!(
        o.findings(datetime!(2026-11-28 12:00 UTC)).is_empty(),
        "before the deadline"
    );
    assert_eq!(
        o.findings(datetime!(2026-11-29 00:00 UTC)),
        ["P1", "P2", "T1"]
    );
    assert!(!visible(&ke, &o));
    assert!(visible(&actor(Role::FieldOfficer, Some("SO")), &o));
}

/// The relocation register reduced to what decides presence: it folds a log the way
/// the service's register does, and stores the changes it decides like the service's
/// background task (under their ids, in the order's stream).
#[derive(Default)]
struct Centre {
    reference: Reference,
    tracker: Tracker,
    order: Option<Order>,
    log: Vec<RecordedEvent>,
}

impl Centre {
    fn fold(&mut self, e: &RecordedEvent) {
        if e.stream.category().as_str() == "relocation" {
            Order::apply(&mut self.order, e);
            self.tracker.follow_order(e);
        } else if let Some((person, cause)) = self.reference.apply(e) {
            self.tracker.moved(&self.reference, e, &person, cause);
        }
    }

    fn append(&mut self, stream: &StreamName, event: DomainEvent, id: Uuid) -> RecordedEvent {
        let n = self.log.len() as u64 + 1;
        let recorded = RecordedEvent::record(
            event.to_new_event(id, Meta::default()),
            stream.clone(),
            n,
            n,
            datetime!(2026-11-27 06:00 UTC),
        );
        self.log.push(recorded.clone());
        self.fold(&recorded);
        recorded
    }

    fn feed(&mut self, stream: StreamName, event: impl Into<DomainEvent>) -> RecordedEvent {
        self.append(&stream, event.into(), Uuid::new_v4())
    }

    /// Stores what the tracker decided; returns those changes.
    fn store_pending(&mut self) -> Vec<Transition> {
        let changes: Vec<Transition> = self.tracker.pending().into_values().flatten().collect();
        for t in &changes {
            self.append(
                &events::domain::relocation::stream_for(t.order),
                t.event.clone(),
                t.id,
            );
        }
        changes
    }

    /// A centre with [`reference`]'s facts and an order on area BAN, given after them.
    fn with_order() -> Centre {
        let mut c = Centre::default();
        for e in reference_log() {
            c.feed(e.0, e.1);
        }
        let o = ordered(Some("BAN"), Scope::AllPersonnel);
        let roll = c.reference.roll_call(&o, date!(2026 - 11 - 27));
        for e in decide_order(None, &duty(), o, roll).unwrap() {
            c.feed(relocation_stream(), e);
        }
        c
    }

    fn order(&self) -> Order {
        self.order.clone().unwrap()
    }
}

/// The facts of [`reference`], as events.
fn reference_log() -> Vec<(StreamName, DomainEvent)> {
    use events::domain::{person as p, station as s};
    let c = events::domain::clearance::stream_for(Uuid::from_u128(1));
    vec![
        (s::stream_for("MGQ"), station("MGQ", "BAN").into()),
        (s::stream_for("BAI"), station("BAI", "BAY").into()),
        (p::stream_for("P1"), person("P1", "MGQ", 2, false).into()),
        (p::stream_for("P2"), person("P2", "MGQ", 0, true).into()),
        (p::stream_for("P3"), person("P3", "BAI", 1, false).into()),
        (c.clone(), clearance("T1").into()),
        (c, ClearanceApproved { by: "d".into() }.into()),
    ]
}

fn clearance(traveller: &str) -> ClearanceRequested {
    ClearanceRequested {
        traveller: traveller.into(),
        itinerary: vec![Leg {
            country: so(),
            area: Some("BAN".into()),
            from: date!(2026 - 11 - 20),
            to: date!(2026 - 11 - 30),
        }],
        purpose: None,
    }
}

fn flags(o: &Order, person: &str) -> (bool, bool) {
    let e = &o.roll_call[person];
    (e.late_arrival, e.left_area)
}

#[test]
fn people_who_arrive_after_the_order_are_late_arrivals_and_leavers_stay_marked() {
    use events::domain::clearance::{ArrivalRecorded, DepartureRecorded};
    let mut c = Centre::with_order();
    assert_eq!(c.order().tally().total, 3);
    assert!(c.tracker.pending().is_empty(), "the roll call is not late");

    // Given the order, when P3 is assigned to a station in the area and a new traveller's
    // clearance into it is approved, then both arrive late, once each.
    let moved = c.feed(
        events::domain::person::stream_for("P3"),
        person("P3", "MGQ", 1, false),
    );
    let t2 = events::domain::clearance::stream_for(Uuid::from_u128(2));
    c.feed(t2.clone(), clearance("T2"));
    assert_eq!(
        c.tracker.pending()[&ID].len(),
        1,
        "P3 only: a request is not presence"
    );
    let approved = c.feed(t2.clone(), ClearanceApproved { by: "d".into() });
    c.feed(
        t2.clone(),
        ArrivalRecorded {
            country: so(),
            at: datetime!(2026-11-27 05:00 UTC),
        },
    );
    let changes = c.store_pending();
    assert_eq!(
        changes
            .iter()
            .map(|t| (t.id, t.trigger, t.event.clone()))
            .collect::<Vec<_>>(),
        vec![
            (
                presence_id(ID, moved.id, "P3"),
                moved.id,
                PersonArrivedInArea {
                    person: "P3".into(),
                    agency: Some("unicef".into()),
                    duty_station: Some("MGQ".into()),
                    dependants: 1,
                    cause: PresenceCause::Assignment,
                }
                .into()
            ),
            (
                presence_id(ID, approved.id, "T2"),
                approved.id,
                PersonArrivedInArea {
                    person: "T2".into(),
                    agency: None,
                    duty_station: None,
                    dependants: 0,
                    cause: PresenceCause::Clearance,
                }
                .into()
            ),
        ],
        "the arrival after the approval changes nothing: T2 is already on it"
    );
    assert!(c.tracker.pending().is_empty(), "stored changes are settled");
    let o = c.order();
    assert_eq!((o.tally().total, o.tally().late_arrivals), (5, 2));
    assert_eq!(flags(&o, "P3"), (true, false));
    assert_eq!(flags(&o, "P1"), (false, false));

    // When T1 departs and P1 is assigned elsewhere, then both are marked left the area
    // and stay on the roll call; when T1 arrives again, T1 is back.
    let t1 = events::domain::clearance::stream_for(Uuid::from_u128(1));
    c.feed(
        t1.clone(),
        DepartureRecorded {
            country: so(),
            at: datetime!(2026-11-27 05:00 UTC),
        },
    );
    c.feed(
        events::domain::person::stream_for("P1"),
        person("P1", "BAI", 2, false),
    );
    let left = c.store_pending();
    assert!(
        left.iter()
            .all(|t| matches!(t.event, DomainEvent::PersonLeftArea(_)))
    );
    assert_eq!(left.len(), 2);
    let o = c.order();
    assert_eq!((o.tally().total, o.tally().left_area), (5, 2));
    assert_eq!(flags(&o, "T1"), (false, true));
    assert_eq!(flags(&o, "P1"), (false, true));
    c.feed(
        t1,
        ArrivalRecorded {
            country: so(),
            at: datetime!(2026-11-27 05:30 UTC),
        },
    );
    assert_eq!(c.store_pending().len(), 1);
    assert_eq!(flags(&c.order(), "T1"), (false, false), "back in the area");

    // Findings after the deadline: P1 left unmarked, so is not looked for in the area.
    let findings = c.order();
    assert_eq!(
        findings.findings(datetime!(2026-11-29 00:00 UTC)),
        ["P2", "P3", "T1", "T2"]
    );

    // Replaying the whole log derives the same changes, finds them stored, and builds
    // the same order: nothing is appended twice.
    let mut replay = Centre::default();
    for e in c.log.clone() {
        replay.fold(&e);
    }
    assert!(replay.tracker.pending().is_empty(), "everything is stored");
    assert_eq!(replay.order(), c.order());

    // A replay that stops before the changes were stored decides them again, under the
    // same ids: the store keeps each once.
    let mut cut = Centre::default();
    let first_change = c
        .log
        .iter()
        .position(|e| e.id == presence_id(ID, moved.id, "P3"))
        .unwrap();
    for e in &c.log[..first_change] {
        cut.fold(e);
    }
    let again: Vec<Uuid> = cut
        .tracker
        .pending()
        .into_values()
        .flatten()
        .map(|t| t.id)
        .collect();
    assert_eq!(
        again,
        [
            presence_id(ID, moved.id, "P3"),
            presence_id(ID, approved.id, "T2")
        ]
    );
}

#[test]
fn a_trigger_seen_twice_or_a_closed_order_changes_nothing() {
    let mut c = Centre::with_order();
    let moved = c.feed(
        events::domain::person::stream_for("P3"),
        person("P3", "MGQ", 1, false),
    );
    // The same trigger again (a duplicate delivery), before the change is stored.
    let (who, cause) = c.reference.apply(&moved).unwrap();
    c.tracker.moved(&c.reference, &moved, &who, cause);
    // Another trigger for the same person, before the change is stored.
    c.feed(
        events::domain::person::stream_for("P3"),
        person("P3", "MGQ", 2, false),
    );
    assert_eq!(c.store_pending().len(), 1, "P3 arrives once");
    assert_eq!(c.order().tally().late_arrivals, 1);

    // An order closed after a change was decided: the change is dropped, and a change
    // stored after the close (by an instance that had not seen it) is ignored.
    c.feed(
        events::domain::person::stream_for("P1"),
        person("P1", "BAI", 2, false),
    );
    let decided: Vec<Transition> = c.tracker.pending().into_values().flatten().collect();
    assert_eq!(decided.len(), 1);
    let history = c.log.clone();
    let done = when(&history, &duty(), "complete", json!({})).unwrap();
    for e in done {
        c.feed(relocation_stream(), e);
    }
    assert!(
        c.tracker.pending().is_empty(),
        "nothing is appended to a closed order"
    );
    let closed = c.order();
    c.append(
        &relocation_stream(),
        decided[0].event.clone(),
        decided[0].id,
    );
    c.feed(
        events::domain::person::stream_for("P2"),
        person("P2", "BAI", 0, true),
    );
    assert!(c.tracker.pending().is_empty());
    let after = c.order();
    assert_eq!(
        (after.roll_call, after.status),
        (closed.roll_call, Status::Completed),
        "a closed order does not change"
    );
}

#[test]
fn the_scope_applies_to_late_arrivals() {
    let mut c = Centre::default();
    for e in reference_log() {
        c.feed(e.0, e.1);
    }
    let o = ordered(Some("BAN"), Scope::NonEssential);
    let roll = c.reference.roll_call(&o, date!(2026 - 11 - 27));
    for e in decide_order(None, &duty(), o, roll).unwrap() {
        c.feed(relocation_stream(), e);
    }
    c.feed(
        events::domain::person::stream_for("P4"),
        person("P4", "MGQ", 0, true),
    );
    assert!(
        c.tracker.pending().is_empty(),
        "essential staff stay: not on it"
    );
    c.feed(
        events::domain::person::stream_for("P5"),
        person("P5", "MGQ", 0, false),
    );
    assert_eq!(c.store_pending().len(), 1);
    assert!(c.order().roll_call["P5"].late_arrival);
}

proptest! {
    /// The headcount against a plain model written from the facts, not from the register:
    /// people assigned to a station in the area, plus approved travellers with a leg in
    /// the country (the area, or no area) covering the date.
    #[test]
    fn the_roll_call_matches_a_plain_model(
        persons in proptest::collection::vec((0usize..4, 0u16..3, proptest::bool::ANY), 0..12),
        travels in proptest::collection::vec((0usize..12, proptest::bool::ANY, proptest::option::of(0usize..2), 0i64..10, 0i64..10), 0..8),
        asked_area in proptest::option::of(0usize..2),
        day in 0i64..20,
    ) {
        let areas = ["BAN", "BAY"];
        let stations = [("S0", "BAN"), ("S1", "BAN"), ("S2", "BAY"), ("S3", "BAY")];
        let start = date!(2026 - 11 - 01);
        let on = start + time::Duration::days(day);
        let mut r = Reference::default();
        let mut pos = 0u64;
        let mut feed = |stream: StreamName, e: DomainEvent, r: &mut Reference| {
            pos += 1;
            r.apply(&record(&stream, vec![e], pos)[0]);
        };
        for (id, area) in stations {
            feed(events::domain::station::stream_for(id), station(id, area).into(), &mut r);
        }
        for (i, (s, deps, essential)) in persons.iter().enumerate() {
            let id = format!("P{i}");
            feed(events::domain::person::stream_for(&id), person(&id, stations[*s].0, *deps, *essential).into(), &mut r);
        }
        for (i, (who, approved, leg_area, from, len)) in travels.iter().enumerate() {
            let c = events::domain::clearance::stream_for(Uuid::from_u128(1000 + i as u128));
            let req = ClearanceRequested {
                traveller: format!("P{who}"),
                itinerary: vec![Leg {
                    country: so(),
                    area: leg_area.map(|a| areas[a].to_owned()),
                    from: start + time::Duration::days(*from),
                    to: start + time::Duration::days(from + len),
                }],
                purpose: None,
            };
            feed(c.clone(), req.into(), &mut r);
            if *approved {
                feed(c, ClearanceApproved { by: "d".into() }.into(), &mut r);
            }
        }
        let area = asked_area.map(|a| areas[a]);
        let mut model = BTreeSet::new();
        for (i, (s, _, _)) in persons.iter().enumerate() {
            if area.is_none_or(|a| stations[*s].1 == a) {
                model.insert(format!("P{i}"));
            }
        }
        for (who, approved, leg_area, from, len) in &travels {
            let leg_from = start + time::Duration::days(*from);
            let leg_to = start + time::Duration::days(from + len);
            let area_ok = area.is_none() || leg_area.is_none() || leg_area.map(|a| areas[a]) == area;
            if *approved && area_ok && leg_from <= on && on <= leg_to {
                model.insert(format!("P{who}"));
            }
        }
        let got: BTreeSet<String> = r
            .roll_call(&ordered(area, Scope::AllPersonnel), on)
            .into_iter()
            .map(|e| e.person)
            .collect();
        prop_assert_eq!(got, model);
    }

    /// After any moves following the order (on its day), the people in the area on the
    /// order are exactly its roll call as it would be computed now; everyone ever on it
    /// stays on it once; a replay stores nothing new.
    #[test]
    fn presence_follows_the_roll_call_rule(
        moves in proptest::collection::vec((0usize..4, 0usize..6, 0usize..4), 0..24),
        asked_area in proptest::option::of(0usize..2),
    ) {
        use events::domain::clearance::{ArrivalRecorded, DepartureRecorded};
        let areas = ["BAN", "BAY"];
        let stations = [("S0", "BAN"), ("S1", "BAN"), ("S2", "BAY"), ("S3", "BAY")];
        let mut c = Centre::default();
        for (id, area) in stations {
            c.feed(events::domain::station::stream_for(id), station(id, area));
        }
        for i in 0..6usize {
            let id = format!("P{i}");
            c.feed(events::domain::person::stream_for(&id), person(&id, stations[i % 4].0, 0, false));
        }
        let area = asked_area.map(|a| areas[a]);
        let o = ordered(area, Scope::AllPersonnel);
        let day = date!(2026 - 11 - 27);
        let initial = c.reference.roll_call(&o, day);
        for e in decide_order(None, &duty(), o.clone(), initial.clone()).unwrap() {
            c.feed(relocation_stream(), e);
        }
        let mut ever: BTreeSet<String> = initial.into_iter().map(|e| e.person).collect();
        for (kind, who, target) in moves {
            let id = format!("P{who}");
            let stream = events::domain::clearance::stream_for(Uuid::from_u128(100 + who as u128));
            match kind {
                0 => { c.feed(events::domain::person::stream_for(&id), person(&id, stations[target].0, 0, false)); }
                1 => {
                    let mut req = clearance(&id);
                    req.itinerary[0].area = Some(areas[target % 2].to_owned());
                    c.feed(stream.clone(), req);
                    c.feed(stream, ClearanceApproved { by: "d".into() });
                }
                2 => { c.feed(stream, DepartureRecorded { country: so(), at: datetime!(2026-11-27 05:00 UTC) }); }
                _ => { c.feed(stream, ArrivalRecorded { country: so(), at: datetime!(2026-11-27 05:00 UTC) }); }
            }
            if target == 0 {
                c.store_pending();
            }
            ever.extend(c.reference.roll_call(&o, day).into_iter().map(|e| e.person));
        }
        c.store_pending();
        let order = c.order();
        let now: BTreeSet<String> = c.reference.roll_call(&o, day).into_iter().map(|e| e.person).collect();
        let inside: BTreeSet<String> = order.roll_call.values().filter(|e| !e.left_area).map(|e| e.entry.person.clone()).collect();
        prop_assert_eq!(&inside, &now);
        let on_it: BTreeSet<String> = order.roll_call.keys().cloned().collect();
        prop_assert_eq!(&on_it, &ever);
        let mut replay = Centre::default();
        for e in c.log.clone() {
            replay.fold(&e);
        }
        prop_assert!(replay.tracker.pending().is_empty());
        prop_assert_eq!(replay.order(), order);
    }
}

/// The relocation register in the service reads personnel from the process's shared
/// reference register, which may have folded far ahead of it (a restart from its checkpoint,
/// or simply a faster thread): each presence decision must still see the personnel as they
/// stood at its trigger, or a replay would decide other changes than the first run.
#[test]
fn with_the_shared_register_ahead_the_tracker_decides_the_same_changes() {
    use events::domain::person as p;
    let mut alone = Centre::with_order();
    alone.feed(p::stream_for("P3"), person("P3", "MGQ", 1, false));
    alone.feed(p::stream_for("P1"), person("P1", "BAI", 2, false));
    alone.feed(p::stream_for("P1"), person("P1", "MGQ", 2, false));
    let expected: Vec<Transition> = alone.tracker.pending().into_values().flatten().collect();
    assert_eq!(expected.len(), 3, "P3 arrives, P1 leaves, P1 is back");

    let mut whole = runtime::reference::Reference::default();
    for e in &alone.log {
        runtime::Fold::apply(&mut whole, e);
    }
    let shared = runtime::reference::Shared::detached(whole);
    let mut attached = Centre::default();
    attached.reference.attach(&shared);
    for e in &alone.log {
        attached.fold(e);
    }
    let got: Vec<Transition> = attached.tracker.pending().into_values().flatten().collect();
    assert_eq!(got, expected);
    assert!(
        attached.reference.persons.is_empty(),
        "personnel are read from the shared register, not kept twice"
    );
}
