#!/usr/bin/env bash
# `issuer run --linger`: after the due work the run stays, LISTENs, and orders a domain the moment
# `domain add` creates or resumes it. Two lingering runs on one database never order one domain
# twice (the row lock each order holds), and SIGTERM ends a lingering run cleanly.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
$I domain add due.test >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" --linger 120 2>"$T/run1.log" & r1=$!
$I run --self-check-via "127.0.0.1:$HTTP" --linger 120 2>"$T/run2.log" & r2=$!
check "both runs linger after the due work" wait_until 60 bash -c "grep -q event=lingering '$T/run1.log' && grep -q event=lingering '$T/run2.log'"
check "  ... the due domain was issued first, once" test "$(q "select count(*) from issuance_attempts")" = 1

for i in $(seq 1 6); do $I domain add "l$i.test" >/dev/null; done
check "domains added while the runs wait are issued and served" wait_until 60 bash -c \
	"test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from domain_status where https_ready and name like 'l%'\")\" = 6"
check "  ... while both runs were still up" bash -c "kill -0 $r1 && kill -0 $r2"
check "no domain was ordered twice" test "$(q "select count(*) from (select domain_id from issuance_attempts group by domain_id having count(*) > 1) x")" = 0
check "  ... nor got two certificates" test "$(q "select count(*) from certificates")" = 7
check "  ... one validating event each" test "$(q "select count(*) from domain_events where kind = 'validating'")" = 7
check "both runs took part" bash -c "grep -q 'event=cert_issued name=l' '$T/run1.log' || grep -q 'event=cert_issued name=l' '$T/run2.log'"

# A paused domain comes back through domain add and is ordered at once.
q "update domains set state = 'paused' where name = 'l1.test'" >/dev/null
q "update domains set current_cert_id = null, served_cert_id = null where name = 'l1.test'" >/dev/null
$I domain add l1.test >/dev/null
check "a resumed domain is ordered at once too" wait_until 60 bash -c \
	"test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select state from domain_status where name = 'l1.test'\")\" = active"

kill -TERM $r1 $r2
wait $r1; rc1=$?
wait $r2; rc2=$?
check "SIGTERM ends both lingering runs with exit 0" test "$rc1$rc2" = 00
check "  ... each summarized" bash -c "grep -q event=run_done '$T/run1.log' && grep -q event=run_done '$T/run2.log'"

$I run --self-check-via "127.0.0.1:$HTTP" --linger 2 2>"$T/run3.log"; rc=$?
check "a run lingers no longer than --linger" bash -c "test $rc = 0 && grep -q event=run_done '$T/run3.log'"
