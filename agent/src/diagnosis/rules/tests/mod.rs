//! Rule and engine tests. Each family file tests its rules positively, from
//! both vantage points where both exist, and against its near neighbours.
//! This file holds one canonical scenario per class (used to prove every
//! class is reachable through the engine) and the engine's own tests.

mod chain;
mod connection;
mod names;
mod negotiation;
mod plaintext;
mod unknown;
mod validity;

use crate::diagnosis::{Cause, Confidence, REFINEMENTS, SPECIFICITY, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::{reason, verify};
use crate::outcome::Role;

use super::RULES;
use super::fixtures::*;

/// The textbook case of each class, as the catalogue describes it.
pub(super) fn scenario(cause: Cause) -> Case {
    match cause {
        // nginx serves the leaf alone; the client alerts unknown_ca.
        Cause::ChainIncomplete => Case::server()
            .tls13()
            .server_receives_alert(48)
            .configured_chain(report(
                SITE_CERT,
                vec![site_leaf()],
                verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                vec![ChainFinding::MissingIntermediate {
                    issuer: "CN=Lab Intermediate CA".into(),
                }],
            )),
        // curl against a self-signed server.
        Cause::UntrustedRoot => Case::client()
            .tls13()
            .client_rejects_certificate(verify::DEPTH_ZERO_SELF_SIGNED_CERT, 48),
        // curl asks for a name the certificate lacks: OpenSSL's own check.
        Cause::HostnameMismatch => Case::client()
            .sni(Some("api.site.example"))
            .tls13()
            .client_rejects_certificate(verify::HOSTNAME_MISMATCH, 42),
        // nginx has no block for shop.example; the default one answers.
        Cause::SniDefaultCertificate => Case::server()
            .sni(Some("shop.example"))
            .tls13()
            .server_receives_alert(42)
            .with_host(|h| {
                h.selected_block = Some(default_block());
                h.selected_by_default = true;
                h.blocks_on_port = vec![nginx_block(), default_block()];
            })
            .configured_chain(report(
                "/etc/nginx/certs/default.crt",
                vec![leaf("default.example", "Lab Intermediate CA", &["default.example"]), intermediate()],
                0,
                vec![ChainFinding::NameMismatch {
                    name: "shop.example".into(),
                    sans: vec!["default.example".into()],
                }],
            )),
        Cause::CertificateExpired => Case::client()
            .clock(true)
            .tls13()
            .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45),
        Cause::CertificateNotYetValid => Case::client()
            .clock(true)
            .tls13()
            .client_rejects_certificate(verify::CERT_NOT_YET_VALID, 42),
        // The same expiry, judged by an unsynchronized clock.
        Cause::ClockSkew => Case::client()
            .clock(false)
            .tls13()
            .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45),
        // A TLS 1.3-only client against nginx allowing TLSv1.2 only.
        Cause::ProtocolVersionMismatch => Case::server()
            .client_hello(&["TLS 1.3"])
            .call("SSL_do_handshake", -1)
            .ssl_error(
                reason::UNSUPPORTED_PROTOCOL,
                "tls_early_post_process_client_hello",
            )
            .alert(Role::Server, 70)
            .edit_block(|b| {
                if let Some(p) = &mut b.protocols {
                    p.value = vec!["TLSv1.2".into()];
                }
            }),
        Cause::NoSharedCipher => Case::server()
            .client_hello(&["TLS 1.2"])
            .cipher_suites(&["TLS_RSA_WITH_AES_256_CBC_SHA"])
            .call("SSL_do_handshake", -1)
            .ssl_error(reason::NO_SHARED_CIPHER, "tls_post_process_client_hello")
            .alert(Role::Server, 40),
        // A 1024-bit server key refused by curl at security level 2.
        Cause::WeakCryptoRejected => Case::client()
            .tls13()
            .client_rejects_certificate(verify::EE_KEY_TOO_SMALL, 42),
        Cause::PortNotListening => Case::client()
            .server_at("10.0.0.5", 443)
            .connect_refused()
            .with_host(|h| {
                h.server_is_local = true;
                h.blocks_on_port = vec![nginx_block()];
            }),
        Cause::ListenerBoundToLoopback => Case::client()
            .server_at("10.0.0.5", 8443)
            .connect_refused()
            .with_host(|h| {
                h.server_is_local = true;
                h.listeners_on_port = vec![listener("127.0.0.1", 8443)];
                let mut block = nginx_block();
                block.listens[0].addr = Some(ip("127.0.0.1"));
                block.listens[0].port = 8443;
                h.blocks_on_port = vec![block];
            }),
        // An OpenSSL server (s_server) reading `GET / HTTP/1.1`.
        Cause::PlaintextToTlsPort => Case::server()
            .non_tls(Role::Client, "http-request", "HTTP GET request")
            .call("SSL_do_handshake", -1)
            .ssl_error(reason::HTTP_REQUEST, "ssl3_get_record"),
        Cause::TlsToPlaintextPort => Case::client()
            .server_at("203.0.113.10", 8080)
            .client_hello(&["TLS 1.2", "TLS 1.3"])
            .non_tls(Role::Server, "http-response", "HTTP/1.1 response, status 400")
            .call("SSL_connect", -1)
            .ssl_error(reason::WRONG_VERSION_NUMBER, "ssl3_get_record"),
        // TLS 1.3 mTLS: SSL_connect succeeds, the first SSL_read fails.
        Cause::ClientCertificateRequired => Case::client()
            .tls13()
            .call("SSL_connect", 1)
            .call("SSL_read", 0)
            .ssl_error(reason::TLSV13_ALERT_CERTIFICATE_REQUIRED, "ssl3_read_bytes"),
        Cause::ServerCannotLoadCertificate => Case::client()
            .server_at("10.0.0.5", 443)
            .connect_refused()
            .with_host(|h| {
                h.server_is_local = true;
                h.listeners_on_port.clear();
                h.blocks_on_port = vec![nginx_block()];
                h.selected_block = Some(nginx_block());
            })
            .configured_chain(report(
                SITE_CERT,
                vec![],
                0,
                vec![ChainFinding::Unreadable {
                    path: SITE_CERT.into(),
                    error: "No such file or directory".into(),
                }],
            ))
            .log(
                41,
                "emerg",
                "cannot load certificate \"/etc/nginx/certs/site.crt\": BIO_new_file() failed (SSL: error:80000002:system library::No such file or directory:calling fopen(/etc/nginx/certs/site.crt, r) error:10000080:BIO routines::no such file)",
                Some(Cause::ServerCannotLoadCertificate),
            ),
        Cause::HandshakeAborted => Case::client()
            .client_hello(&["TLS 1.2", "TLS 1.3"])
            .established(517, 0)
            .reset_by_peer(),
        Cause::Unknown => Case::client()
            .tls13()
            .call("SSL_connect", -1)
            .ssl_error(reason::TLSV1_ALERT_INTERNAL_ERROR, "ssl3_read_bytes")
            .alert(Role::Server, 80),
    }
}

