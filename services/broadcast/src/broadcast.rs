//! The broadcast aggregate: one broadcast's life folded from its stream, the decisions on
//! it (issue, approve, acknowledge, cancel) and the delivery work due at a given moment.
//! Pure: no I/O, no clock (the moment is passed in).
//!
//! # Life of a broadcast
//! issued → (approved by a second duty officer, when [`BroadcastIssued::needs_second_person`])
//! → live: each recipient agency is sent it over each of its channels, every attempt and
//! its outcome recorded → acknowledged per agency → at the midpoint to its deadline the
//! agencies that have not acknowledged are sent it again (round 2) → at the deadline, if some
//! still have not, it is escalated once. A cancellation stops all of that.
//!
//! # Why every piece of work has a fixed event id
//! [`plan`] answers the same work for the same history and moment, and each [`Work`] names
//! the id of the event that records it ([`Work::event_id`]). Several instances, or one
//! instance after a restart, may plan the same work: the store keeps the first append and
//! answers the others `duplicate`, and only the instance whose append was new acts. So an
//! escalation or a delivery attempt happens once, whatever restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use events::RecordedEvent;
use events::codec::Decoded;
use events::command::{Actor, Refusal, RefusalCode, policy};
use events::domain::DomainEvent;
use events::domain::broadcast::{
    Audience, BroadcastAcknowledged, BroadcastApproved, BroadcastDelivered,
    BroadcastDeliveryAttempted, BroadcastDeliveryFailed, BroadcastEscalated, BroadcastIssued,
    BroadcastResent, Channel,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Where a broadcast is in its life, and one agency's acknowledgement (in `events`, as the
/// answers name them).
pub use events::domain::broadcast::{AgencyAck as Ack, BroadcastStatus as Status};

/// One (agency, channel, round) delivery: its attempts and outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The highest attempt claimed.
    pub attempts: u32,
    /// When that attempt was claimed.
    pub claimed_at: Option<OffsetDateTime>,
    /// The last attempt that failed, and when.
    pub failed: Option<(u32, OffsetDateTime)>,
    /// The last failure's message.
    pub error: Option<String>,
    /// Delivered (by which attempt).
    pub delivered: Option<u32>,
    /// No attempt will be made any more.
    pub gave_up: bool,
}

impl Delivery {
    /// Whether nothing more will happen to it.
    pub fn finished(&self) -> bool {
        self.delivered.is_some() || self.gave_up
    }
}

/// A link of the causal chain: one event of the broadcast's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// The event's id.
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its log position.
    pub position: u64,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who (the actor in its meta).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The event that caused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// The one agency it is about (a delivery, a failure, an acknowledgement), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agency: Option<String>,
}

/// A delivery key: agency, channel, round.
pub type Key = (String, Channel, u32);

/// A broadcast, folded from its stream (serialized only into the broadcast register's
/// checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Broadcast {
    /// Its id (the stream's id).
    pub id: Uuid,
    /// What was issued.
    pub issued: BroadcastIssued,
    /// Who issued it.
    pub issued_by: String,
    /// When.
    pub issued_at: OffsetDateTime,
    /// Log position of the issue.
    pub position: u64,
    /// The stream's version.
    pub version: u64,
    /// The second duty officer, and when.
    pub approved: Option<(String, OffsetDateTime)>,
    /// Deliveries by (agency, channel, round).
    #[serde(with = "runtime::checkpoint::pairs")]
    pub deliveries: BTreeMap<Key, Delivery>,
    /// Acknowledgements by agency.
    pub acks: BTreeMap<String, Ack>,
    /// The agencies sent it again, and when.
    pub resent: Option<(Vec<String>, OffsetDateTime)>,
    /// The agencies still silent at the deadline, and when it was escalated.
    pub escalated: Option<(Vec<String>, OffsetDateTime)>,
    /// Why and by which broadcast it was cancelled.
    pub cancelled: Option<(String, Option<Uuid>)>,
    /// Triggers of its rule it damped (`BroadcastTriggerSuppressed`).
    pub suppressed: u64,
    /// Every event of the stream, for the causal chain.
    pub chain: Vec<Link>,
}

/// Whether `e` is this broadcast's issue (the first event of the stream).
fn issued_of(e: &RecordedEvent) -> Option<BroadcastIssued> {
    match DomainEvent::decode(e) {
        Decoded::Known(DomainEvent::BroadcastIssued(i)) => Some(i),
        _ => None,
    }
}

