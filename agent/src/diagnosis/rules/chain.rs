//! chain-incomplete and untrusted-root: the client cannot build a chain from
//! the server's leaf to a root it trusts.
//!
//! Both show up as "unable to get local issuer certificate" (X509 error 20)
//! on the client and alert `unknown_ca` (48) on the wire. What tells them
//! apart is what the server sends and what the trust store holds: a leaf
//! whose issuer is neither in the served chain nor a trust anchor is a
//! missing intermediate; a chain ending in a self-signed (or unknown) root is
//! an untrusted root. Self-signed results (X509 18/19) are untrusted-root
//! on their own.

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::certificates::{ChainFinding, ChainReport};
use crate::evidence::openssl::verify;
use crate::outcome::Role;

use super::directives::{Directive, directive};
use super::{certificate_file, describe_setting, headline};

/// The verify results that mean "the issuer of the top of the chain as
/// built is nowhere to be found".
const ISSUER_NOT_FOUND: [i32; 3] = [
    verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    verify::UNABLE_TO_GET_ISSUER_CERT,
    verify::UNABLE_TO_VERIFY_LEAF_SIGNATURE,
];

/// The verify results of a client that could not build a chain to a root it
/// trusts. Any other failing result comes from a check OpenSSL makes only
/// after the chain was built (host name, dates, key strength, purpose).
const TRUST_FAILURES: [i32; 6] = [
    verify::UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
    verify::UNABLE_TO_GET_ISSUER_CERT,
    verify::UNABLE_TO_VERIFY_LEAF_SIGNATURE,
    verify::DEPTH_ZERO_SELF_SIGNED_CERT,
    verify::SELF_SIGNED_CERT_IN_CHAIN,
    verify::CERT_UNTRUSTED,
];

/// Certificate alerts that name another reason than trust: the client got
/// past building the chain (certificate_expired, certificate_revoked,
/// unsupported_certificate).
const OTHER_REASON_ALERTS: [u8; 3] = [43, 44, 45];

/// The client's own verdict says its chain was fine (it trusts the root and
/// has every intermediate) and the certificate failed for another reason.
/// The chain findings are made against THIS host's trust store, which need
/// not be the client's (a private CA in the client's own CA file), so they
/// do not explain such a failure.
fn client_trusted_the_chain(f: &Facts) -> bool {
    f.server_cert_verify_any()
        .is_some_and(|v| !TRUST_FAILURES.contains(&v.code))
        || f.alert_from(Role::Client, &OTHER_REASON_ALERTS).is_some()
}

/// The rejection names no reason (bad_certificate, certificate_unknown: JSSE
/// and Go send these whatever the problem): a chain finding made against
/// this host's store is one explanation among others.
fn unspecific_rejection(f: &Facts) -> bool {
    !f.server_certificate_rejection().is_empty()
}

fn is_missing_intermediate(f: &ChainFinding) -> bool {
    matches!(f, ChainFinding::MissingIntermediate { .. })
}

fn is_untrusted_root(f: &ChainFinding) -> bool {
    matches!(
        f,
        ChainFinding::UntrustedRoot { .. } | ChainFinding::SelfSignedLeaf { .. }
    )
}

/// The host analysed the served chain and found it complete: every issuer
/// is in it or in this host's trust store.
fn host_says_chain_complete(f: &Facts) -> bool {
    f.chain_reports().next().is_some()
        && f.findings(|x| is_missing_intermediate(x) || is_untrusted_root(x))
            .is_empty()
}

/// What the wire's TLS 1.2 Certificate message held, as evidence.
fn wire_chain_evidence(f: &Facts) -> Option<Evidence> {
    let certs = &f.outcome.tls.server_certificates;
    let leaf = certs.first()?;
    Some(Evidence::new(
        Source::Wire,
        format!(
            "the server's Certificate message held {} certificate(s); leaf \"{}\" issued by \"{}\"",
            certs.len(),
            leaf.subject,
            leaf.issuer
        ),
    ))
}

