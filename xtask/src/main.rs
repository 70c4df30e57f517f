//! Project tasks: `cargo xtask setup | run | test | bench | kernels | fuzz | completions | man`.
//!
//! `run` and `test` first install what is missing on a Debian machine of this
//! kind (idempotent, and fast when everything is present), printing each thing
//! they install.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::{Parser, Subcommand};

mod fuzz;
mod kernels;
#[path = "../../agent-ebpf/toolchain.rs"]
mod toolchain;

#[derive(Parser)]
#[command(name = "xtask", about = "tlsdoctor project tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install the toolchain and test dependencies that are missing.
    Setup {
        /// Only what building the agent needs (no test servers, clients or
        /// receivers; what deploy/Dockerfile's builder stage runs).
        #[arg(long)]
        build_only: bool,
    },
    /// Build (release) and run the agent on its embedded default (the local journal).
    Run {
        /// Arguments for `agent run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Every test: formatting, clippy, unit tests, end-to-end tests (root).
    Test {
        /// Only the unit tests (no root, no servers).
        #[arg(long)]
        unit: bool,
        /// Extra arguments for the end-to-end test binaries (e.g. a test name).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Benchmarks (see BENCHMARKS.md).
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Boots each kernel of the matrix in qemu and runs the capture checks
    /// inside (root; see docs/kernels.md).
    Kernels(kernels::KernelsArgs),
    /// Runs the fuzz targets of fuzz/ (cargo fuzz, pinned nightly; see
    /// docs/robustness.md).
    Fuzz(fuzz::FuzzArgs),
    /// Shell completion scripts of `agent` (bash, zsh, fish, elvish,
    /// powershell), generated from its command line by clap_complete.
    Completions {
        /// Directory to write them into.
        #[arg(long, default_value = "target/completions")]
        out: PathBuf,
    },
    /// Man pages of `agent` and its commands (agent.1, agent-run.1, …),
    /// generated from its command line by clap_mangen.
    Man {
        /// Directory to write them into.
        #[arg(long, default_value = "target/man")]
        out: PathBuf,
    },
}

/// Completion scripts `cargo xtask completions` writes: (shell, file name).
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "agent.bash"),
    ("zsh", "_agent"),
    ("fish", "agent.fish"),
    ("elvish", "agent.elv"),
    ("powershell", "_agent.ps1"),
];

/// The LLVM that bpf-linker is built against: the pinned eBPF toolchain
/// (agent-ebpf/rust-toolchain.toml) must emit bitcode of this major.
const LLVM_MAJOR: u32 = 22;
/// The toolchain every userspace cargo command of xtask runs with (agent,
/// xtask, tests): a newer stable brings new clippy lints, and `test` runs
/// clippy with `-D warnings`, so an unpinned machine fails on unchanged code
/// (stable 1.99.1 flags 8 places). Not a root `rust-toolchain.toml`: rustup
/// 1.28 does not install a pinned toolchain on first use (and these machines
/// set `RUSTUP_AUTO_INSTALL=0`), so `cargo xtask` itself would fail to start on
/// a new machine; xtask builds with whatever stable there is and installs this.
/// Moved deliberately, together with `rust-version` in Cargo.toml and the lint
/// fixes the new version asks for.
const USERSPACE_TOOLCHAIN: &str = "1.95.0";
/// bpf-linker, pinned (installed `--locked`, so its own dependencies are too).
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Debian packages: build needs, then what the tests drive.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "libssl-dev",
    "pkg-config",
];
const TEST_PACKAGES: &[&str] = &[
    "nginx",
    "apache2",
    "openssl",
    "curl",
    "nghttp2-client",
    "openjdk-17-jdk-headless",
];
/// What the benchmark drives beyond the tests' servers and clients (its
/// smoke version runs in `test`): a non-TLS workload for the host-wide tax.
/// (h2load comes with nghttp2-client, above.)
const BENCH_PACKAGES: &[&str] = &["redis-server", "redis-tools"];
/// bpf-linker must be built against LLVM 22 (without this PATH it finds LLVM 14).
const LLVM_BIN: &str = "/usr/lib/llvm-22/bin";
/// Installs (once, into a cached virtualenv) the real OTLP receivers the OTLP
/// tests export to; see the script.
const RECEIVERS_SCRIPT: &str = "tests/receivers.sh";
/// Checks deploy/ offline; `--install` installs (once, into a cached
/// virtualenv) the validators it runs (kubernetes-validate, hadolint).
const DEPLOY_CHECKS: &str = "deploy/check.sh";