impl Broadcast {
    /// Folds a broadcast's stream; `None` when it does not start with an issue.
    pub fn fold(history: &[RecordedEvent]) -> Option<Broadcast> {
        let (first, rest) = history.split_first()?;
        let mut b = Broadcast::start(first)?;
        for e in rest {
            b.apply(e);
        }
        Some(b)
    }

    /// A broadcast from its first event.
    pub fn start(first: &RecordedEvent) -> Option<Broadcast> {
        let issued = issued_of(first)?;
        let mut b = Broadcast {
            id: first.stream.id(),
            issued,
            issued_by: first.meta.actor.clone().unwrap_or_default(),
            issued_at: first.recorded_at,
            position: first.position,
            version: first.version,
            approved: None,
            deliveries: BTreeMap::new(),
            acks: BTreeMap::new(),
            resent: None,
            escalated: None,
            cancelled: None,
            suppressed: 0,
            chain: Vec::new(),
        };
        b.link(first);
        Some(b)
    }

    fn link(&mut self, e: &RecordedEvent) {
        self.chain.push(Link {
            event_id: e.id,
            event_type: e.event_type.clone(),
            position: e.position,
            at: e.recorded_at,
            actor: e.meta.actor.clone(),
            causation_id: e.meta.causation_id,
            agency: match events::visibility::class_of(&e.event_type) {
                events::visibility::Class::AgencyScoped => e
                    .data
                    .get("agency")
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned),
                _ => None,
            },
        });
    }

    /// Applies one later event of the stream (an event at or below the known version is
    /// ignored: folding is idempotent).
    pub fn apply(&mut self, e: &RecordedEvent) {
        if e.version <= self.version {
            return;
        }
        self.version = e.version;
        self.link(e);
        let at = e.recorded_at;
        let Decoded::Known(event) = DomainEvent::decode(e) else {
            return;
        };
        match event {
            DomainEvent::BroadcastApproved(BroadcastApproved { by }) => {
                self.approved.get_or_insert((by, at));
            }
            DomainEvent::BroadcastDeliveryAttempted(BroadcastDeliveryAttempted {
                agency,
                channel,
                round,
                attempt,
            }) => {
                let d = self.deliveries.entry((agency, channel, round)).or_default();
                if attempt > d.attempts {
                    d.attempts = attempt;
                    d.claimed_at = Some(at);
                }
            }
            DomainEvent::BroadcastDelivered(BroadcastDelivered {
                agency,
                channel,
                attempt,
                round,
            }) => {
                let d = self.deliveries.entry((agency, channel, round)).or_default();
                d.delivered.get_or_insert(attempt);
                d.attempts = d.attempts.max(attempt);
            }
            DomainEvent::BroadcastDeliveryFailed(BroadcastDeliveryFailed {
                agency,
                channel,
                round,
                attempt,
                error,
                gave_up,
            }) => {
                let d = self.deliveries.entry((agency, channel, round)).or_default();
                d.attempts = d.attempts.max(attempt);
                if d.failed.is_none_or(|(a, _)| attempt >= a) {
                    d.failed = Some((attempt, at));
                    d.error = Some(error);
                }
                d.gave_up |= gave_up;
            }
            DomainEvent::BroadcastAcknowledged(BroadcastAcknowledged { agency, by }) => {
                let seconds = (at - self.live_since()).whole_seconds();
                self.acks.entry(agency).or_insert(Ack { by, at, seconds });
            }
            DomainEvent::BroadcastResent(BroadcastResent { agencies }) => {
                self.resent.get_or_insert((agencies, at));
            }
            DomainEvent::BroadcastEscalated(BroadcastEscalated { agencies, .. }) => {
                self.escalated.get_or_insert((agencies, at));
            }
            DomainEvent::BroadcastCancelled(c) => {
                self.cancelled.get_or_insert((c.reason, c.by_broadcast));
            }
            DomainEvent::BroadcastTriggerSuppressed(_) => self.suppressed += 1,
            _ => {}
        }
    }

    /// Where it is in its life.
    pub fn status(&self) -> Status {
        if self.cancelled.is_some() {
            Status::Cancelled
        } else if self.issued.needs_second_person() && self.approved.is_none() {
            Status::AwaitingApproval
        } else {
            Status::Live
        }
    }

    /// When it went live: approval, or issue when none was needed.
    pub fn live_since(&self) -> OffsetDateTime {
        self.approved.as_ref().map_or(self.issued_at, |(_, at)| *at)
    }

    /// Recipient agencies that have not acknowledged.
    pub fn unacknowledged(&self) -> Vec<String> {
        self.issued
            .recipients
            .iter()
            .filter(|a| !self.acks.contains_key(*a))
            .cloned()
            .collect()
    }

    /// Whether `agency`'s line of this broadcast is for `actor`: everyone's for the centre,
    /// only their own for a focal point.
    pub fn own_line(actor: &Actor, agency: &str) -> bool {
        actor.role != events::command::Role::AgencyFocalPoint
            || actor.agency.as_deref() == Some(agency)
    }

    /// This broadcast as `actor` may see it: for a focal point, the recipients (and an
    /// agency-list audience), deliveries, acknowledgements, re-sends, escalations and chain
    /// cut to its own agency; for the centre, unchanged.
    pub fn cut_for(&self, actor: &Actor) -> Broadcast {
        let mut b = self.clone();
        if actor.role != events::command::Role::AgencyFocalPoint {
            return b;
        }
        let own = |a: &String| Self::own_line(actor, a);
        b.issued.recipients.retain(own);
        if let Audience::Agencies(named) = &mut b.issued.audience {
            named.retain(own);
        }
        b.deliveries.retain(|(a, _, _), _| own(a));
        b.acks.retain(|a, _| own(a));
        if let Some((agencies, _)) = &mut b.resent {
            agencies.retain(own);
        }
        if let Some((agencies, _)) = &mut b.escalated {
            agencies.retain(own);
        }
        b.chain = self.chain_for(actor).0;
        b
    }

    /// The causal chain as `actor` may see it: a link about one agency (its delivery,
    /// failure, acknowledgement) only for that agency's focal point and the centre; the
    /// links left out are counted by type, so a focal point sees how many other agencies'
    /// events there were and nothing of who.
    pub fn chain_for(&self, actor: &Actor) -> (Vec<Link>, BTreeMap<String, usize>) {
        let mut others = BTreeMap::new();
        let mut links = Vec::with_capacity(self.chain.len());
        for link in &self.chain {
            match &link.agency {
                Some(a) if !Self::own_line(actor, a) => {
                    *others.entry(link.event_type.clone()).or_insert(0) += 1;
                }
                _ => links.push(link.clone()),
            }
        }
        (links, others)
    }

    /// Whether event `event` caused it: the issue's cause (a rule's trigger, a cancelling
    /// command), or a trigger of its rule it damped (`BroadcastTriggerSuppressed`, recorded
    /// with the damped trigger as its cause): the broadcast that stands for that trigger.
    pub fn caused_by(&self, event: Uuid) -> bool {
        self.issued
            .rule
            .as_ref()
            .is_some_and(|r| r.trigger == event)
            || self.chain.iter().enumerate().any(|(i, l)| {
                l.causation_id == Some(event)
                    && (i == 0 || l.event_type == "BroadcastTriggerSuppressed")
            })
    }

    /// Whether `actor` may see it: focal points only what was sent to their agency;
    /// crisis-manager broadcasts only crisis managers and admins.
    pub fn visible_to(&self, actor: &Actor) -> bool {
        use events::command::Role;
        match actor.role {
            Role::AgencyFocalPoint => {
                self.status() != Status::AwaitingApproval
                    && actor
                        .agency
                        .as_ref()
                        .is_some_and(|a| self.issued.recipients.contains(a))
            }
            Role::DutyOfficer => self.issued.audience != Audience::CrisisManagers,
            Role::CrisisManager | Role::Admin => true,
            Role::FieldOfficer | Role::WallScreen => false,
        }
    }
}

