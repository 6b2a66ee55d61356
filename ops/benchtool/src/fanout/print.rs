//! The printing of a fan-out run: each phase's figures, the gateway's counters before and
//! after, and the Vigil/baseline summary with the targets.

use crate::report::thousands;
use crate::server_side::ratio;
use crate::util::{bytes_text, fmt_ms, verdict};
use std::collections::BTreeMap;

use super::phase::PhaseResult;
use super::{FanoutArgs, TARGET_1K_P99_MS, TARGET_10K_BYTES_PER_CLIENT, TARGET_10K_P99_MS};

pub(super) fn print_phase(r: &PhaseResult) {
    println!();
    println!("== {} ({} clients) ==", r.name, r.wanted);
    println!(
        "  clients: {} subscribed of {} ({} could not connect) in {:.1} s; {} ended before the bench closed them",
        r.subscribed, r.wanted, r.failed, r.connect_secs, r.ended
    );
    for (kind, t) in &r.failures {
        println!(
            "    could not connect: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    for (kind, t) in &r.ends {
        println!(
            "    ended: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let (Some(b), Some(i)) = (r.rss_before, r.rss_idle) {
        println!(
            "  server memory: RSS {} before, {} with the idle clients, {} after the load; {} per idle client",
            bytes_text(b as f64),
            bytes_text(i as f64),
            r.rss_after.map_or("-".into(), |a| bytes_text(a as f64)),
            r.bytes_per_client().map_or("-".into(), bytes_text)
        );
    }
    println!(
        "  load: {} sent{}",
        thousands(r.load.sent),
        r.load
            .ack
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(String::new(), |h| format!(
                "; append ack p50 {:.2} ms, p99 {:.2} ms",
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0
            ))
    );
    for (kind, t) in &r.load.errors {
        println!(
            "    append error {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let Some(n) = &r.load.server_note {
        println!("  {n}");
    }
    if let Some(n) = &r.fold_note {
        println!("  {n}");
    }
    println!(
        "  deltas in the window: {} received{}, {:.0} frames/s delivered",
        thousands(r.measured),
        match (r.expected_per_client, r.missing()) {
            (Some(e), Some(m)) => format!(
                " of {} expected ({} events × {} clients; {} missing: skipped by a resync, or not received by the end of the drain)",
                thousands(e * r.subscribed as u64),
                thousands(e),
                r.subscribed,
                thousands(m)
            ),
            _ => String::new(),
        },
        r.frames_per_sec()
    );
    println!(
        "  latency (receive − as_of): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
        fmt_ms(r.ms_at(0.5)),
        fmt_ms(r.ms_at(0.99)),
        fmt_ms(r.ms_at(0.999)),
        fmt_ms(r.max_ms())
    );
    println!(
        "  frames in total {} ({}), heartbeats {}, resyncs (snapshot after the first) {}, out-of-order deltas {}, unreadable frames {}{}",
        thousands(r.frames),
        bytes_text(r.bytes as f64),
        thousands(r.heartbeats),
        thousands(r.resyncs),
        r.order_errors,
        r.unparsed,
        if r.drained {
            ""
        } else {
            "; NOT every client got the last delta within the drain timeout"
        }
    );
    if r.name == "vigil" {
        let sizes: Vec<usize> = r.capture.deltas.iter().map(String::len).collect();
        if !sizes.is_empty() {
            println!(
                "  captured {} delta frames for the baseline: {:.0} B on average; snapshot {} B",
                sizes.len(),
                sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
                r.capture.snapshot.as_ref().map_or(0, String::len)
            );
        }
    }
}

pub(super) fn print_metrics(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) {
    if after.is_empty() {
        return;
    }
    println!("  gateway metrics (after; change during the phase):");
    for (k, v) in after {
        let d = v - before.get(k).copied().unwrap_or(0.0);
        println!("    {k} = {v} ({d:+})");
    }
}

pub(super) fn print_summary(args: &FanoutArgs, v: &PhaseResult, b: Option<&PhaseResult>) {
    println!();
    println!(
        "== fanout summary: {} clients × {} events/s ==",
        args.clients, args.rate
    );
    println!(
        "{:<9} {:>7} {:>11} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "system",
        "clients",
        "mem/client",
        "frames/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "resyncs",
        "missing"
    );
    for r in std::iter::once(v).chain(b) {
        println!(
            "{:<9} {:>7} {:>11} {:>10} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
            r.name,
            r.subscribed,
            r.bytes_per_client().map_or("-".into(), bytes_text),
            thousands(r.frames_per_sec().round() as u64),
            fmt_ms(r.ms_at(0.5)),
            fmt_ms(r.ms_at(0.99)),
            fmt_ms(r.ms_at(0.999)),
            fmt_ms(r.max_ms()),
            thousands(r.resyncs),
            r.missing().map_or("-".into(), thousands),
        );
    }
    if let Some(b) = b {
        println!(
            "vigil/baseline: p50 {}, p99 {}, p99.9 {}, memory per client {}, frames/s {}",
            ratio(v.ms_at(0.5), b.ms_at(0.5)),
            ratio(v.ms_at(0.99), b.ms_at(0.99)),
            ratio(v.ms_at(0.999), b.ms_at(0.999)),
            match (v.bytes_per_client(), b.bytes_per_client()) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => "-".into(),
            },
            ratio(v.frames_per_sec(), b.frames_per_sec())
        );
    }

    println!();
    println!("== targets (from issue 3) ==");
    let complete = v.subscribed == args.clients && v.missing() == Some(0) && v.ended == 0;
    let why = || {
        let mut w = Vec::new();
        if v.subscribed < args.clients {
            w.push(format!(
                "only {} of {} clients connected",
                v.subscribed, args.clients
            ));
        }
        if let Some(m) = v.missing().filter(|&m| m > 0) {
            w.push(format!(
                "{} deltas not received (skipped by {} resyncs, or still not there at the end of the drain)",
                thousands(m),
                v.resyncs
            ));
        }
        if v.ended > 0 {
            w.push(format!("{} clients were dropped", v.ended));
        }
        if w.is_empty() {
            String::new()
        } else {
            format!(" — {}", w.join("; "))
        }
    };
    let p99 = v.ms_at(0.99);
    let mut judged = false;
    if args.clients == 1000 {
        judged = true;
        let at_rate = (args.rate - 100.0).abs() < 1e-9;
        println!(
            "  1,000 clients × 100 events/s at p99 ≤ {TARGET_1K_P99_MS} ms: p99 {} ms{}{}  {}",
            fmt_ms(p99),
            if at_rate {
                String::new()
            } else {
                format!(" (this run: {} events/s)", args.rate)
            },
            why(),
            if at_rate {
                verdict(complete && p99 <= TARGET_1K_P99_MS)
            } else {
                "n/a"
            }
        );
    }
    if args.clients == 10_000 {
        judged = true;
        println!(
            "  10,000 clients at p99 ≤ {TARGET_10K_P99_MS} ms ({} events/s): p99 {} ms{}  {}",
            args.rate,
            fmt_ms(p99),
            why(),
            verdict(complete && p99 <= TARGET_10K_P99_MS)
        );
        let mem = v.bytes_per_client();
        println!(
            "  10,000 clients with ≤ 64 KiB per idle client: {}  {}",
            mem.map_or("not measured (no --vigil-pid)".into(), bytes_text),
            verdict(
                v.subscribed == args.clients
                    && mem.is_some_and(|m| m <= TARGET_10K_BYTES_PER_CLIENT)
            )
        );
    }
    if !judged {
        println!(
            "  (the issue sets targets at 1,000 and 10,000 clients; none for {})",
            args.clients
        );
    }
    if v.subscribed < args.clients {
        println!(
            "  NOTE: {} of {} clients could not connect; the figures above are for {} clients",
            args.clients - v.subscribed,
            args.clients,
            v.subscribed
        );
    }

    println!();
    println!("== markdown ==");
    println!(
        "| system | clients | events/s | mem/idle client | frames/s | p50 ms | p99 ms | p99.9 ms | resyncs | missing |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in std::iter::once(v).chain(b) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            thousands(r.subscribed as u64),
            args.rate,
            r.bytes_per_client().map_or("-".into(), bytes_text),
            thousands(r.frames_per_sec().round() as u64),
            fmt_ms(r.ms_at(0.5)),
            fmt_ms(r.ms_at(0.99)),
            fmt_ms(r.ms_at(0.999)),
            thousands(r.resyncs),
            r.missing().map_or("-".into(), thousands),
        );
    }
}
