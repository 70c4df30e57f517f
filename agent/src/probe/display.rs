//! Keeping the report readable whatever the server sends: long lists are
//! capped (a certificate with 1,500 names), long texts are cut, and for
//! people's eyes the control characters a server can put in names and
//! status lines are escaped (a subject with "\x1b[2J" must not clear the
//! terminal).

use std::borrow::Cow;

use crate::diagnosis::Diagnosis;
use crate::evidence::certificates::{CertificateFact, ChainFinding};

use super::report::ProbeReport;

/// Names listed per certificate; the rest are counted.
pub const MAX_LISTED_NAMES: usize = 20;
/// Characters of one free-text field (a summary, an evidence line).
pub const MAX_TEXT: usize = 1000;

/// "a, b, c and 1,497 more".
pub fn cap_list(items: &[String], max: usize) -> String {
    if items.len() <= max {
        return items.join(", ");
    }
    let shown = items.get(..max).unwrap_or(items).join(", ");
    format!("{shown} and {} more", thousands(items.len() - max))
}

/// 1497 → "1,497".
pub fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// "3 days", "5 hours", "12 minutes", "40 seconds" (the largest unit).
pub fn duration_words(d: chrono::Duration) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let per = match secs {
        0..=119 => 1,
        120..=7199 => 60,
        7200..=172_799 => 3600,
        _ => 86_400,
    };
    let unit = match per {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        _ => "day",
    };
    // Nearest, so "4 days 23:59:59" from a moment ago reads "5 days".
    let n = (secs + per / 2) / per;
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `text` cut to `max` characters, saying how much was cut.
pub fn cap_text(text: &str, max: usize) -> Cow<'_, str> {
    let count = text.chars().count();
    if count <= max {
        return Cow::Borrowed(text);
    }
    let kept: String = text.chars().take(max).collect();
    Cow::Owned(format!(
        "{kept}… ({} more characters)",
        thousands(count - max)
    ))
}

fn cap_in_place(text: &mut String) {
    if let Cow::Owned(capped) = cap_text(text, MAX_TEXT) {
        *text = capped;
    }
}

/// Characters that must not reach a terminal raw: C0 and C1 controls, DEL,
/// and the bidirectional overrides that reorder what is shown.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with control characters shown as escapes (`\x1b`, `\u{202e}`),
/// for human output. Newlines and tabs are escaped too: one value, one line.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            let code = c as u32;
            if code < 0x100 {
                out.push_str(&format!("\\x{code:02x}"));
            } else {
                out.push_str(&format!("\\u{{{code:04x}}}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_capped_with_a_count() {
        let names: Vec<String> = (0..1500).map(|i| format!("n{i}.example")).collect();
        let text = cap_list(&names, 3);
        assert_eq!(text, "n0.example, n1.example, n2.example and 1,497 more");
        assert_eq!(cap_list(&names[..2], 3), "n0.example, n1.example");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(duration_words(chrono::Duration::seconds(40)), "40 seconds");
        assert_eq!(duration_words(chrono::Duration::minutes(12)), "12 minutes");
        assert_eq!(duration_words(chrono::Duration::days(5)), "5 days");
        assert_eq!(duration_words(chrono::Duration::days(-1)), "24 hours");
        assert_eq!(
            duration_words(chrono::Duration::days(5) - chrono::Duration::seconds(3)),
            "5 days"
        );
    }

    #[test]
    fn texts_are_cut_on_characters() {
        let long = "é".repeat(1200);
        let cut = cap_text(&long, 1000);
        assert!(cut.starts_with(&"é".repeat(1000)));
        assert!(cut.ends_with("… (200 more characters)"), "{cut}");
        assert!(matches!(cap_text("short", 10), Cow::Borrowed(_)));
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("CN=ok.example"), "CN=ok.example");
        assert_eq!(escape("evil\x1b[2J\r\nname"), "evil\\x1b[2J\\x0d\\x0aname");
        assert_eq!(escape("a\u{202e}b\u{85}c\x7f"), "a\\u{202e}b\\x85c\\x7f");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
    }
}