impl Broadcast {
    /// Whether it reached the field sites of `country` (their scope rule, `site::scope`: a
    /// broadcast to every agency reaches every site, one to a country that country's; any
    /// other audience no site). A site forwards only acknowledgements of these.
    pub fn reached_sites_of(&self, country: Option<events::validate::Country>) -> bool {
        match (&self.issued.audience, country) {
            (Audience::AllAgencies, Some(_)) => true,
            (Audience::Country(c), Some(s)) => *c == s,
            _ => false,
        }
    }
}

/// Refuses `what` on a broadcast `actor` cannot see (404: existence is not revealed).
fn not_found(id: Uuid) -> Refusal {
    Refusal::not_found(format!("no broadcast {id} that you can see; check the id"))
}

/// Checks a new broadcast (its recipients already resolved by the service).
pub fn decide_issue(
    actor: &Actor,
    issued: BroadcastIssued,
    original: Option<&Broadcast>,
) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::BROADCAST_ISSUE, "issue broadcasts")?;
    issued
        .validate()
        .map_err(|e| Refusal::invalid(e.to_string()))?;
    if issued.rule.is_some() {
        return Err(Refusal::invalid(
            "rule: only the broadcast service's rules set this",
        ));
    }
    if let Some(id) = issued.updates.or(issued.cancels) {
        let o = original
            .filter(|o| o.visible_to(actor))
            .ok_or_else(|| not_found(id))?;
        if o.cancelled.is_some() {
            return Err(Refusal::conflict(
                "that broadcast is cancelled; issue a new broadcast instead",
            ));
        }
        if o.issued.exercise != issued.exercise {
            return Err(Refusal::invalid(
                "exercise: an update or cancellation is an exercise exactly when the original is",
            ));
        }
    }
    if !issued.audience.is_internal() && issued.recipients.is_empty() {
        return Err(Refusal::invalid(
            "audience: no registered agency is in that audience (for an exercise, live-only agencies are left out); check the agency ids or the country",
        ));
    }
    Ok(vec![issued.into()])
}

