//! What the agent costs the host, measured side by side (root):
//!
//! 1. handshake overhead: a real nginx on loopback, a load generator opening a
//!    new TLS connection per request, agent off and on, interleaved;
//! 2. the cost per hooked syscall on a descriptor the agent does not track;
//! 3. a failure flood: how many failures the journal recorded versus how many
//!    were made (or counted as dropped), the agent's CPU and peak RSS; and the
//!    agent's idle CPU;
//! 4. `agent diagnose` host report on a dozen server blocks;
//! 5. `agent diagnose HOST:PORT`, the active probe, against loopback servers.
//!
//! `cargo xtask bench` (full) or `cargo xtask bench -- --quick` (smoke). Prints
//! a Markdown report; BENCHMARKS.md holds the published one.

// Benchmark harness: a failed set-up step stops the run, saying why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};
use tlsdoctor_tests::{free_port, require_root};

struct Settings {
    /// Seconds per load phase.
    phase: u64,
    /// off/on rounds.
    rounds: usize,
    /// Seconds of failure flood.
    flood: u64,
    /// Seconds of idle measurement.
    idle: u64,
    /// Load generator threads.
    threads: usize,
}

fn main() {
    require_root();
    let quick = std::env::args().any(|a| a == "--quick");
    let s = if quick {
        Settings {
            phase: 2,
            rounds: 1,
            flood: 3,
            idle: 3,
            threads: 2,
        }
    } else {
        Settings {
            phase: 10,
            rounds: 3,
            flood: 60,
            idle: 30,
            threads: 4,
        }
    };
    // `--only overhead,syscalls,uprobe,flood,report,probe` runs a subset.
    let only: Option<Vec<String>> = std::env::args()
        .skip_while(|a| a != "--only")
        .nth(1)
        .map(|v| v.split(',').map(str::to_string).collect());
    let wanted = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|x| x == name));
    let mut report = String::new();
    report.push_str(&machine());
    if wanted("overhead") {
        report.push_str(&overhead(&s));
    }
    if wanted("syscalls") {
        report.push_str(&untracked_syscalls(quick));
    }
    if wanted("uprobe") {
        report.push_str(&uprobe_hit(quick));
    }
    if wanted("flood") {
        report.push_str(&flood(&s));
    }
    if wanted("report") {
        report.push_str(&host_report(quick));
    }
    if wanted("probe") {
        report.push_str(&tlsdoctor_tests::probe::bench(quick));
    }
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report.md");
    if std::fs::write(&out, &report).is_ok() {
        eprintln!("report written to {}", out.display());
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").to_string())
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0);
    format!(
        "## Machine\n\n{cpu}, {cores} cores, {} GiB, kernel {}\n\n",
        mem / 1024 / 1024,
        kernel.trim()
    )
}

/// Latencies (µs) and count of one load phase.
struct Phase {
    done: u64,
    errors: u64,
    secs: f64,
    latencies: Vec<u64>,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.done as f64 / self.secs
    }
    fn pct(&self, p: f64) -> u64 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i]
    }
}

