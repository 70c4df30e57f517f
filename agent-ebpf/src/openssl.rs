//! OpenSSL uprobes (libssl/libcrypto 1.1 and 3.x, attached per library file).
//!
//! A thread entering a handshake-driving call (`SSL_do_handshake`,
//! `SSL_connect`, `SSL_accept`) gets an entry in `SSL_CALLS`. While it is
//! there, SSL and X509 errors the library raises and the X.509 verify result
//! are collected into it; socket syscalls inside the call name its fd. On
//! return, one `SslEvent` reports a finished handshake, or a failed one with
//! OpenSSL's own reasons. Non-blocking WANT_READ/WANT_WRITE returns are only
//! counted.
//!
//! Userspace (`agent/src/capture/uprobes.rs`) decides where each program
//! attaches so that a successful handshake traps as little as possible:
//! the error programs sit on libssl's own PLT stubs where it has them (only
//! libssl's errors trap, not the ones libcrypto raises and clears in every
//! handshake), `SSL_connect`/`SSL_accept` are left out where they call the
//! probed `SSL_do_handshake`, and the verify result is read at the entry of
//! `X509_STORE_CTX_get_error` from the field offset its code loads (the
//! attach cookie). Which socket a call is on comes from the socket I/O the
//! call itself does (the socket hooks fill it in), or `SSL_set_fd`.
//!
//! `SSL_read`/`SSL_write` are deliberately not probed: a uprobe hit is a trap
//! into the kernel (~0.8 µs here, see BENCHMARKS.md; more with an entry and a
//! return probe), and those calls run for every record of every established
//! connection. Handshakes driven from inside them (`openssl s_client`) and a
//! TLS 1.3 server's late rejection of a client certificate still raise their
//! errors through `ERR_vset_error`; those arrive as `SslFunc::Outside` events.

use agent_ebpf::{
    Counter, ERR_LIB_SSL, ERR_LIB_X509, EventKind, MAX_SSL_ERRORS, SSL_FLAG_ERRORS_TRUNCATED,
    SSL_FLAG_HANDSHAKE_DONE_BEFORE, SSL_FLAG_VERIFY_RESULT, SslError, SslEvent, SslFunc, sock_key,
};
use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user, generated},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::held;
use crate::maps::{
    SSL_CALLS, SSL_SCRATCH, SSL_STATE, SSL_STATE_DONE, SslKey, SslState, count, header, is_self,
    mark_active, reserve,
};

/// An inner call entered within this long of the outer one on the same
/// `SSL*` is nested (`SSL_connect` -> `SSL_do_handshake`); an older entry is
/// left over from a return the probe missed and is replaced.
const NESTING_WINDOW_NS: u64 = 1_000_000_000;

#[inline(always)]
fn ssl_key(tgid: u32, ptr: u64) -> SslKey {
    SslKey { tgid, _pad: 0, ptr }
}

macro_rules! ssl_call_hooks {
    ($enter:ident, $exit:ident, $func:expr) => {
        #[uprobe]
        pub fn $enter(ctx: ProbeContext) -> u32 {
            let _ = call_enter(&ctx, $func);
            0
        }

        #[uretprobe]
        pub fn $exit(ctx: RetProbeContext) -> u32 {
            let _ = call_exit(&ctx);
            0
        }
    };
}

ssl_call_hooks!(ssl_do_handshake, ssl_do_handshake_ret, SslFunc::DoHandshake);
ssl_call_hooks!(ssl_connect, ssl_connect_ret, SslFunc::Connect);
ssl_call_hooks!(ssl_accept, ssl_accept_ret, SslFunc::Accept);

#[inline(always)]
fn call_enter(ctx: &ProbeContext, func: SslFunc) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    if is_self(tgid) {
        return Ok(());
    }
    let ssl: u64 = ctx.arg(0).ok_or(())?;
    // SAFETY: a helper without preconditions.
    let now = unsafe { bpf_ktime_get_ns() };

    if let Some(existing) = SSL_CALLS.get_ptr_mut(pid_tgid) {
        // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
        let existing = unsafe { &mut *existing };
        if existing.ssl == ssl && existing.depth > 0 && now - existing.entry_ts < NESTING_WINDOW_NS
        {
            existing.depth += 1;
            return Ok(());
        }
    }

    let Some(scratch) = SSL_SCRATCH.get_ptr_mut(0) else {
        return Ok(());
    };
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let call = unsafe { &mut *scratch };
    call.ssl = ssl;
    call.entry_ts = now;
    // Set by the socket I/O this call does; the SSL*'s last socket otherwise.
    call.fd = -1;
    call.verify_result = 0;
    call.func = func as u8;
    call.depth = 1;
    call.error_count = 0;
    call.flags = 0;
    if SSL_CALLS.insert(pid_tgid, *call, 0).is_err() {
        count(Counter::SslCallMapFull);
    }
    Ok(())
}

