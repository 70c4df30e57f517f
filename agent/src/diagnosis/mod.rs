//! Root causes: the catalogue's classes, a diagnosis with its evidence, and
//! the engine that runs the rules over a failure's facts.

pub mod engine;
pub mod rules;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A failure class from the catalogue (`failure-catalogue.md`). The serialized
/// form is the stable id used in the journal, `diagnose --json` and spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    ChainIncomplete,
    UntrustedRoot,
    HostnameMismatch,
    SniDefaultCertificate,
    CertificateExpired,
    CertificateNotYetValid,
    ClockSkew,
    ProtocolVersionMismatch,
    NoSharedCipher,
    WeakCryptoRejected,
    PortNotListening,
    ListenerBoundToLoopback,
    PlaintextToTlsPort,
    TlsToPlaintextPort,
    ClientCertificateRequired,
    ServerCannotLoadCertificate,
    HandshakeAborted,
    Unknown,
}

impl Cause {
    pub const ALL: [Cause; 18] = [
        Cause::ChainIncomplete,
        Cause::UntrustedRoot,
        Cause::HostnameMismatch,
        Cause::SniDefaultCertificate,
        Cause::CertificateExpired,
        Cause::CertificateNotYetValid,
        Cause::ClockSkew,
        Cause::ProtocolVersionMismatch,
        Cause::NoSharedCipher,
        Cause::WeakCryptoRejected,
        Cause::PortNotListening,
        Cause::ListenerBoundToLoopback,
        Cause::PlaintextToTlsPort,
        Cause::TlsToPlaintextPort,
        Cause::ClientCertificateRequired,
        Cause::ServerCannotLoadCertificate,
        Cause::HandshakeAborted,
        Cause::Unknown,
    ];

    /// The catalogue id, e.g. `chain-incomplete`.
    pub fn id(self) -> &'static str {
        match self {
            Cause::ChainIncomplete => "chain-incomplete",
            Cause::UntrustedRoot => "untrusted-root",
            Cause::HostnameMismatch => "hostname-mismatch",
            Cause::SniDefaultCertificate => "sni-default-certificate",
            Cause::CertificateExpired => "certificate-expired",
            Cause::CertificateNotYetValid => "certificate-not-yet-valid",
            Cause::ClockSkew => "clock-skew",
            Cause::ProtocolVersionMismatch => "protocol-version-mismatch",
            Cause::NoSharedCipher => "no-shared-cipher",
            Cause::WeakCryptoRejected => "weak-crypto-rejected",
            Cause::PortNotListening => "port-not-listening",
            Cause::ListenerBoundToLoopback => "listener-bound-to-loopback",
            Cause::PlaintextToTlsPort => "plaintext-to-tls-port",
            Cause::TlsToPlaintextPort => "tls-to-plaintext-port",
            Cause::ClientCertificateRequired => "client-certificate-required",
            Cause::ServerCannotLoadCertificate => "server-cannot-load-certificate",
            Cause::HandshakeAborted => "handshake-aborted",
            Cause::Unknown => "unknown",
        }
    }

    pub fn from_id(id: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.id() == id)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// How sure a diagnosis is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

/// Where a piece of evidence came from (the catalogue's letters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// W: TLS records captured on the socket.
    Wire,
    /// U: OpenSSL uprobes (return values, error queue, verify result).
    Openssl,
    /// S: socket syscalls and TCP state.
    Socket,
    /// H: host state (listeners, server config, files, clock, logs).
    Host,
}

impl Source {
    pub fn letter(self) -> char {
        match self {
            Source::Wire => 'W',
            Source::Openssl => 'U',
            Source::Socket => 'S',
            Source::Host => 'H',
        }
    }
}

/// One fact supporting a diagnosis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub source: Source,
    /// What was observed, in a sentence.
    pub fact: String,
    /// `file:line` (or a file) the fact was read from, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

impl Evidence {
    pub fn new(source: Source, fact: impl Into<String>) -> Self {
        Evidence {
            source,
            fact: fact.into(),
            location: None,
        }
    }

    pub fn at(mut self, location: impl Into<String>) -> Self {
        self.location = Some(location.into());
        self
    }
}

/// Another cause the same evidence fits.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alternative {
    pub cause: Cause,
    pub why: String,
}

/// A named root cause with its proof and fix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub cause: Cause,
    pub confidence: Confidence,
    /// One line a person can act on.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// The fix, naming the file, line or setting where the host shows it.
    pub remediation: String,
    /// `file:line` of the setting to change, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix_location: Option<String>,
    /// Other causes that fit the evidence too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alternatives: Vec<Alternative>,
}

impl Diagnosis {
    pub fn new(cause: Cause, confidence: Confidence, summary: impl Into<String>) -> Self {
        Diagnosis {
            cause,
            confidence,
            summary: summary.into(),
            evidence: Vec::new(),
            remediation: String::new(),
            fix_location: None,
            alternatives: Vec::new(),
        }
    }

    pub fn evidence(mut self, e: Evidence) -> Self {
        self.evidence.push(e);
        self
    }

    pub fn fix(mut self, remediation: impl Into<String>) -> Self {
        self.remediation = remediation.into();
        self
    }

    pub fn fix_at(mut self, location: Option<String>) -> Self {
        self.fix_location = location;
        self
    }

    /// The placeholder a failure carries before diagnosis runs.
    pub fn undiagnosed() -> Self {
        Diagnosis::new(Cause::Unknown, Confidence::Low, "not diagnosed")
    }
}
