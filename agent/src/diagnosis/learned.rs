//! What the agent learns about this host and keeps across restarts, in
//! `learned.json` beside the journal:
//!
//! - **TLS listeners no config file declares** (`openssl s_server`, Go,
//!   Java, Node services): a port a local server answered with a
//!   ServerHello (assembly learns those as they happen), or a listening
//!   socket of a process that maps a TLS library. Ports that served a
//!   ServerHello join the assembler's TLS ports, so a refused or failed
//!   connect to them is a TLS failure even after a restart; ports known
//!   only from a mapped library do not (plenty of plain services map
//!   libssl), host state weighs those per failure.
//! - **The clock's baseline** of this boot (`evidence::clock::StepWatch`),
//!   so a clock step is seen even across an agent restart.
//!
//! The state is bounded ([`MAX_LISTENERS`], entries unseen for
//! [`FORGET_AFTER_DAYS`] days are dropped), written atomically, and a
//! missing or unreadable file starts an empty state with a warning: it is
//! a cache of the host, never a source of truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::evidence::clock::StepWatch;
use crate::evidence::listeners::{Listener, ListenerTable};
use crate::evidence::process::maps_tls_library;

/// The file's name, beside the journal.
pub const FILE_NAME: &str = "learned.json";
/// Most listeners remembered; the least recently seen go first.
pub const MAX_LISTENERS: usize = 1024;
/// A listener unseen this long is forgotten.
pub const FORGET_AFTER_DAYS: i64 = 30;
/// Largest state file read.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// How a listener was learned to speak TLS.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LearnedHow {
    /// It answered a ClientHello with a ServerHello.
    ServedHello,
    /// Its process maps a TLS library (e.g. "libssl.so.3").
    MapsLibrary { library: String },
}

/// A TLS listener learned from the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedListener {
    pub port: u16,
    /// Addresses it was last seen bound to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<std::net::IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    pub how: LearnedHow,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl LearnedListener {
    /// "served a ServerHello", "maps libssl.so.3".
    pub fn how_words(&self) -> String {
        match &self.how {
            LearnedHow::ServedHello => "served a ServerHello".to_string(),
            LearnedHow::MapsLibrary { library } => format!("maps {library}"),
        }
    }
}

/// The persisted state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedState {
    #[serde(default)]
    pub tls_listeners: Vec<LearnedListener>,
    #[serde(default)]
    pub clock: StepWatch,
}

/// The state and where it is kept.
#[derive(Debug, Default)]
pub struct Learned {
    path: Option<PathBuf>,
    listeners: BTreeMap<u16, LearnedListener>,
    clock: StepWatch,
    dirty: bool,
}

/// The state file beside `journal`.
pub fn path_beside(journal: &Path) -> PathBuf {
    journal.with_file_name(FILE_NAME)
}

/// Reads the state beside `journal` (the host report does; nothing is
/// written). Missing or unreadable: empty, with the reason.
pub fn read_beside(journal: &Path) -> (LearnedState, Option<String>) {
    read_file(&path_beside(journal))
}

fn read_file(path: &Path) -> (LearnedState, Option<String>) {
    use std::io::Read as _;
    let mut text = String::new();
    let read =
        std::fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text));
    match read {
        Ok(_) => match serde_json::from_str(&text) {
            Ok(state) => (state, None),
            Err(e) => (
                LearnedState::default(),
                Some(format!(
                    "{}: not a learned-state file ({e}); starting afresh",
                    path.display()
                )),
            ),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (LearnedState::default(), None),
        Err(e) => (
            LearnedState::default(),
            Some(format!(
                "{} unreadable ({e}); starting afresh",
                path.display()
            )),
        ),
    }
}

impl Learned {
    /// The state kept at `path` (loaded now).
    pub fn at(path: PathBuf) -> Learned {
        let (state, problem) = read_file(&path);
        if let Some(problem) = problem {
            warn!("{problem}");
        }
        let mut learned = Learned {
            path: Some(path),
            listeners: state
                .tls_listeners
                .into_iter()
                .map(|l| (l.port, l))
                .collect(),
            clock: StepWatch::with_baseline(state.clock),
            dirty: false,
        };
        learned.bound(Utc::now());
        learned
    }

    /// Everything learned, for the file and the host report.
    pub fn state(&self) -> LearnedState {
        LearnedState {
            tls_listeners: self.listeners.values().cloned().collect(),
            clock: self.clock.clone(),
        }
    }

    pub fn listener(&self, port: u16) -> Option<&LearnedListener> {
        self.listeners.get(&port)
    }

