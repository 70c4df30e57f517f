//! The journal: every failure as one JSON object per line, appended to a
//! local file that `agent diagnose` reads. The embedded default sink: it needs
//! no collector and survives agent restarts.
//!
//! The records name hosts, processes and certificates, so the journal and
//! the status file beside it are created `0640` in a `0750` directory
//! (an older, wider file is narrowed when opened). A journal that cannot be
//! written does not stop the agent ([`Journal`]): the failures still reach
//! the console, OTLP and the metrics, the lost records are counted, the
//! health endpoint says why, and the file is tried again every
//! [`REOPEN_EVERY`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::health::Health;
use crate::outcome::HandshakeOutcome;

/// Default location, for a host agent running as root.
pub const DEFAULT_PATH: &str = "/var/lib/tlsdoctor/journal.jsonl";

/// Mode of the journal and status files: the agent writes, its group reads.
pub const FILE_MODE: u32 = 0o640;
/// Mode of a journal directory the agent creates.
pub const DIR_MODE: u32 = 0o750;
/// How often a journal that could not be opened is tried again.
pub const REOPEN_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal {path}: cannot encode a record")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("journal {path} is not open ({why}); tried again every {REOPEN_EVERY:?}", path = path.display())]
    Unavailable { path: PathBuf, why: String },
}

/// Creates (or truncates) `path` with [`FILE_MODE`] and writes `bytes`;
/// an existing file wider than that is narrowed first. For the status file.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(&file)?;
    file.write_all(bytes)
}

/// Takes away the permissions beyond [`FILE_MODE`] of an open file.
fn narrow(file: &File) -> io::Result<()> {
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & !FILE_MODE != 0 {
        file.set_permissions(fs::Permissions::from_mode(mode & FILE_MODE))?;
    }
    Ok(())
}

/// Opens `path` for appending with [`FILE_MODE`] (narrowing an older file).
fn open_append(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    narrow(&file)?;
    Ok(file)
}

/// Appends outcomes; rotates once the file passes `max_bytes` (the previous
/// generation is kept as `<path>.1`, so at most twice the limit is used).
///
/// Each record is one whole line written by one `write(2)` on an `O_APPEND`
/// descriptor, never buffered across records: a reader of the live file (the
/// CLI, a log shipper) sees whole lines, plus at most the tail of the one
/// being written, which [`read`] skips.
pub struct JournalWriter {
    path: PathBuf,
    out: File,
    /// Bytes in the current file.
    written: u64,
    max_bytes: u64,
    /// Records in the current file and in the rotated generation.
    current_records: u64,
    rotated_records: u64,
    /// Records appended since the writer opened.
    pub appended: u64,
    /// Records deleted by rotation since the writer opened (the oldest
    /// generation makes room): retention, counted, never silent.
    pub rotated_out: u64,
}

