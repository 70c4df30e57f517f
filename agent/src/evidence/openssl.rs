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

/// The library's text for an error-queue reason, read from the host's own
/// libcrypto so it matches what applications log ("no shared cipher",
/// "tlsv1 alert unknown ca"). Reasons `1000 + N` of the SSL library are
/// "received alert N"; a reason the library does not know reads "reason N".
pub fn reason_text(lib: u32, reason: u32) -> String {
    if let Some(text) = library_reason_text(lib, reason) {
        return text;
    }
    match received_alert(lib, reason) {
        Some(alert) => format!("received alert {alert}"),
        None => format!("reason {reason}"),
    }
}

/// The alert a reason stands for, when it is an SSL "received alert" reason
/// (`SSL_AD_REASON_OFFSET` + alert code).
pub fn received_alert(lib: u32, reason: u32) -> Option<u8> {
    if lib != reason::LIB_SSL {
        return None;
    }
    reason
        .checked_sub(reason::ALERT_OFFSET)
        .and_then(|code| u8::try_from(code).ok())
}

fn library_reason_text(lib: u32, reason: u32) -> Option<String> {
    // OpenSSL 3 packs 8 bits of library and 23 bits of reason; anything wider
    // would alias another code.
    let lib = std::ffi::c_int::try_from(lib).ok().filter(|&l| l <= 0xff)?;
    let reason = std::ffi::c_int::try_from(reason)
        .ok()
        .filter(|&r| r <= 0x7f_ffff)?;
    // Loads the SSL library's strings (OPENSSL_init_ssl), once per process.
    openssl_sys::init();
    let packed = openssl_sys::ERR_PACK(lib, 0, reason);
    // SAFETY: ERR_reason_error_string takes any packed code and returns either
    // NULL or a pointer to a static, NUL-terminated string owned by libcrypto.
    let text = unsafe { openssl_sys::ERR_reason_error_string(packed) };
    if text.is_null() {
        return None;
    }
    // SAFETY: non-NULL, NUL-terminated and never freed (see above).
    let text = unsafe { std::ffi::CStr::from_ptr(text) };
    Some(text.to_string_lossy().into_owned())
}

/// The library's text for an X.509 verify result, e.g. 20 → "unable to get
/// local issuer certificate" (`X509_verify_cert_error_string`).
pub fn verify_text(code: i32) -> String {
    // SAFETY: `from_raw` is unsafe only because OpenSSL before 1.1.0 printed
    // unknown codes into a static buffer. This crate links OpenSSL 3, whose
    // `X509_verify_cert_error_string` returns a constant string for every code.
    let result = unsafe { openssl::x509::X509VerifyResult::from_raw(code) };
    result.error_string().to_string()
}

/// The name of a TLS alert (`unknown_alert` when no registry names it).
pub fn alert_name(code: u8) -> &'static str {
    crate::evidence::wire::known_alert_name(code).unwrap_or("unknown_alert")
}

/// Error-queue library numbers and reason codes the diagnosis rules match
/// (OpenSSL 3.0 `err.h`, `sslerr.h`, `x509err.h`, `pemerr.h`). Each value is
/// checked against the live library's text in this module's tests.
pub mod reason {
    /// `ERR_LIB_SYS`: a failed system call (e.g. `fopen`).
    pub const LIB_SYS: u32 = 2;
    /// `ERR_LIB_PEM`.
    pub const LIB_PEM: u32 = 9;
    /// `ERR_LIB_X509`.
    pub const LIB_X509: u32 = 11;
    /// `ERR_LIB_SSL`: every `SSL_R_*` below.
    pub const LIB_SSL: u32 = 20;

    /// `SSL_AD_REASON_OFFSET`: SSL reason `1000 + N` = alert N received.
    pub const ALERT_OFFSET: u32 = 1000;

    // Certificates.
    pub const CERTIFICATE_VERIFY_FAILED: u32 = 134;
    pub const PEER_DID_NOT_RETURN_A_CERTIFICATE: u32 = 199;
    pub const NO_CERTIFICATE_ASSIGNED: u32 = 177;
    pub const NO_PRIVATE_KEY_ASSIGNED: u32 = 190;