/// `threads` clients, each opening a new TLS connection per request.
fn load(port: u16, ca: &Path, threads: usize, secs: u64) -> Phase {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::new();
    let started = Instant::now();
    for _ in 0..threads {
        let stop = stop.clone();
        let errors = errors.clone();
        let ca = ca.to_path_buf();
        handles.push(std::thread::spawn(move || {
            let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
            b.set_ca_file(&ca).expect("ca");
            let connector = b.build();
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let ok = (|| -> Option<()> {
                    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
                    let mut tls = connector.connect("localhost", tcp).ok()?;
                    tls.write_all(
                        b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
                    )
                    .ok()?;
                    let mut buf = Vec::new();
                    let _ = tls.read_to_end(&mut buf);
                    buf.starts_with(b"HTTP/1.1 200").then_some(())
                })();
                match ok {
                    Some(()) => lat.push(t.elapsed().as_micros() as u64),
                    None => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Phase {
        done: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs,
        latencies,
    }
}

fn overhead(s: &Settings) -> String {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    let _server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.fullchain, &leaf.key, ""),
    );
    // Warm up nginx and the page cache.
    load(port, &pki.ca_file, s.threads, 1);
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut agent_cpu = Vec::new();
    for _ in 0..s.rounds {
        off.push(load(port, &pki.ca_file, s.threads, s.phase));
        let agent = Agent::start(&[]);
        let t0 = proc_cpu_ticks(agent.pid());
        on.push(load(port, &pki.ca_file, s.threads, s.phase));
        // USER_HZ ticks → % of one core over the phase.
        agent_cpu.push((proc_cpu_ticks(agent.pid()) - t0) as f64 / s.phase as f64);
        agent.stop();
    }
    let mut out = format!(
        "## Handshake overhead\n\nnginx (1 worker, ECDSA P-256, TLS 1.3) on loopback; {} client threads, a new TLS connection per request (connect, handshake, GET, close); {} s per phase, agent off and on interleaved {} times. Both ends run OpenSSL on this host, so the agent's probes fire on the client and the server: this is twice what a server-only host pays.\n\n| round | off: handshakes/s | on: handshakes/s | ratio | off p50/p99 µs | on p50/p99 µs | Δp99 µs | agent CPU (% of a core) |\n|---|---|---|---|---|---|---|---|\n",
        s.threads, s.phase, s.rounds
    );
    for (i, ((a, b), cpu)) in off.iter().zip(&on).zip(&agent_cpu).enumerate() {
        out.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.3} | {}/{} | {}/{} | {:+} | {cpu:.1} |\n",
            i + 1,
            a.rate(),
            b.rate(),
            b.rate() / a.rate(),
            a.pct(0.5),
            a.pct(0.99),
            b.pct(0.5),
            b.pct(0.99),
            b.pct(0.99) as i64 - a.pct(0.99) as i64
        ));
    }
    let total = |v: &[Phase]| {
        v.iter().map(|p| p.done).sum::<u64>() as f64 / v.iter().map(|p| p.secs).sum::<f64>()
    };
    let merged = |v: &[Phase]| {
        let mut l: Vec<u64> = v.iter().flat_map(|p| p.latencies.iter().copied()).collect();
        l.sort_unstable();
        Phase {
            done: l.len() as u64,
            errors: 0,
            secs: 1.0,
            latencies: l,
        }
    };
    let (mo, mn) = (merged(&off), merged(&on));
    let errors: u64 = off.iter().chain(&on).map(|p| p.errors).sum();
    out.push_str(&format!(
        "| all | {:.0} | {:.0} | **{:.3}** | {}/{} | {}/{} | **{:+}** | {:.1} |\n\nErrors: {errors}.\n\n",
        total(&off),
        total(&on),
        total(&on) / total(&off),
        mo.pct(0.5),
        mo.pct(0.99),
        mn.pct(0.5),
        mn.pct(0.99),
        mn.pct(0.99) as i64 - mo.pct(0.99) as i64,
        agent_cpu.iter().sum::<f64>() / agent_cpu.len().max(1) as f64
    ));
    out
}

