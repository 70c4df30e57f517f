use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use super::{Fixture, block, problems_with};
use crate::evidence::server_config::apache::{self, ApacheOptions, parse_envvars};
use crate::evidence::server_config::{ServerKind, effective_log_level, effective_protocols};

/// Debian's stock apache2 layout, verbatim (apache2.conf, ports.conf,
/// envvars, mods ssl.load/ssl.conf, sites 000-default and default-ssl),
/// with ssl and default-ssl enabled the way a2enmod/a2ensite do it.
fn debian_apache(fx: &Fixture) -> PathBuf {
    let main = fx.write("apache2.conf", include_str!("fixtures/apache/apache2.conf"));
    fx.write("ports.conf", include_str!("fixtures/apache/ports.conf"));
    fx.write("envvars", include_str!("fixtures/apache/envvars"));
    fx.write(
        "mods-enabled/mpm_event.load",
        "# Conflicts: mpm_worker mpm_prefork\nLoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so\n",
    );
    fx.write(
        "mods-enabled/ssl.load",
        include_str!("fixtures/apache/ssl.load"),
    );
    fx.write(
        "mods-enabled/ssl.conf",
        include_str!("fixtures/apache/ssl.conf"),
    );
    fx.mkdir("conf-enabled");
    fx.write(
        "sites-enabled/000-default.conf",
        include_str!("fixtures/apache/000-default.conf"),
    );
    fx.write(
        "sites-enabled/default-ssl.conf",
        include_str!("fixtures/apache/default-ssl.conf"),
    );
    main
}

#[test]
fn debian_layout_with_enabled_ssl_vhost() {
    let fx = Fixture::new("apache-debian");
    let main = debian_apache(&fx);
    let config = apache::parse(&main).unwrap();
    assert_eq!(config.kind, ServerKind::Apache);
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    assert!(config.files.contains(&fx.path("envvars")));
    assert!(config.files.contains(&fx.path("mods-enabled/ssl.conf")));
    assert!(
        config
            .files
            .contains(&fx.path("sites-enabled/default-ssl.conf"))
    );

    // ports.conf: Listen 80, and 443 inside <IfModule ssl_module> (loaded);
    // the <IfModule mod_gnutls.c> copy stays inactive.
    let ports: Vec<(u16, bool, u32)> = config
        .listens
        .iter()
        .map(|l| (l.port, l.ssl, l.line))
        .collect();
    assert_eq!(ports, vec![(80, false, 5), (443, true, 8)]);

    assert_eq!(config.blocks.len(), 2);
    let plain = &config.blocks[0];
    assert_eq!(plain.file, fx.path("sites-enabled/000-default.conf"));
    assert!(!plain.is_tls());

    let ssl_site = fx.path("sites-enabled/default-ssl.conf");
    let tls = &config.blocks[1];
    assert_eq!((tls.file.clone(), tls.line), (ssl_site.clone(), 1));
    assert_eq!(
        tls.listens
            .iter()
            .map(|l| (l.addr, l.port, l.ssl))
            .collect::<Vec<_>>(),
        vec![(None, 443, true)]
    );
    assert!(tls.server_names.is_empty());
    let cert = tls.certificate.as_ref().unwrap();
    assert_eq!(
        cert.value,
        PathBuf::from("/etc/ssl/certs/ssl-cert-snakeoil.pem")
    );
    assert_eq!(cert.line, 31);
    assert_eq!(
        tls.certificate_key.as_ref().unwrap().value,
        PathBuf::from("/etc/ssl/private/ssl-cert-snakeoil.key")
    );
    // Server-wide settings from mods-enabled/ssl.conf.
    let protocols = tls.protocols.as_ref().unwrap();
    assert_eq!(protocols.value, vec!["all", "-SSLv3"]);
    assert_eq!(protocols.file, fx.path("mods-enabled/ssl.conf"));
    assert_eq!(
        effective_protocols(tls),
        vec!["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"]
    );
    assert_eq!(tls.ciphers.as_ref().unwrap().value, "HIGH:!aNULL");
    // ErrorLog ${APACHE_LOG_DIR}/error.log with APACHE_LOG_DIR from envvars.
    let log = tls.error_log.as_ref().unwrap();
    assert_eq!(log.value, PathBuf::from("/var/log/apache2/error.log"));
    assert_eq!((log.file.clone(), log.line), (ssl_site.clone(), 12));
    // `LogLevel warn` from apache2.conf: handshake failures are not logged.
    let level = tls.log_level.as_ref().unwrap();
    assert_eq!((level.value.as_str(), level.line), ("warn", 143));
    assert!(!tls.logs_handshake_failures());

    // Without SNI (and with any SNI: no names) the only *:443 vhost serves.
    let s = config.select(None, 443, Some("host.example")).unwrap();
    assert_eq!(s.block, tls);
    assert!(s.by_default);
}

