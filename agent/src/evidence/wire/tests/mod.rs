//! The wire parser against recorded handshakes, cut and mangled every way
//! the kernel can deliver them, and against hostile bytes.

use super::stream::header_prefix_ok;
use super::*;
use agent_ebpf::record_walker::WalkerState;
use chrono::TimeZone;

const TLS12_OK_CHAIN: &str = include_str!("../../testdata/wire/tls12_ok_chain.txt");
const TLS13_OK: &str = include_str!("../../testdata/wire/tls13_ok.txt");
const TLS12_UNKNOWN_CA: &str = include_str!("../../testdata/wire/tls12_unknown_ca.txt");
const TLS13_UNKNOWN_CA: &str = include_str!("../../testdata/wire/tls13_unknown_ca.txt");
const VERSION_MISMATCH: &str = include_str!("../../testdata/wire/version_mismatch.txt");
const NO_SHARED_CIPHER: &str = include_str!("../../testdata/wire/no_shared_cipher.txt");
const TLS12_MTLS_NO_CERT: &str = include_str!("../../testdata/wire/tls12_mtls_no_client_cert.txt");
const TLS13_MTLS_NO_CERT: &str = include_str!("../../testdata/wire/tls13_mtls_no_client_cert.txt");
const TLS13_HRR: &str = include_str!("../../testdata/wire/tls13_hello_retry.txt");
const HTTP_TO_TLS: &str = include_str!("../../testdata/wire/http_request_to_tls_server.txt");
const TLS_TO_HTTP: &str = include_str!("../../testdata/wire/tls_client_to_http_server.txt");

const ALL_FIXTURES: [&str; 11] = [
    TLS12_OK_CHAIN,
    TLS13_OK,
    TLS12_UNKNOWN_CA,
    TLS13_UNKNOWN_CA,
    VERSION_MISMATCH,
    NO_SHARED_CIPHER,
    TLS12_MTLS_NO_CERT,
    TLS13_MTLS_NO_CERT,
    TLS13_HRR,
    HTTP_TO_TLS,
    TLS_TO_HTTP,
];

use Role::{Client as C, Server as S};

/// A chunk that owns its bytes.
#[derive(Clone, Debug)]
struct Owned {
    time: DateTime<Utc>,
    sender: Role,
    stream_offset: u32,
    flags: u8,
    bytes: Vec<u8>,
}

fn base_time() -> DateTime<Utc> {
    Utc.timestamp_opt(1_750_000_000, 0).single().unwrap()
}

fn idx(r: Role) -> usize {
    match r {
        Role::Client => 0,
        Role::Server => 1,
    }
}

/// Parses a fixture (`<c|s> <seconds> <hex>` lines, `#` comments) into
/// chunks with running stream offsets and no flags: every recv() of the
/// relay as one syscall.
fn load(text: &str) -> Vec<Owned> {
    let mut offsets = [0u32; 2];
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let mut parts = line.split(' ');
        let tag = parts.next().unwrap();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        let bytes = hex::decode(parts.next().unwrap()).unwrap();
        let sender = if tag == "c" { C } else { S };
        out.push(Owned {
            time: base_time() + chrono::Duration::microseconds((secs * 1e6) as i64),
            sender,
            stream_offset: offsets[idx(sender)],
            flags: 0,
            bytes: bytes.clone(),
        });
        offsets[idx(sender)] += bytes.len() as u32;
    }
    out
}

fn assembler(chunks: &[Owned]) -> WireAssembler {
    let mut w = WireAssembler::default();
    for c in chunks {
        w.push(Chunk {
            time: c.time,
            sender: c.sender,
            stream_offset: c.stream_offset,
            flags: c.flags,
            bytes: &c.bytes,
        });
    }
    w
}

fn run(chunks: &[Owned]) -> (TlsFacts, WireProgress) {
    let w = assembler(chunks);
    let p = w.progress();
    let mut facts = w.into_facts();
    facts.parse_certificates(&mut CertificateCache::default());
    (facts, p)
}

/// What the kernel would send for these syscalls.
fn kernel(chunks: &[Owned]) -> Vec<Owned> {
    let mut walkers = [WalkerState::default(); 2];
    let mut out = Vec::new();
    for c in chunks {
        let mut buf = c.bytes.clone();
        let len = buf.len();
        let v = walkers[idx(c.sender)].walk(&mut buf, len);
        buf.truncate(v.emit_len as usize);
        if v.emit_len > 0 || v.flags != 0 {
            out.push(Owned {
                stream_offset: v.stream_offset,
                flags: v.flags,
                bytes: buf,
                ..c.clone()
            });
        }
    }
    out
}

