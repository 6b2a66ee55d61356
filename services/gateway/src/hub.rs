//! Board hosting: the gateway's fold of the log and the fan-out of its deltas.
//!
//! # What it owns
//! The situation board (a pure projection from `vigil-boards`), the position it has folded
//! up to, and per view a ring of recent encoded deltas plus a broadcast channel to every
//! subscriber of that view.
//!
//! # Where it runs
//! The fold runs on its own OS thread ([`Hub::start_fold`], `vigil-board-fold`): the
//! catch-up task (`crate::follow`) hands it runs of events through a bounded queue, and it
//! folds whatever is queued as one batch, [`SLICE`] events per hold of the write lock, publishing the deltas
//! as it goes. HTTP, WebSocket writes and the services' answers never wait for a fold on the
//! async workers; subscribers wait at most one slice's fold for the lock, as before. The
//! thread ends when its queue closes, after folding everything it was sent (nothing is lost
//! or folded twice), and the caller then writes the last checkpoint.
//!
//! # What it promises
//! - A view's delta is rendered and encoded only while someone watches that view (its
//!   channel has a receiver), **once** per delta, and the same bytes (reference-counted) go
//!   to every subscriber of that view. A view nobody watches costs nothing per event; its
//!   ring is emptied and its floor raised, so a client resuming it from before then gets a
//!   snapshot (`docs/PROTOCOL.md`, "Resume, resync").
//! - A subscriber gets one `snapshot` at position P (or, resuming from `since`, exactly the
//!   deltas after `since` while they are still in the ring), then every later delta in
//!   position order, with no gap and no repeat: subscription and the initial frames are taken
//!   under the same lock that publication holds.
//! - Every subscriber's queue is bounded: it is a cursor in the shared broadcast ring
//!   ([`FANOUT_CAPACITY`] frames). Publication never waits for a subscriber. A frame keeps
//!   its ops, so a subscriber that falls behind is sent what waits for it as one merged
//!   delta ([`merged_delta`]: exactly what the frames do, latest state per entity, the last
//!   frame's position; see `ws`); one that falls further behind than the ring is told so
//!   (`Lagged`) and is sent a fresh snapshot instead of its backlog.
//! - Retention ([`Hub::tick`]): a quiet centre's board still forgets ended broadcasts on
//!   time. A tick is a board operation at the position the board is at: its delta is sent
//!   live as a frame marked `tick` (a connection at that position takes it), never kept in
//!   the ring; the ring is emptied and its floor set past the position, so a client resuming
//!   from there gets a snapshot (it may or may not have seen the tick).
//! - A board restored from a checkpoint ([`Hub::restore`]) is taken only before anything is
//!   folded; [`Hub::checkpoint_copy`] copies the board under the read lock (the fold waits
//!   for the copy only, never for the disk: the caller writes it after the lock is released).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::ws::Utf8Bytes;
use boards::Cut;
use boards::{Situation, View};
use events::TypedRecorded;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::broadcast;

/// Frames a subscriber may fall behind before it is resynced with a snapshot.
pub const FANOUT_CAPACITY: usize = 1024;
/// Recent deltas kept per view for clients that resume with `since`.
pub const RING_CAPACITY: usize = 4096;
/// The views served, in a fixed order (index = position in the per-view arrays).
pub const VIEWS: [View; 2] = [View::Duty, View::WallScreen];
/// The version of the board messages (`docs/PROTOCOL.md`): 2 since deltas are per entity
/// (`item`, `drop`, `merge` ops). Snapshots carry it; a client may announce it.
pub const PROTOCOL: u32 = 2;

fn view_index(view: View) -> usize {
    match view {
        View::Duty => 0,
        View::WallScreen => 1,
    }
}

/// One encoded delta, shared by every subscriber of its view.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Log position the delta brings the board to.
    pub position: u64,
    /// The view it was rendered for.
    pub view: View,
    /// The encoded `delta` message.
    pub bytes: Utf8Bytes,
    /// Whether it is a tick's delta ([`Hub::tick`]): at the position of the delta before it,
    /// and still to be sent to a connection at that position.
    pub tick: bool,
    /// Its ops and `as_of`, kept so a connection can cut them to its scope ([`scoped_delta`])
    /// or merge several of them for a client that fell behind ([`merged_delta`]).
    pub ops: Arc<(Vec<boards::Op>, Option<String>)>,
}

