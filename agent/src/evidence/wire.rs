//! Wire evidence (W): TLS records captured on a socket, reassembled across
//! syscalls and parsed with `tls-parser`.
//!
//! The kernel sends each direction's bytes as chunks (one per syscall, see
//! `agent_ebpf::record_walker`). [`WireAssembler`] frames records itself
//! (5-byte header), reassembles handshake messages that span records, tracks
//! when each side's records turn encrypted, and hands only complete
//! plaintext bodies to `tls-parser`: it does no reassembly, errors on
//! application data and cannot know when a stream turned encrypted.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use agent_ebpf::{
    DATA_FLAG_APPDATA, DATA_FLAG_BUDGET, DATA_FLAG_HEADERS_ONLY, DATA_FLAG_NOT_TLS,
    DATA_FLAG_READ_FAILED,
};
use tls_parser::{
    SNIType, TlsCipherSuite, TlsExtension, TlsMessage, TlsMessageHandshake,
    parse_tls_client_hello_extensions, parse_tls_handshake_client_hello,
    parse_tls_handshake_msg_certificate, parse_tls_handshake_server_hello, parse_tls_message_alert,
    parse_tls_message_changecipherspec, parse_tls_server_hello_extensions,
};

use crate::evidence::certificates::CertificateFact;
use crate::outcome::Role;

/// Everything the wire showed about one connection's handshake.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFacts {
    /// SNI from the ClientHello.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// Versions the client offered: `supported_versions` when present,
    /// otherwise the ClientHello's legacy version. Names like "TLS 1.2".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered_versions: Vec<String>,
    /// Version the ServerHello chose (honouring `supported_versions`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negotiated_version: Option<String>,
    /// The first fatal alert either side sent in clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<AlertFact>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hello: Option<ClientHelloFacts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hello: Option<ServerHelloFacts>,
    /// Certificates from the server's TLS 1.2 Certificate message, leaf first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_certificates: Vec<CertificateFact>,
    /// The server sent a CertificateRequest (visible in TLS 1.2 only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub certificate_requested: bool,
    /// Certificates in the client's TLS 1.2 Certificate message (0 = it sent
    /// an empty one), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_count: Option<usize>,
    /// Every alert seen, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertFact>,
    /// Handshake messages seen in clear, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageFact>,
    /// Records after encryption started (content type and length only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encrypted_records: Vec<EncryptedRecordFact>,
    /// A side that did not speak TLS at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub non_tls: Option<NonTlsFact>,
    /// Malformed records, gaps and truncations, in words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHelloFacts {
    pub time: Option<DateTime<Utc>>,
    /// Record-layer/legacy version, e.g. "TLS 1.2".
    pub legacy_version: String,
    /// `supported_versions` extension, in the client's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_versions: Vec<String>,
    /// IANA names (or `0x....` for unknown ids), in the client's order.
    pub cipher_suites: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signature_algorithms: Vec<String>,
    /// 32-byte random, lower-case hex: the trace id source.
    pub random: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHelloFacts {
    pub time: Option<DateTime<Utc>>,
    /// Negotiated version, honouring `supported_versions`.
    pub version: String,
    pub cipher_suite: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alpn: Option<String>,
    pub random: String,
    /// This ServerHello is a TLS 1.3 HelloRetryRequest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hello_retry_request: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFact {
    pub time: Option<DateTime<Utc>>,
    /// Who sent it.
    pub sender: Role,
    /// "fatal" or "warning".
    pub level: String,
    /// RFC 8446 name, e.g. "unknown_ca".
    pub description: String,
    pub code: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFact {
    pub time: Option<DateTime<Utc>>,
    pub sender: Role,
    /// e.g. "ClientHello", "Certificate", "ChangeCipherSpec".
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedRecordFact {
    pub time: Option<DateTime<Utc>>,
    pub sender: Role,
    pub content_type: u8,
    pub length: u16,
    /// The length is that of an encrypted alert for the negotiated version.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub probable_alert: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonTlsFact {
    pub sender: Role,
    /// "http-request", "http-response", "sslv2-hello" or "unknown".
    pub kind: String,
    /// The first bytes, printable ASCII kept and the rest escaped.
    pub first_bytes: String,
}

/// One captured chunk of a direction, as the kernel sent it.
#[derive(Clone, Debug)]
pub struct Chunk<'a> {
    pub time: DateTime<Utc>,
    pub sender: Role,
    /// Offset of `bytes[0]` in the sender's stream.
    pub stream_offset: u32,
    /// `agent_ebpf::DATA_FLAG_*`.
    pub flags: u8,
    pub bytes: &'a [u8],
}

/// How far the handshake got, by the wire alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireProgress {
    /// Nothing decisive yet.
    InProgress,
    /// Both sides moved past the handshake (application data / Finished).
    Completed,
    /// A fatal alert, or a side that does not speak TLS.
    Failed,
}

