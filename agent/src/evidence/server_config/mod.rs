//! Server-config evidence (H): the TLS configuration the running nginx and
//! apache2/httpd actually use, per server block, each setting with the file
//! and line it came from.
//!
//! - [`nginx::parse`] / [`apache::parse`] read one installation's config tree.
//! - [`discover`] finds the installations on this host (running or not).
//! - [`ServerConfig::select`] answers "which block serves this connection",
//!   by the server's own rules, so a diagnosis can name the block (and the
//!   file:line) that decided the certificate, protocols or client-auth.
//!
//! Nothing below the main file is fatal: an unreadable include, a bad
//! directive or an unbalanced block becomes a [`ConfigProblem`] with its
//! file and line, because such a problem is itself evidence (the server
//! would refuse that config on its next reload).

pub mod apache;
mod apache_env;
mod apache_syntax;
mod apache_values;
mod discover;
mod loader;
pub mod nginx;
mod nginx_syntax;
mod select;
mod shown;
#[cfg(test)]
mod tests;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::evidence::fsroot::FsRoot;

pub use discover::{
    DiscoveredConfig, DiscoveryCache, DiscoveryStats, discover, discover_with, server_kind,
};
pub use loader::{MAX_PARSE_TIME, MAX_TREE_BYTES, ReadBudget};
pub use select::{Selection, name_matches};

/// The main config file could not be read. (Failures below the main file
/// are [`ConfigProblem`]s instead.)
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a regular file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{} is {size} bytes, over the {limit}-byte limit", path.display())]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("{} holds NUL bytes: not a text config file", path.display())]
    NotText { path: PathBuf },
}

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
    /// None = all addresses (no address written, `*`, or apache
    /// `_default_`). For nginx that is the IPv4 wildcard: nginx binds
    /// `listen 443` to 0.0.0.0 only; IPv6 needs `[::]:443`.
    pub addr: Option<IpAddr>,
    /// 0 = any port (apache `<VirtualHost 192.0.2.1:*>` or no port given).
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
    /// The first `ssl_certificate` / `SSLCertificateFile`; relative paths are
    /// made absolute the way the server does (nginx: conf dir, apache:
    /// ServerRoot). Paths holding nginx variables are kept as written.
    pub certificate: Option<Setting<PathBuf>>,
    pub certificate_key: Option<Setting<PathBuf>>,
    /// Further certificates (an RSA + ECDSA pair is common); each must load
    /// for the server to start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_certificates: Vec<Setting<PathBuf>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_certificate_keys: Vec<Setting<PathBuf>>,
    /// Apache `SSLCertificateChainFile`.
    pub chain_file: Option<Setting<PathBuf>>,
    /// `ssl_protocols` / `SSLProtocol`, as written.
    pub protocols: Option<Setting<Vec<String>>>,
    /// `ssl_ciphers` / `SSLCipherSuite`, as written.
    pub ciphers: Option<Setting<String>>,
    /// `ssl_verify_client` / `SSLVerifyClient` ("on", "optional", "require", ...).
    pub verify_client: Option<Setting<String>>,
    pub client_ca: Option<Setting<PathBuf>>,
    /// `error_log` / `ErrorLog` in effect for this block (inherited if not set
    /// in it). `stderr`, `syslog:...`, `memory:...` and apache pipes
    /// (`|/usr/bin/rotatelogs ...`) are kept as written. nginx may log to
    /// several files; this is the most verbose of them.
    pub error_log: Option<Setting<PathBuf>>,
    /// Log level in effect for TLS handshake messages, e.g. "info", "error"
    /// (nginx: the level of `error_log`; apache: the `LogLevel` that applies
    /// to mod_ssl, so `LogLevel warn ssl:info` gives "info"). None = not
    /// configured, see [`effective_log_level`].
    pub log_level: Option<Setting<String>>,
    /// The filesystem the block's paths belong to: a containerised
    /// server's files are read through its root, named as it names them.
    #[serde(default, skip_serializing_if = "FsRoot::is_host")]
    pub root: FsRoot,
}