impl Frame {
    /// Whether a connection that has been sent everything up to `position` still needs this
    /// frame: a later position, or a tick at that position (a connection only ever receives
    /// a tick frame live, after the frames before it, so it never gets one twice).
    pub fn is_after(&self, position: u64) -> bool {
        self.position > position || (self.tick && self.position == position)
    }
}

/// A `delta` message (`docs/PROTOCOL.md`, "Server → client").
fn delta_bytes(
    view: View,
    scope: Option<Cut>,
    (position, tick): (u64, bool),
    as_of: Option<&str>,
    ops: &[boards::Op],
) -> Utf8Bytes {
    let mut msg = json!({
        "type": "delta",
        "board": "situation",
        "view": view.as_str(),
        "position": position,
        "as_of": as_of,
        "ops": ops,
    });
    if let Some(cut) = scope {
        msg["scope"] = json!(cut.label());
    }
    if tick {
        msg["tick"] = json!(true);
    }
    Utf8Bytes::from(msg.to_string())
}

/// The `delta` message of `frame` cut to `scope` (`boards::scope`), or `None` when nothing
/// of it is left in that cut (nothing is sent then).
pub fn scoped_delta(frame: &Frame, scope: Cut) -> Option<Utf8Bytes> {
    let ops = boards::scope_ops(&frame.ops.0, scope);
    if ops.is_empty() {
        return None;
    }
    Some(delta_bytes(
        View::WallScreen,
        Some(scope),
        (frame.position, frame.tick),
        frame.ops.1.as_deref(),
        &ops,
    ))
}

/// One `delta` message for a run of frames of one view (in position order), for a client
/// that fell behind: their ops (cut to `scope` first, when the connection has one) merged by
/// `boards::merge_ops`, which does exactly what they do one by one, with the last frame's
/// `position` and `as_of`. `None` when nothing is left to send.
pub fn merged_delta(run: &[Frame], scope: Option<Cut>) -> Option<Utf8Bytes> {
    let last = run.last()?;
    match (run, scope) {
        ([one], None) => return Some(one.bytes.clone()),
        ([one], Some(cut)) => return scoped_delta(one, cut),
        _ => {}
    }
    let cut: Vec<Vec<boards::Op>> = match scope {
        Some(c) => run.iter().map(|f| boards::scope_ops(&f.ops.0, c)).collect(),
        None => Vec::new(),
    };
    let ops = match scope {
        Some(_) => boards::merge_ops(cut.iter().flatten()),
        None => boards::merge_ops(run.iter().flat_map(|f| f.ops.0.iter())),
    };
    if ops.is_empty() {
        return None;
    }
    Some(delta_bytes(
        last.view,
        scope,
        (last.position, last.tick),
        last.ops.1.as_deref(),
        &ops,
    ))
}

/// Events folded under one hold of the write lock: subscribers, HTTP snapshots and
/// checkpoint copies wait at most this many events' fold.
pub const SLICE: usize = 128;
/// Events the fold thread takes at once from what is queued (one batch).
pub const BATCH: usize = 4 * 1024;

impl Hub {
    /// Starts the fold's own thread (`runtime::FoldThread`, `vigil-board-fold`): each batch
    /// is folded [`SLICE`] events per hold of the write lock, publishing the deltas, then
    /// `after_batch` runs (the checkpoint schedule).
    pub fn start_fold(
        self: &Arc<Self>,
        mut after_batch: impl FnMut(&Hub) + Send + 'static,
    ) -> std::io::Result<runtime::FoldThread<TypedRecorded>> {
        let hub = self.clone();
        runtime::FoldThread::start("vigil-board-fold", BATCH, move |batch| {
            metrics::histogram!("vigil_gateway_fold_batch_events").record(batch.len() as f64);
            let mut batch = batch.into_iter();
            while !batch.as_slice().is_empty() {
                hub.apply(batch.by_ref().take(SLICE));
            }
            after_batch(&hub);
        })
    }
}

/// What a new subscriber gets: the frames to send first, and the live feed after them.
pub struct Subscription {
    /// A snapshot, or the deltas missed since `since`.
    pub initial: Vec<Utf8Bytes>,
    /// Whether `initial` is a snapshot (not a resume).
    pub is_snapshot: bool,
    /// The position the client is at after `initial`.
    pub position: u64,
    /// Every later delta.
    pub live: broadcast::Receiver<Frame>,
}

