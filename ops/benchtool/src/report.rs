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
/// Vigil's rate must be at least this share of JetStream's at the same window.
const MIN_VS_JETSTREAM: f64 = 0.7;
/// Vigil's rate must be at least this multiple of PostgreSQL's at the same window.
const MIN_VS_POSTGRES: f64 = 5.0;

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

fn rate_text(rate: f64) -> String {
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
        "{:<10} {:>12} {:>9} {:>9} {:>9} {:>8}",
        "system", "appends/s", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for r in row {
        println!(
            "{:<10} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>8}",
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

fn find(results: &[CellResult], system: System, window: usize) -> Option<&CellResult> {
    results
        .iter()
        .find(|r| r.spec.system == system && r.spec.window == window)
}

/// Prints the ratios per window, the targets with PASS/MISS, and a Markdown table.
pub fn print_summary(results: &[CellResult], windows: &[usize]) {
    println!();
    println!("== ratios (appends/s) ==");
    println!(
        "{:>7} {:>16} {:>16}",
        "window", "vigil/jetstream", "vigil/postgres"
    );
    for &w in windows {
        let vigil = find(results, System::Vigil, w);
        let ratio = |peer: System| match (vigil, find(results, peer, w)) {
            (Some(v), Some(p)) if p.rate() > 0.0 => format!("{:.2}×", v.rate() / p.rate()),
            (Some(_), Some(_)) => "∞".to_owned(),
            _ => "-".to_owned(),
        };
        println!(
            "{:>7} {:>16} {:>16}",
            w,
            ratio(System::Jetstream),
            ratio(System::Postgres)
        );
    }

    println!();
    println!("== targets (from the store issue) ==");
    for t in &RATE_TARGETS {
        let goal = format!(
            "≥ {}/s at p99 ≤ {} ms with {} in flight",
            rate_text(t.min_rate),
            t.max_p99_ms,
            t.window
        );
        match find(results, System::Vigil, t.window) {
            Some(v) => {
                let errors = v.error_count();
                let pass = v.rate() >= t.min_rate && v.ms_at(0.99) <= t.max_p99_ms && errors == 0;
                let extra = if errors > 0 {
                    format!(", {} errors", thousands(errors))
                } else {
                    String::new()
                };
                println!(
                    "  {goal:<44} vigil {}/s, p99 {:.2} ms{extra}  {}",
                    rate_text(v.rate()),
                    v.ms_at(0.99),
                    verdict(pass)
                );
            }
            None => println!("  {goal:<44} not run (add {} to --windows)", t.window),
        }
    }
    for &w in windows {
        let Some(v) = find(results, System::Vigil, w) else {
            continue;
        };
        for (peer, min, name) in [
            (System::Jetstream, MIN_VS_JETSTREAM, "JetStream"),
            (System::Postgres, MIN_VS_POSTGRES, "PostgreSQL"),
        ] {
            if let Some(p) = find(results, peer, w) {
                let ratio = if p.rate() > 0.0 {
                    v.rate() / p.rate()
                } else {
                    f64::INFINITY
                };
                let goal = format!("≥ {min}× {name}'s rate with {w} in flight");
                println!("  {goal:<44} {ratio:.2}×  {}", verdict(ratio >= min));
            }
        }
    }
    if windows
        .iter()
        .any(|&w| find(results, System::Jetstream, w).is_some())
    {
        println!(
            "  (JetStream on nats-server 2.9 acks before fsync: the ratio compares a durable ack with a buffered one)"
        );
    }

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

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
