//! The scheduler: every tick (or when the clock moves) it appends due rule firings, records
//! damped triggers, and claims, re-sends, escalates and delivers (see [`crate::deliver`]).
//!
//! Promises: each piece of work is recorded under a fixed id before it is acted on, and only the
//! instance whose append was new acts, so an escalation happens once and a delivery is at least
//! once, with an idempotency key; nothing is planned before the register has read the log, and
//! nothing is sent before approval nor after cancellation.
//!
//! # Instances on several nodes
//! Every instance runs this scheduler (on a three-node centre, one per node) and none
//! coordinates with another: each plans from its own register and clock, and two may plan the
//! same work at the same moment. What makes each timer's effect happen once is the log alone:
//! the work's event id is derived from the broadcast and the work (a rule firing from rule and
//! trigger, [`rules::firing_id`]; an attempt from agency, channel, round and attempt; a
//! re-send and an escalation one per broadcast, [`Work::event_id`]; an outcome,
//! [`broadcast::outcome_id`]), the store keeps one event per id (a second append of it is a
//! duplicate, or `id_reused` when another instance's register saw a different list of
//! agencies: the first stands), and only the instance whose append was new acts on it. An
//! instance that stops after claiming an attempt leaves a claim that times out; another
//! instance then makes the next attempt under the next id. Pinned by
//! `tests/three_instances.rs` (three instances, one stopped at the re-send, another at the
//! deadline).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use events::domain::DomainEvent;
use events::domain::broadcast::{
    self as bevents, BroadcastDelivered, BroadcastDeliveryAttempted, BroadcastDeliveryFailed,
    BroadcastEscalated, BroadcastResent, Channel,
};
use events::{AppendRequest, ExpectedVersion, Meta};
use futures::StreamExt;
use runtime::commands::STORE_DEADLINE;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::broadcast::{Broadcast, Key, Work};
use crate::deliver::Message;
use crate::register::{Pending, Register, Suppression, settle};
use crate::rules::Config;
use crate::{SERVICE, Service, broadcast, deliver, rules};

/// Pieces of work (claims, re-sends, escalations) recorded at once by the scheduler.
pub(crate) const RECORD_CONCURRENCY: usize = 64;

/// What the scheduler does in one tick: rule firings, damped triggers to record, and
/// delivery work.
pub(crate) type Due = (
    Vec<(Uuid, Pending)>,
    Vec<(Uuid, Suppression)>,
    Vec<(Uuid, Work, Option<Arc<Broadcast>>)>,
);

pub(crate) fn system_meta(
    source: &str,
    causation: Option<Uuid>,
    correlation: Option<Uuid>,
) -> Meta {
    Meta {
        actor: Some(format!("system:{SERVICE}")),
        role: None,
        source: Some(source.to_owned()),
        correlation_id: correlation,
        causation_id: causation,
        appended_by: None,
    }
}

