//! Capture end to end (root) for a Node.js client: libuv's non-blocking
//! socket (`connect` returns EINPROGRESS), its flights written with
//! `writev`, its reads through `read` that often return EAGAIN. Node links
//! its own OpenSSL (no libssl in `ldd`), so unless the agent probes the
//! executable itself, the client side's record comes from the wire alone:
//! this test must pass either way.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::diagnosis::Cause;
use agent::outcome::{HandshakeResult, Role};
use tlsdoctor_tests::agent::agent;
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};

/// A finished node run: its pid (the client process the records name) and
/// what it printed.
struct NodeRun {
    pid: u32,
    success: bool,
    stdout: String,
}

/// `node -e` with Node's own `tls.connect` to 127.0.0.1:`port` (SNI
/// `server_name`, trusting only `cafile`), as an application does it: the
/// socket is libuv's, non-blocking. Prints `OK` or `FAIL <code>`.
fn node_tls(port: u16, server_name: &str, cafile: &Path) -> NodeRun {
    let script = format!(
        "const tls = require('tls'), fs = require('fs');\n\
         const s = tls.connect({{ host: '127.0.0.1', port: {port}, servername: {server_name:?}, \
         ca: fs.readFileSync({ca:?}) }}, () => {{ console.log('OK'); s.end(); }});\n\
         s.on('error', e => {{ console.log('FAIL ' + e.code); process.exit(1); }});\n",
        ca = cafile.display().to_string(),
    );
    let mut child = Command::new("node")
        .arg("-e")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting node");
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("waiting for node").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("node's output");
    NodeRun {
        pid,
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

/// nginx (TLS 1.2 only) serves its leaf without the intermediate: node
/// rejects it (UNABLE_TO_VERIFY_LEAF_SIGNATURE). Node's OpenSSL accepts
/// every chain during the handshake (node verifies afterwards), so the
/// handshake completes on both ends and node destroys the socket without an
/// alert or a request: both ends are TLS successes to OpenSSL and to the
/// wire. Both must be recorded, the client's by its pid, as
/// chain-incomplete: the served chain (TLS 1.2 Certificate in clear, and
/// nginx's configured file) lacks its intermediate.
#[test]
fn node_client_against_a_chain_incomplete_server_is_recorded_from_both_ends() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    let _server = nginx(
        port,
        &nginx_tls_block(
            port,
            "localhost",
            &leaf.cert,
            &leaf.key,
            "    ssl_protocols TLSv1.2;",
        ),
    );
    let run = node_tls(port, "localhost", &pki.ca_file);
    assert!(!run.success, "node must reject a leaf-only chain");
    assert!(
        run.stdout.contains("UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
        "node's error: {}",
        run.stdout
    );
    let records = agent.wait_for(port, "node's failure, both ends", |rs| {
        rs.iter()
            .any(|r| r.role == Role::Client && r.client.pid == Some(run.pid))
            && rs
                .iter()
                .any(|r| r.role == Role::Server && r.client.pid == Some(run.pid))
    });
    let client = records
        .iter()
        .find(|r| r.role == Role::Client && r.client.pid == Some(run.pid))
        .unwrap();
    assert_eq!(client.result, HandshakeResult::Failure);
    assert_eq!(client.client.comm.as_deref(), Some("node"));
    assert_eq!(client.server.port, Some(port));
    assert_eq!(client.tls.sni.as_deref(), Some("localhost"), "{client:#?}");
    // Node verifies after the handshake and destroys the socket: no alert.
    assert!(client.tls.alert.is_none(), "{client:#?}");
    assert_eq!(client.tls.negotiated_version.as_deref(), Some("TLS 1.2"));
    assert_eq!(
        client.cause,
        Cause::ChainIncomplete,
        "{:#?}",
        client.diagnosis
    );
    let server = records
        .iter()
        .find(|r| r.role == Role::Server && r.client.pid == Some(run.pid))
        .unwrap();
    assert_eq!(server.result, HandshakeResult::Failure);
    assert_eq!(
        server.cause,
        Cause::ChainIncomplete,
        "{:#?}",
        server.diagnosis
    );
}
