//! The bus is secured, for real: `vigil up` owns a nats-server that refuses anonymous
//! connections and gives each service's NATS user only its subjects. Each check below talks to
//! that server with the credentials `vigil up` generated into
//! `<data-dir>/secrets/nats-users.json`.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::StoreClient;
use runtime::nats_auth::{self, NatsUsers};
use testkit::{ChildGuard, free_port};

/// A running `vigil up` on free ports, stopped (SIGTERM) on drop.
struct Up {
    child: Option<tokio::process::Child>,
    data_dir: PathBuf,
    nats_url: String,
    http_port: u16,
}

impl Up {
    async fn start(data_dir: &Path) -> Self {
        let nats_url = format!("nats://127.0.0.1:{}", free_port());
        let http_port = free_port();
        let stderr = std::fs::File::create(data_dir.join("vigil-up.stderr.log")).unwrap();
        let metrics_port = free_port();
        let (child, banner) =
            common::spawn_up(data_dir, &nats_url, http_port, metrics_port, stderr.into()).await;
        // From here on, a failed assertion still stops vigil up (and its nats-server) cleanly.
        let up = Self {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            nats_url,
            http_port,
        };
        assert!(banner.contains("NATS users"), "{banner}");
        up
    }

    fn users(&self) -> NatsUsers {
        nats_auth::load(&self.data_dir)
            .unwrap()
            .expect("vigil up wrote the credentials file")
    }

    /// A connection as `user`, with the server's errors (permissions violations) collected.
    async fn connect_as(&self, user: &str) -> (async_nats::Client, ServerErrors) {
        let (name, password) = self.users().credentials(user).unwrap();
        let errors = ServerErrors::default();
        let sink = errors.clone();
        let client = ConnectOptions::with_user_and_password(name, password)
            .name(format!("nats-security-test-{user}"))
            .custom_inbox_prefix(runtime::nats_auth::inbox_prefix(user))
            .request_timeout(Some(Duration::from_secs(2)))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let Event::ServerError(e) = event {
                        sink.0.lock().unwrap().push(e.to_string());
                    }
                }
            })
            .connect(self.nats_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{user} connects with its own credentials: {e}"));
        (client, errors)
    }

    fn vigil(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
        cmd.args(["--nats-url", &self.nats_url])
            .env_remove("VIGIL_NATS_USER")
            .env_remove("VIGIL_NATS_PASSWORD")
            .env("RUST_LOG", "warn");
        cmd
    }
}

impl Drop for Up {
    /// SIGTERM, so that vigil up stops its own nats-server too; SIGKILL after 10 s.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        common::stop_up(&mut child);
    }
}

/// The server errors one connection received, as text.
#[derive(Clone, Default)]
struct ServerErrors(Arc<Mutex<Vec<String>>>);

impl ServerErrors {
    fn violation(&self, kind: &str, subject: &str) -> bool {
        let needle = format!("permissions violation for {kind} to \"{subject}\"").to_lowercase();
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|e| e.to_lowercase().contains(&needle))
    }

    /// Waits up to 5 s for the server to refuse `kind` ("publish" or "subscription") on
    /// `subject`.
    async fn expect_violation(&self, kind: &str, subject: &str) {
        let seen = testkit::eventually(Duration::from_secs(5), || {
            let seen = self.violation(kind, subject);
            async move { seen.then_some(()) }
        })
        .await;
        assert!(
            seen.is_some(),
            "the server refused {kind} to {subject}; errors seen: {:?}",
            self.0.lock().unwrap()
        );
    }

    /// After the connection has flushed, allows the server a moment to object; asserts it
    /// did not.
    async fn expect_no_violation(&self, client: &async_nats::Client, kind: &str, subject: &str) {
        client.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !self.violation(kind, subject),
            "the server refused {kind} to {subject}: {:?}",
            self.0.lock().unwrap()
        );
    }
}

/// Waits until `GET /readyz` on `port` answers 200.
async fn wait_ready(port: u16) -> bool {
    testkit::eventually(Duration::from_secs(30), || async move {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let answer = testkit::http::request(addr, "GET", "/readyz", &[], None).await;
        (answer.ok()?.status == 200).then_some(())
    })
    .await
    .is_some()
}

