#!/usr/bin/env bash
# ARI (RFC 9773) against pebble 2.6 (Debian 13's, fetched by scripts/fetch-pebble-ari.sh). Pebble
# suggests a two-day window around two thirds of the lifetime, so: with 5-day certificates a due
# domain is rescheduled into the window without an order; with 30-second certificates the window
# is open and the renewal is ordered with `replaces`, outside the order budget.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_BIN=$("$TT_ROOT/scripts/fetch-pebble-ari.sh") || { fail "pebble 2.6 not available (scripts/fetch-pebble-ari.sh)"; exit 1; }
export PEBBLE_BIN
PEBBLE_VALIDITY=432000 issuer_env_start
check "the directory offers renewalInfo" bash -c "curl -sf --cacert '$PEBBLE_CA' '$PEBBLE_DIRECTORY' | grep -q renewalInfo"
$I domain add long.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run1.log"
check "issued a 5-day certificate" grep -q "issued=1" "$T/run1.log"
old=$(q "select current_cert_id from domains where name='long.test'")
aid=$(q "select ari_cert_id from certificates where id=$old")
leaf=$(q "select chain_pem from certificates where id=$old" | openssl x509)
aki=$(openssl x509 -noout -ext authorityKeyIdentifier <<<"$leaf" | tail -n1 | tr -d ' :' | sed 's/^keyid//' | xxd -r -p | basenc --base64url | tr -d '=')
check "the certificate's ARI id is base64url(AKI).base64url(serial)" test "${aid%%.*}" = "$aki"
check "with ARI the first check is within 12 hours" test "$(q "select next_attempt_at < now() + interval '12 hours 1 minute' from domains where name='long.test'")" = t
q "update domains set next_attempt_at = now() where name='long.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"
check "due by our clock, not in the CA's window: rescheduled" grep -q "event=ari_scheduled name=long.test" "$T/run2.log"
check "  ... without an order" test "$(q "select count(*) from issuance_attempts")" = 1
check "  ... to a later time" test "$(q "select next_attempt_at > now() + interval '1 hour' from domains where name='long.test'")" = t
$I domain remove long.test --no-revoke >/dev/null

# 30-second certificates from a fresh Pebble: the window is open as soon as the domain is due.
pebble_stop "$T/pebble"
pebble_ports
TT_CLEANUPS+=("pebble_stop '$T/pebble2'")
PEBBLE_VALIDITY=30 pebble_start "$T/pebble2" "$HTTP" || { fail "second pebble"; exit 1; }
export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA TRACKTLS_CHAIN_CA_FILE=$PEBBLE_ROOT
$I domain add ari.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run3.log"
check "issued a 30-second certificate" grep -q "issued=1" "$T/run3.log"
old=$(q "select current_cert_id from domains where name='ari.test'")
wait_until 30 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select next_attempt_at <= now() from domains where name='ari.test'\")\" = t"
$I run --self-check-via "127.0.0.1:$HTTP" --order-budget 2 2>"$T/run4.log"
check "renewal inside the window is an ARI renewal" test "$(q "select count(*) from issuance_attempts where kind='ari_renewal' and state='valid' and not counts_against_limit")" = 1
check "  ... ordered although the order budget (2) is spent" test "$(q "select count(*) from issuance_attempts where counts_against_limit")" = 2
check "  ... and it replaced the certificate" test "$(q "select replaces_id from certificates c join domains d on d.current_cert_id=c.id where d.name='ari.test'")" = "$old"
