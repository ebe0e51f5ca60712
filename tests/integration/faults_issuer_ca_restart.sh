#!/usr/bin/env bash
# Pebble stopped in the middle of a run and started again (a CA that lost its state: new account
# needed, new root): the interrupted run ends, the next run completes, no domain gets two
# certificates, and no clear private key is left anywhere.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
for i in $(seq 1 40); do $I domain add "p$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 --timeout 2s 2>"$T/run1.log" & pid=$!
wait_until 60 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c 'select count(*) from certificates')\" -ge 3"
pebble_stop "$T/pebble"
wait $pid; rc=$?
before=$(q "select count(*) from certificates")
check "the interrupted run ends, not 0 (exit $rc), with some but not all issued ($before)" \
	test "$rc" != 0 -a "$before" -ge 3 -a "$before" -lt 40
check "  ... no domain charged a failure for the CA's outage" \
	test "$(q "select count(*) from domains where state in ('failing', 'paused')")" = 0
pebble_start "$T/pebble" "$HTTP" || fail "Pebble starts again"
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 2>"$T/run2.log"; rc=$?
tail -n 3 "$T/run2.log"
check "the next run exits 0" test "$rc" = 0
check "all 40 active with a current certificate" \
	test "$(q "select count(*) from domains where state='active' and current_cert_id is not null")" = 40
check "no domain has two certificates" test "$(q "select count(*) from (select domain_id from certificates group by domain_id having count(*) > 1) x")" = 0
check "no certificate stored twice (serials unique)" test "$(q "select count(*) - count(distinct serial) from certificates")" = 0
pg_dump -d "$TRACKTLS_DB" >"$T/dump.sql"
out=$(python3 "$TT_ROOT/tests/lib/keyscan.py" "$T" --exclude "$T/pebble/ca.key" --exclude "$T/pebble/server.key" 2>&1); rc=$?
check "no clear private key in the dump, folders or logs ($(tail -n1 <<<"$out"))" test "$rc" = 0
