//! A ClientHello made to measure, and the server's first flight.
//!
//! The suite enumeration and the client simulation need to offer exactly
//! the versions, suites, groups and signature algorithms they test — also
//! suites this host's OpenSSL does not implement, and a real client's lists
//! in its own order — and they need nothing past the server's answer: the
//! ServerHello (or HelloRetryRequest) in TLS 1.3, the flight up to
//! ServerHelloDone in older versions (certificate and key exchange in
//! clear). So they send a hand-made ClientHello and read the reply without
//! completing the handshake. No crate builds arbitrary ClientHellos
//! (tls-parser's serializer covers three extensions), so the encoder is
//! here; replies are parsed with tls-parser.
//!
//! In TLS 1.3 the probe sends key shares only for groups whose public key
//! it can make (x25519 and x448 from random bytes, NIST curves with
//! OpenSSL); with none, the server answers a HelloRetryRequest naming its
//! group and suite, without any signing work — which is how the
//! enumeration reads TLS 1.3 cheaply.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use openssl::bn::BigNumContext;
use openssl::ec::{EcGroup, EcKey, PointConversionForm};
use openssl::nid::Nid;
use tls_parser::{
    TlsExtension, TlsMessageHandshake, parse_dh_params, parse_ecdh_params,
    parse_tls_handshake_msg_certificate, parse_tls_handshake_msg_certificatestatus,
    parse_tls_handshake_server_hello, parse_tls_server_hello_extensions,
};

use super::iana::{self, KeyExchangeKind, TLS1_2, TLS1_3};

/// Bytes of a server's reply read at most: a first flight with a long
/// chain is ~20 KiB; a hostile server's megabytes are not read.
const MAX_REPLY: usize = 128 * 1024;
/// Certificates kept from a flight.
const MAX_CERTIFICATES: usize = 16;
/// RFC 8446 §4.1.3: the random of a HelloRetryRequest.
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// What a ClientHello offers.
#[derive(Clone, Debug, Default)]
pub struct Hello<'a> {
    /// Versions, most preferred first. With TLS 1.3 among them they go in
    /// `supported_versions` (legacy version TLS 1.2); otherwise the highest
    /// is the legacy version and there is no such extension.
    pub versions: &'a [u16],
    pub cipher_suites: &'a [u16],
    pub groups: &'a [u16],
    /// Groups to send a TLS 1.3 key share for (those the probe cannot make
    /// a public key for are skipped).
    pub key_shares: &'a [u16],
    pub signature_algorithms: &'a [u16],
    /// `signature_algorithms_cert`, when a client sends one.
    pub signature_algorithms_cert: &'a [u16],
    pub sni: Option<&'a str>,
    pub alpn: &'a [&'a str],
    pub status_request: bool,
    pub sct: bool,
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// `body` with a big-endian length prefix of `width` bytes (1, 2 or 3);
/// lengths are bounded by construction (lists of a few hundred entries).
fn with_length(out: &mut Vec<u8>, width: usize, body: &[u8]) {
    let len = body.len() as u32;
    let bytes = len.to_be_bytes();
    out.extend_from_slice(bytes.get(4 - width..).unwrap_or_default());
    out.extend_from_slice(body);
}

fn u16_list(items: &[u16]) -> Vec<u8> {
    let mut body = Vec::with_capacity(items.len() * 2);
    for &i in items {
        push_u16(&mut body, i);
    }
    body
}

fn extension(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    push_u16(out, kind);
    with_length(out, 2, data);
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // The random only needs to be unpredictable enough not to repeat; a
    // failing RNG leaves zeros, which servers accept.
    let _ = openssl::rand::rand_bytes(&mut buf);
    buf
}

