//! Who may append what, against `vigil up`'s own nats-server with the credentials it
//! generated: every service credential is tried against every category it does not own (and
//! against every other user's append subject); NATS refuses each, nothing lands in the log,
//! each service still appends to its own categories, and the store records in
//! `meta.appended_by` the user that really appended, whatever the writer claimed.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use async_nats::{ConnectOptions, Event};
use events::store_api::{AppendReply, ErrorCode};
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::StoreClient;
use runtime::nats_auth::{self, ANY_CATEGORY};
use testkit::free_port;
use uuid::Uuid;

/// A running `vigil up` on free ports, stopped (SIGTERM) on drop.
struct Up {
    child: Option<tokio::process::Child>,
    data_dir: PathBuf,
    nats_url: String,
}

impl Up {
    async fn start(data_dir: &Path) -> Self {
        let nats_url = format!("nats://127.0.0.1:{}", free_port());
        let stderr = std::fs::File::create(data_dir.join("vigil-up.stderr.log")).unwrap();
        let (child, banner) =
            common::spawn_up(data_dir, &nats_url, free_port(), free_port(), stderr.into()).await;
        let up = Self {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            nats_url,
        };
        assert!(banner.contains("NATS users"), "{banner}");
        up
    }

    /// A connection as `user` (its inbox prefix as `runtime::nats::connect` sets it), with
    /// the server's errors collected.
    async fn connect_as(&self, user: &str) -> (async_nats::Client, Errors) {
        let users = nats_auth::load(&self.data_dir).unwrap().unwrap();
        let (name, password) = users.credentials(user).unwrap();
        let errors = Errors::default();
        let sink = errors.clone();
        let client = ConnectOptions::with_user_and_password(name, password)
            .custom_inbox_prefix(nats_auth::inbox_prefix(user))
            .request_timeout(Some(Duration::from_secs(2)))
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let Event::ServerError(e) = event {
                        sink.0.lock().unwrap().push(e.to_string().to_lowercase());
                    }
                }
            })
            .connect(self.nats_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
        (client, errors)
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            common::stop_up(&mut child);
        }
    }
}

/// The server errors (permissions violations) one connection received.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl Errors {
    fn refused_publish(&self, subject: &str) -> bool {
        let needle = format!("permissions violation for publish to \"{subject}\"");
        self.0.lock().unwrap().iter().any(|e| e.contains(&needle))
    }
}

/// Every NATS user a service runs as (the store and the gateway own no category).
fn service_users() -> Vec<&'static str> {
    nats_auth::all_users()
        .into_iter()
        .filter(|u| *u != nats_auth::CLI)
        .collect()
}

/// Every category some user owns, plus reference data and a category nobody owns.
fn all_categories() -> BTreeSet<&'static str> {
    let mut all: BTreeSet<&str> = nats_auth::all_users()
        .into_iter()
        .flat_map(nats_auth::append_categories)
        .copied()
        .filter(|c| *c != ANY_CATEGORY)
        .collect();
    all.extend(["area", "station", "person", "agency", "note"]);
    all
}

