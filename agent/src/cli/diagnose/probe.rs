//! `agent diagnose HOST:PORT`: the active probe, rendered.
//!
//! Everything the server chose (names, status lines, protocol ids) is
//! shown with its control characters escaped; long lists are capped (the
//! report itself is capped too, see `probe::display`). While the probe
//! runs, a progress line goes to stderr when stderr is a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use super::host::render_finding;
use crate::cli::output::{self, Style};
use crate::diagnosis::Diagnosis;
use crate::diagnosis::host::HostState;
use crate::probe::display::{cap_list, escape};
use crate::probe::{
    ClientSimulation, ProbeOptions, ProbeReport, Progress, Verdict, VersionSuites,
    probe_with_progress,
};

/// Suites listed per version in the human view.
const SHOWN_SUITES: usize = 12;

/// Probes the target and prints what a client hits there; the exit code
/// is the verdict's (2 when the probe itself could not run).
pub(super) fn execute(options: &ProbeOptions, json: bool) -> ExitCode {
    // Host state names the local process and the config line to change when
    // the target is on this host.
    let mut host = HostState::default();
    let show_progress = std::io::stderr().is_terminal();
    let shown_target = escape(&options.target).into_owned();
    let progress = |p: &Progress| {
        if show_progress {
            let line = if p.total == 0 {
                format!("\r\x1b[2Kprobing {shown_target}: {} done", p.stage)
            } else {
                format!(
                    "\r\x1b[2Kprobing {shown_target}: {} ({}/{})",
                    p.stage, p.done, p.total
                )
            };
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    };
    if show_progress {
        let _ = write!(
            std::io::stderr().lock(),
            "probing {shown_target}: connecting…"
        );
    }
    let result = probe_with_progress(options, Some(&mut host), &progress);
    if show_progress {
        let _ = std::io::stderr().lock().write_all(b"\r\x1b[2K");
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {}", escape(&crate::text::Chain(&e).to_string()));
            return ExitCode::from(2);
        }
    };
    if let Err(code) = output::emit(json, &report, |style| render(&report, style)) {
        return code;
    }
    ExitCode::from(report.verdict.exit_code())
}

/// Escaped, for one line of human output.
fn e(text: &str) -> Cow<'_, str> {
    escape(text)
}

fn escaped_diagnosis(d: &Diagnosis) -> Diagnosis {
    let mut d = d.clone();
    d.summary = e(&d.summary).into_owned();
    d.remediation = e(&d.remediation).into_owned();
    for ev in &mut d.evidence {
        ev.fact = e(&ev.fact).into_owned();
        if let Some(l) = &mut ev.location {
            *l = e(l).into_owned();
        }
    }
    for a in &mut d.alternatives {
        a.why = e(&a.why).into_owned();
    }
    d
}

fn render_connection(out: &mut String, r: &ProbeReport) {
    for a in &r.addresses {
        let _ = writeln!(
            out,
            "  tcp  {:<40} {}{}",
            a.address.to_string(),
            a.tcp.label(),
            a.error
                .as_ref()
                .map(|err| format!(" ({})", e(err)))
                .unwrap_or_default()
        );
    }
    if let Some(h) = &r.handshake {
        let _ = writeln!(
            out,
            "  tls  {} {} {}{}",
            h.version.as_deref().unwrap_or("-"),
            e(h.cipher.as_deref().unwrap_or("-")),
            h.alpn
                .as_deref()
                .map(|a| format!("alpn={} ", e(a)))
                .unwrap_or_default(),
            match (&h.verify_text, h.verify_code) {
                (Some(t), Some(c)) => format!("verify: {} ({c})", e(t)),
                _ => String::new(),
            }
        );
    }
}

