//! Row 7: the tax on work that has nothing to do with TLS: every process on
//! the host passes the agent's syscall hooks. `redis-benchmark` against
//! redis-server (loopback TCP, many small reads and writes), `dd bs=1`
//! through a pipe (two processes, one byte per syscall), and fork + exec of
//! /bin/true (the agent watches every exec for TLS libraries).

use std::fmt::Write as _;
use std::process::{Command, Stdio};
use std::time::Instant;

use tlsdoctor_tests::free_port;
use tlsdoctor_tests::servers::redis_server;

use crate::measure::{CpuMeter, Spread, agent_share, off_on};
use crate::{Row, Section, Settings, Shared};

/// redis-benchmark's SET and GET: (requests/s, p50 ms, p99 ms) each.
fn redis_benchmark(port: u16, requests: u64) -> Vec<(f64, f64, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-t", "set,get", "-c", "50", "--csv"])
        .arg("-p")
        .arg(port.to_string())
        .arg("-n")
        .arg(requests.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("running redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let row = |test: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("\"{test}\"")))
            .map(|l| {
                let f: Vec<f64> = l
                    .split(',')
                    .skip(1)
                    .map(|v| v.trim_matches('"').parse().unwrap_or(f64::NAN))
                    .collect();
                let at = |i: usize| f.get(i).copied().unwrap_or(f64::NAN);
                (at(0), at(3), at(5))
            })
            .unwrap_or((f64::NAN, f64::NAN, f64::NAN))
    };
    vec![row("SET"), row("GET")]
}

/// ns per byte through `dd bs=1 | dd bs=1` (a read and a write per byte
/// on each side).
fn dd_pipe(bytes: u64) -> f64 {
    let t = Instant::now();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "dd if=/dev/zero bs=1 count={bytes} status=none | dd of=/dev/null bs=1 status=none"
        ))
        .status()
        .expect("running dd");
    assert!(status.success(), "dd failed: {status}");
    t.elapsed().as_nanos() as f64 / bytes as f64
}

/// µs per fork + exec + wait of /bin/true.
fn execs(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let status = Command::new("/bin/true")
            .status()
            .expect("running /bin/true");
        assert!(status.success());
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

struct Measured {
    redis: Vec<(f64, f64, f64)>,
    dd_ns: f64,
    exec_us: f64,
    agent_cpu: Option<f64>,
}

pub fn run(s: &Settings, _shared: &mut Shared) -> Section {
    let port = free_port();
    let server = redis_server(port);
    // Warm-up: redis's first connections and allocations.
    redis_benchmark(port, s.redis_requests / 10 + 100);
    let rounds = off_on(s, &[], |agent| {
        let cpu = CpuMeter::start(agent);
        Measured {
            redis: redis_benchmark(port, s.redis_requests),
            dd_ns: dd_pipe(s.dd_bytes),
            exec_us: execs(s.execs),
            agent_cpu: cpu.stop().map(|c| c.1),
        }
    });
    drop(server);
    let mut body = format!(
        "## Host-wide tax on work without TLS\n\nAgent off and on over {} rounds. `redis-benchmark -t set,get -c 50 -n {}` against a local redis-server (loopback TCP); `dd if=/dev/zero bs=1 count={} | dd of=/dev/null bs=1` (ns per byte: one read and one write per byte on each side of the pipe); {} × fork + exec + wait of `/bin/true` (the agent follows every exec to look for TLS libraries).\n\n| workload | off | on | **ratio on / off**, median (min–max) | p50 / p99 ms off → on |\n|---|---|---|---|---|\n",
        s.rounds, s.redis_requests, s.dd_bytes, s.execs
    );
    let mut rows = Vec::new();
    for (i, test) in ["SET", "GET"].iter().enumerate() {
        let off = Spread::of(rounds.iter().map(|r| r.off.redis[i].0));
        let on = Spread::of(rounds.iter().map(|r| r.on.redis[i].0));
        let ratio = Spread::of(rounds.iter().map(|r| r.on.redis[i].0 / r.off.redis[i].0));
        let lat = |on: bool, f: fn(&(f64, f64, f64)) -> f64| {
            Spread::of(
                rounds
                    .iter()
                    .map(|r| f(&(if on { &r.on } else { &r.off }).redis[i])),
            )
            .median
        };
        let _ = writeln!(
            body,
            "| redis-benchmark {test}, requests/s | {:.0} | {:.0} | **{}** | {:.3} / {:.3} → {:.3} / {:.3} |",
            off.median,
            on.median,
            ratio.fmt(3),
            lat(false, |x| x.1),
            lat(false, |x| x.2),
            lat(true, |x| x.1),
            lat(true, |x| x.2),
        );
        rows.push(Row::new(
            format!("redis-benchmark {test} requests/s on / off (no TLS)"),
            "—",
            ratio.fmt(3),
            None,
        ));
    }
    // Times (lower is better): the ratio is off / on, so that 1 is no tax
    // and below 1 is slower, as for the rates.
    for (what, f) in [
        (
            "`dd bs=1` through a pipe, ns per byte",
            (|m: &Measured| m.dd_ns) as fn(&Measured) -> f64,
        ),
        ("fork + exec of /bin/true, µs", |m: &Measured| m.exec_us),
    ] {
        let off = Spread::of(rounds.iter().map(|r| f(&r.off)));
        let on = Spread::of(rounds.iter().map(|r| f(&r.on)));
        let ratio = Spread::of(rounds.iter().map(|r| f(&r.off) / f(&r.on)));
        let _ = writeln!(
            body,
            "| {what} | {:.0} | {:.0} | **{}** | — |",
            off.median,
            on.median,
            ratio.fmt(3)
        );
        rows.push(Row::new(
            format!("{what}: speed on / off"),
            "—",
            ratio.fmt(3),
            None,
        ));
    }
    let _ = writeln!(
        body,
        "\nFor the times (dd, exec) the ratio is off / on, so that for every row 1 means no tax and below 1 means slower with the agent. Agent CPU during the on runs: {}.\n",
        agent_share(rounds.iter().filter_map(|r| r.on.agent_cpu))
    );
    Section { body, rows }
}
