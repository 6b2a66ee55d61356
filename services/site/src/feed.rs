//! The centre's feed for field sites (run by `vigil up` beside the relay, NATS user `sites`):
//! each site gets the centre's events of its scope ([`crate::scope`]) and nothing else.
//!
//! # What a site is sent: slices
//! A [`Slice`] says "every event of your scope with a centre position in `(after, upto]` is
//! in `events`, in position order", with the events as the centre recorded them (their centre
//! positions). Two ways to get slices, both only for a site in the centre's sites file and
//! only of its own scope:
//! - **catch-up** (request on `vigil.site.<name>.read`, body [`ReadRequest`] `{"after": P,
//!   "limit": N}`): answered `{"ok": Slice}` with at most N events (≤ [`MAX_READ_LIMIT`],
//!   ≤ about [`MAX_SLICE_BYTES`]) after P, `head` the centre position the feed has classified
//!   up to; a site asks again from `upto` until `upto == head`. One request looks at no more
//!   than [`MAX_SCAN`] centre events (another country's busy log cannot hold it past its
//!   timeout). A site not in the sites file is refused `forbidden`; a store that does not
//!   answer is `unavailable`.
//! - **live** (published on `vigil.site.<name>.events`): for each batch of the centre's log,
//!   one slice per site with the batch's events of its scope, `after` the `upto` of the last
//!   slice sent to that site. A batch with nothing for a site sends it nothing; every
//!   [`HEARTBEAT`] a site that was sent nothing gets an empty slice up to the head. So a site
//!   whose position is at or after a slice's `after` applies it; one before it lost a slice
//!   (a cut link drops core NATS messages) and catches up first.
//!
//! The rule needs the log before each event (a stream's first event, a station's country),
//! so the feed folds the whole log from position 1 into a [`ScopeIndex`] at start (as every
//! consumer does, through `runtime::catchup`), and publishes live only what was committed
//! after the head it found when it started.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::Client;
use bytes::Bytes;
use events::RecordedEvent;
use events::command::Refusal;
use events::validate::Country;
use futures::StreamExt;
use runtime::StoreClient;
use runtime::catchup::{CatchUp, CatchUpConfig};
use runtime::nats_sites;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::scope::ScopeIndex;

/// The most events one catch-up answer holds.
pub const MAX_READ_LIMIT: u32 = 500;
/// An answer or a live message stops taking events past this many bytes (one event over it
/// goes alone).
pub const MAX_SLICE_BYTES: usize = 512 * 1024;
/// The most centre events one catch-up request looks at.
pub const MAX_SCAN: u64 = 20_000;
/// How often a site that was sent nothing gets an empty slice (its position and its link
/// stay current).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long the sites file is trusted before it is read again by the live feed (the
/// catch-up reads it at every request, as the relay does).
const SITES_FRESH: Duration = Duration::from_secs(1);
/// Catch-up requests answered at the same time.
const MAX_IN_FLIGHT: usize = 32;

/// A catch-up request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The centre position the site has everything of its scope up to.
    pub after: u64,
    /// At most this many events (clamped to 1..=[`MAX_READ_LIMIT`]).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    MAX_READ_LIMIT
}

/// Every event of the site's scope with a centre position in `(after, upto]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slice {
    /// Where the slice starts (exclusive).
    pub after: u64,
    /// Where it ends (inclusive).
    pub upto: u64,
    /// How far the centre's feed has classified the log (≥ `upto`).
    pub head: u64,
    /// The events, at their centre positions, in order.
    pub events: Vec<RecordedEvent>,
}