#[test]
fn loglevel_for_ssl() {
    let fx = Fixture::new("apache-loglevel");
    let main = fx.write(
        "httpd.conf",
        "LogLevel info ssl:warn
ErrorLog logs/error_log
<VirtualHost *:443>
    ServerName a
    LogLevel warn ssl:info
</VirtualHost>
<VirtualHost *:443>
    ServerName b
</VirtualHost>
<VirtualHost *:443>
    ServerName c
    LogLevel mod_ssl.c:debug
    LogLevel error
</VirtualHost>
<VirtualHost *:443>
    ServerName d
    LogLevel rewrite:trace3
</VirtualHost>
",
    );
    let config = apache::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    let level = |name: &str| effective_log_level(block(&config, name));
    assert_eq!(level("a"), "info");
    assert_eq!(block(&config, "a").log_level.as_ref().unwrap().line, 5);
    assert!(block(&config, "a").logs_handshake_failures());
    assert_eq!(level("b"), "warn");
    // A plain level resets the module levels set before it.
    assert_eq!(level("c"), "error");
    assert_eq!(level("d"), "warn");
    // Relative ErrorLog: ServerRoot (the file's directory here).
    assert_eq!(
        block(&config, "b").error_log.as_ref().unwrap().value,
        fx.path("logs/error_log")
    );
}

