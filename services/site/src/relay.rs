//! The centre's side of field sites: the relay (NATS user `sites`) that takes what sites
//! send over their leaf-node links and checks it before any service sees it.
//!
//! A site may publish only on its own `vigil.site.<name>.…` subjects (NATS permissions, see
//! `runtime::nats_sites`), so the subject names the site truthfully. For each message the
//! relay reads `<data-dir>/secrets/nats-sites.json` and:
//! - `vigil.site.<name>.ping`: answers `{"ok": {"site", "scope"}}` when the site is known,
//!   a `forbidden` refusal when it is not (revoked);
//! - `vigil.site.<name>.cmd.<service>.<command>`: refuses (`forbidden`, nothing sent on) a
//!   site it does not know, a command a site may not forward
//!   (`runtime::nats_sites::FORWARDABLE`), and a command whose actor is not one of the site's
//!   own people of its scope (a field officer; for a broadcast's acknowledgement, an agency
//!   focal point); an unreadable command is refused `invalid`. Otherwise it sends
//!   the command, with `source` set to `site:<name>` (the log says where it came from) and
//!   everything else unchanged (the same id: the service counts it once), to
//!   `vigil.cmd.<service>.<command>`, and passes the service's answer back as it is. The
//!   service checks the actor's scope against the payload itself (a report for another
//!   country is refused there). No answer from the service is `unavailable`: the site
//!   sends the command again with the same id.
//! - `vigil.site.<name>.batch`: a JSON array of at most [`MAX_BATCH`] [`Forward`]s, the
//!   site's next items in its order. Each is checked and sent on as above, **in order**: an
//!   item goes to its service only once every one before it has its answer, except that
//!   consecutive items of one kind (`incidents.report`, say) for a service of
//!   [`nats_sites::BATCHED`] go to it together, as one batch
//!   (`vigil.cmd.<service>.<command>.batch`), which the service carries out in the same
//!   order with the same rule (`runtime::host`: many reports, one fsync). The relay stops at
//!   the first answer that means "send it again" (`unavailable`, no answer, unreadable), and
//!   starts no new item once [`BATCH_BUDGET`] has passed; it answers `{"ok": {"answers":
//!   [...]}}`, one answer (as the service gave it) per item it tried, in order. An unknown
//!   site gets a `forbidden` answer per item.
//!
//! # Order across relays
//! Relays share the work in the queue group `vigil-sites`, and each handles many requests at
//! once, so two requests of one site may be handled by two relays at the same time. Order
//! does not depend on that: a site has one batch in flight, and sends the next only after
//! the answer to this one; the relay carries a batch out in order. When a site sends a batch
//! again (its answer was lost or late), the first copy may still be running in another
//! relay: both walk the same items in the same order, each sends an item to its service only
//! once every item before it has a final answer (so it is in the log, or refused), or in
//! one service batch with the items just before it, where the service stores none before
//! the one it follows (`runtime::host`, chained appends); the service carries out the two
//! copies of an item once (same id). So no item of a site is stored before an older one,
//! whoever relays it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use events::command::{Refusal, Role};
use futures::StreamExt;
use runtime::nats_sites;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long the relay waits for a service's answer before telling the site to retry.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests the relay handles at the same time.
const MAX_IN_FLIGHT: usize = 256;
/// The most items in one batch.
pub const MAX_BATCH: usize = 256;
/// After this long the relay starts no new item of a batch and answers: with
/// [`SERVICE_TIMEOUT`] for the last one, a batch is answered within 12 s, before the site
/// gives up on it (`crate::forward::FORWARD_TIMEOUT`).
pub const BATCH_BUDGET: Duration = Duration::from_secs(2);

/// One item of a batch, as the site sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Forward {
    /// The service (`incidents`, `relocation`).
    pub service: String,
    /// The command (`report`, `update`, `mark`).
    pub command: String,
    /// The command (a `Command` envelope), as the site accepted it.
    pub payload: Value,
}

