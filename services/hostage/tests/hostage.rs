//! The hostage service against a real nats-server and a real store, spoken to over NATS with
//! real `Command` payloads: the life of a case, retries stored once, a reused id refused,
//! audited reads (and no read without its audit record), and two crisis managers racing on
//! the same person.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::command::{Actor, Command, Role};
use events::domain::DomainEvent;
use events::domain::person::PersonRegistered;
use events::validate::Country;
use events::{AppendRequest, ExpectedVersion, Meta, RecordedEvent};
use serde_json::{Value, json};
use uuid::Uuid;

/// The in-process centre with the hostage service, spoken to with `source: "nats"` (the
/// audit records of reads name it).
struct Centre(testkit::inproc::Centre);

impl std::ops::Deref for Centre {
    type Target = testkit::inproc::Centre;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Centre {
    async fn start() -> Self {
        let mut inner =
            testkit::inproc::Centre::start(vigil_hostage::SERVICE, |nats, dir, stop| {
                store::run(nats, store::StoreConfig::new(dir), stop)
            })
            .await;
        inner
            .instance(runtime::host::run::<vigil_hostage::Hostage>)
            .await;
        let c = Self(inner);
        // Up once the service answers and the store behind it reads.
        testkit::eventually(Duration::from_secs(10), || async {
            let a = c
                .try_send("list", &duty(), Uuid::new_v4(), json!({}))
                .await?;
            a.get("ok").map(|_| ())
        })
        .await
        .expect("the hostage service answers lists");
        // The incident the cases open from: a case needs a reported incident.
        let reported = serde_json::from_value::<events::domain::incident::IncidentReported>(
            json!({"country": "SO", "category": "crime", "severity": 4,
                   "title": "Staff abducted on the airport road",
                   "occurred_at": "2026-11-27T07:00:00Z", "reporter": "fso.ali"}),
        )
        .unwrap();
        let meta = Meta {
            actor: Some("fso.ali".into()),
            ..Meta::default()
        };
        c.store()
            .append(&AppendRequest {
                after: None,
                stream: events::domain::incident::stream_for(INCIDENT),
                expected_version: ExpectedVersion::NoStream,
                events: vec![
                    DomainEvent::from(reported)
                        .try_to_new_event(INCIDENT, meta)
                        .unwrap(),
                ],
            })
            .await
            .unwrap();
        c
    }

    async fn try_send(&self, name: &str, actor: &Actor, id: Uuid, body: Value) -> Option<Value> {
        let cmd = Command {
            id,
            actor: actor.clone(),
            source: "nats".to_owned(),
            correlation_id: None,
            body,
        };
        let reply = self
            .client()
            .request(
                format!("vigil.cmd.hostage.{name}"),
                serde_json::to_vec(&cmd).unwrap().into(),
            )
            .await
            .ok()?;
        Some(serde_json::from_slice(&reply.payload).unwrap())
    }

    /// Sends command `name` with command id `id`; the whole reply.
    async fn send(&self, name: &str, actor: &Actor, id: Uuid, body: Value) -> Value {
        self.try_send(name, actor, id, body)
            .await
            .expect("the hostage service answers")
    }

    /// Sends a command that must succeed; its `ok` part.
    async fn ok(&self, name: &str, actor: &Actor, body: Value) -> Value {
        let a = self.send(name, actor, Uuid::new_v4(), body.clone()).await;
        assert!(a.get("ok").is_some(), "{name} {body}: {a}");
        a["ok"].clone()
    }

    /// Every `DetailsRead` in today's audit stream (and tomorrow's, should the test cross
    /// midnight).
    async fn details_reads(&self) -> Vec<RecordedEvent> {
        let now = time::OffsetDateTime::now_utc();
        let mut days = vec![
            events::audit::stream_for(now - time::Duration::hours(1)),
            events::audit::stream_for(now),
        ];
        days.dedup();
        let mut reads = vec![];
        for stream in &days {
            reads.extend(
                self.stream(stream)
                    .await
                    .into_iter()
                    .filter(|e| e.event_type == events::audit::DETAILS_READ),
            );
        }
        reads.sort_by_key(|e| e.position);
        reads
    }
}

fn person(user: &str, role: Role) -> Actor {
    Actor {
        user: user.to_owned(),
        role,
        scope: None,
        agency: None,
    }
}

fn crisis() -> Actor {
    person("cm.sara", Role::CrisisManager)
}

fn duty() -> Actor {
    person("do.omar", Role::DutyOfficer)
}

fn code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or("ok")
}

