//! Plumbing for the diagnosis scenarios: nginx with N server blocks from a
//! small builder (every directive on its own line, so a test can name the
//! `file:line` a diagnosis must point at), configs installed where the
//! host's own nginx would read them, and "expect cause X for client pid P,
//! from these vantage points" against the shared agent's journal.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent::diagnosis::Cause;
use agent::outcome::{HandshakeOutcome, HandshakeResult, Role};

use crate::TempDir;
use crate::agent::Agent;
use crate::servers::{Server, nginx_with};

/// How long the agent's host-state caches may lag a change on the host:
/// the listener table is re-read every 2 s, and discovery runs again for a
/// failure the cached configs do not cover at most once a second. A failure
/// in the first two seconds after a server starts may be diagnosed from the
/// host as it was just before; scenarios model servers that have been up
/// (or configs that have been in place) for a while.
pub const HOST_STATE_SETTLE: Duration = Duration::from_millis(2200);

/// One `server {}` block.
#[derive(Clone, Debug)]
pub struct Block {
    lines: Vec<String>,
    /// Added at the end (an nginx block serves something).
    location: bool,
}

impl Block {
    /// `listen <spec>;` (e.g. `127.0.0.1:8443 ssl default_server`).
    pub fn listen(spec: &str) -> Block {
        Block {
            lines: vec![format!("listen {spec};")],
            location: true,
        }
    }

    /// A TLS block on 127.0.0.1:port for `name` with a certificate and key.
    pub fn tls(port: u16, name: &str, cert: &Path, key: &Path) -> Block {
        Block::listen(&format!("127.0.0.1:{port} ssl"))
            .with(&format!("server_name {name};"))
            .with(&format!("ssl_certificate {};", cert.display()))
            .with(&format!("ssl_certificate_key {};", key.display()))
    }

    /// A TLS block on `addr:port` ("127.0.0.1", "[::1]", "[::]") for `name`.
    pub fn tls_at(addr: &str, port: u16, name: &str, cert: &Path, key: &Path) -> Block {
        Block::listen(&format!("{addr}:{port} ssl"))
            .with(&format!("server_name {name};"))
            .with(&format!("ssl_certificate {};", cert.display()))
            .with(&format!("ssl_certificate_key {};", key.display()))
    }

    /// A plain-HTTP block on 127.0.0.1:port.
    pub fn plain(port: u16, name: &str) -> Block {
        Block::listen(&format!("127.0.0.1:{port}")).with(&format!("server_name {name};"))
    }

    /// One more directive line, e.g. `ssl_protocols TLSv1.3;`.
    pub fn with(mut self, directive: &str) -> Block {
        self.lines.push(directive.to_string());
        self
    }

    /// No `location` (a block that never serves: an installed config).
    pub fn without_location(mut self) -> Block {
        self.location = false;
        self
    }

    fn render(&self) -> String {
        let mut out = String::from("  server {\n");
        for line in &self.lines {
            out.push_str(&format!("    {line}\n"));
        }
        if self.location {
            out.push_str("    location / {\n      return 200 \"ok\\n\";\n    }\n");
        }
        out.push_str("  }\n");
        out
    }

    fn ports(&self) -> Vec<u16> {
        self.lines
            .iter()
            .filter_map(|l| l.strip_prefix("listen "))
            .filter_map(|spec| {
                let addr = spec.split_whitespace().next()?.trim_end_matches(';');
                addr.rsplit(':').next()?.parse().ok()
            })
            .collect()
    }
}

/// nginx with the given blocks.
#[derive(Default)]
pub struct NginxBuilder {
    blocks: Vec<Block>,
    openssl_conf: Option<String>,
}

impl NginxBuilder {
    pub fn new() -> NginxBuilder {
        NginxBuilder::default()
    }

    pub fn block(mut self, block: Block) -> NginxBuilder {
        self.blocks.push(block);
        self
    }

    /// Runs nginx with an OpenSSL configuration whose system default is
    /// `DEFAULT:@SECLEVEL=0`, so it loads keys OpenSSL 3 refuses at its
    /// default level 2 (as a host whose openssl.cnf was lowered would).
    pub fn security_level_0(mut self) -> NginxBuilder {
        self.openssl_conf = Some(
            "openssl_conf = openssl_init\n\
             [openssl_init]\nssl_conf = ssl_sect\n\
             [ssl_sect]\nsystem_default = system_default_sect\n\
             [system_default_sect]\nCipherString = DEFAULT:@SECLEVEL=0\n"
                .to_string(),
        );
        self
    }

    fn body(&self) -> String {
        self.blocks.iter().map(Block::render).collect()
    }

