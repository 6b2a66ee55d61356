//! The operations console as a person uses it, for the console's browser tests: `vigil up`
//! with its HTTP API (`Up`), the reference import, and the steps in the page (log in, open a
//! tab, open an item, fill and send an action's form, read the result line).

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use fantoccini::Client;
use gateway::auth::Role;
use serde_json::{Value, json};

use super::browser::{js, wait_js};

/// Runs `scenario` in headless Chromium against a fresh `vigil up` whose register holds
/// `users` (see [`add_users`]); on a failure, a screenshot `<name>-failed.png` in the target
/// directory and `vigil up`'s stderr, then the panic goes on.
pub async fn in_the_console(
    name: &str,
    users: &[(&str, Role)],
    scenario: impl AsyncFnOnce(&Client, &Up, &Path),
) {
    use futures::FutureExt;
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    add_users(&data_dir, users);
    let (_driver, client) = super::browser::browser(
        &dir.path().join("chromium-profile"),
        &dir.path().join("chromedriver.log"),
    )
    .await;
    let up = Up::start(&data_dir).await;
    let outcome = std::panic::AssertUnwindSafe(scenario(&client, &up, dir.path()))
        .catch_unwind()
        .await;
    if outcome.is_err()
        && let Ok(png) = client.screenshot().await
    {
        let _ = std::fs::write(
            super::browser::target_dir().join(format!("{name}-failed.png")),
            png,
        );
    }
    let _ = client.close().await;
    if let Err(panic) = outcome {
        eprintln!("vigil up stderr:\n{}", up.stderr());
        std::panic::resume_unwind(panic);
    }
}

/// How long a step in the page may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Users `(username, role)` with the password "<username> password", in `data_dir`'s register.
pub fn add_users(data_dir: &Path, users: &[(&str, Role)]) {
    let mut register = gateway::auth::Users::load(data_dir).unwrap();
    for (username, role) in users {
        register
            .put(gateway::auth::User {
                username: (*username).into(),
                role: *role,
                scope: None,
                agency: None,
                password_hash: gateway::auth::hash_password(&format!("{username} password"))
                    .unwrap(),
            })
            .unwrap();
    }
}

/// `vigil up` (the shared test centre), stopped cleanly when dropped (its nats-server with
/// it), and the console tests' own steps on it.
pub struct Up(testkit::centre::Centre);

impl std::ops::Deref for Up {
    type Target = testkit::centre::Centre;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Up {
    pub async fn start(data_dir: &Path) -> Self {
        Self(super::up().data_dir(data_dir).start().await)
    }

    pub fn stderr(&self) -> String {
        self.up_stderr()
    }

    /// The wall screen's address as `vigil up` printed it (with its token).
    pub fn wall_url(&self) -> String {
        self.banner()
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("wall screen    : "))
            .and_then(|rest| rest.split_whitespace().next())
            .expect("vigil up printed the wall screen's address")
            .to_owned()
    }

    /// A token for checking through the API, as `role`.
    pub fn token(&self, user: &str, role: Role) -> String {
        let auth = gateway::auth::Auth::open(self.data_dir(), vec![]).unwrap();
        auth.issue(user, role, None, None, Duration::from_secs(1800), "session")
            .unwrap()
            .0
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let r = self.0.call(method, path, token, body).await;
        (r.status, r.json())
    }

    /// Imports reference `lines` (JSON Lines, see ops/reference) with `vigil import`.
    pub fn import(&self, file: &Path, lines: &[Value]) {
        let text: Vec<String> = lines.iter().map(Value::to_string).collect();
        std::fs::write(file, text.join("\n")).unwrap();
        self.0.import(file);
    }

