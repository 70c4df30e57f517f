//! Reading config files for both parsers: size and count caps, include-glob
//! expansion, include-loop detection, and the bookkeeping (`files`,
//! `watched`, `problems`) that ends up in [`ServerConfig`](super::ServerConfig).
//!
//! Everything here treats the files as hostile: a config tree is whatever is
//! on disk, and the agent must never hang (FIFOs), balloon (huge files,
//! include bombs) or panic on it.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{ConfigError, ConfigProblem, ListenSpec, ServerBlock, ServerConfig, ServerKind};
use crate::evidence::fsroot::{FsRoot, MAX_GLOB_PATHS};

/// Largest config file read; real configs are a few KiB, so anything bigger
/// is a mistake or an attack.
pub(crate) const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
/// Most files read for one installation (main + includes, counting re-reads).
pub(crate) const MAX_FILES: usize = 2000;
/// Deepest include chain. Apache's own limit is 128; real configs use 3-4.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 32;
/// Deepest block/section nesting, across includes. Keeps the recursive
/// walkers far from the stack limit (test threads have 2 MiB).
pub(crate) const MAX_NESTING: usize = 64;
/// Most problems listed for one installation; the rest are counted, so a
/// file of garbage cannot turn into millions of entries.
pub(crate) const MAX_PROBLEMS: usize = 1000;
/// Most directives kept for one installation: bounds memory and time when
/// includes multiply (a file included many times by files included many times).
pub(crate) const MAX_DIRECTIVES: usize = 500_000;
/// Bytes one installation's parse reads, all its files together: the file
/// and count caps alone would allow 2000 files of 4 MiB (or one file
/// reached 2000 times through symlinks) -- 8 GB of parsing.
pub const MAX_TREE_BYTES: u64 = 32 << 20;
/// Time one installation's parse may take before the rest of its files is
/// left unread.
pub const MAX_PARSE_TIME: Duration = Duration::from_secs(5);

/// How much one parse may read, and for how long ([`MAX_TREE_BYTES`],
/// [`MAX_PARSE_TIME`] by default). Past either, the files not yet read
/// are skipped and the parse says so in one problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadBudget {
    pub bytes: u64,
    pub time: Duration,
}

impl Default for ReadBudget {
    fn default() -> Self {
        ReadBudget {
            bytes: MAX_TREE_BYTES,
            time: MAX_PARSE_TIME,
        }
    }
}

/// Why a file could not be used.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    Io(io::Error),
    NotAFile,
    TooLarge(u64),
    NotText,
    /// The parse's byte or time budget is spent.
    OverBudget,
}

impl ReadFailure {
    pub(crate) fn describe(&self) -> String {
        match self {
            ReadFailure::Io(e) if e.kind() == io::ErrorKind::NotFound => "no such file".to_string(),
            ReadFailure::Io(e) => crate::text::Chain(&e).to_string(),
            ReadFailure::NotAFile => "not a regular file (directory, FIFO or device)".to_string(),
            ReadFailure::TooLarge(size) => {
                format!("{size} bytes, over the {MAX_FILE_BYTES}-byte limit; not read")
            }
            ReadFailure::NotText => "holds NUL bytes: not a text config file".to_string(),
            ReadFailure::OverBudget => "over the read budget of one parse; not read".to_string(),
        }
    }

    pub(crate) fn into_config_error(self, path: &Path) -> ConfigError {
        let path = path.to_path_buf();
        match self {
            ReadFailure::Io(source) => ConfigError::Read { path, source },
            ReadFailure::NotAFile => ConfigError::NotAFile { path },
            ReadFailure::TooLarge(size) => ConfigError::TooLarge {
                path,
                size,
                limit: MAX_FILE_BYTES,
            },
            ReadFailure::OverBudget => ConfigError::TooLarge {
                path,
                size: MAX_TREE_BYTES,
                limit: MAX_TREE_BYTES,
            },
            ReadFailure::NotText => ConfigError::NotText { path },
        }
    }
}

