#!/usr/bin/env bash
# Every state and reason of domain_status reached by the scenario that causes it: an HTTP-01
# nobody answers (challenge_unreachable), a wrong answer (validation_failed, then paused), a name
# the CA refuses (name_rejected), our own port 80 answering wrong (dns_not_pointed), a CA that
# answers 429 (ca_rate_limited) or 500 (ca_unavailable), an order in flight (validating,
# renewing), a failing renewal with under 7 days left (expiring), and the failure events.
PEBBLE_VALIDITY=518400 PEBBLE_BLOCKLIST=blocked.test # 6-day certificates: every renewal is urgent
export PEBBLE_VALIDITY PEBBLE_BLOCKLIST
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
status() { q "select state, https_ready, coalesce(reason, '-') from domain_status where name = '$1'"; }
add_a() { curl -sf -X POST -d "{\"host\":\"$1.\",\"addresses\":[\"$2\"]}" "http://127.0.0.1:$PEBBLE_CHALL_MGMT_PORT/add-a" >/dev/null || fail "add-a $1"; }

# unreach.test: nothing answers the CA at 127.0.0.2. wrong.test: a server at 127.0.0.4 answers 404.
add_a unreach.test 127.0.0.2
add_a wrong.test 127.0.0.4
mkdir -p "$T/empty"
bg python3 -m http.server --bind 127.0.0.4 --directory "$T/empty" "$HTTP"
wait_until 10 port_open 127.0.0.4 "$HTTP" || fail "404 server"
# Our own port 80 answering slowly and wrongly: the self-check fails after a few seconds.
SLOW=$(free_port)
bg python3 -c '
import http.server, sys, time
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        time.sleep(0.5); self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()' "$SLOW"
wait_until 10 port_open 127.0.0.1 "$SLOW" || fail "slow server"

for n in ok.test unreach.test wrong.test blocked.test; do $I domain add $n >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run1.log"; rc=$?
check "run 1 exits 1 (some failed)" test "$rc" = 1
check "ok.test: active and served" test "$(status ok.test)" = "active|t|-"
check "unreach.test: failed, challenge_unreachable" test "$(status unreach.test)" = "failed|f|challenge_unreachable"
check "wrong.test: failed, validation_failed" test "$(status wrong.test)" = "failed|f|validation_failed"
check "blocked.test: failed, name_rejected (the CA's rejectedIdentifier)" test "$(status blocked.test)" = "failed|f|name_rejected"
check "  ... the CA's words in detail" test -n "$(q "select detail from domain_status where name = 'blocked.test'")"
check "a failed event with the reason for each" test "$(q "select string_agg(name || ':' || reason, ',' order by name) from domain_events where kind = 'failed'")" = \
	"blocked.test:name_rejected,unreach.test:challenge_unreachable,wrong.test:validation_failed"

q "update domains set next_attempt_at = now() where name = 'wrong.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --max-failures 2 2>"$T/run2.log"
check "wrong.test, failing again at --max-failures: paused, validation_failed" test "$(status wrong.test)" = "paused|f|validation_failed"
check "  ... events failed then paused, with the reason" test "$(q "select string_agg(kind || ':' || reason, ',' order by id) from domain_events where name = 'wrong.test' and kind in ('failed', 'paused')")" = \
	"failed:validation_failed,failed:validation_failed,paused:validation_failed"
$I domain add wrong.test >/dev/null
check "domain add resumes it: pending, reason cleared, event resumed" bash -c \
	"test '$(status wrong.test)' = 'pending|f|-' && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select kind from domain_events where name = 'wrong.test' order by id desc limit 1\")\" = resumed"
$I domain remove wrong.test --no-revoke >/dev/null
$I domain remove unreach.test --no-revoke >/dev/null
$I domain remove blocked.test --no-revoke >/dev/null
check "removed" test "$(status unreach.test)" = "removed|f|challenge_unreachable"

# An order in flight, then our own port 80 not answering right.
$I domain add slow.test >/dev/null
$I run --self-check-via "127.0.0.1:$SLOW" 2>"$T/run3.log" & pid=$!
check "an order in flight: validating" wait_until 20 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select state from domain_status where name = 'slow.test'\")\" = validating"
wait $pid
check "self-check failed: failed, dns_not_pointed" test "$(status slow.test)" = "failed|f|dns_not_pointed"
$I domain remove slow.test --no-revoke >/dev/null

# A renewal in flight, then failing with under 7 days left.
q "update domains set next_attempt_at = now() where name = 'ok.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$SLOW" 2>"$T/run4.log" & pid=$!
check "a renewal in flight: renewing, still https_ready" wait_until 20 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select state, https_ready from domain_status where name = 'ok.test'\")\" = 'renewing|t'"
wait $pid
check "renewal failing under 7 days before expiry: expiring, still served" test "$(status ok.test)" = "expiring|t|dns_not_pointed"
check "  ... events renewing, failed, expiring" test "$(q "select string_agg(kind, ',' order by id) from domain_events where name = 'ok.test' and id > (select max(id) from domain_events where name = 'ok.test' and kind = 'https_ready')")" = "renewing,failed,expiring"

# The CA in trouble: 500 on every newOrder. Charged nothing, but the platform sees why.
PROXY=$(free_port)
bg python3 "$TT_ROOT/tests/lib/ratelimit_proxy.py" "$PROXY" "https://127.0.0.1:$PEBBLE_PORT" \
	"$T/pebble/server.pem" "$T/pebble/server.key" "$PEBBLE_CA" 1000 0 500
wait_until 10 port_open 127.0.0.1 "$PROXY" || fail "500 proxy"
$I domain add down.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --directory "https://127.0.0.1:$PROXY/dir" --timeout 2s 2>"$T/run5.log"
check "CA answering 500: pending, ca_unavailable, no failure counted" bash -c \
	"test '$(status down.test)' = 'pending|f|ca_unavailable' && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select failures from domains where name = 'down.test'\")\" = 0"
$I domain remove down.test --no-revoke >/dev/null

PROXY2=$(free_port)
bg python3 "$TT_ROOT/tests/lib/ratelimit_proxy.py" "$PROXY2" "https://127.0.0.1:$PEBBLE_PORT" \
	"$T/pebble/server.pem" "$T/pebble/server.key" "$PEBBLE_CA" 1000 60
wait_until 10 port_open 127.0.0.1 "$PROXY2" || fail "429 proxy"
$I domain add limited.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --directory "https://127.0.0.1:$PROXY2/dir" --deadline 5 2>"$T/run6.log"
check "CA answering 429: pending, ca_rate_limited, no failure counted" bash -c \
	"test '$(status limited.test)' = 'pending|f|ca_rate_limited' && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select failures from domains where name = 'limited.test'\")\" = 0"

$I domain add new.test >/dev/null
check "a domain just added: pending" test "$(status new.test)" = "pending|f|-"
check "every reason is one of the closed set" test "$(q "select count(*) from (select reason from domain_status union all select reason from domain_events) r where reason is not null and reason not in ('dns_not_pointed', 'dns_stray_aaaa', 'caa_forbids_ca', 'dns_servfail', 'challenge_unreachable', 'ca_rate_limited', 'ca_unavailable', 'validation_failed', 'name_rejected', 'internal')")" = 0
