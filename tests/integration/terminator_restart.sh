#!/usr/bin/env bash
# Zero-downtime restart: a new terminator binds the same ports (SO_REUSEPORT) while the old one
# drains on SIGTERM. HTTPS load (new connections and kept-alive ones) runs across three restarts:
# no connection refused or reset, no failed request.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
# start_on METRICS_PORT: a terminator on the shared ports; its pid in $NEW_PID.
start_on() {
	bg "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$1" --threads 2 --user nobody \
		>>"$T/terminator.$1.log" 2>&1
	NEW_PID=$!
	wait_until 15 curl -sf "http://127.0.0.1:$1/healthz"
}
M=$(free_port)
check "first terminator starts" start_on "$M"
OLD_PID=$NEW_PID OLD_M=$M

URL=https://a.test:$HTTPS_PORT
CURL=(curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 --cacert "$T/a.test.pem" --resolve "a.test:$HTTPS_PORT:127.0.0.1")
# A new connection per request, and ten requests per kept-alive connection; curl's exit status
# tells a refused connection (7), a TLS failure (35) or a reset (52, 56) apart.
fresh() { while [ ! -f "$T/stop" ]; do "${CURL[@]}" "$URL/fresh"; echo "rc=$?"; done >"$T/load.$1"; }
kept() {
	while [ ! -f "$T/stop" ]; do
		"${CURL[@]}" "$URL/k1" -o /dev/null "$URL/k2" -o /dev/null "$URL/k3" -o /dev/null "$URL/k4" -o /dev/null \
			"$URL/k5" -o /dev/null "$URL/k6" -o /dev/null "$URL/k7" -o /dev/null "$URL/k8" -o /dev/null \
			"$URL/k9" -o /dev/null "$URL/k10"
		echo "rc=$?"
	done >"$T/load.kept"
}
fresh 1 & L1=$!
fresh 2 & L2=$!
kept & L3=$!
oks() { cat "$T"/load.* 2>/dev/null | grep -c '^200$'; }
more_oks() { test "$(oks)" -ge "$1"; }
wait_until 20 more_oks 20

for round in 1 2 3; do
	M=$(free_port)
	check "round $round: a new terminator starts on the same ports" start_on "$M"
	before=$(oks)
	kill -TERM "$OLD_PID"
	wait "$OLD_PID"; rc=$?
	check "round $round: the old one drains and exits 0 ($rc)" test "$rc" = 0
	check "round $round:   ... logging it, nothing closed early" grep -q "event=drained .*closed_early=0" "$T/terminator.$OLD_M.log"
	check "round $round: requests keep succeeding after it" wait_until 30 more_oks $((before + 100))
	new_accepted() { test "$(curl -s "http://127.0.0.1:$M/metrics" | awk '$1 == "tracktls_connections_accepted_total" {print $2}')" -gt 0; }
	check "round $round:   ... served by the new one" wait_until 10 new_accepted
	OLD_PID=$NEW_PID OLD_M=$M
done
touch "$T/stop"
wait "$L1" "$L2" "$L3"
total=$(cat "$T"/load.* | grep -c '^rc=')
bad_rc=$(cat "$T"/load.* | grep '^rc=' | grep -vc '^rc=0$')
bad_status=$(cat "$T"/load.* | grep -v '^rc=' | grep -vc '^200$')
check "load ran ($total curl runs, $(oks) responses)" test "$total" -gt 100
check "no refused, reset or failed connection across restarts (curl errors: $(cat "$T"/load.* | grep '^rc=' | grep -v '^rc=0$' | sort | uniq -c | tr '\n' ' '))" test "$bad_rc" = 0
check "no failed request (non-200: $bad_status)" test "$bad_status" = 0
kill -TERM "$OLD_PID"
wait "$OLD_PID"
