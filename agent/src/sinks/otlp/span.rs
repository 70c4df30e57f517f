//! One outcome as one span: attributes, events, the resource.

use std::net::IpAddr;
use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use opentelemetry::trace::{Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use opentelemetry_semantic_conventions::attribute as semconv;

use crate::outcome::{Endpoint, HandshakeOutcome, Role};

use super::*;

/// Attribute list builder that skips empty values, so a span only carries
/// what was actually observed.
struct Attrs(Vec<KeyValue>);

impl Attrs {
    fn str(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.0.push(KeyValue::new(key, value));
        }
    }

    fn opt_str(&mut self, key: &'static str, value: Option<&str>) {
        if let Some(v) = value {
            self.str(key, v.to_string());
        }
    }

    fn int(&mut self, key: &'static str, value: i64) {
        self.0.push(KeyValue::new(key, value));
    }

    fn bool(&mut self, key: &'static str, value: bool) {
        self.0.push(KeyValue::new(key, value));
    }

    /// A flag that only matters when set.
    fn flag(&mut self, key: &'static str, value: bool) {
        if value {
            self.bool(key, true);
        }
    }

    fn strs<S: Into<String>>(&mut self, key: &'static str, values: impl IntoIterator<Item = S>) {
        let values: Vec<StringValue> = values
            .into_iter()
            .map(|s| StringValue::from(s.into()))
            .collect();
        if !values.is_empty() {
            self.0
                .push(KeyValue::new(key, Value::Array(Array::String(values))));
        }
    }
}

fn ip_text(ip: IpAddr) -> String {
    // IPv4 peers of dual-stack sockets show up as ::ffff:a.b.c.d.
    ip.to_canonical().to_string()
}

/// "TLS 1.2" → ("tls", "1.2"); "SSL 3.0" → ("ssl", "3"), as the semantic
/// conventions derive them from OpenSSL's `SSL_get_version` ("SSLv3").
pub(super) fn protocol_name_version(text: &str) -> Option<(String, String)> {
    let (name, version) = text.trim().split_once(' ')?;
    let name = name.to_ascii_lowercase();
    let version = version.trim();
    let version = match name.as_str() {
        "ssl" => version.strip_suffix(".0").unwrap_or(version),
        "tls" => version,
        _ => return None,
    };
    Some((name, version.to_string()))
}

