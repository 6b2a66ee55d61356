//! Connecting to NATS.
//!
//! Services reconnect forever (NATS restarts must not take the centre down; the catch-up
//! subscription repairs what was missed). Operator tools fail fast with a message that says
//! what to check.
//!
//! A URL may be a comma-separated list (`nats://a:4290,nats://b:4290`, a node of a cluster and
//! its peers): the client tries them in the order given, its own node first, and moves to
//! another when its server goes away (it also learns the cluster's other servers from INFO).

use std::time::Duration;

use async_nats::{Client, ConnectErrorKind, ConnectOptions, Event};

/// How hard to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A long-running service: wait for the server at start and reconnect for ever.
    Service,
    /// A command-line tool: one attempt, then a clear error.
    Tool,
}

/// Largest subscription buffer per subscriber, in messages; when it overflows async-nats
/// drops messages (a slow consumer), which the catch-up subscription repairs from the log.
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// Connects to `url` as `name`. `url` may list several servers of one cluster, separated by
/// commas (`nats://a:4222,nats://b:4222`): the client picks one and moves to another when it
/// is lost. `credentials` are a user and password when the server requires them.
pub async fn connect(
    url: &str,
    name: &str,
    credentials: Option<(String, String)>,
    mode: Mode,
) -> anyhow::Result<Client> {
    let conn_name = name.to_owned();
    let quiet = mode == Mode::Tool;
    let mut opts = ConnectOptions::new()
        .name(name)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .event_callback(move |event| {
            let conn_name = conn_name.clone();
            let quiet = quiet;
            async move {
                match event {
                    Event::Connected if quiet => tracing::debug!(conn = %conn_name, "NATS connected"),
                    Event::Connected => tracing::info!(conn = %conn_name, "NATS connected"),
                    Event::Disconnected => tracing::warn!(conn = %conn_name, "NATS disconnected; reconnecting"),
                    Event::SlowConsumer(sid) => tracing::warn!(conn = %conn_name, sid, "NATS slow consumer: messages dropped, consumers will re-read the log"),
                    // Permissions violations land here: the server refused a publish or a
                    // subscription this user is not allowed.
                    Event::ServerError(e) => tracing::warn!(conn = %conn_name, error = %e, "NATS server error"),
                    other => tracing::debug!(conn = %conn_name, event = %other, "NATS event"),
                }
            }
        });
    let as_user = match &credentials {
        Some((user, _)) => format!("as NATS user `{user}`"),
        None => "without NATS credentials".to_owned(),
    };
    if let Some((user, pass)) = credentials {
        // Replies come to this user's own inbox, the only one its permissions let it read.
        opts = opts
            .custom_inbox_prefix(crate::nats_auth::inbox_prefix(&user))
            .user_and_password(user, pass);
    }
    let urls = server_list(url);
    if urls.len() > 1 {
        // Its own node first: the others are for when that one is gone.
        opts = opts.retain_servers_order();
    }
    match mode {
        Mode::Service => {
            opts = opts.retry_on_initial_connect().max_reconnects(None);
            Ok(opts.connect(urls).await?)
        }
        Mode::Tool => opts
            .max_reconnects(Some(3))
            .connect(urls)
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::AuthorizationViolation => anyhow::anyhow!(
                    "NATS at {url} refused the connection {as_user} (authorization violation). Pass --data-dir (the data directory of `vigil up`, whose secrets/nats-users.json holds the credentials) or --nats-user/--nats-password (VIGIL_NATS_USER/VIGIL_NATS_PASSWORD)"
                ),
                _ => anyhow::anyhow!(
                    "cannot reach NATS at {url}: {e}. Is Vigil running (`vigil up`)? Pass --nats-url or set VIGIL_NATS_URL if it listens elsewhere"
                ),
            }),
    }
}

/// The servers of a (possibly comma-separated) URL, blanks left out.
fn server_list(url: &str) -> Vec<String> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_list_is_split_in_order() {
        assert_eq!(server_list("nats://a:1"), vec!["nats://a:1"]);
        assert_eq!(
            server_list("nats://a:1, nats://b:2,,nats://c:3"),
            vec!["nats://a:1", "nats://b:2", "nats://c:3"]
        );
    }
}
