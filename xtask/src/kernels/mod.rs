//! `cargo xtask kernels`: boots each kernel of the matrix in qemu and runs
//! the capture checks inside, against the agent of the current tree (or any
//! agent binary given), then writes a report.
//!
//! The guest is the host itself, seen read-only: its root filesystem is
//! shared over virtiofs under a tmpfs overlay (`init.sh`), so the guest has
//! the very agent binary, capture test binary, OpenSSL, nginx, curl, Python
//! and Java the host tests use, and nothing it writes reaches the host but
//! the results directory. The guest has no network beyond loopback.
//!
//! In each guest (`guest.sh`): the agent is started alone (does it load,
//! does the verifier accept every program, do the uprobes attach, what does
//! `status.json` say), then `tests/tests/capture.rs` runs.

mod fetch;
mod vm;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo_bin, dpkg_installed, run};
pub use vm::Accel;

const INIT_SH: &str = include_str!("init.sh");
const GUEST_SH: &str = include_str!("guest.sh");
/// Capture tests that need a client to act within a fixed time of its
/// start, which a TCG guest (many times slower than the host: see each
/// kernel's timings in the report) does not give them on any kernel. Under
/// TCG they are skipped unless `--all-tests`, and the report lists them.
const TCG_TIMING_BOUND: &[(&str, &str)] = &[
    (
        "java_client_failure_is_recorded_from_the_wire",
        "the JVM must finish its handshake within the harness's 20 s client timeout",
    ),
    (
        "a_client_with_its_own_libssl_started_after_the_agent_is_covered",
        "python must map its private libssl within the agent's last post-exec scan (2 s)",
    ),
];
/// Host tools the matrix runs.
const HOST_PACKAGES: &[&str] = &["qemu-system-x86", "qemu-utils", "cpio", "xz-utils"];

#[derive(clap::Args, Debug)]
pub struct KernelsArgs {
    /// Only the kernels whose name contains one of these (e.g. `6.1`).
    #[arg(long = "only")]
    only: Vec<String>,
    /// Test this agent binary instead of building the current tree's.
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Test this capture test binary instead of building the current tree's.
    #[arg(long)]
    capture_test: Option<PathBuf>,
    /// Also boot this kernel image (with `--modules`).
    #[arg(long, requires = "modules")]
    kernel_image: Option<PathBuf>,
    /// `lib/modules/VERSION` of `--kernel-image`.
    #[arg(long, requires = "kernel_image")]
    modules: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    accel: Accel,
    /// Guest memory.
    #[arg(long, default_value_t = 3072)]
    memory_mib: u32,
    /// Per kernel, boot to power-off.
    #[arg(long, default_value_t = 40)]
    timeout_minutes: u64,
    /// Under TCG, also run the tests listed as timing-bound there.
    #[arg(long)]
    all_tests: bool,
    /// Where the report is written.
    #[arg(long, default_value = "target/kernels-report.md")]
    report: PathBuf,
    /// Arguments for the capture test binary (e.g. a test name).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    test_args: Vec<String>,
}

/// What a kernel of the matrix must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Load, attach, pass the capture test.
    Capture,
    /// Below the floor: the agent must refuse at start with one sentence.
    RefuseAtStart,
}

enum Source {
    /// A Debian meta package, from the host's apt lists (`suite: None`) or
    /// from another release's lists kept in the cache.
    Debian {
        suite: Option<&'static str>,
        meta: &'static str,
    },
    Host,
    Given {
        image: PathBuf,
        modules: PathBuf,
    },
}

struct MatrixKernel {
    name: String,
    what: &'static str,
    source: Source,
    expect: Expect,
}

