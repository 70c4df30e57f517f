//! Config trees built to cost as much as possible to read stop at the
//! parse's byte and time budget, with one problem that says so.

use std::time::Duration;

use super::{Fixture, problems_with};
use crate::evidence::server_config::apache::ApacheOptions;
use crate::evidence::server_config::loader::MAX_FILE_BYTES;
use crate::evidence::server_config::nginx::NginxOptions;
use crate::evidence::server_config::{MAX_TREE_BYTES, ReadBudget, apache, nginx};

/// A config file of the largest size read, of harmless directives.
fn big_file(fx: &Fixture, rel: &str, line: &str) -> std::path::PathBuf {
    let count = MAX_FILE_BYTES as usize / line.len();
    fx.write(rel, &line.repeat(count))
}

/// The same 4 MiB file included over and over: the file and count caps
/// allow 2000 reads (8 GB); the byte budget stops it after a few.
#[test]
fn an_include_bomb_stops_at_the_byte_budget() {
    let fx = Fixture::new("budget-bomb");
    big_file(
        &fx,
        "big.conf",
        "# padding padding padding padding padding\n",
    );
    let includes = "include big.conf;\n".repeat(40);
    let main = fx.write(
        "nginx.conf",
        &format!("http {{\n{includes}server {{ listen 443 ssl; server_name after; }}\n}}\n"),
    );
    let config = nginx::parse(&main).unwrap();
    assert!(config.over_budget);
    let said = problems_with(&config, "the most one parse reads");
    assert_eq!(said.len(), 1, "{:#?}", config.problems);
    assert!(said[0].message.contains("MiB"), "{}", said[0].message);
    // The blocks read before and after the cut are kept.
    assert_eq!(config.blocks.len(), 1);
    // 4 MiB files against a 32 MiB budget: at most 8 of them were read.
    const { assert!(MAX_TREE_BYTES / MAX_FILE_BYTES < 40) };
}

/// Symlink fan-out: a directory of links to one large file, included by
/// apache as a directory and by nginx as a glob.
#[test]
fn symlink_fan_out_stops_at_the_byte_budget() {
    let fx = Fixture::new("budget-fanout");
    let big = big_file(
        &fx,
        "big.conf",
        "# padding padding padding padding padding\n",
    );
    let links = fx.mkdir("links");
    for i in 0..40 {
        std::os::unix::fs::symlink(&big, links.join(format!("{i:02}.conf"))).unwrap();
    }
    let main = fx.write("nginx.conf", "http {\ninclude links/*.conf;\n}\n");
    let config = nginx::parse(&main).unwrap();
    assert!(config.over_budget, "{:#?}", config.problems);
    assert_eq!(problems_with(&config, "the most one parse reads").len(), 1);

    let main = fx.write("apache2.conf", "Include links\n");
    let config = apache::parse(&main).unwrap();
    assert!(config.over_budget, "{:#?}", config.problems);
    assert_eq!(problems_with(&config, "the most one parse reads").len(), 1);
}

/// A tree under its budget is read whole; a tree that takes too long is
/// cut where the time ran out.
#[test]
fn the_time_budget_cuts_a_slow_tree() {
    let fx = Fixture::new("budget-time");
    for i in 0..20 {
        fx.write(
            &format!("conf.d/{i:02}.conf"),
            &format!("server {{ listen {}; server_name s{i}; }}\n", 8000 + i),
        );
    }
    let main = fx.write("nginx.conf", "http {\ninclude conf.d/*.conf;\n}\n");
    let whole = nginx::parse(&main).unwrap();
    assert!(!whole.over_budget);
    assert_eq!(whole.blocks.len(), 20);
    let no_time = NginxOptions {
        budget: ReadBudget {
            bytes: MAX_TREE_BYTES,
            time: Duration::ZERO,
        },
        ..Default::default()
    };
    let cut = nginx::parse_with(&main, &no_time).unwrap();
    assert!(cut.over_budget);
    assert!(cut.blocks.is_empty(), "{:?}", cut.blocks.len());
    let said = problems_with(&cut, "took longer than");
    assert_eq!(said.len(), 1, "{:#?}", cut.problems);

    // apache's envvars read counts too.
    let small = ApacheOptions {
        budget: ReadBudget {
            bytes: 64,
            time: Duration::from_secs(60),
        },
        ..Default::default()
    };
    fx.write("apache/envvars", &"export APACHE_X=1\n".repeat(100));
    let main = fx.write("apache/apache2.conf", "Listen 443\n");
    let config = apache::parse_with(&main, &small).unwrap();
    assert!(config.over_budget, "{:#?}", config.problems);
    assert_eq!(problems_with(&config, "the most one parse reads").len(), 1);
}
