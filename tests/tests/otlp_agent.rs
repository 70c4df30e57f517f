//! OTLP end to end (root): the real agent exports real handshake failures
//! (nginx with a self-signed certificate, curl rejecting it, both on
//! loopback) to real OTLP receivers, and what arrives is checked against
//! the agent's own journal records of the same handshake.
//!
//! Each test runs its own agent (`Agent::start` with `--otlp-endpoint`) and
//! its own receiver. Every agent sees every handshake on the host, so the
//! tests find their spans by the ids derived from their handshake's
//! ClientHello random, never by counting everything a receiver got.
//!
//! The receivers come from `tlsdoctor_tests::receivers`: without them a
//! test prints a SKIPPED banner and passes, or fails under
//! `TLSDOCTOR_REQUIRE_RECEIVERS=1` (CI, `cargo xtask test`).

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agent::outcome::{HandshakeOutcome, Role};
use agent::sinks::otlp::{SpanIds, attr, event};
use serde_json::Value as Json;
use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::clients::{Run, curl};
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::receivers::{
    PHOENIX_DEFAULT_PROJECT, Phoenix, assert_time, attr_of, jint, jstr, nanos, receivers, skip,
    start_phoenix, start_phoenix_on, start_rotel,
};
use tlsdoctor_tests::servers::{Server, nginx, nginx_tls_block};
use tlsdoctor_tests::{free_port, rss_anon_kib};

/// How long a span may take from the agent's journal to the receiver.
const DELIVERY: Duration = Duration::from_secs(30);

// --- the handshake ------------------------------------------------------------------

/// nginx on a free loopback port with a self-signed certificate for
/// localhost: curl with the system trust store rejects it (`unknown_ca`).
struct Site {
    port: u16,
    _server: Server,
    _pki: Pki,
}

fn self_signed_site() -> Site {
    let pki = Pki::new();
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let server = nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
    );
    Site {
        port,
        _server: server,
        _pki: pki,
    }
}

/// One failing `curl https://localhost:PORT/`.
fn failing_curl(port: u16) -> Run {
    let run = curl(&[&format!("https://localhost:{port}/")]);
    assert!(
        !run.success,
        "curl must reject a self-signed certificate: {}",
        run.stderr
    );
    run
}

/// Both ends of one failed handshake, as the agent journaled them.
struct Handshake {
    client: HandshakeOutcome,
    server: HandshakeOutcome,
    /// The ClientHello random both records carry (hex).
    random: String,
}

impl Handshake {
    fn ids(&self, role: Role) -> SpanIds {
        SpanIds::from_client_random(&self.random, role).expect("a 32-byte random")
    }
}

fn random_of(r: &HandshakeOutcome) -> Option<&str> {
    r.tls.client_hello.as_ref().map(|ch| ch.random.as_str())
}

/// Waits until `agent` journaled both ends of `run`'s handshake with the
/// server on `port`: curl's record (by pid) and nginx's (by curl's port).
fn journaled_handshake(agent: &Agent, port: u16, run: &Run) -> Handshake {
    let client_of = |rs: &[HandshakeOutcome]| {
        rs.iter()
            .find(|r| {
                r.role == Role::Client && r.client.pid == Some(run.pid) && random_of(r).is_some()
            })
            .cloned()
    };
    let server_of = |rs: &[HandshakeOutcome], c: &HandshakeOutcome| {
        rs.iter()
            .find(|r| {
                r.role == Role::Server
                    && r.client.port == c.client.port
                    && random_of(r) == random_of(c)
            })
            .cloned()
    };
    let records = agent.wait_for(port, "both ends of curl's failure", |rs| {
        client_of(rs).is_some_and(|c| server_of(rs, &c).is_some())
    });
    let client = client_of(&records).expect("found above");
    let server = server_of(&records, &client).expect("found above");
    let random = random_of(&client).expect("found above").to_string();
    Handshake {
        client,
        server,
        random,
    }
}

/// "TLS 1.3" → "1.3", as `tls.protocol.version` spells it.
fn version_of(r: &HandshakeOutcome) -> String {
    let text = r
        .tls
        .negotiated_version
        .as_deref()
        .or(r.tls.server_hello.as_ref().map(|sh| sh.version.as_str()))
        .unwrap_or_else(|| panic!("no negotiated version in the journal: {:#?}", r.tls));
    text.strip_prefix("TLS ")
        .unwrap_or_else(|| panic!("not a TLS version: {text}"))
        .to_string()
}

// --- Phoenix ------------------------------------------------------------------------