/// One event in a new stream of `category`, claiming to come from `duty1` and to be appended
/// by `levels`.
fn forged(category: &str) -> AppendRequest {
    AppendRequest {
        after: None,
        stream: StreamName::parse(&format!("{category}-{}", Uuid::now_v7())).unwrap(),
        expected_version: ExpectedVersion::Any,
        events: vec![NewEvent {
            id: Uuid::now_v7(),
            event_type: "AreaSecurityLevelSet".into(),
            v: 2,
            data: serde_json::json!({"area": "SOM-BAN", "level": 6, "reason": "forged"}),
            meta: Meta {
                actor: Some("duty1".into()),
                appended_by: Some("levels".into()),
                ..Meta::default()
            },
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_credential_appends_only_to_its_own_categories_and_is_recorded_truthfully() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(dir.path()).await;
    let (cli, _) = up.connect_as(nats_auth::CLI).await;
    let log = StoreClient::new(cli.clone(), Duration::from_secs(5));
    common::wait_ready(&log).await;
    // The services of `vigil up` may append at start (none do today); count from here.
    let (_, head_before) = log.read(u64::MAX, 1).await.unwrap();

    let categories = all_categories();
    let mut forged_ids = Vec::new();
    let mut attempts = 0usize;
    for user in service_users() {
        let (client, errors) = up.connect_as(user).await;
        let own = nats_auth::append_categories(user);
        // Every subject this user must not publish on: foreign categories on its own token,
        // every category on every other user's token (the audit user writing as `levels`),
        // and the bare prefix.
        let mut refused: Vec<(String, &str)> = categories
            .iter()
            .filter(|c| !own.contains(c))
            .map(|c| (format!("vigil.store.append.{user}.{c}"), *c))
            .collect();
        for other in nats_auth::all_users().into_iter().filter(|o| *o != user) {
            for c in nats_auth::append_categories(other) {
                let c = if *c == ANY_CATEGORY { "note" } else { *c };
                refused.push((format!("vigil.store.append.{other}.{c}"), c));
            }
        }
        refused.push(("vigil.store.append".to_owned(), "level"));
        for (subject, category) in &refused {
            let request = forged(category);
            forged_ids.push(request.events[0].id);
            let inbox = client.new_inbox();
            client
                .publish_with_reply(
                    subject.clone(),
                    inbox,
                    serde_json::to_vec(&request).unwrap().into(),
                )
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        attempts += refused.len();
        let all_refused = testkit::eventually(Duration::from_secs(10), || {
            let done = refused.iter().all(|(s, _)| errors.refused_publish(s));
            async move { done.then_some(()) }
        })
        .await;
        let missing: Vec<&String> = refused
            .iter()
            .map(|(s, _)| s)
            .filter(|s| !errors.refused_publish(s))
            .collect();
        assert!(
            all_refused.is_some(),
            "NATS let {user} publish on {missing:?}"
        );

        // Its honest client is refused too when it aims at a foreign category: NATS drops
        // the request, so no answer comes and nothing is stored.
        let store = StoreClient::new(client.clone(), Duration::from_secs(1));
        assert_eq!(store.appender(), user);
        let foreign = categories.iter().find(|c| !own.contains(c)).unwrap();
        let request = forged(foreign);
        forged_ids.push(request.events[0].id);
        let refused_append = store.append(&request).await;
        assert!(
            matches!(refused_append, Err(runtime::ClientError::Transport(_))),
            "{user} appending to {foreign}: {refused_append:?}"
        );

        // On its own subject, a stream of another category is refused by the store, typed.
        for c in own {
            let subject = format!("vigil.store.append.{user}.{c}");
            for other in categories.iter().filter(|o| !own.contains(o)) {
                let request = forged(other);
                forged_ids.push(request.events[0].id);
                let reply = client
                    .request(
                        subject.clone(),
                        serde_json::to_vec(&request).unwrap().into(),
                    )
                    .await
                    .unwrap();
                match serde_json::from_slice::<AppendReply>(&reply.payload).unwrap() {
                    AppendReply::Error(e) => assert_eq!(
                        e.code,
                        ErrorCode::Forbidden,
                        "{user} on {subject} with a {other} stream: {e:?}"
                    ),
                    ok => panic!("{user} on {subject} appended a {other} stream: {ok:?}"),
                }
            }
        }
    }
    assert!(attempts > 100, "{attempts} refused subjects tried");

    // Nothing of it reached the log.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, head) = log.read(u64::MAX, 1).await.unwrap();
    assert_eq!(head, head_before, "a refused append was stored");

    // Each service appends to each of its own categories, and the store records who did:
    // the subject's user, not the `appended_by` the writer put in (`levels`).
    let mut expected = Vec::new();
    for user in service_users() {
        let (client, _) = up.connect_as(user).await;
        let store = StoreClient::new(client, Duration::from_secs(5));
        for c in nats_auth::append_categories(user) {
            let request = forged(c);
            store
                .append_retrying(&request, Duration::from_secs(10))
                .await
                .unwrap_or_else(|e| panic!("{user} appends to its own {c}: {e}"));
            expected.push((request.events[0].id, user));
        }
    }
    // The operator tools append anywhere, as `cli`.
    for c in ["area", "level", "note"] {
        let request = forged(c);
        log.append_retrying(&request, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("cli appends to {c}: {e}"));
        expected.push((request.events[0].id, nats_auth::CLI));
    }
    let all = common::read_all(&log).await;
    let new: Vec<_> = all.iter().filter(|e| e.position > head_before).collect();
    assert_eq!(new.len(), expected.len(), "{new:#?}");
    for (id, user) in &expected {
        let event = new.iter().find(|e| e.id == *id).expect("appended");
        assert_eq!(event.meta.appended_by.as_deref(), Some(*user), "{event:?}");
        assert_eq!(
            event.meta.actor.as_deref(),
            Some("duty1"),
            "the claim is kept"
        );
    }
    for id in &forged_ids {
        assert!(!all.iter().any(|e| e.id == *id), "forged {id} was stored");
    }
    let levels_appended = expected.iter().filter(|(_, u)| *u == "levels").count();
    assert_eq!(
        levels_appended, 1,
        "only `levels` and `cli` write level streams"
    );

    // `vigil tail --json` shows it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["tail", "--nats-url", &up.nats_url, "--json", "--count", "1"])
        .args(["--from", &(head_before + 1).to_string()])
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("VIGIL_NATS_USER")
        .env_remove("VIGIL_NATS_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        first["meta"]["appended_by"].as_str(),
        Some(expected[0].1),
        "{first}"
    );
}