fn main() -> std::process::ExitCode {
    forget_outer_cargo_env();
    let cli = Cli::parse();
    // The error chain in one line, not anyhow's Debug form with a backtrace:
    // the first thing a new user reads when setup or a build fails.
    match run_task(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `cargo xtask` runs this binary under `cargo run`, which sets the xtask
/// package's `CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ... Inherited by the cargo
/// commands xtask runs, they change the fingerprint of every build script that
/// tracks them (ring's does): each `cargo xtask` build and each plain `cargo
/// build` would then rebuild most of the tree for the other.
fn forget_outer_cargo_env() {
    let inherited: Vec<std::ffi::OsString> = std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| {
            key.to_str().is_some_and(|k| {
                k.starts_with("CARGO_PKG_")
                    || matches!(
                        k,
                        "CARGO_MANIFEST_DIR"
                            | "CARGO_MANIFEST_PATH"
                            | "CARGO_MANIFEST_LINKS"
                            | "CARGO_CRATE_NAME"
                            | "CARGO_BIN_NAME"
                            | "CARGO_PRIMARY_PACKAGE"
                    )
            })
        })
        .collect();
    for key in inherited {
        // SAFETY: first thing in main, before any thread exists.
        unsafe { std::env::remove_var(key) };
    }
}

fn run_task(cli: Cli) -> Result<()> {
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match cli.task {
        Task::Setup { build_only } => {
            setup(!build_only)?;
        }
        Task::Run { args } => {
            setup(false)?;
            cargo(&["build", "--release", "-p", "agent"])?;
            mount_tracefs();
            let mut cmd = Command::new(root.join("target/release/agent"));
            cmd.arg("run").args(&args);
            let status = cmd.status().context("starting the agent")?;
            if !status.success() {
                bail!("agent exited with {status}");
            }
        }
        Task::Test { unit, args } => {
            setup(!unit)?;
            cargo(&["fmt", "--all", "--check"])?;
            cargo(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])?;
            // The eBPF programs themselves, for the BPF target.
            clippy_ebpf()?;
            // The eBPF crate's host half (shared types, record walker).
            cargo(&["test", "-p", "agent-ebpf", "--lib"])?;
            cargo(&["test", "-p", "xtask"])?;
            // The fuzz targets' file-tree format (the targets run below).
            cargo(&["test", "-p", "tlsdoctor-fuzz", "--lib"])?;
            cargo(&["test", "-p", "agent", "--lib", "--bins"])?;
            // deploy/: manifests against the Kubernetes schemas and their
            // semantic checks, the Dockerfile linted and its build steps
            // checked (offline: no cluster, no Docker daemon).
            run(Command::new("bash").arg(DEPLOY_CHECKS))?;
            if !unit {
                require_root()?;
                mount_tracefs();
                cargo(&["build", "-p", "agent"])?;
                // Every integration test lives in tests/ (the agent crate has
                // none; its unit tests ran above). Setup installed the OTLP
                // receivers: a test that cannot run them fails rather than
                // skips.
                let mut test_args =
                    vec!["test", "-p", "tlsdoctor-tests", "--", "--test-threads", "4"];
                test_args.extend(args.iter().map(String::as_str));
                run(cargo_cmd()
                    .args(&test_args)
                    .env("TLSDOCTOR_REQUIRE_RECEIVERS", "1"))?;
                // The benchmark's smoke version, to keep it working: debug
                // builds and seconds-long phases, so its figures mean nothing.
                cargo(&[
                    "run",
                    "-p",
                    "tlsdoctor-tests",
                    "--bin",
                    "bench",
                    "--",
                    "--quick",
                ])?;
                // Every fuzz target for 20 s: they keep building and
                // running, and the corpus keeps what earlier runs found.
                fuzz::fuzz(&root, &fuzz::FuzzArgs::smoke(20))?;
            }
            println!("xtask: all tests passed");
        }
        Task::Completions { out } => {
            let agent = built_agent(&root)?;
            std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
            for (shell, name) in COMPLETIONS {
                let output = Command::new(&agent)
                    .args(["completions", shell])
                    .output()
                    .context("running agent completions")?;
                if !output.status.success() || output.stdout.is_empty() {
                    bail!(
                        "agent completions {shell}: {}",
                        String::from_utf8_lossy(&output.stderr)
                    );
                }
                let path = out.join(name);
                std::fs::write(&path, &output.stdout)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!("{}", path.display());
            }
        }
        Task::Man { out } => {
            let agent = built_agent(&root)?;
            run(Command::new(&agent).arg("man").arg(&out))?;
        }
        Task::Bench { args } => {
            setup(true)?;
            require_root()?;
            mount_tracefs();
            // The agent on its own: built together with the test crate, cargo
            // would unify features and the binary would not be the one users run.
            cargo(&["build", "--release", "-p", "agent"])?;
            cargo(&["bench", "-p", "agent", "--bench", "pipeline"])?;
            let mut bench_args = vec![
                "run",
                "--release",
                "-p",
                "tlsdoctor-tests",
                "--bin",
                "bench",
                "--",
            ];
            bench_args.extend(args.iter().map(String::as_str));
            run(cargo_cmd()
                .args(&bench_args)
                .env("TLSDOCTOR_AGENT_BIN", root.join("target/release/agent")))?;
        }
        Task::Kernels(args) => {
            setup(false)?;
            kernels::kernels(&root, args)?;
        }
        Task::Fuzz(args) => {
            install_ebpf_toolchain()?;
            fuzz::fuzz(&root, &args)?;
        }
    }
    Ok(())
}

