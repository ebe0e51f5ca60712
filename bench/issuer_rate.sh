#!/usr/bin/env bash
# Certificates per minute from ONE issuer process against Pebble (PEBBLE_VA_NOSLEEP=1), with its
# own PostgreSQL and the HTTP-01 responder. Prints one JSON line last.
#   bench/issuer_rate.sh [--names N] [--concurrency C] [--keep]
# Uses bin/issuer (release build). HTTP-01 is answered by bin/terminator's port-80 path when built
# (else, or with ISSUER_RESPONDER=python, by the stand-in tests/lib/challenge_server.py).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
names=1000 conc=8 keep=
while [ $# -gt 0 ]; do
	case $1 in
	--names) names=$2; shift 2 ;;
	--concurrency) conc=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) sed -n '2,6p' "$0" >&2; exit 2 ;;
	esac
done
I=$root/bin/issuer
[ -x "$I" ] || { echo "issuer_rate: $I missing (make bin/issuer)" >&2; exit 1; }
T=$(mktemp -d /tmp/tracktls-issuer-rate.XXXXXX)
chmod 755 "$T"
. "$root/tests/lib/pg.sh"
. "$root/tests/lib/pebble.sh"
. "$root/tests/lib/ports.sh"
CS_PID=
cleanup() {
	[ -n "$CS_PID" ] && kill "$CS_PID" 2>/dev/null
	pebble_stop "$T/pebble"
	pg_stop "$T/pg"
	[ -n "$keep" ] || rm -rf "$T"
}
trap cleanup EXIT
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{sub(/.*\) /, ""); printf "%.2f", ($12 + $13 + $14 + $15) / hz}' "/proc/$1/stat"; }

pg_start "$T/pg" "$(free_port)" >/dev/null || exit 1
export TRACKTLS_DB=$(pg_newdb issuer_rate) TRACKTLS_MASTER_KEY_FILE=$T/keys
"$I" keys generate >/dev/null && "$I" db migrate >/dev/null || exit 1
HTTP=$(free_port)
pebble_ports
pebble_start "$T/pebble" "$HTTP" || exit 1
if [ -x "$root/bin/terminator" ] && [ "${ISSUER_RESPONDER:-terminator}" = terminator ]; then
	responder=terminator
	HTTPS=$(free_port)
	# The https_ready check goes through this terminator, as on an edge host; without it every check
	# would wait for the bench names' DNS to fail and the run would measure that.
	export TRACKTLS_HTTPS_CHECK_VIA=127.0.0.1:$HTTPS
	"$root/bin/terminator" --http "127.0.0.1:$HTTP" --https "127.0.0.1:$HTTPS" --backend "127.0.0.1:$(free_port)" \
		--threads 1 --allow-root 2>"$T/terminator.log" & CS_PID=$!
else
	responder=challenge_server.py
	python3 "$root/tests/lib/challenge_server.py" "$HTTP" & CS_PID=$!
fi
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$HTTP) 2>/dev/null && break; sleep 0.05; done
export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA TRACKTLS_CHAIN_CA_FILE=$PEBBLE_ROOT
export TRACKTLS_HTTPS_CHECK_CA_FILE=$PEBBLE_ROOT

# the account is created by a warm-up run on one name, outside the measurement
psql -qAtX -d "$TRACKTLS_DB" -c "INSERT INTO domains (name) VALUES ('warmup.bench.test')"
"$I" run --self-check-via "127.0.0.1:$HTTP" 2>"$T/warmup.log" || { echo "issuer_rate: warm-up run failed" >&2; tail -3 "$T/warmup.log" >&2; exit 1; }
psql -qAtX -d "$TRACKTLS_DB" -c "INSERT INTO domains (name) SELECT 'n' || g || '.bench.test' FROM generate_series(1, $names) g"

peb_pid=$(cat "$T/pebble/pebble.pid")
peb0=$(cpu_s "$peb_pid") cs0=$(cpu_s "$CS_PID")
t0=$(date +%s.%N)
/usr/bin/time -f '%U %S' -o "$T/time" "$I" run --self-check-via "127.0.0.1:$HTTP" --concurrency "$conc" --order-budget 1000000 2>"$T/run.log"
rc=$?
t1=$(date +%s.%N)
issued=$(psql -qAtX -d "$TRACKTLS_DB" -c "SELECT count(*) FROM domains WHERE state = 'active' AND name LIKE 'n%'")
read -r iu is <"$T/time"
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
rate=$(awk -v n="$issued" -v s="$secs" 'BEGIN{printf "%.0f", n*60/s}')
echo "issuer_rate: $issued of $names certificates in $secs s = $rate/min (exit $rc, concurrency $conc)" >&2
tail -n1 "$T/run.log" >&2
# A failed certificate is a finding, not noise: show why (the folder is removed unless --keep).
[ "$rc" -eq 0 ] || grep -E 'level=(warn|error)' "$T/run.log" | grep -v 'event=run_done' | head -n 5 >&2
printf '{"names":%d,"issued":%d,"seconds":%s,"certs_per_min":%s,"concurrency":%d,"exit":%d,"issuer_cpu_s":%.2f,"pebble_cpu_s":%.2f,"responder_cpu_s":%.2f,"responder":"%s","pebble":"%s"}\n' \
	"$names" "$issued" "$secs" "$rate" "$conc" "$rc" "$(awk -v u="$iu" -v s="$is" 'BEGIN{print u+s}')" \
	"$(awk -v a="$peb0" -v b="$(cpu_s "$peb_pid")" 'BEGIN{print b-a}')" "$(awk -v a="$cs0" -v b="$(cpu_s "$CS_PID")" 'BEGIN{print b-a}')" "$responder" \
	"$(dpkg-query -W -f '${Version}' pebble 2>/dev/null)"
