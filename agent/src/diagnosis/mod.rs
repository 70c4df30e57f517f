//! Root causes: the catalogue's classes, a diagnosis with its evidence, and
//! the engine that runs the rules over a failure's facts.

pub mod checks;
pub mod engine;
pub mod rules;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::evidence::host::HostFacts;
use crate::outcome::HandshakeOutcome;

/// A failure class from the catalogue (docs/catalogue.md). The serialized
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

    /// Adds several pieces of evidence, in order.
    pub fn with_evidence(mut self, evidence: impl IntoIterator<Item = Evidence>) -> Self {
        self.evidence.extend(evidence);
        self
    }

    /// Names another cause the same evidence fits, and why.
    pub fn or_maybe(mut self, cause: Cause, why: impl Into<String>) -> Self {
        self.alternatives.push(Alternative {
            cause,
            why: why.into(),
        });
        self
    }

    /// The placeholder a failure carries before diagnosis runs.
    pub fn undiagnosed() -> Self {
        Diagnosis::new(Cause::Unknown, Confidence::Low, "not diagnosed")
    }
}

/// What the rules read: one handshake outcome (wire, OpenSSL and socket
/// facts, from the observed end) and the host state around it (empty when
/// the server is not on this host).
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    pub outcome: &'a HandshakeOutcome,
    pub host: &'a HostFacts,
}

/// Pairs `(refining, refined, why)`: when both fire, the refining cause
/// explains why the refined one's evidence appeared, so it wins whatever the
/// two confidences are, and the refined one stays as an alternative with
/// this why. (Each refining rule fires only on the state that makes it the
/// explanation: clock-skew only with an untrustworthy clock or a peer whose
/// judgement this host's synchronized clock contradicts; sni-default only
/// when the default block served or no SNI was sent; cannot-load only with
/// its certificate unreadable or logged as such.)
pub const REFINEMENTS: &[(Cause, Cause, &str)] = &[
    (
        Cause::ClockSkew,
        Cause::CertificateExpired,
        "the certificate only looks expired if the clock is wrong; if the clock is in fact right, it really is expired and must be renewed",
    ),
    (
        Cause::ClockSkew,
        Cause::CertificateNotYetValid,
        "the certificate only looks not yet valid if the clock is wrong; if the clock is in fact right, it really is post-dated",
    ),
    (
        Cause::SniDefaultCertificate,
        Cause::HostnameMismatch,
        "the name does not match because the default server's certificate was served",
    ),
    (
        Cause::ServerCannotLoadCertificate,
        Cause::PortNotListening,
        "nothing listens because the server could not load its certificate",
    ),
];

/// Tie-break between causes of equal confidence: the earlier, the more
/// specific. Classes whose evidence names a precise mechanism come before
/// classes that describe a symptom (handshake-aborted, port-not-listening);
/// chain-incomplete comes before the validity classes because OpenSSL does
/// not check dates on a chain it cannot build (an expired leaf served
/// without its intermediate reports X509 error 20, not 10).
pub const SPECIFICITY: [Cause; 18] = [
    Cause::ServerCannotLoadCertificate,
    Cause::ListenerBoundToLoopback,
    Cause::ClockSkew,
    Cause::SniDefaultCertificate,
    Cause::ClientCertificateRequired,
    Cause::PlaintextToTlsPort,
    Cause::TlsToPlaintextPort,
    Cause::WeakCryptoRejected,
    Cause::ChainIncomplete,
    Cause::UntrustedRoot,
    Cause::CertificateExpired,
    Cause::CertificateNotYetValid,
    Cause::HostnameMismatch,
    Cause::ProtocolVersionMismatch,
    Cause::NoSharedCipher,
    Cause::PortNotListening,
    Cause::HandshakeAborted,
    Cause::Unknown,
];

fn specificity_rank(cause: Cause) -> usize {
    SPECIFICITY
        .iter()
        .position(|&c| c == cause)
        .unwrap_or(SPECIFICITY.len())
}

