#!/usr/bin/env bash
# Attack 1 of issue 11: one write of ~275 KB of pipelined challenge requests to port 80 (a first
# lookup that goes to the database, then 5,000 requests answered at once from memory) must be
# worked off by a loop, not by recursion: the process lives, the attacker gets its answers in
# order as far as it reads them, and another client is served meanwhile and after.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
check "terminator starts" start_terminator --threads 1
# The exact bytes from the issue: a well-formed token (43 base64url characters) first, then
# 5,000 requests with an invalid token, which are refused without a query.
python3 - "$T/flood" <<'PY'
import sys
first = b"GET /.well-known/acme-challenge/" + b"A" * 43 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
rest = b"GET /.well-known/acme-challenge/! HTTP/1.1\r\nHost: x\r\n\r\n" * 5000
open(sys.argv[1], "wb").write(first + rest)
PY
size=$(stat -c %s "$T/flood")
check "the flood is the issue's size ($size bytes)" test "$size" -gt 270000
# The attacker writes it all in one go and reads every answer.
python3 "$TT_ROOT/tests/lib/rawclient.py" "$HTTP_PORT" --timeout 10 <"$T/flood" >"$T/answers" &
flood=$!
out=$(curl -s --max-time 10 "http://127.0.0.1:$HTTP_PORT/other")
wait "$flood"
check "the terminator is alive after the flood" kill -0 "$TERM_PID"
check "a second client, during the flood, gets its own answer" grep -q '"path": "/other"' <<<"$out"
out=$(curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT/after")
check "a client after the flood gets its own answer" grep -q '"path": "/after"' <<<"$out"
n=$(grep -c '^HTTP/1.1 404' "$T/answers")
check "the attacker got one 404 per pipelined request, all 5,001 ($n)" test "$n" = 5001
check "no connection left open" wait_until 5 metric_is tracktls_connections_open 0
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