/// A public key for a TLS 1.3 key share, when the probe can make one.
fn key_share(group: u16) -> Option<Vec<u8>> {
    // X25519/X448: every string of the right length is a public key.
    let nid = match group {
        29 => return Some(random_bytes(32)),
        30 => return Some(random_bytes(56)),
        23 => Nid::X9_62_PRIME256V1,
        24 => Nid::SECP384R1,
        25 => Nid::SECP521R1,
        _ => return None,
    };
    let ec = EcGroup::from_curve_name(nid).ok()?;
    let key = EcKey::generate(&ec).ok()?;
    let mut ctx = BigNumContext::new().ok()?;
    key.public_key()
        .to_bytes(&ec, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .ok()
}

fn extensions(hello: &Hello, tls13: bool) -> Vec<u8> {
    let mut ext = Vec::new();
    if let Some(name) = hello.sni {
        let mut entry = vec![0u8];
        with_length(&mut entry, 2, name.as_bytes());
        let mut list = Vec::new();
        with_length(&mut list, 2, &entry);
        extension(&mut ext, 0, &list);
    }
    if hello.status_request {
        extension(&mut ext, 5, &[1, 0, 0, 0, 0]);
    }
    if !hello.groups.is_empty() {
        let mut list = Vec::new();
        with_length(&mut list, 2, &u16_list(hello.groups));
        extension(&mut ext, 10, &list);
        extension(&mut ext, 11, &[1, 0]);
    }
    if !hello.signature_algorithms.is_empty() {
        let mut list = Vec::new();
        with_length(&mut list, 2, &u16_list(hello.signature_algorithms));
        extension(&mut ext, 13, &list);
    }
    if !hello.alpn.is_empty() {
        let mut names = Vec::new();
        for p in hello.alpn {
            with_length(&mut names, 1, p.as_bytes());
        }
        let mut list = Vec::new();
        with_length(&mut list, 2, &names);
        extension(&mut ext, 16, &list);
    }
    if hello.sct {
        extension(&mut ext, 18, &[]);
    }
    extension(&mut ext, 23, &[]); // extended_master_secret
    if tls13 {
        let mut versions = Vec::new();
        with_length(&mut versions, 1, &u16_list(hello.versions));
        extension(&mut ext, 43, &versions);
        extension(&mut ext, 45, &[1, 1]); // psk_dhe_ke
        if !hello.signature_algorithms_cert.is_empty() {
            let mut list = Vec::new();
            with_length(&mut list, 2, &u16_list(hello.signature_algorithms_cert));
            extension(&mut ext, 50, &list);
        }
        let mut shares = Vec::new();
        for &group in hello.key_shares {
            if let Some(key) = key_share(group) {
                push_u16(&mut shares, group);
                with_length(&mut shares, 2, &key);
            }
        }
        let mut list = Vec::new();
        with_length(&mut list, 2, &shares);
        extension(&mut ext, 51, &list);
    }
    extension(&mut ext, 0xff01, &[0]); // renegotiation_info, empty
    ext
}

/// The ClientHello as one TLS record.
pub fn encode(hello: &Hello) -> Vec<u8> {
    let tls13 = hello.versions.contains(&TLS1_3);
    let legacy = if tls13 {
        TLS1_2
    } else {
        hello.versions.iter().copied().max().unwrap_or(TLS1_2)
    };
    let mut body = Vec::new();
    push_u16(&mut body, legacy);
    body.extend_from_slice(&random_bytes(32));
    // TLS 1.3 middlebox compatibility mode: a 32-byte session id.
    with_length(
        &mut body,
        1,
        &if tls13 { random_bytes(32) } else { Vec::new() },
    );
    with_length(&mut body, 2, &u16_list(hello.cipher_suites));
    body.extend_from_slice(&[1, 0]); // compression: null only
    let mut ext = extensions(hello, tls13);
    // RFC 7685: some servers hang on hellos of 256..=511 bytes.
    let unpadded = 4 + body.len() + 2 + ext.len();
    if (256..512).contains(&unpadded) {
        let pad = (512 - unpadded).saturating_sub(4);
        extension(&mut ext, 21, &vec![0u8; pad]);
    }
    with_length(&mut body, 2, &ext);
    let mut handshake = vec![1u8];
    with_length(&mut handshake, 3, &body);
    let mut record = vec![22u8, 0x03, 0x01];
    with_length(&mut record, 2, &handshake);
    record
}

/// How a TLS 1.2-or-older server exchanges keys, from ServerKeyExchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExchange {
    /// ECDHE on a named group.
    Group(u16),
    /// Finite-field DHE with a modulus of this many bits.
    Dh(u32),
    /// RSA key transport (no ServerKeyExchange).
    Rsa,
}