/// The spans of the trace derived from `hs`, once both ends arrived.
fn phoenix_trace(phoenix: &Phoenix, hs: &Handshake) -> Vec<Json> {
    let trace_id = hs.ids(Role::Client).trace_id.to_string();
    let in_trace = |spans: &[Json]| {
        spans
            .iter()
            .filter(|s| s["trace_id"] == trace_id.as_str())
            .cloned()
            .collect::<Vec<_>>()
    };
    phoenix.wait_for_spans(
        PHOENIX_DEFAULT_PROJECT,
        DELIVERY,
        &format!("client and server span in trace {trace_id}"),
        |spans| in_trace(spans).len() >= 2,
    );
    // Past the agent's export interval (1 s), so a third span of the trace
    // (a duplicate, a stray) would be there too.
    std::thread::sleep(Duration::from_millis(2500));
    let spans = phoenix
        .spans_now(PHOENIX_DEFAULT_PROJECT)
        .unwrap_or_else(|e| panic!("phoenix: {e}"));
    in_trace(&spans)
}

/// A span matches the journal record it was exported from.
fn assert_span_matches_record(span: &Json, r: &HandshakeOutcome, port: u16, what: &str) {
    let a = &span["attributes"];
    assert_eq!(span["name"], "tls.handshake", "{what}");
    assert_eq!(jstr(a, attr::OUTCOME_ID), r.id, "{what}");
    assert_eq!(jstr(a, attr::ROLE), r.role.as_str(), "{what}");
    assert_eq!(jstr(a, "error.type"), r.cause.id(), "{what}: error.type");
    assert_eq!(jstr(a, attr::CAUSE), r.cause.id(), "{what}");
    assert_eq!(r.server.port, Some(port), "{what}: journal");
    assert_eq!(
        jint(a, "server.port"),
        i64::from(port),
        "{what}: server.port"
    );
    assert_eq!(
        jstr(a, "tls.protocol.version"),
        version_of(r),
        "{what}: tls.protocol.version"
    );
    let pid = r.local().pid.expect("the journal names the process");
    assert_eq!(
        jint(a, "process.pid"),
        i64::from(pid),
        "{what}: process.pid"
    );
    assert_time(
        &span["start_time_unix_nano"],
        r.time,
        &format!("{what} start"),
    );
    assert_time(
        &span["end_time_unix_nano"],
        r.end_time,
        &format!("{what} end"),
    );
    assert_eq!(span["status"]["code"], 2, "{what}: status ERROR");
    assert_eq!(
        span["status"]["message"], r.diagnosis.summary,
        "{what}: status message"
    );
    // Every alert the record holds is an event at the alert's time.
    let alerts = if r.tls.alerts.is_empty() {
        r.tls.alert.iter().cloned().collect()
    } else {
        r.tls.alerts.clone()
    };
    let events = span["events"].as_array().cloned().unwrap_or_default();
    for alert in &alerts {
        let found = events.iter().find(|e| {
            e["name"] == event::TLS_ALERT
                && attr_of(&e["attributes"], attr::ALERT_DESCRIPTION)
                    .and_then(|v| v["string_value"].as_str())
                    == Some(alert.description.as_str())
                && attr_of(&e["attributes"], attr::SENDER).and_then(|v| v["string_value"].as_str())
                    == Some(alert.sender.as_str())
        });
        let found = found.unwrap_or_else(|| {
            panic!("{what}: no event for the journal's alert {alert:?} in {events:#?}")
        });
        assert_eq!(
            jint(&found["attributes"], attr::ALERT_CODE),
            i64::from(alert.code)
        );
        if let Some(t) = alert.time {
            assert_time(&found["time_unix_nano"], t, &format!("{what} alert"));
        }
    }
}

/// The client's `unknown_ca` alert, as an event of `span`.
fn assert_client_alert_event(span: &Json, what: &str) {
    let events = span["events"].as_array().cloned().unwrap_or_default();
    assert!(
        events.iter().any(|e| e["name"] == event::TLS_ALERT
            && jstr(&e["attributes"], attr::SENDER) == "client"
            && jstr(&e["attributes"], attr::ALERT_DESCRIPTION) == "unknown_ca"
            && jint(&e["attributes"], attr::ALERT_CODE) == 48),
        "{what}: no unknown_ca alert from the client in {events:#?}"
    );
}

