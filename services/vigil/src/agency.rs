//! `vigil agency credentials|revoke|list`: the NATS identities of agency systems (see
//! `runtime::nats_agencies` for what they are and may do).
//!
//! `credentials` refuses an agency that is not in the reference data (it asks the running
//! store, as the `cli` user, for the agency's stream), then records the new public key in
//! the data directory and writes the seed into the agency's file (mode 0600). `revoke`
//! removes the key. The running `vigil up` reloads nats-server when the identities change;
//! `credentials` waits (up to 5 s) until the bus admits the new identity and says whether it
//! does, and prints the server entry for an operator running `--external-nats`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use events::domain::agency;
use runtime::StoreClient;
use runtime::nats::Mode;
use runtime::nats_agencies;

use crate::cli::{AgencyCommand, Resolved};

/// Runs one `vigil agency` verb.
pub async fn run(settings: Resolved, command: AgencyCommand) -> anyhow::Result<()> {
    match command {
        AgencyCommand::Credentials { agency, out } => credentials(settings, agency, out).await,
        AgencyCommand::Revoke { agency } => {
            if nats_agencies::revoke(&settings.data_dir, &agency)? {
                println!(
                    "Revoked the NATS identity of agency {agency}: the running `vigil up` closes its connection (with --external-nats, remove its entry from your server and reload it)."
                );
                Ok(())
            } else {
                anyhow::bail!("agency {agency} has no NATS identity (see `vigil agency list`)")
            }
        }
        AgencyCommand::List => {
            let identities = nats_agencies::load(&settings.data_dir)?;
            if identities.agencies.is_empty() {
                println!(
                    "No agency has a NATS identity (issue one with `vigil agency credentials <agency>`)."
                );
            }
            for (agency, id) in &identities.agencies {
                println!("{agency}\t{}\tissued {}", id.public_key, id.issued_at);
            }
            Ok(())
        }
    }
}

async fn credentials(
    settings: Resolved,
    agency: String,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    if nats_agencies::permissions(&agency).is_none() {
        anyhow::bail!(
            "{agency:?} is not an agency id (one NATS subject token: no '.', '*', '>' or spaces)"
        );
    }
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-agency",
        settings.nats_credentials_for(runtime::nats_auth::CLI)?,
        Mode::Tool,
    )
    .await?;
    let store = StoreClient::new(client, Duration::from_secs(5));
    let (events, _) = store
        .read_stream(&agency::stream_for(&agency), 1, 10)
        .await
        .context("cannot read the reference data from the store; is `vigil up` running?")?;
    if !events.iter().any(|e| e.event_type == "AgencyRegistered") {
        anyhow::bail!(
            "agency {agency} is not in the reference data: load it first (`vigil import <file>` with a {{\"kind\": \"agency\", \"agency\": \"{agency}\", …}} line)"
        );
    }
    let out = out.unwrap_or_else(|| PathBuf::from(format!("{agency}.nats-credentials.json")));
    let out =
        std::path::absolute(&out).with_context(|| format!("cannot resolve {}", out.display()))?;
    let creds = nats_agencies::issue(&settings.data_dir, &agency, &settings.nats_url)?;
    runtime::nats_auth::write_private(&out, &serde_json::to_vec_pretty(&creds)?)?;
    println!(
        "Wrote the NATS credentials of agency {agency} to {} (mode 0600; hand it to the agency's system, keep it secret).",
        out.display()
    );
    println!(
        "  receives broadcasts on {} (answer each with a receipt), acknowledges on {}",
        creds.alerts, creds.acks
    );
    println!("  any older identity of {agency} is revoked.");
    if admitted(&creds).await {
        println!("  the centre at {} admits it now.", creds.nats_url);
    } else {
        println!(
            "  the NATS server at {} does not admit it yet (is `vigil up` running on this data directory?)",
            creds.nats_url
        );
    }
    if let Some(entry) = nats_agencies::server_users(&nats_agencies::load(&settings.data_dir)?)
        .into_iter()
        .find(|e| e.contains(&creds.public_key))
    {
        println!(
            "  with --external-nats, add to the users of Vigil's account on your server: {entry}"
        );
    }
    Ok(())
}

/// Whether the bus admits the new identity within a few seconds (the running `vigil up`
/// reloads nats-server when it sees the change): tells the operator it works before the file
/// is handed over.
async fn admitted(creds: &nats_agencies::AgencyCredentials) -> bool {
    use tracing::instrument::WithSubscriber;
    // A refusal until the reload lands is expected here: the client's own ERROR log of it
    // would alarm the operator, so the probe runs without a log.
    probe(creds)
        .with_subscriber(tracing::subscriber::NoSubscriber::default())
        .await
}

async fn probe(creds: &nats_agencies::AgencyCredentials) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::time::Instant::now() < deadline {
        let attempt = async_nats::ConnectOptions::with_nkey(creds.nkey_seed.clone())
            .custom_inbox_prefix(&creds.inbox_prefix)
            .name("vigil-agency-check")
            .connection_timeout(Duration::from_secs(2))
            .connect(creds.nats_url.as_str())
            .await;
        if let Ok(client) = attempt {
            drop(client);
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}