/// The reported incident every case of these tests opens from.
const INCIDENT: Uuid = Uuid::from_u128(0x1c1d);

fn open_body(persons: &[&str]) -> Value {
    json!({"incident_id": INCIDENT, "country": "SO", "persons": persons,
           "captors": "unknown armed group", "location": {"lat": 2.1, "lon": 45.3}})
}

fn at(person: &str) -> Value {
    json!({"person": person, "at": "2026-11-27T08:00:00Z"})
}

fn change(case: Uuid, change: Value) -> Value {
    json!({"case": case, "change": change})
}

async fn register_person(c: &Centre, id: &str, name: &str) {
    let e = PersonRegistered {
        person: id.into(),
        name: name.into(),
        agency: "unicef".into(),
        nationality: Country::parse("KE").unwrap(),
        duty_station: "SOM-MGQ".into(),
        dependants: 0,
        security_officer: false,
        essential: false,
    };
    c.import([(events::domain::person::stream_for(id), e.into())])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_life_of_a_case_over_nats() {
    let c = Centre::start().await;
    register_person(&c, "P-0002", "Fatima Garcia").await;
    let case = Uuid::new_v4();
    let body = open_body(&["P-0002", "P-0003", "P-0004"]);

    // Opened once: a retry is the original outcome, the id with other content is refused.
    let first = c.send("open", &crisis(), case, body.clone()).await;
    assert_eq!(first["ok"]["duplicate"], false, "{first}");
    assert_eq!(
        first["ok"]["stream"],
        format!("hostage-{case}"),
        "the command's id is the case's"
    );
    let again = c.send("open", &crisis(), case, body.clone()).await;
    assert_eq!(again["ok"]["duplicate"], true, "{again}");
    assert_eq!(again["ok"]["position"], first["ok"]["position"]);
    let reused = c
        .send("open", &crisis(), case, open_body(&["P-0009"]))
        .await;
    assert_eq!(code(&reused), "id_reused", "{reused}");
    let by_duty = c.send("open", &duty(), Uuid::new_v4(), body.clone()).await;
    assert_eq!(code(&by_duty), "forbidden", "{by_duty}");

    c.ok(
        "proof_of_life",
        &crisis(),
        change(
            case,
            json!({"person": "P-0002", "at": "2026-11-26T20:00:00Z", "note": "video"}),
        ),
    )
    .await;
    c.ok(
        "negotiation",
        &crisis(),
        change(
            case,
            json!({"at": "2026-11-27T07:00:00Z", "summary": "first call through the elders"}),
        ),
    )
    .await;

    // A release retried with the same command id is stored once.
    let release = Uuid::new_v4();
    let r1 = c
        .send("release", &crisis(), release, change(case, at("P-0002")))
        .await;
    let r2 = c
        .send("release", &crisis(), release, change(case, at("P-0002")))
        .await;
    assert_eq!(r1["ok"]["duplicate"], false, "{r1}");
    assert_eq!(r2["ok"]["duplicate"], true, "{r2}");
    assert_eq!(r2["ok"]["position"], r1["ok"]["position"]);
    let twice = c
        .send(
            "release",
            &crisis(),
            Uuid::new_v4(),
            change(case, at("P-0002")),
        )
        .await;
    assert_eq!(code(&twice), "conflict", "released once: {twice}");
    let stranger = c
        .send(
            "deceased",
            &crisis(),
            Uuid::new_v4(),
            change(case, at("P-0099")),
        )
        .await;
    assert_eq!(code(&stranger), "invalid", "{stranger}");
    c.ok("deceased", &crisis(), change(case, at("P-0003")))
        .await;

    // The list: counts and days only, for a duty officer too.
    let listed = testkit::eventually(Duration::from_secs(5), || async {
        let l = c.ok("list", &duty(), json!({"status": "open"})).await;
        (l["items"][0]["persons_held"] == 1).then_some(l)
    })
    .await
    .expect("the list shows the case with one person held");
    let summary = &listed["items"][0];
    assert_eq!(summary["case"], json!(case));
    assert_eq!(summary["persons_total"], 3);
    assert_eq!(summary["days_held"], 0);
    assert_eq!(summary["status"], "open");
    assert_eq!(summary["country"], "SO");
    let text = listed.to_string();
    for secret in ["P-0002", "Fatima", "armed group", "45.3", "elders", "video"] {
        assert!(!text.contains(secret), "{secret} in a list: {text}");
    }
    for who in [
        person("wall", Role::WallScreen),
        Actor {
            scope: Some(Country::parse("SO").unwrap()),
            agency: None,
            ..person("fso", Role::FieldOfficer)
        },
    ] {
        let l = c.send("list", &who, Uuid::new_v4(), json!({})).await;
        assert_eq!(code(&l), "forbidden", "{who:?}: {l}");
    }
    let bad = c
        .send("list", &duty(), Uuid::new_v4(), json!({"status": "lost"}))
        .await;
    assert_eq!(code(&bad), "invalid", "{bad}");

    // The details, for the crisis manager: always current, with names where registered.
    let details = c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(details["status"], "open");
    assert_eq!(details["persons_held"], 1);
    assert_eq!(details["captors"], "unknown armed group");
    assert_eq!(details["persons"][0]["person"], "P-0002");
    assert_eq!(details["persons"][0]["name"], "Fatima Garcia");
    assert_eq!(details["persons"][0]["status"], "released");
    assert_eq!(details["persons"][1]["status"], "deceased");
    assert_eq!(details["persons"][2]["status"], "held");
    assert_eq!(details["proofs"][0]["note"], "video");
    assert_eq!(details["contacts"][0]["by"], "cm.sara");
    let missing = c
        .send(
            "get",
            &crisis(),
            Uuid::new_v4(),
            json!({"case": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(code(&missing), "not_found", "{missing}");

    // Closing must agree with the record; then nothing more.
    let wrong = c
        .send(
            "close",
            &crisis(),
            Uuid::new_v4(),
            change(
                case,
                json!({"outcome": "ended", "accounting": [
                    {"person": "P-0002", "status": "released"},
                    {"person": "P-0003", "status": "deceased"},
                    {"person": "P-0004", "status": "released"}]}),
            ),
        )
        .await;
    assert_eq!(code(&wrong), "conflict", "P-0004 is still held: {wrong}");
    c.ok(
        "close",
        &crisis(),
        change(
            case,
            json!({"outcome": "one released, one died, one escaped", "accounting": [
                {"person": "P-0002", "status": "released"},
                {"person": "P-0003", "status": "deceased"},
                {"person": "P-0004", "status": "other", "note": "escaped on the third day"}]}),
        ),
    )
    .await;
    for (name, body) in [
        ("release", at("P-0004")),
        (
            "negotiation",
            json!({"at": "2026-11-27T09:00:00Z", "summary": "late call"}),
        ),
    ] {
        let after = c
            .send(name, &crisis(), Uuid::new_v4(), change(case, body))
            .await;
        assert_eq!(code(&after), "conflict", "{name} after close: {after}");
    }
    let closed = testkit::eventually(Duration::from_secs(5), || async {
        let l = c.ok("list", &duty(), json!({"status": "closed"})).await;
        (l["items"].as_array().unwrap().len() == 1).then_some(l)
    })
    .await
    .expect("the list shows the case closed");
    assert_eq!(closed["items"][0]["persons_held"], 0);
    let after = c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(after["status"], "closed");
    assert_eq!(after["persons"][2]["status"], "other");
    assert_eq!(after["accounting"][2]["note"], "escaped on the third day");
    let open = c.ok("list", &duty(), json!({"status": "open"})).await;
    assert_eq!(open["items"], json!([]));

    let types: Vec<String> = c
        .stream(&vigil_hostage::stream_of(case))
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "HostageCaseOpened",
            "ProofOfLifeReceived",
            "NegotiationContactLogged",
            "HostageReleased",
            "HostageDeceased",
            "HostageCaseClosed"
        ],
        "each command stored once, refusals stored nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_details_read_is_audited_and_a_forbidden_one_is_not() {
    let c = Centre::start().await;
    let case = Uuid::new_v4();
    c.send("open", &crisis(), case, open_body(&["P-0002"]))
        .await;

    for who in [
        duty(),
        person("admin", Role::Admin),
        person("wall", Role::WallScreen),
    ] {
        let denied = c
            .send("get", &who, Uuid::new_v4(), json!({"case": case}))
            .await;
        assert_eq!(code(&denied), "forbidden", "{who:?}: {denied}");
        assert!(
            !denied.to_string().contains("P-0002"),
            "no details in a refusal"
        );
    }
    let unknown = c
        .send(
            "get",
            &crisis(),
            Uuid::new_v4(),
            json!({"case": Uuid::new_v4()}),
        )
        .await;
    assert_eq!(code(&unknown), "not_found");
    assert_eq!(
        c.details_reads().await.len(),
        0,
        "refused reads and reads of nothing leave no DetailsRead"
    );

    let details = c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(details["persons"][0]["person"], "P-0002");
    let reads = c.details_reads().await;
    assert_eq!(reads.len(), 1, "one read, one record");
    let read = &reads[0];
    assert_eq!(read.stream.category().as_str(), "audit");
    assert_eq!(read.v, 1);
    assert_eq!(read.data["what"], format!("hostage-{case}"));
    assert_eq!(read.data["actor"], "cm.sara");
    assert_eq!(read.data["role"], "crisis_manager");
    assert_eq!(read.data["source"], "nats");
    assert_eq!(read.meta.actor.as_deref(), Some("cm.sara"));
    assert_eq!(read.meta.role.as_deref(), Some("crisis_manager"));
    assert_eq!(read.meta.source.as_deref(), Some("nats"));

    c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(c.details_reads().await.len(), 2, "every read is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_details_without_their_audit_record() {
    let c = Centre::start().await;
    let case = Uuid::new_v4();
    c.send("open", &crisis(), case, open_body(&["P-0002"]))
        .await;
    // The store refuses an event whose meta.actor is over 128 characters: the audit append
    // of this crisis manager's read fails, so the read must be refused, not answered.
    let long = person(&"x".repeat(129), Role::CrisisManager);
    let refused = c
        .send("get", &long, Uuid::new_v4(), json!({"case": case}))
        .await;
    assert_eq!(code(&refused), "unavailable", "{refused}");
    assert!(!refused.to_string().contains("P-0002"), "{refused}");
    assert_eq!(c.details_reads().await.len(), 0);
    // The same read by a crisis manager the store accepts goes through.
    c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(c.details_reads().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_crisis_managers_releasing_the_same_person_at_once() {
    let c = Centre::start().await;
    let persons: Vec<String> = (1..=8).map(|i| format!("P-{i:04}")).collect();
    let refs: Vec<&str> = persons.iter().map(String::as_str).collect();
    let case = Uuid::new_v4();
    c.send("open", &crisis(), case, open_body(&refs)).await;
    let sara = person("cm.sara", Role::CrisisManager);
    let li = person("cm.li", Role::CrisisManager);

    for (i, p) in persons.iter().enumerate() {
        // Half the rounds race release against release, half release against death.
        let other = if i % 2 == 0 { "release" } else { "deceased" };
        let (a, b) = tokio::join!(
            c.send("release", &sara, Uuid::new_v4(), change(case, at(p))),
            c.send(other, &li, Uuid::new_v4(), change(case, at(p))),
        );
        let mut codes = [code(&a), code(&b)];
        codes.sort_unstable();
        assert_eq!(codes, ["conflict", "ok"], "{p}: {a} / {b}");
    }

    let events = c.stream(&vigil_hostage::stream_of(case)).await;
    for p in &persons {
        let settled = events
            .iter()
            .filter(|e| {
                matches!(e.event_type.as_str(), "HostageReleased" | "HostageDeceased")
                    && e.data["person"] == p.as_str()
            })
            .count();
        assert_eq!(settled, 1, "{p} released or dead exactly once");
    }
    assert_eq!(events.len(), 1 + persons.len(), "never both applied");
    let details = c.ok("get", &crisis(), json!({"case": case})).await;
    assert_eq!(details["persons_held"], 0);
}
