#![allow(clippy::unwrap_used, clippy::expect_used)]

use events::Meta;
use events::command::Role;
use events::domain::broadcast::BroadcastCancelled;
use proptest::prelude::*;
use time::macros::datetime;

use super::*;

const T0: OffsetDateTime = datetime!(2026-11-27 03:00 UTC);

fn retry() -> Retry {
    Retry {
        attempts: 3,
        backoff: Duration::from_secs(10),
        max_backoff: Duration::from_secs(60),
        claim_timeout: Duration::from_secs(30),
    }
}

fn actor(user: &str, role: Role, agency: Option<&str>) -> Actor {
    Actor {
        user: user.into(),
        role,
        scope: None,
        agency: agency.map(str::to_owned),
    }
}

fn duty(user: &str) -> Actor {
    actor(user, Role::DutyOfficer, None)
}

fn issued(severity: BroadcastSeverity, deadline: Option<OffsetDateTime>) -> BroadcastIssued {
    BroadcastIssued {
        title: "Curfew from 18:00".into(),
        body: "Stay in your residence.".into(),
        severity,
        audience: Audience::Country("SO".parse().unwrap()),
        requires_ack: deadline.is_some(),
        ack_deadline: deadline,
        exercise: false,
        updates: None,
        cancels: None,
        recipients: vec!["unicef".into(), "wfp".into()],
        rule: None,
    }
}

use events::domain::broadcast::BroadcastSeverity;

/// A broadcast's stream being written, event by event.
struct Stream {
    id: Uuid,
    events: Vec<RecordedEvent>,
}

impl Stream {
    fn new(first: BroadcastIssued, by: &str) -> Stream {
        let mut s = Stream {
            id: Uuid::from_u128(42),
            events: vec![],
        };
        s.push(first.into(), by, T0);
        s
    }

    fn push(&mut self, e: DomainEvent, by: &str, at: OffsetDateTime) {
        let n = self.events.len() as u64 + 1;
        let meta = Meta {
            actor: Some(by.into()),
            ..Meta::default()
        };
        self.events.push(RecordedEvent::record(
            e.to_new_event(Uuid::new_v4(), meta),
            events::domain::broadcast::stream_for(self.id),
            n,
            n,
            at,
        ));
    }

    fn fold(&self) -> Broadcast {
        Broadcast::fold(&self.events).unwrap()
    }

    /// Records `work` as the service does (an attempt's outcome given by `ok`).
    fn record(&mut self, w: &Work, at: OffsetDateTime, ok: bool) {
        match w {
            Work::Attempt((agency, channel, round), attempt) => {
                let (agency, channel, round, attempt) =
                    (agency.clone(), *channel, *round, *attempt);
                self.push(
                    BroadcastDeliveryAttempted {
                        agency: agency.clone(),
                        channel,
                        round,
                        attempt,
                    }
                    .into(),
                    "system",
                    at,
                );
                let outcome: DomainEvent = if ok {
                    BroadcastDelivered {
                        agency,
                        channel,
                        attempt,
                        round,
                    }
                    .into()
                } else {
                    BroadcastDeliveryFailed {
                        agency,
                        channel,
                        round,
                        attempt,
                        error: "HTTP 503".into(),
                        gave_up: attempt >= retry().attempts,
                    }
                    .into()
                };
                self.push(outcome, "system", at);
            }
            Work::Abandon((agency, channel, round), attempt) => self.push(
                BroadcastDeliveryFailed {
                    agency: agency.clone(),
                    channel: *channel,
                    round: *round,
                    attempt: *attempt,
                    error: "stopped".into(),
                    gave_up: true,
                }
                .into(),
                "system",
                at,
            ),
            Work::Resend(agencies) => self.push(
                BroadcastResent {
                    agencies: agencies.clone(),
                }
                .into(),
                "system",
                at,
            ),
            Work::Escalate(agencies) => self.push(
                BroadcastEscalated {
                    reason: "overdue".into(),
                    agencies: agencies.clone(),
                }
                .into(),
                "system",
                at,
            ),
        }
    }
}

fn nats_and_webhook(agency: &str) -> Vec<Channel> {
    if agency == "wfp" {
        vec![Channel::Nats, Channel::Webhook]
    } else {
        vec![Channel::Nats]
    }
}