/// The agent's debug build (what `cargo xtask test` builds), for its
/// command line: the completions and man pages come from it.
fn built_agent(root: &Path) -> Result<PathBuf> {
    setup(false)?;
    cargo(&["build", "--quiet", "-p", "agent", "--bin", "agent"])?;
    Ok(root.join("target/debug/agent"))
}

fn workspace_root() -> Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

/// Installs what is missing. `for_tests` adds the servers and clients the
/// end-to-end tests drive.
fn setup(for_tests: bool) -> Result<()> {
    let mut packages: Vec<&str> = BUILD_PACKAGES.to_vec();
    if for_tests {
        packages.extend(TEST_PACKAGES);
        packages.extend(BENCH_PACKAGES);
    }
    let missing: Vec<&str> = packages
        .into_iter()
        .filter(|p| !dpkg_installed(p))
        .collect();
    if !missing.is_empty() {
        println!("xtask: installing Debian packages: {}", missing.join(" "));
        run(Command::new("apt-get").arg("update").arg("-q"))?;
        run(Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"))?;
        // Installing nginx/apache2 starts them on port 80 under a service
        // manager on some machines; the tests start their own instances.
    }
    install_userspace_toolchain()?;
    install_ebpf_toolchain()?;
    if for_tests {
        // Idempotent: quick when the pinned versions are there; says on
        // stderr when it installs. Its stdout only lists the paths.
        run(Command::new("bash")
            .arg(RECEIVERS_SCRIPT)
            .stdout(std::process::Stdio::null()))
        .context("installing the OTLP receivers (arize-phoenix, rotel) the OTLP tests need")?;
        run(Command::new("bash").arg(DEPLOY_CHECKS).arg("--install"))
            .context("installing the deploy/ validators (kubernetes-validate, hadolint)")?;
    }
    Ok(())
}

fn dpkg_installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
}

