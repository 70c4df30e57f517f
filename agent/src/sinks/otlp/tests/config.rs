//! Settings from flags and OTEL_* variables, and their precedence.

use std::collections::HashMap;

use clap::Parser;

use std::time::Duration;

use super::super::*;
use super::*;

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
