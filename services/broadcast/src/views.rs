//! The reads: `get`, `chain`, `cap`, `list` and `feed`, and the shapes they answer with
//! ([`View`], [`Chain`], [`Totals`], [`AgencyState`]).
//!
//! Promises: a caller sees only the broadcasts it may see (a focal point: its own agency's
//! line, with [`Totals`] for every agency, and events about other agencies counted, not
//! shown); a wall screen reads the public all-agency feed only; reads never write.

use std::collections::BTreeMap;

use events::command::{Actor, Command, Refusal, Role, policy};
use events::domain::broadcast::{self as bevents, Audience};
use runtime::commands;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::broadcast::{Broadcast, Link, Status};
use crate::register::Register;
use crate::{Service, cap};

/// Body of `get`, `chain`, `cap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Get {
    /// The broadcast.
    pub broadcast: Uuid,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    #[serde(default)]
    pub(crate) limit: Option<usize>,
    #[serde(default)]
    pub(crate) cursor: Option<events::page::Cursor>,
    #[serde(default)]
    pub(crate) status: Option<String>,
    /// Only the broadcasts this event caused: issued by a rule it triggered, or standing
    /// for it when the trigger was damped (see [`crate::rules::Damper`]).
    #[serde(default)]
    pub(crate) caused_by: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FeedQuery {
    #[serde(default)]
    pub(crate) agency: Option<String>,
}

/// What `get` and each line of `list` answer, and its parts (in `events`, as the answers name
/// them).
pub use events::domain::broadcast::{
    BroadcastAgencyState as AgencyState, BroadcastTotals as Totals, BroadcastView as View,
};

/// Answer of `chain`.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// The event that set a rule off, if a rule issued it.
    pub trigger: Option<Uuid>,
    /// The broadcast it updates or cancels.
    pub references: Option<Uuid>,
    /// Every event of the broadcast the caller may see, in order, each with its causation
    /// (a focal point: the centre's events and its own agency's).
    pub events: Vec<Link>,
    /// Events about other agencies left out, counted by type (empty for the centre).
    pub other_agencies: BTreeMap<String, usize>,
}

/// The broadcast as `actor` may see it: a focal point sees their own agency's line only
/// (its recipients cut to that agency) and [`Totals`] for every agency.
pub(crate) fn view(b: &Broadcast, superseded_by: Option<Uuid>, actor: &Actor) -> View {
    let own = |a: &&String| Broadcast::own_line(actor, a);
    let mut agencies: BTreeMap<String, AgencyState> = b
        .issued
        .recipients
        .iter()
        .filter(own)
        .map(|a| {
            (
                a.clone(),
                AgencyState {
                    delivered: vec![],
                    failed: BTreeMap::new(),
                    attempts: 0,
                    ack: b.acks.get(a).cloned(),
                },
            )
        })
        .collect();
    for ((agency, channel, _round), d) in &b.deliveries {
        let Some(s) = agencies.get_mut(agency) else {
            continue;
        };
        s.attempts += d.attempts;
        if d.delivered.is_some() {
            if !s.delivered.contains(channel) {
                s.delivered.push(*channel);
            }
        } else if d.gave_up {
            s.failed.insert(
                channel.as_str().to_owned(),
                d.error.clone().unwrap_or_default(),
            );
        }
    }
    let delivered = agencies
        .values()
        .filter(|s| !s.delivered.is_empty())
        .count();
    let failed = agencies
        .values()
        .filter(|s| s.delivered.is_empty() && !s.failed.is_empty())
        .count();
    let sent = agencies.values().filter(|s| s.attempts > 0).count();
    let totals = Totals {
        recipients: b.issued.recipients.len(),
        sent: b
            .issued
            .recipients
            .iter()
            .filter(|a| {
                b.deliveries
                    .iter()
                    .any(|((agency, _, _), d)| agency == *a && d.attempts > 0)
            })
            .count(),
        delivered: b
            .issued
            .recipients
            .iter()
            .filter(|a| {
                b.deliveries
                    .iter()
                    .any(|((agency, _, _), d)| agency == *a && d.delivered.is_some())
            })
            .count(),
        acknowledged: b.acks.len(),
    };
    let issued = b.cut_for(actor).issued;
    View {
        id: b.id,
        issued,
        totals,
        status: b.status(),
        issued_by: b.issued_by.clone(),
        issued_at: b.issued_at,
        approved_by: b.approved.as_ref().map(|(by, _)| by.clone()),
        sent,
        delivered,
        acknowledged: b.acks.keys().filter(own).count(),
        failed,
        agencies,
        resent_to: b
            .resent
            .iter()
            .flat_map(|(a, _)| a.iter().filter(own).cloned())
            .collect(),
        escalated: b
            .escalated
            .as_ref()
            .map(|(a, _)| a.iter().filter(own).cloned().collect()),
        cancelled: b.cancelled.as_ref().map(|(r, _)| r.clone()),
        superseded_by,
        suppressed: b.suppressed,
        position: b.position,
    }
}

impl Service {
    /// The broadcast `id` as `actor` may see it.
    pub(crate) async fn load(&self, id: Uuid, actor: &Actor) -> Result<Broadcast, Refusal> {
        let (history, _) = commands::load(&self.store, &bevents::stream_for(id)).await?;
        Broadcast::fold(&history)
            .filter(|b| b.visible_to(actor))
            .ok_or_else(|| {
                Refusal::not_found(format!("no broadcast {id} that you can see; check the id"))
            })
    }

