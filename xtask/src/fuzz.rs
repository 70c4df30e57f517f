//! `cargo xtask fuzz`: the libFuzzer targets of `fuzz/` (cargo fuzz, on the
//! pinned nightly of agent-ebpf/rust-toolchain.toml), each run for a given
//! time on a corpus seeded from the fixtures the tests already have, at the
//! lowest CPU priority. A crash leaves its input under
//! `fuzz/artifacts/<target>/` and fails the task.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::run;

/// cargo-fuzz, pinned (installed `--locked`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Every target in fuzz/Cargo.toml.
pub const TARGETS: &[&str] = &[
    "nginx_config",
    "apache_config",
    "apache_envvars",
    "tls_maps",
    "cgroup",
    "cert_der",
    "cert_pem",
    "log_follower",
];

#[derive(clap::Args, Debug)]
pub struct FuzzArgs {
    /// Seconds per target.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// Only these targets (default: all).
    #[arg(long = "target")]
    targets: Vec<String>,
    /// libFuzzer worker processes per target.
    #[arg(long, default_value_t = 1)]
    jobs: u32,
    /// Extra libFuzzer options (e.g. `-runs=10000000`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    libfuzzer_args: Vec<String>,
}

impl FuzzArgs {
    /// The smoke run `cargo xtask test` does: every target for `seconds`.
    pub fn smoke(seconds: u64) -> FuzzArgs {
        FuzzArgs {
            seconds,
            targets: Vec::new(),
            jobs: 1,
            libfuzzer_args: Vec::new(),
        }
    }
}

pub fn fuzz(root: &Path, args: &FuzzArgs) -> Result<()> {
    let channel = crate::toolchain::pinned_channel(root).map_err(|e| anyhow::anyhow!(e))?;
    install_cargo_fuzz()?;
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        for t in &args.targets {
            if !TARGETS.contains(&t.as_str()) {
                bail!("no fuzz target {t}; targets: {}", TARGETS.join(", "));
            }
        }
        args.targets.iter().map(String::as_str).collect()
    };
    let fuzz_dir = root.join("fuzz");
    for target in &targets {
        let corpus = fuzz_dir.join("corpus").join(target);
        seed_corpus(root, target, &corpus)?;
        println!("xtask: fuzzing {target} for {} s (nice 19)", args.seconds);
        let mut cmd = Command::new("nice");
        cmd.args(["-n", "19", "cargo"])
            .arg(format!("+{channel}"))
            .args(["fuzz", "run", "--fuzz-dir"])
            .arg(&fuzz_dir)
            // Rust is memory-safe: no sanitizer keeps builds and runs fast;
            // the targets cap their own heap (fuzz/src/lib.rs), libFuzzer
            // the RSS and the time per input.
            .args(["--sanitizer", "none", target])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", args.seconds))
            .arg("-timeout=10")
            .arg("-rss_limit_mb=2048")
            .arg("-max_len=262144")
            .arg("-print_final_stats=1")
            .args(&args.libfuzzer_args)
            .args(parallel_args(args.jobs))
            // The agent's eBPF object is not needed to parse files.
            .env("AYA_BUILD_SKIP", "1")
            .current_dir(root);
        run(&mut cmd).with_context(|| {
            format!(
                "fuzz target {target} failed; its input is under {}",
                fuzz_dir.join("artifacts").join(target).display()
            )
        })?;
    }
    Ok(())
}

/// libFuzzer's `-jobs`/`-workers` only for more than one process: with
/// them it writes each job's output to `fuzz-N.log` in the working
/// directory instead of the terminal.
fn parallel_args(jobs: u32) -> Vec<String> {
    if jobs > 1 {
        vec![format!("-jobs={jobs}"), format!("-workers={jobs}")]
    } else {
        Vec::new()
    }
}

fn install_cargo_fuzz() -> Result<()> {
    let ok = Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_FUZZ_VERSION));
    if !ok {
        println!("xtask: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
        run(Command::new("cargo").args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--force",
        ]))?;
    }
    Ok(())
}