    // Versions.
    pub const UNSUPPORTED_PROTOCOL: u32 = 258;
    pub const NO_PROTOCOLS_AVAILABLE: u32 = 191;
    pub const VERSION_TOO_LOW: u32 = 396;
    pub const VERSION_TOO_HIGH: u32 = 166;
    pub const UNSUPPORTED_SSL_VERSION: u32 = 259;
    pub const WRONG_SSL_VERSION: u32 = 266;
    pub const INAPPROPRIATE_FALLBACK: u32 = 373;

    // Cipher suites, groups, signature algorithms.
    pub const NO_SHARED_CIPHER: u32 = 193;
    pub const NO_CIPHERS_AVAILABLE: u32 = 181;
    pub const NO_SHARED_GROUPS: u32 = 410;
    pub const NO_SUITABLE_KEY_SHARE: u32 = 101;
    pub const NO_SUITABLE_SIGNATURE_ALGORITHM: u32 = 118;
    pub const NO_SHARED_SIGNATURE_ALGORITHMS: u32 = 376;
    pub const LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED: u32 = 333;

    // Weak parameters refused under the security level.
    pub const DH_KEY_TOO_SMALL: u32 = 394;
    pub const CA_KEY_TOO_SMALL: u32 = 397;
    pub const CA_MD_TOO_WEAK: u32 = 398;
    pub const EE_KEY_TOO_SMALL: u32 = 399;
    pub const INSUFFICIENT_SECURITY: u32 = 241;

    // Not TLS on one side.
    pub const HTTP_REQUEST: u32 = 156;
    pub const HTTPS_PROXY_REQUEST: u32 = 155;
    pub const WRONG_VERSION_NUMBER: u32 = 267;
    pub const PACKET_LENGTH_TOO_LONG: u32 = 198;
    pub const RECORD_LENGTH_MISMATCH: u32 = 213;
    pub const UNKNOWN_PROTOCOL: u32 = 252;

    // The peer went away.
    pub const UNEXPECTED_EOF_WHILE_READING: u32 = 294;

    // Received alerts (ALERT_OFFSET + alert code).
    pub const SSLV3_ALERT_HANDSHAKE_FAILURE: u32 = 1040;
    pub const SSLV3_ALERT_BAD_CERTIFICATE: u32 = 1042;
    pub const SSLV3_ALERT_UNSUPPORTED_CERTIFICATE: u32 = 1043;
    pub const SSLV3_ALERT_CERTIFICATE_EXPIRED: u32 = 1045;
    pub const SSLV3_ALERT_CERTIFICATE_UNKNOWN: u32 = 1046;
    pub const TLSV1_ALERT_UNKNOWN_CA: u32 = 1048;
    pub const TLSV1_ALERT_PROTOCOL_VERSION: u32 = 1070;
    pub const TLSV1_ALERT_INSUFFICIENT_SECURITY: u32 = 1071;
    pub const TLSV1_ALERT_INTERNAL_ERROR: u32 = 1080;
    pub const TLSV1_ALERT_INAPPROPRIATE_FALLBACK: u32 = 1086;
    pub const TLSV13_ALERT_CERTIFICATE_REQUIRED: u32 = 1116;

    // X509 library (lib 11): the key does not belong to the certificate.
    pub const X509_KEY_VALUES_MISMATCH: u32 = 116;
    // PEM library (lib 9): the file holds no PEM block.
    pub const PEM_NO_START_LINE: u32 = 108;
}

