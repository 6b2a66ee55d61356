//! `vigil site`: one field site. It owns a nats-server (the site's own bus, config and logs
//! under `<data-dir>/nats/`) that is a leaf node of the centre, the durable outbox
//! (`crate::store`, under `<data-dir>/outbox`), the forwarder that empties it, and the
//! mirror of the centre's events for its scope (`crate::mirror`, under `<data-dir>/mirror`),
//! served on the site's bus as the store's read API.
//!
//! # On the site's own bus (subjects in [`crate::subjects`])
//! - `vigil.local.submit.<service>.<command>` (request, a `Command` envelope): checked (a
//!   command a site may forward, from one of the site's people of its scope, readable: the
//!   centre's relay rule, `crate::relay::check`), then
//!   written to the outbox and fsync'd; only then answered `{"ok": {"accepted_at_site":
//!   true, "id", "position", "duplicate"}}`. A refusal here stores nothing.
//! - `vigil.local.status.<id>` (request): the outbox item of command `<id>`, with the
//!   centre's answer once it came (`forwarded` with the outcome, or `refused` with the
//!   refusal), or `not_found`.
//! - `vigil.local.state` (request): the link (up or down, since when, last error) and how
//!   many items wait, were forwarded, were refused.
//! - `vigil.cmd.<service>.<command>` (request): what the site's gateway sends for a write
//!   (`vigil site` runs one, composed by the `vigil` binary). A command a site may forward
//!   (`runtime::nats_sites::FORWARDABLE`) goes into the outbox exactly as a submit does, and
//!   is answered with an `events::command::AcceptedAtSite` (the gateway answers HTTP 202,
//!   "pending at site"). Any other command (the reads included: the site has no services)
//!   is refused `forbidden`, naming what the site takes and that the rest needs the centre.
//!   Nobody at the centre hears these: the site's leaf user may not receive `vigil.cmd.>`.
//!
//! # Forwarding
//! `crate::forward`: the outbox goes to the centre's relay in batches, in order, each item
//! carried out once by its command id.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_nats::Client;
use bytes::Bytes;
use events::command::{AcceptedAtSite, Refusal, RefusalCode};
use events::validate::Country;
use futures::StreamExt;
use runtime::nats::Mode;
use runtime::nats_sites::{self, SiteCredentials};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::mirror::Mirror;
use crate::mirror_log::MirrorLog;
use crate::outbox::Submitted;
use crate::store::{Outbox, now};
use crate::subjects;

/// What `vigil site` runs with.
#[derive(Debug, Clone)]
pub struct SiteConfig {
    /// The site's credentials file (its name, scope, login at the centre).
    pub credentials: SiteCredentials,
    /// The centre's leaf-node address (`nats-leaf://host:port`).
    pub centre: String,
    /// The site's data directory.
    pub data_dir: PathBuf,
    /// Where the site's own nats-server listens for clients (`host:port`).
    pub listen: String,
    /// Where to serve `/metrics`, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// The link to the centre, as the forwarder last saw it.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Whether the relay answered the last request.
    pub up: bool,
    /// Since when it is in that state (RFC 3339).
    pub since: String,
    /// Why it is down (or why the centre refused the site), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// For how long it is in that state, in whole seconds (set when it is answered).
    pub for_seconds: u64,
    /// When it changed, by the monotonic clock.
    #[serde(skip)]
    changed: std::time::Instant,
}

impl Link {
    pub(crate) fn set(&mut self, up: bool, error: Option<String>) {
        if self.up != up {
            self.up = up;
            self.since = now();
            self.changed = std::time::Instant::now();
            tracing::info!(up, error = ?error, "link to the centre changed");
        }
        self.last_error = error;
        metrics::gauge!("vigil_site_link_up").set(if up { 1.0 } else { 0.0 });
    }
}