    /// Sends `body` until a 2xx (the services may still be reading the import).
    pub async fn given(&self, method: &str, path: &str, token: &str, body: Value) -> Value {
        let answer = testkit::eventually(WAIT, || {
            let body = body.clone();
            async move {
                let (status, v) = self.call(method, path, token, Some(&body)).await;
                (status < 300).then_some(v)
            }
        })
        .await;
        answer.unwrap_or_else(|| panic!("{method} {path} {body} was not taken"))
    }
}

/// The items of a list answer: `{items}` (one list shape), `{<key>}`, or a bare array.
pub fn items<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v.get("items")
        .or_else(|| v.get(key))
        .unwrap_or(v)
        .as_array()
        .unwrap_or_else(|| panic!("a list of {key}: {v}"))
}

// ---------------------------------------------------------------- the console, as a person

pub async fn login(client: &Client, username: &str) {
    js(
        client,
        r#"const [u, p] = arguments;
           document.getElementById("username").value = u;
           document.getElementById("password").value = p;
           document.getElementById("login").requestSubmit(); return null;"#,
        vec![json!(username), json!(format!("{username} password"))],
    )
    .await;
    wait_js(
        client,
        WAIT,
        &format!("{username} is logged in"),
        r#"const w = document.querySelector('[data-testid="who"]');
           return {who: w?.textContent ?? "", role: w?.dataset.role ?? ""};"#,
        vec![],
        |v| v["who"].as_str().unwrap_or("").starts_with(username) && v["role"] != "",
    )
    .await;
}

pub async fn logout(client: &Client) {
    js(
        client,
        r#"document.querySelector('[data-testid="logout"]').click(); return null;"#,
        vec![],
    )
    .await;
}

/// Opens tab `name` and waits for its list to be read.
pub async fn tab(client: &Client, name: &str) {
    wait_js(
        client,
        WAIT,
        &format!("the {name} tab opens"),
        r#"const [name] = arguments;
           document.querySelector(`[data-testid="tab-${name}"]`).click();
           return document.querySelector(`[data-testid="tab-${name}"]`).getAttribute("aria-selected") === "true"
             && Boolean(document.getElementById(name));"#,
        vec![json!(name)],
        |v| v == &json!(true),
    )
    .await;
}

/// Opens item `id` of the list whose rows are `prefix`, and waits until its detail shows
/// `ready` (a data-testid inside the detail).
pub async fn open(client: &Client, prefix: &str, id: &str, ready: &str) {
    wait_js(
        client,
        WAIT,
        &format!("{prefix} {id} opens with {ready}"),
        r#"const [prefix, id, ready] = arguments;
           const row = document.querySelector(`[data-testid="${prefix}"][data-id="${id}"]`);
           if (!row) return "no row";
           const detail = document.querySelector(`[data-testid="${prefix}-detail"]`);
           if (!detail.querySelector(`[data-testid="${ready}"]`)) {
             row.querySelector(`[data-testid="${prefix}-open"]`).click();
             return "opening";
           }
           return "open";"#,
        vec![json!(prefix), json!(id), json!(ready)],
        |v| v == "open",
    )
    .await;
}

/// The section's result line: {text, error, position}.
pub async fn result(client: &Client, testid: &str) -> Value {
    js(
        client,
        r#"const [id] = arguments; const r = document.querySelector(`[data-testid="${id}"]`);
           return r && !r.hidden ? {text: r.textContent, error: r.dataset.error, position: Number(r.dataset.position ?? 0)} : {text: null, position: 0};"#,
        vec![json!(testid)],
    )
    .await
}

