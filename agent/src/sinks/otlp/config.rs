//! The sink's settings: flags, the standard `OTEL_*` variables, and how
//! they combine.

use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use opentelemetry_semantic_conventions::attribute as semconv;

use super::*;

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

/// The standard variables each OTLP flag falls back to: a config file's
/// value for the flag yields to them (flag > environment > file).
pub const FLAG_ENV: &[(&str, &[&str])] = &[
    (
        "otlp-endpoint",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
        ],
    ),
    (
        "otlp-protocol",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ],
    ),
    (
        "otlp-header",
        &[
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ],
    ),
    ("service-name", &["OTEL_SERVICE_NAME"]),
    ("otlp-max-queue-size", &["OTEL_BSP_MAX_QUEUE_SIZE"]),
];

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
    #[arg(long = "sample-success", env = "TLSDOCTOR_SAMPLE_SUCCESS", value_name = "RATIO", value_parser = parse_ratio)]
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

        let headers = headers(flags.headers, &env)?;

        let (resource_attributes, service_name) =
            resource_and_service(flags.service_name, defaults.service_name, &env)?;

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
/// The headers: `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`, then the flags'
/// (which win, case-insensitively), each checked as an HTTP header.
fn headers(
    from_flags: Vec<(String, String)>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, OtlpError> {
    let mut headers = match env("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
        .map(|v| ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", v))
        .or_else(|| env("OTEL_EXPORTER_OTLP_HEADERS").map(|v| ("OTEL_EXPORTER_OTLP_HEADERS", v)))
    {
        Some((name, v)) => parse_key_value_list(&v, name)?,
        None => Vec::new(),
    };
    for (k, v) in from_flags {
        upsert(&mut headers, k, v, true);
    }
    for (k, v) in &headers {
        validate_header(k, v)?;
    }
    Ok(headers)
}

/// Resource attributes (`K8S_NODE_NAME`/`NODE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`) and the service name (flag, then
/// `OTEL_SERVICE_NAME`, then `service.name` in the attributes, then the
/// default).
fn resource_and_service(
    from_flag: Option<String>,
    default: String,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<(String, String)>, String), OtlpError> {
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
    let service_name = from_flag
        .filter(|s| !s.trim().is_empty())
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .or(service_name_attr)
        .unwrap_or(default);
    Ok((resource_attributes, service_name))
}

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
    let uri: Uri = url.parse().map_err(|e| {
        OtlpError::Config(format!(
            "invalid OTLP endpoint {raw:?}: {e}",
            e = crate::text::Chain(&e)
        ))
    })?;
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

pub(super) fn validate_header(k: &str, v: &str) -> Result<(HeaderName, HeaderValue), OtlpError> {
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
