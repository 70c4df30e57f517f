//! One tracked connection while its handshake is assembled.

use std::net::IpAddr;

use agent_ebpf::{
    Direction, SSL_FLAG_ERRORS_TRUNCATED, SSL_FLAG_HANDSHAKE_DONE_BEFORE, SSL_FLAG_VERIFY_RESULT,
    SockStateEvent, SslEvent, SslFunc,
};
use chrono::{DateTime, Utc};

use crate::capture::events::{DataRecord, endpoint_addr};
use crate::evidence::openssl::{
    OpensslErrorFact, OpensslFacts, SslCallFact, VerifyResultFact, reason_text, verify_text,
};
use crate::evidence::process::ProcessInfo;
use crate::evidence::sockets::{SocketFacts, TcpStateFact, errno_name, tcp_state_name};
use crate::evidence::wire::{Chunk, WireAssembler, WireProgress};
use crate::outcome::Role;

use super::WallClock;

use agent_ebpf::tcp_state::{
    CLOSE as TCP_CLOSE, CLOSE_WAIT as TCP_CLOSE_WAIT, ESTABLISHED as TCP_ESTABLISHED,
    FIN_WAIT1 as TCP_FIN_WAIT1, SYN_SENT as TCP_SYN_SENT,
};

/// A SYN_SENT -> CLOSE faster than this was refused (RST); slower, it timed out.
const REFUSED_WITHIN_NS: u64 = 3_000_000_000;

/// Why a connection's outcome was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A failure was seen; wait briefly for the alert and close that follow.
    Failed,
    /// The handshake completed; watch a little longer for a late rejection
    /// (a TLS 1.3 server refuses a client certificate after the client's
    /// handshake returned).
    Completed,
}

pub struct Conn {
    pub tgid: u32,
    pub fd: i32,
    pub role: Role,
    pub sk: u64,
    pub start_ns: u64,
    pub last_ns: u64,
    pub local: Option<(IpAddr, u16)>,
    pub remote: Option<(IpAddr, u16)>,
    pub process: ProcessInfo,
    pub wire: WireAssembler,
    pub openssl: OpensslFacts,
    pub socket: SocketFacts,
    pub ssl_seen: bool,
    pub ssl_failed: bool,
    pub ssl_completed: bool,
    pub connect_failed: bool,
    pub established: bool,
    /// The local process closed the socket (or exited).
    pub closed: bool,
    /// When the socket reached TCP CLOSE (reset, or over): nothing more
    /// will come but what its process still reports (OpenSSL's verdict).
    pub socket_over_at: Option<u64>,
    pub decision: Option<(Decision, u64)>,
    /// Already in the tuple index (both endpoints known).
    pub indexed: bool,
}

impl Conn {
    pub fn new(tgid: u32, fd: i32, role: Role, sk: u64, ts: u64, process: ProcessInfo) -> Conn {
        Conn {
            tgid,
            fd,
            role,
            sk,
            start_ns: ts,
            last_ns: ts,
            local: None,
            remote: None,
            process,
            wire: WireAssembler::new(),
            openssl: OpensslFacts::default(),
            socket: SocketFacts::default(),
            ssl_seen: false,
            ssl_failed: false,
            ssl_completed: false,
            connect_failed: false,
            established: false,
            closed: false,
            socket_over_at: None,
            decision: None,
            indexed: false,
        }
    }

    fn decide(&mut self, decision: Decision, ts: u64) {
        match (self.decision, decision) {
            // A failure overrides an earlier completion; nothing overrides a failure.
            (None, _) | (Some((Decision::Completed, _)), Decision::Failed) => {
                self.decision = Some((decision, ts));
            }
            _ => {}
        }
    }

