//! Helpers of the fault-injection tests (`tests/faults.rs`): a failing
//! handshake load from threads of the test process, condition waits, the
//! agent's metrics and readiness, and the eBPF objects a process holds.

use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

/// Failing handshakes (the client verifies against the system store, the
/// server's certificate is not from it) from `threads` threads of this
/// process until dropped.
pub struct FailureLoad {
    stop: Arc<AtomicBool>,
    made: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FailureLoad {
    /// Starts `threads` threads handshaking with 127.0.0.1:port, each
    /// pausing `pause` between handshakes.
    pub fn start(port: u16, threads: usize, pause: Duration) -> FailureLoad {
        let stop = Arc::new(AtomicBool::new(false));
        let made = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|_| {
                let (stop, made) = (stop.clone(), made.clone());
                std::thread::spawn(move || {
                    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an SSL_CTX");
                    b.set_verify(SslVerifyMode::PEER);
                    let connector = b.build();
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
                            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                            // Fails: the server's certificate is not trusted.
                            let _ = connector.connect("localhost", tcp);
                            made.fetch_add(1, Ordering::Relaxed);
                        }
                        if !pause.is_zero() {
                            std::thread::sleep(pause);
                        }
                    }
                })
            })
            .collect();
        FailureLoad {
            stop,
            made,
            threads,
        }
    }

    /// Handshakes attempted so far.
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    /// Stops the threads; returns how many handshakes they made.
    pub fn stop(mut self) -> u64 {
        self.halt();
        self.made()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for FailureLoad {
    fn drop(&mut self) {
        self.halt();
    }
}

/// `n` failing handshakes (as [`FailureLoad`]) made one after the other
/// from the calling thread; returns how many connected.
pub fn failing_handshakes(port: u16, n: usize) -> usize {
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an SSL_CTX");
    b.set_verify(SslVerifyMode::PEER);
    let connector = b.build();
    let mut made = 0;
    for _ in 0..n {
        if let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = connector.connect("localhost", tcp);
            made += 1;
        }
    }
    made
}

/// One handshake with 127.0.0.1:port verified against `ca`, then
/// `GET /`: the response's first line, or why there was none.
pub fn verified_get(port: u16, name: &str, ca: &Path) -> Result<String, String> {
    use std::io::{Read as _, Write as _};
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.set_ca_file(ca).map_err(|e| e.to_string())?;
    let connector = b.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(name, tcp)
        .map_err(|e| format!("handshake: {e}"))?;
    write!(
        tls,
        "GET / HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response);
    response
        .lines()
        .next()
        .map(str::to_string)
        .filter(|l| l.starts_with("HTTP/"))
        .ok_or_else(|| format!("no HTTP response: {response:?}"))
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after
/// `timeout` with `what` and the last `context()`.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Option<T>,
    context: impl Fn() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `GET path` from the agent's metrics server: (status, body); (0, why)
/// when it cannot be reached.
pub fn scrape(port: u16, path: &str) -> (u16, String) {
    crate::receivers::http_get(port, path, None).unwrap_or_else(|e| (0, e))
}

/// The value of the first sample line starting with `prefix` (a metric
/// name and, optionally, the start of its labels).
pub fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The sum of every sample line starting with `prefix`.
pub fn sample_sum(page: &str, prefix: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The eBPF program ids process `pid` holds open (`prog_id:` in the
/// fdinfo of its bpf-prog descriptors).
pub fn bpf_prog_ids_of(pid: u32) -> Vec<u32> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// How many attachments process `pid` holds open: perf events (uprobes,
/// tracepoints) and bpf links.
pub fn attachment_fds_of(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            t.contains("perf_event") || t.contains("bpf_link") || t.contains("bpf-link")
        })
        .count()
}

/// Ids of every eBPF program loaded in the kernel now.
pub fn loaded_bpf_prog_ids() -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

/// Whether process `pid` exists (a zombie counts as gone).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory preconditions; the tests signal only
    // processes they started.
    let r = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(r, 0, "kill({pid}, {signal}) failed");
}
