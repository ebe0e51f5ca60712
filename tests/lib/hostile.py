#!/usr/bin/env python3
"""Hostile TLS clients for hardening tests: sends one malformed or outdated ClientHello shape and
reports how the server ended the connection, one line: "KIND alert=N|close|timeout|data SECONDS".
Real ClientHellos come from Python's OpenSSL through a memory BIO, then get mangled.
  hostile.py PORT NAME KIND [--timeout S]
  KIND: truncated, oversized_record, garbage, sslv2, sslv3, tls10_record, zero_record,
        wrong_type, bad_lengths, sni_nul, sni_long, split_hello, many_sni, empty_sni
  hostile.py PORT NAME names N   N handshakes with random unknown names; prints how many got an alert
  hostile.py PORT NAME burst N KIND[,KIND...] [--timeout S]
                                 N connections at once, the i-th sending the (i mod count)-th KIND;
                                 a line per connection as above
"""
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time


def client_hello(name, tls_max=None, ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    if tls_max:
        ctx.minimum_version = tls_max
        ctx.maximum_version = tls_max
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def record(body, ctype=0x16, version=b"\x03\x01"):
    return bytes([ctype]) + version + struct.pack(">H", len(body)) + body


def replace_sni(hello, name_bytes):
    """Rebuilds a one-record ClientHello with the server_name extension carrying name_bytes."""
    body = bytearray(hello[5:])
    p = 4 + 2 + 32
    p += 1 + body[p]
    p += 2 + struct.unpack(">H", body[p:p + 2])[0]
    p += 1 + body[p]
    ext_start = p + 2
    ext_end = ext_start + struct.unpack(">H", body[p:p + 2])[0]
    exts = []
    q = ext_start
    while q < ext_end:
        etype, elen = struct.unpack(">HH", body[q:q + 4])
        exts.append((etype, bytes(body[q + 4:q + 4 + elen])))
        q += 4 + elen
    new = b""
    for etype, edata in exts:
        if etype == 0:
            if name_bytes is None:
                edata = b""
            else:
                entries = b"".join(b"\x00" + struct.pack(">H", len(n)) + n for n in name_bytes)
                edata = struct.pack(">H", len(entries)) + entries
        new += struct.pack(">HH", etype, len(edata)) + edata
    hs = bytes(body[4:ext_start - 2]) + struct.pack(">H", len(new)) + new
    return record(b"\x01" + struct.pack(">I", len(hs))[1:] + hs, version=hello[1:3])


def shape(kind, name):
    good = client_hello(name)
    if kind == "truncated":
        return good[:len(good) // 2], True
    if kind == "oversized_record":
        return b"\x16\x03\x01\xff\xff" + os.urandom(4000), False
    if kind == "garbage":
        return b"\x00" + os.urandom(2999), False
    if kind == "wrong_type":
        return b"\x17" + good[1:], False
    if kind == "zero_record":
        return b"\x16\x03\x01\x00\x00", False
    if kind == "sslv2":
        # SSLv2-format CLIENT-HELLO: 2-byte length with the high bit set, type 1, version 3.1.
        ciphers = b"\x00\x00\x2f\x00\x00\x35\x00\x00\x0a"
        challenge = os.urandom(16)
        msg = b"\x01\x03\x01" + struct.pack(">HHH", len(ciphers), 0, len(challenge)) + ciphers + challenge
        return struct.pack(">H", 0x8000 | len(msg)) + msg, False
    if kind == "sslv3":
        # OpenSSL 3 cannot send SSLv3: a TLS 1.0 hello with both version fields set to 3.0.
        h = bytearray(client_hello(name, ssl.TLSVersion.TLSv1, "DEFAULT@SECLEVEL=0"))
        h[1:3] = b"\x03\x00"
        h[9:11] = b"\x03\x00"
        return bytes(h), False
    if kind == "tls10_record":
        return client_hello(name, ssl.TLSVersion.TLSv1, "DEFAULT@SECLEVEL=0"), False
    if kind == "bad_lengths":
        # Record length right, inner handshake length claiming more than the record holds.
        h = bytearray(good)
        h[6:9] = b"\x00\xff\xff"
        return bytes(h), False
    if kind == "sni_nul":
        return replace_sni(good, [name.encode() + b"\x00.evil"]), False
    if kind == "sni_long":
        return replace_sni(good, [b"a" * 63 + b"." + b"b" * 63 + b"." + b"c" * 63 + b"." + b"d" * 80]), False
    if kind == "many_sni":
        return replace_sni(good, [b"x%d.test" % i for i in range(200)]), False
    if kind == "empty_sni":
        return replace_sni(good, None), False
    if kind == "split_hello":
        # A legal ClientHello split over two records (RFC 8446 5.1).
        body = good[5:]
        return record(body[:40]) + record(body[40:]), False
    raise SystemExit("unknown kind " + kind)


def outcome(port, data, half_close, timeout):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.time()
    try:
        s.sendall(data)
        if half_close:
            s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        return "timeout", time.time() - t0
    except (ConnectionResetError, BrokenPipeError):
        got = got if "got" in dir() else b""
        return ("close" if not got else "data"), time.time() - t0
    finally:
        s.close()
    dt = time.time() - t0
    if not got:
        return "close", dt
    if got[0] == 0x15 and len(got) >= 7:
        return "alert=%d" % got[6], dt
    return "data", dt


def main():
    port, name, kind = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    timeout = 8.0
    if "--timeout" in sys.argv:
        timeout = float(sys.argv[sys.argv.index("--timeout") + 1])
    if kind == "names":
        n, alerts = int(sys.argv[4]), 0
        for _ in range(n):
            rnd = "%016x.flood.test" % random.getrandbits(64)
            how, _ = outcome(port, client_hello(rnd), False, timeout)
            alerts += how.startswith("alert=")
        print(alerts)
        return
    if kind == "burst":
        n, kinds = int(sys.argv[4]), sys.argv[5].split(",")
        ready = threading.Barrier(n)
        lines = []

        def one(k):
            data, half_close = shape(k, name)
            ready.wait()
            how, dt = outcome(port, data, half_close, timeout)
            lines.append("%s %s %.2f" % (k, how, dt))

        threads = [threading.Thread(target=one, args=(kinds[i % len(kinds)],)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print("\n".join(lines))
        return
    data, half_close = shape(kind, name)
    how, dt = outcome(port, data, half_close, timeout)
    print("%s %s %.2f" % (kind, how, dt))


main()
