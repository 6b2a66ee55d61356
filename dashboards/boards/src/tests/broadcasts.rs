//! Broadcasts on the situation board as the broadcast service writes them: recipients resolved
//! when issued, the two-person rule, each delivery's outcome, acknowledgement times, re-sends,
//! escalations, internal audiences, rule firings and exercises.

use events::domain::broadcast::*;
use serde_json::{Value, json};

use super::{Log, page_after_deltas, typed, uuid};
use crate::{Op, View};

/// Event `n` of a test log is recorded `n` minutes after the start: this many seconds apart.
const MINUTE: i64 = 60;

pub(super) fn agencies(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|a| (*a).to_owned()).collect()
}

/// A broadcast as the service issues it today: recipients resolved, acknowledgement required.
fn issue(title: &str, severity: BroadcastSeverity, audience: Audience) -> BroadcastIssued {
    let recipients = match &audience {
        Audience::Agencies(list) => list.clone(),
        a if a.is_internal() => vec![],
        _ => agencies(&["unhcr", "unicef", "wfp"]),
    };
    BroadcastIssued {
        title: title.into(),
        body: "Stay indoors.".into(),
        severity,
        audience,
        requires_ack: true,
        ack_deadline: None,
        exercise: false,
        updates: None,
        cancels: None,
        recipients,
        rule: None,
    }
}

/// High severity to every agency: a second duty officer must approve it.
fn two_person(title: &str) -> BroadcastIssued {
    issue(title, BroadcastSeverity::High, Audience::AllAgencies)
}

/// Low severity to a list: it goes out when issued.
pub(super) fn routine(title: &str, list: &[&str]) -> BroadcastIssued {
    issue(
        title,
        BroadcastSeverity::Low,
        Audience::Agencies(agencies(list)),
    )
}

pub(super) fn delivered(agency: &str, round: u32) -> BroadcastDelivered {
    BroadcastDelivered {
        agency: agency.into(),
        channel: Channel::Nats,
        attempt: 1,
        round,
    }
}

pub(super) fn failed(agency: &str, gave_up: bool) -> BroadcastDeliveryFailed {
    BroadcastDeliveryFailed {
        agency: agency.into(),
        channel: Channel::Webhook,
        round: 1,
        attempt: if gave_up { 5 } else { 1 },
        error: "HTTP 503 from https://hooks.example.org".into(),
        gave_up,
    }
}

pub(super) fn ack(agency: &str) -> BroadcastAcknowledged {
    BroadcastAcknowledged {
        agency: agency.into(),
        by: "afp.maria.lopez".into(),
    }
}

fn approve(by: &str) -> BroadcastApproved {
    BroadcastApproved { by: by.into() }
}

pub(super) fn cancel() -> BroadcastCancelled {
    BroadcastCancelled {
        reason: "Sent in error".into(),
        by_broadcast: None,
    }
}

/// The newest listed broadcast of `view`.
fn newest(log: &Log, view: View) -> Value {
    log.snapshot(view)["broadcasts"][0].clone()
}

/// Asserts that the delta path agrees with the fold from every starting point of the log.
fn deltas_agree(log: &Log) {
    for view in View::ALL {
        let fresh = log.snapshot(view);
        for k in 0..=log.events.len() {
            assert_eq!(
                page_after_deltas(&log.events, k, view),
                fresh,
                "k={k} {view:?}"
            );
        }
    }
}

