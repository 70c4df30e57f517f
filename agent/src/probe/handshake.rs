//! One TLS attempt: connect, handshake with the host's OpenSSL as the
//! attempt's client profile says, optionally send a request, and keep every
//! fact — what OpenSSL said, what the wire showed, what the socket did.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use openssl::ssl::{
    ErrorCode, HandshakeError, Ssl, SslContext, SslContextBuilder, SslMethod, SslOptions, SslRef,
    SslStream, SslVerifyMode, SslVersion, StatusType,
};
use openssl::x509::verify::X509CheckFlags;

use crate::evidence::certificates::CertificateFact;
use crate::evidence::openssl::{
    OpensslErrorFact, SslCallFact, VerifyResultFact, reason_text, verify_text,
};
use crate::evidence::sockets::{SocketFacts, TcpStateFact};
use crate::evidence::wire::TlsFacts;

use super::client_cert;
use super::connect;
use super::report::AddressProbe;
use super::tap::Tap;

/// Certificates of a served chain kept for analysis; a hostile server may
/// send hundreds (OpenSSL itself caps the message at 100 KiB).
pub const MAX_KEPT_CERTIFICATES: usize = 16;
/// Bytes of a reply to the probe's request kept.
const MAX_REPLY: usize = 16 * 1024;
/// Every TLS 1.3 suite OpenSSL implements.
const ALL_TLS13_SUITES: &str = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256:TLS_AES_128_CCM_8_SHA256";

/// Which cipher suites the client offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ciphers {
    /// OpenSSL's defaults at this host's security level: what a default
    /// client offers.
    Default,
    /// Every suite OpenSSL has, at security level 0 (TLS 1.0/1.1 need the
    /// SHA-1 signatures level 2 forbids): to learn what the server speaks,
    /// not whether a default client would.
    Everything,
}

/// Certificate verification as a client does it.
#[derive(Clone, Debug)]
pub struct Verification {
    /// `--ca`: these anchors only (as curl's `--cacert`); else the system store.
    pub ca_file: Option<PathBuf>,
    /// The name (or address) the certificate must cover.
    pub name: String,
}

/// One attempt's client profile.
#[derive(Clone, Debug)]
pub struct AttemptSpec {
    pub min_version: Option<SslVersion>,
    pub max_version: Option<SslVersion>,
    pub ciphers: Ciphers,
    /// `None`: accept any certificate (to see what is served).
    pub verify: Option<Verification>,
    pub sni: Option<String>,
    pub alpn: &'static [&'static str],
    pub ocsp: bool,
    /// Bytes to send once the handshake completed (an HTTP request).
    pub request: Option<Vec<u8>>,
}

impl AttemptSpec {
    /// The default modern client: TLS 1.2–1.3, default suites, verification
    /// on, ALPN h2 and http/1.1, OCSP status request.
    pub fn default_client(verify: Verification, sni: Option<String>) -> AttemptSpec {
        AttemptSpec {
            min_version: Some(SslVersion::TLS1_2),
            max_version: None,
            ciphers: Ciphers::Default,
            verify: Some(verify),
            sni,
            alpn: &["h2", "http/1.1"],
            ocsp: true,
            request: None,
        }
    }

    /// One version alone, every suite, no verification.
    pub fn only(version: SslVersion, sni: Option<String>) -> AttemptSpec {
        AttemptSpec {
            min_version: Some(version),
            max_version: Some(version),
            ciphers: Ciphers::Everything,
            verify: None,
            sni,
            alpn: &["h2", "http/1.1"],
            ocsp: false,
            request: None,
        }
    }
}

/// Everything one attempt showed.
#[derive(Clone, Debug, Default)]
pub struct Attempt {
    pub time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub local: Option<SocketAddr>,
    /// Set when TCP itself failed.
    pub connect_failure: Option<AddressProbe>,
    /// `SSL_connect` returned 1.
    pub completed: bool,
    pub calls: Vec<SslCallFact>,
    pub errors: Vec<OpensslErrorFact>,
    /// The X.509 verdict on the served chain (verifying attempts only, once
    /// a certificate arrived).
    pub verify: Option<VerifyResultFact>,
    pub version: Option<String>,
    pub cipher: Option<String>,
    pub alpn: Option<String>,
    /// The chain as served, leaf first (at most [`MAX_KEPT_CERTIFICATES`]).
    pub chain: Vec<Vec<u8>>,
    /// Certificates served, before the cap.
    pub served: usize,
    /// The chain OpenSSL built and verified (served certificates plus those
    /// the trust store supplied).
    pub verified_chain: Vec<Vec<u8>>,
    /// `Some(acceptable issuers)` when the server asked for a certificate.
    pub certificate_request: Option<Vec<String>>,
    pub ocsp: Option<Vec<u8>>,
    pub tls: TlsFacts,
    pub socket: SocketFacts,
    /// What the socket said last, in words.
    pub io_error: Option<String>,
    /// What the server answered to `request`.
    pub reply: Option<Vec<u8>>,
    pub duration_ms: u64,
}

