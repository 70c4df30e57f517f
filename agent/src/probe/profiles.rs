//! The clients the probe simulates: each one's real ClientHello parameters
//! (versions, suites, groups, key shares, signature algorithms, in the
//! client's own order) and the policy it applies to what the server sends.
//!
//! Where the tables come from:
//! - OpenSSL 3.0, Java 17, Go 1.19 and curl with GnuTLS: captured from the
//!   real clients on Debian 12 (2026-11) — `openssl s_client` 3.0.22,
//!   OpenJDK 17.0.21 `SSLSocket`, a Go 1.19.8 `tls.Dial`, libcurl-gnutls
//!   7.88.1 with GnuTLS 3.7.9 — by reading their ClientHello with the
//!   agent's own wire parser. `tests/tests/probe_clients.rs` captures them
//!   again and compares them with these tables.
//! - OpenSSL 1.1.1: its source (ssl/t1_lib.c `eccurves_default` and
//!   `tls12_sigalgs` at security level 1; the default cipher list,
//!   "ALL:!COMPLEMENTOFDEFAULT:!eNULL", orders as 3.0's does, which
//!   `openssl ciphers -s 'DEFAULT:@SECLEVEL=1'` confirms on this host).
//! - Chrome 131+: its published ClientHello (JA3 cipher list
//!   4865-4866-4867-49195-49199-49196-49200-52393-52392-49171-49172-156-157-47-53,
//!   groups X25519MLKEM768, x25519, secp256r1, secp384r1; BoringSSL's
//!   `kVerifySignatureAlgorithms` without SHA-1, as Chrome configures it).
//!   No browser runs on this host, so this table is not re-checked.
//!
//! Policies are the clients' documented defaults: OpenSSL's security
//! levels (`SSL_CTX_set_security_level(3)`), the JDK's `java.security`
//! (`jdk.tls.disabledAlgorithms`, `jdk.certpath.disabledAlgorithms`), Go's
//! crypto/x509 (SHA-1 signatures refused since 1.18, no Common Name
//! fallback since 1.15), GnuTLS's NORMAL priority, Chrome's root program
//! (certificate transparency, AIA fetching). The end-to-end tests check
//! the installed clients' verdicts against the simulation's.

use super::iana::{TLS1_0, TLS1_1, TLS1_2, TLS1_3};

/// How a client checks the leaf's keyUsage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUsagePolicy {
    /// Not checked.
    Ignored,
    /// As OpenSSL's SSL-server purpose: a keyUsage that allows none of
    /// digitalSignature, keyEncipherment, keyAgreement is refused, and an
    /// EC key must allow digitalSignature.
    Purpose,
    /// The key exchange decides: digitalSignature for (EC)DHE and TLS 1.3,
    /// keyEncipherment for RSA key transport (JSSE, GnuTLS, Chrome).
    Strict,
}

/// Whether a client accepts SHA-1 signatures on certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha1Policy {
    Accepted,
    Refused,
    /// Refused in chains that end in a publicly trusted root, accepted in
    /// private PKIs (the JDK's "SHA1 jdkCA & usage TLSServer").
    RefusedUnderPublicRoots,
}

/// What a client refuses in what the server sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Smallest RSA/DSA key accepted in a certificate.
    pub min_rsa_bits: u32,
    /// Smallest EC key accepted in a certificate.
    pub min_ec_bits: u32,
    /// Smallest finite-field DH modulus accepted (0: never offers DHE).
    pub min_dh_bits: u32,
    /// SHA-1 signatures on certificates (other than the root's).
    pub sha1_certificates: Sha1Policy,
    /// Can complete a TLS 1.0/1.1 handshake it negotiated (OpenSSL 3 at
    /// security level 1 or more cannot: MD5/SHA-1 handshake signatures).
    pub legacy_versions: bool,
    /// Checks the subject's Common Name when the certificate has no DNS
    /// subjectAltName.
    pub cn_fallback: bool,
    pub key_usage: KeyUsagePolicy,
    /// Refuses a leaf whose extendedKeyUsage lacks serverAuth. curl's
    /// GnuTLS backend verifies without a purpose, so it does not.
    pub server_auth_eku: bool,
    /// Fetches a missing intermediate from the leaf's AIA caIssuers URL.
    pub fetches_intermediates: bool,
    /// Refuses publicly trusted certificates without SCTs.
    pub requires_sct_for_public: bool,
}

/// One simulated client.
#[derive(Clone, Copy, Debug)]
pub struct ClientProfile {
    /// Stable id ("openssl-3.0").
    pub id: &'static str,
    /// What people call it ("OpenSSL 3.0 (security level 2)").
    pub name: &'static str,
    /// Versions, most preferred first (TLS 1.3 present: supported_versions).
    pub versions: &'static [u16],
    pub cipher_suites: &'static [u16],
    pub groups: &'static [u16],
    pub key_shares: &'static [u16],
    pub signature_algorithms: &'static [u16],
    pub signature_algorithms_cert: &'static [u16],
    pub alpn: &'static [&'static str],
    pub status_request: bool,
    pub sct: bool,
    pub policy: Policy,
}

