//! A node of a several-node centre: the parts of the nats-server config that make `vigil up
//! --cluster-node` one member of a NATS cluster with JetStream, and what the store and the
//! operator tools may do with JetStream.
//!
//! # Promises
//! - A cluster node's config is today's single-node config (the same application account,
//!   the same per-service users and permissions, no anonymous access) plus: `server_name`,
//!   a short ping interval so that a silent client or route is dropped in seconds
//!   ([`LIVENESS`]),
//!   a `cluster` block (name, listen address, routes to the other nodes, authenticated by a
//!   route password shared by the nodes), `jetstream { store_dir, sync_interval: always }`
//!   (every replica fsyncs before a JetStream ack), and `jetstream: enabled` for the
//!   application account only (the system account gets none).
//! - Only `store` may use JetStream as a writer: the JetStream API (`$JS.API.>`), the leader
//!   lease bucket (`$KV.vigil_store_leader.>`), the journal subject and consumer
//!   acknowledgements/flow control (`$JS.ACK.>`, `$JS.FC.>`); consumer deliveries arrive on
//!   its own inbox. JetStream consumers ignore a user's subscribe permissions (nats-server
//!   #3202, #4225), so whoever may create a consumer reads every stream: that is why no other
//!   user may call `$JS.API` at large. A store may also ask its peers' replicas for their
//!   status (`vigil.store.status`): placement hands the lease only to a live one.
//! - `gateway` may ask every store replica for its status (`vigil.store.status`), for
//!   `/readyz` and `/metrics` (the leader, this node's replica's lag); nothing of JetStream.
//! - `cli` may ask every store replica for its status (`vigil.store.status`) and read, and
//!   only read, the journal's stream info and the lease key (stream info and message gets of
//!   the lease bucket), for `vigil cluster status`.
//! - Without `--cluster-node` none of this is written: the single-machine config is unchanged.
//!
//! Names and addresses are checked before they are written into the config ([`ClusterNode::new`]):
//! a bad flag is a typed refusal, not a nats-server that fails to parse its config.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::nats_auth::{CLI, GATEWAY, NatsUsers, Permissions, STORE, quoted};

/// The JetStream stream of the store's journal (as `store::Replication::new` names it).
pub const JOURNAL_STREAM: &str = "VIGIL_JOURNAL";
/// The JetStream key-value bucket of the store's leader lease (as `store::Replication::new`).
pub const LEASE_BUCKET: &str = "vigil_store_leader";
/// The key of the lease in [`LEASE_BUCKET`].
pub const LEASE_KEY: &str = "leader";
/// The name of the NATS cluster the nodes form.
pub const CLUSTER_NAME: &str = "vigil";
/// The user the nodes' routes authenticate with (its password is the credentials file's
/// `route_password`).
pub const ROUTE_USER: &str = "vigil-route";

/// How a cluster node's nats-server finds a client (or a route) that stopped answering: a
/// PING every second once it has sent nothing for that long, and the connection closed when
/// 3 are unanswered, i.e. 4–5 s after it went silent (nats-server's defaults: 2 min and 2,
/// so 4–6 min for a client, and ~90 s for a route, whose interval is capped at 30 s).
///
/// Why: a store leader that is paused (SIGSTOP, a VM stall), not dead, keeps its
/// subscriptions on its server while it cannot answer, and nats-server hands a client's
/// message to any member of a queue group, its own clients included: about every other
/// append or read from a client of that server would wait out the client's timeout until
/// the pause ends. Dropping the silent connection removes its subscriptions, and the same
/// holds for a node cut off from the others (its route closed, its subscriptions gone from
/// their servers). The cost: a client whose process does not run for 4 s on a loaded
/// machine is disconnected too; it reconnects by itself and retries (the store's clients
/// retry with the same ids). A PING a second to an idle connection costs nothing worth
/// counting. Single-node servers keep the defaults.
pub const LIVENESS: &str = "ping_interval: \"1s\"\nping_max: 3\n";