/// Relays the sites' messages until `shutdown`. `data_dir` is the centre's (its sites file).
pub async fn run(
    client: Client,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut commands = client
        .queue_subscribe(nats_sites::RELAY_COMMANDS, "vigil-sites".to_owned())
        .await?;
    let mut batches = client
        .queue_subscribe(nats_sites::RELAY_BATCHES, "vigil-sites".to_owned())
        .await?;
    let mut pings = client
        .queue_subscribe(nats_sites::RELAY_PINGS, "vigil-sites".to_owned())
        .await?;
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let data_dir = Arc::new(data_dir);
    tracing::info!("relaying field sites' commands");
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => break,
            m = commands.next() => m,
            m = batches.next() => m,
            m = pings.next() => m,
        };
        let Some(msg) = msg else { break };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let client = client.clone();
        let data_dir = data_dir.clone();
        tokio::spawn(async move {
            let answer = match nats_sites::batch_site(&msg.subject) {
                Some(site) => handle_batch(&client, &data_dir, site, &msg.payload).await,
                None => handle(&client, &data_dir, &msg.subject, msg.payload).await,
            };
            if let Err(e) = client.publish(reply_to, answer).await {
                tracing::warn!(error = %e, "could not answer a site");
            }
            drop(permit);
        });
    }
    Ok(())
}

fn refusal(r: Refusal) -> Bytes {
    runtime::commands::reply::<Value>(Err(r)).into()
}

async fn handle(
    client: &Client,
    data_dir: &std::path::Path,
    subject: &str,
    payload: Bytes,
) -> Bytes {
    let Some((site, what)) = nats_sites::parse_subject(subject) else {
        return refusal(Refusal::invalid(format!("{subject} is not a site subject")));
    };
    let identities = match nats_sites::load(data_dir) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sites file");
            return refusal(Refusal::unavailable(
                "the centre cannot read its list of sites now; retry with the same id",
            ));
        }
    };
    let Some(identity) = identities.sites.get(site) else {
        metrics::counter!("vigil_relay_refused_total", "reason" => "unknown_site").increment(1);
        return refusal(Refusal::forbidden(format!(
            "site {site} is not known at the centre (revoked?); nothing was done"
        )));
    };
    let scope = identity.scope;
    let Some((service, command)) = what else {
        return runtime::commands::reply::<Value>(Ok(json!({"site": site, "scope": scope}))).into();
    };
    match check(site, scope, service, command, &payload) {
        Err(r) => {
            metrics::counter!("vigil_relay_refused_total", "reason" => r.code.as_str())
                .increment(1);
            refusal(r)
        }
        Ok(body) => send_on(client, service, command, body).await,
    }
}

/// Sends a checked command to its service; its answer, or `unavailable`.
async fn send_on(client: &Client, service: &str, command: &str, body: Bytes) -> Bytes {
    let sent = tokio::time::timeout(
        SERVICE_TIMEOUT,
        client.request(events::subjects::command_subject(service, command), body),
    )
    .await;
    match sent {
        Ok(Ok(answer)) => {
            metrics::counter!("vigil_relay_forwarded_total").increment(1);
            answer.payload
        }
        Ok(Err(e)) => refusal(Refusal::unavailable(format!(
            "the {service} service did not answer ({e}); nothing is lost: retry with the same id"
        ))),
        Err(_) => refusal(Refusal::unavailable(format!(
            "the {service} service did not answer within {} s; retry with the same id",
            SERVICE_TIMEOUT.as_secs()
        ))),
    }
}

