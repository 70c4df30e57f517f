//! The host report of `agent diagnose`: clock, TLS listeners and the server
//! blocks behind them, every problem as a finding, and the failures the
//! running agent recorded. Gathered with the evidence readers, judged by
//! `diagnosis::checks`; rendered for people or as JSON (docs/journal.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::cli::output;

mod render;
use crate::diagnosis::checks;
use crate::diagnosis::learned::{self, LearnedState};
use crate::diagnosis::{Cause, Diagnosis, Evidence, Source};
use crate::evidence::certificates::{self, CertificateFact, TrustStore};
use crate::evidence::clock::{self, ClockState, StepWatch};
use crate::evidence::fsroot::FsRoot;
use crate::evidence::listeners::{Listener, ListenerTable};
use crate::evidence::process::maps_tls_library;
use crate::evidence::server_config::{
    self, DiscoveredConfig, ServerBlock, ServerKind, effective_protocols,
};
use crate::outcome::HandshakeOutcome;
use crate::sinks::journal;
use crate::text::cap_list;
pub use render::{render, render_finding};

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
    /// TLS is served here: a server config declares it, or it was learned
    /// from the host (`learned`).
    pub tls: bool,
    /// `file:line` of the block(s) serving it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
    /// How a TLS listener without a config was learned: "served a
    /// ServerHello" (the agent saw it answer one; kept beside the journal)
    /// or "maps libssl.so.3" (its process maps a TLS library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<String>,
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
        let mut clock = clock::read()
            .map_err(|e| limitations.push(format!("clock: {e}", e = crate::text::Chain(&e))))
            .ok();
        // What `agent run` learned and kept beside its journal: config-less
        // TLS listeners, and the clock's first reading this boot (a step
        // since then is shown).
        let (learned, learned_problem) = learned::read_beside(journal_path);
        limitations.extend(learned_problem);
        if let Some(clock) = &mut clock {
            StepWatch::with_baseline(learned.clock.clone()).observe(clock);
        }
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
            if let Some(text) = checks::clock_advice(clock) {
                advice.push(Advice {
                    subject: "clock".to_string(),
                    text,
                    location: None,
                });
            }
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
        let listeners = listener_reports(listeners, &tls_ports, &learned);
        group_repeated(&mut findings);
        let advice = group_advice(advice);
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

