//! Kernel side, from userspace: loading the eBPF programs, attaching them,
//! covering TLS libraries, and reading events and counters.

pub mod coverage;
pub mod elf;
pub mod events;
pub mod held;
pub mod kernel;
pub mod tls_libs;
pub mod uprobes;

pub use uprobes::LibraryReport;

use agent_ebpf::{COUNTER_COUNT, Counter, TrackedSock, map_names};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{RawTracePoint, TracePoint};
use aya::{Ebpf, EbpfLoader};
use serde::Serialize;
use tracing::{debug, info, warn};

/// The eBPF object built by `agent/build.rs`.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent-ebpf"));

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("this agent was built without its eBPF programs (AYA_BUILD_SKIP); rebuild without it")]
    NoObject,
    #[error(transparent)]
    Kernel(#[from] kernel::UnsupportedKernel),
    #[error("loading the eBPF object")]
    Load(#[from] aya::EbpfError),
    #[error("eBPF program {program}")]
    Program {
        program: &'static str,
        #[source]
        source: aya::programs::ProgramError,
    },
    #[error("eBPF map {name}")]
    Map {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("eBPF map {name}")]
    MapSyscall {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
    #[error("eBPF program {0} is missing from the object")]
    MissingProgram(&'static str),
    #[error("not supported here: {0}")]
    Unsupported(&'static str),
}

/// Tracepoints every capture mechanism uses: (program, category, event).
const TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sched_process_exec", "sched", "sched_process_exec"),
    ("sched_process_exit", "sched", "sched_process_exit"),
];

/// [`CaptureMechanism::Socket`]: raw tracepoints on socket I/O (Linux 6.3+):
/// (program, tracepoint).
const SOCKET_IO_HOOKS: &[(&str, &str)] = &[
    ("sock_send_length", "sock_send_length"),
    ("sock_recv_length", "sock_recv_length"),
];

/// [`CaptureMechanism::Socket`]: TCP state changes, which also tell its
/// connects and closes: no syscall tracepoint (while one is attached, every
/// syscall on the host takes the kernel's slow path).
const SOCKET_TRACEPOINTS: &[(&str, &str, &str)] =
    &[("sock_tcp_state", "sock", "inet_sock_set_state")];

/// [`CaptureMechanism::Syscalls`]: the socket lifecycle from syscall
/// tracepoints and TCP state changes, and the read/write family of syscall
/// tracepoints, which every process's I/O goes through.
const SYSCALL_TRACEPOINTS: &[(&str, &str, &str)] = &[
    ("sys_enter_connect", "syscalls", "sys_enter_connect"),
    ("sys_exit_connect", "syscalls", "sys_exit_connect"),
    ("sys_enter_accept", "syscalls", "sys_enter_accept"),
    ("sys_exit_accept", "syscalls", "sys_exit_accept"),
    ("sys_enter_accept4", "syscalls", "sys_enter_accept4"),
    ("sys_exit_accept4", "syscalls", "sys_exit_accept4"),
    ("sys_enter_close", "syscalls", "sys_enter_close"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("sys_enter_read", "syscalls", "sys_enter_read"),
    ("sys_exit_read", "syscalls", "sys_exit_read"),
    ("sys_enter_write", "syscalls", "sys_enter_write"),
    ("sys_exit_write", "syscalls", "sys_exit_write"),
    ("sys_enter_recvfrom", "syscalls", "sys_enter_recvfrom"),
    ("sys_exit_recvfrom", "syscalls", "sys_exit_recvfrom"),
    ("sys_enter_sendto", "syscalls", "sys_enter_sendto"),
    ("sys_exit_sendto", "syscalls", "sys_exit_sendto"),
    ("sys_enter_recvmsg", "syscalls", "sys_enter_recvmsg"),
    ("sys_exit_recvmsg", "syscalls", "sys_exit_recvmsg"),
    ("sys_enter_sendmsg", "syscalls", "sys_enter_sendmsg"),
    ("sys_exit_sendmsg", "syscalls", "sys_exit_sendmsg"),
    ("sys_enter_readv", "syscalls", "sys_enter_readv"),
    ("sys_exit_readv", "syscalls", "sys_exit_readv"),
    ("sys_enter_writev", "syscalls", "sys_enter_writev"),
    ("sys_exit_writev", "syscalls", "sys_exit_writev"),
];

/// How handshake bytes are captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CaptureMechanism {
    /// Hooks on socket I/O only (`sock:sock_send_length`/`sock_recv_length`,
    /// Linux 6.3+ with BTF, x86_64) and TCP state changes: no syscall is
    /// hooked at all.
    Socket,
    /// Syscall tracepoints (`connect`, `accept`, `close` and the read/write
    /// family): every process's I/O pays a map lookup, and every syscall the
    /// kernel's slow path. The fallback for older kernels.
    Syscalls,
}

impl CaptureMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureMechanism::Socket => "socket",
            CaptureMechanism::Syscalls => "syscalls",
        }
    }
}