#[test]
fn defines_variables_and_conditionals() {
    let fx = Fixture::new("apache-define");
    fx.mkdir("mods-enabled");
    fx.write(
        "mods-enabled/ssl.load",
        "LoadModule ssl_module modules/mod_ssl.so\n",
    );
    let main = fx.write(
        "apache2.conf",
        "Define CERTDIR /srv/certs
Define TLS
<IfModule ssl_module>
    Listen 443
</IfModule>
<IfModule !mod_ssl.c>
    Listen 444
</IfModule>
<IfModule mod_gnutls.c>
    Listen 445
</IfModule>
<IfModule mod_version.c>
    Listen 446
</IfModule>
<IfDefine TLS>
    Listen 447
</IfDefine>
<IfDefine !TLS>
    Listen 448
</IfDefine>
<IfDefine MAYBE_FROM_CMDLINE>
    Listen 449
</IfDefine>
<ifmodule ssl_module>
<virtualhost *:443>
    sslengine ON
    sslcertificatefile ${CERTDIR}/a.pem
    SSLCertificateKeyFile \\
        ${CERTDIR}/a.key
    SSLCACertificateFile ${UNDEFINED_VAR}/ca.pem
</virtualhost>
</ifmodule>
",
    );
    let config = apache::parse(&main).unwrap();
    let ports: Vec<u16> = config.listens.iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![443, 446, 447, 449]);
    let vhost = &config.blocks[0];
    assert!(vhost.is_tls());
    assert_eq!(
        vhost.certificate.as_ref().unwrap().value,
        PathBuf::from("/srv/certs/a.pem")
    );
    // Continuation lines keep the first line's number.
    let key = vhost.certificate_key.as_ref().unwrap();
    assert_eq!(
        (key.value.clone(), key.line),
        (PathBuf::from("/srv/certs/a.key"), 28)
    );
    // An undefined variable stays as written, and is a problem.
    // (and, being relative, lands under ServerRoot as httpd would put it).
    assert_eq!(
        vhost.client_ca.as_ref().unwrap().value,
        fx.path("${UNDEFINED_VAR}/ca.pem")
    );
    // Said without its name (a message never quotes the file).
    let undefined = problems_with(&config, "a config variable (${...}) is not defined");
    assert_eq!(undefined.len(), 1);
    assert_eq!(undefined[0].line, Some(30));
    assert_eq!(config.problems.len(), 1, "{:#?}", config.problems);

    // With the command line known, an undefined -D name is inactive.
    let config = apache::parse_with(
        &main,
        &ApacheOptions {
            defines: Some(vec![]),
            ..Default::default()
        },
    )
    .unwrap();
    let ports: Vec<u16> = config.listens.iter().map(|l| l.port).collect();
    assert_eq!(ports, vec![443, 446, 447]);
    // The process environment fills variables.
    let config = apache::parse_with(
        &main,
        &ApacheOptions {
            env: HashMap::from([("UNDEFINED_VAR".to_string(), "/etc/ca".to_string())]),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    assert_eq!(
        config.blocks[0].client_ca.as_ref().unwrap().value,
        PathBuf::from("/etc/ca/ca.pem")
    );
}

#[test]
fn includes_globs_directories_and_optional() {
    let fx = Fixture::new("apache-include");
    let main = fx.write(
        "conf/httpd.conf",
        "ServerRoot @ROOT@
Include conf.modules.d/*.conf
IncludeOptional conf.d/*.conf
IncludeOptional nothing/*.conf
IncludeOptional absent.conf
Include vhosts
Include missing/*.conf
Include missing.conf
",
    );
    fx.write(
        "conf.modules.d/00-ssl.conf",
        "LoadModule ssl_module modules/mod_ssl.so\n",
    );
    fx.write(
        "conf.d/ssl.conf",
        "Listen 443 https
<VirtualHost _default_:443>
ErrorLog logs/ssl_error_log
LogLevel warn
SSLEngine on
SSLProtocol -all +TLSv1.2 +TLSv1.3
SSLCipherSuite PROFILE=SYSTEM
SSLCipherSuite TLSv1.3 TLS_AES_256_GCM_SHA384
SSLCertificateFile /etc/pki/tls/certs/localhost.crt
SSLCertificateKeyFile /etc/pki/tls/private/localhost.key
SSLVerifyClient require
SSLCACertificatePath /etc/pki/tls/certs
</VirtualHost>
",
    );
    fx.write(
        "vhosts/b/2.conf",
        "<VirtualHost *:8443>\nServerName two\n</VirtualHost>\n",
    );
    fx.write(
        "vhosts/a.conf",
        "<VirtualHost *:8443>\nServerName one\n</VirtualHost>\n",
    );
    fx.write(
        "vhosts/a.conf~",
        "<VirtualHost *:8443>\nServerName backup\n</VirtualHost>\n",
    );
    fx.write(
        "vhosts/.hidden",
        "<VirtualHost *:8443>\nServerName hidden\n</VirtualHost>\n",
    );

    let config = apache::parse(&main).unwrap();
    // ServerRoot is /etc/httpd-style: the parent of conf/.
    let names: Vec<&str> = config
        .blocks
        .iter()
        .filter_map(|b| b.server_names.first().map(|n| n.value.as_str()))
        .collect();
    assert_eq!(names, vec!["one", "two"]);
    let tls = &config.blocks[0];
    assert!(tls.is_tls());
    assert_eq!(tls.listens[0].addr, None);
    assert_eq!(
        tls.error_log.as_ref().unwrap().value,
        fx.path("logs/ssl_error_log")
    );
    assert_eq!(effective_protocols(tls), vec!["TLSv1.2", "TLSv1.3"]);
    assert_eq!(tls.ciphers.as_ref().unwrap().value, "PROFILE=SYSTEM");
    assert_eq!(tls.verify_client.as_ref().unwrap().value, "require");
    assert_eq!(
        tls.client_ca.as_ref().unwrap().value,
        PathBuf::from("/etc/pki/tls/certs")
    );
    assert!(config.listens[0].ssl);

    // `Include` of a glob matching nothing and of a missing file: problems
    // at the directive's line; IncludeOptional: silence.
    assert_eq!(config.problems.len(), 2, "{:#?}", config.problems);
    assert_eq!(problems_with(&config, "matches no file")[0].line, Some(7));
    assert_eq!(problems_with(&config, "missing.conf")[0].line, Some(8));
    assert!(config.watched.contains(&fx.path("absent.conf")));
}

#[test]
fn include_loop_and_nested_vhost() {
    let fx = Fixture::new("apache-loop");
    let main = fx.write("apache2.conf", "Include a.conf\n");
    fx.write("a.conf", "Include apache2.conf\n<VirtualHost *:443>\n<VirtualHost *:444>\n</VirtualHost>\n</VirtualHost>\n");
    let config = apache::parse(&main).unwrap();
    let loops = problems_with(&config, "include loop");
    assert_eq!(loops.len(), 1, "{:#?}", config.problems);
    assert_eq!(
        (loops[0].file.clone(), loops[0].line),
        (fx.path("a.conf"), Some(1))
    );
    assert_eq!(problems_with(&config, "cannot nest").len(), 1);
    assert_eq!(config.blocks.len(), 1);
}

#[test]
fn protocol_override_warning_and_listen_forms() {
    let fx = Fixture::new("apache-proto");
    let main = fx.write(
        "apache2.conf",
        "Listen 192.0.2.1:8443
Listen [::1]:9443 https
Listen 80
Listen www.example.com:80
Listen nope
SSLProtocol TLSv1.2 TLSv1.3
SSLProtocol +TLSv9
<VirtualHost [::1]:9443 192.0.2.1:8443>
SSLEngine on
Listen 1
</VirtualHost>
",
    );
    let config = apache::parse(&main).unwrap();
    assert_eq!(problems_with(&config, "overrides already set").len(), 1);
    assert_eq!(problems_with(&config, "illegal protocol").len(), 1);
    assert_eq!(problems_with(&config, "host name").len(), 1);
    assert_eq!(problems_with(&config, "port required").len(), 1);
    assert_eq!(problems_with(&config, "Listen cannot occur").len(), 1);
    let listens: Vec<(Option<IpAddr>, u16, bool)> = config
        .listens
        .iter()
        .map(|l| (l.addr, l.port, l.ssl))
        .collect();
    assert_eq!(
        listens,
        vec![
            (Some("192.0.2.1".parse().unwrap()), 8443, true),
            (Some(IpAddr::V6(Ipv6Addr::LOCALHOST)), 9443, true),
            (None, 80, false),
        ]
    );
    assert_eq!(config.blocks[0].listens.len(), 2);
}

#[test]
fn envvars_are_read_not_run() {
    let vars = parse_envvars(
        "unset HOME
if [ \"${APACHE_CONFDIR##/etc/apache2-}\" != \"${APACHE_CONFDIR}\" ] ; then
\tSUFFIX=\"-${APACHE_CONFDIR##/etc/apache2-}\"
else
\tSUFFIX=
fi
export APACHE_RUN_USER=www-data
export APACHE_LOG_DIR=/var/log/apache2$SUFFIX
export QUOTED=\"/a b\" # comment
export SINGLE='$NOT_EXPANDED'
export BRACED=${APACHE_LOG_DIR}/x
export EVIL=$(rm -rf /)
export BACKTICK=`id`
#export COMMENTED=1
export LANG
",
    )
    .vars;
    assert_eq!(vars.get("APACHE_RUN_USER").unwrap(), "www-data");
    assert_eq!(vars.get("APACHE_LOG_DIR").unwrap(), "/var/log/apache2");
    assert_eq!(vars.get("QUOTED").unwrap(), "/a b");
    assert_eq!(vars.get("SINGLE").unwrap(), "$NOT_EXPANDED");
    assert_eq!(vars.get("BRACED").unwrap(), "/var/log/apache2/x");
    assert!(!vars.contains_key("SUFFIX"));
    assert!(!vars.contains_key("EVIL"));
    assert!(!vars.contains_key("BACKTICK"));
    assert!(!vars.contains_key("COMMENTED"));
}

#[test]
fn cmdline_config_paths() {
    let args = |s: &str| -> Vec<String> { s.split_whitespace().map(str::to_string).collect() };
    assert_eq!(
        apache::config_path_from_cmdline(&args("/usr/sbin/apache2 -k start")),
        PathBuf::from("/etc/apache2/apache2.conf")
    );
    assert_eq!(
        apache::config_path_from_cmdline(&args("/usr/sbin/httpd -DFOREGROUND")),
        PathBuf::from("/etc/httpd/conf/httpd.conf")
    );
    assert_eq!(
        apache::config_path_from_cmdline(&args("/usr/sbin/apache2 -d /etc/apache2-two -k start")),
        PathBuf::from("/etc/apache2-two/apache2.conf")
    );
    assert_eq!(
        apache::config_path_from_cmdline(&args("httpd -d /opt/web -f conf/web.conf")),
        PathBuf::from("/opt/web/conf/web.conf")
    );
    assert_eq!(
        apache::config_path_from_cmdline(&args("httpd -f /srv/h.conf")),
        PathBuf::from("/srv/h.conf")
    );
    let options = apache::options_from_cmdline(&args("httpd -D SSL -DFOREGROUND -d /opt/web"));
    assert_eq!(options.server_root, Some(PathBuf::from("/opt/web")));
    assert_eq!(
        options.defines,
        Some(vec!["SSL".to_string(), "FOREGROUND".to_string()])
    );
    // No program name at all.
    assert_eq!(
        apache::config_path_from_cmdline(&args("-f /srv/h.conf")),
        PathBuf::from("/srv/h.conf")
    );
}

#[test]
fn certificate_lists_merge_like_mod_ssl() {
    let fx = Fixture::new("apache-certmerge");
    let main = fx.write(
        "apache2.conf",
        "SSLEngine on
SSLCertificateFile /g/rsa.pem
SSLCertificateFile /g/ecdsa.pem
SSLCertificateKeyFile /g/rsa.key
<VirtualHost *:443>
    SSLCertificateFile /v/rsa.pem
</VirtualHost>
<VirtualHost *:8443>
    SSLEngine optional
</VirtualHost>
",
    );
    let config = apache::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    let v = &config.blocks[0];
    // The vhost's first certificate replaces the server-wide first one;
    // the server-wide second one is still loaded.
    assert_eq!(
        v.certificate.as_ref().unwrap().value,
        PathBuf::from("/v/rsa.pem")
    );
    assert_eq!(v.extra_certificates[0].value, PathBuf::from("/g/ecdsa.pem"));
    assert_eq!(
        v.certificate_key.as_ref().unwrap().value,
        PathBuf::from("/g/rsa.key")
    );
    // SSLEngine is inherited; `optional` (RFC 2817 upgrade) is not TLS on connect.
    assert!(v.is_tls());
    assert!(!config.blocks[1].is_tls());
}
