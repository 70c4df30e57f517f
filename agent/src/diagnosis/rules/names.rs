//! hostname-mismatch and sni-default-certificate: the certificate served does
//! not cover the name the client asked for.
//!
//! The proof comes in several strengths. A client's OpenSSL says it outright
//! (X509 62/64). The wire (TLS 1.2) or the host's analysis of the served
//! chain shows SNI vs SAN. An OpenSSL client's alert 42 is shared with
//! not-yet-valid and weak keys. curl checks the name itself after a
//! completed handshake and just closes, which on its own is a guess.
//! sni-default-certificate is a mismatch whose reason is known: the
//! listener routes between two or more server blocks (virtual hosts) by
//! name, and the SNI matched none of them or the client sent none, so the
//! default block's certificate was served. With a single block on the
//! listener there is nothing to route: a name its certificate does not
//! cover is hostname-mismatch. Wildcards cover exactly one label (RFC 6125).

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Facts, Source};
use crate::evidence::certificates::ChainFinding;
use crate::evidence::openssl::verify;
use crate::outcome::Role;

use super::directives::{Directive, directive, reload_command};
use super::matching::{certificate_covers, certificate_names};
use super::{certificate_file, headline};

/// A name mismatch and how sure the facts make it.
struct Mismatch {
    confidence: Confidence,
    evidence: Vec<Evidence>,
    /// The name the client checked, when known.
    name: Option<String>,
    /// The names the served certificate covers, when known.
    served: Option<String>,
    /// The client checked an IP address (X509 64), so it sent no SNI by design.
    ip_target: bool,
}

/// The handshake completed, the client closed without an alert and without
/// sending a request: what curl does when its own name check fails.
fn closed_after_handshake(f: &Facts) -> bool {
    f.handshake_completed()
        && f.client_closed()
        && !f.client_sent_application_data()
        && f.alerts().is_empty()
}

fn name_mismatch(f: &Facts) -> Option<Mismatch> {
    let verify = f.server_cert_verify(&[verify::HOSTNAME_MISMATCH, verify::IP_ADDRESS_MISMATCH]);
    let findings = f.findings(|x| matches!(x, ChainFinding::NameMismatch { .. }));
    let wire_leaf_mismatch = match (f.sni(), f.wire_leaf()) {
        (Some(sni), Some(leaf)) if !certificate_covers(leaf, sni) => Some((sni, leaf)),
        _ => None,
    };
    let alert = f.alert_from(Role::Client, &[42, 46]);
    let closed = closed_after_handshake(f);
    let shown = !findings.is_empty() || wire_leaf_mismatch.is_some();
    // The host checked the chain for the requested name and it is covered.
    let host_clean = f.chain_reports().any(|r| r.name.is_some()) && !shown;

    let mut evidence = Vec::new();
    if let Some(v) = verify {
        evidence.push(f.verify_evidence(v));
    }
    let setting = f.certificate_setting().map(|(_, s)| s.location());
    for (report, finding) in &findings {
        let e = super::cite::finding_evidence(report, finding);
        evidence.push(match (&setting, report.source.as_str()) {
            (Some(location), source) if source != "wire" => e.at(location.clone()),
            _ => e,
        });
    }
    if let Some((sni, leaf)) = wire_leaf_mismatch
        && !findings.iter().any(|(r, _)| r.source == "wire")
    {
        evidence.push(Evidence::new(
            Source::Wire,
            format!(
                "the client asked for \"{sni}\" (SNI); the leaf the server sent covers {}",
                certificate_names(leaf)
            ),
        ));
    }
    if let Some(a) = alert {
        evidence.push(a.evidence());
    }
    if closed {
        evidence.push(Evidence::new(
            Source::Socket,
            "the client closed the connection right after the handshake completed, without an alert or a request (curl does this when its own host-name check fails)",
        ));
    }

    let confidence = if verify.is_some() || (shown && alert.is_some()) {
        Confidence::High
    } else if shown
        && (closed
            || f.client_gave_up_after_server_hello()
            || !f.server_certificate_rejection().is_empty())
    {
        Confidence::Medium
    } else if !host_clean
        && !shown
        && f.server_cert_verify_any().is_none()
        && (alert.is_some() || closed)
    {
        // Only while nothing better explains the alert: the client's own
        // verify result, when known, names its reason.
        Confidence::Low
    } else {
        return None;
    };

    let name = findings
        .iter()
        .find_map(|(_, x)| match x {
            ChainFinding::NameMismatch { name, .. } => Some(name.clone()),
            _ => None,
        })
        .or_else(|| f.sni().map(str::to_string));
    let served = f
        .wire_leaf()
        .or(f.configured_leaf())
        .map(certificate_names)
        .or_else(|| {
            findings.iter().find_map(|(_, x)| match x {
                ChainFinding::NameMismatch { sans, .. } => Some(sans.join(", ")),
                _ => None,
            })
        });
    Some(Mismatch {
        confidence,
        evidence,
        name,
        served,
        ip_target: verify.is_some_and(|v| v.code == verify::IP_ADDRESS_MISMATCH),
    })
}

