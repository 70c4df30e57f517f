//! Evidence sources: one module per source. Each reads its facts; none
//! decides a cause (that is `diagnosis`). Evidence is the leaf of the
//! crate: nothing here imports `catalogue`, `outcome`, `diagnosis` or
//! anything above them (`tests::evidence_is_a_leaf` keeps it so).

pub mod certificates;
pub mod cgroup;
pub mod clock;
pub mod fsroot;
pub mod listeners;
pub mod logs;
pub mod openssl;
pub mod plaintext;
pub mod process;
pub mod server_config;
pub mod sockets;
pub mod wire;

use serde::{Deserialize, Serialize};

/// Which end of the handshake the observed process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The first segment of each path a `crate::` use names: `crate::a::b`
    /// gives `a`, `crate::{a, b::c}` gives `a` and `b`.
    fn crate_roots(text: &str) -> Vec<String> {
        let mut roots = Vec::new();
        // Spelled in two pieces so that this file does not flag itself.
        let prefix = concat!("crate", "::");
        for (i, _) in text.match_indices(prefix) {
            let rest = &text[i + prefix.len()..];
            let group = match rest.strip_prefix('{') {
                Some(inner) => &inner[..inner.find('}').unwrap_or(inner.len())],
                None => rest,
            };
            for item in group.split(',') {
                let name: String = item
                    .trim_start()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    roots.push(name);
                }
                if !rest.starts_with('{') {
                    break;
                }
            }
        }
        roots
    }

    /// Code without its `//` comments (docs may name other modules).
    fn code(text: &str) -> String {
        text.lines()
            .map(|l| l.find("//").map_or(l, |i| &l[..i]))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Evidence is the leaf layer: it gathers facts and never names a cause,
    /// so nothing under `evidence/` may use `catalogue`, `outcome`,
    /// `diagnosis` or any other module of the crate — neither through
    /// `crate::` paths nor through `super::` chains that climb out of
    /// `evidence`.
    #[test]
    fn evidence_is_a_leaf() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/evidence");
        let mut files = Vec::new();
        sources(&root, &mut files);
        assert!(files.len() > 10, "{files:?}");
        let mut offences = Vec::new();
        for file in &files {
            let text = code(&std::fs::read_to_string(file).unwrap());
            for name in crate_roots(&text) {
                // `text` (human text, error chains) is a leaf utility below
                // every layer; the check after the loop keeps it one.
                if name != "evidence" && name != "text" {
                    offences.push(format!("{}: uses the crate's {name}", file.display()));
                }
            }
            // A file's module is this many levels below the crate root
            // (`evidence` itself is one; a mod.rs is its directory's
            // module): that many `super`s climb out of `evidence`.
            let rel = file.strip_prefix(&root).unwrap();
            let mut levels = rel.components().count() + 1;
            if rel.file_name().is_some_and(|n| n == "mod.rs") {
                levels -= 1;
            }
            let climb_out = concat!("super", "::").repeat(levels);
            if text.contains(&climb_out) {
                offences.push(format!("{}: {climb_out}", file.display()));
            }
        }
        let text_rs = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/text.rs");
        let text_roots = crate_roots(&code(&std::fs::read_to_string(text_rs).unwrap()));
        assert!(
            text_roots.is_empty(),
            "text.rs must stay a leaf: {text_roots:?}"
        );
        assert!(
            offences.is_empty(),
            "evidence must not import from the layers above it:\n{}",
            offences.join("\n")
        );
        // The check itself sees what it is meant to see.
        let sample = format!(
            "use {c}::{{evidence::wire, outcome::Role}};\nx = {c}::diagnosis::Cause;",
            c = "crate"
        );
        assert_eq!(crate_roots(&sample), ["evidence", "outcome", "diagnosis"]);
    }
}
