#!/usr/bin/env bash
# terminator --backend-mode proxy-v2, with HAProxy (accept-proxy) as the real PROXY v2 consumer in
# front of the echo backend: the backend learns the client address and the SNI from the header,
# and gets the client's bytes unchanged (no X-Forwarded-* added); HTTP-01 stays on the terminator.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

command -v haproxy >/dev/null || { fail "haproxy is installed"; exit 1; }
tt_setup_db
start_backend
make_cert pp.test
PP_PORT=$(free_port)
cat >"$T/haproxy.cfg" <<CFG
defaults
	mode http
	timeout client 10s
	timeout server 10s
	timeout connect 5s
frontend fe
	bind 127.0.0.1:$PP_PORT accept-proxy
	http-request set-header X-PP-Src %[src]
	http-request set-header X-PP-Authority %[fc_pp_authority]
	default_backend be
backend be
	server echo 127.0.0.1:$BACKEND_PORT
CFG
bg haproxy -f "$T/haproxy.cfg" -db
HAPROXY_PID=$!
check "HAProxy with accept-proxy starts" wait_until 10 port_open 127.0.0.1 "$PP_PORT"
REAL_BACKEND=$BACKEND_PORT
BACKEND_PORT=$PP_PORT
check "terminator starts in proxy-v2 mode" start_terminator --backend-mode proxy-v2
BACKEND_PORT=$REAL_BACKEND

hdr() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("|".join(v for k,v in d["headers"] if k.lower()==sys.argv[2].lower()))' "$1" "$2"; }
R=(--cacert "$T/pp.test.pem" --resolve "pp.test:$HTTPS_PORT:127.0.0.1")
out=$(curl -s "${R[@]}" "https://pp.test:$HTTPS_PORT/tls" -H 'X-Forwarded-For: 6.6.6.6')
check "HTTPS: the backend gets the client address from the PROXY v2 header" test "$(hdr "$out" X-PP-Src)" = 127.0.0.1
check "  ... and the SNI as the authority TLV" test "$(hdr "$out" X-PP-Authority)" = pp.test
check "  ... and the client's bytes unchanged (its own X-Forwarded-For, none added)" test "$(hdr "$out" X-Forwarded-For)" = 6.6.6.6
check "  ... without X-Forwarded-Proto" test -z "$(hdr "$out" X-Forwarded-Proto)"
check "a 3 MB response through the tunnel arrives whole" test "$(curl -s "${R[@]}" "https://pp.test:$HTTPS_PORT/big?n=3000000" | wc -c)" = 3000000
out=$(curl -s "${R[@]}" -X POST --data-binary @"$TT_ROOT/terminator/conn.c" "https://pp.test:$HTTPS_PORT/post")
check "a request body through the tunnel arrives whole" test "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["body"]))' "$out")" = "$(wc -c <"$TT_ROOT/terminator/conn.c")"
check "keep-alive through the tunnel: three requests, one connection" \
	test "$(curl -s "${R[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}' "https://pp.test:$HTTPS_PORT/"{1,2,3})" = 100

out=$(curl -s "http://127.0.0.1:$HTTP_PORT/plain" -H 'Host: plain.example')
check "port 80: the backend gets the client address from the header" test "$(hdr "$out" X-PP-Src)" = 127.0.0.1
check "  ... with no authority (no TLS TLVs)" test -z "$(hdr "$out" X-PP-Authority)"
check "  ... and the request unchanged" test "$(hdr "$out" Host)" = plain.example
psql -qAt -d "$TRACKTLS_DB" -c "insert into domains (name) values ('pp.example');
	insert into challenges (token, key_authorization, domain_id, expires_at)
	select 'ppTok', 'ppTok.thumb', id, now() + interval '1 hour' from domains where name = 'pp.example'" >/dev/null
check "port 80: HTTP-01 is still answered by the terminator" \
	test "$(curl -s "http://127.0.0.1:$HTTP_PORT/.well-known/acme-challenge/ppTok")" = ppTok.thumb

kill "$HAPROXY_PID"; wait "$HAPROXY_PID" 2>/dev/null
curl -s "${R[@]}" "https://pp.test:$HTTPS_PORT/down" >/dev/null; rc=$?
check "backend down: the connection is closed (curl exit $rc), no made-up HTTP" test "$rc" = 52 -o "$rc" = 56
check "  ... and counted" test "$(metric tracktls_backend_errors_total)" -ge 1
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
