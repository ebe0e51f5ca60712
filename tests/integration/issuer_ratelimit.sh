#!/usr/bin/env bash
# A 429 rateLimited with Retry-After pauses new work for the whole run, charges the domain
# nothing, and the run then finishes (tests/lib/ratelimit_proxy.py answers the first newOrder).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
PROXY=$(free_port)
bg python3 "$TT_ROOT/tests/lib/ratelimit_proxy.py" "$PROXY" "https://127.0.0.1:$PEBBLE_PORT" \
	"$T/pebble/server.pem" "$T/pebble/server.key" "$PEBBLE_CA" 1 3
wait_until 10 port_open 127.0.0.1 "$PROXY" || { fail "proxy did not start"; exit 1; }
export TRACKTLS_ACME_DIRECTORY="https://127.0.0.1:$PROXY/dir"
check "the proxy relays the directory with its own URLs" bash -c "curl -sf --cacert '$PEBBLE_CA' '$TRACKTLS_ACME_DIRECTORY' | grep -q '127.0.0.1:$PROXY/order-plz'"
for i in 1 2 3 4; do $I domain add "rl$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 2 2>"$T/run.log"; rc=$?
check "run exits 0 after the pause" test "$rc" = 0
check "the 429 was seen with its Retry-After" grep -q "event=rate_limited .*retry_after_s=3 type=urn:ietf:params:acme:error:rateLimited" "$T/run.log"
check "all four issued" test "$(q "select count(*) from domains where state='active'")" = 4
check "no domain charged a failure" test "$(q "select count(*) from domains where failures > 0")" = 0
check "the refused order is recorded as abandoned" test "$(q "select count(*) from issuance_attempts where state='abandoned'")" = 1
ms=$(sed -n 's/.*event=run_done.*elapsed_ms=\([0-9]*\).*/\1/p' "$T/run.log")
check "new work paused for the Retry-After (run took ${ms} ms >= 3000)" test "${ms:-0}" -ge 3000
