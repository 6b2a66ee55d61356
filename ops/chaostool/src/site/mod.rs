//! `site`: field sites whose links to the centre are cut, flapped and healed at random while
//! they keep taking work (issue 19; docs/RELIABILITY.md, "Field sites with cut links").
//!
//! A single-node centre (`vigil up --leaf-addr`, the sample reference data imported) and two
//! sites started with `ops/site up` (each in its own network namespace, [`SCOPES`]). While it
//! runs:
//! - at each site a field officer of its scope submits, on the site's own bus
//!   (`vigil.local.submit.*`), field reports and roll-call marks on an order the centre gave
//!   for the site's country, and an agency focal point acknowledges the alerts to the site's
//!   country that ask for it, one item at a time, each sent again with the same id until the
//!   site answers, and every item the site acknowledged is recorded; every [`WRONG_EVERY`]th item
//!   is deliberately wrong (a report for the other site's country, or a mark on the other
//!   site's order): the site accepts it, the centre must refuse it;
//! - at the centre a duty officer gives relocation orders and issues broadcasts through the
//!   gateway, each acknowledged one recorded;
//! - each site's link is cut (`ops/site cut`, packets dropped both ways) for 1–30 s at random,
//!   or flapped (cut and healed every 1–3 s a few times; only while 35 s are left, so a run
//!   ends on time); during its first cut each site is
//!   killed with -9 (`ops/site kill`) and started again (`ops/site start`).
//!
//! After each heal it measures the time until the link carries again (the first item
//! settled), the items settled per second from then on, the time until the site's outbox
//! is empty (and the link up), and the time until the boards agree: the site's mirror, which
//! its board folds, covers the centre's head as it stood once the outbox was empty (a
//! heal after which that takes more than a minute fails the run). At the end the links are healed, the outboxes
//! drain, every acknowledged item's state is read back from its site, the centre is stopped
//! and its log read from the store's files. PASS when, for each site ([`judge`]):
//! - every item it acknowledged is in the centre's log exactly once, in the site's order
//!   (the order of its positions at the site), with `source: site:<name>`, and nothing else
//!   from that site is there;
//! - every deliberately wrong item is recorded at the site as refused (and is not in the
//!   log), and no other item was refused ("nothing refused silently");
//! - nothing the site acknowledged before a kill -9 was missing after it;
//! - its mirror (read on the site's bus through the store's read API, which the site's board
//!   folds) holds exactly the events of the centre's log that the scope rule gives it, in
//!   the centre's order, up to the centre's head at the end ([`mirror`]);
//!
//! and the checker ([`crate::check`]) finds nothing lost, duplicated or out of place in the
//! whole log (the centre's own acknowledgements and each site's forwarded outcomes).
//!
//! Needs root (network namespaces, nftables); without it the scenario says so and passes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use events::RecordedEvent;
use gateway::auth::{Auth, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::check::{self, Verdict};
use crate::slowloris::{Up, quantile};
use crate::writers::{Ack, AckFile};

/// The two sites: name stem, scope (a country with personnel in the sample reference data)
/// and the area their order is for.
pub const SCOPES: [(&str, &str, &str); 2] =
    [("kabul", "AF", "AFG-KAB"), ("mogadishu", "SO", "SOM-BAN")];
/// How long after an empty outbox the site's mirror may take to reach the centre's head.
const AGREE_LIMIT: Duration = Duration::from_secs(60);
/// One item in this many is deliberately wrong (refused by the centre).
pub const WRONG_EVERY: usize = 15;
/// Time between two items at a site.
pub(super) const PACE: Duration = Duration::from_millis(120);
/// How long a heal may take to empty the outbox before the run fails.
pub(super) const DRAIN_LIMIT: Duration = Duration::from_secs(90);
/// How long one item may go unanswered by its site (a kill -9 and start included).
pub(super) const SUBMIT_LIMIT: Duration = Duration::from_secs(120);

mod field;
mod judge;
mod mirror;

use field::{Field, ask, drained, settled, site_bus, state_within, submitter};
pub use judge::{Accepted, Kind, SiteVerdict, judge};

/// What one heal cost.
#[derive(Debug, Clone)]
pub struct Heal {
    /// The site.
    pub site: String,
    /// `cut`, `cut+kill` or `flap`.
    pub what: &'static str,
    /// From the heal to the first item settled (the link carries again).
    pub resumed: Duration,
    /// From the heal to an empty outbox with the link up.
    pub took: Duration,
    /// Items settled (forwarded or refused) meanwhile.
    pub settled: u64,
    /// From the heal to the site's mirror (what its board folds) covering the centre's head
    /// as it stood once the outbox was empty: the two boards agree from then on.
    pub agreed: Duration,
}

impl Heal {
    /// Items settled per second once the link carried again (`None` when nothing waited).
    pub fn rate(&self) -> Option<f64> {
        let carrying = self.took.saturating_sub(self.resumed).as_secs_f64();
        (self.settled > 0).then(|| self.settled as f64 / carrying.max(0.1))
    }
}

/// How the run went.
pub struct Outcome {
    /// The seed of the draw.
    pub seed: u64,
    /// Each site's name and the events its mirror held, every one of its scope (checked).
    pub mirrored: Vec<(String, usize)>,
    /// Each site's name and verdict.
    pub sites: Vec<(String, SiteVerdict)>,
    /// Every heal measured.
    pub heals: Vec<Heal>,
    /// Cuts made (a flap counts each of its cuts), and of them with a kill -9.
    pub cuts: (usize, usize),
    /// Items acknowledged at the sites before a kill -9, all found after it.
    pub before_kills: usize,
    /// The checker on the whole log.
    pub verdict: Verdict,
    /// Commands the centre's duty officer had acknowledged.
    pub centre_acks: usize,
    /// What went wrong besides the verdicts.
    pub problems: Vec<String>,
}

impl Outcome {
    /// Whether every promise held.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
            && self.verdict.ok()
            && !self.sites.is_empty()
            && self.sites.iter().all(|(_, v)| v.ok())
    }

    /// Every problem, each site's named.
    pub fn all_problems(&self) -> Vec<String> {
        let mut all = self.problems.clone();
        all.extend(self.verdict.problems.iter().cloned());
        for (_, v) in &self.sites {
            all.extend(v.problems.iter().cloned());
        }
        all
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        let sum =
            |f: fn(&SiteVerdict) -> usize| self.sites.iter().map(|(_, v)| f(v)).sum::<usize>();
        let mut rates: Vec<f64> = self.heals.iter().filter_map(Heal::rate).collect();
        rates.sort_by(f64::total_cmp);
        let mut took: Vec<Duration> = self.heals.iter().map(|h| h.took).collect();
        took.sort();
        let mut resumed: Vec<Duration> = self.heals.iter().map(|h| h.resumed).collect();
        resumed.sort();
        let mut agreed: Vec<Duration> = self.heals.iter().map(|h| h.agreed).collect();
        agreed.sort();
        let rate_at = |q: f64| {
            rates
                .get(((rates.len().max(1) - 1) as f64 * q).round() as usize)
                .copied()
                .unwrap_or(0.0)
        };
        format!(
            "site: {} sites, {} cuts ({} with kill -9, seed {}), {} items acknowledged at the sites ({} before a kill -9, {} alerts acknowledged by focal points), {} deliberately wrong ({} refused and recorded), {} in the centre's log once each in site order, {} lost, {} duplicated, {} misordered, {} refused silently; centre {} commands, checker {} lost, {} duplicated, {} gaps; after {} heals: link carrying again p50 {:.1} s, max {:.1} s, then {:.0} items/s p50 (min {:.0}), heal to outbox empty p50 {:.1} s, max {:.1} s{}, heal to boards agreeing p50 {:.1} s, max {:.1} s; mirrors {} — {}",
            self.sites.len(),
            self.cuts.0,
            self.cuts.1,
            self.seed,
            sum(|v| v.acknowledged),
            self.before_kills,
            sum(|v| v.alert_acks),
            sum(|v| v.wrong),
            sum(|v| v.wrong_refused),
            sum(|v| v.in_log),
            sum(|v| v.lost),
            sum(|v| v.duplicated),
            sum(|v| v.misordered),
            sum(|v| v.refused_silently),
            self.centre_acks,
            self.verdict.lost,
            self.verdict.duplicated,
            self.verdict.position_gaps + self.verdict.version_gaps,
            self.heals.len(),
            quantile(&resumed, 0.5).as_secs_f64(),
            resumed.last().copied().unwrap_or_default().as_secs_f64(),
            rate_at(0.5),
            rates.first().copied().unwrap_or(0.0),
            quantile(&took, 0.5).as_secs_f64(),
            took.last().copied().unwrap_or_default().as_secs_f64(),
            self.heals
                .iter()
                .max_by_key(|h| h.took)
                .map_or_else(String::new, |h| format!(" ({} after a {})", h.site, h.what)),
            quantile(&agreed, 0.5).as_secs_f64(),
            agreed.last().copied().unwrap_or_default().as_secs_f64(),
            self.mirrored
                .iter()
                .map(|(name, n)| format!("{name} {n} events"))
                .collect::<Vec<_>>()
                .join(", "),
            if self.ok() { "PASS" } else { "FAIL" },
        )
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// The sites started with `ops/site`; dropping it runs `ops/site down` (every site in `dir`).
struct Sites {
    script: PathBuf,
    vigil: PathBuf,
    dir: PathBuf,
}

impl Sites {
    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new("bash");
        c.arg(&self.script)
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .env("VIGIL_BIN", &self.vigil)
            .env("VIGIL_NATS_SERVER", testkit::nats_server_bin())
            .stdin(std::process::Stdio::null());
        c
    }

    /// `ops/site ARGS`; its stdout, or an error with its stderr.
    async fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        crate::script::output(self.command(args), "ops/site", args).await
    }
}

