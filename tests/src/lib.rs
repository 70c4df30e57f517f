//! Harness for tlsdoctor's end-to-end tests: the real agent (one per test
//! binary, sharing its journal, or one per test with its own flags), real
//! servers, real clients, certificates made on the fly, real OTLP
//! receivers. Tests tell their records apart by the server port each one
//! picks.

// Test code: a setup step that fails fails the test, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod agent;
pub mod apache;
pub mod clients;
pub mod faults;
pub mod golang;
pub mod hostile;
pub mod pki;
pub mod probe;
pub mod receivers;
pub mod scenario;
pub mod servers;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("tlsdoctor-e2e-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("creating a temp dir");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("TLSDOCTOR_KEEP_TEMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A TCP port free on loopback right now, never handed out twice by this
/// process, and below the kernel's ephemeral range: a port from that range
/// (`bind(…:0)`) can meanwhile become a client's source port or another
/// concurrent test's pick, and a server then fails to bind it -- or, worse,
/// the test talks to someone else's server on it.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32768);
    let (low, high) = (20_000u32, ephemeral_low.min(32_768));
    if high <= low + 1000 {
        return TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port");
    }
    let span = high - low;
    // A different starting point per process, so concurrent test binaries
    // rarely walk the same ports.
    let _ = NEXT.compare_exchange(
        0,
        1 + (std::process::id().wrapping_mul(7919)
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0))
            % span,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..span {
        let port = (low + NEXT.fetch_add(1, Ordering::Relaxed) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free TCP port in {low}..{high}");
}

/// The agent's own memory: resident anonymous memory of process `pid`
/// (RssAnon in /proc/PID/status), KiB. Not VmRSS: that also counts the
/// pages of the executable read from disk, and the tests' debug agent is a
/// file of hundreds of MB whose resident part grows with the code paths a
/// test happens to run (about 45 MB at start), while heap growth is what a
/// bound on memory under a fault is about. The release agent's whole RSS
/// is measured by the benchmark (BENCHMARKS.md).
pub fn rss_anon_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The end-to-end tests load eBPF programs: they need root.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "end-to-end tests need root (they load eBPF programs); run them with `cargo xtask test`"
    );
}
