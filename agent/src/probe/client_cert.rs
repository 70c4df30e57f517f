//! Did the server ask for a client certificate? OpenSSL calls a context's
//! client-certificate callback exactly when a CertificateRequest arrived
//! (TLS 1.2 in clear, TLS 1.3 encrypted) and no certificate is configured:
//! the callback notes the request and the CA names the server listed, and
//! answers "no certificate", as a client without one does.
//!
//! The `openssl` crate does not wrap `SSL_CTX_set_client_cert_cb`; the
//! declarations below are OpenSSL 3's (`ssl.h`). The callback runs inside
//! `SSL_connect` on the probing thread, so a thread-local carries its
//! finding back.

use std::cell::RefCell;
use std::ffi::{c_int, c_void};

use openssl::ssl::SslContextBuilder;

/// CA names kept from one CertificateRequest.
const MAX_ISSUERS: usize = 20;
/// Largest DER name kept.
const MAX_NAME_DER: c_int = 4096;

type ClientCertCallback = unsafe extern "C" fn(
    *mut openssl_sys::SSL,
    *mut *mut openssl_sys::X509,
    *mut *mut openssl_sys::EVP_PKEY,
) -> c_int;

unsafe extern "C" {
    fn SSL_CTX_set_client_cert_cb(ctx: *mut openssl_sys::SSL_CTX, cb: Option<ClientCertCallback>);
    fn SSL_get_client_CA_list(ssl: *const openssl_sys::SSL) -> *mut c_void;
}

thread_local! {
    /// `Some(issuer DERs)` once the server asked, during the current handshake.
    static REQUEST: RefCell<Option<Vec<Vec<u8>>>> = const { RefCell::new(None) };
}

/// Makes contexts built from `builder` record certificate requests.
pub fn install(builder: &mut SslContextBuilder) {
    // SAFETY: `as_ptr` is the builder's live SSL_CTX; the callback has the
    // signature OpenSSL expects and stays valid for the program's life.
    unsafe { SSL_CTX_set_client_cert_cb(builder.as_ptr(), Some(no_certificate)) };
}

/// Forgets any earlier request (call before a handshake).
pub fn reset() {
    REQUEST.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            *r = None;
        }
    });
}

/// The request of the last handshake on this thread: `Some(acceptable
/// issuers)` when the server asked for a certificate.
pub fn take() -> Option<Vec<String>> {
    let ders = REQUEST.with(|r| r.try_borrow_mut().ok().and_then(|mut r| r.take()))?;
    Some(
        ders.iter()
            .map(|der| {
                name_text(der).unwrap_or_else(|| format!("(unparsable name, {} bytes)", der.len()))
            })
            .collect(),
    )
}

/// A DER name as x509-parser formats it (as `CertificateFact::subject` is).
fn name_text(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::FromDer;
    x509_parser::x509::X509Name::from_der(der)
        .ok()
        .map(|(_, name)| name.to_string())
}

/// The CA names of the CertificateRequest, as DER.
///
/// # Safety
/// `ssl` is the live SSL of the handshake in progress.
unsafe fn issuer_names(ssl: *mut openssl_sys::SSL) -> Vec<Vec<u8>> {
    let mut names = Vec::new();
    // SAFETY: per the contract; the list belongs to `ssl` and is only read.
    let list = unsafe { SSL_get_client_CA_list(ssl) };
    if list.is_null() {
        return names;
    }
    let stack = list as *const openssl_sys::OPENSSL_STACK;
    // SAFETY: a STACK_OF(X509_NAME) owned by `ssl`.
    let count = unsafe { openssl_sys::OPENSSL_sk_num(stack) };
    for i in 0..count.min(MAX_ISSUERS as c_int) {
        // SAFETY: 0 <= i < count.
        let name =
            unsafe { openssl_sys::OPENSSL_sk_value(stack, i) } as *mut openssl_sys::X509_NAME;
        if name.is_null() {
            continue;
        }
        // SAFETY: a valid X509_NAME; a null output pointer asks for the length.
        let len = unsafe { openssl_sys::i2d_X509_NAME(name, std::ptr::null_mut()) };
        if len <= 0 || len > MAX_NAME_DER {
            continue;
        }
        let mut der = vec![0u8; len as usize];
        let mut out = der.as_mut_ptr();
        // SAFETY: `der` has room for exactly `len` bytes, which i2d writes.
        let written = unsafe { openssl_sys::i2d_X509_NAME(name, &mut out) };
        if written == len {
            names.push(der);
        }
    }
    names
}

/// The callback: note the request, send no certificate.
unsafe extern "C" fn no_certificate(
    ssl: *mut openssl_sys::SSL,
    _x509: *mut *mut openssl_sys::X509,
    _pkey: *mut *mut openssl_sys::EVP_PKEY,
) -> c_int {
    // SAFETY: OpenSSL passes the SSL whose handshake called us.
    let names = unsafe { issuer_names(ssl) };
    REQUEST.with(|r| {
        if let Ok(mut r) = r.try_borrow_mut() {
            *r = Some(names);
        }
    });
    // 0: no certificate; OpenSSL sends an empty Certificate message.
    0
}