    pub fn on_state(&mut self, ev: &SockStateEvent, clock: &WallClock) {
        let ts = ev.header.ts_ns;
        self.last_ns = self.last_ns.max(ts);
        if let Some(local) = endpoint_addr(&ev.local).filter(|(_, port)| *port != 0) {
            self.local.get_or_insert(local);
        }
        if let Some(remote) = endpoint_addr(&ev.remote).filter(|(_, port)| *port != 0) {
            self.remote.get_or_insert(remote);
        }
        self.socket.tcp_states.push(TcpStateFact {
            time: clock.wall(ts),
            from: tcp_state_name(ev.old_state).to_string(),
            to: tcp_state_name(ev.new_state).to_string(),
        });
        if ev.new_state == TCP_CLOSE {
            self.socket_over_at.get_or_insert(ts);
        }
        match (ev.old_state, ev.new_state) {
            (_, TCP_ESTABLISHED) => self.established = true,
            (TCP_SYN_SENT, TCP_CLOSE) => {
                // A connect that never established: answered by a reset
                // soon, or given up on by the kernel or (closed first) by
                // its process: no answer in the time allowed.
                let refused = !self.closed && ts.saturating_sub(self.start_ns) < REFUSED_WITHIN_NS;
                let errno = if refused {
                    libc::ECONNREFUSED
                } else {
                    libc::ETIMEDOUT
                };
                self.fail_connect(errno, ts);
            }
            (TCP_ESTABLISHED, TCP_CLOSE_WAIT) => {
                self.socket
                    .closed_by
                    .get_or_insert_with(|| "peer".to_string());
            }
            (TCP_ESTABLISHED, TCP_FIN_WAIT1) => {
                self.socket
                    .closed_by
                    .get_or_insert_with(|| "local".to_string());
            }
            (TCP_ESTABLISHED, TCP_CLOSE) if !self.closed => {
                // Straight to CLOSE without FIN exchange: the peer reset it.
                self.socket.reset_by_peer = true;
                self.socket
                    .closed_by
                    .get_or_insert_with(|| "peer".to_string());
            }
            _ => {}
        }
    }

    pub fn fail_connect(&mut self, errno: i32, ts: u64) {
        self.connect_failed = true;
        self.socket.connect_errno = Some(errno);
        self.socket.connect_error = Some(errno_name(errno));
        self.decide(Decision::Failed, ts);
    }

    pub fn on_data(&mut self, d: &DataRecord, clock: &WallClock) {
        let ts = d.header.ts_ns;
        self.last_ns = self.last_ns.max(ts);
        let sender = match d.direction {
            Direction::Egress => {
                self.socket.bytes_sent += u64::from(d.syscall_len);
                self.role
            }
            Direction::Ingress => {
                self.socket.bytes_received += u64::from(d.syscall_len);
                self.role.peer()
            }
        };
        self.wire.push(Chunk {
            time: clock.wall(ts),
            sender,
            stream_offset: d.stream_offset,
            flags: d.flags,
            bytes: d.bytes,
        });
        match self.wire.progress() {
            WireProgress::Failed => self.decide(Decision::Failed, ts),
            WireProgress::Completed => self.decide(Decision::Completed, ts),
            WireProgress::InProgress => {}
        }
    }

    pub fn on_ssl(&mut self, ev: &SslEvent, clock: &WallClock) {
        let ts = ev.header.ts_ns;
        self.last_ns = self.last_ns.max(ts);
        let time = clock.wall(ts);
        let func = SslFunc::from_u8(ev.func);
        let outside = func == Some(SslFunc::Outside);
        if !outside {
            self.ssl_seen = true;
            self.openssl.calls.push(SslCallFact {
                time,
                function: func.map(function_name).unwrap_or("SSL_?").to_string(),
                ret: ev.ret,
            });
        }
        let count = usize::from(ev.error_count).min(ev.errors.len());
        for e in &ev.errors[..count] {
            let text = reason_text(e.lib, e.reason);
            self.openssl.reasons.push(text.clone());
            self.openssl.errors.push(OpensslErrorFact {
                time,
                lib: e.lib,
                reason: e.reason,
                text,
                // Not captured: the only source, a uprobe on OpenSSL 3's
                // ERR_set_debug, would fire ~9 times in every successful
                // handshake (OpenSSL 3.0's decoders raise and clear errors),
                // a trap each. The reason code names the cause.
                function: None,
                line: (e.line != 0).then_some(e.line),
            });
        }
        if ev.flags & SSL_FLAG_ERRORS_TRUNCATED != 0 {
            self.openssl
                .reasons
                .push("(more OpenSSL errors were raised than the agent keeps)".to_string());
        }
        if ev.flags & SSL_FLAG_VERIFY_RESULT != 0 {
            // Keep the first failing verdict.
            let keep = self
                .openssl
                .verify_result
                .as_ref()
                .is_none_or(|v| v.code == 0);
            if keep {
                self.openssl.verify_result = Some(VerifyResultFact {
                    code: ev.verify_result,
                    text: verify_text(ev.verify_result),
                });
            }
        }
        let done_before = ev.flags & SSL_FLAG_HANDSHAKE_DONE_BEFORE != 0;
        // Raised where no handshake call was followed (inside SSL_read or
        // SSL_shutdown) or after the handshake returned, once the server
        // had answered the client's Finished: the handshake was over for
        // both ends, and the error is the connection's (`openssl s_server
        // -www` reading EOF from a gnutls-cli that left without
        // close_notify). Kept as evidence, not a handshake failure.
        let after_handshake = (outside || done_before) && self.wire.server_answered();
        let handshake_errors = count > 0 && !after_handshake;
        if ev.ret <= 0 && handshake_errors {
            self.ssl_failed = true;
            self.decide(Decision::Failed, ts);
        } else if ev.ret > 0 && !done_before {
            self.ssl_completed = true;
            self.decide(Decision::Completed, ts);
        } else if done_before && handshake_errors {
            // Rejected after the local handshake returned (TLS 1.3 mTLS).
            self.ssl_failed = true;
            self.decide(Decision::Failed, ts);
        }
    }