/// Splits chunks into pieces of `size()` bytes. Flags that end a chunk go
/// on its last piece; NOT_TLS and HEADERS_ONLY chunks stay whole.
fn split(chunks: &[Owned], mut size: impl FnMut() -> usize) -> Vec<Owned> {
    let mut out = Vec::new();
    for c in chunks {
        if c.flags & (DATA_FLAG_NOT_TLS | DATA_FLAG_HEADERS_ONLY) != 0 || c.bytes.len() <= 1 {
            out.push(c.clone());
            continue;
        }
        let mut pos = 0;
        while pos < c.bytes.len() {
            let n = size().clamp(1, c.bytes.len() - pos);
            let last = pos + n == c.bytes.len();
            out.push(Owned {
                stream_offset: c.stream_offset + pos as u32,
                flags: if last { c.flags } else { 0 },
                bytes: c.bytes[pos..pos + n].to_vec(),
                ..c.clone()
            });
            pos += n;
        }
    }
    out
}

/// Splits chunks the way OpenSSL reads: each record header, then each
/// body, in separate syscalls.
fn openssl_reads(chunks: &[Owned]) -> Vec<Owned> {
    let mut cuts: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
    for role in [C, S] {
        let stream: Vec<u8> = chunks
            .iter()
            .filter(|c| c.sender == role)
            .flat_map(|c| c.bytes.clone())
            .collect();
        let mut pos = 0usize;
        while pos + 5 <= stream.len() && header_prefix_ok(&stream[pos..pos + 5]) {
            let len = u16::from_be_bytes([stream[pos + 3], stream[pos + 4]]) as usize;
            cuts[idx(role)].push(pos as u32 + 5);
            pos += 5 + len;
            cuts[idx(role)].push(pos as u32);
        }
    }
    let mut out = Vec::new();
    for c in chunks {
        let end = c.stream_offset + c.bytes.len() as u32;
        let mut start = c.stream_offset;
        let inner = cuts[idx(c.sender)]
            .iter()
            .copied()
            .filter(|&x| x > c.stream_offset && x < end);
        for cut in inner.chain([end]) {
            let a = (start - c.stream_offset) as usize;
            let b = (cut - c.stream_offset) as usize;
            out.push(Owned {
                stream_offset: start,
                flags: if cut == end { c.flags } else { 0 },
                bytes: c.bytes[a..b].to_vec(),
                ..c.clone()
            });
            start = cut;
        }
    }
    out
}

/// Re-frames each chunk's plaintext handshake records (before its
/// sender's ChangeCipherSpec) into records of at most `max` body bytes,
/// so handshake messages span records. Chunks must hold whole records.
fn refragment(chunks: &[Owned], max: usize) -> Vec<Owned> {
    let mut ccs = [false; 2];
    let mut offsets = [0u32; 2];
    let mut out = Vec::new();
    for c in chunks {
        let mut bytes = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let flush = |pending: &mut Vec<u8>, bytes: &mut Vec<u8>| {
            for frag in pending.chunks(max) {
                bytes.extend([22, 3, 3]);
                bytes.extend((frag.len() as u16).to_be_bytes());
                bytes.extend(frag);
            }
            pending.clear();
        };
        let mut pos = 0;
        while pos < c.bytes.len() {
            let h = &c.bytes[pos..pos + 5];
            let len = u16::from_be_bytes([h[3], h[4]]) as usize;
            let body = &c.bytes[pos + 5..pos + 5 + len];
            if h[0] == 22 && !ccs[idx(c.sender)] {
                pending.extend(body);
            } else {
                flush(&mut pending, &mut bytes);
                bytes.extend(&c.bytes[pos..pos + 5 + len]);
            }
            ccs[idx(c.sender)] |= h[0] == 20;
            pos += 5 + len;
        }
        flush(&mut pending, &mut bytes);
        let n = bytes.len() as u32;
        out.push(Owned {
            stream_offset: offsets[idx(c.sender)],
            bytes,
            ..c.clone()
        });
        offsets[idx(c.sender)] += n;
    }
    out
}