/// X.509 verify results (`X509_V_ERR_*`, OpenSSL 3.0 `x509_vfy.h`), as
/// `SSL_get_verify_result` returns them. Checked against the live library in
/// this module's tests.
pub mod verify {
    pub const OK: i32 = 0;
    pub const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
    pub const CERT_NOT_YET_VALID: i32 = 9;
    pub const CERT_HAS_EXPIRED: i32 = 10;
    pub const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
    pub const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
    pub const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
    pub const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
    pub const CERT_UNTRUSTED: i32 = 27;
    pub const HOSTNAME_MISMATCH: i32 = 62;
    pub const IP_ADDRESS_MISMATCH: i32 = 64;
    pub const EE_KEY_TOO_SMALL: i32 = 66;
    pub const CA_KEY_TOO_SMALL: i32 = 67;
    pub const CA_MD_TOO_WEAK: i32 = 68;
}

#[cfg(test)]
mod tests {
    use super::reason::*;
    use super::*;

    /// Every constant the rules match, against the text the host's own
    /// libcrypto gives it: a wrong number fails here, not in the field.
    #[test]
    fn ssl_reasons_match_the_library_text() {
        let expected: &[(u32, &str)] = &[
            (CERTIFICATE_VERIFY_FAILED, "certificate verify failed"),
            (
                PEER_DID_NOT_RETURN_A_CERTIFICATE,
                "peer did not return a certificate",
            ),
            (NO_CERTIFICATE_ASSIGNED, "no certificate assigned"),
            (NO_PRIVATE_KEY_ASSIGNED, "no private key assigned"),
            (UNSUPPORTED_PROTOCOL, "unsupported protocol"),
            (NO_PROTOCOLS_AVAILABLE, "no protocols available"),
            (VERSION_TOO_LOW, "version too low"),
            (VERSION_TOO_HIGH, "version too high"),
            (UNSUPPORTED_SSL_VERSION, "unsupported ssl version"),
            (WRONG_SSL_VERSION, "wrong ssl version"),
            (INAPPROPRIATE_FALLBACK, "inappropriate fallback"),
            (NO_SHARED_CIPHER, "no shared cipher"),
            (NO_CIPHERS_AVAILABLE, "no ciphers available"),
            (NO_SHARED_GROUPS, "no shared groups"),
            (NO_SUITABLE_KEY_SHARE, "no suitable key share"),
            (
                NO_SUITABLE_SIGNATURE_ALGORITHM,
                "no suitable signature algorithm",
            ),
            (
                NO_SHARED_SIGNATURE_ALGORITHMS,
                "no shared signature algorithms",
            ),
            (
                LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED,
                "legacy sigalg disallowed or unsupported",
            ),
            (DH_KEY_TOO_SMALL, "dh key too small"),
            (CA_KEY_TOO_SMALL, "ca key too small"),
            (CA_MD_TOO_WEAK, "ca md too weak"),
            (EE_KEY_TOO_SMALL, "ee key too small"),
            (INSUFFICIENT_SECURITY, "insufficient security"),
            (HTTP_REQUEST, "http request"),
            (HTTPS_PROXY_REQUEST, "https proxy request"),
            (WRONG_VERSION_NUMBER, "wrong version number"),
            (PACKET_LENGTH_TOO_LONG, "packet length too long"),
            (RECORD_LENGTH_MISMATCH, "record length mismatch"),
            (UNKNOWN_PROTOCOL, "unknown protocol"),
            (UNEXPECTED_EOF_WHILE_READING, "unexpected eof while reading"),
            (
                SSLV3_ALERT_HANDSHAKE_FAILURE,
                "sslv3 alert handshake failure",
            ),
            (SSLV3_ALERT_BAD_CERTIFICATE, "sslv3 alert bad certificate"),
            (
                SSLV3_ALERT_UNSUPPORTED_CERTIFICATE,
                "sslv3 alert unsupported certificate",
            ),
            (
                SSLV3_ALERT_CERTIFICATE_EXPIRED,
                "sslv3 alert certificate expired",
            ),
            (
                SSLV3_ALERT_CERTIFICATE_UNKNOWN,
                "sslv3 alert certificate unknown",
            ),
            (TLSV1_ALERT_UNKNOWN_CA, "tlsv1 alert unknown ca"),
            (TLSV1_ALERT_PROTOCOL_VERSION, "tlsv1 alert protocol version"),
            (
                TLSV1_ALERT_INSUFFICIENT_SECURITY,
                "tlsv1 alert insufficient security",
            ),
            (TLSV1_ALERT_INTERNAL_ERROR, "tlsv1 alert internal error"),
            (
                TLSV1_ALERT_INAPPROPRIATE_FALLBACK,
                "tlsv1 alert inappropriate fallback",
            ),
            (
                TLSV13_ALERT_CERTIFICATE_REQUIRED,
                "tlsv13 alert certificate required",
            ),
        ];
        for &(code, text) in expected {
            assert_eq!(reason_text(LIB_SSL, code), text, "SSL reason {code}");
        }
    }

