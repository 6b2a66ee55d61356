//! `vigil up`: the whole centre on one machine.
//!
//! It owns a nats-server (config and logs under `<data-dir>/nats/`, listening on its own
//! port, never 4222), restarts it if it dies, runs the store, the domain services (audit,
//! incidents, levels: see `services`) and the gateway in this process, each with its own NATS
//! user, and serves `/metrics` on its own address (`--metrics`, loopback by default; never on
//! the gateway's public port). The bus is secured: at the first start it generates one NATS user per service
//! into `<data-dir>/secrets/nats-users.json` (mode 0600), and the server config gives each
//! user only its subjects (see `runtime::nats_auth`); anonymous connections are refused.
//!
//! While it runs, `<data-dir>/nats-url` (mode 0600) holds the NATS URL its clients use: the
//! operator tools read it when no URL is given, so the commands it prints work as pasted
//! whatever `--nats-url` it was started with. A clean stop removes it.
//!
//! Agency systems log in with the nkeys `vigil agency credentials` issues: `vigil up` watches
//! `<data-dir>/secrets/nats-agencies.json` and reloads nats-server when it changes (a revoked
//! agency's connection is closed); with `--external-nats` it prints the entries the
//! operator's server needs (see `runtime::nats_agencies`).
//!
//! It prints its banner (the addresses, the wall screen's token, the first admin's password)
//! once the store answers and every domain service is ready, saying on stderr what it waits
//! for while that takes long (a long log without checkpoints); a cluster node prints it at
//! once, since its store waits for a leader the other nodes help elect.
//!
//! On SIGINT/SIGTERM it stops taking requests, lets the gateway record the refusals it was
//! counting, lets the store finish the commit in flight, then stops nats-server, and exits 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use runtime::nats::Mode;
use tokio_util::sync::CancellationToken;

use crate::cli::{Resolved, UpArgs};

