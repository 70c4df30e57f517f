//! Row 6: the agent's memory idle and during a failure flood, and whether
//! every failure of the flood is recorded (or counted where it was not).
//! Also its idle CPU. One agent, no off side: these are the agent's own
//! figures. Memory is VmRSS split into its anonymous part (the heap: what
//! the agent holds) and its file part (the binary's and libraries' pages,
//! and the BPF ring buffer, which the kernel maps twice).

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};

use crate::measure::{cpu_ns, status_kib};
use crate::{Row, Section, Settings, Shared};

/// Failing handshakes (the server's certificate is self-signed) from
/// `threads` clients until `stop`; returns how many were made.
fn failing_clients(
    port: u16,
    threads: usize,
    stop: &Arc<AtomicBool>,
) -> (Arc<AtomicU64>, Vec<std::thread::JoinHandle<()>>) {
    let made = Arc::new(AtomicU64::new(0));
    let handles = (0..threads)
        .map(|_| {
            let (stop, made) = (stop.clone(), made.clone());
            std::thread::spawn(move || {
                let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an SSL_CTX");
                b.set_verify(SslVerifyMode::PEER);
                let connector = b.build();
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
                        // Fails: the certificate is self-signed.
                        let _ = connector.connect("localhost", tcp);
                        made.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    (made, handles)
}

pub fn run(s: &Settings, _shared: &mut Shared) -> Section {
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    // Idle: no TLS on the host beyond the machine's own.
    let c0 = cpu_ns(pid);
    std::thread::sleep(s.idle);
    let idle_cpu = (cpu_ns(pid) - c0) as f64 / s.idle.as_nanos() as f64 * 100.0;
    let idle = Rss::of(pid);
    let idle_rss = idle.total;
    let idle_hwm = status_kib(pid, "VmHWM:");
    // The flood's peak is its own: the start (the first coverage scan reads
    // the symbol tables of every mapped TLS file) is the idle figure's
    // VmHWM above.
    let hwm_reset = reset_hwm(pid);

    let pki = Pki::new();
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let c0 = cpu_ns(pid);
    let started = Instant::now();
    let (made, handles) = failing_clients(port, 4, &stop);
    let mut peak = Rss::default();
    while started.elapsed() < s.flood {
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(Rss::of(pid));
    }
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    let secs = started.elapsed().as_secs_f64();
    let flood_cpu = (cpu_ns(pid) - c0) as f64 / (secs * 1e9) * 100.0;
    let made = made.load(Ordering::Relaxed);
    // Let the agent finish what is in flight (failures wait for their alert
    // and close), and its status file catch up.
    let expected = made * 2;
    let status = settled_status(&agent, expected);
    let drained = Rss::of(pid);
    peak = peak.max(drained);
    let mut peak_rss = peak.total;
    if hwm_reset {
        peak_rss = peak_rss.max(status_kib(pid, "VmHWM:"));
    }
    if std::env::var_os("BENCH_DUMP_STATUS").is_some() {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
    }
    let records = agent.records_for_port(port);
    let clients = records
        .iter()
        .filter(|r| r.role == agent::outcome::Role::Client)
        .count();
    let servers = records.len() - clients;
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let appended = n(&status["journal_records"]);
    let rotated_out = n(&status["journal_rotated_out"]);
    let kernel_lost = n(&status["kernel"]["ringbuf_full"]);
    let dropped = n(&status["dropped_outcomes"]);
    let over = n(&status["assembly"]["over_capacity"]);
    let counted = kernel_lost + dropped + over;
    agent.stop();
    drop(server);
    let mib = |kib: u64| kib as f64 / 1024.0;
    let hwm_note = if hwm_reset {
        "VmHWM reset as the flood began (`/proc/PID/clear_refs`)"
    } else {
        "VmHWM could not be reset: it includes the start"
    };
    let body = format!(
        "## Failure flood and agent memory\n\nIdle ({:.0} s after start, no TLS traffic): agent CPU **{idle_cpu:.2} %** of one core, RSS **{:.1} MiB**: {:.1} MiB anonymous, {:.1} MiB file pages (VmHWM so far {:.1} MiB, the start included).\n\nThen 4 client threads making failing handshakes (self-signed certificate) to nginx, TLS 1.3, for {secs:.0} s: **{made}** made ({:.0}/s), each seen from both ends: {expected} outcomes expected. The agent journaled **{appended}**; on disk at the end: {clients} client-side and {servers} server-side records, the rest ({rotated_out}) rotated out by the journal's size limit and counted as such. Counted as lost instead: {kernel_lost} kernel events (ring buffer full), {dropped} outcomes (queue full), {over} connections over capacity.\n\nAgent CPU during the flood: **{flood_cpu:.1} %** of one core; peak RSS **{:.1} MiB** ({hwm_note}); sampled every 200 ms: anonymous at most {:.1} MiB, file pages at most {:.1} MiB. Once the flood's handshakes were settled: RSS {:.1} MiB, {:.1} MiB anonymous.\n\n",
        s.idle.as_secs_f64(),
        mib(idle_rss),
        mib(idle.anon),
        mib(idle.file),
        mib(idle_hwm),
        made as f64 / secs,
        mib(peak_rss),
        mib(peak.anon),
        mib(peak.file),
        mib(drained.total),
        mib(drained.anon),
    );
    let rows = vec![
        Row::new(
            "agent RSS idle",
            "≤ 20 MiB",
            format!(
                "{:.1} MiB ({:.1} anonymous + {:.1} file)",
                mib(idle_rss),
                mib(idle.anon),
                mib(idle.file)
            ),
            Some(mib(idle_rss) <= 20.0),
        ),
        Row::new(
            "agent peak RSS during the failure flood",
            "≤ 40 MiB",
            format!(
                "{:.1} MiB (anonymous at most {:.1})",
                mib(peak_rss),
                mib(peak.anon)
            ),
            Some(mib(peak_rss) <= 40.0),
        ),
        Row::new(
            "failures of the flood recorded (or counted as lost)",
            "all",
            format!("{appended} journaled + {counted} counted of {expected}"),
            Some(appended + counted >= expected),
        ),
        Row::new(
            "agent CPU idle / during the flood",
            "—",
            format!("{idle_cpu:.2} % / {flood_cpu:.1} % of a core"),
            None,
        ),
    ];
    Section { body, rows }
}

/// The agent's status once it accounts for `expected` outcomes, or after
/// 20 s.
fn settled_status(agent: &Agent, expected: u64) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut status = serde_json::Value::Null;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        status = agent.status().unwrap_or_default();
        if accounted(&status) >= expected {
            break;
        }
    }
    status
}

/// Outcomes the agent journaled or counted as lost, from its status.
fn accounted(status: &serde_json::Value) -> u64 {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    n(&status["journal_records"])
        + n(&status["kernel"]["ringbuf_full"])
        + n(&status["dropped_outcomes"])
        + n(&status["assembly"]["over_capacity"])
}

/// The agent's resident memory, KiB: all of it, and its anonymous and
/// file-backed parts.
#[derive(Clone, Copy, Default)]
struct Rss {
    total: u64,
    anon: u64,
    file: u64,
}

impl Rss {
    fn of(pid: u32) -> Rss {
        Rss {
            total: status_kib(pid, "VmRSS:"),
            anon: status_kib(pid, "RssAnon:"),
            file: status_kib(pid, "RssFile:"),
        }
    }

    /// The larger of each part (not one sample's).
    fn max(self, other: Rss) -> Rss {
        Rss {
            total: self.total.max(other.total),
            anon: self.anon.max(other.anon),
            file: self.file.max(other.file),
        }
    }
}

/// Resets the agent's VmHWM to its current RSS (`clear_refs` value 5,
/// Linux 4.0+); false where that is refused.
fn reset_hwm(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
