#!/usr/bin/env python3
# Opens the sealed key of a domain's current certificate, independently of the C code, to prove
# what the issuer stored: envelope = version(1) | key id(4) | nonce(12) | ciphertext | tag(16),
# AES-256-GCM with AAD = the first 17 bytes + "tracktls/cert/NAME/ID".
#   open_sealed.py KEYRING NAME     (database from TRACKTLS_DB) -> the PEM key on stdout
#   open_sealed.py KEYRING --match  every domain with a current certificate, in one query: a line
#                                   "NAME ok" when its key opens and its public key is the
#                                   certificate's, else "NAME bad: WHY"
import os, subprocess, sys
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

keys = {}
for line in open(sys.argv[1]):
    line = line.split('#')[0].split()
    if len(line) == 2:
        keys[int(line[0])] = bytes.fromhex(line[1])


def rows(where):
    out = subprocess.run(['psql', '-qAtX', '-d', os.environ['TRACKTLS_DB'], '-c',
                          "SELECT d.name, c.id, encode(c.sealed_key, 'hex'), encode(convert_to(c.chain_pem, 'UTF8'), 'hex')"
                          " FROM domains d JOIN certificates c ON c.id = d.current_cert_id WHERE " + where],
                         capture_output=True, text=True, check=True).stdout
    return [line.split('|') for line in out.splitlines()]


def open_key(name, cid, blob):
    blob = bytes.fromhex(blob)
    kid = int.from_bytes(blob[1:5], 'big')
    aad = blob[:17] + ('tracktls/cert/%s/%s' % (name, cid)).encode()
    return AESGCM(keys[kid]).decrypt(blob[5:17], blob[17:], aad)


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


if sys.argv[2] == '--match':
    for name, cid, blob, chain in rows('true'):
        try:
            key = serialization.load_pem_private_key(open_key(name, cid, blob), None)
            leaf = x509.load_pem_x509_certificate(bytes.fromhex(chain))  # the first: the leaf
            print('%s %s' % (name, 'ok' if spki(key.public_key()) == spki(leaf.public_key()) else 'bad: another key'))
        except Exception as e:  # any failure to open or parse is a finding, not a crash
            print('%s bad: %s' % (name, type(e).__name__))
else:
    name = sys.argv[2]
    found = list(rows("d.name = '%s'" % name.replace("'", "")))
    sys.stdout.write(open_key(name, found[0][1], found[0][2]).decode())
