//! Odd, oversized and random input: bounded, and never a panic.

use super::*;

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
        assert!(f.non_tls.as_ref().is_none_or(|n| n.description.len() <= 64));
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
