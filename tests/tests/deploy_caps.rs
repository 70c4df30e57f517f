//! The DaemonSet's least privilege, proven on this host (root): the real
//! agent runs under exactly the capabilities deploy/agent/daemonset.yaml adds
//! (read from it by deploy/check_manifests.py), as a container runtime
//! would give them to uid 0 with `drop: [ALL]`: bounding, permitted and
//! effective set to that list, nothing inheritable or ambient
//! (`setpriv`), in a mount namespace whose tracefs is read-only like the
//! DaemonSet's mount (`unshare`). It must record a failing curl handshake
//! with wire facts (tracepoints) and OpenSSL facts (uprobes), and answer
//! 200 on /readyz.
//!
//! What each capability is for, each shown by taking it away (the agent
//! runs as uid 0 here as in the pod, so the kernel's checks are about
//! capabilities, not the uid):
//! - `SYS_ADMIN`: uprobes. The uprobe PMU's `perf_event_open()` requires
//!   CAP_SYS_ADMIN again since the 2025 fix "perf: Require CAP_SYS_ADMIN for
//!   uprobes"; without it the agent runs on wire facts only, every uprobe
//!   refused with EACCES.
//! - `BPF` (programs, maps) and `PERFMON` (tracepoints, tracing helpers):
//!   implied by SYS_ADMIN, so removing one alone changes nothing; removing
//!   it with SYS_ADMIN stops the agent at start with a clear error.
//! - `SYS_PTRACE`: `/proc/PID/exe`, `/proc/PID/root` (a container's files,
//!   its libssl among them) and `/proc/PID/fd/N` of a process holding
//!   capabilities the agent lacks — every root server and container:
//!   without it nginx's record has no executable. (`/proc/PID/maps` is
//!   readable with PERFMON alone on this kernel, so coverage is not the
//!   test.)
//! - `DAC_READ_SEARCH`: `/proc/PID/fd` (listening socket → process, what
//!   the agent's listener table walks) and the files of servers running as
//!   another user; without it the kernel refuses uid 0 (shown with `ls`
//!   under the same confinement, as no test server here runs as another
//!   user).
//!
//! `SYS_RESOURCE` is not in the list: the first test passing without it is
//! the proof (kernel 5.11+; see the DaemonSet).

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::outcome::{HandshakeOutcome, Role};
use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::clients::curl;
use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::servers::{Server, nginx, nginx_tls_block};

/// The capabilities deploy/agent/daemonset.yaml adds, e.g. `["BPF", "PERFMON"]`.
fn daemonset_capabilities() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("deploy/check_manifests.py"))
        .arg("--capabilities")
        .output()
        .expect("running deploy/check_manifests.py");
    assert!(
        out.status.success(),
        "deploy/check_manifests.py --capabilities: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let caps: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    assert!(!caps.is_empty(), "the DaemonSet adds no capability");
    caps
}

/// The capability list without `cap`.
fn without(caps: &[String], cap: &str) -> Vec<String> {
    assert!(
        caps.iter().any(|c| c == cap),
        "{cap} is not in the DaemonSet's list {caps:?}"
    );
    caps.iter().filter(|c| *c != cap).cloned().collect()
}

/// Bit numbers (linux/capability.h) of the capabilities named here.
fn cap_bit(name: &str) -> u32 {
    match name {
        "CHOWN" => 0,
        "DAC_OVERRIDE" => 1,
        "DAC_READ_SEARCH" => 2,
        "NET_ADMIN" => 12,
        "NET_RAW" => 13,
        "IPC_LOCK" => 14,
        "SYS_PTRACE" => 19,
        "SYS_ADMIN" => 21,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("capability {other}: add its bit number to this test"),
    }
}

