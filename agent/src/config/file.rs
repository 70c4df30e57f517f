//! The optional config file (`--config FILE` or `TLSDOCTOR_CONFIG`), so a
//! ConfigMap can drive the DaemonSet. TOML (`.toml`) or YAML (`.yaml`,
//! `.yml`); its keys are the long flags of `agent run` (`journal`,
//! `metrics-addr`, `otlp-endpoint`, …; `_` may stand for `-`) and the
//! global ones (`log`, `log-format`, `color`):
//!
//! ```yaml
//! journal: /var/lib/tlsdoctor/journal.jsonl
//! metrics-addr: 127.0.0.1:9464
//! tls-port: [8443, 9443]
//! show-success: false
//! otlp-header: { authorization: "Bearer …" }   # or ["authorization=Bearer …"]
//! ```
//!
//! Precedence is flag > environment > file > default: a setting of the
//! file is used only where the command line gave no flag and no
//! environment variable gave a value — the flag's own `TLSDOCTOR_*`
//! variable, or for the OTLP settings the standard `OTEL_*` variables the
//! exporter reads ([`crate::sinks::otlp::FLAG_ENV`]). It is applied by
//! handing those settings to the same parser as `--long=value` arguments,
//! so a value in the file is checked exactly as the flag is. A key that is
//! no flag is an error (a typo must not be ignored). `agent diagnose` reads
//! the same file for the settings it shares (`journal`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Command};
use serde_json::Value;

/// A config file larger than this is refused (it is a few lines).
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {}: larger than {MAX_FILE_BYTES} bytes", path.display())]
    TooLarge { path: PathBuf },
    #[error("config file {}: {message}", path.display())]
    Syntax { path: PathBuf, message: String },
    #[error(
        "config file {}: unknown setting {key:?} (settings are the long flags of `agent run`, e.g. journal, metrics-addr, otlp-endpoint)",
        path.display()
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("config file {}: {key}: {message}", path.display())]
    BadValue {
        path: PathBuf,
        key: String,
        message: String,
    },
}

/// A loaded config file: its settings by long flag name.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigFile {
    pub path: PathBuf,
    pub settings: BTreeMap<String, Value>,
}

/// What the file added to the command line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Applied {
    /// `--long=value` arguments, to be parsed after the user's.
    pub args: Vec<OsString>,
    /// The long names of the settings taken from the file.
    pub keys: Vec<String>,
}

