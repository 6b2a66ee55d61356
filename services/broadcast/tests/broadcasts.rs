//! The broadcast service against a real nats-server, a real store on disk and a real HTTP
//! webhook receiver, with a clock the test moves (nothing sleeps until a deadline):
//! rules fire exactly once across restarts and two instances, the two-person rule holds,
//! webhooks are retried and signed, escalation happens once across a restart at the
//! deadline, acknowledgements over HTTP-shaped commands and over NATS, and CAP output that
//! parses back as CAP 1.2.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use common::{Centre, country, evacuation};
use events::RecordedEvent;
use events::command::{Actor, Role};
use events::domain::relocation::{self, RelocationOrdered};
use futures::StreamExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use vigil_broadcast::clock::Clock;
use vigil_broadcast::rules::{Config, Endpoint};
use vigil_broadcast::{cap, deliver, rules};

const SECRET: &str = "test-secret-generated-per-run";

/// What the webhook receiver saw: (body, signature valid).
type Seen = Arc<Mutex<Vec<(Value, bool)>>>;

/// A real HTTP receiver that can be taken down and brought back on the same port.
struct Receiver {
    addr: SocketAddr,
    seen: Seen,
    stop: Option<CancellationToken>,
}

impl Receiver {
    fn new() -> Self {
        let port = testkit::free_port();
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            seen: Arc::default(),
            stop: None,
        }
    }

    async fn up(&mut self) {
        let seen = self.seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let seen = seen.clone();
                async move {
                    let sig = headers
                        .get(deliver::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let now = OffsetDateTime::now_utc().unix_timestamp();
                    // The signing clock is the test's: allow a day either way.
                    let valid = deliver::verify(SECRET.as_bytes(), sig, &body, now, 86_400 * 30);
                    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    seen.lock().unwrap().push((v, valid));
                    StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await
                .unwrap();
        });
        self.stop = Some(stop);
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn seen(&self) -> Vec<(Value, bool)> {
        self.seen.lock().unwrap().clone()
    }
}

fn duty(user: &str) -> Actor {
    Actor {
        user: user.into(),
        role: Role::DutyOfficer,
        scope: None,
        agency: None,
    }
}

fn focal_point(agency: &str) -> Actor {
    Actor {
        user: format!("fp.{agency}"),
        role: Role::AgencyFocalPoint,
        scope: None,
        agency: Some(agency.into()),
    }
}

/// The configuration: the shipped rules, a webhook for wfp (and `extra` endpoints), quick
/// retries.
fn config(webhook: &str, attempts: u32) -> Config {
    let mut c = Config::parse(rules::DEFAULT_CONFIG).unwrap();
    c.delivery.attempts = attempts;
    c.delivery.backoff_ms = 1_000;
    c.delivery.max_backoff_ms = 4_000;
    c.delivery.timeout_ms = 2_000;
    c.agencies.insert(
        "wfp".into(),
        Endpoint {
            webhook: Some(webhook.to_owned()),
            secret: Some(SECRET.to_owned()),
            live_only: false,
            nats: true,
        },
    );
    // iom is reached by webhook only (no NATS system): when the webhook is down, nothing
    // reaches it.
    c.agencies.insert(
        "iom".into(),
        Endpoint {
            webhook: Some(webhook.to_owned()),
            secret: Some(SECRET.to_owned()),
            live_only: false,
            nats: false,
        },
    );
    c.agencies.insert(
        "ocha".into(),
        Endpoint {
            webhook: None,
            secret: None,
            live_only: true,
            nats: true,
        },
    );
    c
}

/// A centre with every agency of these tests registered and their NATS systems answering.
async fn start(config: Config) -> Centre {
    let c = Centre::start(config).await;
    c.register_agencies(&[
        ("unicef", &["SO"]),
        ("wfp", &["SO", "KE"]),
        ("who", &["KE"]),
        ("ocha", &["SO"]),
        ("iom", &["HT"]),
    ])
    .await;
    c.agency_systems_listen(&[]).await;
    c
}

