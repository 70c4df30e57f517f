//! Handshakes that completed and still failed: the TLS libraries on both
//! ends report success, and the connection dies for a TLS reason one layer
//! up. Three are common enough to look for:
//!
//! - curl checks the host name itself after `SSL_connect` returned, and on
//!   a mismatch just closes (close_notify, no alert, no request);
//! - nginx with `ssl_verify_client on` lets a TLS 1.2 client without a
//!   certificate finish the handshake, then answers HTTP 400 ("No required
//!   SSL certificate was sent") and logs it at `info`;
//! - Node.js verifies the server's chain itself once OpenSSL finished (its
//!   verify callback accepts everything), and on a chain it cannot build
//!   destroys the socket: no alert, no request.
//!
//! Another needs no host state: a client whose own OpenSSL completed the
//! handshake with a failing X.509 verdict and then closed without a word
//! verifies in its own code after the handshake (Node.js: its verify
//! callback always continues, JavaScript checks `verifyError()` and
//! destroys the socket), and rejected the chain.
//!
//! None shows in OpenSSL's return values, so assembly reports a success.
//! The wire narrows it down cheaply ([`worth_checking`]); host state (the
//! served certificate, the server block's `ssl_verify_client`, its log)
//! decides ([`failed`]), and the outcome becomes a failure the rules
//! diagnose (hostname-mismatch / sni-default-certificate,
//! client-certificate-required).

use crate::diagnosis::{Cause, Facts};
use crate::evidence::certificates::ChainFinding;
use crate::outcome::HandshakeOutcome;

use super::matching::certificate_covers;

/// The wire of a completed handshake looks like one of the two patterns:
/// cheap checks on the outcome alone, before any host state is read.
pub fn worth_checking(outcome: &HandshakeOutcome) -> bool {
    if outcome.is_failure() {
        return false;
    }
    let tls = &outcome.tls;
    let missing_certificate = tls.certificate_requested && tls.client_certificate_count == Some(0);
    let host_empty = crate::diagnosis::host::HostFacts::default();
    let f = Facts {
        outcome,
        host: &host_empty,
    };
    missing_certificate || closed_without_a_word(&f)
}

/// The client asked for a name (SNI), completed the handshake, and closed
/// without sending a request or an alert in clear.
pub fn closed_without_a_word(f: &Facts) -> bool {
    f.sni().is_some()
        && f.client_closed()
        && !f.client_sent_application_data()
        && f.alerts().is_empty()
}

/// Host state (or the TLS 1.2 wire) shows that the completed handshake
/// failed: the certificate served does not cover the name the client closed
/// on, or the server requires the client certificate the client did not
/// send.
pub fn failed(f: &Facts) -> bool {
    if f.outcome.is_failure() {
        return false;
    }
    name_not_covered(f)
        || intermediate_missing(f)
        || required_certificate_missing(f)
        || rejected_own_verdict(f)
}

/// The client closed without a word on a served chain that lacks its
/// intermediate (the TLS 1.2 wire, or the server's configured chain).
fn intermediate_missing(f: &Facts) -> bool {
    closed_without_a_word(f)
        && !f
            .findings(|x| matches!(x, ChainFinding::MissingIntermediate { .. }))
            .is_empty()
}

/// The client's OpenSSL finished with a failing chain verdict, and the
/// client closed without a request or an alert: it rejected the chain
/// itself. (A client that ignores the verdict, `curl -k`, sends its
/// request.)
fn rejected_own_verdict(f: &Facts) -> bool {
    f.server_cert_verify_any().is_some() && closed_without_a_word(f)
}

fn name_not_covered(f: &Facts) -> bool {
    let Some(sni) = f.sni() else {
        return false;
    };
    if !closed_without_a_word(f) {
        return false;
    }
    let wire = f
        .wire_leaf()
        .is_some_and(|leaf| !certificate_covers(leaf, sni));
    let host = !f
        .findings(|x| matches!(x, ChainFinding::NameMismatch { name, .. } if name.eq_ignore_ascii_case(sni)))
        .is_empty();
    wire || host
}

