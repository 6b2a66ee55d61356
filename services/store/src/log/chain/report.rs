//! What [`Log::verify`] reports: the kinds of check it makes ([`Check`]), how each went
//! ([`CheckReport`], with the first failure as a [`Broken`]), and the whole report
//! ([`VerifyReport`]), which names the lowest broken position and prints as the text
//! `vigil verify` shows. Every event before the first broken position passed every check.
//!
//! [`Log::verify`]: crate::log::Log::verify

/// One kind of check [`Log::verify`](crate::log::Log::verify) makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Check {
    /// Positions are gap-free from 1.
    Positions,
    /// Every stored event decodes as a recorded event.
    Decode,
    /// Each event's `position` field equals its key.
    PositionField,
    /// Each event's chain hash, stored with it, recomputes from the one before.
    Chain,
    /// Every event is in the `streams` index at its stream and version.
    EventInStreams,
    /// The `streams` index: versions gap-free from 1 per stream, each pointing at the event of
    /// that stream with that version.
    StreamsIndex,
    /// Every event is in the `ids` index at its position and version.
    EventInIds,
    /// The `ids` index: each entry points back at the event with that id and version.
    IdsIndex,
    /// The log reaches the acknowledged-head mark, with the same event there.
    AcknowledgedHead,
}

impl Check {
    /// Every check, in the order the report lists them.
    pub const ALL: [Check; 9] = [
        Check::Positions,
        Check::Decode,
        Check::PositionField,
        Check::Chain,
        Check::EventInStreams,
        Check::StreamsIndex,
        Check::EventInIds,
        Check::IdsIndex,
        Check::AcknowledgedHead,
    ];

    /// What the check establishes, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Check::Positions => "positions gap-free from 1",
            Check::Decode => "events decode",
            Check::PositionField => "event position fields match their keys",
            Check::Chain => "hash chain recomputes",
            Check::EventInStreams => "events found in the streams index",
            Check::StreamsIndex => "streams index entries gap-free and pointing at their events",
            Check::EventInIds => "events found in the ids index",
            Check::IdsIndex => "ids index entries pointing at their events",
            Check::AcknowledgedHead => "log reaches the last acknowledged position recorded",
        }
    }
}

/// A failed check at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// The log position the failure is about (for an index entry: the position it names).
    pub position: u64,
    /// What is wrong there.
    pub problem: String,
}

/// How one kind of check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Which check.
    pub check: Check,
    /// Items checked (events, chain links or index entries).
    pub checked: u64,
    /// Items that failed.
    pub failed: u64,
    /// The failure at the lowest position.
    pub first: Option<Broken>,
}

/// What [`Log::verify`](crate::log::Log::verify) found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Last position found in the log (0 = empty).
    pub head: u64,
    /// The stored hash-chain hash at `head` (two replicas that agree on it hold the same
    /// history, byte for byte, if both verify intact).
    pub chain_head: Option<[u8; 32]>,
    /// Entries walked in the `log` keyspace.
    pub events: u64,
    /// Streams found in the `streams` index.
    pub streams: u64,
    /// One entry per [`Check`], in [`Check::ALL`] order.
    pub checks: Vec<CheckReport>,
}

impl VerifyReport {
    pub(super) fn new() -> Self {
        Self {
            head: 0,
            chain_head: None,
            events: 0,
            streams: 0,
            checks: Check::ALL
                .iter()
                .map(|&check| CheckReport {
                    check,
                    checked: 0,
                    failed: 0,
                    first: None,
                })
                .collect(),
        }
    }

    fn entry(&mut self, check: Check) -> Option<&mut CheckReport> {
        self.checks.iter_mut().find(|c| c.check == check)
    }

    pub(super) fn count(&mut self, check: Check) {
        if let Some(c) = self.entry(check) {
            c.checked += 1;
        }
    }

    pub(super) fn fail(&mut self, check: Check, position: u64, problem: String) {
        if let Some(c) = self.entry(check) {
            c.failed += 1;
            let position = position.max(1);
            if c.first.as_ref().is_none_or(|f| position < f.position) {
                c.first = Some(Broken { position, problem });
            }
        }
    }

    /// Every check passed.
    pub fn is_intact(&self) -> bool {
        self.checks.iter().all(|c| c.failed == 0)
    }

    /// The lowest broken position over all checks, with the check that found it. Every
    /// event before it passed every check.
    pub fn first_broken(&self) -> Option<(Check, &Broken)> {
        self.checks
            .iter()
            .filter_map(|c| c.first.as_ref().map(|b| (c.check, b)))
            .min_by_key(|(_, b)| b.position)
    }

    /// How many failures in all.
    pub fn failures(&self) -> u64 {
        self.checks.iter().map(|c| c.failed).sum()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "event log: {} entries, last position {}, {} streams",
            self.events, self.head, self.streams
        )?;
        if let Some(h) = &self.chain_head {
            writeln!(f, "hash-chain head: {}", hex::encode(h))?;
        }
        for c in &self.checks {
            let verdict = match &c.first {
                None if c.failed == 0 => "ok".to_owned(),
                _ => format!("{} FAILED", c.failed),
            };
            writeln!(
                f,
                "  {:<62} {:>10} checked  {verdict}",
                c.check.describe(),
                c.checked
            )?;
            if let Some(b) = &c.first {
                writeln!(f, "      first at position {}: {}", b.position, b.problem)?;
            }
        }
        match self.first_broken() {
            None => write!(f, "INTACT: every check passed"),
            Some((_, first)) => {
                write!(f, "BROKEN at position {}", first.position)?;
                // Every check that fails first at that position, not only one of them.
                for c in &self.checks {
                    if let Some(b) = c.first.as_ref().filter(|b| b.position == first.position) {
                        write!(f, "\n  {}: {}", c.check.describe(), b.problem)?;
                    }
                }
                Ok(())
            }
        }
    }
}
