//! Retention: ended broadcasts leave the live board the retention after they ended, with the
//! board's clock moved by the events' `recorded_at` and by ticks (`Situation::expire`).
//!
//! Unit tests of what leaves and what stays, and property tests over logs with generated
//! gaps between events and ticks between them: snapshot at k + deltas (of events and ticks) =
//! the board; checkpoint at k + tail = the board; ticks no later than the next event change
//! nothing its fold would not; the invariants hold after every step.

use std::time::Duration;

use events::RecordedEvent;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::broadcasts::{ack, cancel, failed, routine};
use super::properties::{Step, broadcast_on, step};
use super::{Log, typed, uuid};
use crate::{Op, Situation, View, apply_ops, timestamp};

/// One step of a run: an event folded, or a tick at a time.
#[derive(Debug, Clone)]
enum Run {
    Event(Box<RecordedEvent>),
    Tick(OffsetDateTime),
}

fn minutes(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

/// Folds `run` into a fresh board of `retention`, checking the invariants after each step.
fn board_of(retention: Duration, run: &[Run]) -> Situation {
    let mut board = Situation::with_retention(retention);
    for step in run {
        do_step(&mut board, step);
        board.check_invariants().unwrap_or_else(|e| panic!("{e}"));
    }
    board
}

fn do_step(board: &mut Situation, step: &Run) -> crate::Changes {
    match step {
        Run::Event(e) => board.apply(typed(e)),
        Run::Tick(at) => board.expire(*at),
    }
}

/// The page of `view` after the snapshot at step k and the deltas of every later step,
/// applied as the page does (ops, then `position` and `as_of` from the message).
fn page_after(retention: Duration, run: &[Run], k: usize, view: View) -> Value {
    let mut board = board_of(retention, &run[..k]);
    let mut page = board.snapshot(view);
    for step in &run[k..] {
        let changes = do_step(&mut board, step);
        let ops = board.delta(&changes, view);
        assert_eq!(
            changes.is_empty(),
            ops.is_empty(),
            "{changes:?} gave {ops:?}"
        );
        apply_ops(&mut page, &ops);
        page["position"] = Value::from(board.position());
        page["as_of"] = board.as_of().map_or(Value::Null, timestamp);
    }
    page
}

/// The events of `log` as a run with no tick.
fn events_of(log: &Log) -> Vec<Run> {
    log.events
        .iter()
        .cloned()
        .map(|e| Run::Event(Box::new(e)))
        .collect()
}

/// Issues routine broadcasts `first..first + n` (to `wfp`, acknowledgement required).
fn issue(log: &mut Log, first: u128, n: u128) {
    for id in first..first + n {
        log.push(id, routine(&format!("B{id}"), &["wfp"]));
    }
}

fn listed_ids(board: &Situation, view: View) -> Vec<String> {
    board.snapshot(view)["broadcasts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_ended_broadcast_leaves_after_the_retention_and_the_next_comes_into_view() {
    let retention = minutes(60);
    let mut log = Log::default();
    // 21 broadcasts awaiting an acknowledgement: the newest 20 are listed.
    issue(&mut log, 6000, 21);
    // The newest is cancelled: it has ended, and counts for nothing.
    log.push(6020, cancel());
    let before = board_of(retention, &events_of(&log));
    assert_eq!(listed_ids(&before, View::WallScreen)[0], uuid(6020));
    assert!(!listed_ids(&before, View::WallScreen).contains(&uuid(6000)));
    // Still there 59 minutes later.
    log.wait(58);
    log.push(7000, cancel()); // a stream the board never saw: moves the clock only
    let board = board_of(retention, &events_of(&log));
    assert_eq!(listed_ids(&board, View::WallScreen)[0], uuid(6020));
    // An hour after it ended it has left, and the oldest comes into view at the end.
    log.wait(1);
    log.push(7000, cancel());
    let run = events_of(&log);
    let mut board = board_of(retention, &run[..run.len() - 1]);
    let changes = board.apply(typed(log.events.last().unwrap()));
    let ops = board.delta(&changes, View::Duty);
    let broadcast_ops: Vec<_> = ops
        .iter()
        .filter(|op| !matches!(op, Op::Timeline { .. }))
        .collect();
    assert_eq!(broadcast_ops.len(), 4, "{ops:?}");
    assert_eq!(
        serde_json::to_value(&broadcast_ops).unwrap()[0],
        json!({"op": "drop", "path": ["broadcasts"], "id": uuid(6020)})
    );
    assert!(
        matches!(broadcast_ops[1], Op::Item { at: 19, value, .. } if value["id"] == uuid(6000))
    );
    assert_eq!(
        serde_json::to_value(broadcast_ops[2]).unwrap(),
        json!({"op": "remove", "path": ["broadcast_agencies", uuid(6020)]})
    );
    assert!(matches!(broadcast_ops[3], Op::Set { path, .. } if path[1] == uuid(6000)));
    let listed = listed_ids(&board, View::WallScreen);
    assert_eq!(
        (listed.len(), &listed[0], &listed[19]),
        (20, &uuid(6019), &uuid(6000))
    );
    // No counter moved: an ended broadcast counts for nothing.
    assert_eq!(
        board.snapshot(View::WallScreen)["counters"],
        before.snapshot(View::WallScreen)["counters"]
    );
    assert_eq!(
        board.snapshot(View::WallScreen)["counters"]["broadcasts_awaiting_ack"],
        20
    );
    // Its later events are of a stream the board no longer holds: ignored.
    log.push(6020, ack("wfp"));
    for view in View::ALL {
        let run = events_of(&log);
        for k in 0..=run.len() {
            assert_eq!(
                page_after(retention, &run, k, view),
                board_of(retention, &run).snapshot(view),
                "k = {k}"
            );
        }
    }
}

#[test]
fn a_broadcast_that_still_counts_stays_however_old() {
    let retention = minutes(10);
    let mut log = Log::default();
    issue(&mut log, 6000, 3);
    log.push(6001, failed("wfp", true)); // a failure standing
    log.push(6002, ack("wfp")); // every acknowledgement: ended now
    log.wait(24 * 60);
    log.push(7000, cancel());
    let board = board_of(retention, &events_of(&log));
    assert_eq!(
        listed_ids(&board, View::WallScreen),
        [uuid(6001), uuid(6000)]
    );
    let counters = &board.snapshot(View::WallScreen)["counters"];
    assert_eq!(
        (
            &counters["broadcasts_awaiting_ack"],
            &counters["broadcast_deliveries_failed"]
        ),
        (&json!(2), &json!(1))
    );
    // Acknowledged at last, the one awaiting it ends, and leaves the retention later (a
    // failure after its acknowledgement does not make it count again).
    log.push(6000, ack("wfp"));
    log.wait(5);
    log.push(6000, failed("wfp", true)); // acknowledged: a failure no longer stands
    log.wait(10);
    log.push(7000, cancel());
    let board = board_of(retention, &events_of(&log));
    assert_eq!(listed_ids(&board, View::WallScreen), [uuid(6001)]);
}

#[test]
fn a_tick_expires_on_a_quiet_board_and_moves_neither_position_nor_as_of() {
    let retention = minutes(30);
    let mut log = Log::default();
    issue(&mut log, 6000, 2);
    log.push(6001, cancel());
    let mut run = events_of(&log);
    let ended = log.events.last().unwrap().recorded_at;
    let mut board = board_of(retention, &run);
    // Before the retention has run: nothing.
    let early = board.expire(ended + time::Duration::minutes(29));
    assert!(early.is_empty());
    // A clock going back changes nothing either.
    assert!(board.expire(ended).is_empty());
    assert_eq!(board.clock(), Some(ended + time::Duration::minutes(29)));
    let (position, as_of) = (board.position(), board.as_of());
    let page_before = board.snapshot(View::WallScreen);
    let changes = board.expire(ended + time::Duration::minutes(30));
    assert!(!changes.is_empty());
    let ops = board.delta(&changes, View::WallScreen);
    assert_eq!(
        serde_json::to_value(&ops).unwrap(),
        json!([{"op": "drop", "path": ["broadcasts"], "id": uuid(6001)}])
    );
    assert_eq!((board.position(), board.as_of()), (position, as_of));
    let mut page = page_before;
    apply_ops(&mut page, &ops);
    assert_eq!(page, board.snapshot(View::WallScreen));
    // The same as the fold of the next event at that time, without the tick.
    run.push(Run::Tick(ended + time::Duration::minutes(30)));
    log.wait(29);
    log.push(7000, cancel());
    run.push(Run::Event(Box::new(log.events.last().unwrap().clone())));
    let ticked = board_of(retention, &run);
    let folded = board_of(retention, &events_of(&log));
    for view in View::ALL {
        assert_eq!(ticked.snapshot(view), folded.snapshot(view));
    }
}

#[test]
fn with_no_retention_an_ended_broadcast_leaves_at_the_next_step() {
    let mut log = Log::default();
    log.push(6000, routine("Curfew", &["wfp"]));
    log.push(6000, ack("wfp"));
    let board = board_of(Duration::ZERO, &events_of(&log));
    assert_eq!(listed_ids(&board, View::WallScreen), [uuid(6000)]);
    log.push(7000, cancel());
    let board = board_of(Duration::ZERO, &events_of(&log));
    assert!(listed_ids(&board, View::WallScreen).is_empty());
    // The default keeps it a day.
    assert_eq!(
        crate::replay(&log.events).retention(),
        crate::DEFAULT_RETENTION
    );
    assert_eq!(
        listed_ids(&crate::replay(&log.events), View::WallScreen),
        [uuid(6000)]
    );
}

#[test]
fn the_board_keeps_only_what_counts_and_what_ended_within_the_retention() {
    // A year of broadcasts, each acknowledged within the hour, one every 10 minutes: the
    // board keeps those of the last retention only.
    let retention = minutes(24 * 60);
    let mut board = Situation::with_retention(retention);
    let mut log = Log::default();
    for i in 0..2_000u128 {
        log.push(6000 + i, routine("Curfew", &["wfp"]));
        log.wait(4);
        log.push(6000 + i, ack("wfp"));
        log.wait(4);
    }
    for e in &log.events {
        board.apply(typed(e));
    }
    board.check_invariants().unwrap();
    // 24 h / 10 min = 144 broadcasts ended within the retention (plus the boundary one).
    let kept = board.kept_broadcasts();
    assert!((144..=145).contains(&kept), "{kept}");
}

/// A generated run: steps of every family (broadcasts weighted up, on enough streams to keep
/// more than the list shows), each after a gap (mostly a few minutes, sometimes up to 90)
/// with maybe a tick within the gap.
fn run_step() -> impl Strategy<Value = (Step, u8, Option<u8>)> {
    let family = prop_oneof![3 => broadcast_on(60, 14), 1 => step()];
    let gap = prop_oneof![6 => 0u8..3, 1 => 0u8..90];
    (family, gap, proptest::option::weighted(0.3, any::<u8>()))
}

/// The run of generated steps: a tick falls after the previous event and no later than the
/// next one.
fn run_of(steps: &[(Step, u8, Option<u8>)]) -> Vec<Run> {
    let mut log = Log::default();
    let mut run = Vec::new();
    for (step, gap, tick) in steps {
        log.wait(i64::from(*gap));
        if let Some(t) = tick {
            let next = log.next_time();
            let back = i64::from(*t) % (i64::from(*gap) + 2);
            run.push(Run::Tick(next - time::Duration::minutes(back)));
        }
        super::properties::push_step(&mut log, step);
        run.push(Run::Event(Box::new(log.events.last().unwrap().clone())));
    }
    run
}

fn retentions() -> impl Strategy<Value = Duration> {
    prop_oneof![Just(Duration::ZERO), (1u64..240).prop_map(minutes)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn snapshot_plus_deltas_equals_the_board_with_expiry(
        steps in proptest::collection::vec(run_step(), 0..160),
        retention in retentions(),
        k in any::<proptest::sample::Index>(),
    ) {
        let run = run_of(&steps);
        let k = k.index(run.len() + 1);
        let board = board_of(retention, &run);
        for view in View::ALL {
            prop_assert_eq!(page_after(retention, &run, k, view), board.snapshot(view), "k = {}, {:?}", k, view);
        }
    }

    #[test]
    fn a_checkpoint_at_any_k_plus_the_tail_is_the_board_with_expiry(
        steps in proptest::collection::vec(run_step(), 0..160),
        retention in retentions(),
        k in any::<proptest::sample::Index>(),
    ) {
        let run = run_of(&steps);
        let k = k.index(run.len() + 1);
        let mut original = board_of(retention, &run[..k]);
        let bytes = serde_json::to_vec(&original).unwrap();
        let mut restored: Situation = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(restored.retention(), retention);
        prop_assert_eq!(restored.clock(), original.clock());
        for step in &run[k..] {
            let a = do_step(&mut original, step);
            let b = do_step(&mut restored, step);
            prop_assert_eq!(&a, &b);
            for view in View::ALL {
                prop_assert_eq!(original.delta(&a, view), restored.delta(&b, view));
            }
        }
        restored.check_invariants().map_err(TestCaseError::fail)?;
        for view in View::ALL {
            prop_assert_eq!(restored.snapshot(view), board_of(retention, &run).snapshot(view));
        }
    }

    /// Ticks no later than the next event change nothing that event's fold would not: the
    /// board with ticks is the fold of the log alone (a restart that folds the log again
    /// gives the same board).
    #[test]
    fn ticks_before_an_event_give_the_fold_of_the_log(
        steps in proptest::collection::vec(run_step(), 1..160),
        retention in retentions(),
    ) {
        let run = run_of(&steps);
        let ticked = board_of(retention, &run);
        let events: Vec<Run> = run.iter().filter(|s| matches!(s, Run::Event(_))).cloned().collect();
        let folded = board_of(retention, &events);
        for view in View::ALL {
            prop_assert_eq!(ticked.snapshot(view), folded.snapshot(view));
        }
    }
}

#[test]
fn the_generated_runs_expire_listed_broadcasts_and_bring_others_into_view() {
    // Guards the generator: its runs must take listed broadcasts off (by events and by
    // ticks) and bring kept ones into view in their place.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let steps = proptest::collection::vec(run_step(), 160..=160);
    let (mut by_event, mut by_tick, mut into_view) = (0, 0, 0);
    for _ in 0..10 {
        let run = run_of(&steps.new_tree(&mut runner).unwrap().current());
        let mut board = Situation::with_retention(minutes(60));
        for step in &run {
            let changes = do_step(&mut board, step);
            let ops = board.delta(&changes, View::WallScreen);
            let dropped = ops
                .iter()
                .any(|op| matches!(op, Op::Drop { path, .. } if path == &["broadcasts"]));
            match step {
                Run::Event(_) if dropped => by_event += 1,
                Run::Tick(_) if dropped => by_tick += 1,
                _ => {}
            }
            into_view += changes.came_into_view();
        }
    }
    assert!(
        by_event > 0 && by_tick > 0 && into_view > 0,
        "{by_event} {by_tick} {into_view}"
    );
}
