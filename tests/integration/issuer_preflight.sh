#!/usr/bin/env bash
# DNS and CAA preflight against pebble-challtestsrv's mock DNS: each reason code caused by the
# record that causes it, with the exact record to fix; the CA is never contacted for a failing
# domain; CAA climbs to the parent (a parent that forbids, a name that permits); a domain fixed by
# its customer is issued by the next run; `domain check` gives the same verdict on demand; a
# domain whose preflight keeps failing turns dormant and comes back when its DNS is fixed.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
DNS="127.0.0.1:$PEBBLE_DNS_PORT"
mock() { curl -sf -X POST -d "$2" "http://127.0.0.1:$PEBBLE_CHALL_MGMT_PORT/$1" >/dev/null || fail "challtestsrv $1 $2"; }
# Every name answers A 127.0.0.1 (challtestsrv's default), the edge. Mock answers stay on loopback.
mock add-a '{"host":"notpointed.test.","addresses":["127.0.0.2"]}'
mock add-aaaa '{"host":"stray.test.","addresses":["::1"]}'
mock add-caa '{"host":"caa.test.","policies":[{"tag":"issue","value":"ca.example"}]}'
mock set-servfail '{"host":"servfail.test."}'
mock add-caa '{"host":"parent.test.","policies":[{"tag":"issue","value":"ca.example"}]}'
mock add-caa '{"host":"name.parent.test.","policies":[{"tag":"issue","value":"letsencrypt.org; validationmethods=http-01"}]}'
mock set-cname '{"host":"cname.test.","target":"edge.test."}'
names="ok.test notpointed.test stray.test caa.test servfail.test child.parent.test name.parent.test cname.test"
for n in $names; do $I domain add "$n" >/dev/null; done
PF=(--edge-addrs 127.0.0.1 --edge-cname edge.test --dns-server "$DNS")

$I run --self-check-via "127.0.0.1:$HTTP" "${PF[@]}" 2>"$T/run1.log"; rc=$?
check "run exits 1: some domains failed their preflight" test "$rc" = 1
check "pointed names with permitting CAA are issued (CNAME to the edge, CAA on the name over its parent's)" \
	test "$(q "select string_agg(name, ',' order by name) from domains where state='active'")" = "cname.test,name.parent.test,ok.test"
reason() { q "select last_error_type from domains where name='$1'"; }
detail() { q "select last_error_detail from domains where name='$1'"; }
check "A record elsewhere: dns_not_pointed" test "$(reason notpointed.test)" = dns_not_pointed
check "  ... the fix is the CNAME to add" grep -qF "add the record notpointed.test. CNAME edge.test." <<<"$(detail notpointed.test)"
check "  ... and says where it points now" grep -qF "127.0.0.2" <<<"$(detail notpointed.test)"
check "AAAA record elsewhere: dns_stray_aaaa" test "$(reason stray.test)" = dns_stray_aaaa
check "  ... the fix is the AAAA record to remove" grep -qF "remove the AAAA record stray.test. AAAA ::1" <<<"$(detail stray.test)"
check "CAA naming another CA: caa_forbids_ca" test "$(reason caa.test)" = caa_forbids_ca
check "  ... the fix is the CAA record to add" grep -qF 'add the record caa.test. CAA 0 issue "letsencrypt.org"' <<<"$(detail caa.test)"
check "CAA climbs: the parent's record forbids a name without its own" test "$(reason child.parent.test)" = caa_forbids_ca
check "  ... and the fix says where the set is" grep -qF "the CAA records at parent.test" <<<"$(detail child.parent.test)"
check "SERVFAIL: dns_servfail" test "$(reason servfail.test)" = dns_servfail
check "  ... the detail names the failure" grep -qF "fail to answer its A records (SERVFAIL)" <<<"$(detail servfail.test)"
failing="notpointed.test stray.test caa.test servfail.test child.parent.test"
inlist=$(printf "'%s'," $failing); inlist=${inlist%,}
check "failing domains: state failing, one failure, retry in about a minute (the existing backoff)" \
	test "$(q "select count(*) from domains where name in ($inlist) and state='failing' and failures=1 and next_attempt_at between last_error_at + interval '59 seconds' and last_error_at + interval '61 seconds'")" = 5
check "the CA was asked nothing for them: no attempt" \
	test "$(q "select count(*) from issuance_attempts a join domains d on d.id=a.domain_id where d.name in ($inlist)")" = 0
check "  ... and Pebble never saw their names" bash -c "! grep -qE 'notpointed|stray|caa\.test|servfail|child\.parent' '$T/pebble/pebble.log'"
for n in $failing; do
	check "run log: preflight_failed for $n with its reason" grep -q "event=preflight_failed name=$n reason=$(reason $n)" "$T/run1.log"
done
json=$($I domain show stray.test --json)
check "domain show --json: reason and detail" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["reason"]=="dns_stray_aaaa" and "AAAA ::1" in d["detail"], d' "$json"
# domain show prints exactly the domain_status row; which CA issued is on the certificate's row.
check "domain show --json of an issued domain: no reason" \
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["reason"] is None and d["state"]=="active", d' "$($I domain show ok.test --json)"
check "  ... its certificate records the issuing directory" \
	test "$(q "select c.directory_url from domains d join certificates c on c.id = d.current_cert_id where d.name = 'ok.test'")" = "$PEBBLE_DIRECTORY"

