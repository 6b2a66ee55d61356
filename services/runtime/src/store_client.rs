//! The typed client of the store's NATS API.
//!
//! [`StoreClient::append`] makes one attempt. [`StoreClient::append_retrying`] retries
//! timeouts, lost connections and `unavailable` with the same request, which is safe because
//! event ids are idempotency keys: a retry of an append that did land returns its original
//! positions and stores nothing new.
//!
//! An append goes to `vigil.store.append.<user>.<category>` (see
//! [`events::subjects::append_subject`]): `<user>` is the NATS user the client logged in as,
//! which [`crate::nats::connect`] also made its inbox prefix (`_INBOX_<user>`), so the client
//! reads it from there ([`appender_of`]); a client connected without credentials appends as
//! [`ANONYMOUS`]. The nats-server of `vigil up` lets each user publish only on its own token.

use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use events::codec;
use events::store_api::{
    AppendOk, AppendReply, ErrorCode, ReadRequest, StoreError, StoreStatus, StreamReadReply,
    StreamReadRequest,
};
use events::{AppendRequest, RecordedEvent, StreamName, subjects};
use futures::StreamExt;
use serde::Deserialize;

use crate::stream_cache::{History, StreamCache};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The store answered with a typed refusal.
    #[error("store refused: {0}")]
    Store(#[from] StoreError),
    /// No answer (store down, NATS down, timeout). The outcome of an append is unknown:
    /// retry it with the same ids.
    #[error("no answer from the store: {0}")]
    Transport(String),
    /// The answer was not the expected shape (version skew between client and store).
    #[error("unreadable answer from the store: {0}")]
    Decode(String),
}

impl ClientError {
    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) => true,
            Self::Store(e) => e.code == ErrorCode::Unavailable,
            Self::Decode(_) => false,
        }
    }
}

/// An append's outcome from the store's answer.
fn append_answer(payload: &[u8]) -> Result<AppendOk, ClientError> {
    match serde_json::from_slice::<AppendReply>(payload) {
        Ok(AppendReply::Ok(ok)) => Ok(ok),
        Ok(AppendReply::Error(e)) => Err(ClientError::Store(e)),
        Err(e) => Err(ClientError::Decode(e.to_string())),
    }
}

/// The user token of a client that logged in without credentials (only a nats-server without
/// Vigil's users lets it in).
pub const ANONYMOUS: &str = "anonymous";

/// The NATS user `client` appends as: the `<user>` of its inbox prefix `_INBOX_<user>`, which
/// [`crate::nats::connect`] sets from the credentials it logs in with, else [`ANONYMOUS`].
pub fn appender_of(client: &Client) -> String {
    let inbox = client.new_inbox();
    inbox
        .strip_prefix(&crate::nats_auth::inbox_prefix(""))
        .and_then(|rest| rest.split_once('.'))
        .map(|(user, _)| user)
        .filter(|user| !user.is_empty())
        .unwrap_or(ANONYMOUS)
        .to_owned()
}

/// A handle on the store's API; cheap to clone (clones share the cache of long streams).
#[derive(Clone)]
pub struct StoreClient {
    client: Client,
    timeout: Duration,
    /// The `<user>` of the append subjects: see [`appender_of`].
    appender: String,
    /// Long streams read by [`StoreClient::read_history`].
    histories: Arc<StreamCache>,
}

impl StoreClient {
    /// A client whose calls give up after `timeout`; it appends as the NATS user `client`
    /// logged in as ([`appender_of`]).
    pub fn new(client: Client, timeout: Duration) -> Self {
        let appender = appender_of(&client);
        Self {
            client,
            timeout,
            appender,
            histories: Arc::new(StreamCache::default()),
        }
    }

    /// Every event of `stream` and its version (0: no such stream), as
    /// [`Self::read_whole_stream`] with one try, through this client's cache of long streams
    /// ([`crate::stream_cache`]): a long stream read again costs the events after the last
    /// one read.
    pub async fn read_history(&self, stream: &StreamName) -> Result<(History, u64), ClientError> {
        self.histories.read(self, stream).await
    }

    /// The NATS client underneath.
    pub fn nats(&self) -> &Client {
        &self.client
    }

    /// The user token this client appends with.
    pub fn appender(&self) -> &str {
        &self.appender
    }

