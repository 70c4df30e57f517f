//! Decides, in the kernel, which bytes of a tracked socket may be captured.
//!
//! Each direction of a connection is a stream of TLS records. The walker
//! follows the 5-byte record headers across syscalls (a header may be split
//! between two reads; OpenSSL reads each header and body separately) and
//! allows capture of everything up to and including the header of the first
//! application-data record. After that it reports only a few record headers,
//! and then nothing: application payload never leaves the kernel.
//!
//! A stream whose first bytes are not a TLS record header (plain HTTP to a TLS
//! port, an HTTP reply to a ClientHello) yields a short snippet and stops.
//!
//! The code is written for the BPF verifier: bounded loops, checked indexing,
//! no panics, and it runs unchanged in host unit tests.

use crate::{
    CAPTURE_BUDGET, DATA_FLAG_APPDATA, DATA_FLAG_BUDGET, DATA_FLAG_HEADERS_ONLY, DATA_FLAG_NOT_TLS,
    NON_TLS_SNIPPET, TRAILING_RECORD_HEADERS,
};

/// TLS record header length.
pub const RECORD_HEADER_LEN: usize = 5;
/// Records walked per chunk; past this the walker gives up on the direction.
pub const MAX_RECORDS_PER_CHUNK: usize = 16;
/// Largest record length accepted (2^14 plus the expansion TLS allows).
pub const MAX_RECORD_LEN: u32 = 16384 + 2048;

/// Nothing seen yet: the first bytes decide TLS or not.
pub const MODE_START: u8 = 0;
/// Capturing handshake records.
pub const MODE_CAPTURE: u8 = 1;
/// Past the first application-data record: reporting record headers only.
pub const MODE_HEADERS: u8 = 2;
/// Nothing more is captured for this direction.
pub const MODE_DONE: u8 = 3;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
/// Handshake message types seen first in a record body.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_CERTIFICATE: u8 = 11;

/// The length of a TLS 1.3 encrypted alert (2 bytes, the inner type and a
/// 16-byte tag) from OpenSSL, GnuTLS, Go.
pub const TLS13_ALERT_LEN: u32 = 19;
/// The smallest TLS 1.3 Finished record (SHA-256, an 8-byte CCM_8 tag): a
/// direction's first application-data record shorter than this is an alert.
pub const TLS13_MIN_FINISHED_LEN: u32 = 45;
/// An application-data record this long or shorter may be an encrypted
/// alert from any implementation (JSSE pads its alerts to 35 bytes); only
/// longer ones count in [`WalkerState::large_records`].
pub const ENCRYPTED_ALERT_MAX: u32 = 48;

/// `hello_flags`: a handshake record was seen.
pub const HELLO_SEEN: u8 = 1 << 0;
/// `hello_flags`: a later handshake record began with something other than
/// a ClientHello (a TLS 1.2 client's ClientKeyExchange or Finished).
pub const HELLO_LATER_HANDSHAKE: u8 = 1 << 1;
/// `hello_flags`: a later handshake record began with a Certificate (a
/// TLS 1.2 client answering a certificate request), or its first byte
/// could not be seen.
pub const HELLO_CERTIFICATE_OR_UNKNOWN: u8 = 1 << 2;
/// `hello_flags`: the first body byte of the current handshake record is
/// still to be looked at.
pub const HELLO_PEEK_PENDING: u8 = 1 << 3;
const CONTENT_HEARTBEAT: u8 = 24;

/// Per-direction walker state, kept in the kernel's tracking map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkerState {
    /// Bytes of the stream seen so far (captured or not).
    pub stream_offset: u32,
    /// Bytes captured so far (against [`CAPTURE_BUDGET`]).
    pub captured: u32,
    /// Bytes of the current record's body not yet seen.
    pub record_left: u32,
    /// `MODE_*`.
    pub mode: u8,
    /// Bytes of a split record header held in `header`.
    pub header_have: u8,
    /// Record headers reported in [`MODE_HEADERS`].
    pub trailing_headers: u16,
    pub header: [u8; RECORD_HEADER_LEN],
    /// Application-data records that are not alerts by the rule userspace
    /// applies (`evidence::wire`): the direction's first one if at least
    /// Finished-sized, later ones unless alert-sized (saturating).
    pub app_records: u8,
    /// Alert records in the clear (TLS 1.2 keeps the type when encrypted).
    pub alerts: u8,
    /// `HELLO_*`: what the first bytes of handshake records showed.
    pub hello_flags: u8,
    /// Application-data records longer than any encrypted alert
    /// ([`ENCRYPTED_ALERT_MAX`]), saturating: only these count as an answer.
    pub large_records: u8,
    /// Application-data records of any length seen (saturating).
    pub all_app_records: u8,
    pub _pad: [u8; 2],
}

