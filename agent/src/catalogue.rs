//! The catalogue's vocabulary (docs/catalogue.md): the failure classes, how
//! sure a diagnosis is, where its evidence comes from, and the shape of a
//! diagnosis. It sits below both `outcome` (a record carries its diagnosis)
//! and `diagnosis` (the rules and the engine that produce one), and reads
//! nothing itself.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Declares the failure classes once: each row is a variant, its catalogue
/// id and its rank in the specificity order (1 = most specific). The enum,
/// its serde names, [`Cause::ALL`], [`Cause::id`] and [`SPECIFICITY`] are
/// generated from the rows, so a new class is one row here (plus its rule,
/// tests and docs row); a rank given twice does not compile.
macro_rules! causes {
    ($($(#[doc = $doc:literal])* $variant:ident = $id:literal, specificity $rank:literal;)+) => {
        /// A failure class from the catalogue (docs/catalogue.md). The
        /// serialized form is the stable id used in the journal,
        /// `diagnose --json` and spans. Declaration order is the
        /// catalogue's (and `Ord`'s).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Cause {
            $($(#[doc = $doc])* #[serde(rename = $id)] $variant,)+
        }

        impl Cause {
            /// Every class, in catalogue order.
            pub const ALL: [Cause; [$(Cause::$variant),+].len()] = [$(Cause::$variant),+];

            /// The catalogue id, e.g. `chain-incomplete`.
            pub const fn id(self) -> &'static str {
                match self {
                    $(Cause::$variant => $id,)+
                }
            }

            /// Rank in the tie-break between causes of equal confidence:
            /// the lower, the more specific (see [`SPECIFICITY`]).
            pub const fn specificity(self) -> usize {
                match self {
                    $(Cause::$variant => $rank,)+
                }
            }
        }
    };
}

causes! {
    ChainIncomplete = "chain-incomplete", specificity 9;
    UntrustedRoot = "untrusted-root", specificity 10;
    HostnameMismatch = "hostname-mismatch", specificity 13;
    SniDefaultCertificate = "sni-default-certificate", specificity 4;
    CertificateExpired = "certificate-expired", specificity 11;
    CertificateNotYetValid = "certificate-not-yet-valid", specificity 12;
    ClockSkew = "clock-skew", specificity 3;
    ProtocolVersionMismatch = "protocol-version-mismatch", specificity 14;
    NoSharedCipher = "no-shared-cipher", specificity 15;
    WeakCryptoRejected = "weak-crypto-rejected", specificity 8;
    PortNotListening = "port-not-listening", specificity 16;
    ListenerBoundToLoopback = "listener-bound-to-loopback", specificity 2;
    PlaintextToTlsPort = "plaintext-to-tls-port", specificity 6;
    TlsToPlaintextPort = "tls-to-plaintext-port", specificity 7;
    ClientCertificateRequired = "client-certificate-required", specificity 5;
    ServerCannotLoadCertificate = "server-cannot-load-certificate", specificity 1;
    HandshakeAborted = "handshake-aborted", specificity 17;
    Unknown = "unknown", specificity 18;
}

impl Cause {
    pub fn from_id(id: &str) -> Option<Cause> {
        Cause::ALL.into_iter().find(|c| c.id() == id)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// Tie-break between causes of equal confidence: the earlier, the more
/// specific. Classes whose evidence names a precise mechanism come before
/// classes that describe a symptom (handshake-aborted, port-not-listening);
/// chain-incomplete comes before the validity classes because OpenSSL does
/// not check dates on a chain it cannot build (an expired leaf served
/// without its intermediate reports X509 error 20, not 10). Generated from
/// the ranks of the table above; the build fails unless they are exactly
/// 1..=N.
pub const SPECIFICITY: [Cause; Cause::ALL.len()] = {
    let mut order = [Cause::Unknown; Cause::ALL.len()];
    let mut filled = [false; Cause::ALL.len()];
    let mut i = 0;
    while i < Cause::ALL.len() {
        let cause = Cause::ALL[i];
        let rank = cause.specificity();
        assert!(
            rank >= 1 && rank <= Cause::ALL.len(),
            "a specificity rank is out of 1..=N"
        );
        assert!(!filled[rank - 1], "two causes share a specificity rank");
        filled[rank - 1] = true;
        order[rank - 1] = cause;
        i += 1;
    }
    order
};

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case_and_what_serde_writes() {
        for (i, cause) in Cause::ALL.into_iter().enumerate() {
            let id = cause.id();
            assert!(
                id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{id}"
            );
            assert_eq!(serde_json::to_string(&cause).unwrap(), format!("\"{id}\""));
            assert_eq!(
                serde_json::from_str::<Cause>(&format!("\"{id}\"")).unwrap(),
                cause
            );
            assert_eq!(Cause::from_id(id), Some(cause));
            assert!(Cause::ALL[..i].iter().all(|c| c.id() != id), "{id} twice");
        }
        assert_eq!(Cause::from_id("no-such-cause"), None);
    }

    #[test]
    fn specificity_is_the_ranks_in_order() {
        for (i, cause) in SPECIFICITY.into_iter().enumerate() {
            assert_eq!(cause.specificity(), i + 1, "{cause}");
        }
        assert_eq!(SPECIFICITY.last(), Some(&Cause::Unknown));
    }

    /// The docs are the catalogue's reference: each class has its row in
    /// docs/catalogue.md and in the evidence table of docs/diagnosis.md.
    #[test]
    fn every_class_has_its_docs_rows() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        for file in ["catalogue.md", "diagnosis.md"] {
            let text = std::fs::read_to_string(docs.join(file)).unwrap();
            for cause in Cause::ALL {
                let row = format!("| `{}` |", cause.id());
                assert!(text.contains(&row), "docs/{file} has no row for {cause}");
            }
        }
    }
}