/// xorshift64: deterministic randomness without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn variants(chunks: &[Owned], prefix: &str) -> Vec<(String, Vec<Owned>)> {
    let mut v = vec![
        (prefix.to_string(), chunks.to_vec()),
        (format!("{prefix}, byte by byte"), split(chunks, || 1)),
    ];
    for seed in [1u64, 7, 1234] {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let pieces = split(chunks, || 1 + rng.below(64));
        v.push((format!("{prefix}, random pieces (seed {seed})"), pieces));
    }
    v
}

/// Runs a fixture in every chunking and checks that each group of
/// chunkings of the same syscalls yields identical facts, then applies
/// `check` to each group. Groups: the relay's chunks as syscalls (raw and
/// split like OpenSSL reads), and what the kernel's record walker makes
/// of both.
fn check_fixture(text: &str, check: impl Fn(&TlsFacts, WireProgress, &str)) {
    let raw = load(text);
    let reads = openssl_reads(&raw);
    let mut raw_group = variants(&raw, "relay chunks");
    raw_group.extend(variants(&reads, "openssl-style reads"));
    let groups = [
        raw_group,
        variants(&kernel(&raw), "kernel events of relay chunks"),
        variants(&kernel(&reads), "kernel events of openssl-style reads"),
    ];
    for group in groups {
        let (name0, chunks0) = &group[0];
        let (facts0, progress0) = run(chunks0);
        check(&facts0, progress0, name0);
        for (name, chunks) in &group[1..] {
            let (facts, progress) = run(chunks);
            assert_eq!(facts, facts0, "{name} differs from {name0}");
            assert_eq!(progress, progress0, "{name} differs from {name0}");
        }
    }
}

fn messages(f: &TlsFacts) -> Vec<(Role, &str)> {
    f.messages
        .iter()
        .map(|m| (m.sender, m.message.as_str()))
        .collect()
}

