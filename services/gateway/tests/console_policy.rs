//! The operations console hides the actions a role may never take by its own copy of the
//! policy (`dashboards/web/public/console/kit.js` `POLICY`): that copy must say what
//! `events::command::policy` says, list for list, or the console would hide a step a person
//! may take (and send them to curl) or offer one the server always refuses.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use events::command::{Role, policy};

/// Every policy list, by the name kit.js gives it (the Rust constant's name).
const LISTS: &[(&str, &[Role])] = &[
    ("INCIDENT_REPORT", policy::INCIDENT_REPORT),
    ("INCIDENT_READ", policy::INCIDENT_READ),
    ("INCIDENT_UPDATE", policy::INCIDENT_UPDATE),
    ("INCIDENT_VERIFY", policy::INCIDENT_VERIFY),
    ("INCIDENT_ESCALATE", policy::INCIDENT_ESCALATE),
    ("INCIDENT_CLOSE", policy::INCIDENT_CLOSE),
    ("LEVEL_SET", policy::LEVEL_SET),
    ("LEVEL_READ", policy::LEVEL_READ),
    ("HOSTAGE_MANAGE", policy::HOSTAGE_MANAGE),
    ("HOSTAGE_DETAILS", policy::HOSTAGE_DETAILS),
    ("HOSTAGE_SUMMARY", policy::HOSTAGE_SUMMARY),
    ("SURGE_REQUEST", policy::SURGE_REQUEST),
    ("SURGE_DECIDE", policy::SURGE_DECIDE),
    ("SURGE_RUN", policy::SURGE_RUN),
    ("SURGE_READ", policy::SURGE_READ),
    ("ORDER_ISSUE", policy::ORDER_ISSUE),
    ("ORDER_MARK", policy::ORDER_MARK),
    ("ORDER_READ", policy::ORDER_READ),
    ("CLEARANCE_REQUEST", policy::CLEARANCE_REQUEST),
    ("CLEARANCE_DECIDE", policy::CLEARANCE_DECIDE),
    ("CLEARANCE_MOVEMENT", policy::CLEARANCE_MOVEMENT),
    ("CLEARANCE_READ", policy::CLEARANCE_READ),
    ("BROADCAST_ISSUE", policy::BROADCAST_ISSUE),
    ("BROADCAST_APPROVE", policy::BROADCAST_APPROVE),
    ("BROADCAST_ACK", policy::BROADCAST_ACK),
    ("BROADCAST_READ", policy::BROADCAST_READ),
];

/// kit.js `POLICY` as name → roles (role names as the API spells them).
fn console_policy() -> BTreeMap<String, BTreeSet<String>> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../dashboards/web/public/console/kit.js"
    );
    let text = std::fs::read_to_string(path).unwrap();
    // `const DUTY = "duty_officer";` … : the short names the lists use.
    let short: BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("const ")?.strip_suffix("\";"))
        .filter_map(|l| l.split_once(" = \""))
        .collect();
    let body = text
        .split("export const POLICY = {")
        .nth(1)
        .and_then(|rest| rest.split("\n};").next())
        .expect("kit.js has `export const POLICY = { … };`");
    body.lines()
        .filter_map(|l| l.trim().strip_suffix("],")?.split_once(": ["))
        .map(|(name, roles)| {
            let roles = roles
                .split(',')
                .map(|r| {
                    let r = r.trim();
                    short
                        .get(r)
                        .unwrap_or_else(|| panic!("{name}: {r} is not a role constant"))
                        .to_string()
                })
                .collect();
            (name.to_owned(), roles)
        })
        .collect()
}

#[test]
fn the_console_hides_what_the_server_refuses_and_nothing_else() {
    let console = console_policy();
    let server: BTreeMap<String, BTreeSet<String>> = LISTS
        .iter()
        .map(|(name, roles)| {
            let roles = roles
                .iter()
                .map(|r| {
                    serde_json::to_value(r)
                        .unwrap()
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect();
            ((*name).to_owned(), roles)
        })
        .collect();
    assert_eq!(
        console, server,
        "kit.js POLICY against events::command::policy"
    );
}
