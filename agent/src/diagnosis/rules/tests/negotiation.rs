//! protocol-version-mismatch vs no-shared-cipher vs client-certificate-
//! required vs weak-crypto-rejected.

use super::scenario;
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::rules::matching::enabled_versions;
use crate::diagnosis::rules::negotiation::{
    client_certificate_required, no_shared_cipher, protocol_version_mismatch,
};
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::{reason, verify};
use crate::evidence::server_config::{ServerKind, Setting};
use crate::outcome::Role;

fn nginx_setting<T>(value: T, line: u32) -> Option<Setting<T>> {
    Some(Setting {
        value,
        file: NGINX_SITE.into(),
        line,
    })
}

#[test]
fn server_setting_versions_parse_in_both_syntaxes() {
    let v = |s: &[&str]| enabled_versions(&s.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    assert_eq!(v(&["TLSv1.2", "TLSv1.3"]), vec![0x0303, 0x0304]);
    assert_eq!(
        v(&["all", "-SSLv3", "-TLSv1", "-TLSv1.1"]),
        vec![0x0303, 0x0304]
    );
    assert_eq!(v(&["-all", "+TLSv1.3"]), vec![0x0304]);
    assert_eq!(v(&["TLSv1"]), vec![0x0301]);
}

#[test]
fn alert_70_with_the_server_config_names_ssl_protocols() {
    let d = scenario(Cause::ProtocolVersionMismatch).diagnose();
    assert_eq!(d.cause, Cause::ProtocolVersionMismatch);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:14")
    );
    assert!(
        d.remediation.starts_with("Enable TLS 1.3 in ssl_protocols"),
        "{}",
        d.remediation
    );
    assert!(d.evidence.iter().any(|e| e.source == Source::Host
        && e.fact == "ssl_protocols TLSv1.2"
        && e.location.as_deref() == Some("/etc/nginx/sites-enabled/site:14")));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Openssl && e.fact.contains("\"unsupported protocol\""))
    );
}

#[test]
fn alert_70_seen_by_a_local_client_alone() {
    let d = Case::client()
        .client_hello(&["TLS 1.0", "TLS 1.1"])
        .call("SSL_connect", -1)
        .ssl_error(reason::TLSV1_ALERT_PROTOCOL_VERSION, "ssl3_read_bytes")
        .alert(Role::Server, 70)
        .diagnose();
    assert_eq!(d.cause, Cause::ProtocolVersionMismatch);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary.contains("offers only TLS 1.0, TLS 1.1"),
        "{}",
        d.summary
    );
    assert!(d.remediation.starts_with("Upgrade curl[4242]"));
    assert_eq!(d.fix_location, None);
}

#[test]
fn a_tls_1_0_client_against_openssl_3_gets_internal_error_not_70() {
    // Debian's OpenSSL 3 at security level 2: no SHA-1 signature for a
    // TLS 1.0 client, so "no suitable signature algorithm" and alert 80.
    let server_view = Case::server()
        .client_hello(&["TLS 1.0"])
        .call("SSL_do_handshake", -1)
        .ssl_error(reason::NO_SUITABLE_SIGNATURE_ALGORITHM, "tls_choose_sigalg")
        .alert(Role::Server, 80);
    assert!(server_view.rule(no_shared_cipher).is_none());
    let d = server_view.diagnose();
    assert_eq!(d.cause, Cause::ProtocolVersionMismatch);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("security level 2"))
    );
    assert!(
        d.remediation
            .contains("ssl_protocols at /etc/nginx/sites-enabled/site:14")
    );

    let client_view = Case::client()
        .client_hello(&["TLS 1.0"])
        .call("SSL_connect", -1)
        .ssl_error(reason::TLSV1_ALERT_INTERNAL_ERROR, "ssl3_read_bytes")
        .alert(Role::Server, 80);
    let d = client_view.diagnose();
    assert_eq!(d.cause, Cause::ProtocolVersionMismatch);
    assert_eq!(d.confidence, Confidence::Medium);
}

#[test]
fn internal_error_for_a_modern_client_is_not_a_version_problem() {
    let case = scenario(Cause::Unknown);
    assert!(case.rule(protocol_version_mismatch).is_none());
}

