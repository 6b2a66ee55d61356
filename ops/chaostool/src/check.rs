//! The checker: after a scenario, reads the whole log back and says whether the promise held.
//!
//! Against the ack file ([`crate::writers::Ack`]) and the log (read from the stopped store's
//! files with `vigil_store::Log`, or through a running store over NATS) it counts:
//! - **lost**: an acknowledged event that is not in the log, or not where it was acknowledged;
//! - **duplicated**: an event id stored more than once;
//! - **position gaps**: positions not 1, 2, 3, … without a hole;
//! - **version gaps**: a stream whose versions are not 1, 2, 3, …;
//! - **misordered**: a stream whose acknowledged events do not have increasing versions in
//!   the order they were acknowledged (each writer writes one event at a time);
//! - and whether the gateway's board equals a fresh fold of the same log ([`board_matches`]).
//!
//! The verdict is a value, so each scenario prints one line of figures and decides its exit
//! status from [`Verdict::ok`].

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use events::RecordedEvent;
use runtime::StoreClient;
use serde_json::Value;

use crate::writers::Ack;

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Acknowledged writes.
    pub acknowledged: usize,
    /// Events in the log.
    pub stored: usize,
    /// Acknowledged but missing (or not where acknowledged).
    pub lost: usize,
    /// Stored more than once.
    pub duplicated: usize,
    /// Holes in the positions.
    pub position_gaps: usize,
    /// Streams with a hole in their versions.
    pub version_gaps: usize,
    /// Streams whose acknowledged events are out of acknowledgement order.
    pub misordered: usize,
    /// The first few problems, in words.
    pub problems: Vec<String>,
}

impl Verdict {
    /// Whether the promise held.
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.position_gaps == 0
            && self.version_gaps == 0
            && self.misordered == 0
    }

    fn problem(&mut self, p: String) {
        if self.problems.len() < 10 {
            self.problems.push(p);
        }
    }
}

/// Checks `log` (every event, in position order) against `acks`.
pub fn check(log: &[RecordedEvent], acks: &[Ack]) -> Verdict {
    let mut v = Verdict {
        acknowledged: acks.len(),
        stored: log.len(),
        ..Verdict::default()
    };
    for (i, e) in log.iter().enumerate() {
        let expected = i as u64 + 1;
        if e.position != expected {
            v.position_gaps += 1;
            v.problem(format!(
                "position {} where {expected} was expected",
                e.position
            ));
        }
    }
    let mut ids = HashSet::with_capacity(log.len());
    for e in log {
        if !ids.insert(e.id) {
            v.duplicated += 1;
            v.problem(format!("event {} is stored twice", e.id));
        }
    }
    let mut versions: HashMap<&str, Vec<u64>> = HashMap::new();
    for e in log {
        versions
            .entry(e.stream.as_str())
            .or_default()
            .push(e.version);
    }
    for (stream, vs) in &versions {
        if vs.iter().enumerate().any(|(i, v)| *v != i as u64 + 1) {
            v.version_gaps += 1;
            v.problem(format!("the versions of {stream} have a hole"));
        }
    }
    let by_position: HashMap<u64, &RecordedEvent> = log.iter().map(|e| (e.position, e)).collect();
    let mut last_version: HashMap<&str, u64> = HashMap::new();
    for a in acks {
        match by_position.get(&a.position) {
            Some(e) if e.id == a.id && e.stream.as_str() == a.stream && e.version == a.version => {}
            Some(e) => {
                v.lost += 1;
                v.problem(format!(
                    "acknowledged {} ({} v{}) at position {}, but {} ({} v{}) is there",
                    a.id, a.stream, a.version, a.position, e.id, e.stream, e.version
                ));
            }
            None => {
                v.lost += 1;
                v.problem(format!(
                    "acknowledged {} at position {} is missing (the log ends at {})",
                    a.id,
                    a.position,
                    log.len()
                ));
            }
        }
        let last = last_version.entry(a.stream.as_str()).or_insert(0);
        if a.version <= *last {
            v.misordered += 1;
            v.problem(format!(
                "{}: version {} acknowledged after version {last}",
                a.stream, a.version
            ));
        }
        *last = a.version.max(*last);
    }
    v
}

