//! `fuzz --minutes N`: random and structured input against the four places where bytes from
//! outside enter Vigil, each for its share of the time budget. cargo-fuzz needs a nightly
//! compiler these machines cannot get, so proptest's generators are driven in a loop
//! (`TestRunner` + `ValueTree`, failures of in-process targets shrunk) until the time is up.
//!
//! 1. **codec** (in process, while the centre starts): `codec::decode_recorded`,
//!    `codec::decode_json` and `DomainEvent::decode` of arbitrary bytes, of JSON text (whole,
//!    cut short, nested thousands deep) and of well-formed recorded events with a random type,
//!    version and data. The data is built from each event type's own field names and enum
//!    values, learned from its decoder's error messages, with edge values (limits, dates,
//!    coordinates, huge numbers) — or is valid data of the type (found by a small solver
//!    driven by the same messages) with up to three values changed. Never a panic; an unknown type or a version newer than the
//!    build is `Decoded::Unknown` with a reason; a `Known` event is valid and survives a
//!    round trip through the log's envelope unchanged.
//! 2. **append**: `store::incoming::decode_append` — what the store's NATS handler reads an
//!    append with (borrowed envelopes, `data` kept as sent) — and `codec::decode_append`, the
//!    same rules over a `serde_json::Value` tree, on random bytes and near-valid requests,
//!    under the default and under small limits: never a panic, the two accept and refuse the
//!    same requests (except at a size limit, where `data` kept as sent may measure a few bytes
//!    apart from its tree encoding), and whatever they accept keeps every rule (1..max
//!    events, a 1-64 character type, an actor, the size limits, distinct ids). Then the
//!    requests both refuse are published on `vigil.store.append` to the running store: each
//!    gets a typed `invalid` reply, the log head does not move, the store stays up, and a
//!    valid append still works afterwards.
//! 3. **http**: every route of `gateway::ROUTES`, its `{id}`/`{area}`/`{board}` filled with
//!    valid and random values, random queries, and bodies of random JSON (often shaped like
//!    the domain's own fields), random bytes, bodies over the 64 KiB limit, deep nesting and
//!    wrong content types, with a duty officer's token: every answer is a 2xx, a 4xx or a
//!    503; every 4xx and 503 is JSON `{"error":{"code","message"}}`; nothing takes longer
//!    than 10 s (plus [`GRACE`]); no process dies; the centre is still ready afterwards.
//! 4. **ws**: `/ws` with its own, a foreign or no `Origin`, then random text, binary, ping,
//!    oversized and random subscribe messages (valid, near-miss and garbage tokens): a
//!    foreign origin gets a JSON 403, every server frame is protocol JSON, an `error` is
//!    followed by a close frame, only an oversized frame may cut the connection without one,
//!    nothing hangs, no process dies, and a valid subscribe still gets its snapshot after.
//!
//! The centre is the real one (separate `vigil` processes, see [`crate::centre`]). Memory
//! stays bounded: inputs are generated one at a time with a few in flight on the network,
//! answers are read up to a cap, and each target keeps at most [`KEEP`] failing examples,
//! truncated.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use events::codec::{self, Limits};
use events::domain::DomainEvent;
use events::{AppendReply, Decoded, ErrorCode, RecordedEvent};
use futures::{SinkExt, StreamExt};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::centre::Centre;

/// Failing examples kept per target.
const KEEP: usize = 5;
/// The gateway gives a service 10 s to answer a command; an answer may take that long, plus
/// this for a loaded two-core machine, before it counts as a hang.
pub const GRACE: Duration = Duration::from_secs(2);
/// The longest an HTTP answer may take.
const HANG: Duration = Duration::from_secs(10);
/// Most bytes of an HTTP answer read (the rest is not needed to judge it).
const MAX_ANSWER: u64 = 8 * 1024 * 1024;
/// Requests in flight at once on the network targets.
const HTTP_IN_FLIGHT: usize = 6;
const WIRE_IN_FLIGHT: usize = 16;
const WS_IN_FLIGHT: usize = 8;

/// What one target did.
#[derive(Debug, Default)]
pub struct Tally {
    /// The target's name.
    pub name: &'static str,
    /// Inputs tried.
    pub cases: u64,
    /// Inputs whose promise did not hold.
    pub failures: u64,
    /// Figures worth printing (`known`, `4xx`, `on the wire`, …).
    pub notes: BTreeMap<&'static str, u64>,
    /// One example of each of the first few kinds of failure, in words.
    pub examples: Vec<String>,
    /// Failures per kind (the start of their first line).
    pub kinds: BTreeMap<String, u64>,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            ..Tally::default()
        }
    }

    fn note(&mut self, what: &'static str) {
        *self.notes.entry(what).or_default() += 1;
    }

    fn fail(&mut self, what: String) {
        self.failures += 1;
        let kind: String = what
            .split('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .take(72)
            .collect();
        let known = self.kinds.contains_key(&kind);
        if known || self.kinds.len() < 50 {
            *self.kinds.entry(kind).or_default() += 1;
        }
        if !known && self.examples.len() < KEEP {
            self.examples.push(clip(&what, 600));
        }
    }

    /// One line: cases, figures, failures.
    pub fn line(&self) -> String {
        let notes: Vec<String> = self.notes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        let mut line = format!(
            "  {}: {} cases ({}), {} failures",
            self.name,
            self.cases,
            notes.join(", "),
            self.failures
        );
        for (kind, n) in &self.kinds {
            line.push_str(&format!("\n    {n} × {kind}"));
        }
        line
    }
}

/// How a fuzz run went.
pub struct Outcome {
    /// One tally per target.
    pub tallies: Vec<Tally>,
    /// Wall time, centre start included.
    pub elapsed: Duration,
    /// Processes that died by themselves.
    pub crashed: Vec<String>,
    /// Problems outside any one input (the store did not come back, the head moved).
    pub problems: Vec<String>,
}

impl Outcome {
    /// Every input failed nothing, nothing crashed.
    pub fn ok(&self) -> bool {
        self.failures() == 0 && self.crashed.is_empty() && self.problems.is_empty()
    }

    fn failures(&self) -> u64 {
        self.tallies.iter().map(|t| t.failures).sum()
    }

    /// The summary line.
    pub fn line(&self) -> String {
        let cases: u64 = self.tallies.iter().map(|t| t.cases).sum();
        format!(
            "fuzz: {} targets, {} cases in {:.1} min, {} failures, {} crashes — {}",
            self.tallies.len(),
            cases,
            self.elapsed.as_secs_f64() / 60.0,
            self.failures() + self.problems.len() as u64,
            self.crashed.len(),
            if self.ok() { "PASS" } else { "FAIL" }
        )
    }
}