/// Carries out a site's batch in order (see the module's doc).
async fn handle_batch(
    client: &Client,
    data_dir: &std::path::Path,
    site: &str,
    payload: &[u8],
) -> Bytes {
    let items: Vec<Forward> = match serde_json::from_slice(payload) {
        Ok(items) => items,
        Err(e) => return refusal(Refusal::invalid(format!("unreadable batch: {e}"))),
    };
    if items.len() > MAX_BATCH {
        return refusal(Refusal::invalid(format!(
            "a batch holds at most {MAX_BATCH} items, not {}",
            items.len()
        )));
    }
    let identities = match nats_sites::load(data_dir) {
        Ok(i) => i,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the sites file");
            return refusal(Refusal::unavailable(
                "the centre cannot read its list of sites now; retry with the same ids",
            ));
        }
    };
    let Some(identity) = identities.sites.get(site) else {
        metrics::counter!("vigil_relay_refused_total", "reason" => "unknown_site")
            .increment(items.len() as u64);
        let refused = refusal(Refusal::forbidden(format!(
            "site {site} is not known at the centre (revoked?); nothing was done"
        )));
        let one: Value = serde_json::from_slice(&refused).unwrap_or(Value::Null);
        return runtime::commands::reply::<Value>(Ok(json!({ "answers": vec![one; items.len()] })))
            .into();
    };
    let checked = |item: &Forward| {
        let bytes = serde_json::to_vec(&item.payload).unwrap_or_default();
        check(site, identity.scope, &item.service, &item.command, &bytes)
    };
    let started = Instant::now();
    let mut answers: Vec<Value> = Vec::with_capacity(items.len());
    let mut next = 0;
    while let Some(item) = items.get(next) {
        if !answers.is_empty() && started.elapsed() >= BATCH_BUDGET {
            break;
        }
        let got = match checked(item) {
            Err(r) => {
                metrics::counter!("vigil_relay_refused_total", "reason" => r.code.as_str())
                    .increment(1);
                vec![refusal(r)]
            }
            Ok(body) if !nats_sites::BATCHED.contains(&item.service.as_str()) => {
                vec![send_on(client, &item.service, &item.command, body).await]
            }
            Ok(body) => {
                // This item and the ones after it of the same kind that pass the check go to
                // the service together; the first that does not pass is checked again above.
                let mut bodies = vec![body];
                for other in items[next + 1..].iter().take(MAX_BATCH - 1) {
                    if other.service != item.service || other.command != item.command {
                        break;
                    }
                    match checked(other) {
                        Ok(body) => bodies.push(body),
                        Err(_) => break,
                    }
                }
                send_together(client, &item.service, &item.command, &bodies).await
            }
        };
        next += got.len();
        for answer in got {
            let again = !crate::outbox::classify(&answer).is_final();
            answers.push(serde_json::from_slice(&answer).unwrap_or_else(|e| {
                json!({"error": {"code": "unavailable", "message": format!("unreadable answer from the service: {e}")}})
            }));
            if again {
                return runtime::commands::reply::<Value>(Ok(json!({ "answers": answers }))).into();
            }
        }
    }
    runtime::commands::reply::<Value>(Ok(json!({ "answers": answers }))).into()
}

/// Sends checked commands of one kind to their service as one batch
/// ([`events::subjects::batch_subject`]): one answer per command it tried, in order (the
/// last one `unavailable` when it stopped short). No answer: `unavailable` for the first. A
/// service that refuses the batch as a whole (one that takes no batches) gets them one at a
/// time instead.
async fn send_together(
    client: &Client,
    service: &str,
    command: &str,
    bodies: &[Bytes],
) -> Vec<Bytes> {
    let mut batch = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    batch.push(b'[');
    for (i, body) in bodies.iter().enumerate() {
        if i > 0 {
            batch.push(b',');
        }
        batch.extend_from_slice(body);
    }
    batch.push(b']');
    let subject = events::subjects::batch_subject(service, command);
    let sent = tokio::time::timeout(SERVICE_TIMEOUT, client.request(subject, batch.into())).await;
    let reply = match sent {
        Ok(Ok(answer)) => answer.payload,
        Ok(Err(e)) => {
            return vec![refusal(Refusal::unavailable(format!(
                "the {service} service did not answer ({e}); nothing is lost: retry with the same id"
            )))];
        }
        Err(_) => {
            return vec![refusal(Refusal::unavailable(format!(
                "the {service} service did not answer within {} s; retry with the same id",
                SERVICE_TIMEOUT.as_secs()
            )))];
        }
    };
    match serde_json::from_slice::<events::command::Reply<runtime::commands::BatchAnswers>>(&reply)
    {
        Ok(events::command::Reply::Ok(got))
            if !got.answers.is_empty() && got.answers.len() <= bodies.len() =>
        {
            metrics::counter!("vigil_relay_forwarded_total").increment(got.answers.len() as u64);
            got.answers
                .into_iter()
                .map(|a| Bytes::from(String::from(Box::<str>::from(a)).into_bytes()))
                .collect()
        }
        _ => {
            let mut answers = Vec::with_capacity(bodies.len());
            for body in bodies {
                let answer = send_on(client, service, command, body.clone()).await;
                let again = !crate::outbox::classify(&answer).is_final();
                answers.push(answer);
                if again {
                    break;
                }
            }
            answers
        }
    }
}

