//! plaintext-to-tls-port vs tls-to-plaintext-port.

use super::scenario;
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::rules::plaintext::{plaintext_to_tls_port, tls_to_plaintext_port};
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::openssl::reason;
use crate::outcome::Role;

#[test]
fn plain_http_to_an_openssl_tls_port() {
    let case = scenario(Cause::PlaintextToTlsPort);
    assert!(case.rule(tls_to_plaintext_port).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::PlaintextToTlsPort);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Wire && e.fact.contains("HTTP GET request"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Openssl && e.fact.contains("\"http request\""))
    );
    assert!(d.remediation.starts_with("Use https://"));
    // 443 is a TLS port: the client is at fault, not the config.
    assert_eq!(d.fix_location, None);
}

#[test]
fn plain_http_to_nginx_shows_in_its_log() {
    // nginx spots the plain request itself (its OpenSSL never sees it) and
    // answers 400 "The plain HTTP request was sent to HTTPS port".
    let d = Case::server()
        .non_tls(Role::Client, "http-request", "HTTP GET request")
        .log(
            88,
            "info",
            "client sent plain HTTP request to HTTPS port while reading client request headers, client: 198.51.100.7, server: site.example",
            Some(Cause::PlaintextToTlsPort),
        )
        .diagnose();
    assert_eq!(d.cause, Cause::PlaintextToTlsPort);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.location.as_deref() == Some("/var/log/nginx/error.log:88"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.location.as_deref() == Some("/etc/nginx/sites-enabled/site:2"))
    );
}

#[test]
fn ssl_on_a_plain_http_port_is_a_config_slip() {
    let d = scenario(Cause::PlaintextToTlsPort)
        .server_at("10.0.0.5", 80)
        .edit_block(|b| b.listens[0].port = 80)
        .diagnose();
    assert_eq!(d.cause, Cause::PlaintextToTlsPort);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:2")
    );
    assert!(d.remediation.contains("remove `ssl`"), "{}", d.remediation);
}

#[test]
fn tls_to_a_plain_port_seen_by_the_client() {
    let case = scenario(Cause::TlsToPlaintextPort);
    assert!(case.rule(plaintext_to_tls_port).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::TlsToPlaintextPort);
    assert_eq!(d.confidence, Confidence::High);
    assert!(
        d.summary.contains("HTTP/1.1 response, status 400"),
        "{}",
        d.summary
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("\"wrong version number\""))
    );
}

#[test]
fn the_client_reason_alone_is_medium() {
    for code in [reason::WRONG_VERSION_NUMBER, reason::PACKET_LENGTH_TOO_LONG] {
        let d = Case::client()
            .client_hello(&["TLS 1.2", "TLS 1.3"])
            .call("SSL_connect", -1)
            .ssl_error(code, "ssl3_get_record")
            .diagnose();
        assert_eq!(d.cause, Cause::TlsToPlaintextPort, "reason {code}");
        assert_eq!(d.confidence, Confidence::Medium, "reason {code}");
    }
}

#[test]
fn tls_to_a_local_plain_port_names_its_listen_line() {
    let d = Case::client()
        .server_at("10.0.0.5", 8080)
        .client_hello(&["TLS 1.2", "TLS 1.3"])
        .call("SSL_connect", -1)
        .ssl_error(reason::WRONG_VERSION_NUMBER, "ssl3_get_record")
        .with_host(|h| {
            h.server_is_local = true;
            let mut block = nginx_block();
            block.listens[0].port = 8080;
            block.listens[0].ssl = false;
            h.blocks_on_port = vec![block];
            h.listeners_on_port = vec![listener("0.0.0.0", 8080)];
        })
        .diagnose();
    assert_eq!(d.cause, Cause::TlsToPlaintextPort);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:2")
    );
    assert!(
        d.remediation.contains("`listen 8080 ssl`"),
        "{}",
        d.remediation
    );
}

#[test]
fn wrong_version_number_at_a_server_means_the_client_spoke_something_else() {
    // The same reason text, from the other end: a non-TLS client.
    let case = Case::server()
        .call("SSL_do_handshake", -1)
        .ssl_error(reason::WRONG_VERSION_NUMBER, "ssl3_get_record");
    assert!(case.rule(tls_to_plaintext_port).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::PlaintextToTlsPort);
    assert_eq!(d.confidence, Confidence::Medium);
}

#[test]
fn an_sslv2_hello_is_a_version_problem_not_plain_text() {
    let case = Case::server().non_tls(Role::Client, "sslv2-hello", "SSLv2-format ClientHello");
    assert!(case.rule(plaintext_to_tls_port).is_none());
    assert_eq!(case.diagnose().cause, Cause::ProtocolVersionMismatch);
}
