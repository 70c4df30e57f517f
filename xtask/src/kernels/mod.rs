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
mod verdict;
mod vm;

use verdict::{judge, render_report, verdict_line};

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

use crate::{cargo_cmd, dpkg_installed, run};
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
    let out = cargo_cmd()
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
