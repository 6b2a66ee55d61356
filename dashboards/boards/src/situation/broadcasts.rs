//! Broadcasts on the board: issued, approved, delivered, failed, acknowledged, re-sent,
//! escalated, suppressed, cancelled; each broadcast's per-agency reach and its share of the
//! counters.
//!
//! Promises: a broadcast to crisis managers is never on the board; a broadcast stays in the
//! state while it counts (awaits approval or acknowledgements, or has a failure standing) and
//! leaves it the board's retention after it ended (`retention.rs`); each keeps at most
//! [`MAX_AGENCIES`] agencies, and only the newest [`MAX_BROADCASTS`] of those kept are
//! rendered (a change to an older one moves its counters only).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use events::domain::DomainEvent;
use events::domain::broadcast::{Audience, BroadcastSeverity, MAX_AGENCIES};
use events::validate::Country;
use time::OffsetDateTime;

use super::{At, Counters, Detail, Effects, MAX_BROADCASTS, Situation, bump, retention, text};

/// One agency a broadcast goes to: what is known of its delivery and acknowledgement.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct Reach {
    /// A delivery attempt was made to it: a `BroadcastDeliveryAttempted`, or an outcome
    /// (`BroadcastDelivered`, `BroadcastDeliveryFailed`), any channel, any round.
    pub(super) sent: bool,
    /// A `BroadcastDelivered` came for it (any channel, any round): its system received it
    /// (a receipt over NATS, a 2xx from its webhook).
    pub(super) delivered: bool,
    /// A `BroadcastDeliveryFailed` with `gave_up` came for it (any channel, any round).
    pub(super) gave_up: bool,
    /// Seconds from going live (approval, or issue when it needed none) to its first
    /// acknowledgement; `None` until it acknowledges.
    pub(super) ack_seconds: Option<i64>,
    /// Named by a `BroadcastResent`.
    pub(super) resent: bool,
}

impl Reach {
    pub(super) fn acknowledged(&self) -> bool {
        self.ack_seconds.is_some()
    }

    /// Every attempt over some channel was given up, and nothing shows that it reached the
    /// agency anyway (no delivery over any channel or round, no acknowledgement).
    pub(super) fn failed(&self) -> bool {
        self.gave_up && !self.delivered && !self.acknowledged()
    }

    /// What the board shows of it, as counted flags: sent, delivered, acknowledged, failed,
    /// resent.
    pub(super) fn shown(&self) -> [bool; 5] {
        [
            self.sent,
            self.delivered,
            self.acknowledged(),
            self.failed(),
            self.resent,
        ]
    }
}

/// A broadcast's share of the board-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Share {
    pub(super) awaiting_ack: bool,
    pub(super) awaiting_approval: bool,
    pub(super) failed: u64,
}

/// Adds (or removes) a broadcast's share of the counters.
pub(super) fn count_broadcast(counters: &mut Counters, share: Share, add: bool) {
    bump(
        &mut counters.broadcasts_awaiting_ack,
        add,
        u64::from(share.awaiting_ack),
    );
    bump(
        &mut counters.broadcasts_awaiting_approval,
        add,
        u64::from(share.awaiting_approval),
    );
    bump(&mut counters.broadcast_deliveries_failed, add, share.failed);
}

/// Where a broadcast is in its life (as the broadcast service sees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) enum BroadcastStatus {
    /// Waiting for a second duty officer; nothing is sent.
    AwaitingApproval,
    /// Being sent and acknowledged.
    Live,
    /// Withdrawn.
    Cancelled,
}

