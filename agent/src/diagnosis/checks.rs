//! Static checks of host state: problems that will make handshakes fail, found
//! before any client fails (the host report of `agent diagnose`). Each check is
//! a plain function from host facts to findings with catalogue causes; the
//! failure rules (`rules/`) explain failures that happened.

use crate::diagnosis::{Cause, Confidence, Diagnosis, Evidence, Source};
use crate::evidence::certificates::{ChainFinding, ChainReport};
use crate::evidence::clock::ClockState;
use crate::evidence::listeners::Listener;
use crate::evidence::server_config::{ServerBlock, ServerKind, Setting, effective_protocols};

/// Findings about one served certificate chain (checked for `name`).
pub fn chain_findings(block: &ServerBlock, report: &ChainReport) -> Vec<Diagnosis> {
    let cert = block.certificate.as_ref();
    let directive = directive_name(block.kind, "certificate");
    let fix_at = cert.map(Setting::location);
    let file = cert
        .map(|c| c.value.display().to_string())
        .unwrap_or_else(|| report.source.clone());
    let name = report
        .name
        .clone()
        .unwrap_or_else(|| "(no name)".to_string());
    let verdict = Evidence::new(
        Source::Host,
        format!(
            "OpenSSL verification of {file} for {name}: {} ({})",
            report.verify_text, report.verify_code
        ),
    );
    let mut out = Vec::new();
    for finding in &report.findings {
        let (cause, confidence, summary, fix) = match finding {
            ChainFinding::MissingIntermediate { issuer } => (
                Cause::ChainIncomplete,
                Confidence::High,
                format!("{file} holds the certificate for {name} without the intermediate that issued it ({issuer})"),
                format!("append the intermediate certificate(s) after the leaf in {file} ({directive}), leaf first"),
            ),
            ChainFinding::WrongOrder => (
                Cause::ChainIncomplete,
                Confidence::Medium,
                format!("the certificates in {file} are not in leaf-to-root order"),
                format!("reorder {file}: the leaf first, then each issuer"),
            ),
            ChainFinding::UntrustedRoot { root } => (
                Cause::UntrustedRoot,
                Confidence::High,
                format!("the chain in {file} ends in {root}, which the system trust store does not hold"),
                "serve a certificate from a publicly trusted CA, or install the private root on every client".to_string(),
            ),
            ChainFinding::SelfSignedLeaf { subject } => (
                Cause::UntrustedRoot,
                Confidence::High,
                format!("{file} is self-signed ({subject}): clients reject it"),
                "replace it with a certificate issued by a CA the clients trust".to_string(),
            ),
            ChainFinding::Expired { index, subject, not_after } => (
                Cause::CertificateExpired,
                Confidence::High,
                format!("certificate #{index} in {file} ({subject}) expired {not_after}"),
                format!("renew it and reload the server ({directive} {file})"),
            ),
            ChainFinding::NotYetValid { index, subject, not_before } => (
                Cause::CertificateNotYetValid,
                Confidence::High,
                format!("certificate #{index} in {file} ({subject}) is valid only from {not_before}"),
                "check this host's clock and the certificate's issue date; serve a certificate valid now".to_string(),
            ),
            ChainFinding::NameMismatch { name, sans } => (
                Cause::HostnameMismatch,
                Confidence::High,
                format!("{file} does not cover {name} (its names: {})", sans.join(", ")),
                format!("serve a certificate whose subjectAltName includes {name}, or remove {name} from this server block"),
            ),
            ChainFinding::WeakKey { index, subject, key_type, bits } => (
                Cause::WeakCryptoRejected,
                Confidence::High,
                format!("certificate #{index} in {file} ({subject}) has a {bits}-bit {key_type} key: clients at security level 2 reject it"),
                "reissue with an RSA key of at least 2048 bits or an EC P-256 key".to_string(),
            ),
            ChainFinding::WeakSignature { index, subject, algorithm } => (
                Cause::WeakCryptoRejected,
                Confidence::High,
                format!("certificate #{index} in {file} ({subject}) is signed with {algorithm}: clients reject it"),
                "reissue it with a SHA-256 (or stronger) signature".to_string(),
            ),
            ChainFinding::Unreadable { path, error } => (
                Cause::ServerCannotLoadCertificate,
                Confidence::High,
                format!("{path} cannot be loaded: {error}"),
                format!("fix {path} (named by {directive}); the server cannot start its TLS listener without it"),
            ),
        };
        out.push(
            Diagnosis::new(cause, confidence, summary)
                .evidence(
                    Evidence::new(Source::Host, format!("{directive} {file}"))
                        .at(fix_at.clone().unwrap_or_else(|| block.location())),
                )
                .evidence(verdict.clone())
                .fix(fix)
                .fix_at(fix_at.clone()),
        );
    }
    out
}

