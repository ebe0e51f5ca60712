#!/usr/bin/env python3
# Opens the sealed key of a domain's current certificate, independently of the C code, to prove
# what the issuer stored: envelope = version(1) | key id(4) | nonce(12) | ciphertext | tag(16),
# AES-256-GCM with AAD = the first 17 bytes + "tracktls/cert/NAME/ID".
#   open_sealed.py KEYRING NAME   (database from TRACKTLS_DB) -> the PEM key on stdout
import os, subprocess, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

keys = {}
for line in open(sys.argv[1]):
    line = line.split('#')[0].split()
    if len(line) == 2:
        keys[int(line[0])] = bytes.fromhex(line[1])
name = sys.argv[2]
row = subprocess.run(['psql', '-qAtX', '-d', os.environ['TRACKTLS_DB'], '-c',
                      "SELECT c.id, encode(c.sealed_key, 'hex') FROM domains d JOIN certificates c"
                      " ON c.id = d.current_cert_id WHERE d.name = '%s'" % name.replace("'", "")],
                     capture_output=True, text=True, check=True).stdout.strip()
cid, blob = row.split('|')
blob = bytes.fromhex(blob)
kid = int.from_bytes(blob[1:5], 'big')
aad = blob[:17] + ('tracktls/cert/%s/%s' % (name, cid)).encode()
sys.stdout.write(AESGCM(keys[kid]).decrypt(blob[5:17], blob[17:], aad).decode())
