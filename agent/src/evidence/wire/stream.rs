//! One direction of a connection: record framing, handshake-message
//! reassembly across records, gaps, encryption and non-TLS bytes.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Framing TLS records.
    Records,
    /// The stream does not speak TLS; its first bytes are being kept.
    NonTls,
    /// Record boundaries are lost (garbage, or a gap across a header).
    Lost,
    /// The kernel stopped capturing bytes (first application data, budget).
    Finished,
}

/// The record being read.
#[derive(Clone, Copy, Debug)]
pub(super) struct Record {
    content_type: u8,
    /// Body bytes not read yet.
    remaining: usize,
    /// Its body is opaque: listed at header time, then skipped.
    encrypted: bool,
    /// Bytes of its body are missing: skipped, not parsed.
    damaged: bool,
}

/// One direction of the connection.
#[derive(Debug)]
pub(super) struct Stream {
    pub(super) sender: Role,
    pub(super) mode: Mode,
    /// Stream offset just past the last chunk (`None` before the first).
    pub(super) next_offset: Option<u32>,
    /// Framing started at stream offset 0 and no record is complete yet:
    /// bytes that are not a record header mean "not TLS", not "garbage".
    pub(super) at_start: bool,
    /// Stream offset of the next byte fed to the framer (for messages).
    pub(super) offset: u32,
    pub(super) header: [u8; RECORD_HEADER_LEN],
    pub(super) header_len: usize,
    pub(super) record: Option<Record>,
    /// Body of the current plaintext record.
    pub(super) body: Vec<u8>,
    /// Handshake bytes not yet forming a complete message.
    pub(super) hs: Vec<u8>,
    /// Bytes of a handshake message to drop (too large, or damaged).
    pub(super) hs_skip: usize,
    /// Handshake message boundaries are lost until a record body starts
    /// with something that looks like a message header.
    pub(super) hs_lost: bool,
    /// First bytes of a non-TLS stream.
    pub(super) snippet: Vec<u8>,
    /// Sent ChangeCipherSpec.
    pub(super) ccs: bool,
    /// Sent an application-data (type 23) record.
    pub(super) app_data: bool,
    /// Sent an encrypted handshake record (TLS 1.2 Finished).
    pub(super) encrypted_handshake: bool,
    /// Sent any encrypted record.
    pub(super) encrypted_any: bool,
    /// Sent an encrypted record that is not a probable alert.
    pub(super) encrypted_non_alert: bool,
}

impl Stream {
    pub(super) fn new(sender: Role) -> Self {
        Stream {
            sender,
            mode: Mode::Records,
            next_offset: None,
            at_start: false,
            offset: 0,
            header: [0; RECORD_HEADER_LEN],
            header_len: 0,
            record: None,
            body: Vec::new(),
            hs: Vec::new(),
            hs_skip: 0,
            hs_lost: false,
            snippet: Vec::new(),
            ccs: false,
            app_data: false,
            encrypted_handshake: false,
            encrypted_any: false,
            encrypted_non_alert: false,
        }
    }