    async fn call(&self, subject: String, body: Vec<u8>) -> Result<bytes::Bytes, ClientError> {
        let request = self.client.request(subject, body.into());
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(msg)) => Ok(msg.payload),
            Ok(Err(e)) => Err(ClientError::Transport(e.to_string())),
            Err(_) => Err(ClientError::Transport(format!(
                "timed out after {:?}",
                self.timeout
            ))),
        }
    }

    /// The subject `req` is appended on.
    fn append_subject_of(&self, req: &AppendRequest) -> Result<String, ClientError> {
        subjects::append_subject(&self.appender, req.stream.category()).ok_or_else(|| {
            ClientError::Store(StoreError::invalid(format!(
                "the NATS user {:?} cannot name an append subject",
                self.appender
            )))
        })
    }

    /// Appends once.
    pub async fn append(&self, req: &AppendRequest) -> Result<AppendOk, ClientError> {
        let subject = self.append_subject_of(req)?;
        let payload = self.call(subject, codec::encode(req)).await?;
        append_answer(&payload)
    }

    /// Sends every append of `reqs` at once, one behind the other in this order on this
    /// client's connection, and gives one outcome per request, in the same order (no answer
    /// within the client's timeout: `Transport`, outcome unknown). The store judges appends in
    /// the order they reach it, so these usually share one commit group (one fsync for all);
    /// what keeps them in order when one of them is refused or lost on the way is the chain
    /// of their `after`s ([`AppendRequest::after`]), not the sending.
    pub async fn append_in_order(
        &self,
        reqs: &[AppendRequest],
    ) -> Vec<Result<AppendOk, ClientError>> {
        if reqs.is_empty() {
            return Vec::new();
        }
        let mut outcomes: Vec<Option<Result<AppendOk, ClientError>>> =
            reqs.iter().map(|_| None).collect();
        let inbox = self.client.new_inbox();
        let mut answers = match self.client.subscribe(format!("{inbox}.*")).await {
            Ok(sub) => sub,
            Err(e) => {
                return reqs
                    .iter()
                    .map(|_| Err(ClientError::Transport(e.to_string())))
                    .collect();
            }
        };
        let mut waiting = 0usize;
        for (i, req) in reqs.iter().enumerate() {
            let sent = match self.append_subject_of(req) {
                Ok(subject) => self
                    .client
                    .publish_with_reply(subject, format!("{inbox}.{i}"), codec::encode(req).into())
                    .await
                    .map_err(|e| ClientError::Transport(e.to_string())),
                Err(e) => Err(e),
            };
            match sent {
                Ok(()) => waiting += 1,
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        while waiting > 0 {
            let Ok(Some(msg)) = tokio::time::timeout_at(deadline, answers.next()).await else {
                break;
            };
            let Some(i) = msg
                .subject
                .rsplit('.')
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .filter(|i| *i < reqs.len())
            else {
                continue;
            };
            if outcomes[i].is_some() {
                continue;
            }
            outcomes[i] = Some(
                if msg.status == Some(async_nats::StatusCode::NO_RESPONDERS) {
                    Err(ClientError::Transport("no responders".to_owned()))
                } else {
                    append_answer(&msg.payload)
                },
            );
            waiting -= 1;
        }
        let _ = answers.unsubscribe().await;
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| {
                    Err(ClientError::Transport(format!(
                        "no answer within {:?}",
                        self.timeout
                    )))
                })
            })
            .collect()
    }

    /// Appends, retrying what is retryable with backoff until `deadline` has passed.
    pub async fn append_retrying(
        &self,
        req: &AppendRequest,
        deadline: Duration,
    ) -> Result<AppendOk, ClientError> {
        retrying(deadline, || self.append(req)).await
    }

    /// Reads a page of the global log from `from`; returns the events and the durable head.
    pub async fn read(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<RecordedEvent>, u64), ClientError> {
        self.read_as(from, limit).await
    }

    /// [`Self::read`], each event read as a `T`: a `RecordedEvent`, or a `TypedRecorded` for a
    /// fold that reads each event straight into its typed domain event.
    pub async fn read_as<T: for<'de> Deserialize<'de>>(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<T>, u64), ClientError> {
        let payload = self
            .call(
                subjects::STORE_READ.to_owned(),
                codec::encode(&ReadRequest { from, limit }),
            )
            .await?;
        read_page(&payload)
    }

    /// [`Self::read_stream`], retrying what is retryable (a store still starting, a moment
    /// without NATS) with backoff until `deadline` has passed.
    pub async fn read_stream_retrying(
        &self,
        stream: &StreamName,
        from_version: u64,
        limit: u32,
        deadline: Duration,
    ) -> Result<(Vec<RecordedEvent>, u64), ClientError> {
        retrying(deadline, || self.read_stream(stream, from_version, limit)).await
    }

    /// Every event of `stream` and its version (0: no such stream), page by page; each page
    /// is retried as [`Self::read_stream_retrying`] does until `deadline` (zero: one try).
    pub async fn read_whole_stream(
        &self,
        stream: &StreamName,
        deadline: Duration,
    ) -> Result<(Vec<RecordedEvent>, u64), ClientError> {
        self.read_stream_from(stream, 1, deadline).await
    }

    /// The events of `stream` from version `from` to its end, and its version, page by
    /// page, as [`Self::read_whole_stream`].
    pub async fn read_stream_from(
        &self,
        stream: &StreamName,
        from: u64,
        deadline: Duration,
    ) -> Result<(Vec<RecordedEvent>, u64), ClientError> {
        let mut events = Vec::new();
        let mut from = from.max(1);
        loop {
            let (page, version) = self
                .read_stream_retrying(stream, from, events::store_api::MAX_READ_LIMIT, deadline)
                .await?;
            let n = page.len() as u64;
            events.extend(page);
            if n == 0 || from + n > version {
                return Ok((events, version));
            }
            from += n;
        }
    }

    /// Reads a page of one stream from `from_version`; returns the events and its version.
    pub async fn read_stream(
        &self,
        stream: &StreamName,
        from_version: u64,
        limit: u32,
    ) -> Result<(Vec<RecordedEvent>, u64), ClientError> {
        let req = StreamReadRequest {
            stream: stream.clone(),
            from_version,
            limit,
        };
        let payload = self
            .call(subjects::STORE_STREAM.to_owned(), codec::encode(&req))
            .await?;
        match serde_json::from_slice::<StreamReadReply>(&payload) {
            Ok(StreamReadReply::Page { events, version }) => Ok((events, version)),
            Ok(StreamReadReply::Error { error }) => Err(ClientError::Store(error)),
            Err(e) => Err(ClientError::Decode(e.to_string())),
        }
    }
}

