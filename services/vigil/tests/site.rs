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

use std::process::{Command, Stdio};
use std::time::Duration;

use async_nats::Client;
use common::site::{SCOPE, Site, centre, cli_store};
use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

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
    let store = cli_store(c, "site-test-log").await;
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

    // The link carries nothing else: a command on another site's subject finds no route to
    // the centre, a command straight to a service is answered by the site itself (a
    // forwardable one goes into the outbox, as from the site's gateway; another is refused
    // there), and the centre's event feed does not reach the site (the site's NATS user may
    // publish only its own subjects and read only its inbox and its scope's feed): what the
    // site's bus carries on `vigil.events` is its mirror's.
    let mut feed = bus.subscribe("vigil.events.>").await.unwrap();
    let direct = Uuid::new_v4();
    let subject = runtime::nats_sites::command_subject("other", "incidents", "report");
    let r = bus
        .request(subject.clone(), command(direct, SCOPE, SCOPE, 7).into())
        .await;
    assert!(
        matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{subject}: {r:?}"
    );
    let verify = ask(
        &bus,
        "vigil.cmd.incidents.verify".to_owned(),
        command(direct, SCOPE, SCOPE, 7),
    )
    .await;
    assert_eq!(verify["error"]["code"], "forbidden", "{verify}");
    assert!(
        verify["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs the centre"),
        "{verify}"
    );

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
    while let Ok(Some(msg)) = tokio::time::timeout(Duration::from_secs(1), feed.next()).await {
        let events: Vec<events::RecordedEvent> = serde_json::from_slice(&msg.payload).unwrap();
        for e in events {
            assert_eq!(
                e.data["country"], SCOPE,
                "only the mirror's events of the site's scope: {e:?}"
            );
            assert!(![direct, out_of_scope].contains(&e.id), "{e:?}");
        }
    }
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
    // The link may be down for less than one look at the state (the forwarder finds it back
    // within a second): a change of `since` while it is up again shows it went down too.
    let up_since = state(&bus).await["link"]["since"].clone();
    let (mut saw_down, mut most_pending) = (false, 0);
    for i in 0..40 {
        if i == 5 || i == 25 {
            kill_centre_nats();
        }
        ids.push(accepted(&bus, 100 + i).await);
        let s = state(&bus).await;
        saw_down |= s["link"]["up"] == false || s["link"]["since"] != up_since;
        most_pending = most_pending.max(s["pending"].as_u64().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A batch in flight when the centre's server died is given up only after its timeout
    // (`site::forward`), so the site may notice the cut after the submissions ended.
    saw_down = saw_down
        || testkit::eventually(Duration::from_secs(30), || async {
            let s = state(&bus).await;
            (s["link"]["up"] == false || s["link"]["since"] != up_since).then_some(())
        })
        .await
        .is_some();
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

/// `vigil --data-dir <site dir> user add NAME --role ROLE --scope AF` at the site, with the
/// password "<NAME> password" on stdin.
fn add_site_user(site: &Site, name: &str, role: &str) {
    add_site_user_with(site, name, role, &[]);
}

/// [`add_site_user`] with more flags (`--agency`).
fn add_site_user_with(site: &Site, name: &str, role: &str, more: &[&str]) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("--data-dir")
        .arg(&site.dir)
        .args(["user", "add", name, "--role", role, "--scope", SCOPE])
        .args(more)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{name} password").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Site {
    /// One JSON request to the site's gateway.
    async fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> testkit::http::Answer {
        testkit::http::json(self.http, method, path, token, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log()))
    }

    /// Logs `user` in at the site's gateway; its token.
    async fn login(&self, user: &str) -> String {
        let body = json!({"username": user, "password": format!("{user} password")});
        let a = testkit::eventually(Duration::from_secs(30), || async {
            let a = testkit::http::json(self.http, "POST", "/api/v1/auth/login", None, Some(&body))
                .await
                .ok()?;
            (a.status == 200).then_some(a)
        })
        .await
        .unwrap_or_else(|| panic!("{user} logs in at the site; log:\n{}", self.log()));
        a.json()["token"].as_str().unwrap().to_owned()
    }

    /// The site screen's address as `vigil site` printed it.
    fn screen_url(&self) -> String {
        let printed = std::fs::read_to_string(self.dir.join("site.stdout.log")).unwrap();
        printed
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("site screen    : "))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("vigil site printed its screen's address: {printed}"))
            .to_owned()
    }
}