#[test]
fn every_cause_has_a_rule_that_produces_it() {
    for cause in Cause::ALL {
        if cause == Cause::Unknown {
            continue;
        }
        assert!(
            RULES.iter().any(|(c, _)| *c == cause),
            "no rule registered for {cause}"
        );
        let d = scenario(cause).diagnose();
        assert_eq!(d.cause, cause, "scenario for {cause} gave {d:#?}");
        assert!(!d.summary.is_empty() && !d.remediation.is_empty());
        assert!(!d.evidence.is_empty(), "{cause} without evidence");
    }
}

#[test]
fn each_rule_only_names_its_own_cause() {
    for cause in Cause::ALL {
        let case = scenario(cause);
        for (rule_cause, rule) in RULES {
            if let Some(d) = case.rule(*rule) {
                assert_eq!(d.cause, *rule_cause);
            }
        }
    }
}

#[test]
fn nothing_fits_gives_unknown() {
    let d = scenario(Cause::Unknown).diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    assert_eq!(d.confidence, Confidence::Low);
    assert!(d.alternatives.is_empty());
}

#[test]
fn specificity_ranks_every_cause_exactly_once() {
    for cause in Cause::ALL {
        assert_eq!(
            SPECIFICITY.iter().filter(|&&c| c == cause).count(),
            1,
            "{cause}"
        );
    }
    assert_eq!(SPECIFICITY.last(), Some(&Cause::Unknown));
}

