//! One outcome as one span: shape, attributes, events.

use std::time::SystemTime;

use chrono::{DateTime, Utc};
use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status};

use crate::outcome::Role;

use super::super::*;
use super::*;
use crate::diagnosis::{Cause, Confidence, Diagnosis};
use crate::evidence::openssl::OpensslFacts;
use crate::evidence::sockets::SocketFacts;
use crate::evidence::wire::{EncryptedRecordFact, TlsFacts};
use crate::outcome::K8sPod;

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