/// curl fails against nginx with the agent exporting to `phoenix` over
/// `protocol`; both spans of that handshake arrive and match the journal.
fn agent_to_phoenix(test: &str, protocol: &str) {
    let Some(rx) = receivers(test) else { return };
    let phoenix = match start_phoenix(&rx.phoenix, false) {
        Ok(p) => p,
        Err(why) => return skip(test, &why),
    };
    let endpoint = match protocol {
        "grpc" => phoenix.grpc_endpoint(),
        _ => phoenix.http_endpoint(),
    };
    let agent = Agent::start(&["--otlp-endpoint", &endpoint, "--otlp-protocol", protocol]);
    let site = self_signed_site();
    let run = failing_curl(site.port);
    let hs = journaled_handshake(&agent, site.port, &run);

    let spans = phoenix_trace(&phoenix, &hs);
    assert_eq!(
        spans.len(),
        2,
        "{protocol}: exactly the client and the server span share the trace: {spans:#?}"
    );
    let (client_ids, server_ids) = (hs.ids(Role::Client), hs.ids(Role::Server));
    let by_id = |id: String| {
        spans
            .iter()
            .find(|s| s["span_id"] == id.as_str())
            .unwrap_or_else(|| panic!("{protocol}: no span {id} in {spans:#?}"))
    };
    let c = by_id(client_ids.span_id.to_string());
    let s = by_id(server_ids.span_id.to_string());

    // The trace: the client span is its root, the server span its child.
    assert_eq!(c["trace_id"], s["trace_id"]);
    assert!(
        c["parent_span_id"].is_null() || c["parent_span_id"] == "",
        "{}",
        c["parent_span_id"]
    );
    assert_eq!(
        s["parent_span_id"], c["span_id"],
        "{protocol}: server's parent"
    );

    // Each span is its journal record.
    assert_eq!(hs.client.client.pid, Some(run.pid));
    assert_eq!(hs.client.client.comm.as_deref(), Some("curl"));
    assert!(hs.server.server.pid.is_some_and(|p| p != 0));
    assert_eq!(hs.server.server.comm.as_deref(), Some("nginx"));
    assert_span_matches_record(c, &hs.client, site.port, &format!("{protocol} client span"));
    assert_span_matches_record(s, &hs.server, site.port, &format!("{protocol} server span"));
    assert_eq!(jint(&c["attributes"], "process.pid"), i64::from(run.pid));
    assert_eq!(jstr(&s["attributes"], "process.executable.name"), "nginx");
    assert_client_alert_event(c, &format!("{protocol} client span"));
}

#[test]
fn agent_exports_both_ends_to_phoenix_over_grpc() {
    agent_to_phoenix("agent_exports_both_ends_to_phoenix_over_grpc", "grpc");
}

#[test]
fn agent_exports_both_ends_to_phoenix_over_http() {
    agent_to_phoenix(
        "agent_exports_both_ends_to_phoenix_over_http",
        "http/protobuf",
    );
}

// --- rotel ----------------------------------------------------------------------------

#[test]
fn agent_spans_have_client_and_server_kinds_at_rotel() {
    let test = "agent_spans_have_client_and_server_kinds_at_rotel";
    let Some(rx) = receivers(test) else { return };
    let rotel = match start_rotel(&rx.rotel) {
        Ok(r) => r,
        Err(why) => return skip(test, &why),
    };
    let agent = Agent::start(&[
        "--otlp-endpoint",
        &rotel.http_endpoint(),
        "--otlp-protocol",
        "http/protobuf",
    ]);
    let site = self_signed_site();
    let run = failing_curl(site.port);
    let hs = journaled_handshake(&agent, site.port, &run);
    let (client_ids, server_ids) = (hs.ids(Role::Client), hs.ids(Role::Server));
    let mut spans = rotel.wait_for_spans(
        &[
            client_ids.span_id.to_string(),
            server_ids.span_id.to_string(),
        ],
        DELIVERY,
        "both ends",
    );
    let s = spans.pop().expect("two spans");
    let c = spans.pop().expect("two spans");

    assert_eq!(c.kind, "SPAN_KIND_CLIENT", "{c:?}");
    assert_eq!(s.kind, "SPAN_KIND_SERVER", "{s:?}");
    assert_eq!(c.name, "tls.handshake");
    assert_eq!(c.trace_id, client_ids.trace_id.to_string());
    assert_eq!(s.trace_id, c.trace_id);
    assert_eq!(s.parent_id, c.id);
    assert_eq!(c.parent_id, "");
    // rotel prints exact nanoseconds: the journal's times, to the nanosecond.
    for (span, r, what) in [(&c, &hs.client, "client"), (&s, &hs.server, "server")] {
        assert_eq!(span.start, nanos(r.time).to_string(), "{what} start");
        assert_eq!(span.end, nanos(r.end_time).to_string(), "{what} end");
        assert_eq!(span.status_code, "STATUS_CODE_ERROR", "{what}");
        assert_eq!(span.status_message, r.diagnosis.summary, "{what}");
        let want = format!("-> error.type: Str({})", r.cause.id());
        assert!(
            span.text.contains(&want),
            "{what}: no {want:?} in\n{}",
            span.text
        );
        let want = format!("-> process.pid: Int({})", r.local().pid.unwrap_or(0));
        assert!(
            span.text.contains(&want),
            "{what}: no {want:?} in\n{}",
            span.text
        );
    }
    assert!(
        c.resource.contains("-> service.name: Str(tlsdoctor)"),
        "{}",
        c.resource
    );
}

