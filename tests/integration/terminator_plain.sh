#!/usr/bin/env bash
# terminator, port 80: requests go to the backend with X-Forwarded-* set (client ones replaced),
# keep-alive and pipelining keep order, ACME HTTP-01 tokens come from the database, bad heads get
# 400/431, a backend that is down gives 502.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
RAW=$TT_ROOT/tests/lib/rawclient.py

tt_setup_db
start_backend
check "terminator starts and answers /healthz" start_terminator
H=http://127.0.0.1:$HTTP_PORT

out=$(curl -s "$H/track/1?u=2" -H 'Host: mail.example' -H 'X-Forwarded-For: 6.6.6.6' -H 'X-Forwarded-Proto: https' \
	-H 'X-Forwarded-Host: evil.example' -H 'Forwarded: for=6.6.6.6')
hdr() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); h=[v for k,v in d["headers"] if k.lower()==sys.argv[2].lower()]; print("|".join(h))' "$out" "$1"; }
check "plain request reaches the backend with its path" test "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["path"])' "$out")" = "/track/1?u=2"
check "X-Forwarded-For is the client address, the client's value dropped" test "$(hdr X-Forwarded-For)" = 127.0.0.1
check "X-Forwarded-Proto is http" test "$(hdr X-Forwarded-Proto)" = http
check "X-Forwarded-Host is the Host header" test "$(hdr X-Forwarded-Host)" = mail.example
check "Forwarded from the client is dropped" test -z "$(hdr Forwarded)"

out=$(curl -s -X POST --data-binary @"$TT_ROOT/terminator/conn.c" "$H/post")
check "a request body arrives whole" test "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["body"]))' "$out")" = "$(wc -c <"$TT_ROOT/terminator/conn.c")"
check "a 3 MB response arrives whole" test "$(curl -s "$H/big?n=3000000" | wc -c)" = 3000000
check "a chunked response arrives whole" test "$(curl -s "$H/chunked?n=250000" | wc -c)" = 250000
check "HEAD gets headers and no body" test "$(curl -s -o /dev/null -w '%{http_code}' -I "$H/x")" = 200

out=$(printf 'GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: b\r\n\r\nPOST /p3 HTTP/1.1\r\nHost: c\r\nContent-Length: 5\r\n\r\nhelloGET /p4 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "pipelined requests are answered in order on one connection" \
	test "$(grep -o '"path": "[^"]*"' <<<"$out" | tr '\n' ' ')" = '"path": "/p1" "path": "/p2" "path": "/p3" "path": "/p4" '
check "  ... with the pipelined body in place" grep -q '"body": "hello"' <<<"$out"
c0=$(metric tracktls_backend_connects_total)
for i in $(seq 1 12); do curl -s -o /dev/null "$H/pool$i"; done
check "twelve clients one after the other share pooled backend connections (at most one new per thread)" \
	test $(($(metric tracktls_backend_connects_total) - c0)) -le 2
check "  ... counted as reuses" test "$(metric tracktls_backend_reuses_total)" -ge 10
out=$(curl -s -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}' "$H/k1" "$H/k2" "$H/k3")
check "keep-alive: three requests, one connection" test "$out" = 100

out=$(printf 'GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nping-after-upgrade' |
	python3 "$RAW" "$HTTP_PORT" --timeout 2)
check "101 Switching Protocols turns the connection into a two-way byte pipe" \
	python3 -c 'import sys; s=sys.argv[1]; assert s.startswith("HTTP/1.1 101") and s.endswith("\r\n\r\nping-after-upgrade"), s' "$out"

# ACME HTTP-01
psql -qAt -d "$TRACKTLS_DB" -c "insert into domains (name) values ('acme.example');
	insert into challenges (token, key_authorization, domain_id, expires_at)
	select 'tok_EN-1', 'tok_EN-1.thumbprint', id, now() + interval '1 hour' from domains where name = 'acme.example'" >/dev/null