#[test]
fn a_refining_cause_is_never_itself_refined() {
    for (refining, _, _) in REFINEMENTS {
        assert!(
            REFINEMENTS
                .iter()
                .all(|(_, refined, _)| refined != refining)
        );
    }
}

#[test]
fn alternatives_never_repeat_the_winner_or_each_other() {
    for cause in Cause::ALL {
        let d = scenario(cause).diagnose();
        let all = causes(&d);
        let mut unique = all.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), all.len(), "{cause}: {all:?}");
    }
}

#[test]
fn a_success_is_not_diagnosed() {
    let mut case = scenario(Cause::ChainIncomplete);
    case.outcome.result = crate::outcome::HandshakeResult::Success;
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    assert!(d.evidence.is_empty());
}

#[test]
fn refinement_beats_a_higher_confidence() {
    // Expired fires at high confidence on X509 10, clock-skew at medium; the
    // unsynchronized clock explains the expiry, so clock-skew still wins.
    let case = scenario(Cause::ClockSkew);
    let expired = case
        .rule(super::validity::certificate_expired)
        .expect("expired fires too");
    assert_eq!(expired.confidence, Confidence::High);
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert_eq!(d.confidence, Confidence::Medium);
    let alt = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::CertificateExpired)
        .expect("expiry kept as an alternative");
    assert!(alt.why.contains("really is expired"), "{}", alt.why);
}

#[test]
fn equal_confidence_goes_to_the_more_specific_cause() {
    // An expired leaf served without its intermediate, seen by a TLS 1.2
    // client: X509 20 (chain-incomplete, medium) and the wire's dates
    // (expired, medium). OpenSSL never got to the dates.
    let expired_leaf = valid_between(site_leaf(), -days(400), -days(35));
    let d = Case::client()
        .tls12_with_certs(vec![expired_leaf])
        .client_rejects_certificate(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 48)
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(causes(&d).contains(&Cause::CertificateExpired));
}

#[test]
fn host_evidence_is_located_and_sources_are_lettered() {
    let d = scenario(Cause::ChainIncomplete).diagnose();
    let host: Vec<_> = d
        .evidence
        .iter()
        .filter(|e| e.source == Source::Host)
        .collect();
    assert!(!host.is_empty());
    assert!(
        host.iter()
            .all(|e| e.location.as_deref() == Some("/etc/nginx/sites-enabled/site:12"))
    );
    let letters: String = d.evidence.iter().map(|e| e.source.letter()).collect();
    assert!(letters.contains('H') && letters.contains('U') && letters.contains('W'));
}

#[test]
fn diagnosis_serializes_with_the_catalogue_id() {
    let d = scenario(Cause::SniDefaultCertificate).diagnose();
    let json = serde_json::to_value(&d).expect("serializes");
    assert_eq!(json["cause"], "sni-default-certificate");
    assert_eq!(json["confidence"], "high");
    let sources: Vec<&str> = json["evidence"]
        .as_array()
        .expect("evidence list")
        .iter()
        .filter_map(|e| e["source"].as_str())
        .collect();
    assert!(
        sources.contains(&"wire") && sources.contains(&"host"),
        "{sources:?}"
    );
}

#[test]
fn an_alert_seen_twice_on_the_wire_is_one_sighting() {
    // `alert` repeats the first fatal entry of `alerts`.
    let case = Case::client()
        .alert(Role::Server, 70)
        .alert(Role::Server, 70);
    assert_eq!(case.facts().alerts().len(), 1);
}
