//! Flap damping through the real service: a real nats-server, a real store on disk, two
//! instances of the broadcast service. An area whose level is raised to 5 again and again in
//! a burst gets one broadcast (the rest counted as suppressed on it, on the service's view
//! and on the board), a raise to 6 gets a second one, and a restart or a second instance
//! decides the same (the damping is decided by the fold, at each trigger's position).

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Centre;
use events::RecordedEvent;
use events::command::{Actor, Role};
use events::domain::DomainEvent;
use events::domain::level::{self, AreaSecurityLevelSet};
use events::validate::{Country, SecurityLevel};
use serde_json::json;
use uuid::Uuid;
use vigil_broadcast::rules::{self, Config};

const RULE: &str = "level-5-6-to-country";

async fn start() -> Centre {
    let config = Config::parse(rules::DEFAULT_CONFIG).unwrap();
    assert_eq!(config.damp_minutes, 60, "the shipped window");
    let c = Centre::start(config).await;
    c.register_agencies(&[("unicef", &["SO"])]).await;
    c
}

/// Waits until the log holds `issued` rule broadcasts and `suppressed` damped triggers.
async fn until(c: &Centre, issued: usize, suppressed: usize) -> Vec<RecordedEvent> {
    let found = testkit::eventually(Duration::from_secs(30), || async {
        let log = c.log().await;
        let (i, s) = counts(&log);
        (i >= issued && s >= suppressed).then_some(log)
    })
    .await;
    match found {
        Some(log) => log,
        None => panic!(
            "never {issued} broadcasts and {suppressed} suppressed: {:?}",
            counts(&c.log().await)
        ),
    }
}

fn duty() -> Actor {
    Actor {
        user: "duty.test".into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    }
}

/// (rule broadcasts issued, triggers suppressed) in `log`.
fn counts(log: &[RecordedEvent]) -> (usize, usize) {
    let issued = log
        .iter()
        .filter(|e| e.event_type == "BroadcastIssued" && !e.data["rule"].is_null())
        .count();
    let suppressed = log
        .iter()
        .filter(|e| e.event_type == "BroadcastTriggerSuppressed")
        .count();
    (issued, suppressed)
}

fn set(level: u8, previous: u8) -> DomainEvent {
    AreaSecurityLevelSet {
        area: "SOM-BAN".into(),
        country: Country::parse("SO").unwrap(),
        level: SecurityLevel::new(level.into()).unwrap(),
        reason: "Fighting near the airport".into(),
        previous_level: Some(SecurityLevel::new(previous.into()).unwrap()),
    }
    .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_level_changes_fires_one_broadcast_and_counts_the_rest_as_suppressed() {
    let mut c = start().await;
    c.instance().await;
    c.instance().await;
    // 60 raises to 5 (each after a drop to 3), in one burst within the hour.
    const RAISES: usize = 60;
    let burst: Vec<DomainEvent> = (0..RAISES).flat_map(|_| [set(5, 3), set(3, 5)]).collect();
    let ids = c
        .append(level::stream_for("SOM-BAN"), burst, "duty.test")
        .await;
    let first = rules::firing_id(RULE, ids[0]);
    until(&c, 1, RAISES - 1).await;
    // Let the scheduler run on: nothing more may come of the burst.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = c.log().await;
    assert_eq!(
        counts(&log),
        (1, RAISES - 1),
        "one broadcast, the rest damped"
    );
    for e in log
        .iter()
        .filter(|e| e.event_type == "BroadcastTriggerSuppressed")
    {
        assert_eq!(
            e.stream,
            events::domain::broadcast::stream_for(first),
            "counted on the broadcast"
        );
        assert_eq!(e.data["rule"], RULE);
    }
    let view = c
        .ask("get", &duty(), Uuid::new_v4(), json!({"broadcast": first}))
        .await;
    assert_eq!(view["ok"]["suppressed"], RAISES - 1, "{view}");
    let board = boards::replay(&log).snapshot(boards::View::Duty);
    let on_board = board["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(first))
        .cloned()
        .unwrap();
    assert_eq!(on_board["suppressed"], RAISES - 1, "{on_board}");

    // A restart, then a raise to 6: a higher level goes out; 5 again after it is damped.
    c.stop_instances();
    c.instance().await;
    let more = c
        .append(
            level::stream_for("SOM-BAN"),
            vec![set(6, 3), set(3, 6), set(5, 3)],
            "duty.test",
        )
        .await;
    until(&c, 2, RAISES).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = c.log().await;
    assert_eq!(counts(&log), (2, RAISES));
    let six = rules::firing_id(RULE, more[0]);
    assert!(
        log.iter()
            .any(|e| e.event_type == "BroadcastIssued" && e.stream.id() == six),
        "level 6 is broadcast"
    );
    let last = log
        .iter()
        .rfind(|e| e.event_type == "BroadcastTriggerSuppressed")
        .unwrap();
    assert_eq!(last.stream.id(), six, "5 after 6 is counted on the 6");
    assert_eq!(last.data["trigger"], json!(more[2]));
}
