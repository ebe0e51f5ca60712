#!/usr/bin/env bash
# terminator with PostgreSQL stopped and started under load: cached names never fail, misses fail
# fast and are counted, and everything recovers by itself when the database returns.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

private_pg "$T/pg" outage
tt_setup_db
start_backend
for n in hot1 hot2 hot3 cold1 cold2; do make_cert "$n.test" || fail "make_cert $n.test"; done
check "terminator starts" start_terminator --db-timeout 500ms
for n in hot1 hot2 hot3; do served "$n.test" subject >/dev/null; done
check "hot names are cached" test "$(metric tracktls_cert_cache_entries)" = 3

# Load on the hot names for the whole outage.
load() {
	while [ ! -f "$T/stop" ]; do
		for n in hot1 hot2 hot3; do
			if curl -s -o /dev/null --max-time 5 --cacert "$T/$n.test.pem" --resolve "$n.test:$HTTPS_PORT:127.0.0.1" \
				"https://$n.test:$HTTPS_PORT/load"; then echo ok; else echo "fail $n"; fi
		done
	done >"$T/load.log"
}
load &
LOAD=$!
wait_until 10 test -s "$T/load.log"

pg_stop "$T/pg"
check "PostgreSQL is down" test ! -S "$T/pg/.s.PGSQL.5432"
n0=$(grep -c ok "$T/load.log")
start=$(date +%s%N)
curl -s -o /dev/null --max-time 10 -k --resolve "cold1.test:$HTTPS_PORT:127.0.0.1" "https://cold1.test:$HTTPS_PORT/"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "a miss while the database is down fails the handshake" test "$rc" = 35
check "  ... fast (${ms} ms, under 2 s)" test "$ms" -lt 2000
more_ok() { test "$(grep -c ok "$T/load.log")" -ge $((n0 + 30)); }
check "cached names keep being served while the database is down" wait_until 20 more_ok
check "failed lookups are counted" test "$(metric 'tracktls_client_hello_refused_total{reason="certificate_error"}')" -ge 1

pg_start "$T/pg" 5432 >/dev/null
cold_ok() { test "$(served cold2.test subject)" = "subject=CN = cold2.test"; }
check "misses recover by themselves when the database returns" wait_until 20 cold_ok
cold1_ok() { test "$(served cold1.test subject)" = "subject=CN = cold1.test"; }
check "  ... including the name that failed during the outage" wait_until 10 cold1_ok
check "the database connection was re-established (counted)" test "$(metric tracktls_db_reconnects_total)" -ge 1

touch "$T/stop"
wait "$LOAD"
check "not one request to a cached name failed ($(grep -c ok "$T/load.log") ok)" test "$(grep -c fail "$T/load.log")" = 0
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
