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
//!   (`runtime::nats_sites::FORWARDABLE`), and a command whose actor is not a field officer
//!   of the site's own scope; an unreadable command is refused `invalid`. Otherwise it sends
//!   the command, with `source` set to `site:<name>` (the log says where it came from) and
//!   everything else unchanged (the same id: the service counts it once), to
//!   `vigil.cmd.<service>.<command>`, and passes the service's answer back as it is. The
//!   service checks the actor's scope against the payload itself (a report for another
//!   country is refused there). No answer from the service is `unavailable`: the site
//!   sends the command again with the same id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use events::command::{Refusal, Role};
use futures::StreamExt;
use runtime::nats_sites;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// How long the relay waits for a service's answer before telling the site to retry.
pub const SERVICE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests the relay handles at the same time.
const MAX_IN_FLIGHT: usize = 256;

/// Relays the sites' messages until `shutdown`. `data_dir` is the centre's (its sites file).
pub async fn run(
    client: Client,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut commands = client
        .queue_subscribe(nats_sites::RELAY_COMMANDS, "vigil-sites".to_owned())
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
            let answer = handle(&client, &data_dir, &msg.subject, msg.payload).await;
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
        Ok(body) => {
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
    if !nats_sites::forwardable(service, command) {
        return Err(Refusal::forbidden(format!(
            "a site may not forward {service}.{command}"
        )));
    }
    let mut cmd = runtime::commands::decode::<Value>(payload)?;
    if cmd.actor.role != Role::FieldOfficer || cmd.actor.scope != Some(scope) {
        return Err(Refusal::forbidden(format!(
            "site {site} forwards only commands of field officers of {scope}"
        )));
    }
    cmd.source = format!("site:{site}");
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
}