/// Presses `button` (a data-testid inside the open item's detail, or anywhere if
/// `anywhere`), fills form `form` (`id` → value; ids as the console names them) and submits
/// it, confirming when the form asks to; waits for the result line `result_id` to start with
/// `expect` at a new log position (or with `expect` as an error when `refused`). Returns the
/// result line.
#[allow(clippy::too_many_arguments)]
pub async fn step(
    client: &Client,
    scope: &str,
    button: Option<&str>,
    form: &str,
    fields: Value,
    result_id: &str,
    expect: &str,
    refused: bool,
) -> Value {
    let before = result(client, result_id).await["position"]
        .as_u64()
        .unwrap_or(0);
    let pressed = js(
        client,
        r#"const [scope, button, form, fields] = arguments;
           if (button) {
             const b = document.querySelector(`[data-testid="${scope}"] [data-testid="${button}"]`);
             if (!b) return `no ${button} in ${scope}`;
             b.click();
           }
           const f = document.querySelector(`[data-testid="${form}"]`);
           if (!f) return `no form ${form}`;
           for (const [id, v] of Object.entries(fields)) {
             const e = document.getElementById(id);
             if (!e) return `no field ${id}`;
             if (e.type === "checkbox") { if (e.checked !== v) e.click(); continue; }
             e.value = v;
             e.dispatchEvent(new Event("input", {bubbles: true}));
             e.dispatchEvent(new Event("change", {bubbles: true}));
           }
           f.requestSubmit();
           return "sent";"#,
        vec![json!(scope), json!(button), json!(form), fields],
    )
    .await;
    assert_eq!(pressed, "sent", "{form}");
    let confirmed = std::cell::Cell::new(false);
    wait_js(
        client,
        WAIT,
        &format!("{form}: {expect}"),
        r#"const [id, form] = arguments;
           const r = document.querySelector(`[data-testid="${id}"]`);
           const f = document.querySelector(`[data-testid="${form}"]`);
           const confirm = f?.querySelector('[data-testid$="-confirm-text"]');
           return {text: r && !r.hidden ? r.textContent : null, error: r?.dataset.error ?? null,
                   position: Number(r?.dataset.position ?? 0), confirm: confirm ? confirm.textContent : null,
                   form_error: f?.querySelector('[role="alert"]:not([hidden])')?.textContent ?? null};"#,
        vec![json!(result_id), json!(form)],
        |v| {
            if let Some(err) = v["form_error"].as_str().filter(|e| !e.is_empty()) {
                panic!("{form} refused by the page: {err}");
            }
            v["text"].as_str().is_some_and(|t| t.starts_with(expect))
                && (refused
                    || (v["error"] == "false" && v["position"].as_u64().unwrap_or(0) > before))
                || (!confirmed.get() && v["confirm"].is_string() && {
                    confirmed.set(true);
                    true
                })
        },
    )
    .await;
    if confirmed.get() {
        js(
            client,
            r#"const [form] = arguments; document.querySelector(`[data-testid="${form}"]`).requestSubmit(); return null;"#,
            vec![json!(form)],
        )
        .await;
        wait_js(
            client,
            WAIT,
            &format!("{form} confirmed: {expect}"),
            r#"const [id] = arguments; const r = document.querySelector(`[data-testid="${id}"]`);
               return {text: r && !r.hidden ? r.textContent : null, error: r?.dataset.error ?? null, position: Number(r?.dataset.position ?? 0)};"#,
            vec![json!(result_id)],
            |v| {
                v["text"].as_str().is_some_and(|t| t.starts_with(expect))
                    && v["error"] == "false"
                    && v["position"].as_u64().unwrap_or(0) > before
            },
        )
        .await;
    }
    let r = result(client, result_id).await;
    eprintln!("console: {form}: {}", r["text"]);
    if refused {
        assert_eq!(r["error"], "true", "{r}");
    } else {
        assert!(r["text"].as_str().unwrap().contains("log position"), "{r}");
    }
    r
}

/// Whether `testid` is in the open item's detail of `prefix` now.
pub async fn in_detail(client: &Client, prefix: &str, testid: &str) -> bool {
    js(
        client,
        r#"const [prefix, t] = arguments;
           return Boolean(document.querySelector(`[data-testid="${prefix}-detail"] [data-testid="${t}"]`));"#,
        vec![json!(prefix), json!(testid)],
    )
    .await
        == json!(true)
}
