//! The pages in a real browser, against the real binary: the wall screen, and the field
//! page (offline queue: reports saved on the phone while the centre is down arrive exactly
//! once when it is back, and show on the wall screen).
//!
//! Debian's Chromium, driven headless through `chromedriver` (WebDriver, the `fantoccini`
//! crate), opens the page that `vigil up` serves at `/` and watches it as a duty officer would:
//! it goes live; an incident (and a security level) appended through the store show within
//! 2 s; freezing the centre (SIGSTOP: socket open, no heartbeats) turns it STALE and thawing it
//! brings it back; stopping the centre (SIGTERM) turns it offline with the STALE banner;
//! starting the centre again brings it back to live by itself, without a reload, with the
//! incident still there. Screenshots are left in `target/`: `wall-screen.png` (live),
//! `wall-screen-stale.png` and `wall-screen-offline.png`.
//!
//! The operations console too: a duty officer marks twenty people safe and the wall screen
//! follows; and broadcasts under the two-person rule — duty officer A issues a high,
//! all-agency EXERCISE broadcast in the console (it awaits approval there and on the wall
//! screen), A's own Approve is refused in words that say what to do, duty officer B approves
//! it in another window, the list and the wall screen show it live with EXERCISE on screen,
//! WFP's focal point acknowledges it in the console (the wall counts it), and A cancels it with
//! a reason (`console-broadcast-refused.png`, `console-broadcast-acknowledged.png`,
//! `wall-screen-broadcast.png`).
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install -y chromium chromium-driver`;
//! `ops/test` installs them). Without them this test fails and says so: it never skips.
//! `VIGIL_CHROMIUM` and `VIGIL_CHROMEDRIVER` point at other binaries.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::browser::{browser, js, target_dir, wait_js};
use fantoccini::Client;
use futures::FutureExt;
use serde_json::{Value, json};

/// What the page shows, read in one WebDriver round trip through its `data-testid`s.
const READ_PAGE: &str = r#"
const q = (id) => document.querySelector(`[data-testid="${id}"]`);
const banner = q("stale-banner");
return {
  state: q("status")?.dataset.state ?? null,
  age: q("status")?.dataset.age ?? null,
  open: q("counter-open_incidents")?.dataset.value ?? null,
  timeline: q("timeline")?.textContent ?? null,
  position: q("position")?.dataset.position ?? null,
  banner: banner && banner.offsetHeight > 0 ? banner.textContent : null,
  level5plus: q("counter-countries_level_5_plus")?.dataset.value ?? null,
  so_fill: document.querySelector("path.cc-SO")?.getAttribute("fill") ?? null,
  sev4_markers: document.querySelectorAll('[data-testid="marker"][data-severity="4"]').length,
  mark: window.__wallScreenTestMark ?? null,
  map_view: q("map")?.dataset.view ?? null,
};
"#;

// The shared test centre (`vigil up`) with its data in a directory of the test's, so a
// restart is the same centre; and this file's wall-screen address and appends.
common::centre_type!();

impl Centre {
    /// Starts `vigil up` on `data_dir` and waits until it is ready.
    async fn start_in(data_dir: &Path) -> Self {
        Self(common::up().data_dir(data_dir).start().await)
    }

    /// Starts `vigil up` again after [`testkit::centre::Centre::stop`]; waits only for its
    /// banner and its HTTP port (the page must come back by itself).
    async fn start(&mut self) {
        self.0.up_again().await;
    }

    fn stderr(&self) -> String {
        self.up_stderr()
    }

    /// The wall-screen address `vigil up` printed: it carries a wall_screen token.
    fn url(&self) -> String {
        let url = self
            .banner()
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("wall screen    : "))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .expect("vigil up printed the wall screen's address");
        assert!(
            url.starts_with(&format!(
                "http://127.0.0.1:{}/?kiosk&token=",
                self.addr().port()
            )),
            "{url}"
        );
        url
    }

    /// `vigil append` of one event; returns the position the store acknowledged.
    fn append(&self, stream: &str, event_type: &str, v: u32, data: &Value) -> u64 {
        let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args([
                "append",
                "--nats-url",
                self.nats_url(),
                "--stream",
                stream,
                "--type",
                event_type,
                "--v",
                &v.to_string(),
                "--actor",
                "wall-screen-test",
                "--data",
                &data.to_string(),
            ])
            // The data directory holds the NATS credentials `vigil up` generated.
            .arg("--data-dir")
            .arg(self.data_dir())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "vigil append failed: {}{}",
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        // "appended <id> to <stream> at position N (stream version V)"
        stdout
            .split("at position ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no position in {stdout:?}"))
    }
}

async fn read_page(client: &Client) -> Value {
    client.execute(READ_PAGE, vec![]).await.unwrap()
}

/// Polls the page every 50 ms until `ok` holds; returns how long it took, or panics with
/// `what` and the last thing the page showed.
async fn wait_for(
    client: &Client,
    timeout: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let page = read_page(client).await;
        if ok(&page) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}; the page shows {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn state(page: &Value) -> &str {
    page["state"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_screen_goes_live_shows_an_incident_goes_stale_and_recovers_by_itself() {
    in_browser("wall-screen", vec![], scenario).await;
}

/// Runs `scenario` in a fresh headless Chromium against `vigil up` on a fresh data directory
/// holding `users` (the centre creates no admin when users exist), with a scratch directory
/// for its files. On a failure it saves a screenshot as `<name>-failed.png` in the target
/// directory, for people to look at, and prints what `vigil up` printed.
async fn in_browser(
    name: &str,
    users: Vec<gateway::auth::User>,
    scenario: impl AsyncFnOnce(&Client, &mut Centre, &Path),
) {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    if !users.is_empty() {
        let mut store = gateway::auth::Users::load(&data_dir).unwrap();
        for user in users {
            store.put(user).unwrap();
        }
    }
    let (_driver, client) = browser(
        &dir.path().join("chromium-profile"),
        &dir.path().join("chromedriver.log"),
    )
    .await;
    let mut centre = Centre::start_in(&data_dir).await;
    let outcome = AssertUnwindSafe(scenario(&client, &mut centre, dir.path()))
        .catch_unwind()
        .await;
    if outcome.is_err()
        && let Ok(png) = client.screenshot().await
    {
        let _ = std::fs::write(target_dir().join(format!("{name}-failed.png")), png);
    }
    let _ = client.close().await;
    if let Err(panic) = outcome {
        eprintln!(
            "vigil up stdout:\n{}\nvigil up stderr:\n{}",
            centre.banner(),
            centre.stderr()
        );
        std::panic::resume_unwind(panic);
    }
}

/// Everything the page loaded, in bytes as sent over the wire.
async fn page_weight(client: &Client) -> u64 {
    let weight = js(
        client,
        "const n = performance.getEntriesByType('navigation')[0];\
         return performance.getEntriesByType('resource')\
         .reduce((sum, e) => sum + e.transferSize, n.transferSize);",
        vec![],
    )
    .await;
    weight.as_u64().unwrap_or(0)
}

/// A user of the pages, with `password`.
fn user(
    username: &str,
    role: gateway::auth::Role,
    scope: Option<&str>,
    agency: Option<&str>,
    password: &str,
) -> gateway::auth::User {
    gateway::auth::User {
        username: username.into(),
        role,
        scope: scope.map(Into::into),
        agency: agency.map(Into::into),
        password_hash: gateway::auth::hash_password(password).unwrap(),
    }
}

async fn scenario(client: &Client, centre: &mut Centre, _: &Path) {
    // A 1080p wall screen: the viewport (not the window) is 1920×1080.
    let chrome = client
        .execute(
            "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];",
            vec![],
        )
        .await
        .unwrap();
    let extra = |i: usize| u32::try_from(chrome[i].as_u64().unwrap_or(0)).unwrap_or(0);
    client
        .set_window_size(1920 + extra(0), 1080 + extra(1))
        .await
        .unwrap();

    // (a) The page loads from the binary and goes live.
    let opened = Instant::now();
    client.goto(&centre.url()).await.unwrap();
    let to_live = wait_for(client, Duration::from_secs(15), "the page goes live", |p| {
        state(p) == "live"
    })
    .await;
    eprintln!(
        "wall screen: live {:?} after navigation started ({to_live:?} of polling)",
        opened.elapsed()
    );
    let page = read_page(client).await;
    assert_eq!(
        page["open"], "0",
        "an empty log has no open incident: {page:#}"
    );
    assert!(
        page["banner"].is_null(),
        "no STALE banner while live: {page:#}"
    );
    // Everything the page loaded came from the centre itself: no CDN, no internet.
    let foreign: Vec<Value> = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)\
             .filter(n => new URL(n).origin !== location.origin);",
            vec![],
        )
        .await
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        foreign.is_empty(),
        "the page loaded from elsewhere: {foreign:?}"
    );
    // The page stays small: everything it loaded, as sent over the wire.
    let weight = page_weight(client).await;
    eprintln!("wall screen: page weight {} KiB transferred", weight / 1024);
    assert!(
        weight < 600 * 1024,
        "the page weighs {weight} bytes: keep it under 600 KiB"
    );
    // Marks this page instance: a reload would lose it, so recovery must keep it.
    client
        .execute(
            "window.__wallScreenTestMark = 'same page'; return null;",
            vec![],
        )
        .await
        .unwrap();

    // (b) An incident appended through the store shows within 2 s.
    let title = "Armed clash near Mogadishu airport road";
    let data = json!({
        "country": "SO",
        "category": "armed_conflict",
        "severity": 4,
        "title": title,
        "occurred_at": time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        "location": {"lat": 2.0144, "lon": 45.3047, "accuracy_m": 500.0},
        "duty_station": "mogadishu",
        "reporter": "officer.wallscreen",
    });
    let stream = format!("incident-{}", uuid::Uuid::new_v4());
    let append_started = Instant::now();
    let position = centre.append(&stream, "IncidentReported", 1, &data);
    let append_took = append_started.elapsed();
    let shown = wait_for(
        client,
        Duration::from_secs(2),
        "the appended incident shows on the counter and the timeline",
        |p| p["open"] == "1" && p["timeline"].as_str().is_some_and(|t| t.contains(title)),
    )
    .await;
    eprintln!(
        "wall screen: incident at position {position} shown {shown:?} after `vigil append` \
         returned (the append itself took {append_took:?})"
    );
    let page = read_page(client).await;
    assert_eq!(page["state"], "live", "{page:#}");
    assert_eq!(
        page["position"],
        position.to_string(),
        "the page shows the log position it is at: {page:#}"
    );
    assert_eq!(page["level5plus"], "0", "{page:#}");
    assert!(
        page["timeline"].as_str().unwrap_or("").contains("SO"),
        "the timeline names the country: {page:#}"
    );
    wait_for(
        client,
        Duration::from_secs(2),
        "a severity-4 marker is on the map",
        |p| p["sev4_markers"].as_u64() == Some(1),
    )
    .await;

    // A security level: the country is shaded and counted.
    let level = json!({
        "area": "mogadishu",
        "country": "SO",
        "level": 5,
        "reason": "Attacks on the airport road",
    });
    let level_stream = format!("level-{}", uuid::Uuid::new_v4());
    let position = centre.append(&level_stream, "AreaSecurityLevelSet", 2, &level);
    let shaded = wait_for(
        client,
        Duration::from_secs(2),
        "SO is shaded as level 5 and counted",
        |p| p["level5plus"] == "1" && p["so_fill"] == "#e53935",
    )
    .await;
    eprintln!("wall screen: level 5 for SO shown {shaded:?} after `vigil append` returned");

    // The centre freezes (SIGSTOP): the socket stays open but the heartbeats stop. The page
    // must not go on saying LIVE: after 7 s of silence it shows STALE.
    let frozen_at = Instant::now();
    centre.signal("STOP");
    let went_stale = wait_for(
        client,
        Duration::from_secs(12),
        "the page shows STALE when the heartbeats stop on an open socket",
        |p| state(p) == "stale" && p["banner"].as_str().is_some_and(|b| b.contains("STALE")),
    )
    .await;
    let page = read_page(client).await;
    eprintln!(
        "wall screen: stale with banner {} {went_stale:?} after SIGSTOP",
        page["banner"]
    );
    assert_eq!(
        page["open"], "1",
        "the last known picture stays up: {page:#}"
    );
    let stale = client.screenshot().await.unwrap();
    std::fs::write(target_dir().join("wall-screen-stale.png"), stale).unwrap();
    centre.signal("CONT");
    let thawed = wait_for(
        client,
        Duration::from_secs(15),
        "the page goes live again when the centre resumes",
        |p| state(p) == "live",
    )
    .await;
    eprintln!(
        "wall screen: live again {thawed:?} after SIGCONT ({:?} after SIGSTOP)",
        frozen_at.elapsed()
    );

    // (c) The centre stops: the page says so.
    let stopped_at = Instant::now();
    centre.stop().await;
    let stop_took = stopped_at.elapsed();
    let noticed = wait_for(
        client,
        Duration::from_secs(10),
        "the page shows offline/STALE after the centre stopped",
        |p| {
            matches!(state(p), "offline" | "stale")
                && p["banner"].as_str().is_some_and(|b| b.contains("STALE"))
        },
    )
    .await;
    let page = read_page(client).await;
    eprintln!(
        "wall screen: {} with banner {} {noticed:?} after `vigil up` exited \
         (it exited {stop_took:?} after SIGTERM)",
        state(&page),
        page["banner"],
    );
    assert_eq!(
        page["open"], "1",
        "the last known picture stays up: {page:#}"
    );
    let offline = client.screenshot().await.unwrap();
    std::fs::write(target_dir().join("wall-screen-offline.png"), offline).unwrap();

    // (d) The centre returns: the page goes live again by itself, with the incident.
    let restarted_at = Instant::now();
    centre.start().await;
    let up_took = restarted_at.elapsed();
    let back = wait_for(
        client,
        Duration::from_secs(20),
        "the page goes live again by itself after the centre restarted",
        |p| state(p) == "live",
    )
    .await;
    eprintln!(
        "wall screen: live again {back:?} after `vigil up` was back (its start took {up_took:?})"
    );
    let page = read_page(client).await;
    assert_eq!(
        page["mark"], "same page",
        "recovered without a reload: {page:#}"
    );
    assert_eq!(page["open"], "1", "{page:#}");
    assert!(
        page["timeline"].as_str().is_some_and(|t| t.contains(title)),
        "{page:#}"
    );
    assert_eq!(page["position"], position.to_string(), "{page:#}");
    assert_eq!(page["so_fill"], "#e53935", "{page:#}");
    assert!(
        page["banner"].is_null(),
        "the STALE banner is gone: {page:#}"
    );

    // (e) An event that changes nothing on the board (an audit record) sends no delta, yet
    // the board is as of it: the heartbeat carries the position, and the page shows it.
    let audit = serde_json::json!({"id": uuid::Uuid::new_v4(), "at": "2026-12-06T00:00:00Z",
        "method": "GET", "path": "/wall-screen-test", "code": "forbidden"});
    let quiet = centre
        .append(
            &format!("audit-{}", uuid::Uuid::new_v4()),
            "AccessDenied",
            1,
            &audit,
        )
        .to_string();
    wait_for(
        client,
        Duration::from_secs(6),
        "the page shows the position of an event the board ignores (from a heartbeat)",
        |p| p["position"] == quiet.as_str(),
    )
    .await;

    // (f) A picture for people.
    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = target_dir().join("wall-screen.png");
    std::fs::write(&path, png).unwrap();
    eprintln!(
        "wall screen: screenshot in {} (map view {})",
        path.display(),
        page["map_view"]
    );
}

/// The field page's state, read in one round trip: each report's id, state and text.
const READ_FIELD: &str = r#"
return {
  controlled: !!(navigator.serviceWorker && navigator.serviceWorker.controller),
  login_visible: !document.getElementById("login-section").hidden,
  reports: [...document.querySelectorAll('[data-testid="report"]')].map(li => ({
    id: li.dataset.id, state: li.dataset.state, text: li.textContent })),
};
"#;

async fn read_field(client: &Client) -> Value {
    client.execute(READ_FIELD, vec![]).await.unwrap()
}

async fn wait_field(client: &Client, timeout: Duration, what: &str, ok: impl Fn(&Value) -> bool) {
    let started = Instant::now();
    loop {
        let page = read_field(client).await;
        if ok(&page) {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}; the field page shows {page:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn states(page: &Value) -> Vec<String> {
    page["reports"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| r["state"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Fills the flash-report form and submits it, as an officer would.
async fn submit_report(client: &Client, title: &str) {
    client
        .execute(
            r#"const [title] = arguments;
               const set = (id, v) => { const e = document.getElementById(id); e.value = v;
                 e.dispatchEvent(new Event("input", {bubbles: true}));
                 e.dispatchEvent(new Event("change", {bubbles: true})); };
               set("category", "road_traffic"); set("severity", "3"); set("title", title);
               document.getElementById("report-form").requestSubmit(); return null;"#,
            vec![json!(title)],
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_field_page_keeps_reports_while_the_centre_is_down_and_each_arrives_once() {
    // A field officer of Somalia.
    let fso = user(
        "fso.ali",
        gateway::auth::Role::FieldOfficer,
        Some("SO"),
        None,
        "field password 1",
    );
    in_browser("field-page", vec![fso], field_scenario).await;
}

async fn field_scenario(client: &Client, centre: &mut Centre, _: &Path) {
    let base = format!("http://127.0.0.1:{}", centre.addr().port());
    client.goto(&format!("{base}/field")).await.unwrap();
    assert_eq!(
        client.current_url().await.unwrap().path(),
        "/field/",
        "/field redirects to the page's folder"
    );
    wait_field(
        client,
        Duration::from_secs(10),
        "the login form shows",
        |p| p["login_visible"] == true,
    )
    .await;
    client
        .execute(
            r#"document.getElementById("username").value = "fso.ali";
               document.getElementById("password").value = "field password 1";
               document.getElementById("login").requestSubmit(); return null;"#,
            vec![],
        )
        .await
        .unwrap();
    wait_field(
        client,
        Duration::from_secs(15),
        "logged in, and the service worker controls the page",
        |p| p["login_visible"] == false && p["controlled"] == true,
    )
    .await;
    let weight = page_weight(client).await;
    eprintln!("field page: weight {} KiB transferred", weight / 1024);
    assert!(
        weight < 150 * 1024,
        "the field page weighs {weight} bytes: keep it under 150 KB"
    );

    // The centre goes away; the page still opens (from the service worker) and keeps reports.
    centre.stop().await;
    client.refresh().await.unwrap();
    wait_field(
        client,
        Duration::from_secs(15),
        "the page opens without the centre",
        |p| p["reports"].is_array() && p["login_visible"] == false,
    )
    .await;
    let titles = [
        "Vehicle rollover on the Afgooye road",
        "Minibus collision near K4",
    ];
    // One after the other, as a person does: a Save tapped while the page is still saving
    // the previous report is taken as a double tap and ignored (on a loaded machine the
    // phone's database can take long enough for that).
    let before = read_field(client).await["reports"]
        .as_array()
        .map_or(0, Vec::len);
    for (n, title) in titles.iter().enumerate() {
        submit_report(client, title).await;
        wait_field(
            client,
            Duration::from_secs(15),
            "the report is saved",
            |p| {
                p["reports"]
                    .as_array()
                    .is_some_and(|r| r.len() > before + n)
            },
        )
        .await;
    }
    wait_field(
        client,
        Duration::from_secs(15),
        "both reports are saved on the phone",
        |p| states(p) == ["saved", "saved"],
    )
    .await;
    let saved = read_field(client).await;
    eprintln!("field page: with the centre down: {:?}", states(&saved));

    // The centre comes back: the queue is sent by itself (backoff timer), each report once.
    centre.start().await;
    let started = Instant::now();
    wait_field(
        client,
        Duration::from_secs(90),
        "both reports are acknowledged",
        |p| states(p) == ["acknowledged", "acknowledged"],
    )
    .await;
    eprintln!(
        "field page: both acknowledged {:?} after the centre restarted",
        started.elapsed()
    );
    let page = read_field(client).await;
    let ids: Vec<String> = page["reports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let text = r["text"].as_str().unwrap_or("");
            assert!(
                text.contains("position"),
                "the acknowledgement shows its position: {text}"
            );
            r["id"].as_str().unwrap().to_owned()
        })
        .collect();

    // Each arrived exactly once.
    let auth = gateway::auth::Auth::open(centre.data_dir(), vec![]).unwrap();
    let (duty, _) = auth
        .issue(
            "duty.check",
            gateway::auth::Role::DutyOfficer,
            None,
            None,
            Duration::from_secs(600),
            "session",
        )
        .unwrap();
    let addr = centre.addr();
    let events = testkit::http::all_items(addr, "/api/v1/events?limit=500", &duty)
        .await
        .unwrap();
    for id in &ids {
        let n = events.iter().filter(|e| e["id"] == json!(id)).count();
        assert_eq!(n, 1, "report {id} is in the log {n} times");
    }

    // The wall screen shows them, unverified.
    client.goto(&centre.url()).await.unwrap();
    wait_for(
        client,
        Duration::from_secs(15),
        "the wall screen shows both reports",
        |p| {
            p["open"] == "2"
                && titles
                    .iter()
                    .all(|t| p["timeline"].as_str().is_some_and(|tl| tl.contains(t)))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duty_officer_marks_twenty_people_safe_in_the_console_and_the_wall_screen_follows() {
    let ana = user(
        "duty.ana",
        gateway::auth::Role::DutyOfficer,
        None,
        None,
        "console password 1",
    );
    in_browser("console", vec![ana], console_scenario).await;
}

async fn console_scenario(client: &Client, centre: &mut Centre, dir: &Path) {
    // Reference data: one station in Banaadir with 24 people; an evacuation of the area.
    let mut lines = vec![
        json!({"kind": "area", "area": "SOM-BAN", "country": "SO", "name": "Banaadir"}),
        json!({"kind": "duty_station", "station": "SOM-MGQ", "country": "SO", "area": "SOM-BAN",
               "name": "Mogadishu", "lat": 2.0469, "lon": 45.3182}),
    ];
    for i in 1..=24 {
        lines.push(json!({"kind": "person", "person": format!("P-{i:04}"), "name": format!("Person {i:02}"),
            "agency": "unicef", "nationality": "KE", "duty_station": "SOM-MGQ"}));
    }
    let file = dir.join("reference.jsonl");
    let text: Vec<String> = lines.iter().map(Value::to_string).collect();
    std::fs::write(&file, text.join("\n")).unwrap();
    centre.import(&file);
    let auth = gateway::auth::Auth::open(centre.data_dir(), vec![]).unwrap();
    let (duty, _) = auth
        .issue(
            "duty.api",
            gateway::auth::Role::DutyOfficer,
            None,
            None,
            Duration::from_secs(600),
            "session",
        )
        .unwrap();
    let addr = centre.addr();
    let order = uuid::Uuid::new_v4();
    let deadline = (time::OffsetDateTime::now_utc() + time::Duration::hours(12))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let given = testkit::eventually(Duration::from_secs(15), || {
        let (duty, deadline) = (duty.clone(), deadline.clone());
        async move {
            let body = json!({"id": order, "kind": "evacuation", "country": "SO", "area": "SOM-BAN",
                "scope": "all_personnel", "destination": "Nairobi", "deadline": deadline});
            let a = testkit::http::json(addr, "POST", "/api/v1/orders", Some(&duty), Some(&body))
                .await
                .ok()?;
            let v = testkit::http::json(
                addr,
                "GET",
                &format!("/api/v1/orders/{order}"),
                Some(&duty),
                None,
            )
            .await
            .ok()?
            .json();
            // The relocation service may still be reading the import: then the roll call is short.
            (a.status < 300 && v["tally"]["total"] == 24).then_some(v)
        }
    })
    .await;
    assert!(given.is_some(), "the order's roll call holds the 24 people");

    // The wall screen in one window.
    let wall = client.window().await.unwrap();
    client.goto(&centre.url()).await.unwrap();
    let panel =
        r#"return document.querySelector('[data-testid="panel-orders"]')?.textContent ?? "";"#;
    let read_panel = || async {
        client
            .execute(panel, vec![])
            .await
            .unwrap()
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    let started = Instant::now();
    while !read_panel().await.contains("(0/24)") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the wall screen shows the order: {}",
            read_panel().await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The console in another: log in, open the order, select 20 people, mark them safe.
    let console = client.new_window(true).await.unwrap();
    client.switch_to_window(console.handle).await.unwrap();
    client
        .goto(&format!(
            "http://127.0.0.1:{}/console",
            centre.addr().port()
        ))
        .await
        .unwrap();
    client
        .execute(
            r#"document.getElementById("username").value = "duty.ana";
               document.getElementById("password").value = "console password 1";
               document.getElementById("login").requestSubmit(); return null;"#,
            vec![],
        )
        .await
        .unwrap();
    let q = |js: &'static str| async move { client.execute(js, vec![]).await.unwrap() };
    let started = Instant::now();
    loop {
        let opened = client
            .execute(
                r#"const [id] = arguments;
                   document.querySelector('[data-testid="tab-orders"]')?.click();
                   const row = document.querySelector(`[data-testid="order"][data-id="${id}"]`);
                   if (row) { (row.querySelector("a,button") ?? row).click(); }
                   return document.querySelectorAll('[data-testid="rollcall-row"]').length;"#,
                vec![json!(order)],
            )
            .await
            .unwrap();
        if opened.as_u64() == Some(24) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the console opens the order's roll call ({opened})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let selected = q(r#"const boxes = [...document.querySelectorAll('[data-testid="rollcall-row"] [data-testid="rollcall-select"]')].slice(0, 20);
        for (const b of boxes) { if (!b.checked) b.click(); }
        const s = document.querySelector('[data-testid="bulk-status"]'); s.value = "safe";
        s.dispatchEvent(new Event("change", {bubbles: true}));
        return boxes.length;"#)
    .await;
    assert_eq!(selected, 20);
    let marked_at = Instant::now();
    q(r#"document.querySelector('[data-testid="bulk-mark"]').click(); return null;"#).await;
    let started = Instant::now();
    let result = loop {
        let text = q(
            r#"const p = document.querySelector('[data-testid="last-position"]');
            return p && !p.hidden ? p.textContent : "";"#,
        )
        .await;
        let text = text.as_str().unwrap_or("").to_owned();
        if text.contains("Marked 20 safe") {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the console confirms the bulk mark: {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(result.contains("log position"), "{result}");
    eprintln!("console: {result}");

    // The wall screen follows.
    client.switch_to_window(wall).await.unwrap();
    while !read_panel().await.contains("(20/24)") {
        assert!(
            marked_at.elapsed() < Duration::from_secs(5),
            "the wall screen shows 20 of 24 accounted: {}",
            read_panel().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "console: wall screen shows 20/24 {:?} after the click",
        marked_at.elapsed()
    );
    assert!(
        read_panel().await.contains("83.3 %"),
        "{}",
        read_panel().await
    );
}

// ---------------------------------------------------------------- broadcasts in the console

/// Logs `username` in on the console in the current window and waits for the header to
/// say who is logged in.
async fn console_login(client: &Client, username: &str, password: &str) {
    js(
        client,
        r#"const [u, p] = arguments;
           document.getElementById("username").value = u;
           document.getElementById("password").value = p;
           document.getElementById("login").requestSubmit(); return null;"#,
        vec![json!(username), json!(password)],
    )
    .await;
    wait_js(
        client,
        Duration::from_secs(15),
        &format!("{username} is logged in"),
        r#"const w = document.querySelector('[data-testid="who"]');
           const e = document.querySelector('[data-testid="login-error"]');
           return {who: w.textContent, role: w.dataset.role ?? "", error: e.hidden ? null : e.textContent,
                   tab: document.querySelector('[data-testid="tab-broadcasts"]')?.getAttribute("aria-selected")};"#,
        vec![],
        |v| v["who"].as_str().unwrap_or("").starts_with(username) && v["role"] != "" && v["tab"] == "true",
    )
    .await;
}

/// The console's row of broadcast `id` (or of the one titled `title`), read in one trip.
const CONSOLE_BROADCAST: &str = r#"
const [id, title] = arguments;
const rows = [...document.querySelectorAll('#broadcast-list [data-testid="broadcast"]')];
const li = rows.find((r) => id ? r.dataset.id === id
  : r.querySelector('[data-testid="broadcast-title"]')?.textContent === title);
const result = document.querySelector('[data-testid="broadcast-result"]');
const out = {
  result: result && !result.hidden ? result.textContent : null,
  result_error: result?.dataset.error ?? null,
  form_error: (() => { const e = document.querySelector('[data-testid="broadcast-form-error"]'); return e && !e.hidden ? e.textContent : null; })(),
  list_error: (() => { const e = document.querySelector('[data-testid="broadcasts-error"]'); return e && !e.hidden ? e.textContent : null; })(),
  rows: rows.length,
};
if (!li) return out;
const q = (t) => li.querySelector(`[data-testid="${t}"]`);
const ex = q("broadcast-exercise");
return Object.assign(out, {
  id: li.dataset.id,
  status: li.dataset.status,
  exercise: li.dataset.exercise,
  exercise_shown: ex && ex.offsetHeight > 0 ? ex.textContent : null,
  status_text: q("broadcast-status")?.textContent ?? null,
  counts: q("broadcast-counts")?.textContent ?? null,
  total: q("broadcast-counts")?.dataset.total ?? null,
  row_error: q("broadcast-row-error")?.textContent ?? null,
  approve: Boolean(q("broadcast-approve")),
  ack: Boolean(q("broadcast-ack")),
  acked_by_me: li.dataset.ackedByMe,
});
"#;

/// Clicks the console's `action` button (`approve`, `ack`) on broadcast `id` in the list and
/// waits until [`CONSOLE_BROADCAST`] of it satisfies `done`; its answer.
async fn broadcast_action(
    client: &Client,
    id: &str,
    action: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    js(
        client,
        r#"const [id, action] = arguments;
           document.querySelector(`#broadcast-list [data-id="${id}"] [data-testid="broadcast-${action}"]`).click();
           return null;"#,
        vec![json!(id), json!(action)],
    )
    .await;
    wait_js(
        client,
        Duration::from_secs(10),
        what,
        CONSOLE_BROADCAST,
        vec![json!(id), Value::Null],
        done,
    )
    .await
}

