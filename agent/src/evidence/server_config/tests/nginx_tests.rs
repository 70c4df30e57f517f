use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use super::{Fixture, block, line_of, problems_with};
use crate::evidence::server_config::discover::nginx_original_args;
use crate::evidence::server_config::nginx::{self, NginxOptions};
use crate::evidence::server_config::{
    ConfigError, ServerKind, effective_log_level, effective_protocols, fingerprint,
};

const SSL_SITE: &str = "\
# Several TLS servers on one port (test fixture).
server {
    listen 443 ssl default_server;
    listen [::]:443 ssl default_server;
    server_name default.example.com;
    ssl_certificate certs/default.pem;
    ssl_certificate_key /etc/ssl/private/default.key;
}

server {
    listen 443 ssl;
    listen [::]:443 ssl;
    server_name www.example.com example.com;
    ssl_certificate     /etc/ssl/certs/example.pem;
    ssl_certificate_key /etc/ssl/private/example.key;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_ciphers \"ECDHE+AESGCM:!aNULL\";
    error_log /var/log/nginx/example-error.log info;
}

server {
    listen 443 ssl;
    server_name *.api.example.com;
    ssl_certificate /etc/ssl/certs/api.pem;
    ssl_certificate_key /etc/ssl/private/api.key;
    ssl_verify_client on;
    ssl_client_certificate /etc/ssl/certs/clients-ca.pem;
}
";

/// Debian's stock nginx.conf and sites-available/default, verbatim except
/// that /etc/nginx/ points into the fixture, plus a multi-server TLS site.
pub(super) fn debian_nginx(fx: &Fixture) -> PathBuf {
    let main = fx.write(
        "nginx.conf",
        &include_str!("fixtures/nginx/nginx.conf").replace("/etc/nginx/", "@ROOT@/"),
    );
    fx.write("mime.types", "types {\n    text/html html;\n}\n");
    fx.mkdir("modules-enabled");
    fx.mkdir("conf.d");
    fx.write(
        "sites-enabled/default",
        include_str!("fixtures/nginx/sites-default"),
    );
    fx.write("sites-enabled/example-ssl", SSL_SITE);
    main
}

