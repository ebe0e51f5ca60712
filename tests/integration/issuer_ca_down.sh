#!/usr/bin/env bash
# The CA stops answering mid-run: the run gives up after a few timeouts with exit 2, puts no
# failure on the domains' records, and the next run finishes the work.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
for i in $(seq 1 40); do $I domain add "c$i.test" >/dev/null; done
peb=$(cat "$T/pebble/pebble.pid")
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 1 --timeout 1s --metrics-file "$T/run.prom" 2>"$T/run1.log" & pid=$!
wait_until 60 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c 'select count(*) from certificates')\" -ge 2"
kill -STOP "$peb"
wait $pid; rc=$?
kill -CONT "$peb"
check "run exits 2 when the CA stops answering" test "$rc" = 2
check "  ... saying so" grep -q "the CA is not answering" "$T/run1.log"
check "  ... and its metrics file says tracktls_issuer_exit_status 2" grep -qx 'tracktls_issuer_exit_status 2' "$T/run.prom"
check "  ... after a few orders, not all" test "$(grep -c 'event=ca_unavailable' "$T/run1.log")" = 3
check "no domain was charged a failure" test "$(q "select count(*) from domains where failures > 0 or state in ('failing', 'paused')")" = 0
$I run --self-check-via "127.0.0.1:$HTTP" --metrics-file "$T/run.prom" 2>"$T/run2.log"; rc=$?
check "  ... its metrics file says tracktls_issuer_exit_status 0" grep -qx 'tracktls_issuer_exit_status 0' "$T/run.prom"
check "the next run completes the work" bash -c "test $rc = 0 && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from domains where state='active'\")\" = 40"
