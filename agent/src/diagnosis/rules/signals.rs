//! Questions the rules ask of the facts ("did the client send alert 48?",
//! "did the client's OpenSSL fail to find the issuer?"), answered the same way
//! for every rule.
//!
//! Everything here is a pure function of the facts: diagnosing a flood of
//! failures reads nothing again.

use chrono::{DateTime, Utc};

use crate::diagnosis::{Cause, Evidence, Facts, Source};
use crate::evidence::certificates::{CertificateFact, ChainFinding, ChainReport};
use crate::evidence::clock::ClockState;
use crate::evidence::logs::LogLine;
use crate::evidence::openssl::{
    OpensslErrorFact, VerifyResultFact, alert_name, reason, received_alert,
};
use crate::evidence::server_config::{ServerBlock, ServerKind, Setting};
use crate::outcome::Role;

use super::cite::{ssl_error_evidence, verify_evidence};
use super::directives::{Directive, directive};
use super::matching::version_number;

/// Alerts that reject the peer's certificate: bad_certificate,
/// unsupported_certificate, certificate_revoked, certificate_expired,
/// certificate_unknown, unknown_ca.
pub const CERTIFICATE_ALERTS: [u8; 6] = [42, 43, 44, 45, 46, 48];

/// A disciplined clock's maximum error stays in the milliseconds; the kernel
/// grows it by 500 ppm while no NTP daemon updates it (and declares the clock
/// unsynchronized at 16 s). Past one second nobody has disciplined this clock
/// for half an hour, so it cannot vouch for certificate dates.
pub const MAX_TRUSTED_CLOCK_ERROR_US: i64 = 1_000_000;

/// An alert, seen on the wire or reported by OpenSSL as "received alert N".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenAlert {
    pub sender: Role,
    pub code: u8,
    /// Wire when captured in clear, OpenSSL when the receiving end's error
    /// queue reported it (which also covers TLS 1.3's encrypted alerts).
    pub source: Source,
}

impl SeenAlert {
    pub fn name(&self) -> &'static str {
        alert_name(self.code)
    }

    pub fn evidence(&self) -> Evidence {
        let text = match self.source {
            Source::Openssl => format!(
                "{}'s OpenSSL reported \"{}\": the {} sent alert {} ({})",
                self.sender.peer().as_str(),
                crate::evidence::openssl::reason_text(
                    reason::LIB_SSL,
                    reason::ALERT_OFFSET + u32::from(self.code)
                ),
                self.sender.as_str(),
                self.name(),
                self.code
            ),
            _ => format!(
                "{} sent fatal alert {} ({})",
                self.sender.as_str(),
                self.name(),
                self.code
            ),
        };
        Evidence::new(self.source, text)
    }
}

impl<'a> Facts<'a> {
    pub fn role(&self) -> Role {
        self.outcome.role
    }

    /// The time of the failure: the reference "now" for certificate dates seen
    /// on the wire.
    pub fn when(&self) -> DateTime<Utc> {
        self.outcome.time
    }

