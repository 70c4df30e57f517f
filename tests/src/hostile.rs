//! Hostile or broken "servers" on loopback: they accept TCP and then stall,
//! answer garbage, reset, close, or flood a fake certificate.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the peer does with each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Accepts and never sends a byte (holds the connection open).
    Silent,
    /// Reads the ClientHello and answers bytes that are neither TLS nor HTTP.
    Garbage,
    /// Reads the ClientHello and resets the connection (RST).
    Reset,
    /// Reads the ClientHello and closes (FIN) without a word.
    Close,
    /// Answers with a TLS 1.2 ServerHello and a Certificate message
    /// announcing 16 MiB, then streams bytes until the client goes away.
    HugeCertificate,
}

/// A hostile peer on 127.0.0.1:port, stopped when dropped.
pub struct Hostile {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn read_some(s: &mut TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 4096];
    let _ = s.read(&mut buf);
}

fn reset(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd and a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// A minimal TLS 1.2 ServerHello: ECDHE-RSA-AES128-GCM-SHA256 (which a
/// default OpenSSL client offers) and renegotiation_info (which it requires).
fn server_hello() -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend((0..32u8).map(|i| i.wrapping_mul(7)));
    body.push(0); // no session id
    body.extend([0xc0, 0x2f]); // the suite
    body.push(0); // no compression
    body.extend([0x00, 0x05, 0xff, 0x01, 0x00, 0x01, 0x00]);
    let mut hs = vec![2, 0, 0, body.len() as u8];
    hs.extend(body);
    let mut record = vec![22, 3, 3, 0, hs.len() as u8];
    record.extend(hs);
    record
}

fn serve(mut s: TcpStream, behaviour: Behaviour, stop: &AtomicBool) {
    match behaviour {
        Behaviour::Silent => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Behaviour::Garbage => {
            read_some(&mut s);
            let junk: Vec<u8> = (0..512u32).map(|i| (i * 37 % 251) as u8 | 0x80).collect();
            let _ = s.write_all(&junk);
            std::thread::sleep(Duration::from_millis(200));
        }
        Behaviour::Reset => {
            read_some(&mut s);
            reset(&s);
        }
        Behaviour::Close => read_some(&mut s),
        Behaviour::HugeCertificate => {
            read_some(&mut s);
            if s.write_all(&server_hello()).is_err() {
                return;
            }
            // Certificate (11) claiming 16 MiB, then filler, record after
            // record.
            let mut first = vec![22, 3, 3, 0x40, 0x00, 11, 0xff, 0xff, 0xff];
            first.resize(5 + 0x4000, 0x30);
            if s.write_all(&first).is_err() {
                return;
            }
            let mut record = vec![22, 3, 3, 0x40, 0x00];
            record.resize(5 + 0x4000, 0x30);
            for _ in 0..1024 {
                if stop.load(Ordering::Relaxed) || s.write_all(&record).is_err() {
                    break;
                }
            }
        }
    }
}

/// Starts a hostile peer on a free loopback port.
pub fn hostile(behaviour: Behaviour) -> Hostile {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a hostile peer");
    let port = listener.local_addr().expect("local addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for conn in listener.incoming() {
            if flag.load(Ordering::Relaxed) {
                break;
            }
            let Ok(s) = conn else { continue };
            let flag = flag.clone();
            workers.push(std::thread::spawn(move || serve(s, behaviour, &flag)));
        }
        for w in workers {
            let _ = w.join();
        }
    });
    Hostile {
        port,
        stop,
        thread: Some(thread),
    }
}
