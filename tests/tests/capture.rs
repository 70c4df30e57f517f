//! Capture end to end (root): the real agent, real servers and clients on
//! loopback. Each failing handshake must leave a journal record with the
//! right 4-tuple, processes and wire facts from the side(s) on this host;
//! successful handshakes must leave none.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent::outcome::{HandshakeOutcome, HandshakeResult, Role};
use tlsdoctor_tests::agent::agent;
use tlsdoctor_tests::clients::{curl, java_tls, python_plain, python_tls, s_client};
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block, s_server};
use tlsdoctor_tests::{TempDir, free_port};

fn client_record(records: &[HandshakeOutcome], pid: u32) -> Option<&HandshakeOutcome> {
    records
        .iter()
        .find(|r| r.role == Role::Client && r.client.pid == Some(pid))
}

fn has_client(pid: u32) -> impl Fn(&[HandshakeOutcome]) -> bool {
    move |records| client_record(records, pid).is_some()
}

/// The loopback 4-tuple of a record, checked against what the test knows.
fn assert_tuple(r: &HandshakeOutcome, port: u16) {
    let loopback = Some("127.0.0.1".parse().unwrap());
    assert_eq!(r.client.ip, loopback, "{r:#?}");
    assert_eq!(r.server.ip, loopback, "{r:#?}");
    assert_eq!(r.server.port, Some(port));
    assert!(r.client.port.is_some_and(|p| p != 0), "client port: {r:#?}");
}

/// A self-signed server certificate: every client with the system trust
/// store rejects it, OpenSSL ones with a clear `unknown_ca` alert.
fn self_signed(pki: &Pki) -> tlsdoctor_tests::pki::Leaf {
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    pki.leaf(&spec)
}

#[test]
fn untrusted_certificate_is_recorded_for_curl_with_both_ends() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = self_signed(&pki);
    let port = free_port();
    let server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
    );
    let run = curl(&[&format!("https://localhost:{port}/")]);
    assert!(!run.success, "curl must reject a self-signed certificate");
    let records = agent.wait_for(port, "curl's failure, both ends", |rs| {
        client_record(rs, run.pid).is_some() && rs.iter().any(|r| r.role == Role::Server)
    });
    let client = client_record(&records, run.pid).unwrap();
    assert_eq!(client.result, HandshakeResult::Failure);
    assert_tuple(client, port);
    assert_eq!(client.client.comm.as_deref(), Some("curl"));
    assert_eq!(client.tls.sni.as_deref(), Some("localhost"));
    assert!(client.tls.offered_versions.contains(&"TLS 1.3".to_string()));
    let alert = client
        .tls
        .alert
        .as_ref()
        .expect("the client's alert, in clear");
    assert_eq!((alert.code, alert.sender), (48, Role::Client));
    assert!(
        client
            .openssl
            .reasons
            .iter()
            .any(|r| r.contains("certificate verify failed")),
        "{:?}",
        client.openssl
    );
    assert_eq!(
        client.openssl.verify_result.as_ref().map(|v| v.code),
        Some(18)
    );
    // The server's record: same connection seen from nginx, naming curl.
    let server_rec = records
        .iter()
        .find(|r| r.role == Role::Server && r.client.port == client.client.port)
        .expect("nginx's side of the same connection");
    assert_eq!(server_rec.server.pid.map(|p| p != 0), Some(true));
    assert_eq!(
        server_rec.client.pid,
        Some(run.pid),
        "the peer process is named"
    );
    assert!(
        server_rec
            .openssl
            .reasons
            .iter()
            .any(|r| r.contains("alert unknown ca")),
        "nginx's OpenSSL reason: {:?}",
        server_rec.openssl
    );
    drop(server);
}