impl JournalWriter {
    pub fn open(path: &Path, max_bytes: u64) -> Result<JournalWriter, JournalError> {
        let io_err = |source| JournalError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(io_err)?;
        }
        let file = open_append(path).map_err(io_err)?;
        let written = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(JournalWriter {
            path: path.to_path_buf(),
            out: file,
            written,
            max_bytes,
            current_records: count_lines(path),
            rotated_records: count_lines(&rotated_path(path)),
            appended: 0,
            rotated_out: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record as one line in one write.
    pub fn append(&mut self, outcome: &HandshakeOutcome) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(outcome).map_err(|source| JournalError::Encode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        if self.written > 0 && self.written + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.out
            .write_all(&line)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.written += line.len() as u64;
        self.current_records += 1;
        self.appended += 1;
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), JournalError> {
        let io_err = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let old = rotated_path(&self.path);
        fs::rename(&self.path, &old).map_err(io_err)?;
        let file = open_append(&self.path).map_err(io_err)?;
        self.out = file;
        self.written = 0;
        self.rotated_out += self.rotated_records;
        self.rotated_records = self.current_records;
        self.current_records = 0;
        Ok(())
    }
}

/// The journal sink of `agent run`: a [`JournalWriter`] when the file can
/// be opened, else the reason, tried again every [`REOPEN_EVERY`]. Each
/// record that cannot be written is an error for the caller to count; the
/// reason goes to [`Health`] (the `/readyz` body) until a write succeeds.
pub struct Journal {
    path: PathBuf,
    max_bytes: u64,
    writer: Option<JournalWriter>,
    last_open_attempt: Instant,
    reopen_every: Duration,
    problem: Option<String>,
    health: Option<Arc<Health>>,
    /// Records appended since the agent started (every writer).
    pub appended: u64,
    /// Records deleted by rotation since the agent started.
    pub rotated_out: u64,
}

impl Journal {
    /// Opens the journal, or keeps the reason and carries on without it.
    pub fn open(path: &Path, max_bytes: u64, health: Option<Arc<Health>>) -> Journal {
        let mut journal = Journal {
            path: path.to_path_buf(),
            max_bytes,
            writer: None,
            last_open_attempt: Instant::now(),
            reopen_every: REOPEN_EVERY,
            problem: None,
            health,
            appended: 0,
            rotated_out: 0,
        };
        journal.try_open();
        journal
    }

    /// Tries the file again after `every` instead of [`REOPEN_EVERY`] (tests).
    pub fn reopen_every(mut self, every: Duration) -> Journal {
        self.reopen_every = every;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Why records are not being written, while they are not.
    pub fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    fn try_open(&mut self) {
        self.last_open_attempt = Instant::now();
        match JournalWriter::open(&self.path, self.max_bytes) {
            Ok(w) => {
                if self.problem.is_some() {
                    tracing::info!(journal = %self.path.display(), "journal open again");
                }
                self.writer = Some(w);
                self.set_problem(None);
            }
            Err(e) => {
                if self.problem.is_none() {
                    tracing::warn!(error = %crate::text::Chain(&e), "journal cannot be opened: failures are not journaled (counted; the other sinks still get them); tried again every {:?}", self.reopen_every);
                }
                self.set_problem(Some(source_text(&e)));
            }
        }
    }

    fn set_problem(&mut self, problem: Option<String>) {
        if self.problem != problem {
            if let Some(h) = &self.health {
                h.set_journal_problem(problem.clone());
            }
            self.problem = problem;
        }
    }

    /// Appends one record, opening the file first when it was not open and
    /// [`REOPEN_EVERY`] has passed.
    pub fn append(&mut self, outcome: &HandshakeOutcome) -> Result<(), JournalError> {
        if self.writer.is_none() && self.last_open_attempt.elapsed() >= self.reopen_every {
            self.try_open();
        }
        let Some(writer) = &mut self.writer else {
            return Err(JournalError::Unavailable {
                path: self.path.clone(),
                why: self.problem.clone().unwrap_or_default(),
            });
        };
        let (appended, rotated) = (writer.appended, writer.rotated_out);
        let result = writer.append(outcome);
        self.appended += writer.appended - appended;
        self.rotated_out += writer.rotated_out - rotated;
        match &result {
            Ok(()) => self.set_problem(None),
            Err(e) => self.set_problem(Some(source_text(e))),
        }
        result
    }
}

/// The error without the path (the journal's path is known).
fn source_text(e: &JournalError) -> String {
    match e {
        JournalError::Io { path, source } => format!("{}: {source}", path.display()),
        other => other.to_string(),
    }
}

/// Lines of an existing journal file (0 when there is none).
fn count_lines(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else {
        return 0;
    };
    BufReader::new(file)
        .split(b'\n')
        .filter(|l| l.as_ref().is_ok_and(|l| !l.is_empty()))
        .count() as u64
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// A line of the journal that could not be read back.
#[derive(Debug)]
pub struct BadLine {
    pub file: PathBuf,
    pub line: usize,
    pub error: String,
}

/// Reads the journal (the rotated generation first), keeping records that
/// ended at or after `since`. Lines that do not parse are returned, not
/// dropped silently. A last line without its newline is a record the agent
/// is writing at this moment: it is skipped, not called bad.
pub fn read(
    path: &Path,
    since: Option<DateTime<Utc>>,
) -> Result<(Vec<HandshakeOutcome>, Vec<BadLine>), JournalError> {
    let mut records = Vec::new();
    let mut bad = Vec::new();
    for file in [rotated_path(path), path.to_path_buf()] {
        let f = match File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => return Err(JournalError::Io { path: file, source }),
        };
        let mut reader = BufReader::new(f);
        let mut line = Vec::new();
        for number in 1.. {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|source| JournalError::Io {
                    path: file.clone(),
                    source,
                })?;
            if n == 0 || line.last() != Some(&b'\n') {
                break;
            }
            if line.trim_ascii().is_empty() {
                continue;
            }
            match serde_json::from_slice::<HandshakeOutcome>(&line) {
                Ok(o) if since.is_none_or(|s| o.end_time >= s) => records.push(o),
                Ok(_) => {}
                Err(e) => bad.push(BadLine {
                    file: file.clone(),
                    line: number,
                    error: crate::text::Chain(&e).to_string(),
                }),
            }
        }
    }
    Ok((records, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::outcome::sample_failure;
    use crate::outcome::{Endpoint, Role};

    fn outcome(n: u32) -> HandshakeOutcome {
        let t = DateTime::from_timestamp(1_700_000_000 + i64::from(n), 0).unwrap();
        HandshakeOutcome {
            id: format!("id-{n}"),
            time: t,
            end_time: t,
            role: Role::Client,
            client: Endpoint {
                ip: Some("127.0.0.1".parse().unwrap()),
                port: Some(40000),
                pid: Some(n),
                comm: Some("curl".into()),
                ..Default::default()
            },
            server: Endpoint::default(),
            ..sample_failure()
        }
    }

    fn temp_path(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tlsdoctor-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir.join("journal.jsonl")
    }

    #[test]
    fn pod_metadata_in_the_process_objects() {
        let mut o = outcome(1);
        o.client.container_id = Some("ab".repeat(32));
        o.client.container_runtime = Some("containerd".into());
        o.client.k8s = Some(crate::outcome::K8sPod {
            pod: Some("web-0".into()),
            namespace: Some("shop".into()),
            pod_uid: Some("5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f".into()),
            container: None,
        });
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(
            v["client"]["k8s"],
            serde_json::json!({
                "pod": "web-0",
                "namespace": "shop",
                "pod_uid": "5f9c2a4e-1b7d-4c3a-9e8f-0a1b2c3d4e5f",
            })
        );
        assert_eq!(v["client"]["container_runtime"], "containerd");
        // A host process or a remote peer: no key at all.
        let server = v["server"].as_object().unwrap();
        for absent in ["k8s", "container_id", "container_runtime"] {
            assert!(!server.contains_key(absent), "{absent}");
        }
        let back: HandshakeOutcome = serde_json::from_value(v).unwrap();
        assert_eq!(back, o);
        // Records written before these fields existed still read.
        let mut old = serde_json::to_value(outcome(2)).unwrap();
        old["client"]["container_id"] = serde_json::json!("cd".repeat(32));
        let old: HandshakeOutcome = serde_json::from_value(old).unwrap();
        assert_eq!(old.client.k8s, None);
        assert_eq!(old.client.container_runtime, None);
    }

    #[test]
    fn records_round_trip_with_required_fields() {
        let path = temp_path("roundtrip");
        let mut w = JournalWriter::open(&path, 1 << 20).unwrap();
        w.append(&outcome(1)).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        for field in [
            "time", "role", "client", "server", "tls", "openssl", "cause",
        ] {
            assert!(v.get(field).is_some(), "missing {field}: {v}");
        }
        assert_eq!(v["cause"], "unknown");
        assert_eq!(v["client"]["comm"], "curl");
        let (records, bad) = read(&path, None).unwrap();
        assert_eq!(records, vec![outcome(1)]);
        assert!(bad.is_empty());
    }

    #[test]
    fn rotation_keeps_one_generation_and_reads_both() {
        let path = temp_path("rotate");
        let mut w = JournalWriter::open(&path, 600).unwrap();
        for n in 0..6 {
            w.append(&outcome(n)).unwrap();
        }
        assert!(rotated_path(&path).exists());
        // Every record is either on disk or counted as rotated out.
        let on_disk = count_lines(&path) + count_lines(&rotated_path(&path));
        assert_eq!(w.appended, 6);
        assert_eq!(on_disk + w.rotated_out, 6);
        let (records, _) = read(&path, None).unwrap();
        assert!(records.len() >= 2);
        assert_eq!(records.last().unwrap().id, "id-5");
        let since = outcome(5).end_time;
        let (recent, _) = read(&path, Some(since)).unwrap();
        assert_eq!(recent.len(), 1);
    }

    #[test]
    fn unreadable_lines_are_reported() {
        let path = temp_path("bad");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "{not json}\n\n").unwrap();
        let (records, bad) = read(&path, None).unwrap();
        assert!(records.is_empty());
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 1);
    }

    #[test]
    fn a_line_being_written_is_skipped_not_bad() {
        let path = temp_path("partial");
        let mut w = JournalWriter::open(&path, 1 << 20).unwrap();
        w.append(&outcome(1)).unwrap();
        w.append(&outcome(2)).unwrap();
        // What a reader sees while the agent is in the middle of a write: a
        // complete record, then part of the next (cut inside a string).
        let whole = fs::read(&path).unwrap();
        let first_end = whole.iter().position(|b| *b == b'\n').unwrap() + 1;
        let cut = first_end + (whole.len() - first_end) / 2;
        fs::write(&path, &whole[..cut]).unwrap();
        let (records, bad) = read(&path, None).unwrap();
        assert_eq!(records, vec![outcome(1)]);
        assert!(bad.is_empty(), "{bad:?}");
        // Once the line is whole, it reads.
        fs::write(&path, &whole).unwrap();
        let (records, bad) = read(&path, None).unwrap();
        assert_eq!(records, vec![outcome(1), outcome(2)]);
        assert!(bad.is_empty());
    }

    #[test]
    fn each_record_is_one_write_of_one_whole_line() {
        // A record larger than a stdio buffer still lands as one line: the
        // file never holds a record's first part without its end.
        let path = temp_path("big");
        let mut w = JournalWriter::open(&path, 1 << 24).unwrap();
        let mut big = outcome(1);
        big.client.comm = Some("x".repeat(64 * 1024));
        w.append(&big).unwrap();
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.iter().filter(|b| **b == b'\n').count(), 1);
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(read(&path, None).unwrap().0, vec![big]);
    }

    #[test]
    fn non_utf8_garbage_is_a_bad_line_not_an_error() {
        let path = temp_path("garbage");
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = b"\xff\xfe not json\n".to_vec();
        bytes.extend(serde_json::to_vec(&outcome(3)).unwrap());
        bytes.push(b'\n');
        fs::write(&path, bytes).unwrap();
        let (records, bad) = read(&path, None).unwrap();
        assert_eq!(records, vec![outcome(3)]);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].line, 1);
    }

    #[test]
    fn files_are_private_and_an_older_wide_file_is_narrowed() {
        use std::os::unix::fs::PermissionsExt as _;
        let path = temp_path("modes");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let mut w = JournalWriter::open(&path, 600).unwrap();
        w.append(&outcome(1)).unwrap();
        assert_eq!(mode(&path), FILE_MODE);
        assert_eq!(mode(path.parent().unwrap()) & !DIR_MODE, 0);
        // Rotation's new file too.
        for n in 2..8 {
            w.append(&outcome(n)).unwrap();
        }
        assert_eq!(mode(&path), FILE_MODE);
        drop(w);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        let _w = JournalWriter::open(&path, 600).unwrap();
        assert_eq!(mode(&path), FILE_MODE, "an older 0666 file is narrowed");
        let status = path.with_file_name("status.json");
        fs::write(&status, "{}").unwrap();
        fs::set_permissions(&status, fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&status, b"{\"a\":1}").unwrap();
        assert_eq!(mode(&status), FILE_MODE);
        assert_eq!(fs::read_to_string(&status).unwrap(), "{\"a\":1}");
    }

    #[test]
    fn an_unopenable_journal_is_counted_reported_and_retried() {
        let dir = temp_path("blocked");
        let parent = dir.parent().unwrap().to_path_buf();
        fs::create_dir_all(parent.parent().unwrap()).unwrap();
        // The directory's place is taken by a file: not even root can
        // create the journal there.
        fs::write(&parent, "not a directory").unwrap();
        let health = Arc::new(Health::new());
        let mut j = Journal::open(&dir, 1 << 20, Some(health.clone()))
            .reopen_every(Duration::from_millis(1));
        assert!(j.problem().is_some());
        assert!(health.snapshot().journal_problem.is_some());
        let err = j.append(&outcome(1)).unwrap_err();
        assert!(err.to_string().contains("not open"), "{err}");
        assert_eq!(j.appended, 0);
        // The directory becomes usable: the next append reopens.
        fs::remove_file(&parent).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        j.append(&outcome(2)).unwrap();
        assert_eq!(j.appended, 1);
        assert!(j.problem().is_none());
        assert!(health.snapshot().journal_problem.is_none());
        assert_eq!(read(&dir, None).unwrap().0, vec![outcome(2)]);
    }

    #[test]
    fn an_unwritable_location_is_a_clear_error() {
        let Err(err) = JournalWriter::open(Path::new("/proc/tlsdoctor/journal.jsonl"), 10) else {
            panic!("opening a journal under /proc must fail");
        };
        assert!(err.to_string().contains("/proc/tlsdoctor"), "{err}");
    }
}