# domain check: the same verdict on demand
out=$($I domain check caa.test "${PF[@]}"); rc=$?
check "domain check: exit 1 and the reason with its fix" bash -c "test $rc = 1 && grep -qx 'caa.test caa_forbids_ca' <<<'$out' && grep -qF 'fix: add the record caa.test. CAA 0 issue' <<<'$out'"
out=$($I domain check name.parent.test "${PF[@]}" --json); rc=$?
check "domain check --json: exit 0, ok, CAA found on the name itself" bash -c "test $rc = 0" &&
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["ok"] and d["reason"] is None and d["caa_owner"]=="name.parent.test" and d["cas"][0]["permitted"], d' "$out" ||
	fail "domain check --json verdict: $out"
out=$($I domain check ok.test --edge-cname edge.test --dns-server "$DNS" --json); rc=$?
check "domain check with only --edge-cname: a name without the CNAME is not pointed" bash -c "test $rc = 1" &&
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["reason"]=="dns_not_pointed" and "ok.test. CNAME edge.test." in d["detail"], d' "$out" ||
	fail "domain check --edge-cname verdict: $out"
out=$($I domain check cname.test --edge-cname edge.test --dns-server "$DNS"); rc=$?
check "  ... and the CNAME to the edge passes" bash -c "test $rc = 0 && grep -qx 'cname.test ok' <<<'$out'"
out=$($I domain check ok.test --dns-server "$DNS" 2>&1); rc=$?
check "domain check without an edge: exit 2, saying what is missing" bash -c "test $rc = 2 && grep -q 'edge-cname' <<<'$out'"
$I domain check ok.test --edge-addrs 127.0.0.1 --dns-server "127.0.0.1:$(free_port)" >"$T/check.out" 2>&1; rc=$?
check "domain check against a DNS server that does not answer: dns_servfail" bash -c "test $rc = 1 && grep -q '^ok.test dns_servfail$' '$T/check.out'"

# the customer fixes the A record: the next run issues
mock clear-a '{"host":"notpointed.test."}'
q "update domains set next_attempt_at = now() where name = 'notpointed.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${PF[@]}" 2>"$T/run2.log"; rc=$?
check "a domain fixed by its customer is issued by the next run" \
	test "$(q "select state, preflight_failing_since is null, last_error_type is null from domains where name='notpointed.test'")" = "active|t|t"
check "  ... the others, not yet due, were left alone" grep -q "issued=1 renewed=0 failed=0" "$T/run2.log"

# dormant: stray.test has failed its preflight for longer than --dormant-after
q "update domains set preflight_failing_since = now() - interval '31 days', next_attempt_at = now() where name = 'stray.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${PF[@]}" --metrics-file "$T/m.prom" 2>"$T/run3.log"; rc=$?
check "still failing after --dormant-after (30 days): dormant, checked again in a day" \
	test "$(q "select state, next_attempt_at > now() + interval '23 hours' from domains where name='stray.test'")" = "dormant|t"
check "  ... the daily check is not a failure of the run" bash -c "test $rc = 0 && grep -q 'failed=0 deferred=0 dormant=1' '$T/run3.log'"
check "the metrics file counts dormant domains" grep -qx "tracktls_issuer_dormant 1" "$T/m.prom"
check "domain list --state dormant shows it" test "$($I domain list --state dormant | awk '{print $1}')" = stray.test
check "domain list --state dormant --json" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert [x["name"] for x in d]==["stray.test"] and d[0]["state"]=="dormant", d' "$($I domain list --state dormant --json)"
q "update domains set next_attempt_at = now() where name = 'stray.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${PF[@]}" --dormant-after 20d 2>"$T/run4.log"
check "the daily check of a dormant domain still failing: it stays dormant, its failing-since kept" \
	test "$(q "select state, preflight_failing_since < now() - interval '30 days' from domains where name='stray.test'")" = "dormant|t"
check "  ... and never reached the CA" test "$(q "select count(*) from issuance_attempts a join domains d on d.id=a.domain_id where d.name='stray.test'")" = 0
mock clear-aaaa '{"host":"stray.test."}'
q "update domains set next_attempt_at = now() where name = 'stray.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" "${PF[@]}" 2>"$T/run5.log"; rc=$?
check "its DNS fixed, the dormant domain returns by itself and is issued" \
	bash -c "test $rc = 0 && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select state, preflight_failing_since is null from domains where name='stray.test'\")\" = 'active|t'"
check "  ... logged as returned" grep -q "event=dormant_returned name=stray.test" "$T/run5.log"
check "domain list --state dormant is empty again" test -z "$($I domain list --state dormant)"
out=$($I domain list --state nosuch 2>&1); rc=$?
check "domain list --state with an unknown state: exit 2" bash -c "test $rc = 2 && grep -q 'unknown --state' <<<'$out'"