/// Runs the four targets for `minutes` in all against a fresh centre in `dir`.
pub async fn run(vigil: &Path, dir: &Path, minutes: f64, seed: u64) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let budget = Duration::from_secs_f64((minutes * 60.0).max(4.0));
    let share = |f: f64| budget.mul_f64(f);
    install_panic_hook();
    let catalog = Arc::new(Catalog::learn());
    eprintln!(
        "  fuzz: seed {seed}, {} event types ({} with valid data found), {} field names, {} words learned from the decoders",
        catalog.types.len(),
        catalog.seeds().len(),
        catalog.keys.len(),
        catalog.words.len()
    );

    // The in-process targets run while the centre starts.
    let offline = {
        let catalog = catalog.clone();
        let (codec_time, append_time) = (share(0.25), share(0.10));
        tokio::task::spawn_blocking(move || {
            let codec = fuzz_codec(&catalog, runner(seed, 1), codec_time);
            let append = fuzz_append_decoder(&catalog, runner(seed, 2), append_time);
            (codec, append)
        })
    };
    let centre = Centre::start(vigil, dir, &[]).await;
    let (codec, mut append) = offline.await?;
    let mut centre = centre?;
    let mut problems = Vec::new();

    let wire = fuzz_append_wire(&centre, &catalog, runner(seed, 3), share(0.15), &mut append)
        .await
        .map_err(|e| format!("append on the wire: {e:#}"));
    if let Err(e) = wire {
        problems.push(e);
    }
    let mut crashed = centre.crashed();

    let http = fuzz_http(&centre, &catalog, runner(seed, 4), share(0.25)).await;
    crashed.extend(centre.crashed());
    if let Err(e) = centre.ready(Duration::from_secs(30)).await {
        problems.push(format!("after the HTTP target: {e:#}"));
    }

    let ws = fuzz_ws(&centre, &catalog, runner(seed, 5), share(0.25)).await;
    crashed.extend(centre.crashed());
    if let Err(e) = subscribe_works(centre.http, &centre.duty_token).await {
        problems.push(format!(
            "after the WebSocket target a valid subscribe failed: {e}"
        ));
    }
    crashed.extend(centre.crashed());
    crashed.sort();
    crashed.dedup();
    centre.stop();
    Ok(Outcome {
        tallies: vec![codec, append, http, ws],
        elapsed: started.elapsed(),
        crashed,
        problems,
    })
}