/// Why a cluster flag is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The node name is empty, too long or holds characters a server name cannot.
    #[error(
        "--cluster-node {0:?} is not a node name: use 1 to 32 letters, digits, '-' or '_' (e.g. n1)"
    )]
    BadName(String),
    /// An address is not `host:port`.
    #[error("{flag} {value:?} is not an address like 127.0.0.1:6222")]
    BadAddress {
        /// The flag it came from.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// No route to any other node.
    #[error(
        "--cluster-routes names no other node: a cluster node needs the others' cluster addresses"
    )]
    NoRoutes,
}

/// One member of the cluster: what its nats-server config needs beyond the single-node one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// This node's name (`server_name`, the store replica's node, the lease holder).
    pub name: String,
    /// `host:port` the cluster (route) listener binds.
    pub listen: String,
    /// `host:port` of the other nodes' cluster listeners.
    pub routes: Vec<String>,
    /// JetStream's `store_dir` (the data directory's `nats/`; nats-server keeps its files in
    /// `<store_dir>/jetstream`).
    pub store_dir: PathBuf,
}

/// `host:port` with a non-empty host and a port number; a `nats-route://` or `nats://`
/// prefix is taken off.
fn host_port(flag: &'static str, value: &str) -> Result<String, ClusterError> {
    let bad = || ClusterError::BadAddress {
        flag,
        value: value.to_owned(),
    };
    let bare = value
        .trim()
        .trim_start_matches("nats-route://")
        .trim_start_matches("nats://");
    let (host, port) = bare.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '[' | ']' | ':'));
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(format!("{host}:{p}")),
        _ => Err(bad()),
    }
}

impl ClusterNode {
    /// Checks the flags of `vigil up --cluster-node NAME --cluster-listen HOST:PORT
    /// --cluster-routes HOST:PORT,…` (routes may carry `nats-route://`; this node's own
    /// listen address among them is left out, so every node may be given the same list).
    pub fn new(
        name: &str,
        listen: &str,
        routes: &[String],
        store_dir: PathBuf,
    ) -> Result<Self, ClusterError> {
        let name_ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_ok {
            return Err(ClusterError::BadName(name.to_owned()));
        }
        let listen = host_port("--cluster-listen", listen)?;
        let mut others = Vec::new();
        for route in routes.iter().filter(|r| !r.trim().is_empty()) {
            let route = host_port("--cluster-routes", route)?;
            if route != listen && !others.contains(&route) {
                others.push(route);
            }
        }
        if others.is_empty() {
            return Err(ClusterError::NoRoutes);
        }
        Ok(Self {
            name: name.to_owned(),
            listen,
            routes: others,
            store_dir,
        })
    }

    /// The server-level lines of this node's config: `server_name`, `jetstream` and `cluster`
    /// (routes authenticated with `route_password`, a hex string shared by the nodes).
    pub fn server_block(&self, route_password: &str) -> String {
        let mut out = String::new();
        out.push_str(
            "# A member of Vigil's NATS cluster, with JetStream (fsync before every ack).\n",
        );
        let _ = writeln!(out, "server_name: {}", quoted(&self.name));
        out.push_str(LIVENESS);
        let _ = writeln!(
            out,
            "jetstream: {{ store_dir: {}, sync_interval: always }}",
            quoted(&self.store_dir.display().to_string())
        );
        out.push_str("cluster: {\n");
        let _ = writeln!(out, "  name: {}", quoted(CLUSTER_NAME));
        let _ = writeln!(out, "  listen: {}", quoted(&self.listen));
        let _ = writeln!(
            out,
            "  authorization: {{ user: {}, password: {} }}",
            quoted(ROUTE_USER),
            quoted(route_password)
        );
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| quoted(&format!("nats-route://{ROUTE_USER}:{route_password}@{r}")))
            .collect();
        let _ = writeln!(out, "  routes: [{}]", routes.join(", "));
        out.push_str("}\n");
        out
    }
}