impl ServerBlock {
    /// An empty block of `kind` starting at `file:line`.
    pub fn new(kind: ServerKind, file: PathBuf, line: u32) -> Self {
        ServerBlock {
            kind,
            file,
            line,
            listens: Vec::new(),
            server_names: Vec::new(),
            certificate: None,
            certificate_key: None,
            extra_certificates: Vec::new(),
            extra_certificate_keys: Vec::new(),
            chain_file: None,
            protocols: None,
            ciphers: None,
            verify_client: None,
            client_ca: None,
            error_log: None,
            log_level: None,
            root: FsRoot::Host,
        }
    }

    /// `file:line` of the block's start.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }

    /// True when any of the block's listens speaks TLS.
    pub fn is_tls(&self) -> bool {
        self.listens.iter().any(|l| l.ssl)
    }

    /// Every certificate/key path the block names (all must load).
    pub fn certificate_files(&self) -> impl Iterator<Item = &Setting<PathBuf>> {
        self.certificate
            .iter()
            .chain(self.certificate_key.iter())
            .chain(self.extra_certificates.iter())
            .chain(self.extra_certificate_keys.iter())
            .chain(self.chain_file.iter())
    }

    /// Whether a failed client handshake is written to the error log at the
    /// level in effect (nginx logs them at `info`, mod_ssl at `ssl:info`).
    pub fn logs_handshake_failures(&self) -> bool {
        let level = effective_log_level(self);
        matches!(level.as_str(), "info" | "debug") || level.starts_with("trace")
    }
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
    /// Directories whose listing an include glob read, and include targets
    /// that were missing: adding a file there changes the config too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watched: Vec<PathBuf>,
    pub blocks: Vec<ServerBlock>,
    /// The sockets the server opens, one per distinct address:port (nginx:
    /// the union of the blocks' `listen`s, `ssl` if any of them says so, as
    /// nginx merges them; apache: its `Listen` directives, `ssl` if a
    /// TLS-enabled vhost uses it). A port here with no listener on the host
    /// is evidence for port-not-listening.
    #[serde(default)]
    pub listens: Vec<ListenSpec>,
    pub problems: Vec<ConfigProblem>,
    /// The parse stopped at its read budget ([`ReadBudget`]): files after
    /// that point were not read (a problem says where).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub over_budget: bool,
    /// The filesystem every path above belongs to (see [`FsRoot`]).
    #[serde(default, skip_serializing_if = "FsRoot::is_host")]
    pub root: FsRoot,
}

impl ServerConfig {
    /// An empty config for `main_file`.
    pub fn new(kind: ServerKind, main_file: PathBuf) -> Self {
        ServerConfig {
            kind,
            main_file,
            files: Vec::new(),
            watched: Vec::new(),
            blocks: Vec::new(),
            listens: Vec::new(),
            problems: Vec::new(),
            over_budget: false,
            root: FsRoot::Host,
        }
    }

    /// [`fingerprint`] over everything this config was read from: re-parse
    /// only when it changes.
    pub fn fingerprint(&self) -> u64 {
        let all: Vec<PathBuf> = self
            .files
            .iter()
            .chain(self.watched.iter())
            .cloned()
            .collect();
        fingerprint_in(&self.root, &all)
    }

    /// Marks the config and its blocks as read from `root`.
    pub(crate) fn set_root(&mut self, root: &FsRoot) {
        self.root = root.clone();
        for block in &mut self.blocks {
            block.root = root.clone();
        }
    }
}

/// A cheap change check over (path, mtime, size, inode) of each file: equal
/// fingerprints mean nothing was edited, replaced, created or removed, so a
/// cached parse is still good. Missing files count as their own state, so
/// their appearance changes the value. Stable within one agent process
/// only (std's hasher), which is all a cache needs.
pub fn fingerprint(files: &[PathBuf]) -> u64 {
    fingerprint_in(&FsRoot::Host, files)
}

