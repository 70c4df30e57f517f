//! The host report for people: clock, TLS listeners (sorted by port, those
//! without a config included), servers and blocks, findings and advice,
//! recent failures. Long lists are capped; `--json` has them whole.

use std::fmt::Write as _;

use crate::cli::output::Style;
use crate::diagnosis::Diagnosis;
use crate::text::{cap_list, escape, expiry_words};

use super::{HostReport, ListenerReport, MAX_LOCATIONS, RecentFailures, ServerReport, kind_name};

/// Prints one finding: cause, summary, evidence, fix.
pub fn render_finding(out: &mut String, d: &Diagnosis, style: Style) {
    let _ = writeln!(
        out,
        "  {} {}  {}",
        style.red("✗"),
        style.bold(d.cause.id()),
        escape(&d.summary)
    );
    for e in &d.evidence {
        let at = e
            .location
            .as_ref()
            .map(|l| format!("  ({l})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "      {} {}{}",
            style.dim(&format!("{}:", e.source.letter())),
            escape(&e.fact),
            style.dim(&escape(&at))
        );
    }
    if !d.remediation.is_empty() {
        let _ = writeln!(
            out,
            "      {} {}",
            style.green("fix:"),
            escape(&d.remediation)
        );
    }
    for alt in &d.alternatives {
        let _ = writeln!(
            out,
            "      {} {} — {}",
            style.dim("or:"),
            alt.cause,
            escape(&alt.why)
        );
    }
}

/// The report for people.
pub fn render(report: &HostReport, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        style.bold("tlsdoctor host report"),
        report.host.as_deref().unwrap_or("")
    );
    for l in &report.limitations {
        let _ = writeln!(out, "  {} {}", style.yellow("!"), escape(l));
    }
    let _ = writeln!(out, "\n{}", style.bold("Clock"));
    match &report.clock {
        Some(c) if c.synchronized => {
            let _ = writeln!(out, "  {} {}", style.green("✓"), c.describe());
        }
        Some(c) => {
            let _ = writeln!(out, "  {} {}", style.yellow("!"), c.describe());
        }
        None => {
            let _ = writeln!(out, "  unknown");
        }
    }

    render_listeners(&mut out, report, style);
    for server in &report.servers {
        render_server(&mut out, server, style);
    }
    render_findings(&mut out, report, style);
    render_recent(&mut out, &report.recent_failures, style);
    out
}

fn render_listeners(out: &mut String, report: &HostReport, style: Style) {
    let _ = writeln!(out, "\n{}", style.bold("TLS listeners"));
    let tls: Vec<&ListenerReport> = report.listeners.iter().filter(|l| l.tls).collect();
    if tls.is_empty() {
        let _ = writeln!(
            out,
            "  none: no config declares TLS, and no listening process has served TLS or maps a TLS library"
        );
    }
    for l in tls {
        let proc = match (&l.listener.comm, l.listener.pid) {
            (Some(c), Some(p)) => format!("{}[{p}]", escape(c)),
            _ => "?".into(),
        };
        let addr = match l.listener.addr {
            std::net::IpAddr::V6(a) => format!("[{a}]:{}", l.listener.port),
            a => format!("{a}:{}", l.listener.port),
        };
        let how = match &l.learned {
            Some(how) => format!("no config; {how}"),
            None => cap_list(&l.config, MAX_LOCATIONS),
        };
        let full = if l.listener.backlog > 0 && l.listener.accept_queue >= l.listener.backlog {
            format!(
                "  {}",
                style.red(&format!(
                    "accept queue full ({}/{})",
                    l.listener.accept_queue, l.listener.backlog
                ))
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  {addr:<28} {proc:<18} {}{full}",
            style.dim(&escape(&how))
        );
    }
}

fn render_server(out: &mut String, server: &ServerReport, style: Style) {
    let state = if server.running {
        style.green("running")
    } else {
        style.dim("not running")
    };
    let container = match (server.root.context(), &server.read_through) {
        (Some(context), Some(base)) => {
            format!(", {context}, read through {}", base.display())
        }
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "\n{} {} ({state}{container})",
        style.bold(kind_name(server.kind)),
        escape(&server.main_file.display().to_string())
    );
    if let Some(e) = &server.error {
        let _ = writeln!(out, "  {} {}", style.red("✗"), escape(e));
    }
    for b in &server.blocks {
        let _ = writeln!(
            out,
            "  {}  {}",
            escape(&b.location),
            escape(&b.listens.join(", "))
        );
        let _ = writeln!(
            out,
            "      names      {}",
            escape(&cap_list(&b.names, MAX_LOCATIONS))
        );
        let _ = writeln!(out, "      protocols  {}", escape(&b.protocols.join(" ")));
        if let Some(leaf) = b.certificates.first() {
            let now = chrono::Utc::now();
            let expiry = expiry_words(leaf.not_after, now);
            let expiry = if leaf.not_after < now {
                style.red(&expiry)
            } else if leaf.not_after - now < chrono::Duration::days(21) {
                style.yellow(&expiry)
            } else {
                expiry
            };
            let _ = writeln!(
                out,
                "      cert       {} · SAN {} · until {} ({expiry}) · {} {}",
                escape(leaf.common_name.as_deref().unwrap_or(&leaf.subject)),
                escape(&cap_list(&leaf.sans, MAX_LOCATIONS)),
                leaf.not_after.format("%Y-%m-%d"),
                leaf.key_type,
                leaf.key_bits.map(|b| b.to_string()).unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "      chain      {} certificate(s)",
                b.certificates.len()
            );
        }
        for (name, verdict) in b.verification.iter().take(MAX_LOCATIONS) {
            let _ = writeln!(
                out,
                "      verify     {}: {}",
                escape(name),
                escape(verdict)
            );
        }
        if b.verification.len() > MAX_LOCATIONS {
            let _ = writeln!(
                out,
                "      verify     … {} more names (--json lists them)",
                b.verification.len() - MAX_LOCATIONS
            );
        }
    }
}

fn render_findings(out: &mut String, report: &HostReport, style: Style) {
    let _ = writeln!(out, "\n{}", style.bold("Findings"));
    if report.findings.is_empty() {
        let _ = writeln!(out, "  {} none", style.green("✓"));
    }
    for f in &report.findings {
        render_finding(out, f, style);
    }
    if !report.advice.is_empty() {
        let _ = writeln!(out, "\n{}", style.bold("Advice"));
        for a in &report.advice {
            let at = a
                .location
                .as_ref()
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} {}: {}{}",
                style.yellow("·"),
                escape(&a.subject),
                escape(&a.text),
                style.dim(&escape(&at))
            );
        }
    }
}

fn render_recent(out: &mut String, r: &RecentFailures, style: Style) {
    let since = r
        .since
        .map(|s| format!(" since {}", s.format("%Y-%m-%d %H:%M:%SZ")))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "\n{} ({}{since})",
        style.bold("Recent failures"),
        r.journal.display()
    );
    if r.total == 0 {
        let _ = writeln!(out, "  {} none recorded", style.green("✓"));
    } else {
        for (cause, n) in &r.by_cause {
            let _ = writeln!(out, "  {n:>6}  {cause}");
        }
        let _ = writeln!(out, "  latest:");
        for o in &r.latest {
            let _ = writeln!(
                out,
                "    {}",
                crate::sinks::console::line(o, crate::sinks::console::Colour::Never)
            );
        }
    }
    if r.unreadable_lines > 0 {
        let _ = writeln!(
            out,
            "  {} {} journal line(s) could not be read",
            style.yellow("!"),
            r.unreadable_lines
        );
    }
}
