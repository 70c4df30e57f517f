#!/usr/bin/env python3
"""Regenerates the wire fixtures: real handshakes between `openssl s_client`
and `openssl s_server` (or plain HTTP), recorded by a loopback TCP relay.

Each fixture is a text file: `#` comment lines saying how it was made, then
one line per recv() the relay did: `<c|s> <seconds since start> <hex>`
(c = bytes the client sent, s = bytes the server sent). The unit tests in
wire.rs replay those chunks (as is, through the kernel's record walker, and
re-chunked).

Usage: python3 gen.py [OUTDIR]   (default: this script's directory)
Needs openssl (3.x) on PATH. Keys and certificates are throw-away, made in a
temporary directory and not kept.
"""

import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
SNI = "server.test"


def run(*args, **kw):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def make_pki(d):
    """EC P-256 keys keep the certificates (and fixtures) small."""
    j = lambda n: os.path.join(d, n)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", j("ca.key"), "-out", j("ca.pem"), "-days", "3650",
        "-subj", "/O=tlsdoctor test/CN=tlsdoctor Test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", j("leaf.key"), "-out", j("leaf.csr"), "-subj", "/CN=" + SNI)
    with open(j("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:%s\nbasicConstraints=CA:FALSE\n" % SNI)
    run("openssl", "x509", "-req", "-in", j("leaf.csr"), "-CA", j("ca.pem"), "-CAkey", j("ca.key"),
        "-CAcreateserial", "-out", j("leaf.pem"), "-days", "3650", "-extfile", j("ext.cnf"))
    return j


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Relay(threading.Thread):
    """Accepts one connection, connects upstream, forwards both ways and
    records every recv() with its direction and time."""

    def __init__(self, upstream_port):
        super().__init__(daemon=True)
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.upstream_port = upstream_port
        self.chunks = []
        self.t0 = None

    def run(self):
        self.lsock.settimeout(15)
        c, _ = self.lsock.accept()
        self.t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", self.upstream_port))
        peer = {c: s, s: c}
        tag = {c: "c", s: "s"}
        open_ = {c, s}
        deadline = time.monotonic() + 10
        while open_ and time.monotonic() < deadline:
            r, _, _ = select.select(list(open_), [], [], 0.2)
            for sock in r:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    open_.discard(sock)
                    try:
                        peer[sock].shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    continue
                self.chunks.append((tag[sock], time.monotonic() - self.t0, data))
                try:
                    peer[sock].sendall(data)
                except OSError:
                    open_.discard(sock)
        c.close()
        s.close()


def wait_listening(port, proc=None, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server on %d did not come up" % port)


def s_server(j, port, *extra):
    # -naccept 2: wait_listening's probe connection uses the first accept.
    args = ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port, "-naccept", "2",
            "-cert", j("leaf.pem"), "-key", j("leaf.key"), "-cert_chain", j("ca.pem")] + list(extra)
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_listening(port)
    return p, args


def s_client(port, *extra, stdin_data=b"hello\n"):
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-servername", SNI] + list(extra)
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.7)
    try:
        p.stdin.write(stdin_data)
        p.stdin.flush()
        time.sleep(0.5)
        p.stdin.close()
    except OSError:
        pass  # the client already gave up
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
    return args


def write(name, description, commands, chunks):
    path = os.path.join(OUT, name + ".txt")
    with open(path, "w") as f:
        f.write("# %s\n" % description)
        for c in commands:
            f.write("# %s\n" % " ".join(c))
        for tag, t, data in chunks:
            f.write("%s %.6f %s\n" % (tag, t, data.hex()))
    print("wrote", path, sum(len(d) for _, _, d in chunks), "bytes")


def tls_scenario(j, name, description, server_args, client_args, stdin_data=b"hello\n"):
    port = free_port()
    srv, sargs = s_server(j, port, *server_args)
    relay = Relay(port)
    relay.start()
    cargs = s_client(relay.port, *client_args, stdin_data=stdin_data)
    relay.join(timeout=12)
    srv.kill()
    srv.wait()
    # Anonymise the throw-away paths in the recorded commands.
    clean = lambda a: [os.path.basename(x) if os.sep in x else x for x in a]
    write(name, description, [clean(sargs), clean(cargs)], relay.chunks)