    pub fn sni(&self) -> Option<&'a str> {
        self.outcome.tls.sni.as_deref()
    }

    pub fn server_port(&self) -> Option<u16> {
        self.outcome.server.port
    }

    /// "site.example:443 (10.0.0.5)", "10.0.0.5:443" or "the server".
    pub fn target(&self) -> String {
        let server = &self.outcome.server;
        let port = server.port.map(|p| format!(":{p}")).unwrap_or_default();
        match (self.sni(), server.ip) {
            (Some(name), Some(ip)) => format!("{name}{port} ({ip})"),
            (Some(name), None) => format!("{name}{port}"),
            (None, Some(ip)) if ip.is_ipv6() => format!("[{ip}]{port}"),
            (None, Some(ip)) => format!("{ip}{port}"),
            (None, None) if !port.is_empty() => format!("port {}", &port[1..]),
            (None, None) => "the server".to_string(),
        }
    }

    /// "site.example:443" or "10.0.0.5:443", for commands a person can run.
    pub fn connect_target(&self) -> String {
        let server = &self.outcome.server;
        let port = server.port.unwrap_or(443);
        match (self.sni(), server.ip) {
            (Some(name), _) => format!("{name}:{port}"),
            (None, Some(ip)) if ip.is_ipv6() => format!("[{ip}]:{port}"),
            (None, Some(ip)) => format!("{ip}:{port}"),
            (None, None) => format!("HOST:{port}"),
        }
    }

    /// "nginx[812]" for the given end when it is a process here, otherwise
    /// "the client" / "the server".
    pub fn process(&self, role: Role) -> String {
        let end = match role {
            Role::Client => &self.outcome.client,
            Role::Server => &self.outcome.server,
        };
        let from_listener = || {
            self.host
                .listeners_on_port
                .iter()
                .find_map(|l| l.comm.clone().map(|c| (c, l.pid)))
        };
        let named = end.comm.clone().map(|c| (c, end.pid)).or_else(|| {
            if role == Role::Server {
                from_listener()
            } else {
                None
            }
        });
        match named {
            Some((comm, Some(pid))) => format!("{comm}[{pid}]"),
            Some((comm, None)) => comm,
            None => format!("the {}", role.as_str()),
        }
    }

    /// Every alert the facts show, wire ones first.
    pub fn alerts(&self) -> Vec<SeenAlert> {
        let tls = &self.outcome.tls;
        let peer = self.role().peer();
        let wire = tls
            .alerts
            .iter()
            .chain(tls.alert.iter())
            .map(|a| SeenAlert {
                sender: a.sender,
                code: a.code,
                source: Source::Wire,
            });
        let openssl = self.outcome.openssl.errors.iter().filter_map(|e| {
            received_alert(e.lib, e.reason).map(|code| SeenAlert {
                sender: peer,
                code,
                source: Source::Openssl,
            })
        });
        // `alert` repeats the first fatal one of `alerts`; OpenSSL may queue
        // the same reason twice.
        let mut seen: Vec<SeenAlert> = Vec::new();
        for alert in wire.chain(openssl) {
            if !seen.contains(&alert) {
                seen.push(alert);
            }
        }
        seen
    }

    /// The first alert `sender` sent with one of `codes`.
    pub fn alert_from(&self, sender: Role, codes: &[u8]) -> Option<SeenAlert> {
        self.alerts()
            .into_iter()
            .find(|a| a.sender == sender && codes.contains(&a.code))
    }

    /// Every sighting of an alert from `sender` with one of `codes`: the
    /// wire's and the receiving OpenSSL's, each its own evidence.
    pub fn alerts_from(&self, sender: Role, codes: &[u8]) -> Vec<SeenAlert> {
        self.alerts()
            .into_iter()
            .filter(|a| a.sender == sender && codes.contains(&a.code))
            .collect()
    }

    /// Any alert with one of `codes`, from either side.
    pub fn any_alert(&self, codes: &[u8]) -> Option<SeenAlert> {
        self.alerts().into_iter().find(|a| codes.contains(&a.code))
    }

    /// The observed process's first SSL-library error with one of `reasons`.
    pub fn ssl_error(&self, reasons: &[u32]) -> Option<&'a OpensslErrorFact> {
        self.lib_error(reason::LIB_SSL, reasons)
    }

    pub fn lib_error(&self, lib: u32, reasons: &[u32]) -> Option<&'a OpensslErrorFact> {
        self.outcome
            .openssl
            .errors
            .iter()
            .find(|e| e.lib == lib && reasons.contains(&e.reason))
    }

    pub fn ssl_error_evidence(&self, error: &OpensslErrorFact) -> Evidence {
        ssl_error_evidence(self.role(), error)
    }

    /// A failed verification of the SERVER's certificate: only a client's
    /// OpenSSL verifies that.
    pub fn server_cert_verify(&self, codes: &[i32]) -> Option<&'a VerifyResultFact> {
        if self.role() != Role::Client {
            return None;
        }
        self.failed_verify(codes)
    }

    /// Any failed verification of the server's certificate.
    pub fn server_cert_verify_any(&self) -> Option<&'a VerifyResultFact> {
        if self.role() != Role::Client {
            return None;
        }
        self.outcome
            .openssl
            .verify_result
            .as_ref()
            .filter(|v| v.code != 0)
    }

    /// A failed verification of the CLIENT's certificate (mTLS): only a
    /// server's OpenSSL verifies that.
    pub fn client_cert_verify(&self) -> Option<&'a VerifyResultFact> {
        if self.role() != Role::Server {
            return None;
        }
        self.outcome
            .openssl
            .verify_result
            .as_ref()
            .filter(|v| v.code != 0)
    }

    fn failed_verify(&self, codes: &[i32]) -> Option<&'a VerifyResultFact> {
        self.outcome
            .openssl
            .verify_result
            .as_ref()
            .filter(|v| v.code != 0 && codes.contains(&v.code))
    }

    pub fn verify_evidence(&self, verify: &VerifyResultFact) -> Evidence {
        verify_evidence(self.role(), verify)
    }

    /// Evidence that the client refused the SERVER's certificate, whichever
    /// end is watched: the client's verify failure or "certificate verify
    /// failed", or a certificate alert from the client.
    pub fn server_certificate_rejection(&self) -> Vec<Evidence> {
        let mut evidence = Vec::new();
        if let Some(v) = self.server_cert_verify_any() {
            evidence.push(self.verify_evidence(v));
        }
        if self.role() == Role::Client
            && let Some(e) = self.ssl_error(&[reason::CERTIFICATE_VERIFY_FAILED])
        {
            evidence.push(self.ssl_error_evidence(e));
        }
        evidence.extend(
            self.alerts_from(Role::Client, &CERTIFICATE_ALERTS)
                .iter()
                .map(SeenAlert::evidence),
        );
        evidence
    }

    /// A ServerHello was seen (or OpenSSL got past it).
    pub fn server_hello_seen(&self) -> bool {
        let tls = &self.outcome.tls;
        tls.server_hello.is_some()
            || tls.negotiated_version.is_some()
            || tls
                .messages
                .iter()
                .any(|m| m.sender == Role::Server && m.message == "ServerHello")
    }

    pub fn client_hello_seen(&self) -> bool {
        let tls = &self.outcome.tls;
        tls.client_hello.is_some()
            || tls
                .messages
                .iter()
                .any(|m| m.sender == Role::Client && m.message == "ClientHello")
    }

    /// The handshake finished: OpenSSL's handshake call returned 1, or the
    /// wire shows both sides past it.
    pub fn handshake_completed(&self) -> bool {
        let by_openssl = self.outcome.openssl.calls.iter().any(|c| {
            c.ret == 1
                && matches!(
                    c.function.as_str(),
                    "SSL_connect" | "SSL_accept" | "SSL_do_handshake"
                )
        });
        if by_openssl {
            return true;
        }
        let tls = &self.outcome.tls;
        let tls13 = self.negotiated_version() == Some(0x0304);
        if tls13 {
            // In TLS 1.3 everything after ServerHello is encrypted; a client
            // record that is not a probable alert is its Finished.
            return tls
                .encrypted_records
                .iter()
                .any(|r| r.sender == Role::Client && !r.probable_alert);
        }
        let ccs = |role| {
            tls.messages
                .iter()
                .any(|m| m.sender == role && m.message == "ChangeCipherSpec")
        };
        self.server_hello_seen() && ccs(Role::Client) && ccs(Role::Server)
    }

    /// The client sent application data after the handshake (TLS 1.3: more
    /// than its Finished record; TLS 1.2: any application-data record).
    pub fn client_sent_application_data(&self) -> bool {
        let records = self
            .outcome
            .tls
            .encrypted_records
            .iter()
            .filter(|r| r.sender == Role::Client && r.content_type == 23 && !r.probable_alert)
            .count();
        if self.negotiated_version() == Some(0x0304) {
            records > 1
        } else {
            records > 0
        }
    }

    /// The client closed the connection (or reset it), or ended it at the
    /// TLS layer first: its encrypted close_notify (or alert) came before
    /// any of the server's. Who sent the first FIN races when the server
    /// closes the moment a close_notify arrives, as nginx does.
    pub fn client_closed(&self) -> bool {
        let closer = self.outcome.socket.closed_by.as_deref();
        let by_socket = match self.role() {
            Role::Client => closer == Some("local"),
            Role::Server => closer == Some("peer"),
        };
        let first_alert = self
            .outcome
            .tls
            .encrypted_records
            .iter()
            .find(|r| r.probable_alert)
            .map(|r| r.sender);
        by_socket || first_alert == Some(Role::Client)
    }

    pub fn negotiated_version(&self) -> Option<u16> {
        let tls = &self.outcome.tls;
        tls.negotiated_version
            .as_deref()
            .or(tls.server_hello.as_ref().map(|s| s.version.as_str()))
            .and_then(version_number)
    }

    /// Versions the client offered, ascending (GREASE and unknown ids dropped).
    pub fn offered_versions(&self) -> Vec<u16> {
        let tls = &self.outcome.tls;
        let mut names: Vec<&str> = tls.offered_versions.iter().map(String::as_str).collect();
        if names.is_empty()
            && let Some(hello) = &tls.client_hello
        {
            names = hello
                .supported_versions
                .iter()
                .map(String::as_str)
                .collect();
            if names.is_empty() {
                names.push(hello.legacy_version.as_str());
            }
        }
        let mut versions: Vec<u16> = names.into_iter().filter_map(version_number).collect();
        versions.sort_unstable();
        versions.dedup();
        versions
    }

    /// The server's log lines that name `cause`.
    pub fn log_lines(&self, cause: Cause) -> Vec<&'a LogLine> {
        self.host
            .log_lines
            .iter()
            .filter(|l| l.indicates == Some(cause))
            .map(|l| &l.line)
            .collect()
    }

    /// The clock state, when it is synchronized and its error small.
    pub fn trustworthy_clock(&self) -> Option<&'a ClockState> {
        self.host
            .clock
            .as_ref()
            .filter(|c| c.synchronized && c.max_error_us < MAX_TRUSTED_CLOCK_ERROR_US)
    }

    /// The configured and the wire chain reports, those present.
    pub fn chain_reports(&self) -> impl Iterator<Item = &'a ChainReport> {
        self.host
            .configured_chain
            .iter()
            .chain(self.host.wire_chain.iter())
    }

    /// Every (report, finding) pair matching `pick`.
    pub fn findings(
        &self,
        pick: impl Fn(&ChainFinding) -> bool,
    ) -> Vec<(&'a ChainReport, &'a ChainFinding)> {
        self.chain_reports()
            .flat_map(|r| r.findings.iter().map(move |f| (r, f)))
            .filter(|(_, f)| pick(f))
            .collect()
    }

    /// The server block that served this connection, or failing that one on
    /// the port (for the server kind and the directives to name).
    pub fn block(&self) -> Option<&'a ServerBlock> {
        self.host
            .selected_block
            .as_ref()
            .or(self.host.blocks_on_port.first())
    }

    pub fn server_kind(&self) -> Option<ServerKind> {
        self.block().map(|b| b.kind)
    }

    /// The certificate setting of the serving block, as "ssl_certificate
    /// /etc/nginx/certs/site.crt" and its file:line.
    pub fn certificate_setting(&self) -> Option<(&'static str, &'a Setting<std::path::PathBuf>)> {
        let block = self.block()?;
        let setting = block.certificate.as_ref()?;
        Some((directive(block.kind, Directive::Certificate), setting))
    }

    /// The leaf the server sent on the wire (TLS 1.2).
    pub fn wire_leaf(&self) -> Option<&'a CertificateFact> {
        self.outcome.tls.server_certificates.first()
    }

    /// The leaf of the configured chain.
    pub fn configured_leaf(&self) -> Option<&'a CertificateFact> {
        self.host
            .configured_chain
            .as_ref()
            .and_then(|c| c.certificates.first())
    }

    /// The client gave up after the server's first flight without any alert
    /// in clear: a TLS 1.3 encrypted alert, or a close before Finished.
    pub fn client_gave_up_after_server_hello(&self) -> bool {
        if !self.server_hello_seen() || self.handshake_completed() {
            return false;
        }
        let encrypted_alert = self
            .outcome
            .tls
            .encrypted_records
            .iter()
            .any(|r| r.sender == Role::Client && r.probable_alert);
        encrypted_alert || self.client_closed()
    }
}
