//! `vigil site-user add|revoke|list` at the centre (the NATS users of field sites, see
//! `runtime::nats_sites`) and `vigil site`, the site server itself (see `site::server`),
//! composed here with the gateway on the site's own bus and data directory
//! (`gateway::start_at_site`): the site screen, the field page and the console for the
//! site's own users.
//!
//! `add` writes the site's password into the centre's `secrets/nats-sites.json` and the
//! site's credentials file (both mode 0600); the running `vigil up` reloads nats-server, so
//! the site can connect at once. `revoke` removes it: the site cannot log in again and the
//! relay refuses whatever it still sends.

use std::path::{Path, PathBuf};

use anyhow::Context;
use events::validate::Country;
use runtime::nats_sites;

use crate::cli::{Resolved, SiteArgs, SiteUserCommand};

/// `<data-dir>/leaf-url`: the leaf-node URL of the running `vigil up` (`--leaf-addr`).
pub fn leaf_url_file(data_dir: &Path) -> PathBuf {
    data_dir.join("leaf-url")
}

fn country(scope: &str) -> anyhow::Result<Country> {
    Country::parse(scope).map_err(|e| {
        anyhow::anyhow!("--scope {scope:?}: {e} (an ISO 3166-1 alpha-2 code in capitals, e.g. AF)")
    })
}

/// Runs one `vigil site-user` verb.
pub fn site_user(settings: Resolved, command: SiteUserCommand) -> anyhow::Result<()> {
    let data_dir = &settings.data_dir;
    match command {
        SiteUserCommand::Add {
            name,
            scope,
            centre,
            out,
        } => {
            let scope = country(&scope)?;
            let centre = centre
                .or_else(|| {
                    std::fs::read_to_string(leaf_url_file(data_dir))
                        .ok()
                        .map(|s| s.trim().to_owned())
                })
                .unwrap_or_default();
            let creds = nats_sites::issue(data_dir, &name, scope, &centre)?;
            let out = out.unwrap_or_else(|| PathBuf::from(format!("{name}.site-credentials.json")));
            let out = std::path::absolute(&out)
                .with_context(|| format!("cannot resolve {}", out.display()))?;
            runtime::nats_auth::write_private(&out, &serde_json::to_vec_pretty(&creds)?)?;
            println!(
                "Site {name} ({scope}) may now connect as NATS user {} on the centre's leaf-node listener.",
                creds.user
            );
            println!(
                "Its credentials are in {} (mode 0600): hand them to the site over a safe channel.",
                out.display()
            );
            if centre.is_empty() {
                println!(
                    "The running centre has no leaf-node listener recorded: start `vigil up --leaf-addr HOST:PORT`, and give the site --centre nats-leaf://HOST:PORT."
                );
            }
            println!(
                "At the site: vigil site --name {name} --scope {scope} --credentials {} --data-dir <dir>{}",
                out.display(),
                if centre.is_empty() {
                    " --centre nats-leaf://HOST:PORT".to_owned()
                } else {
                    String::new()
                }
            );
            Ok(())
        }
        SiteUserCommand::Revoke { name } => {
            if nats_sites::revoke(data_dir, &name)? {
                println!(
                    "Revoked site {name}: it cannot connect again, and the centre refuses whatever it still sends."
                );
                Ok(())
            } else {
                anyhow::bail!("site {name} has no NATS user (see `vigil site-user list`)")
            }
        }
        SiteUserCommand::List => {
            let sites = nats_sites::load(data_dir)?;
            if sites.sites.is_empty() {
                println!(
                    "No field site has a NATS user (add one with `vigil site-user add NAME --scope CC`)."
                );
            }
            for (name, id) in &sites.sites {
                println!("{name}\t{}\tissued {}", id.scope, id.issued_at);
            }
            Ok(())
        }
    }
}

/// `vigil site`.
pub async fn run(settings: Resolved, args: SiteArgs) -> anyhow::Result<()> {
    let credentials = nats_sites::SiteCredentials::read(&args.credentials)?;
    anyhow::ensure!(
        credentials.site == args.name,
        "--name {} but {} is the credentials of site {}",
        args.name,
        args.credentials.display(),
        credentials.site
    );
    let scope = country(&args.scope)?;
    anyhow::ensure!(
        credentials.scope == scope,
        "--scope {scope} but site {} was issued for {}",
        credentials.site,
        credentials.scope
    );
    let centre = match args
        .centre
        .or_else(|| (!credentials.centre.is_empty()).then(|| credentials.centre.clone()))
    {
        Some(c) => c,
        None => anyhow::bail!(
            "no centre address: pass --centre nats-leaf://HOST:PORT (the centre's `vigil up --leaf-addr`)"
        ),
    };
    let shutdown = runtime::shutdown::on_signals();
    // The site's bus stops after the gateway: its last requests still get answers.
    let bus_stop = tokio_util::sync::CancellationToken::new();
    let limits = settings.connection_limits()?;
    let started = site::server::start(
        site::server::SiteConfig {
            credentials,
            centre,
            data_dir: settings.data_dir,
            listen: args.listen,
            metrics: args.metrics,
        },
        bus_stop.clone(),
    )
    .await?;
    let gateway = match start_gateway(&started, args.http_addr, limits, shutdown.clone()).await {
        Ok(g) => g,
        Err(e) => {
            bus_stop.cancel();
            let _ = started.done.await;
            return Err(e);
        }
    };
    shutdown.cancelled().await;
    match gateway.await {
        Ok(Err(e)) => tracing::error!(error = %e, "the site's gateway stopped with an error"),
        Err(e) => tracing::error!(error = %e, "the site's gateway task failed"),
        Ok(Ok(())) => {}
    }
    bus_stop.cancel();
    started.done.await?;
    Ok(())
}

/// The site's gateway (`gateway::start_at_site`) on the site's own bus and data directory
/// (its own users and token key); prints its pages.
async fn start_gateway(
    started: &site::server::Started,
    addr: std::net::SocketAddr,
    limits: gateway::ConnLimits,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let client = runtime::nats::connect(
        &started.url,
        "vigil-site-gateway",
        Some(started.credentials.clone()),
        runtime::nats::Mode::Service,
    )
    .await?;
    let data_dir = &started.data_dir;
    let auth = std::sync::Arc::new(gateway::auth::Auth::open(data_dir, vec![])?);
    let (screen_token, _) = auth.issue(
        &format!("site screen (vigil site {})", started.name),
        gateway::auth::Role::WallScreen,
        None,
        None,
        std::time::Duration::from_secs(30 * 24 * 3600),
        "api",
    )?;
    let (bound, task) =
        gateway::start_at_site(addr, client, auth, shutdown, limits, started.name.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e} (the site's HTTP address is --http-addr)"))?;
    let dir = data_dir.display();
    println!("  site screen    : http://{bound}/?kiosk&token={screen_token}");
    println!(
        "                   (the link to the centre and the outbox in its header; a wall_screen token valid 30 days)"
    );
    println!(
        "  field page     : http://{bound}/field/   (the site's field officers report here; answered \"pending at site\")"
    );
    println!("  console        : http://{bound}/console/");
    println!("  site state     : http://{bound}/api/v1/site/state");
    if gateway::auth::Users::load(data_dir)?.is_empty() {
        println!(
            "  users          : none yet at this site: add its field officers with `vigil --data-dir {dir} user add NAME --role field_officer --scope {}`",
            started.scope
        );
    }
    Ok(task)
}
