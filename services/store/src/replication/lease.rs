//! The leader lease: key [`KEY`] of a JetStream key-value bucket whose entries live
//! `lease_ttl` (the bucket's `max_age`).
//!
//! A replica becomes leader by `create`-ing the key (it succeeds only when the key is absent
//! or expired) and keeps it by `update` with the revision it last wrote, every
//! `lease_ttl / 4`, each attempt given `lease_ttl / 4`: a leader that cannot renew knows it
//! within `lease_ttl / 2` of its last renewal, well before the key expires for the others,
//! and stops serving then ([`Lease::lost`]). The lease gives liveness only: two replicas that
//! both believe they lead still cannot both extend the journal (see [`super`]).

use std::time::Duration;

use async_nats::jetstream::kv::Store;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

/// The key holding the leader's name.
pub const KEY: &str = "leader";

/// What the key holds: who leads and since when (for operators; nothing reads it back).
pub fn value(node: &str, server: &str) -> Bytes {
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    Bytes::from(
        serde_json::json!({ "node": node, "nats_server": server, "since": since }).to_string(),
    )
}

/// Tries to take the lease; its revision if this replica now holds it.
pub async fn try_acquire(kv: &Store, value: Bytes, timeout: Duration) -> Option<u64> {
    match tokio::time::timeout(timeout, kv.create(KEY, value)).await {
        Ok(Ok(revision)) => Some(revision),
        Ok(Err(e)) => {
            tracing::trace!(error = %e, "the lease is held (or the bucket is unreachable)");
            None
        }
        Err(_) => None,
    }
}

/// A held lease, renewed in the background until it is released or lost.
pub struct Lease {
    lost: CancellationToken,
    stop: CancellationToken,
    keeper: tokio::task::JoinHandle<u64>,
    kv: Store,
}

impl Lease {
    /// Starts renewing the lease taken at `revision`.
    pub fn hold(kv: Store, value: Bytes, revision: u64, ttl: Duration) -> Self {
        let (lost, stop) = (CancellationToken::new(), CancellationToken::new());
        let keeper = tokio::spawn(keep(
            kv.clone(),
            value,
            revision,
            ttl,
            lost.clone(),
            stop.clone(),
        ));
        Self {
            lost,
            stop,
            keeper,
            kv,
        }
    }

    /// Fires when a renewal failed or took too long: stop serving at once.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Stops renewing. With `hand_over` (an orderly stop) the key is deleted, if it is still
    /// ours, so another replica takes over at once instead of after the ttl.
    pub async fn release(self, hand_over: bool) {
        self.stop.cancel();
        let Ok(revision) = self.keeper.await else {
            return;
        };
        if hand_over && !self.lost.is_cancelled() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                self.kv.delete_expect_revision(KEY, Some(revision)),
            )
            .await;
        }
    }
}

async fn keep(
    kv: Store,
    value: Bytes,
    mut revision: u64,
    ttl: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
) -> u64 {
    let every = ttl / 4;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return revision,
            _ = tokio::time::sleep(every) => {}
        }
        match tokio::time::timeout(every, kv.update(KEY, value.clone(), revision)).await {
            Ok(Ok(r)) => revision = r,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the leader lease could not be renewed: this replica stops leading");
                lost.cancel();
                return revision;
            }
            Err(_) => {
                tracing::warn!(
                    ms = every.as_millis() as u64,
                    "renewing the leader lease took too long: this replica stops leading"
                );
                lost.cancel();
                return revision;
            }
        }
    }
}
