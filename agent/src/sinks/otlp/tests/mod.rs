//! Unit tests of the OTLP sink: no network, no process environment.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;

use chrono::TimeZone;
use clap::Parser;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{Sampler, SamplingDecision, ShouldSample};

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

use crate::outcome::{Endpoint, HandshakeOutcome, Role};

use super::*;
use crate::diagnosis::{Alternative, Cause, Confidence, Diagnosis, Evidence, Source};
use crate::evidence::certificates::CertificateFact;
use crate::evidence::openssl::{OpensslErrorFact, OpensslFacts, SslCallFact, VerifyResultFact};
use crate::evidence::sockets::{SocketFacts, TcpStateFact};
use crate::evidence::wire::{
    AlertFact, ClientHelloFacts, EncryptedRecordFact, MessageFact, ServerHelloFacts, TlsFacts,
};
use crate::outcome::HandshakeResult;
use crate::outcome::{K8sPod, sample_failure};

const RANDOM: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
}

fn ms(n: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::milliseconds(n)
}

/// curl in a container fails against a server that leaves out its
/// intermediate: every kind of fact present.
fn chain_incomplete_failure() -> HandshakeOutcome {
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

fn success(role: Role, random: Option<String>) -> HandshakeOutcome {
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

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a Value> {
    attrs
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn s(attrs: &[KeyValue], key: &str) -> String {
    match get(attrs, key) {
        Some(Value::String(v)) => v.as_str().to_string(),
        other => panic!("{key}: expected a string, got {other:?}"),
    }
}

fn i(attrs: &[KeyValue], key: &str) -> i64 {
    match get(attrs, key) {
        Some(Value::I64(v)) => *v,
        other => panic!("{key}: expected an int, got {other:?}"),
    }
}

fn strs(attrs: &[KeyValue], key: &str) -> Vec<String> {
    match get(attrs, key) {
        Some(Value::Array(Array::String(v))) => v.iter().map(|x| x.as_str().to_string()).collect(),
        other => panic!("{key}: expected a string array, got {other:?}"),
    }
}

// --- ids and sampling ------------------------------------------------------

#[test]
fn ids_follow_the_documented_scheme() {
    // Expected values computed independently (Python hashlib).
    let client = SpanIds::from_client_random(RANDOM, Role::Client).unwrap();
    let server = SpanIds::from_client_random(RANDOM, Role::Server).unwrap();
    assert_eq!(
        client.trace_id.to_string(),
        "630dcd2966c4336691125448bbb25b4f"
    );
    assert_eq!(client.span_id.to_string(), "4dd31e9f9f156207");
    assert_eq!(client.parent_span_id, None);
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(server.span_id.to_string(), "03a4d040fde1aaae");
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert!(client.derived && server.derived);
    // Hex case and surrounding blanks do not matter.
    let upper = SpanIds::from_client_random(&format!(" {} ", RANDOM.to_uppercase()), Role::Client);
    assert_eq!(upper, Some(client));
}

#[test]
fn ids_without_a_usable_random_are_random() {
    assert_eq!(SpanIds::from_client_random("", Role::Client), None);
    assert_eq!(SpanIds::from_client_random("0011", Role::Client), None);
    assert_eq!(
        SpanIds::from_client_random(&"zz".repeat(32), Role::Client),
        None
    );
    let a = SpanIds::for_outcome(&success(Role::Server, None));
    let b = SpanIds::for_outcome(&success(Role::Server, None));
    assert!(!a.derived);
    assert_eq!(a.parent_span_id, None);
    assert_ne!(a.trace_id, b.trace_id);
    assert_ne!(a.trace_id, TraceId::INVALID);
    assert_ne!(a.span_id, SpanId::INVALID);
}

#[test]
fn sampling_is_deterministic_and_matches_the_sdk_sampler() {
    for ratio in [0.0, 0.01, 0.25, 0.5, 0.9, 1.0] {
        let sdk = Sampler::TraceIdRatioBased(ratio);
        let mut kept = 0;
        for n in 0..4000u32 {
            let random = format!("{:064x}", u128::from(n) * 0x9e37_79b9_7f4a_7c15);
            let ids = SpanIds::from_client_random(&random, Role::Client).unwrap();
            let server = SpanIds::from_client_random(&random, Role::Server).unwrap();
            let decision = sample_success(ids.trace_id, ratio);
            // Both ends decide alike, every time.
            assert_eq!(decision, sample_success(server.trace_id, ratio));
            assert_eq!(decision, sample_success(ids.trace_id, ratio));
            let sdk_decision = sdk
                .should_sample(None, ids.trace_id, "x", &SpanKind::Client, &[], &[])
                .decision;
            assert_eq!(
                decision,
                sdk_decision == SamplingDecision::RecordAndSample,
                "ratio {ratio}"
            );
            kept += u32::from(decision);
        }
        let share = f64::from(kept) / 4000.0;
        assert!((share - ratio).abs() < 0.03, "ratio {ratio}: kept {share}");
    }
    assert!(!sample_success(TraceId::from_bytes([0xff; 16]), f64::NAN));
}

// --- outcome → span ----------------------------------------------------------

#[test]
fn failure_span_shape() {
    let outcome = chain_incomplete_failure();
    let ids = SpanIds::for_outcome(&outcome);
    let span = outcome_span(&outcome, ids);
    assert_eq!(span.name, SPAN_NAME);
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.start_time, SystemTime::from(t0()));
    assert_eq!(span.end_time, SystemTime::from(ms(7)));
    assert_eq!(
        span.status,
        Status::error("api.example.com:443 sends its leaf certificate without the intermediate")
    );
    assert_eq!(span.span_context.trace_id(), ids.trace_id);
    assert_eq!(span.span_context.span_id(), ids.span_id);
    assert!(span.span_context.is_sampled());
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(!span.parent_span_is_remote);
    assert_eq!(span.instrumentation_scope.name(), SCOPE_NAME);

    let mut server_side = outcome.clone();
    server_side.role = Role::Server;
    let server_span = outcome_span(&server_side, SpanIds::for_outcome(&server_side));
    assert_eq!(server_span.span_kind, SpanKind::Server);
    assert_eq!(server_span.parent_span_id, ids.span_id);
    assert!(server_span.parent_span_is_remote);
}

#[test]
fn failure_attributes() {
    let a = span_attributes(&chain_incomplete_failure());
    let keys: Vec<&str> = a.iter().map(|kv| kv.key.as_str()).collect();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "duplicate keys in {keys:?}");

    assert_eq!(s(&a, "server.address"), "api.example.com");
    assert_eq!(i(&a, "server.port"), 443);
    assert_eq!(s(&a, "client.address"), "10.1.2.3");
    assert_eq!(i(&a, "client.port"), 51234);
    assert_eq!(s(&a, "network.transport"), "tcp");
    assert_eq!(s(&a, "network.type"), "ipv4");
    // The mapped v6 address is shown as the IPv4 it is.
    assert_eq!(s(&a, "network.peer.address"), "10.0.0.5");
    assert_eq!(i(&a, "network.peer.port"), 443);
    assert_eq!(s(&a, "network.local.address"), "10.1.2.3");
    assert_eq!(i(&a, "network.local.port"), 51234);
    assert_eq!(i(&a, "process.pid"), 4242);
    assert_eq!(s(&a, "process.executable.name"), "curl");
    assert_eq!(s(&a, "process.executable.path"), "/usr/bin/curl");
    assert_eq!(s(&a, "container.id"), "3f4e5d6c7b8a");
    assert_eq!(s(&a, "container.runtime.name"), "containerd");
    assert_eq!(s(&a, "k8s.pod.uid"), "5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f");
    assert_eq!(s(&a, "k8s.pod.name"), "curl-7d9f");
    assert_eq!(s(&a, "k8s.namespace.name"), "shop");
    assert_eq!(s(&a, "k8s.container.name"), "curl");
    assert_eq!(s(&a, "tls.protocol.name"), "tls");
    assert_eq!(s(&a, "tls.protocol.version"), "1.2");
    assert_eq!(s(&a, "tls.cipher"), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
    assert_eq!(s(&a, "tls.next_protocol"), "h2");
    assert_eq!(get(&a, "tls.established"), Some(&Value::Bool(false)));
    assert_eq!(
        strs(&a, "tls.client.supported_ciphers"),
        [
            "TLS_AES_128_GCM_SHA256",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        ]
    );
    assert_eq!(s(&a, "tls.server.subject"), "CN=api.example.com");
    assert_eq!(s(&a, "tls.server.issuer"), "CN=Example Intermediate CA");
    assert_eq!(s(&a, "tls.server.not_before"), "2026-01-01T00:00:00.000Z");
    assert_eq!(s(&a, "tls.server.not_after"), "2027-01-01T00:00:00.000Z");
    assert_eq!(s(&a, "tls.server.hash.sha256"), "AB".repeat(32));
    assert_eq!(s(&a, "error.type"), "chain-incomplete");

    assert_eq!(s(&a, attr::CAUSE), "chain-incomplete");
    assert_eq!(s(&a, attr::CONFIDENCE), "high");
    assert_eq!(s(&a, attr::RESULT), "failure");
    assert_eq!(s(&a, attr::ROLE), "client");
    assert_eq!(s(&a, attr::OUTCOME_ID), "host1-000042");
    assert_eq!(
        s(&a, attr::REMEDIATION),
        "Serve the full chain: ssl_certificate /etc/ssl/api-fullchain.pem"
    );
    assert_eq!(
        s(&a, attr::FIX_LOCATION),
        "/etc/nginx/sites-enabled/api.conf:12"
    );
    assert_eq!(
        strs(&a, attr::EVIDENCE),
        [
            "W: server sent 1 certificate: CN=api.example.com issued by CN=Example Intermediate CA",
            "U: verify result 20: unable to get local issuer certificate",
            "H: ssl_certificate points at the leaf only (at /etc/nginx/sites-enabled/api.conf:12)",
        ]
    );
    assert_eq!(
        strs(&a, attr::ALTERNATIVES),
        ["untrusted-root: the issuer may be a private CA missing from the trust store"]
    );
    assert_eq!(
        strs(&a, attr::OPENSSL_REASONS),
        ["certificate verify failed"]
    );
    assert_eq!(
        s(&a, attr::OPENSSL_VERIFY_RESULT),
        "unable to get local issuer certificate"
    );
    assert_eq!(i(&a, attr::OPENSSL_VERIFY_CODE), 20);
    assert_eq!(s(&a, attr::TLS_ALERT), "fatal unknown_ca (48) from client");
    assert_eq!(strs(&a, attr::TLS_CLIENT_ALPN), ["h2", "http/1.1"]);
    assert_eq!(strs(&a, attr::TLS_OFFERED_VERSIONS), ["TLS 1.3", "TLS 1.2"]);
    assert_eq!(i(&a, attr::TLS_SERVER_CHAIN_LENGTH), 1);
    assert_eq!(s(&a, attr::PROCESS_COMM), "curl");
    assert_eq!(s(&a, attr::SOCKET_CLOSED_BY), "local");
    assert_eq!(i(&a, attr::SOCKET_BYTES_RECEIVED), 2900);
    // Not observed, so not there.
    for absent in [
        attr::CONNECT_ERRNO,
        attr::PEER_PID,
        attr::SOCKET_RESET_BY_PEER,
        attr::TLS_NON_TLS_KIND,
        attr::TLS_ANOMALIES,
    ] {
        assert_eq!(get(&a, absent), None, "{absent}");
    }
}

#[test]
fn refused_connect_attributes() {
    let mut o = chain_incomplete_failure();
    o.tls = TlsFacts::default();
    o.openssl = OpensslFacts::default();
    o.cause = Cause::PortNotListening;
    o.diagnosis = Diagnosis::new(Cause::PortNotListening, Confidence::High, "nothing listens");
    o.socket = SocketFacts {
        connect_errno: Some(libc::ECONNREFUSED),
        connect_error: Some("ECONNREFUSED".into()),
        ..SocketFacts::default()
    };
    o.server.ip = Some("10.0.0.9".parse().unwrap());
    // The server is a process on this host too.
    o.server.pid = Some(77);
    o.server.comm = Some("nginx".into());
    let a = span_attributes(&o);
    // No SNI: the server's IP stands in.
    assert_eq!(s(&a, "server.address"), "10.0.0.9");
    assert_eq!(i(&a, attr::CONNECT_ERRNO), i64::from(libc::ECONNREFUSED));
    assert_eq!(s(&a, attr::CONNECT_ERROR), "ECONNREFUSED");
    assert_eq!(s(&a, "error.type"), "port-not-listening");
    assert_eq!(i(&a, attr::PEER_PID), 77);
    assert_eq!(s(&a, attr::PEER_COMM), "nginx");
    for absent in ["tls.protocol.name", "tls.protocol.version", "tls.cipher"] {
        assert_eq!(get(&a, absent), None, "{absent}");
    }
    assert!(!SpanIds::for_outcome(&o).derived);
}

#[test]
fn pod_attributes_describe_the_spans_own_side() {
    // The server's agent: the span is the server's, the client is the peer.
    let mut o = chain_incomplete_failure();
    o.role = Role::Server;
    o.server.pid = Some(77);
    o.server.comm = Some("nginx".into());
    o.server.container_id = Some("aa".repeat(32));
    o.server.k8s = Some(K8sPod {
        pod_uid: Some("11111111-2222-3333-4444-555555555555".into()),
        ..K8sPod::default()
    });
    let a = span_attributes(&o);
    assert_eq!(i(&a, "process.pid"), 77);
    assert_eq!(s(&a, "container.id"), "aa".repeat(32));
    // The pod UID from the cgroup path alone; names not (yet) known.
    assert_eq!(s(&a, "k8s.pod.uid"), "11111111-2222-3333-4444-555555555555");
    for absent in [
        "k8s.pod.name",
        "k8s.namespace.name",
        "k8s.container.name",
        "container.runtime.name",
    ] {
        assert_eq!(get(&a, absent), None, "{absent}");
    }
    // The client's pod, as the peer's.
    assert_eq!(s(&a, attr::PEER_CONTAINER_ID), "3f4e5d6c7b8a");
    assert_eq!(s(&a, attr::PEER_K8S_POD_NAME), "curl-7d9f");
    assert_eq!(s(&a, attr::PEER_K8S_NAMESPACE_NAME), "shop");

    // A host process: no container or pod attribute at all.
    o.server.container_id = None;
    o.server.k8s = None;
    let a = span_attributes(&o);
    for absent in ["container.id", "k8s.pod.uid", "k8s.pod.name"] {
        assert_eq!(get(&a, absent), None, "{absent}");
    }
}

#[test]
fn success_span_has_no_diagnosis() {
    let o = success(Role::Server, Some(RANDOM.into()));
    let span = outcome_span(&o, SpanIds::for_outcome(&o));
    assert_eq!(span.status, Status::Unset);
    assert_eq!(span.span_kind, SpanKind::Server);
    let a = &span.attributes;
    assert_eq!(get(a, "tls.established"), Some(&Value::Bool(true)));
    assert_eq!(s(a, attr::RESULT), "success");
    for absent in ["error.type", attr::CAUSE, attr::SUMMARY, attr::EVIDENCE] {
        assert_eq!(get(a, absent), None, "{absent}");
    }
}

#[test]
fn protocol_versions() {
    let p = |t| protocol_name_version(t);
    assert_eq!(p("TLS 1.3"), Some(("tls".into(), "1.3".into())));
    assert_eq!(p("TLS 1.0"), Some(("tls".into(), "1.0".into())));
    assert_eq!(p("SSL 3.0"), Some(("ssl".into(), "3".into())));
    assert_eq!(p("0x7f1c"), None);
}

#[test]
fn events_at_their_own_times() {
    let o = chain_incomplete_failure();
    let (events, dropped) = span_events(&o);
    assert_eq!(dropped, 0);
    let summary: Vec<(String, SystemTime)> = events
        .iter()
        .map(|e| (e.name.to_string(), e.timestamp))
        .collect();
    let at = |t: DateTime<Utc>| SystemTime::from(t);
    assert_eq!(
        summary,
        [
            // No timestamp: at the span start, marked.
            (event::TLS_MESSAGE.to_string(), at(t0())),
            (
                event::TCP_STATE.to_string(),
                at(t0() + chrono::Duration::microseconds(500))
            ),
            (event::TLS_MESSAGE.to_string(), at(ms(1))),
            (event::TLS_MESSAGE.to_string(), at(ms(3))),
            (event::TLS_MESSAGE.to_string(), at(ms(3))),
            (event::TLS_ALERT.to_string(), at(ms(5))),
            (event::OPENSSL_ERROR.to_string(), at(ms(5))),
            (event::OPENSSL_CALL.to_string(), at(ms(6))),
            (event::TCP_STATE.to_string(), at(ms(7))),
        ]
    );
    assert_eq!(s(&events[0].attributes, attr::MESSAGE), "ServerHelloDone");
    assert_eq!(
        get(&events[0].attributes, attr::TIME_ESTIMATED),
        Some(&Value::Bool(true))
    );
    assert_eq!(s(&events[2].attributes, attr::MESSAGE), "ClientHello");
    assert_eq!(s(&events[2].attributes, attr::SENDER), "client");
    // Equal timestamps keep the facts' order.
    assert_eq!(s(&events[3].attributes, attr::MESSAGE), "ServerHello");
    assert_eq!(s(&events[4].attributes, attr::MESSAGE), "Certificate");
    assert_eq!(
        s(&events[5].attributes, attr::ALERT_DESCRIPTION),
        "unknown_ca"
    );
    assert_eq!(i(&events[5].attributes, attr::ALERT_CODE), 48);
    assert_eq!(
        s(&events[6].attributes, attr::OPENSSL_TEXT),
        "certificate verify failed"
    );
    assert_eq!(i(&events[6].attributes, attr::OPENSSL_LINE), 2091);
    assert_eq!(
        s(&events[7].attributes, attr::OPENSSL_FUNCTION),
        "SSL_connect"
    );
    assert_eq!(i(&events[7].attributes, attr::OPENSSL_RET), -1);
    assert_eq!(s(&events[8].attributes, attr::TCP_TO), "FIN_WAIT1");
}

#[test]
fn events_are_capped() {
    let mut o = chain_incomplete_failure();
    o.tls.encrypted_records = (0..300)
        .map(|n| EncryptedRecordFact {
            time: Some(ms(10 + n)),
            sender: Role::Server,
            content_type: 23,
            length: 100,
            probable_alert: false,
        })
        .collect();
    let (events, dropped) = span_events(&o);
    assert_eq!(events.len(), MAX_EVENTS);
    assert_eq!(dropped as usize, 9 + 300 - MAX_EVENTS);
    let span = outcome_span(&o, SpanIds::for_outcome(&o));
    assert_eq!(span.events.dropped_count as usize, 9 + 300 - MAX_EVENTS);
}

#[test]
fn end_before_start_is_clamped() {
    let mut o = chain_incomplete_failure();
    o.end_time = t0() - chrono::Duration::seconds(1);
    let span = outcome_span(&o, SpanIds::for_outcome(&o));
    assert_eq!(span.end_time, span.start_time);
}

// --- configuration -------------------------------------------------------------

fn config(flags: OtlpFlags, env: &[(&str, &str)]) -> Result<Option<OtlpConfig>, OtlpError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    OtlpConfig::from_lookup_and_flags(flags, |k| env.get(k).cloned())
}

fn flags(endpoint: &str) -> OtlpFlags {
    OtlpFlags {
        endpoint: Some(endpoint.into()),
        ..OtlpFlags::default()
    }
}

#[test]
fn no_endpoint_means_no_sink() {
    assert_eq!(config(OtlpFlags::default(), &[]).unwrap(), None);
    // Empty counts as unset.
    assert_eq!(
        config(
            OtlpFlags::default(),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
                ("OTEL_SERVICE_NAME", "x")
            ]
        )
        .unwrap(),
        None
    );
}

