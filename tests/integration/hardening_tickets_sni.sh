#!/usr/bin/env bash
# A session ticket is bound to the server name it was issued under. Every certificate's context
# shares the fleet's ticket keys, so without that binding a ticket from one customer's domain
# resumed a session under another customer's name, skipping that name's certificate (RFC 6066
# section 3: the server MUST NOT resume when the server_name differs). The ticket must still
# resume under its own name (uppercase and a trailing dot are the same name), in TLS 1.2 and 1.3.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
make_cert b.test || fail "make_cert b.test"
check "terminator starts" start_terminator

# ticket FILE NAME [openssl flags]: a request answered before the client goes, so the ticket
# (sent after the handshake in TLS 1.3) is read.
ticket() {
	local file=$1 name=$2; shift 2
	printf 'GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$name" |
		openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$name" -sess_out "$file" -ign_eof "$@" >/dev/null 2>&1
}
resume() {
	local file=$1 name=$2; shift 2
	printf 'GET /resumed HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$name" |
		openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername "$name" -sess_in "$file" -ign_eof "$@" 2>&1
}
for v in 1.3 1.2; do
	flag=-tls1_${v#1.}
	ticket "$T/a$v.pem" a.test "$flag"
	check "TLS $v: a ticket was issued for a.test" test -s "$T/a$v.pem"
	out=$(resume "$T/a$v.pem" a.test "$flag")
	check "TLS $v: a.test's ticket resumes under a.test" grep -q "^Reused, TLSv$v" <<<"$out"
	out=$(resume "$T/a$v.pem" A.TEST. "$flag")
	check "TLS $v: ... and under A.TEST. (the same name)" grep -q "^Reused, TLSv$v" <<<"$out"
	rejected0=$(metric tracktls_tickets_rejected_total)
	out=$(resume "$T/a$v.pem" b.test "$flag")
	check "TLS $v: a.test's ticket does not resume under b.test" grep -q "^New, TLSv$v" <<<"$out"
	check "TLS $v: ... b.test's own certificate is served" grep -q "subject=CN *= *b.test" <<<"$out"
	check "TLS $v: ... and the request is still answered" grep -q '"path": "/resumed"' <<<"$out"
	check "TLS $v: ... the ticket counted as rejected" test "$(metric tracktls_tickets_rejected_total)" -gt "$rejected0"
done

check "no connection left open" wait_until 5 metric_is tracktls_connections_open 0
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
