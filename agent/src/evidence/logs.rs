//! Error-log evidence (H): the server's own SSL lines near a failure's time
//! (nginx logs client handshake errors at `info`, Apache at `ssl:info`).
//! Which cause a line's text names is for diagnosis to say
//! (`diagnosis::rules::log_text`): a follower keeps, beside each line, the
//! note its reader computed once when the line was read.
//!
//! Only the tail of a log is read ([`MAX_TAIL_BYTES`]): a failure being
//! diagnosed is recent, and a log can be huge. Both servers write local
//! time; it is converted with this host's zone (a server started with a
//! different `TZ` would be off by the difference).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::evidence::fsroot::FsRoot;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub file: String,
    /// 1-based line number in the file; 0 when unknown (the file is so
    /// large that counting the lines before its tail was not worth it).
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<DateTime<Utc>>,
    /// "info", "error", "crit", "ssl:info", ...
    pub level: String,
    pub text: String,
    /// Client address:port the line names, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
}

/// What a reader notes about each line, computed once as the line is read:
/// `note(line, continued)`, where `continued` is the note of the line this
/// one continues (Apache writes "SSL Library Error: ..." lines right after
/// the line they explain, from the same thread and without the client), and
/// `None` for any other line.
pub type Note<N> = fn(&LogLine, Option<&N>) -> N;

/// A [`Note`] that notes nothing.
pub fn no_note(_: &LogLine, _: Option<&()>) {}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a regular file")]
    NotAFile { path: String },
}

/// Bytes read from the end of a log.
pub const MAX_TAIL_BYTES: u64 = 8 << 20;
/// Bytes before the tail scanned to number its lines; past this, line
/// numbers are reported as 0.
const MAX_COUNTED_PREFIX: u64 = 32 << 20;
/// Longer lines are not server log lines (binary junk, a file of zeros).
const MAX_LINE_BYTES: usize = 16 << 10;
/// Text kept of one line.
const MAX_TEXT_CHARS: usize = 2048;
/// Apache worker threads remembered for continuation lines.
const MAX_THREADS_REMEMBERED: usize = 4096;

/// The server's SSL-related lines within `window` of `around`, at most
/// `max`, in file order, each with its `note`. When more match, the nearest
/// in time are kept. Lines without a timestamp cannot be placed in time and
/// are left out.
pub fn read_near<N: Clone>(
    path: &Path,
    around: DateTime<Utc>,
    window: chrono::Duration,
    max: usize,
    note: Note<N>,
) -> Result<Vec<(LogLine, N)>, LogError> {
    let shown = path.display().to_string();
    let io = |source| LogError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(LogError::NotAFile { path: shown });
    }
    let start = meta.len().saturating_sub(MAX_TAIL_BYTES);
    let first_line = if start == 0 {
        Some(1)
    } else if start <= MAX_COUNTED_PREFIX {
        count_newlines(&mut file, start).map_err(io)?.map(|n| n + 1)
    } else {
        None
    };
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    let mut tail = Vec::new();
    file.take(MAX_TAIL_BYTES)
        .read_to_end(&mut tail)
        .map_err(io)?;
    // Starting mid-file, the first (partial) line is not a whole line.
    let (body, first_line) = if start > 0 {
        match tail.iter().position(|&b| b == b'\n') {
            Some(i) => (
                tail.get(i + 1..).unwrap_or_default(),
                first_line.map(|n| n + 1),
            ),
            None => (&[][..], first_line),
        }
    } else {
        (&tail[..], first_line)
    };
    let in_window = |t: DateTime<Utc>| (t - around).abs() <= window;
    Ok(select(
        parse_lines(body, &shown, first_line, in_window, note),
        around,
        window,
        max,
    ))
}

/// Newlines in the first `len` bytes of `file`; None if the file ended
/// first (it shrank: rotated or truncated meanwhile).
fn count_newlines(file: &mut File, len: u64) -> std::io::Result<Option<u64>> {
    file.seek(SeekFrom::Start(0))?;
    let mut reader = file.take(len);
    let mut buf = vec![0u8; 1 << 20];
    let (mut count, mut read) = (0u64, 0u64);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        count += buf
            .get(..n)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64;
    }
    Ok((read == len).then_some(count))
}

/// Keeps the lines in the window; when more than `max`, the nearest in
/// time.
fn select<N>(
    lines: Vec<(LogLine, N)>,
    around: DateTime<Utc>,
    window: chrono::Duration,
    max: usize,
) -> Vec<(LogLine, N)> {
    let mut kept: Vec<(usize, chrono::Duration, (LogLine, N))> = lines
        .into_iter()
        .enumerate()
        .filter_map(|(seq, l)| {
            let distance = (l.0.time? - around).abs();
            (distance <= window).then_some((seq, distance, l))
        })
        .collect();
    if kept.len() > max {
        kept.sort_by_key(|(seq, distance, _)| (*distance, *seq));
        kept.truncate(max);
        kept.sort_by_key(|(seq, _, _)| *seq);
    }
    kept.into_iter().map(|(_, _, l)| l).collect()
}

