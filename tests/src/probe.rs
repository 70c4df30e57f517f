//! Helpers for the probe's end-to-end tests (`tests/tests/probe*.rs`): the
//! probe against real servers, its report printed (and dumped as JSON with
//! `TLSDOCTOR_PROBE_DUMP=1`).

use std::path::{Path, PathBuf};
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

// ---------------------------------------------------------------------
// Real clients, for checking the client simulation against them.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use agent::evidence::wire::{Chunk, ClientHelloFacts, WireAssembler};
use agent::outcome::Role;

use crate::TempDir;

const JAVA_CLIENT: &str = r#"
import javax.net.ssl.*;
import java.util.List;

public class ProbeCheck {
    public static void main(String[] args) throws Exception {
        SSLSocketFactory factory = (SSLSocketFactory) SSLSocketFactory.getDefault();
        try (SSLSocket socket = (SSLSocket) factory.createSocket("127.0.0.1", Integer.parseInt(args[0]))) {
            SSLParameters params = socket.getSSLParameters();
            params.setServerNames(List.of(new SNIHostName(args[1])));
            params.setEndpointIdentificationAlgorithm("HTTPS");
            socket.setSSLParameters(params);
            socket.startHandshake();
            System.out.println("OK " + socket.getSession().getProtocol() + " " + socket.getSession().getCipherSuite());
        } catch (Exception e) {
            System.out.println("FAIL " + e);
            System.exit(1);
        }
    }
}
"#;

const GO_CLIENT: &str = r#"
package main

import (
	"crypto/tls"
	"fmt"
	"os"
)

func main() {
	conn, err := tls.Dial("tcp", "127.0.0.1:"+os.Args[1], &tls.Config{ServerName: os.Args[2]})
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	fmt.Println("OK", tls.CipherSuiteName(conn.ConnectionState().CipherSuite))
	conn.Close()
}
"#;

/// curl's library with GnuTLS (libcurl-gnutls), driven through ctypes: the
/// same ClientHello as the `curl` binary of a GnuTLS build.
const CURL_GNUTLS: &str = r#"
import ctypes, sys
lib = ctypes.CDLL("libcurl-gnutls.so.4")
lib.curl_easy_init.restype = ctypes.c_void_p
lib.curl_slist_append.restype = ctypes.c_void_p
lib.curl_slist_append.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
port, name, ca = sys.argv[1], sys.argv[2], sys.argv[3]
h = ctypes.c_void_p(lib.curl_easy_init())
def opt(code, value, kind):
    lib.curl_easy_setopt.argtypes = [ctypes.c_void_p, ctypes.c_int, kind]
    lib.curl_easy_setopt(h, code, value)
opt(10002, ("https://%s:%s/" % (name, port)).encode(), ctypes.c_char_p)  # URL
opt(10203, ctypes.c_void_p(lib.curl_slist_append(None, ("%s:%s:127.0.0.1" % (name, port)).encode())), ctypes.c_void_p)  # RESOLVE
if ca:
    opt(10065, ca.encode(), ctypes.c_char_p)  # CAINFO
opt(13, 10, ctypes.c_long)  # TIMEOUT
opt(41, 0, ctypes.c_long)  # VERBOSE off
sink = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p)(lambda p, s, n, u: s * n)
opt(20011, sink, ctypes.c_void_p)  # WRITEFUNCTION
code = lib.curl_easy_perform(h)
print("OK" if code == 0 else "FAIL curl error %d" % code)
sys.exit(0 if code == 0 else 1)
"#;

/// The real clients, built once per test process.
pub struct RealClients {
    dir: TempDir,
    go: PathBuf,
}

pub fn real_clients() -> &'static RealClients {
    static CLIENTS: OnceLock<RealClients> = OnceLock::new();
    CLIENTS.get_or_init(|| {
        let dir = TempDir::new("real-clients");
        std::fs::write(dir.join("ProbeCheck.java"), JAVA_CLIENT).expect("java source");
        let javac = Command::new("javac")
            .arg("-d")
            .arg(dir.path())
            .arg(dir.join("ProbeCheck.java"))
            .status()
            .expect("running javac");
        assert!(javac.success(), "javac failed");
        std::fs::write(dir.join("main.go"), GO_CLIENT).expect("go source");
        let go = dir.join("probecheck");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&go)
            .arg(dir.join("main.go"))
            .env("GO111MODULE", "off")
            .status()
            .expect("running go build");
        assert!(built.success(), "go build failed");
        RealClients { dir, go }
    })
}

