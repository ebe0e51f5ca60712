#!/usr/bin/env python3
"""A TCP listener that accepts every connection and never answers (nor closes) it: a peer that
hangs. black_hole.py ADDR PORT [--reuseport]; with --reuseport, a process of the same user may
bind the port too (a terminator at a narrower address of the port, as a restart from a wildcard
listener would)."""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sys.argv[3:] == ["--reuseport"]:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