/// The whole nats-server config `vigil up` writes into `nats_dir` for a server listening for
/// clients on `listen` (`host:port`): log and pid files there, `max_payload` with room for
/// the store's largest append (1 MiB by default) plus headers, the accounts of `users`, the
/// agency identities and the field sites, a leaf-node listener on `leaf_listen` when given
/// (see `crate::nats_sites`), and, for a cluster node, its [`ClusterNode::server_block`] with JetStream
/// enabled for the application account. The text holds passwords: write it owner-only.
pub fn server_conf(
    listen: &str,
    nats_dir: &Path,
    users: &NatsUsers,
    agencies: &crate::nats_agencies::AgencyIdentities,
    sites: &crate::nats_sites::SiteIdentities,
    leaf_listen: Option<&str>,
    cluster: Option<&ClusterNode>,
) -> anyhow::Result<String> {
    let (server, accounts) = match cluster {
        None => (
            String::new(),
            crate::nats_auth::server_config(users, agencies, sites)?,
        ),
        Some(node) => {
            let Some(route_password) = users.route_password.as_deref() else {
                anyhow::bail!(
                    "the NATS credentials file has no route_password: a cluster node needs the one its peers share (ops/cluster writes it; see docs/CLUSTER.md)"
                );
            };
            (
                node.server_block(route_password),
                crate::nats_auth::cluster_server_config(users, agencies, sites)?,
            )
        }
    };
    Ok(format!(
        "# Written by `vigil up`; rewritten at every start.\n\
         listen: {listen}\n\
         max_payload: 4MB\n\
         log_file: \"{log}\"\n\
         pid_file: \"{pid}\"\n\
         {leaf}{server}{accounts}",
        leaf = leaf_listen
            .map(crate::nats_sites::leafnodes_block)
            .unwrap_or_default(),
        log = nats_dir.join("nats-server.log").display(),
        pid = nats_dir.join("nats-server.pid").display(),
    ))
}

