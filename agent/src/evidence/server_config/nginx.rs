//! nginx configuration: the server blocks of one installation with their
//! TLS settings, each traced to its file and line.
//!
//! Two passes, like nginx itself: first the whole tree is read with every
//! `include` spliced in place (so a setting written after the `server {}`
//! blocks of its `http {}` still applies to them, as nginx merges contexts
//! only after parsing), then contexts are evaluated main → http/stream →
//! server with inheritance.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::loader::{IncludeKind, Loader, MAX_DIRECTIVES, ReadBudget};
use super::nginx_syntax::{self, Directive};
use super::shown;
use super::{ConfigError, ListenSpec, ServerBlock, ServerConfig, ServerKind, Setting};
use crate::evidence::fsroot::FsRoot;

/// Debian's compiled-in `--conf-path`.
pub const DEFAULT_CONFIG: &str = "/etc/nginx/nginx.conf";
/// Debian's compiled-in `--prefix` (`nginx -V`): relative `-c` and
/// `error_log` paths resolve against it.
pub const DEFAULT_PREFIX: &str = "/usr/share/nginx";

/// Options that come from the command line rather than the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NginxOptions {
    /// `-p prefix`; None = [`DEFAULT_PREFIX`].
    pub prefix: Option<PathBuf>,
    /// The filesystem the server sees (its container's, if it has one).
    pub root: FsRoot,
    /// How much the parse may read, and for how long.
    pub budget: ReadBudget,
}

/// Parses the installation whose main file is `main_file`.
pub fn parse(main_file: &Path) -> Result<ServerConfig, ConfigError> {
    parse_with(main_file, &NginxOptions::default())
}

/// [`parse`] with command-line options.
pub fn parse_with(main_file: &Path, options: &NginxOptions) -> Result<ServerConfig, ConfigError> {
    let mut loader = Loader::in_root(&options.root, options.budget);
    let text = loader.read_main(main_file)?;
    // nginx resolves relative `include` and certificate paths against the
    // directory of the main file (its "conf prefix").
    let conf_dir = main_file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let prefix = options
        .prefix
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX));
    let file: Rc<Path> = Rc::from(main_file);
    let tree = {
        let parsed = nginx_syntax::parse(&text, &file, 0, MAX_DIRECTIVES, keep_directive);
        loader.directives += parsed.stored;
        for (line, message) in parsed.problems {
            loader.problem(main_file, Some(line), message);
        }
        splice(&mut loader, parsed.directives, &conf_dir, 0)
    };
    loader.leave();

    let mut eval = Eval {
        loader: &mut loader,
        conf_dir,
        prefix,
        blocks: Vec::new(),
    };
    eval.context(&tree, &Inherited::default(), Ctx::Main);
    let blocks = eval.blocks;
    let listens = merge_listens(&blocks, &mut loader);

    Ok(loader.into_config(ServerKind::Nginx, main_file, blocks, listens))
}

/// The leaf directives the evaluator reads; everything else is dropped at
/// parse time (blocks are always kept, for their structure and includes).
fn keep_directive(name: &str) -> bool {
    matches!(
        name,
        "include" | "listen" | "server_name" | "ssl" | "error_log"
    ) || name.starts_with("ssl_")
}

/// Replaces every `include` with the directives of the files it names,
/// recursively, in every context (an unreadable include anywhere stops
/// nginx, so it is a problem wherever it is).
fn splice(
    loader: &mut Loader,
    directives: Vec<Directive>,
    conf_dir: &Path,
    nesting: usize,
) -> Vec<Directive> {
    let mut out = Vec::with_capacity(directives.len());
    for mut d in directives {
        if let Some(children) = d.block.take() {
            d.block = Some(splice(loader, children, conf_dir, nesting + 1));
            out.push(d);
            continue;
        }
        if d.name != "include" {
            out.push(d);
            continue;
        }
        let [arg] = d.args.as_slice() else {
            loader.problem(
                &d.file,
                Some(d.line),
                "invalid number of arguments in \"include\" directive",
            );
            continue;
        };
        let pattern = resolve(conf_dir, arg);
        for path in loader.expand(&pattern, IncludeKind::Nginx, &d.file, d.line) {
            let Some(text) = loader.enter(&path, &d.file, d.line) else {
                continue;
            };
            let file: Rc<Path> = Rc::from(path.as_path());
            let budget = MAX_DIRECTIVES.saturating_sub(loader.directives);
            let parsed = nginx_syntax::parse(&text, &file, nesting, budget, keep_directive);
            loader.directives += parsed.stored;
            for (line, message) in parsed.problems {
                loader.problem(&path, Some(line), message);
            }
            let inner = splice(loader, parsed.directives, conf_dir, nesting);
            loader.leave();
            out.extend(inner);
        }
    }
    out
}