impl ClientProfile {
    /// The profile's hello for `sni`.
    pub fn hello<'a>(&'a self, sni: Option<&'a str>) -> super::hello::Hello<'a> {
        super::hello::Hello {
            versions: self.versions,
            cipher_suites: self.cipher_suites,
            groups: self.groups,
            key_shares: self.key_shares,
            signature_algorithms: self.signature_algorithms,
            signature_algorithms_cert: self.signature_algorithms_cert,
            sni,
            alpn: self.alpn,
            status_request: self.status_request,
            sct: self.sct,
        }
    }
}

/// OpenSSL's default TLS 1.2 list and TLS 1.3 suites (identical in 1.1.1
/// and 3.0), with the renegotiation SCSV it appends.
const OPENSSL_SUITES: [u16; 31] = [
    4866, 4867, 4865, 49196, 49200, 159, 52393, 52392, 52394, 49195, 49199, 158, 49188, 49192, 107,
    49187, 49191, 103, 49162, 49172, 57, 49161, 49171, 51, 157, 156, 61, 60, 53, 47, 255,
];

/// Captured: `openssl s_client` 3.0.22, Debian 12 (security level 2).
pub const OPENSSL_3: ClientProfile = ClientProfile {
    id: "openssl-3.0",
    name: "OpenSSL 3.0 (security level 2)",
    versions: &[TLS1_3, TLS1_2, TLS1_1, TLS1_0],
    cipher_suites: &OPENSSL_SUITES,
    groups: &[29, 23, 30, 25, 24, 256, 257, 258, 259, 260],
    key_shares: &[29],
    signature_algorithms: &[
        1027, 1283, 1539, 2055, 2056, 2057, 2058, 2059, 2052, 2053, 2054, 1025, 1281, 1537, 771,
        769, 770, 1026, 1282, 1538,
    ],
    signature_algorithms_cert: &[],
    alpn: &[],
    status_request: false,
    sct: false,
    policy: Policy {
        min_rsa_bits: 2048,
        min_ec_bits: 224,
        min_dh_bits: 2048,
        sha1_certificates: Sha1Policy::Refused,
        legacy_versions: false,
        cn_fallback: true,
        key_usage: KeyUsagePolicy::Purpose,
        server_auth_eku: true,
        fetches_intermediates: false,
        requires_sct_for_public: false,
    },
};

/// From OpenSSL 1.1.1's source: upstream defaults, security level 1.
pub const OPENSSL_1_1_1: ClientProfile = ClientProfile {
    id: "openssl-1.1.1",
    name: "OpenSSL 1.1.1 (security level 1)",
    versions: &[TLS1_3, TLS1_2, TLS1_1, TLS1_0],
    cipher_suites: &OPENSSL_SUITES,
    groups: &[29, 23, 30, 25, 24],
    key_shares: &[29],
    signature_algorithms: &[
        0x0403, 0x0503, 0x0603, 0x0807, 0x0808, 0x0809, 0x080a, 0x080b, 0x0804, 0x0805, 0x0806,
        0x0401, 0x0501, 0x0601, 0x0303, 0x0203, 0x0301, 0x0201, 0x0302, 0x0202, 0x0402, 0x0502,
        0x0602,
    ],
    signature_algorithms_cert: &[],
    alpn: &[],
    status_request: false,
    sct: false,
    policy: Policy {
        min_rsa_bits: 1024,
        min_ec_bits: 160,
        min_dh_bits: 1024,
        sha1_certificates: Sha1Policy::Accepted,
        legacy_versions: true,
        cn_fallback: true,
        key_usage: KeyUsagePolicy::Purpose,
        server_auth_eku: true,
        fetches_intermediates: false,
        requires_sct_for_public: false,
    },
};

/// Captured: OpenJDK 17.0.21 `SSLSocket` with default settings.
pub const JAVA_17: ClientProfile = ClientProfile {
    id: "java-17",
    name: "Java 17 (JSSE)",
    versions: &[TLS1_3, TLS1_2],
    cipher_suites: &[
        4866, 4865, 4867, 49196, 49195, 52393, 49200, 52392, 49199, 159, 52394, 163, 158, 162,
        49188, 49192, 49187, 49191, 107, 106, 103, 64, 49162, 49172, 49161, 49171, 57, 56, 51, 50,
        255,
    ],
    groups: &[29, 23, 24, 25, 30, 256, 257, 258, 259, 260],
    key_shares: &[29, 23],
    signature_algorithms: &[
        1027, 1283, 1539, 2055, 2056, 2052, 2053, 2054, 2057, 2058, 2059, 1025, 1281, 1537, 1026,
        771, 769, 770,
    ],
    signature_algorithms_cert: &[
        1027, 1283, 1539, 2055, 2056, 2052, 2053, 2054, 2057, 2058, 2059, 1025, 1281, 1537, 1026,
        771, 769, 770, 515, 513, 514,
    ],
    alpn: &[],
    status_request: true,
    sct: false,
    policy: Policy {
        min_rsa_bits: 1024,
        min_ec_bits: 224,
        min_dh_bits: 1024,
        sha1_certificates: Sha1Policy::RefusedUnderPublicRoots,
        legacy_versions: false,
        cn_fallback: true,
        key_usage: KeyUsagePolicy::Strict,
        server_auth_eku: true,
        fetches_intermediates: false,
        requires_sct_for_public: false,
    },
};

