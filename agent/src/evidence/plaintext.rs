//! What a stream that is not TLS carries, said without copying it.
//!
//! The first bytes of a non-TLS stream on a TLS port are often a request
//! line with a path, a token in a query string, a password sent to the
//! wrong port: they must not reach the journal or a collector. They are
//! described by protocol ("HTTP GET request", "SSH banner") from fixed
//! vocabulary; nothing of the input but a method name from a fixed list,
//! a three-digit status code or a byte count is echoed.

/// A description of a stream's first bytes, e.g. `HTTP GET request`,
/// `HTTP/1.1 response, status 400`, `SSH banner`, `unknown binary (24
/// bytes)`.
pub fn describe(first: &[u8]) -> String {
    const METHODS: [&str; 10] = [
        "GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PRI",
    ];
    for method in METHODS {
        let is = first
            .strip_prefix(method.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b' '));
        if is {
            return if method == "PRI" {
                "HTTP/2 connection preface (cleartext h2c)".to_string()
            } else {
                format!("HTTP {method} request")
            };
        }
    }
    if let Some(rest) = first.strip_prefix(b"HTTP/") {
        let version = match rest.get(..3) {
            Some(b"1.0") => "HTTP/1.0",
            Some(b"1.1") => "HTTP/1.1",
            _ => "HTTP",
        };
        let status = rest
            .get(4..7)
            .filter(|s| rest.get(3) == Some(&b' ') && s.iter().all(u8::is_ascii_digit))
            .and_then(|s| std::str::from_utf8(s).ok());
        return match status {
            Some(code) => format!("{version} response, status {code}"),
            None => format!("{version} response"),
        };
    }
    let fixed: [(&[u8], &str); 8] = [
        (b"SSH-", "SSH banner"),
        (b"PROXY TCP", "PROXY protocol v1 header"),
        (b"PROXY UNKNOWN", "PROXY protocol v1 header"),
        (b"\r\n\r\n\0\r\nQUIT\n", "PROXY protocol v2 header"),
        (b"+OK", "POP3 greeting"),
        (b"* OK", "IMAP greeting"),
        (b"RFB ", "VNC (RFB) banner"),
        (b"\0\0\0\x08\x04\xd2\x16\x2f", "PostgreSQL SSLRequest"),
    ];
    if let Some((_, what)) = fixed.iter().find(|(prefix, _)| first.starts_with(prefix)) {
        return what.to_string();
    }
    if let [b'2', b'2', b'0', b' ' | b'-', ..] = first {
        return "SMTP or FTP greeting (220)".to_string();
    }
    if let [b'*', digit, ..] = first
        && digit.is_ascii_digit()
    {
        return "Redis (RESP) command".to_string();
    }
    if matches!(first, [head, _, 1, ..] if head & 0x80 != 0) {
        return "SSLv2-format ClientHello".to_string();
    }
    let n = first.len();
    let text = first
        .iter()
        .all(|&b| b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n' | b'\t'));
    if text {
        format!("unknown text ({n} bytes)")
    } else {
        format!("unknown binary ({n} bytes)")
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn protocols_are_named_and_nothing_is_copied() {
        let cases: [(&[u8], &str); 12] = [
            (b"GET /admin?token=s3cr3t HTTP/1.1\r\n", "HTTP GET request"),
            (b"POST /login HTTP/1.1\r\nHost: x", "HTTP POST request"),
            (
                b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
                "HTTP/2 connection preface (cleartext h2c)",
            ),
            (
                b"HTTP/1.1 400 Bad Request\r\nSe",
                "HTTP/1.1 response, status 400",
            ),
            (b"HTTP/1.0 2x0 Nope", "HTTP/1.0 response"),
            (b"SSH-2.0-OpenSSH_9.2p1 Debian", "SSH banner"),
            (b"220 mail.example.com ESMTP", "SMTP or FTP greeting (220)"),
            (b"*2\r\n$4\r\nAUTH\r\n$6\r\nhunter", "Redis (RESP) command"),
            (
                b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n",
                "PROXY protocol v1 header",
            ),
            (b"\x80\x2e\x01\x03\x01\x00\x15", "SSLv2-format ClientHello"),
            (b"user=alice password=hunter2", "unknown text (27 bytes)"),
            (b"\x00\x01\xfe\xffsecret", "unknown binary (10 bytes)"),
        ];
        for (bytes, want) in cases {
            let got = describe(bytes);
            assert_eq!(got, want, "{bytes:?}");
            for secret in [
                "token", "s3cr3t", "admin", "hunter", "alice", "login", "OpenSSH", "mail",
            ] {
                assert!(!got.contains(secret), "{got} copies {secret}");
            }
        }
        // A method name alone, not followed by a space, is not a request.
        assert_eq!(describe(b"GETTING"), "unknown text (7 bytes)");
        assert_eq!(describe(b""), "unknown text (0 bytes)");
    }
}