#[inline(always)]
fn call_exit(ctx: &RetProbeContext) -> Result<(), ()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let Some(call) = SSL_CALLS.get_ptr_mut(pid_tgid) else {
        return Ok(());
    };
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let call = unsafe { &mut *call };
    if call.depth > 1 {
        call.depth -= 1;
        return Ok(());
    }
    let ret: i32 = ctx.ret();
    let tgid = (pid_tgid >> 32) as u32;
    // Remember the socket and completion for the next calls on this SSL*.
    let key = ssl_key(tgid, call.ssl);
    // SAFETY: the map value is copied out at once.
    let mut state = match unsafe { SSL_STATE.get(key) } {
        Some(s) => *s,
        None => SslState { fd: -1, flags: 0 },
    };
    if call.fd >= 0 && call.fd != state.fd {
        // I/O on another socket: a new connection on this (reused) SSL*.
        state = SslState {
            fd: call.fd,
            flags: 0,
        };
    }
    let done_before = state.flags & SSL_STATE_DONE != 0;
    if done_before {
        call.flags |= SSL_FLAG_HANDSHAKE_DONE_BEFORE;
    }
    // The handshake functions return 1 on success.
    let succeeded = ret > 0;
    let has_errors = call.error_count > 0;
    let completes = succeeded && !done_before;
    if completes {
        state.flags |= SSL_STATE_DONE;
    }
    let _ = SSL_STATE.insert(key, state, 0);
    mark_active(tgid);

    let report = completes || has_errors;
    if !report {
        if !succeeded {
            count(Counter::SslWouldBlock);
        }
        let _ = SSL_CALLS.remove(pid_tgid);
        return Ok(());
    }
    let fd = if call.fd >= 0 { call.fd } else { state.fd };
    let event = SslEvent {
        header: header(EventKind::Ssl),
        ssl: call.ssl,
        entry_ts_ns: call.entry_ts,
        fd,
        ret,
        func: call.func,
        flags: call.flags,
        error_count: call.error_count,
        _pad: 0,
        verify_result: call.verify_result,
        errors: call.errors,
    };
    let key = sock_key(tgid, fd);
    if !succeeded {
        // A failed handshake: userspace decides, from everything held.
        held::release(key);
    }
    held::emit(key, &event);
    let _ = SSL_CALLS.remove(pid_tgid);
    Ok(())
}

/// OpenSSL 3.x: every `ERR_raise` ends here (`ERR_set_error` calls it too).
#[uprobe]
pub fn err_vset_error(ctx: ProbeContext) -> u32 {
    let lib: Option<i32> = ctx.arg(0);
    let reason: Option<i32> = ctx.arg(1);
    if let (Some(lib), Some(reason)) = (lib, reason) {
        record_error(lib as u32, reason as u32, 0);
    }
    0
}

/// OpenSSL 1.1: `ERR_put_error(lib, func, reason, file, line)`.
#[uprobe]
pub fn err_put_error(ctx: ProbeContext) -> u32 {
    let lib: Option<i32> = ctx.arg(0);
    let reason: Option<i32> = ctx.arg(2);
    let line: Option<i32> = ctx.arg(4);
    if let (Some(lib), Some(reason)) = (lib, reason) {
        record_error(lib as u32, reason as u32, line.unwrap_or(0) as u32);
    }
    0
}

#[inline(always)]
fn record_error(lib: u32, reason: u32, line: u32) {
    if lib != ERR_LIB_SSL && lib != ERR_LIB_X509 {
        return;
    }
    let Some(call) = SSL_CALLS.get_ptr_mut(bpf_get_current_pid_tgid()) else {
        // SSL and X509 errors are rare outside a failing connection (other
        // libraries' errors, raised and cleared all the time, were dropped
        // above); userspace keeps the ones it can tie to a connection.
        emit_outside(
            Some(SslError {
                lib,
                reason,
                line,
                _pad: 0,
            }),
            None,
        );
        return;
    };
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let call = unsafe { &mut *call };
    let idx = call.error_count as usize;
    if idx >= MAX_SSL_ERRORS {
        call.flags |= SSL_FLAG_ERRORS_TRUNCATED;
        count(Counter::SslErrorsTruncated);
        return;
    }
    let Some(slot) = call.errors.get_mut(idx) else {
        return;
    };
    slot.lib = lib;
    slot.reason = reason;
    slot.line = line;
    slot._pad = 0;
    call.error_count += 1;
}

