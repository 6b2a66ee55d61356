//! The site's mirror of the centre's events for its scope: it follows the centre's feed for
//! sites (`crate::feed`) through the leaf link into [`MirrorLog`], and serves the store's
//! read API from it on the site's own bus, so an unmodified `runtime::catchup` subscription
//! (a gateway folding the site's board) sees a normal gap-free log of the scope.
//!
//! # Following
//! Subscribe to `vigil.site.<name>.events` first, then catch up with requests on
//! `vigil.site.<name>.read` from the centre position the mirror covers until the answer
//! reaches the feed's head; then apply each live slice whose `after` is at or before the
//! covered position (only the events after the last one held are added). A slice that starts
//! later means slices were lost (a cut link drops them): catch up first. No slice for
//! [`QUIET`] (the centre sends an empty one every 5 s): catch up, which also finds a link
//! that came back. A failed catch-up is retried with backoff (250 ms doubling to 5 s); the
//! mirror keeps serving what it holds meanwhile.
//!
//! # On the site's bus (the store's subjects and wire format, read-only)
//! - `vigil.store.read` `{"from", "limit"}` → `{"events": [...], "head": n}`, the events at
//!   their local positions 1..n;
//! - `vigil.store.stream` `{"stream", "from_version", "limit"}` → `{"events", "version"}`
//!   (the centre's stream versions; a stream holds what its scope reached);
//! - `vigil.store.status` → `{"node": "site:<name>", "role": "mirror", "head": n,
//!   "journal_seq": <the centre position covered>}`;
//! - `vigil.events.committed`: each applied slice's new events, headers
//!   `Vigil-First-Position` and `Vigil-Count`, as the store publishes them;
//! - `vigil.store.append.>`: refused `forbidden` (a site writes through its outbox).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::{Client, HeaderMap};
use bytes::Bytes;
use events::store_api::{AppendReply, ReadRequest, StoreError, StoreStatus, StreamReadRequest};
use events::subjects;
use futures::StreamExt;
use runtime::nats_sites;
use tokio_util::sync::CancellationToken;

use crate::feed::Slice;
use crate::mirror_log::{Appended, MirrorLog};

/// No live slice for this long: ask the centre (its feed sends one every 5 s).
pub const QUIET: Duration = Duration::from_secs(12);
/// How long one catch-up request may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A read answer stops taking events past this many bytes (the site's server takes 4 MB).
const MAX_REPLY_BYTES: usize = 1024 * 1024;
/// Events per catch-up request.
const CATCH_UP_LIMIT: u32 = 500;

/// The mirror shared by the follower and the readers. A std mutex: held only for in-memory
/// work or one fjall batch, never across an await.
pub struct Mirror {
    site: String,
    log: Mutex<MirrorLog>,
}

impl Mirror {
    /// The mirror of site `site`, on `log`.
    pub fn new(site: &str, log: MirrorLog) -> Arc<Self> {
        Arc::new(Self {
            site: site.to_owned(),
            log: Mutex::new(log),
        })
    }

    fn log(&self) -> std::sync::MutexGuard<'_, MirrorLog> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// (local head, centre position covered).
    pub fn positions(&self) -> (u64, u64) {
        let log = self.log();
        (log.head(), log.covered())
    }
}

/// Follows the centre and serves the mirror on `client` (the site's bus) until `shutdown`.
pub async fn run(client: Client, mirror: Arc<Mirror>, shutdown: CancellationToken) {
    let serving = tokio::spawn(serve(client.clone(), mirror.clone(), shutdown.clone()));
    follow(&client, &mirror, &shutdown).await;
    let _ = serving.await;
}

/// Applies a slice and publishes what it added on the site's feed.
async fn apply(client: &Client, mirror: &Arc<Mirror>, slice: Slice) -> Result<bool, ()> {
    let m = mirror.clone();
    let done =
        tokio::task::spawn_blocking(move || m.log().apply(slice.after, slice.upto, &slice.events))
            .await;
    let appended = match done {
        Ok(Ok(Some(a))) => a,
        Ok(Ok(None)) => return Ok(false),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot write the mirror; reading the centre again");
            return Err(());
        }
        Err(e) => {
            tracing::error!(error = %e, "the mirror failed");
            return Err(());
        }
    };
    publish(client, &appended).await;
    Ok(true)
}