fn has_anomaly(f: &TlsFacts, needle: &str) -> bool {
    f.anomalies.iter().any(|a| a.contains(needle))
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[test]
fn tls12_success_with_chain() {
    let first_client_time = load(TLS12_OK_CHAIN)[0].time;
    check_fixture(TLS12_OK_CHAIN, |f, p, name| {
        assert_eq!(p, WireProgress::Completed, "{name}");
        assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
        assert_eq!(f.sni.as_deref(), Some("server.test"));
        assert_eq!(f.offered_versions, ["TLS 1.2"]);
        assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.2"));
        let ch = f.client_hello.as_ref().unwrap();
        assert_eq!(ch.time, Some(first_client_time));
        assert_eq!(ch.legacy_version, "TLS 1.2");
        assert!(ch.supported_versions.is_empty());
        assert_eq!(
            ch.cipher_suites[0],
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
        );
        assert_eq!(
            ch.cipher_suites.last().unwrap(),
            "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
        );
        assert_eq!(ch.supported_groups[..2], ["x25519", "secp256r1"]);
        assert_eq!(ch.signature_algorithms[0], "ecdsa_secp256r1_sha256");
        assert!(
            ch.signature_algorithms
                .iter()
                .any(|s| s == "rsa_pss_rsae_sha256")
        );
        assert!(is_hex64(&ch.random));
        let sh = f.server_hello.as_ref().unwrap();
        assert_eq!(sh.version, "TLS 1.2");
        assert_eq!(sh.cipher_suite, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
        assert!(!sh.hello_retry_request);
        assert!(is_hex64(&sh.random) && sh.random != ch.random);
        assert_eq!(f.server_certificates.len(), 2);
        let (leaf, ca) = (&f.server_certificates[0], &f.server_certificates[1]);
        assert_eq!(leaf.subject, "CN=server.test");
        assert_eq!(leaf.issuer, "O=tlsdoctor test, CN=tlsdoctor Test CA");
        assert_eq!(leaf.sans, ["server.test"]);
        assert!(!leaf.is_ca);
        assert_eq!(ca.subject, ca.issuer);
        assert!(ca.is_ca && ca.self_signed);
        assert!(!f.certificate_requested);
        assert_eq!(f.client_certificate_count, None);
        assert!(f.alert.is_none() && f.alerts.is_empty() && f.non_tls.is_none());
        assert_eq!(
            messages(f),
            [
                (C, "ClientHello"),
                (S, "ServerHello"),
                (S, "Certificate"),
                (S, "ServerKeyExchange"),
                (S, "ServerHelloDone"),
                (C, "ClientKeyExchange"),
                (C, "ChangeCipherSpec"),
                (S, "NewSessionTicket"),
                (S, "ChangeCipherSpec"),
            ]
        );
        let enc: Vec<_> = f
            .encrypted_records
            .iter()
            .map(|r| (r.sender, r.content_type, r.probable_alert))
            .collect();
        // Finished of each side, the client's data, then both
        // close_notify alerts (encrypted, type 21 kept).
        assert_eq!(
            enc,
            [
                (C, 22, false),
                (S, 22, false),
                (C, 23, false),
                (C, 21, true),
                (S, 21, true)
            ],
            "{name}"
        );
    });
}

#[test]
fn tls13_success_with_alpn() {
    check_fixture(TLS13_OK, |f, p, name| {
        assert_eq!(p, WireProgress::Completed, "{name}");
        assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
        assert_eq!(f.sni.as_deref(), Some("server.test"));
        assert_eq!(f.offered_versions, ["TLS 1.3"]);
        assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
        let ch = f.client_hello.as_ref().unwrap();
        assert_eq!(ch.legacy_version, "TLS 1.2");
        assert_eq!(ch.supported_versions, ["TLS 1.3"]);
        assert_eq!(ch.alpn, ["h2", "http/1.1"]);
        assert_eq!(
            ch.cipher_suites[..3],
            [
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_AES_128_GCM_SHA256"
            ]
        );
        let sh = f.server_hello.as_ref().unwrap();
        assert_eq!(sh.version, "TLS 1.3");
        assert_eq!(sh.cipher_suite, "TLS_AES_256_GCM_SHA384");
        // TLS 1.3 sends ALPN and certificates encrypted.
        assert_eq!(sh.alpn, None);
        assert!(f.server_certificates.is_empty());
        assert_eq!(
            messages(f),
            [
                (C, "ClientHello"),
                (S, "ServerHello"),
                (S, "ChangeCipherSpec"),
                (C, "ChangeCipherSpec"),
            ]
        );
        assert!(f.alerts.is_empty());
        assert!(f.encrypted_records.iter().all(|r| r.content_type == 23));
        assert!(f.encrypted_records.iter().any(|r| r.sender == S));
        // The client's Finished (69 bytes with SHA-384), and its
        // close_notify at the end (19 bytes, a probable alert).
        let client: Vec<_> = f
            .encrypted_records
            .iter()
            .filter(|r| r.sender == C)
            .collect();
        assert_eq!((client[0].length, client[0].probable_alert), (69, false));
        let last = client.last().unwrap();
        assert_eq!((last.length, last.probable_alert), (19, true), "{name}");
    });
}

#[test]
fn tls12_client_rejects_untrusted_ca() {
    check_fixture(TLS12_UNKNOWN_CA, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        let alert = f.alert.as_ref().unwrap();
        assert_eq!(alert.sender, C);
        assert_eq!(
            (alert.level.as_str(), alert.description.as_str(), alert.code),
            ("fatal", "unknown_ca", 48)
        );
        assert_eq!(f.alerts.len(), 1);
        assert_eq!(f.server_certificates.len(), 2);
        assert_eq!(
            f.server_certificates[0].common_name.as_deref(),
            Some("server.test")
        );
        assert_eq!(messages(f).last(), Some(&(S, "ServerHelloDone")));
        assert!(f.encrypted_records.is_empty());
        assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
    });
}

#[test]
fn tls13_client_rejects_untrusted_ca_in_clear() {
    check_fixture(TLS13_UNKNOWN_CA, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
        let alert = f.alert.as_ref().unwrap();
        assert_eq!(
            (alert.sender, alert.description.as_str(), alert.code),
            (C, "unknown_ca", 48)
        );
        assert_eq!(
            messages(f),
            [
                (C, "ClientHello"),
                (S, "ServerHello"),
                (S, "ChangeCipherSpec")
            ]
        );
        // The server's encrypted flight; nothing encrypted from the client.
        assert!(!f.encrypted_records.is_empty());
        assert!(f.encrypted_records.iter().all(|r| r.sender == S));
        assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
    });
}

