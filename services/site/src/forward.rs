//! The forwarder of `vigil site`: empties the outbox into the centre, in the site's order,
//! each item carried out there once (by its command id), a refusal recorded, nothing dropped.
//!
//! # How
//! The next items ([`BATCH_ITEMS`] at most, [`BATCH_BYTES`] of payload at most) go as one
//! request on `vigil.site.<name>.batch` through the leaf link to the centre's relay
//! (`crate::relay`), which carries them out in order (a run of reports as one batch at the
//! incidents service, one fsync for many) and answers one answer per item it tried, in
//! order. The forwarder records the final answers (`ok` or a refusal) in
//! order, and sends the next batch from the first item without one. Only one batch is in
//! flight: the next one leaves after this one's answer, so a site's items reach the services
//! in its order (why that holds across several relays: `crate::relay`, "Order across
//! relays").
//!
//! No answer, no route (the link is down), `unavailable` or an unreadable answer sends the
//! same items again after a backoff (250 ms doubling to 5 s, ±20 %); when the link was down,
//! sooner, as soon as a ping to the relay (every 250 ms while it waits) is answered, so
//! what waits leaves within 250 ms of the link carrying again. The centre carries out a
//! command once per id, so a resend after a lost answer is answered `duplicate: true` and
//! changes nothing. A batch the relay cut short (its time budget) goes on at once. When the
//! outbox is empty the forwarder pings the relay every 2 s, so the link state stays current.
//!
//! One item per request (as in the first slice) cost a round trip over the link and a
//! record at the site per item; a batch pays them once for up to [`BATCH_ITEMS`] items (see
//! docs/BENCHMARKS.md, "Field sites": `ops/bench site`).

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use runtime::nats_sites;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::outbox::{Item, Outcome, classify};
use crate::relay::{Forward, MAX_BATCH};
use crate::server::Site;

/// How long the forwarder waits for the centre's answer to one batch (the relay answers
/// within `crate::relay::BATCH_BUDGET` + `crate::relay::SERVICE_TIMEOUT`).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(15);
/// The most items in one batch (the relay takes no more).
pub const BATCH_ITEMS: usize = MAX_BATCH;
/// The most payload bytes in one batch once it holds an item (the centre's nats-server takes
/// messages of 1 MiB; one command is at most 64 KiB).
pub const BATCH_BYTES: usize = 512 * 1024;
/// The first and the longest wait before items are sent again.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How often an idle forwarder asks the relay whether the link is up.
const PING_EVERY: Duration = Duration::from_secs(2);
/// How often a forwarder waiting to send again asks whether the link carries again.
const LINK_POLL: Duration = Duration::from_millis(250);

/// Forwards the outbox to the centre, oldest first, until `shutdown`.
pub(crate) async fn run(client: Client, site: Arc<Site>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        let batch = site.outbox().batch(BATCH_ITEMS, BATCH_BYTES);
        if batch.is_empty() {
            ping(&client, &site).await;
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = site.wake.notified() => {}
                _ = tokio::time::sleep(PING_EVERY) => {}
            }
            continue;
        }
        let outcomes = send(&client, &site, &batch).await;
        let finals: Vec<(u64, Outcome)> = batch
            .iter()
            .zip(outcomes.iter())
            .take_while(|(_, o)| o.is_final())
            .map(|(item, o)| (item.position, o.clone()))
            .collect();
        let all_final = finals.len() == outcomes.len();
        if let Some(Outcome::Retry(why)) = outcomes.get(finals.len()) {
            tracing::debug!(position = batch[finals.len()].position, %why, "will send again");
        }
        let progress = !finals.is_empty();
        // Answers that could not be recorded are asked for again: the centre answers a
        // command it carried out with the original outcome.
        let recorded = !progress || record(&site, finals).await;
        if recorded && all_final {
            backoff = BACKOFF_MIN;
            continue;
        }
        if progress && recorded {
            backoff = BACKOFF_MIN;
        }
        let jitter = rand::random_range(0.8..1.2);
        if !wait_for_link(&client, &site, backoff.mul_f64(jitter), &shutdown).await {
            return;
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Waits `backoff` before items are sent again. When the last batch found the link down, no
/// longer than the link takes to carry again: every [`LINK_POLL`] it pings the relay (a ping
/// through a link that is down fails at once with no responders), so a site whose link
/// returns sends what waits within [`LINK_POLL`] of it, not after its longest backoff. When
/// the centre did answer (`unavailable`, say), the whole backoff: thousands of sites must
/// not press a centre that is struggling. `false` when asked to stop.
async fn wait_for_link(
    client: &Client,
    site: &Site,
    backoff: Duration,
    shutdown: &CancellationToken,
) -> bool {
    let until = tokio::time::Instant::now() + backoff;
    if site.link().up {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(until) => return true,
        }
    }
    loop {
        let next = (tokio::time::Instant::now() + LINK_POLL).min(until);
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep_until(next) => {}
        }
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        let answered = tokio::time::timeout(
            left.min(LINK_POLL),
            client.request(nats_sites::ping_subject(&site.name), Bytes::new()),
        )
        .await;
        if let Ok(Ok(msg)) = answered
            && matches!(classify(&msg.payload), Outcome::Done(_))
        {
            site.link().set(true, None);
            return true;
        }
    }
}

