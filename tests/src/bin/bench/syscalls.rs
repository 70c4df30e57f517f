//! Row 3: what every process on the host pays per `read(2)` on a descriptor
//! that carries no TLS: a pipe, a regular file, /dev/zero (none of them a
//! socket), a unix socket pair, and a loopback TCP connection carrying
//! plain bytes (made while the agent runs, so today's agent tracks it).
//! 1-byte reads in a tight loop, ns per call, agent off / on.

use std::fmt::Write as _;
use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use tlsdoctor_tests::TempDir;

use crate::measure::{CpuMeter, Spread, agent_share, off_on};
use crate::{Row, Section, Settings, Shared};

/// Bytes written at once and then read back one at a time: below every
/// buffer involved (pipe 64 KiB, socket buffers), so the writes never block.
const CHUNK: usize = 16 * 1024;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Pipe,
    File,
    DevZero,
    Unix,
    Tcp,
}

const KINDS: [Kind; 5] = [Kind::Pipe, Kind::File, Kind::DevZero, Kind::Unix, Kind::Tcp];

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Pipe => "pipe",
            Kind::File => "regular file (page cache)",
            Kind::DevZero => "/dev/zero",
            Kind::Unix => "unix socket pair",
            Kind::Tcp => "loopback TCP, plain bytes (connected with the agent on)",
        }
    }

    fn is_socket(self) -> bool {
        matches!(self, Kind::Unix | Kind::Tcp)
    }
}

/// ns per 1-byte `read(2)`: `refill` puts [`CHUNK`] bytes in front of
/// `reader` (one write per chunk: ~1/16000 of the calls), then one read per
/// byte.
fn per_read(n: u64, reader: &mut impl Read, mut refill: impl FnMut()) -> f64 {
    let mut b = [0u8; 1];
    let t = Instant::now();
    let mut done = 0;
    while done < n {
        refill();
        for _ in 0..CHUNK {
            if reader.read(&mut b).unwrap_or(0) != 1 {
                panic!("a 1-byte read returned no byte");
            }
        }
        done += CHUNK as u64;
    }
    t.elapsed().as_nanos() as f64 / done as f64
}

fn measure(kind: Kind, n: u64, dir: &TempDir) -> f64 {
    let zeros = [0u8; CHUNK];
    match kind {
        Kind::Pipe => {
            let (mut r, mut w) = std::io::pipe().expect("a pipe");
            per_read(n, &mut r, || w.write_all(&zeros).expect("writing the pipe"))
        }
        Kind::File => {
            let path = dir.join("data");
            std::fs::write(&path, vec![7u8; CHUNK]).expect("a data file");
            let mut f = std::fs::File::open(&path).expect("the data file");
            let mut again = f.try_clone().expect("the data file");
            per_read(n, &mut f, || {
                again.rewind().expect("rewinding the data file");
            })
        }
        Kind::DevZero => {
            let mut f = std::fs::File::open("/dev/zero").expect("/dev/zero");
            per_read(n, &mut f, || {})
        }
        Kind::Unix => {
            let (mut r, mut w) = UnixStream::pair().expect("a unix socket pair");
            per_read(n, &mut r, || {
                w.write_all(&zeros).expect("writing the socket")
            })
        }
        Kind::Tcp => {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a TCP listener");
            let mut w = TcpStream::connect(listener.local_addr().expect("its address"))
                .expect("connecting");
            let (mut r, _) = listener.accept().expect("accepting");
            // Plain bytes first: the agent classifies the stream as not TLS.
            let hello = b"PING plain bytes, not a TLS record\r\n";
            w.write_all(hello).expect("writing");
            r.read_exact(&mut [0u8; 64][..hello.len()])
                .expect("reading");
            per_read(n, &mut r, || {
                w.write_all(&zeros).expect("writing the socket")
            })
        }
    }
}

/// Best of three runs of `n / 3` calls: a run that the VM preempted is
/// dropped rather than averaged in.
fn best_of_three(kind: Kind, n: u64, dir: &TempDir) -> f64 {
    (0..3)
        .map(|_| measure(kind, (n / 3).max(CHUNK as u64), dir))
        .fold(f64::INFINITY, f64::min)
}

pub fn run(s: &Settings, _shared: &mut Shared) -> Section {
    let dir = TempDir::new("bench-syscalls");
    let rounds = off_on(s, &[], |agent| {
        let cpu = CpuMeter::start(agent);
        let ns: Vec<f64> = KINDS
            .iter()
            .map(|&k| best_of_three(k, s.syscall_reads, &dir))
            .collect();
        (ns, cpu.stop().map(|c| c.1))
    });
    let mut body = format!(
        "## `read(2)` on descriptors that carry no TLS\n\n1-byte reads in a tight loop (the data written {CHUNK} bytes at a time beforehand), {} calls per kind and run as the best of three thirds, agent off and on over {} rounds; ns per call. Δ = on − off within a round.\n\n| descriptor | off ns | on ns | **Δ ns**, median (min–max) |\n|---|---|---|---|\n",
        s.syscall_reads, s.rounds
    );
    let mut rows = Vec::new();
    for (i, kind) in KINDS.iter().enumerate() {
        let off = Spread::of(rounds.iter().map(|r| r.off.0[i]));
        let on = Spread::of(rounds.iter().map(|r| r.on.0[i]));
        let delta = Spread::of(rounds.iter().map(|r| r.on.0[i] - r.off.0[i]));
        let _ = writeln!(
            body,
            "| {} | {:.0} | {:.0} | **{}** |",
            kind.label(),
            off.median,
            on.median,
            delta.fmt_signed(0)
        );
        if *kind != Kind::DevZero {
            let what = if kind.is_socket() {
                format!("`read(2)` on a socket without TLS: {}", kind.label())
            } else {
                format!(
                    "`read(2)` on a descriptor that is not a socket: {}",
                    kind.label()
                )
            };
            rows.push(Row::new(
                what,
                "≤ +30 ns",
                format!("{} ns", delta.fmt_signed(0)),
                Some(delta.median <= 30.0),
            ));
        }
    }
    let _ = writeln!(
        body,
        "\nAgent CPU during these runs: {}.\n",
        agent_share(rounds.iter().filter_map(|r| r.on.1))
    );
    Section { body, rows }
}