pub fn chain_incomplete(f: &Facts) -> Option<Diagnosis> {
    if client_trusted_the_chain(f) {
        return None;
    }
    let missing = f.findings(is_missing_intermediate);
    let issuer_not_found = f.server_cert_verify(&ISSUER_NOT_FOUND);
    let unknown_ca = f.alert_from(Role::Client, &[48]);
    let rejection = f.server_certificate_rejection();
    let wire_certs = &f.outcome.tls.server_certificates;

    let confidence = if !missing.is_empty() {
        if issuer_not_found.is_some() || unknown_ca.is_some() {
            Confidence::High
        } else if unspecific_rejection(f)
            || f.client_gave_up_after_server_hello()
            || super::after_handshake::closed_without_a_word(f)
        {
            // A client that sends its alert encrypted (rustls, TLS 1.3)
            // shows only that it left after the server's certificate; one
            // that verifies after the handshake (Node.js) that it left
            // right after it, without a request.
            Confidence::Medium
        } else {
            return None;
        }
    } else if issuer_not_found.is_some() || unknown_ca.is_some() {
        // The served chain carries intermediates (what is missing is the
        // root at the client: untrusted-root's case), or the host analysed
        // the chain and found no intermediate missing, or the client's own
        // verify result names another reason for its unknown_ca.
        let other_verify_result = f
            .server_cert_verify_any()
            .is_some_and(|v| !ISSUER_NOT_FOUND.contains(&v.code));
        if wire_certs.len() >= 2 || f.chain_reports().next().is_some() || other_verify_result {
            return None;
        }
        if issuer_not_found.is_some() {
            Confidence::Medium
        } else {
            Confidence::Low
        }
    } else {
        return None;
    };

    let issuer = missing
        .iter()
        .find_map(|(_, x)| match x {
            ChainFinding::MissingIntermediate { issuer } => Some(issuer.clone()),
            _ => None,
        })
        .or_else(|| f.wire_leaf().map(|c| c.issuer.clone()))
        .or_else(|| f.configured_leaf().map(|c| c.issuer.clone()));
    let issuer_words = issuer
        .as_deref()
        .map(|i| format!("\"{i}\""))
        .unwrap_or_else(|| "its issuing CA".to_string());

    let mut evidence: Vec<Evidence> = missing
        .iter()
        .map(|(report, finding)| {
            let e = super::cite::finding_evidence(report, finding);
            match (report.source.as_str(), f.certificate_setting()) {
                ("wire", _) | (_, None) => e,
                (_, Some((_, setting))) => e.at(setting.location()),
            }
        })
        .collect();
    evidence.extend(
        f.findings(|x| matches!(x, ChainFinding::WrongOrder))
            .iter()
            .map(|(report, finding)| super::cite::finding_evidence(report, finding)),
    );
    if let Some(e) = wire_chain_evidence(f) {
        evidence.push(e);
    }
    evidence.extend(rejection);

    let summary = format!(
        "{}: the server sends its certificate without the intermediate that links it to {issuer_words}, so the client cannot build a chain to a trusted root",
        headline(f)
    );
    let mut diagnosis =
        Diagnosis::new(Cause::ChainIncomplete, confidence, summary).with_evidence(evidence);

    let chain_file = f.block().and_then(|b| {
        b.chain_file
            .as_ref()
            .map(|s| (directive(b.kind, Directive::ChainFile), s))
    });
    diagnosis = match (chain_file, certificate_file(f)) {
        (Some((name, setting)), Some(cert)) => diagnosis
            .fix(format!(
                "Add the intermediate certificate that issued the leaf ({issuer_words}) to {}, then {}.",
                describe_setting(name, setting),
                cert.reload
            ))
            .fix_at(Some(setting.location())),
        (None, Some(cert)) => diagnosis
            .fix(format!(
                "Append the intermediate certificate(s) that issued the leaf ({issuer_words}) to {}, leaf first — the CA's full-chain file — then {}.",
                cert.described, cert.reload
            ))
            .fix_at(Some(cert.location)),
        _ => diagnosis.fix(format!(
            "{} must send its intermediate certificate(s) with the leaf: its operator should configure the CA's full chain (leaf first, then intermediates, e.g. fullchain.pem) instead of the bare certificate. A client can only work around it by adding the intermediate {issuer_words} to its CA file.",
            f.target()
        )),
    };
    if missing.is_empty() {
        diagnosis = diagnosis.or_maybe(
            Cause::UntrustedRoot,
            format!(
                "if {issuer_words} is a private CA that issued the leaf directly, its root is missing from the client's trust store"
            ),
        );
    }
    Some(diagnosis)
}