/// Runs everything until a signal.
pub async fn run(settings: Resolved, args: UpArgs) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown::on_signals();
    // The bus, the store and the audit service stop after the gateway: it records the
    // refusals it counted in its last window when it stops (see `gateway::refusals`).
    let last = CancellationToken::new();
    let metrics = runtime::telemetry::install_metrics()?;
    if let Some(leaf) = &args.leaf_addr {
        anyhow::ensure!(
            listen_of(&format!("nats://{leaf}"), true).is_some(),
            "--leaf-addr {leaf} must be HOST:PORT, the address field sites' nats-servers dial"
        );
    }
    // Bad cluster flags are refused before anything is created.
    if let Some(name) = &args.cluster_node {
        runtime::nats_cluster::ClusterNode::new(
            name,
            args.cluster_listen.as_deref().unwrap_or_default(),
            &args.cluster_routes,
            PathBuf::new(),
        )?;
    }
    std::fs::create_dir_all(&settings.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            settings.data_dir.display()
        )
    })?;
    let data_dir = std::fs::canonicalize(&settings.data_dir)?;

    // A node of a several-node centre (docs/CLUSTER.md): its nats-server joins the cluster
    // with JetStream and the store replicates.
    let cluster = match &args.cluster_node {
        None => None,
        Some(name) => Some(runtime::nats_cluster::ClusterNode::new(
            name,
            args.cluster_listen.as_deref().unwrap_or_default(),
            &args.cluster_routes,
            // nats-server keeps its JetStream files in `<store_dir>/jetstream`.
            data_dir.join("nats"),
        )?),
    };

    // The credentials of the server we own; none with --external-nats (flags or the data
    // directory's file say how to log in there).
    let mut owned_users = None;
    let nats_task = if args.external_nats {
        None
    } else {
        let (host, port) = listen_of(&settings.nats_url, cluster.is_some()).with_context(|| {
            if cluster.is_some() {
                format!("--nats-url {} must be nats://<host>:<port>, the address this node's nats-server listens on for clients", settings.nats_url)
            } else {
                format!("--nats-url {} must be nats://127.0.0.1:<port> when vigil up starts nats-server itself (or pass --external-nats)", settings.nats_url)
            }
        })?;
        if tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .is_ok()
        {
            anyhow::bail!(
                "{host}:{port} is already in use (another `vigil up`, or a NATS server?). Choose another port with --nats-url nats://{host}:<port>, or use that server with --external-nats"
            );
        }
        let users = if cluster.is_some() {
            runtime::nats_auth::load_or_create_cluster(&data_dir)?
        } else {
            runtime::nats_auth::load_or_create(&data_dir)?
        };
        let owned = OwnedNats {
            listen: format!("{host}:{port}"),
            leaf: args.leaf_addr.clone(),
            users: users.clone(),
            cluster: cluster.clone(),
        };
        // Read before the config is written: a change made in between is reloaded.
        let agencies_seen = read_identities(&data_dir);
        let conf = write_nats_config(&data_dir, &owned)?;
        tokio::spawn(watch_agencies(
            data_dir.clone(),
            agencies_seen,
            Some(owned),
            last.clone(),
        ));
        owned_users = Some(users);
        let mut child = runtime::nats_server::spawn(&conf).await?;
        if !runtime::nats_server::wait_ready(&host, port, &mut child, Duration::from_secs(10)).await
        {
            anyhow::bail!(
                "nats-server did not start on {host}:{port}; see {} (is the port taken? choose another with --nats-url)",
                data_dir.join("nats/nats-server.log").display()
            );
        }
        Some(tokio::spawn(runtime::nats_server::supervise(
            child,
            conf,
            last.clone(),
        )))
    };
    // A cluster node's clients dial their own node first and know the others' client URLs
    // (they also learn them from the server's INFO, but not while their own node is down at
    // start); `runtime::nats::connect` takes the comma-separated list in this order.
    let mut settings = settings;
    if cluster.is_some() && !args.cluster_peers_nats.is_empty() {
        let mut urls = vec![settings.nats_url.clone()];
        urls.extend(args.cluster_peers_nats.iter().cloned());
        settings.nats_url = urls.join(",");
    }

    let credentials_of = |user: &str| match &owned_users {
        Some(users) => Ok(users.credentials(user)),
        None => settings.nats_credentials_for(user),
    };
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-store",
        credentials_of(runtime::nats_auth::STORE)?,
        Mode::Service,
    )
    .await?;
    let mut store_config = settings.store_config();
    store_config.dir = data_dir.join("store");
    store_config.replication = cluster
        .as_ref()
        .map(|node| store::Replication::new(node.name.clone()));
    let store_dir = store_config.dir.clone();
    let mut store = tokio::spawn(store::run(client, store_config, last.clone()));

    let mut service_tasks = Vec::new();
    for service in crate::services::SERVICES {
        let stop = if service.name == "audit" {
            &last
        } else {
            &shutdown
        };
        let task = crate::services::spawn(
            service,
            &settings.nats_url,
            credentials_of(service.name)?,
            stop.clone(),
        )
        .await?;
        service_tasks.push((service.name, task));
    }

    // The relay of the field sites' commands (docs/ARCHITECTURE.md, "Field sites"); it
    // stops with the services.
    let relay = tokio::spawn(site::relay::run(
        runtime::nats::connect(
            &settings.nats_url,
            "vigil-sites",
            credentials_of(runtime::nats_auth::SITES)?,
            Mode::Service,
        )
        .await?,
        data_dir.clone(),
        shutdown.clone(),
    ));

    // The feed of the centre's events to the field sites, each its scope's (same user). It
    // reads the whole log at start, so it runs only where sites can dial in.
    let site_feed = match &args.leaf_addr {
        Some(_) => Some(tokio::spawn(site::feed::run(
            runtime::nats::connect(
                &settings.nats_url,
                "vigil-site-feed",
                credentials_of(runtime::nats_auth::SITES)?,
                Mode::Service,
            )
            .await?,
            data_dir.clone(),
            shutdown.clone(),
        ))),
        None => None,
    };

    let http_addr = settings.http_addr(args.http.as_deref())?;
    let gateway_client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-gateway",
        credentials_of(runtime::nats_auth::GATEWAY)?,
        Mode::Service,
    )
    .await?;
    // The first admin before the gateway opens the users (it would also see a later change
    // at the next login, but the password printed below must work from the first request).
    let first_admin = crate::users::bootstrap_admin(&data_dir)?;
    let auth = std::sync::Arc::new(gateway::auth::Auth::open(&data_dir, vec![])?);
    let (screen_token, _) = auth.issue(
        "wall-screen (vigil up)",
        gateway::auth::Role::WallScreen,
        None,
        None,
        Duration::from_secs(30 * 24 * 3600),
        "api",
    )?;
    // Asks, before the banner, whether the store and the services answer (the gateway's user
    // may read the log and ask `vigil.status`).
    let probe = gateway_client.clone();
    let (http_bound, gateway) = gateway::start_node(
        http_addr,
        gateway_client,
        auth,
        shutdown.clone(),
        settings.connection_limits()?,
        cluster.as_ref().map(|node| node.name.clone()),
        &runtime::nats_auth::DOMAIN_SERVICES,
    )
    .await?;

    let metrics_addr = args.metrics.unwrap_or_else(|| {
        runtime::config::DEFAULT_METRICS
            .parse()
            .unwrap_or_else(|_| ([127, 0, 0, 1], 9490).into())
    });
    let metrics_listener = runtime::telemetry::bind_metrics(metrics_addr).await?;
    let metrics_task = tokio::spawn(runtime::telemetry::serve_metrics(
        metrics_listener,
        metrics,
        shutdown.clone(),
    ));

    // The operator tools (and the commands printed below) find this centre's bus here.
    let url_record = runtime::config::nats_url_file(&data_dir);
    runtime::nats_auth::write_private(&url_record, format!("{}\n", settings.nats_url).as_bytes())?;
    // `vigil site-user add` writes the leaf-node URL into the site's credentials.
    let leaf_record = crate::sites::leaf_url_file(&data_dir);
    match &args.leaf_addr {
        Some(leaf) => runtime::nats_auth::write_private(
            &leaf_record,
            format!("nats-leaf://{leaf}\n").as_bytes(),
        )?,
        None => {
            let _ = std::fs::remove_file(&leaf_record);
        }
    }

    // The operator tools find their NATS credentials and URL under the data directory.
    let dir_flag = if settings.data_dir == runtime::config::default_data_dir() {
        String::new()
    } else {
        format!("--data-dir {} ", data_dir.display())
    };
    // The banner says the centre is up: it is printed once the store and every service
    // answer, so its addresses work from the first request. (A cluster node's store waits
    // for a leader its peers elect, which may need nodes started after this one: it prints
    // at once.)
    let mut store_ended = None;
    if cluster.is_none() {
        tokio::select! {
            () = wait_until_serving(&probe) => {}
            r = &mut store => store_ended = Some(r),
            _ = shutdown.cancelled() => {}
        }
    }
    if store_ended.is_none() && !shutdown.is_cancelled() {
        println!("Vigil is up.");
        println!("  data directory : {}", data_dir.display());
        println!("  event log      : {}", store_dir.display());
        match &nats_task {
            Some(_) => {
                println!(
                    "  NATS           : {} (nats-server owned by vigil; config in {})",
                    settings.nats_url,
                    data_dir.join("nats").display()
                );
                println!(
                    "  NATS users     : {} (one per service; the operator tools use `cli`)",
                    runtime::nats_auth::users_file(&data_dir).display(),
                );
            }
            None => {
                println!("  NATS           : {} (external)", settings.nats_url);
                // The operator's server needs the agency identities: print them now and at
                // each change.
                let seen = read_identities(&data_dir);
                print_external_agencies(&data_dir);
                tokio::spawn(watch_agencies(data_dir.clone(), seen, None, last.clone()));
            }
        }
        if let Some(node) = &cluster {
            println!(
                "  cluster node   : {} (cluster listen {}, routes {}; JetStream in {}; `vigil {dir_flag}cluster status` shows the replicas)",
                node.name,
                node.listen,
                node.routes.join(", "),
                node.store_dir.join("jetstream").display()
            );
        }
        if let Some(leaf) = &args.leaf_addr {
            println!(
                "  field sites    : nats-leaf://{leaf} (leaf-node listener; add a site with `vigil {dir_flag}site-user add NAME --scope CC`)"
            );
        }
        println!("  metrics        : http://{metrics_addr}/metrics");
        println!("  board API      : http://{http_bound}/api/v1/boards/situation");
        println!(
            "  API reference  : http://{http_bound}/docs/ (browse and try it; the document itself: /openapi.json)"
        );
        println!(
            "  field page     : http://{http_bound}/field/   (field officers report here, also offline)"
        );
        println!(
            "  console        : http://{http_bound}/console/ (duty officers and crisis managers: incidents, levels, orders, surges, hostage cases, clearances, broadcasts)"
        );
        println!("  wall screen    : http://{http_bound}/?kiosk&token={screen_token}");
        println!(
            "                   (a wall_screen token valid 30 days; make others with `vigil {dir_flag}token create --role wall_screen`)"
        );
        if let Some(password) = first_admin {
            println!("  first start    : created the admin user `admin` with password {password}");
            println!(
                "                   (shown once; log in at POST /api/v1/auth/login; change it with `vigil {dir_flag}user add admin --role admin`)"
            );
        }
        println!(
            "Reference data (areas, duty stations): vigil {dir_flag}import ops/reference/sample.jsonl"
        );
        println!(
            "Try: vigil {dir_flag}append --type NoteAdded --data '{{\"text\":\"hello\"}}'   and   vigil {dir_flag}tail --from 1"
        );
        println!("Ctrl-C stops it cleanly.");
    }

    // A signal, or the store ending by itself (a failure): either way, stop everything.
    if store_ended.is_none() {
        store_ended = tokio::select! {
            r = &mut store => Some(r),
            _ = shutdown.cancelled() => None,
        };
    }
    shutdown.cancel();
    match gateway.await {
        Ok(Err(e)) => tracing::error!(error = %e, "gateway stopped with an error"),
        Err(e) => tracing::error!(error = %e, "gateway task failed"),
        Ok(Ok(())) => {}
    }
    last.cancel();
    if let Some(task) = site_feed
        && let Ok(Err(e)) = task.await
    {
        tracing::error!(error = %e, "the feed of field sites stopped with an error");
    }
    if let Ok(Err(e)) = relay.await {
        tracing::error!(error = %e, "the relay of field sites stopped with an error");
    }
    for (name, task) in service_tasks {
        if let Ok(Err(e)) = task.await {
            tracing::error!(error = %e, "{name} service stopped with an error");
        }
    }
    let store_result = match store_ended {
        Some(r) => r,
        None => store.await,
    };
    let _ = metrics_task.await;
    if let Some(task) = nats_task {
        let _ = task.await;
    }
    // Stopped: no tool should dial a bus that is gone (after a crash the record stays, and
    // the next start rewrites it).
    if let Err(e) = std::fs::remove_file(&url_record)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, file = %url_record.display(), "cannot remove the NATS URL record");
    }
    match store_result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(e) => Err(anyhow::anyhow!("the store task failed: {e}")),
    }
}

