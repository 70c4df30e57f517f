//! The machine's own configs, when installed (no root needed: the stock
//! files are world-readable). Skips quietly where a server is absent.

use std::path::Path;

use crate::evidence::server_config::{ServerKind, apache, discover, nginx};

#[test]
fn real_nginx_config_has_the_default_server() {
    let main = Path::new(nginx::DEFAULT_CONFIG);
    if !main.exists() {
        return;
    }
    let config = nginx::parse(main).unwrap();
    assert!(!config.files.is_empty());
    assert!(
        config
            .blocks
            .iter()
            .any(|b| b.listens.iter().any(|l| l.port == 80 && l.default_server)),
        "{:#?}",
        config.blocks
    );
    let s = config.select(None, 80, Some("whatever.invalid")).unwrap();
    assert!(s.by_default);
}

#[test]
fn real_apache_config_has_the_default_vhost() {
    let main = Path::new(apache::DEBIAN_CONFIG);
    if !main.exists() {
        return;
    }
    let config = apache::parse(main).unwrap();
    assert!(
        config.problems.is_empty(),
        "stock config should parse cleanly: {:#?}",
        config.problems
    );
    assert!(config.listens.iter().any(|l| l.port == 80));
    assert!(
        config
            .blocks
            .iter()
            .any(|b| b.listens.iter().any(|l| l.port == 80 && l.addr.is_none())),
        "{:#?}",
        config.blocks
    );
    assert!(config.select(None, 80, None).unwrap().by_default);
}

#[test]
fn discover_reports_installed_configs() {
    let found = discover();
    for (kind, path) in [
        (ServerKind::Nginx, nginx::DEFAULT_CONFIG),
        (ServerKind::Apache, apache::DEBIAN_CONFIG),
    ] {
        if !Path::new(path).exists() {
            continue;
        }
        let entry = found
            .iter()
            .find(|d| d.kind == kind)
            .unwrap_or_else(|| panic!("{path} not discovered: {found:#?}"));
        assert!(entry.result.is_ok(), "{:?}", entry.result);
        if !entry.running {
            assert!(entry.pids.is_empty());
        }
    }
}
