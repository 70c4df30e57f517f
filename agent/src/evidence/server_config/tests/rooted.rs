//! A server that sees another filesystem (a container): its config tree,
//! certificates and logs are read under its root, and named as it names
//! them. A temporary directory stands in for the container's root
//! ([`FsRoot::Dir`] goes through the same `openat2(RESOLVE_IN_ROOT)` path as
//! `/proc/PID/root`), so no privileges are needed.

use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};

use super::{Fixture, block, problems_with};
use crate::evidence::certificates::load_pem_chain_in;
use crate::evidence::fsroot::FsRoot;
use crate::evidence::logs::LogFollower;
use crate::evidence::server_config::apache::{self, ApacheOptions};
use crate::evidence::server_config::nginx::{self, NginxOptions};

/// A self-signed certificate, PEM.
fn certificate(cn: &str) -> Vec<u8> {
    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    b.build().to_pem().unwrap()
}

fn root_of(f: &Fixture) -> FsRoot {
    FsRoot::Dir {
        path: f.root.clone(),
    }
}

/// The container's default /etc/nginx/nginx.conf (the host has its own,
/// or none), a relative include glob, an absolute symlink into the
/// container's sites-available, a relative certificate path, and a log.
#[test]
fn nginx_in_a_container_is_read_under_its_root() {
    let f = Fixture::new("rooted-nginx");
    f.write(
        "etc/nginx/nginx.conf",
        "events {}\nhttp {\n    include conf.d/*.conf;\n    include /etc/nginx/sites-enabled/*;\n}\n",
    );
    f.write(
        "etc/nginx/conf.d/10-tls.conf",
        "ssl_protocols TLSv1.2 TLSv1.3;\nerror_log /var/log/nginx/container-error.log info;\n",
    );
    f.write(
        "etc/nginx/sites-available/rooted.site",
        "server {\n    listen 8443 ssl;\n    server_name rooted.container.test;\n    ssl_certificate certs/rooted.pem;\n    ssl_certificate_key /etc/nginx/certs/rooted.key;\n}\n",
    );
    f.mkdir("etc/nginx/sites-enabled");
    // Absolute, as `ln -s /etc/nginx/sites-available/x` makes it in an
    // image: it must resolve inside the container.
    std::os::unix::fs::symlink(
        "/etc/nginx/sites-available/rooted.site",
        f.path("etc/nginx/sites-enabled/rooted.site"),
    )
    .unwrap();
    f.write_bytes(
        "etc/nginx/certs/rooted.pem",
        &certificate("rooted.container.test"),
    );
    f.write("etc/nginx/certs/rooted.key", "not read\n");
    f.write(
        "var/log/nginx/container-error.log",
        "2026/11/29 01:53:17 [info] 7#7: *5 SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking, client: 127.0.0.1, server: 0.0.0.0:8443\n",
    );
    let root = root_of(&f);

    let main = nginx::config_path_from_cmdline(&["nginx".to_string()]);
    assert_eq!(main, PathBuf::from("/etc/nginx/nginx.conf"));
    let config = nginx::parse_with(
        &main,
        &NginxOptions {
            root: root.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    assert_eq!(config.root, root);
    // Paths are the container's, never the host-side stand-in directory.
    assert_eq!(
        config.files,
        vec![
            PathBuf::from("/etc/nginx/nginx.conf"),
            PathBuf::from("/etc/nginx/conf.d/10-tls.conf"),
            PathBuf::from("/etc/nginx/sites-enabled/rooted.site"),
        ]
    );
    let b = block(&config, "rooted.container.test");
    assert_eq!(b.root, root);
    assert_eq!(b.location(), "/etc/nginx/sites-enabled/rooted.site:1");
    let cert = b.certificate.as_ref().unwrap();
    assert_eq!(cert.value, PathBuf::from("/etc/nginx/certs/rooted.pem"));
    assert_eq!(cert.location(), "/etc/nginx/sites-enabled/rooted.site:4");
    assert_eq!(
        b.error_log.as_ref().unwrap().value,
        PathBuf::from("/var/log/nginx/container-error.log")
    );
    // The files exist only under the root.
    assert!(!Path::new("/etc/nginx/certs/rooted.pem").exists());
    assert!(b.root.exists(&cert.value));
    assert_eq!(load_pem_chain_in(&b.root, &cert.value).unwrap().len(), 1);
    assert!(load_pem_chain_in(&FsRoot::Host, &cert.value).is_err());
    // The key is looked up in the container too.
    assert!(
        b.root
            .metadata(&b.certificate_key.as_ref().unwrap().value)
            .unwrap()
            .is_file()
    );
    // Its error log, lines named by the container's path.
    let log = b.error_log.as_ref().unwrap().value.clone();
    let mut follower = LogFollower::in_root(&b.root, &log, crate::evidence::logs::no_note);
    follower.refresh().unwrap();
    let lines: Vec<_> = follower.lines().collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].file, "/var/log/nginx/container-error.log");
    assert_eq!(lines[0].line, 1);
    // The fingerprint sees an edit inside the root.
    let before = config.fingerprint();
    f.write(
        "etc/nginx/conf.d/20-more.conf",
        "# a new file matching the include glob\n",
    );
    assert_ne!(before, config.fingerprint());
}

