//! Load generators: the bench's own TLS client (Rust `openssl`, i.e. the
//! system libssl), closed loop and open loop, and two that are not ours,
//! `h2load` and `openssl s_time`. Every request is a new connection: connect,
//! full handshake, `GET /`, close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod};

use crate::Tls;
use crate::nginx::SERVER_NAME;

/// Where the load goes.
#[derive(Clone)]
pub struct Target {
    pub port: u16,
    pub tls: Tls,
    pub ca_file: std::path::PathBuf,
}

impl Target {
    fn connector(&self) -> SslConnector {
        let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an SSL_CTX");
        b.set_ca_file(&self.ca_file).expect("the CA file");
        b.set_min_proto_version(Some(self.tls.ssl_version()))
            .expect("min version");
        b.set_max_proto_version(Some(self.tls.ssl_version()))
            .expect("max version");
        b.build()
    }
}

/// One request: connect, handshake, GET, read to the close. `Some(µs from
/// `from` to the end of the handshake)` when the response is a 200.
fn request(connector: &SslConnector, port: u16, from: Instant) -> Option<u64> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let mut tls = connector.connect(SERVER_NAME, tcp).ok()?;
    let handshake = from.elapsed().as_micros() as u64;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut buf = Vec::new();
    let _ = tls.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200").then_some(handshake)
}

/// What a run of the bench's own client did.
pub struct Run {
    pub done: u64,
    pub errors: u64,
    pub secs: f64,
    /// Handshake latencies, µs, sorted: from the start of the request
    /// (closed loop) or from its scheduled time (open loop).
    pub latencies: Vec<u64>,
    /// Open loop: requests that started more than 1 ms after their
    /// scheduled time (every worker was busy).
    pub late: u64,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.secs.max(1e-9)
    }

    pub fn pct(&self, p: f64) -> u64 {
        crate::measure::percentile(&self.latencies, p)
    }
}

/// `threads` clients, each making requests back to back for `dur`.
pub fn closed_loop(target: &Target, threads: usize, dur: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, errors, connector, port) = (
                stop.clone(),
                errors.clone(),
                target.connector(),
                target.port,
            );
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match request(&connector, port, Instant::now()) {
                        Some(us) => lat.push(us),
                        None => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    finish(handles, started, &errors, 0)
}

fn finish(
    handles: Vec<std::thread::JoinHandle<Vec<u64>>>,
    started: Instant,
    errors: &AtomicU64,
    late: u64,
) -> Run {
    let mut latencies: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect();
    latencies.sort_unstable();
    Run {
        done: latencies.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        secs: started.elapsed().as_secs_f64(),
        latencies,
        late,
    }
}

