//! The coverage worker: which files hold TLS code, for every process, and
//! which probes they need; off the capture loop, on its own thread.
//!
//! It reads `/proc/PID/maps` (streamed, capped), opens each new executable
//! file once (`tls_libs::open_mapped`), reads its symbols (`elf`), plans its
//! probes (`uprobes::plan`) and hands the plan, with the open descriptor, to
//! the capture loop, which only attaches. A file is probed while a process
//! maps it (the system's own libssl/libcrypto always, so that a new process
//! is covered from its first handshake); when none does any more its probes
//! are detached, and a file rewritten in place (same inode, new size or
//! times) is detached and planned again from its new contents.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{debug, warn};

use super::Capture;
use super::elf::{self, Flavor, TlsImage};
use super::tls_libs::{self, Coverage, FileId, FileStamp, LibKind, OpenedFile};
use super::uprobes::{self, CoverageAction, FilePlan};
use crate::malloc::release_freed_memory;

/// A new process is checked this long after exec (the dynamic loader maps
/// its libraries right after) and again later (dlopen).
const EXEC_CHECKS: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(500),
    Duration::from_secs(2),
];
/// Most uncovered processes listed in the status file.
const MAX_UNCOVERED_LISTED: usize = 512;
/// Files known to hold no TLS code, remembered by inode (then forgotten
/// all at once: cheap to learn again).
const MAX_NOT_TLS: usize = 65_536;

/// A process whose TLS code is not probed, and why.
#[derive(Clone, Debug, Serialize)]
pub struct UncoveredProcess {
    pub comm: String,
    pub coverage: Coverage,
}

/// What the status file shows of coverage.
#[derive(Clone, Debug, Default)]
pub struct CoverageStatus {
    pub covered_processes: usize,
    /// Processes seen at the last full scan, by coverage (`covered`,
    /// `no-tls-library`: wire evidence only, `exited`, `unsupported`,
    /// `unreadable`).
    pub counts: BTreeMap<&'static str, u64>,
    pub uncovered: BTreeMap<u32, UncoveredProcess>,
    /// Files inspected so far (each once per inode and contents).
    pub files_inspected: u64,
    /// Files whose probes were detached (unmapped or changed in place).
    pub files_detached: u64,
}

enum Request {
    Exec(u32),
    Stop,
}