#[test]
fn untrusted_certificate_is_recorded_for_python_and_s_client() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = self_signed(&pki);
    let port = free_port();
    let _server = s_server(port, &leaf.cert, &leaf.key, &[]);

    let py = python_tls(port, "localhost", None, 0.0, &[]);
    assert!(!py.success);
    assert!(
        py.stderr.contains("CERTIFICATE_VERIFY_FAILED"),
        "{}",
        py.stderr
    );
    let records = agent.wait_for(port, "python's failure", has_client(py.pid));
    let r = client_record(&records, py.pid).unwrap();
    assert_tuple(r, port);
    assert_eq!(r.client.comm.as_deref(), Some("python3"));
    assert!(
        r.openssl
            .calls
            .iter()
            .any(|c| c.function == "SSL_do_handshake")
    );

    let sc = s_client(port, &["-servername", "localhost", "-verify_return_error"]);
    assert!(!sc.success);
    let records = agent.wait_for(port, "s_client's failure", has_client(sc.pid));
    let r = client_record(&records, sc.pid).unwrap();
    assert_tuple(r, port);
    assert_eq!(r.client.comm.as_deref(), Some("openssl"));
    assert_eq!(r.tls.alert.as_ref().map(|a| a.code), Some(48));
    // s_client handshakes inside SSL_read, which is not probed: its reasons
    // come from the errors raised outside a followed call, tied to its
    // connection by thread.
    assert!(
        r.openssl
            .reasons
            .iter()
            .any(|reason| reason.contains("certificate verify failed")),
        "{r:#?}"
    );
    assert!(
        r.openssl
            .verify_result
            .as_ref()
            .is_some_and(|v| v.code != 0),
        "{r:#?}"
    );
}

#[test]
fn java_client_failure_is_recorded_from_the_wire() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = self_signed(&pki);
    let port = free_port();
    let _server = s_server(port, &leaf.cert, &leaf.key, &[]);
    let run = java_tls(port, "localhost");
    assert!(
        !run.success,
        "JSSE must reject the certificate: {}",
        run.stdout
    );
    let records = agent.wait_for(port, "java's failure", has_client(run.pid));
    let r = client_record(&records, run.pid).unwrap();
    assert_eq!(r.result, HandshakeResult::Failure);
    assert_tuple(r, port);
    assert_eq!(r.client.comm.as_deref(), Some("java"));
    // JSSE has no OpenSSL: wire facts only.
    assert!(r.openssl.calls.is_empty());
    assert_eq!(r.tls.sni.as_deref(), Some("localhost"));
    assert!(
        r.tls.client_hello.is_some() && r.tls.server_hello.is_some(),
        "{:#?}",
        r.tls
    );
}

#[test]
fn protocol_mismatch_records_the_versions_and_the_alert() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    let _server = s_server(port, &leaf.fullchain, &leaf.key, &["-tls1_3"]);
    let run = s_client(port, &["-tls1_2", "-servername", "localhost"]);
    assert!(!run.success);
    let records = agent.wait_for(port, "the version mismatch", has_client(run.pid));
    let r = client_record(&records, run.pid).unwrap();
    assert_tuple(r, port);
    assert_eq!(r.tls.offered_versions, vec!["TLS 1.2".to_string()]);
    let alert = r.tls.alert.as_ref().expect("the server's alert");
    assert_eq!((alert.code, alert.sender), (70, Role::Server));
}