/// Open loop: request `i` is due at `start + i / rate`, whatever the
/// earlier ones did; its latency counts from that due time, so a stall
/// delays (and is charged to) every request due during it instead of
/// silently lowering the offered load (no coordinated omission). `workers`
/// threads take the next due request; enough of them are idle at half
/// the capacity that a request starts on time unless the machine stalls.
pub fn open_loop(target: &Target, rate: f64, dur: Duration, workers: usize) -> Run {
    let total = (rate * dur.as_secs_f64()).ceil() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let late = Arc::new(AtomicU64::new(0));
    let start = Instant::now() + Duration::from_millis(20);
    let handles: Vec<_> = (0..workers)
        .map(|_| {
            let (next, errors, late, connector, port) = (
                next.clone(),
                errors.clone(),
                late.clone(),
                target.connector(),
                target.port,
            );
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return lat;
                    }
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else if now - due > Duration::from_millis(1) {
                        late.fetch_add(1, Ordering::Relaxed);
                    }
                    match request(&connector, port, due) {
                        Some(us) => lat.push(us),
                        None => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    let mut run = finish(handles, start, &errors, 0);
    run.late = late.load(Ordering::Relaxed);
    run
}

/// A run of a load generator that is not ours.
pub struct ToolRun {
    pub done: u64,
    pub failed: u64,
    pub secs: f64,
}

impl ToolRun {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.secs.max(1e-9)
    }
}

/// `h2load --h1 -c clients -n requests`: nginx closes every connection
/// after its response, so h2load reconnects (full handshake, no tickets)
/// for every request. (Its timing mode, `-D`, hangs at the end when the
/// server closes connections: requests are counted instead.)
pub fn h2load(target: &Target, clients: usize, requests: u64) -> ToolRun {
    let t = Instant::now();
    let out = Command::new("timeout")
        .args(["300", "h2load", "--h1"])
        .arg(format!("-c{clients}"))
        .arg(format!("-n{}", requests.max(clients as u64)))
        .arg(format!("https://127.0.0.1:{}/", target.port))
        .stdin(Stdio::null())
        .output()
        .expect("running h2load (nghttp2-client)");
    let secs = t.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    // "finished in 5.59s, 715.61 req/s, 0B/s"
    let finished = text
        .lines()
        .find_map(|l| l.strip_prefix("finished in "))
        .and_then(|l| parse_duration(l.split(',').next()?));
    // "requests: 4000 total, 4000 started, 4000 done, 4000 succeeded, 0 failed, ..."
    let count = |what: &str| {
        text.lines()
            .find(|l| l.starts_with("requests:"))
            .and_then(|l| {
                l.split(',')
                    .find(|f| f.trim().ends_with(what))?
                    .split_whitespace()
                    .find_map(|w| w.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    if finished.is_none() {
        eprintln!(
            "bench: h2load printed no result ({}):\n{text}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ToolRun {
        done: count("succeeded"),
        failed: count("failed") + count("errored"),
        secs: finished.unwrap_or(secs),
    }
}

/// h2load's durations: `5.59s`, `700.12ms`, `950us`.
fn parse_duration(text: &str) -> Option<f64> {
    let text = text.trim();
    let (number, scale) = if let Some(v) = text.strip_suffix("ms") {
        (v, 1e-3)
    } else if let Some(v) = text.strip_suffix("us") {
        (v, 1e-6)
    } else {
        (text.strip_suffix('s')?, 1.0)
    };
    Some(number.parse::<f64>().ok()? * scale)
}

/// `procs` parallel `openssl s_time -new -www /` (one connection at a time
/// each) for `dur`; connections counted from their output, time from the
/// wall clock (s_time prints whole seconds).
pub fn s_time(target: &Target, procs: usize, dur: Duration, ca_file: &Path) -> ToolRun {
    let secs_arg = dur.as_secs().max(1).to_string();
    let version = match target.tls {
        Tls::V13 => "-tls1_3",
        Tls::V12 => "-tls1_2",
    };
    let t = Instant::now();
    let children: Vec<_> = (0..procs)
        .map(|_| {
            Command::new("openssl")
                .args(["s_time", "-new", "-www", "/", version, "-time", &secs_arg])
                .arg("-connect")
                .arg(format!("127.0.0.1:{}", target.port))
                .arg("-CAfile")
                .arg(ca_file)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("running openssl s_time")
        })
        .collect();
    let mut done = 0;
    let mut failed = 0;
    for child in children {
        let out = child
            .wait_with_output()
            .expect("waiting for openssl s_time");
        let text = String::from_utf8_lossy(&out.stdout);
        // "1239 connections in 4 real seconds, 145 bytes read per connection"
        let n = text
            .lines()
            .find(|l| l.contains("real seconds"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok());
        match n {
            Some(n) => done += n,
            None => failed += 1,
        }
    }
    ToolRun {
        done,
        failed,
        secs: t.elapsed().as_secs_f64(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn h2load_durations() {
        assert_eq!(super::parse_duration("5.5s"), Some(5.5));
        assert!((super::parse_duration("700ms").unwrap_or(0.0) - 0.7).abs() < 1e-9);
        assert_eq!(super::parse_duration("1m2s"), None);
    }
}
