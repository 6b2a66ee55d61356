//! Operator verbs: `vigil tail`, `vigil append`, `vigil replay` and `vigil verify`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use events::{AppendRequest, ExpectedVersion, Meta, NewEvent, StreamName};
use runtime::nats::Mode;
use runtime::{CatchUp, CatchUpConfig, StoreClient};

use crate::cli::{AppendArgs, Resolved, TailArgs};

/// Prints committed events, catching up from `--from` first, until Ctrl-C or `--count`.
pub async fn tail(settings: Resolved, args: TailArgs) -> anyhow::Result<()> {
    let shutdown = runtime::shutdown::on_signals();
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-tail",
        settings.nats_credentials_for(runtime::nats_auth::CLI)?,
        Mode::Tool,
    )
    .await?;
    let after = match args.from {
        Some(from) => from.saturating_sub(1),
        None => {
            // Only new events: start after the current head.
            let store = StoreClient::new(client.clone(), Duration::from_secs(5));
            let (_, head) = store
                .read(u64::MAX, 1)
                .await
                .context("cannot reach the store; is `vigil up` (or `vigil store`) running?")?;
            head
        }
    };
    eprintln!("tailing the event log after position {after} (Ctrl-C to stop)");
    let mut sub = CatchUp::start(client, CatchUpConfig::new("tail", after), shutdown.clone());
    let mut printed = 0u64;
    let stdout = std::io::stdout();
    while let Some(event) = sub.recv().await {
        let mut out = stdout.lock();
        let line = if args.json {
            serde_json::to_string(&event)?
        } else {
            let at = event
                .recorded_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            format!(
                "#{:<8} {at}  {}  v{}  {} (v{})  {}",
                event.position, event.stream, event.version, event.event_type, event.v, event.data
            )
        };
        if writeln!(out, "{line}").is_err() {
            break; // stdout closed (e.g. piped into `head`)
        }
        printed += 1;
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
    }
    shutdown.cancel();
    Ok(())
}

/// Appends one event and prints where it landed.
pub async fn append(settings: Resolved, args: AppendArgs) -> anyhow::Result<()> {
    let stream = match &args.stream {
        Some(s) => StreamName::parse(s)?,
        None => StreamName::new(
            events::Category::parse(&args.category)?,
            uuid::Uuid::now_v7(),
        ),
    };
    let expected_version: ExpectedVersion =
        serde_json::from_str(&expected_json(&args.expected_version)).map_err(|_| {
            anyhow::anyhow!(
                "--expected-version must be any, no_stream or a version ≥ 1, not {:?}",
                args.expected_version
            )
        })?;
    let data: serde_json::Value = serde_json::from_str(&args.data)
        .map_err(|e| anyhow::anyhow!("--data is not valid JSON: {e}"))?;
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let event = NewEvent {
        id: args.id.unwrap_or_else(uuid::Uuid::now_v7),
        event_type: args.event_type.clone(),
        v: args.v,
        data,
        meta: Meta {
            actor: Some(actor),
            role: Some("admin".into()),
            source: Some("cli".into()),
            ..Meta::default()
        },
    };
    let id = event.id;
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-append",
        settings.nats_credentials_for(runtime::nats_auth::CLI)?,
        Mode::Tool,
    )
    .await?;
    let store = StoreClient::new(client, Duration::from_secs(5));
    let request = AppendRequest {
        after: None,
        stream: stream.clone(),
        expected_version,
        events: vec![event],
    };
    let ok = store
        .append_retrying(&request, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "appended {id} to {stream} at position {} (stream version {})",
        ok.last_position, ok.stream_version
    );
    Ok(())
}

fn expected_json(s: &str) -> String {
    match s.parse::<u64>() {
        Ok(n) => n.to_string(),
        Err(_) => format!("{s:?}"),
    }
}

