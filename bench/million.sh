#!/usr/bin/env bash
# bench/million.sh: the terminator with 1,000,000 domains in the database (terminator only: HAProxy
# and hitch load every certificate at start, about 500 s per 50,000 names).
#   bench/million.sh [--names N] [--real N] [--rate N] [--duration SEC] [--reps N] [--threads N (default: one per server core)]
#                    [--build-only]   (build the database and the corpus, then stop: bench/restart.sh uses it)
# The database holds --names domains, each with a current certificate: --real of them (a bench/corpus
# imported with `issuer cert import-batch`) are servable; the rest are filler rows copied from a real
# one (same size, but their sealed keys are bound to another row, so they are never requested).
# Measures: start-up to the first served handshake and RSS (--reps restarts); cold-cache handshakes
# opened at --rate per second (open loop; latency counts from the time each was due), every one a
# miss loaded from PostgreSQL; then the same names again, warm, at the same rate; then, as the
# reference for those latencies on this machine, HAProxy with 1,000 certificates in memory.
# Writes bench/results/<date>-million.{json,md}.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/tests/lib/pg.sh"

names=1000000 real=100000 rate=1000 duration=20 reps=3 threads= build_only=
while [ $# -gt 0 ]; do
	case $1 in
	--build-only) build_only=1; shift ;;
	--names) names=$2; shift 2 ;;
	--real) real=$2; shift 2 ;;
	--rate) rate=$2; shift 2 ;;
	--duration) duration=$2; shift 2 ;;
	--reps) reps=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	*) sed -n '2,11p' "$0" >&2; exit 2 ;;
	esac
done
[ "$real" -le "$names" ] || { echo "million: --real must not exceed --names" >&2; exit 2; }
# Every cold handshake needs a name not served before.
[ $((rate * (duration + 2))) -le "$real" ] || { echo "million: --rate x (--duration + 2) must not exceed --real" >&2; exit 2; }

B=$root/build/bench
for t in load backend certgen; do [ -x "$B/$t" ] || { echo "million: $B/$t missing: make bench-tools" >&2; exit 1; }; done
for b in terminator issuer; do [ -x "$root/bin/$b" ] || { echo "million: bin/$b missing: make" >&2; exit 1; }; done
. "$root/bench/setup.sh"
bench_setup million
now() { date +%s.%N; }

