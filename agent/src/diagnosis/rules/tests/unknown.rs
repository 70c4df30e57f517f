//! unknown keeps every raw fact.

use super::scenario;
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::certificates::ChainFinding;
use crate::outcome::Role;

#[test]
fn unknown_keeps_alert_reason_verify_bytes_and_errno() {
    let d = scenario(Cause::Unknown)
        .verify(0)
        .established(517, 7)
        .closed_by("peer")
        .diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    let has = |source: Source, text: &str| {
        d.evidence
            .iter()
            .any(|e| e.source == source && e.fact.contains(text))
    };
    assert!(
        has(Source::Wire, "internal_error (80)"),
        "{:#?}",
        d.evidence
    );
    assert!(has(
        Source::Openssl,
        "\"tlsv1 alert internal error\" (SSL reason 1080) in ssl3_read_bytes"
    ));
    assert!(has(Source::Openssl, "SSL_connect returned -1"));
    assert!(has(Source::Openssl, "X509 error 0 \"ok\""));
    assert!(has(Source::Wire, "versions offered: TLS 1.2, TLS 1.3"));
    assert!(has(Source::Socket, "517 bytes sent, 7 bytes received"));
    assert!(has(Source::Socket, "closed first by: peer"));
    assert!(
        d.summary
            .contains("alert internal_error (80) from the server"),
        "{}",
        d.summary
    );
    assert!(
        d.remediation
            .contains("openssl s_client -connect site.example:443 -servername site.example")
    );
}

#[test]
fn an_unexplained_connect_error_is_kept() {
    let mut case = Case::client();
    case.outcome.socket.connect_errno = Some(libc::ENETUNREACH);
    case.outcome.socket.connect_error = Some("ENETUNREACH".into());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    assert_eq!(d.confidence, Confidence::Low);
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Socket && e.fact.contains("ENETUNREACH"))
    );
    assert!(d.summary.contains("connect ENETUNREACH"));
}

#[test]
fn unknown_keeps_host_facts_with_their_locations() {
    let d = Case::server()
        .tls13()
        .alert(Role::Client, 49)
        .log(70, "info", "SSL_do_handshake() failed (SSL: error:0A000419:SSL routines::tlsv1 alert access denied:SSL alert number 49)", None)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf()],
            0,
            vec![ChainFinding::WrongOrder],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::Unknown);
    assert!(d.evidence.iter().any(|e| e.source == Source::Host
        && e.location.as_deref() == Some("/var/log/nginx/error.log:70")));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("not in leaf-to-root order"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("access_denied (49)"))
    );
}