/// Serves the sites their scopes until `shutdown`. `data_dir` is the centre's.
pub async fn run(
    client: Client,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let index = Arc::new(RwLock::new(ScopeIndex::new()));
    let reads = client
        .queue_subscribe(nats_sites::RELAY_READS, "vigil-sites".to_owned())
        .await?;
    let store = StoreClient::new(client.clone(), Duration::from_secs(5));
    // The head when the feed starts: what is at or below it was committed before any site
    // could be following live, so it is learnt, not published.
    let start_head = loop {
        match store.read(1, 1).await {
            Ok((_, head)) => break head,
            Err(e) => {
                tracing::debug!(error = %e, "the feed for sites waits for the store");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    };
    let serving = tokio::spawn(serve_reads(
        store,
        reads,
        index.clone(),
        data_dir.clone(),
        shutdown.clone(),
    ));
    follow(client, index, &data_dir, start_head, shutdown).await;
    let _ = serving.await;
    Ok(())
}

fn lock_read(index: &RwLock<ScopeIndex>) -> std::sync::RwLockReadGuard<'_, ScopeIndex> {
    // The index is only ever extended; a panic while learning leaves it usable.
    index
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sites and their scopes, read again every [`SITES_FRESH`].
struct Sites {
    data_dir: PathBuf,
    read_at: Option<Instant>,
    scopes: BTreeMap<String, Country>,
}

impl Sites {
    fn current(&mut self) -> &BTreeMap<String, Country> {
        if self.read_at.is_none_or(|t| t.elapsed() >= SITES_FRESH) {
            match nats_sites::load(&self.data_dir) {
                Ok(identities) => {
                    self.scopes = identities
                        .sites
                        .into_iter()
                        .filter(|(name, _)| nats_sites::valid_name(name))
                        .map(|(name, id)| (name, id.scope))
                        .collect();
                }
                // The last good list stands; the catch-up refuses while the file is unreadable.
                Err(e) => tracing::warn!(error = %e, "cannot read the sites file"),
            }
            self.read_at = Some(Instant::now());
        }
        &self.scopes
    }
}

/// Where the live feed stands with one site.
struct Sent {
    upto: u64,
    at: Instant,
}

/// `{"after":A,"upto":U,"head":H,"events":[…]}` from events already encoded.
fn slice_json(after: u64, upto: u64, head: u64, events: &[&Bytes]) -> Bytes {
    let mut body =
        format!("{{\"after\":{after},\"upto\":{upto},\"head\":{head},\"events\":").into_bytes();
    events::store_api::push_json_array(&mut body, events);
    body.push(b'}');
    body.into()
}

/// Follows the log: learns every event, and sends each site the live slices of its scope.
async fn follow(
    client: Client,
    index: Arc<RwLock<ScopeIndex>>,
    data_dir: &Path,
    start_head: u64,
    shutdown: CancellationToken,
) {
    let mut log = CatchUp::start(
        client.clone(),
        CatchUpConfig::new("site-feed", 0),
        shutdown.clone(),
    );
    let mut sites = Sites {
        data_dir: data_dir.to_owned(),
        read_at: None,
        scopes: BTreeMap::new(),
    };
    let mut sent: HashMap<String, Sent> = HashMap::new();
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(1000);
    let mut tick = tokio::time::interval(HEARTBEAT / 2);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!("serving field sites the events of their scopes");
    loop {
        batch.clear();
        let got = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = log.recv_many(&mut batch, 1000) => Some(n),
            _ = tick.tick() => None,
        };
        let position = lock_read(&index).position();
        let live = position >= start_head;
        match got {
            Some(0) => return,
            Some(_) => {
                let reaches = {
                    let mut ix = index
                        .write()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    batch
                        .iter()
                        .map(|e| {
                            ix.learn(e);
                            ix.reach(e)
                        })
                        .collect::<Vec<_>>()
                };
                let Some(upto) = batch.last().map(|e| e.position) else {
                    continue;
                };
                if upto <= start_head {
                    continue;
                }
                // Each event is encoded once, whichever sites it goes to.
                let encoded: Vec<Option<Bytes>> = batch
                    .iter()
                    .zip(&reaches)
                    .map(|(e, r)| {
                        (e.position > start_head && *r != crate::scope::Reach::Nowhere)
                            .then(|| serde_json::to_vec(e).ok().map(Bytes::from))
                            .flatten()
                    })
                    .collect();
                let before = position.max(start_head);
                for (name, scope) in sites.current().clone() {
                    let entry = sent.entry(name.clone()).or_insert(Sent {
                        upto: before,
                        at: Instant::now(),
                    });
                    let mine: Vec<(u64, &Bytes)> = batch
                        .iter()
                        .zip(&reaches)
                        .zip(&encoded)
                        .filter_map(|((e, r), b)| {
                            b.as_ref()
                                .filter(|_| r.includes(scope))
                                .map(|b| (e.position, b))
                        })
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    publish(&client, &name, entry, &mine, upto).await;
                }
            }
            None if live => {
                for (name, _) in sites.current().clone() {
                    let entry = sent.entry(name.clone()).or_insert(Sent {
                        upto: position,
                        at: Instant::now(),
                    });
                    if entry.at.elapsed() >= HEARTBEAT {
                        publish(&client, &name, entry, &[], position).await;
                    }
                }
                sent.retain(|name, _| sites.scopes.contains_key(name));
            }
            None => {}
        }
    }
}

/// Sends site `name` the slice `(entry.upto, upto]` holding `events` (cut in several
/// messages over [`MAX_SLICE_BYTES`]); a lost message is repaired by the site's catch-up.
async fn publish(
    client: &Client,
    name: &str,
    entry: &mut Sent,
    events: &[(u64, &Bytes)],
    upto: u64,
) {
    let subject = nats_sites::events_subject(name);
    let mut rest = events;
    loop {
        let mut take = 0;
        let mut bytes = 0;
        while take < rest.len() && (take == 0 || bytes + rest[take].1.len() <= MAX_SLICE_BYTES) {
            bytes += rest[take].1.len();
            take += 1;
        }
        let (now, later) = rest.split_at(take);
        let end = if later.is_empty() {
            upto
        } else {
            now.last().map_or(upto, |(p, _)| *p)
        };
        let body = slice_json(
            entry.upto,
            end,
            upto,
            &now.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
        );
        if let Err(e) = client.publish(subject.clone(), body).await {
            tracing::debug!(site = name, error = %e, "could not publish to a site");
        }
        entry.upto = end;
        entry.at = Instant::now();
        rest = later;
        if rest.is_empty() {
            return;
        }
    }
}

/// Answers the sites' catch-up reads until `shutdown`.
async fn serve_reads(
    store: StoreClient,
    mut reads: async_nats::Subscriber,
    index: Arc<RwLock<ScopeIndex>>,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = reads.next() => m,
        };
        let Some(msg) = msg else { return };
        let Some(reply_to) = msg.reply.clone() else {
            continue;
        };
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (store, index, data_dir) = (store.clone(), index.clone(), data_dir.clone());
        tokio::spawn(async move {
            let answer = read(&store, &index, &data_dir, &msg.subject, &msg.payload).await;
            let body = runtime::commands::reply(answer);
            if let Err(e) = store.nats().publish(reply_to, body.into()).await {
                tracing::debug!(error = %e, "could not answer a site's catch-up read");
            }
            drop(permit);
        });
    }
}