/// What to do with one chunk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Bytes at the front of the buffer to emit (after any in-place rewrite).
    pub emit_len: u32,
    /// `DATA_FLAG_*` for the event.
    pub flags: u8,
    /// Stream offset of the chunk's first byte.
    pub stream_offset: u32,
}

impl WalkerState {
    /// True when nothing more will be captured in this direction.
    #[inline(always)]
    pub fn done(&self) -> bool {
        self.mode == MODE_DONE
    }

    /// Account for `n` bytes the syscall moved that the caller could not look
    /// at. Inside a record body this is harmless; across a header the stream
    /// position is lost and the direction stops.
    #[inline(always)]
    pub fn skip(&mut self, n: u32) {
        self.stream_offset = self.stream_offset.wrapping_add(n);
        if self.mode == MODE_DONE || n == 0 {
            return;
        }
        if self.hello_flags & HELLO_PEEK_PENDING != 0 {
            // The record's first byte went by unseen.
            self.hello_flags =
                (self.hello_flags & !HELLO_PEEK_PENDING) | HELLO_CERTIFICATE_OR_UNKNOWN;
        }
        if self.header_have == 0 && self.record_left >= n {
            self.record_left -= n;
        } else {
            self.mode = MODE_DONE;
        }
    }

    /// Walk the first `len` bytes of `buf` (a copy of the syscall's buffer).
    ///
    /// In [`MODE_HEADERS`] the record headers found are compacted to the front
    /// of `buf`, which is why it is mutable. The kernel runs the same three
    /// steps with `bpf_loop` driving [`WalkerState::step`].
    #[inline(always)]
    pub fn walk(&mut self, buf: &mut [u8], len: usize) -> Verdict {
        let mut cursor = match self.begin(buf, len) {
            Ok(cursor) => cursor,
            Err(verdict) => return verdict,
        };
        let mut headers = [0u8; MAX_TRAILING_BYTES];
        for _ in 0..MAX_RECORDS_PER_CHUNK {
            if !self.step(&mut cursor, &SliceSource(&buf[..]), &mut headers) {
                break;
            }
        }
        compact_headers(buf, &cursor, &headers);
        self.finish(&cursor)
    }

    /// Starts a chunk. `Err` is the chunk's whole verdict (nothing to walk:
    /// the direction is done, the chunk is empty, or the stream is not TLS).
    #[inline(always)]
    pub fn begin(&mut self, buf: &[u8], len: usize) -> Result<Cursor, Verdict> {
        let len = if len > buf.len() { buf.len() } else { len };
        let mut verdict = Verdict {
            emit_len: 0,
            flags: 0,
            stream_offset: self.stream_offset,
        };
        self.stream_offset = self.stream_offset.wrapping_add(len as u32);
        if self.mode == MODE_DONE || len == 0 {
            return Err(verdict);
        }
        if self.mode == MODE_START {
            if looks_like_tls(buf, len) {
                self.mode = MODE_CAPTURE;
            } else {
                let room = NON_TLS_SNIPPET.saturating_sub(self.captured);
                let n = if (len as u32) < room {
                    len as u32
                } else {
                    room
                };
                self.captured += n;
                self.mode = MODE_DONE;
                verdict.emit_len = n;
                verdict.flags = DATA_FLAG_NOT_TLS;
                return Err(verdict);
            }
        }
        let headers_only = self.mode == MODE_HEADERS;
        Ok(Cursor {
            // In capture mode the whole chunk is emitted unless application
            // data starts inside it.
            emit: if headers_only { 0 } else { len as u32 },
            out: 0,
            pos: 0,
            len: len as u32,
            headers_only,
            synced: false,
            flags: 0,
            stream_offset: verdict.stream_offset,
        })
    }

