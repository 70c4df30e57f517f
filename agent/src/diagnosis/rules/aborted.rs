//! handshake-aborted: TCP connected (or tried to), then the handshake
//! stalled, or a side closed or reset before it finished. What makes it
//! precise is the server's side of the story: a listener whose accept queue
//! is full (the kernel drops new SYNs and leaves queued connections
//! unanswered), ListenOverflows rising over the attempt, a listening
//! process at its descriptor limit (accept fails with EMFILE) or stopped,
//! or CPU pressure — each with its own fix.

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::openssl::reason;
use crate::outcome::Role;

use super::connection::{accepts, address, listens_on_port};
use super::headline;

pub fn handshake_aborted(f: &Facts) -> Option<Diagnosis> {
    let socket = &f.outcome.socket;
    let load = LoadSigns::of(f);
    if let Some(errno) = socket.connect_errno {
        return connect_never_completed(f, errno, load);
    }
    let connected = socket.tcp_states.iter().any(|s| s.to == "ESTABLISHED")
        || socket.bytes_sent > 0
        || socket.bytes_received > 0
        || f.client_hello_seen();
    // An alert or a non-TLS peer explains the end better than "aborted".
    if !connected || f.outcome.tls.non_tls.is_some() || !f.alerts().is_empty() {
        return None;
    }
    let eof = f.ssl_error(&[reason::UNEXPECTED_EOF_WHILE_READING]);
    let ended =
        socket.reset_by_peer || socket.closed_by.is_some() || socket.stalled || eof.is_some();
    if !ended || f.handshake_completed() {
        return None;
    }
    let before_server_hello = !f.server_hello_seen();

    let peer = f.role().peer().as_str();
    let how = if socket.reset_by_peer {
        format!("the {peer} reset the connection")
    } else if socket.stalled {
        "the handshake stalled".to_string()
    } else {
        match socket.closed_by.as_deref() {
            Some("local") => format!("the {} closed the connection", f.role().as_str()),
            _ => format!("the {peer} closed the connection"),
        }
    };
    let mut evidence = vec![Evidence::new(
        Source::Socket,
        format!(
            "TCP connected; then {how} ({} bytes sent, {} received)",
            socket.bytes_sent, socket.bytes_received
        ),
    )];
    evidence.extend(eof.map(|e| f.ssl_error_evidence(e)));
    evidence.extend(abort_wire_evidence(f, before_server_hello));
    let load = load.filter(|_| before_server_hello && !left_without_waiting(f));
    if let Some(load) = &load {
        evidence.extend(load.evidence.iter().cloned());
    }
    let confidence = match (before_server_hello, &load) {
        (true, Some(load)) => load.confidence,
        (true, None) => Confidence::Medium,
        (false, _) => Confidence::Low,
    };
    let stage = if before_server_hello {
        "before the ServerHello"
    } else {
        "before the handshake finished"
    };
    let because = load
        .as_ref()
        .map(|l| format!(": {}", l.headline))
        .unwrap_or_default();
    let summary = format!(
        "{}: TCP connected, then {how} {stage}{because}",
        headline(f)
    );
    let (fix, fix_location) = match &load {
        Some(load) => (load.fix.clone(), load.fix_location.clone()),
        None if socket.stalled => (
            format!(
                "{} accepted TCP but never completed the handshake: check that the process is a TLS server and not overloaded (CPU, file descriptors), and that no middlebox drops the ClientHello (`openssl s_client -connect {}`).",
                f.target(),
                f.connect_target()
            ),
            None,
        ),
        None => (
            format!(
                "Read {}'s error log at the failure time (nginx logs handshake errors only at `info`), and check for a firewall, IPS or load balancer between the two that resets TLS connections.",
                f.process(Role::Server)
            ),
            None,
        ),
    };
    Some(
        Diagnosis::new(Cause::HandshakeAborted, confidence, summary)
            .with_evidence(evidence)
            .fix(fix)
            .fix_at(fix_location),
    )
}

/// This end hung up on its own within a second of connecting, with nothing
/// stalled or reset: it waited for nothing, so no load on the server
/// explains it (a client that sends its ClientHello and leaves).
fn left_without_waiting(f: &Facts) -> bool {
    let socket = &f.outcome.socket;
    socket.closed_by.as_deref() == Some("local")
        && !socket.stalled
        && !socket.reset_by_peer
        && f.outcome.end_time - f.outcome.time < chrono::TimeDelta::seconds(1)
}

