//! Real OTLP receivers that nobody here wrote, for the tests of the OTLP
//! sink (`tests/otlp_phoenix.rs`, the library against them;
//! `tests/otlp_agent.rs`, the real agent against them):
//!
//! * Arize Phoenix (`phoenix serve`): OTLP gRPC and HTTP/protobuf in, REST
//!   (`GET /v1/projects/{project}/spans/otlpv1`, OTLP-shaped JSON) out.
//!   Phoenix keeps names, ids, parents, times (to the microsecond),
//!   attributes, status and events, but not the OTLP span kind (it reports
//!   every span as INTERNAL);
//! * rotel: a small collector whose debug exporter prints every span it
//!   receives, kind, exact nanosecond times and resource included.
//!
//! `tests/receivers.sh` installs both from PyPI into a cached virtualenv on
//! first use (about a minute). Tests start them on free loopback ports in
//! temporary directories and stop them (by process group) when done.
//!
//! When the receivers cannot be installed or started, a test calls [`skip`]:
//! a loud SKIPPED banner saying why, and the test passes — unless
//! `TLSDOCTOR_REQUIRE_RECEIVERS=1`, which turns that into a failure (CI,
//! `cargo xtask test`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::pki::{Issuer, LeafSpec, Pki};
use crate::{TempDir, free_port};

// --- installation and skipping ------------------------------------------------------

/// Where the installed receivers are.
pub struct Receivers {
    pub phoenix: PathBuf,
    pub rotel: PathBuf,
}

/// The installer script, beside this crate's manifest.
pub fn install_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("receivers.sh")
}

fn install_receivers() -> Result<Receivers, String> {
    let script = install_script();
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed ({}): could not install arize-phoenix/rotel from PyPI",
            script.display(),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let path = |key: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .ok_or_else(|| format!("{} printed no usable {key}: {stdout}", script.display()))
    };
    Ok(Receivers {
        phoenix: path("PHOENIX=")?,
        rotel: path("ROTEL=")?,
    })
}

/// The receivers, installed on first use (once per test process). `None`
/// after a [`skip`] of `test` when they cannot be installed.
pub fn receivers(test: &str) -> Option<&'static Receivers> {
    static RECEIVERS: OnceLock<Result<Receivers, String>> = OnceLock::new();
    match RECEIVERS.get_or_init(install_receivers) {
        Ok(r) => Some(r),
        Err(why) => {
            skip(test, why);
            None
        }
    }
}

/// Whether a test that cannot reach its receivers must fail rather than skip.
pub fn receivers_required() -> bool {
    std::env::var_os("TLSDOCTOR_REQUIRE_RECEIVERS").is_some_and(|v| v == "1")
}

/// Reports that `test` cannot run: a banner on stderr, and a panic when
/// [`receivers_required`].
pub fn skip(test: &str, why: &str) {
    let banner = "!".repeat(78);
    // Straight to stderr: libtest captures eprintln! of passing tests, and
    // a skip must not go unnoticed.
    let _ = writeln!(
        std::io::stderr(),
        "\n{banner}\nSKIPPED {test}: {why}\n{banner}\n"
    );
    if receivers_required() {
        panic!("TLSDOCTOR_REQUIRE_RECEIVERS=1 and {test} could not run: {why}");
    }
}

// --- processes and ports -------------------------------------------------------------

