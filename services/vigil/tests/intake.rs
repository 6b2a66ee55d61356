//! Field intake against the real parts, each its own `vigil` process: nats-server, `vigil
//! store`, `vigil incidents`, `vigil levels`, `vigil gateway`, talked to over plain HTTP.
//!
//! What it proves: bad input is refused with a JSON error and stores nothing; a report sent
//! 20 times at once is stored once (one 201, the rest 200 with the same body); a report sent
//! while the store or the service is down is answered 503 and, resent after recovery, stored
//! once; field officers stay in their country; the lifecycle and the levels work end to end;
//! the field rate limit answers 429 with Retry-After.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{check_log, read_all, wait_ready};
use runtime::StoreClient;
use serde_json::{Value, json};
use testkit::http::{Answer, json as send};
use uuid::Uuid;

/// The shared test centre as separate processes (nats-server, `vigil store`, `vigil
/// incidents`, `vigil levels`, `vigil gateway`) and a store client of this test's own.
struct Centre {
    centre: testkit::centre::Centre,
    store: StoreClient,
}

impl std::ops::Deref for Centre {
    type Target = testkit::centre::Centre;

    fn deref(&self) -> &Self::Target {
        &self.centre
    }
}

impl std::ops::DerefMut for Centre {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.centre
    }
}

impl Centre {
    async fn start(field_rate: u32) -> Self {
        // The gateway is ready before the incidents service has subscribed: the centre waits
        // until the service answers, so the first report is not refused as "not running".
        let mut centre = common::parts()
            .service("incidents", Some("/api/v1/incidents"))
            .service("levels", None)
            .env("VIGIL_FIELD_REPORTS_PER_MINUTE", &field_rate.to_string())
            .token("duty", "duty.ana", "duty_officer", None)
            .token("fso", "fso.ali", "field_officer", Some("SO"))
            .token("fso_ke", "fso.wanjiru", "field_officer", Some("KE"))
            .start()
            .await;
        let store = StoreClient::new(centre.nats().connect().await, Duration::from_secs(5));
        wait_ready(&store).await;
        Self { centre, store }
    }

    async fn head(&self) -> u64 {
        self.store.read(u64::MAX, 1).await.unwrap().1
    }
}

/// When the reported fire happened: ten minutes before the test began, the same for every
/// report of the run (a retry must carry the same content). A fixed date would age past the
/// 30 days a report may be late.
fn occurred_at() -> &'static str {
    static AT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AT.get_or_init(|| {
        (time::OffsetDateTime::now_utc() - time::Duration::minutes(10))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    })
}

fn report(id: Uuid) -> Value {
    json!({"id": id, "country": "SO", "category": "armed_conflict", "severity": 4,
           "title": "Exchange of fire near the compound", "occurred_at": occurred_at(),
           "location": {"lat": 2.0469, "lon": 45.3182, "accuracy_m": 30.0},
           "casualties": {"killed": 0, "injured": 2}})
}

