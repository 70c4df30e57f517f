//! What the agent costs the host, measured agent off / agent on, interleaved
//! in one run (root). One module per phase:
//!
//! - `throughput`: TLS handshakes per second at saturation (nginx, a new
//!   connection per request), with the bench's own client, `h2load` and
//!   `openssl s_time`, TLS 1.3 and TLS 1.2;
//! - `latency`: handshake latency at a fixed offered load of half the
//!   machine's capacity (open loop: latency from the scheduled send time);
//! - `syscalls`: ns per `read(2)` on descriptors the agent does not track
//!   (pipe, regular file, /dev/zero) and on sockets that carry no TLS;
//! - `bulk`: 1 GiB through an established TLS connection;
//! - `cost`: kernel (BPF run time, uprobe traps) and agent CPU per handshake,
//!   and the cost of one uprobe hit;
//! - `flood`: a failure flood: failures recorded versus made, agent RSS idle
//!   and peak, agent CPU;
//! - `hosttax`: non-TLS syscall-heavy work (redis-benchmark, `dd bs=1`
//!   through a pipe, fork+exec);
//! - `report`: `agent diagnose`'s host report on a dozen server blocks;
//! - `probe`: `agent diagnose HOST:PORT` against loopback servers.
//!
//! `cargo xtask bench` (full), `cargo xtask bench -- --quick` (smoke: seconds
//! per phase, figures meaningless), `--only a,b` (a subset). Prints a
//! Markdown report and writes it to target/bench-report.md; BENCHMARKS.md
//! holds the published one.

// A measuring harness: a failed step ends the run with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bpf_stats;
mod bulk;
mod cost;
mod flood;
mod host_report;
mod host_tax;
mod latency;
mod loadgen;
mod measure;
mod nginx;
mod syscalls;
mod throughput;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use tlsdoctor_tests::require_root;

/// How long and how often each phase measures.
pub struct Settings {
    pub quick: bool,
    /// Agent off / agent on rounds of every interleaved phase.
    pub rounds: usize,
    /// One saturated throughput run (one tool, one TLS version, one mode).
    pub throughput_run: Duration,
    /// One open-loop latency run.
    pub latency_run: Duration,
    /// Closed-loop client threads of the bench's own load generator.
    pub threads: usize,
    /// `read(2)` calls per descriptor kind and run.
    pub syscall_reads: u64,
    /// Bytes per bulk transfer.
    pub bulk_bytes: u64,
    /// One handshake-cost run (agent on, BPF stats on).
    pub cost_run: Duration,
    /// OpenSSL errors raised per uprobe-hit run.
    pub uprobe_hits: u64,
    pub flood: Duration,
    pub idle: Duration,
    /// redis-benchmark requests per test and run.
    pub redis_requests: u64,
    /// Bytes through `dd bs=1 | dd bs=1`.
    pub dd_bytes: u64,
    /// fork+exec of /bin/true per run.
    pub execs: u64,
}

impl Settings {
    fn full() -> Settings {
        Settings {
            quick: false,
            rounds: 5,
            throughput_run: Duration::from_secs(5),
            latency_run: Duration::from_secs(10),
            threads: 4,
            syscall_reads: 2_000_000,
            bulk_bytes: 1 << 30,
            cost_run: Duration::from_secs(6),
            uprobe_hits: 200_000,
            flood: Duration::from_secs(60),
            idle: Duration::from_secs(30),
            redis_requests: 100_000,
            dd_bytes: 1_000_000,
            execs: 1_000,
        }
    }

    fn quick() -> Settings {
        Settings {
            quick: true,
            rounds: 1,
            throughput_run: Duration::from_millis(700),
            latency_run: Duration::from_millis(700),
            threads: 2,
            syscall_reads: 50_000,
            bulk_bytes: 8 << 20,
            cost_run: Duration::from_millis(700),
            uprobe_hits: 10_000,
            flood: Duration::from_secs(2),
            idle: Duration::from_secs(1),
            redis_requests: 2_000,
            dd_bytes: 20_000,
            execs: 30,
        }
    }
}

/// TLS versions every handshake phase runs; the bench nginx serves each on
/// its own port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tls {
    V13,
    V12,
}

impl Tls {
    pub const ALL: [Tls; 2] = [Tls::V13, Tls::V12];