fn resolve(base: &Path, arg: &str) -> PathBuf {
    let path = Path::new(arg);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Certificate-like paths: nginx variables (`$ssl_server_name`), inline
/// `data:` and `engine:` keys are kept as written.
fn resolve_cert_path(conf_dir: &Path, arg: &str) -> PathBuf {
    if arg.contains('$') || arg.starts_with("data:") || arg.starts_with("engine:") {
        PathBuf::from(arg)
    } else {
        resolve(conf_dir, arg)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    Main,
    Http,
    Stream,
    HttpServer,
    StreamServer,
}

#[derive(Clone, Debug)]
struct ErrorLog {
    path: Setting<PathBuf>,
    level: Setting<String>,
}

/// Settings in effect in a context: its own, else its parent's.
#[derive(Clone, Debug, Default)]
struct Inherited {
    protocols: Option<Setting<Vec<String>>>,
    ciphers: Option<Setting<String>>,
    certificates: Vec<Setting<PathBuf>>,
    keys: Vec<Setting<PathBuf>>,
    verify_client: Option<Setting<String>>,
    client_ca: Option<Setting<PathBuf>>,
    error_logs: Vec<ErrorLog>,
    ssl_on: Option<Setting<bool>>,
}

const PROTOCOLS: [&str; 6] = ["SSLv2", "SSLv3", "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"];
const VERIFY_CLIENT: [&str; 4] = ["on", "off", "optional", "optional_no_ca"];
/// nginx log levels, most verbose first.
const LEVELS: [&str; 8] = [
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
];

fn setting<T>(d: &Directive, value: T) -> Setting<T> {
    Setting {
        value,
        file: d.file.to_path_buf(),
        line: d.line,
    }
}

struct Eval<'a> {
    loader: &'a mut Loader,
    conf_dir: PathBuf,
    prefix: PathBuf,
    blocks: Vec<ServerBlock>,
}

impl Eval<'_> {
    fn problem(&mut self, d: &Directive, message: String) {
        self.loader.problem(&d.file, Some(d.line), message);
    }

    fn context(&mut self, directives: &[Directive], parent: &Inherited, ctx: Ctx) {
        let own = self.settings(directives, parent, ctx);
        for d in directives {
            let Some(children) = &d.block else {
                continue;
            };
            match (ctx, d.name.as_str()) {
                (Ctx::Main, "http") => self.context(children, &own, Ctx::Http),
                (Ctx::Main, "stream") => self.context(children, &own, Ctx::Stream),
                (Ctx::Http, "server") => self.server(d, children, &own, Ctx::HttpServer),
                (Ctx::Stream, "server") => self.server(d, children, &own, Ctx::StreamServer),
                (Ctx::Main, "server") => self.problem(
                    d,
                    "\"server\" directive is not allowed here (outside http/stream): nginx refuses the config".to_string(),
                ),
                // events, location, upstream, map, mail, ...: nothing TLS-relevant
                // for an inbound handshake.
                _ => {}
            }
        }
    }

    /// The context's own leaf settings layered over `parent`'s.
    fn settings(&mut self, directives: &[Directive], parent: &Inherited, ctx: Ctx) -> Inherited {
        let mut s = parent.clone();
        let mut seen: HashSet<&str> = HashSet::new();
        for d in directives.iter().filter(|d| d.block.is_none()) {
            let name = d.name.as_str();
            let tls = name.starts_with("ssl_") || name == "ssl";
            if tls && ctx == Ctx::Main {
                self.problem(
                    d,
                    format!(
                        "{} is not allowed here (main context): nginx refuses the config",
                        shown::nginx_directive(name)
                    ),
                );
                continue;
            }
            let first_here = seen.insert(name);
            match name {
                "ssl_protocols" => {
                    if d.args.is_empty() {
                        self.problem(d, "invalid number of arguments in \"ssl_protocols\"".into());
                        continue;
                    }
                    let mut values = Vec::new();
                    for (i, arg) in d.args.iter().enumerate() {
                        match PROTOCOLS.iter().find(|p| p.eq_ignore_ascii_case(arg)) {
                            Some(p) => values.push(p.to_string()),
                            None => self.problem(
                                d,
                                format!(
                                    "invalid value (argument {}) in \"ssl_protocols\": nginx refuses the config",
                                    i + 1
                                ),
                            ),
                        }
                    }
                    if first_here {
                        s.protocols = Some(setting(d, values));
                    } else if let Some(existing) = s.protocols.as_mut() {
                        // nginx ORs a repeated bitmask directive into the first.
                        self.problem(
                            d,
                            format!(
                                "\"ssl_protocols\" repeated in one context: nginx enables the union with {}",
                                existing.location()
                            ),
                        );
                        for v in values {
                            if !existing.value.contains(&v) {
                                existing.value.push(v);
                            }
                        }
                    }
                }
                "ssl_ciphers" => {
                    if let Some(arg) = self.single(d, first_here) {
                        s.ciphers = Some(setting(d, arg));
                    }
                }
                "ssl_certificate" | "ssl_certificate_key" => {
                    if let Some(arg) = self.single(d, true) {
                        let list = if name == "ssl_certificate" {
                            &mut s.certificates
                        } else {
                            &mut s.keys
                        };
                        // Arrays are not merged: a context that names
                        // certificates replaces the inherited ones.
                        if first_here {
                            list.clear();
                        }
                        list.push(setting(d, resolve_cert_path(&self.conf_dir, &arg)));
                    }
                }
                "ssl_verify_client" => {
                    if let Some(arg) = self.single(d, first_here) {
                        if !VERIFY_CLIENT.contains(&arg.as_str()) {
                            self.problem(
                                d,
                                "invalid value in \"ssl_verify_client\" (on, off, optional or optional_no_ca): nginx refuses the config".to_string(),
                            );
                        }
                        s.verify_client = Some(setting(d, arg));
                    }
                }
                "ssl_client_certificate" => {
                    if let Some(arg) = self.single(d, first_here) {
                        s.client_ca = Some(setting(d, resolve_cert_path(&self.conf_dir, &arg)));
                    }
                }
                "ssl" => {
                    if !matches!(ctx, Ctx::Http | Ctx::HttpServer) {
                        self.problem(d, "\"ssl\" directive is not allowed here".into());
                    } else if let Some(arg) = self.single(d, first_here) {
                        match arg.as_str() {
                            "on" => s.ssl_on = Some(setting(d, true)),
                            "off" => s.ssl_on = Some(setting(d, false)),
                            _ => self.problem(
                                d,
                                "invalid value in \"ssl\", it must be \"on\" or \"off\""
                                    .to_string(),
                            ),
                        }
                    }
                }
                "error_log" => {
                    let Some(log) = self.error_log(d) else {
                        continue;
                    };
                    // A context with its own error_log does not inherit any.
                    if first_here {
                        s.error_logs.clear();
                    }
                    s.error_logs.push(log);
                }
                _ => {}
            }
        }
        s
    }

    /// The one argument of a single-valued directive; a repeat in the same
    /// context (`allow_repeat` false) is nginx's "is duplicate" error.
    fn single(&mut self, d: &Directive, allow_repeat: bool) -> Option<String> {
        if !allow_repeat {
            self.problem(
                d,
                format!(
                    "\"{}\" directive is duplicate: nginx refuses the config",
                    d.name
                ),
            );
            return None;
        }
        match d.args.as_slice() {
            [arg] => Some(arg.clone()),
            _ => {
                self.problem(
                    d,
                    format!("invalid number of arguments in \"{}\" directive", d.name),
                );
                None
            }
        }
    }

    fn error_log(&mut self, d: &Directive) -> Option<ErrorLog> {
        let Some(target) = d.args.first() else {
            self.problem(d, "invalid number of arguments in \"error_log\"".into());
            return None;
        };
        let path =
            if target == "stderr" || target.starts_with("syslog:") || target.starts_with("memory:")
            {
                PathBuf::from(target)
            } else {
                // nginx resolves error_log against the prefix, not the conf dir.
                resolve(&self.prefix, target)
            };
        let level = match d.args.get(1) {
            None => "error".to_string(),
            Some(l) if l.starts_with("debug_") => "debug".to_string(),
            Some(l) => {
                let l = l.to_ascii_lowercase();
                if !LEVELS.contains(&l.as_str()) {
                    self.problem(
                        d,
                        "invalid log level in \"error_log\": nginx refuses the config".to_string(),
                    );
                }
                l
            }
        };
        Some(ErrorLog {
            path: setting(d, path),
            level: setting(d, level),
        })
    }

    fn server(&mut self, d: &Directive, children: &[Directive], parent: &Inherited, ctx: Ctx) {
        let s = self.settings(children, parent, ctx);
        let mut block = ServerBlock::new(ServerKind::Nginx, d.file.to_path_buf(), d.line);
        for c in children.iter().filter(|c| c.block.is_none()) {
            match c.name.as_str() {
                "listen" => block.listens.extend(self.listen(c, ctx)),
                "server_name" => block
                    .server_names
                    .extend(c.args.iter().map(|a| setting(c, a.clone()))),
                _ => {}
            }
        }
        if block.listens.is_empty() && ctx == Ctx::HttpServer {
            // No listen: nginx uses *:80 (*:8000 when not started as root;
            // masters run as root in practice).
            block.listens.push(ListenSpec {
                addr: None,
                port: 80,
                ssl: false,
                default_server: false,
                file: block.file.clone(),
                line: block.line,
            });
        }
        if s.ssl_on.as_ref().is_some_and(|on| on.value) {
            // The pre-1.25 `ssl on;` makes the server's connections TLS
            // whatever its listens say.
            for listen in &mut block.listens {
                listen.ssl = true;
            }
        }
        let mut certificates = s.certificates.into_iter();
        block.certificate = certificates.next();
        block.extra_certificates = certificates.collect();
        let mut keys = s.keys.into_iter();
        block.certificate_key = keys.next();
        block.extra_certificate_keys = keys.collect();
        block.protocols = s.protocols;
        block.ciphers = s.ciphers;
        block.verify_client = s.verify_client;
        block.client_ca = s.client_ca;
        // Several error_logs all receive messages; the most verbose one is
        // the one that shows handshake failures.
        let mut best: Option<(usize, ErrorLog)> = None;
        for log in s.error_logs {
            let rank = LEVELS
                .iter()
                .position(|l| *l == log.level.value)
                .unwrap_or(LEVELS.len());
            if best.as_ref().is_none_or(|(r, _)| rank < *r) {
                best = Some((rank, log));
            }
        }
        if let Some((_, log)) = best {
            block.error_log = Some(log.path);
            block.log_level = Some(log.level);
        }
        self.blocks.push(block);
    }

    fn listen(&mut self, d: &Directive, ctx: Ctx) -> Vec<ListenSpec> {
        let Some((spec, params)) = d.args.split_first() else {
            self.problem(d, "invalid number of arguments in \"listen\"".into());
            return Vec::new();
        };
        if ctx == Ctx::StreamServer && params.iter().any(|p| p == "udp") {
            return Vec::new();
        }
        let (addrs, port) = match parse_listen_address(spec) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Vec::new(), // unix: socket
            Err(message) => {
                self.problem(d, format!("listen: {message}"));
                return Vec::new();
            }
        };
        let ssl = params.iter().any(|p| p == "ssl");
        // `default` is the pre-0.8.21 spelling nginx still accepts.
        let default_server = params
            .iter()
            .any(|p| p == "default_server" || p == "default");
        addrs
            .into_iter()
            .map(|addr| ListenSpec {
                addr,
                port,
                ssl,
                default_server,
                file: d.file.to_path_buf(),
                line: d.line,
            })
            .collect()
    }
}