/// The running site: what the requests on its bus and the forwarder share.
pub(crate) struct Site {
    pub(crate) name: String,
    pub(crate) scope: Country,
    pub(crate) outbox: Mutex<Outbox>,
    pub(crate) link: Mutex<Link>,
    /// Wakes an idle forwarder when an item is accepted.
    pub(crate) wake: Notify,
}

impl Site {
    pub(crate) fn outbox(&self) -> std::sync::MutexGuard<'_, Outbox> {
        // A panic while holding it would be a bug; the data is still consistent on disk.
        self.outbox
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn link(&self) -> std::sync::MutexGuard<'_, Link> {
        self.link
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn publish_counts(&self) {
        let c = self.outbox().counts();
        metrics::gauge!("vigil_site_pending").set(c.pending as f64);
    }
}

/// A started site: what a process composed with it (the site's gateway) needs.
pub struct Started {
    /// The site's name.
    pub name: String,
    /// The site's scope.
    pub scope: Country,
    /// The site's own bus (`nats://host:port`).
    pub url: String,
    /// The login of the site's own bus (user, password).
    pub credentials: (String, String),
    /// The data directory, canonical.
    pub data_dir: PathBuf,
    /// Ends after `shutdown`, once the site stopped its nats-server.
    pub done: tokio::task::JoinHandle<()>,
}

/// Runs the site until `shutdown`.
pub async fn run(config: SiteConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let started = start(config, shutdown).await?;
    started.done.await?;
    Ok(())
}

/// Starts the site (its bus, the outbox, the forwarder) and prints what it serves; the site
/// runs until `shutdown`, then [`Started::done`] ends.
pub async fn start(config: SiteConfig, shutdown: CancellationToken) -> anyhow::Result<Started> {
    let creds = &config.credentials;
    let name = creds.site.clone();
    anyhow::ensure!(
        nats_sites::valid_name(&name),
        "the credentials name the site {name:?}, which is not a site name"
    );
    runtime::data_dir::create_private_dir(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let data_dir = std::fs::canonicalize(&config.data_dir)?;
    let (host, port) = config
        .listen
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
        .with_context(|| format!("--listen {} must be HOST:PORT", config.listen))?;

    // The outbox first: fjall locks its directory, so a second `vigil site` on the same data
    // stops here, before it touches the first one's nats-server.
    let outbox_dir = data_dir.join("outbox");
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&outbox_dir))
        .await?
        .context("is another `vigil site` running on this data directory?")?;
    let mirror_dir = data_dir.join("mirror");
    let mirror_log = tokio::task::spawn_blocking(move || MirrorLog::open(&mirror_dir)).await??;

    // The site's own nats-server, a leaf node of the centre.
    let local = nats_sites::local_credentials(&data_dir, &name)?;
    let remote = nats_sites::leaf_url(&config.centre, creds)?;
    let nats_dir = data_dir.join("nats");
    runtime::data_dir::create_private_dir(&nats_dir)?;
    let conf = nats_dir.join("nats-server.conf");
    runtime::nats_auth::write_private(
        &conf,
        nats_sites::site_server_conf(&config.listen, &nats_dir, &local, &remote).as_bytes(),
    )?;
    runtime::nats_server::stop_orphan(&nats_dir, &conf).await;
    if tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .is_ok()
    {
        anyhow::bail!(
            "{} is already in use; choose another with --listen",
            config.listen
        );
    }
    let mut child = runtime::nats_server::spawn(&conf).await?;
    if !runtime::nats_server::wait_ready(&host, port, &mut child, Duration::from_secs(10)).await {
        anyhow::bail!(
            "the site's nats-server did not start on {}; see {}",
            config.listen,
            nats_dir.join("nats-server.log").display()
        );
    }
    let bus_stop = CancellationToken::new();
    let nats_task = tokio::spawn(runtime::nats_server::supervise(
        child,
        conf,
        bus_stop.clone(),
    ));
    let url = format!("nats://{}", config.listen);
    let client =
        runtime::nats::connect(&url, "vigil-site", Some(local.clone()), Mode::Service).await?;

    let site = Arc::new(Site {
        name: name.clone(),
        scope: creds.scope,
        outbox: Mutex::new(outbox),
        link: Mutex::new(Link {
            up: false,
            since: now(),
            last_error: Some("not connected yet".to_owned()),
            for_seconds: 0,
            changed: std::time::Instant::now(),
        }),
        wake: Notify::new(),
    });
    site.publish_counts();

    if let Some(addr) = config.metrics {
        runtime::telemetry::serve_metrics_at(addr, shutdown.clone()).await?;
    }
    let url_record = runtime::config::nats_url_file(&data_dir);
    runtime::nats_auth::write_private(&url_record, format!("{url}\n").as_bytes())?;

    let serving = tokio::spawn(serve_local(client.clone(), site.clone(), shutdown.clone()));
    let forwarding = tokio::spawn(crate::forward::run(
        client.clone(),
        site.clone(),
        shutdown.clone(),
    ));
    let mirror = Mirror::new(&name, mirror_log);
    let (mirror_head, mirror_covered) = mirror.positions();
    let mirroring = tokio::spawn(crate::mirror::run(client, mirror, shutdown.clone()));
    let counts = site.outbox().counts();
    println!("Vigil site {name} ({}) is up.", site.scope);
    println!("  data directory : {}", data_dir.display());
    println!(
        "  site NATS      : {url} (user {}; password in {})",
        nats_sites::user_of(&name),
        runtime::nats_auth::users_file(&data_dir).display()
    );
    println!("  centre         : {} (leaf node)", config.centre);
    println!(
        "  outbox         : {} pending, {} forwarded, {} refused",
        counts.pending, counts.forwarded, counts.refused
    );
    println!(
        "  submit         : request on {}.<service>.<command>; state: {}",
        subjects::SUBMIT,
        subjects::STATE
    );
    println!(
        "  mirror         : {mirror_head} events of {} (centre position {mirror_covered}); the store's read API on the site's bus",
        site.scope
    );
    let done = tokio::spawn(async move {
        shutdown.cancelled().await;
        let _ = serving.await;
        let _ = forwarding.await;
        let _ = mirroring.await;
        bus_stop.cancel();
        let _ = nats_task.await;
        if let Err(e) = std::fs::remove_file(&url_record)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e, "cannot remove the NATS URL record");
        }
    });
    Ok(Started {
        name,
        scope: creds.scope,
        url,
        credentials: local,
        data_dir,
        done,
    })
}