/// A connect that never completed (timed out, given up, or reset) to a
/// local listener that accepts the address but is under load: the kernel
/// dropped the SYN because the accept queue was full (or reset it, with
/// tcp_abort_on_overflow). Without load signs, nothing here says why.
fn connect_never_completed(f: &Facts, errno: i32, load: Option<LoadSigns>) -> Option<Diagnosis> {
    let load = load?;
    let dest = f.outcome.server.ip;
    let reaches = f
        .host
        .listeners_on_port
        .iter()
        .any(|l| dest.is_none_or(|d| accepts(l.addr, d)));
    if !reaches {
        return None;
    }
    let to = dest
        .map(|ip| address(ip, f.server_port()))
        .unwrap_or_else(|| f.target());
    let how = match errno {
        libc::ECONNREFUSED => "was reset (the kernel refuses connections a full accept queue cannot take when tcp_abort_on_overflow is set, or the client gave up within seconds)".to_string(),
        libc::ETIMEDOUT => "timed out: no SYN-ACK came back".to_string(),
        e => format!("did not complete ({}): the client gave up waiting", crate::evidence::sockets::errno_name(e)),
    };
    let mut evidence = vec![Evidence::new(
        Source::Socket,
        format!("the connect to {to} {how}"),
    )];
    evidence.extend(load.evidence.iter().cloned());
    let summary = format!(
        "{}: the connect never completed: {}",
        headline(f),
        load.headline
    );
    Some(
        Diagnosis::new(Cause::HandshakeAborted, load.confidence, summary)
            .with_evidence(evidence)
            .fix(load.fix)
            .fix_at(load.fix_location),
    )
}

/// Signs that the listener could not take or answer the connection: its
/// accept queue full, the kernel's listen-overflow counters rising over the
/// attempt, its processes at their descriptor limit or stopped, CPU
/// pressure.
struct LoadSigns {
    evidence: Vec<Evidence>,
    /// "its accept queue is full (129/128)", for the summary.
    headline: String,
    fix: String,
    fix_location: Option<String>,
    confidence: Confidence,
}

/// CPU pressure (percent of the last 10 s some task waited for a CPU) from
/// which a server counts as starved.
const CPU_STARVED_PERCENT: u32 = 50;

impl LoadSigns {
    fn of(f: &Facts) -> Option<LoadSigns> {
        let mut evidence = Vec::new();
        let mut causes: Vec<(&'static str, String)> = Vec::new();
        let dest = f.outcome.server.ip;
        let listener = f
            .host
            .listeners_on_port
            .iter()
            .find(|l| dest.is_none_or(|d| accepts(l.addr, d)));
        let name = |l: &crate::evidence::listeners::Listener| match (&l.comm, l.pid) {
            (Some(c), Some(p)) => format!("{c}[{p}]"),
            (Some(c), None) => c.clone(),
            _ => "the listener".to_string(),
        };
        if let Some(l) = listener.filter(|l| l.backlog > 0 && l.accept_queue >= l.backlog) {
            evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the accept queue of {} on {} is full ({}/{}; `ss -ltn` Recv-Q/Send-Q): connections wait there unanswered and new SYNs are dropped",
                    name(l),
                    address(l.addr, Some(l.port)),
                    l.accept_queue,
                    l.backlog
                ),
            ));
            causes.push((
                "queue",
                format!(
                    "its accept queue is full ({}/{})",
                    l.accept_queue, l.backlog
                ),
            ));
        }
        if let Some(rise) = &f.host.listen_overflow_rise {
            evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "kernel TcpExt counters rose during the attempt: ListenOverflows +{}, ListenDrops +{} (`nstat -az TcpExtListenOverflows`)",
                    rise.listen_overflows, rise.listen_drops
                ),
            ));
        }
        for p in &f.host.listener_load {
            if p.at_fd_limit() {
                evidence.push(Evidence::new(
                    Source::Host,
                    format!(
                        "{}[{}] has {} file descriptors open, its limit is {} (`ulimit -n`, /proc/{}/limits): accept() fails with EMFILE",
                        p.comm,
                        p.pid,
                        p.open_fds.unwrap_or(0),
                        p.fd_limit.unwrap_or(0),
                        p.pid
                    ),
                ));
                causes.push((
                    "fd",
                    format!(
                        "{}[{}] is at its open-file limit ({})",
                        p.comm,
                        p.pid,
                        p.fd_limit.unwrap_or(0)
                    ),
                ));
            }
            if p.stopped() {
                evidence.push(Evidence::new(
                    Source::Host,
                    format!(
                        "{}[{}] is stopped (state {}): it accepts and answers nothing",
                        p.comm, p.pid, p.state
                    ),
                ));
                causes.push(("stopped", format!("{}[{}] is stopped", p.comm, p.pid)));
            }
            if let Some(pressure) = p.cpu_pressure.filter(|&v| v >= CPU_STARVED_PERCENT) {
                evidence.push(Evidence::new(
                    Source::Host,
                    format!(
                        "{}[{}]'s cgroup waited for a CPU {pressure}% of the last 10 s (cpu.pressure)",
                        p.comm, p.pid
                    ),
                ));
                causes.push(("cpu", format!("{}[{}] is starved of CPU", p.comm, p.pid)));
            }
        }
        // The overflow counters are the host's, not this listener's: a sign
        // of the listener's own process (its descriptor limit) goes first.
        if f.host.listen_overflow_rise.is_some() && causes.is_empty() {
            causes.push((
                "queue",
                "a listen queue on this host overflowed".to_string(),
            ));
        }
        if let Some(pressure) = f.host.cpu_pressure.filter(|&v| v >= CPU_STARVED_PERCENT)
            && !f.host.listener_load.is_empty()
        {
            evidence.push(Evidence::new(
                Source::Host,
                format!("tasks on this host waited for a CPU {pressure}% of the last 10 s (/proc/pressure/cpu)"),
            ));
            if causes.is_empty() {
                causes.push(("cpu", "the host is short of CPU".to_string()));
            }
        }
        let (kind, headline) = causes.first().cloned()?;
        let confidence = if kind == "cpu" {
            Confidence::Medium
        } else {
            Confidence::High
        };
        let listen = listens_on_port(f);
        let server = listener
            .map(name)
            .unwrap_or_else(|| f.process(Role::Server));
        let (fix, fix_location) = load_fix(kind, &server, &listen);
        Some(LoadSigns {
            evidence,
            headline,
            fix,
            fix_location,
            confidence,
        })
    }
}