impl Attempt {
    /// The first OpenSSL reason, or the socket's story: why it failed.
    pub fn failure(&self) -> Option<String> {
        if self.completed && self.errors.is_empty() {
            return None;
        }
        if let Some(c) = &self.connect_failure {
            return Some(format!("TCP connect {}", connect::describe(c)));
        }
        if let Some(v) = self.verify.as_ref().filter(|v| v.code != 0) {
            return Some(format!(
                "certificate verify failed: {} ({})",
                v.text, v.code
            ));
        }
        if self.socket.stalled {
            return Some("the server sent nothing more before the step timeout".to_string());
        }
        if let Some(e) = self.errors.last() {
            return Some(e.text.clone());
        }
        if self.socket.reset_by_peer {
            return Some("the server reset the connection".to_string());
        }
        if self.socket.closed_by.as_deref() == Some("peer") {
            return Some("the server closed the connection".to_string());
        }
        if let Some(e) = &self.io_error {
            return Some(e.clone());
        }
        (!self.completed).then(|| "the handshake did not complete".to_string())
    }
}

/// People's name of a version ("TLS 1.2"), as the wire facts spell it.
pub fn version_label(version: SslVersion) -> &'static str {
    if version == SslVersion::TLS1 {
        "TLS 1.0"
    } else if version == SslVersion::TLS1_1 {
        "TLS 1.1"
    } else if version == SslVersion::TLS1_2 {
        "TLS 1.2"
    } else if version == SslVersion::TLS1_3 {
        "TLS 1.3"
    } else {
        "SSL 3.0"
    }
}

/// OpenSSL's `SSL_get_version` text ("TLSv1.2") in the wire's spelling.
fn openssl_version_label(text: &str) -> Option<String> {
    let label = match text {
        "TLSv1" => "TLS 1.0",
        "TLSv1.1" => "TLS 1.1",
        "TLSv1.2" => "TLS 1.2",
        "TLSv1.3" => "TLS 1.3",
        "SSLv3" => "SSL 3.0",
        _ => return None,
    };
    Some(label.to_string())
}

fn alpn_wire(protocols: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in protocols {
        if let Ok(len) = u8::try_from(p.len()) {
            out.push(len);
            out.extend_from_slice(p.as_bytes());
        }
    }
    out
}

fn context(spec: &AttemptSpec) -> Result<SslContext, ErrorStack> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client())?;
    b.set_min_proto_version(spec.min_version)?;
    b.set_max_proto_version(spec.max_version)?;
    if spec.ciphers == Ciphers::Everything {
        b.set_cipher_list("ALL:@SECLEVEL=0")?;
        b.set_ciphersuites(ALL_TLS13_SUITES)?;
        b.set_security_level(0);
        // Servers that predate secure renegotiation still say which
        // versions they speak.
        b.set_options(SslOptions::from_bits_retain(
            openssl_sys::SSL_OP_LEGACY_SERVER_CONNECT,
        ));
    }
    match &spec.verify {
        Some(v) => {
            b.set_verify(SslVerifyMode::PEER);
            match &v.ca_file {
                Some(file) => b.set_ca_file(file)?,
                None => b.set_default_verify_paths()?,
            }
        }
        None => b.set_verify(SslVerifyMode::NONE),
    }
    if !spec.alpn.is_empty() {
        b.set_alpn_protos(&alpn_wire(spec.alpn))?;
    }
    client_cert::install(&mut b);
    Ok(b.build())
}

