//! The two writing phases (see the module docs): phase A's concurrent writers flushed into
//! table files, phase B's single appends with the journal's length after each
//! acknowledgement, the in-flight append, and the acknowledged-head mark set as a power loss
//! would leave it; and where the store's files are (the newest journal, its data end, the
//! tables of each keyspace).

use crate::writers::{self, Ack, AckFile, Progress};
use anyhow::Context;
use events::{AppendRequest, ExpectedVersion, NewEvent, StreamName};
use runtime::StoreClient;
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;
use testkit::NatsServer;
use uuid::Uuid;

use super::{JOURNAL_PREALLOCATED, KEYSPACES, LoneStore, copy_dir};

/// What the writing phases left, shared by every case.
pub(super) struct Written {
    pub(super) nats: NatsServer,
    pub(super) store: StoreClient,
    pub(super) original: PathBuf,
    pub(super) acks: Vec<Ack>,
    /// Phase A's acks (in table files).
    pub(super) phase_a: usize,
    /// Where each phase B ack's journal record ends, by event id.
    pub(super) ends: HashMap<Uuid, u64>,
    /// The phase B journal, relative to the store directory.
    pub(super) journal: PathBuf,
    /// The journal's data end after the last acknowledged group, and after the in-flight one.
    pub(super) acked_end: u64,
    pub(super) inflight_end: u64,
    /// The position the acknowledged-head mark names: the last acknowledged one.
    pub(super) mark_head: u64,
}