fn render_certificates(out: &mut String, r: &ProbeReport) {
    if let Some(chain) = &r.chain {
        for (i, c) in chain.certificates.iter().enumerate() {
            let _ = writeln!(
                out,
                "  cert #{i} {} · issuer {} · until {} ({}) · {} {} · {}",
                e(c.common_name.as_deref().unwrap_or(&c.subject)),
                e(&c.issuer),
                c.not_after.format("%Y-%m-%d"),
                crate::text::expiry_words(c.not_after, chrono::Utc::now()),
                c.key_type,
                c.key_bits.map(|b| b.to_string()).unwrap_or_default(),
                e(&c.signature_algorithm)
            );
        }
    }
    if let Some(checks) = &r.certificate_checks {
        if let Some(leaf) = checks.leaf() {
            let list = |v: &Option<Vec<String>>| {
                v.as_ref()
                    .map(|v| e(&v.join(", ")).into_owned())
                    .unwrap_or_else(|| "(none)".to_string())
            };
            let _ = writeln!(
                out,
                "  leaf  {} names · EKU {} · KU {} · SCTs {} · must-staple {} · AKI {} · SKI {}",
                leaf.san_count,
                list(&leaf.extended_key_usage),
                list(&leaf.key_usage),
                leaf.embedded_scts + checks.tls_extension_scts.unwrap_or(0),
                yes_no(leaf.must_staple),
                yes_no(leaf.authority_key_id),
                yes_no(leaf.subject_key_id)
            );
        }
        let trust: Vec<String> = checks
            .trust
            .iter()
            .map(|t| format!("{}: {} ({})", e(&t.store), e(&t.verify_text), t.verify_code))
            .collect();
        if !trust.is_empty() {
            let _ = writeln!(out, "  trust {}", trust.join(" · "));
        }
    }
    if let Some(h) = &r.handshake {
        let ocsp = match &h.ocsp {
            Some(s) => format!(
                "stapled: {}{}{}{}",
                e(&s.response_status),
                s.certificate_status
                    .as_deref()
                    .map(|c| format!(", certificate {}", e(c)))
                    .unwrap_or_default(),
                match s.verified {
                    Some(true) => ", signature verified",
                    Some(false) => ", signature NOT verified",
                    None => "",
                },
                match s.current {
                    Some(false) => ", not current",
                    _ => "",
                }
            ),
            None => "not stapled".to_string(),
        };
        let _ = writeln!(out, "  ocsp  {ocsp}");
    }
}

