//! Code points of the TLS registries the enumeration and the client
//! simulation offer, and their names. Names are IANA's, spelled as the wire
//! facts spell them (`evidence::wire`), so a simulated ClientHello and a
//! captured one read the same; cipher suites also get OpenSSL's names,
//! which is what server configs (`ssl_ciphers`) are written in.

use tls_parser::{TlsCipherEnc, TlsCipherKx, TlsCipherMac, TlsCipherSuite};

pub const SSL3: u16 = 0x0300;
pub const TLS1_0: u16 = 0x0301;
pub const TLS1_1: u16 = 0x0302;
pub const TLS1_2: u16 = 0x0303;
pub const TLS1_3: u16 = 0x0304;

/// "TLS 1.2" for 0x0303, as the wire facts and the report spell versions.
pub fn version_name(v: u16) -> String {
    match v {
        SSL3 => "SSL 3.0".to_string(),
        TLS1_0 => "TLS 1.0".to_string(),
        TLS1_1 => "TLS 1.1".to_string(),
        TLS1_2 => "TLS 1.2".to_string(),
        TLS1_3 => "TLS 1.3".to_string(),
        _ => format!("0x{v:04x}"),
    }
}

/// The IANA name of a cipher suite ("TLS_AES_128_GCM_SHA256").
pub fn cipher_name(id: u16) -> String {
    crate::evidence::wire::cipher_name(id)
}

/// OpenSSL's name of a cipher suite ("ECDHE-RSA-AES128-GCM-SHA256"), when
/// this host's OpenSSL knows it; the TLS 1.3 suites keep their IANA name.
pub fn openssl_cipher_name(id: u16) -> Option<String> {
    let suite = TlsCipherSuite::from_id(id)?;
    let name = openssl::ssl::cipher_name(suite.name);
    (name != "(NONE)").then(|| name.to_string())
}

/// TLS 1.3 suites (RFC 8446 B.4).
pub fn is_tls13_suite(id: u16) -> bool {
    (0x1301..=0x1305).contains(&id)
}

/// Signalling values that are not suites (RFC 5746, RFC 7507).
fn is_signalling(id: u16) -> bool {
    id == 0x00ff || id == 0x5600
}

/// How a suite stands today.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Strength {
    /// No encryption, no authentication, export-grade, RC4, DES, MD5.
    Insecure,
    /// 3DES (Sweet32) and other 64-bit block ciphers.
    Weak,
    Ok,
}

impl Strength {
    pub fn label(self) -> &'static str {
        match self {
            Strength::Insecure => "insecure",
            Strength::Weak => "weak",
            Strength::Ok => "ok",
        }
    }
}

/// The strength of a suite by its parameters (unknown ids count as ok: the
/// server picked it, so it is a suite some client meant to offer).
pub fn strength(id: u16) -> Strength {
    let Some(s) = TlsCipherSuite::from_id(id) else {
        return Strength::Ok;
    };
    let anonymous = matches!(s.au, tls_parser::TlsCipherAu::Null) && s.kx != TlsCipherKx::Psk;
    let insecure = s.enc == TlsCipherEnc::Null
        || anonymous
        || s.name.contains("EXPORT")
        || matches!(
            s.enc,
            TlsCipherEnc::Rc4 | TlsCipherEnc::Des | TlsCipherEnc::Rc2
        )
        || s.mac == TlsCipherMac::HmacMd5;
    if insecure {
        Strength::Insecure
    } else if matches!(s.enc, TlsCipherEnc::TripleDes | TlsCipherEnc::Idea) {
        Strength::Weak
    } else {
        Strength::Ok
    }
}

/// How a suite exchanges keys, as the simulation's policies ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyExchangeKind {
    /// TLS 1.3: always (EC)DHE, from supported_groups.
    Tls13,
    Ecdhe,
    Dhe,
    /// The client encrypts the premaster secret to the server's RSA key.
    Rsa,
    Other,
}

pub fn key_exchange_kind(id: u16) -> KeyExchangeKind {
    if is_tls13_suite(id) {
        return KeyExchangeKind::Tls13;
    }
    match TlsCipherSuite::from_id(id).map(|s| s.kx) {
        Some(TlsCipherKx::Ecdhe) => KeyExchangeKind::Ecdhe,
        Some(TlsCipherKx::Dhe) => KeyExchangeKind::Dhe,
        Some(TlsCipherKx::Rsa) => KeyExchangeKind::Rsa,
        _ => KeyExchangeKind::Other,
    }
}

/// Every suite the enumeration offers for `version`, strongest first (a
/// server that follows the client's order then picks what a modern client
/// would): the 1.3 suites for TLS 1.3, every other registered suite for the
/// older versions, including those this host's OpenSSL lacks.
pub fn suites_for(version: u16) -> Vec<u16> {
    if version == TLS1_3 {
        return (0x1301..=0x1305).collect();
    }
    let mut ids: Vec<u16> = tls_parser::CIPHERS
        .keys()
        .copied()
        .filter(|&id| !is_tls13_suite(id) && !is_signalling(id))
        .collect();
    ids.sort_by_key(|&id| (std::cmp::Reverse(rank(id)), id));
    ids
}

/// Offering order: forward secrecy, AEAD, key length.
fn rank(id: u16) -> (Strength, u8, u8, u16) {
    let Some(s) = TlsCipherSuite::from_id(id) else {
        return (Strength::Ok, 0, 0, 0);
    };
    let kx = match s.kx {
        TlsCipherKx::Ecdhe => 3,
        TlsCipherKx::Dhe => 2,
        TlsCipherKx::Rsa => 1,
        _ => 0,
    };
    let aead = u8::from(s.mac == TlsCipherMac::Aead);
    (strength(id), kx, aead, s.enc_size)
}