#[test]
fn a_high_broadcast_waits_for_a_second_duty_officer_and_sends_nothing_before() {
    let mut s = Stream::new(issued(BroadcastSeverity::High, None), "ana");
    let b = s.fold();
    assert_eq!(b.status(), Status::AwaitingApproval);
    assert!(
        plan(
            &b,
            T0 + time::Duration::hours(1),
            &retry(),
            &nats_and_webhook
        )
        .is_empty()
    );

    let own = decide_approve(&b, &duty("ana")).unwrap_err();
    assert_eq!(own.code, RefusalCode::SecondPersonRequired);
    assert!(own.message.contains("two-person"), "{}", own.message);
    let crisis = decide_approve(&b, &actor("cm", Role::CrisisManager, None)).unwrap_err();
    assert_eq!(crisis.code, RefusalCode::Forbidden);

    let approved = decide_approve(&b, &duty("ben")).unwrap();
    s.push(
        approved.into_iter().next().unwrap(),
        "ben",
        T0 + time::Duration::minutes(2),
    );
    let b = s.fold();
    assert_eq!(b.status(), Status::Live);
    assert_eq!(b.live_since(), T0 + time::Duration::minutes(2));
    assert_eq!(
        decide_approve(&b, &duty("cleo")).unwrap_err().code,
        RefusalCode::Conflict
    );
    let work = plan(
        &b,
        T0 + time::Duration::minutes(2),
        &retry(),
        &nats_and_webhook,
    );
    assert_eq!(
        work.len(),
        3,
        "unicef over NATS, wfp over NATS and webhook: {work:?}"
    );
}

#[test]
fn a_medium_broadcast_to_one_country_goes_out_at_once() {
    let b = Stream::new(issued(BroadcastSeverity::Medium, None), "ana").fold();
    assert_eq!(b.status(), Status::Live);
    assert_eq!(
        decide_approve(&b, &duty("ben")).unwrap_err().code,
        RefusalCode::Conflict
    );
    let all = BroadcastIssued {
        audience: Audience::AllAgencies,
        ..issued(BroadcastSeverity::Info, None)
    };
    assert!(all.needs_second_person(), "every agency: two persons");
}

#[test]
fn failed_attempts_back_off_then_give_up() {
    let mut s = Stream::new(issued(BroadcastSeverity::Low, None), "ana");
    let only_wfp_webhook = |a: &str| {
        if a == "wfp" {
            vec![Channel::Webhook]
        } else {
            vec![]
        }
    };
    let key = ("wfp".to_owned(), Channel::Webhook, 1);
    let w = plan(&s.fold(), T0, &retry(), &only_wfp_webhook);
    assert_eq!(w, vec![Work::Attempt(key.clone(), 1)]);
    s.record(&w[0], T0, false);
    // Failed at T0: the second attempt is due 10 s later, the third 20 s after that.
    assert!(
        plan(
            &s.fold(),
            T0 + time::Duration::seconds(9),
            &retry(),
            &only_wfp_webhook
        )
        .is_empty()
    );
    let t1 = T0 + time::Duration::seconds(10);
    let w = plan(&s.fold(), t1, &retry(), &only_wfp_webhook);
    assert_eq!(w, vec![Work::Attempt(key.clone(), 2)]);
    s.record(&w[0], t1, false);
    assert!(
        plan(
            &s.fold(),
            t1 + time::Duration::seconds(19),
            &retry(),
            &only_wfp_webhook
        )
        .is_empty()
    );
    let t2 = t1 + time::Duration::seconds(20);
    let w = plan(&s.fold(), t2, &retry(), &only_wfp_webhook);
    assert_eq!(w, vec![Work::Attempt(key.clone(), 3)]);
    s.record(&w[0], t2, false);
    let b = s.fold();
    assert!(b.deliveries[&key].gave_up, "3 of 3 attempts failed");
    assert!(
        plan(
            &b,
            t2 + time::Duration::hours(1),
            &retry(),
            &only_wfp_webhook
        )
        .is_empty()
    );
    assert!(settled(&b, &only_wfp_webhook));
}

