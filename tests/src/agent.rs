//! The agent under test: [`agent()`] is started once per test binary and
//! stopped (SIGTERM, clean detach) when the test process exits;
//! [`Agent::start`] starts one with its own flags, stopped when dropped.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agent::outcome::HandshakeOutcome;

use crate::TempDir;

pub struct Agent {
    _dir: TempDir,
    journal: PathBuf,
    child: Mutex<Child>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The agent binary: `TLSDOCTOR_AGENT_BIN`, else the workspace's debug build.
pub fn agent_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("TLSDOCTOR_AGENT_BIN") {
        return PathBuf::from(bin);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["debug", "release"] {
        let candidate = root.join("target").join(profile).join("agent");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("no agent binary: run `cargo build -p agent` first (cargo xtask test does)");
}

/// The shared agent, started on first use.
pub fn agent() -> &'static Agent {
    static AGENT: OnceLock<Agent> = OnceLock::new();
    AGENT.get_or_init(|| {
        crate::require_root();
        Agent::start(&[])
    })
}

impl Agent {
    /// Starts an agent with extra `agent run` arguments and waits until it
    /// captures.
    pub fn start(extra: &[&str]) -> Agent {
        Agent::launch(&[], extra)
            .unwrap_or_else(|log| panic!("the agent did not start capturing within 60 s:\n{log}"))
    }

    /// Starts `wrapper… AGENT run --journal … extra…` (`wrapper` empty: the
    /// agent itself; e.g. `setpriv` with a reduced capability set, which must
    /// `exec` the agent so that its pid is the agent's) and waits until it
    /// captures. `Err` holds the agent's log (and exit status) when it
    /// exited or did not capture within 60 s.
    pub fn launch(wrapper: &[String], extra: &[&str]) -> Result<Agent, String> {
        let dir = TempDir::new("agent");
        let journal = dir.join("journal.jsonl");
        Agent::launch_journaling_to(dir, journal, wrapper, extra)
    }

    /// As [`launch`](Self::launch), journaling to `journal` (e.g. on a
    /// filesystem the test fills); `dir` is removed when the agent is.
    pub fn launch_journaling_to(
        dir: TempDir,
        journal: PathBuf,
        wrapper: &[String],
        extra: &[&str],
    ) -> Result<Agent, String> {
        crate::require_root();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(agent_binary());
                cmd
            }
            None => Command::new(agent_binary()),
        };
        cmd.arg("run")
            .arg("--journal")
            .arg(&journal)
            .args(extra)
            .env("TLSDOCTOR_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: prctl in the child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        // PR_SET_PDEATHSIG fires when the spawning *thread* exits, so spawn
        // from a thread that lives as long as the test process.
        let (spawned_tx, spawned_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = spawned_tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        });
        let mut child = spawned_rx
            .recv()
            .map_err(|_| "the spawning thread is gone".to_string())?
            .map_err(|e| format!("starting the agent: {e}"))?;
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        if let Some(pipe) = child.stderr.take() {
            let lines = stderr.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if line.contains("capturing TLS handshakes") {
                        let _ = ready_tx.send(());
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            // Exited (its stderr closed) or too slow.
            let _ = child.kill();
            let status = child.wait();
            // The reader thread may still be copying the last lines.
            std::thread::sleep(Duration::from_millis(100));
            let log = stderr.lock().map(|l| l.join("\n")).unwrap_or_default();
            return Err(format!("{log}\n(agent exit: {status:?})"));
        }
        Ok(Agent {
            _dir: dir,
            journal,
            child: Mutex::new(child),
            stderr,
        })
    }

    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// The agent's process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().unwrap_or_else(|e| e.into_inner()).id()
    }

    /// Stops the agent (SIGTERM: it drains, flushes and detaches) and waits;
    /// what dropping it does, spelled out where a phase ends.
    pub fn stop(self) {
        drop(self);
    }

    /// The agent's status file (`status.json` beside the journal, rewritten
    /// every few seconds), parsed; `None` before it is first written.
    pub fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.journal.with_file_name("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Every journal record so far.
    pub fn records(&self) -> Vec<HandshakeOutcome> {
        let (records, bad) =
            agent::sinks::journal::read(&self.journal, None).expect("reading the agent's journal");
        assert!(bad.is_empty(), "unreadable journal lines: {bad:?}");
        records
    }

    /// The agent's log so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Journal records whose server port is `port`.
    pub fn records_for_port(&self, port: u16) -> Vec<HandshakeOutcome> {
        self.records()
            .into_iter()
            .filter(|r| r.server.port == Some(port))
            .collect()
    }

    /// Waits until the records for `port` satisfy `done`, then returns them.
    pub fn wait_for(
        &self,
        port: u16,
        what: &str,
        done: impl Fn(&[HandshakeOutcome]) -> bool,
    ) -> Vec<HandshakeOutcome> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let records = self.records_for_port(port);
            if done(&records) {
                return records;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what} on port {port}; records: {}\nagent log:\n{}",
                    serde_json::to_string_pretty(&records).unwrap_or_default(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits long enough for any outcome to be written (stall timeouts
    /// aside) and asserts there is none for `port`.
    pub fn assert_no_records(&self, port: u16, what: &str) {
        std::thread::sleep(Duration::from_secs(4));
        let records = self.records_for_port(port);
        assert!(
            records.is_empty(),
            "{what}: expected no failure records on port {port}, got {}",
            serde_json::to_string_pretty(&records).unwrap_or_default()
        );
    }
}

/// Stops an agent from [`Agent::start`] (SIGTERM: it drains its sinks and
/// detaches), SIGKILL if it takes longer than 20 s, before its directory goes.
impl Drop for Agent {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
