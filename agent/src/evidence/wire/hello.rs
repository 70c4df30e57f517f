//! ClientHello and ServerHello bodies, parsed with `tls-parser`.

use super::*;

pub(super) fn client_hello(body: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
    let Ok((_, ch)) = parse_tls_handshake_client_hello(body) else {
        sh.anomaly("client stream: malformed ClientHello".to_string());
        return;
    };
    // A second ClientHello (after a HelloRetryRequest) repeats the first.
    if sh.facts.client_hello.is_some() {
        return;
    }
    let mut facts = ClientHelloFacts {
        time: Some(time),
        legacy_version: version_name(ch.version.0),
        cipher_suites: ch
            .ciphers
            .iter()
            .filter(|c| !is_grease(c.0))
            .map(|c| cipher_name(c.0))
            .collect(),
        random: hex::encode(ch.random),
        ..ClientHelloFacts::default()
    };
    let mut sni = None;
    if let Some(ext) = ch.ext {
        match parse_tls_client_hello_extensions(ext) {
            Ok((rest, exts)) => {
                if !rest.is_empty() {
                    sh.anomaly(format!(
                        "client stream: {} bytes of ClientHello extensions could not be parsed",
                        rest.len()
                    ));
                }
                for e in exts {
                    match e {
                        TlsExtension::SNI(names) => {
                            sni = names
                                .iter()
                                .find(|(t, _)| *t == SNIType::HostName)
                                .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                        }
                        TlsExtension::SupportedVersions(v) => {
                            facts.supported_versions = v
                                .iter()
                                .filter(|v| !is_grease(v.0))
                                .map(|v| version_name(v.0))
                                .collect();
                        }
                        TlsExtension::ALPN(protos) => {
                            facts.alpn = protos
                                .iter()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect();
                        }
                        TlsExtension::EllipticCurves(groups) => {
                            facts.supported_groups = groups
                                .iter()
                                .filter(|g| !is_grease(g.0))
                                .map(|g| group_name(g.0))
                                .collect();
                        }
                        TlsExtension::SignatureAlgorithms(algs) => {
                            facts.signature_algorithms = algs
                                .iter()
                                .filter(|a| !is_grease(**a))
                                .map(|a| signature_scheme_name(*a))
                                .collect();
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => sh.anomaly("client stream: malformed ClientHello extensions".to_string()),
        }
    }
    sh.facts.offered_versions = if facts.supported_versions.is_empty() {
        vec![facts.legacy_version.clone()]
    } else {
        facts.supported_versions.clone()
    };
    sh.facts.sni = sni;
    sh.facts.client_hello = Some(facts);
}

pub(super) fn server_hello(body: &[u8], hrr: bool, time: DateTime<Utc>, sh: &mut Shared) {
    let Ok((_, shello)) = parse_tls_handshake_server_hello(body) else {
        sh.anomaly("server stream: malformed ServerHello".to_string());
        return;
    };
    let mut version = shello.version.0;
    let mut alpn = None;
    if let Some(ext) = shello.ext {
        match parse_tls_server_hello_extensions(ext) {
            Ok((rest, exts)) => {
                if !rest.is_empty() {
                    sh.anomaly(format!(
                        "server stream: {} bytes of ServerHello extensions could not be parsed",
                        rest.len()
                    ));
                }
                for e in exts {
                    match e {
                        TlsExtension::SupportedVersions(v) => {
                            if let Some(v) = v.first() {
                                version = v.0;
                            }
                        }
                        TlsExtension::ALPN(protos) => {
                            alpn = protos
                                .first()
                                .map(|p| String::from_utf8_lossy(p).into_owned());
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => sh.anomaly("server stream: malformed ServerHello extensions".to_string()),
        }
    }
    if version == TLS13 {
        sh.tls13 = true;
        // A HelloRetryRequest asks for another ClientHello; encryption
        // starts only after the real ServerHello.
        if !hrr {
            sh.server_hello_13 = true;
        }
    }
    sh.facts.negotiated_version = Some(version_name(version));
    sh.facts.server_hello = Some(ServerHelloFacts {
        time: Some(time),
        version: version_name(version),
        cipher_suite: cipher_name(shello.cipher.0),
        alpn,
        random: hex::encode(shello.random),
        hello_retry_request: hrr,
    });
}