    /// Walks one record: the rest of the current body, then the next header.
    /// Returns false when the chunk is finished (or the direction stopped).
    ///
    /// Header bytes come from `source` (in the kernel: the user buffer, so
    /// that the position is plain arithmetic the verifier need not track
    /// exactly). In headers-only mode the header is appended to `headers`
    /// at `c.out`.
    #[inline(always)]
    pub fn step(
        &mut self,
        c: &mut Cursor,
        source: &impl HeaderSource,
        headers: &mut [u8; MAX_TRAILING_BYTES],
    ) -> bool {
        let len = c.len;
        let mut pos = c.pos;
        if self.hello_flags & HELLO_PEEK_PENDING != 0 && self.record_left > 0 && pos < len {
            self.peek_handshake_type(source, pos);
        }
        // Skip the rest of the current record body.
        if self.record_left > 0 && pos < len {
            let avail = len - pos;
            let step = if self.record_left < avail {
                self.record_left
            } else {
                avail
            };
            self.record_left -= step;
            pos += step;
        }
        if pos >= len {
            c.pos = pos;
            c.synced = true;
            return false;
        }
        // Collect a (possibly split) record header.
        let have = if (self.header_have as usize) < RECORD_HEADER_LEN {
            self.header_have as usize
        } else {
            0
        };
        let wanted = (RECORD_HEADER_LEN - have) as u32;
        let take = if len - pos < wanted {
            len - pos
        } else {
            wanted
        };
        let mut fresh = [0u8; RECORD_HEADER_LEN];
        if !source.read(pos, take as usize, &mut fresh) {
            self.mode = MODE_DONE;
            c.synced = true;
            return false;
        }
        // The combined index is bounds-checked on its own: the verifier
        // cannot relate `have + i` to `take` through an iterator chain.
        for (i, byte) in fresh.iter().enumerate() {
            let k = have + i;
            if i < take as usize
                && k < RECORD_HEADER_LEN
                && let Some(slot) = self.header.get_mut(k)
            {
                *slot = *byte;
            }
        }
        pos += take;
        let have = have + take as usize;
        c.pos = pos;
        if have < RECORD_HEADER_LEN {
            // Split header: the rest arrives with the next chunk.
            self.header_have = have as u8;
            c.synced = true;
            return false;
        }
        self.header_have = 0;
        let content_type = self.header[0];
        let record_len = u16::from_be_bytes([self.header[3], self.header[4]]) as u32;
        if !valid_header(&self.header) || record_len > MAX_RECORD_LEN {
            // Lost the record boundaries (or the peer sent garbage): keep
            // what came before this header and stop.
            self.mode = MODE_DONE;
            // Unless this chunk already reached application data: its
            // capture ends at that header, not at this one (found by the
            // record_walker fuzz target).
            if !c.headers_only && c.flags & DATA_FLAG_APPDATA == 0 {
                c.emit = pos.saturating_sub(RECORD_HEADER_LEN as u32);
            }
            c.synced = true;
            return false;
        }
        self.record_left = record_len;
        self.count_record(content_type, record_len);
        if self.hello_flags & HELLO_PEEK_PENDING != 0 && pos < len {
            self.peek_handshake_type(source, pos);
        }
        if self.mode == MODE_CAPTURE && content_type == CONTENT_APPLICATION_DATA {
            // Keep this header (its length is evidence), drop the body.
            c.emit = pos;
            c.flags |= DATA_FLAG_APPDATA;
            self.mode = MODE_HEADERS;
        } else if c.headers_only {
            if self.trailing_headers >= TRAILING_RECORD_HEADERS {
                self.mode = MODE_DONE;
                c.synced = true;
                return false;
            }
            let at = c.out as usize;
            if at + RECORD_HEADER_LEN > MAX_TRAILING_BYTES {
                self.mode = MODE_DONE;
                c.synced = true;
                return false;
            }
            for k in 0..RECORD_HEADER_LEN {
                if let Some(dst) = headers.get_mut(at + k) {
                    *dst = self.header[k];
                }
            }
            c.out = (at + RECORD_HEADER_LEN) as u32;
            self.trailing_headers += 1;
        }
        true
    }

