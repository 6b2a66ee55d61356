//! Readiness of the domain services: every instance answers [`subjects::SERVICE_STATUS`]
//! with whether it can answer every command now, and what it is still loading if not.
//!
//! # Promises
//! - Every instance answers (no queue group), so the asker ([`collect`]) hears each one: a
//!   centre is ready only when every instance of every service is, because NATS hands a
//!   command to any instance of its queue group.
//! - The answer is computed when asked (cheap: atomics), never cached: a register that is
//!   still reading the log after a restart says so, with its position and the head it must
//!   reach ([`ServiceStatus::loading`]).
//! - The gateway asks once per poll for the whole centre, not once per `/readyz`.

use std::time::Duration;

use async_nats::Client;
use events::subjects;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// What one service instance says of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStatus {
    /// The service's name (`incidents`, `relocation`, …).
    pub service: String,
    /// It answers every command now (its registers have read the log as it stood when it
    /// started).
    pub ready: bool,
    /// What it is still loading, when not ready, in words for an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loading: Option<String>,
}

impl ServiceStatus {
    /// A service with nothing to load (no register): ready as soon as it runs.
    pub fn ready(service: &str) -> Self {
        Self {
            service: service.to_owned(),
            ready: true,
            loading: None,
        }
    }

    /// A service still loading `what`.
    pub fn loading(service: &str, what: String) -> Self {
        Self {
            service: service.to_owned(),
            ready: false,
            loading: Some(what),
        }
    }
}

/// Answers [`subjects::SERVICE_STATUS`] for service `service` with `probe()` until `shutdown`.
pub fn serve(
    client: Client,
    service: &'static str,
    probe: impl Fn() -> ServiceStatus + Send + 'static,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut asked = loop {
            match client.subscribe(subjects::SERVICE_STATUS).await {
                Ok(sub) => break sub,
                Err(e) => {
                    tracing::warn!(service, error = %e, "cannot answer status requests yet; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        };
        loop {
            let message = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = asked.next() => match m { Some(m) => m, None => return },
            };
            let Some(reply) = message.reply else { continue };
            match serde_json::to_vec(&probe()) {
                Ok(body) => {
                    let _ = client.publish(reply, body.into()).await;
                }
                Err(e) => tracing::warn!(service, error = %e, "cannot encode the status"),
            }
        }
    })
}

/// Asks every service instance how it stands and collects the answers for `wait`.
pub async fn collect(client: &Client, wait: Duration) -> Result<Vec<ServiceStatus>, String> {
    let inbox = client.new_inbox();
    let mut answers_sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish_with_reply(subjects::SERVICE_STATUS, inbox, "{}".into())
        .await
        .map_err(|e| e.to_string())?;
    client.flush().await.map_err(|e| e.to_string())?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, answers_sub.next()).await {
        match serde_json::from_slice::<ServiceStatus>(&message.payload) {
            Ok(status) => answers.push(status),
            Err(e) => {
                tracing::warn!(error = %e, "an answer on vigil.status that is not a ServiceStatus; ignored")
            }
        }
    }
    Ok(answers)
}

/// What the answers say of the centre, given the services it must have: the ones not ready,
/// each with why (no instance answered, or what one is still loading). Empty: all ready.
pub fn waiting_for(expected: &[&str], answers: &[ServiceStatus]) -> Vec<(String, String)> {
    let mut waiting = Vec::new();
    for service in expected {
        let mine: Vec<&ServiceStatus> = answers.iter().filter(|a| a.service == *service).collect();
        if mine.is_empty() {
            waiting.push((service.to_string(), "no instance answered".to_owned()));
        } else if let Some(busy) = mine.iter().find(|a| !a.ready) {
            let why = busy
                .loading
                .clone()
                .unwrap_or_else(|| "not ready".to_owned());
            waiting.push((service.to_string(), why));
        }
    }
    waiting
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_centre_waits_for_every_instance_of_every_service() {
        let expected = ["incidents", "relocation", "levels"];
        let answers = vec![
            ServiceStatus::ready("incidents"),
            ServiceStatus::ready("relocation"),
            ServiceStatus::loading("relocation", "its register (at position 3 of 9)".into()),
        ];
        assert_eq!(
            waiting_for(&expected, &answers),
            vec![
                (
                    "relocation".to_owned(),
                    "its register (at position 3 of 9)".to_owned()
                ),
                ("levels".to_owned(), "no instance answered".to_owned()),
            ]
        );
        let all = vec![
            ServiceStatus::ready("incidents"),
            ServiceStatus::ready("relocation"),
            ServiceStatus::ready("levels"),
        ];
        assert!(waiting_for(&expected, &all).is_empty());
    }
}
