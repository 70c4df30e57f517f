//! Builds the eBPF programs of `agent-ebpf` for the BPF target and leaves the
//! object in OUT_DIR, where `capture` embeds it.
use anyhow::{Context as _, anyhow};

#[path = "../agent-ebpf/toolchain.rs"]
mod toolchain;

const EBPF_PACKAGE: &str = "agent-ebpf";
/// The object's name in OUT_DIR: the `[[bin]]` name of `agent-ebpf`.
const EBPF_OBJECT: &str = "agent-ebpf";

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.name.as_str() == EBPF_PACKAGE)
        .ok_or_else(|| anyhow!("{EBPF_PACKAGE} package not found in the workspace"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;

    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // Pure-logic builds (unit tests, clippy) need no BPF toolchain. The
        // empty object makes `agent run` fail with a clear message instead.
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join(EBPF_OBJECT);
        if !out.exists() {
            std::fs::write(&out, b"").context("writing empty eBPF object")?;
        }
        println!("cargo:rerun-if-env-changed=AYA_BUILD_SKIP");
        return Ok(());
    }
    // The pinned toolchain, checked against bpf-linker before building: a
    // mismatch is one sentence here, not an LLVM error deep in a build log.
    let workspace_root = metadata.workspace_root.as_std_path();
    println!(
        "cargo:rerun-if-changed={}",
        workspace_root.join(toolchain::TOOLCHAIN_FILE).display()
    );
    let channel = match toolchain::preflight(workspace_root) {
        Ok(channel) => channel,
        Err(sentence) => {
            // One sentence, not an error chain with a backtrace: it is the
            // first thing a new user reads.
            eprintln!("error: {sentence}");
            std::process::exit(1);
        }
    };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: EBPF_PACKAGE,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&channel),
    )
}
