//! `vigil import <file>`: reference data (areas, duty stations, agencies, personnel) into the
//! log as events.
//!
//! # The file
//! JSON Lines; each line one record:
//! `{"kind": "area", "area": "SOM-BAN", "country": "SO", "name": "Banaadir"}` or
//! `{"kind": "duty_station", "station": "SOM-MGQ", "country": "SO", "area": "SOM-BAN",
//! "name": "Mogadishu", "lat": 2.0469, "lon": 45.3182}` or
//! `{"kind": "agency", "agency": "unicef", "name": "UNICEF"}` or
//! `{"kind": "person", "person": "P-000001", "name": "Amina Hassan", "agency": "unicef",
//! "nationality": "KE", "duty_station": "SOM-MGQ", "dependants": 2, "security_officer": false,
//! "essential": false}`. Blank lines and `#` comments are skipped.
//!
//! # Promises
//! - The whole file is read and checked first; if any line is bad, every bad line is
//!   reported with its number (up to 20) and nothing is written.
//! - A record is stored when it differs from the latest registration of its kind in its
//!   stream, and only then: importing the same file again stores nothing new, a changed record
//!   is stored as a new registration (the latest stands), and a record changed back to an
//!   earlier content (a person moved A → B → A) is stored again, because it differs from the
//!   latest. Within one file, the last line for a record wins.
//! - Each append names the stream version it was decided on, and its id is derived from that
//!   version and the content: a retried append is stored once (the store's id index), and a
//!   stream written meanwhile by someone else is read and decided again.
//! - Interrupted (store down, Ctrl-C), it can simply be run again: what landed is not stored
//!   twice, the rest is stored.

use std::time::Duration;

use events::command::Role;
use events::domain::DomainEvent;
use events::domain::agency::{self, AgencyRegistered};
use events::domain::area::{self, AreaRegistered};
use events::domain::person::{self, PersonRegistered};
use events::domain::station::{self, DutyStationRegistered};
use events::{
    AppendRequest, ErrorCode, ExpectedVersion, Meta, NewEvent, RecordedEvent, StreamName,
};
use futures::StreamExt;
use runtime::nats::Mode;
use runtime::{ClientError, StoreClient};
use serde::Deserialize;
use uuid::Uuid;

use crate::cli::{ImportArgs, Resolved};

/// Largest reference file read (a full dataset of stations and areas is a few MB).
const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Appends in flight at once.
const IN_FLIGHT: usize = 64;

/// One line of the file.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Record {
    Area(AreaRegistered),
    DutyStation(DutyStationRegistered),
    Agency(AgencyRegistered),
    Person(PersonRegistered),
}

impl Record {
    fn into_event(self) -> (StreamName, DomainEvent) {
        match self {
            Record::Area(a) => (area::stream_for(&a.area), a.into()),
            Record::DutyStation(s) => (station::stream_for(&s.station), s.into()),
            Record::Agency(a) => (agency::stream_for(&a.agency), a.into()),
            Record::Person(p) => (person::stream_for(&p.person), p.into()),
        }
    }
}