#[test]
fn protocol_version_mismatch() {
    check_fixture(VERSION_MISMATCH, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        assert_eq!(f.offered_versions, ["TLS 1.2"]);
        assert_eq!(f.negotiated_version, None);
        assert!(f.server_hello.is_none());
        let alert = f.alert.as_ref().unwrap();
        assert_eq!(
            (
                alert.sender,
                alert.level.as_str(),
                alert.description.as_str(),
                alert.code
            ),
            (S, "fatal", "protocol_version", 70)
        );
        assert_eq!(messages(f), [(C, "ClientHello")]);
    });
}

#[test]
fn no_shared_cipher() {
    check_fixture(NO_SHARED_CIPHER, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        let ch = f.client_hello.as_ref().unwrap();
        assert_eq!(
            ch.cipher_suites,
            [
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
            ]
        );
        assert!(f.server_hello.is_none());
        let alert = f.alert.as_ref().unwrap();
        assert_eq!(
            (alert.sender, alert.description.as_str(), alert.code),
            (S, "handshake_failure", 40)
        );
    });
}

#[test]
fn tls12_mtls_client_sends_no_certificate() {
    check_fixture(TLS12_MTLS_NO_CERT, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        assert!(f.certificate_requested);
        assert_eq!(f.client_certificate_count, Some(0));
        assert_eq!(f.server_certificates.len(), 2);
        let alert = f.alert.as_ref().unwrap();
        assert_eq!(
            (alert.sender, alert.description.as_str(), alert.code),
            (S, "handshake_failure", 40)
        );
        let m = messages(f);
        assert!(m.contains(&(S, "CertificateRequest")));
        let client: Vec<_> = m.iter().filter(|(s, _)| *s == C).map(|(_, n)| *n).collect();
        assert_eq!(
            client,
            [
                "ClientHello",
                "Certificate",
                "ClientKeyExchange",
                "ChangeCipherSpec"
            ]
        );
        // The client's encrypted Finished; the server never switched.
        assert_eq!(f.encrypted_records.len(), 1);
        assert_eq!(
            (
                f.encrypted_records[0].sender,
                f.encrypted_records[0].content_type
            ),
            (C, 22)
        );
    });
}

#[test]
fn tls13_client_first_record_sizes() {
    // JSSE's padded alert, OpenSSL's plain one: alerts.
    assert!(tls13_client_first_record_is_alert(35));
    assert!(tls13_client_first_record_is_alert(19));
    // Empty Certificate (GCM/ChaCha, CCM_8) and every Finished size: not.
    for len in [25, 17, 45, 53, 61, 69, 900] {
        assert!(!tls13_client_first_record_is_alert(len), "{len}");
    }
}

#[test]
fn tls13_mtls_rejection_is_an_encrypted_alert() {
    check_fixture(TLS13_MTLS_NO_CERT, |f, p, name| {
        // By the wire both sides went past the handshake; the server's
        // certificate_required comes encrypted afterwards and only its
        // length gives it away.
        assert_eq!(p, WireProgress::Completed, "{name}");
        assert!(!f.certificate_requested, "encrypted in TLS 1.3");
        assert_eq!(f.client_certificate_count, None);
        assert!(f.alerts.is_empty());
        let last = f.encrypted_records.last().unwrap();
        assert_eq!(
            (last.sender, last.length, last.probable_alert),
            (S, 19, true),
            "{name}"
        );
    });
}

/// [`WireAssembler::server_answered`] of a fixture, the same in every
/// chunking (as syscalls, split, and through the kernel's record walker).
fn server_answered_in_every_chunking(text: &str) -> bool {
    let raw = load(text);
    let reads = openssl_reads(&raw);
    let mut all = variants(&raw, "relay chunks");
    all.extend(variants(&reads, "openssl-style reads"));
    all.extend(variants(&kernel(&raw), "kernel events of relay chunks"));
    all.extend(variants(
        &kernel(&reads),
        "kernel events of openssl-style reads",
    ));
    let first = assembler(&all[0].1).server_answered();
    for (name, chunks) in &all[1..] {
        assert_eq!(assembler(chunks).server_answered(), first, "{name}");
    }
    first
}