    /// Starts nginx, waits until every block's port listens and the host
    /// state has settled ([`HOST_STATE_SETTLE`]).
    pub fn start(self) -> Nginx {
        let ports: Vec<u16> = self.blocks.iter().flat_map(Block::ports).collect();
        let _conf_dir = TempDir::new("openssl-conf");
        let mut env = Vec::new();
        let conf_path = _conf_dir.join("openssl.cnf");
        if let Some(text) = &self.openssl_conf {
            std::fs::write(&conf_path, text).expect("writing openssl.cnf");
            env.push(("OPENSSL_CONF", conf_path.to_str().expect("utf-8 path")));
        }
        let server = nginx_with(&ports, &self.body(), &env);
        std::thread::sleep(HOST_STATE_SETTLE);
        let config = server.config.clone().expect("nginx's config path");
        let text = std::fs::read_to_string(&config).expect("reading nginx.conf back");
        Nginx {
            server,
            config,
            text,
            _conf_dir,
        }
    }

    /// Writes the blocks to /etc/nginx/conf.d/, which the host's installed
    /// nginx.conf includes, without starting any nginx: the config a down
    /// (or failed) nginx would serve. Removed when dropped.
    pub fn install(self, tag: &str) -> InstalledConfig {
        let main = std::fs::read_to_string(INSTALLED_MAIN).unwrap_or_default();
        assert!(
            main.contains(&format!("include {INSTALLED_DIR}/*.conf")),
            "{INSTALLED_MAIN} must include {INSTALLED_DIR}/*.conf (Debian's default)"
        );
        remove_stale_installed_configs();
        let path = PathBuf::from(INSTALLED_DIR).join(format!(
            "{INSTALLED_PREFIX}{}-{tag}.conf",
            std::process::id()
        ));
        let text = format!("# tlsdoctor end-to-end test {tag}\n{}", self.body());
        std::fs::write(&path, &text).expect("writing an installed nginx config");
        std::thread::sleep(HOST_STATE_SETTLE);
        InstalledConfig { path, text }
    }
}

const INSTALLED_MAIN: &str = "/etc/nginx/nginx.conf";
const INSTALLED_DIR: &str = "/etc/nginx/conf.d";
const INSTALLED_PREFIX: &str = "tlsdoctor-e2e-";

