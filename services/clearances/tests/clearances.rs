//! The clearances service against a real nats-server and a real store, spoken to over NATS
//! with real `Command` payloads: the life of a clearance, retries stored once, and two duty
//! officers deciding the same clearance at once.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use events::domain::DomainEvent;
use events::domain::person::{self, PersonRegistered};
use events::validate::Country;
use events::{AppendRequest, ExpectedVersion, Meta};
use runtime::StoreClient;
use serde_json::{Value, json};
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

struct Centre {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
    client: async_nats::Client,
    store: StoreClient,
}

impl Drop for Centre {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn duty(user: &str) -> Value {
    json!({"user": user, "role": "duty_officer"})
}

fn field(user: &str, country: &str) -> Value {
    json!({"user": user, "role": "field_officer", "scope": country})
}

impl Centre {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let client = nats.connect().await;
        tokio::spawn(store::run(
            client.clone(),
            store::StoreConfig::new(dir.path()),
            stop.clone(),
        ));
        tokio::spawn(runtime::host::run::<vigil_clearances::Clearances>(
            nats.connect().await,
            stop.clone(),
        ));
        let store = StoreClient::new(client.clone(), Duration::from_secs(5));
        // Commands before the store answers are refused `unavailable` (retry): wait for it.
        testkit::eventually(Duration::from_secs(10), || {
            let store = store.clone();
            async move { store.read(1, 1).await.ok() }
        })
        .await
        .expect("the store answers");
        Centre {
            _nats: nats,
            _dir: dir,
            stop,
            client,
            store,
        }
    }

    /// Sends command `name` with id `id` as `actor`; the reply as JSON.
    async fn ask(&self, name: &str, actor: &Value, id: Uuid, body: Value) -> Value {
        let command = serde_json::to_vec(&json!({
            "id": id, "actor": actor, "source": "test", "body": body
        }))
        .unwrap();
        let subject = format!("vigil.cmd.{}.{name}", vigil_clearances::SERVICE);
        let reply = testkit::eventually(Duration::from_secs(10), || {
            let (client, subject, command) =
                (self.client.clone(), subject.clone(), command.clone());
            async move { client.request(subject, command.into()).await.ok() }
        })
        .await
        .expect("the clearances service answers");
        serde_json::from_slice(&reply.payload).unwrap()
    }

    async fn ok(&self, name: &str, actor: &Value, id: Uuid, body: Value) -> Value {
        let answer = self.ask(name, actor, id, body).await;
        assert!(answer["ok"].is_object(), "{name}: {answer}");
        answer["ok"].clone()
    }

    async fn refused(&self, name: &str, actor: &Value, body: Value) -> (String, String) {
        let answer = self.ask(name, actor, Uuid::new_v4(), body).await;
        let code = answer["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {answer}"));
        (
            code.to_owned(),
            answer["error"]["message"].as_str().unwrap().to_owned(),
        )
    }

    /// Puts `id` in the personnel register, as `vigil import` does.
    async fn register_person(&self, id: &str) {
        let event: DomainEvent = PersonRegistered {
            person: id.into(),
            name: format!("Person {id}"),
            agency: "unicef".into(),
            nationality: Country::parse("KE").unwrap(),
            duty_station: "KEN-NBO".into(),
            dependants: 0,
            security_officer: false,
            essential: false,
        }
        .into();
        let request = AppendRequest {
            stream: person::stream_for(id),
            expected_version: ExpectedVersion::Any,
            events: vec![
                event
                    .try_to_new_event(
                        Uuid::new_v4(),
                        Meta {
                            actor: Some("import".into()),
                            ..Meta::default()
                        },
                    )
                    .unwrap(),
            ],
        };
        testkit::eventually(Duration::from_secs(10), || {
            let (store, request) = (self.store.clone(), request.clone());
            async move { store.append(&request).await.ok() }
        })
        .await
        .expect("the store takes the person");
    }

    /// The event types of clearance `id`'s stream, in order.
    async fn stream_types(&self, id: Uuid) -> Vec<String> {
        let (events, _) = self
            .store
            .read_stream(&vigil_clearances::stream_of(id), 1, 100)
            .await
            .unwrap();
        events.into_iter().map(|e| e.event_type).collect()
    }

    /// `list` with `filters`, once the register has caught up and shows `until`.
    async fn list_until(
        &self,
        actor: &Value,
        filters: Value,
        until: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        testkit::eventually(Duration::from_secs(10), || {
            let filters = filters.clone();
            let until = &until;
            async move {
                let answer = self.ask("list", actor, Uuid::new_v4(), filters).await;
                let list = answer["ok"]["items"].as_array()?.clone();
                until(&list).then_some(list)
            }
        })
        .await
        .unwrap_or_else(|| panic!("the list never showed what was expected ({filters})"))
    }
}

