//! Field sites on the bus: one NATS user per site, issued and revoked by the operator
//! (`vigil site-user add|revoke|list`), the leaf-node listener of the centre they connect
//! to, and what a site may send through it.
//!
//! # Identity
//! A site's nats-server connects to the centre's leaf-node listener as the user
//! `site_<name>` ([`user_of`]) with a random password (24 bytes, hex). The centre keeps the
//! site's scope and password in `<data-dir>/secrets/nats-sites.json` ([`sites_file`], mode
//! 0600, beside the services' passwords); the operator hands the site its
//! [`SiteCredentials`] file. Adding a site again replaces its password (the old file stops
//! working); revoking removes it.
//!
//! # Permissions (in the server: a client cannot opt out)
//! The user may connect only as a leaf node (`allowed_connection_types: ["LEAFNODE"]`, not
//! as a client on the centre's client port) and, for site `s` ([`permissions`]):
//! - publish `vigil.site.s.cmd.<service>.<command>` (commands to forward, as requests),
//!   `vigil.site.s.batch` (several of them, in order, as one request),
//!   `vigil.site.s.ping` (is the link up, is the site still known) and
//!   `vigil.site.s.read` (catch-up reads of the centre's events for its scope, as
//!   requests), nothing else: no `vigil.cmd.>`, no other site's subjects, nothing under
//!   `vigil.store` or `vigil.events`;
//! - subscribe its own inbox `_INBOX_site_s.>` (the answers to its requests) and
//!   `vigil.site.s.events` (the live feed of its scope, [`events_subject`]) only.
//!
//! Which commands a site may forward, and that they speak for one of the site's own people
//! of the command's role ([`FORWARDABLE`]) and of the site's scope, NATS subjects cannot say (the country is in the payload): the centre's relay
//! (the `sites` user, see `site::relay`) checks every message against this file before it
//! sends it on to the service, and the service's own `decide` checks the actor's scope again.
//!
//! # Taking effect
//! `vigil up` watches [`sites_file`] and reloads its nats-server when it changes: a new site
//! can connect at once, and a revoked one can no longer log in. nats-server 2.15 keeps a leaf
//! connection that was already open across a reload (measured), so the relay reads the file
//! too: from the moment it changes, every command of a revoked site is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use events::command::Role;
use events::validate::Country;
use serde::{Deserialize, Serialize};

use crate::nats_auth::{Permissions, write_private};

/// The commands a site may forward, as (service, command, who at the site may send it, with
/// the site's country as their scope): field reports, their updates and roll-call marks from
/// field officers, and the acknowledgement of a broadcast that reached the site from agency
/// focal points (so an alert that arrived before a cut is acknowledged during it).
pub const FORWARDABLE: [(&str, &str, Role); 4] = [
    ("incidents", "report", Role::FieldOfficer),
    ("incidents", "update", Role::FieldOfficer),
    ("relocation", "mark", Role::FieldOfficer),
    ("broadcast", "ack", Role::AgencyFocalPoint),
];

/// The services of [`FORWARDABLE`] that take a batch of one command
/// ([`events::subjects::batch_subject`]; the generic host, `runtime::host`): the relay sends
/// a site's consecutive commands of one kind to them together.
pub const BATCHED: [&str; 2] = ["incidents", "relocation"];

/// The subjects the relay sends a site's commands on: each forwardable command's own, and
/// its batch's for a service of [`BATCHED`].
pub fn relay_subjects() -> Vec<String> {
    FORWARDABLE
        .iter()
        .flat_map(|(service, command, _)| {
            let batch = BATCHED
                .contains(service)
                .then(|| events::subjects::batch_subject(service, command));
            std::iter::once(events::subjects::command_subject(service, command)).chain(batch)
        })
        .collect()
}

/// Who at a site may send (service, command) on to the centre, if a site may forward it.
pub fn forwarder(service: &str, command: &str) -> Option<Role> {
    FORWARDABLE
        .iter()
        .find(|(s, c, _)| *s == service && *c == command)
        .map(|(_, _, role)| *role)
}

