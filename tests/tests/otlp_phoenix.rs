//! The OTLP sink (the library, with synthetic outcomes) against real OTLP
//! receivers nobody here wrote: Arize Phoenix (ids, parents, times,
//! attributes, status and events read back over its REST API) and rotel
//! (span kind and resource, from its debug log). `tlsdoctor_tests::receivers`
//! installs and runs them; see there for how a test skips, or fails under
//! `TLSDOCTOR_REQUIRE_RECEIVERS=1`, when they are missing.
//!
//! `tests/otlp_agent.rs` does the same with the real agent and real failing
//! handshakes.
#![allow(
    clippy::too_many_lines,
    reason = "end-to-end scenarios read top to bottom"
)]
// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use agent::diagnosis::{Alternative, Cause, Confidence, Diagnosis, Evidence, Source};
use agent::evidence::certificates::CertificateFact;
use agent::evidence::openssl::{OpensslErrorFact, OpensslFacts, SslCallFact, VerifyResultFact};
use agent::evidence::sockets::{SocketFacts, TcpStateFact};
use agent::evidence::wire::{AlertFact, ClientHelloFacts, MessageFact, ServerHelloFacts, TlsFacts};
use agent::outcome::{Endpoint, HandshakeOutcome, HandshakeResult, Role, sample_failure};
use agent::sinks::otlp::{OtlpConfig, OtlpExporter, Protocol, SpanIds, attr, event};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value as Json;
use tlsdoctor_tests::receivers::{
    Phoenix, assert_time, attr_of, jint, jstr, jstrs, jtime, nanos, receivers, rotel_spans, skip,
    start_phoenix, start_rotel, start_rotel_on,
};
use tlsdoctor_tests::{free_port, rss_anon_kib};

// --- outcomes --------------------------------------------------------------------

/// Whole milliseconds, so Phoenix's microsecond storage keeps them exactly.
fn now_ms() -> DateTime<Utc> {
    let now = Utc::now();
    Utc.timestamp_millis_opt(now.timestamp_millis())
        .single()
        .unwrap_or(now)
}

fn ms(base: DateTime<Utc>, n: i64) -> DateTime<Utc> {
    base + chrono::Duration::milliseconds(n)
}

/// A 32-byte ClientHello random, distinct per `seed`.
fn random_for(seed: u64) -> String {
    format!("{:016x}{:048x}", seed, 0x7157_d0c7_u64)
}

