//! Field sites, for real: `vigil up --leaf-addr` as the centre, `vigil site-user add` issuing
//! a site's login, and `vigil site` as its own process with its own nats-server as a leaf
//! node of the centre's. Commands are submitted on the site's own bus; the centre's event log
//! (read as the `cli` user) must hold every command the site accepted exactly once, in the
//! site's order, through a cut link (the centre's nats-server killed with -9) and a site
//! killed with -9 with items pending. Refusals from the centre are recorded at the site; a
//! revoked site is refused and cannot connect again.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::Client;
use futures::StreamExt;
use runtime::StoreClient;
use runtime::nats::Mode;
use serde_json::{Value, json};
use testkit::ChildGuard;
use uuid::Uuid;

const SCOPE: &str = "AF";

/// The centre with a leaf-node listener on a free port.
async fn centre() -> (testkit::centre::Centre, String) {
    let leaf = format!("127.0.0.1:{}", testkit::free_port());
    let c = common::up().env("VIGIL_LEAF_ADDR", &leaf).start().await;
    (c, format!("nats-leaf://{leaf}"))
}

/// One `vigil site` process and its data.
struct Site {
    name: String,
    dir: PathBuf,
    creds: PathBuf,
    centre: String,
    listen: String,
    guard: Option<ChildGuard>,
}

impl Drop for Site {
    /// Stops the site as an operator does (SIGTERM: it stops its nats-server too), and a
    /// nats-server a site killed with -9 left behind.
    fn drop(&mut self) {
        if let Some(child) = self.guard.as_mut().and_then(|g| g.0.as_mut()) {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        self.guard = None;
        let conf = self.dir.join("nats/nats-server.conf");
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("nats/nats-server.pid")) {
            let pid = pid.trim();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&*conf.to_string_lossy()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
    }
}

impl Site {
    /// Issues site `name` at `centre` with `vigil site-user add` and starts it.
    fn issue_and_start(c: &testkit::centre::Centre, leaf: &str, name: &str, dir: &Path) -> Site {
        let creds = dir.join(format!("{name}.site-credentials.json"));
        let out = c.vigil(&[
            "site-user",
            "add",
            name,
            "--scope",
            SCOPE,
            "--out",
            creds.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(
            printed.contains(&format!("vigil site --name {name}")),
            "{printed}"
        );
        let issued: Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
        assert_eq!(
            issued["centre"], leaf,
            "the running centre's leaf URL is in the file"
        );
        let mut site = Site {
            name: name.to_owned(),
            dir: dir.join(name),
            creds,
            centre: leaf.to_owned(),
            listen: format!("127.0.0.1:{}", testkit::free_port()),
            guard: None,
        };
        std::fs::create_dir_all(&site.dir).unwrap();
        site.start();
        site
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("site.stderr.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["site", "--name", &self.name, "--scope", SCOPE, "--centre"])
            .arg(&self.centre)
            .arg("--credentials")
            .arg(&self.creds)
            .args(["--listen", &self.listen, "--data-dir"])
            .arg(&self.dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.guard = Some(ChildGuard(Some(child)));
    }

    /// kill -9 of the site process alone (its nats-server is left behind, as after a real
    /// SIGKILL; the next start must cope).
    fn kill9(&mut self) {
        self.guard.as_mut().unwrap().kill9();
        self.guard = None;
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("site.stderr.log")).unwrap_or_default()
    }

    /// A client of the site's own bus (waits until the site answers on it).
    async fn client(&self) -> Client {
        let url = format!("nats://{}", self.listen);
        let got = testkit::eventually(Duration::from_secs(60), || async {
            let creds = runtime::nats_auth::load(&self.dir)
                .ok()
                .flatten()?
                .credentials(&runtime::nats_sites::user_of(&self.name))?;
            let client = runtime::nats::connect(&url, "site-test", Some(creds), Mode::Tool)
                .await
                .ok()?;
            let asked = client
                .request(site::subjects::STATE, Vec::new().into())
                .await
                .ok()?;
            asked.payload.starts_with(b"{\"ok\"").then_some(client)
        })
        .await;
        got.unwrap_or_else(|| panic!("the site's bus is up; log:\n{}", self.log()))
    }
}

async fn ask(client: &Client, subject: String, body: Vec<u8>) -> Value {
    let msg = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(subject, body.into()),
    )
    .await
    .expect("the site answers")
    .expect("the site answers");
    serde_json::from_slice(&msg.payload).unwrap()
}

fn command(id: Uuid, scope: &str, country: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "actor": {"user": "amina", "role": "field_officer", "scope": scope},
        "source": "site-test",
        "body": {"country": country, "category": "crime", "severity": 2,
                 "title": format!("Report {i} from the site"), "occurred_at": testkit::recent()},
    }))
    .unwrap()
}

