#!/usr/bin/env bash
# https_ready means served, not stored: with no terminator on the edge's HTTPS a stored certificate
# stays https_ready = false (counted by tracktls_issuer_domains_not_served) through retries; the
# moment a terminator serves it a lingering run's retry turns it true. A renewal keeps the old
# readiness until the new serial is served, and only then records renewed.
ISSUER_RESPONDER=python # HTTP-01 from tests/lib/challenge_server.py: the terminator is ours to stop
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
status() { q "select state, https_ready from domain_status where name = '$1'"; }
kinds() { q "select string_agg(kind, ',' order by id) from domain_events where name = '$1'"; }
start_edge() {
	bg "$TT_BIN/terminator" --http "127.0.0.1:$(free_port)" --https "127.0.0.1:$HTTPS" --backend "127.0.0.1:$(free_port)" \
		--threads 1 --negative-ttl 100ms --allow-root 2>>"$T/terminator.log"
	EDGE=$!
	wait_until 10 port_open 127.0.0.1 "$HTTPS"
}

$I domain add served.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --metrics-file "$T/m1.prom" 2>"$T/run1.log"; rc=$?
check "issued with no edge serving it (exit 0)" test "$rc" = 0
check "stored but not served: active, https_ready false" test "$(status served.test)" = "active|f"
check "  ... events stop at issued" test "$(kinds served.test)" = "added,validating,issued"
check "  ... the metric counts it" grep -qx "tracktls_issuer_domains_not_served 1" "$T/m1.prom"
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"
check "a later run checks again and still finds it not served" bash -c \
	"test '$(status served.test)' = 'active|f' && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select served_checked_at is not null from domains where name = 'served.test'\")\" = t"

$I run --self-check-via "127.0.0.1:$HTTP" --linger 60 --metrics-file "$T/m2.prom" 2>"$T/run3.log" & run=$!
wait_until 30 grep -q event=lingering "$T/run3.log"
start_edge || fail "terminator starts"
check "once a terminator serves it, the lingering run's retry makes it https_ready" wait_until 30 bash -c \
	"test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select https_ready from domain_status where name = 'served.test'\")\" = t"
check "  ... event https_ready, after issued" test "$(kinds served.test)" = "added,validating,issued,https_ready"
kill -TERM $run; wait $run
check "  ... and the metric is back to 0" grep -qx "tracktls_issuer_domains_not_served 0" "$T/m2.prom"

# Renewal with the edge down: stored, not served, readiness kept, no renewed event yet.
kill -TERM "$EDGE"; wait "$EDGE"
old=$(q "select serial from domain_status where name = 'served.test'")
q "update domains set next_attempt_at = now() where name = 'served.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --metrics-file "$T/m3.prom" 2>"$T/run4.log"
check "renewal stored while the edge is down: still https_ready (the old certificate), new serial" bash -c \
	"test '$(status served.test)' = 'active|t' && test '$(q "select serial from domain_status where name = 'served.test'")' != '$old'"
check "  ... no renewed event yet, and counted as not served" bash -c \
	"test '$(kinds served.test)' = 'added,validating,issued,https_ready,renewing' && grep -qx 'tracktls_issuer_domains_not_served 1' '$T/m3.prom'"
start_edge || fail "terminator restarts"
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run5.log"
check "the new serial served: renewed" test "$(kinds served.test)" = "added,validating,issued,https_ready,renewing,renewed"

# A served chain that does not verify is not served.
q "update domains set served_cert_id = null where name = 'served.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --https-check-ca-file "$PEBBLE_CA" 2>"$T/run6.log"
check "a chain that does not verify against --https-check-ca-file: not https_ready" test "$(status served.test)" = "active|f"