/// Every listening socket, sorted by port then address, TLS ones marked: by
/// a config, or learned (served a ServerHello, or maps a TLS library).
fn listener_reports(
    listeners: Vec<Listener>,
    tls_ports: &BTreeMap<u16, Vec<String>>,
    learned: &LearnedState,
) -> Vec<ListenerReport> {
    let mut libraries: BTreeMap<u32, Option<String>> = BTreeMap::new();
    let mut out: Vec<ListenerReport> = listeners
        .into_iter()
        .map(|l| {
            let config = tls_ports.get(&l.port).cloned().unwrap_or_default();
            let remembered = learned
                .tls_listeners
                .iter()
                .find(|k| k.port == l.port && k.how == learned::LearnedHow::ServedHello)
                .map(|k| k.how_words());
            let mapped = l.pid.and_then(|pid| {
                libraries
                    .entry(pid)
                    .or_insert_with(|| maps_tls_library(pid))
                    .clone()
                    .map(|lib| format!("maps {lib}"))
            });
            let learned = if config.is_empty() {
                remembered.or(mapped)
            } else {
                None
            };
            ListenerReport {
                tls: !config.is_empty() || learned.is_some(),
                config,
                learned,
                listener: l,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        (a.listener.port, a.listener.addr.to_string())
            .cmp(&(b.listener.port, b.listener.addr.to_string()))
    });
    out
}

/// Locations listed for a finding repeated across server blocks.
const MAX_LOCATIONS: usize = 10;

/// The same finding from several server blocks (one certificate served by
/// many) is one finding, with every location.
fn group_repeated(findings: &mut Vec<Diagnosis>) {
    let mut grouped: Vec<(Diagnosis, Vec<String>)> = Vec::new();
    for f in findings.drain(..) {
        match grouped
            .iter_mut()
            .find(|(g, _)| g.cause == f.cause && g.summary == f.summary)
        {
            Some((_, locations)) => {
                if let Some(l) = f.fix_location
                    && !locations.contains(&l)
                {
                    locations.push(l);
                }
            }
            None => {
                let locations = f.fix_location.iter().cloned().collect();
                grouped.push((f, locations));
            }
        }
    }
    for (mut f, locations) in grouped {
        if locations.len() > 1 {
            f.summary = format!("{} (in {} server blocks)", f.summary, locations.len());
            f.evidence.push(Evidence::new(
                Source::Host,
                format!(
                    "the same in {}: {}",
                    if locations.len() == 2 {
                        "both"
                    } else {
                        "every one of these"
                    },
                    cap_list(&locations, MAX_LOCATIONS)
                ),
            ));
        }
        findings.push(f);
    }
}

/// Advice repeated word for word (from several blocks) given once, its
/// locations joined.
fn group_advice(advice: Vec<Advice>) -> Vec<Advice> {
    let mut out: Vec<(Advice, Vec<String>)> = Vec::new();
    for a in advice {
        let key = a.text.clone();
        match out.iter_mut().find(|(o, _)| o.text == key) {
            Some((_, locations)) => locations.extend(a.location),
            None => {
                let locations = a.location.iter().cloned().collect();
                out.push((a, locations));
            }
        }
    }
    out.into_iter()
        .map(|(mut a, locations)| {
            if locations.len() > 1 {
                a.subject = format!("{} (and {} more)", a.subject, locations.len() - 1);
                a.location = Some(cap_list(&locations, MAX_LOCATIONS));
            }
            a
        })
        .collect()
}

/// Days before notAfter from which a served certificate is flagged.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// "expires in 12 days" advice for each served certificate about to expire
/// (an expired one is a finding).
fn expiry_advice(
    block: &ServerBlock,
    certs: &[CertificateFact],
    now: DateTime<Utc>,
) -> Vec<Advice> {
    let soon = now + chrono::Duration::days(EXPIRY_WARNING_DAYS);
    let file = block
        .certificate
        .as_ref()
        .map(|c| c.value.display().to_string())
        .unwrap_or_default();
    certs
        .iter()
        .enumerate()
        .filter(|(_, c)| c.not_after > now && c.not_after <= soon)
        .map(|(i, c)| {
            let days = (c.not_after - now).num_days();
            Advice {
                subject: format!("certificate {file}"),
                text: format!(
                    "certificate #{i} ({}) expires in {days} day{} ({}): renew it before then",
                    c.subject,
                    if days == 1 { "" } else { "s" },
                    c.not_after.format("%Y-%m-%d %H:%M UTC")
                ),
                location: block.certificate.as_ref().map(|s| s.location()),
            }
        })
        .collect()
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
        advice.extend(expiry_advice(block, &block_report.certificates, now));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::output::Style;

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

    fn finding(cause: Cause, summary: &str, at: &str) -> Diagnosis {
        Diagnosis::new(cause, crate::diagnosis::Confidence::High, summary)
            .evidence(Evidence::new(Source::Host, "x").at(at))
            .fix_at(Some(at.to_string()))
    }

    #[test]
    fn a_finding_repeated_across_blocks_is_listed_once_with_its_locations() {
        let mut findings: Vec<Diagnosis> = (1..=14)
            .map(|i| {
                finding(
                    Cause::CertificateExpired,
                    "certificate #0 in /etc/ssl/shared.pem expired",
                    &format!("/etc/nginx/sites-enabled/site{i}:12"),
                )
            })
            .collect();
        findings.push(finding(
            Cause::HostnameMismatch,
            "/etc/ssl/shared.pem does not cover a.test",
            "/etc/nginx/sites-enabled/site1:12",
        ));
        group_repeated(&mut findings);
        assert_eq!(findings.len(), 2, "{findings:#?}");
        let expired = &findings[0];
        assert!(
            expired.summary.ends_with("(in 14 server blocks)"),
            "{}",
            expired.summary
        );
        let all = expired.evidence.last().unwrap();
        assert!(
            all.fact.contains("site1:12") && all.fact.contains("and 4 more"),
            "{}",
            all.fact
        );
        assert_eq!(findings[1].cause, Cause::HostnameMismatch);
    }

    #[test]
    fn long_lists_are_capped_and_listeners_sorted_by_port() {
        let sans: Vec<String> = (0..1500).map(|i| format!("host{i}.test")).collect();
        let text = cap_list(&sans, 10);
        assert!(text.ends_with(" and 1,490 more"), "{text}");
        assert_eq!(text.matches(".test").count(), 10);
        let listener = |port: u16, addr: &str| Listener {
            addr: addr.parse().unwrap(),
            port,
            inode: u64::from(port),
            pid: None,
            comm: None,
            exe: None,
            accept_queue: 0,
            backlog: 128,
            v6only: None,
        };
        let reports = listener_reports(
            vec![
                listener(8443, "127.0.0.1"),
                listener(443, "::"),
                listener(443, "0.0.0.0"),
                listener(22, "0.0.0.0"),
            ],
            &BTreeMap::from([(443, vec!["/etc/nginx/sites-enabled/site:2".to_string()])]),
            &LearnedState {
                tls_listeners: vec![learned::LearnedListener {
                    port: 8443,
                    addrs: Vec::new(),
                    comm: Some("goserver".into()),
                    exe: None,
                    how: learned::LearnedHow::ServedHello,
                    first_seen: Utc::now(),
                    last_seen: Utc::now(),
                }],
                clock: StepWatch::default(),
            },
        );
        let ports: Vec<u16> = reports.iter().map(|r| r.listener.port).collect();
        assert_eq!(ports, [22, 443, 443, 8443]);
        assert!(!reports[0].tls);
        assert!(reports[1].tls && reports[1].learned.is_none());
        assert_eq!(reports[3].learned.as_deref(), Some("served a ServerHello"));
        assert!(reports[3].tls);
    }

    #[test]
    fn a_certificate_about_to_expire_is_advice_with_its_days() {
        let block = crate::diagnosis::rules::fixtures::nginx_block();
        let now = Utc::now();
        let mut soon = crate::diagnosis::rules::fixtures::site_leaf();
        soon.not_after = now + chrono::Duration::days(12) + chrono::Duration::hours(1);
        let mut later = soon.clone();
        later.not_after = now + chrono::Duration::days(300);
        let advice = expiry_advice(&block, &[soon, later], now);
        assert_eq!(advice.len(), 1);
        assert!(
            advice[0].text.contains("expires in 12 days"),
            "{}",
            advice[0].text
        );
        assert_eq!(
            advice[0].location.as_deref(),
            Some("/etc/nginx/sites-enabled/site:12")
        );
    }
}