impl Drop for Sites {
    fn drop(&mut self) {
        match self.command(&["down"]).output() {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "ops/site down failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("cannot run ops/site down: {e}"),
        }
    }
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(lo..hi.max(lo + 0.1)))
}

/// What one site's chaos did.
#[derive(Default)]
struct Chaos {
    heals: Vec<Heal>,
    cuts: usize,
    kills: usize,
    before_kills: usize,
    problems: Vec<String>,
}

/// Cuts, flaps and a kill -9 at `field` until `until`.
async fn chaos(
    sites: &Sites,
    field: &Field,
    http: SocketAddr,
    until: Instant,
    max_cut: f64,
    seed: u64,
) -> anyhow::Result<Chaos> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut done = Chaos::default();
    let name = field.name.as_str();
    tokio::time::sleep(secs(&mut rng, 2.0, 5.0)).await;
    let mut first = true;
    while Instant::now() + Duration::from_secs(2) < until {
        let left = until
            .saturating_duration_since(Instant::now())
            .as_secs_f64();
        let what;
        if first {
            what = "cut+kill";
            sites.run(&["cut", name]).await?;
            done.cuts += 1;
            tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
            let before = field.accepted().len();
            sites.run(&["kill", name]).await?;
            tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
            sites.run(&["start", name]).await?;
            done.kills += 1;
            done.before_kills += before;
            // Every item acknowledged before the kill is still in the outbox.
            match state_within(&field.bus, Duration::from_secs(30)).await {
                Some(s) if settled(&s) + s["pending"].as_u64().unwrap_or(0) >= before as u64 => {}
                other => done.problems.push(format!(
                    "{name}: after kill -9 the outbox holds fewer than the {before} items acknowledged before it: {other:?}"
                )),
            }
            tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
        } else if left > 35.0 && rng.random_bool(0.3) {
            what = "flap";
            for _ in 0..rng.random_range(3..6) {
                sites.run(&["cut", name]).await?;
                done.cuts += 1;
                tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
                sites.run(&["heal", name]).await?;
                tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
            }
            sites.run(&["cut", name]).await?;
            done.cuts += 1;
            tokio::time::sleep(secs(&mut rng, 1.0, 3.0)).await;
        } else {
            what = "cut";
            sites.run(&["cut", name]).await?;
            done.cuts += 1;
            tokio::time::sleep(secs(&mut rng, 1.0, max_cut.min(left).max(1.0))).await;
        }
        first = false;
        let before = state_within(&field.bus, Duration::from_secs(30))
            .await
            .map_or(0, |s| settled(&s));
        sites.run(&["heal", name]).await?;
        let healed = Instant::now();
        match drained(field, healed, before).await {
            Some(d) => {
                // The centre's board and the site's agree once the site's mirror holds the
                // centre's log up to where it stood when the outbox emptied (its own items
                // and everything the centre recorded meanwhile).
                let head = centre_head(http).await;
                let agreed = testkit::eventually(AGREE_LIMIT, || async {
                    let covered = mirror::covered(&field.bus).await?;
                    (covered >= head).then(|| healed.elapsed())
                })
                .await;
                let Some(agreed) = agreed else {
                    done.problems.push(format!(
                        "{name}: the site's mirror did not reach the centre's position {head} within {} s of an empty outbox ({what})",
                        AGREE_LIMIT.as_secs()
                    ));
                    return Ok(done);
                };
                eprintln!(
                    "  {name}: {what} healed: first item settled after {:.1} s, {} items settled, outbox empty after {:.1} s, boards agree after {:.1} s",
                    d.resumed.as_secs_f64(),
                    d.settled,
                    d.took.as_secs_f64(),
                    agreed.as_secs_f64()
                );
                done.heals.push(Heal {
                    site: name.to_owned(),
                    what,
                    resumed: d.resumed,
                    took: d.took,
                    settled: d.settled,
                    agreed,
                });
            }
            None => {
                done.problems.push(format!(
                    "{name}: the outbox did not empty within {} s of a heal ({what})",
                    DRAIN_LIMIT.as_secs()
                ));
                return Ok(done);
            }
        }
        tokio::time::sleep(secs(&mut rng, 2.0, 5.0)).await;
    }
    Ok(done)
}

