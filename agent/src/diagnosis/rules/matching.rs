//! Matching the wire's words against the certificates' and the servers':
//! TLS version names in their several spellings, and host names against
//! subjectAltNames the way OpenSSL checks them.

use crate::evidence::certificates::CertificateFact;

/// Which TLS versions a name stands for, as a comparable number
/// (0x0300 = SSL 3.0 … 0x0304 = TLS 1.3). Accepts the wire module's names
/// ("TLS 1.2") and the servers' spellings ("TLSv1.2", "TLSv1", "SSLv3").
pub fn version_number(name: &str) -> Option<u16> {
    let compact: String = name
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    let compact = compact.trim_start_matches(['+', '-']);
    match compact {
        "sslv3" | "ssl3.0" | "sslv3.0" => Some(0x0300),
        "tlsv1" | "tls1.0" | "tlsv1.0" | "tls1" => Some(0x0301),
        "tlsv1.1" | "tls1.1" => Some(0x0302),
        "tlsv1.2" | "tls1.2" => Some(0x0303),
        "tlsv1.3" | "tls1.3" => Some(0x0304),
        _ => None,
    }
}

/// People's name of a version number.
pub fn version_name(version: u16) -> &'static str {
    match version {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => "an unknown version",
    }
}

/// The versions a server setting enables, nginx (`TLSv1.2 TLSv1.3`) or
/// Apache (`all -SSLv3 -TLSv1 -TLSv1.1`, `+TLSv1.3`) style.
pub fn enabled_versions(tokens: &[String]) -> Vec<u16> {
    // OpenSSL 3 builds offer no SSL 3.0, so Apache's `all` means TLS 1.0-1.3.
    const ALL: [u16; 4] = [0x0301, 0x0302, 0x0303, 0x0304];
    let mut enabled: Vec<u16> = Vec::new();
    for token in tokens.iter().flat_map(|t| t.split_whitespace()) {
        let (remove, name) = match token.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, token.trim_start_matches('+')),
        };
        let versions: Vec<u16> = if name.eq_ignore_ascii_case("all") {
            ALL.to_vec()
        } else {
            version_number(name).into_iter().collect()
        };
        for v in versions {
            if remove {
                enabled.retain(|&e| e != v);
            } else if !enabled.contains(&v) {
                enabled.push(v);
            }
        }
    }
    enabled.sort_unstable();
    enabled
}

/// RFC 6125 name matching as OpenSSL's `X509_check_host` does it: exact
/// (case-insensitive) or a wildcard standing for exactly one left-most label.
pub fn name_matches(name: &str, pattern: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    if name == pattern {
        return true;
    }
    match pattern.strip_prefix("*.") {
        // A wildcard never covers a bare suffix with fewer than two labels
        // ("*.com"), nor more than one label of the name.
        Some(suffix) if suffix.contains('.') => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        _ => false,
    }
}

/// Does this certificate cover `name`? SANs first; the subject CN only when
/// there are no SANs, as OpenSSL and curl do.
pub fn certificate_covers(cert: &CertificateFact, name: &str) -> bool {
    if cert.sans.is_empty() {
        return cert
            .common_name
            .as_deref()
            .is_some_and(|cn| name_matches(name, cn));
    }
    cert.sans.iter().any(|san| name_matches(name, san))
}

/// The names a certificate answers to, for evidence sentences.
pub fn certificate_names(cert: &CertificateFact) -> String {
    if cert.sans.is_empty() {
        return format!("CN={}", cert.common_name.as_deref().unwrap_or("(none)"));
    }
    cert.sans.join(", ")
}