fn report_body(id: Uuid, title: &str) -> Value {
    json!({"id": id, "country": SCOPE, "category": "crime", "severity": 2, "title": title,
           "occurred_at": testkit::recent()})
}

/// The site's state at `GET /api/v1/site/state` once `ok` holds of it.
async fn site_state(site: &Site, token: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let got = testkit::eventually(Duration::from_secs(60), || async {
        let a = site
            .http("GET", "/api/v1/site/state", Some(token), None)
            .await;
        (a.status == 200 && ok(&a.json())).then(|| a.json())
    })
    .await;
    got.unwrap_or_else(|| panic!("{what}; log:\n{}", site.log()))
}

/// What the site screen's panel shows, read in one round trip.
const READ_SITE_PANEL: &str = r#"
const p = document.querySelector('[data-testid="site-panel"]');
return p ? {site: p.dataset.site, link: p.dataset.link, pending: Number(p.dataset.pending),
            text: p.textContent, font_px: parseFloat(getComputedStyle(p).fontSize)} : null;
"#;

/// The field page's reports: id, state, text, and the site holding it if any.
const READ_FIELD: &str = r#"
return {
  login_visible: !document.getElementById("login-section").hidden,
  reports: [...document.querySelectorAll('[data-testid="report"]')].map(li => ({
    id: li.dataset.id, state: li.dataset.state, at_site: li.dataset.atSite || null,
    text: li.textContent })),
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_gateway_serves_its_own_users_and_answers_writes_pending_at_site() {
    let (mut c, leaf) = centre().await;
    let temp = tempfile::tempdir().unwrap();
    let site = Site::issue_and_start(&c, &leaf, "jalalabad", temp.path());
    let bus = site.client().await;
    // The site's own users, in the site's data directory.
    add_site_user(&site, "amina", "field_officer");
    add_site_user(&site, "omar", "duty_officer");
    let amina = site.login("amina").await;
    let omar = site.login("omar").await;

    // Without the centre's events (no mirror yet, or not caught up) the site says what it
    // waits for; it takes writes all the same.
    let ready = site.http("GET", "/readyz", None, None).await.json();
    if ready["ready"] != true {
        assert!(
            ready["waiting"]
                .as_str()
                .is_some_and(|w| w.contains("waiting for the centre's events")),
            "{ready}"
        );
    }
    let s = site_state(&site, &amina, "the link comes up", |s| {
        s["link"]["up"] == true
    })
    .await;
    assert_eq!(s["site"], "jalalabad", "{s}");
    assert_eq!(s["scope"], SCOPE, "{s}");
    assert!(s["link"]["for_seconds"].is_u64(), "{s}");

    // A report at the site: 202, pending at site; the same id again is the same item.
    let first = Uuid::new_v4();
    let body = report_body(first, "Checkpoint closed at the bridge");
    let a = site
        .http("POST", "/api/v1/incidents", Some(&amina), Some(&body))
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let pending = a.json();
    assert_eq!(pending["pending_at_site"], true, "{pending}");
    assert_eq!(pending["site"], "jalalabad", "{pending}");
    assert_eq!(pending["id"], first.to_string(), "{pending}");
    assert_eq!(pending["command_id"], first.to_string(), "{pending}");
    assert_eq!(pending["duplicate"], false, "{pending}");
    let again = site
        .http("POST", "/api/v1/incidents", Some(&amina), Some(&body))
        .await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["duplicate"], true, "{}", again.body);
    assert_eq!(again.json()["outbox_position"], pending["outbox_position"]);

    // Forwarded to the real centre once the link is up: in its log once, from the site.
    let s = drained(&bus, 60, &site).await;
    assert_eq!(s["forwarded"], 1, "{s}");
    assert_once_in_order(&c, &[first], "jalalabad").await;
    let s = site_state(&site, &amina, "nothing waits", |s| s["pending"] == 0).await;
    assert_eq!(s["forwarded"], 1, "{s}");

    // The loop closes at the site: the centre's event comes back through the mirror of the
    // site's scope, the site is ready, and its own board shows the report it forwarded.
    let board = testkit::eventually(Duration::from_secs(60), || async {
        let a = site
            .http("GET", "/api/v1/boards/situation", Some(&omar), None)
            .await;
        (a.status == 200 && a.body.contains("Checkpoint closed at the bridge")).then_some(a)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "the site's board shows the forwarded report; log:\n{}",
            site.log()
        )
    });
    let board = board.json();
    assert_eq!(board["countries"]["AF"]["incidents"]["open"], 1, "{board}");
    let ready = site.http("GET", "/readyz", None, None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);

    // Refused at the site with the reason, nothing kept: a command a site does not forward
    // (a read: the site has no services), and a duty officer's report (a site forwards only
    // its field officers' commands).
    let list = site
        .http("GET", "/api/v1/incidents", Some(&amina), None)
        .await;
    assert_eq!(list.status, 403, "{}", list.body);
    assert!(list.body.contains("needs the centre"), "{}", list.body);
    assert!(list.body.contains("incidents.report"), "{}", list.body);
    let by_omar = Uuid::new_v4();
    let refused = site
        .http(
            "POST",
            "/api/v1/incidents",
            Some(&omar),
            Some(&report_body(by_omar, "Reported by the duty officer")),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("field officers"), "{}", refused.body);
    assert_eq!(status(&bus, by_omar).await["error"]["code"], "not_found");

    // The centre's gateway is not at a site: 404; and it still carries out its own writes
    // (the site does not hear the centre's commands).
    let centre_token = gateway::auth::Auth::open(c.data_dir(), vec![])
        .unwrap()
        .issue(
            "fso",
            gateway::auth::Role::FieldOfficer,
            Some(SCOPE.into()),
            None,
            Duration::from_secs(600),
            "session",
        )
        .unwrap()
        .0;
    let at_centre = c
        .call("GET", "/api/v1/site/state", &centre_token, None)
        .await;
    assert_eq!(at_centre.status, 404, "{}", at_centre.body);
    let direct = Uuid::new_v4();
    let made = c
        .call(
            "POST",
            "/api/v1/incidents",
            &centre_token,
            Some(&report_body(direct, "At the centre")),
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);

    // The site screen and the field page, in a browser, with the centre gone: the link
    // shows down and what waits; a report from the field page is "pending at site".
    let (_driver, client) = common::browser::browser(
        &temp.path().join("chromium-profile"),
        &temp.path().join("chromedriver.log"),
    )
    .await;
    let screen = site.screen_url();
    client.goto(&screen).await.unwrap();
    let up = common::browser::wait_js(
        &client,
        Duration::from_secs(30),
        "the site screen shows the link up",
        READ_SITE_PANEL,
        vec![],
        |p| p["link"] == "up" && p["pending"] == 0,
    )
    .await;
    assert_eq!(up["site"], "jalalabad", "{up}");
    assert!(
        up["font_px"].as_f64().unwrap() >= 24.0,
        "readable across a room: {up}"
    );
    c.stop().await;
    let cut = Uuid::new_v4();
    let a = site
        .http(
            "POST",
            "/api/v1/incidents",
            Some(&amina),
            Some(&report_body(cut, "Road blocked by a landslide")),
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let down = common::browser::wait_js(
        &client,
        Duration::from_secs(60),
        "the site screen shows the link down and one item waiting",
        READ_SITE_PANEL,
        vec![],
        |p| p["link"] == "down" && p["pending"] == 1,
    )
    .await;
    let text = down["text"].as_str().unwrap();
    assert!(text.contains("LINK TO CENTRE DOWN"), "{down}");
    assert!(text.contains("1 item waits"), "{down}");

    let base = format!("http://{}", site.http);
    client.goto(&format!("{base}/field/")).await.unwrap();
    common::browser::wait_js(
        &client,
        Duration::from_secs(15),
        "the login form",
        READ_FIELD,
        vec![],
        |p| p["login_visible"] == true,
    )
    .await;
    common::browser::js(
        &client,
        r#"document.getElementById("username").value = "amina";
           document.getElementById("password").value = "amina password";
           document.getElementById("login").requestSubmit(); return null;"#,
        vec![],
    )
    .await;
    common::browser::wait_js(
        &client,
        Duration::from_secs(15),
        "logged in",
        READ_FIELD,
        vec![],
        |p| p["login_visible"] == false,
    )
    .await;
    common::browser::js(
        &client,
        r#"const set = (id, v) => { const e = document.getElementById(id); e.value = v;
             e.dispatchEvent(new Event("input", {bubbles: true}));
             e.dispatchEvent(new Event("change", {bubbles: true})); };
           set("category", "road_traffic"); set("severity", "3");
           set("title", "Truck overturned at the pass");
           document.getElementById("report-form").requestSubmit(); return null;"#,
        vec![],
    )
    .await;
    let page = common::browser::wait_js(
        &client,
        Duration::from_secs(30),
        "the report shows pending at the site",
        READ_FIELD,
        vec![],
        |p| {
            p["reports"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["at_site"] == "jalalabad"))
        },
    )
    .await;
    let shown = page["reports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["at_site"] == "jalalabad")
        .unwrap();
    assert!(
        shown["text"]
            .as_str()
            .unwrap()
            .contains("Pending at site jalalabad"),
        "{page}"
    );
    let s = site_state(&site, &amina, "both wait at the site", |s| {
        s["pending"] == 2
    })
    .await;
    assert_eq!(s["link"]["up"], false, "{s}");
    let _ = client.close().await;
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

    // More items than eight batches hold wait while the centre is down (a batch of reports
    // is one fsync at the centre: fewer would be forwarded before the kill below).
    c.stop().await;
    let mut ids = vec![first];
    for i in 1..=8 * site::forward::BATCH_ITEMS + 50 {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_that_reached_a_site_is_acknowledged_there_through_a_cut_and_forwarded() {
    let (mut c, leaf) = centre().await;
    c.import_lines(&[
        json!({"kind": "agency", "agency": "unicef", "name": "UNICEF", "countries": [SCOPE, "SO"]}),
    ]);
    let temp = tempfile::tempdir().unwrap();
    let site = Site::issue_and_start(&c, &leaf, "herat", temp.path());
    let bus = site.client().await;
    add_site_user_with(
        &site,
        "farid",
        "agency_focal_point",
        &["--agency", "unicef"],
    );
    add_site_user(&site, "omar", "duty_officer");
    let (farid, omar) = (site.login("farid").await, site.login("omar").await);
    let duty = gateway::auth::Auth::open(c.data_dir(), vec![])
        .unwrap()
        .issue(
            "duty.ana",
            gateway::auth::Role::DutyOfficer,
            None,
            None,
            Duration::from_secs(600),
            "session",
        )
        .unwrap()
        .0;

    // Two alerts that ask UNICEF for an acknowledgement: to the site's country, and to another.
    let issue = |country: &'static str, title: &'static str| {
        let (c, duty) = (&c, &duty);
        async move {
            let id = Uuid::new_v4();
            let body = json!({"id": id, "title": title, "body": "Stay indoors.",
                "severity": "medium", "audience": {"country": country}, "requires_ack": true,
                "ack_deadline": "2099-01-01T00:00:00Z"});
            let a = testkit::eventually(Duration::from_secs(30), || async {
                let a = c
                    .call("POST", "/api/v1/broadcasts", duty, Some(&body))
                    .await;
                (a.status != 503).then_some(a)
            })
            .await
            .unwrap();
            assert_eq!(a.status, 201, "{}", a.body);
            id
        }
    };
    let here = issue(SCOPE, "Curfew in Herat from 18:00").await;
    let elsewhere = issue("SO", "Curfew in Mogadishu").await;
    // The alert reaches the site's board (its mirror) before the link is cut; the other not.
    let board = testkit::eventually(Duration::from_secs(60), || async {
        let a = site
            .http("GET", "/api/v1/boards/situation", Some(&omar), None)
            .await;
        (a.status == 200 && a.body.contains("Curfew in Herat")).then_some(a.body)
    })
    .await
    .unwrap_or_else(|| panic!("the alert reaches the site; log:\n{}", site.log()));
    assert!(!board.contains("Curfew in Mogadishu"), "{board}");

    // The link is cut (the centre is down): the focal point acknowledges at the site.
    c.stop().await;
    let ack = |id: Uuid| {
        let (site, farid) = (&site, &farid);
        async move {
            site.http(
                "POST",
                &format!("/api/v1/broadcasts/{id}/ack"),
                Some(farid),
                Some(&json!({})),
            )
            .await
        }
    };
    let a = ack(here).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.json()["pending_at_site"], true, "{}", a.body);
    let here_cmd: Uuid = a.json()["command_id"].as_str().unwrap().parse().unwrap();
    // An acknowledgement of an alert that never reached the site is taken too (the site
    // cannot know), and refused by the centre; a field officer's is refused at the site.
    let b = ack(elsewhere).await;
    assert_eq!(b.status, 202, "{}", b.body);
    let elsewhere_cmd: Uuid = b.json()["command_id"].as_str().unwrap().parse().unwrap();
    add_site_user(&site, "amina", "field_officer");
    let amina = site.login("amina").await;
    let by_officer = site
        .http(
            "POST",
            &format!("/api/v1/broadcasts/{here}/ack"),
            Some(&amina),
            Some(&json!({})),
        )
        .await;
    assert_eq!(by_officer.status, 403, "{}", by_officer.body);

    // The link returns: the acknowledgement is the centre's, once, from the site.
    c.up_again().await;
    c.ready().await;
    let s = drained(&bus, 120, &site).await;
    assert_eq!(
        (s["forwarded"].clone(), s["refused"].clone()),
        (json!(1), json!(1)),
        "{s}"
    );
    let forwarded = status(&bus, here_cmd).await;
    assert_eq!(
        forwarded["ok"]["state"]["state"], "forwarded",
        "{forwarded}"
    );
    let refused = status(&bus, elsewhere_cmd).await;
    assert_eq!(refused["ok"]["state"]["state"], "refused", "{refused}");
    assert_eq!(
        refused["ok"]["state"]["refusal"]["code"], "not_found",
        "{refused}"
    );
    let view = c.get(&format!("/api/v1/broadcasts/{here}"), &duty).await;
    assert_eq!(view["agencies"]["unicef"]["ack"]["by"], "farid", "{view}");
    // In the log: the acknowledgement of the alert that reached the site, once, from the
    // site; none of the other.
    let store = cli_store(&c, "site-test-acks").await;
    let acknowledgements = |id: Uuid| {
        let store = &store;
        async move {
            let (events, _) = store
                .read_whole_stream(
                    &events::domain::broadcast::stream_for(id),
                    Duration::from_secs(5),
                )
                .await
                .unwrap();
            events
                .into_iter()
                .filter(|e| e.event_type == "BroadcastAcknowledged")
                .collect::<Vec<_>>()
        }
    };
    let acks = acknowledgements(here).await;
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].meta.source.as_deref(), Some("site:herat"));
    let other = acknowledgements(elsewhere).await;
    assert!(other.is_empty(), "{other:?}");
    c.stop().await;
}