type ListenAddress = (Vec<Option<IpAddr>>, u16);

/// `443`, `*:443`, `127.0.0.1:8443`, `[::]:443`, `[::1]`, `localhost:443`,
/// `127.0.0.1` (port 80). Ok(None) for `unix:` sockets.
fn parse_listen_address(spec: &str) -> Result<Option<ListenAddress>, String> {
    if spec.starts_with("unix:") {
        return Ok(None);
    }
    let parse_port = |p: &str| -> Result<u16, String> {
        match p.parse::<u16>() {
            Ok(port) if port > 0 => Ok(port),
            _ => Err("invalid port".to_string()),
        }
    };
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "unterminated IPv6 address".to_string())?;
        let addr: Ipv6Addr = host
            .parse()
            .map_err(|_| "invalid IPv6 address".to_string())?;
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => 80,
            None => return Err("garbage after IPv6 address".into()),
        };
        return Ok(Some((vec![Some(IpAddr::V6(addr))], port)));
    }
    if spec.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Some((vec![None], parse_port(spec)?)));
    }
    let (host, port) = match spec.rsplit_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (spec, 80),
    };
    let addrs = if host == "*" {
        vec![None]
    } else if let Ok(v4) = host.parse::<Ipv4Addr>() {
        vec![Some(IpAddr::V4(v4))]
    } else if host.eq_ignore_ascii_case("localhost") {
        // nginx resolves the name at startup and binds every address
        // (/etc/hosts: 127.0.0.1 and ::1).
        vec![
            Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ]
    } else {
        // Resolving would mean DNS from inside a diagnosis; say so instead.
        return Err(
            "a host name is resolved by nginx at startup; the agent does not resolve it, listen ignored"
                .to_string(),
        );
    };
    Ok(Some((addrs, port)))
}