impl KeyExchange {
    /// "x25519", "DH 2048 bits", "RSA key transport".
    pub fn label(self) -> String {
        match self {
            KeyExchange::Group(g) => iana::group_name(g),
            KeyExchange::Dh(bits) => format!("DH {bits} bits"),
            KeyExchange::Rsa => "RSA key transport".to_string(),
        }
    }

    /// Bits of a finite-field DH modulus (DHE or an ffdhe group).
    pub fn dh_bits(self) -> Option<u32> {
        match self {
            KeyExchange::Dh(bits) => Some(bits),
            KeyExchange::Group(g) => iana::ffdhe_bits(g),
            KeyExchange::Rsa => None,
        }
    }
}

/// The server's ServerHello (or HelloRetryRequest).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// The version chosen (`supported_versions` honoured).
    pub version: u16,
    pub cipher: u16,
    /// A HelloRetryRequest: the server wants a share for `group`.
    pub retry: bool,
    /// TLS 1.3: the group of the key share (or the one a retry asks for).
    pub group: Option<u16>,
    pub alpn: Option<String>,
    /// SCTs in the signed_certificate_timestamp extension (TLS 1.2 and
    /// older; in TLS 1.3 it rides in the encrypted Certificate).
    pub scts: Option<usize>,
}

/// Everything the server sent in answer to one ClientHello.
#[derive(Clone, Debug, Default)]
pub struct Flight {
    pub hello: Option<ServerHello>,
    /// The Certificate message (TLS 1.2 and older), leaf first, DER.
    pub certificates: Vec<Vec<u8>>,
    pub key_exchange: Option<KeyExchange>,
    /// CertificateStatus (TLS 1.2 and older): a stapled OCSP response.
    pub ocsp: Option<Vec<u8>>,
    /// The first alert: (level, description).
    pub alert: Option<(u8, u8)>,
    /// The server closed before its flight was complete.
    pub closed: bool,
    pub reset: bool,
    /// The step deadline passed first.
    pub timed_out: bool,
    /// The reply is not TLS at all.
    pub not_tls: bool,
    /// A TCP connect failure, a malformed reply: in words.
    pub error: Option<String>,
}

impl Flight {
    /// The server refused the hello: what it said, in words.
    pub fn refusal(&self) -> String {
        if let Some((_, code)) = self.alert {
            return match iana::alert_name(code) {
                Some(name) => format!("alert {name} ({code})"),
                None => format!("alert {code}"),
            };
        }
        if let Some(e) = &self.error {
            return e.clone();
        }
        if self.timed_out {
            return "no answer before the step timeout".to_string();
        }
        if self.not_tls {
            return "the reply is not TLS".to_string();
        }
        if self.reset {
            return "the server reset the connection".to_string();
        }
        "the server closed the connection".to_string()
    }
}

/// Reads one flight out of the bytes the server sent so far; `true` once
/// nothing more is needed (complete, alert, or not TLS).
struct FlightReader {
    buf: Vec<u8>,
    /// Handshake bytes from handshake records, not yet parsed.
    handshake: Vec<u8>,
    flight: Flight,
}