/// A finished real client: did it connect, and what it said.
#[derive(Debug)]
pub struct ClientRun {
    pub connected: bool,
    pub output: String,
}

fn run_client(mut cmd: Command) -> ClientRun {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    ClientRun {
        connected: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

impl RealClients {
    /// Whether the real client behind simulation profile `id` connects to
    /// 127.0.0.1:port for `name`, trusting only `ca`.
    pub fn connect(&self, id: &str, port: u16, name: &str, ca: &Path) -> ClientRun {
        let port_s = port.to_string();
        let cmd = match id {
            "openssl-3.0" => {
                let mut c = Command::new("timeout");
                c.args(["20", "openssl", "s_client", "-connect"])
                    .arg(format!("127.0.0.1:{port}"))
                    .args(["-servername", name, "-verify_hostname", name])
                    .arg("-CAfile")
                    .arg(ca)
                    .arg("-verify_return_error");
                c
            }
            "java-17" => {
                let store = self.java_trust_store(ca);
                let mut c = Command::new("timeout");
                c.args(["30", "java"])
                    .arg(format!("-Djavax.net.ssl.trustStore={}", store.display()))
                    .arg("-Djavax.net.ssl.trustStorePassword=changeit")
                    .arg("-cp")
                    .arg(self.dir.path())
                    .args(["ProbeCheck", &port_s, name]);
                c
            }
            "go-1.19" => {
                let mut c = Command::new("timeout");
                c.arg("20").arg(&self.go).args([&port_s, name]);
                c.env("SSL_CERT_FILE", ca)
                    .env("SSL_CERT_DIR", "/nonexistent");
                c
            }
            "curl-gnutls" => {
                let mut c = Command::new("timeout");
                c.args(["20", "python3", "-c", CURL_GNUTLS, &port_s, name])
                    .arg(ca);
                c
            }
            other => panic!("no real client for profile {other}"),
        };
        run_client(cmd)
    }

    /// A PKCS#12 trust store holding `ca` (Java 17 reads no PEM stores).
    fn java_trust_store(&self, ca: &Path) -> PathBuf {
        let store = self.dir.join(&format!(
            "trust-{}.p12",
            ca.display().to_string().replace('/', "_")
        ));
        if !store.exists() {
            let ok = Command::new("keytool")
                .args(["-importcert", "-noprompt", "-alias", "ca", "-file"])
                .arg(ca)
                .arg("-keystore")
                .arg(&store)
                .args(["-storetype", "PKCS12", "-storepass", "changeit"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running keytool");
            assert!(ok.success(), "keytool failed");
        }
        store
    }

    /// Runs `client` against a listener that reads its ClientHello with the
    /// agent's own wire parser, then closes.
    pub fn capture_hello(&self, id: &str) -> ClientHelloFacts {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let reader = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            conn.set_read_timeout(Some(Duration::from_secs(20))).ok();
            let mut wire = WireAssembler::new();
            let mut offset = 0u32;
            let mut buf = [0u8; 16384];
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                wire.push(Chunk {
                    time: chrono::Utc::now(),
                    sender: Role::Client,
                    stream_offset: offset,
                    flags: 0,
                    bytes: &buf[..n],
                });
                offset += n as u32;
                if wire.facts().client_hello.is_some() {
                    break;
                }
            }
            wire.into_facts().client_hello
        });
        let ca = Path::new("/etc/ssl/certs/ca-certificates.crt");
        let run = self.connect(id, port, NAME, ca);
        reader
            .join()
            .expect("reader thread")
            .unwrap_or_else(|| panic!("no ClientHello from {id}: {run:?}"))
    }
}

/// The simulated verdict of profile `id` in `report`.
pub fn simulated<'a>(report: &'a ProbeReport, id: &str) -> &'a agent::probe::ClientSimulation {
    report
        .clients
        .iter()
        .find(|c| c.client == id)
        .unwrap_or_else(|| panic!("no simulation of {id}: {:#?}", report.clients))
}

/// The real clients this host has, by simulation profile.
pub const REAL_CLIENTS: [&str; 4] = ["openssl-3.0", "java-17", "go-1.19", "curl-gnutls"];

