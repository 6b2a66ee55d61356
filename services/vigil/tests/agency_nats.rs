//! Agencies on NATS, for real: `vigil up` with the shipped reference data, `vigil agency
//! credentials` issuing an nkey identity, and an agency system connecting with nothing but
//! that file (the README's example client, `examples/agency_client.rs`, run as is). It
//! receives a broadcast, answers with the receipt and acknowledges; the board and the
//! broadcast view say sent / delivered / acknowledged. The identity can do nothing else
//! (permission violations from the server), a broadcast to an agency nobody of which
//! listens ends failed, not delivered, and a revoked identity is thrown off the bus.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

#[allow(dead_code)]
#[path = "../examples/agency_client.rs"]
mod agency_client;

use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use serde_json::{Value, json};
use testkit::http::Answer;
use uuid::Uuid;

// The shared test centre (`vigil up` with the sample imported); requests as the duty officer.
common::centre_type!();

impl Centre {
    async fn start() -> Self {
        Self(
            common::up()
                .import(common::SAMPLE)
                .token("duty", "duty", "duty_officer", None)
                .probe("/api/v1/broadcasts")
                .start()
                .await,
        )
    }

    fn data(&self) -> &Path {
        self.data_dir()
    }

    async fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Answer {
        self.0.call(method, path, &self.0["duty"], body).await
    }

    /// Issues a broadcast to `agencies` that asks for an acknowledgement; returns its id.
    async fn issue(&self, title: &str, agencies: &[&str]) -> Uuid {
        let id = Uuid::new_v4();
        let body = json!({"id": id, "title": title, "body": "Stay in.", "severity": "medium",
            "audience": {"agencies": agencies}, "requires_ack": true,
            "ack_deadline": "2099-01-01T00:00:00Z"});
        let issued = testkit::eventually(Duration::from_secs(20), || async {
            let a = self.call("POST", "/api/v1/broadcasts", Some(&body)).await;
            (a.status != 503).then_some(a)
        })
        .await
        .unwrap();
        assert_eq!(issued.status, 201, "{}", issued.body);
        id
    }