impl FlightReader {
    fn new() -> FlightReader {
        FlightReader {
            buf: Vec::new(),
            handshake: Vec::new(),
            flight: Flight::default(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> bool {
        self.buf.extend_from_slice(bytes);
        loop {
            let Some(header) = self.buf.get(..5) else {
                return false;
            };
            let (kind, major) = (header[0], header[1]);
            if !(20..=24).contains(&kind) || major != 3 {
                self.flight.not_tls = true;
                return true;
            }
            let len = u16::from_be_bytes([header[3], header[4]]) as usize;
            let Some(body) = self.buf.get(5..5 + len) else {
                return false;
            };
            let body = body.to_vec();
            self.buf.drain(..5 + len);
            match kind {
                21 => {
                    if let [level, code, ..] = body[..] {
                        self.flight.alert = Some((level, code));
                    }
                    return true;
                }
                22 => {
                    self.handshake.extend_from_slice(&body);
                    if self.messages() {
                        return true;
                    }
                }
                // Encrypted records: the clear part is over.
                23 => return self.flight.hello.is_some(),
                _ => {}
            }
        }
    }

    /// Parses complete handshake messages; `true` once the flight is done.
    fn messages(&mut self) -> bool {
        loop {
            let Some(&[kind, a, b, c]) = self.handshake.get(..4) else {
                return false;
            };
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            let Some(body) = self.handshake.get(4..4 + len) else {
                return false;
            };
            let body = body.to_vec();
            self.handshake.drain(..4 + len);
            match kind {
                2 => {
                    if !self.server_hello(&body) {
                        return true;
                    }
                    let v = self.flight.hello.as_ref().map(|h| h.version);
                    // TLS 1.3: everything after the ServerHello is encrypted.
                    if v == Some(TLS1_3) {
                        return true;
                    }
                }
                11 => self.certificate(&body),
                12 => self.key_exchange(&body),
                22 => {
                    if let Ok((_, TlsMessageHandshake::CertificateStatus(s))) =
                        parse_tls_handshake_msg_certificatestatus(&body)
                        && s.status_type == 1
                    {
                        self.flight.ocsp = Some(s.blob.to_vec());
                    }
                }
                14 => return true, // ServerHelloDone
                _ => {}
            }
        }
    }

    /// `false` when the ServerHello is malformed.
    fn server_hello(&mut self, body: &[u8]) -> bool {
        let Ok((_, sh)) = parse_tls_handshake_server_hello(body) else {
            self.flight.error = Some("malformed ServerHello".to_string());
            return false;
        };
        let mut hello = ServerHello {
            version: sh.version.0,
            cipher: sh.cipher.0,
            retry: sh.random == HRR_RANDOM,
            group: None,
            alpn: None,
            scts: None,
        };
        if let Some(ext) = sh.ext
            && let Ok((_, exts)) = parse_tls_server_hello_extensions(ext)
        {
            for e in exts {
                match e {
                    TlsExtension::SupportedVersions(v) => {
                        if let Some(v) = v.first() {
                            hello.version = v.0;
                        }
                    }
                    // ServerHello: group + key; HelloRetryRequest: group.
                    TlsExtension::KeyShare(data) => {
                        if let Some(&[hi, lo]) = data.get(..2) {
                            hello.group = Some(u16::from_be_bytes([hi, lo]));
                        }
                    }
                    TlsExtension::ALPN(names) => {
                        hello.alpn = names
                            .first()
                            .map(|p| String::from_utf8_lossy(p).into_owned());
                    }
                    TlsExtension::SignedCertificateTimestamp(list) => {
                        hello.scts = Some(list.map(super::certs::count_scts).unwrap_or(0));
                    }
                    _ => {}
                }
            }
        }
        if iana::key_exchange_kind(hello.cipher) == KeyExchangeKind::Rsa {
            self.flight.key_exchange = Some(KeyExchange::Rsa);
        }
        self.flight.hello = Some(hello);
        true
    }

    fn certificate(&mut self, body: &[u8]) {
        if let Ok((_, TlsMessageHandshake::Certificate(c))) =
            parse_tls_handshake_msg_certificate(body)
        {
            self.flight.certificates = c
                .cert_chain
                .iter()
                .take(MAX_CERTIFICATES)
                .map(|c| c.data.to_vec())
                .collect();
        }
    }

    fn key_exchange(&mut self, body: &[u8]) {
        let kind = self
            .flight
            .hello
            .as_ref()
            .map(|h| iana::key_exchange_kind(h.cipher));
        self.flight.key_exchange = match kind {
            Some(KeyExchangeKind::Ecdhe) => parse_ecdh_params(body).ok().and_then(|(_, p)| match p
                .curve_params
                .params_content
            {
                tls_parser::ECParametersContent::NamedGroup(g) => Some(KeyExchange::Group(g.0)),
                _ => None,
            }),
            Some(KeyExchangeKind::Dhe) => parse_dh_params(body).ok().map(|(_, p)| {
                let p = p.dh_p;
                let leading = p.iter().take_while(|&&b| b == 0).count();
                let significant = p.get(leading..).unwrap_or_default();
                let top = significant
                    .first()
                    .map(|b| 8 - b.leading_zeros())
                    .unwrap_or(0);
                KeyExchange::Dh((significant.len().saturating_sub(1) as u32) * 8 + top)
            }),
            _ => self.flight.key_exchange,
        };
    }
}

/// Parses a server's reply (all of it at once): for tests and replays.
pub fn parse_reply(bytes: &[u8]) -> Flight {
    let mut reader = FlightReader::new();
    if !reader.feed(bytes) {
        reader.flight.closed = true;
    }
    reader.flight
}

/// Connects to `addr`, sends `hello` and reads the server's first flight,
/// everything by `deadline`.
pub fn exchange(addr: SocketAddr, hello: &Hello, deadline: Instant) -> Flight {
    let mut flight = Flight::default();
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        flight.timed_out = true;
        return flight;
    }
    let mut stream = match TcpStream::connect_timeout(&addr, left) {
        Ok(s) => s,
        Err(e) => {
            let (_, _, text) = super::connect::classify(&e);
            flight.error = Some(format!("TCP connect failed ({text})"));
            return flight;
        }
    };
    let _ = stream.set_nodelay(true);
    let record = encode(hello);
    let _ = stream.set_write_timeout(Some(left));
    if let Err(e) = stream.write_all(&record) {
        flight.error = Some(format!(
            "sending the ClientHello failed: {e}",
            e = crate::text::Chain(&e)
        ));
        return flight;
    }
    let mut reader = FlightReader::new();
    let mut buf = [0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            reader.flight.timed_out = true;
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                reader.flight.closed = true;
                break;
            }
            Ok(n) => {
                total += n;
                if reader.feed(buf.get(..n).unwrap_or_default()) {
                    break;
                }
                if total > MAX_REPLY {
                    reader.flight.error =
                        Some(format!("the server sent more than {MAX_REPLY} bytes"));
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                reader.flight.timed_out = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                reader.flight.reset = true;
                break;
            }
            Err(e) => {
                reader.flight.error = Some(crate::text::Chain(&e).to_string());
                break;
            }
        }
    }
    // A polite end: close_notify would need keys; a plain close is what
    // scanners send, and servers log it as a client that went away.
    reader.flight
}

#[cfg(test)]
mod tests {
    use super::*;
    use tls_parser::{parse_tls_client_hello_extensions, parse_tls_plaintext};

