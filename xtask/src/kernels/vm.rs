//! One guest boot: two virtiofsd daemons (the host root, read-only; the
//! results directory, writable) and qemu, all stopped and their sockets
//! removed when the boot ends, however it ends.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};

/// qemu's virtiofsd (the C one Debian 12 ships with qemu 7.2).
const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";
/// Taken shared, like every e2e test: a benchmark that holds it exclusively
/// does not share the CPU with a guest.
const MACHINE_LOCK: &str = "/tmp/tlsdoctor-machine.lock";

/// How qemu runs guest code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when it can boot stock kernels here, else TCG.
    Auto,
    Kvm,
    Tcg,
}

impl Accel {
    /// `Auto` made concrete. `/dev/kvm` backed by PVM (`kvm_pvm`, the nested
    /// "pagetable-based" KVM of some cloud sandboxes) boots only
    /// PVM-enabled guest kernels: a stock kernel hangs right after its
    /// real-mode setup, so TCG is used there.
    pub fn resolve(self) -> (Accel, &'static str) {
        match self {
            Accel::Auto if !Path::new("/dev/kvm").exists() => (Accel::Tcg, "no /dev/kvm"),
            Accel::Auto if Path::new("/sys/module/kvm_pvm").exists() => (
                Accel::Tcg,
                "/dev/kvm is PVM (kvm_pvm), which cannot boot stock kernels",
            ),
            Accel::Auto => (Accel::Kvm, "/dev/kvm"),
            other => (other, "asked for"),
        }
    }

    fn qemu_args(self) -> Vec<&'static str> {
        match self {
            // IA32_ARCH_CAPABILITIES cannot be set on some nested hosts.
            Accel::Kvm | Accel::Auto => vec!["-enable-kvm", "-cpu", "host,-arch-capabilities"],
            Accel::Tcg => vec!["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }
}

pub struct Boot<'a> {
    pub image: &'a Path,
    pub initramfs: &'a Path,
    /// Shared read-write with the guest (tag `results`).
    pub results: &'a Path,
    /// Sockets and the read-only bind of `/` live here.
    pub scratch: &'a Path,
    pub console_log: &'a Path,
    pub accel: Accel,
    pub memory_mib: u32,
    pub cpus: u32,
    pub timeout: Duration,
}

/// How a boot ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BootEnd {
    PoweredOff,
    /// qemu failed (status) before the guest powered off.
    QemuFailed(String),
    TimedOut,
}

/// Children killed (by pid, each one this code started) when dropped.
struct Children(Vec<(&'static str, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

pub fn boot(b: &Boot) -> Result<BootEnd> {
    fs::create_dir_all(b.scratch)?;
    let root_sock = b.scratch.join("root.sock");
    let results_sock = b.scratch.join("results.sock");
    let root_view = b.scratch.join("root");
    for sock in [&root_sock, &results_sock] {
        let _ = fs::remove_file(sock);
    }
    fs::create_dir_all(&root_view)?;
    let mut children = Children(Vec::new());
    // The host root, read-only: a non-recursive bind of `/` (no /proc,
    // /sys, /dev of the host) remounted read-only in a mount namespace of
    // virtiofsd's own, gone when it exits.
    let script = format!(
        "set -e; mount --make-rprivate /; mount --bind / '{view}'; \
         mount -o remount,bind,ro '{view}'; \
         exec {VIRTIOFSD} --socket-path='{sock}' -o source='{view}' -o cache=auto \
         -o sandbox=chroot -o no_posix_lock",
        view = root_view.display(),
        sock = root_sock.display(),
    );
    children.0.push((
        "virtiofsd (root)",
        Command::new("unshare")
            .args(["--mount", "bash", "-c", &script])
            .stdout(Stdio::null())
            .stderr(log_file(&b.scratch.join("virtiofsd-root.log"))?)
            .spawn()
            .context("starting virtiofsd for the host root")?,
    ));
    children.0.push((
        "virtiofsd (results)",
        Command::new(VIRTIOFSD)
            .arg(format!("--socket-path={}", results_sock.display()))
            .arg("-o")
            .arg(format!("source={}", b.results.display()))
            .args(["-o", "sandbox=chroot"])
            .stdout(Stdio::null())
            .stderr(log_file(&b.scratch.join("virtiofsd-results.log"))?)
            .spawn()
            .context("starting virtiofsd for the results")?,
    ));
    wait_for_sockets(&[&root_sock, &results_sock], &mut children)?;

    let memory = format!("{}M", b.memory_mib);
    let _lock = MachineLock::shared()?;
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(b.accel.qemu_args())
        .args(["-smp", &b.cpus.to_string(), "-m", &memory])
        .args(["-nographic", "-no-reboot", "-nic", "none"])
        .arg("-object")
        .arg(format!(
            "memory-backend-memfd,id=mem,size={memory},share=on"
        ))
        .args(["-numa", "node,memdev=mem"])
        .arg("-chardev")
        .arg(format!("socket,id=root,path={}", root_sock.display()))
        .args(["-device", "vhost-user-fs-pci,chardev=root,tag=hostroot"])
        .arg("-chardev")
        .arg(format!("socket,id=results,path={}", results_sock.display()))
        .args(["-device", "vhost-user-fs-pci,chardev=results,tag=results"])
        .arg("-kernel")
        .arg(b.image)
        .arg("-initrd")
        .arg(b.initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=4"])
        .stdin(Stdio::null())
        .stdout(log_file(b.console_log)?)
        .stderr(log_file(&b.scratch.join("qemu.log"))?);
    let qemu = qemu.spawn().context("starting qemu-system-x86_64")?;
    children.0.push(("qemu", qemu));
    let deadline = Instant::now() + b.timeout;
    let end = loop {
        let (_, qemu) = children.0.last_mut().context("qemu")?;
        if let Some(status) = qemu.try_wait()? {
            break if status.success() {
                BootEnd::PoweredOff
            } else {
                BootEnd::QemuFailed(format!(
                    "{status}: {}",
                    fs::read_to_string(b.scratch.join("qemu.log")).unwrap_or_default()
                ))
            };
        }
        if Instant::now() > deadline {
            break BootEnd::TimedOut;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    drop(children);
    for sock in [&root_sock, &results_sock] {
        let _ = fs::remove_file(sock);
    }
    let _ = fs::remove_dir(&root_view);
    Ok(end)
}

/// The machine lock, held shared while the guest runs (released when the
/// file is closed).
struct MachineLock {
    _file: fs::File,
}

impl MachineLock {
    fn shared() -> Result<MachineLock> {
        use std::os::fd::AsRawFd as _;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(MACHINE_LOCK)
            .with_context(|| format!("opening {MACHINE_LOCK}"))?;
        // SAFETY: flock on a descriptor this struct owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } != 0 {
            println!("xtask: waiting for {MACHINE_LOCK} (held exclusively, e.g. by a benchmark)");
        } else {
            return Ok(MachineLock { _file: file });
        }
        // SAFETY: as above.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH) } != 0 {
            bail!(
                "locking {MACHINE_LOCK}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(MachineLock { _file: file })
    }
}

fn log_file(path: &Path) -> Result<fs::File> {
    fs::File::create(path).with_context(|| format!("creating {}", path.display()))
}

fn wait_for_sockets(socks: &[&Path], children: &mut Children) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socks.iter().all(|s| s.exists()) {
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited at start: {status} (see its log beside the sockets)");
            }
        }
        if Instant::now() > deadline {
            bail!("virtiofsd did not create its sockets within 10 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
