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
//!    same requests (except at a size limit), and whatever they accept keeps every rule. Then
//!    the requests both refuse are published on `vigil.store.append` to the running store:
//!    each gets a typed `invalid` reply, the log head does not move, the store stays up, and a
//!    valid append still works afterwards.
//! 3. **http**: every route of `gateway::ROUTES`, its `{id}`/`{area}`/`{board}` filled with
//!    valid and random values, random queries, and bodies of random JSON, random bytes,
//!    bodies over the 64 KiB limit, deep nesting and wrong content types; and, half the
//!    time, a body drawn from the route's schema in the gateway's generated OpenAPI document
//!    (valid, or with one fault: a required field left out, a wrong type, a value outside
//!    its enum or range, an unknown field, not an object), with a duty officer's token:
//!    every answer is a 2xx, a 4xx or a 503; every 4xx and 503 is JSON
//!    `{"error":{"code","message"}}`; a body the document calls invalid is never answered
//!    2xx; nothing takes longer than 10 s (plus [`GRACE`]); no process dies; the centre is
//!    still ready afterwards.
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
//!
//! # Layout
//! - [`shrink`]: panics caught and failing inputs shrunk, for the in-process targets.
//! - [`catalog`]: what the event decoders know (types, fields, enum values, valid data),
//!   learned from their own error messages (most event types have no schema of their own).
//! - [`schema`]: what each HTTP route reads, from the gateway's generated OpenAPI document,
//!   and the valid and invalid bodies drawn from it.
//! - [`values`]: the generators every target builds its inputs from (edge values, JSON,
//!   event data, damaged text).
//! - [`codec`], [`append`], [`http`], [`ws`]: the four targets, each with its promise.

mod append;
mod catalog;
mod codec;
mod http;
mod schema;
mod shrink;
mod values;
mod ws;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use tokio::task::JoinSet;

use crate::centre::Centre;
use append::{fuzz_append_decoder, fuzz_append_wire};
use catalog::Catalog;
use codec::fuzz_codec;
use http::fuzz_http;
use schema::Bodies;
use shrink::install_panic_hook;
use ws::{fuzz_ws, subscribe_works};

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
    let mut catalog = Catalog::learn();
    eprintln!(
        "  fuzz: seed {seed}, {} event types ({} with valid data found), {} field names, {} words learned from the decoders",
        catalog.types.len(),
        catalog.seeds().len(),
        catalog.keys.len(),
        catalog.words.len()
    );
    let bodies = Arc::new(Bodies::from_gateway()?);
    eprintln!(
        "  fuzz: {} routes read a body, {} fields in all, {} names, from the gateway's OpenAPI document",
        bodies.count(),
        bodies.fields(),
        bodies.names.len()
    );
    catalog.learn_names(&bodies.names);
    let catalog = Arc::new(catalog);

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

    let http = fuzz_http(&centre, &catalog, &bodies, runner(seed, 4), share(0.25)).await;
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

async fn settle_labelled(set: &mut JoinSet<Result<&'static str, String>>, tally: &mut Tally) {
    match set.join_next().await {
        None => {}
        Some(Ok(Ok(label))) => tally.note(label),
        Some(Ok(Err(e))) => tally.fail(e),
        Some(Err(e)) => tally.fail(format!("the fuzzer's own task failed: {e}")),
    }
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
