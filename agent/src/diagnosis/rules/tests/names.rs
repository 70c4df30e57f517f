//! hostname-mismatch vs sni-default-certificate, and the alert-42 ambiguity.

use super::scenario;
use crate::diagnosis::rules::fixtures::*;
use crate::diagnosis::rules::matching::{certificate_covers, name_matches};
use crate::diagnosis::rules::names::{hostname_mismatch, sni_default_certificate};
use crate::diagnosis::{Cause, Confidence, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::verify;
use crate::outcome::Role;

fn api_mismatch() -> ChainFinding {
    ChainFinding::NameMismatch {
        name: "api.site.example".into(),
        sans: vec![SITE.into(), "www.site.example".into()],
    }
}

#[test]
fn wildcards_cover_exactly_one_label() {
    assert!(name_matches("www.site.example", "*.site.example"));
    assert!(name_matches("WWW.Site.Example.", "*.site.example"));
    assert!(!name_matches("site.example", "*.site.example"));
    assert!(!name_matches("a.b.site.example", "*.site.example"));
    assert!(!name_matches("site.example", "*.example"));
    assert!(name_matches("site.example", "site.example"));
    let mut cn_only = leaf(SITE, "Lab Intermediate CA", &[]);
    assert!(certificate_covers(&cn_only, SITE));
    cn_only.sans = vec!["other.example".into()];
    assert!(!certificate_covers(&cn_only, SITE), "SANs override the CN");
}

#[test]
fn verify_62_from_the_local_client_is_a_mismatch() {
    let d = scenario(Cause::HostnameMismatch).diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::High);
    assert!(!causes(&d).contains(&Cause::SniDefaultCertificate));
    assert!(!causes(&d).contains(&Cause::CertificateNotYetValid));
    assert!(d.summary.contains("\"api.site.example\""), "{}", d.summary);
    assert!(d.remediation.contains("subjectAltName"));
}

#[test]
fn alert_42_with_the_host_showing_the_san_gap_is_a_mismatch_at_the_server() {
    let case = Case::server()
        .sni(Some("api.site.example"))
        .tls13()
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![api_mismatch()],
        ));
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::High);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/site:12")
    );
    // The host state rules out the other readings of alert 42.
    assert!(!causes(&d).contains(&Cause::CertificateNotYetValid));
    assert!(!causes(&d).contains(&Cause::WeakCryptoRejected));
    assert!(case.rule(sni_default_certificate).is_none());
}

#[test]
fn alert_42_without_host_analysis_is_ambiguous() {
    let d = Case::server().tls13().server_receives_alert(42).diagnose();
    assert_eq!(d.confidence, Confidence::Low);
    let all = causes(&d);
    assert!(all.contains(&Cause::HostnameMismatch), "{all:?}");
    assert!(all.contains(&Cause::CertificateNotYetValid), "{all:?}");
    assert!(all.contains(&Cause::WeakCryptoRejected), "{all:?}");
}

#[test]
fn alert_42_with_a_host_chain_that_covers_the_name_is_not_a_mismatch() {
    let case = Case::server()
        .tls13()
        .server_receives_alert(42)
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![],
        ));
    assert!(case.rule(hostname_mismatch).is_none());
}

#[test]
fn curl_closing_after_a_completed_handshake_is_a_low_guess_from_the_server() {
    // curl 7.88 checks the name itself and closes without an alert: the
    // server sees a completed handshake, the client's Finished, then FIN.
    let curl_pattern = || {
        Case::server()
            .sni(Some("api.site.example"))
            .tls13()
            .call("SSL_do_handshake", 1)
            .encrypted(Role::Client, 74, false)
            .closed_by("peer")
    };
    let d = curl_pattern().diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::Low);
    assert!(d.evidence.iter().any(|e| e.source == Source::Socket));

    // With the host showing the configured certificate lacks the name.
    let d = curl_pattern()
        .configured_chain(report(
            SITE_CERT,
            vec![site_leaf(), intermediate()],
            0,
            vec![api_mismatch()],
        ))
        .diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::Medium);

    // A client that sent a request after the handshake was not refusing.
    let case = curl_pattern().encrypted(Role::Client, 120, false);
    assert!(case.rule(hostname_mismatch).is_none());
}

#[test]
fn the_wire_san_shows_a_mismatch_to_a_local_client_in_tls_1_2() {
    let d = Case::client()
        .sni(Some("api.site.example"))
        .tls12_with_certs(vec![site_leaf(), intermediate()])
        .call("SSL_connect", 1)
        .closed_by("local")
        .diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::Medium);
    assert!(d.evidence.iter().any(|e| e.source == Source::Wire
        && e.fact.contains("\"api.site.example\"")
        && e.fact.contains("www.site.example")));
}