/// Seeds `corpus` (kept between runs, not in git) from the committed seeds
/// in `fuzz/seeds/<target>` and the test fixtures: server configs as the
/// trees the config targets read, envvars files, error logs, the host's
/// own maps, cgroup files and trusted certificates.
fn seed_corpus(root: &Path, target: &str, corpus: &Path) -> Result<()> {
    fs::create_dir_all(corpus)?;
    let committed = root.join("fuzz/seeds").join(target);
    if let Ok(entries) = fs::read_dir(&committed) {
        for entry in entries {
            let path = entry?.path();
            if let Some(name) = path.file_name() {
                fs::copy(&path, corpus.join(name))?;
            }
        }
    }
    let fixtures = root.join("agent/src/evidence/server_config/tests/fixtures");
    let logs = root.join("agent/src/evidence/testdata/logs");
    let mut seeds: Vec<(String, Vec<u8>)> = Vec::new();
    match target {
        "nginx_config" => {
            seeds.push((
                "fixture-nginx".into(),
                tree_seed(&fixtures.join("nginx"), "nginx.conf")?,
            ));
        }
        "apache_config" => {
            seeds.push((
                "fixture-apache".into(),
                tree_seed(&fixtures.join("apache"), "apache2.conf")?,
            ));
        }
        "apache_envvars" => {
            seeds.push((
                "fixture-envvars".into(),
                fs::read(fixtures.join("apache/envvars"))?,
            ));
            if let Ok(host) = fs::read("/etc/apache2/envvars") {
                seeds.push(("host-envvars".into(), host));
            }
        }
        "tls_maps" => {
            for pid in ["self", "1"] {
                if let Ok(maps) = fs::read(format!("/proc/{pid}/maps")) {
                    seeds.push((format!("maps-{pid}"), maps));
                }
            }
        }
        "cgroup" => {
            if let Ok(cgroup) = fs::read("/proc/self/cgroup") {
                seeds.push(("cgroup-self".into(), cgroup));
            }
        }
        "cert_pem" | "cert_der" => {
            for (i, pem) in system_certificates(4).into_iter().enumerate() {
                if target == "cert_pem" {
                    seeds.push((format!("system-{i}.pem"), fs::read(&pem)?));
                } else if let Ok(out) = Command::new("openssl")
                    .args(["x509", "-outform", "der", "-in"])
                    .arg(&pem)
                    .output()
                    && out.status.success()
                {
                    seeds.push((format!("system-{i}.der"), out.stdout));
                }
            }
        }
        "log_follower" => {
            for entry in fs::read_dir(&logs)? {
                let path = entry?.path();
                if path.extension().is_some_and(|e| e == "txt") {
                    let text = fs::read(&path)?;
                    let half = text.len() / 2;
                    let mut seed = b"a".to_vec();
                    seed.extend_from_slice(&text[..half]);
                    seed.extend_from_slice(b"\n~~a");
                    seed.extend_from_slice(&text[half..]);
                    seed.extend_from_slice(b"\n~~r");
                    seed.extend_from_slice(&text[..half]);
                    let name = path.file_stem().unwrap_or_default().to_string_lossy();
                    seeds.push((format!("log-{name}"), seed));
                }
            }
        }
        _ => {}
    }
    for (name, bytes) in seeds {
        fs::write(corpus.join(name), bytes)?;
    }
    Ok(())
}

/// A fixture directory as a tree input (fuzz/src/lib.rs): the main file
/// first, then every other file.
fn tree_seed(dir: &Path, main: &str) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort_by_key(|p| p.file_name() != Some(main.as_ref()));
    for file in files {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        out.extend_from_slice(format!("=== {name}\n").as_bytes());
        out.extend_from_slice(&fs::read(&file)?);
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
    }
    Ok(out)
}

fn system_certificates(n: usize) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir("/etc/ssl/certs")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "pem"))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.truncate(n);
    out
}
