//! Unit tests of the registry and of the HTTP endpoint.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::diagnosis::{Cause, Confidence, Diagnosis};
use crate::health::Health;
use crate::outcome::sample_failure;
use crate::outcome::{Endpoint, HandshakeResult, Role};
use chrono::Utc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn outcome(role: Role, result: HandshakeResult, cause: Cause) -> HandshakeOutcome {
    HandshakeOutcome {
        id: "t".into(),
        time: Utc::now(),
        end_time: Utc::now(),
        role,
        result,
        cause,
        client: Endpoint::default(),
        server: Endpoint::default(),
        diagnosis: Diagnosis::new(cause, Confidence::High, "x"),
        ..sample_failure()
    }
}

#[test]
fn exposition_text() {
    let m = Metrics::new();
    m.record_outcome(&outcome(
        Role::Client,
        HandshakeResult::Failure,
        Cause::UntrustedRoot,
    ));
    m.record_outcome(&outcome(
        Role::Client,
        HandshakeResult::Failure,
        Cause::UntrustedRoot,
    ));
    m.record_outcome(&outcome(
        Role::Server,
        HandshakeResult::Success,
        Cause::Unknown,
    ));
    m.set_kernel_counter("ringbuf_full", 7);
    m.set_kernel_counter("ringbuf_full", 12);
    m.set_kernel_counter("ringbuf_full", 12);
    m.add_spans_dropped(3);
    m.add_spans_dropped(0);
    m.inc_journal_errors();
    let text = m.encode();
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        )
    };
    has("# TYPE tlsdoctor_handshakes counter");
    has(
        "tlsdoctor_handshakes_total{role=\"client\",result=\"failure\",cause=\"untrusted-root\"} 2",
    );
    has("tlsdoctor_handshakes_total{role=\"server\",result=\"success\",cause=\"none\"} 1");
    has("tlsdoctor_kernel_events_lost_total{reason=\"ringbuf_full\"} 12");
    has("tlsdoctor_otlp_spans_dropped_total 3");
    has("tlsdoctor_journal_write_errors_total 1");
    has(&format!(
        "tlsdoctor_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    ));
    assert_eq!(text.lines().last(), Some("# EOF"));
}

#[test]
fn kernel_counter_reset_is_added() {
    let m = Metrics::new();
    m.set_kernel_counter("map_full", 10);
    // The programs were reloaded and count from zero again.
    m.set_kernel_counter("map_full", 4);
    assert!(
        m.encode()
            .contains("tlsdoctor_kernel_events_lost_total{reason=\"map_full\"} 14")
    );
}

async fn raw_get(addr: SocketAddr, path: &str) -> String {
    try_get(addr, path).await.unwrap()
}

async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn serves_metrics_over_http() {
    let metrics = Arc::new(Metrics::new());
    metrics.record_outcome(&outcome(
        Role::Client,
        HandshakeResult::Failure,
        Cause::ClockSkew,
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(Arc::clone(&metrics), listener, stop_rx));

    let response = raw_get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains(&format!("content-type: {CONTENT_TYPE}")),
        "{response}"
    );
    assert!(
        response.contains(
            "tlsdoctor_handshakes_total{role=\"client\",result=\"failure\",cause=\"clock-skew\"} 1"
        ),
        "{response}"
    );
    // Counts move between scrapes.
    metrics.inc_journal_errors();
    let response = raw_get(addr, "/metrics").await;
    assert!(
        response.contains("tlsdoctor_journal_write_errors_total 1"),
        "{response}"
    );

    let response = raw_get(addr, "/").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    // No health given: no probes.
    let response = raw_get(addr, "/readyz").await;
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serves_health_probes() {
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener_with_health(
        metrics,
        Some(Arc::clone(&health)),
        listener,
        stop_rx,
    ));

    // Started, not attached: alive, not ready.
    let response = raw_get(addr, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let response = raw_get(addr, "/readyz").await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("not attached"), "{response}");

    health.set_attached(true);
    health.heartbeat();
    let response = raw_get(addr, "/readyz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\ntracepoints attached; uprobes on 0 OpenSSL libraries\nring buffer empty since start\n"), "{response}");

    // A loss is a warning, not unready: a busy node must not stall a
    // rolling update.
    health.lost_events();
    let response = raw_get(addr, "/readyz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("warning: events lost"), "{response}");
    // /metrics still served alongside.
    let response = raw_get(addr, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .unwrap()
        .unwrap();
}

#[test]
fn opt_in_labels_are_bounded_and_only_on_failures() {
    let m = Metrics::with_labels(&[ExtraLabel::ServerPort, ExtraLabel::K8sNamespace]);
    for port in 0..(MAX_LABEL_VALUES as u16 + 10) {
        let mut o = outcome(Role::Server, HandshakeResult::Failure, Cause::UntrustedRoot);
        o.server.port = Some(10_000 + port);
        o.server.k8s = Some(crate::outcome::K8sPod {
            namespace: Some("shop".into()),
            ..Default::default()
        });
        m.record_outcome(&o);
    }
    let mut ok = outcome(Role::Server, HandshakeResult::Success, Cause::Unknown);
    ok.server.port = Some(443);
    m.record_outcome(&ok);
    let text = m.encode();
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("tlsdoctor_handshakes_total{") && l.contains("failure"))
        .collect();
    assert_eq!(failures.len(), MAX_LABEL_VALUES + 1, "{text}");
    assert!(
        text.contains(
            "tlsdoctor_handshakes_total{role=\"server\",result=\"failure\",cause=\"untrusted-root\",server_port=\"other\",k8s_namespace=\"shop\"} 10"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "tlsdoctor_handshakes_total{role=\"server\",result=\"success\",cause=\"none\"} 1"
        ),
        "a success carries no opt-in label: {text}"
    );
    // Without the flag, no such label at all.
    let plain = Metrics::new();
    plain.record_outcome(&outcome(
        Role::Client,
        HandshakeResult::Failure,
        Cause::ClockSkew,
    ));
    assert!(!plain.encode().contains("server_port"));
}

#[test]
fn handshake_durations_and_certificate_expiry() {
    let m = Metrics::new();
    let mut o = outcome(Role::Client, HandshakeResult::Failure, Cause::UntrustedRoot);
    o.end_time = o.time + chrono::Duration::milliseconds(30);
    m.record_outcome(&o);
    m.set_certificates(
        &[(
            CertificateLabels {
                file: "/etc/ssl/site.pem".into(),
                subject: "CN=site.test".into(),
                server_name: "site.test".into(),
                port: 443,
            },
            1_900_000_000,
        )],
        2,
    );
    let text = m.encode();
    let has = |line: &str| {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        )
    };
    has("# TYPE tlsdoctor_handshake_duration_seconds histogram");
    has(
        "tlsdoctor_handshake_duration_seconds_bucket{le=\"0.025\",role=\"client\",result=\"failure\"} 0",
    );
    has(
        "tlsdoctor_handshake_duration_seconds_bucket{le=\"0.05\",role=\"client\",result=\"failure\"} 1",
    );
    has("tlsdoctor_handshake_duration_seconds_count{role=\"client\",result=\"failure\"} 1");
    has("# TYPE tlsdoctor_certificate_not_after_timestamp_seconds gauge");
    has(
        "tlsdoctor_certificate_not_after_timestamp_seconds{file=\"/etc/ssl/site.pem\",subject=\"CN=site.test\",server_name=\"site.test\",port=\"443\"} 1900000000",
    );
    has("tlsdoctor_certificate_files_unreadable 2");
    // A later scan replaces the series: a removed certificate goes away.
    m.set_certificates(&[], 0);
    assert!(!m.encode().contains("site.pem"));
}

