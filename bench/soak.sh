#!/usr/bin/env bash
# Leak soak of the terminator's certificate cache: many names through a small cache, so most
# handshakes evict one entry and load another from PostgreSQL; renewals stored meanwhile replace
# cached entries in place (NOTIFY); unknown names fill the negative cache. For a bounded time, then
# SIGTERM; reports handshakes, cache churn, RSS over time and what the leak checker found.
#   bench/soak.sh [SECONDS (300)] [NAMES (400)] [CACHE_SIZE (40)]     TOOL=asan (default) | memcheck
# TOOL=asan runs the ASan+UBSan build with LeakSanitizer. TOOL=memcheck runs bin/terminator under
# valgrind: valgrind 3.19 (Debian 12) stalls the process at start-up (the loop threads block in
# io_uring_enter and the main thread never runs again until a signal), so it only proves that.
# Exit status: 0 when the checker reports no error and no leak.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=${1:-300} NAMES=${2:-400} CACHE=${3:-40}
W=$(mktemp -d /tmp/tracktls-soak.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/bin"
TOOL=${TOOL:-asan}
# A snapshot of the binaries: others may rebuild them while this runs.
if [ "$TOOL" = asan ]; then
	make -s -j2 MODE=asan build/asan/bin/terminator build/asan/bin/issuer >/dev/null &&
		cp build/asan/bin/terminator build/asan/bin/issuer "$W/bin/" || { echo "soak: cannot build" >&2; exit 2; }
	# A small quarantine, so RSS shows what the terminator keeps rather than freed memory held back.
	export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1:quarantine_size_mb=16 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
	export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp:print_suppressions=0
	RUN=()
else
	make -s -j2 bin/terminator bin/issuer >/dev/null && cp bin/terminator bin/issuer "$W/bin/" ||
		{ echo "soak: cannot build" >&2; exit 2; }
	RUN=(valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,indirect
		--errors-for-leak-kinds=definite,indirect --num-callers=30 --log-file="$W/checker.log")
fi
. tests/lib/pg.sh
PGPORT_SOAK=5432
cleanup() {
	[ -n "${TPID:-}" ] && kill "$TPID" 2>/dev/null
	[ -n "${BPID:-}" ] && kill "$BPID" 2>/dev/null
	pg_stop "$W/pg"
	[ -n "${KEEP:-}" ] || rm -rf "$W"
}
trap cleanup EXIT
pg_start "$W/pg" "$PGPORT_SOAK" || exit 2
export TRACKTLS_DB=$(pg_newdb soak)
export TRACKTLS_MASTER_KEY_FILE=$W/keys
I=$W/bin/issuer
$I keys generate >/dev/null && $I db migrate >/dev/null 2>&1 || { echo "soak: cannot set up the database" >&2; exit 2; }

echo "soak: $NAMES names, cache of $CACHE, ${SECS}s under $TOOL" >&2
mkdir -p "$W/certs"
for i in $(seq 1 "$NAMES"); do
	n=s$i.soak.test
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$n" \
		-addext "subjectAltName=DNS:$n" -keyout "$W/certs/$n.key" -out "$W/certs/$n.pem" 2>/dev/null &&
		$I cert import "$n" --cert "$W/certs/$n.pem" --key "$W/certs/$n.key" >/dev/null || { echo "soak: import $n failed" >&2; exit 2; }
done
. tests/lib/ports.sh
export TT_PORTS_FILE=$W/.ports
ROOTFLAG=()
[ "$(id -u)" = 0 ] && "$W/bin/terminator" --help 2>&1 | grep -q -- --allow-root && ROOTFLAG=(--allow-root)
BACKEND_PORT=$(free_port) HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
python3 tests/lib/backend.py "$BACKEND_PORT" & BPID=$!
"${RUN[@]}" "$W/bin/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
	--metrics "127.0.0.1:$METRICS_PORT" --threads 2 --cache-size "$CACHE" --negative-ttl 2s \
	--handshake-timeout 30s --db-timeout 5s "${ROOTFLAG[@]}" >"$W/terminator.log" 2>&1 &
TPID=$!
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$METRICS_PORT/healthz" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$METRICS_PORT/healthz" >/dev/null || { echo "soak: terminator did not start in 60 s" >&2; tail "$W/terminator.log" >&2; exit 2; }
# RSS every 10 s.
( while kill -0 "$TPID" 2>/dev/null; do awk '/^VmRSS/ {print $2}' "/proc/$TPID/status"; sleep 10; done >"$W/rss" ) &

# Renewals while serving: a new certificate for a random name every 2 s.
(
	end=$((SECONDS + SECS))
	while [ $SECONDS -lt $end ]; do
		n=s$((RANDOM % NAMES + 1)).soak.test
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=$n" \
			-addext "subjectAltName=DNS:$n" -keyout "$W/renew.key" -out "$W/renew.pem" 2>/dev/null &&
			$I cert import "$n" --cert "$W/renew.pem" --key "$W/renew.key" >/dev/null 2>&1 && echo renewed
		sleep 2
	done >"$W/renewals"
) &
RPID=$!
# Handshakes: random known names (mostly misses, so evictions), one in ten unknown.
python3 - "$HTTPS_PORT" "$NAMES" "$SECS" >"$W/client.out" <<'PY'
import random, socket, ssl, sys, time
port, names, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ok = refused = 0
end = time.time() + secs
while time.time() < end:
    if random.random() < 0.1:
        name = "u%d.unknown.test" % random.randrange(1000000)
    else:
        name = "s%d.soak.test" % random.randrange(1, names + 1)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            with ctx.wrap_socket(s, server_hostname=name) as t:
                t.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                while t.recv(65536):
                    pass
        ok += 1
    except (ssl.SSLError, OSError):
        refused += 1
print(ok, refused)
PY
wait "$RPID"
metrics=$(curl -s "http://127.0.0.1:$METRICS_PORT/metrics")
m() { awk -v k="$1" '$1 == k { print $2 }' <<<"$metrics"; }
kill -TERM "$TPID"; wait "$TPID"; rc=$?
TPID=
read -r ok refused <"$W/client.out"
echo "handshakes completed: $ok, refused (unknown names and others): $refused, renewals stored: $(wc -l <"$W/renewals")"
echo "cache: hits $(m tracktls_cert_cache_hits_total), misses $(m tracktls_cert_cache_misses_total), evictions $(m tracktls_cert_cache_evictions_total), entries $(m tracktls_cert_cache_entries), negative hits $(m tracktls_cert_cache_negative_hits_total), notifications $(m tracktls_db_notifications_total)"
echo "RSS (KiB) every 10 s: $(tr '\n' ' ' <"$W/rss")"
echo "terminator exit status after SIGTERM: $rc"
if [ "$TOOL" = asan ]; then
	errors=$(grep -c -E "ERROR: (LeakSanitizer|AddressSanitizer)|runtime error:" "$W/terminator.log")
	grep -E "SUMMARY: (Leak|Address|Undefined)" "$W/terminator.log"
else
	grep -E "ERROR SUMMARY|definitely lost|indirectly lost" "$W/checker.log" | sed 's/^==[0-9]*== *//'
	errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$W/checker.log" | tail -n1)
fi
if [ "$rc" = 0 ] && [ "${errors:-1}" = 0 ] && [ "${ok:-0}" -gt 0 ]; then
	echo "soak: clean"
	exit 0
fi
KEEP=1
echo "soak: problems found, see $W"
exit 1
