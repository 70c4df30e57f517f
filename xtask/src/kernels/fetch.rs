//! Kernels and the guest's initramfs: Debian kernel packages and busybox
//! fetched with `apt-get download` and unpacked with `dpkg -x` into a cache
//! (never installed on the host), the modules the guest needs resolved with
//! their dependencies from each module's `.modinfo`, and an initramfs
//! (`cpio -H newc`) built from busybox, those modules and `init.sh`.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::run;

/// What the guest's init loads, in this order, each after its dependencies;
/// a module built into the kernel is skipped.
const GUEST_MODULES: &[&str] = &["virtio_pci", "virtiofs", "overlay"];
/// A statically linked busybox: the guest init's shell, insmod, mount, ip.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// A kernel ready to boot: its image and the modules directory
/// (`lib/modules/VERSION`) of the same build.
#[derive(Clone, Debug)]
pub struct KernelFiles {
    pub image: PathBuf,
    pub modules: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
}

/// Where kernels and busybox are cached: `$XDG_CACHE_HOME/tlsdoctor/kernels`
/// (else `~/.cache/...`), outside `target/` so `cargo clean` keeps them.
pub fn cache_dir() -> Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    let dir = base.join("tlsdoctor").join("kernels");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The concrete package a Debian meta package (`linux-image-cloud-amd64`)
/// points at today, from the local apt lists (no download).
pub fn resolve_meta(meta: &str, apt_options: &[String]) -> Result<String> {
    let out = Command::new("apt-cache")
        .args(apt_options)
        .args(["depends", "--important", meta])
        .output()
        .context("running apt-cache")?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
        .with_context(|| format!("apt-cache knows no kernel behind {meta} (run `apt-get update`?)"))
}

/// Downloads (once) and unpacks (once) a Debian package into the cache;
/// returns the unpacked tree. `apt_options` select another apt
/// configuration (e.g. an older release's lists).
pub fn unpacked_package(cache: &Path, package: &str, apt_options: &[String]) -> Result<PathBuf> {
    let tree = cache.join("pkg").join(package);
    let done = tree.join(".unpacked");
    if done.exists() {
        return Ok(tree);
    }
    let debs = cache.join("debs");
    fs::create_dir_all(&debs)?;
    let deb = find_deb(&debs, package)?;
    let deb = match deb {
        Some(deb) => deb,
        None => {
            println!("xtask: downloading {package}");
            run(Command::new("apt-get")
                .args(apt_options)
                .args(["download", "-q", package])
                .current_dir(&debs))?;
            find_deb(&debs, package)?
                .with_context(|| format!("apt-get download left no {package}_*.deb"))?
        }
    };
    let _ = fs::remove_dir_all(&tree);
    fs::create_dir_all(&tree)?;
    run(Command::new("dpkg").arg("-x").arg(&deb).arg(&tree))?;
    fs::write(&done, b"")?;
    Ok(tree)
}

fn find_deb(dir: &Path, package: &str) -> Result<Option<PathBuf>> {
    let prefix = format!("{package}_");
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// The image and modules of an unpacked `linux-image-*` package.
pub fn kernel_in_tree(tree: &Path) -> Result<KernelFiles> {
    let modules_root = tree.join("lib/modules");
    let release = single_entry(&modules_root)?;
    let image = tree.join("boot").join(format!("vmlinuz-{release}"));
    if !image.exists() {
        bail!("{} has no boot/vmlinuz-{release}", tree.display());
    }
    Ok(KernelFiles {
        image,
        modules: modules_root.join(&release),
        release,
    })
}

/// This host's kernel, when its image and modules are on disk.
pub fn host_kernel() -> Result<KernelFiles> {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")?
        .trim()
        .to_string();
    let image = PathBuf::from(format!("/boot/vmlinuz-{release}"));
    let modules = PathBuf::from(format!("/lib/modules/{release}"));
    if !image.exists() {
        bail!(
            "no image of the running kernel ({} is missing)",
            image.display()
        );
    }
    if !modules.exists() {
        bail!("no modules of the running kernel ({})", modules.display());
    }
    Ok(KernelFiles {
        image,
        modules,
        release,
    })
}

fn single_entry(dir: &Path) -> Result<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    match names.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!("expected one kernel in {}, found {names:?}", dir.display()),
    }
}

