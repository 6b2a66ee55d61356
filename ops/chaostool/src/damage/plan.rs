//! The cases: each kind of damage (see the module docs) on one file of a fresh copy, with the
//! byte of the phase B journal it touches, whether phase A's tables are untouched, whether the
//! case must recover, and so which acknowledged events it leaves provable.

use crate::writers::Ack;
use rand::Rng;
use rand::rngs::StdRng;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::write::{Written, tables};

/// One kind of damage, on one file of the copy.
#[derive(Debug, Clone)]
pub(super) enum Damage {
    /// Nothing: the control.
    None,
    /// The file cut to `len` bytes.
    Cut { file: PathBuf, len: u64 },
    /// One bit flipped.
    Flip { file: PathBuf, offset: u64, bit: u8 },
    /// The file removed.
    Delete { file: PathBuf },
}

impl Damage {
    pub(super) fn file(&self) -> Option<&Path> {
        match self {
            Damage::None => None,
            Damage::Cut { file, .. } | Damage::Flip { file, .. } | Damage::Delete { file } => {
                Some(file)
            }
        }
    }

    /// Applies it to the store directory `store`.
    pub(super) fn apply(&self, store: &Path) -> anyhow::Result<()> {
        match self {
            Damage::None => {}
            Damage::Cut { file, len } => {
                let f = fs::OpenOptions::new().write(true).open(store.join(file))?;
                f.set_len(*len)?;
                f.sync_all()?;
            }
            Damage::Flip { file, offset, bit } => {
                let mut f = fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(store.join(file))?;
                let mut byte = [0u8; 1];
                f.seek(SeekFrom::Start(*offset))?;
                f.read_exact(&mut byte)?;
                byte[0] ^= 1 << bit;
                f.seek(SeekFrom::Start(*offset))?;
                f.write_all(&byte)?;
                f.sync_all()?;
            }
            Damage::Delete { file } => fs::remove_file(store.join(file))?,
        }
        Ok(())
    }
}

/// A case: a name, a damage, what it leaves provable, and whether it must be recovered.
pub(super) struct Plan {
    pub(super) name: String,
    pub(super) damage: Damage,
    /// The first byte of the phase B journal the damage touches (`None`: the journal is
    /// untouched; `Some(0)`: all of it is gone).
    pub(super) journal_from: Option<u64>,
    /// Whether phase A's events (in table files) are untouched.
    pub(super) tables_intact: bool,
    /// Whether refusing is a failure (the control, and a torn in-flight group).
    pub(super) must_recover: bool,
    /// Whether the acknowledged-head mark is left in place (otherwise it is deleted first).
    pub(super) marked: bool,
}