impl ConfigFile {
    /// Reads and parses `path` (TOML or YAML, after its extension; TOML,
    /// then YAML, for any other name).
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigFileError> {
        let read_err = |source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_FILE_BYTES {
            return Err(ConfigFileError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        Self::parse(path, &text, ext.as_deref())
    }

    /// Parses `text` as the file `path`: `ext` `toml`, `yaml`/`yml`, or
    /// anything else (TOML, else YAML).
    pub fn parse(
        path: &Path,
        text: &str,
        ext: Option<&str>,
    ) -> Result<ConfigFile, ConfigFileError> {
        let syntax = |message: String| ConfigFileError::Syntax {
            path: path.to_path_buf(),
            message,
        };
        let value = match ext {
            Some("toml") => from_toml(text).map_err(syntax)?,
            Some("yaml" | "yml") => from_yaml(text).map_err(syntax)?,
            _ => match from_toml(text) {
                Ok(v) => v,
                Err(toml_err) => from_yaml(text).map_err(|yaml_err| {
                    syntax(format!(
                        "neither TOML ({toml_err}) nor YAML ({yaml_err}); name it .toml or .yaml for one error"
                    ))
                })?,
            },
        };
        let settings = match value {
            Value::Object(map) => map
                .into_iter()
                .map(|(k, v)| (k.replace('_', "-"), v))
                .collect(),
            // An empty YAML document.
            Value::Null => BTreeMap::new(),
            other => {
                return Err(syntax(format!(
                    "expected a table of settings, found {}",
                    kind_of(&other)
                )));
            }
        };
        Ok(ConfigFile {
            path: path.to_path_buf(),
            settings,
        })
    }

    /// The arguments the file adds for the command being run.
    ///
    /// `root`/`root_matches` are the whole command line, `known` the
    /// command whose flags the file may name (`agent run`), and
    /// `sub`/`sub_matches` the subcommand being run. A setting is applied
    /// when `sub` (or the root, for a global flag) has that flag and
    /// neither the command line nor an environment variable gave it; `env`
    /// reads the environment.
    pub fn args_for(
        &self,
        root: &Command,
        root_matches: &ArgMatches,
        known: &Command,
        sub: Option<(&Command, &ArgMatches)>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Applied, ConfigFileError> {
        let mut applied = Applied::default();
        for (key, value) in &self.settings {
            let is_global = root.get_arguments().any(|a| a.get_long() == Some(key));
            let is_known = is_global || known.get_arguments().any(|a| a.get_long() == Some(key));
            if !is_known || matches!(key.as_str(), "config" | "print-config") {
                return Err(ConfigFileError::UnknownKey {
                    path: self.path.clone(),
                    key: key.clone(),
                });
            }
            let target = if is_global {
                Some((root, root_matches))
            } else {
                sub.filter(|(cmd, _)| cmd.get_arguments().any(|a| a.get_long() == Some(key)))
            };
            let Some((cmd, matches)) = target else {
                continue; // a setting of `agent run` the running command lacks
            };
            let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) else {
                continue;
            };
            let id = arg.get_id().as_str();
            let given = matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            );
            let shadowed = shadowing_env(key)
                .iter()
                .any(|name| env(name).is_some_and(|v| !v.trim().is_empty()));
            if given || shadowed {
                continue;
            }
            let flag = matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse);
            let values = self.values(key, value, flag)?;
            applied.args.extend(values.into_iter().map(|v| match v {
                None => OsString::from(format!("--{key}")),
                Some(v) => OsString::from(format!("--{key}={v}")),
            }));
            applied.keys.push(key.clone());
        }
        Ok(applied)
    }

    /// The argument values of one setting: `None` for a bare flag.
    fn values(
        &self,
        key: &str,
        value: &Value,
        flag: bool,
    ) -> Result<Vec<Option<String>>, ConfigFileError> {
        let bad = |message: String| ConfigFileError::BadValue {
            path: self.path.clone(),
            key: key.to_string(),
            message,
        };
        if flag {
            return match value {
                Value::Bool(true) => Ok(vec![None]),
                Value::Bool(false) => Ok(Vec::new()),
                other => Err(bad(format!(
                    "expected true or false, found {}",
                    kind_of(other)
                ))),
            };
        }
        let scalar = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(bad(format!("expected a value, found {}", kind_of(other)))),
        };
        match value {
            Value::Array(items) => items.iter().map(|v| scalar(v).map(Some)).collect(),
            // KEY=VALUE lists (otlp-header) as a table.
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| Ok(Some(format!("{k}={}", scalar(v)?))))
                .collect(),
            Value::Null => Ok(Vec::new()),
            v => Ok(vec![Some(scalar(v)?)]),
        }
    }
}

/// Environment variables that give a flag without clap knowing: the OTLP
/// flags' standard `OTEL_*` fallbacks.
fn shadowing_env(long: &str) -> &'static [&'static str] {
    crate::sinks::otlp::FLAG_ENV
        .iter()
        .find(|(flag, _)| *flag == long)
        .map(|(_, vars)| *vars)
        .unwrap_or(&[])
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a table",
    }
}

fn from_toml(text: &str) -> Result<Value, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| crate::text::Chain(&e).to_string())?;
    serde_json::to_value(table).map_err(|e| crate::text::Chain(&e).to_string())
}

fn from_yaml(text: &str) -> Result<Value, String> {
    serde_saphyr::from_str::<Value>(text).map_err(|e| crate::text::Chain(&e).to_string())
}

