//! Delta operations: the wire format of a board change (MODEL.md, "Deltas"), and
//! [`apply_ops`], the reference implementation of what a page does with them.
//!
//! The page (`dashboards/web`) mirrors [`apply_ops`] line for line; the property tests of this
//! crate use it to check that a snapshot plus deltas equals the fold. Applying ops never fails
//! and never panics: a path through something that is not an object replaces it with an object,
//! removing a key that is not there does nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// One change to a board document. As JSON:
/// `{"op":"set","path":["countries","SO"],"value":{…}}`, `{"op":"remove","path":[…]}`,
/// `{"op":"item","path":["countries","SO","markers"],"at":0,"value":{"id":"…",…},"limit":100}`,
/// `{"op":"drop","path":["countries","SO","markers"],"id":"…"}`,
/// `{"op":"merge","path":["counters"],"value":{"open_incidents":12}}`,
/// `{"op":"timeline","value":{…},"limit":200}`.
///
/// `item` and `drop` (protocol 2) change one element of a list of objects that each carry an
/// `id` (markers, surges, orders, broadcasts), so that a change to one incident sends that
/// incident, not its country.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Replaces (or creates) the value at `path`, a list of object keys from the root.
    Set {
        /// Object keys from the root of the board; empty means the whole board.
        path: Vec<String>,
        /// The new value.
        value: Value,
    },
    /// Sets each key of `value` (an object) in the object at `path`, keeping the others:
    /// the counters that moved, in one op. A `value` that is not an object changes nothing.
    Merge {
        /// Object keys from the root of the board to the object.
        path: Vec<String>,
        /// The keys to set and their new values.
        value: Value,
    },
    /// Deletes the key at `path`; nothing happens if it is not there.
    Remove {
        /// Object keys from the root of the board; the last one is deleted.
        path: Vec<String>,
    },
    /// Puts one element into the list at `path`: the element with the same `id` as `value`
    /// (if any) is taken out, `value` goes in at index `at` (at the end when the list is
    /// shorter), and the list keeps at most `limit` elements (all when `None`).
    Item {
        /// Object keys from the root to the list; a missing or non-list value becomes `[]`.
        path: Vec<String>,
        /// Index of the element in the list after the op (newest first lists: 0 = newest).
        at: usize,
        /// The element; its `id` names it.
        value: Value,
        /// How many elements the list keeps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<usize>,
    },
    /// Takes the element whose `id` is `id` out of the list at `path`; nothing happens if it
    /// is not there.
    Drop {
        /// Object keys from the root to the list.
        path: Vec<String>,
        /// The element's `id`.
        id: String,
    },
    /// Prepends one item to the board's `timeline` array and keeps at most `limit` items.
    Timeline {
        /// The timeline item.
        value: Value,
        /// How many items the timeline keeps.
        limit: usize,
    },
}

/// Applies `ops` in order to a board document, as the page does. It touches nothing but what
/// the ops name: `position` and `as_of` come with the delta message and are the caller's to set.
pub fn apply_ops(board: &mut Value, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Set { path, value } => match path.split_last() {
                None => *board = value.clone(),
                Some((last, parents)) => {
                    object_at(board, parents).insert(last.clone(), value.clone());
                }
            },
            Op::Merge { path, value } => {
                if let Value::Object(fields) = value {
                    let target = object_at(board, path);
                    for (key, v) in fields {
                        target.insert(key.clone(), v.clone());
                    }
                }
            }
            Op::Remove { path } => {
                let parent = path
                    .split_last()
                    .and_then(|(last, parents)| Some((last, existing_object_at(board, parents)?)));
                if let Some((last, parent)) = parent {
                    parent.remove(last);
                }
            }
            Op::Item {
                path,
                at,
                value,
                limit,
            } => {
                let items = list_at(board, path);
                let id = value.get("id");
                items.retain(|v| id.is_none() || v.get("id") != id);
                let at = (*at).min(items.len());
                items.insert(at, value.clone());
                if let Some(limit) = limit {
                    items.truncate(*limit);
                }
            }
            Op::Drop { path, id } => {
                let parent = path
                    .split_last()
                    .and_then(|(last, parents)| Some((last, existing_object_at(board, parents)?)));
                if let Some(Value::Array(items)) = parent.and_then(|(last, p)| p.get_mut(last)) {
                    items.retain(|v| v.get("id").and_then(Value::as_str) != Some(id.as_str()));
                }
            }
            Op::Timeline { value, limit } => {
                let timeline = object_at(board, &[])
                    .entry("timeline")
                    .or_insert_with(|| Value::Array(Vec::new()));
                if !timeline.is_array() {
                    *timeline = Value::Array(Vec::new());
                }
                if let Value::Array(items) = timeline {
                    items.insert(0, value.clone());
                    items.truncate(*limit);
                }
            }
        }
    }
}