async fn submit(client: &Client, id: Uuid, scope: &str, country: &str, i: usize) -> Value {
    ask(
        client,
        format!("{}.incidents.report", site::subjects::SUBMIT),
        command(id, scope, country, i),
    )
    .await
}

/// Submits a report in scope; panics unless the site accepted it at the next position.
async fn accepted(client: &Client, i: usize) -> Uuid {
    let id = Uuid::new_v4();
    let a = submit(client, id, SCOPE, SCOPE, i).await;
    assert_eq!(a["ok"]["accepted_at_site"], true, "{a}");
    assert_eq!(a["ok"]["duplicate"], false, "{a}");
    id
}

async fn state(client: &Client) -> Value {
    ask(client, site::subjects::STATE.to_owned(), vec![]).await["ok"].clone()
}

async fn status(client: &Client, id: Uuid) -> Value {
    ask(client, format!("{}.{id}", site::subjects::STATUS), vec![]).await
}

/// Waits until the site says nothing is pending; returns its state.
async fn drained(client: &Client, secs: u64, site: &Site) -> Value {
    let got = testkit::eventually(Duration::from_secs(secs), || async {
        let s = state(client).await;
        (s["pending"] == 0 && s["link"]["up"] == true).then_some(s)
    })
    .await;
    got.unwrap_or_else(|| panic!("the outbox drains; log:\n{}", site.log()))
}

/// Every `IncidentReported` in the centre's log whose id is one of `ids`, as (position,
/// id, meta source), in log order.
async fn in_log(c: &testkit::centre::Centre, ids: &[Uuid]) -> Vec<(u64, Uuid, String)> {
    let creds = runtime::nats_auth::load(c.data_dir())
        .unwrap()
        .unwrap()
        .credentials(runtime::nats_auth::CLI);
    let client = runtime::nats::connect(c.nats_url(), "site-test-log", creds, Mode::Tool)
        .await
        .unwrap();
    let store = StoreClient::new(client, Duration::from_secs(10));
    let mut found = vec![];
    let mut from = 1;
    loop {
        let (events, head) = store.read(from, 1000).await.unwrap();
        for e in &events {
            if e.event_type == "IncidentReported" && ids.contains(&e.id) {
                found.push((e.position, e.id, e.meta.source.clone().unwrap_or_default()));
            }
        }
        match events.last() {
            Some(last) if last.position < head => from = last.position + 1,
            _ => break,
        }
    }
    found
}