fn answer<T: Serialize>(outcome: Result<T, Refusal>) -> Bytes {
    runtime::commands::reply(outcome).into()
}

/// Serves the site's own requests (submit, status, state) until `shutdown`.
async fn serve_local(
    client: Client,
    site: Arc<Site>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut submits = client
        .subscribe(format!("{}.*.*", subjects::SUBMIT))
        .await?;
    let mut statuses = client.subscribe(format!("{}.*", subjects::STATUS)).await?;
    let mut states = client.subscribe(subjects::STATE).await?;
    let mut commands = client.subscribe(events::subjects::COMMANDS_ALL).await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = submits.next() => m,
            m = statuses.next() => m,
            m = states.next() => m,
            m = commands.next() => m,
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let site = site.clone();
        let client = client.clone();
        tokio::spawn(async move {
            let body = local_request(&site, &msg.subject, msg.payload).await;
            if let Err(e) = client.publish(reply_to, body).await {
                tracing::warn!(error = %e, "could not answer a request on the site's bus");
            }
        });
    }
}

async fn local_request(site: &Arc<Site>, subject: &str, payload: Bytes) -> Bytes {
    if subject == subjects::STATE {
        let counts = site.outbox().counts();
        let mut link = site.link().clone();
        link.for_seconds = link.changed.elapsed().as_secs();
        return answer::<Value>(Ok(json!({
            "site": site.name,
            "scope": site.scope,
            "link": link,
            "pending": counts.pending,
            "forwarded": counts.forwarded,
            "refused": counts.refused,
        })));
    }
    if let Some(id) = subject
        .strip_prefix(subjects::STATUS)
        .and_then(|s| s.strip_prefix('.'))
    {
        let found = Uuid::parse_str(id)
            .ok()
            .and_then(|id| site.outbox().get(id));
        return match found {
            Some(item) => answer(Ok(item)),
            None => answer::<Value>(Err(Refusal::new(
                RefusalCode::NotFound,
                format!("no command {id} in this site's outbox"),
            ))),
        };
    }
    if let Some((service, command)) = subject
        .strip_prefix("vigil.cmd.")
        .and_then(|s| s.split_once('.'))
    {
        if !nats_sites::forwardable(service, command) {
            return answer::<Value>(Err(not_at_site(&site.name, service, command)));
        }
        return answer(submit(site, service, command, &payload).await);
    }
    let Some((service, command)) = subject
        .strip_prefix(subjects::SUBMIT)
        .and_then(|s| s.strip_prefix('.'))
        .and_then(|s| s.split_once('.'))
    else {
        return answer::<Value>(Err(Refusal::invalid(format!(
            "{subject} is not a site request"
        ))));
    };
    answer(submit(site, service, command, &payload).await)
}

