//! The API reference page (`/docs/`) in a real browser: Swagger UI, vendored, served by the
//! gateway with the same security headers as every page, renders every operation of the
//! document the gateway generates (`/openapi.json`), with no script refused by the CSP.
//!
//! Needs `chromium` and `chromium-driver` (`apt-get install -y chromium chromium-driver`;
//! `ops/test` installs them); without them it fails and says so.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::browser::browser;

use common::Center;

/// How many fields an object schema names, and how many of them it requires (its own, and
/// those of the parts it is made of: a flattened field is an `allOf` part).
fn fields_of(doc: &Value, schema: &Value) -> (usize, usize) {
    let schema = match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or(&Value::Null),
        None => schema,
    };
    let mut fields = schema["properties"].as_object().map_or(0, |p| p.len());
    let mut required = schema["required"].as_array().map_or(0, Vec::len);
    if let Some(v) = schema["type"].as_str() {
        assert_eq!(v, "object", "an item is an object: {schema}");
    }
    for part in schema["allOf"].as_array().into_iter().flatten() {
        let (f, r) = fields_of(doc, part);
        fields += f;
        required += r;
    }
    (fields, required)
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

    // Every list documents what its items are: never an item schema that says nothing
    // (`{}`).
    for path in vigil_gateway::LIST_ROUTES {
        let all = document["paths"][*path]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"]["allOf"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path} answers a page"));
        let items = all
            .iter()
            .find_map(|s| s["properties"]["items"]["items"].as_object());
        let item = items.unwrap_or_else(|| panic!("GET {path} documents no item type: {all:?}"));
        let name = item["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("GET {path}: an item is not a named type: {item:?}"));
        let schema = &document["components"]["schemas"][name];
        let (fields, required) = fields_of(&document, schema);
        assert!(fields > 0, "GET {path}: {name} names its fields: {schema}");
        assert!(
            required > 0,
            "GET {path}: {name} says which fields every item has: {schema}"
        );
    }
    assert_eq!(
        document["paths"]["/api/v1/events"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["allOf"][1]["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/RecordedEvent",
        "the log's items are recorded events"
    );

    let dir = tempfile::tempdir().unwrap();
    let (_driver, client) = browser(
        &dir.path().join("profile"),
        &dir.path().join("chromedriver.log"),
    )
    .await;
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