/// Configs a killed test run left behind (their process is gone).
fn remove_stale_installed_configs() {
    let Ok(entries) = std::fs::read_dir(INSTALLED_DIR) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(INSTALLED_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn line_of(config: &Path, text: &str, needle: &str) -> String {
    let hits: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "`{needle}` must be on exactly one line of {}:\n{text}",
        config.display()
    );
    format!("{}:{}", config.display(), hits[0])
}

/// A running nginx and its config.
pub struct Nginx {
    pub server: Server,
    pub config: PathBuf,
    text: String,
    _conf_dir: TempDir,
}

impl Nginx {
    /// `file:line` of the one config line containing `needle`.
    pub fn line_of(&self, needle: &str) -> String {
        line_of(&self.config, &self.text, needle)
    }

    pub fn error_log(&self) -> String {
        self.server
            .error_log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }
}

/// A config file under /etc/nginx/conf.d, removed when dropped.
pub struct InstalledConfig {
    pub path: PathBuf,
    text: String,
}

impl InstalledConfig {
    /// `file:line` of the one config line containing `needle`.
    pub fn line_of(&self, needle: &str) -> String {
        line_of(&self.path, &self.text, needle)
    }
}

impl Drop for InstalledConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// `nginx -t` over the host's installed configuration: its verdict (never
/// starts anything).
pub fn nginx_config_test() -> String {
    let out = Command::new("nginx")
        .arg("-t")
        .output()
        .expect("running nginx -t");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A local, non-loopback IPv4 address: an existing interface's, or one
/// added on a dummy interface (removed when dropped).
pub struct LocalAddress {
    pub ip: IpAddr,
    dummy: Option<String>,
}

impl LocalAddress {
    pub fn get() -> LocalAddress {
        let out = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "scope", "global"])
            .output()
            .expect("running ip addr");
        let existing = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut words = l.split_whitespace();
                words.find(|w| *w == "inet")?;
                words.next()?.split('/').next()?.parse::<IpAddr>().ok()
            })
            .next();
        if let Some(ip) = existing {
            return LocalAddress { ip, dummy: None };
        }
        let name = format!("tlsdoc{}", std::process::id() % 100_000);
        let ip: IpAddr = "198.51.100.77".parse().expect("address");
        for args in [
            vec!["link", "add", &name, "type", "dummy"],
            vec!["addr", "add", "198.51.100.77/32", "dev", &name],
            vec!["link", "set", &name, "up"],
        ] {
            let status = Command::new("ip").args(&args).status().expect("ip");
            assert!(status.success(), "ip {args:?}");
        }
        // The agent re-reads the host's addresses every 30 s.
        std::thread::sleep(Duration::from_secs(31));
        LocalAddress {
            ip,
            dummy: Some(name),
        }
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        if let Some(name) = &self.dummy {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// The vantage points a scenario asserts.
pub const BOTH: &[Role] = &[Role::Client, Role::Server];
pub const CLIENT: &[Role] = &[Role::Client];
pub const SERVER: &[Role] = &[Role::Server];

/// What the journal must say about one client's failing connection.
#[derive(Clone, Debug)]
pub struct Expect {
    pub cause: Cause,
    /// `fix_location` every asserted record must carry; `None` asserts
    /// nothing about it.
    pub fix_location: Option<String>,
}

impl Expect {
    pub fn cause(cause: Cause) -> Expect {
        Expect {
            cause,
            fix_location: None,
        }
    }

    pub fn fixed_at(mut self, location: impl Into<String>) -> Expect {
        self.fix_location = Some(location.into());
        self
    }
}

/// The records of `pid`'s connections to `port`, from `role`'s side.
pub fn records_of(records: &[HandshakeOutcome], pid: u32, role: Role) -> Vec<&HandshakeOutcome> {
    records
        .iter()
        .filter(|r| r.role == role && r.client.pid == Some(pid))
        .collect()
}

/// Waits until `pid`'s failure on `port` is journaled from every vantage
/// point in `roles`, then checks each record's cause (and fix location).
/// Returns those records, in `roles` order.
pub fn expect(
    agent: &Agent,
    port: u16,
    pid: u32,
    roles: &[Role],
    expect: &Expect,
) -> Vec<HandshakeOutcome> {
    let what = format!(
        "{} from the {} side(s) of client pid {pid}",
        expect.cause,
        roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join("+")
    );
    let records = agent.wait_for(port, &what, |rs| {
        roles
            .iter()
            .all(|&role| !records_of(rs, pid, role).is_empty())
    });
    let mut out = Vec::new();
    for &role in roles {
        for r in records_of(&records, pid, role) {
            let shown = || serde_json::to_string_pretty(r).unwrap_or_default();
            assert_eq!(r.result, HandshakeResult::Failure, "{}", shown());
            assert_eq!(
                r.cause,
                expect.cause,
                "{} side of client pid {pid} on port {port}: {}",
                role.as_str(),
                shown()
            );
            assert_eq!(r.diagnosis.cause, r.cause, "{}", shown());
            if let Some(location) = &expect.fix_location {
                assert_eq!(
                    r.diagnosis.fix_location.as_deref(),
                    Some(location.as_str()),
                    "{} side of client pid {pid}: fix location: {}",
                    role.as_str(),
                    shown()
                );
            }
            out.push(r.clone());
        }
    }
    out
}

/// Asserts that a control port (a correctly configured server the same
/// clients used successfully) has no failure record, once enough time has
/// passed since `last_client` finished for any outcome to be written.
pub fn assert_control_clean(agent: &Agent, port: u16, last_client: Instant) {
    // Settle (1.5 s) + linger + the sink's queue, with room to spare.
    let quiet = Duration::from_secs(4);
    let elapsed = last_client.elapsed();
    if elapsed < quiet {
        std::thread::sleep(quiet - elapsed);
    }
    let records = agent.records_for_port(port);
    assert!(
        records.is_empty(),
        "the correctly configured control on port {port} must leave no failure record, got {}",
        serde_json::to_string_pretty(&records).unwrap_or_default()
    );
}

/// The evidence sentence of a record that names `location`.
pub fn has_evidence_at(record: &HandshakeOutcome, location: &str) -> bool {
    record
        .diagnosis
        .evidence
        .iter()
        .any(|e| e.location.as_deref() == Some(location))
}

/// `curl https://name:port/` resolving `name` to 127.0.0.1 (one connection,
/// with `name` as SNI and the name curl checks), plus `extra` arguments.
pub fn curl_to(name: &str, port: u16, extra: &[&str]) -> crate::clients::Run {
    let resolve = format!("{name}:{port}:127.0.0.1");
    let url = format!("https://{name}:{port}/");
    let mut args = vec!["--resolve", resolve.as_str()];
    args.extend_from_slice(extra);
    args.push(url.as_str());
    crate::clients::curl(&args)
}
