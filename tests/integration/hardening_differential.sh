#!/usr/bin/env bash
# The differential run of issue 11: the same request streams (smuggling shapes, pipelining, an
# early answer, a slow reader) through the terminator and through HAProxy `mode http`, each in
# front of its own copy of one recording backend (tests/lib/early_backend.py). Prints, per
# stream, what each client got and what each backend saw, and asserts the terminator's side: no
# smuggled request reaches its backend, every client gets its own answer. Where the two differ
# is summed up in README.md (Hardening figures).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
command -v haproxy >/dev/null || { fail "haproxy is installed"; exit 1; }

tt_setup_db
HA_BACKEND_PORT=$(free_port) HA_PORT=$(free_port)
bg python3 "$TT_ROOT/tests/lib/early_backend.py" "$BACKEND_PORT" "$T/record.tt"
bg python3 "$TT_ROOT/tests/lib/early_backend.py" "$HA_BACKEND_PORT" "$T/record.ha"
wait_until 10 port_open 127.0.0.1 "$BACKEND_PORT"
wait_until 10 port_open 127.0.0.1 "$HA_BACKEND_PORT"
cat >"$T/haproxy.cfg" <<CFG
global
	maxconn 1000
defaults
	mode http
	timeout connect 5s
	timeout client 10s
	timeout server 10s
	http-reuse safe
frontend fe
	bind 127.0.0.1:$HA_PORT
	default_backend be
backend be
	server s1 127.0.0.1:$HA_BACKEND_PORT
CFG
bg haproxy -f "$T/haproxy.cfg" -db
check "haproxy starts" wait_until 10 port_open 127.0.0.1 "$HA_PORT"
check "terminator starts" start_terminator --threads 1 --response-timeout 2s
RAW=$TT_ROOT/tests/lib/rawclient.py

# shape NAME BYTES: sends BYTES (printf format) on one connection to each proxy; prints a row.
shape() {
	local name=$1 bytes=$2 who port out codes seen
	for who in tt ha; do
		port=$HTTP_PORT; [ $who = ha ] && port=$HA_PORT
		: >"$T/record.$who"
		out=$(printf "$bytes" | python3 "$RAW" "$port" --timeout 3 | tr -d '\0')
		codes=$(grep -aoE 'HTTP/1\.[01] [0-9]{3}' <<<"$out" | awk '{print $2}' | paste -sd, -)
		sleep 0.2
		seen=$(sed 's/^conn=[0-9]* //' "$T/record.$who" | paste -sd ';' -)
		printf '%-28s %-3s client got [%s] backend saw [%s]\n' "$name" "$who" "${codes:-closed}" "$seen" | tee -a "$T/table"
		eval "codes_$who=\${codes:-closed}; seen_$who=\$seen"
	done
}
SM='GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n'
shape "CL+TE" "POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n$SM"
check "CL+TE: nothing reaches our backend" test -z "$seen_tt"
shape "TE gzip, chunked" "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n$SM"
check "TE gzip, chunked: refused, nothing reaches our backend" test -z "$seen_tt" -a "$codes_tt" = 400
shape "TE on two lines" "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n$SM"
check "TE on two lines: refused" test -z "$seen_tt" -a "$codes_tt" = 400
shape "TE CHUNKED (capitals)" "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: CHUNKED\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
check "TE CHUNKED: forwarded as Transfer-Encoding: chunked" grep -q 'transfer-encoding=chunked' <<<"$seen_tt"
shape "Transfer_Encoding" "POST /a HTTP/1.1\r\nHost: a\r\nTransfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
check "Transfer_Encoding: refused" test -z "$seen_tt" -a "$codes_tt" = 400
shape "Content_Length" "POST /a HTTP/1.1\r\nHost: a\r\nContent_Length: 40\r\n\r\n$SM"
check "Content_Length: refused" test -z "$seen_tt" -a "$codes_tt" = 400
shape "X_Forwarded_For" "GET /a HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nConnection: close\r\n\r\n"
check "X_Forwarded_For: refused" test -z "$seen_tt" -a "$codes_tt" = 400
shape "obs-fold TE" "POST /a HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"
check "obs-fold: refused" test -z "$seen_tt" -a "$codes_tt" = 400
shape "pipelined 3 GETs" "GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
check "pipelining: three answers in order" test "$codes_tt" = 200,200,200

# The early answer (attack 2) and the slow reader, through each proxy.
for who in tt ha; do
	port=$HTTP_PORT; [ $who = ha ] && port=$HA_PORT
	: >"$T/record.$who"
	out=$(python3 - "$port" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port), timeout=3)
a.sendall(b"POST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 200\r\n\r\n0123456789")
a.recv(65536)
b = socket.create_connection(("127.0.0.1", port), timeout=3)
b.sendall(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n")
try:
    got = b.recv(65536)
except socket.timeout:
    got = b""
sm = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
try:
    a.sendall(sm + b"x" * (190 - len(sm)))
except OSError:
    pass
time.sleep(0.3)
print("B got its answer" if b'"/b"' in got else "B got nothing")
PY
)
	sleep 0.2
	printf '%-28s %-3s %s; backend saw [%s]\n' "early answer (attack 2)" $who "$out" "$(sed 's/^conn=[0-9]* //' "$T/record.$who" | paste -sd ';' -)" | tee -a "$T/table"
	eval "early_$who=\$out; early_seen_$who=\$(cat \$T/record.$who)"
done
check "early answer: B answered through the terminator" test "$early_tt" = "B got its answer"
check "early answer: A's remaining bytes never a request at our backend" bash -c "! grep -q smuggled <<<'$early_seen_tt'"
for who in tt ha; do
	port=$HTTP_PORT; [ $who = ha ] && port=$HA_PORT
	out=$(python3 - "$port" <<'PY'
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(("127.0.0.1", int(sys.argv[1])))
# The backend's answer is small: the slow part is a body the client never finishes sending.
s.sendall(b"POST /slow HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n")
start, n = time.monotonic(), 0
s.settimeout(1)
while time.monotonic() - start < 12:
    try:
        s.sendall(b"y")
        d = s.recv(4096)
        if not d and n:
            break
        n += len(d)
    except socket.timeout:
        pass
    except OSError:
        break
    time.sleep(0.5)
print("held %.1f s" % (time.monotonic() - start))
PY
)
	printf '%-28s %-3s %s\n' "slow sender after an answer" $who "$out" | tee -a "$T/table"
done
echo "--- the table:"
cat "$T/table"
check "the terminator is alive" kill -0 "$TERM_PID"
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