/// Rebuilds the board projections from the whole log and reports the speed.
pub async fn replay(settings: Resolved, args: crate::cli::ReplayArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut board = boards::Situation::new();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} replay [{elapsed_precise}] [{wide_bar}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut folded = 0u64;
    if args.from_disk {
        let dir = settings.data_dir.join("store");
        let log = tokio::task::spawn_blocking(move || store::Log::open(&dir, store::Durability::SyncData))
            .await?
            .map_err(|e| anyhow::anyhow!("{e}. Stop the store first (the directory is locked while it runs), or replay without --from-disk"))?;
        bar.set_length(log.head());
        let mut from = 1;
        loop {
            // The stored bytes, each read once straight into its typed event (no tree).
            let page = log.read_raw(from, 10_000, usize::MAX)?;
            if page.is_empty() {
                break;
            }
            for bytes in &page {
                let event = events::TypedRecorded::decode(bytes).map_err(|e| {
                    anyhow::anyhow!("position {from}: unreadable event ({e}); run `vigil verify`")
                })?;
                let _ = board.apply(event);
                from += 1;
            }
            folded += page.len() as u64;
            bar.set_position(folded);
        }
    } else {
        let client = runtime::nats::connect(
            &settings.nats_url,
            "vigil-replay",
            settings.nats_credentials_for(runtime::nats_auth::CLI)?,
            Mode::Tool,
        )
        .await?;
        let store = StoreClient::new(client, Duration::from_secs(10));
        let (_, head) = store
            .read(u64::MAX, 1)
            .await
            .context("cannot reach the store; is `vigil up` (or `vigil store`) running? Or use --from-disk with the store stopped")?;
        bar.set_length(head);
        loop {
            let (page, head) = store
                .read_as::<events::TypedRecorded>(folded + 1, 1000)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            bar.set_length(head);
            if page.is_empty() {
                break;
            }
            folded += page.len() as u64;
            for event in page {
                let _ = board.apply(event);
            }
            bar.set_position(folded);
        }
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    let snapshot = board.snapshot(boards::View::Duty);
    println!(
        "replayed {folded} events in {secs:.2} s ({:.0} events/s); board at position {}: {} countries, {} open incidents",
        folded as f64 / secs.max(1e-9),
        board.position(),
        snapshot["countries"].as_object().map_or(0, |c| c.len()),
        snapshot["counters"]["open_incidents"]
    );
    Ok(())
}

/// Checks the whole event log on disk, with progress, and prints the report. The store must
/// be stopped. An intact log returns `Ok` (exit 0); a damaged one prints the first broken
/// position and what to do, and returns an error (exit 1).
pub async fn verify(settings: Resolved, _args: crate::cli::VerifyArgs) -> anyhow::Result<()> {
    let dir = settings.data_dir.join("store");
    if !dir.is_dir() {
        anyhow::bail!(
            "no event store at {}: --data-dir must be the data directory that holds store/ (the one `vigil up` or `vigil store` uses)",
            dir.display()
        );
    }
    let started = std::time::Instant::now();
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} verify [{elapsed_precise}] [{wide_bar}] {percent}% (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = {
        let (dir, bar) = (dir.clone(), bar.clone());
        tokio::task::spawn_blocking(move || {
            let log = store::Log::open_for_verify(&dir)?;
            let report = log.verify(|done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })?;
            // Who appended what is read only from an intact log (a damaged one is reported
            // above and restored from a backup).
            let appenders = if report.is_intact() {
                Some(Appenders::of(&log)?)
            } else {
                None
            };
            Ok::<_, store::LogError>((report, appenders))
        })
        .await?
    };
    bar.finish_and_clear();
    let (report, appenders) = report.map_err(|e| match e {
        store::LogError::Locked(_) => anyhow::anyhow!(
            "{e}. `vigil verify` reads the files itself: stop the store, verify, then start it again"
        ),
        e => anyhow::anyhow!("cannot read the event log at {}: {e}", dir.display()),
    })?;
    println!(
        "verified {} in {:.1} s",
        dir.display(),
        started.elapsed().as_secs_f64()
    );
    println!("{report}");
    if let Some(appenders) = appenders {
        print!("{appenders}");
    }
    if report.is_intact() {
        return Ok(());
    }
    match report.first_broken() {
        Some((_, broken)) => {
            let p = broken.position;
            println!();
            if p > 1 {
                println!(
                    "The events at positions 1 to {} passed every check; the first damage is at position {p} (the lines above say what else is wrong).",
                    p - 1
                );
            }
            println!(
                "What to do: keep the store stopped, set {} aside for investigation (do not delete it), restore the data directory's store from the most recent backup, and run `vigil verify` on the restored copy before starting the store again.",
                dir.display()
            );
            anyhow::bail!(
                "the event log at {} is damaged: first broken position {p} (failures: {})",
                dir.display(),
                report.failures()
            )
        }
        None => anyhow::bail!(
            "the event log's hash chain is not built over the whole log yet: start the store once (it builds the chain at open), stop it, and run `vigil verify` again"
        ),
    }
}

/// Who appended what, from each event's `meta.appended_by` (the NATS user the store saw):
/// events per user and stream category, and those whose user does not own the category
/// (`runtime::nats_auth::append_categories`), which `vigil up`'s nats-server refuses: seeing
/// any means the bus did not hold its users to their categories (an external nats-server,
/// a bus without credentials, or events from before the rule).
#[derive(Debug, Default)]
struct Appenders {
    /// (user, category) → events; user `None`: not recorded (events from before the store
    /// recorded it).
    counts: std::collections::BTreeMap<(Option<String>, String), u64>,
    /// Events appended outside their user's categories, and the first one's position.
    outside: u64,
    first_outside: Option<(u64, String, String)>,
}

impl Appenders {
    fn of(log: &store::Log) -> Result<Self, store::LogError> {
        let mut a = Self::default();
        let mut from = 1;
        loop {
            let page = log.read_from(from, 10_000)?;
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            for event in &page {
                let category = event.stream.category().as_str();
                let user = event.meta.appended_by.clone();
                if let Some(user) = &user {
                    let owned = runtime::nats_auth::append_categories(user);
                    if !owned.contains(&category)
                        && !owned.contains(&runtime::nats_auth::ANY_CATEGORY)
                    {
                        a.outside += 1;
                        a.first_outside.get_or_insert_with(|| {
                            (event.position, user.clone(), category.to_owned())
                        });
                    }
                }
                *a.counts.entry((user, category.to_owned())).or_default() += 1;
            }
        }
        Ok(a)
    }
}

impl std::fmt::Display for Appenders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "appended by (NATS user: stream category events):")?;
        for ((user, category), n) in &self.counts {
            let user = user.as_deref().unwrap_or("(not recorded)");
            writeln!(f, "  {user}: {category} {n}")?;
        }
        if let Some((position, user, category)) = &self.first_outside {
            writeln!(
                f,
                "OUTSIDE THEIR CATEGORIES: {} event(s) appended by a NATS user that does not own the stream's category (first: position {position}, `{user}` wrote a `{category}` stream). `vigil up`'s nats-server refuses these: check which nats-server the centre used and the actors of these events",
                self.outside
            )?;
        }
        Ok(())
    }
}