/// Reads one file of `root` as text, refusing anything that is not a
/// regular file (a FIFO would block forever), over the size cap, or binary,
/// and a file larger than `room` (what is left of a parse's budget) as
/// [`ReadFailure::OverBudget`].
fn read_text_within(root: &FsRoot, path: &Path, room: u64) -> Result<String, ReadFailure> {
    let meta = root.metadata(path).map_err(ReadFailure::Io)?;
    if !meta.is_file() {
        return Err(ReadFailure::NotAFile);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadFailure::TooLarge(meta.len()));
    }
    if meta.len() > room {
        return Err(ReadFailure::OverBudget);
    }
    let cap = MAX_FILE_BYTES.min(room);
    let file = root.open(path).map_err(ReadFailure::Io)?;
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The file may grow between stat and read: read one byte past the cap to notice.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadFailure::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadFailure::TooLarge(bytes.len() as u64));
    }
    if bytes.len() as u64 > room {
        return Err(ReadFailure::OverBudget);
    }
    if bytes.contains(&0) {
        return Err(ReadFailure::NotText);
    }
    // Configs are ASCII in practice; a stray Latin-1 comment must not lose the file.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// How an include directive treats paths that match nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IncludeKind {
    /// nginx `include`: a glob may match nothing; a plain path must exist;
    /// directories are errors.
    Nginx,
    /// Apache `Include`: a glob matching nothing is an error (httpd refuses
    /// to start); directories are read recursively.
    ApacheInclude,
    /// Apache `IncludeOptional`: nothing matching is fine.
    ApacheOptional,
}

