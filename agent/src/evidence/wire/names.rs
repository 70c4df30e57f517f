//! Names of TLS protocol numbers (IANA registries), and how non-TLS bytes
//! are described.

use tls_parser::TlsCipherSuite;

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
pub(super) fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

pub(super) fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".to_string(),
        0x0301 => "TLS 1.0".to_string(),
        0x0302 => "TLS 1.1".to_string(),
        0x0303 => "TLS 1.2".to_string(),
        0x0304 => "TLS 1.3".to_string(),
        0x7f00..=0x7fff => format!("TLS 1.3 draft {}", v & 0xff),
        _ => format!("0x{v:04x}"),
    }
}

pub fn cipher_name(id: u16) -> String {
    TlsCipherSuite::from_id(id)
        .map(|c| c.name.to_string())
        .unwrap_or_else(|| format!("0x{id:04x}"))
}

/// IANA "TLS Supported Groups" names.
pub(super) fn group_name(id: u16) -> String {
    let name = match id {
        19 => "secp192r1",
        21 => "secp224r1",
        22 => "secp256k1",
        23 => "secp256r1",
        24 => "secp384r1",
        25 => "secp521r1",
        26 => "brainpoolP256r1",
        27 => "brainpoolP384r1",
        28 => "brainpoolP512r1",
        29 => "x25519",
        30 => "x448",
        31 => "brainpoolP256r1tls13",
        32 => "brainpoolP384r1tls13",
        33 => "brainpoolP512r1tls13",
        41 => "curveSM2",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x0200 => "MLKEM512",
        0x0201 => "MLKEM768",
        0x0202 => "MLKEM1024",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        _ => return format!("0x{id:04x}"),
    };
    name.to_string()
}

/// IANA "TLS SignatureScheme" names; TLS 1.2 hash/signature pairs that have
/// none are named `<signature>_<hash>`.
pub fn signature_scheme_name(id: u16) -> String {
    let name = match id {
        0x0201 => "rsa_pkcs1_sha1",
        0x0203 => "ecdsa_sha1",
        0x0401 => "rsa_pkcs1_sha256",
        0x0403 => "ecdsa_secp256r1_sha256",
        0x0501 => "rsa_pkcs1_sha384",
        0x0503 => "ecdsa_secp384r1_sha384",
        0x0601 => "rsa_pkcs1_sha512",
        0x0603 => "ecdsa_secp521r1_sha512",
        0x0708 => "sm2sig_sm3",
        0x0804 => "rsa_pss_rsae_sha256",
        0x0805 => "rsa_pss_rsae_sha384",
        0x0806 => "rsa_pss_rsae_sha512",
        0x0807 => "ed25519",
        0x0808 => "ed448",
        0x0809 => "rsa_pss_pss_sha256",
        0x080a => "rsa_pss_pss_sha384",
        0x080b => "rsa_pss_pss_sha512",
        0x081a => "ecdsa_brainpoolP256r1tls13_sha256",
        0x081b => "ecdsa_brainpoolP384r1tls13_sha384",
        0x081c => "ecdsa_brainpoolP512r1tls13_sha512",
        _ => {
            let [hash, sig] = id.to_be_bytes();
            let hash = match hash {
                1 => "md5",
                2 => "sha1",
                3 => "sha224",
                4 => "sha256",
                5 => "sha384",
                6 => "sha512",
                _ => return format!("0x{id:04x}"),
            };
            let sig = match sig {
                1 => "rsa",
                2 => "dsa",
                3 => "ecdsa",
                _ => return format!("0x{id:04x}"),
            };
            return format!("{sig}_{hash}");
        }
    };
    name.to_string()
}

pub(super) fn handshake_name(ty: u8) -> String {
    let name = match ty {
        0 => "HelloRequest",
        1 => "ClientHello",
        2 => "ServerHello",
        3 => "HelloVerifyRequest",
        4 => "NewSessionTicket",
        5 => "EndOfEarlyData",
        6 => "HelloRetryRequest",
        8 => "EncryptedExtensions",
        11 => "Certificate",
        12 => "ServerKeyExchange",
        13 => "CertificateRequest",
        14 => "ServerHelloDone",
        15 => "CertificateVerify",
        16 => "ClientKeyExchange",
        20 => "Finished",
        21 => "CertificateURL",
        22 => "CertificateStatus",
        23 => "SupplementalData",
        24 => "KeyUpdate",
        25 => "CompressedCertificate",
        67 => "NextProtocol",
        254 => "MessageHash",
        _ => return format!("Unknown({ty})"),
    };
    name.to_string()
}

/// RFC 8446 §6 (and IANA registry) name of a TLS alert, in snake_case;
/// `None` for a code no registry names. Codes the RFC marks `_RESERVED` (TLS
/// 1.2 and older only) are named without the suffix: TLS 1.2 peers still
/// send them.
pub fn known_alert_name(code: u8) -> Option<&'static str> {
    Some(match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return None,
    })
}

/// An alert's name as the wire facts show it, `unknown(N)` when unnamed.
pub(super) fn alert_name(code: u8) -> String {
    known_alert_name(code).map_or_else(|| format!("unknown({code})"), str::to_string)
}

/// What a stream that is not TLS speaks, from its first bytes.
pub(super) fn non_tls_kind(b: &[u8]) -> &'static str {
    const METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI ",
    ];
    if METHODS.iter().any(|m| b.starts_with(m)) {
        "http-request"
    } else if b.starts_with(b"HTTP/") {
        "http-response"
    } else if matches!(b, [first, _, 1, ..] if first & 0x80 != 0) {
        // SSLv2 record: 2-byte length with the high bit set, then
        // message type 1 (CLIENT-HELLO).
        "sslv2-hello"
    } else {
        "unknown"
    }
}
