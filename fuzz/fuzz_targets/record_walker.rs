//! The kernel's record walker (`agent_ebpf::record_walker::WalkerState`,
//! `walk` and `skip`) over one direction's stream cut into syscalls every
//! way the input says, cross-checked against a plain reading of the same
//! stream and against the userspace parser. Invariants: no panic; each
//! verdict's offset is the chunk's; emitted bytes are the stream's own
//! (but for compacted trailing headers: at most `TRAILING_RECORD_HEADERS`
//! of them, and, without skipped I/O, the stream's own record headers
//! after the first application-data one); nothing past the first
//! application-data record header is emitted; a stream that is not TLS
//! yields at most `NON_TLS_SNIPPET` bytes; the capture budget holds and
//! `captured` counts what was emitted; without skipped I/O the emitted
//! bytes are one contiguous prefix of the stream, and the handshake
//! messages `WireAssembler` reads from them are a prefix of those it reads
//! from the whole stream.
#![no_main]

use agent::evidence::wire::{Chunk, MessageFact, WireAssembler};
use agent::outcome::Role;
use agent_ebpf::record_walker::{MAX_TRAILING_BYTES, RECORD_HEADER_LEN, WalkerState};
use agent_ebpf::{
    CAPTURE_BUDGET, DATA_FLAG_APPDATA, DATA_FLAG_HEADERS_ONLY, DATA_FLAG_NOT_TLS, NON_TLS_SNIPPET,
};
use chrono::{TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use tlsdoctor_fuzz::arm_allocation_cap;
use tlsdoctor_fuzz::wire::{Cut, first_app_data_header_end, record_headers_from, walk_plan};

fn messages(wire: WireAssembler) -> Vec<(Role, String)> {
    wire.into_facts()
        .messages
        .into_iter()
        .map(
            |MessageFact {
                 sender, message, ..
             }| (sender, message),
        )
        .collect()
}

fuzz_target!(|data: &[u8]| {
    arm_allocation_cap();
    let (mut cuts, stream) = walk_plan(data);
    if cuts.is_empty() {
        cuts.push(Cut {
            len: stream.len().max(1),
            skip: false,
        });
    }
    let time = Utc.timestamp_opt(1_750_000_000, 0).single().unwrap();
    let limit = first_app_data_header_end(stream);
    let mut state = WalkerState::default();
    let mut emitted = WireAssembler::new();
    let (mut at, mut captured, mut trailing) = (0usize, 0u32, Vec::new());
    let mut contiguous_end = Some(0usize);
    let mut appdata_chunk_end = None;
    for cut in cuts.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let n = cut.len.min(stream.len() - at);
        if cut.skip {
            state.skip(n as u32);
            contiguous_end = None;
            at += n;
            continue;
        }
        // The kernel's buffer is larger than any chunk: a header split
        // across reads is written whole to its front once complete.
        let mut buf = stream[at..at + n].to_vec();
        buf.resize(n.max(MAX_TRAILING_BYTES), 0);
        let verdict = state.walk(&mut buf, n);
        assert_eq!(verdict.stream_offset, at as u32);
        let emit = verdict.emit_len as usize;
        if verdict.flags & DATA_FLAG_HEADERS_ONLY != 0 {
            assert_eq!(emit % RECORD_HEADER_LEN, 0);
            trailing.extend_from_slice(&buf[..emit]);
            assert!(
                trailing.len() <= MAX_TRAILING_BYTES,
                "{} bytes of trailing headers",
                trailing.len()
            );
        } else if emit > 0 {
            assert!(emit <= n, "emitted {emit} of a {n}-byte chunk");
            assert_eq!(
                &buf[..emit],
                &stream[at..at + emit],
                "emitted bytes are the stream's"
            );
            if verdict.flags & DATA_FLAG_NOT_TLS != 0 {
                assert!(at + emit <= NON_TLS_SNIPPET as usize);
            } else if let Some(limit) = limit {
                assert!(
                    at + emit <= limit,
                    "emitted up to {} past the first application-data header (ends at {limit})",
                    at + emit
                );
            }
            if let Some(end) = contiguous_end {
                assert_eq!(at, end, "capture resumed after bytes it did not emit");
                contiguous_end = Some(at + emit);
            }
            captured += emit as u32;
            if verdict.flags & DATA_FLAG_APPDATA != 0 {
                appdata_chunk_end = Some(at + n);
            }
            emitted.push(Chunk {
                time,
                sender: Role::Client,
                stream_offset: verdict.stream_offset,
                flags: verdict.flags,
                bytes: &buf[..emit],
            });
        }
        at += n;
    }
    assert!(captured <= CAPTURE_BUDGET, "captured {captured}");
    assert_eq!(captured, state.captured, "captured counts what was emitted");
    if contiguous_end.is_some() {
        let mut whole = WireAssembler::new();
        whole.push(Chunk {
            time,
            sender: Role::Client,
            stream_offset: 0,
            flags: 0,
            bytes: stream,
        });
        // The trailing headers are the stream's record headers after the
        // first application-data one, in order -- but for those that end
        // inside the chunk that held it: the walker follows them without
        // reporting them (see docs/robustness.md, findings).
        if let (Some(limit), Some(chunk_end)) = (limit, appdata_chunk_end) {
            let after: Vec<u8> = record_headers_from(stream, limit - RECORD_HEADER_LEN)
                .into_iter()
                .skip(1)
                .filter(|&h| h + RECORD_HEADER_LEN > chunk_end)
                .flat_map(|h| stream[h..h + RECORD_HEADER_LEN].iter().copied())
                .collect();
            assert!(
                after.starts_with(&trailing),
                "trailing headers {trailing:?} are not the stream's {after:?}"
            );
        }
        let (from_walker, from_whole) = (messages(emitted), messages(whole));
        assert!(
            from_whole.starts_with(&from_walker),
            "the walker's capture reads as {from_walker:?}, the stream as {from_whole:?}"
        );
    }
});