#[test]
fn defaults() {
    let c = config(flags("http://c:4318"), &[]).unwrap().unwrap();
    assert_eq!(c.protocol, Protocol::HttpProtobuf);
    assert_eq!(c.endpoint.as_deref(), Some("http://c:4318/v1/traces"));
    assert_eq!(c.service_name, "tlsdoctor");
    assert_eq!(c.timeout, Duration::from_secs(10));
    assert_eq!(c.max_queue_size, 2048);
    assert_eq!(c.max_export_batch_size, 512);
    assert_eq!(c.sample_success_ratio, 0.0);
    assert!(c.headers.is_empty());
    assert!(c.resource_attributes.is_empty());
}

#[test]
fn endpoint_precedence_and_paths() {
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://traces:4318/custom",
        ),
    ];
    let endpoint =
        |f: OtlpFlags, env: &[(&str, &str)]| config(f, env).unwrap().unwrap().endpoint.unwrap();
    assert_eq!(
        endpoint(flags("http://flag:4318"), &env),
        "http://flag:4318/v1/traces"
    );
    // The signal-specific variable is used as is.
    assert_eq!(
        endpoint(OtlpFlags::default(), &env),
        "http://traces:4318/custom"
    );
    assert_eq!(
        endpoint(OtlpFlags::default(), &env[..1]),
        "http://generic:4318/v1/traces"
    );
    // Not doubled, trailing slash handled.
    assert_eq!(
        endpoint(flags("http://c:4318/v1/traces"), &[]),
        "http://c:4318/v1/traces"
    );
    assert_eq!(
        endpoint(flags("http://c:4318/otlp/"), &[]),
        "http://c:4318/otlp/v1/traces"
    );
    // gRPC gets no path.
    let grpc = OtlpFlags {
        protocol: Some(Protocol::Grpc),
        ..flags("http://jaeger:4317")
    };
    assert_eq!(endpoint(grpc, &[]), "http://jaeger:4317");
    // No scheme: https, unless insecure.
    assert_eq!(endpoint(flags("c:4318"), &[]), "https://c:4318/v1/traces");
    assert_eq!(
        endpoint(flags("c:4318"), &[("OTEL_EXPORTER_OTLP_INSECURE", "true")]),
        "http://c:4318/v1/traces"
    );
    for bad in ["ftp://c:21", "http://", "http://c:4318/x?y=1"] {
        assert!(
            matches!(config(flags(bad), &[]), Err(OtlpError::Config(_))),
            "{bad}"
        );
    }
}

