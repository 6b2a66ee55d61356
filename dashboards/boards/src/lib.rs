//! Vigil's boards: pure projections from the event log to the JSON models that wall screens and
//! consoles show, and the deltas that keep them live.
//!
//! The contract with the gateway and the pages is `dashboards/boards/MODEL.md`. This crate owns
//! it: what a board contains, how each view is redacted, and the delta operations. It promises:
//!
//! - **Pure folds.** No I/O, no clock: time comes only from each event's `recorded_at` (and
//!   from the time a caller gives a tick, [`Situation::expire`]), so the same events always
//!   give the same board, byte for byte, on every gateway.
//! - **Bounded by what is open.** What ended leaves the state: closed cases at once, ended
//!   broadcasts the retention after ([`Situation::with_retention`], default
//!   [`DEFAULT_RETENTION`]), with the same kind of delta as any removal. Ticks no later than
//!   the next event change nothing that event's fold would not (property-tested).
//! - **Snapshot plus deltas equals the fold.** For any k, the snapshot after event k with the
//!   deltas of the events after k applied by [`apply_ops`] (and `position` / `as_of` set from
//!   the delta message, as the page does) equals the snapshot of the whole fold. Property-tested.
//! - **Merged deltas are exact.** The ops of any run of deltas merged by [`merge_ops`] and
//!   applied at once give the same page as the deltas applied one by one, in every view and
//!   every cut (property-tested).
//! - **Redaction here, not in the page.** [`View::WallScreen`] never contains a person's name:
//!   no reporter, no description, no hostage person reference, no user who acted.
//! - **Fast replay.** [`Situation::apply`] takes each event decoded once, from its stored
//!   bytes straight into its typed domain event ([`events::TypedRecorded`]), and updates
//!   plain structs; JSON is built only by [`Situation::snapshot`] and [`Situation::delta`],
//!   and a delta renders only what the event touched.
//! - **Checkpoints.** [`Situation`] is `Serialize`/`Deserialize`: a board saved after event k
//!   and read back, fed the events after k, gives the same deltas and snapshots as the fold
//!   of the whole log (property-tested); [`CHECKPOINT_VERSION`] names the state's version.
//! - **Never panics on the log.** Unknown types, unreadable data, events for streams the board
//!   has never seen: they advance the position and change nothing else.
//!
//! # Layout
//! - [`ops`]: the delta operations ([`Op`]) and [`apply_ops`], the reference implementation of
//!   what the page does with them.
//! - [`merge`]: the ops of several deltas merged into one list that does exactly what they
//!   do ([`merge_ops`]), for a client that fell behind.
//! - [`scope`]: a board cut to a caller's scope (a field officer's country, a focal point's
//!   agency), on the rendered JSON.
//! - [`situation`]: the situation board — its state, the fold ([`Situation::apply`]) and its
//!   rendering per view ([`Situation::snapshot`], [`Situation::delta`]).
//!
//! # Example
//! ```
//! // The gateway names this crate `boards` (`boards.workspace = true`).
//! use vigil_boards::{self as boards, View, apply_ops};
//!
//! let log: Vec<events::TypedRecorded> = Vec::new(); // read from the store
//! let mut board = boards::fold(log);
//! let mut page = board.snapshot(View::WallScreen); // sent once
//! # let live: Vec<Vec<u8>> = Vec::new();
//! for bytes in &live { // each event as the store keeps and sends it
//!     let Ok(event) = events::TypedRecorded::decode(bytes) else { continue };
//!     let (position, recorded_at) = (event.position, event.recorded_at);
//!     let changes = board.apply(event);
//!     if !changes.is_empty() {
//!         apply_ops(&mut page, &board.delta(&changes, View::WallScreen));
//!     }
//!     page["position"] = position.into();
//!     page["as_of"] = boards::timestamp(recorded_at);
//! }
//! assert_eq!(page, board.snapshot(View::WallScreen));
//! ```

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

pub mod merge;
pub mod ops;
pub mod scope;
pub mod situation;

pub use merge::merge_ops;
pub use ops::{Op, apply_ops};
pub use scope::{Cut, scope_ops, scope_snapshot};
pub use situation::{CHECKPOINT_VERSION, Changes, DEFAULT_RETENTION, Situation};

/// Every board this crate projects, by the name clients subscribe to.
pub const BOARDS: &[&str] = &["situation"];

/// Who a board is rendered for; redaction depends on it (MODEL.md, "Views").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Duty officers, crisis managers and admins: includes incident reporters and descriptions,
    /// who issued and approved each broadcast, and the broadcasts' per-agency detail.
    Duty,
    /// Wall screens in a room with visitors: never a person's name.
    WallScreen,
}

impl View {
    /// Every view.
    pub const ALL: [View; 2] = [View::Duty, View::WallScreen];

    /// Reads a view name: `duty` or `wall_screen`.
    pub fn parse(s: &str) -> Option<View> {
        match s {
            "duty" => Some(View::Duty),
            "wall_screen" => Some(View::WallScreen),
            _ => None,
        }
    }

    /// The view's name, as [`View::parse`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            View::Duty => "duty",
            View::WallScreen => "wall_screen",
        }
    }
}

/// The one spelling of a time on every board: RFC 3339 in UTC (`2026-11-27T02:40:00Z`), or
/// `null` for a time that cannot be written that way (a year outside 0–9999).
pub fn timestamp(t: OffsetDateTime) -> serde_json::Value {
    t.to_offset(UtcOffset::UTC)
        .format(&Rfc3339)
        .map_or(serde_json::Value::Null, serde_json::Value::String)
}

/// Folds events, in position order, into a fresh situation board: what `vigil replay` and
/// the gateway do with what they read from the store.
pub fn fold(events: impl IntoIterator<Item = events::TypedRecorded>) -> Situation {
    let mut board = Situation::new();
    for event in events {
        board.apply(event);
    }
    board
}

/// [`fold`] of events a test or a tool already holds as `RecordedEvent`s, each read as the
/// fold reads stored bytes ([`events::TypedRecorded::from_recorded`]). One the store could
/// not have recorded (unencodable) is skipped.
pub fn replay<'a>(events: impl IntoIterator<Item = &'a events::RecordedEvent>) -> Situation {
    fold(
        events
            .into_iter()
            .filter_map(|e| events::TypedRecorded::from_recorded(e).ok()),
    )
}

#[cfg(test)]
mod tests;
