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
    /// What its first bytes are ("HTTP GET request"), never the bytes.
    pub const TLS_NON_TLS_DESCRIPTION: &str = "tlsdoctor.tls.non_tls.description";
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

mod config;
mod exporter;
mod ids;
mod span;
mod transport;
mod worker;

pub use config::*;
pub use exporter::*;
pub use ids::*;
pub use span::*;
use transport::*;
use worker::*;

#[cfg(test)]
mod tests;
