//! Keeping the report readable whatever the server sends: long lists are
//! capped (a certificate with 1,500 names), long texts are cut, and for
//! people's eyes the control characters a server can put in names and
//! status lines are escaped (a subject with "\x1b[2J" must not clear the
//! terminal).

use std::borrow::Cow;

use crate::diagnosis::Diagnosis;
use crate::evidence::certificates::{CertificateFact, ChainFinding};

use super::report::ProbeReport;

// The generic helpers live in `crate::text` (the CLI and the console use
// them too); re-exported for the probe's modules.
pub use crate::text::{cap_list, cap_text, duration_words, escape, thousands};

/// Names listed per certificate; the rest are counted.
pub const MAX_LISTED_NAMES: usize = 20;
/// Characters of one free-text field (a summary, an evidence line).
pub const MAX_TEXT: usize = 1000;

fn cap_in_place(text: &mut String) {
    if let Cow::Owned(capped) = cap_text(text, MAX_TEXT) {
        *text = capped;
    }
}

fn cap_certificate(cert: &mut CertificateFact, which: &str, notes: &mut Vec<String>) {
    if cert.sans.len() > MAX_LISTED_NAMES {
        let note = format!(
            "{which} has {} subjectAltNames; the report lists the first {MAX_LISTED_NAMES}",
            thousands(cert.sans.len())
        );
        if !notes.contains(&note) {
            notes.push(note);
        }
        cert.sans.truncate(MAX_LISTED_NAMES);
    }
    cap_in_place(&mut cert.subject);
    cap_in_place(&mut cert.issuer);
}

fn cap_diagnosis(d: &mut Diagnosis) {
    cap_in_place(&mut d.summary);
    cap_in_place(&mut d.remediation);
    for e in &mut d.evidence {
        cap_in_place(&mut e.fact);
    }
    for a in &mut d.alternatives {
        cap_in_place(&mut a.why);
    }
}

fn cap_chain_findings(findings: &mut [ChainFinding]) {
    for f in findings {
        if let ChainFinding::NameMismatch { sans, .. } = f {
            sans.truncate(MAX_LISTED_NAMES);
        }
    }
}

/// Caps every list and text of the report that a server controls, in
/// place, and notes what was cut: the JSON and the human view both read
/// the capped report.
pub fn cap_report(report: &mut ProbeReport) {
    let mut notes = Vec::new();
    if let Some(chain) = &mut report.chain {
        for (i, c) in chain.certificates.iter_mut().enumerate() {
            cap_certificate(c, &format!("certificate #{i}"), &mut notes);
        }
        cap_chain_findings(&mut chain.findings);
    }
    if let Some(leaf) = report.without_sni.as_mut().and_then(|s| s.leaf.as_mut()) {
        cap_certificate(leaf, "the certificate served without SNI", &mut notes);
    }
    if let Some(outcome) = &mut report.outcome {
        for (i, c) in outcome.tls.server_certificates.iter_mut().enumerate() {
            cap_certificate(c, &format!("certificate #{i}"), &mut notes);
        }
        cap_diagnosis(&mut outcome.diagnosis);
    }
    if let Some(d) = &mut report.root_cause {
        cap_diagnosis(d);
    }
    for f in &mut report.findings {
        cap_in_place(&mut f.summary);
        cap_in_place(&mut f.remediation);
        for e in &mut f.evidence {
            cap_in_place(&mut e.fact);
        }
    }
    if let Some(h) = &mut report.handshake
        && let Some(failure) = &mut h.failure
    {
        cap_in_place(failure);
    }
    if let Some(c) = &mut report.client_certificate {
        cap_in_place(&mut c.how);
        for issuer in &mut c.acceptable_issuers {
            cap_in_place(issuer);
        }
    }
    for n in &mut report.notes {
        cap_in_place(n);
    }
    report.notes.extend(notes);
}
