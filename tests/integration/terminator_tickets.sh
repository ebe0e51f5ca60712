#!/usr/bin/env bash
# Session resumption across the fleet: `issuer tickets rotate` creates a ticket key sealed in the
# database; a ticket issued by one terminator process resumes on another using the same database
# (TLS 1.3 and 1.2); once that key is retired (the NOTIFY trigger makes the refresher reload) the
# ticket falls back to a full handshake. (terminator_tls covers resumption on one process.)
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
out=$("$TT_BIN/issuer" tickets rotate 2>&1); rc=$?
check "issuer tickets rotate exits 0 ($rc)" test "$rc" = 0
check "  ... logging what it did" grep -q "event=ticket_keys_rotated created=1 retired=0" <<<"$out"
keys() { psql -qAt -d "$TRACKTLS_DB" -c "select count(*) from ticket_keys"; }
check "  ... one sealed key in ticket_keys" test "$(keys)" = 1
out=$("$TT_BIN/issuer" tickets rotate 2>&1)
check "a second rotation soon after creates nothing" grep -q "created=0 retired=0" <<<"$out"
"$TT_BIN/issuer" tickets rotate --ticket-rotate soon >/dev/null 2>&1; rc=$?
check "a bad --ticket-rotate exits 2" test "$rc" = 2
help=$("$TT_BIN/issuer" tickets rotate --help)
check "--help documents --ticket-rotate and --ticket-lifetime" grep -q -- "--ticket-lifetime" <<<"$help"
check "issuer run --help documents them too" grep -q -- "--ticket-rotate" <(bash -c "'$TT_BIN/issuer' run --help")

check "first terminator starts" start_terminator
A_PORT=$HTTPS_PORT A_M=$METRICS_PORT
check "second terminator starts" start_terminator
B_PORT=$HTTPS_PORT B_M=$METRICS_PORT
metric_of() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
held() { test "$(metric_of "$1" tracktls_ticket_keys)" = "$2"; }
check "both hold the database's key" wait_until 10 bash -c "$(declare -f metric_of held); held $A_M 1 && held $B_M 1"
key_start=$(psql -qAt -d "$TRACKTLS_DB" -c "select floor(extract(epoch from max(created_at)))::bigint from ticket_keys")
check "tracktls_ticket_key_newest_start_seconds is the key's start ($key_start), for the rotation alert" \
	test "$(metric_of "$A_M" tracktls_ticket_key_newest_start_seconds)" = "$key_start"

# ticket PORT FILE [openssl flags]: a request answered before the client goes, so the ticket
# (sent after the handshake) is read.
ticket() {
	local port=$1 file=$2; shift 2
	printf 'GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n' |
		openssl s_client -connect "127.0.0.1:$port" -servername a.test -sess_out "$file" -ign_eof "$@" >/dev/null 2>&1
}
resume() {
	local port=$1 file=$2; shift 2
	openssl s_client -connect "127.0.0.1:$port" -servername a.test -sess_in "$file" "$@" </dev/null 2>&1
}
ticket "$A_PORT" "$T/a13.pem"
out=$(resume "$B_PORT" "$T/a13.pem")
check "a TLS 1.3 ticket from the first process resumes on the second" grep -q "^Reused, TLSv1.3" <<<"$out"
check "  ... counted there" test "$(metric_of "$B_M" tracktls_tickets_resumed_total)" -ge 1
ticket "$A_PORT" "$T/a12.pem" -tls1_2
out=$(resume "$B_PORT" "$T/a12.pem" -tls1_2)
check "a TLS 1.2 ticket from the first process resumes on the second" grep -q "^Reused, TLSv1.2" <<<"$out"

r0=$(metric_of "$B_M" tracktls_ticket_key_reloads_total)
psql -qAt -d "$TRACKTLS_DB" -c "update ticket_keys set encrypt_until = now() - interval '1s', decrypt_until = now() - interval '1s'"
reloaded() { test "$(metric_of "$B_M" tracktls_ticket_key_reloads_total)" -gt "$r0" && held "$B_M" 0; }
check "retiring the key: the second process reloads on NOTIFY and holds no key" wait_until 10 reloaded
out=$(resume "$B_PORT" "$T/a13.pem")
check "  ... the TLS 1.3 ticket no longer resumes: full handshake" grep -q "^New, TLSv1.3" <<<"$out"
check "  ... the handshake itself succeeds" grep -q "Verification\|Protocol  *: TLSv1.3\|Cipher is" <<<"$out"
out=$(resume "$B_PORT" "$T/a12.pem" -tls1_2)
check "  ... nor the TLS 1.2 one" grep -q "^New, TLSv1.2" <<<"$out"
check "  ... rejected tickets are counted" test "$(metric_of "$B_M" tracktls_tickets_rejected_total)" -ge 1

out=$("$TT_BIN/issuer" tickets rotate 2>&1)
check "the next rotation deletes the retired key and creates a current one" grep -q "created=1 retired=1" <<<"$out"
check "  ... which both processes load" wait_until 10 bash -c "$(declare -f metric_of held); held $A_M 1 && held $B_M 1"
ticket "$B_PORT" "$T/b13.pem"
out=$(resume "$A_PORT" "$T/b13.pem")
check "  ... and resumption across processes works again" grep -q "^Reused, TLSv1.3" <<<"$out"

# Every issuer run rotates first, before it talks to the CA, so keys keep coming through a CA outage.
psql -qAt -d "$TRACKTLS_DB" -c "delete from ticket_keys"
out=$(timeout 60 "$TT_BIN/issuer" run --directory "https://127.0.0.1:$(free_port)/dir" --timeout 2s 2>&1); rc=$?
check "issuer run with its CA unreachable exits 2 ($rc)" test "$rc" = 2
check "  ... having rotated the ticket keys first" grep -q "event=ticket_keys_rotated created=1 retired=0" <<<"$out"
check "  ... one key in the database" test "$(keys)" = 1
