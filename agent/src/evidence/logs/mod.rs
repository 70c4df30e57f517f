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

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    #[error("cannot read {path}")]
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
mod follower;
mod parse;
#[cfg(test)]
mod tests;

pub use follower::{FOLLOWED_BYTES, LogFollower};
#[cfg(test)]
pub(crate) use parse::local_to_utc;
use parse::parse_lines;
