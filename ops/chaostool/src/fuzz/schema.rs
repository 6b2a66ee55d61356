//! What each HTTP route reads, from the OpenAPI document the gateway generates from its body
//! types (`gateway::openapi`, the document `GET /openapi.json` serves): for every route that
//! takes a JSON body, its fields, their types, which are required, their enum values and
//! ranges. From that, bodies the document calls valid (every required field, each of its
//! type, in range, from the enum) and bodies it calls invalid, each with one thing wrong (a
//! required field left out, a field of the wrong type, a value outside its enum or range, a
//! field the type does not have, not an object).
//!
//! The promise the HTTP target checks with them: a body the document calls invalid is never
//! answered 2xx (the gateway reads the same types the document is generated from). A valid
//! one may still be refused by a rule the schema cannot say (a person not on the roll call,
//! a random id that names nothing), with a 4xx like any other.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// How deep a schema is followed (the API's bodies nest three levels at most).
const MAX_DEPTH: usize = 8;
/// A field name no body type has.
const UNKNOWN_FIELD: &str = "fuzz_unknown_field";

/// The request body schema of each route of `gateway::ROUTES` (by index), `$ref`s resolved.
#[derive(Debug)]
pub(super) struct Bodies {
    by_route: Vec<Option<Arc<Value>>>,
    /// Every field name and enum value the document names: words the random bodies use.
    pub(super) names: Vec<String>,
}

impl Bodies {
    /// Reads the gateway's generated document.
    pub(super) fn from_gateway() -> anyhow::Result<Bodies> {
        let doc: Value = serde_json::from_str(gateway::openapi::json())?;
        Bodies::from_document(&doc)
    }

