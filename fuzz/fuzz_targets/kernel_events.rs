//! `capture::events::decode` on ring-buffer records of any length and
//! content: the first input byte picks the event kind written into the
//! record's header (any value, most often a real kind), and for data
//! records whether their length field is made to match the payload (so
//! that decoding gets past it). Invariants: no panic; a decoded data
//! record's payload is the record's own bytes, as long as its length
//! field says; a decoded event's header is the record's first bytes; the
//! helpers the pipeline calls on a decoded event (`endpoint_addr`,
//! `c_str`) take any value; a held record's entries end and never nest.
#![no_main]

use agent::capture::events::{KernelEvent, c_str, decode, endpoint_addr};
use agent_ebpf::{DATA_EVENT_HEADER_LEN, DataEvent};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut record = rest.to_vec();
    // Kinds are small numbers; 0xF0.. keeps the raw bytes (unknown kinds).
    if selector < 0xF0 && record.len() >= 4 {
        let kind = u32::from(selector & 0x0F);
        record[..4].copy_from_slice(&kind.to_ne_bytes());
    }
    let len_at = std::mem::offset_of!(DataEvent, len);
    if selector & 0x10 != 0 && record.len() >= DATA_EVENT_HEADER_LEN {
        let payload = (record.len() - DATA_EVENT_HEADER_LEN) as u32;
        record[len_at..len_at + 4].copy_from_slice(&payload.to_ne_bytes());
    }
    let Ok(event) = decode(&record) else {
        return;
    };
    let header = *event.header();
    let _ = format!("{header:?}");
    match event {
        KernelEvent::Data(d) => {
            let claimed = u32::from_ne_bytes(record[len_at..len_at + 4].try_into().unwrap());
            assert_eq!(d.bytes.len(), claimed as usize);
            assert_eq!(
                d.bytes,
                &record[DATA_EVENT_HEADER_LEN..DATA_EVENT_HEADER_LEN + d.bytes.len()]
            );
        }
        KernelEvent::Connect(e) | KernelEvent::Accept(e) => {
            let _ = (endpoint_addr(&e.local), endpoint_addr(&e.remote));
        }
        KernelEvent::Exec(p) | KernelEvent::Exit(p) => {
            let _ = c_str(&p.comm);
        }
        KernelEvent::Ssl(s) => {
            let _ = format!("{s:?}");
        }
        KernelEvent::SockState(s) => {
            let _ = format!("{s:?}");
        }
        KernelEvent::Close(c) => {
            let _ = format!("{c:?}");
        }
        KernelEvent::Held(held) => {
            // Every entry decodes or is an error in its place; the walk
            // ends (entries are at least 8 bytes) and never nests.
            let mut n = 0usize;
            for inner in held.events() {
                n += 1;
                assert!(n <= record.len() / 8 + 1, "held entries do not end");
                if let Ok(inner) = inner {
                    assert!(!matches!(inner, KernelEvent::Held(_)), "nested held record");
                    let _ = format!("{:?}", inner.header());
                }
            }
        }
    }
});