/// A receiver process, stopped with its whole process group on drop.
pub struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Spawns `cmd` in its own process group, stdout and stderr to `log`.
    pub fn spawn(mut cmd: Command, log: PathBuf) -> std::io::Result<Proc> {
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        // The receivers must not pick up an OTLP configuration meant for
        // someone else (they are OTel-instrumented themselves).
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("OTEL_") || k.starts_with("PHOENIX_") || k.starts_with("ROTEL_") {
                cmd.env_remove(k.as_ref());
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // If this test process dies without running Drop, take the receiver
        // down with it rather than leave it listening.
        // SAFETY: prctl in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        Ok(Proc {
            child: cmd.spawn()?,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 30 lines of [`log`](Self::log).
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let group = -(self.child.id() as i32);
        // SAFETY: signals to the process group this Proc created.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Something accepts TCP connections on 127.0.0.1:port.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// GET over HTTP/1.0, so the body comes unchunked; over TLS, verified
/// against `ca`, when one is given. Returns the status and the body.
pub fn http_get(port: u16, path: &str, ca: Option<&Path>) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n");
    let raw = match ca {
        None => exchange(tcp, &request)?,
        Some(ca) => {
            let mut connector = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                .map_err(|e| e.to_string())?;
            connector.set_ca_file(ca).map_err(|e| e.to_string())?;
            // The test certificate names localhost as well as 127.0.0.1.
            let stream = connector
                .build()
                .connect("localhost", tcp)
                .map_err(|e| e.to_string())?;
            exchange(stream, &request)?
        }
    };
    let raw = String::from_utf8_lossy(&raw);
    let (head, body) = raw.split_once("\r\n\r\n").ok_or("no HTTP header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("no HTTP status")?;
    Ok((status, body.to_string()))
}

fn exchange(mut stream: impl Read + Write, request: &str) -> Result<Vec<u8>, String> {
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A TLS server may close without close_notify once it has
            // sent the whole (HTTP/1.0, close-delimited) answer.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(raw)
}

// --- Phoenix -------------------------------------------------------------------------

/// Phoenix's project for spans whose resource names none
/// (`openinference.project.name`).
pub const PHOENIX_DEFAULT_PROJECT: &str = "default";

/// A running Phoenix.
pub struct Phoenix {
    pub proc: Proc,
    pub http_port: u16,
    pub grpc_port: u16,
    /// Set when Phoenix serves TLS: the CA its certificate chains to.
    pub ca: Option<PathBuf>,
    _pki: Option<Pki>,
    _dir: TempDir,
}

impl Phoenix {
    /// GET on Phoenix's HTTP port (over TLS when it serves TLS).
    pub fn get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.http_port, path, self.ca.as_deref())
    }

    /// The OTLP/gRPC endpoint URL.
    pub fn grpc_endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.grpc_port)
    }

    /// The OTLP/HTTP traces URL.
    pub fn http_endpoint(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}/v1/traces", self.http_port)
    }

    /// Every span of `project` now, all pages. `Err` when Phoenix does not
    /// answer 200 (the project does not exist until its first span).
    pub fn spans_now(&self, project: &str) -> Result<Vec<Json>, String> {
        let mut spans = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/projects/{project}/spans/otlpv1?limit=1000");
            if let Some(c) = &cursor {
                path.push_str("&cursor=");
                path.push_str(c);
            }
            let json: Json = match self.get(&path)? {
                (200, body) => serde_json::from_str(&body)
                    .unwrap_or_else(|e| panic!("phoenix answered non-JSON ({e}): {body}")),
                (code, body) => return Err(format!("HTTP {code}: {body}")),
            };
            spans.extend(json["data"].as_array().cloned().unwrap_or_default());
            match json["next_cursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok(spans),
            }
        }
    }

    /// Polls the spans of `project` until `done` holds for them, and
    /// returns them; panics (saying `what`) after `timeout`.
    pub fn wait_for_spans(
        &self,
        project: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Json]) -> bool,
    ) -> Vec<Json> {
        let deadline = Instant::now() + timeout;
        let last = loop {
            let last = match self.spans_now(project) {
                Ok(spans) if done(&spans) => return spans,
                Ok(spans) => format!("{} spans so far", spans.len()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                break last;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        panic!(
            "phoenix project {project}: no {what} after {timeout:?} ({last})\n{}",
            self.proc.log_tail()
        );
    }
}

/// Starts Phoenix on free ports; with `tls`, both its HTTP and gRPC ports
/// serve TLS with a certificate from a throwaway CA.
pub fn start_phoenix(bin: &Path, tls: bool) -> Result<Phoenix, String> {
    start_phoenix_on(bin, free_port(), free_port(), tls)
}

/// [`start_phoenix`] on given ports.
pub fn start_phoenix_on(
    bin: &Path,
    http_port: u16,
    grpc_port: u16,
    tls: bool,
) -> Result<Phoenix, String> {
    let dir = TempDir::new("phoenix");
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .current_dir(dir.path())
        .env("PHOENIX_WORKING_DIR", dir.path())
        .env("PHOENIX_HOST", "127.0.0.1")
        .env("PHOENIX_PORT", http_port.to_string())
        .env("PHOENIX_GRPC_PORT", grpc_port.to_string())
        // Offline and quiet: no usage telemetry, no assistant features.
        .env("PHOENIX_TELEMETRY_ENABLED", "false")
        .env("PHOENIX_DISABLE_AGENT_ASSISTANT", "true")
        .env("PHOENIX_LOG_MIGRATIONS", "false")
        .env("PHOENIX_LOGGING_LEVEL", "warning");
    let (ca, pki) = if tls {
        // A leaf for localhost and 127.0.0.1, served with its intermediate.
        let pki = Pki::new();
        let mut spec = LeafSpec::new("localhost");
        spec.sans.push("127.0.0.1".into());
        spec.issuer = Issuer::Intermediate;
        let leaf = pki.leaf(&spec);
        cmd.env("PHOENIX_TLS_ENABLED", "true")
            .env("PHOENIX_TLS_CERT_FILE", &leaf.fullchain)
            .env("PHOENIX_TLS_KEY_FILE", &leaf.key);
        (Some(pki.ca_file.clone()), Some(pki))
    } else {
        (None, None)
    };
    let mut proc = Proc::spawn(cmd, dir.join("phoenix.log"))
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let started = Instant::now();
    loop {
        if let Some(status) = proc.exited() {
            return Err(format!(
                "phoenix exited ({status}) while starting:\n{}",
                proc.log_tail()
            ));
        }
        if port_open(grpc_port)
            && http_get(http_port, "/v1/projects", ca.as_deref()).is_ok_and(|(code, _)| code == 200)
        {
            eprintln!("phoenix (tls: {tls}) up after {:.1?}", started.elapsed());
            return Ok(Phoenix {
                proc,
                http_port,
                grpc_port,
                ca,
                _pki: pki,
                _dir: dir,
            });
        }
        if started.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "phoenix did not answer within 120 s:\n{}",
                proc.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

// --- reading Phoenix's JSON -----------------------------------------------------------

/// The value of attribute `key` in an OTLP-JSON attribute list.
pub fn attr_of<'a>(attrs: &'a Json, key: &str) -> Option<&'a Json> {
    attrs
        .as_array()?
        .iter()
        .find(|kv| kv["key"] == key)
        .map(|kv| &kv["value"])
}

/// A string attribute; panics when absent or not a string.
pub fn jstr(attrs: &Json, key: &str) -> String {
    attr_of(attrs, key)
        .and_then(|v| v["string_value"].as_str())
        .unwrap_or_else(|| panic!("{key} is not a string attribute in {attrs}"))
        .to_string()
}

/// An int attribute (JSON number or decimal string); panics otherwise.
pub fn jint(attrs: &Json, key: &str) -> i64 {
    let v = attr_of(attrs, key).unwrap_or_else(|| panic!("no {key} in {attrs}"));
    v["int_value"]
        .as_i64()
        .or_else(|| v["int_value"].as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{key} is not an int: {v}"))
}

/// A string-array attribute; panics otherwise.
pub fn jstrs(attrs: &Json, key: &str) -> Vec<String> {
    attr_of(attrs, key)
        .and_then(|v| v["array_value"]["values"].as_array())
        .unwrap_or_else(|| panic!("{key} is not an array attribute in {attrs}"))
        .iter()
        .map(|v| v["string_value"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A `*_unix_nano` time.
pub fn jtime(v: &Json) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .or_else(|| v.as_f64().map(|f| f as i64))
        .unwrap_or_else(|| panic!("not a time: {v}"))
}

pub fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().expect("time in range")
}

/// Asserts a time Phoenix returned equals `want` to the precision Phoenix
/// keeps. Phoenix decodes nanoseconds through a double into a datetime
/// rounded to the microsecond, and encodes them back through a double:
/// about 0.9 µs of error at worst, so allow 1 µs.
pub fn assert_time(got: &Json, want: DateTime<Utc>, what: &str) {
    let (got, want) = (jtime(got), nanos(want));
    assert!(
        (got - want).abs() <= 1_000,
        "{what}: got {got}, want {want} (diff {} ns)",
        got - want
    );
}

// --- rotel ---------------------------------------------------------------------------

/// A running rotel, printing what it receives to its log.
pub struct Rotel {
    pub proc: Proc,
    pub grpc_port: u16,
    pub http_port: u16,
    _dir: TempDir,
}

impl Rotel {
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.http_port)
    }

    /// Every span rotel printed so far.
    pub fn spans(&self) -> Vec<RotelSpan> {
        rotel_spans(&self.proc.log())
    }

    /// Polls until a span with each of `span_ids` was printed; returns them
    /// in that order. Panics (saying `what`) after `timeout`.
    pub fn wait_for_spans(
        &self,
        span_ids: &[String],
        timeout: Duration,
        what: &str,
    ) -> Vec<RotelSpan> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut spans = self.spans();
            if span_ids.iter().all(|id| spans.iter().any(|s| &s.id == id)) {
                return span_ids
                    .iter()
                    .map(|id| {
                        let at = spans.iter().position(|s| &s.id == id).expect("found above");
                        spans.swap_remove(at)
                    })
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "{what}: rotel did not print spans {span_ids:?} within {timeout:?}:\n{}",
                self.proc.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Starts rotel on free ports.
pub fn start_rotel(bin: &Path) -> Result<Rotel, String> {
    start_rotel_on(bin, free_port(), free_port())
}

/// Starts rotel on given ports, exporting nowhere and printing every span.
pub fn start_rotel_on(bin: &Path, grpc_port: u16, http_port: u16) -> Result<Rotel, String> {
    let dir = TempDir::new("rotel");
    let mut cmd = Command::new(bin);
    cmd.arg("start")
        .args(["--exporter", "blackhole"])
        .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
        .current_dir(dir.path());
    let mut proc = Proc::spawn(cmd, dir.join("rotel.log"))
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let started = Instant::now();
    while !(port_open(grpc_port) && port_open(http_port)) {
        if let Some(status) = proc.exited() {
            return Err(format!("rotel exited ({status}):\n{}", proc.log_tail()));
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!(
                "rotel did not listen within 30 s:\n{}",
                proc.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Rotel {
        proc,
        grpc_port,
        http_port,
        _dir: dir,
    })
}

/// One span as rotel's debug exporter printed it.
#[derive(Debug, Default)]
pub struct RotelSpan {
    pub trace_id: String,
    pub parent_id: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Unix nanoseconds, as printed (exact).
    pub start: String,
    pub end: String,
    pub status_code: String,
    pub status_message: String,
    /// The text of the span's block (attributes and events).
    pub text: String,
    /// The text of the enclosing ResourceSpans block's resource attributes.
    pub resource: String,
}

/// The spans in rotel's debug log.
pub fn rotel_spans(log: &str) -> Vec<RotelSpan> {
    let mut spans = Vec::new();
    for resource_block in log.split("ResourceSpans #").skip(1) {
        let resource = resource_block
            .split("ScopeSpans #")
            .next()
            .unwrap_or_default()
            .to_string();
        for block in resource_block.split("Span #").skip(1) {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            spans.push(RotelSpan {
                trace_id: field("Trace ID"),
                parent_id: field("Parent ID"),
                id: field("ID"),
                name: field("Name"),
                kind: field("Kind"),
                start: field("Start time"),
                end: field("End time"),
                status_code: field("Status code"),
                status_message: field("Status message"),
                text: block.to_string(),
                resource: resource.clone(),
            });
        }
    }
    spans
}