/// A broadcast, issued at some point; kept while the board may show or count it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct Broadcast {
    /// Position of its `BroadcastIssued`: its key in `Situation::broadcast_order`.
    pub(super) issued_pos: u64,
    /// When it last came to count for nothing on the board (cancelled, or live with every
    /// acknowledgement it needs and no failure standing: [`Broadcast::ended`]); `None` while
    /// it counts. It leaves the board once the board's clock is the retention past this.
    #[serde(default)]
    pub(super) ended_at: Option<OffsetDateTime>,
    pub(super) title: String,
    pub(super) severity: BroadcastSeverity,
    pub(super) exercise: bool,
    pub(super) issued_at: OffsetDateTime,
    /// The issue's `meta.actor` (duty view only).
    pub(super) issued_by: Option<String>,
    pub(super) requires_ack: bool,
    pub(super) ack_deadline: Option<OffsetDateTime>,
    /// It must be approved by a second duty officer before it goes out.
    pub(super) needs_approval: bool,
    /// Who approved it (duty view only) and when: the first `BroadcastApproved` stands.
    pub(super) approved: Option<(String, OffsetDateTime)>,
    /// For the centre only (duty officers): no agency receives it.
    pub(super) internal: bool,
    /// The rule that issued it.
    pub(super) rule: Option<String>,
    /// The country when the audience is a country (for the timeline).
    pub(super) country: Option<Country>,
    /// Whether `agencies` is the whole audience, fixed when issued (its `recipients`, or the
    /// named list of an older event; empty for an internal one): other agencies are ignored.
    /// Otherwise (an older event for all agencies or a country) an agency joins when a
    /// delivery or an acknowledgement names it.
    pub(super) fixed: bool,
    /// At most [`MAX_AGENCIES`] agencies, by id; the total is their number.
    pub(super) agencies: BTreeMap<String, Reach>,
    /// Agencies sent to, delivered to, acknowledged, finally failed, sent again: kept with
    /// `agencies`.
    pub(super) sent: u64,
    pub(super) delivered: u64,
    pub(super) acked: u64,
    pub(super) failed: u64,
    pub(super) resent: u64,
    /// Number of `BroadcastEscalated` events.
    pub(super) escalations: u64,
    /// Number of `BroadcastTriggerSuppressed` events: rule triggers this broadcast damped.
    pub(super) suppressed: u64,
    pub(super) cancelled: bool,
}

impl Broadcast {
    pub(super) fn total(&self) -> u64 {
        self.agencies.len() as u64
    }

    pub(super) fn status(&self) -> BroadcastStatus {
        if self.cancelled {
            BroadcastStatus::Cancelled
        } else if self.needs_approval && self.approved.is_none() {
            BroadcastStatus::AwaitingApproval
        } else {
            BroadcastStatus::Live
        }
    }

    pub(super) fn awaiting_ack(&self) -> bool {
        self.status() == BroadcastStatus::Live
            && self.requires_ack
            && !self.internal
            && (self.total() == 0 || self.acked < self.total())
    }

    /// Whether it has ended: it counts for nothing (awaits no approval, no acknowledgement,
    /// and has no failure standing), so the retention may take it off the board without
    /// moving a counter.
    pub(super) fn ended(&self) -> bool {
        self.share() == Share::default()
    }

    /// Its share of the board-wide counters.
    pub(super) fn share(&self) -> Share {
        let status = self.status();
        Share {
            awaiting_ack: self.awaiting_ack(),
            awaiting_approval: status == BroadcastStatus::AwaitingApproval,
            failed: if status == BroadcastStatus::Live {
                self.failed
            } else {
                0
            },
        }
    }

    /// When it went live: its approval, or its issue when none came.
    pub(super) fn live_since(&self) -> OffsetDateTime {
        self.approved.as_ref().map_or(self.issued_at, |(_, at)| *at)
    }

    /// Changes what is known of `agency` with `change`, keeping the counts in step. An agency
    /// outside a fixed audience is ignored; an open audience takes it in when the change
    /// shows something (up to [`MAX_AGENCIES`]). Returns whether anything shown changed.
    pub(super) fn reach(&mut self, agency: String, change: impl FnOnce(&mut Reach)) -> bool {
        let room = self.agencies.len() < MAX_AGENCIES;
        let (before, after) = match self.agencies.entry(agency) {
            Entry::Occupied(o) => {
                let r = o.into_mut();
                let before = r.shown();
                change(r);
                (before, r.shown())
            }
            Entry::Vacant(v) if !self.fixed && room => {
                let mut r = Reach::default();
                change(&mut r);
                if r == Reach::default() {
                    return false;
                }
                let after = v.insert(r).shown();
                // A new agency: the total changed even if it shows no flag.
                self.count_reach([false; 5], after);
                return true;
            }
            Entry::Vacant(_) => return false,
        };
        self.count_reach(before, after);
        before != after
    }

