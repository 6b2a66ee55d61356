//! What the decoders know, learned from their own error messages: every event type with its
//! fields (one level of nesting too), every enum value they name, and valid data of most
//! types, found by a small greedy solver that follows the decoder's answers (a missing field
//! gets the first candidate that moves the error on). The generators in [`super::values`]
//! build from this, so random data looks like the domain's own.

use std::collections::{BTreeMap, BTreeSet};

use events::domain::DomainEvent;
use serde_json::{Value, json};

use super::values::{EDGE_WORDS, edge_numbers};

/// A probe no real field or value is called.
const PROBE: &str = "\u{1}fuzz";

/// One known event type.
#[derive(Debug, Clone)]
pub(super) struct TypeInfo {
    pub(super) name: &'static str,
    pub(super) v: u32,
    pub(super) fields: Vec<String>,
    /// The fields of a field that is a struct (or a list of them).
    pub(super) nested: BTreeMap<String, Vec<String>>,
    /// Valid data of this type, found by [`solve`], and the JSON pointer of each of its
    /// values: what the mutations start from.
    pub(super) seed: Option<(Value, Vec<String>)>,
}

/// Every event type with its fields, every field name (nested ones too) and every enum value
/// the decoders name, plus edge values: what random data is built from.
#[derive(Debug)]
pub(super) struct Catalog {
    pub(super) types: Vec<TypeInfo>,
    pub(super) keys: Vec<String>,
    pub(super) words: Vec<String>,
}

/// The names between backticks of a serde error (`unknown field `x`, expected one of `a`…`).
fn backticked(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split('`')
        .skip(1)
        .step_by(2)
        .filter(|n| *n != PROBE && !n.is_empty())
        .map(str::to_owned)
}

impl Catalog {
    pub(super) fn learn() -> Catalog {
        let mut keys = BTreeSet::new();
        let mut words: BTreeSet<String> = EDGE_WORDS.iter().map(|w| (*w).to_owned()).collect();
        let mut types = Vec::new();
        for (name, cat, v) in DomainEvent::TYPES {
            words.insert((*name).to_owned());
            words.insert((*cat).to_owned());
            let mut fields = BTreeSet::new();
            if let Err(e) = DomainEvent::decode_data(name, *v, json!({ PROBE: 0 }))
                && e.contains("unknown field")
            {
                fields.extend(backticked(&e));
            }
            // One level down: a struct's fields, an enum's values, in objects and in lists.
            let mut nested: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for f in &fields {
                for probe in [
                    json!({ f: { PROBE: 0 } }),
                    json!({ f: [{ PROBE: 0 }] }),
                    json!({ f: PROBE }),
                    json!({ f: [PROBE] }),
                ] {
                    let Err(e) = DomainEvent::decode_data(name, *v, probe) else {
                        continue;
                    };
                    if e.contains("unknown field") {
                        let inner: Vec<String> = backticked(&e).collect();
                        keys.extend(inner.iter().cloned());
                        nested.entry(f.clone()).or_default().extend(inner);
                    } else if e.contains("unknown variant") {
                        words.extend(backticked(&e));
                    }
                }
            }
            keys.extend(fields.iter().cloned());
            types.push(TypeInfo {
                name,
                v: *v,
                fields: fields.into_iter().collect(),
                nested,
                seed: None,
            });
        }
        // What the gateway and the store read besides the domain's fields.
        for k in [
            "id",
            "type",
            "v",
            "data",
            "meta",
            "actor",
            "stream",
            "events",
            "expected_version",
            "username",
            "password",
            "change",
            "area",
            "level",
            "reason",
            "board",
            "view",
            "since",
            "token",
            "incident",
            "case",
            "order",
            "surge",
            "clearance",
            "broadcast",
        ] {
            keys.insert(k.to_owned());
        }
        let words: Vec<String> = words.into_iter().collect();
        let mut candidates = vec![json!({}), json!([{}]), json!([])];
        candidates.extend(words.iter().map(|w| Value::from(w.as_str())));
        candidates.extend(edge_numbers());
        candidates.extend([json!(true), json!(false)]);
        for t in &mut types {
            t.seed = solve(t, &candidates).map(|seed| {
                let mut pointers = Vec::new();
                pointers_of(&seed, "", &mut pointers);
                (seed, pointers)
            });
        }
        Catalog {
            types,
            keys: keys.into_iter().collect(),
            words,
        }
    }

    /// Adds the field names and enum values of the API's bodies (from its OpenAPI document)
    /// to the names random data is keyed with and the words it is made of.
    pub(super) fn learn_names(&mut self, names: &[String]) {
        for n in names {
            if !self.keys.contains(n) {
                self.keys.push(n.clone());
            }
            if !self.words.contains(n) {
                self.words.push(n.clone());
            }
        }
    }

    pub(super) fn seeds(&self) -> Vec<(&'static str, u32, Value, Vec<String>)> {
        self.types
            .iter()
            .filter_map(|t| {
                let (seed, pointers) = t.seed.as_ref()?;
                Some((t.name, t.v, seed.clone(), pointers.clone()))
            })
            .collect()
    }
}

