//! The audit of refusals is not an amplifier (issue 13, item 6: 2,000 anonymous GETs in
//! 6.6 s added 2,000 fsync'd events, 380 KB → 2.2 MB). Against a real gateway, audit
//! service, store and nats-server: refusals of callers without a valid token become a handful
//! of counted events; refusals of a valid token stay one event each.

// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use events::audit::{ACCESS_DENIED, AccessDenied};
use runtime::StoreClient;
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use vigil_gateway::auth::{Auth, Role};

struct Centre {
    _nats: NatsServer,
    _dir: tempfile::TempDir,
    store: StoreClient,
    addr: SocketAddr,
    /// The gateway alone: the store and the audit service outlive it, as when a gateway
    /// process is stopped in a running centre.
    gateway_stop: CancellationToken,
    gateway: tokio::task::JoinHandle<anyhow::Result<()>>,
    _rest_stop: tokio_util::sync::DropGuard,
    screen_token: String,
}

async fn start() -> Centre {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let rest = CancellationToken::new();
    let config = store::StoreConfig::new(dir.path().join("store"));
    tokio::spawn(store::run(nats.connect().await, config, rest.clone()));
    let store = StoreClient::new(nats.connect().await, Duration::from_secs(5));
    testkit::eventually(Duration::from_secs(10), || {
        let s = store.clone();
        async move { s.read(1, 1).await.ok() }
    })
    .await
    .unwrap();
    tokio::spawn(audit::run(nats.connect().await, rest.clone()));
    let auth = Arc::new(Auth::open(dir.path(), vec![]).unwrap());
    let (screen_token, _) = auth
        .issue(
            "screen",
            Role::WallScreen,
            None,
            None,
            Duration::from_secs(3600),
            "api",
        )
        .unwrap();
    let gateway_stop = CancellationToken::new();
    let (addr, gateway) = vigil_gateway::start(
        "127.0.0.1:0".parse().unwrap(),
        nats.connect().await,
        auth,
        gateway_stop.clone(),
    )
    .await
    .unwrap();
    Centre {
        _nats: nats,
        _dir: dir,
        store,
        addr,
        gateway_stop,
        gateway,
        _rest_stop: rest.drop_guard(),
        screen_token,
    }
}

/// Every `AccessDenied` in the log.
async fn denied(store: &StoreClient) -> Vec<AccessDenied> {
    let mut out = Vec::new();
    let mut from = 1;
    loop {
        let (page, _) = store.read(from, 500).await.unwrap();
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        out.extend(
            page.iter()
                .filter(|e| e.event_type == ACCESS_DENIED)
                .map(|e| serde_json::from_value(e.data.clone()).unwrap()),
        );
    }
    out
}

async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> u16 {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    testkit::http::request(addr, "GET", path, &headers, None)
        .await
        .unwrap()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_refusals_are_counted_not_recorded_one_by_one() {
    let c = start().await;
    // 2,000 refused requests without a valid token, 8 at a time, as the probe sent them:
    // no token on the log, a forged token on resources whose ids differ every time.
    let statuses = futures::future::join_all((0..8).map(|worker| {
        let addr = c.addr;
        async move {
            let mut statuses = Vec::new();
            for i in 0..250 {
                let id = uuid::Uuid::new_v4();
                let status = match (worker + i) % 4 {
                    0 | 1 => get(addr, "/api/v1/events", None).await,
                    2 => {
                        get(
                            addr,
                            &format!("/api/v1/incidents/{id}"),
                            Some("forged.token.x"),
                        )
                        .await
                    }
                    _ => get(addr, &format!("/api/v1/orders/{id}"), None).await,
                };
                statuses.push(status);
            }
            statuses
        }
    }))
    .await
    .concat();
    assert_eq!(statuses.len(), 2000);
    let unauthorized = statuses.iter().filter(|s| **s == 401).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(unauthorized + limited, 2000, "only 401 and 429");
    assert!(limited > 0, "the address was rate-limited past its burst");

    // Stopping the gateway records the window it was counting.
    c.gateway_stop.cancel();
    tokio::time::timeout(Duration::from_secs(20), c.gateway)
        .await
        .expect("the gateway stops")
        .unwrap()
        .unwrap();
    let records = denied(&c.store).await;
    // (3 routes) × (their code, rate_limited): a handful, not 2,000.
    assert!(
        records.len() <= 6,
        "{} records: {records:#?}",
        records.len()
    );
    assert_eq!(records.iter().map(|r| r.count).sum::<u64>(), 2000);
    let count_of = |code: &str| -> u64 {
        records
            .iter()
            .filter(|r| r.code == code)
            .map(|r| r.count)
            .sum()
    };
    assert_eq!(count_of("rate_limited"), limited as u64);
    assert_eq!(
        count_of("unauthorized") + count_of("invalid_token"),
        unauthorized as u64
    );
    for r in &records {
        assert_eq!(r.peer.as_deref(), Some("127.0.0.1"));
        assert!(r.actor.is_none(), "{r:?}");
        assert!(r.until.is_some_and(|u| u >= r.at), "{r:?}");
        assert!(
            [
                "/api/v1/events",
                "/api/v1/incidents/{id}",
                "/api/v1/orders/{id}"
            ]
            .contains(&r.path.as_str()),
            "the route's pattern, not each id: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_of_a_valid_token_is_recorded_alone() {
    let c = start().await;
    // A wall screen may not read the log: five refusals that name it.
    for _ in 0..5 {
        assert_eq!(
            get(c.addr, "/api/v1/events", Some(&c.screen_token)).await,
            403
        );
    }
    // Recorded at once, without waiting for a window or a shutdown.
    let records = testkit::eventually(Duration::from_secs(10), || async {
        let r = denied(&c.store).await;
        (r.len() >= 5).then_some(r)
    })
    .await
    .expect("five records");
    assert_eq!(records.len(), 5, "{records:#?}");
    for r in &records {
        assert_eq!(r.count, 1);
        assert_eq!(r.until, None);
        assert_eq!(r.code, "forbidden");
        assert_eq!(r.actor.as_deref(), Some("screen"));
        assert_eq!(r.role.as_deref(), Some("wall_screen"));
    }
    c.gateway_stop.cancel();
}
