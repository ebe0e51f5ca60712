#!/usr/bin/env bash
# 2,000 slow clients at once (silent TLS connections, ClientHellos and plain-HTTP heads trickled a
# byte every half second) while good clients do full handshakes: every good request is served,
# every slow client is closed by its timeout, and nothing stays open. (The handshake rate under
# this load is measured in bench/slowloris.sh, with 10,000 slow clients.)
# exclusive: 2,000 slow clients, each checked to be closed no later than 3 s after its timeout; the
# test itself loads both cores, and other tests beside it push the closes past that bound.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert fast.test
check "terminator starts" start_terminator --handshake-timeout 8s --header-timeout 8s
R=(--cacert "$T/fast.test.pem" --resolve "fast.test:$HTTPS_PORT:127.0.0.1")
rss() { awk '/^VmRSS/ {print $2}' "/proc/$TERM_PID/status"; }
curl -s -o /dev/null "${R[@]}" "https://fast.test:$HTTPS_PORT/warm"
rss0=$(rss)

python3 "$TT_ROOT/tests/lib/slowloris.py" "$HTTPS_PORT" "$HTTP_PORT" 800 600 600 --interval 0.5 --limit 15 >"$T/slow.json" &
SLOW=$!
check "2,000 slow connections are open at once" wait_until 10 metric_at_least tracktls_connections_open 1900
rss_peak=$(rss)

# One curl makes them in turn (no process start between them, which a loaded machine makes slow
# enough to outlast the slow clients' 8 s), each on a new connection with a full handshake.
urls=()
for i in $(seq 1 30); do urls+=(-o /dev/null "https://fast.test:$HTTPS_PORT/g$i"); done
curl -s --no-sessionid -H 'Connection: close' -w '%{http_code} %{time_total}\n' --max-time 3 "${R[@]}" "${urls[@]}" >"$T/good.txt"
open_during=$(metric tracktls_connections_open)
read -r ok worst < <(awk '$1 == 200 { ok++ } $2 > worst { worst = $2 } END { print ok + 0, worst + 0 }' "$T/good.txt")
check "30 full-handshake requests, one after another, all served while they hang on (slowest ${worst}s)" test "$ok" = 30
check "  ... the slow clients were still there when the last one was served ($open_during open)" test "$open_during" -ge 1500

wait "$SLOW"
cat "$T/slow.json"
check "every slow client was closed by the server, none earlier than its timeout, none later than 3 s past it" python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
for k, v in d.items():
    assert v["closed"] == v["opened"] > 0, (k, v)
    assert 7.5 <= v["min_from_start"] and v["max"] <= 11, (k, v)
' "$T/slow.json"
check "handshake timeouts counted" test "$(metric 'tracktls_timeouts_total{phase="handshake"}')" -ge 1400
check "header timeouts counted" test "$(metric 'tracktls_timeouts_total{phase="header"}')" -ge 600
check "nothing is left open" wait_until 10 metric_is tracktls_connections_open 0
echo "rss: ${rss0} KiB before, ${rss_peak} KiB with 2,000 slow connections, $(rss) KiB after"
check "memory held by 2,000 slow connections is bounded (RSS grew $(( (rss_peak - rss0) / 1024 )) MiB, under 64 MiB)" \
	test $((rss_peak - rss0)) -lt 65536
check "served after the storm" test "$(curl -s -o /dev/null -w '%{http_code}' "${R[@]}" "https://fast.test:$HTTPS_PORT/after")" = 200
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