/// What the relay sends on for site `site` of `scope`: the command with `source` set to
/// the site, or why it is refused.
pub fn check(
    site: &str,
    scope: events::validate::Country,
    service: &str,
    command: &str,
    payload: &[u8],
) -> Result<Bytes, Refusal> {
    let Some(role) = nats_sites::forwarder(service, command) else {
        return Err(Refusal::forbidden(format!(
            "a site may not forward {service}.{command}"
        )));
    };
    let mut cmd = runtime::commands::decode::<Value>(payload)?;
    // Only the site's own people of the command's role, of its country. The service then
    // checks the rest as for anyone (the country of a report, that the broadcast reached the
    // site and went to the focal point's agency).
    if cmd.actor.role != role || cmd.actor.scope != Some(scope) {
        let who = match role {
            Role::FieldOfficer => "field officers",
            Role::AgencyFocalPoint => "agency focal points",
            other => other.as_str(),
        };
        return Err(Refusal::forbidden(format!(
            "site {site} forwards {service}.{command} only from {who} of {scope}"
        )));
    }
    cmd.source = format!("{}{site}", events::command::SITE_SOURCE);
    Ok(events::codec::encode(&cmd).into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use events::command::{Actor, RefusalCode};
    use events::validate::Country;

    fn command(role: Role, scope: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": uuid::Uuid::new_v4(),
            "actor": Actor { user: "amina".into(), role, scope: scope.map(|s| Country::parse(s).unwrap()), agency: None },
            "source": "http",
            "body": {"country": "AF"},
        }))
        .unwrap()
    }

    #[test]
    fn only_field_officers_of_the_sites_scope_and_forwardable_commands_pass() {
        let af = Country::parse("AF").unwrap();
        let ok = check(
            "k",
            af,
            "incidents",
            "report",
            &command(Role::FieldOfficer, Some("AF")),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(sent["source"], "site:k");
        assert_eq!(sent["body"]["country"], "AF");
        for (role, scope) in [
            (Role::FieldOfficer, Some("IQ")),
            (Role::FieldOfficer, None),
            (Role::DutyOfficer, None),
            (Role::CrisisManager, Some("AF")),
        ] {
            let r = check("k", af, "incidents", "report", &command(role, scope)).unwrap_err();
            assert_eq!(r.code, RefusalCode::Forbidden, "{role:?} {scope:?}");
        }
        let r = check(
            "k",
            af,
            "incidents",
            "verify",
            &command(Role::FieldOfficer, Some("AF")),
        )
        .unwrap_err();
        assert_eq!(r.code, RefusalCode::Forbidden);
        let r = check("k", af, "incidents", "report", b"{not json").unwrap_err();
        assert_eq!(r.code, RefusalCode::Invalid);
    }

    #[test]
    fn a_broadcasts_acknowledgement_passes_only_from_a_focal_point_of_the_sites_scope() {
        let af = Country::parse("AF").unwrap();
        let ok = check(
            "k",
            af,
            "broadcast",
            "ack",
            &command(Role::AgencyFocalPoint, Some("AF")),
        )
        .unwrap();
        let sent: Value = serde_json::from_slice(&ok).unwrap();
        assert_eq!(sent["source"], "site:k");
        for (role, scope) in [
            (Role::AgencyFocalPoint, Some("IQ")),
            (Role::AgencyFocalPoint, None),
            (Role::FieldOfficer, Some("AF")),
            (Role::DutyOfficer, None),
        ] {
            let r = check("k", af, "broadcast", "ack", &command(role, scope)).unwrap_err();
            assert_eq!(r.code, RefusalCode::Forbidden, "{role:?} {scope:?}");
            assert!(
                r.message.contains("agency focal points of AF"),
                "{}",
                r.message
            );
        }
        // A focal point at the site forwards nothing else.
        let r = check(
            "k",
            af,
            "incidents",
            "report",
            &command(Role::AgencyFocalPoint, Some("AF")),
        )
        .unwrap_err();
        assert_eq!(r.code, RefusalCode::Forbidden);
    }
}
