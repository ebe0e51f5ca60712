#!/usr/bin/env bash
# terminator SIGTERM drain: /healthz turns 503 at once, the listeners close, an idle keep-alive
# connection is closed at once, a request in flight finishes (its response says Connection: close),
# exit 0 when the last one is done; past --drain-timeout what is left is closed and counted.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
check "terminator starts" start_terminator
client() { python3 "$TT_ROOT/tests/lib/tls_client.py" "$HTTPS_PORT" a.test "$T/a.test.pem" "$@"; }

client / >"$T/idle.out" &
IDLE=$!
wait_until 10 grep -q idle "$T/idle.out"
client /slow?ms=2000 >"$T/slow.out" &
SLOW=$!
# The slow request is with the backend once the terminator counted it.
wait_until 10 metric_at_least tracktls_requests_total 2
start=$(date +%s%N)
kill -TERM "$TERM_PID"
health_503() { test "$(curl -s -o "$T/health.body" -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/healthz")" = 503; }
check "/healthz answers 503 at once when draining (within a second)" wait_until 1 health_503
check "  ... saying so" grep -q draining "$T/health.body"
check "the listener closes: new connections are refused" wait_until 5 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$HTTPS_PORT)"
wait "$IDLE"
# From the signal to the client seeing the close, by the client's clock: not the time this script
# spent in the checks above.
idle_ms=$(awk -v s="$start" '/^eof/ { sub("wall=", "", $3); printf "%d", $3 * 1000 - s / 1000000 }' "$T/idle.out")
idle_ms=${idle_ms:-99999} # no eof line: this check fails, and the next one says why
check "an idle keep-alive connection is closed at once (${idle_ms} ms)" test "$idle_ms" -lt 1500
check "  ... cleanly, at a request boundary" grep -q "^eof" "$T/idle.out"
wait "$SLOW"
check "the request in flight gets its answer" grep -q "^response 200" "$T/slow.out"
check "  ... with Connection: close" grep -q "^response 200 connection=close" "$T/slow.out"
check "  ... then the connection closes" grep -q "^eof" "$T/slow.out"
wait "$TERM_PID"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "the terminator exits 0 once drained ($rc, ${ms} ms)" test "$rc" = 0 -a "$ms" -lt 10000
check "draining start is logged" grep -q "event=draining signal=TERM" "$T/terminator.log"
check "  ... and its end, with nothing closed early" grep -q "event=drained .*closed_early=0" "$T/terminator.log"

# Past the deadline, what is left is closed.
check "terminator starts with --drain-timeout 1s" start_terminator --drain-timeout 1s
client /slow?ms=8000 >"$T/late.out" &
LATE=$!
wait_until 10 metric_at_least tracktls_requests_total 1
start=$(date +%s%N)
kill -TERM "$TERM_PID"
wait "$TERM_PID"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "with a request still in flight it exits 0 at --drain-timeout ($rc, ${ms} ms)" test "$rc" = 0 -a "$ms" -ge 900 -a "$ms" -lt 4000
check "  ... counting what it closed" grep -q "event=drained .*closed_early=1" "$T/terminator.log"
wait "$LATE"
check "  ... and that client sees its connection end without an answer" bash -c "! grep -q ^response '$T/late.out' && grep -q '^eof\|^error' '$T/late.out'"

# A second signal while draining stops at once.
check "terminator starts again" start_terminator
client /slow?ms=8000 >"$T/late2.out" &
wait_until 10 metric_at_least tracktls_requests_total 1
start=$(date +%s%N)
kill -TERM "$TERM_PID"
draining_logged() { test "$(grep -c "event=draining" "$T/terminator.log")" = 3; }
wait_until 5 draining_logged
kill -INT "$TERM_PID"
wait "$TERM_PID"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a second signal while draining stops at once ($rc, ${ms} ms)" test "$rc" = 0 -a "$ms" -lt 3000