/// busybox from the cache (downloaded once).
pub fn busybox(cache: &Path) -> Result<PathBuf> {
    let tree = unpacked_package(cache, BUSYBOX_PACKAGE, &[])?;
    let bin = tree.join("bin/busybox");
    if !bin.exists() {
        bail!("{BUSYBOX_PACKAGE} has no bin/busybox");
    }
    Ok(bin)
}

/// Builds the guest initramfs for `kernel` at `out` (gzip'd newc cpio).
pub fn build_initramfs(kernel: &KernelFiles, busybox: &Path, init: &str, out: &Path) -> Result<()> {
    let staging = out.with_extension("d");
    let _ = fs::remove_dir_all(&staging);
    for dir in [
        "bin", "modules", "proc", "sys", "dev", "lower", "upper", "newroot",
    ] {
        fs::create_dir_all(staging.join(dir))?;
    }
    fs::copy(busybox, staging.join("bin/busybox"))?;
    write_executable(&staging.join("init"), init)?;
    let order = module_load_order(&kernel.modules, GUEST_MODULES)?;
    let mut names = Vec::new();
    for module in &order {
        let name = format!("{}.ko", module.name);
        fs::write(
            staging.join("modules").join(&name),
            read_module(&module.path)?,
        )?;
        names.push(name);
    }
    fs::write(staging.join("modules/order"), names.join("\n") + "\n")?;
    let script = format!(
        "cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'",
        staging.display(),
        out.display()
    );
    run(Command::new("bash").arg("-c").arg(script)).context("packing the initramfs")?;
    fs::remove_dir_all(&staging)?;
    Ok(())
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    fs::write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A loadable module file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleFile {
    pub name: String,
    pub path: PathBuf,
}

/// `wanted` and their dependencies, each after what it depends on; modules
/// built into the kernel (`modules.builtin`) are left out.
pub fn module_load_order(modules_dir: &Path, wanted: &[&str]) -> Result<Vec<ModuleFile>> {
    let index = module_index(&modules_dir.join("kernel"))?;
    let builtin: HashSet<String> = fs::read_to_string(modules_dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(|f| normalize(f.trim_end_matches(".ko")))
        .collect();
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    for name in wanted {
        visit(&normalize(name), &index, &builtin, &mut seen, &mut order, 0)?;
    }
    Ok(order)
}

fn visit(
    name: &str,
    index: &BTreeMap<String, PathBuf>,
    builtin: &HashSet<String>,
    seen: &mut HashSet<String>,
    order: &mut Vec<ModuleFile>,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        bail!("module dependencies nest deeper than 32 at {name}");
    }
    if !seen.insert(name.to_string()) {
        return Ok(());
    }
    let Some(path) = index.get(name) else {
        if builtin.contains(name) {
            return Ok(());
        }
        bail!("module {name} is neither built in nor in the package");
    };
    for dep in module_depends(&read_module(path)?)? {
        visit(&dep, index, builtin, seen, order, depth + 1)?;
    }
    order.push(ModuleFile {
        name: name.to_string(),
        path: path.clone(),
    });
    Ok(())
}

/// Module names ('-' and '_' are the same to the kernel) to their files.
fn module_index(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut index = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if let Some(stem) = file
                .strip_suffix(".ko")
                .or_else(|| file.strip_suffix(".ko.xz"))
            {
                index.insert(normalize(stem), path);
            }
        }
    }
    Ok(index)
}

fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// A module's bytes, decompressed (Debian compresses 6.12's with xz).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    if path.extension().is_some_and(|e| e == "xz") {
        let out = Command::new("xz")
            .arg("-dc")
            .arg(path)
            .output()
            .context("running xz")?;
        if !out.status.success() {
            bail!("xz -dc {} failed", path.display());
        }
        return Ok(out.stdout);
    }
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// The `depends=` entry of a module's `.modinfo` section.
pub fn module_depends(elf: &[u8]) -> Result<Vec<String>> {
    use object::{Object as _, ObjectSection as _};
    let file = object::File::parse(elf).context("parsing a module (ELF)")?;
    let Some(section) = file.section_by_name(".modinfo") else {
        return Ok(Vec::new());
    };
    let data = section.data().context("reading .modinfo")?;
    Ok(data
        .split(|&b| b == 0)
        .filter_map(|entry| entry.strip_prefix(b"depends="))
        .flat_map(|list| {
            String::from_utf8_lossy(list)
                .split(',')
                .map(normalize)
                .collect::<Vec<_>>()
        })
        .filter(|d| !d.is_empty())
        .collect())
}