fn append_request(text: &str) -> AppendRequest {
    AppendRequest {
        after: None,
        stream: StreamName::parse(&format!("note-{}", uuid::Uuid::now_v7())).unwrap(),
        expected_version: ExpectedVersion::Any,
        events: vec![NewEvent {
            id: uuid::Uuid::now_v7(),
            event_type: "NoteAdded".into(),
            v: 1,
            data: serde_json::json!({ "text": text }),
            meta: Meta {
                actor: Some("intruder".into()),
                ..Meta::default()
            },
        }],
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_admits_only_known_users_each_to_its_own_subjects() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path()).await;

    // Credentials: generated at the first start, one per service, private.
    let users = up.users();
    for user in nats_auth::all_users() {
        let (_, password) = users.credentials(user).unwrap();
        assert_eq!(password.len(), 48, "{user}");
    }
    let conf = std::fs::read_to_string(dir.path().join("nats/nats-server.conf")).unwrap();
    assert!(!conf.contains("no_auth_user"), "{conf}");
    assert!(conf.contains("system_account"), "{conf}");
    #[cfg(unix)]
    {
        assert_eq!(mode_of(&nats_auth::users_file(dir.path())), 0o600);
        assert_eq!(mode_of(&dir.path().join("nats/nats-server.conf")), 0o600);
    }

    // No credentials, or wrong ones: refused.
    let anonymous = ConnectOptions::new()
        .connect(up.nats_url.as_str())
        .await
        .expect_err("an anonymous connection is refused");
    assert_eq!(
        anonymous.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{anonymous}"
    );
    let wrong = ConnectOptions::with_user_and_password("gateway".into(), "guess".into())
        .connect(up.nats_url.as_str())
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(wrong.kind(), ConnectErrorKind::AuthorizationViolation);

    // The operator tools find the `cli` credentials in the data directory by themselves...
    let out = up
        .vigil()
        .args([
            "append",
            "--type",
            "NoteAdded",
            "--data",
            r#"{"text":"first"}"#,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("at position 1"));
    // ...and without them they are refused, with a message that says what to pass.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = up
        .vigil()
        .args(["append", "--type", "NoteAdded"])
        .arg("--data-dir")
        .arg(elsewhere.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused") && err.contains("--nats-user"),
        "{err}"
    );
    // Explicit credentials work from anywhere.
    let (_, cli_password) = users.credentials("cli").unwrap();
    let out = up
        .vigil()
        .args(["tail", "--from", "1", "--count", "1", "--json"])
        .arg("--data-dir")
        .arg(elsewhere.path())
        .env("VIGIL_NATS_USER", "cli")
        .env("VIGIL_NATS_PASSWORD", &cli_password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let event: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(event["data"]["text"], "first");

    // The gateway's own user is enough for the gateway: the in-process one is ready.
    assert!(
        wait_ready(up.http_port).await,
        "vigil up's gateway is ready"
    );

    let (cli, cli_errors) = up.connect_as("cli").await;
    let log = StoreClient::new(cli.clone(), Duration::from_secs(5));
    let (_, head_before) = log.read(u64::MAX, 1).await.unwrap();
    assert_eq!(head_before, 1);
    let mut feed = cli.subscribe("vigil.events.>").await.unwrap();
    cli_errors
        .expect_no_violation(&cli, "subscription", "vigil.events.>")
        .await;

    // The gateway's user cannot fake a committed event...
    let (gateway, gateway_errors) = up.connect_as("gateway").await;
    gateway
        .publish("vigil.events.x", "forged".into())
        .await
        .unwrap();
    gateway.flush().await.unwrap();
    gateway_errors
        .expect_violation("publish", "vigil.events.x")
        .await;
    let forged =
        tokio::time::timeout(Duration::from_secs(1), futures::StreamExt::next(&mut feed)).await;
    assert!(
        forged.is_err(),
        "a subscriber received the forged event: {forged:?}"
    );

    // ...nor append: the request never reaches the store, and the log is unchanged.
    let body = serde_json::to_vec(&append_request("forged append")).unwrap();
    let reply = gateway.request("vigil.store.append", body.into()).await;
    assert!(reply.is_err(), "the append got an answer: {reply:?}");
    gateway_errors
        .expect_violation("publish", "vigil.store.append")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, head_after) = log.read(u64::MAX, 1).await.unwrap();
    assert_eq!(head_after, head_before, "the gateway appended nothing");

    // Nor listen in on the store's requests.
    let _spy = gateway.subscribe("vigil.store.>").await.unwrap();
    gateway_errors
        .expect_violation("subscription", "vigil.store.>")
        .await;

    // Nor read the replies meant for another service (its own inbox only).
    let _replies = gateway.subscribe("_INBOX_store.>").await.unwrap();
    gateway_errors
        .expect_violation("subscription", "_INBOX_store.>")
        .await;
    let _all = gateway.subscribe("_INBOX.>").await.unwrap();
    gateway_errors
        .expect_violation("subscription", "_INBOX.>")
        .await;

    // It reads the log through the store as before.
    let reader = StoreClient::new(gateway.clone(), Duration::from_secs(5));
    let (page, head) = reader.read(1, 10).await.unwrap();
    assert_eq!((page.len(), head), (1, head_before));

    // The operator tools' user cannot publish events either.
    cli.publish("vigil.events.note.x", "forged".into())
        .await
        .unwrap();
    cli_errors
        .expect_violation("publish", "vigil.events.note.x")
        .await;

    // A domain service hears only its own commands; only `broadcast` sends alerts.
    let (incidents, incidents_errors) = up.connect_as("incidents").await;
    let _own = incidents.subscribe("vigil.cmd.incidents.>").await.unwrap();
    incidents_errors
        .expect_no_violation(&incidents, "subscription", "vigil.cmd.incidents.>")
        .await;
    let _other = incidents.subscribe("vigil.cmd.hostage.>").await.unwrap();
    incidents_errors
        .expect_violation("subscription", "vigil.cmd.hostage.>")
        .await;
    incidents
        .publish("vigil.alerts.all", "no".into())
        .await
        .unwrap();
    incidents_errors
        .expect_violation("publish", "vigil.alerts.all")
        .await;
    let (broadcast, broadcast_errors) = up.connect_as("broadcast").await;
    broadcast
        .publish("vigil.alerts.all", "yes".into())
        .await
        .unwrap();
    broadcast_errors
        .expect_no_violation(&broadcast, "publish", "vigil.alerts.all")
        .await;

    // The store's user does its job (appends above went through it); a domain service appends
    // through the store and the store publishes the event.
    // (Only to its own category: see nats_append_scope.rs.)
    let service_log = StoreClient::new(incidents.clone(), Duration::from_secs(5));
    let mut own = append_request("from incidents");
    own.stream = StreamName::parse(&format!("incident-{}", uuid::Uuid::now_v7())).unwrap();
    let ok = service_log
        .append_retrying(&own, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(ok.last_position, head_before + 1);
    let published =
        tokio::time::timeout(Duration::from_secs(5), futures::StreamExt::next(&mut feed))
            .await
            .expect("the store published the committed event")
            .unwrap();
    assert_eq!(published.subject.as_str(), events::subjects::EVENTS);
    let header = |name: &str| {
        published
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str().to_owned())
    };
    assert_eq!(
        header(events::subjects::FIRST_POSITION_HEADER),
        Some(ok.last_position.to_string())
    );
    assert_eq!(header(events::subjects::COUNT_HEADER), Some("1".into()));
    let group: Vec<events::RecordedEvent> = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(group.len(), 1);
    assert_eq!(group[0].stream, own.stream);

    // `vigil gateway` run alone reads its own entry from the data directory.
    let alone_port = free_port();
    let _alone = ChildGuard(Some(
        up.vigil()
            .args(["gateway", "--http", &format!("127.0.0.1:{alone_port}")])
            .arg("--data-dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    assert!(
        wait_ready(alone_port).await,
        "vigil gateway alone connected with its own NATS user and is ready"
    );
}
