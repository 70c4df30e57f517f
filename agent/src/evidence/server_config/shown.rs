//! What a problem message may quote of a config file.
//!
//! Config files are read on a server's behalf and their problems go to the
//! journal, the console and collectors. A config can `include` a file that
//! is no config at all -- a key, a password file, a mounted secret -- and
//! every token of it would then be a "syntax error" quoting it. So problem
//! messages never quote a value or a word the parsers do not know: only
//! directive and section names from the lists below (the servers' own
//! vocabulary) and paths named by include and certificate directives
//! (locations, needed to act on). `file:line` says where the rest is.

/// nginx directive and block names a message may quote.
const NGINX: &[&str] = &[
    "access_log",
    "add_header",
    "alias",
    "client_max_body_size",
    "default_type",
    "error_log",
    "error_page",
    "events",
    "geo",
    "gzip",
    "http",
    "if",
    "include",
    "index",
    "keepalive_timeout",
    "limit_except",
    "listen",
    "location",
    "mail",
    "map",
    "pid",
    "proxy_pass",
    "proxy_set_header",
    "return",
    "rewrite",
    "root",
    "sendfile",
    "server",
    "server_name",
    "split_clients",
    "ssl",
    "ssl_buffer_size",
    "ssl_certificate",
    "ssl_certificate_key",
    "ssl_ciphers",
    "ssl_client_certificate",
    "ssl_conf_command",
    "ssl_crl",
    "ssl_dhparam",
    "ssl_early_data",
    "ssl_ecdh_curve",
    "ssl_handshake_timeout",
    "ssl_ocsp",
    "ssl_password_file",
    "ssl_prefer_server_ciphers",
    "ssl_preread",
    "ssl_protocols",
    "ssl_reject_handshake",
    "ssl_session_cache",
    "ssl_session_ticket_key",
    "ssl_session_tickets",
    "ssl_session_timeout",
    "ssl_stapling",
    "ssl_stapling_verify",
    "ssl_trusted_certificate",
    "ssl_verify_client",
    "ssl_verify_depth",
    "stream",
    "try_files",
    "types",
    "upstream",
    "user",
    "worker_connections",
    "worker_processes",
];

/// Apache directive and section names a message may quote (compared
/// without case, as httpd does).
const APACHE: &[&str] = &[
    "Define",
    "Directory",
    "DirectoryMatch",
    "DocumentRoot",
    "Else",
    "ElseIf",
    "ErrorLog",
    "Files",
    "FilesMatch",
    "If",
    "IfDefine",
    "IfFile",
    "IfModule",
    "IfVersion",
    "Include",
    "IncludeOptional",
    "Limit",
    "LimitExcept",
    "Listen",
    "LoadModule",
    "Location",
    "LocationMatch",
    "LogLevel",
    "Macro",
    "Proxy",
    "ProxyMatch",
    "RequireAll",
    "RequireAny",
    "RequireNone",
    "SSLCACertificateFile",
    "SSLCACertificatePath",
    "SSLCertificateChainFile",
    "SSLCertificateFile",
    "SSLCertificateKeyFile",
    "SSLCipherSuite",
    "SSLEngine",
    "SSLProtocol",
    "SSLVerifyClient",
    "ServerAlias",
    "ServerName",
    "ServerRoot",
    "UnDefine",
    "VirtualHost",
];

/// `directive "listen"` for a directive nginx has, else `a directive`.
pub(crate) fn nginx_directive(name: &str) -> String {
    match NGINX.iter().find(|n| **n == name) {
        Some(known) => format!("directive \"{known}\""),
        None => "a directive".to_string(),
    }
}

/// `block "server"` for a block nginx has, else `a block`.
pub(crate) fn nginx_block(name: &str) -> String {
    match NGINX.iter().find(|n| **n == name) {
        Some(known) => format!("block \"{known}\""),
        None => "a block".to_string(),
    }
}

/// The name as httpd spells it, when it is one httpd has.
fn apache_known(name: &str) -> Option<&'static str> {
    APACHE
        .iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .copied()
}

/// `SSLEngine` for a directive httpd has, else `a directive`.
pub(crate) fn apache_directive(name: &str) -> String {
    apache_known(name).map_or_else(|| "a directive".to_string(), str::to_string)
}

/// `<VirtualHost>` for a section httpd has, else `a section`.
pub(crate) fn apache_section(name: &str) -> String {
    apache_known(name).map_or_else(|| "a section".to_string(), |n| format!("<{n}>"))
}

/// `</VirtualHost>` for a section httpd has, else `a section end`.
pub(crate) fn apache_section_end(name: &str) -> String {
    apache_known(name).map_or_else(|| "a section end".to_string(), |n| format!("</{n}>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_are_quoted() {
        assert_eq!(
            nginx_directive("ssl_protocols"),
            "directive \"ssl_protocols\""
        );
        assert_eq!(nginx_directive("root:$6$salt$hash:19000"), "a directive");
        assert_eq!(nginx_block("server"), "block \"server\"");
        assert_eq!(nginx_block("hunter2"), "a block");
        assert_eq!(apache_directive("sslengine"), "SSLEngine");
        assert_eq!(apache_directive("AWS_SECRET_ACCESS_KEY=abc"), "a directive");
        assert_eq!(apache_section("virtualhost"), "<VirtualHost>");
        assert_eq!(apache_section("secret"), "a section");
        assert_eq!(apache_section_end("IfModule"), "</IfModule>");
        assert_eq!(apache_section_end("secret"), "a section end");
        // The lists are sorted (and so easy to check against the servers' docs).
        let mut sorted = NGINX.to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, NGINX);
    }
}
