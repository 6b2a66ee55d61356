//! The cluster as this gateway sees it, when the centre runs on several nodes
//! (docs/CLUSTER.md): which node it is on, whether a store leader answers and which, and how
//! far this node's store replica is behind it. `/readyz` and `/metrics` show it.
//!
//! # Promises
//! - One background task per gateway asks every store replica for its status
//!   (`vigil.store.status`, [`runtime::store_client::collect_statuses`]) every [`POLL`],
//!   waiting at most [`WAIT`] for the answers (less once the leader and this node's replica
//!   have answered). `/readyz` only reads the last answer: a flood of `/readyz` sends nothing
//!   more on NATS, and an answer on `/readyz` is at most `POLL + WAIT` old.
//! - A leader is *known* while one answered within [`LEADER_GRACE`]: one round whose answer
//!   came late (a loaded machine) does not make a node unready; a failover that takes longer
//!   does.
//! - The lag is counted in log positions (the leader's head minus this replica's) and in
//!   journal messages; it is reported, never a reason to be unready, because the gateway
//!   reads and appends through the leader, not through its own node's replica.
//! - Gauges, set at every round: `vigil_cluster_leader_known` (1 or 0),
//!   `vigil_cluster_replica_answering` (this node's replica answered, 1 or 0), and, when both
//!   answered, `vigil_cluster_replica_lag_positions` and `vigil_cluster_replica_lag_journal`.
//!   A lag gauge keeps its last value while `vigil_cluster_replica_answering` is 0.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use events::store_api::StoreStatus;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bodies::ClusterReadiness;

/// How often the gateway asks the replicas.
pub const POLL: Duration = Duration::from_secs(1);
/// How long one round waits for the answers.
pub const WAIT: Duration = Duration::from_millis(500);
/// How long a leader that answered counts as known after its last answer.
pub const LEADER_GRACE: Duration = Duration::from_secs(3);

/// What the last rounds said; shared by the poller and `/readyz`.
pub struct ClusterView {
    node: String,
    latest: Mutex<Latest>,
}

#[derive(Default)]
struct Latest {
    /// When the last round ended.
    checked: Option<Instant>,
    /// The leader of the last round that found one, and when.
    leader: Option<(StoreStatus, Instant)>,
    /// This node's replica in the last round (None: it did not answer).
    own: Option<StoreStatus>,
}

impl ClusterView {
    /// A view of node `node`, empty until the first round.
    pub fn new(node: String) -> Self {
        Self {
            node,
            latest: Mutex::new(Latest::default()),
        }
    }

    /// The node this gateway runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The view as `/readyz` reports it, as of `now`.
    pub fn readiness(&self) -> ClusterReadiness {
        let now = Instant::now();
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let leader = latest
            .leader
            .as_ref()
            .filter(|(_, seen)| now.duration_since(*seen) <= LEADER_GRACE)
            .map(|(s, _)| s);
        let own = latest.own.as_ref();
        let (lag, journal_lag) = lags(leader, own);
        ClusterReadiness {
            node: self.node.clone(),
            leader_known: leader.is_some(),
            leader: leader.map(|s| s.node.clone()),
            leader_head: leader.map(|s| s.head),
            replica_answering: own.is_some(),
            replica_role: own.map(|s| s.role.clone()),
            replica_head: own.map(|s| s.head),
            replica_journal_seq: own.map(|s| s.journal_seq),
            lag,
            journal_lag,
            checked_ms_ago: latest
                .checked
                .map(|t| now.duration_since(t).as_millis() as u64),
        }
    }

