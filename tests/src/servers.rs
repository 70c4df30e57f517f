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
    let child = Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
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
    let pid = child.id();
    let server = Server {
        child,
        port,
        pid,
        error_log: None,
        config: None,
        _dir: None,
    };
    wait_listening(port);
    server
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
    let script = SILENT_LISTENER.replace("PORT", &port.to_string());
    let child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting a silent listener");
    let pid = child.id();
    let server = Server {
        child,
        port,
        pid,
        error_log: None,
        config: None,
        _dir: None,
    };
    wait_listening(port);
    server
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
    let pid = child.id();
    let server = Server {
        child,
        port,
        pid,
        error_log: None,
        config: None,
        _dir: Some(dir),
    };
    wait_listening(port);
    server
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
