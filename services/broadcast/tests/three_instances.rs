//! Three broadcast service instances on one real nats-server and one real store — a NATS
//! queue group, as on a three-node centre, each instance with its own scheduler — with a clock
//! the test moves: every timer's effect (a rule's firing, a delivery attempt and its retry, a
//! re-send, an escalation) is recorded exactly once in the log, also when one instance is
//! stopped mid-way and another joins later. The schedulers do not coordinate: each piece of
//! work is recorded under an id every instance derives alike, and the store keeps one event
//! per id.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use events::command::{Actor, Role};
use events::domain::DomainEvent;
use events::domain::agency::{self, AgencyRegistered};
use events::domain::relocation::{self, OrderKind, RelocationOrdered, Scope};
use events::validate::Country;
use events::{AppendRequest, ExpectedVersion, Meta, RecordedEvent};
use futures::StreamExt;
use runtime::StoreClient;
use serde_json::{Value, json};
use testkit::NatsServer;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_broadcast::clock::{Clock, ManualClock};
use vigil_broadcast::rules::Config;
use vigil_broadcast::{Options, deliver, rules};

/// The agency whose system never answers (its deliveries fail and are retried, then given up).
const SILENT: &str = "iom";

struct Centre {
    nats: NatsServer,
    _dir: tempfile::TempDir,
    stop: CancellationToken,
    client: async_nats::Client,
    store: StoreClient,
    clock: Arc<ManualClock>,
    options: Options,
    instances: Vec<CancellationToken>,
}

fn duty() -> Actor {
    Actor {
        user: "ana".into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    }
}

fn country(c: &str) -> Country {
    Country::parse(c).unwrap()
}

/// The shipped rules; every agency on NATS; two attempts a second apart (clock time), a
/// quick timeout for the silent agency.
fn config() -> Config {
    let mut c = Config::parse(rules::DEFAULT_CONFIG).unwrap();
    c.delivery.attempts = 2;
    c.delivery.backoff_ms = 1_000;
    c.delivery.max_backoff_ms = 1_000;
    c.delivery.timeout_ms = 300;
    c
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
        let store = StoreClient::new(client.clone(), Duration::from_secs(5));
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let options = Options {
            config: Arc::new(config()),
            clock: clock.clone(),
            tick: Duration::from_millis(50),
        };
        let c = Self {
            nats,
            _dir: dir,
            stop,
            client,
            store,
            clock,
            options,
            instances: vec![],
        };
        for (a, countries) in [
            ("unicef", vec!["SO"]),
            ("wfp", vec!["SO", "KE"]),
            ("who", vec!["KE"]),
            (SILENT, vec!["HT"]),
        ] {
            let e = AgencyRegistered {
                agency: a.into(),
                name: a.to_uppercase(),
                countries: countries.into_iter().map(country).collect(),
            };
            c.append(agency::stream_for(a), e.into()).await;
        }
        c.agency_systems_listen().await;
        c
    }

    /// Agency systems on NATS answer each broadcast with its receipt, except the silent one.
    async fn agency_systems_listen(&self) {
        let client = self.nats.connect().await;
        let mut alerts = client.subscribe("vigil.alerts.*").await.unwrap();
        client.flush().await.unwrap();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    _ = stop.cancelled() => return,
                    m = alerts.next() => match m { Some(m) => m, None => return },
                };
                if msg.subject.as_str().ends_with(&format!(".{SILENT}")) {
                    continue;
                }
                let m: deliver::Message = serde_json::from_slice(&msg.payload).unwrap();
                let receipt = deliver::Receipt {
                    received: m.broadcast,
                };
                if let Some(reply) = msg.reply {
                    let body = serde_json::to_vec(&receipt).unwrap();
                    client.publish(reply, body.into()).await.unwrap();
                }
            }
        });
    }

    async fn append(&self, stream: events::StreamName, e: DomainEvent) -> Uuid {
        let id = Uuid::new_v4();
        let request = AppendRequest {
            stream,
            expected_version: ExpectedVersion::Any,
            events: vec![e.to_new_event(
                id,
                Meta {
                    actor: Some("test".into()),
                    ..Meta::default()
                },
            )],
        };
        testkit::eventually(Duration::from_secs(10), || {
            let (store, request) = (self.store.clone(), request.clone());
            async move { store.append(&request).await.ok() }
        })
        .await
        .expect("the store takes the event");
        id
    }

    /// Starts one more instance of the service.
    async fn instance(&mut self) {
        let token = CancellationToken::new();
        tokio::spawn(vigil_broadcast::run_with(
            self.nats.connect().await,
            token.clone(),
            self.options.clone(),
        ));
        self.instances.push(token);
    }

    /// Stops the instance started `n`-th (from 0), as a node going down.
    fn stop_instance(&self, n: usize) {
        self.instances[n].cancel();
    }

    async fn ask(&self, name: &str, who: &Actor, id: Uuid, body: Value) -> Value {
        let payload = serde_json::to_vec(&json!({
            "id": id, "actor": who, "source": "test", "body": body
        }))
        .unwrap();
        let subject = format!("vigil.cmd.broadcast.{name}");
        testkit::eventually(Duration::from_secs(10), || {
            let (client, subject, payload) =
                (self.client.clone(), subject.clone(), payload.clone());
            async move {
                let r = client.request(subject, payload.into()).await.ok()?;
                let v: Value = serde_json::from_slice(&r.payload).ok()?;
                (v["error"]["code"] != "unavailable").then_some(v)
            }
        })
        .await
        .expect("the broadcast service answers")
    }

    async fn log(&self) -> Vec<RecordedEvent> {
        let mut all = vec![];
        let mut from = 1;
        loop {
            let (page, head) = self.store.read(from, 500).await.unwrap();
            let n = page.len() as u64;
            all.extend(page);
            if n == 0 || from + n > head {
                return all;
            }
            from += n;
        }
    }

    async fn stream_of(&self, id: Uuid) -> Vec<RecordedEvent> {
        self.store
            .read_whole_stream(&events::domain::broadcast::stream_for(id), Duration::ZERO)
            .await
            .unwrap()
            .0
    }

    /// Waits until every broadcast of `ids` passes `done` on its stream.
    async fn until_all(&self, ids: &[Uuid], what: &str, done: impl Fn(&[RecordedEvent]) -> bool) {
        for id in ids {
            let ok = testkit::eventually(Duration::from_secs(20), || async {
                done(&self.stream_of(*id).await).then_some(())
            })
            .await;
            assert!(ok.is_some(), "broadcast {id} never reached: {what}");
        }
    }

    /// Lets the schedulers run a few ticks.
    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Drop for Centre {
    fn drop(&mut self) {
        for t in &self.instances {
            t.cancel();
        }
        self.stop.cancel();
    }
}

