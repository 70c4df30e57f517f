use std::net::IpAddr;
use std::path::PathBuf;

use super::Fixture;
use super::nginx_tests::debian_nginx;
use crate::evidence::server_config::{
    ServerBlock, ServerConfig, ServerKind, Setting, apache, effective_protocols, name_matches,
    nginx,
};

fn names(block: &ServerBlock) -> &str {
    block
        .server_names
        .first()
        .map(|n| n.value.as_str())
        .unwrap_or("")
}

fn nginx_config(body: &str) -> (Fixture, ServerConfig) {
    let fx = Fixture::new("select");
    let main = fx.write("nginx.conf", &format!("http {{\n{body}\n}}\n"));
    let config = nginx::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    (fx, config)
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

const NAMED: &str = "
    server { listen 443 ssl; server_name first.example.com; }
    server { listen 443 ssl; server_name *.example.com; }
    server { listen 443 ssl; server_name *.deep.example.com; }
    server { listen 443 ssl; server_name www.example.com; }
    server { listen 443 ssl; server_name mail.*; }
    server { listen 443 ssl; server_name ~^(?<n>.+)\\.regex\\.org$; }
    server { listen 443 ssl; server_name .example.org; }
    server { listen 443 ssl default_server; server_name fallback.example.net; }
";

#[test]
fn nginx_exact_beats_wildcards() {
    let (_fx, config) = nginx_config(NAMED);
    let pick = |sni: &str| {
        let s = config.select(None, 443, Some(sni)).unwrap();
        (names(s.block).to_string(), s.by_default)
    };
    // Exact, even though a leading wildcard also matches and comes first.
    assert_eq!(pick("www.example.com"), ("www.example.com".into(), false));
    assert_eq!(pick("WWW.Example.COM."), ("www.example.com".into(), false));
    // Longest leading wildcard.
    assert_eq!(
        pick("a.deep.example.com"),
        ("*.deep.example.com".into(), false)
    );
    assert_eq!(pick("a.b.example.com"), ("*.example.com".into(), false));
    // `*.example.com` does not cover example.com itself.
    assert_eq!(pick("example.com"), ("fallback.example.net".into(), true));
    // Trailing wildcard, after leading ones.
    assert_eq!(pick("mail.example.net"), ("mail.*".into(), false));
    // `.example.org` names the domain and everything below it.
    assert_eq!(pick("example.org"), (".example.org".into(), false));
    assert_eq!(pick("x.y.example.org"), (".example.org".into(), false));
}

#[test]
fn nginx_regex_is_not_evaluated_and_says_so() {
    let (_fx, config) = nginx_config(NAMED);
    let s = config.select(None, 443, Some("host.regex.org")).unwrap();
    assert!(s.by_default);
    assert!(s.regex_skipped);
    assert_eq!(names(s.block), "fallback.example.net");
    // A name match does not need the regex.
    let s = config.select(None, 443, Some("www.example.com")).unwrap();
    assert!(!s.regex_skipped);
}

#[test]
fn nginx_default_server_and_no_sni() {
    let (_fx, config) = nginx_config(NAMED);
    let s = config.select(None, 443, None).unwrap();
    assert!(s.by_default);
    assert_eq!(names(s.block), "fallback.example.net");
    assert_eq!(s.block, s.default_block);
    let s = config.select(None, 443, Some("unknown.test")).unwrap();
    assert!(s.by_default);
    assert_eq!(names(s.block), "fallback.example.net");
    assert!(config.select(None, 8443, Some("www.example.com")).is_none());
}

#[test]
fn nginx_first_server_without_default_server() {
    let (_fx, config) = nginx_config(
        "server { listen 443 ssl; server_name a; }\nserver { listen 443 ssl; server_name b; }",
    );
    let s = config.select(None, 443, Some("zzz")).unwrap();
    assert_eq!((names(s.block), s.by_default), ("a", true));
    let s = config.select(None, 443, Some("b")).unwrap();
    assert_eq!((names(s.block), s.by_default), ("b", false));
    // The version is negotiated with the default server's settings.
    assert_eq!(names(s.default_block), "a");
}

#[test]
fn nginx_address_specific_listen_wins() {
    let (_fx, config) = nginx_config(
        "server { listen 443 ssl; server_name wild.example.com; }
    server { listen 192.0.2.10:443 ssl; server_name specific.example.com; }
    server { listen [::]:443 ssl; server_name v6.example.com; }",
    );
    // A connection to 192.0.2.10 only sees the block listening there, even
    // for a name another block has.
    let s = config
        .select(ip("192.0.2.10"), 443, Some("wild.example.com"))
        .unwrap();
    assert_eq!(
        (names(s.block), s.by_default),
        ("specific.example.com", true)
    );
    // Another IPv4 address goes to the wildcard block.
    let s = config
        .select(ip("192.0.2.99"), 443, Some("specific.example.com"))
        .unwrap();
    assert_eq!((names(s.block), s.by_default), ("wild.example.com", true));
    // IPv4-mapped addresses count as IPv4.
    let s = config.select(ip("::ffff:192.0.2.10"), 443, None).unwrap();
    assert_eq!(names(s.block), "specific.example.com");
    // IPv6 connections reach only the [::] listen (nginx sets V6ONLY).
    let s = config
        .select(ip("2001:db8::1"), 443, Some("wild.example.com"))
        .unwrap();
    assert_eq!(names(s.block), "v6.example.com");
}

#[test]
fn nginx_loopback_only_listen_does_not_accept_other_addresses() {
    let (_fx, config) = nginx_config("server { listen 127.0.0.1:8443 ssl; server_name local; }");
    assert!(config.select(ip("192.0.2.1"), 8443, None).is_none());
    assert!(config.select(ip("127.0.0.1"), 8443, None).is_some());
    // Unknown local address: the listen is still the best guess.
    assert!(config.select(None, 8443, None).is_some());
}

#[test]
fn debian_fixture_selection() {
    let fx = Fixture::new("select-debian");
    let config = nginx::parse(&debian_nginx(&fx)).unwrap();
    let s = config
        .select(ip("203.0.113.5"), 443, Some("example.com"))
        .unwrap();
    assert_eq!(names(s.block), "www.example.com");
    assert!(!s.by_default);
    // Client without SNI gets the default_server's certificate.
    let s = config.select(ip("203.0.113.5"), 443, None).unwrap();
    assert_eq!(names(s.block), "default.example.com");
    assert!(s.by_default);
    assert_eq!(
        s.block.certificate.as_ref().unwrap().value,
        fx.path("certs/default.pem")
    );
    let s = config
        .select(ip("2001:db8::5"), 443, Some("x.api.example.com"))
        .unwrap();
    // The api server has no [::] listen: IPv6 clients never reach it.
    assert_eq!(names(s.block), "default.example.com");
    let s = config
        .select(ip("203.0.113.5"), 443, Some("x.api.example.com"))
        .unwrap();
    assert_eq!(names(s.block), "*.api.example.com");
    let s = config
        .select(ip("203.0.113.5"), 80, Some("anything"))
        .unwrap();
    assert_eq!(names(s.block), "_");
    assert!(s.by_default);
}

fn apache_config(body: &str) -> (Fixture, ServerConfig) {
    let fx = Fixture::new("select-apache");
    let main = fx.write("httpd.conf", body);
    let config = apache::parse(&main).unwrap();
    assert!(config.problems.is_empty(), "{:#?}", config.problems);
    (fx, config)
}

#[test]
fn apache_name_based_selection() {
    let (_fx, config) = apache_config(
        "Listen 443
<VirtualHost *:443>
    ServerName first.example.com
    SSLEngine on
</VirtualHost>
<VirtualHost *:443>
    ServerName www.example.com:443
    ServerAlias example.com *.example.org shop?.example.net
    SSLEngine on
</VirtualHost>
<VirtualHost 192.0.2.10:443>
    ServerName ip.example.com
    SSLEngine on
</VirtualHost>
<VirtualHost 192.0.2.20:*>
    ServerName anyport.example.com
</VirtualHost>
",
    );
    let pick = |local: Option<IpAddr>, sni: Option<&str>| {
        let s = config.select(local, 443, sni).unwrap();
        (names(s.block).to_string(), s.by_default)
    };
    assert_eq!(
        pick(ip("198.51.100.1"), Some("www.example.com")),
        ("www.example.com:443".into(), false)
    );
    assert_eq!(
        pick(ip("198.51.100.1"), Some("a.b.example.org")),
        ("www.example.com:443".into(), false)
    );
    assert_eq!(
        pick(ip("198.51.100.1"), Some("shop1.example.net")),
        ("www.example.com:443".into(), false)
    );
    // No match: the first vhost of the address set.
    assert_eq!(
        pick(ip("198.51.100.1"), Some("nope.test")),
        ("first.example.com".into(), true)
    );
    assert_eq!(
        pick(ip("198.51.100.1"), None),
        ("first.example.com".into(), true)
    );
    // IP-based vhost beats *:443 for its address.
    assert_eq!(
        pick(ip("192.0.2.10"), Some("www.example.com")),
        ("ip.example.com".into(), true)
    );
    // `ip:*` vhost covers every port of its address.
    assert_eq!(
        pick(ip("192.0.2.20"), None),
        ("anyport.example.com".into(), true)
    );
    assert_eq!(config.blocks_on_port(443).len(), 4);
    assert_eq!(config.blocks_on_port(8080).len(), 1);
}

#[test]
fn name_matching_semantics() {
    assert!(name_matches("www.example.com", "WWW.EXAMPLE.COM"));
    assert!(name_matches("www.example.com", "www.example.com."));
    assert!(name_matches("*.example.com", "a.example.com"));
    assert!(name_matches("*.example.com", "a.b.example.com"));
    assert!(!name_matches("*.example.com", "example.com"));
    assert!(!name_matches("*.example.com", "badexample.com"));
    assert!(name_matches(".example.com", "example.com"));
    assert!(name_matches(".example.com", "x.example.com"));
    assert!(!name_matches(".example.com", "xexample.com"));
    assert!(name_matches("mail.*", "mail.example.com"));
    assert!(!name_matches("mail.*", "email.example.com"));
    assert!(name_matches("shop?.example.com", "shop1.example.com"));
    assert!(!name_matches("shop?.example.com", "shop12.example.com"));
    assert!(name_matches(
        "https://www.example.com:8443",
        "www.example.com"
    ));
    assert!(!name_matches("~^www\\.example\\.com$", "www.example.com"));
    assert!(!name_matches("_", "anything"));
    assert!(!name_matches("", "anything"));
    assert!(!name_matches("example.com", ""));
    assert!(name_matches("*", "anything.at.all"));
}

fn block_with(kind: ServerKind, protocols: Option<&[&str]>) -> ServerBlock {
    let mut block = ServerBlock::new(kind, PathBuf::from("/x.conf"), 1);
    block.protocols = protocols.map(|p| Setting {
        value: p.iter().map(|s| s.to_string()).collect(),
        file: PathBuf::from("/x.conf"),
        line: 2,
    });
    block
}

#[test]
fn effective_protocol_defaults_and_apache_arithmetic() {
    let v = |list: &[&str]| -> Vec<String> { list.iter().map(|s| s.to_string()).collect() };
    assert_eq!(
        effective_protocols(&block_with(ServerKind::Nginx, None)),
        v(&["TLSv1", "TLSv1.1", "TLSv1.2"])
    );
    assert_eq!(
        effective_protocols(&block_with(
            ServerKind::Nginx,
            Some(&["TLSv1.3", "tlsv1.2"])
        )),
        v(&["TLSv1.2", "TLSv1.3"])
    );
    assert_eq!(
        effective_protocols(&block_with(ServerKind::Apache, None)),
        v(&["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
    );
    assert_eq!(
        effective_protocols(&block_with(
            ServerKind::Apache,
            Some(&["all", "-TLSv1", "-TLSv1.1"])
        )),
        v(&["TLSv1.2", "TLSv1.3"])
    );
    assert_eq!(
        effective_protocols(&block_with(ServerKind::Apache, Some(&["-all", "+TLSv1.3"]))),
        v(&["TLSv1.3"])
    );
    // A word without +/- replaces the earlier ones (httpd warns).
    assert_eq!(
        effective_protocols(&block_with(
            ServerKind::Apache,
            Some(&["TLSv1.2", "TLSv1.3"])
        )),
        v(&["TLSv1.3"])
    );
}