/// The handle the capture loop keeps.
pub struct CoverageWorker {
    requests: Sender<Request>,
    status: Arc<Mutex<CoverageStatus>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CoverageWorker {
    /// Starts the worker, which scans every process at once and then every
    /// `rescan`. The capture loop applies what arrives on the receiver.
    pub fn start(
        rescan: Duration,
    ) -> std::io::Result<(CoverageWorker, UnboundedReceiver<CoverageAction>)> {
        let (requests, rx) = channel();
        let (actions, actions_rx) = unbounded_channel();
        let status = Arc::new(Mutex::new(CoverageStatus::default()));
        let mut state = Worker {
            actions,
            status: status.clone(),
            files: HashMap::new(),
            not_tls: HashSet::new(),
            processes: HashMap::new(),
            uncovered: BTreeMap::new(),
            system: HashSet::new(),
            inspected: 0,
            detached: 0,
        };
        let thread = std::thread::Builder::new()
            .name("tlsdoctor-coverage".into())
            .spawn(move || state.run(&rx, rescan))?;
        Ok((
            CoverageWorker {
                requests,
                status,
                thread: Some(thread),
            },
            actions_rx,
        ))
    }

    /// Blocks until the first full scan is attached: probes are in place
    /// for every process running now before the agent says it captures.
    pub async fn wait_first_scan(
        actions: &mut UnboundedReceiver<CoverageAction>,
        capture: &mut Capture,
    ) {
        while let Some(action) = actions.recv().await {
            let done = matches!(action, CoverageAction::ScanDone);
            capture.apply_coverage(action);
            if done {
                break;
            }
        }
    }

    /// A process exec'd: check it soon.
    pub fn exec(&self, pid: u32) {
        let _ = self.requests.send(Request::Exec(pid));
    }

    pub fn status(&self) -> CoverageStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for CoverageWorker {
    fn drop(&mut self) {
        let _ = self.requests.send(Request::Stop);
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            warn!("the coverage worker panicked");
        }
    }
}

/// A TLS file the worker knows.
struct KnownFile {
    stamp: FileStamp,
    path: String,
    image: TlsImage,
    /// Its libcrypto error functions are probed (a libssl without PLT
    /// stubs uses it).
    with_errors: bool,
    /// Processes mapping it, at their last check.
    users: HashSet<u32>,
    attached: bool,
    /// The descriptor it was opened and checked through (re-plans attach
    /// through it again), and how it was reached.
    file: std::fs::File,
    via: String,
}

struct Worker {
    actions: UnboundedSender<CoverageAction>,
    status: Arc<Mutex<CoverageStatus>>,
    files: HashMap<FileId, KnownFile>,
    not_tls: HashSet<FileId>,
    /// TLS files each process maps.
    processes: HashMap<u32, Vec<FileId>>,
    uncovered: BTreeMap<u32, UncoveredProcess>,
    /// The system's own OpenSSL files: probed whether mapped or not.
    system: HashSet<FileId>,
    inspected: u64,
    detached: u64,
}

impl Worker {
    fn run(&mut self, requests: &Receiver<Request>, rescan: Duration) {
        let own = std::process::id();
        self.scan_all(own);
        release_freed_memory();
        let _ = self.actions.send(CoverageAction::ScanDone);
        let mut next_scan = Instant::now() + rescan;
        let mut due: Vec<(Instant, u32)> = Vec::new();
        loop {
            let now = Instant::now();
            let wake = due
                .iter()
                .map(|(at, _)| *at)
                .min()
                .unwrap_or(next_scan)
                .min(next_scan);
            match requests.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Request::Exec(pid)) => {
                    let now = Instant::now();
                    due.extend(EXEC_CHECKS.iter().map(|d| (now + *d, pid)));
                }
                Ok(Request::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            let mut ready = Vec::new();
            due.retain(|&(at, pid)| {
                if at <= now {
                    ready.push(pid);
                    false
                } else {
                    true
                }
            });
            let inspected = self.inspected;
            for pid in ready {
                if pid != own {
                    self.check(pid);
                }
            }
            if now >= next_scan {
                self.scan_all(own);
                next_scan = now + rescan;
            }
            if self.inspected != inspected {
                release_freed_memory();
            }
            self.publish();
        }
    }

    fn scan_all(&mut self, own: u32) {
        self.cover_system_libraries();
        let pids = tls_libs::all_pids();
        let alive: HashSet<u32> = pids.iter().copied().collect();
        let gone: Vec<u32> = self
            .processes
            .keys()
            .filter(|p| !alive.contains(p))
            .copied()
            .collect();
        for pid in gone {
            self.forget_process(pid);
        }
        self.uncovered.retain(|pid, _| alive.contains(pid));
        let mut counts = BTreeMap::new();
        for pid in pids {
            if pid != own {
                let kind = self.check(pid);
                *counts.entry(kind).or_insert(0) += 1;
            }
        }
        self.detach_unused();
        if let Ok(mut status) = self.status.lock() {
            status.counts = counts;
        }
        self.publish();
    }

    fn publish(&self) {
        if let Ok(mut status) = self.status.lock() {
            status.covered_processes = self
                .processes
                .iter()
                .filter(|(pid, files)| !files.is_empty() && !self.uncovered.contains_key(pid))
                .count();
            status.uncovered = self.uncovered.clone();
            status.files_inspected = self.inspected;
            status.files_detached = self.detached;
        }
    }

