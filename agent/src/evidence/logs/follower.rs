//! Following a log as it grows: only its growth is read.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::parse::parse_lines;
use super::{LogError, LogLine, MAX_COUNTED_PREFIX, MAX_TAIL_BYTES, Note, count_newlines, no_note};
use crate::evidence::fsroot::FsRoot;

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
