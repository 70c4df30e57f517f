//! `agent run --print-config`: the effective settings as JSON, the OTLP
//! exporter's as it resolves them (flags, `OTEL_*` variables, defaults),
//! with header values redacted (they carry credentials), and where each
//! setting came from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::RunConfig;
use crate::sinks::otlp::{OtlpConfig, OtlpError};

/// What a header value is shown as.
pub const REDACTED: &str = "<redacted>";

/// The document `--print-config` prints.
#[derive(Debug, Serialize)]
pub struct PrintedConfig<'a> {
    /// The config file read (`--config`/`TLSDOCTOR_CONFIG`), if any.
    pub config_file: Option<PathBuf>,
    #[serde(flatten)]
    pub run: &'a RunConfig,
    /// The OTLP exporter's resolved settings; `null` when it is off.
    pub otlp: Option<PrintedOtlp>,
    /// `flag`, `env`, `file` or `default` for each setting that has a value.
    pub sources: BTreeMap<String, &'static str>,
}

/// [`OtlpConfig`] for people: durations in milliseconds, header values
/// replaced by [`REDACTED`].
#[derive(Debug, PartialEq, Serialize)]
pub struct PrintedOtlp {
    pub endpoint: String,
    pub protocol: &'static str,
    pub timeout_ms: u128,
    pub headers: BTreeMap<String, &'static str>,
    pub service_name: String,
    pub resource_attributes: BTreeMap<String, String>,
    pub sample_success_ratio: f64,
    pub max_queue_size: usize,
    pub max_export_batch_size: usize,
    pub scheduled_delay_ms: u128,
    pub certificate: Option<PathBuf>,
}

impl PrintedOtlp {
    pub fn new(c: &OtlpConfig) -> PrintedOtlp {
        PrintedOtlp {
            endpoint: c.endpoint_url(),
            protocol: c.protocol.as_str(),
            timeout_ms: c.timeout.as_millis(),
            headers: c
                .headers
                .iter()
                .map(|(k, _)| (k.to_ascii_lowercase(), REDACTED))
                .collect(),
            service_name: c.service_name.clone(),
            resource_attributes: c.resource_attributes.iter().cloned().collect(),
            sample_success_ratio: c.sample_success_ratio,
            max_queue_size: c.max_queue_size,
            max_export_batch_size: c.max_export_batch_size,
            scheduled_delay_ms: c.scheduled_delay.as_millis(),
            certificate: c.certificate.clone(),
        }
    }
}

impl<'a> PrintedConfig<'a> {
    /// Resolves the OTLP settings from `run`'s flags and the process
    /// environment, as `agent run` will.
    pub fn new(
        run: &'a RunConfig,
        config_file: Option<PathBuf>,
        sources: BTreeMap<String, &'static str>,
    ) -> Result<PrintedConfig<'a>, OtlpError> {
        let otlp = OtlpConfig::from_env_and_flags(run.otlp.clone())?;
        Ok(PrintedConfig {
            config_file,
            run,
            otlp: otlp.as_ref().map(PrintedOtlp::new),
            sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::otlp::OtlpFlags;

    #[test]
    fn header_values_never_show() {
        let flags = OtlpFlags {
            endpoint: Some("https://collector:4318".into()),
            headers: vec![("Authorization".into(), "Bearer s3cret".into())],
            ..Default::default()
        };
        let env = |name: &str| match name {
            "OTEL_EXPORTER_OTLP_HEADERS" => Some("x-api-key=k3y".to_string()),
            "OTEL_EXPORTER_OTLP_TIMEOUT" => Some("2500".to_string()),
            _ => None,
        };
        let config = OtlpConfig::from_lookup_and_flags(flags, env)
            .unwrap()
            .unwrap();
        let printed = PrintedOtlp::new(&config);
        let text = serde_json::to_string(&printed).unwrap();
        assert!(!text.contains("s3cret") && !text.contains("k3y"), "{text}");
        assert_eq!(printed.headers.get("authorization"), Some(&REDACTED));
        assert_eq!(printed.headers.get("x-api-key"), Some(&REDACTED));
        assert_eq!(printed.endpoint, "https://collector:4318/v1/traces");
        assert_eq!(printed.protocol, "http/protobuf");
        assert_eq!(printed.timeout_ms, 2500);
    }
}
