# Helpers for integration scenarios (tests/integration/*.sh). tests/run.sh provides:
#   TT_BIN (binaries under test), TT_ROOT, TT_WORK, TRACKTLS_TEST_DB (an empty database), PGHOST...
# A scenario sources this, does its work in $T (its own folder), and reports with pass/fail/check.
set -uo pipefail
. "$TT_ROOT/tests/lib/pg.sh"
. "$TT_ROOT/tests/lib/pebble.sh"
. "$TT_ROOT/tests/lib/ports.sh"

T=$(mktemp -d "$TT_WORK/${TT_TEST_NAME//\//_}.XXXXXX")
chmod 755 "$T"
export TRACKTLS_DB=$TRACKTLS_TEST_DB
TT_PIDS=()
TT_CLEANUPS=()

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; }
# check "description" command... : PASS if the command succeeds.
check() { local d=$1; shift; if "$@"; then pass "$d"; else fail "$d"; fi; }

# Runs a command in the background, remembered for cleanup.
bg() { "$@" & TT_PIDS+=($!); }

tt_cleanup() {
	local c p
	for c in "${TT_CLEANUPS[@]}"; do eval "$c"; done
	for p in "${TT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${TT_PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap tt_cleanup EXIT

# wait_until SECONDS command...: polls the command every 50 ms until it succeeds.
wait_until() {
	local limit=$1 i; shift
	for ((i = 0; i < limit * 20; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.05
	done
	return 1
}

# private_pg DIR DBNAME: a PostgreSQL of the scenario's own in DIR, so stopping or
# reconfiguring it touches no other test; stopped at exit. PGHOST/PGPORT point at it and
# TRACKTLS_DB is a new database DBNAME there. A PostgreSQL that does not start ends the scenario.
private_pg() {
	pg_start "$1" 5432 || { fail "private PostgreSQL in $1 starts"; exit 1; }
	TT_CLEANUPS+=("pg_stop '$1'")
	TRACKTLS_DB=$(pg_newdb "$2") || { fail "database $2 in $1"; exit 1; }
	export TRACKTLS_DB
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# A master key ring for this scenario.
make_keyring() {
	"$TT_BIN/issuer" keys generate --master-key-file "$T/keys" >/dev/null || return 1
	export TRACKTLS_MASTER_KEY_FILE=$T/keys
}
