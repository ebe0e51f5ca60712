#!/usr/bin/env bash
# terminator reading certificates from a streaming read replica while it LISTENs on the primary
# (--db-listen; a standby cannot LISTEN): names, renewals and new domains stored on the primary
# are served, and the lookups go to the replica. With synchronous_commit = remote_apply the
# replica has applied a change before its NOTIFY is delivered.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

private_pg "$T/primary" repl
PRIMARY_HOST=$PGHOST
tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"

mkdir -p "$T/standby" && chown postgres: "$T/standby" && chmod 755 "$T/standby"
check "a standby is cloned from the primary" pg__as pg_basebackup -h "$PRIMARY_HOST" -p 5432 -U postgres \
	-D "$T/standby/data" -R -X stream --checkpoint=fast
pg_start "$T/standby" 5433 || { fail "standby starts"; exit 1; }
TT_CLEANUPS+=("pg_stop '$T/standby'")
STANDBY="host=$T/standby port=5433 user=postgres dbname=repl"
export PGHOST=$PRIMARY_HOST PGPORT=5432
check "the standby is in recovery" test "$(psql -qAt -d "$STANDBY" -c 'select pg_is_in_recovery()')" = t
check "LISTEN is refused on the standby" bash -c "! psql -qAt -d '$STANDBY' -c 'listen tracktls_cert' 2>/dev/null"
psql -qAt -d postgres -c "alter system set synchronous_standby_names = '*'" -c "select pg_reload_conf()" >/dev/null
psql -qAt -d postgres -c "alter database repl set synchronous_commit = remote_apply" >/dev/null
streaming() { test "$(psql -qAt -d postgres -c "select count(*) from pg_stat_replication where sync_state = 'sync'")" = 1; }
check "the standby replicates synchronously" wait_until 20 streaming

check "terminator starts on the standby, listening on the primary" start_terminator --db "$STANDBY" --db-listen "$TRACKTLS_DB"
check "a name is served from the replica" test "$(served a.test subject)" = "subject=CN = a.test"
standby_conns() { psql -qAt -d "$STANDBY" -c "select count(*) from pg_stat_activity where datname = 'repl' and pid <> pg_backend_pid()"; }
check "  ... the terminator's lookups are connected to the standby" test "$(standby_conns)" -ge 1

old=$(served a.test serial)
make_cert a.test || fail "renew a.test"
new=$(openssl x509 -noout -serial -in "$T/a.test.pem")
renewed() { test "$(served a.test serial)" = "$new"; }
check "a renewal stored on the primary is served without a restart" wait_until 10 renewed
check "  ... and it is a new certificate" test "$old" != "$new"
make_cert b.test || fail "make_cert b.test"
check "a domain added on the primary is served at once" wait_until 10 bash -c "[ \"\$(openssl s_client -connect 127.0.0.1:$HTTPS_PORT -servername b.test </dev/null 2>/dev/null | openssl x509 -noout -subject 2>/dev/null)\" = 'subject=CN = b.test' ]"
check "terminator stops cleanly" stop_terminator