/// Sends `batch` to the relay: one outcome per item the relay tried, in order (a single
/// `Retry` when the batch got no usable answer).
async fn send(client: &Client, site: &Site, batch: &[Item]) -> Vec<Outcome> {
    let forwards: Vec<Forward> = batch
        .iter()
        .map(|item| Forward {
            service: item.service.clone(),
            command: item.command.clone(),
            payload: item.payload.clone(),
        })
        .collect();
    let body: Bytes = serde_json::to_vec(&forwards).unwrap_or_default().into();
    let subject = nats_sites::batch_subject(&site.name);
    // The client's default (10 s) is shorter than a batch may take at the relay.
    let request = async_nats::Request::new()
        .payload(body)
        .timeout(Some(FORWARD_TIMEOUT));
    let sent = tokio::time::timeout(
        FORWARD_TIMEOUT + Duration::from_secs(1),
        client.send_request(subject, request),
    )
    .await;
    match sent {
        Ok(Ok(msg)) => {
            site.link().set(true, None);
            answers(&msg.payload)
        }
        Ok(Err(e)) => {
            site.link()
                .set(false, Some(format!("the centre is not reachable: {e}")));
            vec![Outcome::Retry(e.to_string())]
        }
        Err(_) => {
            site.link().set(
                false,
                Some(format!(
                    "no answer from the centre within {} s",
                    FORWARD_TIMEOUT.as_secs()
                )),
            );
            vec![Outcome::Retry("timeout".to_owned())]
        }
    }
}

/// Reads the relay's answer to a batch (`{"ok": {"answers": [...]}}`).
fn answers(reply: &[u8]) -> Vec<Outcome> {
    match classify(reply) {
        Outcome::Done(v) => match v.get("answers").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|a| classify(&serde_json::to_vec(a).unwrap_or_default()))
                .collect(),
            _ => vec![Outcome::Retry(format!(
                "the centre answered the batch without answers: {v}"
            ))],
        },
        // The whole batch refused (unreadable to the relay): never a reason to drop items.
        Outcome::Refused(r) => vec![Outcome::Retry(format!(
            "the centre refused the batch: {}",
            r.message
        ))],
        retry => vec![retry],
    }
}

/// Records final answers, in order; false when they could not all be recorded.
async fn record(site: &Arc<Site>, finals: Vec<(u64, Outcome)>) -> bool {
    let worker = site.clone();
    let settled = tokio::task::spawn_blocking(move || {
        let mut outbox = worker.outbox();
        let mut done = (0u64, 0u64);
        for (position, outcome) in &finals {
            if !outbox.settle(*position, outcome)? {
                anyhow::bail!("item {position} is not the head of the outbox");
            }
            match outcome {
                Outcome::Refused(_) => done.1 += 1,
                _ => done.0 += 1,
            }
        }
        Ok(done)
    })
    .await;
    let (forwarded, refused, ok) = match settled {
        Ok(Ok((f, r))) => (f, r, true),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot record the centre's answers");
            (0, 0, false)
        }
        Err(e) => {
            tracing::error!(error = %e, "the outbox failed");
            (0, 0, false)
        }
    };
    metrics::counter!("vigil_site_settled_total", "outcome" => "forwarded").increment(forwarded);
    metrics::counter!("vigil_site_settled_total", "outcome" => "refused").increment(refused);
    site.publish_counts();
    ok
}

/// Asks the relay whether the centre knows this site; updates the link.
async fn ping(client: &Client, site: &Site) {
    let sent = tokio::time::timeout(
        Duration::from_secs(3),
        client.request(nats_sites::ping_subject(&site.name), Bytes::new()),
    )
    .await;
    let (up, error) = match sent {
        Ok(Ok(msg)) => match classify(&msg.payload) {
            Outcome::Done(_) => (true, None),
            Outcome::Refused(r) => (
                false,
                Some(format!("the centre refuses this site: {}", r.message)),
            ),
            Outcome::Retry(why) => (false, Some(why)),
        },
        Ok(Err(e)) => (false, Some(format!("the centre is not reachable: {e}"))),
        Err(_) => (false, Some("no answer from the centre".to_owned())),
    };
    site.link().set(up, error);
}