fn iso_millis(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn process_attrs(a: &mut Attrs, local: &Endpoint) {
    if let Some(pid) = local.pid {
        a.int(semconv::PROCESS_PID, i64::from(pid));
    }
    // The semantic conventions want the base name of /proc/pid/exe; `comm`
    // (truncated to 15 bytes, renamable by threads) is the fallback.
    let exe_name = local
        .exe
        .as_deref()
        .and_then(|p| p.rsplit('/').next())
        .filter(|n| !n.is_empty())
        .or(local.comm.as_deref());
    a.opt_str(semconv::PROCESS_EXECUTABLE_NAME, exe_name);
    a.opt_str(semconv::PROCESS_EXECUTABLE_PATH, local.exe.as_deref());
    a.opt_str(attr::PROCESS_COMM, local.comm.as_deref());
    a.opt_str(semconv::CONTAINER_ID, local.container_id.as_deref());
    a.opt_str(
        semconv::CONTAINER_RUNTIME_NAME,
        local.container_runtime.as_deref(),
    );
    if let Some(k8s) = &local.k8s {
        a.opt_str(semconv::K8S_POD_UID, k8s.pod_uid.as_deref());
        a.opt_str(semconv::K8S_POD_NAME, k8s.pod.as_deref());
        a.opt_str(semconv::K8S_NAMESPACE_NAME, k8s.namespace.as_deref());
        a.opt_str(semconv::K8S_CONTAINER_NAME, k8s.container.as_deref());
    }
    a.opt_str(attr::PROCESS_CGROUP, local.cgroup.as_deref());
}

/// The span attributes of `outcome` (see docs/otel.md for the table).
pub fn span_attributes(outcome: &HandshakeOutcome) -> Vec<KeyValue> {
    let mut a = Attrs(Vec::with_capacity(48));
    let (local, peer) = match outcome.role {
        Role::Client => (&outcome.client, &outcome.server),
        Role::Server => (&outcome.server, &outcome.client),
    };

    a.str(attr::OUTCOME_ID, outcome.id.clone());
    a.str(attr::ROLE, outcome.role.as_str());
    a.str(
        attr::RESULT,
        if outcome.is_failure() {
            "failure"
        } else {
            "success"
        },
    );
    network_attrs(&mut a, outcome, local, peer);
    // The observed process; the peer too when it runs on this host.
    process_attrs(&mut a, local);
    peer_process_attrs(&mut a, peer);
    tls_attrs(&mut a, outcome);
    openssl_and_socket_attrs(&mut a, outcome);
    // The diagnosis: failures only (a success has nothing to diagnose).
    if outcome.is_failure() {
        diagnosis_attrs(&mut a, outcome);
    }
    a.0
}

/// Addresses and ports of both ends.
fn network_attrs(a: &mut Attrs, outcome: &HandshakeOutcome, local: &Endpoint, peer: &Endpoint) {
    let tls = &outcome.tls;
    // Addresses. server.address is the logical name the client asked for.
    let server_address = tls
        .sni
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| outcome.server.ip.map(ip_text));
    a.opt_str(semconv::SERVER_ADDRESS, server_address.as_deref());
    if let Some(p) = outcome.server.port {
        a.int(semconv::SERVER_PORT, i64::from(p));
    }
    a.opt_str(
        semconv::CLIENT_ADDRESS,
        outcome.client.ip.map(ip_text).as_deref(),
    );
    if let Some(p) = outcome.client.port {
        a.int(semconv::CLIENT_PORT, i64::from(p));
    }
    a.str(semconv::NETWORK_TRANSPORT, "tcp");
    if let Some(ip) = local.ip.or(peer.ip) {
        let v4 = ip.to_canonical().is_ipv4();
        a.str(semconv::NETWORK_TYPE, if v4 { "ipv4" } else { "ipv6" });
    }
    a.opt_str(
        semconv::NETWORK_PEER_ADDRESS,
        peer.ip.map(ip_text).as_deref(),
    );
    if let Some(p) = peer.port {
        a.int(semconv::NETWORK_PEER_PORT, i64::from(p));
    }
    a.opt_str(
        semconv::NETWORK_LOCAL_ADDRESS,
        local.ip.map(ip_text).as_deref(),
    );
    if let Some(p) = local.port {
        a.int(semconv::NETWORK_LOCAL_PORT, i64::from(p));
    }
}

/// The peer process, when it runs on this host.
fn peer_process_attrs(a: &mut Attrs, peer: &Endpoint) {
    if let Some(pid) = peer.pid {
        a.int(attr::PEER_PID, i64::from(pid));
    }
    a.opt_str(attr::PEER_COMM, peer.comm.as_deref());
    a.opt_str(attr::PEER_CONTAINER_ID, peer.container_id.as_deref());
    if let Some(k8s) = &peer.k8s {
        a.opt_str(attr::PEER_K8S_POD_NAME, k8s.pod.as_deref());
        a.opt_str(attr::PEER_K8S_NAMESPACE_NAME, k8s.namespace.as_deref());
    }
}

