//! Unit tests of the OTLP sink: no network, no process environment.

use chrono::TimeZone;

use chrono::{DateTime, Utc};
use opentelemetry::{Array, KeyValue, Value};

use crate::outcome::{Endpoint, HandshakeOutcome, Role};

use super::*;
use crate::diagnosis::{Alternative, Cause, Confidence, Diagnosis, Evidence, Source};
use crate::evidence::certificates::CertificateFact;
use crate::evidence::openssl::{OpensslErrorFact, OpensslFacts, SslCallFact, VerifyResultFact};
use crate::evidence::sockets::{SocketFacts, TcpStateFact};
use crate::evidence::wire::{AlertFact, ClientHelloFacts, MessageFact, ServerHelloFacts, TlsFacts};
use crate::outcome::HandshakeResult;
use crate::outcome::{K8sPod, sample_failure};

pub(super) const RANDOM: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

pub(super) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

pub(super) fn ms(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(n)
}

/// curl in a container fails against a server that leaves out its
/// intermediate: every kind of fact present.
#[allow(
    clippy::too_many_lines,
    reason = "a fixture: one outcome with every kind of fact"
)]
pub(super) fn chain_incomplete_failure() -> HandshakeOutcome {
    let diagnosis = Diagnosis::new(
        Cause::ChainIncomplete,
        Confidence::High,
        "api.example.com:443 sends its leaf certificate without the intermediate",
    )
    .evidence(Evidence::new(
        Source::Wire,
        "server sent 1 certificate: CN=api.example.com issued by CN=Example Intermediate CA",
    ))
    .evidence(Evidence::new(
        Source::Openssl,
        "verify result 20: unable to get local issuer certificate",
    ))
    .evidence(
        Evidence::new(Source::Host, "ssl_certificate points at the leaf only")
            .at("/etc/nginx/sites-enabled/api.conf:12"),
    )
    .fix("Serve the full chain: ssl_certificate /etc/ssl/api-fullchain.pem")
    .fix_at(Some("/etc/nginx/sites-enabled/api.conf:12".into()));
    let mut diagnosis = diagnosis;
    diagnosis.alternatives.push(Alternative {
        cause: Cause::UntrustedRoot,
        why: "the issuer may be a private CA missing from the trust store".into(),
    });
    HandshakeOutcome {
        id: "host1-000042".into(),
        time: t0(),
        end_time: ms(7),
        role: Role::Client,
        cause: Cause::ChainIncomplete,
        client: Endpoint {
            ip: Some("10.1.2.3".parse().unwrap()),
            port: Some(51234),
            pid: Some(4242),
            comm: Some("curl".into()),
            exe: Some("/usr/bin/curl".into()),
            container_id: Some("3f4e5d6c7b8a".into()),
            container_runtime: Some("containerd".into()),
            k8s: Some(K8sPod {
                pod: Some("curl-7d9f".into()),
                namespace: Some("shop".into()),
                pod_uid: Some("5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f".into()),
                container: Some("curl".into()),
            }),
            cgroup: Some("/kubepods/besteffort/pod1234/3f4e5d6c7b8a".into()),
        },
        server: Endpoint {
            ip: Some("::ffff:10.0.0.5".parse().unwrap()),
            port: Some(443),
            ..Endpoint::default()
        },
        tls: TlsFacts {
            sni: Some("api.example.com".into()),
            offered_versions: vec!["TLS 1.3".into(), "TLS 1.2".into()],
            negotiated_version: Some("TLS 1.2".into()),
            alert: Some(AlertFact {
                time: Some(ms(5)),
                sender: Role::Client,
                level: "fatal".into(),
                description: "unknown_ca".into(),
                code: 48,
            }),
            client_hello: Some(ClientHelloFacts {
                time: Some(ms(1)),
                legacy_version: "TLS 1.2".into(),
                supported_versions: vec!["TLS 1.3".into(), "TLS 1.2".into()],
                cipher_suites: vec![
                    "TLS_AES_128_GCM_SHA256".into(),
                    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                ],
                alpn: vec!["h2".into(), "http/1.1".into()],
                supported_groups: vec!["x25519".into(), "secp256r1".into()],
                signature_algorithms: vec!["rsa_pss_rsae_sha256".into()],
                random: RANDOM.into(),
            }),
            server_hello: Some(ServerHelloFacts {
                time: Some(ms(3)),
                version: "TLS 1.2".into(),
                cipher_suite: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                alpn: Some("h2".into()),
                random: "11".repeat(32),
                hello_retry_request: false,
            }),
            server_certificates: vec![CertificateFact {
                subject: "CN=api.example.com".into(),
                issuer: "CN=Example Intermediate CA".into(),
                common_name: Some("api.example.com".into()),
                sans: vec!["api.example.com".into(), "www.example.com".into()],
                serial: "01:02".into(),
                not_before: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
                not_after: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
                self_signed: false,
                is_ca: false,
                key_type: "RSA".into(),
                key_bits: Some(2048),
                signature_algorithm: "sha256WithRSAEncryption".into(),
                sha256: "ab".repeat(32),
            }],
            server_chain_der: vec![],
            certificate_requested: false,
            client_certificate_count: None,
            alerts: vec![AlertFact {
                time: Some(ms(5)),
                sender: Role::Client,
                level: "fatal".into(),
                description: "unknown_ca".into(),
                code: 48,
            }],
            messages: vec![
                MessageFact {
                    time: Some(ms(1)),
                    sender: Role::Client,
                    message: "ClientHello".into(),
                },
                MessageFact {
                    time: Some(ms(3)),
                    sender: Role::Server,
                    message: "ServerHello".into(),
                },
                MessageFact {
                    time: Some(ms(3)),
                    sender: Role::Server,
                    message: "Certificate".into(),
                },
                MessageFact {
                    time: None,
                    sender: Role::Server,
                    message: "ServerHelloDone".into(),
                },
            ],
            encrypted_records: vec![],
            non_tls: None,
            anomalies: vec![],
        },
        openssl: OpensslFacts {
            calls: vec![SslCallFact {
                time: ms(6),
                function: "SSL_connect".into(),
                ret: -1,
            }],
            errors: vec![OpensslErrorFact {
                time: ms(5),
                lib: 20,
                reason: 134,
                text: "certificate verify failed".into(),
                function: Some("tls_post_process_server_certificate".into()),
                line: Some(2091),
            }],
            verify_result: Some(VerifyResultFact {
                code: 20,
                text: "unable to get local issuer certificate".into(),
            }),
            reasons: vec!["certificate verify failed".into()],
        },
        socket: SocketFacts {
            connect_errno: None,
            connect_error: None,
            tcp_states: vec![
                TcpStateFact {
                    time: t0() + chrono::Duration::microseconds(500),
                    from: "SYN_SENT".into(),
                    to: "ESTABLISHED".into(),
                },
                TcpStateFact {
                    time: ms(7),
                    from: "ESTABLISHED".into(),
                    to: "FIN_WAIT1".into(),
                },
            ],
            closed_by: Some("local".into()),
            reset_by_peer: false,
            stalled: false,
            bytes_sent: 517,
            bytes_received: 2900,
        },
        diagnosis,
        host: Some("host1".into()),
        ..sample_failure()
    }
}

