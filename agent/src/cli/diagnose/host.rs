//! The host report of `agent diagnose`: clock, TLS listeners and the server
//! blocks behind them, every problem as a finding, and the failures the
//! running agent recorded. Gathered with the evidence readers, judged by
//! `diagnosis::checks`; rendered for people or as JSON (docs/journal.md).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cli::output::{self, Style};
use crate::diagnosis::{Cause, Diagnosis, checks};
use crate::evidence::certificates::{self, CertificateFact, TrustStore};
use crate::evidence::clock::{self, ClockState};
use crate::evidence::fsroot::FsRoot;
use crate::evidence::listeners::{Listener, ListenerTable};
use crate::evidence::server_config::{
    self, DiscoveredConfig, ServerBlock, ServerKind, effective_protocols,
};
use crate::outcome::HandshakeOutcome;
use crate::sinks::journal;
use crate::text::{escape, expiry_words};

/// A server kind as people write it.
fn kind_name(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Nginx => "nginx",
        ServerKind::Apache => "apache",
    }
}

/// The whole report (`agent diagnose --json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostReport {
    pub generated: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What could not be looked at, and why (e.g. not root).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limitations: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockState>,
    pub listeners: Vec<ListenerReport>,
    pub servers: Vec<ServerReport>,
    /// Problems that make handshakes fail, each with its catalogue cause.
    pub findings: Vec<Diagnosis>,
    /// Suggestions that are not failures (logging, legacy protocols).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advice: Vec<Advice>,
    pub recent_failures: RecentFailures,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListenerReport {
    #[serde(flatten)]
    pub listener: Listener,
    /// A server config declares TLS on this port.
    pub tls: bool,
    /// `file:line` of the block(s) serving it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerReport {
    pub kind: ServerKind,
    pub main_file: PathBuf,
    pub running: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    /// The filesystem the server sees, when it is not the host's (a
    /// container): its paths are its own, read through `read_through`.
    #[serde(default, skip_serializing_if = "FsRoot::is_host")]
    pub root: FsRoot,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_through: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub blocks: Vec<BlockReport>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BlockReport {
    /// `file:line` of the block.
    pub location: String,
    pub listens: Vec<String>,
    pub names: Vec<String>,
    pub protocols: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ciphers: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_client: Option<String>,
    /// The served chain, leaf first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateFact>,
    /// OpenSSL's verdict for each name the block serves.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verification: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advice {
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecentFailures {
    pub journal: PathBuf,
    pub since: Option<DateTime<Utc>>,
    pub total: usize,
    pub by_cause: BTreeMap<Cause, usize>,
    /// The most recent ones, newest last.
    pub latest: Vec<HandshakeOutcome>,
    /// Journal lines that could not be read.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreadable_lines: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Most recent failures listed in full.
const LATEST: usize = 10;

impl HostReport {
    /// True when something is wrong (exit code 1).
    pub fn has_problems(&self) -> bool {
        !self.findings.is_empty() || self.recent_failures.total > 0
    }

    /// Gathers the report. `since` bounds the journal's failures; `ca`
    /// replaces the system trust store (a private PKI's clients trust it).
    pub fn gather(
        journal_path: &Path,
        since: Option<DateTime<Utc>>,
        ca: Option<&Path>,
    ) -> HostReport {
        let mut limitations = Vec::new();
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            limitations.push(
                "not root: other users' processes, their sockets, error logs and key files may be hidden"
                    .to_string(),
            );
        }
        let clock = clock::read()
            .map_err(|e| limitations.push(format!("clock: {e}", e = crate::text::Chain(&e))))
            .ok();
        let table = ListenerTable::scan()
            .map_err(|e| limitations.push(format!("listeners: {e}", e = crate::text::Chain(&e))))
            .ok();
        let listeners: Vec<Listener> = table.map(|t| t.listeners).unwrap_or_default();
        let trust = match ca {
            Some(ca) => TrustStore::from_pem_file(ca),
            None => TrustStore::system(),
        }
        .map_err(|e| limitations.push(format!("trust store: {e}", e = crate::text::Chain(&e))))
        .ok();
        let configs = server_config::discover();
        // A containerised server whose files could not be read (the
        // process left, or its root is closed to us) is a blind spot.
        for d in &configs {
            if let (Some(context), Err(e)) = (d.root.context(), &d.result) {
                limitations.push(format!(
                    "{} {context}: its config could not be read: {e}",
                    kind_name(d.kind)
                ));
            }
        }

        let mut findings = Vec::new();
        let mut advice = Vec::new();
        if let Some(clock) = &clock {
            findings.extend(checks::clock_findings(clock));
        }
        let now = Utc::now();
        let mut servers = Vec::new();
        let mut tls_ports: BTreeMap<u16, Vec<String>> = BTreeMap::new();
        for d in &configs {
            servers.push(server_report(
                d,
                &listeners,
                trust.as_ref(),
                now,
                &mut findings,
                &mut advice,
                &mut tls_ports,
            ));
        }
        let listeners = listeners
            .into_iter()
            .map(|l| {
                let config = tls_ports.get(&l.port).cloned().unwrap_or_default();
                ListenerReport {
                    tls: !config.is_empty(),
                    config,
                    listener: l,
                }
            })
            .collect();
        HostReport {
            generated: now,
            host: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
            limitations,
            clock,
            listeners,
            servers,
            findings,
            advice,
            recent_failures: recent_failures(journal_path, since),
        }
    }
}

fn server_report(
    d: &DiscoveredConfig,
    listeners: &[Listener],
    trust: Option<&TrustStore>,
    now: DateTime<Utc>,
    findings: &mut Vec<Diagnosis>,
    advice: &mut Vec<Advice>,
    tls_ports: &mut BTreeMap<u16, Vec<String>>,
) -> ServerReport {
    let mut report = ServerReport {
        kind: d.kind,
        main_file: d.main_file.clone(),
        running: d.running,
        pids: d.pids.clone(),
        root: d.root.clone(),
        read_through: d.root.base(),
        error: None,
        blocks: Vec::new(),
    };
    let cfg = match &d.result {
        Ok(cfg) => cfg,
        Err(e) => {
            report.error = Some(e.clone());
            return report;
        }
    };
    for problem in cfg.problems.iter().take(20) {
        advice.push(Advice {
            subject: format!("{} config", kind_name(d.kind)),
            text: problem.message.clone(),
            location: Some(match problem.line {
                Some(line) => format!("{}:{line}", problem.file.display()),
                None => problem.file.display().to_string(),
            }),
        });
    }
    for block in cfg.blocks.iter().filter(|b| b.is_tls()) {
        for spec in block.listens.iter().filter(|l| l.ssl) {
            tls_ports
                .entry(spec.port)
                .or_default()
                .push(block.location());
        }
        // A config that is not running is only a problem if it is meant to be.
        if d.running {
            findings.extend(checks::listen_findings(block, listeners, true));
        }
        findings.extend(checks::key_findings(block));
        findings.extend(checks::protocol_findings(block));
        let mut block_report = block_summary(block);
        if let Some(trust) = trust {
            check_chain(block, trust, now, findings, &mut block_report);
        }
        block_advice(block, advice);
        report.blocks.push(block_report);
    }
    report
}

fn block_summary(block: &ServerBlock) -> BlockReport {
    BlockReport {
        location: block.location(),
        listens: block
            .listens
            .iter()
            .map(|l| {
                let addr = l.addr.map(|a| a.to_string()).unwrap_or_else(|| "*".into());
                let mut s = format!("{addr}:{}", l.port);
                if l.ssl {
                    s.push_str(" ssl");
                }
                if l.default_server {
                    s.push_str(" default");
                }
                s
            })
            .collect(),
        names: block.server_names.iter().map(|n| n.value.clone()).collect(),
        protocols: effective_protocols(block),
        ciphers: block.ciphers.as_ref().map(|c| c.value.clone()),
        verify_client: block.verify_client.as_ref().map(|v| v.value.clone()),
        certificates: Vec::new(),
        verification: BTreeMap::new(),
    }
}

/// Verifies the block's chain for each literal name it serves (or for no
/// name when it has none).
fn check_chain(
    block: &ServerBlock,
    trust: &TrustStore,
    now: DateTime<Utc>,
    findings: &mut Vec<Diagnosis>,
    report: &mut BlockReport,
) {
    let mut files = Vec::new();
    files.extend(block.certificate.iter().map(|c| c.value.clone()));
    files.extend(block.chain_file.iter().map(|c| c.value.clone()));
    if files.is_empty() {
        return;
    }
    let mut der = Vec::new();
    let mut unreadable = Vec::new();
    for file in &files {
        match certificates::load_pem_chain_in(&block.root, file) {
            Ok(mut certs) => der.append(&mut certs),
            Err(e) => unreadable.push(certificates::ChainFinding::Unreadable {
                path: file.display().to_string(),
                error: match block.root.context() {
                    Some(context) => format!("{e} ({context})", e = crate::text::Chain(&e)),
                    None => crate::text::Chain(&e).to_string(),
                },
            }),
        }
    }
    let source = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ");
    // Literal names only: wildcards and regexes name no single host.
    let mut names: Vec<Option<String>> = block
        .server_names
        .iter()
        .map(|n| n.value.clone())
        .filter(|n| {
            !n.is_empty()
                && n != "_"
                && !n.contains('*')
                && !n.starts_with('~')
                && !n.starts_with('.')
        })
        .map(Some)
        .collect();
    if names.is_empty() {
        names.push(None);
    }
    let mut seen = std::collections::HashSet::new();
    for name in names {
        let mut chain = certificates::analyze_chain(&der, name.as_deref(), now, trust, &source);
        if !unreadable.is_empty() {
            chain
                .findings
                .retain(|f| !matches!(f, certificates::ChainFinding::Unreadable { .. }));
            chain.findings.splice(0..0, unreadable.clone());
        }
        if report.certificates.is_empty() {
            report.certificates = chain.certificates.clone();
        }
        report.verification.insert(
            name.clone().unwrap_or_else(|| "(no name)".into()),
            format!("{} ({})", chain.verify_text, chain.verify_code),
        );
        for finding in checks::chain_findings(block, &chain) {
            // Chain-wide problems once per block; name problems per name.
            if seen.insert((finding.cause, finding.summary.clone())) {
                findings.push(finding);
            }
        }
    }
}

fn block_advice(block: &ServerBlock, advice: &mut Vec<Advice>) {
    let subject = format!("server block {}", block.location());
    if !block.logs_handshake_failures() {
        let level = server_config::effective_log_level(block);
        advice.push(Advice {
            subject: subject.clone(),
            text: format!(
                "client handshake failures are not logged at level {level:?}; use `info` \
                 (nginx: error_log <file> info; apache: LogLevel ssl:info) to see them"
            ),
            location: block
                .log_level
                .as_ref()
                .map(|s| s.location())
                .or_else(|| block.error_log.as_ref().map(|s| s.location())),
        });
    }
    let legacy: Vec<&str> = effective_protocols(block)
        .iter()
        .filter(|p| matches!(p.as_str(), "SSLv3" | "TLSv1" | "TLSv1.1"))
        .map(|p| match p.as_str() {
            "SSLv3" => "SSLv3",
            "TLSv1" => "TLSv1",
            _ => "TLSv1.1",
        })
        .collect();
    if !legacy.is_empty() {
        advice.push(Advice {
            subject: subject.clone(),
            text: format!(
                "legacy protocols enabled ({}): current OpenSSL clients refuse them anyway",
                legacy.join(" ")
            ),
            location: block.protocols.as_ref().map(|p| p.location()),
        });
    }
    if let Some(v) = &block.verify_client
        && matches!(v.value.as_str(), "on" | "require")
    {
        advice.push(Advice {
            subject,
            text: format!(
                "clients must present a certificate ({} {}): those without one fail with client-certificate-required",
                match block.kind {
                    ServerKind::Nginx => "ssl_verify_client",
                    ServerKind::Apache => "SSLVerifyClient",
                },
                v.value
            ),
            location: Some(v.location()),
        });
    }
}

fn recent_failures(path: &Path, since: Option<DateTime<Utc>>) -> RecentFailures {
    let mut recent = RecentFailures {
        journal: path.to_path_buf(),
        since,
        ..Default::default()
    };
    let Ok((records, bad)) = journal::read(path, since) else {
        return recent;
    };
    recent.unreadable_lines = bad.len();
    recent.total = records.len();
    for r in &records {
        *recent.by_cause.entry(r.cause).or_default() += 1;
    }
    let skip = records.len().saturating_sub(LATEST);
    recent.latest = records.into_iter().skip(skip).collect();
    recent
}

/// Gathers and prints the host report; exit code 1 when it shows a
/// problem.
pub(super) fn execute(
    journal: &Path,
    since: Option<DateTime<Utc>>,
    ca: Option<&Path>,
    json: bool,
) -> ExitCode {
    let report = HostReport::gather(journal, since, ca);
    if let Err(code) = output::emit(json, &report, |style| render(&report, style)) {
        return code;
    }
    if report.has_problems() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

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
            "  none declared by an nginx/apache config on this host"
        );
    }
    for l in tls {
        let proc = match (&l.listener.comm, l.listener.pid) {
            (Some(c), Some(p)) => format!("{}[{p}]", escape(c)),
            _ => "?".into(),
        };
        let _ = writeln!(
            out,
            "  {:<28} {:<18} {}",
            format!("{}:{}", l.listener.addr, l.listener.port),
            proc,
            style.dim(&escape(&l.config.join(", ")))
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
        let _ = writeln!(out, "      names      {}", escape(&b.names.join(" ")));
        let _ = writeln!(out, "      protocols  {}", escape(&b.protocols.join(" ")));
        if let Some(leaf) = b.certificates.first() {
            let expiry = expiry_words(leaf.not_after, Utc::now());
            let expiry = if leaf.not_after < Utc::now() {
                style.red(&expiry)
            } else if leaf.not_after - Utc::now() < chrono::Duration::days(21) {
                style.yellow(&expiry)
            } else {
                expiry
            };
            let _ = writeln!(
                out,
                "      cert       {} · SAN {} · until {} ({expiry}) · {} {}",
                escape(leaf.common_name.as_deref().unwrap_or(&leaf.subject)),
                escape(&crate::text::cap_list(&leaf.sans, 20)),
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
        for (name, verdict) in &b.verification {
            let _ = writeln!(
                out,
                "      verify     {}: {}",
                escape(name),
                escape(verdict)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_gathers_and_renders_on_this_host() {
        let dir = std::env::temp_dir().join(format!("tlsdoctor-report-{}", std::process::id()));
        let report = HostReport::gather(&dir.join("journal.jsonl"), None, None);
        assert!(report.clock.is_some());
        let text = render(&report, Style { colour: false });
        for section in ["Clock", "TLS listeners", "Findings", "Recent failures"] {
            assert!(text.contains(section), "{text}");
        }
        // The JSON round-trips (the documented schema is this type).
        let json = serde_json::to_string(&report).unwrap();
        let back: HostReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.findings, report.findings);
    }
}
