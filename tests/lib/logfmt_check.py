#!/usr/bin/env python3
"""Checks a log file: every line is one logfmt record (key=value pairs; a value is bare, or quoted
with \\" \\\\ \\n \\xHH escapes). With EVENT, prints that event's fields as JSON (the first one)
and fails when there is none.
    logfmt_check.py LOG [EVENT]"""
import json
import re
import sys

PAIR = re.compile(r'([A-Za-z_][A-Za-z0-9_.-]*)=("(?:[^"\\]|\\.)*"|[^\s"\\]*)(?: |$)')


def unquote(v):
    if not v.startswith('"'):
        return v
    return re.sub(r'\\(x[0-9a-f]{2}|.)',
                  lambda m: {'n': '\n'}.get(m.group(1), chr(int(m.group(1)[1:], 16))
                                            if m.group(1).startswith('x') else m.group(1)), v[1:-1])


def parse(line):
    fields, pos = {}, 0
    while pos < len(line):
        m = PAIR.match(line, pos)
        if not m:
            return None
        fields[m.group(1)] = unquote(m.group(2))
        pos = m.end()
    return fields


def main():
    want = sys.argv[2] if len(sys.argv) > 2 else None
    found = None
    with open(sys.argv[1], encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            fields = parse(line)
            if not fields or "ts" not in fields or "event" not in fields:
                sys.exit(f"line {n} is not a logfmt record: {line!r}")
            if want and found is None and fields["event"] == want:
                found = fields
    if want:
        if found is None:
            sys.exit(f"no event={want}")
        print(json.dumps(found))


main()
