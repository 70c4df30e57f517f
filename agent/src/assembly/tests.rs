use std::sync::Arc;

use agent_ebpf::{AF_INET, ConnEvent, Endpoint as Ep, EventHeader, TASK_COMM_LEN, tcp_state};

use super::*;

const CURL: u32 = 4_000_001;

fn header(kind: u32, ts_ns: u64) -> EventHeader {
    EventHeader {
        kind,
        _pad: 0,
        ts_ns,
        tid: CURL,
        tgid: CURL,
    }
}

fn v4(addr: [u8; 4], port: u16) -> Ep {
    let mut bytes = [0u8; 16];
    bytes[..4].copy_from_slice(&addr);
    Ep {
        family: AF_INET,
        port,
        addr: bytes,
    }
}

fn comm(name: &str) -> [u8; TASK_COMM_LEN] {
    let mut c = [0u8; TASK_COMM_LEN];
    c[..name.len()].copy_from_slice(name.as_bytes());
    c
}

/// A blocking `connect` to 127.0.0.1:port that returned `ret`.
fn connect(port: u16, ret: i32) -> KernelEvent<'static> {
    KernelEvent::Connect(ConnEvent {
        header: header(1, 1_000),
        fd: 5,
        ret,
        sk: 0xffff_0001,
        local: Ep::default(),
        remote: v4([127, 0, 0, 1], port),
        listen_fd: -1,
        _pad: 0,
        comm: comm("curl"),
    })
}

fn assembler(plain: Arc<PlainPorts>) -> Assembler {
    Assembler::new(AssemblyConfig::default(), TlsPorts::default(), plain)
}

#[test]
fn a_refused_connect_to_an_unknown_port_is_left_to_host_state() {
    let plain = Arc::new(PlainPorts::default());
    let mut a = assembler(plain.clone());
    let clock = WallClock::now();
    let mut out = Vec::new();
    // A port only a config (written at any time) may name as TLS.
    a.on_event(&connect(38_443, -libc::ECONNREFUSED), &clock, &mut out);
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert!(o.tentative, "host state decides whether 38443 serves TLS");
    assert_eq!(o.socket.connect_error.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(o.server.port, Some(38_443));
    assert_eq!(a.stats().tentative, 1);

    // Once host state said the port is plain, its refusals are counted.
    plain.mark(38_443);
    out.clear();
    a.on_event(&connect(38_443, -libc::ECONNREFUSED), &clock, &mut out);
    assert!(out.is_empty());
    assert_eq!(a.stats().connect_failures_not_tls, 1);

    // A well-known TLS port needs no confirmation.
    a.on_event(&connect(443, -libc::ECONNREFUSED), &clock, &mut out);
    assert_eq!(out.len(), 1);
    assert!(!out[0].tentative);
}

fn state(
    owner_fd: i32,
    owner_tgid: u32,
    old: u32,
    new: u32,
    local_port: u16,
    ts: u64,
) -> KernelEvent<'static> {
    KernelEvent::SockState(SockStateEvent {
        header: header(3, ts),
        sk: 0xffff_0001,
        owner_tgid,
        owner_fd,
        old_state: old,
        new_state: new,
        local: v4([127, 0, 0, 1], local_port),
        remote: v4([127, 0, 0, 1], 443),
    })
}

#[test]
fn states_a_previous_socket_left_at_the_same_address_are_not_the_new_ones() {
    // Seen end to end: a closed socket's last states (CLOSE_WAIT ->
    // LAST_ACK -> CLOSE) arrived after its close was concluded and were
    // kept by socket address; curl's new socket got that address and
    // inherited them -- with the old local port, so its peer could not
    // be matched to nginx's side of the connection.
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    for (old, new) in [(8, 9), (9, 7)] {
        a.on_event(&state(9, 77, old, new, 42_931, 500), &clock, &mut out);
    }
    // More leftovers than the per-address bound keeps.
    for fd in 10..20 {
        a.on_event(&state(fd, 78, 1, 7, 42_932, 550), &clock, &mut out);
    }
    // The same owner's earlier life at this address, then this connect's
    // SYN_SENT -> CLOSE (refused inside a blocking connect).
    a.on_event(&state(5, CURL, 1, 7, 40_000, 600), &clock, &mut out);
    a.on_event(&state(5, CURL, 2, 7, 36_864, 900), &clock, &mut out);
    a.on_event(&connect(443, -libc::ECONNREFUSED), &clock, &mut out);
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(o.client.port, Some(36_864), "{o:#?}");
    let states: Vec<(&str, &str)> = o
        .socket
        .tcp_states
        .iter()
        .map(|s| (s.from.as_str(), s.to.as_str()))
        .collect();
    assert_eq!(states, [("SYN_SENT", "CLOSE")]);
}