/// The two ends of one failed handshake, as the agents on the client's and
/// on the server's host report it: curl rejects nginx's incomplete chain and
/// sends `unknown_ca`; nginx sees the alert.
fn handshake_pair(random: &str, base: DateTime<Utc>) -> (HandshakeOutcome, HandshakeOutcome) {
    let client_ep = Endpoint {
        ip: Some("10.1.2.3".parse().unwrap()),
        port: Some(51234),
        ..Endpoint::default()
    };
    let server_ep = Endpoint {
        ip: Some("10.0.0.5".parse().unwrap()),
        port: Some(443),
        ..Endpoint::default()
    };
    let alert = AlertFact {
        time: Some(ms(base, 5)),
        sender: Role::Client,
        level: "fatal".into(),
        description: "unknown_ca".into(),
        code: 48,
    };
    let tls = TlsFacts {
        sni: Some("api.example.com".into()),
        offered_versions: vec!["TLS 1.2".into()],
        negotiated_version: Some("TLS 1.2".into()),
        alert: Some(alert.clone()),
        client_hello: Some(ClientHelloFacts {
            time: Some(ms(base, 1)),
            legacy_version: "TLS 1.2".into(),
            supported_versions: vec![],
            cipher_suites: vec![
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".into(),
            ],
            alpn: vec!["h2".into(), "http/1.1".into()],
            supported_groups: vec!["x25519".into()],
            signature_algorithms: vec!["rsa_pss_rsae_sha256".into()],
            random: random.into(),
        }),
        server_hello: Some(ServerHelloFacts {
            time: Some(ms(base, 3)),
            version: "TLS 1.2".into(),
            cipher_suite: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            alpn: Some("h2".into()),
            random: "22".repeat(32),
            hello_retry_request: false,
        }),
        server_certificates: vec![CertificateFact {
            subject: "CN=api.example.com".into(),
            issuer: "CN=Example Intermediate CA".into(),
            common_name: Some("api.example.com".into()),
            sans: vec!["api.example.com".into()],
            serial: "0a".into(),
            not_before: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            not_after: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
            self_signed: false,
            is_ca: false,
            key_type: "RSA".into(),
            key_bits: Some(2048),
            signature_algorithm: "sha256WithRSAEncryption".into(),
            sha256: "c0ffee".repeat(10) + "c0ff",
        }],
        alerts: vec![alert],
        messages: vec![
            MessageFact {
                time: Some(ms(base, 1)),
                sender: Role::Client,
                message: "ClientHello".into(),
            },
            MessageFact {
                time: Some(ms(base, 3)),
                sender: Role::Server,
                message: "ServerHello".into(),
            },
            MessageFact {
                time: Some(ms(base, 3)),
                sender: Role::Server,
                message: "Certificate".into(),
            },
        ],
        ..TlsFacts::default()
    };
    let client = HandshakeOutcome {
        id: format!("client-host-{}", &random[..8]),
        time: base,
        end_time: ms(base, 7),
        role: Role::Client,
        cause: Cause::ChainIncomplete,
        client: Endpoint {
            pid: Some(4242),
            comm: Some("curl".into()),
            exe: Some("/usr/bin/curl".into()),
            container_id: Some("3f4e5d6c7b8a".into()),
            ..client_ep.clone()
        },
        server: server_ep.clone(),
        tls: tls.clone(),
        openssl: OpensslFacts {
            calls: vec![SslCallFact {
                time: ms(base, 6),
                function: "SSL_connect".into(),
                ret: -1,
            }],
            errors: vec![OpensslErrorFact {
                time: ms(base, 5),
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
            tcp_states: vec![TcpStateFact {
                time: ms(base, 7),
                from: "ESTABLISHED".into(),
                to: "FIN_WAIT1".into(),
            }],
            closed_by: Some("local".into()),
            bytes_sent: 517,
            bytes_received: 2900,
            ..SocketFacts::default()
        },
        diagnosis: {
            let mut d = Diagnosis::new(
                Cause::ChainIncomplete,
                Confidence::High,
                "api.example.com:443 sends its leaf without the intermediate",
            )
            .evidence(Evidence::new(
                Source::Wire,
                "server sent 1 certificate, issued by CN=Example Intermediate CA",
            ))
            .evidence(Evidence::new(
                Source::Openssl,
                "verify result 20: unable to get local issuer certificate",
            ))
            .fix("Serve the full chain (leaf + intermediate) on api.example.com:443");
            d.alternatives.push(Alternative {
                cause: Cause::UntrustedRoot,
                why: "a private CA missing from the client's trust store".into(),
            });
            d
        },
        host: Some("client-host".into()),
        ..sample_failure()
    };
    let server = HandshakeOutcome {
        id: format!("server-host-{}", &random[..8]),
        time: ms(base, 1),
        end_time: ms(base, 6),
        role: Role::Server,
        cause: Cause::ChainIncomplete,
        client: client_ep,
        server: Endpoint {
            pid: Some(901),
            comm: Some("nginx".into()),
            exe: Some("/usr/sbin/nginx".into()),
            ..server_ep
        },
        tls,
        socket: SocketFacts {
            closed_by: Some("peer".into()),
            ..SocketFacts::default()
        },
        diagnosis: Diagnosis::new(
            Cause::ChainIncomplete,
            Confidence::Medium,
            "clients reject this server's chain (unknown_ca): the intermediate is missing",
        )
        .evidence(
            Evidence::new(Source::Host, "ssl_certificate holds 1 certificate")
                .at("/etc/nginx/sites-enabled/api.conf:12"),
        )
        .fix("ssl_certificate /etc/ssl/api-fullchain.pem;")
        .fix_at(Some("/etc/nginx/sites-enabled/api.conf:12".into())),
        host: Some("server-host".into()),
        ..sample_failure()
    };
    (client, server)
}

/// A connect refused: no ClientHello, so random ids.
fn refused(base: DateTime<Utc>, n: u64) -> HandshakeOutcome {
    HandshakeOutcome {
        id: format!("refused-{n}"),
        time: base,
        end_time: ms(base, 1),
        role: Role::Client,
        cause: Cause::PortNotListening,
        client: Endpoint {
            ip: Some("10.1.2.3".parse().unwrap()),
            port: Some(40000),
            pid: Some(4243),
            comm: Some("wget".into()),
            ..Endpoint::default()
        },
        server: Endpoint {
            ip: Some("10.0.0.9".parse().unwrap()),
            port: Some(8443),
            ..Endpoint::default()
        },
        socket: SocketFacts {
            connect_errno: Some(libc::ECONNREFUSED),
            connect_error: Some("ECONNREFUSED".into()),
            ..SocketFacts::default()
        },
        diagnosis: Diagnosis::new(
            Cause::PortNotListening,
            Confidence::High,
            "nothing listens on 10.0.0.9:8443",
        ),
        host: Some("client-host".into()),
        ..sample_failure()
    }
}

fn test_config(protocol: Protocol, endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint: Some(endpoint),
        protocol,
        service_name: "tlsdoctor-test".into(),
        headers: vec![("x-tlsdoctor-test".into(), "1".into())],
        timeout: Duration::from_secs(3),
        scheduled_delay: Duration::from_millis(100),
        shutdown_timeout: Duration::from_secs(10),
        ..OtlpConfig::default()
    }
}

fn phoenix_spans(phoenix: &Phoenix, project: &str, want: usize) -> Vec<Json> {
    phoenix.wait_for_spans(
        project,
        Duration::from_secs(30),
        &format!("{want} spans"),
        |spans| spans.len() >= want,
    )
}

// --- tests -------------------------------------------------------------------------

#[test]
fn phoenix_receives_spans_over_grpc_and_http() {
    let test = "phoenix_receives_spans_over_grpc_and_http";
    let Some(rx) = receivers(test) else { return };
    let phoenix = match start_phoenix(&rx.phoenix, false) {
        Ok(p) => p,
        Err(why) => return skip(test, &why),
    };

    for (n, protocol) in [Protocol::Grpc, Protocol::HttpProtobuf]
        .into_iter()
        .enumerate()
    {
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://127.0.0.1:{}", phoenix.grpc_port),
            Protocol::HttpProtobuf => format!("http://127.0.0.1:{}/v1/traces", phoenix.http_port),
        };
        // Phoenix files spans under the project this resource attribute names.
        let project = format!("tlsdoctor-{}", if n == 0 { "grpc" } else { "http" });
        let mut config = test_config(protocol, endpoint);
        config.resource_attributes = vec![("openinference.project.name".into(), project.clone())];
        // Sample every success, so one shows up too.
        config.sample_success_ratio = 1.0;

        let base = now_ms();
        let random = random_for(1000 + n as u64);
        let (client, server) = handshake_pair(&random, base);
        let refused = refused(base, n as u64);
        let mut success = server.clone();
        success.id = format!("success-{n}");
        success.result = HandshakeResult::Success;
        success.tls.alert = None;
        success.tls.alerts.clear();
        success.tls.client_hello.as_mut().unwrap().random = random_for(2000 + n as u64);

        let exporter = OtlpExporter::new(config).expect("exporter builds");
        exporter.export(&client);
        exporter.export(&server);
        exporter.export(&refused);
        exporter.export(&success);
        assert!(
            exporter.flush(Duration::from_secs(10)),
            "{protocol:?}: flush timed out"
        );
        let stats = exporter.stats();
        assert_eq!(stats.exported, 4, "{protocol:?}: {stats:?}");
        assert_eq!(exporter.dropped(), 0, "{protocol:?}: {stats:?}");
        exporter.shutdown();

        let spans = phoenix_spans(&phoenix, &project, 4);
        assert_eq!(spans.len(), 4, "{protocol:?}: {spans:#?}");
        let by_outcome = |id: &str| {
            spans
                .iter()
                .find(|s| {
                    attr_of(&s["attributes"], attr::OUTCOME_ID)
                        .and_then(|v| v["string_value"].as_str())
                        == Some(id)
                })
                .unwrap_or_else(|| panic!("{protocol:?}: no span for outcome {id}"))
        };
        let c = by_outcome(&client.id);
        let s = by_outcome(&server.id);
        let r = by_outcome(&refused.id);
        let ok = by_outcome(&success.id);

        // Client span: ids derived from the random, root of the trace.
        let ids = SpanIds::from_client_random(&random, Role::Client).unwrap();
        assert_eq!(c["name"], "tls.handshake");
        assert_eq!(c["trace_id"], ids.trace_id.to_string());
        assert_eq!(c["span_id"], ids.span_id.to_string());
        assert!(
            c["parent_span_id"].is_null() || c["parent_span_id"] == "",
            "{}",
            c["parent_span_id"]
        );
        assert_time(&c["start_time_unix_nano"], client.time, "client start");
        assert_time(&c["end_time_unix_nano"], client.end_time, "client end");
        assert_eq!(c["status"]["code"], 2, "status ERROR");
        assert_eq!(c["status"]["message"], client.diagnosis.summary);
        let a = &c["attributes"];
        assert_eq!(jstr(a, "error.type"), "chain-incomplete");
        assert_eq!(jstr(a, "server.address"), "api.example.com");
        assert_eq!(jint(a, "server.port"), 443);
        assert_eq!(jstr(a, "client.address"), "10.1.2.3");
        assert_eq!(jstr(a, "network.peer.address"), "10.0.0.5");
        assert_eq!(jstr(a, "tls.protocol.name"), "tls");
        assert_eq!(jstr(a, "tls.protocol.version"), "1.2");
        assert_eq!(
            jstr(a, "tls.cipher"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(jstr(a, "tls.server.issuer"), "CN=Example Intermediate CA");
        assert_eq!(jstr(a, "tls.server.not_after"), "2027-01-01T00:00:00.000Z");
        assert_eq!(
            jstr(a, "tls.server.hash.sha256"),
            ("c0ffee".repeat(10) + "c0ff").to_uppercase()
        );
        assert_eq!(
            jstrs(a, "tls.client.supported_ciphers"),
            [
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"
            ]
        );
        assert_eq!(jint(a, "process.pid"), 4242);
        assert_eq!(jstr(a, "process.executable.name"), "curl");
        assert_eq!(jstr(a, "container.id"), "3f4e5d6c7b8a");
        assert_eq!(jstr(a, attr::CAUSE), "chain-incomplete");
        assert_eq!(jstr(a, attr::CONFIDENCE), "high");
        assert_eq!(
            jstrs(a, attr::EVIDENCE),
            [
                "W: server sent 1 certificate, issued by CN=Example Intermediate CA",
                "U: verify result 20: unable to get local issuer certificate",
            ]
        );
        assert_eq!(
            jstrs(a, attr::ALTERNATIVES),
            ["untrusted-root: a private CA missing from the client's trust store"]
        );
        assert_eq!(
            jstrs(a, attr::OPENSSL_REASONS),
            ["certificate verify failed"]
        );
        assert_eq!(
            jstr(a, attr::OPENSSL_VERIFY_RESULT),
            "unable to get local issuer certificate"
        );

        // Events, each at its fact's time, in order.
        let events: Vec<(String, i64)> = c["events"]
            .as_array()
            .expect("events")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_string(),
                    jtime(&e["time_unix_nano"]),
                )
            })
            .collect();
        let want = [
            (event::TLS_MESSAGE, ms(base, 1)),
            (event::TLS_MESSAGE, ms(base, 3)),
            (event::TLS_MESSAGE, ms(base, 3)),
            (event::TLS_ALERT, ms(base, 5)),
            (event::OPENSSL_ERROR, ms(base, 5)),
            (event::OPENSSL_CALL, ms(base, 6)),
            (event::TCP_STATE, ms(base, 7)),
        ];
        let mut got_sorted = events.clone();
        got_sorted.sort_by_key(|(_, t)| *t);
        assert_eq!(got_sorted.len(), want.len(), "{protocol:?}: {events:?}");
        for ((got_name, got_t), (want_name, want_t)) in got_sorted.iter().zip(want) {
            assert_eq!(got_name, want_name);
            assert!(
                (got_t - nanos(want_t)).abs() <= 1_000,
                "{got_name}: {got_t} vs {}",
                nanos(want_t)
            );
        }
        let alert = c["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == event::TLS_ALERT)
            .unwrap();
        assert_eq!(
            jstr(&alert["attributes"], attr::ALERT_DESCRIPTION),
            "unknown_ca"
        );
        assert_eq!(jstr(&alert["attributes"], attr::SENDER), "client");

        // Server span: same trace, nested under the client span.
        assert_eq!(s["trace_id"], c["trace_id"]);
        assert_eq!(s["parent_span_id"], c["span_id"]);
        assert_ne!(s["span_id"], c["span_id"]);
        assert_eq!(s["status"]["code"], 2);
        assert_eq!(jstr(&s["attributes"], attr::ROLE), "server");
        assert_eq!(jstr(&s["attributes"], "process.executable.name"), "nginx");
        assert_eq!(
            jstr(&s["attributes"], attr::FIX_LOCATION),
            "/etc/nginx/sites-enabled/api.conf:12"
        );
        assert_time(&s["start_time_unix_nano"], server.time, "server start");

        // No ClientHello: a trace of its own.
        assert_ne!(r["trace_id"], c["trace_id"]);
        assert!(r["parent_span_id"].is_null() || r["parent_span_id"] == "");
        assert_eq!(jstr(&r["attributes"], "error.type"), "port-not-listening");
        assert_eq!(
            jint(&r["attributes"], attr::CONNECT_ERRNO),
            i64::from(libc::ECONNREFUSED)
        );
        assert_eq!(jstr(&r["attributes"], "server.address"), "10.0.0.9");

        // A sampled success: status unset, no error.type.
        assert_eq!(
            ok["status"]["code"].as_i64().unwrap_or(0),
            0,
            "{}",
            ok["status"]
        );
        assert!(attr_of(&ok["attributes"], "error.type").is_none());
        assert_eq!(jstr(&ok["attributes"], attr::RESULT), "success");
    }
}