    pub(super) fn count_reach(&mut self, before: [bool; 5], after: [bool; 5]) {
        let counts = [
            &mut self.sent,
            &mut self.delivered,
            &mut self.acked,
            &mut self.failed,
            &mut self.resent,
        ];
        for ((n, was), now) in counts.into_iter().zip(before).zip(after) {
            if was != now {
                bump(n, now, 1);
            }
        }
    }
}

impl Situation {
    /// Folds one event of this family (`mod.rs` sends no other here).
    pub(super) fn fold_broadcast(
        &mut self,
        event: DomainEvent,
        at: At,
        actor: Option<&str>,
        fx: &mut Effects,
    ) {
        use DomainEvent as E;
        match event {
            E::BroadcastIssued(e) => {
                // A broadcast to crisis managers is theirs alone (the broadcast service hides
                // it from duty officers): the board, seen by duty officers and visitors, never
                // shows it, and its later events are of a stream the board does not know.
                if e.audience == Audience::CrisisManagers {
                    return;
                }
                let needs_approval = e.needs_second_person()
                    // An older event, issued before recipients were resolved and before the
                    // two-person rule: it went out when issued.
                    && (e.audience.is_internal() || !e.recipients.is_empty());
                let internal = e.audience.is_internal();
                let (fixed, listed, country) = match e.audience {
                    _ if internal => (true, Vec::new(), None),
                    Audience::Country(c) => (!e.recipients.is_empty(), e.recipients, Some(c)),
                    Audience::Agencies(named) if e.recipients.is_empty() => (true, named, None),
                    _ => (!e.recipients.is_empty(), e.recipients, None),
                };
                let agencies = listed
                    .into_iter()
                    .map(|a| (a, Reach::default()))
                    .take(MAX_AGENCIES)
                    .collect();
                let mut broadcast = Broadcast {
                    issued_pos: at.position,
                    ended_at: None,
                    title: e.title,
                    severity: e.severity,
                    exercise: e.exercise,
                    issued_at: at.time,
                    issued_by: actor.map(str::to_owned),
                    requires_ack: e.requires_ack,
                    ack_deadline: e.ack_deadline,
                    needs_approval,
                    approved: None,
                    internal,
                    rule: e.rule.map(|f| f.rule),
                    country,
                    fixed,
                    agencies,
                    sent: 0,
                    delivered: 0,
                    acked: 0,
                    failed: 0,
                    resent: 0,
                    escalations: 0,
                    suppressed: 0,
                    cancelled: false,
                };
                count_broadcast(&mut self.counters, broadcast.share(), true);
                retention::settle(&mut self.ended, at.id, &mut broadcast, at.time);
                self.broadcast_order.insert(at.position, at.id);
                let dropped = self
                    .broadcast_order
                    .values()
                    .rev()
                    .nth(MAX_BROADCASTS)
                    .copied();
                fx.broadcasts = true;
                fx.detail = Detail::Listed {
                    added: at.id,
                    dropped,
                };
                self.note(at, fx, text::broadcast_issued(&broadcast));
                self.broadcasts.insert(at.id, broadcast);
            }
            E::BroadcastApproved(e) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    b.approved.is_none() && {
                        b.approved = Some((e.by, at.time));
                        true
                    }
                });
                let item = self.broadcasts.get(&at.id).filter(|_| changed);
                if let Some(item) = item.map(text::broadcast_approved) {
                    self.note(at, fx, item);
                }
            }
            // A claim: the broadcast is being sent to the agency (the outcome follows).
            E::BroadcastDeliveryAttempted(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| b.reach(e.agency, |r| r.sent = true));
            }
            E::BroadcastDelivered(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| {
                    b.reach(e.agency, |r| {
                        r.sent = true;
                        r.delivered = true;
                    })
                });
            }
            E::BroadcastDeliveryFailed(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                if !e.gave_up {
                    // Another attempt follows: it was sent, nothing more.
                    self.change_broadcast(at, fx, detail, |b| b.reach(e.agency, |r| r.sent = true));
                    return;
                }
                let agency = e.agency.clone();
                let mut newly_failed = false;
                self.change_broadcast(at, fx, detail, |b| {
                    let was = b.agencies.get(&agency).is_some_and(Reach::failed);
                    let changed = b.reach(e.agency, |r| {
                        r.sent = true;
                        r.gave_up = true;
                    });
                    newly_failed = !was
                        && b.status() == BroadcastStatus::Live
                        && b.agencies.get(&agency).is_some_and(Reach::failed);
                    changed
                });
                let item = self.broadcasts.get(&at.id).filter(|_| newly_failed);
                if let Some(item) = item.map(|b| text::broadcast_not_delivered(b, &agency)) {
                    self.note(at, fx, item);
                }
            }
            E::BroadcastAcknowledged(e) => {
                let detail = Detail::Agency(at.id, e.agency.clone());
                self.change_broadcast(at, fx, detail, |b| {
                    let seconds = (at.time - b.live_since()).whole_seconds();
                    b.reach(e.agency, |r| {
                        r.ack_seconds.get_or_insert(seconds);
                    })
                });
            }
            E::BroadcastResent(e) => {
                self.change_broadcast(at, fx, Detail::Broadcast(at.id), |b| {
                    let mut changed = false;
                    for agency in e.agencies {
                        changed |= b.reach(agency, |r| r.resent = true);
                    }
                    changed
                });
            }
            E::BroadcastEscalated(_) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    b.escalations = b.escalations.saturating_add(1);
                    true
                });
                // The first escalation only: a second one says nothing new on the timeline.
                let item = self
                    .broadcasts
                    .get(&at.id)
                    .filter(|b| changed && b.escalations == 1);
                if let Some(item) = item.map(text::broadcast_escalated) {
                    self.note(at, fx, item);
                }
            }
            E::BroadcastTriggerSuppressed(_) => {
                self.change_broadcast(at, fx, Detail::None, |b| {
                    b.suppressed = b.suppressed.saturating_add(1);
                    true
                });
            }
            E::BroadcastCancelled(_) => {
                let changed = self.change_broadcast(at, fx, Detail::None, |b| {
                    !std::mem::replace(&mut b.cancelled, true)
                });
                let item = self.broadcasts.get(&at.id).filter(|_| changed);
                if let Some(item) = item.map(text::broadcast_cancelled) {
                    self.note(at, fx, item);
                }
            }
            // Not of this family: `fold` in `mod.rs` does not send it here.
            _ => {}
        }
    }

    /// Changes a known broadcast with `change` (which says whether it changed anything) and
    /// keeps its share of the counters, the broadcast list and its per-agency `detail` in
    /// step. Returns whether the broadcast is known and changed.
    pub(super) fn change_broadcast(
        &mut self,
        at: At,
        fx: &mut Effects,
        detail: Detail,
        change: impl FnOnce(&mut Broadcast) -> bool,
    ) -> bool {
        let Some(b) = self.broadcasts.get_mut(&at.id) else {
            return false;
        };
        let was = b.share();
        if !change(b) {
            return false;
        }
        let now = b.share();
        if was != now {
            count_broadcast(&mut self.counters, was, false);
            count_broadcast(&mut self.counters, now, true);
            retention::settle(&mut self.ended, at.id, b, at.time);
        }
        let newer = self
            .broadcast_order
            .range(b.issued_pos.saturating_add(1)..)
            .take(MAX_BROADCASTS)
            .count();
        if newer < MAX_BROADCASTS {
            fx.broadcasts = true;
            fx.detail = detail;
        }
        true
    }
}