/// One catch-up read: the slice after the site's position, of its scope.
async fn read(
    store: &StoreClient,
    index: &RwLock<ScopeIndex>,
    data_dir: &Path,
    subject: &str,
    payload: &[u8],
) -> Result<Slice, Refusal> {
    let site = nats_sites::parse_read_subject(subject)
        .ok_or_else(|| Refusal::invalid(format!("{subject} is not a site's read subject")))?;
    let identities = nats_sites::load(data_dir).map_err(|e| {
        tracing::error!(error = %e, "cannot read the sites file");
        Refusal::unavailable("the centre cannot read its list of sites now; ask again")
    })?;
    let scope = identities
        .sites
        .get(site)
        .map(|id| id.scope)
        .ok_or_else(|| {
            Refusal::forbidden(format!(
                "site {site} is not known at the centre (revoked?); nothing was read"
            ))
        })?;
    let req: ReadRequest = events::codec::decode_json(payload, "the read request", 4096)
        .map_err(|e| Refusal::invalid(e.to_string()))?;
    let limit = req.limit.clamp(1, MAX_READ_LIMIT) as usize;
    let head = lock_read(index).position();
    let end = req.after.saturating_add(MAX_SCAN).min(head);
    let mut slice = Slice {
        after: req.after,
        upto: req.after,
        head,
        events: Vec::new(),
    };
    let mut bytes = 0;
    while slice.upto < end {
        let (page, _) = store
            .read(slice.upto + 1, events::store_api::MAX_READ_LIMIT)
            .await
            .map_err(|e| Refusal::unavailable(format!("the centre's store did not answer: {e}")))?;
        if page.is_empty() {
            break;
        }
        let ix = lock_read(index);
        let before = slice.upto;
        for e in page {
            if e.position > end || e.position != slice.upto + 1 {
                break;
            }
            slice.upto = e.position;
            if ix.reach(&e).includes(scope) {
                bytes += e.data.to_string().len() + 256;
                slice.events.push(e);
                if slice.events.len() >= limit || bytes >= MAX_SLICE_BYTES {
                    return Ok(slice);
                }
            }
        }
        if slice.upto == before {
            // The store answered from somewhere else (it cannot): answer what was read.
            break;
        }
    }
    Ok(slice)
}
