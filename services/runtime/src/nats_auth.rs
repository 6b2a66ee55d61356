//! Who may do what on the bus: the NATS users of Vigil's services, their credentials file, and
//! the per-subject permissions `vigil up` writes into the nats-server config it owns.
//!
//! One NATS user per service (`store`, `gateway`, each domain service) plus `cli` for the
//! operator tools. Passwords are random (24 bytes, hex), generated at the first start into
//! `<data-dir>/secrets/nats-users.json` (mode 0600, directory 0700) and reused afterwards.
//!
//! The rules the table enforces, in the server (a client cannot opt out):
//! - only `store` publishes committed events (`vigil.events.>`) and serves `vigil.store.>`;
//! - `gateway` reads the log (`vigil.store.read`, `vigil.store.stream`) and sends commands
//!   (`vigil.cmd.>`), and asks the services whether they are ready (`vigil.status`), but
//!   cannot append or fake an event;
//! - a domain service reads through the store and appends only to the stream categories it
//!   owns ([`append_categories`]): it may publish `vigil.store.append.<itself>.<category>` for
//!   those and no other append subject, so the store (which records the subject's user in
//!   `meta.appended_by`) knows who wrote each event; it receives only its own commands
//!   (`vigil.cmd.<service>.>`) and status requests (`vigil.status`), and only `broadcast`
//!   publishes `vigil.alerts.>`;
//! - `cli` (tail/append/import/replay) reads the store, follows the event feed and appends to
//!   any category as `cli` (`vigil.store.append.cli.*`): it is the operator's repair and
//!   import tool, and its password sits in the same owner-only file as every service's, so a
//!   narrower grant would not stop whoever holds it; every event it writes says
//!   `appended_by: cli` instead;
//! - nobody publishes on the bare `vigil.store.append` (the store does not serve it);
//! - each user receives replies only on its own inbox prefix, `_INBOX_<user>.>` (see
//!   [`inbox_prefix`]; `runtime::nats::connect` uses it), so no service can read the answers
//!   meant for another (the gateway's login-free reads, the store's replies to a service);
//!   those that answer requests get `allow_responses` (they may publish to the reply subject
//!   of a request they received).
//!
//! - `sites` (the relay of field sites' commands) receives what the sites send
//!   (`vigil.site.*.cmd.*.*`, `vigil.site.*.batch`, `vigil.site.*.ping`), answers them, and
//!   sends on only the commands a site may forward ([`crate::nats_sites::FORWARDABLE`]),
//!   alone or as a batch of one kind ([`crate::nats_sites::relay_subjects`]); it
//!   also reads the log and the event feed and serves each site its scope's events
//!   (`vigil.site.*.read` answered, `vigil.site.*.events` published; `site::feed`);
//! - field sites are not services: each site's nats-server connects as a leaf node with a
//!   user of its own, limited to its own subjects (see [`crate::nats_sites`]);
//! - agency systems are not services: each logs in with an nkey the operator issued, limited
//!   to its own alert and acknowledgement subjects (see [`crate::nats_agencies`]); their
//!   entries sit in the same application account.
//!
//! The nats-server config has an application account holding these users plus the system
//! account, and no `no_auth_user`: a connection without valid credentials is refused (and the
//! `accounts` block never holds only the system account: CVE-2023-47090).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The store service.
pub const STORE: &str = "store";
/// The gateway (HTTP API, WebSocket boards).
pub const GATEWAY: &str = "gateway";
/// The operator tools: `vigil tail`, `vigil append`, `vigil replay`.
pub const CLI: &str = "cli";
/// The centre's relay of field sites' commands (`site::relay`).
pub const SITES: &str = "sites";
/// The domain services, each with a NATS user of its own.
pub const DOMAIN_SERVICES: [&str; 8] = [
    "audit",
    "incidents",
    "levels",
    "hostage",
    "surge",
    "relocation",
    "clearances",
    "broadcast",
];

/// The NATS account that holds Vigil's users.
pub const ACCOUNT: &str = "VIGIL";
/// The system account (no users: nobody logs into it).
pub const SYSTEM_ACCOUNT: &str = "SYS";

