#!/usr/bin/env bash
# The config file carries the same keys as the flags (flags win); --deadline stops taking new work.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
unset TRACKTLS_ACME_DIRECTORY TRACKTLS_ACME_CA_FILE
cat >"$T/issuer.conf" <<CONF
# issuer configuration
directory = $PEBBLE_DIRECTORY
ca-file = "$PEBBLE_CA"
self-check-via = 127.0.0.1:$HTTP
concurrency = 1
max-orders = 2
CONF
for i in $(seq 1 300); do echo "INSERT INTO domains (name) VALUES ('d$i.test');"; done | psql -qAtX -d "$TRACKTLS_DB"
$I run --config "$T/issuer.conf" 2>"$T/run1.log"; rc=$?
check "run from the config file" bash -c "test $rc = 0 && grep -q 'issued=2 .*orders=2' '$T/run1.log'"
$I run --config "$T/issuer.conf" --max-orders 3 2>"$T/run2.log"
check "a flag wins over the file" grep -q "issued=3 .*orders=3" "$T/run2.log"
echo "bogus-key = 1" >>"$T/issuer.conf"
out=$($I run --config "$T/issuer.conf" 2>&1); rc=$?
check "an unknown key in the file: exit 2" test "$rc" = 2
check "  ... naming the file, line and key" grep -q "issuer.conf:7: unknown key 'bogus-key'" <<<"$out"
sed -i '/bogus-key/d; /max-orders/d' "$T/issuer.conf"
start=$SECONDS
$I run --config "$T/issuer.conf" --deadline 1 2>"$T/run3.log"; rc=$?
took=$((SECONDS - start))
n=$(q "select count(*) from domains where state='active'")
check "--deadline 1: the run stops taking work (exit 0, $n of 300 done, ${took}s)" test "$rc" = 0 -a "$n" -lt 300 -a "$took" -le 10
check "  ... leaving nothing half done" test "$(q "select count(*) from issuance_attempts where state='started'")" = 0

# A repeatable key written twice in the file adds up as repeated flags do: a down preferred CA and
# Pebble as its fallback (a file that kept only its first line would have no CA to run with).
DOWN=$(free_port)
cat >"$T/fallback.conf" <<CONF
directory = https://127.0.0.1:$DOWN/dir
directory = $PEBBLE_DIRECTORY
ca-file = "$PEBBLE_CA"
self-check-via = 127.0.0.1:$HTTP
max-orders = 1
CONF
$I run --config "$T/fallback.conf" 2>"$T/run4.log"; rc=$?
check "both directory lines of the file are used: the fallback issues (exit $rc)" \
	bash -c "test $rc = 0 && grep -q 'issued=1 ' '$T/run4.log'"
check "  ... after the first one is found down" grep -q "event=ca_down directory=https://127.0.0.1:$DOWN/dir" "$T/run4.log"
$I run --config "$T/fallback.conf" --directory "$PEBBLE_DIRECTORY" 2>"$T/run5.log"; rc=$?
check "a --directory flag replaces the file's lines, none added to it (exit $rc)" \
	bash -c "test $rc = 0 && ! grep -q event=ca_down '$T/run5.log'"