    /// The system's libssl/libcrypto, whatever maps them; a path that now
    /// names a new file (a package upgrade) moves the pin to it.
    fn cover_system_libraries(&mut self) {
        let mut now = HashSet::new();
        for path in tls_libs::system_libraries() {
            let opened = match tls_libs::open_host(&path) {
                Ok(o) => o,
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "system TLS library not opened");
                    continue;
                }
            };
            now.insert(opened.id);
            self.consider(opened, path.display().to_string(), None);
        }
        for id in self.system.difference(&now).copied().collect::<Vec<_>>() {
            self.system.remove(&id);
        }
        for id in now {
            if self.files.contains_key(&id) {
                self.system.insert(id);
            }
        }
        self.ensure_errors_where_needed();
    }

    /// Covers one process; returns its coverage kind.
    fn check(&mut self, pid: u32) -> &'static str {
        let coverage = self.cover(pid);
        let kind = match &coverage {
            Coverage::Covered => "covered",
            Coverage::NoTlsLibrary => "no-tls-library",
            Coverage::Exited => "exited",
            Coverage::Unsupported(_) => "unsupported",
            Coverage::Unreadable(_) => "unreadable",
        };
        match coverage {
            // Not using OpenSSL is normal (Go, Java, shells): wire evidence only.
            Coverage::Covered | Coverage::NoTlsLibrary | Coverage::Exited => {
                self.uncovered.remove(&pid);
            }
            other => {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                if !self.uncovered.contains_key(&pid) {
                    warn!(pid, comm = %comm, coverage = ?other, "process not covered");
                }
                if self.uncovered.len() < MAX_UNCOVERED_LISTED || self.uncovered.contains_key(&pid)
                {
                    self.uncovered.insert(
                        pid,
                        UncoveredProcess {
                            comm,
                            coverage: other,
                        },
                    );
                }
            }
        }
        kind
    }

    fn cover(&mut self, pid: u32) -> Coverage {
        let maps = match tls_libs::files_of(pid) {
            Ok(m) => m,
            Err(coverage) => {
                if coverage == Coverage::Exited {
                    self.forget_process(pid);
                }
                return coverage;
            }
        };
        let mut mine = Vec::new();
        let mut problems = Vec::new();
        for mapped in &maps.files {
            if self.not_tls.contains(&mapped.id) {
                continue;
            }
            let opened = match tls_libs::open_mapped(pid, mapped) {
                Ok(o) => o,
                Err(tls_libs::OpenError::Exited) => {
                    self.forget_process(pid);
                    return Coverage::Exited;
                }
                Err(e) => {
                    // Only a problem where it may hide TLS code.
                    if self.files.contains_key(&mapped.id)
                        || tls_libs::lib_kind(&mapped.display()).is_some()
                    {
                        problems.push(format!("{}: {e}", mapped.display()));
                    }
                    continue;
                }
            };
            if self.consider(opened, mapped.display(), Some(pid)) {
                mine.push(mapped.id);
            }
        }
        // Files this process no longer maps (it exec'd, or unmapped them).
        let before = self.processes.insert(pid, mine.clone()).unwrap_or_default();
        for id in before.iter().filter(|id| !mine.contains(id)) {
            if let Some(file) = self.files.get_mut(id) {
                file.users.remove(&pid);
            }
        }
        self.ensure_errors_where_needed();
        self.coverage_of(&mine, problems, maps.truncated)
    }

    /// Inspects a file the first time (or after it changed) and plans its
    /// probes; returns whether it holds TLS code. `user`: the process that
    /// maps it.
    fn consider(&mut self, opened: OpenedFile, path: String, user: Option<u32>) -> bool {
        let id = opened.id;
        if let Some(known) = self.files.get_mut(&id) {
            if known.stamp == opened.stamp {
                if let Some(pid) = user {
                    known.users.insert(pid);
                }
                return true;
            }
            // Rewritten in place: the old offsets mean nothing now.
            let users = std::mem::take(&mut known.users);
            self.files.remove(&id);
            self.detach(
                id,
                format!("{path} changed in place (same inode, new contents)"),
            );
            return self.inspect_new(opened, path, user, users);
        }
        self.inspect_new(opened, path, user, HashSet::new())
    }

    fn inspect_new(
        &mut self,
        opened: OpenedFile,
        path: String,
        user: Option<u32>,
        mut users: HashSet<u32>,
    ) -> bool {
        self.inspected += 1;
        let started = Instant::now();
        let image = match elf::inspect(&opened.file) {
            Ok(image) => {
                debug!(path = %path, tls = image.is_tls(), took = ?started.elapsed(), "inspected");
                image
            }
            Err(e) => {
                debug!(path = %path, error = %e, took = ?started.elapsed(), "not inspected");
                TlsImage::default()
            }
        };
        if !image.is_tls() {
            if self.not_tls.len() >= MAX_NOT_TLS {
                self.not_tls.clear();
            }
            self.not_tls.insert(opened.id);
            return false;
        }
        if let Some(pid) = user {
            users.insert(pid);
        }
        let id = opened.id;
        self.files.insert(
            id,
            KnownFile {
                stamp: opened.stamp,
                path: path.clone(),
                image,
                with_errors: false,
                users,
                attached: false,
                file: opened.file,
                via: opened.via,
            },
        );
        self.attach(id);
        true
    }

    fn attach(&mut self, id: FileId) {
        let Some(known) = self.files.get_mut(&id) else {
            return;
        };
        let file = match known.file.try_clone() {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %known.path, error = %e, "TLS file not probed: no descriptor");
                return;
            }
        };
        let planned = uprobes::plan(&known.image, known.with_errors);
        known.attached = true;
        let plan = FilePlan {
            id,
            stamp: known.stamp,
            kind: uprobes::kind_of(&known.image),
            flavor: known.image.flavor,
            path: known.path.clone(),
            via: known.via.clone(),
            file,
            probes: planned.probes,
            skipped: planned.skipped,
        };
        let _ = self.actions.send(CoverageAction::Attach(Box::new(plan)));
    }

    fn detach(&mut self, id: FileId, why: String) {
        self.detached += 1;
        let _ = self.actions.send(CoverageAction::Detach { id, why });
    }

    /// A libssl that raises errors without PLT stubs needs the error
    /// functions of the libcrypto beside it probed: re-plan those.
    fn ensure_errors_where_needed(&mut self) {
        let mut wanted: Vec<FileId> = Vec::new();
        for files in self.processes.values() {
            let needs = files.iter().any(|id| {
                self.files.get(id).is_some_and(|f| {
                    f.image.has_ssl()
                        && uprobes::error_source(&f.image) == uprobes::ErrorSource::Libcrypto
                })
            });
            if needs {
                wanted.extend(files.iter().filter(|id| {
                    self.files
                        .get(id)
                        .is_some_and(|f| !f.image.has_ssl() && !f.with_errors)
                }));
            }
        }
        for id in wanted {
            let Some(known) = self.files.get_mut(&id) else {
                continue;
            };
            if known.with_errors {
                continue;
            }
            known.with_errors = true;
            self.attach(id);
        }
    }

    fn coverage_of(
        &self,
        mine: &[FileId],
        problems: Vec<String>,
        truncated: Option<String>,
    ) -> Coverage {
        let files: Vec<&KnownFile> = mine.iter().filter_map(|id| self.files.get(id)).collect();
        let ssl = files.iter().find(|f| f.image.has_ssl());
        match ssl {
            Some(f) if f.image.flavor == Some(Flavor::Boringssl) => Coverage::Unsupported(format!(
                "{}: BoringSSL (library numbers and reason codes differ from OpenSSL's; \
                 wire evidence only)",
                f.path
            )),
            Some(_) if problems.is_empty() => Coverage::Covered,
            Some(_) => Coverage::Unsupported(problems.join("; ")),
            None if !problems.is_empty() => Coverage::Unsupported(problems.join("; ")),
            None if files
                .iter()
                .any(|f| uprobes::kind_of(&f.image) == LibKind::Crypto) =>
            {
                Coverage::Unsupported("maps libcrypto but no libssl".to_string())
            }
            None => match truncated {
                Some(why) => Coverage::Unsupported(why),
                None => Coverage::NoTlsLibrary,
            },
        }
    }

    fn forget_process(&mut self, pid: u32) {
        if let Some(files) = self.processes.remove(&pid) {
            for id in files {
                if let Some(file) = self.files.get_mut(&id) {
                    file.users.remove(&pid);
                }
            }
        }
    }

    /// Files no process maps any more, and not the system's own: detached.
    fn detach_unused(&mut self) {
        let unused: Vec<FileId> = self
            .files
            .iter()
            .filter(|(id, f)| f.users.is_empty() && !self.system.contains(id))
            .map(|(id, _)| *id)
            .collect();
        for id in unused {
            if let Some(file) = self.files.remove(&id)
                && file.attached
            {
                self.detach(id, format!("{}: no process maps it any more", file.path));
            }
        }
    }
}
