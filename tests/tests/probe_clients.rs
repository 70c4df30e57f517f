//! The probe's cipher-suite enumeration and client simulation against real
//! servers, and the simulation checked against the real clients installed
//! here (OpenSSL 3 `s_client`, Java 17 JSSE, Go crypto/tls, curl with
//! GnuTLS): each misconfigured server is probed, then every real client
//! tries it, and the simulated verdict must be the real one. The profile
//! tables themselves are compared with the real clients' ClientHellos.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use agent::diagnosis::Cause;
use agent::probe::iana;
use agent::probe::profiles::{self, ClientProfile};
use agent::probe::{EnumerationStatus, FailureKind, Verdict};
use openssl::hash::MessageDigest;
use tlsdoctor_tests::pki::{Key, LeafSpec, Pki};
use tlsdoctor_tests::probe::{
    NAME, REAL_CLIENTS, assert_clients, dh_params, options, real_clients, root_cause, run_probe,
    simulated, suites_of,
};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block, s_server};
use tlsdoctor_tests::{TempDir, free_port};

fn names(ids: &[u16], name: fn(u16) -> String) -> Vec<String> {
    ids.iter().map(|&id| name(id)).collect()
}

#[test]
fn the_client_tables_are_what_the_real_clients_send() {
    let clients = real_clients();
    for id in REAL_CLIENTS {
        let profile: &ClientProfile = profiles::profile(id).expect("profile");
        let hello = clients.capture_hello(id);
        let mut wrong = Vec::new();
        let mut compare = |what: &str, table: Vec<String>, real: &[String]| {
            if table != real {
                wrong.push(format!("{what}:\n  table {table:?}\n  real  {real:?}"));
            }
        };
        compare(
            "cipher suites",
            names(profile.cipher_suites, iana::cipher_name),
            &hello.cipher_suites,
        );
        compare(
            "groups",
            names(profile.groups, iana::group_name),
            &hello.supported_groups,
        );
        compare(
            "signature algorithms",
            names(profile.signature_algorithms, iana::signature_scheme_name),
            &hello.signature_algorithms,
        );
        compare(
            "versions",
            names(profile.versions, iana::version_name),
            &hello.supported_versions,
        );
        compare(
            "ALPN",
            profile.alpn.iter().map(|s| s.to_string()).collect(),
            &hello.alpn,
        );
        assert!(
            wrong.is_empty(),
            "{id}'s table differs from its real ClientHello:\n{}",
            wrong.join("\n")
        );
    }
}

#[test]
fn a_server_with_one_tls12_suite_shows_it_and_which_clients_fail() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.key = Key::Rsa(2048);
    let leaf = pki.leaf(&spec);
    let dir = TempDir::new("one-suite");
    let dh = dh_params(&dir, 2048);
    let port = free_port();
    let _server = nginx(
        port,
        &nginx_tls_block(
            port,
            NAME,
            &leaf.fullchain,
            &leaf.key,
            &format!(
                "    ssl_protocols TLSv1.2;\n    ssl_ciphers DHE-RSA-AES256-GCM-SHA384;\n    ssl_dhparam {};",
                dh.display()
            ),
        ),
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    // The default client gets through: only the enumeration and the
    // simulation show the problem.
    assert!(report.root_cause.is_none(), "{:#?}", report.root_cause);
    assert_eq!(report.verdict, Verdict::Warnings);
    assert_eq!(suites_of(&report, "TLS 1.2"), ["DHE-RSA-AES256-GCM-SHA384"]);
    let tls12 = report
        .cipher_suites
        .iter()
        .find(|v| v.version == "TLS 1.2")
        .unwrap();
    assert_eq!(tls12.status, EnumerationStatus::Complete);
    assert_eq!(tls12.dh_bits, Some(2048));
    for v in ["TLS 1.0", "TLS 1.1", "TLS 1.3"] {
        let e = report
            .cipher_suites
            .iter()
            .find(|e| e.version == v)
            .unwrap();
        assert_eq!(e.status, EnumerationStatus::Rejected, "{e:#?}");
    }
    for id in ["go-1.19", "chrome"] {
        let sim = simulated(&report, id);
        assert_eq!(
            sim.failure_kind,
            Some(FailureKind::NoSharedCipher),
            "{sim:#?}"
        );
        let finding = report
            .findings
            .iter()
            .find(|f| f.kind == "client-cannot-connect" && f.summary.starts_with(&sim.name))
            .unwrap_or_else(|| panic!("no finding for {id}: {:#?}", report.findings));
        assert!(
            finding.summary.contains("DHE-RSA-AES256-GCM-SHA384"),
            "{finding:#?}"
        );
    }
    assert_clients(&report, port, &pki.ca_file, [true, true, false, true]);
}

