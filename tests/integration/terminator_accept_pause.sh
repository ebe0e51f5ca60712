#!/usr/bin/env bash
# A terminator holds at most --max-connections client connections (by default as many as its
# descriptor limit allows, two each: the client's and its backend's), shared by its threads; a
# thread holding its share stops accepting (ACCEPT_FULL) and the kernel queues the rest. So a
# connection it accepts always has a descriptor left for its backend: flooded with more idle
# connections than its limit allows, it serves a client connected before the flood (before the
# share, the flood took every descriptor and that client's request was answered 502,
# backend_socket_failed error=24) and one queued behind the flood. Out of descriptors all the same
# (the limit lowered under it), it pauses its accepts (ACCEPT_PAUSED) instead of spinning on EMFILE
# and resumes them. A --max-connections the limit cannot hold is refused at start.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

# Without --metrics the process and its 2 threads reserve 64 + 2 x (5 + 64) = 202 descriptors; 300
# leave room for 49 connections: 24 for each thread.
FD_LIMIT=300
SHARE=48
# Far more than the limit would hold without a share: it used to run out of descriptors.
FLOOD=400
tt_setup_db
start_backend

# The terminator's client connections on the plain port: the sockets it holds that are the
# server's end of a connection to that port (queued ones belong to no process yet; the backend
# pool's sockets are the client end of connections elsewhere).
inodes_held() { find "/proc/$TERM_PID/fd" -lname 'socket:*' -printf '%l\n' | tr -dc '0-9\n' | sort; }
inodes_served() { ss -Htne state established state close-wait "( sport = :$HTTP_PORT )" | grep -o 'ino:[0-9]*' | cut -d: -f2 | sort; }
held() { comm -12 <(inodes_held) <(inodes_served) | wc -l; }
holding() { test "$(held)" = "$1"; }
# Connections to the plain port established by the kernel, accepted or queued.
queued_or_held() { test "$(ss -Htn state established "( dport = :$HTTP_PORT )" | wc -l)" -ge "$1"; }
absent() { ! grep -q "$1" "$2"; }
# Opens N idle connections to PORT, held until killed; says "held" once all are open.
flood() {
	bg python3 -c '
import socket, sys, time
held = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(int(sys.argv[2]))]
print("held", flush=True)
time.sleep(600)
' "$1" "$2" >"$T/flood.out"
	FLOOD_PID=$!
	wait_until 15 grep -q held "$T/flood.out"
}

HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
bg prlimit --nofile=$FD_LIMIT:$FD_LIMIT "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --backend "127.0.0.1:$BACKEND_PORT" --threads 2 --user nobody \
	--header-timeout 120s >>"$T/terminator.log" 2>&1
TERM_PID=$!
check "a terminator limited to $FD_LIMIT descriptors starts, holding $SHARE connections at most" \
	wait_until 15 grep -q "event=start .*max_connections=$SHARE " "$T/terminator.log"
wait_until 15 port_open 127.0.0.1 "$HTTP_PORT"
# The process is not dumpable: reading its descriptors takes root with CAP_SYS_PTRACE.
check "its descriptors can be read" test -n "$(inodes_held)"
# A client connected before the flood sends its request once the flood holds all it can.
bg python3 -c '
import os, socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
print("connected", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.01)
c.sendall(b"GET /early HTTP/1.1\r\nHost: plain.test\r\nConnection: close\r\n\r\n")
print(c.recv(4096).split(b"\r\n")[0].decode(), flush=True)
' "$HTTP_PORT" "$T/go" >"$T/early.out"
check "a client connects" wait_until 10 holding 1
check "$FLOOD idle connections are open" flood "$HTTP_PORT" "$FLOOD"
for thread in 0 1; do
	check "thread $thread stops accepting at its share" \
		wait_until 15 grep -q "event=accept_full thread=$thread connections=$((SHARE / 2))" "$T/terminator.log"
done
check "  ... so it holds $SHARE connections ($(held))" holding "$SHARE"
touch "$T/go"
check "the first client's request, sent now, is served ($(tail -1 "$T/early.out"))" \
	wait_until 10 grep -q "^HTTP/1.1 200" "$T/early.out"
# Queued behind the flood: accepted once the flood is gone.
curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'Host: plain.test' "http://127.0.0.1:$HTTP_PORT/during" \
	>"$T/during.code" &
CURL_PID=$!
check "  ... which it has not taken yet" wait_until 10 queued_or_held $((FLOOD + 1))
check "  ... and still holds $SHARE ($(held))" holding "$SHARE"
kill "$FLOOD_PID"
wait "$CURL_PID"
check "a request queued behind the flood is served once it is gone ($(cat "$T/during.code"))" \
	test "$(cat "$T/during.code")" = 200
check "  ... and so is the next one" test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Host: plain.test' "http://127.0.0.1:$HTTP_PORT/after")" = 200
check "it never ran out of descriptors" absent "event=backend_socket_failed\|event=accept_paused" "$T/terminator.log"
check "nothing is left open" wait_until 10 holding 0
kill -TERM "$TERM_PID"
wait "$TERM_PID"; rc=$?
check "it drains and exits 0 ($rc)" test "$rc" = 0

