//! What a wall screen says about a crisis in numbers (issue 14): a hostage case's held /
//! released / deceased counts, and a surge called off before it deployed.

use events::domain::hostage::*;
use events::domain::surge::*;
use events::validate::Country;
use serde_json::json;

use super::{Log, T0, page_after_deltas, uuid};
use crate::View;

fn c(code: &str) -> Country {
    Country::parse(code).unwrap()
}

fn agree(log: &Log) {
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

fn opened(country: &str, persons: usize) -> HostageCaseOpened {
    HostageCaseOpened {
        incident_id: uuid::Uuid::from_u128(1),
        country: c(country),
        persons: (0..persons)
            .map(|i| format!("hostage.person.{i}"))
            .collect(),
        captors: None,
        location: None,
    }
}

#[test]
fn a_hostage_case_shows_held_released_and_deceased_counts_per_case_and_country() {
    let mut log = Log::default();
    log.push(20, opened("ML", 71));
    log.push(21, opened("ML", 2));
    for i in 0..70 {
        log.push(
            20,
            HostageReleased {
                person: format!("hostage.person.{i}"),
                at: T0,
            },
        );
    }
    log.push(
        20,
        HostageDeceased {
            person: "hostage.person.70".into(),
            at: T0,
        },
    );
    // A second release of the same person and a death of someone released count nothing.
    log.push(
        20,
        HostageReleased {
            person: "hostage.person.3".into(),
            at: T0,
        },
    );
    log.push(
        20,
        HostageDeceased {
            person: "hostage.person.4".into(),
            at: T0,
        },
    );
    log.push(
        21,
        HostageReleased {
            person: "hostage.person.1".into(),
            at: T0,
        },
    );
    for view in View::ALL {
        let snap = log.snapshot(view);
        let h = &snap["countries"]["ML"]["hostage"];
        assert_eq!(h["cases"], 2, "{view:?}");
        assert_eq!(h["persons_held"], 1, "{view:?}");
        assert_eq!(h["persons_released"], 71, "{view:?}");
        assert_eq!(h["persons_deceased"], 1, "{view:?}");
        let held_since = h["held_since"].as_array().unwrap();
        assert_eq!(
            h["by_case"],
            json!([
                {"held_since": held_since[0], "held": 0, "released": 70, "deceased": 1},
                {"held_since": held_since[1], "held": 1, "released": 1, "deceased": 0},
            ]),
            "{view:?}"
        );
        assert!(!snap.to_string().contains("hostage.person"), "{view:?}");
    }
    agree(&log);
}

#[test]
fn a_cancelled_surge_leaves_the_board_with_a_timeline_note_and_no_reason() {
    let mut log = Log::default();
    log.push(
        30,
        SurgeRequested {
            duty_station: "HTI-PAP".into(),
            country: c("HT"),
            reason: "Gang violence".into(),
            officers_needed: 2,
            assets: vec![],
        },
    );
    log.push(
        30,
        SurgeApproved {
            by: "cm.lena".into(),
        },
    );
    log.push(
        30,
        SurgeOfficerAssigned {
            officer: "o.kwame".into(),
            from_duty_station: "KEN-NBO".into(),
        },
    );
    log.push(
        30,
        SurgeCancelled {
            by: "cm.lena".into(),
            reason: "Secret talks with Kwame succeeded".into(),
        },
    );
    // Later events of the ended surge change nothing.
    log.push(30, SurgeDeployed { at: T0 });
    for view in View::ALL {
        let snap = log.snapshot(view);
        assert_eq!(snap["counters"]["active_surges"], 0, "{view:?}");
        assert_eq!(snap["countries"], json!({}), "{view:?}");
        let text = snap.to_string();
        assert!(
            snap["timeline"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["text"] == "Surge cancelled for HTI-PAP, HT: 1 officer free again"),
            "{view:?}: {text}"
        );
        assert!(!text.contains("Secret") && !text.contains("lena"), "{text}");
    }
    agree(&log);
}

#[test]
fn a_cancellation_after_deployment_is_not_folded() {
    let mut log = Log::default();
    log.push(
        31,
        SurgeRequested {
            duty_station: "HTI-CAP".into(),
            country: c("HT"),
            reason: "Riots".into(),
            officers_needed: 1,
            assets: vec![],
        },
    );
    log.push(31, SurgeApproved { by: "cm".into() });
    log.push(31, SurgeDeployed { at: T0 });
    log.push(
        31,
        SurgeCancelled {
            by: "cm".into(),
            reason: "written around the service".into(),
        },
    );
    let snap = log.snapshot(View::WallScreen);
    assert_eq!(snap["counters"]["active_surges"], 1);
    assert_eq!(snap["countries"]["HT"]["surges"][0]["id"], uuid(31));
    assert_eq!(snap["countries"]["HT"]["surges"][0]["status"], "deployed");
    agree(&log);
}
