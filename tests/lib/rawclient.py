#!/usr/bin/env python3
"""Sends raw bytes to a TCP port and prints what comes back until the peer closes (or a timeout),
for tests that need exact requests: pipelining, malformed heads, smuggling shapes.
  rawclient.py PORT [--tls NAME] [--timeout S] < request-bytes
"""
import socket
import ssl
import sys


def main():
    port = int(sys.argv[1])
    args = sys.argv[2:]
    timeout = 5.0
    tls_name = None
    while args:
        a = args.pop(0)
        if a == "--timeout":
            timeout = float(args.pop(0))
        elif a == "--tls":
            tls_name = args.pop(0)
    data = sys.stdin.buffer.read()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls_name:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=tls_name)
    s.sendall(data)
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        pass
    sys.stdout.buffer.write(out)


main()
