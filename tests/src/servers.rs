//! Real TLS servers on loopback: `openssl s_server` and nginx.

use std::net::TcpStream;
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

/// Waits until something accepts TCP connections on 127.0.0.1:port.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// `openssl s_server -www` on 127.0.0.1:port with extra arguments.
pub fn s_server(port: u16, cert: &Path, key: &Path, extra: &[&str]) -> Server {
    let child = Command::new("openssl")
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(cert)
        .arg("-key")
        .arg(key)
        .args(["-www", "-quiet"])
        .args(extra)
        .stdin(Stdio::null())
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
        _dir: Some(dir),
    };
    wait_listening(port);
    server
}

/// nginx in the foreground with `http_body` inside `http {}`. `{dir}` in the
/// body is replaced by the server's own directory. Waits for `port`.
pub fn nginx(port: u16, http_body: &str) -> Server {
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
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nginx");
    let pid = child.id();
    let server = Server {
        child,
        port,
        pid,
        error_log: Some(error_log),
        _dir: Some(dir),
    };
    wait_listening(port);
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
