//! Whatever is on disk, the parsers must finish quickly, never panic, and
//! say what they skipped.

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Fixture, problems_with};
use crate::evidence::server_config::loader::{MAX_FILE_BYTES, MAX_FILES, MAX_PROBLEMS};
use crate::evidence::server_config::{ConfigError, apache, nginx};

/// Deterministic pseudo-random bytes (xorshift), no dependency needed.
fn garbage(len: usize, seed: u64, allow_nul: bool) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let b = (state >> 24) as u8;
            if !allow_nul && b == 0 { b'{' } else { b }
        })
        .collect()
}

#[test]
fn deeply_nested_blocks() {
    let fx = Fixture::new("hostile-nest");
    let depth = 100_000;
    let mut text = "http {\n".to_string();
    text.push_str(&"a {\n".repeat(depth));
    text.push_str(&"}\n".repeat(depth));
    text.push_str("server { listen 443 ssl; server_name after; }\n}\n");
    let main = fx.write("nginx.conf", &text);
    let config = nginx::parse(&main).unwrap();
    assert_eq!(
        problems_with(&config, "nested deeper").len(),
        1,
        "{:#?}",
        config.problems
    );
    assert_eq!(config.blocks.len(), 1);

    // The same depth left open.
    let main = fx.write("open.conf", &"a {\n".repeat(depth));
    let config = nginx::parse(&main).unwrap();
    assert!(!config.problems.is_empty());

    let mut text = "<VirtualHost *:443>\n".to_string();
    text.push_str(&"<Directory />\n".repeat(depth));
    text.push_str(&"</Directory>\n".repeat(depth));
    text.push_str("ServerName after\nSSLEngine on\n</VirtualHost>\n");
    let main = fx.write("apache2.conf", &text);
    let config = apache::parse(&main).unwrap();
    assert_eq!(
        problems_with(&config, "nested deeper").len(),
        1,
        "{:#?}",
        config.problems
    );
    assert_eq!(config.blocks[0].server_names[0].value, "after");
}

#[test]
fn nesting_across_includes_is_capped() {
    let fx = Fixture::new("hostile-nest-include");
    // Each file opens 10 blocks and includes the next: 10 files = 100 deep.
    for i in 0..10 {
        let body = format!(
            "{}include f{}.conf;\n{}",
            "a {\n".repeat(10),
            i + 1,
            "}\n".repeat(10)
        );
        fx.write(&format!("f{i}.conf"), &body);
    }
    fx.write("f10.conf", "x;\n");
    let config = nginx::parse(&fx.path("f0.conf")).unwrap();
    assert!(
        !problems_with(&config, "nested deeper").is_empty(),
        "{:#?}",
        config.problems
    );
}

#[test]
fn ten_thousand_line_files() {
    let fx = Fixture::new("hostile-10k");
    let mut text = String::from("http {\n");
    for i in 0..2_500 {
        text.push_str(&format!(
            "server {{\n    listen {};\n    server_name s{i}.example.com;\n}}\n",
            1024 + (i % 100)
        ));
    }
    text.push_str("}\n");
    assert!(text.lines().count() > 10_000);
    let main = fx.write("nginx.conf", &text);
    let start = Instant::now();
    let config = nginx::parse(&main).unwrap();
    assert!(config.problems.is_empty());
    assert_eq!(config.blocks.len(), 2_500);
    assert_eq!(config.listens.len(), 100);
    let s = config
        .select(None, 1024, Some("s1000.example.com"))
        .unwrap();
    assert_eq!(s.block.server_names[0].value, "s1000.example.com");

    let mut text = String::new();
    for i in 0..2_500 {
        text.push_str(&format!(
            "<VirtualHost *:443>\nServerName s{i}.example.com\nSSLEngine on\n</VirtualHost>\n"
        ));
    }
    let main = fx.write("apache2.conf", &text);
    let config = apache::parse(&main).unwrap();
    assert!(config.problems.is_empty());
    assert_eq!(config.blocks.len(), 2_500);
    // Generous: debug builds on 2 cores.
    assert!(start.elapsed() < Duration::from_secs(20));
}

#[test]
fn binary_garbage() {
    let fx = Fixture::new("hostile-garbage");
    // Garbage with NUL bytes: the main file is not a config at all...
    let bin = fx.write_bytes("bin.conf", &garbage(64 * 1024, 7, true));
    assert!(matches!(
        nginx::parse(&bin),
        Err(ConfigError::NotText { .. })
    ));
    assert!(matches!(
        apache::parse(&bin),
        Err(ConfigError::NotText { .. })
    ));
    // ...and as an include it is a problem at the include line.
    let main = fx.write("nginx.conf", "http {\n    include bin.conf;\n}\n");
    let config = nginx::parse(&main).unwrap();
    let p = problems_with(&config, "NUL");
    assert_eq!((p.len(), p[0].line), (1, Some(2)));
    let main = fx.write("apache2.conf", "Include bin.conf\n");
    let config = apache::parse(&main).unwrap();
    assert_eq!(problems_with(&config, "NUL").len(), 1);

    // Garbage without NULs is parsed as text: problems, no panic, bounded.
    for seed in 1..20 {
        let path = fx.write_bytes("noise.conf", &garbage(32 * 1024, seed, false));
        let config = nginx::parse(&path).unwrap();
        assert!(config.problems.len() <= 60, "{}", config.problems.len());
        let _ = apache::parse(&path).unwrap();
    }
}

