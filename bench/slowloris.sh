#!/usr/bin/env bash
# Full-handshake rate with and without 10,000 slow clients hanging on (silent TLS connections,
# ClientHellos and HTTP heads trickled a byte every 5 s: tests/lib/slowloris.py), same corpus,
# same load generator (bench/load), one terminator. Issue 8 asks for at least 80 % of the rate.
#   bench/slowloris.sh [SLOW (10000)] [DURATION (10)]      needs `make bench-tools` and bench/corpus 1,000
# Prints the two rates, their ratio, the slow connections open during the second run and the
# terminator's RSS; one JSON line to bench/results/slowloris-DATE.json.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SLOW=${1:-10000} DUR=${2:-10}
B=$ROOT/build/bench
[ -x "$B/load" ] && [ -x "$B/backend" ] || { echo "slowloris: make bench-tools first" >&2; exit 2; }
bench/corpus --out "$B/corpus-1000" --count 1000 || exit 2
ulimit -n "$(ulimit -Hn)"
W=$(mktemp -d /tmp/tracktls-slowloris.XXXXXX)
chmod 755 "$W"
mkdir -p "$W/bin"
make -s -j2 bin/terminator bin/issuer >/dev/null && cp bin/terminator bin/issuer "$W/bin/" || { echo "slowloris: cannot build" >&2; exit 2; }
. tests/lib/pg.sh
cleanup() {
	for p in ${SLOWPID:-} ${TPID:-} ${BPID:-}; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	pg_stop "$W/pg"
	rm -rf "$W"
}
trap cleanup EXIT
pg_start "$W/pg" 5432 >/dev/null || exit 2
export TRACKTLS_DB=$(pg_newdb slow) TRACKTLS_MASTER_KEY_FILE=$W/keys
"$W/bin/issuer" keys generate >/dev/null && "$W/bin/issuer" db migrate >/dev/null 2>&1 || exit 2
ISSUER=$W/bin/issuer bench/corpus --out "$B/corpus-1000" --count 1000 --import >/dev/null 2>&1 || { echo "slowloris: import failed" >&2; exit 2; }
. tests/lib/ports.sh
export TT_PORTS_FILE=$W/.ports
BACKEND_PORT=$(free_port) HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
"$B/backend" --listen "127.0.0.1:$BACKEND_PORT" 2>"$W/backend.log" & BPID=$!
ROOTFLAG=()
[ "$(id -u)" = 0 ] && "$W/bin/terminator" --help 2>&1 | grep -q -- --allow-root && ROOTFLAG=(--allow-root)
"$W/bin/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" --backend "127.0.0.1:$BACKEND_PORT" \
	--metrics "127.0.0.1:$METRICS_PORT" --handshake-timeout 120s --header-timeout 120s "${ROOTFLAG[@]}" \
	>"$W/terminator.log" 2>&1 & TPID=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$METRICS_PORT/healthz" >/dev/null && break; sleep 0.1; done
metric() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
rss() { awk '/^VmRSS/ {print $2}' "/proc/$TPID/status"; }
load() {
	"$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$B/corpus-1000/names.txt" --cafile "$B/corpus-1000/ca.crt" \
		--mode handshake --concurrency 32 --duration "$DUR" --warmup 2 --label "$1" --watch-pids "$TPID" 2>"$W/$1.err"
}
rate() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["rps"])' "$1"; }

base=$(load base)
rss0=$(rss)
python3 tests/lib/slowloris.py "$HTTPS_PORT" "$HTTP_PORT" $((SLOW * 4 / 10)) $((SLOW * 3 / 10)) $((SLOW * 3 / 10)) \
	--interval 5 --limit $((DUR * 4 + 60)) >"$W/slow.json" & SLOWPID=$!
for _ in $(seq 1 600); do [ "$(metric tracktls_connections_open)" -ge $((SLOW * 95 / 100)) ] && break; sleep 0.1; done
open1=$(metric tracktls_connections_open)
under=$(load slowloris)
open2=$(metric tracktls_connections_open)
rss1=$(rss)
b=$(rate "$base") u=$(rate "$under")
ratio=$(awk -v a="$b" -v c="$u" 'BEGIN { printf "%.2f", (a > 0) ? (c / a) : 0 }')
# Terminator CPU per handshake: tells the terminator's cost from the machine being shared with the
# slow clients' own process.
cpu() { python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("%.0f" % (1e6 * d["server_cpu_s"] / max(d["requests"], 1)))' "$1"; }
echo "handshakes/s alone: $b"
echo "handshakes/s with $SLOW slow clients ($open1 open before, $open2 after the run): $u"
echo "ratio: $ratio (target >= 0.80)"
echo "terminator CPU per handshake: $(cpu "$base") us alone, $(cpu "$under") us with the slow clients; slow clients' own CPU: $(ps -o times= -p "$SLOWPID" 2>/dev/null || echo ?) s"
kill "$SLOWPID" 2>/dev/null; wait "$SLOWPID" 2>/dev/null; SLOWPID=
echo "terminator RSS: $rss0 KiB alone, $rss1 KiB with the slow clients ($(( (rss1 - rss0) / (open1 > 0 ? open1 : 1) )) KiB each)"
mkdir -p bench/results
jq -nc --argjson base "$base" --argjson under "$under" --argjson slow "$SLOW" --argjson open "${open1:-0}" \
	--argjson rss0 "$rss0" --argjson rss1 "$rss1" --arg ratio "$ratio" \
	'{scenario:"slowloris", slow_clients:$slow, open_during:$open, base:$base, under:$under, ratio:($ratio|tonumber), rss_kib:[$rss0,$rss1]}' \
	>"bench/results/slowloris-$(date -u +%Y%m%dT%H%M%SZ).json"