/// A wrapper that runs its command as uid 0 with only `caps`, in a mount
/// namespace where /sys/kernel/tracing is read-only. Everything `exec`s, so
/// the command keeps the wrapper's pid.
fn confined(caps: &[String]) -> Vec<String> {
    let bounding = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{}", c.to_ascii_lowercase())))
        .collect::<Vec<_>>()
        .join(",");
    [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount --bind /sys/kernel/tracing /sys/kernel/tracing && \
         mount -o remount,bind,ro /sys/kernel/tracing && exec \"$@\"",
        "sh",
        "setpriv",
        &format!("--bounding-set={bounding}"),
        "--inh-caps=-all",
        "--ambient-caps=-all",
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// One capability mask line of /proc/PID/status (e.g. `CapEff`).
fn cap_mask(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("process status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .trim();
    u64::from_str_radix(hex, 16).expect("a hex capability mask")
}

/// A plain HTTP GET on loopback: (status code, body).
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// nginx (as root, every capability) with a self-signed certificate.
fn self_signed_nginx(pki: &Pki) -> Server {
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    nginx(
        port,
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
    )
}

/// Waits up to 30 s for the agent's status.json to satisfy `done`.
fn wait_status(agent: &Agent, what: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = agent.status()
            && done(&status)
        {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out waiting for {what} in status.json: {}\nagent log:\n{}",
                serde_json::to_string_pretty(&agent.status()).unwrap_or_default(),
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The coverage status.json gives process `pid` (`None`: covered or not
/// listed).
fn uncovered_kind(status: &serde_json::Value, pid: u32) -> Option<String> {
    status["uncovered"][pid.to_string()]["coverage"]["status"]
        .as_str()
        .map(String::from)
}

#[test]
fn the_daemonset_capabilities_are_enough_for_tracepoints_uprobes_and_readiness() {
    tlsdoctor_tests::require_root();
    let caps = daemonset_capabilities();
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let agent = Agent::launch(&confined(&caps), &["--metrics-addr", &metrics_addr])
        .unwrap_or_else(|log| panic!("the agent under {caps:?} did not start:\n{log}"));

    // The confinement took: exactly these capabilities, none to pass on.
    let expected = caps.iter().fold(0u64, |m, c| m | 1 << cap_bit(c));
    let pid = agent.pid();
    assert_eq!(cap_mask(pid, "CapEff"), expected, "effective, {caps:?}");
    assert_eq!(cap_mask(pid, "CapPrm"), expected, "permitted, {caps:?}");
    assert_eq!(cap_mask(pid, "CapBnd"), expected, "bounding, {caps:?}");
    assert_eq!(cap_mask(pid, "CapInh"), 0, "inheritable");
    assert_eq!(cap_mask(pid, "CapAmb"), 0, "ambient");
    let mountinfo =
        std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).expect("agent mountinfo");
    assert!(
        mountinfo.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(4) == Some(&"/sys/kernel/tracing")
                && f.get(5).is_some_and(|o| o.split(',').any(|x| x == "ro"))
        }),
        "the agent's tracefs is not read-only:\n{mountinfo}"
    );

    // Attached, draining: ready.
    let (code, body) = http_get(metrics_port, "/readyz").expect("GET /readyz");
    assert_eq!(code, 200, "/readyz: {body}\nagent log:\n{}", agent.log());
    assert!(body.starts_with("ok\n"), "{body}");
    let (code, body) = http_get(metrics_port, "/healthz").expect("GET /healthz");
    assert_eq!(code, 200, "/healthz: {body}");

    // A real failure: curl rejects nginx's self-signed certificate.
    let pki = Pki::new();
    let server = self_signed_nginx(&pki);
    let port = server.port;
    let run = curl(&[&format!("https://localhost:{port}/")]);
    assert!(!run.success, "curl must reject a self-signed certificate");
    let client_of = |rs: &[HandshakeOutcome]| {
        rs.iter()
            .find(|r| r.role == Role::Client && r.client.pid == Some(run.pid))
            .cloned()
    };
    let records = agent.wait_for(port, "curl's failure with OpenSSL facts, both ends", |rs| {
        client_of(rs).is_some_and(|c| !c.openssl.calls.is_empty() && c.tls.sni.is_some())
            && rs.iter().any(|r| r.role == Role::Server)
    });
    let client = client_of(&records).expect("found above");
    // Tracepoints: the ClientHello from curl's socket.
    assert_eq!(client.tls.sni.as_deref(), Some("localhost"), "{client:#?}");
    // Uprobes: OpenSSL's own verdict inside curl.
    assert!(
        client
            .openssl
            .reasons
            .iter()
            .any(|r| r.contains("certificate verify failed")),
        "{:#?}",
        client.openssl
    );

    // SYS_PTRACE at work: nginx (root, every capability) is named by its
    // executable (/proc/PID/exe).
    let server_rec = records
        .iter()
        .find(|r| r.role == Role::Server)
        .expect("found above");
    assert!(
        server_rec
            .server
            .exe
            .as_deref()
            .is_some_and(|e| e.ends_with("/nginx")),
        "{:#?}",
        server_rec.server
    );
    // nginx's TLS library is probed, not "unreadable".
    wait_status(&agent, "a status with coverage", |s| {
        s["updated"].is_string() && s["covered_processes"].as_u64().unwrap_or(0) > 0
    });
    let status = agent.status().expect("status.json");
    assert_eq!(
        uncovered_kind(&status, server.pid),
        None,
        "nginx {} is uncovered: {}",
        server.pid,
        serde_json::to_string_pretty(&status["uncovered"]).unwrap_or_default()
    );
    // Still ready after the traffic.
    let (code, body) = http_get(metrics_port, "/readyz").expect("GET /readyz");
    assert_eq!(code, 200, "/readyz after traffic: {body}");
}

/// `Err(log)` from an agent started under `caps`, which must not start.
fn must_not_start(caps: &[String]) -> String {
    match Agent::launch(&confined(caps), &[]) {
        Ok(agent) => panic!(
            "the agent started under {caps:?}; the test that removed a capability is wrong\n{}",
            agent.log()
        ),
        Err(log) => log,
    }
}

#[test]
fn without_sys_admin_uprobes_are_refused_and_only_wire_facts_remain() {
    tlsdoctor_tests::require_root();
    let caps = without(&daemonset_capabilities(), "SYS_ADMIN");
    let agent = Agent::launch(&confined(&caps), &[])
        .unwrap_or_else(|log| panic!("the agent under {caps:?} did not start:\n{log}"));
    // The system's libssl is probed at start: every uprobe refused.
    let log = agent.log();
    assert!(
        log.contains("TLS library not probed")
            && log.contains("`perf_event_open` failed: Permission denied"),
        "uprobes attached without SYS_ADMIN (a kernel without the 2025 \
         restriction? then SYS_ADMIN can leave the DaemonSet):\n{log}"
    );
}

#[test]
fn without_bpf_and_sys_admin_the_agent_refuses_to_start_with_a_clear_error() {
    tlsdoctor_tests::require_root();
    let caps = without(&without(&daemonset_capabilities(), "BPF"), "SYS_ADMIN");
    let log = must_not_start(&caps);
    assert!(
        log.contains("error: loading the eBPF programs") && log.contains("Operation not permitted"),
        "unclear error:\n{log}"
    );
}

#[test]
fn without_perfmon_and_sys_admin_the_programs_do_not_load() {
    tlsdoctor_tests::require_root();
    let caps = without(&without(&daemonset_capabilities(), "PERFMON"), "SYS_ADMIN");
    let log = must_not_start(&caps);
    assert!(
        log.contains("error: loading the eBPF programs") && log.contains("Operation not permitted"),
        "unclear error:\n{log}"
    );
}

#[test]
fn without_sys_ptrace_a_root_servers_executable_is_unknown() {
    tlsdoctor_tests::require_root();
    let caps = without(&daemonset_capabilities(), "SYS_PTRACE");
    let agent = Agent::launch(&confined(&caps), &[])
        .unwrap_or_else(|log| panic!("the agent under {caps:?} did not start:\n{log}"));
    let pki = Pki::new();
    let server = self_signed_nginx(&pki);
    let port = server.port;
    let run = curl(&[&format!("https://localhost:{port}/")]);
    assert!(!run.success, "curl must reject a self-signed certificate");
    let records = agent.wait_for(port, "nginx's end of curl's failure", |rs| {
        rs.iter().any(|r| r.role == Role::Server)
    });
    let server_rec = records
        .iter()
        .find(|r| r.role == Role::Server)
        .expect("found above");
    // The process is known (comm comes from the kernel event and
    // /proc/PID/comm), its executable is not: /proc/PID/exe was refused.
    assert_eq!(server_rec.server.comm.as_deref(), Some("nginx"));
    assert_eq!(
        server_rec.server.exe, None,
        "/proc/PID/exe was readable without SYS_PTRACE: {:#?}",
        server_rec.server
    );
}

#[test]
fn without_dac_read_search_uid_0_cannot_list_another_users_fds() {
    tlsdoctor_tests::require_root();
    let caps = daemonset_capabilities();
    // A process of another user, as a server's workers often are.
    let mut other = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sleep",
            "60",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("starting a process as nobody");
    std::thread::sleep(Duration::from_millis(200));
    let fd_dir = format!("/proc/{}/fd", other.id());
    let ls = |caps: &[String]| {
        let wrapper = confined(caps);
        Command::new(&wrapper[0])
            .args(&wrapper[1..])
            .args(["ls", &fd_dir])
            .output()
            .expect("running ls confined")
    };
    let with = ls(&caps);
    let without_it = ls(&without(&caps, "DAC_READ_SEARCH"));
    let _ = other.kill();
    let _ = other.wait();
    assert!(
        with.status.success(),
        "under the DaemonSet's capabilities: {}",
        String::from_utf8_lossy(&with.stderr)
    );
    assert!(
        !without_it.status.success()
            && String::from_utf8_lossy(&without_it.stderr).contains("Permission denied"),
        "without DAC_READ_SEARCH uid 0 still lists {fd_dir}: {:?}",
        without_it
    );
}