#[test]
fn a_two_person_broadcast_awaits_approval_then_goes_live_with_its_approver() {
    let mut log = Log::default();
    log.push_by(1, two_person("Curfew from 18:00"), "duty.amara.diallo");
    let snap = log.snapshot(View::Duty);
    let b = &snap["broadcasts"][0];
    assert_eq!(b["status"], "awaiting_approval");
    assert_eq!(b["issued_by"], "duty.amara.diallo");
    assert_eq!(b["approved_by"], Value::Null);
    assert_eq!(b["total"], 3, "the recipients resolved when issued");
    assert_eq!(snap["counters"]["broadcasts_awaiting_approval"], 1);
    assert_eq!(
        snap["counters"]["broadcasts_awaiting_ack"], 0,
        "nothing went out: nobody can acknowledge yet"
    );
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast issued, awaiting approval: Curfew from 18:00"
    );

    log.push_by(1, approve("duty.lena.schmidt"), "duty.lena.schmidt");
    let snap = log.snapshot(View::Duty);
    let b = &snap["broadcasts"][0];
    assert_eq!(b["status"], "live");
    assert_eq!(b["approved_by"], "duty.lena.schmidt");
    assert_eq!(
        b["approved_at"],
        crate::timestamp(super::T0 + time::Duration::minutes(2))
    );
    assert_eq!(snap["counters"]["broadcasts_awaiting_approval"], 0);
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 1);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast approved by a second duty officer: Curfew from 18:00"
    );
    // A second approval changes nothing: the first one stands.
    let mut board = log.board();
    let changes = board.apply(typed(log.push(1, approve("duty.olga.petrova"))));
    assert!(changes.is_empty(), "{changes:?}");
    assert_eq!(newest(&log, View::Duty)["approved_by"], "duty.lena.schmidt");

    // The wall screen shows the status, never who issued or approved.
    let wall = log.snapshot(View::WallScreen);
    assert_eq!(wall["broadcasts"][0]["status"], "live");
    let text = wall.to_string();
    assert!(!text.contains("amara") && !text.contains("lena"), "{text}");
    assert!(wall.get("broadcast_agencies").is_none());
    assert!(wall["broadcasts"][0].get("issued_by").is_none());
    deltas_agree(&log);
}

#[test]
fn broadcasts_that_need_no_second_person_are_live_when_issued() {
    let mut log = Log::default();
    log.push(1, routine("Road closed", &["wfp"]));
    // A cancellation goes out at once, whatever its severity.
    log.push(
        2,
        BroadcastIssued {
            cancels: Some(uuid::Uuid::from_u128(1)),
            ..two_person("Cancel: road closed")
        },
    );
    // So does a rule's firing: the rules file was reviewed.
    log.push(
        3,
        BroadcastIssued {
            rule: Some(Firing {
                rule: "level-5-curfew".into(),
                rules_version: 4,
                trigger: uuid::Uuid::from_u128(99),
                trigger_type: "AreaSecurityLevelSet".into(),
            }),
            ..two_person("Curfew in Kabul")
        },
    );
    let snap = log.snapshot(View::Duty);
    let statuses: Vec<&Value> = snap["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["status"])
        .collect();
    assert_eq!(statuses, [&json!("live"), &json!("live"), &json!("live")]);
    assert_eq!(snap["broadcasts"][0]["rule"], "level-5-curfew");
    assert_eq!(snap["broadcasts"][1]["rule"], Value::Null);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast issued by rule level-5-curfew: Curfew in Kabul"
    );
    assert_eq!(snap["counters"]["broadcasts_awaiting_approval"], 0);
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 3);
    deltas_agree(&log);
}