/// Every event of the stopped store under `store_dir` (opened read-only for checking).
pub fn read_dir(store_dir: &Path) -> anyhow::Result<Vec<RecordedEvent>> {
    let log = store::Log::open_for_verify(store_dir)
        .with_context(|| format!("opening the store in {}", store_dir.display()))?;
    let mut all = Vec::with_capacity(log.head() as usize);
    loop {
        let page = log.read_from(all.len() as u64 + 1, 10_000)?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Every event, through a running store.
pub async fn read_running(store: &StoreClient) -> anyhow::Result<Vec<RecordedEvent>> {
    let mut all = Vec::new();
    loop {
        let (page, _) = store
            .read(all.len() as u64 + 1, 1000)
            .await
            .map_err(|e| anyhow::anyhow!("reading the log: {e}"))?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Whether the gateway's duty board, once it has folded up to `log`'s head, equals a fresh
/// fold of `log`. `Err` says how they differ (or that the board never caught up).
pub async fn board_matches(
    http: SocketAddr,
    token: &str,
    log: &[RecordedEvent],
    timeout: Duration,
) -> anyhow::Result<()> {
    let head = log.len() as u64;
    let auth = format!("Bearer {token}");
    let served = testkit::eventually(timeout, || async {
        let a = testkit::http::request(
            http,
            "GET",
            "/api/v1/boards/situation?view=duty",
            &[("Authorization", auth.as_str())],
            None,
        )
        .await
        .ok()?;
        let board = (a.status == 200).then(|| a.json())?;
        (board["position"].as_u64() == Some(head)).then_some(board)
    })
    .await
    .ok_or_else(|| {
        anyhow::anyhow!(
            "the gateway's board did not reach the log's head ({head}) within {} s",
            timeout.as_secs()
        )
    })?;
    let fresh = boards::replay(log).snapshot(boards::View::Duty);
    if served == fresh {
        return Ok(());
    }
    anyhow::bail!(
        "the board differs from a fresh fold: {}",
        first_difference(&served, &fresh, "board")
    )
}

/// Where two JSON values first differ, as a path.
fn first_difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) if va == vb => {}
                    Some(vb) => return first_difference(va, vb, &format!("{path}.{k}")),
                    None => return format!("{path}.{k} only on the served board"),
                }
            }
            y.keys().find(|k| !x.contains_key(*k)).map_or_else(
                || path.to_owned(),
                |k| format!("{path}.{k} only in the fold"),
            )
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find(|(_, (p, q))| p != q)
            .map_or_else(
                || path.to_owned(),
                |(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]")),
            ),
        _ => format!("{path}: served {a}, fold {b}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use events::{Meta, NewEvent, StreamName};
    use time::macros::datetime;
    use uuid::Uuid;

    fn log_of(n: u64, stream: &StreamName) -> Vec<RecordedEvent> {
        (1..=n)
            .map(|i| {
                RecordedEvent::record(
                    NewEvent {
                        id: Uuid::from_u128(u128::from(i)),
                        event_type: "ChaosWritten".into(),
                        v: 1,
                        data: serde_json::json!({}),
                        meta: Meta::default(),
                    },
                    stream.clone(),
                    i,
                    i,
                    datetime!(2026-11-27 03:00 UTC),
                )
            })
            .collect()
    }

    fn ack(e: &RecordedEvent) -> Ack {
        Ack {
            id: e.id,
            stream: e.stream.as_str().to_owned(),
            position: e.position,
            version: e.version,
            via: "nats".into(),
        }
    }

    #[test]
    fn the_checker_sees_loss_duplicates_gaps_and_order() {
        let s = StreamName::parse(&format!("chaos-{}", Uuid::nil())).unwrap();
        let log = log_of(5, &s);
        let acks: Vec<Ack> = log.iter().map(ack).collect();
        assert!(check(&log, &acks).ok());

        let short = &log[..3];
        let v = check(short, &acks);
        assert_eq!(v.lost, 2, "{v:?}");
        assert!(!v.ok());

        let mut twice = log.clone();
        let mut copy = log[1].clone();
        copy.position = 6;
        copy.version = 6;
        twice.push(copy);
        assert_eq!(check(&twice, &acks).duplicated, 1);

        let mut holed = log.clone();
        holed.remove(2);
        let v = check(&holed, &acks[..2]);
        assert_eq!((v.position_gaps > 0, v.version_gaps), (true, 1), "{v:?}");

        let mut swapped = acks.clone();
        swapped.swap(0, 1);
        assert_eq!(check(&log, &swapped).misordered, 1);
    }
}