/// One entry per distinct address:port, flags OR-ed the way nginx merges
/// the listen options of several servers onto one socket; a second
/// `default_server` for the same address:port is nginx's fatal "a
/// duplicate default server".
fn merge_listens(blocks: &[ServerBlock], loader: &mut Loader) -> Vec<ListenSpec> {
    let mut out: Vec<ListenSpec> = Vec::new();
    for block in blocks {
        let mut own: HashSet<(Option<IpAddr>, u16)> = HashSet::new();
        for listen in &block.listens {
            let key = (listen.addr, listen.port);
            let first_in_block = own.insert(key);
            match out.iter_mut().find(|l| (l.addr, l.port) == key) {
                Some(existing) => {
                    if listen.default_server && existing.default_server && first_in_block {
                        loader.problem(
                            &listen.file,
                            Some(listen.line),
                            format!(
                                "a duplicate default server for {} (first at {}:{}): nginx refuses the config",
                                show_addr(listen),
                                existing.file.display(),
                                existing.line
                            ),
                        );
                    }
                    existing.ssl |= listen.ssl;
                    existing.default_server |= listen.default_server;
                }
                None => out.push(listen.clone()),
            }
        }
    }
    out
}

fn show_addr(listen: &ListenSpec) -> String {
    match listen.addr {
        None => format!("*:{}", listen.port),
        Some(IpAddr::V6(a)) => format!("[{a}]:{}", listen.port),
        Some(IpAddr::V4(a)) => format!("{a}:{}", listen.port),
    }
}