out=$(curl -s -w ' %{http_code} %{content_type}' -H 'Host: acme.example' "$H/.well-known/acme-challenge/tok_EN-1")
check "HTTP-01 token answered with its key authorization" test "$out" = "tok_EN-1.thumbprint 200 text/plain; charset=utf-8"
out=$(curl -s -w ' %{http_code}' -H 'Host: acme.example:80' "$H/.well-known/acme-challenge/tok_EN-1")
check "  ... also with a port in Host" test "$out" = "tok_EN-1.thumbprint 200"
check "unknown token gets 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/.well-known/acme-challenge/nope")" = 404
check "token with bad characters gets 404" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/.well-known/acme-challenge/a.b")" = 404
out=$(printf 'GET /.well-known/acme-challenge/nope HTTP/1.1\r\nHost: a\r\n\r\nGET /.well-known/acme-challenge/tok_EN-1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "challenge answers keep the connection and their order" \
	python3 -c 'import sys; s=sys.argv[1]; assert s.index("404 Not Found") < s.index("tok_EN-1.thumbprint"), s' "$out"
check "challenge lookups are counted" test "$(metric tracktls_acme_challenges_total)" -ge 5

# bad input
out=$(printf 'GARBAGE\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "malformed request head gets 400" grep -q '^HTTP/1.1 400' <<<"$out"
out=$( { printf 'GET / HTTP/1.1\r\nHost: a\r\nX-Big: '; head -c 20000 /dev/zero | tr '\0' a; printf '\r\n\r\n'; } | python3 "$RAW" "$HTTP_PORT")
check "oversized request head gets 431" grep -q '^HTTP/1.1 431' <<<"$out"
out=$(printf 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "Content-Length with Transfer-Encoding (smuggling shape) gets 400" grep -q '^HTTP/1.1 400' <<<"$out"
out=$(printf 'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!' | python3 "$RAW" "$HTTP_PORT")
check "duplicate Content-Length gets 400" grep -q '^HTTP/1.1 400' <<<"$out"
out=$(printf 'GET /eleven HTTP/1.1\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "HTTP/1.1 without Host gets 400" grep -q '^HTTP/1.1 400' <<<"$out"
out=$(printf 'GET /ten HTTP/1.0\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "HTTP/1.0 without Host is forwarded (and the connection closed after)" grep -q '"path": "/ten"' <<<"$out"
check "bad requests are counted" test "$(metric tracktls_bad_requests_total)" -ge 4
check "plain requests still work after bad ones" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/ok")" = 200

out=$(printf 'GET /drop-next HTTP/1.1\r\nHost: a\r\n\r\nGET /after-drop HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n' | python3 "$RAW" "$HTTP_PORT")
check "a kept-alive backend connection closed under a request: the request is sent again, not failed" \
	test "$(grep -o 'HTTP/1.1 200' <<<"$out" | wc -l) $(grep -o '"path": "/after-drop"' <<<"$out" | wc -l)" = "2 1"

kill "$BACKEND_PID"; wait "$BACKEND_PID" 2>/dev/null
check "backend down gives 502" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/down")" = 502
check "backend errors are counted" test "$(metric tracktls_backend_errors_total)" -ge 1
curl -s -o /dev/null "$H/down2"
check "an unreachable backend is logged once per thread, not per request" \
	test "$(grep -c 'event=backend_unreachable.*error="Connection refused"' "$T/terminator.log")" -le 2
start_backend
check "backend back: requests flow again" test "$(curl -s -o /dev/null -w '%{http_code}' "$H/up")" = 200
# Whichever thread logged the outage logs the return, on its next request. New connections spread
# over both threads by the kernel's choice, so keep sending until one lands there.
logged_back() { curl -s -o /dev/null "$H/up"; grep -q "event=backend_reachable" "$T/terminator.log"; }
check "  ... and that is logged" wait_until 10 logged_back

stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