/// The log holds each of `ids` exactly once, in this order, from site `name`.
async fn assert_once_in_order(c: &testkit::centre::Centre, ids: &[Uuid], name: &str) {
    let found = in_log(c, ids).await;
    let order: Vec<Uuid> = found.iter().map(|(_, id, _)| *id).collect();
    assert_eq!(order, ids, "each accepted item once, in the site's order");
    for (_, _, source) in &found {
        assert_eq!(source, &format!("site:{name}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_forwards_in_order_exactly_once_through_a_cut_link_and_keeps_refusals() {
    let (mut c, leaf) = centre().await;
    let temp = tempfile::tempdir().unwrap();
    let site = Site::issue_and_start(&c, &leaf, "kabul", temp.path());
    let bus = site.client().await;

    // (a) The link is up: items reach the centre once.
    let mut ids = vec![];
    let first = Uuid::new_v4();
    let bytes = command(first, SCOPE, SCOPE, 0);
    let subject = format!("{}.incidents.report", site::subjects::SUBMIT);
    let a = ask(&bus, subject.clone(), bytes.clone()).await;
    assert_eq!(a["ok"]["position"], 1, "{a}");
    ids.push(first);
    for i in 1..5 {
        ids.push(accepted(&bus, i).await);
    }
    // The same command again is the same item: nothing new is queued. The same id with
    // another body is refused.
    let again = ask(&bus, subject, bytes).await;
    assert_eq!(again["ok"]["duplicate"], true, "{again}");
    assert_eq!(again["ok"]["position"], 1, "{again}");
    let reused = submit(&bus, first, SCOPE, SCOPE, 1).await;
    assert_eq!(reused["error"]["code"], "id_reused", "{reused}");
    let s = drained(&bus, 60, &site).await;
    assert_eq!(s["forwarded"], 5, "{s}");
    assert_once_in_order(&c, &ids, "kabul").await;

    // Refused at the site, nothing stored: another country's officer, a command a site may
    // not forward, an unreadable command.
    let other = submit(&bus, Uuid::new_v4(), "IQ", "IQ", 9).await;
    assert_eq!(other["error"]["code"], "forbidden", "{other}");
    let verify = ask(
        &bus,
        format!("{}.incidents.verify", site::subjects::SUBMIT),
        command(Uuid::new_v4(), SCOPE, SCOPE, 9),
    )
    .await;
    assert_eq!(verify["error"]["code"], "forbidden", "{verify}");
    let junk = ask(
        &bus,
        format!("{}.incidents.report", site::subjects::SUBMIT),
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(junk["error"]["code"], "invalid", "{junk}");

    // The link carries nothing else: a command straight to a service, or on another site's
    // subject, finds no route to the centre, and the centre's event feed does not reach the
    // site (the site's NATS user may publish only its own subjects and read only its inbox).
    let mut feed = bus.subscribe("vigil.events.>").await.unwrap();
    let direct = Uuid::new_v4();
    for subject in [
        "vigil.cmd.incidents.report".to_owned(),
        runtime::nats_sites::command_subject("other", "incidents", "report"),
    ] {
        let r = bus
            .request(subject.clone(), command(direct, SCOPE, SCOPE, 7).into())
            .await;
        assert!(
            matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
            "{subject}: {r:?}"
        );
    }

    // (d) Accepted at the site but refused by the centre (a report for another country):
    // recorded as refused with the centre's reason, readable by id; the queue goes on.
    let out_of_scope = Uuid::new_v4();
    let a = submit(&bus, out_of_scope, SCOPE, "IQ", 10).await;
    assert_eq!(a["ok"]["accepted_at_site"], true, "{a}");
    let after = accepted(&bus, 11).await;
    let s = drained(&bus, 60, &site).await;
    assert_eq!(s["refused"], 1, "{s}");
    let refused = status(&bus, out_of_scope).await;
    assert_eq!(refused["ok"]["state"]["state"], "refused", "{refused}");
    assert!(
        ["forbidden", "not_found"]
            .contains(&refused["ok"]["state"]["refusal"]["code"].as_str().unwrap()),
        "{refused}"
    );
    let done = status(&bus, after).await;
    assert_eq!(done["ok"]["state"]["state"], "forwarded", "{done}");
    assert_eq!(done["ok"]["state"]["outcome"]["duplicate"], false, "{done}");
    assert!(
        in_log(&c, &[out_of_scope]).await.is_empty(),
        "nothing stored for a refusal"
    );
    assert!(
        in_log(&c, &[direct]).await.is_empty(),
        "nothing stored past the relay"
    );
    let leaked = tokio::time::timeout(Duration::from_secs(1), feed.next()).await;
    assert!(
        leaked.is_err(),
        "the centre's events stay at the centre: {leaked:?}"
    );
    ids.push(after);
    let unknown = status(&bus, Uuid::new_v4()).await;
    assert_eq!(unknown["error"]["code"], "not_found", "{unknown}");

    // (b) Cut the link while submitting: the centre's nats-server is killed with -9 (twice;
    // `vigil up` starts it again on the same port). Every item the site accepted lands once,
    // in the site's order.
    let pid_file = c.data_dir().join("nats/nats-server.pid");
    let kill_centre_nats = || {
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let killed = Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    let (mut saw_down, mut most_pending) = (false, 0);
    for i in 0..40 {
        if i == 5 || i == 25 {
            kill_centre_nats();
        }
        ids.push(accepted(&bus, 100 + i).await);
        let s = state(&bus).await;
        saw_down |= s["link"]["up"] == false;
        most_pending = most_pending.max(s["pending"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(saw_down, "the site saw its link go down");
    assert!(most_pending > 1, "items waited at the site during the cut");
    let s = drained(&bus, 120, &site).await;
    assert_eq!(s["forwarded"].as_u64().unwrap(), ids.len() as u64, "{s}");
    assert_once_in_order(&c, &ids, "kabul").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_killed_with_items_pending_forwards_each_once_after_a_restart() {
    let (mut c, leaf) = centre().await;
    let temp = tempfile::tempdir().unwrap();
    let mut site = Site::issue_and_start(&c, &leaf, "herat", temp.path());
    let bus = site.client().await;
    let first = accepted(&bus, 0).await;
    drained(&bus, 60, &site).await;

    // A second `vigil site` on the same data stops before it touches the running one.
    let second = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args([
            "site", "--name", "herat", "--scope", SCOPE, "--centre", &leaf,
        ])
        .arg("--credentials")
        .arg(&site.creds)
        .args(["--listen", &site.listen, "--data-dir"])
        .arg(&site.dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{said}");
    assert!(said.contains("another `vigil site`"), "{said}");
    assert_eq!(
        state(&bus).await["link"]["up"],
        true,
        "the first one runs on"
    );

    // (c) The centre is down: items wait at the site; the site is killed with -9.
    c.stop().await;
    let mut ids = vec![first];
    for i in 1..11 {
        ids.push(accepted(&bus, i).await);
    }
    let s = state(&bus).await;
    assert_eq!(s["pending"], 10, "{s}");
    assert_eq!(s["link"]["up"], false, "{s}");
    drop(bus);
    site.kill9();
    site.start();
    let bus = site.client().await;
    let s = state(&bus).await;
    assert_eq!(s["pending"], 10, "accepted items survive kill -9: {s}");
    c.up_again().await;
    c.ready().await;
    drained(&bus, 120, &site).await;

    // Killed again while it is forwarding: some items may have reached the centre without
    // their answer being recorded; they are sent again and counted once.
    for i in 11..41 {
        ids.push(accepted(&bus, i).await);
    }
    drop(bus);
    site.kill9();
    site.start();
    let bus = site.client().await;
    let s = drained(&bus, 120, &site).await;
    assert_eq!(s["forwarded"], 41, "{s}");
    assert_once_in_order(&c, &ids, "herat").await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_site_is_refused_and_cannot_connect_again() {
    let (mut c, leaf) = centre().await;
    let temp = tempfile::tempdir().unwrap();
    let site = Site::issue_and_start(&c, &leaf, "mazar", temp.path());
    let bus = site.client().await;
    let ok = accepted(&bus, 0).await;
    drained(&bus, 60, &site).await;

    // (e) Revoked: what the site still sends over its open link is refused and recorded so.
    let centre_log = c.data_dir().join("nats/nats-server.log");
    let log_before = std::fs::read_to_string(&centre_log).unwrap().len();
    let out = c.vigil(&["site-user", "revoke", "mazar"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let late = accepted(&bus, 1).await;
    let refused = testkit::eventually(Duration::from_secs(60), || async {
        let s = status(&bus, late).await;
        (s["ok"]["state"]["state"] == "refused").then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("the late item is refused; log:\n{}", site.log()));
    assert_eq!(
        refused["ok"]["state"]["refusal"]["code"], "forbidden",
        "{refused}"
    );
    assert!(in_log(&c, &[late]).await.is_empty());
    assert_eq!(in_log(&c, &[ok]).await.len(), 1);

    // Its link is cut (the site's nats-server killed; the site starts it again): the
    // centre no longer lets it log in, so its pings find no route to the centre.
    let pid = std::fs::read_to_string(site.dir.join("nats/nats-server.pid")).unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
    let down = testkit::eventually(Duration::from_secs(60), || async {
        let bus = site.client().await;
        let s = state(&bus).await;
        let err = s["link"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (s["link"]["up"] == false && err.contains("not reachable")).then_some(s)
    })
    .await;
    assert!(
        down.is_some(),
        "the revoked site stays cut off; log:\n{}",
        site.log()
    );
    // Still cut off a while later: the server keeps refusing its login.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let bus = site.client().await;
    let s = state(&bus).await;
    assert_eq!(s["link"]["up"], false, "{s}");
    let since_revoked = std::fs::read_to_string(&centre_log).unwrap()[log_before..].to_owned();
    assert!(
        since_revoked.contains("authentication error - User \"site_mazar\""),
        "the centre refused the revoked site's login: {since_revoked}"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_the_site_order_through_a_centre_killed_mid_drain() {
    let (mut c, leaf) = centre().await;
    let temp = tempfile::tempdir().unwrap();
    let site = Site::issue_and_start(&c, &leaf, "jalalabad", temp.path());
    let bus = site.client().await;
    let first = accepted(&bus, 0).await;
    drained(&bus, 60, &site).await;

    // A batch larger than the relay takes is refused whole: nothing of it is carried out.
    let extra = Uuid::new_v4();
    let too_many: Vec<Value> = (0..=site::relay::MAX_BATCH)
        .map(|i| {
            let id = if i == 0 { extra } else { Uuid::new_v4() };
            let payload: Value = serde_json::from_slice(&command(id, SCOPE, SCOPE, i)).unwrap();
            json!({"service": "incidents", "command": "report", "payload": payload})
        })
        .collect();
    let refused = ask(
        &bus,
        runtime::nats_sites::batch_subject("jalalabad"),
        serde_json::to_vec(&too_many).unwrap(),
    )
    .await;
    assert_eq!(refused["error"]["code"], "invalid", "{refused}");
    assert!(in_log(&c, &[extra]).await.is_empty());

    // More items than two batches hold wait while the centre is down.
    c.stop().await;
    let mut ids = vec![first];
    for i in 1..=2 * site::forward::BATCH_ITEMS + 50 {
        ids.push(accepted(&bus, i).await);
    }
    assert_eq!(
        state(&bus).await["pending"],
        ids.len() as u64 - 1,
        "nothing forwarded while the centre is down"
    );

    // The centre returns; once the first batch is answered it is killed with -9 (the relay
    // is then in the middle of the next batch: some of its items may be in the log without
    // their answer reaching the site), and started again.
    c.up_again().await;
    let moving = testkit::eventually(Duration::from_secs(120), || async {
        let s = state(&bus).await;
        (s["forwarded"].as_u64().unwrap() > 1).then_some(s)
    })
    .await
    .unwrap_or_else(|| panic!("the first batch is answered; log:\n{}", site.log()));
    assert!(
        moving["pending"].as_u64().unwrap() > 0,
        "killed while items are pending: {moving}"
    );
    c.kill9().await;
    c.up_again().await;
    c.ready().await;
    let s = drained(&bus, 180, &site).await;
    assert_eq!(s["forwarded"].as_u64().unwrap(), ids.len() as u64, "{s}");
    assert_eq!(s["refused"], 0, "{s}");
    assert_once_in_order(&c, &ids, "jalalabad").await;
    c.stop().await;
}