fn has_glob_meta(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Shared state of one parse: what was read, what went wrong, where we are.
#[derive(Debug, Default)]
pub(crate) struct Loader {
    /// Every file read, first-read order, no duplicates.
    pub files: Vec<PathBuf>,
    seen_files: HashSet<PathBuf>,
    /// Directories whose listing was read and paths that were missing:
    /// creating a file there changes what would be parsed.
    pub watched: Vec<PathBuf>,
    seen_watched: HashSet<PathBuf>,
    pub problems: Vec<ConfigProblem>,
    problems_dropped: usize,
    reads: usize,
    files_cap_reported: bool,
    /// Canonical paths of the include chain being read, outermost first.
    stack: Vec<PathBuf>,
    /// Directives kept so far, against [`MAX_DIRECTIVES`].
    pub directives: usize,
    /// The filesystem the paths are read from (a container's, for a
    /// containerised server).
    pub root: FsRoot,
    budget: ReadBudget,
    /// When the budget's time runs out (None: not started, no limit).
    deadline: Option<Instant>,
    /// Bytes read so far, against the budget.
    pub bytes_read: u64,
    /// The budget ran out: some files were not read.
    pub over_budget: bool,
}

impl Loader {
    /// A loader reading from `root` within `budget`.
    pub(crate) fn in_root(root: &FsRoot, budget: ReadBudget) -> Loader {
        Loader {
            root: root.clone(),
            budget,
            deadline: Instant::now().checked_add(budget.time),
            ..Loader::default()
        }
    }

    /// Reads a file of the tree against the parse's budget. The first
    /// refusal for the budget is a problem at `from:line`; later ones are
    /// silent (one hostile tree, one problem).
    pub(crate) fn read_counted(
        &mut self,
        path: &Path,
        from: &Path,
        line: Option<u32>,
    ) -> Result<String, ReadFailure> {
        let out_of_time = self.deadline.is_some_and(|d| Instant::now() >= d);
        let result = if self.over_budget || out_of_time {
            Err(ReadFailure::OverBudget)
        } else {
            let room = self.budget.bytes.saturating_sub(self.bytes_read);
            read_text_within(&self.root, path, room)
        };
        match &result {
            Ok(text) => self.bytes_read += text.len() as u64,
            Err(ReadFailure::OverBudget) if !self.over_budget => {
                self.over_budget = true;
                let why = if out_of_time {
                    format!("took longer than {} s", self.budget.time.as_secs())
                } else {
                    format!("is over {} MiB", self.budget.bytes >> 20)
                };
                self.problem(
                    from,
                    line,
                    format!(
                        "the config tree {why} (the most one parse reads): {} and every file after it were not read",
                        path.display()
                    ),
                );
            }
            Err(_) => {}
        }
        result
    }

    pub(crate) fn problem(&mut self, file: &Path, line: Option<u32>, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.problems_dropped += 1;
            return;
        }
        self.problems.push(ConfigProblem {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }

    /// The problem list, with a closing note on how many were not listed.
    /// The parse of `main_file`: what was read, what went wrong, and the
    /// blocks and listens the server's evaluator found, all in this root.
    pub(crate) fn into_config(
        mut self,
        kind: ServerKind,
        main_file: &Path,
        blocks: Vec<ServerBlock>,
        listens: Vec<ListenSpec>,
    ) -> ServerConfig {
        let mut config = ServerConfig::new(kind, main_file.to_path_buf());
        config.problems = self.take_problems(main_file);
        config.over_budget = self.over_budget;
        config.blocks = blocks;
        config.listens = listens;
        config.set_root(&self.root);
        config.files = self.files;
        config.watched = self.watched;
        config
    }

    pub(crate) fn take_problems(&mut self, main_file: &Path) -> Vec<ConfigProblem> {
        let mut problems = std::mem::take(&mut self.problems);
        if self.problems_dropped > 0 {
            problems.push(ConfigProblem {
                file: main_file.to_path_buf(),
                line: None,
                message: format!("{} further problems not listed", self.problems_dropped),
            });
        }
        problems
    }

    pub(crate) fn record_file(&mut self, path: &Path) {
        if self.seen_files.insert(path.to_path_buf()) {
            self.files.push(path.to_path_buf());
        }
    }

    pub(crate) fn watch(&mut self, path: &Path) {
        if self.seen_watched.insert(path.to_path_buf()) {
            self.watched.push(path.to_path_buf());
        }
    }

    /// Reads the main file: failures here are the caller's error, not a problem.
    /// The main file is always read (within the byte budget: it is the
    /// first file, and smaller than the budget by the file cap).
    pub(crate) fn read_main(&mut self, path: &Path) -> Result<String, ConfigError> {
        self.reads += 1;
        let room = self.budget.bytes.saturating_sub(self.bytes_read);
        let read = read_text_within(&self.root, path, room);
        if let Ok(text) = &read {
            self.bytes_read += text.len() as u64;
        }
        match read {
            Ok(text) => {
                self.record_file(path);
                self.stack.push(self.root.canonical(path));
                Ok(text)
            }
            Err(e) => Err(e.into_config_error(path)),
        }
    }

    /// Enters an included file: checks depth, loops and the file cap, reads
    /// it. On success the caller must call [`Loader::leave`] when done.
    /// On failure a problem naming the including directive is recorded.
    pub(crate) fn enter(&mut self, path: &Path, from: &Path, line: u32) -> Option<String> {
        let canon = self.root.canonical(path);
        if let Some(pos) = self.stack.iter().position(|p| *p == canon) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .skip(pos)
                .chain(std::iter::once(&canon))
                .map(|p| p.display().to_string())
                .collect();
            self.problem(
                from,
                Some(line),
                format!("include loop: {}; not followed", chain.join(" -> ")),
            );
            return None;
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            self.problem(
                from,
                Some(line),
                format!(
                    "includes nested deeper than {MAX_INCLUDE_DEPTH}; {} not read",
                    path.display()
                ),
            );
            return None;
        }
        if self.reads >= MAX_FILES {
            if !self.files_cap_reported {
                self.files_cap_reported = true;
                self.problem(
                    from,
                    Some(line),
                    format!("more than {MAX_FILES} config files read; the rest is ignored"),
                );
            }
            return None;
        }
        self.reads += 1;
        match self.read_counted(path, from, Some(line)) {
            Ok(text) => {
                self.record_file(path);
                self.stack.push(canon);
                Some(text)
            }
            // Said once, by read_counted.
            Err(ReadFailure::OverBudget) => None,
            Err(e) => {
                if matches!(&e, ReadFailure::Io(io) if io.kind() == io::ErrorKind::NotFound) {
                    self.watch(path);
                }
                self.problem(
                    from,
                    Some(line),
                    format!("cannot include {}: {}", path.display(), e.describe()),
                );
                None
            }
        }
    }

    pub(crate) fn leave(&mut self) {
        self.stack.pop();
    }

    /// Expands an include argument (already made absolute) into the files to
    /// read, in the order the server reads them (sorted, as glob(3) and
    /// Apache's directory reader both sort).
    pub(crate) fn expand(
        &mut self,
        pattern: &Path,
        kind: IncludeKind,
        from: &Path,
        line: u32,
    ) -> Vec<PathBuf> {
        let text = pattern.to_string_lossy();
        if has_glob_meta(&text) {
            return self.expand_glob(&text, kind, from, line);
        }
        match kind {
            IncludeKind::Nginx => vec![pattern.to_path_buf()],
            IncludeKind::ApacheInclude | IncludeKind::ApacheOptional => {
                if self.root.is_dir(pattern) {
                    let mut out = Vec::new();
                    self.list_dir_recursive(pattern, from, line, 0, &mut out);
                    out
                } else if kind == IncludeKind::ApacheOptional && !self.root.exists(pattern) {
                    // httpd ignores a missing IncludeOptional target; watch
                    // it so that creating it triggers a re-parse.
                    self.watch(pattern);
                    Vec::new()
                } else {
                    vec![pattern.to_path_buf()]
                }
            }
        }
    }

    fn expand_glob(
        &mut self,
        pattern: &str,
        kind: IncludeKind,
        from: &Path,
        line: u32,
    ) -> Vec<PathBuf> {
        // Watch the deepest directory without wildcards: a file added there
        // can change the match set.
        let literal_prefix: PathBuf = Path::new(pattern)
            .components()
            .take_while(|c| !has_glob_meta(&c.as_os_str().to_string_lossy()))
            .collect();
        if !literal_prefix.as_os_str().is_empty() {
            self.watch(&literal_prefix);
        }
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            // glob(3) (used by nginx and apr_match_glob) never matches a
            // leading dot with a wildcard: editor backups like .foo.swp stay out.
            require_literal_leading_dot: true,
        };
        let paths = match self.root.glob(pattern, options) {
            Ok(paths) => paths,
            Err(e) => {
                self.problem(
                    from,
                    Some(line),
                    format!(
                        "invalid include pattern {pattern}: {e}",
                        e = crate::text::Chain(&e)
                    ),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in paths {
            match entry {
                Ok(path) => {
                    if kind != IncludeKind::Nginx && self.root.is_dir(&path) {
                        self.list_dir_recursive(&path, from, line, 0, &mut out);
                    } else {
                        out.push(path);
                    }
                }
                Err(e) => self.problem(from, Some(line), format!("include pattern {pattern}: {e}")),
            }
            if out.len() > MAX_FILES {
                break;
            }
        }
        if out.is_empty() && kind == IncludeKind::ApacheInclude {
            self.problem(
                from,
                Some(line),
                format!(
                    "Include {pattern} matches no file: httpd refuses to start (IncludeOptional would not)"
                ),
            );
        }
        out
    }

    /// Apache reads every file in an included directory and its
    /// subdirectories, sorted by name.
    fn list_dir_recursive(
        &mut self,
        dir: &Path,
        from: &Path,
        line: u32,
        depth: usize,
        out: &mut Vec<PathBuf>,
    ) {
        if depth > MAX_INCLUDE_DEPTH || out.len() > MAX_FILES {
            return;
        }
        self.watch(dir);
        let listing = match self.root.read_dir(dir, MAX_GLOB_PATHS) {
            Ok(listing) => listing,
            Err(e) => {
                self.problem(
                    from,
                    Some(line),
                    format!("cannot list {}: {e}", dir.display()),
                );
                return;
            }
        };
        if listing.truncated {
            self.problem(
                from,
                Some(line),
                format!(
                    "{} holds more than {MAX_GLOB_PATHS} entries; only {MAX_GLOB_PATHS} were looked at",
                    dir.display()
                ),
            );
        }
        let mut names = listing.entries;
        names.sort();
        for path in names {
            if is_backup_name(&path) {
                continue;
            }
            if self.root.is_dir(&path) {
                self.list_dir_recursive(&path, from, line, depth + 1, out);
            } else {
                out.push(path);
            }
        }
    }
}

/// Files a directory Include skips: Debian's httpd ignores editor and
/// package-manager leftovers there (README.Debian), and hidden files are
/// never meant as config.
fn is_backup_name(path: &Path) -> bool {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
        return true;
    };
    name.starts_with('.')
        || name.starts_with('#')
        || name.ends_with('~')
        || [".dpkg-", ".ucf-", ".rpmnew", ".rpmsave", ".bak", ".orig"]
            .iter()
            .any(|marker| name.contains(marker))
}