    pub(crate) async fn get(&self, payload: &[u8]) -> Result<View, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let b = self.load(cmd.body.broadcast, &cmd.actor).await?;
        let superseded = self
            .register
            .read()?
            .superseded
            .get(&cmd.body.broadcast)
            .copied();
        Ok(view(&b, superseded, &cmd.actor))
    }

    pub(crate) async fn chain(&self, payload: &[u8]) -> Result<Chain, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let b = self.load(cmd.body.broadcast, &cmd.actor).await?;
        let (events, other_agencies) = b.chain_for(&cmd.actor);
        Ok(Chain {
            trigger: b.issued.rule.as_ref().map(|f| f.trigger),
            references: b.issued.updates.or(b.issued.cancels),
            events,
            other_agencies,
        })
    }

    pub(crate) async fn cap(&self, payload: &[u8]) -> Result<String, Refusal> {
        let cmd: Command<Get> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        // A focal point's alert addresses its own agency only.
        let b = self
            .load(cmd.body.broadcast, &cmd.actor)
            .await?
            .cut_for(&cmd.actor);
        let register = self.register.read()?;
        let alert = self.cap_alert(&b, &register);
        cap::alert_xml(&alert).map_err(|e| Refusal::unavailable(e.to_string()))
    }

    pub(crate) fn cap_alert<'a>(
        &'a self,
        b: &'a Broadcast,
        register: &Register,
    ) -> cap::CapAlert<'a> {
        let references = b
            .issued
            .updates
            .or(b.issued.cancels)
            .and_then(|o| register.broadcasts.get(&o).map(|o| (o.id, o.issued_at)));
        cap::CapAlert {
            id: b.id,
            sender: &self.options.config.sender,
            sent: b.issued_at,
            issued: &b.issued,
            references,
        }
    }

    pub(crate) fn list(&self, payload: &[u8]) -> Result<events::page::Page<View>, Refusal> {
        let cmd: Command<ListQuery> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
        let status = match cmd.body.status.as_deref() {
            None => None,
            Some("awaiting_approval") => Some(Status::AwaitingApproval),
            Some("live") => Some(Status::Live),
            Some("cancelled") => Some(Status::Cancelled),
            Some(_) => {
                return Err(Refusal::invalid(
                    "status: one of awaiting_approval, live, cancelled",
                ));
            }
        };
        let register = self.register.caught_up()?;
        let found: Vec<&Broadcast> = register
            .broadcasts
            .values()
            .filter(|b| b.visible_to(&cmd.actor))
            .filter(|b| status.is_none_or(|s| b.status() == s))
            .filter(|b| cmd.body.caused_by.is_none_or(|e| b.caused_by(e)))
            .collect();
        events::page::newest_first(
            found,
            |b| b.position,
            events::page::PageQuery::new(cmd.body.limit, cmd.body.cursor),
            register.position,
            |b| view(b, register.superseded.get(&b.id).copied(), &cmd.actor),
        )
    }

    /// An agency's CAP feed (newest first, at most 100 alerts), or the public feed.
    pub(crate) fn feed(&self, payload: &[u8]) -> Result<String, Refusal> {
        let cmd: Command<FeedQuery> = commands::decode(payload)?;
        let public = cmd.actor.role == Role::WallScreen;
        let agency = match cmd.actor.role {
            Role::WallScreen => None,
            Role::AgencyFocalPoint => {
                let own = cmd.actor.agency.clone().ok_or_else(|| {
                    Refusal::forbidden("your account names no agency; ask an admin")
                })?;
                if cmd.body.agency.as_ref().is_some_and(|a| *a != own) {
                    return Err(Refusal::forbidden(
                        "you may read your own agency's feed only",
                    ));
                }
                Some(own)
            }
            _ => {
                cmd.actor.may(policy::BROADCAST_READ, "read broadcasts")?;
                Some(cmd.body.agency.clone().ok_or_else(|| {
                    Refusal::invalid("agency: name the agency whose feed to read")
                })?)
            }
        };
        let register = self.register.caught_up()?;
        let chosen: Vec<Broadcast> = register
            .order
            .iter()
            .rev()
            .filter_map(|id| register.broadcasts.get(id))
            .filter(|b| b.status() != Status::AwaitingApproval)
            .filter(|b| match &agency {
                Some(a) => b.issued.recipients.contains(a),
                None => public && b.issued.audience == Audience::AllAgencies,
            })
            .take(100)
            .map(|b| b.cut_for(&cmd.actor))
            .collect();
        let alerts: Vec<cap::CapAlert<'_>> = chosen
            .iter()
            .map(|b| self.cap_alert(b, &register))
            .collect();
        let (feed_id, title) = match &agency {
            Some(a) => (
                format!("urn:vigil:cap:{a}"),
                format!("Vigil alerts for {a}"),
            ),
            None => (
                "urn:vigil:cap:public".to_owned(),
                "Vigil all-agency alerts".to_owned(),
            ),
        };
        let updated = chosen
            .first()
            .map_or(OffsetDateTime::UNIX_EPOCH, |b| b.issued_at);
        cap::feed_xml(&feed_id, &title, updated, &alerts)
            .map_err(|e| Refusal::unavailable(e.to_string()))
    }
}
