#!/usr/bin/env bash
# Pebble rejects half of all good nonces with badNonce: a run still issues every domain, each once,
# and says how many badNonce answers it retried (a run against a CA that rejects none counts 0).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_WFE_NONCEREJECT=50 issuer_env_start
for i in $(seq 1 20); do $I domain add "h$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 4 2>"$T/run.log"; rc=$?
tail -n 1 "$T/run.log"
check "run exits 0 despite 50% badNonce" test "$rc" = 0
check "all 20 issued" test "$(q "select count(*) from domains where state='active' and current_cert_id is not null")" = 20
check "  ... one certificate each" test "$(q "select count(*) from certificates")" = 20
retried=$(sed -n 's/.*event=run_done .*bad_nonce_retries=\([0-9]*\).*/\1/p' "$T/run.log")
logged=$(grep -c 'event=acme_bad_nonce_retry ' "$T/run.log")
check "the run retried badNonce answers (run_done bad_nonce_retries=$retried)" test "${retried:-0}" -gt 0
# run_done counts the orders' retries; registering the account retries too, and logs it.
check "  ... and logged each retry ($logged acme_bad_nonce_retry lines)" test "$logged" -ge "${retried:-0}"

