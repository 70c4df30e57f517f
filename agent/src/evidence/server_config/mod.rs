//! Server-config evidence (H): the TLS configuration the running nginx and
//! apache2/httpd actually use, per server block, each setting with the file
//! and line it came from.
//!
//! IMPLEMENTATION PENDING (helper): `nginx` and `apache` parsers.

pub mod apache;
pub mod nginx;

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which server software a block belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerKind {
    Nginx,
    Apache,
}

/// A value and where it was set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Setting<T> {
    pub value: T,
    pub file: PathBuf,
    pub line: u32,
}

impl<T> Setting<T> {
    /// `file:line`.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// One `listen` (nginx) or `Listen`/`<VirtualHost addr:port>` (apache).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenSpec {
    /// None = all addresses.
    pub addr: Option<IpAddr>,
    pub port: u16,
    pub ssl: bool,
    pub default_server: bool,
    pub file: PathBuf,
    pub line: u32,
}

/// A server block (nginx `server {}`, apache `<VirtualHost>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerBlock {
    pub kind: ServerKind,
    /// Where the block starts.
    pub file: PathBuf,
    pub line: u32,
    pub listens: Vec<ListenSpec>,
    /// `server_name` / `ServerName` + `ServerAlias`, as written (may hold
    /// wildcards or nginx regexes starting with `~`).
    pub server_names: Vec<Setting<String>>,
    pub certificate: Option<Setting<PathBuf>>,
    pub certificate_key: Option<Setting<PathBuf>>,
    /// Apache `SSLCertificateChainFile`.
    pub chain_file: Option<Setting<PathBuf>>,
    /// `ssl_protocols` / `SSLProtocol`, as written.
    pub protocols: Option<Setting<Vec<String>>>,
    /// `ssl_ciphers` / `SSLCipherSuite`, as written.
    pub ciphers: Option<Setting<String>>,
    /// `ssl_verify_client` / `SSLVerifyClient` ("on", "optional", "require", ...).
    pub verify_client: Option<Setting<String>>,
    pub client_ca: Option<Setting<PathBuf>>,
    /// `error_log` / `ErrorLog` in effect for this block (inherited if not set in it).
    pub error_log: Option<Setting<PathBuf>>,
    /// Log level in effect, e.g. "info", "error", "ssl:info".
    pub log_level: Option<Setting<String>>,
}

/// A config file or directive that could not be used, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigProblem {
    pub file: PathBuf,
    pub line: Option<u32>,
    pub message: String,
}

/// The parsed configuration of one server installation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerConfig {
    pub kind: ServerKind,
    /// The main config file.
    pub main_file: PathBuf,
    /// Every file read (main + includes), for change detection.
    pub files: Vec<PathBuf>,
    pub blocks: Vec<ServerBlock>,
    pub problems: Vec<ConfigProblem>,
}