/// Waits until the store answers a read and every domain service says it is ready, telling
/// the operator on stderr what it still waits for every 5 s (a long log without checkpoints
/// takes a while to fold).
async fn wait_until_serving(client: &async_nats::Client) {
    let store = runtime::store_client::StoreClient::new(client.clone(), Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let mut told = started;
    loop {
        let waiting = match store.read(u64::MAX, 1).await {
            Err(e) => vec![("store".to_owned(), e.to_string())],
            Ok(_) => match runtime::status::collect(client, Duration::from_millis(300)).await {
                Ok(answers) => {
                    runtime::status::waiting_for(&runtime::nats_auth::DOMAIN_SERVICES, &answers)
                }
                Err(e) => vec![("services".to_owned(), e)],
            },
        };
        if waiting.is_empty() {
            return;
        }
        if told.elapsed() >= Duration::from_secs(5) {
            told = tokio::time::Instant::now();
            let what: Vec<String> = waiting
                .iter()
                .map(|(s, why)| format!("{s}: {why}"))
                .collect();
            eprintln!(
                "vigil up: starting for {} s; waiting for {}",
                started.elapsed().as_secs(),
                what.join("; ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where the nats-server we own listens for clients: the host and port of `url`
/// (`nats://host:port`). A single node listens on loopback only; a cluster node on the
/// address its peers' clients reach it at.
fn listen_of(url: &str, cluster: bool) -> Option<(String, u16)> {
    let rest = url.strip_prefix("nats://")?;
    let (host, port) = rest.rsplit_once(':')?;
    let host_ok = if cluster {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
    } else {
        host == "127.0.0.1" || host == "localhost"
    };
    if !host_ok {
        return None;
    }
    Some((host.to_owned(), port.parse().ok()?))
}

/// The nats-server `vigil up` owns: where it listens for clients, the services' users, and
/// its cluster membership if it is a node of several.
#[derive(Clone)]
struct OwnedNats {
    listen: String,
    /// The leaf-node listener for field sites (`--leaf-addr`), if any.
    leaf: Option<String>,
    users: runtime::nats_auth::NatsUsers,
    cluster: Option<runtime::nats_cluster::ClusterNode>,
}

/// How often the agency identities file is looked at.
const AGENCY_POLL: Duration = Duration::from_millis(300);

/// The agency identities and the field sites, as the files hold them: when either changes,
/// nats-server's config is rewritten.
fn read_identities(data_dir: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        std::fs::read(runtime::nats_agencies::agencies_file(data_dir)).ok(),
        std::fs::read(runtime::nats_sites::sites_file(data_dir)).ok(),
    )
}

/// Keeps the bus in step with `<data-dir>/secrets/nats-agencies.json` (written by `vigil
/// agency`) and `<data-dir>/secrets/nats-sites.json` (written by `vigil site-user`): when
/// either changes, rewrites the config of the server we own (`owned`: its port and the
/// services' users) and makes nats-server reload it, which admits a new identity and closes
/// the client connection of a revoked agency (a revoked site cannot log in again; see
/// `runtime::nats_sites` for its open leaf link); with an external server, prints what its
/// operator must change.
async fn watch_agencies(
    data_dir: PathBuf,
    mut seen: (Option<Vec<u8>>, Option<Vec<u8>>),
    owned: Option<OwnedNats>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(AGENCY_POLL) => {}
        }
        let now = read_identities(&data_dir);
        if now == seen {
            continue;
        }
        let agencies_changed = now.0 != seen.0;
        seen = now;
        let Some(owned) = &owned else {
            if agencies_changed {
                print_external_agencies(&data_dir);
            }
            continue;
        };
        let reloaded = match write_nats_config(&data_dir, owned) {
            Ok(_) => runtime::nats_server::reload(&data_dir.join("nats")).await,
            Err(e) => Err(e),
        };
        match reloaded {
            Ok(()) => tracing::info!("agency identities or sites changed; nats-server reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "agency identities or sites changed but nats-server was not reloaded");
                // Try again at the next look.
                seen = (None, None);
            }
        }
    }
}

/// With `--external-nats`: the `users` entries the operator's server needs for the agency
/// identities (in the account of Vigil's users).
fn print_external_agencies(data_dir: &Path) {
    match runtime::nats_agencies::load(data_dir) {
        Ok(identities) => {
            let entries = runtime::nats_agencies::server_users(&identities);
            println!(
                "Agency identities ({}): add these entries to the `users` of Vigil's account on your NATS server, replacing any earlier ones, and reload it:",
                entries.len()
            );
            for entry in entries {
                println!("  {entry}");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot read the agency identities"),
    }
}

/// Writes the nats-server config of the server we own (see
/// `runtime::nats_cluster::server_conf`): it admits only the services' users, each with its
/// permissions, the agency identities and the field sites of the data directory (the sites
/// on the leaf-node listener, when there is one); a cluster node also joins the cluster with
/// JetStream. The file holds passwords, so it is mode 0600.
fn write_nats_config(data_dir: &Path, owned: &OwnedNats) -> anyhow::Result<PathBuf> {
    let agencies = runtime::nats_agencies::load(data_dir)?;
    let sites = runtime::nats_sites::load(data_dir)?;
    let dir = &data_dir.join("nats");
    runtime::data_dir::create_private_dir(dir)?;
    let conf = dir.join("nats-server.conf");
    let text = runtime::nats_cluster::server_conf(
        &owned.listen,
        dir,
        &owned.users,
        &agencies,
        &sites,
        owned.leaf.as_deref(),
        owned.cluster.as_ref(),
    )?;
    runtime::nats_auth::write_private(&conf, text.as_bytes())?;
    Ok(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_can_be_owned_unless_a_cluster_node() {
        let port_of = |url| listen_of(url, false).map(|(_, p)| p);
        assert_eq!(port_of("nats://127.0.0.1:4290"), Some(4290));
        assert_eq!(port_of("nats://localhost:5000"), Some(5000));
        assert_eq!(port_of("nats://10.0.0.1:4222"), None);
        assert_eq!(port_of("tls://127.0.0.1:4222"), None);
        assert_eq!(port_of("nats://127.0.0.1"), None);
        assert_eq!(
            listen_of("nats://10.0.0.1:4222", true),
            Some(("10.0.0.1".to_owned(), 4222))
        );
        assert_eq!(listen_of("nats://a b:4222", true), None);
        assert_eq!(listen_of("nats://127.0.0.2:x", true), None);
    }
}
