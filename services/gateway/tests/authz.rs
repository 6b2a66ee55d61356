//! Who may do what, against a real gateway, store and nats-server: the authorization matrix
//! (every route × every kind of caller, from one table that must cover every route), the
//! WebSocket's Origin and token rules, and the login endpoint's hard edges.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use vigil_gateway::auth::{Auth, Role};

mod common;

use common::{ANA_PASSWORD, Center};

async fn start() -> Center {
    let c = Center::start().await;
    c.register_area().await;
    // Ready before the matrix runs, so /readyz answers 200.
    testkit::eventually(Duration::from_secs(10), || async {
        (request(&c, "GET", "/readyz", None, None).await.0 == 200).then_some(())
    })
    .await
    .unwrap();
    let report = json!({"id": "00000000-0000-4000-8000-000000000001", "country": "SO",
        "category": "armed_conflict", "severity": 3, "title": "Matrix incident",
        "occurred_at": testkit::recent()});
    let a = testkit::http::json(
        c.addr,
        "POST",
        "/api/v1/incidents",
        Some(&c.duty_token),
        Some(&report),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 201, "{}", a.body);
    c
}

/// A raw HTTP/1.0 request: (status, headers+body text).
async fn request(
    c: &Center,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> (u16, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    if let Some((ctype, _)) = body
        && !ctype.is_empty()
    {
        headers.push(("Content-Type", ctype));
    }
    let a = testkit::http::request(c.addr, method, path, &headers, body.map(|(_, b)| b))
        .await
        .unwrap();
    (a.status, format!("{}\r\n\r\n{}", a.head, a.body))
}

fn body_json(raw: &str) -> Value {
    serde_json::from_str(raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or(""))
        .unwrap_or(Value::Null)
}

/// The kinds of caller every route is tried with.
#[derive(Debug, Clone, Copy)]
enum Caller {
    NoToken,
    Expired,
    Forged,
    As(Role),
    /// A field officer of another country (KE) than the test incident's (SO).
    WrongScope,
}

const CALLERS: [Caller; 10] = [
    Caller::NoToken,
    Caller::Expired,
    Caller::Forged,
    Caller::As(Role::FieldOfficer),
    Caller::As(Role::DutyOfficer),
    Caller::As(Role::CrisisManager),
    Caller::As(Role::AgencyFocalPoint),
    Caller::As(Role::WallScreen),
    Caller::As(Role::Admin),
    Caller::WrongScope,
];

async fn token_for(c: &Center, caller: Caller) -> Option<String> {
    let hour = Duration::from_secs(3600);
    match caller {
        Caller::NoToken => None,
        Caller::Expired => {
            let (t, _) = c
                .auth
                .issue("old", Role::Admin, None, None, Duration::ZERO, "session")
                .unwrap();
            tokio::time::sleep(Duration::from_millis(1100)).await;
            Some(t)
        }
        Caller::Forged => {
            // Signed with another centre's key.
            let other = tempfile::tempdir().unwrap();
            let (t, _) = Auth::open(other.path(), vec![])
                .unwrap()
                .issue("mallory", Role::Admin, None, None, hour, "api")
                .unwrap();
            Some(t)
        }
        Caller::WrongScope => Some(
            c.auth
                .issue(
                    "fso.ke",
                    Role::FieldOfficer,
                    Some("KE".into()),
                    None,
                    hour,
                    "session",
                )
                .unwrap()
                .0,
        ),
        Caller::As(role) => {
            let scope = (role == Role::FieldOfficer).then(|| "SO".to_owned());
            let agency = (role == Role::AgencyFocalPoint).then(|| "unicef".to_owned());
            Some(
                c.auth
                    .issue(role.as_str(), role, scope, agency, hour, "session")
                    .unwrap()
                    .0,
            )
        }
    }
}

/// Expected HTTP status per caller, in the order of [`CALLERS`]:
/// no token, expired, forged, field_officer, duty_officer, crisis_manager,
/// agency_focal_point, wall_screen, admin, field officer of another country. `/ws` rows are checked over a real WebSocket:
/// 101 means "subscribed and got a snapshot", 401 means "refused with an error message".
struct Row {
    method: &'static str,
    path: &'static str,
    concrete: &'static str,
    body: Option<(&'static str, &'static [u8])>,
    expect: [u16; 10],
}

const NEW_REPORT: &[u8] = br#"{"id":"00000000-0000-4000-8000-000000000002","country":"SO","category":"crime","severity":2,"title":"Matrix report","occurred_at":"@RECENT@"}"#;
const ESCALATION: &[u8] =
    br#"{"to":{"kind":"surge","id":"00000000-0000-4000-8000-0000000000aa"},"reason":"matrix check"}"#;

const BAD_LOGIN: &[u8] = br#"{"username":"ana","password":"wrong password"}"#;

const MATRIX: &[Row] = &[
    Row {
        method: "POST",
        path: "/api/v1/auth/login",
        concrete: "/api/v1/auth/login",
        body: Some(("application/json", BAD_LOGIN)),
        expect: [401; 10],
    },
    Row {
        method: "GET",
        path: "/api/v1/boards/{board}",
        concrete: "/api/v1/boards/situation",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 200, 200, 200, 200],
    },
    Row {
        method: "GET",
        path: "/api/v1/events",
        concrete: "/api/v1/events?from=1&limit=10",
        body: None,
        expect: [401, 401, 401, 403, 200, 403, 403, 403, 200, 403],
    },
    // The incident rows run in this order against the incident `start` reported (SO).
    Row {
        method: "POST",
        path: "/api/v1/incidents",
        concrete: "/api/v1/incidents",
        body: Some(("application/json", NEW_REPORT)),
        // The field officer's report lands; the same id from others is another report: 409.
        expect: [401, 401, 401, 201, 409, 409, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/incidents",
        concrete: "/api/v1/incidents?country=SO",
        body: None,
        // The field officer of KE asks for SO: 403.
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/incidents/{id}",
        concrete: "/api/v1/incidents/00000000-0000-4000-8000-000000000001",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/incidents/{id}/updates",
        concrete: "/api/v1/incidents/00000000-0000-4000-8000-000000000001/updates",
        body: Some(("application/json", br#"{"note":"matrix check"}"#)),
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/incidents/{id}/verify",
        concrete: "/api/v1/incidents/00000000-0000-4000-8000-000000000001/verify",
        body: Some(("application/json", b"{}")),
        expect: [401, 401, 401, 403, 200, 403, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/incidents/{id}/escalate",
        concrete: "/api/v1/incidents/00000000-0000-4000-8000-000000000001/escalate",
        body: Some(("application/json", ESCALATION)),
        // The crisis manager's is the same escalation again: 409.
        expect: [401, 401, 401, 403, 200, 409, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/incidents/{id}/close",
        concrete: "/api/v1/incidents/00000000-0000-4000-8000-000000000001/close",
        body: Some(("application/json", br#"{"reason":"matrix check"}"#)),
        expect: [401, 401, 401, 403, 200, 409, 403, 403, 403, 403],
    },
    Row {
        method: "PUT",
        path: "/api/v1/areas/{area}/level",
        concrete: "/api/v1/areas/SOM-BAN/level",
        body: Some((
            "application/json",
            br#"{"level":4,"reason":"matrix check"}"#,
        )),
        expect: [401, 401, 401, 403, 200, 403, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/areas/{area}/level",
        concrete: "/api/v1/areas/SOM-BAN/level",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 404],
    },
    // The crisis resources, on an id that does not exist: a role the policy admits reaches
    // the service (404 or 422: it decided), one it does not gets 403 at the gateway.
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases",
        concrete: "/api/v1/hostage-cases",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 403, 403, 422, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/hostage-cases",
        concrete: "/api/v1/hostage-cases",
        body: None,
        expect: [401, 401, 401, 403, 200, 200, 403, 403, 200, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/hostage-cases/{id}",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff",
        body: None,
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/proof-of-life",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/proof-of-life",
        body: Some((
            "application/json",
            br#"{"person":"P1","at":"2026-11-27T00:00:00Z","note":"video"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/proof-of-life-many",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/proof-of-life-many",
        body: Some((
            "application/json",
            br#"{"persons":["P1"],"at":"2026-11-27T00:00:00Z","note":"video"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/negotiation",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/negotiation",
        body: Some((
            "application/json",
            br#"{"at":"2026-11-27T00:00:00Z","summary":"call"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/release",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/release",
        body: Some((
            "application/json",
            br#"{"person":"P1","at":"2026-11-27T00:00:00Z"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/release-many",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/release-many",
        body: Some((
            "application/json",
            br#"{"persons":["P1"],"at":"2026-11-27T00:00:00Z"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/deceased",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/deceased",
        body: Some((
            "application/json",
            br#"{"person":"P1","at":"2026-11-27T00:00:00Z"}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/hostage-cases/{id}/close",
        concrete: "/api/v1/hostage-cases/00000000-0000-4000-8000-0000000000ff/close",
        body: Some((
            "application/json",
            br#"{"outcome":"all released","accounting":[{"person":"P1","status":"released"}]}"#,
        )),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges",
        concrete: "/api/v1/surges",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 422, 422, 422, 403, 403, 403, 422],
    },
    Row {
        method: "GET",
        path: "/api/v1/surges",
        concrete: "/api/v1/surges",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 200],
    },
    Row {
        method: "GET",
        path: "/api/v1/surges/{id}",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff",
        body: None,
        expect: [401, 401, 401, 404, 404, 404, 403, 403, 404, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/approve",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/approve",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/reject",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/reject",
        body: Some(("application/json", br#"{"reason":"not needed"}"#)),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/assign",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/assign",
        body: Some(("application/json", br#"{"officer":"P1"}"#)),
        expect: [401, 401, 401, 403, 404, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/deploy",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/deploy",
        body: Some(("application/json", br#"{"at":"2026-11-27T00:00:00Z"}"#)),
        expect: [401, 401, 401, 403, 404, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/complete",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/complete",
        body: Some(("application/json", br#"{"at":"2026-11-27T00:00:00Z"}"#)),
        expect: [401, 401, 401, 403, 404, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/surges/{id}/cancel",
        concrete: "/api/v1/surges/00000000-0000-4000-8000-0000000000ff/cancel",
        body: Some(("application/json", br#"{"reason":"not needed"}"#)),
        expect: [401, 401, 401, 403, 403, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/orders",
        concrete: "/api/v1/orders",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 403, 422, 422, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/orders",
        concrete: "/api/v1/orders",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 200],
    },
    Row {
        method: "GET",
        path: "/api/v1/orders/{id}",
        concrete: "/api/v1/orders/00000000-0000-4000-8000-0000000000ff",
        body: None,
        expect: [401, 401, 401, 404, 404, 404, 403, 403, 404, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/orders/{id}/mark",
        concrete: "/api/v1/orders/00000000-0000-4000-8000-0000000000ff/mark",
        body: Some(("application/json", br#"{"person":"P1","status":"safe"}"#)),
        expect: [401, 401, 401, 404, 404, 404, 403, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/orders/{id}/mark-many",
        concrete: "/api/v1/orders/00000000-0000-4000-8000-0000000000ff/mark-many",
        body: Some(("application/json", br#"{"persons":["P1"],"status":"safe"}"#)),
        expect: [401, 401, 401, 404, 404, 404, 403, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/orders/{id}/complete",
        concrete: "/api/v1/orders/00000000-0000-4000-8000-0000000000ff/complete",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 403, 404, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/orders/{id}/rescind",
        concrete: "/api/v1/orders/00000000-0000-4000-8000-0000000000ff/rescind",
        body: Some(("application/json", br#"{"reason":"calm"}"#)),
        expect: [401, 401, 401, 403, 404, 404, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/clearances",
        concrete: "/api/v1/clearances",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 422, 422, 403, 422, 403, 403, 422],
    },
    Row {
        method: "GET",
        path: "/api/v1/clearances",
        concrete: "/api/v1/clearances",
        body: None,
        expect: [401, 401, 401, 200, 200, 200, 403, 403, 200, 200],
    },
    Row {
        method: "GET",
        path: "/api/v1/clearances/{id}",
        concrete: "/api/v1/clearances/00000000-0000-4000-8000-0000000000ff",
        body: None,
        expect: [401, 401, 401, 404, 404, 404, 403, 403, 404, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/clearances/{id}/approve",
        concrete: "/api/v1/clearances/00000000-0000-4000-8000-0000000000ff/approve",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 404, 404, 403, 403, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/clearances/{id}/refuse",
        concrete: "/api/v1/clearances/00000000-0000-4000-8000-0000000000ff/refuse",
        body: Some(("application/json", br#"{"reason":"no"}"#)),
        expect: [401, 401, 401, 404, 404, 403, 403, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/clearances/{id}/arrive",
        concrete: "/api/v1/clearances/00000000-0000-4000-8000-0000000000ff/arrive",
        body: Some((
            "application/json",
            br#"{"country":"SO","at":"2026-11-27T00:00:00Z"}"#,
        )),
        expect: [401, 401, 401, 404, 404, 403, 404, 403, 403, 404],
    },
    Row {
        method: "POST",
        path: "/api/v1/clearances/{id}/depart",
        concrete: "/api/v1/clearances/00000000-0000-4000-8000-0000000000ff/depart",
        body: Some((
            "application/json",
            br#"{"country":"SO","at":"2026-11-27T00:00:00Z"}"#,
        )),
        expect: [401, 401, 401, 404, 404, 403, 404, 403, 403, 404],
    },
    // Broadcasts, on an id that does not exist (the service decides: 404 or 422).
    Row {
        method: "POST",
        path: "/api/v1/broadcasts",
        concrete: "/api/v1/broadcasts",
        body: Some(("application/json", br#"{}"#)),
        expect: [401, 401, 401, 403, 422, 403, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/broadcasts",
        concrete: "/api/v1/broadcasts",
        body: None,
        expect: [401, 401, 401, 403, 200, 200, 200, 403, 200, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/broadcasts/{id}",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff",
        body: None,
        expect: [401, 401, 401, 403, 404, 404, 404, 403, 404, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/broadcasts/{id}/chain",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff/chain",
        body: None,
        expect: [401, 401, 401, 403, 404, 404, 404, 403, 404, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/broadcasts/{id}/cap",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff/cap",
        body: None,
        expect: [401, 401, 401, 403, 404, 404, 404, 403, 404, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/broadcasts/{id}/approve",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff/approve",
        body: Some(("application/json", b"{}")),
        expect: [401, 401, 401, 403, 404, 403, 403, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/broadcasts/{id}/ack",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff/ack",
        body: Some(("application/json", b"{}")),
        expect: [401, 401, 401, 403, 403, 403, 404, 403, 403, 403],
    },
    Row {
        method: "POST",
        path: "/api/v1/broadcasts/{id}/cancel",
        concrete: "/api/v1/broadcasts/00000000-0000-4000-8000-0000000000ff/cancel",
        body: Some(("application/json", br#"{"reason":"matrix check"}"#)),
        expect: [401, 401, 401, 403, 404, 403, 403, 403, 403, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/cap/feed",
        concrete: "/api/v1/cap/feed?agency=unicef",
        body: None,
        expect: [401, 401, 401, 403, 200, 200, 200, 403, 200, 403],
    },
    Row {
        method: "GET",
        path: "/api/v1/cap/public",
        concrete: "/api/v1/cap/public",
        body: None,
        expect: [200; 10],
    },
    Row {
        method: "GET",
        path: "/openapi.json",
        concrete: "/openapi.json",
        body: None,
        expect: [200; 10],
    },
    Row {
        method: "GET",
        path: "/ws",
        concrete: "/ws",
        body: None,
        expect: [401, 401, 401, 101, 101, 101, 101, 101, 101, 101],
    },
    // Any logged-in role may read it; this gateway is not at a field site: 404.
    Row {
        method: "GET",
        path: "/api/v1/site/state",
        concrete: "/api/v1/site/state",
        body: None,
        expect: [401, 401, 401, 404, 404, 404, 404, 404, 404, 404],
    },
    Row {
        method: "GET",
        path: "/healthz",
        concrete: "/healthz",
        body: None,
        expect: [200; 10],
    },
    Row {
        method: "GET",
        path: "/readyz",
        concrete: "/readyz",
        body: None,
        expect: [200; 10],
    },
];

/// Subscribes over a real WebSocket: 101 when a snapshot arrives, 401 when refused.
async fn ws_outcome(c: &Center, token: Option<&str>) -> (u16, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", c.addr))
        .await
        .unwrap();
    let mut sub = json!({"type": "subscribe", "board": "situation", "view": "duty"});
    if let Some(t) = token {
        sub["token"] = json!(t);
    }
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                match v["type"].as_str() {
                    Some("snapshot") => return (101, v),
                    Some("error") => return (401, v),
                    _ => {}
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_times_every_caller_gets_the_expected_status() {
    let c = start().await;
    // The table must cover every route the gateway serves: a new route needs a row.
    for route in vigil_gateway::ROUTES {
        assert!(
            MATRIX
                .iter()
                .any(|r| r.method == route.method && r.path == route.path),
            "route {} {} has no row in the authorization matrix",
            route.method,
            route.path
        );
    }
    let mut cells = 0;
    for row in MATRIX {
        for (i, caller) in CALLERS.iter().enumerate() {
            let token = token_for(&c, *caller).await;
            let expected = row.expect[i];
            if row.path == "/ws" {
                let (got, msg) = ws_outcome(&c, token.as_deref()).await;
                assert_eq!(got, expected, "/ws as {caller:?}: {msg}");
                if got == 101 {
                    let role = match caller {
                        Caller::As(r) => *r,
                        Caller::WrongScope => Role::FieldOfficer,
                        _ => unreachable!(),
                    };
                    // The view is the role's: a wall screen asking for `duty` still gets the
                    // redacted view.
                    let want = vigil_gateway::auth::board_view(role, Some(boards::View::Duty));
                    assert_eq!(msg["view"], want.as_str(), "/ws view as {caller:?}");
                }
            } else {
                // A report's `occurred_at` must be recent: the placeholder becomes an hour ago.
                let body = row.body.map(|(kind, bytes)| {
                    let text =
                        String::from_utf8_lossy(bytes).replace("@RECENT@", &testkit::recent());
                    (kind, text.into_bytes())
                });
                let body = body.as_ref().map(|(kind, bytes)| (*kind, bytes.as_slice()));
                let (got, raw) =
                    request(&c, row.method, row.concrete, token.as_deref(), body).await;
                // Nine wrong passwords from one address trip the login rate limit: 429 is the
                // same refusal (the login test checks the 401-then-429 order exactly).
                let got = if row.path == "/api/v1/auth/login" && got == 429 {
                    401
                } else {
                    got
                };
                assert_eq!(
                    got, expected,
                    "{} {} as {caller:?}: {raw}",
                    row.method, row.concrete
                );
                if got >= 400 {
                    let v = body_json(&raw);
                    assert!(
                        v["error"]["code"].is_string(),
                        "{} {} as {caller:?}: error body is JSON: {raw}",
                        row.method,
                        row.concrete
                    );
                }
            }
            cells += 1;
        }
    }
    assert_eq!(cells, MATRIX.len() * CALLERS.len());
    eprintln!(
        "authorization matrix: {} routes × {} callers = {cells} cells",
        MATRIX.len(),
        CALLERS.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_checks_origin_and_closes_when_the_token_expires() {
    let c = start().await;
    // A foreign site's page: refused before the upgrade.
    let mut req = format!("ws://{}/ws", c.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    // The gateway's own origin is fine.
    let mut req = format!("ws://{}/ws", c.addr).into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", format!("http://{}", c.addr).parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());

    // A token that expires while connected: the server says so and closes.
    let (t, _) = c
        .auth
        .issue(
            "screen",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(2),
            "api",
        )
        .unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws?token={t}", c.addr))
        .await
        .unwrap();
    ws.send(Message::Text(
        json!({"type": "subscribe", "board": "situation"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut saw = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => saw.push(
                    serde_json::from_str::<Value>(&t).unwrap()["type"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ),
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "closed after expiry; saw {saw:?}");
    assert_eq!(saw.first().map(String::as_str), Some("snapshot"));
    assert!(saw.iter().any(|t| t == "error"), "told why: {saw:?}");

    // A revoked token is refused from then on, without a restart.
    let (t, claims) = c
        .auth
        .issue(
            "screen-2",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(600),
            "api",
        )
        .unwrap();
    assert_eq!(ws_outcome(&c, Some(&t)).await.0, 101);
    vigil_gateway::auth::revoke(c.dir(), &claims.jti).unwrap();
    assert_eq!(ws_outcome(&c, Some(&t)).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_issues_a_working_token_and_has_hard_edges() {
    let c = start().await;
    let good = serde_json::to_vec(&json!({"username": "ana", "password": ANA_PASSWORD})).unwrap();
    let good = good.as_slice();
    let (status, raw) = request(
        &c,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(("application/json", good)),
    )
    .await;
    assert_eq!(status, 200, "{raw}");
    let v = body_json(&raw);
    assert_eq!(v["role"], "duty_officer");
    assert!(v["expires_at"].as_str().is_some_and(|s| s.ends_with('Z')));
    let token = v["token"].as_str().unwrap().to_owned();
    assert_eq!(
        request(&c, "GET", "/api/v1/events", Some(&token), None)
            .await
            .0,
        200
    );

    // Bad bodies: the right status and a JSON error, never a panic.
    let cases: [(&str, &[u8], u16); 5] = [
        ("application/json", b"{\"username\": ", 400),
        ("application/json", br#"{"username":"ana"}"#, 422),
        (
            "application/json",
            br#"{"username":"ana","password":"x","admin":true}"#,
            422,
        ),
        ("text/plain", good, 415),
        ("application/json", &[b' '; 70 * 1024], 413),
    ];
    for (ctype, body, want) in cases {
        let (status, raw) =
            request(&c, "POST", "/api/v1/auth/login", None, Some((ctype, body))).await;
        assert_eq!(status, want, "{raw}");
        assert!(body_json(&raw)["error"]["code"].is_string(), "{raw}");
    }

    // Guessing: after a burst, 429 with Retry-After.
    let mut limited = None;
    for _ in 0..12 {
        let (status, raw) = request(
            &c,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(("application/json", BAD_LOGIN)),
        )
        .await;
        if status == 429 {
            limited = Some(raw);
            break;
        }
        assert_eq!(status, 401);
    }
    let raw = limited.expect("rate limited within 12 attempts");
    assert!(raw.to_ascii_lowercase().contains("retry-after:"), "{raw}");
    // The right password is refused too while limited: the limit is per address and user.
    assert_eq!(
        request(
            &c,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(("application/json", good))
        )
        .await
        .0,
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_security_headers() {
    let c = start().await;
    let (status, raw) = request(&c, "GET", "/", None, None).await;
    assert_eq!(status, 200);
    let lower = raw.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'self'; script-src 'self';"),
        "{raw}"
    );
    assert!(lower.contains("frame-ancestors 'none'"));
    assert!(lower.contains("x-content-type-options: nosniff"));
}
