//! Taking nginx and Apache error-log lines apart.

use std::collections::HashMap;

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike, Utc};

use super::{LogLine, MAX_LINE_BYTES, MAX_TEXT_CHARS, MAX_THREADS_REMEMBERED, Note};

/// Parses the SSL-related lines of an nginx or Apache error log whose time
/// passes `keep` (tested first: most lines of a busy log are skipped there),
/// each with its `note`.
pub(super) fn parse_lines<N: Clone>(
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

pub(super) fn mentions_tls(lower: &str) -> bool {
    ["ssl", "tls", "certificate", "handshake", "https"]
        .iter()
        .any(|k| lower.contains(k))
}

/// One log line taken apart.
pub(super) struct Parsed<'a> {
    /// Local wall-clock time, as written.
    pub(super) stamp: NaiveDateTime,
    pub(super) level: &'a str,
    pub(super) message: &'a str,
    pub(super) client: Option<&'a str>,
    /// Apache "pid N:tid M", to join continuation lines.
    pub(super) thread: Option<&'a str>,
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
pub(super) struct LocalZone {
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
pub(super) fn digits(s: &str, range: std::ops::Range<usize>) -> Option<u32> {
    let part = s.get(range)?;
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    part.parse().ok()
}

/// "2026/11/29 01:53:17" (fixed width; parsed by hand, it is on every line).
pub(super) fn nginx_stamp(s: &str) -> Option<NaiveDateTime> {
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
pub(super) fn apache_stamp(s: &str) -> Option<NaiveDateTime> {
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
pub(super) fn parse_nginx(line: &str) -> Option<Parsed<'_>> {
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
pub(super) fn parse_apache(line: &str) -> Option<Parsed<'_>> {
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
