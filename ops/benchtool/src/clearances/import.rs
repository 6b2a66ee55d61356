//! The reference data and its import, before the cells: the file read and counted, `vigil
//! import` run against the `vigil up` under test and timed to its exit (twice: the second
//! stores nothing), the wait until every follower of the log has read up to the head, and
//! the import peer (the same events appended by the bench itself with the CLI's client and
//! window).

use crate::prom;
use crate::report::thousands;
use crate::server_side::{self, Procs, ServerSide, cpu_text};
use crate::util;
use anyhow::{Context as _, bail};
use events::domain::DomainEvent;
use events::domain::agency::{self, AgencyRegistered};
use events::domain::area::{self, AreaRegistered};
use events::domain::person::{self, PersonRegistered};
use events::domain::station::{self, DutyStationRegistered};
use events::{AppendRequest, ExpectedVersion, Meta, StreamName};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt as _;
use uuid::Uuid;

use super::{ClearancesArgs, IMPORT_IN_FLIGHT, WATCH};

/// One record of the reference file as the event `vigil import` makes of it.
fn reference_event(line: &str) -> anyhow::Result<(StreamName, DomainEvent)> {
    let mut fields: Map<String, Value> = serde_json::from_str(line)?;
    let kind = match fields.remove("kind") {
        Some(Value::String(k)) => k,
        _ => bail!("no kind"),
    };
    let fields = Value::Object(fields);
    let (stream, event): (StreamName, DomainEvent) = match kind.as_str() {
        "person" => {
            let p: PersonRegistered = serde_json::from_value(fields)?;
            (person::stream_for(&p.person), p.into())
        }
        "area" => {
            let a: AreaRegistered = serde_json::from_value(fields)?;
            (area::stream_for(&a.area), a.into())
        }
        "duty_station" => {
            let s: DutyStationRegistered = serde_json::from_value(fields)?;
            (station::stream_for(&s.station), s.into())
        }
        "agency" => {
            let a: AgencyRegistered = serde_json::from_value(fields)?;
            (agency::stream_for(&a.agency), a.into())
        }
        other => bail!("unknown kind {other:?}"),
    };
    event.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((stream, event))
}

/// The lines of the reference file that hold records (not blank, not `#` comments).
pub(super) fn records(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
}

/// What the reference file holds.
pub(super) struct Reference {
    /// Records by kind.
    pub(super) kinds: BTreeMap<String, u64>,
    /// Every record.
    pub(super) records: u64,
    /// The person ids, in file order.
    pub(super) persons: Vec<String>,
}

#[derive(Deserialize)]
pub(super) struct Kind {
    pub(super) kind: String,
    #[serde(default)]
    pub(super) person: Option<String>,
}

pub(super) fn read_reference(path: &Path) -> anyhow::Result<Reference> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut r = Reference {
        kinds: BTreeMap::new(),
        records: 0,
        persons: Vec::new(),
    };
    for (i, line) in records(&text).enumerate() {
        let k: Kind = serde_json::from_str(line)
            .with_context(|| format!("{}: record {}", path.display(), i + 1))?;
        r.records += 1;
        if let Some(p) = k.person.filter(|_| k.kind == "person") {
            r.persons.push(p);
        }
        *r.kinds.entry(k.kind).or_default() += 1;
    }
    if r.persons.is_empty() {
        bail!(
            "{} holds no person: no traveller to request clearances for",
            path.display()
        );
    }
    Ok(r)
}

/// One timed import.
pub(super) struct ImportRun {
    pub(super) what: String,
    pub(super) seconds: f64,
    /// Records sent.
    pub(super) records: u64,
    /// Events stored.
    pub(super) stored: u64,
    /// Records the store had already.
    pub(super) unchanged: u64,
    /// CPU seconds of the importing process (`vigil import`; the bench for the peer).
    pub(super) client_cpu: Option<f64>,
    pub(super) server: ServerSide,
    /// Seconds from the end of the import until every follower of the log had read it.
    pub(super) caught_up: Option<f64>,
}

impl ImportRun {
    pub(super) fn per_sec(&self, n: u64) -> f64 {
        n as f64 / self.seconds.max(1e-9)
    }
}

/// (log head, the lowest position of the gateway's board and of every service's follower).
pub(super) fn followers(page: &str) -> Option<(u64, u64)> {
    let (head, board) = server_side::fold_position(page)?;
    let lowest = prom::prom_values(page, "vigil_consumer_position")
        .into_iter()
        .fold(board as f64, f64::min);
    Some((head, lowest as u64))
}

