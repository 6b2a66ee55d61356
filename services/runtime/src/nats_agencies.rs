//! Agency systems on the bus: one NATS identity per agency, issued and revoked by the
//! operator (`vigil agency credentials|revoke|list`), and what each may do.
//!
//! # Identity: an nkey
//! An agency logs into NATS with an nkey (ed25519): the operator's verb generates a key pair,
//! writes the **seed** into a credentials file handed to the agency (mode 0600, see
//! [`AgencyCredentials`]), and records only the **public key** in
//! `<data-dir>/secrets/nats-agencies.json` ([`agencies_file`], mode 0600). The centre never
//! keeps the seed: the server config holds public keys, and a leaked data directory gives
//! nobody an agency's login. Issuing again replaces the key (the old file stops working);
//! revoking removes it. Why nkeys and not passwords: the seed never crosses the wire (the
//! server sends a nonce the client signs) and the nats-server config carries no secret of
//! the agency's.
//!
//! # Permissions (in the server: a client cannot opt out)
//! For agency `a` ([`permissions`]):
//! - subscribe `vigil.alerts.a` (its broadcasts) and its own inbox `_INBOX_agency_a.>`
//!   ([`inbox_prefix`]: the answers to its acknowledgements);
//! - publish `vigil.alerts.a.ack` only (acknowledgements, as requests);
//! - `allow_responses`: it may answer a request it received, which is how it sends the
//!   **receipt** of a broadcast (the broadcast service delivers with a request on
//!   `vigil.alerts.a` and counts it delivered when the receipt comes back);
//! - nothing else: no other agency's subjects, nothing under `vigil.events`, `vigil.store`,
//!   `vigil.cmd`.
//!
//! # Taking effect
//! `vigil up` watches [`agencies_file`] and, when it changes, rewrites the nats-server config
//! ([`server_users`] goes into the application account next to the services' users) and
//! asks nats-server to reload it: a new identity can log in at once, and a revoked agency's
//! live connection is closed by the server (it no longer passes authorization). With
//! `--external-nats` the operator adds [`server_users`]' entries to their own server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::nats_auth::{Permissions, write_private};

/// `<data-dir>/secrets/nats-agencies.json`: the public keys of the issued identities.
pub fn agencies_file(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("nats-agencies.json")
}

/// Where agency `agency` receives broadcasts: `vigil.alerts.<agency>`. `None` when the id
/// cannot be one subject token.
pub fn alerts_subject(agency: &str) -> Option<String> {
    events::subjects::alert_subject(agency)
}

/// Where agency `agency` acknowledges: `vigil.alerts.<agency>.ack`.
pub fn acks_subject(agency: &str) -> Option<String> {
    alerts_subject(agency).map(|s| format!("{s}.ack"))
}

/// The inbox prefix of agency `agency`: the answers to its requests arrive on
/// `_INBOX_agency_<agency>.…`, which only it may subscribe to.
pub fn inbox_prefix(agency: &str) -> String {
    format!("_INBOX_agency_{agency}")
}

/// What agency `agency` may publish and subscribe to; `None` when its id cannot be a subject
/// token (no identity is issued for it).
pub fn permissions(agency: &str) -> Option<Permissions> {
    let alerts = alerts_subject(agency)?;
    let acks = acks_subject(agency)?;
    Some(Permissions {
        publish_allow: vec![acks],
        publish_deny: vec![],
        subscribe_allow: vec![alerts, format!("{}.>", inbox_prefix(agency))],
        subscribe_deny: vec![],
        allow_responses: true,
    })
}

/// One issued identity, as the centre keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencyIdentity {
    /// The nkey's public key (`U…`).
    pub public_key: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
}

/// `<data-dir>/secrets/nats-agencies.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgencyIdentities {
    /// What this file is.
    #[serde(default)]
    pub comment: String,
    /// Agency id → its identity.
    #[serde(default)]
    pub agencies: BTreeMap<String, AgencyIdentity>,
}

/// What the agency gets: everything its system needs to connect (the file is its secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgencyCredentials {
    /// What this file is.
    pub comment: String,
    /// The agency.
    pub agency: String,
    /// The NATS URL of the centre when it was issued (the agency may reach it under another
    /// address).
    pub nats_url: String,
    /// The nkey seed (`SU…`): `ConnectOptions::with_nkey` in async-nats, `nkeySeed` /
    /// `--nkey` elsewhere.
    pub nkey_seed: String,
    /// Its public key, as the centre knows it.
    pub public_key: String,
    /// Broadcasts arrive here as requests; answer each with a receipt.
    pub alerts: String,
    /// Acknowledge here, with a request.
    pub acks: String,
    /// The inbox prefix the client must use (the only inbox it may read).
    pub inbox_prefix: String,
}

