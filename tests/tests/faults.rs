//! Fault injection, end to end (issue 13 item 2): the real agent, real
//! servers and clients, real OTLP receivers, and what production does to
//! them -- a collector that goes away, a journal that cannot be written or
//! whose disk fills, the agent SIGKILLed mid-flood, floods of short-lived
//! client processes, a server killed inside a handshake, a ring buffer too
//! small for a burst, and libssl replaced on disk while probed.
//!
//! Each test starts its own agent and waits for conditions, never for a
//! fixed time; what each measured is printed (`--nocapture`) and written up
//! in docs/robustness.md ("Faults").
#![allow(
    clippy::too_many_lines,
    reason = "end-to-end scenarios read top to bottom"
)]
// Test code: helpers outside #[test] functions fail the test on a failed step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agent::outcome::{HandshakeOutcome, Role};
use agent::sinks::otlp::SpanIds;
use tlsdoctor_tests::agent::Agent;
use tlsdoctor_tests::clients::python_tls;
use tlsdoctor_tests::faults::{
    FailureLoad, alive, attachment_fds_of, bpf_prog_ids_of, failing_handshakes,
    loaded_bpf_prog_ids, sample, sample_sum, scrape, signal, verified_get, wait_until,
};
use tlsdoctor_tests::pki::{Issuer, LeafSpec, Pki};
use tlsdoctor_tests::receivers::{Rotel, receivers, skip, start_rotel_on};
use tlsdoctor_tests::servers::{Server, nginx_tls_block, nginx_with};
use tlsdoctor_tests::{TempDir, free_port, require_root, rss_anon_kib};

/// The agent's resident memory must stay under this through every fault
/// (the same bound as `otlp_agent::collector_down_then_up`).
const MAX_RSS_KIB: u64 = 64 * 1024;

/// With a full OTLP span queue (2048 spans of a debug build) on top.
const MAX_RSS_WITH_SPAN_QUEUE_KIB: u64 = 96 * 1024;

/// One fault test at a time: each starts its own agent, and every agent sees
/// every handshake on the host, so tests run side by side would load each
/// other's agents (a parallel run doubled the spans one agent exported and
/// measured the other test's flood, not its own fault).
fn one_fault_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// --- the site --------------------------------------------------------------------------

/// nginx on a free loopback port serving a leaf of a private CA for
/// `localhost`: clients using the system trust store fail (`unknown_ca`),
/// clients given `pki.ca_file` succeed.
struct Site {
    port: u16,
    server: Server,
    pki: Pki,
}

fn site_with_env(env: &[(&str, &str)]) -> Site {
    let pki = Pki::new();
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Root;
    let leaf = pki.leaf(&spec);
    let port = free_port();
    let server = nginx_with(
        &[port],
        &nginx_tls_block(port, "localhost", &leaf.cert, &leaf.key, ""),
        env,
    );
    Site { port, server, pki }
}

fn site() -> Site {
    site_with_env(&[])
}

impl Site {
    /// A verified handshake and `GET /` succeed: the server is unharmed.
    fn assert_serving(&self, when: &str) {
        let line = verified_get(self.port, "localhost", &self.pki.ca_file)
            .unwrap_or_else(|e| panic!("{when}: nginx no longer serves: {e}"));
        assert!(line.contains(" 200 "), "{when}: {line}");
    }
}

