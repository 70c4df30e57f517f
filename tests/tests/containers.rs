//! A containerised server (root, real nginx, real clients): nginx runs in
//! its own mount namespace with its config, certificates and error log on
//! a tmpfs only that namespace sees -- the host has an empty directory at
//! the same path. The agent must read them through /proc/PID/root to name
//! the cause and the config line, and `agent diagnose` must report the
//! server's blocks and certificate findings from there.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use agent::diagnosis::Cause;
use serde_json::Value;
use tlsdoctor_tests::agent::{agent, agent_binary};
use tlsdoctor_tests::clients::python_tls;
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::hostile::fake_nginx_in_mount_namespace;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::scenario::{
    BOTH, Expect, HOST_STATE_SETTLE, assert_control_clean, curl_to, expect, has_evidence_at,
};
use tlsdoctor_tests::servers::nginx_in_mount_namespace;

/// The leaf served without its intermediate, TLS 1.3 only: the chain is
/// encrypted on the wire, so only the certificate file inside the
/// container shows what is missing, and only the container's nginx.conf
/// names the line to fix.
#[test]
fn chain_incomplete_in_a_containerised_nginx() {
    let agent = agent();
    let pki = Pki::new();
    let leaf = pki.leaf(&LeafSpec::new("container.test"));
    let (port, control) = (free_port(), free_port());
    let block = |port: u16, cert: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name container.test;\n    \
             ssl_certificate {{root}}/{cert};\n    ssl_certificate_key {{root}}/leaf.key;\n    \
             ssl_protocols TLSv1.3;\n    location / {{\n      return 200 \"ok\\n\";\n    }}\n  }}\n"
        )
    };
    let nginx = nginx_in_mount_namespace(
        &[port, control],
        &[
            ("leaf.pem", &leaf.cert),
            ("fullchain.pem", &leaf.fullchain),
            ("leaf.key", &leaf.key),
        ],
        &format!(
            "{}{}",
            block(port, "leaf.pem"),
            block(control, "fullchain.pem")
        ),
    );
    std::thread::sleep(HOST_STATE_SETTLE);
    let pid = nginx.server.pid;
    let root = nginx.root.display().to_string();

    // The premise: the files exist in nginx's namespace only.
    assert!(
        !nginx.config().exists(),
        "{} must not exist on the host",
        nginx.config().display()
    );
    let through = format!("/proc/{pid}/root");
    assert!(
        Path::new(&through)
            .join(nginx.config().strip_prefix("/").unwrap())
            .exists(),
        "{} must be readable through {through}",
        nginx.config().display()
    );

    let cert_at = nginx.line_of(&format!("ssl_certificate {root}/leaf.pem;"));
    let ca = pki.ca_file.display().to_string();
    let curl_run = curl_to("container.test", port, &["--cacert", &ca]);
    assert!(
        !curl_run.success,
        "curl against a leaf-only chain must fail: {curl_run:#?}"
    );
    let py = python_tls(port, "container.test", Some(&pki.ca_file), 0.0, &[]);
    assert!(
        !py.success,
        "python against a leaf-only chain must fail: {py:#?}"
    );
    let good = curl_to("container.test", control, &["--cacert", &ca]);
    assert!(good.success, "curl, full chain: {good:#?}");
    let controls_done = Instant::now();

    let expected = Expect::cause(Cause::ChainIncomplete).fixed_at(cert_at.clone());
    for client in [curl_run.pid, py.pid] {
        for r in expect(agent, port, client, BOTH, &expected) {
            assert!(
                has_evidence_at(&r, &cert_at),
                "the served file, cited at the container's {cert_at}: {:#?}",
                r.diagnosis.evidence
            );
            assert!(
                r.diagnosis.evidence.iter().any(|e| e
                    .fact
                    .contains(&format!("in the container of pid {pid}"))
                    && e.fact.contains(&through)),
                "the diagnosis says the files are the container's: {:#?}",
                r.diagnosis.evidence
            );
            assert!(
                r.diagnosis
                    .remediation
                    .contains(&format!("in the container of pid {pid}")),
                "{}",
                r.diagnosis.remediation
            );
        }
    }
    assert_control_clean(agent, control, controls_done);

    // The host report: the server, its blocks and the certificate read
    // through its root, and the finding at the container's line.
    let out = Command::new(agent_binary())
        .args(["diagnose", "--json", "--ca", &ca, "--journal"])
        .arg(std::env::temp_dir().join(format!("tlsdoctor-ct-none-{}.jsonl", std::process::id())))
        .output()
        .expect("running agent diagnose");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let config = nginx.config().display().to_string();
    let server = report["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["main_file"] == config.as_str())
        .unwrap_or_else(|| panic!("no server for {config}: {report:#}"));
    assert_eq!(server["running"], true, "{server:#}");
    assert!(server["error"].is_null(), "{server:#}");
    assert_eq!(server["root"]["kind"], "process", "{server:#}");
    assert_eq!(server["root"]["pid"], pid, "{server:#}");
    assert_eq!(server["read_through"], through.as_str(), "{server:#}");
    let blocks = server["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), 2, "{server:#}");
    for b in blocks {
        assert!(
            b["location"]
                .as_str()
                .is_some_and(|l| l.starts_with(&config)),
            "{b:#}"
        );
        let leaf = &b["certificates"][0];
        assert!(
            leaf["sans"]
                .as_array()
                .is_some_and(|s| s.iter().any(|n| n == "container.test")),
            "the certificate, read through {through}: {b:#}"
        );
    }
    let listener = report["listeners"]
        .as_array()
        .expect("listeners")
        .iter()
        .find(|l| l["port"] == port)
        .unwrap_or_else(|| panic!("no listener on {port}: {report:#}"));
    assert_eq!(listener["tls"], true, "{listener:#}");
    assert!(
        listener["config"].as_array().is_some_and(|c| c
            .iter()
            .any(|l| l.as_str().is_some_and(|l| l.starts_with(&config)))),
        "{listener:#}"
    );
    let finding = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| {
            f["cause"] == "chain-incomplete"
                && f["evidence"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|e| e["location"] == cert_at.as_str()))
        })
        .unwrap_or_else(|| panic!("no chain-incomplete finding at {cert_at}: {report:#}"));
    assert!(
        finding["fix_location"].is_null() || finding["fix_location"] == cert_at.as_str(),
        "{finding:#}"
    );
    drop(nginx);
}

/// `agent diagnose --json`, run through `wrapper` (e.g. setpriv), with no
/// journal; the report and everything it printed.
fn diagnose_json(wrapper: &[&str]) -> (Value, String) {
    let mut cmd = match wrapper.split_first() {
        Some((program, args)) => {
            let mut cmd = Command::new(program);
            cmd.args(args).arg(agent_binary());
            cmd
        }
        None => Command::new(agent_binary()),
    };
    let out = cmd
        .args(["diagnose", "--json", "--journal"])
        .arg(std::env::temp_dir().join(format!("tlsdoctor-ct-none-{}.jsonl", std::process::id())))
        .output()
        .expect("running agent diagnose");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {printed}"));
    (report, printed)
}

/// The server of `report` whose main file is `config`.
fn server_of<'a>(report: &'a Value, config: &Path) -> &'a Value {
    let config = config.display().to_string();
    report["servers"]
        .as_array()
        .expect("servers")
        .iter()
        .find(|s| s["main_file"] == config.as_str())
        .unwrap_or_else(|| panic!("no server for {config}: {report:#}"))
}

