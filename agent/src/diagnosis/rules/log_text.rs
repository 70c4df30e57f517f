//! What a server's error-log line says about a failure: its text (or the
//! OpenSSL reason it quotes) mapped to the catalogue class it indicates.
//! `evidence::logs` reads the lines; this module is the [`Note`] the host
//! state's log followers compute once per line
//! (`diagnosis::host::HostState`).

use crate::catalogue::Cause;
use crate::evidence::logs::{LogLine, Note};

/// The cause `line` indicates. A line continuing another (Apache's "SSL
/// Library Error: ..." after the line it explains) whose line indicated a
/// certificate that failed to load is a load failure too, whatever its
/// reason says (`ee key too small` at load time means the listener never
/// came up).
pub fn cause_of_line(line: &LogLine, continued: Option<&Option<Cause>>) -> Option<Cause> {
    if let Some(&Some(Cause::ServerCannotLoadCertificate)) = continued {
        return Some(Cause::ServerCannotLoadCertificate);
    }
    classify(&line.text)
}

/// [`cause_of_line`] as a log follower's note.
pub const NOTE: Note<Option<Cause>> = cause_of_line;

/// Maps a server's log text (or an OpenSSL reason it quotes) to the cause it
/// indicates. The texts are the server's side of the handshake:
///
/// - Certificate and key load failures (nginx `cannot load certificate`,
///   `SSL_CTX_use_*`, `key values mismatch`, no `ssl_certificate`; Apache
///   AH02565/AH02562/AH02572/AH02312) → server-cannot-load-certificate, even
///   when the reason is a weak key (`ee key too small` at load time means the
///   listener never came up).
/// - X.509 verify errors the server logs with their code: for a client
///   certificate (nginx `client SSL certificate verify error`, Apache
///   `Certificate Verification: Error (n)`) → client-certificate-required
///   (the client's certificate was unacceptable), or weak-crypto-rejected for
///   codes 66–68; for a proxied upstream (nginx `upstream SSL certificate
///   verify error`, Apache `[remote backend]` lines) the code's own cause (10
///   expired, 9 not yet valid, 20/21/2 chain incomplete, 18/19/27 untrusted
///   root, 62/64 hostname).
/// - `certificate verify failed` without a code, on a server, is the
///   server rejecting a client certificate → client-certificate-required
///   (upstream contexts: None, the coded line names the cause).
/// - Alerts the client sent about the server's certificate: `unknown ca`
///   (48) → untrusted-root, though a missing intermediate draws the same
///   alert — the configured chain tells them apart; `certificate unknown`
///   (46, Java's) → untrusted-root likewise; `certificate expired` (45) →
///   certificate-expired; `bad certificate` (42) → hostname-mismatch, the
///   most common sender of 42, though OpenSSL clients also send it for a
///   not-yet-valid or too-weak certificate (check dates and key size);
///   `handshake failure` (40) → no-shared-cipher (also sent by clients that
///   refuse a small DH group).
/// - `wrong version number` on a server: the first record was not TLS of
///   any version — a client speaking plaintext (Apache logs it for any
///   non-HTTP plaintext; nginx hands non-TLS bytes to its HTTP parser and
///   logs it only for a record with a bogus version) → plaintext-to-tls-port.
///   On a client the same text means the opposite (tls-to-plaintext-port);
///   this function reads server logs.
/// - `no suitable signature algorithm`: on Debian's OpenSSL 3 this is what
///   a TLS 1.0/1.1 client gets (those versions need SHA-1 signatures the
///   security level forbids) → protocol-version-mismatch.
/// - `unknown protocol` (an SSLv2-format hello) → protocol-version-mismatch.
pub fn classify(text: &str) -> Option<Cause> {
    classify_lower(&text.to_ascii_lowercase())
}