#[test]
fn a_delivery_given_up_shows_as_failed_until_a_later_delivery_succeeds() {
    let mut log = Log::default();
    log.push(1, routine("Flooding on the MSR", &["unicef", "wfp"]));
    log.push(1, failed("wfp", false));
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["broadcast_agencies"][uuid(1)]["wfp"]["failed"],
        false,
        "another attempt follows"
    );
    assert_eq!(snap["counters"]["broadcast_deliveries_failed"], 0);
    // Sent, but no agency system received it yet.
    assert_eq!(snap["broadcast_agencies"][uuid(1)]["wfp"]["sent"], true);
    assert_eq!(snap["broadcast_agencies"][uuid(1)]["unicef"]["sent"], false);
    assert_eq!(
        (
            &snap["broadcasts"][0]["sent"],
            &snap["broadcasts"][0]["delivered"]
        ),
        (&json!(1), &json!(0))
    );

    log.push(1, failed("wfp", true));
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["broadcast_agencies"][uuid(1)]["wfp"],
        json!({"sent": true, "delivered": false, "acknowledged": false, "ack_seconds": null, "failed": true, "resent": false})
    );
    let b = &snap["broadcasts"][0];
    assert_eq!(
        (&b["failed"], &b["delivered"], &b["sent"]),
        (&json!(1), &json!(0), &json!(1))
    );
    assert_eq!(snap["counters"]["broadcast_deliveries_failed"], 1);
    let note = &snap["timeline"][0];
    assert_eq!(
        note["text"],
        "Broadcast not delivered to wfp: Flooding on the MSR"
    );
    assert_eq!(note["severity"], "high");
    assert!(
        !snap.to_string().contains("hooks.example.org"),
        "the error text is not shown"
    );
    // The same final failure over another channel says nothing new.
    log.push(
        1,
        BroadcastDeliveryFailed {
            channel: Channel::Cap,
            ..failed("wfp", true)
        },
    );
    assert_eq!(
        log.snapshot(View::Duty)["timeline"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The re-send gets through: delivered, no longer failed.
    log.push(
        1,
        BroadcastResent {
            agencies: agencies(&["wfp"]),
        },
    );
    log.push(1, delivered("wfp", 2));
    let snap = log.snapshot(View::Duty);
    let wfp = &snap["broadcast_agencies"][uuid(1)]["wfp"];
    assert_eq!(
        (&wfp["delivered"], &wfp["failed"], &wfp["resent"]),
        (&json!(true), &json!(false), &json!(true))
    );
    let b = &snap["broadcasts"][0];
    assert_eq!(
        (&b["failed"], &b["delivered"], &b["resent"]),
        (&json!(0), &json!(1), &json!(1))
    );
    assert_eq!(snap["counters"]["broadcast_deliveries_failed"], 0);

    // A failure after a delivery (over another channel) does not undo it.
    log.push(1, delivered("unicef", 1));
    log.push(1, failed("unicef", true));
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["broadcast_agencies"][uuid(1)]["unicef"]["failed"],
        false
    );
    assert_eq!(snap["broadcasts"][0]["delivered"], 2);
    deltas_agree(&log);
}

#[test]
fn failures_count_only_on_live_broadcasts() {
    let mut log = Log::default();
    log.push(1, routine("Convoy delayed", &["wfp"]));
    log.push(1, failed("wfp", true));
    assert_eq!(
        log.snapshot(View::Duty)["counters"]["broadcast_deliveries_failed"],
        1
    );
    log.push(1, cancel());
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["counters"]["broadcast_deliveries_failed"], 0);
    assert_eq!(
        snap["broadcasts"][0]["failed"], 1,
        "still shown on the broadcast"
    );
    // An acknowledgement shows the agency has it, whatever the channels said.
    log.push(2, routine("Airport closed", &["unicef"]));
    log.push(2, failed("unicef", true));
    log.push(2, ack("unicef"));
    let snap = log.snapshot(View::Duty);
    assert_eq!(
        snap["broadcast_agencies"][uuid(2)]["unicef"]["failed"],
        false
    );
    assert_eq!(snap["counters"]["broadcast_deliveries_failed"], 0);
    deltas_agree(&log);
}