/// What the wire shows of an aborted handshake: how far it got, and
/// encrypted records that have the length of an alert.
fn abort_wire_evidence(f: &Facts, before_server_hello: bool) -> Vec<Evidence> {
    let mut evidence = Vec::new();
    if before_server_hello {
        evidence.push(Evidence::new(
            Source::Wire,
            if f.client_hello_seen() {
                "the client sent its ClientHello; no ServerHello came back"
            } else {
                "no TLS handshake message was seen"
            },
        ));
    } else {
        evidence.push(Evidence::new(
            Source::Wire,
            "a ServerHello was seen, but the handshake never finished and no alert was visible in clear",
        ));
        let encrypted_alerts = f
            .outcome
            .tls
            .encrypted_records
            .iter()
            .filter(|r| r.probable_alert)
            .count();
        if encrypted_alerts > 0 {
            evidence.push(Evidence::new(
                Source::Wire,
                format!("{encrypted_alerts} encrypted record(s) have the length of an alert: the reason was sent encrypted"),
            ));
        }
    }
    evidence
}

/// The fix for a listener's load sign: what to raise or resume, and where
/// (the `listen` directive, for a full queue).
fn load_fix(
    kind: &str,
    server: &str,
    listen: &[(crate::evidence::server_config::ServerKind, String, String)],
) -> (String, Option<String>) {
    match kind {
        "fd" => (
            format!(
                "{server} ran out of file descriptors: raise its limit (systemd `LimitNOFILE=`, `ulimit -n`, nginx `worker_rlimit_nofile`) or find what holds them (`ls /proc/PID/fd | wc -l`), then restart it."
            ),
            None,
        ),
        "stopped" => (
            format!(
                "{server} is stopped: resume it (`kill -CONT PID`) or detach the debugger holding it."
            ),
            None,
        ),
        "cpu" => (
            format!(
                "{server} does not get enough CPU to accept and answer handshakes: give it more (cgroup `cpu.max`, container CPU limits), add workers, or move load off this host."
            ),
            None,
        ),
        _ => (
            format!(
                "{server} does not accept connections as fast as they arrive: raise its listen backlog ({}) together with net.core.somaxconn and net.ipv4.tcp_max_syn_backlog, add workers (nginx `worker_processes`, `worker_connections`), and check that it is not blocked.",
                listen
                    .first()
                    .map(|(_, text, location)| format!("`{text} backlog=4096` at {location}"))
                    .unwrap_or_else(|| "the backlog argument of listen()".to_string())
            ),
            listen.first().map(|(_, _, l)| l.clone()),
        ),
    }
}
