#!/usr/bin/env bash
# A client that reads its response slowly gets an absolute deadline (--response-timeout), not a
# timer each byte it reads pushes back: it cannot hold the connection's buffers for longer. A
# client that reads at full speed gets the same large response whole.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
check "terminator starts" start_terminator --response-timeout 5s --backend-timeout 30s
got=$(curl -s --max-time 20 "http://127.0.0.1:$HTTP_PORT/big?n=1000000" | wc -c)
check "a reader at full speed gets a whole 1 MB response ($got)" test "$got" = 1000000
# The slow reader: a small receive buffer, 4 KiB every 100 ms (about 40 KB/s) of a 20 MB response,
# more than the kernel's socket buffers hold, so the terminator holds the rest; each read
# moves the connection along, as an idle timer would let it.
size=20000000
start=$SECONDS
python3 - "$HTTP_PORT" "$size" "$T/slow.started" >"$T/slow.out" <<'PY' &
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(b"GET /big?n=" + sys.argv[2].encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n")
start, got = time.monotonic(), 0
s.settimeout(30)
while time.monotonic() - start < 40:
    try:
        chunk = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        break
    if not chunk:
        break
    if not got:
        open(sys.argv[3], "w").close()
    got += len(chunk)
    time.sleep(0.1)
print("%d %.1f" % (got, time.monotonic() - start))
PY
slow=$!
check "the slow reader gets its first bytes" wait_until 20 test -e "$T/slow.started"
# The terminator lets go of the connection and its buffers at the deadline (5 s), long before the
# reader stops reading (40 s). What the kernel still holds in the closed socket's send queue drains
# on its own.
none_open() { test "$(metric tracktls_connections_open)" = 0; }
check "the connection is freed at the deadline, while the reader still reads" wait_until 15 none_open
echo "connection count back to 0 after $((SECONDS - start)) s"
wait "$slow"
read -r got secs <"$T/slow.out"
check "the slow reader never got the whole response ($got of $size bytes in $secs s)" test "$got" -lt "$size"
check "the response deadline cuts the slow reader (counted as a backend-phase timeout)" test "$(metric 'tracktls_timeouts_total{phase="backend"}')" -ge 1
check "the terminator still serves" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/ok")" = 200
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