    /// Ports that answered a ServerHello: TLS for certain.
    pub fn served_hello_ports(&self) -> Vec<u16> {
        self.listeners
            .values()
            .filter(|l| l.how == LearnedHow::ServedHello)
            .map(|l| l.port)
            .collect()
    }

    /// The clock's step watch (its baseline is kept with the state).
    pub fn step_watch(&mut self) -> &mut StepWatch {
        &mut self.clock
    }

    /// Records that `port` is a TLS listener, learned `how`, owned by the
    /// listeners on it now (if any). A ServerHello outranks a mapped
    /// library.
    pub fn remember(
        &mut self,
        port: u16,
        how: LearnedHow,
        on_port: &[&Listener],
        now: DateTime<Utc>,
    ) {
        let owner = on_port.iter().find(|l| l.comm.is_some());
        let addrs: Vec<std::net::IpAddr> = on_port.iter().map(|l| l.addr).collect();
        match self.listeners.get_mut(&port) {
            Some(known) => {
                let upgrade = how == LearnedHow::ServedHello && known.how != how;
                if upgrade {
                    known.how = how;
                }
                if let Some(owner) = owner {
                    known.comm = owner.comm.clone();
                    known.exe = owner.exe.clone();
                }
                if !addrs.is_empty() {
                    known.addrs = addrs;
                }
                // The file is rewritten when the day changes, not on every
                // rescan that sees the listener again.
                if upgrade || known.last_seen.date_naive() != now.date_naive() {
                    self.dirty = true;
                }
                known.last_seen = known.last_seen.max(now);
            }
            None => {
                self.listeners.insert(
                    port,
                    LearnedListener {
                        port,
                        addrs,
                        comm: owner.and_then(|l| l.comm.clone()),
                        exe: owner.and_then(|l| l.exe.clone()),
                        how,
                        first_seen: now,
                        last_seen: now,
                    },
                );
                self.dirty = true;
            }
        }
        self.bound(now);
    }

    /// Forgets what is stale, then the least recently seen past the bound.
    fn bound(&mut self, now: DateTime<Utc>) {
        let before = self.listeners.len();
        self.listeners
            .retain(|_, l| (now - l.last_seen).num_days() < FORGET_AFTER_DAYS);
        if self.listeners.len() > MAX_LISTENERS {
            let mut by_age: Vec<(DateTime<Utc>, u16)> = self
                .listeners
                .values()
                .map(|l| (l.last_seen, l.port))
                .collect();
            by_age.sort();
            let excess = self.listeners.len() - MAX_LISTENERS;
            for (_, port) in by_age.into_iter().take(excess) {
                self.listeners.remove(&port);
            }
        }
        if self.listeners.len() != before {
            self.dirty = true;
        }
    }

    /// Learns from the host: ports that served ServerHellos (from
    /// assembly), and listeners of processes that map a TLS library. Saves
    /// when something changed.
    pub fn learn(&mut self, served_hello: &[u16], table: &ListenerTable, now: DateTime<Utc>) {
        for &port in served_hello {
            self.remember(port, LearnedHow::ServedHello, &table.on_port(port), now);
        }
        let mut checked: BTreeMap<u32, Option<String>> = BTreeMap::new();
        for l in &table.listeners {
            let Some(pid) = l.pid else { continue };
            let library = checked
                .entry(pid)
                .or_insert_with(|| maps_tls_library(pid))
                .clone();
            if let Some(library) = library {
                self.remember(
                    l.port,
                    LearnedHow::MapsLibrary { library },
                    &table.on_port(l.port),
                    now,
                );
            }
        }
        self.save();
    }

    /// Notes the clock's first observation this boot, for the file.
    pub fn note_clock(&mut self, watch: &StepWatch) {
        if self.clock.boot_wall.is_none() && watch.boot_wall.is_some() {
            self.clock = watch.clone();
            self.dirty = true;
        }
    }

    /// Writes the state when it changed (atomically: a temp file renamed).
    pub fn save(&mut self) {
        if !self.dirty {
            return;
        }
        let Some(path) = &self.path else {
            self.dirty = false;
            return;
        };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec_pretty(&self.state())
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path));
        match result {
            Ok(()) => self.dirty = false,
            Err(e) => debug!(path = %path.display(), error = %e, "writing the learned state"),
        }
    }
}

static GLOBAL: OnceLock<Mutex<Learned>> = OnceLock::new();

/// Opens the agent's learned state beside `journal` (`agent run` does, once;
/// later calls return the first one).
pub fn open_beside(journal: &Path) -> &'static Mutex<Learned> {
    GLOBAL.get_or_init(|| Mutex::new(Learned::at(path_beside(journal))))
}

