//! Apache httpd (Debian's apache2 with mod_ssl) with name-based virtual
//! hosts from a small builder, every directive on its own line so a test
//! can name the `file:line` a diagnosis must point at. Run in the
//! foreground with its own ServerRoot, config, pid file and error log
//! (`ssl:info`, so handshake failures are logged).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::TempDir;
use crate::scenario::HOST_STATE_SETTLE;
use crate::servers::{Server, wait_listening};

/// One `<VirtualHost addr:port>`.
#[derive(Clone, Debug)]
pub struct VirtualHost {
    addr: String,
    port: u16,
    lines: Vec<String>,
}

impl VirtualHost {
    /// A TLS vhost on `addr:port` ("127.0.0.1", "[::1]") for `name`.
    pub fn tls(addr: &str, port: u16, name: &str, cert: &Path, key: &Path) -> VirtualHost {
        VirtualHost {
            addr: addr.to_string(),
            port,
            lines: vec![
                format!("ServerName {name}"),
                "SSLEngine on".to_string(),
                format!("SSLCertificateFile {}", cert.display()),
                format!("SSLCertificateKeyFile {}", key.display()),
            ],
        }
    }

    /// One more directive line.
    pub fn with(mut self, directive: &str) -> VirtualHost {
        self.lines.push(directive.to_string());
        self
    }
}

/// Apache with the given vhosts.
#[derive(Default)]
pub struct ApacheBuilder {
    vhosts: Vec<VirtualHost>,
}

/// A running apache and its config.
pub struct Apache {
    pub server: Server,
    pub config: PathBuf,
    text: String,
    _dir: TempDir,
}

const MODULES: &str = "/usr/lib/apache2/modules";

impl ApacheBuilder {
    pub fn new() -> ApacheBuilder {
        ApacheBuilder::default()
    }

    pub fn vhost(mut self, vhost: VirtualHost) -> ApacheBuilder {
        self.vhosts.push(vhost);
        self
    }

    /// Starts apache2 in the foreground, waits until every vhost's port
    /// listens and the host state has settled.
    pub fn start(self) -> Apache {
        let dir = TempDir::new("apache");
        let d = dir.path().display().to_string();
        let mut listens: Vec<String> = Vec::new();
        for v in &self.vhosts {
            let l = format!("Listen {}:{}", v.addr, v.port);
            if !listens.contains(&l) {
                listens.push(l);
            }
        }
        let mut conf = format!(
            "ServerRoot \"{d}\"\nPidFile \"{d}/apache.pid\"\nDefaultRuntimeDir \"{d}\"\n\
             Mutex file:{d} default\nErrorLog \"{d}/error.log\"\nLogLevel warn ssl:info\n\
             User www-data\nGroup www-data\nServerName localhost\n\
             LoadModule mpm_event_module {MODULES}/mod_mpm_event.so\n\
             LoadModule authz_core_module {MODULES}/mod_authz_core.so\n\
             LoadModule socache_shmcb_module {MODULES}/mod_socache_shmcb.so\n\
             LoadModule ssl_module {MODULES}/mod_ssl.so\n\
             SSLSessionCache shmcb:{d}/ssl_scache(512000)\n{}\n",
            listens.join("\n")
        );
        for v in &self.vhosts {
            conf.push_str(&format!("<VirtualHost {}:{}>\n", v.addr, v.port));
            for line in &v.lines {
                conf.push_str(&format!("    {line}\n"));
            }
            conf.push_str("</VirtualHost>\n");
        }
        let config = dir.join("apache2.conf");
        std::fs::write(&config, &conf).expect("apache2.conf");
        let child = Command::new("apache2")
            .arg("-d")
            .arg(dir.path())
            .arg("-f")
            .arg(&config)
            .arg("-DFOREGROUND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting apache2 (Debian apache2)");
        let port = self.vhosts.first().map(|v| v.port).unwrap_or(0);
        let server = Server::from_child(
            child,
            port,
            Some(dir.join("error.log")),
            Some(config.clone()),
        );
        for v in &self.vhosts {
            wait_listening(v.port);
        }
        std::thread::sleep(HOST_STATE_SETTLE);
        Apache {
            server,
            config,
            text: conf,
            _dir: dir,
        }
    }
}

impl Apache {
    /// `file:line` of the one config line containing `needle`.
    pub fn line_of(&self, needle: &str) -> String {
        let hits: Vec<usize> = self
            .text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.contains(needle))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(hits.len(), 1, "`{needle}` once in:\n{}", self.text);
        format!("{}:{}", self.config.display(), hits[0])
    }
}