    pub(super) fn who(&self) -> &'static str {
        self.sender.as_str()
    }

    pub(super) fn push(&mut self, chunk: &Chunk<'_>, sh: &mut Shared) {
        let who = self.who();
        if chunk.flags & DATA_FLAG_READ_FAILED != 0 {
            sh.anomaly(format!(
                "{who} stream: the kernel could not read some bytes"
            ));
        }
        if chunk.flags & DATA_FLAG_HEADERS_ONLY != 0 {
            self.headers_only(chunk, sh);
            return;
        }
        if chunk.flags & DATA_FLAG_NOT_TLS != 0 {
            if self.next_offset.is_some() && self.mode != Mode::NonTls {
                sh.anomaly(format!(
                    "{who} stream: a chunk flagged as not TLS came after TLS records; ignored"
                ));
                return;
            }
            self.mode = Mode::NonTls;
            self.next_offset = Some(chunk.stream_offset.wrapping_add(len_u32(chunk.bytes)));
            self.non_tls_bytes(chunk.bytes, sh);
            return;
        }
        if self.mode == Mode::Finished {
            // Capture of this direction ended; nothing more is expected.
            return;
        }
        if let Some(bytes) = self.align(chunk, sh) {
            match self.mode {
                Mode::Records => self.feed(bytes, chunk.time, sh),
                Mode::NonTls => self.non_tls_bytes(bytes, sh),
                Mode::Lost | Mode::Finished => {}
            }
        }
        if chunk.flags & DATA_FLAG_BUDGET != 0 {
            let end = chunk.stream_offset.wrapping_add(len_u32(chunk.bytes));
            sh.anomaly(format!(
                "{who} stream: capture cut at the budget after {end} bytes; later bytes are missing"
            ));
            if self.mode == Mode::Records {
                self.salvage_certificates(chunk.time, sh);
            }
            self.mode = Mode::Finished;
        }
        if chunk.flags & DATA_FLAG_APPDATA != 0 && self.mode == Mode::Records {
            // The kernel sends only record headers from now on.
            self.mode = Mode::Finished;
        }
    }

    /// Checks the chunk's position against what came before. Returns the
    /// bytes not seen yet, or `None` when there are none.
    pub(super) fn align<'a>(&mut self, chunk: &Chunk<'a>, sh: &mut Shared) -> Option<&'a [u8]> {
        let who = self.who();
        let start = chunk.stream_offset;
        let end = start.wrapping_add(len_u32(chunk.bytes));
        let Some(expected) = self.next_offset else {
            self.next_offset = Some(end);
            self.offset = start;
            if start == 0 {
                self.at_start = true;
            } else {
                self.gap(0, start as usize, chunk.bytes, sh);
            }
            return Some(chunk.bytes);
        };
        // Offsets wrap at 4 GiB; the signed difference tells gap from repeat.
        let delta = start.wrapping_sub(expected) as i32;
        if delta < 0 {
            let repeated = delta.unsigned_abs() as usize;
            if !chunk.bytes.is_empty() {
                sh.anomaly(format!(
                    "{who} stream: chunk at offset {start} repeats bytes already seen"
                ));
            }
            let rest = chunk.bytes.get(repeated..).filter(|r| !r.is_empty())?;
            self.next_offset = Some(end);
            return Some(rest);
        }
        self.next_offset = Some(end);
        if delta > 0 {
            self.gap(expected, delta as usize, chunk.bytes, sh);
            self.offset = start;
        }
        Some(chunk.bytes)
    }

    /// `lost` bytes at stream offset `at` were not captured; `next` is what
    /// follows them.
    pub(super) fn gap(&mut self, at: u32, lost: usize, next: &[u8], sh: &mut Shared) {
        let who = self.who();
        sh.anomaly(format!("{who} stream: {lost} bytes missing at offset {at}"));
        self.at_start = false;
        if self.mode != Mode::Records {
            return;
        }
        match self.record.as_mut() {
            // Inside the current record's body (the kernel keeps capturing
            // after skipping body bytes): the boundaries are intact.
            Some(rec) if rec.remaining >= lost => {
                rec.remaining -= lost;
                if !rec.encrypted && !rec.damaged {
                    rec.damaged = true;
                    let content_type = rec.content_type;
                    let have = self.body.len();
                    let total = have + lost + rec.remaining;
                    self.body.clear();
                    if content_type == CONTENT_HANDSHAKE {
                        self.hs_lose(total, sh);
                    }
                }
            }
            _ => {
                self.record = None;
                self.header_len = 0;
                self.body.clear();
                self.hs_lost = true;
                self.hs.clear();
                self.hs_skip = 0;
                if looks_like_record_header(next) {
                    sh.anomaly(format!(
                        "{who} stream: resynchronised on a record header after missing bytes"
                    ));
                } else {
                    sh.anomaly(format!(
                        "{who} stream: record boundaries lost after missing bytes; stopped parsing"
                    ));
                    self.mode = Mode::Lost;
                }
            }
        }
    }

    /// Frames records out of `bytes`.
    pub(super) fn feed(&mut self, bytes: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
        let mut rest = bytes;
        while !rest.is_empty() && self.mode == Mode::Records {
            match self.record.as_mut() {
                Some(rec) => {
                    let n = rec.remaining.min(rest.len());
                    let (take, tail) = rest.split_at(n);
                    rec.remaining -= n;
                    if !rec.encrypted && !rec.damaged {
                        self.body.extend_from_slice(take);
                    }
                    rest = tail;
                    self.offset = self.offset.wrapping_add(n as u32);
                    if rec.remaining == 0 {
                        self.finish_record(time, sh);
                    }
                }
                None => {
                    let Some((&b, tail)) = rest.split_first() else {
                        break;
                    };
                    rest = tail;
                    self.offset = self.offset.wrapping_add(1);
                    if let Some(slot) = self.header.get_mut(self.header_len) {
                        *slot = b;
                    }
                    self.header_len += 1;
                    let header = self.header.get(..self.header_len).unwrap_or_default();
                    if !header_prefix_ok(header) {
                        self.bad_header(rest, sh);
                        return;
                    }
                    if self.header_len == RECORD_HEADER_LEN {
                        self.start_record(time, sh);
                    }
                }
            }
        }
    }

    /// The bytes in `header` are not a record header; `rest` follows them.
    pub(super) fn bad_header(&mut self, rest: &[u8], sh: &mut Shared) {
        let header = self.header.get(..self.header_len).unwrap_or_default();
        if self.at_start {
            let mut first = header.to_vec();
            first.extend_from_slice(rest);
            self.header_len = 0;
            self.mode = Mode::NonTls;
            self.non_tls_bytes(&first, sh);
            return;
        }
        let at = self.offset.wrapping_sub(len_u32(header));
        sh.anomaly(format!(
            "{} stream: malformed record header {} at offset {at}; stopped parsing",
            self.who(),
            hex::encode(header)
        ));
        self.header_len = 0;
        self.mode = Mode::Lost;
    }

    pub(super) fn start_record(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
        self.header_len = 0;
        self.at_start = false;
        let [content_type, _, _, hi, lo] = self.header;
        let length = u16::from_be_bytes([hi, lo]);
        // TLS 1.3 sends every encrypted record as type 23 and alerts or
        // ChangeCipherSpec in clear (OpenSSL's client alerts before it
        // switches keys), so only type 23 is opaque there. TLS 1.2 encrypts
        // everything a side sends after its ChangeCipherSpec.
        let encrypted = content_type == CONTENT_APPLICATION_DATA || (self.ccs && !sh.tls13);
        if encrypted {
            self.encrypted(time, content_type, length, sh);
        }
        self.record = Some(Record {
            content_type,
            remaining: length as usize,
            encrypted,
            damaged: false,
        });
        if length == 0 {
            self.finish_record(time, sh);
        }
    }

    pub(super) fn encrypted(
        &mut self,
        time: DateTime<Utc>,
        content_type: u8,
        length: u16,
        sh: &mut Shared,
    ) {
        let probable_alert = sh.encrypted_record(self.sender, time, content_type, length);
        self.encrypted_any = true;
        if !probable_alert {
            self.encrypted_non_alert = true;
        }
        match content_type {
            CONTENT_APPLICATION_DATA => self.app_data = true,
            CONTENT_HANDSHAKE => self.encrypted_handshake = true,
            _ => {}
        }
    }

    pub(super) fn finish_record(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
        let Some(rec) = self.record.take() else {
            return;
        };
        if rec.encrypted || rec.damaged {
            self.body.clear();
            return;
        }
        let body = std::mem::take(&mut self.body);
        let who = self.who();
        match rec.content_type {
            CONTENT_CHANGE_CIPHER_SPEC => {
                match parse_tls_message_changecipherspec(&body) {
                    Ok(([], TlsMessage::ChangeCipherSpec)) => {}
                    _ => sh.anomaly(format!(
                        "{who} stream: malformed ChangeCipherSpec {}",
                        hex::encode(body.get(..body.len().min(8)).unwrap_or_default())
                    )),
                }
                self.ccs = true;
                sh.message(self.sender, time, "ChangeCipherSpec".to_string());
            }
            CONTENT_ALERT => {
                if body.is_empty() || !body.len().is_multiple_of(2) {
                    sh.anomaly(format!(
                        "{who} stream: alert record of {} bytes (not a whole number of alerts)",
                        body.len()
                    ));
                }
                for pair in body.chunks_exact(2) {
                    if let Ok((_, TlsMessage::Alert(a))) = parse_tls_message_alert(pair) {
                        sh.alert(self.sender, time, a.severity.0, a.code.0);
                    }
                }
            }
            CONTENT_HANDSHAKE => self.hs_feed(&body, time, sh),
            CONTENT_HEARTBEAT => sh.message(self.sender, time, "Heartbeat".to_string()),
            _ => {}
        }
        // Keep the allocation for the next record.
        self.body = body;
        self.body.clear();
    }

    /// Adds a plaintext handshake record body and handles every message it
    /// completes.
    pub(super) fn hs_feed(&mut self, body: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
        let mut data = body;
        if self.hs_skip > 0 {
            let n = self.hs_skip.min(data.len());
            data = data.get(n..).unwrap_or_default();
            self.hs_skip -= n;
            if data.is_empty() {
                return;
            }
        } else if self.hs_lost {
            // A message may start here; a record body that does not start
            // with a plausible message header is a continuation: drop it.
            if !looks_like_handshake_header(data) {
                return;
            }
            self.hs_lost = false;
        }
        self.hs.extend_from_slice(data);
        // Messages are read with a cursor and the consumed prefix dropped
        // once: draining each message off the front would move the rest of
        // the buffer per message (quadratic in a record of tiny messages).
        let mut hs = std::mem::take(&mut self.hs);
        let mut pos = 0;
        while let Some(&[ty, a, b, c]) = hs.get(pos..pos + 4) {
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            let total = len + 4;
            let available = hs.len() - pos;
            if total > MAX_HANDSHAKE_BUFFER {
                sh.anomaly(format!(
                    "{} stream: {} message claims {len} bytes, more than the {} KiB kept; skipped",
                    self.who(),
                    handshake_name(ty),
                    MAX_HANDSHAKE_BUFFER / 1024
                ));
                if available >= total {
                    pos += total;
                } else {
                    self.hs_skip = total - available;
                    pos = hs.len();
                }
                continue;
            }
            if available < total {
                break;
            }
            let body = hs.get(pos + 4..pos + total).unwrap_or_default();
            self.handshake_message(ty, body, time, sh);
            pos += total;
        }
        hs.drain(..pos);
        self.hs = hs;
    }

    /// `lost` bytes of handshake stream (a damaged record) are gone.
    pub(super) fn hs_lose(&mut self, lost: usize, sh: &mut Shared) {
        if self.hs_lost {
            return;
        }
        if self.hs_skip >= lost {
            self.hs_skip -= lost;
            return;
        }
        let lost = lost - self.hs_skip;
        self.hs_skip = 0;
        if let [ty, a, b, c, ..] = self.hs[..] {
            let total = u32::from_be_bytes([0, a, b, c]) as usize + 4;
            let left = total.saturating_sub(self.hs.len());
            if lost <= left {
                // The loss falls inside this message: drop it, keep framing.
                sh.anomaly(format!(
                    "{} stream: {} message incomplete (bytes missing)",
                    self.who(),
                    handshake_name(ty)
                ));
                self.hs.clear();
                self.hs_skip = left - lost;
                return;
            }
        }
        if !self.hs.is_empty() || lost > 0 {
            sh.anomaly(format!(
                "{} stream: handshake message boundaries lost (bytes missing)",
                self.who()
            ));
            self.hs.clear();
            self.hs_lost = true;
        }
    }

    pub(super) fn handshake_message(
        &mut self,
        ty: u8,
        body: &[u8],
        time: DateTime<Utc>,
        sh: &mut Shared,
    ) {
        let hrr = ty == HS_SERVER_HELLO && body.get(2..34) == Some(&HELLO_RETRY_REQUEST_RANDOM[..]);
        let name = if hrr {
            "HelloRetryRequest".to_string()
        } else {
            handshake_name(ty)
        };
        sh.message(self.sender, time, name);
        match (ty, self.sender) {
            (HS_CLIENT_HELLO, Role::Client) => client_hello(body, time, sh),
            (HS_SERVER_HELLO, Role::Server) => server_hello(body, hrr, time, sh),
            // A TLS 1.3 Certificate is encrypted (and formatted differently).
            (HS_CERTIFICATE, _) if !sh.tls13 => self.certificate(body, sh),
            (HS_CERTIFICATE_REQUEST, Role::Server) => sh.facts.certificate_requested = true,
            _ => {}
        }
    }

    pub(super) fn certificate(&mut self, body: &[u8], sh: &mut Shared) {
        let who = self.who();
        let Ok((_, TlsMessageHandshake::Certificate(cert))) =
            parse_tls_handshake_msg_certificate(body)
        else {
            sh.anomaly(format!("{who} stream: malformed Certificate message"));
            return;
        };
        match self.sender {
            Role::Client => sh.facts.client_certificate_count = Some(cert.cert_chain.len()),
            Role::Server => {
                if !sh.facts.server_chain_der.is_empty() {
                    return;
                }
                for raw in &cert.cert_chain {
                    server_certificate(raw.data, sh);
                }
            }
        }
    }

    /// The stream was cut inside the server's Certificate message: keep the
    /// certificates that arrived whole (the leaf comes first).
    pub(super) fn salvage_certificates(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
        if self.sender != Role::Server || sh.tls13 || !sh.facts.server_chain_der.is_empty() {
            return;
        }
        // The partial record body continues the message.
        if let Some(rec) = self.record
            && rec.content_type == CONTENT_HANDSHAKE
            && !rec.encrypted
            && !rec.damaged
            && self.hs_skip == 0
            && !self.hs_lost
        {
            self.hs.extend_from_slice(&self.body);
        }
        let [HS_CERTIFICATE, ..] = self.hs[..] else {
            return;
        };
        // Message header (4), certificate list length (3), then entries of
        // a 3-byte length and the DER.
        let mut list = self.hs.get(7..).unwrap_or_default();
        let mut recovered = 0;
        while let [a, b, c, rest @ ..] = list {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            let Some((der, tail)) = rest.split_at_checked(len) else {
                break;
            };
            server_certificate(der, sh);
            recovered += 1;
            list = tail;
        }
        sh.message(self.sender, time, handshake_name(HS_CERTIFICATE));
        sh.anomaly(format!(
            "server Certificate message cut off; {recovered} whole certificate(s) recovered"
        ));
        self.hs.clear();
    }

    /// A chunk of record headers that followed the first application data.
    pub(super) fn headers_only(&mut self, chunk: &Chunk<'_>, sh: &mut Shared) {
        self.mode = Mode::Finished;
        let mut headers = chunk.bytes.chunks_exact(RECORD_HEADER_LEN);
        for h in &mut headers {
            let &[content_type, major, minor, hi, lo] = h else {
                break;
            };
            let length = u16::from_be_bytes([hi, lo]);
            if !header_prefix_ok(&[content_type, major, minor, hi, lo]) {
                sh.anomaly(format!(
                    "{} stream: malformed record header {} in a headers-only chunk",
                    self.who(),
                    hex::encode(h)
                ));
                return;
            }
            // Everything after the first application data is encrypted.
            self.encrypted(chunk.time, content_type, length, sh);
        }
        if !headers.remainder().is_empty() {
            sh.anomaly(format!(
                "{} stream: headers-only chunk of {} bytes is not whole headers",
                self.who(),
                chunk.bytes.len()
            ));
        }
    }

    /// Keeps the first bytes of a non-TLS stream and describes them.
    pub(super) fn non_tls_bytes(&mut self, bytes: &[u8], sh: &mut Shared) {
        let room = NON_TLS_SNIPPET.saturating_sub(self.snippet.len());
        self.snippet
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        if self.snippet.is_empty() {
            return;
        }
        let fact = NonTlsFact {
            sender: self.sender,
            kind: non_tls_kind(&self.snippet).to_string(),
            description: crate::evidence::plaintext::describe(&self.snippet),
        };
        match &sh.facts.non_tls {
            Some(existing) if existing.sender != self.sender => {}
            _ => sh.facts.non_tls = Some(fact),
        }
    }
}

pub(super) fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

/// Whether `h` (1 to 5 bytes) can start a TLS record header.
pub(super) fn header_prefix_ok(h: &[u8]) -> bool {
    let type_ok = |t: &u8| (CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_HEARTBEAT).contains(t);
    match h {
        [] => true,
        [t] => type_ok(t),
        [t, major] => type_ok(t) && *major == 3,
        [t, major, minor, ..] => {
            let len_ok = match h {
                [_, _, _, hi, lo, ..] => u16::from_be_bytes([*hi, *lo]) as usize <= MAX_RECORD_LEN,
                _ => true,
            };
            type_ok(t) && *major == 3 && *minor <= 4 && len_ok
        }
    }
}

pub(super) fn looks_like_record_header(b: &[u8]) -> bool {
    b.len() >= RECORD_HEADER_LEN && b.get(..RECORD_HEADER_LEN).is_some_and(header_prefix_ok)
}

/// A record body that starts a known handshake message of a sane length.
pub(super) fn looks_like_handshake_header(b: &[u8]) -> bool {
    match b {
        [ty, a, b, c, ..] => {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            !handshake_name(*ty).starts_with("Unknown") && len + 4 <= MAX_HANDSHAKE_BUFFER
        }
        _ => false,
    }
}
