//! `/readyz` of a centre covers its domain services: a real nats-server, the real store on a
//! temp dir, the services as tasks, the gateway on port 0 expecting them
//! (`vigil_gateway::start_node`, as `vigil up` starts it).

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use testkit::inproc;
use vigil_gateway::auth::Auth;

async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    let a = testkit::http::request(addr, "GET", "/readyz", &[], None)
        .await
        .unwrap();
    (a.status, a.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_centre_is_ready_only_once_every_service_answers_ready() {
    let mut centre = inproc::Centre::start("gateway", |nats, dir, stop| {
        store::run(nats, store::StoreConfig::new(dir), stop)
    })
    .await;
    // Personnel that relocation's (shared) reference register must read before it is ready.
    let people = (0..300).map(|n| {
        let p = events::domain::person::PersonRegistered {
            person: format!("P-{n:06}"),
            name: format!("Person {n}"),
            agency: "unicef".into(),
            nationality: events::validate::Country::parse("KE").unwrap(),
            duty_station: "SOM-MGQ".into(),
            dependants: 0,
            security_officer: false,
            essential: false,
        };
        (events::domain::person::stream_for(&p.person), p.into())
    });
    centre.import(people).await;
    centre
        .instance(runtime::host::run::<incidents::Incidents>)
        .await;
    let auth = Arc::new(Auth::open(centre.dir(), vec![]).unwrap());
    let (addr, _task) = vigil_gateway::start_node(
        "127.0.0.1:0".parse().unwrap(),
        centre.nats().connect().await,
        auth,
        centre.stopping(),
        vigil_gateway::ConnLimits::default(),
        None,
        &["incidents", "relocation"],
    )
    .await
    .unwrap();

    // Relocation is not running: not ready, and the body says which service it waits for.
    let waiting = testkit::eventually(Duration::from_secs(20), || async move {
        let (status, body) = readyz(addr).await;
        let services = &body["services"];
        (status == 503
            && body["caught_up"] == true
            && services["waiting_for"].as_array()?.len() == 1)
            .then(|| services.clone())
    })
    .await
    .expect("the board caught up while relocation is missing");
    assert_eq!(waiting["ready"], false);
    assert_eq!(waiting["waiting_for"][0]["service"], "relocation");
    assert_eq!(waiting["waiting_for"][0]["reason"], "no instance answered");

    // Once it runs and has read the log (and the personnel), the centre is ready.
    centre
        .instance(runtime::host::run::<relocation::Relocation>)
        .await;
    let (status, body) = testkit::eventually(Duration::from_secs(20), || async move {
        let (status, body) = readyz(addr).await;
        (status == 200).then_some((status, body))
    })
    .await
    .expect("ready once relocation has read the log");
    assert_eq!(status, 200);
    assert_eq!(body["services"]["ready"], true);
    assert_eq!(body["services"]["waiting_for"], serde_json::json!([]));
}
