#!/usr/bin/env python3
"""A backend for terminator tests: HTTP/1.1 with keep-alive; answers every request with JSON
describing what it received (method, path, headers, body), so tests can assert what the
terminator forwarded.
  backend.py PORT
  GET /big?n=N        N bytes of 'x' (Content-Length)
  GET /chunked?n=N    N bytes of 'y' in chunks of 1000
  GET /slow?ms=N      answers after N ms
  GET /upgrade        101 Switching Protocols, then echoes raw bytes until the peer closes
  GET /drop-next      answers, then closes the connection on its next request without answering
                      (a backend closing a kept-alive connection as a request arrives)
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self):
        u = urlparse(self.path)
        q = parse_qs(u.query)
        n = int(q.get("n", ["0"])[0])
        body = b""
        length = self.headers.get("Content-Length")
        if length:
            body = self.rfile.read(int(length))
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
        if getattr(self, "drop", False):
            self.close_connection = True
            return
        if u.path == "/upgrade":
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "echo")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            while True:
                data = self.connection.recv(4096)
                if not data:
                    return
                self.connection.sendall(data)
        if u.path == "/drop-next":
            self.drop = True
        if u.path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000)
        if u.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = n
            while left > 0:
                c = min(1000, left)
                self.wfile.write(b"%x\r\n" % c + b"y" * c + b"\r\n")
                left -= c
            self.wfile.write(b"0\r\n\r\n")
            return
        if u.path == "/big":
            out = b"x" * n
            ctype = "application/octet-stream"
        else:
            out = json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
            }).encode()
            ctype = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = reply


if __name__ == "__main__":
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