/// Whether (service, command) is one a site may forward.
pub fn forwardable(service: &str, command: &str) -> bool {
    forwarder(service, command).is_some()
}

/// `<data-dir>/secrets/nats-sites.json`.
pub fn sites_file(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("nats-sites.json")
}

/// Whether `name` can be a site's name: 1 to 32 of `a-z`, `0-9` and `-` (one subject token,
/// and safe in a URL and a file name).
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The NATS user of site `name`.
pub fn user_of(name: &str) -> String {
    format!("site_{name}")
}

/// The inbox prefix of site `name`: only it may read the answers under it.
pub fn inbox_prefix(name: &str) -> String {
    crate::nats_auth::inbox_prefix(&user_of(name))
}

/// Where site `name` forwards command `command` of `service`.
pub fn command_subject(name: &str, service: &str, command: &str) -> String {
    format!("vigil.site.{name}.cmd.{service}.{command}")
}

/// Where site `name` asks whether the centre knows it (and so whether the link is up).
pub fn ping_subject(name: &str) -> String {
    format!("vigil.site.{name}.ping")
}

/// Where site `name` forwards several commands, in its order, as one request.
pub fn batch_subject(name: &str) -> String {
    format!("vigil.site.{name}.batch")
}

/// Where site `name` asks for the centre's events of its scope after a centre position
/// (request; `site::feed`).
pub fn read_subject(name: &str) -> String {
    format!("vigil.site.{name}.read")
}

/// Where the centre publishes site `name`'s live feed of its scope (`site::feed`).
pub fn events_subject(name: &str) -> String {
    format!("vigil.site.{name}.events")
}

/// What the centre's feed for sites listens on: every site's catch-up reads.
pub const RELAY_READS: &str = "vigil.site.*.read";
/// What the centre's feed for sites publishes on: every site's live feed.
pub const RELAY_FEEDS: &str = "vigil.site.*.events";

/// The site a catch-up read on `subject` is from.
pub fn parse_read_subject(subject: &str) -> Option<&str> {
    let site = subject.strip_prefix("vigil.site.")?.strip_suffix(".read")?;
    valid_name(site).then_some(site)
}

/// What the relay listens on: every site's commands.
pub const RELAY_COMMANDS: &str = "vigil.site.*.cmd.*.*";
/// What the relay listens on: every site's batches.
pub const RELAY_BATCHES: &str = "vigil.site.*.batch";
/// What the relay listens on: every site's pings.
pub const RELAY_PINGS: &str = "vigil.site.*.ping";

/// The site a batch on `subject` (`vigil.site.<name>.batch`) comes from; `None` for any
/// other subject.
pub fn batch_site(subject: &str) -> Option<&str> {
    let site = subject
        .strip_prefix("vigil.site.")?
        .strip_suffix(".batch")?;
    valid_name(site).then_some(site)
}

/// What a message on `subject` asks the relay: `(site, Some((service, command)))` for a
/// command, `(site, None)` for a ping; `None` for any other subject.
pub fn parse_subject(subject: &str) -> Option<(&str, Option<(&str, &str)>)> {
    let rest = subject.strip_prefix("vigil.site.")?;
    let mut tokens = rest.split('.');
    let site = tokens.next()?;
    let what = match (tokens.next()?, tokens.next(), tokens.next(), tokens.next()) {
        ("ping", None, None, None) => None,
        ("cmd", Some(service), Some(command), None) => Some((service, command)),
        _ => return None,
    };
    valid_name(site).then_some((site, what))
}

/// What site `name`'s user may publish and subscribe to.
pub fn permissions(name: &str) -> Permissions {
    Permissions {
        publish_allow: vec![
            format!("vigil.site.{name}.cmd.>"),
            batch_subject(name),
            ping_subject(name),
            read_subject(name),
        ],
        publish_deny: vec![],
        subscribe_allow: vec![format!("{}.>", inbox_prefix(name)), events_subject(name)],
        subscribe_deny: vec![],
        allow_responses: false,
    }
}

