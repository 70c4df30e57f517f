//! What reaches httpd from outside its config files: the command line
//! (`-f`, `-d`, `-D`) and, on Debian, the `envvars` shell file that
//! apache2ctl sources before starting it. Both are read, never executed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::apache::{ApacheOptions, DEBIAN_CONFIG, DEBIAN_ROOT, RHEL_ROOT};
use crate::evidence::fsroot::FsRoot;

/// Longest value a variable may have after expansion. httpd reads config
/// lines of at most 8 KiB (`MAX_STRING_LEN`); twice that leaves room for any
/// real value while `B=$A$A` repeated 40 times stops here instead of at
/// 2^40 bytes.
pub const MAX_VALUE_BYTES: usize = 16 * 1024;
/// All variables' values together: those of one `envvars` file, or the
/// `Define`s of one configuration.
pub const MAX_TOTAL_BYTES: usize = 1024 * 1024;

/// The variables of an `envvars` file, and the assignments skipped for
/// their size (each says which line and variable).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Envvars {
    pub vars: HashMap<String, String>,
    pub skipped: Vec<(u32, String)>,
}

/// `export NAME=value` / `NAME=value` lines of a shell file, with `$NAME` /
/// `${NAME}` expanded from earlier lines. Lines inside `if`/`case`/loops
/// are skipped (their conditions are not evaluated), and values with
/// command substitution are dropped: the file is read, never run. A value
/// longer than [`MAX_VALUE_BYTES`], or one that would take all values past
/// [`MAX_TOTAL_BYTES`], is not set and listed in `skipped`.
pub fn parse_envvars(text: &str) -> Envvars {
    let mut out = Envvars::default();
    let mut total = 0usize;
    let mut depth = 0usize;
    for (index, line) in text.lines().enumerate() {
        let line_no = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let first = line
            .split(|c: char| c.is_whitespace() || c == ';')
            .next()
            .unwrap_or("");
        match first {
            "if" | "case" | "for" | "while" | "until" => {
                let closes =
                    line.ends_with("fi") || line.ends_with("esac") || line.ends_with("done");
                if !closes {
                    depth += 1;
                }
                continue;
            }
            "fi" | "esac" | "done" => {
                depth = depth.saturating_sub(1);
                continue;
            }
            _ => {}
        }
        if depth > 0 {
            continue;
        }
        if let Some(name) = line.strip_prefix("unset ") {
            for name in name.split_whitespace() {
                if let Some(old) = out.vars.remove(name) {
                    total -= old.len();
                }
            }
            continue;
        }
        let assignment = line.strip_prefix("export ").unwrap_or(line).trim();
        let Some((name, raw)) = assignment.split_once('=') else {
            continue;
        };
        if !is_identifier(name) {
            continue;
        }
        match shell_value(raw, &out.vars) {
            ShellValue::Set(value) => {
                let old = out.vars.get(name).map_or(0, String::len);
                if total - old + value.len() > MAX_TOTAL_BYTES {
                    out.skipped.push((
                        line_no,
                        format!(
                            "{name} not set: the variables would exceed {} KiB",
                            MAX_TOTAL_BYTES / 1024
                        ),
                    ));
                    continue;
                }
                total = total - old + value.len();
                out.vars.insert(name.to_string(), value);
            }
            ShellValue::NeedsShell => {}
            ShellValue::TooLong => out.skipped.push((
                line_no,
                format!(
                    "{name} not set: its value expands past {} KiB",
                    MAX_VALUE_BYTES / 1024
                ),
            )),
        }
    }
    out
}