#[test]
fn server_order_and_groups_are_enumerated() {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let port = free_port();
    let order =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384";
    let _server = nginx(
        port,
        &nginx_tls_block(
            port,
            NAME,
            &leaf.fullchain,
            &leaf.key,
            &format!(
                "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_prefer_server_ciphers on;\n    ssl_ciphers {order};\n    ssl_ecdh_curve secp384r1:X25519;"
            ),
        ),
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), true);
    assert_eq!(report.verdict, Verdict::Ok, "{:#?}", report.findings);
    assert_eq!(
        suites_of(&report, "TLS 1.2"),
        order.split(':').collect::<Vec<_>>()
    );
    let entry = |v: &str| {
        report
            .cipher_suites
            .iter()
            .find(|e| e.version == v)
            .unwrap()
    };
    assert_eq!(entry("TLS 1.2").server_preference, Some(true));
    assert_eq!(entry("TLS 1.2").groups, ["secp384r1", "x25519"]);
    let mut tls13 = entry("TLS 1.3").groups.clone();
    tls13.sort();
    assert_eq!(tls13, ["secp384r1", "x25519"]);
    // Every simulated client connects, with a group the server accepts.
    for sim in &report.clients {
        assert!(sim.connects, "{sim:#?}");
        let kx = sim.key_exchange.as_deref().unwrap_or_default();
        assert!(kx == "secp384r1" || kx == "x25519", "{sim:#?}");
    }
}

#[test]
fn a_1024_bit_dh_group_splits_the_clients() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.key = Key::Rsa(2048);
    let leaf = pki.leaf(&spec);
    let dir = TempDir::new("dh1024");
    let dh = dh_params(&dir, 1024);
    let port = free_port();
    let chain = pki.ca_bundle().display().to_string();
    let _server = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-cert_chain",
            &chain,
            "-no_tls1_3",
            "-cipher",
            "DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
            "-dhparam",
            &dh.display().to_string(),
        ],
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), false);
    assert_eq!(
        root_cause(&report),
        Cause::WeakCryptoRejected,
        "{:#?}",
        report.root_cause
    );
    let tls12 = report
        .cipher_suites
        .iter()
        .find(|v| v.version == "TLS 1.2")
        .unwrap();
    assert_eq!(tls12.dh_bits, Some(1024));
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == "weak-dh-parameters"),
        "{:#?}",
        report.findings
    );
    assert_eq!(
        simulated(&report, "openssl-3.0").failure_kind,
        Some(FailureKind::WeakKeyExchange)
    );
    assert_clients(&report, port, &pki.ca_file, [false, true, false, true]);
}

/// A leaf with `change` applied, served by `openssl s_server` at security
/// level 0 (so it loads what stricter servers refuse), probed.
fn probe_leaf(
    change: impl FnOnce(&mut LeafSpec),
) -> (
    Pki,
    tlsdoctor_tests::servers::Server,
    agent::probe::ProbeReport,
) {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    change(&mut spec);
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let chain = pki.ca_bundle().display().to_string();
    let server = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &["-cipher", "DEFAULT:@SECLEVEL=0", "-cert_chain", &chain],
    );
    let report = run_probe(&options(port, Some(NAME), Some(&pki.ca_file)), false);
    (pki, server, report)
}