    #[test]
    fn other_library_reasons_match_the_library_text() {
        assert_eq!(
            reason_text(LIB_X509, X509_KEY_VALUES_MISMATCH),
            "key values mismatch"
        );
        assert_eq!(reason_text(LIB_PEM, PEM_NO_START_LINE), "no start line");
    }

    #[test]
    fn received_alert_reasons_are_offset_alert_codes() {
        assert_eq!(received_alert(LIB_SSL, TLSV1_ALERT_UNKNOWN_CA), Some(48));
        assert_eq!(
            received_alert(LIB_SSL, TLSV13_ALERT_CERTIFICATE_REQUIRED),
            Some(116)
        );
        assert_eq!(received_alert(LIB_SSL, NO_SHARED_CIPHER), None);
        assert_eq!(received_alert(LIB_X509, 1048), None);
    }

    #[test]
    fn unknown_reasons_fall_back_to_numbers() {
        // 1255 = alert 255, which no RFC defines and OpenSSL has no text for.
        assert_eq!(reason_text(LIB_SSL, 1255), "received alert 255");
        assert_eq!(reason_text(LIB_SSL, 4095), "reason 4095");
        assert_eq!(reason_text(LIB_SSL, u32::MAX), "reason 4294967295");
        assert_eq!(reason_text(u32::MAX, 1), "reason 1");
    }

    #[test]
    fn verify_results_match_the_library_text() {
        use super::verify::*;
        let expected: &[(i32, &str)] = &[
            (OK, "ok"),
            (
                UNABLE_TO_GET_ISSUER_CERT,
                "unable to get issuer certificate",
            ),
            (CERT_NOT_YET_VALID, "certificate is not yet valid"),
            (CERT_HAS_EXPIRED, "certificate has expired"),
            (DEPTH_ZERO_SELF_SIGNED_CERT, "self-signed certificate"),
            (
                SELF_SIGNED_CERT_IN_CHAIN,
                "self-signed certificate in certificate chain",
            ),
            (
                UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                "unable to get local issuer certificate",
            ),
            (
                UNABLE_TO_VERIFY_LEAF_SIGNATURE,
                "unable to verify the first certificate",
            ),
            (CERT_UNTRUSTED, "certificate not trusted"),
            (HOSTNAME_MISMATCH, "hostname mismatch"),
            (IP_ADDRESS_MISMATCH, "IP address mismatch"),
            (EE_KEY_TOO_SMALL, "EE certificate key too weak"),
            (CA_KEY_TOO_SMALL, "CA certificate key too weak"),
            (CA_MD_TOO_WEAK, "CA signature digest algorithm too weak"),
        ];
        for &(code, text) in expected {
            assert_eq!(verify_text(code), text, "X509_V_ERR {code}");
        }
    }

    #[test]
    fn alert_names_follow_rfc_8446() {
        assert_eq!(alert_name(40), "handshake_failure");
        assert_eq!(alert_name(42), "bad_certificate");
        assert_eq!(alert_name(45), "certificate_expired");
        assert_eq!(alert_name(48), "unknown_ca");
        assert_eq!(alert_name(70), "protocol_version");
        assert_eq!(alert_name(80), "internal_error");
        assert_eq!(alert_name(116), "certificate_required");
        assert_eq!(alert_name(255), "unknown_alert");
    }
}