/// The list at `path`, creating it (or replacing a non-list with `[]`), and the objects on
/// the way as [`object_at`] does. An empty path names no list: the board is not one.
fn list_at<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Vec<Value> {
    let slot = match path.split_last() {
        Some((last, parents)) => object_at(root, parents)
            .entry(last.clone())
            .or_insert_with(|| Value::Array(Vec::new())),
        None => root,
    };
    if !slot.is_array() {
        *slot = Value::Array(Vec::new());
    }
    match slot {
        Value::Array(items) => items,
        // Just made a list above.
        _ => unreachable!("list_at made a list"),
    }
}

/// The object at `path`, creating (or replacing non-objects with) empty objects on the way.
fn object_at<'a>(root: &'a mut Value, path: &[String]) -> &'a mut Map<String, Value> {
    let mut here = root;
    for key in path {
        here = ensure_object(here)
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    ensure_object(here)
}

fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(map) => map,
        // Just made an object above.
        _ => unreachable!("ensure_object made an object"),
    }
}

/// The object at `path` if every step exists and is an object.
fn existing_object_at<'a>(
    root: &'a mut Value,
    path: &[String],
) -> Option<&'a mut Map<String, Value>> {
    let mut here = root;
    for key in path {
        here = here.as_object_mut()?.get_mut(key)?;
    }
    here.as_object_mut()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn ops_have_the_wire_shape_of_model_md() {
        let ops = vec![
            Op::Set {
                path: path(&["countries", "SO"]),
                value: json!({"code": "SO"}),
            },
            Op::Remove {
                path: path(&["countries", "ML"]),
            },
            Op::Timeline {
                value: json!({"text": "t"}),
                limit: 200,
            },
        ];
        let wire = serde_json::to_value(&ops).unwrap();
        assert_eq!(
            wire,
            json!([
                {"op": "set", "path": ["countries", "SO"], "value": {"code": "SO"}},
                {"op": "remove", "path": ["countries", "ML"]},
                {"op": "timeline", "value": {"text": "t"}, "limit": 200},
            ])
        );
        let back: Vec<Op> = serde_json::from_value(wire).unwrap();
        assert_eq!(back, ops);
    }

    #[test]
    fn set_creates_replaces_and_remove_deletes() {
        let mut doc = json!({"position": 3, "countries": {"ML": {"code": "ML"}}});
        apply_ops(
            &mut doc,
            &[
                Op::Set {
                    path: path(&["countries", "SO"]),
                    value: json!({"code": "SO"}),
                },
                Op::Remove {
                    path: path(&["countries", "ML"]),
                },
                Op::Remove {
                    path: path(&["countries", "XX", "deeper"]),
                },
                Op::Set {
                    path: path(&["counters"]),
                    value: json!({"open_incidents": 1}),
                },
            ],
        );
        assert_eq!(
            doc,
            json!({"position": 3, "countries": {"SO": {"code": "SO"}}, "counters": {"open_incidents": 1}})
        );
        // A path through a non-object makes an object of it.
        apply_ops(
            &mut doc,
            &[Op::Set {
                path: path(&["position", "x"]),
                value: json!(1),
            }],
        );
        assert_eq!(doc["position"], json!({"x": 1}));
        apply_ops(
            &mut doc,
            &[Op::Set {
                path: vec![],
                value: json!({"fresh": true}),
            }],
        );
        assert_eq!(doc, json!({"fresh": true}));
    }

    #[test]
    fn item_puts_one_element_by_id_and_drop_takes_it_out() {
        let mut doc =
            json!({"l": {"xs": [{"id": "c", "n": 3}, {"id": "b", "n": 2}, {"id": "a", "n": 1}]}});
        let item = |at: usize, id: &str, n: u64, limit: Option<usize>| Op::Item {
            path: path(&["l", "xs"]),
            at,
            value: json!({"id": id, "n": n}),
            limit,
        };
        // A new one at the front, the list kept at 3: the oldest leaves.
        apply_ops(&mut doc, &[item(0, "d", 4, Some(3))]);
        assert_eq!(
            doc["l"]["xs"],
            json!([{"id": "d", "n": 4}, {"id": "c", "n": 3}, {"id": "b", "n": 2}])
        );
        // A change in place.
        apply_ops(&mut doc, &[item(1, "c", 30, Some(3))]);
        assert_eq!(
            doc["l"]["xs"],
            json!([{"id": "d", "n": 4}, {"id": "c", "n": 30}, {"id": "b", "n": 2}])
        );
        // Dropped; one coming back in at the end; an index past the end means the end.
        apply_ops(
            &mut doc,
            &[
                Op::Drop {
                    path: path(&["l", "xs"]),
                    id: "d".into(),
                },
                Op::Drop {
                    path: path(&["l", "xs"]),
                    id: "zz".into(),
                },
                Op::Drop {
                    path: path(&["nothing", "here"]),
                    id: "d".into(),
                },
                item(7, "a", 1, None),
            ],
        );
        assert_eq!(
            doc["l"]["xs"],
            json!([{"id": "c", "n": 30}, {"id": "b", "n": 2}, {"id": "a", "n": 1}])
        );
        assert_eq!(doc.get("nothing"), None, "a drop creates nothing");
        // A merge sets the keys it names and keeps the others; a non-object merges nothing.
        let mut counters = json!({"counters": {"a": 1, "b": 2}});
        apply_ops(
            &mut counters,
            &[
                Op::Merge {
                    path: path(&["counters"]),
                    value: json!({"b": 3, "c": 4}),
                },
                Op::Merge {
                    path: path(&["counters"]),
                    value: json!(5),
                },
            ],
        );
        assert_eq!(counters, json!({"counters": {"a": 1, "b": 3, "c": 4}}));
        // Through a non-list: it becomes a list.
        let mut odd = json!({"l": 5});
        apply_ops(
            &mut odd,
            &[Op::Item {
                path: path(&["l"]),
                at: 0,
                value: json!({"id": "x"}),
                limit: None,
            }],
        );
        assert_eq!(odd, json!({"l": [{"id": "x"}]}));
        let wire = serde_json::to_value([item(0, "d", 4, None)]).unwrap();
        assert_eq!(
            wire,
            json!([{"op": "item", "path": ["l", "xs"], "at": 0, "value": {"id": "d", "n": 4}}])
        );
    }

    #[test]
    fn timeline_prepends_and_keeps_the_limit() {
        let mut doc = json!({"timeline": [{"n": 2}, {"n": 1}]});
        let item = |n: u64| Op::Timeline {
            value: json!({ "n": n }),
            limit: 3,
        };
        apply_ops(&mut doc, &[item(3), item(4)]);
        assert_eq!(doc["timeline"], json!([{"n": 4}, {"n": 3}, {"n": 2}]));
        let mut empty = json!({});
        apply_ops(&mut empty, &[item(1)]);
        assert_eq!(empty, json!({"timeline": [{"n": 1}]}));
    }
}