/// What a decoder said about some data.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Ok,
    /// `missing field `x``.
    Missing(String),
    /// A validation error of this field path (`location.lat`, `legs[0].to`).
    Invalid(String),
    /// Any other error (a wrong type, an unknown variant).
    Unreadable,
}

fn verdict(r: &Result<DomainEvent, String>) -> Verdict {
    let Err(e) = r else {
        return Verdict::Ok;
    };
    if let Some(rest) = e.split("unreadable data: missing field `").nth(1) {
        return Verdict::Missing(rest.split('`').next().unwrap_or_default().to_owned());
    }
    if let Some(rest) = e.split(": invalid data: ").nth(1) {
        return Verdict::Invalid(rest.split(": ").next().unwrap_or_default().to_owned());
    }
    Verdict::Unreadable
}

/// A validation error's field path as a JSON pointer: `legs[0].to` → `/legs/0/to`.
fn pointer_of(path: &str) -> String {
    let mut p = String::from("/");
    for ch in path.chars() {
        match ch {
            '.' | '[' => p.push('/'),
            ']' => {}
            c => p.push(c),
        }
    }
    p
}

/// Sets the value at `pointer` (its parent must exist).
pub(super) fn set_at(data: &mut Value, pointer: &str, v: Value) -> bool {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return false;
    };
    match data.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.insert(last.to_owned(), v);
            true
        }
        Some(Value::Array(a)) => match last.parse::<usize>().ok().and_then(|i| a.get_mut(i)) {
            Some(slot) => {
                *slot = v;
                true
            }
            None => false,
        },
        _ => false,
    }
}

/// Removes the value at `pointer`.
pub(super) fn remove_at(data: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    match data.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(last);
        }
        Some(Value::Array(a)) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < a.len()) {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// Every value's pointer in `v`.
fn pointers_of(v: &Value, at: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{at}/{k}");
                out.push(p.clone());
                pointers_of(x, &p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers_of(x, &p, out);
            }
        }
        _ => {}
    }
}

/// Where a missing field `f` goes: the top level, or inside a field that is a struct (or a
/// list of them) holding such a field.
fn missing_pointer(t: &TypeInfo, data: &Value, f: &str) -> Option<String> {
    if t.fields.iter().any(|x| x == f) && data.get(f).is_none() {
        return Some(format!("/{f}"));
    }
    for (parent, inner) in &t.nested {
        if !inner.iter().any(|x| x == f) {
            continue;
        }
        match data.get(parent) {
            Some(Value::Object(m)) if !m.contains_key(f) => return Some(format!("/{parent}/{f}")),
            Some(Value::Array(a)) => {
                if let Some(Value::Object(m)) = a.first()
                    && !m.contains_key(f)
                {
                    return Some(format!("/{parent}/0/{f}"));
                }
            }
            _ => {}
        }
    }
    None
}

/// Valid data of type `t`, built greedily from the decoder's own answers: a missing field
/// gets the first candidate that moves the error on, a field the validation refuses gets
/// the first candidate it accepts. `None` when that does not get there.
fn solve(t: &TypeInfo, candidates: &[Value]) -> Option<Value> {
    let decode = |d: &Value| verdict(&DomainEvent::decode_data(t.name, t.v, d.clone()));
    let mut data = json!({});
    for _ in 0..64 {
        let target = match decode(&data) {
            Verdict::Ok => return Some(data),
            Verdict::Unreadable => return None,
            Verdict::Invalid(path) if path.is_empty() => return None,
            Verdict::Invalid(path) => pointer_of(&path),
            Verdict::Missing(f) => missing_pointer(t, &data, &f)?,
        };
        let next = candidates.iter().find_map(|c| {
            let mut next = data.clone();
            if !set_at(&mut next, &target, c.clone()) {
                return None;
            }
            let progress = match decode(&next) {
                Verdict::Ok => true,
                Verdict::Unreadable => false,
                Verdict::Invalid(p) => pointer_of(&p) != target,
                Verdict::Missing(f) => missing_pointer(t, &next, &f).is_some_and(|p| p != target),
            };
            progress.then_some(next)
        })?;
        data = next;
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_catalog_learns_fields_and_enum_values_from_the_decoders() {
        let c = Catalog::learn();
        let reported = c
            .types
            .iter()
            .find(|t| t.name == "IncidentReported")
            .unwrap();
        for f in ["country", "category", "severity", "title", "occurred_at"] {
            assert!(reported.fields.iter().any(|x| x == f), "{f}: {reported:?}");
        }
        assert!(
            c.keys.iter().any(|k| k == "lat"),
            "nested fields are learned"
        );
        assert!(
            c.words.iter().any(|w| w == "armed_conflict"),
            "enum values are learned"
        );
    }

    #[test]
    fn valid_data_is_found_for_most_event_types() {
        let c = Catalog::learn();
        let seeds = c.seeds();
        for (name, v, data, _) in &seeds {
            assert!(
                DomainEvent::decode_data(name, *v, data.clone()).is_ok(),
                "{name}: {data}"
            );
        }
        let missing: Vec<&str> = c
            .types
            .iter()
            .filter(|t| t.seed.is_none())
            .map(|t| t.name)
            .collect();
        assert!(
            seeds.len() * 4 >= c.types.len() * 3,
            "not solved: {missing:?}"
        );
    }
}