#[test]
fn unterminated_quotes() {
    let fx = Fixture::new("hostile-quote");
    let main = fx.write("nginx.conf", "http {\n    server_name \"open;\n}\n");
    let config = nginx::parse(&main).unwrap();
    assert_eq!(
        problems_with(&config, "unterminated").len(),
        1,
        "{:#?}",
        config.problems
    );
    let main = fx.write(
        "apache2.conf",
        "<VirtualHost *:443>\nServerName \"open\n</VirtualHost>\n",
    );
    let config = apache::parse(&main).unwrap();
    assert_eq!(problems_with(&config, "unterminated quote").len(), 1);
    assert_eq!(config.blocks[0].server_names[0].value, "open");
}

#[test]
fn include_fan_out_is_capped() {
    let fx = Fixture::new("hostile-fanout");
    // 3 levels of 20 includes each = 8000 reads if unbounded.
    let fan = |target: &str| format!("include {target};\n").repeat(20);
    let main = fx.write("nginx.conf", &format!("http {{\n{}}}\n", fan("l1.conf")));
    fx.write("l1.conf", &fan("l2.conf"));
    fx.write("l2.conf", &fan("l3.conf"));
    fx.write("l3.conf", "server { listen 80; }\n");
    let config = nginx::parse(&main).unwrap();
    assert_eq!(
        problems_with(&config, &format!("more than {MAX_FILES}")).len(),
        1,
        "{:#?}",
        config.problems.len()
    );
    assert!(config.blocks.len() < MAX_FILES);
}

#[test]
fn fifo_and_huge_files_are_not_read() {
    let fx = Fixture::new("hostile-fifo");
    let fifo = fx.path("fifo.conf");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let main = fx.write("nginx.conf", "include fifo.conf;\n");
        let config = nginx::parse(&main).unwrap();
        assert_eq!(problems_with(&config, "not a regular file").len(), 1);
        assert!(matches!(
            nginx::parse(&fifo),
            Err(ConfigError::NotAFile { .. })
        ));
    }
    let huge = fx.path("huge.conf");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(MAX_FILE_BYTES + 1).unwrap();
    let main = fx.write("apache2.conf", "Include huge.conf\n");
    let config = apache::parse(&main).unwrap();
    assert_eq!(problems_with(&config, "over the").len(), 1);
    assert!(matches!(
        apache::parse(&huge),
        Err(ConfigError::TooLarge { .. })
    ));
}

#[test]
fn problem_floods_are_capped() {
    let fx = Fixture::new("hostile-flood");
    let text = format!("http {{\n{}}}\n", "ssl_ciphers A;\n".repeat(5_000));
    let main = fx.write("nginx.conf", &text);
    let config = nginx::parse(&main).unwrap();
    assert_eq!(config.problems.len(), MAX_PROBLEMS + 1);
    let last = config.problems.last().unwrap();
    assert!(
        last.message.contains("further problems not listed"),
        "{last:?}"
    );
}

/// Issue 12 item 2: 40 lines of `B=$A$A` expand to 2^40 bytes; a process
/// named apache2 pointing `-f` at such a file drove the agent out of
/// memory. Each value and all values together are capped, and the skip is
/// reported.
#[test]
fn variable_expansion_is_capped() {
    use crate::evidence::server_config::apache::{MAX_TOTAL_BYTES, MAX_VALUE_BYTES, parse_envvars};
    let mut envvars = "export A=aaaaaaaaaaaaaaaa\n".to_string();
    for i in 1..=40 {
        envvars.push_str(&format!("export A=$A$A\nexport B{i}=${{A}}x\n"));
    }
    let parsed = parse_envvars(&envvars);
    assert!(parsed.vars.values().all(|v| v.len() <= MAX_VALUE_BYTES));
    let total: usize = parsed.vars.values().map(String::len).sum();
    assert!(total <= MAX_TOTAL_BYTES, "{total}");
    assert!(
        parsed.skipped.iter().any(|(_, m)| m.contains("A not set")),
        "{:?}",
        parsed.skipped
    );
    // What fits is still expanded exactly: 16 * 2^9 bytes = 8 KiB.
    assert_eq!(parsed.vars["B9"].len(), 16 * 512 + 1);

    // Many distinct variables, each under the value cap: the total stops them.
    let mut wide = format!("export W={}\n", "w".repeat(MAX_VALUE_BYTES / 2));
    for i in 0..400 {
        wide.push_str(&format!("export W{i}=$W$W\n"));
    }
    let parsed = parse_envvars(&wide);
    let total: usize = parsed.vars.values().map(String::len).sum();
    assert!(total <= MAX_TOTAL_BYTES, "{total}");
    assert!(
        parsed
            .skipped
            .iter()
            .any(|(_, m)| m.contains("would exceed"))
    );

    // The same through a config: the envvars file beside it, and Define.
    let fx = Fixture::new("hostile-expand");
    fx.write("envvars", &envvars);
    let mut conf = "Define D dddddddddddddddd\n".to_string();
    for _ in 0..40 {
        conf.push_str("Define D ${D}${D}\n");
    }
    for i in 0..200 {
        conf.push_str(&format!("Define E{i} ${{D}}${{B9}}\n"));
    }
    conf.push_str(
        "<VirtualHost *:443>\nServerName after.example\nServerAlias ${D}${A}\nSSLEngine on\n</VirtualHost>\n",
    );
    let main = fx.write("apache2.conf", &conf);
    let config = apache::parse(&main).unwrap();
    assert_eq!(config.blocks.len(), 1, "{:#?}", config.problems);
    assert_eq!(config.blocks[0].server_names[0].value, "after.example");
    assert!(
        !problems_with(&config, "longer than 16 KiB").is_empty(),
        "{:#?}",
        config.problems
    );
    assert!(
        !problems_with(&config, "would exceed").is_empty(),
        "{:#?}",
        config.problems
    );
    assert!(!problems_with(&config, "A not set").is_empty());
}
