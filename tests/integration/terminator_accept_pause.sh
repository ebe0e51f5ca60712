#!/usr/bin/env bash
# Out of descriptors, a loop pauses its accepts (ACCEPT_PAUSED) instead of spinning on EMFILE, and
# arms them again once connections closed: a terminator limited to a few descriptors, flooded with
# idle connections, logs accept_paused, and still serves a request made during the flood once the
# idle ones are gone; with each loop's listeners closed at a drain, it then exits 0.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

# Enough for start-up (database connections, rings, listeners), far fewer than the flood.
FD_LIMIT=128
FLOOD=400
tt_setup_db
start_backend
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
bg prlimit --nofile=$FD_LIMIT:$FD_LIMIT "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$METRICS_PORT" \
	--threads 2 --user nobody >>"$T/terminator.log" 2>&1
TERM_PID=$!
check "a terminator limited to $FD_LIMIT descriptors starts" wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"

# FLOOD idle connections, held until this script kills the holder.
bg python3 -c '
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]
print("held", flush=True)
time.sleep(600)
' "$HTTP_PORT" "$FLOOD" >"$T/flood.out"
FLOOD_PID=$!
check "$FLOOD idle connections are open" wait_until 15 grep -q held "$T/flood.out"
check "it runs out of descriptors and pauses accepting" wait_until 15 grep -q "event=accept_paused .*error=" "$T/terminator.log"
# Waits in the listener's queue behind the flood.
curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'Host: plain.test' "http://127.0.0.1:$HTTP_PORT/during" >"$T/during.code" &
CURL_PID=$!
kill "$FLOOD_PID"
wait "$CURL_PID"
check "a request made during the pause is served once the flood is gone ($(cat "$T/during.code"))" test "$(cat "$T/during.code")" = 200
check "  ... and so is the next one" test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: plain.test' "http://127.0.0.1:$HTTP_PORT/after")" = 200
check "nothing is left open" wait_until 10 test "$(metric tracktls_connections_open)" = 0
kill -TERM "$TERM_PID"
wait "$TERM_PID"; rc=$?
check "it drains and exits 0 ($rc)" test "$rc" = 0
