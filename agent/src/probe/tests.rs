//! Unit tests of the probe's pure pieces; the probe against real servers is
//! tested in the tests crate (`tests/tests/probe.rs`).

use super::request::{certificate_phrase, http_request, http_verdict};
use super::run::validate_sni;
use super::target;
use super::*;

#[test]
fn http_replies_that_refuse_for_a_certificate() {
    let nginx = b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n";
    assert_eq!(
        http_verdict(nginx),
        Some(("HTTP/1.1 400 Bad Request".to_string(), true))
    );
    assert_eq!(
        certificate_phrase(nginx).as_deref(),
        Some("400 No required SSL certificate was sent")
    );
    assert_eq!(
        http_verdict(b"HTTP/1.1 200 OK\r\n\r\nok"),
        Some(("HTTP/1.1 200 OK".to_string(), false))
    );
    assert_eq!(
        http_verdict(b"HTTP/1.1 404 Not Found\r\n\r\nno such page"),
        Some(("HTTP/1.1 404 Not Found".to_string(), false))
    );
    assert_eq!(http_verdict(b"SSH-2.0-OpenSSH_9.2\r\n"), None);
    assert_eq!(http_verdict(b""), None);
}

#[test]
fn the_request_names_the_host_as_curl_does() {
    let t = target::parse("[::1]:8443").unwrap();
    let req = String::from_utf8(http_request(&t, "::1")).unwrap();
    assert!(
        req.starts_with("GET / HTTP/1.1\r\nHost: [::1]:8443\r\n"),
        "{req}"
    );
    let t = target::parse("site.example").unwrap();
    let req = String::from_utf8(http_request(&t, "site.example")).unwrap();
    assert!(req.contains("\r\nHost: site.example\r\n"), "{req}");
    assert!(req.ends_with("\r\n\r\n"));
}

#[test]
fn sni_values_are_checked() {
    assert_eq!(validate_sni(" site.example ").unwrap(), "site.example");
    assert!(validate_sni("").is_err());
    assert!(validate_sni("a b").is_err());
    assert!(validate_sni("nul\0").is_err());
}

#[test]
fn budget_steps_end_at_the_total_deadline() {
    let b = Budget::new(Duration::from_secs(5), Duration::from_millis(50));
    let d = b.step_deadline().unwrap();
    assert!(d <= Instant::now() + Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(60));
    assert!(b.step_deadline().is_none());
    assert!(b.step_time().is_zero());
}

#[test]
fn invalid_options_are_errors_not_reports() {
    let mut o = ProbeOptions::new("bad host:443");
    assert!(matches!(
        probe(&o, None),
        Err(ProbeError::InvalidTarget { .. })
    ));
    o.target = "127.0.0.1:443".into();
    o.timeout = Duration::ZERO;
    assert!(matches!(
        probe(&o, None),
        Err(ProbeError::InvalidTimeout { .. })
    ));
    o.timeout = DEFAULT_TIMEOUT;
    o.ca = Some("/nonexistent/ca.pem".into());
    assert!(matches!(probe(&o, None), Err(ProbeError::CaFile { .. })));
}

#[test]
fn a_closed_local_port_is_refused_and_diagnosed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let report = probe(&ProbeOptions::new(format!("127.0.0.1:{port}")), None).unwrap();
    assert_eq!(report.verdict, Verdict::Failed);
    assert_eq!(report.addresses.len(), 1);
    assert_eq!(report.addresses[0].tcp, TcpResult::Refused);
    let root = report.root_cause.as_ref().unwrap();
    assert_eq!(root.cause, crate::diagnosis::Cause::PortNotListening);
    assert!(report.handshake.is_none());
    assert!(
        report
            .protocols
            .iter()
            .all(|p| p.status == ProtocolStatus::NotTested)
    );
    assert_eq!(
        report
            .outcome
            .as_ref()
            .and_then(|o| o.client.comm.as_deref()),
        Some(PROBE_THREAD_NAME)
    );
}

#[test]
fn a_report_round_trips_through_json() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut o = ProbeOptions::new(format!("127.0.0.1:{port}"));
    o.sni = Some("site.example".into());
    let report = probe(&o, None).unwrap();
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["schema"], SCHEMA_VERSION);
    assert_eq!(json["verdict"], "failed");
    assert_eq!(json["addresses"][0]["tcp"], "refused");
    assert_eq!(json["root_cause"]["cause"], "port-not-listening");
    assert_eq!(json["protocols"][0]["status"], "not-tested");
    // Absent means not tried: no handshake key at all.
    assert!(json.get("handshake").is_none());
    let back: ProbeReport = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(serde_json::to_value(&back).unwrap(), json);
    assert_eq!(back.verdict.exit_code(), 1);
}

mod findings_from_facts {
    use chrono::Utc;

    use super::super::findings::{Inputs, derive};
    use super::super::report::{
        ClientCertificateCheck, Finding, ProtocolProbe, ProtocolStatus, Severity,
    };
    use crate::diagnosis::{Cause, Confidence, Diagnosis};

    fn protocol(version: &str, status: ProtocolStatus, default: bool) -> ProtocolProbe {
        ProtocolProbe {
            version: version.to_string(),
            status,
            cipher: Some("X".into()),
            detail: None,
            default_client_offers: default,
        }
    }

    fn inputs<'a>(protocols: &'a [ProtocolProbe], root: Option<&'a Diagnosis>) -> Inputs<'a> {
        Inputs {
            root_cause: root,
            chain: None,
            served: &[],
            verified: &[],
            protocols,
            suites: &[],
            without_sni: None,
            client_certificate: None,
            ocsp: None,
            host: None,
            name: "site.example",
            now: Utc::now(),
        }
    }

