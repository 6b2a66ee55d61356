//! The operations console's actions in a real browser, against the real binary: every step a
//! duty officer or a crisis manager takes through the API has a place in the console, and
//! each one taken in the console is checked through the HTTP API afterwards.
//!
//! Headless Chromium (see `common::browser`) opens `/console/` on `vigil up`. Duty officer
//! Ana verifies an incident, is refused an escalation to an id that is not one (the server's
//! words on the result line and on the row), escalates it into the hostage case and closes
//! it (after a confirmation); sets Banaadir to level 5, 4 and 5 again (the second raise is
//! damped into the first rule broadcast, whose row counts it); requests a travel clearance
//! and approves it; and is shown no Cancel on a surge and no hostage names (her role may not).
//! Crisis manager Cara then cancels the approved surge with a reason and releases three of
//! the five hostages in one bulk action. The wall screen shows "2 held · 3 released ·
//! 0 deceased" and the damped trigger. Screenshots: `console-actions.png`,
//! `wall-screen-hostage.png` (`console-actions-failed.png` on a failure).

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::browser::{js, target_dir, wait_js};
use common::console::{
    Up, WAIT, in_detail, in_the_console, items, login, logout, open, result, step, tab,
};
use fantoccini::Client;
use gateway::auth::Role;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duty_officer_and_a_crisis_manager_take_every_step_in_the_console() {
    in_the_console(
        "console-actions",
        &[
            ("duty.ana", Role::DutyOfficer),
            ("crisis.cara", Role::CrisisManager),
        ],
        scenario,
    )
    .await;
}

// ---------------------------------------------------------------- the scenario

