#!/usr/bin/env python3
"""A TLS client whose timing tests control: sends HTTP/1.1 requests on one kept-alive connection
and reports, one line each, what happened and when (seconds since start, and the wall clock), for
drain scenarios.
  tls_client.py PORT NAME CAFILE PATH [PATH...]   then waits for the server to close
Prints: "response STATUS connection=VALUE t=SECONDS" per response, "eof t=SECONDS" when the server
closes, "error KIND t=SECONDS" on a reset or a timeout (60 s); each line ends with wall=EPOCH_SECONDS."""
import socket
import ssl
import sys
import time

port, name, cafile, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
t0 = time.monotonic()


def say(msg):
    print(f"{msg} t={time.monotonic() - t0:.3f} wall={time.time():.3f}", flush=True)


ctx = ssl.create_default_context(cafile=cafile)
raw = socket.create_connection(("127.0.0.1", port))
s = ctx.wrap_socket(raw, server_hostname=name)
s.settimeout(60)
f = s.makefile("rb")
try:
    for p in paths:
        s.sendall(f"GET {p} HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        first = f.readline().split()
        if len(first) < 2:
            say("eof")
            sys.exit(0)
        status = first[1].decode()
        conn, length = "-", 0
        while True:
            line = f.readline()
            if line in (b"\r\n", b""):
                break
            k, _, v = line.decode().partition(":")
            if k.lower() == "connection":
                conn = v.strip()
            if k.lower() == "content-length":
                length = int(v)
        f.read(length)
        say(f"response {status} connection={conn}")
    say("idle")
    say("eof" if f.read(1) == b"" else "data")
except (ConnectionResetError, ssl.SSLError) as e:
    say(f"error {type(e).__name__}")
except socket.timeout:
    say("error timeout")
