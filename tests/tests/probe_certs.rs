//! The probe's certificate checks against real servers (`openssl s_server`
//! stapling real OCSP responses made by `openssl ocsp`), and its output
//! hygiene through the real binary: capped lists, escaped control
//! characters, display names, exit codes, the progress line.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

use agent::diagnosis::Cause;
use agent::probe::{ProbeReport, Verdict};
use tlsdoctor_tests::agent::agent_binary;
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::probe::{NAME, options, root_cause, run_probe};
use tlsdoctor_tests::servers::{Server, s_server};

/// `leaf` served by s_server with the PKI's chain and `extra` arguments.
fn serve(pki: &Pki, spec: &LeafSpec, extra: &[&str]) -> (Server, tlsdoctor_tests::pki::Leaf) {
    let leaf = pki.leaf(spec);
    let chain = pki.ca_bundle().display().to_string();
    let port = free_port();
    let mut args = vec!["-cert_chain", chain.as_str()];
    args.extend_from_slice(extra);
    (s_server(port, &leaf.cert, &leaf.key, &args), leaf)
}

fn probe(pki: &Pki, port: u16) -> ProbeReport {
    let mut o = options(port, Some(NAME), Some(&pki.ca_file));
    o.quick = true;
    run_probe(&o, false)
}

fn kinds(report: &ProbeReport) -> Vec<&str> {
    report.findings.iter().map(|f| f.kind.as_str()).collect()
}

#[test]
fn a_stapled_ocsp_response_is_read_and_verified() {
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new(NAME));
    let good = pki.ocsp_response(&leaf, false, false);
    let chain = pki.ca_bundle().display().to_string();
    let port = free_port();
    let _s = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-cert_chain",
            &chain,
            "-status_file",
            &good.display().to_string(),
        ],
    );
    let report = probe(&pki, port);
    let staple = report
        .handshake
        .as_ref()
        .unwrap()
        .ocsp
        .as_ref()
        .expect("a staple");
    assert_eq!(staple.response_status, "successful");
    assert_eq!(staple.certificate_status.as_deref(), Some("good"));
    assert_eq!(staple.verified, Some(true), "{staple:#?}");
    assert_eq!(staple.current, Some(true), "{staple:#?}");
    assert!(staple.next_update.is_some());
    assert_eq!(report.verdict, Verdict::Ok, "{:#?}", report.findings);

    // Signed by a key nobody trusts.
    let stranger = pki.ocsp_response(&leaf, false, true);
    let port = free_port();
    let _s = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-cert_chain",
            &chain,
            "-status_file",
            &stranger.display().to_string(),
        ],
    );
    let report = probe(&pki, port);
    assert_eq!(
        report
            .handshake
            .as_ref()
            .unwrap()
            .ocsp
            .as_ref()
            .unwrap()
            .verified,
        Some(false)
    );
    assert!(
        kinds(&report).contains(&"ocsp-staple-invalid"),
        "{:#?}",
        report.findings
    );

    // Revoked.
    let revoked = pki.ocsp_response(&leaf, true, false);
    let port = free_port();
    let _s = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-cert_chain",
            &chain,
            "-status_file",
            &revoked.display().to_string(),
        ],
    );
    let report = probe(&pki, port);
    assert!(
        kinds(&report).contains(&"certificate-revoked"),
        "{:#?}",
        report.findings
    );
}

#[test]
fn must_staple_needs_a_staple() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.must_staple = true;
    let (server, leaf) = serve(&pki, &spec, &[]);
    let report = probe(&pki, server.port);
    let checks = report.certificate_checks.as_ref().unwrap();
    assert!(checks.certificates[0].must_staple);
    assert!(
        kinds(&report).contains(&"must-staple-not-stapled"),
        "{:#?}",
        report.findings
    );
    assert_eq!(report.verdict, Verdict::Warnings);

    let staple = pki.ocsp_response(&leaf, false, false);
    let chain = pki.ca_bundle().display().to_string();
    let port = free_port();
    let _s = s_server(
        port,
        &leaf.cert,
        &leaf.key,
        &[
            "-cert_chain",
            &chain,
            "-status_file",
            &staple.display().to_string(),
        ],
    );
    let report = probe(&pki, port);
    assert_eq!(report.verdict, Verdict::Ok, "{:#?}", report.findings);
}

#[test]
fn a_missing_authority_key_identifier_is_a_warning() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.authority_key_id = false;
    let (server, _leaf) = serve(&pki, &spec, &[]);
    let report = probe(&pki, server.port);
    let checks = report.certificate_checks.as_ref().unwrap();
    assert!(!checks.certificates[0].authority_key_id);
    assert!(checks.certificates[1].authority_key_id && checks.certificates[1].subject_key_id);
    assert_eq!(
        kinds(&report),
        ["missing-key-identifier"],
        "{:#?}",
        report.findings
    );
    // Both trust views: --ca trusts the chain, the system store does not.
    assert_eq!(checks.trust.len(), 2, "{:#?}", checks.trust);
    assert_eq!(checks.trust[0].verify_code, 0);
    assert!(checks.trust[1].store.starts_with("system"));
    assert_ne!(checks.trust[1].verify_code, 0);
}

