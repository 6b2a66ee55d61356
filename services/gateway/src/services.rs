//! The domain services as this gateway sees them, for `/readyz`: which of the centre's
//! services answer, and which are still loading their registers after a (re)start.
//!
//! # Promises
//! - One background task asks every service instance for its status
//!   ([`runtime::status::collect`], subject `vigil.status`) every [`POLL`], collecting the
//!   answers for [`WAIT`]; `/readyz` only reads the last round: a flood of `/readyz` sends
//!   nothing more on NATS, and its answer is at most `POLL + WAIT` old.
//! - A centre is ready only when every service it must have answered in the last round and
//!   every instance that answered is ready: NATS hands a command to any instance, so one
//!   still reading the log would answer `unavailable`. Not ready names each service waited
//!   for and why (no instance answered; what it is still loading).
//! - Before the first round, or when the last one is older than [`STALE`], no service counts
//!   as ready.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Client;
use runtime::status::{self, ServiceStatus};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::bodies::{ServiceWait, ServicesReadiness};

/// How often the gateway asks the services.
pub const POLL: Duration = Duration::from_millis(500);
/// How long one round collects answers.
pub const WAIT: Duration = Duration::from_millis(250);
/// A round older than this says nothing (the poller is stuck or NATS is gone).
pub const STALE: Duration = Duration::from_secs(5);

/// The last round of answers; shared by the poller and `/readyz`.
pub struct ServicesView {
    expected: Vec<String>,
    latest: Mutex<Option<(Instant, Vec<ServiceStatus>)>>,
}

impl ServicesView {
    /// A view of a centre that must have the services `expected`, empty until the first round.
    pub fn new(expected: &[&str]) -> Self {
        Self {
            expected: expected.iter().map(|s| (*s).to_owned()).collect(),
            latest: Mutex::new(None),
        }
    }

    /// The view as `/readyz` reports it, as of now.
    pub fn readiness(&self) -> ServicesReadiness {
        let latest = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = latest
            .as_ref()
            .filter(|(at, _)| at.elapsed() <= STALE)
            .map(|(_, answers)| answers.as_slice());
        let expected: Vec<&str> = self.expected.iter().map(String::as_str).collect();
        let waiting_for: Vec<ServiceWait> = match fresh {
            Some(answers) => status::waiting_for(&expected, answers),
            None => expected
                .iter()
                .map(|s| ((*s).to_owned(), "not asked yet".to_owned()))
                .collect(),
        }
        .into_iter()
        .map(|(service, reason)| ServiceWait { service, reason })
        .collect();
        ServicesReadiness {
            ready: waiting_for.is_empty(),
            waiting_for,
        }
    }

    fn record(&self, answers: Vec<ServiceStatus>) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), answers));
    }
}

/// Asks the services every [`POLL`] until `shutdown`, recording the answers in `view`.
pub async fn watch(client: Client, view: Arc<ServicesView>, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match status::collect(&client, WAIT).await {
            Ok(answers) => view.record(answers),
            Err(e) => {
                tracing::debug!(error = %e, "cannot ask the services for their status");
                view.record(Vec::new());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_before_the_first_round_and_until_every_service_is() {
        let view = ServicesView::new(&["incidents", "relocation"]);
        let r = view.readiness();
        assert!(!r.ready);
        assert_eq!(r.waiting_for.len(), 2);
        view.record(vec![
            ServiceStatus::ready("incidents"),
            ServiceStatus::loading(
                "relocation",
                "the reference register is reading the log (at position 7 of 9)".into(),
            ),
        ]);
        let r = view.readiness();
        assert!(!r.ready);
        assert_eq!(r.waiting_for[0].service, "relocation");
        assert!(r.waiting_for[0].reason.contains("position 7 of 9"));
        view.record(vec![
            ServiceStatus::ready("incidents"),
            ServiceStatus::ready("relocation"),
        ]);
        assert!(view.readiness().ready);
        // An old round says nothing.
        view.latest.lock().unwrap().as_mut().unwrap().0 -= STALE * 2;
        assert!(!view.readiness().ready);
    }
}
