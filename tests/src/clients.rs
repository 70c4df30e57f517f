//! Real TLS clients: curl, `openssl s_client`, Python's ssl, Java (JSSE),
//! GnuTLS's `gnutls-cli` and a Go `crypto/tls` client built once per
//! workspace (the last three never touch OpenSSL: the agent sees them on
//! the wire only).

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::TempDir;

/// A finished client run.
#[derive(Debug)]
pub struct Run {
    pub pid: u32,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// How long any client may take before it is killed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

fn run(cmd: Command, stdin: &[u8]) -> Run {
    run_for(cmd, stdin, CLIENT_TIMEOUT)
}

/// Runs a client, killing it (SIGKILL) past `timeout`.
fn run_for(mut cmd: Command, stdin: &[u8], timeout: Duration) -> Run {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pid = child.id();
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    // The child itself is the client (no `timeout` wrapper: the test needs
    // the client's own pid); a watchdog kills it past the deadline.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + timeout;
            while Instant::now() < deadline {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: kill on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        })
    };
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("waiting for a client");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    Run {
        pid,
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `curl --max-time 10 <args>` (HTTPS to the given URL).
pub fn curl(args: &[&str]) -> Run {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "/dev/null", "--max-time", "10"])
        .args(args);
    run(cmd, b"")
}

/// `openssl s_client -connect 127.0.0.1:port <args>` with empty stdin (it
/// handshakes, then exits at end of input).
pub fn s_client(port: u16, args: &[&str]) -> Run {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(args);
    run(cmd, b"")
}

/// Python's ssl: connect, handshake (verifying against `cafile`, or the
/// system store), and send one HTTP request. `delay` seconds pass between
/// `import ssl` and the connection.
pub fn python_tls(
    port: u16,
    server_name: &str,
    cafile: Option<&Path>,
    delay: f64,
    env: &[(&str, &str)],
) -> Run {
    let ca = cafile
        .map(|p| format!("ctx.load_verify_locations({:?})", p.display().to_string()))
        .unwrap_or_default();
    let script = format!(
        "import ssl, socket, time\n\
         time.sleep({delay})\n\
         ctx = ssl.create_default_context()\n\
         {ca}\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=10)\n\
         t = ctx.wrap_socket(s, server_hostname={server_name:?})\n\
         t.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         print(t.recv(100))\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).envs(env.iter().copied());
    run(cmd, b"")
}

/// Python's ssl to `target` (any address family), verifying against its
/// CA, then one HTTP request.
pub fn python_tls_at(target: &Target) -> Run {
    let ca = target
        .ca
        .map(|p| format!("ctx.load_verify_locations({:?})", p.display().to_string()))
        .unwrap_or_default();
    let script = format!(
        "import ssl, socket\n\
         ctx = ssl.create_default_context()\n\
         {ca}\n\
         s = socket.create_connection(({:?}, {}), timeout=10)\n\
         t = ctx.wrap_socket(s, server_hostname={:?})\n\
         t.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n\
         print(t.recv(100))\n",
        target.addr, target.port, target.name
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    run(cmd, b"")
}

/// A client that sends a real ClientHello (Python's ssl, SNI
/// `server_name`) to 127.0.0.1:port and closes at once, before any reply.
pub fn python_hello_then_close(port: u16, server_name: &str) -> Run {
    let script = format!(
        "import ssl, socket\n\
         ctx = ssl.create_default_context()\n\
         incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()\n\
         tls = ctx.wrap_bio(incoming, outgoing, server_hostname={server_name:?})\n\
         try:\n    tls.do_handshake()\nexcept ssl.SSLWantReadError:\n    pass\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=10)\n\
         s.sendall(outgoing.read())\n\
         s.close()\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    run(cmd, b"")
}

/// Raw bytes to 127.0.0.1:port over plain TCP; prints the reply.
pub fn python_plain(port: u16, payload: &str) -> Run {
    let script = format!(
        "import socket\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=10)\n\
         s.sendall({payload:?}.encode())\n\
         print(s.recv(200))\n"
    );
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script);
    run(cmd, b"")
}

const JAVA_CLIENT: &str = r#"
import javax.net.ssl.*;
import java.util.List;

public class TlsClient {
    public static void main(String[] args) throws Exception {
        SSLSocketFactory factory = (SSLSocketFactory) SSLSocketFactory.getDefault();
        try (SSLSocket socket = (SSLSocket) factory.createSocket("127.0.0.1", Integer.parseInt(args[0]))) {
            SSLParameters params = socket.getSSLParameters();
            params.setServerNames(List.of(new SNIHostName(args[1])));
            params.setEndpointIdentificationAlgorithm("HTTPS");
            socket.setSSLParameters(params);
            socket.startHandshake();
            System.out.println("OK " + socket.getSession().getProtocol());
        } catch (Exception e) {
            System.out.println("FAIL " + e);
            System.exit(1);
        }
    }
}
"#;

/// A Java (JSSE, no OpenSSL) client handshaking with SNI `server_name`.
pub fn java_tls(port: u16, server_name: &str) -> Run {
    let dir = TempDir::new("java");
    let source = dir.join("TlsClient.java");
    std::fs::write(&source, JAVA_CLIENT).expect("java source");
    let mut cmd = Command::new("java");
    cmd.arg(&source).arg(port.to_string()).arg(server_name);
    run(cmd, b"")
}

/// Where a client connects and what it asks for.
#[derive(Clone, Debug)]
pub struct Target<'a> {
    /// An address ("127.0.0.1", "::1", "192.0.2.2").
    pub addr: &'a str,
    pub port: u16,
    /// SNI and the name checked against the certificate.
    pub name: &'a str,
    /// The CA file to trust (None: the system store).
    pub ca: Option<&'a Path>,
}

/// `gnutls-cli` (GnuTLS): SNI and host-name check `target.name`, trusting
/// `target.ca`, plus `extra` (e.g. `--priority NORMAL:-VERS-TLS1.3`); with
/// empty stdin it handshakes, says goodbye and exits. Killed after
/// `timeout` (it has no connect timeout of its own).
pub fn gnutls_cli(target: &Target, extra: &[&str], timeout: Duration) -> Run {
    let mut cmd = Command::new("gnutls-cli");
    cmd.arg("--sni-hostname")
        .arg(target.name)
        .arg("--verify-hostname")
        .arg(target.name);
    if let Some(ca) = target.ca {
        cmd.arg("--x509cafile").arg(ca);
    }
    cmd.args(extra)
        .arg("-p")
        .arg(target.port.to_string())
        .arg(target.addr);
    run_for(cmd, b"", timeout)
}

/// The Go `crypto/tls` client (statically linked, no OpenSSL): dial and
/// handshake within 4 s, then one HTTP request. `client_cert` is a
/// certificate and key to present; `env` e.g. `[("TLS_MAX", "1.2")]`.
pub fn go_tls(target: &Target, client_cert: Option<(&Path, &Path)>, env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(crate::golang::binary(crate::golang::Program::Client));
    cmd.arg(target.addr)
        .arg(target.port.to_string())
        .arg(target.name)
        .arg(
            target
                .ca
                .map(|p| p.as_os_str().to_owned())
                .unwrap_or_else(|| "-".into()),
        );
    if let Some((cert, key)) = client_cert {
        cmd.arg(cert).arg(key);
    }
    cmd.envs(env.iter().copied());
    run(cmd, b"")
}

/// curl to `https://name:port/` with `name` resolved to `addr` (IPv6
/// addresses bracketed as curl wants them), plus `extra`.
pub fn curl_at(target: &Target, extra: &[&str]) -> Run {
    let addr = if target.addr.contains(':') {
        format!("[{}]", target.addr)
    } else {
        target.addr.to_string()
    };
    let resolve = format!("{}:{}:{addr}", target.name, target.port);
    let url = format!("https://{}:{}/", target.name, target.port);
    let mut args: Vec<&str> = vec!["--resolve", &resolve];
    let ca;
    if let Some(path) = target.ca {
        ca = path.display().to_string();
        args.extend(["--cacert", ca.as_str()]);
    }
    args.extend_from_slice(extra);
    args.push(&url);
    curl(&args)
}

/// `openssl s_client` to `target` with SNI, verifying against its CA,
/// plus `extra`.
pub fn s_client_at(target: &Target, extra: &[&str]) -> Run {
    let connect = if target.addr.contains(':') {
        format!("[{}]:{}", target.addr, target.port)
    } else {
        format!("{}:{}", target.addr, target.port)
    };
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &connect, "-servername", target.name]);
    if let Some(ca) = target.ca {
        cmd.arg("-CAfile").arg(ca);
    }
    cmd.args(extra);
    run(cmd, b"")
}

