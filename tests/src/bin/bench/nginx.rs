//! The nginx every handshake phase loads: one worker, ECDSA P-256, one port
//! per TLS version, every handshake a full one (no session tickets, no
//! session cache) and every connection closed after one response
//! (`keepalive_timeout 0`), so that a request is a handshake.

use std::path::PathBuf;

use tlsdoctor_tests::free_port;
use tlsdoctor_tests::pki::{LeafSpec, Pki};
use tlsdoctor_tests::servers::{Server, nginx_tls_block, nginx_with};

use crate::Tls;

/// Name the certificate is for; clients connect to 127.0.0.1 and send it as
/// SNI.
pub const SERVER_NAME: &str = "localhost";

pub struct BenchNginx {
    /// Kept running while this lives.
    _server: Server,
    pub pki: Pki,
    port_13: u16,
    port_12: u16,
    /// Served at `/`: files for the bulk phase.
    pub www: PathBuf,
}

impl BenchNginx {
    pub fn start() -> BenchNginx {
        let pki = Pki::new();
        let leaf = pki.leaf(&LeafSpec::new(SERVER_NAME));
        let (port_13, port_12) = (free_port(), free_port());
        let block = |port: u16, protocols: &str| {
            nginx_tls_block(
                port,
                SERVER_NAME,
                &leaf.fullchain,
                &leaf.key,
                &format!(
                    "    ssl_protocols {protocols};\n    ssl_session_tickets off;\n    keepalive_timeout 0;\n    root {{dir}}/www;\n    location /files/ {{ }}\n"
                ),
            )
        };
        let body = format!("{}{}", block(port_13, "TLSv1.3"), block(port_12, "TLSv1.2"));
        let server = nginx_with(&[port_13, port_12], &body, &[]);
        let dir = server
            .config
            .as_ref()
            .and_then(|c| c.parent())
            .map(PathBuf::from)
            .expect("nginx's directory");
        let www = dir.join("www").join("files");
        std::fs::create_dir_all(&www).expect("nginx's www directory");
        BenchNginx {
            _server: server,
            pki,
            port_13,
            port_12,
            www,
        }
    }

    pub fn port(&self, tls: Tls) -> u16 {
        match tls {
            Tls::V13 => self.port_13,
            Tls::V12 => self.port_12,
        }
    }

    /// The CA file clients verify the server with.
    pub fn ca_file(&self) -> PathBuf {
        self.pki.ca_file.clone()
    }
}