#[test]
fn debian_default_layout() {
    let fx = Fixture::new("ngx-debian");
    let main = debian_nginx(&fx);
    let config = nginx::parse(&main).unwrap();
    assert_eq!(config.kind, ServerKind::Nginx);
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    assert_eq!(
        config.files,
        vec![
            main.clone(),
            fx.path("mime.types"),
            fx.path("sites-enabled/default"),
            fx.path("sites-enabled/example-ssl"),
        ]
    );
    assert_eq!(config.blocks.len(), 4);

    let default = &config.blocks[0];
    assert_eq!(default.file, fx.path("sites-enabled/default"));
    assert_eq!(default.line, 21);
    assert_eq!(default.server_names[0].value, "_");
    let ports: Vec<(Option<IpAddr>, u16, bool, bool)> = default
        .listens
        .iter()
        .map(|l| (l.addr, l.port, l.ssl, l.default_server))
        .collect();
    assert_eq!(
        ports,
        vec![
            (None, 80, false, true),
            (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 80, false, true),
        ]
    );
    assert_eq!(default.listens[1].line, 23);
    // http-level ssl_protocols from nginx.conf:33 reaches every server.
    let protocols = default.protocols.as_ref().unwrap();
    assert_eq!(
        protocols.value,
        vec!["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    );
    assert_eq!(protocols.location(), format!("{}:33", main.display()));
    // Main-level error_log (nginx.conf:4), default level.
    let log = default.error_log.as_ref().unwrap();
    assert_eq!(log.value, PathBuf::from("/var/log/nginx/error.log"));
    assert_eq!((log.file.clone(), log.line), (main.clone(), 4));
    assert_eq!(default.log_level.as_ref().unwrap().value, "error");
    assert!(!default.logs_handshake_failures());
    assert!(default.certificate.is_none());

    // Listens merged per address:port: 80 and 443 on v4 and v6.
    let merged: Vec<(Option<IpAddr>, u16, bool)> = config
        .listens
        .iter()
        .map(|l| (l.addr, l.port, l.ssl))
        .collect();
    assert_eq!(
        merged,
        vec![
            (None, 80, false),
            (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 80, false),
            (None, 443, true),
            (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 443, true),
        ]
    );
}

#[test]
fn multi_server_ssl_site() {
    let fx = Fixture::new("ngx-ssl-site");
    let main = debian_nginx(&fx);
    let site = fx.path("sites-enabled/example-ssl");
    let config = nginx::parse(&main).unwrap();

    let default = block(&config, "default.example.com");
    assert!(default.listens.iter().all(|l| l.ssl && l.default_server));
    // Relative certificate paths resolve against the conf dir.
    assert_eq!(
        default.certificate.as_ref().unwrap().value,
        fx.path("certs/default.pem")
    );
    assert_eq!(
        default.certificate.as_ref().unwrap().line,
        line_of(&site, "certs/default.pem")
    );

    let www = block(&config, "www.example.com");
    let names: Vec<&str> = www.server_names.iter().map(|n| n.value.as_str()).collect();
    assert_eq!(names, vec!["www.example.com", "example.com"]);
    assert_eq!(
        www.protocols.as_ref().unwrap().location(),
        format!("{}:{}", site.display(), line_of(&site, "ssl_protocols"))
    );
    assert_eq!(effective_protocols(www), vec!["TLSv1.2", "TLSv1.3"]);
    assert_eq!(www.ciphers.as_ref().unwrap().value, "ECDHE+AESGCM:!aNULL");
    assert_eq!(
        www.error_log.as_ref().unwrap().value,
        PathBuf::from("/var/log/nginx/example-error.log")
    );
    assert_eq!(effective_log_level(www), "info");
    assert!(www.logs_handshake_failures());

    let api = block(&config, "*.api.example.com");
    assert_eq!(api.verify_client.as_ref().unwrap().value, "on");
    assert_eq!(
        api.client_ca.as_ref().unwrap().value,
        PathBuf::from("/etc/ssl/certs/clients-ca.pem")
    );
    assert_eq!(
        api.client_ca.as_ref().unwrap().line,
        line_of(&site, "ssl_client_certificate")
    );
    assert_eq!(config.blocks_on_port(443).len(), 3);
    assert_eq!(config.blocks_on_port(80).len(), 1);
    assert!(config.blocks_on_port(8443).is_empty());
}

#[test]
fn inheritance_main_http_server() {
    let fx = Fixture::new("ngx-inherit");
    let main = fx.write(
        "nginx.conf",
        "error_log logs/main.log warn;
events {}
http {
    ssl_certificate /etc/ssl/http.pem;
    ssl_certificate_key /etc/ssl/http.key;
    ssl_verify_client optional;
    server {
        listen 443 ssl;
        server_name inherits;
    }
    server {
        listen 443 ssl;
        server_name overrides;
        ssl_certificate /etc/ssl/rsa.pem;
        ssl_certificate_key /etc/ssl/rsa.key;
        ssl_certificate /etc/ssl/ecdsa.pem;
        ssl_certificate_key /etc/ssl/ecdsa.key;
        ssl_verify_client off;
        error_log /var/log/a.log notice;
        error_log /var/log/b.log debug;
        location / {
            ssl_protocols TLSv1.3;
        }
    }
    # Written after the servers, still applies to them (nginx merges
    # contexts after parsing).
    ssl_ciphers HIGH:!aNULL;
}
",
    );
    let config = nginx::parse_with(
        &main,
        &NginxOptions {
            prefix: Some(PathBuf::from("/opt/nginx")),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);

    let inherits = block(&config, "inherits");
    assert_eq!(
        inherits.certificate.as_ref().unwrap().value,
        PathBuf::from("/etc/ssl/http.pem")
    );
    assert_eq!(inherits.certificate.as_ref().unwrap().line, 4);
    assert_eq!(inherits.verify_client.as_ref().unwrap().value, "optional");
    assert_eq!(inherits.ciphers.as_ref().unwrap().line, 27);
    // error_log relative to the prefix, from the main context.
    assert_eq!(
        inherits.error_log.as_ref().unwrap().value,
        PathBuf::from("/opt/nginx/logs/main.log")
    );
    assert_eq!(inherits.log_level.as_ref().unwrap().value, "warn");
    // No ssl_protocols anywhere: nginx 1.22's default.
    assert!(inherits.protocols.is_none());
    assert_eq!(
        effective_protocols(inherits),
        vec!["TLSv1", "TLSv1.1", "TLSv1.2"]
    );

    let overrides = block(&config, "overrides");
    // The server's own certificates replace the inherited list.
    assert_eq!(
        overrides.certificate.as_ref().unwrap().value,
        PathBuf::from("/etc/ssl/rsa.pem")
    );
    assert_eq!(overrides.extra_certificates.len(), 1);
    assert_eq!(
        overrides.extra_certificate_keys[0].value,
        PathBuf::from("/etc/ssl/ecdsa.key")
    );
    assert_eq!(overrides.certificate_files().count(), 4);
    assert_eq!(overrides.verify_client.as_ref().unwrap().value, "off");
    // Most verbose of the server's error_logs; location settings ignored.
    assert_eq!(
        overrides.error_log.as_ref().unwrap().value,
        PathBuf::from("/var/log/b.log")
    );
    assert_eq!(overrides.log_level.as_ref().unwrap().value, "debug");
    assert!(overrides.protocols.is_none());
}

#[test]
fn tls_directive_outside_http_is_a_problem() {
    let fx = Fixture::new("ngx-main-ssl");
    let main = fx.write(
        "nginx.conf",
        "ssl_protocols TLSv1.2;\nserver { listen 80; }\nhttp { ssl_protocols TLSv1.2 TLSv9; ssl_ciphers A; ssl_ciphers B; ssl on; ssl maybe; }\n",
    );
    let config = nginx::parse(&main).unwrap();
    assert_eq!(problems_with(&config, "not allowed here").len(), 2);
    assert_eq!(
        problems_with(&config, "invalid value (argument 2) in \"ssl_protocols\"").len(),
        1
    );
    assert_eq!(problems_with(&config, "is duplicate").len(), 2);
    assert!(config.problems.iter().all(|p| p.file == main));
}

#[test]
fn includes_with_globs_relative_to_conf_dir() {
    let fx = Fixture::new("ngx-glob");
    let main = fx.write(
        "nginx.conf",
        "http {\n    include conf.d/*.conf;\n    include nothing/*.conf;\n    include snippets/tls.conf;\n}\n",
    );
    fx.write(
        "conf.d/20-b.conf",
        "server { listen 8443 ssl; server_name b; }\n",
    );
    fx.write(
        "conf.d/10-a.conf",
        "server { listen 8443 ssl; server_name a; }\n",
    );
    fx.write(
        "conf.d/.hidden.conf",
        "server { listen 1; server_name hidden; }\n",
    );
    fx.write(
        "conf.d/notes.txt",
        "server { listen 2; server_name txt; }\n",
    );
    fx.write("snippets/tls.conf", "ssl_protocols TLSv1.3;\n");
    let config = nginx::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    let names: Vec<&str> = config
        .blocks
        .iter()
        .map(|b| b.server_names[0].value.as_str())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    // The snippet included after the servers sets http-level protocols.
    let p = config.blocks[0].protocols.as_ref().unwrap();
    assert_eq!((p.file.clone(), p.line), (fx.path("snippets/tls.conf"), 1));
    assert!(config.watched.contains(&fx.path("conf.d")));
}

#[test]
fn include_loop_is_reported_not_followed() {
    let fx = Fixture::new("ngx-loop");
    let main = fx.write("nginx.conf", "http {\n    include a.conf;\n}\n");
    fx.write(
        "a.conf",
        "include b.conf;\nserver { listen 80; server_name a; }\n",
    );
    fx.write("b.conf", "include a.conf;\ninclude b.conf;\n");
    let config = nginx::parse(&main).unwrap();
    let loops = problems_with(&config, "include loop");
    assert_eq!(loops.len(), 2, "{:#?}", config.problems);
    assert_eq!(loops[0].file, fx.path("b.conf"));
    assert_eq!(loops[0].line, Some(1));
    assert_eq!(config.blocks.len(), 1);
}

#[test]
fn missing_include_and_directory_include_are_problems() {
    let fx = Fixture::new("ngx-missing");
    let main = fx.write(
        "nginx.conf",
        "http {\n    include missing.conf;\n    include sites;\n    server { listen 80; }\n}\n",
    );
    fx.mkdir("sites");
    let config = nginx::parse(&main).unwrap();
    let missing = problems_with(&config, "missing.conf");
    assert_eq!(missing.len(), 1, "{:#?}", config.problems);
    assert_eq!(
        (missing[0].file.clone(), missing[0].line),
        (main.clone(), Some(2))
    );
    assert!(missing[0].message.contains("no such file"));
    let dir = problems_with(&config, "not a regular file");
    assert_eq!(dir.len(), 1);
    assert_eq!(dir[0].line, Some(3));
    // The missing file is watched: creating it changes the fingerprint.
    assert!(config.watched.contains(&fx.path("missing.conf")));
    assert_eq!(config.blocks.len(), 1);
}

#[test]
fn unterminated_block_keeps_servers() {
    let fx = Fixture::new("ngx-unterminated");
    let main = fx.write(
        "nginx.conf",
        "http {\n    server {\n        listen 443 ssl;\n        server_name kept;\n",
    );
    let config = nginx::parse(&main).unwrap();
    assert_eq!(config.problems.len(), 2, "{:#?}", config.problems);
    assert!(
        config
            .problems
            .iter()
            .all(|p| p.message.contains("never closed"))
    );
    assert_eq!(config.problems[0].line, Some(2));
    assert_eq!(block(&config, "kept").listens[0].port, 443);
}

#[test]
fn listen_forms() {
    let fx = Fixture::new("ngx-listen");
    let main = fx.write(
        "nginx.conf",
        "http {
    server {
        listen 443;
        listen 8443 ssl;
        listen 127.0.0.1:9443 ssl default_server;
        listen [::]:443 ssl;
        listen *:444;
        listen localhost:445;
        listen 10.0.0.1;
        listen 446 default;
        listen unix:/run/nginx.sock;
        listen 0;
        listen www.example.com:447;
        listen [::1;
    }
    server { server_name no-listen; }
}
",
    );
    let config = nginx::parse(&main).unwrap();
    let v4 = |a, b, c, d| Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)));
    let got: Vec<(Option<IpAddr>, u16, bool, bool, u32)> = config.blocks[0]
        .listens
        .iter()
        .map(|l| (l.addr, l.port, l.ssl, l.default_server, l.line))
        .collect();
    assert_eq!(
        got,
        vec![
            (None, 443, false, false, 3),
            (None, 8443, true, false, 4),
            (v4(127, 0, 0, 1), 9443, true, true, 5),
            (Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)), 443, true, false, 6),
            (None, 444, false, false, 7),
            (v4(127, 0, 0, 1), 445, false, false, 8),
            (Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 445, false, false, 8),
            (v4(10, 0, 0, 1), 80, false, false, 9),
            (None, 446, false, true, 10),
        ]
    );
    assert_eq!(config.problems.len(), 3, "{:#?}", config.problems);
    assert!(problems_with(&config, "invalid port").len() == 1);
    assert!(problems_with(&config, "a host name is resolved by nginx").len() == 1);
    // A server without listen is on *:80.
    let implicit = &block(&config, "no-listen").listens;
    assert_eq!((implicit[0].addr, implicit[0].port), (None, 80));
}