#[test]
fn protocol_precedence() {
    let proto = |f: OtlpFlags, env: &[(&str, &str)]| config(f, env).unwrap().unwrap().protocol;
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf"),
    ];
    assert_eq!(proto(flags("http://c"), &env), Protocol::HttpProtobuf);
    assert_eq!(proto(flags("http://c"), &env[..1]), Protocol::Grpc);
    let f = OtlpFlags {
        protocol: Some(Protocol::Grpc),
        ..flags("http://c")
    };
    assert_eq!(proto(f, &env), Protocol::Grpc);
    assert!(matches!(
        config(
            flags("http://c"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")]
        ),
        Err(OtlpError::Config(_))
    ));
    // The protocol decides the path the generic endpoint gets.
    let c = config(
        OtlpFlags::default(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"), env[0]],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.endpoint.as_deref(), Some("http://c:4317"));
}

#[test]
fn headers_merge_with_flags_winning() {
    let f = OtlpFlags {
        headers: vec![
            ("Authorization".into(), "Bearer flag".into()),
            ("x-tenant".into(), "blue".into()),
        ],
        ..flags("http://c")
    };
    let c = config(
        f,
        &[(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20env, x-scope=a%3Db",
        )],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.headers,
        [
            ("Authorization".to_string(), "Bearer flag".to_string()),
            ("x-scope".to_string(), "a=b".to_string()),
            ("x-tenant".to_string(), "blue".to_string()),
        ]
    );
    // The signal-specific variable replaces the generic one.
    let c = config(
        flags("http://c"),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "b=2"),
        ],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.headers, [("b".to_string(), "2".to_string())]);
    for bad in ["novalue", "=x", "a=%zz", "bad name=1"] {
        assert!(
            config(flags("http://c"), &[("OTEL_EXPORTER_OTLP_HEADERS", bad)]).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn service_name_and_resource_precedence() {
    let name = |f: OtlpFlags, env: &[(&str, &str)]| config(f, env).unwrap().unwrap().service_name;
    let env = [
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attrs,deployment.environment=prod",
        ),
        ("OTEL_SERVICE_NAME", "from-env"),
    ];
    let f = OtlpFlags {
        service_name: Some("from-flag".into()),
        ..flags("http://c")
    };
    assert_eq!(name(f, &env), "from-flag");
    assert_eq!(name(flags("http://c"), &env), "from-env");
    assert_eq!(name(flags("http://c"), &env[..1]), "from-attrs");

    let c = config(
        flags("http://c"),
        &[
            ("NODE_NAME", "node-b"),
            ("K8S_NODE_NAME", "node-a"),
            ("OTEL_RESOURCE_ATTRIBUTES", "service.name=x,team=tls%20ops"),
        ],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.resource_attributes,
        [
            ("k8s.node.name".to_string(), "node-a".to_string()),
            ("team".to_string(), "tls ops".to_string()),
        ]
    );
    let c = config(
        flags("http://c"),
        &[
            ("NODE_NAME", "node-b"),
            ("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=explicit"),
        ],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.resource_attributes,
        [("k8s.node.name".to_string(), "explicit".to_string())]
    );
}

#[test]
fn numeric_settings() {
    let c = config(
        OtlpFlags {
            max_queue_size: Some(100),
            sample_success: Some(0.25),
            ..flags("http://c")
        },
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "9999"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "400"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c.timeout, Duration::from_millis(2500));
    assert_eq!(c.max_queue_size, 100);
    // A batch never exceeds the queue.
    assert_eq!(c.max_export_batch_size, 100);
    assert_eq!(c.scheduled_delay, Duration::from_millis(200));
    assert_eq!(c.sample_success_ratio, 0.25);
    assert_eq!(c.certificate, None);
    let c = config(
        flags("https://c"),
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/etc/generic.pem"),
            ("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", "/etc/traces.pem"),
        ],
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        c.certificate.as_deref(),
        Some(std::path::Path::new("/etc/traces.pem"))
    );
    for (k, v) in [
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0"),
    ] {
        assert!(config(flags("http://c"), &[(k, v)]).is_err(), "{k}={v}");
    }
    let bad_ratio = OtlpFlags {
        sample_success: Some(1.5),
        ..flags("http://c")
    };
    assert!(config(bad_ratio, &[]).is_err());
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    otlp: OtlpFlags,
}

#[test]
fn command_line_flags() {
    let cli = Cli::try_parse_from([
        "agent",
        "--otlp-endpoint",
        "http://jaeger:4317",
        "--otlp-protocol",
        "grpc",
        "--otlp-header",
        "authorization=Bearer a=b",
        "--otlp-header",
        "x-tenant=blue",
        "--service-name",
        "tls-edge",
        "--sample-success",
        "0.1",
    ])
    .unwrap();
    assert_eq!(
        cli.otlp,
        OtlpFlags {
            endpoint: Some("http://jaeger:4317".into()),
            protocol: Some(Protocol::Grpc),
            headers: vec![
                ("authorization".into(), "Bearer a=b".into()),
                ("x-tenant".into(), "blue".into()),
            ],
            service_name: Some("tls-edge".into()),
            sample_success: Some(0.1),
            max_queue_size: None,
        }
    );
    assert!(Cli::try_parse_from(["agent", "--otlp-protocol", "http/protobuf"]).is_ok());
    assert!(Cli::try_parse_from(["agent", "--otlp-protocol", "http/json"]).is_err());
    assert!(Cli::try_parse_from(["agent", "--sample-success", "2"]).is_err());
    assert!(Cli::try_parse_from(["agent", "--otlp-header", "novalue"]).is_err());
}

#[test]
fn resource_attributes() {
    let c = OtlpConfig {
        service_name: "edge".into(),
        resource_attributes: vec![
            ("k8s.node.name".into(), "node-a".into()),
            ("service.version".into(), "override".into()),
        ],
        ..OtlpConfig::default()
    };
    let r = resource(&c);
    let val = |k: &'static str| r.get(&opentelemetry::Key::new(k)).map(|v| v.to_string());
    assert_eq!(val("service.name").as_deref(), Some("edge"));
    assert_eq!(val("k8s.node.name").as_deref(), Some("node-a"));
    assert_eq!(val("service.version").as_deref(), Some("override"));
    assert!(val("host.name").is_some_and(|h| !h.is_empty()));
    assert_eq!(val("telemetry.sdk.language").as_deref(), Some("rust"));
    let plain = resource(&OtlpConfig::default());
    assert_eq!(
        plain
            .get(&opentelemetry::Key::new("service.version"))
            .map(|v| v.to_string())
            .as_deref(),
        Some(env!("CARGO_PKG_VERSION"))
    );
}

// --- health ------------------------------------------------------------------------

#[test]
fn health_warns_once_and_reports_recovery() {
    let mut h = ExportHealth::default();
    let t = Instant::now();
    // `dropped` is the running total of drops, queue-full ones included.
    let mut dropped = 5;
    assert_eq!(h.on_success(t, dropped), ExportHealthChange::Quiet);
    dropped += 10;
    assert_eq!(
        h.on_failure(t, 10, dropped),
        ExportHealthChange::StartedFailing
    );
    for n in 1..100 {
        dropped += 3; // one failed, two refused at the full queue
        assert_eq!(
            h.on_failure(t + Duration::from_secs(n), 1, dropped),
            ExportHealthChange::Quiet
        );
    }
    dropped += 1;
    assert_eq!(
        h.on_failure(t + REMINDER_INTERVAL, 1, dropped),
        ExportHealthChange::StillFailing {
            lost: 10 + 99 * 3 + 1,
            for_: REMINDER_INTERVAL
        }
    );
    let back = t + REMINDER_INTERVAL + Duration::from_secs(5);
    dropped += 2;
    assert_eq!(
        h.on_success(back, dropped),
        ExportHealthChange::Recovered {
            lost: 10 + 99 * 3 + 1 + 2,
            after: REMINDER_INTERVAL + Duration::from_secs(5)
        }
    );
    assert_eq!(h.on_success(back, dropped), ExportHealthChange::Quiet);
    // Flapping within WARN_INTERVAL stays quiet, recovery included.
    dropped += 1;
    assert_eq!(
        h.on_failure(back + Duration::from_secs(1), 1, dropped),
        ExportHealthChange::Quiet
    );
    assert_eq!(
        h.on_success(back + Duration::from_secs(2), dropped),
        ExportHealthChange::Quiet
    );
    // Later, a new outage warns again and counts from its own start.
    let later = back + WARN_INTERVAL + Duration::from_secs(1);
    dropped += 4;
    assert_eq!(
        h.on_failure(later, 4, dropped),
        ExportHealthChange::StartedFailing
    );
    assert!(matches!(
        h.on_success(later, dropped),
        ExportHealthChange::Recovered { lost: 4, .. }
    ));
}

// --- the export loop, with a fake exporter ----------------------------------------

#[derive(Clone, Debug, Default)]
struct Fake {
    received: Arc<Mutex<Vec<SpanData>>>,
    failing: Arc<AtomicBool>,
    /// Exports never answer (a collector that accepts and stalls).
    hang: Arc<AtomicBool>,
    resource: Arc<Mutex<Option<Resource>>>,
}

impl Fake {
    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

impl SpanExporter for Fake {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(OTelSdkError::InternalFailure("connection refused".into()));
        }
        self.received.lock().unwrap().extend(batch);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        *self.resource.lock().unwrap() = Some(resource.clone());
    }
}

