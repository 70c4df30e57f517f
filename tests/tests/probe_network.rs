//! The active probe against servers that fail before or instead of a TLS
//! conversation: nothing listening, a loopback-only listener, a server that
//! insists on a client certificate, plain HTTP, and hostile peers (silent,
//! garbage, resets, closes, floods) that must end inside the timeouts.
//!
//! Root is needed only for the listener-bound-to-loopback case when the host
//! has no non-loopback address (it adds one on a dummy interface).

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent::diagnosis::{Cause, Confidence};
use agent::probe::{ProbeReport, TcpResult, Verdict};
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::hostile::{Behaviour, hostile};
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::probe::{NAME, fix_location, nginx_site, options, root_cause, run_probe};
use tlsdoctor_tests::servers::{nginx_tls_block, python_http, s_server};

#[test]
fn nothing_listening_is_port_not_listening_with_the_config_line() {
    let port = free_port();
    let report = run_probe(&options(port, Some(NAME), None), true);
    assert_eq!(root_cause(&report), Cause::PortNotListening);
    assert_eq!(report.addresses[0].tcp, TcpResult::Refused);
    assert!(report.local);

    // nginx's config names a port it does not listen on (edited, not reloaded).
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let (up, down) = (free_port(), free_port());
    let server = nginx_site(up, &leaf.fullchain, &leaf.key, "");
    let conf = server
        .error_log
        .as_ref()
        .unwrap()
        .with_file_name("nginx.conf");
    let text = std::fs::read_to_string(&conf).unwrap();
    let block = nginx_tls_block(down, "late.test", &leaf.fullchain, &leaf.key, "");
    let edited = match text.rfind('}') {
        Some(i) => format!("{}{block}{}", &text[..i], &text[i..]),
        None => panic!("unexpected nginx.conf: {text}"),
    };
    std::fs::write(&conf, edited).unwrap();
    let report = run_probe(&options(down, Some("late.test"), None), true);
    assert_eq!(
        root_cause(&report),
        Cause::PortNotListening,
        "{:#?}",
        report.root_cause
    );
    let root = report.root_cause.as_ref().unwrap();
    assert_eq!(root.confidence, Confidence::High);
    assert!(
        fix_location(&report).starts_with(&conf.display().to_string()),
        "{root:#?}"
    );
}

/// A local address other than loopback: one the host has, else one added
/// on a dummy interface (removed when dropped); `None` if neither works.
struct OtherAddress {
    ip: std::net::IpAddr,
    dummy: Option<&'static str>,
}

impl Drop for OtherAddress {
    fn drop(&mut self) {
        if let Some(dev) = self.dummy {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", dev])
                .status();
        }
    }
}

fn other_local_address() -> Option<OtherAddress> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "up"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let found = text.lines().find_map(|l| {
        let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
        let ip: std::net::IpAddr = cidr.split('/').next()?.parse().ok()?;
        (!ip.is_loopback()).then_some(ip)
    });
    if let Some(ip) = found {
        return Some(OtherAddress { ip, dummy: None });
    }
    let dev = "tlsdprobe0";
    let ok = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .status()
            .is_ok_and(|s| s.success())
    };
    let added = ok(&["link", "add", dev, "type", "dummy"])
        && ok(&["addr", "add", "198.51.100.77/32", "dev", dev])
        && ok(&["link", "set", dev, "up"]);
    let guard = OtherAddress {
        ip: "198.51.100.77".parse().ok()?,
        dummy: Some(dev),
    };
    added.then_some(guard)
}

#[test]
fn a_loopback_only_listener_refuses_another_local_address() {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let port = free_port();
    let _server = nginx_site(port, &leaf.fullchain, &leaf.key, "");
    let assert_bound = |target: String| {
        let mut o = options(port, Some(NAME), Some(&pki.ca_file));
        o.target = target;
        let report = run_probe(&o, true);
        assert_eq!(
            root_cause(&report),
            Cause::ListenerBoundToLoopback,
            "{:#?}",
            report.root_cause
        );
        assert_eq!(report.addresses[0].tcp, TcpResult::Refused);
        let root = report.root_cause.as_ref().unwrap();
        assert!(root.summary.contains("127.0.0.1"), "{root:#?}");
        assert!(fix_location(&report).contains("nginx.conf:"), "{root:#?}");
    };
    // IPv6 loopback: nginx's `listen 127.0.0.1:port` does not cover it.
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        assert_bound(format!("[::1]:{port}"));
    } else {
        eprintln!("!!! no IPv6 loopback here: the [::1] case is skipped");
    }
    // Another address of this host, the case people hit.
    let Some(other) = other_local_address() else {
        eprintln!(
            "!!! SKIPPED the non-loopback case of a_loopback_only_listener_refuses_another_local_address: \
             this host has no non-loopback address and a dummy one could not be added (needs root)"
        );
        return;
    };
    assert_bound(format!("{}:{port}", other.ip));
}