#[test]
fn a_claim_without_outcome_is_retried_after_the_claim_timeout() {
    let mut s = Stream::new(issued(BroadcastSeverity::Low, None), "ana");
    let nats = |_: &str| vec![Channel::Nats];
    let key = ("unicef".to_owned(), Channel::Nats, 1);
    s.push(
        BroadcastDeliveryAttempted {
            agency: "unicef".into(),
            channel: Channel::Nats,
            round: 1,
            attempt: 1,
        }
        .into(),
        "system",
        T0,
    );
    let w = plan(&s.fold(), T0 + time::Duration::seconds(29), &retry(), &nats);
    assert!(
        !w.iter()
            .any(|w| matches!(w, Work::Attempt(k, _) if *k == key)),
        "{w:?}"
    );
    let w = plan(&s.fold(), T0 + time::Duration::seconds(30), &retry(), &nats);
    assert!(w.contains(&Work::Attempt(key, 2)), "{w:?}");
}

#[test]
fn silent_agencies_are_sent_it_again_at_the_midpoint_and_escalated_once_at_the_deadline() {
    let deadline = T0 + time::Duration::hours(2);
    let mut s = Stream::new(issued(BroadcastSeverity::Medium, Some(deadline)), "ana");
    let nats = |_: &str| vec![Channel::Nats];
    for w in plan(&s.fold(), T0, &retry(), &nats) {
        s.record(&w, T0, true);
    }
    s.push(
        BroadcastAcknowledged {
            agency: "unicef".into(),
            by: "fp.unicef".into(),
        }
        .into(),
        "fp.unicef",
        T0 + time::Duration::minutes(7),
    );
    let b = s.fold();
    assert_eq!(b.acks["unicef"].seconds, 420);
    assert!(plan(&b, T0 + time::Duration::minutes(59), &retry(), &nats).is_empty());
    let mid = T0 + time::Duration::hours(1);
    let w = plan(&b, mid, &retry(), &nats);
    assert_eq!(w, vec![Work::Resend(vec!["wfp".into()])]);
    s.record(&w[0], mid, true);
    let w = plan(&s.fold(), mid, &retry(), &nats);
    assert_eq!(
        w,
        vec![Work::Attempt(("wfp".into(), Channel::Nats, 2), 1)],
        "round 2 to wfp only"
    );
    s.record(&w[0], mid, true);
    let w = plan(&s.fold(), deadline, &retry(), &nats);
    assert_eq!(w, vec![Work::Escalate(vec!["wfp".into()])]);
    assert_eq!(
        w[0].event_id(s.id),
        Work::Escalate(vec![]).event_id(s.id),
        "one id per broadcast"
    );
    s.record(&w[0], deadline, true);
    let b = s.fold();
    assert!(plan(&b, deadline + time::Duration::days(1), &retry(), &nats).is_empty());
    assert!(settled(&b, &nats));
}

#[test]
fn acknowledgements_come_from_the_agencies_it_was_sent_to_once() {
    let mut s = Stream::new(
        issued(
            BroadcastSeverity::Medium,
            Some(T0 + time::Duration::hours(1)),
        ),
        "ana",
    );
    let b = s.fold();
    let other = actor("fp.who", Role::AgencyFocalPoint, Some("who"));
    assert_eq!(
        decide_ack(&b, &other).unwrap_err().code,
        RefusalCode::NotFound
    );
    let nameless = actor("fp", Role::AgencyFocalPoint, None);
    assert_eq!(
        decide_ack(&b, &nameless).unwrap_err().code,
        RefusalCode::Forbidden
    );
    assert_eq!(
        decide_ack(&b, &duty("ana")).unwrap_err().code,
        RefusalCode::Forbidden
    );
    let fp = actor("fp.wfp", Role::AgencyFocalPoint, Some("wfp"));
    let ack = decide_ack(&b, &fp).unwrap();
    s.push(ack.into_iter().next().unwrap(), "fp.wfp", T0);
    assert_eq!(
        decide_ack(&s.fold(), &fp).unwrap_err().code,
        RefusalCode::Conflict
    );
    s.push(
        BroadcastCancelled {
            reason: "wrong".into(),
            by_broadcast: None,
        }
        .into(),
        "ana",
        T0,
    );
    let b = s.fold();
    assert_eq!(b.status(), Status::Cancelled);
    let fp2 = actor("fp.unicef", Role::AgencyFocalPoint, Some("unicef"));
    assert_eq!(
        decide_ack(&b, &fp2).unwrap_err().code,
        RefusalCode::Conflict
    );
    assert!(
        plan(
            &b,
            T0 + time::Duration::days(1),
            &retry(),
            &nats_and_webhook
        )
        .is_empty()
    );
}