/// `user`'s permissions on a cluster node: those of a single node plus what JetStream needs
/// (see the module docs); `None` for a user Vigil does not know.
pub fn permissions(user: &str) -> Option<Permissions> {
    let mut p = crate::nats_auth::permissions(user)?;
    match user {
        STORE => {
            p.publish_allow.extend([
                "$JS.API.>".to_owned(),
                format!("$KV.{LEASE_BUCKET}.>"),
                events::subjects::STORE_JOURNAL.to_owned(),
                // Room for per-node or per-purpose journal subjects under the same prefix.
                format!("{}.>", events::subjects::STORE_JOURNAL),
                "$JS.ACK.>".to_owned(),
                "$JS.FC.>".to_owned(),
                // Placement asks which peers' replicas are alive (`better_placed`).
                events::subjects::STORE_STATUS.to_owned(),
            ]);
            p.subscribe_allow.extend([
                events::subjects::STORE_JOURNAL.to_owned(),
                format!("{}.>", events::subjects::STORE_JOURNAL),
                format!("$KV.{LEASE_BUCKET}.>"),
            ]);
        }
        GATEWAY => {
            // `/readyz` and `/metrics` on a cluster node: the leader and this node's replica.
            p.publish_allow
                .push(events::subjects::STORE_STATUS.to_owned());
        }
        CLI => {
            let lease_stream = format!("KV_{LEASE_BUCKET}");
            p.publish_allow.extend([
                events::subjects::STORE_STATUS.to_owned(),
                format!("$JS.API.STREAM.INFO.{JOURNAL_STREAM}"),
                format!("$JS.API.STREAM.INFO.{lease_stream}"),
                format!("$JS.API.DIRECT.GET.{lease_stream}"),
                format!("$JS.API.DIRECT.GET.{lease_stream}.>"),
                format!("$JS.API.STREAM.MSG.GET.{lease_stream}"),
            ]);
        }
        _ => {}
    }
    Some(p)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn node() -> ClusterNode {
        ClusterNode::new(
            "n2",
            "127.0.0.2:6222",
            &[
                "nats-route://127.0.0.1:6222".into(),
                "127.0.0.2:6222".into(),
                "127.0.0.3:6222".into(),
            ],
            PathBuf::from("/d/nats/jetstream"),
        )
        .unwrap()
    }

    #[test]
    fn flags_are_checked_and_the_own_address_is_not_a_route() {
        let n = node();
        assert_eq!(n.routes, vec!["127.0.0.1:6222", "127.0.0.3:6222"]);
        let dir = PathBuf::from("/d");
        assert_eq!(
            ClusterNode::new("n 1", "127.0.0.1:1", &["x:2".into()], dir.clone()),
            Err(ClusterError::BadName("n 1".into()))
        );
        assert!(matches!(
            ClusterNode::new("n1", "127.0.0.1", &["x:2".into()], dir.clone()),
            Err(ClusterError::BadAddress {
                flag: "--cluster-listen",
                ..
            })
        ));
        assert!(matches!(
            ClusterNode::new("n1", "127.0.0.1:1", &["x:y".into()], dir.clone()),
            Err(ClusterError::BadAddress {
                flag: "--cluster-routes",
                ..
            })
        ));
        assert!(matches!(
            ClusterNode::new("n1", "127.0.0.1:1", &["a\"b:1".into()], dir.clone()),
            Err(ClusterError::BadAddress { .. })
        ));
        assert_eq!(
            ClusterNode::new("n1", "127.0.0.1:1", &["127.0.0.1:1".into()], dir),
            Err(ClusterError::NoRoutes)
        );
    }

    #[test]
    fn the_server_block_names_the_node_its_routes_and_fsyncing_jetstream() {
        let block = node().server_block("abc123");
        assert!(block.contains("server_name: \"n2\""), "{block}");
        assert!(
            block.contains("ping_interval: \"1s\"\nping_max: 3\n"),
            "{block}"
        );
        assert!(
            block
                .contains("jetstream: { store_dir: \"/d/nats/jetstream\", sync_interval: always }"),
            "{block}"
        );
        assert!(block.contains("name: \"vigil\""), "{block}");
        assert!(block.contains("listen: \"127.0.0.2:6222\""), "{block}");
        assert!(
            block.contains("authorization: { user: \"vigil-route\", password: \"abc123\" }"),
            "{block}"
        );
        assert!(
            block.contains(
                "routes: [\"nats-route://vigil-route:abc123@127.0.0.1:6222\", \"nats-route://vigil-route:abc123@127.0.0.3:6222\"]"
            ),
            "{block}"
        );
    }

    #[test]
    fn only_the_store_writes_with_jetstream_and_the_cli_only_reads_status() {
        for user in crate::nats_auth::all_users() {
            let p = permissions(user).unwrap();
            let single = crate::nats_auth::permissions(user).unwrap();
            let js: Vec<&String> = p
                .publish_allow
                .iter()
                .filter(|s| s.starts_with("$JS") || s.starts_with("$KV"))
                .collect();
            match user {
                STORE => {
                    for s in [
                        "$JS.API.>",
                        "$KV.vigil_store_leader.>",
                        "$JS.ACK.>",
                        "vigil.journal",
                    ] {
                        assert!(p.publish_allow.iter().any(|a| a == s), "{s}");
                    }
                    // Consumer deliveries come to its own inbox, which it already reads.
                    assert!(p.subscribe_allow.contains(&"_INBOX_store.>".to_owned()));
                }
                CLI => {
                    assert!(!js.is_empty());
                    for s in js {
                        assert!(
                            s.starts_with("$JS.API.STREAM.INFO.")
                                || s.starts_with("$JS.API.DIRECT.GET.KV_vigil_store_leader")
                                || s == "$JS.API.STREAM.MSG.GET.KV_vigil_store_leader",
                            "cli may only read: {s}"
                        );
                    }
                    assert!(p.publish_allow.contains(&"vigil.store.status".to_owned()));
                    assert!(!p.publish_allow.iter().any(|s| s.starts_with("$KV")));
                }
                GATEWAY => {
                    let mut extra = p.clone();
                    extra
                        .publish_allow
                        .retain(|s| !single.publish_allow.contains(s));
                    assert_eq!(extra.publish_allow, vec!["vigil.store.status".to_owned()]);
                    assert_eq!(p.subscribe_allow, single.subscribe_allow);
                }
                _ => assert_eq!(p, single, "{user} gets nothing new"),
            }
        }
        assert!(permissions("nobody").is_none());
    }
}
