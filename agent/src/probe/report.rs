//! The probe's report: what `agent diagnose HOST:PORT --json` prints.
//!
//! Every field is documented here and in `docs/probe.md`. Optional fields
//! are left out of the JSON when absent and empty lists are kept, so a
//! consumer can tell "not tried" (absent) from "tried, nothing found" (`[]`).
//! `schema` changes when a field changes meaning or goes away; new fields
//! may appear without a bump.

use std::net::SocketAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::diagnosis::{Cause, Diagnosis, Evidence};
use crate::evidence::certificates::{CertificateFact, ChainReport};
use crate::outcome::HandshakeOutcome;

pub use super::certs::{CertificateCheck, CertificateChecks, TrustCheck};
pub use super::clients::{ClientSimulation, FailureKind};
pub use super::suites::{AcceptedSuite, EnumerationStatus, VersionSuites};

/// Version of the report layout.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything one probe of one target found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    /// Layout version ([`SCHEMA_VERSION`]).
    pub schema: u32,
    /// The target as given: `host:port` or `[v6]:port`.
    pub target: String,
    /// The host part of the target: a name, or an address without brackets.
    pub host: String,
    pub port: u16,
    /// The SNI the default client sent: `--sni`, else the target's host
    /// name; absent for an IP-address target without `--sni` (clients send
    /// no SNI for addresses).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// The name (or address) the certificate was checked against: the SNI,
    /// else the target's host.
    pub verify_name: String,
    /// The trust anchors the default client used: `--ca FILE`, or the
    /// system store OpenSSL clients on this host use.
    pub trust: String,
    /// When the probe started.
    pub started: DateTime<Utc>,
    /// How long the whole probe took, in milliseconds.
    pub duration_ms: u64,
    /// The headline: does a default client get through, and cleanly?
    pub verdict: Verdict,
    /// The target is served from this host: the root cause may name the
    /// local process, its listener and the config line to change. Known
    /// only with host state (false when it was not consulted).
    pub local: bool,
    /// Host state (listeners, server configs, logs, clock) was consulted.
    pub host_state_used: bool,
    /// Every address the target resolved to (at most 8), with its TCP result.
    pub addresses: Vec<AddressProbe>,
    /// The address the TLS attempts went to: the first that accepted TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probed_address: Option<SocketAddr>,
    /// The default client's handshake (see [`HandshakeSummary`]); absent
    /// when no address accepted TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handshake: Option<HandshakeSummary>,
    /// The chain as served, analysed against the default client's trust
    /// anchors for `verify_name` (`source` is "wire"): completeness, order,
    /// trust, names, dates, key sizes and signatures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<ChainReport>,
    /// TLS 1.0, 1.1, 1.2 and 1.3, each offered alone.
    pub protocols: Vec<ProtocolProbe>,
    /// Per version: every suite the server accepts, its order, its groups
    /// and DH size. One entry per version, `not-tested` under `--quick`.
    #[serde(default)]
    pub cipher_suites: Vec<VersionSuites>,
    /// Real clients' ClientHellos, and whether each would connect; empty
    /// under `--quick` or when the server could not be reached.
    #[serde(default)]
    pub clients: Vec<ClientSimulation>,
    /// Key usage, EKU, key identifiers, must-staple, SCTs and the chain's
    /// verdict per trust store, for the served chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_checks: Option<CertificateChecks>,
    /// What a client that sends no SNI gets; absent when the default client
    /// sent none itself (then it is the same handshake).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub without_sni: Option<SniProbe>,
    /// The server asked for a client certificate: whether it insists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<ClientCertificateCheck>,
    /// Why a default client fails, as the rules engine names it (the same
    /// rules as for captured failures). Absent when it gets through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<Diagnosis>,
    /// The facts the root cause was decided from: the failing connection as
    /// a handshake outcome record (role client), as the journal would hold it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<HandshakeOutcome>,
    /// Every other problem found, most severe first.
    pub findings: Vec<Finding>,
    /// How to read the results: steps skipped, limits hit, what an attempt
    /// did that a default client would not.
    pub notes: Vec<String>,
}

