//! apache2/httpd configuration: the `<VirtualHost>` blocks of one
//! installation with their TLS settings, each traced to its file and line.
//!
//! Unlike nginx, httpd evaluates `Define`, `${VAR}`, `<IfModule>` and
//! `Include` in file order while it reads, so the walk here is in order too.
//! Server-wide settings (outside any vhost) are merged into the vhosts at
//! the end, as httpd does after reading everything (`ap_fixup_virtual_hosts`),
//! so a global `SSLProtocol` written after a vhost still applies to it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub use super::apache_env::{
    Envvars, MAX_TOTAL_BYTES, MAX_VALUE_BYTES, config_path_from_cmdline,
    config_path_from_cmdline_in, options_from_cmdline, parse_envvars,
};
use super::apache_syntax::{self, Node};
use super::apache_values::{parse_address, protocol_set};
use super::loader::{self, IncludeKind, Loader, MAX_DIRECTIVES, ReadBudget};
use super::shown;
use super::{ConfigError, ListenSpec, ServerBlock, ServerConfig, ServerKind, Setting};
use crate::evidence::fsroot::FsRoot;

/// Debian's main file and ServerRoot.
pub const DEBIAN_CONFIG: &str = "/etc/apache2/apache2.conf";
pub const DEBIAN_ROOT: &str = "/etc/apache2";
/// RHEL's main file and ServerRoot.
pub const RHEL_CONFIG: &str = "/etc/httpd/conf/httpd.conf";
pub const RHEL_ROOT: &str = "/etc/httpd";

/// Options that come from the command line or the environment rather than
/// the files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApacheOptions {
    /// `-d serverroot`; None = derived from the main file's location.
    pub server_root: Option<PathBuf>,
    /// `-D NAME` parameters, when the command line is known. None = unknown:
    /// then `<IfDefine NAME>` for a name not `Define`d is taken as active.
    pub defines: Option<Vec<String>>,
    /// The server's environment (from /proc/PID/environ); wins over
    /// variables read from the `envvars` file.
    pub env: HashMap<String, String>,
    /// The filesystem the server sees (its container's, if it has one).
    pub root: FsRoot,
    /// How much the parse may read, and for how long.
    pub budget: ReadBudget,
}

/// Parses the installation whose main file is `main_file`.
pub fn parse(main_file: &Path) -> Result<ServerConfig, ConfigError> {
    parse_with(main_file, &ApacheOptions::default())
}

/// [`parse`] with command-line options.
pub fn parse_with(main_file: &Path, options: &ApacheOptions) -> Result<ServerConfig, ConfigError> {
    let mut loader = Loader::in_root(&options.root, options.budget);
    let text = loader.read_main(main_file)?;
    let server_root = options
        .server_root
        .clone()
        .unwrap_or_else(|| default_server_root(main_file));

    // Debian starts httpd through apache2ctl, which sources `envvars` into
    // the environment the config's ${APACHE_LOG_DIR} etc. come from. Read
    // (never execute) it; the live process environment wins.
    let mut env = HashMap::new();
    for candidate in envvars_candidates(main_file, &server_root) {
        if let Ok(text) = loader.read_counted(&candidate, main_file, None) {
            loader.record_file(&candidate);
            let envvars = parse_envvars(&text);
            for (line, message) in envvars.skipped {
                loader.problem(&candidate, Some(line), message);
            }
            env.extend(envvars.vars);
            break;
        }
    }
    env.extend(options.env.iter().map(|(k, v)| (k.clone(), v.clone())));

    let mut walker = Walker {
        loader: &mut loader,
        server_root: server_root.clone(),
        defines: HashMap::new(),
        defines_bytes: 0,
        cmdline_defines: options
            .defines
            .as_ref()
            .map(|d| d.iter().cloned().collect()),
        env,
        modules: HashSet::new(),
        modules_known: false,
        undefined_reported: HashSet::new(),
        global: Scope::default(),
        vhosts: Vec::new(),
        listens: Vec::new(),
        nesting: 0,
    };
    walker.prescan_mods_enabled();
    let file: Rc<Path> = Rc::from(main_file);
    let parsed = apache_syntax::parse(&text, &file, 0, MAX_DIRECTIVES);
    walker.loader.directives += parsed.stored;
    for (line, message) in parsed.problems {
        walker.loader.problem(main_file, Some(line), message);
    }
    walker.walk(&parsed.nodes, None, true);
    walker.loader.leave();

    let (blocks, listens) = walker.finish();
    Ok(loader.into_config(ServerKind::Apache, main_file, blocks, listens))
}