/// Every NATS user Vigil knows, in the order the config lists them.
pub fn all_users() -> Vec<&'static str> {
    let mut users = vec![STORE, GATEWAY];
    users.extend(DOMAIN_SERVICES);
    users.push(CLI);
    users.push(SITES);
    users
}

/// In [`append_categories`]: every category (the NATS wildcard token).
pub const ANY_CATEGORY: &str = "*";

/// The stream categories `user` may append to (the `<category>` tokens of its
/// `vigil.store.append.<user>.<category>` subjects); empty for `store`, `gateway` and unknown
/// users. Read off the services: each writes the streams of its own aggregate, `hostage` also
/// the audit record of a details read (written before the details are shown), `surge` also
/// its officers' reservation streams (one officer, one active surge), and `cli`
/// anything ([`ANY_CATEGORY`]; reference data from `vigil import`, repairs with `vigil
/// append`).
pub fn append_categories(user: &str) -> &'static [&'static str] {
    match user {
        "audit" => &["audit"],
        "incidents" => &["incident"],
        "levels" => &["level"],
        "hostage" => &["hostage", "audit"],
        "surge" => &["surge", "surge_officer"],
        "relocation" => &["relocation"],
        "clearances" => &["clearance"],
        "broadcast" => &["broadcast"],
        CLI => &[ANY_CATEGORY],
        _ => &[],
    }
}

/// The append subjects `user` may publish on: `vigil.store.append.<user>.<category>` for each
/// of its [`append_categories`].
fn append_subjects(user: &str) -> Vec<String> {
    append_categories(user)
        .iter()
        .map(|category| format!("{}.{user}.{category}", events::subjects::STORE_APPEND))
        .collect()
}

/// What one user may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish_allow: Vec<String>,
    /// Subjects it may never publish to (checked after `publish_allow`).
    pub publish_deny: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe_allow: Vec<String>,
    /// Subjects it may never subscribe to.
    pub subscribe_deny: Vec<String>,
    /// Whether it may publish to the reply subject of a request it received.
    pub allow_responses: bool,
}

fn strings(subjects: &[&str]) -> Vec<String> {
    subjects.iter().map(|s| (*s).to_owned()).collect()
}

/// The inbox prefix of `user`: its replies arrive on `_INBOX_<user>.…`, which only it may
/// subscribe to.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{user}")
}

/// The permissions of `user`, `None` for a user Vigil does not know.
pub fn permissions(user: &str) -> Option<Permissions> {
    const EVENTS: &str = "vigil.events.>";
    const STORE_ALL: &str = "vigil.store.>";
    const READS: [&str; 2] = ["vigil.store.read", "vigil.store.stream"];
    // Every append subject but one's own: the bare prefix and any other user's token.
    const APPENDS: [&str; 2] = ["vigil.store.append", "vigil.store.append.>"];
    let inbox = format!("{}.>", inbox_prefix(user));
    let inbox = inbox.as_str();
    let p = match user {
        STORE => Permissions {
            publish_allow: strings(&[EVENTS]),
            publish_deny: vec![],
            subscribe_allow: strings(&[STORE_ALL, inbox]),
            subscribe_deny: vec![],
            allow_responses: true,
        },
        GATEWAY => Permissions {
            publish_allow: strings(&[
                "vigil.store.read",
                "vigil.store.stream",
                "vigil.cmd.>",
                events::subjects::SERVICE_STATUS,
            ]),
            publish_deny: strings(&[APPENDS[0], APPENDS[1], EVENTS]),
            subscribe_allow: strings(&[EVENTS, inbox]),
            subscribe_deny: strings(&[STORE_ALL]),
            allow_responses: false,
        },
        CLI => Permissions {
            publish_allow: [strings(&READS), append_subjects(user)].concat(),
            publish_deny: strings(&["vigil.store.append", EVENTS]),
            subscribe_allow: strings(&[EVENTS, inbox]),
            subscribe_deny: strings(&[STORE_ALL]),
            allow_responses: false,
        },
        SITES => Permissions {
            publish_allow: crate::nats_sites::relay_subjects()
                .into_iter()
                .chain(strings(&READS))
                .chain([crate::nats_sites::RELAY_FEEDS.to_owned()])
                .collect(),
            publish_deny: strings(&["vigil.store.append", EVENTS]),
            subscribe_allow: strings(&[
                crate::nats_sites::RELAY_COMMANDS,
                crate::nats_sites::RELAY_BATCHES,
                crate::nats_sites::RELAY_PINGS,
                crate::nats_sites::RELAY_READS,
                EVENTS,
                inbox,
            ]),
            subscribe_deny: strings(&[STORE_ALL]),
            allow_responses: true,
        },
        service if DOMAIN_SERVICES.contains(&service) => {
            let mut publish_allow = [strings(&READS), append_subjects(service)].concat();
            let mut subscribe_allow = vec![
                EVENTS.to_owned(),
                format!("vigil.cmd.{service}.>"),
                events::subjects::SERVICE_STATUS.to_owned(),
                inbox.to_owned(),
            ];
            if service == "broadcast" {
                publish_allow.push("vigil.alerts.>".to_owned());
                // Agency systems acknowledge on `vigil.alerts.<agency>.ack`.
                subscribe_allow.push("vigil.alerts.*.ack".to_owned());
            }
            Permissions {
                publish_allow,
                publish_deny: strings(&["vigil.store.append", EVENTS]),
                subscribe_allow,
                subscribe_deny: strings(&[STORE_ALL]),
                allow_responses: true,
            }
        }
        _ => return None,
    };
    Some(p)
}