fn journey() -> Value {
    // Nairobi, then Banaadir (Mogadishu) for ten days, then Nairobi again.
    json!([
        {"country": "KE", "from": "2026-11-20", "to": "2026-11-21"},
        {"country": "SO", "area": "SOM-BAN", "from": "2026-11-21", "to": "2026-11-30"},
        {"country": "KE", "from": "2026-11-30", "to": "2026-12-01"}
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clearance_from_request_to_departure() {
    let c = Centre::start().await;
    let desk = duty("duty.one");
    let somalia = field("fso.so", "SO");
    let id = Uuid::new_v4();
    let request = json!({"traveller": "P-0010", "itinerary": journey(), "purpose": "assessment"});

    // Not in the personnel register yet.
    let (code, message) = c.refused("request", &desk, request.clone()).await;
    assert_eq!(code, "not_found");
    assert!(message.contains("vigil import"), "{message}");
    c.register_person("P-0010").await;

    let written = c.ok("request", &desk, id, request).await;
    assert_eq!(written["stream"], format!("clearance-{id}"));
    assert_eq!(written["duplicate"], false);
    let got = c
        .ok("get", &somalia, Uuid::new_v4(), json!({"clearance": id}))
        .await;
    assert_eq!(got["status"], "requested");
    assert_eq!(got["traveller"], "P-0010");
    assert_eq!(got["requested_by"], "duty.one");

    // Another country's officer does not learn it exists; the SO officer may not decide a
    // journey through Kenya.
    let ethiopia = field("fso.et", "ET");
    let (code, _) = c.refused("get", &ethiopia, json!({"clearance": id})).await;
    assert_eq!(code, "not_found");
    let (code, _) = c
        .refused("approve", &somalia, json!({"clearance": id, "change": {}}))
        .await;
    assert_eq!(code, "forbidden");
    let (code, _) = c
        .refused(
            "arrive",
            &desk,
            json!({"clearance": id, "change": {"country": "SO", "at": "2026-11-21T09:00:00Z"}}),
        )
        .await;
    assert_eq!(code, "conflict", "not approved yet");

    c.ok(
        "approve",
        &desk,
        Uuid::new_v4(),
        json!({"clearance": id, "change": {}}),
    )
    .await;
    let (code, _) = c
        .refused(
            "refuse",
            &desk,
            json!({"clearance": id, "change": {"reason": "too late"}}),
        )
        .await;
    assert_eq!(code, "conflict", "decided once");

    let moves = [
        ("arrive", "SO", "2026-11-21T09:00:00Z"),
        ("depart", "SO", "2026-11-29T15:00:00+03:00"),
    ];
    for (name, country, at) in moves {
        c.ok(
            name,
            &somalia,
            Uuid::new_v4(),
            json!({"clearance": id, "change": {"country": country, "at": at}}),
        )
        .await;
    }
    let change = |country: &str, at: &str| json!({"clearance": id, "change": {"country": country, "at": at}});
    let (code, _) = c
        .refused("depart", &somalia, change("SO", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "conflict", "departed already");
    let (code, _) = c
        .refused("arrive", &somalia, change("KE", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "forbidden", "Kenya is not the SO officer's");
    let (code, _) = c
        .refused("arrive", &desk, change("ET", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "invalid", "Ethiopia is not on the itinerary");
    let (code, _) = c
        .refused("depart", &desk, change("KE", "2026-11-30T09:00:00Z"))
        .await;
    assert_eq!(code, "conflict", "never arrived in Kenya");

    let got = c
        .ok("get", &desk, Uuid::new_v4(), json!({"clearance": id}))
        .await;
    assert_eq!(got["status"], "approved");
    assert_eq!(got["decided_by"], "duty.one");
    assert_eq!(got["movements"].as_array().unwrap().len(), 2);
    assert_eq!(got["version"], 4);
    assert_eq!(
        c.stream_types(id).await,
        [
            "ClearanceRequested",
            "ClearanceApproved",
            "ArrivalRecorded",
            "DepartureRecorded"
        ]
    );

    // A second traveller, requested and refused.
    c.register_person("P-0011").await;
    let other = Uuid::new_v4();
    c.ok(
        "request",
        &field("fso.so2", "SO"),
        other,
        json!({"traveller": "P-0011", "itinerary": [{"country": "SO", "from": "2026-11-25", "to": "2026-11-28"}]}),
    )
    .await;
    c.ok(
        "refuse",
        &somalia,
        Uuid::new_v4(),
        json!({"clearance": other, "change": {"reason": "level 6 in the area"}}),
    )
    .await;

    // The register follows the log: lists, filters, the headcount.
    let all = c.list_until(&desk, json!({}), |l| l.len() == 2).await;
    assert_eq!(all[0]["id"], json!(other), "newest first");
    let approved = c
        .list_until(&desk, json!({"status": "approved", "country": "SO"}), |l| {
            l.len() == 1
        })
        .await;
    assert_eq!(approved[0]["id"], json!(id));
    c.list_until(&desk, json!({"traveller": "P-0011"}), |l| {
        l.len() == 1 && l[0]["status"] == "refused"
    })
    .await;
    // In Banaadir on the 25th; gone on the 29th (departed that day, local time).
    c.list_until(
        &somalia,
        json!({"country": "SO", "area": "SOM-BAN", "on": "2026-11-25"}),
        |l| l.len() == 1 && l[0]["traveller"] == "P-0010",
    )
    .await;
    c.list_until(
        &desk,
        json!({"country": "SO", "on": "2026-11-29"}),
        <[Value]>::is_empty,
    )
    .await;
    let (code, _) = c.refused("list", &somalia, json!({"country": "KE"})).await;
    assert_eq!(code, "forbidden");
    let (code, _) = c.refused("list", &desk, json!({"status": "lost"})).await;
    assert_eq!(code, "invalid");
    let (code, _) = c
        .refused(
            "list",
            &json!({"user": "wall", "role": "wall_screen"}),
            json!({}),
        )
        .await;
    assert_eq!(code, "forbidden");
    let (code, _) = c.refused("cancel", &desk, json!({"clearance": id})).await;
    assert_eq!(code, "invalid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_command_is_stored_once() {
    let c = Centre::start().await;
    c.register_person("P-0020").await;
    let desk = duty("duty.one");
    let id = Uuid::new_v4();
    let request = json!({"traveller": "P-0020", "itinerary": journey()});

    let first = c.ok("request", &desk, id, request.clone()).await;
    let again = c.ok("request", &desk, id, request).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);
    // The same id for another request.
    let other = c
        .ask(
            "request",
            &desk,
            id,
            json!({"traveller": "P-0020", "itinerary": [{"country": "ET", "from": "2026-12-01", "to": "2026-12-02"}]}),
        )
        .await;
    assert_eq!(other["error"]["code"], "id_reused", "{other}");

    let approve = Uuid::new_v4();
    let body = json!({"clearance": id, "change": {}});
    let (a, b) = tokio::join!(
        c.ask("approve", &desk, approve, body.clone()),
        c.ask("approve", &desk, approve, body.clone())
    );
    assert!(a["ok"].is_object() && b["ok"].is_object(), "{a} {b}");
    assert_eq!(a["ok"]["position"], b["ok"]["position"]);
    let later = c.ok("approve", &desk, approve, body).await;
    assert_eq!(later["duplicate"], true);
    assert_eq!(later["position"], a["ok"]["position"]);

    let arrive = Uuid::new_v4();
    let body = json!({"clearance": id, "change": {"country": "SO", "at": "2026-11-21T09:00:00Z"}});
    let first = c.ok("arrive", &desk, arrive, body.clone()).await;
    let again = c.ok("arrive", &desk, arrive, body).await;
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["position"], first["position"]);

    assert_eq!(
        c.stream_types(id).await,
        ["ClearanceRequested", "ClearanceApproved", "ArrivalRecorded"],
        "each command stored once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approving_and_refusing_at_once_one_wins_the_other_is_refused() {
    let c = Centre::start().await;
    c.register_person("P-0030").await;
    let (amina, omar) = (duty("duty.amina"), duty("duty.omar"));
    let mut winners = (0, 0);
    for _ in 0..12 {
        let id = Uuid::new_v4();
        c.ok(
            "request",
            &amina,
            id,
            json!({"traveller": "P-0030", "itinerary": journey()}),
        )
        .await;
        let (approve, refuse) = tokio::join!(
            c.ask(
                "approve",
                &amina,
                Uuid::new_v4(),
                json!({"clearance": id, "change": {}})
            ),
            c.ask(
                "refuse",
                &omar,
                Uuid::new_v4(),
                json!({"clearance": id, "change": {"reason": "no escort available"}})
            ),
        );
        let types = c.stream_types(id).await;
        assert_eq!(types.len(), 2, "never both applied: {types:?}");
        let got = c
            .ok("get", &amina, Uuid::new_v4(), json!({"clearance": id}))
            .await;
        match (approve["ok"].is_object(), refuse["ok"].is_object()) {
            (true, false) => {
                assert_eq!(refuse["error"]["code"], "conflict", "{refuse}");
                assert!(
                    refuse["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("already approved by duty.amina"),
                    "{refuse}"
                );
                assert_eq!(types[1], "ClearanceApproved");
                assert_eq!(got["status"], "approved");
                winners.0 += 1;
            }
            (false, true) => {
                assert_eq!(approve["error"]["code"], "conflict", "{approve}");
                assert!(
                    approve["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("already refused by duty.omar"),
                    "{approve}"
                );
                assert_eq!(types[1], "ClearanceRefused");
                assert_eq!(got["status"], "refused");
                assert_eq!(got["refusal_reason"], "no escort available");
                winners.1 += 1;
            }
            _ => panic!("exactly one must win: {approve} / {refuse}"),
        }
    }
    assert_eq!(winners.0 + winners.1, 12, "{winners:?}");
}
