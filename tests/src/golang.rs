//! Go `crypto/tls` programs for the end-to-end tests (Debian golang-go, the
//! standard library only): a client and a config-less server, each built
//! once and cached under the workspace's target directory by source hash.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

/// The programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Program {
    /// `go-tls-client ADDR PORT NAME CAFILE|- [CERT KEY]`; `TLS_MAX=1.2`
    /// caps the version; dial and handshake time out after 4 s, then one
    /// HTTP request.
    Client,
    /// `go-tls-server ADDR:PORT CERT KEY`: answers every request "ok".
    Server,
}

const CLIENT: &str = r#"package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	addr, port, name, ca := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	cfg := &tls.Config{ServerName: name}
	if ca != "-" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			fmt.Println("FAIL reading the CA file:", err)
			os.Exit(2)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(pem)
		cfg.RootCAs = pool
	}
	if len(os.Args) > 6 {
		cert, err := tls.LoadX509KeyPair(os.Args[5], os.Args[6])
		if err != nil {
			fmt.Println("FAIL loading the client certificate:", err)
			os.Exit(2)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if os.Getenv("TLS_MAX") == "1.2" {
		cfg.MaxVersion = tls.VersionTLS12
	}
	dialer := &net.Dialer{Timeout: 4 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", net.JoinHostPort(addr, port), cfg)
	if err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", name)
	buf := make([]byte, 200)
	n, err := conn.Read(buf)
	if n == 0 && err != nil {
		fmt.Println("FAIL reading:", err)
		os.Exit(1)
	}
	fmt.Println("OK", conn.ConnectionState().Version, string(buf[:n]))
}
"#;

const SERVER: &str = r#"package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
)

func main() {
	srv := &http.Server{
		Addr: os.Args[1],
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		}),
		TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12},
	}
	if err := srv.ListenAndServeTLS(os.Args[2], os.Args[3]); err != nil {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
}
"#;

/// The program's binary, built on first use.
pub fn binary(program: Program) -> PathBuf {
    static BUILT: OnceLock<Mutex<std::collections::HashMap<Program, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    built
        .entry(program)
        .or_insert_with(|| build(program))
        .clone()
}

fn build(program: Program) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let (name, source) = match program {
        Program::Client => ("go-tls-client", CLIENT),
        Program::Server => ("go-tls-server", SERVER),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut hasher);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tlsdoctor-e2e-go");
    let binary = dir.join(format!("{name}-{:016x}", hasher.finish()));
    if binary.exists() {
        return binary;
    }
    let src_dir = dir.join(format!("{name}-src-{}", std::process::id()));
    std::fs::create_dir_all(&src_dir).expect("the Go build directory");
    let main = src_dir.join("main.go");
    std::fs::write(&main, source).expect("writing the Go source");
    let tmp = src_dir.join(name);
    let out = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&tmp)
        .arg(&main)
        .env("GO111MODULE", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("running go build (Debian golang-go)");
    assert!(
        out.status.success(),
        "go build of {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&tmp, &binary).expect("placing the Go binary");
    let _ = std::fs::remove_dir_all(&src_dir);
    binary
}

/// The config-less Go `crypto/tls` server (net/http) on `addr` ("127.0.0.1:
/// 4433", "[::1]:4433"), once `port` listens.
pub fn go_server(addr: &str, port: u16, cert: &Path, key: &Path) -> crate::servers::Server {
    let child = Command::new(binary(Program::Server))
        .arg(addr)
        .arg(cert)
        .arg(key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting the Go server");
    let server = crate::servers::Server::from_child(child, port, None, None);
    crate::servers::wait_listening(port);
    server
}
