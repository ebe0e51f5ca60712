#!/usr/bin/env bash
# Least privilege: started as root with --user nobody, the terminator binds, reads the key ring,
# then runs as nobody with no capability, an empty capability bounding set and no_new_privs (so no
# program it could execute regains a privilege), and still serves; started by a non-root user holding
# CAP_NET_BIND_SERVICE (as systemd does) it drops that too; as root without --user it refuses to
# run unless --allow-root.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
status_field() { awk -v k="$2:" '$1 == k { $1 = ""; print substr($0, 2) }' "/proc/$1/status"; }

check "terminator starts as root with --user nobody" start_terminator
uid=$(id -u nobody) gid=$(id -g nobody)
check "  ... and runs as nobody ($(status_field "$TERM_PID" Uid))" test "$(status_field "$TERM_PID" Uid)" = "$uid $uid $uid $uid"
check "  ... in nobody's group only ($(status_field "$TERM_PID" Gid) / $(status_field "$TERM_PID" Groups))" \
	test "$(status_field "$TERM_PID" Gid)" = "$gid $gid $gid $gid" -a "$(status_field "$TERM_PID" Groups)" = "$gid"
for c in CapEff CapPrm CapAmb CapInh; do
	check "  ... with $c empty ($(status_field "$TERM_PID" $c))" test "$(status_field "$TERM_PID" $c)" = 0000000000000000
done
check "  ... with the capability bounding set empty ($(status_field "$TERM_PID" CapBnd))" \
	test "$(status_field "$TERM_PID" CapBnd)" = 0000000000000000
check "  ... and no_new_privs set ($(status_field "$TERM_PID" NoNewPrivs))" test "$(status_field "$TERM_PID" NoNewPrivs)" = 1
threads_ok=1
for task in /proc/$TERM_PID/task/*; do
	grep -q "^Uid:	$uid	" "$task/status" && grep -q "^CapEff:	0000000000000000" "$task/status" &&
		grep -q "^CapBnd:	0000000000000000" "$task/status" && grep -q "^NoNewPrivs:	1" "$task/status" ||
		threads_ok=0
done
check "  ... in every thread ($(ls /proc/$TERM_PID/task | wc -l))" test "$threads_ok" = 1
check "  ... and serves" test "$(served a.test subject)" = "subject=CN = a.test"
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$T/a.test.pem" --resolve "a.test:$HTTPS_PORT:127.0.0.1" "https://a.test:$HTTPS_PORT/")
check "  ... requests (a database connection made after the switch: $code)" test "$code" = 200
stop_terminator; rc=$?
check "  ... and drains to exit 0 as nobody" test "$rc" = 0

HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
out=$(timeout 10 "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
	--backend "127.0.0.1:$BACKEND_PORT" --threads 1 2>&1); rc=$?
check "as root without --user or --allow-root it exits non-zero ($rc)" test "$rc" != 0 -a "$rc" != 124
check "  ... saying to use --user or --allow-root" grep -q -- "--user NAME.*--allow-root" <<<"$out"
out=$(timeout 10 "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" --threads 1 \
	--user no-such-user-here 2>&1); rc=$?
check "--user naming no user is refused ($rc)" test "$rc" != 0 -a "$rc" != 124
check "  ... saying so" grep -q "no-such-user-here: no such user" <<<"$out"
check "as root with --allow-root it serves" start_terminator --allow-root --user ""
check "  ... as root" test "$(status_field "$TERM_PID" Uid | awk '{print $1}')" = 0
check "  ... with the capability bounding set empty and no_new_privs set" \
	test "$(status_field "$TERM_PID" CapBnd) $(status_field "$TERM_PID" NoNewPrivs)" = "0000000000000000 1"
stop_terminator

# The systemd shape: a non-root user with CAP_NET_BIND_SERVICE in its ambient set.
cp "$T/keys" "$T/nobody.keys" && chown nobody "$T/nobody.keys" && chmod 600 "$T/nobody.keys"
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
setpriv --reuid=nobody --regid=nogroup --clear-groups --inh-caps=+net_bind_service --ambient-caps=+net_bind_service \
	"$TT_BIN/terminator" --master-key-file "$T/nobody.keys" --https "127.0.0.1:$HTTPS_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --metrics "127.0.0.1:$METRICS_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
	--threads 2 >>"$T/terminator.log" 2>&1 &
TERM_PID=$!
TT_PIDS+=($TERM_PID)
check "started by nobody with CAP_NET_BIND_SERVICE ambient, it serves" wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
for c in CapEff CapPrm CapAmb CapInh; do
	check "  ... with $c empty ($(status_field "$TERM_PID" $c))" test "$(status_field "$TERM_PID" $c)" = 0000000000000000
done
threads_ok=1
for task in /proc/$TERM_PID/task/*; do grep -q "^CapEff:	0000000000000000" "$task/status" || threads_ok=0; done
check "  ... in every thread" test "$threads_ok" = 1
check "  ... and no_new_privs set" test "$(status_field "$TERM_PID" NoNewPrivs)" = 1
stop_terminator