#[test]
fn no_shared_cipher_at_the_server_names_ssl_ciphers() {
    let case = scenario(Cause::NoSharedCipher);
    assert!(case.rule(protocol_version_mismatch).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::NoSharedCipher);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:15")
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Wire && e.fact.contains("TLS_RSA_WITH_AES_256_CBC_SHA"))
    );
    assert!(d.remediation.contains("\"HIGH:!aNULL:!MD5\""));
}

#[test]
fn handshake_failure_before_server_hello_at_a_local_client() {
    let d = Case::client()
        .client_hello(&["TLS 1.2"])
        .call("SSL_connect", -1)
        .ssl_error(reason::SSLV3_ALERT_HANDSHAKE_FAILURE, "ssl3_read_bytes")
        .alert(Role::Server, 40)
        .diagnose();
    assert_eq!(d.cause, Cause::NoSharedCipher);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(!causes(&d).contains(&Cause::ProtocolVersionMismatch));
}

#[test]
fn no_shared_groups_is_named_as_groups() {
    let d = Case::server()
        .client_hello(&["TLS 1.3"])
        .call("SSL_do_handshake", -1)
        .ssl_error(reason::NO_SHARED_GROUPS, "tls_parse_ctos_key_share")
        .alert(Role::Server, 40)
        .diagnose();
    assert_eq!(d.cause, Cause::NoSharedCipher);
    assert!(d.summary.contains("no key-exchange group"), "{}", d.summary);
}

#[test]
fn handshake_failure_after_a_certificate_request_is_a_missing_client_certificate() {
    // TLS 1.2 mTLS: the client answers the CertificateRequest with an empty
    // Certificate, the server alerts handshake_failure (40).
    let case = Case::client()
        .tls12_with_certs(vec![site_leaf(), intermediate()])
        .certificate_requested(Some(0))
        .call("SSL_connect", -1)
        .ssl_error(reason::SSLV3_ALERT_HANDSHAKE_FAILURE, "ssl3_read_bytes")
        .alert(Role::Server, 40);
    assert!(case.rule(no_shared_cipher).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(d.summary.contains("sent none"), "{}", d.summary);
    assert!(d.remediation.contains("--cert"));
}

#[test]
fn tls_1_3_mtls_fails_at_the_first_read() {
    let d = scenario(Cause::ClientCertificateRequired).diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("tlsv13 alert certificate required"))
    );
}

/// s_client presenting a certificate the server's CA did not issue, TLS
/// 1.3: SSL_connect returns 1, then its first read raises "tlsv1 alert
/// unknown ca" (the server's alert, encrypted). Not `unknown`.
#[test]
fn tls_1_3_client_certificate_refused_after_the_handshake_returned() {
    let case = Case::client()
        .tls13()
        .call("SSL_connect", 1)
        .encrypted(Role::Client, 53, false)
        .ssl_error(reason::ALERT_OFFSET + 48, "ssl3_read_bytes");
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired, "{d:#?}");
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary.contains("rejected the one the client sent"),
        "{}",
        d.summary
    );
    assert!(!causes(&d).contains(&Cause::ChainIncomplete));
    assert!(!causes(&d).contains(&Cause::UntrustedRoot));
    // Before the client's handshake completed, a server's unknown_ca is
    // not about a client certificate (TLS 1.2 without a request).
    let d = Case::client()
        .client_hello(&["TLS 1.2"])
        .server_hello("TLS 1.2")
        .call("SSL_connect", -1)
        .ssl_error(reason::ALERT_OFFSET + 48, "ssl3_read_bytes")
        .diagnose();
    assert_ne!(d.cause, Cause::ClientCertificateRequired);
}

fn require_client_certificates(case: Case) -> Case {
    case.edit_block(|b| {
        b.verify_client = nginx_setting("on".to_string(), 16);
        b.client_ca = nginx_setting("/etc/nginx/certs/clients-ca.crt".into(), 17);
    })
}

#[test]
fn peer_did_not_return_a_certificate_at_the_server_names_ssl_verify_client() {
    let d = require_client_certificates(Case::server().tls13())
        .call("SSL_do_handshake", -1)
        .ssl_error(
            reason::PEER_DID_NOT_RETURN_A_CERTIFICATE,
            "tls_process_client_certificate",
        )
        .diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:16")
    );
    assert!(d.remediation.contains("/etc/nginx/certs/clients-ca.crt (ssl_client_certificate at /etc/nginx/sites-enabled/site:17)"), "{}", d.remediation);
    assert!(d.remediation.contains("`ssl_verify_client optional`"));
}