impl ProbeReport {
    /// Findings of at least `severity`.
    pub fn findings_at_least(&self, severity: Severity) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.severity >= severity)
    }

    /// The finding of a catalogue class, if one was reported.
    pub fn finding(&self, cause: Cause) -> Option<&Finding> {
        self.findings.iter().find(|f| f.cause == Some(cause))
    }
}

/// The probe's headline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// A default client gets through and nothing worth a warning was found.
    Ok,
    /// A default client gets through, but there are warnings (weak
    /// protocols accepted, a certificate expiring soon, a chain some
    /// clients cannot build, ...).
    Warnings,
    /// A default client fails: `root_cause` says why.
    Failed,
}

impl Verdict {
    /// Process exit code for `agent diagnose`: 0 when nothing is wrong, 1
    /// when something is (warnings or a failing client); 2 is kept for the
    /// command's own errors.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Ok => 0,
            Verdict::Warnings | Verdict::Failed => 1,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warnings => "warnings",
            Verdict::Failed => "failed",
        }
    }
}

/// One resolved address and what TCP said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressProbe {
    pub address: SocketAddr,
    pub tcp: TcpResult,
    /// The `connect` errno when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// Its symbolic name ("ECONNREFUSED"), or the error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Time to connect (or to fail), in milliseconds; absent when the
    /// address was not tried (total timeout reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
}

/// How a TCP connect ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TcpResult {
    Connected,
    /// ECONNREFUSED: a reset answered the SYN (nothing listens, or a
    /// firewall rejects).
    Refused,
    /// ENETUNREACH / EHOSTUNREACH / ENETDOWN: no route, or an ICMP
    /// unreachable.
    Unreachable,
    /// No answer to the SYN within the step timeout (a firewall that drops,
    /// a host that is down).
    TimedOut,
    /// Any other error (EACCES from a local firewall, EADDRNOTAVAIL, ...).
    Error,
    /// Not tried: the total timeout was reached first.
    NotTried,
}

impl TcpResult {
    /// People's words: "timed out", not `TimedOut`.
    pub fn label(self) -> &'static str {
        match self {
            TcpResult::Connected => "connected",
            TcpResult::Refused => "refused",
            TcpResult::Unreachable => "unreachable",
            TcpResult::TimedOut => "timed out",
            TcpResult::Error => "failed",
            TcpResult::NotTried => "not tried",
        }
    }
}

/// The default client's handshake: TLS 1.2–1.3, OpenSSL's default cipher
/// suites and groups at this host's security level, certificate and host
/// name verification on, ALPN h2 and http/1.1, an OCSP status request, and
/// no client certificate — what curl, Python and browsers do.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeSummary {
    /// The handshake completed (and, when the server asked for a client
    /// certificate, a request was answered too).
    pub completed: bool,
    /// Negotiated version, e.g. "TLS 1.3".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Negotiated cipher suite (OpenSSL's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// ALPN protocol the server selected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    /// X.509 verify result of the served chain (0 = ok), when the server's
    /// certificate was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_text: Option<String>,
    /// OpenSSL's error-queue reasons, in order ("certificate verify failed").
    pub errors: Vec<String>,
    /// What ended a failed handshake, in words (first OpenSSL reason, or the
    /// socket's story: "the server sent nothing for 5 s").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The server sent a CertificateRequest.
    pub certificate_requested: bool,
    /// Certificates the server sent, before any cap.
    pub served_certificates: usize,
    /// Stapled OCSP response, when the server sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ocsp: Option<OcspStaple>,
    /// Handshake time in milliseconds (TCP connect excluded).
    pub duration_ms: u64,
}

/// A stapled OCSP response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OcspStaple {
    /// Response status: "successful", "tryLater", ...
    pub response_status: String,
    /// The leaf's status in it: "good", "revoked", "unknown"; absent when
    /// it could not be read (no issuer served, or no matching entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_status: Option<String>,
    /// DER length of the response.
    pub bytes: usize,
    /// Its signature verifies against the client's anchors (the served
    /// chain as intermediates); absent when it could not be checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<bool>,
    /// The leaf's entry: thisUpdate / nextUpdate, as OpenSSL prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub this_update: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_update: Option<String>,
    /// The entry is current (within 5 minutes of this host's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<bool>,
    /// What went wrong reading or verifying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// One protocol version offered alone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtocolProbe {
    /// "TLS 1.0" … "TLS 1.3".
    pub version: String,
    pub status: ProtocolStatus,
    /// The suite the server chose, when it accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cipher: Option<String>,
    /// Why it was rejected or not tested (alert, OpenSSL reason, skip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// A default modern client (OpenSSL 3 at security level 2, curl,
    /// browsers) offers this version. TLS 1.0/1.1 attempts ran at OpenSSL
    /// security level 0 with every cipher suite: a default client would not
    /// offer them at all.
    pub default_client_offers: bool,
}

