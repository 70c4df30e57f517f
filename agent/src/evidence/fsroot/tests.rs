use super::*;
use std::io::Read;

pub(crate) struct TempRoot(pub PathBuf);

impl TempRoot {
    pub fn new(tag: &str) -> TempRoot {
        let dir =
            std::env::temp_dir().join(format!("tlsdoctor-fsroot-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempRoot(dir)
    }
    pub fn write(&self, path: &str, text: &str) {
        let p = self.0.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    pub fn root(&self) -> FsRoot {
        FsRoot::Dir {
            path: self.0.clone(),
        }
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn read(root: &FsRoot, path: &str) -> io::Result<String> {
    let mut s = String::new();
    root.open(Path::new(path))?.read_to_string(&mut s)?;
    Ok(s)
}

#[test]
fn absolute_paths_and_symlinks_resolve_inside_the_root() {
    let t = TempRoot::new("symlinks");
    t.write("/etc/ssl/real.pem", "inside");
    let root = t.root();
    assert_eq!(read(&root, "/etc/ssl/real.pem").unwrap(), "inside");
    // An absolute symlink, as containers have them: resolved in the
    // root, not on the host.
    std::os::unix::fs::symlink("/etc/ssl/real.pem", t.0.join("etc/ssl/link.pem")).unwrap();
    assert_eq!(read(&root, "/etc/ssl/link.pem").unwrap(), "inside");
    // A symlink to a host file does not reach it.
    std::os::unix::fs::symlink("/etc/hostname", t.0.join("etc/host")).unwrap();
    assert_eq!(
        read(&root, "/etc/host").unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    // `..` stops at the root.
    assert_eq!(read(&root, "/../../etc/ssl/real.pem").unwrap(), "inside");
    std::os::unix::fs::symlink("../../../../../../etc/hostname", t.0.join("up")).unwrap();
    assert!(read(&root, "/up").is_err());
    // The host itself is unchanged.
    assert!(read(&FsRoot::Host, "/etc/hostname").is_ok() || !Path::new("/etc/hostname").exists());
}

#[test]
fn metadata_read_dir_and_glob_under_a_root() {
    let t = TempRoot::new("glob");
    t.write("/etc/nginx/conf.d/b.conf", "b");
    t.write("/etc/nginx/conf.d/a.conf", "a");
    t.write("/etc/nginx/conf.d/.hidden.conf", "h");
    t.write("/etc/nginx/conf.d/notes.txt", "n");
    let root = t.root();
    assert!(root.is_dir(Path::new("/etc/nginx/conf.d")));
    assert!(root.exists(Path::new("/etc/nginx/conf.d/a.conf")));
    assert!(!root.exists(Path::new("/etc/nginx/conf.d/zzz.conf")));
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let found: Vec<PathBuf> = root
        .glob("/etc/nginx/conf.d/*.conf", options)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        found,
        vec![
            PathBuf::from("/etc/nginx/conf.d/a.conf"),
            PathBuf::from("/etc/nginx/conf.d/b.conf")
        ]
    );
    let deep: Vec<PathBuf> = root
        .glob("/etc/*/conf.d/a.*", options)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(deep, vec![PathBuf::from("/etc/nginx/conf.d/a.conf")]);
    assert!(root.glob("/nowhere/*.conf", options).unwrap().is_empty());
    assert!(root.same_file(
        Path::new("/etc/nginx/conf.d/a.conf"),
        Path::new("/etc/nginx/../nginx/conf.d/a.conf")
    ));
}

#[test]
fn a_gone_process_and_a_bad_root_are_errors_not_panics() {
    // Pid numbers this high are never handed out (pid_max <= 2^22).
    let gone = FsRoot::Process {
        pid: 4_194_304 + 17,
        mnt_ns: 1,
        reads_as: None,
    };
    let e = gone.open(Path::new("/etc/nginx/nginx.conf")).unwrap_err();
    assert_ne!(e.kind(), io::ErrorKind::NotFound);
    assert!(e.to_string().contains("has exited"), "{e}");
    assert!(gone.metadata(Path::new("/")).is_err());
    let bad = FsRoot::Dir {
        path: PathBuf::from("/nonexistent-tlsdoctor-root"),
    };
    assert!(bad.open(Path::new("/x")).is_err());
    assert_eq!(
        gone.host_view(Path::new("/etc/../etc/nginx/nginx.conf")),
        PathBuf::from("/proc/4194321/root/etc/nginx/nginx.conf")
    );
}

#[test]
fn our_own_process_is_on_the_host() {
    assert_eq!(FsRoot::of_process(std::process::id()), FsRoot::Host);
    assert!(FsRoot::Host.context().is_none());
}

/// Makes `openat2` fail with ENOSYS on the calling thread, as an old kernel
/// or a container runtime's seccomp profile does. (A filter applies to its
/// thread only; the thread sets no_new_privs, which needs no privilege.)
fn deny_openat2_on_this_thread() {
    let filter = [
        // A = seccomp_data.nr
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_openat2 as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with integer arguments, then a pointer to a live
    // sock_fprog whose filter outlives the call (the kernel copies it).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog
            ),
            0,
            "{}",
            io::Error::last_os_error()
        );
    }
}

/// Without openat2 a plain lookup would follow the root's absolute
/// symlink to the host's file: the read is refused instead, and counted.
#[test]
fn without_openat2_nothing_is_read_through_a_root() {
    let host_secret = TempRoot::new("host-secret");
    host_secret.write("/secret.txt", "HOST SECRET");
    let target = host_secret.0.join("secret.txt");
    let t = TempRoot::new("no-openat2");
    t.write("/etc/nginx/real.conf", "inside");
    // Absolute: inside the root it names /<host path>, which the root
    // does not have; resolved against the agent's root it is the secret.
    std::os::unix::fs::symlink(&target, t.0.join("etc/nginx/link.conf")).unwrap();
    let root = t.root();
    assert!(read(&root, "/etc/nginx/link.conf").is_err(), "with openat2");
    let before = refusals().openat2_missing;
    let outcome = std::thread::spawn(move || {
        deny_openat2_on_this_thread();
        let link = read(&root, "/etc/nginx/link.conf");
        let real = read(&root, "/etc/nginx/real.conf");
        let listed = root.read_dir(Path::new("/etc/nginx"), 10);
        (link, real, listed.map(|l| l.entries.len()))
    })
    .join()
    .unwrap();
    let (link, real, listed) = outcome;
    let e = link.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("openat2 is not available"), "{e}");
    // Nothing at all is read through the root, not only the symlink.
    assert!(real.is_err());
    assert!(listed.is_err());
    assert!(refusals().openat2_missing >= before + 3);
}

#[test]
fn a_directory_is_listed_up_to_the_cap() {
    let t = TempRoot::new("listing");
    for i in 0..50 {
        t.write(&format!("/conf.d/{i:02}.conf"), "x");
    }
    for root in [t.root(), FsRoot::Host] {
        let dir = match &root {
            FsRoot::Host => t.0.join("conf.d"),
            _ => PathBuf::from("/conf.d"),
        };
        let all = root.read_dir(&dir, 50).unwrap();
        assert_eq!(all.entries.len(), 50);
        assert!(!all.truncated);
        let some = root.read_dir(&dir, 10).unwrap();
        assert_eq!(some.entries.len(), 10);
        assert!(some.truncated);
    }
}

#[test]
fn a_host_glob_is_capped_per_directory_too() {
    let t = TempRoot::new("glob-cap");
    std::fs::create_dir_all(t.0.join("many")).unwrap();
    for i in 0..(MAX_GLOB_PATHS + 5) {
        std::fs::File::create(t.0.join(format!("many/{i}.conf"))).unwrap();
    }
    let options = glob::MatchOptions::new();
    let pattern = format!("{}/many/*.conf", t.0.display());
    let found = FsRoot::Host.glob(&pattern, options).unwrap();
    let paths = found.iter().filter(|r| r.is_ok()).count();
    assert_eq!(paths, MAX_GLOB_PATHS);
    assert!(
        found
            .iter()
            .any(|r| r.as_ref().is_err_and(|e| e.contains("more than"))),
        "the cut is said"
    );
}

#[test]
fn an_unreadable_namespace_is_refused_not_taken_for_the_hosts() {
    let view = |ns, root| -> io::Result<View> {
        Ok(View {
            mnt_ns: ns,
            root: (1, root),
        })
    };
    let denied = || Err(io::Error::from(io::ErrorKind::PermissionDenied));
    assert_eq!(classify(view(7, 2), view(7, 2)), Ok(None));
    assert_eq!(classify(view(7, 2), view(9, 2)), Ok(Some(9)));
    // Same namespace, another root (a chroot).
    assert_eq!(classify(view(7, 2), view(7, 3)), Ok(Some(7)));
    let theirs = classify(view(7, 2), denied()).unwrap_err();
    assert!(theirs.contains("not readable"), "{theirs}");
    assert!(classify(denied(), view(7, 2)).is_err());
    // A refused root reads nothing, and says why.
    let refused = FsRoot::Unreadable {
        pid: 42,
        reason: theirs,
    };
    let e = refused
        .open(Path::new("/etc/nginx/nginx.conf"))
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    assert!(e.to_string().contains("pid 42"), "{e}");
    assert!(refused.metadata(Path::new("/")).is_err());
    assert!(refused.read_dir(Path::new("/"), 10).is_err());
    assert_eq!(refused.context().as_deref(), Some("of pid 42"));
}

#[test]
fn a_gone_process_is_not_alive() {
    assert!(FsRoot::Host.is_alive());
    let gone = FsRoot::Process {
        pid: 4_194_304 + 23,
        mnt_ns: 1,
        reads_as: None,
    };
    assert!(!gone.is_alive());
    let ns = fs::metadata("/proc/self/ns/mnt").unwrap().ino();
    let us = FsRoot::Process {
        pid: std::process::id(),
        mnt_ns: ns,
        reads_as: None,
    };
    assert!(us.is_alive());
    let reused = FsRoot::Process {
        pid: std::process::id(),
        mnt_ns: ns + 1,
        reads_as: None,
    };
    assert!(!reused.is_alive());
}