/// A runner for target `n`, reproducible from `seed`.
fn runner(seed: u64, n: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    let mut x = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for chunk in bytes.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    let config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

// ---------------------------------------------------------------------------------------
// Panics and shrinking (in-process targets)
// ---------------------------------------------------------------------------------------

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static PANICKED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside [`catch`] are recorded quietly; any other keeps the usual report.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) {
                PANICKED.with(|p| *p.borrow_mut() = Some(info.to_string()));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`; a panic becomes `Err("panic: …")`.
fn catch<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    CATCHING.with(|c| c.set(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(false));
    match r {
        Ok(r) => r,
        Err(_) => Err(format!(
            "PANIC: {}",
            PANICKED
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into())
        )),
    }
}

/// Drives `strategy` until `budget` is spent, judging each value with `check` (which
/// returns a label to count, or what went wrong); failures are shrunk.
fn fuzz_sync<S>(
    tally: &mut Tally,
    runner: &mut TestRunner,
    strategy: &S,
    budget: Duration,
    check: impl Fn(&S::Value) -> Result<&'static str, String>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let end = Instant::now() + budget;
    while Instant::now() < end {
        let Ok(mut tree) = strategy.new_tree(runner) else {
            continue;
        };
        tally.cases += 1;
        match catch(|| check(&tree.current())) {
            Ok(label) => tally.note(label),
            Err(first) => {
                let (value, why) = shrink(&mut tree, first, |v| catch(|| check(v)).err());
                tally.fail(format!("{why}\n    input (shrunk): {}", clip_debug(&value)));
            }
        }
    }
}

/// proptest's shrinking loop, bounded: the simplest value that still fails, and why.
fn shrink<T: ValueTree>(
    tree: &mut T,
    first: String,
    fails: impl Fn(&T::Value) -> Option<String>,
) -> (T::Value, String) {
    let mut best = (tree.current(), first);
    if !tree.simplify() {
        return best;
    }
    for _ in 0..4096 {
        let current = tree.current();
        match fails(&current) {
            Some(why) => {
                best = (current, why);
                if !tree.simplify() {
                    break;
                }
            }
            None => {
                if !tree.complicate() {
                    break;
                }
            }
        }
    }
    best
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

fn clip_debug(v: &impl Debug) -> String {
    clip(&format!("{v:?}"), 400)
}

// ---------------------------------------------------------------------------------------
// What the decoders know, learned from their own error messages
// ---------------------------------------------------------------------------------------

/// A probe no real field or value is called.
const PROBE: &str = "\u{1}fuzz";

/// One known event type.
#[derive(Debug, Clone)]
struct TypeInfo {
    name: &'static str,
    v: u32,
    fields: Vec<String>,
    /// The fields of a field that is a struct (or a list of them).
    nested: BTreeMap<String, Vec<String>>,
    /// Valid data of this type, found by [`solve`], and the JSON pointer of each of its
    /// values: what the mutations start from.
    seed: Option<(Value, Vec<String>)>,
}

/// Every event type with its fields, every field name (nested ones too) and every enum value
/// the decoders name, plus edge values: what random data is built from.
#[derive(Debug)]
struct Catalog {
    types: Vec<TypeInfo>,
    keys: Vec<String>,
    words: Vec<String>,
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
    fn learn() -> Catalog {
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

    fn seeds(&self) -> Vec<(&'static str, u32, Value, Vec<String>)> {
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
fn set_at(data: &mut Value, pointer: &str, v: Value) -> bool {
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
fn remove_at(data: &mut Value, pointer: &str) {
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

/// Text that sits on an edge somewhere: countries, dates, ids, roles, views, odd characters.
const EDGE_WORDS: &[&str] = &[
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
fn edge_numbers() -> Vec<Value> {
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
fn key(c: &Catalog) -> BoxedStrategy<String> {
    prop_oneof![
        8 => proptest::sample::select(c.keys.clone()),
        1 => "\\PC{0,12}",
    ]
    .boxed()
}

/// Any JSON value, up to three levels deep, its objects keyed with learned names.
fn json_value(c: &Catalog) -> BoxedStrategy<Value> {
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
fn event_data(c: &Arc<Catalog>) -> BoxedStrategy<(String, u32, Value)> {
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
fn seeded_event(c: &Arc<Catalog>) -> BoxedStrategy<(String, u32, Value)> {
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
fn nested(n: usize, objects: bool, closed: bool) -> Vec<u8> {
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
enum Damage {
    None,
    Cut(usize),
    Flip(usize, u8),
    InArray,
}

fn damage() -> BoxedStrategy<Damage> {
    prop_oneof![
        6 => Just(Damage::None),
        1 => any::<usize>().prop_map(Damage::Cut),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Damage::Flip(i, b)),
        1 => Just(Damage::InArray),
    ]
    .boxed()
}

fn apply(damage: &Damage, mut bytes: Vec<u8>) -> Vec<u8> {
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

// ---------------------------------------------------------------------------------------
// 1. The event codec
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum CodecInput {
    /// Anything.
    Bytes(Vec<u8>),
    /// A JSON value's text, perhaps damaged.
    Json(Value, Damage),
    /// Nesting `n` deep.
    Deep(usize, bool, bool),
    /// A recorded event with a random type, version and data; `envelope` changes one field
    /// of the envelope (`None`: the envelope is well-formed).
    Recorded {
        event_type: String,
        v: u32,
        data: Value,
        envelope: Option<(String, Option<Value>)>,
        damage: Damage,
    },
}

fn codec_input(c: &Arc<Catalog>) -> BoxedStrategy<CodecInput> {
    let envelope_keys = proptest::sample::select(vec![
        "id",
        "stream",
        "type",
        "v",
        "data",
        "meta",
        "position",
        "version",
        "recorded_at",
        "extra",
    ]);
    let envelope = proptest::option::weighted(
        0.15,
        (
            envelope_keys.prop_map(str::to_owned),
            proptest::option::of(json_value(c)),
        ),
    );
    prop_oneof![
        2 => vec(any::<u8>(), 0..512).prop_map(CodecInput::Bytes),
        2 => (json_value(c), damage()).prop_map(|(v, d)| CodecInput::Json(v, d)),
        1 => (1usize..20_000, any::<bool>(), any::<bool>()).prop_map(|(n, o, c)| CodecInput::Deep(n, o, c)),
        8 => (prop_oneof![1 => event_data(c), 2 => seeded_event(c)], envelope, damage()).prop_map(
            |((event_type, v, data), envelope, damage)| {
                CodecInput::Recorded { event_type, v, data, envelope, damage }
            },
        ),
    ]
    .boxed()
}

fn recorded_json(event_type: &str, v: u32, data: &Value) -> Value {
    let category = DomainEvent::TYPES
        .iter()
        .find(|(t, _, _)| *t == event_type)
        .map_or("incident", |(_, c, _)| *c);
    json!({
        "id": Uuid::from_u128(0x0190_a5d2_7f3e_7c1a_9b1e_1a2b_3c4d_5e6f),
        "stream": format!("{category}-0190a5d2-7f3e-7c1a-9b1e-1a2b3c4d5e6f"),
        "type": event_type,
        "v": v,
        "data": data,
        "meta": {"actor": "fuzz", "source": "http"},
        "position": 1,
        "version": 1,
        "recorded_at": "2026-11-27T03:00:00Z",
    })
}

fn check_codec(input: &CodecInput) -> Result<&'static str, String> {
    let limits = Limits::default();
    match input {
        CodecInput::Bytes(bytes) => check_bytes(bytes, &limits),
        CodecInput::Json(v, d) => check_bytes(&apply(d, codec::encode(v)), &limits),
        CodecInput::Deep(n, objects, closed) => {
            check_bytes(&nested(*n, *objects, *closed), &limits)
        }
        CodecInput::Recorded {
            event_type,
            v,
            data,
            envelope,
            damage,
        } => {
            let mut env = recorded_json(event_type, *v, data);
            if let (Some((k, replacement)), Some(obj)) = (envelope, env.as_object_mut()) {
                match replacement {
                    Some(x) => obj.insert(k.clone(), x.clone()),
                    None => obj.remove(k),
                };
            }
            let bytes = apply(damage, codec::encode(&env));
            let well_formed = envelope.is_none() && matches!(damage, Damage::None);
            match codec::decode_recorded(&bytes) {
                Ok(rec) => check_recorded(&rec),
                Err(e) if well_formed => Err(format!(
                    "a well-formed recorded event was refused by decode_recorded: {e}"
                )),
                Err(_) => Ok("refused"),
            }
        }
    }
}

/// Arbitrary bytes through every decoder of the codec.
fn check_bytes(bytes: &[u8], limits: &Limits) -> Result<&'static str, String> {
    let _ = codec::decode_json::<Value>(bytes, "fuzz", limits.max_append_bytes);
    let _ = codec::decode_json::<RecordedEvent>(bytes, "fuzz", limits.max_append_bytes);
    let _ = codec::decode_append(bytes, limits);
    let _ = store::incoming::decode_append(&Bytes::copy_from_slice(bytes), limits);
    match codec::decode_recorded(bytes) {
        Ok(rec) => check_recorded(&rec),
        Err(_) => Ok("refused"),
    }
}

/// A recorded event through `DomainEvent::decode`: `Unknown` with a reason, or a valid known
/// event that survives the round trip.
fn check_recorded(rec: &RecordedEvent) -> Result<&'static str, String> {
    let current = DomainEvent::current_version(&rec.event_type);
    match DomainEvent::decode(rec) {
        Decoded::Unknown { reason } if reason.trim().is_empty() => Err(format!(
            "{} v{}: Unknown without a reason",
            rec.event_type, rec.v
        )),
        Decoded::Unknown { .. } => Ok("unknown"),
        Decoded::Known(e) => {
            let Some(current) = current else {
                return Err(format!(
                    "type {:?} is not in DomainEvent::TYPES but decoded as {}",
                    rec.event_type,
                    e.event_type()
                ));
            };
            if rec.v > current {
                return Err(format!(
                    "{} v{} is newer than this build (v{current}) but decoded as known",
                    rec.event_type, rec.v
                ));
            }
            if e.event_type() != rec.event_type {
                return Err(format!(
                    "{} decoded as a {}",
                    rec.event_type,
                    e.event_type()
                ));
            }
            if let Err(v) = e.validate() {
                return Err(format!(
                    "{} v{} decoded as known but does not validate: {v}",
                    rec.event_type, rec.v
                ));
            }
            // Written back as the current version and read again: the same event.
            let again = RecordedEvent::record(
                e.to_new_event(rec.id, rec.meta.clone()),
                rec.stream.clone(),
                rec.position,
                rec.version,
                rec.recorded_at,
            );
            let back = codec::decode_recorded(&codec::encode(&again))
                .map_err(|x| format!("{}: re-encoded event unreadable: {x}", rec.event_type))?;
            match DomainEvent::decode(&back) {
                Decoded::Known(e2) if e2 == e => Ok("known"),
                Decoded::Known(e2) => Err(format!(
                    "{} v{}: round trip changed the event: {e:?} became {e2:?}",
                    rec.event_type, rec.v
                )),
                Decoded::Unknown { reason } => Err(format!(
                    "{} v{}: decoded as known, but once written back it is unknown: {reason}",
                    rec.event_type, rec.v
                )),
            }
        }
    }
}

fn fuzz_codec(c: &Arc<Catalog>, mut runner: TestRunner, budget: Duration) -> Tally {
    let mut tally = Tally::new("codec");
    fuzz_sync(
        &mut tally,
        &mut runner,
        &codec_input(c),
        budget,
        check_codec,
    );
    tally
}

// ---------------------------------------------------------------------------------------
// 2. The store's append request decoder
// ---------------------------------------------------------------------------------------

/// An append request's bytes and the limits to read it under (`None`: the store's defaults).
#[derive(Debug, Clone)]
struct AppendInput {
    payload: Vec<u8>,
    limits: Option<(usize, usize, usize)>,
}

fn append_input(c: &Arc<Catalog>) -> BoxedStrategy<AppendInput> {
    let value = json_value(c);
    let type_names: Vec<String> = c.types.iter().map(|t| t.name.to_owned()).collect();
    let stream = prop_oneof![
        6 => (proptest::sample::select(c.words.clone()), any::<u128>())
            .prop_map(|(cat, id)| Value::from(format!("{cat}-{}", Uuid::from_u128(id)))),
        3 => any::<u128>().prop_map(|id| Value::from(format!("chaos-{}", Uuid::from_u128(id)))),
        1 => value.clone(),
    ];
    let expected = prop_oneof![
        3 => Just(json!("any")),
        2 => Just(json!("no_stream")),
        2 => proptest::sample::select(edge_numbers()),
        1 => value.clone(),
    ];
    let id = prop_oneof![
        8 => any::<u128>().prop_map(|n| Value::from(Uuid::from_u128(n).to_string())),
        1 => value.clone(),
    ];
    let event_type = prop_oneof![
        6 => proptest::sample::select(type_names),
        1 => Just(String::new()),
        1 => Just("T".repeat(65)),
        1 => "\\PC{0,70}",
    ]
    .prop_map(Value::from);
    let actor = prop_oneof![
        6 => Just(json!({"actor": "fuzz"})),
        1 => Just(json!({})),
        1 => Just(json!({"actor": "   "})),
        1 => Just(json!({"actor": "a".repeat(129)})),
        1 => Just(json!({"actor": "fuzz", "admin": true})),
        1 => value.clone(),
    ];
    let event = (
        id,
        event_type,
        prop_oneof![6 => Just(json!(1)), 1 => proptest::sample::select(edge_numbers())],
        value.clone(),
        actor,
        proptest::option::weighted(0.1, (key(c), value.clone())),
        proptest::option::weighted(
            0.1,
            proptest::sample::select(vec!["id", "type", "v", "data", "meta"]),
        ),
    )
        .prop_map(|(id, t, v, data, meta, extra, drop)| {
            let mut e = json!({"id": id, "type": t, "v": v, "data": data, "meta": meta});
            if let Some(obj) = e.as_object_mut() {
                if let Some((k, x)) = extra {
                    obj.insert(k, x);
                }
                if let Some(k) = drop {
                    obj.remove(k);
                }
            }
            e
        });
    let limits = proptest::option::weighted(0.3, (1usize..400, 1usize..3000, 1usize..4));
    (
        stream,
        expected,
        vec(event, 0..5),
        any::<bool>(),
        proptest::option::weighted(0.1, (key(c), value.clone())),
        damage(),
        limits,
    )
        .prop_map(
            |(stream, expected, mut events, twice, extra, damage, limits)| {
                if twice && let Some(first) = events.first().cloned() {
                    // The same event twice in one append.
                    events.push(first);
                }
                let mut req =
                    json!({"stream": stream, "expected_version": expected, "events": events});
                if let (Some((k, x)), Some(obj)) = (extra, req.as_object_mut()) {
                    obj.insert(k, x);
                }
                AppendInput {
                    payload: apply(&damage, codec::encode(&req)),
                    limits,
                }
            },
        )
        .boxed()
}

fn append_limits(input: &AppendInput) -> Limits {
    input
        .limits
        .map_or_else(Limits::default, |(e, a, n)| Limits {
            max_event_bytes: e,
            max_append_bytes: a,
            max_events_per_append: n,
        })
}

/// The store's `decode_append` and the codec's never panic, agree, and what they accept keeps
/// every rule.
fn check_append(input: &AppendInput) -> Result<&'static str, String> {
    let limits = append_limits(input);
    let ours = store::incoming::decode_append(&Bytes::copy_from_slice(&input.payload), &limits);
    let size_only = |e: &codec::CodecError| matches!(e, codec::CodecError::TooLarge { .. });
    let req = match (codec::decode_append(&input.payload, &limits), ours) {
        (Err(_), Err(_)) => return Ok("refused"),
        (Ok(_), Err(e)) | (Err(e), Ok(_)) if size_only(&e) => return Ok("refused"),
        (Ok(_), Err(e)) => {
            return Err(format!(
                "the store's decoder refused a request the codec accepts: {e}"
            ));
        }
        (Err(e), Ok(_)) => {
            return Err(format!(
                "the store's decoder accepted a request the codec refuses: {e}"
            ));
        }
        (Ok(req), Ok(ours)) => {
            if ours.events.len() != req.events.len()
                || ours.events.iter().zip(&req.events).any(|(o, r)| {
                    o.id != r.id
                        || serde_json::from_slice::<Value>(&o.data).ok().as_ref() != Some(&r.data)
                })
            {
                return Err(
                    "the store's decoder read other events (ids or data) than the codec".into(),
                );
            }
            req
        }
    };
    let mut broken = Vec::new();
    if input.payload.len() > limits.max_append_bytes {
        broken.push(format!(
            "{} bytes over the {}-byte limit",
            input.payload.len(),
            limits.max_append_bytes
        ));
    }
    if req.events.is_empty() || req.events.len() > limits.max_events_per_append {
        broken.push(format!("{} events", req.events.len()));
    }
    for (i, e) in req.events.iter().enumerate() {
        if e.event_type.is_empty() || e.event_type.len() > 64 {
            broken.push(format!("event {i}: type of {} bytes", e.event_type.len()));
        }
        if e.meta.actor.as_deref().is_none_or(|a| a.trim().is_empty()) {
            broken.push(format!("event {i}: no actor"));
        }
        let size = serde_json::to_vec(e).map_or(usize::MAX, |b| b.len());
        if size > limits.max_event_bytes {
            broken.push(format!("event {i}: {size} bytes"));
        }
        if req.events[..i].iter().any(|o| o.id == e.id) {
            broken.push(format!("event {i}: id repeated"));
        }
    }
    if broken.is_empty() {
        Ok("accepted")
    } else {
        Err(format!(
            "decode_append accepted a request that breaks its rules: {}",
            broken.join("; ")
        ))
    }
}

fn fuzz_append_decoder(c: &Arc<Catalog>, mut runner: TestRunner, budget: Duration) -> Tally {
    let mut tally = Tally::new("append");
    fuzz_sync(
        &mut tally,
        &mut runner,
        &append_input(c),
        budget,
        check_append,
    );
    let in_process = tally.cases;
    tally.notes.insert("in process", in_process);
    tally
}

/// Publishes refused requests to the running store: typed `invalid` replies, the head
/// unmoved, the store alive, and a valid append still accepted afterwards.
async fn fuzz_append_wire(
    centre: &Centre,
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let client = runtime::nats::connect(
        &centre.nats_url(),
        "chaos-fuzz",
        None,
        runtime::nats::Mode::Tool,
    )
    .await?;
    let store = runtime::StoreClient::new(client.clone(), Duration::from_secs(5));
    // The store decodes before it checks the subject's category, so any category will do:
    // every payload sent here is refused by the decoder.
    let subject = format!(
        "{}.{}.fuzz",
        events::subjects::STORE_APPEND,
        store.appender()
    );
    let (_, head_before) = store
        .read(u64::MAX, 1)
        .await
        .map_err(|e| anyhow::anyhow!("reading the head: {e}"))?;
    let strategy = append_input(c);
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<(), String>> = JoinSet::new();
    let mut sent = 0u64;
    let limits = Limits::default();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        let mut input = tree.current();
        // Only what the decoder refuses (with the store's own limits), so nothing may land.
        input.limits = None;
        if input.payload.len() > 512 * 1024
            || codec::decode_append(&input.payload, &limits).is_ok()
            || store::incoming::decode_append(&Bytes::copy_from_slice(&input.payload), &limits)
                .is_ok()
        {
            continue;
        }
        while in_flight.len() >= WIRE_IN_FLIGHT {
            settle(&mut in_flight, tally).await;
        }
        sent += 1;
        let client = client.clone();
        let subject = subject.clone();
        in_flight.spawn(async move {
            let answer = tokio::time::timeout(
                Duration::from_secs(5),
                client.request(subject, input.payload.clone().into()),
            )
            .await;
            let what = || clip(&String::from_utf8_lossy(&input.payload), 300);
            match answer {
                Err(_) => Err(format!("no answer within 5 s to {}", what())),
                Ok(Err(e)) => Err(format!("request failed ({e}) for {}", what())),
                Ok(Ok(msg)) => match serde_json::from_slice::<AppendReply>(&msg.payload) {
                    Ok(AppendReply::Error(e)) if e.code == ErrorCode::Invalid => Ok(()),
                    Ok(other) => Err(format!(
                        "answered {other:?} to an invalid request: {}",
                        what()
                    )),
                    Err(e) => Err(format!(
                        "an answer that is not an AppendReply ({e}): {}",
                        clip(&String::from_utf8_lossy(&msg.payload), 200)
                    )),
                },
            }
        });
    }
    while !in_flight.is_empty() {
        settle(&mut in_flight, tally).await;
    }
    tally.notes.insert("on the wire", sent);
    let (_, head_after) = store
        .read(u64::MAX, 1)
        .await
        .map_err(|e| anyhow::anyhow!("the store does not answer after the fuzzing: {e}"))?;
    if head_after != head_before {
        tally.fail(format!(
            "the log head moved from {head_before} to {head_after} under invalid appends only"
        ));
    }
    // A valid append still works.
    let stream = events::StreamName::parse(&format!("chaos-{}", Uuid::new_v4()))?;
    let ok = store
        .append(&events::AppendRequest {
            stream,
            expected_version: events::ExpectedVersion::NoStream,
            events: vec![events::NewEvent {
                id: Uuid::new_v4(),
                event_type: "ChaosFuzzed".into(),
                v: 1,
                data: json!({}),
                meta: events::Meta {
                    actor: Some("chaos-fuzz".into()),
                    ..events::Meta::default()
                },
            }],
        })
        .await
        .map_err(|e| anyhow::anyhow!("a valid append after the fuzzing failed: {e}"))?;
    if ok.first_position != head_after + 1 {
        tally.fail(format!(
            "a valid append after the fuzzing landed at {} with the head at {head_after}",
            ok.first_position
        ));
    }
    tally.cases += sent;
    Ok(())
}

/// Waits for one request in flight and counts its verdict.
async fn settle(set: &mut JoinSet<Result<(), String>>, tally: &mut Tally) {
    match set.join_next().await {
        Some(Ok(Ok(()))) | None => {}
        Some(Ok(Err(e))) => tally.fail(e),
        Some(Err(e)) => tally.fail(format!("the fuzzer's own task failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// 3. HTTP bodies
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum HttpBody {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    /// Over the 64 KiB limit: `len` bytes, JSON-looking or not.
    Huge(usize, bool),
    Deep(usize, bool),
}

#[derive(Debug, Clone)]
struct HttpCase {
    route: usize,
    /// Percent-encoded values for the route's `{…}` parameters, in order.
    params: Vec<String>,
    query: String,
    content_type: Option<String>,
    body: HttpBody,
}

/// Percent-encodes every byte but the unreserved ones.
fn pct(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn http_case(c: &Arc<Catalog>) -> BoxedStrategy<HttpCase> {
    let param = prop_oneof![
        4 => any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        1 => Just(Uuid::nil().to_string()),
        2 => Just("SO".to_owned()),
        2 => Just("situation".to_owned()),
        2 => proptest::sample::select(c.words.clone()).prop_map(|w| pct(w.as_bytes())),
        2 => "\\PC{0,30}".prop_map(|s| pct(s.as_bytes())),
        2 => vec(any::<u8>(), 0..40).prop_map(|b| pct(&b)),
        1 => "[a-zA-Z0-9._~-]{100,400}",
    ];
    let query_key = prop_oneof![
        4 => proptest::sample::select(vec![
            "view", "limit", "country", "status", "severity", "since", "from", "agency", "token",
            "area", "state",
        ]).prop_map(str::to_owned),
        1 => "\\PC{0,8}",
    ];
    let query_value = prop_oneof![
        3 => proptest::sample::select(c.words.clone()),
        2 => proptest::sample::select(edge_numbers()).prop_map(|n| n.to_string()),
        2 => "\\PC{0,16}",
    ];
    let query =
        proptest::option::weighted(0.5, vec((query_key, query_value), 0..4)).prop_map(|pairs| {
            match pairs {
                None => String::new(),
                Some(pairs) => {
                    let parts: Vec<String> = pairs
                        .iter()
                        .map(|(k, v)| format!("{}={}", pct(k.as_bytes()), pct(v.as_bytes())))
                        .collect();
                    format!("?{}", parts.join("&"))
                }
            }
        });
    let content_type = prop_oneof![
        8 => Just(Some("application/json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        2 => Just(None),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(Some("application/x-www-form-urlencoded".to_owned())),
        1 => Just(Some("multipart/form-data; boundary=x".to_owned())),
        1 => "[a-z]{1,10}/[a-z+.-]{1,12}".prop_map(Some),
    ];
    let shaped = (
        prop_oneof![1 => event_data(c), 2 => seeded_event(c)],
        proptest::option::weighted(0.5, any::<u128>()),
    )
        .prop_map(|((_, _, mut data), id)| {
            if let (Some(id), Some(obj)) = (id, data.as_object_mut()) {
                obj.insert("id".into(), Value::from(Uuid::from_u128(id).to_string()));
            }
            HttpBody::Json(data)
        });
    let body = prop_oneof![
        4 => json_value(c).prop_map(HttpBody::Json),
        4 => shaped,
        2 => vec(any::<u8>(), 0..2048).prop_map(HttpBody::Bytes),
        1 => (64 * 1024 + 1..256 * 1024usize, any::<bool>()).prop_map(|(n, j)| HttpBody::Huge(n, j)),
        1 => (1usize..5_000, any::<bool>()).prop_map(|(n, o)| HttpBody::Deep(n, o)),
        1 => Just(HttpBody::None),
    ];
    (
        0..gateway::ROUTES.len(),
        vec(param, 3),
        query,
        content_type,
        body,
    )
        .prop_map(|(route, params, query, content_type, body)| HttpCase {
            route,
            params,
            query,
            content_type,
            body,
        })
        .boxed()
}

/// The route's path with its parameters filled.
fn fill(path: &str, params: &[String]) -> String {
    let mut out = String::new();
    let mut rest = path;
    let mut i = 0;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        // A `{…}` segment may not be empty or the route does not match: keep one character.
        let value = params.get(i).map_or("x", String::as_str);
        out.push_str(if value.is_empty() { "-" } else { value });
        i += 1;
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

fn body_bytes(body: &HttpBody) -> Option<Vec<u8>> {
    match body {
        HttpBody::None => None,
        HttpBody::Json(v) => Some(codec::encode(v)),
        HttpBody::Bytes(b) => Some(b.clone()),
        HttpBody::Huge(n, json) => {
            let mut out = Vec::with_capacity(*n);
            if *json {
                out.extend_from_slice(b"{\"title\":\"");
                out.resize(n.saturating_sub(2).max(out.len()), b'x');
                out.extend_from_slice(b"\"}");
            } else {
                out.extend((0..*n).map(|i| (i % 251) as u8));
            }
            Some(out)
        }
        HttpBody::Deep(n, objects) => Some(nested(*n, *objects, true)),
    }
}

fn describe(case: &HttpCase, method: &str, target: &str) -> String {
    let body = match &case.body {
        HttpBody::None => "no body".to_owned(),
        HttpBody::Json(v) => clip(&v.to_string(), 300),
        HttpBody::Bytes(b) => format!("{} random bytes", b.len()),
        HttpBody::Huge(n, j) => format!("{n} bytes ({})", if *j { "JSON" } else { "binary" }),
        HttpBody::Deep(n, _) => format!("JSON nested {n} deep"),
    };
    format!(
        "{method} {} [{}] {body}",
        clip(target, 200),
        case.content_type.as_deref().unwrap_or("no content type")
    )
}

/// One HTTP/1.0 exchange; the body is written while the answer is read, so a server that
/// answers (413) before reading it all is heard.
async fn exchange(
    addr: SocketAddr,
    head: Vec<u8>,
    body: Option<Vec<u8>>,
) -> std::io::Result<Vec<u8>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut rd, mut wr) = stream.into_split();
    // The write half is kept open until the answer is read: a half-closed connection may be
    // dropped by the server before it answers.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&head).await;
        if let Some(b) = body {
            let _ = wr.write_all(&b).await;
        }
        wr
    });
    let mut raw = Vec::new();
    let read = (&mut rd).take(MAX_ANSWER).read_to_end(&mut raw).await;
    writer.abort();
    let _ = writer.await;
    match read {
        Ok(_) => Ok(raw),
        Err(_) if raw.windows(4).any(|w| w == b"\r\n\r\n") => Ok(raw),
        Err(e) => Err(e),
    }
}

/// Whether an answer keeps the promise: 2xx, or a 4xx/503 with a JSON error.
fn judge(raw: &[u8]) -> Result<&'static str, String> {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!(
            "not an HTTP answer: {:?}",
            clip(&String::from_utf8_lossy(raw), 200)
        ));
    };
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let label = match status {
        200..=299 => return Ok("2xx"),
        400..=499 => "4xx",
        503 => "503",
        other => {
            return Err(format!(
                "status {other}: {}",
                clip(&String::from_utf8_lossy(body), 200)
            ));
        }
    };
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &json["error"];
    if error["code"].is_string() && error["message"].is_string() {
        Ok(label)
    } else {
        Err(format!(
            "status {status} without a JSON error body: {:?}",
            clip(&String::from_utf8_lossy(body), 200)
        ))
    }
}

async fn http_one(
    addr: SocketAddr,
    token: Arc<str>,
    case: HttpCase,
) -> Result<&'static str, String> {
    let Some(spec) = gateway::ROUTES.get(case.route) else {
        return Ok("skipped");
    };
    let target = format!("{}{}", fill(spec.path, &case.params), case.query);
    let body = body_bytes(&case.body);
    let mut head = format!(
        "{} {target} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n",
        spec.method
    );
    if let Some(ct) = &case.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if let Some(b) = &body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let started = Instant::now();
    let answer = tokio::time::timeout(HANG + GRACE, exchange(addr, head.into_bytes(), body)).await;
    let what = || describe(&case, spec.method, &target);
    match answer {
        Err(_) => Err(format!(
            "no answer within {} s: {}",
            (HANG + GRACE).as_secs(),
            what()
        )),
        Ok(Err(e)) => Err(format!("connection failed ({e}): {}", what())),
        Ok(Ok(raw)) => {
            let label = judge(&raw).map_err(|e| format!("{e}\n    request: {}", what()))?;
            if started.elapsed() > HANG + GRACE {
                return Err(format!(
                    "answered after {:.1} s: {}",
                    started.elapsed().as_secs_f64(),
                    what()
                ));
            }
            Ok(label)
        }
    }
}

async fn fuzz_http(
    centre: &Centre,
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
) -> Tally {
    let mut tally = Tally::new("http");
    let strategy = http_case(c);
    let token: Arc<str> = centre.duty_token.as_str().into();
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<&'static str, String>> = JoinSet::new();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        while in_flight.len() >= HTTP_IN_FLIGHT {
            settle_labelled(&mut in_flight, &mut tally).await;
        }
        tally.cases += 1;
        in_flight.spawn(http_one(centre.http, token.clone(), tree.current()));
    }
    while !in_flight.is_empty() {
        settle_labelled(&mut in_flight, &mut tally).await;
    }
    tally
}

async fn settle_labelled(set: &mut JoinSet<Result<&'static str, String>>, tally: &mut Tally) {
    match set.join_next().await {
        None => {}
        Some(Ok(Ok(label))) => tally.note(label),
        Some(Ok(Err(e))) => tally.fail(e),
        Some(Err(e)) => tally.fail(format!("the fuzzer's own task failed: {e}")),
    }
}

// ---------------------------------------------------------------------------------------
// 4. WebSocket client messages
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Tok {
    Duty,
    Field,
    /// The duty token with one character changed.
    Tampered(usize),
    Garbage(String),
}

#[derive(Debug, Clone)]
enum Origin {
    None,
    Own,
    Localhost,
    Foreign(String),
}

#[derive(Debug, Clone)]
struct Subscribe {
    ty: Option<Value>,
    board: Option<Value>,
    view: Option<Value>,
    since: Option<Value>,
    token: Option<Tok>,
    extra: Option<(String, Value)>,
}

#[derive(Debug, Clone)]
enum WsMsg {
    Subscribe(Subscribe),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    /// Text over the 4 KiB client limit.
    Huge(usize),
}

#[derive(Debug, Clone)]
struct WsCase {
    origin: Origin,
    url_token: Option<Tok>,
    messages: Vec<WsMsg>,
}

fn tok() -> BoxedStrategy<Tok> {
    prop_oneof![
        4 => Just(Tok::Duty),
        2 => Just(Tok::Field),
        1 => any::<usize>().prop_map(Tok::Tampered),
        1 => "\\PC{0,60}".prop_map(Tok::Garbage),
    ]
    .boxed()
}

fn ws_case(c: &Arc<Catalog>) -> BoxedStrategy<WsCase> {
    let value = json_value(c);
    let words = proptest::sample::select(c.words.clone()).prop_map(Value::from);
    let subscribe = (
        proptest::option::weighted(
            0.95,
            prop_oneof![8 => Just(json!("subscribe")), 1 => words.clone(), 1 => value.clone()],
        ),
        proptest::option::weighted(
            0.95,
            prop_oneof![8 => Just(json!("situation")), 1 => words.clone(), 1 => value.clone()],
        ),
        proptest::option::weighted(
            0.5,
            prop_oneof![
                3 => Just(json!("duty")),
                3 => Just(json!("wall_screen")),
                1 => words.clone(),
                1 => value.clone(),
            ],
        ),
        proptest::option::weighted(
            0.3,
            prop_oneof![
                2 => (0u64..1_000).prop_map(Value::from),
                2 => proptest::sample::select(edge_numbers()),
                1 => value.clone(),
            ],
        ),
        proptest::option::weighted(0.8, tok()),
        proptest::option::weighted(0.1, (key(c), value.clone())),
    )
        .prop_map(|(ty, board, view, since, token, extra)| Subscribe {
            ty,
            board,
            view,
            since,
            token,
            extra,
        });
    let message = prop_oneof![
        8 => subscribe.prop_map(WsMsg::Subscribe),
        2 => prop_oneof!["\\PC{0,200}", value.clone().prop_map(|v| v.to_string())]
            .prop_map(WsMsg::Text),
        1 => vec(any::<u8>(), 0..300).prop_map(WsMsg::Binary),
        1 => vec(any::<u8>(), 0..100).prop_map(WsMsg::Ping),
        1 => (4 * 1024 + 1..64 * 1024usize).prop_map(WsMsg::Huge),
    ];
    let origin = prop_oneof![
        6 => Just(Origin::None),
        2 => Just(Origin::Own),
        1 => Just(Origin::Localhost),
        1 => prop_oneof![
            Just("http://evil.example".to_owned()),
            Just("null".to_owned()),
            "[a-z]{1,8}://[a-z.]{1,20}",
        ]
        .prop_map(Origin::Foreign),
    ];
    (
        origin,
        proptest::option::weighted(0.2, tok()),
        vec(message, 1..4),
    )
        .prop_map(|(origin, url_token, mut messages)| {
            if messages.iter().all(|m| matches!(m, WsMsg::Ping(_))) {
                messages.push(WsMsg::Text(String::new()));
            }
            WsCase {
                origin,
                url_token,
                messages,
            }
        })
        .boxed()
}

#[derive(Clone)]
struct Tokens {
    duty: Arc<str>,
    field: Arc<str>,
}

impl Tokens {
    fn text(&self, t: &Tok) -> String {
        match t {
            Tok::Duty => self.duty.to_string(),
            Tok::Field => self.field.to_string(),
            Tok::Tampered(i) => {
                let mut chars: Vec<char> = self.duty.chars().collect();
                if !chars.is_empty() {
                    let n = chars.len();
                    let c = &mut chars[i % n];
                    *c = if *c == 'A' { 'B' } else { 'A' };
                }
                chars.into_iter().collect()
            }
            Tok::Garbage(s) => s.clone(),
        }
    }
}

fn subscribe_json(s: &Subscribe, tokens: &Tokens) -> String {
    let mut m = Map::new();
    for (k, v) in [
        ("type", &s.ty),
        ("board", &s.board),
        ("view", &s.view),
        ("since", &s.since),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v.clone());
        }
    }
    if let Some(t) = &s.token {
        m.insert("token".into(), Value::from(tokens.text(t)));
    }
    if let Some((k, v)) = &s.extra {
        m.insert(k.clone(), v.clone());
    }
    Value::Object(m).to_string()
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How a WebSocket case ended.
enum End {
    /// The server sent a close frame.
    Closed,
    /// The connection ended without one.
    Dropped(String),
    /// Still open and talking (subscribed).
    Alive,
    /// Neither a frame nor a close in time.
    Hang,
}

async fn ws_one(http: SocketAddr, tokens: Tokens, case: WsCase) -> Result<&'static str, String> {
    use tungstenite::client::IntoClientRequest;
    let query = case
        .url_token
        .as_ref()
        .map(|t| format!("?token={}", pct(tokens.text(t).as_bytes())))
        .unwrap_or_default();
    let mut request = format!("ws://{http}/ws{query}")
        .into_client_request()
        .map_err(|e| format!("building the request: {e}"))?;
    let origin = match &case.origin {
        Origin::None => None,
        Origin::Own => Some(format!("http://{http}")),
        Origin::Localhost => Some(format!("http://localhost:{}", http.port())),
        Origin::Foreign(o) => Some(o.clone()),
    };
    if let Some(o) = &origin
        && let Ok(v) = tungstenite::http::HeaderValue::from_str(o)
    {
        request.headers_mut().insert("Origin", v);
    }
    let foreign = matches!(case.origin, Origin::Foreign(_));
    let what = || clip_debug(&case);
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .map_err(|_| format!("no handshake within 10 s: {}", what()))?;
    let mut ws: Ws = match connected {
        Ok((ws, _)) if foreign => {
            drop(ws);
            return Err(format!("a foreign Origin was let in: {}", what()));
        }
        Ok((ws, _)) => ws,
        Err(tungstenite::Error::Http(answer)) if foreign => {
            let body: Value = answer
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            return if answer.status().as_u16() == 403 && body["error"]["code"].is_string() {
                Ok("foreign origin refused")
            } else {
                Err(format!(
                    "a foreign Origin got {} {body}: {}",
                    answer.status(),
                    what()
                ))
            };
        }
        Err(e) => return Err(format!("the upgrade failed ({e}): {}", what())),
    };
    let mut oversized = false;
    for m in &case.messages {
        let frame = match m {
            WsMsg::Subscribe(s) => Message::Text(subscribe_json(s, &tokens).into()),
            WsMsg::Text(t) => Message::Text(t.clone().into()),
            WsMsg::Binary(b) => Message::Binary(b.clone().into()),
            WsMsg::Ping(b) => Message::Ping(b.clone().into()),
            WsMsg::Huge(n) => {
                oversized = true;
                Message::Text("x".repeat(*n).into())
            }
        };
        if frame.len() > gateway::ws::MAX_CLIENT_MESSAGE {
            oversized = true;
        }
        if ws.send(frame).await.is_err() {
            break;
        }
    }
    let sent = Instant::now();
    let mut error: Option<String> = None;
    let mut frames = 0u32;
    let end = loop {
        // Subscribed: a frame within 2.5 s (heartbeats come every 2 s) is enough.
        let wait = if frames > 0 {
            Duration::from_millis(2_500)
        } else {
            Duration::from_secs(8)
        };
        let Some(left) = wait.checked_sub(sent.elapsed()) else {
            break if frames > 0 { End::Alive } else { End::Hang };
        };
        match tokio::time::timeout(left, ws.next()).await {
            Err(_) => break if frames > 0 { End::Alive } else { End::Hang },
            Ok(None) => break End::Dropped("end of stream".into()),
            Ok(Some(Err(e))) => break End::Dropped(e.to_string()),
            Ok(Some(Ok(Message::Close(_)))) => break End::Closed,
            Ok(Some(Ok(Message::Text(t)))) => {
                frames += 1;
                let v: Value = serde_json::from_str(&t).map_err(|e| {
                    format!(
                        "the server sent text that is not JSON ({e}): {:?} after {}",
                        clip(&t, 200),
                        what()
                    )
                })?;
                match v["type"].as_str() {
                    Some("snapshot" | "delta" | "heartbeat") => {}
                    Some("error") => {
                        if !(v["code"].is_string() && v["message"].is_string()) {
                            return Err(format!("an error frame without code/message: {v}"));
                        }
                        error = v["code"].as_str().map(str::to_owned);
                    }
                    _ => {
                        return Err(format!(
                            "a frame of no known type: {}",
                            clip(&v.to_string(), 200)
                        ));
                    }
                }
            }
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(format!("the server sent a binary frame after {}", what()));
            }
            Ok(Some(Ok(_))) => {}
        }
    };
    match end {
        End::Closed => Ok(if error.is_some() {
            "error then close"
        } else {
            "closed"
        }),
        End::Dropped(_) if oversized => Ok("dropped after an oversized frame"),
        End::Dropped(why) => Err(format!(
            "the connection was dropped without a close frame ({why}; error frame: {}): {}",
            error.as_deref().unwrap_or("none"),
            what()
        )),
        End::Alive if error.is_some() => Err(format!(
            "an error frame ({}) but the connection stayed open: {}",
            error.as_deref().unwrap_or(""),
            what()
        )),
        End::Alive => {
            let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
            Ok("subscribed")
        }
        End::Hang => Err(format!(
            "no frame and no close within 8 s of the last message: {}",
            what()
        )),
    }
}

/// A valid subscribe gets its snapshot.
async fn subscribe_works(http: SocketAddr, token: &str) -> Result<(), String> {
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(format!("ws://{http}/ws")),
    )
    .await
    .map_err(|_| "no handshake within 10 s".to_owned())?
    .map_err(|e| format!("the upgrade failed: {e}"))?;
    let hello = json!({"type": "subscribe", "board": "situation", "token": token}).to_string();
    ws.send(Message::Text(hello.into()))
        .await
        .map_err(|e| format!("sending the subscribe: {e}"))?;
    let first = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .map_err(|_| "no snapshot within 10 s".to_owned())?;
    let _ = ws.close(None).await;
    match first {
        Some(Ok(Message::Text(t)))
            if serde_json::from_str::<Value>(&t).is_ok_and(|v| v["type"] == "snapshot") =>
        {
            Ok(())
        }
        other => Err(format!("expected a snapshot, got {other:?}")),
    }
}

async fn fuzz_ws(
    centre: &Centre,
    c: &Arc<Catalog>,
    mut runner: TestRunner,
    budget: Duration,
) -> Tally {
    let mut tally = Tally::new("ws");
    let strategy = ws_case(c);
    let tokens = Tokens {
        duty: centre.duty_token.as_str().into(),
        field: centre.field_token.as_str().into(),
    };
    let end = Instant::now() + budget;
    let mut in_flight: JoinSet<Result<&'static str, String>> = JoinSet::new();
    let mut checked = Instant::now();
    while Instant::now() < end {
        let Ok(tree) = strategy.new_tree(&mut runner) else {
            continue;
        };
        while in_flight.len() >= WS_IN_FLIGHT {
            settle_labelled(&mut in_flight, &mut tally).await;
        }
        // Every 20 s: a valid subscribe still works while the fuzzing goes on.
        if checked.elapsed() > Duration::from_secs(20) {
            checked = Instant::now();
            if let Err(e) = subscribe_works(centre.http, &centre.duty_token).await {
                tally.fail(format!("a valid subscribe failed during the fuzzing: {e}"));
            }
        }
        tally.cases += 1;
        in_flight.spawn(ws_one(centre.http, tokens.clone(), tree.current()));
    }
    while !in_flight.is_empty() {
        settle_labelled(&mut in_flight, &mut tally).await;
    }
    tally
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

    #[test]
    fn paths_are_filled_and_answers_judged() {
        assert_eq!(
            fill("/api/v1/incidents/{id}/verify", &["abc".into()]),
            "/api/v1/incidents/abc/verify"
        );
        assert_eq!(
            fill("/api/v1/areas/{area}/level", &[String::new()]),
            "/api/v1/areas/-/level"
        );
        assert_eq!(pct("a b/é".as_bytes()), "a%20b%2F%C3%A9");
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\n\r\n{}"), Ok("2xx"));
        assert_eq!(
            judge(b"HTTP/1.1 404 Not Found\r\n\r\n{\"error\":{\"code\":\"x\",\"message\":\"y\"}}"),
            Ok("4xx")
        );
        assert!(judge(b"HTTP/1.1 400 Bad Request\r\n\r\nplain text").is_err());
        assert!(judge(b"HTTP/1.1 500 Internal\r\n\r\n{}").is_err());
    }

    #[test]
    fn a_few_thousand_codec_and_append_cases_pass() {
        install_panic_hook();
        let c = Arc::new(Catalog::learn());
        let codec = fuzz_codec(&c, runner(7, 1), Duration::from_millis(500));
        assert!(codec.cases > 100 && codec.failures == 0, "{codec:?}");
        let append = fuzz_append_decoder(&c, runner(7, 2), Duration::from_millis(500));
        assert!(append.cases > 100 && append.failures == 0, "{append:?}");
    }

    #[test]
    fn a_panic_is_caught_and_shrunk() {
        install_panic_hook();
        let mut tally = Tally::new("t");
        let mut r = runner(1, 1);
        fuzz_sync(
            &mut tally,
            &mut r,
            &(0u32..1000),
            Duration::from_millis(50),
            |n| {
                assert!(*n < 500, "too big");
                Ok("fine")
            },
        );
        assert!(tally.failures > 0);
        assert!(tally.examples[0].contains("PANIC"), "{:?}", tally.examples);
        assert!(
            tally.examples[0].contains("input (shrunk): 500"),
            "{:?}",
            tally.examples
        );
    }
}