fn assert_refused(a: &Answer, status: u16, what: &str) {
    assert_eq!(a.status, status, "{what}: {} {}", a.head, a.body);
    let v = a.json();
    assert!(
        v["error"]["code"].is_string() && v["error"]["message"].is_string(),
        "{what}: the error is JSON: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_are_stored_once_and_bad_input_changes_nothing() {
    let c = Centre::start(100_000).await;
    let head = c.head().await;

    // Bad input: a clear JSON error, nothing stored.
    let mut cases: Vec<(Value, u16, &str)> = vec![];
    for (field, bad) in [
        ("country", json!("XX")),
        ("severity", json!("high")),
        ("severity", json!(9)),
        ("occurred_at", json!("yesterday")),
        ("category", json!("war")),
        ("location", json!({"lat": 95, "lon": 0})),
    ] {
        let mut body = report(Uuid::new_v4());
        body[field] = bad;
        cases.push((body, 422, field));
    }
    let mut missing = report(Uuid::new_v4());
    missing.as_object_mut().unwrap().remove("title");
    cases.push((missing, 422, "title"));
    let mut no_id = report(Uuid::new_v4());
    no_id.as_object_mut().unwrap().remove("id");
    cases.push((no_id, 422, "id"));
    let mut extra = report(Uuid::new_v4());
    extra["reporter"] = json!("someone.else");
    cases.push((extra, 422, "reporter"));
    cases.push((json!([1, 2]), 422, "map"));
    for (body, status, what) in &cases {
        let a = c
            .call("POST", "/api/v1/incidents", &c["fso"], Some(body))
            .await;
        assert_refused(&a, *status, what);
        assert!(
            a.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(what),
            "the message names {what}: {}",
            a.body
        );
    }
    let auth = format!("Bearer {}", &c["fso"]);
    let addr = c.addr();
    let raw = |ctype: &'static str, body: Vec<u8>| {
        let auth = auth.clone();
        async move {
            testkit::http::request(
                addr,
                "POST",
                "/api/v1/incidents",
                &[("Authorization", &auth), ("Content-Type", ctype)],
                Some(&body),
            )
            .await
            .unwrap()
        }
    };
    assert_refused(
        &raw("application/json", b"{not json".to_vec()).await,
        400,
        "malformed",
    );
    assert_refused(
        &raw("text/plain", b"{}".to_vec()).await,
        415,
        "content type",
    );
    let mut big = report(Uuid::new_v4());
    big["description"] = json!("x".repeat(1024 * 1024));
    assert_refused(
        &raw("application/json", big.to_string().into_bytes()).await,
        413,
        "1 MB body",
    );
    // Another country, and no token at all.
    let mut kenya = report(Uuid::new_v4());
    kenya["country"] = json!("KE");
    assert_refused(
        &c.call("POST", "/api/v1/incidents", &c["fso"], Some(&kenya))
            .await,
        403,
        "scope",
    );
    let a = send(
        c.addr(),
        "POST",
        "/api/v1/incidents",
        None,
        Some(&report(Uuid::new_v4())),
    )
    .await
    .unwrap();
    assert_refused(&a, 401, "no token");
    assert_eq!(c.head().await, head, "nothing refused was stored");

    // The same report 20 times at once: stored once, one 201, the same body every time.
    let id = Uuid::new_v4();
    let body = report(id);
    let sends = (0..20).map(|_| c.call("POST", "/api/v1/incidents", &c["fso"], Some(&body)));
    let answers = futures::future::join_all(sends).await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let again = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!((created, again), (1, 19), "{answers:?}");
    let first = answers[0].json();
    assert!(
        answers.iter().all(|a| a.json() == first),
        "one answer for all"
    );
    assert_eq!(first["id"], json!(id));
    let position = first["position"].as_u64().unwrap();
    let all = read_all(&c.store).await;
    assert_eq!(all.iter().filter(|e| e.id == id).count(), 1);
    assert_eq!(all[(position - 1) as usize].event_type, "IncidentReported");
    assert_eq!(
        all[(position - 1) as usize].meta.actor.as_deref(),
        Some("fso.ali")
    );
    assert_eq!(
        all[(position - 1) as usize].meta.role.as_deref(),
        Some("field_officer")
    );

    // The same id with other content is another report: 409.
    let mut changed = report(id);
    changed["severity"] = json!(1);
    let a = c
        .call("POST", "/api/v1/incidents", &c["fso"], Some(&changed))
        .await;
    assert_refused(&a, 409, "id reuse");
    assert_eq!(a.json()["error"]["code"], "id_reused");

    // Reading: within scope only, and it includes the caller's own latest change.
    let path = format!("/api/v1/incidents/{id}");
    let a = c.call("GET", &path, &c["fso"], None).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["status"], "reported");
    assert_refused(
        &c.call("GET", &path, &c["fso_ke"], None).await,
        404,
        "other country",
    );

    // The life of the incident over HTTP.
    let update = json!({"id": Uuid::new_v4(), "severity": 5, "note": "a third person hurt",
                        "casualties": {"killed": 0, "injured": 3}});
    let a = c
        .call("POST", &format!("{path}/updates"), &c["fso"], Some(&update))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let resent = c
        .call("POST", &format!("{path}/updates"), &c["fso"], Some(&update))
        .await;
    assert_eq!(resent.json(), a.json(), "a resent update is stored once");
    assert_refused(
        &c.call(
            "POST",
            &format!("{path}/verify"),
            &c["fso"],
            Some(&json!({})),
        )
        .await,
        403,
        "a field officer verifies",
    );
    let a = c
        .call(
            "POST",
            &format!("{path}/verify"),
            &c["duty"],
            Some(&json!({"note": "called the FSO"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_refused(
        &c.call(
            "POST",
            &format!("{path}/verify"),
            &c["duty"],
            Some(&json!({})),
        )
        .await,
        409,
        "verified twice",
    );
    let a = c.call("GET", &path, &c["duty"], None).await;
    let incident = a.json();
    assert_eq!(incident["status"], "verified");
    assert_eq!(incident["severity"], 5);
    assert_eq!(incident["casualties"]["injured"], 3);
    assert_eq!(incident["verified_by"], "duty.ana");
    let a = c
        .call(
            "POST",
            &format!("{path}/close"),
            &c["duty"],
            Some(&json!({"reason": "all staff safe"})),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_refused(
        &c.call(
            "POST",
            &format!("{path}/updates"),
            &c["fso"],
            Some(&json!({"note": "late"})),
        )
        .await,
        409,
        "update after close",
    );

    // Lists: filters, scope.
    let listed = testkit::eventually(Duration::from_secs(10), || async {
        let a = c
            .call(
                "GET",
                "/api/v1/incidents?status=closed&country=SO",
                &c["duty"],
                None,
            )
            .await;
        let v = a.json();
        (v["items"].as_array().is_some_and(|l| l.len() == 1)).then_some(v)
    })
    .await
    .expect("the closed incident is listed");
    assert_eq!(listed["items"][0]["id"], json!(id));
    let a = c.call("GET", "/api/v1/incidents", &c["fso_ke"], None).await;
    assert_eq!(a.json()["items"], json!([]), "KE sees none of SO's");
    assert_refused(
        &c.call("GET", "/api/v1/incidents?status=lost", &c["duty"], None)
            .await,
        422,
        "bad filter",
    );

    // Levels: areas come from `vigil import`; a duty officer sets one; the history shows it.
    let file = c.data_dir().join("reference.jsonl");
    std::fs::write(
        &file,
        "{\"kind\":\"area\",\"area\":\"SOM-BAN\",\"country\":\"SO\",\"name\":\"Banaadir\"}\n\
         {\"kind\":\"duty_station\",\"station\":\"SOM-MGQ\",\"country\":\"SO\",\"area\":\"SOM-BAN\",\"name\":\"Mogadishu\",\"lat\":2.0469,\"lon\":45.3182}\n",
    )
    .unwrap();
    for want in ["2 new or changed, 0 already", "0 new or changed, 2 already"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .args(["import", "--nats-url", c.nats_url(), "--data-dir"])
            .arg(c.data_dir())
            .arg(&file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains(want),
            "import says {stdout:?}, want {want:?}"
        );
    }
    let set = json!({"level": 5, "reason": "attacks on the airport road"});
    let a = c
        .call("PUT", "/api/v1/areas/SOM-BAN/level", &c["duty"], Some(&set))
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_refused(
        &c.call("PUT", "/api/v1/areas/NOWHERE/level", &c["duty"], Some(&set))
            .await,
        404,
        "unknown area",
    );
    assert_refused(
        &c.call(
            "PUT",
            "/api/v1/areas/SOM-BAN/level",
            &c["duty"],
            Some(&json!({"level": 7, "reason": "r"})),
        )
        .await,
        422,
        "level 7",
    );
    let a = c
        .call("GET", "/api/v1/areas/SOM-BAN/level", &c["fso"], None)
        .await;
    let history = a.json();
    assert_eq!(history["level"], 5, "{}", a.body);
    assert_eq!(history["history"][0]["set_by"], "duty.ana");
    assert_refused(
        &c.call("GET", "/api/v1/areas/SOM-BAN/level", &c["fso_ke"], None)
            .await,
        404,
        "another country's area",
    );

    check_log(&read_all(&c.store).await, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_while_the_store_or_the_service_is_down_is_503_then_stored_once() {
    let mut c = Centre::start(100_000).await;
    let id = Uuid::new_v4();
    let body = report(id);

    c.process("store").kill9();
    let a = c
        .call("POST", "/api/v1/incidents", &c["fso"], Some(&body))
        .await;
    assert_refused(&a, 503, "store down");
    assert!(
        a.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry with the same id"),
        "{}",
        a.body
    );
    c.start_again("store");
    wait_ready(&c.store).await;
    let a = c
        .call("POST", "/api/v1/incidents", &c["fso"], Some(&body))
        .await;
    assert_eq!(
        a.status, 201,
        "the resend after recovery is the first store: {}",
        a.body
    );
    let a2 = c
        .call("POST", "/api/v1/incidents", &c["fso"], Some(&body))
        .await;
    assert_eq!((a2.status, a2.json()), (200, a.json()));

    let second = Uuid::new_v4();
    c.process("incidents").kill9();
    let a = c
        .call(
            "POST",
            "/api/v1/incidents",
            &c["fso"],
            Some(&report(second)),
        )
        .await;
    assert_refused(&a, 503, "service down");
    c.start_again("incidents");
    let a = testkit::eventually(Duration::from_secs(20), || async {
        let a = c
            .call(
                "POST",
                "/api/v1/incidents",
                &c["fso"],
                Some(&report(second)),
            )
            .await;
        (a.status != 503).then_some(a)
    })
    .await
    .expect("the service is back");
    assert_eq!(a.status, 201, "{}", a.body);

    let all = read_all(&c.store).await;
    assert_eq!(all.iter().filter(|e| e.id == id).count(), 1);
    assert_eq!(all.iter().filter(|e| e.id == second).count(), 1);
    check_log(&all, &[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_submissions_are_rate_limited_per_user() {
    let c = Centre::start(2).await;
    // A burst of one, then 429 with Retry-After; other users are not affected.
    let a = c
        .call(
            "POST",
            "/api/v1/incidents",
            &c["fso"],
            Some(&report(Uuid::new_v4())),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let a = c
        .call(
            "POST",
            "/api/v1/incidents",
            &c["fso"],
            Some(&report(Uuid::new_v4())),
        )
        .await;
    assert_refused(&a, 429, "second in a burst of one");
    let retry: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let a = c
        .call(
            "POST",
            "/api/v1/incidents",
            &c["duty"],
            Some(&report(Uuid::new_v4())),
        )
        .await;
    assert_eq!(a.status, 201, "another user: {}", a.body);
}
