//! The mirror of the centre's events at a field site, for real: `vigil up --leaf-addr` as
//! the centre, two `vigil site` processes (of AF and of IQ) with their own nats-servers as
//! leaf nodes. Events are appended at the centre (as the `cli` user); each site's bus is
//! read with an unmodified `runtime::catchup` subscription, as a gateway at the site reads
//! it, and must show exactly its scope's events, in centre order, at local positions 1..n
//! without a gap, never another country's: before the sites start, live, across the
//! centre's nats-server and a site's nats-server killed with -9 while the centre appends,
//! and after the site itself is killed with -9 while the centre appends.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use async_nats::Client;
use common::site::{Site, centre, cli_store};
use events::{AppendRequest, ExpectedVersion, NewEvent, RecordedEvent, StreamName};
use futures::StreamExt;
use runtime::StoreClient;
use runtime::catchup::{CatchUp, CatchUpConfig};
use runtime::nats::Mode;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// What the centre appended, by where it must end up.
#[derive(Default)]
struct Expected {
    af: Vec<Uuid>,
    iq: Vec<Uuid>,
    /// In no site's scope (restricted, another agency's, travel).
    none: Vec<Uuid>,
}

/// Appends one event to `stream` (retrying across a nats-server restart); returns its id.
async fn append(store: &StoreClient, stream: &StreamName, kind: &str, data: Value) -> Uuid {
    let id = Uuid::new_v4();
    let req = AppendRequest {
        after: None,
        stream: stream.clone(),
        expected_version: ExpectedVersion::Any,
        events: vec![NewEvent {
            id,
            event_type: kind.to_owned(),
            v: 1,
            data,
            meta: events::Meta {
                actor: Some("cli".into()),
                source: Some("cli".into()),
                ..Default::default()
            },
        }],
    };
    store
        .append_retrying(&req, Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("append {kind}: {e}"));
    id
}

fn stream(category: &str) -> StreamName {
    StreamName::parse(&format!("{category}-{}", Uuid::new_v4())).unwrap()
}

fn incident(country: &str, i: usize) -> Value {
    json!({"country": country, "category": "crime", "severity": 2,
           "title": format!("Mirror test {i}"), "occurred_at": testkit::recent(),
           "reporter": "amina"})
}

/// Reference data: a station and a person in each country, an agency working in both.
async fn reference(store: &StoreClient, x: &mut Expected) {
    for (country, station, list) in [("AF", "AFG-KBL", &mut x.af), ("IQ", "IRQ-BGW", &mut x.iq)] {
        let s = append(
            store,
            &stream("station"),
            "DutyStationRegistered",
            json!({"station": station, "country": country, "area": station, "name": station}),
        )
        .await;
        let p = append(
            store,
            &stream("person"),
            "PersonRegistered",
            json!({"person": format!("P-{station}"), "name": "Test Person", "agency": "wfp",
                   "nationality": "KE", "duty_station": station}),
        )
        .await;
        list.extend([s, p]);
    }
    let a = append(
        store,
        &stream("agency"),
        "AgencyRegistered",
        json!({"agency": "wfp", "name": "WFP", "countries": ["AF", "IQ"]}),
    )
    .await;
    x.af.push(a);
    x.iq.push(a);
}