#[test]
fn nginx_completes_the_handshake_and_logs_the_missing_certificate() {
    let completed = || {
        require_client_certificates(Case::server().tls13())
            .call("SSL_do_handshake", 1)
            .encrypted(Role::Client, 74, false)
            .encrypted(Role::Client, 98, false)
    };
    let d = completed()
        .log(
            57,
            "info",
            "client sent no required SSL certificate while reading client request headers, client: 198.51.100.7, server: site.example, request: \"GET / HTTP/1.1\"",
            Some(Cause::ClientCertificateRequired),
        )
        .diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(d.evidence.iter().any(|e| e.source == Source::Host
        && e.location.as_deref() == Some("/var/log/nginx/error.log:57")));

    // The setting alone, without the log line, is only a guess.
    let case = completed();
    let d = case.rule(client_certificate_required).expect("fires");
    assert_eq!(d.confidence, Confidence::Low);
}

#[test]
fn a_client_certificate_the_server_cannot_verify_is_unacceptable() {
    let d = require_client_certificates(Case::server().tls13())
        .certificate_requested(Some(1))
        .call("SSL_do_handshake", -1)
        .ssl_error(
            reason::CERTIFICATE_VERIFY_FAILED,
            "tls_process_client_certificate",
        )
        .verify(verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY)
        .alert(Role::Server, 48)
        .diagnose();
    assert_eq!(d.cause, Cause::ClientCertificateRequired);
    assert!(
        d.summary.contains("rejected the one the client sent"),
        "{}",
        d.summary
    );
    // The server verified the CLIENT's certificate: not a server chain problem.
    assert!(!causes(&d).contains(&Cause::ChainIncomplete));
}

#[test]
fn weak_server_key_refused_by_the_client() {
    let d = scenario(Cause::WeakCryptoRejected).diagnose();
    assert_eq!(d.cause, Cause::WeakCryptoRejected);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("EE certificate key too weak"))
    );
    assert!(d.remediation.contains("@SECLEVEL=1"));
    // curl's verify result explains its bad_certificate alert: the other
    // readings of alert 42 do not apply.
    assert!(d.alternatives.is_empty(), "{:?}", d.alternatives);
}

#[test]
fn weak_key_at_a_local_server_names_the_file() {
    let mut small = site_leaf();
    small.key_bits = Some(1024);
    let d = Case::server()
        .tls13()
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![small, intermediate()],
            verify::EE_KEY_TOO_SMALL,
            vec![ChainFinding::WeakKey {
                index: 0,
                subject: "CN=site.example".into(),
                key_type: "RSA".into(),
                bits: 1024,
            }],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::WeakCryptoRejected);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    assert!(!causes(&d).contains(&Cause::HostnameMismatch));
    assert!(!causes(&d).contains(&Cause::CertificateNotYetValid));
}

#[test]
fn small_dh_parameters_refused_by_the_client() {
    let d = Case::client()
        .tls12_with_certs(vec![site_leaf(), intermediate()])
        .call("SSL_connect", -1)
        .ssl_error(reason::DH_KEY_TOO_SMALL, "tls_process_ske_dhe")
        .alert(Role::Client, 40)
        .diagnose();
    assert_eq!(d.cause, Cause::WeakCryptoRejected);
    assert!(d.summary.contains("Diffie-Hellman"), "{}", d.summary);
    // The client sent handshake_failure after the ServerHello: not a cipher
    // mismatch.
    assert!(!causes(&d).contains(&Cause::NoSharedCipher));
}

#[test]
fn apache_directives_are_named_for_apache_blocks() {
    let d = scenario(Cause::ProtocolVersionMismatch)
        .edit_block(|b| b.kind = ServerKind::Apache)
        .diagnose();
    assert!(d.remediation.contains("SSLProtocol"), "{}", d.remediation);
    assert!(
        d.remediation.contains("apachectl configtest"),
        "{}",
        d.remediation
    );
}
