//! Certificate evidence (H, and W for TLS 1.2 chains seen on the wire):
//! parsing with `x509-parser`, verification against the system trust store
//! with the host's OpenSSL.
//!
//! [`analyze_chain`] gives two views of one chain: OpenSSL's verdict
//! (`verify_code`, which stops at the first error, as clients do) and our own
//! [`ChainFinding`]s, computed independently so that e.g. an expired leaf
//! served without its intermediate shows both problems.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::ssl::{SslContextBuilder, SslMethod};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509CheckFlags, X509VerifyParam};
use openssl::x509::{X509, X509PurposeId, X509Ref, X509StoreContext};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::*;

use crate::evidence::fsroot::FsRoot;

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
    #[error("cannot read {path}: {source}")]
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
    #[error("openssl: {0}")]
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
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
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
/// client, and parsing is the expensive part of its facts. Bounded; cleared
/// when full (refilling is cheap).
#[derive(Default)]
pub struct CertificateCache {
    facts: std::collections::HashMap<Vec<u8>, CertificateFact>,
}

/// Certificates a [`CertificateCache`] holds.
const CACHED_CERTIFICATES: usize = 1024;

impl CertificateCache {
    pub fn fact(&mut self, der: &[u8]) -> Result<CertificateFact, CertError> {
        if let Some(fact) = self.facts.get(der) {
            return Ok(fact.clone());
        }
        let fact = CertificateFact::from_der(der)?;
        if self.facts.len() >= CACHED_CERTIFICATES {
            self.facts.clear();
        }
        self.facts.insert(der.to_vec(), fact.clone());
        Ok(fact)
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

/// Reads a whole regular file, refusing anything larger than `limit` (and
/// FIFOs or devices, which could block or never end).
fn read_capped(path: &Path, limit: u64) -> Result<Vec<u8>, CertError> {
    read_capped_in(&FsRoot::Host, path, limit)
}

/// [`read_capped`] of a file of `root`; errors name the path as `root`
/// names it.
fn read_capped_in(root: &FsRoot, path: &Path, limit: u64) -> Result<Vec<u8>, CertError> {
    let shown = path.display().to_string();
    let io = |source| CertError::Io {
        path: shown.clone(),
        source,
    };
    let file = root.open(path).map_err(io)?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(CertError::NotAFile { path: shown });
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(CertError::TooLarge { path: shown, limit });
    }
    Ok(bytes)
}

/// The DER of every `CERTIFICATE` block in `pem`, in order. Other blocks
/// (private keys above all) are skipped without being decoded.
fn pem_certificates(pem: &[u8], path: &str) -> Result<Vec<Vec<u8>>, CertError> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const END: &[u8] = b"-----END ";
    let mut out = Vec::new();
    // Some(body) while inside a CERTIFICATE block; `skipping` inside others.
    let mut body: Option<String> = None;
    let mut skipping = false;
    for raw in pem.split(|&b| b == b'\n') {
        let line = raw.trim_ascii();
        if line.starts_with(BEGIN) {
            let is_cert = line == b"-----BEGIN CERTIFICATE-----";
            body = is_cert.then(String::new);
            skipping = !is_cert;
        } else if line.starts_with(END) {
            if let Some(b64) = body.take() {
                let index = out.len();
                let bad = |reason: String| CertError::BadPem {
                    path: path.to_string(),
                    index,
                    reason,
                };
                let der = openssl::base64::decode_block(&b64)
                    .map_err(|e| bad(format!("bad base64: {e}")))?;
                X509::from_der(&der).map_err(|e| bad(format!("bad DER: {e}")))?;
                out.push(der);
            }
            skipping = false;
        } else if skipping {
            continue;
        } else if let Some(b64) = body.as_mut() {
            let text = std::str::from_utf8(line).map_err(|_| CertError::BadPem {
                path: path.to_string(),
                index: out.len(),
                reason: "non-ASCII byte in base64 body".to_string(),
            })?;
            b64.push_str(text);
        }
    }
    if body.is_some() {
        return Err(CertError::BadPem {
            path: path.to_string(),
            index: out.len(),
            reason: "no END CERTIFICATE line".to_string(),
        });
    }
    Ok(out)
}

/// Every `CERTIFICATE` block of a PEM file, as DER, in file order. Private
/// key blocks in the same file are skipped, never decoded or kept.
pub fn load_pem_chain(path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    load_pem_chain_in(&FsRoot::Host, path)
}

/// [`load_pem_chain`] of a file of `root` (a containerised server's
/// certificate, named as the server names it).
pub fn load_pem_chain_in(root: &FsRoot, path: &Path) -> Result<Vec<Vec<u8>>, CertError> {
    let bytes = read_capped_in(root, path, MAX_CHAIN_FILE)?;
    let shown = path.display().to_string();
    let chain = pem_certificates(&bytes, &shown)?;
    if chain.is_empty() {
        return Err(CertError::NoCertificate { path: shown });
    }
    Ok(chain)
}

/// Trust anchors, and the OpenSSL security level used when verifying
/// against them.
#[derive(Clone)]
pub struct TrustStore {
    anchors: Vec<X509>,
    /// `anchors` as an OpenSSL store, built on first use (shared by clones:
    /// the anchors are the same).
    store: std::sync::Arc<std::sync::OnceLock<X509Store>>,
    /// Subjects as [`CertificateFact::subject`] formats them.
    subjects: HashSet<String>,
    /// SHA-256 of each anchor's DER.
    digests: HashSet<[u8; 32]>,
    source: String,
    security_level: u32,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustStore")
            .field("source", &self.source)
            .field("anchors", &self.anchors.len())
            .field("security_level", &self.security_level)
            .finish()
    }
}

impl TrustStore {
    /// The store an OpenSSL client on this host uses by default: the file
    /// `SSL_CERT_FILE` (else OpenSSL's built-in default) and the hashed
    /// directories of `SSL_CERT_DIR` (else the built-in one), read eagerly.
    pub fn system() -> Result<TrustStore, CertError> {
        let (file, dirs) = default_locations(|name| {
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        });
        TrustStore::from_locations(file.as_deref(), dirs.as_deref())
    }

