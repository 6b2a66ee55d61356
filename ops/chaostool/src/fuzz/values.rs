//! The generators the targets build their inputs from: edge words, numbers and lengths,
//! leaf and nested JSON keyed with learned field names, event data of a known type (random,
//! or valid data with up to three changes), JSON nested thousands deep, and damage to JSON
//! text (cut short, a byte changed, wrapped in an array). Each is a proptest strategy, so a
//! failing input shrinks.

use std::sync::Arc;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::catalog::{Catalog, remove_at, set_at};

/// Text that sits on an edge somewhere: countries, dates, ids, roles, views, odd characters.
pub(super) const EDGE_WORDS: &[&str] = &[
    "",
    " ",
    "\t\n",
    "SO",
    "so",
    "KE",
    "XX",
    "ZZZ",
    "S",
    "duty",
    "wall_screen",
    "situation",
    "field_officer",
    "duty_officer",
    "admin",
    "crisis_manager",
    "any",
    "no_stream",
    "2026-11-27T01:00:00Z",
    "2026-11-27T01:00:00+14:00",
    "2026-11-27T01:00:00.123456789-12:00",
    "2026-02-30T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z",
    "+10000-01-01T00:00:00Z",
    "2026-11-27",
    "00000000-0000-0000-0000-000000000000",
    "0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f",
    "0190A5D2-7F3E-7C1A-9B1E-1A2B3C4D5E6F",
    "incident-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f",
    "SO-MOG",
    "SO-MOG-01",
    "amina.hassan",
    "user.1",
    "a reason",
    "SOM-BAN",
    "SOM-MGQ",
    "Mogadishu",
    "\u{0}",
    "é",
    "\u{202e}evil",
    "😀",
    "\u{feff}",
    "<script>",
    "'; DROP TABLE",
    "%00",
    "../..",
    "null",
];

/// Numbers that sit on an edge somewhere: zero, signs, type limits, coordinates, levels.
pub(super) fn edge_numbers() -> Vec<Value> {
    vec![
        json!(0),
        json!(1),
        json!(-1),
        json!(2),
        json!(3),
        json!(5),
        json!(6),
        json!(7),
        json!(50),
        json!(51),
        json!(200),
        json!(255),
        json!(256),
        json!(500),
        json!(501),
        json!(65_535),
        json!(65_536),
        json!(u32::MAX),
        json!(u64::from(u32::MAX) + 1),
        json!(i64::MAX),
        json!(i64::MIN),
        json!(u64::MAX),
        json!(0.5),
        json!(-0.0),
        json!(1e308),
        json!(-1e308),
        json!(5e-324),
        json!(2.04),
        json!(45.34),
        json!(90.0),
        json!(90.000_001),
        json!(-90.0),
        json!(180.0),
        json!(-180.5),
        json!(100_000.0),
        json!(100_000.1),
        json!(1_000_000_000_000u64),
    ]
}

/// Lengths either side of the domain's limits.
const EDGE_LENGTHS: &[usize] = &[
    32, 33, 64, 65, 128, 129, 200, 201, 250, 251, 2_000, 2_001, 10_000, 10_001, 20_000, 20_001,
];

/// A leaf JSON value: edge numbers and words, random ones, UUIDs, long text.
fn leaf(c: &Catalog) -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        3 => proptest::sample::select(edge_numbers()),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        6 => proptest::sample::select(c.words.clone()).prop_map(Value::from),
        2 => "\\PC{0,24}".prop_map(Value::from),
        2 => any::<u128>().prop_map(|n| Value::from(Uuid::from_u128(n).to_string())),
        1 => (proptest::sample::select(EDGE_LENGTHS), prop_oneof![Just('x'), Just(' '), Just('é')])
            .prop_map(|(n, ch)| Value::from(std::iter::repeat_n(ch, n).collect::<String>())),
    ]
    .boxed()
}