#[test]
fn a_server_requiring_a_client_certificate() {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let bundle = pki.ca_bundle();

    // TLS 1.3: the handshake completes, the server's alert comes after.
    let port = free_port();
    let _s13 = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &["-Verify", "1", "-cert_chain", &bundle.display().to_string()],
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    assert_eq!(
        root_cause(&report),
        Cause::ClientCertificateRequired,
        "{:#?}",
        report.root_cause
    );
    let check = report.client_certificate.as_ref().unwrap();
    assert_eq!(check.required, Some(true), "{check:#?}");
    assert!(report.handshake.as_ref().unwrap().certificate_requested);

    // TLS 1.2: the handshake itself fails.
    let port = free_port();
    let _s12 = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-Verify",
            "1",
            "-no_tls1_3",
            "-cert_chain",
            &bundle.display().to_string(),
        ],
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    assert_eq!(
        root_cause(&report),
        Cause::ClientCertificateRequired,
        "{:#?}",
        report.root_cause
    );

    // nginx: handshake fine, then "400 No required SSL certificate was sent".
    let port = free_port();
    let _n = nginx_site(
        port,
        &leaf.fullchain,
        &leaf.key,
        &format!(
            "    ssl_verify_client on;\n    ssl_client_certificate {};",
            bundle.display()
        ),
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    assert_eq!(
        root_cause(&report),
        Cause::ClientCertificateRequired,
        "{:#?}",
        report.root_cause
    );
    let check = report.client_certificate.as_ref().unwrap();
    assert!(check.how.contains("400"), "{check:#?}");
    assert!(!check.acceptable_issuers.is_empty(), "{check:#?}");
    assert!(fix_location(&report).contains("nginx.conf:"));

    // Optional: served anyway, an informational finding only.
    let port = free_port();
    let _o = nginx_site(
        port,
        &leaf.fullchain,
        &leaf.key,
        &format!(
            "    ssl_verify_client optional;\n    ssl_client_certificate {};",
            bundle.display()
        ),
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    assert_eq!(report.verdict, Verdict::Ok, "{report:#?}");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == "client-certificate-optional")
    );
}

#[test]
fn tls_to_a_plain_http_port() {
    let port = free_port();
    let _http = python_http(port);
    let report = run_probe(&options(port, Some(NAME), None), true);
    assert_eq!(
        root_cause(&report),
        Cause::TlsToPlaintextPort,
        "{:#?}",
        report.root_cause
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("does not speak TLS"))
    );
}

/// Hostile peers: each ends with a clear root cause, within the timeouts.
fn hostile_probe(behaviour: Behaviour) -> (ProbeReport, Duration) {
    let peer = hostile(behaviour);
    let mut o = options(peer.port, Some(NAME), None);
    o.timeout = Duration::from_secs(1);
    o.total_timeout = Duration::from_secs(8);
    let start = Instant::now();
    let report = run_probe(&o, true);
    (report, start.elapsed())
}

#[test]
fn a_silent_server_is_handshake_aborted_within_the_timeout() {
    let (report, took) = hostile_probe(Behaviour::Silent);
    assert_eq!(
        root_cause(&report),
        Cause::HandshakeAborted,
        "{:#?}",
        report.root_cause
    );
    assert!(report.outcome.as_ref().unwrap().socket.stalled);
    // One step timeout (1 s) plus host state, not one per attempt.
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(report.notes.iter().any(|n| n.contains("answered nothing")));
}

#[test]
fn garbage_resets_closes_and_floods_end_cleanly() {
    let (report, took) = hostile_probe(Behaviour::Garbage);
    assert_eq!(
        root_cause(&report),
        Cause::TlsToPlaintextPort,
        "{:#?}",
        report.root_cause
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");

    for behaviour in [Behaviour::Reset, Behaviour::Close] {
        let (report, took) = hostile_probe(behaviour);
        assert_eq!(
            root_cause(&report),
            Cause::HandshakeAborted,
            "{behaviour:?}: {:#?}",
            report.root_cause
        );
        assert!(took < Duration::from_secs(8), "{behaviour:?} took {took:?}");
    }

    // A ServerHello, then a Certificate message announcing 16 MiB: OpenSSL
    // refuses it by its length (100 KiB at most), no rule claims it, and the
    // raw facts stay in the unknown diagnosis.
    let (report, took) = hostile_probe(Behaviour::HugeCertificate);
    assert_eq!(
        root_cause(&report),
        Cause::Unknown,
        "{:#?}",
        report.root_cause
    );
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let hs = report.handshake.as_ref().unwrap();
    assert_eq!(
        hs.failure.as_deref(),
        Some("excessive message size"),
        "{hs:#?}"
    );
    let root = report.root_cause.as_ref().unwrap();
    assert!(root.summary.contains("excessive message size"), "{root:#?}");
    let outcome = report.outcome.as_ref().unwrap();
    assert!(outcome.tls.server_certificates.is_empty());
    assert!(outcome.socket.bytes_received < 1024 * 1024);
}