#[test]
fn sha1_signatures_and_small_keys_split_the_clients() {
    let (pki, server, report) = probe_leaf(|s| s.digest = MessageDigest::sha1);
    assert_eq!(root_cause(&report), Cause::WeakCryptoRejected);
    assert_eq!(
        simulated(&report, "go-1.19").failure_kind,
        Some(FailureKind::WeakSignature)
    );
    assert_clients(
        &report,
        server.port,
        &pki.ca_file,
        [false, true, false, false],
    );

    let (pki, server, report) = probe_leaf(|s| s.key = Key::Rsa(1024));
    assert_eq!(root_cause(&report), Cause::WeakCryptoRejected);
    assert_clients(
        &report,
        server.port,
        &pki.ca_file,
        [false, true, true, true],
    );
}

#[test]
fn key_usage_and_extended_key_usage() {
    // keyEncipherment only, RSA, TLS 1.3: the strict clients refuse.
    let (pki, server, report) = probe_leaf(|s| {
        s.key = Key::Rsa(2048);
        s.digital_signature = false;
    });
    assert!(report.root_cause.is_none(), "{:#?}", report.root_cause);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == "key-usage-incompatible"),
        "{:#?}",
        report.findings
    );
    assert_eq!(
        simulated(&report, "java-17").failure_kind,
        Some(FailureKind::KeyUsage)
    );
    assert_clients(
        &report,
        server.port,
        &pki.ca_file,
        [true, false, true, false],
    );

    // clientAuth only: every client refuses it but curl with GnuTLS, whose
    // backend verifies without a purpose.
    let (pki, server, report) = probe_leaf(|s| s.server_auth = false);
    let root = report.root_cause.as_ref().expect("a root cause");
    // The catalogue has no class for it; the probe names the reason.
    assert!(root.summary.contains("serverAuth"), "{root:#?}");
    assert!(root.remediation.contains("serverAuth"), "{root:#?}");
    let check = report.certificate_checks.as_ref().unwrap();
    assert!(!check.certificates[0].server_auth);
    assert_eq!(
        check.certificates[0].extended_key_usage.as_deref(),
        Some(&["clientAuth".to_string()][..])
    );
    assert_clients(
        &report,
        server.port,
        &pki.ca_file,
        [false, false, false, true],
    );
}

#[test]
fn a_certificate_naming_the_host_only_in_its_common_name() {
    let (pki, server, report) = probe_leaf(|s| s.sans = Vec::new());
    assert!(report.root_cause.is_none(), "{:#?}", report.root_cause);
    assert_eq!(
        simulated(&report, "go-1.19").failure_kind,
        Some(FailureKind::NameMismatch)
    );
    assert_eq!(
        simulated(&report, "chrome").failure_kind,
        Some(FailureKind::NameMismatch)
    );
    assert_clients(
        &report,
        server.port,
        &pki.ca_file,
        [true, true, false, true],
    );
}

#[test]
fn quick_skips_the_enumeration_and_the_simulation() {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let port = free_port();
    let chain = pki.ca_bundle().display().to_string();
    let _server = s_server(port, &leaf.cert, &leaf.key, &["-cert_chain", &chain]);
    let mut o = options(port, Some(NAME), Some(&pki.ca_file));
    o.quick = true;
    let report = run_probe(&o, false);
    assert_eq!(report.verdict, Verdict::Ok, "{:#?}", report.findings);
    assert!(report.clients.is_empty());
    assert_eq!(report.cipher_suites.len(), 4);
    assert!(
        report
            .cipher_suites
            .iter()
            .all(|v| v.status == EnumerationStatus::NotTested)
    );
    assert!(
        report.notes.iter().any(|n| n.starts_with("quick")),
        "{:#?}",
        report.notes
    );
    // The version matrix and the certificate checks still run.
    assert!(report.certificate_checks.is_some());
    assert!(
        report
            .protocols
            .iter()
            .all(|p| p.status != agent::probe::ProtocolStatus::NotTested)
    );
}