#[test]
fn https_collector_with_private_ca() {
    let test = "https_collector_with_private_ca";
    let Some(rx) = receivers(test) else { return };
    let phoenix = match start_phoenix(&rx.phoenix, true) {
        Ok(p) => p,
        Err(why) => return skip(test, &why),
    };
    let ca = phoenix.ca.clone().expect("a TLS Phoenix has a CA");
    for (n, protocol) in [Protocol::Grpc, Protocol::HttpProtobuf]
        .into_iter()
        .enumerate()
    {
        let endpoint = match protocol {
            Protocol::Grpc => format!("https://127.0.0.1:{}", phoenix.grpc_port),
            Protocol::HttpProtobuf => format!("https://127.0.0.1:{}/v1/traces", phoenix.http_port),
        };
        let project = format!("tlsdoctor-https-{n}");
        let mut config = test_config(protocol, endpoint);
        config.timeout = Duration::from_secs(2);
        config.resource_attributes = vec![("openinference.project.name".into(), project.clone())];

        // With the system trust store only, the private CA is refused: the
        // collector's certificate really is verified.
        match OtlpExporter::new(config.clone()) {
            Ok(untrusting) => {
                untrusting.export(&refused(now_ms(), 100 + n as u64));
                assert!(untrusting.flush(Duration::from_secs(10)));
                let stats = untrusting.stats();
                assert_eq!(
                    (stats.exported, stats.dropped_export_failed),
                    (0, 1),
                    "{protocol:?}: {stats:?}"
                );
                untrusting.shutdown();
            }
            // No system CA store on this machine: nothing to show here.
            Err(e) => eprintln!("{protocol:?}: no system-roots exporter ({e})"),
        }

        config.certificate = Some(ca.clone());
        let random = random_for(5000 + n as u64);
        let (client, server) = handshake_pair(&random, now_ms());
        let exporter = OtlpExporter::new(config).expect("exporter builds");
        exporter.export(&client);
        exporter.export(&server);
        assert!(exporter.flush(Duration::from_secs(10)));
        let stats = exporter.stats();
        assert_eq!(
            (stats.exported, exporter.dropped()),
            (2, 0),
            "{protocol:?}: {stats:?}"
        );
        exporter.shutdown();

        let spans = phoenix_spans(&phoenix, &project, 2);
        let ids = SpanIds::from_client_random(&random, Role::Server).unwrap();
        let server_span = spans
            .iter()
            .find(|s| s["span_id"] == ids.span_id.to_string())
            .unwrap_or_else(|| panic!("{protocol:?}: no server span in {spans:#?}"));
        assert_eq!(server_span["trace_id"], ids.trace_id.to_string());
        assert_eq!(
            server_span["parent_span_id"],
            ids.parent_span_id.unwrap().to_string()
        );
    }
}