/// Reads and checks every line; the events to append, or every error with its line number.
pub fn parse(text: &str) -> Result<Vec<(StreamName, DomainEvent)>, Vec<String>> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| e.to_string())
            .and_then(events::codec::from_value::<Record>)
            .and_then(|r| {
                let (stream, event) = r.into_event();
                event.validate().map_err(|e| e.to_string())?;
                Ok((stream, event))
            });
        match parsed {
            Ok(e) => events.push(e),
            Err(e) => errors.push(format!("line {}: {e}", i + 1)),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// The event id of a record stored on top of stream version `version`: the same content on
/// the same version always gets the same id, so a retried append is stored once.
fn content_id(stream: &StreamName, version: u64, event: &NewEvent) -> Uuid {
    let data = serde_json::to_string(&event.data).unwrap_or_default();
    Uuid::new_v5(
        &Uuid::NAMESPACE_OID,
        format!("vigil-import-{stream}-{version}-{data}").as_bytes(),
    )
}

/// Whether `record` says what the latest registration of its kind in `history` says.
fn unchanged(history: &[RecordedEvent], record: &NewEvent) -> bool {
    history
        .iter()
        .rev()
        .find(|e| e.event_type == record.event_type)
        .is_some_and(|latest| latest.data == record.data)
}

/// How long one record waits for a store that does not answer (starting, restarting).
const STORE_DEADLINE: Duration = Duration::from_secs(30);
/// How many times one record is decided again after its stream changed under it.
const MAX_RACES: usize = 8;

/// Stores `event` in `stream` unless it is already the latest registration there; `true`
/// when this call stored it.
async fn import_one(
    store: &StoreClient,
    stream: StreamName,
    event: NewEvent,
) -> anyhow::Result<bool> {
    for _ in 0..MAX_RACES {
        let (history, version) = store.read_whole_stream(&stream, STORE_DEADLINE).await?;
        if unchanged(&history, &event) {
            return Ok(false);
        }
        let request = AppendRequest {
            after: None,
            events: vec![NewEvent {
                id: content_id(&stream, version, &event),
                ..event.clone()
            }],
            stream: stream.clone(),
            expected_version: match version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            },
        };
        match store.append_retrying(&request, STORE_DEADLINE).await {
            // A duplicate is this very append, landed by an earlier try whose answer was lost.
            Ok(ok) => return Ok(!ok.duplicate),
            Err(ClientError::Store(e)) if e.code == ErrorCode::WrongExpectedVersion => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("{stream} kept changing while it was imported ({MAX_RACES} tries)")
}

/// The records to store, one per stream: a later line for the same record replaces an earlier
/// one, in the order of the file's last lines.
fn last_per_stream(records: Vec<(StreamName, DomainEvent)>) -> Vec<(StreamName, DomainEvent)> {
    let mut last = std::collections::HashMap::new();
    for (i, (stream, _)) in records.iter().enumerate() {
        last.insert(stream.clone(), i);
    }
    records
        .into_iter()
        .enumerate()
        .filter(|(i, (stream, _))| last.get(stream) == Some(i))
        .map(|(_, r)| r)
        .collect()
}

/// Runs `vigil import`.
pub async fn run(settings: Resolved, args: ImportArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        anyhow::bail!(
            "{} is {size} bytes; split it into files under {MAX_FILE_BYTES} bytes",
            args.file.display()
        );
    }
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let records = match parse(&text) {
        Ok(r) => last_per_stream(r),
        Err(errors) => {
            for e in errors.iter().take(20) {
                eprintln!("{}: {e}", args.file.display());
            }
            if errors.len() > 20 {
                eprintln!("… and {} more", errors.len() - 20);
            }
            anyhow::bail!(
                "{} bad line(s) in {}; nothing was imported. Fix them and run the import again",
                errors.len(),
                args.file.display()
            );
        }
    };
    let actor = args
        .actor
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "cli".into());
    let client = runtime::nats::connect(
        &settings.nats_url,
        "vigil-import",
        settings.nats_credentials_for(runtime::nats_auth::CLI)?,
        Mode::Tool,
    )
    .await?;
    let store = StoreClient::new(client, Duration::from_secs(5));
    let bar = indicatif::ProgressBar::new(records.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "import [{elapsed_precise}] [{wide_bar}] {pos}/{len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let meta = Meta {
        actor: Some(actor),
        role: Some(Role::Admin.as_str().to_owned()),
        source: Some("import".to_owned()),
        ..Meta::default()
    };
    let appends = records.into_iter().map(|(stream, event)| {
        let event = event.to_new_event(Uuid::nil(), meta.clone());
        let store = store.clone();
        async move { import_one(&store, stream, event).await }
    });
    let mut outcomes = futures::stream::iter(appends).buffer_unordered(IN_FLIGHT);
    let (mut new, mut unchanged) = (0u64, 0u64);
    while let Some(outcome) = outcomes.next().await {
        match outcome {
            Ok(false) => unchanged += 1,
            Ok(true) => new += 1,
            Err(e) => {
                bar.abandon();
                anyhow::bail!(
                    "the store refused or did not answer ({e}); {new} records were stored. Run the same import again when the store is up: nothing is stored twice"
                );
            }
        }
        bar.inc(1);
    }
    bar.finish();
    println!(
        "imported {}: {new} new or changed, {unchanged} already there",
        args.file.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_sample_parses() {
        let sample = include_str!("../../../ops/reference/sample.jsonl");
        let records = parse(sample).unwrap();
        assert!(records.len() > 50, "{}", records.len());
    }

    #[test]
    fn every_bad_line_is_named_and_good_files_parse() {
        let good = "# areas\n{\"kind\":\"area\",\"area\":\"SOM-BAN\",\"country\":\"SO\",\"name\":\"Banaadir\"}\n\n{\"kind\":\"duty_station\",\"station\":\"SOM-MGQ\",\"country\":\"SO\",\"area\":\"SOM-BAN\",\"name\":\"Mogadishu\",\"lat\":2.04,\"lon\":45.3}\n";
        let events = parse(good).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, area::stream_for("SOM-BAN"));
        let again = parse(good).unwrap();
        let new = |e: &DomainEvent| e.to_new_event(Uuid::nil(), Meta::default());
        assert_eq!(
            content_id(&events[1].0, 3, &new(&events[1].1)),
            content_id(&again[1].0, 3, &new(&again[1].1)),
            "the same record on the same version always gets the same id"
        );
        assert_ne!(
            content_id(&events[1].0, 3, &new(&events[1].1)),
            content_id(&events[1].0, 5, &new(&events[1].1)),
            "a record stored again on a later version is a new event"
        );
        let bad = "{\"kind\":\"area\",\"area\":\"A\",\"country\":\"XX\",\"name\":\"n\"}\nnot json\n{\"kind\":\"planet\"}\n{\"kind\":\"duty_station\",\"station\":\"S\",\"country\":\"SO\",\"area\":\"A\",\"name\":\"n\",\"lat\":99,\"lon\":0}\n";
        let errors = parse(bad).unwrap_err();
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].starts_with("line 1: country"), "{}", errors[0]);
        assert!(errors[1].starts_with("line 2:"));
        assert!(errors[3].starts_with("line 4: lat"), "{}", errors[3]);
    }

    #[test]
    fn a_later_line_for_the_same_record_wins() {
        let text = "{\"kind\":\"agency\",\"agency\":\"undp\",\"name\":\"UNDP\"}\n{\"kind\":\"agency\",\"agency\":\"wfp\",\"name\":\"WFP\"}\n{\"kind\":\"agency\",\"agency\":\"undp\",\"name\":\"UN Development Programme\"}\n";
        let kept = last_per_stream(parse(text).unwrap());
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].0, agency::stream_for("wfp"));
        let DomainEvent::AgencyRegistered(undp) = &kept[1].1 else {
            panic!("{:?}", kept[1].1)
        };
        assert_eq!(undp.name, "UN Development Programme");
    }
}