fn ssl_for(ctx: &SslContext, spec: &AttemptSpec) -> Result<Ssl, ErrorStack> {
    let mut ssl = Ssl::new(ctx)?;
    if let Some(sni) = &spec.sni {
        // Validated by the caller: a name without NUL bytes.
        ssl.set_hostname(sni)?;
    }
    if let Some(v) = &spec.verify {
        let name = v.name.trim_end_matches('.');
        let param = ssl.param_mut();
        param.set_hostflags(X509CheckFlags::NO_PARTIAL_WILDCARDS);
        match name.parse::<IpAddr>() {
            Ok(ip) => param.set_ip(ip)?,
            Err(_) => param.set_host(name)?,
        }
    }
    if spec.ocsp {
        ssl.set_status_type(StatusType::OCSP)?;
    }
    Ok(ssl)
}

/// The OpenSSL error stack as facts, reason texts from the host's library.
fn error_facts(stack: &ErrorStack, time: DateTime<Utc>) -> Vec<OpensslErrorFact> {
    stack
        .errors()
        .iter()
        .map(|e| {
            let lib = u32::try_from(e.library_code()).unwrap_or_default();
            let reason = u32::try_from(e.reason_code()).unwrap_or_default();
            OpensslErrorFact {
                time,
                lib,
                reason,
                text: e
                    .reason()
                    .map(str::to_string)
                    .unwrap_or_else(|| reason_text(lib, reason)),
                function: e.function().map(|f| f.to_string()),
                line: Some(e.line()),
            }
        })
        .collect()
}

fn der_chain(ssl: &SslRef, verified: bool) -> (Vec<Vec<u8>>, usize) {
    let stack = if verified {
        ssl.verified_chain()
    } else {
        ssl.peer_cert_chain()
    };
    let Some(stack) = stack else {
        return (Vec::new(), 0);
    };
    let ders = stack
        .iter()
        .take(MAX_KEPT_CERTIFICATES)
        .filter_map(|c| c.to_der().ok())
        .collect();
    (ders, stack.len())
}

/// What OpenSSL knows once the handshake ended, either way.
fn gather(ssl: &SslRef, spec: &AttemptSpec, attempt: &mut Attempt) {
    (attempt.chain, attempt.served) = der_chain(ssl, false);
    if attempt.completed {
        attempt.verified_chain = der_chain(ssl, true).0;
    }
    if spec.verify.is_some() && !attempt.chain.is_empty() {
        let code = ssl.verify_result().as_raw();
        attempt.verify = Some(VerifyResultFact {
            code,
            text: verify_text(code),
        });
    }
    attempt.alpn = ssl
        .selected_alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned());
    attempt.ocsp = ssl.ocsp_status().map(<[u8]>::to_vec);
    if attempt.completed {
        attempt.version = openssl_version_label(ssl.version_str());
        attempt.cipher = ssl.current_cipher().map(|c| c.name().to_string());
    }
}

/// Sends the request and reads the reply until the server closes, the cap,
/// an error or the deadline.
fn exchange(stream: &mut SslStream<Tap>, request: &[u8], attempt: &mut Attempt) {
    let mut sent = 0;
    while sent < request.len() {
        let chunk = request.get(sent..).unwrap_or_default();
        match stream.ssl_write(chunk) {
            Ok(n) => {
                sent += n;
                attempt.calls.push(call("SSL_write", n as i32));
            }
            Err(e) => {
                attempt.calls.push(call("SSL_write", -1));
                note_ssl_error(&e, attempt);
                return;
            }
        }
    }
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    while reply.len() < MAX_REPLY {
        match stream.ssl_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                attempt.calls.push(call("SSL_read", n as i32));
                reply.extend_from_slice(buf.get(..n).unwrap_or_default());
            }
            Err(e) if e.code() == ErrorCode::ZERO_RETURN => break,
            Err(e) => {
                attempt.calls.push(call("SSL_read", -1));
                note_ssl_error(&e, attempt);
                break;
            }
        }
    }
    reply.truncate(MAX_REPLY);
    attempt.reply = Some(reply);
}

fn call(function: &str, ret: i32) -> SslCallFact {
    SslCallFact {
        time: Utc::now(),
        function: function.to_string(),
        ret,
    }
}

fn note_ssl_error(e: &openssl::ssl::Error, attempt: &mut Attempt) {
    if let Some(stack) = e.ssl_error() {
        attempt.errors.extend(error_facts(stack, Utc::now()));
    }
}

