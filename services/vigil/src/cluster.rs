//! `vigil cluster`: the operator's view of a several-node centre (docs/CLUSTER.md).
//!
//! `vigil cluster status` connects as `cli`, publishes one `vigil.store.status` request with
//! its own reply inbox and collects every store replica's answer for a moment (each replica
//! answers; it is not a queue group), reads the leader lease (key `leader` of the JetStream
//! bucket `vigil_store_leader`) and the journal's stream info (`VIGIL_JOURNAL`: last
//! sequence, its Raft leader, each replica's current/lag as JetStream reports them), and
//! prints a table: node, role, head, applied journal sequence, lag behind the journal, leader
//! since. It only reads: the `cli` user may not write to JetStream (see
//! `runtime::nats_cluster`).
//!
//! # Promises
//! - Exit 0 only when at least one replica answered and exactly one says it leads; otherwise
//!   the table (or `--json`) is still printed, then a message saying what is wrong, exit 1.
//! - The journal or the lease being unreadable is reported in the output, not fatal by itself:
//!   the replicas' own answers are the primary truth of who serves.
//!
//! `vigil cluster secrets` writes, once, the secrets the nodes share: the NATS credentials
//! file (the services' passwords and the route password) and the API tokens' signing key.

use std::time::Duration;

use anyhow::Context;
use events::store_api::StoreStatus;
use runtime::nats::Mode;
use runtime::nats_cluster::{JOURNAL_STREAM, LEASE_BUCKET, LEASE_KEY};
use serde::Serialize;

use crate::cli::{ClusterCommand, ClusterStatusArgs, Resolved};

/// Runs `vigil cluster …`.
pub async fn run(settings: Resolved, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status(args) => status(settings, args).await,
        ClusterCommand::Secrets => {
            let users = runtime::nats_auth::load_or_create_cluster(&settings.data_dir)?;
            // The gateways' token signing key too: a token issued for one node's gateway must
            // work on every node's (a wall screen moves to another gateway in a failover).
            gateway::auth::Auth::open(&settings.data_dir, vec![])?;
            println!(
                "{} ({} NATS users and the route password) and {} (the API tokens' signing key): copy both into every node's data directory, mode 0600",
                runtime::nats_auth::users_file(&settings.data_dir).display(),
                users.users.len(),
                settings
                    .data_dir
                    .join("secrets")
                    .join("token.key")
                    .display()
            );
            Ok(())
        }
    }
}

/// One replica of the journal as JetStream reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalPeer {
    /// The nats-server's name (the node).
    pub name: String,
    /// Whether it holds the journal's Raft leadership.
    pub leader: bool,
    /// Whether it is up to date.
    pub current: bool,
    /// Whether the group considers it offline.
    pub offline: bool,
    /// Operations it is behind the Raft leader, if reported.
    pub lag: Option<u64>,
}

/// The journal stream's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Journal {
    /// Its last sequence.
    pub last_seq: u64,
    /// Its replicas (the Raft leader first).
    pub replicas: Vec<JournalPeer>,
}

/// One store replica's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// Node name.
    pub node: String,
    /// `leader`, `follower` or `single`.
    pub role: String,
    /// Its log's head position.
    pub head: u64,
    /// The last journal sequence it applied.
    pub applied: u64,
    /// Journal sequences it has not applied yet (when the journal could be read).
    pub lag: Option<u64>,
    /// When it became leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader_since: Option<String>,
}

/// What `vigil cluster status` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The replicas that answered, by node name.
    pub replicas: Vec<Row>,
    /// The node whose replica leads, when exactly one does.
    pub leader: Option<String>,
    /// The lease key's value, as stored (the store writes it).
    pub lease: Option<String>,
    /// The journal, when its stream info could be read.
    pub journal: Option<Journal>,
    /// What could not be read, in words.
    pub notes: Vec<String>,
    /// Why the centre is not serving appends, if it is not (exit 1).
    pub problem: Option<String>,
}

