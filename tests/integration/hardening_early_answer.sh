#!/usr/bin/env bash
# Attack 2 of issue 11: client A sends a POST with Content-Length: 200 and only 10 bytes of body;
# the backend answers at once and keeps its connection, still expecting 190 bytes. That backend
# connection must not serve anyone else: client B's request on the same thread must reach the
# backend as a request of its own and get its own answer, and bytes A sends later must never
# become a request.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
make_cert e.test
bg python3 "$TT_ROOT/tests/lib/early_backend.py" "$BACKEND_PORT" "$T/record"
wait_until 10 port_open 127.0.0.1 "$BACKEND_PORT"
check "terminator starts" start_terminator --threads 1

# attack PORTKIND: A's early-answered POST, then B's GET while A holds its connection open, then
# A's 190 missing bytes shaped as a smuggled request with its own X-Forwarded-For.
attack() {
	python3 - "$1" "$HTTP_PORT" "$HTTPS_PORT" <<'PY'
import json, socket, ssl, sys, time
kind, http_port, https_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def connect():
    port = https_port if kind == "tls" else http_port
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if kind == "tls":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname="e.test")
    return s

def answer(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = int([l.split(b":")[1] for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0])
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            return None
        body += chunk
    return json.loads(body[:n])

def ask(path):
    s = connect()
    s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: e.test\r\n\r\n")
    try:
        return answer(s)
    except socket.timeout:
        return None

a = connect()
a.sendall(b"POST /a HTTP/1.1\r\nHost: e.test\r\nContent-Length: 200\r\n\r\n0123456789")
ra = answer(a)
print("A", json.dumps(ra))
print("B", json.dumps(ask(b"/b")))
# A's remaining 190 bytes: a request of its own making.
smuggled = b"GET /smuggled-" + kind.encode() + b" HTTP/1.1\r\nHost: e.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
try:
    a.sendall(smuggled + b"x" * (190 - len(smuggled)))
except OSError:
    pass
print("C", json.dumps(ask(b"/c")))
PY
}
for kind in plain tls; do
	out=$(attack $kind)
	echo "$out"
	check "$kind: A gets the backend's early answer" grep -q '^A .*"/a"' <<<"$out"
	check "$kind: B gets its own answer, not A's body swallowing it" grep -q '^B .*"path": "/b"' <<<"$out"
	check "$kind: C, after A's remaining bytes, gets its own answer" grep -q '^C .*"path": "/c"' <<<"$out"
	check "$kind: A's remaining bytes never became a request at the backend" bash -c "! grep -q 'smuggled-$kind' '$T/record'"
done
cat "$T/record"
check "the terminator is alive" kill -0 "$TERM_PID"
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
