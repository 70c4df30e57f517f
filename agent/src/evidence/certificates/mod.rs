//! Certificate evidence (H, and W for TLS 1.2 chains seen on the wire):
//! parsing with `x509-parser`, verification against the system trust store
//! with the host's OpenSSL.
//!
//! [`analyze_chain`] gives two views of one chain: OpenSSL's verdict
//! (`verify_code`, which stops at the first error, as clients do) and our own
//! [`ChainFinding`]s, computed independently so that e.g. an expired leaf
//! served without its intermediate shows both problems.

use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use openssl::x509::X509;
use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

/// Largest certificate (chain) file read: a served chain is a few KiB; a
/// multi-megabyte "certificate" is a wrong path, not a chain.
const MAX_CHAIN_FILE: u64 = 1 << 20;
/// Largest CA bundle read (Debian's is ~220 KiB).
const MAX_BUNDLE_FILE: u64 = 16 << 20;
/// Hashed files read from one CA directory.
const MAX_DIR_FILES: usize = 10_000;
/// Certificates analysed in one chain; pairwise issuer checks are quadratic
/// and a hostile peer can send hundreds.
const MAX_CHAIN_CERTS: usize = 32;

/// `verify_code` when OpenSSL did not run (empty or unreadable chain).
pub const VERIFY_NOT_RUN: i32 = -1;

/// Why a certificate could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("not a DER X.509 certificate: {0}")]
    Parse(String),
    #[error("certificate validity date out of range")]
    BadDate,
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: String, limit: u64 },
    #[error("no certificate in {path}")]
    NoCertificate { path: String },
    #[error("{path}: certificate block {index} is malformed: {reason}")]
    BadPem {
        path: String,
        index: usize,
        reason: String,
    },
    #[error("no trust anchors found (searched {searched})")]
    NoTrustAnchors { searched: String },
    #[error("OpenSSL")]
    Openssl(#[from] ErrorStack),
}

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

impl CertificateFact {
    /// Parses one DER certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CertError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CertError::Parse(crate::text::Chain(&e).to_string()))?;
        let registry = x509_parser::objects::oid_registry();
        let mut sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => sans.push((*n).to_string()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_from_bytes(bytes) {
                            sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let spki = cert.public_key();
        let ossl = X509::from_der(der).ok();
        let key_type = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(_)) => "RSA".to_string(),
            Ok(x509_parser::public_key::PublicKey::EC(_)) => "EC".to_string(),
            Ok(x509_parser::public_key::PublicKey::DSA(_)) => "DSA".to_string(),
            _ => x509_parser::objects::oid2sn(&spki.algorithm.algorithm, registry)
                .map(str::to_string)
                .unwrap_or_else(|_| spki.algorithm.algorithm.to_id_string()),
        };
        // OpenSSL's bit count is exact; x509-parser's RSA size assumes a
        // leading zero byte and its DSA size is that of the public value.
        let key_bits = ossl
            .as_ref()
            .and_then(|c| c.public_key().ok())
            .map(|k| k.bits())
            .filter(|&b| b > 0)
            .or_else(|| {
                spki.parsed()
                    .ok()
                    .map(|k| k.key_size() as u32)
                    .filter(|&b| b > 0)
            });
        let sig_oid = &cert.signature_algorithm.algorithm;
        // x509-parser's registry lacks some (ecdsa-with-SHA1); OpenSSL's
        // short names are what its own messages use.
        let signature_algorithm = x509_parser::objects::oid2sn(sig_oid, registry)
            .map(str::to_string)
            .ok()
            .or_else(|| {
                let nid = ossl.as_ref()?.signature_algorithm().object().nid();
                nid.short_name().ok().map(str::to_string)
            })
            .unwrap_or_else(|| sig_oid.to_id_string());
        let to_utc = |t: &ASN1Time| DateTime::<Utc>::from_timestamp(t.timestamp(), 0);
        Ok(CertificateFact {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            common_name,
            sans,
            serial: cert.raw_serial_as_string(),
            not_before: to_utc(&cert.validity().not_before).ok_or(CertError::BadDate)?,
            not_after: to_utc(&cert.validity().not_after).ok_or(CertError::BadDate)?,
            self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
            is_ca: cert.is_ca(),
            key_type,
            key_bits,
            signature_algorithm,
            sha256: hex::encode(openssl::sha::sha256(der)),
        })
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

/// Parsed certificates by DER: a busy server sends the same chain to every
/// client, and parsing is the expensive part of its facts. Bounded in
/// bytes (a peer decides how large its certificates are); cleared when
/// full (refilling is cheap).
#[derive(Default)]
pub struct CertificateCache {
    facts: std::collections::HashMap<Vec<u8>, CertificateFact>,
    /// DER and facts held, roughly.
    bytes: usize,
}

/// Bytes a [`CertificateCache`] holds at most.
pub const CERTIFICATE_CACHE_BYTES: usize = 4 << 20;

impl CertificateCache {
    pub fn fact(&mut self, der: &[u8]) -> Result<CertificateFact, CertError> {
        if let Some(fact) = self.facts.get(der) {
            return Ok(fact.clone());
        }
        let fact = CertificateFact::from_der(der)?;
        let size = der.len() + fact.heap_bytes();
        if self.bytes + size > CERTIFICATE_CACHE_BYTES {
            self.facts.clear();
            self.bytes = 0;
        }
        if size <= CERTIFICATE_CACHE_BYTES {
            self.bytes += size;
            self.facts.insert(der.to_vec(), fact.clone());
        }
        Ok(fact)
    }

    /// Bytes held, roughly (DER and facts).
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

impl CertificateFact {
    /// Roughly the heap this fact holds (its strings).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<CertificateFact>()
            + self.subject.len()
            + self.issuer.len()
            + self.common_name.as_ref().map_or(0, String::len)
            + self.sans.iter().map(|s| s.len() + 24).sum::<usize>()
            + self.serial.len()
            + self.key_type.len()
            + self.signature_algorithm.len()
            + self.sha256.len()
    }
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
    /// The chain ends in a root the trust store does not hold: a served
    /// self-signed certificate, or the issuer a served intermediate names
    /// (servers do not send their root; a private CA's root is missing from
    /// the store, or a second intermediate is missing from the chain).
    UntrustedRoot { root: String },
    /// The leaf itself is self-signed and not trusted.
    SelfSignedLeaf { subject: String },
    /// `index` into the chain (0 = leaf).
    Expired {
        index: usize,
        subject: String,
        not_after: DateTime<Utc>,
    },
    NotYetValid {
        index: usize,
        subject: String,
        not_before: DateTime<Utc>,
    },
    /// The name checked is not among the leaf's SANs (or CN when no SAN).
    NameMismatch { name: String, sans: Vec<String> },
    /// RSA/DSA key under 2048 bits, EC under 224 bits.
    WeakKey {
        index: usize,
        subject: String,
        key_type: String,
        bits: u32,
    },
    /// MD5 or SHA-1 signature on a non-root certificate.
    WeakSignature {
        index: usize,
        subject: String,
        algorithm: String,
    },
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

mod chain;
mod load;
mod trust;

#[cfg(test)]
mod tests;

pub use chain::{AnalysedChain, analyze_chain, name_matches_certificate};
pub use load::{load_pem_chain, load_pem_chain_in};
pub use trust::TrustStore;