    /// Counts a record whose header was just read, for the kernel's success
    /// decision (`TrackedSock::confirmed`).
    #[inline(always)]
    fn count_record(&mut self, content_type: u8, record_len: u32) {
        if content_type == CONTENT_APPLICATION_DATA {
            let first = self.all_app_records == 0;
            self.all_app_records = self.all_app_records.saturating_add(1);
            let alert = if first {
                record_len < TLS13_MIN_FINISHED_LEN
            } else {
                record_len == TLS13_ALERT_LEN
            };
            if !alert {
                self.app_records = self.app_records.saturating_add(1);
            }
            if record_len > ENCRYPTED_ALERT_MAX {
                self.large_records = self.large_records.saturating_add(1);
            }
        } else if content_type == CONTENT_ALERT {
            self.alerts = self.alerts.saturating_add(1);
        } else if content_type == CONTENT_HANDSHAKE {
            if self.hello_flags & HELLO_SEEN == 0 {
                self.hello_flags |= HELLO_SEEN;
            } else if record_len > 0 {
                self.hello_flags |= HELLO_PEEK_PENDING;
            }
        }
    }

    /// Looks at the first body byte of a handshake record after the first
    /// (at `pos`): which message it starts with.
    #[inline(always)]
    fn peek_handshake_type(&mut self, source: &impl HeaderSource, pos: u32) {
        self.hello_flags &= !HELLO_PEEK_PENDING;
        let mut first = [0u8; RECORD_HEADER_LEN];
        if !source.read(pos, 1, &mut first) {
            self.hello_flags |= HELLO_CERTIFICATE_OR_UNKNOWN;
            return;
        }
        match first[0] {
            HANDSHAKE_CLIENT_HELLO => {}
            HANDSHAKE_CERTIFICATE => {
                self.hello_flags |= HELLO_LATER_HANDSHAKE | HELLO_CERTIFICATE_OR_UNKNOWN;
            }
            _ => self.hello_flags |= HELLO_LATER_HANDSHAKE,
        }
    }

    /// Ends a chunk: the verdict for it.
    #[inline(always)]
    pub fn finish(&mut self, c: &Cursor) -> Verdict {
        let mut verdict = Verdict {
            emit_len: 0,
            flags: c.flags,
            stream_offset: c.stream_offset,
        };
        let mut emit = c.emit;
        if !c.synced {
            // More records in one chunk than the walker follows. What lies
            // past the last record walked is unknown (application data, for
            // all it knows): it stays in the kernel (found by the
            // record_walker fuzz target).
            self.mode = MODE_DONE;
            let walked = c.pos.saturating_add(self.record_left);
            if walked < emit {
                emit = walked;
            }
        }
        if c.headers_only {
            verdict.emit_len = c.out;
            if c.out > 0 {
                verdict.flags |= DATA_FLAG_HEADERS_ONLY;
            }
            return verdict;
        }
        let room = CAPTURE_BUDGET.saturating_sub(self.captured);
        if emit > room {
            emit = room;
            verdict.flags |= DATA_FLAG_BUDGET;
            self.mode = MODE_DONE;
        }
        self.captured += emit;
        verdict.emit_len = emit;
        verdict
    }
}

/// Room for every trailing record header a direction reports.
pub const MAX_TRAILING_BYTES: usize = TRAILING_RECORD_HEADERS as usize * RECORD_HEADER_LEN;

/// Where record-header bytes are read from.
pub trait HeaderSource {
    /// Copies `n` (at most 5) bytes at `pos` into `dst`; false if unreadable.
    fn read(&self, pos: u32, n: usize, dst: &mut [u8; RECORD_HEADER_LEN]) -> bool;
}

/// Header bytes from a buffer in memory (host tests, and any caller with the
/// whole chunk at hand).
pub struct SliceSource<'a>(pub &'a [u8]);

impl HeaderSource for SliceSource<'_> {
    #[inline(always)]
    fn read(&self, pos: u32, n: usize, dst: &mut [u8; RECORD_HEADER_LEN]) -> bool {
        let pos = pos as usize;
        let Some(src) = self.0.get(pos..pos.saturating_add(n)) else {
            return false;
        };
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
        true
    }
}