/// A non-root container's config includes a file only root may read, and
/// a file that is not a config at all: the agent (root) reads the first
/// with the container's rights -- so not at all -- and quotes neither.
#[test]
fn a_non_root_containers_files_are_read_with_its_own_rights() {
    let fake = fake_nginx_in_mount_namespace(
        &[
            (
                "nginx.conf",
                "http {\n  include secret.conf;\n  include junk.conf;\n}\n",
                0o644,
            ),
            ("secret.conf", "S3CR3T-only-root-may-read-this\n", 0o600),
            ("junk.conf", "S3CR3T-not-a-config\n", 0o644),
        ],
        65534,
    );
    let (report, printed) = diagnose_json(&[]);
    assert!(
        !printed.contains("S3CR3T"),
        "file content reached the report: {printed}"
    );
    let server = server_of(&report, &fake.config());
    assert_eq!(server["root"]["kind"], "process", "{server:#}");
    assert_eq!(server["root"]["pid"], fake.pid, "{server:#}");
    assert_eq!(server["root"]["reads_as"]["uid"], 65534, "{server:#}");
    assert!(server["error"].is_null(), "{server:#}");
    let advice = |location: &str| -> Vec<String> {
        report["advice"]
            .as_array()
            .expect("advice")
            .iter()
            .filter(|a| {
                a["location"]
                    .as_str()
                    .is_some_and(|l| l.starts_with(location))
            })
            .map(|a| a["text"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let config = fake.config().display().to_string();
    let secret = fake.root.join("secret.conf").display().to_string();
    let denied = advice(&format!("{config}:2"));
    assert!(
        denied
            .iter()
            .any(|t| t.contains(&format!("cannot include {secret}"))
                && t.contains("ermission denied")),
        "the root-only include is refused as it is for the server: {denied:?}\n{report:#}"
    );
    let junk = fake.root.join("junk.conf").display().to_string();
    let garbage = advice(&format!("{junk}:1"));
    assert!(
        garbage
            .iter()
            .any(|t| t.contains("a directive is not terminated")),
        "the non-config file is a problem at its line, not quoted: {garbage:?}\n{report:#}"
    );
}

/// `agent diagnose` run without the rights to read a container's mount
/// namespace: the server's files are not read at all -- not the host's
/// files at the same paths in their place (a decoy here).
#[test]
fn a_container_whose_namespace_is_hidden_is_not_read_from_the_host() {
    let fake = fake_nginx_in_mount_namespace(&[("nginx.conf", "http { }\n", 0o644)], 0);
    let decoy_port = free_port();
    // Visible on the host only (the container has a tmpfs over it).
    std::fs::write(
        fake.config(),
        format!(
            "http {{ server {{ listen 127.0.0.1:{decoy_port} ssl; server_name decoy.test; }} }}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        fake.config(),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let (report, printed) = diagnose_json(&[
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]);
    let server = server_of(&report, &fake.config());
    assert_eq!(server["root"]["kind"], "unreadable", "{server:#}");
    assert!(
        server["error"]
            .as_str()
            .is_some_and(|e| e.contains("not readable")),
        "{server:#}"
    );
    assert!(
        server["blocks"].as_array().is_none_or(|b| b.is_empty()),
        "the host's file was read in the container's place: {server:#}"
    );
    assert!(!printed.contains("decoy.test"), "{printed}");
}