#[test]
fn acknowledgement_time_counts_from_approval_or_from_issue() {
    let mut log = Log::default();
    // Needs approval: issued at minute 1, approved at minute 3, acknowledged at minute 6.
    log.push(1, two_person("Evacuation of Gao"));
    log.push(9, routine("Heat wave", &["wfp", "unicef"])); // minute 2
    log.push(1, approve("duty.lena.schmidt")); // minute 3
    log.push(1, delivered("wfp", 1)); // minute 4
    log.push(9, ack("wfp")); // minute 5: 3 minutes after its issue
    log.push(1, ack("wfp")); // minute 6: 3 minutes after the approval
    log.push(1, ack("wfp")); // minute 7: the first acknowledgement stands
    log.push(1, ack("who")); // not a recipient
    let snap = log.snapshot(View::Duty);
    let detail = &snap["broadcast_agencies"];
    assert_eq!(
        detail[uuid(1)]["wfp"],
        json!({"sent": true, "delivered": true, "acknowledged": true, "ack_seconds": 3 * MINUTE, "failed": false, "resent": false})
    );
    assert_eq!(detail[uuid(9)]["wfp"]["ack_seconds"], 3 * MINUTE);
    assert_eq!(detail[uuid(9)]["unicef"]["ack_seconds"], Value::Null);
    assert!(detail[uuid(1)].get("who").is_none());
    let b = snap["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == uuid(1))
        .unwrap();
    assert_eq!((&b["acked"], &b["total"]), (&json!(1), &json!(3)));
    deltas_agree(&log);
}

#[test]
fn an_acknowledgement_sends_one_agency_to_the_duty_view_and_none_to_the_wall() {
    let mut log = Log::default();
    log.push(1, routine("Curfew", &["unhcr", "unicef", "wfp"]));
    let mut board = log.board();
    let changes = board.apply(typed(log.push(1, ack("unicef"))));
    let duty = board.delta(&changes, View::Duty);
    let detail: Vec<&Op> = duty
        .iter()
        .filter(|op| matches!(op, Op::Set { path, .. } if path[0] == "broadcast_agencies"))
        .collect();
    assert_eq!(
        detail,
        [&Op::Set {
            path: vec!["broadcast_agencies".into(), uuid(1), "unicef".into()],
            value: json!({"sent": false, "delivered": false, "acknowledged": true, "ack_seconds": MINUTE, "failed": false, "resent": false}),
        }]
    );
    let wall = board.delta(&changes, View::WallScreen);
    assert!(
        serde_json::to_string(&wall)
            .unwrap()
            .find("broadcast_agencies")
            .is_none(),
        "{wall:?}"
    );
}

#[test]
fn an_exercise_is_flagged_everywhere() {
    let mut log = Log::default();
    log.push(
        1,
        BroadcastIssued {
            exercise: true,
            ..routine("Relocation drill", &["wfp"])
        },
    );
    log.push(1, failed("wfp", true));
    log.push(
        1,
        BroadcastEscalated {
            reason: "Overdue".into(),
            agencies: agencies(&["wfp"]),
        },
    );
    log.push(1, cancel());
    for view in View::ALL {
        assert_eq!(newest(&log, view)["exercise"], true, "{view:?}");
    }
    let snap = log.snapshot(View::WallScreen);
    let texts: Vec<&str> = snap["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "EXERCISE: Broadcast cancelled: Relocation drill",
            "EXERCISE: Broadcast escalated: Relocation drill (0 of 1 acknowledged)",
            "EXERCISE: Broadcast not delivered to wfp: Relocation drill",
            "EXERCISE: Broadcast issued: Relocation drill",
        ]
    );
    deltas_agree(&log);
}

#[test]
fn the_awaiting_ack_counter_ignores_unapproved_and_cancelled_broadcasts() {
    let mut log = Log::default();
    log.push(1, two_person("Waiting for a second officer"));
    log.push(2, routine("Live", &["wfp"]));
    log.push(3, routine("Cancelled", &["wfp"]));
    log.push(3, cancel());
    log.push(4, two_person("Cancelled before approval"));
    log.push(4, cancel());
    log.push(
        5,
        BroadcastIssued {
            requires_ack: false,
            ..routine("No ack needed", &["wfp"])
        },
    );
    let counters = log.snapshot(View::Duty)["counters"].clone();
    assert_eq!(counters["broadcasts_awaiting_ack"], 1);
    assert_eq!(counters["broadcasts_awaiting_approval"], 1);
    let statuses: Vec<Value> = log.snapshot(View::WallScreen)["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["status"].clone())
        .collect();
    assert_eq!(
        statuses,
        [
            json!("live"),
            json!("cancelled"),
            json!("cancelled"),
            json!("live"),
            json!("awaiting_approval")
        ]
    );
    // Approved: now it awaits acknowledgements; acknowledged by all: it no longer does.
    log.push(1, approve("duty.lena.schmidt"));
    assert_eq!(
        log.snapshot(View::Duty)["counters"]["broadcasts_awaiting_ack"],
        2
    );
    for agency in ["unhcr", "unicef", "wfp"] {
        log.push(1, ack(agency));
    }
    log.push(2, ack("wfp"));
    let counters = log.snapshot(View::Duty)["counters"].clone();
    assert_eq!(counters["broadcasts_awaiting_ack"], 0);
    assert_eq!(counters["broadcasts_awaiting_approval"], 0);
    deltas_agree(&log);
}

#[test]
fn internal_broadcasts_show_with_no_agency_and_crisis_manager_ones_not_at_all() {
    let mut log = Log::default();
    log.push(
        1,
        issue(
            "Shift handover at 20:00",
            BroadcastSeverity::Info,
            Audience::DutyOfficers,
        ),
    );
    log.push(1, ack("wfp")); // no agency can acknowledge an internal broadcast
    log.push(
        2,
        issue(
            "Proof of life received",
            BroadcastSeverity::Critical,
            Audience::CrisisManagers,
        ),
    );
    log.push(2, cancel());
    let snap = log.snapshot(View::Duty);
    let list = snap["broadcasts"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    let b = &list[0];
    assert_eq!(
        (&b["internal"], &b["total"], &b["acked"], &b["status"]),
        (&json!(true), &json!(0), &json!(0), &json!("live"))
    );
    assert_eq!(snap["broadcast_agencies"][uuid(1)], json!({}));
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 0);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Internal broadcast issued: Shift handover at 20:00"
    );
    assert!(!snap.to_string().contains("Proof of life"));
    assert_eq!(snap["timeline"].as_array().unwrap().len(), 1);

    // An internal broadcast of high severity still needs a second person.
    log.push(
        3,
        issue(
            "Centre on generator power",
            BroadcastSeverity::High,
            Audience::DutyOfficers,
        ),
    );
    assert_eq!(newest(&log, View::Duty)["status"], "awaiting_approval");
    deltas_agree(&log);
}