/// Load-time settings.
#[derive(Clone, Debug)]
pub struct CaptureOptions {
    /// Ring buffer size in bytes (a power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// eBPF-side log level (aya-log); `None` silences it.
    pub ebpf_log_level: Option<aya_log::Level>,
    /// The capture mechanism to use; `None`: the best the kernel allows.
    pub mechanism: Option<CaptureMechanism>,
    /// Decide successes in the kernel and drop them there (only a counter
    /// reaches userspace). Off when every success must be seen
    /// (`--show-success`, success sampling).
    pub hold_successes: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            ringbuf_bytes: 4 * 1024 * 1024,
            ebpf_log_level: None,
            mechanism: None,
            hold_successes: true,
        }
    }
}

/// Which capture mechanism runs, and why not the preferred one.
#[derive(Clone, Debug, Serialize)]
pub struct MechanismReport {
    pub mechanism: CaptureMechanism,
    /// Why the socket hooks are not used, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
}

/// The loaded, attached eBPF programs.
pub struct Capture {
    ebpf: Ebpf,
    libraries: uprobes::AttachedFiles,
    mechanism: MechanismReport,
}

impl Capture {
    /// Loads the programs and attaches the tracepoints. Uprobes are attached
    /// per file with `Capture::apply_coverage`.
    pub fn load(options: &CaptureOptions) -> Result<Capture, CaptureError> {
        if EBPF_OBJECT.is_empty() {
            return Err(CaptureError::NoObject);
        }
        bump_memlock_rlimit();
        kernel::check_supported()?;
        let own_tgid = std::process::id();
        let log_level = options.ebpf_log_level.map(|l| l as u8).unwrap_or(0);
        let hold_successes = u32::from(options.hold_successes);
        let mut ebpf = EbpfLoader::new()
            .override_global("AGENT_TGID", &own_tgid, true)
            .override_global(map_names::HOLD_SUCCESSES, &hold_successes, true)
            .override_global(aya_log::LEVEL, &log_level, false)
            .map_max_entries(map_names::EVENTS, options.ringbuf_bytes)
            .load(EBPF_OBJECT)?;
        if options.ebpf_log_level.is_some() {
            start_ebpf_logger(&mut ebpf);
        }
        attach_tracepoints(&mut ebpf, TRACEPOINTS)?;
        let mechanism = match options.mechanism {
            Some(CaptureMechanism::Syscalls) => MechanismReport {
                mechanism: CaptureMechanism::Syscalls,
                fallback_reason: Some("chosen by --capture".to_string()),
            },
            Some(CaptureMechanism::Socket) => {
                attach_socket_mechanism(&mut ebpf)?;
                MechanismReport {
                    mechanism: CaptureMechanism::Socket,
                    fallback_reason: None,
                }
            }
            None => match attach_socket_mechanism(&mut ebpf) {
                Ok(()) => MechanismReport {
                    mechanism: CaptureMechanism::Socket,
                    fallback_reason: None,
                },
                Err(e) => {
                    let reason = crate::text::Chain(&e).to_string();
                    warn!(reason = %reason, "socket hooks unavailable; hooking syscalls instead");
                    MechanismReport {
                        mechanism: CaptureMechanism::Syscalls,
                        fallback_reason: Some(reason),
                    }
                }
            },
        };
        if mechanism.mechanism == CaptureMechanism::Syscalls {
            attach_tracepoints(&mut ebpf, SYSCALL_TRACEPOINTS)?;
        }
        let uprobe_programs = uprobes::load_programs(&mut ebpf)?;
        info!(
            mechanism = mechanism.mechanism.as_str(),
            uprobe_programs, "eBPF programs loaded"
        );
        Ok(Capture {
            ebpf,
            libraries: uprobes::AttachedFiles::default(),
            mechanism,
        })
    }

    /// The capture mechanism that runs.
    pub fn mechanism(&self) -> &MechanismReport {
        &self.mechanism
    }

    pub fn libraries(&self) -> impl Iterator<Item = &LibraryReport> {
        self.libraries.reports()
    }

    /// Takes the event ring buffer (once).
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, CaptureError> {
        let map = self
            .ebpf
            .take_map(map_names::EVENTS)
            .ok_or(CaptureError::MissingMap(map_names::EVENTS))?;
        RingBuf::try_from(map).map_err(|source| CaptureError::Map {
            name: map_names::EVENTS,
            source,
        })
    }