    /// Anchors from a CA file and a ':'-separated list of hashed
    /// directories, as OpenSSL's default lookups read them. Missing ones are
    /// skipped (OpenSSL ignores them too); finding nothing is an error.
    pub fn from_locations(file: Option<&str>, dirs: Option<&str>) -> Result<TrustStore, CertError> {
        let mut certs = Vec::new();
        let mut searched = Vec::new();
        if let Some(file) = file {
            searched.push(file.to_string());
            if let Ok(bytes) = read_capped(Path::new(file), MAX_BUNDLE_FILE) {
                certs.extend(pem_certificates(&bytes, file).unwrap_or_default());
            }
        }
        for dir in dirs
            .iter()
            .flat_map(|d| d.split(':'))
            .filter(|d| !d.is_empty())
        {
            searched.push(dir.to_string());
            certs.extend(load_hashed_dir(Path::new(dir)));
        }
        let searched = searched.join(", ");
        if certs.is_empty() {
            return Err(CertError::NoTrustAnchors { searched });
        }
        TrustStore::from_der_certificates(&certs, &searched)
    }

    /// A private CA bundle (e.g. a probe's `--ca`): every certificate in the
    /// PEM file is a trust anchor.
    pub fn from_pem_file(path: &Path) -> Result<TrustStore, CertError> {
        let shown = path.display().to_string();
        let bytes = read_capped(path, MAX_BUNDLE_FILE)?;
        let certs = pem_certificates(&bytes, &shown)?;
        if certs.is_empty() {
            return Err(CertError::NoCertificate { path: shown });
        }
        TrustStore::from_der_certificates(&certs, &shown)
    }

    /// Anchors given as DER; duplicates are dropped.
    pub fn from_der_certificates(ders: &[Vec<u8>], source: &str) -> Result<TrustStore, CertError> {
        let mut store = TrustStore {
            anchors: Vec::new(),
            store: Default::default(),
            subjects: HashSet::new(),
            digests: HashSet::new(),
            source: source.to_string(),
            security_level: default_security_level(),
        };
        for der in ders {
            let digest = openssl::sha::sha256(der);
            if store.digests.contains(&digest) {
                continue;
            }
            let cert = X509::from_der(der).map_err(|e| CertError::Parse(e.to_string()))?;
            if let Ok(fact) = CertificateFact::from_der(der) {
                store.subjects.insert(fact.subject);
            }
            store.digests.insert(digest);
            store.anchors.push(cert);
        }
        Ok(store)
    }

    /// Verify as a client at this OpenSSL security level would (the
    /// default is the host's, from openssl.cnf; Debian's is 2).
    pub fn with_security_level(mut self, level: u32) -> TrustStore {
        self.security_level = level;
        self
    }

    pub fn security_level(&self) -> u32 {
        self.security_level
    }

    /// Where the anchors came from, for evidence.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn len(&self) -> usize {
        self.anchors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.anchors.is_empty()
    }

    /// An anchor has this subject, formatted as [`CertificateFact::subject`]
    /// and [`CertificateFact::issuer`] are (so `contains_subject(&leaf.issuer)`
    /// asks "is the leaf's issuer a trust anchor?").
    pub fn contains_subject(&self, subject: &str) -> bool {
        self.subjects.contains(subject)
    }

    /// This exact certificate is an anchor.
    pub fn contains_certificate(&self, der: &[u8]) -> bool {
        self.digests.contains(&openssl::sha::sha256(der))
    }

    /// The anchor whose key signed `cert`, if any.
    fn issuer_of(&self, cert: &X509Ref) -> Option<&X509> {
        self.anchors.iter().find(|a| signed_by(cert, a))
    }

    /// The OpenSSL store of the anchors, built once: adding ~150 system
    /// anchors sorts them, which cost more than the verifications using it.
    fn anchor_store(&self) -> Result<&X509Store, ErrorStack> {
        if let Some(store) = self.store.get() {
            return Ok(store);
        }
        let mut builder = X509StoreBuilder::new()?;
        for anchor in &self.anchors {
            builder.add_cert(anchor.clone())?;
        }
        // What a TLS client checks: the server purpose (EKU), like
        // SSL_CTX's default for clients.
        builder.set_purpose(X509PurposeId::SSL_SERVER)?;
        Ok(self.store.get_or_init(|| builder.build()))
    }

    /// One verification's parameters: its time, the security level, and
    /// the host (or IP) a client would check.
    fn verify_param(
        &self,
        now: DateTime<Utc>,
        name: Option<&str>,
    ) -> Result<X509VerifyParam, ErrorStack> {
        let mut param = X509VerifyParam::new()?;
        param.set_time(now.timestamp() as libc::time_t);
        param.set_auth_level(i32::try_from(self.security_level).unwrap_or(i32::MAX));
        if let Some(name) = name {
            let name = name.trim_end_matches('.');
            // A client's host check: RFC 6125 wildcards only (as curl and
            // Python set them). A name OpenSSL refuses (NUL) is not checked.
            param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
            let _ = match parse_ip(name) {
                Some(ip) => param.set_ip(ip),
                None => param.set_host(name),
            };
        }
        Ok(param)
    }
}

// Not wrapped by openssl-sys: a store context's own parameters, which take
// the per-verification time and host without rebuilding the store.
unsafe extern "C" {
    fn X509_STORE_CTX_get0_param(
        ctx: *mut openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::X509_VERIFY_PARAM;
    fn X509_VERIFY_PARAM_set1(
        to: *mut openssl_sys::X509_VERIFY_PARAM,
        from: *const openssl_sys::X509_VERIFY_PARAM,
    ) -> libc::c_int;
}

/// The CA file and directories OpenSSL's `X509_STORE_set_default_paths`
/// uses: the variables it names (`SSL_CERT_FILE`, `SSL_CERT_DIR`), read
/// through `getenv`, else its built-in defaults.
fn default_locations(getenv: impl Fn(&str) -> Option<String>) -> (Option<String>, Option<String>) {
    // SAFETY: these return pointers to static NUL-terminated strings inside
    // libcrypto.
    let (file_env, file_default, dir_env, dir_default) = unsafe {
        (
            static_str(openssl_sys::X509_get_default_cert_file_env()),
            static_str(openssl_sys::X509_get_default_cert_file()),
            static_str(openssl_sys::X509_get_default_cert_dir_env()),
            static_str(openssl_sys::X509_get_default_cert_dir()),
        )
    };
    let file = file_env.as_deref().and_then(&getenv).or(file_default);
    let dirs = dir_env.as_deref().and_then(&getenv).or(dir_default);
    (file, dirs)
}

/// # Safety
/// `p` is null or a NUL-terminated string that lives for the program.
unsafe fn static_str(p: *const libc::c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract above.
    let s = unsafe { CStr::from_ptr(p) };
    Some(s.to_string_lossy().into_owned())
}

/// The security level a default OpenSSL client context gets on this host
/// (openssl.cnf's `CipherString = DEFAULT@SECLEVEL=n`); 1 if unknown.
fn default_security_level() -> u32 {
    SslContextBuilder::new(SslMethod::tls_client())
        .map(|b| b.build().security_level())
        .unwrap_or(1)
}

/// Certificates of an OpenSSL hashed directory: only files named like
/// `1a2b3c4d.0`, the only ones OpenSSL's lookup can find.
fn load_hashed_dir(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(is_hashed_name)
        })
        .take(MAX_DIR_FILES)
        .collect();
    paths.sort();
    let mut certs = Vec::new();
    for path in paths {
        if let Ok(bytes) = read_capped(&path, MAX_CHAIN_FILE) {
            let shown = path.display().to_string();
            certs.extend(pem_certificates(&bytes, &shown).unwrap_or_default());
        }
    }
    certs
}