impl Service {
    /// Finds due work every tick (or when the clock is moved) and does it.
    pub(crate) async fn schedule(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let moved = async {
                match self.options.clock.moved() {
                    Some(n) => n.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.options.tick) => {}
                _ = moved => {}
            }
            let Some((firings, suppressions, work)) = self.due_now() else {
                continue;
            };
            for (id, p) in firings {
                self.fire(id, p).await;
            }
            for (id, s) in suppressions {
                self.suppress(id, s).await;
            }
            // Concurrently: the store commits concurrent appends in one group (one fsync).
            futures::stream::iter(work)
                .for_each_concurrent(RECORD_CONCURRENCY, |(b, w, recipient)| {
                    self.record(b, w, recipient)
                })
                .await;
        }
    }

    /// The rule firings and the work due now, once the register has read the log (before
    /// that, work it does not know about yet may be done already).
    pub(crate) fn due_now(&self) -> Option<Due> {
        let due = {
            let register = self.register.caught_up().ok()?;
            self.due(&register)
        };
        if let Ok(mut register) = self.register.write() {
            settle(&mut register);
            let now = self.options.clock.now();
            let window =
                time::Duration::minutes(i64::from(self.options.config.fire_within_minutes));
            register.pending.retain(|id, p| {
                let fresh = p.trigger_at + window >= now;
                if !fresh {
                    tracing::info!(broadcast = %id, trigger = %p.trigger, "a rule's trigger is older than fire_within_minutes: not fired");
                }
                fresh
            });
            register
                .suppressions
                .retain(|_, s| s.trigger_at + window >= now);
            if let Ok(mut done) = self.done.lock() {
                let damping: HashSet<Uuid> = register
                    .suppressions
                    .values()
                    .map(|s| s.broadcast)
                    .collect();
                done.retain(|id, _| {
                    register.active.contains(id)
                        || register.pending.contains_key(id)
                        || damping.contains(id)
                });
            }
        }
        Some(due)
    }

    /// The rule firings and the work due now.
    pub(crate) fn due(&self, register: &Register) -> Due {
        let now = self.options.clock.now();
        let config = &self.options.config;
        let window = time::Duration::minutes(i64::from(config.fire_within_minutes));
        let Ok(done) = self.done.lock() else {
            return (vec![], vec![], vec![]);
        };
        let is_done = |b: &Uuid, w: &Uuid| done.get(b).is_some_and(|d| d.contains(w));
        let firings = register
            .pending
            .iter()
            .filter(|(id, p)| p.trigger_at + window >= now && !is_done(id, id))
            .map(|(id, p)| (*id, p.clone()))
            .collect();
        // Recorded once the broadcast that damped them is in the log (its stream exists).
        let suppressions = register
            .suppressions
            .iter()
            .filter(|(id, s)| {
                s.trigger_at + window >= now
                    && register.broadcasts.contains_key(&s.broadcast)
                    && !is_done(&s.broadcast, id)
            })
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        let retry = config.delivery.retry();
        let channels = |agency: &str| channels_of(config, agency);
        let mut work = Vec::new();
        for id in &register.active {
            let Some(b) = register.broadcasts.get(id) else {
                continue;
            };
            let superseded = register.superseded.contains_key(id);
            let mut shared = None;
            for w in broadcast::plan(b, now, &retry, &channels) {
                if superseded && matches!(w, Work::Resend(_) | Work::Escalate(_)) {
                    continue;
                }
                if is_done(id, &w.event_id(*id)) {
                    continue;
                }
                let b = shared.get_or_insert_with(|| Arc::new(b.clone())).clone();
                work.push((*id, w, Some(b)));
            }
        }
        (firings, suppressions, work)
    }

    /// Records a damped trigger on the broadcast that damped it (once, under the id its
    /// firing would have had).
    pub(crate) async fn suppress(&self, id: Uuid, s: Suppression) {
        let rule = s.event.rule.clone();
        let trigger = s.event.trigger;
        let event = DomainEvent::from(s.event);
        if let Some(new) = self
            .append_caused(s.broadcast, id, event, Some(trigger))
            .await
        {
            if new {
                metrics::counter!("vigil_broadcast_rule_suppressed_total").increment(1);
                tracing::info!(broadcast = %s.broadcast, %rule, %trigger, "rule firing damped");
            }
            self.mark_done(s.broadcast, id);
        }
    }

    /// Appends a rule's broadcast (once, whoever else tries).
    pub(crate) async fn fire(&self, id: Uuid, p: Pending) {
        let meta = system_meta("rule", Some(p.trigger), p.correlation_id);
        let rule = p.issued.rule.as_ref().map(|f| f.rule.clone());
        let event = match DomainEvent::from(p.issued).try_to_new_event(id, meta) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e.message, ?rule, "a rule built an invalid broadcast; fix the rule");
                self.mark_done(id, id);
                return;
            }
        };
        let request = AppendRequest {
            after: None,
            stream: bevents::stream_for(id),
            expected_version: ExpectedVersion::NoStream,
            events: vec![event],
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => {
                if !ok.duplicate {
                    metrics::counter!("vigil_broadcast_rule_firings_total").increment(1);
                    tracing::info!(%id, ?rule, trigger = %p.trigger, "rule fired");
                }
                self.mark_done(id, id);
            }
            Err(runtime::store_client::ClientError::Store(e))
                if matches!(
                    e.code,
                    events::ErrorCode::IdReused | events::ErrorCode::WrongExpectedVersion
                ) =>
            {
                // Another instance fired it first from a register that differed (an agency
                // registered at the same moment): it fired once, which is what matters.
                tracing::info!(%id, ?rule, "rule already fired");
                self.mark_done(id, id);
            }
            Err(e) => tracing::warn!(error = %e, %id, "could not record a rule firing; will retry"),
        }
    }

    pub(crate) fn mark_done(&self, broadcast: Uuid, work: Uuid) {
        if let Ok(mut d) = self.done.lock() {
            d.entry(broadcast).or_default().insert(work);
        }
    }

    /// Records `work` under its fixed id; if this instance's append was the new one, acts.
    pub(crate) async fn record(self: &Arc<Self>, id: Uuid, work: Work, b: Option<Arc<Broadcast>>) {
        let event_id = work.event_id(id);
        let event: DomainEvent = match &work {
            Work::Attempt((agency, channel, round), attempt) => BroadcastDeliveryAttempted {
                agency: agency.clone(),
                channel: *channel,
                round: *round,
                attempt: *attempt,
            }
            .into(),
            Work::Abandon((agency, channel, round), attempt) => BroadcastDeliveryFailed {
                agency: agency.clone(),
                channel: *channel,
                round: *round,
                attempt: *attempt,
                error: "no outcome was recorded: the instance making the attempt stopped"
                    .to_owned(),
                gave_up: true,
            }
            .into(),
            Work::Resend(agencies) => BroadcastResent {
                agencies: agencies.clone(),
            }
            .into(),
            Work::Escalate(agencies) => BroadcastEscalated {
                reason: format!(
                    "{} of {} agencies had not acknowledged by the deadline",
                    agencies.len(),
                    b.as_ref().map_or(0, |b| b.issued.recipients.len())
                ),
                agencies: agencies.clone(),
            }
            .into(),
        };
        let Some(new) = self.append(id, event_id, event).await else {
            return;
        };
        self.mark_done(id, event_id);
        if !new {
            return; // another instance recorded it first and acts on it
        }
        match work {
            Work::Attempt(key, attempt) => {
                let Some(b) = b else { return };
                let Ok(permit) = self.deliveries.clone().acquire_owned().await else {
                    return;
                };
                let service = self.clone();
                tokio::spawn(async move {
                    service.attempt(&b, key, attempt, event_id).await;
                    drop(permit);
                });
            }
            Work::Escalate(agencies) => {
                metrics::counter!("vigil_broadcast_escalations_total").increment(1);
                tracing::warn!(broadcast = %id, silent = agencies.len(), "broadcast escalated");
            }
            Work::Resend(_) | Work::Abandon(..) => {}
        }
    }

    /// Appends one system event to broadcast `id`'s stream: `Some(true)` if it is new,
    /// `Some(false)` if it was there, `None` if the store could not take it (retried later).
    pub(crate) async fn append(
        &self,
        id: Uuid,
        event_id: Uuid,
        event: DomainEvent,
    ) -> Option<bool> {
        self.append_caused(id, event_id, event, None).await
    }

    pub(crate) async fn append_caused(
        &self,
        id: Uuid,
        event_id: Uuid,
        event: DomainEvent,
        causation: Option<Uuid>,
    ) -> Option<bool> {
        let meta = system_meta("scheduler", causation.or(Some(id)), None);
        let event = match event.try_to_new_event(event_id, meta) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e.message, "invalid broadcast event; not recorded");
                return None;
            }
        };
        let request = AppendRequest {
            after: None,
            stream: bevents::stream_for(id),
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        match self.store.append_retrying(&request, STORE_DEADLINE).await {
            Ok(ok) => Some(!ok.duplicate),
            Err(e) => {
                tracing::warn!(error = %e, broadcast = %id, "could not record broadcast work; will retry");
                None
            }
        }
    }

    /// Makes delivery attempt `attempt` and records its outcome.
    pub(crate) async fn attempt(&self, b: &Broadcast, key: Key, attempt: u32, claim: Uuid) {
        let (agency, channel, round) = &key;
        let message = Message::new(b.id, &b.issued, agency, *round);
        let config = &self.options.config;
        let outcome = match channel {
            Channel::Nats => {
                deliver::over_nats(
                    &self.client,
                    &message,
                    Duration::from_millis(config.delivery.timeout_ms),
                )
                .await
            }
            Channel::Webhook => match config.agencies.get(agency) {
                Some(rules::Endpoint {
                    webhook: Some(url),
                    secret: Some(secret),
                    ..
                }) => {
                    deliver::over_webhook(
                        &self.http,
                        url,
                        secret,
                        &message,
                        self.options.clock.now(),
                        Duration::from_millis(config.delivery.timeout_ms),
                    )
                    .await
                }
                _ => Err("no webhook is configured for this agency any more".to_owned()),
            },
            Channel::Cap => Err("the CAP feed is read by agencies, not sent".to_owned()),
        };
        let delivered = outcome.is_ok();
        let event: DomainEvent = match outcome {
            Ok(()) => BroadcastDelivered {
                agency: agency.clone(),
                channel: *channel,
                attempt,
                round: *round,
            }
            .into(),
            Err(error) => {
                let gave_up = attempt >= config.delivery.attempts;
                if gave_up {
                    metrics::counter!("vigil_broadcast_delivery_failures_total").increment(1);
                    tracing::warn!(broadcast = %b.id, %agency, channel = channel.as_str(), %error, "delivery failed; giving up");
                }
                BroadcastDeliveryFailed {
                    agency: agency.clone(),
                    channel: *channel,
                    round: *round,
                    attempt,
                    error,
                    gave_up,
                }
                .into()
            }
        };
        let id = broadcast::outcome_id(b.id, &key, attempt, delivered);
        // Not recorded (store down): the claim times out and the attempt is made again.
        let _ = self.append_caused(b.id, id, event, Some(claim)).await;
    }
}

/// An agency's channels: NATS unless its endpoint says otherwise, a webhook where one is
/// configured.
pub(crate) fn channels_of(config: &Config, agency: &str) -> Vec<Channel> {
    let endpoint = config.agencies.get(agency);
    let mut c = Vec::with_capacity(2);
    if endpoint.is_none_or(|e| e.nats) {
        c.push(Channel::Nats);
    }
    if endpoint.is_some_and(|e| e.webhook.is_some()) {
        c.push(Channel::Webhook);
    }
    c
}