/// The handshake as the wire showed it: semantic conventions first.
fn tls_attrs(a: &mut Attrs, outcome: &HandshakeOutcome) {
    let tls = &outcome.tls;
    let negotiated = tls
        .negotiated_version
        .as_deref()
        .or(tls.server_hello.as_ref().map(|sh| sh.version.as_str()));
    if let Some((name, version)) = negotiated.and_then(protocol_name_version) {
        a.str(semconv::TLS_PROTOCOL_NAME, name);
        a.str(semconv::TLS_PROTOCOL_VERSION, version);
    } else if tls.client_hello.is_some() {
        // The client spoke TLS even if no version was agreed.
        a.str(semconv::TLS_PROTOCOL_NAME, "tls");
    }
    if let Some(sh) = &tls.server_hello {
        a.str(semconv::TLS_CIPHER, sh.cipher_suite.clone());
        a.opt_str(semconv::TLS_NEXT_PROTOCOL, sh.alpn.as_deref());
        a.flag(attr::TLS_HELLO_RETRY_REQUEST, sh.hello_retry_request);
    }
    a.bool(semconv::TLS_ESTABLISHED, !outcome.is_failure());
    if let Some(ch) = &tls.client_hello {
        a.strs(
            semconv::TLS_CLIENT_SUPPORTED_CIPHERS,
            ch.cipher_suites.iter().cloned(),
        );
        a.strs(attr::TLS_CLIENT_ALPN, ch.alpn.iter().cloned());
        a.strs(
            attr::TLS_CLIENT_SUPPORTED_GROUPS,
            ch.supported_groups.iter().cloned(),
        );
        a.strs(
            attr::TLS_CLIENT_SIGNATURE_ALGORITHMS,
            ch.signature_algorithms.iter().cloned(),
        );
    }
    if let Some(leaf) = tls.server_certificates.first() {
        a.str(semconv::TLS_SERVER_SUBJECT, leaf.subject.clone());
        a.str(semconv::TLS_SERVER_ISSUER, leaf.issuer.clone());
        a.str(semconv::TLS_SERVER_NOT_BEFORE, iso_millis(&leaf.not_before));
        a.str(semconv::TLS_SERVER_NOT_AFTER, iso_millis(&leaf.not_after));
        // The conventions ask for upper-case hex fingerprints.
        a.str(
            semconv::TLS_SERVER_HASH_SHA256,
            leaf.sha256.to_ascii_uppercase(),
        );
        a.strs(attr::TLS_SERVER_SANS, leaf.sans.iter().cloned());
        a.int(
            attr::TLS_SERVER_CHAIN_LENGTH,
            i64::try_from(tls.server_certificates.len()).unwrap_or(i64::MAX),
        );
    }
    a.opt_str(attr::TLS_SNI, tls.sni.as_deref());
    a.strs(
        attr::TLS_OFFERED_VERSIONS,
        tls.offered_versions.iter().cloned(),
    );
    if let Some(alert) = tls.alert.as_ref().or_else(|| tls.alerts.first()) {
        a.str(
            attr::TLS_ALERT,
            format!(
                "{} {} ({}) from {}",
                alert.level,
                alert.description,
                alert.code,
                alert.sender.as_str()
            ),
        );
    }
    a.flag(attr::TLS_CERTIFICATE_REQUESTED, tls.certificate_requested);
    if let Some(n) = tls.client_certificate_count {
        a.int(
            attr::TLS_CLIENT_CERTIFICATE_COUNT,
            i64::try_from(n).unwrap_or(i64::MAX),
        );
    }
    if let Some(non_tls) = &tls.non_tls {
        a.str(attr::TLS_NON_TLS_KIND, non_tls.kind.clone());
        a.str(attr::TLS_NON_TLS_SENDER, non_tls.sender.as_str());
        a.str(attr::TLS_NON_TLS_DESCRIPTION, non_tls.description.clone());
    }
    a.strs(attr::TLS_ANOMALIES, tls.anomalies.iter().cloned());
}

/// OpenSSL's and the socket's evidence.
fn openssl_and_socket_attrs(a: &mut Attrs, outcome: &HandshakeOutcome) {
    a.strs(
        attr::OPENSSL_REASONS,
        outcome.openssl.reasons.iter().cloned(),
    );
    if let Some(v) = &outcome.openssl.verify_result {
        a.str(attr::OPENSSL_VERIFY_RESULT, v.text.clone());
        a.int(attr::OPENSSL_VERIFY_CODE, i64::from(v.code));
    }
    let socket = &outcome.socket;
    if let Some(errno) = socket.connect_errno {
        a.int(attr::CONNECT_ERRNO, i64::from(errno));
    }
    a.opt_str(attr::CONNECT_ERROR, socket.connect_error.as_deref());
    a.opt_str(attr::SOCKET_CLOSED_BY, socket.closed_by.as_deref());
    a.flag(attr::SOCKET_RESET_BY_PEER, socket.reset_by_peer);
    a.flag(attr::SOCKET_STALLED, socket.stalled);
    a.int(
        attr::SOCKET_BYTES_SENT,
        i64::try_from(socket.bytes_sent).unwrap_or(i64::MAX),
    );
    a.int(
        attr::SOCKET_BYTES_RECEIVED,
        i64::try_from(socket.bytes_received).unwrap_or(i64::MAX),
    );
}