fn is_hashed_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((hash, n)) => {
            hash.len() == 8
                && hash.bytes().all(|b| b.is_ascii_hexdigit())
                && !n.is_empty()
                && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

/// `issuer`'s subject is `cert`'s issuer and `issuer`'s key verifies
/// `cert`'s signature. Unlike `X509_check_issued` this ignores key usage:
/// the question is which certificate issued which, not whether it may.
fn signed_by(cert: &X509Ref, issuer: &X509Ref) -> bool {
    let names_match = issuer
        .subject_name()
        .try_cmp(cert.issuer_name())
        .is_ok_and(|o| o.is_eq());
    names_match
        && issuer
            .public_key()
            .and_then(|key| cert.verify(&key))
            .unwrap_or(false)
}

fn self_signed(cert: &X509Ref) -> bool {
    signed_by(cert, cert)
}

/// "1.2.3.4", "::1" or "[::1]" as an address.
fn parse_ip(name: &str) -> Option<IpAddr> {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse().ok()
}

/// Whether `name` is a name `cert` is valid for, by RFC 6125 as TLS clients
/// apply it: an IP name matches an IP SAN only; a DNS name matches a SAN
/// DNS name, or the CN when there are no SAN DNS names; case-insensitive;
/// a wildcard only as the whole left-most label, matching exactly one label,
/// with at least two labels after it.
///
/// `CertificateFact::sans` holds DNS names and addresses as text, so a SAN
/// that parses as an address is taken as an IP SAN.
pub fn name_matches_certificate(cert: &CertificateFact, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    if name.is_empty() || name.contains('*') {
        return false;
    }
    if let Some(ip) = parse_ip(name) {
        return cert.sans.iter().any(|s| parse_ip(s) == Some(ip));
    }
    let dns: Vec<&str> = cert
        .sans
        .iter()
        .map(String::as_str)
        .filter(|s| parse_ip(s).is_none())
        .collect();
    if dns.is_empty() {
        return cert
            .common_name
            .as_deref()
            .is_some_and(|cn| dns_name_matches(cn, name));
    }
    dns.iter().any(|pattern| dns_name_matches(pattern, name))
}

fn dns_name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if let Some(rest) = pattern.strip_prefix("*.") {
        // "*.com" would cover a whole TLD: refused, as OpenSSL does.
        if rest.contains('*') || !rest.contains('.') {
            return false;
        }
        return match name.split_once('.') {
            Some((first, tail)) => !first.is_empty() && tail.eq_ignore_ascii_case(rest),
            None => false,
        };
    }
    !pattern.contains('*') && pattern.eq_ignore_ascii_case(name)
}

/// How the path from the leaf ended.
enum PathEnd {
    /// At a certificate a trust anchor issued (or that is an anchor).
    Anchored,
    /// At a self-signed certificate the store does not hold.
    UntrustedSelfSigned,
    /// At a certificate whose issuer is neither served nor an anchor.
    IssuerMissing,
}

/// Builds the path from the leaf (index 0) through the served certificates,
/// preferring a trust anchor at each step (OpenSSL's trusted-first rule).
fn build_path(certs: &[X509], trust: &TrustStore) -> (Vec<usize>, PathEnd) {
    let mut path = vec![0];
    let mut cur = 0;
    loop {
        let Some(cert) = certs.get(cur) else {
            return (path, PathEnd::IssuerMissing);
        };
        if trust.issuer_of(cert).is_some() {
            return (path, PathEnd::Anchored);
        }
        if self_signed(cert) {
            return (path, PathEnd::UntrustedSelfSigned);
        }
        // The next served certificate first (the expected order), then any.
        let next = std::iter::once(cur + 1)
            .chain(0..certs.len())
            .filter(|j| *j != cur && !path.contains(j))
            .find(|&j| certs.get(j).is_some_and(|issuer| signed_by(cert, issuer)));
        match next {
            Some(j) => {
                path.push(j);
                cur = j;
            }
            None => return (path, PathEnd::IssuerMissing),
        }
    }
}

fn weak_digest(cert: &X509Ref) -> bool {
    cert.signature_algorithm()
        .object()
        .nid()
        .signature_algorithms()
        .is_some_and(|algs| {
            [Nid::MD2, Nid::MD4, Nid::MD5, Nid::MD5_SHA1, Nid::SHA1].contains(&algs.digest)
        })
}

fn weak_key(cert: &X509Ref) -> Option<u32> {
    let key = cert.public_key().ok()?;
    let bits = key.bits();
    let weak = match key.id() {
        Id::RSA | Id::RSA_PSS | Id::DSA => bits < 2048,
        Id::EC => bits < 224,
        _ => false,
    };
    weak.then_some(bits)
}

