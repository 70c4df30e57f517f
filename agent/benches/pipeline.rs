//! The userspace pipeline without the kernel: recorded handshakes (the wire
//! fixtures) turned into the kernel events the agent would receive, through
//! connection assembly, wire parsing and the rules. `cargo bench -p agent`.

// Benchmark set-up: a fixture that does not load stops the run, saying why.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;

use agent::assembly::{Assembler, AssemblyConfig, PlainPorts, TlsPorts, WallClock};
use agent::capture::events::{DataRecord, KernelEvent};
use agent::diagnosis::host::HostFacts;
use agent::diagnosis::{Facts, diagnose};
use agent_ebpf::{
    AF_INET, CloseEvent, ConnEvent, Direction, Endpoint, EventHeader, EventKind, SockStateEvent,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/evidence/testdata/wire");

/// One recorded handshake: (sender is client, bytes) per recv().
fn load_fixtures() -> Vec<Vec<(bool, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(FIXTURES)
        .expect("fixtures")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    names.sort();
    for path in names {
        let text = std::fs::read_to_string(&path).expect("fixture");
        let chunks: Vec<(bool, Vec<u8>)> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let who = parts.next()?;
                let _secs = parts.next()?;
                let bytes = hex::decode(parts.next()?).ok()?;
                Some((who == "c", bytes))
            })
            .collect();
        out.push(chunks);
    }
    out
}

fn header(kind: EventKind, ts: u64, tgid: u32) -> EventHeader {
    EventHeader {
        kind: kind as u32,
        _pad: 0,
        ts_ns: ts,
        tid: tgid,
        tgid,
    }
}

fn endpoint(port: u16) -> Endpoint {
    let mut addr = [0u8; 16];
    addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    Endpoint {
        family: AF_INET,
        port,
        addr,
    }
}

/// The events a client-side capture of `chunks` produces.
fn events_for(chunks: &[(bool, Vec<u8>)], tgid: u32, sk: u64, start: u64) -> Vec<KernelEvent<'_>> {
    let fd = 5;
    let mut ts = start;
    let mut ev = vec![
        KernelEvent::Connect(ConnEvent {
            header: header(EventKind::Connect, ts, tgid),
            fd,
            ret: 0,
            sk,
            local: Endpoint::default(),
            remote: endpoint(443),
            listen_fd: -1,
            _pad: 0,
            comm: *b"bench\0\0\0\0\0\0\0\0\0\0\0",
        }),
        KernelEvent::SockState(SockStateEvent {
            header: header(EventKind::SockState, ts, tgid),
            sk,
            owner_tgid: tgid,
            owner_fd: fd,
            old_state: 2,
            new_state: 1,
            local: endpoint(40000 + (tgid % 20000) as u16),
            remote: endpoint(443),
        }),
    ];
    let (mut sent, mut received) = (0u32, 0u32);
    for (from_client, bytes) in chunks {
        ts += 1000;
        let (direction, offset) = if *from_client {
            (Direction::Egress, &mut sent)
        } else {
            (Direction::Ingress, &mut received)
        };
        ev.push(KernelEvent::Data(DataRecord {
            header: header(EventKind::Data, ts, tgid),
            fd,
            direction,
            flags: 0,
            syscall: 1,
            stream_offset: *offset,
            syscall_len: bytes.len() as u32,
            bytes,
        }));
        *offset += bytes.len() as u32;
    }
    ts += 1000;
    ev.push(KernelEvent::Close(CloseEvent {
        header: header(EventKind::Close, ts, tgid),
        fd,
        _pad: 0,
    }));
    ev
}

fn pipeline(c: &mut Criterion) {
    let fixtures = load_fixtures();
    assert!(!fixtures.is_empty(), "no wire fixtures in {FIXTURES}");
    // 64 connections per iteration, the fixtures in turn.
    let streams: Vec<Vec<KernelEvent<'_>>> = (0..64u32)
        .map(|i| {
            events_for(
                &fixtures[i as usize % fixtures.len()],
                10_000 + i,
                0xffff_0000_0000 + u64::from(i) * 4096,
                1_000_000 + u64::from(i) * 10,
            )
        })
        .collect();
    let events: usize = streams.iter().map(Vec::len).sum();
    let clock = WallClock::now();
    let host = HostFacts::default();

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function("assembly+wire+rules, 64 recorded handshakes", |b| {
        b.iter(|| {
            let mut assembler = Assembler::new(
                AssemblyConfig::default(),
                TlsPorts::default(),
                Arc::new(PlainPorts::default()),
            );
            let mut out = Vec::new();
            for stream in &streams {
                for event in stream {
                    assembler.on_event(event, &clock, &mut out);
                }
            }
            assembler.tick(u64::MAX / 2, &clock, &mut out);
            for outcome in &out {
                black_box(diagnose(&Facts {
                    outcome,
                    host: &host,
                }));
            }
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