/// Follows one error log: each refresh reads only what was appended since
/// the last one (the whole tail again after a rotation or truncation), and
/// keeps the recent SSL lines with their notes. Diagnosing a flood of
/// failures then costs the log's growth, not a re-read of its tail per
/// failure.
#[derive(Debug)]
pub struct LogFollower<N = ()> {
    /// The log as the server names it (inside its container, if any).
    path: std::path::PathBuf,
    root: FsRoot,
    /// Device and inode of the file read so far (a rotation replaces it).
    identity: Option<(u64, u64)>,
    /// Bytes consumed: up to the end of the last whole line.
    offset: u64,
    /// Line number of the line at `offset`, when known.
    next_line: Option<u64>,
    note: Note<N>,
    lines: std::collections::VecDeque<(LogLine, N)>,
    /// Bytes the kept lines hold, roughly ([`LogLine::heap_bytes`]).
    bytes: usize,
}

/// SSL lines a follower keeps.
const FOLLOWED_LINES: usize = 4096;
/// Bytes of lines a follower keeps: a line is up to 2 KiB of text and
/// names its file (a path of up to 4 KiB the config chose), so a count
/// alone would allow tens of MiB per log.
pub const FOLLOWED_BYTES: usize = 1 << 20;

impl LogLine {
    /// Roughly the memory the line holds.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<LogLine>()
            + self.file.len()
            + self.level.len()
            + self.text.len()
            + self.client.as_ref().map_or(0, String::len)
    }
}

impl LogFollower {
    /// A follower of a log of this host that notes nothing.
    pub fn new(path: &Path) -> LogFollower {
        LogFollower::in_root(&FsRoot::Host, path, no_note)
    }
}

impl<N: Clone> LogFollower<N> {
    /// A follower of a log of `root` (a containerised server's); its lines
    /// name the file as the server does.
    pub fn in_root(root: &FsRoot, path: &Path, note: Note<N>) -> LogFollower<N> {
        LogFollower {
            path: path.to_path_buf(),
            root: root.clone(),
            identity: None,
            offset: 0,
            next_line: Some(1),
            note,
            lines: std::collections::VecDeque::new(),
            bytes: 0,
        }
    }

    /// Bytes the kept lines hold, roughly.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The root the log is read from.
    pub fn root(&self) -> &FsRoot {
        &self.root
    }

    /// Reads what was appended since the last refresh.
    pub fn refresh(&mut self) -> Result<(), LogError> {
        use std::os::unix::fs::MetadataExt;
        let shown = self.path.display().to_string();
        let io = |source| LogError::Io {
            path: shown.clone(),
            source,
        };
        let mut file = self.root.open(&self.path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(LogError::NotAFile { path: shown });
        }
        let identity = (meta.dev(), meta.ino());
        let len = meta.len();
        if self.identity != Some(identity) || len < self.offset {
            // New file (first read, rotation) or truncated: start over from
            // its tail.
            self.identity = Some(identity);
            self.lines.clear();
            self.bytes = 0;
            self.offset = len.saturating_sub(MAX_TAIL_BYTES);
            self.next_line = if self.offset == 0 {
                Some(1)
            } else if self.offset <= MAX_COUNTED_PREFIX {
                count_newlines(&mut file, self.offset)
                    .map_err(io)?
                    .map(|n| n + 1)
            } else {
                None
            };
            if self.offset > 0 {
                // Mid-file: skip to the next whole line.
                self.skip_partial_line(&mut file).map_err(io)?;
            }
        } else if len - self.offset > MAX_TAIL_BYTES {
            // More was appended than is worth reading: jump to the tail.
            self.offset = len - MAX_TAIL_BYTES;
            self.next_line = None;
            self.skip_partial_line(&mut file).map_err(io)?;
        }
        if len <= self.offset {
            return Ok(());
        }
        file.seek(SeekFrom::Start(self.offset)).map_err(io)?;
        let mut appended = Vec::new();
        file.take(len - self.offset)
            .read_to_end(&mut appended)
            .map_err(io)?;
        // Only whole lines; a line being written is read next time.
        let Some(end) = appended.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let whole = &appended[..end];
        let newlines = whole.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        for line in parse_lines(whole, &shown, self.next_line, |_| true, self.note) {
            let size = line.0.heap_bytes();
            while self.lines.len() >= FOLLOWED_LINES
                || (self.bytes + size > FOLLOWED_BYTES && !self.lines.is_empty())
            {
                if let Some((old, _)) = self.lines.pop_front() {
                    self.bytes = self.bytes.saturating_sub(old.heap_bytes());
                }
            }
            self.bytes += size;
            self.lines.push_back(line);
        }
        self.offset += end as u64 + 1;
        self.next_line = self.next_line.map(|n| n + newlines);
        Ok(())
    }