/// ns per `read(2)` of one byte from /dev/zero: a descriptor no connect or
/// accept made, so the agent's read hooks only look it up.
fn untracked_syscalls(quick: bool) -> String {
    let n: u64 = if quick { 200_000 } else { 3_000_000 };
    let measure = || {
        let file = std::fs::File::open("/dev/zero").expect("/dev/zero");
        let mut f = &file;
        let mut b = [0u8; 1];
        let t = Instant::now();
        for _ in 0..n {
            let _ = f.read(&mut b);
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let (a, b) = median_off_on(measure);
    format!(
        "## Untracked syscalls\n\n`read(2)` of 1 byte from /dev/zero, {n} calls, median of 3, agent off/on: {a:.0} ns / {b:.0} ns per call, **+{:.0} ns** (the sys_enter/sys_exit tracepoints and one map lookup each).\n\n",
        b - a
    )
}

/// ns per OpenSSL error raised and cleared in another library (EVP): the
/// agent's `ERR_vset_error` uprobe fires and returns at once. OpenSSL 3.0
/// does this ~9 times in every successful handshake, so this is the price of
/// one uprobe hit that the agent cannot avoid -- on this machine.
fn uprobe_hit(quick: bool) -> String {
    const ERR_LIB_EVP: i32 = 6;
    let n: u64 = if quick { 20_000 } else { 200_000 };
    openssl_sys::init();
    let measure = || {
        let t = Instant::now();
        for _ in 0..n {
            // SAFETY: plain calls into libcrypto's thread-local error queue;
            // a null format means no data string.
            unsafe {
                openssl_sys::ERR_new();
                openssl_sys::ERR_set_error(ERR_LIB_EVP, 0, std::ptr::null());
                openssl_sys::ERR_clear_error();
            }
        }
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let (a, b) = median_off_on(measure);
    format!(
        "## One uprobe hit\n\nAn OpenSSL error raised and cleared in another library (EVP), {n} times, median of 3, agent off/on: {a:.0} ns / {b:.0} ns, **+{:.0} ns** per uprobe hit (`ERR_vset_error`: a trap into the kernel, a BPF program that returns at once, the return to user space). OpenSSL 3.0 raises and clears about 9 such errors in every successful handshake.\n\n",
        b - a
    )
}

/// `measure` three times without the agent and three times with it,
/// interleaved; the medians (off, on).
fn median_off_on(measure: impl Fn() -> f64) -> (f64, f64) {
    let mut off = Vec::new();
    let mut on = Vec::new();
    for _ in 0..3 {
        off.push(measure());
        let agent = Agent::start(&[]);
        on.push(measure());
        agent.stop();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    (median(&mut off), median(&mut on))
}

fn proc_cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

fn proc_status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn flood(s: &Settings) -> String {
    let ticks = 100.0; // USER_HZ
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    // Idle: no TLS on the host beyond the machine's own.
    let t0 = proc_cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(s.idle));
    let idle = (proc_cpu_ticks(pid) - t0) as f64 / ticks / s.idle as f64 * 100.0;

    let pki = Pki::new();
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicU64::new(0));
    let start_cpu = proc_cpu_ticks(pid);
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..s.threads {
        let stop = stop.clone();
        let made = made.clone();
        handles.push(std::thread::spawn(move || {
            let mut b = SslConnector::builder(SslMethod::tls_client()).expect("connector");
            b.set_verify(SslVerifyMode::PEER);
            let connector = b.build();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
                    // Fails: the certificate is self-signed.
                    let _ = connector.connect("localhost", tcp);
                    made.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut peak_rss = 0;
    while started.elapsed() < Duration::from_secs(s.flood) {
        std::thread::sleep(Duration::from_millis(200));
        peak_rss = peak_rss.max(proc_status_kb(pid, "VmRSS:"));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = (proc_cpu_ticks(pid) - start_cpu) as f64 / ticks / secs * 100.0;
    let made = made.load(Ordering::Relaxed);
    // Let the agent finish what is in flight, then read what it reports.
    std::thread::sleep(Duration::from_secs(6));
    peak_rss = peak_rss.max(proc_status_kb(pid, "VmHWM:"));
    let records = agent.records_for_port(port);
    let clients = records
        .iter()
        .filter(|r| r.role == agent::outcome::Role::Client)
        .count();
    let servers = records.len() - clients;
    let status: serde_json::Value = std::fs::read(agent.journal().with_file_name("status.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if std::env::var_os("BENCH_DUMP_STATUS").is_some() {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
    }
    let appended = status["journal_records"].as_u64().unwrap_or(0);
    let rotated_out = status["journal_rotated_out"].as_u64().unwrap_or(0);
    let kernel_lost = status["kernel"]["ringbuf_full"].as_u64().unwrap_or(0);
    let dropped = status["dropped_outcomes"].as_u64().unwrap_or(0);
    let over = status["assembly"]["over_capacity"].as_u64().unwrap_or(0);
    agent.stop();
    format!(
        "## Failure flood\n\n{} client threads making failing handshakes (self-signed certificate) to nginx for {:.0} s: **{made}** made ({:.0}/s), each seen from both ends: {} outcomes expected. The agent journaled **{appended}**; on disk at the end: {clients} client-side and {servers} server-side records, the rest ({rotated_out}) rotated out by the 100 MiB journal limit and counted as such. Counted as lost instead: {kernel_lost} kernel events (ring buffer full), {dropped} outcomes (queue full), {over} connections over capacity.\n\nAgent CPU during the flood: **{cpu:.1}%** of one core; peak RSS **{:.1} MiB**. Idle ({} s, no TLS traffic): **{idle:.2}%** of one core.\n\n",
        s.threads,
        secs,
        made as f64 / secs,
        made * 2,
        peak_rss as f64 / 1024.0,
        s.idle
    )
}

fn host_report(quick: bool) -> String {
    let pki = Pki::new();
    let port = free_port();
    let mut body = String::new();
    for i in 0..12 {
        let leaf = pki.leaf(&LeafSpec::new(&format!("site{i}.example")));
        body.push_str(&nginx_tls_block(
            port,
            &format!("site{i}.example"),
            &leaf.fullchain,
            &leaf.key,
            "",
        ));
    }
    let _server = nginx(port, &body);
    let runs = if quick { 2 } else { 10 };
    let dir = tlsdoctor_tests::TempDir::new("bench-report");
    let mut times = Vec::new();
    let mut blocks = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let report =
            agent::cli::diagnose::host::HostReport::gather(&dir.join("journal.jsonl"), None, None);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        blocks = report.servers.iter().map(|s| s.blocks.len()).sum();
    }
    times.sort_by(|a, b| a.total_cmp(b));
    format!(
        "## `agent diagnose` host report\n\nA running nginx with {blocks} TLS server blocks (12 certificates): median {:.0} ms, max {:.0} ms over {runs} runs (discovery, config parse, 12 chain verifications, listener scan, clock).\n",
        times[times.len() / 2],
        times[times.len() - 1]
    )
}