/// One round of the centre's work: incidents (one followed up), a level, a broadcast to all
/// agencies, and what no site may see (a hostage case, a broadcast to one agency, a
/// clearance).
async fn round(store: &StoreClient, i: usize, x: &mut Expected) {
    let af = stream("incident");
    x.af.push(append(store, &af, "IncidentReported", incident("AF", i)).await);
    x.af.push(append(store, &af, "IncidentVerified", json!({"by": "duty"})).await);
    x.iq.push(
        append(
            store,
            &stream("incident"),
            "IncidentReported",
            incident("IQ", i),
        )
        .await,
    );
    x.none.push(
        append(
            store,
            &stream("hostage"),
            "HostageCaseOpened",
            json!({"incident_id": Uuid::new_v4(), "country": "AF", "persons": ["P-AFG-KBL"]}),
        )
        .await,
    );
    x.af.push(
        append(
            store,
            &stream("level"),
            "AreaSecurityLevelSet",
            json!({"area": "AFG-KBL", "country": "AF", "level": 3, "reason": format!("round {i}")}),
        )
        .await,
    );
    let broadcast = |audience: Value| {
        json!({"title": format!("Round {i}"), "body": "Test", "severity": "low",
               "audience": audience, "requires_ack": false, "exercise": true})
    };
    let all = append(
        store,
        &stream("broadcast"),
        "BroadcastIssued",
        broadcast(json!("all_agencies")),
    )
    .await;
    x.af.push(all);
    x.iq.push(all);
    x.none.push(
        append(
            store,
            &stream("clearance"),
            "ClearanceRequested",
            json!({"person": "P-AFG-KBL", "legs": [{"country": "AF"}]}),
        )
        .await,
    );
}

/// A client of site `site`'s bus that reconnects, as a gateway's does.
async fn bus(site: &Site) -> Client {
    drop(site.client().await);
    let creds = runtime::nats_auth::load(&site.dir)
        .unwrap()
        .unwrap()
        .credentials(&runtime::nats_sites::user_of(&site.name));
    let url = format!("nats://{}", site.listen);
    runtime::nats::connect(&url, "mirror-test", creds, Mode::Service)
        .await
        .unwrap()
}

/// Reads the site's bus with `runtime::catchup` until it holds `expected.len()` events, then
/// a little longer; returns them.
async fn mirror_reads(
    sub: &mut CatchUp,
    seen: &mut Vec<RecordedEvent>,
    expected: &[Uuid],
    site: &Site,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < expected.len() {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(e)) => seen.push(e),
            _ => panic!(
                "site {} shows {} of {} events; log:\n{}",
                site.name,
                seen.len(),
                expected.len(),
                site.log()
            ),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
        panic!("site {} shows more than its scope: {extra:?}", site.name);
    }
    let positions: Vec<u64> = seen.iter().map(|e| e.position).collect();
    let gap_free: Vec<u64> = (1..=seen.len() as u64).collect();
    assert_eq!(positions, gap_free, "local positions 1..n");
    let ids: Vec<Uuid> = seen.iter().map(|e| e.id).collect();
    assert_eq!(
        ids, expected,
        "site {}: its scope, in centre order, once",
        site.name
    );
}

fn follow(client: Client, stop: &CancellationToken) -> CatchUp {
    let mut config = CatchUpConfig::new("mirror-test", 0);
    config.page = 7;
    CatchUp::start(client, config, stop.clone())
}

