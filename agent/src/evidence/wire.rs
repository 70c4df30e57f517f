//! Wire evidence (W): TLS records captured on a socket, reassembled across
//! syscalls and parsed with `tls-parser`.
//!
//! IMPLEMENTATION PENDING (helper): `WireAssembler`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
