//! The socket under the probe's OpenSSL: enforces the step deadline on
//! every read and write, and feeds the bytes both ways to the same
//! [`WireAssembler`] the capture uses, so the probe's wire facts (ClientHello,
//! ServerHello, alerts in clear, a plain-text reply) are exactly those the
//! agent would have recorded for this connection.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chrono::Utc;

use agent_ebpf::{CAPTURE_BUDGET, DATA_FLAG_BUDGET};

use crate::evidence::wire::{Chunk, TlsFacts, WireAssembler};
use crate::outcome::Role;

/// Bytes per direction given to the wire parser, like the kernel's budget:
/// a hostile peer's megabytes of "certificates" are counted, not kept.
const WIRE_BUDGET: usize = CAPTURE_BUDGET as usize;

/// What happened on the socket.
#[derive(Clone, Debug, Default)]
pub struct TapState {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The peer closed (a read returned 0).
    pub eof: bool,
    /// The peer reset the connection.
    pub reset: bool,
    /// The step deadline passed while waiting for the peer.
    pub timed_out: bool,
    /// The last socket error, in words.
    pub io_error: Option<String>,
}

/// A `TcpStream` with a deadline and a wire recorder.
pub struct Tap {
    stream: TcpStream,
    deadline: Instant,
    wire: WireAssembler,
    /// Bytes given to the wire parser so far: [client (sent), server (received)].
    kept: [usize; 2],
    pub state: TapState,
}

impl Tap {
    pub fn new(stream: TcpStream, deadline: Instant) -> Tap {
        Tap {
            stream,
            deadline,
            wire: WireAssembler::new(),
            kept: [0, 0],
            state: TapState::default(),
        }
    }

    /// Time left before the deadline; an error once it passed.
    fn left(&mut self) -> io::Result<Duration> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.state.timed_out = true;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "step timeout reached",
            ));
        }
        Ok(left)
    }

    fn record(&mut self, sender: Role, bytes: &[u8]) {
        let i = match sender {
            Role::Client => 0,
            Role::Server => 1,
        };
        let room = WIRE_BUDGET.saturating_sub(self.kept[i]);
        if room == 0 || bytes.is_empty() {
            return;
        }
        let take = room.min(bytes.len());
        let flags = if take == room { DATA_FLAG_BUDGET } else { 0 };
        let offset = u32::try_from(self.kept[i]).unwrap_or(u32::MAX);
        self.wire.push(Chunk {
            time: Utc::now(),
            sender,
            stream_offset: offset,
            flags,
            bytes: bytes.get(..take).unwrap_or_default(),
        });
        self.kept[i] += take;
    }

    /// Notes a socket error; a timeout becomes a hard `TimedOut` (OpenSSL
    /// would retry a `WouldBlock` forever).
    fn failed(&mut self, e: io::Error) -> io::Error {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                self.state.timed_out = true;
                self.state.io_error = Some("the peer sent nothing before the step timeout".into());
                io::Error::new(io::ErrorKind::TimedOut, "step timeout reached")
            }
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                self.state.reset = true;
                self.state.io_error = Some(format!(
                    "the peer reset the connection ({e})",
                    e = crate::text::Chain(&e)
                ));
                e
            }
            io::ErrorKind::BrokenPipe => {
                self.state.io_error = Some(format!(
                    "the peer closed the connection ({e})",
                    e = crate::text::Chain(&e)
                ));
                e
            }
            _ => {
                self.state.io_error = Some(crate::text::Chain(&e).to_string());
                e
            }
        }
    }

    /// The wire facts so far (the assembler is left empty).
    pub fn take_wire(&mut self) -> TlsFacts {
        std::mem::take(&mut self.wire).into_facts()
    }
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        match self.stream.read(buf) {
            Ok(0) => {
                self.state.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.state.bytes_received += n as u64;
                self.record(Role::Server, buf.get(..n).unwrap_or_default());
                Ok(n)
            }
            Err(e) => Err(self.failed(e)),
        }
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        match self.stream.write(buf) {
            Ok(n) => {
                self.state.bytes_sent += n as u64;
                self.record(Role::Client, buf.get(..n).unwrap_or_default());
                Ok(n)
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_silent_peer_times_out_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        let _accepted = listener.accept().unwrap();
        let start = Instant::now();
        let mut tap = Tap::new(stream, Instant::now() + Duration::from_millis(200));
        let mut buf = [0u8; 16];
        let e = tap.read(&mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(tap.state.timed_out);
        assert!(start.elapsed() < Duration::from_secs(2));
        // Past the deadline nothing blocks any more.
        assert!(tap.read(&mut buf).is_err());
    }

    #[test]
    fn plain_text_replies_reach_the_wire_facts() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut tap = Tap::new(stream, Instant::now() + Duration::from_secs(5));
        // A TLS record header, so the client side looks like TLS.
        tap.write_all(&[22, 3, 1, 0, 1, 1]).unwrap();
        let mut buf = [0u8; 64];
        let n = tap.read(&mut buf).unwrap();
        assert!(n > 0);
        server.join().unwrap();
        assert_eq!(tap.state.bytes_sent, 6);
        let wire = tap.take_wire();
        let non_tls = wire.non_tls.expect("the reply is not TLS");
        assert_eq!(non_tls.sender, Role::Server);
        assert_eq!(non_tls.kind, "http-response");
    }

    #[test]
    fn the_wire_budget_bounds_what_is_kept() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // A handshake record header announcing a huge message, then junk.
            let _ = s.write_all(&[22, 3, 3, 0x40, 0x00]);
            let junk = vec![0x0b; 200 * 1024];
            let _ = s.write_all(&junk);
        });
        let stream = TcpStream::connect(addr).unwrap();
        let mut tap = Tap::new(stream, Instant::now() + Duration::from_secs(5));
        let mut buf = vec![0u8; 32 * 1024];
        while let Ok(n) = tap.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        server.join().unwrap();
        assert!(tap.state.bytes_received > WIRE_BUDGET as u64);
        assert_eq!(tap.kept[1], WIRE_BUDGET);
        let _ = tap.take_wire();
    }
}
