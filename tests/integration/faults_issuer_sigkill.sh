#!/usr/bin/env bash
# The issuer killed with SIGKILL at random points across 20 runs: after each kill the database is
# consistent (every active domain's current certificate is its own, with a sealed key; no domain
# has two certificates), every stored key opens and matches its certificate, and the next run
# completes. (150 domains: the kills cost orders, and all must fit the 300-per-3-hours order budget.)
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
N=150
for i in $(seq 1 $N); do $I domain add "z$i.test" >/dev/null; done
consistent() {
	test "$(q "select count(*) from domains d left join certificates c on c.id = d.current_cert_id
		where d.state = 'active' and (c.id is null or c.domain_id <> d.id or c.sealed_key is null or c.chain_pem is null)")" = 0 &&
	test "$(q "select count(*) from (select domain_id from certificates group by domain_id having count(*) > 1) x")" = 0
}
bad=0 progress=""
for run in $(seq 1 20); do
	$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 3 2>>"$T/killed.log" & pid=$!
	# A random point: 50 to 500 ms into the run (start-up, account, orders, storing).
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.05 + (r % 450) / 1000 }')"
	kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
	consistent || { bad=$((bad + 1)); echo "inconsistent after kill $run"; }
	progress="$progress $(q "select count(*) from certificates")"
done
echo "certificates after each kill:$progress"
check "the database is consistent after each of 20 kills" test "$bad" = 0
mid=$(for c in $progress; do [ "$c" -lt $N ] && echo; done | wc -l)
check "the kills landed mid-work ($mid of 20 with work left)" test "$mid" -ge 15
$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 3 2>"$T/final.log"; rc=$?
tail -n 1 "$T/final.log"
check "the next run exits 0" test "$rc" = 0
check "all $N domains active, each with its own current certificate" \
	test "$(q "select count(*) from domains d join certificates c on c.id = d.current_cert_id and c.domain_id = d.id where d.state='active'")" = $N
check "  ... and consistent" consistent
check "no attempt left 'started'" test "$(q "select count(*) from issuance_attempts where state='started'")" = 0
opened=0
for i in $(seq 1 $N); do
	k=$(open_key "z$i.test" | openssl pkey -pubout 2>/dev/null)
	c=$(q "select c.chain_pem from domains d join certificates c on c.id=d.current_cert_id where d.name='z$i.test'" | openssl x509 -noout -pubkey 2>/dev/null)
	[ -n "$k" ] && [ "$k" = "$c" ] && opened=$((opened + 1))
done
check "every sealed key opens and matches its certificate ($opened of $N)" test "$opened" = $N
pg_dump -d "$TRACKTLS_DB" >"$T/dump.sql"
out=$(python3 "$TT_ROOT/tests/lib/keyscan.py" "$T" --exclude "$T/pebble/ca.key" --exclude "$T/pebble/server.key" 2>&1); rc=$?
check "no clear private key in the dump, folders or logs ($(tail -n1 <<<"$out"))" test "$rc" = 0
