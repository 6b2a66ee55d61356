//! Two surge service instances on one real nats-server and one real store — a NATS queue
//! group, as on a three-node centre, where either instance takes any command and each one's
//! register may lag the other's writes: racing assigns of one officer to two surges, through
//! both instances, are decided by the officer's reservation stream, so exactly one wins each
//! time and the log never shows an officer on two active surges; a reservation cut short by a
//! crash is finished by the command's retry (or by the next assignment of the officer), and
//! one whose surge can no longer take the officer blocks nobody.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use events::RecordedEvent;
use events::aggregate::Aggregate;
use events::command::{Actor, Role};
use events::domain::DomainEvent;
use events::domain::person::{self, PersonRegistered};
use events::domain::station::{self, DutyStationRegistered};
use events::domain::surge_officer::{self, SurgeOfficerReserved};
use events::validate::Country;
use serde_json::{Value, json};
use testkit::inproc::Centre;
use uuid::Uuid;
use vigil_surge::reserve::{self, Reservation};
use vigil_surge::surge::Surge;

/// Officers P-10 … P-21, all security officers from Nairobi.
const OFFICERS: std::ops::Range<u32> = 10..22;

fn duty() -> Actor {
    Actor {
        user: "duty.1".into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    }
}

fn crisis() -> Actor {
    Actor {
        user: "crisis.1".into(),
        role: Role::CrisisManager,
        scope: None,
        agency: None,
    }
}

fn reference() -> Vec<(events::StreamName, DomainEvent)> {
    let station = |id: &str, country: &str| -> DomainEvent {
        DutyStationRegistered {
            station: id.into(),
            country: Country::parse(country).unwrap(),
            area: format!("{id}-AREA"),
            name: id.into(),
            lat: 1.0,
            lon: 1.0,
        }
        .into()
    };
    let mut r = vec![
        (station::stream_for("SOM-MGQ"), station("SOM-MGQ", "SO")),
        (station::stream_for("KEN-NBO"), station("KEN-NBO", "KE")),
    ];
    for i in OFFICERS {
        let id = format!("P-{i}");
        let p = PersonRegistered {
            person: id.clone(),
            name: format!("Officer {i}"),
            agency: "undss".into(),
            nationality: Country::parse("KE").unwrap(),
            duty_station: "KEN-NBO".into(),
            dependants: 0,
            security_officer: true,
            essential: false,
        };
        r.push((person::stream_for(&id), p.into()));
    }
    r
}