fn matrix(args: &KernelsArgs) -> Vec<MatrixKernel> {
    let mut kernels = vec![
        MatrixKernel {
            name: "debian-11-5.10".into(),
            what: "Debian 11 cloud kernel (5.10: below the floor, no bpf_loop)",
            source: Source::Debian {
                suite: Some("bullseye"),
                meta: "linux-image-cloud-amd64",
            },
            expect: Expect::RefuseAtStart,
        },
        MatrixKernel {
            name: "debian-12-6.1".into(),
            what: "Debian 12 cloud kernel (6.1: Debian 12, Amazon Linux 2023 class)",
            source: Source::Debian {
                suite: None,
                meta: "linux-image-cloud-amd64",
            },
            expect: Expect::Capture,
        },
        MatrixKernel {
            name: "debian-12-6.12".into(),
            what: "Debian 12 backports cloud kernel (6.12)",
            source: Source::Debian {
                suite: None,
                meta: "linux-image-6.12-cloud-amd64",
            },
            expect: Expect::Capture,
        },
        MatrixKernel {
            name: "host".into(),
            what: "this host's own kernel",
            source: Source::Host,
            expect: Expect::Capture,
        },
    ];
    if let (Some(image), Some(modules)) = (&args.kernel_image, &args.modules) {
        kernels.push(MatrixKernel {
            name: format!(
                "given-{}",
                modules.file_name().unwrap_or_default().to_string_lossy()
            ),
            what: "given with --kernel-image",
            source: Source::Given {
                image: image.clone(),
                modules: modules.clone(),
            },
            expect: Expect::Capture,
        });
    }
    kernels.retain(|k| args.only.is_empty() || args.only.iter().any(|o| k.name.contains(o)));
    kernels
}

/// One kernel's result, for the report.
struct Outcome {
    name: String,
    what: &'static str,
    expect: Expect,
    release: String,
    verdict: Verdict,
    duration: Duration,
    details: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Pass(String),
    Fail(String),
    Skipped(String),
}

pub fn kernels(root: &Path, args: KernelsArgs) -> Result<()> {
    crate::require_root()?;
    install_host_tools()?;
    let kernels = matrix(&args);
    if kernels.is_empty() {
        bail!("no kernel of the matrix matches --only {:?}", args.only);
    }
    let (agent, capture) = binaries(root, &args)?;
    let (accel, why) = args.accel.resolve();
    println!("xtask: guests run under {accel:?} ({why})");
    let skipped_tests: &[(&str, &str)] = if accel == Accel::Tcg && !args.all_tests {
        TCG_TIMING_BOUND
    } else {
        &[]
    };
    let mut test_args = args.test_args.clone();
    for (test, _) in skipped_tests {
        test_args.extend(["--skip".to_string(), (*test).to_string()]);
    }
    let cache = fetch::cache_dir()?;
    let busybox = fetch::busybox(&cache)?;
    let work = root.join("target/kernels");
    fs::create_dir_all(&work)?;
    let mut outcomes = Vec::new();
    for kernel in &kernels {
        let started = Instant::now();
        println!("xtask: kernel {} ({})", kernel.name, kernel.what);
        let outcome = match kernel_files(&cache, &kernel.source) {
            Err(e) => Outcome {
                name: kernel.name.clone(),
                what: kernel.what,
                expect: kernel.expect,
                release: String::new(),
                verdict: Verdict::Skipped(format!("{e:#}")),
                duration: started.elapsed(),
                details: String::new(),
            },
            Ok(files) => {
                let guest = GuestRun {
                    dir: work.join(&kernel.name),
                    files: &files,
                    busybox: &busybox,
                    agent: &agent,
                    capture: &capture,
                    test_args: &test_args,
                    accel,
                    memory_mib: args.memory_mib,
                    timeout: Duration::from_secs(args.timeout_minutes * 60),
                };
                match guest.run_retrying_early_panics() {
                    Ok(boots) => {
                        let mut outcome = judge(kernel, &files, &guest.dir, started.elapsed());
                        if boots > 1 {
                            outcome.details.insert_str(
                                0,
                                &format!(
                                    "Booted {boots} times: the guest kernel panicked before \
                                     its init ran (TCG emulation; see docs/kernels.md).\n\n"
                                ),
                            );
                        }
                        outcome
                    }
                    Err(e) => Outcome {
                        name: kernel.name.clone(),
                        what: kernel.what,
                        expect: kernel.expect,
                        release: files.release.clone(),
                        verdict: Verdict::Fail(format!("the guest could not run: {e:#}")),
                        duration: started.elapsed(),
                        details: String::new(),
                    },
                }
            }
        };
        println!(
            "xtask: kernel {}: {}",
            outcome.name,
            verdict_line(&outcome.verdict)
        );
        outcomes.push(outcome);
    }
    let report = render_report(&outcomes, &agent, accel, why, skipped_tests);
    let report_path = root.join(&args.report);
    if let Some(dir) = report_path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(&report_path, report)?;
    println!("xtask: kernel matrix report: {}", report_path.display());
    for o in &outcomes {
        println!(
            "  {:<16} {:<28} {}",
            o.name,
            o.release,
            verdict_line(&o.verdict)
        );
    }
    if outcomes
        .iter()
        .any(|o| matches!(o.verdict, Verdict::Fail(_)))
    {
        bail!("the kernel matrix failed (see {})", report_path.display());
    }
    Ok(())
}