// --- collector down, then up --------------------------------------------------------

/// The agent's journal must keep growing, its memory stay bounded, and its
/// status admit the lost spans while nothing listens at its OTLP endpoint;
/// once a collector comes up there, later failures reach it.
#[test]
fn collector_down_then_up() {
    let test = "collector_down_then_up";
    let Some(rx) = receivers(test) else { return };
    const MAX_RSS_KIB: u64 = 64 * 1024;
    let (grpc_port, http_port) = (free_port(), free_port());
    let agent = Agent::start(&[
        "--otlp-endpoint",
        &format!("http://127.0.0.1:{grpc_port}"),
        "--otlp-protocol",
        "grpc",
    ]);
    let pid = agent.pid();
    let site = self_signed_site();
    let rss_start = rss_anon_kib(pid).expect("the agent's RssAnon");

    // Collector down: a few seconds of failures.
    let mut max_rss = rss_start;
    let mut curls = 0;
    let started = Instant::now();
    let mut counts = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        failing_curl(site.port);
        curls += 1;
        max_rss = max_rss.max(rss_anon_kib(pid).expect("the agent runs"));
        if curls % 10 == 0 {
            counts.push(agent.records_for_port(site.port).len());
        }
    }
    let records = agent.wait_for(site.port, "a record per end of every curl", |rs| {
        rs.len() >= 2 * curls
    });
    counts.push(records.len());
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts.first() < counts.last(),
        "the journal keeps growing while the collector is down: {counts:?}"
    );
    // The status file is rewritten every 5 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    let dropped = loop {
        let dropped = agent
            .status()
            .and_then(|s| s["spans_dropped"].as_u64())
            .unwrap_or(0);
        if dropped > 0 {
            break dropped;
        }
        assert!(
            Instant::now() < deadline,
            "status.json never reported dropped spans: {:#?}\n{}",
            agent.status(),
            agent.log()
        );
        // Outcomes keep the sink thread, which updates the count, busy.
        failing_curl(site.port);
        max_rss = max_rss.max(rss_anon_kib(pid).expect("the agent runs"));
        std::thread::sleep(Duration::from_millis(500));
    };
    let status = agent.status().expect("status.json");
    assert_eq!(status["journal_errors"], 0, "{status:#}");
    assert_eq!(status["dropped_outcomes"], 0, "{status:#}");
    eprintln!(
        "collector down: {curls} curls, {} records, spans_dropped {dropped}, RSS {rss_start} → max {max_rss} KiB",
        records.len()
    );
    assert!(
        max_rss < MAX_RSS_KIB,
        "agent RSS reached {max_rss} KiB (started at {rss_start})"
    );

    // The collector comes up on that port: later failures arrive.
    let phoenix = match start_phoenix_on(&rx.phoenix, http_port, grpc_port, false) {
        Ok(p) => p,
        Err(why) => return skip(test, &why),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut attempts = 0;
    let arrived = loop {
        attempts += 1;
        let run = failing_curl(site.port);
        let hs = journaled_handshake(&agent, site.port, &run);
        let trace_id = hs.ids(Role::Client).trace_id.to_string();
        let wait_until = Instant::now() + Duration::from_secs(5);
        let found = loop {
            let spans = phoenix
                .spans_now(PHOENIX_DEFAULT_PROJECT)
                .unwrap_or_default();
            let n = spans
                .iter()
                .filter(|s| s["trace_id"] == trace_id.as_str())
                .count();
            if n == 2 || Instant::now() > wait_until {
                break n == 2;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        if found {
            break hs;
        }
        assert!(
            Instant::now() < deadline,
            "no span reached phoenix within 60 s of it listening ({attempts} attempts)\n{}\n{}",
            agent.log(),
            phoenix.proc.log_tail()
        );
    };
    // One warning for the outage, one line for the recovery (the log
    // reader thread may be a moment behind the export).
    let count = |text: &str| agent.log().matches(text).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count("OTLP export recovered") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(count("OTLP export failing"), 1, "{}", agent.log());
    assert_eq!(count("OTLP export recovered"), 1, "{}", agent.log());
    let spans = phoenix_trace(&phoenix, &arrived);
    let c = spans
        .iter()
        .find(|s| s["span_id"] == arrived.ids(Role::Client).span_id.to_string().as_str())
        .expect("the client span");
    assert_span_matches_record(c, &arrived.client, site.port, "client span after recovery");
    let later = rss_anon_kib(pid).expect("the agent runs");
    eprintln!("collector up: spans arrived after {attempts} attempt(s); RSS {later} KiB");
    assert!(later < MAX_RSS_KIB, "agent RSS reached {later} KiB");
}
