use super::*;

fn msg<T: fmt::Debug>(r: Result<T, ValidationError>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn countries_are_assigned_upper_case_codes() {
    assert!(
        COUNTRY_CODES.windows(2).all(|w| w[0] < w[1]),
        "sorted for binary search"
    );
    assert_eq!(Country::parse("SO").unwrap().as_str(), "SO");
    assert_eq!(
        msg(Country::parse("XX")),
        r#"country: "XX" is not an ISO 3166-1 alpha-2 country code"#
    );
    assert_eq!(
        msg(Country::parse("so")),
        r#"country: "so" is not an ISO 3166-1 alpha-2 country code (codes are upper-case: "SO")"#
    );
    for bad in ["", "S", "SOM", "XK", "UK", "é", &"A".repeat(1000)] {
        assert!(Country::parse(bad).is_err(), "{bad} should be refused");
    }
    assert!(msg(Country::parse(&"A".repeat(1000))).len() < 120);
    let c: Country = serde_json::from_str(r#""AF""#).unwrap();
    assert_eq!(serde_json::to_string(&c).unwrap(), r#""AF""#);
    let e = serde_json::from_str::<Country>(r#""XX""#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not an ISO 3166-1"), "{e}");
    assert!(serde_json::from_str::<Country>("12").is_err());
}

#[test]
fn coordinates_must_be_finite_and_in_range() {
    assert!(
        LatLon {
            lat: 2.04,
            lon: 45.34
        }
        .validate()
        .is_ok()
    );
    assert!(
        LatLon {
            lat: -90.0,
            lon: 180.0
        }
        .validate()
        .is_ok()
    );
    assert_eq!(
        msg(LatLon {
            lat: 91.0,
            lon: 0.0
        }
        .validate()),
        "lat: 91 is out of range (-90 to 90 degrees)"
    );
    assert_eq!(
        msg(LatLon {
            lat: f64::NAN,
            lon: 0.0
        }
        .validate()),
        "lat: NaN is not a finite number"
    );
    assert_eq!(
        msg(LatLon {
            lat: 0.0,
            lon: -180.5
        }
        .validate()),
        "lon: -180.5 is out of range (-180 to 180 degrees)"
    );
    assert!(
        LatLon {
            lat: 0.0,
            lon: f64::INFINITY
        }
        .validate()
        .is_err()
    );
    let e = LatLon {
        lat: 91.0,
        lon: 0.0,
    }
    .validate()
    .unwrap_err()
    .at("location");
    assert_eq!(e.field, "location.lat");
    assert!(accuracy_m("accuracy_m", 25.0).is_ok());
    assert_eq!(
        msg(accuracy_m("accuracy_m", -1.0)),
        "accuracy_m: -1 is out of range (0 to 100000 metres)"
    );
    assert!(accuracy_m("accuracy_m", 100_001.0).is_err());
    assert!(accuracy_m("accuracy_m", f64::NAN).is_err());
}

#[test]
fn text_lengths_are_counted_in_characters() {
    assert!(text("title", &"é".repeat(200), 1, 200).is_ok());
    assert_eq!(
        msg(text("title", &"x".repeat(201), 1, 200)),
        "title: must be at most 200 characters, got 201"
    );
    assert_eq!(
        msg(text("reason", "", 1, 10)),
        "reason: must be at least 1 characters, got 0"
    );
    assert_eq!(
        msg(non_blank("title", " \n\t", 200)),
        "title: must not be blank"
    );
    assert!(non_blank("title", "Shooting near compound", 200).is_ok());
    assert!(id("area", "SOM-MGQ-01").is_ok());
    assert!(id("area", "").is_err());
    assert_eq!(
        msg(id("area", "a b")),
        r#"area: "a b" must not contain spaces or control characters"#
    );
    assert!(id("area", &"a".repeat(65)).is_err());
    assert_eq!(
        msg(id_list("agencies", &["wfp".into(), "wfp".into()], 1, 5)),
        r#"agencies[1]: "wfp" is listed twice"#
    );
    assert_eq!(
        msg(count("persons", 0, 1, 500)),
        "persons: must have 1 to 500 entries, got 0"
    );
}

#[test]
fn levels_and_severities_are_checked_on_the_way_in() {
    assert_eq!(SecurityLevel::new(4).unwrap(), SecurityLevel::Substantial);
    assert_eq!(SecurityLevel::Extreme.to_string(), "6 (Extreme)");
    assert_eq!(
        msg(SecurityLevel::new(7)),
        "level: 7 is not a security level (1 Minimal to 6 Extreme)"
    );
    assert!(SecurityLevel::new(0).is_err());
    assert!(SecurityLevel::new(-1).is_err());
    assert_eq!(serde_json::to_string(&SecurityLevel::High).unwrap(), "5");
    assert_eq!(
        serde_json::from_str::<SecurityLevel>("1").unwrap(),
        SecurityLevel::Minimal
    );
    for bad in ["7", "0", "\"3\"", "3.5", "null", "99999999999999999999"] {
        assert!(serde_json::from_str::<SecurityLevel>(bad).is_err(), "{bad}");
    }
    assert_eq!(Severity::new(5).unwrap().get(), 5);
    assert_eq!(
        msg(Severity::new(0)),
        "severity: 0 is not a severity (1 to 5)"
    );
    assert!(Severity::new(6).is_err());
    assert!(serde_json::from_str::<Severity>("0").is_err());
    assert_eq!(
        serde_json::from_str::<Severity>("3").unwrap(),
        Severity::new(3).unwrap()
    );
}

#[test]
fn times_must_fall_in_their_window() {
    let now = time::macros::datetime!(2026-12-06 12:00 UTC);
    let week = now - time::Duration::days(7);
    assert!(in_window("occurred_at", now, week, now).is_ok());
    assert!(in_window("occurred_at", now + CLOCK_SKEW, week, now).is_ok());
    assert!(in_window("occurred_at", week, week, now).is_ok());
    let e = in_window("occurred_at", now + time::Duration::minutes(6), week, now).unwrap_err();
    assert_eq!(e.field, "occurred_at");
    assert!(e.message.contains("in the future"), "{e}");
    let e = in_window("occurred_at", week - time::Duration::SECOND, week, now).unwrap_err();
    assert!(e.message.contains("before"), "{e}");
}

#[test]
fn single_lines_refuse_controls_bidi_and_invisible_text() {
    assert!(line("title", "Gunfire near the compound", 200).is_ok());
    assert!(line("title", "Tir près du camp — 漢字 ✓", 200).is_ok());
    for bad in [
        "",
        "   ",
        "\u{200B}",
        "\u{200B} \u{FEFF}\u{2060}",
        "two\nlines",
        "tab\there",
        "bell\u{7}",
        "nul\u{0}",
        "del\u{7F}",
        "c1\u{85}",
        "evil \u{202E}txt.exe",
        "isolate \u{2066}x\u{2069}",
        "embed \u{202A}x",
    ] {
        let e = line("title", bad, 200).unwrap_err();
        assert_eq!(e.field, "title", "{bad:?}");
    }
    assert!(
        line("title", "rlo \u{202E}", 200)
            .unwrap_err()
            .message
            .contains("U+202E")
    );
    // Free text keeps its line breaks and tabs, not the rest.
    assert!(non_blank("description", "line one\r\n\tline two", 100).is_ok());
    for bad in ["\n\n", "\u{200B}\n", "x\u{1B}[31m", "x\u{2067}y", "x\u{0}"] {
        assert_eq!(
            non_blank("description", bad, 100).unwrap_err().field,
            "description",
            "{bad:?}"
        );
    }
}

#[test]
fn json_strings_are_normalised_to_nfc() {
    // "é" typed as e + combining acute becomes the one precomposed character.
    let mut v = serde_json::json!({"title": "Cafe\u{301}", "tags": ["e\u{301}"], "n": 1});
    nfc_json(&mut v);
    assert_eq!(
        v,
        serde_json::json!({"title": "Caf\u{E9}", "tags": ["\u{E9}"], "n": 1})
    );
}

proptest::proptest! {
    #[test]
    fn text_checks_never_panic(s in proptest::prelude::any::<String>()) {
        let _ = line("title", &s, 200);
        let _ = non_blank("description", &s, 200);
        let mut v = serde_json::Value::String(s);
        nfc_json(&mut v);
    }

    #[test]
    fn a_valid_title_survives_nfc(
        s in "[A-Za-z0-9\u{C0}-\u{17F}\u{4E00}-\u{4E80}][ A-Za-z0-9.,\u{300}-\u{36F}\u{C0}-\u{17F}\u{4E00}-\u{4E80}-]{0,80}"
    ) {
        let mut v = serde_json::Value::String(s.clone());
        nfc_json(&mut v);
        let normal = v.as_str().unwrap_or_default().to_owned();
        proptest::prop_assert!(line("title", &normal, 200).is_ok(), "{:?}", normal);
        let mut again = v.clone();
        nfc_json(&mut again);
        proptest::prop_assert_eq!(&again, &v, "NFC is idempotent");
    }
}

#[test]
fn timestamps_must_be_writable() {
    let ok = time::macros::datetime!(2024-05-01 10:00 UTC);
    assert!(timestamp("at", ok).is_ok());
    assert!(timestamp("at", time::macros::datetime!(1800-01-01 0:00 UTC)).is_err());
    let odd = ok.to_offset(time::macros::offset!(+1:00:30));
    assert!(timestamp("at", odd).is_err());
}