/// A key file named by the config that is missing or not a file (the
/// certificate file is covered by the chain analysis). Private keys are
/// never read, only looked up.
pub fn key_findings(block: &ServerBlock) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    for key in block
        .certificate_key
        .iter()
        .chain(block.extra_certificate_keys.iter())
    {
        // Looked up in the server's own filesystem (its container's).
        let problem = match block.root.metadata(&key.value) {
            Ok(m) if m.is_file() => continue,
            Ok(_) => "is not a regular file".to_string(),
            Err(e) => crate::text::Chain(&e).to_string(),
        };
        let directive = directive_name(block.kind, "key");
        out.push(
            Diagnosis::new(
                Cause::ServerCannotLoadCertificate,
                Confidence::High,
                format!(
                    "the private key {}{} {problem}",
                    key.value.display(),
                    block
                        .root
                        .context()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                ),
            )
            .evidence(
                Evidence::new(Source::Host, format!("{directive} {}", key.value.display()))
                    .at(key.location()),
            )
            .fix(format!(
                "put the key matching the certificate at {} (or fix {directive})",
                key.value.display()
            ))
            .fix_at(Some(key.location())),
        );
    }
    out
}

/// TLS ports a block declares that nothing listens on.
pub fn listen_findings(
    block: &ServerBlock,
    listeners: &[Listener],
    server_running: bool,
) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    for spec in block.listens.iter().filter(|l| l.ssl) {
        let listening = listeners.iter().any(|l| {
            l.port == spec.port
                && (spec.addr.is_none() || l.addr.is_unspecified() || Some(l.addr) == spec.addr)
        });
        if listening {
            continue;
        }
        let addr = spec
            .addr
            .map(|a| a.to_string())
            .unwrap_or_else(|| "*".to_string());
        let why = if server_running {
            "the server runs but does not listen there: the config was changed and not reloaded, or the listener failed to start (see its error log)"
        } else {
            "the server is not running"
        };
        out.push(
            Diagnosis::new(
                Cause::PortNotListening,
                if server_running {
                    Confidence::Medium
                } else {
                    Confidence::High
                },
                format!(
                    "{addr}:{} is configured for TLS but nothing listens on it: {why}",
                    spec.port
                ),
            )
            .evidence(
                Evidence::new(Source::Host, format!("listen {addr}:{} ssl", spec.port))
                    .at(format!("{}:{}", spec.file.display(), spec.line)),
            )
            .evidence(Evidence::new(
                Source::Host,
                format!("no listening socket on port {}", spec.port),
            ))
            .fix(if server_running {
                "reload the server (nginx -s reload / apachectl graceful) and check its error log"
                    .to_string()
            } else {
                "start the server and check its error log for why it stopped".to_string()
            })
            .fix_at(Some(format!("{}:{}", spec.file.display(), spec.line))),
        );
    }
    out
}

/// A block whose protocols leave no version a modern client offers.
pub fn protocol_findings(block: &ServerBlock) -> Vec<Diagnosis> {
    let protocols = effective_protocols(block);
    let modern = protocols
        .iter()
        .any(|p| matches!(p.as_str(), "TLSv1.2" | "TLSv1.3"));
    if modern || protocols.is_empty() {
        return Vec::new();
    }
    let location = block
        .protocols
        .as_ref()
        .map(Setting::location)
        .unwrap_or_else(|| block.location());
    vec![
        Diagnosis::new(
            Cause::ProtocolVersionMismatch,
            Confidence::High,
            format!(
                "{} allows only {}: current clients (TLS 1.2/1.3) cannot connect",
                block.location(),
                protocols.join(" ")
            ),
        )
        .evidence(
            Evidence::new(
                Source::Host,
                format!(
                    "{} {}",
                    directive_name(block.kind, "protocols"),
                    protocols.join(" ")
                ),
            )
            .at(location.clone()),
        )
        .fix(format!(
            "set {} TLSv1.2 TLSv1.3",
            directive_name(block.kind, "protocols")
        ))
        .fix_at(Some(location)),
    ]
}

/// An unsynchronized clock makes good certificates look expired or not yet
/// valid to this host's clients, and vice versa.
pub fn clock_findings(clock: &ClockState) -> Vec<Diagnosis> {
    if clock.synchronized {
        return Vec::new();
    }
    vec![
        Diagnosis::new(
            Cause::ClockSkew,
            Confidence::Low,
            format!(
                "{}: certificate validity checks on this host rely on an unsynchronized clock",
                clock.describe()
            ),
        )
        .evidence(Evidence::new(Source::Host, clock.describe()))
        .fix("synchronize the clock (chronyd, systemd-timesyncd or ntpd) and check `timedatectl`"),
    ]
}

