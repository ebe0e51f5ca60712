#!/usr/bin/env python3
"""A backend that answers before it has read a request's body, as nginx and most tracking
endpoints do, keeps the connection alive, then discards the body by its Content-Length before it
reads the next request. Every request line it parses is recorded, with the connection it came on and the framing and
forwarding headers it saw.
  early_backend.py PORT RECORD-FILE
The answer is JSON: {"path": ..., "conn": N, "xff": X-Forwarded-For or null}.
"""
import json
import socket
import sys
import threading

lock = threading.Lock()
conns = [0]


def record(path, line):
    with lock:
        with open(path, "a") as f:
            f.write(line + "\n")


def serve(c, n, rec):
    f = c.makefile("rb")
    try:
        while True:
            line = f.readline()
            if not line:
                return
            if line in (b"\r\n", b"\n"):
                continue
            headers = {}
            while True:
                h = f.readline()
                if not h or h in (b"\r\n", b"\n"):
                    break
                k, _, v = h.decode("latin-1").partition(":")
                headers[k.strip().lower()] = v.strip()
            reqline = line.decode("latin-1").strip()
            framing = " ".join("%s=%s" % (k, headers[k]) for k in ("transfer-encoding", "content-length", "x-forwarded-for") if k in headers)
            odd = " ".join(k for k in headers if "_" in k)
            record(rec, "conn=%d %s | %s%s" % (n, reqline, framing, " underscore=" + odd if odd else ""))
            parts = reqline.split(" ")
            path = parts[1] if len(parts) > 1 else ""
            body = json.dumps({"path": path, "conn": n, "xff": headers.get("x-forwarded-for")}).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            left = int(headers.get("content-length", "0") or 0)
            while left > 0:
                chunk = f.read(min(left, 65536))
                if not chunk:
                    return
                left -= len(chunk)
    except OSError:
        pass  # the proxy reset the connection: nothing more comes on it
    finally:
        c.close()


def main():
    port, rec = int(sys.argv[1]), sys.argv[2]
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    while True:
        c, _ = s.accept()
        conns[0] += 1
        threading.Thread(target=serve, args=(c, conns[0], rec), daemon=True).start()


main()
