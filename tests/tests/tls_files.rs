//! TLS code wherever a process maps it (root, the real agent): OpenSSL
//! linked into an executable (Node.js), a container whose libssl path
//! leads to a host file, a library replaced on disk while it is probed.
#![allow(
    clippy::too_many_lines,
    reason = "end-to-end scenarios read top to bottom"
)]
// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agent::diagnosis::Cause;
use agent::outcome::HandshakeOutcome;
use serde_json::Value;
use tlsdoctor_tests::agent::{Agent, agent};
use tlsdoctor_tests::clients::{node_links_openssl_statically, node_path, node_tls};
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::scenario::{CLIENT, Expect, expect};
use tlsdoctor_tests::servers::{nginx, nginx_tls_block};
use tlsdoctor_tests::{TempDir, free_port};

/// Waits until status.json satisfies `done`; returns it.
fn wait_status(agent: &Agent, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = agent.status()
            && done(&status)
        {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; status: {}\nagent log:\n{}",
            serde_json::to_string_pretty(&agent.status()).unwrap_or_default(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The `libraries` entry of status.json for the file (dev, inode), if any.
fn library(status: &Value, dev: u64, inode: u64) -> Option<&Value> {
    status["libraries"]
        .as_array()?
        .iter()
        .find(|l| l["dev"].as_u64() == Some(dev) && l["inode"].as_u64() == Some(inode))
}

/// A process that only keeps `program` mapped, killed on drop.
struct Keeper(Child);

impl Keeper {
    fn start(cmd: &mut Command) -> Keeper {
        Keeper(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting a process that maps the file"),
        )
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_reasons(r: &HandshakeOutcome) -> String {
    format!(
        "reasons {:?}, verify result {:?}",
        r.openssl.reasons, r.openssl.verify_result
    )
}

/// Node.js v20 from nodesource carries OpenSSL 3 in its own executable
/// (`ldd /usr/bin/node` lists no libssl; `nm -D` shows `SSL_do_handshake`,
/// `ERR_vset_error`, `ERR_new`): this test exercises that static linkage.
/// The agent finds the entry points in the executable, probes its inode,
/// and node's failures carry OpenSSL's own verdicts.
#[test]
fn node_with_openssl_in_its_executable_is_probed_and_its_failures_carry_openssl_reasons() {
    let agent = agent();
    assert!(
        node_links_openssl_statically(),
        "this test exercises OpenSSL linked into node's executable; {} links a shared \
         libssl (a Debian nodejs?): install the nodesource build",
        node_path().display()
    );
    let node = node_path();
    let meta = std::fs::metadata(&node).unwrap();
    // A node process that stays: the executable is mapped, so the agent
    // inspects it and keeps it probed for the short-lived clients below.
    let keeper = Keeper::start(Command::new(&node).args(["-e", "setTimeout(() => {}, 120000)"]));
    let status = wait_status(agent, "node's executable probed", |s| {
        library(s, meta.dev(), meta.ino())
            .is_some_and(|l| l["attached"].as_array().is_some_and(|a| !a.is_empty()))
    });
    let lib = library(&status, meta.dev(), meta.ino()).unwrap();
    assert_eq!(lib["kind"], "ssl-and-crypto", "{lib:#}");
    assert_eq!(lib["flavor"], "openssl3", "{lib:#}");
    let attached: Vec<&str> = lib["attached"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for probe in [
        "SSL_do_handshake",
        "ERR_vset_error",
        "X509_STORE_CTX_get_error",
    ] {
        assert!(
            attached.iter().any(|a| a.starts_with(probe)),
            "{probe} not probed in node: {lib:#}"
        );
    }
    // The keeper is counted as covered, not as `no-tls-library`.
    let keeper_pid = keeper.0.id();
    wait_status(agent, "the node process covered", |s| {
        s["uncovered"][keeper_pid.to_string()].is_null()
            && s["coverage"]["covered"].as_u64().unwrap_or(0) > 0
    });

    let pki = Pki::new();
    // 1. untrusted-root: a self-signed certificate.
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    let self_signed = pki.leaf(&spec);
    // 2. certificate-expired: a leaf of the trusted CA, expired yesterday.
    let mut spec = LeafSpec::new("localhost");
    spec.not_before_days = -30;
    spec.not_after_days = -1;
    let expired = pki.leaf(&spec);
    // 3. protocol-version-mismatch: TLS 1.3 only, node held to TLS 1.2.
    let good = pki.leaf(&LeafSpec::new("localhost"));
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let servers = [
        nginx(
            p1,
            &nginx_tls_block(p1, "localhost", &self_signed.cert, &self_signed.key, ""),
        ),
        nginx(
            p2,
            &nginx_tls_block(p2, "localhost", &expired.fullchain, &expired.key, ""),
        ),
        nginx(
            p3,
            &nginx_tls_block(
                p3,
                "localhost",
                &good.fullchain,
                &good.key,
                "    ssl_protocols TLSv1.3;",
            ),
        ),
    ];

    let ca = Some(pki.ca_file.as_path());
    let untrusted = node_tls(p1, "localhost", None, "");
    assert!(
        untrusted
            .stdout
            .contains("FAIL DEPTH_ZERO_SELF_SIGNED_CERT"),
        "{untrusted:#?}"
    );
    let stale = node_tls(p2, "localhost", ca, "");
    assert!(stale.stdout.contains("FAIL CERT_HAS_EXPIRED"), "{stale:#?}");
    let old = node_tls(p3, "localhost", ca, "maxVersion: 'TLSv1.2'");
    assert!(old.stdout.contains("FAIL"), "{old:#?}");

    let r = &expect(
        agent,
        p1,
        untrusted.pid,
        CLIENT,
        &Expect::cause(Cause::UntrustedRoot),
    )[0];
    assert_eq!(r.client.comm.as_deref(), Some("node"));
    assert_eq!(
        r.openssl.verify_result.as_ref().map(|v| v.code),
        Some(18),
        "node's own X.509 verdict: {}",
        openssl_reasons(r)
    );
    // certificate-expired, also on this VM whose clock is not synchronized:
    // its possible error (seconds) cannot explain a certificate that expired
    // a day ago (the clock rule, docs/diagnosis.md).
    let r = &expect(
        agent,
        p2,
        stale.pid,
        CLIENT,
        &Expect::cause(Cause::CertificateExpired),
    )[0];
    assert_eq!(
        r.openssl.verify_result.as_ref().map(|v| v.code),
        Some(10),
        "node's own X.509 verdict: {}",
        openssl_reasons(r)
    );
    let r = &expect(
        agent,
        p3,
        old.pid,
        CLIENT,
        &Expect::cause(Cause::ProtocolVersionMismatch),
    )[0];
    assert!(
        r.openssl
            .reasons
            .iter()
            .any(|t| t.contains("protocol version")),
        "node's OpenSSL reason for the version mismatch: {}",
        openssl_reasons(r)
    );
    drop(servers);
    drop(keeper);
}

/// Issue 12.1. A container maps its own libssl, then turns that path into
/// a symlink to an absolute host path (between the agent reading its maps
/// and opening the file). Resolved from the host through `/proc/PID/root`,
/// the link lands on the host file: probes at offsets the container
/// chooses, in a file every host process may map. The agent resolves the
/// path inside the container's root (`openat2(RESOLVE_IN_ROOT)`), where
/// the link names nothing, and opens the mapping itself instead: the file
/// it gets is the one the process maps, never the host's.
#[test]
fn a_container_libssl_turned_into_a_host_symlink_is_never_opened_on_the_host() {
    use agent::capture::tls_libs::{self, LibKind, lib_kind, open_mapped};
    tlsdoctor_tests::require_root();
    let id = std::process::id();
    // The host library the container aims at, in a directory the
    // container covers with an empty tmpfs (as a container's own root
    // would not have it).
    let bait_dir = std::path::PathBuf::from(format!("/srv/tlsdoctor-e2e-bait-{id}"));
    std::fs::create_dir_all(&bait_dir).unwrap();
    let bait = bait_dir.join("libssl.so.3");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &bait).unwrap();
    let bait_inode = std::fs::metadata(&bait).unwrap().ino();
    let ct = std::path::PathBuf::from(format!("/srv/tlsdoctor-e2e-ctlib-{id}"));
    std::fs::create_dir_all(&ct).unwrap();
    let flags = TempDir::new("ct-loaded");
    let loaded = flags.join("loaded");
    let (c, b) = (ct.display().to_string(), bait_dir.display().to_string());
    let script = format!(
        "set -e; mount -t tmpfs tmpfs '{c}'; mount -t tmpfs tmpfs '{b}'; \
         cp /usr/lib/x86_64-linux-gnu/libssl.so.3 /usr/lib/x86_64-linux-gnu/libcrypto.so.3 '{c}'/; \
         exec env LD_LIBRARY_PATH='{c}' python3 -c \
         'import ssl, time; open(\"{}\", \"w\").close(); time.sleep(120)'",
        loaded.display()
    );
    let container = Keeper::start(Command::new("unshare").args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
    ]));
    let pid = container.0.id();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !loaded.exists() {
        assert!(
            Instant::now() < deadline,
            "the container's python never loaded ssl"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The agent reads the maps: the container's own libssl, on its tmpfs.
    let maps = tls_libs::files_of(pid).expect("the container's maps");
    let mapped = maps
        .files
        .iter()
        .find(|f| lib_kind(&f.display()) == Some(LibKind::Ssl))
        .expect("the container's libssl is mapped")
        .clone();
    assert_eq!(
        mapped.path,
        ct.join("libssl.so.3").as_os_str().as_encoded_bytes()
    );
    // Then the container swaps the path for a symlink to the host file.
    let in_ct = |name: &str| format!("/proc/{pid}/root{c}/{name}");
    std::os::unix::fs::symlink(&bait, in_ct("link")).unwrap();
    std::fs::rename(in_ct("link"), in_ct("libssl.so.3")).unwrap();
    // The premise: resolved from the host, the path is the host's file.
    assert_eq!(
        std::fs::metadata(in_ct("libssl.so.3")).unwrap().ino(),
        bait_inode,
        "the symlink must lead to the host file when followed from the host"
    );
    let opened = open_mapped(pid, &mapped).expect("the mapped file, through the mapping");
    assert_eq!(opened.id, mapped.id);
    assert_ne!(opened.id.inode, bait_inode);
    assert_eq!(opened.file.metadata().unwrap().ino(), mapped.id.inode);
    assert!(
        opened.via.contains("/map_files/"),
        "opened through {}, not the mapping",
        opened.via
    );
    drop(container);
    let _ = std::fs::remove_file(&bait);
    let _ = std::fs::remove_dir(&bait_dir);
    let _ = std::fs::remove_dir(&ct);
}

/// Issue 12.9. Probes belong to a file while a process maps it: a
/// library replaced on disk (a new file renamed over the path, as package
/// upgrades do) gets its successor probed when a process maps that, and
/// the old file's probes are detached once the last process that mapped
/// it is gone.
#[test]
fn a_replaced_library_is_detached_and_its_successor_probed() {
    let agent = Agent::start(&["--rescan-seconds", "1"]);
    let libs = TempDir::new("libssl-replaced");
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(format!("/usr/lib/x86_64-linux-gnu/{lib}"), libs.join(lib)).unwrap();
    }
    let ssl = libs.join("libssl.so.3");
    let dir = libs.path().display().to_string();
    let python = || {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", "import ssl, time; time.sleep(120)"])
            .env("LD_LIBRARY_PATH", &dir);
        Keeper::start(&mut cmd)
    };
    let old = std::fs::metadata(&ssl).unwrap();
    let first = python();
    wait_status(&agent, "the private libssl probed", |s| {
        library(s, old.dev(), old.ino())
            .is_some_and(|l| l["attached"].as_array().is_some_and(|a| !a.is_empty()))
    });
    // Replaced on disk: a new inode at the same path.
    let staged = libs.join("libssl.so.3.new");
    std::fs::copy("/usr/lib/x86_64-linux-gnu/libssl.so.3", &staged).unwrap();
    std::fs::rename(&staged, &ssl).unwrap();
    let new = std::fs::metadata(&ssl).unwrap();
    assert_ne!(new.ino(), old.ino());
    drop(first);
    let second = python();
    wait_status(&agent, "the new file probed, the old one detached", |s| {
        library(s, new.dev(), new.ino())
            .is_some_and(|l| l["attached"].as_array().is_some_and(|a| !a.is_empty()))
            && library(s, old.dev(), old.ino()).is_none()
    });
    assert!(
        agent.log().contains("no process maps it any more"),
        "the detach is logged with its reason:\n{}",
        agent.log()
    );
    drop(second);
}
