//! Printing: a table per window, the errors of each cell, the ratios between the systems and
//! the store issue's targets with PASS/MISS beside each, and a Markdown table to paste into
//! `docs/BENCHMARKS.md`.

use crate::System;
use crate::driver::CellResult;
use crate::util::verdict;

/// An absolute target for Vigil at one window.
struct RateTarget {
    window: usize,
    min_rate: f64,
    max_p99_ms: f64,
}

/// ≥ 20,000 appends/s at p99 ≤ 2 ms with 16 in flight; ≥ 50,000/s at p99 ≤ 10 ms with 128.
const RATE_TARGETS: [RateTarget; 2] = [
    RateTarget {
        window: 16,
        min_rate: 20_000.0,
        max_p99_ms: 2.0,
    },
    RateTarget {
        window: 128,
        min_rate: 50_000.0,
        max_p99_ms: 10.0,
    },
];
/// Vigil's p99.9 must be at most this multiple of its p99 (at the windows of `RATE_TARGETS`).
const MAX_TAIL_RATIO: f64 = 3.0;
/// Vigil's rate must be at least these multiples of its peers' at the same window; the
/// no-fsync JetStream's is a moonshot, reported beside the others.
const PEER_TARGETS: [(System, f64, &str); 3] = [
    (System::Postgres, 2.5, "PostgreSQL (fsync before ack)"),
    (
        System::JetstreamSync,
        5.0,
        "JetStream sync_interval: always (fsync before ack)",
    ),
    (
        System::Jetstream,
        0.5,
        "JetStream default, no fsync before ack (moonshot)",
    ),
];
/// The columns of the issue's table, in its order.
const ISSUE_COLUMNS: [System; 4] = [
    System::Vigil,
    System::JetstreamSync,
    System::Jetstream,
    System::Postgres,
];

/// One target: what it asks, what was measured, whether it passed (`None`: not run).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The goal, in words.
    pub goal: String,
    /// The measured figure(s).
    pub measured: String,
    /// PASS (`Some(true)`), MISS (`Some(false)`), or not measured in this run.
    pub pass: Option<bool>,
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let first = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    let (head, rest) = digits.split_at(first.min(digits.len()));
    let mut out = head.to_owned();
    for chunk in rest.as_bytes().chunks(3) {
        out.push(',');
        out.push_str(&String::from_utf8_lossy(chunk));
    }
    out
}

/// A rate as printed: whole appends/s with thousands separators.
pub fn rate_text(rate: f64) -> String {
    thousands(rate.round().max(0.0) as u64)
}

/// Prints the failures of one cell, if any, with a sample message per kind.
pub fn print_errors(r: &CellResult) {
    let label = format!("{} W={}", r.spec.system.name(), r.spec.window);
    for (phase, map) in [("measured", &r.errors), ("warm-up", &r.warmup_errors)] {
        for (kind, t) in map {
            println!(
                "  ! {label} {phase} error {kind}: {} × — e.g. {}",
                thousands(t.count),
                t.sample
            );
        }
    }
}