/// The agent's learned state, when `agent run` opened it.
pub fn global() -> Option<&'static Mutex<Learned>> {
    GLOBAL.get()
}

/// The periodic step of `agent run`: learns from the ServerHello ports
/// assembly saw and from the host's listeners, saves, and returns every
/// port whose failed connects count as TLS failures — configured `ssl`
/// ports and ports that served a ServerHello.
pub fn sync(served_hello: &[u16]) -> Vec<u16> {
    let mut ports = super::host::configured_tls_ports();
    if let Some(learned) = global() {
        let table = ListenerTable::scan()
            .map_err(|e| debug!(error = %e, "listener scan for learning failed"))
            .unwrap_or_default();
        if let Ok(mut learned) = learned.lock() {
            learned.learn(served_hello, &table, Utc::now());
            ports.extend(learned.served_hello_ports());
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(port: u16, comm: &str) -> Listener {
        Listener {
            addr: "127.0.0.1".parse().unwrap(),
            port,
            inode: 1,
            pid: Some(4321),
            comm: Some(comm.to_string()),
            exe: Some(format!("/usr/bin/{comm}")),
            accept_queue: 0,
            backlog: 128,
            v6only: None,
        }
    }

    fn temp_path(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tlsdoctor-learned-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(FILE_NAME)
    }

    #[test]
    fn what_is_learned_survives_a_restart() {
        let path = temp_path("restart");
        let now = Utc::now();
        let mut learned = Learned::at(path.clone());
        let go = listener(9443, "goserver");
        learned.remember(
            4433,
            LearnedHow::MapsLibrary {
                library: "libssl.so.3".into(),
            },
            &[&listener(4433, "openssl")],
            now,
        );
        learned.remember(9443, LearnedHow::ServedHello, &[&go], now);
        learned.save();
        assert!(path.exists());

        let again = Learned::at(path.clone());
        assert_eq!(again.served_hello_ports(), vec![9443]);
        let s = again.listener(4433).unwrap();
        assert_eq!(s.comm.as_deref(), Some("openssl"));
        assert_eq!(s.how_words(), "maps libssl.so.3");
        // A ServerHello outranks the mapped library.
        let mut again = again;
        again.remember(4433, LearnedHow::ServedHello, &[], now);
        assert_eq!(again.served_hello_ports(), vec![4433, 9443]);
        assert_eq!(
            again.listener(4433).unwrap().comm.as_deref(),
            Some("openssl")
        );
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn the_state_is_bounded_and_forgets_what_it_has_not_seen() {
        let mut learned = Learned::default();
        let now = Utc::now();
        let old = now - chrono::Duration::days(FORGET_AFTER_DAYS + 1);
        learned.remember(1, LearnedHow::ServedHello, &[], old);
        learned.remember(2, LearnedHow::ServedHello, &[], now);
        assert!(learned.listener(1).is_none());
        for port in 0..(MAX_LISTENERS as u16 + 10) {
            learned.remember(
                10_000 + port,
                LearnedHow::ServedHello,
                &[],
                now + chrono::Duration::seconds(i64::from(port)),
            );
        }
        assert_eq!(learned.state().tls_listeners.len(), MAX_LISTENERS);
        // The least recently seen went first.
        assert!(learned.listener(2).is_none());
        assert!(
            learned
                .listener(10_000 + MAX_LISTENERS as u16 + 9)
                .is_some()
        );
    }

    #[test]
    fn a_damaged_file_starts_afresh() {
        let path = temp_path("damaged");
        std::fs::write(&path, "{ not json").unwrap();
        let (state, problem) = read_file(&path);
        assert_eq!(state, LearnedState::default());
        assert!(problem.unwrap().contains("not a learned-state file"));
        let learned = Learned::at(path.clone());
        assert!(learned.state().tls_listeners.is_empty());
        let (_, none) = read_file(&path.with_file_name("missing.json"));
        assert_eq!(none, None);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[test]
    fn this_process_listener_is_learned_from_its_tls_library() {
        // The test binary maps libssl (the openssl crate).
        let _ = openssl::version::version();
        let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = socket.local_addr().unwrap().port();
        let table = ListenerTable::scan().unwrap();
        let mut learned = Learned::default();
        learned.learn(&[], &table, Utc::now());
        let l = learned.listener(port).expect("learned");
        assert!(
            matches!(&l.how, LearnedHow::MapsLibrary { library } if library.starts_with("libssl")),
            "{l:?}"
        );
        assert!(learned.served_hello_ports().is_empty());
    }
}