fn metrics_flags(port: u16) -> Vec<String> {
    vec!["--metrics-addr".into(), format!("127.0.0.1:{port}")]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Lines of the agent's log at level ERROR, or a panic.
fn agent_errors(agent: &Agent) -> Vec<String> {
    agent
        .log()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

fn client_random(r: &HandshakeOutcome) -> Option<&str> {
    r.tls.client_hello.as_ref().map(|ch| ch.random.as_str())
}

// --- a. the OTLP collector goes away under load, then comes back -------------------------

/// The span ids of the records' ends (from their ClientHello randoms).
fn span_ids(records: &[HandshakeOutcome]) -> Vec<String> {
    records
        .iter()
        .filter_map(|r| {
            let ids = SpanIds::from_client_random(client_random(r)?, r.role)?;
            Some(ids.span_id.to_string())
        })
        .collect()
}

fn start_rotel(test: &str, grpc: u16, http: u16) -> Option<Rotel> {
    let rx = receivers(test)?;
    match start_rotel_on(&rx.rotel, grpc, http) {
        Ok(r) => Some(r),
        Err(why) => {
            skip(test, &why);
            None
        }
    }
}

/// Under a steady failure load, the collector is killed for 25 s (the issue
/// asks for 10 minutes; see docs/robustness.md), then started again on the
/// same port: the agent's memory stays bounded, the spans it could not
/// deliver are counted (status.json, /metrics), every journaled failure is
/// either delivered or counted, and delivery resumes.
#[test]
fn otlp_collector_down_under_load_then_back() {
    let _alone = one_fault_at_a_time();
    const OUTAGE: Duration = Duration::from_secs(25);
    let test = "otlp_collector_down_under_load_then_back";
    require_root();
    let (grpc, http) = (free_port(), free_port());
    let Some(rotel) = start_rotel(test, grpc, http) else {
        return;
    };
    let metrics_port = free_port();
    let mut flags = metrics_flags(metrics_port);
    flags.extend([
        "--otlp-endpoint".into(),
        format!("http://127.0.0.1:{grpc}"),
        "--otlp-protocol".into(),
        "grpc".into(),
    ]);
    let agent = Agent::start(&args(&flags));
    let pid = agent.pid();
    let site = site();
    let rss_start = rss_anon_kib(pid).expect("the agent's RssAnon");
    let load = FailureLoad::start(site.port, 2, Duration::from_millis(20));

    // Collector up: failures arrive as spans.
    let first = agent.wait_for(site.port, "failures under load", |rs| {
        rs.iter().any(|r| client_random(r).is_some())
    });
    rotel.wait_for_spans(
        &span_ids(&first)[..1],
        Duration::from_secs(30),
        "a span before the outage",
    );

    // Collector down for OUTAGE, the load going on.
    let grpc_port = rotel.grpc_port;
    drop(rotel);
    let down_at = Instant::now();
    let journaled_before = agent.records_for_port(site.port).len();
    let mut max_rss = rss_start;
    let mut rss_samples = Vec::new();
    while down_at.elapsed() < OUTAGE {
        let rss = rss_anon_kib(pid).expect("the agent runs");
        max_rss = max_rss.max(rss);
        rss_samples.push(rss);
        std::thread::sleep(Duration::from_millis(500));
    }
    let journaled_during = agent.records_for_port(site.port).len() - journaled_before;
    let (_, page) = scrape(metrics_port, "/metrics");
    let dropped_metric = sample(&page, "tlsdoctor_otlp_spans_dropped_total").unwrap_or(0.0);
    let dropped_status = wait_until(
        "status.json to count dropped spans",
        Duration::from_secs(15),
        || {
            agent
                .status()
                .and_then(|s| s["spans_dropped"].as_u64())
                .filter(|&d| d > 0)
        },
        || agent.log(),
    );
    assert!(
        dropped_metric > 0.0,
        "/metrics must count the spans lost while the collector was down:\n{page}"
    );
    assert!(
        journaled_during > 100,
        "the journal keeps the failures while the collector is down: {journaled_during}"
    );
    let handshakes_down = load.made();

    // Collector back on the same port: a failure journaled after that
    // arrives.
    let rotel = start_rotel(test, grpc_port, free_port()).expect("rotel again");
    let back_at = Instant::now();
    let arrived = wait_until(
        "a span of a failure made after the collector came back",
        Duration::from_secs(60),
        || {
            let newest: Vec<HandshakeOutcome> = agent
                .records_for_port(site.port)
                .into_iter()
                .rev()
                .take(20)
                .collect();
            let spans = rotel.spans();
            span_ids(&newest)
                .into_iter()
                .find(|id| spans.iter().any(|s| &s.id == id))
        },
        || format!("{}\n{}", agent.log(), rotel.proc.log_tail()),
    );
    let resumed_after = back_at.elapsed();
    let made = load.stop();
    max_rss = max_rss.max(rss_anon_kib(pid).expect("the agent runs"));

    // Nothing lost beyond what is counted: every journaled end of this
    // site's failures reached the collector or is among the dropped spans
    // (which also count other tests' traffic: an upper bound).
    let (delivered, journaled, dropped) = wait_until(
        "every journaled failure delivered or counted as dropped",
        Duration::from_secs(30),
        || {
            let records = agent.records_for_port(site.port);
            let got: BTreeSet<String> = rotel.spans().into_iter().map(|s| s.id).collect();
            // The first collector's spans went with it: count those
            // delivered before the outage as delivered.
            let ids = span_ids(&records);
            let delivered = ids.iter().filter(|id| got.contains(*id)).count();
            let (_, page) = scrape(metrics_port, "/metrics");
            let dropped =
                sample(&page, "tlsdoctor_otlp_spans_dropped_total").unwrap_or(0.0) as usize;
            let before_outage = journaled_before;
            (delivered + dropped + before_outage >= ids.len()).then_some((
                delivered,
                ids.len(),
                dropped,
            ))
        },
        || agent.log(),
    );
    let rss_mid = rss_samples.get(rss_samples.len() / 2).copied().unwrap_or(0);
    let rss_end = rss_samples.last().copied().unwrap_or(0);
    eprintln!(
        "OTLP outage {OUTAGE:?}: {made} handshakes made ({handshakes_down} by its end), \
         {journaled_during} records journaled during it, spans dropped {dropped_status} (status) \
         / {dropped_metric} (metrics); delivery resumed {resumed_after:?} after the collector \
         came back (span {arrived}); after it: {delivered} of {journaled} journaled ends \
         delivered, {dropped} dropped in all; RSS {rss_start} KiB at start, {rss_mid} mid-outage, \
         {rss_end} at its end, max {max_rss}"
    );
    // Bounded: the span queue (2048 spans) fills in the first seconds of
    // the outage, then the agent's memory stops growing.
    assert!(
        max_rss < MAX_RSS_WITH_SPAN_QUEUE_KIB,
        "agent RSS reached {max_rss} KiB (started at {rss_start})"
    );
    assert!(
        rss_end < rss_mid + 8 * 1024,
        "agent RSS still growing in the second half of the outage: {rss_mid} → {rss_end} KiB"
    );
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
}

// --- b. the journal unwritable, then its disk full ---------------------------------------

/// A tmpfs of 256 KiB mounted on a directory of the test, unmounted when
/// dropped.
struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    fn mount(dir: &Path, options: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount: {out:?}");
        SmallDisk {
            dir: dir.to_path_buf(),
        }
    }

    fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "remount: {out:?}");
    }

    /// Fills the filesystem with `filler`; returns the bytes written.
    fn fill(&self) -> u64 {
        let mut f = std::fs::File::create(self.dir.join("filler")).unwrap();
        let block = [0xa5u8; 1024];
        let mut written = 0u64;
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        written
    }

    fn free(&self) {
        std::fs::remove_file(self.dir.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The journal's directory read-only at start, then writable: the journal
/// opens. Then its disk (a 256 KiB tmpfs) full, then freed. Throughout, the
/// agent runs, failures reach the metrics, each record not written is
/// counted (status.json, /metrics), `/readyz` stays 200 and says why; when
/// the journal can be written again it resumes, with no torn line.
#[test]
fn journal_unwritable_then_full_then_back() {
    let _alone = one_fault_at_a_time();
    require_root();
    let site = site();
    let dir = TempDir::new("fault-journal");
    let status_path = dir.join("status.json");
    let disk = SmallDisk::mount(&dir.join("disk"), "size=256k,mode=0755,ro");
    let journal = disk.dir.join("tlsdoctor").join("journal.jsonl");
    let metrics_port = free_port();
    let mut flags = metrics_flags(metrics_port);
    flags.extend(["--status".into(), status_path.display().to_string()]);
    let agent =
        Agent::launch_journaling_to(TempDir::new("agent"), journal.clone(), &[], &args(&flags))
            .unwrap_or_else(|log| panic!("the agent must start without its journal:\n{log}"));
    let status = || -> serde_json::Value {
        std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    };
    let journal_errors = || {
        let (_, page) = scrape(metrics_port, "/metrics");
        sample(&page, "tlsdoctor_journal_write_errors_total").unwrap_or(0.0)
    };
    let failures = || {
        let (_, page) = scrape(metrics_port, "/metrics");
        sample_sum(
            &page,
            "tlsdoctor_handshakes_total{role=\"client\",result=\"failure\"",
        )
    };
    let one_failure = || {
        assert_eq!(failing_handshakes(site.port, 1), 1);
    };
    let readyz = || scrape(metrics_port, "/readyz");

    // 1. Unwritable: counted, reported, the metrics still get failures.
    let (code, body) = readyz();
    assert_eq!(code, 200, "capturing, so ready: {body}");
    assert!(
        body.contains("warning: journal not written") && body.contains("Read-only file system"),
        "{body}"
    );
    let f0 = failures();
    one_failure();
    wait_until(
        "a journal error and the failure in /metrics",
        Duration::from_secs(30),
        || (journal_errors() >= 1.0 && failures() > f0).then_some(()),
        || agent.log(),
    );
    wait_until(
        "status.json to count the journal errors",
        Duration::from_secs(15),
        || (status()["journal_errors"].as_u64()? >= 1).then_some(()),
        || status().to_string(),
    );
    assert!(!journal.exists());

    // 2. Writable again: the journal opens (it is tried every 10 s) and
    // records land in it.
    disk.remount("rw");
    let opened_at = Instant::now();
    wait_until(
        "the journal to open once its directory is writable",
        Duration::from_secs(40),
        || {
            one_failure();
            (!agent.records_for_port(site.port).is_empty()).then_some(())
        },
        || agent.log(),
    );
    let reopened_after = opened_at.elapsed();
    let (code, body) = readyz();
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("journal not written"), "{body}");

    // 3. The disk full: records not written are counted, readiness says
    // why, the metrics still get every failure.
    let filled = disk.fill();
    let (errors_before, failures_before) = (journal_errors(), failures());
    let journaled_before = agent.records_for_port(site.port).len();
    let made = {
        let load = FailureLoad::start(site.port, 1, Duration::from_millis(50));
        wait_until(
            "journal errors counted on a full disk",
            Duration::from_secs(30),
            || (journal_errors() >= errors_before + 3.0).then_some(()),
            || agent.log(),
        );
        load.stop()
    };
    let (code, body) = readyz();
    assert_eq!(
        code, 200,
        "a full disk must not make the agent unready: {body}"
    );
    assert!(
        body.contains("warning: journal not written") && body.contains("No space left"),
        "{body}"
    );
    // Every failure of the load reaches the metrics (which also count
    // any other client on the host: at least).
    let failures_full = wait_until(
        "every failure on the full disk in /metrics",
        Duration::from_secs(30),
        || Some(failures() - failures_before).filter(|&n| n >= made as f64),
        || agent.log(),
    );
    let journaled_full = agent.records_for_port(site.port).len() - journaled_before;

    // 4. Space again: the journal resumes, readable to the last line (a
    // record cut by ENOSPC must not leave half a line for the next one to
    // be glued to).
    disk.free();
    let resumed_before = agent.records_for_port(site.port).len();
    wait_until(
        "the journal to resume once space is back",
        Duration::from_secs(30),
        || {
            one_failure();
            (agent.records_for_port(site.port).len() > resumed_before).then_some(())
        },
        || agent.log(),
    );
    let (records, bad) = agent::sinks::journal::read(&journal, None).unwrap();
    assert!(
        bad.is_empty(),
        "the journal has unreadable lines after the disk was full: {bad:?}"
    );
    let (code, body) = readyz();
    assert_eq!(code, 200, "{body}");
    assert!(!body.contains("journal not written"), "{body}");
    assert!(alive(agent.pid()));
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    eprintln!(
        "journal faults: reopened {reopened_after:?} after the directory became writable; \
         disk filled with {filled} bytes; {made} failures on the full disk: {} journal errors \
         counted, {failures_full} in the metrics, {journaled_full} journaled (partly written \
         before the disk filled); {} records readable afterwards, 0 torn lines",
        journal_errors() - errors_before,
        records.len()
    );
}

// --- c. SIGKILL mid-flood, then restart --------------------------------------------------

/// Bytes of the executable mappings of `lib` in process `pid` that differ
/// from the file: the breakpoints uprobes wrote into its text.
fn probe_bytes_in(pid: u32, lib: &str) -> usize {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut differing = 0;
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 6 || !f[1].contains('x') || !f[5].ends_with(lib) {
            continue;
        }
        let (start, end) = f[0].split_once('-').unwrap();
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let offset = u64::from_str_radix(f[2], 16).unwrap();
        let mut in_memory = vec![0u8; (end - start) as usize];
        mem.seek(SeekFrom::Start(start)).unwrap();
        mem.read_exact(&mut in_memory).unwrap();
        let mut file = std::fs::File::open(format!("/proc/{pid}/map_files/{}", f[0])).unwrap();
        file.seek(SeekFrom::Start(offset)).unwrap();
        let mut on_disk = vec![0u8; in_memory.len()];
        let n = file.read(&mut on_disk).unwrap_or(0);
        differing += in_memory[..n]
            .iter()
            .zip(&on_disk[..n])
            .filter(|(a, b)| a != b)
            .count();
    }
    differing
}

