//! Tests over config trees written into temporary directories. The
//! `fixtures/` files are verbatim copies of Debian 12's stock configs
//! (nginx 1.22, apache2 2.4), so the parsers are checked against the real
//! layouts and not only against hand-written snippets.

mod apache_tests;
mod budget;
mod hostile;
mod nginx_tests;
mod no_echo;
mod real_system;
mod rooted;
mod selection;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{ConfigProblem, ServerBlock, ServerConfig};

/// A scratch directory under the system temp dir, removed on drop.
pub(super) struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let root = std::env::temp_dir().join(format!(
            "tlsdoctor-servercfg-{name}-{}-{n}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Fixture { root }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `content` to `rel`, creating parent directories;
    /// `@ROOT@` in the content becomes the fixture's root.
    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(
            &path,
            content.replace("@ROOT@", &self.root.to_string_lossy()),
        )
        .unwrap();
        path
    }

    pub fn write_bytes(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, content).unwrap();
        path
    }

    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// The block whose first server name is `name`.
pub(super) fn block<'a>(config: &'a ServerConfig, name: &str) -> &'a ServerBlock {
    config
        .blocks
        .iter()
        .find(|b| b.server_names.first().is_some_and(|n| n.value == name))
        .unwrap_or_else(|| panic!("no block named {name}: {:#?}", config.blocks))
}

/// Problems whose message contains `needle`.
pub(super) fn problems_with<'a>(config: &'a ServerConfig, needle: &str) -> Vec<&'a ConfigProblem> {
    config
        .problems
        .iter()
        .filter(|p| p.message.contains(needle))
        .collect()
}

pub(super) fn line_of(path: &Path, needle: &str) -> u32 {
    let text = fs::read_to_string(path).unwrap();
    let index = text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {}", path.display()));
    u32::try_from(index + 1).unwrap()
}