#[test]
fn escalations_are_counted_and_only_the_first_is_on_the_timeline() {
    let mut log = Log::default();
    log.push(1, routine("Curfew", &["unicef", "wfp"]));
    for _ in 0..2 {
        log.push(
            1,
            BroadcastEscalated {
                reason: "2 agencies overdue".into(),
                agencies: agencies(&["unicef", "wfp"]),
            },
        );
    }
    let snap = log.snapshot(View::WallScreen);
    let b = &snap["broadcasts"][0];
    assert_eq!(
        (&b["escalated"], &b["escalations"]),
        (&json!(true), &json!(2))
    );
    assert_eq!(snap["timeline"].as_array().unwrap().len(), 2);
    assert_eq!(
        snap["timeline"][0]["text"],
        "Broadcast escalated: Curfew (0 of 2 acknowledged)"
    );
    deltas_agree(&log);
}

#[test]
fn only_the_listed_broadcasts_have_agency_detail() {
    let mut log = Log::default();
    for n in 0..23u128 {
        log.push(100 + n, routine(&format!("B{n}"), &["wfp"]));
    }
    // An old broadcast's acknowledgement moves its counters only.
    let mut board = log.board();
    let changes = board.apply(typed(log.push(100, ack("wfp"))));
    let ops = board.delta(&changes, View::Duty);
    assert_eq!(
        ops,
        [Op::Merge {
            path: vec!["counters".into()],
            value: json!({
                "broadcasts_awaiting_ack": board.snapshot(View::Duty)["counters"]["broadcasts_awaiting_ack"]
            }),
        }]
    );
    let snap = log.snapshot(View::Duty);
    let detail = snap["broadcast_agencies"].as_object().unwrap();
    assert_eq!(detail.len(), 20);
    assert!(detail.contains_key(&uuid(122)) && !detail.contains_key(&uuid(102)));
    assert_eq!(snap["counters"]["broadcasts_awaiting_ack"], 22);
    deltas_agree(&log);
}

#[test]
fn agency_detail_is_bounded() {
    let mut log = Log::default();
    let many: Vec<String> = (0..250).map(|n| format!("agency-{n:03}")).collect();
    // More recipients than an event may name: unreadable, so it only moves the position.
    log.push(
        1,
        BroadcastIssued {
            recipients: many.clone(),
            ..routine("Too many", &["wfp"])
        },
    );
    // An older event to all agencies takes agencies in as they are reached, up to 200.
    log.push(
        2,
        BroadcastIssued {
            recipients: vec![],
            ..issue("Old style", BroadcastSeverity::Low, Audience::AllAgencies)
        },
    );
    for agency in &many {
        log.push(2, delivered(agency, 1));
    }
    let snap = log.snapshot(View::Duty);
    assert_eq!(snap["broadcasts"].as_array().unwrap().len(), 1);
    assert_eq!(
        snap["broadcast_agencies"][uuid(2)]
            .as_object()
            .unwrap()
            .len(),
        MAX_AGENCIES
    );
    assert_eq!(snap["broadcasts"][0]["total"], 200);
    assert_eq!(snap["broadcasts"][0]["delivered"], 200);
}
