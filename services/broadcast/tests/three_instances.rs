//! Three broadcast service instances on one real nats-server and one real store — a NATS
//! queue group, as on a three-node centre, each instance with its own scheduler — with a clock
//! the test moves: every timer's effect (a rule's firing, a delivery attempt and its retry, a
//! re-send, an escalation) is recorded exactly once in the log, also when one instance is
//! stopped mid-way and another joins later. The schedulers do not coordinate: each piece of
//! work is recorded under an id every instance derives alike, and the store keeps one event
//! per id.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Centre, evacuation};
use events::RecordedEvent;
use events::command::{Actor, Role};
use events::domain::relocation;
use serde_json::json;
use uuid::Uuid;
use vigil_broadcast::clock::Clock;
use vigil_broadcast::rules::{self, Config};

/// The agency whose system never answers (its deliveries fail and are retried, then given up).
const SILENT: &str = "iom";

fn duty() -> Actor {
    Actor {
        user: "ana".into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    }
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

/// A centre with four agencies registered; every one's system answers but the silent one's.
async fn start() -> Centre {
    let c = Centre::start(config()).await;
    c.register_agencies(&[
        ("unicef", &["SO"]),
        ("wfp", &["SO", "KE"]),
        ("who", &["KE"]),
        (SILENT, &["HT"]),
    ])
    .await;
    c.agency_systems_listen(&[SILENT]).await;
    c
}

/// Waits until every broadcast of `ids` passes `done` on its stream.
async fn until_all(c: &Centre, ids: &[Uuid], what: &str, done: impl Fn(&[RecordedEvent]) -> bool) {
    for id in ids {
        let ok = testkit::eventually(Duration::from_secs(20), || async {
            done(&c.broadcast(*id).await).then_some(())
        })
        .await;
        assert!(ok.is_some(), "broadcast {id} never reached: {what}");
    }
}

/// Sets the services' clock to `by` after the latest event recorded on the streams of `ids`
/// (or after its own time, if later). A retry is due one backoff after the failure **as the
/// store recorded it** (the store's clock), while the test's clock stands still: on a loaded
/// machine more real time than the backoff can pass before the test moves it, so moving it
/// by a fixed amount from where it stood may not reach the retry.
async fn advance_past_recorded(c: &Centre, ids: &[Uuid], by: time::Duration) {
    let mut latest = c.clock.now();
    for id in ids {
        for e in c.broadcast(*id).await {
            latest = latest.max(e.recorded_at);
        }
    }
    c.clock.set(latest + by);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_three_instances_every_timer_effect_is_recorded_once_also_when_one_stops_mid_way() {
    let mut c = start().await;
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
            .append_one(relocation::stream_for(Uuid::new_v4()), evacuation().into())
            .await;
        fired.push(rules::firing_id("order-to-country", order));
    }
    let all: Vec<Uuid> = issued.iter().chain(&fired).copied().collect();
    until_all(&c, &fired, "fired", |s| count(s, "BroadcastIssued") == 1).await;

    // Round 1: delivered to the agencies that answer; the silent one's first attempt fails.
    until_all(&c, &issued, "round 1", |s| {
        of(s, "BroadcastDelivered", "unicef", 1) == 1
            && of(s, "BroadcastDelivered", "who", 1) == 1
            && of(s, "BroadcastDeliveryFailed", SILENT, 1) == 1
    })
    .await;
    // The retry timer: the second attempt, and then the silent agency is given up on.
    advance_past_recorded(&c, &issued, time::Duration::seconds(2)).await;
    until_all(&c, &issued, "retry", |s| {
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
    until_all(&c, &issued, "re-sent", |s| {
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
    until_all(&c, &all, "escalated", |s| {
        count(s, "BroadcastEscalated") == 1
    })
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
        let s = c.broadcast(*id).await;
        assert_eq!(count(&s, "BroadcastResent"), 1, "{id}");
        assert_eq!(count(&s, "BroadcastEscalated"), 1, "{id}");
    }
    for id in &issued {
        let s = c.broadcast(*id).await;
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
        let s = c.broadcast(*trigger_broadcast).await;
        assert_eq!(count(&s, "BroadcastIssued"), 1);
    }
}
