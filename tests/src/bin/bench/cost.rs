//! Row 5: kernel + agent CPU per successful handshake, at half the capacity
//! (open loop), both ends on this host:
//!
//! - BPF run time of each of the agent's programs (the kernel's own
//!   `run_time_ns` / `run_cnt`, statistics on for these runs only);
//! - uprobe traps: the runs of the uprobe programs, times the cost of a trap
//!   beyond its program's run time, measured here as one uprobe hit (a call
//!   of libcrypto's `X509_STORE_CTX_get_error`, which the agent probes at
//!   entry in every process) agent on minus agent off, minus that program's
//!   run time;
//! - the agent's own CPU (user + system) over the run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::bpf_stats::{Program, StatsOn, delta, snapshot};
use crate::latency::half_capacity;
use crate::loadgen::{Target, open_loop};
use crate::measure::{Spread, cpu_ns, off_on};
use crate::nginx::BenchNginx;
use crate::{Row, Section, Settings, Shared, Tls};

/// Workers of the open-loop generator (as in the latency phase).
const WORKERS: usize = 16;

/// ns per call of `X509_STORE_CTX_get_error`, which the agent probes at
/// its entry in libcrypto (one trap per call, from any caller). (libcrypto's
/// own raised-and-cleared errors, ~9 per OpenSSL 3 handshake, no longer
/// trap: the agent probes libssl's PLT stubs for its error functions.)
fn uprobe_loop(n: u64) -> f64 {
    // SAFETY: a fresh store context, freed below; the accessor only reads it.
    let ctx = unsafe { openssl_sys::X509_STORE_CTX_new() };
    assert!(!ctx.is_null(), "X509_STORE_CTX_new");
    let t = Instant::now();
    let mut sum = 0i64;
    for _ in 0..n {
        // SAFETY: a valid context.
        sum += i64::from(unsafe { openssl_sys::X509_STORE_CTX_get_error(ctx) });
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    std::hint::black_box(sum);
    // SAFETY: allocated above, not used after.
    unsafe { openssl_sys::X509_STORE_CTX_free(ctx) };
    ns
}

/// One TLS version's handshakes in one round (agent on).
struct Load {
    handshakes: u64,
    secs: f64,
    programs: BTreeMap<String, Program>,
    agent_ns: u64,
}

#[derive(Default)]
struct Round {
    /// ns per uprobe-loop iteration (stats off).
    hit_ns: f64,
    /// Agent on: the probe that loop hits: (its name, ns per run, runs per
    /// iteration), stats on.
    probe: Option<(String, f64, f64)>,
    /// Agent on, no handshakes: its CPU, ns per s.
    idle_ns_per_s: f64,
    /// Agent on, no handshakes: BPF run time (ns per s) and uprobe runs (per
    /// s) of the host's other work, which every load run below also sees.
    background: (f64, f64),
    loads: Vec<Load>,
}

pub fn run(s: &Settings, shared: &mut Shared) -> Section {
    openssl_sys::init();
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
    let idle = s.cost_run.min(Duration::from_secs(3));
    let rounds = off_on(s, &[], |agent| {
        let mut round = Round {
            hit_ns: uprobe_loop(s.uprobe_hits),
            ..Round::default()
        };
        let Some(agent) = agent else {
            return round;
        };
        let pid = agent.pid();
        let _stats = StatsOn::enable();
        let (c0, before) = (cpu_ns(pid), snapshot(pid));
        std::thread::sleep(idle);
        let secs = idle.as_secs_f64();
        round.idle_ns_per_s = (cpu_ns(pid) - c0) as f64 / secs;
        let bg = delta(&before, &snapshot(pid));
        round.background = (
            bg.values().map(|p| p.run_ns).sum::<u64>() as f64 / secs,
            bg.values()
                .filter(|p| p.uprobe)
                .map(|p| p.runs)
                .sum::<u64>() as f64
                / secs,
        );
        let before = snapshot(pid);
        uprobe_loop(s.uprobe_hits);
        round.probe = delta(&before, &snapshot(pid))
            .into_values()
            .filter(|p| p.uprobe && p.runs > 0)
            .max_by_key(|p| p.runs)
            .map(|p| {
                (
                    p.name.clone(),
                    p.run_ns as f64 / p.runs as f64,
                    p.runs as f64 / s.uprobe_hits as f64,
                )
            });
        for (t, rate) in &targets {
            let before = snapshot(pid);
            let c0 = cpu_ns(pid);
            let run = open_loop(t, *rate, s.cost_run, WORKERS);
            round.loads.push(Load {
                handshakes: run.done,
                secs: run.secs,
                programs: delta(&before, &snapshot(pid)),
                agent_ns: cpu_ns(pid) - c0,
            });
        }
        round
    });
    drop(server);
    report(s, &targets, &rounds)
}

/// Per-round figures of one TLS version, per handshake (ns, or traps);
/// `bg_*`: the part the same stretch of time costs without handshakes.
struct PerHandshake {
    bpf: f64,
    bg_bpf: f64,
    traps: f64,
    bg_traps: f64,
    /// One trap beyond its program's run time, ns.
    trap: f64,
    agent: f64,
    agent_idle: f64,
}

impl PerHandshake {
    /// Everything the kernel's BPF and the agent spent during the run.
    fn raw(&self) -> f64 {
        self.bpf + self.traps * self.trap + self.agent
    }

    /// What the handshakes added: the raw figure less the host's
    /// background and the agent's idle CPU over the same time.
    fn net(&self) -> f64 {
        (self.bpf - self.bg_bpf).max(0.0)
            + (self.traps - self.bg_traps).max(0.0) * self.trap
            + (self.agent - self.agent_idle).max(0.0)
    }
}

fn report(
    s: &Settings,
    targets: &[(Target, f64)],
    rounds: &[crate::measure::OffOn<Round>],
) -> Section {
    // The trap: a hit's cost beyond its program's run time.
    let hit = Spread::of(rounds.iter().map(|r| r.on.hit_ns - r.off.hit_ns));
    let probe_ns = Spread::of(
        rounds
            .iter()
            .filter_map(|r| r.on.probe.as_ref().map(|p| p.1)),
    );
    let probe_name = rounds
        .iter()
        .find_map(|r| r.on.probe.as_ref().map(|p| p.0.clone()))
        .unwrap_or_else(|| "none hit".into());
    let runs_per_hit = Spread::of(
        rounds
            .iter()
            .filter_map(|r| r.on.probe.as_ref().map(|p| p.2)),
    );
    let trap_ns = |r: &crate::measure::OffOn<Round>| {
        let probe = r.on.probe.as_ref().map(|p| p.1 * p.2).unwrap_or(0.0);
        (r.on.hit_ns - r.off.hit_ns - probe).max(0.0)
    };
    let trap = Spread::of(rounds.iter().map(trap_ns));
    let mut body = format!(
        "## Kernel and agent CPU per handshake\n\n### One uprobe hit\n\nA call of libcrypto's `X509_STORE_CTX_get_error` (probed at entry in every process), {} times per run, agent off and on over {} rounds: {:.0} ns → {:.0} ns per call, **{} ns** per hit. The probe it hits, `{probe_name}` ({} runs per call), runs {} ns of BPF (statistics on); the rest, **{} ns**, is the trap itself (breakpoint, uprobe lookup, return to user space): it is what every uprobe run below costs on top of its BPF run time.\n\n",
        s.uprobe_hits,
        s.rounds,
        Spread::of(rounds.iter().map(|r| r.off.hit_ns)).median,
        Spread::of(rounds.iter().map(|r| r.on.hit_ns)).median,
        hit.fmt_signed(0),
        runs_per_hit.fmt(2),
        probe_ns.fmt(0),
        trap.fmt(0),
    );
    let idle = Spread::of(rounds.iter().map(|r| r.on.idle_ns_per_s / 1e7));
    let _ = writeln!(
        body,
        "### Per handshake\n\nThe bench's own client at half the capacity (open loop, as in the latency phase), {:.1} s per TLS version and round, agent on with BPF statistics on (`BPF_ENABLE_STATS`, what `sysctl kernel.bpf_stats_enabled=1` turns on; they cost a little themselves). Both ends run on this host: every figure is for the client's and the server's side together; a host that is only one end pays about half. Agent CPU is its user + system time over the run divided by the handshakes done. Before each run the agent sits {:.0} s without handshakes (statistics on): its idle CPU ({} % of a core) and the BPF run time the rest of the host causes in that time are the background; the net figure is the raw one less that background over the run's duration. The program tables are raw (background included).\n",
        s.cost_run.as_secs_f64(),
        s.cost_run.min(Duration::from_secs(3)).as_secs_f64(),
        idle.fmt(2),
    );
    let mut rows = Vec::new();
    let mut totals = String::from(
        "Per handshake (client and server side together), medians over the rounds; in parentheses the part the host's other work and the idle agent account for over the same time (measured just before each run, no handshakes), which the net figure leaves out:\n\n| TLS | handshakes/s | BPF run time ns (background) | uprobe traps (background) | ns per trap beyond its program | agent CPU ns (idle) | raw µs | **net µs**, median (min–max) |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (i, (t, _)) in targets.iter().enumerate() {
        let per: Vec<PerHandshake> = rounds
            .iter()
            .filter_map(|r| {
                let l = r.on.loads.get(i)?;
                let hs = l.handshakes.max(1) as f64;
                let traps = l
                    .programs
                    .values()
                    .filter(|p| p.uprobe)
                    .map(|p| p.runs)
                    .sum::<u64>() as f64
                    / hs;
                Some(PerHandshake {
                    bpf: l.programs.values().map(|p| p.run_ns).sum::<u64>() as f64 / hs,
                    bg_bpf: r.on.background.0 * l.secs / hs,
                    traps,
                    bg_traps: r.on.background.1 * l.secs / hs,
                    trap: trap_ns(r),
                    agent: l.agent_ns as f64 / hs,
                    agent_idle: r.on.idle_ns_per_s * l.secs / hs,
                })
            })
            .collect();
        let sp = |f: fn(&PerHandshake) -> f64| Spread::of(per.iter().map(f));
        let raw_us = Spread::of(per.iter().map(|p| p.raw() / 1000.0));
        let net_us = Spread::of(per.iter().map(|p| p.net() / 1000.0));
        let rate = Spread::of(rounds.iter().filter_map(|r| {
            let l = r.on.loads.get(i)?;
            Some(l.handshakes as f64 / l.secs)
        }));
        let _ = writeln!(
            totals,
            "| {} | {:.0} | {:.0} ({:.0}) | {:.1} ({:.1}) | {:.0} | {:.0} ({:.0}) | {} | **{}** |",
            t.tls.label(),
            rate.median,
            sp(|p| p.bpf).median,
            sp(|p| p.bg_bpf).median,
            sp(|p| p.traps).median,
            sp(|p| p.bg_traps).median,
            sp(|p| p.trap).median,
            sp(|p| p.agent).median,
            sp(|p| p.agent_idle).median,
            raw_us.fmt(1),
            net_us.fmt(1)
        );
        rows.push(Row::new(
            format!(
                "kernel + agent CPU per successful handshake (client and server side), {}",
                t.tls.label()
            ),
            "≤ 5 µs",
            format!("{} µs", net_us.fmt(1)),
            Some(net_us.median <= 5.0),
        ));
        body.push_str(&programs_table(t.tls, rounds, i));
    }
    body.push_str(&totals);
    body.push('\n');
    Section { body, rows }
}

/// Each program's runs and run time per handshake, pooled over the rounds.
fn programs_table(tls: Tls, rounds: &[crate::measure::OffOn<Round>], i: usize) -> String {
    let mut pooled: BTreeMap<String, (bool, u64, u64)> = BTreeMap::new();
    let mut handshakes = 0u64;
    for l in rounds.iter().filter_map(|r| r.on.loads.get(i)) {
        handshakes += l.handshakes;
        for p in l.programs.values() {
            let e = pooled.entry(p.name.clone()).or_insert((p.uprobe, 0, 0));
            e.1 += p.runs;
            e.2 += p.run_ns;
        }
    }
    let hs = handshakes.max(1) as f64;
    let mut by_cost: Vec<_> = pooled.into_iter().filter(|(_, v)| v.1 > 0).collect();
    by_cost.sort_by_key(|(_, v)| std::cmp::Reverse(v.2));
    let mut out = format!(
        "\n{}, {handshakes} handshakes, by BPF run time:\n\n| program | kind | runs per handshake | ns per run | ns per handshake |\n|---|---|---|---|---|\n",
        tls.label()
    );
    for (name, (uprobe, runs, ns)) in by_cost {
        let _ = writeln!(
            out,
            "| `{name}` | {} | {:.2} | {:.0} | {:.0} |",
            if uprobe { "uprobe" } else { "kernel hook" },
            runs as f64 / hs,
            ns as f64 / runs as f64,
            ns as f64 / hs
        );
    }
    out.push('\n');
    out
}