/// The main config file a running nginx uses, from its original arguments
/// (`-c file`, `-p prefix`; `-c` relative to the prefix), default
/// [`DEFAULT_CONFIG`]. `args` may start with the program name.
pub fn config_path_from_cmdline(args: &[String]) -> PathBuf {
    let (conf, prefix) = cmdline_options(args);
    match conf {
        Some(conf) if conf.is_absolute() => conf,
        Some(conf) => prefix
            .unwrap_or_else(|| PathBuf::from(DEFAULT_PREFIX))
            .join(conf),
        None => PathBuf::from(DEFAULT_CONFIG),
    }
}

/// The [`NginxOptions`] implied by a command line.
pub fn options_from_cmdline(args: &[String]) -> NginxOptions {
    NginxOptions {
        prefix: cmdline_options(args).1,
        root: FsRoot::Host,
        budget: Default::default(),
    }
}

/// (`-c`, `-p`) as nginx's `ngx_get_options` reads them: flags may be
/// bundled (`-tc file`), a value may be attached (`-cfile`) or follow.
fn cmdline_options(args: &[String]) -> (Option<PathBuf>, Option<PathBuf>) {
    let mut conf = None;
    let mut prefix = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let Some(flags) = arg.strip_prefix('-') else {
            continue; // program name or stray word
        };
        for (i, flag) in flags.char_indices() {
            if !matches!(flag, 'c' | 'p' | 'g' | 'e' | 's') {
                continue; // -t -T -q -v -V -h -?
            }
            let attached = flags.get(i + flag.len_utf8()..).unwrap_or("");
            let value = if attached.is_empty() {
                iter.next().cloned()
            } else {
                Some(attached.to_string())
            };
            match flag {
                'c' => conf = value.map(PathBuf::from),
                'p' => prefix = value.map(PathBuf::from),
                _ => {}
            }
            break;
        }
    }
    (conf, prefix)
}