/// Events of broadcast `id` of type `ty`.
async fn of_type(c: &Centre, id: Uuid, ty: &str) -> Vec<RecordedEvent> {
    let events = c.broadcast(id).await;
    events.into_iter().filter(|e| e.event_type == ty).collect()
}

/// Waits until broadcast `id` has at least `n` events of type `ty`.
async fn until(c: &Centre, id: Uuid, ty: &str, n: usize) -> Vec<RecordedEvent> {
    testkit::eventually(Duration::from_secs(15), || async {
        let found = of_type(c, id, ty).await;
        (found.len() >= n).then_some(found)
    })
    .await
    .unwrap_or_else(|| panic!("broadcast {id} never got {n} {ty}"))
}

/// A command whose `ok` is text (CAP XML); the text.
async fn ok_text(c: &Centre, name: &str, who: &Actor, body: Value) -> String {
    let answer = c.ask(name, who, Uuid::new_v4(), body).await;
    let text = answer["ok"].as_str();
    text.unwrap_or_else(|| panic!("{name}: {answer}"))
        .to_owned()
}

fn rule_broadcasts(log: &[RecordedEvent], trigger: Uuid) -> Vec<&RecordedEvent> {
    log.iter()
        .filter(|e| e.event_type == "BroadcastIssued")
        .filter(|e| e.data["rule"]["trigger"] == json!(trigger))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_evacuation_order_fires_one_broadcast_to_the_agencies_in_the_country_across_restarts_and_two_instances()
 {
    let receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 2)).await;
    c.instance().await;
    let order = c
        .append_one(relocation::stream_for(Uuid::new_v4()), evacuation().into())
        .await;
    let id = rules::firing_id("order-to-country", order);
    let issued = until(&c, id, "BroadcastIssued", 1).await;
    assert_eq!(
        issued[0].meta.causation_id,
        Some(order),
        "caused by the order"
    );
    assert_eq!(
        issued[0].data["recipients"],
        json!(["ocha", "unicef", "wfp"]),
        "the agencies present in SO"
    );
    assert_eq!(issued[0].data["severity"], "critical");

    // Restart mid-way, then run two instances at once, and order again in another country
    // while they run: each trigger still has exactly one broadcast.
    c.stop_instances();
    c.instance().await;
    c.instance().await;
    let second = c
        .append_one(
            relocation::stream_for(Uuid::new_v4()),
            RelocationOrdered {
                country: country("KE"),
                ..evacuation()
            }
            .into(),
        )
        .await;
    until(
        &c,
        rules::firing_id("order-to-country", second),
        "BroadcastIssued",
        1,
    )
    .await;
    c.settle().await;
    let log = c.log().await;
    assert_eq!(rule_broadcasts(&log, order).len(), 1);
    let ke = rule_broadcasts(&log, second);
    assert_eq!(ke.len(), 1);
    assert_eq!(ke[0].data["recipients"], json!(["wfp", "who"]));
    // Each delivery attempt was claimed once, however many instances ran.
    let mut claims = BTreeMap::new();
    for e in log
        .iter()
        .filter(|e| e.event_type == "BroadcastDeliveryAttempted")
    {
        *claims.entry(e.id).or_insert(0) += 1;
    }
    assert!(claims.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_issuer_cannot_approve_and_nothing_goes_out_before_a_second_duty_officer_approves() {
    let receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 2)).await;
    c.instance().await;
    let mut alerts = c.client().subscribe("vigil.alerts.unicef").await.unwrap();
    let id = Uuid::new_v4();
    let body = json!({"title": "Curfew 18:00", "body": "Stay in.", "severity": "high",
        "audience": {"country": "SO"}, "requires_ack": true,
        "ack_deadline": "2099-01-01T00:00:00Z"});
    let answer = c.ask("issue", &duty("ana"), id, body.clone()).await;
    assert!(answer["ok"].is_object(), "{answer}");
    let retry = c.ask("issue", &duty("ana"), id, body).await;
    assert_eq!(retry["ok"]["duplicate"], true, "a resend is stored once");

    let (code, message) = c
        .refused("approve", &duty("ana"), json!({"broadcast": id}))
        .await;
    assert_eq!(code, "second_person_required");
    assert!(message.contains("two-person"), "{message}");
    c.settle().await;
    assert!(
        of_type(&c, id, "BroadcastDeliveryAttempted")
            .await
            .is_empty()
    );
    let (code, _) = c
        .refused("ack", &focal_point("unicef"), json!({"broadcast": id}))
        .await;
    assert_eq!(
        code, "not_found",
        "not sent yet, so not visible to agencies"
    );

    c.ok("approve", &duty("ben"), json!({"broadcast": id}))
        .await;
    let delivered = tokio::time::timeout(Duration::from_secs(10), alerts.next())
        .await
        .unwrap()
        .unwrap();
    let m: deliver::Message = serde_json::from_slice(&delivered.payload).unwrap();
    assert_eq!(
        (m.broadcast, m.agency.as_str(), m.status.as_str()),
        (id, "unicef", "Actual")
    );
    let view = c.ok("get", &duty("ana"), json!({"broadcast": id})).await;
    assert_eq!(view["approved_by"], "ben");
    assert_eq!(view["issued_by"], "ana");
    assert_eq!(view["recipients"], json!(["ocha", "unicef", "wfp"]));

    // Acknowledged over a command (HTTP) and over NATS.
    c.ok("ack", &focal_point("unicef"), json!({"broadcast": id}))
        .await;
    let ack = c
        .client()
        .request(
            "vigil.alerts.wfp.ack",
            serde_json::to_vec(&json!({"broadcast": id, "by": "wfp-ops-system"}))
                .unwrap()
                .into(),
        )
        .await
        .unwrap();
    let ack: Value = serde_json::from_slice(&ack.payload).unwrap();
    assert!(ack["ok"].is_object(), "{ack}");
    let bad = c
        .client()
        .request(
            "vigil.alerts.wfp.ack",
            b"{\"broadcast\": 7}".to_vec().into(),
        )
        .await
        .unwrap();
    let bad: Value = serde_json::from_slice(&bad.payload).unwrap();
    assert_eq!(bad["error"]["code"], "invalid", "{bad}");
    let view = c.ok("get", &duty("ana"), json!({"broadcast": id})).await;
    assert_eq!(view["acknowledged"], 2);
    assert_eq!(view["agencies"]["wfp"]["ack"]["by"], "wfp-ops-system");
    let chain = c.ok("chain", &duty("ana"), json!({"broadcast": id})).await;
    let types: Vec<&str> = chain["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types[..2], ["BroadcastIssued", "BroadcastApproved"]);
    assert!(types.contains(&"BroadcastAcknowledged"), "{types:?}");
    // A focal point sees their own agency's line only.
    let theirs = c
        .ok("get", &focal_point("unicef"), json!({"broadcast": id}))
        .await;
    let lines: Vec<&String> = theirs["agencies"].as_object().unwrap().keys().collect();
    assert_eq!(lines, ["unicef"]);

    // An unapproved broadcast is withdrawn by a cancel: no notice goes to anyone; a resend
    // of the same cancel is stored once.
    let unsent = Uuid::new_v4();
    c.ask(
        "issue",
        &duty("ana"),
        unsent,
        json!({"title": "Wrong", "body": "Oops.",
        "severity": "critical", "audience": "all_agencies"}),
    )
    .await;
    let cancel = Uuid::new_v4();
    let body = json!({"broadcast": unsent, "change": {"reason": "typo"}});
    let first = c.ask("cancel", &duty("ana"), cancel, body.clone()).await;
    assert!(first["ok"].is_object(), "{first}");
    let again = c.ask("cancel", &duty("ana"), cancel, body).await;
    assert_eq!(again["ok"]["duplicate"], true, "{again}");
    let v = c
        .ok("get", &duty("ana"), json!({"broadcast": unsent}))
        .await;
    assert_eq!(v["status"], "cancelled");
    c.settle().await;
    let log = c.log().await;
    assert!(
        !log.iter().any(|e| e.data["cancels"] == json!(unsent)),
        "no cancellation notice for what was never sent"
    );
    assert!(
        of_type(&c, unsent, "BroadcastDeliveryAttempted")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_down_then_up_gets_the_broadcast_once_signed_and_one_down_for_good_is_recorded_as_failed()
 {
    let mut receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 3)).await;
    c.instance().await;
    let id = Uuid::new_v4();
    let body = json!({"title": "Road closed", "body": "Route 3 is closed.", "severity": "medium",
        "audience": {"agencies": ["wfp"]}});
    c.ask("issue", &duty("ana"), id, body).await;
    // The receiver is down: the first attempt fails (nothing listens on its port).
    let failed = until(&c, id, "BroadcastDeliveryFailed", 1).await;
    assert_eq!(failed[0].data["gave_up"], false);
    receiver.up().await;
    // The retry is due one backoff (1 s) after the failure was recorded (by the store's
    // clock, a moment ahead of the test's): move the service's clock well past it.
    c.clock.advance(time::Duration::seconds(30));
    let delivered = until(&c, id, "BroadcastDelivered", 2).await;
    assert!(
        delivered
            .iter()
            .any(|e| e.data["channel"] == "webhook" && e.data["attempt"] == 2)
    );
    c.settle().await;
    c.clock.advance(time::Duration::minutes(10));
    c.settle().await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "delivered once: {seen:?}");
    assert!(seen[0].1, "with a valid signature");
    assert_eq!(seen[0].0["broadcast"], json!(id));

    // Now down for good, for an agency reached by webhook only: three attempts, then given
    // up, and the view and the board say so.
    if let Some(s) = receiver.stop.take() {
        s.cancel();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id2 = Uuid::new_v4();
    let body = json!({"title": "Road closed again", "body": "Route 4.", "severity": "low",
        "audience": {"agencies": ["iom"]}});
    c.ask("issue", &duty("ana"), id2, body).await;
    for n in 1..=3 {
        until(&c, id2, "BroadcastDeliveryFailed", n).await;
        c.clock.advance(time::Duration::seconds(30));
    }
    c.settle().await;
    let failed = of_type(&c, id2, "BroadcastDeliveryFailed").await;
    assert_eq!(failed.len(), 3, "exactly N attempts");
    assert_eq!(failed[2].data["gave_up"], true);
    let view = c.ok("get", &duty("ana"), json!({"broadcast": id2})).await;
    assert_eq!(view["failed"], 1, "{view}");
    assert!(
        view["agencies"]["iom"]["failed"]["webhook"]
            .as_str()
            .unwrap()
            .contains("connect"),
        "{view}"
    );
    assert_eq!(receiver.seen().len(), 1);
    let board = boards::replay(&c.log().await).snapshot(boards::View::Duty);
    let on_board = board["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == json!(id2))
        .cloned()
        .unwrap();
    assert_eq!(on_board["failed"], 1, "{on_board}");
    assert_eq!(
        board["broadcast_agencies"][id2.to_string()]["iom"]["failed"],
        true
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unacknowledged_broadcast_is_resent_then_escalated_once_also_across_a_restart_at_the_deadline()
 {
    let receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 1)).await;
    c.instance().await;
    let id = Uuid::new_v4();
    let deadline = c.clock.now() + time::Duration::hours(2);
    let body = json!({"title": "Check in", "body": "Confirm your staff count.", "severity": "medium",
        "audience": {"agencies": ["unicef", "who"]}, "requires_ack": true,
        "ack_deadline": deadline.format(&time::format_description::well_known::Rfc3339).unwrap()});
    c.ask("issue", &duty("ana"), id, body).await;
    until(&c, id, "BroadcastDelivered", 2).await;
    c.ok("ack", &focal_point("unicef"), json!({"broadcast": id}))
        .await;
    // The ack is on disk; the scheduler decides from the register, which learns it from the
    // log a moment later. An agency whose ack it has not seen yet may be sent it again
    // (delivery is at least once): wait until the register has it, so the resend below is
    // the one for the silent agency only.
    testkit::eventually(Duration::from_secs(10), || async {
        let view = c.ok("get", &duty("ana"), json!({"broadcast": id})).await;
        view["agencies"]["unicef"]["ack"].is_object().then_some(())
    })
    .await
    .expect("the register sees UNICEF's acknowledgement");
    c.clock.advance(time::Duration::minutes(61));
    let resent = until(&c, id, "BroadcastResent", 1).await;
    assert_eq!(resent[0].data["agencies"], json!(["who"]));
    until(&c, id, "BroadcastDelivered", 3).await;

    // Stop just before the deadline; the deadline passes while nothing runs; two instances
    // come back at once.
    c.clock.advance(time::Duration::minutes(58));
    c.settle().await;
    assert!(of_type(&c, id, "BroadcastEscalated").await.is_empty());
    c.stop_instances();
    c.clock.advance(time::Duration::minutes(2));
    c.instance().await;
    c.instance().await;
    let escalated = until(&c, id, "BroadcastEscalated", 1).await;
    assert_eq!(escalated[0].data["agencies"], json!(["who"]));
    c.clock.advance(time::Duration::hours(5));
    c.settle().await;
    c.stop_instances();
    c.instance().await;
    c.settle().await;
    assert_eq!(
        of_type(&c, id, "BroadcastEscalated").await.len(),
        1,
        "exactly one"
    );
    assert_eq!(of_type(&c, id, "BroadcastResent").await.len(), 1);
    let view = c.ok("get", &duty("ana"), json!({"broadcast": id})).await;
    assert_eq!(view["escalated"], json!(["who"]));
    assert!(
        view["agencies"]["unicef"]["ack"]["seconds"]
            .as_i64()
            .unwrap()
            >= 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cap_output_parses_back_as_cap_1_2_with_update_cancel_and_exercise() {
    let receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 1)).await;
    c.instance().await;
    let original = Uuid::new_v4();
    let body = json!({"title": "Flooding <Beledweyne> & \"Jowhar\"", "body": "Move to high ground — now.",
        "severity": "medium", "audience": {"country": "SO"}});
    c.ask("issue", &duty("ana"), original, body).await;
    let update = Uuid::new_v4();
    c.ask(
        "issue",
        &duty("ana"),
        update,
        json!({"title": "Flooding update", "body": "Water receding.",
        "severity": "low", "audience": {"country": "SO"}, "updates": original}),
    )
    .await;
    let cancel = c
        .ask(
            "cancel",
            &duty("ana"),
            Uuid::new_v4(),
            json!({"broadcast": update, "change": {"reason": "sent in error"}}),
        )
        .await;
    let cancel_id: Uuid = serde_json::from_value(cancel["ok"]["event_id"].clone()).unwrap();
    let drill = Uuid::new_v4();
    c.ask(
        "issue",
        &duty("ana"),
        drill,
        json!({"title": "Drill", "body": "Exercise only.",
        "severity": "low", "audience": {"country": "SO"}, "exercise": true}),
    )
    .await;

    let xml = |id: Uuid| {
        let c = &c;
        async move { ok_text(c, "cap", &duty("ana"), json!({"broadcast": id})).await }
    };
    let first = xml(original).await;
    let parsed = cap::parse(&first).unwrap();
    let text = format!("{parsed:?}");
    assert!(
        text.contains("Flooding <Beledweyne> & \\\"Jowhar\\\""),
        "{text}"
    );
    assert!(
        first.contains("<cap:status>Actual</cap:status>")
            && first.contains("<cap:msgType>Alert</cap:msgType>")
    );
    let up = xml(update).await;
    cap::parse(&up).unwrap();
    assert!(up.contains("<cap:msgType>Update</cap:msgType>"), "{up}");
    assert!(
        up.contains(&cap::identifier(original)),
        "references the original: {up}"
    );
    let cancelled = xml(cancel_id).await;
    cap::parse(&cancelled).unwrap();
    assert!(cancelled.contains("<cap:msgType>Cancel</cap:msgType>"));
    assert!(cancelled.contains(&cap::identifier(update)));
    let ex = xml(drill).await;
    cap::parse(&ex).unwrap();
    assert!(ex.contains("<cap:status>Exercise</cap:status>"), "{ex}");
    assert!(ex.contains("EXERCISE"), "visibly an exercise: {ex}");

    // ocha takes live broadcasts only: the exercise did not go to it, and naming it is refused.
    let view = c.ok("get", &duty("ana"), json!({"broadcast": drill})).await;
    assert_eq!(view["recipients"], json!(["unicef", "wfp"]));
    let (code, message) = c
        .refused(
            "issue",
            &duty("ana"),
            json!({"title": "Drill", "body": "x", "severity": "low",
            "audience": {"agencies": ["ocha"]}, "exercise": true}),
        )
        .await;
    assert_eq!(code, "invalid");
    assert!(message.contains("live broadcasts only"), "{message}");

    // unicef's feed holds all four; every alert in it parses.
    let feed = ok_text(&c, "feed", &focal_point("unicef"), json!({})).await;
    let alerts = cap::alerts_in_feed(&feed);
    assert_eq!(alerts.len(), 4);
    for a in &alerts {
        cap::parse(a).unwrap();
    }
    let (code, _) = c
        .refused("feed", &focal_point("unicef"), json!({"agency": "wfp"}))
        .await;
    assert_eq!(code, "forbidden");
    // The original's view says it was updated; the update's says it was cancelled.
    let v = c
        .ok("get", &duty("ana"), json!({"broadcast": original}))
        .await;
    assert_eq!(v["superseded_by"], json!(update));
    let v = c
        .ok("get", &duty("ana"), json!({"broadcast": update}))
        .await;
    assert_eq!(v["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_commands_are_refused_and_change_nothing() {
    let receiver = Receiver::new();
    let mut c = start(config(&receiver.url(), 1)).await;
    c.instance().await;
    for (body, field) in [
        (
            json!({"title": "", "body": "x", "severity": "low", "audience": "all_agencies"}),
            "title",
        ),
        (
            json!({"title": "x", "body": "x", "severity": "loud", "audience": "all_agencies"}),
            "severity",
        ),
        (
            json!({"title": "x", "body": "x", "severity": "low", "audience": {"agencies": ["nobody"]}}),
            "nobody",
        ),
        (
            json!({"title": "x", "body": "x", "severity": "low", "audience": "all_agencies", "recipients": ["wfp"]}),
            "recipients",
        ),
        (
            json!({"title": "x", "body": "x", "severity": "low", "audience": "all_agencies", "ack_deadline": "2099-01-01T00:00:00Z"}),
            "ack_deadline",
        ),
        (
            json!({"title": "x", "body": "x", "severity": "low", "audience": "all_agencies", "requires_ack": true, "ack_deadline": "2020-01-01T00:00:00Z"}),
            "already past",
        ),
    ] {
        let (code, message) = c.refused("issue", &duty("ana"), body).await;
        assert_eq!(code, "invalid", "{message}");
        assert!(message.contains(field), "{field}: {message}");
    }
    let (code, _) = c
        .refused(
            "issue",
            &focal_point("wfp"),
            json!({"title": "x", "body": "x", "severity": "low", "audience": "all_agencies"}),
        )
        .await;
    assert_eq!(code, "forbidden");
    let garbage = c
        .client()
        .request(
            "vigil.cmd.broadcast.issue",
            b"\xff\xfe not json".to_vec().into(),
        )
        .await
        .unwrap();
    let garbage: Value = serde_json::from_slice(&garbage.payload).unwrap();
    assert_eq!(garbage["error"]["code"], "invalid");
    c.settle().await;
    let log = c.log().await;
    assert!(
        !log.iter()
            .any(|e| e.stream.category().as_str() == "broadcast")
    );
}
