//! The API reference page (`/docs/`) in a real browser: Swagger UI, vendored, served by the
//! gateway with the same security headers as every page, renders every operation of the
//! document the gateway generates (`/openapi.json`), with no script refused by the CSP.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`;
//! `ops/test` installs them); without them it fails and says so.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};
use testkit::{ChildGuard, free_port, wait_for_port};

use common::Center;

async fn browser(profile: &Path) -> (ChildGuard, Client) {
    let port = free_port();
    let guard = ChildGuard(Some(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver: apt-get install -y chromium chromium-driver"),
    ));
    assert!(wait_for_port(port, Duration::from_secs(20)));
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-dev-shm-usage",
            "--window-size=1920,1080", format!("--user-data-dir={}", profile.display())]}),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with Chromium");
    (guard, client)
}

/// What the page shows: each operation's method and path, as Swagger UI draws them.
const READ: &str = r#"
return {
  operations: [...document.querySelectorAll('.opblock')].map((op) => [
    op.querySelector('.opblock-summary-method')?.textContent?.trim().toLowerCase() ?? '',
    op.querySelector('.opblock-summary-path')?.getAttribute('data-path')
      ?? op.querySelector('.opblock-summary-path')?.textContent?.trim() ?? '',
  ]),
  title: document.querySelector('.info .title')?.textContent ?? null,
  errors: [...document.querySelectorAll('.errors-wrapper, .loading-container .loading')]
    .map((e) => e.textContent),
};
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_renders_every_operation_of_the_generated_document() {
    let c = Center::start().await;

    // Served like every page: the same security headers as the wall screen.
    let docs = testkit::http::request(c.addr, "GET", "/docs/", &[], None)
        .await
        .unwrap();
    let wall = testkit::http::request(c.addr, "GET", "/", &[], None)
        .await
        .unwrap();
    assert_eq!(docs.status, 200, "{}", docs.body);
    for h in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(docs.header(h).is_some(), "/docs/ has {h}");
        assert_eq!(docs.header(h), wall.header(h), "{h} as on the other pages");
    }
    let document = testkit::http::json(c.addr, "GET", "/openapi.json", None, None)
        .await
        .unwrap()
        .json();
    let mut expected: Vec<(String, String)> = vigil_gateway::ROUTES
        .iter()
        .map(|r| (r.method.to_lowercase(), r.path.to_owned()))
        .collect();
    expected.sort();
    let mut documented: Vec<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect();
    documented.sort();
    assert_eq!(documented, expected, "the document is the route table");

    let dir = tempfile::tempdir().unwrap();
    let (_driver, client) = browser(&dir.path().join("profile")).await;
    client
        .goto(&format!("http://{}/docs/", c.addr))
        .await
        .unwrap();
    let started = Instant::now();
    let page = loop {
        let page: Value = client.execute(READ, vec![]).await.unwrap();
        if page["operations"].as_array().map(Vec::len) == Some(expected.len()) {
            break page;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Swagger UI did not render the {} operations within 30 s; the page shows {page:#}",
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        page["title"].as_str().map(|t| t.starts_with("Vigil API")),
        Some(true),
        "{page}"
    );
    let mut shown: Vec<(String, String)> = page["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o[0].as_str().unwrap().to_owned(),
                o[1].as_str().unwrap().replace('\u{200b}', ""),
            )
        })
        .collect();
    shown.sort();
    assert_eq!(
        shown, expected,
        "every operation of the document, each once"
    );

    // Every file the page asked for was served (the bundle, its stylesheet, the document).
    let refused: Value = client
        .execute(
            "return performance.getEntriesByType('resource').filter((e) => e.responseStatus >= 400).map((e) => e.name);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        refused,
        json!([]),
        "every resource the page loaded was served"
    );

    // One operation opened shows its request body's schema from the generated document.
    let clicked = client
        .execute(
            r#"
const op = [...document.querySelectorAll('.opblock.opblock-post')].find((o) =>
  (o.querySelector('.opblock-summary-path')?.getAttribute('data-path') ?? '') === '/api/v1/incidents');
const control = op?.querySelector('.opblock-summary-control') ?? op?.querySelector('.opblock-summary');
control?.click();
return Boolean(control);
"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        clicked,
        json!(true),
        "POST /api/v1/incidents is on the page"
    );
    let started = Instant::now();
    loop {
        let opened: Value = client
            .execute(
                "return [...document.querySelectorAll('.opblock.is-open')].map((o) => o.textContent).join(' ');",
                vec![],
            )
            .await
            .unwrap();
        let text = opened.as_str().unwrap_or_default();
        // Its body's fields and its answers, from the generated document.
        if text.contains("Request body") && text.contains("occurred_at") && text.contains("201") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "an opened operation shows its body and answers: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = client.close().await;
}
