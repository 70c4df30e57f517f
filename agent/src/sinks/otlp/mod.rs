//! OTLP trace export: every diagnosed handshake failure (and a sample of
//! successes) leaves the host as one OpenTelemetry span, over OTLP gRPC or
//! OTLP HTTP/protobuf, to Jaeger, Tempo or any collector.
//!
//! # The span
//!
//! One span per [`HandshakeOutcome`], named [`SPAN_NAME`] (`tls.handshake`):
//!
//! * start and end are the outcome's `time` (connect/accept) and `end_time`
//!   (when the outcome was decided), not the time of export;
//! * kind is `CLIENT` or `SERVER` after the observed process's [`Role`];
//! * status is `Error` with the diagnosis summary as message for failures,
//!   `Unset` for sampled successes (the OpenTelemetry convention for
//!   instrumentation that does not own the operation);
//! * attributes use the OpenTelemetry semantic-convention names where one
//!   exists (`server.address`, `tls.protocol.version`, `error.type`, ...) and
//!   the `tlsdoctor.*` namespace otherwise — see [`attr`] and docs/otel.md for
//!   the full table;
//! * one span event per timed fact, at the fact's own timestamp: handshake
//!   messages, alerts, encrypted records, OpenSSL calls and errors, TCP state
//!   changes (see [`event`]).
//!
//! # Both ends in one trace, without propagation
//!
//! A TLS handshake carries no trace context, and the two ends are often
//! watched by two agents on two hosts. Both agents do see the same
//! 32-byte ClientHello random, so both derive the ids from it:
//!
//! * trace id = `SHA-256(random)[..16]`;
//! * client span id = `SHA-256("client" || random)[..8]`;
//! * server span id = `SHA-256("server" || random)[..8]`, and its parent is
//!   the client span id.
//!
//! `random` is the 32 raw bytes (not the hex text); `"client"`/`"server"` are
//! the ASCII bytes of those words. So in Jaeger the server span nests under
//! the client span even when two hosts exported them; when only one end is
//! watched, the server span shows with a missing (remote) parent, which
//! Jaeger and Tempo display fine. An all-zero id (probability 2^-64 or less)
//! would be invalid in OTLP; its last byte is then set to 1.
//!
//! Without a ClientHello (a refused connect, plain HTTP to a TLS port) there
//! is nothing both ends share: trace and span ids are random and the span has
//! no parent.
//!
//! # Sampling
//!
//! Failures are always exported. Successes are exported with probability
//! [`OtlpConfig::sample_success_ratio`] (0 = never, the default), decided on
//! the trace id exactly as OpenTelemetry's `TraceIdRatioBased` sampler does
//! (the lower 8 bytes as a big-endian integer, shifted right by one, compared
//! with `ratio * 2^63`). Both ends derive the same trace id, so both agents
//! keep or drop the same successful handshake.
//!
//! # Delivery
//!
//! [`OtlpExporter::export`] converts the outcome to a span and `try_send`s it
//! into a bounded queue ([`OtlpConfig::max_queue_size`]): it never blocks and
//! never allocates past the queue. A dedicated thread (`tlsdoctor-otlp`, with
//! its own single-threaded tokio runtime so that it neither depends on nor
//! can stall the agent's runtime) batches spans and calls the
//! `opentelemetry-otlp` exporter, which retries with backoff within
//! [`OtlpConfig::timeout`]. A span is *dropped* when the queue is full or when
//! its batch's export finally failed; [`OtlpExporter::dropped`] counts both.
//! The SDK's own `BatchSpanProcessor` is not used because it keeps its drop
//! count private and swallows export errors, and this sink must report both.
//! When the collector comes back, the next batch goes through. The first
//! failure logs one warning, recovery logs one info line (with the number of
//! spans lost meanwhile); while failing, a reminder is logged at most every
//! ten minutes.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use opentelemetry::trace::{
    Event, SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::TelemetryResourceDetector;
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, SpanData, SpanEvents, SpanExporter, SpanLinks,
};
use opentelemetry_semantic_conventions::attribute as semconv;
use tokio::sync::mpsc;

use crate::outcome::{Endpoint, HandshakeOutcome, Role};

/// Name of every span this sink exports.
pub const SPAN_NAME: &str = "tls.handshake";

/// Instrumentation scope name of the spans.
pub const SCOPE_NAME: &str = "tlsdoctor";

/// Default collector endpoint for gRPC when none is configured.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://localhost:4317";
/// Default collector endpoint for HTTP/protobuf when none is configured.
pub const DEFAULT_HTTP_ENDPOINT: &str = "http://localhost:4318/v1/traces";

/// At most this many events per span; more are counted as dropped events.
/// A stuck connection can produce many encrypted records; a span with
/// thousands of events is rejected or truncated by most backends anyway.
pub const MAX_EVENTS: usize = 256;

