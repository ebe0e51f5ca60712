#!/usr/bin/env bash
# Hostile TLS clients: malformed, outdated and oversized ClientHellos get an alert or a close at
# once (not the handshake timeout), are counted, and the terminator keeps serving good clients;
# a flood of random server names costs a bounded number of database queries, with the name
# filter on and with it off (then the per-thread miss budget bounds them).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
HOSTILE=$TT_ROOT/tests/lib/hostile.py

tt_setup_db
start_backend
make_cert good.test
check "terminator starts" start_terminator --handshake-timeout 10s
R=(--cacert "$T/good.test.pem" --resolve "good.test:$HTTPS_PORT:127.0.0.1")
good() { test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "${R[@]}" "https://good.test:$HTTPS_PORT/ok")" = 200; }
check "a good client is served" good

# Each shape: how the server ended it. "data" would mean a handshake went on; "timeout" that the
# server sat on it. Ended within 3 s while the handshake timeout is 10 s: refused actively.
declare -A WANT=(
	[truncated]='close'                # half a hello, then the client's FIN
	[oversized_record]='close'         # record length 65535
	[garbage]='close'
	[wrong_type]='close'               # application data before any handshake
	[zero_record]='close'
	[sslv2]='close'                    # SSLv2-format CLIENT-HELLO
	[sslv3]='alert=70|alert=112|close' # protocol_version (or the SNI path refusing it)
	[tls10_record]='alert=70'          # TLS 1.0 only: protocol_version
	[bad_lengths]='alert=[0-9]+|close'
	[sni_nul]='alert=112|close'        # "good.test\0.evil" must not be served as good.test
	[sni_long]='alert=112|close'       # a name over 253 bytes
	[many_sni]='alert=112|close'       # 200 names in one server_name extension
	[empty_sni]='alert=112'            # server_name extension with no names
)
malformed0=$(metric 'tracktls_client_hello_refused_total{reason="malformed"}')
for kind in "${!WANT[@]}"; do
	out=$(python3 "$HOSTILE" "$HTTPS_PORT" good.test "$kind" --timeout 8 2>/dev/null)
	how=$(awk '{print $2}' <<<"$out") dt=$(awk '{print $3}' <<<"$out")
	check "$kind: ended by the server with ${WANT[$kind]} (got '$how' after ${dt}s)" \
		bash -c "[[ '$how' =~ ^(${WANT[$kind]})\$ ]] && python3 -c 'assert $dt < 3'"
	check "  ... and a good client is served right after" good
done
malformed=$(( $(metric 'tracktls_client_hello_refused_total{reason="malformed"}') - malformed0 ))
check "malformed hellos are counted ($malformed, at least the 5 non-TLS shapes sent whole)" test "$malformed" -ge 5

# A legal ClientHello split over two records (RFC 8446 5.1): answered either way, never left hanging.
out=$(python3 "$HOSTILE" "$HTTPS_PORT" good.test split_hello --timeout 8 2>/dev/null)
echo "split_hello: $out"
check "a ClientHello split over two records is answered, not left to time out ($out)" \
	bash -c "[[ '$(awk '{print $2}' <<<"$out")' != timeout ]]"

# Real clients speaking old versions.
for v in tls1 tls1_1; do
	out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername good.test "-$v" -cipher 'DEFAULT@SECLEVEL=0' </dev/null 2>&1); rc=$?
	check "openssl s_client -$v is refused with a protocol_version alert" \
		bash -c "test $rc != 0 && grep -q 'alert protocol version' <<<'$out'"
done
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername good.test -tls1_2 -cipher 'AES128-SHA' </dev/null 2>&1); rc=$?
check "TLS 1.2 with a CBC (non-AEAD) suite only is refused" test "$rc" != 0
out=$(openssl s_client -connect "127.0.0.1:$HTTPS_PORT" -servername good.test -tls1_2 -cipher 'ECDHE-RSA-AES128-GCM-SHA256:AECDH-AES128-SHA:NULL' </dev/null 2>&1); rc=$?
check "TLS 1.2 offering no usable suite for an ECDSA certificate is refused" test "$rc" != 0
check "failed handshakes are counted" test "$(metric 'tracktls_handshakes_total{result="failed",version=""}')" -ge 2

# 200 connections at once (from one process), each a different hostile shape, then good clients.
python3 "$HOSTILE" "$HTTPS_PORT" good.test burst 200 truncated,oversized_record,garbage,sslv2,tls10_record,bad_lengths,sni_nul,many_sni \
	--timeout 8 >"$T/burst.out" 2>"$T/burst.err"
check "200 concurrent hostile hellos all ended by the server (none timed out)" \
	test "$(grep -c ' timeout ' "$T/burst.out") $(wc -l <"$T/burst.out")" = "0 200"
check "the terminator is still up and serving" good
check "no connection left open" wait_until 5 metric_is tracktls_connections_open 0

# Random-name flood with the name filter: no database query per name.
q0=$(metric tracktls_db_queries_total)
alerts=$(python3 "$HOSTILE" "$HTTPS_PORT" x names 500)
q=$(( $(metric tracktls_db_queries_total) - q0 ))
check "500 random names all refused with an alert ($alerts)" test "$alerts" = 500
check "  ... costing $q certificate queries (name filter: at most 5)" test "$q" -le 5
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0 (no leak reported under ASan)" test "$rc" = 0

# The same flood with the filter off: the per-thread miss budget (20/s, 2 threads) bounds queries.
make_cert cold.test
check "terminator starts without a name filter" start_terminator --name-filter-names 0 --max-misses-per-sec 20 --negative-ttl 60s
R=(--cacert "$T/good.test.pem" --resolve "good.test:$HTTPS_PORT:127.0.0.1")
check "a good name is served (and cached) before the flood" good
t0=$(date +%s%N)
q0=$(metric tracktls_db_queries_total)
python3 "$HOSTILE" "$HTTPS_PORT" x names 500 >"$T/flood.out" & FLOOD=$!
during=0
while kill -0 "$FLOOD" 2>/dev/null; do good && during=$((during + 1)) || { during=-1000; break; }; done
wait "$FLOOD"
alerts=$(cat "$T/flood.out")
secs=$(( ($(date +%s%N) - t0) / 1000000000 + 1 ))
q=$(( $(metric tracktls_db_queries_total) - q0 ))
limit=$(( 2 * 20 * (secs + 1) ))
echo "filter off: $q queries for 500 names in ${secs}s"
check "500 random names refused ($alerts)" test "$alerts" = 500
check "  ... costing $q queries in ${secs}s, within the miss budget ($limit)" test "$q" -le "$limit"
check "the cached name is served all through the flood ($during requests)" test "$during" -ge 1
throttled=$(metric 'tracktls_client_hello_refused_total{reason="throttled"}')
check "  ... names beyond the budget counted as throttled ($throttled), with the rest queried" test "$throttled" -ge 1 -a "$((throttled + q))" -ge 500
check "  ... and logged, at most once a second per thread" grep -q "level=warn event=cert_queries_throttled refused=[0-9]* limit_per_sec=20" "$T/terminator.log"
check "  ... ($(grep -c cert_queries_throttled "$T/terminator.log") lines in ${secs}s)" test "$(grep -c cert_queries_throttled "$T/terminator.log")" -le "$((2 * (secs + 1)))"
cold_ok() { test "$(served cold.test subject)" = "subject=CN = cold.test"; }
check "a name not yet cached is served once the flood is over (the budget refills)" wait_until 5 cold_ok
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
