#!/usr/bin/env bash
# A fallback CA: two Pebble instances with different roots, --directory given twice (each with
# its own CA file). The preferred CA refuses one name, then stops answering mid-run: the other CA
# issues, every domain ends with exactly one certificate that verifies against the root of the CA
# recorded as its issuer; once the preferred CA is back, renewals return to it. CAA picks the CA
# (per-directory --caa-identity), and a name only a down CA may serve waits for the next run.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
PEBBLE_BLOCKLIST=refused.test issuer_env_start
issuer_env_fallback_ca
check "the two CAs have different roots" bash -c "! cmp -s '$A_ROOT' '$B_ROOT'"

# every domain: one certificate, verifying against the root of the CA recorded as its issuer
verify_all() {
	local n dir root bad=0
	while IFS='|' read -r n dir; do
		case $dir in "$A_DIR") root=$A_ROOT ;; "$B_DIR") root=$B_ROOT ;; *) echo "$n: issuer '$dir'"; bad=1; continue ;; esac
		q "select c.chain_pem from domains d join certificates c on c.id = d.current_cert_id where d.name = '$n'" >"$T/chain.pem"
		awk '/BEGIN CERT/ {n++} n == 1' "$T/chain.pem" >"$T/leaf.pem"
		openssl verify -CAfile "$root" -untrusted "$T/chain.pem" "$T/leaf.pem" >/dev/null 2>&1 || { echo "$n: does not verify"; bad=1; }
	done < <(q "select d.name, c.directory_url from domains d join certificates c on c.id = d.current_cert_id")
	return $bad
}

for n in r1.test refused.test r2.test; do $I domain add $n >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" 2>"$T/run1.log"; rc=$?
check "run with a refused name exits 0" test "$rc" = 0
check "  ... the preferred CA refused it" grep -q "event=ca_refused name=refused.test directory=$A_DIR type=urn:ietf:params:acme:error:rejectedIdentifier" "$T/run1.log"
check "  ... the fallback CA issued it" test "$(q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='refused.test'")" = "$B_DIR"
check "  ... the other names came from the preferred CA" test "$(q "select count(*) from domains d join certificates c on c.id=d.current_cert_id where c.directory_url='$A_DIR'")" = 2
check "  ... no failure on the refused name's record" test "$(q "select state, failures from domains where name='refused.test'")" = "active|0"

for i in $(seq 1 12); do $I domain add "f$i.test" >/dev/null; done
peb=$(cat "$T/pebble/pebble.pid")
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" --concurrency 1 --timeout 1s 2>"$T/run2.log" & pid=$!
wait_until 60 bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from certificates where directory_url='$A_DIR'\")\" -ge 4"
kill -STOP "$peb"
wait $pid; rc=$?
kill -CONT "$peb"
check "the preferred CA stopped mid-run: the run still exits 0" test "$rc" = 0
check "  ... it was declared down after a few timeouts" grep -q "event=ca_down directory=$A_DIR failures_in_row=3" "$T/run2.log"
check "  ... the fallback CA issued the rest" test "$(q "select count(*) from domains d join certificates c on c.id=d.current_cert_id where c.directory_url='$B_DIR' and d.name like 'f%'")" -ge 1
check "every domain is active" test "$(q "select count(*) from domains where state <> 'active'")" = 0
check "exactly one certificate per domain" test "$(q "select count(*) from domains d where (select count(*) from certificates c where c.domain_id=d.id) <> 1")" = 0
check "no domain was charged a failure" test "$(q "select count(*) from domains where failures > 0")" = 0
check "each certificate verifies against its issuer's root" verify_all

# renewal: the preferred CA answers again, so a certificate from the fallback is renewed there
fb=$(q "select d.name from domains d join certificates c on c.id=d.current_cert_id where c.directory_url='$B_DIR' and d.name like 'f%' order by d.name limit 1")
q "update domains set next_attempt_at = now() where name in ('refused.test', '$fb')" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" 2>"$T/run3.log"; rc=$?
check "renewals: exit 0, two renewed" bash -c "test $rc = 0 && grep -q 'issued=0 renewed=2 failed=0' '$T/run3.log'"
check "  ... the name the preferred CA refuses comes from the fallback again" test "$(q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='refused.test'")" = "$B_DIR"
check "  ... $fb, issued by the fallback, returned to the preferred CA" test "$(q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='$fb'")" = "$A_DIR"
check "  ... and every current certificate still verifies" verify_all

# CAA picks the CA: a name whose CAA names only the fallback's identity is ordered there directly
mock() { curl -sf -X POST -d "$2" "http://127.0.0.1:$PEBBLE_CHALL_MGMT_PORT/$1" >/dev/null || fail "challtestsrv $1 $2"; }
mock add-caa '{"host":"onlyb.test.","policies":[{"tag":"issue","value":"ca-b.example"}]}'
mock add-caa '{"host":"onlyb2.test.","policies":[{"tag":"issue","value":"ca-b.example"}]}'
PF=(--edge-addrs 127.0.0.1 --dns-server "127.0.0.1:$PEBBLE_DNS_PORT" --caa-identity ca-a.example --caa-identity ca-b.example)
$I domain add onlyb.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" "${PF[@]}" 2>"$T/run4.log"; rc=$?
check "CAA naming only the fallback's identity: ordered there, the preferred CA never asked" \
	bash -c "test $rc = 0 && test '$(q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='onlyb.test'")' = '$B_DIR' && test '$(q "select count(*) from issuance_attempts a join domains d on d.id=a.domain_id where d.name='onlyb.test'")' = 1"
# ... and when that CA is down, the run neither loops on the name nor charges it a failure
kill -STOP "$(cat "$T/pebble2/pebble.pid")"
$I domain add onlyb2.test >/dev/null
timeout 60 $I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" "${PF[@]}" --timeout 1s 2>"$T/run5.log"; rc=$?
kill -CONT "$(cat "$T/pebble2/pebble.pid")"
check "the only CA its CAA permits is down: the run ends (exit 0), once no_ca_available" \
	bash -c "test $rc = 0 && test \"\$(grep -c 'event=no_ca_available name=onlyb2.test' '$T/run5.log')\" = 1"
check "  ... no failure charged, still due for the next run" test "$(q "select state, failures, next_attempt_at <= now() from domains where name='onlyb2.test'")" = "pending|0|t"
$I run --self-check-via "127.0.0.1:$HTTP" "${CAS[@]}" "${PF[@]}" 2>"$T/run6.log"; rc=$?
check "  ... which issues it from the fallback once it is back" test "$(q "select c.directory_url from domains d join certificates c on c.id=d.current_cert_id where d.name='onlyb2.test'")" = "$B_DIR"
