//! The eBPF toolchain pin and its preflight, shared by `agent/build.rs` and
//! `xtask` (both include this file with `#[path]`; it is not part of the
//! agent-ebpf crate).
//!
//! The pin lives in `agent-ebpf/rust-toolchain.toml`. rustc emits LLVM bitcode
//! that bpf-linker links with its own LLVM; bitcode from a newer LLVM fails
//! deep in the build with `ERROR llvm: Invalid record`. The preflight compares
//! the two LLVM majors before anything is built and says what to run.

use std::path::Path;
use std::process::Command;

/// Where the pin lives, relative to the workspace root.
pub const TOOLCHAIN_FILE: &str = "agent-ebpf/rust-toolchain.toml";

/// What fixes a missing or mismatched toolchain.
pub const FIX_COMMAND: &str = "cargo xtask setup --build-only";

#[derive(serde::Deserialize)]
struct ToolchainFile {
    toolchain: ToolchainSection,
}

#[derive(serde::Deserialize)]
struct ToolchainSection {
    channel: String,
}

/// The pinned channel (`nightly-YYYY-MM-DD`) from `agent-ebpf/rust-toolchain.toml`.
pub fn pinned_channel(workspace_root: &Path) -> Result<String, String> {
    let path = workspace_root.join(TOOLCHAIN_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let file: ToolchainFile =
        toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    Ok(file.toolchain.channel)
}

/// The LLVM major a toolchain's rustc was built with (`rustc -vV`), or why
/// it cannot be told (the toolchain is not installed, say).
pub fn rustc_llvm_major(channel: &str) -> Result<u32, String> {
    let out = Command::new("rustup")
        .args(["run", channel, "rustc", "-vV"])
        .output()
        .map_err(|e| format!("running `rustup run {channel} rustc -vV`: {e}"))?;
    if !out.status.success() {
        return Err(format!("the eBPF toolchain {channel} is not installed"));
    }
    llvm_major_from(&String::from_utf8_lossy(&out.stdout), "LLVM version:")
        .ok_or_else(|| format!("`rustc +{channel} -vV` names no LLVM version"))
}

/// The LLVM major bpf-linker was built against, or why it cannot be told.
pub fn bpf_linker_llvm_major() -> Result<u32, String> {
    // bpf-linker hands `--llvm-args` to LLVM's option parser, whose
    // `--version` prints LLVM's banner ("Debian LLVM version 22.1.8") and
    // exits before anything is linked; the output and input only satisfy
    // bpf-linker's own argument parser.
    let out = Command::new("bpf-linker")
        .args([
            "--llvm-args=--version",
            "--output",
            "/dev/null",
            "/dev/null",
        ])
        .output()
        .map_err(|e| format!("bpf-linker is not installed ({e})"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    llvm_major_from(&text, "LLVM version")
        .ok_or_else(|| "bpf-linker does not say which LLVM it was built against".to_string())
}

/// `22` from a line such as `LLVM version: 22.1.7` or `Debian LLVM version 22.1.8`.
fn llvm_major_from(text: &str, label: &str) -> Option<u32> {
    text.lines()
        .filter_map(|line| line.split_once(label).map(|(_, rest)| rest))
        .map(|rest| rest.trim_start_matches(':').trim())
        .find_map(|version| version.split('.').next()?.parse().ok())
}

/// Checks that the pinned toolchain is installed and that its LLVM major is
/// bpf-linker's; returns the channel to build with, or one sentence that
/// names both versions and the command that fixes it.
pub fn preflight(workspace_root: &Path) -> Result<String, String> {
    let channel = pinned_channel(workspace_root)?;
    let rustc = rustc_llvm_major(&channel)
        .map_err(|e| format!("{e}; run `{FIX_COMMAND}` to install it"))?;
    let linker =
        bpf_linker_llvm_major().map_err(|e| format!("{e}; run `{FIX_COMMAND}` to install it"))?;
    if rustc != linker {
        return Err(format!(
            "the eBPF toolchain {channel} emits LLVM {rustc} bitcode but bpf-linker was built \
             against LLVM {linker}, so linking agent-ebpf would fail with `Invalid record`; \
             run `{FIX_COMMAND}`, which installs the pinned toolchain and a bpf-linker for its LLVM"
        ));
    }
    Ok(channel)
}

#[cfg(test)]
mod tests {
    use super::llvm_major_from;

    #[test]
    fn reads_llvm_majors_from_rustc_and_llvm_banners() {
        let rustc = "rustc 1.98.0-nightly (f428d123a 2026-06-19)\nhost: x86_64-unknown-linux-gnu\nLLVM version: 22.1.7\n";
        assert_eq!(llvm_major_from(rustc, "LLVM version:"), Some(22));
        let llvm = "LLVM (http://llvm.org/):\n  LLVM version 23.1.0\n  Optimized build.\n";
        assert_eq!(llvm_major_from(llvm, "LLVM version"), Some(23));
        let debian = "Debian LLVM version 22.1.8\n  Optimized build.\n";
        assert_eq!(llvm_major_from(debian, "LLVM version"), Some(22));
        assert_eq!(llvm_major_from("no version here", "LLVM version"), None);
    }
}
