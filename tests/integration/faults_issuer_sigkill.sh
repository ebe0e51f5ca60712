#!/usr/bin/env bash
# The issuer killed with SIGKILL at random points across 20 runs: after each kill the database is
# consistent (every active domain's current certificate is its own, with a sealed key; no domain
# has two certificates), every stored key opens and matches its certificate, and the next run
# completes. (150 domains: the kills cost orders, and all must fit the 300-per-3-hours order budget.)
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
N=150
# Added four at a time: each is a process start, and the order they go in does not matter.
seq 1 $N | xargs -P 4 -I{} "$I" domain add "z{}.test" >/dev/null
# Active domains whose current certificate is missing, another's or incomplete; domains with
# more than one certificate; all certificates. Consistent: "0|0|any".
state() {
	q "select (select count(*) from domains d left join certificates c on c.id = d.current_cert_id
		where d.state = 'active' and (c.id is null or c.domain_id <> d.id or c.sealed_key is null or c.chain_pem is null)),
		(select count(*) from (select domain_id from certificates group by domain_id having count(*) > 1) x),
		(select count(*) from certificates)"
}
consistent() { [[ $(state) == 0\|0\|* ]]; }
bad=0 progress=""
for run in $(seq 1 20); do
	$I run --self-check-via "127.0.0.1:$HTTP" --concurrency 3 2>>"$T/killed.log" & pid=$!
	# A random point: 50 to 500 ms into the run (start-up, account, orders, storing).
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.3f", 0.05 + (r % 450) / 1000 }')"
	kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
	s=$(state)
	[[ $s == 0\|0\|* ]] || { bad=$((bad + 1)); echo "inconsistent after kill $run: $s"; }
	progress="$progress ${s##*|}"
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
python3 "$TT_ROOT/tests/lib/open_sealed.py" "$TRACKTLS_MASTER_KEY_FILE" --match >"$T/keys.txt"
grep -v ' ok$' "$T/keys.txt" | head -n 5
opened=$(grep -c '^z[0-9]*\.test ok$' "$T/keys.txt")
check "every sealed key opens and matches its certificate ($opened of $N)" test "$opened" = $N
pg_dump -d "$TRACKTLS_DB" >"$T/dump.sql"
out=$(python3 "$TT_ROOT/tests/lib/keyscan.py" "$T" --exclude "$T/pebble/ca.key" --exclude "$T/pebble/server.key" 2>&1); rc=$?
check "no clear private key in the dump, folders or logs ($(tail -n1 <<<"$out"))" test "$rc" = 0