fn count(events: &[RecordedEvent], ty: &str) -> usize {
    events.iter().filter(|e| e.event_type == ty).count()
}

/// The `ty` events of a stream for `agency` in `round`.
fn of(events: &[RecordedEvent], ty: &str, agency: &str, round: u64) -> usize {
    events
        .iter()
        .filter(|e| e.event_type == ty && e.data["agency"] == agency && e.data["round"] == round)
        .count()
}

/// Every timer effect in the log, by what it records (not by its id): a second record of the
/// same effect under another id would show up here as a count above one.
fn effects(log: &[RecordedEvent]) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for e in log {
        let d = &e.data;
        let key = match e.event_type.as_str() {
            "BroadcastIssued" if d["rule"].is_object() => {
                format!("fired {} {}", d["rule"]["rule"], d["rule"]["trigger"])
            }
            "BroadcastDeliveryAttempted" | "BroadcastDeliveryFailed" => format!(
                "{} {} {} {} {} {}",
                e.event_type, e.stream, d["agency"], d["channel"], d["round"], d["attempt"]
            ),
            "BroadcastDelivered" => format!(
                "delivered {} {} {} {}",
                e.stream, d["agency"], d["channel"], d["round"]
            ),
            "BroadcastResent" | "BroadcastEscalated" => format!("{} {}", e.event_type, e.stream),
            _ => continue,
        };
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

fn evacuation() -> RelocationOrdered {
    RelocationOrdered {
        kind: OrderKind::Evacuation,
        country: country("SO"),
        area: None,
        duty_station: None,
        scope: Scope::AllPersonnel,
        destination: "Nairobi".into(),
        deadline: OffsetDateTime::now_utc() + time::Duration::days(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_three_instances_every_timer_effect_is_recorded_once_also_when_one_stops_mid_way() {
    let mut c = Centre::start().await;
    for _ in 0..3 {
        c.instance().await;
    }
    // Broadcasts issued by a duty officer, and broadcasts fired by rules on evacuation orders.
    let deadline = c.clock.now() + time::Duration::hours(2);
    let deadline = deadline
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut issued = vec![];
    for i in 0..4 {
        let id = Uuid::new_v4();
        let body = json!({"title": format!("Check in {i}"), "body": "Confirm your staff count.",
            "severity": "medium", "audience": {"agencies": ["unicef", "who", SILENT]},
            "requires_ack": true, "ack_deadline": deadline});
        let answer = c.ask("issue", &duty(), id, body).await;
        assert!(answer["ok"].is_object(), "{answer}");
        issued.push(id);
    }
    let mut fired = vec![];
    for _ in 0..2 {
        let order = c
            .append(relocation::stream_for(Uuid::new_v4()), evacuation().into())
            .await;
        fired.push(rules::firing_id("order-to-country", order));
    }
    let all: Vec<Uuid> = issued.iter().chain(&fired).copied().collect();
    c.until_all(&fired, "fired", |s| count(s, "BroadcastIssued") == 1)
        .await;

    // Round 1: delivered to the agencies that answer; the silent one's first attempt fails.
    c.until_all(&issued, "round 1", |s| {
        of(s, "BroadcastDelivered", "unicef", 1) == 1
            && of(s, "BroadcastDelivered", "who", 1) == 1
            && of(s, "BroadcastDeliveryFailed", SILENT, 1) == 1
    })
    .await;
    // The retry timer: the second attempt, and then the silent agency is given up on.
    c.clock.advance(time::Duration::seconds(2));
    c.until_all(&issued, "retry", |s| {
        s.iter().any(|e| {
            e.event_type == "BroadcastDeliveryFailed"
                && e.data["agency"] == SILENT
                && e.data["gave_up"] == true
        })
    })
    .await;

    // The re-send timer fires; one instance stops at that very moment.
    c.clock.advance(time::Duration::minutes(61));
    c.stop_instance(0);
    c.until_all(&issued, "re-sent", |s| {
        count(s, "BroadcastResent") == 1
            && of(s, "BroadcastDelivered", "unicef", 2) == 1
            && of(s, "BroadcastDelivered", "who", 2) == 1
            && of(s, "BroadcastDeliveryFailed", SILENT, 2) == 1
    })
    .await;
    c.clock.advance(time::Duration::seconds(2));
    c.settle().await;

    // The deadline passes; another instance stops as it does and a new one joins.
    c.clock.advance(time::Duration::minutes(60));
    c.stop_instance(1);
    c.instance().await;
    c.until_all(&all, "escalated", |s| count(s, "BroadcastEscalated") == 1)
        .await;

    // Long after: nothing more happens, whatever runs.
    c.clock.advance(time::Duration::hours(5));
    c.settle().await;
    c.instance().await;
    c.settle().await;

    let log = c.log().await;
    let effects = effects(&log);
    let twice: Vec<_> = effects.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "recorded more than once: {twice:?}");
    for id in &all {
        let s = c.stream_of(*id).await;
        assert_eq!(count(&s, "BroadcastResent"), 1, "{id}");
        assert_eq!(count(&s, "BroadcastEscalated"), 1, "{id}");
    }
    for id in &issued {
        let s = c.stream_of(*id).await;
        let escalated = s
            .iter()
            .find(|e| e.event_type == "BroadcastEscalated")
            .unwrap();
        assert_eq!(escalated.data["agencies"], json!(["iom", "unicef", "who"]));
        for round in [1, 2] {
            assert_eq!(
                of(&s, "BroadcastDeliveryAttempted", SILENT, round),
                2,
                "{id} {round}"
            );
            assert_eq!(
                of(&s, "BroadcastDeliveryFailed", SILENT, round),
                2,
                "{id} {round}"
            );
        }
    }
    for trigger_broadcast in &fired {
        let s = c.stream_of(*trigger_broadcast).await;
        assert_eq!(count(&s, "BroadcastIssued"), 1);
    }
}
