//! Typed decoding of the kernel's ring-buffer records.
//!
//! The layouts are the `#[repr(C)]` structs of `agent_ebpf`, defined once and
//! shared; this module only checks lengths and kinds and copies them out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use agent_ebpf::{
    AF_INET, AF_INET6, CloseEvent, ConnEvent, DATA_EVENT_HEADER_LEN, DataEvent, Direction,
    Endpoint, EventHeader, EventKind, HeldEntry, HeldHeader, ProcEvent, SockStateEvent, SslEvent,
};

/// A record the agent could not decode. Counted and logged once per kind; the
/// capture goes on.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {0} bytes is shorter than an event header")]
    TooShort(usize),
    #[error("unknown event kind {0}")]
    UnknownKind(u32),
    #[error("{kind:?} record of {len} bytes, expected at least {expected}")]
    Truncated {
        kind: EventKind,
        len: usize,
        expected: usize,
    },
    #[error("data record claims {claimed} payload bytes but carries {carried}")]
    BadDataLength { claimed: usize, carried: usize },
    #[error("held record: entry at byte {at} claims {claimed} bytes, {left} are left")]
    BadHeldEntry {
        at: usize,
        claimed: usize,
        left: usize,
    },
    #[error("held record nested in a held record")]
    NestedHeld,
}

/// Handshake bytes with their metadata. The payload is borrowed from the
/// ring-buffer record: nothing is allocated per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataRecord<'a> {
    pub header: EventHeader,
    pub fd: i32,
    pub direction: Direction,
    pub flags: u8,
    pub syscall: u8,
    pub stream_offset: u32,
    pub syscall_len: u32,
    pub bytes: &'a [u8],
}

/// One decoded kernel event.
#[derive(Clone, Debug)]
pub enum KernelEvent<'a> {
    Connect(ConnEvent),
    Accept(ConnEvent),
    SockState(SockStateEvent),
    Data(DataRecord<'a>),
    Close(CloseEvent),
    Ssl(Box<SslEvent>),
    Exec(ProcEvent),
    Exit(ProcEvent),
    /// One socket's events, held in the kernel until it was clear that its
    /// handshake was not a plain success, in the order they happened.
    Held(HeldEvents<'a>),
}

/// The events of a [`KernelEvent::Held`] record, decoded one by one.
#[derive(Clone, Debug)]
pub struct HeldEvents<'a> {
    pub header: HeldHeader,
    entries: &'a [u8],
}

impl<'a> HeldEvents<'a> {
    /// The held events, in order. An entry that cannot be decoded is an
    /// error in its place; an entry whose length runs past the record
    /// ends the walk with an error.
    pub fn events(&self) -> impl Iterator<Item = Result<KernelEvent<'a>, DecodeError>> + 'a {
        let entries = self.entries;
        let mut at = 0usize;
        let mut broken = false;
        std::iter::from_fn(move || {
            if broken || at >= entries.len() {
                return None;
            }
            let prefix = size_of::<HeldEntry>();
            let left = entries.len() - at;
            let claimed = match entries.get(at..at + prefix) {
                Some(raw) => read::<HeldEntry>(raw, EventKind::Held).ok()?.len as usize,
                None => usize::MAX,
            };
            if claimed == usize::MAX || claimed > left - prefix {
                broken = true;
                return Some(Err(DecodeError::BadHeldEntry { at, claimed, left }));
            }
            let event = &entries[at + prefix..at + prefix + claimed];
            at += (prefix + claimed).next_multiple_of(8);
            Some(match decode(event) {
                Ok(KernelEvent::Held(_)) => Err(DecodeError::NestedHeld),
                other => other,
            })
        })
    }
}

impl KernelEvent<'_> {
    pub fn header(&self) -> &EventHeader {
        match self {
            KernelEvent::Connect(e) | KernelEvent::Accept(e) => &e.header,
            KernelEvent::SockState(e) => &e.header,
            KernelEvent::Data(e) => &e.header,
            KernelEvent::Close(e) => &e.header,
            KernelEvent::Ssl(e) => &e.header,
            KernelEvent::Exec(e) | KernelEvent::Exit(e) => &e.header,
            KernelEvent::Held(e) => &e.header.header,
        }
    }
}