/// Other tlsdoctor agents on the machine (other test binaries): their
/// probes on the same files would show in [`probe_bytes_in`].
fn other_agents(ours: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != ours && alive(pid))
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/exe"))
                .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "agent"))
                // `agent run`, loaded or still detaching (an agent a
                // previous test stopped holds its uprobes for seconds
                // after its programs are gone); not `agent diagnose`.
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|&b| b == 0).nth(1) == Some(b"run"))
        })
        .collect()
}

/// The agent SIGKILLed while failing handshakes flood a server: every
/// program it loaded is gone from the kernel (none left attached), the
/// breakpoints its uprobes wrote into the server's libssl are gone, the
/// server keeps serving, and a restarted agent records new failures.
#[test]
fn sigkill_mid_flood_leaves_nothing_attached_and_a_restart_recovers() {
    let _alone = one_fault_at_a_time();
    require_root();
    // The server's own copy of libssl and libcrypto: the probes in it are
    // this test's agent's (and those of agents other tests run meanwhile).
    let libs = TempDir::new("sigkill-libs");
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(
            Path::new("/usr/lib/x86_64-linux-gnu").join(lib),
            libs.join(lib),
        )
        .unwrap();
    }
    let libdir = libs.path().display().to_string();
    let site = site_with_env(&[("LD_LIBRARY_PATH", &libdir)]);
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    let load = FailureLoad::start(site.port, 2, Duration::from_millis(2));
    agent.wait_for(site.port, "failures during the flood", |rs| rs.len() >= 10);
    let workers: Vec<u32> = nginx_workers(site.server.pid);
    assert!(!workers.is_empty());
    let progs = bpf_prog_ids_of(pid);
    let attachments = attachment_fds_of(pid);
    let probed = wait_until(
        "the agent's uprobes in the server's libssl",
        Duration::from_secs(30),
        || Some(probe_bytes_in(workers[0], &format!("{libdir}/libssl.so.3"))).filter(|&n| n > 0),
        || agent.log(),
    );
    assert!(
        !progs.is_empty() && attachments > 0,
        "{progs:?} {attachments}"
    );
    let made_at_kill = load.made();

    signal(pid, libc::SIGKILL);
    wait_until(
        "the agent to die",
        Duration::from_secs(10),
        || (!alive(pid)).then_some(()),
        String::new,
    );
    let unloaded_after = Instant::now();
    wait_until(
        "every program of the killed agent to leave the kernel",
        Duration::from_secs(30),
        || {
            let loaded: BTreeSet<u32> = loaded_bpf_prog_ids().into_iter().collect();
            progs.iter().all(|p| !loaded.contains(p)).then_some(())
        },
        || format!("{progs:?}"),
    );
    let unloaded_in = unloaded_after.elapsed();
    let uprobe_events =
        std::fs::read_to_string("/sys/kernel/tracing/uprobe_events").unwrap_or_default();
    assert!(
        !uprobe_events.contains(&format!("aya_{pid}_")),
        "tracefs uprobes of the killed agent left behind:\n{uprobe_events}"
    );
    let others = other_agents(pid);
    let libssl = format!("{libdir}/libssl.so.3");
    let left = probe_bytes_in(workers[0], &libssl);
    if others.is_empty() {
        // The kernel takes the breakpoints out as the dead agent's perf
        // events are released, one uprobe at a time, which can outlast the
        // release of its programs by a moment.
        wait_until(
            "the killed agent's breakpoints to leave the server's libssl",
            Duration::from_secs(15),
            || (probe_bytes_in(workers[0], &libssl) == 0).then_some(()),
            || format!("{} bytes still differ", probe_bytes_in(workers[0], &libssl)),
        );
    } else {
        eprintln!(
            "other agents run ({others:?}): their probes may remain in the server's libssl \
             ({left} bytes differ); not asserted"
        );
    }
    for w in &workers {
        assert!(alive(*w), "nginx worker {w} died with the agent");
    }
    site.assert_serving("after the agent's SIGKILL");
    let made_before_restart = load.made();
    assert!(made_before_restart > made_at_kill, "the flood goes on");

    // Restarted, it rebuilds its state and records new failures.
    drop(agent);
    let agent = Agent::start(&[]);
    let restarted = Instant::now();
    agent.wait_for(site.port, "failures seen by the restarted agent", |rs| {
        rs.iter().any(|r| r.role == Role::Client) && rs.iter().any(|r| r.role == Role::Server)
    });
    let recorded_in = restarted.elapsed();
    let made = load.stop();
    site.assert_serving("after the restart");
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    eprintln!(
        "SIGKILL: {} programs and {attachments} attachments (perf events, links) held, {probed} breakpoint bytes in \
         the server's libssl; programs gone {unloaded_in:?} after the death, {left} bytes still \
         differing; restarted agent recorded a failure within {recorded_in:?}; {made} handshakes \
         in the flood",
        progs.len()
    );
}

