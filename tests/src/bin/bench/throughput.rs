//! Row 1: TLS handshake throughput at saturation, agent on / off. Both ends
//! on this host (so the agent sees each handshake twice, client and server
//! side), nginx with one worker, a new connection and a full handshake per
//! request; the bench's own client, `h2load` and `openssl s_time`, for
//! TLS 1.3 and TLS 1.2.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::loadgen::{Target, closed_loop, h2load, s_time};
use crate::measure::{CpuMeter, Spread, agent_share, off_on};
use crate::nginx::BenchNginx;
use crate::{Row, Section, Settings, Shared, Tls};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tool {
    Bench,
    H2load,
    STime,
}

/// `openssl s_time` processes run side by side (each makes one connection
/// at a time).
const S_TIME_PROCS: usize = 2;

impl Tool {
    fn label(self, s: &Settings) -> String {
        match self {
            Tool::Bench => format!("bench client, {} threads", s.threads),
            Tool::H2load => format!("h2load --h1 -c {}", s.threads),
            Tool::STime => format!("openssl s_time -new ×{S_TIME_PROCS}"),
        }
    }
}

/// One run of one tool.
struct Measured {
    rate: f64,
    /// Bench client only: handshake p50 / p99, µs.
    p50_p99: Option<(u64, u64)>,
    errors: u64,
    /// Agent CPU, % of one core (agent-on runs).
    agent_cpu: Option<f64>,
}

#[allow(
    clippy::too_many_lines,
    reason = "one measured phase: setup, interleaved rounds, report, read top to bottom"
)]
pub fn run(s: &Settings, shared: &mut Shared) -> Section {
    let server = BenchNginx::start();
    let targets: Vec<Target> = Tls::ALL
        .iter()
        .map(|&tls| Target {
            port: server.port(tls),
            tls,
            ca_file: server.ca_file(),
        })
        .collect();
    // Warm up nginx and learn the rate, so that an h2load run (counted in
    // requests) lasts about as long as the others.
    let mut h2load_requests = BTreeMap::new();
    for t in &targets {
        let warm = closed_loop(
            t,
            s.threads,
            s.throughput_run.min(std::time::Duration::from_secs(2)),
        );
        h2load_requests.insert(
            t.tls,
            (warm.rate() * s.throughput_run.as_secs_f64()).max(100.0) as u64,
        );
    }
    let ca = server.ca_file();
    let rounds = off_on(s, &[], |agent| {
        let mut m = BTreeMap::new();
        for t in &targets {
            let cpu = CpuMeter::start(agent);
            let r = closed_loop(t, s.threads, s.throughput_run);
            m.insert(
                (Tool::Bench, t.tls),
                Measured {
                    rate: r.rate(),
                    p50_p99: Some((r.pct(0.5), r.pct(0.99))),
                    errors: r.errors,
                    agent_cpu: cpu.stop().map(|c| c.1),
                },
            );
            let cpu = CpuMeter::start(agent);
            let r = h2load(t, s.threads, h2load_requests[&t.tls]);
            m.insert(
                (Tool::H2load, t.tls),
                Measured {
                    rate: r.rate(),
                    p50_p99: None,
                    errors: r.failed,
                    agent_cpu: cpu.stop().map(|c| c.1),
                },
            );
            let cpu = CpuMeter::start(agent);
            let r = s_time(t, S_TIME_PROCS, s.throughput_run, &ca);
            m.insert(
                (Tool::STime, t.tls),
                Measured {
                    rate: r.rate(),
                    p50_p99: None,
                    errors: r.failed,
                    agent_cpu: cpu.stop().map(|c| c.1),
                },
            );
        }
        m
    });
    drop(server);

    let mut body = format!(
        "## Handshake throughput at saturation\n\nnginx (1 worker, ECDSA P-256, no session resumption, `keepalive_timeout 0`) on loopback; every request a new connection with a full handshake (connect, handshake, `GET /`, close); {:.1} s per run, agent off and on interleaved over {} rounds. Both ends run OpenSSL on this host, so the agent's probes fire on the client and on the server. Ratio = on / off handshakes per second within a round; the rounds' ratios are listed in order.\n\n| load generator | TLS | off: handshakes/s | on: handshakes/s | ratio, median (min–max) | ratios per round | bench p50/p99 µs off → on | errors | agent CPU (% of a core) |\n|---|---|---|---|---|---|---|---|---|\n",
        s.throughput_run.as_secs_f64(),
        s.rounds
    );
    let mut rows = Vec::new();
    for tool in [Tool::Bench, Tool::H2load, Tool::STime] {
        for tls in Tls::ALL {
            let key = (tool, tls);
            let ratios: Vec<f64> = rounds
                .iter()
                .map(|r| r.on[&key].rate / r.off[&key].rate)
                .collect();
            let ratio = Spread::of(ratios.iter().copied());
            let off = Spread::of(rounds.iter().map(|r| r.off[&key].rate));
            let on = Spread::of(rounds.iter().map(|r| r.on[&key].rate));
            if tool == Tool::Bench {
                shared.capacity.insert(tls, off.median);
            }
            let latency = match tool {
                Tool::Bench => {
                    let p = |f: fn(&(u64, u64)) -> u64, side: bool| {
                        Spread::of(rounds.iter().filter_map(|r| {
                            let m = if side { &r.on[&key] } else { &r.off[&key] };
                            m.p50_p99.as_ref().map(|x| f(x) as f64)
                        }))
                        .median
                    };
                    format!(
                        "{:.0}/{:.0} → {:.0}/{:.0}",
                        p(|x| x.0, false),
                        p(|x| x.1, false),
                        p(|x| x.0, true),
                        p(|x| x.1, true)
                    )
                }
                _ => "—".into(),
            };
            let errors: u64 = rounds
                .iter()
                .map(|r| r.off[&key].errors + r.on[&key].errors)
                .sum();
            let _ = writeln!(
                body,
                "| {} | {} | {:.0} | {:.0} | **{}** | {} | {latency} | {errors} | {} |",
                tool.label(s),
                tls.label(),
                off.median,
                on.median,
                ratio.fmt(3),
                ratios
                    .iter()
                    .map(|r| format!("{r:.3}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                agent_share(rounds.iter().filter_map(|r| r.on[&key].agent_cpu)),
            );
            rows.push(Row::new(
                format!(
                    "handshake throughput on / off, {}, {}",
                    tool.label(s),
                    tls.label()
                ),
                "≥ 0.99",
                ratio.fmt(3),
                Some(ratio.median >= 0.99),
            ));
        }
    }
    body.push('\n');
    Section { body, rows }
}
