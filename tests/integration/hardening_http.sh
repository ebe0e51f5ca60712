#!/usr/bin/env bash
# Hostile HTTP on both ports: oversized heads get 431, request smuggling shapes get 400 and close
# the connection (a request pipelined behind them never reaches the backend), and no spelling of a
# forwarding header gets a client's value to the backend: it sees only the terminator's.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
RAW=$TT_ROOT/tests/lib/rawclient.py

tt_setup_db
start_backend
make_cert h.test
check "terminator starts" start_terminator
# send PORTKIND: raw bytes from stdin to the plain port or over TLS.
send() { if [ "$1" = tls ]; then python3 "$RAW" "$HTTPS_PORT" --tls h.test; else python3 "$RAW" "$HTTP_PORT"; fi; }
status() { head -n1 | tr -d '\r' | awk '{print $2}'; }

for port in plain tls; do
	out=$( { printf 'GET / HTTP/1.1\r\nHost: a\r\n'; for i in $(seq 1 400); do printf 'X-H%d: %s\r\n' "$i" "$(head -c 60 /dev/zero | tr '\0' v)"; done; printf '\r\n'; } | send $port | status)
	check "$port: 400 headers (26 KB head) get 431 ($out)" test "$out" = 431
	out=$( { printf 'GET /'; head -c 20000 /dev/zero | tr '\0' a; printf ' HTTP/1.1\r\nHost: a\r\n\r\n'; } | send $port | status)
	check "$port: a 20 KB request line gets 431 ($out)" test "$out" = 431
	out=$(head -c 100000 /dev/zero | tr '\0' a | send $port | status)
	# The answer may be lost to the reset when the server closes with the client still sending.
	check "$port: 100 KB without a line end gets 431/400 or a close (${out:-closed})" bash -c "[[ '$out' =~ ^(431|400|)$ ]]"
done

# Smuggling shapes and framing errors: 400, and whatever follows on the connection is dropped.
SMUGGLE=/smuggled
shapes=(
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\nhello'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\nhello'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nX-Pad: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
	'POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a\r\nX-Cr: a\rX-Forwarded-For: 6.6.6.6\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n'
	'GET  / HTTP/1.1\r\nHost: a\r\n\r\n'
	'GET / HTTP/1.1 \r\nHost: a\r\n\r\n'
	'GET / HTTP/2.0\r\nHost: a\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
	'GET / HTTP/1.1\r\nHost: a b\r\n\r\n'
	'GET / HTTP/1.1\r\n\r\n'
)
# Chunked framing errors show only after the head went to the backend: then the answer is a 400
# if the backend has not answered yet, or a close; never a second request.
bodies=(
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nhello\r\n0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n'
	'POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nBad Trailer\r\n\r\n'
)
bad0=$(metric tracktls_bad_requests_total)
n=0
for port in plain tls; do
	keys=("${!shapes[@]}")
	for i in "${!bodies[@]}"; do keys+=("b$i"); done
	for i in "${keys[@]}"; do
		n=$((n + 1))
		if [[ $i == b* ]]; then s=${bodies[${i#b}]}; else s=${shapes[$i]}; fi
		out=$(printf "${s}GET $SMUGGLE HTTP/1.1\r\nHost: a\r\n\r\n" | send $port)
		code=$(status <<<"$out")
		label=$(printf '%s' "$s" | head -c 90 | tr -d '\0')
		if [[ $i == b* ]]; then
			check "$port: 400 or close for the body '$label' (${code:-closed})" test "${code:-closed}" = 400 -o "${code:-closed}" = closed
		else
			check "$port: 400 for '$label' ($code)" test "$code" = 400
		fi
		check "  ... and the request behind it never reaches the backend" bash -c "! grep -q '$SMUGGLE' <<<'$(tr -d "'\0" <<<"$out")'"
	done
done
check "bad requests counted ($(( $(metric tracktls_bad_requests_total) - bad0 )) of $n)" \
	test "$n" = $((2 * (${#shapes[@]} + ${#bodies[@]}))) -a "$(( $(metric tracktls_bad_requests_total) - bad0 ))" -ge "$n"

# A good chunked body still goes through, its framing intact.
out=$(printf 'POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | send plain)
check "a good chunked body (extension, trailer) reaches the backend whole" grep -q '"body": "hello world"' <<<"$out"
check "  ... and the request pipelined after it is answered too" grep -q '"path": "/after"' <<<"$out"

# Forwarding headers: every spelling a client might use to plant its own value.
inject=$'X-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 6.6.6.6\r\nX-FORWARDED-FOR:6.6.6.6\r\nX-Forwarded-For:\t6.6.6.6\r\nX-Forwarded-Proto: https6\r\nX-Forwarded-Host: evil6.example\r\nX-Forwarded-Host: evil6.example\r\nForwarded: for=6.6.6.6;proto=https6\r\nX-Forwarded-Port: 6666\r\nX-Real-IP: 6.6.6.6\r\nConnection: X-Forwarded-For, close\r\n'
for port in plain tls; do
	out=$(printf "GET /inj HTTP/1.1\r\nHost: h.test\r\n${inject}\r\n" | send $port)
	json=$(sed -n '/^{/,$p' <<<"$out" | head -n1)
	check "$port: the injected request is answered" grep -q '"path": "/inj"' <<<"$json"
	proto=http; [ $port = tls ] && proto=https
	check "$port: the backend sees exactly one X-Forwarded-For/-Proto/-Host each, the terminator's" python3 -c '
import json, sys
d = json.loads(sys.argv[1])
fwd = [(k.lower().replace("_", "-"), v) for k, v in d["headers"] if k.lower().replace("_", "-").startswith("x-forwarded-") or k.lower() == "forwarded"]
want = sorted([("x-forwarded-for", "127.0.0.1"), ("x-forwarded-proto", sys.argv[2]), ("x-forwarded-host", "h.test")])
got = sorted(x for x in fwd if x[0] != "x-forwarded-port")
assert got == want, fwd
assert not any("6.6.6.6" in v or "evil6" in v or "https6" in v for k, v in d["headers"] if k.lower() != "x-real-ip"), d["headers"]
' "$json" "$proto"
done

# Names that fold '_' onto framing or forwarding headers are refused outright: a CGI-style
# backend would read them as the real header.
for port in plain tls; do
	for h in 'X_Forwarded_For: 6.6.6.6' 'x_forwarded_proto: https6' 'X_FORWARDED_HOST: evil6.example' 'Content_Length: 5' 'Transfer_Encoding: chunked'; do
		out=$(printf "GET /us HTTP/1.1\r\nHost: h.test\r\n$h\r\n\r\n" | send $port)
		check "$port: '${h%%:*}' gets 400 ($(status <<<"$out"))" test "$(status <<<"$out")" = 400
	done
done

check "the terminator still serves after all that" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/ok")" = 200
check "no connection left open" wait_until 5 metric_is tracktls_connections_open 0
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0 (no leak reported under ASan)" test "$rc" = 0
