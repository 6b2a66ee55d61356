//! The write commands a person sends: `issue`, `approve` (through [`Service::transition`]) and
//! `cancel`, with their bodies. (`ack` is in [`crate::acks`]; the reads in [`crate::views`].)
//!
//! Promises: each command is decided on the stream it writes (optimistic, through
//! `runtime::commands::execute`), so an `ok` means the events are on disk and a refusal changes
//! nothing; a retried `cancel` completes what a crash cut short, and a broadcast still awaiting
//! approval is withdrawn without a notice.

use events::command::{Actor, Command, Refusal, RefusalCode, Written, policy};
use events::domain::DomainEvent;
use events::domain::broadcast::{
    self as bevents, BroadcastCancelled, BroadcastIssued, CancelBroadcast, IssueBroadcast,
};
use events::{AppendRequest, ExpectedVersion};
use runtime::commands::{self, STORE_DEADLINE, store_refusal};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::broadcast::{Broadcast, Status};
use crate::{Service, broadcast};

/// Body of `approve`, `ack`, `cancel`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Change {
    /// The broadcast.
    pub broadcast: Uuid,
    /// The command's fields.
    #[serde(default)]
    pub change: Value,
}

impl Service {
    pub(crate) async fn issue(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Value> = commands::decode(payload)?;
        cmd.actor.may(policy::BROADCAST_ISSUE, "issue broadcasts")?;
        let body: IssueBroadcast =
            events::codec::from_value(cmd.body.clone()).map_err(Refusal::invalid)?;
        if let Some(deadline) = body.ack_deadline
            && deadline <= self.options.clock.now()
        {
            return Err(Refusal::invalid(
                "ack_deadline: is already past; give a time to come (RFC 3339, e.g. 2026-11-27T18:00:00Z)",
            ));
        }
        let recipients = self
            .register
            .caught_up()?
            .recipients(&body.audience, body.exercise)?;
        let original = match body.updates {
            Some(o) => Some(self.load(o, &cmd.actor).await?),
            None => None,
        };
        let issued = BroadcastIssued {
            title: body.title,
            body: body.body,
            severity: body.severity,
            audience: body.audience,
            requires_ack: body.requires_ack,
            ack_deadline: body.ack_deadline,
            exercise: body.exercise,
            updates: body.updates,
            cancels: None,
            recipients,
            rule: None,
        };
        let stream = bevents::stream_for(cmd.id);
        commands::execute(&self.store, &stream, &cmd, |history| {
            if !history.is_empty() {
                return Err(Refusal::new(
                    RefusalCode::IdReused,
                    "this broadcast id is taken; issue it with a new id",
                ));
            }
            broadcast::decide_issue(&cmd.actor, issued.clone(), original.as_ref())
        })
        .await
    }

    pub(crate) async fn transition(
        &self,
        payload: &[u8],
        decide: fn(&Broadcast, &Actor) -> Result<Vec<DomainEvent>, Refusal>,
    ) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        let id = cmd.body.broadcast;
        if !cmd.body.change.is_null() && cmd.body.change != Value::Object(Default::default()) {
            return Err(Refusal::invalid("change: this command takes no fields"));
        }
        self.decide_on(id, &cmd, decide).await
    }

    pub(crate) async fn decide_on<T>(
        &self,
        id: Uuid,
        cmd: &Command<T>,
        decide: fn(&Broadcast, &Actor) -> Result<Vec<DomainEvent>, Refusal>,
    ) -> Result<Written, Refusal> {
        commands::execute(&self.store, &bevents::stream_for(id), cmd, |history| {
            let b = Broadcast::fold(history).ok_or_else(|| {
                Refusal::not_found(format!("no broadcast {id} that you can see; check the id"))
            })?;
            decide(&b, &cmd.actor)
        })
        .await
    }

    pub(crate) async fn cancel(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        cmd.actor
            .may(policy::BROADCAST_ISSUE, "cancel broadcasts")?;
        let body: CancelBroadcast =
            events::codec::from_value(cmd.body.change.clone()).map_err(Refusal::invalid)?;
        events::validate::non_blank("reason", &body.reason, events::domain::MAX_REASON)
            .map_err(|e| Refusal::invalid(e.to_string()))?;
        let original_id = cmd.body.broadcast;
        let original = self.load(original_id, &cmd.actor).await?;
        let stream = bevents::stream_for(cmd.id);
        let (mine, _) = commands::load(&self.store, &stream).await?;
        let written = match mine.first() {
            // A retry: the cancelling broadcast is there; make sure the original says so.
            Some(first) if first.id == cmd.id => Written {
                stream: stream.clone(),
                event_id: cmd.id,
                position: first.position,
                stream_version: first.version,
                duplicate: true,
            },
            Some(_) => {
                return Err(Refusal::new(
                    RefusalCode::IdReused,
                    "this id is taken; cancel with a new id",
                ));
            }
            None if original.status() == Status::AwaitingApproval
                || original.chain.iter().any(|l| l.event_id == cmd.id) =>
            {
                // Never sent: withdraw it, and tell nobody (no agency has seen it).
                let withdrawn = BroadcastCancelled {
                    reason: body.reason.clone(),
                    by_broadcast: None,
                };
                return commands::execute(
                    &self.store,
                    &bevents::stream_for(original_id),
                    &cmd,
                    |history| match Broadcast::fold(history) {
                        Some(b) if b.status() == Status::AwaitingApproval => {
                            Ok(vec![withdrawn.clone().into()])
                        }
                        _ => Err(Refusal::conflict(
                            "this broadcast was approved or cancelled meanwhile; reload it",
                        )),
                    },
                )
                .await;
            }
            None => {
                if original.cancelled.is_some() {
                    return Err(Refusal::conflict("this broadcast is already cancelled"));
                }
                let title: String = format!("CANCELLED: {}", original.issued.title)
                    .chars()
                    .take(bevents::MAX_TITLE)
                    .collect();
                let issued = BroadcastIssued {
                    title,
                    body: body.reason.clone(),
                    severity: original.issued.severity,
                    audience: original.issued.audience.clone(),
                    requires_ack: false,
                    ack_deadline: None,
                    exercise: original.issued.exercise,
                    updates: None,
                    cancels: Some(original_id),
                    recipients: original.issued.recipients.clone(),
                    rule: None,
                };
                commands::execute(&self.store, &stream, &cmd, |_| {
                    broadcast::decide_issue(&cmd.actor, issued.clone(), Some(&original))
                })
                .await?
            }
        };
        let cancelled = DomainEvent::from(BroadcastCancelled {
            reason: body.reason,
            by_broadcast: Some(cmd.id),
        });
        let mut meta = cmd.meta();
        meta.causation_id = Some(cmd.id);
        let event = cancelled.try_to_new_event(Uuid::new_v5(&cmd.id, b"cancelled"), meta)?;
        let request = AppendRequest {
            after: None,
            stream: bevents::stream_for(original_id),
            expected_version: ExpectedVersion::Any,
            events: vec![event],
        };
        self.store
            .append_retrying(&request, STORE_DEADLINE)
            .await
            .map_err(store_refusal)?;
        Ok(written)
    }
}
