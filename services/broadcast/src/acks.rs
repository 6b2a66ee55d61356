//! Acknowledgements by agencies: the `ack` command of a focal point, and requests from agency
//! systems on `vigil.alerts.<agency>.ack`.
//!
//! Promises: an acknowledgement a field site forwarded (`source: site:<name>`) is taken only
//! for a broadcast that reached that site ([`crate::broadcast::Broadcast::reached_sites_of`]
//! the focal point's country, which the relay checked is the site's); both paths decide on the register and store the acknowledgement under one id per
//! broadcast and agency ([`crate::broadcast::ack_id`]): the same person again gets the first
//! answer, a colleague of the same agency a `conflict`; every NATS request with a reply
//! subject gets a typed answer, bad input a refusal.

use std::sync::Arc;
use std::time::Duration;

use events::command::{Actor, Command, Refusal, RefusalCode, Role, Written};
use events::domain::broadcast::{self as bevents};
use events::{AppendRequest, ExpectedVersion};
use futures::StreamExt;
use runtime::commands::{self, STORE_DEADLINE, reply, store_refusal};
use serde::Deserialize;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::handlers::Change;
use crate::{SERVICE, Service, broadcast};

impl Service {
    /// `ack` over the command subject.
    pub(crate) async fn ack_command(&self, payload: &[u8]) -> Result<Written, Refusal> {
        let cmd: Command<Change> = commands::decode(payload)?;
        if !cmd.body.change.is_null() && cmd.body.change != Value::Object(Default::default()) {
            return Err(Refusal::invalid("change: this command takes no fields"));
        }
        self.ack(cmd.body.broadcast, &cmd).await
    }

    /// An agency's acknowledgement, decided on the register (no re-read of a stream the
    /// scheduler keeps writing to) and stored under one id per broadcast and agency, so a
    /// second acknowledgement of the same agency — a retry, or a race — is stored once.
    pub(crate) async fn ack<T>(&self, id: Uuid, cmd: &Command<T>) -> Result<Written, Refusal> {
        let known = self.register.caught_up()?.broadcasts.get(&id).cloned();
        let b = match known {
            Some(b) => b,
            // Issued a moment ago and not folded yet: read it.
            None => self.load(id, &cmd.actor).await?,
        };
        // From a field site: only a broadcast that reached it (its focal point could not
        // have seen any other there; a stolen site login learns nothing from the answer).
        if let Some(site) = cmd.site()
            && !b.reached_sites_of(cmd.actor.scope)
        {
            return Err(Refusal::not_found(format!(
                "no broadcast {id} reached site {site}; acknowledge it where it was received"
            )));
        }
        let agency = cmd.actor.agency.clone().unwrap_or_default();
        let event_id = broadcast::ack_id(id, &agency);
        let stream = bevents::stream_for(id);
        // The same focal point again (a retry, a second click): the first answer.
        if let Some(ack) = b.acks.get(&agency)
            && ack.by == cmd.actor.user
            && let Some(link) = b.chain.iter().find(|l| l.event_id == event_id)
        {
            return Ok(Written {
                stream,
                event_id,
                position: link.position,
                stream_version: b.version,
                duplicate: true,
            });
        }
        let events = broadcast::decide_ack(&b, &cmd.actor)?;
        let events = events
            .iter()
            .map(|e| e.try_to_new_event(event_id, cmd.meta()))
            .collect::<Result<Vec<_>, _>>()?;
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events,
        };
        let ok = self
            .store
            .append_retrying(&request, STORE_DEADLINE)
            .await
            .map_err(|e| match store_refusal(e) {
                // Same id, other content: another focal point of the agency was first.
                r if r.code == RefusalCode::IdReused => {
                    Refusal::conflict(format!("{agency} already acknowledged this broadcast"))
                }
                r => r,
            })?;
        Ok(Written {
            stream,
            event_id,
            position: ok.first_position,
            stream_version: ok.stream_version,
            duplicate: ok.duplicate,
        })
    }

    /// Acknowledgements from agency systems on `vigil.alerts.<agency>.ack`.
    pub(crate) async fn nats_acks(self: Arc<Self>, shutdown: CancellationToken) {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NatsAck {
            broadcast: Uuid,
            by: String,
            #[serde(default)]
            id: Option<Uuid>,
        }
        let mut sub = loop {
            match self
                .client
                .queue_subscribe(events::subjects::ALERT_ACKS, format!("vigil-{SERVICE}"))
                .await
            {
                Ok(s) => break s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot subscribe to acknowledgements; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = sub.next() => match m { Some(m) => m, None => return },
            };
            let Some(reply_to) = msg.reply.clone() else {
                continue;
            };
            let agency = msg.subject.split('.').nth(2).unwrap_or_default().to_owned();
            let outcome = match events::codec::decode_json::<NatsAck>(
                &msg.payload,
                "the acknowledgement",
                4096,
            ) {
                Err(e) => Err(Refusal::invalid(e.to_string())),
                Ok(ack) => match events::validate::id("by", &ack.by) {
                    Err(e) => Err(Refusal::invalid(e.to_string())),
                    Ok(()) => {
                        let cmd = Command {
                            id: ack.id.unwrap_or_else(Uuid::new_v4),
                            actor: Actor {
                                user: ack.by,
                                role: Role::AgencyFocalPoint,
                                scope: None,
                                agency: Some(agency),
                            },
                            source: "nats".to_owned(),
                            correlation_id: None,
                            body: (),
                        };
                        self.ack(ack.broadcast, &cmd).await
                    }
                },
            };
            if let Err(e) = self.client.publish(reply_to, reply(outcome).into()).await {
                tracing::warn!(error = %e, "could not answer an acknowledgement");
            }
        }
    }
}
