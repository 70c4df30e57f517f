//! `agent diagnose HOST:PORT`: the active probe, rendered.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::host::render_finding;
use crate::cli::output::{self, Style};
use crate::diagnosis::host::HostState;
use crate::probe::{ProbeOptions, ProbeReport, Verdict, probe};

/// Probes the target and prints what a client hits there; the exit code
/// is the verdict's (2 when the probe itself could not run).
pub(super) fn execute(options: &ProbeOptions, json: bool) -> ExitCode {
    // Host state names the local process and the config line to change when
    // the target is on this host.
    let mut host = HostState::default();
    let report = match probe(options, Some(&mut host)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(code) = output::emit(json, &report, |style| render(&report, style)) {
        return code;
    }
    ExitCode::from(report.verdict.exit_code())
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
        r.host,
        r.port,
        r.verify_name,
        r.trust
    );
    for a in &r.addresses {
        let _ = writeln!(
            out,
            "  tcp  {:<40} {:?}{}",
            a.address.to_string(),
            a.tcp,
            a.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
    }
    if let Some(h) = &r.handshake {
        let _ = writeln!(
            out,
            "  tls  {} {} {}{}",
            h.version.as_deref().unwrap_or("-"),
            h.cipher.as_deref().unwrap_or("-"),
            h.alpn
                .as_deref()
                .map(|a| format!("alpn={a} "))
                .unwrap_or_default(),
            match (&h.verify_text, h.verify_code) {
                (Some(t), Some(c)) => format!("verify: {t} ({c})"),
                _ => String::new(),
            }
        );
    }
    if let Some(chain) = &r.chain {
        for (i, c) in chain.certificates.iter().enumerate() {
            let _ = writeln!(
                out,
                "  cert #{i} {} · issuer {} · until {} · {} {} · {}",
                c.common_name.as_deref().unwrap_or(&c.subject),
                c.issuer,
                c.not_after.format("%Y-%m-%d"),
                c.key_type,
                c.key_bits.map(|b| b.to_string()).unwrap_or_default(),
                c.signature_algorithm
            );
        }
    }
    if !r.protocols.is_empty() {
        let list: Vec<String> = r
            .protocols
            .iter()
            .map(|p| format!("{} {:?}", p.version, p.status))
            .collect();
        let _ = writeln!(out, "  protocols  {}", list.join(" · "));
    }
    if let Some(sni) = &r.without_sni {
        let _ = writeln!(
            out,
            "  without SNI  {}",
            match (&sni.leaf, sni.same_as_with_sni) {
                (Some(leaf), Some(false)) => format!(
                    "a different certificate: {}",
                    leaf.common_name.as_deref().unwrap_or(&leaf.subject)
                ),
                (Some(_), _) => "the same certificate".to_string(),
                (None, _) => sni.detail.clone().unwrap_or_else(|| "no handshake".into()),
            }
        );
    }
    if let Some(cause) = &r.root_cause {
        let _ = writeln!(out, "\n{}", style.bold("Root cause"));
        render_finding(&mut out, cause, style);
    }
    if !r.findings.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Findings"));
        for f in &r.findings {
            let id = f
                .cause
                .map(|c| c.id().to_string())
                .unwrap_or_else(|| f.kind.clone());
            let _ = writeln!(
                out,
                "  {} {}  {}",
                style.yellow("!"),
                style.bold(&id),
                f.summary
            );
            if !f.remediation.is_empty() {
                let _ = writeln!(out, "      {} {}", style.green("fix:"), f.remediation);
            }
        }
    }
    for n in &r.notes {
        let _ = writeln!(out, "  {}", style.dim(&format!("note: {n}")));
    }
    out
}