/// One site, as the centre keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteIdentity {
    /// The country the site works for.
    pub scope: Country,
    /// Its leaf-node password.
    pub password: String,
    /// When it was issued (RFC 3339).
    pub issued_at: String,
}

/// `<data-dir>/secrets/nats-sites.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteIdentities {
    /// What this file is.
    #[serde(default)]
    pub comment: String,
    /// Site name → its identity.
    #[serde(default)]
    pub sites: BTreeMap<String, SiteIdentity>,
}

/// What the site gets: everything its `vigil site` needs to connect (the file is its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteCredentials {
    /// What this file is.
    pub comment: String,
    /// The site's name.
    pub site: String,
    /// The country it works for.
    pub scope: Country,
    /// Its NATS user at the centre.
    pub user: String,
    /// Its password.
    pub password: String,
    /// The centre's leaf-node URL when it was issued (`nats-leaf://host:port`; empty when
    /// the centre had no leaf listener then); `vigil site --centre` overrides it.
    #[serde(default)]
    pub centre: String,
}

impl SiteCredentials {
    /// Reads a credentials file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| {
            anyhow::anyhow!("cannot read the site credentials {}: {e}", path.display())
        })?;
        serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not a site credentials file (written by `vigil site-user add`): {e}",
                path.display()
            )
        })
    }
}

/// Reads the sites; empty when there is no file.
pub fn load(data_dir: &Path) -> anyhow::Result<SiteIdentities> {
    let path = sites_file(data_dir);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("the site identities {} are damaged: {e}", path.display())
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SiteIdentities::default()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot read the site identities {}: {e}",
            path.display()
        )),
    }
}

fn save(data_dir: &Path, identities: &mut SiteIdentities) -> anyhow::Result<()> {
    identities.comment = "NATS users of field sites (leaf nodes), written by `vigil site-user`; `vigil up` reloads nats-server when it changes; keep this file secret (mode 0600)".to_owned();
    write_private(
        &sites_file(data_dir),
        &serde_json::to_vec_pretty(identities)?,
    )
}

/// Issues (or re-issues, replacing the password) the identity of site `name` for `scope`,
/// and returns its credentials.
pub fn issue(
    data_dir: &Path,
    name: &str,
    scope: Country,
    centre: &str,
) -> anyhow::Result<SiteCredentials> {
    if !valid_name(name) {
        anyhow::bail!("{name:?} is not a site name: 1 to 32 of a-z, 0-9 and '-'");
    }
    let password = crate::nats_auth::random_password()?;
    let issued_at = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut identities = load(data_dir)?;
    identities.sites.insert(
        name.to_owned(),
        SiteIdentity {
            scope,
            password: password.clone(),
            issued_at,
        },
    );
    save(data_dir, &mut identities)?;
    Ok(SiteCredentials {
        comment: format!(
            "NATS credentials of field site {name} ({scope}) for Vigil; keep this file secret (mode 0600)"
        ),
        site: name.to_owned(),
        scope,
        user: user_of(name),
        password,
        centre: centre.to_owned(),
    })
}

/// Revokes site `name`; false when it had no identity.
pub fn revoke(data_dir: &Path, name: &str) -> anyhow::Result<bool> {
    let mut identities = load(data_dir)?;
    if identities.sites.remove(name).is_none() {
        return Ok(false);
    }
    save(data_dir, &mut identities)?;
    Ok(true)
}

/// The `users` entries of the sites, in nats-server config syntax, one per line (for the
/// application account). Sites whose name is not valid are left out.
pub fn server_users(identities: &SiteIdentities) -> Vec<String> {
    identities
        .sites
        .iter()
        .filter(|(name, _)| valid_name(name))
        .map(|(name, id)| {
            format!(
                "{{ user: {}, password: {}, allowed_connection_types: [\"LEAFNODE\"], permissions: {} }}",
                crate::nats_auth::quoted(&user_of(name)),
                crate::nats_auth::quoted(&id.password),
                crate::nats_auth::permissions_block(&permissions(name)),
            )
        })
        .collect()
}

