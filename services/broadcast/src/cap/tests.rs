#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use events::validate::Country;
use proptest::prelude::*;
use time::macros::datetime;

const SENDER: &str = "vigil@centre.example";

fn issued() -> BroadcastIssued {
    BroadcastIssued {
        title: "Curfew from 18:00".into(),
        body: "All staff to remain in residences.".into(),
        severity: BroadcastSeverity::High,
        audience: Audience::AllAgencies,
        requires_ack: true,
        ack_deadline: Some(datetime!(2024-03-01 17:00 UTC)),
        exercise: false,
        updates: None,
        cancels: None,
        recipients: vec!["wfp".into(), "unicef".into()],
        rule: None,
    }
}

fn cap<'a>(id: u128, issued: &'a BroadcastIssued) -> CapAlert<'a> {
    CapAlert {
        id: Uuid::from_u128(id),
        sender: SENDER,
        sent: datetime!(2024-03-01 12:00:00.5 +01:00),
        issued,
        references: None,
    }
}

fn round_trip(a: &CapAlert<'_>) -> oasiscap::v1dot2::Alert {
    let xml = alert_xml(a).unwrap();
    let parsed = parse(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert!(matches!(parsed, oasiscap::Alert::V1dot2(_)), "{xml}");
    assert_eq!(
        parsed.xml_namespace(),
        "urn:oasis:names:tc:emergency:cap:1.2"
    );
    parsed.into_latest()
}

#[test]
fn identifier_is_prefixed_uuid() {
    assert_eq!(
        identifier(Uuid::from_u128(1)),
        "vigil-00000000-0000-0000-0000-000000000001"
    );
}

#[test]
fn alert_round_trips_with_the_mapping() {
    let b = issued();
    let a = cap(1, &b);
    let xml = alert_xml(&a).unwrap();
    assert!(xml.starts_with("<?xml"), "{xml}");
    let alert = round_trip(&a);
    assert_eq!(alert.identifier, identifier(Uuid::from_u128(1)).as_str());
    assert_eq!(alert.sender, SENDER);
    assert_eq!(alert.sent.to_string(), "2024-03-01T11:00:00-00:00");
    assert_eq!(alert.status, Status::Actual);
    assert_eq!(alert.message_type, MessageType::Alert);
    assert_eq!(alert.scope, Scope::Public);
    assert_eq!(alert.addresses, None);
    assert_eq!(alert.restriction, None);
    assert_eq!(alert.references, None);
    assert_eq!(alert.note, None);
    let [info] = alert.info.as_slice() else {
        panic!("one info block expected: {xml}");
    };
    assert_eq!(info.language.as_str(), "en-US");
    assert_eq!(info.categories, vec![Category::Security]);
    assert_eq!(info.event, EVENT);
    assert_eq!(info.urgency, Urgency::Immediate);
    assert_eq!(info.severity, Severity::Severe);
    assert_eq!(info.certainty, Certainty::Observed);
    assert_eq!(info.response_type, vec![ResponseType::Monitor]);
    assert_eq!(info.headline.as_deref(), Some("Curfew from 18:00"));
    assert_eq!(
        info.description.as_deref(),
        Some("All staff to remain in residences.")
    );
    assert_eq!(
        info.expires.map(|t| t.to_string()).as_deref(),
        Some("2024-03-01T17:00:00-00:00")
    );
    assert_eq!(
        info.instruction.as_deref(),
        Some("Acknowledge receipt in Vigil by 2024-03-01T17:00:00Z.")
    );
    let [area] = info.areas.as_slice() else {
        panic!("one area expected: {xml}");
    };
    assert_eq!(area.description, ALL_DUTY_STATIONS);
}

#[test]
fn severities_map_to_urgency_and_severity() {
    use BroadcastSeverity as B;
    for (s, u, v) in [
        (B::Critical, Urgency::Immediate, Severity::Extreme),
        (B::High, Urgency::Immediate, Severity::Severe),
        (B::Medium, Urgency::Expected, Severity::Moderate),
        (B::Low, Urgency::Future, Severity::Minor),
        (B::Info, Urgency::Future, Severity::Minor),
    ] {
        let b = BroadcastIssued {
            severity: s,
            ..issued()
        };
        let alert = round_trip(&cap(1, &b));
        assert_eq!((alert.info[0].urgency, alert.info[0].severity), (u, v));
    }
}

#[test]
fn exercise_is_marked_everywhere() {
    let b = BroadcastIssued {
        exercise: true,
        requires_ack: false,
        ack_deadline: None,
        ..issued()
    };
    let alert = round_trip(&cap(2, &b));
    assert_eq!(alert.status, Status::Exercise);
    assert!(alert.note.as_deref().unwrap().starts_with("Exercise"));
    let info = &alert.info[0];
    assert_eq!(info.event, EXERCISE_EVENT);
    assert_eq!(
        info.headline.as_deref(),
        Some("EXERCISE: Curfew from 18:00")
    );
    assert_eq!(info.expires, None);
    assert_eq!(info.instruction, None);
}

#[test]
fn update_references_the_original() {
    let original = Uuid::from_u128(7);
    let b = BroadcastIssued {
        updates: Some(original),
        audience: Audience::Agencies(vec!["wfp".into(), "unicef".into()]),
        ..issued()
    };
    let a = CapAlert {
        references: Some((original, datetime!(2024-03-01 09:30:15 UTC))),
        ..cap(3, &b)
    };
    let alert = round_trip(&a);
    assert_eq!(alert.message_type, MessageType::Update);
    let refs = alert.references.expect("references");
    let [r] = refs.as_slice() else {
        panic!("one reference expected: {refs:?}");
    };
    assert_eq!(r.identifier, identifier(original).as_str());
    assert_eq!(r.sender, SENDER);
    assert_eq!(r.sent.to_string(), "2024-03-01T09:30:15-00:00");
    assert_eq!(
        refs.to_string(),
        format!(
            "{SENDER},{},2024-03-01T09:30:15-00:00",
            identifier(original)
        )
    );
    assert_eq!(alert.scope, Scope::Private);
    let addresses: Vec<String> = alert
        .addresses
        .expect("addresses")
        .iter()
        .map(|i| i.to_string())
        .collect();
    assert_eq!(addresses, ["wfp", "unicef"]);
}

#[test]
fn cancel_references_the_original() {
    let original = Uuid::from_u128(8);
    let b = BroadcastIssued {
        cancels: Some(original),
        ..issued()
    };
    let a = CapAlert {
        references: Some((original, datetime!(2024-03-01 09:00 UTC))),
        ..cap(4, &b)
    };
    let alert = round_trip(&a);
    assert_eq!(alert.message_type, MessageType::Cancel);
    assert!(alert.info[0].response_type.is_empty());
    let refs = alert.references.expect("references");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].identifier, identifier(original).as_str());

    // References naming another broadcast are refused.
    let wrong = CapAlert {
        references: Some((Uuid::from_u128(9), datetime!(2024-03-01 09:00 UTC))),
        ..cap(4, &b)
    };
    assert!(matches!(
        alert_xml(&wrong),
        Err(CapError::Invalid {
            field: "references",
            ..
        })
    ));
}