/// A key: a learned field name mostly, sometimes anything.
pub(super) fn key(c: &Catalog) -> BoxedStrategy<String> {
    prop_oneof![
        8 => proptest::sample::select(c.keys.clone()),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// Any JSON value, up to three levels deep, its objects keyed with learned names.
pub(super) fn json_value(c: &Catalog) -> BoxedStrategy<Value> {
    let keys = key(c);
    leaf(c)
        .prop_recursive(3, 24, 6, move |inner| {
            prop_oneof![
                vec(inner.clone(), 0..6).prop_map(Value::Array),
                vec((keys.clone(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

/// `(type, version, data)`: a known type (mostly) with an object of its own fields, each
/// present or not, each a random or edge value, sometimes with a field it does not have.
pub(super) fn event_data(c: &Arc<Catalog>) -> BoxedStrategy<(String, u32, Value)> {
    let value = json_value(c);
    let keys = key(c);
    let catalog = c.clone();
    (0..c.types.len())
        .prop_flat_map(move |i| {
            let t = catalog.types[i].clone();
            let name = t.name.to_owned();
            let ty = prop_oneof![
                10 => Just(name.clone()),
                1 => Just(name.to_lowercase()),
                1 => "[A-Za-z]{0,24}",
            ];
            let v = prop_oneof![
                8 => Just(t.v),
                2 => 0..=t.v + 2,
                1 => any::<u32>(),
            ];
            let fields = vec(
                proptest::option::weighted(0.85, value.clone()),
                t.fields.len(),
            );
            let extra = proptest::option::weighted(0.1, (keys.clone(), value.clone()));
            (ty, v, fields, extra).prop_map(move |(ty, v, values, extra)| {
                let mut data = Map::new();
                for (f, x) in t.fields.iter().zip(values) {
                    if let Some(x) = x {
                        data.insert(f.clone(), x);
                    }
                }
                if let Some((k, x)) = extra {
                    data.insert(k, x);
                }
                (ty, v, Value::Object(data))
            })
        })
        .boxed()
}

/// One change to valid data.
#[derive(Debug, Clone)]
enum Mutation {
    /// The value at the n-th pointer becomes this.
    Replace(usize, Value),
    /// The value at the n-th pointer goes.
    Remove(usize),
    /// A field it does not have.
    Add(String, Value),
}

/// `(type, version, data)`: a solved type's valid data with up to three changes (none in
/// one case of four: the valid event itself, to exercise the round trip).
pub(super) fn seeded_event(c: &Arc<Catalog>) -> BoxedStrategy<(String, u32, Value)> {
    let seeds = c.seeds();
    if seeds.is_empty() {
        return event_data(c);
    }
    let mutation = prop_oneof![
        6 => (any::<usize>(), json_value(c)).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => any::<usize>().prop_map(Mutation::Remove),
        1 => (key(c), json_value(c)).prop_map(|(k, v)| Mutation::Add(k, v)),
    ];
    let n = seeds.len();
    (
        0..n,
        prop_oneof![1 => Just(0usize), 3 => 1usize..4],
        vec(mutation, 3),
        prop_oneof![12 => Just(None), 1 => any::<u32>().prop_map(Some)],
    )
        .prop_map(move |(i, changes, mutations, v)| {
            let (name, current, seed, pointers) = &seeds[i];
            let mut data = seed.clone();
            for m in mutations.into_iter().take(changes) {
                match m {
                    Mutation::Replace(p, x) if !pointers.is_empty() => {
                        set_at(&mut data, &pointers[p % pointers.len()], x);
                    }
                    Mutation::Remove(p) if !pointers.is_empty() => {
                        remove_at(&mut data, &pointers[p % pointers.len()]);
                    }
                    Mutation::Add(k, x) => {
                        if let Some(obj) = data.as_object_mut() {
                            obj.insert(k, x);
                        }
                    }
                    _ => {}
                }
            }
            ((*name).to_owned(), v.unwrap_or(*current), data)
        })
        .boxed()
}

/// JSON text nested `n` deep (arrays or objects), optionally left open.
pub(super) fn nested(n: usize, objects: bool, closed: bool) -> Vec<u8> {
    let (open, close): (&[u8], &[u8]) = if objects {
        (b"{\"a\":", b"}")
    } else {
        (b"[", b"]")
    };
    let mut out = Vec::with_capacity(n * (open.len() + close.len()) + 1);
    for _ in 0..n {
        out.extend_from_slice(open);
    }
    out.extend_from_slice(b"1");
    if closed {
        for _ in 0..n {
            out.extend_from_slice(close);
        }
    }
    out
}

/// Damages JSON text: cut short, one byte changed, wrapped in an array.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    None,
    Cut(usize),
    Flip(usize, u8),
    InArray,
}

pub(super) fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Cut),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        1 => Just(Damage::InArray),
    ]
    .boxed()
}

pub(super) fn apply(damage: &Damage, mut bytes: Vec<u8>) -> Vec<u8> {
    match *damage {
        Damage::None => bytes,
        Damage::Cut(i) if !bytes.is_empty() => {
            bytes.truncate(i % bytes.len());
            bytes
        }
        Damage::Flip(i, b) if !bytes.is_empty() => {
            let n = bytes.len();
            bytes[i % n] = b;
            bytes
        }
        Damage::InArray => {
            let mut out = Vec::with_capacity(bytes.len() + 2);
            out.push(b'[');
            out.extend_from_slice(&bytes);
            out.push(b']');
            out
        }
        _ => bytes,
    }
}
