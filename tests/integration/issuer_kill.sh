#!/usr/bin/env bash
# A run killed with SIGKILL mid-order, then rerun, completes; no clear private key anywhere in
# the database or on disk.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
for i in $(seq 1 60); do $I domain add "k$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 2>"$T/killed.log" & pid=$!
# Killed when some are issued and an order is in flight (the workers also pass moments between
# two orders, and a kill there tests less).
wait_until 60 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select (select count(*) from certificates) >= 3
	and exists (select 1 from issuance_attempts where state = 'started')\")\" = t"
kill -9 $pid; wait $pid 2>/dev/null
done_before=$(q "select count(*) from certificates")
check "killed mid-run (some but not all issued)" test "$done_before" -ge 3 -a "$done_before" -lt 60
check "the kill left an order in flight" test "$(q "select count(*) from issuance_attempts where state='started'")" -ge 1
q "insert into challenges select 'stale-token', 'x', id, now() - interval '1 minute' from domains where name='k1.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 2>"$T/rerun.log"; rc=$?
check "rerun exits 0" test "$rc" = 0
check "all 60 domains active, one current certificate each" test "$(q "select count(*) from domains where state='active' and current_cert_id is not null")" = 60
check "expired challenge rows are cleaned up" test "$(q "select count(*) from challenges")" = 0
check "orders cut off by the kill are marked abandoned" test "$(q "select count(*) from issuance_attempts where state='started'")" = 0
check "no clear private key in the database" bash -c "! pg_dump -d '$TRACKTLS_DB' | grep -q 'PRIVATE KEY'"
check "no clear private key on disk (the scenario's folder, outside Pebble's own TLS key)" \
	bash -c "! grep -rl 'PRIVATE KEY' '$T' --exclude-dir=pebble 2>/dev/null | grep -q ."
check "every stored key opens" bash -c "for n in k1.test k30.test k60.test; do python3 '$TT_ROOT/tests/lib/open_sealed.py' '$TRACKTLS_MASTER_KEY_FILE' \$n | grep -q 'BEGIN EC PRIVATE KEY' || exit 1; done"

# SIGTERM: the run stops taking new work, finishes and records what is in flight, exits normally.
for i in $(seq 61 120); do $I domain add "k$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 2>"$T/term.log" & pid=$!
wait_until 60 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c 'select count(*) from certificates')\" -ge 63"
kill -TERM $pid; wait $pid; rc=$?
n=$(q "select count(*) from domains where state='active'")
check "SIGTERM: exit 0 with a summary line ($n of 120 active)" bash -c "test $rc = 0 && grep -q 'event=run_stopping signal=TERM' '$T/term.log' && grep -q 'event=run_done' '$T/term.log'"
check "  ... stopped early, with no order left half done" test "$n" -lt 120 -a "$(q "select count(*) from issuance_attempts where state='started'")" = 0
