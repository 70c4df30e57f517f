//! tlsdoctor's eBPF programs. Built for `bpfel-unknown-none` by `agent/build.rs`
//! (aya-build); on any other target this file is an empty binary.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(target_arch = "bpf")]
mod held;
#[cfg(target_arch = "bpf")]
mod io;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod openssl;
#[cfg(target_arch = "bpf")]
mod process;
#[cfg(target_arch = "bpf")]
mod sock;
#[cfg(target_arch = "bpf")]
mod sock_io;
#[cfg(target_arch = "bpf")]
mod syscall;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("agent-ebpf holds eBPF programs; build the `agent` crate instead");
}