    pub fn label(self) -> &'static str {
        match self {
            Tls::V13 => "TLS 1.3",
            Tls::V12 => "TLS 1.2",
        }
    }

    pub fn ssl_version(self) -> openssl::ssl::SslVersion {
        match self {
            Tls::V13 => openssl::ssl::SslVersion::TLS1_3,
            Tls::V12 => openssl::ssl::SslVersion::TLS1_2,
        }
    }
}

/// One line of the summary table.
pub struct Row {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: no target, or nothing measured.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(what: impl Into<String>, target: &str, measured: String, met: Option<bool>) -> Row {
        Row {
            what: what.into(),
            target: target.to_string(),
            measured,
            met,
        }
    }
}

/// What a phase hands back: its Markdown section and its summary rows.
#[derive(Default)]
pub struct Section {
    pub body: String,
    pub rows: Vec<Row>,
}

/// Facts one phase learns that a later one uses.
#[derive(Default)]
pub struct Shared {
    /// Handshakes/s at saturation with the agent off (bench client), per
    /// TLS version: the open-loop phases offer half of it.
    pub capacity: BTreeMap<Tls, f64>,
}

type Phase = fn(&Settings, &mut Shared) -> Section;

const PHASES: &[(&str, Phase)] = &[
    ("throughput", throughput::run),
    ("latency", latency::run),
    ("syscalls", syscalls::run),
    ("bulk", bulk::run),
    ("cost", cost::run),
    ("flood", flood::run),
    ("hosttax", host_tax::run),
    ("report", host_report::run),
    ("probe", probe_phase),
];

/// `agent diagnose HOST:PORT`'s wall time (the probe's own harness).
fn probe_phase(s: &Settings, _shared: &mut Shared) -> Section {
    Section {
        body: tlsdoctor_tests::probe::bench(s.quick),
        rows: Vec::new(),
    }
}

fn main() {
    require_root();
    let args: Vec<String> = std::env::args().collect();
    let s = if args.iter().any(|a| a == "--quick") {
        Settings::quick()
    } else {
        Settings::full()
    };
    // `--only throughput,latency,...` runs a subset.
    let only: Option<Vec<String>> = args
        .iter()
        .skip_while(|a| *a != "--only")
        .nth(1)
        .map(|v| v.split(',').map(str::to_string).collect());
    if let Some(names) = &only {
        for name in names {
            if !PHASES.iter().any(|(n, _)| n == name) {
                let known: Vec<&str> = PHASES.iter().map(|(n, _)| *n).collect();
                eprintln!("bench: no phase `{name}`; phases: {}", known.join(","));
                std::process::exit(2);
            }
        }
    }
    let load_before = loadavg();
    let mut shared = Shared::default();
    let mut sections = Vec::new();
    for (name, phase) in PHASES {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        eprintln!("bench: phase {name} (load average {})", loadavg());
        let started = std::time::Instant::now();
        let section = phase(&s, &mut shared);
        eprintln!(
            "bench: phase {name} took {:.0} s",
            started.elapsed().as_secs_f64()
        );
        sections.push(section);
    }
    let mut report = machine(&s, &load_before);
    report.push_str(&summary(&sections));
    for section in &sections {
        report.push_str(&section.body);
    }
    println!("{report}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-report.md");
    if std::fs::write(&out, &report).is_ok() {
        eprintln!("report written to {}", out.display());
    }
}

fn summary(sections: &[Section]) -> String {
    let mut out = String::from(
        "## Summary against the targets\n\nMedian over the rounds, (min–max) of the rounds.\n\n| what | target | measured | met? |\n|---|---|---|---|\n",
    );
    for row in sections.iter().flat_map(|s| &s.rows) {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {met} |",
            row.what, row.target, row.measured
        );
    }
    out.push('\n');
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn machine(s: &Settings, load_before: &str) -> String {
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
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(0);
    let openssl = openssl::version::version();
    let agent = tlsdoctor_tests::agent::agent_binary();
    format!(
        "# tlsdoctor benchmark{}\n\n## Machine\n\n{cpu}, {cores} cores, {} GiB, kernel {}, {openssl}; agent `{}`; {} rounds agent off / on interleaved (the order alternates every round). Load average before: {load_before}; after: {}.\n\n",
        if s.quick {
            " (--quick: smoke run, the figures mean nothing)"
        } else {
            ""
        },
        mem_kib / 1024 / 1024,
        kernel.trim(),
        agent.display(),
        s.rounds,
        loadavg()
    )
}