/// Asserts that every real client does what the simulation says, and that
/// the simulation says `expected` (one bool per [`REAL_CLIENTS`] entry).
pub fn assert_clients(report: &ProbeReport, port: u16, ca: &Path, expected: [bool; 4]) {
    let clients = real_clients();
    let mut problems = Vec::new();
    for (id, want) in REAL_CLIENTS.iter().zip(expected) {
        let sim = simulated(report, id);
        let real = clients.connect(id, port, NAME, ca);
        eprintln!(
            "{id}: simulated {} ({}), real {} ({})",
            sim.connects,
            sim.failure.as_deref().unwrap_or("-"),
            real.connected,
            real.output.lines().next().unwrap_or("").trim()
        );
        if sim.connects != real.connected {
            problems.push(format!(
                "{id}: simulated {} but the real client {}: {sim:?}\n{}",
                if sim.connects { "connects" } else { "fails" },
                if real.connected { "connects" } else { "fails" },
                real.output
            ));
        }
        if sim.connects != want {
            problems.push(format!("{id}: expected connects={want}, simulated {sim:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// DH parameters in `dir`: the RFC 7919 ffdhe2048 group, or for `1024` the
/// RFC 5114 1024-bit group (both instant, no prime search).
pub fn dh_params(dir: &TempDir, bits: u32) -> PathBuf {
    let path = dir.join(&format!("dh{bits}.pem"));
    let param = match bits {
        1024 => "dh_rfc5114:1",
        2048 => "group:ffdhe2048",
        other => panic!("no DH group of {other} bits here"),
    };
    let ok = Command::new("openssl")
        .args([
            "genpkey",
            "-genparam",
            "-algorithm",
            "DH",
            "-pkeyopt",
            param,
            "-out",
        ])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("running openssl genpkey");
    assert!(ok.success(), "openssl genpkey -genparam failed");
    path
}

/// The suites the enumeration found for `version` ("TLS 1.2"), by
/// OpenSSL name where there is one.
pub fn suites_of(report: &ProbeReport, version: &str) -> Vec<String> {
    report
        .cipher_suites
        .iter()
        .find(|v| v.version == version)
        .map(|v| {
            v.suites
                .iter()
                .map(|s| s.openssl_name.clone().unwrap_or_else(|| s.name.clone()))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------
// The benchmark's probe phase (called from the bench binary): how long
// `agent diagnose HOST:PORT` takes against a loopback server.

fn median_max(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    (
        ms.get(ms.len() / 2).copied().unwrap_or(0.0),
        ms.last().copied().unwrap_or(0.0),
    )
}

fn time_probes(o: &ProbeOptions, with_host: bool, runs: usize) -> (f64, f64) {
    let mut times = Vec::new();
    for _ in 0..runs {
        let mut host = HostState::default();
        let start = Instant::now();
        let report = probe(o, with_host.then_some(&mut host)).expect("probe");
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(
            report.verdict,
            agent::probe::Verdict::Ok,
            "{:#?}",
            report.findings
        );
    }
    median_max(times)
}

/// The probe's wall time against nginx and `openssl s_server` on loopback,
/// full and `--quick`, with and without host state. Markdown.
pub fn bench(quick: bool) -> String {
    let runs = if quick { 2 } else { 10 };
    let pki = crate::pki::Pki::new();
    let leaf = pki.leaf(&crate::pki::LeafSpec::new(NAME));
    let port = crate::free_port();
    let _nginx = nginx_site(port, &leaf.fullchain, &leaf.key, "");
    let s_port = crate::free_port();
    let chain = pki.ca_bundle().display().to_string();
    let _s_server =
        crate::servers::s_server(s_port, &leaf.cert, &leaf.key, &["-cert_chain", &chain]);
    let mut rows = String::new();
    for (server, port) in [
        ("nginx (1 worker)", port),
        ("openssl s_server (one connection at a time)", s_port),
    ] {
        for (mode, quick_mode) in [("full", false), ("--quick", true)] {
            for with_host in [false, true] {
                let mut o = options(port, Some(NAME), Some(&pki.ca_file));
                o.quick = quick_mode;
                let (median, max) = time_probes(&o, with_host, runs);
                rows.push_str(&format!(
                    "| {server} | {mode} | {} | {median:.0} | {max:.0} |\n",
                    if with_host { "yes" } else { "no" },
                ));
            }
        }
    }
    format!(
        "## `agent diagnose HOST:PORT` (the active probe)\n\nA correct server on loopback (ECDSA P-256, TLS 1.2 and 1.3, OpenSSL's default suites); {runs} probes each, wall time in ms. \"host state\": the listeners, configs, logs and clock are read too (`agent diagnose` does).\n\n| server | mode | host state | median ms | max ms |\n|---|---|---|---|---|\n{rows}\n"
    )
}
