//! Real TLS servers on loopback: `openssl s_server` and nginx.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub port: u16,
    pub pid: u32,
    /// nginx's error log (at `info`).
    pub error_log: Option<PathBuf>,
    /// nginx's main config file.
    pub config: Option<PathBuf>,
    _dir: Option<TempDir>,
}

impl Server {
    /// A started server process (apache, a Go service) the caller waits
    /// for; killed when dropped.
    pub fn from_child(
        child: Child,
        port: u16,
        error_log: Option<PathBuf>,
        config: Option<PathBuf>,
    ) -> Server {
        let pid = child.id();
        Server {
            child,
            port,
            pid,
            error_log,
            config,
            _dir: None,
        }
    }

    /// A started server with no config or log of its own (`_dir` kept alive
    /// with it), once something listens on `port`.
    fn listening(child: Child, port: u16, dir: Option<TempDir>) -> Server {
        let pid = child.id();
        let server = Server {
            child,
            port,
            pid,
            error_log: None,
            config: None,
            _dir: dir,
        };
        wait_listening(port);
        server
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM lets nginx's master take its workers down too.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a TCP socket listens on `port` (any address), from the kernel's
/// tables: no connection is made, so no refused or empty connection is left
/// for the agent to see.
pub fn is_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let local_port = fields
                    .get(1)
                    .and_then(|a| a.rsplit(':').next())
                    .and_then(|p| u16::from_str_radix(p, 16).ok());
                // 0A: TCP_LISTEN.
                local_port == Some(port) && fields.get(3) == Some(&"0A")
            })
    })
}

/// Waits until something listens on `port`.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if is_listening(port) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on port {port}");
}

/// `openssl s_server -www` on 127.0.0.1:port with extra arguments.
///
/// With `-www` s_server handshakes through a BIO_f_ssl, whose internal
/// calls the agent's uprobes do not see: only its wire facts are recorded.
/// [`s_server_console`] calls `SSL_accept` itself.
pub fn s_server(port: u16, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["-www"];
    args.extend_from_slice(extra);
    start_s_server(port, cert, key, &args, Stdio::null())
}

/// `openssl s_server` in its console mode (`SSL_accept`, then echoing), its
/// stdin held open so it keeps serving.
pub fn s_server_console(port: u16, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    start_s_server(port, cert, key, extra, Stdio::piped())
}

fn start_s_server(port: u16, cert: &Path, key: &Path, extra: &[&str], stdin: Stdio) -> Server {
    start_s_server_at(&format!("127.0.0.1:{port}"), port, cert, key, extra, stdin)
}

/// `openssl s_server` in console mode accepting on `accept`
/// ("127.0.0.1:4433", "[::1]:4433").
pub fn s_server_at(accept: &str, port: u16, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    start_s_server_at(accept, port, cert, key, extra, Stdio::piped())
}

fn start_s_server_at(
    accept: &str,
    port: u16,
    cert: &Path,
    key: &Path,
    extra: &[&str],
    stdin: Stdio,
) -> Server {
    let child = Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(accept)
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .arg("-quiet")
        .args(extra)
        .stdin(stdin)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting openssl s_server");
    Server::listening(child, port, None)
}

const SILENT_LISTENER: &str = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT))
s.listen(16)
held = []
while True:
    c, _ = s.accept()
    c.recv(4096)
    held.append(c)
"#;

/// A TCP listener on 127.0.0.1:port that accepts, reads, and never answers
/// (a hung backend): the client's ClientHello gets no ServerHello.
pub fn silent_listener(port: u16) -> Server {
    python_listener(SILENT_LISTENER, port, "a silent listener")
}

/// Python's `http.server` (plain HTTP, no TLS) on 127.0.0.1:port.
pub fn python_http(port: u16) -> Server {
    let dir = TempDir::new("http");
    let child = Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1"])
        .arg(port.to_string())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting python3 -m http.server");
    Server::listening(child, port, Some(dir))
}

/// redis-server (plain TCP, no persistence) on 127.0.0.1:port: a non-TLS
/// workload for the benchmark's host-wide tax.
pub fn redis_server(port: u16) -> Server {
    let child = Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .arg("--port")
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting redis-server (Debian package redis-server)");
    Server::listening(child, port, None)
}

/// nginx in the foreground with `http_body` inside `http {}`. `{dir}` in the
/// body is replaced by the server's own directory. Waits for `port`.
pub fn nginx(port: u16, http_body: &str) -> Server {
    nginx_with(&[port], http_body, &[])
}

/// nginx as [`nginx`], waiting for every port in `ports`, with extra
/// environment variables (e.g. `OPENSSL_CONF`).
pub fn nginx_with(ports: &[u16], http_body: &str, env: &[(&str, &str)]) -> Server {
    let dir = TempDir::new("nginx");
    let d = dir.path().display().to_string();
    let error_log = dir.join("error.log");
    for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
        std::fs::create_dir_all(dir.join(sub)).expect("nginx temp dir");
    }
    let conf = format!(
        "user root;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{}\n}}\n",
        http_body.replace("{dir}", &d)
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let child = Command::new("nginx")
        .arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    let pid = child.id();
    let server = Server {
        child,
        port: ports.first().copied().unwrap_or(0),
        pid,
        error_log: Some(error_log),
        config: Some(conf_path),
        _dir: Some(dir),
    };
    for &port in ports {
        wait_listening(port);
    }
    server
}