/// Waits (at most 10 minutes, printing every second) until every follower of the log has
/// read up to the head; the seconds it took, `None` without metrics.
async fn catch_up(metrics_url: Option<&str>, what: &str) -> Option<f64> {
    let started = Instant::now();
    let mut last_print = started;
    loop {
        let page = prom::scrape_page(metrics_url).await?;
        let (head, lowest) = followers(&page)?;
        if lowest >= head {
            return Some(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(600) {
            eprintln!(
                "[import] WARNING: followers still behind after 10 minutes ({lowest} of {head})"
            );
            return None;
        }
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            eprintln!(
                "[import] {what}: waiting for the followers of the log: head {head}, slowest at {lowest}{}",
                server_side::fold_text(Some(&page), WATCH.consumers)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state letter of `/proc/<pid>/stat` (`Z` for a process that exited, not yet reaped).
fn proc_state(pid: u32) -> Option<char> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text.get(text.rfind(')')? + 1..)?
        .trim_start()
        .chars()
        .next()
}

/// Prints a progress line every second while an import runs.
fn spawn_import_progress(what: String, metrics_url: Option<String>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let started = Instant::now();
        let mut last: Option<(Instant, u64)> = None;
        let mut tick = tokio::time::interval_at(
            (started + Duration::from_secs(1)).into(),
            Duration::from_secs(1),
        );
        loop {
            tick.tick().await;
            let page = prom::scrape_page(metrics_url.as_deref()).await;
            let head = page
                .as_deref()
                .and_then(server_side::fold_position)
                .map(|(h, _)| h);
            let now = Instant::now();
            let rate = match (last, head) {
                (Some((t, h0)), Some(h)) => format!(
                    "  +{:.0} events/s",
                    h.saturating_sub(h0) as f64 / now.saturating_duration_since(t).as_secs_f64()
                ),
                _ => String::new(),
            };
            if let Some(h) = head {
                last = Some((now, h));
            }
            eprintln!(
                "[import] {what}: {:>5.1} s{rate}{}",
                now.saturating_duration_since(started).as_secs_f64(),
                server_side::fold_text(page.as_deref(), WATCH.consumers)
            );
        }
    })
}

/// Runs `vigil import` once and times it.
pub(super) async fn vigil_import(
    args: &ClearancesArgs,
    vigil: &Path,
    what: &'static str,
    reference: &Reference,
    procs: &Procs,
) -> anyhow::Result<ImportRun> {
    let run = &args.run;
    let data_dir = run
        .nats
        .data_dir
        .as_ref()
        .context("the import needs --data-dir (the `vigil up` under test)")?;
    let metrics = run.metrics_url.as_deref();
    let a = server_side::sample(metrics, procs).await;
    let progress = spawn_import_progress(what.to_owned(), run.metrics_url.clone());
    let started = Instant::now();
    let mut child = tokio::process::Command::new(vigil)
        .arg("import")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--nats-url")
        .arg(&run.nats.nats_url)
        .arg(&args.reference)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} import", vigil.display()))?;
    let pid = child.id();
    let mut stdout = child.stdout.take().context("import stdout")?;
    let mut stderr = child.stderr.take().context("import stderr")?;
    let reader = tokio::spawn(async move {
        let (mut out, mut err) = (String::new(), String::new());
        let _ = tokio::join!(
            stdout.read_to_string(&mut out),
            stderr.read_to_string(&mut err)
        );
        (out, err)
    });
    // Its CPU time is read once it has exited and before it is reaped (a zombie keeps it).
    let mut client_cpu = None;
    if let Some(pid) = pid {
        loop {
            match proc_state(pid) {
                Some('Z') | None => break,
                Some(_) => {
                    client_cpu = util::cpu_seconds(pid).or(client_cpu);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        client_cpu = util::cpu_seconds(pid).or(client_cpu);
    }
    let status = child.wait().await.context("waiting for vigil import")?;
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    let b = server_side::sample(metrics, procs).await;
    let (out, err) = reader.await.unwrap_or_default();
    if !status.success() {
        bail!(
            "vigil import failed ({status}): {}{}",
            out.trim(),
            err.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        );
    }
    // "imported <file>: N new or changed, M already there"
    let count = |after: &str| -> Option<u64> {
        let tail = out.trim().rsplit_once(": ")?.1;
        let (n, _) = tail
            .split(", ")
            .find(|p| p.ends_with(after))?
            .split_once(' ')?;
        n.parse().ok()
    };
    let (stored, unchanged) = match (count("new or changed"), count("already there")) {
        (Some(n), Some(m)) => (n, m),
        _ => bail!("unexpected output of vigil import: {out:?}"),
    };
    eprintln!("[import] {what}: {} ({seconds:.1} s)", out.trim());
    let server = server_side::server_side(&a, &b, procs, &WATCH);
    let caught_up = catch_up(metrics, what).await;
    Ok(ImportRun {
        what: what.to_owned(),
        seconds,
        records: reference.records,
        stored,
        unchanged,
        client_cpu,
        server,
        caught_up,
    })
}

/// The import peer: the same file read, checked and appended by the bench.
pub(super) async fn peer_import(args: &ClearancesArgs, procs: &Procs) -> anyhow::Result<ImportRun> {
    let run = &args.run;
    let metrics = run.metrics_url.as_deref();
    let store = runtime::StoreClient::new(
        run.nats.connect("vigil-bench-import-peer").await?,
        Duration::from_secs(5),
    );
    let meta = Meta {
        actor: Some("bench.peer".into()),
        role: Some("admin".into()),
        source: Some("import".into()),
        ..Meta::default()
    };
    let a = server_side::sample(metrics, procs).await;
    let cpu_before = util::cpu_seconds(std::process::id());
    let in_flight = args.import_peer_in_flight.max(1);
    let what = if in_flight == IMPORT_IN_FLIGHT {
        "peer".to_owned()
    } else {
        format!("peer, {in_flight} in flight")
    };
    let progress = spawn_import_progress(what.clone(), run.metrics_url.clone());
    let started = Instant::now();
    let text = tokio::fs::read_to_string(&args.reference)
        .await
        .with_context(|| format!("reading {}", args.reference.display()))?;
    let mut parsed = Vec::new();
    for (i, line) in records(&text).enumerate() {
        parsed.push(reference_event(line).with_context(|| format!("record {}", i + 1))?);
    }
    let records = parsed.len() as u64;
    let appends = parsed.into_iter().map(|(stream, event)| {
        let store = store.clone();
        let request = AppendRequest {
            after: None,
            events: vec![event.to_new_event(Uuid::new_v4(), meta.clone())],
            stream,
            expected_version: ExpectedVersion::Any,
        };
        async move {
            store
                .append_retrying(&request, Duration::from_secs(30))
                .await
        }
    });
    let mut outcomes = futures::stream::iter(appends).buffer_unordered(in_flight);
    let (mut stored, mut unchanged) = (0u64, 0u64);
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(ok) if ok.duplicate => unchanged += 1,
            Ok(_) => stored += 1,
            Err(e) => bail!("the import peer's append failed after {stored} stored: {e}"),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.abort();
    let client_cpu = util::cpu_seconds(std::process::id())
        .zip(cpu_before)
        .map(|(b, a)| b - a);
    let b = server_side::sample(metrics, procs).await;
    eprintln!("[import] {what}: {stored} stored, {unchanged} already there ({seconds:.1} s)");
    let server = server_side::server_side(&a, &b, procs, &WATCH);
    let caught_up = catch_up(metrics, &what).await;
    Ok(ImportRun {
        what,
        seconds,
        records,
        stored,
        unchanged,
        client_cpu,
        server,
        caught_up,
    })
}

pub(super) fn print_imports(reference: &Reference, path: &Path, runs: &[ImportRun]) {
    println!();
    println!(
        "== import of {}: {} records ({}) ==",
        path.display(),
        thousands(reference.records),
        reference
            .kinds
            .iter()
            .map(|(k, n)| format!("{} {k}", thousands(*n)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for r in runs {
        println!(
            "  {}: {:.2} s, {:.0} records/s; {} events stored ({:.0}/s), {} already there; caught up {}",
            r.what,
            r.seconds,
            r.per_sec(r.records),
            thousands(r.stored),
            r.per_sec(r.stored),
            thousands(r.unchanged),
            r.caught_up
                .map_or("-".into(), |s| format!("{s:.1} s after it ended")),
        );
        if let Some(c) = r.client_cpu {
            println!(
                "  CPU of the importing process: {c:.1} s ({:.2} cores)",
                c / r.seconds.max(1e-9)
            );
        }
        server_side::print_server_side(&r.server, "");
    }
    println!();
    println!("== markdown: import ==");
    println!(
        "| run | records | events stored | seconds | records/s | events stored/s | importer CPU s | CPU cores: `vigil up` / all | store commits: mean ms, events per commit | followers caught up after |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in runs {
        let commits = match (&r.server.commit, &r.server.group) {
            (Some(c), Some(g)) if c.count > 0.0 => {
                format!("{:.2}, {:.1}", c.mean() * 1000.0, g.mean())
            }
            _ => "-".into(),
        };
        println!(
            "| {} | {} | {} | {:.2} | {} | {} | {} | {} | {commits} | {} |",
            r.what,
            thousands(r.records),
            thousands(r.stored),
            r.seconds,
            thousands(r.per_sec(r.records).round() as u64),
            thousands(r.per_sec(r.stored).round() as u64),
            r.client_cpu.map_or("-".into(), |c| format!("{c:.1}")),
            cpu_text(&r.server),
            r.caught_up.map_or("-".into(), |s| format!("{s:.1} s")),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn reference_records_become_the_imports_events() {
        let (stream, event) = reference_event(
            r#"{"kind": "person", "person": "P-000001", "name": "Amina Hassan", "agency": "unicef", "nationality": "KE", "duty_station": "AF-S0001", "dependants": 2, "security_officer": false, "essential": false}"#,
        )
        .unwrap();
        assert_eq!(stream, person::stream_for("P-000001"));
        assert!(matches!(event, DomainEvent::PersonRegistered(_)));
        let (stream, _) =
            reference_event(r#"{"kind":"area","area":"AF-A00","country":"AF","name":"AF area 0"}"#)
                .unwrap();
        assert_eq!(stream, area::stream_for("AF-A00"));
        assert!(reference_event(r#"{"kind":"planet","name":"x"}"#).is_err());
        assert_eq!(records("# c\n\n a \nb\n").collect::<Vec<_>>(), ["a", "b"]);
    }
}