    /// Waits (up to `secs`) until the broadcast view and the duty board both satisfy `ok`;
    /// returns them.
    async fn until(
        &self,
        id: Uuid,
        secs: u64,
        ok: impl Fn(&Value, &Value) -> bool,
    ) -> (Value, Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let view = self
                .call("GET", &format!("/api/v1/broadcasts/{id}"), None)
                .await
                .json();
            let board = self
                .call("GET", "/api/v1/boards/situation", None)
                .await
                .json();
            let mut line = board["broadcasts"]
                .as_array()
                .and_then(|l| l.iter().find(|b| b["id"] == json!(id)).cloned())
                .unwrap_or(Value::Null);
            line["agencies"] = board["broadcast_agencies"][id.to_string()].clone();
            if ok(&view, &line) {
                return (view, line);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not reached in {secs} s; the view: {view:#}, the board: {line:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A connection with only the credentials file, its server errors and events collected.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn has(&self, needle: &str) -> bool {
        let needle = needle.to_lowercase();
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.to_lowercase().contains(&needle))
    }

    async fn expect(&self, needle: &str) {
        let seen = testkit::eventually(Duration::from_secs(5), || {
            let seen = self.has(needle);
            async move { seen.then_some(()) }
        })
        .await;
        assert!(
            seen.is_some(),
            "expected {needle:?}; seen {:?}",
            self.0.lock().unwrap()
        );
    }
}

fn credentials(file: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

async fn connect_with(file: &Path) -> Result<(async_nats::Client, Seen), async_nats::ConnectError> {
    let creds = credentials(file);
    let seen = Seen::default();
    let sink = seen.clone();
    let client = ConnectOptions::with_nkey(creds["nkey_seed"].as_str().unwrap().to_owned())
        .custom_inbox_prefix(creds["inbox_prefix"].as_str().unwrap())
        .request_timeout(Some(Duration::from_secs(2)))
        .max_reconnects(Some(20))
        .event_callback(move |event| {
            let sink = sink.clone();
            async move {
                sink.0.lock().unwrap().push(match event {
                    Event::ServerError(e) => format!("server error: {e}"),
                    other => format!("event: {other}"),
                });
            }
        })
        .connect(creds["nats_url"].as_str().unwrap())
        .await?;
    Ok((client, seen))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_system_with_only_its_credentials_file_receives_sends_the_receipt_and_acknowledges()
 {
    let c = Centre::start().await;

    // Only agencies of the reference data get an identity.
    let refused = c.vigil(&["agency", "credentials", "no-such-agency"]);
    assert!(!refused.status.success());
    assert!(
        stderr_of(&refused).contains("not in the reference data"),
        "{}",
        stderr_of(&refused)
    );

    // Nobody of wfp listens: the broadcast is sent, never delivered, and ends failed after
    // the delivery schedule's attempts (1 + 2 + 4 + 8 s of back-off).
    let unheard = c.issue("Road closed", &["wfp"]).await;

    let file = c.data().join("unicef.nats-credentials.json");
    let out = c.vigil(&[
        "agency",
        "credentials",
        "unicef",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        printed.contains(&format!("the centre at {} admits it now", c.nats_url())),
        "the running centre took the identity without a restart: {printed}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the credentials file is owner-only");
    }
    let listed = c.vigil(&["agency", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        listed.starts_with("unicef\t")
            && listed.contains(credentials(&file)["public_key"].as_str().unwrap()),
        "{listed}"
    );

    // The README's example client, with the file alone, serves one broadcast.
    let path = file.to_str().unwrap().to_owned();
    let client = tokio::spawn(async move {
        agency_client::run(&path, "unicef-ops-desk", 1)
            .await
            .map_err(|e| e.to_string())
    });
    let id = c.issue("Curfew 18:00", &["unicef"]).await;
    tokio::time::timeout(Duration::from_secs(30), client)
        .await
        .expect("the example client served the broadcast")
        .unwrap()
        .unwrap();
    let (view, line) = c
        .until(id, 10, |view, line| {
            view["acknowledged"] == 1 && line["acked"] == 1 && line["delivered"] == 1
        })
        .await;
    assert_eq!(
        (
            &view["sent"],
            &view["delivered"],
            &view["acknowledged"],
            &view["failed"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0)),
        "{view:#}"
    );
    assert_eq!(view["agencies"]["unicef"]["delivered"], json!(["nats"]));
    assert_eq!(view["agencies"]["unicef"]["ack"]["by"], "unicef-ops-desk");
    assert_eq!(
        (
            &line["sent"],
            &line["delivered"],
            &line["acked"],
            &line["failed"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(0)),
        "{line:#}"
    );
    assert_eq!(
        line["agencies"]["unicef"],
        json!({"sent": true, "delivered": true, "acknowledged": true,
               "ack_seconds": line["agencies"]["unicef"]["ack_seconds"], "failed": false, "resent": false})
    );

    // The same identity may do nothing else.
    let (agency, seen) = connect_with(&file).await.unwrap();
    let _own = agency.subscribe("vigil.alerts.unicef").await.unwrap();
    agency.flush().await.unwrap();
    for subject in [
        "vigil.alerts.wfp",
        "vigil.alerts.*",
        "vigil.>",
        "vigil.events.>",
    ] {
        let _sub = agency.subscribe(subject).await.unwrap();
        seen.expect(&format!(
            "permissions violation for subscription to \"{subject}\""
        ))
        .await;
    }
    for subject in [
        "vigil.alerts.wfp.ack",
        "vigil.cmd.broadcast.issue",
        "vigil.store.read",
        "vigil.alerts.unicef",
    ] {
        agency.publish(subject, "{}".into()).await.unwrap();
        seen.expect(&format!(
            "permissions violation for publish to \"{subject}\""
        ))
        .await;
    }
    assert!(
        !seen.has("subscription to \"vigil.alerts.unicef\""),
        "its own alerts are allowed: {:?}",
        seen.0.lock().unwrap()
    );

    // Nobody listened for wfp: sent, failed, never delivered.
    let (view, line) = c
        .until(unheard, 60, |view, line| {
            view["failed"] == 1 && line["failed"] == 1
        })
        .await;
    assert_eq!(
        (&view["sent"], &view["delivered"]),
        (&json!(1), &json!(0)),
        "{view:#}"
    );
    assert!(
        view["agencies"]["wfp"]["failed"]["nats"]
            .as_str()
            .unwrap()
            .contains("no agency system is listening"),
        "{view:#}"
    );
    assert_eq!(
        (&line["sent"], &line["delivered"]),
        (&json!(1), &json!(0)),
        "{line:#}"
    );

    // Revoked: the live connection is closed and the file no longer logs in.
    let out = c.vigil(&["agency", "revoke", "unicef"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let closed = testkit::eventually(Duration::from_secs(10), || {
        let state = agency.connection_state();
        async move { (state != async_nats::connection::State::Connected).then_some(()) }
    })
    .await;
    assert!(
        closed.is_some(),
        "the revoked connection is closed: {:?}",
        seen.0.lock().unwrap()
    );
    let again = connect_with(&file).await;
    match again {
        Err(e) => assert_eq!(e.kind(), ConnectErrorKind::AuthorizationViolation, "{e}"),
        Ok(_) => panic!("a revoked identity logged in again"),
    }
    let listed = c.vigil(&["agency", "list"]);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("unicef\t"));
}
