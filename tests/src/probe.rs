//! Helpers for the probe's end-to-end tests (`tests/tests/probe*.rs`): the
//! probe against real servers, its report printed (and dumped as JSON with
//! `TLSDOCTOR_PROBE_DUMP=1`).

use std::path::Path;
use std::time::Instant;

use agent::diagnosis::Cause;
use agent::diagnosis::host::HostState;
use agent::probe::{ProbeOptions, ProbeReport, probe};

use crate::servers::{Server, nginx, nginx_tls_block};

/// The site name the tests' certificates are for.
pub const NAME: &str = "site.test";

/// Probe options for 127.0.0.1:port.
pub fn options(port: u16, sni: Option<&str>, ca: Option<&Path>) -> ProbeOptions {
    let mut o = ProbeOptions::new(format!("127.0.0.1:{port}"));
    o.sni = sni.map(str::to_string);
    o.ca = ca.map(Path::to_path_buf);
    o
}

/// Runs the probe (with host state or without) and prints how long it took.
pub fn run_probe(o: &ProbeOptions, with_host: bool) -> ProbeReport {
    let start = Instant::now();
    let mut host = HostState::default();
    let report = probe(o, with_host.then_some(&mut host))
        .unwrap_or_else(|e| panic!("probe of {} failed: {e}", o.target));
    eprintln!(
        "probe {} (sni {:?}): {:?}, root cause {:?}, {} ms (report {} ms)",
        o.target,
        o.sni,
        report.verdict,
        report.root_cause.as_ref().map(|d| d.cause),
        start.elapsed().as_millis(),
        report.duration_ms
    );
    if std::env::var_os("TLSDOCTOR_PROBE_DUMP").is_some() {
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    }
    report
}

/// The root cause's class (panics when there is none).
pub fn root_cause(report: &ProbeReport) -> Cause {
    report
        .root_cause
        .as_ref()
        .map(|d| d.cause)
        .unwrap_or_else(|| panic!("no root cause: {report:#?}"))
}

/// Where the root cause says to fix it (panics when it does not say).
pub fn fix_location(report: &ProbeReport) -> String {
    report
        .root_cause
        .as_ref()
        .and_then(|d| d.fix_location.clone())
        .unwrap_or_else(|| panic!("no fix location: {:#?}", report.root_cause))
}

/// nginx serving `NAME` on 127.0.0.1:port, TLS 1.2 and 1.3.
pub fn nginx_site(port: u16, cert: &Path, key: &Path, extra: &str) -> Server {
    nginx(
        port,
        &nginx_tls_block(
            port,
            NAME,
            cert,
            key,
            &format!("    ssl_protocols TLSv1.2 TLSv1.3;\n{extra}"),
        ),
    )
}

/// A date verdict by this host: `expected`, or clock-skew refining it when
/// this host's clock is unsynchronized (then the certificate only looks so
/// if the clock is wrong, and the engine says that first).
pub fn assert_date_cause(report: &ProbeReport, expected: Cause) {
    let root = report.root_cause.as_ref().expect("a root cause");
    let clock_trusted = agent::evidence::clock::read()
        .map(|c| c.synchronized && c.max_error_us < 1_000_000)
        .unwrap_or(false);
    if clock_trusted {
        assert_eq!(root.cause, expected, "{root:#?}");
    } else {
        assert!(
            root.cause == expected
                || (root.cause == Cause::ClockSkew
                    && root.alternatives.iter().any(|a| a.cause == expected)),
            "{root:#?}"
        );
    }
}
