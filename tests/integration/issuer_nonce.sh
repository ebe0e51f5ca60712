#!/usr/bin/env bash
# Pebble rejects 30 % of good nonces with badNonce: every domain is still issued.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_WFE_NONCEREJECT=30 issuer_env_start
for i in $(seq 1 12); do $I domain add "n$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 4 2>"$T/run.log"; rc=$?
check "run exits 0 despite 30% badNonce" test "$rc" = 0
check "all 12 issued" test "$(q "select count(*) from domains where state='active'")" = 12
check "Pebble did reject nonces" bash -c "grep -qi 'nonce' '$T/pebble/pebble.log'"
