//! The simulation's judgement on made-up server answers: profile
//! matching, refusals explained from the enumeration, and each client's
//! certificate policy.

use chrono::{Duration, Utc};

use super::*;
use crate::evidence::certificates::{CertificateFact, ChainReport, TrustStore};
use crate::probe::certs::{CertificateCheck, CertificateChecks, TrustCheck};
use crate::probe::hello::{Flight, KeyExchange, ServerHello};
use crate::probe::iana::{TLS1_0, TLS1_2, TLS1_3};
use crate::probe::profiles::{CHROME, CURL_GNUTLS, GO_1_19, JAVA_17, OPENSSL_1_1_1, OPENSSL_3};
use crate::probe::report::{ProtocolProbe, ProtocolStatus};
use crate::probe::suites::{AcceptedSuite, EnumerationStatus, VersionSuites};

const NAME: &str = "site.example";

fn answer(version: u16, cipher: u16, kx: Option<KeyExchange>) -> Flight {
    Flight {
        hello: Some(ServerHello {
            version,
            cipher,
            retry: false,
            group: match kx {
                Some(KeyExchange::Group(g)) if version == TLS1_3 => Some(g),
                _ => None,
            },
            alpn: None,
            scts: None,
        }),
        key_exchange: kx.filter(|_| version != TLS1_3),
        ..Flight::default()
    }
}

fn alert(code: u8) -> Flight {
    Flight {
        alert: Some((2, code)),
        ..Flight::default()
    }
}