#[test]
fn old_ssl_on_and_server_name_forms() {
    let fx = Fixture::new("ngx-ssl-on");
    let main = fx.write(
        "nginx.conf",
        "http {
    server {
        listen 443;
        ssl on;
        server_name example.com *.example.com .example.org mail.* ~^(?<sub>.+)\\.example\\.net$ _ \"\";
    }
}
",
    );
    let config = nginx::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    let b = &config.blocks[0];
    assert!(b.listens[0].ssl);
    assert!(config.listens[0].ssl);
    let names: Vec<&str> = b.server_names.iter().map(|n| n.value.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "example.com",
            "*.example.com",
            ".example.org",
            "mail.*",
            "~^(?<sub>.+)\\.example\\.net$",
            "_",
            ""
        ]
    );
    assert!(b.server_names.iter().all(|n| n.line == 5));
}

#[test]
fn duplicate_default_server_and_repeated_protocols() {
    let fx = Fixture::new("ngx-dup");
    let main = fx.write(
        "nginx.conf",
        "http {
    server { listen 443 ssl default_server; ssl_protocols TLSv1.2; ssl_protocols TLSv1.3; }
    server { listen 443 ssl default_server; }
}
",
    );
    let config = nginx::parse(&main).unwrap();
    let dup = problems_with(&config, "duplicate default server");
    assert_eq!(dup.len(), 1);
    assert_eq!(dup[0].line, Some(3));
    assert_eq!(problems_with(&config, "union").len(), 1);
    assert_eq!(
        effective_protocols(&config.blocks[0]),
        vec!["TLSv1.2", "TLSv1.3"]
    );
}