/// httpd's compiled-in ServerRoot for the layout the main file sits in:
/// `/etc/httpd` for `/etc/httpd/conf/httpd.conf`, else the file's directory
/// (`/etc/apache2` on Debian). A `ServerRoot` directive overrides it.
fn default_server_root(main_file: &Path) -> PathBuf {
    let dir = main_file.parent().unwrap_or(Path::new("/"));
    if dir.file_name().is_some_and(|n| n == "conf")
        && let Some(parent) = dir.parent()
    {
        return parent.to_path_buf();
    }
    dir.to_path_buf()
}

fn envvars_candidates(main_file: &Path, server_root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(dir) = main_file.parent() {
        out.push(dir.join("envvars"));
    }
    let root = server_root.join("envvars");
    if !out.contains(&root) {
        out.push(root);
    }
    out
}

/// TLS settings of one scope (server-wide or one vhost), as set there.
#[derive(Clone, Debug, Default)]
struct Scope {
    ssl_engine: Option<Setting<String>>,
    certificates: Vec<Setting<PathBuf>>,
    keys: Vec<Setting<PathBuf>>,
    chain: Option<Setting<PathBuf>>,
    protocols: Option<Setting<Vec<String>>>,
    ciphers: Option<Setting<String>>,
    verify_client: Option<Setting<String>>,
    client_ca: Option<Setting<PathBuf>>,
    client_ca_is_file: bool,
    error_log: Option<Setting<PathBuf>>,
    level_base: Option<Setting<String>>,
    level_ssl: Option<Setting<String>>,
    server_name: Option<Setting<String>>,
    aliases: Vec<Setting<String>>,
}

#[derive(Debug)]
struct Vhost {
    file: PathBuf,
    line: u32,
    listens: Vec<ListenSpec>,
    scope: Scope,
}

/// Modules compiled into Debian's and RHEL's httpd (`apache2 -l`): always loaded.
const BUILTIN_MODULES: [&str; 9] = [
    "core",
    "so",
    "watchdog",
    "http_core",
    "http",
    "log_config",
    "logio",
    "version",
    "unixd",
];

/// `mod_ssl.c`, `ssl_module`, `mod_ssl.so` → `ssl`.
fn module_key(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name).to_string();
    let name = name
        .strip_suffix(".c")
        .or_else(|| name.strip_suffix(".so"))
        .unwrap_or(&name);
    let name = name.strip_prefix("mod_").unwrap_or(name);
    name.strip_suffix("_module").unwrap_or(name).to_string()
}

struct Walker<'a> {
    loader: &'a mut Loader,
    server_root: PathBuf,
    defines: HashMap<String, String>,
    /// Bytes of all `Define` values, against [`MAX_TOTAL_BYTES`].
    defines_bytes: usize,
    cmdline_defines: Option<HashSet<String>>,
    env: HashMap<String, String>,
    modules: HashSet<String>,
    /// Whether any module list was seen; until then `<IfModule>` is unknowable.
    modules_known: bool,
    undefined_reported: HashSet<String>,
    global: Scope,
    vhosts: Vec<Vhost>,
    listens: Vec<ListenSpec>,
    /// Section nesting of the current position, across includes.
    nesting: usize,
}

fn setting<T>(value: T, file: &Path, line: u32) -> Setting<T> {
    Setting {
        value,
        file: file.to_path_buf(),
        line,
    }
}

