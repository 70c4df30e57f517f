//! The servers' own words, so that a remediation says what to edit and how
//! to apply it: directive names per server and the commands that check and
//! reload a configuration.

use crate::evidence::server_config::ServerKind;

/// Directive names per server, for remediations that say what to edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    Certificate,
    CertificateKey,
    ChainFile,
    Protocols,
    Ciphers,
    VerifyClient,
    ClientCa,
    ServerName,
    Listen,
}

pub fn directive(kind: ServerKind, which: Directive) -> &'static str {
    match (kind, which) {
        (ServerKind::Nginx, Directive::Certificate) => "ssl_certificate",
        (ServerKind::Nginx, Directive::CertificateKey) => "ssl_certificate_key",
        (ServerKind::Nginx, Directive::ChainFile) => "ssl_certificate",
        (ServerKind::Nginx, Directive::Protocols) => "ssl_protocols",
        (ServerKind::Nginx, Directive::Ciphers) => "ssl_ciphers",
        (ServerKind::Nginx, Directive::VerifyClient) => "ssl_verify_client",
        (ServerKind::Nginx, Directive::ClientCa) => "ssl_client_certificate",
        (ServerKind::Nginx, Directive::ServerName) => "server_name",
        (ServerKind::Nginx, Directive::Listen) => "listen",
        (ServerKind::Apache, Directive::Certificate) => "SSLCertificateFile",
        (ServerKind::Apache, Directive::CertificateKey) => "SSLCertificateKeyFile",
        (ServerKind::Apache, Directive::ChainFile) => "SSLCertificateChainFile",
        (ServerKind::Apache, Directive::Protocols) => "SSLProtocol",
        (ServerKind::Apache, Directive::Ciphers) => "SSLCipherSuite",
        (ServerKind::Apache, Directive::VerifyClient) => "SSLVerifyClient",
        (ServerKind::Apache, Directive::ClientCa) => "SSLCACertificateFile",
        (ServerKind::Apache, Directive::ServerName) => "ServerName",
        (ServerKind::Apache, Directive::Listen) => "Listen",
    }
}

/// How to apply a config change safely.
pub fn reload_command(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Nginx => "nginx -t && systemctl reload nginx",
        ServerKind::Apache => "apachectl configtest && systemctl reload apache2",
    }
}

/// How to check a configuration and start a server that is down.
pub fn start_command(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Nginx => "nginx -t && systemctl start nginx",
        ServerKind::Apache => "apachectl configtest && systemctl start apache2",
    }
}

/// The server's name as people write it.
pub fn server_software(kind: ServerKind) -> &'static str {
    match kind {
        ServerKind::Nginx => "nginx",
        ServerKind::Apache => "Apache",
    }
}
