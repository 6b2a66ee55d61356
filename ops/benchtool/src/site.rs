//! `vigil-bench site`: how fast a field site empties its outbox once its link to the centre
//! returns (issue 19), beside the same commands sent straight to the centre.
//!
//! `ops/bench site` starts the centre (`vigil up --leaf-addr`), issues the site's login
//! (`vigil site-user add`) and starts `vigil site` dialling `--link-listen`, where nothing
//! listens yet: the link is down from the start, as at a site whose line is cut. This tool:
//! 1. **Accept**: submits N field reports (a field officer of the site's scope) on the site's
//!    own bus, `--submit-in-flight` at a time, each answered once it is fsync'd in the
//!    outbox; checks that nothing was forwarded and that the site sees its link down.
//! 2. **Heal**: starts a TCP relay of its own on `--link-listen` to the centre's leaf
//!    listener (`--leaf-addr`): the link returns. Only the link is cut and healed; the centre
//!    and the site run throughout. The site's nats-server dials again every second and the
//!    forwarder's next attempt comes after its backoff (at most 5 s ±20 %): both are in the
//!    time measured, as they are when a real link returns.
//! 3. **Drain**: reads the site's state every 20 ms until nothing is pending: the time from
//!    the heal to the first forwarded item, and to the last.
//! 4. **Check**: reads the centre's whole log: every accepted report is there exactly once,
//!    in the site's order, with `source: site:<name>`, and none was refused.
//! 5. **Peer**: the same N reports (new ids) sent straight to the incidents service as the
//!    relay's own NATS user, in the shape the relay sends them: batches of `--peer-batch`
//!    (256, the relay's batch) on `vigil.cmd.incidents.report.batch`, `--peer-in-flight` at a
//!    time (1: a site has one batch in flight, to keep its order); `--peer-batch 1` sends
//!    each report alone. It runs after the site's drain, so it meets a board that already
//!    holds the site's N open incidents.
//!
//! Target (issue 19): 10,000 pending items forwarded in ≤ 10 s after the link returns.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_nats::Client;
use futures::StreamExt;
use runtime::StoreClient;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::report::{rate_text, thousands};
use crate::util::{self, verdict};

/// Seconds the issue allows for the drain.
const TARGET_SECS: f64 = 10.0;
/// Items of the target, and of `--quick`.
const ITEMS: usize = 10_000;
const QUICK_ITEMS: usize = 1_000;

/// Flags of `vigil-bench site`.
#[derive(Debug, Clone, clap::Args)]
pub struct SiteArgs {
    /// Reports queued at the site while its link is down [default: 10000; 1000 with --quick].
    #[arg(long)]
    items: Option<usize>,
    /// A CI-sized run: 1,000 reports (the target is judged for 10,000 only).
    #[arg(long)]
    quick: bool,
    /// The centre's NATS URL (`vigil up`).
    #[arg(long)]
    nats_url: String,
    /// The centre's data directory (its NATS users: `cli` reads the log, `sites` is the peer).
    #[arg(long)]
    data_dir: PathBuf,
    /// The centre's leaf-node listener (`host:port`).
    #[arg(long)]
    leaf_addr: String,
    /// Where the site dials the centre (`host:port`): the link this tool heals.
    #[arg(long)]
    link_listen: String,
    /// The site's own NATS URL (`vigil site --listen`).
    #[arg(long)]
    site_url: String,
    /// The site's data directory (its local NATS user).
    #[arg(long)]
    site_dir: PathBuf,
    /// The site's name.
    #[arg(long, default_value = "bench")]
    site_name: String,
    /// The site's scope (the reports' country).
    #[arg(long, default_value = "AF")]
    scope: String,
    /// Reports submitted at the site at the same time.
    #[arg(long, default_value_t = 32)]
    submit_in_flight: usize,
    /// Requests the peer has in flight.
    #[arg(long, default_value_t = 1)]
    peer_in_flight: usize,
    /// Reports per request of the peer: as one batch
    /// (`vigil.cmd.incidents.report.batch`, what the relay sends a site's reports as) when
    /// above 1, else each alone (`vigil.cmd.incidents.report`).
    #[arg(long, default_value_t = 256)]
    peer_batch: usize,
    /// Most seconds to wait for the outbox to drain.
    #[arg(long, default_value_t = 600)]
    drain_timeout: u64,
}

