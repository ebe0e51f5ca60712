#!/usr/bin/env bash
# /healthz on the metrics address: 200 while accepting with the database reachable or the cache
# warm; 503 when the database is unreachable and the cache empty, and at once when draining.
# exclusive: asserts /healthz flips to 503 within one second of draining.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

private_pg "$T/pg" health
tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
health() { curl -s -o "$T/health.body" -w '%{http_code}' "http://127.0.0.1:$1/healthz"; }
health_is() { test "$(health "$1")" = "$2"; }

check "terminator starts; /healthz 200 with the database reachable and the cache empty" start_terminator
check "  ... (cache empty)" test "$(metric tracktls_cert_cache_entries)" = 0
check "  ... and /metrics says tracktls_healthy 1" test "$(metric tracktls_healthy)" = 1
WARM_M=$METRICS_PORT WARM_PID=$TERM_PID WARM_HTTPS=$HTTPS_PORT
check "a handshake warms the cache" test "$(served a.test subject)" = "subject=CN = a.test"

# A second terminator whose cache stays cold.
check "a second terminator starts" start_terminator
COLD_M=$METRICS_PORT COLD_PID=$TERM_PID

pg_stop "$T/pg"
check "PostgreSQL is down" test ! -S "$T/pg/.s.PGSQL.5432"
check "database unreachable and cache empty: 503" wait_until 15 health_is "$COLD_M" 503
check "  ... saying why" grep -q "database unreachable" "$T/health.body"
check "  ... and /metrics says tracktls_healthy 0 (what alerts read)" test "$(METRICS_PORT=$COLD_M metric tracktls_healthy)" = 0
check "database unreachable but cache warm: still 200" health_is "$WARM_M" 200
check "  ... and the warm one serves its cached name" test "$(HTTPS_PORT=$WARM_HTTPS served a.test subject)" = "subject=CN = a.test"

pg_start "$T/pg" 5432 || fail "PostgreSQL restarts"
check "the database back: the cold one turns 200 by itself" wait_until 30 health_is "$COLD_M" 200

kill -TERM "$WARM_PID"
check "draining: 503 at once (within a second)" wait_until 1 health_is "$WARM_M" 503
check "  ... saying draining" grep -q draining "$T/health.body"
wait "$WARM_PID"
check "the other one is unaffected" health_is "$COLD_M" 200