#[test]
fn audiences_set_scope_addresses_and_area() {
    let country = BroadcastIssued {
        audience: Audience::Country(Country::parse("SO").unwrap()),
        ..issued()
    };
    let alert = round_trip(&cap(5, &country));
    assert_eq!(alert.scope, Scope::Private);
    assert_eq!(alert.addresses.unwrap().to_string(), "wfp unicef");
    assert_eq!(alert.info[0].areas[0].description, "SO");

    // A list of agencies falls back to the audience when recipients are not resolved.
    let named = BroadcastIssued {
        audience: Audience::Agencies(vec!["unhcr".into()]),
        recipients: vec![],
        ..issued()
    };
    let alert = round_trip(&cap(5, &named));
    assert_eq!(alert.addresses.unwrap().to_string(), "unhcr");

    for internal in [Audience::DutyOfficers, Audience::CrisisManagers] {
        let b = BroadcastIssued {
            audience: internal,
            recipients: vec![],
            ..issued()
        };
        let alert = round_trip(&cap(6, &b));
        assert_eq!(alert.scope, Scope::Restricted);
        assert_eq!(alert.restriction.as_deref(), Some(RESTRICTION));
        assert_eq!(alert.addresses, None);
        assert_eq!(alert.info[0].areas[0].description, ALL_DUTY_STATIONS);
    }

    let nobody = BroadcastIssued {
        audience: Audience::Country(Country::parse("SO").unwrap()),
        recipients: vec![],
        ..issued()
    };
    assert!(matches!(
        alert_xml(&cap(5, &nobody)),
        Err(CapError::Invalid {
            field: "addresses",
            ..
        })
    ));
}

