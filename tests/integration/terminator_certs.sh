#!/usr/bin/env bash
# terminator certificates, end to end with openssl s_client: each name gets its own certificate,
# unknown and removed names are refused, a renewal stored while serving is picked up without a
# restart, and with PostgreSQL stopped cached names keep working while misses fail fast, then
# recover by themselves when it is back.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

# A private PostgreSQL, so stopping it touches no other test.
private_pg "$T/pg" certs
tt_setup_db
start_backend
for n in a b c d; do make_cert "$n.certs.example" || fail "import $n"; done
check "terminator starts" start_terminator

for n in a b c; do
	check "$n.certs.example gets its own certificate" test "$(served "$n.certs.example" subject)" = "subject=CN = $n.certs.example"
done
check "an unknown name gets no certificate" test -z "$(served nobody.certs.example subject)"
check "a mixed-case name with a trailing dot is the same name" \
	test "$(served B.Certs.Example. subject)" = "subject=CN = b.certs.example"
check "cache hits are counted" test "$(metric tracktls_cert_cache_hits_total)" -ge 1

old=$(served a.certs.example serial)
new=$(renew a.certs.example)
check "a renewal stored while serving is served without a restart" wait_until 5 serving_serial a.certs.example "$new"
check "  ... and it is a different certificate" test "$old" != "$new"

psql -qAt -d "$TRACKTLS_DB" -c "update domains set state = 'removed' where name = 'c.certs.example'" >/dev/null
gone() { test -z "$(served c.certs.example subject)"; }
check "a removed domain stops being served" wait_until 5 gone

# PostgreSQL goes away: a, b are cached, d was never asked for.
pg_stop "$T/pg"
check "database down: a cached name keeps working" test "$(served b.certs.example subject)" = "subject=CN = b.certs.example"
start=$(date +%s%N)
out=$(served d.certs.example subject)
ms=$((($(date +%s%N) - start) / 1000000))
check "database down: a miss fails" test -z "$out"
check "database down: ... fast (${ms} ms)" test "$ms" -lt 3000
pg_start "$T/pg" "$PGPORT" >/dev/null
back() { test "$(served d.certs.example subject)" = "subject=CN = d.certs.example"; }
check "database back: misses recover by themselves" wait_until 20 back
check "database back: cached names still served" test "$(served a.certs.example serial)" = "$new"
check "terminator stops cleanly" stop_terminator