#[test]
fn a_nonblocking_connect_refused_by_a_reset_is_left_to_host_state() {
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(38_444, -EINPROGRESS), &clock, &mut out);
    assert!(out.is_empty());
    // SYN_SENT -> CLOSE: the SYN was answered with a reset.
    a.on_event(
        &KernelEvent::SockState(SockStateEvent {
            header: header(3, 2_000),
            sk: 0xffff_0001,
            owner_tgid: CURL,
            owner_fd: 5,
            old_state: 2,
            new_state: 7,
            local: v4([127, 0, 0, 1], 51_000),
            remote: v4([127, 0, 0, 1], 38_444),
        }),
        &clock,
        &mut out,
    );
    a.on_event(
        &KernelEvent::Close(agent_ebpf::CloseEvent {
            header: header(5, 3_000),
            fd: 5,
            _pad: 0,
        }),
        &clock,
        &mut out,
    );
    a.tick(10_000_000_000, &clock, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert!(out[0].tentative);
    assert_eq!(out[0].socket.connect_errno, Some(libc::ECONNREFUSED));
}

/// A TCP state change of curl's socket (fd 5) to 127.0.0.1:443.
fn curl_state(old: u32, new: u32, ts: u64) -> KernelEvent<'static> {
    KernelEvent::SockState(SockStateEvent {
        header: header(3, ts),
        sk: 0xffff_0001,
        owner_tgid: CURL,
        owner_fd: 5,
        old_state: old,
        new_state: new,
        local: v4([127, 0, 0, 1], 51_000),
        remote: v4([127, 0, 0, 1], 443),
    })
}

#[test]
fn a_connect_its_process_gave_up_on_timed_out_rather_than_was_refused() {
    // The socket mechanism's order: the close inside close(2) comes
    // before the SYN_SENT -> CLOSE it caused, 200 ms after the SYN.
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
    a.on_event(&close(200_000_000), &clock, &mut out);
    a.on_event(
        &curl_state(tcp_state::SYN_SENT, tcp_state::CLOSE, 200_000_100),
        &clock,
        &mut out,
    );
    a.tick(1_000_000_000, &clock, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].socket.connect_errno, Some(libc::ETIMEDOUT));
}

#[test]
fn a_connect_without_an_answer_waits_for_the_kernel_to_give_up() {
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
    // Past the stall timeout: still connecting, not concluded.
    a.tick(30_000_000_000, &clock, &mut out);
    assert!(out.is_empty(), "{out:#?}");
    assert_eq!(a.open_connections(), 1);
    // The kernel's SYN retries end in CLOSE: timed out.
    a.on_event(
        &curl_state(tcp_state::SYN_SENT, tcp_state::CLOSE, 127_000_000_000),
        &clock,
        &mut out,
    );
    a.tick(128_000_000_000, &clock, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].socket.connect_errno, Some(libc::ETIMEDOUT));
    assert!(!out[0].socket.stalled);
}

#[test]
fn a_reset_connection_is_concluded_without_waiting_for_its_close() {
    // The socket mechanism sees no close(2) of a socket that is already
    // in CLOSE: the reset ends it.
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(443, -EINPROGRESS), &clock, &mut out);
    a.on_event(
        &curl_state(tcp_state::SYN_SENT, tcp_state::ESTABLISHED, 2_000),
        &clock,
        &mut out,
    );
    a.on_event(&client_hello(3_000), &clock, &mut out);
    a.on_event(
        &curl_state(tcp_state::ESTABLISHED, tcp_state::CLOSE, 4_000),
        &clock,
        &mut out,
    );
    a.tick(100_000_000, &clock, &mut out);
    assert!(out.is_empty(), "waits a moment for OpenSSL's own verdict");
    a.tick(1_000_000_000, &clock, &mut out);
    assert_eq!(out.len(), 1, "{out:#?}");
    let o = &out[0];
    assert_eq!(o.result, HandshakeResult::Failure);
    assert!(o.socket.reset_by_peer && !o.socket.stalled, "{o:#?}");
}