/// The added events on the site's `vigil.events.committed`, cut under [`MAX_REPLY_BYTES`].
async fn publish(client: &Client, appended: &Appended) {
    let mut first = appended.first;
    for chunk in chunks(&appended.events, MAX_REPLY_BYTES) {
        let mut headers = HeaderMap::new();
        headers.insert(subjects::FIRST_POSITION_HEADER, first.to_string().as_str());
        headers.insert(subjects::COUNT_HEADER, chunk.len().to_string().as_str());
        let body = array(chunk);
        if let Err(e) = client
            .publish_with_headers(subjects::EVENTS, headers, body)
            .await
        {
            // A consumer that misses it reads the mirror (runtime::catchup's quiet poll).
            tracing::debug!(error = %e, "could not publish on the site's feed");
        }
        first += chunk.len() as u64;
    }
    metrics::counter!("vigil_site_mirror_events_total").increment(appended.events.len() as u64);
}

/// `events` cut into runs of about `max_bytes` (at least one each).
fn chunks(events: &[Bytes], max_bytes: usize) -> Vec<&[Bytes]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in events.iter().enumerate() {
        if i > start && bytes + e.len() > max_bytes {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += e.len() + 1;
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

fn array(events: &[Bytes]) -> Bytes {
    let mut body = Vec::new();
    events::store_api::push_json_array(&mut body, events);
    body.into()
}

/// Reads the centre from the covered position until the answer reaches the feed's head.
/// Retries with backoff until it succeeds or `shutdown`; false on shutdown.
async fn catch_up(client: &Client, mirror: &Arc<Mirror>, shutdown: &CancellationToken) -> bool {
    let subject = nats_sites::read_subject(&mirror.site);
    let mut backoff = Duration::from_millis(250);
    loop {
        let after = mirror.positions().1;
        let body = events::codec::encode(&crate::feed::ReadRequest {
            after,
            limit: CATCH_UP_LIMIT,
        });
        let asked = tokio::select! {
            _ = shutdown.cancelled() => return false,
            r = tokio::time::timeout(READ_TIMEOUT, client.request(subject.clone(), body.into())) => r,
        };
        let answer = match asked {
            Ok(Ok(msg)) => read_answer(&msg.payload),
            Ok(Err(e)) => Err(format!("the centre is not reachable: {e}")),
            Err(_) => Err("no answer from the centre".to_owned()),
        };
        match answer {
            Ok(slice) => {
                let done = slice.upto >= slice.head;
                if apply(client, mirror, slice).await.is_ok() {
                    backoff = Duration::from_millis(250);
                    if done {
                        return true;
                    }
                    continue;
                }
            }
            Err(why) => tracing::debug!(%why, "cannot catch the mirror up yet"),
        }
        let jitter = rand::random_range(0.8..1.2);
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff.mul_f64(jitter)) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// A catch-up answer: `{"ok": Slice}` or a refusal.
fn read_answer(payload: &[u8]) -> Result<Slice, String> {
    use events::command::Reply;
    match serde_json::from_slice::<Reply<Slice>>(payload) {
        Ok(Reply::Ok(slice)) => Ok(slice),
        Ok(Reply::Error(r)) => Err(format!("the centre refused: {}", r.message)),
        Err(e) => Err(format!("unreadable answer from the centre: {e}")),
    }
}

async fn follow(client: &Client, mirror: &Arc<Mirror>, shutdown: &CancellationToken) {
    let subject = nats_sites::events_subject(&mirror.site);
    loop {
        let mut live = match client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot subscribe to the centre's feed; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
                continue;
            }
        };
        if !catch_up(client, mirror, shutdown).await {
            return;
        }
        let (head, covered) = mirror.positions();
        tracing::info!(
            head,
            covered,
            "the mirror caught up with the centre; following"
        );
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                m = tokio::time::timeout(QUIET, live.next()) => m,
            };
            let slice = match next {
                Err(_) => {
                    if !catch_up(client, mirror, shutdown).await {
                        return;
                    }
                    continue;
                }
                Ok(None) => break,
                Ok(Some(msg)) => match serde_json::from_slice::<Slice>(&msg.payload) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring an unreadable message on the centre's feed");
                        continue;
                    }
                },
            };
            match apply(client, mirror, slice).await {
                Ok(true) => {}
                // Slices were lost, or the write failed: read the centre.
                Ok(false) | Err(()) => {
                    metrics::counter!("vigil_site_mirror_gaps_total").increment(1);
                    tracing::info!(
                        covered = mirror.positions().1,
                        "slices of the centre's feed were lost (a cut link?); catching up"
                    );
                    if !catch_up(client, mirror, shutdown).await {
                        return;
                    }
                }
            }
        }
    }
}