/// [`classify`] of an already lower-cased text.
fn classify_lower(t: &str) -> Option<Cause> {
    let has = |needles: &[&str]| needles.iter().any(|n| t.contains(n));

    if has(&[
        "cannot load certificate",
        "ssl_ctx_use_privatekey",
        "ssl_ctx_use_certificate",
        "key values mismatch",
        "no \"ssl_certificate\" is defined",
        "ah02565", // certificate and private key do not match
        "ah02562", // failed to configure certificate
        "ah02572", // failed to configure at least one certificate and key
        "ah02312", // fatal error initialising mod_ssl
        "ah02564", // failed to configure encrypted private key
        "ah02203", // init: unable to read pass phrase
        "does not exist or is empty",
        "no certificate assigned",
    ]) {
        return Some(Cause::ServerCannotLoadCertificate);
    }

    // The server as a client: nginx's proxy ("upstream"), Apache's
    // mod_proxy ("[remote backend]").
    let upstream = t.contains("upstream") || t.starts_with("[remote ");
    if let Some(code) = verify_code(t) {
        return if upstream {
            cause_for_verify_code(code)
        } else if matches!(code, 66..=68) {
            Some(Cause::WeakCryptoRejected)
        } else {
            Some(Cause::ClientCertificateRequired)
        };
    }
    if t.contains("upstream ssl certificate does not match") {
        return Some(Cause::HostnameMismatch);
    }

    if has(&[
        "client sent no required ssl certificate",
        "peer did not return a certificate",
        "alert certificate required",
    ]) {
        return Some(Cause::ClientCertificateRequired);
    }
    if has(&[
        "plain http request",
        "http request",
        "https proxy request",
        "http spoken on https port",
        "wrong version number",
    ]) {
        return Some(Cause::PlaintextToTlsPort);
    }
    if has(&[
        "unsupported protocol",
        "no protocols available",
        "alert protocol version",
        "version too low",
        "unknown protocol",
        "no suitable signature algorithm",
    ]) {
        return Some(Cause::ProtocolVersionMismatch);
    }
    if has(&[
        "dh key too small",
        "ee key too small",
        "ca key too small",
        "ca md too weak",
        "key too weak",
        "digest algorithm too weak",
        "alert insufficient security",
    ]) {
        return Some(Cause::WeakCryptoRejected);
    }
    if has(&[
        "no shared cipher",
        "no shared signature algorithms",
        "no suitable key share",
        "no shared groups",
        "alert handshake failure",
    ]) {
        return Some(Cause::NoSharedCipher);
    }
    if has(&["alert unknown ca", "alert certificate unknown"]) {
        return Some(Cause::UntrustedRoot);
    }
    if has(&["alert certificate expired"]) {
        return Some(Cause::CertificateExpired);
    }
    if has(&["alert bad certificate"]) {
        return Some(Cause::HostnameMismatch);
    }
    if t.contains("certificate verify failed") {
        return (!upstream).then_some(Cause::ClientCertificateRequired);
    }
    if has(&[
        "peer closed connection in ssl handshake",
        "unexpected eof while reading",
    ]) {
        return Some(Cause::HandshakeAborted);
    }
    // A socket error or timeout mid-handshake (an OpenSSL reason not
    // recognised above names no cause).
    if t.contains("while ssl handshaking") && !t.contains("(ssl: error:") {
        return Some(Cause::HandshakeAborted);
    }
    None
}

