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
    SNIType, TlsExtension, TlsMessage, TlsMessageHandshake, parse_tls_client_hello_extensions,
    parse_tls_handshake_client_hello, parse_tls_handshake_msg_certificate,
    parse_tls_handshake_server_hello, parse_tls_message_alert, parse_tls_message_changecipherspec,
    parse_tls_server_hello_extensions,
};

use crate::evidence::Role;
use crate::evidence::certificates::{CertificateCache, CertificateFact};

mod hello;
mod names;
mod stream;
#[cfg(test)]
mod tests;

use hello::{client_hello, server_hello};
use names::*;
pub use names::{cipher_name, known_alert_name, signature_scheme_name};
use stream::Stream;

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
    /// What the first bytes are, e.g. "HTTP GET request", "SSH banner"
    /// ([`crate::evidence::plaintext::describe`]): never the bytes
    /// themselves, which may hold a path, a token or a password.
    #[serde(alias = "first_bytes")]
    pub description: String,
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

    /// The server sent something other than an alert after the client's
    /// first encrypted record that is not one (TLS 1.3: a session ticket or
    /// data after the client's Finished; TLS 1.2: its Finished or data
    /// after the client's Finished): it took the client's side of the
    /// handshake, and both ends were past it. An error either end's TLS
    /// library raises after that is about the connection, not the
    /// handshake (a peer that closes without close_notify).
    pub fn server_answered(&self) -> bool {
        self.shared.server_answered
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
    /// The client has sent an encrypted record that is not a probable
    /// alert once the version was known (not 0-RTT early data).
    client_past_hello: bool,
    /// See [`WireAssembler::server_answered`].
    server_answered: bool,
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
        if !probable_alert {
            self.note_answer(sender);
        }
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

impl Shared {
    /// Follows a non-alert encrypted record for [`WireAssembler::server_answered`].
    /// Only once the ServerHello chose the version: a TLS 1.3 client's
    /// early data goes out before it and is no Finished.
    fn note_answer(&mut self, sender: Role) {
        let version_known =
            self.server_hello_13 || (!self.tls13 && self.facts.negotiated_version.is_some());
        if !version_known {
            return;
        }
        match sender {
            Role::Client => self.client_past_hello = true,
            Role::Server if self.client_past_hello => self.server_answered = true,
            Role::Server => {}
        }
    }
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
                    let text = format!(
                        "server certificate #{index} could not be parsed: {e}",
                        e = crate::text::Chain(&e)
                    );
                    if self.anomalies.len() < MAX_ANOMALIES && !self.anomalies.contains(&text) {
                        self.anomalies.push(text);
                    }
                }
            }
        }
    }
}