fn diagnose(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .arg("diagnose")
        .args(args)
        .output()
        .expect("running agent diagnose")
}

#[test]
fn a_certificate_with_1500_names_is_capped_in_both_views() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.sans = (0..1500).map(|i| format!("host{i}.{NAME}")).collect();
    spec.sans.push(NAME.to_string());
    let (server, _leaf) = serve(&pki, &spec, &[]);
    // A name the certificate does not cover: the mismatch lists names.
    let mut o = options(server.port, Some("other.test"), Some(&pki.ca_file));
    o.quick = true;
    let report = run_probe(&o, false);
    assert_eq!(root_cause(&report), Cause::HostnameMismatch);
    let chain = report.chain.as_ref().unwrap();
    assert_eq!(
        chain.certificates[0].sans.len(),
        agent::probe::display::MAX_LISTED_NAMES
    );
    let checks = report.certificate_checks.as_ref().unwrap();
    assert_eq!(checks.certificates[0].san_count, 1501);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("1,501 subjectAltNames")),
        "{:#?}",
        report.notes
    );
    let json = serde_json::to_string(&report).unwrap();
    assert!(
        json.len() < 40_000,
        "the JSON report is {} bytes",
        json.len()
    );
    let root = report.root_cause.as_ref().unwrap();
    assert!(
        root.summary.len() < 1_200,
        "{} bytes: {}",
        root.summary.len(),
        root.summary
    );

    // The binary, both views.
    let port = server.port.to_string();
    let target = format!("127.0.0.1:{port}");
    let ca = pki.ca_file.display().to_string();
    for json in [false, true] {
        let mut args = vec![
            target.as_str(),
            "--sni",
            "other.test",
            "--ca",
            &ca,
            "--quick",
        ];
        if json {
            args.push("--json");
        }
        let out = diagnose(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let longest = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(
            out.stdout.len() < 40_000,
            "json={json}: {} bytes",
            out.stdout.len()
        );
        assert!(longest < 1_500, "json={json}: a {longest}-byte line");
    }
}

#[test]
fn control_characters_from_the_server_are_escaped_for_people() {
    let pki = Pki::new();
    let mut spec = LeafSpec::new(NAME);
    spec.cn = "evil\u{1b}[2J\u{202e}name".to_string();
    let (server, _leaf) = serve(&pki, &spec, &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let ca = pki.ca_file.display().to_string();
    let out = diagnose(&[&target, "--sni", NAME, "--ca", &ca, "--quick"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains('\u{1b}'), "{text}");
    assert!(!text.contains('\u{202e}'), "{text}");
    assert!(text.contains("evil\\x1b[2J\\u{202e}name"), "{text}");
    // JSON keeps the value, escaped by JSON's own rules.
    let out = diagnose(&[&target, "--sni", NAME, "--ca", &ca, "--quick", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let cn = json["chain"]["certificates"][0]["common_name"]
        .as_str()
        .unwrap();
    assert_eq!(cn, "evil\u{1b}[2J\u{202e}name");
    assert!(!out.stdout.contains(&0x1b), "raw ESC in the JSON");
}

#[test]
fn exit_codes_display_names_and_the_progress_line() {
    let pki = Pki::new();
    let (server, _leaf) = serve(&pki, &LeafSpec::new(NAME), &[]);
    let target = format!("127.0.0.1:{}", server.port);
    let ca = pki.ca_file.display().to_string();
    // ok: 0, and no progress line when stderr is not a terminal.
    let out = diagnose(&[&target, "--sni", NAME, "--ca", &ca]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("probing"));
    assert!(stdout.contains("clients"), "{stdout}");
    // Refused: failed, 1, with people's words for the TCP result.
    let closed = format!("127.0.0.1:{}", free_port());
    let out = diagnose(&[&closed]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" refused (ECONNREFUSED)"), "{stdout}");
    assert!(!stdout.contains("Refused"), "{stdout}");
    // The command's own error: 2.
    let out = diagnose(&["bad host:1"]);
    assert_eq!(out.status.code(), Some(2));
    // On a terminal (script(1) gives the command a pty) the progress line
    // shows, and is cleared before the report.
    let line = format!(
        "{} diagnose {target} --sni {NAME} --ca {ca} >/dev/null",
        agent_binary().display()
    );
    let out = Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .expect("running script");
    let tty = String::from_utf8_lossy(&out.stdout);
    assert!(tty.contains("probing 127.0.0.1:"), "{tty:?}");
    assert!(tty.contains("\r\u{1b}[2K"), "{tty:?}");
}
