//! Merged deltas: the ops of several deltas in a row as one shorter list that does exactly what
//! they do ([`merge_ops`]). The gateway sends a client that fell behind one merged delta every
//! few tens of milliseconds instead of each delta (`docs/PROTOCOL.md`, "Slow clients").
//!
//! # Promises
//! - **Exact.** For every document and every list of ops, applying `merge_ops(ops)` with
//!   [`apply_ops`](crate::apply_ops) gives the same document as applying `ops`
//!   (property-tested on arbitrary documents and ops, and on the board's own deltas).
//! - **Never longer**, and the latest state of an entity wins: a part set again later is sent
//!   once (`set` of a country's counts), the counters that moved are one `merge`, an element
//!   put into a list again with nothing else touching that list in between is sent once
//!   (`item`/`drop` by `id`), and timeline items pushed out by later ones are not sent.
//! - Pure, and linear in the number of ops (times the depth of their paths).
//!
//! An op is left out only when a later op makes it invisible, whatever the document: elements
//! of one list that interleave (one incident, then another, then the first again in the same
//! country's markers) are all kept, because an `item`'s index depends on what is in the list.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde_json::Value;

use crate::Op;

/// The path a `timeline` op changes.
static TIMELINE: LazyLock<Vec<String>> = LazyLock::new(|| vec!["timeline".to_owned()]);

/// The part of the document an op changes (and may create the parents of).
fn region(op: &Op) -> &[String] {
    match op {
        Op::Set { path, .. }
        | Op::Merge { path, .. }
        | Op::Remove { path }
        | Op::Item { path, .. }
        | Op::Drop { path, .. } => path,
        Op::Timeline { .. } => &TIMELINE,
    }
}

/// Whether an `item` at `at` stays in a list kept at `limit` (so a later `item` of the same
/// element finds it there and replaces it).
fn within(at: usize, limit: Option<usize>) -> bool {
    limit.is_none_or(|l| at < l)
}

