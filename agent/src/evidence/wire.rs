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

use crate::evidence::certificates::{CertificateCache, CertificateFact};
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
    /// The DER of `server_certificates`, for verification on this host (not
    /// journaled: the parsed facts are).
    #[serde(skip)]
    pub server_chain_der: Vec<Vec<u8>>,
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
/// The smallest TLS 1.3 Finished record: 32 bytes of verify data (SHA-256),
/// 4 of handshake header, 1 inner content type and an 8-byte CCM_8 tag.
const TLS13_MIN_FINISHED_LEN: u16 = 45;
/// An empty client Certificate (mTLS without a certificate): 4 bytes of
/// header, a 1-byte context and a 3-byte empty list, the inner type and a
/// 16- or 8-byte tag.
const TLS13_EMPTY_CERTIFICATE_LENS: [u16; 2] = [25, 17];

/// A client's first encrypted TLS 1.3 record is its Certificate (empty or
/// not) or its Finished; anything shorter than a Finished that is not an
/// empty Certificate is an alert, padded or not (JSSE pads its alerts to 35
/// bytes).
fn tls13_client_first_record_is_alert(length: u16) -> bool {
    length < TLS13_MIN_FINISHED_LEN && !TLS13_EMPTY_CERTIFICATE_LENS.contains(&length)
}

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
    /// The client has sent an encrypted record.
    client_encrypted: bool,
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
        let first_from_client = sender == Role::Client && !self.client_encrypted;
        if sender == Role::Client {
            self.client_encrypted = true;
        }
        let probable_alert = content_type == CONTENT_ALERT
            || (self.tls13
                && content_type == CONTENT_APPLICATION_DATA
                && (length == TLS13_ENCRYPTED_ALERT_LEN
                    || (first_from_client && tls13_client_first_record_is_alert(length))));
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
    fn salvage_certificates(&mut self, time: DateTime<Utc>, sh: &mut Shared) {
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

/// Keeps a served certificate's DER; [`TlsFacts::parse_certificates`] turns
/// it into facts later, off the capture path (only outcomes that are
/// journaled or exported need them, and X.509 parsing is the most expensive
/// step of a handshake's assembly).
fn server_certificate(der: &[u8], sh: &mut Shared) {
    sh.facts.server_chain_der.push(der.to_vec());
}

impl TlsFacts {
    /// Parses the served chain (`server_chain_der`) into
    /// `server_certificates`, once; a certificate that does not parse is an
    /// anomaly.
    pub fn parse_certificates(&mut self, cache: &mut CertificateCache) {
        if !self.server_certificates.is_empty() {
            return;
        }
        for (index, der) in self.server_chain_der.iter().enumerate() {
            match cache.fact(der) {
                Ok(fact) => self.server_certificates.push(fact),
                Err(e) => {
                    let text = format!("server certificate #{index} could not be parsed: {e}");
                    if self.anomalies.len() < MAX_ANOMALIES && !self.anomalies.contains(&text) {
                        self.anomalies.push(text);
                    }
                }
            }
        }
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

/// RFC 8446 §6 (and IANA registry) name of a TLS alert, in snake_case;
/// `None` for a code no registry names. Codes the RFC marks `_RESERVED` (TLS
/// 1.2 and older only) are named without the suffix: TLS 1.2 peers still
/// send them.
pub fn known_alert_name(code: u8) -> Option<&'static str> {
    Some(match code {
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
        _ => return None,
    })
}

/// An alert's name as the wire facts show it, `unknown(N)` when unnamed.
fn alert_name(code: u8) -> String {
    known_alert_name(code).map_or_else(|| format!("unknown({code})"), str::to_string)
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

#[cfg(test)]
mod tests {
    use super::*;
    use agent_ebpf::record_walker::WalkerState;
    use chrono::TimeZone;

    const TLS12_OK_CHAIN: &str = include_str!("testdata/wire/tls12_ok_chain.txt");
    const TLS13_OK: &str = include_str!("testdata/wire/tls13_ok.txt");
    const TLS12_UNKNOWN_CA: &str = include_str!("testdata/wire/tls12_unknown_ca.txt");
    const TLS13_UNKNOWN_CA: &str = include_str!("testdata/wire/tls13_unknown_ca.txt");
    const VERSION_MISMATCH: &str = include_str!("testdata/wire/version_mismatch.txt");
    const NO_SHARED_CIPHER: &str = include_str!("testdata/wire/no_shared_cipher.txt");
    const TLS12_MTLS_NO_CERT: &str = include_str!("testdata/wire/tls12_mtls_no_client_cert.txt");
    const TLS13_MTLS_NO_CERT: &str = include_str!("testdata/wire/tls13_mtls_no_client_cert.txt");
    const TLS13_HRR: &str = include_str!("testdata/wire/tls13_hello_retry.txt");
    const HTTP_TO_TLS: &str = include_str!("testdata/wire/http_request_to_tls_server.txt");
    const TLS_TO_HTTP: &str = include_str!("testdata/wire/tls_client_to_http_server.txt");

    const ALL_FIXTURES: [&str; 11] = [
        TLS12_OK_CHAIN,
        TLS13_OK,
        TLS12_UNKNOWN_CA,
        TLS13_UNKNOWN_CA,
        VERSION_MISMATCH,
        NO_SHARED_CIPHER,
        TLS12_MTLS_NO_CERT,
        TLS13_MTLS_NO_CERT,
        TLS13_HRR,
        HTTP_TO_TLS,
        TLS_TO_HTTP,
    ];

    use Role::{Client as C, Server as S};

    /// A chunk that owns its bytes.
    #[derive(Clone, Debug)]
    struct Owned {
        time: DateTime<Utc>,
        sender: Role,
        stream_offset: u32,
        flags: u8,
        bytes: Vec<u8>,
    }

    fn base_time() -> DateTime<Utc> {
        Utc.timestamp_opt(1_750_000_000, 0).single().unwrap()
    }

    fn idx(r: Role) -> usize {
        match r {
            Role::Client => 0,
            Role::Server => 1,
        }
    }

    /// Parses a fixture (`<c|s> <seconds> <hex>` lines, `#` comments) into
    /// chunks with running stream offsets and no flags: every recv() of the
    /// relay as one syscall.
    fn load(text: &str) -> Vec<Owned> {
        let mut offsets = [0u32; 2];
        let mut out = Vec::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let mut parts = line.split(' ');
            let tag = parts.next().unwrap();
            let secs: f64 = parts.next().unwrap().parse().unwrap();
            let bytes = hex::decode(parts.next().unwrap()).unwrap();
            let sender = if tag == "c" { C } else { S };
            out.push(Owned {
                time: base_time() + chrono::Duration::microseconds((secs * 1e6) as i64),
                sender,
                stream_offset: offsets[idx(sender)],
                flags: 0,
                bytes: bytes.clone(),
            });
            offsets[idx(sender)] += bytes.len() as u32;
        }
        out
    }

    fn assembler(chunks: &[Owned]) -> WireAssembler {
        let mut w = WireAssembler::default();
        for c in chunks {
            w.push(Chunk {
                time: c.time,
                sender: c.sender,
                stream_offset: c.stream_offset,
                flags: c.flags,
                bytes: &c.bytes,
            });
        }
        w
    }

    fn run(chunks: &[Owned]) -> (TlsFacts, WireProgress) {
        let w = assembler(chunks);
        let p = w.progress();
        let mut facts = w.into_facts();
        facts.parse_certificates(&mut CertificateCache::default());
        (facts, p)
    }

    /// What the kernel would send for these syscalls.
    fn kernel(chunks: &[Owned]) -> Vec<Owned> {
        let mut walkers = [WalkerState::default(); 2];
        let mut out = Vec::new();
        for c in chunks {
            let mut buf = c.bytes.clone();
            let len = buf.len();
            let v = walkers[idx(c.sender)].walk(&mut buf, len);
            buf.truncate(v.emit_len as usize);
            if v.emit_len > 0 || v.flags != 0 {
                out.push(Owned {
                    stream_offset: v.stream_offset,
                    flags: v.flags,
                    bytes: buf,
                    ..c.clone()
                });
            }
        }
        out
    }

    /// Splits chunks into pieces of `size()` bytes. Flags that end a chunk go
    /// on its last piece; NOT_TLS and HEADERS_ONLY chunks stay whole.
    fn split(chunks: &[Owned], mut size: impl FnMut() -> usize) -> Vec<Owned> {
        let mut out = Vec::new();
        for c in chunks {
            if c.flags & (DATA_FLAG_NOT_TLS | DATA_FLAG_HEADERS_ONLY) != 0 || c.bytes.len() <= 1 {
                out.push(c.clone());
                continue;
            }
            let mut pos = 0;
            while pos < c.bytes.len() {
                let n = size().clamp(1, c.bytes.len() - pos);
                let last = pos + n == c.bytes.len();
                out.push(Owned {
                    stream_offset: c.stream_offset + pos as u32,
                    flags: if last { c.flags } else { 0 },
                    bytes: c.bytes[pos..pos + n].to_vec(),
                    ..c.clone()
                });
                pos += n;
            }
        }
        out
    }

    /// Splits chunks the way OpenSSL reads: each record header, then each
    /// body, in separate syscalls.
    fn openssl_reads(chunks: &[Owned]) -> Vec<Owned> {
        let mut cuts: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        for role in [C, S] {
            let stream: Vec<u8> = chunks
                .iter()
                .filter(|c| c.sender == role)
                .flat_map(|c| c.bytes.clone())
                .collect();
            let mut pos = 0usize;
            while pos + 5 <= stream.len() && header_prefix_ok(&stream[pos..pos + 5]) {
                let len = u16::from_be_bytes([stream[pos + 3], stream[pos + 4]]) as usize;
                cuts[idx(role)].push(pos as u32 + 5);
                pos += 5 + len;
                cuts[idx(role)].push(pos as u32);
            }
        }
        let mut out = Vec::new();
        for c in chunks {
            let end = c.stream_offset + c.bytes.len() as u32;
            let mut start = c.stream_offset;
            let inner = cuts[idx(c.sender)]
                .iter()
                .copied()
                .filter(|&x| x > c.stream_offset && x < end);
            for cut in inner.chain([end]) {
                let a = (start - c.stream_offset) as usize;
                let b = (cut - c.stream_offset) as usize;
                out.push(Owned {
                    stream_offset: start,
                    flags: if cut == end { c.flags } else { 0 },
                    bytes: c.bytes[a..b].to_vec(),
                    ..c.clone()
                });
                start = cut;
            }
        }
        out
    }

    /// Re-frames each chunk's plaintext handshake records (before its
    /// sender's ChangeCipherSpec) into records of at most `max` body bytes,
    /// so handshake messages span records. Chunks must hold whole records.
    fn refragment(chunks: &[Owned], max: usize) -> Vec<Owned> {
        let mut ccs = [false; 2];
        let mut offsets = [0u32; 2];
        let mut out = Vec::new();
        for c in chunks {
            let mut bytes = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let flush = |pending: &mut Vec<u8>, bytes: &mut Vec<u8>| {
                for frag in pending.chunks(max) {
                    bytes.extend([22, 3, 3]);
                    bytes.extend((frag.len() as u16).to_be_bytes());
                    bytes.extend(frag);
                }
                pending.clear();
            };
            let mut pos = 0;
            while pos < c.bytes.len() {
                let h = &c.bytes[pos..pos + 5];
                let len = u16::from_be_bytes([h[3], h[4]]) as usize;
                let body = &c.bytes[pos + 5..pos + 5 + len];
                if h[0] == 22 && !ccs[idx(c.sender)] {
                    pending.extend(body);
                } else {
                    flush(&mut pending, &mut bytes);
                    bytes.extend(&c.bytes[pos..pos + 5 + len]);
                }
                ccs[idx(c.sender)] |= h[0] == 20;
                pos += 5 + len;
            }
            flush(&mut pending, &mut bytes);
            let n = bytes.len() as u32;
            out.push(Owned {
                stream_offset: offsets[idx(c.sender)],
                bytes,
                ..c.clone()
            });
            offsets[idx(c.sender)] += n;
        }
        out
    }

    /// xorshift64: deterministic randomness without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn variants(chunks: &[Owned], prefix: &str) -> Vec<(String, Vec<Owned>)> {
        let mut v = vec![
            (prefix.to_string(), chunks.to_vec()),
            (format!("{prefix}, byte by byte"), split(chunks, || 1)),
        ];
        for seed in [1u64, 7, 1234] {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let pieces = split(chunks, || 1 + rng.below(64));
            v.push((format!("{prefix}, random pieces (seed {seed})"), pieces));
        }
        v
    }

    /// Runs a fixture in every chunking and checks that each group of
    /// chunkings of the same syscalls yields identical facts, then applies
    /// `check` to each group. Groups: the relay's chunks as syscalls (raw and
    /// split like OpenSSL reads), and what the kernel's record walker makes
    /// of both.
    fn check_fixture(text: &str, check: impl Fn(&TlsFacts, WireProgress, &str)) {
        let raw = load(text);
        let reads = openssl_reads(&raw);
        let mut raw_group = variants(&raw, "relay chunks");
        raw_group.extend(variants(&reads, "openssl-style reads"));
        let groups = [
            raw_group,
            variants(&kernel(&raw), "kernel events of relay chunks"),
            variants(&kernel(&reads), "kernel events of openssl-style reads"),
        ];
        for group in groups {
            let (name0, chunks0) = &group[0];
            let (facts0, progress0) = run(chunks0);
            check(&facts0, progress0, name0);
            for (name, chunks) in &group[1..] {
                let (facts, progress) = run(chunks);
                assert_eq!(facts, facts0, "{name} differs from {name0}");
                assert_eq!(progress, progress0, "{name} differs from {name0}");
            }
        }
    }

    fn messages(f: &TlsFacts) -> Vec<(Role, &str)> {
        f.messages
            .iter()
            .map(|m| (m.sender, m.message.as_str()))
            .collect()
    }

    fn has_anomaly(f: &TlsFacts, needle: &str) -> bool {
        f.anomalies.iter().any(|a| a.contains(needle))
    }

    fn is_hex64(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
    }

    #[test]
    fn tls12_success_with_chain() {
        let first_client_time = load(TLS12_OK_CHAIN)[0].time;
        check_fixture(TLS12_OK_CHAIN, |f, p, name| {
            assert_eq!(p, WireProgress::Completed, "{name}");
            assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
            assert_eq!(f.sni.as_deref(), Some("server.test"));
            assert_eq!(f.offered_versions, ["TLS 1.2"]);
            assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.2"));
            let ch = f.client_hello.as_ref().unwrap();
            assert_eq!(ch.time, Some(first_client_time));
            assert_eq!(ch.legacy_version, "TLS 1.2");
            assert!(ch.supported_versions.is_empty());
            assert_eq!(
                ch.cipher_suites[0],
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
            );
            assert_eq!(
                ch.cipher_suites.last().unwrap(),
                "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
            );
            assert_eq!(ch.supported_groups[..2], ["x25519", "secp256r1"]);
            assert_eq!(ch.signature_algorithms[0], "ecdsa_secp256r1_sha256");
            assert!(
                ch.signature_algorithms
                    .iter()
                    .any(|s| s == "rsa_pss_rsae_sha256")
            );
            assert!(is_hex64(&ch.random));
            let sh = f.server_hello.as_ref().unwrap();
            assert_eq!(sh.version, "TLS 1.2");
            assert_eq!(sh.cipher_suite, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
            assert!(!sh.hello_retry_request);
            assert!(is_hex64(&sh.random) && sh.random != ch.random);
            assert_eq!(f.server_certificates.len(), 2);
            let (leaf, ca) = (&f.server_certificates[0], &f.server_certificates[1]);
            assert_eq!(leaf.subject, "CN=server.test");
            assert_eq!(leaf.issuer, "O=tlsdoctor test, CN=tlsdoctor Test CA");
            assert_eq!(leaf.sans, ["server.test"]);
            assert!(!leaf.is_ca);
            assert_eq!(ca.subject, ca.issuer);
            assert!(ca.is_ca && ca.self_signed);
            assert!(!f.certificate_requested);
            assert_eq!(f.client_certificate_count, None);
            assert!(f.alert.is_none() && f.alerts.is_empty() && f.non_tls.is_none());
            assert_eq!(
                messages(f),
                [
                    (C, "ClientHello"),
                    (S, "ServerHello"),
                    (S, "Certificate"),
                    (S, "ServerKeyExchange"),
                    (S, "ServerHelloDone"),
                    (C, "ClientKeyExchange"),
                    (C, "ChangeCipherSpec"),
                    (S, "NewSessionTicket"),
                    (S, "ChangeCipherSpec"),
                ]
            );
            let enc: Vec<_> = f
                .encrypted_records
                .iter()
                .map(|r| (r.sender, r.content_type, r.probable_alert))
                .collect();
            // Finished of each side, the client's data, then both
            // close_notify alerts (encrypted, type 21 kept).
            assert_eq!(
                enc,
                [
                    (C, 22, false),
                    (S, 22, false),
                    (C, 23, false),
                    (C, 21, true),
                    (S, 21, true)
                ],
                "{name}"
            );
        });
    }

    #[test]
    fn tls13_success_with_alpn() {
        check_fixture(TLS13_OK, |f, p, name| {
            assert_eq!(p, WireProgress::Completed, "{name}");
            assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
            assert_eq!(f.sni.as_deref(), Some("server.test"));
            assert_eq!(f.offered_versions, ["TLS 1.3"]);
            assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
            let ch = f.client_hello.as_ref().unwrap();
            assert_eq!(ch.legacy_version, "TLS 1.2");
            assert_eq!(ch.supported_versions, ["TLS 1.3"]);
            assert_eq!(ch.alpn, ["h2", "http/1.1"]);
            assert_eq!(
                ch.cipher_suites[..3],
                [
                    "TLS_AES_256_GCM_SHA384",
                    "TLS_CHACHA20_POLY1305_SHA256",
                    "TLS_AES_128_GCM_SHA256"
                ]
            );
            let sh = f.server_hello.as_ref().unwrap();
            assert_eq!(sh.version, "TLS 1.3");
            assert_eq!(sh.cipher_suite, "TLS_AES_256_GCM_SHA384");
            // TLS 1.3 sends ALPN and certificates encrypted.
            assert_eq!(sh.alpn, None);
            assert!(f.server_certificates.is_empty());
            assert_eq!(
                messages(f),
                [
                    (C, "ClientHello"),
                    (S, "ServerHello"),
                    (S, "ChangeCipherSpec"),
                    (C, "ChangeCipherSpec"),
                ]
            );
            assert!(f.alerts.is_empty());
            assert!(f.encrypted_records.iter().all(|r| r.content_type == 23));
            assert!(f.encrypted_records.iter().any(|r| r.sender == S));
            // The client's Finished (69 bytes with SHA-384), and its
            // close_notify at the end (19 bytes, a probable alert).
            let client: Vec<_> = f
                .encrypted_records
                .iter()
                .filter(|r| r.sender == C)
                .collect();
            assert_eq!((client[0].length, client[0].probable_alert), (69, false));
            let last = client.last().unwrap();
            assert_eq!((last.length, last.probable_alert), (19, true), "{name}");
        });
    }

    #[test]
    fn tls12_client_rejects_untrusted_ca() {
        check_fixture(TLS12_UNKNOWN_CA, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            let alert = f.alert.as_ref().unwrap();
            assert_eq!(alert.sender, C);
            assert_eq!(
                (alert.level.as_str(), alert.description.as_str(), alert.code),
                ("fatal", "unknown_ca", 48)
            );
            assert_eq!(f.alerts.len(), 1);
            assert_eq!(f.server_certificates.len(), 2);
            assert_eq!(
                f.server_certificates[0].common_name.as_deref(),
                Some("server.test")
            );
            assert_eq!(messages(f).last(), Some(&(S, "ServerHelloDone")));
            assert!(f.encrypted_records.is_empty());
            assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
        });
    }

    #[test]
    fn tls13_client_rejects_untrusted_ca_in_clear() {
        check_fixture(TLS13_UNKNOWN_CA, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
            let alert = f.alert.as_ref().unwrap();
            assert_eq!(
                (alert.sender, alert.description.as_str(), alert.code),
                (C, "unknown_ca", 48)
            );
            assert_eq!(
                messages(f),
                [
                    (C, "ClientHello"),
                    (S, "ServerHello"),
                    (S, "ChangeCipherSpec")
                ]
            );
            // The server's encrypted flight; nothing encrypted from the client.
            assert!(!f.encrypted_records.is_empty());
            assert!(f.encrypted_records.iter().all(|r| r.sender == S));
            assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
        });
    }

    #[test]
    fn protocol_version_mismatch() {
        check_fixture(VERSION_MISMATCH, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            assert_eq!(f.offered_versions, ["TLS 1.2"]);
            assert_eq!(f.negotiated_version, None);
            assert!(f.server_hello.is_none());
            let alert = f.alert.as_ref().unwrap();
            assert_eq!(
                (
                    alert.sender,
                    alert.level.as_str(),
                    alert.description.as_str(),
                    alert.code
                ),
                (S, "fatal", "protocol_version", 70)
            );
            assert_eq!(messages(f), [(C, "ClientHello")]);
        });
    }

    #[test]
    fn no_shared_cipher() {
        check_fixture(NO_SHARED_CIPHER, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            let ch = f.client_hello.as_ref().unwrap();
            assert_eq!(
                ch.cipher_suites,
                [
                    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                    "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"
                ]
            );
            assert!(f.server_hello.is_none());
            let alert = f.alert.as_ref().unwrap();
            assert_eq!(
                (alert.sender, alert.description.as_str(), alert.code),
                (S, "handshake_failure", 40)
            );
        });
    }

    #[test]
    fn tls12_mtls_client_sends_no_certificate() {
        check_fixture(TLS12_MTLS_NO_CERT, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            assert!(f.certificate_requested);
            assert_eq!(f.client_certificate_count, Some(0));
            assert_eq!(f.server_certificates.len(), 2);
            let alert = f.alert.as_ref().unwrap();
            assert_eq!(
                (alert.sender, alert.description.as_str(), alert.code),
                (S, "handshake_failure", 40)
            );
            let m = messages(f);
            assert!(m.contains(&(S, "CertificateRequest")));
            let client: Vec<_> = m.iter().filter(|(s, _)| *s == C).map(|(_, n)| *n).collect();
            assert_eq!(
                client,
                [
                    "ClientHello",
                    "Certificate",
                    "ClientKeyExchange",
                    "ChangeCipherSpec"
                ]
            );
            // The client's encrypted Finished; the server never switched.
            assert_eq!(f.encrypted_records.len(), 1);
            assert_eq!(
                (
                    f.encrypted_records[0].sender,
                    f.encrypted_records[0].content_type
                ),
                (C, 22)
            );
        });
    }

    #[test]
    fn tls13_client_first_record_sizes() {
        // JSSE's padded alert, OpenSSL's plain one: alerts.
        assert!(tls13_client_first_record_is_alert(35));
        assert!(tls13_client_first_record_is_alert(19));
        // Empty Certificate (GCM/ChaCha, CCM_8) and every Finished size: not.
        for len in [25, 17, 45, 53, 61, 69, 900] {
            assert!(!tls13_client_first_record_is_alert(len), "{len}");
        }
    }

    #[test]
    fn tls13_mtls_rejection_is_an_encrypted_alert() {
        check_fixture(TLS13_MTLS_NO_CERT, |f, p, name| {
            // By the wire both sides went past the handshake; the server's
            // certificate_required comes encrypted afterwards and only its
            // length gives it away.
            assert_eq!(p, WireProgress::Completed, "{name}");
            assert!(!f.certificate_requested, "encrypted in TLS 1.3");
            assert_eq!(f.client_certificate_count, None);
            assert!(f.alerts.is_empty());
            let last = f.encrypted_records.last().unwrap();
            assert_eq!(
                (last.sender, last.length, last.probable_alert),
                (S, 19, true),
                "{name}"
            );
        });
    }

    #[test]
    fn tls13_hello_retry_request_is_not_encryption_start() {
        check_fixture(TLS13_HRR, |f, p, name| {
            assert_eq!(p, WireProgress::Completed, "{name}");
            assert!(f.anomalies.is_empty(), "{name}: {:?}", f.anomalies);
            assert_eq!(
                messages(f),
                [
                    (C, "ClientHello"),
                    (S, "HelloRetryRequest"),
                    (S, "ChangeCipherSpec"),
                    (C, "ChangeCipherSpec"),
                    (C, "ClientHello"),
                    (S, "ServerHello"),
                ]
            );
            let sh = f.server_hello.as_ref().unwrap();
            assert!(!sh.hello_retry_request);
            assert_eq!(sh.version, "TLS 1.3");
            assert_eq!(f.negotiated_version.as_deref(), Some("TLS 1.3"));
            // The first ClientHello's facts are kept.
            let ch = f.client_hello.as_ref().unwrap();
            assert_eq!(ch.supported_groups[..2], ["x25519", "secp256r1"]);
        });
    }

    #[test]
    fn hello_retry_request_alone_is_flagged() {
        let chunks = load(TLS13_HRR);
        let (f, p) = run(&chunks[..2]);
        assert_eq!(p, WireProgress::InProgress);
        let sh = f.server_hello.unwrap();
        assert!(sh.hello_retry_request);
        assert_eq!(sh.version, "TLS 1.3");
        assert!(f.encrypted_records.is_empty());
    }

    #[test]
    fn plain_http_request_to_tls_server() {
        check_fixture(HTTP_TO_TLS, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            let n = f.non_tls.as_ref().unwrap();
            assert_eq!(n.sender, C);
            assert_eq!(n.kind, "http-request");
            assert_eq!(n.first_bytes, "GET / HTTP/1.1\\r\\nHost: se");
            assert!(f.client_hello.is_none() && f.messages.is_empty());
            assert!(f.anomalies.is_empty(), "{:?}", f.anomalies);
        });
    }

    #[test]
    fn tls_client_to_plain_http_server() {
        check_fixture(TLS_TO_HTTP, |f, p, name| {
            assert_eq!(p, WireProgress::Failed, "{name}");
            let n = f.non_tls.as_ref().unwrap();
            assert_eq!(n.sender, S);
            assert_eq!(n.kind, "http-response");
            assert_eq!(n.first_bytes, "HTTP/1.0 400 Bad request");
            assert_eq!(f.sni.as_deref(), Some("server.test"));
            assert_eq!(messages(f), [(C, "ClientHello")]);
        });
    }

    #[test]
    fn handshake_messages_spanning_records_are_reassembled() {
        for text in ALL_FIXTURES {
            let raw = load(text);
            if raw
                .iter()
                .any(|c| !header_prefix_ok(&c.bytes[..c.bytes.len().min(5)]))
            {
                continue; // not TLS
            }
            let (want, want_p) = run(&raw);
            for max in [1, 3, 50, 1000] {
                let frag = refragment(&raw, max);
                for chunks in [frag.clone(), openssl_reads(&frag), split(&frag, || 7)] {
                    let (got, p) = run(&chunks);
                    assert_eq!(got, want, "fragments of {max} bytes");
                    assert_eq!(p, want_p);
                }
            }
        }
    }

    #[test]
    fn gap_inside_a_record_keeps_record_sync() {
        let mut chunks = load(TLS12_OK_CHAIN);
        // The server's first flight: ServerHello (70 bytes) then the
        // Certificate record. Drop 100 bytes inside the Certificate record.
        let flight = chunks.remove(1);
        assert_eq!(flight.sender, S);
        let mut tail = flight.clone();
        tail.stream_offset = 300;
        tail.bytes = flight.bytes[300..].to_vec();
        let mut head = flight;
        head.bytes.truncate(200);
        chunks.insert(1, tail);
        chunks.insert(1, head);
        let (f, p) = run(&chunks);
        assert!(
            has_anomaly(&f, "server stream: 100 bytes missing at offset 200"),
            "{:?}",
            f.anomalies
        );
        assert!(f.server_certificates.is_empty());
        let server: Vec<_> = messages(&f)
            .into_iter()
            .filter(|m| m.0 == S)
            .map(|m| m.1)
            .collect();
        assert_eq!(
            server,
            [
                "ServerHello",
                "ServerKeyExchange",
                "ServerHelloDone",
                "NewSessionTicket",
                "ChangeCipherSpec"
            ]
        );
        assert_eq!(p, WireProgress::Completed);
    }

    #[test]
    fn gap_inside_a_fragmented_message_skips_just_that_message() {
        let mut chunks = refragment(&load(TLS12_OK_CHAIN), 100);
        let flight = chunks.remove(1);
        // The flight's handshake messages now run through 105-byte records
        // (ServerHello is the first 69 bytes). Drop 30 bytes in the body of
        // the fourth record: inside the Certificate message.
        let gap_at = 3 * 105 + 5 + 20;
        let mut tail = flight.clone();
        tail.stream_offset = gap_at + 30;
        tail.bytes = flight.bytes[gap_at as usize + 30..].to_vec();
        let mut head = flight;
        head.bytes.truncate(gap_at as usize);
        chunks.insert(1, tail);
        chunks.insert(1, head);
        let (f, _) = run(&chunks);
        assert!(
            has_anomaly(&f, "server stream: Certificate message incomplete"),
            "{:?}",
            f.anomalies
        );
        let server: Vec<_> = messages(&f)
            .into_iter()
            .filter(|m| m.0 == S)
            .map(|m| m.1)
            .collect();
        assert_eq!(
            server[..3],
            ["ServerHello", "ServerKeyExchange", "ServerHelloDone"]
        );
        assert!(f.server_certificates.is_empty());
    }

    #[test]
    fn gap_of_whole_records_resynchronises_on_the_next_header() {
        let mut chunks = load(TLS12_OK_CHAIN);
        let flight = chunks.remove(1);
        let cert_len = u16::from_be_bytes([flight.bytes[73], flight.bytes[74]]) as usize;
        let next = 70 + 5 + cert_len;
        let mut tail = flight.clone();
        tail.stream_offset = next as u32;
        tail.bytes = flight.bytes[next..].to_vec();
        let mut head = flight;
        head.bytes.truncate(70);
        chunks.insert(1, tail);
        chunks.insert(1, head);
        let (f, p) = run(&chunks);
        assert!(has_anomaly(&f, "resynchronised"), "{:?}", f.anomalies);
        assert!(messages(&f).contains(&(S, "ServerHelloDone")));
        assert!(f.server_certificates.is_empty());
        assert_eq!(p, WireProgress::Completed);
    }

    #[test]
    fn gap_across_a_header_loses_the_direction() {
        let mut chunks = load(TLS12_OK_CHAIN);
        let flight = chunks.remove(1);
        let mut tail = flight.clone();
        tail.stream_offset = 1000;
        tail.bytes = flight.bytes[1000..].to_vec();
        let mut head = flight;
        head.bytes.truncate(200);
        chunks.insert(1, tail);
        chunks.insert(1, head);
        let (f, p) = run(&chunks);
        assert!(
            has_anomaly(&f, "record boundaries lost"),
            "{:?}",
            f.anomalies
        );
        let server: Vec<_> = messages(&f).into_iter().filter(|m| m.0 == S).collect();
        assert_eq!(server, [(S, "ServerHello")]);
        // The client side is still parsed.
        assert!(messages(&f).contains(&(C, "ChangeCipherSpec")));
        assert_eq!(p, WireProgress::InProgress);
    }

    #[test]
    fn first_chunk_after_missing_start() {
        let chunks = load(TLS12_OK_CHAIN);
        // Starts at the server's second flight: a record header.
        let mut late = chunks[3].clone();
        late.stream_offset += 10;
        let (f, _) = run(&[late.clone()]);
        assert!(has_anomaly(&f, "bytes missing at offset 0"));
        assert!(has_anomaly(&f, "resynchronised"));
        assert_eq!(
            messages(&f),
            [(S, "NewSessionTicket"), (S, "ChangeCipherSpec")]
        );
        assert!(f.non_tls.is_none());
        // Starts mid-record: nothing can be framed, and it is not "not TLS".
        late.bytes.remove(0);
        let (f, _) = run(&[late]);
        assert!(has_anomaly(&f, "record boundaries lost"));
        assert!(f.messages.is_empty() && f.non_tls.is_none());
    }

    #[test]
    fn repeated_bytes_are_ignored() {
        let chunks = load(TLS12_OK_CHAIN);
        let (want, _) = run(&chunks);
        let mut doubled = Vec::new();
        for c in &chunks {
            doubled.push(c.clone());
            doubled.push(c.clone());
            // And a partial overlap that adds nothing new.
            let mut part = c.clone();
            part.stream_offset += 1;
            part.bytes.remove(0);
            doubled.push(part);
        }
        let (mut got, _) = run(&doubled);
        assert!(has_anomaly(&got, "repeats bytes already seen"));
        got.anomalies.clear();
        assert_eq!(got, want);
    }

    #[test]
    fn garbage_after_records_is_an_anomaly_not_non_tls() {
        let mut chunks = load(TLS12_OK_CHAIN);
        chunks.truncate(1);
        let mut garbage = chunks[0].clone();
        garbage.stream_offset = garbage.bytes.len() as u32;
        garbage.bytes = b"\x00\x01garbage-garbage".to_vec();
        chunks.push(garbage);
        let (f, p) = run(&chunks);
        assert!(f.non_tls.is_none());
        assert!(
            has_anomaly(&f, "malformed record header 00 at offset 208"),
            "{:?}",
            f.anomalies
        );
        assert_eq!(f.sni.as_deref(), Some("server.test"));
        assert_eq!(p, WireProgress::InProgress);
    }

    fn chunk(sender: Role, offset: u32, flags: u8, bytes: &[u8]) -> Owned {
        Owned {
            time: base_time(),
            sender,
            stream_offset: offset,
            flags,
            bytes: bytes.to_vec(),
        }
    }

    #[test]
    fn not_tls_chunks_are_described() {
        let cases: [(&[u8], &str, &str); 5] = [
            (
                b"GET / HTTP/1.1\r\nHost: ex",
                "http-request",
                "GET / HTTP/1.1\\r\\nHost: ex",
            ),
            (
                b"HTTP/1.1 400 Bad Request",
                "http-response",
                "HTTP/1.1 400 Bad Request",
            ),
            (
                b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",
                "sslv2-hello",
                "\\x80.\\x01\\x00\\x02\\x00\\x15\\x00\\x00\\x00\\x10",
            ),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                "unknown",
                "SSH-2.0-OpenSSH_9.6\\r\\n",
            ),
            (b"\x00\\\t\xff", "unknown", "\\x00\\\\\\t\\xff"),
        ];
        for (bytes, kind, first) in cases {
            for flags in [DATA_FLAG_NOT_TLS, 0] {
                let (f, p) = run(&[chunk(S, 0, flags, bytes)]);
                assert_eq!(p, WireProgress::Failed);
                let n = f.non_tls.unwrap();
                assert_eq!(
                    (n.sender, n.kind.as_str(), n.first_bytes.as_str()),
                    (S, kind, first)
                );
            }
        }
        // More than the snippet is cut, whichever way it arrives.
        let long = b"POST /api/v1/items HTTP/1.1\r\n";
        let one = run(&[chunk(C, 0, 0, long)]).0.non_tls.unwrap();
        let bytewise = run(&split(&[chunk(C, 0, 0, long)], || 1))
            .0
            .non_tls
            .unwrap();
        assert_eq!(one, bytewise);
        assert_eq!(one.first_bytes, "POST /api/v1/items HTTP/");
    }

    #[test]
    fn headers_only_chunks_after_application_data() {
        let chunks = load(TLS13_OK);
        // Client hello, then the server's flight.
        let mut w = assembler(&chunks[..2]);
        // The client's CCS and the header of its Finished, then the kernel
        // reports only headers: one alert-sized record.
        let mut ccs_fin = vec![20, 3, 3, 0, 1, 1];
        ccs_fin.extend([23, 3, 3, 0, 53]);
        let offset = chunks[0].bytes.len() as u32;
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: offset,
            flags: DATA_FLAG_APPDATA,
            bytes: &ccs_fin,
        });
        assert_eq!(w.progress(), WireProgress::Completed);
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: offset + 64,
            flags: DATA_FLAG_HEADERS_ONLY,
            bytes: &[23, 3, 3, 0, 19],
        });
        // Bytes that are not headers after the application data are not parsed.
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: offset + 200,
            flags: 0,
            bytes: &[22, 3, 3, 0, 1, 1],
        });
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: offset + 300,
            flags: DATA_FLAG_HEADERS_ONLY,
            bytes: &[23, 3, 3, 0],
        });
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: offset + 400,
            flags: DATA_FLAG_HEADERS_ONLY,
            bytes: &[99, 3, 3, 0, 1],
        });
        let f = w.facts();
        let client: Vec<_> = f
            .encrypted_records
            .iter()
            .filter(|r| r.sender == C)
            .map(|r| (r.content_type, r.length, r.probable_alert))
            .collect();
        assert_eq!(client, [(23, 53, false), (23, 19, true)]);
        assert!(has_anomaly(f, "is not whole headers"));
        assert!(has_anomaly(
            f,
            "malformed record header 6303030001 in a headers-only chunk"
        ));
        assert_eq!(messages(f).last(), Some(&(C, "ChangeCipherSpec")));
    }

    #[test]
    fn tls12_headers_only_alert_is_probable_alert() {
        let chunks = load(TLS12_OK_CHAIN);
        let mut w = assembler(&chunks[..4]);
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: 999,
            flags: DATA_FLAG_HEADERS_ONLY,
            bytes: &[21, 3, 3, 0, 26],
        });
        let last = w.facts().encrypted_records.last().unwrap();
        assert_eq!(
            (last.sender, last.content_type, last.probable_alert),
            (C, 21, true)
        );
        // Both sent CCS and encrypted Finished.
        assert_eq!(w.progress(), WireProgress::Completed);
    }

    #[test]
    fn budget_cut_keeps_whole_certificates() {
        let chunks = load(TLS12_OK_CHAIN);
        let flight = &chunks[1];
        // ServerHello record (70), Certificate record header (5), message
        // header (4), list length (3), then the leaf's length and DER.
        let leaf_len =
            u32::from_be_bytes([0, flight.bytes[82], flight.bytes[83], flight.bytes[84]]) as usize;
        let cut = 85 + leaf_len + 10;
        for pieces in [1, 7] {
            let mut cut_flight = flight.clone();
            cut_flight.bytes.truncate(cut);
            cut_flight.flags = DATA_FLAG_BUDGET;
            let chunks = split(&[chunks[0].clone(), cut_flight], || pieces);
            let mut w = assembler(&chunks);
            // Nothing after the cut is parsed.
            w.push(Chunk {
                time: base_time(),
                sender: S,
                stream_offset: cut as u32,
                flags: 0,
                bytes: &flight.bytes[cut..],
            });
            let mut f = w.facts().clone();
            f.parse_certificates(&mut CertificateCache::default());
            let f = &f;
            assert_eq!(f.server_certificates.len(), 1);
            assert_eq!(f.server_certificates[0].subject, "CN=server.test");
            assert!(has_anomaly(
                f,
                &format!("server stream: capture cut at the budget after {cut} bytes")
            ));
            assert!(has_anomaly(f, "1 whole certificate(s) recovered"));
            assert_eq!(
                messages(f),
                [(C, "ClientHello"), (S, "ServerHello"), (S, "Certificate")]
            );
        }
    }

    #[test]
    fn read_failed_is_an_anomaly() {
        let mut chunks = load(TLS12_OK_CHAIN);
        chunks[0].flags = DATA_FLAG_READ_FAILED;
        let (f, _) = run(&chunks[..1]);
        assert!(has_anomaly(
            &f,
            "client stream: the kernel could not read some bytes"
        ));
        assert_eq!(f.sni.as_deref(), Some("server.test"));
    }

    fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
        let mut r = vec![content_type, 3, 3];
        r.extend((body.len() as u16).to_be_bytes());
        r.extend(body);
        r
    }

    #[test]
    fn zero_length_and_odd_records() {
        let mut bytes = record(22, &[]);
        bytes.extend(record(21, &[]));
        bytes.extend(record(21, &[1, 0, 2]));
        bytes.extend(record(23, &[]));
        bytes.extend(record(24, &[]));
        bytes.extend(record(20, &[]));
        let (f, _) = run(&[chunk(S, 0, 0, &bytes)]);
        assert!(has_anomaly(&f, "alert record of 0 bytes"));
        assert!(has_anomaly(&f, "alert record of 3 bytes"));
        assert!(has_anomaly(&f, "malformed ChangeCipherSpec"));
        assert_eq!(f.alerts.len(), 1);
        assert_eq!(
            (f.alerts[0].level.as_str(), f.alerts[0].description.as_str()),
            ("warning", "close_notify")
        );
        assert!(f.alert.is_none());
        assert_eq!(f.encrypted_records.len(), 1);
    }

    #[test]
    fn maximum_and_oversized_records() {
        let body = vec![0u8; MAX_RECORD_LEN];
        let (f, _) = run(&split(&[chunk(S, 0, 0, &record(23, &body))], || 4096));
        assert_eq!(f.encrypted_records[0].length as usize, MAX_RECORD_LEN);
        assert!(f.anomalies.is_empty());
        // A full-size plaintext handshake record of HelloRequests.
        let (f, _) = run(&[chunk(S, 0, 0, &record(22, &body))]);
        assert_eq!(f.messages.len(), MAX_MESSAGES);
        assert!(has_anomaly(
            &f,
            "handshake messages; the rest are not listed"
        ));
        let mut too_big = record(22, &body);
        too_big.push(0);
        too_big[3..5].copy_from_slice(&(MAX_RECORD_LEN as u16 + 1).to_be_bytes());
        let mut chunks = vec![chunk(C, 0, 0, &load(TLS12_OK_CHAIN)[0].bytes)];
        chunks.push(chunk(C, chunks[0].bytes.len() as u32, 0, &too_big));
        let (f, _) = run(&chunks);
        assert!(
            has_anomaly(&f, "malformed record header 1603034801"),
            "{:?}",
            f.anomalies
        );
        assert!(f.client_hello.is_some());
    }

    #[test]
    fn absurd_handshake_lengths_are_skipped() {
        // A Certificate claiming 16 MiB, then a ServerHelloDone that is part
        // of the claimed bytes and so skipped too.
        let mut bytes = record(22, &[11, 0xff, 0xff, 0xff, 1, 2, 3]);
        bytes.extend(record(22, &[14, 0, 0, 0]));
        let (f, _) = run(&split(&[chunk(S, 0, 0, &bytes)], || 3));
        assert!(has_anomaly(
            &f,
            "Certificate message claims 16777215 bytes, more than the 128 KiB kept"
        ));
        assert!(f.messages.is_empty());
        // Just over the limit, then a real message once the claim is used up.
        let claim = MAX_HANDSHAKE_BUFFER - 3;
        let mut body = vec![11];
        body.extend(&(claim as u32).to_be_bytes()[1..]);
        body.resize(MAX_RECORD_LEN, 0);
        let mut bytes = record(22, &body);
        let mut left = claim - (MAX_RECORD_LEN - 4);
        while left > 0 {
            let n = left.min(MAX_RECORD_LEN);
            bytes.extend(record(22, &vec![0; n]));
            left -= n;
        }
        bytes.extend(record(22, &[14, 0, 0, 0]));
        let (f, _) = run(&[chunk(S, 0, 0, &bytes)]);
        assert_eq!(messages(&f), [(S, "ServerHelloDone")]);
    }

    #[test]
    fn a_record_of_tiny_messages_is_read_whole() {
        // 4000 empty ServerHelloDone messages in one 16000-byte record:
        // every one is framed (the list is capped), none is lost or
        // misread, and the buffer is left empty for what follows.
        let mut body = Vec::new();
        for _ in 0..4000 {
            body.extend([14, 0, 0, 0]);
        }
        let mut w = WireAssembler::new();
        w.push(Chunk {
            time: base_time(),
            sender: S,
            stream_offset: 0,
            flags: 0,
            bytes: &record(22, &body),
        });
        let f = w.facts();
        assert_eq!(f.messages.len(), MAX_MESSAGES);
        assert!(f.messages.iter().all(|m| m.message == "ServerHelloDone"));
        assert!(w.server.hs.is_empty());
        assert!(has_anomaly(f, "more than 64 handshake messages"), "{f:#?}");
    }

    #[test]
    fn lists_are_bounded() {
        let mut bytes = Vec::new();
        for _ in 0..100 {
            bytes.extend(record(21, &[1, 0]));
        }
        for _ in 0..100 {
            bytes.extend(record(23, &[0; 3]));
        }
        let (f, _) = run(&[chunk(C, 0, 0, &bytes)]);
        assert_eq!(f.alerts.len(), MAX_ALERTS);
        assert_eq!(f.encrypted_records.len(), MAX_ENCRYPTED_RECORDS);
        // Many distinct anomalies: each repeated chunk names its offset.
        let mut w = WireAssembler::new();
        w.push(Chunk {
            time: base_time(),
            sender: C,
            stream_offset: 0,
            flags: 0,
            bytes: &bytes,
        });
        for i in 0..100u32 {
            w.push(Chunk {
                time: base_time(),
                sender: C,
                stream_offset: i,
                flags: 0,
                bytes: &[21],
            });
        }
        let f = w.facts();
        assert_eq!(f.anomalies.len(), MAX_ANOMALIES + 1);
        assert_eq!(f.anomalies.last().unwrap(), "more anomalies not listed");
    }

    #[test]
    fn names() {
        assert_eq!(alert_name(116), "certificate_required");
        assert_eq!(alert_name(42), "bad_certificate");
        assert_eq!(alert_name(45), "certificate_expired");
        assert_eq!(alert_name(80), "internal_error");
        assert_eq!(alert_name(51), "decrypt_error");
        assert_eq!(alert_name(200), "unknown(200)");
        assert_eq!(version_name(0x0300), "SSL 3.0");
        assert_eq!(version_name(0x0301), "TLS 1.0");
        assert_eq!(version_name(0x0302), "TLS 1.1");
        assert_eq!(version_name(0xfefd), "0xfefd");
        assert_eq!(cipher_name(0x1301), "TLS_AES_128_GCM_SHA256");
        assert_eq!(cipher_name(0xfefe), "0xfefe");
        assert_eq!(group_name(0x11ec), "X25519MLKEM768");
        assert_eq!(signature_scheme_name(0x0403), "ecdsa_secp256r1_sha256");
        assert_eq!(signature_scheme_name(0xeeee), "0xeeee");
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && !is_grease(0x0a1a));
    }

    #[test]
    fn grease_values_are_skipped() {
        // A ClientHello with GREASE in ciphers, groups and versions.
        let mut ch = vec![3, 3];
        ch.extend([7; 32]);
        ch.push(0);
        ch.extend([0, 4, 0x1a, 0x1a, 0x13, 0x01]);
        ch.extend([1, 0]);
        let mut ext = Vec::new();
        ext.extend([0, 43, 0, 5, 4, 0x2a, 0x2a, 3, 4]);
        ext.extend([0, 10, 0, 6, 0, 4, 0x3a, 0x3a, 0, 29]);
        ch.extend((ext.len() as u16).to_be_bytes());
        ch.extend(ext);
        let mut msg = vec![1, 0];
        msg.extend((ch.len() as u16).to_be_bytes());
        msg.extend(ch);
        let (f, _) = run(&[chunk(C, 0, 0, &record(22, &msg))]);
        let facts = f.client_hello.unwrap();
        assert_eq!(facts.cipher_suites, ["TLS_AES_128_GCM_SHA256"]);
        assert_eq!(facts.supported_versions, ["TLS 1.3"]);
        assert_eq!(facts.supported_groups, ["x25519"]);
        assert_eq!(facts.random, "07".repeat(32));
        assert_eq!(f.offered_versions, ["TLS 1.3"]);
        assert_eq!(f.sni, None);
    }

    /// Pushes chunks with arbitrary contents, offsets and flags: nothing may
    /// panic and the lists stay bounded.
    fn push_anything(rng: &mut Rng, w: &mut WireAssembler, data: &[u8], sender: Role) {
        let flags = [
            0,
            0,
            0,
            DATA_FLAG_APPDATA,
            DATA_FLAG_NOT_TLS,
            DATA_FLAG_BUDGET,
            DATA_FLAG_HEADERS_ONLY,
            DATA_FLAG_READ_FAILED,
            0xff,
        ];
        let mut pos = 0;
        let mut offset = 0u32;
        while pos < data.len() {
            let n = (1 + rng.below(300)).min(data.len() - pos);
            let f = if rng.below(8) == 0 {
                flags[rng.below(flags.len())]
            } else {
                0
            };
            if rng.below(16) == 0 {
                offset = offset.wrapping_add(rng.next() as u32 % 64).wrapping_sub(32);
            }
            w.push(Chunk {
                time: base_time(),
                sender,
                stream_offset: offset,
                flags: f,
                bytes: &data[pos..pos + n],
            });
            offset = offset.wrapping_add(n as u32);
            pos += n;
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(0x1234_5678_9abc_def1);
        for i in 0..400 {
            let len = rng.below(3000);
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half the time, start like a TLS record so parsing goes deeper.
            if i % 2 == 0 && data.len() > 9 {
                data[..5].copy_from_slice(&[22, 3, 1, (len >> 8) as u8, len as u8]);
                data[5] = [1, 2, 11, 13, 14, 4, 0][rng.below(7)];
            }
            let mut w = WireAssembler::new();
            let sender = if i % 3 == 0 { S } else { C };
            push_anything(&mut rng, &mut w, &data, sender);
            let _ = w.progress();
            let f = w.into_facts();
            assert!(f.anomalies.len() <= MAX_ANOMALIES + 1);
            assert!(f.messages.len() <= MAX_MESSAGES);
            assert!(
                f.non_tls
                    .as_ref()
                    .is_none_or(|n| n.first_bytes.len() <= 4 * NON_TLS_SNIPPET)
            );
        }
    }

    #[test]
    fn mutated_handshakes_never_panic() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for text in ALL_FIXTURES {
            let raw = load(text);
            for _ in 0..60 {
                let mut w = WireAssembler::new();
                for c in &raw {
                    let mut bytes = c.bytes.clone();
                    for _ in 0..rng.below(6) {
                        let at = rng.below(bytes.len());
                        bytes[at] = rng.next() as u8;
                    }
                    if rng.below(10) == 0 {
                        bytes.truncate(rng.below(bytes.len() + 1));
                    }
                    let n = 1 + rng.below(bytes.len().max(1));
                    let mut off = c.stream_offset;
                    for piece in bytes.chunks(n) {
                        w.push(Chunk {
                            time: c.time,
                            sender: c.sender,
                            stream_offset: off,
                            flags: 0,
                            bytes: piece,
                        });
                        off += piece.len() as u32;
                    }
                }
                let _ = w.progress();
            }
            // And through the kernel's walker.
            let _ = run(&kernel(&raw));
        }
    }

    #[test]
    fn handshake_bodies_of_random_bytes_never_panic() {
        let mut rng = Rng(42);
        for _ in 0..3000 {
            let ty = [1u8, 2, 11, 13][rng.below(4)];
            let len = rng.below(400);
            let mut msg = vec![ty, 0, (len >> 8) as u8, len as u8];
            msg.extend((0..len).map(|_| rng.next() as u8));
            // Valid-looking prefixes reach the extension and certificate parsers.
            if len > 40 && rng.below(2) == 0 {
                msg[4..6].copy_from_slice(&[3, 3]);
                msg[38] = 0;
            }
            let sender = if ty == 1 { C } else { S };
            let _ = run(&[chunk(sender, 0, 0, &record(22, &msg))]);
        }
    }
}
