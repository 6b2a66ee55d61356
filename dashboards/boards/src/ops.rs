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
/// `{"op":"timeline","value":{…},"limit":200}`.
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
    /// Deletes the key at `path`; nothing happens if it is not there.
    Remove {
        /// Object keys from the root of the board; the last one is deleted.
        path: Vec<String>,
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
            Op::Remove { path } => {
                let parent = path
                    .split_last()
                    .and_then(|(last, parents)| Some((last, existing_object_at(board, parents)?)));
                if let Some((last, parent)) = parent {
                    parent.remove(last);
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