/// Copies a `T` out of the front of `bytes` after checking the length.
fn read<T: Copy>(bytes: &[u8], kind: EventKind) -> Result<T, DecodeError> {
    let expected = size_of::<T>();
    if bytes.len() < expected {
        return Err(DecodeError::Truncated {
            kind,
            len: bytes.len(),
            expected,
        });
    }
    // SAFETY: the length was checked; every `agent_ebpf` event is a
    // `#[repr(C)]` plain-old-data struct valid for any bit pattern, and
    // `read_unaligned` makes no alignment assumption about the ring's bytes.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring-buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent<'_>, DecodeError> {
    if bytes.len() < size_of::<EventHeader>() {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let raw_kind = u32::from_ne_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = EventKind::from_u32(raw_kind).ok_or(DecodeError::UnknownKind(raw_kind))?;
    Ok(match kind {
        EventKind::Connect => KernelEvent::Connect(read(bytes, kind)?),
        EventKind::Accept => KernelEvent::Accept(read(bytes, kind)?),
        EventKind::SockState => KernelEvent::SockState(read(bytes, kind)?),
        EventKind::Close => KernelEvent::Close(read(bytes, kind)?),
        EventKind::Ssl => KernelEvent::Ssl(Box::new(read(bytes, kind)?)),
        EventKind::Exec => KernelEvent::Exec(read(bytes, kind)?),
        EventKind::Exit => KernelEvent::Exit(read(bytes, kind)?),
        EventKind::Data => KernelEvent::Data(decode_data(bytes)?),
        EventKind::Held => KernelEvent::Held(decode_held(bytes)?),
    })
}

fn decode_held(bytes: &[u8]) -> Result<HeldEvents<'_>, DecodeError> {
    let header: HeldHeader = read(bytes, EventKind::Held)?;
    let entries = &bytes[size_of::<HeldHeader>()..];
    let len = header.len as usize;
    if entries.len() < len {
        return Err(DecodeError::BadHeldEntry {
            at: 0,
            claimed: len,
            left: entries.len(),
        });
    }
    Ok(HeldEvents {
        header,
        entries: &entries[..len],
    })
}

fn decode_data(bytes: &[u8]) -> Result<DataRecord<'_>, DecodeError> {
    if bytes.len() < DATA_EVENT_HEADER_LEN {
        return Err(DecodeError::Truncated {
            kind: EventKind::Data,
            len: bytes.len(),
            expected: DATA_EVENT_HEADER_LEN,
        });
    }
    // The record is sized to its payload, so copy only the fixed part.
    let mut fixed = [0u8; DATA_EVENT_HEADER_LEN];
    fixed.copy_from_slice(&bytes[..DATA_EVENT_HEADER_LEN]);
    let header: EventHeader = read(&fixed, EventKind::Data)?;
    let at = |offset: usize| -> [u8; 4] {
        [
            fixed[offset],
            fixed[offset + 1],
            fixed[offset + 2],
            fixed[offset + 3],
        ]
    };
    let fd = i32::from_ne_bytes(at(std::mem::offset_of!(DataEvent, fd)));
    let direction = if fixed[std::mem::offset_of!(DataEvent, direction)] == Direction::Egress as u8
    {
        Direction::Egress
    } else {
        Direction::Ingress
    };
    let flags = fixed[std::mem::offset_of!(DataEvent, flags)];
    let syscall = fixed[std::mem::offset_of!(DataEvent, syscall)];
    let stream_offset = u32::from_ne_bytes(at(std::mem::offset_of!(DataEvent, stream_offset)));
    let len = u32::from_ne_bytes(at(std::mem::offset_of!(DataEvent, len))) as usize;
    let syscall_len = u32::from_ne_bytes(at(std::mem::offset_of!(DataEvent, syscall_len)));
    let payload = &bytes[DATA_EVENT_HEADER_LEN..];
    if payload.len() < len {
        return Err(DecodeError::BadDataLength {
            claimed: len,
            carried: payload.len(),
        });
    }
    Ok(DataRecord {
        header,
        fd,
        direction,
        flags,
        syscall,
        stream_offset,
        syscall_len,
        bytes: &payload[..len],
    })
}

