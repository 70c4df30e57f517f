//! The trust store: anchors as OpenSSL's default lookups find them, and
//! the two store-context calls openssl-sys does not wrap.

use std::collections::HashSet;
use std::ffi::CStr;
use std::path::Path;

use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use openssl::ssl::{SslContextBuilder, SslMethod};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::{X509CheckFlags, X509VerifyParam};
use openssl::x509::{X509, X509PurposeId, X509Ref};

use super::chain::{parse_ip, signed_by};
use super::load::{load_hashed_dir, pem_certificates, read_capped};
use super::*;

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
            let cert = X509::from_der(der)
                .map_err(|e| CertError::Parse(crate::text::Chain(&e).to_string()))?;
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
    pub(super) fn issuer_of(&self, cert: &X509Ref) -> Option<&X509> {
        self.anchors.iter().find(|a| signed_by(cert, a))
    }

    /// The OpenSSL store of the anchors, built once: adding ~150 system
    /// anchors sorts them, which cost more than the verifications using it.
    pub(super) fn anchor_store(&self) -> Result<&X509Store, ErrorStack> {
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
    pub(super) fn verify_param(
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
    pub(super) fn X509_STORE_CTX_get0_param(
        ctx: *mut openssl_sys::X509_STORE_CTX,
    ) -> *mut openssl_sys::X509_VERIFY_PARAM;
    pub(super) fn X509_VERIFY_PARAM_set1(
        to: *mut openssl_sys::X509_VERIFY_PARAM,
        from: *const openssl_sys::X509_VERIFY_PARAM,
    ) -> libc::c_int;
}

/// The CA file and directories OpenSSL's `X509_STORE_set_default_paths`
/// uses: the variables it names (`SSL_CERT_FILE`, `SSL_CERT_DIR`), read
/// through `getenv`, else its built-in defaults.
pub(super) fn default_locations(
    getenv: impl Fn(&str) -> Option<String>,
) -> (Option<String>, Option<String>) {
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
