//! Cipher suite and key-exchange enumeration, per protocol version, with
//! hand-made ClientHellos (see `hello`): every registered suite is offered,
//! the one the server picks is noted and taken out, until the server
//! refuses — so a server that honours its own order reveals it, and one
//! that accepts a single suite shows exactly that suite. One more hello
//! with two accepted suites in swapped order tells whose order counts.
//! Groups are enumerated the same way: TLS 1.3 by HelloRetryRequests
//! (no key share offered, so the server names its group without signing
//! anything), TLS 1.2 by the curve of ServerKeyExchange with only ECDHE
//! suites offered. DH sizes come from the DHE suites' ServerKeyExchange.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::Budget;
use super::hello::{self, Flight, Hello, KeyExchange};
use super::iana::{self, KeyExchangeKind, TLS1_0, TLS1_1, TLS1_2, TLS1_3};

/// Hellos one version's suite enumeration sends at most (a server that
/// accepts more than this many suites is reported as partial).
const MAX_SUITE_ROUNDS: usize = 80;
/// Hellos one group enumeration sends at most.
const MAX_GROUP_ROUNDS: usize = 24;

/// The versions enumerated, oldest first.
pub const VERSIONS: [u16; 4] = [TLS1_0, TLS1_1, TLS1_2, TLS1_3];

/// How far an enumeration got.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EnumerationStatus {
    /// Every suite the server accepts for this version is listed.
    Complete,
    /// Stopped early (timeout, cap, an odd answer): `detail` says why.
    Partial,
    /// The server does not speak this version.
    Rejected,
    /// Not tried (quick mode, total timeout, nothing to talk to).
    NotTested,
}

impl EnumerationStatus {
    pub fn label(self) -> &'static str {
        match self {
            EnumerationStatus::Complete => "complete",
            EnumerationStatus::Partial => "partial",
            EnumerationStatus::Rejected => "rejected",
            EnumerationStatus::NotTested => "not tested",
        }
    }
}

/// One suite the server accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptedSuite {
    /// Its code point (e.g. 49199 = 0xc02f).
    pub id: u16,
    /// IANA name ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256").
    pub name: String,
    /// OpenSSL's name, when this host's OpenSSL knows the suite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openssl_name: Option<String>,
    /// The key exchange the server used with it: a group ("x25519"), "DH
    /// 2048 bits", "RSA key transport".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange: Option<String>,
    /// "ok", "weak" (3DES), "insecure" (NULL, anonymous, export, RC4, DES, MD5).
    pub strength: String,
}

/// What one version's enumeration found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSuites {
    /// "TLS 1.0" … "TLS 1.3".
    pub version: String,
    pub status: EnumerationStatus,
    /// The server picks by its own order (true) or the client's (false);
    /// absent with fewer than two suites.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_preference: Option<bool>,
    /// Accepted suites, in the order the server picked them (its preference
    /// order when `server_preference` is true).
    pub suites: Vec<AcceptedSuite>,
    /// Key-exchange groups it accepts with this version (TLS 1.2: for
    /// ECDHE suites; TLS 1.3: all), in the order it picked them; empty when
    /// not enumerated.
    pub groups: Vec<String>,
    /// The smallest finite-field DH modulus it used, in bits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dh_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl VersionSuites {
    pub fn not_tested(version: u16, why: &str) -> VersionSuites {
        VersionSuites {
            version: iana::version_name(version),
            status: EnumerationStatus::NotTested,
            server_preference: None,
            suites: Vec::new(),
            groups: Vec::new(),
            dh_bits: None,
            detail: Some(why.to_string()),
        }
    }

    pub fn ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.suites.iter().map(|s| s.id)
    }
}

/// The offer shared by every enumeration hello: all groups, all signature
/// schemes, no key share.
fn offer<'a>(
    versions: &'a [u16],
    suites: &'a [u16],
    groups: &'a [u16],
    sni: Option<&'a str>,
) -> Hello<'a> {
    Hello {
        versions,
        cipher_suites: suites,
        groups,
        signature_algorithms: &iana::ALL_SIGNATURE_SCHEMES,
        sni,
        ..Hello::default()
    }
}

/// Why a round ended the enumeration, when the server did not simply
/// refuse: `None` for a refusal (nothing more is accepted).
fn stop_reason(flight: &Flight) -> Option<String> {
    if flight.timed_out {
        return Some("a hello went unanswered before the step timeout".to_string());
    }
    if flight.not_tls {
        return Some("the server answered with something that is not TLS".to_string());
    }
    flight
        .error
        .clone()
        .filter(|e| e.starts_with("TCP connect"))
}