/// TLS record header: type, version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Largest record body accepted: 2^14 plus the expansion TLS allows.
const MAX_RECORD_LEN: usize = agent_ebpf::record_walker::MAX_RECORD_LEN as usize;
/// Most bytes buffered for one handshake message (per direction). The kernel
/// captures at most `CAPTURE_BUDGET` (64 KiB) per direction, so a longer
/// message can only be garbage or a cut stream.
const MAX_HANDSHAKE_BUFFER: usize = 128 * 1024;
/// Bytes of a non-TLS stream kept (as much as the kernel sends).
const NON_TLS_SNIPPET: usize = agent_ebpf::NON_TLS_SNIPPET as usize;
/// Caps on the lists in [`TlsFacts`]: hostile input must not grow them
/// without bound.
const MAX_ANOMALIES: usize = 32;
const MAX_MESSAGES: usize = 64;
const MAX_ALERTS: usize = 32;
const MAX_ENCRYPTED_RECORDS: usize = 64;

const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_ALERT: u8 = 21;
const CONTENT_HANDSHAKE: u8 = 22;
const CONTENT_APPLICATION_DATA: u8 = 23;
const CONTENT_HEARTBEAT: u8 = 24;

const HS_CLIENT_HELLO: u8 = 1;
const HS_SERVER_HELLO: u8 = 2;
const HS_CERTIFICATE: u8 = 11;
const HS_CERTIFICATE_REQUEST: u8 = 13;

const TLS13: u16 = 0x0304;
/// Length of a TLS 1.3 encrypted alert: 2 alert bytes, the inner content
/// type and a 16-byte AEAD tag.
const TLS13_ENCRYPTED_ALERT_LEN: u16 = 19;

/// The ServerHello random that marks a TLS 1.3 HelloRetryRequest (RFC 8446
/// 4.1.3).
const HELLO_RETRY_REQUEST_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Reassembles and parses the TLS records of one connection, both
/// directions, from the chunks the kernel captured.
#[derive(Debug)]
pub struct WireAssembler {
    client: Stream,
    server: Stream,
    shared: Shared,
}

impl Default for WireAssembler {
    fn default() -> Self {
        Self::new()
    }
}

impl WireAssembler {
    pub fn new() -> Self {
        WireAssembler {
            client: Stream::new(Role::Client),
            server: Stream::new(Role::Server),
            shared: Shared::default(),
        }
    }

    /// Adds one chunk. Chunks of one sender must come in stream order (gaps
    /// and repeats are detected from `stream_offset`); the two senders'
    /// chunks should be interleaved in time order, since what one side's
    /// ServerHello says decides how the other side's records are read.
    pub fn push(&mut self, chunk: Chunk<'_>) {
        let stream = match chunk.sender {
            Role::Client => &mut self.client,
            Role::Server => &mut self.server,
        };
        stream.push(&chunk, &mut self.shared);
    }

