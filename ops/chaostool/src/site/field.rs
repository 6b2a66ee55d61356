//! One field site as the site scenario drives it ([`super`]): a client of the site's own bus,
//! the field officer who submits reports and roll-call marks there and the agency focal point
//! who acknowledges the alerts to the site's country (recording each item the site
//! acknowledged), and the site's state (the link, the outbox's counts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::Client;
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::{Accepted, DRAIN_LIMIT, Kind, PACE, SUBMIT_LIMIT, WRONG_EVERY};

/// One site as the scenario drives it.
pub(super) struct Field {
    pub(super) name: String,
    pub(super) scope: String,
    pub(super) other_scope: String,
    pub(super) order: Uuid,
    pub(super) persons: Vec<String>,
    pub(super) other_order: Uuid,
    /// Alerts to the site's country that ask for an acknowledgement, as the centre's duty
    /// officer issued them (shared with the duty officer's task).
    pub(super) alerts: Arc<Mutex<Vec<Uuid>>>,
    pub(super) bus: Client,
    pub(super) accepted: Mutex<Vec<Accepted>>,
}

impl Field {
    pub(super) fn accepted(&self) -> std::sync::MutexGuard<'_, Vec<Accepted>> {
        self.accepted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One request on a site's bus within `secs`; its answer, or `None`.
pub(super) async fn ask(bus: &Client, subject: String, body: Bytes, secs: u64) -> Option<Value> {
    let msg = tokio::time::timeout(Duration::from_secs(secs), bus.request(subject, body))
        .await
        .ok()?
        .ok()?;
    serde_json::from_slice(&msg.payload).ok()
}

pub(super) async fn state(bus: &Client) -> Option<Value> {
    let s = ask(bus, site::subjects::STATE.to_owned(), Bytes::new(), 3).await?;
    s.get("ok").cloned()
}

/// The site's state, asked again until it answers (its client reconnects after a kill -9).
pub(super) async fn state_within(bus: &Client, limit: Duration) -> Option<Value> {
    testkit::eventually(limit, || state(bus)).await
}

/// The agency of the sites' focal points (in the sample data, present in both countries).
pub(super) const AGENCY: &str = "unicef";

/// The command of item `n` of a site (`kind`; for [`Kind::Ack`], of alert `alert`), as bytes
/// sent unchanged on every retry: its subject, id, the id of its event at the centre, bytes.
fn item(
    field: &Field,
    kind: Kind,
    n: usize,
    marks: &mut HashMap<String, usize>,
    alert: Option<Uuid>,
) -> (String, Uuid, Uuid, Bytes) {
    const STATUSES: [&str; 4] = ["safe", "relocated", "injured", "missing"];
    let id = Uuid::new_v4();
    let mut actor = json!({"user": format!("officer-{}", field.name), "role": "field_officer", "scope": field.scope});
    let mut event = id;
    let now = time::OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let (command, body) = match kind {
        Kind::Report | Kind::WrongReport => {
            let country = if kind == Kind::Report {
                &field.scope
            } else {
                &field.other_scope
            };
            (
                "incidents.report",
                json!({"country": country, "category": "crime", "severity": 2,
                       "title": format!("Site {} report {n}", field.name), "occurred_at": now}),
            )
        }
        Kind::Mark => {
            let person = field.persons[n % field.persons.len()].clone();
            // Each mark changes the person's status (the same status again is refused).
            let next = marks.entry(person.clone()).or_insert(0);
            let status = STATUSES[*next % STATUSES.len()];
            *next += 1;
            (
                "relocation.mark",
                json!({"order": field.order, "change": {"person": person, "status": status}}),
            )
        }
        Kind::WrongMark => (
            "relocation.mark",
            json!({"order": field.other_order, "change": {"person": field.persons[0], "status": "safe"}}),
        ),
        Kind::Ack => {
            let alert = alert.unwrap_or_default();
            actor = json!({"user": format!("focal-{}", field.name), "role": "agency_focal_point",
                "scope": field.scope, "agency": AGENCY});
            event = events::domain::broadcast::ack_id(alert, AGENCY);
            ("broadcast.ack", json!({"broadcast": alert, "change": {}}))
        }
    };
    let cmd = json!({"id": id, "actor": actor, "source": "chaos-site", "body": body});
    (
        format!("{}.{command}", site::subjects::SUBMIT),
        id,
        event,
        Bytes::from(cmd.to_string()),
    )
}

/// Submits items at `field` until `stop`; each is sent again (same id, same bytes) until the
/// site answers, then recorded. A refusal by the site itself is a problem.
pub(super) async fn submitter(field: Arc<Field>, stop: Arc<AtomicBool>, seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut marks = HashMap::new();
    let mut problems = Vec::new();
    let mut n = 0usize;
    // Alerts acknowledged so far (each once: the agency has one acknowledgement each).
    let mut acked = 0usize;
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let alert = field
            .alerts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(acked)
            .copied();
        let kind = if alert.is_some() && rng.random_bool(0.2) {
            acked += 1;
            Kind::Ack
        } else if n.is_multiple_of(WRONG_EVERY) {
            if rng.random_bool(0.5) {
                Kind::WrongReport
            } else {
                Kind::WrongMark
            }
        } else if rng.random_bool(0.4) {
            Kind::Mark
        } else {
            Kind::Report
        };
        let (subject, id, event, bytes) = item(&field, kind, n, &mut marks, alert);
        let started = Instant::now();
        loop {
            if let Some(a) = ask(&field.bus, subject.clone(), bytes.clone(), 5).await {
                if a["ok"]["accepted_at_site"] == true {
                    let position = a["ok"]["position"].as_u64().unwrap_or(0);
                    field.accepted().push(Accepted {
                        id,
                        event,
                        position,
                        kind,
                    });
                    break;
                }
                if a["error"]["code"] != "unavailable" {
                    problems.push(format!(
                        "{}: the site refused {id} ({kind:?}): {a}",
                        field.name
                    ));
                    break;
                }
            }
            if started.elapsed() > SUBMIT_LIMIT {
                problems.push(format!(
                    "{}: no answer to {id} for {} s",
                    field.name,
                    SUBMIT_LIMIT.as_secs()
                ));
                return problems;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(PACE).await;
    }
    problems
}

/// What a site's outbox did after a heal.
pub(super) struct Drain {
    /// From the heal to the first item settled (the link carries again).
    pub(super) resumed: Duration,
    /// From the heal to an empty outbox with the link up.
    pub(super) took: Duration,
    /// Items settled (forwarded or refused) since the heal.
    pub(super) settled: u64,
}

/// Waits until `field`'s outbox is empty with the link up; what it took from `healed`, with
/// `settled_before` items settled at the heal.
pub(super) async fn drained(field: &Field, healed: Instant, settled_before: u64) -> Option<Drain> {
    let mut resumed = None;
    while healed.elapsed() < DRAIN_LIMIT {
        if let Some(s) = state(&field.bus).await {
            let now = settled(&s).saturating_sub(settled_before);
            let empty = s["pending"] == 0 && s["link"]["up"] == true;
            if now > 0 || empty {
                resumed.get_or_insert(healed.elapsed());
            }
            if empty {
                let took = healed.elapsed();
                return Some(Drain {
                    resumed: resumed.unwrap_or(took),
                    took,
                    settled: now,
                });
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

pub(super) fn settled(s: &Value) -> u64 {
    s["forwarded"].as_u64().unwrap_or(0) + s["refused"].as_u64().unwrap_or(0)
}

/// Connects to site `name`'s own bus as its user (described by `ops/site up` in
/// `<dir>/<name>/site.json`).
pub(super) async fn site_bus(dir: &Path, name: &str) -> anyhow::Result<Client> {
    let desc: Value = serde_json::from_slice(&std::fs::read(dir.join(name).join("site.json"))?)?;
    let url = desc["nats"]
        .as_str()
        .context("site.json names no NATS URL")?;
    let data = PathBuf::from(
        desc["data_dir"]
            .as_str()
            .context("site.json names no data dir")?,
    );
    let creds = runtime::nats_auth::load(&data)?
        .and_then(|u| u.credentials(&runtime::nats_sites::user_of(name)))
        .context("no NATS login for the site's user")?;
    runtime::nats::connect(url, "chaos-site", Some(creds), runtime::nats::Mode::Service).await
}
