mod follower_tests {
    use super::super::*;
    use std::io::Write as _;

    const LINE: &str = "2026/11/29 01:53:17 [info] 1234#1234: *5 SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking, client: 127.0.0.1, server: 0.0.0.0:443\n";

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tlsdoctor-follow-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("error.log")
    }

    #[test]
    fn reads_only_appended_whole_lines_and_survives_rotation() {
        let path = temp("rotate");
        let mut f = File::create(&path).unwrap();
        f.write_all(LINE.as_bytes()).unwrap();
        f.write_all(b"2026/11/29 01:53:18 [info] 1#1: unrelated\n")
            .unwrap();
        let mut follower = LogFollower::new(&path);
        follower.refresh().unwrap();
        assert_eq!(follower.lines().count(), 1);
        assert_eq!(follower.lines().next().unwrap().line, 1);
        // A line still being written is not read yet.
        f.write_all(&LINE.as_bytes()[..40]).unwrap();
        follower.refresh().unwrap();
        assert_eq!(follower.lines().count(), 1);
        f.write_all(&LINE.as_bytes()[40..]).unwrap();
        follower.refresh().unwrap();
        let lines: Vec<u64> = follower.lines().map(|l| l.line).collect();
        assert_eq!(lines, vec![1, 3]);
        // Rotation: a new file under the same name starts over.
        drop(f);
        std::fs::rename(&path, path.with_extension("1")).unwrap();
        std::fs::write(&path, LINE).unwrap();
        follower.refresh().unwrap();
        let lines: Vec<u64> = follower.lines().map(|l| l.line).collect();
        assert_eq!(lines, vec![1]);
    }

    /// A log of long SSL lines under a long path: what a follower keeps is
    /// bounded in bytes, the newest lines kept.
    #[test]
    fn a_follower_keeps_at_most_its_byte_budget() {
        let dir = temp("bytes").parent().unwrap().to_path_buf();
        let deep = dir.join("d".repeat(200)).join("e".repeat(200));
        std::fs::create_dir_all(&deep).unwrap();
        let path = deep.join("error.log");
        let line = format!(
            "2026/11/29 01:53:17 [info] 1#1: *5 SSL_do_handshake() failed {}, client: 127.0.0.1\n",
            "x".repeat(1900)
        );
        let mut f = File::create(&path).unwrap();
        for _ in 0..3000 {
            f.write_all(line.as_bytes()).unwrap();
        }
        let mut follower = LogFollower::new(&path);
        follower.refresh().unwrap();
        assert!(follower.bytes() <= FOLLOWED_BYTES, "{}", follower.bytes());
        let kept = follower.lines().count();
        assert!(kept > 100 && kept < 3000, "{kept}");
        assert_eq!(follower.lines().last().unwrap().line, 3000);
        // Appending keeps it bounded, and the newest lines.
        f.write_all(LINE.as_bytes()).unwrap();
        follower.refresh().unwrap();
        assert!(follower.bytes() <= FOLLOWED_BYTES);
        assert_eq!(follower.lines().last().unwrap().line, 3001);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncation_starts_over_and_a_missing_file_is_an_error() {
        let path = temp("truncate");
        std::fs::write(&path, LINE.repeat(3)).unwrap();
        let mut follower = LogFollower::new(&path);
        follower.refresh().unwrap();
        assert_eq!(follower.lines().count(), 3);
        std::fs::write(&path, LINE).unwrap();
        follower.refresh().unwrap();
        assert_eq!(follower.lines().count(), 1);
        assert!(
            LogFollower::new(&path.with_extension("none"))
                .refresh()
                .is_err()
        );
    }
}