/// Runs one attempt against `addr` (on `connected` when the caller already
/// holds a connection to it); every step ends by `deadline`. `Err` only when
/// OpenSSL cannot even set up the client (a bug, not the server's doing).
pub fn run(
    spec: &AttemptSpec,
    addr: SocketAddr,
    connected: Option<TcpStream>,
    deadline: Instant,
) -> Result<Attempt, ErrorStack> {
    // Whatever an earlier call left on this thread's error queue is not ours.
    let _ = ErrorStack::get();
    let ctx = context(spec)?;
    let ssl = ssl_for(&ctx, spec)?;
    let start = Instant::now();
    let mut attempt = Attempt {
        time: Utc::now(),
        ..Attempt::default()
    };
    let stream = match connected {
        Some(stream) => stream,
        None => {
            let (probe, stream) = connect::connect(addr, deadline.saturating_duration_since(start));
            let Some(stream) = stream else {
                attempt.socket = connect::failed_connect_facts(&probe);
                attempt.connect_failure = Some(probe);
                attempt.end_time = Utc::now();
                attempt.duration_ms = start.elapsed().as_millis() as u64;
                return Ok(attempt);
            };
            stream
        }
    };
    attempt.local = stream.local_addr().ok();
    let connected_at = Utc::now();
    let handshake_start = Instant::now();
    client_cert::reset();
    let tap = Tap::new(stream, deadline);
    let (state, mut tls) = match ssl.connect(tap) {
        Ok(mut stream) => {
            attempt.completed = true;
            attempt.calls.push(call("SSL_connect", 1));
            gather(stream.ssl(), spec, &mut attempt);
            if let Some(request) = &spec.request {
                exchange(&mut stream, request, &mut attempt);
            } else {
                // close_notify, as a polite client sends it.
                let _ = stream.shutdown();
            }
            let tap = stream.get_mut();
            (tap.state.clone(), tap.take_wire())
        }
        Err(HandshakeError::Failure(mut mid)) | Err(HandshakeError::WouldBlock(mut mid)) => {
            attempt.calls.push(call("SSL_connect", -1));
            let error_time = Utc::now();
            if let Some(stack) = mid.error().ssl_error() {
                attempt.errors = error_facts(stack, error_time);
            }
            gather(mid.ssl(), spec, &mut attempt);
            let tap = mid.get_mut();
            (tap.state.clone(), tap.take_wire())
        }
        Err(HandshakeError::SetupFailure(e)) => return Err(e),
    };
    attempt.certificate_request = client_cert::take();
    supplement_wire(&mut tls, &attempt, spec);
    if attempt.version.is_none() {
        attempt.version = tls.negotiated_version.clone();
    }
    if attempt.cipher.is_none() {
        attempt.cipher = tls.server_hello.as_ref().map(|h| h.cipher_suite.clone());
    }
    attempt.tls = tls;
    attempt.io_error = state.io_error.clone();
    attempt.socket = SocketFacts {
        tcp_states: vec![TcpStateFact {
            time: connected_at,
            from: "SYN_SENT".to_string(),
            to: "ESTABLISHED".to_string(),
        }],
        closed_by: Some(
            if state.eof || state.reset {
                "peer"
            } else {
                "local"
            }
            .to_string(),
        ),
        reset_by_peer: state.reset,
        stalled: state.timed_out,
        bytes_sent: state.bytes_sent,
        bytes_received: state.bytes_received,
        ..SocketFacts::default()
    };
    attempt.end_time = Utc::now();
    attempt.duration_ms = handshake_start.elapsed().as_millis() as u64;
    Ok(attempt)
}

/// What the client end knows beyond the clear-text wire: in TLS 1.3 the
/// Certificate and CertificateRequest messages are encrypted, and only the
/// client (here, the probe) reads them. The facts say what the probe saw
/// decrypted, in the fields the rules read.
fn supplement_wire(tls: &mut TlsFacts, attempt: &Attempt, spec: &AttemptSpec) {
    tls.parse_certificates(&mut crate::evidence::certificates::CertificateCache::default());
    if tls.sni.is_none() {
        tls.sni.clone_from(&spec.sni);
    }
    if tls.server_certificates.is_empty() && !attempt.chain.is_empty() {
        tls.server_certificates = attempt
            .chain
            .iter()
            .filter_map(|der| CertificateFact::from_der(der).ok())
            .collect();
    }
    if tls.server_chain_der.is_empty() {
        tls.server_chain_der.clone_from(&attempt.chain);
    }
    if attempt.certificate_request.is_some() {
        tls.certificate_requested = true;
        // The callback answered "no certificate": an empty Certificate went out.
        tls.client_certificate_count = Some(0);
    }
    if tls.negotiated_version.is_none() && attempt.completed {
        tls.negotiated_version.clone_from(&attempt.version);
    }
}
