//! Row 4: bulk transfer through an established TLS connection, agent on /
//! off: what a busy TLS connection pays after its handshake. The bench's
//! own pair (a Rust `openssl` server thread writing 16 KiB records, the
//! client reading them; timed from the end of the handshake), and curl
//! downloading a file from nginx.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::Instant;

use openssl::ssl::{SslAcceptor, SslConnector, SslFiletype, SslMethod};
use tlsdoctor_tests::pki::Leaf;

use crate::measure::{CpuMeter, Spread, agent_share, off_on};
use crate::nginx::{BenchNginx, SERVER_NAME};
use crate::{Row, Section, Settings, Shared, Tls};

const FILE: &str = "bulk.bin";

/// MiB/s through one TLS connection made by this process: `bytes` from a
/// server thread to the client, timed from the end of the handshake.
fn own_pair(tls: Tls, leaf: &Leaf, ca: &std::path::Path, bytes: u64) -> f64 {
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("an SSL_CTX");
    acceptor
        .set_certificate_chain_file(&leaf.fullchain)
        .expect("the certificate");
    acceptor
        .set_private_key_file(&leaf.key, SslFiletype::PEM)
        .expect("the key");
    acceptor
        .set_min_proto_version(Some(tls.ssl_version()))
        .expect("min version");
    acceptor
        .set_max_proto_version(Some(tls.ssl_version()))
        .expect("max version");
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").expect("a listener");
    let addr = listener.local_addr().expect("its address");
    let server = std::thread::spawn(move || {
        let (tcp, _) = listener.accept().expect("accepting");
        let mut tls = acceptor.accept(tcp).expect("the server's handshake");
        let chunk = vec![0x5au8; 16 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            tls.write_all(&chunk[..n]).expect("writing");
            left -= n as u64;
        }
        let _ = tls.shutdown();
    });
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an SSL_CTX");
    b.set_ca_file(ca).expect("the CA file");
    let connector = b.build();
    let tcp = TcpStream::connect(addr).expect("connecting");
    let mut tls = connector
        .connect(SERVER_NAME, tcp)
        .expect("the client's handshake");
    let t = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0u64;
    while got < bytes {
        match tls.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n as u64,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = server.join();
    assert_eq!(got, bytes, "the bulk transfer ended early");
    got as f64 / secs / (1 << 20) as f64
}

/// MiB/s of `curl` downloading the bulk file from nginx.
fn curl(server: &BenchNginx, tls: Tls, bytes: u64) -> f64 {
    let port = server.port(tls);
    let version: &[&str] = match tls {
        Tls::V13 => &["--tlsv1.3", "--tls-max", "1.3"],
        Tls::V12 => &["--tlsv1.2", "--tls-max", "1.2"],
    };
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download} %{speed_download}",
        ])
        .args(version)
        .arg("--cacert")
        .arg(server.ca_file())
        .arg("--resolve")
        .arg(format!("{SERVER_NAME}:{port}:127.0.0.1"))
        .arg(format!("https://{SERVER_NAME}:{port}/files/{FILE}"))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let size: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    let speed: f64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    assert_eq!(
        size,
        bytes,
        "curl downloaded {size} of {bytes} bytes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    speed / (1 << 20) as f64
}

pub fn run(s: &Settings, _shared: &mut Shared) -> Section {
    let server = BenchNginx::start();
    // Sparse: read from the page cache's zero page, no disk involved.
    std::fs::File::create(server.www.join(FILE))
        .and_then(|f| f.set_len(s.bulk_bytes))
        .expect("the bulk file");
    let leaf = server
        .pki
        .leaf(&tlsdoctor_tests::pki::LeafSpec::new(SERVER_NAME));
    let ca = server.ca_file();
    let rounds = off_on(s, &[], |agent| {
        let cpu = CpuMeter::start(agent);
        let mut m = Vec::new();
        for tls in Tls::ALL {
            m.push(own_pair(tls, &leaf, &ca, s.bulk_bytes));
            m.push(curl(&server, tls, s.bulk_bytes));
        }
        (m, cpu.stop().map(|c| c.1))
    });
    let mut body = format!(
        "## Bulk transfer on an established TLS connection\n\n{} MiB per transfer, agent off and on over {} rounds; MiB/s. The bench's own pair: one TLS connection inside the bench process (server thread writing 16 KiB records, client reading 64 KiB at a time), timed from the end of the handshake. curl: a download of a file from nginx (no sendfile: nginx encrypts in userspace).\n\n| transfer | TLS | off MiB/s | on MiB/s | **ratio on / off**, median (min–max) |\n|---|---|---|---|---|\n",
        s.bulk_bytes >> 20,
        s.rounds
    );
    let mut rows = Vec::new();
    let mut i = 0;
    for tls in Tls::ALL {
        for who in ["bench pair", "curl ← nginx"] {
            let off = Spread::of(rounds.iter().map(|r| r.off.0[i]));
            let on = Spread::of(rounds.iter().map(|r| r.on.0[i]));
            let ratio = Spread::of(rounds.iter().map(|r| r.on.0[i] / r.off.0[i]));
            let _ = writeln!(
                body,
                "| {who} | {} | {:.0} | {:.0} | **{}** |",
                tls.label(),
                off.median,
                on.median,
                ratio.fmt(3)
            );
            rows.push(Row::new(
                format!(
                    "bulk transfer ({} MiB) on / off, {who}, {}",
                    s.bulk_bytes >> 20,
                    tls.label()
                ),
                "≥ 0.995",
                ratio.fmt(3),
                Some(ratio.median >= 0.995),
            ));
            i += 1;
        }
    }
    let _ = writeln!(
        body,
        "\nAgent CPU during the on runs: {}.\n",
        agent_share(rounds.iter().filter_map(|r| r.on.1))
    );
    Section { body, rows }
}
