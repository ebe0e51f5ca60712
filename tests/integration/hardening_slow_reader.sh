#!/usr/bin/env bash
# A client that reads its response slowly gets an absolute deadline (--response-timeout), not a
# timer each byte it reads pushes back: it cannot hold the connection's buffers for longer. A
# client that reads at full speed gets the same large response whole.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
check "terminator starts" start_terminator --response-timeout 2s --backend-timeout 30s
size=20000000
got=$(curl -s --max-time 20 "http://127.0.0.1:$HTTP_PORT/big?n=$size" | wc -c)
check "a fast reader gets the whole $size-byte response within the deadline ($got)" test "$got" = "$size"
# The slow reader: a small receive buffer, 4 KiB every 100 ms (about 40 KB/s: the response would
# take over 8 minutes), each read enough to move the connection along.
out=$(python3 - "$HTTP_PORT" "$size" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", port))
s.sendall(b"GET /big?n=" + sys.argv[2].encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n")
start, got = time.monotonic(), 0
s.settimeout(30)
while time.monotonic() - start < 30:
    try:
        chunk = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        break
    if not chunk:
        break
    got += len(chunk)
    time.sleep(0.1)
print("%d %.1f" % (got, time.monotonic() - start))
PY
)
read -r got secs <<<"$out"
check "the slow reader is cut off near the 2 s response deadline, not fed for its whole read ($got bytes in $secs s)" \
	python3 -c "import sys; g, t = int('$got'), float('$secs'); sys.exit(0 if g < $size and t < 8 else 1)"
check "the cut is counted as a backend-phase timeout" test "$(metric 'tracktls_timeouts_total{phase="backend"}')" -ge 1
check "the terminator still serves" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/ok")" = 200
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
