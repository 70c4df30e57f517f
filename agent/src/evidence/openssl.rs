//! OpenSSL evidence (U): what the uprobes saw inside `SSL_*` calls — return
//! values, the error queue's library/reason codes, the X.509 verify result.
//!
//! Reason and verify-result texts come from the host's own libcrypto
//! (`ERR_reason_error_string`, `X509_verify_cert_error_string`), so they read
//! exactly as the applications' own logs do.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What OpenSSL said about one connection's handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpensslFacts {
    /// Handshake-driving calls that returned, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<SslCallFact>,
    /// SSL and X509 errors raised during those calls, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<OpensslErrorFact>,
    /// Result of the peer-certificate verification, when OpenSSL verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_result: Option<VerifyResultFact>,
    /// Short reason texts of `errors`, for people and for grepping
    /// ("certificate verify failed", "tlsv1 alert unknown ca").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SslCallFact {
    pub time: DateTime<Utc>,
    /// e.g. "SSL_connect".
    pub function: String,
    pub ret: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpensslErrorFact {
    pub time: DateTime<Utc>,
    pub lib: u32,
    pub reason: u32,
    /// The library's reason text, e.g. "certificate verify failed".
    pub text: String,
    /// The OpenSSL function that raised it, e.g. "tls_post_process_server_certificate".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResultFact {
    /// `X509_V_ERR_*` value (0 = ok).
    pub code: i32,
    /// e.g. "unable to get local issuer certificate".
    pub text: String,
}

/// The host libcrypto's text for an error reason.
pub fn reason_text(lib: u32, reason: u32) -> String {
    openssl_sys::init();
    let packed = openssl_sys::ERR_PACK(lib as _, 0, reason as _);
    // SAFETY: returns a static string or NULL.
    let ptr = unsafe { openssl_sys::ERR_reason_error_string(packed) };
    if ptr.is_null() {
        return format!("reason {reason}");
    }
    // SAFETY: non-NULL, NUL-terminated static string.
    unsafe { std::ffi::CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

/// The text of an `X509_V_ERR_*` code.
pub fn verify_text(code: i32) -> String {
    // SAFETY: any int is a valid X509_V_* code for the text lookup.
    unsafe { openssl::x509::X509VerifyResult::from_raw(code) }
        .error_string()
        .to_string()
}