/// (code point, IANA name) of the supported groups the probe knows.
const GROUPS: [(u16, &str); 27] = [
    (19, "secp192r1"),
    (21, "secp224r1"),
    (22, "secp256k1"),
    (23, "secp256r1"),
    (24, "secp384r1"),
    (25, "secp521r1"),
    (26, "brainpoolP256r1"),
    (27, "brainpoolP384r1"),
    (28, "brainpoolP512r1"),
    (29, "x25519"),
    (30, "x448"),
    (31, "brainpoolP256r1tls13"),
    (32, "brainpoolP384r1tls13"),
    (33, "brainpoolP512r1tls13"),
    (41, "curveSM2"),
    (0x0100, "ffdhe2048"),
    (0x0101, "ffdhe3072"),
    (0x0102, "ffdhe4096"),
    (0x0103, "ffdhe6144"),
    (0x0104, "ffdhe8192"),
    (0x0200, "MLKEM512"),
    (0x0201, "MLKEM768"),
    (0x0202, "MLKEM1024"),
    (0x11eb, "SecP256r1MLKEM768"),
    (0x11ec, "X25519MLKEM768"),
    (0x11ed, "SecP384r1MLKEM1024"),
    (0x6399, "X25519Kyber768Draft00"),
];

/// IANA "TLS Supported Groups" name, or `0x....`.
pub fn group_name(id: u16) -> String {
    GROUPS
        .iter()
        .find(|(g, _)| *g == id)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("0x{id:04x}"))
}

/// Every group the enumeration offers, the common ones first.
pub fn all_groups() -> Vec<u16> {
    let common = [
        29, 23, 24, 25, 30, 0x11ec, 0x0100, 0x0101, 0x0102, 0x0103, 0x0104,
    ];
    let mut out: Vec<u16> = common.to_vec();
    out.extend(
        GROUPS
            .iter()
            .map(|(g, _)| *g)
            .filter(|g| !common.contains(g)),
    );
    out
}

/// Finite-field groups (RFC 7919): the number is the modulus size.
pub fn ffdhe_bits(group: u16) -> Option<u32> {
    match group {
        0x0100 => Some(2048),
        0x0101 => Some(3072),
        0x0102 => Some(4096),
        0x0103 => Some(6144),
        0x0104 => Some(8192),
        _ => None,
    }
}

/// IANA "TLS SignatureScheme" name, spelled as the wire facts spell it.
pub fn signature_scheme_name(id: u16) -> String {
    crate::evidence::wire::signature_scheme_name(id)
}

/// Every signature scheme the enumeration offers: a server must find one
/// for its key, or it refuses the hello for that reason instead of the one
/// being tested.
pub const ALL_SIGNATURE_SCHEMES: [u16; 29] = [
    0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x081a, 0x081b, 0x081c, 0x0809, 0x080a, 0x080b, 0x0804,
    0x0805, 0x0806, 0x0401, 0x0501, 0x0601, 0x0303, 0x0301, 0x0302, 0x0203, 0x0201, 0x0202, 0x0402,
    0x0502, 0x0602, 0x0101, 0x0103, 0x0708,
];

/// A TLS alert's name (RFC 8446 §6 and the registry); `None` when unknown.
pub fn alert_name(code: u8) -> Option<&'static str> {
    crate::evidence::wire::known_alert_name(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_registries() {
        assert_eq!(cipher_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(
            openssl_cipher_name(0xc02f).as_deref(),
            Some("ECDHE-RSA-AES128-GCM-SHA256")
        );
        assert_eq!(group_name(29), "x25519");
        assert_eq!(group_name(0x11ec), "X25519MLKEM768");
        assert_eq!(group_name(0x7777), "0x7777");
        assert_eq!(signature_scheme_name(0x0804), "rsa_pss_rsae_sha256");
        assert_eq!(signature_scheme_name(0x0303), "ecdsa_sha224");
        assert_eq!(version_name(TLS1_2), "TLS 1.2");
    }

    #[test]
    fn suites_are_classified_and_ordered() {
        assert_eq!(strength(0xc02f), Strength::Ok);
        assert_eq!(strength(0x000a), Strength::Weak); // RSA 3DES
        assert_eq!(strength(0x0005), Strength::Insecure); // RC4-SHA
        assert_eq!(strength(0x0018), Strength::Insecure); // ADH RC4 MD5
        assert_eq!(strength(0x003b), Strength::Insecure); // NULL SHA256
        assert_eq!(key_exchange_kind(0x009e), KeyExchangeKind::Dhe);
        assert_eq!(key_exchange_kind(0x1302), KeyExchangeKind::Tls13);
        assert_eq!(key_exchange_kind(0x002f), KeyExchangeKind::Rsa);
        let tls12 = suites_for(TLS1_2);
        assert!(tls12.len() > 200, "{}", tls12.len());
        assert!(!tls12.contains(&0x00ff) && !tls12.contains(&0x1301));
        // Forward-secret AEAD suites come before RC4.
        let pos = |id| tls12.iter().position(|&x| x == id).unwrap();
        assert!(pos(0xc02f) < pos(0x002f));
        assert!(pos(0x002f) < pos(0x0005));
        assert_eq!(suites_for(TLS1_3), [0x1301, 0x1302, 0x1303, 0x1304, 0x1305]);
        let groups = all_groups();
        assert_eq!(groups.len(), GROUPS.len());
        assert_eq!(groups[0], 29);
    }
}