/// The duty officer at the centre: a relocation order (Mali) every fourth command, else a
/// broadcast to one site's country (every third command's asks for an acknowledgement, and
/// goes into that site's `alerts` once the centre took it), each sent again with the same
/// id until acknowledged and recorded in `acks`.
async fn duty(
    http: SocketAddr,
    token: String,
    acks: AckFile,
    alerts: Vec<(String, Arc<Mutex<Vec<Uuid>>>)>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut n = 0usize;
    let deadline = (time::OffsetDateTime::now_utc() + time::Duration::hours(6))
        .format(&Rfc3339)
        .unwrap_or_default();
    while !stop.load(Ordering::Acquire) {
        n += 1;
        let id = Uuid::new_v4();
        let mut alert_of = None;
        let (path, body) = if n.is_multiple_of(4) {
            ("/api/v1/orders", order_body(id, "ML", "MLI-BKO"))
        } else {
            let country = SCOPES[n % SCOPES.len()].1;
            let mut body = json!({"id": id, "title": format!("Site chaos advisory {n}"),
                "body": "Routine check.", "severity": "low", "audience": {"country": country}});
            if n.is_multiple_of(3) {
                body["requires_ack"] = json!(true);
                body["ack_deadline"] = json!(deadline);
                alert_of = alerts.iter().find(|(scope, _)| scope == country);
            }
            ("/api/v1/broadcasts", body)
        };
        let started = Instant::now();
        loop {
            let a = testkit::http::json(http, "POST", path, Some(&token), Some(&body)).await;
            if let Ok(a) = &a
                && (a.status == 201 || a.status == 200)
            {
                let v = a.json();
                acks.record(&Ack {
                    id,
                    stream: v["stream"].as_str().unwrap_or_default().to_owned(),
                    position: v["position"].as_u64().unwrap_or_default(),
                    version: v["stream_version"].as_u64().unwrap_or_default(),
                    via: "http".into(),
                })
                .await?;
                if let Some((_, list)) = alert_of {
                    list.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(id);
                }
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "the centre did not acknowledge {path} {id} within 60 s: {a:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    Ok(())
}

fn order_body(id: Uuid, country: &str, area: &str) -> Value {
    let deadline = (time::OffsetDateTime::now_utc() + time::Duration::hours(24))
        .format(&Rfc3339)
        .unwrap_or_default();
    json!({"id": id, "kind": "relocation", "country": country, "area": area,
           "scope": "all_personnel", "destination": "Nairobi", "deadline": deadline})
}

/// An order for `area` whose roll call has people (the relocation service reads the imported
/// register from the log: until it has, a roll call is empty); its id and the people.
async fn order_with_people(
    http: SocketAddr,
    token: &str,
    country: &str,
    area: &str,
) -> anyhow::Result<(Uuid, Vec<String>)> {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let id = Uuid::new_v4();
        let given = testkit::http::json(
            http,
            "POST",
            "/api/v1/orders",
            Some(token),
            Some(&order_body(id, country, area)),
        )
        .await;
        if let Ok(a) = given
            && a.status == 201
            && let Ok(o) = testkit::http::json(
                http,
                "GET",
                &format!("/api/v1/orders/{id}"),
                Some(token),
                None,
            )
            .await
        {
            let people: Vec<String> = o.json()["roll_call"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["person"].as_str().map(str::to_owned))
                .collect();
            if !people.is_empty() {
                return Ok((id, people));
            }
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no order for {area} with a roll call within 90 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs the scenario in `dir`: chaos for `duration`, cuts of 1–`max_cut` s.
pub async fn run(
    vigil: &Path,
    script: &Path,
    dir: &Path,
    duration: Duration,
    max_cut: f64,
    seed: u64,
) -> anyhow::Result<Outcome> {
    let vigil = std::fs::canonicalize(vigil)
        .with_context(|| format!("no vigil binary at {}", vigil.display()))?;
    let script = std::fs::canonicalize(script).with_context(|| {
        format!(
            "no {} (run from the repository's root, or pass --script)",
            script.display()
        )
    })?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let auth = Auth::open(&data, vec![]).context("opening the gateway's keys")?;
    let day = Duration::from_secs(24 * 3600);
    let (token, _) = auth.issue("chaos.duty", Role::DutyOfficer, None, None, day, "api")?;
    let http = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let metrics = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let nats = testkit::free_port();
    let leaf = format!("127.0.0.1:{}", testkit::free_port());
    let mut up = Up::start(
        &vigil,
        dir,
        nats,
        http,
        metrics,
        &["--leaf-addr".to_owned(), leaf],
    )?;
    let ready = testkit::eventually(Duration::from_secs(120), || async {
        let a = testkit::http::request(http, "GET", "/readyz", &[], None)
            .await
            .ok()?;
        (a.status == 200 && data.join("leaf-url").exists() && data.join("nats-url").exists())
            .then_some(())
    })
    .await;
    anyhow::ensure!(
        ready.is_some(),
        "vigil up was not ready within 120 s; see {}",
        dir.join("vigil-up.log").display()
    );
    let import = tokio::process::Command::new(&vigil)
        .args([
            "import",
            "ops/reference/sample.jsonl",
            "--nats-url",
            &format!("nats://127.0.0.1:{nats}"),
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .await
        .context("running vigil import")?;
    anyhow::ensure!(
        import.status.success(),
        "vigil import failed: {}",
        String::from_utf8_lossy(&import.stderr)
    );
    let acks_path = dir.join("acks.jsonl");
    let acks = AckFile::create(&acks_path)?;

    // The orders the sites mark, given before the sites start.
    let mut orders = Vec::new();
    for (_, scope, area) in SCOPES {
        orders.push(order_with_people(http, &token, scope, area).await?);
    }
    let sites = Sites {
        script,
        vigil: vigil.clone(),
        dir: dir.join("sites"),
    };
    let mut fields = Vec::new();
    for (i, (stem, scope, _)) in SCOPES.iter().enumerate() {
        let name = format!("{stem}-{}", std::process::id() % 10_000);
        sites
            .run(&[
                "up",
                &name,
                "--scope",
                scope,
                "--centre",
                &data.to_string_lossy(),
            ])
            .await?;
        let other = (i + 1) % SCOPES.len();
        fields.push(Arc::new(Field {
            bus: site_bus(&sites.dir, &name).await?,
            name,
            scope: (*scope).to_owned(),
            other_scope: SCOPES[other].1.to_owned(),
            order: orders[i].0,
            persons: orders[i].1.clone(),
            other_order: orders[other].0,
            alerts: Arc::new(Mutex::new(Vec::new())),
            accepted: Mutex::new(Vec::new()),
        }));
    }
    eprintln!(
        "site: centre up, sites {} up; chaos for {:.0} s (cuts of 1–{max_cut:.0} s, seed {seed})",
        fields
            .iter()
            .map(|f| format!("{} ({})", f.name, f.scope))
            .collect::<Vec<_>>()
            .join(", "),
        duration.as_secs_f64()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let alerts = fields
        .iter()
        .map(|f| (f.scope.clone(), f.alerts.clone()))
        .collect();
    let duty_task = tokio::spawn(duty(
        http,
        token.clone(),
        acks.clone(),
        alerts,
        stop.clone(),
    ));
    let submitters: Vec<_> = fields
        .iter()
        .enumerate()
        .map(|(i, f)| tokio::spawn(submitter(f.clone(), stop.clone(), seed ^ (i as u64 + 1))))
        .collect();
    let until = Instant::now() + duration;
    let runs = fields.iter().enumerate().map(|(i, f)| {
        chaos(
            &sites,
            f,
            http,
            until,
            max_cut,
            seed.wrapping_add(i as u64 * 7919),
        )
    });
    let results = futures::future::join_all(runs).await;

    let mut problems = Vec::new();
    let (mut heals, mut cuts, mut kills, mut before_kills) = (Vec::new(), 0, 0, 0);
    for r in results {
        match r {
            Ok(c) => {
                heals.extend(c.heals);
                cuts += c.cuts;
                kills += c.kills;
                before_kills += c.before_kills;
                problems.extend(c.problems);
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    // Whatever happened, the links are healed before the end (a heal of a healed link is
    // harmless).
    for f in &fields {
        if let Err(e) = sites.run(&["heal", &f.name]).await {
            problems.push(format!("{e:#}"));
        }
    }
    stop.store(true, Ordering::Release);
    for s in submitters {
        problems.extend(s.await?);
    }
    if let Err(e) = duty_task.await? {
        problems.push(format!("{e:#}"));
    }
    for f in &fields {
        if drained(f, Instant::now(), 0).await.is_none() {
            problems.push(format!("{}: the outbox did not empty at the end", f.name));
        }
    }
    // Each item's state at its site, and its centre outcome as an acknowledgement.
    let mut states = Vec::new();
    let mut site_acks = Vec::new();
    for f in &fields {
        let mut by_id = HashMap::new();
        let accepted = f.accepted().clone();
        for a in &accepted {
            let s = ask(
                &f.bus,
                format!("{}.{}", site::subjects::STATUS, a.id),
                Bytes::new(),
                10,
            )
            .await;
            let state = s.map(|s| s["ok"]["state"].clone()).unwrap_or(Value::Null);
            if state["state"] == "forwarded" && !a.kind.wrong() {
                let o = &state["outcome"];
                site_acks.push(Ack {
                    id: a.event,
                    stream: o["stream"].as_str().unwrap_or_default().to_owned(),
                    position: o["position"].as_u64().unwrap_or_default(),
                    version: o["stream_version"].as_u64().unwrap_or_default(),
                    via: format!("site:{}", f.name),
                });
            }
            by_id.insert(a.id, state);
        }
        states.push(by_id);
    }
    // Each site's mirror, read on its own bus once it covers the centre's head of now.
    let head = centre_head(http).await;
    let mut mirrors = Vec::new();
    for f in &fields {
        match mirror::read(&f.bus, head).await {
            Ok(m) => mirrors.push(Some(m)),
            Err(e) => {
                problems.push(format!("{}: {e:#}", f.name));
                mirrors.push(None);
            }
        }
    }
    eprintln!("site: {cuts} cuts ({kills} with kill -9); stopping the sites and the centre");
    drop(sites);
    up.stop();
    let log: Vec<RecordedEvent> = check::read_dir(&data.join("store"))?;
    let mut acked = AckFile::read(&acks_path)?;
    let centre_acks = acked.len();
    acked.extend(site_acks);
    let verdict = check::check(&log, &acked);
    let mut mirrored = Vec::new();
    for (f, m) in fields.iter().zip(&mirrors) {
        if let Some(m) = m {
            problems.extend(mirror::judge(&f.name, &f.scope, m, &log));
            mirrored.push((f.name.clone(), m.ids.len()));
        }
    }
    let verdicts = fields
        .iter()
        .zip(&states)
        .map(|(f, s)| (f.name.clone(), judge(&f.name, &f.accepted(), s, &log)))
        .collect();
    Ok(Outcome {
        seed,
        mirrored,
        sites: verdicts,
        heals,
        cuts: (cuts, kills),
        before_kills,
        verdict,
        centre_acks,
        problems,
    })
}

/// The centre's durable head as its gateway's `/readyz` says (0 if it does not answer).
async fn centre_head(http: SocketAddr) -> u64 {
    match testkit::http::request(http, "GET", "/readyz", &[], None).await {
        Ok(a) => a.json()["head"].as_u64().unwrap_or(0),
        Err(_) => 0,
    }
}