/// nginx's worker processes (children of its master).
fn nginx_workers(master: u32) -> Vec<u32> {
    wait_until(
        "nginx's workers",
        Duration::from_secs(10),
        || {
            let children =
                std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).ok()?;
            let pids: Vec<u32> = children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect();
            (!pids.is_empty()).then_some(pids)
        },
        String::new,
    )
}

// --- d. many short-lived client processes ------------------------------------------------

/// Short-lived `openssl s_client` processes, each failing its handshake,
/// from 8 threads for 20 s (as many per second as two shared cores
/// allow): the agent keeps running, records each client's failure or
/// counts what it lost, and its memory stays bounded.
#[test]
fn many_short_lived_client_processes() {
    let _alone = one_fault_at_a_time();
    const FOR: Duration = Duration::from_secs(20);
    const THREADS: usize = 8;
    require_root();
    let site = site();
    let agent = Agent::start(&[]);
    let pid = agent.pid();
    let rss_start = rss_anon_kib(pid).unwrap();
    let started = Instant::now();
    let port = site.port;
    let spawners: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                while started.elapsed() < FOR {
                    let child = Command::new("openssl")
                        .args(["s_client", "-connect"])
                        .arg(format!("127.0.0.1:{port}"))
                        .args(["-servername", "localhost", "-verify_return_error"])
                        .stdin(Stdio::null())
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn();
                    if let Ok(mut child) = child {
                        pids.push(child.id());
                        let _ = child.wait();
                    }
                }
                pids
            })
        })
        .collect();
    let mut max_rss = rss_start;
    while started.elapsed() < FOR {
        max_rss = max_rss.max(rss_anon_kib(pid).expect("the agent runs"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let pids: BTreeSet<u32> = spawners
        .into_iter()
        .flat_map(|s| s.join().unwrap())
        .collect();
    let elapsed = started.elapsed();
    let rate = pids.len() as f64 / elapsed.as_secs_f64();
    assert!(alive(pid), "the agent died:\n{}", agent.log());

    // Each client's failure is journaled, or the agent counted a loss.
    let (missing, lost) = wait_until(
        "a record of every client, or a counted loss",
        Duration::from_secs(60),
        || {
            max_rss = max_rss.max(rss_anon_kib(pid)?);
            let recorded: BTreeSet<u32> = agent
                .records_for_port(port)
                .iter()
                .filter(|r| r.role == Role::Client)
                .filter_map(|r| r.client.pid)
                .collect();
            let missing = pids.difference(&recorded).count() as u64;
            let status = agent.status()?;
            let lost = status["kernel"]["ringbuf_full"].as_u64().unwrap_or(0)
                + status["dropped_outcomes"].as_u64().unwrap_or(0);
            (missing == 0 || missing <= lost).then_some((missing, lost))
        },
        || {
            format!(
                "{} clients; status {:#}\n{}",
                pids.len(),
                agent.status().unwrap_or_default(),
                agent.log()
            )
        },
    );
    eprintln!(
        "short-lived clients: {} processes in {elapsed:?} ({rate:.0}/s from {THREADS} threads), \
         {missing} without a record, {lost} losses counted; agent RSS {rss_start} → max \
         {max_rss} KiB",
        pids.len()
    );
    assert!(
        max_rss < MAX_RSS_KIB,
        "agent RSS reached {max_rss} KiB (started at {rss_start})"
    );
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    site.assert_serving("after the client flood");
}

// --- e. a traced server killed inside a handshake ----------------------------------------

/// Whether an established connection to local `port` holds unread bytes
/// at the server's end (a ClientHello nobody accepted yet).
fn unread_bytes_at(port: u16) -> bool {
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            let rx_queue = f
                .get(4)
                .and_then(|q| q.split_once(':'))
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok());
            // 01: ESTABLISHED.
            local_port == Some(port) && f.get(3) == Some(&"01") && rx_queue.unwrap_or(0) > 0
        })
}

