#!/usr/bin/env bash
# ARI with a fallback CA, against two pebble 2.6 instances (30-second certificates, so the ARI
# window is open as soon as a domain is due): renewalInfo is asked of the CA that issued the
# certificate, and `replaces` is sent only to that CA. The preferred CA is down when the first run
# starts (skipped, the fallback issues) and refuses one name; on renewal the refused name goes back
# to the fallback as an ARI renewal, the other returns to the preferred CA as a plain renewal.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_BIN=$("$TT_ROOT/scripts/fetch-pebble-ari.sh") || { fail "pebble 2.6 not available (scripts/fetch-pebble-ari.sh)"; exit 1; }
export PEBBLE_BIN PEBBLE_VALIDITY=30
PEBBLE_BLOCKLIST=refused.test issuer_env_start
issuer_env_fallback_ca
issuer_of() { q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='$1'"; }

peb=$(cat "$T/pebble/pebble.pid")
$I domain add refused.test >/dev/null
$I domain add back.test >/dev/null
kill -STOP "$peb"
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" --timeout 1s 2>"$T/run1.log"; rc=$?
kill -CONT "$peb"
check "the preferred CA down at the start: skipped, the run exits 0" bash -c "test $rc = 0 && grep -q 'event=ca_down directory=$A_DIR' '$T/run1.log'"
check "  ... the fallback issued both" bash -c "test '$(issuer_of back.test)' = '$B_DIR' && test '$(issuer_of refused.test)' = '$B_DIR'"
old_refused=$(q "select current_cert_id from domains where name='refused.test'")
old_back=$(q "select current_cert_id from domains where name='back.test'")
wait_until 40 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select bool_and(next_attempt_at <= now()) from domains\")\" = t"
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" 2>"$T/run2.log"; rc=$?
check "renewal run exits 0, both renewed" bash -c "test $rc = 0 && grep -q 'issued=0 renewed=2 failed=0' '$T/run2.log'"
check "renewalInfo was asked of the issuing CA" grep -q "GET /.*renewalInfo/" "$T/pebble2/pebble.log"
check "  ... and never of the preferred CA, which issued nothing" bash -c "! grep -q 'renewalInfo/' '$T/pebble/pebble.log'"
check "the issuing CA took the renewal as a replacement" grep -q "ARI: order .* is a replacement of" "$T/pebble2/pebble.log"
check "  ... the preferred CA was never sent replaces" bash -c "! grep -q 'is a replacement of' '$T/pebble/pebble.log'"
check "back.test returned to the preferred CA" test "$(issuer_of back.test)" = "$A_DIR"
check "  ... as a plain renewal: no replaces sent to a CA that did not issue the old certificate" \
	test "$(q "select string_agg(a.kind || ':' || a.state, ',' order by a.id) from issuance_attempts a join domains d on d.id=a.domain_id where d.name='back.test'")" = "new:valid,renewal:valid"
check "refused.test: the preferred CA refused it again, without replaces" \
	grep -q "event=ca_refused name=refused.test directory=$A_DIR" "$T/run2.log"
check "  ... the issuing CA renewed it as an ARI renewal with replaces" \
	test "$(q "select string_agg(a.kind || ':' || a.state, ',' order by a.id) from issuance_attempts a join domains d on d.id=a.domain_id where d.name='refused.test'")" = "new:valid,renewal:abandoned,ari_renewal:valid"
check "  ... replacing its certificate" test "$(q "select replaces_id from certificates c join domains d on d.current_cert_id=c.id where d.name='refused.test'")" = "$old_refused"
check "back.test's new certificate records what it replaced" test "$(q "select replaces_id from certificates c join domains d on d.current_cert_id=c.id where d.name='back.test'")" = "$old_back"
