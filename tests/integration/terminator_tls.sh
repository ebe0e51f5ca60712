#!/usr/bin/env bash
# terminator, HTTPS: every name gets its own certificate by SNI, loaded from PostgreSQL on first
# use; unknown names and missing SNI fail the handshake; TLS 1.1 is refused; a certificate stored
# while serving is what the next handshake gets; requests reach the backend with https headers.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
RAW=$TT_ROOT/tests/lib/rawclient.py

tt_setup_db
start_backend
N=15
for i in $(seq -w 1 $N); do make_cert "name$i.test" || fail "make_cert name$i.test"; done
check "terminator starts and answers /healthz" start_terminator
check "start-up loads no certificates" test "$(metric tracktls_cert_cache_entries)" = 0

ok=0
for i in $(seq -w 1 $N); do
	s=$(served "name$i.test" subject)
	[ "$s" = "subject=CN = name$i.test" ] && ok=$((ok + 1)) || echo "name$i.test served '$s'"
done
check "each of $N names is served its own certificate (openssl s_client -servername)" test "$ok" = "$N"
ok=0
for i in 03 07 11; do
	out=$(curl -s --cacert "$T/name$i.test.pem" --resolve "name$i.test:$HTTPS_PORT:127.0.0.1" "https://name$i.test:$HTTPS_PORT/r$i")
	python3 -c 'import json,sys; d=json.loads(sys.argv[1]); h={k.lower():v for k,v in d["headers"]}; assert d["path"]==sys.argv[3] and h["x-forwarded-proto"]=="https" and h["x-forwarded-host"]==sys.argv[2] and h["x-forwarded-for"]=="127.0.0.1", d' \
		"$out" "name$i.test" "/r$i" && ok=$((ok + 1))
done
check "curl verifies each leaf against its own certificate; backend sees https, SNI host, client address" test "$ok" = 3
check "every name was one cache miss, then hits" test "$(metric tracktls_cert_cache_entries)" = "$N"
# A TLS 1.3 server counts the handshake on the client's Finished, which s_client sends after it
# saw the handshake through and then leaves: the last ones may still be on their way.
tls13_counted() { test "$(metric 'tracktls_handshakes_total{result="ok",version="TLSv1.3"}')" -ge $((N + 3)); }
check "TLS 1.3 handshakes are counted" wait_until 5 tls13_counted

out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername unknown.test </dev/null 2>&1); rc=$?
check "an unknown name fails the handshake" test "$rc" != 0
check "  ... with an unrecognized_name alert" grep -q "unrecognized name" <<<"$out"
q=$(metric tracktls_db_queries_total)
curl -sk --resolve "unknown.test:$HTTPS_PORT:127.0.0.1" "https://unknown.test:$HTTPS_PORT/" >/dev/null; rc=$?
check "curl to an unknown name fails in the handshake (exit 35)" test "$rc" = 35
check "the second try costs no database query (negative cache or name filter)" test "$(metric tracktls_db_queries_total)" = "$q"
check "unknown names are counted" test "$(metric 'tracktls_client_hello_refused_total{reason="unknown_sni"}')" -ge 2
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -noservername </dev/null 2>&1); rc=$?
check "no SNI fails the handshake" test "$rc" != 0
check "  ... and is counted" test "$(metric 'tracktls_client_hello_refused_total{reason="no_sni"}')" = 1
out=$(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' | python3 "$RAW" "$HTTPS_PORT")
check "plain HTTP on the TLS port is dropped" test -z "$out"
check "  ... and counted as a malformed ClientHello" test "$(metric 'tracktls_client_hello_refused_total{reason="malformed"}')" = 1

out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername name01.test -tls1_1 -cipher 'DEFAULT@SECLEVEL=0' </dev/null 2>&1); rc=$?
check "TLS 1.1 is refused" test "$rc" != 0
check "  ... by the server (protocol_version alert)" grep -q "alert protocol version" <<<"$out"
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername name02.test -tls1_2 </dev/null 2>&1)
check "TLS 1.2 works" grep -q "Protocol  *: TLSv1.2" <<<"$out"
check "  ... and is counted" test "$(metric 'tracktls_handshakes_total{result="ok",version="TLSv1.2"}')" -ge 1
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername name02.test -alpn h2,http/1.1 </dev/null 2>&1)
check "ALPN selects http/1.1" grep -q "ALPN protocol: http/1.1" <<<"$out"

# A request answered before the client goes, so the ticket (sent after the handshake) is read.
printf 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' |
	openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername name04.test -sess_out "$T/sess.pem" -ign_eof >/dev/null 2>&1
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername name04.test -sess_in "$T/sess.pem" </dev/null 2>&1)
check "a session ticket resumes (TLS 1.3)" grep -q "^Reused, TLSv1.3" <<<"$out"
check "  ... and is counted" test "$(metric tracktls_tickets_resumed_total)" -ge 1

U="https://name05.test:$HTTPS_PORT"
R=(--cacert "$T/name05.test.pem" --resolve "name05.test:$HTTPS_PORT:127.0.0.1")
check "keep-alive over TLS: three requests, one connection" \
	test "$(curl -s "${R[@]}" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects}' "$U/1" "$U/2" "$U/3")" = 100
check "a 3 MB response over TLS arrives whole" test "$(curl -s "${R[@]}" "$U/big?n=3000000" | wc -c)" = 3000000
out=$(curl -s "${R[@]}" -X POST --data-binary @"$TT_ROOT/terminator/conn.c" "$U/post")
check "a request body over TLS arrives whole" test "$(python3 -c 'import json,sys; print(len(json.loads(sys.argv[1])["body"]))' "$out")" = "$(wc -c <"$TT_ROOT/terminator/conn.c")"
head -c 20000000 /dev/urandom >"$T/upload.bin"
out=$(curl -s "${R[@]}" -X POST --data-binary @"$T/upload.bin" "$U/post" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["body"]))')
check "a 20 MB upload over TLS arrives whole (the client is paused while the backend catches up)" test "$out" = 20000000
out=$(printf 'GET /p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n' | python3 "$RAW" "$HTTPS_PORT" --tls name05.test)
check "pipelined requests over TLS are answered in order" \
	test "$(grep -o '"path": "[^"]*"' <<<"$out" | tr '\n' ' ')" = '"path": "/p1" "path": "/p2" '

# A renewal stored while serving: the next handshake gets it, no restart.
old=$(served name01.test serial)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=name01.test" \
	-addext "subjectAltName=DNS:name01.test" -keyout "$T/renew.key" -out "$T/renew.pem" 2>/dev/null
new=$(openssl x509 -in "$T/renew.pem" -noout -serial)
"$TT_BIN/issuer" cert import name01.test --cert "$T/renew.pem" --key "$T/renew.key" >/dev/null
is_new() { test "$(served name01.test serial)" = "$new"; }
check "a certificate stored while serving is served by the next handshakes" wait_until 5 is_new
check "  ... and it was a different certificate" test "$old" != "$new"
check "the other names are unaffected" test "$(served name02.test subject)" = "subject=CN = name02.test"
# A name added while serving, after a miss was negative-cached, is served once stored.
openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername late.test </dev/null >/dev/null 2>&1
make_cert late.test
is_late() { test "$(served late.test subject)" = "subject=CN = late.test"; }
check "a name stored after a failed lookup is served (negative entry dropped by NOTIFY)" wait_until 5 is_late

stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