/// Node.js's `tls.connect` to 127.0.0.1:port with SNI `server_name`,
/// trusting `cafile` (else node's bundled roots), `options` being more
/// fields of the options object in JavaScript (e.g. `maxVersion:
/// 'TLSv1.2'`). Prints `OK <protocol>` or `FAIL <code> <message>`. Which
/// OpenSSL it runs depends on how the machine's node is built: see
/// [`node_links_openssl_statically`].
pub fn node_tls(port: u16, server_name: &str, cafile: Option<&Path>, options: &str) -> Run {
    let ca = cafile
        .map(|p| format!("ca: fs.readFileSync({:?}),", p.display().to_string()))
        .unwrap_or_default();
    let script = format!(
        "const tls = require('tls'), fs = require('fs');\n\
         const s = tls.connect({{ host: '127.0.0.1', port: {port}, servername: {server_name:?}, \
         {ca} {options} }}, () => {{ console.log('OK ' + s.getProtocol()); s.end(); }});\n\
         s.on('error', e => {{ console.log('FAIL ' + e.code + ' ' + e.message); process.exit(1); }});\n"
    );
    let mut cmd = Command::new("node");
    cmd.arg("-e").arg(script);
    run(cmd, b"")
}

/// Whether `node` carries OpenSSL in its own executable (the nodesource
/// build: `SSL_do_handshake` in its `.dynsym`, no libssl in `ldd`), rather
/// than linking the system's libssl (Debian's `nodejs`).
pub fn node_links_openssl_statically() -> bool {
    let Ok(out) = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(node_path())
        .output()
    else {
        return false;
    };
    let symbols = String::from_utf8_lossy(&out.stdout);
    symbols.lines().any(|l| l.ends_with(" SSL_do_handshake"))
        && !Command::new("ldd")
            .arg(node_path())
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libssl"))
}

/// The `node` executable on PATH, symlinks resolved.
pub fn node_path() -> std::path::PathBuf {
    let which = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .expect("looking for node");
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("node ({path:?}): {e}"))
}
