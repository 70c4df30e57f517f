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
fn a_clock_stepped_by_about_the_gap_is_clock_skew() {
    let d = scenario(Cause::ClockSkew).diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert!(causes(&d).contains(&Cause::CertificateExpired));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Host && e.fact.contains("stepped forward by 3 days")),
        "{:#?}",
        d.evidence
    );
    assert!(d.remediation.contains("timedatectl set-ntp true"));
}

/// The lab's case: a VM without NTP (STA_UNSYNC, 16 s maximum error) and a
/// certificate three days past its notAfter, judged by the local client
/// (TLS 1.2: the dates are on the wire) and by the host's chain analysis.
#[test]
fn an_unsynchronized_clock_does_not_explain_an_expiry_days_ago() {
    let case = Case::client()
        .clock(false)
        .tls12_with_certs(vec![expired_leaf(), intermediate()])
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45);
    assert!(case.rule(clock_skew).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::ClockSkew), "{d:#?}");
    // The clock's state is a note, with why it does not explain the gap.
    let facts: Vec<&str> = d.evidence.iter().map(|e| e.fact.as_str()).collect();
    assert!(facts.iter().any(|f| f.contains("STA_UNSYNC")), "{facts:?}");
    assert!(
        facts.iter().any(|f| f.contains("cannot explain")),
        "{facts:?}"
    );

    // The same verdict by the host's analysis at a local server.
    let d = Case::server()
        .with_host(|h| h.clock = Some(clock(false)))
        .tls13()
        .server_receives_alert(45)
        .configured_chain(report(
            SITE_CERT,
            vec![expired_leaf(), intermediate()],
            verify::CERT_HAS_EXPIRED,
            vec![expired_finding()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired, "{d:#?}");

    // Unknown dates (TLS 1.3 to a remote server): nothing shows a skew.
    let d = Case::client()
        .clock(false)
        .tls13()
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45)
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
}

#[test]
fn an_expiry_within_the_clocks_possible_error_is_clock_skew() {
    let just_expired = valid_between(site_leaf(), -days(90), -chrono::TimeDelta::seconds(8));
    let case = Case::client()
        .clock(false)
        .tls12_with_certs(vec![just_expired, intermediate()])
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45);
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::ClockSkew, "{d:#?}");
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(causes(&d).contains(&Cause::CertificateExpired));
    // A synchronized clock's few milliseconds explain nothing.
    let d = case.clock(true).diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
}

#[test]
fn a_large_maximum_error_explains_only_gaps_within_it() {
    let with_error = |error_us: i64| {
        move |h: &mut crate::diagnosis::host::HostFacts| {
            let mut c = clock(true);
            c.max_error_us = error_us;
            h.clock = Some(c);
        }
    };
    let leaf = valid_between(site_leaf(), -days(90), -chrono::TimeDelta::seconds(3));
    let d = Case::client()
        .with_host(with_error(5_000_000))
        .tls12_with_certs(vec![leaf, intermediate()])
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45)
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    let d = Case::client()
        .with_host(with_error(5_000_000))
        .tls12_with_certs(vec![expired_leaf(), intermediate()])
        .client_rejects_certificate(verify::CERT_HAS_EXPIRED, 45)
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired);
}

#[test]
fn not_yet_valid_follows_the_clock_too() {
    let d = scenario(Cause::CertificateNotYetValid).diagnose();
    assert_eq!(d.cause, Cause::CertificateNotYetValid);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::ClockSkew));
    assert!(!causes(&d).contains(&Cause::HostnameMismatch));

    // Five days early by an unsynchronized clock: not yet valid.
    let early = valid_between(site_leaf(), days(5), days(400));
    let d = Case::client()
        .clock(false)
        .tls12_with_certs(vec![early.clone(), intermediate()])
        .client_rejects_certificate(verify::CERT_NOT_YET_VALID, 42)
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateNotYetValid);

    // The same with a clock stepped back a week: the clock.
    let d = Case::client()
        .with_host(|h| h.clock = Some(stepped_clock(-days(7))))
        .tls12_with_certs(vec![early, intermediate()])
        .client_rejects_certificate(verify::CERT_NOT_YET_VALID, 42)
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew);
    assert_eq!(d.confidence, Confidence::High);
    assert!(d.summary.contains("not yet valid"), "{}", d.summary);
    assert!(causes(&d).contains(&Cause::CertificateNotYetValid));
}

#[test]
fn a_clock_behind_the_agents_build_date_explains_not_yet_valid() {
    let early = valid_between(site_leaf(), days(1), days(400));
    let d = Case::client()
        .with_host(|h| {
            let mut c = clock(false);
            c.floors.push(crate::evidence::clock::TimeFloor {
                time: now() + days(3),
                source: "the agent's binary /usr/bin/agent".into(),
            });
            h.clock = Some(c);
        })
        .tls12_with_certs(vec![early, intermediate()])
        .client_rejects_certificate(verify::CERT_NOT_YET_VALID, 42)
        .diagnose();
    assert_eq!(d.cause, Cause::ClockSkew, "{d:#?}");
    assert!(
        d.evidence.iter().any(|e| e.fact.contains("agent's binary")),
        "{:#?}",
        d.evidence
    );
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

/// Go (alert 42 for any verify error) against nginx serving an expired
/// leaf from a private CA: the host's analysis finds both the expiry and a
/// root its own store lacks (the client had it). The date is absolute, the
/// trust finding is this host's: expired.
#[test]
fn an_unspecific_alert_with_an_expired_chain_is_expired_not_untrusted() {
    let d = Case::server()
        .client_hello(&["TLS 1.2"])
        .server_hello("TLS 1.2")
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![expired_leaf(), intermediate()],
            verify::CERT_HAS_EXPIRED,
            vec![
                ChainFinding::UntrustedRoot {
                    root: "CN=Lab Root CA".into(),
                },
                expired_finding(),
            ],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::CertificateExpired, "{d:#?}");
    assert_eq!(d.confidence, Confidence::High);
    assert!(causes(&d).contains(&Cause::UntrustedRoot));
}
