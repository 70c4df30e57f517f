//! Error-log evidence (H): the server's own SSL lines near a failure's time
//! (nginx logs client handshake errors at `info`, Apache at `ssl:info`),
//! each mapped to the cause it indicates.
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

use crate::diagnosis::Cause;
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
    /// The cause this line indicates, when it names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indicates: Option<Cause>,
}

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
/// `max`, in file order. When more match, the ones naming a cause and
/// nearest in time are kept. Lines without a timestamp cannot be placed in
/// time and are left out.
pub fn read_near(
    path: &Path,
    around: DateTime<Utc>,
    window: chrono::Duration,
    max: usize,
) -> Result<Vec<LogLine>, LogError> {
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
        parse_lines(body, &shown, first_line, in_window),
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

/// Keeps the lines in the window; when more than `max`, those naming a
/// cause first, then the nearest in time.
fn select(
    lines: Vec<LogLine>,
    around: DateTime<Utc>,
    window: chrono::Duration,
    max: usize,
) -> Vec<LogLine> {
    let mut kept: Vec<(usize, chrono::Duration, LogLine)> = lines
        .into_iter()
        .enumerate()
        .filter_map(|(seq, l)| {
            let distance = (l.time? - around).abs();
            (distance <= window).then_some((seq, distance, l))
        })
        .collect();
    if kept.len() > max {
        kept.sort_by_key(|(seq, distance, l)| (l.indicates.is_none(), *distance, *seq));
        kept.truncate(max);
        kept.sort_by_key(|(seq, _, _)| *seq);
    }
    kept.into_iter().map(|(_, _, l)| l).collect()
}

/// Follows one error log: each refresh reads only what was appended since
/// the last one (the whole tail again after a rotation or truncation), and
/// keeps the recent SSL lines. Diagnosing a flood of failures then costs the
/// log's growth, not a re-read of its tail per failure.
#[derive(Debug)]
pub struct LogFollower {
    /// The log as the server names it (inside its container, if any).
    path: std::path::PathBuf,
    root: FsRoot,
    /// Device and inode of the file read so far (a rotation replaces it).
    identity: Option<(u64, u64)>,
    /// Bytes consumed: up to the end of the last whole line.
    offset: u64,
    /// Line number of the line at `offset`, when known.
    next_line: Option<u64>,
    lines: std::collections::VecDeque<LogLine>,
}

/// SSL lines a follower keeps.
const FOLLOWED_LINES: usize = 4096;

impl LogFollower {
    pub fn new(path: &Path) -> LogFollower {
        LogFollower::in_root(&FsRoot::Host, path)
    }

    /// A follower of a log of `root` (a containerised server's); its lines
    /// name the file as the server does.
    pub fn in_root(root: &FsRoot, path: &Path) -> LogFollower {
        LogFollower {
            path: path.to_path_buf(),
            root: root.clone(),
            identity: None,
            offset: 0,
            next_line: Some(1),
            lines: std::collections::VecDeque::new(),
        }
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
        for line in parse_lines(whole, &shown, self.next_line, |_| true) {
            if self.lines.len() >= FOLLOWED_LINES {
                self.lines.pop_front();
            }
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
        self.lines.iter()
    }
}

/// Parses the SSL-related lines of an nginx or Apache error log whose time
/// passes `keep` (tested first: most lines of a busy log are skipped there).
fn parse_lines(
    body: &[u8],
    file: &str,
    first_line: Option<u64>,
    keep: impl Fn(DateTime<Utc>) -> bool,
) -> Vec<LogLine> {
    let mut out = Vec::new();
    let mut zone = LocalZone::default();
    // Apache writes "SSL Library Error: ..." lines right after the line
    // they explain, from the same pid:tid but without the client.
    let mut threads: HashMap<String, (Option<String>, Option<Cause>)> = HashMap::new();
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
        let lower = parsed.message.to_ascii_lowercase();
        let mut indicates = classify_lower(&lower);
        let mut client = parsed.client.map(str::to_string);
        if let Some(thread) = parsed.thread {
            let (last_client, last_cause) = threads.get(thread).cloned().unwrap_or_default();
            if client.is_none() && parsed.message.starts_with("SSL Library Error") {
                client = last_client;
                // The library's reason for a certificate that failed to
                // load is a load failure, whatever the reason says.
                if last_cause == Some(Cause::ServerCannotLoadCertificate) {
                    indicates = last_cause;
                }
            }
            if threads.len() >= MAX_THREADS_REMEMBERED {
                threads.clear();
            }
            threads.insert(thread.to_string(), (client.clone(), indicates));
        }
        let ssl_module = parsed.level.starts_with("ssl:");
        if indicates.is_none() && !ssl_module && !mentions_tls(&lower) {
            continue;
        }
        out.push(LogLine {
            file: file.to_string(),
            line: first_line.map_or(0, |n| n + i as u64),
            time: Some(time),
            level: parsed.level.to_string(),
            text: parsed.message.chars().take(MAX_TEXT_CHARS).collect(),
            client,
            indicates,
        });
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
fn local_to_utc(naive: NaiveDateTime) -> Option<DateTime<Utc>> {
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

/// Maps a server's log text (or an OpenSSL reason it quotes) to the cause it
/// indicates. The texts are the server's side of the handshake:
///
/// - Certificate and key load failures (nginx `cannot load certificate`,
///   `SSL_CTX_use_*`, `key values mismatch`, no `ssl_certificate`; Apache
///   AH02565/AH02562/AH02572/AH02312) → server-cannot-load-certificate, even
///   when the reason is a weak key (`ee key too small` at load time means the
///   listener never came up).
/// - X.509 verify errors the server logs with their code: for a client
///   certificate (nginx `client SSL certificate verify error`, Apache
///   `Certificate Verification: Error (n)`) → client-certificate-required
///   (the client's certificate was unacceptable), or weak-crypto-rejected for
///   codes 66–68; for a proxied upstream (nginx `upstream SSL certificate
///   verify error`, Apache `[remote backend]` lines) the code's own cause (10
///   expired, 9 not yet valid, 20/21/2 chain incomplete, 18/19/27 untrusted
///   root, 62/64 hostname).
/// - `certificate verify failed` without a code, on a server, is the
///   server rejecting a client certificate → client-certificate-required
///   (upstream contexts: None, the coded line names the cause).
/// - Alerts the client sent about the server's certificate: `unknown ca`
///   (48) → untrusted-root, though a missing intermediate draws the same
///   alert — the configured chain tells them apart; `certificate unknown`
///   (46, Java's) → untrusted-root likewise; `certificate expired` (45) →
///   certificate-expired; `bad certificate` (42) → hostname-mismatch, the
///   most common sender of 42, though OpenSSL clients also send it for a
///   not-yet-valid or too-weak certificate (check dates and key size);
///   `handshake failure` (40) → no-shared-cipher (also sent by clients that
///   refuse a small DH group).
/// - `wrong version number` on a server: the first record was not TLS of
///   any version — a client speaking plaintext (Apache logs it for any
///   non-HTTP plaintext; nginx hands non-TLS bytes to its HTTP parser and
///   logs it only for a record with a bogus version) → plaintext-to-tls-port.
///   On a client the same text means the opposite (tls-to-plaintext-port);
///   this function reads server logs.
/// - `no suitable signature algorithm`: on Debian's OpenSSL 3 this is what
///   a TLS 1.0/1.1 client gets (those versions need SHA-1 signatures the
///   security level forbids) → protocol-version-mismatch.
/// - `unknown protocol` (an SSLv2-format hello) → protocol-version-mismatch.
pub fn classify(text: &str) -> Option<Cause> {
    classify_lower(&text.to_ascii_lowercase())
}

/// [`classify`] of an already lower-cased text.
fn classify_lower(t: &str) -> Option<Cause> {
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));

    if has(&[
        "cannot load certificate",
        "ssl_ctx_use_privatekey",
        "ssl_ctx_use_certificate",
        "key values mismatch",
        "no \"ssl_certificate\" is defined",
        "ah02565", // certificate and private key do not match
        "ah02562", // failed to configure certificate
        "ah02572", // failed to configure at least one certificate and key
        "ah02312", // fatal error initialising mod_ssl
        "ah02564", // failed to configure encrypted private key
        "ah02203", // init: unable to read pass phrase
        "does not exist or is empty",
        "no certificate assigned",
    ]) {
        return Some(Cause::ServerCannotLoadCertificate);
    }

    // The server as a client: nginx's proxy ("upstream"), Apache's
    // mod_proxy ("[remote backend]").
    let upstream = t.contains("upstream") || t.starts_with("[remote ");
    if let Some(code) = verify_code(t) {
        return if upstream {
            cause_for_verify_code(code)
        } else if matches!(code, 66..=68) {
            Some(Cause::WeakCryptoRejected)
        } else {
            Some(Cause::ClientCertificateRequired)
        };
    }
    if t.contains("upstream ssl certificate does not match") {
        return Some(Cause::HostnameMismatch);
    }

    if has(&[
        "client sent no required ssl certificate",
        "peer did not return a certificate",
        "alert certificate required",
    ]) {
        return Some(Cause::ClientCertificateRequired);
    }
    if has(&[
        "plain http request",
        "http request",
        "https proxy request",
        "http spoken on https port",
        "wrong version number",
    ]) {
        return Some(Cause::PlaintextToTlsPort);
    }
    if has(&[
        "unsupported protocol",
        "no protocols available",
        "alert protocol version",
        "version too low",
        "unknown protocol",
        "no suitable signature algorithm",
    ]) {
        return Some(Cause::ProtocolVersionMismatch);
    }
    if has(&[
        "dh key too small",
        "ee key too small",
        "ca key too small",
        "ca md too weak",
        "key too weak",
        "digest algorithm too weak",
        "alert insufficient security",
    ]) {
        return Some(Cause::WeakCryptoRejected);
    }
    if has(&[
        "no shared cipher",
        "no shared signature algorithms",
        "no suitable key share",
        "no shared groups",
        "alert handshake failure",
    ]) {
        return Some(Cause::NoSharedCipher);
    }
    if has(&["alert unknown ca", "alert certificate unknown"]) {
        return Some(Cause::UntrustedRoot);
    }
    if has(&["alert certificate expired"]) {
        return Some(Cause::CertificateExpired);
    }
    if has(&["alert bad certificate"]) {
        return Some(Cause::HostnameMismatch);
    }
    if t.contains("certificate verify failed") {
        return (!upstream).then_some(Cause::ClientCertificateRequired);
    }
    if has(&[
        "peer closed connection in ssl handshake",
        "unexpected eof while reading",
    ]) {
        return Some(Cause::HandshakeAborted);
    }
    // A socket error or timeout mid-handshake (an OpenSSL reason not
    // recognised above names no cause).
    if t.contains("while ssl handshaking") && !t.contains("(ssl: error:") {
        return Some(Cause::HandshakeAborted);
    }
    None
}

/// The X.509 verify code in "verify error: (10:certificate has expired)"
/// (nginx) or "Certificate Verification: Error (10): ..." (Apache).
fn verify_code(lower: &str) -> Option<i32> {
    let after = ["verify error: (", "verification: error ("]
        .iter()
        .find_map(|marker| lower.split_once(marker).map(|(_, rest)| rest))?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The cause an X.509 verify code names for a server's certificate.
fn cause_for_verify_code(code: i32) -> Option<Cause> {
    match code {
        9 => Some(Cause::CertificateNotYetValid),
        10 => Some(Cause::CertificateExpired),
        2 | 20 | 21 => Some(Cause::ChainIncomplete),
        18 | 19 | 27 => Some(Cause::UntrustedRoot),
        62 | 64 => Some(Cause::HostnameMismatch),
        66..=68 => Some(Cause::WeakCryptoRejected),
        _ => None,
    }
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

    fn by_line(lines: &[LogLine]) -> Vec<(u64, Option<Cause>)> {
        lines.iter().map(|l| (l.line, l.indicates)).collect()
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
    fn nginx_handshake_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:32:30");
        let lines =
            read_near(&fixture("nginx-error.txt"), around, Duration::hours(1), 100).unwrap();
        assert_eq!(
            by_line(&lines),
            vec![
                (7, Some(ProtocolVersionMismatch)), // unsupported protocol (TLS 1.1 client)
                (8, Some(NoSharedCipher)),          // no shared cipher
                (9, Some(PlaintextToTlsPort)),      // plain HTTP request to HTTPS port
                (10, Some(UntrustedRoot)),          // tlsv1 alert unknown ca (TLS 1.2)
                (11, Some(UntrustedRoot)),          // same, TLS 1.3
                (12, Some(HostnameMismatch)),       // sslv3 alert bad certificate
                (13, Some(CertificateExpired)),     // sslv3 alert certificate expired
                (14, Some(ClientCertificateRequired)), // no required SSL certificate
                (15, Some(ClientCertificateRequired)), // client cert verify error 18
                (16, Some(ProtocolVersionMismatch)), // TLS 1.0: no suitable signature algorithm
                (17, Some(HandshakeAborted)),       // peer closed connection in SSL handshake
                (18, Some(CertificateExpired)),     // upstream verify error 10
                (21, Some(HostnameMismatch)),       // upstream certificate does not match
                (26, Some(PlaintextToTlsPort)),     // wrong version number
                (29, None),                         // packet length too long
                (30, Some(ProtocolVersionMismatch)), // unknown protocol (SSLv2 hello)
                (42, Some(HostnameMismatch)), // bad certificate (client refused a 1024-bit key)
                (43, Some(HostnameMismatch)),
                (44, Some(NoSharedCipher)), // handshake failure (client refused DH 1024)
                (45, Some(ProtocolVersionMismatch)), // TLS 1.3-only client
            ]
        );
        let first = &lines[0];
        assert_eq!(first.time, Some(local("2026-11-29 02:32:15")));
        assert_eq!(first.level, "info");
        assert_eq!(first.client.as_deref(), Some("127.0.0.1"));
        assert!(
            first
                .text
                .starts_with("SSL_do_handshake() failed (SSL: error:0A000102")
        );
        assert!(first.file.ends_with("nginx-error.txt"));
        let upstream = lines.iter().find(|l| l.line == 18).unwrap();
        assert_eq!(upstream.level, "error");
    }

    #[test]
    fn apache_handshake_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:33:25");
        let lines = read_near(
            &fixture("apache-error.txt"),
            around,
            Duration::seconds(30),
            1000,
        )
        .unwrap();
        let indicated: Vec<(String, Option<String>, Cause)> = lines
            .iter()
            .filter_map(|l| Some((l.text.clone(), l.client.clone(), l.indicates?)))
            .collect();
        let expect = [
            (
                "unsupported protocol",
                "127.0.0.1:49440",
                ProtocolVersionMismatch,
            ),
            ("no shared cipher", "127.0.0.1:40230", NoSharedCipher),
            (
                "HTTP spoken on HTTPS port",
                "127.0.0.1:49446",
                PlaintextToTlsPort,
            ),
            ("http request", "127.0.0.1:49446", PlaintextToTlsPort),
            ("tlsv1 alert unknown ca", "127.0.0.1:49448", UntrustedRoot),
            (
                "sslv3 alert bad certificate",
                "127.0.0.1:49464",
                HostnameMismatch,
            ),
            (
                "sslv3 alert certificate expired",
                "127.0.0.1:37026",
                CertificateExpired,
            ),
            (
                "peer did not return a certificate",
                "127.0.0.1:33024",
                ClientCertificateRequired,
            ),
            (
                "peer did not return a certificate",
                "127.0.0.1:33034",
                ClientCertificateRequired,
            ),
            (
                "Error (18): self-signed certificate",
                "127.0.0.1:33050",
                ClientCertificateRequired,
            ),
            (
                "certificate verify failed",
                "127.0.0.1:33050",
                ClientCertificateRequired,
            ),
            (
                "wrong version number",
                "127.0.0.1:49468",
                PlaintextToTlsPort,
            ),
            (
                "wrong version number",
                "127.0.0.1:34030",
                PlaintextToTlsPort,
            ),
            ("https proxy request", "127.0.0.1:34036", PlaintextToTlsPort),
            (
                "unknown protocol",
                "127.0.0.1:34044",
                ProtocolVersionMismatch,
            ),
        ];
        assert_eq!(indicated.len(), expect.len(), "{indicated:#?}");
        for ((text, client, cause), (want_text, want_client, want_cause)) in
            indicated.iter().zip(expect)
        {
            assert!(text.contains(want_text), "{text} / {want_text}");
            assert_eq!(client.as_deref(), Some(want_client), "{text}");
            assert_eq!(*cause, want_cause, "{text}");
        }
        let lib = lines
            .iter()
            .find(|l| l.text.contains("tlsv1 alert unknown ca"))
            .unwrap();
        assert_eq!(lib.level, "ssl:info");
        assert_eq!(lib.line, 40);
        let stamp =
            NaiveDateTime::parse_from_str("2026-11-29 02:33:25.697361", "%Y-%m-%d %H:%M:%S%.f")
                .unwrap();
        assert_eq!(lib.time, local_to_utc(stamp));
        // Lines that carry no cause (connection established/closed) are
        // still SSL lines and kept, after the ones that name a cause.
        assert!(
            lines
                .iter()
                .any(|l| l.text.starts_with("AH01964") && l.indicates.is_none())
        );
        let few = read_near(
            &fixture("apache-error.txt"),
            around,
            Duration::seconds(30),
            3,
        )
        .unwrap();
        assert_eq!(few.len(), 3);
        assert!(few.iter().all(|l| l.indicates.is_some()), "{few:#?}");
        assert!(few.windows(2).all(|w| w[0].line < w[1].line));
    }

    #[test]
    fn server_startup_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:33:00");
        let nginx = read_near(
            &fixture("nginx-startup-error.txt"),
            around,
            Duration::minutes(5),
            100,
        )
        .unwrap();
        assert_eq!(nginx.len(), 5);
        assert!(
            nginx
                .iter()
                .all(|l| l.indicates == Some(ServerCannotLoadCertificate) && l.level == "emerg")
        );
        let apache = read_near(
            &fixture("apache-startup-error.txt"),
            around,
            Duration::minutes(5),
            100,
        )
        .unwrap();
        let named: Vec<(&str, Option<Cause>)> = apache
            .iter()
            .filter(|l| l.level == "ssl:emerg")
            .map(|l| (l.text.split(':').next().unwrap_or(""), l.indicates))
            .collect();
        assert_eq!(
            named,
            vec![
                ("AH02565", Some(ServerCannotLoadCertificate)),
                ("AH02562", Some(ServerCannotLoadCertificate)),
                // "ee key too small" explains the load failure above it.
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02562", Some(ServerCannotLoadCertificate)),
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02572", Some(ServerCannotLoadCertificate)),
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02312", Some(ServerCannotLoadCertificate)),
            ]
        );
        // "AH00016: Configuration Failed" has no timestamp: left out.
        assert!(!apache.iter().any(|l| l.text.contains("AH00016")));
    }

    #[test]
    fn window_and_limits() {
        let path = fixture("nginx-error.txt");
        let far = local("2026-11-30 02:32:15");
        assert!(
            read_near(&path, far, Duration::minutes(10), 100)
                .unwrap()
                .is_empty()
        );
        // Only the lines of 02:32:46, within 5 s.
        let lines = read_near(
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
        assert!(
            read_near(&path, far, Duration::days(2), 0)
                .unwrap()
                .is_empty()
        );
        // With a small max the nearest lines that name a cause win.
        let lines = read_near(&path, local("2026-11-29 02:32:46"), Duration::hours(1), 2).unwrap();
        assert_eq!(lines.iter().map(|l| l.line).collect::<Vec<_>>(), [42, 43]);
    }

    #[test]
    fn parses_line_formats() {
        let p = parse_nginx("2026/11/29 01:53:17 [info] 1234#1234: *5 SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking, client: 10.1.2.3, server: 0.0.0.0:443").unwrap();
        assert_eq!(p.level, "info");
        assert_eq!(p.client, Some("10.1.2.3"));
        assert!(p.message.starts_with("SSL_do_handshake()"));
        assert_eq!(classify(p.message), Some(Cause::UntrustedRoot));
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
        assert_eq!(classify(p.message), Some(Cause::CertificateExpired));
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
    fn classify_texts() {
        use Cause::*;
        let cases = [
            (
                "SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48)",
                Some(UntrustedRoot),
            ),
            (
                "SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad certificate (SSL alert number 42)",
                Some(HostnameMismatch),
            ),
            (
                "error:0A000416:SSL routines::sslv3 alert certificate unknown",
                Some(UntrustedRoot),
            ),
            (
                "error:0A00042E:SSL routines::tlsv1 alert protocol version",
                Some(ProtocolVersionMismatch),
            ),
            (
                "error:0A0000BF:SSL routines::no protocols available",
                Some(ProtocolVersionMismatch),
            ),
            (
                "error:0A00018A:SSL routines::dh key too small",
                Some(WeakCryptoRejected),
            ),
            (
                "error:0A000417:SSL routines::sslv3 alert illegal parameter",
                None,
            ),
            (
                "error:0A00045C:SSL routines::tlsv13 alert certificate required",
                Some(ClientCertificateRequired),
            ),
            (
                "client SSL certificate verify error: (66:EE certificate key too weak) while reading client request headers",
                Some(WeakCryptoRejected),
            ),
            (
                "client SSL certificate verify error: (10:certificate has expired) while reading client request headers",
                Some(ClientCertificateRequired),
            ),
            (
                "upstream SSL certificate verify error: (20:unable to get local issuer certificate) while SSL handshaking to upstream",
                Some(ChainIncomplete),
            ),
            (
                "upstream SSL certificate verify error: (19:self-signed certificate in certificate chain) while SSL handshaking to upstream",
                Some(UntrustedRoot),
            ),
            (
                "upstream SSL certificate verify error: (9:certificate is not yet valid) while SSL handshaking to upstream",
                Some(CertificateNotYetValid),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed) while SSL handshaking to upstream",
                None,
            ),
            (
                "AH02039: Certificate Verification: Error (20): unable to get local issuer certificate",
                Some(ClientCertificateRequired),
            ),
            (
                "cannot load certificate key \"/etc/ssl/private/x.key\": PEM_read_bio_PrivateKey() failed",
                Some(ServerCannotLoadCertificate),
            ),
            (
                "SSLCertificateFile: file '/x.crt' does not exist or is empty",
                Some(ServerCannotLoadCertificate),
            ),
            (
                "recv() failed (104: Connection reset by peer) while SSL handshaking, client: 1.2.3.4",
                Some(HandshakeAborted),
            ),
            (
                "client timed out (110: Connection timed out) while SSL handshaking, client: 1.2.3.4",
                Some(HandshakeAborted),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A000126:SSL routines::unexpected eof while reading) while SSL handshaking",
                Some(HandshakeAborted),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A0000C6:SSL routines::packet length too long) while SSL handshaking",
                None,
            ),
            (
                "AH01998: Connection closed to child 4 with abortive shutdown (server localhost:443)",
                None,
            ),
            ("worker process 5137 exited with code 0", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
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
            read_near(&garbage.0, Utc::now(), Duration::days(3650), 100)
                .unwrap()
                .is_empty()
        );

        // A 100 MB sparse file: only the tail is read, quickly.
        let sparse = TempFile::new("sparse");
        let f = File::create(&sparse.0).unwrap();
        f.set_len(100 << 20).unwrap();
        let t0 = Instant::now();
        assert!(
            read_near(&sparse.0, Utc::now(), Duration::days(3650), 100)
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
        let lines = read_near(
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
        let lines = read_near(
            &medium.0,
            local("2026-11-29 02:32:15"),
            Duration::minutes(1),
            100,
        )
        .unwrap();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].line, count as u64 + 2);
        assert_eq!(lines[0].client.as_deref(), Some("10.9.8.7"));
        assert_eq!(lines[0].indicates, Some(Cause::NoSharedCipher));

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
        let lines = read_near(
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
        let lines = read_near(
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
            read_near(
                Path::new("/nonexistent/error.log"),
                Utc::now(),
                Duration::minutes(1),
                10
            ),
            Err(LogError::Io { .. })
        ));
        assert!(matches!(
            read_near(Path::new("/tmp"), Utc::now(), Duration::minutes(1), 10),
            Err(LogError::NotAFile { .. })
        ));
        assert!(matches!(
            read_near(Path::new("/dev/zero"), Utc::now(), Duration::minutes(1), 10),
            Err(LogError::NotAFile { .. })
        ));
    }
}