fn report(id: Uuid, scope: &str, source: &str, i: usize, at: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "id": id,
        "actor": {"user": "bench-officer", "role": "field_officer", "scope": scope},
        "source": source,
        "body": {"country": scope, "category": "crime", "severity": 2,
                 "title": format!("Report {i} from the field site"), "occurred_at": at},
    }))
    .unwrap_or_default()
}

async fn ask(client: &Client, subject: String, body: Vec<u8>) -> anyhow::Result<Value> {
    let msg = tokio::time::timeout(
        Duration::from_secs(30),
        client.request(subject, body.into()),
    )
    .await
    .context("no answer within 30 s")??;
    Ok(serde_json::from_slice(&msg.payload)?)
}

async fn state(site: &Client) -> anyhow::Result<Value> {
    let s = ask(site, ::site::subjects::STATE.to_owned(), vec![]).await?;
    s.get("ok")
        .cloned()
        .with_context(|| format!("the site's state: {s}"))
}

fn count(s: &Value, key: &str) -> u64 {
    s[key].as_u64().unwrap_or(0)
}

/// Runs `vigil-bench site`.
pub async fn run(args: SiteArgs) -> anyhow::Result<()> {
    let n = args
        .items
        .unwrap_or(if args.quick { QUICK_ITEMS } else { ITEMS });
    if n == 0 || args.submit_in_flight == 0 || args.peer_in_flight == 0 {
        bail!("--items, --submit-in-flight and --peer-in-flight must be ≥ 1");
    }
    let centre_users = runtime::nats_auth::load(&args.data_dir)?
        .context("the centre's data directory has no NATS users")?;
    let site_users = runtime::nats_auth::load(&args.site_dir)?
        .context("the site's data directory has no NATS users")?;
    let site_user = runtime::nats_sites::user_of(&args.site_name);
    let site = connect_site(&args, site_users.credentials(&site_user)).await?;
    let before = state(&site).await?;
    if before["link"]["up"] != false || count(&before, "forwarded") != 0 {
        bail!("the site must start with its link down and nothing forwarded: {before}");
    }
    println!(
        "== field site {} ({}): {} reports queued while the link is down ==",
        args.site_name,
        args.scope,
        thousands(n as u64)
    );

    // 1. Accept.
    let at = (time::OffsetDateTime::now_utc() - time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)?;
    let subject = format!("{}.incidents.report", ::site::subjects::SUBMIT);
    let started = Instant::now();
    let mut accepted: Vec<(u64, Uuid)> = futures::stream::iter(0..n)
        .map(|i| {
            let (site, subject, scope, at) = (&site, &subject, &args.scope, &at);
            async move {
                let id = Uuid::new_v4();
                let a = ask(
                    site,
                    subject.clone(),
                    report(id, scope, "bench-site", i, at),
                )
                .await?;
                match a["ok"]["position"].as_u64() {
                    Some(p) if a["ok"]["duplicate"] == false => Ok::<_, anyhow::Error>((p, id)),
                    _ => bail!("the site did not accept report {i}: {a}"),
                }
            }
        })
        .buffer_unordered(args.submit_in_flight)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let submit_s = started.elapsed().as_secs_f64();
    accepted.sort_unstable();
    let order: Vec<Uuid> = accepted.iter().map(|(_, id)| *id).collect();
    let queued = state(&site).await?;
    if count(&queued, "pending") != n as u64 || queued["link"]["up"] != false {
        bail!("after the submissions the site should hold all {n} pending, link down: {queued}");
    }
    println!(
        "accepted at the site (fsync'd each, {} in flight): {} in {submit_s:.2} s = {}/s; link down, {} pending",
        args.submit_in_flight,
        thousands(n as u64),
        rate_text(n as f64 / submit_s),
        thousands(n as u64),
    );

    // 2. Heal the link, 3. time the drain.
    let link = CancellationToken::new();
    let _link_guard = link.clone().drop_guard();
    let listener = tokio::net::TcpListener::bind(&args.link_listen)
        .await
        .with_context(|| format!("listening on {} (the site's link)", args.link_listen))?;
    // The site's nats-server can connect from the moment the socket listens.
    let healed = Instant::now();
    tokio::spawn(relay_link(listener, args.leaf_addr.clone(), link.clone()));
    let (first, first_done, drained, last) =
        drain(&site, n as u64, healed, args.drain_timeout).await?;
    let drain_s = drained.as_secs_f64();
    let forwarding_s = (drained - first).as_secs_f64();
    if count(&last, "refused") != 0 || count(&last, "forwarded") != n as u64 {
        bail!("every report should be forwarded, none refused: {last}");
    }

    // 4. Check the centre's log.
    let cli = util::nats_connect(
        &args.nats_url,
        "vigil-bench-site-log",
        centre_users.credentials(runtime::nats_auth::CLI),
    )
    .await?;
    check_log(&cli, &order, &args.site_name).await?;
    println!(
        "centre's log: all {} reports once each, in the site's order, source site:{}",
        thousands(n as u64),
        args.site_name
    );

    // 5. The peer.
    let peer = util::nats_connect(
        &args.nats_url,
        "vigil-bench-site-peer",
        centre_users.credentials(runtime::nats_auth::SITES),
    )
    .await?;
    let started = Instant::now();
    let per = args.peer_batch.max(1);
    let answers: Vec<anyhow::Result<()>> = futures::stream::iter((0..n).step_by(per))
        .map(|from| {
            let (peer, scope, at) = (&peer, &args.scope, &at);
            async move {
                let upto = (from + per).min(n);
                let bodies: Vec<Vec<u8>> = (from..upto)
                    .map(|i| report(Uuid::new_v4(), scope, "bench-peer", i, at))
                    .collect();
                let answers = if per == 1 {
                    let subject = events::subjects::command_subject("incidents", "report");
                    vec![ask(peer, subject, bodies.concat()).await?]
                } else {
                    let subject = events::subjects::batch_subject("incidents", "report");
                    let batch = format!(
                        "[{}]",
                        bodies
                            .iter()
                            .map(|b| String::from_utf8_lossy(b))
                            .collect::<Vec<_>>()
                            .join(",")
                    );
                    let a = ask(peer, subject, batch.into_bytes()).await?;
                    match a["ok"]["answers"].as_array() {
                        Some(list) => list.clone(),
                        None => bail!("the incidents service refused the batch from {from}: {a}"),
                    }
                };
                if answers.len() != upto - from {
                    bail!(
                        "the incidents service answered {} of the reports {from}..{upto}",
                        answers.len()
                    );
                }
                match answers.iter().position(|a| a.get("ok").is_none()) {
                    None => Ok(()),
                    Some(i) => bail!(
                        "the incidents service refused report {}: {}",
                        from + i,
                        answers[i]
                    ),
                }
            }
        })
        .buffer_unordered(args.peer_in_flight)
        .collect()
        .await;
    answers.into_iter().collect::<anyhow::Result<()>>()?;
    let peer_s = started.elapsed().as_secs_f64();

    // The first answers seen were already carried out before `first`: the rate is of those
    // forwarded after it.
    let site_rate = (n as u64 - first_done) as f64 / forwarding_s.max(1e-9);
    let peer_rate = n as f64 / peer_s.max(1e-9);
    println!();
    println!("== results ({} reports) ==", thousands(n as u64));
    println!("  {:<44} {:>10} {:>10}", "system", "seconds", "reports/s");
    println!(
        "  {:<44} {:>10.2} {:>10}",
        "site: link healed → first answers recorded",
        first.as_secs_f64(),
        "-"
    );
    println!(
        "  {:<44} {:>10.2} {:>10}",
        format!(
            "site: then → outbox empty ({} more)",
            thousands(n as u64 - first_done)
        ),
        forwarding_s,
        rate_text(site_rate)
    );
    println!(
        "  {:<44} {:>10.2} {:>10}",
        "site: link healed → outbox empty",
        drain_s,
        rate_text(n as f64 / drain_s.max(1e-9))
    );
    println!(
        "  {:<44} {:>10.2} {:>10}",
        if per == 1 {
            format!(
                "peer: straight to the service, {} in flight",
                args.peer_in_flight
            )
        } else {
            format!(
                "peer: straight, batches of {per}, {} in flight",
                args.peer_in_flight
            )
        },
        peer_s,
        rate_text(peer_rate)
    );
    println!(
        "  site ÷ peer (reports/s while forwarding): {:.2}x",
        site_rate / peer_rate
    );
    let judged = n == ITEMS;
    println!();
    println!("== target (from issue 19) ==");
    println!(
        "  10,000 pending items forwarded ≤ 10 s after the link returns: {drain_s:.2} s  {}",
        if judged {
            verdict(drain_s <= TARGET_SECS)
        } else {
            "- (not judged: not 10,000 items)"
        }
    );
    Ok(())
}