/// A nats-server, a store, the reference data and two instances of the surge service.
async fn start() -> Centre {
    let mut c = Centre::start(vigil_surge::SERVICE, |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    c.import(reference()).await;
    for _ in 0..2 {
        c.instance(runtime::host::run::<vigil_surge::Surges>).await;
    }
    c
}

/// A new approved surge at Mogadishu asking for `needed` officers.
async fn surge(c: &Centre, needed: u16) -> Uuid {
    let id = Uuid::new_v4();
    let body = json!({"duty_station": "SOM-MGQ", "country": "SO",
        "reason": "attacks on the airport road", "officers_needed": needed});
    let answer = c.ask("request", &duty(), id, body).await;
    assert!(answer["ok"].is_object(), "{answer}");
    c.ok("approve", &crisis(), json!({"surge": id, "change": {}}))
        .await;
    id
}

async fn surge_now(c: &Centre, id: Uuid) -> Surge {
    Surge::fold(&c.stream(&vigil_surge::stream_of(id)).await).unwrap()
}

async fn hold_of(c: &Centre, officer: &str) -> Option<reserve::Hold> {
    Reservation::fold(&c.stream(&surge_officer::stream_for(officer)).await).and_then(|r| r.hold)
}

/// Folds every surge of the log event by event and fails if, at any position, an officer is
/// on two active surges. Returns how many assignments it saw.
fn never_on_two_active_surges(log: &[RecordedEvent]) -> usize {
    let mut surges: HashMap<Uuid, Option<Surge>> = HashMap::new();
    let mut assignments = 0;
    for e in log {
        if e.stream.category().as_str() != "surge" {
            continue;
        }
        Surge::apply(surges.entry(e.stream.id()).or_default(), e);
        if e.event_type == "SurgeOfficerAssigned" {
            assignments += 1;
            let officer = e.data["officer"].as_str().unwrap();
            let on: Vec<Uuid> = surges
                .values()
                .flatten()
                .filter(|s| s.status.is_active() && s.has_officer(officer))
                .map(|s| s.id)
                .collect();
            assert!(
                on.len() <= 1,
                "at position {}, {officer} is on {on:?}",
                e.position
            );
        }
    }
    assignments
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_assigns_through_two_instances_one_wins_each_time_and_the_log_never_doubles() {
    let c = start().await;
    let officers: Vec<String> = OFFICERS.map(|i| format!("P-{i}")).collect();
    let mut total = 0;
    for round in 0..3 {
        let (a, b) = (surge(&c, 20).await, surge(&c, 20).await);
        // Every officer to both surges at once: 24 assigns in flight over two instances.
        let mut racing = tokio::task::JoinSet::new();
        for (i, officer) in officers.iter().enumerate() {
            for (surge, who) in [(a, duty()), (b, crisis())] {
                let (commands, officer) = (c.commands(), officer.clone());
                // Alternate which surge is asked first.
                let surge = if (i + round) % 2 == 0 {
                    surge
                } else if surge == a {
                    b
                } else {
                    a
                };
                racing.spawn(async move {
                    let body = json!({"surge": surge, "change": {"officer": officer}});
                    let answer = commands.ask("assign", &who, Uuid::new_v4(), body).await;
                    (officer, surge, answer)
                });
            }
        }
        let mut answers: HashMap<String, Vec<(Uuid, Value)>> = HashMap::new();
        while let Some(done) = racing.join_next().await {
            let (officer, surge, answer) = done.unwrap();
            answers.entry(officer).or_default().push((surge, answer));
        }
        for officer in &officers {
            let two = &answers[officer];
            assert_eq!(two.len(), 2);
            let won: Vec<&(Uuid, Value)> =
                two.iter().filter(|(_, a)| a["ok"].is_object()).collect();
            assert_eq!(won.len(), 1, "round {round}, {officer}: {two:?}");
            let winner = won[0].0;
            let (_, lost) = two.iter().find(|(s, _)| *s != winner).unwrap();
            assert_eq!(lost["error"]["code"], "conflict", "{lost}");
            let message = lost["error"]["message"].as_str().unwrap();
            assert!(
                message.contains(&winner.to_string()),
                "the loser is told which surge holds {officer}: {message}"
            );
            let hold = hold_of(&c, officer).await.unwrap();
            assert_eq!(hold.surge, winner, "the reservation names the winner");
        }
        // The log agrees: every officer on exactly one of the two, never on both.
        let (sa, sb) = (surge_now(&c, a).await, surge_now(&c, b).await);
        for officer in &officers {
            assert!(
                sa.has_officer(officer) ^ sb.has_officer(officer),
                "{officer}"
            );
        }
        total += officers.len();
        assert_eq!(never_on_two_active_surges(&c.log().await), total);

        // Close both: every officer is released on their stream, free for the next round.
        if sa.officers.is_empty() {
            c.ok(
                "cancel",
                &crisis(),
                json!({"surge": a, "change": {"reason": "not needed"}}),
            )
            .await;
        } else {
            c.ok(
                "deploy",
                &duty(),
                json!({"surge": a, "change": {"at": "2026-11-28T06:00:00Z"}}),
            )
            .await;
            c.ok(
                "complete",
                &duty(),
                json!({"surge": a, "change": {"at": "2026-11-29T06:00:00Z"}}),
            )
            .await;
        }
        c.ok(
            "cancel",
            &crisis(),
            json!({"surge": b, "change": {"reason": "not needed"}}),
        )
        .await;
        for officer in &officers {
            assert_eq!(hold_of(&c, officer).await, None, "{officer} released");
            let last = c.stream(&surge_officer::stream_for(officer)).await;
            assert_eq!(last.last().unwrap().event_type, "SurgeOfficerReleased");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reservation_cut_short_is_finished_and_one_whose_surge_closed_blocks_nobody() {
    let c = start().await;
    let reserved = |officer: &str, surge: Uuid, command: Uuid| -> DomainEvent {
        SurgeOfficerReserved {
            officer: officer.into(),
            surge,
            command,
            from_duty_station: "KEN-NBO".into(),
        }
        .into()
    };
    let assign =
        |surge: Uuid, officer: &str| json!({"surge": surge, "change": {"officer": officer}});

    // An instance stopped after reserving P-10 for `first`, before the assignment: the retry
    // of its command (same id) finishes it.
    let first = surge(&c, 2).await;
    let k1 = Uuid::new_v4();
    c.append_with_id(
        surge_officer::stream_for("P-10"),
        reserved("P-10", first, k1),
        reserve::reservation_id(k1, 0),
        "duty.1",
    )
    .await;
    let retry = c.ask("assign", &duty(), k1, assign(first, "P-10")).await;
    assert_eq!(retry["ok"]["duplicate"], false, "{retry}");
    let stored = c.stream(&vigil_surge::stream_of(first)).await;
    let assignment = stored
        .iter()
        .find(|e| e.id == k1)
        .expect("assigned under the command's id");
    assert_eq!(assignment.data["officer"], "P-10");
    assert_eq!(assignment.meta.actor.as_deref(), Some("duty.1"));
    let again = c.ask("assign", &duty(), k1, assign(first, "P-10")).await;
    assert_eq!(again["ok"]["duplicate"], true, "{again}");

    // The same for P-11, but nobody retries: the next assignment of P-11 (elsewhere) finishes
    // the one that was cut short and is refused, naming the surge that holds them.
    let (second, third) = (surge(&c, 2).await, surge(&c, 2).await);
    let k2 = Uuid::new_v4();
    c.append_with_id(
        surge_officer::stream_for("P-11"),
        reserved("P-11", second, k2),
        reserve::reservation_id(k2, 0),
        "duty.1",
    )
    .await;
    let answer = c
        .ask("assign", &crisis(), Uuid::new_v4(), assign(third, "P-11"))
        .await;
    assert_eq!(answer["error"]["code"], "conflict", "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&second.to_string())
    );
    assert!(surge_now(&c, second).await.has_officer("P-11"));
    assert!(!surge_now(&c, third).await.has_officer("P-11"));
    let late = c.ask("assign", &duty(), k2, assign(second, "P-11")).await;
    assert_eq!(
        late["ok"]["duplicate"], true,
        "the late retry finds it done: {late}"
    );

    // P-12 reserved for `fourth`, which is cancelled before the assignment was appended: the
    // reservation is void, P-12 goes elsewhere, and the cut-short command's retry is refused.
    let (fourth, fifth) = (surge(&c, 2).await, surge(&c, 2).await);
    let k3 = Uuid::new_v4();
    c.append_with_id(
        surge_officer::stream_for("P-12"),
        reserved("P-12", fourth, k3),
        reserve::reservation_id(k3, 0),
        "duty.1",
    )
    .await;
    c.ok(
        "cancel",
        &crisis(),
        json!({"surge": fourth, "change": {"reason": "road reopened"}}),
    )
    .await;
    c.ok("assign", &duty(), assign(fifth, "P-12")).await;
    assert_eq!(hold_of(&c, "P-12").await.unwrap().surge, fifth);
    let stale = c.ask("assign", &duty(), k3, assign(fourth, "P-12")).await;
    assert_eq!(stale["error"]["code"], "conflict", "{stale}");
    assert!(!surge_now(&c, fourth).await.has_officer("P-12"));

    // A full surge is final too: P-13 reserved for `sixth`, which filled up meanwhile.
    let sixth = surge(&c, 1).await;
    let k4 = Uuid::new_v4();
    c.append_with_id(
        surge_officer::stream_for("P-13"),
        reserved("P-13", sixth, k4),
        reserve::reservation_id(k4, 0),
        "duty.1",
    )
    .await;
    c.ok("assign", &duty(), assign(sixth, "P-14")).await;
    c.ok("assign", &duty(), assign(fifth, "P-13")).await;
    assert_eq!(never_on_two_active_surges(&c.log().await), 5);
}