    #[test]
    fn old_versions_accepted_and_no_tls13() {
        use ProtocolStatus::*;
        let protocols = [
            protocol("TLS 1.0", Accepted, false),
            protocol("TLS 1.1", Rejected, false),
            protocol("TLS 1.2", Accepted, true),
            protocol("TLS 1.3", Rejected, true),
        ];
        let found = derive(&inputs(&protocols, None), Vec::new());
        let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["weak-protocol-accepted", "tls13-not-supported"]);
        assert_eq!(found[0].severity, Severity::Warning);
        assert!(found[0].summary.contains("TLS 1.0"));
        assert!(!found[0].summary.contains("TLS 1.1"));
        assert_eq!(found[1].severity, Severity::Info);
    }

    #[test]
    fn the_root_cause_and_what_it_refines_are_not_repeated() {
        let root = Diagnosis::new(Cause::SniDefaultCertificate, Confidence::High, "x");
        let extra = vec![
            Finding::of(Cause::HostnameMismatch, Severity::Critical, "refined"),
            Finding::of(Cause::SniDefaultCertificate, Severity::Info, "same"),
            Finding::of(Cause::CertificateExpired, Severity::Critical, "other"),
            Finding::new("certificate-expiring-soon", Severity::Warning, "soon"),
        ];
        let found = derive(&inputs(&[], Some(&root)), extra);
        let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["certificate-expired", "certificate-expiring-soon"]);
    }

    #[test]
    fn an_optional_client_certificate_is_information() {
        let check = ClientCertificateCheck {
            required: Some(false),
            how: "served anyway".into(),
            acceptable_issuers: vec![],
        };
        let mut i = inputs(&[], None);
        i.client_certificate = Some(&check);
        let found = derive(&i, Vec::new());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, "client-certificate-optional");
        assert_eq!(found[0].cause, None);
        assert_eq!(found[0].severity, Severity::Info);
    }

    fn suites(version: &str, list: &[(u16, &str)], dh: Option<u32>) -> crate::probe::VersionSuites {
        crate::probe::VersionSuites {
            version: version.to_string(),
            status: crate::probe::EnumerationStatus::Complete,
            server_preference: None,
            suites: list
                .iter()
                .map(|&(id, strength)| crate::probe::AcceptedSuite {
                    id,
                    name: crate::probe::iana::cipher_name(id),
                    openssl_name: crate::probe::iana::openssl_cipher_name(id),
                    key_exchange: None,
                    strength: strength.to_string(),
                })
                .collect(),
            groups: Vec::new(),
            dh_bits: dh,
            detail: None,
        }
    }

    #[test]
    fn weak_suites_and_small_dh_groups() {
        let enumerated = [
            suites("TLS 1.0", &[(0x000a, "weak"), (0x0005, "insecure")], None),
            suites("TLS 1.2", &[(0xc02f, "ok"), (0x009e, "ok")], Some(1024)),
        ];
        let mut i = inputs(&[], None);
        i.suites = &enumerated;
        let found = derive(&i, Vec::new());
        let kinds: Vec<&str> = found.iter().map(|f| f.kind.as_str()).collect();
        assert_eq!(kinds, ["weak-cipher-suites", "weak-dh-parameters"]);
        assert!(
            found[0].summary.contains(
                "TLS 1.0: TLS_RSA_WITH_3DES_EDE_CBC_SHA (weak), TLS_RSA_WITH_RC4_128_SHA (insecure)"
            ),
            "{}",
            found[0].summary
        );
        assert!(
            !found[0].summary.contains("TLS 1.2"),
            "{}",
            found[0].summary
        );
        assert!(
            found[1].summary.contains("1024-bit"),
            "{}",
            found[1].summary
        );
        // 2048 bits and strong suites only: nothing to say.
        let fine = [suites("TLS 1.2", &[(0x009e, "ok")], Some(2048))];
        i.suites = &fine;
        assert!(derive(&i, Vec::new()).is_empty());
    }

    #[test]
    fn a_certificate_days_in_the_future_does_not_blame_the_clock() {
        use crate::evidence::certificates::{CertificateFact, ChainFinding, ChainReport};
        let now = Utc::now();
        let starts = |days: i64| {
            let not_before = now + chrono::Duration::days(days);
            ChainReport {
                source: "wire".into(),
                certificates: Vec::<CertificateFact>::new(),
                verify_code: 9,
                verify_text: "certificate is not yet valid".into(),
                name: None,
                findings: vec![ChainFinding::NotYetValid {
                    index: 0,
                    subject: "CN=site.example".into(),
                    not_before,
                }],
            }
        };
        let future = starts(5);
        let mut i = inputs(&[], None);
        i.chain = Some(&future);
        let found = derive(&i, Vec::new());
        assert!(
            !found[0].remediation.contains("timedatectl"),
            "{}",
            found[0].remediation
        );
        assert!(
            found[0].remediation.contains("5 days"),
            "{}",
            found[0].remediation
        );
        // Seconds ahead: a clock is the likelier story.
        let mut soon = starts(0);
        if let ChainFinding::NotYetValid { not_before, .. } = &mut soon.findings[0] {
            *not_before = now + chrono::Duration::seconds(30);
        }
        i.chain = Some(&soon);
        let found = derive(&i, Vec::new());
        assert!(
            found[0].remediation.contains("timedatectl"),
            "{}",
            found[0].remediation
        );
    }
}
