#!/usr/bin/env python3
"""A TCP listener that accepts every connection and never answers (nor closes) it: a peer that
hangs. black_hole.py ADDR PORT [--reuseport] [--v6only]; with --reuseport, a process of the same
user may bind the port too (a terminator at a narrower address of the port, as a restart from a
wildcard listener would); with --v6only an IPv6 listener takes IPv6 connections alone."""
import socket
import sys

flags = set(sys.argv[3:])
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if "--reuseport" in flags:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if "--v6only" in flags:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(4096)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
