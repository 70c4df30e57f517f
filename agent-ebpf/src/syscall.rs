//! What a syscall was called with, two ways.
//!
//! The fallback mechanism reads the `syscalls:sys_enter_*` / `sys_exit_*`
//! tracepoint records (see /sys/kernel/tracing/events/syscalls/*/format): 8
//! bytes of common fields, the syscall number, then one 8-byte slot per
//! argument; the exit record holds the return value where the first
//! argument would be.
//!
//! The socket mechanism attaches no syscall tracepoint at all (while any is
//! attached, every syscall of every task takes the kernel's slow path): its
//! hooks read the task's saved user registers instead ([`syscall_regs`]).

pub const SYSCALL_ARG0: usize = 16;
pub const SYSCALL_ARG1: usize = 24;
pub const SYSCALL_ARG2: usize = 32;
pub const SYSCALL_RET: usize = 16;
pub const SYSCALL_ARG3: usize = 40;

use aya_ebpf::helpers::{bpf_probe_read_kernel, generated};

/// The syscall registers the hooks need (x86_64 `struct pt_regs`, an ABI:
/// `r10` at 56 through `orig_ax` at 120, 8 bytes each).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallRegs {
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub ax: u64,
    pub cx: u64,
    pub dx: u64,
    pub si: u64,
    pub di: u64,
    /// The syscall number.
    pub orig_ax: u64,
}

const PT_REGS_R10: usize = 56;

// x86_64 syscall numbers.
pub const NR_READ: u64 = 0;
pub const NR_WRITE: u64 = 1;
pub const NR_CLOSE: u64 = 3;
pub const NR_READV: u64 = 19;
pub const NR_WRITEV: u64 = 20;
pub const NR_CONNECT: u64 = 42;
pub const NR_SENDTO: u64 = 44;
pub const NR_RECVFROM: u64 = 45;
pub const NR_SENDMSG: u64 = 46;
pub const NR_RECVMSG: u64 = 47;

/// True for the syscalls whose first argument is the socket they move
/// bytes on.
#[inline(always)]
pub fn is_socket_io(nr: u64) -> bool {
    matches!(
        nr,
        NR_READ
            | NR_WRITE
            | NR_READV
            | NR_WRITEV
            | NR_SENDTO
            | NR_RECVFROM
            | NR_SENDMSG
            | NR_RECVMSG
    )
}

/// The current task's syscall registers.
#[inline(always)]
pub fn syscall_regs() -> Option<SyscallRegs> {
    // SAFETY: helpers with no preconditions; the returned pointer is only
    // read through the fault-tolerant probe-read helper.
    let regs = unsafe {
        let task = generated::bpf_get_current_task_btf();
        generated::bpf_task_pt_regs(task)
    };
    if regs == 0 {
        return None;
    }
    let at = (regs as u64 + PT_REGS_R10 as u64) as *const SyscallRegs;
    // SAFETY: a kernel address read with the fault-tolerant helper.
    unsafe { bpf_probe_read_kernel(at) }.ok()
}
