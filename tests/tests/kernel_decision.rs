//! Successes decided in the kernel (root): a handshake whose two sides
//! exchanged application data is confirmed and dropped by the eBPF side, so
//! userspace reads nothing for it; only a counter rises. Every failure and
//! every handshake the kernel cannot confirm still reaches userspace (the
//! rest of the e2e suite checks what is diagnosed from them).

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::clients::{curl, python_tls};
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};

/// A kernel counter from the agent's status file.
fn kernel_counter(status: &serde_json::Value, name: &str) -> u64 {
    status["kernel"][name].as_u64().unwrap_or(0)
}

/// Waits (up to 30 s: the status file is rewritten every 5 s) until the
/// status satisfies `done`, and returns it.
fn wait_status(
    agent: &Agent,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = agent.status()
            && done(&status)
        {
            return status;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what}; status: {}\nagent log:\n{}",
                serde_json::to_string_pretty(&agent.status()).unwrap_or_default(),
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn successes_are_confirmed_in_the_kernel_and_never_read_by_userspace() {
    let agent = Agent::start(&[]);
    let before = wait_status(&agent, "the first status", |s| {
        s["holds"]["enabled"] == true
    });
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("localhost"));
    let port = free_port();
    // nginx 1.22 leaves TLS 1.3 off unless asked.
    let _server = nginx(
        port,
        &nginx_tls_block(
            port,
            "localhost",
            &leaf.fullchain,
            &leaf.key,
            "    ssl_protocols TLSv1.2 TLSv1.3;",
        ),
    );
    let ca = pki.ca_file.display().to_string();
    let url = format!("https://localhost:{port}/");
    const EACH: u64 = 5;
    for version in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"]] {
        for _ in 0..EACH {
            let mut args = vec!["--cacert", &ca];
            args.extend_from_slice(version);
            args.push(&url);
            let run = curl(&args);
            assert!(run.success, "curl {version:?}: {}", run.stderr);
        }
    }
    let py = python_tls(port, "localhost", Some(&pki.ca_file), 0.0, &[]);
    assert!(py.success, "{}", py.stderr);
    let handshakes = 2 * EACH + 1;

    // Both ends of every handshake are on this host and run OpenSSL: the
    // kernel confirms each end once its client sent data and the server
    // answered.
    let rose = |s: &serde_json::Value, name: &str| {
        kernel_counter(s, name).saturating_sub(kernel_counter(&before, name))
    };
    wait_status(&agent, "the confirmed successes", |s| {
        rose(s, "confirmed_success_client") >= handshakes
            && rose(s, "confirmed_success_server") >= handshakes
    });
    // What the kernel confirmed userspace never followed, so it left no
    // record. (How many held records userspace read is not asserted: the
    // agent sees the whole host's traffic, other tests' included.)
    agent.assert_no_records(port, "confirmed successes");
}

#[test]
fn with_show_success_every_handshake_streams_to_userspace() {
    let agent = Agent::start(&["--show-success"]);
    let status = wait_status(&agent, "the first status", |s| s.get("holds").is_some());
    assert_eq!(status["holds"]["enabled"], false, "{status:#}");
}