/// `ops` (several deltas' ops, in order) merged: see the module's promises.
pub fn merge_ops<'a>(ops: impl IntoIterator<Item = &'a Op>) -> Vec<Op> {
    let ops: Vec<&'a Op> = ops.into_iter().collect();
    // Walked from the end: each op is kept or left out knowing what the kept ops after it do.
    let mut kept: Vec<Option<Op>> = vec![None; ops.len()];
    // Per region: the nearest later kept op with exactly that region, or one strictly under it.
    let mut exact: HashMap<&'a [String], usize> = HashMap::new();
    let mut under: HashMap<&'a [String], usize> = HashMap::new();
    // Regions a later kept `set` replaces whole.
    let mut sets: HashSet<&'a [String]> = HashSet::new();
    // How many more timeline items the later kept timeline ops leave room for (the minimum,
    // over them, of their limit less the items prepended up to and including them); `None`
    // when no timeline op follows before something else touches the timeline.
    let mut timeline_room: Option<isize> = None;
    for (i, &op) in ops.iter().enumerate().rev() {
        let region = region(op);
        // Replaced whole later: the later `set` also makes every parent an object, which is
        // all that this op did outside the part it replaces.
        if (0..=region.len()).any(|n| sets.contains(&region[..n])) {
            continue;
        }
        // The nearest later kept op whose region holds, is, or is under this one's: only it
        // can depend on what this op did.
        let next = (0..=region.len())
            .filter_map(|n| exact.get(&region[..n]))
            .chain(under.get(region))
            .min()
            .copied();
        let next_op = next.and_then(|j| kept[j].as_mut());
        let left_out = match (op, next_op) {
            // Changes nothing.
            (Op::Merge { value, .. }, _) if !value.is_object() => true,
            (Op::Remove { path } | Op::Drop { path, .. }, _) if path.is_empty() => true,
            // Two merges of one object with nothing between that touches it: one merge, the
            // later values winning, where the later one is.
            (
                Op::Merge {
                    path,
                    value: Value::Object(fields),
                },
                Some(Op::Merge {
                    path: later_path,
                    value: Value::Object(later),
                }),
            ) if later_path == path => {
                for (key, value) in fields {
                    later.entry(key.clone()).or_insert_with(|| value.clone());
                }
                true
            }
            // The same element put into the same list again, nothing between touching it.
            (
                Op::Item {
                    path,
                    at,
                    value,
                    limit,
                },
                Some(Op::Item {
                    path: later_path,
                    at: later_at,
                    value: later_value,
                    limit: later_limit,
                }),
            ) => {
                later_path == path
                    && later_limit == limit
                    && value.get("id").is_some()
                    && later_value.get("id") == value.get("id")
                    && within(*at, *limit)
                    && within(*later_at, *limit)
            }
            // Taken out, then put in again or taken out again: the later op takes it out too.
            (
                Op::Drop { path, id },
                Some(Op::Item {
                    path: later_path,
                    value,
                    ..
                }),
            ) => later_path == path && value.get("id").and_then(Value::as_str) == Some(id),
            (
                Op::Drop { path, id },
                Some(Op::Drop {
                    path: later_path,
                    id: later_id,
                }),
            ) => later_path == path && later_id == id,
            // Pushed out of the timeline by the items prepended after it.
            (Op::Timeline { .. }, _) => timeline_room.is_some_and(|room| room <= 0),
            _ => false,
        };
        if left_out {
            continue;
        }
        match op {
            Op::Timeline { limit, .. } => {
                let limit = isize::try_from(*limit).unwrap_or(isize::MAX);
                timeline_room = Some(match timeline_room {
                    Some(room) => room.saturating_sub(1).min(limit.saturating_sub(1)),
                    None => limit.saturating_sub(1),
                });
            }
            // Something else touches the timeline: what comes before it is not pushed out
            // by the timeline ops after it.
            _ if region.is_empty() || region[0] == TIMELINE[0] => timeline_room = None,
            _ => {}
        }
        if let Op::Set { .. } = op {
            sets.insert(region);
        }
        exact.insert(region, i);
        for n in 0..region.len() {
            under.insert(&region[..n], i);
        }
        kept[i] = Some(op.clone());
    }
    kept.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply_ops;
    use proptest::prelude::*;
    use serde_json::json;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn a_burst_of_one_countrys_changes_keeps_the_latest_of_each() {
        let marker = |id: &str, n: u64| Op::Item {
            path: path(&["countries", "SO", "markers"]),
            at: 0,
            value: json!({"id": id, "n": n}),
            limit: Some(100),
        };
        let counts = |n: u64| Op::Set {
            path: path(&["countries", "SO", "incidents"]),
            value: json!({"open": n}),
        };
        let counters = |key: &str, n: u64| Op::Merge {
            path: path(&["counters"]),
            value: json!({ key: n }),
        };
        let ops = vec![
            counts(1),
            marker("a", 1),
            counters("open", 1),
            counts(2),
            marker("a", 2),
            counters("open", 2),
            counters("severe", 1),
            counts(3),
            marker("a", 3),
            counters("open", 3),
        ];
        let merged = merge_ops(&ops);
        assert_eq!(
            merged,
            vec![
                counts(3),
                marker("a", 3),
                Op::Merge {
                    path: path(&["counters"]),
                    value: json!({"open": 3, "severe": 1}),
                },
            ]
        );
        let mut one = json!({"counters": {"open": 0, "other": 7}});
        let mut all = one.clone();
        apply_ops(&mut one, &merged);
        apply_ops(&mut all, &ops);
        assert_eq!(one, all);
    }

    #[test]
    fn interleaved_elements_of_one_list_are_all_kept() {
        let item = |id: &str, at: usize| Op::Item {
            path: path(&["l"]),
            at,
            value: json!({ "id": id }),
            limit: None,
        };
        let ops = vec![item("x", 2), item("y", 0), item("x", 1)];
        assert_eq!(merge_ops(&ops), ops);
    }

    #[test]
    fn timeline_items_pushed_out_are_left_out() {
        let item = |n: u64| Op::Timeline {
            value: json!({ "n": n }),
            limit: 2,
        };
        let ops: Vec<Op> = (0..5).map(item).collect();
        assert_eq!(merge_ops(&ops), vec![item(3), item(4)]);
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just("timeline".to_owned())
        ]
    }

    fn paths() -> impl Strategy<Value = Vec<String>> {
        proptest::collection::vec(key(), 0..3)
    }

    fn id() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(json!("x")),
            Just(json!("y")),
            Just(json!("z")),
            Just(json!(1))
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            (0u8..3).prop_map(Value::from),
            id().prop_map(|id| json!({ "id": id })),
            (id(), 0u8..3).prop_map(|(id, n)| json!({ "id": id, "n": n })),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key(), inner, 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        let limit = proptest::option::of(0usize..4);
        prop_oneof![
            (paths(), value()).prop_map(|(path, value)| Op::Set { path, value }),
            (paths(), value()).prop_map(|(path, value)| Op::Merge { path, value }),
            paths().prop_map(|path| Op::Remove { path }),
            (paths(), 0usize..5, value(), limit).prop_map(|(path, at, value, limit)| Op::Item {
                path,
                at,
                value,
                limit
            }),
            (paths(), prop_oneof![Just("x"), Just("y")]).prop_map(|(path, id)| Op::Drop {
                path,
                id: id.to_owned()
            }),
            (value(), 0usize..4).prop_map(|(value, limit)| Op::Timeline { value, limit }),
        ]
    }

    /// Ops that mostly touch one list, by few ids: where merging has the most to do.
    fn list_op() -> impl Strategy<Value = Op> {
        let list = || Just(path(&["a", "b"]));
        prop_oneof![
            4 => (list(), 0usize..4, id(), 0u8..3, proptest::option::of(1usize..4)).prop_map(
                |(path, at, id, n, limit)| Op::Item { path, at, value: json!({"id": id, "n": n}), limit }
            ),
            2 => (list(), prop_oneof![Just("x"), Just("y")])
                .prop_map(|(path, id)| Op::Drop { path, id: id.to_owned() }),
            1 => (id(), 1usize..4).prop_map(|(value, limit)| Op::Timeline { value, limit }),
            1 => op(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn merged_ops_do_exactly_what_the_ops_do(
            doc in value(),
            ops in proptest::collection::vec(op(), 0..24),
        ) {
            let merged = merge_ops(&ops);
            prop_assert!(merged.len() <= ops.len());
            let (mut one, mut all) = (doc.clone(), doc);
            apply_ops(&mut one, &merged);
            apply_ops(&mut all, &ops);
            prop_assert_eq!(one, all, "merged: {:?}", merged);
        }

        #[test]
        fn merged_list_ops_do_exactly_what_the_ops_do(
            doc in value(),
            ops in proptest::collection::vec(list_op(), 0..24),
        ) {
            let merged = merge_ops(&ops);
            let (mut one, mut all) = (doc.clone(), doc);
            apply_ops(&mut one, &merged);
            apply_ops(&mut all, &ops);
            prop_assert_eq!(one, all, "merged: {:?}", merged);
        }
    }
}