fn enumerated(version: u16, ids: &[u16], groups: &[&str]) -> VersionSuites {
    VersionSuites {
        version: iana::version_name(version),
        status: EnumerationStatus::Complete,
        server_preference: None,
        suites: ids
            .iter()
            .map(|&id| AcceptedSuite {
                id,
                name: iana::cipher_name(id),
                openssl_name: iana::openssl_cipher_name(id),
                key_exchange: None,
                strength: "ok".into(),
            })
            .collect(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        dh_bits: None,
        detail: None,
    }
}

fn rejected(version: u16) -> VersionSuites {
    let mut v = enumerated(version, &[], &[]);
    v.status = EnumerationStatus::Rejected;
    v
}

fn protocol(version: u16, accepted: bool) -> ProtocolProbe {
    ProtocolProbe {
        version: iana::version_name(version),
        status: if accepted {
            ProtocolStatus::Accepted
        } else {
            ProtocolStatus::Rejected
        },
        cipher: None,
        detail: None,
        default_client_offers: version >= TLS1_2,
    }
}

fn fact(key_type: &str, bits: u32, signature: &str, sans: &[&str]) -> CertificateFact {
    let now = Utc::now();
    CertificateFact {
        subject: format!("CN={NAME}"),
        issuer: "CN=test intermediate".into(),
        common_name: Some(NAME.into()),
        sans: sans.iter().map(|s| s.to_string()).collect(),
        serial: "01".into(),
        not_before: now - Duration::days(1),
        not_after: now + Duration::days(90),
        self_signed: false,
        is_ca: false,
        key_type: key_type.into(),
        key_bits: Some(bits),
        signature_algorithm: signature.into(),
        sha256: String::new(),
    }
}

fn chain(leaf: CertificateFact) -> ChainReport {
    ChainReport {
        source: "wire".into(),
        certificates: vec![leaf],
        verify_code: 0,
        verify_text: "ok".into(),
        name: Some(NAME.into()),
        findings: Vec::new(),
    }
}

fn checks(key_usage: Option<&[&str]>, server_auth: bool) -> CertificateChecks {
    CertificateChecks {
        certificates: vec![CertificateCheck {
            index: 0,
            subject: format!("CN={NAME}"),
            san_count: 1,
            key_usage: key_usage.map(|k| k.iter().map(|s| s.to_string()).collect()),
            extended_key_usage: None,
            server_auth,
            authority_key_id: true,
            subject_key_id: true,
            must_staple: false,
            embedded_scts: 0,
            self_signed: false,
            is_ca: false,
        }],
        trust: vec![TrustCheck {
            store: "--ca root.pem".into(),
            verify_code: 0,
            verify_text: "ok".into(),
        }],
        tls_extension_scts: None,
    }
}

struct World {
    chain: Option<ChainReport>,
    checks: CertificateChecks,
    trust: TrustStore,
    suites: Vec<VersionSuites>,
    protocols: Vec<ProtocolProbe>,
    client_certificate_required: bool,
}

impl World {
    fn new() -> World {
        World {
            chain: Some(chain(fact("EC", 256, "ecdsa-with-SHA256", &[NAME]))),
            checks: checks(Some(&["digitalSignature"]), true),
            trust: TrustStore::from_der_certificates(&[], "none").unwrap(),
            suites: Vec::new(),
            protocols: Vec::new(),
            client_certificate_required: false,
        }
    }

    fn run(&self, profile: &ClientProfile, flight: &Flight) -> ClientSimulation {
        let ctx = Context {
            chain: self.chain.as_ref(),
            served: &[],
            checks: &self.checks,
            trust: &self.trust,
            name: NAME,
            now: Utc::now(),
            client_certificate_required: self.client_certificate_required,
            suites: &self.suites,
            protocols: &self.protocols,
        };
        simulate(profile, flight, &ctx)
    }
}

#[test]
fn a_one_suite_server_names_its_suite_to_the_clients_that_lack_it() {
    // Only DHE-RSA-AES256-GCM-SHA384, TLS 1.2 only.
    let mut w = World::new();
    w.suites = vec![
        rejected(TLS1_0),
        enumerated(TLS1_2, &[0x009f], &[]),
        rejected(TLS1_3),
    ];
    w.protocols = vec![protocol(TLS1_2, true), protocol(TLS1_3, false)];
    for profile in [&GO_1_19, &CHROME] {
        let sim = w.run(profile, &alert(40));
        assert!(!sim.connects);
        assert_eq!(
            sim.failure_kind,
            Some(FailureKind::NoSharedCipher),
            "{sim:?}"
        );
        let why = sim.failure.unwrap();
        assert!(why.contains("DHE-RSA-AES256-GCM-SHA384"), "{why}");
        assert!(why.contains("handshake_failure"), "{why}");
    }
    let java = w.run(
        &JAVA_17,
        &answer(TLS1_2, 0x009f, Some(KeyExchange::Dh(2048))),
    );
    assert!(java.connects, "{java:?}");
    assert_eq!(java.cipher.as_deref(), Some("DHE-RSA-AES256-GCM-SHA384"));
    assert_eq!(java.key_exchange.as_deref(), Some("DH 2048 bits"));
}

#[test]
fn dh_size_legacy_versions_and_version_mismatch() {
    let mut w = World::new();
    let dh1024 = answer(TLS1_2, 0x009e, Some(KeyExchange::Dh(1024)));
    let sim = w.run(&OPENSSL_3, &dh1024);
    assert_eq!(
        sim.failure_kind,
        Some(FailureKind::WeakKeyExchange),
        "{sim:?}"
    );
    assert!(w.run(&JAVA_17, &dh1024).connects);
    assert!(w.run(&CURL_GNUTLS, &dh1024).connects);

    // A TLS 1.0-only server.
    w.suites = vec![
        enumerated(TLS1_0, &[0xc014], &[]),
        rejected(TLS1_2),
        rejected(TLS1_3),
    ];
    w.protocols = vec![
        protocol(TLS1_0, true),
        protocol(TLS1_2, false),
        protocol(TLS1_3, false),
    ];
    let tls10 = answer(TLS1_0, 0xc014, Some(KeyExchange::Group(23)));
    assert_eq!(
        w.run(&OPENSSL_3, &tls10).failure_kind,
        Some(FailureKind::LegacyVersion)
    );
    assert!(w.run(&OPENSSL_1_1_1, &tls10).connects);
    let go = w.run(&GO_1_19, &alert(70));
    assert_eq!(
        go.failure_kind,
        Some(FailureKind::NoSharedVersion),
        "{go:?}"
    );
    assert!(go.failure.unwrap().contains("TLS 1.0"));
}

#[test]
fn groups_and_signature_algorithms_explain_what_suites_do_not() {
    let mut w = World::new();
    // TLS 1.3 only, with x448 only.
    w.suites = vec![rejected(TLS1_2), enumerated(TLS1_3, &[0x1301], &["x448"])];
    w.protocols = vec![protocol(TLS1_2, false), protocol(TLS1_3, true)];
    let go = w.run(&GO_1_19, &alert(40));
    assert_eq!(go.failure_kind, Some(FailureKind::NoSharedGroup), "{go:?}");
    assert!(go.failure.unwrap().contains("x448"));
    // Groups in common too: the signature algorithms are what is left.
    w.suites = vec![rejected(TLS1_2), enumerated(TLS1_3, &[0x1301], &["x25519"])];
    let chrome = w.run(&CHROME, &alert(40));
    assert_eq!(
        chrome.failure_kind,
        Some(FailureKind::NoSharedSignatureAlgorithm)
    );
    // A group the client never offered is the server's error.
    let odd = answer(TLS1_3, 0x1301, Some(KeyExchange::Group(30)));
    assert_eq!(
        w.run(&GO_1_19, &odd).failure_kind,
        Some(FailureKind::NoSharedGroup)
    );
    // No answer at all.
    let silent = Flight {
        timed_out: true,
        ..Flight::default()
    };
    assert_eq!(
        w.run(&GO_1_19, &silent).failure_kind,
        Some(FailureKind::NoAnswer)
    );
}

#[test]
fn certificate_policies_differ_by_client() {
    let tls13 = answer(TLS1_3, 0x1301, Some(KeyExchange::Group(29)));
    let mut w = World::new();
    // SHA-1 signed, private CA: OpenSSL 3, Go, GnuTLS refuse; Java and
    // OpenSSL 1.1.1 accept.
    w.chain = Some(chain(fact("EC", 256, "ecdsa-with-SHA1", &[NAME])));
    let verdicts: Vec<bool> = [&OPENSSL_3, &OPENSSL_1_1_1, &JAVA_17, &GO_1_19, &CURL_GNUTLS]
        .iter()
        .map(|p| w.run(p, &tls13).connects)
        .collect();
    assert_eq!(verdicts, [false, true, true, false, false]);
    assert_eq!(
        w.run(&GO_1_19, &tls13).failure_kind,
        Some(FailureKind::WeakSignature)
    );
    // Under a public root Java refuses SHA-1 too.
    w.checks.trust[0].store = "system (/etc/ssl/certs)".into();
    assert!(!w.run(&JAVA_17, &tls13).connects);

    // RSA 1024: only OpenSSL 3 at level 2 refuses.
    let mut w = World::new();
    w.chain = Some(chain(fact("RSA", 1024, "sha256WithRSAEncryption", &[NAME])));
    w.checks = checks(None, true);
    let verdicts: Vec<bool> = [&OPENSSL_3, &JAVA_17, &GO_1_19, &CURL_GNUTLS]
        .iter()
        .map(|p| w.run(p, &tls13).connects)
        .collect();
    assert_eq!(verdicts, [false, true, true, true]);

    // keyUsage keyEncipherment only, TLS 1.3: strict clients refuse.
    w.chain = Some(chain(fact("RSA", 2048, "sha256WithRSAEncryption", &[NAME])));
    w.checks = checks(Some(&["keyEncipherment"]), true);
    let verdicts: Vec<bool> = [&OPENSSL_3, &JAVA_17, &GO_1_19, &CURL_GNUTLS]
        .iter()
        .map(|p| w.run(p, &tls13).connects)
        .collect();
    assert_eq!(verdicts, [true, false, true, false]);
    assert_eq!(
        w.run(&JAVA_17, &tls13).failure_kind,
        Some(FailureKind::KeyUsage)
    );

    // No serverAuth: everybody refuses but curl's GnuTLS backend, which
    // verifies without a purpose.
    w.checks = checks(None, false);
    for p in crate::probe::profiles::PROFILES {
        let refused = w.run(p, &tls13).failure_kind == Some(FailureKind::WrongPurpose);
        assert_eq!(refused, p.id != "curl-gnutls", "{}", p.id);
    }

    // The name only in the Common Name: Go and Chrome refuse.
    w.checks = checks(None, true);
    w.chain = Some(chain(fact("EC", 256, "ecdsa-with-SHA256", &[])));
    assert!(w.run(&OPENSSL_3, &tls13).connects);
    assert_eq!(
        w.run(&GO_1_19, &tls13).failure_kind,
        Some(FailureKind::NameMismatch)
    );
}

#[test]
fn failures_become_findings_that_a_root_cause_of_their_class_hides() {
    let mut w = World::new();
    w.client_certificate_required = true;
    let sim = w.run(
        &GO_1_19,
        &answer(TLS1_3, 0x1301, Some(KeyExchange::Group(29))),
    );
    assert_eq!(sim.failure_kind, Some(FailureKind::ClientCertificate));
    let ok = World::new().run(
        &GO_1_19,
        &answer(TLS1_3, 0x1301, Some(KeyExchange::Group(29))),
    );
    assert!(ok.connects);
    let found = findings(&[sim, ok]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].kind, "client-cannot-connect");
    assert_eq!(found[0].cause, Some(Cause::ClientCertificateRequired));
    assert!(
        found[0].summary.starts_with("Go 1.19"),
        "{}",
        found[0].summary
    );
}