/// `<data-dir>/secrets/nats-users.json`.
pub fn users_file(data_dir: &Path) -> PathBuf {
    data_dir.join("secrets").join("nats-users.json")
}

/// The credentials file: user name → password.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NatsUsers {
    /// What this file is (for whoever opens it).
    #[serde(default)]
    pub comment: String,
    /// User name → password.
    pub users: BTreeMap<String, String>,
    /// The password the nodes of a several-node centre authenticate their routes with (see
    /// `crate::nats_cluster`); absent on a single machine, which has no routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_password: Option<String>,
}

impl NatsUsers {
    /// `(user, password)` of `user`, if the file has it.
    pub fn credentials(&self, user: &str) -> Option<(String, String)> {
        self.users
            .get(user)
            .map(|password| (user.to_owned(), password.clone()))
    }
}

/// Reads `<data-dir>/secrets/nats-users.json`; `Ok(None)` when there is none.
pub fn load(data_dir: &Path) -> anyhow::Result<Option<NatsUsers>> {
    let path = users_file(data_dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(anyhow::anyhow!(
                "cannot read the NATS credentials {}: {e} (run as the user that runs `vigil up`, or pass --nats-user/--nats-password)",
                path.display()
            ));
        }
    };
    let users: NatsUsers = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "the NATS credentials file {} is damaged: {e}",
            path.display()
        )
    })?;
    Ok(Some(users))
}

/// Reads the credentials file, creating it at the first start and adding a password for any
/// user it lacks (a service added since). Tightens its mode to 0600 if it was looser.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<NatsUsers> {
    let path = users_file(data_dir);
    let existing = load(data_dir)?;
    let existed = existing.is_some();
    let mut file = existing.unwrap_or_default();
    let mut changed = !existed;
    for user in all_users() {
        if !file.users.contains_key(user) {
            file.users.insert(user.to_owned(), random_password()?);
            changed = true;
        }
    }
    for user in file.users.keys() {
        if permissions(user).is_none() {
            tracing::warn!(user = %user, file = %path.display(), "unknown NATS user in the credentials file; it is not given access");
        }
    }
    if changed {
        file.comment = "NATS users of Vigil's services, generated by `vigil up`; keep this file secret (mode 0600)".to_owned();
        write_private(&path, &serde_json::to_vec_pretty(&file)?)?;
    } else {
        tighten(&path)?;
    }
    Ok(file)
}

/// [`load_or_create`], and a route password for a cluster node's routes when the file has
/// none yet. The nodes of one cluster share this file (`ops/cluster` copies it to each).
pub fn load_or_create_cluster(data_dir: &Path) -> anyhow::Result<NatsUsers> {
    let mut file = load_or_create(data_dir)?;
    if file.route_password.is_none() {
        file.route_password = Some(random_password()?);
        write_private(&users_file(data_dir), &serde_json::to_vec_pretty(&file)?)?;
    }
    Ok(file)
}

