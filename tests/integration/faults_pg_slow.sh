#!/usr/bin/env bash
# PostgreSQL slow: a transaction holds LOCK TABLE certificates IN ACCESS EXCLUSIVE MODE. Cached
# names are served as fast as before; misses fail within the query timeout with a counter, are not
# remembered as unknown, and are served once the lock goes.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
for n in hot1 hot2 hot3 cold1 cold2; do make_cert "$n.test" || fail "make_cert $n.test"; done
check "terminator starts" start_terminator --db-timeout 500ms
for n in hot1 hot2 hot3; do served "$n.test" subject >/dev/null; done
check "hot names are cached" test "$(metric tracktls_cert_cache_entries)" = 3
req() { curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 5 --cacert "$T/$1.pem" --resolve "$1:$HTTPS_PORT:127.0.0.1" "https://$1:$HTTPS_PORT/x"; }

psql -qAtX -d "$TRACKTLS_DB" -c "begin; lock table certificates in access exclusive mode; select pg_sleep(120)" >/dev/null 2>&1 &
LOCKER=$!
locked() { test "$(psql -qAtX -d "$TRACKTLS_DB" -c "select count(*) from pg_locks where relation = 'certificates'::regclass and mode = 'AccessExclusiveLock' and granted")" = 1; }
check "a transaction holds an ACCESS EXCLUSIVE lock on certificates" wait_until 10 locked

for i in $(seq 1 10); do for n in hot1 hot2 hot3; do req "$n.test"; done; done >"$T/hot.out"
check "30 requests to cached names while locked: all 200 ($(sort "$T/hot.out" | awk '{print $1}' | uniq -c | xargs))" \
	test "$(awk '$1 == 200' "$T/hot.out" | wc -l)" = 30
worst=$(awk '$2 > m { m = $2 } END { print m + 0 }' "$T/hot.out")
check "  ... none slowed by the lock (slowest ${worst}s, under 0.5 s)" awk -v w="$worst" 'BEGIN { exit !(w < 0.5) }'

t0=$(metric tracktls_db_query_timeouts_total)
start=$(date +%s%N)
curl -s -o /dev/null --max-time 10 --cacert "$T/cold1.test.pem" --resolve "cold1.test:$HTTPS_PORT:127.0.0.1" "https://cold1.test:$HTTPS_PORT/"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a miss while locked fails the handshake (curl exit $rc)" test "$rc" = 35
check "  ... within the 500 ms query timeout, give or take (${ms} ms, under 1500)" test "$ms" -lt 1500 -a "$ms" -ge 400
check "  ... counted as a query timeout" test "$(metric tracktls_db_query_timeouts_total)" -gt "$t0"
check "  ... and as a certificate error" test "$(metric 'tracktls_client_hello_refused_total{reason="certificate_error"}')" -ge 1
# Concurrent misses while locked: all fail on time, none hangs.
for i in $(seq 1 20); do
	curl -s -o /dev/null -w '%{time_total}\n' --max-time 10 -k --resolve "cold2.test:$HTTPS_PORT:127.0.0.1" "https://cold2.test:$HTTPS_PORT/" &
	P+=($!)
done >"$T/cold.out"
wait "${P[@]}"
worst=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$T/cold.out")
check "20 concurrent misses while locked all end within 1.5 s (slowest ${worst}s)" awk -v w="$worst" 'BEGIN { exit !(w < 1.5) }'
psql -qAtX -d "$TRACKTLS_DB" -c "select pid, state, wait_event_type, now() - query_start, left(query, 80) from pg_stat_activity where datname = current_database()"
# A query the terminator gave up on is ended by the server's statement_timeout about when the
# client saw its handshake fail, give or take a moment; one that piled up stays waiting on the lock
# (held for 120 s), so polling for a few seconds tells them apart.
waiting() { psql -qAtX -d "$TRACKTLS_DB" -c "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'"; }
few_waiting() { test "$(waiting)" -le 2; }
wait_until 5 few_waiting
check "the terminator's timed-out queries do not pile up in PostgreSQL ($(waiting) waiting on the lock)" few_waiting

psql -qAtX -d "$TRACKTLS_DB" -c "select pg_cancel_backend(pid) from pg_stat_activity where datname = current_database() and query like '%pg_sleep(120)%' and pid <> pg_backend_pid()" >/dev/null
wait "$LOCKER" 2>/dev/null
cold_ok() { test "$(served cold1.test subject)" = "subject=CN = cold1.test"; }
check "once the lock goes, the missed name is served (it was not remembered as unknown)" wait_until 5 cold_ok
check "the other missed name too" test "$(served cold2.test subject)" = "subject=CN = cold2.test"
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
