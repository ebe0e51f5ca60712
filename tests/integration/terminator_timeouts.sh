#!/usr/bin/env bash
# terminator timeouts: clients that never finish a handshake or a request head, or sit idle, are
# closed on time while other clients are served; a backend that does not answer gives 504.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert fast.test
check "terminator starts" start_terminator --handshake-timeout 1s --header-timeout 1s --idle-timeout 2s --backend-timeout 1s

# Slow clients: silent TLS connections, half a ClientHello, a request head trickled one byte at a
# time (slowloris) on both ports. Each reports how long until the server closed it.
cat >"$T/slow.py" <<'PY'
import socket, sys, threading, time
https, http, kind, n = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
results = []
def one():
    port = http if kind == "slowloris" else https
    # From before the connect: the server's timer cannot start earlier, whereas a thread among
    # 120 can resume from create_connection well after the server accepted.
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port))
    if kind == "half_hello":
        s.sendall(bytes([0x16, 3, 1, 0x02, 0x00]) + b"\x01\x00\x01")
    s.settimeout(0.2)
    head = b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 100
    i = 0
    while time.time() - t0 < 15:
        try:
            if s.recv(4096) == b"":
                break
        except socket.timeout:
            pass
        except OSError:
            break
        if kind == "slowloris":
            try:
                s.sendall(head[i % len(head):i % len(head) + 1]); i += 1
            except OSError:
                break
    results.append(time.time() - t0)
ts = [threading.Thread(target=one) for _ in range(n)]
for t in ts: t.start()
for t in ts: t.join()
print(" ".join("%.2f" % r for r in results))
PY
for kind in silent half_hello slowloris; do
	python3 "$T/slow.py" "$HTTPS_PORT" "$HTTP_PORT" "$kind" 40 >"$T/$kind.out" &
	SLOW+=($!)
done
# Meanwhile others are served.
R=(--cacert "$T/fast.test.pem" --resolve "fast.test:$HTTPS_PORT:127.0.0.1")
ok=0
for i in $(seq 1 20); do
	[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "${R[@]}" "https://fast.test:$HTTPS_PORT/x")" = 200 ] && ok=$((ok + 1))
done
check "while 120 slow clients hang on, 20 other HTTPS requests are served at once" test "$ok" = 20
wait "${SLOW[@]}"
within() { python3 -c 'import sys; v=[float(x) for x in sys.argv[3].split()]; assert len(v)==40 and all(float(sys.argv[1]) <= x <= float(sys.argv[2]) for x in v), v' "$@"; }
check "silent TLS clients are closed by the handshake timeout (1 s)" within 0.8 3.5 "$(cat "$T/silent.out")"
check "half a ClientHello is closed by the handshake timeout" within 0.8 3.5 "$(cat "$T/half_hello.out")"
check "a head trickled a byte at a time is closed by the header timeout" within 0.8 3.5 "$(cat "$T/slowloris.out")"
check "handshake timeouts are counted" test "$(metric 'tracktls_timeouts_total{phase="handshake"}')" -ge 80
check "header timeouts are counted" test "$(metric 'tracktls_timeouts_total{phase="header"}')" -ge 40

# An idle keep-alive connection is closed after the idle timeout.
cat >"$T/idle.py" <<'PY'
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
s.settimeout(10)
buf = b""
while b"}" not in buf:
    buf += s.recv(4096)
t0 = time.time()
while s.recv(4096):
    pass
print("%.2f" % (time.time() - t0))
PY
t=$(python3 "$T/idle.py" "$HTTP_PORT")
check "an idle keep-alive connection is closed after the idle timeout (2 s, took $t s)" python3 -c "assert 1.5 <= $t <= 4"
check "idle timeouts are counted" test "$(metric 'tracktls_timeouts_total{phase="idle"}')" -ge 1

out=$(curl -s -o /dev/null -w '%{http_code} %{time_total}' "http://127.0.0.1:$HTTP_PORT/slow?ms=3000")
check "a backend that does not answer in time gives 504 ($out)" python3 -c "c, t = '$out'.split(); assert c == '504' and float(t) < 2.5"
check "backend timeouts are counted" test "$(metric tracktls_backend_timeouts_total)" -ge 1
check "requests are served after all that" test "$(curl -s -o /dev/null -w '%{http_code}' "${R[@]}" "https://fast.test:$HTTPS_PORT/after")" = 200
check "no connection is left open" wait_until 5 metric_is tracktls_connections_open 0

stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
