#!/usr/bin/env bash
# `issuer events --follow` loses and repeats nothing: not when writers commit out of the order
# they drew their ids in (a transaction holding an event open while a later one commits), and
# not across a PostgreSQL restart under it.
. "$TT_ROOT/tests/lib/common.sh"
I=$TT_BIN/issuer
private_pg "$T/pg" follow
make_keyring || fail "make_keyring"
$I db migrate >/dev/null || fail "db migrate"
q() { psql -qAtX -d "$TRACKTLS_DB" -c "$1"; }
lines() { test "$(wc -l <"$T/follow.out")" -ge "$1"; }

bg $I events --follow --json >"$T/follow.out" 2>"$T/follow.err"
FOLLOW=$!
$I domain add first.test >/dev/null
check "follow prints an event as it is committed" wait_until 10 lines 1

# A writer draws its event id and keeps its transaction open; a later writer must not appear first.
q "insert into domains (name) values ('slowtx.test')" >/dev/null
psql -qAtX -d "$TRACKTLS_DB" -c "begin" -c "select tracktls_domain_event(id, 'added') from domains where name = 'slowtx.test'" \
	-c "select pg_sleep(2)" -c "commit" >/dev/null &
slow=$!
wait_until 5 bash -c "psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from pg_locks where locktype = 'advisory' and granted\" | grep -qx 1"
$I domain add later.test >/dev/null
wait $slow
adds=()
for i in $(seq 1 10); do $I domain add "a$i.test" >/dev/null & adds+=($!); done
wait "${adds[@]}"
wait_until 20 lines 13

pg_stop "$T/pg"
check "follow keeps running while PostgreSQL is down" kill -0 "$FOLLOW"
pg_start "$T/pg" 5432 >/dev/null || fail "PostgreSQL restarts"
adds=()
for i in $(seq 1 10); do $I domain add "b$i.test" >/dev/null & adds+=($!); done
wait "${adds[@]}"
check "follow catches up after the restart" wait_until 30 lines 23
kill "$FOLLOW" 2>/dev/null
check "  ... and said it reconnected" grep -q "event=events_reconnected" "$T/follow.err"
# Ids may jump (a crashed server skips ahead in the sequence, an aborted writer leaves a hole):
# what counts is that the printed ids are exactly the stored ones, each once, ascending.
q "select id from domain_events order by id" >"$T/stored.ids"
check "every stored event printed once, in id order" python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ids = [e["id"] for e in ev]
stored = [int(l) for l in open(sys.argv[2])]
assert ids == stored and len(stored) == 23, (ids, stored)
names = [e["name"] for e in ev]
assert len(set(names)) == 23 and names.index("slowtx.test") < names.index("later.test"), names' "$T/follow.out" "$T/stored.ids"