/// The diagnosis of a failure.
fn diagnosis_attrs(a: &mut Attrs, outcome: &HandshakeOutcome) {
    let d = &outcome.diagnosis;
    a.str(semconv::ERROR_TYPE, outcome.cause.id());
    a.str(attr::CAUSE, outcome.cause.id());
    a.str(
        attr::CONFIDENCE,
        match d.confidence {
            crate::diagnosis::Confidence::Low => "low",
            crate::diagnosis::Confidence::Medium => "medium",
            crate::diagnosis::Confidence::High => "high",
        },
    );
    a.str(attr::SUMMARY, d.summary.clone());
    a.str(attr::REMEDIATION, d.remediation.clone());
    a.opt_str(attr::FIX_LOCATION, d.fix_location.as_deref());
    a.strs(
        attr::EVIDENCE,
        d.evidence.iter().map(|e| match &e.location {
            Some(loc) => format!("{}: {} (at {loc})", e.source.letter(), e.fact),
            None => format!("{}: {}", e.source.letter(), e.fact),
        }),
    );
    a.strs(
        attr::ALTERNATIVES,
        d.alternatives
            .iter()
            .map(|alt| format!("{}: {}", alt.cause.id(), alt.why)),
    );
}

/// The span events of `outcome`, in time order, at most [`MAX_EVENTS`];
/// returns them with the number left out.
pub fn span_events(outcome: &HandshakeOutcome) -> (Vec<Event>, u32) {
    let start = SystemTime::from(outcome.time);
    // A fact without a timestamp is placed at the span start and marked, so
    // it still shows in order of kind rather than disappearing.
    let at = |t: Option<DateTime<Utc>>, mut attrs: Vec<KeyValue>| match t {
        Some(t) => (SystemTime::from(t), attrs),
        None => {
            attrs.push(KeyValue::new(attr::TIME_ESTIMATED, true));
            (start, attrs)
        }
    };
    let mut events = Vec::new();
    let tls = &outcome.tls;
    for m in &tls.messages {
        let (t, attrs) = at(
            m.time,
            vec![
                KeyValue::new(attr::SENDER, m.sender.as_str()),
                KeyValue::new(attr::MESSAGE, m.message.clone()),
            ],
        );
        events.push(Event::new(event::TLS_MESSAGE, t, attrs, 0));
    }
    let alerts: Vec<_> = if tls.alerts.is_empty() {
        tls.alert.iter().collect()
    } else {
        tls.alerts.iter().collect()
    };
    for al in alerts {
        let (t, attrs) = at(
            al.time,
            vec![
                KeyValue::new(attr::SENDER, al.sender.as_str()),
                KeyValue::new(attr::ALERT_LEVEL, al.level.clone()),
                KeyValue::new(attr::ALERT_DESCRIPTION, al.description.clone()),
                KeyValue::new(attr::ALERT_CODE, i64::from(al.code)),
            ],
        );
        events.push(Event::new(event::TLS_ALERT, t, attrs, 0));
    }
    for r in &tls.encrypted_records {
        let (t, attrs) = at(
            r.time,
            vec![
                KeyValue::new(attr::SENDER, r.sender.as_str()),
                KeyValue::new(attr::RECORD_CONTENT_TYPE, i64::from(r.content_type)),
                KeyValue::new(attr::RECORD_LENGTH, i64::from(r.length)),
                KeyValue::new(attr::RECORD_PROBABLE_ALERT, r.probable_alert),
            ],
        );
        events.push(Event::new(event::TLS_ENCRYPTED_RECORD, t, attrs, 0));
    }
    for c in &outcome.openssl.calls {
        events.push(Event::new(
            event::OPENSSL_CALL,
            SystemTime::from(c.time),
            vec![
                KeyValue::new(attr::OPENSSL_FUNCTION, c.function.clone()),
                KeyValue::new(attr::OPENSSL_RET, i64::from(c.ret)),
            ],
            0,
        ));
    }
    for e in &outcome.openssl.errors {
        let mut attrs = vec![
            KeyValue::new(attr::OPENSSL_LIB, i64::from(e.lib)),
            KeyValue::new(attr::OPENSSL_REASON, i64::from(e.reason)),
            KeyValue::new(attr::OPENSSL_TEXT, e.text.clone()),
        ];
        if let Some(f) = &e.function {
            attrs.push(KeyValue::new(attr::OPENSSL_FUNCTION, f.clone()));
        }
        if let Some(line) = e.line {
            attrs.push(KeyValue::new(attr::OPENSSL_LINE, i64::from(line)));
        }
        events.push(Event::new(
            event::OPENSSL_ERROR,
            SystemTime::from(e.time),
            attrs,
            0,
        ));
    }
    for s in &outcome.socket.tcp_states {
        events.push(Event::new(
            event::TCP_STATE,
            SystemTime::from(s.time),
            vec![
                KeyValue::new(attr::TCP_FROM, s.from.clone()),
                KeyValue::new(attr::TCP_TO, s.to.clone()),
            ],
            0,
        ));
    }
    // Stable: equal timestamps keep the order of kinds above.
    events.sort_by_key(|e| e.timestamp);
    let dropped = events.len().saturating_sub(MAX_EVENTS);
    events.truncate(MAX_EVENTS);
    (events, u32::try_from(dropped).unwrap_or(u32::MAX))
}