fn fake_config() -> OtlpConfig {
    OtlpConfig {
        endpoint: Some("http://fake".into()),
        max_queue_size: 16,
        max_export_batch_size: 4,
        scheduled_delay: Duration::from_millis(50),
        timeout: Duration::from_millis(200),
        shutdown_timeout: Duration::from_millis(500),
        ..OtlpConfig::default()
    }
}

fn start(fake: &Fake, config: OtlpConfig) -> OtlpExporter {
    let fake = fake.clone();
    OtlpExporter::start(config, move || Ok(fake)).unwrap()
}

#[test]
fn exports_failures_and_sampled_successes() {
    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            sample_success_ratio: 0.0,
            ..fake_config()
        },
    );
    for _ in 0..5 {
        exporter.export(&chain_incomplete_failure());
    }
    exporter.export(&success(Role::Client, Some(RANDOM.into())));
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(fake.count(), 5);
    let stats = exporter.stats();
    assert_eq!(stats.exported, 5);
    assert_eq!(stats.not_sampled, 1);
    assert_eq!(exporter.dropped(), 0);
    let resource = fake.resource.lock().unwrap().clone().unwrap();
    assert!(
        resource
            .get(&opentelemetry::Key::new("service.name"))
            .is_some()
    );
    exporter.shutdown();

    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            sample_success_ratio: 1.0,
            ..fake_config()
        },
    );
    exporter.export(&success(Role::Client, Some(RANDOM.into())));
    // The scheduled delay sends a partial batch without a flush.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fake.count() < 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(fake.count(), 1);
    exporter.shutdown();
}

