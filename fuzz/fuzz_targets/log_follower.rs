//! The error-log follower on hostile tails: a sequence of appends,
//! truncations, rotations and replacements of the log file, with a refresh
//! after each step. Invariants: no
//! panic, memory under the cap, at most FOLLOWED_LINES (4096) lines kept,
//! line numbers never going backwards between two refreshes of one file.
//!
//! Input: steps separated by `\n~~`; a step's first byte says what it is:
//! `a` append the rest, `t` truncate to the rest's length, `r` rotate
//! (rename, new file with the rest), `d` replace the file with a directory,
//! `f` remove it; anything else appends the whole step.
#![no_main]

use std::fs::{self, OpenOptions};
use std::io::Write as _;

use agent::evidence::logs::LogFollower;
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::{arm_allocation_cap, scratch_dir};

const FOLLOWED_LINES: usize = 4096;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let dir = scratch_dir("log");
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::create_dir_all(&dir);
    let log = dir.join("error.log");
    let _ = fs::write(&log, b"");
    let mut follower = LogFollower::new(&log);
    for step in data.split_inner(b"\n~~") {
        let (op, rest) = step
            .split_first()
            .map_or((b'a', step), |(op, rest)| (*op, rest));
        match op {
            b't' => {
                if let Ok(file) = OpenOptions::new().write(true).open(&log) {
                    let _ = file.set_len(rest.len() as u64);
                }
            }
            b'r' => {
                let _ = fs::rename(&log, dir.join("error.log.1"));
                let _ = fs::write(&log, rest);
            }
            b'd' => {
                let _ = fs::remove_file(&log);
                let _ = fs::create_dir(&log);
            }
            b'f' => {
                let _ = fs::remove_file(&log);
                let _ = fs::remove_dir(&log);
            }
            b'a' => append(&log, rest),
            _ => append(&log, step),
        }
        let before: Vec<u64> = follower.lines().map(|l| l.line).collect();
        let _ = follower.refresh();
        let lines: Vec<_> = follower.lines().collect();
        assert!(lines.len() <= FOLLOWED_LINES, "{} lines kept", lines.len());
        for pair in lines.windows(2) {
            if pair[0].line != 0 && pair[1].line != 0 && before.contains(&pair[0].line) {
                // Lines kept from before a refresh stay in file order.
                assert!(pair[0].line <= pair[1].line || !before.contains(&pair[1].line));
            }
        }
    }
});

fn append(log: &std::path::Path, bytes: &[u8]) {
    if let Ok(mut file) = OpenOptions::new().append(true).open(log) {
        let _ = file.write_all(bytes);
    }
}

/// `split` on a multi-byte separator.
trait SplitInner {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Vec<&'a [u8]>;
}

impl SplitInner for [u8] {
    fn split_inner<'a>(&'a self, sep: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut at = 0;
        while at + sep.len() <= self.len() {
            if &self[at..at + sep.len()] == sep {
                out.push(&self[start..at]);
                at += sep.len();
                start = at;
            } else {
                at += 1;
            }
        }
        out.push(&self[start..]);
        out
    }
}