/// A reply of `vigil.store.read` (`events::ReadReply`), its events read as `T`. Not through
/// the untagged `ReadReply`: that buffers the page into a tree first, which a `T` reading
/// its data as borrowed raw text (`TypedRecorded`) cannot be read from.
fn read_page<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<(Vec<T>, u64), ClientError> {
    #[derive(Deserialize)]
    struct Page<T> {
        events: Vec<T>,
        head: u64,
    }
    #[derive(Deserialize)]
    struct Refused {
        error: StoreError,
    }
    match serde_json::from_slice::<Page<T>>(payload) {
        Ok(page) => Ok((page.events, page.head)),
        Err(e) => match serde_json::from_slice::<Refused>(payload) {
            Ok(refused) => Err(ClientError::Store(refused.error)),
            Err(_) => Err(ClientError::Decode(e.to_string())),
        },
    }
}

/// Asks every store replica for its status (`vigil.store.status` is not a queue group: each
/// replica answers) and gathers the answers until `wait` has passed, or sooner once `enough`
/// is true of those gathered. A replica that does not answer in time (stopped, paused, cut
/// off) is simply not among them.
pub async fn collect_statuses(
    client: &Client,
    wait: Duration,
    mut enough: impl FnMut(&[StoreStatus]) -> bool,
) -> Result<Vec<StoreStatus>, ClientError> {
    let transport = |e: &dyn std::fmt::Display| ClientError::Transport(e.to_string());
    let inbox = client.new_inbox();
    let mut answers_sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| transport(&e))?;
    client
        .publish_with_reply(subjects::STORE_STATUS, inbox, "{}".into())
        .await
        .map_err(|e| transport(&e))?;
    client.flush().await.map_err(|e| transport(&e))?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while !enough(&answers) {
        let next = tokio::time::timeout_at(deadline, answers_sub.next()).await;
        let Ok(Some(message)) = next else { break };
        match serde_json::from_slice::<StoreStatus>(&message.payload) {
            Ok(status) => answers.push(status),
            Err(e) => {
                tracing::warn!(error = %e, "an answer on vigil.store.status that is not a StoreStatus; ignored")
            }
        }
    }
    Ok(answers)
}

/// Runs `call` until it succeeds, fails for good, or `deadline` has passed, with backoff from
/// 20 ms to 500 ms between tries.
async fn retrying<T, F, Fut>(deadline: Duration, call: F) -> Result<T, ClientError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(20);
    loop {
        match call().await {
            Err(e) if e.is_retryable() && started.elapsed() < deadline => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            other => return other,
        }
    }
}