/// Attribute keys of the `tlsdoctor.*` namespace. Semantic-convention keys
/// come from `opentelemetry_semantic_conventions::attribute`.
pub mod attr {
    /// Stable id of the outcome on the observing host.
    pub const OUTCOME_ID: &str = "tlsdoctor.outcome.id";
    /// "client" or "server": the observed process's end.
    pub const ROLE: &str = "tlsdoctor.role";
    /// "success" or "failure".
    pub const RESULT: &str = "tlsdoctor.result";
    /// Catalogue id of the root cause (failures only).
    pub const CAUSE: &str = "tlsdoctor.cause";
    /// "low", "medium" or "high".
    pub const CONFIDENCE: &str = "tlsdoctor.confidence";
    pub const SUMMARY: &str = "tlsdoctor.summary";
    pub const REMEDIATION: &str = "tlsdoctor.remediation";
    pub const FIX_LOCATION: &str = "tlsdoctor.fix_location";
    /// Array of "W: fact (at location)" strings; the letter is the source.
    pub const EVIDENCE: &str = "tlsdoctor.evidence";
    /// Array of "cause-id: why" strings.
    pub const ALTERNATIVES: &str = "tlsdoctor.alternatives";
    /// Array of OpenSSL reason texts.
    pub const OPENSSL_REASONS: &str = "tlsdoctor.openssl.reasons";
    /// X.509 verify result text, e.g. "unable to get local issuer certificate".
    pub const OPENSSL_VERIFY_RESULT: &str = "tlsdoctor.openssl.verify_result";
    /// `X509_V_ERR_*` code of the verify result.
    pub const OPENSSL_VERIFY_CODE: &str = "tlsdoctor.openssl.verify_code";
    pub const CONNECT_ERRNO: &str = "tlsdoctor.connect.errno";
    /// Symbolic errno, e.g. "ECONNREFUSED".
    pub const CONNECT_ERROR: &str = "tlsdoctor.connect.error";
    /// "local" or "peer".
    pub const SOCKET_CLOSED_BY: &str = "tlsdoctor.socket.closed_by";
    pub const SOCKET_RESET_BY_PEER: &str = "tlsdoctor.socket.reset_by_peer";
    pub const SOCKET_STALLED: &str = "tlsdoctor.socket.stalled";
    pub const SOCKET_BYTES_SENT: &str = "tlsdoctor.socket.bytes_sent";
    pub const SOCKET_BYTES_RECEIVED: &str = "tlsdoctor.socket.bytes_received";
    /// `comm` of the observed process (may differ from the executable name).
    pub const PROCESS_COMM: &str = "tlsdoctor.process.comm";
    /// cgroup path of the observed process.
    pub const PROCESS_CGROUP: &str = "tlsdoctor.process.cgroup";
    /// The other end, when it is a process on this host too.
    pub const PEER_PID: &str = "tlsdoctor.peer.pid";
    pub const PEER_COMM: &str = "tlsdoctor.peer.comm";
    pub const PEER_CONTAINER_ID: &str = "tlsdoctor.peer.container.id";
    /// The other end's pod, when it runs in a pod on this node.
    pub const PEER_K8S_POD_NAME: &str = "tlsdoctor.peer.k8s.pod.name";
    pub const PEER_K8S_NAMESPACE_NAME: &str = "tlsdoctor.peer.k8s.namespace.name";
    /// SNI as sent (absent: the client sent none).
    pub const TLS_SNI: &str = "tlsdoctor.tls.sni";
    /// Array of versions the client offered, e.g. ["TLS 1.3", "TLS 1.2"].
    pub const TLS_OFFERED_VERSIONS: &str = "tlsdoctor.tls.offered_versions";
    /// Array of ALPN protocols the client offered.
    pub const TLS_CLIENT_ALPN: &str = "tlsdoctor.tls.client.alpn";
    pub const TLS_CLIENT_SUPPORTED_GROUPS: &str = "tlsdoctor.tls.client.supported_groups";
    pub const TLS_CLIENT_SIGNATURE_ALGORITHMS: &str = "tlsdoctor.tls.client.signature_algorithms";
    pub const TLS_HELLO_RETRY_REQUEST: &str = "tlsdoctor.tls.hello_retry_request";
    /// First fatal alert, e.g. "fatal unknown_ca (48) from client".
    pub const TLS_ALERT: &str = "tlsdoctor.tls.alert";
    pub const TLS_SERVER_CHAIN_LENGTH: &str = "tlsdoctor.tls.server.chain_length";
    /// Array of the leaf certificate's subjectAltNames.
    pub const TLS_SERVER_SANS: &str = "tlsdoctor.tls.server.sans";
    pub const TLS_CERTIFICATE_REQUESTED: &str = "tlsdoctor.tls.certificate_requested";
    pub const TLS_CLIENT_CERTIFICATE_COUNT: &str = "tlsdoctor.tls.client_certificate_count";
    /// A side that did not speak TLS: "http-request", "http-response", ...
    pub const TLS_NON_TLS_KIND: &str = "tlsdoctor.tls.non_tls.kind";
    pub const TLS_NON_TLS_SENDER: &str = "tlsdoctor.tls.non_tls.sender";
    pub const TLS_NON_TLS_FIRST_BYTES: &str = "tlsdoctor.tls.non_tls.first_bytes";
    /// Array of wire anomalies in words.
    pub const TLS_ANOMALIES: &str = "tlsdoctor.tls.anomalies";

    // Event attributes.
    /// "client" or "server": who sent the message, alert or record.
    pub const SENDER: &str = "tlsdoctor.sender";
    pub const MESSAGE: &str = "tlsdoctor.tls.message";
    pub const ALERT_LEVEL: &str = "tlsdoctor.tls.alert.level";
    pub const ALERT_DESCRIPTION: &str = "tlsdoctor.tls.alert.description";
    pub const ALERT_CODE: &str = "tlsdoctor.tls.alert.code";
    pub const RECORD_CONTENT_TYPE: &str = "tlsdoctor.tls.record.content_type";
    pub const RECORD_LENGTH: &str = "tlsdoctor.tls.record.length";
    pub const RECORD_PROBABLE_ALERT: &str = "tlsdoctor.tls.record.probable_alert";
    pub const OPENSSL_FUNCTION: &str = "tlsdoctor.openssl.function";
    pub const OPENSSL_RET: &str = "tlsdoctor.openssl.ret";
    pub const OPENSSL_LIB: &str = "tlsdoctor.openssl.lib";
    pub const OPENSSL_REASON: &str = "tlsdoctor.openssl.reason";
    pub const OPENSSL_TEXT: &str = "tlsdoctor.openssl.text";
    pub const OPENSSL_LINE: &str = "tlsdoctor.openssl.line";
    pub const TCP_FROM: &str = "tlsdoctor.tcp.from";
    pub const TCP_TO: &str = "tlsdoctor.tcp.to";
    /// The fact carried no timestamp; the event sits at the span start.
    pub const TIME_ESTIMATED: &str = "tlsdoctor.time_estimated";
}

/// Span event names.
pub mod event {
    /// A handshake message seen in clear (attributes `tlsdoctor.sender`,
    /// `tlsdoctor.tls.message`).
    pub const TLS_MESSAGE: &str = "tlsdoctor.tls.message";
    /// An alert seen in clear.
    pub const TLS_ALERT: &str = "tlsdoctor.tls.alert";
    /// A record after encryption started (type and length only).
    pub const TLS_ENCRYPTED_RECORD: &str = "tlsdoctor.tls.encrypted_record";
    /// A handshake-driving `SSL_*` call returned.
    pub const OPENSSL_CALL: &str = "tlsdoctor.openssl.call";
    /// OpenSSL put an error on its queue.
    pub const OPENSSL_ERROR: &str = "tlsdoctor.openssl.error";
    /// The socket's TCP state changed.
    pub const TCP_STATE: &str = "tlsdoctor.tcp.state";
}

/// What can go wrong configuring or starting the exporter. Exporting itself
/// never returns errors: failures are counted and logged.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("invalid OTLP configuration: {0}")]
    Config(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Build(String),
    #[error("cannot start the OTLP export thread: {0}")]
    Thread(String),
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// OTLP transport.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// OTLP over gRPC (collector port 4317).
    #[value(name = "grpc")]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (collector port 4318, path
    /// `/v1/traces`). The OpenTelemetry default.
    #[default]
    #[value(name = "http/protobuf")]
    HttpProtobuf,
}