#[test]
fn hung_collector_never_blocks_and_memory_stays_bounded() {
    let fake = Fake::default();
    fake.hang.store(true, Ordering::SeqCst);
    let exporter = start(&fake, fake_config());
    let outcome = chain_incomplete_failure();
    let started = Instant::now();
    for _ in 0..10_000 {
        exporter.export(&outcome);
        assert!(exporter.stats().queued <= 16);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // At most queue + one batch in flight were accepted.
    assert!(
        exporter.dropped() >= 10_000 - 16 - 4,
        "{}",
        exporter.dropped()
    );
    let started = Instant::now();
    exporter.shutdown();
    // shutdown_timeout 500 ms plus its grace.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn shutdown_cuts_a_stuck_export_short() {
    let fake = Fake::default();
    fake.hang.store(true, Ordering::SeqCst);
    let exporter = start(
        &fake,
        OtlpConfig {
            // An export alone could hang for a minute.
            timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_millis(300),
            ..fake_config()
        },
    );
    let counters = Arc::clone(&exporter.counters);
    for _ in 0..10 {
        exporter.export(&chain_incomplete_failure());
    }
    // Let the first batch get stuck in the exporter.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    exporter.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The export thread finished its accounting before shutdown returned:
    // every span is either refused or failed, none silently vanished.
    let lost = counters.dropped_queue_full.load(Ordering::Relaxed)
        + counters.dropped_export_failed.load(Ordering::Relaxed);
    assert_eq!(lost, 10);
}

#[test]
fn failed_exports_are_counted_and_delivery_resumes() {
    let fake = Fake::default();
    fake.failing.store(true, Ordering::SeqCst);
    let exporter = start(&fake, fake_config());
    for _ in 0..8 {
        exporter.export(&chain_incomplete_failure());
    }
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(exporter.stats().dropped_export_failed, 8);
    assert_eq!(exporter.dropped(), 8);
    fake.failing.store(false, Ordering::SeqCst);
    for _ in 0..3 {
        exporter.export(&chain_incomplete_failure());
    }
    assert!(exporter.flush(Duration::from_secs(5)));
    assert_eq!(fake.count(), 3);
    assert_eq!(exporter.stats().exported, 3);
    exporter.shutdown();
}

#[test]
fn shutdown_exports_what_is_queued() {
    let fake = Fake::default();
    let exporter = start(
        &fake,
        OtlpConfig {
            // Nothing leaves on a timer before shutdown.
            scheduled_delay: Duration::from_secs(3600),
            max_export_batch_size: 16,
            ..fake_config()
        },
    );
    for _ in 0..10 {
        exporter.export(&chain_incomplete_failure());
    }
    exporter.shutdown();
    assert_eq!(fake.count(), 10);
}

#[test]
fn exporter_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<OtlpExporter>();
    shared::<crate::sinks::metrics::Metrics>();
}