/// Where each setting of `cmd` came from, by long name: `flag`, `env`,
/// `file` (in `from_file`) or `default`; unset ones are left out.
pub fn sources(
    cmd: &Command,
    matches: &ArgMatches,
    from_file: &[String],
) -> BTreeMap<String, &'static str> {
    let mut out = BTreeMap::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version" | "print-config") {
            continue;
        }
        let source = if from_file.iter().any(|k| k == long) {
            "file"
        } else {
            match matches.value_source(arg.get_id().as_str()) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "env",
                Some(ValueSource::DefaultValue) => "default",
                _ => continue,
            }
        };
        out.insert(long.to_string(), source);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory as _, Parser};

    #[derive(Parser, Debug)]
    struct Root {
        #[arg(long, global = true, env = "T_LOG", default_value = "info")]
        log: String,
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Run(crate::cli::run::RunArgs),
    }

    fn file(text: &str, ext: &str) -> ConfigFile {
        ConfigFile::parse(Path::new("/etc/t.conf"), text, Some(ext)).unwrap()
    }

    fn apply(f: &ConfigFile, argv: &[&str], env: &[(&str, &str)]) -> Applied {
        let root = Root::command();
        let matches = root.clone().try_get_matches_from(argv).unwrap();
        let run = root.find_subcommand("run").unwrap();
        let sub = matches.subcommand_matches("run").unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let lookup = move |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        f.args_for(&root, &matches, run, Some((run, sub)), &lookup)
            .unwrap()
    }

    #[test]
    fn toml_and_yaml_give_the_same_settings() {
        let t = file(
            "journal = \"/j.jsonl\"\nshow_success = true\ntls-port = [8443, 9443]\n[otlp-header]\nauthorization = \"Bearer x\"\n",
            "toml",
        );
        let y = file(
            "journal: /j.jsonl\nshow_success: true\ntls-port: [8443, 9443]\notlp-header:\n  authorization: Bearer x\n",
            "yaml",
        );
        assert_eq!(t.settings, y.settings);
        let applied = apply(&t, &["agent", "run"], &[]);
        let args: Vec<String> = applied
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for expected in [
            "--journal=/j.jsonl",
            "--show-success",
            "--tls-port=8443",
            "--tls-port=9443",
            "--otlp-header=authorization=Bearer x",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected}: {args:?}");
        }
    }

    #[test]
    fn flags_and_environment_win_over_the_file() {
        let f = file(
            "journal = \"/file.jsonl\"\nqueue = 7\nlog = \"debug\"\notlp-endpoint = \"http://file:4317\"\n",
            "toml",
        );
        let applied = apply(
            &f,
            &["agent", "run", "--journal", "/flag.jsonl"],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317")],
        );
        assert_eq!(applied.keys, vec!["log".to_string(), "queue".to_string()]);
        let applied = apply(&f, &["agent", "--log", "warn", "run"], &[]);
        assert!(!applied.keys.contains(&"log".to_string()));
        assert!(applied.keys.contains(&"otlp-endpoint".to_string()));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let root = Root::command();
        let matches = root.clone().try_get_matches_from(["agent", "run"]).unwrap();
        let run = root.find_subcommand("run").unwrap();
        let sub = matches.subcommand_matches("run").unwrap();
        let none = |_: &str| None;
        let typo = file("jounral = \"/x\"\n", "toml");
        let err = typo
            .args_for(&root, &matches, run, Some((run, sub)), &none)
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown setting \"jounral\""),
            "{err}"
        );
        let bad = file("show-success: maybe\n", "yaml");
        let err = bad
            .args_for(&root, &matches, run, Some((run, sub)), &none)
            .unwrap_err();
        assert!(err.to_string().contains("expected true or false"), "{err}");
        let list = ConfigFile::parse(Path::new("x"), "- a\n- b\n", Some("yaml")).unwrap_err();
        assert!(list.to_string().contains("expected a table"), "{list}");
        assert!(ConfigFile::parse(Path::new("x"), "a = [", Some("toml")).is_err());
    }
}