impl Protocol {
    /// The `OTEL_EXPORTER_OTLP_PROTOCOL` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::HttpProtobuf => "http/protobuf",
        }
    }

    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling (`http/json` is not
    /// supported).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s.trim() {
            "grpc" => Some(Protocol::Grpc),
            "http/protobuf" => Some(Protocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Command-line flags of the OTLP sink, flattened into `agent run`. Every
/// flag falls back to the standard `OTEL_*` variable named in its help; see
/// [`OtlpConfig::from_env_and_flags`].
#[derive(Clone, Debug, Default, PartialEq, clap::Args)]
pub struct OtlpFlags {
    /// OTLP collector endpoint, e.g. http://jaeger:4317 (grpc) or
    /// http://collector:4318 (http/protobuf; /v1/traces is appended unless the
    /// path already ends with it). Without a scheme, https is assumed.
    /// Falls back to OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (used as is), then
    /// OTEL_EXPORTER_OTLP_ENDPOINT. Set nowhere: no OTLP export.
    #[arg(long = "otlp-endpoint", value_name = "URL")]
    pub endpoint: Option<String>,

    /// OTLP protocol. Falls back to OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, then
    /// OTEL_EXPORTER_OTLP_PROTOCOL; default http/protobuf.
    #[arg(long = "otlp-protocol", value_name = "PROTOCOL", value_enum)]
    pub protocol: Option<Protocol>,

    /// Extra header (HTTP) or metadata (gRPC) on every export, e.g.
    /// `authorization=Bearer xyz`; repeatable. Merged over
    /// OTEL_EXPORTER_OTLP_TRACES_HEADERS or OTEL_EXPORTER_OTLP_HEADERS; the
    /// flag wins for the same key.
    #[arg(long = "otlp-header", value_name = "KEY=VALUE", value_parser = parse_header_flag)]
    pub headers: Vec<(String, String)>,

    /// service.name of the exported spans. Falls back to OTEL_SERVICE_NAME,
    /// then service.name in OTEL_RESOURCE_ATTRIBUTES; default "tlsdoctor".
    #[arg(long = "service-name", value_name = "NAME")]
    pub service_name: Option<String>,

    /// Fraction (0 to 1) of successful handshakes to export as spans too,
    /// decided on the trace id so both ends agree. Failures are always
    /// exported. Default 0: no successes.
    #[arg(long = "sample-success", value_name = "RATIO", value_parser = parse_ratio)]
    pub sample_success: Option<f64>,

    /// Spans held while the collector is slow or down; more are dropped and
    /// counted. Falls back to OTEL_BSP_MAX_QUEUE_SIZE; default 2048.
    #[arg(long = "otlp-max-queue-size", value_name = "SPANS")]
    pub max_queue_size: Option<usize>,
}

fn parse_header_flag(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("empty header name in {s:?}"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

fn parse_ratio(s: &str) -> Result<f64, String> {
    let r: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("ratio must be between 0 and 1, got {s}"))
    }
}

/// Resolved configuration of the OTLP sink.
#[derive(Clone, Debug, PartialEq)]
pub struct OtlpConfig {
    /// Full collector URL. For http/protobuf this includes the path
    /// (`/v1/traces`). `None`: [`DEFAULT_GRPC_ENDPOINT`] or
    /// [`DEFAULT_HTTP_ENDPOINT`] after the protocol.
    /// [`OtlpConfig::from_env_and_flags`] always sets it.
    pub endpoint: Option<String>,
    /// Default http/protobuf, as in the OpenTelemetry specification.
    pub protocol: Protocol,
    /// Headers (HTTP) or metadata (gRPC) on every export request.
    pub headers: Vec<(String, String)>,
    /// `service.name`; default "tlsdoctor".
    pub service_name: String,
    /// Extra resource attributes (OTEL_RESOURCE_ATTRIBUTES, `k8s.node.name`).
    /// `host.name` is detected when absent here; `service.version` is the
    /// agent's version unless given here.
    pub resource_attributes: Vec<(String, String)>,
    /// Bound on one export including the exporter's retries; default 10 s
    /// (OTEL_EXPORTER_OTLP_TRACES_TIMEOUT / OTEL_EXPORTER_OTLP_TIMEOUT, ms).
    pub timeout: Duration,
    /// Bounded queue in front of the exporter; default 2048
    /// (OTEL_BSP_MAX_QUEUE_SIZE).
    pub max_queue_size: usize,
    /// Spans per export request; default 512 (OTEL_BSP_MAX_EXPORT_BATCH_SIZE),
    /// at most `max_queue_size`.
    pub max_export_batch_size: usize,
    /// Longest a span waits in a partial batch; default 1 s
    /// (OTEL_BSP_SCHEDULE_DELAY, ms). Shorter than the SDK's 5 s because a
    /// person is often waiting for the failure to show up.
    pub scheduled_delay: Duration,
    /// Bound on [`OtlpExporter::shutdown`]; default 5 s.
    pub shutdown_timeout: Duration,
    /// Fraction of successful handshakes exported; default 0 (none).
    pub sample_success_ratio: f64,
    /// PEM file of the CA certificates trusted for an https collector
    /// (OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE / OTEL_EXPORTER_OTLP_CERTIFICATE).
    /// When set, only these are trusted, as the specification says; default:
    /// the system's trust store.
    pub certificate: Option<std::path::PathBuf>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            endpoint: None,
            protocol: Protocol::default(),
            headers: Vec::new(),
            service_name: "tlsdoctor".to_string(),
            resource_attributes: Vec::new(),
            timeout: Duration::from_secs(10),
            max_queue_size: 2048,
            max_export_batch_size: 512,
            scheduled_delay: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(5),
            sample_success_ratio: 0.0,
            certificate: None,
        }
    }
}