/// Connects to the site's own bus and waits until the site answers there.
async fn connect_site(
    args: &SiteArgs,
    credentials: Option<(String, String)>,
) -> anyhow::Result<Client> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tried = async {
            let c =
                util::nats_connect(&args.site_url, "vigil-bench-site", credentials.clone()).await?;
            state(&c).await?;
            Ok::<_, anyhow::Error>(c)
        }
        .await;
        match tried {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("the site at {} does not answer", args.site_url)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The link: every connection to `listener` is copied both ways to the centre's leaf
/// listener `to`, until `stop`.
async fn relay_link(listener: tokio::net::TcpListener, to: String, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let Ok((mut inbound, _)) = accepted else {
            continue;
        };
        let (to, stop) = (to.clone(), stop.clone());
        tokio::spawn(async move {
            let Ok(mut outbound) = tokio::net::TcpStream::connect(&to).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
            }
        });
    }
}

/// Polls the site's state until nothing is pending: (heal → first answers recorded, how
/// many then, heal → empty, the last state).
async fn drain(
    site: &Client,
    n: u64,
    healed: Instant,
    timeout: u64,
) -> anyhow::Result<(Duration, u64, Duration, Value)> {
    let mut first = None;
    let mut printed = Instant::now();
    loop {
        let s = state(site).await?;
        let done = count(&s, "forwarded") + count(&s, "refused");
        if done > 0 && first.is_none() {
            first = Some((healed.elapsed(), done));
        }
        if count(&s, "pending") == 0 {
            let end = healed.elapsed();
            let (at, then) = first.unwrap_or((end, done));
            return Ok((at, then.min(n - 1), end, s));
        }
        if printed.elapsed() >= Duration::from_secs(1) {
            printed = Instant::now();
            println!(
                "  {:>5.1} s after the heal: {} of {} forwarded, link {}",
                healed.elapsed().as_secs_f64(),
                thousands(done),
                thousands(n),
                if s["link"]["up"] == true {
                    "up"
                } else {
                    "down"
                }
            );
        }
        if healed.elapsed() > Duration::from_secs(timeout) {
            bail!("the outbox did not drain within {timeout} s: {s}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks that the centre's log holds each of `order` once, in this order, from `site`.
async fn check_log(cli: &Client, order: &[Uuid], site: &str) -> anyhow::Result<()> {
    let wanted: std::collections::HashSet<Uuid> = order.iter().copied().collect();
    let store = StoreClient::new(cli.clone(), Duration::from_secs(10));
    let source = format!("site:{site}");
    let mut found = Vec::with_capacity(order.len());
    let mut from = 1;
    loop {
        let (events, head) = store
            .read(from, 1000)
            .await
            .map_err(|e| anyhow::anyhow!("reading the centre's log: {e}"))?;
        for e in &events {
            if e.event_type == "IncidentReported" && wanted.contains(&e.id) {
                if e.meta.source.as_deref() != Some(source.as_str()) {
                    bail!("event {} came from {:?}, not {source}", e.id, e.meta.source);
                }
                found.push(e.id);
            }
        }
        match events.last() {
            Some(last) if last.position < head => from = last.position + 1,
            _ => break,
        }
    }
    if found != order {
        let once: std::collections::HashSet<_> = found.iter().collect();
        bail!(
            "the log holds {} of the {} reports ({} distinct), {}",
            found.len(),
            order.len(),
            once.len(),
            if once.len() == found.len() && found.len() == order.len() {
                "out of the site's order"
            } else {
                "not each once"
            }
        );
    }
    Ok(())
}
