# Issuer scenarios: Pebble + challenge responder + migrated database. Source after common.sh:
#   issuer_env_start  -> I (issuer binary), HTTP (port-80 path), HTTPS (terminator TLS), PEBBLE_*
#                        exports, TRACKTLS_ACME_DIRECTORY / TRACKTLS_ACME_CA_FILE for the issuer,
#                        TRACKTLS_CHAIN_CA_FILE (Pebble's issuing root, which chains must verify to)
#                        TRACKTLS_HTTPS_CHECK_VIA / _CA_FILE: the served check through the terminator
#   issuer_env_fallback_ca -> a second CA beside the first: A_*, B_*, CAS (see below)
# HTTP-01 is answered by the real terminator from the challenges table; ISSUER_RESPONDER=python
# uses tests/lib/challenge_server.py instead (the stand-in from before the terminator existed).
I=$TT_BIN/issuer

issuer_env_start() {
	make_keyring || { fail "make_keyring"; exit 1; }
	"$I" db migrate >/dev/null || { fail "db migrate"; exit 1; }
	HTTP=$(free_port)
	pebble_ports
	TT_CLEANUPS+=("pebble_stop '$T/pebble'")
	pebble_start "$T/pebble" "$HTTP" || { fail "pebble_start"; cat "$T/pebble/pebble.log" 2>/dev/null | tail -5; exit 1; }
	HTTPS=$(free_port)
	if [ "${ISSUER_RESPONDER:-terminator}" = terminator ]; then
		bg "$TT_BIN/terminator" --http "127.0.0.1:$HTTP" --https "127.0.0.1:$HTTPS" --backend "127.0.0.1:$(free_port)" \
			--threads 1 --negative-ttl 100ms --allow-root 2>"$T/terminator.log"
	else
		bg python3 "$TT_ROOT/tests/lib/challenge_server.py" "$HTTP"
	fi
	wait_until 10 port_open 127.0.0.1 "$HTTP" || { fail "challenge responder did not start"; tail -5 "$T/terminator.log"; exit 1; }
	export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA TRACKTLS_CHAIN_CA_FILE=$PEBBLE_ROOT
	export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA
	export TRACKTLS_HTTPS_CHECK_VIA=127.0.0.1:$HTTPS TRACKTLS_HTTPS_CHECK_CA_FILE=$PEBBLE_ROOT
}

# issuer_env_fallback_ca (after issuer_env_start): a second Pebble, with a root of its own, in
# $T/pebble2 validating on the same port. A_DIR/A_CA/A_ROOT name the first (preferred) CA, B_* the
# second, CAS holds the issuer's flags for both in that order, and the served check trusts both
# roots, as a host's trust store trusts both real ones.
issuer_env_fallback_ca() {
	A_DIR=$PEBBLE_DIRECTORY A_CA=$PEBBLE_CA A_ROOT=$PEBBLE_ROOT
	pebble_ports
	TT_CLEANUPS+=("pebble_stop '$T/pebble2'")
	pebble_start "$T/pebble2" "$HTTP" || { fail "second pebble_start"; exit 1; }
	B_DIR=$PEBBLE_DIRECTORY B_CA=$PEBBLE_CA B_ROOT=$PEBBLE_ROOT
	CAS=(--directory "$A_DIR" --ca-file "$A_CA" --chain-ca-file "$A_ROOT" --directory "$B_DIR" --ca-file "$B_CA"
		--chain-ca-file "$B_ROOT")
	cat "$A_ROOT" "$B_ROOT" >"$T/both-roots.pem"
	export TRACKTLS_HTTPS_CHECK_CA_FILE=$T/both-roots.pem
}

q() { psql -qAtX -d "$TRACKTLS_DB" -c "$1"; }

# The clear key of a domain's current certificate, to stdout (never to disk).
open_key() { python3 "$TT_ROOT/tests/lib/open_sealed.py" "$TRACKTLS_MASTER_KEY_FILE" "$1"; }