impl OtlpConfig {
    /// Builds the configuration from `flags`, falling back to the process
    /// environment. `Ok(None)`: no endpoint in the flags nor in
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`,
    /// so there is no OTLP sink and the journal stays the only one.
    ///
    /// Variables read (empty counts as unset; a flag always wins):
    /// `OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`, `..._PROTOCOL`, `..._HEADERS`,
    /// `..._TIMEOUT`, `..._INSECURE` (a scheme-less endpoint then means http),
    /// `..._CERTIFICATE` (CA file for an https collector),
    /// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
    /// `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`,
    /// `OTEL_BSP_SCHEDULE_DELAY`, and `K8S_NODE_NAME` or `NODE_NAME` for the
    /// `k8s.node.name` resource attribute (the DaemonSet sets it from
    /// `spec.nodeName` through the downward API).
    pub fn from_env_and_flags(flags: OtlpFlags) -> Result<Option<OtlpConfig>, OtlpError> {
        Self::from_lookup_and_flags(flags, |name| std::env::var(name).ok())
    }

    /// [`from_env_and_flags`](Self::from_env_and_flags) with the environment
    /// given as a lookup function, so it can be tested without touching the
    /// process-global environment.
    pub fn from_lookup_and_flags(
        flags: OtlpFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpConfig>, OtlpError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let defaults = OtlpConfig::default();

        let protocol = match flags.protocol {
            Some(p) => p,
            None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
                .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", v))
                .or_else(|| {
                    env("OTEL_EXPORTER_OTLP_PROTOCOL").map(|v| ("OTEL_EXPORTER_OTLP_PROTOCOL", v))
                }) {
                Some((name, v)) => Protocol::parse(&v).ok_or_else(|| {
                    OtlpError::Config(format!(
                        "{name}={v:?}: supported protocols are grpc and http/protobuf"
                    ))
                })?,
                None => defaults.protocol,
            },
        };

        let insecure = env("OTEL_EXPORTER_OTLP_TRACES_INSECURE")
            .or_else(|| env("OTEL_EXPORTER_OTLP_INSECURE"))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let endpoint = if let Some(e) = flags.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
            normalize_endpoint(e, protocol, true, insecure)?
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            // The specification uses the signal-specific variable as is.
            normalize_endpoint(&e, protocol, false, insecure)?
        } else if let Some(e) = env("OTEL_EXPORTER_OTLP_ENDPOINT") {
            normalize_endpoint(&e, protocol, true, insecure)?
        } else {
            return Ok(None);
        };

        let mut headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", v))
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_HEADERS").map(|v| ("OTEL_EXPORTER_OTLP_HEADERS", v))
            }) {
            Some((name, v)) => parse_key_value_list(&v, name)?,
            None => Vec::new(),
        };
        for (k, v) in flags.headers {
            upsert(&mut headers, k, v, true);
        }
        for (k, v) in &headers {
            validate_header(k, v)?;
        }

        let mut resource_attributes = Vec::new();
        if let Some(node) = env("K8S_NODE_NAME").or_else(|| env("NODE_NAME")) {
            resource_attributes.push((semconv::K8S_NODE_NAME.to_string(), node));
        }
        let mut service_name_attr = None;
        if let Some(v) = env("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, v) in parse_key_value_list(&v, "OTEL_RESOURCE_ATTRIBUTES")? {
                if k == semconv::SERVICE_NAME {
                    service_name_attr = Some(v);
                } else {
                    upsert(&mut resource_attributes, k, v, false);
                }
            }
        }
        let service_name = flags
            .service_name
            .filter(|s| !s.trim().is_empty())
            .or_else(|| env("OTEL_SERVICE_NAME"))
            .or(service_name_attr)
            .unwrap_or(defaults.service_name);

        let timeout = match env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", v))
            .or_else(|| {
                env("OTEL_EXPORTER_OTLP_TIMEOUT").map(|v| ("OTEL_EXPORTER_OTLP_TIMEOUT", v))
            }) {
            Some((name, v)) => Duration::from_millis(parse_positive(name, &v)?),
            None => defaults.timeout,
        };
        let max_queue_size = match flags.max_queue_size {
            Some(n) => n,
            None => match env("OTEL_BSP_MAX_QUEUE_SIZE") {
                Some(v) => parse_positive("OTEL_BSP_MAX_QUEUE_SIZE", &v)? as usize,
                None => defaults.max_queue_size,
            },
        };
        if max_queue_size == 0 {
            return Err(OtlpError::Config(
                "the OTLP queue size must be at least 1".into(),
            ));
        }
        let max_export_batch_size = match env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE") {
            Some(v) => parse_positive("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &v)? as usize,
            None => defaults.max_export_batch_size,
        }
        .min(max_queue_size);
        let scheduled_delay = match env("OTEL_BSP_SCHEDULE_DELAY") {
            Some(v) => Duration::from_millis(parse_positive("OTEL_BSP_SCHEDULE_DELAY", &v)?),
            None => defaults.scheduled_delay,
        };
        let sample_success_ratio = flags.sample_success.unwrap_or(0.0);
        if !(0.0..=1.0).contains(&sample_success_ratio) {
            return Err(OtlpError::Config(format!(
                "success sampling ratio must be between 0 and 1, got {sample_success_ratio}"
            )));
        }

        let certificate = env("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE")
            .or_else(|| env("OTEL_EXPORTER_OTLP_CERTIFICATE"))
            .map(std::path::PathBuf::from);

        Ok(Some(OtlpConfig {
            endpoint: Some(endpoint),
            protocol,
            headers,
            service_name,
            resource_attributes,
            timeout,
            max_queue_size,
            max_export_batch_size,
            scheduled_delay,
            shutdown_timeout: defaults.shutdown_timeout,
            sample_success_ratio,
            certificate,
        }))
    }

    /// The URL the exporter sends to.
    pub fn endpoint_url(&self) -> String {
        match (&self.endpoint, self.protocol) {
            (Some(e), _) => e.clone(),
            (None, Protocol::Grpc) => DEFAULT_GRPC_ENDPOINT.to_string(),
            (None, Protocol::HttpProtobuf) => DEFAULT_HTTP_ENDPOINT.to_string(),
        }
    }
}

/// Adds a scheme when missing (https, or http when `insecure`), checks the
/// URL, and for http/protobuf appends `/v1/traces` when `append_path` and the
/// path does not end with it already (so `--otlp-endpoint
/// http://c:4318/v1/traces` is not doubled).
fn normalize_endpoint(
    raw: &str,
    protocol: Protocol,
    append_path: bool,
    insecure: bool,
) -> Result<String, OtlpError> {
    let raw = raw.trim();
    let mut url = if raw.contains("://") {
        raw.to_string()
    } else if insecure {
        format!("http://{raw}")
    } else {
        format!("https://{raw}")
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| OtlpError::Config(format!("invalid OTLP endpoint {raw:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(OtlpError::Config(format!(
                "OTLP endpoint {raw:?} must be an http:// or https:// URL"
            )));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(OtlpError::Config(format!(
            "OTLP endpoint {raw:?} has no host"
        )));
    }
    if protocol == Protocol::HttpProtobuf
        && append_path
        && !uri.path().trim_end_matches('/').ends_with("/v1/traces")
    {
        if uri.query().is_some() {
            return Err(OtlpError::Config(format!(
                "OTLP endpoint {raw:?}: a base URL cannot have a query; give the full traces URL \
                 in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            )));
        }
        url = format!("{}/v1/traces", url.trim_end_matches('/'));
    }
    Ok(url)
}

/// Parses the `key=value,key2=value2` lists of `OTEL_EXPORTER_OTLP_HEADERS`
/// and `OTEL_RESOURCE_ATTRIBUTES` (W3C Baggage syntax, values
/// percent-decoded).
fn parse_key_value_list(s: &str, what: &str) -> Result<Vec<(String, String)>, OtlpError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| OtlpError::Config(format!("{what}: {item:?} is not key=value")))?;
        let k = percent_decode(k.trim())
            .ok_or_else(|| OtlpError::Config(format!("{what}: bad escape in {item:?}")))?;
        let v = percent_decode(v.trim())
            .ok_or_else(|| OtlpError::Config(format!("{what}: bad escape in {item:?}")))?;
        if k.is_empty() {
            return Err(OtlpError::Config(format!("{what}: empty key in {item:?}")));
        }
        upsert(&mut out, k, v, false);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Replaces the value of `key` (ASCII case-insensitively when
/// `case_insensitive`, as header names are) or appends it.
fn upsert(list: &mut Vec<(String, String)>, key: String, value: String, case_insensitive: bool) {
    let same = |k: &String| {
        if case_insensitive {
            k.eq_ignore_ascii_case(&key)
        } else {
            *k == key
        }
    };
    match list.iter_mut().find(|(k, _)| same(k)) {
        Some(entry) => *entry = (key, value),
        None => list.push((key, value)),
    }
}

fn validate_header(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), OtlpError> {
    let name = HeaderName::from_bytes(k.as_bytes())
        .map_err(|_| OtlpError::Config(format!("invalid OTLP header name {k:?}")))?;
    let value = HeaderValue::from_str(v)
        .map_err(|_| OtlpError::Config(format!("invalid value for OTLP header {k:?}")))?;
    Ok((name, value))
}

fn parse_positive(name: &str, v: &str) -> Result<u64, OtlpError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(OtlpError::Config(format!(
            "{name}={v:?}: expected a positive integer"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Ids and sampling
// ---------------------------------------------------------------------------

/// The ids of one outcome's span (see the module docs for the scheme).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// Set on the server span of a handshake with a ClientHello: the client
    /// span's id.
    pub parent_span_id: Option<SpanId>,
    /// The ids come from the ClientHello random (both ends agree), not from
    /// a random generator.
    pub derived: bool,
}

impl SpanIds {
    /// Ids for `outcome`: derived from its ClientHello random when it has a
    /// valid one, random otherwise.
    pub fn for_outcome(outcome: &HandshakeOutcome) -> SpanIds {
        outcome
            .tls
            .client_hello
            .as_ref()
            .and_then(|ch| SpanIds::from_client_random(&ch.random, outcome.role))
            .unwrap_or_else(SpanIds::random)
    }

    /// Ids derived from a ClientHello random given as hex (32 bytes). `None`
    /// when `random_hex` is not 32 bytes of hex.
    pub fn from_client_random(random_hex: &str, role: Role) -> Option<SpanIds> {
        let random = hex::decode(random_hex.trim()).ok()?;
        if random.len() != 32 {
            return None;
        }
        let trace = openssl::sha::sha256(&random);
        let mut trace_bytes = [0u8; 16];
        trace_bytes.copy_from_slice(&trace[..16]);
        let trace_id = TraceId::from_bytes(non_zero(trace_bytes));
        let client = derived_span_id(b"client", &random);
        Some(match role {
            Role::Client => SpanIds {
                trace_id,
                span_id: client,
                parent_span_id: None,
                derived: true,
            },
            Role::Server => SpanIds {
                trace_id,
                span_id: derived_span_id(b"server", &random),
                parent_span_id: Some(client),
                derived: true,
            },
        })
    }

    /// Random ids, no parent: for outcomes without a ClientHello.
    pub fn random() -> SpanIds {
        let ids = RandomIdGenerator::default();
        SpanIds {
            trace_id: ids.new_trace_id(),
            span_id: ids.new_span_id(),
            parent_span_id: None,
            derived: false,
        }
    }
}

fn derived_span_id(label: &[u8], random: &[u8]) -> SpanId {
    let mut h = openssl::sha::Sha256::new();
    h.update(label);
    h.update(random);
    let digest = h.finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    SpanId::from_bytes(non_zero(bytes))
}

/// All-zero ids are invalid in OTLP; nudge the (astronomically unlikely)
/// zero digest prefix so the span is still accepted.
fn non_zero<const N: usize>(mut bytes: [u8; N]) -> [u8; N] {
    if bytes.iter().all(|&b| b == 0) {
        bytes[N - 1] = 1;
    }
    bytes
}

/// Whether a successful handshake with `trace_id` is exported at `ratio`:
/// the same rule as OpenTelemetry's `TraceIdRatioBased` sampler, so every
/// agent (and a collector-side sampler with the same ratio) agrees.
pub fn sample_success(trace_id: TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio.is_nan() || ratio <= 0.0 {
        return false;
    }
    let bytes = trace_id.to_bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    let bound = (ratio * (1u64 << 63) as f64) as u64;
    (u64::from_be_bytes(low) >> 1) < bound
}

// ---------------------------------------------------------------------------
// Outcome → span
// ---------------------------------------------------------------------------

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
fn protocol_name_version(text: &str) -> Option<(String, String)> {
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
    let tls = &outcome.tls;
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

    // The observed process; the peer too when it runs on this host.
    process_attrs(&mut a, local);
    if let Some(pid) = peer.pid {
        a.int(attr::PEER_PID, i64::from(pid));
    }
    a.opt_str(attr::PEER_COMM, peer.comm.as_deref());
    a.opt_str(attr::PEER_CONTAINER_ID, peer.container_id.as_deref());
    if let Some(k8s) = &peer.k8s {
        a.opt_str(attr::PEER_K8S_POD_NAME, k8s.pod.as_deref());
        a.opt_str(attr::PEER_K8S_NAMESPACE_NAME, k8s.namespace.as_deref());
    }

    // TLS, semantic conventions first.
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
        a.str(attr::TLS_NON_TLS_FIRST_BYTES, non_tls.first_bytes.clone());
    }
    a.strs(attr::TLS_ANOMALIES, tls.anomalies.iter().cloned());

    // OpenSSL and socket evidence.
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

    // The diagnosis: failures only (a success has nothing to diagnose).
    if outcome.is_failure() {
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
    a.0
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

// ---------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------

/// Sets the configured headers on every OTLP/HTTP request, after the
/// exporter crate added its own: `opentelemetry-otlp` re-reads
/// `OTEL_EXPORTER_OTLP_HEADERS` and would otherwise override a `--otlp-header`
/// with the same name.
#[derive(Debug)]
struct HeaderClient {
    inner: Box<dyn HttpClient>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[async_trait::async_trait]
impl HttpClient for HeaderClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        for (k, v) in &self.headers {
            request.headers_mut().insert(k.clone(), v.clone());
        }
        self.inner.send_bytes(request).await
    }
}

fn build_span_exporter(config: &OtlpConfig) -> Result<opentelemetry_otlp::SpanExporter, OtlpError> {
    let endpoint = config.endpoint_url();
    let headers = config
        .headers
        .iter()
        .map(|(k, v)| validate_header(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let https = endpoint.starts_with("https://");
    let ca_pem = match (&config.certificate, https) {
        (Some(path), true) => Some(std::fs::read(path).map_err(|e| {
            OtlpError::Config(format!("cannot read OTLP CA file {}: {e}", path.display()))
        })?),
        _ => None,
    };
    let built = match config.protocol {
        Protocol::Grpc => {
            let mut metadata = Vec::with_capacity(headers.len());
            for (k, v) in &headers {
                let key = tonic::metadata::AsciiMetadataKey::from_bytes(k.as_str().as_bytes())
                    .map_err(|_| {
                        OtlpError::Config(format!("{k} cannot be sent as gRPC metadata"))
                    })?;
                let value = v
                    .to_str()
                    .ok()
                    .and_then(|v| tonic::metadata::AsciiMetadataValue::try_from(v).ok())
                    .ok_or_else(|| {
                        OtlpError::Config(format!("value of {k} cannot be sent as gRPC metadata"))
                    })?;
                metadata.push((key, value));
            }
            let metadata = Arc::new(metadata);
            // Runs after the crate's own metadata (which includes
            // OTEL_EXPORTER_OTLP_HEADERS), so the flags win here too.
            let interceptor = move |mut req: tonic::Request<()>| {
                for (k, v) in metadata.iter() {
                    req.metadata_mut().insert(k.clone(), v.clone());
                }
                Ok(req)
            };
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if https {
                use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
                // The crate's default TLS config has no trust anchors at all:
                // give it the configured CA file, or the system's roots.
                let tls = match &ca_pem {
                    Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                    None => ClientTlsConfig::new().with_native_roots(),
                };
                builder = builder.with_tls_config(tls);
            }
            builder
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_interceptor(interceptor)
                .build()
        }
        Protocol::HttpProtobuf => {
            let inner: Box<dyn HttpClient> = if https {
                let builder = match &ca_pem {
                    Some(pem) => hyper_rustls::HttpsConnectorBuilder::new()
                        .with_tls_config(tls_config_trusting(pem, config.certificate.as_deref())?),
                    None => hyper_rustls::HttpsConnectorBuilder::new()
                        .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
                        .map_err(|e| {
                            OtlpError::Build(format!("no usable system CA certificates: {e}"))
                        })?,
                };
                let connector = builder.https_only().enable_http1().build();
                Box::new(opentelemetry_http::hyper::HyperClient::new(
                    connector,
                    config.timeout,
                    None,
                ))
            } else {
                Box::new(
                    opentelemetry_http::hyper::HyperClient::with_default_connector(
                        config.timeout,
                        None,
                    ),
                )
            };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(endpoint)
                .with_timeout(config.timeout)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_http_client(HeaderClient { inner, headers })
                .build()
        }
    };
    built.map_err(|e| OtlpError::Build(e.to_string()))
}

/// A rustls client configuration trusting exactly the certificates in `pem`.
fn tls_config_trusting(
    pem: &[u8],
    path: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, OtlpError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        let cert = cert.map_err(|e| OtlpError::Config(format!("OTLP CA file {name}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| OtlpError::Config(format!("OTLP CA file {name}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(OtlpError::Config(format!(
            "OTLP CA file {name} holds no PEM certificate"
        )));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OtlpError::Build(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

// ---------------------------------------------------------------------------
// Exporter
// ---------------------------------------------------------------------------

#[derive(Debug, Default)]
struct Counters {
    exported: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_export_failed: AtomicU64,
    not_sampled: AtomicU64,
}

/// A snapshot of the exporter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtlpStats {
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans refused because the queue was full (or the exporter closing).
    pub dropped_queue_full: u64,
    /// Spans in batches whose export failed after the exporter's retries.
    pub dropped_export_failed: u64,
    /// Successful handshakes not exported because of sampling.
    pub not_sampled: u64,
    /// Spans waiting in the queue now.
    pub queued: usize,
}

enum Control {
    /// Export everything queued, then answer.
    Flush(std::sync::mpsc::SyncSender<()>),
    /// Export what is queued until `deadline`, shut the exporter down, stop.
    Shutdown { deadline: Instant },
}

/// The OTLP sink. See the module docs.
pub struct OtlpExporter {
    spans: mpsc::Sender<SpanData>,
    control: mpsc::UnboundedSender<Control>,
    /// Tells an export in flight about the shutdown deadline.
    stop: tokio::sync::watch::Sender<Option<Instant>>,
    counters: Arc<Counters>,
    sample_success_ratio: f64,
    shutdown_timeout: Duration,
    endpoint: String,
    /// In a Mutex only so the exporter is `Sync` (a std Receiver is not) and
    /// can be shared by the tasks that produce outcomes.
    finished: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.endpoint)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OtlpExporter {
    /// Starts the export thread and builds the OTLP exporter on it. Works
    /// inside or outside a tokio runtime (the export thread has its own, which
    /// tonic needs at build time); blocks only until the exporter is built,
    /// which does not connect (the first export does).
    pub fn new(config: OtlpConfig) -> Result<Self, OtlpError> {
        let build_config = config.clone();
        Self::start(config, move || build_span_exporter(&build_config))
    }

    /// [`new`](Self::new) with any span exporter (tests use fakes).
    pub(crate) fn start<E, F>(config: OtlpConfig, make_exporter: F) -> Result<Self, OtlpError>
    where
        E: SpanExporter + 'static,
        F: FnOnce() -> Result<E, OtlpError> + Send + 'static,
    {
        if !(0.0..=1.0).contains(&config.sample_success_ratio) {
            return Err(OtlpError::Config(format!(
                "success sampling ratio must be between 0 and 1, got {}",
                config.sample_success_ratio
            )));
        }
        let queue = config.max_queue_size.max(1);
        let (span_tx, span_rx) = mpsc::channel(queue);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(None);
        let (init_tx, init_rx) = std::sync::mpsc::sync_channel::<Result<(), OtlpError>>(1);
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let counters = Arc::new(Counters::default());
        let endpoint = config.endpoint_url();
        let resource = resource(&config);

        let worker_counters = Arc::clone(&counters);
        let worker_endpoint = endpoint.clone();
        let worker_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("tlsdoctor-otlp".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = init_tx.send(Err(OtlpError::Thread(format!(
                            "cannot create its tokio runtime: {e}"
                        ))));
                        return;
                    }
                };
                runtime.block_on(async move {
                    // tonic's lazy channel needs the runtime even to be built.
                    let mut exporter = match make_exporter() {
                        Ok(e) => e,
                        Err(e) => {
                            let _ = init_tx.send(Err(e));
                            return;
                        }
                    };
                    exporter.set_resource(&resource);
                    let _ = init_tx.send(Ok(()));
                    Worker {
                        exporter,
                        spans: span_rx,
                        control: control_rx,
                        counters: worker_counters,
                        batch: Vec::new(),
                        max_batch: worker_config.max_export_batch_size.clamp(1, queue),
                        max_queue: queue,
                        scheduled_delay: worker_config.scheduled_delay,
                        export_timeout: worker_config.timeout,
                        shutdown_timeout: worker_config.shutdown_timeout,
                        stop: stop_rx,
                        stop_open: true,
                        health: Health::default(),
                        endpoint: worker_endpoint,
                    }
                    .run()
                    .await;
                });
                let _ = done_tx.send(());
            })
            .map_err(|e| OtlpError::Thread(e.to_string()))?;

        match init_rx.recv() {
            Ok(Ok(())) => Ok(OtlpExporter {
                spans: span_tx,
                control: control_tx,
                stop: stop_tx,
                counters,
                sample_success_ratio: config.sample_success_ratio,
                shutdown_timeout: config.shutdown_timeout,
                endpoint,
                finished: std::sync::Mutex::new(done_rx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(OtlpError::Thread(
                    "the export thread stopped while starting".into(),
                ))
            }
        }
    }

    /// Queues the span of `outcome` for export, unless it is a success that
    /// sampling leaves out. Never blocks: with the queue full the span is
    /// dropped and counted.
    /// Whether [`OtlpExporter::export`] sends this outcome: every failure,
    /// and the successes sampling keeps.
    pub fn wants(&self, outcome: &HandshakeOutcome) -> bool {
        outcome.is_failure()
            || sample_success(
                SpanIds::for_outcome(outcome).trace_id,
                self.sample_success_ratio,
            )
    }

    pub fn export(&self, outcome: &HandshakeOutcome) {
        let ids = SpanIds::for_outcome(outcome);
        if !outcome.is_failure() && !sample_success(ids.trace_id, self.sample_success_ratio) {
            self.counters.not_sampled.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.spans.capacity() == 0 {
            // Skip building a span that cannot be queued anyway.
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.spans.try_send(outcome_span(outcome, ids)).is_err() {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Spans lost so far: queue full plus failed exports. Monotonic; feed
    /// the difference to [`Metrics::add_spans_dropped`](super::metrics::Metrics::add_spans_dropped).
    pub fn dropped(&self) -> u64 {
        self.counters.dropped_queue_full.load(Ordering::Relaxed)
            + self.counters.dropped_export_failed.load(Ordering::Relaxed)
    }

    /// All counters.
    pub fn stats(&self) -> OtlpStats {
        OtlpStats {
            exported: self.counters.exported.load(Ordering::Relaxed),
            dropped_queue_full: self.counters.dropped_queue_full.load(Ordering::Relaxed),
            dropped_export_failed: self.counters.dropped_export_failed.load(Ordering::Relaxed),
            not_sampled: self.counters.not_sampled.load(Ordering::Relaxed),
            queued: self.spans.max_capacity() - self.spans.capacity(),
        }
    }

    /// The collector URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Exports everything queued now and waits up to `timeout` for it.
    /// Blocks the calling thread; `false` when the time ran out.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
        if self.control.send(Control::Flush(ack_tx)).is_err() {
            return false;
        }
        ack_rx.recv_timeout(timeout).is_ok()
    }

    /// Exports what is queued and stops, within
    /// [`OtlpConfig::shutdown_timeout`] (plus a little): with the collector
    /// down it gives up, counts the rest as dropped and returns. Blocks the
    /// calling thread for at most that long; from async code that must not
    /// block, call it through `spawn_blocking`.
    pub fn shutdown(mut self) {
        let deadline = Instant::now() + self.shutdown_timeout;
        // First cut short an export in flight, then ask for the final drain.
        self.stop.send_replace(Some(deadline));
        if self.control.send(Control::Shutdown { deadline }).is_err() {
            return;
        }
        let grace = Duration::from_millis(500);
        let finished = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .recv_timeout(self.shutdown_timeout + grace);
        match finished {
            Ok(()) => {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
            }
            Err(_) => {
                // Leave the thread behind: it ends with the process.
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "OTLP export did not finish within {:?}; giving up on the queued spans",
                    self.shutdown_timeout
                );
            }
        }
    }
}

/// Warning state of the export loop: one warning when exports start
/// failing, one line when they recover, reminders at most every
/// [`REMINDER_INTERVAL`], nothing per failed batch.
#[derive(Debug, Default)]
struct Health {
    failing_since: Option<Instant>,
    /// Total drops (queue full + failed) when the failure began, so the
    /// recovery line can say how many spans the outage cost.
    dropped_at_start: u64,
    last_warning: Option<Instant>,
    warned: bool,
}

/// Flapping collectors get at most one "started failing" warning this often.
const WARN_INTERVAL: Duration = Duration::from_secs(60);
/// While the collector stays down, a reminder this often.
const REMINDER_INTERVAL: Duration = Duration::from_secs(600);

#[derive(Debug, PartialEq, Eq)]
enum HealthChange {
    Quiet,
    StartedFailing,
    StillFailing { lost: u64, for_: Duration },
    Recovered { lost: u64, after: Duration },
}

impl Health {
    /// A batch of `spans` failed; `dropped_total` counts them already.
    fn on_failure(&mut self, now: Instant, spans: u64, dropped_total: u64) -> HealthChange {
        let due = |interval| {
            self.last_warning
                .is_none_or(|t| now.saturating_duration_since(t) >= interval)
        };
        match self.failing_since {
            None => {
                self.failing_since = Some(now);
                self.dropped_at_start = dropped_total.saturating_sub(spans);
                self.warned = due(WARN_INTERVAL);
                if self.warned {
                    self.last_warning = Some(now);
                    HealthChange::StartedFailing
                } else {
                    HealthChange::Quiet
                }
            }
            Some(since) if due(REMINDER_INTERVAL) => {
                self.last_warning = Some(now);
                self.warned = true;
                HealthChange::StillFailing {
                    lost: dropped_total.saturating_sub(self.dropped_at_start),
                    for_: now.saturating_duration_since(since),
                }
            }
            Some(_) => HealthChange::Quiet,
        }
    }

    fn on_success(&mut self, now: Instant, dropped_total: u64) -> HealthChange {
        let Some(since) = self.failing_since.take() else {
            return HealthChange::Quiet;
        };
        let lost = dropped_total.saturating_sub(self.dropped_at_start);
        if std::mem::take(&mut self.warned) {
            HealthChange::Recovered {
                lost,
                after: now.saturating_duration_since(since),
            }
        } else {
            HealthChange::Quiet
        }
    }
}

struct Worker<E> {
    exporter: E,
    spans: mpsc::Receiver<SpanData>,
    control: mpsc::UnboundedReceiver<Control>,
    counters: Arc<Counters>,
    batch: Vec<SpanData>,
    max_batch: usize,
    max_queue: usize,
    scheduled_delay: Duration,
    export_timeout: Duration,
    shutdown_timeout: Duration,
    /// The shutdown deadline, as soon as shutdown() is called.
    stop: tokio::sync::watch::Receiver<Option<Instant>>,
    /// `stop`'s sender still exists (watching a closed channel would spin).
    stop_open: bool,
    health: Health,
    endpoint: String,
}

impl<E: SpanExporter> Worker<E> {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.scheduled_delay);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Control first, so a shutdown is not starved by a busy queue.
                biased;
                control = self.control.recv() => match control {
                    Some(Control::Flush(ack)) => {
                        self.drain(None).await;
                        let _ = ack.send(());
                    }
                    Some(Control::Shutdown { deadline }) => {
                        self.finish(deadline).await;
                        return;
                    }
                    // The OtlpExporter was dropped without shutdown().
                    None => {
                        self.finish(Instant::now() + self.shutdown_timeout).await;
                        return;
                    }
                },
                span = self.spans.recv() => match span {
                    Some(span) => {
                        self.batch.push(span);
                        if self.batch.len() >= self.max_batch {
                            self.export_batch(None).await;
                        }
                    }
                    None => {
                        self.finish(Instant::now() + self.shutdown_timeout).await;
                        return;
                    }
                },
                _ = tick.tick() => {
                    if !self.batch.is_empty() {
                        self.export_batch(None).await;
                    }
                }
            }
        }
    }

    /// Exports the current batch and what is queued now (not what keeps
    /// arriving meanwhile, so a flush under load still ends).
    async fn drain(&mut self, deadline: Option<Instant>) {
        let mut budget = self.max_queue;
        while budget > 0 {
            match self.spans.try_recv() {
                Ok(span) => {
                    budget -= 1;
                    self.batch.push(span);
                    if self.batch.len() >= self.max_batch {
                        self.export_batch(deadline).await;
                    }
                }
                Err(_) => break,
            }
        }
        if !self.batch.is_empty() {
            self.export_batch(deadline).await;
        }
    }

    async fn finish(&mut self, deadline: Instant) {
        // New spans are refused (and counted) from here on.
        self.spans.close();
        self.drain(Some(deadline)).await;
        // Whatever is left did not make it before the deadline.
        let mut left = std::mem::take(&mut self.batch).len() as u64;
        while self.spans.try_recv().is_ok() {
            left += 1;
        }
        if left > 0 {
            self.counters
                .dropped_export_failed
                .fetch_add(left, Ordering::Relaxed);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Err(e) = self.exporter.shutdown_with_timeout(remaining) {
            tracing::debug!(error = %e, "OTLP exporter shutdown");
        }
    }

    fn dropped_total(&self) -> u64 {
        self.counters.dropped_queue_full.load(Ordering::Relaxed)
            + self.counters.dropped_export_failed.load(Ordering::Relaxed)
    }

    async fn export_batch(&mut self, deadline: Option<Instant>) {
        let batch = std::mem::take(&mut self.batch);
        let n = batch.len() as u64;
        if n == 0 {
            return;
        }
        // The exporter bounds itself by the configured timeout; this outer
        // bound also covers a transport that ignores it. A shutdown arriving
        // meanwhile shortens it, so an export stuck on a collector that
        // swallows packets cannot hold shutdown() past its deadline.
        let started = Instant::now();
        let mut until = started + self.export_timeout + Duration::from_secs(1);
        if let Some(d) = deadline {
            until = until.min(d);
        }
        let export = self.exporter.export(batch);
        let mut export = std::pin::pin!(export);
        let result = loop {
            if let Some(d) = *self.stop.borrow() {
                until = until.min(d);
            }
            if Instant::now() >= until {
                break Err(format!("no answer within {:?}", until - started));
            }
            tokio::select! {
                done = &mut export => break done.map_err(|e| e.to_string()),
                _ = tokio::time::sleep_until(until.into()) => {}
                changed = self.stop.changed(), if self.stop_open => {
                    // The exporter is gone: finish() comes next, bounded.
                    self.stop_open = changed.is_ok();
                }
            }
        };
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.counters.exported.fetch_add(n, Ordering::Relaxed);
                if let HealthChange::Recovered { lost, after } =
                    self.health.on_success(now, self.dropped_total())
                {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        "OTLP export recovered after {:.0?}; {lost} spans were lost meanwhile",
                        after
                    );
                }
            }
            Err(error) => {
                self.counters
                    .dropped_export_failed
                    .fetch_add(n, Ordering::Relaxed);
                match self.health.on_failure(now, n, self.dropped_total()) {
                    HealthChange::StartedFailing => tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        "OTLP export failing; spans are dropped until the collector answers \
                         (one more line when it recovers)"
                    ),
                    HealthChange::StillFailing { lost, for_ } => tracing::warn!(
                        endpoint = %self.endpoint,
                        %error,
                        "OTLP export still failing after {:.0?}; {lost} spans lost so far",
                        for_
                    ),
                    _ => tracing::debug!(endpoint = %self.endpoint, %error, "OTLP export failed"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