/// [`fingerprint`] of files under `root`.
pub fn fingerprint_in(root: &FsRoot, files: &[PathBuf]) -> u64 {
    fingerprint_newest_in(root, files).0
}

/// A config's [`ServerConfig::fingerprint`] and the newest mtime among its
/// files (None when none could be read).
pub(crate) fn fingerprint_and_newest(config: &ServerConfig) -> (u64, Option<SystemTime>) {
    let all: Vec<PathBuf> = config
        .files
        .iter()
        .chain(config.watched.iter())
        .cloned()
        .collect();
    fingerprint_newest_in(&config.root, &all)
}

fn fingerprint_newest_in(root: &FsRoot, files: &[PathBuf]) -> (u64, Option<SystemTime>) {
    let mut hasher = DefaultHasher::new();
    let mut newest: Option<SystemTime> = None;
    for path in files {
        path.hash(&mut hasher);
        match root.metadata(path) {
            Ok(meta) => {
                if let Ok(modified) = meta.modified() {
                    newest = Some(newest.map_or(modified, |n| n.max(modified)));
                }
                1u8.hash(&mut hasher);
                meta.mtime().hash(&mut hasher);
                meta.mtime_nsec().hash(&mut hasher);
                meta.len().hash(&mut hasher);
                // An atomic replace (rename over) can keep mtime and size.
                meta.ino().hash(&mut hasher);
                meta.dev().hash(&mut hasher);
            }
            Err(_) => 0u8.hash(&mut hasher),
        }
    }
    (hasher.finish(), newest)
}

/// The canonical TLS version names, oldest first.
const VERSIONS: [&str; 5] = ["SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];

/// The protocol versions the block enables, with the server's default when
/// `ssl_protocols` / `SSLProtocol` is unset.
///
/// Defaults, and where they come from:
/// - nginx 1.22: `TLSv1 TLSv1.1 TLSv1.2` (ngx_http_ssl_module docs; TLSv1.3
///   joined the default only in 1.23.4). Debian's stock nginx.conf sets
///   `ssl_protocols` in `http {}`, so its servers usually inherit that.
/// - apache 2.4: `all -SSLv3` (mod_ssl docs, "Default: SSLProtocol all
///   -SSLv3"); with OpenSSL 3 built without SSLv3 (Debian, RHEL) `all` is
///   TLSv1 to TLSv1.3.
///
/// Caveat for nginx before 1.29.2: OpenSSL fixes the version before SNI
/// picks a server, so a handshake runs with the protocols of the
/// address:port's *default* server ([`Selection::default_block`]), whatever
/// the selected server says. Also the OpenSSL security level may refuse
/// TLSv1/1.1 even when enabled here (Debian: "no suitable signature
/// algorithm").
pub fn effective_protocols(block: &ServerBlock) -> Vec<String> {
    match block.kind {
        ServerKind::Nginx => match &block.protocols {
            Some(set) => VERSIONS
                .iter()
                .filter(|v| set.value.iter().any(|w| w.eq_ignore_ascii_case(v)))
                .map(|v| v.to_string())
                .collect(),
            None => ["TLSv1", "TLSv1.1", "TLSv1.2"]
                .iter()
                .map(|v| v.to_string())
                .collect(),
        },
        ServerKind::Apache => {
            let default = ["all".to_string(), "-SSLv3".to_string()];
            let words = block
                .protocols
                .as_ref()
                .map(|s| s.value.as_slice())
                .unwrap_or(&default);
            apache_values::protocol_set(words).0
        }
    }
}

/// The log level in effect for the block: as configured, else the server's
/// default (nginx `error_log` without a level: `error`; apache `LogLevel`
/// default: `warn`; both per their core docs).
pub fn effective_log_level(block: &ServerBlock) -> String {
    match &block.log_level {
        Some(level) => level.value.to_ascii_lowercase(),
        None => match block.kind {
            ServerKind::Nginx => "error".to_string(),
            ServerKind::Apache => "warn".to_string(),
        },
    }
}