pub fn untrusted_root(f: &Facts) -> Option<Diagnosis> {
    if client_trusted_the_chain(f) {
        return None;
    }
    let self_signed = f.server_cert_verify(&[
        verify::DEPTH_ZERO_SELF_SIGNED_CERT,
        verify::SELF_SIGNED_CERT_IN_CHAIN,
    ]);
    let not_trusted = f.server_cert_verify(&[verify::CERT_UNTRUSTED]);
    let findings = f.findings(is_untrusted_root);
    let issuer_not_found = f.server_cert_verify(&ISSUER_NOT_FOUND);
    let unknown_ca = f.alert_from(Role::Client, &[48]);
    let rejection = f.server_certificate_rejection();
    let wire_certs = &f.outcome.tls.server_certificates;
    // The server sends intermediates but the top one's issuer is unknown to
    // the client: the chain is as the server means it, its root untrusted.
    let served_chain_with_unknown_top = issuer_not_found.is_some()
        && wire_certs.len() >= 2
        && wire_certs.last().is_some_and(|c| !c.self_signed);
    let host_complete = host_says_chain_complete(f);

    let mut alternative = None;
    let trust_rejection = issuer_not_found.is_some() || unknown_ca.is_some();
    let confidence = if self_signed.is_some() || (!findings.is_empty() && trust_rejection) {
        Confidence::High
    } else if not_trusted.is_some()
        || (!findings.is_empty()
            && (unspecific_rejection(f) || f.client_gave_up_after_server_hello()))
    {
        Confidence::Medium
    } else if served_chain_with_unknown_top {
        alternative = Some((
            Cause::ChainIncomplete,
            "a second intermediate between the served chain and the root may be missing",
        ));
        Confidence::Medium
    } else if (issuer_not_found.is_some() || unknown_ca.is_some()) && host_complete {
        // This host trusts the chain; the client does not.
        Confidence::Medium
    } else if unknown_ca.is_some()
        && f.chain_reports().next().is_none()
        && f.server_cert_verify_any().is_none()
    {
        Confidence::Low
    } else {
        return None;
    };

    let root_words = untrusted_root_name(f, &findings);
    let self_signed_leaf = findings
        .iter()
        .any(|(_, x)| matches!(x, ChainFinding::SelfSignedLeaf { .. }))
        || self_signed.is_some_and(|v| v.code == verify::DEPTH_ZERO_SELF_SIGNED_CERT);

    let mut evidence: Vec<Evidence> = findings
        .iter()
        .map(|(report, finding)| {
            let e = super::cite::finding_evidence(report, finding);
            match (report.source.as_str(), f.certificate_setting()) {
                ("wire", _) | (_, None) => e,
                (_, Some((_, setting))) => e.at(setting.location()),
            }
        })
        .collect();
    if let Some(e) = wire_chain_evidence(f) {
        evidence.push(e);
    }
    evidence.extend(rejection);
    if let Some(report) = f.host.configured_chain.as_ref().filter(|_| host_complete) {
        evidence.push(
            Evidence::new(
                Source::Host,
                format!(
                    "{} verifies against this host's trust store (\"{}\"), so the client's trust store lacks its root",
                    report.source, report.verify_text
                ),
            )
            .at(report.source.clone()),
        );
    }

    let what = if self_signed_leaf {
        "the server's certificate is self-signed and the client does not trust it".to_string()
    } else {
        format!("the server's chain ends in root {root_words}, which the client does not trust")
    };
    let summary = format!("{}: {what}", headline(f));
    let (fix, location) = untrusted_root_fix(f, &root_words, self_signed_leaf);
    let mut diagnosis = Diagnosis::new(Cause::UntrustedRoot, confidence, summary)
        .with_evidence(evidence)
        .fix(fix)
        .fix_at(location);
    if let Some((cause, why)) = alternative {
        diagnosis = diagnosis.or_maybe(cause, why);
    }
    if confidence == Confidence::Low {
        diagnosis = diagnosis.or_maybe(
            Cause::ChainIncomplete,
            "unknown_ca is also what a client sends when the server omits its intermediate",
        );
    }
    Some(diagnosis)
}

/// The untrusted root as a summary names it: from the chain findings, else
/// the issuer of the top served (or configured) certificate.
fn untrusted_root_name(f: &Facts, findings: &[(&ChainReport, &ChainFinding)]) -> String {
    let root = findings
        .iter()
        .find_map(|(_, x)| match x {
            ChainFinding::UntrustedRoot { root } => Some(root.clone()),
            ChainFinding::SelfSignedLeaf { subject } => Some(subject.clone()),
            _ => None,
        })
        .or_else(|| {
            f.outcome
                .tls
                .server_certificates
                .last()
                .map(|c| c.issuer.clone())
        })
        .or_else(|| {
            f.host
                .configured_chain
                .as_ref()
                .and_then(|c| c.certificates.last())
                .map(|c| c.issuer.clone())
        });
    root.as_deref()
        .map(|r| format!("\"{r}\""))
        .unwrap_or_else(|| "the server's root CA".to_string())
}

/// The fix for an untrusted root (`root_words` names it): trust it where
/// the clients are, or serve a certificate from a CA they trust.
fn untrusted_root_fix(
    f: &Facts,
    root_words: &str,
    self_signed_leaf: bool,
) -> (String, Option<String>) {
    let trust_store_fix = format!(
        "install {root_words} in the client's trust store (Debian/Ubuntu: copy it to /usr/local/share/ca-certificates/<name>.crt and run update-ca-certificates; curl: --cacert; OpenSSL: -CAfile)"
    );
    match (certificate_file(f), f.role()) {
        (Some(cert), _) if self_signed_leaf => (
            format!(
                "Replace the self-signed certificate in {} with one from a CA the clients trust, or {}; then {}.",
                cert.described, trust_store_fix, cert.reload
            ),
            Some(cert.location),
        ),
        (Some(cert), _) => (
            format!(
                "Either {trust_store_fix} on every client, or serve a certificate from a publicly trusted CA in {} and {}.",
                cert.described, cert.reload
            ),
            Some(cert.location),
        ),
        (None, Role::Client) => (
            format!(
                "If {} is meant to use a private CA, {} on this host; otherwise its operator must serve a certificate from a publicly trusted CA.",
                f.target(),
                trust_store_fix
            ),
            None,
        ),
        (None, Role::Server) => (
            format!(
                "Serve a certificate from a CA the clients trust, or {trust_store_fix} on every client."
            ),
            None,
        ),
    }
}
