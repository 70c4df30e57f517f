//! The journal: every failure as one JSON object per line, appended to a
//! local file that `agent diagnose` reads. The embedded default sink: it needs
//! no collector and survives agent restarts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::outcome::HandshakeOutcome;

/// Default location, for a host agent running as root.
pub const DEFAULT_PATH: &str = "/var/lib/tlsdoctor/journal.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal {path}: cannot encode a record: {source}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
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
            fs::create_dir_all(dir).map_err(io_err)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_err)?;
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
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io_err)?;
        self.out = file;
        self.written = 0;
        self.rotated_out += self.rotated_records;
        self.rotated_records = self.current_records;
        self.current_records = 0;
        Ok(())
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
                    error: e.to_string(),
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
    fn an_unwritable_location_is_a_clear_error() {
        let Err(err) = JournalWriter::open(Path::new("/proc/tlsdoctor/journal.jsonl"), 10) else {
            panic!("opening a journal under /proc must fail");
        };
        assert!(err.to_string().contains("/proc/tlsdoctor"), "{err}");
    }
}