struct Inner {
    board: Situation,
    as_of: Option<OffsetDateTime>,
    /// Per view: recent deltas in position order.
    rings: [VecDeque<Frame>; 2],
    /// Per view: every delta for a position above this is in the view's ring (positions
    /// whose event changed nothing have no delta). Raised when the ring evicts, while nobody
    /// watches the view (no delta is built for it then), and while catching up at start (no
    /// deltas are built then).
    ring_floor: [u64; 2],
    /// Deltas are built only once the fold has reached the head seen at start; before that
    /// nobody can be behind a delta, and replay runs at full speed.
    live_from: u64,
    /// The id of the event at the board's position (nil at 0): a checkpoint names it, so a
    /// log from another history is told at the next start.
    last_id: uuid::Uuid,
}

/// The hub: one per gateway process.
pub struct Hub {
    inner: RwLock<Inner>,
    senders: [broadcast::Sender<Frame>; 2],
    /// Encoded snapshot per view, valid for the position it was built at; a thousand screens
    /// reconnecting at once cost one encoding.
    snapshots: Mutex<[Option<(u64, Utf8Bytes)>; 2]>,
    /// Becomes true once the fold reaches the head seen at start; subscriptions wait for it,
    /// because no deltas are built before then.
    caught_up: tokio::sync::watch::Sender<bool>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    /// An empty hub at position 0, with the default retention (`boards::DEFAULT_RETENTION`).
    pub fn new() -> Self {
        Self::with_retention(boards::DEFAULT_RETENTION)
    }