    pub fn progress(&self) -> WireProgress {
        let facts = &self.shared.facts;
        if facts.alert.is_some() || facts.non_tls.is_some() {
            return WireProgress::Failed;
        }
        let (c, s) = (&self.client, &self.server);
        let done = if self.shared.server_hello_13 {
            // TLS 1.3: the server's flight after its ServerHello is
            // encrypted; the client's first encrypted record that is not an
            // alert is its Finished (or its Certificate, then Finished).
            s.encrypted_any && c.encrypted_non_alert
        } else {
            // TLS 1.2: both switched ciphers and sent their (encrypted)
            // Finished, or data flows. Application data alone only counts
            // once the version is known not to be 1.3, where every
            // encrypted record looks like application data.
            let version_known = facts.negotiated_version.is_some() && !self.shared.tls13;
            c.ccs
                && s.ccs
                && ((c.encrypted_handshake && s.encrypted_handshake)
                    || (version_known && (c.app_data || s.app_data)))
        };
        if done {
            WireProgress::Completed
        } else {
            WireProgress::InProgress
        }
    }

    pub fn facts(&self) -> &TlsFacts {
        &self.shared.facts
    }

    pub fn into_facts(self) -> TlsFacts {
        self.shared.facts
    }
}

/// Connection-wide state: the facts, and what the ServerHello decided.
#[derive(Debug, Default)]
struct Shared {
    facts: TlsFacts,
    /// A ServerHello or HelloRetryRequest selected TLS 1.3: only records of
    /// type 23 are encrypted, whoever sent them.
    tls13: bool,
    /// A real ServerHello (not a HelloRetryRequest) selected TLS 1.3.
    server_hello_13: bool,
}

impl Shared {
    /// Records an anomaly once; past the cap, one last line says so.
    fn anomaly(&mut self, text: String) {
        let list = &mut self.facts.anomalies;
        if list.contains(&text) {
            return;
        }
        if list.len() < MAX_ANOMALIES {
            list.push(text);
        } else if list.len() == MAX_ANOMALIES {
            list.push("more anomalies not listed".to_string());
        }
    }

    fn message(&mut self, sender: Role, time: DateTime<Utc>, message: String) {
        if self.facts.messages.len() < MAX_MESSAGES {
            self.facts.messages.push(MessageFact {
                time: Some(time),
                sender,
                message,
            });
        } else {
            self.anomaly(format!(
                "more than {MAX_MESSAGES} handshake messages; the rest are not listed"
            ));
        }
    }

    fn alert(&mut self, sender: Role, time: DateTime<Utc>, level: u8, code: u8) {
        let fact = AlertFact {
            time: Some(time),
            sender,
            level: match level {
                1 => "warning".to_string(),
                2 => "fatal".to_string(),
                n => format!("unknown({n})"),
            },
            description: alert_name(code),
            code,
        };
        if level == 2 && self.facts.alert.is_none() {
            self.facts.alert = Some(fact.clone());
        }
        if self.facts.alerts.len() < MAX_ALERTS {
            self.facts.alerts.push(fact);
        } else {
            self.anomaly(format!(
                "more than {MAX_ALERTS} alerts; the rest are not listed"
            ));
        }
    }