/// Prints the table of one window.
pub fn print_window(window: usize, row: &[CellResult]) {
    println!();
    println!("== {window} in flight ==");
    println!(
        "{:<14} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "system", "appends/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for r in row {
        println!(
            "{:<14} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>8}",
            r.spec.system.name(),
            rate_text(r.rate()),
            r.ms_at(0.50),
            r.ms_at(0.99),
            r.ms_at(0.999),
            thousands(r.error_count()),
        );
    }
    for r in row {
        if let Some(note) = &r.spec.note {
            println!("  {}: {note}", r.spec.system.name());
        }
    }
}

/// The cell of `system` at `window`, if it ran.
pub fn find(results: &[CellResult], system: System, window: usize) -> Option<&CellResult> {
    results
        .iter()
        .find(|r| r.spec.system == system && r.spec.window == window)
}

/// Judges the store issue's targets against the run's cells.
pub fn targets(results: &[CellResult], windows: &[usize]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for t in &RATE_TARGETS {
        let goal = format!(
            "≥ {}/s at p99 ≤ {} ms with {} in flight",
            rate_text(t.min_rate),
            t.max_p99_ms,
            t.window
        );
        let tail_goal = format!("p99.9 ≤ {MAX_TAIL_RATIO}× p99 with {} in flight", t.window);
        match find(results, System::Vigil, t.window) {
            Some(v) => {
                let errors = v.error_count();
                let extra = if errors > 0 {
                    format!(", {} errors", thousands(errors))
                } else {
                    String::new()
                };
                out.push(Verdict {
                    goal,
                    measured: format!(
                        "vigil {}/s, p99 {:.2} ms{extra}",
                        rate_text(v.rate()),
                        v.ms_at(0.99)
                    ),
                    pass: Some(
                        v.rate() >= t.min_rate && v.ms_at(0.99) <= t.max_p99_ms && errors == 0,
                    ),
                });
                let (p99, p999) = (v.ms_at(0.99), v.ms_at(0.999));
                out.push(Verdict {
                    goal: tail_goal,
                    measured: format!(
                        "p99.9 {p999:.2} ms = {:.1}× p99",
                        if p99 > 0.0 { p999 / p99 } else { 0.0 }
                    ),
                    pass: Some(p99 > 0.0 && p999 <= MAX_TAIL_RATIO * p99),
                });
            }
            None => {
                for goal in [goal, tail_goal] {
                    out.push(Verdict {
                        goal,
                        measured: format!("not run (add {} to --windows)", t.window),
                        pass: None,
                    });
                }
            }
        }
    }
    for &w in windows {
        let Some(v) = find(results, System::Vigil, w) else {
            continue;
        };
        for (peer, min, name) in PEER_TARGETS {
            let Some(p) = find(results, peer, w) else {
                continue;
            };
            let ratio = if p.rate() > 0.0 {
                v.rate() / p.rate()
            } else {
                f64::INFINITY
            };
            out.push(Verdict {
                goal: format!("≥ {min}× {name} with {w} in flight"),
                measured: format!(
                    "{ratio:.2}× ({}/s vs {}/s)",
                    rate_text(v.rate()),
                    rate_text(p.rate())
                ),
                pass: Some(ratio >= min),
            });
        }
    }
    out
}

/// Prints the issue's table (one row per window, one column per system), the ratios, the
/// targets with PASS/MISS, and a Markdown table of every cell.
pub fn print_summary(results: &[CellResult], windows: &[usize]) {
    let present: Vec<System> = ISSUE_COLUMNS
        .into_iter()
        .filter(|s| results.iter().any(|r| r.spec.system == *s))
        .collect();
    print_table(
        "the store issue's table (appends/s, p99)",
        results,
        windows,
        &present,
        |r| format!("{}/s, p99 {:.1} ms", rate_text(r.rate()), r.ms_at(0.99)),
    );
    print_ratios(results, windows, System::Vigil, &ISSUE_COLUMNS);
    print_verdicts("the store issue", &targets(results, windows));
    print_markdown(results, windows);
}

/// Prints a table under `== TITLE ==`: one row per window, one column per system of
/// `columns`, each cell as `cell` writes it (`-` where that cell did not run).
pub fn print_table(
    title: &str,
    results: &[CellResult],
    windows: &[usize],
    columns: &[System],
    cell: impl Fn(&CellResult) -> String,
) {
    println!();
    println!("== {title} ==");
    println!(
        "| in flight | {} |",
        columns
            .iter()
            .map(|s| column_title(*s))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---:|{}", "---|".repeat(columns.len()));
    for &w in windows {
        let cells: Vec<String> = columns
            .iter()
            .map(|s| find(results, *s, w).map_or_else(|| "-".to_owned(), &cell))
            .collect();
        println!("| {w} | {} |", cells.join(" | "));
    }
}

/// Prints, per window, `base`'s appends/s over each other system's of `others` that ran.
pub fn print_ratios(results: &[CellResult], windows: &[usize], base: System, others: &[System]) {
    println!();
    println!(
        "== ratios ({}'s appends/s over each other system's) ==",
        base.name()
    );
    for &w in windows {
        let Some(v) = find(results, base, w) else {
            continue;
        };
        let ratios: Vec<String> = others
            .iter()
            .filter(|s| **s != base)
            .filter_map(|s| find(results, *s, w).map(|p| (s, p)))
            .map(|(s, p)| {
                if p.rate() > 0.0 {
                    format!("{} {:.2}×", s.name(), v.rate() / p.rate())
                } else {
                    format!("{} ∞", s.name())
                }
            })
            .collect();
        println!("  {w:>4} in flight: {}", ratios.join(", "));
    }
}

/// Prints `verdicts` under `== targets (from ISSUE) ==`, PASS/MISS (or `-`, not run) beside
/// each.
pub fn print_verdicts(issue: &str, verdicts: &[Verdict]) {
    println!();
    println!("== targets (from {issue}) ==");
    for t in verdicts {
        let verdict_text = match t.pass {
            Some(p) => verdict(p),
            None => "-",
        };
        println!("  {:<72} {}  {verdict_text}", t.goal, t.measured);
    }
}

/// Prints every cell as a Markdown table, window by window, to paste into
/// `docs/BENCHMARKS.md`.
pub fn print_markdown(results: &[CellResult], windows: &[usize]) {
    println!();
    println!("== markdown ==");
    println!("| in flight | system | appends/s | p50 ms | p99 ms | p99.9 ms | errors |");
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for &w in windows {
        for r in results.iter().filter(|r| r.spec.window == w) {
            println!(
                "| {w} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
                r.spec.system.name(),
                rate_text(r.rate()),
                r.ms_at(0.50),
                r.ms_at(0.99),
                r.ms_at(0.999),
                thousands(r.error_count())
            );
        }
    }
}

/// The column title of `system` in the issues' tables.
pub fn column_title(system: System) -> &'static str {
    match system {
        System::Vigil => "vigil (fsync before ack)",
        System::JetstreamSync => "JetStream, `sync_interval: always` (fsync before ack)",
        System::Jetstream => "JetStream default (no fsync before ack)",
        System::Postgres => "PostgreSQL, synchronous_commit=on",
        System::VigilR3 => "vigil, 3 replicas",
        System::JetstreamR3 => "JetStream R3, `sync_interval: always`",
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use hdrhistogram::Histogram;

    use super::{targets, thousands};
    use crate::System;
    use crate::driver::{CellResult, CellSpec};

    /// A cell of `ok` appends in one second, every latency `p99_us` except the slowest 0.2 %
    /// at `tail_us`.
    pub(crate) fn cell(
        system: System,
        window: usize,
        ok: u64,
        p99_us: u64,
        tail_us: u64,
    ) -> CellResult {
        let mut hist = Histogram::new_with_bounds(1, 60_000_000, 3)
            .unwrap_or_else(|e| panic!("histogram: {e}"));
        let tail = ok / 500;
        hist.record_n(p99_us, ok - tail)
            .unwrap_or_else(|e| panic!("record: {e}"));
        hist.record_n(tail_us, tail)
            .unwrap_or_else(|e| panic!("record: {e}"));
        CellResult {
            spec: CellSpec {
                system,
                window,
                warmup: Duration::ZERO,
                duration: Duration::from_secs(1),
                note: None,
            },
            ok,
            seconds: 1.0,
            hist,
            errors: BTreeMap::new(),
            warmup_errors: BTreeMap::new(),
        }
    }

    fn verdict_of(results: &[CellResult], goal_starts: &str) -> Option<bool> {
        targets(results, &[16, 128])
            .into_iter()
            .find(|v| v.goal.starts_with(goal_starts))
            .unwrap_or_else(|| panic!("no target starting {goal_starts:?}"))
            .pass
    }

    #[test]
    fn the_fair_peers_and_the_tail_are_judged() {
        let results = vec![
            cell(System::Vigil, 128, 60_000, 8_000, 30_000),
            cell(System::JetstreamSync, 128, 11_000, 80_000, 90_000),
            cell(System::Jetstream, 128, 130_000, 2_000, 3_000),
            cell(System::Postgres, 128, 25_000, 18_000, 20_000),
        ];
        assert_eq!(verdict_of(&results, "≥ 50,000/s"), Some(true));
        // 30 ms is 3.75× the 8 ms p99.
        assert_eq!(verdict_of(&results, "p99.9 ≤ 3× p99 with 128"), Some(false));
        assert_eq!(verdict_of(&results, "≥ 2.5× PostgreSQL"), Some(false)); // 2.4×
        assert_eq!(verdict_of(&results, "≥ 5× JetStream sync"), Some(true)); // 5.45×
        assert_eq!(
            verdict_of(&results, "≥ 0.5× JetStream default"),
            Some(false)
        ); // 0.46×
        // The 16 window was not run: its targets say so instead of passing or missing.
        assert_eq!(verdict_of(&results, "≥ 20,000/s"), None);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
