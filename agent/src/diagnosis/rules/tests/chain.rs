//! chain-incomplete vs untrusted-root.

use super::scenario;
use crate::diagnosis::rules::chain::{chain_incomplete, untrusted_root};
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::verify;
use crate::outcome::Role;

fn missing_intermediate() -> ChainFinding {
    ChainFinding::MissingIntermediate {
        issuer: "CN=Lab Intermediate CA".into(),
    }
}

#[test]
fn chain_incomplete_at_a_local_server_names_the_file_and_line() {
    let d = scenario(Cause::ChainIncomplete).diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    assert!(
        d.remediation.contains(
            "/etc/nginx/certs/site.crt (ssl_certificate at /etc/nginx/sites-enabled/site:12)"
        ),
        "{}",
        d.remediation
    );
    assert!(d.remediation.contains("leaf first"));
    assert!(d.remediation.contains("nginx -t && systemctl reload nginx"));
    assert!(d.summary.contains("nginx[812]"), "{}", d.summary);
    assert!(d.summary.contains("site.example:443"), "{}", d.summary);
    // The host decided it: no untrusted-root alternative.
    assert!(!causes(&d).contains(&Cause::UntrustedRoot));
    // The client's alert, in clear and as nginx's OpenSSL reason 1048.
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Wire && e.fact.contains("unknown_ca (48)"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Openssl && e.fact.contains("tlsv1 alert unknown ca"))
    );
}

#[test]
fn chain_incomplete_from_a_local_client_alone_is_medium_with_untrusted_root_alternative() {
    // TLS 1.3: certificates are encrypted, only curl's OpenSSL tells.
    let d = Case::client()
        .tls13()
        .client_rejects_certificate(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 48)
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(causes(&d).contains(&Cause::UntrustedRoot));
    assert_eq!(d.fix_location, None);
    assert!(
        d.summary
            .starts_with("curl[4242] → site.example:443 (203.0.113.10)")
    );
    assert!(d.evidence.iter().any(|e| {
        e.source == Source::Openssl
            && e.fact
                .contains("X509 error 20 \"unable to get local issuer certificate\"")
    }));
    assert!(d.remediation.contains("site.example:443"));
}

#[test]
fn a_single_served_certificate_on_the_wire_is_chain_incomplete() {
    let d = Case::client()
        .tls12_with_certs(vec![site_leaf()])
        .client_rejects_certificate(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 48)
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Wire && e.fact.contains("held 1 certificate(s)"))
    );
    assert!(
        d.summary.contains("\"CN=Lab Intermediate CA\""),
        "{}",
        d.summary
    );
}

#[test]
fn a_served_intermediate_with_an_unknown_root_is_untrusted_root() {
    let d = Case::client()
        .tls12_with_certs(vec![site_leaf(), intermediate()])
        .client_rejects_certificate(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 48)
        .diagnose();
    assert_eq!(d.cause, Cause::UntrustedRoot);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(causes(&d).contains(&Cause::ChainIncomplete));
    assert!(d.summary.contains("\"CN=Lab Root CA\""), "{}", d.summary);
}

#[test]
fn self_signed_verify_results_are_untrusted_root() {
    for code in [
        verify::DEPTH_ZERO_SELF_SIGNED_CERT,
        verify::SELF_SIGNED_CERT_IN_CHAIN,
    ] {
        let case = Case::client().tls13().client_rejects_certificate(code, 48);
        let d = case.diagnose();
        assert_eq!(d.cause, Cause::UntrustedRoot, "X509 {code}");
        assert_eq!(d.confidence, Confidence::High);
        assert!(case.rule(chain_incomplete).is_none(), "X509 {code}");
        assert!(d.remediation.contains("update-ca-certificates"));
    }
}

#[test]
fn untrusted_root_at_a_local_server_names_the_file() {
    let d = Case::server()
        .tls13()
        .server_receives_alert(48)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![ChainFinding::UntrustedRoot {
                root: "CN=Lab Root CA".into(),
            }],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::UntrustedRoot);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::ChainIncomplete));
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    assert!(d.evidence.iter().any(|e| e.source == Source::Host
        && e.location.as_deref() == Some("/etc/nginx/sites-enabled/site:12")));
}

#[test]
fn a_self_signed_configured_leaf_is_replaced_not_extended() {
    let self_signed = leaf(SITE, SITE, &[SITE]);
    let d = Case::server()
        .tls13()
        .server_receives_alert(48)
        .configured_chain(report(
            SITE_CERT,
            vec![self_signed],
            verify::DEPTH_ZERO_SELF_SIGNED_CERT,
            vec![ChainFinding::SelfSignedLeaf {
                subject: "CN=site.example".into(),
            }],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::UntrustedRoot);
    assert!(
        d.remediation
            .starts_with("Replace the self-signed certificate in /etc/nginx/certs/site.crt")
    );
}

#[test]
fn unknown_ca_at_a_server_without_chain_analysis_is_ambiguous() {
    let d = Case::server().tls13().server_receives_alert(48).diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::Low);
    assert!(causes(&d).contains(&Cause::UntrustedRoot));
}

