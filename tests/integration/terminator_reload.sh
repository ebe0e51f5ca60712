#!/usr/bin/env bash
# SIGHUP rereads flags, the --config file and the environment for what can change live (backend
# address, timeouts, log level, cache limits) and reloads the ticket keys; a bad configuration is
# refused with a logfmt error and the old one keeps serving.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
OTHER_PORT=$(free_port)
bg python3 "$TT_ROOT/tests/lib/backend.py" "$OTHER_PORT"
OTHER_PID=$!
wait_until 10 port_open 127.0.0.1 "$OTHER_PORT"
conf() { printf '%s\n' "$@" >"$T/terminator.conf"; }
conf "backend = 127.0.0.1:$BACKEND_PORT" "idle-timeout = 60s" "log-level = info"
# Flags win over the file: the library passes --backend, so this scenario names it in the file only.
start_reloadable() {
	HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
	bg "$TT_BIN/terminator" --config "$T/terminator.conf" --https "127.0.0.1:$HTTPS_PORT" \
		--http "127.0.0.1:$HTTP_PORT" --metrics "127.0.0.1:$METRICS_PORT" --threads 2 --user nobody \
		>>"$T/terminator.log" 2>&1
	TERM_PID=$!
	wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
}
chmod 644 "$T/terminator.conf"
check "terminator starts from a config file" start_reloadable
get() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 --cacert "$T/a.test.pem" --resolve "a.test:$HTTPS_PORT:127.0.0.1" "https://a.test:$HTTPS_PORT/$1"; }
check "requests reach the first backend" test "$(get one)" = 200
kill "$BACKEND_PID"; wait "$BACKEND_PID" 2>/dev/null
check "with the first backend gone: 502" test "$(get two)" = 502

reloads() { metric tracktls_ticket_key_reloads_total; }
r0=$(reloads)
conf "backend = 127.0.0.1:$OTHER_PORT" "idle-timeout = 2s" "log-level = debug"
kill -HUP "$TERM_PID"
check "SIGHUP: the reload is logged" wait_until 5 grep -q "event=reloaded backend=127.0.0.1:$OTHER_PORT idle_timeout=2s" "$T/terminator.log"
check "  ... requests reach the new backend" test "$(get three)" = 200
more_reloads() { test "$(reloads)" -gt "$r0"; }
check "  ... the ticket keys were reloaded ($r0 before)" wait_until 5 more_reloads
check "  ... the log level is debug now" wait_until 5 grep -q "level=debug" "$T/terminator.log"
idle=$(python3 "$TT_ROOT/tests/lib/tls_client.py" "$HTTPS_PORT" a.test "$T/a.test.pem" /)
idle_t=$(awk '/^eof/ { sub("t=", "", $2); print $2 }' <<<"$idle")
check "  ... a new idle timeout (2s) applies to new connections (closed after ${idle_t}s)" \
	awk -v t="$idle_t" 'BEGIN { exit !(t != "" && t >= 1.5 && t < 5) }'
check "the process kept running" kill -0 "$TERM_PID"

conf "backend = 127.0.0.1:$BACKEND_PORT" "idle-timeout = soon"
kill -HUP "$TERM_PID"
check "a bad configuration is refused with a logfmt error line" \
	wait_until 5 grep -q 'level=error event=reload_refused error="--idle-timeout: ' "$T/terminator.log"
check "  ... and the old one stays: requests still reach the new backend" test "$(get four)" = 200
conf "backend = 127.0.0.1:$OTHER_PORT" "db-timeout = 3s" "hot-names-interval = 5m"
kill -HUP "$TERM_PID"
check "a setting read only at start-up (db-timeout) is not applied live, and a restart is asked for" \
	wait_until 5 grep -q "event=reload_needs_restart setting=db-timeout" "$T/terminator.log"
# Which settings reload live comes from the option table, not from a list kept by hand beside it.
check "  ... for every such setting (hot-names-interval)" \
	wait_until 5 grep -q "event=reload_needs_restart setting=hot-names-interval" "$T/terminator.log"
check "  ... the rest of that configuration applies" test "$(get five)" = 200
rm "$T/terminator.conf"
kill -HUP "$TERM_PID"
check "a missing config file is refused too" wait_until 5 bash -c "test \$(grep -c event=reload_refused '$T/terminator.log') = 2"
check "  ... still serving" test "$(get six)" = 200
stop_terminator; rc=$?
check "SIGTERM after reloads: exit 0 (no snapshot leaked under ASan)" test "$rc" = 0