pub(super) fn success(role: Role, random: Option<String>) -> HandshakeOutcome {
    HandshakeOutcome {
        id: "s".into(),
        time: t0(),
        end_time: ms(2),
        role,
        result: HandshakeResult::Success,
        client: Endpoint::default(),
        server: Endpoint::default(),
        tls: TlsFacts {
            client_hello: random.map(|random| ClientHelloFacts {
                random,
                ..ClientHelloFacts::default()
            }),
            ..TlsFacts::default()
        },
        ..sample_failure()
    }
}

pub(super) fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

pub(super) fn s(attrs: &[KeyValue], key: &str) -> String {
    match get(attrs, key) {
        Some(Value::String(v)) => v.as_str().to_string(),
        other => panic!("{key}: expected a string, got {other:?}"),
    }
}

pub(super) fn i(attrs: &[KeyValue], key: &str) -> i64 {
    match get(attrs, key) {
        Some(Value::I64(v)) => *v,
        other => panic!("{key}: expected an int, got {other:?}"),
    }
}

pub(super) fn strs(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match get(attrs, key) {
        Some(Value::Array(Array::String(v))) => v.iter().map(|x| x.as_str().to_string()).collect(),
        other => panic!("{key}: expected a string array, got {other:?}"),
    }
}

mod config;
mod ids;
mod span;
mod worker;