impl Walker<'_> {
    /// Debian enables modules by symlinking `*.load` files into
    /// `mods-enabled`; knowing them up front lets `<IfModule>` be decided
    /// even where it precedes the `IncludeOptional mods-enabled/*.load`.
    fn prescan_mods_enabled(&mut self) {
        let pattern = self.server_root.join("mods-enabled").join("*.load");
        let Some(pattern) = pattern.to_str() else {
            return;
        };
        let Ok(paths) = self.loader.root.glob(pattern, glob::MatchOptions::new()) else {
            return;
        };
        for path in paths.into_iter().flatten().take(loader::MAX_FILES) {
            let Ok(text) = self.loader.read_counted(&path, &path, None) else {
                continue;
            };
            for line in text.lines() {
                let (words, _) = apache_syntax::split_args(line);
                if let [directive, id, ..] = words.as_slice()
                    && directive.eq_ignore_ascii_case("LoadModule")
                {
                    self.modules.insert(module_key(id));
                    self.modules_known = true;
                }
            }
        }
    }

    fn problem(&mut self, file: &Path, line: u32, message: String) {
        self.loader.problem(file, Some(line), message);
    }

    fn walk(&mut self, nodes: &[Node], vhost: Option<usize>, collect: bool) {
        for node in nodes {
            match node {
                Node::Directive {
                    name,
                    args,
                    file,
                    line,
                } => self.directive(name, args, file, *line, vhost, collect),
                Node::Section {
                    name,
                    args,
                    file,
                    line,
                    children,
                } => {
                    let args = self.substitute(args, file, *line);
                    let arg = args.trim();
                    let active = match name.to_ascii_lowercase().as_str() {
                        "ifmodule" => self.if_module(arg),
                        "ifdefine" => self.if_define(arg),
                        "iffile" => self.if_file(arg),
                        // Unknowable from the files (httpd version, which
                        // directives exist): assume active.
                        "ifversion" | "ifdirective" | "ifsection" => true,
                        "virtualhost" => {
                            if vhost.is_some() {
                                self.problem(
                                    file,
                                    *line,
                                    "<VirtualHost> cannot nest inside another <VirtualHost>: httpd refuses the config".into(),
                                );
                            } else {
                                let index = self.vhost(arg, file, *line);
                                self.nesting += 1;
                                self.walk(children, Some(index), collect);
                                self.nesting -= 1;
                            }
                            continue;
                        }
                        // A macro body is a template, not config, until `Use`d.
                        "macro" => continue,
                        _ => {
                            // <Directory>, <Location>, <Files>, <If>, ...:
                            // per-request scopes. Their includes and defines
                            // still count; their settings do not apply to the
                            // handshake.
                            self.nesting += 1;
                            self.walk(children, vhost, false);
                            self.nesting -= 1;
                            continue;
                        }
                    };
                    if active {
                        self.nesting += 1;
                        self.walk(children, vhost, collect);
                        self.nesting -= 1;
                    }
                }
            }
        }
    }

    fn if_module(&self, arg: &str) -> bool {
        let (negated, name) = match arg.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, arg),
        };
        if !self.modules_known {
            return true;
        }
        let key = module_key(name);
        let loaded = self.modules.contains(&key) || BUILTIN_MODULES.contains(&key.as_str());
        loaded != negated
    }

    fn if_define(&self, arg: &str) -> bool {
        let (negated, name) = match arg.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, arg),
        };
        let defined = self.defines.contains_key(name)
            || self
                .cmdline_defines
                .as_ref()
                .is_some_and(|d| d.contains(name));
        if defined {
            !negated
        } else {
            // Not defined in the files: with the command line known that
            // settles it; otherwise a -D we cannot see may define it.
            negated || self.cmdline_defines.is_none()
        }
    }

    fn if_file(&self, arg: &str) -> bool {
        let (negated, name) = match arg.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, arg),
        };
        let (words, _) = apache_syntax::split_args(name);
        let Some(path) = words.first() else {
            return true;
        };
        self.loader.root.exists(&self.resolve(path)) != negated
    }

    fn resolve(&self, arg: &str) -> PathBuf {
        let path = Path::new(arg);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.server_root.join(path)
        }
    }

    /// httpd's `${NAME}` substitution: `Define`d names first, then the
    /// environment. An undefined name stays as written (httpd warns AH00111
    /// and does the same), which usually breaks the path it is in. So does a
    /// value that would take the line past [`MAX_VALUE_BYTES`] (httpd itself
    /// refuses lines past 8 KiB), reported once per line.
    fn substitute(&mut self, text: &str, file: &Path, line: u32) -> String {
        if !text.contains("${") {
            return text.to_string();
        }
        let limit = MAX_VALUE_BYTES.max(text.len());
        let mut too_long_reported = false;
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(rest.get(..start).unwrap_or(""));
            let after = rest.get(start + 2..).unwrap_or("");
            let Some(end) = after.find('}') else {
                out.push_str(rest.get(start..).unwrap_or(""));
                rest = "";
                break;
            };
            let name = after.get(..end).unwrap_or("");
            match self.defines.get(name).or_else(|| self.env.get(name)) {
                Some(value) if out.len() + value.len() + rest.len() <= limit => out.push_str(value),
                Some(_) => {
                    if !too_long_reported {
                        too_long_reported = true;
                        self.problem(
                            file,
                            line,
                            format!(
                                "expanding ${{{name}}} would make the line longer than {} KiB \
                                 (left as written)",
                                MAX_VALUE_BYTES / 1024
                            ),
                        );
                    }
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                }
                None => {
                    if self.undefined_reported.insert(name.to_string()) {
                        self.problem(
                            file,
                            line,
                            "a config variable (${...}) is not defined (left as written)"
                                .to_string(),
                        );
                    }
                    out.push_str("${");
                    out.push_str(name);
                    out.push('}');
                }
            }
            rest = after.get(end + 1..).unwrap_or("");
        }
        out.push_str(rest);
        out
    }

    fn scope(&mut self, vhost: Option<usize>) -> &mut Scope {
        match vhost.and_then(|i| self.vhosts.get_mut(i)) {
            Some(v) => &mut v.scope,
            None => &mut self.global,
        }
    }

    fn directive(
        &mut self,
        name: &str,
        raw_args: &str,
        file: &Path,
        line: u32,
        vhost: Option<usize>,
        collect: bool,
    ) {
        let args = self.substitute(raw_args, file, line);
        let (words, unterminated) = apache_syntax::split_args(&args);
        if unterminated {
            self.problem(
                file,
                line,
                format!(
                    "{}: unterminated quote (httpd takes the rest of the line)",
                    shown::apache_directive(name)
                ),
            );
        }
        let lname = name.to_ascii_lowercase();
        let first = words.first().cloned();
        match lname.as_str() {
            "serverroot" => {
                if let Some(root) = first {
                    self.server_root = PathBuf::from(root);
                }
                return;
            }
            "define" => {
                if let Some(var) = first {
                    let value = words.get(1).cloned().unwrap_or_default();
                    // Counted as name + value per entry; a redefinition
                    // replaces its old entry.
                    let old = self.defines.get(&var).map_or(0, |v| var.len() + v.len());
                    let total = self.defines_bytes - old + var.len() + value.len();
                    if total > MAX_TOTAL_BYTES {
                        self.problem(
                            file,
                            line,
                            format!(
                                "Define {var} ignored: all defined values would exceed {} KiB",
                                MAX_TOTAL_BYTES / 1024
                            ),
                        );
                        return;
                    }
                    self.defines_bytes = total;
                    self.defines.insert(var, value);
                }
                return;
            }
            "undefine" => {
                if let Some(var) = first
                    && let Some(old) = self.defines.remove(&var)
                {
                    self.defines_bytes -= var.len() + old.len();
                }
                return;
            }
            "loadmodule" => {
                if let [id, path, ..] = words.as_slice() {
                    self.modules.insert(module_key(id));
                    self.modules.insert(module_key(path));
                    self.modules_known = true;
                }
                return;
            }
            "include" | "includeoptional" => {
                let kind = if lname == "include" {
                    IncludeKind::ApacheInclude
                } else {
                    IncludeKind::ApacheOptional
                };
                for word in &words {
                    self.include(word, kind, file, line, vhost, collect);
                }
                return;
            }
            "listen" => {
                if vhost.is_some() {
                    self.problem(
                        file,
                        line,
                        "Listen cannot occur within <VirtualHost> section: httpd refuses the config".into(),
                    );
                } else if let Some(spec) = first {
                    self.listen(&spec, file, line);
                }
                return;
            }
            _ => {}
        }
        if !collect {
            return;
        }
        let Some(first) = first else {
            if lname.starts_with("ssl")
                || matches!(lname.as_str(), "errorlog" | "loglevel" | "servername")
            {
                self.problem(
                    file,
                    line,
                    format!("{} takes an argument", shown::apache_directive(name)),
                );
            }
            return;
        };
        self.block_setting(&lname, words, first, file, line, vhost);
    }

    /// A directive that sets something of the current scope (the server or
    /// a `<VirtualHost>`): certificates, protocols, ciphers, client
    /// verification, logs, names.
    fn block_setting(
        &mut self,
        lname: &str,
        words: Vec<String>,
        first: String,
        file: &Path,
        line: u32,
        vhost: Option<usize>,
    ) {
        let path = self.resolve(&first);
        match lname {
            "sslengine" => {
                let value = first.to_ascii_lowercase();
                // `SSLEngine addr:port ...` (2.4.30+) is a server-wide
                // address list; kept as written, it does not read as "on".
                if !matches!(value.as_str(), "on" | "off" | "optional") && !value.contains(':') {
                    self.problem(
                        file,
                        line,
                        "SSLEngine: invalid value (on, off or optional)".to_string(),
                    );
                }
                self.scope(vhost).ssl_engine = Some(setting(value, file, line));
            }
            "sslcertificatefile" => self
                .scope(vhost)
                .certificates
                .push(setting(path, file, line)),
            "sslcertificatekeyfile" => self.scope(vhost).keys.push(setting(path, file, line)),
            "sslcertificatechainfile" => self.scope(vhost).chain = Some(setting(path, file, line)),
            "sslprotocol" => {
                let (_, warnings) = protocol_set(&words);
                for warning in warnings {
                    self.problem(file, line, warning);
                }
                self.scope(vhost).protocols = Some(setting(words, file, line));
            }
            "sslciphersuite" => {
                // `SSLCipherSuite [protocol] spec`: the TLSv1.3 suites are a
                // separate list; `SSL` (or none) is the TLS <= 1.2 one.
                // Kept as written: mod_ssl itself prepends "!aNULL:!eNULL:!EXP:".
                let spec = match words.as_slice() {
                    [spec] => Some(spec.clone()),
                    [proto, spec, ..] if proto.eq_ignore_ascii_case("SSL") => Some(spec.clone()),
                    _ => None,
                };
                if let Some(spec) = spec {
                    self.scope(vhost).ciphers = Some(setting(spec, file, line));
                }
            }
            "sslverifyclient" => {
                self.scope(vhost).verify_client =
                    Some(setting(first.to_ascii_lowercase(), file, line));
            }
            "sslcacertificatefile" => {
                let scope = self.scope(vhost);
                scope.client_ca = Some(setting(path, file, line));
                scope.client_ca_is_file = true;
            }
            "sslcacertificatepath" => {
                let scope = self.scope(vhost);
                if !scope.client_ca_is_file {
                    scope.client_ca = Some(setting(path, file, line));
                }
            }
            "errorlog" => {
                let target = if first.starts_with('|') || first.starts_with("syslog") {
                    PathBuf::from(&first)
                } else {
                    path
                };
                self.scope(vhost).error_log = Some(setting(target, file, line));
            }
            "loglevel" => {
                for word in &words {
                    let word = word.to_ascii_lowercase();
                    match word.split_once(':') {
                        Some((module, level)) => {
                            if module_key(module) == "ssl" {
                                self.scope(vhost).level_ssl =
                                    Some(setting(level.to_string(), file, line));
                            }
                        }
                        None => {
                            // A plain level resets every per-module level
                            // (mod_core docs for LogLevel).
                            let scope = self.scope(vhost);
                            scope.level_base = Some(setting(word, file, line));
                            scope.level_ssl = None;
                        }
                    }
                }
            }
            "servername" => self.scope(vhost).server_name = Some(setting(first, file, line)),
            "serveralias" => {
                let aliases: Vec<Setting<String>> =
                    words.into_iter().map(|w| setting(w, file, line)).collect();
                self.scope(vhost).aliases.extend(aliases);
            }
            _ => {}
        }
    }

    fn include(
        &mut self,
        word: &str,
        kind: IncludeKind,
        file: &Path,
        line: u32,
        vhost: Option<usize>,
        collect: bool,
    ) {
        let pattern = self.resolve(word);
        for path in self.loader.expand(&pattern, kind, file, line) {
            let Some(text) = self.loader.enter(&path, file, line) else {
                continue;
            };
            let rc: Rc<Path> = Rc::from(path.as_path());
            let budget = MAX_DIRECTIVES.saturating_sub(self.loader.directives);
            let parsed = apache_syntax::parse(&text, &rc, self.nesting, budget);
            self.loader.directives += parsed.stored;
            for (l, message) in parsed.problems {
                self.loader.problem(&path, Some(l), message);
            }
            self.walk(&parsed.nodes, vhost, collect);
            self.loader.leave();
        }
    }

    fn listen(&mut self, spec: &str, file: &Path, line: u32) {
        match parse_address(spec, false) {
            Ok((addrs, port)) => {
                for addr in addrs {
                    self.listens.push(ListenSpec {
                        addr,
                        port,
                        ssl: false,
                        default_server: false,
                        file: file.to_path_buf(),
                        line,
                    });
                }
            }
            Err(message) => self.problem(file, line, format!("Listen: {message}")),
        }
    }

    fn vhost(&mut self, args: &str, file: &Path, line: u32) -> usize {
        let (words, _) = apache_syntax::split_args(args);
        let mut listens = Vec::new();
        for word in &words {
            match parse_address(word, true) {
                Ok((addrs, port)) => listens.extend(addrs.into_iter().map(|addr| ListenSpec {
                    addr,
                    port,
                    ssl: false,
                    default_server: false,
                    file: file.to_path_buf(),
                    line,
                })),
                Err(message) => {
                    self.problem(file, line, format!("<VirtualHost>: {message}"));
                }
            }
        }
        if words.is_empty() {
            self.problem(
                file,
                line,
                "<VirtualHost> requires at least one address".into(),
            );
        }
        self.vhosts.push(Vhost {
            file: file.to_path_buf(),
            line,
            listens,
            scope: Scope::default(),
        });
        self.vhosts.len() - 1
    }

    /// Vhosts merged with the server-wide scope, and the global listens.
    fn finish(self) -> (Vec<ServerBlock>, Vec<ListenSpec>) {
        let global = self.global;
        let mut blocks = Vec::new();
        for vhost in self.vhosts {
            let s = vhost.scope;
            let mut block = ServerBlock::new(ServerKind::Apache, vhost.file, vhost.line);
            let engine = s.ssl_engine.or_else(|| global.ssl_engine.clone());
            let tls = engine.as_ref().is_some_and(|e| e.value == "on");
            block.listens = vhost
                .listens
                .into_iter()
                .map(|mut l| {
                    l.ssl = tls;
                    l
                })
                .collect();
            // A vhost without ServerName takes the server-wide one.
            if let Some(name) = s.server_name.or_else(|| global.server_name.clone()) {
                block.server_names.push(name);
            }
            block.server_names.extend(s.aliases);
            let mut certificates = merge_certkeys(s.certificates, &global.certificates).into_iter();
            block.certificate = certificates.next();
            block.extra_certificates = certificates.collect();
            let mut keys = merge_certkeys(s.keys, &global.keys).into_iter();
            block.certificate_key = keys.next();
            block.extra_certificate_keys = keys.collect();
            block.chain_file = s.chain.or_else(|| global.chain.clone());
            block.protocols = s.protocols.or_else(|| global.protocols.clone());
            block.ciphers = s.ciphers.or_else(|| global.ciphers.clone());
            block.verify_client = s.verify_client.or_else(|| global.verify_client.clone());
            block.client_ca = s.client_ca.or_else(|| global.client_ca.clone());
            block.error_log = s.error_log.or_else(|| global.error_log.clone());
            // The level mod_ssl logs at: the vhost's ssl: level, else its
            // plain level (which resets inherited module levels), else the
            // same two server-wide.
            block.log_level = s
                .level_ssl
                .or(s.level_base)
                .or_else(|| global.level_ssl.clone())
                .or_else(|| global.level_base.clone());
            blocks.push(block);
        }
        let global_tls = global.ssl_engine.as_ref().is_some_and(|e| e.value == "on");
        let listens = self
            .listens
            .into_iter()
            .map(|mut l| {
                l.ssl = global_tls
                    || blocks.iter().any(|b| {
                        b.listens.iter().any(|v| {
                            v.ssl
                                && (v.port == l.port || v.port == 0)
                                && (v.addr.is_none() || l.addr.is_none() || v.addr == l.addr)
                        })
                    });
                l
            })
            .collect();
        (blocks, listens)
    }
}

/// mod_ssl's merge of server-wide and vhost certificate/key lists
/// (`modssl_ctx_cfg_merge_certkeys_array`, PR 56306): the vhost's entries
/// replace the server-wide ones at the same positions, the remaining
/// server-wide ones follow.
fn merge_certkeys(
    vhost: Vec<Setting<PathBuf>>,
    global: &[Setting<PathBuf>],
) -> Vec<Setting<PathBuf>> {
    let skip = vhost.len();
    let mut merged = vhost;
    merged.extend(global.iter().skip(skip).cloned());
    merged
}