#[test]
fn listen_addresses_from_the_downward_api() {
    assert_eq!(
        parse_listen_addr("10.0.0.7:9464").unwrap(),
        "10.0.0.7:9464".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        parse_listen_addr("fd00::7:9464").unwrap(),
        "[fd00::7]:9464".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(
        parse_listen_addr("[fd00::7]:9464").unwrap(),
        "[fd00::7]:9464".parse::<SocketAddr>().unwrap()
    );
    assert!(parse_listen_addr("$(HOST_IP):9464").is_err());
    assert!(parse_listen_addr("9464").is_err());
}

#[tokio::test]
async fn idle_connections_cannot_exhaust_the_endpoint() {
    let metrics = Arc::new(Metrics::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_listener(Arc::clone(&metrics), listener, stop_rx));
    // Connections that never send a request hold every slot...
    let mut idle = Vec::new();
    for _ in 0..server::MAX_CONNECTIONS {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // ...so one more is closed at once, unanswered, and counted.
    let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), extra.read_to_end(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the extra connection must be closed unanswered: {read:?} {:?}",
        String::from_utf8_lossy(&buf)
    );
    // Once the idle ones go, scrapes are answered again, and the refusal shows.
    drop(idle);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let response = loop {
        let response = try_get(addr, "/metrics").await.unwrap_or_default();
        if response.starts_with("HTTP/1.1 200") || std::time::Instant::now() > deadline {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("tlsdoctor_metrics_connections_refused_total 1"),
        "{response}"
    );
    stop_tx.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
