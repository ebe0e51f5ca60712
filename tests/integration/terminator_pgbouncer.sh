#!/usr/bin/env bash
# The terminator through PgBouncer in session mode with the shipped pool settings
# (deploy/pgbouncer-tracktls.ini), as an edge host of a fleet is deployed: certificates, renewals
# by NOTIFY, HTTP-01 tokens and ticket keys all work through the pool; a zero-downtime restart
# starts and ends no PostgreSQL backend (the new process takes the pool's open server
# connections, the old one's are reset and return); and PostgreSQL stopped and started again
# behind the pool is survived as on a direct connection.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
. "$TT_ROOT/tests/lib/pgbouncer.sh"

private_pg "$T/pg" pooled
tt_setup_db
start_backend
# d is stored but never asked for until PostgreSQL is down.
for n in a b d; do make_cert "$n.pool.example" || fail "make_cert $n.pool.example"; done
"$TT_BIN/issuer" tickets rotate >/dev/null 2>&1 || fail "issuer tickets rotate"
DIRECT=$TRACKTLS_DB
# Two terminators of 2 threads at once: 2 x (2 + 4) sessions, as deploy/pgbouncer-tracktls.ini says.
POOL=12
TT_CLEANUPS=("pgb_stop '$T/pgb'" "${TT_CLEANUPS[@]}")
POOLED=$(pgb_start "$T/pgb" pooled "$PGHOST" "$PGPORT" "$POOL") || { fail "pgbouncer starts"; exit 1; }

HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
# start_on METRICS_PORT: a terminator on the shared ports through the pool; its pid in $NEW_PID.
start_on() {
	bg "$TT_BIN/terminator" --db "$POOLED" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$1" --threads 2 --user nobody \
		--db-timeout 1s >>"$T/terminator.$1.log" 2>&1
	NEW_PID=$!
	wait_until 15 curl -sf "http://127.0.0.1:$1/healthz"
}
mval() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
serves() { [ "$(served "$1" subject)" = "subject=CN = $1" ]; }
# The PostgreSQL backends of the database, this query's own left out.
backends() {
	psql -qAtX -d "$DIRECT" -c "select pid from pg_stat_activity where datname = 'pooled'
		and backend_type = 'client backend' and pid <> pg_backend_pid() order by pid"
}

A=$(free_port)
check "a terminator starts through the pool" start_on "$A"
A_PID=$NEW_PID
check "it serves its names" serves a.pool.example
check "  ... each with its own certificate" serves b.pool.example
check "it holds the fleet's ticket key, read through the pool" test "$(mval "$A" tracktls_ticket_keys)" = 1

old=$(served a.pool.example serial)
new=$(renew a.pool.example)
check "a renewal is picked up by NOTIFY through the pool" wait_until 5 serving_serial a.pool.example "$new"
check "  ... a different certificate" test "$old" != "$new"

psql -qAt -d "$DIRECT" -c "insert into domains (name) values ('acme.pool.example');
	insert into challenges (token, key_authorization, domain_id, expires_at)
	select 'tok_POOL-1', 'tok_POOL-1.thumbprint', id, now() + interval '1 hour'
	from domains where name = 'acme.pool.example'" >/dev/null
token() { test "$(curl -s -H 'Host: acme.pool.example' "http://127.0.0.1:$HTTP_PORT/.well-known/acme-challenge/tok_POOL-1")" = tok_POOL-1.thumbprint; }
check "an HTTP-01 token written after start is answered (LISTEN through the pool)" wait_until 5 token
psql -qAt -d "$DIRECT" -c "update ticket_keys set encrypt_until = now() - interval '1s', decrypt_until = now() - interval '1s'"
keys_held() { test "$(mval "$A" tracktls_ticket_keys)" = "$1"; }
check "a ticket key retired after start is dropped (NOTIFY through the pool)" wait_until 5 keys_held 0
"$TT_BIN/issuer" tickets rotate >/dev/null 2>&1
check "  ... and the next one rotated in is held" wait_until 5 keys_held 1

# ---- the restart: no backend started or ended ----
filled() { pgb_filled "$T/pgb" pooled; }
check "the pool opens its $POOL server connections while the terminator is connected" wait_until 30 filled
before=$(backends)
# Server connections whose last statement was the pool's reset.
resets() {
	psql -qAtX -d "$DIRECT" -c "select count(*) from pg_stat_activity where datname = 'pooled'
		and backend_type = 'client backend' and query = 'DISCARD ALL'"
}
resets_before=$(resets)
B=$(free_port)
check "a second terminator starts on the same ports" start_on "$B"
B_PID=$NEW_PID
kill -TERM "$A_PID"
wait "$A_PID"; rc=$?
check "the old one drains and exits 0 ($rc)" test "$rc" = 0
check "the new one serves" serves b.pool.example
check "  ... the renewed certificate too" serving_serial a.pool.example "$new"
after=$(backends)
check "the restart started and ended no PostgreSQL backend ($(wc -w <<<"$before") before, $(wc -w <<<"$after") after)" \
	test "$before" = "$after"
check "  ... the old one's sessions were reset before going back to the pool (DISCARD ALL: $resets_before, then $(resets))" \
	test "$(resets)" -gt "$resets_before"
new_b=$(renew b.pool.example)
check "the new one picks up a renewal on the pool's pre-opened connections" wait_until 5 serving_serial b.pool.example "$new_b"

# ---- PostgreSQL stopped and started again behind the pool ----
pg_stop "$T/pg"
check "with PostgreSQL down, a cached name is still served" serves a.pool.example
uncached_fast() {
	local t0=$SECONDS
	test -z "$(served d.pool.example subject)" && test $((SECONDS - t0)) -le 6
}
check "  ... and a stored name it has not cached is refused, not left hanging" uncached_fast
pg_start "$T/pg" 5432 >/dev/null || fail "PostgreSQL starts again"
make_cert c.pool.example || fail "make_cert c.pool.example"
back() { serves c.pool.example; }
check "once PostgreSQL is back, a new name is served through the pool" wait_until 20 back
check "  ... and the name refused while it was down" wait_until 20 serves d.pool.example
# A renewal stored before LISTEN is back is found by the revalidation that follows it: each try
# stores a new one until one arrives by NOTIFY within its own wait.
renewal_heard() {
	local again
	again=$(renew a.pool.example) && wait_until 3 serving_serial a.pool.example "$again"
}
check "  ... and renewals reach it again (LISTEN restored)" wait_until 20 renewal_heard
kill -TERM "$B_PID"
wait "$B_PID"; rc=$?
check "it exits 0 ($rc)" test "$rc" = 0