fn instrumentation_scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The span of `outcome` with the given ids.
pub fn outcome_span(outcome: &HandshakeOutcome, ids: SpanIds) -> SpanData {
    let start_time = SystemTime::from(outcome.time);
    // A clock step between the two reads must not make a negative span.
    let end_time = SystemTime::from(outcome.end_time).max(start_time);
    let (events, dropped_events) = span_events(outcome);
    // `SpanEvents` is non-exhaustive; its fields are public.
    let mut span_events = SpanEvents::default();
    span_events.events = events;
    span_events.dropped_count = dropped_events;
    SpanData {
        span_context: SpanContext::new(
            ids.trace_id,
            ids.span_id,
            TraceFlags::SAMPLED,
            false,
            TraceState::NONE,
        ),
        parent_span_id: ids.parent_span_id.unwrap_or(SpanId::INVALID),
        // The client span was exported by whichever agent saw the client:
        // from this span's point of view it is always remote.
        parent_span_is_remote: ids.parent_span_id.is_some(),
        span_kind: match outcome.role {
            Role::Client => SpanKind::Client,
            Role::Server => SpanKind::Server,
        },
        name: SPAN_NAME.into(),
        start_time,
        end_time,
        attributes: span_attributes(outcome),
        dropped_attributes_count: 0,
        events: span_events,
        links: SpanLinks::default(),
        status: if outcome.is_failure() {
            Status::error(outcome.diagnosis.summary.clone())
        } else {
            Status::Unset
        },
        instrumentation_scope: instrumentation_scope(),
    }
}

/// The resource every span carries.
pub fn resource(config: &OtlpConfig) -> Resource {
    let mut detected = vec![KeyValue::new(
        semconv::SERVICE_VERSION,
        env!("CARGO_PKG_VERSION"),
    )];
    let has = |key: &str| config.resource_attributes.iter().any(|(k, _)| k == key);
    if !has(semconv::HOST_NAME) {
        // On a Kubernetes node the agent runs with hostNetwork, so this is
        // the node's host name, not the pod's.
        if let Ok(host) = gethostname::gethostname().into_string() {
            detected.push(KeyValue::new(semconv::HOST_NAME, host));
        }
    }
    Resource::builder_empty()
        .with_detector(Box::new(TelemetryResourceDetector))
        .with_attributes(detected)
        .with_attributes(
            config
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_service_name(config.service_name.clone())
        .build()
}
