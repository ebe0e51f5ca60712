#!/usr/bin/env python3
"""A TCP listener that accepts every connection and never answers (nor closes) it: a peer that
hangs. black_hole.py ADDR PORT"""
import socket
import sys

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
