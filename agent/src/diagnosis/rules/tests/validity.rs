//! certificate-expired / certificate-not-yet-valid vs clock-skew, with the
//! clock injected synchronized or not.

use super::scenario;
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::rules::validity::{certificate_expired, clock_skew};
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::verify;

fn expired_leaf() -> crate::evidence::certificates::CertificateFact {
    valid_between(site_leaf(), -days(400), -days(3))
}

fn expired_finding() -> ChainFinding {
    ChainFinding::Expired {
        index: 0,
        subject: "CN=site.example".into(),
        not_after: now() - days(3),
    }
}

#[test]
fn expired_with_a_synchronized_clock_is_expired() {
    let case = scenario(Cause::CertificateExpired);
    assert!(case.rule(clock_skew).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::ClockSkew));
    assert!(d.remediation.contains("site.example:443"));
}

#[test]
fn expired_with_an_unsynchronized_clock_is_clock_skew() {
    let d = scenario(Cause::ClockSkew).diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert!(causes(&d).contains(&Cause::CertificateExpired));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Host && e.fact.contains("STA_UNSYNC"))
    );
    assert!(d.remediation.contains("timedatectl set-ntp true"));
}

#[test]
fn a_large_maximum_error_counts_as_untrustworthy() {
    let d = Case::client()
        .with_host(|h| {
            let mut c = clock(true);
            c.max_error_us = 5_000_000;
            h.clock = Some(c);
        })
        .tls13()
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45)
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
}

#[test]
fn not_yet_valid_follows_the_clock_too() {
    let d = scenario(Cause::CertificateNotYetValid).diagnose();
    assert_eq!(d.cause, Cause::CertificateNotYetValid);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::ClockSkew));
    assert!(!causes(&d).contains(&Cause::HostnameMismatch));

    let d = Case::client()
        .clock(false)
        .tls13()
        .client_rejects_certificate(verify::CERT_NOT_YET_VALID, 42)
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert!(d.summary.contains("not yet valid"), "{}", d.summary);
    assert!(causes(&d).contains(&Cause::CertificateNotYetValid));
}

#[test]
fn an_unsynchronized_clock_alone_is_not_clock_skew() {
    let case = scenario(Cause::ChainIncomplete).clock(false);
    assert!(case.rule(clock_skew).is_none());
}

#[test]
fn expiry_at_a_local_server_names_the_file_to_renew() {
    let d = Case::server()
        .tls13()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![expired_leaf(), intermediate()],
            verify::CERT_HAS_EXPIRED,
            vec![expired_finding()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    assert!(
        d.remediation
            .starts_with("Renew the certificate in /etc/nginx/certs/site.crt")
    );
    assert!(d.summary.contains("notAfter 2026-03-07"), "{}", d.summary);
}

#[test]
fn a_remote_client_calling_a_valid_certificate_expired_has_a_wrong_clock() {
    let d = Case::server()
        .tls13()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(d.summary.contains("client's clock"), "{}", d.summary);
    assert!(d.remediation.contains("198.51.100.7"));
    assert!(causes(&d).contains(&Cause::CertificateExpired));
}

#[test]
fn a_remote_client_agreeing_on_expiry_outweighs_our_unsynchronized_clock() {
    let case = Case::server()
        .clock(false)
        .tls13()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![expired_leaf(), intermediate()],
            verify::CERT_HAS_EXPIRED,
            vec![expired_finding()],
        ));
    assert!(case.rule(clock_skew).is_none());
    assert_eq!(case.diagnose().cause, Cause::CertificateExpired);
}

#[test]
fn an_expired_leaf_without_its_intermediate_reports_chain_incomplete() {
    // OpenSSL cannot build the chain, so it never checks the dates: the
    // client alerts unknown_ca, not certificate_expired.
    let d = Case::server()
        .tls13()
        .server_receives_alert(48)
        .configured_chain(report(
            SITE_CERT,
            vec![expired_leaf()],
            verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
            vec![
                ChainFinding::MissingIntermediate {
                    issuer: "CN=Lab Intermediate CA".into(),
                },
                expired_finding(),
            ],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::ChainIncomplete);
    assert_eq!(d.confidence, Confidence::High);
    let expiry = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::CertificateExpired)
        .expect("expiry mentioned");
    assert!(expiry.why.contains("medium"), "{}", expiry.why);
}

#[test]
fn a_renewed_certificate_the_server_has_not_loaded_says_reload() {
    // TLS 1.2: the wire shows the expired leaf still being served while the
    // file on disk holds a renewed one.
    let d = Case::server()
        .tls12_with_certs(vec![expired_leaf(), intermediate()])
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(d.summary.contains("has not been loaded"), "{}", d.summary);
    assert!(d.remediation.contains("systemctl reload nginx"));
}

#[test]
fn an_expired_intermediate_is_named_as_such() {
    let mut old_intermediate = intermediate();
    old_intermediate.not_after = now() - days(10);
    let d = Case::server()
        .tls13()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), old_intermediate],
            verify::CERT_HAS_EXPIRED,
            vec![ChainFinding::Expired {
                index: 1,
                subject: "CN=Lab Intermediate CA".into(),
                not_after: now() - days(10),
            }],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
    assert!(d.summary.contains("intermediate"), "{}", d.summary);
    assert!(
        d.remediation
            .starts_with("Replace the expired intermediate")
    );
}

#[test]
fn not_yet_valid_at_a_local_server_resolves_alert_42() {
    let post_dated = valid_between(site_leaf(), days(2), days(400));
    let case = Case::server()
        .tls13()
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![post_dated, intermediate()],
            verify::CERT_NOT_YET_VALID,
            vec![ChainFinding::NotYetValid {
                index: 0,
                subject: "CN=site.example".into(),
                not_before: now() + days(2),
            }],
        ));
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::CertificateNotYetValid);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::HostnameMismatch));
    assert!(case.rule(certificate_expired).is_none());
}
