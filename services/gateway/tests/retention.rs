//! Retention on the live board (issue 17, item 7), end to end against a real gateway, store,
//! nats-server and broadcast service: with a retention of a few seconds, broadcasts that
//! ended leave the board (a `drop` delta to a watching screen, gone from the HTTP board and
//! from a new snapshot) while one still awaiting an acknowledgement stays; the broadcast
//! service still answers for the ones that left.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{Center, call, call_ready};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use vigil_gateway::auth::Role;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const ENDED_AT_ISSUE: &str = "00000000-0000-4000-8000-00000000c001";
const ACKED: &str = "00000000-0000-4000-8000-00000000c002";
const AWAITING: &str = "00000000-0000-4000-8000-00000000c003";

async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("a message within 30 s")
            .expect("open")
            .unwrap();
        if let Message::Text(t) = msg {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

async fn subscribe(c: &Center, token: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": token});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let snap = next(&mut ws).await;
    assert_eq!(snap["type"], "snapshot", "{snap}");
    (ws, snap)
}

fn listed(board: &Value) -> Vec<String> {
    board["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn http_board(c: &Center) -> Value {
    let b = call(c, "GET", "/api/v1/boards/situation", &c.duty_token, None).await;
    assert_eq!(b.status, 200, "{}", b.body);
    b.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ended_broadcasts_leave_the_live_board_after_the_retention_and_stay_in_the_service() {
    let retention = Duration::from_secs(3);
    let c = Center::start_with_limits(vigil_gateway::ConnLimits {
        board_retention: retention,
        ..vigil_gateway::ConnLimits::default()
    })
    .await;
    let unicef = events::domain::agency::AgencyRegistered {
        agency: "unicef".into(),
        name: "UNICEF".into(),
        countries: vec![events::validate::Country::parse("SO").unwrap()],
    };
    common::import(
        &c,
        events::domain::agency::stream_for("unicef"),
        unicef.into(),
    )
    .await;
    let fp = c
        .auth
        .issue(
            "fp.unicef",
            Role::AgencyFocalPoint,
            None,
            Some("unicef".into()),
            Duration::from_secs(3600),
            "session",
        )
        .unwrap()
        .0;
    // A screen watching the duty view from the start.
    let (mut ws, snap) = subscribe(&c, &c.duty_token).await;
    assert!(listed(&snap["data"]).is_empty());

    // For the centre only, nothing to acknowledge: it has ended as soon as it is issued.
    let internal = json!({"id": ENDED_AT_ISSUE, "title": "Shift change", "body": "Handover at 18:00",
        "severity": "low", "audience": "duty_officers", "requires_ack": false});
    // To the agencies in Somalia (unicef), acknowledged below: ends then.
    let acked = json!({"id": ACKED, "title": "Road closed", "body": "Use the north route",
        "severity": "low", "audience": {"country": "SO"}, "requires_ack": true});
    // The same, never acknowledged: it stays however old.
    let awaiting = json!({"id": AWAITING, "title": "Curfew", "body": "Stay indoors",
        "severity": "low", "audience": {"country": "SO"}, "requires_ack": true});
    for body in [&internal, &acked, &awaiting] {
        let a = call_ready(&c, "POST", "/api/v1/broadcasts", &c.duty_token, body).await;
        assert_eq!(a.status, 201, "{}", a.body);
    }
    let a = call(
        &c,
        "POST",
        &format!("/api/v1/broadcasts/{ACKED}/ack"),
        &fp,
        Some(&json!({})),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);

    // The screen sees each one come, then the two that ended dropped (by the tick of a quiet
    // centre or by a later event, whichever comes first), with their agency detail.
    let mut seen = Vec::new();
    let mut dropped = Vec::new();
    let mut removed_detail = Vec::new();
    let started = std::time::Instant::now();
    while dropped.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not dropped within a minute: {dropped:?}"
        );
        let m = next(&mut ws).await;
        if m["type"] != "delta" {
            continue;
        }
        for op in m["ops"].as_array().unwrap() {
            let path = &op["path"];
            match op["op"].as_str().unwrap() {
                "item" if path == &json!(["broadcasts"]) => {
                    seen.push(op["value"]["id"].as_str().unwrap().to_owned());
                }
                "drop" if path == &json!(["broadcasts"]) => {
                    dropped.push(op["id"].as_str().unwrap().to_owned());
                }
                "remove" if path[0] == "broadcast_agencies" => {
                    removed_detail.push(path[1].as_str().unwrap().to_owned());
                }
                _ => {}
            }
        }
    }
    for id in [ENDED_AT_ISSUE, ACKED, AWAITING] {
        assert!(seen.iter().any(|s| s == id), "{id} was never on the board");
    }
    dropped.sort();
    removed_detail.sort();
    assert_eq!(dropped, [ENDED_AT_ISSUE, ACKED]);
    assert_eq!(
        removed_detail, dropped,
        "their agency detail leaves with them"
    );

    // The HTTP board and a new screen's snapshot agree: only the one awaiting its
    // acknowledgement is left, and it is still counted.
    let board = http_board(&c).await;
    assert_eq!(listed(&board), [AWAITING]);
    assert_eq!(board["counters"]["broadcasts_awaiting_ack"], 1);
    let (_, fresh) = subscribe(&c, &c.duty_token).await;
    assert_eq!(listed(&fresh["data"]), [AWAITING]);
    assert_eq!(
        fresh["data"]["broadcast_agencies"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [AWAITING]
    );
    // Still there well past the retention.
    tokio::time::sleep(retention * 2).await;
    assert_eq!(listed(&http_board(&c).await), [AWAITING]);

    // The log and the broadcast service keep the ones that left the board.
    for id in [ENDED_AT_ISSUE, ACKED] {
        let b = call(
            &c,
            "GET",
            &format!("/api/v1/broadcasts/{id}"),
            &c.duty_token,
            None,
        )
        .await;
        assert_eq!(b.status, 200, "{id}: {}", b.body);
        assert_eq!(b.json()["status"], "live");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_a_quiet_centre_a_tick_takes_an_ended_broadcast_off_at_the_same_position() {
    let retention = Duration::from_secs(2);
    let c = Center::start_with_limits(vigil_gateway::ConnLimits {
        board_retention: retention,
        ..vigil_gateway::ConnLimits::default()
    })
    .await;
    // For the centre only, nothing to acknowledge, no agency to deliver to: once issued,
    // nothing more is written.
    let internal = json!({"id": ENDED_AT_ISSUE, "title": "Shift change", "body": "Handover at 18:00",
        "severity": "low", "audience": "duty_officers", "requires_ack": false});
    let a = call_ready(&c, "POST", "/api/v1/broadcasts", &c.duty_token, &internal).await;
    assert_eq!(a.status, 201, "{}", a.body);
    let (mut ws, snap) = testkit::eventually(Duration::from_secs(10), || async {
        let (ws, snap) = subscribe(&c, &c.duty_token).await;
        (listed(&snap["data"]) == [ENDED_AT_ISSUE]).then_some((ws, snap))
    })
    .await
    .expect("the broadcast on the board");
    let position = snap["position"].as_u64().unwrap();
    let started = std::time::Instant::now();
    let tick = loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no tick within a minute"
        );
        let m = next(&mut ws).await;
        if m["type"] == "delta" {
            break m;
        }
    };
    assert_eq!(tick["tick"], true, "{tick}");
    assert_eq!(
        tick["position"], position,
        "no event came: the same position"
    );
    assert_eq!(
        tick["ops"],
        json!([
            {"op": "drop", "path": ["broadcasts"], "id": ENDED_AT_ISSUE},
            {"op": "remove", "path": ["broadcast_agencies", ENDED_AT_ISSUE]},
        ])
    );
    let board = http_board(&c).await;
    assert_eq!(
        (board["position"].as_u64(), listed(&board)),
        (Some(position), vec![])
    );
    // A client resuming from that position may not have had the tick: a snapshot, without it.
    let (mut again, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let sub = json!({"type": "subscribe", "board": "situation", "token": c.duty_token, "since": position});
    again
        .send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let resumed = next(&mut again).await;
    assert_eq!(resumed["type"], "snapshot", "{resumed}");
    assert!(listed(&resumed["data"]).is_empty());
}
