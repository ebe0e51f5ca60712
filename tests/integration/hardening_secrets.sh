#!/usr/bin/env bash
# Secrets: after issuing, renewing, revoking and removing against Pebble, with a terminator serving
# the certificates, no clear private key (PEM, or P-256 DER raw, hex or base64) is in a pg_dump, the
# database's files and WAL, the scenario's folders or any log. The terminator refuses a key ring
# others can read, and runs with core dumps off and not dumpable (not ptrace-able by its own user).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
SCAN=$TT_ROOT/tests/lib/keyscan.py

issuer_env_start
for n in s1.test s2.test s3.test; do $I domain add $n >/dev/null; done
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run1.log"
check "issued three" grep -q "issued=3 renewed=0 failed=0" "$T/run1.log"
q "update domains set next_attempt_at = now()" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"
check "renewed three" grep -q "issued=0 renewed=3 failed=0" "$T/run2.log"
check "revoke" bash -c "$I revoke s1.test --reason 4 >'$T/revoke.log' 2>&1"
check "domain remove (revokes, destroys the key)" bash -c "$I domain remove s2.test >'$T/remove.log' 2>&1"

# The terminator serves what was issued, with debug logs.
start_backend
check "terminator starts" start_terminator --log-level debug
check "  ... and serves the issued certificate" test "$(served s3.test subject)" = "subject=CN = s3.test"
stop_terminator

dump=$T/dump.sql
pg_dump -d "$TRACKTLS_DB" >"$dump"
check "the dump holds the sealed keys (the scan has something to miss)" \
	test "$(q "select count(*) from certificates where sealed_key is not null")" -ge 4
oid=$(q "select oid from pg_database where datname = current_database()")
psql -qAtX -d "$TRACKTLS_DB" -c checkpoint >/dev/null
out=$(python3 "$SCAN" "$dump" "$T" "$PGHOST/data/base/$oid" "$PGHOST/data/pg_wal" "$PGHOST/postgres.log" \
	--exclude "$T/pebble/ca.key" --exclude "$T/pebble/server.key" 2>&1); rc=$?
echo "$out" | tail -n 20
check "no clear private key in the dump, the database files and WAL, the folders and logs ($(tail -n1 <<<"$out"))" test "$rc" = 0
stray=$(find /tmp /var/tmp /dev/shm -maxdepth 2 -newer "$T/keys" -type f 2>/dev/null | grep -v "^$TT_WORK" | head -200)
if [ -n "$stray" ]; then out=$(python3 "$SCAN" $stray 2>&1); rc=$?; else out="nothing new"; rc=0; fi
check "no clear private key in files left in /tmp, /var/tmp, /dev/shm ($(tail -n1 <<<"$out"))" test "$rc" = 0

# Key ring permissions and core dumps. The terminator runs as an unprivileged user here, so
# /proc shows what it did to itself.
chmod 640 "$T/keys"
out=$("$TT_BIN/terminator" --https 127.0.0.1:0 --http 127.0.0.1:0 --allow-root 2>&1); rc=$?
check "a key ring readable by the group is refused (exit $rc)" test "$rc" != 0
check "  ... for that reason" grep -q "readable or writable by group or others" <<<"$out"
chmod 600 "$T/keys"
cp "$T/keys" "$T/nobody.keys" && chown nobody "$T/nobody.keys" && chmod 600 "$T/nobody.keys"
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
"${AS_NOBODY[@]}" "$TT_BIN/terminator" --master-key-file "$T/nobody.keys" --https "127.0.0.1:$HTTPS_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --metrics "127.0.0.1:$METRICS_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
	--threads 1 >"$T/nobody.log" 2>&1 &
NPID=$!
TT_PIDS+=($NPID)
check "the terminator starts as nobody" wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
check "  ... with core dumps off (RLIMIT_CORE 0 0)" grep -qE '^Max core file size +0 +0 ' "/proc/$NPID/limits"
check "  ... and not dumpable: /proc/PID is root's, not its own user's" test "$(stat -c %U "/proc/$NPID/status")" = root
"${AS_NOBODY[@]}" sleep 60 & other=$!
TT_PIDS+=($other)
owned_by_nobody() { test "$(stat -c %U "/proc/$other/status")" = nobody; }
check "  ... while another process of that user is its own (the check can tell)" wait_until 5 owned_by_nobody
kill "$other"
kill -TERM "$NPID"; wait "$NPID"; rc=$?
check "  ... and stops with exit 0" test "$rc" = 0
