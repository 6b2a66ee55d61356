//! The domain services this binary runs, in one table: `vigil up` starts them all and
//! `vigil <service>` starts one, the same way (its own NATS user, reconnecting forever).

use std::future::Future;
use std::pin::Pin;

use async_nats::Client;
use runtime::nats::Mode;
use tokio_util::sync::CancellationToken;

type Run =
    fn(Client, CancellationToken) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A domain service: its name (also its NATS user) and how to run it.
pub struct Service {
    /// Name in subjects, NATS users and logs.
    pub name: &'static str,
    /// Runs it until the token fires.
    pub run: Run,
}

impl Service {
    /// A service the generic host serves (`runtime::host`), as its `host::Service` impl
    /// names it.
    const fn hosted<S: runtime::host::Service>() -> Self
    where
        S::Register: Default,
    {
        Service {
            name: S::NAME,
            run: |c, s| Box::pin(runtime::host::run::<S>(c, s)),
        }
    }
}

/// Every domain service in this binary.
pub const SERVICES: &[Service] = &[
    Service {
        name: "audit",
        run: |c, s| Box::pin(audit::run(c, s)),
    },
    Service::hosted::<incidents::Incidents>(),
    Service {
        name: levels::SERVICE,
        run: |c, s| Box::pin(levels::run(c, s)),
    },
    Service::hosted::<relocation::Relocation>(),
    Service::hosted::<clearances::Clearances>(),
    Service::hosted::<hostage::Hostage>(),
    Service::hosted::<surge::Surges>(),
    Service {
        name: broadcast::SERVICE,
        run: |c, s| Box::pin(broadcast::run(c, s)),
    },
];

/// Connects `service` as its own NATS user and starts it.
pub async fn spawn(
    service: &Service,
    nats_url: &str,
    credentials: Option<(String, String)>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let client = runtime::nats::connect(
        nats_url,
        &format!("vigil-{}", service.name),
        credentials,
        Mode::Service,
    )
    .await?;
    Ok(tokio::spawn((service.run)(client, shutdown)))
}

/// `vigil <service>`: runs one until a signal.
pub async fn run_one(settings: crate::cli::Resolved, name: &str) -> anyhow::Result<()> {
    let service = SERVICES
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("no service named {name}"))?;
    let shutdown = runtime::shutdown::on_signals();
    let credentials = settings.nats_credentials_for(service.name)?;
    spawn(service, &settings.nats_url, credentials, shutdown)
        .await?
        .await?
}
