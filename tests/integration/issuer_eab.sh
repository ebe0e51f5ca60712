#!/usr/bin/env bash
# External account binding: refused without it, account created with it.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
export PEBBLE_EAB=1 PEBBLE_EAB_HMAC=$(openssl rand 32 | basenc --base64url | tr -d '=')
issuer_env_start
$I domain add eab.test >/dev/null
out=$($I run --self-check-via "127.0.0.1:$HTTP" 2>&1); rc=$?
check "without EAB: exit 2" test "$rc" = 2
check "  ... saying EAB is required" grep -Eqi "external ?account" <<<"$out"
grep -Eqi "external ?account" <<<"$out" || echo "OUT: $out"
check "  ... and no account stored" test "$(q "select count(*) from acme_accounts")" = 0
$I run --self-check-via "127.0.0.1:$HTTP" --eab-kid kid-1 --eab-hmac-key "$(openssl rand 32 | basenc --base64url | tr -d '=')" >/dev/null 2>&1; rc=$?
check "a wrong EAB key: exit 2" test "$rc" = 2
$I run --self-check-via "127.0.0.1:$HTTP" --eab-kid kid-1 --eab-hmac-key "$PEBBLE_EAB_HMAC" --contact ops@example.org 2>"$T/run.log"; rc=$?
check "with EAB: exit 0, issued" bash -c "test $rc = 0 && grep -q 'issued=1' '$T/run.log'"
check "account stored with its EAB key id" test "$(q "select eab_kid from acme_accounts")" = kid-1
check "account has the contact" bash -c "'$I' account show | grep -q 'mailto:ops@example.org'"
