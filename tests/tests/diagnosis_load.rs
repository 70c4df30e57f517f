//! Issue 18.2: resource bottlenecks at a local TLS listener. A server whose
//! accept queue is full, or whose process is at its open-file limit, makes
//! clients time out in connect or right after their ClientHello; the agent
//! records it as handshake-aborted with the listener's evidence and fix,
//! even though nothing declares the port TLS. Clients: curl (OpenSSL) and
//! gnutls-cli and Go crypto/tls (wire only).

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use agent::diagnosis::Cause;
use tlsdoctor_tests::agent::agent;
use tlsdoctor_tests::clients::{Run, Target, curl_at, gnutls_cli, go_tls};
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::scenario::{CLIENT, Expect, HOST_STATE_SETTLE, expect};
use tlsdoctor_tests::servers::{fd_starved_listener, stuck_listener};

fn failed(run: &Run, what: &str) {
    assert!(!run.success, "{what} must fail: {run:#?}");
}

/// Issue 18.2: clients time out against a server whose accept queue is
/// full (backlog 1, the process never accepts; two connections fill it,
/// the kernel drops the SYNs after them). Nothing declares the port TLS;
/// the listener's full queue makes it a record: handshake-aborted with the
/// queue as evidence and the backlog in the fix, from curl (OpenSSL) and
/// gnutls-cli and Go (wire only).
#[test]
fn a_full_accept_queue_is_handshake_aborted_with_the_queue() {
    let agent = agent();
    let port = free_port();
    let _server = stuck_listener(port);
    let filler: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).expect("filling the queue"))
        .collect();
    std::thread::sleep(HOST_STATE_SETTLE);
    let target = Target {
        addr: "127.0.0.1",
        port,
        name: "queue.test",
        ca: None,
    };
    let runs = [
        curl_at(&target, &["--connect-timeout", "3", "-m", "6"]),
        gnutls_cli(&target, &[], Duration::from_secs(6)),
        go_tls(&target, None, &[]),
    ];
    for (run, client) in runs.iter().zip(["curl", "gnutls-cli", "go"]) {
        failed(run, &format!("{client} against a full accept queue"));
    }
    for run in &runs {
        let records = expect(
            agent,
            port,
            run.pid,
            CLIENT,
            &Expect::cause(Cause::HandshakeAborted),
        );
        let d = &records[0].diagnosis;
        assert!(
            d.evidence.iter().any(|e| e.fact.contains("accept queue")),
            "{d:#?}"
        );
        assert!(d.remediation.contains("backlog"), "{d:#?}");
    }
    drop(filler);
}

/// Issue 18.2: a server at its open-file limit (`prlimit --nofile=32`, all
/// 32 held): every accept() fails with EMFILE, connections wait in its
/// queue and their ClientHellos go unanswered. handshake-aborted, the
/// descriptor count and limit as evidence and `ulimit -n` in the fix, from
/// curl (OpenSSL) and gnutls-cli and Go (wire only).
#[test]
fn a_server_at_its_fd_limit_is_handshake_aborted_with_the_limit() {
    let agent = agent();
    let port = free_port();
    let _server = fd_starved_listener(port);
    std::thread::sleep(HOST_STATE_SETTLE);
    let target = Target {
        addr: "127.0.0.1",
        port,
        name: "fds.test",
        ca: None,
    };
    let runs = [
        curl_at(&target, &["-m", "4"]),
        gnutls_cli(&target, &[], Duration::from_secs(5)),
        go_tls(&target, None, &[]),
    ];
    for (run, client) in runs.iter().zip(["curl", "gnutls-cli", "go"]) {
        failed(
            run,
            &format!("{client} against a server out of descriptors"),
        );
    }
    for run in &runs {
        let records = expect(
            agent,
            port,
            run.pid,
            CLIENT,
            &Expect::cause(Cause::HandshakeAborted),
        );
        let d = &records[0].diagnosis;
        assert!(
            d.evidence
                .iter()
                .any(|e| e.fact.contains("its limit is 32")),
            "{d:#?}"
        );
        assert!(d.remediation.contains("ulimit -n"), "{d:#?}");
    }
}
