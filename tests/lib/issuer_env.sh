# Issuer scenarios: Pebble + challenge responder + migrated database. Source after common.sh:
#   issuer_env_start [PEBBLE_ENV...]  -> I (issuer binary), HTTP (challenge port), PEBBLE_* exports,
#                                        TRACKTLS_ACME_DIRECTORY / TRACKTLS_ACME_CA_FILE for the issuer
# The challenge responder is tests/lib/challenge_server.py, a stand-in for the terminator's
# port-80 path until bin/terminator serves challenges.
I=$TT_BIN/issuer

issuer_env_start() {
	make_keyring || { fail "make_keyring"; exit 1; }
	"$I" db migrate >/dev/null || { fail "db migrate"; exit 1; }
	HTTP=$(free_port)
	export PEBBLE_PORT=$(free_port) PEBBLE_MGMT_PORT=$(free_port) PEBBLE_DNS_PORT=$(free_port) PEBBLE_CHALL_MGMT_PORT=$(free_port)
	TT_CLEANUPS+=("pebble_stop '$T/pebble'")
	pebble_start "$T/pebble" "$HTTP" || { fail "pebble_start"; cat "$T/pebble/pebble.log" 2>/dev/null | tail -5; exit 1; }
	bg python3 "$TT_ROOT/tests/lib/challenge_server.py" "$HTTP"
	wait_until 10 port_open 127.0.0.1 "$HTTP" || { fail "challenge server did not start"; exit 1; }
	export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA
}

q() { psql -qAtX -d "$TRACKTLS_DB" -c "$1"; }

# The clear key of a domain's current certificate, to stdout (never to disk).
open_key() { python3 "$TT_ROOT/tests/lib/open_sealed.py" "$TRACKTLS_MASTER_KEY_FILE" "$1"; }