PG_DIR=$B/pg TERM_PID= BACKEND_PID= HP_PID=
cleanup() {
	[ -n "$TERM_PID" ] && kill "$TERM_PID" 2>/dev/null && wait "$TERM_PID" 2>/dev/null
	[ -n "$HP_PID" ] && kill "$HP_PID" 2>/dev/null && wait "$HP_PID" 2>/dev/null
	[ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null && wait "$BACKEND_PID" 2>/dev/null
	pg_stop "$PG_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Snapshots: other people rebuild bin/ while we run.
mkdir -p "$T/bin" && cp "$root/bin/terminator" "$root/bin/issuer" "$T/bin/" || exit 1
"$root/bench/corpus" --out "$B/corpus-$real" --count "$real" || exit 1
PG_PORT=$(free_port)
pg_start "$PG_DIR" "$PG_PORT" || exit 1
KEYS=$B/master.keys
[ -f "$KEYS" ] || "$T/bin/issuer" keys generate --master-key-file "$KEYS" >/dev/null
export TRACKTLS_MASTER_KEY_FILE=$KEYS
db=bench_million_$names
export TRACKTLS_DB="host=$PG_DIR port=$PG_PORT user=postgres dbname=$db"
q() { psql -qAtX -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
if [ "$(q "select count(*) from domains d join certificates c on c.id = d.current_cert_id" 2>/dev/null)" != "$names" ]; then
	say "building $db: $real real certificates, $((names - real)) filler rows"
	PGOPTIONS=--client-min-messages=warning psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null || exit 1
	"$T/bin/issuer" db migrate >/dev/null 2>&1 || { say "issuer db migrate failed"; exit 1; }
	t0=$(now)
	ISSUER=$T/bin/issuer "$root/bench/corpus" --out "$B/corpus-$real" --count "$real" --import 2>&1 | grep -v import_progress >&2
	[ "$(q "select count(*) from certificates")" = "$real" ] || { say "import failed"; exit 1; }
	record import "$(jq -nc --argjson s "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{printf "%.3f", b-a}')" --argjson n "$real" \
		'{import_s:$s, certs_per_s:($n/$s), count:$n}')"
	# Filler: no NOTIFY per row (nobody listens yet) and no per-row foreign-key trigger.
	psql -qAtX -v ON_ERROR_STOP=1 -d "$db" >/dev/null <<SQL || { say "filler failed"; exit 1; }
SET session_replication_role = replica;
INSERT INTO domains (name, state, next_attempt_at)
	SELECT 'f' || g || '.filler.bench', 'active', now() + interval '60 days' FROM generate_series(1, $((names - real))) g;
INSERT INTO certificates (domain_id, chain_pem, sealed_key, master_key_id, key_type, serial, not_before, not_after, source)
	SELECT d.id, t.chain_pem, t.sealed_key, t.master_key_id, t.key_type, t.serial, t.not_before, t.not_after, 'import'
	FROM domains d CROSS JOIN (SELECT * FROM certificates ORDER BY id LIMIT 1) t WHERE d.name LIKE '%.filler.bench';
UPDATE domains d SET current_cert_id = c.id FROM certificates c WHERE c.domain_id = d.id AND d.current_cert_id IS NULL;
SQL
	q "VACUUM ANALYZE" >/dev/null
fi
[ -n "$build_only" ] && { say "database $db ready"; exit 0; }
record database "$(jq -nc --argjson d "$(q "select count(*) from domains")" --argjson c "$(q "select count(*) from certificates")" \
	--argjson b "$(q "select pg_database_size(current_database())")" '{domains:$d, certificates:$c, db_bytes:$b}')"

BACKEND_PORT=$(free_port) HTTPS_PORT=$(free_port) METRICS_PORT=$(free_port)
taskset -c "$load_cpus" "$B/backend" --listen "127.0.0.1:$BACKEND_PORT" 2>"$T/backend.log" &
BACKEND_PID=$!
shuf --random-source=<(yes) "$B/corpus-$real/names.txt" >"$T/names.txt"
head -n1 "$T/names.txt" >"$T/probe.txt"
start_terminator() {
	taskset -c "$srv_cpus" "$T/bin/terminator" --db "$TRACKTLS_DB" --https "127.0.0.1:$HTTPS_PORT" \
		--http "127.0.0.1:$(free_port)" --backend "127.0.0.1:$BACKEND_PORT" --threads "$threads" \
		--metrics "127.0.0.1:$METRICS_PORT" --log-level warn --allow-root >>"$T/terminator.log" 2>&1 &
	TERM_PID=$!
}
stop_terminator() { kill "$TERM_PID" 2>/dev/null; wait "$TERM_PID" 2>/dev/null; TERM_PID=; }
served_once_at() { # PORT NAMES
	[ "$("$B/load" --connect "127.0.0.1:$1" --names "$2" --requests 1 --concurrency 1 --timeout 2 2>/dev/null |
		jq -r .requests 2>/dev/null)" = 1 ]
}
rss_kb() { awk '/^VmRSS:/{print $2}' "/proc/$TERM_PID/status"; }
metric() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v k="$1" '$1 == k { s += $2 } END { print s + 0 }'; }

# ---- start-up: each rep a fresh process; the probe name differs each time, so it is a miss too ----
for ((rep = 1; rep <= reps; rep++)); do
	sed -n "${rep}p" "$T/names.txt" >"$T/probe.txt"
	t0=$(now)
	start_terminator
	until served_once_at "$HTTPS_PORT" "$T/probe.txt"; do
		kill -0 "$TERM_PID" 2>/dev/null || { say "terminator exited: $(tail -n2 "$T/terminator.log")"; exit 1; }
		awk -v a="$t0" -v b="$(now)" 'BEGIN{exit !(b-a > 60)}' && { say "not serving after 60 s"; exit 1; }
		sleep 0.01
	done
	t1=$(now)
	record startup "$(jq -nc --argjson st "$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}')" --argjson rss "$(rss_kb)" \
		--argjson rep "$rep" '{rep:$rep, startup_s:$st, rss_kb:$rss}')"
	say "start-up $rep: serving after $(tail -n1 "$RESULTS" | jq .startup_s) s"
	[ "$rep" = "$reps" ] || stop_terminator
done

# ---- cold, then warm: the names after the probes, each requested once per pass ----
tail -n +$((reps + 1)) "$T/names.txt" | head -n $((rate * (duration + 2))) >"$T/pass.txt"
# pass SCENARIO PORT PID NAMES: handshakes opened at --rate, each name once, in order.
pass() {
	local sc=$1 port=$2 pid=$3 names=$4
	taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$port" --names "$names" --sequential \
		--mode handshake --rate "$rate" --concurrency 256 --threads "$load_threads" --duration "$duration" \
		--warmup 1 --label "$sc" --watch-pids "$pid" 2>>"$T/load.log"
}
say_pass() {
	say "$(jq -r '"\(.label): \(.rps|floor)/s p50=\(.latency_us.p50) p99=\(.latency_us.p99) max=\(.latency_us.max) us errors=\(.errors_total) db_queries=\(.db_queries // "-")"' <<<"$(tail -n1 "$RESULTS")")"
}
for sc in cold warm; do
	q0=$(metric tracktls_db_queries_total)
	out=$(pass "$sc" "$HTTPS_PORT" "$TERM_PID" "$T/pass.txt") || { say "load failed: $(tail -n3 "$T/load.log")"; exit 1; }
	record "$sc" "$(jq -c --argjson q "$(($(metric tracktls_db_queries_total) - q0))" \
		--argjson rss "$(rss_kb)" '. + {db_queries:$q, rss_kb:$rss}' <<<"$out")"
	say_pass
done
record metrics "$(jq -nc --argjson m "$(metric tracktls_cert_cache_misses_total)" --argjson e "$(metric tracktls_cert_cache_entries)" \
	--argjson r "$(metric 'tracktls_client_hello_refused_total{reason="certificate_error"}')" '{cache_misses:$m, cache_entries:$e, certificate_errors:$r}')"
stop_terminator

# ---- the reference: HAProxy with 1,000 certificates all in memory, same rate, same cores ----
if command -v haproxy >/dev/null; then
	"$root/bench/corpus" --out "$B/corpus-1000" --count 1000 || exit 1
	HP_PORT=$(free_port)
	cat >"$T/haproxy.cfg" <<EOF
global
    nbthread $threads
    maxconn 4000
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend fe
    bind 127.0.0.1:$HP_PORT ssl crt $B/corpus-1000/pem/ strict-sni
    default_backend be
backend be
    server origin 127.0.0.1:$BACKEND_PORT
EOF
	taskset -c "$srv_cpus" haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 &
	HP_PID=$!
	head -n1 "$B/corpus-1000/names.txt" >"$T/hp-probe.txt"
	for ((i = 0; i < 300; i++)); do served_once_at "$HP_PORT" "$T/hp-probe.txt" && break; sleep 0.1; done
	out=$(pass haproxy "$HP_PORT" "$HP_PID" "$B/corpus-1000/names.txt") || { say "load failed: $(tail -n3 "$T/load.log")"; exit 1; }
	record haproxy "$out"
	say_pass
	kill "$HP_PID"; wait "$HP_PID" 2>/dev/null
	HP_PID=
fi
stop_terminator

mkdir -p "$root/bench/results"
out=$root/bench/results/$(date -u +%Y-%m-%d)-million
jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	--argjson cores "$ncpu" --arg terminator "$(git -C "$root" log -1 --format='%h %cs')" \
	--argjson names "$names" --argjson real "$real" --argjson threads "$threads" --argjson rate "$rate" --argjson duration "$duration" \
	'{date:$date, machine:{cores:$cores, cpu:$cpu}, terminator:$terminator,
	  setup:{names:$names, real:$real, rate:$rate, duration_s:$duration, server_cores:"first half", threads:$threads}, runs:.}' \
	"$RESULTS" >"$out.json"
python3 - "$out.json" >"$out.md" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
runs = d["runs"]
by = lambda sc: [r for r in runs if r["scenario"] == sc]
db = by("database")[0]
st = sorted(r["startup_s"] for r in by("startup"))
print(f"# The terminator with {db['domains']:,} domains in the database ({d['date']}, {d['machine']['cores']} cores)\n")
print(f"{db['certificates']:,} certificates, {d['setup']['real']:,} of them servable; database {db['db_bytes'] / 2**30:.1f} GiB.\n")
print("| figure | value |\n|---|---:|")
print(f"| start-up to first served handshake, s (median of {len(st)}; min-max) | {st[len(st) // 2]:.3f} ({st[0]:.3f}-{st[-1]:.3f}) |")
print(f"| resident memory when serving, MiB | {by('startup')[-1]['rss_kb'] / 1024:.1f} |")
if by("metrics"):
    print(f"| resident memory after caching {by('metrics')[0]['cache_entries']:,} names, MiB | {by('warm')[0]['rss_kb'] / 1024:.1f} |")
hp = by("haproxy")
ref = hp[0] if hp else None
def ratio(v, key):
    if not ref:
        return ""
    rv = key(ref)
    return f" ({v / rv:.2f}x)" if rv else ""
for sc in ("cold", "warm", "haproxy"):
    if not by(sc):
        continue
    r = by(sc)[0]
    l = r["latency_us"]
    cpu = r.get("server_cpu_s", -1)
    per = f"{cpu / r['requests'] * 1e6:.0f}" if cpu > 0 and r["requests"] else "n/a"
    label = {"cold": "terminator, cold (each handshake a miss loaded from PostgreSQL)",
             "warm": "terminator, warm (the same names again)",
             "haproxy": "HAProxy, 1,000 certificates in memory"}[sc]
    cpu_ratio = ratio(cpu / r["requests"], lambda x: x["server_cpu_s"] / x["requests"]) if cpu > 0 and r["requests"] else ""
    print(f"| {label}: handshakes/s opened at {d['setup']['rate']}/s | {r['rps']:.0f} |")
    print(f"| {label}: latency p50 / p99 / max, ms | {l['p50'] / 1000:.2f} / {l['p99'] / 1000:.2f}{ratio(l['p99'], lambda x: x['latency_us']['p99'])} / {l['max'] / 1000:.2f} |")
    print(f"| {label}: errors / requests, database queries | {r['errors_total']} / {r['requests']}, {r.get('db_queries', '-')} |")
    print(f"| {label}: server CPU per handshake + request + close, µs | {per}{cpu_ratio} |")
imp = by("import")
if imp:
    print(f"\nImport (this database's build): {imp[0]['count']:,} certificates in {imp[0]['import_s']:.0f} s ({imp[0]['certs_per_s']:.0f}/s).")
PY
cat "$out.md"
say "results: $out.json $out.md (logs in $T)"