/// The X.509 verify code in "verify error: (10:certificate has expired)"
/// (nginx) or "Certificate Verification: Error (10): ..." (Apache).
fn verify_code(lower: &str) -> Option<i32> {
    let after = ["verify error: (", "verification: error ("]
        .iter()
        .find_map(|marker| lower.split_once(marker).map(|(_, rest)| rest))?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The cause an X.509 verify code names for a server's certificate.
fn cause_for_verify_code(code: i32) -> Option<Cause> {
    match code {
        9 => Some(Cause::CertificateNotYetValid),
        10 => Some(Cause::CertificateExpired),
        2 | 20 | 21 => Some(Cause::ChainIncomplete),
        18 | 19 | 27 => Some(Cause::UntrustedRoot),
        62 | 64 => Some(Cause::HostnameMismatch),
        66..=68 => Some(Cause::WeakCryptoRejected),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use chrono::{DateTime, Duration, NaiveDateTime, Utc};

    use super::*;
    use crate::evidence::logs::{local_to_utc, read_near};

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/evidence/testdata/logs")
            .join(name)
    }

    fn local(s: &str) -> DateTime<Utc> {
        local_to_utc(NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").unwrap()).unwrap()
    }

    fn by_line(lines: &[(LogLine, Option<Cause>)]) -> Vec<(u64, Option<Cause>)> {
        lines.iter().map(|(l, cause)| (l.line, *cause)).collect()
    }

    #[test]
    fn nginx_handshake_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:32:30");
        let lines = read_near(
            &fixture("nginx-error.txt"),
            around,
            Duration::hours(1),
            100,
            NOTE,
        )
        .unwrap();
        assert_eq!(
            by_line(&lines),
            vec![
                (7, Some(ProtocolVersionMismatch)), // unsupported protocol (TLS 1.1 client)
                (8, Some(NoSharedCipher)),          // no shared cipher
                (9, Some(PlaintextToTlsPort)),      // plain HTTP request to HTTPS port
                (10, Some(UntrustedRoot)),          // tlsv1 alert unknown ca (TLS 1.2)
                (11, Some(UntrustedRoot)),          // same, TLS 1.3
                (12, Some(HostnameMismatch)),       // sslv3 alert bad certificate
                (13, Some(CertificateExpired)),     // sslv3 alert certificate expired
                (14, Some(ClientCertificateRequired)), // no required SSL certificate
                (15, Some(ClientCertificateRequired)), // client cert verify error 18
                (16, Some(ProtocolVersionMismatch)), // TLS 1.0: no suitable signature algorithm
                (17, Some(HandshakeAborted)),       // peer closed connection in SSL handshake
                (18, Some(CertificateExpired)),     // upstream verify error 10
                (21, Some(HostnameMismatch)),       // upstream certificate does not match
                (26, Some(PlaintextToTlsPort)),     // wrong version number
                (29, None),                         // packet length too long
                (30, Some(ProtocolVersionMismatch)), // unknown protocol (SSLv2 hello)
                (42, Some(HostnameMismatch)), // bad certificate (client refused a 1024-bit key)
                (43, Some(HostnameMismatch)),
                (44, Some(NoSharedCipher)), // handshake failure (client refused DH 1024)
                (45, Some(ProtocolVersionMismatch)), // TLS 1.3-only client
            ]
        );
        let first = &lines[0].0;
        assert_eq!(first.time, Some(local("2026-11-29 02:32:15")));
        assert_eq!(first.level, "info");
        assert_eq!(first.client.as_deref(), Some("127.0.0.1"));
        assert!(
            first
                .text
                .starts_with("SSL_do_handshake() failed (SSL: error:0A000102")
        );
        assert!(first.file.ends_with("nginx-error.txt"));
        let upstream = lines.iter().find(|(l, _)| l.line == 18).unwrap();
        assert_eq!(upstream.0.level, "error");
    }

    #[test]
    fn apache_handshake_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:33:25");
        let lines = read_near(
            &fixture("apache-error.txt"),
            around,
            Duration::seconds(30),
            1000,
            NOTE,
        )
        .unwrap();
        let indicated: Vec<(String, Option<String>, Cause)> = lines
            .iter()
            .filter_map(|(l, cause)| Some((l.text.clone(), l.client.clone(), (*cause)?)))
            .collect();
        let expect = [
            (
                "unsupported protocol",
                "127.0.0.1:49440",
                ProtocolVersionMismatch,
            ),
            ("no shared cipher", "127.0.0.1:40230", NoSharedCipher),
            (
                "HTTP spoken on HTTPS port",
                "127.0.0.1:49446",
                PlaintextToTlsPort,
            ),
            ("http request", "127.0.0.1:49446", PlaintextToTlsPort),
            ("tlsv1 alert unknown ca", "127.0.0.1:49448", UntrustedRoot),
            (
                "sslv3 alert bad certificate",
                "127.0.0.1:49464",
                HostnameMismatch,
            ),
            (
                "sslv3 alert certificate expired",
                "127.0.0.1:37026",
                CertificateExpired,
            ),
            (
                "peer did not return a certificate",
                "127.0.0.1:33024",
                ClientCertificateRequired,
            ),
            (
                "peer did not return a certificate",
                "127.0.0.1:33034",
                ClientCertificateRequired,
            ),
            (
                "Error (18): self-signed certificate",
                "127.0.0.1:33050",
                ClientCertificateRequired,
            ),
            (
                "certificate verify failed",
                "127.0.0.1:33050",
                ClientCertificateRequired,
            ),
            (
                "wrong version number",
                "127.0.0.1:49468",
                PlaintextToTlsPort,
            ),
            (
                "wrong version number",
                "127.0.0.1:34030",
                PlaintextToTlsPort,
            ),
            ("https proxy request", "127.0.0.1:34036", PlaintextToTlsPort),
            (
                "unknown protocol",
                "127.0.0.1:34044",
                ProtocolVersionMismatch,
            ),
        ];
        assert_eq!(indicated.len(), expect.len(), "{indicated:#?}");
        for ((text, client, cause), (want_text, want_client, want_cause)) in
            indicated.iter().zip(expect)
        {
            assert!(text.contains(want_text), "{text} / {want_text}");
            assert_eq!(client.as_deref(), Some(want_client), "{text}");
            assert_eq!(*cause, want_cause, "{text}");
        }
        let (lib, _) = lines
            .iter()
            .find(|(l, _)| l.text.contains("tlsv1 alert unknown ca"))
            .unwrap();
        assert_eq!(lib.level, "ssl:info");
        assert_eq!(lib.line, 40);
        let stamp =
            NaiveDateTime::parse_from_str("2026-11-29 02:33:25.697361", "%Y-%m-%d %H:%M:%S%.f")
                .unwrap();
        assert_eq!(lib.time, local_to_utc(stamp));
        // Lines that carry no cause (connection established/closed) are
        // still SSL lines and kept.
        assert!(
            lines
                .iter()
                .any(|(l, cause)| l.text.starts_with("AH01964") && cause.is_none())
        );
    }

    #[test]
    fn server_startup_failures() {
        use Cause::*;
        let around = local("2026-11-29 02:33:00");
        let nginx = read_near(
            &fixture("nginx-startup-error.txt"),
            around,
            Duration::minutes(5),
            100,
            NOTE,
        )
        .unwrap();
        assert_eq!(nginx.len(), 5);
        assert!(
            nginx
                .iter()
                .all(|(l, cause)| *cause == Some(ServerCannotLoadCertificate) && l.level == "emerg")
        );
        let apache = read_near(
            &fixture("apache-startup-error.txt"),
            around,
            Duration::minutes(5),
            100,
            NOTE,
        )
        .unwrap();
        let named: Vec<(&str, Option<Cause>)> = apache
            .iter()
            .filter(|(l, _)| l.level == "ssl:emerg")
            .map(|(l, cause)| (l.text.split(':').next().unwrap_or(""), *cause))
            .collect();
        assert_eq!(
            named,
            vec![
                ("AH02565", Some(ServerCannotLoadCertificate)),
                ("AH02562", Some(ServerCannotLoadCertificate)),
                // "ee key too small" explains the load failure above it.
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02562", Some(ServerCannotLoadCertificate)),
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02572", Some(ServerCannotLoadCertificate)),
                ("SSL Library Error", Some(ServerCannotLoadCertificate)),
                ("AH02312", Some(ServerCannotLoadCertificate)),
            ]
        );
        // "AH00016: Configuration Failed" has no timestamp: left out.
        assert!(!apache.iter().any(|(l, _)| l.text.contains("AH00016")));
    }

    #[test]
    fn classify_texts() {
        use Cause::*;
        let cases = [
            (
                "SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48)",
                Some(UntrustedRoot),
            ),
            (
                "SSL Library Error: error:0A000412:SSL routines::sslv3 alert bad certificate (SSL alert number 42)",
                Some(HostnameMismatch),
            ),
            (
                "error:0A000416:SSL routines::sslv3 alert certificate unknown",
                Some(UntrustedRoot),
            ),
            (
                "error:0A00042E:SSL routines::tlsv1 alert protocol version",
                Some(ProtocolVersionMismatch),
            ),
            (
                "error:0A0000BF:SSL routines::no protocols available",
                Some(ProtocolVersionMismatch),
            ),
            (
                "error:0A00018A:SSL routines::dh key too small",
                Some(WeakCryptoRejected),
            ),
            (
                "error:0A000417:SSL routines::sslv3 alert illegal parameter",
                None,
            ),
            (
                "error:0A00045C:SSL routines::tlsv13 alert certificate required",
                Some(ClientCertificateRequired),
            ),
            (
                "client SSL certificate verify error: (66:EE certificate key too weak) while reading client request headers",
                Some(WeakCryptoRejected),
            ),
            (
                "client SSL certificate verify error: (10:certificate has expired) while reading client request headers",
                Some(ClientCertificateRequired),
            ),
            (
                "upstream SSL certificate verify error: (20:unable to get local issuer certificate) while SSL handshaking to upstream",
                Some(ChainIncomplete),
            ),
            (
                "upstream SSL certificate verify error: (19:self-signed certificate in certificate chain) while SSL handshaking to upstream",
                Some(UntrustedRoot),
            ),
            (
                "upstream SSL certificate verify error: (9:certificate is not yet valid) while SSL handshaking to upstream",
                Some(CertificateNotYetValid),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed) while SSL handshaking to upstream",
                None,
            ),
            (
                "AH02039: Certificate Verification: Error (20): unable to get local issuer certificate",
                Some(ClientCertificateRequired),
            ),
            (
                "cannot load certificate key \"/etc/ssl/private/x.key\": PEM_read_bio_PrivateKey() failed",
                Some(ServerCannotLoadCertificate),
            ),
            (
                "SSLCertificateFile: file '/x.crt' does not exist or is empty",
                Some(ServerCannotLoadCertificate),
            ),
            (
                "recv() failed (104: Connection reset by peer) while SSL handshaking, client: 1.2.3.4",
                Some(HandshakeAborted),
            ),
            (
                "client timed out (110: Connection timed out) while SSL handshaking, client: 1.2.3.4",
                Some(HandshakeAborted),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A000126:SSL routines::unexpected eof while reading) while SSL handshaking",
                Some(HandshakeAborted),
            ),
            (
                "SSL_do_handshake() failed (SSL: error:0A0000C6:SSL routines::packet length too long) while SSL handshaking",
                None,
            ),
            (
                "AH01998: Connection closed to child 4 with abortive shutdown (server localhost:443)",
                None,
            ),
            ("worker process 5137 exited with code 0", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(classify(text), want, "{text}");
        }
    }

    #[test]
    fn quoted_reasons_and_verify_codes() {
        let nginx = "SSL_do_handshake() failed (SSL: error:0A000418:SSL routines::tlsv1 alert unknown ca:SSL alert number 48) while SSL handshaking";
        assert_eq!(classify(nginx), Some(Cause::UntrustedRoot));
        // mod_proxy's backend: the code's own cause.
        let apache_upstream = "[remote 10.0.0.9:443] AH02039: Certificate Verification: Error (10): certificate has expired";
        assert_eq!(classify(apache_upstream), Some(Cause::CertificateExpired));
    }
}