    /// Kernel counters summed over CPUs.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, CaptureError> {
        let map = self
            .ebpf
            .map(map_names::COUNTERS)
            .ok_or(CaptureError::MissingMap(map_names::COUNTERS))?;
        let array: PerCpuArray<&MapData, u64> =
            PerCpuArray::try_from(map).map_err(|source| CaptureError::Map {
                name: map_names::COUNTERS,
                source,
            })?;
        let mut out = Vec::with_capacity(COUNTER_COUNT as usize);
        for counter in Counter::ALL {
            let values = array
                .get(&(counter as u32), 0)
                .map_err(|source| CaptureError::Map {
                    name: map_names::COUNTERS,
                    source,
                })?;
            out.push((counter, values.iter().sum()));
        }
        Ok(out)
    }

    /// Stops tracking sockets (of an exited process, or found stale).
    pub fn untrack(&mut self, keys: &[u64]) -> Result<usize, CaptureError> {
        let map = self
            .ebpf
            .map_mut(map_names::TRACKED)
            .ok_or(CaptureError::MissingMap(map_names::TRACKED))?;
        let mut tracked: BpfHashMap<&mut MapData, u64, TrackedSock> = BpfHashMap::try_from(map)
            .map_err(|source| CaptureError::Map {
                name: map_names::TRACKED,
                source,
            })?;
        let mut removed = 0;
        for key in keys {
            if tracked.remove(key).is_ok() {
                removed += 1;
            }
        }
        held::forget(&mut self.ebpf, keys)?;
        Ok(removed)
    }

    /// Holds that began before `started_before` (monotonic ns), taken out
    /// of the kernel as `EventKind::Held` records (see [`held`]).
    pub fn release_stale_holds(
        &mut self,
        started_before: u64,
    ) -> Result<Vec<Vec<u8>>, CaptureError> {
        held::release_stale(&mut self.ebpf, started_before)
    }

    /// Local ports of servers whose successful handshakes the kernel
    /// confirmed (and userspace never saw).
    pub fn served_tls_ports(&self) -> Result<Vec<u16>, CaptureError> {
        held::served_tls_ports(&self.ebpf)
    }
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, CaptureError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let program = ebpf
        .program_mut(name)
        .ok_or(CaptureError::MissingProgram(name))?;
    program.try_into().map_err(|source| CaptureError::Program {
        program: name,
        source,
    })
}

fn attach_tracepoints(
    ebpf: &mut Ebpf,
    tracepoints: &[(&'static str, &str, &str)],
) -> Result<(), CaptureError> {
    for &(program, category, event) in tracepoints {
        let tp: &mut TracePoint = program_mut(ebpf, program)?;
        tp.load()
            .map_err(|source| CaptureError::Program { program, source })?;
        tp.attach(category, event)
            .map_err(|source| CaptureError::Program { program, source })?;
    }
    Ok(())
}

/// Loads and attaches the socket mechanism's hooks, all or none: on an
/// error the ones already loaded are unloaded again.
fn attach_socket_mechanism(ebpf: &mut Ebpf) -> Result<(), CaptureError> {
    if !cfg!(target_arch = "x86_64") {
        // The hooks read the syscall's registers at x86_64 offsets.
        return Err(CaptureError::Unsupported(
            "the socket hooks read x86_64 syscall registers",
        ));
    }
    let mut raw_done: Vec<&'static str> = Vec::new();
    let mut result = Ok(());
    for &(program, tracepoint) in SOCKET_IO_HOOKS {
        let attached = program_mut::<RawTracePoint>(ebpf, program).and_then(|p| {
            p.load()
                .and_then(|()| p.attach(tracepoint).map(|_| ()))
                .map_err(|source| CaptureError::Program { program, source })
        });
        match attached {
            Ok(()) => raw_done.push(program),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    if result.is_ok() {
        result = attach_tracepoints(ebpf, SOCKET_TRACEPOINTS);
    }
    if result.is_err() {
        for program in raw_done {
            if let Ok(p) = program_mut::<RawTracePoint>(ebpf, program)
                && let Err(e) = p.unload()
            {
                warn!(program, error = %crate::text::Chain(&e), "unloading a socket hook");
            }
        }
        for &(program, _, _) in SOCKET_TRACEPOINTS {
            if let Ok(p) = program_mut::<TracePoint>(ebpf, program)
                && p.fd().is_ok()
                && let Err(e) = p.unload()
            {
                warn!(program, error = %crate::text::Chain(&e), "unloading a socket hook");
            }
        }
    }
    result
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
fn bump_memlock_rlimit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid pointer to an initialized struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) } != 0 {
        debug!("could not raise RLIMIT_MEMLOCK; fine on kernels with memcg accounting");
    }
}

/// Forwards eBPF-side log records (aya-log) to the agent's log.
fn start_ebpf_logger(ebpf: &mut Ebpf) {
    match aya_log::EbpfLogger::init(ebpf) {
        Ok(logger) => {
            // SAFETY: the logger owns its ring-buffer fd for the AsyncFd's lifetime.
            let registered = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(
                    logger,
                    tokio::io::Interest::READABLE,
                )
            };
            let Ok(mut fd) = registered else {
                warn!("eBPF logger: cannot poll its ring buffer");
                return;
            };
            tokio::spawn(async move {
                loop {
                    let Ok(mut guard) = fd.readable_mut().await else {
                        break;
                    };
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            });
        }
        Err(e) => warn!(error = %crate::text::Chain(&e), "eBPF logger not started"),
    }
}
