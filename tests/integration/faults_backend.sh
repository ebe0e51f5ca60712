#!/usr/bin/env bash
# The backend down or hanging: clients get 502 at once, or 504 within the configured backend
# timeout, on both ports; the terminator's memory stays flat across many such requests.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
make_cert b.test
# A backend that accepts and never answers.
bg python3 "$TT_ROOT/tests/lib/black_hole.py" 127.0.0.1 "$BACKEND_PORT"
wait_until 10 port_open 127.0.0.1 "$BACKEND_PORT"
# A small ASan quarantine, so freed memory is reused and RSS shows what the terminator keeps.
export ASAN_OPTIONS="${ASAN_OPTIONS:-}:quarantine_size_mb=4"
check "terminator starts" start_terminator --backend-timeout 1s --backend-connect-timeout 1s
R=(--cacert "$T/b.test.pem" --resolve "b.test:$HTTPS_PORT:127.0.0.1")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$TERM_PID/status"; }

out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "${R[@]}" "https://b.test:$HTTPS_PORT/hang")
check "HTTPS, backend accepts and never answers: 504 within the 1 s timeout ($out)" \
	python3 -c "c, t = '$out'.split(); assert c == '504' and 0.9 <= float(t) < 2.5"
out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$HTTP_PORT/hang")
check "plain HTTP, same: 504 ($out)" python3 -c "c, t = '$out'.split(); assert c == '504' and 0.9 <= float(t) < 2.5"

# Many hanging requests, 50 at a time; RSS after a first round and after five more. One curl runs
# a round (a process per request cost more than the requests), and each request still gets a
# connection and a full handshake of its own, as from separate clients.
round() {
	local i codes urls=()
	for i in $(seq 1 "$1"); do urls+=(-o /dev/null "https://b.test:$HTTPS_PORT/r$i"); done
	codes=$(curl -s --parallel --parallel-max 50 --no-sessionid -H 'Connection: close' -w '%{http_code}\n' \
		--max-time 5 "${R[@]}" "${urls[@]}" | sort | uniq -c | awk '{print $2 "x" $1}')
	echo "$codes"
}
first=$(round 100)
# The receive-buffer ring (1,024 x 8 KiB per thread) becomes resident as the kernel cycles through
# it: warm up until RSS stops growing (two rounds under 128 KiB), then measure.
prev=$(rss) calm=0
for r in $(seq 1 40); do
	round 100 >/dev/null
	now=$(rss)
	if [ $((now - prev)) -lt 128 ]; then calm=$((calm + 1)); else calm=0; fi
	prev=$now
	[ "$calm" -ge 2 ] && break
done
echo "warm-up: $((r * 100 + 100)) requests"
rss1=$(rss)
for r in 1 2 3 4 5; do out=$(round 100); [ "$out" = 504x100 ] || echo "round $r: $out"; echo "rss after round $r: $(rss) KiB, $(ls /proc/$TERM_PID/fd | wc -l) fds" >&2; done >"$T/rounds"
rss2=$(rss)
echo "rss after warm-up: $rss1 KiB; after 500 more: $rss2 KiB"
check "100 concurrent hanging requests all get 504 ($first)" test "$first" = 504x100
check "  ... and 500 more ($(cat "$T/rounds"))" test ! -s "$T/rounds"
check "RSS stays flat across 500 more 504s once warm (${rss1} -> ${rss2} KiB, under 1 MiB growth)" test $((rss2 - rss1)) -lt 1024
check "backend timeouts counted" test "$(metric tracktls_backend_timeouts_total)" -ge 702
check "no connection left open" wait_until 5 metric_is tracktls_connections_open 0

# Backend down: connection refused, 502 at once.
kill "${TT_PIDS[0]}"; wait "${TT_PIDS[0]}" 2>/dev/null
wait_until 5 bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$BACKEND_PORT) 2>/dev/null"
out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "${R[@]}" "https://b.test:$HTTPS_PORT/down")
check "backend down: 502 at once ($out)" python3 -c "c, t = '$out'.split(); assert c == '502' and float(t) < 0.5"
for r in 1 2 3; do out=$(round 100 | sed 's/502x100//'); [ -z "$out" ] || echo "down round $r: $out"; done >"$T/down"
rss3=$(rss)
check "300 more with the backend down: all 502 ($(cat "$T/down"))" test ! -s "$T/down"
check "RSS flat with the backend down (${rss2} -> ${rss3} KiB)" test $((rss3 - rss2)) -lt 2048
check "backend errors counted" test "$(metric tracktls_backend_errors_total)" -ge 301
start_backend
check "backend back: 200" test "$(curl -s -o /dev/null -w '%{http_code}' "${R[@]}" "https://b.test:$HTTPS_PORT/up")" = 200
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
