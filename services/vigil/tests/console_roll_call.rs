//! The roll call and the hostage close in the operations console, in a real browser against
//! the real binary, checked through the HTTP API afterwards.
//!
//! An evacuation order covers 1,200 people (a generated reference file, `vigil import`). Duty
//! officer Ana ticks rows 11 to 21 with a click and a shift-click and marks exactly those 11
//! relocated; then shows the unmarked (1,189), ticks all shown and marks them safe: more than
//! the server takes in one request (`MAX_MARK_MANY`, 499), so the console sends three
//! requests and counts them on the result line ("Marked 499 of 1,189 safe…"). The answer of
//! the second request is lost on the way back (the page's `fetch` drops it after the server
//! took it): the console names request 2 as failed, keeps the rest ticked, and a second press
//! resumes. Over HTTP every one of the 1,200 is marked once: the order's stream grew by
//! exactly one event per person. The roll call shows each person's dependants, and an order
//! whose deadline has passed lists its findings (missing or unmarked) by name.
//!
//! Crisis manager Cara opens a hostage case of four (one released before, one released while
//! the case is open: shown only after Reload, the details are never read by themselves),
//! reads the surge's "Other fields", and closes the case with one outcome and note per
//! person still held; the closing account over HTTP says so person by person.
//! Screenshot on a failure: `console-roll-call-failed.png`.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::browser::{js, wait_js};
use common::console::{Up, WAIT, in_the_console, login, logout, open, step, tab};
use fantoccini::Client;
use gateway::auth::Role;
use serde_json::{Value, json};

/// People on the order: more than two requests' worth of the server's limit.
const PEOPLE: usize = 1200;
/// The server's limit per mark-many (services/relocation `MAX_MARK_MANY`).
const LIMIT: usize = 499;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_roll_call_is_marked_in_batches_and_a_case_closed_person_by_person() {
    in_the_console(
        "console-roll-call",
        &[
            ("duty.ana", Role::DutyOfficer),
            ("crisis.cara", Role::CrisisManager),
        ],
        scenario,
    )
    .await;
}

fn person(i: usize) -> String {
    format!("P-{i:05}")
}

