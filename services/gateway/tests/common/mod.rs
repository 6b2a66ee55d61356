//! Shared by the gateway's tests: the in-process test centre ([`testkit::inproc::Centre`]: a
//! real nats-server, the real store on a temp dir, and the domain services behind the
//! gateway's routes as tasks; test-only: in production they are separate processes or tasks
//! of `vigil up`, never a dependency of the gateway), and what is the gateway's own: a gateway
//! on port 0 with its own signing key, a user and two tokens.

#![allow(dead_code)]
// Test code: a panic here is a failed assertion, not a crash in production.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use runtime::StoreClient;
use testkit::NatsServer;
use testkit::inproc;
use tokio_util::sync::CancellationToken;
use vigil_gateway::auth::{Auth, Role, User, Users, hash_password};

/// The password of the user `ana` (duty officer).
pub const ANA_PASSWORD: &str = "correct horse battery";

/// The centre and the gateway in front of it; all of it stops on `Drop` (the inner centre's
/// stop token is the gateway's).
pub struct Center {
    centre: inproc::Centre,
    /// A client of the store.
    pub store: StoreClient,
    pub addr: SocketAddr,
    pub auth: Arc<Auth>,
    /// Fires when the centre stops: for tasks a test adds.
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
        // The gateway's tests speak HTTP, not commands: the centre's command helpers, which
        // go to `vigil.cmd.gateway.*`, are not used.
        let mut centre = inproc::Centre::start("gateway", |nats, dir, stop| {
            store::run(nats, store::StoreConfig::new(dir), stop)
        })
        .await;
        // The services behind the domain routes.
        centre
            .instance(runtime::host::run::<incidents::Incidents>)
            .await;
        centre.instance(levels::run).await;
        centre
            .instance(runtime::host::run::<relocation::Relocation>)
            .await;
        centre.instance(runtime::host::run::<surge::Surges>).await;
        centre
            .instance(runtime::host::run::<hostage::Hostage>)
            .await;
        centre
            .instance(runtime::host::run::<clearances::Clearances>)
            .await;
        centre.instance(broadcast::run).await;
        let dir = centre.dir();
        let mut users = Users::load(dir).unwrap();
        let password_hash = hash_password(ANA_PASSWORD).unwrap();
        let ana = User {
            username: "ana".into(),
            role: Role::DutyOfficer,
            scope: None,
            agency: None,
            password_hash,
        };
        users.put(ana).unwrap();
        let auth = Arc::new(Auth::open(dir, vec![]).unwrap());
        let hour = Duration::from_secs(3600);
        let (screen_token, _) = auth
            .issue("screen", Role::WallScreen, None, None, hour, "api")
            .unwrap();
        let (duty_token, _) = auth
            .issue("ana", Role::DutyOfficer, None, None, hour, "session")
            .unwrap();
        let stop = centre.stopping();
        let (addr, _task) = vigil_gateway::start_with_limits(
            "127.0.0.1:0".parse().unwrap(),
            centre.nats().connect().await,
            auth.clone(),
            stop.clone(),
            limits,
        )
        .await
        .unwrap();
        Self {
            store: centre.store().clone(),
            centre,
            addr,
            auth,
            stop,
            screen_token,
            duty_token,
        }
    }

    /// The nats-server.
    pub fn nats(&self) -> &NatsServer {
        self.centre.nats()
    }

    /// The centre's temp directory: the gateway's users and signing keys are in it.
    pub fn dir(&self) -> &Path {
        self.centre.dir()
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
        self.centre
            .append(
                events::domain::area::stream_for("SOM-BAN"),
                vec![area.into()],
                "test",
            )
            .await;
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

/// Appends reference data as `vigil import` does (actor `import`).
pub async fn import(c: &Center, stream: events::StreamName, event: events::domain::DomainEvent) {
    c.centre.import([(stream, event)]).await;
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