async fn scenario(client: &Client, up: &Up, dir: &Path) {
    // Reference data: Banaadir with a station, six people, one agency in Somalia.
    let mut lines = vec![
        json!({"kind": "area", "area": "SOM-BAN", "country": "SO", "name": "Banaadir"}),
        json!({"kind": "duty_station", "station": "SOM-MGQ", "country": "SO", "area": "SOM-BAN",
               "name": "Mogadishu", "lat": 2.0469, "lon": 45.3182}),
        json!({"kind": "agency", "agency": "wfp", "name": "WFP", "countries": ["SO"]}),
    ];
    for i in 1..=6 {
        lines.push(json!({"kind": "person", "person": format!("P-{i:04}"), "name": format!("Person {i:02}"),
            "agency": "wfp", "nationality": "KE", "duty_station": "SOM-MGQ"}));
    }
    up.import(&dir.join("reference.jsonl"), &lines);

    // Given through the API: an incident, the hostage case it became, an approved surge.
    let duty = up.token("duty.api", Role::DutyOfficer);
    let crisis = up.token("crisis.api", Role::CrisisManager);
    let incident = uuid::Uuid::new_v4().to_string();
    up.given("POST", "/api/v1/incidents", &duty, json!({"id": incident, "country": "SO", "category": "crime",
        "severity": 4, "title": "Five staff abducted on the airport road", "occurred_at": testkit::recent()}))
        .await;
    let case = up
        .given(
            "POST",
            "/api/v1/hostage-cases",
            &crisis,
            json!({"incident_id": incident, "country": "SO",
            "persons": ["P-0001", "P-0002", "P-0003", "P-0004", "P-0005"]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let surge = up
        .given(
            "POST",
            "/api/v1/surges",
            &duty,
            json!({"duty_station": "SOM-MGQ", "country": "SO",
            "reason": "Two more officers for the airport road", "officers_needed": 2}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    up.given(
        "POST",
        &format!("/api/v1/surges/{surge}/approve"),
        &crisis,
        json!({}),
    )
    .await;

    let console = format!("http://{}/console/#incidents", up.addr());
    client.goto(&console).await.unwrap();
    login(client, "duty.ana").await;
    let tabs = js(
        client,
        r#"return [...document.querySelectorAll('#tabs [role="tab"]')].filter((t) => !t.hidden).map((t) => t.dataset.tab);"#,
        vec![],
    )
    .await;
    assert_eq!(
        tabs,
        json!([
            "incidents",
            "levels",
            "orders",
            "surges",
            "hostage",
            "clearances",
            "broadcasts"
        ]),
        "a duty officer reads every section"
    );

    // ---- incidents: verify, a refused escalation, escalate, close.
    tab(client, "incidents").await;
    open(client, "incident", &incident, "incident-verify").await;
    step(
        client,
        "incident-detail",
        Some("incident-verify"),
        "incident-verify-form",
        json!({"incident-verify-note": "Confirmed by phone with the station"}),
        "incident-result",
        "Verified",
        false,
    )
    .await;
    let i = up
        .get(&format!("/api/v1/incidents/{incident}"), &duty)
        .await;
    assert_eq!(
        (i["status"].as_str(), i["verified_by"].as_str()),
        (Some("verified"), Some("duty.ana")),
        "{i}"
    );

    let refused = step(
        client,
        "incident-detail",
        Some("incident-escalate"),
        "incident-escalate-form",
        json!({"incident-escalate-kind": "hostage_case", "incident-escalate-target": "case-17",
               "incident-escalate-reason": "Staff held by an armed group"}),
        "incident-result",
        "Not escalated: ",
        true,
    )
    .await;
    let said = refused["text"].as_str().unwrap();
    assert!(
        said.len() > "Not escalated: ".len() + 10,
        "the server's words: {said}"
    );
    let row_error = js(
        client,
        r#"const [id] = arguments;
           return document.querySelector(`[data-testid="incident"][data-id="${id}"] [data-testid="incident-row-error"]`)?.textContent ?? null;"#,
        vec![json!(incident)],
    )
    .await;
    assert_eq!(
        row_error.as_str(),
        Some(said),
        "the refusal stays on the row"
    );
    let i = up
        .get(&format!("/api/v1/incidents/{incident}"), &duty)
        .await;
    assert_eq!(
        i["escalations"],
        json!([]),
        "nothing escalated by the refused step: {i}"
    );

    // The form is still open with what was typed: only the id changes.
    step(
        client,
        "incident-detail",
        None,
        "incident-escalate-form",
        json!({"incident-escalate-target": case}),
        "incident-result",
        "Escalated",
        false,
    )
    .await;
    let i = up
        .get(&format!("/api/v1/incidents/{incident}"), &duty)
        .await;
    assert_eq!(
        i["escalations"],
        json!([{"kind": "hostage_case", "id": case}]),
        "{i}"
    );

    step(
        client,
        "incident-detail",
        Some("incident-close"),
        "incident-close-form",
        json!({"incident-close-reason": "Followed up as a hostage case"}),
        "incident-result",
        "Closed",
        false,
    )
    .await;
    let i = up
        .get(&format!("/api/v1/incidents/{incident}"), &duty)
        .await;
    assert_eq!(
        (i["status"].as_str(), i["closed_reason"].as_str()),
        (Some("closed"), Some("Followed up as a hostage case")),
        "{i}"
    );

    // ---- levels: 5, 4, 5 again (the second raise within the damping window).
    tab(client, "levels").await;
    js(
        client,
        r#"const a = document.getElementById("level-area"); a.value = "SOM-BAN";
           a.dispatchEvent(new Event("input", {bubbles: true}));
           document.querySelector('[data-testid="level-find"]').requestSubmit(); return null;"#,
        vec![],
    )
    .await;
    open(client, "level", "SOM-BAN", "level-set").await;
    for (level, reason) in [
        ("5", "Armed clashes near the airport"),
        ("4", "Clashes over, roads open"),
        ("5", "Clashes again at dusk"),
    ] {
        step(
            client,
            "level-detail",
            Some("level-set"),
            "level-set-form",
            json!({"level-set-level": level, "level-set-reason": reason}),
            "level-result",
            &format!("Level {level} set"),
            false,
        )
        .await;
    }
    let l = up.get("/api/v1/areas/SOM-BAN/level", &duty).await;
    assert_eq!(l["level"], 5, "{l}");
    let history = l["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{l}");
    assert!(history.iter().all(|e| e["set_by"] == "duty.ana"), "{l}");
    assert_eq!(history[1]["reason"], "Clashes over, roads open", "{l}");

    // ---- clearances: request one, approve it.
    tab(client, "clearances").await;
    js(
        client,
        r#"document.querySelector('[data-testid="clearance-new"]').click(); return null;"#,
        vec![],
    )
    .await;
    step(client, "clearances", None, "clearance-request-form",
        json!({"clearance-request-traveller": "P-0006", "clearance-request-country": "SO", "clearance-request-area": "SOM-BAN",
               "clearance-request-purpose": "Relief of the Mogadishu team"}),
        "clearance-result", "Clearance requested", false).await;
    let requested = testkit::eventually(WAIT, || async {
        let v = up.get("/api/v1/clearances?traveller=P-0006", &duty).await;
        items(&v, "clearances").first().cloned()
    })
    .await
    .expect("the clearance is listed");
    assert_eq!(requested["status"], "requested", "{requested}");
    assert_eq!(requested["itinerary"][0]["area"], "SOM-BAN", "{requested}");
    let clearance = requested["id"].as_str().unwrap().to_owned();
    wait_js(client, WAIT, "the clearance's row offers Approve",
        r#"const [id] = arguments;
           return Boolean(document.querySelector(`[data-testid="clearance"][data-id="${id}"] [data-testid="clearance-approve"]`));"#,
        vec![json!(clearance)], |v| v == &json!(true)).await;
    let before = result(client, "clearance-result").await["position"]
        .as_u64()
        .unwrap_or(0);
    js(client, r#"const [id] = arguments;
        document.querySelector(`[data-testid="clearance"][data-id="${id}"] [data-testid="clearance-approve"]`).click(); return null;"#,
        vec![json!(clearance)]).await;
    wait_js(
        client,
        WAIT,
        "the approval is taken",
        r#"const r = document.querySelector('[data-testid="clearance-result"]');
           return {text: r.textContent, position: Number(r.dataset.position ?? 0)};"#,
        vec![],
        |v| {
            v["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Approved"))
                && v["position"].as_u64().unwrap_or(0) > before
        },
    )
    .await;
    let c = up
        .get(&format!("/api/v1/clearances/{clearance}"), &duty)
        .await;
    assert_eq!(
        (c["status"].as_str(), c["decided_by"].as_str()),
        (Some("approved"), Some("duty.ana")),
        "{c}"
    );

    // ---- what a duty officer may not do is not offered.
    tab(client, "surges").await;
    open(client, "surge", &surge, "surge-status").await;
    assert!(
        in_detail(client, "surge", "surge-assign").await,
        "a duty officer runs surges"
    );
    assert!(
        !in_detail(client, "surge", "surge-cancel").await,
        "only crisis managers cancel a surge"
    );
    tab(client, "hostage").await;
    let row = wait_js(client, WAIT, "the duty officer sees the case's counts",
        r#"const [id] = arguments;
           const c = document.querySelector(`[data-testid="hostage"][data-id="${id}"] [data-testid="hostage-counts"]`);
           return c ? c.textContent.replace(/\s+/g, " ").trim() : null;"#,
        vec![json!(case)], |v| v.is_string()).await;
    assert_eq!(row, "5 held · 0 released · 0 deceased");
    open(client, "hostage", &case, "hostage-status").await;
    assert!(
        !in_detail(client, "hostage", "hostage-persons").await,
        "no names for a duty officer"
    );

    // ---- the rule broadcast of the level, with the damped second raise counted on it.
    tab(client, "broadcasts").await;
    let damped = wait_js(
        client,
        WAIT,
        "the level's broadcast counts one damped trigger",
        r#"const s = document.querySelector('#broadcast-list [data-testid="broadcast-suppressed"]');
           return s ? {n: s.dataset.suppressed, text: s.textContent} : null;"#,
        vec![],
        |v| v["n"] == "1",
    )
    .await;
    eprintln!("console: {}", damped["text"]);
    let list = up.get("/api/v1/broadcasts", &duty).await;
    let ruled: Vec<&Value> = items(&list, "broadcasts")
        .iter()
        .filter(|b| b["suppressed"] == 1)
        .collect();
    assert_eq!(ruled.len(), 1, "one broadcast for the two raises: {list}");
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(target_dir().join("console-actions.png"), png);
    }

    // ---- the crisis manager: cancel the surge, release three hostages at once.
    logout(client).await;
    login(client, "crisis.cara").await;
    tab(client, "surges").await;
    open(client, "surge", &surge, "surge-cancel").await;
    step(
        client,
        "surge-detail",
        Some("surge-cancel"),
        "surge-cancel-form",
        json!({"surge-cancel-reason": "The road is secured by the police"}),
        "surge-result",
        "Cancelled",
        false,
    )
    .await;
    let s = up.get(&format!("/api/v1/surges/{surge}"), &crisis).await;
    assert_eq!(
        (
            s["status"].as_str(),
            s["cancelled_reason"].as_str(),
            s["cancelled_by"].as_str()
        ),
        (
            Some("cancelled"),
            Some("The road is secured by the police"),
            Some("crisis.cara")
        ),
        "{s}"
    );

    tab(client, "hostage").await;
    open(client, "hostage", &case, "hostage-persons").await;
    let ticked = js(client, r#"const boxes = [...document.querySelectorAll('[data-testid="hostage-person-select"]')];
        for (const b of boxes.slice(0, 3)) b.click();
        return {boxes: boxes.length, persons: boxes.slice(0, 3).map((b) => b.closest("tr").dataset.person)};"#, vec![]).await;
    assert_eq!(ticked["boxes"], 5, "{ticked}");
    step(
        client,
        "hostage-detail",
        None,
        "hostage-release-many-form",
        json!({}),
        "hostage-result",
        "Release of 3 persons recorded",
        false,
    )
    .await;
    let k = up
        .get(&format!("/api/v1/hostage-cases/{case}"), &crisis)
        .await;
    let released: Vec<&str> = k["persons"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["status"] == "released")
        .map(|p| p["person"].as_str().unwrap())
        .collect();
    assert_eq!(json!(released), ticked["persons"], "{k}");
    let summary = up.get("/api/v1/hostage-cases", &duty).await;
    let s = items(&summary, "cases")
        .iter()
        .find(|c| c["case"] == case.as_str())
        .unwrap();
    assert_eq!(
        (
            s["persons_held"].as_u64(),
            s["persons_released"].as_u64(),
            s["persons_deceased"].as_u64()
        ),
        (Some(2), Some(3), Some(0)),
        "{s}"
    );

    // ---- the wall screen: the counts and the damped trigger, large.
    client.goto(&up.wall_url()).await.unwrap();
    let wall = wait_js(client, WAIT, "the wall screen shows 2 held · 3 released · 0 deceased",
        r#"const c = document.querySelector('[data-testid="panel-hostage"] [data-testid="hostage-counts"]');
           const s = document.querySelector('[data-testid="panel-broadcasts"] [data-testid="broadcast-suppressed"]');
           return {counts: c ? c.textContent.replace(/\s+/g, " ").trim() : null,
                   size: c ? parseFloat(getComputedStyle(c.querySelector(".num")).fontSize) : 0,
                   suppressed: s?.dataset.suppressed ?? null};"#,
        vec![], |v| v["counts"] == "2 held · 3 released · 0 deceased" && v["suppressed"] == "1").await;
    assert!(
        wall["size"].as_f64().unwrap() >= 24.0,
        "readable from across a room: {wall}"
    );
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(target_dir().join("wall-screen-hostage.png"), png);
    }
}