/// Reads the identities; empty when there is no file.
pub fn load(data_dir: &Path) -> anyhow::Result<AgencyIdentities> {
    let path = agencies_file(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("the agency identities {} are damaged: {e}", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgencyIdentities::default()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the agency identities {}: {e}",
            path.display()
        )),
    }
}

fn save(data_dir: &Path, identities: &mut AgencyIdentities) -> anyhow::Result<()> {
    identities.comment = "NATS identities of agency systems (public keys only), written by `vigil agency`; `vigil up` reloads nats-server when it changes".to_owned();
    write_private(
        &agencies_file(data_dir),
        &serde_json::to_vec_pretty(identities)?,
    )
}

/// Issues a new identity for `agency` (replacing an older one) and returns its credentials.
/// The caller has checked that the agency exists.
pub fn issue(data_dir: &Path, agency: &str, nats_url: &str) -> anyhow::Result<AgencyCredentials> {
    let (Some(alerts), Some(acks)) = (alerts_subject(agency), acks_subject(agency)) else {
        anyhow::bail!("agency id {agency:?} cannot be a NATS subject token");
    };
    let pair = nkeys::KeyPair::new_user();
    let seed = pair
        .seed()
        .map_err(|e| anyhow::anyhow!("cannot make an nkey: {e}"))?;
    let public_key = pair.public_key();
    let issued_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut identities = load(data_dir)?;
    identities.agencies.insert(
        agency.to_owned(),
        AgencyIdentity {
            public_key: public_key.clone(),
            issued_at,
        },
    );
    save(data_dir, &mut identities)?;
    Ok(AgencyCredentials {
        comment: format!(
            "NATS credentials of agency {agency} for Vigil; keep this file secret (mode 0600)"
        ),
        agency: agency.to_owned(),
        nats_url: nats_url.to_owned(),
        nkey_seed: seed,
        public_key,
        alerts,
        acks,
        inbox_prefix: inbox_prefix(agency),
    })
}

/// Revokes `agency`'s identity; false when it had none.
pub fn revoke(data_dir: &Path, agency: &str) -> anyhow::Result<bool> {
    let mut identities = load(data_dir)?;
    if identities.agencies.remove(agency).is_none() {
        return Ok(false);
    }
    save(data_dir, &mut identities)?;
    Ok(true)
}

/// The `users` entries of the agencies, in nats-server config syntax, one per line (for the
/// application account). Identities whose id or key is not valid are left out.
pub fn server_users(identities: &AgencyIdentities) -> Vec<String> {
    identities
        .agencies
        .iter()
        .filter(|(_, id)| nkeys::KeyPair::from_public_key(&id.public_key).is_ok())
        .filter_map(|(agency, id)| {
            let p = permissions(agency)?;
            Some(format!(
                "{{ nkey: {}, permissions: {} }}",
                crate::nats_auth::quoted(&id.public_key),
                crate::nats_auth::permissions_block(&p),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn an_agency_may_read_only_its_alerts_and_inbox_and_publish_only_its_acks() {
        let p = permissions("unicef").unwrap();
        assert_eq!(p.publish_allow, ["vigil.alerts.unicef.ack"]);
        assert_eq!(
            p.subscribe_allow,
            ["vigil.alerts.unicef", "_INBOX_agency_unicef.>"]
        );
        assert!(p.allow_responses, "receipts are replies");
        for s in p.publish_allow.iter().chain(&p.subscribe_allow) {
            assert!(!s.contains('*') && s != "vigil.>", "{s}");
        }
        assert!(permissions("a.b").is_none());
        assert!(permissions("*").is_none());
        assert!(permissions("").is_none());
    }

    #[test]
    fn issuing_keeps_only_the_public_key_and_revoking_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let creds = issue(dir.path(), "wfp", "nats://127.0.0.1:1").unwrap();
        assert!(creds.nkey_seed.starts_with("SU"), "a user seed");
        let pair = nkeys::KeyPair::from_seed(&creds.nkey_seed).unwrap();
        assert_eq!(pair.public_key(), creds.public_key);
        let text = std::fs::read_to_string(agencies_file(dir.path())).unwrap();
        assert!(text.contains(&creds.public_key));
        assert!(!text.contains(&creds.nkey_seed), "the seed is not kept");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(agencies_file(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = issue(dir.path(), "wfp", "nats://127.0.0.1:1").unwrap();
        assert_ne!(
            again.public_key, creds.public_key,
            "a new key replaces the old"
        );
        let users = server_users(&load(dir.path()).unwrap());
        assert_eq!(users.len(), 1);
        assert!(users[0].contains(&again.public_key), "{users:?}");
        assert!(!users[0].contains(&creds.public_key));
        assert!(revoke(dir.path(), "wfp").unwrap());
        assert!(!revoke(dir.path(), "wfp").unwrap());
        assert!(server_users(&load(dir.path()).unwrap()).is_empty());
        assert!(issue(dir.path(), "w.f", "nats://127.0.0.1:1").is_err());
    }
}