/// The wall screen's broadcast `id`, read in one trip, with whether its EXERCISE badge is
/// rendered and inside the window.
const WALL_BROADCAST: &str = r#"
const [id] = arguments;
const el = document.querySelector(`[data-testid="broadcast"][data-id="${id}"]`);
if (!el) return {found: false, panel: document.querySelector('[data-testid="panel-broadcasts"]')?.innerText ?? null};
const ex = el.querySelector('[data-testid="broadcast-exercise"]');
const seen = (e) => {
  if (!e) return false;
  const r = e.getBoundingClientRect(), s = getComputedStyle(e);
  return r.width > 0 && r.height > 0 && r.bottom > 0 && r.right > 0 && r.top < innerHeight && r.left < innerWidth
    && s.visibility !== "hidden" && s.display !== "none" && Number(s.opacity) > 0;
};
const counts = el.querySelector('[data-testid="broadcast-counts"]');
return {
  found: true,
  status: el.dataset.status,
  exercise: el.dataset.exercise,
  exercise_text: ex ? ex.innerText : null,
  exercise_visible: seen(ex),
  item_visible: seen(el),
  status_text: el.querySelector('[data-testid="broadcast-status"]')?.innerText ?? null,
  text: el.innerText,
  acked: counts?.dataset.acked ?? null,
  total: counts?.dataset.total ?? null,
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_duty_officers_issue_and_approve_an_exercise_broadcast_in_the_console_and_the_wall_screen_shows_exercise()
 {
    let started = Instant::now();
    let users = [
        ("duty.ana", gateway::auth::Role::DutyOfficer, None),
        ("duty.ben", gateway::auth::Role::DutyOfficer, None),
        (
            "focal.wfp",
            gateway::auth::Role::AgencyFocalPoint,
            Some("wfp"),
        ),
    ]
    .map(|(name, role, agency)| user(name, role, None, agency, &format!("{name} password")));
    in_browser("console-broadcast", users.into(), broadcast_scenario).await;
    eprintln!("broadcast: the whole test took {:?}", started.elapsed());
}

async fn broadcast_scenario(client: &Client, centre: &mut Centre, dir: &Path) {
    // Two agencies in Somalia: an all-agency broadcast has two recipients.
    let file = dir.join("agencies.jsonl");
    std::fs::write(
        &file,
        [
            json!({"kind": "agency", "agency": "wfp", "name": "WFP", "countries": ["SO"]}),
            json!({"kind": "agency", "agency": "unicef", "name": "UNICEF", "countries": ["SO", "KE"]}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n"),
    )
    .unwrap();
    centre.import(&file);
    let console_url = format!(
        "http://127.0.0.1:{}/console/#broadcasts",
        centre.addr().port()
    );
    let title = "EXERCISE curfew drill: Mogadishu from 18:00";

    // The wall screen in one window.
    let wall = client.window().await.unwrap();
    client.goto(&centre.url()).await.unwrap();
    wait_for(
        client,
        Duration::from_secs(15),
        "the wall screen goes live",
        |p| state(p) == "live",
    )
    .await;

    // Duty officer A in a second window issues a high-severity, all-agency exercise.
    let ana = client.new_window(true).await.unwrap();
    client.switch_to_window(ana.handle.clone()).await.unwrap();
    client.goto(&console_url).await.unwrap();
    console_login(client, "duty.ana", "duty.ana password").await;
    let form = js(
        client,
        r#"const [title] = arguments;
           document.querySelector('[data-testid="broadcast-new"]').click();
           const set = (id, v) => { const e = document.getElementById(id); e.value = v;
             e.dispatchEvent(new Event("input", {bubbles: true})); };
           set("b-title", title);
           set("b-body", "Drill: all staff in Mogadishu stay in their residences from 18:00 to 06:00. Acknowledge receipt.");
           const sev = document.getElementById("b-severity"); sev.value = "high";
           sev.dispatchEvent(new Event("change", {bubbles: true}));
           document.getElementById("b-aud-all").click();
           if (!document.getElementById("b-requires-ack").checked) document.getElementById("b-requires-ack").click();
           document.getElementById("b-exercise").click();
           const banner = document.querySelector('[data-testid="broadcast-form-exercise"]');
           return {
             exercise_banner: banner.offsetHeight > 0 ? banner.textContent : null,
             approval_note: document.querySelector('[data-testid="broadcast-approval-note"]').textContent,
             deadline: document.getElementById("b-deadline").value,
           };"#,
        vec![json!(title)],
    )
    .await;
    assert!(
        form["exercise_banner"]
            .as_str()
            .is_some_and(|t| t.starts_with("EXERCISE")),
        "the form shows EXERCISE once the box is ticked: {form}"
    );
    assert!(
        form["approval_note"]
            .as_str()
            .is_some_and(|t| t.contains("second duty officer approves it")),
        "the form says a second duty officer must approve it: {form}"
    );
    assert!(
        form["deadline"].as_str().is_some_and(|d| !d.is_empty()),
        "{form}"
    );
    js(
        client,
        r#"document.querySelector('[data-testid="broadcast-form"]').requestSubmit(); return null;"#,
        vec![],
    )
    .await;
    let issued = wait_js(
        client,
        Duration::from_secs(15),
        "the console lists the new broadcast awaiting approval",
        CONSOLE_BROADCAST,
        vec![Value::Null, json!(title)],
        |v| v["status"] == "awaiting_approval",
    )
    .await;
    eprintln!("broadcast: issued: {}", issued["result"]);
    let id = issued["id"].as_str().unwrap().to_owned();
    assert_eq!(issued["exercise"], "true", "{issued}");
    assert_eq!(issued["exercise_shown"], "EXERCISE", "{issued}");
    assert_eq!(issued["status_text"], "Awaiting approval", "{issued}");
    assert_eq!(
        issued["total"], "2",
        "both agencies are recipients: {issued}"
    );
    assert!(
        issued["result"]
            .as_str()
            .is_some_and(|r| r.contains("second duty officer") && r.contains("log position")),
        "{issued}"
    );

    // The wall screen shows it awaiting approval, as an exercise.
    client.switch_to_window(wall.clone()).await.unwrap();
    let shown = wait_js(
        client,
        Duration::from_secs(10),
        "the wall screen shows the broadcast awaiting approval",
        WALL_BROADCAST,
        vec![json!(id)],
        |v| v["status"] == "awaiting_approval",
    )
    .await;
    assert_eq!(shown["exercise_visible"], true, "{shown}");

    // A's own approval is refused, in plain words that say what to do.
    client.switch_to_window(ana.handle.clone()).await.unwrap();
    let refused = broadcast_action(client, &id, "approve", "A's own approval is refused", |v| {
        v["result_error"] == "true" && v["row_error"].is_string()
    })
    .await;
    eprintln!("broadcast: A approves: {}", refused["result"]);
    for text in [&refused["result"], &refused["row_error"]] {
        let text = text.as_str().unwrap();
        assert!(
            text.starts_with("Not approved")
                && text.contains("another duty officer must approve it")
                && text.contains("two-person rule"),
            "{refused:#}"
        );
    }
    assert_eq!(refused["status"], "awaiting_approval", "{refused}");
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(target_dir().join("console-broadcast-refused.png"), png);
    }

    // Duty officer B, in a third window, approves it; the list shows it live.
    let ben = client.new_window(true).await.unwrap();
    client.switch_to_window(ben.handle.clone()).await.unwrap();
    client.goto(&console_url).await.unwrap();
    console_login(client, "duty.ben", "duty.ben password").await;
    let listed = wait_js(
        client,
        Duration::from_secs(10),
        "B's console lists the broadcast awaiting approval",
        CONSOLE_BROADCAST,
        vec![json!(id), Value::Null],
        |v| v["status"] == "awaiting_approval" && v["approve"] == true,
    )
    .await;
    assert_eq!(listed["exercise_shown"], "EXERCISE", "{listed}");
    let approved_at = Instant::now();
    let live = broadcast_action(
        client,
        &id,
        "approve",
        "B's approval is taken and the list shows the broadcast live",
        |v| {
            v["status"] == "live"
                && v["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("Approved"))
        },
    )
    .await;
    eprintln!("broadcast: B approves: {}", live["result"]);
    assert!(
        live["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("Approved") && r.contains("log position")),
        "{live}"
    );
    assert_eq!(live["status_text"], "Live", "{live}");
    assert_eq!(
        live["approve"], false,
        "no Approve on a live broadcast: {live}"
    );

    // The wall screen shows it live, with EXERCISE on screen.
    client.switch_to_window(wall.clone()).await.unwrap();
    let wall_live = wait_js(
        client,
        Duration::from_secs(5),
        "the wall screen shows the broadcast live",
        WALL_BROADCAST,
        vec![json!(id)],
        |v| v["status"] == "live",
    )
    .await;
    eprintln!(
        "broadcast: wall screen shows it live {:?} after the click: {}",
        approved_at.elapsed(),
        wall_live["text"]
    );
    assert_eq!(wall_live["exercise"], "true", "{wall_live}");
    assert_eq!(wall_live["exercise_text"], "EXERCISE", "{wall_live}");
    assert_eq!(wall_live["exercise_visible"], true, "{wall_live}");
    assert_eq!(wall_live["item_visible"], true, "{wall_live}");
    assert_eq!(wall_live["status_text"], "LIVE", "{wall_live}");
    assert!(
        wall_live["text"].as_str().unwrap().contains(title),
        "{wall_live}"
    );
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(target_dir().join("wall-screen-broadcast.png"), png);
    }

    // WFP's focal point, in B's window after B logs out, sees it and acknowledges it.
    client.switch_to_window(ben.handle.clone()).await.unwrap();
    js(
        client,
        r#"document.querySelector('[data-testid="logout"]').click(); return null;"#,
        vec![],
    )
    .await;
    console_login(client, "focal.wfp", "focal.wfp password").await;
    let tabs = js(
        client,
        r#"return [...document.querySelectorAll('#tabs [role="tab"]')].filter((t) => !t.hidden).map((t) => t.dataset.tab);"#,
        vec![],
    )
    .await;
    assert_eq!(
        tabs,
        json!(["broadcasts"]),
        "a focal point sees the broadcasts only"
    );
    wait_js(
        client,
        Duration::from_secs(10),
        "the focal point's console lists the broadcast with Acknowledge",
        CONSOLE_BROADCAST,
        vec![json!(id), Value::Null],
        |v| v["ack"] == true && v["exercise_shown"] == "EXERCISE",
    )
    .await;
    let acked = broadcast_action(
        client,
        &id,
        "ack",
        "the focal point's acknowledgement is taken",
        |v| {
            v["acked_by_me"] == "true"
                && v["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("Acknowledged"))
        },
    )
    .await;
    eprintln!("broadcast: focal point: {}", acked["result"]);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(target_dir().join("console-broadcast-acknowledged.png"), png);
    }
    assert!(
        acked["result"]
            .as_str()
            .is_some_and(|r| r.starts_with("Acknowledged for wfp")),
        "{acked}"
    );
    client.switch_to_window(wall.clone()).await.unwrap();
    wait_js(
        client,
        Duration::from_secs(5),
        "the wall screen counts the acknowledgement",
        WALL_BROADCAST,
        vec![json!(id)],
        |v| v["acked"] == "1" && v["total"] == "2",
    )
    .await;

    // A cancels it, with a reason: the console asks for one, then shows it cancelled.
    client.switch_to_window(ana.handle).await.unwrap();
    let asked = js(
        client,
        r#"const [id] = arguments;
           document.querySelector(`#broadcast-list [data-id="${id}"] [data-testid="broadcast-cancel"]`).click();
           const f = document.querySelector('[data-testid="broadcast-cancel-form"]');
           return {shown: f.offsetHeight > 0, focused: document.activeElement?.dataset.testid ?? null};"#,
        vec![json!(id)],
    )
    .await;
    assert_eq!(
        asked,
        json!({"shown": true, "focused": "broadcast-cancel-reason"}),
        "Cancel… asks for a reason"
    );
    js(
        client,
        r#"document.querySelector('[data-testid="broadcast-cancel-reason"]').value = "Drill over";
           document.querySelector('[data-testid="broadcast-cancel-form"]').requestSubmit(); return null;"#,
        vec![],
    )
    .await;
    let cancelled = wait_js(
        client,
        Duration::from_secs(10),
        "A's console shows the broadcast cancelled",
        CONSOLE_BROADCAST,
        vec![json!(id), Value::Null],
        |v| {
            v["status"] == "cancelled"
                && v["result"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("Cancelled"))
        },
    )
    .await;
    eprintln!("broadcast: A cancels: {}", cancelled["result"]);
    assert_eq!(cancelled["status_text"], "Cancelled", "{cancelled}");
    client.switch_to_window(wall).await.unwrap();
    wait_js(
        client,
        Duration::from_secs(5),
        "the wall screen shows the broadcast cancelled",
        WALL_BROADCAST,
        vec![json!(id)],
        |v| v["status"] == "cancelled" && v["exercise_visible"] == true,
    )
    .await;
}