/// Serves the store's read subjects from the mirror, and refuses appends, until `shutdown`.
async fn serve(
    client: Client,
    mirror: Arc<Mirror>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let queue = || subjects::STORE_QUEUE.to_owned();
    let mut reads = client
        .queue_subscribe(subjects::STORE_READ, queue())
        .await?;
    let mut streams = client
        .queue_subscribe(subjects::STORE_STREAM, queue())
        .await?;
    let mut statuses = client.subscribe(subjects::STORE_STATUS).await?;
    let mut appends = client
        .subscribe(format!("{}.>", subjects::STORE_APPEND))
        .await?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = reads.next() => m,
            m = streams.next() => m,
            m = statuses.next() => m,
            m = appends.next() => m,
        };
        let Some(msg) = msg else { return Ok(()) };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let (client, mirror) = (client.clone(), mirror.clone());
        tokio::spawn(async move {
            let subject = msg.subject.to_string();
            let body = tokio::task::spawn_blocking(move || answer(&mirror, &subject, &msg.payload))
                .await
                .unwrap_or_else(|e| {
                    error(StoreError::unavailable(format!("the read failed: {e}")))
                });
            if let Err(e) = client.publish(reply_to, body).await {
                tracing::debug!(error = %e, "could not answer a read on the site's bus");
            }
        });
    }
}

fn error(e: StoreError) -> Bytes {
    events::codec::encode(&serde_json::json!({ "error": e })).into()
}

/// `{"events":[…],"<key>":n}`, as the store answers.
fn page(events: &[Bytes], key: &str, n: u64) -> Bytes {
    let mut body = b"{\"events\":".to_vec();
    body.extend_from_slice(&array(events));
    body.extend_from_slice(format!(",\"{key}\":{n}}}").as_bytes());
    body.into()
}

/// The answer to one request on the store's subjects.
fn answer(mirror: &Mirror, subject: &str, payload: &[u8]) -> Bytes {
    const MAX_REQUEST: usize = 64 * 1024;
    let limit = |l: u32| l.clamp(1, events::store_api::MAX_READ_LIMIT) as usize;
    let failed = |e: anyhow::Error| {
        tracing::error!(error = %e, "cannot read the mirror");
        error(StoreError::unavailable(format!(
            "the site cannot read its mirror: {e}"
        )))
    };
    if subject == subjects::STORE_READ {
        let req: ReadRequest =
            match events::codec::decode_json(payload, "the read request", MAX_REQUEST) {
                Ok(r) => r,
                Err(e) => return error(e.into()),
            };
        let log = mirror.log();
        return match log.read(req.from, limit(req.limit), MAX_REPLY_BYTES) {
            Ok(events) => page(&events, "head", log.head()),
            Err(e) => failed(e),
        };
    }
    if subject == subjects::STORE_STREAM {
        let req: StreamReadRequest =
            match events::codec::decode_json(payload, "the stream read request", MAX_REQUEST) {
                Ok(r) => r,
                Err(e) => return error(e.into()),
            };
        return match mirror.log().read_stream(
            req.stream.as_str(),
            req.from_version,
            limit(req.limit),
            MAX_REPLY_BYTES,
        ) {
            Ok((events, version)) => page(&events, "version", version),
            Err(e) => failed(e),
        };
    }
    if subject == subjects::STORE_STATUS {
        let (head, covered) = mirror.positions();
        return events::codec::encode(&StoreStatus {
            node: format!("site:{}", mirror.site),
            role: "mirror".to_owned(),
            head,
            journal_seq: covered,
            leader_since: None,
        })
        .into();
    }
    events::codec::encode(&AppendReply::Error(StoreError::forbidden(
        "this is a field site's read-only mirror of the centre's events for its scope; \
         nothing is appended here: submit commands on vigil.local.submit.<service>.<command>",
    )))
    .into()
}