    /// An empty hub whose board keeps an ended broadcast `retention` after it ended.
    pub fn with_retention(retention: std::time::Duration) -> Self {
        Self {
            inner: RwLock::new(Inner {
                board: Situation::with_retention(retention),
                as_of: None,
                rings: [VecDeque::new(), VecDeque::new()],
                ring_floor: [0, 0],
                live_from: 0,
                last_id: uuid::Uuid::nil(),
            }),
            senders: [
                broadcast::channel(FANOUT_CAPACITY).0,
                broadcast::channel(FANOUT_CAPACITY).0,
            ],
            snapshots: Mutex::new([None, None]),
            caught_up: tokio::sync::watch::channel(false).0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        // A poisoned lock means a panic while folding; the data is still the last good fold.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The position folded so far.
    pub fn position(&self) -> u64 {
        self.read().board.position()
    }

    /// The board's retention.
    pub fn retention(&self) -> std::time::Duration {
        self.read().board.retention()
    }

    /// Starts from `board`, a checkpoint after the event `event_id` at the board's position;
    /// refused (false) once anything was folded.
    pub fn restore(&self, board: Situation, event_id: uuid::Uuid) -> bool {
        let mut inner = self.write();
        if inner.board.position() != 0 {
            return false;
        }
        let position = board.position();
        inner.as_of = board.as_of();
        inner.board = board;
        inner.last_id = event_id;
        // No delta was built for anything up to here: a client resuming before it gets a
        // snapshot.
        inner.ring_floor = [position; 2];
        true
    }

    /// A copy of the board for a checkpoint, with its position and the id of the event
    /// there, and how long the read lock was held for it.
    pub fn checkpoint_copy(&self) -> (Situation, u64, uuid::Uuid, std::time::Duration) {
        let started = std::time::Instant::now();
        let inner = self.read();
        let board = inner.board.clone();
        let (position, id) = (board.position(), inner.last_id);
        drop(inner);
        (board, position, id, started.elapsed())
    }

    /// Whether the fold has reached the head the store reported at start.
    pub fn caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Sets the head seen at start: until the fold reaches it, no deltas are built.
    pub fn set_live_from(&self, head: u64) {
        let mut inner = self.write();
        inner.live_from = head;
        if inner.board.position() >= head {
            self.caught_up.send_replace(true);
        }
    }

    /// Waits until the fold has reached the head seen at start.
    pub async fn wait_caught_up(&self) {
        let mut rx = self.caught_up.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Folds a run of events (in position order) into the board and publishes their deltas.
    pub fn apply(&self, events: impl IntoIterator<Item = TypedRecorded>) {
        let mut inner = self.write();
        for event in events {
            if event.position <= inner.board.position() {
                continue; // already folded; the catch-up subscription never repeats, but be safe
            }
            let (position, id, recorded_at) = (event.position, event.id, event.recorded_at);
            let changes = inner.board.apply(event);
            inner.as_of = Some(recorded_at);
            inner.last_id = id;
            if position <= inner.live_from {
                inner.ring_floor = [position; 2];
                continue;
            }
            if changes.is_empty() {
                continue;
            }
            let at = inner.as_of.and_then(|t| t.format(&Rfc3339).ok());
            for view in VIEWS {
                let i = view_index(view);
                // Subscribing takes the read lock, so nobody can start watching between this
                // look and the publication below.
                if self.senders[i].receiver_count() == 0 {
                    inner.rings[i].clear();
                    inner.ring_floor[i] = position;
                    metrics::counter!("vigil_gateway_deltas_unwatched_total").increment(1);
                    continue;
                }
                let ops = inner.board.delta(&changes, view);
                let frame = Frame {
                    position,
                    view,
                    tick: false,
                    bytes: delta_bytes(view, None, (position, false), at.as_deref(), &ops),
                    ops: Arc::new((ops, at.clone())),
                };
                inner.rings[i].push_back(frame.clone());
                if inner.rings[i].len() > RING_CAPACITY
                    && let Some(old) = inner.rings[i].pop_front()
                {
                    inner.ring_floor[i] = inner.ring_floor[i].max(old.position);
                }
                // A receiver that went since the look above is fine: its connection closed.
                let _ = self.senders[i].send(frame);
                metrics::counter!("vigil_gateway_deltas_encoded_total").increment(1);
            }
        }
        if inner.board.position() >= inner.live_from && !*self.caught_up.borrow() {
            self.caught_up.send_replace(true);
            tracing::info!(
                position = inner.board.position(),
                "boards caught up with the log"
            );
        }
        metrics::gauge!("vigil_gateway_projection_position").set(inner.board.position() as f64);
    }

    /// A tick of the board's clock at `now` (the wall clock, from the gateway's timer): takes
    /// off what the retention expired by then (`boards::Situation::expire`) and sends the
    /// delta to every watched view as a `tick` frame at the current position. Nothing happens
    /// before the fold has caught up with the log (the next events will expire it). Returns
    /// whether anything left the board.
    pub fn tick(&self, now: OffsetDateTime) -> bool {
        let mut inner = self.write();
        let position = inner.board.position();
        if position < inner.live_from || position == 0 {
            return false;
        }
        let changes = inner.board.expire(now);
        if changes.is_empty() {
            return false;
        }
        // The cached snapshots are of the board before the tick, at the same position.
        *self.snapshots.lock().unwrap_or_else(|p| p.into_inner()) = [None, None];
        let at = inner.as_of.and_then(|t| t.format(&Rfc3339).ok());
        for view in VIEWS {
            let i = view_index(view);
            // A client resuming at this position may or may not have had the tick's delta:
            // it gets a snapshot.
            inner.rings[i].clear();
            inner.ring_floor[i] = position.saturating_add(1);
            if self.senders[i].receiver_count() == 0 {
                continue;
            }
            let ops = inner.board.delta(&changes, view);
            let frame = Frame {
                position,
                view,
                tick: true,
                bytes: delta_bytes(view, None, (position, true), at.as_deref(), &ops),
                ops: Arc::new((ops, at.clone())),
            };
            let _ = self.senders[i].send(frame);
            metrics::counter!("vigil_gateway_deltas_encoded_total").increment(1);
        }
        metrics::counter!("vigil_gateway_board_ticks_expired_total").increment(1);
        true
    }

    /// The board as JSON for `view` (the HTTP snapshot).
    pub fn snapshot_json(&self, view: View) -> serde_json::Value {
        let inner = self.read();
        inner.board.snapshot(view)
    }

    fn snapshot_frame(&self, inner: &Inner, view: View) -> Utf8Bytes {
        let position = inner.board.position();
        let i = view_index(view);
        let mut cache = self.snapshots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, bytes)) = &cache[i]
            && *p == position
        {
            return bytes.clone();
        }
        let msg = json!({
            "type": "snapshot",
            "protocol": PROTOCOL,
            "board": "situation",
            "view": view.as_str(),
            "position": position,
            "as_of": inner.as_of.and_then(|t| t.format(&Rfc3339).ok()),
            "data": inner.board.snapshot(view),
        });
        let bytes = Utf8Bytes::from(msg.to_string());
        cache[i] = Some((position, bytes.clone()));
        bytes
    }

    /// Subscribes to the wall screen view cut to `scope` (`boards::scope`): like
    /// [`Hub::subscribe`] to the wall screen view, with the snapshot and the resumed deltas
    /// cut; the live frames are cut by the caller with [`scoped_delta`].
    pub fn subscribe_scoped(&self, scope: Cut, since: Option<u64>) -> Subscription {
        let inner = self.read();
        let i = view_index(View::WallScreen);
        let live = self.senders[i].subscribe();
        let position = inner.board.position();
        if let Some(since) = since
            && since >= inner.ring_floor[i]
            && since <= position
        {
            let initial = inner.rings[i]
                .iter()
                .filter(|f| f.position > since)
                .filter_map(|f| scoped_delta(f, scope))
                .collect();
            return Subscription {
                initial,
                is_snapshot: false,
                position,
                live,
            };
        }
        let msg = json!({
            "type": "snapshot",
            "protocol": PROTOCOL,
            "board": "situation",
            "view": View::WallScreen.as_str(),
            "scope": scope.label(),
            "position": position,
            "as_of": inner.as_of.and_then(|t| t.format(&Rfc3339).ok()),
            "data": boards::scope_snapshot(&inner.board.snapshot(View::WallScreen), scope),
        });
        Subscription {
            initial: vec![Utf8Bytes::from(msg.to_string())],
            is_snapshot: true,
            position,
            live,
        }
    }

    /// Subscribes to `view`: resumes after `since` when the ring still holds every delta after
    /// it, else starts from a fresh snapshot.
    pub fn subscribe(&self, view: View, since: Option<u64>) -> Subscription {
        let inner = self.read();
        let i = view_index(view);
        // Taken under the read lock: no delta can be published between the initial frames
        // and the start of the live feed.
        let live = self.senders[i].subscribe();
        let position = inner.board.position();
        if let Some(since) = since
            && since >= inner.ring_floor[i]
            && since <= position
        {
            let initial = inner.rings[i]
                .iter()
                .filter(|f| f.position > since)
                .map(|f| f.bytes.clone())
                .collect();
            return Subscription {
                initial,
                is_snapshot: false,
                position,
                live,
            };
        }
        let initial = vec![self.snapshot_frame(&inner, view)];
        Subscription {
            initial,
            is_snapshot: true,
            position,
            live,
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a panic here is a failed assertion.
    #![allow(clippy::unwrap_used)]
    use super::*;
    use boards::Op;

    fn frame(position: u64, ops: Vec<Op>) -> Frame {
        let at = Some(format!("t{position}"));
        Frame {
            position,
            view: View::WallScreen,
            tick: false,
            bytes: delta_bytes(
                View::WallScreen,
                None,
                (position, false),
                at.as_deref(),
                &ops,
            ),
            ops: Arc::new((ops, at)),
        }
    }

    fn set(path: &[&str], value: serde_json::Value) -> Op {
        Op::Set {
            path: path.iter().map(|k| (*k).to_owned()).collect(),
            value,
        }
    }

    fn read(bytes: Option<Utf8Bytes>) -> serde_json::Value {
        serde_json::from_str(bytes.unwrap().as_str()).unwrap()
    }

    /// An internal broadcast that needs no acknowledgement: it has ended once issued.
    fn ended_broadcast(position: u64, at: OffsetDateTime) -> TypedRecorded {
        use events::domain::broadcast::{Audience, BroadcastIssued, BroadcastSeverity};
        let issued = BroadcastIssued {
            title: "Shift change".into(),
            body: "Handover at 18:00".into(),
            severity: BroadcastSeverity::Low,
            audience: Audience::DutyOfficers,
            requires_ack: false,
            ack_deadline: None,
            exercise: false,
            updates: None,
            cancels: None,
            recipients: vec![],
            rule: None,
        };
        let id = uuid::Uuid::from_u128(u128::from(position));
        let new = events::domain::DomainEvent::from(issued)
            .to_new_event(uuid::Uuid::new_v4(), events::Meta::default());
        let stream = events::domain::broadcast::stream_for(id);
        let recorded = events::RecordedEvent::record(new, stream, position, 1, at);
        TypedRecorded::from_recorded(&recorded).unwrap()
    }

    #[test]
    fn a_tick_takes_off_what_expired_and_a_resume_from_its_position_gets_a_snapshot() {
        let t0 = time::macros::datetime!(2026-11-27 02:00 UTC);
        let hub = Hub::with_retention(std::time::Duration::from_secs(60));
        hub.set_live_from(0);
        let mut sub = hub.subscribe(View::Duty, None);
        hub.apply([ended_broadcast(1, t0)]);
        let issued = sub.live.try_recv().unwrap();
        assert!(!issued.tick);
        // Before the retention has run, a tick changes nothing.
        assert!(!hub.tick(t0 + time::Duration::seconds(59)));
        assert!(sub.live.try_recv().is_err());
        // After it, the broadcast leaves with a tick frame at the same position.
        assert!(hub.tick(t0 + time::Duration::seconds(60)));
        let tick = sub.live.try_recv().unwrap();
        assert_eq!((tick.position, tick.tick), (1, true));
        assert!(tick.is_after(1) && !issued.is_after(1));
        let msg: serde_json::Value = serde_json::from_str(tick.bytes.as_str()).unwrap();
        assert_eq!(msg["tick"], true);
        assert_eq!(msg["position"], 1);
        assert_eq!(
            msg["ops"][0],
            json!({"op": "drop", "path": ["broadcasts"], "id": uuid::Uuid::from_u128(1).to_string()})
        );
        assert_eq!(hub.position(), 1);
        assert_eq!(hub.snapshot_json(View::Duty)["broadcasts"], json!([]));
        // A client resuming from position 1 may not have had the tick: it gets a snapshot,
        // without the broadcast (not the one cached before the tick).
        let resumed = hub.subscribe(View::Duty, Some(1));
        assert!(resumed.is_snapshot);
        let snap: serde_json::Value = serde_json::from_str(resumed.initial[0].as_str()).unwrap();
        assert_eq!(snap["data"]["broadcasts"], json!([]));
        // The next event's delta is resumable again.
        hub.apply([ended_broadcast(2, t0 + time::Duration::seconds(61))]);
        let later = hub.subscribe(View::Duty, Some(2));
        assert!(!later.is_snapshot);
    }

    #[test]
    fn no_tick_before_the_fold_has_caught_up() {
        let t0 = time::macros::datetime!(2026-11-27 02:00 UTC);
        let hub = Hub::with_retention(std::time::Duration::ZERO);
        hub.set_live_from(5);
        hub.apply([ended_broadcast(1, t0)]);
        assert!(!hub.tick(t0 + time::Duration::hours(1)));
        assert_eq!(
            hub.snapshot_json(View::Duty)["broadcasts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_merged_delta_has_the_last_position_and_the_merged_ops_of_its_cut() {
        let run = [
            frame(3, vec![set(&["countries", "SO", "level"], json!(1))]),
            frame(5, vec![set(&["countries", "KE", "level"], json!(2))]),
            frame(6, vec![set(&["countries", "SO", "level"], json!(3))]),
        ];
        let all = read(merged_delta(&run, None));
        assert_eq!(
            (&all["type"], &all["view"], &all["position"], &all["as_of"]),
            (
                &json!("delta"),
                &json!("wall_screen"),
                &json!(6),
                &json!("t6")
            )
        );
        assert_eq!(all.get("scope"), None);
        assert_eq!(
            all["ops"],
            json!([
                {"op": "set", "path": ["countries", "KE", "level"], "value": 2},
                {"op": "set", "path": ["countries", "SO", "level"], "value": 3},
            ])
        );
        // A field officer's cut: its country only, the frames cut before they are merged.
        let so = Cut::Country(events::validate::Country::parse("SO").ok());
        let cut = read(merged_delta(&run, Some(so)));
        assert_eq!((&cut["scope"], &cut["position"]), (&json!("SO"), &json!(6)));
        assert_eq!(
            cut["ops"],
            json!([{"op": "set", "path": ["countries", "SO", "level"], "value": 3}])
        );
        // Nothing of the run in the cut: nothing to send.
        let ml = Cut::Country(events::validate::Country::parse("ML").ok());
        assert!(merged_delta(&run, Some(ml)).is_none());
        // One frame is sent as it is.
        assert_eq!(
            merged_delta(&run[..1], None).unwrap(),
            run[0].bytes,
            "the same bytes"
        );
        assert!(merged_delta(&[], None).is_none());
    }
}