/// The `leafnodes` block of the centre's nats-server: a listener on `listen` (`host:port`);
/// the sites log in with the users of [`server_users`].
pub fn leafnodes_block(listen: &str) -> String {
    format!(
        "leafnodes {{\n  listen: {}\n}}\n",
        crate::nats_auth::quoted(listen)
    )
}

/// The site's own bus: the password of its local NATS user ([`user_of`] the site's name, in
/// `<site data dir>/secrets/nats-users.json`, mode 0600), generated at the first start. The
/// site's processes log in with it; its inbox prefix is the one the centre lets through.
pub fn local_credentials(data_dir: &Path, name: &str) -> anyhow::Result<(String, String)> {
    let user = user_of(name);
    let mut users = crate::nats_auth::load(data_dir)?.unwrap_or_default();
    if let Some(c) = users.credentials(&user) {
        return Ok(c);
    }
    let password = crate::nats_auth::random_password()?;
    users.users.insert(user.clone(), password.clone());
    users.comment = format!(
        "The NATS user of field site {name}'s own bus, generated by `vigil site`; keep this file secret (mode 0600)"
    );
    write_private(
        &crate::nats_auth::users_file(data_dir),
        &serde_json::to_vec_pretty(&users)?,
    )?;
    Ok((user, password))
}

/// The leaf-node URL the site's nats-server dials: `centre` (`nats-leaf://host:port`, or
/// `host:port`) with the site's user and password in it.
pub fn leaf_url(centre: &str, credentials: &SiteCredentials) -> anyhow::Result<String> {
    let hostport = centre
        .strip_prefix("nats-leaf://")
        .or_else(|| centre.strip_prefix("nats://"))
        .unwrap_or(centre);
    let ok = hostport.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && !host.contains(['@', '/', ' '])
            && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !ok {
        anyhow::bail!(
            "--centre {centre:?} must be the centre's leaf-node address, nats-leaf://HOST:PORT (`vigil up --leaf-addr`)"
        );
    }
    // Both are hex or [a-z0-9_-]: nothing to escape in a URL.
    Ok(format!(
        "nats-leaf://{}:{}@{hostport}",
        credentials.user, credentials.password
    ))
}