#[test]
fn build_errors_surface_from_new() {
    let err = OtlpExporter::start(fake_config(), || -> Result<Fake, OtlpError> {
        Err(OtlpError::Build("no".into()))
    })
    .unwrap_err();
    assert!(matches!(err, OtlpError::Build(_)));
    let bad = OtlpConfig {
        sample_success_ratio: 2.0,
        ..fake_config()
    };
    assert!(matches!(OtlpExporter::new(bad), Err(OtlpError::Config(_))));
}

#[test]
fn ca_file_errors_surface_from_new() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    for (protocol, file) in [
        (Protocol::HttpProtobuf, dir.path().join("missing.pem")),
        (Protocol::Grpc, dir.path().join("missing.pem")),
        (Protocol::HttpProtobuf, empty),
    ] {
        let err = OtlpExporter::new(OtlpConfig {
            endpoint: Some("https://127.0.0.1:1/v1/traces".into()),
            protocol,
            certificate: Some(file.clone()),
            ..OtlpConfig::default()
        })
        .unwrap_err();
        assert!(
            matches!(err, OtlpError::Config(_)),
            "{protocol:?} {file:?}: {err}"
        );
    }
}

#[test]
fn real_exporters_build_without_a_collector() {
    // Building connects nowhere: both transports build with nothing
    // listening, and outside any tokio runtime.
    for (protocol, endpoint) in [
        (Protocol::Grpc, "http://127.0.0.1:1"),
        (Protocol::HttpProtobuf, "http://127.0.0.1:1/v1/traces"),
        (Protocol::HttpProtobuf, "https://127.0.0.1:1/v1/traces"),
    ] {
        let exporter = OtlpExporter::new(OtlpConfig {
            endpoint: Some(endpoint.into()),
            protocol,
            headers: vec![("x-tenant".into(), "blue".into())],
            shutdown_timeout: Duration::from_millis(200),
            ..OtlpConfig::default()
        });
        match exporter {
            Ok(e) => e.shutdown(),
            // A machine without system CA certificates cannot do https.
            Err(OtlpError::Build(msg)) if endpoint.starts_with("https") => {
                assert!(msg.contains("CA"), "{msg}")
            }
            Err(e) => panic!("{protocol:?} {endpoint}: {e}"),
        }
    }
}