def http_request_to_tls(j):
    port = free_port()
    srv, sargs = s_server(j, port)
    relay = Relay(port)
    relay.start()
    c = socket.create_connection(("127.0.0.1", relay.port))
    c.sendall(b"GET / HTTP/1.1\r\nHost: " + SNI.encode() + b"\r\n\r\n")
    c.settimeout(3)
    try:
        while c.recv(4096):
            pass
    except OSError:
        pass
    c.close()
    relay.join(timeout=12)
    srv.kill()
    srv.wait()
    write("http_request_to_tls_server", "plain HTTP request sent to a TLS server",
          [[os.path.basename(x) if os.sep in x else x for x in sargs],
           ["python: GET / HTTP/1.1"]], relay.chunks)


# python3 -m http.server answers a ClientHello as an HTTP/0.9 request (a
# bare HTML error page) or HTTP/1.0 depending on the random bytes; this
# handler always answers like a plain HTTP/1.x server: "HTTP/1.0 400 ...".
HTTP_SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def parse_request(self):
        self.request_version = "HTTP/1.0"
        self.command = None
        self.requestline = ""
        self.send_error(400, "Bad request syntax")
        return False
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def tls_to_http(j):
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-c", HTTP_SERVER, str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port)
    relay = Relay(port)
    relay.start()
    cargs = s_client(relay.port, "-tls1_2")
    relay.join(timeout=12)
    srv.kill()
    srv.wait()
    write("tls_client_to_http_server", "TLS ClientHello sent to a plain HTTP server",
          [["python3 http.server.BaseHTTPRequestHandler answering 400 (see gen.py)"], cargs],
          relay.chunks)


def main():
    with tempfile.TemporaryDirectory() as d:
        j = make_pki(d)
        ca = j("ca.pem")
        tls_scenario(j, "tls12_ok_chain", "TLS 1.2 success, leaf + CA chain, client trusts the CA",
                     ["-tls1_2"], ["-tls1_2", "-CAfile", ca, "-verify_return_error"])
        tls_scenario(j, "tls13_ok", "TLS 1.3 success with ALPN",
                     ["-tls1_3", "-alpn", "http/1.1"],
                     ["-tls1_3", "-CAfile", ca, "-verify_return_error", "-alpn", "h2,http/1.1"])
        tls_scenario(j, "tls12_unknown_ca", "TLS 1.2, client does not trust the server's CA",
                     ["-tls1_2"], ["-tls1_2", "-verify_return_error"])
        tls_scenario(j, "tls13_unknown_ca", "TLS 1.3, client does not trust the server's CA",
                     ["-tls1_3"], ["-tls1_3", "-verify_return_error"])
        tls_scenario(j, "version_mismatch", "server only TLS 1.3, client only TLS 1.2",
                     ["-tls1_3"], ["-tls1_2", "-CAfile", ca])
        tls_scenario(j, "no_shared_cipher", "TLS 1.2 with no cipher suite in common",
                     ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"],
                     ["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384", "-CAfile", ca])
        tls_scenario(j, "tls12_mtls_no_client_cert",
                     "TLS 1.2, server requires a client certificate, client has none",
                     ["-tls1_2", "-Verify", "1", "-CAfile", ca],
                     ["-tls1_2", "-CAfile", ca])
        tls_scenario(j, "tls13_mtls_no_client_cert",
                     "TLS 1.3, server requires a client certificate, client has none",
                     ["-tls1_3", "-Verify", "1", "-CAfile", ca],
                     ["-tls1_3", "-CAfile", ca])
        tls_scenario(j, "tls13_hello_retry", "TLS 1.3 HelloRetryRequest (server wants P-256)",
                     ["-tls1_3", "-groups", "P-256"],
                     ["-tls1_3", "-groups", "X25519:P-256", "-CAfile", ca])
        http_request_to_tls(j)
        tls_to_http(j)


if __name__ == "__main__":
    main()