/// Builds the report from what was collected (pure: unit-tested).
pub fn report(
    mut answers: Vec<StoreStatus>,
    journal: Option<Journal>,
    lease: Option<String>,
    notes: Vec<String>,
) -> Report {
    answers.sort_by(|a, b| a.node.cmp(&b.node));
    answers.dedup_by(|a, b| a.node == b.node);
    let last = journal.as_ref().map(|j| j.last_seq);
    let replicas: Vec<Row> = answers
        .into_iter()
        .map(|a| Row {
            lag: last.map(|l| l.saturating_sub(a.journal_seq)),
            node: a.node,
            role: a.role,
            head: a.head,
            applied: a.journal_seq,
            leader_since: a.leader_since,
        })
        .collect();
    let leaders: Vec<&Row> = replicas.iter().filter(|r| r.role == "leader").collect();
    let single = replicas.len() == 1 && replicas[0].role == "single";
    let (leader, problem) = match leaders.as_slice() {
        _ if replicas.is_empty() => (
            None,
            Some("no store replica answered on vigil.store.status: is the centre up, and is this the right --nats-url / --data-dir?".to_owned()),
        ),
        [one] => (Some(one.node.clone()), None),
        [] if single => (Some(replicas[0].node.clone()), None),
        [] => (
            None,
            Some(format!(
                "no leader: {} replica(s) answered and none leads; appends are refused until one takes the lease (a failover takes a few seconds; if this lasts, check that a majority of nodes is up and routed)",
                replicas.len()
            )),
        ),
        many => (
            None,
            Some(format!(
                "{} replicas say they lead ({}): a stale leader has not stepped down yet; the journal lets only one of them commit",
                many.len(),
                many.iter().map(|r| r.node.as_str()).collect::<Vec<_>>().join(", ")
            )),
        ),
    };
    Report {
        replicas,
        leader,
        lease,
        journal,
        notes,
        problem,
    }
}

/// The report as the table `vigil cluster status` prints.
pub fn table(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:<9} {:>10} {:>10} {:>6}  LEADER SINCE",
        "NODE", "ROLE", "HEAD", "APPLIED", "LAG"
    );
    for row in &r.replicas {
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:>10} {:>10} {:>6}  {}",
            row.node,
            row.role,
            row.head,
            row.applied,
            row.lag.map_or_else(|| "?".to_owned(), |l| l.to_string()),
            row.leader_since.as_deref().unwrap_or("-"),
        );
    }
    match &r.journal {
        Some(j) => {
            let peers: Vec<String> = j
                .replicas
                .iter()
                .map(|p| {
                    let mut s = p.name.clone();
                    if p.leader {
                        s.push_str(" (raft leader)");
                    } else if p.offline {
                        s.push_str(" (offline)");
                    } else if !p.current {
                        s.push_str(&format!(" (behind {})", p.lag.unwrap_or(0)));
                    } else {
                        s.push_str(" (current)");
                    }
                    s
                })
                .collect();
            let _ = writeln!(
                out,
                "journal {JOURNAL_STREAM}: last sequence {}; replicas: {}",
                j.last_seq,
                if peers.is_empty() {
                    "-".to_owned()
                } else {
                    peers.join(", ")
                }
            );
        }
        None => {
            let _ = writeln!(out, "journal {JOURNAL_STREAM}: not read");
        }
    }
    let _ = writeln!(
        out,
        "lease {LEASE_BUCKET}/{LEASE_KEY}: {}",
        r.lease.as_deref().unwrap_or("(none)")
    );
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}