fn required_certificate_missing(f: &Facts) -> bool {
    let tls = &f.outcome.tls;
    if !(tls.certificate_requested && tls.client_certificate_count == Some(0)) {
        return false;
    }
    let required = f
        .block()
        .and_then(|b| b.verify_client.as_ref())
        .is_some_and(|s| matches!(s.value.as_str(), "on" | "require"));
    required || !f.log_lines(Cause::ClientCertificateRequired).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::Confidence;
    use crate::diagnosis::rules::fixtures::*;
    use crate::evidence::server_config::Setting;
    use crate::evidence::wire::EncryptedRecordFact;
    use crate::outcome::{HandshakeResult, Role};

    /// An encrypted record of `content_type` (TLS 1.2 keeps the outer type:
    /// 22 Finished, 21 alert, 23 data).
    fn record(mut case: Case, sender: Role, content_type: u8, length: u16) -> Case {
        case.outcome
            .tls
            .encrypted_records
            .push(EncryptedRecordFact {
                time: Some(now()),
                sender,
                content_type,
                length,
                probable_alert: content_type == 21 || length == 19,
            });
        case
    }

    /// A handshake both OpenSSLs completed, as curl leaves it after its own
    /// host-name check failed: Finished records, then its close_notify, no
    /// request (what agent/tests e2e saw with curl 7.88 and nginx 1.22).
    fn curl_closed_after_handshake(case: Case) -> Case {
        let tls13 = case
            .outcome
            .tls
            .server_hello
            .as_ref()
            .is_some_and(|s| s.version == "TLS 1.3");
        let function = match case.outcome.role {
            Role::Client => "SSL_connect",
            Role::Server => "SSL_do_handshake",
        };
        let closer = match case.outcome.role {
            Role::Client => "local",
            Role::Server => "peer",
        };
        let mut case = case.call(function, 1);
        case = if tls13 {
            let case = record(case, Role::Server, 23, 282);
            let case = record(case, Role::Client, 23, 69);
            record(case, Role::Client, 23, 19)
        } else {
            let case = record(case, Role::Client, 22, 40);
            let case = record(case, Role::Server, 22, 40);
            record(case, Role::Client, 21, 26)
        };
        succeeded(case.closed_by(closer))
    }

    fn succeeded(mut case: Case) -> Case {
        case.outcome.result = HandshakeResult::Success;
        case
    }

    #[test]
    fn curl_closing_on_a_name_the_served_leaf_lacks_is_a_failure() {
        // The wire (TLS 1.2) shows the leaf: it covers site.example only.
        let case = curl_closed_after_handshake(
            Case::client()
                .sni(Some("api.example"))
                .tls12_with_certs(vec![site_leaf(), intermediate()]),
        );
        assert!(worth_checking(&case.outcome));
        assert!(failed(&case.facts()));
        let mut failing = case.clone();
        failing.outcome.result = HandshakeResult::Failure;
        let d = failing.diagnose();
        assert_eq!(d.cause, Cause::HostnameMismatch);
        assert_eq!(d.confidence, Confidence::Medium);

        // The same close on a name the leaf covers is a client that had
        // nothing to say (a probe, `openssl s_client </dev/null`).
        let fine = curl_closed_after_handshake(
            Case::client().tls12_with_certs(vec![site_leaf(), intermediate()]),
        );
        assert!(worth_checking(&fine.outcome));
        assert!(!failed(&fine.facts()));

        // nginx closes the moment curl's close_notify arrives, and its FIN
        // may beat curl's: the close_notify still says who hung up.
        let raced = curl_closed_after_handshake(
            Case::client()
                .sni(Some("api.example"))
                .tls12_with_certs(vec![site_leaf(), intermediate()]),
        )
        .closed_by("peer");
        assert!(worth_checking(&raced.outcome));
        assert!(failed(&raced.facts()));
        let mut failing = raced;
        failing.outcome.result = HandshakeResult::Failure;
        assert_eq!(failing.diagnose().cause, Cause::HostnameMismatch);
    }

    #[test]
    fn node_closing_on_a_chain_without_its_intermediate_is_chain_incomplete() {
        // node completes the handshake, verifies afterwards, and destroys
        // the socket: no alert, no request. The wire (TLS 1.2) shows the
        // leaf alone; its issuer is not in the host's store either.
        let node = |case: Case| {
            let case = record(case, Role::Client, 22, 40);
            succeeded(record(case, Role::Server, 22, 40).closed_by("local"))
        };
        let missing = vec![ChainFinding::MissingIntermediate {
            issuer: "Intermediate CA".into(),
        }];
        let case = node(
            Case::client()
                .sni(Some(SITE))
                .tls12_with_certs(vec![site_leaf()]),
        )
        .wire_chain(report("wire", vec![site_leaf()], 0, missing.clone()));
        assert!(worth_checking(&case.outcome));
        assert!(failed(&case.facts()));
        let mut failing = case.clone();
        failing.outcome.result = HandshakeResult::Failure;
        let d = failing.diagnose();
        assert_eq!(d.cause, Cause::ChainIncomplete);
        assert_eq!(d.confidence, Confidence::Medium);

        // The same silent close on a complete chain is a client that had
        // nothing to say.
        let complete = node(
            Case::client()
                .sni(Some(SITE))
                .tls12_with_certs(vec![site_leaf(), intermediate()]),
        )
        .wire_chain(report("wire", vec![site_leaf(), intermediate()], 0, vec![]));
        assert!(!failed(&complete.facts()));
    }

    #[test]
    fn in_tls_1_3_the_servers_configured_chain_decides() {
        // nginx's side: certificates are encrypted, the host's analysis of
        // the selected block's certificate for the SNI shows the gap.
        let case = curl_closed_after_handshake(Case::server().sni(Some("api.example")).tls13())
            .configured_chain(report(
                SITE_CERT,
                vec![site_leaf(), intermediate()],
                0,
                vec![ChainFinding::NameMismatch {
                    name: "api.example".into(),
                    sans: vec![SITE.into()],
                }],
            ));
        assert!(worth_checking(&case.outcome));
        assert!(failed(&case.facts()));
        // Without host state nothing shows it: it stays a success.
        let mut blind = case.clone();
        blind.host = Default::default();
        assert!(!failed(&blind.facts()));
    }

    #[test]
    fn a_client_closing_on_its_own_failing_verdict_is_a_failure() {
        // Node.js: the handshake completes (its verify callback always
        // continues), JavaScript sees verify result 18 and closes.
        let case = curl_closed_after_handshake(
            Case::client()
                .sni(Some(SITE))
                .tls12_with_certs(vec![site_leaf()])
                .verify(18),
        );
        assert!(worth_checking(&case.outcome));
        assert!(failed(&case.facts()));
        let mut failing = case.clone();
        failing.outcome.result = HandshakeResult::Failure;
        assert_eq!(failing.diagnose().cause, Cause::UntrustedRoot);
        // A passing verdict, or a client that went on with its request
        // despite the verdict (`curl -k`), is no failure.
        let passed = curl_closed_after_handshake(
            Case::client()
                .sni(Some(SITE))
                .tls12_with_certs(vec![site_leaf(), intermediate()])
                .verify(0),
        );
        assert!(!failed(&passed.facts()));
        let insecure = record(case, Role::Client, 23, 120);
        assert!(!worth_checking(&insecure.outcome));
        assert!(!failed(&insecure.facts()));
    }

    #[test]
    fn a_request_or_an_alert_is_not_curls_silent_close() {
        let sent_a_request = record(
            curl_closed_after_handshake(
                Case::client()
                    .sni(Some("api.example"))
                    .tls12_with_certs(vec![site_leaf()]),
            ),
            Role::Client,
            23,
            120,
        );
        assert!(!worth_checking(&sent_a_request.outcome));
        let alerted = curl_closed_after_handshake(
            Case::client()
                .sni(Some("api.example"))
                .tls12_with_certs(vec![site_leaf()]),
        )
        .alert(Role::Client, 42);
        assert!(!worth_checking(&alerted.outcome));
        let no_sni = curl_closed_after_handshake(
            Case::client().sni(None).tls12_with_certs(vec![site_leaf()]),
        );
        assert!(!worth_checking(&no_sni.outcome));
    }

    /// nginx's side of curl without a client certificate, TLS 1.2: the
    /// empty Certificate in clear, the handshake done, a request and the 400.
    fn mtls_without_certificate(case: Case) -> Case {
        let case = case
            .tls12_with_certs(vec![site_leaf(), intermediate()])
            .certificate_requested(Some(0))
            .call("SSL_do_handshake", 1);
        let case = record(case, Role::Client, 22, 40);
        let case = record(case, Role::Server, 22, 40);
        let case = record(case, Role::Client, 23, 102);
        let case = record(case, Role::Server, 23, 413);
        succeeded(record(case, Role::Server, 21, 26).closed_by("local"))
    }

    fn verify_client(value: &str) -> impl Fn(&mut crate::evidence::server_config::ServerBlock) {
        let value = value.to_string();
        move |b| {
            b.verify_client = Some(Setting {
                value: value.clone(),
                file: NGINX_SITE.into(),
                line: 16,
            })
        }
    }

    #[test]
    fn nginx_requiring_a_certificate_the_client_did_not_send_is_a_failure() {
        let case = mtls_without_certificate(Case::server()).edit_block(verify_client("on"));
        assert!(worth_checking(&case.outcome));
        assert!(failed(&case.facts()));
        let mut failing = case;
        failing.outcome.result = HandshakeResult::Failure;
        let d = failing.diagnose();
        assert_eq!(d.cause, Cause::ClientCertificateRequired);
        assert_eq!(d.confidence, Confidence::High);
        assert_eq!(
            d.fix_location.as_deref(),
            Some("/etc/nginx/sites-enabled/site:16")
        );

        // Its log line alone says so too.
        let logged = mtls_without_certificate(Case::server()).log(
            57,
            "info",
            "client sent no required SSL certificate while reading client request headers",
            Some(Cause::ClientCertificateRequired),
        );
        assert!(failed(&logged.facts()));
    }

    #[test]
    fn an_optional_client_certificate_left_out_is_a_success() {
        let case = mtls_without_certificate(Case::server()).edit_block(verify_client("optional"));
        assert!(worth_checking(&case.outcome));
        assert!(!failed(&case.facts()));
        // A client that sent one.
        let mut sent = mtls_without_certificate(Case::server()).edit_block(verify_client("on"));
        sent.outcome.tls.client_certificate_count = Some(1);
        assert!(!failed(&sent.facts()));
    }
}