fn directive_name(kind: ServerKind, what: &str) -> &'static str {
    match (kind, what) {
        (ServerKind::Nginx, "certificate") => "ssl_certificate",
        (ServerKind::Nginx, "key") => "ssl_certificate_key",
        (ServerKind::Nginx, _) => "ssl_protocols",
        (ServerKind::Apache, "certificate") => "SSLCertificateFile",
        (ServerKind::Apache, "key") => "SSLCertificateKeyFile",
        (ServerKind::Apache, _) => "SSLProtocol",
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::evidence::server_config::ListenSpec;

    fn block() -> ServerBlock {
        let mut b = ServerBlock::new(
            ServerKind::Nginx,
            PathBuf::from("/etc/nginx/sites-enabled/site"),
            3,
        );
        b.listens.push(ListenSpec {
            addr: None,
            port: 443,
            ssl: true,
            default_server: false,
            file: PathBuf::from("/etc/nginx/sites-enabled/site"),
            line: 4,
        });
        b.certificate = Some(Setting {
            value: PathBuf::from("/etc/ssl/site.pem"),
            file: PathBuf::from("/etc/nginx/sites-enabled/site"),
            line: 6,
        });
        b
    }

    fn report(findings: Vec<ChainFinding>) -> ChainReport {
        ChainReport {
            source: "/etc/ssl/site.pem".into(),
            certificates: Vec::new(),
            verify_code: 20,
            verify_text: "unable to get local issuer certificate".into(),
            name: Some("site.example".into()),
            findings,
        }
    }

    #[test]
    fn a_missing_intermediate_is_chain_incomplete_at_the_certificate_line() {
        let d = chain_findings(
            &block(),
            &report(vec![ChainFinding::MissingIntermediate {
                issuer: "CN=Intermediate".into(),
            }]),
        );
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].cause, Cause::ChainIncomplete);
        assert_eq!(
            d[0].fix_location.as_deref(),
            Some("/etc/nginx/sites-enabled/site:6")
        );
    }

    #[test]
    fn each_chain_finding_maps_to_its_class() {
        let now = chrono::Utc::now();
        let cases = [
            (
                ChainFinding::SelfSignedLeaf {
                    subject: "x".into(),
                },
                Cause::UntrustedRoot,
            ),
            (
                ChainFinding::Expired {
                    index: 0,
                    subject: "x".into(),
                    not_after: now,
                },
                Cause::CertificateExpired,
            ),
            (
                ChainFinding::NotYetValid {
                    index: 0,
                    subject: "x".into(),
                    not_before: now,
                },
                Cause::CertificateNotYetValid,
            ),
            (
                ChainFinding::NameMismatch {
                    name: "a".into(),
                    sans: vec!["b".into()],
                },
                Cause::HostnameMismatch,
            ),
            (
                ChainFinding::WeakKey {
                    index: 0,
                    subject: "x".into(),
                    key_type: "RSA".into(),
                    bits: 1024,
                },
                Cause::WeakCryptoRejected,
            ),
            (
                ChainFinding::Unreadable {
                    path: "/x".into(),
                    error: "No such file".into(),
                },
                Cause::ServerCannotLoadCertificate,
            ),
        ];
        for (finding, cause) in cases {
            assert_eq!(
                chain_findings(&block(), &report(vec![finding]))[0].cause,
                cause
            );
        }
    }

    #[test]
    fn a_configured_port_without_listener_is_port_not_listening() {
        let d = listen_findings(&block(), &[], false);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].cause, Cause::PortNotListening);
        assert_eq!(
            d[0].fix_location.as_deref(),
            Some("/etc/nginx/sites-enabled/site:4")
        );
        let listener = Listener {
            addr: "0.0.0.0".parse().unwrap(),
            port: 443,
            inode: 1,
            pid: Some(1),
            comm: None,
            exe: None,
            accept_queue: 0,
            backlog: 511,
            v6only: None,
        };
        assert!(listen_findings(&block(), &[listener], true).is_empty());
    }

    #[test]
    fn legacy_only_protocols_are_a_version_mismatch() {
        let mut b = block();
        b.protocols = Some(Setting {
            value: vec!["TLSv1".into(), "TLSv1.1".into()],
            file: PathBuf::from("/etc/nginx/nginx.conf"),
            line: 20,
        });
        let d = protocol_findings(&b);
        assert_eq!(d[0].cause, Cause::ProtocolVersionMismatch);
        assert_eq!(
            d[0].fix_location.as_deref(),
            Some("/etc/nginx/nginx.conf:20")
        );
        b.protocols.as_mut().unwrap().value.push("TLSv1.2".into());
        assert!(protocol_findings(&b).is_empty());
    }

    #[test]
    fn a_missing_key_file_cannot_be_loaded() {
        let mut b = block();
        b.certificate_key = Some(Setting {
            value: PathBuf::from("/nonexistent/site.key"),
            file: PathBuf::from("/etc/nginx/sites-enabled/site"),
            line: 7,
        });
        let d = key_findings(&b);
        assert_eq!(d[0].cause, Cause::ServerCannotLoadCertificate);
    }
}
