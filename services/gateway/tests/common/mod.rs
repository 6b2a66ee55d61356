//! Shared by the gateway's tests: a real nats-server, a real store on a temp dir, and a
//! gateway on port 0 with its own signing key, a user and two tokens, and the domain services
//! behind its routes (test-only: in production they are separate
//! processes or tasks of `vigil up`, never a dependency of the gateway).

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use runtime::StoreClient;
use testkit::NatsServer;
use tokio_util::sync::CancellationToken;
use vigil_gateway::auth::{Auth, Role, User, Users, hash_password};

/// The password of the user `ana` (duty officer).
pub const ANA_PASSWORD: &str = "correct horse battery";

pub struct Center {
    pub nats: NatsServer,
    pub dir: tempfile::TempDir,
    pub store: StoreClient,
    pub addr: SocketAddr,
    pub auth: Arc<Auth>,
    pub stop: CancellationToken,
    /// A wall_screen token.
    pub screen_token: String,
    /// A duty_officer token.
    pub duty_token: String,
}

impl Center {
    pub async fn start() -> Self {
        Self::start_with_limits(vigil_gateway::ConnLimits::default()).await
    }

    /// [`Center::start`] with the gateway's connection limits given.
    pub async fn start_with_limits(limits: vigil_gateway::ConnLimits) -> Self {
        let nats = NatsServer::start();
        let dir = tempfile::tempdir().unwrap();
        let stop = CancellationToken::new();
        let client = nats.connect().await;
        let config = store::StoreConfig::new(dir.path().join("store"));
        tokio::spawn(store::run(client.clone(), config, stop.clone()));
        let store = StoreClient::new(client, Duration::from_secs(5));
        testkit::eventually(Duration::from_secs(10), || {
            let s = store.clone();
            async move { s.read(1, 1).await.ok() }
        })
        .await
        .unwrap();
        // The services behind the domain routes.
        tokio::spawn(runtime::host::run::<incidents::Incidents>(
            nats.connect().await,
            stop.clone(),
        ));
        tokio::spawn(levels::run(nats.connect().await, stop.clone()));
        tokio::spawn(runtime::host::run::<relocation::Relocation>(
            nats.connect().await,
            stop.clone(),
        ));
        tokio::spawn(runtime::host::run::<surge::Surges>(
            nats.connect().await,
            stop.clone(),
        ));
        tokio::spawn(runtime::host::run::<hostage::Hostage>(
            nats.connect().await,
            stop.clone(),
        ));
        tokio::spawn(runtime::host::run::<clearances::Clearances>(
            nats.connect().await,
            stop.clone(),
        ));
        tokio::spawn(broadcast::run(nats.connect().await, stop.clone()));
        let mut users = Users::load(dir.path()).unwrap();
        let password_hash = hash_password(ANA_PASSWORD).unwrap();
        let ana = User {
            username: "ana".into(),
            role: Role::DutyOfficer,
            scope: None,
            agency: None,
            password_hash,
        };
        users.put(ana).unwrap();
        let auth = Arc::new(Auth::open(dir.path(), vec![]).unwrap());
        let hour = Duration::from_secs(3600);
        let (screen_token, _) = auth
            .issue("screen", Role::WallScreen, None, None, hour, "api")
            .unwrap();
        let (duty_token, _) = auth
            .issue("ana", Role::DutyOfficer, None, None, hour, "session")
            .unwrap();
        let (addr, _task) = vigil_gateway::start_with_limits(
            "127.0.0.1:0".parse().unwrap(),
            nats.connect().await,
            auth.clone(),
            stop.clone(),
            limits,
        )
        .await
        .unwrap();
        Self {
            nats,
            dir,
            store,
            addr,
            auth,
            stop,
            screen_token,
            duty_token,
        }
    }
}

impl Center {
    /// Registers the area `SOM-BAN` (Somalia), for the level routes.
    pub async fn register_area(&self) {
        let area = events::domain::area::AreaRegistered {
            area: "SOM-BAN".into(),
            country: events::validate::Country::parse("SO").unwrap(),
            name: "Banaadir".into(),
        };
        let meta = events::Meta {
            actor: Some("test".into()),
            ..Default::default()
        };
        let event =
            events::domain::DomainEvent::from(area).to_new_event(uuid::Uuid::new_v4(), meta);
        self.store
            .append(&events::AppendRequest {
                stream: events::domain::area::stream_for("SOM-BAN"),
                expected_version: events::ExpectedVersion::Any,
                events: vec![event],
            })
            .await
            .unwrap();
    }

    /// Registers the duty station `SOM-MGQ` (Mogadishu, in the area `SOM-BAN` of Somalia).
    pub async fn register_mogadishu(&self) {
        let station = events::domain::station::DutyStationRegistered {
            station: "SOM-MGQ".into(),
            country: events::validate::Country::parse("SO").unwrap(),
            area: "SOM-BAN".into(),
            name: "Mogadishu".into(),
            lat: 2.0,
            lon: 45.3,
        };
        let stream = events::domain::station::stream_for("SOM-MGQ");
        import(self, stream, station.into()).await;
    }
}

impl Drop for Center {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Appends reference data as `vigil import` does (actor `import`).
pub async fn import(c: &Center, stream: events::StreamName, event: events::domain::DomainEvent) {
    let meta = events::Meta {
        actor: Some("import".into()),
        ..Default::default()
    };
    c.store
        .append(&events::AppendRequest {
            stream,
            expected_version: events::ExpectedVersion::Any,
            events: vec![event.try_to_new_event(uuid::Uuid::new_v4(), meta).unwrap()],
        })
        .await
        .unwrap();
}

/// One request with a bearer token, answered (a failed connection is a failed test).
pub async fn call(
    c: &Center,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
) -> testkit::http::Answer {
    testkit::http::json(c.addr, method, path, Some(token), body)
        .await
        .unwrap()
}

/// A service may still be starting: retry while it answers 503.
pub async fn call_ready(
    c: &Center,
    method: &str,
    path: &str,
    token: &str,
    body: &serde_json::Value,
) -> testkit::http::Answer {
    testkit::eventually(Duration::from_secs(15), || async {
        let a = call(c, method, path, token, Some(body)).await;
        (a.status != 503).then_some(a)
    })
    .await
    .unwrap()
}