/// The pinned eBPF toolchain with rust-src, and bpf-linker built against the
/// LLVM that toolchain emits; then the same preflight `agent/build.rs` runs.
fn install_ebpf_toolchain() -> Result<()> {
    let channel = toolchain::pinned_channel(Path::new(".")).map_err(|e| anyhow!(e))?;
    if !toolchain_has_rust_src(&channel) {
        println!("xtask: installing the eBPF toolchain {channel} with rust-src and clippy");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            &channel,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
            "--component",
            "clippy",
        ]))?;
    }
    let rustc_llvm = toolchain::rustc_llvm_major(&channel).map_err(|e| anyhow!(e))?;
    if rustc_llvm != LLVM_MAJOR {
        bail!(
            "the eBPF toolchain {channel} ({}) uses LLVM {rustc_llvm}, but xtask installs \
             bpf-linker against LLVM {LLVM_MAJOR}; pin a nightly with LLVM {LLVM_MAJOR} \
             or move LLVM_MAJOR and the llvm packages in xtask together",
            toolchain::TOOLCHAIN_FILE
        );
    }
    if !bpf_linker_ok() {
        println!(
            "xtask: installing bpf-linker {BPF_LINKER_VERSION} (LLVM {LLVM_MAJOR}), about 2 minutes"
        );
        let path = format!("{LLVM_BIN}:{}", std::env::var("PATH").unwrap_or_default());
        run(cargo_cmd()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--no-default-features",
                "--features",
                &format!("llvm-{LLVM_MAJOR}"),
                "--force",
            ])
            .env("PATH", path))?;
    }
    toolchain::preflight(Path::new(".")).map_err(|e| anyhow!(e))?;
    Ok(())
}

/// [`USERSPACE_TOOLCHAIN`] with clippy and rustfmt.
fn install_userspace_toolchain() -> Result<()> {
    if !toolchain_has(USERSPACE_TOOLCHAIN, &["clippy", "rustfmt"]) {
        println!(
            "xtask: installing the userspace toolchain {USERSPACE_TOOLCHAIN} with clippy and rustfmt"
        );
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            USERSPACE_TOOLCHAIN,
            "--profile",
            "minimal",
            "--component",
            "clippy",
            "--component",
            "rustfmt",
        ]))?;
    }
    Ok(())
}

fn toolchain_has_rust_src(channel: &str) -> bool {
    toolchain_has(channel, &["rust-src", "clippy"])
}

/// `channel` is installed with each of `components`.
fn toolchain_has(channel: &str, components: &[&str]) -> bool {
    Command::new("rustup")
        .args(["component", "list", "--installed", "--toolchain", channel])
        .output()
        .is_ok_and(|o| {
            let installed = String::from_utf8_lossy(&o.stdout);
            o.status.success() && components.iter().all(|c| installed.contains(c))
        })
}

/// Clippy on the eBPF programs (agent-ebpf's binary, BPF target, pinned
/// toolchain), warnings denied; every `unsafe` block needs a SAFETY comment.
fn clippy_ebpf() -> Result<()> {
    let channel = toolchain::pinned_channel(Path::new(".")).map_err(|e| anyhow!(e))?;
    run(Command::new("rustup")
        .args(["run", &channel, "cargo", "clippy"])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--bins",
        ])
        .args([
            "--target-dir",
            "../target/ebpf-clippy",
            "--",
            "-D",
            "warnings",
        ])
        .current_dir("agent-ebpf")
        // The stable toolchain cargo xtask runs under must not leak in.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            "--cfg=bpf_target_arch=\"x86_64\"",
        ))
}

/// bpf-linker is the pinned version and built against [`LLVM_MAJOR`].
fn bpf_linker_ok() -> bool {
    let version_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION)
        });
    version_ok && toolchain::bpf_linker_llvm_major() == Ok(LLVM_MAJOR)
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        bail!(
            "the end-to-end tests load eBPF programs and need root (or run `cargo xtask test --unit`)"
        );
    }
    Ok(())
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Syscall tracepoints live in tracefs, which some machines do not mount.
fn mount_tracefs() {
    if Path::new("/sys/kernel/tracing/events").exists() {
        return;
    }
    println!("xtask: mounting tracefs on /sys/kernel/tracing");
    let _ = Command::new("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .status();
}

/// cargo of [`USERSPACE_TOOLCHAIN`] (not the `CARGO` xtask was started by).
fn cargo_cmd() -> Command {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", USERSPACE_TOOLCHAIN, "cargo"])
        // What `cargo run` of xtask set for its own toolchain must not leak in.
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO");
    cmd
}

fn cargo(args: &[&str]) -> Result<()> {
    run(cargo_cmd().args(args))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}