/// libssl reads the chain verification result with this right after
/// `X509_verify_cert`. Entry probe: the accessor only loads `ctx->error`,
/// at the offset userspace decoded from its code and passes as the attach
/// cookie; reading it here spares the return probe's trap.
#[uprobe]
pub fn x509_store_ctx_get_error(ctx: ProbeContext) -> u32 {
    let Some(store_ctx) = ctx.arg::<u64>(0) else {
        return 0;
    };
    // SAFETY: a helper that reads the context's own attach cookie.
    let offset = unsafe { generated::bpf_get_attach_cookie(ctx.as_ptr()) };
    if store_ctx == 0 || offset == 0 || offset > 0xffff {
        return 0;
    }
    // SAFETY: a user-memory read through the helper, which faults safely.
    if let Ok(result) = unsafe { bpf_probe_read_user((store_ctx + offset) as *const i32) } {
        verify_result(result);
    }
    0
}

/// The same, from the return value, where the accessor's code is not one load.
#[uretprobe]
pub fn x509_store_ctx_get_error_ret(ctx: RetProbeContext) -> u32 {
    verify_result(ctx.ret());
    0
}

#[inline(always)]
fn verify_result(result: i32) {
    let Some(call) = SSL_CALLS.get_ptr_mut(bpf_get_current_pid_tgid()) else {
        // A failed verdict outside a followed call (s_client verifies inside
        // SSL_read); a passing one says nothing.
        if result != 0 {
            emit_outside(None, Some(result));
        }
        return;
    };
    // SAFETY: a live map value the verifier checked; writers on other CPUs can only make it stale, not invalid.
    let call = unsafe { &mut *call };
    // Keep the first failure: later calls (callbacks) may read it again.
    if call.flags & SSL_FLAG_VERIFY_RESULT == 0 || (call.verify_result == 0 && result != 0) {
        call.verify_result = result;
        call.flags |= SSL_FLAG_VERIFY_RESULT;
    }
}

/// Reports an error or a failed verify result raised outside any followed
/// call, for userspace to tie to the thread's connection.
#[inline(always)]
fn emit_outside(error: Option<SslError>, verify_result: Option<i32>) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_self(tgid) {
        return;
    }
    // Userspace ties the error to this thread's connection: it must have
    // seen that connection first.
    held::release_thread_socket();
    let Some(mut e) = reserve::<SslEvent>() else {
        return;
    };
    // SAFETY: every field is written before the entry is submitted.
    let ev = unsafe { e.assume_init_mut() };
    ev.header = header(EventKind::Ssl);
    ev.ssl = 0;
    ev.entry_ts_ns = ev.header.ts_ns;
    ev.fd = -1;
    ev.ret = 0;
    ev.func = SslFunc::Outside as u8;
    ev.flags = if verify_result.is_some() {
        SSL_FLAG_VERIFY_RESULT
    } else {
        0
    };
    ev._pad = 0;
    ev.verify_result = verify_result.unwrap_or(0);
    ev.errors = [SslError {
        lib: 0,
        reason: 0,
        line: 0,
        _pad: 0,
    }; MAX_SSL_ERRORS];
    ev.error_count = 0;
    if let Some(error) = error {
        ev.errors[0] = error;
        ev.error_count = 1;
    }
    e.submit(0);
}

/// `SSL_set_fd(ssl, fd)` and `SSL_set_rfd(ssl, fd)`: nginx, python.
#[uprobe]
pub fn ssl_set_fd(ctx: ProbeContext) -> u32 {
    let (Some(ssl), Some(fd)) = (ctx.arg::<u64>(0), ctx.arg::<i32>(1)) else {
        return 0;
    };
    bind_fd(ssl, fd);
    0
}

#[inline(always)]
fn bind_fd(ssl: u64, fd: i32) {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if is_self(tgid) {
        return;
    }
    let state = SslState { fd, flags: 0 };
    // A new binding starts a new connection on a possibly reused SSL*.
    let _ = SSL_STATE.insert(ssl_key(tgid, ssl), state, 0);
}