#[test]
fn who_sees_what() {
    let b = Stream::new(issued(BroadcastSeverity::High, None), "ana").fold();
    assert!(
        !b.visible_to(&actor("fp", Role::AgencyFocalPoint, Some("wfp"))),
        "not approved yet"
    );
    assert!(b.visible_to(&duty("x")));
    assert!(!b.visible_to(&actor("fso", Role::FieldOfficer, None)));
    let internal = BroadcastIssued {
        audience: Audience::CrisisManagers,
        recipients: vec![],
        ..issued(BroadcastSeverity::Medium, None)
    };
    let b = Stream::new(internal, "ana").fold();
    assert!(!b.visible_to(&duty("x")), "crisis managers only");
    assert!(b.visible_to(&actor("cm", Role::CrisisManager, None)));
}

#[test]
fn a_broadcast_reaches_the_sites_of_its_country_or_every_site() {
    let c = |s: &str| Some(events::validate::Country::parse(s).unwrap());
    let to = |audience: Audience| {
        Stream::new(
            BroadcastIssued {
                audience,
                ..issued(BroadcastSeverity::Medium, None)
            },
            "ana",
        )
        .fold()
    };
    let so = to(Audience::Country("SO".parse().unwrap()));
    assert!(so.reached_sites_of(c("SO")));
    assert!(!so.reached_sites_of(c("AF")));
    assert!(!so.reached_sites_of(None));
    let all = to(Audience::AllAgencies);
    assert!(all.reached_sites_of(c("AF")) && all.reached_sites_of(c("SO")));
    assert!(!all.reached_sites_of(None));
    let listed = to(Audience::Agencies(vec!["unicef".into()]));
    assert!(
        !listed.reached_sites_of(c("SO")),
        "no site gets a list's broadcast"
    );
}

#[test]
fn issuing_checks_the_actor_and_the_audience() {
    let i = issued(BroadcastSeverity::Medium, None);
    assert!(decide_issue(&duty("ana"), i.clone(), None).is_ok());
    let fso = actor("f", Role::FieldOfficer, None);
    assert_eq!(
        decide_issue(&fso, i.clone(), None).unwrap_err().code,
        RefusalCode::Forbidden
    );
    let nobody = BroadcastIssued {
        recipients: vec![],
        ..i.clone()
    };
    assert_eq!(
        decide_issue(&duty("ana"), nobody, None).unwrap_err().code,
        RefusalCode::Invalid
    );
    let update = BroadcastIssued {
        updates: Some(Uuid::from_u128(42)),
        ..i.clone()
    };
    assert_eq!(
        decide_issue(&duty("ana"), update.clone(), None)
            .unwrap_err()
            .code,
        RefusalCode::NotFound
    );
    let original = Stream::new(i.clone(), "ana").fold();
    assert!(decide_issue(&duty("ben"), update.clone(), Some(&original)).is_ok());
    let drill = BroadcastIssued {
        exercise: true,
        ..update
    };
    assert_eq!(
        decide_issue(&duty("ben"), drill, Some(&original))
            .unwrap_err()
            .code,
        RefusalCode::Invalid,
        "an exercise cannot update a live alert"
    );
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    /// Let this many seconds pass and record whatever is planned, attempts failing or not.
    Tick(u16, bool),
    /// An agency acknowledges.
    Ack(usize),
    /// The planning instance stops after claiming an attempt (no outcome recorded).
    Crash(u16),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1u16..2_000, any::<bool>()).prop_map(|(s, ok)| Step::Tick(s, ok)),
        1 => (0usize..2).prop_map(Step::Ack),
        1 => (1u16..600).prop_map(Step::Crash),
    ]
}