#[test]
fn unknown_ca_for_a_chain_this_host_trusts_points_at_the_client_trust_store() {
    let d = Case::server()
        .tls13()
        .server_receives_alert(48)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::UntrustedRoot);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(!causes(&d).contains(&Cause::ChainIncomplete));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("client's trust store lacks its root"))
    );
}

#[test]
fn an_encrypted_rejection_after_the_certificate_still_points_at_the_chain() {
    // A rustls client sends its alert encrypted: the wire shows a record of
    // alert length and a close, nginx's error queue nothing decisive.
    let d = Case::server()
        .tls13()
        .encrypted(Role::Client, 19, true)
        .closed_by("peer")
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![missing_intermediate()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::Medium);
}

#[test]
fn a_missing_intermediate_does_not_explain_an_unrelated_failure() {
    // The configured chain lacks its intermediate, but this handshake died
    // on a protocol version: the chain rule stays silent.
    let case = scenario(Cause::ProtocolVersionMismatch).configured_chain(report(
        SITE_CERT,
        vec![site_leaf()],
        verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
        vec![missing_intermediate()],
    ));
    assert!(case.rule(chain_incomplete).is_none());
    assert!(case.rule(untrusted_root).is_none());
    assert_eq!(case.diagnose().cause, Cause::ProtocolVersionMismatch);
}

#[test]
fn the_wire_chain_checked_against_this_hosts_store_decides_for_a_local_client() {
    let d = Case::client()
        .tls12_with_certs(vec![site_leaf()])
        .client_rejects_certificate(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY, 48)
        .wire_chain(report(
            "wire",
            vec![site_leaf()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![missing_intermediate()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::UntrustedRoot));
    assert!(d.evidence.iter().any(|e| {
        e.source == Source::Wire
            && e.fact
                .starts_with("the chain the server sent holds 1 certificate(s)")
    }));
}

fn private_root() -> ChainFinding {
    // What this host's analysis says of a private CA's chain (leaf +
    // intermediate served) when the system store lacks its root.
    ChainFinding::UntrustedRoot {
        root: "CN=Lab Root CA".into(),
    }
}

#[test]
fn a_client_whose_own_chain_verified_failed_for_another_reason() {
    // python with the private CA in its own CA file: its OpenSSL built the
    // chain and then failed the name (X509 62). This host's store lacks the
    // root, but that says nothing about this client.
    let case = Case::client()
        .sni(Some("api.example"))
        .tls12_with_certs(vec![site_leaf(), intermediate()])
        .client_rejects_certificate(verify::HOSTNAME_MISMATCH, 42)
        .wire_chain(report(
            "wire",
            vec![site_leaf(), intermediate()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![private_root()],
        ));
    assert!(case.rule(untrusted_root).is_none());
    assert!(case.rule(chain_incomplete).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert!(!causes(&d).contains(&Cause::UntrustedRoot));
    // The same for a missing intermediate the client had in its CA file.
    let case = Case::client()
        .tls12_with_certs(vec![site_leaf()])
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45)
        .wire_chain(report(
            "wire",
            vec![site_leaf()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![missing_intermediate()],
        ));
    assert!(case.rule(chain_incomplete).is_none());
}

#[test]
fn an_unspecific_alert_leaves_a_trust_finding_at_medium() {
    // nginx's side of the same failure: bad_certificate (42) names no
    // reason; the SAN gap (absolute) outranks the root this host lacks.
    let d = Case::server()
        .sni(Some("api.example"))
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![
                private_root(),
                ChainFinding::NameMismatch {
                    name: "api.example".into(),
                    sans: vec![SITE.into()],
                },
            ],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::High);
    let alt = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::UntrustedRoot)
        .expect("untrusted-root stays an alternative");
    assert!(alt.why.contains("medium"), "{}", alt.why);
    // A JSSE client's certificate_unknown (46) alone: untrusted-root, medium.
    let d = Case::server()
        .server_receives_alert(46)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![private_root()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::UntrustedRoot);
    assert_eq!(d.confidence, Confidence::Medium);
}

#[test]
fn an_expiry_alert_is_not_about_trust() {
    // certificate_expired (45): the client built its chain and then judged
    // the dates; the root this host lacks is not the story.
    let case = Case::server()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![
                valid_between(site_leaf(), days(-90), days(-1)),
                intermediate(),
            ],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![
                private_root(),
                ChainFinding::Expired {
                    index: 0,
                    subject: "CN=site.example".into(),
                    not_after: now() - days(1),
                },
            ],
        ));
    assert!(case.rule(untrusted_root).is_none());
    assert!(case.rule(chain_incomplete).is_none());
    assert_eq!(case.diagnose().cause, Cause::CertificateExpired);
}