/// A shell word, read.
#[derive(Debug, PartialEq, Eq)]
enum ShellValue {
    Set(String),
    /// Command substitution or a `${X:-y}` form: only a shell knows.
    NeedsShell,
    /// Longer than [`MAX_VALUE_BYTES`] once expanded.
    TooLong,
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A shell word's value: quotes removed, simple expansions done, at most
/// [`MAX_VALUE_BYTES`] long.
fn shell_value(raw: &str, vars: &HashMap<String, String>) -> ShellValue {
    let mut out = String::new();
    let mut chars = raw.chars().peekable();
    let mut in_double = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' if !in_double => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => in_double = !in_double,
            '`' => return ShellValue::NeedsShell,
            '\\' => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '$' => match chars.peek() {
                Some('(') => return ShellValue::NeedsShell,
                Some('{') => {
                    chars.next();
                    let mut name = String::new();
                    for c in chars.by_ref() {
                        if c == '}' {
                            break;
                        }
                        name.push(c);
                    }
                    if !is_identifier(&name) {
                        return ShellValue::NeedsShell;
                    }
                    let value = vars.get(&name).map(String::as_str).unwrap_or("");
                    if out.len() + value.len() > MAX_VALUE_BYTES {
                        return ShellValue::TooLong;
                    }
                    out.push_str(value);
                }
                _ => {
                    let mut name = String::new();
                    while let Some(&c) = chars.peek() {
                        if c.is_ascii_alphanumeric() || c == '_' {
                            name.push(c);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if name.is_empty() {
                        out.push('$');
                    } else {
                        let value = vars.get(&name).map(String::as_str).unwrap_or("");
                        if out.len() + value.len() > MAX_VALUE_BYTES {
                            return ShellValue::TooLong;
                        }
                        out.push_str(value);
                    }
                }
            },
            c if !in_double && (c.is_whitespace() || c == ';') => break,
            '#' if !in_double && out.is_empty() => break,
            c => out.push(c),
        }
        if out.len() > MAX_VALUE_BYTES {
            return ShellValue::TooLong;
        }
    }
    ShellValue::Set(out)
}

/// Command-line options httpd understands, as far as they matter here.
#[derive(Debug, Default)]
struct Cmdline {
    binary: Option<String>,
    file: Option<PathBuf>,
    root: Option<PathBuf>,
    defines: Vec<String>,
}

fn parse_cmdline(args: &[String]) -> Cmdline {
    let mut out = Cmdline::default();
    let mut iter = args.iter().peekable();
    if let Some(first) = iter.peek()
        && !first.starts_with('-')
    {
        out.binary = Some((*first).clone());
        iter.next();
    }
    while let Some(arg) = iter.next() {
        let Some(opt) = arg.strip_prefix('-') else {
            continue;
        };
        let mut chars = opt.chars();
        let Some(flag) = chars.next() else {
            continue;
        };
        // Options taking a value (apr_getopt "C:c:D:d:E:e:f:k:").
        if !matches!(flag, 'C' | 'c' | 'D' | 'd' | 'E' | 'e' | 'f' | 'k') {
            continue;
        }
        let attached = chars.as_str();
        let value = if attached.is_empty() {
            iter.next().cloned()
        } else {
            Some(attached.to_string())
        };
        let Some(value) = value else {
            continue;
        };
        match flag {
            'f' => out.file = Some(PathBuf::from(value)),
            'd' => out.root = Some(PathBuf::from(value)),
            'D' => out.defines.push(value),
            _ => {}
        }
    }
    out
}

/// The main config file a running httpd uses: `-f file` (relative to the
/// ServerRoot), `-d serverroot`; without them the binary's compiled-in
/// default: /etc/apache2/apache2.conf if it exists, else
/// /etc/httpd/conf/httpd.conf. `args` may start with the program name.
pub fn config_path_from_cmdline(args: &[String]) -> PathBuf {
    config_path_from_cmdline_in(args, &FsRoot::Host)
}

/// [`config_path_from_cmdline`] for a server that sees `root`: which
/// layout it uses is decided by the files in its own filesystem.
pub fn config_path_from_cmdline_in(args: &[String], root: &FsRoot) -> PathBuf {
    let cmd = parse_cmdline(args);
    let binary_name = cmd
        .binary
        .as_deref()
        .map(|b| b.rsplit('/').next().unwrap_or(b).to_string());
    let httpd_layout = match binary_name.as_deref() {
        Some(name) if name.starts_with("httpd") => true,
        Some(name) if name.starts_with("apache2") => false,
        _ => !root.exists(Path::new(DEBIAN_CONFIG)),
    };
    let root = cmd
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from(if httpd_layout { RHEL_ROOT } else { DEBIAN_ROOT }));
    match cmd.file {
        Some(file) if file.is_absolute() => file,
        Some(file) => root.join(file),
        None if httpd_layout => root.join("conf/httpd.conf"),
        None => root.join("apache2.conf"),
    }
}

/// The [`ApacheOptions`] implied by a command line (`-d`, `-D`); the
/// environment is left empty for the caller to fill.
pub fn options_from_cmdline(args: &[String]) -> ApacheOptions {
    let cmd = parse_cmdline(args);
    ApacheOptions {
        server_root: cmd.root,
        defines: Some(cmd.defines),
        env: HashMap::new(),
        root: FsRoot::Host,
        budget: Default::default(),
    }
}