#[test]
fn rotel_sees_kind_parent_and_resource() {
    let test = "rotel_sees_kind_parent_and_resource";
    let Some(rx) = receivers(test) else { return };
    let rotel = match start_rotel(&rx.rotel) {
        Ok(r) => r,
        Err(why) => return skip(test, &why),
    };
    for (n, protocol) in [Protocol::Grpc, Protocol::HttpProtobuf]
        .into_iter()
        .enumerate()
    {
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://127.0.0.1:{}", rotel.grpc_port),
            Protocol::HttpProtobuf => format!("http://127.0.0.1:{}/v1/traces", rotel.http_port),
        };
        let mut config = test_config(protocol, endpoint);
        config.resource_attributes = vec![
            ("k8s.node.name".into(), "node-7".into()),
            ("deployment.environment".into(), "test".into()),
        ];
        let random = random_for(3000 + n as u64);
        let (client, server) = handshake_pair(&random, now_ms());
        let exporter = OtlpExporter::new(config).expect("exporter builds");
        exporter.export(&client);
        exporter.export(&server);
        assert!(exporter.flush(Duration::from_secs(10)));
        assert_eq!(
            exporter.stats().exported,
            2,
            "{protocol:?}: {:?}",
            exporter.stats()
        );
        exporter.shutdown();

        let client_ids = SpanIds::from_client_random(&random, Role::Client).unwrap();
        let server_ids = SpanIds::from_client_random(&random, Role::Server).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let (c, s) = loop {
            let spans = rotel_spans(&rotel.proc.log());
            let find = |id: String| spans.iter().position(|s| s.id == id);
            if let (Some(c), Some(s)) = (
                find(client_ids.span_id.to_string()),
                find(server_ids.span_id.to_string()),
            ) {
                let mut spans = spans;
                let s_span = spans.swap_remove(s);
                let c_span = spans.swap_remove(if c == spans.len() { s } else { c });
                break (c_span, s_span);
            }
            assert!(
                Instant::now() < deadline,
                "{protocol:?}: rotel did not print both spans:\n{}",
                rotel.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(c.name, "tls.handshake");
        assert_eq!(c.kind, "SPAN_KIND_CLIENT", "{c:?}");
        assert_eq!(s.kind, "SPAN_KIND_SERVER", "{s:?}");
        assert_eq!(c.trace_id, client_ids.trace_id.to_string());
        assert_eq!(s.trace_id, c.trace_id);
        assert_eq!(s.parent_id, c.id);
        assert_eq!(c.parent_id, "");
        // rotel prints exact nanoseconds.
        assert_eq!(c.start, nanos(client.time).to_string());
        assert_eq!(c.end, nanos(client.end_time).to_string());
        assert_eq!(s.start, nanos(server.time).to_string());
        assert_eq!(c.status_code, "STATUS_CODE_ERROR");
        assert_eq!(c.status_message, client.diagnosis.summary);
        assert!(
            c.text.contains("-> error.type: Str(chain-incomplete)"),
            "{}",
            c.text
        );
        assert!(
            c.text.contains("-> Name: tlsdoctor.tls.alert"),
            "{}",
            c.text
        );
        for want in [
            "-> service.name: Str(tlsdoctor-test)".to_string(),
            format!("-> service.version: Str({})", env!("CARGO_PKG_VERSION")),
            "-> k8s.node.name: Str(node-7)".to_string(),
            "-> deployment.environment: Str(test)".to_string(),
            "-> host.name: Str(".to_string(),
            "-> telemetry.sdk.language: Str(rust)".to_string(),
        ] {
            assert!(
                c.resource.contains(&want),
                "{protocol:?}: no {want:?} in resource:\n{}",
                c.resource
            );
        }
    }
}

/// Everything `tracing` logs in this test process (the export thread logs
/// through the global subscriber), for counting the exporter's warnings.
fn captured_logs() -> &'static std::sync::Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static std::sync::Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: &'static std::sync::Mutex<Vec<u8>> =
            Box::leak(Box::new(std::sync::Mutex::new(Vec::new())));
        let _ = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogWriter(logs))
            .try_init();
        logs
    })
}

