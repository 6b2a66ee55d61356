//! Headless Chromium for every page test (the wall screen, the field page, the console, the
//! API reference page): chromedriver on a free port with a WebDriver session on Debian's
//! Chromium, and scripts run in the page. One place, so that every browser test starts
//! Chromium with the same flags and fails the same way, naming what to install, when it is
//! missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{ChildGuard, free_port, wait_for_port};
use fantoccini::{Client, ClientBuilder};
use serde_json::{Value, json};

/// What to run when Chromium or chromedriver is missing.
pub const INSTALL: &str =
    "run `apt-get install -y chromium chromium-driver` (ops/test installs them)";

/// A binary from an environment variable, `PATH`, or Debian's places for it.
pub fn find_binary(env: &str, names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(extra.iter().map(PathBuf::from));
    dirs.iter()
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver on a free port (its log in `log`), and a WebDriver session with headless
/// Chromium using `profile` as its user data directory. Panics, naming what to install, when
/// either is missing: a page test without a browser must fail, not pass.
pub async fn browser(profile: &Path, log: &Path) -> (ChildGuard, Client) {
    let chromium = find_binary(
        "VIGIL_CHROMIUM",
        &["chromium", "chromium-browser"],
        &["/usr/bin", "/usr/lib/chromium"],
    )
    .unwrap_or_else(|| panic!("Chromium is not installed: {INSTALL}"));
    let driver = find_binary(
        "VIGIL_CHROMEDRIVER",
        &["chromedriver"],
        &["/usr/bin", "/usr/lib/chromium"],
    )
    .unwrap_or_else(|| panic!("chromedriver is not installed: {INSTALL}"));
    let port = free_port();
    let guard = ChildGuard(Some(
        Command::new(&driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display())),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL}", driver.display())),
    ));
    assert!(
        wait_for_port(port, Duration::from_secs(20)),
        "chromedriver did not listen on port {port} within 20 s"
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1920,1080",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "no WebDriver session with {} through {}: {e}\nchromedriver log:\n{}",
                chromium.display(),
                driver.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (guard, client)
}

/// Runs `script` (with `arguments`) in the current window.
pub async fn js(client: &Client, script: &str, args: Vec<Value>) -> Value {
    client
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("the script failed in the page: {e}\n{script}"))
}

/// Polls `script` every 100 ms until `ok` holds of its answer; returns the answer, or panics
/// with `what` and the last answer.
pub async fn wait_js(
    client: &Client,
    timeout: Duration,
    what: &str,
    script: &str,
    args: Vec<Value>,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let v = js(client, script, args.clone()).await;
        if ok(&v) {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "{what}: not within {timeout:?}; the page shows {v:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
