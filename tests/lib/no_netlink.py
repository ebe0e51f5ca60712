#!/usr/bin/env python3
"""Runs a command that may not open netlink sockets: socket(AF_NETLINK, ...) fails with
EAFNOSUPPORT, as under systemd's RestrictAddressFamilies= without AF_NETLINK (which uses the same
seccomp filter). no_netlink.py COMMAND [ARG...]. Uses libseccomp (libseccomp2, which apt needs)."""
import ctypes
import errno
import os
import socket
import sys

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO = 0x00050000
SCMP_CMP_EQ = 4


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp (seccomp.h)."""
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]


lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint,
                                       ctypes.POINTER(ArgCmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]

ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
if not ctx:
    sys.exit("no_netlink: seccomp_init failed")
domain_is_netlink = ArgCmp(0, SCMP_CMP_EQ, socket.AF_NETLINK, 0)
rc = lib.seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO | errno.EAFNOSUPPORT,
                                lib.seccomp_syscall_resolve_name(b"socket"), 1,
                                ctypes.byref(domain_is_netlink))
if rc < 0 or lib.seccomp_load(ctx) < 0:
    sys.exit(f"no_netlink: cannot load the filter ({rc})")
os.execvp(sys.argv[1], sys.argv[1:])