#[test]
fn bad_sender_is_refused_not_rendered() {
    let b = issued();
    for sender in ["", "two words", "a,b", "a<b", "a&b", "bell\u{7}"] {
        let a = CapAlert {
            sender,
            ..cap(1, &b)
        };
        assert!(
            matches!(
                alert_xml(&a),
                Err(CapError::Invalid {
                    field: "sender",
                    ..
                })
            ),
            "{sender:?}"
        );
    }
}

#[test]
fn markup_and_non_ascii_text_survive_escaping() {
    let title = "<script>alert(1)</script> & \"quotes\" 'apos' ]]>";
    let body = "Évacuation: 避难 — مأوى 🚨\n<b>&amp;</b>\n\ttabbed line";
    let b = BroadcastIssued {
        title: title.into(),
        body: body.into(),
        ..issued()
    };
    let xml = alert_xml(&cap(1, &b)).unwrap();
    assert!(!xml.contains("<script>"), "{xml}");
    let alert = round_trip(&cap(1, &b));
    assert_eq!(alert.info[0].headline.as_deref(), Some(title));
    assert_eq!(alert.info[0].description.as_deref(), Some(body));
}

#[test]
fn control_characters_are_stripped_and_line_ends_normalised() {
    let b = BroadcastIssued {
        title: "\u{1}Road\u{0}block\u{1b}[31m\u{FFFF}".into(),
        body: "  line one\r\nline two\rline three\u{8}  ".into(),
        ..issued()
    };
    let alert = round_trip(&cap(1, &b));
    assert_eq!(alert.info[0].headline.as_deref(), Some("Roadblock[31m"));
    assert_eq!(
        alert.info[0].description.as_deref(),
        Some("line one\nline two\nline three")
    );

    // Nothing printable left: the headline falls back to the event name.
    let blank = BroadcastIssued {
        title: "\u{1}\u{2}".into(),
        body: "\u{3}".into(),
        ..issued()
    };
    let alert = round_trip(&cap(1, &blank));
    assert_eq!(alert.info[0].headline.as_deref(), Some(EVENT));
    assert_eq!(alert.info[0].description, None);

    // An exercise stays marked as one even then (found by the property below).
    let blank_exercise = BroadcastIssued {
        exercise: true,
        title: "\u{e}".into(),
        ..blank
    };
    let alert = round_trip(&cap(1, &blank_exercise));
    assert_eq!(
        alert.info[0].headline.as_deref(),
        Some(format!("{EXERCISE_PREFIX}{EVENT}").as_str())
    );
}

#[test]
fn long_headline_is_cut_on_a_char_boundary() {
    let b = BroadcastIssued {
        title: "é".repeat(199) + "!",
        exercise: true,
        ..issued()
    };
    let alert = round_trip(&cap(1, &b));
    let h = alert.info[0].headline.clone().unwrap();
    assert_eq!(h.chars().count(), HEADLINE_MAX_CHARS);
    assert_eq!(
        h,
        format!(
            "{EXERCISE_PREFIX}{}",
            "é".repeat(HEADLINE_MAX_CHARS - EXERCISE_PREFIX.len())
        )
    );
    // The body is not cut.
    assert_eq!(alert.info[0].description.as_deref(), Some(b.body.as_str()));
}

