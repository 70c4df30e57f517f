//! The userspace side of holding handshakes in the kernel (see
//! `agent-ebpf/src/held.rs`): releasing holds that lasted too long, and the
//! server ports whose confirmed successes the kernel noted.
//!
//! A hold ends in the kernel on every event that decides it; only a
//! handshake that stalls has no such event. After [`RELEASE_AFTER`] its
//! held events are taken from the kernel map and handed to assembly like a
//! released hold, and the socket streams from then on.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use agent_ebpf::{HELD_VALUE_SIZE, HeldHeader, map_names};
use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData};

use super::CaptureError;

/// How long a socket may hold its events before userspace releases them.
/// Well under the stall timeout, so that a stalled handshake is still
/// reported on time; a slow handshake released early only costs what it
/// cost before holding existed.
pub const RELEASE_AFTER: Duration = Duration::from_secs(2);

/// Holds released per scan at most (a scan runs every tick).
const MAX_RELEASES_PER_SCAN: usize = 256;

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps: Linux 5.14).
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// Takes the holds that began before `started_before` (monotonic ns) out of
/// the kernel: each returned buffer is one `EventKind::Held` record.
pub fn release_stale(ebpf: &mut Ebpf, started_before: u64) -> Result<Vec<Vec<u8>>, CaptureError> {
    let stale: Vec<u64> = {
        let since = held_since(ebpf)?;
        since
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, started)| *started < started_before)
            .map(|(key, _)| key)
            .take(MAX_RELEASES_PER_SCAN)
            .collect()
    };
    if stale.is_empty() {
        return Ok(Vec::new());
    }
    let mut records = Vec::with_capacity(stale.len());
    {
        let held = ebpf
            .map(map_names::HELD)
            .ok_or(CaptureError::MissingMap(map_names::HELD))?;
        let MapDataFd(fd) = map_fd(held)?;
        for key in &stale {
            let mut value = vec![0u8; HELD_VALUE_SIZE];
            match lookup_and_delete(fd, *key, &mut value) {
                Ok(true) => {
                    let len = held_record_len(&value);
                    value.truncate(len);
                    records.push(value);
                }
                // Released or confirmed by the kernel meanwhile.
                Ok(false) => {}
                Err(source) => {
                    return Err(CaptureError::MapSyscall {
                        name: map_names::HELD,
                        source,
                    });
                }
            }
        }
    }
    let mut since = held_since_mut(ebpf)?;
    for key in &stale {
        let _ = since.remove(key);
    }
    Ok(records)
}

/// Forgets the holds of sockets userspace stopped following (their
/// process exited): their entries would otherwise wait for a close that
/// may never be seen.
pub fn forget(ebpf: &mut Ebpf, keys: &[u64]) -> Result<(), CaptureError> {
    {
        let held = ebpf
            .map(map_names::HELD)
            .ok_or(CaptureError::MissingMap(map_names::HELD))?;
        let MapDataFd(fd) = map_fd(held)?;
        let mut value = vec![0u8; HELD_VALUE_SIZE];
        for key in keys {
            let _ = lookup_and_delete(fd, *key, &mut value);
        }
    }
    let mut since = held_since_mut(ebpf)?;
    for key in keys {
        let _ = since.remove(key);
    }
    Ok(())
}

/// Local ports of servers whose handshakes the kernel confirmed.
pub fn served_tls_ports(ebpf: &Ebpf) -> Result<Vec<u16>, CaptureError> {
    let map = ebpf
        .map(map_names::SERVED_TLS_PORTS)
        .ok_or(CaptureError::MissingMap(map_names::SERVED_TLS_PORTS))?;
    let ports: BpfHashMap<&MapData, u16, u8> =
        BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
            name: map_names::SERVED_TLS_PORTS,
            source,
        })?;
    Ok(ports.keys().filter_map(Result::ok).collect())
}

/// The length of the held record in a map value: its header and entries.
fn held_record_len(value: &[u8]) -> usize {
    let header_len = size_of::<HeldHeader>();
    if value.len() < header_len {
        return value.len();
    }
    // SAFETY: `value` holds at least a `HeldHeader`, a plain-old-data
    // `#[repr(C)]` struct valid for any bit pattern; read unaligned.
    let header: HeldHeader = unsafe { std::ptr::read_unaligned(value.as_ptr().cast()) };
    (header_len + header.len as usize).min(value.len())
}

fn held_since(ebpf: &Ebpf) -> Result<BpfHashMap<&MapData, u64, u64>, CaptureError> {
    let map = ebpf
        .map(map_names::HELD_SINCE)
        .ok_or(CaptureError::MissingMap(map_names::HELD_SINCE))?;
    BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
        name: map_names::HELD_SINCE,
        source,
    })
}

fn held_since_mut(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u64, u64>, CaptureError> {
    let map = ebpf
        .map_mut(map_names::HELD_SINCE)
        .ok_or(CaptureError::MissingMap(map_names::HELD_SINCE))?;
    BpfHashMap::try_from(map).map_err(|source| CaptureError::Map {
        name: map_names::HELD_SINCE,
        source,
    })
}

struct MapDataFd<'a>(BorrowedFd<'a>);

fn map_fd(map: &aya::maps::Map) -> Result<MapDataFd<'_>, CaptureError> {
    let data: &MapData = match map {
        aya::maps::Map::HashMap(data) => data,
        _ => return Err(CaptureError::MissingMap(map_names::HELD)),
    };
    Ok(MapDataFd(data.fd().as_fd()))
}

/// Reads `key`'s value into `value` and deletes it, atomically with
/// respect to the kernel programs' map operations (aya exposes this for
/// queues and stacks only). False when the key is absent.
fn lookup_and_delete(fd: BorrowedFd<'_>, key: u64, value: &mut [u8]) -> std::io::Result<bool> {
    // `union bpf_attr` as the map element commands use it.
    #[repr(C)]
    struct MapElemAttr {
        map_fd: u32,
        _pad: u32,
        key: u64,
        value: u64,
        flags: u64,
    }
    if value.len() < HELD_VALUE_SIZE {
        return Err(std::io::Error::other(
            "value buffer smaller than the map's values",
        ));
    }
    let attr = MapElemAttr {
        map_fd: fd.as_raw_fd() as u32,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    // SAFETY: `attr` names a live map fd, a key of the map's key size and a
    // buffer of at least its value size, all alive for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_AND_DELETE_ELEM,
            std::ptr::from_ref(&attr),
            size_of::<MapElemAttr>(),
        )
    };
    if ret == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::ENOENT) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_value_is_cut_to_its_header_and_entries() {
        let mut value = vec![0u8; HELD_VALUE_SIZE];
        let header = HeldHeader {
            len: 48,
            count: 1,
            ..Default::default()
        };
        // SAFETY: writes a plain-old-data header at the front of a buffer
        // larger than it.
        unsafe { std::ptr::write_unaligned(value.as_mut_ptr().cast(), header) };
        assert_eq!(held_record_len(&value), size_of::<HeldHeader>() + 48);
        // A lying length is capped at the value.
        let header = HeldHeader {
            len: u32::MAX,
            ..Default::default()
        };
        // SAFETY: as above.
        unsafe { std::ptr::write_unaligned(value.as_mut_ptr().cast(), header) };
        assert_eq!(held_record_len(&value), HELD_VALUE_SIZE);
        assert_eq!(held_record_len(&[1, 2]), 2);
    }
}
