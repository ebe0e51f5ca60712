#!/usr/bin/env bash
# Two runs started at once share the work: each domain is ordered and issued exactly once, and the
# order budget is shared between them.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
for i in $(seq 1 40); do $I domain add "p$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 4 2>"$T/a.log" & a=$!
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 4 2>"$T/b.log" & b=$!
wait $a; ra=$?; wait $b; rb=$?
check "both runs exit 0" test "$ra$rb" = 00
check "both runs did some of the work" bash -c "grep -q 'issued=[1-9]' '$T/a.log' && grep -q 'issued=[1-9]' '$T/b.log'"
check "40 domains active" test "$(q "select count(*) from domains where state='active'")" = 40
check "exactly one certificate per domain" test "$(q "select count(*) from certificates")" = 40
check "exactly one order per domain" test "$(q "select count(distinct domain_id) || ' ' || count(*) from issuance_attempts")" = "40 40"
check "one account" test "$(q "select count(*) from acme_accounts")" = 1

# the budget is counted in the database: 40 orders used, budget 45 leaves 5 for two parallel runs
for i in $(seq 41 60); do $I domain add "p$i.test" >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" --order-budget 45 --concurrency 3 2>"$T/c.log" & a=$!
$I run --self-check-via "127.0.0.1:$HTTP" --order-budget 45 --concurrency 3 2>"$T/d.log" & b=$!
wait $a; wait $b
check "order budget shared by parallel runs: 5 more orders, not 10" test "$(q "select count(*) from issuance_attempts")" = 45
check "budget exhaustion is logged" bash -c "grep -q order_budget_spent '$T/c.log' '$T/d.log'"
$I run --self-check-via "127.0.0.1:$HTTP" --max-orders 3 2>"$T/e.log"
check "--max-orders 3 starts 3 orders" grep -q "issued=3 .*orders=3" "$T/e.log"
$I run --dry-run >"$T/dry.out" 2>/dev/null
check "--dry-run lists the 12 still due and orders nothing" bash -c "test \$(grep -c '^due p' '$T/dry.out') = 12 && test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c 'select count(*) from issuance_attempts')\" = 48"
$I run --self-check-via "127.0.0.1:$HTTP" --deadline 0 2>/dev/null