/// Whether the server speaks a version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolStatus {
    /// The server answered with a ServerHello for this version.
    Accepted,
    /// The server refused it (alert, close, another version).
    Rejected,
    /// Not tried (timeout budget spent, or no TCP connection).
    NotTested,
}

impl ProtocolStatus {
    pub fn label(self) -> &'static str {
        match self {
            ProtocolStatus::Accepted => "accepted",
            ProtocolStatus::Rejected => "rejected",
            ProtocolStatus::NotTested => "not tested",
        }
    }
}

/// A handshake without SNI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SniProbe {
    /// The server completed a handshake without SNI.
    pub completed: bool,
    /// The leaf it served then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf: Option<CertificateFact>,
    /// It is the same certificate as the one served with SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_as_with_sni: Option<bool>,
    /// That leaf covers `verify_name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub covers_name: Option<bool>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The server asked for a client certificate; the probe sent none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertificateCheck {
    /// The server refused the connection or the request without one;
    /// false when it served the request anyway (the certificate is
    /// optional); absent when that could not be told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required: Option<bool>,
    /// What showed it: an alert, an HTTP status, a served request.
    pub how: String,
    /// CA names the server listed as acceptable issuers (at most 20).
    pub acceptable_issuers: Vec<String>,
}

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; nothing breaks.
    Info,
    /// Some clients fail or will fail (old or strict ones, or soon).
    Warning,
    /// Default clients fail because of it (now, or once the root cause is
    /// fixed).
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A problem found beside the root cause.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable kebab-case id: the catalogue id when the finding is one of its
    /// classes (then `cause` holds it too), else one of the probe's own:
    /// `weak-protocol-accepted`, `tls12-not-supported`,
    /// `tls13-not-supported`, `certificate-expiring-soon`,
    /// `chain-wrong-order`, `certificate-revoked`,
    /// `client-certificate-optional`, `sni-required`,
    /// `unparsable-certificate`, `address-failed` (another address of the
    /// target failed TCP; `cause` is the rules' verdict on it),
    /// `client-cannot-connect` (a simulated client fails; `cause` is the
    /// class of its failure when the catalogue has one), `weak-cipher-suites`,
    /// `weak-dh-parameters`, `certificate-not-for-server-auth`,
    /// `key-usage-incompatible`, `must-staple-not-stapled`,
    /// `ocsp-staple-invalid`, `no-certificate-transparency`,
    /// `missing-key-identifier`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Cause>,
    pub severity: Severity,
    /// One line a person can act on.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What to change.
    pub remediation: String,
}

impl Finding {
    pub fn new(kind: &str, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding {
            kind: kind.to_string(),
            cause: Cause::from_id(kind),
            severity,
            summary: summary.into(),
            evidence: Vec::new(),
            remediation: String::new(),
        }
    }

    /// A finding of a catalogue class.
    pub fn of(cause: Cause, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding::new(cause.id(), severity, summary)
    }

    pub fn evidence(mut self, e: Evidence) -> Finding {
        self.evidence.push(e);
        self
    }

    pub fn fix(mut self, remediation: impl Into<String>) -> Finding {
        self.remediation = remediation.into();
        self
    }

    /// A finding from a diagnosis of the rules engine.
    pub fn from_diagnosis(kind: &str, severity: Severity, d: &Diagnosis) -> Finding {
        Finding {
            kind: kind.to_string(),
            cause: Some(d.cause),
            severity,
            summary: d.summary.clone(),
            evidence: d.evidence.clone(),
            remediation: d.remediation.clone(),
        }
    }
}