    fn hello13<'a>(sni: Option<&'a str>) -> Hello<'a> {
        Hello {
            versions: &[TLS1_3, TLS1_2],
            cipher_suites: &[0x1301, 0xc02f],
            groups: &[29, 23],
            key_shares: &[29, 23, 0x11ec],
            signature_algorithms: &[0x0403, 0x0804],
            sni,
            alpn: &["h2"],
            status_request: true,
            sct: true,
            ..Hello::default()
        }
    }

    #[test]
    fn a_client_hello_parses_back_with_what_it_offers() {
        let record = encode(&hello13(Some("site.example")));
        let (rest, plain) = parse_tls_plaintext(&record).unwrap();
        assert!(rest.is_empty());
        let Some(tls_parser::TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch))) =
            plain.msg.first()
        else {
            panic!("not a ClientHello: {plain:?}");
        };
        assert_eq!(ch.version.0, TLS1_2);
        assert_eq!(ch.session_id.map(<[u8]>::len), Some(32));
        let ids: Vec<u16> = ch.ciphers.iter().map(|c| c.0).collect();
        assert_eq!(ids, [0x1301, 0xc02f]);
        let (_, exts) = parse_tls_client_hello_extensions(ch.ext.unwrap()).unwrap();
        let mut shares = None;
        let mut versions = None;
        let mut sni = None;
        for e in &exts {
            match e {
                TlsExtension::KeyShare(d) => shares = Some(d.to_vec()),
                TlsExtension::SupportedVersions(v) => {
                    versions = Some(v.iter().map(|v| v.0).collect::<Vec<_>>())
                }
                TlsExtension::SNI(names) => {
                    sni = names.first().map(|(_, n)| n.to_vec());
                }
                _ => {}
            }
        }
        assert_eq!(versions.unwrap(), [TLS1_3, TLS1_2]);
        assert_eq!(sni.as_deref(), Some(&b"site.example"[..]));
        // x25519 (32 bytes) and P-256 (65 bytes), the hybrid skipped.
        let shares = shares.unwrap();
        assert_eq!(shares.len(), 2 + (4 + 32) + (4 + 65));
        assert_eq!(&shares[2..4], &[0, 29]);
    }

    #[test]
    fn short_hellos_are_padded_past_511_bytes() {
        let h = Hello {
            versions: &[TLS1_2],
            cipher_suites: &[0xc02f; 120],
            ..Hello::default()
        };
        let record = encode(&h);
        assert!(record.len() - 5 >= 512, "{}", record.len());
        let h = Hello {
            versions: &[iana::TLS1_1],
            cipher_suites: &[0x002f],
            ..Hello::default()
        };
        let record = encode(&h);
        assert!(record.len() - 5 < 256);
        assert_eq!(&record[9..11], &[3, 2]);
    }

    fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![kind, 3, 3];
        with_length(&mut r, 2, body);
        r
    }

    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        with_length(&mut m, 3, body);
        m
    }

    fn server_hello(random: [u8; 32], cipher: u16, ext: &[u8]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&random);
        b.push(0);
        push_u16(&mut b, cipher);
        b.push(0);
        with_length(&mut b, 2, ext);
        message(2, &b)
    }

    #[test]
    fn a_hello_retry_request_names_group_and_suite() {
        let mut ext = Vec::new();
        extension(&mut ext, 43, &[3, 4]);
        extension(&mut ext, 51, &[0, 24]);
        let reply = record(22, &server_hello(HRR_RANDOM, 0x1302, &ext));
        let flight = parse_reply(&reply);
        let hello = flight.hello.unwrap();
        assert!(hello.retry);
        assert_eq!(
            (hello.version, hello.cipher, hello.group),
            (TLS1_3, 0x1302, Some(24))
        );
    }

    #[test]
    fn a_tls12_flight_gives_chain_and_key_exchange() {
        // ServerHello (DHE suite), Certificate, ServerKeyExchange, Done,
        // split over two records in the middle of a message.
        let mut hs = server_hello([7; 32], 0x009e, &[]);
        let cert = b"not really DER";
        let mut entry = Vec::new();
        with_length(&mut entry, 3, cert);
        let mut list = Vec::new();
        with_length(&mut list, 3, &entry);
        hs.extend(message(11, &list));
        let mut dh = Vec::new();
        let mut p = vec![0u8; 1];
        p.extend(vec![0xffu8; 256]); // a leading zero, then 2048 bits
        with_length(&mut dh, 2, &p);
        with_length(&mut dh, 2, &[2]);
        with_length(&mut dh, 2, &[5; 256]);
        dh.extend_from_slice(&[4, 1, 0, 2, 0, 0]); // signature, unparsed
        hs.extend(message(12, &dh));
        hs.extend(message(14, &[]));
        let (a, b) = hs.split_at(100);
        let mut reply = record(22, a);
        reply.extend(record(22, b));
        let flight = parse_reply(&reply);
        assert!(!flight.closed, "{flight:?}");
        assert_eq!(flight.hello.as_ref().unwrap().version, TLS1_2);
        assert_eq!(flight.certificates, [cert.to_vec()]);
        assert_eq!(flight.key_exchange, Some(KeyExchange::Dh(2048)));
    }

    #[test]
    fn alerts_truncation_and_garbage() {
        let flight = parse_reply(&record(21, &[2, 40]));
        assert_eq!(flight.alert, Some((2, 40)));
        assert_eq!(flight.refusal(), "alert handshake_failure (40)");
        let flight = parse_reply(&record(22, &[2, 0, 0]));
        assert!(flight.closed && flight.hello.is_none());
        let flight = parse_reply(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(flight.not_tls);
        let flight = parse_reply(&record(22, &message(2, &[3, 3, 1])));
        assert!(flight.error.is_some());
    }

    #[test]
    fn an_ecdhe_key_exchange_names_its_group() {
        let mut hs = server_hello([1; 32], 0xc02f, &[]);
        let mut ske = vec![3, 0, 29];
        with_length(&mut ske, 1, &[9; 32]);
        hs.extend(message(12, &ske));
        hs.extend(message(14, &[]));
        let flight = parse_reply(&record(22, &hs));
        assert_eq!(flight.key_exchange, Some(KeyExchange::Group(29)));
        assert_eq!(flight.key_exchange.unwrap().label(), "x25519");
    }
}