/// An error OpenSSL raised on `tid` outside a followed call (in
/// `SSL_read`, which is not probed): certificate verify failed.
fn outside_error(tid: u32, ts_ns: u64) -> KernelEvent<'static> {
    KernelEvent::Ssl(Box::new(ssl_error_outside(tid, CURL, ts_ns, 134)))
}

/// An SSL-library error `reason` that OpenSSL raised on thread `tid` of
/// `tgid` outside a followed call (shared with `conn`'s tests).
pub(super) fn ssl_error_outside(tid: u32, tgid: u32, ts_ns: u64, reason: u32) -> SslEvent {
    let none = agent_ebpf::SslError {
        lib: 0,
        reason: 0,
        line: 0,
        _pad: 0,
    };
    let mut errors = [none; agent_ebpf::MAX_SSL_ERRORS];
    errors[0] = agent_ebpf::SslError {
        lib: agent_ebpf::ERR_LIB_SSL,
        reason,
        line: 0,
        _pad: 0,
    };
    SslEvent {
        header: EventHeader {
            kind: 6,
            _pad: 0,
            ts_ns,
            tid,
            tgid,
        },
        ssl: 0,
        entry_ts_ns: ts_ns,
        fd: -1,
        ret: 0,
        func: SslFunc::Outside as u8,
        flags: 0,
        error_count: 1,
        _pad: 0,
        verify_result: 0,
        errors,
    }
}

#[test]
fn an_error_outside_a_followed_call_belongs_to_its_threads_connection() {
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(443, 0), &clock, &mut out);
    // The start of a ClientHello, written by curl's thread.
    a.on_event(
        &KernelEvent::Data(crate::capture::events::DataRecord {
            header: header(4, 2_000),
            fd: 5,
            direction: agent_ebpf::Direction::Egress,
            flags: 0,
            syscall: 0,
            stream_offset: 0,
            syscall_len: 5,
            bytes: &[0x16, 0x03, 0x01, 0x00, 0x40],
        }),
        &clock,
        &mut out,
    );
    // Another thread of the process, and a stale one, own nothing.
    a.on_event(&outside_error(CURL + 1, 3_000), &clock, &mut out);
    a.on_event(
        &outside_error(CURL, 3_000 + 5_000_000_000),
        &clock,
        &mut out,
    );
    assert_eq!(a.stats().openssl_outside_unattributed, 2);
    a.on_event(&outside_error(CURL, 4_000), &clock, &mut out);
    assert_eq!(a.stats().openssl_outside_attributed, 1);
    a.on_event(
        &KernelEvent::Close(agent_ebpf::CloseEvent {
            header: header(5, 5_000),
            fd: 5,
            _pad: 0,
        }),
        &clock,
        &mut out,
    );
    a.tick(10_000_000_000, &clock, &mut out);
    assert_eq!(out.len(), 1, "{:#?}", a.stats());
    let o = &out[0];
    assert_eq!(o.result, HandshakeResult::Failure, "{o:#?}");
    assert_eq!(o.openssl.errors.len(), 1);
    assert!(o.openssl.calls.is_empty(), "no followed call is invented");
}

/// A completed `SSL_connect` on curl's socket (fd 5).
fn handshake_done(ts_ns: u64) -> KernelEvent<'static> {
    let none = agent_ebpf::SslError {
        lib: 0,
        reason: 0,
        line: 0,
        _pad: 0,
    };
    KernelEvent::Ssl(Box::new(SslEvent {
        header: header(6, ts_ns),
        ssl: 0x5511,
        entry_ts_ns: ts_ns,
        fd: 5,
        ret: 1,
        func: SslFunc::Connect as u8,
        flags: 0,
        error_count: 0,
        _pad: 0,
        verify_result: 0,
        errors: [none; agent_ebpf::MAX_SSL_ERRORS],
    }))
}

fn close(ts_ns: u64) -> KernelEvent<'static> {
    KernelEvent::Close(agent_ebpf::CloseEvent {
        header: header(5, ts_ns),
        fd: 5,
        _pad: 0,
    })
}