/// A hostile container config cannot make the agent read host files in its
/// name: absolute symlinks and `..` stay inside the container.
#[test]
fn container_paths_do_not_escape_to_the_host() {
    let f = Fixture::new("rooted-escape");
    f.write(
        "srv/nginx.conf",
        "events {}\nhttp {\n    include /srv/escape.conf;\n    include ../../../../etc/hostname;\n    include /srv/dotdot/*.conf;\n}\n",
    );
    // On the host both targets exist (tests run on Linux with /etc).
    std::os::unix::fs::symlink("/etc/hostname", f.path("srv/escape.conf")).unwrap();
    f.mkdir("srv/dotdot");
    std::os::unix::fs::symlink(
        "../../../../../../../etc/hostname",
        f.path("srv/dotdot/up.conf"),
    )
    .unwrap();
    let config = nginx::parse_with(
        Path::new("/srv/nginx.conf"),
        &NginxOptions {
            root: root_of(&f),
            ..Default::default()
        },
    )
    .unwrap();
    // Each include is missing in the container: none was read from the host.
    assert_eq!(config.files, vec![PathBuf::from("/srv/nginx.conf")]);
    assert!(
        !problems_with(&config, "cannot include /srv/escape.conf").is_empty(),
        "{:#?}",
        config.problems
    );
    assert!(
        !problems_with(
            &config,
            "cannot include /srv/../../../../etc/hostname: no such file"
        )
        .is_empty(),
        "{:#?}",
        config.problems
    );
    assert!(
        !problems_with(&config, "cannot include /srv/dotdot/up.conf").is_empty(),
        "{:#?}",
        config.problems
    );
}

/// Apache in a container: its envvars file, its `<IfFile>`, its
/// `IncludeOptional` directories, and which layout it uses, all from its
/// own filesystem.
#[test]
fn apache_in_a_container_reads_its_own_envvars_and_includes() {
    let f = Fixture::new("rooted-apache");
    f.write(
        "etc/apache2/envvars",
        "export APACHE_LOG_DIR=/var/log/container-apache\n",
    );
    f.write(
        "etc/apache2/apache2.conf",
        "ErrorLog ${APACHE_LOG_DIR}/error.log\n<IfFile /etc/apache2/marker>\nListen 9443\n</IfFile>\nIncludeOptional sites-enabled/*.conf\n",
    );
    f.write("etc/apache2/marker", "");
    f.write(
        "etc/apache2/sites-enabled/tls.conf",
        "<VirtualHost *:9443>\n    ServerName apache.container.test\n    SSLEngine on\n    SSLCertificateFile /etc/ssl/container/cert.pem\n</VirtualHost>\n",
    );
    let root = root_of(&f);
    // No binary name: the layout is the container's (Debian's here).
    let main = apache::config_path_from_cmdline_in(&["-DFOREGROUND".to_string()], &root);
    assert_eq!(main, PathBuf::from("/etc/apache2/apache2.conf"));
    let config = apache::parse_with(
        &main,
        &ApacheOptions {
            root: root.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    assert!(
        config
            .files
            .contains(&PathBuf::from("/etc/apache2/envvars"))
    );
    let b = block(&config, "apache.container.test");
    assert_eq!(b.root, root);
    assert_eq!(
        b.error_log.as_ref().unwrap().value,
        PathBuf::from("/var/log/container-apache/error.log")
    );
    assert_eq!(config.listens.first().map(|l| l.port), Some(9443));
    assert_eq!(
        b.certificate.as_ref().unwrap().location(),
        "/etc/apache2/sites-enabled/tls.conf:4"
    );
}

/// A server that exits between discovery and reading: a clear error, not a
/// panic and not "no such file".
#[test]
fn a_server_gone_before_its_config_is_read_says_so() {
    let gone = FsRoot::Process {
        pid: 4_194_304 + 99,
        mnt_ns: 1,
        reads_as: None,
    };
    let e = nginx::parse_with(
        Path::new("/etc/nginx/nginx.conf"),
        &NginxOptions {
            root: gone.clone(),
            ..Default::default()
        },
    )
    .unwrap_err();
    let e = crate::text::Chain(&e).to_string();
    assert!(e.contains("has exited"), "{e}");
    let e = load_pem_chain_in(&gone, Path::new("/etc/nginx/cert.pem")).unwrap_err();
    let e = crate::text::Chain(&e).to_string();
    assert!(e.contains("has exited"), "{e}");
}
