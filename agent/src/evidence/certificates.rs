//! Certificate evidence (H, and W for TLS 1.2 chains seen on the wire):
//! parsing with `x509-parser`, verification against the system trust store
//! with the host's OpenSSL.
//!
//! IMPLEMENTATION PENDING (helper): chain analysis and trust store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The facts of one certificate that diagnosis uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateFact {
    pub subject: String,
    pub issuer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// DNS names and IP addresses of the subjectAltName extension.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sans: Vec<String>,
    pub serial: String,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Subject equals issuer.
    pub self_signed: bool,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// "RSA", "EC", "Ed25519", "DSA" or the algorithm OID.
    pub key_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
    /// e.g. "sha256WithRSAEncryption", "ecdsa-with-SHA256", "sha1WithRSAEncryption".
    pub signature_algorithm: String,
    /// SHA-256 of the DER, lower-case hex.
    pub sha256: String,
}

/// A problem found in a certificate chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ChainFinding {
    /// The leaf's issuer is neither in the chain nor a trust anchor: an
    /// intermediate is missing.
    MissingIntermediate { issuer: String },
    /// Certificates are not in leaf-to-root order.
    WrongOrder,
    /// The chain ends in a self-signed certificate the trust store does not hold.
    UntrustedRoot { root: String },
    /// The leaf itself is self-signed and not trusted.
    SelfSignedLeaf { subject: String },
    /// `index` into the chain (0 = leaf).
    Expired { index: usize, subject: String, not_after: DateTime<Utc> },
    NotYetValid { index: usize, subject: String, not_before: DateTime<Utc> },
    /// The name checked is not among the leaf's SANs (or CN when no SAN).
    NameMismatch { name: String, sans: Vec<String> },
    /// RSA/DSA key under 2048 bits, EC under 224 bits.
    WeakKey { index: usize, subject: String, key_type: String, bits: u32 },
    /// MD5 or SHA-1 signature on a non-root certificate.
    WeakSignature { index: usize, subject: String, algorithm: String },
    /// The file could not be read or parsed.
    Unreadable { path: String, error: String },
}

/// The analysis of one chain (a configured file, or what the wire showed).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainReport {
    /// File path(s) or "wire".
    pub source: String,
    /// Leaf first, as served.
    pub certificates: Vec<CertificateFact>,
    /// OpenSSL's verdict against the system trust store (`X509_V_OK` = 0).
    pub verify_code: i32,
    pub verify_text: String,
    /// The name the chain was checked for, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub findings: Vec<ChainFinding>,
}