/// Names the root cause of a failed handshake.
///
/// Precedence, in order:
/// 1. every rule in `rules::RULES` runs; none firing gives `unknown`, which
///    keeps every raw fact in its evidence;
/// 2. a cause refined by another that also fired (`REFINEMENTS`) steps
///    aside, whatever its confidence;
/// 3. of the rest, the highest confidence wins, ties going to the more
///    specific class (`SPECIFICITY`);
/// 4. every other cause that fired is attached as an alternative with its
///    why, after the alternatives the winning rule named itself.
///
/// Successes get a trivial diagnosis: the engine is meant for failures.
pub fn diagnose(facts: &Facts) -> Diagnosis {
    if !facts.outcome.is_failure() {
        return Diagnosis::new(
            Cause::Unknown,
            Confidence::Low,
            "the handshake succeeded: nothing to diagnose",
        );
    }
    let fired: Vec<Diagnosis> = rules::RULES
        .iter()
        .filter_map(|(_, rule)| rule(facts))
        .collect();
    if fired.is_empty() {
        return rules::unknown(facts);
    }
    let refined_by = |d: &Diagnosis| {
        REFINEMENTS
            .iter()
            .find(|(refining, refined, _)| {
                *refined == d.cause && fired.iter().any(|o| o.cause == *refining)
            })
            .map(|(_, _, why)| *why)
    };
    let (mut ranked, stepped_aside): (Vec<&Diagnosis>, Vec<&Diagnosis>) =
        fired.iter().partition(|d| refined_by(d).is_none());
    ranked.sort_by_key(|d| (std::cmp::Reverse(d.confidence), specificity_rank(d.cause)));
    let Some((&winner, others)) = ranked.split_first() else {
        // Refinement never removes every candidate (a refining cause is
        // itself never refined), but fall back honestly if the table changes.
        return rules::unknown(facts);
    };
    let mut diagnosis = winner.clone();
    let mut alternatives = std::mem::take(&mut diagnosis.alternatives);
    for other in stepped_aside {
        alternatives.push(Alternative {
            cause: other.cause,
            why: format!(
                "{} ({})",
                refined_by(other).unwrap_or_default(),
                other.summary
            ),
        });
    }
    for other in others {
        alternatives.push(Alternative {
            cause: other.cause,
            why: format!(
                "also fits, {} confidence: {}",
                confidence_word(other.confidence),
                other.summary
            ),
        });
    }
    let mut seen = vec![diagnosis.cause];
    alternatives.retain(|a| {
        let first = !seen.contains(&a.cause);
        seen.push(a.cause);
        first
    });
    diagnosis.alternatives = alternatives;
    note_container(&mut diagnosis, facts);
    diagnosis
}

/// When the files a diagnosis cites belong to a containerised server, says
/// so: the paths are the container's, and the fix is made inside it (or in
/// the image or volume it comes from), not on the host.
fn note_container(diagnosis: &mut Diagnosis, facts: &Facts) {
    let Some(block) = &facts.host.selected_block else {
        return;
    };
    let (Some(context), Some(base)) = (block.root.context(), block.root.base()) else {
        return;
    };
    let cites_files = diagnosis.fix_location.is_some()
        || diagnosis
            .evidence
            .iter()
            .any(|e| e.source == Source::Host && e.location.is_some());
    if !cites_files {
        return;
    }
    diagnosis.evidence.push(Evidence::new(
        Source::Host,
        format!(
            "the server runs {context}: its files are named as it sees them, read through {}",
            base.display()
        ),
    ));
    if diagnosis.fix_location.is_some() && !diagnosis.remediation.is_empty() {
        diagnosis.remediation = format!(
            "{} (the file is {context}: change it there, or in the image or volume it comes from)",
            diagnosis.remediation
        );
    }
}

fn confidence_word(confidence: Confidence) -> &'static str {
    match confidence {
        Confidence::Low => "low",
        Confidence::Medium => "medium",
        Confidence::High => "high",
    }
}
