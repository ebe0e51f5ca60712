#!/usr/bin/env bash
# A TLS 1.3 client that stops reading and sends KeyUpdate requests (each answered by a KeyUpdate of
# the server's) makes the server write without a byte of plaintext arriving: what the client does
# not read must stay under the connection's bound, so reading from it stops, as it does for a
# reader too slow for its responses. 600,000 KeyUpdates ask for 15.6 MB of answers; before, the
# terminator read them all and held the answers (release build: 20 MB more memory).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

# A small ASan quarantine, so freed memory is reused and RSS shows what the terminator keeps.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4"

tt_setup_db
start_backend
make_cert k.test || fail "make_cert k.test"
check "terminator starts" start_terminator --threads 1
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$TERM_PID/status"; }
# Warm up: the first handshakes and requests allocate what every later one reuses.
for i in 1 2 3; do curl -sk --resolve "k.test:$HTTPS_PORT:127.0.0.1" "https://k.test:$HTTPS_PORT/" >/dev/null; done
rss0=$(rss)
python3 "$TT_ROOT/tests/lib/keyupdate_flood.py" "$HTTPS_PORT" k.test 600000 30 >"$T/flood.out" 2>&1 &
FLOOD=$!
TT_PIDS+=("$FLOOD")
check "the flood ran (the server took its KeyUpdates)" wait_until 120 grep -q "^sent" "$T/flood.out"
grow=$(( $(rss) - rss0 ))
sent=$(awk '/^sent/ { print $2 }' "$T/flood.out")
check "the terminator stopped reading from the client (it sent ${sent:-?} of 600000)" test "${sent:-600000}" -lt 600000
# A coarse ceiling (ASan's shadow and quarantine count too); the check above is the bound itself.
check "  ... and its memory grew by less than 24 MiB (${grow} KiB)" test "$grow" -lt 24576
check "another client is served meanwhile" test "$(curl -sk -o /dev/null -w '%{http_code}' --resolve "k.test:$HTTPS_PORT:127.0.0.1" "https://k.test:$HTTPS_PORT/x")" = 200
kill "$FLOOD" 2>/dev/null
wait "$FLOOD" 2>/dev/null
check "no connection left open" wait_until 10 metric_is tracktls_connections_open 0
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
