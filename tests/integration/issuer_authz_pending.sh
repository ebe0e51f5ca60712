#!/usr/bin/env bash
# An authorization that stays pending (the CA's validator reaches a host that accepts and never
# answers) is the domain's failure, not the CA's: it is recorded with backoff and counts towards
# --max-failures, while the CA stays usable for the other domains of the run.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
# Pebble's DNS sends stuck.test to 127.0.0.3, where a listener takes the validator's connections
# and never answers them: the authorization stays pending for longer than the issuer polls it.
bg python3 "$TT_ROOT/tests/lib/black_hole.py" 127.0.0.3 "$HTTP"
wait_until 10 port_open 127.0.0.3 "$HTTP" || fail "silent listener did not start"
curl -sf -X POST -d '{"host":"stuck.test.","addresses":["127.0.0.3"]}' "http://127.0.0.1:$PEBBLE_CHALL_MGMT_PORT/add-a" >/dev/null ||
	fail "challtestsrv add-a"
for n in stuck.test fine.test; do $I domain add $n >/dev/null; done

# --timeout 1s: the issuer polls an authorization for 2 s, well before the validator gives up.
$I run --self-check-via "127.0.0.1:$HTTP" --timeout 1s --max-failures 2 --concurrency 1 2>"$T/run1.log"; rc=$?
check "run exits 1: a domain failed" test "$rc" = 1
check "the stuck domain is named in the summary" grep -q "event=run_done.*failed=1 .*failed_domains=stuck.test" "$T/run1.log"
check "the CA was not called unavailable" bash -c "! grep -q 'event=ca_unavailable' '$T/run1.log'"
check "the other domain was issued" test "$(q "select state from domains where name='fine.test'")" = active
row=$(q "select state, failures, last_error_type, next_attempt_at > now() + interval '30 seconds' from domains where name='stuck.test'")
check "stuck domain: failing, 1 failure, authorizationPending, backoff" test "$row" = "failing|1|urn:tracktls:authorizationPending|t"
check "  ... shown as validation_failed" test "$(q "select reason from domain_status where name='stuck.test'")" = validation_failed
check "  ... its attempt failed, not abandoned" test "$(q "select a.state from issuance_attempts a join domains d on d.id=a.domain_id where d.name='stuck.test'")" = failed

q "update domains set next_attempt_at = now() where name='stuck.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --timeout 1s --max-failures 2 2>"$T/run2.log"
check "second pending authorization: paused at --max-failures" test "$(q "select state, failures from domains where name='stuck.test'")" = "paused|2"