/// 24 random bytes as 48 hex digits.
pub(crate) fn random_password() -> anyhow::Result<String> {
    let mut raw = [0u8; 24];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no system randomness: {e}"))?;
    let mut s = String::with_capacity(48);
    for b in raw {
        let _ = write!(s, "{b:02x}");
    }
    Ok(s)
}

/// Creates `dir` (and its parents) with mode 0700.
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    crate::data_dir::create_private_dir(dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))
}

/// Writes `bytes` to `path` atomically with mode 0600 (its directory 0700).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        // A leftover temp file keeps its old mode: set it again.
        tighten_io(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(unix)]
fn tighten_io(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode != 0o600 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn tighten_io(_path: &Path) -> std::io::Result<()> {
    Ok(())
}

fn tighten(path: &Path) -> anyhow::Result<()> {
    tighten_io(path).map_err(|e| anyhow::anyhow!("cannot set mode 0600 on {}: {e}", path.display()))
}

/// A string in nats-server config syntax (double-quoted, escaped).
pub(crate) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn list(subjects: &[String]) -> String {
    let items: Vec<String> = subjects.iter().map(|s| quoted(s)).collect();
    format!("[{}]", items.join(", "))
}

fn allow_deny(allow: &[String], deny: &[String]) -> String {
    if deny.is_empty() {
        format!("{{ allow: {} }}", list(allow))
    } else {
        format!("{{ allow: {}, deny: {} }}", list(allow), list(deny))
    }
}

/// A user's `permissions` value in nats-server config syntax.
pub(crate) fn permissions_block(p: &Permissions) -> String {
    format!(
        "{{ publish: {}, subscribe: {}, allow_responses: {} }}",
        allow_deny(&p.publish_allow, &p.publish_deny),
        allow_deny(&p.subscribe_allow, &p.subscribe_deny),
        p.allow_responses,
    )
}

/// The `accounts` block (and `system_account`) of the nats-server config: Vigil's users with
/// their permissions in [`ACCOUNT`], the agency systems' nkeys (see
/// [`crate::nats_agencies`]) and the field sites' leaf-node users (see
/// [`crate::nats_sites`]) next to them, and the system account. Users not in the table are
/// left out. Fails if a known user has no password in `users`.
pub fn server_config(
    users: &NatsUsers,
    agencies: &crate::nats_agencies::AgencyIdentities,
    sites: &crate::nats_sites::SiteIdentities,
) -> anyhow::Result<String> {
    accounts_config(users, agencies, sites, false)
}

/// The `accounts` block of a cluster node: [`server_config`] with JetStream enabled for the
/// application account and the JetStream permissions of `crate::nats_cluster::permissions`.
pub fn cluster_server_config(
    users: &NatsUsers,
    agencies: &crate::nats_agencies::AgencyIdentities,
    sites: &crate::nats_sites::SiteIdentities,
) -> anyhow::Result<String> {
    accounts_config(users, agencies, sites, true)
}

fn accounts_config(
    users: &NatsUsers,
    agencies: &crate::nats_agencies::AgencyIdentities,
    sites: &crate::nats_sites::SiteIdentities,
    jetstream: bool,
) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(
        "# One NATS user per service, each limited to its subjects; no anonymous access.\n",
    );
    out.push_str("accounts: {\n");
    let _ = writeln!(out, "  {ACCOUNT}: {{");
    out.push_str("    users: [\n");
    for user in all_users() {
        let Some(password) = users.users.get(user) else {
            anyhow::bail!("the NATS credentials have no password for `{user}`");
        };
        let p = if jetstream {
            crate::nats_cluster::permissions(user)
        } else {
            permissions(user)
        };
        let Some(p) = p else {
            continue;
        };
        let _ = writeln!(
            out,
            "      {{ user: {}, password: {}, permissions: {{\n          publish: {}\n          subscribe: {}\n          allow_responses: {}\n      }} }}",
            quoted(user),
            quoted(password),
            allow_deny(&p.publish_allow, &p.publish_deny),
            allow_deny(&p.subscribe_allow, &p.subscribe_deny),
            p.allow_responses,
        );
    }
    for agency in crate::nats_agencies::server_users(agencies) {
        let _ = writeln!(out, "      {agency}");
    }
    for site in crate::nats_sites::server_users(sites) {
        let _ = writeln!(out, "      {site}");
    }
    out.push_str("    ]\n");
    if jetstream {
        out.push_str("    jetstream: enabled\n");
    }
    out.push_str("  }\n");
    let _ = writeln!(out, "  {SYSTEM_ACCOUNT}: {{}}");
    out.push_str("}\n");
    let _ = writeln!(out, "system_account: {SYSTEM_ACCOUNT}");
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_the_store_publishes_events_and_serves_the_store_api() {
        for user in all_users() {
            let p = permissions(user).unwrap();
            let publishes_events = p
                .publish_allow
                .iter()
                .any(|s| s.starts_with("vigil.events"));
            let serves_store = p
                .subscribe_allow
                .iter()
                .any(|s| s.starts_with("vigil.store"));
            assert_eq!(publishes_events, user == STORE, "{user}");
            assert_eq!(serves_store, user == STORE, "{user}");
            let own = format!("_INBOX_{user}.>");
            assert!(p.subscribe_allow.contains(&own), "{user}");
            assert!(
                !p.subscribe_allow
                    .iter()
                    .any(|s| s.starts_with("_INBOX") && *s != own),
                "{user} hears only its own replies"
            );
        }
    }

    #[test]
    fn the_gateway_cannot_append_and_services_get_only_their_commands() {
        let g = permissions(GATEWAY).unwrap();
        assert!(
            !g.publish_allow
                .iter()
                .any(|s| s == "vigil.store.append" || s == "vigil.store.>")
        );
        assert!(g.publish_deny.contains(&"vigil.store.append".to_owned()));
        for service in DOMAIN_SERVICES {
            let p = permissions(service).unwrap();
            let cmds: Vec<_> = p
                .subscribe_allow
                .iter()
                .filter(|s| s.starts_with("vigil.cmd."))
                .collect();
            assert_eq!(cmds, vec![&format!("vigil.cmd.{service}.>")]);
            let alerts = p
                .publish_allow
                .iter()
                .any(|s| s.starts_with("vigil.alerts"));
            assert_eq!(alerts, service == "broadcast", "{service}");
        }
        assert!(permissions("nobody").is_none());
    }

    #[test]
    fn each_user_appends_only_on_its_own_token_and_categories() {
        for user in all_users() {
            let p = permissions(user).unwrap();
            let appends: Vec<&String> = p
                .publish_allow
                .iter()
                .filter(|s| s.starts_with("vigil.store.append") || *s == "vigil.store.>")
                .collect();
            let own: Vec<String> = append_categories(user)
                .iter()
                .map(|c| format!("vigil.store.append.{user}.{c}"))
                .collect();
            assert_eq!(appends, own.iter().collect::<Vec<_>>(), "{user}");
        }
        assert!(append_categories(STORE).is_empty());
        assert!(append_categories(GATEWAY).is_empty());
        assert_eq!(append_categories("levels"), ["level"]);
        assert_eq!(append_categories(CLI), [ANY_CATEGORY]);
    }

    #[test]
    fn credentials_are_generated_once_private_and_complete() {
        let dir = tempfile_dir();
        assert!(load(dir.path()).unwrap().is_none());
        let first = load_or_create(dir.path()).unwrap();
        assert_eq!(first.users.len(), all_users().len());
        for password in first.users.values() {
            assert_eq!(password.len(), 48);
            assert!(password.chars().all(|c| c.is_ascii_hexdigit()));
        }
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first.users, again.users, "reused, not regenerated");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = users_file(dir.path());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            let dmode = std::fs::metadata(path.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(dmode, 0o700);
            // A loosened file is tightened again at the next start.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            load_or_create(dir.path()).unwrap();
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A user missing from an older file is added; the others keep their passwords.
        let mut older = again.clone();
        older.users.remove("surge");
        write_private(
            &users_file(dir.path()),
            &serde_json::to_vec(&older).unwrap(),
        )
        .unwrap();
        let grown = load_or_create(dir.path()).unwrap();
        assert_eq!(grown.users.len(), all_users().len());
        assert_eq!(grown.users["store"], first.users["store"]);
        assert_eq!(
            grown.credentials("cli"),
            Some(("cli".to_owned(), first.users["cli"].clone()))
        );
    }

    #[test]
    fn the_server_config_has_an_application_account_and_no_anonymous_user() {
        let dir = tempfile_dir();
        let mut users = load_or_create(dir.path()).unwrap();
        users.users.insert("intruder".into(), "x".into());
        let conf = server_config(&users, &Default::default(), &Default::default()).unwrap();
        assert!(conf.contains("VIGIL: {"), "{conf}");
        assert!(conf.contains("system_account: SYS"), "{conf}");
        assert!(!conf.contains("no_auth_user"), "{conf}");
        assert!(!conf.contains("intruder"), "{conf}");
        for user in all_users() {
            assert!(conf.contains(&format!("user: \"{user}\"")), "{conf}");
        }
    }

    #[test]
    fn agency_nkeys_sit_in_the_application_account_with_their_subjects_only() {
        let dir = tempfile_dir();
        let users = load_or_create(dir.path()).unwrap();
        let creds = crate::nats_agencies::issue(dir.path(), "wfp", "nats://x:1").unwrap();
        let agencies = crate::nats_agencies::load(dir.path()).unwrap();
        let conf = server_config(&users, &agencies, &Default::default()).unwrap();
        let line = conf
            .lines()
            .find(|l| l.contains(&creds.public_key))
            .unwrap();
        assert!(
            line.contains("publish: { allow: [\"vigil.alerts.wfp.ack\"] }"),
            "{line}"
        );
        assert!(
            line.contains("subscribe: { allow: [\"vigil.alerts.wfp\", \"_INBOX_agency_wfp.>\"] }"),
            "{line}"
        );
        assert!(line.contains("allow_responses: true"), "{line}");
        assert!(!conf.contains(&creds.nkey_seed));
        let account_end = conf.find(&format!("  {SYSTEM_ACCOUNT}:")).unwrap();
        assert!(conf.find(&creds.public_key).unwrap() < account_end);
    }

    #[test]
    fn a_cluster_node_enables_jetstream_for_the_application_account_only() {
        let dir = tempfile_dir();
        let single_file = load_or_create(dir.path()).unwrap();
        assert!(single_file.route_password.is_none());
        let text = std::fs::read_to_string(users_file(dir.path())).unwrap();
        assert!(
            !text.contains("route_password"),
            "single-node file unchanged"
        );
        let users = load_or_create_cluster(dir.path()).unwrap();
        assert_eq!(users.users, single_file.users, "same passwords");
        let route = users.route_password.clone().unwrap();
        assert_eq!(route.len(), 48);
        assert_eq!(
            load_or_create_cluster(dir.path()).unwrap().route_password,
            Some(route),
            "generated once"
        );
        let single = server_config(&users, &Default::default(), &Default::default()).unwrap();
        assert!(!single.contains("jetstream"), "{single}");
        assert!(!single.contains("$JS"), "{single}");
        let conf = cluster_server_config(&users, &Default::default(), &Default::default()).unwrap();
        let sys = conf.find(&format!("  {SYSTEM_ACCOUNT}: {{}}")).unwrap();
        let js = conf.find("    jetstream: enabled").unwrap();
        assert!(js < sys, "in the application account: {conf}");
        assert_eq!(conf.matches("jetstream: enabled").count(), 1, "{conf}");
        assert!(!conf.contains("no_auth_user"), "{conf}");
        let store_line = conf
            .lines()
            .skip_while(|l| !l.contains("user: \"store\""))
            .nth(1)
            .unwrap();
        assert!(store_line.contains("\"$JS.API.>\""), "{store_line}");
        let gateway_line = conf
            .lines()
            .skip_while(|l| !l.contains("user: \"gateway\""))
            .nth(1)
            .unwrap();
        assert!(!gateway_line.contains("$JS"), "{gateway_line}");
    }

    fn tempfile_dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
}