    pub(super) fn from_document(doc: &Value) -> anyhow::Result<Bodies> {
        let mut by_route = Vec::with_capacity(gateway::ROUTES.len());
        for route in gateway::ROUTES {
            let op = &doc["paths"][route.path][route.method.to_lowercase()];
            anyhow::ensure!(
                op.is_object(),
                "{} {} is not in the OpenAPI document",
                route.method,
                route.path
            );
            let schema = &op["requestBody"]["content"]["application/json"]["schema"];
            by_route.push(if schema.is_object() {
                Some(Arc::new(inline(doc, schema, 0)))
            } else {
                None
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for schema in by_route.iter().flatten() {
            collect_names(schema, &mut names);
        }
        Ok(Bodies {
            by_route,
            names: names.into_iter().collect(),
        })
    }

    /// The body schema of route `i`, if it reads one.
    pub(super) fn of(&self, i: usize) -> Option<Arc<Value>> {
        self.by_route.get(i).cloned().flatten()
    }

    /// How many routes read a body.
    pub(super) fn count(&self) -> usize {
        self.by_route.iter().flatten().count()
    }

    /// How many fields the bodies have in all (top level).
    pub(super) fn fields(&self) -> usize {
        self.by_route
            .iter()
            .flatten()
            .map(|s| s["properties"].as_object().map_or(0, Map::len))
            .sum()
    }
}

/// `schema` with every `$ref` replaced by what it names and every `allOf` merged.
fn inline(doc: &Value, schema: &Value, depth: usize) -> Value {
    if depth > MAX_DEPTH {
        return json!({});
    }
    if let Some(r) = schema["$ref"].as_str() {
        let target = r
            .strip_prefix('#')
            .and_then(|p| doc.pointer(p))
            .unwrap_or(&Value::Null);
        return inline(doc, target, depth + 1);
    }
    match schema {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let v = match k.as_str() {
                    "properties" => Value::Object(
                        v.as_object()
                            .map(|p| {
                                p.iter()
                                    .map(|(f, s)| (f.clone(), inline(doc, s, depth + 1)))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    ),
                    "items" => inline(doc, v, depth + 1),
                    "oneOf" | "anyOf" | "allOf" => Value::Array(
                        v.as_array()
                            .map(|a| a.iter().map(|s| inline(doc, s, depth + 1)).collect())
                            .unwrap_or_default(),
                    ),
                    _ => v.clone(),
                };
                out.insert(k.clone(), v);
            }
            if let Some(Value::Array(parts)) = out.remove("allOf") {
                for part in parts {
                    merge(&mut out, part);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Merges one `allOf` part into an object schema: its properties, its required fields.
fn merge(into: &mut Map<String, Value>, part: Value) {
    let Value::Object(part) = part else {
        return;
    };
    for (k, v) in part {
        match (k.as_str(), into.get_mut(&k)) {
            ("properties", Some(Value::Object(p))) => {
                if let Value::Object(more) = v {
                    p.extend(more);
                }
            }
            ("required", Some(Value::Array(r))) => {
                if let Value::Array(more) = v {
                    r.extend(more);
                }
            }
            _ => {
                into.insert(k, v);
            }
        }
    }
}

fn collect_names(schema: &Value, out: &mut std::collections::BTreeSet<String>) {
    if let Some(p) = schema["properties"].as_object() {
        for (f, s) in p {
            out.insert(f.clone());
            collect_names(s, out);
        }
    }
    if let Some(e) = schema["enum"].as_array() {
        out.extend(e.iter().filter_map(Value::as_str).map(str::to_owned));
    }
    for k in ["oneOf", "anyOf"] {
        for s in schema[k].as_array().into_iter().flatten() {
            collect_names(s, out);
        }
    }
    if schema["items"].is_object() {
        collect_names(&schema["items"], out);
    }
}

/// The JSON types a schema allows (`type` is a name or a list of names in OpenAPI 3.1).
fn types(schema: &Value) -> Vec<&str> {
    match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// A value `schema` calls valid. `words` feed the strings the schema does not constrain.
pub(super) fn valid(schema: &Value, words: &Arc<Vec<String>>) -> BoxedStrategy<Value> {
    valid_at(schema, words, 0)
}

fn valid_at(schema: &Value, words: &Arc<Vec<String>>, depth: usize) -> BoxedStrategy<Value> {
    if depth > MAX_DEPTH {
        return Just(json!({})).boxed();
    }
    if let Some(values) = schema["enum"].as_array().filter(|v| !v.is_empty()) {
        return proptest::sample::select(values.clone()).boxed();
    }
    if let Some(options) = schema["oneOf"]
        .as_array()
        .or(schema["anyOf"].as_array())
        .filter(|o| !o.is_empty())
    {
        let choices: Vec<BoxedStrategy<Value>> = options
            .iter()
            .map(|o| valid_at(o, words, depth + 1))
            .collect();
        return proptest::strategy::Union::new(choices).boxed();
    }
    let ts = types(schema);
    let non_null: Vec<&str> = ts.iter().copied().filter(|t| *t != "null").collect();
    let Some(ty) = non_null.first().copied() else {
        return if ts.contains(&"null") {
            Just(Value::Null).boxed()
        } else {
            // No type: anything goes; an object is the usual thing.
            Just(json!({})).boxed()
        };
    };
    let value = match ty {
        "object" => object(schema, words, depth),
        "array" => {
            let item = valid_at(&schema["items"], words, depth + 1);
            let min = schema["minItems"].as_u64().unwrap_or(1) as usize;
            let max = schema["maxItems"]
                .as_u64()
                .map_or(min + 3, |m| (m as usize).min(min + 3));
            proptest::collection::vec(item, min..=max.max(min))
                .prop_map(Value::Array)
                .boxed()
        }
        "integer" => {
            let lo = schema["minimum"].as_i64().unwrap_or(0);
            let hi = schema["maximum"]
                .as_i64()
                .unwrap_or(lo.saturating_add(1_000));
            (lo..=hi.max(lo)).prop_map(Value::from).boxed()
        }
        "number" => {
            let lo = schema["minimum"].as_f64().unwrap_or(-90.0);
            let hi = schema["maximum"].as_f64().unwrap_or(90.0);
            (lo..=hi.max(lo)).prop_map(Value::from).boxed()
        }
        "boolean" => any::<bool>().prop_map(Value::from).boxed(),
        _ => string(schema, words),
    };
    if ts.contains(&"null") {
        prop_oneof![4 => value, 1 => Just(Value::Null)].boxed()
    } else {
        value
    }
}

fn object(schema: &Value, words: &Arc<Vec<String>>, depth: usize) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let mut fields: Vec<BoxedStrategy<Option<(String, Value)>>> = Vec::new();
    for (name, s) in schema["properties"].as_object().into_iter().flatten() {
        let name = name.clone();
        let value = valid_at(s, words, depth + 1);
        fields.push(if required.contains(&name) {
            value.prop_map(move |v| Some((name.clone(), v))).boxed()
        } else {
            proptest::option::of(value.prop_map(move |v| (name.clone(), v))).boxed()
        });
    }
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect()))
        .boxed()
}

fn string(schema: &Value, words: &Arc<Vec<String>>) -> BoxedStrategy<Value> {
    match schema["format"].as_str() {
        Some("uuid") => any::<u128>()
            .prop_map(|n| Value::from(Uuid::from_u128(n).to_string()))
            .boxed(),
        // Mostly a recent past (reports may be at most 30 days old), sometimes to come
        // (deadlines).
        Some("date-time") => (-7 * 24 * 60..24 * 60i64)
            .prop_map(|minutes| {
                let at = time::OffsetDateTime::now_utc() + time::Duration::minutes(minutes);
                Value::from(
                    at.format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                )
            })
            .boxed(),
        _ => {
            let mut examples: Vec<Value> =
                schema["examples"].as_array().cloned().unwrap_or_default();
            examples.extend(words.iter().map(|w| Value::from(w.as_str())));
            prop_oneof![
                3 => "[A-Za-z][A-Za-z0-9 ._-]{0,30}".prop_map(Value::from),
                1 => proptest::sample::select(examples),
            ]
            .boxed()
        }
    }
}

/// What is wrong with an invalid body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    MissingField,
    WrongType,
    OutOfEnum,
    OutOfRange,
    UnknownField,
    NotAnObject,
}

impl Fault {
    /// Every fault, for drawing one.
    pub(super) const ALL: [Fault; 6] = [
        Fault::MissingField,
        Fault::WrongType,
        Fault::OutOfEnum,
        Fault::OutOfRange,
        Fault::UnknownField,
        Fault::NotAnObject,
    ];
}

/// A body `schema` (an object) calls invalid, built from a valid one with one fault; `None`
/// where the fault does not apply to the schema (no required field to leave out, …).
pub(super) fn invalid(schema: &Value, mut body: Value, fault: Fault, pick: usize) -> Option<Value> {
    let props = schema["properties"].as_object();
    let Value::Object(fields) = &mut body else {
        return None;
    };
    match fault {
        Fault::MissingField => {
            let required: Vec<&str> = schema["required"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let name = required.get(pick % required.len().max(1))?;
            fields.remove(*name)?;
        }
        Fault::UnknownField => {
            if schema["additionalProperties"] != Value::Bool(false) {
                return None;
            }
            fields.insert(UNKNOWN_FIELD.to_owned(), json!(1));
        }
        Fault::NotAnObject => return Some(json!([body])),
        Fault::WrongType | Fault::OutOfEnum | Fault::OutOfRange => {
            let props: Vec<(&String, &Value)> = props?
                .iter()
                .filter(|(_, s)| match fault {
                    Fault::WrongType => wrong_type(s).is_some(),
                    Fault::OutOfEnum => s["enum"].is_array(),
                    _ => s["minimum"].is_number() || s["maximum"].is_number(),
                })
                .collect();
            let (name, s) = props.get(pick % props.len().max(1))?;
            let bad = match fault {
                Fault::WrongType => wrong_type(s)?,
                Fault::OutOfEnum => json!("\u{1}not-one-of-them"),
                _ => {
                    let below = s["minimum"].as_f64().map(|m| m - 1.0);
                    let above = s["maximum"].as_f64().map(|m| m + 1.0);
                    let out = if pick.is_multiple_of(2) {
                        above.or(below)
                    } else {
                        below.or(above)
                    }?;
                    if types(s).contains(&"integer") {
                        json!(out as i64)
                    } else {
                        json!(out)
                    }
                }
            };
            fields.insert((*name).clone(), bad);
        }
    }
    Some(body)
}

/// A value of a JSON type `schema` does not allow, when there is one that is surely wrong.
fn wrong_type(schema: &Value) -> Option<Value> {
    if schema["oneOf"].is_array() || schema["anyOf"].is_array() {
        // A union of strings and objects (an audience): a number is neither.
        return Some(json!(7.5));
    }
    let ts = types(schema);
    let candidates = [
        ("string", json!(7)),
        ("integer", json!("seven")),
        ("number", json!("seven")),
        ("boolean", json!("yes")),
        ("array", json!({"not": "a list"})),
        ("object", json!(["not", "an object"])),
    ];
    let ty = ts.iter().find(|t| **t != "null")?;
    candidates
        .iter()
        .find(|(t, _)| t == ty)
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    use super::*;

    fn route(method: &str, path: &str) -> usize {
        gateway::ROUTES
            .iter()
            .position(|r| r.method == method && r.path == path)
            .unwrap()
    }

    #[test]
    fn every_body_route_of_the_gateway_has_its_fields_from_the_document() {
        let b = Bodies::from_gateway().unwrap();
        let report = b.of(route("POST", "/api/v1/incidents")).unwrap();
        for f in [
            "id",
            "country",
            "category",
            "severity",
            "title",
            "occurred_at",
        ] {
            assert!(
                report["required"].as_array().unwrap().contains(&json!(f)),
                "{f}: {report}"
            );
        }
        assert_eq!(report["properties"]["severity"]["maximum"], 5);
        assert!(
            report["properties"]["country"]["enum"].is_array(),
            "refs resolved"
        );
        assert!(b.of(route("GET", "/api/v1/incidents")).is_none());
        let takes_body = gateway::ROUTES
            .iter()
            .filter(|r| r.method == "POST" || r.method == "PUT")
            .count();
        assert_eq!(b.count(), takes_body);
        assert!(b.names.iter().any(|n| n == "armed_conflict"), "enum values");
        assert!(b.names.iter().any(|n| n == "lat"), "nested fields");
    }

    #[test]
    fn the_valid_bodies_are_read_by_the_gateway_types_and_the_invalid_ones_are_not() {
        let b = Bodies::from_gateway().unwrap();
        let words = Arc::new(b.names.clone());
        let mut runner = TestRunner::deterministic();
        let report = b.of(route("POST", "/api/v1/incidents")).unwrap();
        let strategy = valid(&report, &words);
        for i in 0..200 {
            let body = strategy.new_tree(&mut runner).unwrap().current();
            let mut fields = body.as_object().unwrap().clone();
            assert!(fields.remove("id").unwrap().is_string());
            let typed: Result<gateway::bodies::ReportIncident, _> =
                events::codec::from_value(Value::Object(fields.clone()));
            assert!(typed.is_ok(), "{body}: {typed:?}");
            for fault in Fault::ALL {
                let Some(bad) = invalid(&report, Value::Object(fields.clone()), fault, i) else {
                    continue;
                };
                let typed: Result<gateway::bodies::ReportIncident, _> =
                    events::codec::from_value(bad.clone());
                assert!(typed.is_err(), "{fault:?}: {bad} was read");
            }
        }
    }
}