/// The two writing phases (see the module docs).
pub(super) async fn write(vigil: &Path, dir: &Path) -> anyhow::Result<Written> {
    let nats = NatsServer::start();
    let client =
        runtime::nats::connect(&nats.url(), "chaos-damage", None, runtime::nats::Mode::Tool)
            .await?;
    let store = StoreClient::new(client, Duration::from_secs(5));
    let original = dir.join("original");
    let store_dir = original.join("store");
    fs::create_dir_all(&original)?;
    let acks_path = dir.join("acks.jsonl");

    // Phase A: concurrent writers, then the memtables flushed into table files.
    let mut s = LoneStore::start(vigil, &nats.url(), &original, &dir.join("store-a.log"))?;
    if let Some(status) = s.serving(&store, Duration::from_secs(30)).await? {
        anyhow::bail!(
            "the store did not start on an empty directory ({status}): {}",
            s.stderr()
        );
    }
    {
        let acks = AckFile::create(&acks_path)?;
        let progress = Progress::default();
        let tasks: Vec<_> = (0..2)
            .map(|w| {
                tokio::spawn(writers::nats_writer(
                    nats.url(),
                    w,
                    acks.clone(),
                    progress.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        progress.stop.store(true, Ordering::Release);
        for t in tasks {
            t.await??;
        }
    }
    s.stop(Duration::from_secs(15)).await;
    let mut acks = AckFile::read(&acks_path)?;
    let phase_a = acks.len();
    if phase_a == 0 {
        anyhow::bail!("phase A acknowledged nothing; see {}", s.log.display());
    }
    flush_to_tables(&store_dir)?;

    // Phase B: one append at a time, each group's journal end recorded.
    let mut s = LoneStore::start(vigil, &nats.url(), &original, &dir.join("store-b.log"))?;
    if let Some(status) = s.serving(&store, Duration::from_secs(30)).await? {
        anyhow::bail!(
            "the store did not start again after phase A ({status}): {}",
            s.stderr()
        );
    }
    let journal = newest_journal(&store_dir)?;
    let journal_path = store_dir.join(&journal);
    let streams: Vec<StreamName> = (0..3)
        .map(|_| StreamName::parse(&format!("chaos-{}", Uuid::new_v4())))
        .collect::<Result<_, _>>()?;
    let mut ends = HashMap::new();
    let mut ack_lines = fs::OpenOptions::new().append(true).open(&acks_path)?;
    for i in 0..200usize {
        let stream = &streams[i % streams.len()];
        let n = 1 + i % 3;
        let events: Vec<NewEvent> = (0..n)
            .map(|k| new_event(json!({"phase": "b", "append": i, "k": k})))
            .collect();
        let request = AppendRequest {
            after: None,
            stream: stream.clone(),
            expected_version: ExpectedVersion::Any,
            events: events.clone(),
        };
        let ok = store
            .append_retrying(&request, Duration::from_secs(10))
            .await
            .map_err(|e| anyhow::anyhow!("a phase B append failed: {e}"))?;
        let end = data_end(&journal_path)?;
        for (k, e) in events.iter().enumerate() {
            let ack = Ack {
                id: e.id,
                stream: stream.as_str().to_owned(),
                position: ok.first_position + k as u64,
                version: ok.stream_version + 1 + k as u64 - n as u64,
                via: "nats".into(),
            };
            let mut line = serde_json::to_vec(&ack)?;
            line.push(b'\n');
            ack_lines.write_all(&line)?;
            ends.insert(e.id, end);
            acks.push(ack);
        }
    }
    let acked_end = data_end(&journal_path)?;
    // The group in flight: written, but its acknowledgement is not counted.
    let inflight = AppendRequest {
        after: None,
        stream: StreamName::parse(&format!("chaos-{}", Uuid::new_v4()))?,
        expected_version: ExpectedVersion::NoStream,
        events: vec![new_event(json!({"phase": "in flight"}))],
    };
    store
        .append_retrying(&inflight, Duration::from_secs(10))
        .await
        .map_err(|e| anyhow::anyhow!("the in-flight append failed: {e}"))?;
    if s.stop(Duration::from_secs(15)).await.is_none() {
        anyhow::bail!("the store did not stop on SIGTERM within 15 s");
    }
    let inflight_end = data_end(&journal_path)?;
    if newest_journal(&store_dir)? != journal || inflight_end <= acked_end {
        anyhow::bail!(
            "phase B's journal changed under the scenario ({} ended at {acked_end}, then at {inflight_end})",
            journal.display()
        );
    }
    let mark_head = acks.iter().map(|a| a.position).max().unwrap_or(0);
    mark_acknowledged(dir, &original, mark_head)?;
    eprintln!(
        "  wrote {} acknowledged events ({phase_a} in table files, {} in journal {} up to byte {acked_end}), plus one group in flight up to byte {inflight_end}; acknowledged-head mark at position {mark_head}",
        acks.len(),
        acks.len() - phase_a,
        journal.display()
    );
    Ok(Written {
        nats,
        store,
        original,
        acks,
        phase_a,
        ends,
        journal,
        acked_end,
        inflight_end,
        mark_head,
    })
}

/// Sets the acknowledged-head mark of the stopped store in `original` to `head`, as a power
/// loss while the in-flight group was being written would leave it. The chain hash there is
/// read from a scratch copy: opening the original would let fjall touch its journal, whose
/// byte offsets the cases are planned on.
fn mark_acknowledged(dir: &Path, original: &Path, head: u64) -> anyhow::Result<()> {
    let scratch = dir.join("mark-scratch");
    copy_dir(original, &scratch)?;
    let mark = {
        let log = store::Log::open_for_verify(&scratch.join("store"))?;
        log.mark_for(head)?
            .ok_or_else(|| anyhow::anyhow!("the store has no chain entry at position {head}"))?
    };
    fs::remove_dir_all(&scratch)?;
    store::log::mark::write(&original.join("store"), &mark).with_context(|| {
        format!(
            "writing the acknowledged-head mark in {}",
            original.display()
        )
    })
}

fn new_event(data: serde_json::Value) -> NewEvent {
    writers::chaos_event("chaos-damage", data)
}

/// Flushes every keyspace's memtable into a table file (the store must be stopped).
fn flush_to_tables(store_dir: &Path) -> anyhow::Result<()> {
    use store::log::fjall::{Database, KeyspaceCreateOptions, PersistMode};
    let db = Database::builder(store_dir)
        .open()
        .map_err(|e| anyhow::anyhow!("opening {} with fjall: {e}", store_dir.display()))?;
    for (_, name) in KEYSPACES {
        let ks = db
            .keyspace(name, KeyspaceCreateOptions::default)
            .map_err(|e| anyhow::anyhow!("keyspace {name}: {e}"))?;
        ks.rotate_memtable_and_wait()
            .map_err(|e| anyhow::anyhow!("flushing keyspace {name}: {e}"))?;
    }
    db.persist(PersistMode::SyncAll)
        .map_err(|e| anyhow::anyhow!("persisting: {e}"))?;
    Ok(())
}

/// The newest journal of a store directory, relative to it.
fn newest_journal(store_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in fs::read_dir(store_dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) = name
            .strip_suffix(".jnl")
            .and_then(|n| n.parse::<u64>().ok())
            && newest.as_ref().is_none_or(|(best, _)| id > *best)
        {
            newest = Some((id, PathBuf::from(name)));
        }
    }
    newest
        .map(|(_, p)| p)
        .ok_or_else(|| anyhow::anyhow!("no journal in {}", store_dir.display()))
}

/// Where the data of a journal ends: its length, or for a journal still preallocated with
/// zeros, one past its last non-zero byte (a record always ends with non-zero magic bytes).
fn data_end(path: &Path) -> anyhow::Result<u64> {
    let len = fs::metadata(path)?.len();
    if len != JOURNAL_PREALLOCATED {
        return Ok(len);
    }
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|b| *b != 0) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// Every table file of the store, relative to it, with its keyspace's name and length.
pub(super) fn tables(store_dir: &Path) -> anyhow::Result<Vec<(PathBuf, &'static str, u64)>> {
    let mut out = Vec::new();
    for (id, name) in KEYSPACES {
        let rel = Path::new("keyspaces").join(id).join("tables");
        let Ok(entries) = fs::read_dir(store_dir.join(&rel)) else {
            continue;
        };
        for entry in entries {
            let entry = entry?;
            let len = entry.metadata()?.len();
            if entry.file_type()?.is_file() && len > 0 {
                out.push((rel.join(entry.file_name()), name, len));
            }
        }
    }
    out.sort();
    Ok(out)
}
