#!/usr/bin/env python3
"""Scans files for clear private keys: PEM markers, and P-256 keys in DER (SEC1 and PKCS#8
prefixes) raw, hex-encoded (as pg_dump writes bytea) or base64-encoded (a PEM body without its
armour). Prints each hit as "PATH: WHAT" and exits 1 if there is any.
  keyscan.py PATH... [--exclude PATH]...
"""
import base64
import os
import sys

SEC1 = bytes.fromhex("30770201010420")
PKCS8 = bytes.fromhex("308187020100301306072a8648ce3d020106082a8648ce3d030107")
NEEDLES = [(b"PRIVATE KEY", "PEM marker")]
for name, der in (("SEC1", SEC1), ("PKCS#8", PKCS8)):
    NEEDLES.append((der, name + " DER"))
    NEEDLES.append((der.hex().encode(), name + " DER, hex"))
    NEEDLES.append((der.hex().upper().encode(), name + " DER, HEX"))
    # base64 of the prefix at each of the three alignments, without the partial groups; an
    # unaligned needle under 16 characters would match inside any certificate's base64.
    for shift in range(3):
        b = base64.b64encode(b"\0" * shift + der)[4 if shift else 0:]
        b = b[:len(b) - 4]
        if shift == 0 or len(b) >= 16:
            NEEDLES.append((b, name + " DER, base64"))


def scan(path, hits):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return
    for needle, what in NEEDLES:
        if needle in data:
            hits.append("%s: %s" % (path, what))


def main():
    args, excludes = [], []
    it = iter(sys.argv[1:])
    for a in it:
        if a == "--exclude":
            excludes.append(os.path.realpath(next(it)))
        else:
            args.append(a)
    hits, files = [], 0
    for top in args:
        for root, dirs, names in os.walk(top) if os.path.isdir(top) else [(os.path.dirname(top), [], [os.path.basename(top)])]:
            dirs[:] = [d for d in dirs if os.path.realpath(os.path.join(root, d)) not in excludes]
            for n in names:
                p = os.path.join(root, n)
                if os.path.realpath(p) in excludes or not os.path.isfile(p):
                    continue
                files += 1
                scan(p, hits)
    for h in hits:
        print(h)
    print("scanned %d files, %d hits" % (files, len(hits)), file=sys.stderr)
    sys.exit(1 if hits else 0)


main()