struct LogWriter(&'static std::sync::Mutex<Vec<u8>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines about `endpoint` containing `text`.
fn count_logs(endpoint: &str, text: &str) -> usize {
    let logs = captured_logs()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains(text) && l.contains(&format!("endpoint={endpoint}")))
        .count()
}

fn rss_kib() -> u64 {
    rss_anon_kib(std::process::id()).unwrap_or(0)
}

#[test]
fn collector_down_then_up() {
    let test = "collector_down_then_up";
    let Some(rx) = receivers(test) else { return };
    // Before the first exporter exists, so its thread logs into the capture.
    captured_logs();
    for (n, protocol) in [Protocol::Grpc, Protocol::HttpProtobuf]
        .into_iter()
        .enumerate()
    {
        let grpc_port = free_port();
        // rotel's HTTP port is only known once it runs; for HTTP the
        // exporter needs it up front, so reserve both.
        let http_port = free_port();
        let endpoint = match protocol {
            Protocol::Grpc => format!("http://127.0.0.1:{grpc_port}"),
            Protocol::HttpProtobuf => format!("http://127.0.0.1:{http_port}/v1/traces"),
        };
        let config = OtlpConfig {
            max_queue_size: 256,
            max_export_batch_size: 64,
            timeout: Duration::from_millis(500),
            scheduled_delay: Duration::from_millis(50),
            shutdown_timeout: Duration::from_secs(3),
            ..test_config(protocol, endpoint)
        };
        let endpoint = config.endpoint_url();
        let exporter = OtlpExporter::new(config).expect("exporter builds");

        // Nothing listens: 10k failures go nowhere, quickly, in bounded memory.
        let base = now_ms();
        let (template, _) = handshake_pair(&random_for(0), base);
        let rss_before = rss_kib();
        let started = Instant::now();
        let mut max_queued = 0;
        for i in 0..10_000u64 {
            let mut o = template.clone();
            o.tls.client_hello.as_mut().unwrap().random = random_for(10_000 * (n as u64 + 1) + i);
            exporter.export(&o);
            max_queued = max_queued.max(exporter.stats().queued);
        }
        let elapsed = started.elapsed();
        let grown_kib = rss_kib().saturating_sub(rss_before);
        assert!(
            elapsed < Duration::from_secs(5),
            "{protocol:?}: export() took {elapsed:?} for 10k"
        );
        assert!(
            max_queued <= 256,
            "{protocol:?}: queue reached {max_queued}"
        );
        // 256 queued spans are well under a megabyte each way; this only
        // catches an unbounded queue (10k spans would be far more).
        assert!(
            grown_kib < 64 * 1024,
            "{protocol:?}: RSS grew {grown_kib} KiB"
        );
        exporter.flush(Duration::from_secs(5));
        let down = exporter.stats();
        assert!(exporter.dropped() > 0, "{protocol:?}: {down:?}");
        assert!(down.dropped_queue_full > 0, "{protocol:?}: {down:?}");
        assert_eq!(down.exported, 0, "{protocol:?}: {down:?}");
        eprintln!("{protocol:?} collector down: {down:?}, 10k export() calls in {elapsed:?}");

        // The collector comes up on that port: later spans arrive.
        let rotel = match start_rotel_on(&rx.rotel, grpc_port, http_port) {
            Ok(r) => r,
            Err(why) => return skip(test, &why),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut attempt = 0u64;
        loop {
            attempt += 1;
            let random = random_for(900_000 + 1000 * n as u64 + attempt);
            let (o, _) = handshake_pair(&random, now_ms());
            exporter.export(&o);
            exporter.flush(Duration::from_secs(5));
            let id = SpanIds::from_client_random(&random, Role::Client)
                .unwrap()
                .span_id
                .to_string();
            if rotel_spans(&rotel.proc.log()).iter().any(|s| s.id == id) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{protocol:?}: no span reached rotel within 30 s of it starting: {:?}\n{}",
                exporter.stats(),
                rotel.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let up = exporter.stats();
        assert!(up.exported >= 1, "{protocol:?}: {up:?}");
        // Dozens of failed batches, yet one warning, and one line on recovery.
        assert_eq!(
            count_logs(&endpoint, "OTLP export failing"),
            1,
            "{protocol:?}"
        );
        assert_eq!(
            count_logs(&endpoint, "OTLP export still failing"),
            0,
            "{protocol:?}"
        );
        assert_eq!(
            count_logs(&endpoint, "OTLP export recovered"),
            1,
            "{protocol:?}"
        );
        eprintln!("{protocol:?} collector up after {attempt} attempt(s): {up:?}");
        exporter.shutdown();
    }
}