    fn skip_partial_line(&mut self, file: &mut File) -> std::io::Result<()> {
        file.seek(SeekFrom::Start(self.offset))?;
        let mut buf = [0u8; 4096];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            if let Some(i) = buf[..n].iter().position(|&b| b == b'\n') {
                self.offset += i as u64 + 1;
                self.next_line = self.next_line.map(|l| l + 1);
                return Ok(());
            }
            self.offset += n as u64;
        }
    }

    /// The kept SSL lines, oldest first.
    pub fn lines(&self) -> impl DoubleEndedIterator<Item = &LogLine> {
        self.lines.iter().map(|(line, _)| line)
    }

    /// The kept SSL lines with their notes, oldest first.
    pub fn noted_lines(&self) -> impl DoubleEndedIterator<Item = (&LogLine, &N)> {
        self.lines.iter().map(|(line, note)| (line, note))
    }
}

/// Parses the SSL-related lines of an nginx or Apache error log whose time
/// passes `keep` (tested first: most lines of a busy log are skipped there),
/// each with its `note`.
fn parse_lines<N: Clone>(
    body: &[u8],
    file: &str,
    first_line: Option<u64>,
    keep: impl Fn(DateTime<Utc>) -> bool,
    note: Note<N>,
) -> Vec<(LogLine, N)> {
    let mut out = Vec::new();
    let mut zone = LocalZone::default();
    // Apache writes "SSL Library Error: ..." lines right after the line
    // they explain, from the same pid:tid but without the client: the
    // thread's last client and note.
    let mut threads: HashMap<String, (Option<String>, N)> = HashMap::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        if raw.len() > MAX_LINE_BYTES || raw.is_empty() {
            continue;
        }
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        let Some(parsed) = parse_nginx(text).or_else(|| parse_apache(text)) else {
            continue;
        };
        let Some(time) = zone.utc(parsed.stamp).filter(|&t| keep(t)) else {
            continue;
        };
        let mut line = LogLine {
            file: file.to_string(),
            line: first_line.map_or(0, |n| n + i as u64),
            time: Some(time),
            level: parsed.level.to_string(),
            // Noted whole, kept cut.
            text: parsed.message.to_string(),
            client: parsed.client.map(str::to_string),
        };
        let mut continued = None;
        if let Some(thread) = parsed.thread
            && line.client.is_none()
            && parsed.message.starts_with("SSL Library Error")
            && let Some((last_client, last_note)) = threads.get(thread)
        {
            line.client.clone_from(last_client);
            continued = Some(last_note);
        }
        let noted = note(&line, continued);
        if let Some((cut, _)) = line.text.char_indices().nth(MAX_TEXT_CHARS) {
            line.text.truncate(cut);
        }
        if let Some(thread) = parsed.thread {
            if threads.len() >= MAX_THREADS_REMEMBERED {
                threads.clear();
            }
            threads.insert(thread.to_string(), (line.client.clone(), noted.clone()));
        }
        let ssl_module = parsed.level.starts_with("ssl:");
        if !ssl_module && !mentions_tls(&parsed.message.to_ascii_lowercase()) {
            continue;
        }
        out.push((line, noted));
    }
    out
}

fn mentions_tls(lower: &str) -> bool {
    ["ssl", "tls", "certificate", "handshake", "https"]
        .iter()
        .any(|k| lower.contains(k))
}

/// One log line taken apart.
struct Parsed<'a> {
    /// Local wall-clock time, as written.
    stamp: NaiveDateTime,
    level: &'a str,
    message: &'a str,
    client: Option<&'a str>,
    /// Apache "pid N:tid M", to join continuation lines.
    thread: Option<&'a str>,
}