mod parse_tests {
    use super::super::{parse::*, *};
    use chrono::{Duration, NaiveDateTime};
    use std::path::PathBuf;
    use std::time::Instant;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/evidence/testdata/logs")
            .join(name)
    }

    fn local(s: &str) -> DateTime<Utc> {
        local_to_utc(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()).unwrap()
    }

    /// `read_near` without notes.
    fn near(
        path: &Path,
        around: DateTime<Utc>,
        window: Duration,
        max: usize,
    ) -> Result<Vec<LogLine>, LogError> {
        read_near(path, around, window, max, no_note)
            .map(|lines| lines.into_iter().map(|(line, ())| line).collect())
    }

    struct TempFile(PathBuf);

    impl TempFile {
        fn new(tag: &str) -> TempFile {
            TempFile(
                std::env::temp_dir().join(format!("tlsdoctor-logs-{tag}-{}", std::process::id())),
            )
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn window_and_limits() {
        let path = fixture("nginx-error.txt");
        let far = local("2026-11-30 02:32:15");
        assert!(
            near(&path, far, Duration::minutes(10), 100)
                .unwrap()
                .is_empty()
        );
        // Only the lines of 02:32:46, within 5 s.
        let lines = near(
            &path,
            local("2026-11-29 02:32:48"),
            Duration::seconds(5),
            100,
        )
        .unwrap();
        assert_eq!(
            lines.iter().map(|l| l.line).collect::<Vec<_>>(),
            [42, 43, 44, 45]
        );
        assert!(near(&path, far, Duration::days(2), 0).unwrap().is_empty());
        // With a small max the nearest lines win, in file order.
        let lines = near(&path, local("2026-11-29 02:32:46"), Duration::hours(1), 2).unwrap();
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [42, 43]);
    }

    #[test]
    fn parses_line_formats() {
        let p = parse_nginx("2026/11/29 01:53:17 [info] 1234#1234: *5 SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking, client: 10.1.2.3, server: 0.0.0.0:443").unwrap();
        assert_eq!(p.level, "info");
        assert_eq!(p.client, Some("10.1.2.3"));
        assert!(p.message.starts_with("SSL_do_handshake()"));
        // No connection id, no client.
        let p =
            parse_nginx("2026/11/29 01:53:17 [emerg] 1#1: cannot load certificate \"/x\"").unwrap();
        assert_eq!(p.message, "cannot load certificate \"/x\"");
        assert_eq!(p.client, None);

        let p = parse_apache("[Sun Nov 29 01:53:17.123456 2026] [ssl:info] [pid 1234:tid 5678] [client 127.0.0.1:51234] AH02008: SSL library error 1 in handshake (server www.example.com:443)").unwrap();
        assert_eq!(p.level, "ssl:info");
        assert_eq!(p.thread, Some("1234:tid 5678"));
        assert_eq!(p.client, Some("127.0.0.1:51234"));
        assert!(p.message.starts_with("AH02008"));
        assert_eq!(p.stamp.and_utc().timestamp_subsec_micros(), 123_456);
        // Apache 2.2, space-padded day.
        let p = parse_apache(
            "[Sun Nov  1 01:53:17 2026] [error] [client 10.0.0.1] SSL handshake failed",
        )
        .unwrap();
        assert_eq!(p.level, "error");
        assert_eq!(p.client, Some("10.0.0.1"));
        assert_eq!(p.message, "SSL handshake failed");
        assert_eq!(p.stamp.to_string(), "2026-11-01 01:53:17");
        // A message that itself starts with a bracket stays whole; so does
        // mod_proxy's [remote backend].
        let p = parse_apache("[Sun Nov 29 01:53:17 2026] [ssl:warn] [pid 1] [x] y").unwrap();
        assert_eq!(p.message, "[x] y");
        let p = parse_apache("[Sun Nov 29 01:53:17.5 2026] [ssl:info] [pid 1:tid 2] [remote 10.0.0.9:443] AH02039: Certificate Verification: Error (10): certificate has expired").unwrap();
        assert_eq!(p.client, None);
        assert_eq!(p.stamp.and_utc().timestamp_subsec_micros(), 500_000);

        for junk in [
            "",
            "2026/11/29",
            "2026/13/45 99:99:99 [info] x",
            "[Sun Nov 29 01:53:17 2026]",
            "[not a date] [error] x",
            "SSL_do_handshake() failed without a timestamp",
            "\u{fffd}\u{fffd}[",
        ] {
            assert!(
                parse_nginx(junk).is_none() && parse_apache(junk).is_none(),
                "{junk}"
            );
        }
    }

    #[test]
    fn hostile_files_stay_bounded() {
        // Binary garbage: nothing parses, nothing panics.
        let garbage = TempFile::new("garbage");
        let bytes: Vec<u8> = (0..200_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(&garbage.0, &bytes).unwrap();
        assert!(
            near(&garbage.0, Utc::now(), Duration::days(3650), 100)
                .unwrap()
                .is_empty()
        );

        // A 100 MB sparse file: only the tail is read, quickly.
        let sparse = TempFile::new("sparse");
        let f = File::create(&sparse.0).unwrap();
        f.set_len(100 << 20).unwrap();
        let t0 = Instant::now();
        assert!(
            near(&sparse.0, Utc::now(), Duration::days(3650), 100)
                .unwrap()
                .is_empty()
        );
        assert!(t0.elapsed().as_secs_f64() < 2.0, "{:?}", t0.elapsed());
        // Real lines after the zeros are still found; their line numbers
        // are unknown (0) that far into the file.
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&sparse.0)
            .unwrap();
        let real = std::fs::read(fixture("nginx-error.txt")).unwrap();
        f.write_all(b"\n").unwrap();
        f.write_all(&real).unwrap();
        drop(f);
        let t0 = Instant::now();
        let lines = near(
            &sparse.0,
            local("2026-11-29 02:32:30"),
            Duration::hours(1),
            100,
        )
        .unwrap();
        assert!(t0.elapsed().as_secs_f64() < 2.0, "{:?}", t0.elapsed());
        assert_eq!(lines.len(), 20);
        assert!(lines.iter().all(|l| l.line == 0));

        // A file somewhat over the tail size: lines are numbered by
        // counting the skipped prefix, and the cut first line is dropped.
        let medium = TempFile::new("medium");
        let filler = "2026/11/29 00:00:00 [info] 1#1: SSL filler line, nothing to see here\n";
        let count = (MAX_TAIL_BYTES as usize / filler.len()) + 1000;
        let mut text = filler.repeat(count);
        text.push_str("no timestamp, mentions SSL\n");
        text.push_str("2026/11/29 02:32:15 [info] 1#1: *1 SSL_do_handshake() failed (SSL: error:0A0000C1:SSL routines::no shared cipher) while SSL handshaking, client: 10.9.8.7, server: 0.0.0.0:443\n");
        std::fs::write(&medium.0, &text).unwrap();
        let lines = near(
            &medium.0,
            local("2026-11-29 02:32:15"),
            Duration::minutes(1),
            100,
        )
        .unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].line, count as u64 + 2);
        assert_eq!(lines[0].client.as_deref(), Some("10.9.8.7"));
        assert!(lines[0].text.ends_with("server: 0.0.0.0:443"), "{lines:?}");

        // A very long line is skipped, not kept whole.
        let long = TempFile::new("long");
        let mut text = format!(
            "2026/11/29 02:32:15 [info] 1#1: SSL {}\n",
            "x".repeat(MAX_LINE_BYTES)
        );
        text.push_str(&format!(
            "2026/11/29 02:32:15 [info] 1#1: SSL {}\n",
            "y".repeat(MAX_LINE_BYTES / 2)
        ));
        std::fs::write(&long.0, &text).unwrap();
        let lines = near(
            &long.0,
            local("2026-11-29 02:32:15"),
            Duration::minutes(1),
            100,
        )
        .unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[0].text.chars().count(), MAX_TEXT_CHARS);
    }

    #[test]
    fn busy_log_in_window_is_bounded() {
        // Worst case: a whole tail of SSL failures, all inside the window.
        let busy = TempFile::new("busy");
        let line = "2026/11/29 02:32:15 [info] 3622#3622: *1 SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking, client: 127.0.0.1, server: 127.0.0.1:18441\n";
        let count = MAX_TAIL_BYTES as usize / line.len() + 10;
        std::fs::write(&busy.0, line.repeat(count)).unwrap();
        let t0 = Instant::now();
        let lines = near(
            &busy.0,
            local("2026-11-29 02:32:15"),
            Duration::minutes(1),
            50,
        )
        .unwrap();
        let took = t0.elapsed();
        assert_eq!(lines.len(), 50);
        // Unoptimised test build; a release build is several times faster.
        assert!(took.as_secs_f64() < 10.0, "{took:?}");
        eprintln!("{count} lines in {took:?}");
    }

    #[test]
    fn unreadable_paths() {
        assert!(matches!(
            near(
                Path::new("/nonexistent/error.log"),
                Utc::now(),
                Duration::minutes(1),
                10
            ),
            Err(LogError::Io { .. })
        ));
        assert!(matches!(
            near(Path::new("/tmp"), Utc::now(), Duration::minutes(1), 10),
            Err(LogError::NotAFile { .. })
        ));
        assert!(matches!(
            near(Path::new("/dev/zero"), Utc::now(), Duration::minutes(1), 10),
            Err(LogError::NotAFile { .. })
        ));
    }
}