async fn status(settings: Resolved, args: ClusterStatusArgs) -> anyhow::Result<()> {
    let credentials = settings.nats_credentials_for(runtime::nats_auth::CLI)?;
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-cluster-status",
        credentials,
        Mode::Tool,
    )
    .await?;
    let answers = runtime::store_client::collect_statuses(
        &client,
        Duration::from_millis(args.wait_ms),
        |_| false,
    )
    .await
    .context("cannot ask the store replicas for their status")?;
    let mut notes = Vec::new();
    let js = async_nats::jetstream::new(client.clone());
    let journal = match js.get_stream(JOURNAL_STREAM).await {
        Ok(mut stream) => match stream.info().await {
            Ok(info) => Some(journal_of(info)),
            Err(e) => {
                notes.push(format!("the journal's stream info: {e}"));
                None
            }
        },
        Err(e) => {
            notes.push(format!("the journal {JOURNAL_STREAM}: {e}"));
            None
        }
    };
    let lease = match js.get_key_value(LEASE_BUCKET).await {
        Ok(kv) => match kv.get(LEASE_KEY).await {
            Ok(value) => value.map(|v| String::from_utf8_lossy(&v).into_owned()),
            Err(e) => {
                notes.push(format!("the lease key: {e}"));
                None
            }
        },
        Err(e) => {
            notes.push(format!("the lease bucket {LEASE_BUCKET}: {e}"));
            None
        }
    };
    let r = report(answers, journal, lease, notes);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", table(&r));
    }
    match r.problem {
        Some(problem) => Err(anyhow::anyhow!(problem)),
        None => Ok(()),
    }
}

fn journal_of(info: &async_nats::jetstream::stream::Info) -> Journal {
    let mut replicas = Vec::new();
    if let Some(cluster) = &info.cluster {
        if let Some(leader) = &cluster.leader {
            replicas.push(JournalPeer {
                name: leader.clone(),
                leader: true,
                current: true,
                offline: false,
                lag: Some(0),
            });
        }
        for p in &cluster.replicas {
            replicas.push(JournalPeer {
                name: p.name.clone(),
                leader: false,
                current: p.current,
                offline: p.offline,
                lag: p.lag,
            });
        }
    }
    Journal {
        last_seq: info.state.last_sequence,
        replicas,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn status(node: &str, role: &str, head: u64, seq: u64) -> StoreStatus {
        StoreStatus {
            node: node.into(),
            role: role.into(),
            head,
            journal_seq: seq,
            leader_since: (role == "leader").then(|| "2026-12-07T04:00:00Z".to_owned()),
        }
    }

    fn journal(last_seq: u64) -> Journal {
        Journal {
            last_seq,
            replicas: vec![JournalPeer {
                name: "n2".into(),
                leader: true,
                current: true,
                offline: false,
                lag: Some(0),
            }],
        }
    }

    #[test]
    fn one_leader_is_healthy_and_lag_is_measured_against_the_journal() {
        let r = report(
            vec![
                status("n3", "follower", 90, 8),
                status("n1", "leader", 100, 10),
                status("n2", "follower", 100, 10),
            ],
            Some(journal(10)),
            Some("n1".into()),
            vec![],
        );
        assert_eq!(r.problem, None);
        assert_eq!(r.leader.as_deref(), Some("n1"));
        let nodes: Vec<_> = r.replicas.iter().map(|x| x.node.as_str()).collect();
        assert_eq!(nodes, ["n1", "n2", "n3"]);
        assert_eq!(r.replicas[2].lag, Some(2));
        let t = table(&r);
        assert!(
            t.contains("n1           leader           100         10      0  2026-12-07T04:00:00Z"),
            "{t}"
        );
        assert!(
            t.contains("journal VIGIL_JOURNAL: last sequence 10; replicas: n2 (raft leader)"),
            "{t}"
        );
        assert!(t.contains("lease vigil_store_leader/leader: n1"), "{t}");
    }

    #[test]
    fn no_answer_no_leader_or_two_leaders_is_a_problem() {
        let none = report(vec![], None, None, vec!["x".into()]);
        assert!(none.problem.unwrap().contains("no store replica answered"));
        let leaderless = report(
            vec![
                status("n1", "follower", 1, 1),
                status("n2", "follower", 1, 1),
            ],
            None,
            None,
            vec![],
        );
        assert!(leaderless.problem.unwrap().starts_with("no leader"));
        assert_eq!(
            leaderless.replicas[0].lag, None,
            "unknown without the journal"
        );
        let two = report(
            vec![status("n1", "leader", 1, 1), status("n2", "leader", 1, 1)],
            None,
            None,
            vec![],
        );
        assert!(two.problem.unwrap().contains("n1, n2"));
        let single = report(vec![status("single", "single", 5, 0)], None, None, vec![]);
        assert_eq!(single.problem, None);
    }
}
