# Pebble (Let's Encrypt's test ACME server) with pebble-challtestsrv as its DNS, on loopback.
# Source this file, then:
#   pebble_start DIR HTTP01_PORT   -> exports PEBBLE_DIRECTORY (ACME directory URL),
#                                     PEBBLE_CA (trust for its HTTPS), PEBBLE_MGMT (management URL)
#   pebble_stop DIR
# Tunables (environment): PEBBLE_PORT (14000), PEBBLE_MGMT_PORT (15000), PEBBLE_DNS_PORT (8053),
# PEBBLE_CHALL_MGMT_PORT (8055), PEBBLE_WFE_NONCEREJECT (0), PEBBLE_EAB (set: EAB required, key
# id "kid-1" with HMAC key in PEBBLE_EAB_HMAC), PEBBLE_VALIDITY (seconds), PEBBLE_BIN,
# PEBBLE_BLOCKLIST (space-separated names the CA refuses with rejectedIdentifier).

pebble__wait() { # url cafile seconds
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		curl -sf --cacert "$2" "$1" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

pebble_start() {
	local dir=$1 http01=$2
	local port=${PEBBLE_PORT:-14000} mgmt=${PEBBLE_MGMT_PORT:-15000}
	local dns=${PEBBLE_DNS_PORT:-8053} cmgmt=${PEBBLE_CHALL_MGMT_PORT:-8055}
	mkdir -p "$dir"
	if [ ! -f "$dir/ca.pem" ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
			-subj "/CN=pebble test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
			-keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
		printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/ext.cnf"
		openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
			-days 30 -extfile "$dir/ext.cnf" -out "$dir/server.pem" 2>/dev/null
	fi
	local eab=""
	if [ -n "${PEBBLE_EAB:-}" ]; then
		eab=', "externalAccountBindingRequired": true, "externalAccountMACKeys": {"kid-1": "'"$PEBBLE_EAB_HMAC"'"}'
	fi
	local block=""
	if [ -n "${PEBBLE_BLOCKLIST:-}" ]; then
		block=', "domainBlocklist": ['$(printf '"%s",' $PEBBLE_BLOCKLIST | sed 's/,$//')']'
	fi
	cat >"$dir/pebble.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$port", "managementListenAddress": "127.0.0.1:$mgmt",
 "certificate": "$dir/server.pem", "privateKey": "$dir/server.key",
 "httpPort": $http01, "tlsPort": 5001, "ocspResponderURL": ""$eab$block
 ${PEBBLE_VALIDITY:+, \"certificateValidityPeriod\": $PEBBLE_VALIDITY}}}
JSON
	pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns" -http01 "" \
		-https01 "" -tlsalpn01 "" -management "127.0.0.1:$cmgmt" >"$dir/challtestsrv.log" 2>&1 &
	echo $! >"$dir/challtestsrv.pid"
	PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=${PEBBLE_WFE_NONCEREJECT:-0} \
		PEBBLE_AUTHZREUSE=${PEBBLE_AUTHZREUSE:-0} \
		"${PEBBLE_BIN:-pebble}" -config "$dir/pebble.json" -dnsserver "127.0.0.1:$dns" >"$dir/pebble.log" 2>&1 &
	echo $! >"$dir/pebble.pid"
	export PEBBLE_DIRECTORY="https://127.0.0.1:$port/dir" PEBBLE_CA="$dir/ca.pem" PEBBLE_MGMT="https://127.0.0.1:$mgmt"
	pebble__wait "$PEBBLE_DIRECTORY" "$PEBBLE_CA" 20 || { echo "pebble_start: not ready, see $dir/pebble.log" >&2; return 1; }
	pebble__wait "$PEBBLE_MGMT/roots/0" "$PEBBLE_CA" 10 || { echo "pebble_start: management not ready" >&2; return 1; }
	curl -sf --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/roots/0" >"$dir/root.pem"
	export PEBBLE_ROOT="$dir/root.pem"
}

pebble_stop() {
	local dir=$1 f
	for f in pebble challtestsrv; do
		[ -f "$dir/$f.pid" ] || continue
		kill "$(cat "$dir/$f.pid")" 2>/dev/null || true
		wait "$(cat "$dir/$f.pid")" 2>/dev/null || true
		rm -f "$dir/$f.pid"
	done
}