fn install_host_tools() -> Result<()> {
    let missing: Vec<&str> = HOST_PACKAGES
        .iter()
        .copied()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        println!("xtask: installing Debian packages: {}", missing.join(" "));
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
    }
    Ok(())
}

/// The agent and capture test binaries: given, or built from this tree.
fn binaries(root: &Path, args: &KernelsArgs) -> Result<(PathBuf, PathBuf)> {
    let agent = match &args.agent {
        Some(agent) => agent.clone(),
        None => {
            crate::cargo(&["build", "-p", "agent"])?;
            root.join("target/debug/agent")
        }
    };
    let capture = match &args.capture_test {
        Some(capture) => capture.clone(),
        None => capture_test_binary()?,
    };
    for bin in [&agent, &capture] {
        if !bin.exists() {
            bail!("{} does not exist", bin.display());
        }
    }
    // The guest sees the host's root filesystem: paths must be absolute.
    Ok((fs::canonicalize(agent)?, fs::canonicalize(capture)?))
}

/// Builds `tests/tests/capture.rs` and returns its executable.
fn capture_test_binary() -> Result<PathBuf> {
    let out = Command::new(cargo_bin())
        .args([
            "test",
            "-p",
            "tlsdoctor-tests",
            "--test",
            "capture",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("building the capture test")?;
    if !out.status.success() {
        bail!("building the capture test failed");
    }
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact"
            && msg["target"]["name"] == "capture"
            && let Some(exe) = msg["executable"].as_str()
        {
            return Ok(PathBuf::from(exe));
        }
    }
    bail!("cargo named no executable for the capture test")
}

fn kernel_files(cache: &Path, source: &Source) -> Result<fetch::KernelFiles> {
    match source {
        Source::Host => fetch::host_kernel(),
        Source::Given { image, modules } => Ok(fetch::KernelFiles {
            image: image.clone(),
            modules: modules.clone(),
            release: modules
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned(),
        }),
        Source::Debian { suite, meta } => {
            let apt_options = match suite {
                None => Vec::new(),
                Some(suite) => other_release_apt(cache, suite)?,
            };
            let package = fetch::resolve_meta(meta, &apt_options)?;
            let tree = fetch::unpacked_package(cache, &package, &apt_options)?;
            fetch::kernel_in_tree(&tree)
        }
    }
}

/// apt options that read another Debian release's package lists, kept in
/// the cache (fetched once from the mirror the host's own apt sources use);
/// the host's apt configuration is not touched.
fn other_release_apt(cache: &Path, suite: &str) -> Result<Vec<String>> {
    let dir = cache.join(format!("apt-{suite}"));
    let lists = dir.join("lists");
    let sources = dir.join("sources.list");
    let options = vec![
        "-o".to_string(),
        format!("Dir::Etc::SourceList={}", sources.display()),
        "-o".into(),
        format!("Dir::Etc::SourceParts={}", dir.join("none").display()),
        "-o".into(),
        format!("Dir::State::Lists={}", lists.display()),
        "-o".into(),
        format!("Dir::Cache={}", dir.join("cache").display()),
    ];
    if lists.join(".updated").exists() {
        return Ok(options);
    }
    let mirror = host_debian_mirror()?;
    for sub in ["lists/partial", "cache/archives/partial", "none"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    fs::write(&sources, format!("deb {mirror} {suite} main\n"))?;
    println!("xtask: fetching the package lists of Debian {suite} (once, into the cache)");
    run(Command::new("apt-get")
        .args(&options)
        .args(["update", "-q"]))?;
    fs::write(lists.join(".updated"), b"")?;
    Ok(options)
}

/// The Debian archive URI of the host's apt sources.
fn host_debian_mirror() -> Result<String> {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(dir) = fs::read_dir("/etc/apt/sources.list.d") {
        files.extend(dir.filter_map(|e| e.ok().map(|e| e.path())));
    }
    for file in files {
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        for line in text.lines() {
            let line = line.trim();
            let uris = line
                .strip_prefix("URIs:")
                .map(|u| u.split_whitespace().collect::<Vec<_>>())
                .or_else(|| {
                    line.strip_prefix("deb ")
                        .map(|rest| rest.split_whitespace().take(1).collect())
                })
                .unwrap_or_default();
            if let Some(uri) = uris
                .into_iter()
                .find(|u| u.trim_end_matches('/').ends_with("/debian"))
            {
                return Ok(uri.to_string());
            }
        }
    }
    bail!("no Debian archive in the host's apt sources")
}

struct GuestRun<'a> {
    dir: PathBuf,
    files: &'a fetch::KernelFiles,
    busybox: &'a Path,
    agent: &'a Path,
    capture: &'a Path,
    test_args: &'a [String],
    accel: Accel,
    memory_mib: u32,
    timeout: Duration,
}

/// Boots per kernel when the guest panics before its init runs.
const MAX_BOOTS: u32 = 3;

impl GuestRun<'_> {
    /// [`GuestRun::run`], booting again when the kernel panicked before
    /// init ran anything: multi-threaded TCG occasionally breaks the
    /// kernel's early code patching (an `int3` Oops in `sched_clock_cpu`,
    /// seen once on 6.12 here), which says nothing about the kernel.
    /// Returns how many boots it took.
    fn run_retrying_early_panics(&self) -> Result<u32> {
        for boot in 1..=MAX_BOOTS {
            self.run()?;
            let ran = self.dir.join("results/uname").exists();
            let console = fs::read_to_string(self.dir.join("console.log")).unwrap_or_default();
            if ran || !console.contains("Kernel panic") || boot == MAX_BOOTS {
                return Ok(boot);
            }
            let _ = fs::rename(
                self.dir.join("console.log"),
                self.dir.with_file_name(format!(
                    "{}-panicked-boot-{boot}.log",
                    self.dir.file_name().unwrap_or_default().to_string_lossy()
                )),
            );
            println!("xtask: the guest kernel panicked before init; booting again");
        }
        Ok(MAX_BOOTS)
    }

    fn run(&self) -> Result<()> {
        let _ = fs::remove_dir_all(&self.dir);
        let results = self.dir.join("results");
        let scratch = self.dir.join("scratch");
        fs::create_dir_all(&results)?;
        fs::create_dir_all(&scratch)?;
        let initramfs = self.dir.join("initramfs.gz");
        fetch::build_initramfs(self.files, self.busybox, INIT_SH, &initramfs)?;
        fs::write(results.join("guest.sh"), GUEST_SH)?;
        let mut capture_args = vec!["--test-threads".to_string(), "1".into()];
        capture_args.extend(self.test_args.iter().cloned());
        fs::write(
            results.join("guest.env"),
            format!(
                "AGENT_BIN={}\nCAPTURE_BIN={}\nCAPTURE_ARGS={}\nSTART_TIMEOUT_S=300\n",
                shell_quote(&self.agent.to_string_lossy()),
                shell_quote(&self.capture.to_string_lossy()),
                shell_quote(&capture_args.join(" ")),
            ),
        )?;
        let end = vm::boot(&vm::Boot {
            image: &self.files.image,
            initramfs: &initramfs,
            results: &results,
            scratch: &scratch,
            console_log: &self.dir.join("console.log"),
            accel: self.accel,
            memory_mib: self.memory_mib,
            cpus: 2,
            timeout: self.timeout,
        })?;
        fs::write(self.dir.join("boot-end"), format!("{end:?}\n"))?;
        let _ = fs::remove_dir_all(&scratch);
        match end {
            vm::BootEnd::PoweredOff => Ok(()),
            vm::BootEnd::QemuFailed(why) => bail!("qemu failed: {why}"),
            vm::BootEnd::TimedOut => bail!(
                "the guest did not power off within {} min (console: {})",
                self.timeout.as_secs() / 60,
                self.dir.join("console.log").display()
            ),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Reads a guest's results and decides.
fn judge(
    kernel: &MatrixKernel,
    files: &fetch::KernelFiles,
    dir: &Path,
    duration: Duration,
) -> Outcome {
    let results = dir.join("results");
    let read = |name: &str| fs::read_to_string(results.join(name)).unwrap_or_default();
    let release = match read("uname").trim() {
        "" => files.release.clone(),
        r => r.to_string(),
    };
    let state = read("agent-start.state").trim().to_string();
    let agent_log = read("agent-start.log");
    let mut details = String::new();
    let timings = read("timings");
    if !timings.is_empty() {
        let _ = writeln!(
            details,
            "Guest speed: {}\n",
            timings.trim().replace('\n', "; ")
        );
    }
    let verdict = if state.is_empty() {
        let _ = writeln!(
            details,
            "The guest ran nothing; console tail:\n\n```\n{}\n```",
            tail(
                &fs::read_to_string(dir.join("console.log")).unwrap_or_default(),
                40
            )
        );
        Verdict::Fail("the guest did not run the checks".into())
    } else if state != "capturing" {
        let error = agent_log
            .lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .unwrap_or("(no error line)")
            .to_string();
        let _ = writeln!(
            details,
            "Agent start ({state}), its log:\n\n```\n{}\n```",
            tail(&agent_log, 200)
        );
        match kernel.expect {
            Expect::RefuseAtStart if state == "exited" && is_one_clear_sentence(&error) => {
                Verdict::Pass(format!("refused at start, as expected: {error}"))
            }
            Expect::RefuseAtStart => Verdict::Fail(format!(
                "must refuse at start with one clear sentence; got ({state}): {error}"
            )),
            Expect::Capture => Verdict::Fail(match verifier_rejection(&agent_log) {
                Some(rejection) => rejection,
                None => format!("the agent did not start: {error}"),
            }),
        }
    } else {
        let status = check_status(&read("status.json"));
        let capture_log = read("capture.log");
        let capture_rc = read("capture.rc").trim().to_string();
        let summary = capture_log
            .lines()
            .rev()
            .find(|l| l.starts_with("test result:"))
            .unwrap_or("no test result line")
            .to_string();
        let _ = writeln!(details, "status.json: {}", status_line(&status));
        let failed: Vec<&str> = capture_log
            .lines()
            .filter_map(|l| {
                l.strip_prefix("test ")
                    .and_then(|t| t.strip_suffix(" ... FAILED"))
            })
            .collect();
        if capture_rc != "0" {
            let failures = capture_log
                .find("\nfailures:")
                .map(|at| &capture_log[at..])
                .unwrap_or(&capture_log);
            let _ = writeln!(
                details,
                "\nCapture test (exit {capture_rc}), failures:\n\n```\n{}\n```",
                tail(failures, 300)
            );
        }
        match (kernel.expect, &status, capture_rc.as_str()) {
            (Expect::RefuseAtStart, _, _) => Verdict::Fail(
                "the agent started on a kernel below the floor (it must refuse)".into(),
            ),
            (Expect::Capture, Err(e), _) => Verdict::Fail(format!("status.json: {e}")),
            (Expect::Capture, Ok(_), "0") => Verdict::Pass(format!("capture test: {summary}")),
            (Expect::Capture, Ok(_), _) => Verdict::Fail(format!(
                "capture test: {summary}; failed: {}",
                failed.join(", ")
            )),
        }
    };
    Outcome {
        name: kernel.name.clone(),
        what: kernel.what,
        expect: kernel.expect,
        release,
        verdict,
        duration,
        details,
    }
}

/// A verifier rejection in the agent's log, in one line: which program, the
/// verifier's reason (the line before its `verification time` summary) and
/// the instruction it stopped at. The full log is in the report's details.
fn verifier_rejection(log: &str) -> Option<String> {
    let error = log.lines().find(|l| l.contains("Verifier output"))?;
    let program = error
        .split("eBPF program ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap_or("?");
    let lines: Vec<&str> = log.lines().collect();
    let summary = lines
        .iter()
        .position(|l| l.starts_with("verification time"))?;
    let reason = lines.get(summary.checked_sub(1)?)?.trim();
    let insn = summary
        .checked_sub(2)
        .and_then(|i| lines.get(i))
        .map(|l| l.trim())
        .unwrap_or("");
    Some(format!(
        "the verifier rejected {program}: {reason} (at `{insn}`)"
    ))
}

/// The agent's last `error:` line says which Linux it needs, in one short
/// line (not a loader error with a verifier log after it).
fn is_one_clear_sentence(error: &str) -> bool {
    let text = error.trim_start_matches("error:").trim();
    !text.is_empty()
        && text.len() <= 300
        && text.contains("Linux")
        && !text.contains("BPF_PROG_LOAD")
}

/// What status.json says about the kernel side.
struct StatusFacts {
    libraries_probed: usize,
    uprobes_attached: usize,
    kernel_counters: String,
}

fn check_status(text: &str) -> Result<StatusFacts, String> {
    if text.is_empty() {
        return Err("missing".into());
    }
    let status: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let libraries = status["libraries"].as_array().cloned().unwrap_or_default();
    let attached: usize = libraries
        .iter()
        .map(|l| l["attached"].as_array().map_or(0, Vec::len))
        .sum();
    if attached == 0 {
        return Err(format!(
            "no uprobe attached to the system's OpenSSL: {}",
            serde_json::to_string(&status["libraries"]).unwrap_or_default()
        ));
    }
    Ok(StatusFacts {
        libraries_probed: libraries.len(),
        uprobes_attached: attached,
        kernel_counters: serde_json::to_string(&status["kernel"]).unwrap_or_default(),
    })
}

fn status_line(status: &Result<StatusFacts, String>) -> String {
    match status {
        Ok(s) => format!(
            "{} libraries probed, {} uprobes attached; kernel counters {}",
            s.libraries_probed, s.uprobes_attached, s.kernel_counters
        ),
        Err(e) => e.clone(),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn verdict_line(v: &Verdict) -> String {
    match v {
        Verdict::Pass(s) => format!("PASS — {s}"),
        Verdict::Fail(s) => format!("FAIL — {s}"),
        Verdict::Skipped(s) => format!("SKIPPED — {s}"),
    }
}

fn render_report(
    outcomes: &[Outcome],
    agent: &Path,
    accel: Accel,
    why: &str,
    skipped_tests: &[(&str, &str)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Kernel matrix (`cargo xtask kernels`)\n");
    let _ = writeln!(
        out,
        "Agent: `{}`. Guests: qemu, {accel:?} ({why}), 2 vCPUs, the host's root \
         filesystem read-only over virtiofs (tmpfs on /tmp and /run, tmpfs overlays on /var \
         and /root), loopback only. See docs/kernels.md.\n",
        agent.display()
    );
    if !skipped_tests.is_empty() {
        let _ = writeln!(
            out,
            "Skipped under {accel:?} (timing-bound, not kernel-bound; `--all-tests` runs them):\n"
        );
        for (test, why) in skipped_tests {
            let _ = writeln!(out, "- `{test}`: {why}");
        }
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "| kernel | release | expected | result | time |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for o in outcomes {
        let _ = writeln!(
            out,
            "| {} ({}) | {} | {} | {} | {} s |",
            o.name,
            o.what,
            o.release,
            match o.expect {
                Expect::Capture => "capture test passes",
                Expect::RefuseAtStart => "refuses at start",
            },
            verdict_line(&o.verdict).replace('|', "\\|"),
            o.duration.as_secs()
        );
    }
    for o in outcomes.iter().filter(|o| !o.details.is_empty()) {
        let _ = writeln!(out, "\n## {} ({})\n\n{}", o.name, o.release, o.details);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_clear_sentence_has_no_cause_chain() {
        assert!(is_one_clear_sentence(
            "error: loading the eBPF programs: this kernel (5.10.0-32-cloud-amd64) lacks \
             the bpf_loop helper (Linux 5.17), which tlsdoctor's eBPF programs need"
        ));
        assert!(!is_one_clear_sentence(
            "error: loading the eBPF programs: eBPF program x: the BPF_PROG_LOAD syscall failed: invalid argument"
        ));
        assert!(!is_one_clear_sentence("error:"));
    }

    #[test]
    fn verifier_rejection_names_program_reason_and_instruction() {
        let log = "error: loading the eBPF programs: eBPF program sys_exit_read: the \
                   BPF_PROG_LOAD syscall returned Permission denied (os error 13). Verifier \
                   output: reg type unsupported for arg#0 function sys_exit_read#78
0: R1=ctx(off=0,imm=0) R10=fp0
545: (85) call bpf_probe_read_user#112
R2 unbounded memory access, use 'var &= const' or 'if (var < const)'
verification time 78340 usec
stack depth 128+24+0
";
        assert_eq!(
            verifier_rejection(log).unwrap(),
            "the verifier rejected sys_exit_read: R2 unbounded memory access, use 'var &= \
             const' or 'if (var < const)' (at `545: (85) call bpf_probe_read_user#112`)"
        );
        assert_eq!(verifier_rejection("error: something else"), None);
    }

    #[test]
    fn status_without_attached_uprobes_fails() {
        let none = r#"{"libraries":[{"kind":"ssl","path":"/x","attached":[]}],"kernel":{}}"#;
        assert!(check_status(none).is_err());
        let some = r#"{"libraries":[{"kind":"ssl","path":"/x","attached":["a","b"]}],"kernel":{"ringbuf_full":0}}"#;
        let facts = check_status(some).unwrap();
        assert_eq!((facts.libraries_probed, facts.uprobes_attached), (1, 2));
        assert!(check_status("").is_err());
        assert!(check_status("{").is_err());
    }
}