fn deadline(minutes: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// person → (status, marked_at_position) of the order's roll call, and the stream's version.
async fn roll_call(up: &Up, order: &str, token: &str) -> (BTreeMap<String, (Value, Value)>, u64) {
    let o = up.get(&format!("/api/v1/orders/{order}"), token).await;
    let rows = o["roll_call"]
        .as_array()
        .unwrap_or_else(|| panic!("a roll call: {o}"))
        .iter()
        .map(|e| {
            (
                e["person"].as_str().unwrap().to_owned(),
                (e["status"].clone(), e["marked_at_position"].clone()),
            )
        })
        .collect();
    (rows, o["version"].as_u64().unwrap())
}

/// The texts the result line `testid` shows from now on, gathered in the page.
async fn watch(client: &Client, testid: &str) {
    js(
        client,
        r#"const [id] = arguments;
           window.__seen = [];
           const seen = () => { const r = document.querySelector(`[data-testid="${id}"]`);
             if (r && !r.hidden && window.__seen.at(-1) !== r.textContent) window.__seen.push(r.textContent); };
           new MutationObserver(seen).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
           return null;"#,
        vec![json!(testid)],
    )
    .await;
}

/// Waits until the result line shows a finished result starting with `expect` (and an error
/// or not).
async fn result_is(client: &Client, expect: &str, error: bool) -> String {
    let v = wait_js(
        client,
        WAIT,
        &format!("the result line says {expect:?}"),
        r#"const r = document.querySelector('[data-testid="last-position"]');
           return {text: r && !r.hidden ? r.textContent : "", error: r?.dataset.error ?? ""};"#,
        vec![],
        |v| {
            let text = v["text"].as_str().unwrap_or("");
            // A line with "…" is progress ("Marked 499 of 690 safe… (request 2 of 2)"),
            // shown while a request is still out: not the result.
            text.starts_with(expect)
                && !text.contains('…')
                && v["error"] == if error { "true" } else { "false" }
        },
    )
    .await;
    v["text"].as_str().unwrap().to_owned()
}

/// The persons ticked in the roll call, in the table's order, and the count the page shows.
async fn ticked(client: &Client) -> (Vec<String>, u64) {
    let v = js(
        client,
        r#"const rows = [...document.querySelectorAll('[data-testid="rollcall-row"]')];
           return {ticked: rows.filter((r) => r.querySelector('[data-testid="rollcall-select"]')?.checked).map((r) => r.dataset.person),
                   count: Number(document.querySelector('[data-testid="rollcall-shown"]')?.dataset.ticked ?? -1)};"#,
        vec![],
    )
    .await;
    let list = v["ticked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    (list, v["count"].as_u64().unwrap())
}

/// Chooses `status` in the bulk form and presses its button.
async fn bulk_mark(client: &Client, status: &str) {
    let sent = js(
        client,
        r#"const [status] = arguments;
           const s = document.querySelector('[data-testid="bulk-status"]');
           if (!s) return "no bulk form";
           s.value = status;
           s.dispatchEvent(new Event("change", {bubbles: true}));
           document.querySelector('[data-testid="bulk-mark"]').click();
           return "sent";"#,
        vec![json!(status)],
    )
    .await;
    assert_eq!(sent, "sent");
}

async fn scenario(client: &Client, up: &Up, dir: &Path) {
    // Reference data: one station in Banaadir with 1,200 people, 0 to 3 dependants each.
    let mut lines = vec![
        json!({"kind": "area", "area": "SOM-BAN", "country": "SO", "name": "Banaadir"}),
        json!({"kind": "duty_station", "station": "SOM-MGQ", "country": "SO", "area": "SOM-BAN",
               "name": "Mogadishu", "lat": 2.0469, "lon": 45.3182}),
        json!({"kind": "agency", "agency": "wfp", "name": "WFP", "countries": ["SO"]}),
    ];
    for i in 1..=PEOPLE {
        lines.push(
            json!({"kind": "person", "person": person(i), "name": format!("Person {i:05}"),
            "agency": "wfp", "nationality": "KE", "duty_station": "SOM-MGQ", "dependants": i % 4}),
        );
    }
    up.import(&dir.join("reference.jsonl"), &lines);

    let duty = up.token("duty.api", Role::DutyOfficer);
    let crisis = up.token("crisis.api", Role::CrisisManager);
    let order = up
        .given(
            "POST",
            "/api/v1/orders",
            &duty,
            json!({"kind": "evacuation", "scope": "all_personnel", "country": "SO", "area": "SOM-BAN",
               "destination": "Nairobi", "deadline": deadline(12 * 60)}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let everyone = testkit::eventually(WAIT, || async {
        let (rows, _) = roll_call(up, &order, &duty).await;
        (rows.len() == PEOPLE).then_some(rows)
    })
    .await
    .expect("the roll call holds all 1,200 people");
    assert!(
        everyone.values().all(|(s, _)| s.is_null()),
        "nobody marked yet"
    );

    let console = format!("http://{}/console/#orders", up.addr());
    client.goto(&console).await.unwrap();
    login(client, "duty.ana").await;
    tab(client, "orders").await;
    open(client, "order", &order, "rollcall").await;
    wait_js(
        client,
        WAIT,
        "the roll call shows everyone",
        r#"return document.querySelectorAll('[data-testid="rollcall-row"]').length;"#,
        vec![],
        |v| v.as_u64() == Some(PEOPLE as u64),
    )
    .await;

    // The dependants column, from the reference data.
    let dependants = js(
        client,
        r#"return [...document.querySelectorAll('[data-testid="rollcall-row"]')].slice(0, 8)
             .map((r) => [r.dataset.person, r.querySelector('[data-testid="rollcall-dependants"]')?.textContent ?? null]);"#,
        vec![],
    )
    .await;
    let expected: Vec<Value> = (1..=8)
        .map(|i| json!([person(i), (i % 4).to_string()]))
        .collect();
    assert_eq!(dependants, json!(expected), "each person's dependants");

    // A click on row 11, a shift-click on row 21: rows 11 to 21 ticked, nothing else.
    js(
        client,
        r#"const boxes = [...document.querySelectorAll('[data-testid="rollcall-row"] [data-testid="rollcall-select"]')];
           boxes[10].click();
           boxes[20].dispatchEvent(new MouseEvent("click", {bubbles: true, cancelable: true, shiftKey: true}));
           return null;"#,
        vec![],
    )
    .await;
    let range: Vec<String> = (11..=21).map(person).collect();
    assert_eq!(
        ticked(client).await,
        (range.clone(), 11),
        "shift-click ticks the range"
    );
    watch(client, "last-position").await;
    bulk_mark(client, "relocated").await;
    let said = result_is(client, "Marked 11 relocated", false).await;
    eprintln!("console: {said}");
    let (rows, before) = roll_call(up, &order, &duty).await;
    let relocated: Vec<&String> = rows
        .iter()
        .filter(|(_, (s, _))| s == "relocated")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        relocated,
        range.iter().collect::<Vec<_>>(),
        "exactly the range was marked"
    );

    // Show the unmarked, tick all shown, and mark them safe: three requests, and the answer
    // of the second one lost on the way back.
    let rest = PEOPLE - range.len();
    js(
        client,
        r#"const f = document.querySelector('[data-testid="rollcall-filter"]');
           f.value = "unmarked";
           f.dispatchEvent(new Event("change", {bubbles: true}));
           return null;"#,
        vec![],
    )
    .await;
    wait_js(
        client,
        WAIT,
        "the unmarked are shown",
        r#"return Number(document.querySelector('[data-testid="rollcall-shown"]').dataset.shown);"#,
        vec![],
        |v| v.as_u64() == Some(rest as u64),
    )
    .await;
    js(
        client,
        r#"document.querySelector('[data-testid="rollcall-select-visible"]').click();
           window.__markMany = 0;
           const real = window.fetch;
           window.fetch = async (url, init) => {
             const res = await real(url, init);
             if (String(url).endsWith("/mark-many") && ++window.__markMany === 2) throw new TypeError("connection reset");
             return res;
           };
           return null;"#,
        vec![],
    )
    .await;
    assert_eq!(ticked(client).await.1, rest as u64, "all shown are ticked");
    watch(client, "last-position").await;
    bulk_mark(client, "safe").await;
    let failed = result_is(client, &format!("Marked {LIMIT} of 1,189 safe"), true).await;
    eprintln!("console: {failed}");
    assert!(
        failed.contains("request 2 of 3 (people 500 to 998) failed"),
        "the failed request is named: {failed}"
    );
    // The first request's people have left the selection; the rest are still ticked.
    assert_eq!(ticked(client).await.1, (rest - LIMIT) as u64, "{failed}");
    let seen = js(client, "return window.__seen;", vec![]).await;
    assert!(
        seen.as_array().unwrap().iter().any(|t| t
            .as_str()
            .unwrap()
            .starts_with("Marked 499 of 1,189 safe… (request 2 of 3)")),
        "the progress is counted: {seen}"
    );

    // Send again: it resumes; the people of the lost answer are not marked twice.
    bulk_mark(client, "safe").await;
    let done = result_is(client, "Marked ", false).await;
    eprintln!("console: {done}");
    let (rows, after) = roll_call(up, &order, &duty).await;
    assert!(
        rows.iter().all(|(p, (s, _))| if range.contains(p) {
            s == "relocated"
        } else {
            s == "safe"
        }),
        "everyone marked: {:?}",
        rows.iter().find(|(_, (s, _))| s.is_null())
    );
    assert_eq!(
        after - before,
        rest as u64,
        "one mark per person, nobody twice (the stream grew by {})",
        after - before
    );
    let positions: std::collections::BTreeSet<u64> = rows
        .values()
        .filter(|(s, _)| s == "safe")
        .map(|(_, p)| p.as_u64().unwrap())
        .collect();
    assert!(
        positions.len() >= 3,
        "the marks came in several requests: {positions:?}"
    );
    assert_eq!(ticked(client).await.1, 0, "nobody left ticked");

    // ---- findings by name: an order whose deadline has passed, one person marked missing.
    let late = up
        .given(
            "POST",
            "/api/v1/orders",
            &duty,
            json!({"kind": "relocation", "scope": "all_personnel", "country": "SO", "duty_station": "SOM-MGQ",
               "destination": "Baidoa", "deadline": deadline(-1)}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    testkit::eventually(WAIT, || async {
        let (rows, _) = roll_call(up, &late, &duty).await;
        (rows.len() == PEOPLE).then_some(())
    })
    .await
    .expect("the late order's roll call holds everyone");
    up.given(
        "POST",
        &format!("/api/v1/orders/{late}/mark"),
        &duty,
        json!({"person": person(5), "status": "missing"}),
    )
    .await;
    open(client, "order", &late, "order-findings-list").await;
    let findings = wait_js(
        client,
        WAIT,
        "the findings are listed by name",
        r#"const box = document.querySelector('[data-testid="order-detail"] [data-testid="order-findings-list"]');
           return {count: Number(box.dataset.count),
                   names: [...box.querySelectorAll('[data-testid="order-finding"]')].slice(0, 6).map((l) => l.textContent.trim())};"#,
        vec![],
        |v| v["names"].as_array().is_some_and(|n| n.len() == 6 && n[4].as_str().unwrap().ends_with("Missing")),
    )
    .await;
    assert_eq!(findings["count"], PEOPLE, "{findings}");
    assert_eq!(
        findings["names"][0], "Person 00001 (P-00001) — Unmarked",
        "{findings}"
    );
    assert_eq!(
        findings["names"][4], "Person 00005 (P-00005) — Missing",
        "{findings}"
    );

    // ---- hostage case: Reload, Other fields of a surge, close person by person.
    let incident = uuid::Uuid::new_v4().to_string();
    up.given(
        "POST",
        "/api/v1/incidents",
        &duty,
        json!({"id": incident, "country": "SO", "category": "crime",
        "severity": 4, "title": "Four staff abducted", "occurred_at": testkit::recent()}),
    )
    .await;
    let held: Vec<String> = (1..=4).map(person).collect();
    let case = up
        .given(
            "POST",
            "/api/v1/hostage-cases",
            &crisis,
            json!({"incident_id": incident, "country": "SO", "persons": held}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    up.given(
        "POST",
        &format!("/api/v1/hostage-cases/{case}/release"),
        &crisis,
        json!({"person": person(1), "at": testkit::recent()}),
    )
    .await;
    let surge = up
        .given(
            "POST",
            "/api/v1/surges",
            &duty,
            json!({"duty_station": "SOM-MGQ", "country": "SO",
            "reason": "Two more officers", "officers_needed": 2}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    logout(client).await;
    login(client, "crisis.cara").await;

    tab(client, "surges").await;
    open(client, "surge", &surge, "surge-status").await;
    let more = js(
        client,
        r#"const d = document.querySelector('[data-testid="surge-detail"] [data-testid="surge-more"]');
           return d ? {summary: d.querySelector("summary").textContent, fields: [...d.querySelectorAll("dt")].map((t) => t.textContent)} : null;"#,
        vec![],
    )
    .await;
    assert_eq!(more["summary"], "Other fields", "{more}");
    for field in ["Version", "Updated at", "Away from"] {
        assert!(
            more["fields"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == field),
            "{field} among the other fields: {more}"
        );
    }

    tab(client, "hostage").await;
    open(client, "hostage", &case, "hostage-persons").await;
    let status_of = |p: String| async move {
        js(
            client,
            r#"const [p] = arguments;
               return document.querySelector(`[data-testid="hostage-person"][data-person="${p}"]`)?.dataset.status ?? null;"#,
            vec![json!(p)],
        )
        .await
    };
    assert_eq!(status_of(person(2)).await, "held");
    up.given(
        "POST",
        &format!("/api/v1/hostage-cases/{case}/release"),
        &crisis,
        json!({"person": person(2), "at": testkit::recent()}),
    )
    .await;
    // The tab coming back into view reads the lists again, not the case.
    js(
        client,
        r#"document.dispatchEvent(new Event("visibilitychange")); return null;"#,
        vec![],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        status_of(person(2)).await,
        "held",
        "the details are not read again by themselves"
    );
    js(
        client,
        r#"document.querySelector('[data-testid="hostage-reload"]').click(); return null;"#,
        vec![],
    )
    .await;
    wait_js(
        client,
        WAIT,
        "Reload reads the release",
        r#"return document.querySelector(`[data-testid="hostage-person"][data-person="P-00002"]`)?.dataset.status ?? null;"#,
        vec![],
        |v| v == "released",
    )
    .await;

    // Close: the two still held each get their own outcome and note.
    let rows = js(
        client,
        r#"document.querySelector('[data-testid="hostage-detail"] [data-testid="hostage-close"]').click();
           return [...document.querySelectorAll('[data-testid="hostage-account-row"]')].map((r) => r.dataset.person);"#,
        vec![],
    )
    .await;
    assert_eq!(
        rows,
        json!([person(3), person(4)]),
        "one row per person still held"
    );
    step(
        client,
        "hostage-detail",
        None,
        "hostage-close-form",
        json!({
            "hostage-close-outcome": "Two released, two no longer held",
            "hostage-close-fate-P-00003": "Escaped",
            "hostage-close-note-P-00003": "walked out on day 3",
            "hostage-close-fate-P-00004": "Other",
            "hostage-close-note-P-00004": "handed to the ICRC",
        }),
        "hostage-result",
        "Case closed",
        false,
    )
    .await;
    let k = up
        .get(&format!("/api/v1/hostage-cases/{case}"), &crisis)
        .await;
    assert_eq!(k["status"], "closed", "{k}");
    let mut accounting: Vec<Value> = k["accounting"].as_array().unwrap().clone();
    accounting.sort_by_key(|a| a["person"].as_str().unwrap().to_owned());
    assert_eq!(
        accounting,
        vec![
            json!({"person": person(1), "status": "released"}),
            json!({"person": person(2), "status": "released"}),
            json!({"person": person(3), "status": "other", "note": "Escaped: walked out on day 3"}),
            json!({"person": person(4), "status": "other", "note": "handed to the ICRC"}),
        ],
        "the account, person by person: {k}"
    );
}