/// A finding's severity, coloured by how bad it is.
fn severity(s: crate::probe::Severity, style: Style) -> String {
    use crate::probe::Severity;
    match s {
        Severity::Critical => style.red(s.label()),
        Severity::Warning => style.yellow(s.label()),
        Severity::Info => style.dim(s.label()),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn render_suites(out: &mut String, v: &VersionSuites) {
    if v.suites.is_empty() {
        return;
    }
    let names: Vec<String> = v
        .suites
        .iter()
        .map(|s| {
            let name = s.openssl_name.as_deref().unwrap_or(&s.name);
            let mut text = match &s.key_exchange {
                Some(k) => format!("{name} ({k})"),
                None => name.to_string(),
            };
            if s.strength != "ok" {
                text.push_str(&format!(" [{}]", s.strength));
            }
            text
        })
        .collect();
    let order = match v.server_preference {
        Some(true) => ", server's order",
        Some(false) => ", client's order",
        None => "",
    };
    let count = if names.len() == 1 {
        "only 1 suite".to_string()
    } else {
        format!("{} suites", names.len())
    };
    let _ = writeln!(
        out,
        "  suites {} ({count}{order}{})  {}",
        v.version,
        if v.status.label() == "complete" {
            String::new()
        } else {
            format!(", {}", v.status.label())
        },
        e(&cap_list(&names, SHOWN_SUITES))
    );
    let mut extra = Vec::new();
    if !v.groups.is_empty() {
        extra.push(format!("groups {}", e(&cap_list(&v.groups, 8))));
    }
    if let Some(bits) = v.dh_bits {
        extra.push(format!("DH {bits} bits"));
    }
    if !extra.is_empty() {
        let _ = writeln!(out, "         {}", extra.join(" · "));
    }
}

fn render_clients(out: &mut String, sims: &[ClientSimulation], style: Style) {
    if sims.is_empty() {
        return;
    }
    let _ = writeln!(out, "  clients");
    let width = sims
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0);
    for s in sims {
        let (mark, what) = if s.connects {
            (
                style.green("✓"),
                [&s.version, &s.cipher, &s.key_exchange]
                    .iter()
                    .filter_map(|x| x.as_deref())
                    .map(|x| e(x).into_owned())
                    .collect::<Vec<_>>()
                    .join(" "),
            )
        } else {
            (
                style.red("✗"),
                e(s.failure.as_deref().unwrap_or("fails")).into_owned(),
            )
        };
        let _ = writeln!(out, "    {mark} {:<width$}  {what}", s.name);
    }
}

fn render(r: &ProbeReport, style: Style) -> String {
    let mut out = String::new();
    let verdict = match r.verdict {
        Verdict::Ok => style.green("ok: a standard client gets through"),
        Verdict::Warnings => style.yellow("warnings: a standard client gets through"),
        Verdict::Failed => style.red("FAILED: a standard client does not get through"),
    };
    let _ = writeln!(
        out,
        "{} {}:{} (name checked: {}; trust: {}) — {verdict}",
        style.bold("probe"),
        e(&r.host),
        r.port,
        e(&r.verify_name),
        e(&r.trust)
    );
    render_connection(&mut out, r);
    render_certificates(&mut out, r);
    if !r.protocols.is_empty() {
        let list: Vec<String> = r
            .protocols
            .iter()
            .map(|p| format!("{} {}", p.version, p.status.label()))
            .collect();
        let _ = writeln!(out, "  protocols  {}", list.join(" · "));
    }
    for v in &r.cipher_suites {
        render_suites(&mut out, v);
    }
    render_clients(&mut out, &r.clients, style);
    if let Some(sni) = &r.without_sni {
        let _ = writeln!(
            out,
            "  without SNI  {}",
            match (&sni.leaf, sni.same_as_with_sni) {
                (Some(leaf), Some(false)) => format!(
                    "a different certificate: {}",
                    e(leaf.common_name.as_deref().unwrap_or(&leaf.subject))
                ),
                (Some(_), _) => "the same certificate".to_string(),
                (None, _) => e(sni.detail.as_deref().unwrap_or("no handshake")).into_owned(),
            }
        );
    }
    if let Some(cause) = &r.root_cause {
        let _ = writeln!(out, "\n{}", style.bold("Root cause"));
        render_finding(&mut out, &escaped_diagnosis(cause), style);
    }
    if !r.findings.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Findings"));
        for f in &r.findings {
            let id = f
                .cause
                .filter(|_| f.kind != "client-cannot-connect" && f.kind != "address-failed")
                .map(|c| c.id().to_string())
                .unwrap_or_else(|| f.kind.clone());
            let _ = writeln!(
                out,
                "  {} {} {}  {}",
                style.yellow("!"),
                severity(f.severity, style),
                style.bold(&id),
                e(&f.summary)
            );
            if !f.remediation.is_empty() {
                let _ = writeln!(out, "      {} {}", style.green("fix:"), e(&f.remediation));
            }
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "  {}", style.dim(&format!("note: {}", e(n))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{AddressProbe, TcpResult};

    #[test]
    fn the_human_view_uses_display_names_and_escapes_what_servers_send() {
        let json = serde_json::json!({
            "schema": 1, "target": "x:1", "host": "x", "port": 1,
            "verify_name": "evil\u{1b}[2J.example", "trust": "system",
            "started": "2026-11-10T00:00:00Z", "duration_ms": 1, "verdict": "failed",
            "local": false, "host_state_used": false, "addresses": [],
            "protocols": [], "cipher_suites": [], "clients": [], "findings": [], "notes": []
        });
        let mut report: ProbeReport = serde_json::from_value(json).unwrap();
        report.addresses.push(AddressProbe {
            address: "192.0.2.1:1".parse().unwrap(),
            tcp: TcpResult::TimedOut,
            errno: Some(110),
            error: Some("ETIMEDOUT".into()),
            connect_ms: Some(5000),
        });
        let text = render(&report, Style { colour: false });
        assert!(text.contains("timed out (ETIMEDOUT)"), "{text}");
        assert!(!text.contains("TimedOut"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(text.contains("evil\\x1b[2J.example"), "{text}");
    }
}