#[test]
fn refused_connection_is_recorded_with_its_errno() {
    let agent = agent();
    // A well-known TLS port with nothing listening (the agent counts refused
    // connections to non-TLS ports without journaling them).
    let port = [8443u16, 9443, 4443, 10250, 6443]
        .into_iter()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free well-known TLS port");
    let run = curl(&[&format!("https://127.0.0.1:{port}/")]);
    assert!(!run.success);
    let records = agent.wait_for(port, "the refused connect", has_client(run.pid));
    let r = client_record(&records, run.pid).unwrap();
    assert_eq!(r.result, HandshakeResult::Failure);
    assert_eq!(r.socket.connect_error.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(r.server.ip, Some("127.0.0.1".parse().unwrap()));
    assert!(r.tls.client_hello.is_none());
}

#[test]
fn plain_http_to_a_tls_port_is_recorded_at_the_server() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    let server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.fullchain, &leaf.key, ""),
    );
    let run = python_plain(port, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(
        run.stdout.contains("400"),
        "nginx answers 400: {}",
        run.stdout
    );
    let records = agent.wait_for(port, "nginx's record of plain HTTP", |rs| {
        rs.iter()
            .any(|r| r.role == Role::Server && r.client.pid == Some(run.pid))
    });
    let r = records
        .iter()
        .find(|r| r.role == Role::Server && r.client.pid == Some(run.pid))
        .unwrap();
    assert_eq!(r.result, HandshakeResult::Failure);
    assert!(r.server.pid.is_some(), "nginx is named");
    assert_eq!(r.client.pid, Some(run.pid), "the local client is named");
    let non_tls = r
        .tls
        .non_tls
        .as_ref()
        .expect("non-TLS bytes from the client");
    assert_eq!(non_tls.kind, "http-request");
    assert_eq!(non_tls.sender, Role::Client);
    // Described, not copied: the request line never leaves the agent.
    assert_eq!(non_tls.description, "HTTP GET request");
    // nginx spots plain HTTP itself and never enters OpenSSL: the proof is
    // the wire and nginx's own log line.
    assert_eq!(
        r.cause,
        agent::diagnosis::Cause::PlaintextToTlsPort,
        "{:#?}",
        r.diagnosis
    );
    assert!(
        r.diagnosis
            .evidence
            .iter()
            .any(|e| e.source == agent::diagnosis::Source::Host
                && e.fact.contains("plain HTTP request")),
        "nginx's error log line: {:#?}",
        r.diagnosis.evidence
    );
    drop(server);
}

#[test]
fn successful_handshakes_leave_no_record() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    let _server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.fullchain, &leaf.key, ""),
    );
    let ca = pki.ca_file.display().to_string();
    for _ in 0..3 {
        let run = curl(&["--cacert", &ca, &format!("https://localhost:{port}/")]);
        assert!(run.success, "curl with the right CA: {}", run.stderr);
    }
    let py = python_tls(port, "localhost", Some(&pki.ca_file), 0.0, &[]);
    assert!(py.success, "{}", py.stderr);
    agent.assert_no_records(port, "successful handshakes");
}

#[test]
fn a_client_with_its_own_libssl_started_after_the_agent_is_covered() {
    let agent = agent();
    // A private copy of OpenSSL: a file the agent has never probed, found
    // only by looking at the new process.
    let libs = TempDir::new("libssl-copy");
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(format!("/usr/lib/x86_64-linux-gnu/{lib}"), libs.join(lib))
            .expect("copying OpenSSL");
    }
    let pki = Pki::new();
    let leaf = self_signed(&pki);
    let port = free_port();
    let _server = s_server(port, &leaf.cert, &leaf.key, &[]);
    let lib_dir = libs.path().display().to_string();
    let run = python_tls(
        port,
        "localhost",
        None,
        3.0,
        &[("LD_LIBRARY_PATH", &lib_dir)],
    );
    assert!(!run.success);
    assert!(
        run.stderr.contains("CERTIFICATE_VERIFY_FAILED"),
        "python must fail on the certificate: {}",
        run.stderr
    );
    let maps_used_copy = std::fs::read_to_string(agent.journal().with_file_name("status.json"))
        .unwrap_or_default()
        .contains(&lib_dir);
    let records = agent.wait_for(port, "the new process's failure", has_client(run.pid));
    let r = client_record(&records, run.pid).unwrap();
    // OpenSSL evidence proves the private copy was probed.
    assert!(
        r.openssl
            .reasons
            .iter()
            .any(|t| t.contains("certificate verify failed")),
        "no OpenSSL evidence from the private libssl copy: {:#?}\nstatus mentions the copy: {maps_used_copy}\n{}",
        r.openssl,
        agent.log()
    );
}