    /// Lists an encrypted record and says whether it probably is an alert.
    fn encrypted_record(
        &mut self,
        sender: Role,
        time: DateTime<Utc>,
        content_type: u8,
        length: u16,
    ) -> bool {
        // TLS 1.2 keeps the alert content type on encrypted alerts; TLS 1.3
        // hides every type behind 23 but an alert has a telltale length.
        let probable_alert = content_type == CONTENT_ALERT
            || (self.tls13
                && content_type == CONTENT_APPLICATION_DATA
                && length == TLS13_ENCRYPTED_ALERT_LEN);
        if self.facts.encrypted_records.len() < MAX_ENCRYPTED_RECORDS {
            self.facts.encrypted_records.push(EncryptedRecordFact {
                time: Some(time),
                sender,
                content_type,
                length,
                probable_alert,
            });
        } else {
            self.anomaly(format!(
                "more than {MAX_ENCRYPTED_RECORDS} encrypted records; the rest are not listed"
            ));
        }
        probable_alert
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
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
struct Record {
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
struct Stream {
    sender: Role,
    mode: Mode,
    /// Stream offset just past the last chunk (`None` before the first).
    next_offset: Option<u32>,
    /// Framing started at stream offset 0 and no record is complete yet:
    /// bytes that are not a record header mean "not TLS", not "garbage".
    at_start: bool,
    /// Stream offset of the next byte fed to the framer (for messages).
    offset: u32,
    header: [u8; RECORD_HEADER_LEN],
    header_len: usize,
    record: Option<Record>,
    /// Body of the current plaintext record.
    body: Vec<u8>,
    /// Handshake bytes not yet forming a complete message.
    hs: Vec<u8>,
    /// Bytes of a handshake message to drop (too large, or damaged).
    hs_skip: usize,
    /// Handshake message boundaries are lost until a record body starts
    /// with something that looks like a message header.
    hs_lost: bool,
    /// First bytes of a non-TLS stream.
    snippet: Vec<u8>,
    /// Sent ChangeCipherSpec.
    ccs: bool,
    /// Sent an application-data (type 23) record.
    app_data: bool,
    /// Sent an encrypted handshake record (TLS 1.2 Finished).
    encrypted_handshake: bool,
    /// Sent any encrypted record.
    encrypted_any: bool,
    /// Sent an encrypted record that is not a probable alert.
    encrypted_non_alert: bool,
}

impl Stream {
    fn new(sender: Role) -> Self {
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

    fn who(&self) -> &'static str {
        self.sender.as_str()
    }

    fn push(&mut self, chunk: &Chunk<'_>, sh: &mut Shared) {
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
    fn align<'a>(&mut self, chunk: &Chunk<'a>, sh: &mut Shared) -> Option<&'a [u8]> {
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
    fn gap(&mut self, at: u32, lost: usize, next: &[u8], sh: &mut Shared) {
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
    fn feed(&mut self, bytes: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
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
    fn bad_header(&mut self, rest: &[u8], sh: &mut Shared) {
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

    fn start_record(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
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

    fn encrypted(&mut self, time: DateTime<Utc>, content_type: u8, length: u16, sh: &mut Shared) {
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

    fn finish_record(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
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
    fn hs_feed(&mut self, body: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
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
        while let [ty, a, b, c, ..] = self.hs[..] {
            let len = u32::from_be_bytes([0, a, b, c]) as usize;
            let total = len + 4;
            if total > MAX_HANDSHAKE_BUFFER {
                sh.anomaly(format!(
                    "{} stream: {} message claims {len} bytes, more than the {} KiB kept; skipped",
                    self.who(),
                    handshake_name(ty),
                    MAX_HANDSHAKE_BUFFER / 1024
                ));
                if self.hs.len() >= total {
                    self.hs.drain(..total);
                } else {
                    self.hs_skip = total - self.hs.len();
                    self.hs.clear();
                }
                continue;
            }
            if self.hs.len() < total {
                break;
            }
            let msg: Vec<u8> = self.hs.drain(..total).collect();
            self.handshake_message(ty, msg.get(4..).unwrap_or_default(), time, sh);
        }
    }

    /// `lost` bytes of handshake stream (a damaged record) are gone.
    fn hs_lose(&mut self, lost: usize, sh: &mut Shared) {
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

    fn handshake_message(&mut self, ty: u8, body: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
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

    fn certificate(&mut self, body: &[u8], sh: &mut Shared) {
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
                if !sh.facts.server_certificates.is_empty() {
                    return;
                }
                for (i, raw) in cert.cert_chain.iter().enumerate() {
                    server_certificate(i, raw.data, sh);
                }
            }
        }
    }

    /// The stream was cut inside the server's Certificate message: keep the
    /// certificates that arrived whole (the leaf comes first).
    fn salvage_certificates(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
        if self.sender != Role::Server || sh.tls13 || !sh.facts.server_certificates.is_empty() {
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
            server_certificate(recovered, der, sh);
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
    fn headers_only(&mut self, chunk: &Chunk<'_>, sh: &mut Shared) {
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
    fn non_tls_bytes(&mut self, bytes: &[u8], sh: &mut Shared) {
        let room = NON_TLS_SNIPPET.saturating_sub(self.snippet.len());
        self.snippet
            .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
        if self.snippet.is_empty() {
            return;
        }
        let fact = NonTlsFact {
            sender: self.sender,
            kind: non_tls_kind(&self.snippet).to_string(),
            first_bytes: escape_bytes(&self.snippet),
        };
        match &sh.facts.non_tls {
            Some(existing) if existing.sender != self.sender => {}
            _ => sh.facts.non_tls = Some(fact),
        }
    }
}

fn len_u32(bytes: &[u8]) -> u32 {
    u32::try_from(bytes.len()).unwrap_or(u32::MAX)
}

fn server_certificate(index: usize, der: &[u8], sh: &mut Shared) {
    match CertificateFact::from_der(der) {
        Ok(fact) => sh.facts.server_certificates.push(fact),
        Err(e) => sh.anomaly(format!(
            "server certificate #{index} could not be parsed: {e}"
        )),
    }
}

fn client_hello(body: &[u8], time: DateTime<Utc>, sh: &mut Shared) {
    let Ok((_, ch)) = parse_tls_handshake_client_hello(body) else {
        sh.anomaly("client stream: malformed ClientHello".to_string());
        return;
    };
    // A second ClientHello (after a HelloRetryRequest) repeats the first.
    if sh.facts.client_hello.is_some() {
        return;
    }
    let mut facts = ClientHelloFacts {
        time: Some(time),
        legacy_version: version_name(ch.version.0),
        cipher_suites: ch
            .ciphers
            .iter()
            .filter(|c| !is_grease(c.0))
            .map(|c| cipher_name(c.0))
            .collect(),
        random: hex::encode(ch.random),
        ..ClientHelloFacts::default()
    };
    let mut sni = None;
    if let Some(ext) = ch.ext {
        match parse_tls_client_hello_extensions(ext) {
            Ok((rest, exts)) => {
                if !rest.is_empty() {
                    sh.anomaly(format!(
                        "client stream: {} bytes of ClientHello extensions could not be parsed",
                        rest.len()
                    ));
                }
                for e in exts {
                    match e {
                        TlsExtension::SNI(names) => {
                            sni = names
                                .iter()
                                .find(|(t, _)| *t == SNIType::HostName)
                                .map(|(_, n)| String::from_utf8_lossy(n).into_owned());
                        }
                        TlsExtension::SupportedVersions(v) => {
                            facts.supported_versions = v
                                .iter()
                                .filter(|v| !is_grease(v.0))
                                .map(|v| version_name(v.0))
                                .collect();
                        }
                        TlsExtension::ALPN(protos) => {
                            facts.alpn = protos
                                .iter()
                                .map(|p| String::from_utf8_lossy(p).into_owned())
                                .collect();
                        }
                        TlsExtension::EllipticCurves(groups) => {
                            facts.supported_groups = groups
                                .iter()
                                .filter(|g| !is_grease(g.0))
                                .map(|g| group_name(g.0))
                                .collect();
                        }
                        TlsExtension::SignatureAlgorithms(algs) => {
                            facts.signature_algorithms = algs
                                .iter()
                                .filter(|a| !is_grease(**a))
                                .map(|a| signature_scheme_name(*a))
                                .collect();
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => sh.anomaly("client stream: malformed ClientHello extensions".to_string()),
        }
    }
    sh.facts.offered_versions = if facts.supported_versions.is_empty() {
        vec![facts.legacy_version.clone()]
    } else {
        facts.supported_versions.clone()
    };
    sh.facts.sni = sni;
    sh.facts.client_hello = Some(facts);
}

fn server_hello(body: &[u8], hrr: bool, time: DateTime<Utc>, sh: &mut Shared) {
    let Ok((_, shello)) = parse_tls_handshake_server_hello(body) else {
        sh.anomaly("server stream: malformed ServerHello".to_string());
        return;
    };
    let mut version = shello.version.0;
    let mut alpn = None;
    if let Some(ext) = shello.ext {
        match parse_tls_server_hello_extensions(ext) {
            Ok((rest, exts)) => {
                if !rest.is_empty() {
                    sh.anomaly(format!(
                        "server stream: {} bytes of ServerHello extensions could not be parsed",
                        rest.len()
                    ));
                }
                for e in exts {
                    match e {
                        TlsExtension::SupportedVersions(v) => {
                            if let Some(v) = v.first() {
                                version = v.0;
                            }
                        }
                        TlsExtension::ALPN(protos) => {
                            alpn = protos
                                .first()
                                .map(|p| String::from_utf8_lossy(p).into_owned());
                        }
                        _ => {}
                    }
                }
            }
            Err(_) => sh.anomaly("server stream: malformed ServerHello extensions".to_string()),
        }
    }
    if version == TLS13 {
        sh.tls13 = true;
        // A HelloRetryRequest asks for another ClientHello; encryption
        // starts only after the real ServerHello.
        if !hrr {
            sh.server_hello_13 = true;
        }
    }
    sh.facts.negotiated_version = Some(version_name(version));
    sh.facts.server_hello = Some(ServerHelloFacts {
        time: Some(time),
        version: version_name(version),
        cipher_suite: cipher_name(shello.cipher.0),
        alpn,
        random: hex::encode(shello.random),
        hello_retry_request: hrr,
    });
}

/// Whether `h` (1 to 5 bytes) can start a TLS record header.
fn header_prefix_ok(h: &[u8]) -> bool {
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

fn looks_like_record_header(b: &[u8]) -> bool {
    b.len() >= RECORD_HEADER_LEN && b.get(..RECORD_HEADER_LEN).is_some_and(header_prefix_ok)
}

/// A record body that starts a known handshake message of a sane length.
fn looks_like_handshake_header(b: &[u8]) -> bool {
    match b {
        [ty, a, b, c, ..] => {
            let len = u32::from_be_bytes([0, *a, *b, *c]) as usize;
            !handshake_name(*ty).starts_with("Unknown") && len + 4 <= MAX_HANDSHAKE_BUFFER
        }
        _ => false,
    }
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && (v >> 8) == (v & 0xff)
}

fn version_name(v: u16) -> String {
    match v {
        0x0300 => "SSL 3.0".to_string(),
        0x0301 => "TLS 1.0".to_string(),
        0x0302 => "TLS 1.1".to_string(),
        0x0303 => "TLS 1.2".to_string(),
        0x0304 => "TLS 1.3".to_string(),
        0x7f00..=0x7fff => format!("TLS 1.3 draft {}", v & 0xff),
        _ => format!("0x{v:04x}"),
    }
}

fn cipher_name(id: u16) -> String {
    TlsCipherSuite::from_id(id)
        .map(|c| c.name.to_string())
        .unwrap_or_else(|| format!("0x{id:04x}"))
}

/// IANA "TLS Supported Groups" names.
fn group_name(id: u16) -> String {
    let name = match id {
        19 => "secp192r1",
        21 => "secp224r1",
        22 => "secp256k1",
        23 => "secp256r1",
        24 => "secp384r1",
        25 => "secp521r1",
        26 => "brainpoolP256r1",
        27 => "brainpoolP384r1",
        28 => "brainpoolP512r1",
        29 => "x25519",
        30 => "x448",
        31 => "brainpoolP256r1tls13",
        32 => "brainpoolP384r1tls13",
        33 => "brainpoolP512r1tls13",
        41 => "curveSM2",
        0x0100 => "ffdhe2048",
        0x0101 => "ffdhe3072",
        0x0102 => "ffdhe4096",
        0x0103 => "ffdhe6144",
        0x0104 => "ffdhe8192",
        0x0200 => "MLKEM512",
        0x0201 => "MLKEM768",
        0x0202 => "MLKEM1024",
        0x11eb => "SecP256r1MLKEM768",
        0x11ec => "X25519MLKEM768",
        0x11ed => "SecP384r1MLKEM1024",
        0x6399 => "X25519Kyber768Draft00",
        _ => return format!("0x{id:04x}"),
    };
    name.to_string()
}

/// IANA "TLS SignatureScheme" names; TLS 1.2 hash/signature pairs that have
/// none are named `<signature>_<hash>`.
fn signature_scheme_name(id: u16) -> String {
    let name = match id {
        0x0201 => "rsa_pkcs1_sha1",
        0x0203 => "ecdsa_sha1",
        0x0401 => "rsa_pkcs1_sha256",
        0x0403 => "ecdsa_secp256r1_sha256",
        0x0501 => "rsa_pkcs1_sha384",
        0x0503 => "ecdsa_secp384r1_sha384",
        0x0601 => "rsa_pkcs1_sha512",
        0x0603 => "ecdsa_secp521r1_sha512",
        0x0708 => "sm2sig_sm3",
        0x0804 => "rsa_pss_rsae_sha256",
        0x0805 => "rsa_pss_rsae_sha384",
        0x0806 => "rsa_pss_rsae_sha512",
        0x0807 => "ed25519",
        0x0808 => "ed448",
        0x0809 => "rsa_pss_pss_sha256",
        0x080a => "rsa_pss_pss_sha384",
        0x080b => "rsa_pss_pss_sha512",
        0x081a => "ecdsa_brainpoolP256r1tls13_sha256",
        0x081b => "ecdsa_brainpoolP384r1tls13_sha384",
        0x081c => "ecdsa_brainpoolP512r1tls13_sha512",
        _ => {
            let [hash, sig] = id.to_be_bytes();
            let hash = match hash {
                1 => "md5",
                2 => "sha1",
                3 => "sha224",
                4 => "sha256",
                5 => "sha384",
                6 => "sha512",
                _ => return format!("0x{id:04x}"),
            };
            let sig = match sig {
                1 => "rsa",
                2 => "dsa",
                3 => "ecdsa",
                _ => return format!("0x{id:04x}"),
            };
            return format!("{sig}_{hash}");
        }
    };
    name.to_string()
}

fn handshake_name(ty: u8) -> String {
    let name = match ty {
        0 => "HelloRequest",
        1 => "ClientHello",
        2 => "ServerHello",
        3 => "HelloVerifyRequest",
        4 => "NewSessionTicket",
        5 => "EndOfEarlyData",
        6 => "HelloRetryRequest",
        8 => "EncryptedExtensions",
        11 => "Certificate",
        12 => "ServerKeyExchange",
        13 => "CertificateRequest",
        14 => "ServerHelloDone",
        15 => "CertificateVerify",
        16 => "ClientKeyExchange",
        20 => "Finished",
        21 => "CertificateURL",
        22 => "CertificateStatus",
        23 => "SupplementalData",
        24 => "KeyUpdate",
        25 => "CompressedCertificate",
        67 => "NextProtocol",
        254 => "MessageHash",
        _ => return format!("Unknown({ty})"),
    };
    name.to_string()
}

/// RFC 8446 (and IANA registry) alert names.
fn alert_name(code: u8) -> String {
    let name = match code {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return format!("unknown({code})"),
    };
    name.to_string()
}

/// What a stream that is not TLS speaks, from its first bytes.
fn non_tls_kind(b: &[u8]) -> &'static str {
    const METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"HEAD ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI ",
    ];
    if METHODS.iter().any(|m| b.starts_with(m)) {
        "http-request"
    } else if b.starts_with(b"HTTP/") {
        "http-response"
    } else if matches!(b, [first, _, 1, ..] if first & 0x80 != 0) {
        // SSLv2 record: 2-byte length with the high bit set, then
        // message type 1 (CLIENT-HELLO).
        "sslv2-hello"
    } else {
        "unknown"
    }
}

/// Printable ASCII as is, the rest escaped (`\r`, `\n`, `\t`, `\xNN`).
fn escape_bytes(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len() * 2);
    for &c in b {
        match c {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(c)),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    out
}
