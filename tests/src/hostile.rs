//! Hostile or broken "servers" on loopback: they accept TCP and then stall,
//! answer garbage, reset, close, or flood a fake certificate.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the peer does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts and never sends a byte (holds the connection open).
    Silent,
    /// Reads the ClientHello and answers bytes that are neither TLS nor HTTP.
    Garbage,
    /// Reads the ClientHello and resets the connection (RST).
    Reset,
    /// Reads the ClientHello and closes (FIN) without a word.
    Close,
    /// Answers with a TLS 1.2 ServerHello and a Certificate message
    /// announcing 16 MiB, then streams bytes until the client goes away.
    HugeCertificate,
}

/// A hostile peer on 127.0.0.1:port, stopped when dropped.
pub struct Hostile {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_some(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
}

fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A minimal TLS 1.2 ServerHello: ECDHE-RSA-AES128-GCM-SHA256 (which a
/// default OpenSSL client offers) and renegotiation_info (which it requires).
fn server_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
    body.push(0); // no session id
    body.extend([0xc0, 0x2f]); // the suite
    body.push(0); // no compression
    body.extend([0x00, 0x05, 0xff, 0x01, 0x00, 0x01, 0x00]);
    let mut hs = vec![2, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut record = vec![22, 3, 3, 0, hs.len() as u8];
    record.extend(hs);
    record
}

fn serve(mut s: TcpStream, behaviour: Behaviour, stop: &AtomicBool) {
    match behaviour {
        Behaviour::Silent => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Behaviour::Garbage => {
            read_some(&mut s);
            let junk: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8 | 0x80).collect();
            let _ = s.write_all(&junk);
            std::thread::sleep(Duration::from_millis(200));
        }
        Behaviour::Reset => {
            read_some(&mut s);
            reset(&s);
        }
        Behaviour::Close => read_some(&mut s),
        Behaviour::HugeCertificate => {
            read_some(&mut s);
            if s.write_all(&server_hello()).is_err() {
                return;
            }
            // Certificate (11) claiming 16 MiB, then filler, record after
            // record.
            let mut first = vec![22, 3, 3, 0x40, 0x00, 11, 0xff, 0xff, 0xff];
            first.resize(5 + 0x4000, 0x30);
            if s.write_all(&first).is_err() {
                return;
            }
            let mut record = vec![22, 3, 3, 0x40, 0x00];
            record.resize(5 + 0x4000, 0x30);
            for _ in 0..1024 {
                if stop.load(Ordering::Relaxed) || s.write_all(&record).is_err() {
                    break;
                }
            }
        }
    }
}

/// Starts a hostile peer on a free loopback port.
pub fn hostile(behaviour: Behaviour) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a hostile peer");
    let port = listener.local_addr().expect("local addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let Ok(s) = conn else { continue };
            let flag = flag.clone();
            workers.push(std::thread::spawn(move || serve(s, behaviour, &flag)));
        }
        for w in workers {
            let _ = w.join();
        }
    });
    Hostile {
        port,
        stop,
        thread: Some(thread),
    }
}

/// A process named `nginx` that serves nothing (a shell script looping on
/// `sleep`), in its own mount namespace, with `-c` naming a config on a
/// tmpfs only that namespace sees: what a container can show the agent.
/// The host has an empty directory at the same path (`root`). Killed and
/// cleaned up when dropped.
pub struct FakeServer {
    child: std::process::Child,
    pub pid: u32,
    /// The tmpfs mount point inside the namespace (an empty directory on
    /// the host).
    pub root: std::path::PathBuf,
}

impl FakeServer {
    /// The main config path, as the fake server names it.
    pub fn config(&self) -> std::path::PathBuf {
        self.root.join("nginx.conf")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Only the host's (empty or decoy) directory is left.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Starts a [`FakeServer`] running as `uid` (gid the same, no
/// supplementary groups) whose files are `(name, content, mode)`, owned by
/// root, under its `root`; `nginx.conf` among them is the config it names.
pub fn fake_nginx_in_mount_namespace(files: &[(&str, &str, u32)], uid: u32) -> FakeServer {
    use std::os::unix::fs::PermissionsExt;
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let root = std::path::PathBuf::from(format!(
        "/srv/tlsdoctor-e2e-fake-{}-{n}",
        std::process::id()
    ));
    std::fs::create_dir_all(&root).expect("the mount point on the host");
    let stage = crate::TempDir::new("fake-stage");
    let mut all: Vec<(&str, &str, u32)> = files.to_vec();
    all.push(("nginx", "#!/bin/sh\nwhile :; do sleep 1; done\n", 0o755));
    for (name, content, mode) in all {
        let path = stage.join(name);
        std::fs::write(&path, content).expect("staging a file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .expect("setting a staged file's mode");
    }
    let r = root.display().to_string();
    let run_as = if uid == 0 {
        String::new()
    } else {
        format!("setpriv --reuid={uid} --regid={uid} --clear-groups ")
    };
    let script = format!(
        "set -e; mount -t tmpfs -o mode=0755 tmpfs '{r}'; cp -a '{}'/. '{r}'/; \
         exec {run_as}'{r}/nginx' -c '{r}/nginx.conf'",
        stage.path().display()
    );
    let child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting a fake server in a mount namespace");
    let pid = child.id();
    let fake = FakeServer { child, pid, root };
    // Ready once the script runs under its name (unshare, sh and setpriv
    // exec into it, so the pid stays the same).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "nginx" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the fake nginx did not start (comm {comm:?})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(stage);
    fake
}
