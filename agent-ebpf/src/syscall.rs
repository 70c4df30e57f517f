//! Layout of the `syscalls:sys_enter_*` / `sys_exit_*` tracepoint records
//! (see /sys/kernel/tracing/events/syscalls/*/format): 8 bytes of common
//! fields, the syscall number, then one 8-byte slot per argument; the exit
//! record holds the return value where the first argument would be.

pub const SYSCALL_ARG0: usize = 16;
pub const SYSCALL_ARG1: usize = 24;
pub const SYSCALL_ARG2: usize = 32;
pub const SYSCALL_RET: usize = 16;
pub const SYSCALL_ARG3: usize = 40;