/// Runs `X509_verify_cert` as a client would: leaf plus the rest as the
/// untrusted chain, at time `now`, checking `name` when given.
fn openssl_verify(
    certs: &[X509],
    name: Option<&str>,
    now: DateTime<Utc>,
    trust: &TrustStore,
) -> Result<(i32, String), ErrorStack> {
    let store = trust.anchor_store()?;
    let param = trust.verify_param(now, name)?;
    let mut untrusted = Stack::new()?;
    for cert in certs.iter().skip(1) {
        untrusted.push(cert.clone())?;
    }
    let Some(leaf) = certs.first() else {
        return Ok((VERIFY_NOT_RUN, "no certificate".to_string()));
    };
    let mut ctx = X509StoreContext::new()?;
    ctx.init(store, leaf, &untrusted, |c| {
        // SAFETY: `c` is an initialised store context whose parameters live
        // as long as it; set1 copies the values out of `param`.
        let copied = unsafe {
            X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(c.as_ptr()), param.as_ptr())
        };
        if copied != 1 {
            return Err(ErrorStack::get());
        }
        c.verify_cert()?;
        let result = c.error();
        Ok((result.as_raw(), result.error_string().to_string()))
    })
}

/// Analyses a chain as served (leaf first).
///
/// `verify_code`/`verify_text` are OpenSSL's `X509_verify_cert` verdict at
/// time `now` against `trust`, with the SSL-server purpose, the store's
/// security level as auth level, and — when `name` is given — the host (or
/// IP) set on the verify parameters, so the code is what a hostname-checking
/// OpenSSL client sees (62 for a wrong name, 64 for a wrong IP). OpenSSL
/// reports only the first error (an unbuildable chain gives 20 and hides the
/// dates); `findings` list every problem found independently. Date and
/// signature findings cover the certificates on the path from the leaf;
/// key-size findings every served certificate. `VERIFY_NOT_RUN` (-1) means
/// OpenSSL was not run.
pub fn analyze_chain(
    chain_der: &[Vec<u8>],
    name: Option<&str>,
    now: DateTime<Utc>,
    trust: &TrustStore,
    source: &str,
) -> ChainReport {
    let mut report = ChainReport {
        source: source.to_string(),
        certificates: Vec::new(),
        verify_code: VERIFY_NOT_RUN,
        verify_text: "not verified".to_string(),
        name: name.map(str::to_string),
        findings: Vec::new(),
    };
    if chain_der.is_empty() {
        report.findings.push(ChainFinding::Unreadable {
            path: source.to_string(),
            error: "no certificate".to_string(),
        });
        return report;
    }
    if chain_der.len() > MAX_CHAIN_CERTS {
        report.findings.push(ChainFinding::Unreadable {
            path: source.to_string(),
            error: format!(
                "{} certificates; only the first {MAX_CHAIN_CERTS} analysed",
                chain_der.len()
            ),
        });
    }
    let mut certs = Vec::new();
    for (i, der) in chain_der.iter().take(MAX_CHAIN_CERTS).enumerate() {
        let parsed = X509::from_der(der)
            .map_err(|e| e.to_string())
            .and_then(|x| {
                Ok((
                    x,
                    CertificateFact::from_der(der).map_err(|e| e.to_string())?,
                ))
            });
        match parsed {
            Ok((x509, fact)) => {
                certs.push(x509);
                report.certificates.push(fact);
            }
            Err(error) => {
                report.findings.push(ChainFinding::Unreadable {
                    path: format!("{source} certificate {i}"),
                    error,
                });
                // Without the leaf every other finding would be about the
                // wrong certificate.
                if i == 0 {
                    return report;
                }
            }
        }
    }

    match openssl_verify(&certs, name, now, trust) {
        Ok((code, text)) => {
            report.verify_code = code;
            report.verify_text = text;
        }
        Err(e) => report.verify_text = format!("verification could not run: {e}"),
    }

    let facts = &report.certificates;
    let findings = &mut report.findings;
    let (path, end) = build_path(&certs, trust);
    let top = path.last().copied().unwrap_or(0);
    // Served out of order: the path skips around, or the first certificate
    // issued another served one (so it is not the end entity).
    let out_of_order = path.windows(2).any(|w| w[1] != w[0] + 1)
        || certs.iter().enumerate().skip(1).any(|(i, c)| {
            certs
                .first()
                .is_some_and(|leaf| !path.contains(&i) && signed_by(c, leaf))
        });
    if out_of_order {
        findings.push(ChainFinding::WrongOrder);
    }
    if let Some(top_fact) = facts.get(top) {
        match end {
            PathEnd::Anchored => {}
            PathEnd::UntrustedSelfSigned if top == 0 => {
                findings.push(ChainFinding::SelfSignedLeaf {
                    subject: top_fact.subject.clone(),
                })
            }
            PathEnd::UntrustedSelfSigned => findings.push(ChainFinding::UntrustedRoot {
                root: top_fact.subject.clone(),
            }),
            // The leaf's own issuer is missing: the server sends no
            // intermediate for it.
            PathEnd::IssuerMissing if top == 0 => {
                findings.push(ChainFinding::MissingIntermediate {
                    issuer: top_fact.issuer.clone(),
                })
            }
            // The server sends intermediates and the top one's issuer is
            // unknown here: the chain is as the server means it, its root
            // is not trusted (the usual private-CA case).
            PathEnd::IssuerMissing => findings.push(ChainFinding::UntrustedRoot {
                root: top_fact.issuer.clone(),
            }),
        }
    }
    if let (Some(name), Some(leaf)) = (name, facts.first())
        && !name_matches_certificate(leaf, name)
    {
        findings.push(ChainFinding::NameMismatch {
            name: name.to_string(),
            sans: leaf.sans.clone(),
        });
    }
    for &i in &path {
        let (Some(fact), Some(cert)) = (facts.get(i), certs.get(i)) else {
            continue;
        };
        if now > fact.not_after {
            findings.push(ChainFinding::Expired {
                index: i,
                subject: fact.subject.clone(),
                not_after: fact.not_after,
            });
        }
        if now < fact.not_before {
            findings.push(ChainFinding::NotYetValid {
                index: i,
                subject: fact.subject.clone(),
                not_before: fact.not_before,
            });
        }
        // A self-signed certificate's own signature is never relied on.
        if !self_signed(cert) && weak_digest(cert) {
            findings.push(ChainFinding::WeakSignature {
                index: i,
                subject: fact.subject.clone(),
                algorithm: fact.signature_algorithm.clone(),
            });
        }
    }
    for (i, (fact, cert)) in facts.iter().zip(&certs).enumerate() {
        if let Some(bits) = weak_key(cert) {
            findings.push(ChainFinding::WeakKey {
                index: i,
                subject: fact.subject.clone(),
                key_type: fact.key_type.clone(),
                bits,
            });
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use openssl::asn1::{Asn1Integer, Asn1Time};
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::X509NameBuilder;
    use openssl::x509::extension::{
        AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage,
        SubjectAlternativeName, SubjectKeyIdentifier,
    };

    fn ec_key() -> PKey<Private> {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    fn rsa_key(bits: u32) -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap()
    }

    /// What to put in a test certificate.
    struct Spec<'a> {
        cn: &'a str,
        sans: &'a [&'a str],
        ca: bool,
        not_before: DateTime<Utc>,
        not_after: DateTime<Utc>,
        digest: MessageDigest,
    }

    impl<'a> Spec<'a> {
        fn leaf(cn: &'a str, sans: &'a [&'a str]) -> Self {
            let now = Utc::now();
            Spec {
                cn,
                sans,
                ca: false,
                not_before: now - Duration::days(10),
                not_after: now + Duration::days(90),
                digest: MessageDigest::sha256(),
            }
        }

        fn ca(cn: &'a str) -> Self {
            Spec {
                ca: true,
                not_before: Utc::now() - Duration::days(365),
                not_after: Utc::now() + Duration::days(3650),
                ..Spec::leaf(cn, &[])
            }
        }
    }

    /// Builds a certificate for `key`, signed by `issuer` (self-signed when
    /// None).
    fn make(spec: &Spec, key: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("O", "tlsdoctor test").unwrap();
        name.append_entry_by_text("CN", spec.cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let mut serial = BigNum::new().unwrap();
        serial
            .rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
            .unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&serial).unwrap())
            .unwrap();
        b.set_subject_name(&name).unwrap();
        match issuer {
            Some((cert, _)) => b.set_issuer_name(cert.subject_name()).unwrap(),
            None => b.set_issuer_name(&name).unwrap(),
        }
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::from_unix(spec.not_before.timestamp()).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(spec.not_after.timestamp()).unwrap())
            .unwrap();
        if spec.ca {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        } else {
            b.append_extension(BasicConstraints::new().build().unwrap())
                .unwrap();
            b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                .unwrap();
        }
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
            .unwrap();
        b.append_extension(ski).unwrap();
        if let Some((cert, _)) = issuer {
            let aki = AuthorityKeyIdentifier::new()
                .keyid(true)
                .build(&b.x509v3_context(Some(cert), None))
                .unwrap();
            b.append_extension(aki).unwrap();
        }
        if !spec.sans.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for s in spec.sans {
                if s.parse::<IpAddr>().is_ok() {
                    san.ip(s);
                } else {
                    san.dns(s);
                }
            }
            let ext = san.build(&b.x509v3_context(None, None)).unwrap();
            b.append_extension(ext).unwrap();
        }
        let signer = issuer.map(|(_, k)| k).unwrap_or(key);
        b.sign(signer, spec.digest).unwrap();
        b.build()
    }

    /// Test CA → intermediate, and a trust store holding only the CA (loaded
    /// from a temp PEM file, the way `--ca` is).
    struct Pki {
        ca: X509,
        int: X509,
        int_key: PKey<Private>,
        trust: TrustStore,
        _dir: TempDir,
    }

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "tlsdoctor-cert-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pki(tag: &str) -> Pki {
        let ca_key = ec_key();
        let ca = make(&Spec::ca("Test Root CA"), &ca_key, None);
        let int_key = ec_key();
        let int = make(
            &Spec::ca("Test Intermediate CA"),
            &int_key,
            Some((&ca, &ca_key)),
        );
        let dir = TempDir::new(tag);
        let path = dir.0.join("ca.pem");
        std::fs::write(&path, ca.to_pem().unwrap()).unwrap();
        let trust = TrustStore::from_pem_file(&path).unwrap();
        Pki {
            ca,
            int,
            int_key,
            trust,
            _dir: dir,
        }
    }

    impl Pki {
        fn leaf(&self, spec: &Spec) -> X509 {
            self.leaf_with_key(spec, &ec_key())
        }

        fn leaf_with_key(&self, spec: &Spec, key: &PKey<Private>) -> X509 {
            make(spec, key, Some((&self.int, &self.int_key)))
        }

        fn analyze(&self, chain: &[&X509], name: Option<&str>) -> ChainReport {
            let der: Vec<Vec<u8>> = chain.iter().map(|c| c.to_der().unwrap()).collect();
            analyze_chain(&der, name, Utc::now(), &self.trust, "test")
        }
    }

    fn kinds(report: &ChainReport) -> Vec<&'static str> {
        report
            .findings
            .iter()
            .map(|f| match f {
                ChainFinding::MissingIntermediate { .. } => "missing-intermediate",
                ChainFinding::WrongOrder => "wrong-order",
                ChainFinding::UntrustedRoot { .. } => "untrusted-root",
                ChainFinding::SelfSignedLeaf { .. } => "self-signed-leaf",
                ChainFinding::Expired { .. } => "expired",
                ChainFinding::NotYetValid { .. } => "not-yet-valid",
                ChainFinding::NameMismatch { .. } => "name-mismatch",
                ChainFinding::WeakKey { .. } => "weak-key",
                ChainFinding::WeakSignature { .. } => "weak-signature",
                ChainFinding::Unreadable { .. } => "unreadable",
            })
            .collect()
    }

    #[test]
    fn good_chain_verifies_with_no_findings() {
        let p = pki("good");
        let leaf = p.leaf(&Spec::leaf("www.example.test", &["www.example.test"]));
        let r = p.analyze(&[&leaf, &p.int], Some("www.example.test"));
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        assert_eq!(r.verify_text, "ok");
        assert!(r.findings.is_empty(), "{:?}", r.findings);
        assert_eq!(r.certificates.len(), 2);
        assert_eq!(r.name.as_deref(), Some("www.example.test"));
        // Serving the root as well is fine too.
        let r = p.analyze(&[&leaf, &p.int, &p.ca], Some("WWW.Example.Test."));
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn leaf_without_intermediate_is_missing_intermediate() {
        let p = pki("missing");
        let leaf = p.leaf(&Spec::leaf("www.example.test", &["www.example.test"]));
        let r = p.analyze(&[&leaf], Some("www.example.test"));
        assert_eq!(r.verify_code, 20);
        assert_eq!(r.verify_text, "unable to get local issuer certificate");
        let int_subject = CertificateFact::from_der(&p.int.to_der().unwrap())
            .unwrap()
            .subject;
        assert_eq!(
            r.findings,
            vec![ChainFinding::MissingIntermediate {
                issuer: int_subject.clone()
            }]
        );
        assert!(!p.trust.contains_subject(&r.certificates[0].issuer));
        assert!(
            p.trust
                .contains_subject(&r.certificates[0].issuer.replace("Intermediate", "Root"))
        );
    }

    #[test]
    fn expired_leaf_without_intermediate_shows_both_problems() {
        // OpenSSL stops at 20 and never looks at the dates; findings do.
        let p = pki("expired-missing");
        let now = Utc::now();
        let spec = Spec {
            not_before: now - Duration::days(100),
            not_after: now - Duration::days(1),
            ..Spec::leaf("old.example.test", &["old.example.test"])
        };
        let leaf = p.leaf(&spec);
        let r = p.analyze(&[&leaf], Some("old.example.test"));
        assert_eq!(r.verify_code, 20);
        assert_eq!(kinds(&r), ["missing-intermediate", "expired"]);
        let r = p.analyze(&[&leaf, &p.int], Some("old.example.test"));
        assert_eq!(r.verify_code, 10);
        assert_eq!(r.verify_text, "certificate has expired");
        assert_eq!(kinds(&r), ["expired"]);
        match &r.findings[0] {
            ChainFinding::Expired {
                index, not_after, ..
            } => {
                assert_eq!(*index, 0);
                assert_eq!(not_after.timestamp(), spec.not_after.timestamp());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn not_yet_valid_leaf() {
        let p = pki("nyv");
        let now = Utc::now();
        let leaf = p.leaf(&Spec {
            not_before: now + Duration::days(2),
            not_after: now + Duration::days(100),
            ..Spec::leaf("new.example.test", &["new.example.test"])
        });
        let r = p.analyze(&[&leaf, &p.int], None);
        assert_eq!(r.verify_code, 9);
        assert_eq!(r.verify_text, "certificate is not yet valid");
        assert_eq!(kinds(&r), ["not-yet-valid"]);
        // At a time inside the window (a skewed clock's view) it is fine.
        let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
        let later = analyze_chain(&der, None, now + Duration::days(3), &p.trust, "t");
        assert_eq!(later.verify_code, 0, "{}", later.verify_text);
        assert!(later.findings.is_empty());
    }

    #[test]
    fn wrong_san_is_a_name_mismatch_and_err_62() {
        let p = pki("san");
        let leaf = p.leaf(&Spec::leaf(
            "www.example.test",
            &["www.example.test", "10.1.2.3"],
        ));
        let r = p.analyze(&[&leaf, &p.int], Some("api.example.test"));
        assert_eq!(r.verify_code, 62);
        assert_eq!(r.verify_text, "hostname mismatch");
        assert_eq!(
            r.findings,
            vec![ChainFinding::NameMismatch {
                name: "api.example.test".to_string(),
                sans: vec!["www.example.test".to_string(), "10.1.2.3".to_string()],
            }]
        );
        // IP names are checked against IP SANs (err 64 from OpenSSL).
        let r = p.analyze(&[&leaf, &p.int], Some("10.1.2.3"));
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        let r = p.analyze(&[&leaf, &p.int], Some("10.1.2.4"));
        assert_eq!(r.verify_code, 64);
        assert_eq!(kinds(&r), ["name-mismatch"]);
        // Without a name no host check is made.
        let r = p.analyze(&[&leaf, &p.int], None);
        assert_eq!(r.verify_code, 0);
    }

    #[test]
    fn wildcard_san_matches_one_left_label() {
        let p = pki("wild");
        let leaf = p.leaf(&Spec::leaf("wild", &["*.example.test"]));
        let der = leaf.to_der().unwrap();
        let fact = CertificateFact::from_der(&der).unwrap();
        assert!(name_matches_certificate(&fact, "www.example.test"));
        assert!(name_matches_certificate(&fact, "API.EXAMPLE.TEST"));
        assert!(!name_matches_certificate(&fact, "example.test"));
        assert!(!name_matches_certificate(&fact, "a.b.example.test"));
        assert!(!name_matches_certificate(&fact, ".example.test"));
        let r = p.analyze(&[&leaf, &p.int], Some("www.example.test"));
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        let r = p.analyze(&[&leaf, &p.int], Some("a.b.example.test"));
        assert_eq!(r.verify_code, 62);
        assert_eq!(kinds(&r), ["name-mismatch"]);
    }

    fn fact(cn: Option<&str>, sans: &[&str]) -> CertificateFact {
        CertificateFact {
            subject: String::new(),
            issuer: String::new(),
            common_name: cn.map(str::to_string),
            sans: sans.iter().map(|s| s.to_string()).collect(),
            serial: String::new(),
            not_before: Utc::now(),
            not_after: Utc::now(),
            self_signed: false,
            is_ca: false,
            key_type: "EC".to_string(),
            key_bits: Some(256),
            signature_algorithm: String::new(),
            sha256: String::new(),
        }
    }

    #[test]
    fn name_matching_rules() {
        // CN only when there is no SAN DNS name.
        assert!(name_matches_certificate(
            &fact(Some("host.test"), &[]),
            "host.test"
        ));
        assert!(name_matches_certificate(
            &fact(Some("host.test"), &["10.0.0.1"]),
            "host.test"
        ));
        assert!(!name_matches_certificate(
            &fact(Some("host.test"), &["other.test"]),
            "host.test"
        ));
        // IP names: IP SANs only, never the CN; v6 in brackets too.
        assert!(!name_matches_certificate(
            &fact(Some("10.0.0.1"), &[]),
            "10.0.0.1"
        ));
        assert!(name_matches_certificate(&fact(None, &["::1"]), "[::1]"));
        assert!(!name_matches_certificate(
            &fact(None, &["::1"]),
            "127.0.0.1"
        ));
        // Wildcards: whole left-most label only, not over a TLD.
        assert!(!name_matches_certificate(
            &fact(None, &["*.test"]),
            "host.test"
        ));
        assert!(!name_matches_certificate(
            &fact(None, &["w*.example.test"]),
            "www.example.test"
        ));
        assert!(!name_matches_certificate(
            &fact(None, &["www.*.test"]),
            "www.example.test"
        ));
        assert!(!name_matches_certificate(
            &fact(None, &["*.example.test"]),
            "*.example.test"
        ));
        assert!(!name_matches_certificate(&fact(None, &["host.test"]), ""));
        assert!(name_matches_certificate(
            &fact(None, &["host.test."]),
            "HOST.test"
        ));
    }

    #[test]
    fn weak_rsa_1024_leaf() {
        let p = pki("weakkey");
        let leaf = p.leaf_with_key(
            &Spec::leaf("weak.example.test", &["weak.example.test"]),
            &rsa_key(1024),
        );
        let r = p.analyze(&[&leaf, &p.int], Some("weak.example.test"));
        assert_eq!(r.certificates[0].key_bits, Some(1024));
        assert_eq!(kinds(&r), ["weak-key"]);
        // At security level 2 (Debian's default) OpenSSL refuses it (66);
        // at level 0 it does not check key sizes.
        let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
        let strict = p.trust.clone().with_security_level(2);
        let r2 = analyze_chain(&der, None, Utc::now(), &strict, "t");
        assert_eq!(r2.verify_code, 66);
        assert_eq!(r2.verify_text, "EE certificate key too weak");
        let lax = p.trust.clone().with_security_level(0);
        assert_eq!(
            analyze_chain(&der, None, Utc::now(), &lax, "t").verify_code,
            0
        );
    }

    #[test]
    fn sha1_signed_leaf() {
        let p = pki("sha1");
        let leaf = p.leaf(&Spec {
            digest: MessageDigest::sha1(),
            ..Spec::leaf("sha1.example.test", &["sha1.example.test"])
        });
        let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
        let strict = p.trust.clone().with_security_level(2);
        let r = analyze_chain(&der, None, Utc::now(), &strict, "t");
        assert_eq!(r.verify_code, 68);
        assert_eq!(r.verify_text, "CA signature digest algorithm too weak");
        assert_eq!(
            r.findings,
            vec![ChainFinding::WeakSignature {
                index: 0,
                subject: r.certificates[0].subject.clone(),
                algorithm: "ecdsa-with-SHA1".to_string(),
            }]
        );
    }

    #[test]
    fn self_signed_leaf_and_untrusted_root() {
        let p = pki("selfsigned");
        let key = ec_key();
        let leaf = make(
            &Spec::leaf("self.example.test", &["self.example.test"]),
            &key,
            None,
        );
        let r = p.analyze(&[&leaf], Some("self.example.test"));
        assert_eq!(r.verify_code, 18);
        assert_eq!(r.verify_text, "self-signed certificate");
        assert_eq!(kinds(&r), ["self-signed-leaf"]);
        assert!(r.certificates[0].self_signed);

        // A whole chain from another (untrusted) CA, root included: 19.
        let other = pki("other");
        let leaf = other.leaf(&Spec::leaf("x.example.test", &["x.example.test"]));
        let r = p.analyze(&[&leaf, &other.int, &other.ca], None);
        assert_eq!(r.verify_code, 19);
        assert_eq!(
            r.verify_text,
            "self-signed certificate in certificate chain"
        );
        assert_eq!(
            r.findings,
            vec![ChainFinding::UntrustedRoot {
                root: r.certificates[2].subject.clone()
            }]
        );
        // The same chain without its root (as servers send it): 20, and the
        // root the intermediate names is what the store lacks, not an
        // intermediate: the server's chain is complete.
        let r = p.analyze(&[&leaf, &other.int], None);
        assert_eq!(r.verify_code, 20);
        let other_root = CertificateFact::from_der(&other.ca.to_der().unwrap())
            .unwrap()
            .subject;
        assert_eq!(
            r.findings,
            vec![ChainFinding::UntrustedRoot { root: other_root }]
        );
        // Only the leaf: its issuer, the intermediate, is what is missing.
        let r = p.analyze(&[&leaf], None);
        assert_eq!(r.verify_code, 20);
        assert_eq!(kinds(&r), ["missing-intermediate"]);
    }

    #[test]
    fn wrong_order_is_reported_but_verifies() {
        let p = pki("order");
        let leaf = p.leaf(&Spec::leaf("o.example.test", &["o.example.test"]));
        let r = p.analyze(&[&leaf, &p.ca, &p.int], None);
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        assert_eq!(kinds(&r), ["wrong-order"]);
        // Intermediate first: the "leaf" is a CA that issued a later cert.
        let r = p.analyze(&[&p.int, &leaf], Some("o.example.test"));
        assert!(kinds(&r).contains(&"wrong-order"), "{:?}", r.findings);
        assert!(kinds(&r).contains(&"name-mismatch"), "{:?}", r.findings);
    }

    #[test]
    fn empty_and_garbage_chains_never_panic() {
        let p = pki("garbage");
        let r = analyze_chain(&[], Some("x"), Utc::now(), &p.trust, "wire");
        assert_eq!(r.verify_code, VERIFY_NOT_RUN);
        assert_eq!(kinds(&r), ["unreadable"]);
        let r = analyze_chain(
            &[b"\x30\x03junk".to_vec()],
            None,
            Utc::now(),
            &p.trust,
            "wire",
        );
        assert_eq!(r.verify_code, VERIFY_NOT_RUN);
        assert_eq!(kinds(&r), ["unreadable"]);
        assert!(r.certificates.is_empty());
        // A bad certificate after a good leaf is reported, the rest analysed.
        let leaf = p.leaf(&Spec::leaf("g.example.test", &["g.example.test"]));
        let der = vec![
            leaf.to_der().unwrap(),
            vec![0u8; 10],
            p.int.to_der().unwrap(),
        ];
        let r = analyze_chain(&der, None, Utc::now(), &p.trust, "wire");
        assert_eq!(r.verify_code, 0, "{}", r.verify_text);
        assert_eq!(kinds(&r), ["unreadable"]);
        // Too many certificates: capped, flagged.
        let many = vec![leaf.to_der().unwrap(); MAX_CHAIN_CERTS + 5];
        let r = analyze_chain(&many, None, Utc::now(), &p.trust, "wire");
        assert_eq!(r.certificates.len(), MAX_CHAIN_CERTS);
        assert!(kinds(&r).contains(&"unreadable"));
    }

    #[test]
    fn pem_files_skip_keys_and_keep_order() {
        let p = pki("pem");
        let key = ec_key();
        let leaf = p.leaf_with_key(&Spec::leaf("k.example.test", &["k.example.test"]), &key);
        let mut pem = Vec::new();
        pem.extend(b"junk before\n");
        pem.extend(leaf.to_pem().unwrap());
        pem.extend(key.private_key_to_pem_pkcs8().unwrap());
        pem.extend(p.int.to_pem().unwrap());
        let crlf: Vec<u8> = String::from_utf8(pem)
            .unwrap()
            .replace('\n', "\r\n")
            .into_bytes();
        let path = p._dir.0.join("chain.pem");
        std::fs::write(&path, &crlf).unwrap();
        let chain = load_pem_chain(&path).unwrap();
        assert_eq!(chain, vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()]);

        // Only a key: no certificate.
        std::fs::write(&path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        assert!(matches!(
            load_pem_chain(&path),
            Err(CertError::NoCertificate { .. })
        ));
        // Truncated block.
        let pem = leaf.to_pem().unwrap();
        std::fs::write(&path, &pem[..pem.len() - 30]).unwrap();
        assert!(matches!(
            load_pem_chain(&path),
            Err(CertError::BadPem { .. })
        ));
        // Corrupt base64.
        let bad = String::from_utf8(pem.clone())
            .unwrap()
            .replacen("M", "!", 1);
        std::fs::write(&path, bad).unwrap();
        assert!(matches!(
            load_pem_chain(&path),
            Err(CertError::BadPem { .. })
        ));
        // Missing file, directory, device, oversized file.
        assert!(matches!(
            load_pem_chain(&p._dir.0.join("nope.pem")),
            Err(CertError::Io { .. })
        ));
        assert!(matches!(
            load_pem_chain(&p._dir.0),
            Err(CertError::NotAFile { .. })
        ));
        assert!(matches!(
            load_pem_chain(Path::new("/dev/zero")),
            Err(CertError::NotAFile { .. })
        ));
        let big = std::fs::File::create(&path).unwrap();
        big.set_len(MAX_CHAIN_FILE + 1).unwrap();
        assert!(matches!(
            load_pem_chain(&path),
            Err(CertError::TooLarge { .. })
        ));
    }

    #[test]
    fn hashed_names() {
        assert!(is_hashed_name("1a2b3c4d.0"));
        assert!(is_hashed_name("ABCDEF01.12"));
        assert!(!is_hashed_name("1a2b3c4d.r0"));
        assert!(!is_hashed_name("ca-certificates.crt"));
        assert!(!is_hashed_name("1a2b3c4.0"));
    }

    #[test]
    fn system_store_loads_and_verifies_a_system_root() {
        let store = TrustStore::system().unwrap();
        assert!(store.len() > 10, "{store:?}");
        // The roots in /etc/ssl/certs validate as chains of their own. Some
        // have a CA-only keyUsage, which the SSL-server purpose refuses (26)
        // when the root itself is presented as the server's certificate.
        let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let roots = pem_certificates(&bundle, "bundle").unwrap();
        // (A root re-issued under the same subject is skipped: OpenSSL looks
        // an end-entity up by subject, finds the other one and says 18.)
        let facts: Vec<CertificateFact> = roots
            .iter()
            .map(|der| CertificateFact::from_der(der).unwrap())
            .collect();
        let mut validated = 0;
        for (root, fact) in roots.iter().zip(&facts) {
            let reissued = facts.iter().filter(|f| f.subject == fact.subject).count() > 1;
            if reissued || !fact.self_signed || fact.not_after < Utc::now() + Duration::days(30) {
                continue;
            }
            assert!(store.contains_certificate(root));
            assert!(store.contains_subject(&fact.subject));
            let r = analyze_chain(
                std::slice::from_ref(root),
                None,
                Utc::now(),
                &store,
                "system",
            );
            assert!(
                [0, 26].contains(&r.verify_code),
                "{}: {}",
                fact.subject,
                r.verify_text
            );
            assert!(r.findings.is_empty(), "{}: {:?}", fact.subject, r.findings);
            validated += usize::from(r.verify_code == 0);
        }
        assert!(validated > 0);
        // And our private CA is not in it.
        let p = pki("system");
        let leaf = p.leaf(&Spec::leaf("p.example.test", &["p.example.test"]));
        let der = vec![leaf.to_der().unwrap(), p.int.to_der().unwrap()];
        let r = analyze_chain(&der, None, Utc::now(), &store, "system");
        assert_eq!(r.verify_code, 20);
        assert_eq!(kinds(&r), ["untrusted-root"]);
    }

    #[test]
    fn system_locations_honour_ssl_cert_file_and_dir() {
        let (file, dir) = default_locations(|_| None);
        assert_eq!(file.as_deref(), Some("/usr/lib/ssl/cert.pem"));
        assert_eq!(dir.as_deref(), Some("/usr/lib/ssl/certs"));
        let (file, dir) = default_locations(|name| match name {
            "SSL_CERT_FILE" => Some("/x/ca.pem".to_string()),
            "SSL_CERT_DIR" => Some("/a:/b".to_string()),
            _ => None,
        });
        assert_eq!(file.as_deref(), Some("/x/ca.pem"));
        assert_eq!(dir.as_deref(), Some("/a:/b"));

        let p = pki("env");
        let path = p._dir.0.join("only-ca.pem");
        std::fs::write(&path, p.ca.to_pem().unwrap()).unwrap();
        let empty = p._dir.0.join("empty-dir");
        std::fs::create_dir_all(&empty).unwrap();
        let dirs = format!("{}:/nonexistent", empty.display());
        let store = TrustStore::from_locations(path.to_str(), Some(&dirs)).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.contains_certificate(&p.ca.to_der().unwrap()));
        // A hashed directory (as c_rehash makes it) is read too; other
        // names in it are not.
        let hashed = p._dir.0.join("hashed");
        std::fs::create_dir_all(&hashed).unwrap();
        std::fs::write(hashed.join("0badc0de.0"), p.int.to_pem().unwrap()).unwrap();
        std::fs::write(hashed.join("ca.pem"), p.ca.to_pem().unwrap()).unwrap();
        let store = TrustStore::from_locations(None, hashed.to_str()).unwrap();
        assert_eq!(store.len(), 1);
        assert!(store.contains_certificate(&p.int.to_der().unwrap()));
        assert!(matches!(
            TrustStore::from_locations(Some("/nonexistent.pem"), empty.to_str()),
            Err(CertError::NoTrustAnchors { .. })
        ));
    }
}
