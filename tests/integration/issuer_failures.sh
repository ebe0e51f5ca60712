#!/usr/bin/env bash
# A domain whose challenge cannot be answered is recorded with its problem and backoff while the
# others in the same run are issued; repeated failures pause it; a failing self-check never asks
# the CA to validate; CA unreachable and database down exit 2.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
# Pebble's DNS sends bad.test to 127.0.0.2, where nothing answers port $HTTP.
curl -sf -X POST -d '{"host":"bad.test.","addresses":["127.0.0.2"]}' "http://127.0.0.1:$PEBBLE_CHALL_MGMT_PORT/add-a" >/dev/null ||
	fail "challtestsrv add-a"
for n in ok1.test bad.test ok2.test ok3.test; do $I domain add $n >/dev/null; done

$I run --self-check-via "127.0.0.1:$HTTP" --max-failures 2 --metrics-file "$T/m.prom" 2>"$T/run1.log"; rc=$?
check "run exits 1 when a domain failed" test "$rc" = 1
check "summary names the failed domain" grep -q "event=run_done.*issued=3 renewed=0 failed=1 .*failed_domains=bad.test" "$T/run1.log"
check "the others were issued" test "$(q "select string_agg(name, ',' order by name) from domains where state='active'")" = "ok1.test,ok2.test,ok3.test"
# The retry is a minute after the failure was recorded (last_error_at), not after this query: the
# run went on with the other domains meanwhile, for however long a loaded machine takes.
row=$(q "select state, failures, last_error_type, next_attempt_at between last_error_at + interval '59 seconds' and last_error_at + interval '61 seconds' from domains where name='bad.test'")
check "failed domain: state failing, 1 failure, the CA's problem type, retry in about a minute" \
	test "$row" = "failing|1|urn:ietf:params:acme:error:connection|t"
check "the attempt keeps the problem document" \
	test "$(q "select problem->>'type' from issuance_attempts a join domains d on d.id=a.domain_id where d.name='bad.test' and a.state='failed'")" = "urn:ietf:params:acme:error:connection"
json=$($I domain show bad.test --json)
check "domain show has the error as a reason and the CA's detail" python3 -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["state"] == "failed" and d["reason"] == "challenge_unreachable" and d["detail"], d' "$json"
check "metrics count the failure" grep -q "^tracktls_issuer_failed 1$" "$T/m.prom"
check "no challenge rows left" test "$(q "select count(*) from challenges")" = 0

$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"; rc=$?
check "backoff: an immediate rerun leaves the failed domain alone" bash -c "test $rc = 0 && grep -q 'issued=0 renewed=0 failed=0' '$T/run2.log'"
q "update domains set next_attempt_at = now() where name='bad.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --max-failures 2 2>"$T/run3.log"
row=$(q "select state, failures, next_attempt_at > now() + interval '9 minutes' from domains where name='bad.test'")
check "second failure: 10 minute backoff, and paused at --max-failures" test "$row" = "paused|2|t"
q "update domains set next_attempt_at = now() where name='bad.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run4.log"
check "a paused domain is not ordered again" bash -c "grep -q 'orders=0' '$T/run4.log' && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from issuance_attempts a join domains d on d.id=a.domain_id where d.name='bad.test'\")\" = 2"

out=$($I domain add bad.test 2>&1)
check "domain add resumes a paused domain" grep -qx "resumed bad.test" <<<"$out"
check "  ... due now, failures reset, pending" test "$(q "select state, failures, next_attempt_at <= now() from domains where name='bad.test'")" = "pending|0|t"
q "update domains set state = 'paused' where name = 'bad.test'" >/dev/null

# self-check failure: nothing listens at the self-check address, so the CA is never asked
$I domain add selfcheck.test >/dev/null
dead=$(free_port)
$I run --self-check-via "127.0.0.1:$dead" 2>"$T/run5.log"; rc=$?
check "self-check failure fails the domain (exit 1)" test "$rc" = 1
check "  ... recorded as selfCheckFailed" test "$(q "select last_error_type from domains where name='selfcheck.test'")" = "urn:tracktls:selfCheckFailed"
check "  ... without a failed validation at the CA" bash -c "! grep -q 'selfcheck.test' '$T/pebble/pebble.log' || ! grep -i 'selfcheck.test' '$T/pebble/pebble.log' | grep -qi 'invalid\|validation failed'"

out=$($I run --directory "https://127.0.0.1:$(free_port)/dir" 2>&1); rc=$?
check "CA unreachable: exit 2" test "$rc" = 2
check "  ... with a clear message" grep -q "cannot read the ACME directory" <<<"$out"
out=$($I run --db "host=$T/nope dbname=x" 2>&1); rc=$?
check "database down: exit 2" test "$rc" = 2
check "  ... with a clear message" grep -q "cannot use the database" <<<"$out"
