//! `agent diagnose` as an SRE types it (root, real nginx, the real binary):
//! the host report finds the bad configs of an nginx with several server
//! blocks, its JSON follows the documented schema, its exit codes mean what
//! docs/journal.md says, a probe of a broken peer ends inside its timeout,
//! and --watch explains live handshakes.
#![allow(
    clippy::too_many_lines,
    reason = "end-to-end scenarios read top to bottom"
)]
// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::os::fd::FromRawFd as _;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent::diagnosis::Cause;
use serde_json::Value;
use tlsdoctor_tests::agent::agent_binary;
use tlsdoctor_tests::clients::curl;
use tlsdoctor_tests::pki::{Issuer, Key, LeafSpec, Pki};
use tlsdoctor_tests::scenario::{Block, NginxBuilder};
use tlsdoctor_tests::servers::silent_listener;
use tlsdoctor_tests::{TempDir, free_port, require_root};

fn diagnose(args: &[&str]) -> Output {
    Command::new(agent_binary())
        .arg("diagnose")
        .args(args)
        .output()
        .expect("running agent diagnose")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The documented shape of a finding (docs/journal.md).
fn assert_finding_shape(f: &Value) {
    let cause = f["cause"].as_str().expect("cause");
    assert!(Cause::from_id(cause).is_some(), "unknown cause id {cause}");
    for key in ["confidence", "summary", "remediation"] {
        assert!(f[key].is_string(), "finding without {key}: {f}");
    }
    let evidence = f["evidence"].as_array().expect("evidence");
    assert!(!evidence.is_empty(), "finding without evidence: {f}");
    for e in evidence {
        assert!(
            matches!(
                e["source"].as_str(),
                Some("wire" | "openssl" | "socket" | "host")
            ),
            "{e}"
        );
        assert!(e["fact"].is_string(), "{e}");
    }
}

#[test]
fn host_report_finds_the_bad_blocks_of_a_real_nginx() {
    require_root();
    let pki = Pki::new();
    let good = pki.leaf(&LeafSpec::new("good.test"));
    let leaf_only = pki.leaf(&LeafSpec::new("chain.test"));
    let mut expired = LeafSpec::new("expired.test");
    expired.not_before_days = -30;
    expired.not_after_days = -2;
    let expired = pki.leaf(&expired);
    let other = pki.leaf(&LeafSpec::new("other.test"));
    let mut weak = LeafSpec::new("weak.test");
    weak.key = Key::Rsa(1024);
    let weak = pki.leaf(&weak);
    let mut selfsigned = LeafSpec::new("self.test");
    selfsigned.issuer = Issuer::Itself;
    let selfsigned = pki.leaf(&selfsigned);
    let legacy = pki.leaf(&LeafSpec::new("legacy.test"));
    let down = pki.leaf(&LeafSpec::new("notreloaded.test"));
    let port = free_port();
    let down_port = free_port();
    let nginx = NginxBuilder::new()
        .block(Block::tls(port, "good.test", &good.fullchain, &good.key))
        .block(Block::tls(
            port,
            "chain.test",
            &leaf_only.cert,
            &leaf_only.key,
        ))
        .block(Block::tls(
            port,
            "expired.test",
            &expired.fullchain,
            &expired.key,
        ))
        .block(Block::tls(
            port,
            "mismatch.test",
            &other.fullchain,
            &other.key,
        ))
        .block(Block::tls(
            port,
            "self.test",
            &selfsigned.cert,
            &selfsigned.key,
        ))
        .block(
            Block::tls(port, "legacy.test", &legacy.fullchain, &legacy.key)
                .with("ssl_protocols TLSv1 TLSv1.1;"),
        )
        .security_level_0()
        .block(Block::tls(port, "weak.test", &weak.fullchain, &weak.key))
        .start();
    // A block added after nginx started and never reloaded: configured, but
    // nothing listens on its port.
    let conf = std::fs::read_to_string(&nginx.config).expect("nginx.conf");
    let close = conf.rfind('}').expect("the http block's end");
    let added = format!(
        "  server {{\n    listen 127.0.0.1:{down_port} ssl;\n    server_name notreloaded.test;\n    ssl_certificate {};\n    ssl_certificate_key {};\n  }}\n",
        down.fullchain.display(),
        down.key.display()
    );
    let conf = format!("{}{added}{}", &conf[..close], &conf[close..]);
    std::fs::write(&nginx.config, &conf).expect("editing nginx.conf");
    let listen_line = conf
        .lines()
        .position(|l| l.contains(&format!("listen 127.0.0.1:{down_port} ssl;")))
        .map(|i| format!("{}:{}", nginx.config.display(), i + 1))
        .expect("the added listen line");
    let dir = TempDir::new("report");
    let journal = dir.join("journal.jsonl");
    let ca = pki.ca_file.to_str().unwrap();
    let out = diagnose(&["--json", "--journal", journal.to_str().unwrap(), "--ca", ca]);
    assert_eq!(out.status.code(), Some(1), "problems found: exit 1");
    let report = json(&out);
    for key in [
        "generated",
        "listeners",
        "servers",
        "findings",
        "recent_failures",
    ] {
        assert!(!report[key].is_null(), "report without {key}");
    }
    let findings = report["findings"].as_array().expect("findings");
    for f in findings {
        assert_finding_shape(f);
    }
    let expect = |cause: &str, needle: &str| {
        let at = nginx.line_of(needle);
        let found = findings
            .iter()
            .any(|f| f["cause"] == cause && f["fix_location"].as_str() == Some(at.as_str()));
        assert!(
            found,
            "no {cause} finding fixed at {at} ({needle}); findings:\n{}",
            serde_json::to_string_pretty(findings).unwrap()
        );
    };
    expect(
        "chain-incomplete",
        &format!("ssl_certificate {};", leaf_only.cert.display()),
    );
    expect(
        "certificate-expired",
        &format!("ssl_certificate {};", expired.fullchain.display()),
    );
    expect(
        "hostname-mismatch",
        &format!("ssl_certificate {};", other.fullchain.display()),
    );
    expect(
        "untrusted-root",
        &format!("ssl_certificate {};", selfsigned.cert.display()),
    );
    expect(
        "weak-crypto-rejected",
        &format!("ssl_certificate {};", weak.fullchain.display()),
    );
    expect("protocol-version-mismatch", "ssl_protocols TLSv1 TLSv1.1;");
    assert!(
        findings.iter().any(|f| f["cause"] == "port-not-listening"
            && f["fix_location"].as_str() == Some(listen_line.as_str())),
        "no port-not-listening finding at {listen_line}"
    );
    // The good block raises nothing about its certificate.
    let good_file = good.fullchain.display().to_string();
    assert!(
        !findings.iter().any(|f| f["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&good_file))),
        "the correct block must not be flagged: {}",
        serde_json::to_string_pretty(findings).unwrap()
    );
    // The listener and its process are in the report.
    let listeners = report["listeners"].as_array().unwrap();
    assert!(
        listeners
            .iter()
            .any(|l| l["port"] == port && l["tls"] == true && l["comm"] == "nginx"),
        "{listeners:?}"
    );

    // People's rendering carries the same findings.
    let text = diagnose(&["--journal", journal.to_str().unwrap(), "--ca", ca]);
    let text = String::from_utf8_lossy(&text.stdout);
    for section in [
        "Clock",
        "TLS listeners",
        "Findings",
        "chain-incomplete",
        "fix:",
    ] {
        assert!(text.contains(section), "{section} missing:\n{text}");
    }
    drop(nginx);
}

#[test]
fn without_root_the_report_says_what_it_cannot_see_and_still_runs() {
    require_root();
    let dir = TempDir::new("nonroot");
    let journal = dir.join("journal.jsonl");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(agent_binary())
        .args(["diagnose", "--json", "--journal", journal.to_str().unwrap()])
        .output()
        .expect("setpriv");
    let report = json(&out);
    let limitations = report["limitations"].as_array().expect("limitations");
    assert!(
        limitations
            .iter()
            .any(|l| l.as_str().is_some_and(|s| s.contains("not root"))),
        "{limitations:?}"
    );
    assert!(
        report["clock"].is_object(),
        "the clock is readable without root"
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "the report itself succeeded"
    );
}

#[test]
fn probe_exit_codes_and_a_silent_peer_inside_the_timeout() {
    require_root();
    let port = free_port();
    let _silent = silent_listener(port);
    let started = Instant::now();
    let out = diagnose(&[&format!("127.0.0.1:{port}"), "--timeout", "1s", "--json"]);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(
        report["root_cause"]["cause"], "handshake-aborted",
        "{report}"
    );
    assert_finding_shape(&report["root_cause"]);

    // A target the command cannot even parse: its own error, exit 2.
    let bad = diagnose(&["not a target:port:x"]);
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn probe_of_a_correct_server_exits_zero() {
    require_root();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("ok.test"));
    let port = free_port();
    let _nginx = NginxBuilder::new()
        .block(
            Block::tls(port, "ok.test", &leaf.fullchain, &leaf.key)
                .with("ssl_protocols TLSv1.2 TLSv1.3;"),
        )
        .start();
    let out = diagnose(&[
        &format!("127.0.0.1:{port}"),
        "--sni",
        "ok.test",
        "--ca",
        pki.ca_file.to_str().unwrap(),
        "--json",
    ]);
    let report = json(&out);
    assert_eq!(report["verdict"], "ok", "{report}");
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn watch_explains_live_handshakes() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("watch.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _nginx = NginxBuilder::new()
        .block(Block::tls(port, "watch.test", &leaf.cert, &leaf.key))
        .start();
    let mut child = Command::new(agent_binary())
        .args([
            "diagnose",
            "--watch",
            "--duration",
            "120s",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent diagnose --watch");
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    let stdout = lines_of(child.stdout.take().expect("stdout"));
    // Its probes are loaded once it says so; a loaded machine takes longer.
    wait_for_line(&stderr, Duration::from_secs(90), "capturing TLS handshakes");
    let run = curl(&[
        "--resolve",
        &format!("watch.test:{port}:127.0.0.1"),
        &format!("https://watch.test:{port}/"),
    ]);
    assert!(!run.success);
    let client = format!("curl[{}]", run.pid);
    let line = wait_for_line(&stdout, Duration::from_secs(30), &client);
    // SIGINT: the watch stops as on Ctrl-C.
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().expect("watch exit");
    assert!(status.success(), "watch after SIGINT: {status}");
    assert!(line.contains("FAIL"), "{line}");
    assert!(line.contains("untrusted-root"), "{line}");
    let text = stdout.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(
        !text.lines().any(|l| !l.contains(&format!(":{port}"))),
        "--port filters other ports:\n{text}"
    );
}

/// The lines a child writes to `pipe`, collected by a thread as they come.
fn lines_of(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    lines
}

/// Waits until a collected line contains `needle`, and returns it.
fn wait_for_line(lines: &Mutex<Vec<String>>, timeout: Duration, needle: &str) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = lines.lock().map(|l| l.clone()).unwrap_or_default();
        if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {needle:?} within {timeout:?}:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `agent … | head`: the reader is gone before the command writes. The
/// command must stop quietly with its own exit code (no panic, no "Broken
/// pipe" error), as Unix tools do. The pipe's read end is closed before the
/// child starts, so its first write fails with EPIPE every time.
fn assert_quiet_on_closed_pipe(args: &[&str], expected_code: i32) {
    let out = Command::new(agent_binary())
        .args(args)
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .output()
        .expect("agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{args:?} on a closed pipe:\n{stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(expected_code),
        "{args:?} on a closed pipe: {stderr}"
    );
}

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> Stdio {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here only.
    let (read_end, write_end) = unsafe {
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read_end);
    Stdio::from(write_end)
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("pipe.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = tlsdoctor_tests::servers::s_server(port, &leaf.cert, &leaf.key, &[]);
    // A self-signed certificate: the probe fails the target (exit 1).
    let target = format!("127.0.0.1:{port}");
    assert_quiet_on_closed_pipe(&["diagnose", &target, "--sni", "pipe.test", "--json"], 1);
    assert_quiet_on_closed_pipe(&["diagnose", &target, "--sni", "pipe.test"], 1);
    // The host report and `--print-config` write once, at the end.
    let code = diagnose(&["--json"]).status.code().expect("exit code");
    assert_quiet_on_closed_pipe(&["diagnose", "--json"], code);
    assert_quiet_on_closed_pipe(&["run", "--print-config"], 0);
}

#[test]
fn watch_stops_quietly_when_its_reader_goes() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("gone.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = tlsdoctor_tests::servers::s_server(port, &leaf.cert, &leaf.key, &[]);
    let mut child = Command::new(agent_binary())
        .args([
            "diagnose",
            "--watch",
            "--duration",
            "300s",
            "--port",
            &port.to_string(),
        ])
        .stdout(closed_pipe())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent diagnose --watch");
    let stderr = lines_of(child.stderr.take().expect("stderr"));
    wait_for_line(&stderr, Duration::from_secs(90), "capturing TLS handshakes");
    // The first line the watch prints meets the closed pipe: it stops on
    // its own, long before --duration, through its normal shutdown.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let _ = curl(&["--max-time", "5", &format!("https://127.0.0.1:{port}/")]);
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the watch kept running with no reader"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let log = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
    assert!(status.success(), "{status}:\n{log}");
    assert!(log.contains("stdout closed"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
