//! The clearances register's poller: approvals waiting to be seen approved in `GET
//! /api/v1/clearances` (the register the operations side reads), one read at a time at most
//! every `--poll-ms`, each answer checked against the position it is as of.

use crate::cell::{Failure, Tally, lock, micros, new_histogram};
use crate::http::{self, Http};
use crate::tracker::Tracker;
use hdrhistogram::Histogram;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Approvals waiting for the register, and what the poller saw.
pub(super) struct Visibility {
    /// Approval positions waiting for the register's position.
    pub(super) tracker: Tracker,
    /// The waiting approvals the poller can ask about: position → (clearance, traveller).
    pub(super) asked: BTreeMap<u64, (Uuid, String)>,
    /// GETs answered with a list, this cell.
    pub(super) polls: u64,
    /// GET → answer of those, µs.
    pub(super) rtt: Histogram<u64>,
    /// Answers whose position covered the asked approval and that listed it as approved.
    pub(super) confirmed: u64,
    /// Answers that contradicted their position (listed or not against it).
    pub(super) contradicted: u64,
    /// The first contradiction, for the report.
    pub(super) contradiction: Option<String>,
    /// Failed GETs, this cell.
    pub(super) errors: BTreeMap<String, Tally>,
}

impl Visibility {
    pub(super) fn new() -> anyhow::Result<Self> {
        Ok(Self {
            tracker: Tracker::new()?,
            asked: BTreeMap::new(),
            polls: 0,
            rtt: new_histogram()?,
            confirmed: 0,
            contradicted: 0,
            contradiction: None,
            errors: BTreeMap::new(),
        })
    }

    pub(super) fn reset(&mut self) -> anyhow::Result<()> {
        self.tracker.reset()?;
        self.asked.clear();
        self.polls = 0;
        self.rtt = new_histogram()?;
        self.confirmed = 0;
        self.contradicted = 0;
        self.contradiction = None;
        self.errors.clear();
        Ok(())
    }

    /// An approval at `position` was answered (scheduled at `scheduled`).
    pub(super) fn on_approved(
        &mut self,
        position: u64,
        scheduled: Instant,
        measured: bool,
        asked: (Uuid, String),
    ) {
        self.tracker.on_ack(position, scheduled, measured);
        if self.tracker.pending.contains_key(&position) {
            self.asked.insert(position, asked);
        }
    }

    /// The register answered at `now`, at `position`; `listed` is whether the asked approval
    /// (at `asked_at`) was in the list as approved.
    pub(super) fn on_answer(
        &mut self,
        position: u64,
        now: Instant,
        asked_at: u64,
        listed: bool,
        asked: Uuid,
    ) {
        self.polls += 1;
        let covered = position >= asked_at;
        if covered && listed {
            self.confirmed += 1;
        } else if covered != listed {
            self.contradicted += 1;
            self.contradiction.get_or_insert_with(|| {
                format!(
                    "clearance {asked} approved at position {asked_at}: the register at {position} {} it as approved",
                    if listed { "listed" } else { "did not list" }
                )
            });
        }
        self.tracker.on_board(position, now);
        self.asked = self.asked.split_off(&position.saturating_add(1));
    }

    pub(super) fn error(&mut self, (kind, detail): Failure) {
        let t = self.errors.entry(kind).or_default();
        if t.count == 0 {
            t.sample = detail;
        }
        t.count += 1;
    }
}

/// One clearance in a list answer.
#[derive(Deserialize)]
pub(super) struct Listed {
    pub(super) id: Uuid,
    pub(super) status: String,
}

/// `GET /api/v1/clearances`'s answer (a page of the list; the first is enough here).
#[derive(Deserialize)]
pub(super) struct List {
    pub(super) items: Vec<Listed>,
    pub(super) position: u64,
}

/// Reads the register as soon as an approval waits for it, at most once every `every`, until
/// aborted.
pub(super) async fn poll_register(
    addr: String,
    token: String,
    visibility: Arc<Mutex<Visibility>>,
    every: Duration,
    timeout: Duration,
) {
    let http = match Http::new(&addr, 1) {
        Ok(http) => http,
        Err(e) => {
            lock(&visibility).error(("no HTTP client".into(), format!("{e:#}")));
            return;
        }
    };
    let mut last = Instant::now()
        .checked_sub(every)
        .unwrap_or_else(Instant::now);
    loop {
        let asked = lock(&visibility)
            .asked
            .first_key_value()
            .map(|(p, (id, t))| (*p, *id, t.clone()));
        let Some((asked_at, id, traveller)) = asked else {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        if last.elapsed() < every {
            tokio::time::sleep_until((last + every).into()).await;
        }
        let path = format!("/api/v1/clearances?traveller={traveller}&limit=10");
        let sent = Instant::now();
        last = sent;
        let result = http.exchange(&path, &token, None, timeout).await;
        let now = Instant::now();
        let mut v = lock(&visibility);
        match result {
            Ok(answer) if answer.status == 200 => {
                match serde_json::from_slice::<List>(&answer.body) {
                    Ok(list) => {
                        v.rtt
                            .saturating_record(micros(now.saturating_duration_since(sent)));
                        let listed = list
                            .items
                            .iter()
                            .any(|c| c.id == id && c.status == "approved");
                        v.on_answer(list.position, now, asked_at, listed, id);
                    }
                    Err(e) => v.error((
                        "unreadable list".into(),
                        format!("{e}: {}", String::from_utf8_lossy(&answer.body)),
                    )),
                }
            }
            Ok(answer) => v.error(http::status_failure(&answer)),
            Err(failure) => v.error(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_poller_confirms_and_forgets() {
        let mut v = Visibility::new().unwrap();
        let s = Instant::now();
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        v.on_approved(10, s, true, (a, "P-000001".into()));
        v.on_approved(12, s, true, (b, "P-000002".into()));
        assert_eq!(v.asked.len(), 2);
        // The register at 9: the asked one is not listed yet, rightly.
        v.on_answer(9, s + Duration::from_millis(5), 10, false, a);
        assert_eq!((v.confirmed, v.contradicted, v.asked.len()), (0, 0, 2));
        // At 11: the first is in, listed as approved; the second still waits.
        v.on_answer(11, s + Duration::from_millis(15), 10, true, a);
        assert_eq!((v.confirmed, v.contradicted), (1, 0));
        assert_eq!(v.asked.keys().copied().collect::<Vec<_>>(), [12]);
        // At 12 without the asked one in the list: a contradiction, reported.
        v.on_answer(12, s + Duration::from_millis(25), 12, false, b);
        assert_eq!(v.contradicted, 1);
        assert!(v.contradiction.as_deref().unwrap().contains("did not list"));
        assert!(v.asked.is_empty() && v.tracker.pending.is_empty());
        assert_eq!(v.tracker.hist.len(), 2);
        // An approval the register had already passed completes at once.
        v.on_approved(11, s, true, (a, "P-000001".into()));
        assert!(v.asked.is_empty());
        assert_eq!(v.tracker.hist.len(), 3);
    }
}