/// Local wall-clock time to UTC; in a DST fold the earlier instant, in a
/// DST gap None. (The tests' reference for [`LocalZone`].)
#[cfg(test)]
pub(crate) fn local_to_utc(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// Local-to-UTC conversion remembering the last minute's offset: zone
/// lookups are costly and consecutive lines share their minute (offsets
/// only change on minute boundaries).
#[derive(Default)]
struct LocalZone {
    last: Option<(NaiveDateTime, Option<chrono::FixedOffset>)>,
}

impl LocalZone {
    fn utc(&mut self, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
        let minute = naive.with_second(0)?.with_nanosecond(0)?;
        let offset = match self.last {
            Some((m, offset)) if m == minute => offset,
            _ => {
                let offset = Local
                    .from_local_datetime(&minute)
                    .earliest()
                    .map(|t| t.offset().fix());
                self.last = Some((minute, offset));
                offset
            }
        };
        let utc = naive.checked_sub_signed(chrono::Duration::seconds(i64::from(
            offset?.local_minus_utc(),
        )))?;
        Some(utc.and_utc())
    }
}

/// Digits at `range` of `s` as a number.
fn digits(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// "2026/11/29 01:53:17" (fixed width; parsed by hand, it is on every line).
fn nginx_stamp(s: &str) -> Option<NaiveDateTime> {
    let b = s.as_bytes();
    if b.len() != 19
        || b.get(4) != Some(&b'/')
        || b.get(7) != Some(&b'/')
        || b.get(10) != Some(&b' ')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(s, 0..4)?).ok()?,
        digits(s, 5..7)?,
        digits(s, 8..10)?,
    )?
    .and_hms_opt(digits(s, 11..13)?, digits(s, 14..16)?, digits(s, 17..19)?)
}

/// "Sun Nov 29 01:53:17.123456 2026" or "Sun Nov  1 01:53:17 2026".
fn apache_stamp(s: &str) -> Option<NaiveDateTime> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mut parts = s.split_ascii_whitespace();
    let _weekday = parts.next()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)?;
    let day = parts.next()?;
    let clock = parts.next()?;
    let year = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let micros = if frac.is_empty() {
        0
    } else if frac.len() <= 6 {
        digits(frac, 0..frac.len())? * 10u32.pow(6 - frac.len() as u32)
    } else {
        return None;
    };
    if hms.len() != 8 || hms.get(2..3) != Some(":") || hms.get(5..6) != Some(":") {
        return None;
    }
    NaiveDate::from_ymd_opt(
        i32::try_from(digits(year, 0..year.len())?).ok()?,
        u32::try_from(month).ok()? + 1,
        digits(day, 0..day.len())?,
    )?
    .and_hms_micro_opt(
        digits(hms, 0..2)?,
        digits(hms, 3..5)?,
        digits(hms, 6..8)?,
        micros,
    )
}

/// `2026/11/29 01:53:17 [info] 1234#1234: *5 message, client: 1.2.3.4, ...`
fn parse_nginx(line: &str) -> Option<Parsed<'_>> {
    let stamp = nginx_stamp(line.get(..19)?)?;
    let rest = line.get(19..)?.strip_prefix(" [")?;
    let (level, rest) = rest.split_once("] ")?;
    // "pid#tid: " then, for connection-bound lines, "*cid ".
    let rest = match rest.split_once(": ") {
        Some((ids, msg))
            if ids.contains('#') && ids.bytes().all(|b| b.is_ascii_digit() || b == b'#') =>
        {
            msg
        }
        _ => rest,
    };
    let message = match rest.strip_prefix('*').and_then(|r| r.split_once(' ')) {
        Some((cid, msg)) if cid.bytes().all(|b| b.is_ascii_digit()) => msg,
        _ => rest,
    };
    let client = message
        .split_once(", client: ")
        .map(|(_, c)| c.split(',').next().unwrap_or(c).trim());
    Some(Parsed {
        stamp,
        level,
        message,
        client,
        thread: None,
    })
}

/// `[Sun Nov 29 01:53:17.123456 2026] [ssl:info] [pid 1234:tid 5678]
/// [client 127.0.0.1:51234] message` (2.4), or `[Sun Nov 29 01:53:17 2026]
/// [error] [client 127.0.0.1] message` (2.2).
fn parse_apache(line: &str) -> Option<Parsed<'_>> {
    let rest = line.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once("] [")?;
    let stamp = apache_stamp(stamp)?;
    let (level, mut rest) = rest.split_once(']')?;
    let mut thread = None;
    let mut client = None;
    // Bracketed fields up to the message: [pid ...], [client ...]. A
    // "[remote host:port]" (mod_proxy's backend) stays in the message: it
    // says the line is about the backend, not a client.
    loop {
        let trimmed = rest.trim_start();
        let Some(inner) = trimmed.strip_prefix('[') else {
            rest = trimmed;
            break;
        };
        let Some((field, after)) = inner.split_once(']') else {
            rest = trimmed;
            break;
        };
        if let Some(p) = field.strip_prefix("pid ") {
            thread = Some(p);
        } else if let Some(c) = field.strip_prefix("client ") {
            client = Some(c);
        } else {
            // Not a prefix field: the message starts here.
            rest = trimmed;
            break;
        }
        rest = after;
    }
    Some(Parsed {
        stamp,
        level,
        message: rest,
        client,
        thread,
    })
}

#[cfg(test)]
mod follower_tests {
    use super::*;
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
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

#[cfg(test)]
mod continuation_tests {
    use super::*;

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