    /// A client whose connect is still under way (no answer to its SYN yet).
    pub fn connecting(&self) -> bool {
        self.role == Role::Client
            && !self.established
            && !self.closed
            && self.decision.is_none()
            && self.socket_over_at.is_none()
    }

    /// When the connection started, in wall-clock time.
    pub fn wall_start(&self, clock: &WallClock) -> DateTime<Utc> {
        clock.wall(self.start_ns)
    }
}

pub fn function_name(func: SslFunc) -> &'static str {
    match func {
        SslFunc::DoHandshake => "SSL_do_handshake",
        SslFunc::Connect => "SSL_connect",
        SslFunc::Accept => "SSL_accept",
        SslFunc::Outside => "(raised outside a followed call)",
    }
}

#[cfg(test)]
mod tests {
    use agent_ebpf::EventHeader;

    use super::*;

    const TLS13_OK: &str = include_str!("../evidence/testdata/wire/tls13_ok.txt");
    const TLS13_MTLS_NO_CERT: &str =
        include_str!("../evidence/testdata/wire/tls13_mtls_no_client_cert.txt");

    /// A server-side connection fed a recorded handshake (`<c|s> <seconds>
    /// <hex>` lines), each line one syscall of the server.
    fn server_after(fixture: &str) -> Conn {
        let clock = WallClock::now();
        let mut conn = Conn::new(7, 9, Role::Server, 0x5a, 1, ProcessInfo::default());
        let mut offsets = [0u32; 2];
        for (i, line) in fixture.lines().filter(|l| !l.starts_with('#')).enumerate() {
            let mut parts = line.split(' ');
            let (tag, _, hex) = (parts.next(), parts.next(), parts.next());
            let bytes = hex::decode(hex.unwrap_or_default()).unwrap();
            let (direction, slot) = match tag {
                Some("c") => (Direction::Ingress, 0),
                _ => (Direction::Egress, 1),
            };
            conn.on_data(
                &DataRecord {
                    header: header(10 + i as u64),
                    fd: 9,
                    direction,
                    flags: 0,
                    syscall: 0,
                    stream_offset: offsets[slot],
                    syscall_len: bytes.len() as u32,
                    bytes: &bytes,
                },
                &clock,
            );
            offsets[slot] += bytes.len() as u32;
        }
        conn
    }

    fn header(ts_ns: u64) -> EventHeader {
        EventHeader {
            kind: 0,
            _pad: 0,
            ts_ns,
            tid: 7,
            tgid: 7,
        }
    }

    /// OpenSSL's "unexpected eof while reading", raised where no call is
    /// followed (`openssl s_server -www` reads through a BIO).
    fn eof_outside() -> SslEvent {
        crate::assembly::tests::ssl_error_outside(7, 7, 1_000, 294)
    }

    #[test]
    fn an_error_after_the_server_answered_the_clients_finished_is_no_handshake_failure() {
        // s_server -www sent its session tickets after the client's
        // Finished, then read EOF from a client that left without
        // close_notify (gnutls-cli).
        let mut conn = server_after(TLS13_OK);
        assert_eq!(conn.decision.map(|d| d.0), Some(Decision::Completed));
        conn.on_ssl(&eof_outside(), &WallClock::now());
        assert!(!conn.ssl_failed);
        assert_eq!(conn.decision.map(|d| d.0), Some(Decision::Completed));
        assert_eq!(conn.openssl.errors.len(), 1, "kept as evidence");
    }

    #[test]
    fn an_error_after_a_tls13_client_certificate_was_refused_still_fails() {
        // The server's certificate_required follows the client's Finished:
        // no answer, so an error raised outside a followed call is the
        // handshake's.
        let mut conn = server_after(TLS13_MTLS_NO_CERT);
        conn.on_ssl(&eof_outside(), &WallClock::now());
        assert!(conn.ssl_failed);
        assert_eq!(conn.decision.map(|d| d.0), Some(Decision::Failed));
    }
}
