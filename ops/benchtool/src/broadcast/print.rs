//! The printing of a broadcast run: each round's figures, then over the rounds the Vigil and
//! peer figures side by side with their ratios, the receiver's checks and the targets.

use crate::cell::{self, lock};
use crate::load::Server;
use crate::report::thousands;
use crate::server_side;
use crate::util::fmt_ms;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::receiver::Receiver;
use super::rounds::{RoundResult, SeenTimes};

fn ms_of(d: Option<Duration>) -> f64 {
    d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}

/// A figure of a round, by name: (label, value in ms).
type Figure = (&'static str, fn(&RoundResult) -> Option<Duration>);

/// The figures compared between the systems, from t0.
const FIGURES: [Figure; 5] = [
    ("t0 → first webhook", |r| r.hook_at(0.0)),
    ("t0 → half the webhooks", |r| r.hook_at(0.5)),
    ("t0 → all N webhooks", RoundResult::all_hooks),
    ("t0 → all N acks answered 200", |r| r.acks_all),
    ("ack POST → 200, p50 of the round", |r| {
        (!r.ack_latency.is_empty())
            .then(|| Duration::from_micros(r.ack_latency.value_at_quantile(0.5)))
    }),
];

/// Vigil's own figures (no peer counterpart).
const VIGIL_FIGURES: [Figure; 5] = [
    ("issue POST → 201", |r| r.issue),
    ("approve POST → 200", |r| r.approve),
    ("t0 → view: delivered == N (any channel)", |r| {
        r.seen.as_ref().and_then(|s| s.delivered)
    }),
    ("t0 → view: all N delivered over webhook", |r| {
        r.seen.as_ref().and_then(|s| s.webhooks)
    }),
    ("t0 → view: acknowledged == N", |r| {
        r.seen.as_ref().and_then(|s| s.acknowledged)
    }),
];

pub(super) fn print_round(r: &RoundResult) {
    println!();
    println!(
        "== round {} {}: {} agencies{} ==",
        r.round,
        r.system.name(),
        r.n,
        if r.timed_out { " (TIMED OUT)" } else { "" }
    );
    if let (Some(i), Some(a)) = (r.issue, r.approve) {
        println!(
            "  issue POST→201 {} ms, approve POST→200 {} ms (t0 = the approval's 200)",
            fmt_ms(ms_of(Some(i))),
            fmt_ms(ms_of(Some(a)))
        );
    }
    println!(
        "  webhooks: {}/{} agencies reached, {} duplicates; from t0: first {} ms, p50 {} ms, p90 {} ms, all {} ms",
        r.hooks.len(),
        r.n,
        r.duplicates,
        fmt_ms(ms_of(r.hook_at(0.0))),
        fmt_ms(ms_of(r.hook_at(0.5))),
        fmt_ms(ms_of(r.hook_at(0.9))),
        fmt_ms(ms_of(r.all_hooks())),
    );
    if r.system == Server::Peer {
        println!(
            "  sends: all answered 2xx at the sender {} ms from t0, {} failed",
            fmt_ms(ms_of(r.sends_all)),
            r.sends_failed
        );
    }
    println!(
        "  acks: {} answered 200, {} failed, {} retries; all answered 200 {} ms from t0; each POST→200 {}",
        r.acks_ok,
        r.acks_failed,
        r.ack_retries,
        fmt_ms(ms_of(r.acks_all)),
        cell::latency_text(&r.ack_latency)
    );
    for (kind, t) in &r.ack_errors {
        println!(
            "    ack {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
    if let Some(s) = &r.seen {
        println!(
            "  view (GET every poll): delivered == N {} ms, all over webhook {} ms, acknowledged == N {} ms from t0; last read: delivered {}, over webhook {}, acknowledged {}, failed {}; {} reads, each {}",
            fmt_ms(ms_of(s.delivered)),
            fmt_ms(ms_of(s.webhooks)),
            fmt_ms(ms_of(s.acknowledged)),
            s.last.0,
            s.last.1,
            s.last.2,
            s.last.3,
            s.gets,
            cell::latency_text(&s.get_latency)
        );
        for (kind, t) in &s.errors {
            println!(
                "    view read {kind}: {} × — e.g. {}",
                thousands(t.count),
                t.sample
            );
        }
    }
    if let Some(server) = &r.server {
        server_side::print_server_side(server, "");
    }
}

/// p50 and max over the rounds of `f` for `system`, in ms (`NaN` when missing anywhere).
fn over_rounds(
    results: &[RoundResult],
    system: Server,
    f: fn(&RoundResult) -> Option<Duration>,
) -> (f64, f64, usize) {
    let rows: Vec<&RoundResult> = results.iter().filter(|r| r.system == system).collect();
    let mut values: Vec<f64> = rows
        .iter()
        .filter_map(|r| f(r))
        .map(|d| ms_of(Some(d)))
        .collect();
    if values.is_empty() || values.len() != rows.len() {
        return (f64::NAN, f64::NAN, values.len());
    }
    values.sort_by(f64::total_cmp);
    let p50 = values
        .get((values.len() - 1) / 2)
        .copied()
        .unwrap_or(f64::NAN);
    let max = values.last().copied().unwrap_or(f64::NAN);
    (p50, max, values.len())
}

pub(super) fn print_summary(results: &[RoundResult], n: usize, receiver: &Receiver, no_acks: bool) {
    let rounds = |s| results.iter().filter(|r| r.system == s).count();
    let (rv, rp) = (rounds(Server::Vigil), rounds(Server::Peer));
    println!();
    println!(
        "== summary: {n} agencies; p50 and max over the rounds ({rv} vigil, {rp} peer), ms =="
    );
    println!(
        "{:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
        "figure", "vigil p50", "vigil max", "peer p50", "peer max", "vigil/peer"
    );
    let mut md = Vec::new();
    for (name, f) in FIGURES {
        let (vp, vm, _) = over_rounds(results, Server::Vigil, f);
        let (pp, pm, _) = over_rounds(results, Server::Peer, f);
        println!(
            "{name:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            fmt_ms(vp),
            fmt_ms(vm),
            fmt_ms(pp),
            fmt_ms(pm),
            server_side::ratio(vp, pp)
        );
        md.push(format!(
            "| {name} | {} | {} | {} | {} | {} |",
            fmt_ms(vp),
            fmt_ms(vm),
            fmt_ms(pp),
            fmt_ms(pm),
            server_side::ratio(vp, pp)
        ));
    }
    for (name, f) in VIGIL_FIGURES {
        let (vp, vm, _) = over_rounds(results, Server::Vigil, f);
        println!(
            "{name:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            fmt_ms(vp),
            fmt_ms(vm),
            "-",
            "-",
            "-"
        );
        md.push(format!(
            "| {name} | {} | {} | - | - | - |",
            fmt_ms(vp),
            fmt_ms(vm)
        ));
    }
    let peer_sends = over_rounds(results, Server::Peer, |r| r.sends_all);
    if rp > 0 {
        println!(
            "{:<42} {:>10} {:>10} {:>10} {:>10} {:>11}",
            "t0 → all N sends answered 2xx (peer)",
            "-",
            "-",
            fmt_ms(peer_sends.0),
            fmt_ms(peer_sends.1),
            "-"
        );
        md.push(format!(
            "| t0 → all N sends answered 2xx at the sender | - | - | {} | {} | - |",
            fmt_ms(peer_sends.0),
            fmt_ms(peer_sends.1)
        ));
    }
    println!(
        "(t0: vigil, the approval's 200; peer, the start of its sends. \"view\": GET /api/v1/broadcasts/{{id}}, an upper bound late by at most one poll period plus one GET)"
    );

    println!();
    println!("== per round ==");
    println!(
        "| round | system | webhooks | dup | first ms | p50 ms | all ms | acks 200 | ack retries | acks all ms | ack p50 ms | ack p99 ms | ack max ms | view delivered ms | view webhooks ms | view acked ms |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in results {
        let seen = |f: fn(&SeenTimes) -> Option<Duration>| {
            r.seen
                .as_ref()
                .map_or("-".to_owned(), |s| fmt_ms(ms_of(f(s))))
        };
        println!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.round,
            r.system.name(),
            r.hooks.len(),
            r.n,
            r.duplicates,
            fmt_ms(ms_of(r.hook_at(0.0))),
            fmt_ms(ms_of(r.hook_at(0.5))),
            fmt_ms(ms_of(r.all_hooks())),
            r.acks_ok,
            r.n,
            r.ack_retries,
            fmt_ms(ms_of(r.acks_all)),
            fmt_ms(cell::ms(&r.ack_latency, 0.5)),
            fmt_ms(cell::ms(&r.ack_latency, 0.99)),
            fmt_ms(cell::max_ms(&r.ack_latency)),
            seen(|s| s.delivered),
            seen(|s| s.webhooks),
            seen(|s| s.acknowledged),
        );
    }

    println!();
    println!("== markdown ==");
    println!(
        "| figure ({n} agencies) | vigil p50 ms | vigil max ms | peer p50 ms | peer max ms | vigil/peer (p50) |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for line in md {
        println!("{line}");
    }

    println!();
    println!("== checks ==");
    let invalid = receiver.invalid.load(Ordering::Relaxed);
    let all_reached = results.iter().all(|r| r.hooks.len() == r.n);
    let all_acked = no_acks || results.iter().all(|r| r.acks_ok == r.n);
    let views = results.iter().filter_map(|r| r.seen.as_ref()).all(|s| {
        s.delivered.is_some() && s.webhooks.is_some() && (no_acks || s.acknowledged.is_some())
    });
    let line = |what: &str, ok: bool| println!("  {what:<66} {}", if ok { "OK" } else { "FAIL" });
    line(
        &format!("webhook signatures that did not verify: {invalid} (must be 0)"),
        invalid == 0,
    );
    line(
        "every agency reached by every round's broadcast",
        all_reached,
    );
    line(
        if no_acks {
            "no acknowledgements sent (--no-acks)"
        } else {
            "every acknowledgement answered 200"
        },
        all_acked,
    );
    line(
        "every Vigil broadcast's view reached delivered and acknowledged == N",
        views,
    );
    println!(
        "  duplicates (same broadcast, same agency again): {}; deliveries outside their round: {}",
        results.iter().map(|r| r.duplicates).sum::<u64>(),
        receiver.stray.load(Ordering::Relaxed)
    );
    for (kind, t) in lock(&receiver.problems).iter() {
        println!(
            "    receiver: {kind}: {} × — e.g. {}",
            thousands(t.count),
            t.sample
        );
    }
}