/// An nginx `server {}` block serving TLS on 127.0.0.1:port.
pub fn nginx_tls_block(port: u16, name: &str, cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "  server {{\n    listen 127.0.0.1:{port} ssl;\n    server_name {name};\n\
         ssl_certificate {};\n    ssl_certificate_key {};\n{extra}\n    location / {{ return 200 \"ok\\n\"; }}\n  }}\n",
        cert.display(),
        key.display()
    )
}

/// nginx in its own mount namespace, as in a container: a tmpfs mounted
/// over `root` (an empty directory on the host) holds its config,
/// certificates, pid file and error log, so those files exist only in the
/// namespace and the agent can only see them through `/proc/PID/root`.
pub struct ContainerNginx {
    /// Killed (and with it the namespace and its tmpfs) before `root` is
    /// removed from the host.
    pub server: Server,
    /// The directory, the same path inside the namespace and on the host
    /// (where it stays empty).
    pub root: PathBuf,
    /// nginx.conf as written (inside: `root`/nginx.conf).
    pub config_text: String,
}

impl ContainerNginx {
    /// The main config, as the server names it.
    pub fn config(&self) -> PathBuf {
        self.root.join("nginx.conf")
    }

    /// `file:line` of the one config line containing `needle`, as the
    /// server names it.
    pub fn line_of(&self, needle: &str) -> String {
        let hits: Vec<usize> = self
            .config_text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(hits.len(), 1, "`{needle}` once in:\n{}", self.config_text);
        format!("{}:{}", self.config().display(), hits[0])
    }
}

impl Drop for ContainerNginx {
    fn drop(&mut self) {
        // Server's own drop runs after this body: stop it here so the
        // namespace (and its mount) is gone before the directory is.
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(self.server.pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && Path::new(&format!("/proc/{}", self.server.pid)).exists()
        {
            if let Ok(Some(_)) = self.server.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Starts nginx in a private mount namespace (`unshare --mount`). `files`
/// (name, host file) are copied into its tmpfs root; `http_body` goes
/// inside `http {}` with `{root}` replaced by that root, and refers to the
/// copies there. Waits for `ports`.
pub fn nginx_in_mount_namespace(
    ports: &[u16],
    files: &[(&str, &Path)],
    http_body: &str,
) -> ContainerNginx {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let root = PathBuf::from(format!("/srv/tlsdoctor-e2e-ct-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&root).expect("the mount point on the host");
    let r = root.display().to_string();
    let config_text = format!(
        "user root;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/error.log info;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {r}/body;\n  proxy_temp_path {r}/proxy;\n\
         fastcgi_temp_path {r}/fastcgi;\n  uwsgi_temp_path {r}/uwsgi;\n  scgi_temp_path {r}/scgi;\n{}\n}}\n",
        http_body.replace("{root}", &r)
    );
    // Staged on the host, copied into the tmpfs, then removed: afterwards
    // no file of this server exists on the host.
    let stage = TempDir::new("ct-stage");
    std::fs::write(stage.join("nginx.conf"), &config_text).expect("staging nginx.conf");
    for (name, from) in files {
        std::fs::copy(from, stage.join(name)).expect("staging a file");
    }
    let script = format!(
        "set -e; mount -t tmpfs tmpfs '{r}'; cp -a '{}'/. '{r}'/; \
         mkdir -p '{r}'/body '{r}'/proxy '{r}'/fastcgi '{r}'/uwsgi '{r}'/scgi; \
         exec nginx -p '{r}' -c '{r}/nginx.conf' -g 'daemon off;'",
        stage.path().display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx in a mount namespace");
    let pid = child.id();
    let server = Server {
        child,
        port: ports.first().copied().unwrap_or(0),
        pid,
        error_log: None,
        config: None,
        _dir: None,
    };
    let nginx = ContainerNginx {
        server,
        root,
        config_text,
    };
    for &port in ports {
        wait_listening(port);
    }
    drop(stage);
    nginx
}

const STUCK_LISTENER: &str = r#"
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT))
s.listen(1)
while True:
    time.sleep(60)
"#;

/// A server that listens on 127.0.0.1:port with a backlog of 1 and never
/// accepts (a hung worker): its accept queue fills with two connections,
/// and the SYNs after them are dropped (ListenOverflows).
pub fn stuck_listener(port: u16) -> Server {
    python_listener(STUCK_LISTENER, port, "a listener that never accepts")
}

const FD_STARVED_LISTENER: &str = r#"
import errno, os, socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", PORT))
s.listen(64)
held = []
while True:
    try:
        held.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        break
while True:
    try:
        c, _ = s.accept()
        c.close()
    except OSError as e:
        if e.errno != errno.EMFILE:
            raise
        time.sleep(0.05)
"#;

/// A server on 127.0.0.1:port run with `prlimit --nofile=32` that holds
/// every descriptor it may open: each accept() fails with EMFILE and the
/// connections wait in its queue unanswered.
pub fn fd_starved_listener(port: u16) -> Server {
    let script = FD_STARVED_LISTENER.replace("PORT", &port.to_string());
    let child = Command::new("prlimit")
        .args(["--nofile=32:32", "python3", "-c"])
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a listener at its fd limit (util-linux prlimit)");
    Server::listening(child, port, None)
}

/// A Python `script` (its `PORT` replaced) as a server on 127.0.0.1:port.
fn python_listener(script: &str, port: u16, what: &str) -> Server {
    let child = Command::new("python3")
        .arg("-c")
        .arg(script.replace("PORT", &port.to_string()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {what}: {e}"));
    Server::listening(child, port, None)
}
