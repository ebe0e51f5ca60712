#!/usr/bin/env bash
# Pebble rejects half of all good nonces with badNonce: a run still issues every domain, each once.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_WFE_NONCEREJECT=50 issuer_env_start
for i in $(seq 1 20); do $I domain add "h$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 4 2>"$T/run.log"; rc=$?
tail -n 1 "$T/run.log"
check "run exits 0 despite 50% badNonce" test "$rc" = 0
check "all 20 issued" test "$(q "select count(*) from domains where state='active' and current_cert_id is not null")" = 20
check "  ... one certificate each" test "$(q "select count(*) from certificates")" = 20
check "Pebble did reject nonces ($(grep -ci 'badNonce\|nonce' "$T/pebble/pebble.log") log lines)" bash -c "grep -qi 'nonce' '$T/pebble/pebble.log'"
