//! Process lifecycle: `exec` (userspace then looks for TLS libraries in the
//! new image), the exit of processes that owned tracked state (userspace
//! then drops their sockets from the tracking map), and of threads (their
//! OpenSSL call, if they died inside one, is forgotten).

use agent_ebpf::{EventKind, ProcEvent, TASK_COMM_LEN};
use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::debug;

use crate::maps::{SSL_CALLS, TGID_ACTIVE, header, is_self, reserve};

/// sched:sched_process_exit: `group_dead` (the whole process is gone).
const EXIT_GROUP_DEAD: usize = 32;

#[tracepoint]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_self(tgid) {
        return 0;
    }
    // Rare enough for a log line; filtered out at load unless asked for.
    debug!(&ctx, "exec pid {}", tgid);
    emit(EventKind::Exec);
    0
}

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // A thread that dies inside an OpenSSL call never returns from it.
    let _ = SSL_CALLS.remove(pid_tgid);
    // SAFETY: a field of the tracepoint's record, per its format.
    let group_dead: u8 = unsafe { ctx.read_at(EXIT_GROUP_DEAD) }.unwrap_or(0);
    if group_dead == 0 {
        return 0;
    }
    let tgid = (pid_tgid >> 32) as u32;
    if TGID_ACTIVE.remove(tgid).is_err() {
        return 0;
    }
    emit(EventKind::Exit);
    0
}

#[inline(always)]
fn emit(kind: EventKind) {
    if let Some(mut e) = reserve::<ProcEvent>() {
        e.write(ProcEvent {
            header: header(kind),
            comm: bpf_get_current_comm().unwrap_or([0; TASK_COMM_LEN]),
        });
        e.submit(0);
    }
}