/// Copies the headers `step` collected for this chunk to the front of `buf`
/// (headers-only events carry only them).
#[inline(always)]
pub fn compact_headers(buf: &mut [u8], c: &Cursor, headers: &[u8; MAX_TRAILING_BYTES]) {
    if !c.headers_only {
        return;
    }
    for (i, src) in headers.iter().enumerate() {
        if i >= c.out as usize {
            break;
        }
        if let Some(dst) = buf.get_mut(i) {
            *dst = *src;
        }
    }
}

/// Where a chunk's walk stands between records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Bytes of the chunk to emit (capture mode).
    pub emit: u32,
    /// Bytes of record headers collected (headers-only mode).
    pub out: u32,
    pub pos: u32,
    pub len: u32,
    pub stream_offset: u32,
    pub headers_only: bool,
    /// The walk ended on a record boundary or a split header (not on the
    /// record limit).
    pub synced: bool,
    pub flags: u8,
}

#[inline(always)]
fn valid_header(h: &[u8; RECORD_HEADER_LEN]) -> bool {
    (CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_HEARTBEAT).contains(&h[0]) && h[1] == 3 && h[2] <= 4
}

/// A stream is TLS when its first bytes are a plausible record header. With
/// fewer than three bytes only the content type can be checked.
#[inline(always)]
fn looks_like_tls(buf: &[u8], len: usize) -> bool {
    let Some(&t) = buf.first() else {
        return false;
    };
    if !(CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_HEARTBEAT).contains(&t) {
        return false;
    }
    if len >= 3
        && let (Some(&major), Some(&minor)) = (buf.get(1), buf.get(2))
    {
        return major == 3 && minor <= 4;
    }
    true
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn record(content_type: u8, body_len: usize) -> Vec<u8> {
        let mut r = std::vec![content_type, 3, 3, (body_len >> 8) as u8, body_len as u8];
        r.extend(core::iter::repeat_n(0xAB, body_len));
        r
    }

    fn walk(state: &mut WalkerState, bytes: &[u8]) -> (Verdict, Vec<u8>) {
        let mut buf = bytes.to_vec();
        let v = state.walk(&mut buf, bytes.len());
        buf.truncate(v.emit_len as usize);
        (v, buf)
    }

    #[test]
    fn handshake_records_are_captured_whole() {
        let mut s = WalkerState::default();
        let mut flight = record(22, 300);
        flight.extend(record(22, 40));
        let (v, out) = walk(&mut s, &flight);
        assert_eq!(v.flags, 0);
        assert_eq!(out, flight);
        assert_eq!(s.mode, MODE_CAPTURE);
        assert_eq!(s.record_left, 0);
    }

    #[test]
    fn capture_stops_at_first_application_data_header() {
        let mut s = WalkerState::default();
        let mut bytes = record(22, 100);
        let appdata = record(23, 50);
        bytes.extend(&appdata);
        let (v, out) = walk(&mut s, &bytes);
        assert_eq!(v.flags, DATA_FLAG_APPDATA);
        assert_eq!(
            out.len(),
            105 + 5,
            "handshake record plus the appdata header"
        );
        assert_eq!(&out[105..], &appdata[..5]);
        assert_eq!(s.mode, MODE_HEADERS);
        // The next records only yield their headers, never their bodies.
        let mut later = record(23, 30);
        later.extend(record(21, 2));
        let (v, out) = walk(&mut s, &later);
        assert_eq!(v.flags, DATA_FLAG_HEADERS_ONLY);
        assert_eq!(out, [23, 3, 3, 0, 30, 21, 3, 3, 0, 2]);
    }

    #[test]
    fn garbage_after_application_data_in_one_chunk_keeps_its_body_in() {
        // Found by the record_walker fuzz target: the garbage header moved
        // the end of the capture past the application data before it.
        let mut s = WalkerState::default();
        let mut bytes = record(22, 100);
        bytes.extend(record(23, 50));
        bytes.extend(record(23, 900));
        bytes.extend([0xe9, 0x32, 0x92, 0x5b, 0x76]);
        let (v, out) = walk(&mut s, &bytes);
        assert_eq!(v.flags, DATA_FLAG_APPDATA);
        assert_eq!(out.len(), 105 + 5, "up to the application-data header");
        assert!(s.done());
    }

    #[test]
    fn openssl_style_reads_header_and_body_separately() {
        let mut s = WalkerState::default();
        let rec = record(22, 1000);
        let (v1, o1) = walk(&mut s, &rec[..5]);
        let (v2, o2) = walk(&mut s, &rec[5..]);
        assert_eq!((v1.stream_offset, v2.stream_offset), (0, 5));
        assert_eq!([o1, o2].concat(), rec);
        assert_eq!(s.record_left, 0);
    }

    #[test]
    fn header_split_across_reads_keeps_sync() {
        let mut s = WalkerState::default();
        let mut bytes = record(22, 10);
        bytes.extend(record(23, 7));
        // Split inside the second header.
        let (v1, o1) = walk(&mut s, &bytes[..17]);
        assert_eq!(v1.flags, 0);
        assert_eq!(o1.len(), 17);
        let (v2, o2) = walk(&mut s, &bytes[17..]);
        assert_eq!(v2.flags, DATA_FLAG_APPDATA);
        // Only the tail of the appdata header is in this chunk.
        assert_eq!(o2, &bytes[17..20]);
    }

    #[test]
    fn plain_http_yields_a_short_snippet_then_nothing() {
        let mut s = WalkerState::default();
        let req = b"GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl\r\n\r\n";
        let (v, out) = walk(&mut s, req);
        assert_eq!(v.flags, DATA_FLAG_NOT_TLS);
        assert_eq!(out, &req[..NON_TLS_SNIPPET as usize]);
        assert!(s.done());
        let (v, out) = walk(&mut s, req);
        assert_eq!((v.emit_len, out.len()), (0, 0));
    }

    #[test]
    fn garbage_after_valid_records_stops_capture_before_it() {
        let mut s = WalkerState::default();
        let mut bytes = record(22, 8);
        bytes.extend(b"\x00\x01garbage-garbage");
        let (v, out) = walk(&mut s, &bytes);
        assert_eq!(out, &bytes[..13]);
        assert_eq!(v.flags, 0);
        assert!(s.done());
    }

    #[test]
    fn oversized_record_length_is_garbage() {
        let mut s = WalkerState::default();
        let (_, out) = walk(&mut s, &[22, 3, 3, 0xff, 0xff, 1, 2, 3]);
        assert!(out.is_empty());
        assert!(s.done());
    }

    #[test]
    fn budget_cuts_capture_and_flags_it() {
        let mut s = WalkerState::default();
        let rec = record(22, 16000);
        let mut total = 0;
        let mut flagged = false;
        for _ in 0..6 {
            let (v, out) = walk(&mut s, &rec);
            total += out.len() as u32;
            flagged |= v.flags & DATA_FLAG_BUDGET != 0;
        }
        assert_eq!(total, CAPTURE_BUDGET);
        assert!(flagged);
        assert!(s.done());
    }

    #[test]
    fn trailing_headers_are_bounded() {
        let mut s = WalkerState::default();
        walk(&mut s, &record(23, 1));
        let mut many = Vec::new();
        for _ in 0..(TRAILING_RECORD_HEADERS as usize + 4) {
            many.extend(record(23, 1));
        }
        let (_, out) = walk(&mut s, &many);
        assert_eq!(
            out.len(),
            TRAILING_RECORD_HEADERS as usize * RECORD_HEADER_LEN
        );
        assert!(s.done());
    }

    #[test]
    fn skipped_bytes_inside_a_body_keep_sync_and_across_a_header_stop() {
        let mut s = WalkerState::default();
        walk(&mut s, &record(22, 100)[..50]);
        s.skip(40);
        assert_eq!(s.record_left, 15);
        assert!(!s.done());
        s.skip(100);
        assert!(s.done());
    }

    #[test]
    fn too_many_records_in_one_chunk_stops_the_direction() {
        let mut s = WalkerState::default();
        let mut bytes = Vec::new();
        for _ in 0..(MAX_RECORDS_PER_CHUNK + 2) {
            bytes.extend(record(22, 0));
        }
        walk(&mut s, &bytes);
        assert!(s.done());
    }

    #[test]
    fn past_the_records_walked_nothing_is_emitted() {
        // Found by the record_walker fuzz target: past its record limit
        // the walker emitted the rest of the chunk unseen, application
        // data included.
        let mut s = WalkerState::default();
        let mut bytes = Vec::new();
        for _ in 0..MAX_RECORDS_PER_CHUNK {
            bytes.extend(record(21, 2));
        }
        let walked = bytes.len();
        bytes.extend(record(23, 40));
        let (v, out) = walk(&mut s, &bytes);
        assert!(s.done());
        assert_eq!(v.flags & DATA_FLAG_APPDATA, 0);
        assert_eq!(out, bytes[..walked], "the records walked, not the rest");
    }

    #[test]
    fn tiny_first_read_is_judged_on_the_content_type() {
        let mut s = WalkerState::default();
        let (v, _) = walk(&mut s, &[22]);
        assert_eq!(v.flags, 0);
        assert_eq!(s.mode, MODE_CAPTURE);
        let mut s = WalkerState::default();
        let (v, _) = walk(&mut s, b"G");
        assert_eq!(v.flags, DATA_FLAG_NOT_TLS);
    }

    fn handshake(first_byte: u8, body_len: usize) -> Vec<u8> {
        let mut r = record(22, body_len);
        r[5] = first_byte;
        r
    }

    #[test]
    fn application_data_and_alerts_are_counted_for_the_success_decision() {
        let mut s = WalkerState::default();
        let mut bytes = handshake(1, 200);
        bytes.extend(record(23, 53)); // a TLS 1.3 client's Finished
        bytes.extend(record(23, 19)); // alert-sized: not counted
        bytes.extend(record(23, 300));
        walk(&mut s, &bytes);
        assert_eq!((s.app_records, s.alerts), (2, 0));
        walk(&mut s, &record(21, 2));
        assert_eq!(s.alerts, 1);
    }

    #[test]
    fn a_client_hello_alone_is_not_tls12() {
        let mut s = WalkerState::default();
        walk(&mut s, &handshake(1, 300));
        assert_eq!(s.hello_flags & HELLO_LATER_HANDSHAKE, 0);
        // A second ClientHello (after a HelloRetryRequest) is not either.
        walk(&mut s, &handshake(1, 300));
        assert_eq!(
            s.hello_flags & (HELLO_LATER_HANDSHAKE | HELLO_CERTIFICATE_OR_UNKNOWN),
            0
        );
    }

    #[test]
    fn later_handshake_records_are_told_by_their_first_byte() {
        // ClientHello, then ClientKeyExchange (16): TLS 1.2.
        let mut s = WalkerState::default();
        let mut bytes = handshake(1, 300);
        bytes.extend(handshake(16, 37));
        walk(&mut s, &bytes);
        assert_ne!(s.hello_flags & HELLO_LATER_HANDSHAKE, 0);
        assert_eq!(s.hello_flags & HELLO_CERTIFICATE_OR_UNKNOWN, 0);
        // ClientHello, then Certificate (11): a certificate was asked for.
        let mut s = WalkerState::default();
        let mut bytes = handshake(1, 300);
        bytes.extend(handshake(11, 7));
        walk(&mut s, &bytes);
        assert_ne!(s.hello_flags & HELLO_CERTIFICATE_OR_UNKNOWN, 0);
    }

    #[test]
    fn the_first_body_byte_is_found_when_header_and_body_are_read_apart() {
        // OpenSSL reads a record's header and its body with two reads.
        let mut s = WalkerState::default();
        walk(&mut s, &handshake(1, 300));
        let cert = handshake(11, 7);
        walk(&mut s, &cert[..5]);
        assert_ne!(s.hello_flags & HELLO_PEEK_PENDING, 0);
        walk(&mut s, &cert[5..]);
        assert_eq!(s.hello_flags & HELLO_PEEK_PENDING, 0);
        assert_ne!(s.hello_flags & HELLO_CERTIFICATE_OR_UNKNOWN, 0);
    }

    #[test]
    fn a_first_body_byte_that_went_by_unseen_counts_as_unknown() {
        let mut s = WalkerState::default();
        walk(&mut s, &handshake(1, 300));
        let cke = handshake(16, 37);
        walk(&mut s, &cke[..5]);
        s.skip(37);
        assert_ne!(s.hello_flags & HELLO_CERTIFICATE_OR_UNKNOWN, 0);
        assert_eq!(s.hello_flags & HELLO_PEEK_PENDING, 0);
    }
}