/// Captured: a Go 1.19.8 `tls.Dial` with a default `tls.Config`.
pub const GO_1_19: ClientProfile = ClientProfile {
    id: "go-1.19",
    name: "Go 1.19 (crypto/tls)",
    versions: &[TLS1_3, TLS1_2],
    cipher_suites: &[
        49195, 49199, 49196, 49200, 52393, 52392, 49161, 49171, 49162, 49172, 156, 157, 47, 53,
        49170, 10, 4865, 4866, 4867,
    ],
    groups: &[29, 23, 24, 25],
    key_shares: &[29],
    signature_algorithms: &[
        2052, 1027, 2055, 2053, 2054, 1025, 1281, 1537, 1283, 1539, 513, 515,
    ],
    signature_algorithms_cert: &[],
    alpn: &[],
    status_request: true,
    sct: true,
    policy: Policy {
        min_rsa_bits: 0,
        min_ec_bits: 0,
        min_dh_bits: 0,
        sha1_certificates: Sha1Policy::Refused,
        legacy_versions: false,
        cn_fallback: false,
        key_usage: KeyUsagePolicy::Ignored,
        server_auth_eku: true,
        fetches_intermediates: false,
        requires_sct_for_public: false,
    },
};

/// Captured: libcurl-gnutls 7.88.1 (GnuTLS 3.7.9, NORMAL priority).
pub const CURL_GNUTLS: ClientProfile = ClientProfile {
    id: "curl-gnutls",
    name: "curl with GnuTLS 3.7",
    versions: &[TLS1_3, TLS1_2, TLS1_1, TLS1_0],
    cipher_suites: &[
        4866, 4867, 4865, 4868, 49196, 52393, 49325, 49162, 49195, 49324, 49161, 49200, 52392,
        49172, 49199, 49171, 157, 49309, 53, 156, 49308, 47, 159, 52394, 49311, 57, 158, 49310, 51,
    ],
    groups: &[23, 24, 25, 29, 30, 256, 257, 258, 259, 260],
    key_shares: &[23, 29],
    signature_algorithms: &[
        1025, 2057, 2052, 1027, 2055, 1281, 2058, 2053, 1283, 2056, 1537, 2059, 2054, 1539, 513,
        515,
    ],
    signature_algorithms_cert: &[],
    alpn: &["h2", "http/1.1"],
    status_request: true,
    sct: false,
    policy: Policy {
        min_rsa_bits: 1024,
        min_ec_bits: 224,
        min_dh_bits: 1024,
        sha1_certificates: Sha1Policy::Refused,
        legacy_versions: true,
        cn_fallback: true,
        key_usage: KeyUsagePolicy::Strict,
        server_auth_eku: false,
        fetches_intermediates: false,
        requires_sct_for_public: false,
    },
};

/// Published: Chrome 131+ (BoringSSL).
pub const CHROME: ClientProfile = ClientProfile {
    id: "chrome",
    name: "Chrome 131+",
    versions: &[TLS1_3, TLS1_2],
    cipher_suites: &[
        4865, 4866, 4867, 49195, 49199, 49196, 49200, 52393, 52392, 49171, 49172, 156, 157, 47, 53,
    ],
    groups: &[0x11ec, 29, 23, 24],
    key_shares: &[0x11ec, 29],
    signature_algorithms: &[
        0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
    ],
    signature_algorithms_cert: &[],
    alpn: &["h2", "http/1.1"],
    status_request: true,
    sct: true,
    policy: Policy {
        min_rsa_bits: 1024,
        min_ec_bits: 256,
        min_dh_bits: 0,
        sha1_certificates: Sha1Policy::Refused,
        legacy_versions: false,
        cn_fallback: false,
        key_usage: KeyUsagePolicy::Strict,
        server_auth_eku: true,
        fetches_intermediates: true,
        requires_sct_for_public: true,
    },
};

/// Every simulated client, in the report's order.
pub const PROFILES: [&ClientProfile; 6] = [
    &OPENSSL_3,
    &OPENSSL_1_1_1,
    &JAVA_17,
    &GO_1_19,
    &CURL_GNUTLS,
    &CHROME,
];

/// The profile with this id.
pub fn profile(id: &str) -> Option<&'static ClientProfile> {
    PROFILES.iter().copied().find(|p| p.id == id)
}