fn client_hello_start(ts_ns: u64) -> KernelEvent<'static> {
    KernelEvent::Data(crate::capture::events::DataRecord {
        header: header(4, ts_ns),
        fd: 5,
        direction: agent_ebpf::Direction::Egress,
        flags: 0,
        syscall: 0,
        stream_offset: 0,
        syscall_len: 5,
        bytes: &[0x16, 0x03, 0x01, 0x00, 0x40],
    })
}

/// A whole (minimal) TLS 1.2 ClientHello record: one suite, no
/// extensions.
const MINIMAL_CLIENT_HELLO: [u8; 50] = {
    let mut b = [0u8; 50];
    let head = [
        0x16, 0x03, 0x01, 0x00, 0x2d, 0x01, 0x00, 0x00, 0x29, 0x03, 0x03,
    ];
    let mut i = 0;
    while i < head.len() {
        b[i] = head[i];
        i += 1;
    }
    // 32 bytes of random, then: no session id, one suite, no compression.
    let tail = [0x00, 0x00, 0x02, 0xc0, 0x2f, 0x01, 0x00];
    let mut j = 0;
    while j < tail.len() {
        b[43 + j] = tail[j];
        j += 1;
    }
    b
};

/// curl's whole ClientHello in one write.
fn client_hello(ts_ns: u64) -> KernelEvent<'static> {
    KernelEvent::Data(crate::capture::events::DataRecord {
        header: header(4, ts_ns),
        fd: 5,
        direction: agent_ebpf::Direction::Egress,
        flags: 0,
        syscall: 0,
        stream_offset: 0,
        syscall_len: MINIMAL_CLIENT_HELLO.len() as u32,
        bytes: &MINIMAL_CLIENT_HELLO,
    })
}

#[test]
fn a_success_is_only_counted_unless_the_policy_wants_it() {
    for all in [false, true] {
        let mut a = assembler(Arc::new(PlainPorts::default()));
        a.set_success_policy(SuccessPolicy { all, sample: None });
        let clock = WallClock::now();
        let mut out = Vec::new();
        a.on_event(&connect(443, 0), &clock, &mut out);
        a.on_event(&client_hello_start(2_000), &clock, &mut out);
        a.on_event(&handshake_done(3_000), &clock, &mut out);
        a.on_event(&close(4_000), &clock, &mut out);
        a.tick(10_000_000_000, &clock, &mut out);
        assert_eq!(a.stats().successes, 1);
        if all {
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].result, HandshakeResult::Success);
            assert_eq!(a.stats().successes_counted_only, RoleCounts::default());
        } else {
            assert!(out.is_empty(), "{out:#?}");
            assert_eq!(a.stats().successes_counted_only.client, 1);
        }
    }
}

#[test]
fn a_success_that_may_have_failed_one_layer_up_becomes_an_outcome() {
    // The client asked for a name and left without a request: host
    // state must decide (see diagnosis::rules::after_handshake).
    let mut tls = TlsFacts {
        sni: Some("site.test".to_string()),
        ..TlsFacts::default()
    };
    assert!(may_fail_after_handshake(&tls));
    tls.negotiated_version = Some("TLS 1.2".to_string());
    tls.encrypted_records
        .push(crate::evidence::wire::EncryptedRecordFact {
            time: None,
            sender: Role::Client,
            content_type: 23,
            length: 100,
            probable_alert: false,
        });
    assert!(!may_fail_after_handshake(&tls), "the client sent a request");
    tls.certificate_requested = true;
    tls.client_certificate_count = Some(0);
    assert!(may_fail_after_handshake(&tls));
}

#[test]
fn an_exit_concludes_and_untracks_only_its_own_sockets() {
    let mut a = assembler(Arc::new(PlainPorts::default()));
    let clock = WallClock::now();
    let mut out = Vec::new();
    a.on_event(&connect(443, 0), &clock, &mut out);
    let mut other = connect(443, 0);
    if let KernelEvent::Connect(ev) = &mut other {
        ev.header.tgid = CURL + 7;
        ev.sk = 0xffff_0002;
    }
    a.on_event(&other, &clock, &mut out);
    a.on_event(
        &KernelEvent::Exit(agent_ebpf::ProcEvent {
            header: header(8, 5_000),
            comm: comm("curl"),
        }),
        &clock,
        &mut out,
    );
    let untracked = a.tick(6_000, &clock, &mut out);
    assert_eq!(untracked, vec![sock_key(CURL, 5)]);
    assert_eq!(a.open.len(), 1, "the other process's socket stays open");
}