#[test]
fn the_default_server_answering_is_sni_default_certificate() {
    let d = scenario(Cause::SniDefaultCertificate).diagnose();
    assert_eq!(d.cause, Cause::SniDefaultCertificate);
    assert_eq!(d.confidence, Confidence::High);
    let refined = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::HostnameMismatch)
        .expect("mismatch kept as the refined alternative");
    assert!(refined.why.contains("default server"), "{}", refined.why);
    assert_eq!(
        d.fix_location.as_deref(),
        Some("/etc/nginx/sites-enabled/default:2")
    );
    assert!(
        d.remediation.contains("`server_name shop.example`"),
        "{}",
        d.remediation
    );
    assert!(d.evidence.iter().any(|e| e.source == Source::Host
        && e.location.as_deref() == Some("/etc/nginx/sites-enabled/default:1")
        && e.fact.contains("default.example")));
}

#[test]
fn a_block_selected_by_name_makes_it_a_plain_mismatch() {
    let mut case = scenario(Cause::SniDefaultCertificate);
    case.host.selected_by_default = false;
    case.host.selected_block = Some(nginx_block());
    assert!(case.rule(sni_default_certificate).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert!(!causes(&d).contains(&Cause::SniDefaultCertificate));
}

#[test]
fn a_client_that_sends_no_sni_gets_the_default_certificate() {
    // nginx routes 443 between two blocks; the client sent no SNI.
    let d = scenario(Cause::SniDefaultCertificate).sni(None).diagnose();
    assert_eq!(d.cause, Cause::SniDefaultCertificate);
    assert!(causes(&d).contains(&Cause::HostnameMismatch));
    assert!(
        d.evidence
            .iter()
            .any(|e| e.source == Source::Wire && e.fact.contains("no server_name (SNI)"))
    );
    assert!(
        d.evidence
            .iter()
            .any(|e| e.fact.contains("routes between 2 blocks"))
    );
    assert!(d.remediation.contains("SNI"), "{}", d.remediation);
}

#[test]
fn without_host_state_a_missing_sni_is_only_an_alternative() {
    // A remote server: whether it hosts several names is unknown.
    let case = Case::client()
        .sni(None)
        .tls13()
        .client_rejects_certificate(verify::HOSTNAME_MISMATCH, 42);
    assert!(case.rule(sni_default_certificate).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert_eq!(d.confidence, Confidence::High);
    let alt = d
        .alternatives
        .iter()
        .find(|a| a.cause == Cause::SniDefaultCertificate)
        .expect("the missing SNI named as a possibility");
    assert!(alt.why.contains("no SNI"), "{}", alt.why);
}

/// One server block on the listener: nothing to route, so a name its
/// certificate lacks is a plain mismatch, with SNI or without.
#[test]
fn a_single_block_listener_is_a_plain_mismatch() {
    for sni in [Some("shop.example"), None] {
        let mut case = scenario(Cause::SniDefaultCertificate).sni(sni);
        case.host.routed_blocks = routed(&[&default_block()]);
        case.host.blocks_on_port = vec![default_block()];
        assert!(case.rule(sni_default_certificate).is_none(), "{sni:?}");
        let d = case.diagnose();
        assert_eq!(d.cause, Cause::HostnameMismatch, "{sni:?}: {d:#?}");
        assert!(!causes(&d).contains(&Cause::SniDefaultCertificate));
        assert_eq!(
            d.fix_location.as_deref(),
            Some("/etc/nginx/sites-enabled/default:6"),
            "the certificate line of the one block"
        );
    }
}

/// Apache: the first name-based vhost of *:443 is the default.
#[test]
fn apache_vhosts_route_like_nginx_blocks() {
    let mut first = default_block();
    first.kind = crate::evidence::server_config::ServerKind::Apache;
    let mut second = nginx_block();
    second.kind = crate::evidence::server_config::ServerKind::Apache;
    let mut case = scenario(Cause::SniDefaultCertificate);
    case.host.selected_block = Some(first.clone());
    case.host.blocks_on_port = vec![first.clone(), second.clone()];
    case.host.routed_blocks = routed(&[&first, &second]);
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::SniDefaultCertificate);
    assert!(
        d.remediation.contains("ServerName") || d.remediation.contains("ServerAlias"),
        "{}",
        d.remediation
    );
    case.host.routed_blocks = routed(&[&first]);
    assert_eq!(case.diagnose().cause, Cause::HostnameMismatch);
}

#[test]
fn an_ip_literal_client_is_a_plain_mismatch() {
    let case = Case::client()
        .sni(None)
        .tls13()
        .client_rejects_certificate(verify::IP_ADDRESS_MISMATCH, 42);
    assert!(case.rule(sni_default_certificate).is_none());
    let d = case.diagnose();
    assert_eq!(d.cause, Cause::HostnameMismatch);
    assert!(d.summary.contains("\"203.0.113.10\""), "{}", d.summary);
}