/// The IP address and port of a kernel endpoint (IPv4-mapped IPv6 addresses
/// are shown as IPv4).
pub fn endpoint_addr(ep: &Endpoint) -> Option<(IpAddr, u16)> {
    let ip = match ep.family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(
            ep.addr[0], ep.addr[1], ep.addr[2], ep.addr[3],
        )),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(ep.addr)).to_canonical(),
        _ => return None,
    };
    Some((ip, ep.port))
}

/// A NUL-terminated C string from a fixed buffer.
pub fn c_str(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_ebpf::{DATA_FLAG_NOT_TLS, TASK_COMM_LEN};

    fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: `v` is a live reference to `size_of::<T>()` bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    fn hdr(kind: EventKind) -> EventHeader {
        EventHeader {
            kind: kind as u32,
            _pad: 0,
            ts_ns: 42,
            tid: 7,
            tgid: 8,
        }
    }

    #[test]
    fn decodes_a_connect_event() {
        let ev = ConnEvent {
            header: hdr(EventKind::Connect),
            fd: 3,
            ret: -111,
            sk: 0xdead,
            local: Endpoint::default(),
            remote: Endpoint {
                family: AF_INET,
                port: 443,
                addr: [127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            },
            listen_fd: -1,
            _pad: 0,
            comm: [b'c'; TASK_COMM_LEN],
        };
        let KernelEvent::Connect(got) = decode(as_bytes(&ev)).unwrap() else {
            panic!("wrong kind");
        };
        assert_eq!(got.ret, -111);
        assert_eq!(
            endpoint_addr(&got.remote),
            Some(("127.0.0.1".parse().unwrap(), 443))
        );
    }

    #[test]
    fn decodes_a_variable_length_data_event() {
        // SAFETY: `DataEvent` is plain old data, valid all-zero.
        let mut ev: DataEvent = unsafe { std::mem::zeroed() };
        ev.header = hdr(EventKind::Data);
        ev.fd = 5;
        ev.direction = Direction::Egress as u8;
        ev.flags = DATA_FLAG_NOT_TLS;
        ev.stream_offset = 10;
        ev.len = 4;
        ev.data[..4].copy_from_slice(b"GET ");
        let full = as_bytes(&ev);
        let record = &full[..DATA_EVENT_HEADER_LEN + 4];
        let KernelEvent::Data(d) = decode(record).unwrap() else {
            panic!("wrong kind");
        };
        assert_eq!(d.bytes, b"GET ");
        assert_eq!(
            (d.fd, d.direction, d.stream_offset),
            (5, Direction::Egress, 10)
        );
    }

    #[test]
    fn rejects_short_unknown_and_lying_records() {
        assert_eq!(decode(&[1, 2]).unwrap_err(), DecodeError::TooShort(2));
        let mut h = hdr(EventKind::Connect);
        h.kind = 99;
        assert_eq!(
            decode(as_bytes(&h)).unwrap_err(),
            DecodeError::UnknownKind(99)
        );
        let h = hdr(EventKind::Connect);
        assert!(matches!(
            decode(as_bytes(&h)),
            Err(DecodeError::Truncated { .. })
        ));
        // SAFETY: `DataEvent` is plain old data, valid all-zero.
        let mut ev: DataEvent = unsafe { std::mem::zeroed() };
        ev.header = hdr(EventKind::Data);
        ev.len = 100;
        let record = &as_bytes(&ev)[..DATA_EVENT_HEADER_LEN + 3];
        assert_eq!(
            decode(record).unwrap_err(),
            DecodeError::BadDataLength {
                claimed: 100,
                carried: 3
            }
        );
    }

    #[test]
    fn ipv4_mapped_addresses_read_as_ipv4() {
        let mut addr = [0u8; 16];
        addr[10] = 0xff;
        addr[11] = 0xff;
        addr[12..].copy_from_slice(&[10, 0, 0, 1]);
        let ep = Endpoint {
            family: AF_INET6,
            port: 1,
            addr,
        };
        assert_eq!(endpoint_addr(&ep), Some(("10.0.0.1".parse().unwrap(), 1)));
    }
}