/// Enumerates the suites the server accepts for `version`.
pub fn enumerate_version(
    addr: SocketAddr,
    sni: Option<&str>,
    version: u16,
    budget: &Budget,
) -> VersionSuites {
    let mut result = VersionSuites::not_tested(version, "");
    result.detail = None;
    result.status = EnumerationStatus::Complete;
    let versions = [version];
    let groups = iana::all_groups();
    let mut remaining = iana::suites_for(version);
    let mut order: Vec<u16> = Vec::new();
    for round in 0.. {
        if round == MAX_SUITE_ROUNDS {
            result.status = EnumerationStatus::Partial;
            result.detail = Some(format!("stopped after {MAX_SUITE_ROUNDS} accepted suites"));
            break;
        }
        let Some(deadline) = budget.step_deadline() else {
            result.status = EnumerationStatus::Partial;
            result.detail = Some("the total timeout was reached".to_string());
            break;
        };
        let flight = hello::exchange(addr, &offer(&versions, &remaining, &groups, sni), deadline);
        let Some(sh) = &flight.hello else {
            if let Some(why) = stop_reason(&flight) {
                result.status = EnumerationStatus::Partial;
                result.detail = Some(why);
            } else if order.is_empty() {
                result.status = EnumerationStatus::Rejected;
                result.detail = Some(flight.refusal());
            }
            break;
        };
        if sh.version != version {
            if order.is_empty() {
                result.status = EnumerationStatus::Rejected;
                result.detail = Some(format!(
                    "the server answered with {}",
                    iana::version_name(sh.version)
                ));
            } else {
                result.status = EnumerationStatus::Partial;
                result.detail = Some(format!(
                    "the server switched to {}",
                    iana::version_name(sh.version)
                ));
            }
            break;
        }
        let Some(pos) = remaining.iter().position(|&s| s == sh.cipher) else {
            result.status = EnumerationStatus::Partial;
            result.detail = Some(format!(
                "the server picked {}, which was not offered",
                iana::cipher_name(sh.cipher)
            ));
            break;
        };
        remaining.remove(pos);
        order.push(sh.cipher);
        let kx = match (sh.group, flight.key_exchange) {
            (Some(g), _) => Some(KeyExchange::Group(g)),
            (None, k) => k,
        };
        if let Some(bits) = kx.and_then(KeyExchange::dh_bits)
            && iana::key_exchange_kind(sh.cipher) == KeyExchangeKind::Dhe
        {
            result.dh_bits = Some(result.dh_bits.map_or(bits, |b| b.min(bits)));
        }
        result.suites.push(AcceptedSuite {
            id: sh.cipher,
            name: iana::cipher_name(sh.cipher),
            openssl_name: iana::openssl_cipher_name(sh.cipher),
            key_exchange: kx.map(KeyExchange::label),
            strength: iana::strength(sh.cipher).label().to_string(),
        });
    }
    if let [first, .., last] = order[..]
        && let Some(deadline) = budget.step_deadline()
    {
        let swapped = [last, first];
        let flight = hello::exchange(addr, &offer(&versions, &swapped, &groups, sni), deadline);
        result.server_preference = match flight.hello.map(|h| h.cipher) {
            Some(c) if c == first => Some(true),
            Some(c) if c == last => Some(false),
            _ => None,
        };
    }
    result
}

/// Enumerates the key-exchange groups the server accepts with `version`
/// (TLS 1.2 or 1.3), in the order it picks them.
///
/// In TLS 1.2 an ECDSA certificate's own curve must be among the client's
/// groups or the server cannot use the certificate at all (RFC 4492):
/// `certificate_curve` stays in every offer, last, and the enumeration
/// ends once the server falls back to it.
pub fn enumerate_groups(
    addr: SocketAddr,
    sni: Option<&str>,
    version: u16,
    certificate_curve: Option<u16>,
    budget: &Budget,
) -> (Vec<u16>, Option<String>) {
    let versions = [version];
    let suites: Vec<u16> = iana::suites_for(version)
        .into_iter()
        .filter(|&s| version == TLS1_3 || iana::key_exchange_kind(s) == KeyExchangeKind::Ecdhe)
        .collect();
    let mut remaining = iana::all_groups();
    if version == TLS1_2 {
        // Finite-field and post-quantum groups are TLS 1.3 key exchanges.
        remaining.retain(|&g| iana::ffdhe_bits(g).is_none() && g < 0x0200);
    }
    let keep = certificate_curve.filter(|_| version == TLS1_2);
    let mut found = Vec::new();
    for _ in 0..MAX_GROUP_ROUNDS {
        let Some(deadline) = budget.step_deadline() else {
            return (found, Some("the total timeout was reached".to_string()));
        };
        let mut offered = remaining.clone();
        if let Some(curve) = keep.filter(|c| !offered.contains(c)) {
            offered.push(curve);
        }
        let flight = hello::exchange(addr, &offer(&versions, &suites, &offered, sni), deadline);
        let group = match (&flight.hello, flight.key_exchange) {
            (Some(h), _) if h.version == TLS1_3 && version == TLS1_3 => h.group,
            (Some(h), Some(KeyExchange::Group(g))) if h.version == version => Some(g),
            _ => None,
        };
        let Some(group) = group.filter(|g| remaining.contains(g)) else {
            return (found, stop_reason(&flight));
        };
        remaining.retain(|&g| g != group);
        found.push(group);
    }
    (
        found,
        Some(format!("stopped after {MAX_GROUP_ROUNDS} groups")),
    )
}

/// Adds a group enumeration to its version's entry.
pub fn attach_groups(entries: &mut [VersionSuites], version: u16, groups: &[u16]) {
    let name = iana::version_name(version);
    if let Some(v) = entries.iter_mut().find(|v| v.version == name) {
        v.groups = groups.iter().map(|&g| iana::group_name(g)).collect();
        for bits in groups.iter().filter_map(|&g| iana::ffdhe_bits(g)) {
            v.dh_bits = Some(v.dh_bits.map_or(bits, |b| b.min(bits)));
        }
    }
}