/// The second duty officer approves.
pub fn decide_approve(b: &Broadcast, actor: &Actor) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::BROADCAST_APPROVE, "approve broadcasts")?;
    if !b.visible_to(actor) {
        return Err(not_found(b.id));
    }
    match b.status() {
        Status::Cancelled => return Err(Refusal::conflict("this broadcast is cancelled")),
        Status::Live if b.approved.is_some() => {
            return Err(Refusal::conflict("this broadcast is already approved"));
        }
        Status::Live => {
            return Err(Refusal::conflict(
                "this broadcast needs no second person (severity below high, not to all agencies): it went out when issued",
            ));
        }
        Status::AwaitingApproval => {}
    }
    if b.issued_by == actor.user {
        return Err(Refusal::second_person_required(
            "you issued this broadcast: another duty officer must approve it (two-person rule)",
        ));
    }
    Ok(vec![
        BroadcastApproved {
            by: actor.user.clone(),
        }
        .into(),
    ])
}

/// A focal point acknowledges for their agency.
pub fn decide_ack(b: &Broadcast, actor: &Actor) -> Result<Vec<DomainEvent>, Refusal> {
    actor.may(policy::BROADCAST_ACK, "acknowledge broadcasts")?;
    let agency = actor.agency.clone().ok_or_else(|| {
        Refusal::forbidden("your account names no agency; ask an admin to set --agency")
    })?;
    if !b.visible_to(actor) {
        return Err(not_found(b.id));
    }
    if b.cancelled.is_some() {
        return Err(Refusal::conflict(
            "this broadcast was cancelled: no acknowledgement is needed",
        ));
    }
    if !b.issued.requires_ack {
        return Err(Refusal::conflict(
            "this broadcast asks for no acknowledgement",
        ));
    }
    if let Some(ack) = b.acks.get(&agency) {
        return Err(Refusal::new(
            RefusalCode::Conflict,
            format!("{agency} already acknowledged this broadcast ({})", ack.by),
        ));
    }
    Ok(vec![
        BroadcastAcknowledged {
            agency,
            by: actor.user.clone(),
        }
        .into(),
    ])
}

/// How deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts per (agency, channel, round) before giving up.
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// A claimed attempt with no outcome after this long is taken as failed (its instance
    /// stopped).
    pub claim_timeout: Duration,
}