mod continuation_tests {
    use super::super::*;
    use crate::evidence::fsroot::FsRoot;

    /// How deep in a run of continuation lines a line is.
    fn depth(_: &LogLine, continued: Option<&u32>) -> u32 {
        continued.map_or(0, |d| d + 1)
    }

    #[test]
    fn continuation_lines_get_the_thread_client_and_the_note_they_continue() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/evidence/testdata/logs");
        let mut follower =
            LogFollower::in_root(&FsRoot::Host, &path.join("apache-error.txt"), depth);
        follower.refresh().unwrap();
        let (line, d) = follower.noted_lines().find(|(l, _)| l.line == 40).unwrap();
        assert!(line.text.starts_with("SSL Library Error"), "{line:?}");
        assert_eq!(line.client.as_deref(), Some("127.0.0.1:49448"));
        assert_eq!(*d, 1);
        let mut startup =
            LogFollower::in_root(&FsRoot::Host, &path.join("apache-startup-error.txt"), depth);
        startup.refresh().unwrap();
        let depths: Vec<u32> = startup
            .noted_lines()
            .filter(|(l, _)| l.level == "ssl:emerg")
            .map(|(_, d)| *d)
            .collect();
        // AH02572, then its library error, then AH02312 (not a continuation).
        assert_eq!(depths, [0, 0, 1, 0, 1, 0, 1, 0]);
    }
}