#[test]
fn a_server_answering_the_clients_finished_ends_the_handshake_for_both() {
    // TLS 1.3: OpenSSL's session tickets follow the client's Finished;
    // TLS 1.2: the server's Finished follows the client's.
    assert!(server_answered_in_every_chunking(TLS13_OK));
    assert!(server_answered_in_every_chunking(TLS13_HRR));
    assert!(server_answered_in_every_chunking(TLS12_OK_CHAIN));
    // Rejections: an alert (in clear, or TLS 1.3's encrypted
    // certificate_required after the client's Finished) is no answer.
    for rejected in [
        TLS13_MTLS_NO_CERT,
        TLS13_UNKNOWN_CA,
        TLS12_UNKNOWN_CA,
        TLS12_MTLS_NO_CERT,
        VERSION_MISMATCH,
        NO_SHARED_CIPHER,
    ] {
        assert!(!server_answered_in_every_chunking(rejected));
    }
}

#[test]
fn tls13_early_data_is_no_finished_the_server_could_answer() {
    // 0-RTT: the client's application data goes out right after its
    // ClientHello, before the server chose a version; the server's
    // encrypted flight that follows answers its ClientHello, not a
    // Finished.
    let hello = load(TLS13_OK);
    let mut w = WireAssembler::new();
    let mut push = |sender: Role, offset: u32, bytes: &[u8]| {
        w.push(Chunk {
            time: base_time(),
            sender,
            stream_offset: offset,
            flags: 0,
            bytes,
        })
    };
    let client_hello = &hello[0];
    assert_eq!(client_hello.sender, C);
    push(C, 0, &client_hello.bytes);
    let early = record(CONTENT_APPLICATION_DATA, &[0xee; 40]);
    push(C, client_hello.bytes.len() as u32, &early);
    let server_flight = &hello[1];
    assert_eq!(server_flight.sender, S);
    push(S, 0, &server_flight.bytes);
    assert!(!w.server_answered());
    assert_eq!(w.facts().negotiated_version.as_deref(), Some("TLS 1.3"));
}

#[test]
fn tls13_hello_retry_request_is_not_encryption_start() {
    check_fixture(TLS13_HRR, |f, p, name| {
        assert_eq!(p, WireProgress::Completed, "{name}");
        assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
        assert_eq!(
            messages(f),
            [
                (C, "ClientHello"),
                (S, "HelloRetryRequest"),
                (S, "ChangeCipherSpec"),
                (C, "ChangeCipherSpec"),
                (C, "ClientHello"),
                (S, "ServerHello"),
            ]
        );
        let sh = f.server_hello.as_ref().unwrap();
        assert!(!sh.hello_retry_request);
        assert_eq!(sh.version, "TLS 1.3");
        assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
        // The first ClientHello's facts are kept.
        let ch = f.client_hello.as_ref().unwrap();
        assert_eq!(ch.supported_groups[..2], ["x25519", "secp256r1"]);
    });
}

#[test]
fn hello_retry_request_alone_is_flagged() {
    let chunks = load(TLS13_HRR);
    let (f, p) = run(&chunks[..2]);
    assert_eq!(p, WireProgress::InProgress);
    let sh = f.server_hello.unwrap();
    assert!(sh.hello_retry_request);
    assert_eq!(sh.version, "TLS 1.3");
    assert!(f.encrypted_records.is_empty());
}

#[test]
fn plain_http_request_to_tls_server() {
    check_fixture(HTTP_TO_TLS, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        let n = f.non_tls.as_ref().unwrap();
        assert_eq!(n.sender, C);
        assert_eq!(n.kind, "http-request");
        assert_eq!(n.description, "HTTP GET request");
        assert!(f.client_hello.is_none() && f.messages.is_empty());
        assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
    });
}

#[test]
fn tls_client_to_plain_http_server() {
    check_fixture(TLS_TO_HTTP, |f, p, name| {
        assert_eq!(p, WireProgress::Failed, "{name}");
        let n = f.non_tls.as_ref().unwrap();
        assert_eq!(n.sender, S);
        assert_eq!(n.kind, "http-response");
        assert_eq!(n.description, "HTTP/1.0 response, status 400");
        assert_eq!(f.sni.as_deref(), Some("server.test"));
        assert_eq!(messages(f), [(C, "ClientHello")]);
    });
}

fn chunk(sender: Role, offset: u32, flags: u8, bytes: &[u8]) -> Owned {
    Owned {
        time: base_time(),
        sender,
        stream_offset: offset,
        flags,
        bytes: bytes.to_vec(),
    }
}

fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type, 3, 3];
    r.extend((body.len() as u16).to_be_bytes());
    r.extend(body);
    r
}

mod hostile;
mod kernel_chunks;