pub fn hostname_mismatch(f: &Facts) -> Option<Diagnosis> {
    let m = name_mismatch(f)?;
    let name = m.name.clone().or_else(|| {
        m.ip_target
            .then(|| f.outcome.server.ip.map(|ip| ip.to_string()))
            .flatten()
    });
    let name_words = name
        .as_deref()
        .map(|n| format!("\"{n}\""))
        .unwrap_or_else(|| "the name the client asked for".to_string());
    let served_words = m
        .served
        .as_deref()
        .map(|s| format!(" (it covers {s})"))
        .unwrap_or_default();
    let summary = format!(
        "{}: the server's certificate does not cover {name_words}{served_words}",
        headline(f)
    );
    let covered = m
        .served
        .clone()
        .unwrap_or_else(|| "the names it lists".to_string());
    let mut diagnosis =
        Diagnosis::new(Cause::HostnameMismatch, m.confidence, summary).with_evidence(m.evidence);
    diagnosis = match certificate_file(f) {
        Some(cert) => diagnosis
            .fix(format!(
                "Put a certificate whose subjectAltName covers {name_words} in {}, or have clients use a name it covers ({covered}); then {}.",
                cert.described, cert.reload
            ))
            .fix_at(Some(cert.location)),
        None if m.ip_target => diagnosis.fix(format!(
            "Connect by a host name the certificate covers ({covered}) instead of the IP address, or have the operator of {} add the address as an IP subjectAltName.",
            f.target()
        )),
        None => diagnosis.fix(format!(
            "Connect with a name the certificate covers ({covered}), or have the operator of {} add {name_words} to its subjectAltName.",
            f.target()
        )),
    };
    if f.sni().is_none() && f.client_hello_seen() && !m.ip_target && !host_knows_routing(f) {
        diagnosis = diagnosis.or_maybe(
            Cause::SniDefaultCertificate,
            "the client sent no SNI: if the server hosts several names on this address, it served its default certificate",
        );
    }
    if m.confidence == Confidence::Low {
        diagnosis = diagnosis
            .or_maybe(
                Cause::CertificateNotYetValid,
                "OpenSSL clients send bad_certificate (42) for a certificate that is not yet valid too",
            )
            .or_maybe(
                Cause::WeakCryptoRejected,
                "and for a certificate key too weak for their security level",
            );
    }
    Some(diagnosis)
}

/// Host state shows how the server routes this address:port by name (its
/// blocks were found), so sni-default-certificate can be decided.
fn host_knows_routing(f: &Facts) -> bool {
    !f.host.routed_blocks.is_empty()
}