/// The config of a site's own nats-server (written into `nats_dir`, owner-only: it holds
/// passwords): clients on `listen` (`host:port`) log in as `local` (user, password); one
/// leaf-node remote, `remote` (from [`leaf_url`]), retried every second while it is down.
pub fn site_server_conf(
    listen: &str,
    nats_dir: &Path,
    local: &(String, String),
    remote: &str,
) -> String {
    use crate::nats_auth::quoted;
    format!(
        "# Written by `vigil site`; rewritten at every start.\n\
         listen: {listen}\n\
         max_payload: 4MB\n\
         log_file: {log}\n\
         pid_file: {pid}\n\
         authorization {{ users: [ {{ user: {user}, password: {password} }} ] }}\n\
         leafnodes {{\n  reconnect: \"1s\"\n  remotes: [ {{ url: {remote} }} ]\n}}\n",
        log = quoted(&nats_dir.join("nats-server.log").display().to_string()),
        pid = quoted(&nats_dir.join("nats-server.pid").display().to_string()),
        user = quoted(&local.0),
        password = quoted(&local.1),
        remote = quoted(remote),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_site_may_publish_only_its_own_commands_batches_and_pings_and_read_only_its_inbox() {
        let p = permissions("kabul-1");
        assert_eq!(
            p.publish_allow,
            [
                "vigil.site.kabul-1.cmd.>",
                "vigil.site.kabul-1.batch",
                "vigil.site.kabul-1.ping",
                "vigil.site.kabul-1.read"
            ]
        );
        assert_eq!(
            p.subscribe_allow,
            ["_INBOX_site_kabul-1.>", "vigil.site.kabul-1.events"]
        );
        assert_eq!(
            parse_read_subject(&read_subject("kabul-1")),
            Some("kabul-1")
        );
        assert_eq!(parse_read_subject("vigil.site.*.read"), None);
        assert_eq!(parse_read_subject("vigil.site.a.b.read"), None);
        assert!(!p.allow_responses);
        assert!(valid_name("kabul-1"));
        for bad in ["", "a.b", "*", ">", "A", "a b", &"x".repeat(33)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn subjects_parse_back_and_nothing_else_does() {
        assert_eq!(
            parse_subject(&command_subject("s1", "incidents", "report")),
            Some(("s1", Some(("incidents", "report"))))
        );
        assert_eq!(parse_subject(&ping_subject("s1")), Some(("s1", None)));
        for bad in [
            "vigil.site.s1.cmd.incidents",
            "vigil.site.s1.cmd.incidents.report.x",
            "vigil.site.S1.ping",
            "vigil.cmd.incidents.report",
            "vigil.site.s1.pong",
        ] {
            assert_eq!(parse_subject(bad), None, "{bad}");
        }
        assert_eq!(batch_site(&batch_subject("s1")), Some("s1"));
        for bad in [
            "vigil.site.S1.batch",
            "vigil.site.s1.x.batch",
            "vigil.site..batch",
            "vigil.site.s1.ping",
        ] {
            assert_eq!(batch_site(bad), None, "{bad}");
        }
        assert!(forwardable("incidents", "report"));
        assert!(forwardable("relocation", "mark"));
        assert_eq!(forwarder("broadcast", "ack"), Some(Role::AgencyFocalPoint));
        assert_eq!(forwarder("relocation", "mark"), Some(Role::FieldOfficer));
        assert!(!forwardable("broadcast", "issue"));
        assert!(!forwardable("incidents", "verify"));
        assert!(!forwardable("levels", "set"));
    }

    #[test]
    fn issuing_replaces_the_password_and_revoking_removes_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let af = Country::parse("AF").unwrap();
        let creds = issue(dir.path(), "kabul", af, "nats-leaf://127.0.0.1:1").unwrap();
        assert_eq!(creds.user, "site_kabul");
        assert_eq!(creds.password.len(), 48);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(sites_file(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = issue(dir.path(), "kabul", af, "").unwrap();
        assert_ne!(again.password, creds.password);
        let users = server_users(&load(dir.path()).unwrap());
        assert_eq!(users.len(), 1);
        assert!(users[0].contains(&again.password), "{users:?}");
        assert!(users[0].contains("allowed_connection_types: [\"LEAFNODE\"]"));
        assert!(!users[0].contains(&creds.password));
        assert!(revoke(dir.path(), "kabul").unwrap());
        assert!(!revoke(dir.path(), "kabul").unwrap());
        assert!(server_users(&load(dir.path()).unwrap()).is_empty());
        assert!(issue(dir.path(), "Kabul", af, "").is_err());
    }

    #[test]
    fn the_leaf_url_carries_the_sites_login_and_bad_addresses_are_refused() {
        let creds = SiteCredentials {
            comment: String::new(),
            site: "s".into(),
            scope: Country::parse("AF").unwrap(),
            user: "site_s".into(),
            password: "ab12".into(),
            centre: String::new(),
        };
        for centre in [
            "nats-leaf://10.0.0.1:7422",
            "10.0.0.1:7422",
            "nats://10.0.0.1:7422",
        ] {
            assert_eq!(
                leaf_url(centre, &creds).unwrap(),
                "nats-leaf://site_s:ab12@10.0.0.1:7422"
            );
        }
        for bad in [
            "",
            "nats-leaf://host",
            "nats-leaf://u:p@host:1",
            "host:0",
            ":7422",
        ] {
            assert!(leaf_url(bad, &creds).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let local = local_credentials(dir.path(), "s").unwrap();
        assert_eq!(local_credentials(dir.path(), "s").unwrap(), local, "kept");
        let conf = site_server_conf("127.0.0.1:1", dir.path(), &local, "nats-leaf://x@h:1");
        assert!(
            conf.contains("remotes: [ { url: \"nats-leaf://x@h:1\" } ]"),
            "{conf}"
        );
        assert!(conf.contains(&local.1));
    }
}