# The limit lowered under a running terminator: accepting fails with EMFILE. As root: another
# user's process's limits take CAP_SYS_RESOURCE to change. A log of its own, for the greps.
METRICS_PORT=$(free_port)
bg "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
	--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$METRICS_PORT" --threads 2 --allow-root \
	>>"$T/terminator2.log" 2>&1
TERM_PID=$!
check "a terminator with the default share starts" wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
limit=$(metric tracktls_connections_limit)
check "  ... /metrics tells its share ($limit, as in its start line)" \
	grep -q "event=start .*max_connections=$limit " "$T/terminator2.log"
open_fds=$(find "/proc/$TERM_PID/fd" -mindepth 1 | wc -l)
files=$(prlimit --pid "$TERM_PID" --nofile --raw --noheadings -o SOFT)
prlimit --pid "$TERM_PID" --nofile=$((open_fds + 20)):"$files"
check "$FLOOD idle connections are open" flood "$HTTP_PORT" "$FLOOD"
check "it runs out of descriptors and pauses accepting" \
	wait_until 15 grep -q "event=accept_paused .*error=\"Too many open files\"" "$T/terminator2.log"
cpu() { awk '{ print $14 + $15 }' "/proc/$TERM_PID/stat"; }
before=$(cpu)
sleep 1 # a window to measure CPU over, not a wait for something
used=$(($(cpu) - before))
check "  ... without spinning ($used of $(getconf CLK_TCK) ticks in a second)" test "$used" -lt $(($(getconf CLK_TCK) / 4))
curl -s -o /dev/null -w '%{http_code}' --max-time 20 -H 'Host: plain.test' "http://127.0.0.1:$HTTP_PORT/resumed" \
	>"$T/resumed.code" &
CURL_PID=$!
check "a request waits in the queue meanwhile" wait_until 10 queued_or_held $((FLOOD + 1))
prlimit --pid "$TERM_PID" --nofile="$files:$files"
wait "$CURL_PID"
check "with descriptors back, it accepts again and serves it ($(cat "$T/resumed.code"))" \
	test "$(cat "$T/resumed.code")" = 200
# Scraped only now: the metrics port had no descriptor either meanwhile.
check "  ... counted" test "$(metric 'tracktls_accept_paused_total{reason="descriptors"}')" -ge 1
kill "$FLOOD_PID"
check "nothing is left open" wait_until 10 metric_is tracktls_connections_open 0
check "it drains and exits 0" stop_terminator

# A share the limit cannot hold is refused, and so is less than one connection a thread.
prlimit --nofile=$FD_LIMIT:$FD_LIMIT "$TT_BIN/terminator" --https 127.0.0.1:0 --http 127.0.0.1:0 --threads 2 \
	--max-connections 100 --user nobody >"$T/refused.out" 2>&1; rc=$?
check "--max-connections 100 under a limit of $FD_LIMIT is refused at start ($rc)" test "$rc" -ne 0
check "  ... saying what it needs" grep -q -- "--max-connections 100 needs 402 descriptors.*the limit is $FD_LIMIT" \
	"$T/refused.out"
"$TT_BIN/terminator" --https 127.0.0.1:0 --http 127.0.0.1:0 --threads 2 --max-connections 1 --user nobody \
	>"$T/refused.out" 2>&1; rc=$?
check "--max-connections 1 for 2 threads is refused ($rc)" test "$rc" -ne 0
check "  ... saying why" grep -q "fewer than one for each of 2 threads" "$T/refused.out"

# --metrics under a low limit: the metrics port gets a sixteenth of it (300 / 16 = 18 connections),
# not a fixed 1,024 that left no room at all (refused at start before), and closes the oldest past it.
METRICS_PORT=$(free_port)
bg prlimit --nofile=$FD_LIMIT:$FD_LIMIT "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" \
	--http "127.0.0.1:$HTTP_PORT" --backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$METRICS_PORT" \
	--threads 2 --user nobody >>"$T/terminator3.log" 2>&1
TERM_PID=$!
# 300 - (64 + 18 + 2 x 69) = 80 descriptors: 40 connections, 20 a thread.
check "with --metrics under a limit of $FD_LIMIT it starts, 18 metrics connections, 40 client ones" \
	wait_until 15 grep -q "event=start .*max_connections=40 metrics_connections=18 " "$T/terminator3.log"
check "  ... and is healthy" wait_until 15 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
check "30 idle connections to its metrics port are open" flood "$METRICS_PORT" 30
# Each scrape is a connection too, and closes one more of the idle ones.
check "  ... and it keeps 18 of them at most, closing the oldest" \
	wait_until 10 metric_at_least tracktls_metrics_connections_evicted_total 12
check "  ... ($(metric tracktls_metrics_connections) open)" test "$(metric tracktls_metrics_connections)" -le 18
kill "$FLOOD_PID"
check "  ... and it stops" stop_terminator

check "--max-connections 10 is what it holds" start_terminator --max-connections 10
check "  ... as /metrics says ($(metric tracktls_connections_limit))" test "$(metric tracktls_connections_limit)" = 10
check "  ... and it stops" stop_terminator