pub fn sni_default_certificate(f: &Facts) -> Option<Diagnosis> {
    let m = name_mismatch(f)?;
    // Virtual hosting: two or more blocks on the listener to choose from.
    // Without host state the listener's routing is unknown, and a client
    // without SNI is only a possibility (an alternative of the mismatch).
    if f.host.routed_blocks.len() < 2 {
        return None;
    }
    let default_block = f
        .host
        .selected_block
        .as_ref()
        .filter(|_| f.host.selected_by_default);
    let no_sni = f.sni().is_none() && f.client_hello_seen();
    // An IP-literal client sends no SNI by design: that is a plain mismatch.
    if m.ip_target && default_block.is_none() {
        return None;
    }
    if default_block.is_none() && !no_sni {
        return None;
    }
    let confidence = match default_block {
        Some(_) => m.confidence,
        None => m.confidence.min(Confidence::Medium),
    };

    let mut evidence = m.evidence;
    if no_sni {
        evidence.push(Evidence::new(
            Source::Wire,
            "the ClientHello carried no server_name (SNI) extension",
        ));
    }
    let port = f.server_port();
    if let Some(block) = default_block {
        let names: Vec<&str> = block
            .server_names
            .iter()
            .map(|n| n.value.as_str())
            .collect();
        let asked = f
            .sni()
            .map(|s| format!("names \"{s}\""))
            .unwrap_or_else(|| "is chosen without SNI".to_string());
        evidence.push(
            Evidence::new(
                Source::Host,
                format!(
                    "no server block on port {} {asked}: the default block (server_name {}) answered with its certificate",
                    port.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
                    if names.is_empty() { "-".to_string() } else { names.join(" ") }
                ),
            )
            .at(format!("{}:{}", block.file.display(), block.line)),
        );
        let others: Vec<String> = f
            .host
            .routed_blocks
            .iter()
            .filter(|b| b.location != block.location())
            .map(|b| format!("{} ({})", b.names.join(" "), b.location))
            .collect();
        if !others.is_empty() {
            evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the listener routes between {} blocks by name; the others serve: {}",
                    f.host.routed_blocks.len(),
                    others.join("; ")
                ),
            ));
        }
    }

    let what = match (f.sni(), default_block) {
        (None, _) => "the client sent no SNI".to_string(),
        (Some(sni), _) => format!("no server block is configured for \"{sni}\""),
    };
    let summary = format!(
        "{}: {what}, so the server's default certificate{} was served and does not match",
        headline(f),
        m.served
            .as_deref()
            .map(|s| format!(" (for {s})"))
            .unwrap_or_default()
    );
    let mut diagnosis =
        Diagnosis::new(Cause::SniDefaultCertificate, confidence, summary).with_evidence(evidence);

    let default_location = default_block.map(|b| {
        b.listens
            .iter()
            .find(|l| l.default_server && port.is_none_or(|p| p == l.port))
            .map(|l| format!("{}:{}", l.file.display(), l.line))
            .unwrap_or_else(|| format!("{}:{}", b.file.display(), b.line))
    });
    let fix = match (f.sni(), default_block, &default_location) {
        (Some(sni), Some(block), Some(location)) => format!(
            "Add `{} {sni}` to the server block that holds a certificate for it (or add such a block listening on port {}); today the default block at {location} answers for it. Then {}.",
            directive(block.kind, Directive::ServerName),
            port.map(|p| p.to_string())
                .unwrap_or_else(|| "this port".into()),
            reload_command(block.kind)
        ),
        (None, Some(block), Some(location)) => format!(
            "Make {} send SNI: connect by host name, not IP address (curl: https://NAME/ with --resolve NAME:PORT:IP; openssl s_client: -servername NAME). Or make the block meant for SNI-less clients the default (`listen ... default_server`, now at {location}) and {}.",
            f.process(Role::Client),
            reload_command(block.kind)
        ),
        _ => format!(
            "Make {} send SNI: connect by host name, not IP address (curl: https://NAME/ with --resolve NAME:PORT:IP; openssl s_client: -servername NAME); the server then picks the matching certificate.",
            f.process(Role::Client)
        ),
    };
    diagnosis = diagnosis
        .fix(fix)
        .fix_at(default_location.or_else(|| certificate_file(f).map(|c| c.location)));
    Some(diagnosis)
}