    /// Records one round's answers and sets the gauges.
    fn record(&self, answers: &[StoreStatus]) {
        let now = Instant::now();
        let mut latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        latest.checked = Some(now);
        if let Some(l) = leader_of(answers) {
            latest.leader = Some((l.clone(), now));
        }
        latest.own = answers.iter().find(|s| s.node == self.node).cloned();
        let leader = latest
            .leader
            .as_ref()
            .filter(|(_, seen)| now.duration_since(*seen) <= LEADER_GRACE)
            .map(|(s, _)| s);
        let own = latest.own.as_ref();
        metrics::gauge!("vigil_cluster_leader_known").set(f64::from(u8::from(leader.is_some())));
        metrics::gauge!("vigil_cluster_replica_answering").set(f64::from(u8::from(own.is_some())));
        if let (Some(lag), Some(journal_lag)) = lags(leader, own) {
            metrics::gauge!("vigil_cluster_replica_lag_positions").set(lag as f64);
            metrics::gauge!("vigil_cluster_replica_lag_journal").set(journal_lag as f64);
        }
    }
}

/// The replica that says it leads; when two do for a moment (a paused leader that resumed
/// before it noticed its lost lease), the one further along the journal, which is the one
/// the journal lets write.
fn leader_of(answers: &[StoreStatus]) -> Option<&StoreStatus> {
    answers
        .iter()
        .filter(|s| s.role == "leader")
        .max_by_key(|s| s.journal_seq)
}

/// How far `own` is behind `leader` (log positions, journal messages); 0 when ahead.
fn lags(leader: Option<&StoreStatus>, own: Option<&StoreStatus>) -> (Option<u64>, Option<u64>) {
    match (leader, own) {
        (Some(l), Some(o)) => (
            Some(l.head.saturating_sub(o.head)),
            Some(l.journal_seq.saturating_sub(o.journal_seq)),
        ),
        _ => (None, None),
    }
}

/// Asks the replicas every [`POLL`] until `shutdown`, recording the answers in `view`.
pub async fn watch(client: Client, view: Arc<ClusterView>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let node = view.node.clone();
        let enough = |a: &[StoreStatus]| leader_of(a).is_some() && a.iter().any(|s| s.node == node);
        match runtime::store_client::collect_statuses(&client, WAIT, enough).await {
            Ok(answers) => view.record(&answers),
            // No NATS now: a round with no answer (the leader ages out of its grace).
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask the store replicas for their status");
                view.record(&[]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(node: &str, role: &str, head: u64, journal_seq: u64) -> StoreStatus {
        StoreStatus {
            node: node.into(),
            role: role.into(),
            head,
            journal_seq,
            leader_since: None,
        }
    }

    #[test]
    fn the_lag_is_the_leaders_head_minus_this_replicas() {
        let view = ClusterView::new("n2".into());
        assert!(!view.readiness().leader_known);
        assert_eq!(view.readiness().checked_ms_ago, None);
        view.record(&[
            status("n1", "leader", 1042, 57),
            status("n2", "follower", 1040, 56),
            status("n3", "follower", 1042, 57),
        ]);
        let r = view.readiness();
        assert!(r.leader_known && r.replica_answering);
        assert_eq!(r.leader.as_deref(), Some("n1"));
        assert_eq!((r.lag, r.journal_lag), (Some(2), Some(1)));
        assert_eq!(r.replica_role.as_deref(), Some("follower"));
    }

    #[test]
    fn a_round_without_a_leader_keeps_the_last_one_for_the_grace_only() {
        let view = ClusterView::new("n1".into());
        view.record(&[status("n2", "leader", 5, 5), status("n1", "follower", 5, 5)]);
        view.record(&[status("n1", "follower", 5, 5)]);
        assert_eq!(view.readiness().leader.as_deref(), Some("n2"));
        // Older than the grace: no leader known.
        view.latest.lock().unwrap().leader.as_mut().unwrap().1 -= LEADER_GRACE * 2;
        let r = view.readiness();
        assert!(!r.leader_known);
        assert_eq!((r.leader, r.lag), (None, None));
        assert!(r.replica_answering);
    }

    #[test]
    fn of_two_replicas_that_say_they_lead_the_one_further_along_the_journal_counts() {
        let answers = [status("n1", "leader", 10, 3), status("n2", "leader", 12, 4)];
        assert_eq!(leader_of(&answers).map(|s| s.node.as_str()), Some("n2"));
        assert_eq!(leader_of(&[status("n1", "follower", 1, 1)]), None);
    }
}