/// Why the site does not take `service.command` from its gateway.
fn not_at_site(site: &str, service: &str, command: &str) -> Refusal {
    let takes: Vec<String> = nats_sites::FORWARDABLE
        .iter()
        .map(|(s, c, _)| format!("{s}.{c}"))
        .collect();
    Refusal::forbidden(format!(
        "this is field site {site}: it forwards only {} to the centre (accepted here, sent when the link is up); {service}.{command} needs the centre: use the centre's address",
        takes.join(", ")
    ))
}

/// Checks a command and writes it to the outbox (on disk when this returns `Ok`).
async fn submit(
    site: &Arc<Site>,
    service: &str,
    command: &str,
    payload: &[u8],
) -> Result<Value, Refusal> {
    // The relay's own check, here too: what the centre would refuse for who sent it is
    // refused before it is accepted.
    crate::relay::check(&site.name, site.scope, service, command, payload)?;
    let cmd = runtime::commands::decode::<Value>(payload)?;
    let value = serde_json::to_value(&cmd)
        .map_err(|e| Refusal::invalid(format!("cannot keep the command: {e}")))?;
    let (id, service, command) = (cmd.id, service.to_owned(), command.to_owned());
    let worker = site.clone();
    let done =
        tokio::task::spawn_blocking(move || worker.outbox().submit(id, &service, &command, value))
            .await;
    let submitted = match done {
        Ok(Ok(s)) => s,
        Ok(Err(Ok(refusal))) => return Err(refusal),
        Ok(Err(Err(e))) => {
            tracing::error!(error = %e, "cannot write the outbox");
            return Err(Refusal::unavailable(format!(
                "the site cannot write its outbox ({e}); nothing was accepted: retry with the same id"
            )));
        }
        Err(e) => {
            return Err(Refusal::unavailable(format!(
                "the site's outbox failed ({e}); nothing was accepted: retry with the same id"
            )));
        }
    };
    let (item, duplicate) = match submitted {
        Submitted::New(item) => {
            metrics::counter!("vigil_site_accepted_total").increment(1);
            site.publish_counts();
            site.wake.notify_one();
            (item, false)
        }
        Submitted::Existing(item) => (item, true),
    };
    let state = serde_json::to_value(&item.state)
        .ok()
        .and_then(|v| v["state"].as_str().map(str::to_owned))
        .unwrap_or_default();
    serde_json::to_value(AcceptedAtSite {
        accepted_at_site: true,
        site: site.name.clone(),
        id: item.id,
        position: item.position,
        duplicate,
        state,
    })
    .map_err(|e| Refusal::unavailable(format!("cannot answer: {e}")))
}