const MID_HANDSHAKE_CLIENT: &str = r#"
import ssl, socket, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
s = socket.create_connection(("127.0.0.1", PORT), timeout=10)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
s.sendall(outgoing.read())
flight = b""
while b"\x0e\x00\x00\x00" not in flight:  # ServerHelloDone
    chunk = s.recv(65536)
    if not chunk:
        break
    flight += chunk
print("flight", len(flight), flush=True)
sys.stdin.readline()  # the server is killed here
incoming.write(flight)
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
try:
    s.sendall(outgoing.read())
    reply = s.recv(65536)
    print("reply", len(reply), flush=True)
except OSError as e:
    print("error", e, flush=True)
    sys.exit(1)
sys.exit(0 if reply else 1)
"#;

/// `openssl s_server` (it calls `SSL_accept` itself) killed twice inside a
/// handshake: once stopped (SIGSTOP) with a client's ClientHello queued,
/// then SIGKILLed; once SIGKILLed after it sent its TLS 1.2 flight and
/// while it waits for the client's. Each client's failure is recorded;
/// the agent logs no error.
#[test]
fn a_traced_server_killed_inside_a_handshake() {
    let _alone = one_fault_at_a_time();
    require_root();
    let pki = Pki::new();
    let mut spec = LeafSpec::new("localhost");
    spec.issuer = Issuer::Root;
    let leaf = pki.leaf(&spec);
    let agent = Agent::start(&[]);

    // Stopped, then killed, with the ClientHello unread.
    let port = free_port();
    let server = tlsdoctor_tests::servers::s_server_console(port, &leaf.cert, &leaf.key, &[]);
    signal(server.pid, libc::SIGSTOP);
    let script = format!(
        "import ssl, socket\nctx = ssl.create_default_context()\nctx.load_verify_locations({:?})\n\
         s = socket.create_connection(('127.0.0.1', {port}), timeout=15)\n\
         ctx.wrap_socket(s, server_hostname='localhost')\n",
        pki.ca_file.display().to_string()
    );
    let client = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stopped_pid = client.id();
    wait_until(
        "the ClientHello queued at the stopped server",
        Duration::from_secs(15),
        || unread_bytes_at(port).then_some(()),
        String::new,
    );
    signal(server.pid, libc::SIGKILL);
    let out = client.wait_with_output().unwrap();
    assert!(!out.status.success(), "the handshake cannot succeed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stopped = agent.wait_for(port, "the client's failure (stopped server)", |rs| {
        rs.iter()
            .any(|r| r.role == Role::Client && r.client.pid == Some(stopped_pid))
    });
    drop(server);

    // Killed after its flight, waiting for the client's.
    let port = free_port();
    let server = tlsdoctor_tests::servers::s_server_console(port, &leaf.cert, &leaf.key, &[]);
    let mut client = Command::new("python3")
        .arg("-c")
        .arg(MID_HANDSHAKE_CLIENT.replace("PORT", &port.to_string()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let killed_pid = client.id();
    let server_pid = server.pid;
    let mut lines = BufReader::new(client.stdout.take().unwrap()).lines();
    let flight = lines.next().unwrap().unwrap();
    assert!(flight.starts_with("flight "), "{flight}");
    signal(server.pid, libc::SIGKILL);
    wait_until(
        "s_server to die",
        Duration::from_secs(10),
        || (!alive(server.pid)).then_some(()),
        String::new,
    );
    writeln!(client.stdin.take().unwrap()).unwrap();
    let after: Vec<String> = lines.map_while(Result::ok).collect();
    let status = client.wait().unwrap();
    assert!(
        !status.success(),
        "the handshake cannot complete: {after:?}"
    );
    let killed = agent.wait_for(port, "the client's failure (killed server)", |rs| {
        rs.iter()
            .any(|r| r.role == Role::Client && r.client.pid == Some(killed_pid))
    });
    drop(server);

    let describe = |rs: &[HandshakeOutcome], pid: u32| {
        rs.iter()
            .filter(|r| r.client.pid == Some(pid) || r.role == Role::Server)
            .map(|r| {
                format!(
                    "{:?} {} (reset {:?}, closed_by {:?})",
                    r.role,
                    r.cause.id(),
                    r.socket.reset_by_peer,
                    r.socket.closed_by
                )
            })
            .collect::<Vec<_>>()
    };
    let client_of = |rs: &[HandshakeOutcome], pid: u32| {
        rs.iter()
            .find(|r| r.role == Role::Client && r.client.pid == Some(pid))
            .cloned()
            .unwrap()
    };
    let c = client_of(&stopped, stopped_pid);
    assert!(
        c.is_failure() && c.socket.reset_by_peer,
        "the kernel reset the unaccepted connection: {c:#?}"
    );
    let c = client_of(&killed, killed_pid);
    assert!(
        c.is_failure() && c.socket.closed_by.as_deref() == Some("peer"),
        "the dying server closed the connection: {c:#?}"
    );
    assert!(
        killed.iter().any(|r| r.role == Role::Server
            && r.client.port == c.client.port
            && r.server.pid == Some(server_pid)),
        "the killed server's end is recorded too: {killed:#?}"
    );
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    assert!(alive(agent.pid()));
    eprintln!(
        "server killed in a handshake: stopped then killed -> {:?} (client: {}); killed after \
         its flight -> {:?} (client: {after:?})",
        describe(&stopped, stopped_pid),
        stderr.lines().last().unwrap_or_default(),
        describe(&killed, killed_pid)
    );
}

// --- f. ring buffer overflow -------------------------------------------------------------

/// The smallest ring buffer (1 MiB) and the agent stopped (SIGSTOP) while
/// a burst of failing handshakes fills it: once it runs again, the loss is
/// counted in status.json (`kernel.ringbuf_full`) and /metrics
/// (`tlsdoctor_kernel_events_lost_total{reason="ringbuf_full"}`), logged,
/// a warning in /readyz (still 200), and later failures are recorded.
#[test]
fn ring_buffer_overflow_is_counted_and_reported() {
    let _alone = one_fault_at_a_time();
    require_root();
    let site = site();
    let metrics_port = free_port();
    let mut flags = metrics_flags(metrics_port);
    flags.extend(["--ringbuf-mib".into(), "1".into()]);
    let agent = Agent::start(&args(&flags));
    let pid = agent.pid();
    agent.wait_for(site.port, "a failure before the burst", |rs| {
        failing_handshakes(site.port, 1);
        !rs.is_empty()
    });

    signal(pid, libc::SIGSTOP);
    let load = FailureLoad::start(site.port, 2, Duration::ZERO);
    while load.made() < 1500 {
        std::thread::sleep(Duration::from_millis(50));
    }
    let burst = load.stop();
    signal(pid, libc::SIGCONT);

    let lost = wait_until(
        "status.json to count ring buffer losses",
        Duration::from_secs(30),
        || {
            agent
                .status()?
                .get("kernel")?
                .get("ringbuf_full")?
                .as_u64()
                .filter(|&n| n > 0)
        },
        || format!("{:#}", agent.status().unwrap_or_default()),
    );
    let (_, page) = scrape(metrics_port, "/metrics");
    let metric = sample(
        &page,
        "tlsdoctor_kernel_events_lost_total{reason=\"ringbuf_full\"}",
    )
    .unwrap_or(0.0);
    assert!(metric > 0.0, "{page}");
    let (code, body) = scrape(metrics_port, "/readyz");
    assert_eq!(code, 200, "a loss must not make the agent unready: {body}");
    assert!(body.contains("warning: events lost"), "{body}");
    wait_until(
        "the loss in the agent's log",
        Duration::from_secs(10),
        || agent.log().contains("ring buffer full").then_some(()),
        || agent.log(),
    );
    let before = agent.records_for_port(site.port).len();
    agent.wait_for(site.port, "failures after the overflow", |rs| {
        failing_handshakes(site.port, 1);
        rs.len() > before
    });
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    eprintln!(
        "ring buffer overflow: {burst} handshakes while the agent was stopped; {lost} events \
         lost (status), {metric} (metrics)"
    );
}

// --- g. libssl replaced on disk while probed ---------------------------------------------

/// A server and clients using their own copy of libssl and libcrypto
/// (`LD_LIBRARY_PATH`), probed; then both files replaced as a package
/// upgrade does (a new file renamed over the old): the running server,
/// still on the old (now deleted) files with the agent's probes in them,
/// keeps serving, and a client started afterwards, on the new files, is
/// still diagnosed with OpenSSL's own facts.
#[test]
fn libssl_replaced_on_disk_while_probed() {
    let _alone = one_fault_at_a_time();
    require_root();
    let libs = TempDir::new("replaced-libs");
    let system = Path::new("/usr/lib/x86_64-linux-gnu");
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        std::fs::copy(system.join(lib), libs.join(lib)).unwrap();
    }
    let libdir = libs.path().display().to_string();
    let env = [("LD_LIBRARY_PATH", libdir.as_str())];
    let site = site_with_env(&env);
    let agent = Agent::start(&[]);
    let openssl_diagnosed = |pid: u32, what: &str| -> HandshakeOutcome {
        let records = agent.wait_for(site.port, what, |rs| {
            rs.iter()
                .any(|r| r.role == Role::Client && r.client.pid == Some(pid))
        });
        let r = records
            .into_iter()
            .find(|r| r.role == Role::Client && r.client.pid == Some(pid))
            .unwrap();
        assert!(
            !r.openssl.errors.is_empty() || r.openssl.verify_result.is_some(),
            "{what}: no OpenSSL facts (the copy is not probed):\n{}",
            serde_json::to_string_pretty(&r).unwrap()
        );
        r
    };

    let probed_copies = || -> Vec<String> {
        agent.status().unwrap_or_default()["libraries"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["path"].as_str())
            .filter(|p| p.starts_with(libdir.as_str()))
            .map(str::to_string)
            .collect()
    };
    wait_until(
        "the agent to probe the server's copy of libssl",
        Duration::from_secs(30),
        || {
            let copies = probed_copies();
            copies
                .iter()
                .any(|p| p.ends_with("libssl.so.3"))
                .then_some(copies)
        },
        || format!("{:#}", agent.status().unwrap_or_default()["libraries"]),
    );

    // Before: a client on the copy is diagnosed from its probes.
    let run = python_tls(site.port, "localhost", None, 1.5, &env);
    assert!(!run.success, "{}", run.stderr);
    openssl_diagnosed(run.pid, "a client on the private libssl");

    // The upgrade: new files renamed over the old ones.
    for lib in ["libssl.so.3", "libcrypto.so.3"] {
        let staged = libs.join(&format!("{lib}.new"));
        std::fs::copy(system.join(lib), &staged).unwrap();
        std::fs::rename(&staged, libs.join(lib)).unwrap();
    }
    let workers = nginx_workers(site.server.pid);
    for w in &workers {
        let maps = std::fs::read_to_string(format!("/proc/{w}/maps")).unwrap();
        assert!(
            maps.contains(&format!("{libdir}/libssl.so.3 (deleted)")),
            "the worker still maps the replaced file"
        );
    }
    site.assert_serving("after libssl was replaced");
    let load = FailureLoad::start(site.port, 1, Duration::from_millis(20));
    wait_until(
        "the server to keep handshaking",
        Duration::from_secs(10),
        || (load.made() >= 20).then_some(()),
        String::new,
    );
    drop(load);
    for w in &workers {
        assert!(alive(*w), "nginx worker {w} died");
    }

    // After: a client on the new files is diagnosed from its probes.
    let run = python_tls(site.port, "localhost", None, 2.5, &env);
    assert!(!run.success, "{}", run.stderr);
    let r = openssl_diagnosed(run.pid, "a client on the replaced libssl");
    site.assert_serving("at the end");
    assert!(agent_errors(&agent).is_empty(), "{}", agent.log());
    eprintln!(
        "libssl replaced: server kept serving; a later client diagnosed {} with OpenSSL facts {:?}",
        r.cause.id(),
        r.openssl.reasons
    );
}
