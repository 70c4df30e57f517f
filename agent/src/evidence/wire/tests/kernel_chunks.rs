//! Chunks as the kernel delivers them: split, cut, repeated, flagged.

use super::*;

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

#[test]
fn not_tls_chunks_are_described() {
    let cases: [(&[u8], &str, &str); 5] = [
        (
            b"GET / HTTP/1.1\r\nHost: ex",
            "http-request",
            "HTTP GET request",
        ),
        (
            b"HTTP/1.1 400 Bad Request",
            "http-response",
            "HTTP/1.1 response, status 400",
        ),
        (
            b"\x80\x2e\x01\x00\x02\x00\x15\x00\x00\x00\x10",
            "sslv2-hello",
            "SSLv2-format ClientHello",
        ),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "unknown", "SSH banner"),
        (b"\x00\\\t\xff", "unknown", "unknown binary (4 bytes)"),
    ];
    for (bytes, kind, first) in cases {
        for flags in [DATA_FLAG_NOT_TLS, 0] {
            let (f, p) = run(&[chunk(S, 0, flags, bytes)]);
            assert_eq!(p, WireProgress::Failed);
            let n = f.non_tls.unwrap();
            assert_eq!(
                (n.sender, n.kind.as_str(), n.description.as_str()),
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
    // Described, never copied: the path is not in it.
    assert_eq!(one.description, "HTTP POST request");
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