proptest! {
    /// Whatever the history — restarts, failures, acknowledgements, late ticks — an
    /// escalation and a re-send are planned at most once, attempts per delivery only go up
    /// and never past the limit, and nothing is planned for an agency whose delivery ended.
    #[test]
    fn planning_never_repeats_work(steps in proptest::collection::vec(step(), 1..60)) {
        let deadline = T0 + time::Duration::hours(2);
        let mut s = Stream::new(issued(BroadcastSeverity::Medium, Some(deadline)), "ana");
        let mut now = T0;
        let mut escalations = 0;
        let mut resends = 0;
        let mut seen = std::collections::HashSet::new();
        let agencies = ["unicef", "wfp"];
        for st in steps {
            match st {
                Step::Ack(i) => {
                    let fp = actor("fp", Role::AgencyFocalPoint, Some(agencies[i]));
                    if let Ok(e) = decide_ack(&s.fold(), &fp) {
                        s.push(e.into_iter().next().unwrap(), "fp", now);
                    }
                }
                Step::Tick(secs, _) | Step::Crash(secs) => {
                    now += time::Duration::seconds(i64::from(secs));
                    let outcome = ok_of(&st);
                    for w in plan(&s.fold(), now, &retry(), &nats_and_webhook) {
                        prop_assert!(seen.insert(w.event_id(s.id)), "planned twice: {w:?}");
                        match &w {
                            Work::Escalate(_) => escalations += 1,
                            Work::Resend(_) => resends += 1,
                            Work::Attempt(_, a) => prop_assert!(*a <= retry().attempts),
                            Work::Abandon(..) => {}
                        }
                        match (&w, outcome) {
                            // The instance stopped after claiming: no outcome.
                            (Work::Attempt((agency, channel, round), attempt), None) => s.push(
                                BroadcastDeliveryAttempted {
                                    agency: agency.clone(),
                                    channel: *channel,
                                    round: *round,
                                    attempt: *attempt,
                                }
                                .into(),
                                "system",
                                now,
                            ),
                            (w, ok) => s.record(w, now, ok.unwrap_or(true)),
                        }
                    }
                }
            }
        }
        prop_assert!(escalations <= 1);
        prop_assert!(resends <= 1);
        let b = s.fold();
        if escalations == 1 {
            prop_assert!(now >= deadline);
        }
        for d in b.deliveries.values() {
            prop_assert!(d.attempts <= retry().attempts);
        }
    }
}

fn ok_of(s: &Step) -> Option<bool> {
    match s {
        Step::Tick(_, ok) => Some(*ok),
        _ => None,
    }
}

/// A focal point's chain and broadcast hold its own agency's rows and counts of the rest;
/// the centre's are whole.
#[test]
fn a_focal_point_sees_its_own_agency_and_counts_of_the_others() {
    let mut s = Stream::new(issued(BroadcastSeverity::Medium, None), "duty.amara");
    for agency in ["unicef", "wfp"] {
        s.push(
            BroadcastDelivered {
                agency: agency.into(),
                channel: Channel::Nats,
                attempt: 1,
                round: 0,
            }
            .into(),
            "system",
            T0,
        );
        s.push(
            BroadcastAcknowledged {
                agency: agency.into(),
                by: format!("fp.{agency}"),
            }
            .into(),
            &format!("fp.{agency}"),
            T0,
        );
    }
    let b = s.fold();
    let unicef = actor("fp.unicef", Role::AgencyFocalPoint, Some("unicef"));
    let (links, others) = b.chain_for(&unicef);
    assert_eq!(links.len(), 3, "the issue and unicef's two rows");
    assert!(links.iter().all(|l| l.actor.as_deref() != Some("fp.wfp")));
    assert!(links.iter().all(|l| l.agency.as_deref() != Some("wfp")));
    assert_eq!(
        others,
        BTreeMap::from([
            ("BroadcastAcknowledged".to_owned(), 1),
            ("BroadcastDelivered".to_owned(), 1)
        ])
    );
    let cut = b.cut_for(&unicef);
    assert_eq!(cut.issued.recipients, vec!["unicef".to_owned()]);
    assert_eq!(cut.acks.keys().collect::<Vec<_>>(), vec!["unicef"]);
    assert!(cut.deliveries.keys().all(|(a, _, _)| a == "unicef"));
    // An agency-list audience is cut too.
    let mut named = issued(BroadcastSeverity::Medium, None);
    named.audience = Audience::Agencies(vec!["unicef".into(), "wfp".into()]);
    let cut = Stream::new(named, "duty.amara").fold().cut_for(&unicef);
    assert_eq!(
        cut.issued.audience,
        Audience::Agencies(vec!["unicef".into()])
    );
    // The centre sees everything.
    let (all, none) = b.chain_for(&duty("duty.lena"));
    assert_eq!((all.len(), none.len()), (5, 0));
    assert_eq!(b.cut_for(&duty("duty.lena")), b);
    // A focal point without an agency sees no agency's rows.
    let nobody = actor("fp", Role::AgencyFocalPoint, None);
    assert_eq!(b.chain_for(&nobody).0.len(), 1);
}
