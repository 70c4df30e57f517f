//! What an operator meets, through the real binary (issue 14; issue 12's
//! items 12–15): settings from flags, environment and a config file in that
//! order, `--print-config` with secrets redacted, `--help` with examples and
//! exit codes, completions and man pages, colour only where wanted, the
//! agent's own logs (JSON, no ANSI off a terminal), the metrics people alert
//! on scraped from a running agent (the expiry of a real nginx's
//! certificate among them, every metric the example alert rules name),
//! readiness that losses do not fail, an unwritable journal that does not
//! stop the agent, private journal files, and `agent diagnose --watch
//! --json` with its filters.

// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tlsdoctor_tests::agent::{Agent, agent_binary};
use tlsdoctor_tests::clients::{curl, s_client};
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::scenario::{Block, NginxBuilder};
use tlsdoctor_tests::{TempDir, free_port, require_root};

/// The agent binary with `args`, its environment cleared of the agent's
/// own variables so that the test decides them.
fn agent(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(agent_binary());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TLSDOCTOR_") || k.starts_with("OTEL_") || k == "NO_COLOR" {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("running the agent binary")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn print_config(args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["run", "--print-config"];
    all.extend_from_slice(args);
    let out = agent(&all, env);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("--print-config prints JSON")
}

#[test]
fn settings_come_from_flag_then_environment_then_file_then_default() {
    let dir = TempDir::new("config");
    let yaml = dir.join("agent.yaml");
    std::fs::write(
        &yaml,
        "journal: /from/file.jsonl\nqueue: 111\nstall_seconds: 7\nringbuf-mib: 16\n\
         metrics-addr: 127.0.0.1:9555\nmetrics-labels: [server_port]\ntls-port: [8443, 9443]\n\
         otlp-endpoint: https://collector.example:4318\n\
         otlp-header: {authorization: \"Bearer file-s3cret\"}\n",
    )
    .unwrap();
    let yaml = yaml.to_str().unwrap();
    let env = [("TLSDOCTOR_CONFIG", yaml), ("TLSDOCTOR_QUEUE", "222")];
    let c = print_config(&["--ringbuf-mib", "32"], &env);
    // flag > env > file > default, and where each came from.
    assert_eq!(c["ringbuf_mib"], 32, "{c:#}");
    assert_eq!(c["queue"], 222, "{c:#}");
    assert_eq!(c["journal"], "/from/file.jsonl", "{c:#}");
    assert_eq!(c["stall_seconds"], 7, "{c:#}");
    assert_eq!(c["rescan_seconds"], 30, "{c:#}");
    assert_eq!(c["tls_ports"], serde_json::json!([8443, 9443]));
    assert_eq!(c["metrics_addr"], "127.0.0.1:9555");
    assert_eq!(c["metrics_labels"], serde_json::json!(["server_port"]));
    assert_eq!(c["config_file"], yaml);
    let s = &c["sources"];
    assert_eq!(s["ringbuf-mib"], "flag");
    assert_eq!(s["queue"], "env");
    assert_eq!(s["journal"], "file");
    assert_eq!(s["rescan-seconds"], "default");
    // The OTLP settings as the exporter resolves them, the header's value
    // nowhere in the output.
    assert_eq!(
        c["otlp"]["endpoint"],
        "https://collector.example:4318/v1/traces"
    );
    assert_eq!(c["otlp"]["protocol"], "http/protobuf");
    assert_eq!(c["otlp"]["timeout_ms"], 10_000);
    assert_eq!(c["otlp"]["headers"]["authorization"], "<redacted>");
    let raw = stdout(&agent(&["run", "--print-config"], &env));
    assert!(!raw.contains("s3cret"), "{raw}");

    // The standard OTEL_* variables beat the file; their secrets are
    // redacted too.
    let env = [
        ("TLSDOCTOR_CONFIG", yaml),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-collector:4317"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=env-s3cret"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
    ];
    let out = agent(&["run", "--print-config"], &env);
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(c["otlp"]["endpoint"], "http://env-collector:4317");
    assert_eq!(c["otlp"]["protocol"], "grpc");
    assert_eq!(c["otlp"]["timeout_ms"], 2500);
    assert_eq!(
        c["otlp"]["headers"],
        serde_json::json!({"x-api-key": "<redacted>"})
    );
    assert!(!stdout(&out).contains("s3cret"));

    // TOML works the same; a typo is an error that names it (exit 2).
    let toml = dir.join("agent.toml");
    std::fs::write(&toml, "journal = \"/t.jsonl\"\nshow-success = true\n").unwrap();
    let c = print_config(&["--config", toml.to_str().unwrap()], &[]);
    assert_eq!(c["journal"], "/t.jsonl");
    assert_eq!(c["show_success"], true);
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "jounral = \"/t.jsonl\"\n").unwrap();
    let out = agent(
        &["run", "--print-config", "--config", typo.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown setting \"jounral\""),
        "{}",
        stderr(&out)
    );
    // A value the flag would refuse is refused from the file too.
    let bad = dir.join("bad.yaml");
    std::fs::write(&bad, "metrics-addr: nowhere\n").unwrap();
    let out = agent(
        &["run", "--print-config", "--config", bad.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Every flag that had no variable has one now.
    let c = print_config(
        &[],
        &[
            ("TLSDOCTOR_METRICS_ADDR", "127.0.0.1:9464"),
            ("TLSDOCTOR_PORTS", "443,8443"),
            ("TLSDOCTOR_SHOW_SUCCESS", "true"),
            ("TLSDOCTOR_DURATION", "5"),
            ("TLSDOCTOR_CONSOLE", "json"),
            ("TLSDOCTOR_SAMPLE_SUCCESS", "0.5"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
        ],
    );
    assert_eq!(c["metrics_addr"], "127.0.0.1:9464");
    assert_eq!(c["ports"], serde_json::json!([443, 8443]));
    assert_eq!(c["show_success"], true);
    assert_eq!(c["duration"], 5);
    assert_eq!(c["console"], "json");
    assert_eq!(c["otlp"]["sample_success_ratio"], 0.5);
}

#[test]
fn the_daemonsets_configmap_is_a_valid_agent_config() {
    let dir = TempDir::new("configmap");
    let file = dir.join("agent.yaml");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("deploy/check_manifests.py"))
        .arg("--agent-config")
        .arg(&file)
        .output()
        .expect("deploy/check_manifests.py");
    assert!(out.status.success(), "{}", stderr(&out));
    let c = print_config(&["--config", file.to_str().unwrap()], &[]);
    assert_eq!(c["sources"]["journal"], "file", "{c:#}");
    assert_eq!(c["journal"], "/var/lib/tlsdoctor/journal.jsonl");
}

#[test]
fn help_completions_and_man_pages() {
    for args in [&["--help"][..], &["run", "--help"], &["diagnose", "--help"]] {
        let out = agent(args, &[]);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        let text = stdout(&out);
        for section in ["Examples:", "Exit codes:"] {
            assert!(
                text.contains(section),
                "{args:?} without {section}:\n{text}"
            );
        }
    }
    let help = stdout(&agent(&["diagnose", "--help"], &[]));
    for flag in [
        "--pid",
        "--comm",
        "--namespace",
        "--pod",
        "--cause",
        "--failures-only",
    ] {
        assert!(help.contains(flag), "{flag}:\n{help}");
    }
    // A usage error is exit 2.
    assert_eq!(
        agent(&["run", "--no-such-flag"], &[]).status.code(),
        Some(2)
    );
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef agent"),
        ("fish", "complete -c agent"),
    ] {
        let out = agent(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("metrics-addr"), "{shell}");
    }
    let dir = TempDir::new("man");
    let out = agent(&["man", dir.path().to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["agent.1", "agent-run.1", "agent-diagnose.1"] {
        let text = std::fs::read_to_string(dir.join(page)).expect(page);
        assert!(text.starts_with(".ie") || text.contains(".TH"), "{page}");
    }
    // The page groff renders, if groff is here.
    if Command::new("groff").arg("--version").output().is_ok() {
        let out = Command::new("groff")
            .args(["-man", "-Tascii"])
            .arg(dir.join("agent-run.1"))
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("print-config"));
    }
}

/// `agent ARGS` on a pseudo-terminal (util-linux `script`): what a person
/// at a terminal sees.
fn on_a_terminal(args: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("script");
    cmd.args([
        "-qec",
        &format!("{} {args}", agent_binary().display()),
        "/dev/null",
    ]);
    cmd.env_remove("NO_COLOR");
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("script");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn colour_follows_the_terminal_no_color_and_the_flag() {
    let dir = TempDir::new("colour");
    let journal = dir.join("journal.jsonl");
    let report = format!("diagnose --journal {}", journal.display());
    let esc = |s: &str| s.contains('\u{1b}');
    assert!(esc(&on_a_terminal(&report, &[])), "a terminal gets colour");
    assert!(
        !esc(&on_a_terminal(&report, &[("NO_COLOR", "1")])),
        "NO_COLOR"
    );
    assert!(!esc(&on_a_terminal(
        &format!("--color never {report}"),
        &[]
    )));
    let piped = agent(
        &[
            "--color",
            "always",
            "diagnose",
            "--journal",
            journal.to_str().unwrap(),
        ],
        &[("NO_COLOR", "1")],
    );
    assert!(esc(&stdout(&piped)), "--color always wins, even piped");
    let piped = agent(&["diagnose", "--journal", journal.to_str().unwrap()], &[]);
    assert!(!esc(&stdout(&piped)), "a pipe gets none");
}

/// `GET path` on loopback: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Scrapes until `done(page)`, or fails with the last page.
fn scrape_until(port: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, page) = http_get(port, "/metrics");
        if code == 200 && done(&page) {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in /metrics within 30 s:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_people_alert_on_from_a_running_agent() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("expiry.test");
    spec.not_after_days = 17;
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let nginx = NginxBuilder::new()
        .block(Block::tls(port, "expiry.test", &leaf.cert, &leaf.key))
        .start();
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let agent = Agent::start(&[
        "--metrics-addr",
        &addr,
        "--metrics-labels",
        "server_port",
        "--certificate-scan-seconds",
        "2",
    ]);

    // The expiry of the certificate the real nginx serves, from its config.
    let cert = openssl::x509::X509::from_pem(&std::fs::read(&leaf.cert).unwrap()).unwrap();
    let epoch = openssl::asn1::Asn1Time::from_unix(0).unwrap();
    let diff = epoch.diff(cert.not_after()).unwrap();
    let expected = i64::from(diff.days) * 86_400 + i64::from(diff.secs);
    let series = format!(
        "tlsdoctor_certificate_not_after_timestamp_seconds{{file=\"{}\",",
        leaf.cert.display()
    );
    let page = scrape_until(metrics_port, "certificate expiry", |p| p.contains(&series));
    let line = page.lines().find(|l| l.starts_with(&series)).unwrap();
    assert!(line.contains("server_name=\"expiry.test\""), "{line}");
    assert!(line.contains(&format!("port=\"{port}\"")), "{line}");
    assert!(
        line.contains("CN=expiry.test") || line.contains("CN = expiry.test"),
        "{line}"
    );
    assert_eq!(
        line.rsplit(' ').next().unwrap().parse::<i64>().unwrap(),
        expected,
        "{line}"
    );

    // A failure: counted with its server port (opt-in label) and timed.
    let run = curl(&[
        "--resolve",
        &format!("expiry.test:{port}:127.0.0.1"),
        &format!("https://expiry.test:{port}/"),
    ]);
    assert!(!run.success);
    let failures = format!(
        "tlsdoctor_handshakes_total{{role=\"client\",result=\"failure\",cause=\"untrusted-root\",server_port=\"{port}\"}}"
    );
    let page = scrape_until(metrics_port, "the failure", |p| p.contains(&failures));
    assert!(sample(&page, &failures).unwrap() >= 1.0);
    let count = sample(
        &page,
        "tlsdoctor_handshake_duration_seconds_count{role=\"client\",result=\"failure\"}",
    )
    .expect("a duration histogram");
    assert!(count >= 1.0, "{page}");
    assert!(page.contains("# TYPE tlsdoctor_handshake_duration_seconds histogram"));

    // Every metric the example alert rules name is one the agent serves.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rules = std::fs::read_to_string(root.join("deploy/alerts.yaml")).unwrap();
    let served: BTreeSet<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .collect();
    let named: BTreeSet<String> = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("tlsdoctor_"))
        .map(|w| w.to_string())
        .collect();
    assert!(!named.is_empty());
    for metric in &named {
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| metric.strip_suffix(s))
            .unwrap_or(metric);
        assert!(
            served.contains(family),
            "deploy/alerts.yaml names {metric}, which the agent does not serve: {served:?}"
        );
    }

    // Ready, and the journal files are private.
    let (code, body) = http_get(metrics_port, "/readyz");
    assert_eq!(code, 200, "{body}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    agent.wait_for(port, "the journal record", |r| !r.is_empty());
    assert_eq!(mode(agent.journal()), 0o640);
    let status = agent.journal().with_file_name("status.json");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !status.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(mode(&status), 0o640);
    drop(nginx);
}

#[test]
fn an_unwritable_journal_directory_does_not_stop_the_agent() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("rojournal.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = tlsdoctor_tests::servers::s_server(port, &leaf.cert, &leaf.key, &[]);
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    // The agent in a mount namespace where the temp directory (its journal's
    // among them) is read-only: EROFS, which stops even root.
    let wrapper: Vec<String> = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "sh",
        "-c",
        "mount --bind \"$TMPDIR_RO\" \"$TMPDIR_RO\" && mount -o remount,bind,ro \"$TMPDIR_RO\" && exec \"$@\"",
        "sh",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tmp = std::env::temp_dir();
    let wrapper: Vec<String> = wrapper
        .into_iter()
        .map(|w| w.replace("$TMPDIR_RO", &tmp.display().to_string()))
        .collect();
    let agent = Agent::launch(&wrapper, &["--metrics-addr", &addr])
        .unwrap_or_else(|log| panic!("the agent must start without its journal:\n{log}"));
    assert!(
        agent.log().contains("journal cannot be opened"),
        "{}",
        agent.log()
    );
    let (code, body) = http_get(metrics_port, "/readyz");
    assert_eq!(code, 200, "capturing, so ready: {body}");
    assert!(
        body.contains("warning: journal not written") && body.contains("Read-only file system"),
        "{body}"
    );
    // A failure still reaches the metrics; the journal's loss is counted.
    let run = s_client(
        port,
        &["-servername", "rojournal.test", "-verify_return_error"],
    );
    assert!(!run.success);
    let page = scrape_until(metrics_port, "the journal error", |p| {
        sample(p, "tlsdoctor_journal_write_errors_total").is_some_and(|v| v >= 1.0)
    });
    assert!(
        page.lines().any(|l| l.starts_with("tlsdoctor_handshakes_total{role=\"client\",result=\"failure\"")),
        "{page}"
    );
    assert!(!agent.journal().exists());
    agent.stop();
}

#[test]
fn lost_events_are_counted_and_reported_but_do_not_make_the_agent_unready() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("losses.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = tlsdoctor_tests::servers::s_server(port, &leaf.cert, &leaf.key, &[]);
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    // A queue of one outcome: a burst of failures overflows it.
    let agent = Agent::start(&["--metrics-addr", &addr, "--queue", "1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let page = loop {
        let clients: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn(move || {
                    s_client(
                        port,
                        &["-servername", "losses.test", "-verify_return_error"],
                    )
                })
            })
            .collect();
        for c in clients {
            let _ = c.join();
        }
        let (_, page) = http_get(metrics_port, "/metrics");
        if sample(&page, "tlsdoctor_outcomes_dropped_total").is_some_and(|v| v > 0.0) {
            break page;
        }
        assert!(Instant::now() < deadline, "no outcome dropped:\n{page}");
    };
    assert!(page.contains("tlsdoctor_outcomes_dropped_total"));
    // Within the 30 s window of a loss: still ready, the loss a warning.
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let (code, body) = http_get(metrics_port, "/readyz");
        assert_eq!(code, 200, "a loss must not make the agent unready: {body}");
        if body.contains("warning: events lost") {
            break body;
        }
        assert!(Instant::now() < deadline, "no loss warning: {body}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(body.starts_with("ok\n"), "{body}");
    let status = agent.status().expect("status.json");
    assert!(
        status["dropped_outcomes"].as_u64().unwrap_or(0) > 0,
        "{status}"
    );
}

#[test]
fn the_agents_own_logs_carry_no_colour_off_a_terminal_and_can_be_json() {
    require_root();
    let metrics_port = free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    let dir = TempDir::new("logs");
    let mut child = Command::new(agent_binary())
        .args(["run", "--duration", "60", "--metrics-addr", &addr])
        .arg("--journal")
        .arg(dir.join("journal.jsonl"))
        .env("TLSDOCTOR_LOG_FORMAT", "json")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let pipe = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    while !lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("capturing TLS handshakes"))
    {
        assert!(Instant::now() < deadline, "{:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let lines = lines.lock().unwrap().clone();
    assert!(lines.len() >= 2, "{lines:?}");
    for line in &lines {
        assert!(!line.contains('\u{1b}'), "ANSI in a log line: {line:?}");
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{v}");
    }
}

#[test]
fn watch_json_lines_filtered_by_process_and_cause() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("watchjson.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let nginx = NginxBuilder::new()
        .block(Block::tls(port, "watchjson.test", &leaf.cert, &leaf.key))
        .start();
    let mut child = Command::new(agent_binary())
        .args([
            "diagnose",
            "--watch",
            "--json",
            "--failures-only",
            "--comm",
            "curl",
            "--cause",
            "untrusted-root",
            "--duration",
            "120s",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent diagnose --watch");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    wait_for(&err, Duration::from_secs(90), |l| {
        l.contains("capturing TLS handshakes")
    });
    // Filtered out: another process's failure, and a curl that succeeds.
    let other = s_client(
        port,
        &["-servername", "watchjson.test", "-verify_return_error"],
    );
    assert!(!other.success);
    let ok = curl(&[
        "-k",
        "--resolve",
        &format!("watchjson.test:{port}:127.0.0.1"),
        &format!("https://watchjson.test:{port}/"),
    ]);
    assert!(ok.success, "{}", ok.stderr);
    // Shown: curl's untrusted-root failure, as a journal record.
    let run = curl(&[
        "--resolve",
        &format!("watchjson.test:{port}:127.0.0.1"),
        &format!("https://watchjson.test:{port}/"),
    ]);
    assert!(!run.success);
    let line = wait_for(&out, Duration::from_secs(30), |l| {
        l.contains(&format!("\"pid\":{}", run.pid))
    });
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    let record: agent::outcome::HandshakeOutcome =
        serde_json::from_str(&line).expect("a journal record per line");
    assert_eq!(record.cause, agent::diagnosis::Cause::UntrustedRoot);
    assert_eq!(record.client.pid, Some(run.pid));
    let all = out.lock().unwrap().clone();
    for l in &all {
        let v: Value = serde_json::from_str(l).expect("JSON lines only");
        assert_eq!(v["client"]["comm"], "curl", "filtered by --comm: {l}");
        assert_eq!(v["result"], "failure", "--failures-only: {l}");
        assert_ne!(v["client"]["pid"], other.pid, "{l}");
        assert_ne!(v["client"]["pid"], ok.pid, "{l}");
    }
    drop(nginx);
}

#[test]
fn watch_escapes_a_hostile_process_name() {
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("escape.test");
    spec.issuer = Issuer::Itself;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let _server = tlsdoctor_tests::servers::s_server(port, &leaf.cert, &leaf.key, &[]);
    // A client whose process name clears the screen: curl run under a
    // name with an escape sequence in it (comm is the executable's name).
    let dir = TempDir::new("escape");
    let evil = dir.join("cu\u{1b}[2Jrl");
    std::os::unix::fs::symlink(which("curl"), &evil).unwrap();
    let mut child = Command::new(agent_binary())
        .args([
            "--color",
            "always",
            "diagnose",
            "--watch",
            "--failures-only",
            "--duration",
            "120s",
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agent diagnose --watch");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    wait_for(&err, Duration::from_secs(90), |l| {
        l.contains("capturing TLS handshakes")
    });
    let run = Command::new(&evil)
        .args(["-sS", "-o", "/dev/null", "--max-time", "10"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .unwrap();
    assert!(!run.status.success());
    let line = wait_for(&out, Duration::from_secs(30), |l| {
        l.contains("cu\\x1b[2Jrl[")
    });
    // SAFETY: kill on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let _ = child.wait();
    assert!(
        !line.contains("\u{1b}[2J"),
        "the raw sequence reached the terminal: {line:?}"
    );
}

/// The path of a program on PATH.
fn which(program: &str) -> std::path::PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn wait_for(lines: &Mutex<Vec<String>>, timeout: Duration, found: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = lines.lock().unwrap().iter().find(|l| found(l)) {
            return l.clone();
        }
        assert!(
            Instant::now() < deadline,
            "not within {timeout:?}:\n{}",
            lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