/// The cases, in order.
pub(super) fn plan(w: &Written, seeds: usize, rng: &mut StdRng) -> anyhow::Result<Vec<Plan>> {
    let store_dir = w.original.join("store");
    let tables = tables(&store_dir)?;
    let table_of = |keyspace: &str| {
        tables
            .iter()
            .filter(|(_, k, _)| *k == keyspace)
            .max_by_key(|(_, _, len)| *len)
            .cloned()
    };
    let (Some(log_table), Some(ids_table)) = (table_of("log"), table_of("ids")) else {
        anyhow::bail!(
            "phase A left no table file of the log and ids keyspaces in {}",
            store_dir.display()
        );
    };
    let j = &w.journal;
    let jname = j.display().to_string();
    let journal_damage = |name: String, damage: Damage, from: u64, must_recover: bool| Plan {
        name,
        damage,
        journal_from: Some(from),
        tables_intact: true,
        must_recover,
        marked: true,
    };
    let table_damage = |name: String, damage: Damage| Plan {
        name,
        damage,
        journal_from: None,
        tables_intact: false,
        must_recover: false,
        marked: true,
    };
    let mut plans = vec![Plan {
        name: "control, no damage".into(),
        damage: Damage::None,
        journal_from: None,
        tables_intact: true,
        must_recover: true,
        marked: true,
    }];
    for _ in 0..seeds {
        let len = rng.random_range(w.acked_end..w.inflight_end);
        plans.push(journal_damage(
            format!(
                "torn tail: {jname} cut at byte {len} of the in-flight group ({}..{})",
                w.acked_end, w.inflight_end
            ),
            Damage::Cut {
                file: j.clone(),
                len,
            },
            // Every acknowledged group ends at or before acked_end.
            w.inflight_end,
            true,
        ));
    }
    for _ in 0..seeds {
        let len = rng.random_range(0..w.acked_end);
        plans.push(journal_damage(
            format!(
                "torn deep: {jname} cut by {} bytes, to {len}",
                w.inflight_end - len
            ),
            Damage::Cut {
                file: j.clone(),
                len,
            },
            len,
            false,
        ));
    }
    let k = rng.random_range(1..64u64).min(log_table.2);
    plans.push(table_damage(
        format!(
            "torn table: {} ({}) cut by {k} bytes",
            log_table.0.display(),
            log_table.1
        ),
        Damage::Cut {
            file: log_table.0.clone(),
            len: log_table.2 - k,
        },
    ));
    plans.push(journal_damage(
        format!("truncated in the middle: {jname} cut to half"),
        Damage::Cut {
            file: j.clone(),
            len: w.inflight_end / 2,
        },
        w.inflight_end / 2,
        false,
    ));
    for (file, keyspace, len) in [&log_table, &ids_table] {
        plans.push(table_damage(
            format!(
                "truncated in the middle: {} ({keyspace}) cut to half",
                file.display()
            ),
            Damage::Cut {
                file: file.clone(),
                len: len / 2,
            },
        ));
    }
    // Bit flips in a random data file: the journal or any table.
    let mut files: Vec<(PathBuf, Option<&'static str>, u64)> =
        vec![(j.clone(), None, w.inflight_end)];
    files.extend(tables.iter().map(|(p, k, l)| (p.clone(), Some(*k), *l)));
    for _ in 0..seeds * 2 {
        let (file, keyspace, len) = &files[rng.random_range(0..files.len())];
        let offset = rng.random_range(0..*len);
        let bit = rng.random_range(0..8u8);
        let damage = Damage::Flip {
            file: file.clone(),
            offset,
            bit,
        };
        let name = format!(
            "bit flip: {}{} byte {offset} bit {bit}",
            file.display(),
            keyspace.map(|k| format!(" ({k})")).unwrap_or_default()
        );
        plans.push(match keyspace {
            None => journal_damage(name, damage, offset, false),
            Some(_) => table_damage(name, damage),
        });
    }
    plans.push(journal_damage(
        format!("deleted: {jname}"),
        Damage::Delete { file: j.clone() },
        0,
        false,
    ));
    for (file, keyspace, _) in [&log_table, &ids_table] {
        plans.push(table_damage(
            format!("deleted: {} ({keyspace})", file.display()),
            Damage::Delete { file: file.clone() },
        ));
    }
    // The mark: gone (nothing else damaged: recovered in full), damaged (refused, or
    // recovered in full when the flip misses what it says), and gone with the journal cut
    // (the loss it exists to catch, silent again without it).
    let mark = PathBuf::from(store::log::mark::FILE);
    plans.push(Plan {
        name: format!("deleted: {}", mark.display()),
        damage: Damage::Delete { file: mark.clone() },
        journal_from: None,
        tables_intact: true,
        must_recover: true,
        marked: true,
    });
    let mark_len = fs::metadata(store_dir.join(&mark))?.len();
    let (offset, bit) = (rng.random_range(0..mark_len), rng.random_range(0..8u8));
    plans.push(Plan {
        name: format!("bit flip: {} byte {offset} bit {bit}", mark.display()),
        damage: Damage::Flip {
            file: mark,
            offset,
            bit,
        },
        journal_from: None,
        tables_intact: true,
        must_recover: false,
        marked: true,
    });
    plans.push(Plan {
        marked: false,
        ..journal_damage(
            format!("no mark: {jname} cut to half"),
            Damage::Cut {
                file: j.clone(),
                len: w.inflight_end / 2,
            },
            w.inflight_end / 2,
            false,
        )
    });
    Ok(plans)
}

/// The acks a plan leaves provable (see the module docs).
pub(super) fn provable<'a>(w: &'a Written, p: &Plan) -> Vec<&'a Ack> {
    w.acks
        .iter()
        .enumerate()
        .filter(|(i, a)| {
            if p.marked {
                a.position <= w.mark_head
            } else if *i < w.phase_a {
                p.tables_intact
            } else {
                match p.journal_from {
                    None => true,
                    Some(from) => w.ends.get(&a.id).is_some_and(|end| *end <= from),
                }
            }
        })
        .map(|(_, a)| a)
        .collect()
}