fn kill9(pid_file: &std::path::Path) {
    let pid = std::fs::read_to_string(pid_file).unwrap();
    assert!(
        Command::new("kill")
            .args(["-KILL", pid.trim()])
            .status()
            .unwrap()
            .success()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_mirrors_its_scope_gap_free_once_through_cuts_and_a_kill9() {
    let (mut c, leaf) = centre().await;
    let store = cli_store(&c, "mirror-test").await;
    let mut x = Expected::default();
    reference(&store, &mut x).await;
    round(&store, 0, &mut x).await;

    // Sites that start after the centre's work: they catch up.
    let temp = tempfile::tempdir().unwrap();
    let mut kabul = Site::issue_and_start_in(&c, &leaf, "kabul", "AF", temp.path());
    let basra = Site::issue_and_start_in(&c, &leaf, "basra", "IQ", temp.path());
    let (kabul_bus, basra_bus) = (bus(&kabul).await, bus(&basra).await);
    let stop = CancellationToken::new();
    let (mut af, mut iq) = (
        follow(kabul_bus.clone(), &stop),
        follow(basra_bus.clone(), &stop),
    );
    let (mut af_seen, mut iq_seen) = (vec![], vec![]);
    mirror_reads(&mut af, &mut af_seen, &x.af, &kabul).await;
    mirror_reads(&mut iq, &mut iq_seen, &x.iq, &basra).await;

    // Another site's subjects carry nothing to this one.
    let mut other_feed = kabul_bus
        .subscribe(runtime::nats_sites::events_subject("basra"))
        .await
        .unwrap();
    let other_read = kabul_bus
        .request(
            runtime::nats_sites::read_subject("basra"),
            br#"{"after":0}"#.to_vec().into(),
        )
        .await;
    assert!(
        matches!(&other_read, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{other_read:?}"
    );

    // Live.
    round(&store, 1, &mut x).await;
    mirror_reads(&mut af, &mut af_seen, &x.af, &kabul).await;
    mirror_reads(&mut iq, &mut iq_seen, &x.iq, &basra).await;
    let leaked = tokio::time::timeout(Duration::from_secs(1), other_feed.next()).await;
    assert!(leaked.is_err(), "basra's feed reached kabul: {leaked:?}");

    // The store's API on the site's bus: read-only, the stream of an incident of its scope
    // whole, another country's not at all.
    let site_store = StoreClient::new(kabul_bus.clone(), Duration::from_secs(10));
    let refused = site_store
        .append(&AppendRequest {
            after: None,
            stream: stream("incident"),
            expected_version: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: Uuid::new_v4(),
                event_type: "IncidentReported".into(),
                v: 1,
                data: incident("AF", 9),
                meta: Default::default(),
            }],
        })
        .await;
    assert!(
        matches!(&refused, Err(runtime::store_client::ClientError::Store(e)) if e.code == events::ErrorCode::Forbidden),
        "{refused:?}"
    );
    let reported = af_seen
        .iter()
        .find(|e| e.event_type == "IncidentReported")
        .unwrap();
    let (events, version) = site_store
        .read_stream(&reported.stream, 1, 100)
        .await
        .unwrap();
    assert_eq!((events.len(), version), (2, 2));
    let iq_incident = iq_seen
        .iter()
        .find(|e| e.event_type == "IncidentReported")
        .unwrap();
    let (events, version) = site_store
        .read_stream(&iq_incident.stream, 1, 100)
        .await
        .unwrap();
    assert_eq!((events.len(), version), (0, 0));
    let statuses =
        runtime::store_client::collect_statuses(&kabul_bus, Duration::from_secs(5), |s| {
            !s.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(statuses.len(), 1, "the mirror alone answers: {statuses:?}");
    assert_eq!(statuses[0].role, "mirror");
    assert_eq!(statuses[0].head, af_seen.len() as u64);

    // Cuts while the centre works: its nats-server killed with -9 (`vigil up` starts it
    // again; the sites' leaf links redial), then kabul's own nats-server (the site starts
    // it again). What the live feed lost, the catch-up repairs.
    kill9(&c.data_dir().join("nats/nats-server.pid"));
    for i in 2..5 {
        round(&store, i, &mut x).await;
    }
    kill9(&kabul.dir.join("nats/nats-server.pid"));
    for i in 5..8 {
        round(&store, i, &mut x).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    mirror_reads(&mut af, &mut af_seen, &x.af, &kabul).await;
    mirror_reads(&mut iq, &mut iq_seen, &x.iq, &basra).await;
    assert!(
        kabul
            .log()
            .contains("slices of the centre's feed were lost"),
        "the live feed lost slices during the cut, and the catch-up repaired them:\n{}",
        kabul.log()
    );

    // kill -9 of the site while the centre works: it resumes from its mirror (the same
    // events at the same positions) and catches up on the rest.
    stop.cancel();
    drop((af, kabul_bus));
    kabul.kill9();
    for i in 8..10 {
        round(&store, i, &mut x).await;
    }
    kabul.start();
    let kabul_bus = bus(&kabul).await;
    let stop = CancellationToken::new();
    let mut af = follow(kabul_bus.clone(), &stop);
    let before = af_seen.clone();
    let mut after = vec![];
    mirror_reads(&mut af, &mut after, &x.af, &kabul).await;
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "the mirror kept its log"
    );
    assert!(
        x.none.iter().all(|id| !after.iter().any(|e| e.id == *id)),
        "nothing of no site's scope"
    );
    stop.cancel();
    drop(basra);
    c.stop().await;
}