#[test]
fn stream_servers_are_tls_endpoints_too() {
    let fx = Fixture::new("ngx-stream");
    let main = fx.write(
        "nginx.conf",
        "stream {
    ssl_protocols TLSv1.2;
    server {
        listen 5432 ssl;
        listen 53 udp;
        ssl_certificate /etc/ssl/db.pem;
    }
}
",
    );
    let config = nginx::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    let b = &config.blocks[0];
    assert_eq!(b.listens.len(), 1);
    assert!(b.listens[0].ssl);
    assert_eq!(b.protocols.as_ref().unwrap().value, vec!["TLSv1.2"]);
}

#[test]
fn main_file_failures_are_errors() {
    let fx = Fixture::new("ngx-main-err");
    match nginx::parse(&fx.path("absent.conf")) {
        Err(ConfigError::Read { path, source }) => {
            assert_eq!(path, fx.path("absent.conf"));
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    let dir = fx.mkdir("dir.conf");
    assert!(matches!(
        nginx::parse(&dir),
        Err(ConfigError::NotAFile { .. })
    ));
    let err = nginx::parse(&dir).unwrap_err().to_string();
    assert!(err.contains("dir.conf"), "{err}");
}

#[test]
fn cmdline_config_paths() {
    let args = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
    assert_eq!(
        nginx::config_path_from_cmdline(&args("/usr/sbin/nginx -g daemon on; master_process on;")),
        PathBuf::from("/etc/nginx/nginx.conf")
    );
    assert_eq!(
        nginx::config_path_from_cmdline(&args("nginx -c /srv/nginx.conf")),
        PathBuf::from("/srv/nginx.conf")
    );
    assert_eq!(
        nginx::config_path_from_cmdline(&args("nginx -p /opt/ngx/ -c conf/nginx.conf")),
        PathBuf::from("/opt/ngx/conf/nginx.conf")
    );
    assert_eq!(
        nginx::config_path_from_cmdline(&args("nginx -tc/srv/x.conf")),
        PathBuf::from("/srv/x.conf")
    );
    assert_eq!(
        nginx::config_path_from_cmdline(&args("nginx -c rel.conf")),
        Path::new(nginx::DEFAULT_PREFIX).join("rel.conf")
    );
    assert_eq!(
        nginx::options_from_cmdline(&args("nginx -p /opt/ngx")).prefix,
        Some(PathBuf::from("/opt/ngx"))
    );
    // The master's rewritten title.
    let title = vec![
        "nginx: master process /usr/sbin/nginx -c /etc/nginx/alt.conf -g daemon on; master_process on;"
            .to_string(),
    ];
    let original = nginx_original_args(&title);
    assert_eq!(original[0], "/usr/sbin/nginx");
    assert_eq!(
        nginx::config_path_from_cmdline(&original),
        PathBuf::from("/etc/nginx/alt.conf")
    );
    let plain = args("nginx -c /x.conf");
    assert_eq!(nginx_original_args(&plain), plain);
}

#[test]
fn fingerprint_tracks_edits_and_new_files() {
    let fx = Fixture::new("ngx-fingerprint");
    let main = fx.write("nginx.conf", "http {\n    include sites/*;\n}\n");
    fx.write("sites/a", "server { listen 80; }\n");
    let config = nginx::parse(&main).unwrap();
    let before = config.fingerprint();
    assert_eq!(before, config.fingerprint());
    assert_eq!(fingerprint(&config.files), fingerprint(&config.files));

    // A new file in an included directory changes the directory's mtime.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fx.write("sites/b", "server { listen 81; }\n");
    let after_add = config.fingerprint();
    assert_ne!(before, after_add);

    // Same size, new content and mtime.
    std::thread::sleep(std::time::Duration::from_millis(20));
    fx.write("sites/a", "server { listen 82; }\n");
    assert_ne!(after_add, config.fingerprint());

    // A missing file has a stable fingerprint of its own.
    let missing = vec![fx.path("nope")];
    assert_eq!(fingerprint(&missing), fingerprint(&missing));
    assert_ne!(fingerprint(&missing), fingerprint(&[]));
}
