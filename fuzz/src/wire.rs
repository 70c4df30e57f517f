//! Input formats of the wire targets: kernel chunks of both directions
//! (`wire_assembler`), and one direction's stream with the way syscalls
//! cut it (`record_walker`). `cargo xtask fuzz` writes seeds in these
//! formats from the recorded handshakes in agent/src/evidence/testdata/wire
//! (xtask/src/fuzz.rs has the encoder).

use agent::outcome::Role;

/// One chunk as the kernel hands it to the assembler.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkOp<'a> {
    pub sender: Role,
    pub stream_offset: u32,
    pub flags: u8,
    pub bytes: &'a [u8],
}

/// Reads `[client base: u32 LE][server base: u32 LE]`, then chunks
/// `[ctl: u8][delta: i16 LE][len: u16 LE][len bytes]` (the last may be
/// short). `ctl` bit 0 is the sender (1: server), bits 1..=5 the
/// `DATA_FLAG_*`; a chunk starts `delta` bytes after the end of its
/// sender's previous chunk (0: contiguous, < 0: repeats, > 0: a gap), its
/// sender's first chunk at the base (near `u32::MAX`: offsets wrap).
pub fn chunk_ops(data: &[u8]) -> Vec<ChunkOp<'_>> {
    let u32_at = |at: usize| {
        data.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .unwrap_or(0)
    };
    let mut next = [u32_at(0), u32_at(4)];
    let mut rest = data.get(8..).unwrap_or_default();
    let mut ops = Vec::new();
    while let [ctl, d0, d1, l0, l1, tail @ ..] = rest {
        let server = ctl & 1 == 1;
        let delta = i16::from_le_bytes([*d0, *d1]);
        let len = usize::from(u16::from_le_bytes([*l0, *l1])).min(tail.len());
        let (bytes, after) = tail.split_at(len);
        let side = usize::from(server);
        let stream_offset = next[side].wrapping_add(i32::from(delta) as u32);
        next[side] = stream_offset.wrapping_add(len as u32);
        ops.push(ChunkOp {
            sender: if server { Role::Server } else { Role::Client },
            stream_offset,
            flags: (ctl >> 1) & 0x1f,
            bytes,
        });
        rest = after;
    }
    ops
}

/// One syscall of a direction: `n` bytes the walker looks at, or skips
/// (I/O it cannot see, as `socket_io_unattributed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub len: usize,
    pub skip: bool,
}

/// Reads `[n: u8][n × u16 LE]` syscall sizes (bit 15: skipped, 0 means 1),
/// then the stream. The sizes repeat until the stream is used up; none
/// given means one syscall for the whole stream.
pub fn walk_plan(data: &[u8]) -> (Vec<Cut>, &[u8]) {
    let n = usize::from(data.first().copied().unwrap_or(0));
    let table = data.get(1..).unwrap_or_default();
    let cuts: Vec<Cut> = table
        .chunks_exact(2)
        .take(n)
        .map(|b| {
            let v = u16::from_le_bytes([b[0], b[1]]);
            Cut {
                len: usize::from(v & 0x7fff).max(1),
                skip: v & 0x8000 != 0,
            }
        })
        .collect();
    let stream = table.get(cuts.len() * 2..).unwrap_or_default();
    (cuts, stream)
}

/// The end of the first application-data record header of `stream`,
/// following record lengths from offset 0 whatever the headers say: no
/// capture may reach past it. `None` when the stream has none.
pub fn first_app_data_header_end(stream: &[u8]) -> Option<usize> {
    let mut at = 0usize;
    while let Some(h) = stream.get(at..at + 5) {
        if h[0] == 23 {
            return Some(at + 5);
        }
        at += 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
    }
    None
}

/// The offsets of the record headers of `stream` from offset `at` on,
/// following record lengths whatever the headers say.
pub fn record_headers_from(stream: &[u8], mut at: usize) -> Vec<usize> {
    let mut offsets = Vec::new();
    while let Some(h) = stream.get(at..at + 5) {
        offsets.push(at);
        at += 5 + usize::from(u16::from_be_bytes([h[3], h[4]]));
    }
    offsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_their_senders_offsets_and_wrap() {
        let mut data = Vec::new();
        data.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
        data.extend_from_slice(&100u32.to_le_bytes());
        // client, contiguous, 3 bytes; server, flags 0b101, 2 bytes;
        // client, a gap of 4, 1 byte; client, a repeat of 2, 5 (short) bytes.
        data.extend_from_slice(&[0, 0, 0, 3, 0, b'a', b'b', b'c']);
        data.extend_from_slice(&[1 | (0b101 << 1), 0, 0, 2, 0, b'x', b'y']);
        data.extend_from_slice(&[0, 4, 0, 1, 0, b'd']);
        data.extend_from_slice(&[0, 0xfe, 0xff, 9, 0, b'e', b'f']);
        let ops = chunk_ops(&data);
        assert_eq!(ops.len(), 4);
        assert_eq!(
            (ops[0].sender, ops[0].stream_offset),
            (Role::Client, u32::MAX - 1)
        );
        assert_eq!(ops[0].bytes, b"abc");
        assert_eq!((ops[1].sender, ops[1].stream_offset), (Role::Server, 100));
        assert_eq!(ops[1].flags, 0b101);
        // u32::MAX - 1 + 3 wraps to 1; plus a gap of 4.
        assert_eq!(ops[2].stream_offset, 5);
        assert_eq!(ops[3].stream_offset, 4);
        assert_eq!(ops[3].bytes, b"ef");
    }

    #[test]
    fn a_walk_plan_is_sizes_then_the_stream() {
        let data = [2, 5, 0, 3, 0x80, b's', b't'];
        let (cuts, stream) = walk_plan(&data);
        assert_eq!(
            cuts,
            vec![
                Cut {
                    len: 5,
                    skip: false
                },
                Cut { len: 3, skip: true }
            ]
        );
        assert_eq!(stream, b"st");
        assert_eq!(walk_plan(&[]).0, vec![]);
    }

    #[test]
    fn the_first_application_data_header_is_found_by_lengths() {
        let mut s = vec![22, 3, 3, 0, 2, 23, 23];
        s.extend_from_slice(&[23, 3, 3, 0, 9]);
        assert_eq!(first_app_data_header_end(&s), Some(12));
        assert_eq!(first_app_data_header_end(&s[..11]), None);
        assert_eq!(record_headers_from(&s, 0), [0, 7]);
    }
}
