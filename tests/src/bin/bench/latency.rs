//! Row 2: handshake latency added at a fixed offered load of half the
//! machine's capacity, not at saturation. Open loop: requests are sent at a
//! fixed rate whatever the responses do, and each latency counts from the
//! request's scheduled time (see [`crate::loadgen::open_loop`]).

use std::fmt::Write as _;
use std::time::Duration;

use crate::loadgen::{Target, closed_loop, open_loop};
use crate::measure::{CpuMeter, Spread, agent_share, off_on};
use crate::nginx::BenchNginx;
use crate::{Row, Section, Settings, Shared, Tls};

/// Worker threads of the open-loop generator: at half the capacity a
/// handshake takes a few ms, so a few are busy at a time; the rest are
/// there so that a slow request does not hold back the next ones.
const WORKERS: usize = 16;

struct Measured {
    rate: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    late: u64,
    errors: u64,
    agent_cpu: Option<f64>,
}

/// Half the agent-off capacity (handshakes/s) for `tls`: from the
/// throughput phase when it ran, else measured here.
pub fn half_capacity(s: &Settings, shared: &mut Shared, target: &Target) -> f64 {
    let capacity = *shared.capacity.entry(target.tls).or_insert_with(|| {
        closed_loop(
            target,
            s.threads,
            s.throughput_run.max(Duration::from_secs(1)),
        )
        .rate()
    });
    (capacity / 2.0).max(10.0)
}

pub fn run(s: &Settings, shared: &mut Shared) -> Section {
    let server = BenchNginx::start();
    let targets: Vec<(Target, f64)> = Tls::ALL
        .iter()
        .map(|&tls| {
            let t = Target {
                port: server.port(tls),
                tls,
                ca_file: server.ca_file(),
            };
            let rate = half_capacity(s, shared, &t);
            (t, rate)
        })
        .collect();
    let rounds = off_on(s, &[], |agent| {
        targets
            .iter()
            .map(|(t, rate)| {
                let cpu = CpuMeter::start(agent);
                let r = open_loop(t, *rate, s.latency_run, WORKERS);
                Measured {
                    rate: r.rate(),
                    p50: r.pct(0.5),
                    p99: r.pct(0.99),
                    p999: r.pct(0.999),
                    late: r.late,
                    errors: r.errors,
                    agent_cpu: cpu.stop().map(|c| c.1),
                }
            })
            .collect::<Vec<_>>()
    });
    drop(server);

    let mut body = format!(
        "## Handshake latency at half the capacity (open loop)\n\nThe same nginx; the bench's own client sends new connections at a fixed rate, half the agent-off saturated rate (from the throughput phase, or measured by this phase when run alone), for {:.1} s per run, {WORKERS} worker threads; a handshake's latency counts from its scheduled send time to the end of the handshake (connect + handshake), so a stall is charged to every request due during it. Δ = on − off within a round.\n\n| TLS | offered/s | done/s off / on | p50 µs off → on | p99 µs off → on | p99.9 µs off → on | Δp50 µs | **Δp99 µs** | late starts off / on | errors | agent CPU |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        s.latency_run.as_secs_f64(),
    );
    let mut rows = Vec::new();
    for (i, (t, rate)) in targets.iter().enumerate() {
        let side = |on: bool, f: fn(&Measured) -> f64| {
            Spread::of(
                rounds
                    .iter()
                    .map(|r| f(if on { &r.on[i] } else { &r.off[i] })),
            )
            .median
        };
        let delta = |f: fn(&Measured) -> u64| {
            Spread::of(
                rounds
                    .iter()
                    .map(|r| f(&r.on[i]) as f64 - f(&r.off[i]) as f64),
            )
        };
        let d50 = delta(|m| m.p50);
        let d99 = delta(|m| m.p99);
        let sum = |on: bool, f: fn(&Measured) -> u64| -> u64 {
            rounds
                .iter()
                .map(|r| f(if on { &r.on[i] } else { &r.off[i] }))
                .sum()
        };
        let _ = writeln!(
            body,
            "| {} | {rate:.0} | {:.0} / {:.0} | {:.0} → {:.0} | {:.0} → {:.0} | {:.0} → {:.0} | {} | **{}** | {} / {} | {} | {} |",
            t.tls.label(),
            side(false, |m| m.rate),
            side(true, |m| m.rate),
            side(false, |m| m.p50 as f64),
            side(true, |m| m.p50 as f64),
            side(false, |m| m.p99 as f64),
            side(true, |m| m.p99 as f64),
            side(false, |m| m.p999 as f64),
            side(true, |m| m.p999 as f64),
            d50.fmt_signed(0),
            d99.fmt_signed(0),
            sum(false, |m| m.late),
            sum(true, |m| m.late),
            sum(false, |m| m.errors) + sum(true, |m| m.errors),
            agent_share(rounds.iter().filter_map(|r| r.on[i].agent_cpu)),
        );
        rows.push(Row::new(
            format!(
                "p99 handshake latency added at half the capacity ({rate:.0}/s, open loop), {}",
                t.tls.label()
            ),
            "≤ +20 µs",
            format!("{} µs", d99.fmt_signed(0)),
            Some(d99.median <= 20.0),
        ));
    }
    let _ = writeln!(
        body,
        "\nPer round (p99 µs off → on): {}\n",
        targets
            .iter()
            .enumerate()
            .map(|(i, (t, _))| format!(
                "{}: {}",
                t.tls.label(),
                rounds
                    .iter()
                    .map(|r| format!("{} → {}", r.off[i].p99, r.on[i].p99))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    Section { body, rows }
}