#[test]
fn feed_carries_every_alert_newest_first() {
    let plain = issued();
    let exercise = BroadcastIssued {
        exercise: true,
        title: "Drill <A&B> \"today\"".into(),
        ..issued()
    };
    let cancel = BroadcastIssued {
        cancels: Some(Uuid::from_u128(1)),
        audience: Audience::Agencies(vec!["wfp".into()]),
        recipients: vec!["wfp".into()],
        ..issued()
    };
    let alerts = [
        CapAlert {
            sent: datetime!(2024-03-01 10:00 UTC),
            ..cap(1, &plain)
        },
        CapAlert {
            sent: datetime!(2024-03-01 12:00 UTC),
            references: Some((Uuid::from_u128(1), datetime!(2024-03-01 10:00 UTC))),
            ..cap(3, &cancel)
        },
        CapAlert {
            sent: datetime!(2024-03-01 11:00 UTC),
            ..cap(2, &exercise)
        },
    ];
    let feed = feed_xml(
        "urn:vigil:cap:wfp",
        "WFP <alerts> & \"more\"",
        datetime!(2024-03-01 12:30 UTC),
        &alerts,
    )
    .unwrap();
    assert!(feed.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    assert!(feed.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    assert!(feed.contains("<id>urn:vigil:cap:wfp</id>"));
    assert!(feed.contains("<title>WFP &lt;alerts&gt; &amp; &quot;more&quot;</title>"));
    assert!(feed.contains("<updated>2024-03-01T12:30:00Z</updated>"));
    assert!(feed.contains("<title>EXERCISE: Drill &lt;A&amp;B&gt; &quot;today&quot;</title>"));
    assert_eq!(feed.matches("<entry>").count(), 3);
    assert_eq!(
        feed.matches("<content type=\"application/cap+xml\">")
            .count(),
        3
    );
    // Only one XML declaration: the alerts are embedded as elements.
    assert_eq!(feed.matches("<?xml").count(), 1);

    let found = alerts_in_feed(&feed);
    assert_eq!(found.len(), 3, "{feed}");
    let ids: Vec<String> = found
        .iter()
        .map(|xml| parse(xml).unwrap().identifier().to_string())
        .collect();
    assert_eq!(
        ids,
        [3, 2, 1].map(|i| identifier(Uuid::from_u128(i))),
        "newest first"
    );
    let statuses: Vec<Status> = found
        .iter()
        .map(|xml| parse(xml).unwrap().into_latest().status)
        .collect();
    assert_eq!(statuses, [Status::Actual, Status::Exercise, Status::Actual]);
    // Each embedded alert is exactly what alert_xml renders.
    let direct = alert_xml(&alerts[2]).unwrap();
    assert!(direct.ends_with(&found[1]) || direct.trim_end().ends_with(&found[1]));

    let empty = feed_xml(
        "urn:vigil:cap:wfp",
        "WFP",
        datetime!(2024-03-01 12:30 UTC),
        &[],
    )
    .unwrap();
    assert!(alerts_in_feed(&empty).is_empty());
    assert!(!empty.contains("<entry>"));
}

#[test]
fn parse_refuses_what_is_not_cap() {
    assert!(matches!(parse("<feed/>"), Err(CapError::Parse(_))));
    assert!(matches!(parse("not xml"), Err(CapError::Parse(_))));
}

/// Strings that satisfy the title/body validation: non-blank, any Unicode.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 1..=max)
        .prop_map(|cs| cs.into_iter().collect::<String>())
        .prop_filter("non-blank", |s| !s.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_title_and_body_render_and_parse_back(
        title in text(300),
        body in text(300),
        exercise in any::<bool>(),
    ) {
        let b = BroadcastIssued { title: title.clone(), body: body.clone(), exercise, ..issued() };
        let a = cap(1, &b);
        let xml = alert_xml(&a).unwrap();
        let alert = parse(&xml).map_err(|e| TestCaseError::fail(format!("{e}\n{xml}")))?.into_latest();
        let info = &alert.info[0];
        let h = info.headline.clone().unwrap();
        prop_assert_eq!(&h, &headline(&b));
        prop_assert!(h.chars().count() <= HEADLINE_MAX_CHARS);
        prop_assert!(h.chars().all(|c| is_xml_char(c) && c != '\r'));
        prop_assert_eq!(h.starts_with(EXERCISE_PREFIX), exercise || clean(&title).starts_with(EXERCISE_PREFIX));
        let cleaned = clean(&body);
        prop_assert_eq!(info.description.as_deref(), (!cleaned.is_empty()).then_some(cleaned.as_str()));
        // Text XML carries as is comes back exactly.
        if title.chars().all(|c| is_xml_char(c) && c != '\r')
            && trim_xml_space(&title) == title
            && title.chars().count() <= HEADLINE_MAX_CHARS
            && !exercise
        {
            prop_assert_eq!(&h, &title);
        }
        // And it sits in a feed that gives it back.
        let feed = feed_xml("urn:vigil:cap:test", &title, a.sent, &[a]).unwrap();
        let found = alerts_in_feed(&feed);
        prop_assert_eq!(found.len(), 1);
        prop_assert_eq!(parse(&found[0]).unwrap().into_latest(), alert);
    }
}