impl Retry {
    /// The wait after failed attempt `attempt` (from 1).
    pub fn wait(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// A piece of work due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// Claim and make delivery attempt `attempt`.
    Attempt(Key, u32),
    /// A claimed attempt never reported back and it was the last: record the failure.
    Abandon(Key, u32),
    /// Send again to these agencies (round 2).
    Resend(Vec<String>),
    /// Escalate: these agencies are silent at the deadline.
    Escalate(Vec<String>),
}

impl Work {
    /// The id of the event that records this work (the same on every instance).
    pub fn event_id(&self, broadcast: Uuid) -> Uuid {
        let name = match self {
            Work::Attempt((agency, channel, round), attempt) => {
                format!("attempt/{agency}/{}/{round}/{attempt}", channel.as_str())
            }
            Work::Abandon((agency, channel, round), attempt) => {
                format!("failed/{agency}/{}/{round}/{attempt}", channel.as_str())
            }
            Work::Resend(_) => "resent".to_owned(),
            Work::Escalate(_) => "escalated".to_owned(),
        };
        Uuid::new_v5(&broadcast, name.as_bytes())
    }
}

/// The id of `agency`'s acknowledgement of `broadcast` (in `events`: the id is part of the
/// log's contract, which the chaos scenarios check against too).
pub use events::domain::broadcast::ack_id;

/// The id of an attempt's outcome event (delivered, or failed).
pub fn outcome_id(broadcast: Uuid, key: &Key, attempt: u32, delivered: bool) -> Uuid {
    let (agency, channel, round) = key;
    let name = if delivered {
        format!("delivered/{agency}/{}/{round}", channel.as_str())
    } else {
        format!("failed/{agency}/{}/{round}/{attempt}", channel.as_str())
    };
    Uuid::new_v5(&broadcast, name.as_bytes())
}

/// The moment agencies that have not acknowledged are sent it again: halfway from going
/// live to the deadline.
pub fn resend_at(b: &Broadcast) -> Option<OffsetDateTime> {
    let deadline = b.issued.ack_deadline?;
    let live = b.live_since();
    Some(live + (deadline - live) / 2)
}

/// The work due at `now`. `channels` names an agency's channels (NATS for every agency, a
/// webhook where one is configured).
pub fn plan(
    b: &Broadcast,
    now: OffsetDateTime,
    retry: &Retry,
    channels: &dyn Fn(&str) -> Vec<Channel>,
) -> Vec<Work> {
    let mut work = Vec::new();
    if b.status() != Status::Live {
        return work;
    }
    let resent: BTreeSet<&String> = b.resent.iter().flat_map(|(a, _)| a).collect();
    for agency in &b.issued.recipients {
        for channel in channels(agency) {
            for round in [1, 2] {
                // Round 2 goes only to agencies still silent.
                if round == 2 && (!resent.contains(agency) || b.acks.contains_key(agency)) {
                    continue;
                }
                let key = (agency.clone(), channel, round);
                match b.deliveries.get(&key) {
                    None => work.push(Work::Attempt(key, 1)),
                    Some(d) if d.finished() => {}
                    Some(d) => {
                        let failed_last = d.failed.is_some_and(|(a, _)| a >= d.attempts);
                        let due = if failed_last {
                            d.failed.map(|(a, at)| at + retry.wait(a))
                        } else {
                            d.claimed_at.map(|at| at + retry.claim_timeout)
                        };
                        if due.is_some_and(|due| now >= due) {
                            if d.attempts >= retry.attempts {
                                // A failed last attempt records gave_up itself; this is
                                // the attempt whose instance stopped.
                                work.push(Work::Abandon(key, d.attempts));
                            } else {
                                work.push(Work::Attempt(key, d.attempts + 1));
                            }
                        }
                    }
                }
            }
        }
    }
    let silent = b.unacknowledged();
    if b.issued.requires_ack && !silent.is_empty() {
        if b.resent.is_none() && resend_at(b).is_some_and(|t| now >= t) {
            work.push(Work::Resend(silent.clone()));
        }
        if b.escalated.is_none() && b.issued.ack_deadline.is_some_and(|d| now >= d) {
            work.push(Work::Escalate(silent));
        }
    }
    work
}

/// Whether nothing can become due for it any more (every delivery finished, and it needs
/// no acknowledgement, or all came, or it was escalated), so a scheduler may forget it.
pub fn settled(b: &Broadcast, channels: &dyn Fn(&str) -> Vec<Channel>) -> bool {
    if b.status() == Status::Cancelled {
        return true;
    }
    if b.status() == Status::AwaitingApproval {
        return false;
    }
    let rounds: Vec<u32> = if b.resent.is_some() {
        vec![1, 2]
    } else {
        vec![1]
    };
    let resent: BTreeSet<&String> = b.resent.iter().flat_map(|(a, _)| a).collect();
    let delivered = b.issued.recipients.iter().all(|agency| {
        channels(agency).into_iter().all(|channel| {
            rounds.iter().all(|&round| {
                (round == 2 && (!resent.contains(agency) || b.acks.contains_key(agency)))
                    || b.deliveries
                        .get(&(agency.clone(), channel, round))
                        .is_some_and(Delivery::finished)
            })
        })
    });
    let acks_done = !b.issued.requires_ack
        || b.unacknowledged().is_empty()
        || b.escalated.is_some()
        || b.issued.ack_deadline.is_none();
    delivered && acks_done
}

#[cfg(test)]
mod tests;
