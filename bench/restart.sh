#!/usr/bin/env bash
# bench/restart.sh: the terminator restarted under load, 1,000,000 domains in the database (100,000
# servable: bench/million.sh --build-only builds them), Zipf traffic over the servable names opened
# at a steady rate (open loop). The documented zero-downtime procedure: start the new process on
# the same ports, wait for its /healthz, SIGTERM the old one. Per second over the switch: handshakes
# completed and failed (client side), p50/p99 latency, database transactions (pg_stat_database).
#   bench/restart.sh [--rate N (default: half the warm rate measured first)] [--zipf S] [--prewarm SEC]
#                    [--warm SEC] [--after SEC] [--storm SEC (0: no storms)] [--threads N]
#                    [--variants "before cold warm spare"] [--names N --real N (database size)]
#                    [--pooler]
# Variants, each from an old process warmed by --prewarm seconds of closed-loop traffic first:
#   before  the old behaviour: one query per miss, a fixed 1,000 misses/s per thread, no handover
#   cold    batched misses and the adaptive miss limit, no handover (a new host under traffic)
#   warm    the same with --hot-names-file: the old process hands its hot names to the new one
#           (written every 5 s and at SIGTERM; the new one warms up from the last list before it
#           accepts, then loads the SIGTERM list's newcomers)
#   spare   the control: a second terminator on ports of its own starts, warms up and is stopped
#           beside the old one, which keeps all the traffic (what starting and stopping a process,
#           with its database connections, costs the one serving on this machine)
# Then the cold-name cost: closed-loop storms of names never served, one query per name
# (--cert-batch-max 1) and batched, on fresh processes: server CPU, PostgreSQL CPU and database
# time per cold name. --pooler: the terminators reach PostgreSQL through PgBouncer in session mode
# with deploy/pgbouncer-tracktls.ini, as a fleet is deployed, so that a restart starts and ends no
# PostgreSQL backend on this machine, where the database shares the cores (bench/README.md).
# Writes bench/results/<date>-restart.{json,md}.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/tests/lib/pg.sh"
. "$root/tests/lib/pgbouncer.sh"

rate= zipf=1.0 prewarm=15 warm=10 after=30 storm=8 threads= names=1000000 real=100000 variants="before cold warm spare" pooler=
while [ $# -gt 0 ]; do
	case $1 in
	--rate) rate=$2; shift 2 ;;
	--zipf) zipf=$2; shift 2 ;;
	--prewarm) prewarm=$2; shift 2 ;;
	--warm) warm=$2; shift 2 ;;
	--after) after=$2; shift 2 ;;
	--storm) storm=$2; shift 2 ;;
	--threads) threads=$2; shift 2 ;;
	--variants) variants=$2; shift 2 ;;
	--names) names=$2; shift 2 ;;
	--real) real=$2; shift 2 ;;
	--pooler) pooler=pgbouncer; shift ;;
	*) sed -n '2,25p' "$0" >&2; exit 2 ;;
	esac
done

B=$root/build/bench
"$root/bench/million.sh" --build-only --names "$names" --real "$real" || exit 1
. "$root/bench/setup.sh"
bench_setup restart

PG_DIR=$B/pg BACKEND_PID= PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	[ -n "$BACKEND_PID" ] && kill "$BACKEND_PID" 2>/dev/null && wait "$BACKEND_PID" 2>/dev/null
	[ -n "$pooler" ] && pgb_stop "$T/pgb"
	pg_stop "$PG_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$T/bin" && cp "$root/bin/terminator" "$T/bin/" || exit 1
PG_PORT=$(free_port)
pg_start "$PG_DIR" "$PG_PORT" || exit 1
export TRACKTLS_MASTER_KEY_FILE=$B/master.keys
db=bench_million_$names
export TRACKTLS_DB="host=$PG_DIR port=$PG_PORT user=postgres dbname=$db"
if [ -n "$pooler" ]; then
	# the old and the new process at once, as deploy/pgbouncer-tracktls.ini sizes it
	TRACKTLS_DB=$(pgb_start "$T/pgb" "$db" "$PG_DIR" "$PG_PORT" $((2 * (threads + 4)))) || exit 1
fi
q() { psql -qAtX -v ON_ERROR_STOP=1 -d "$db" -c "$1"; }
xacts() { q "select xact_commit + xact_rollback from pg_stat_database where datname = current_database()"; }
# PostgreSQL's CPU: a snapshot of the postmaster's and its processes' clock ticks ("PID TICKS"
# lines), and the CPU seconds between two snapshots over the processes in both (the terminator's
# connections live through a storm; a process that ended in between would count negative).
pg_snap() {
	local pm p
	pm=$(head -n1 "$PG_DIR/data/postmaster.pid")
	for p in "$pm" $(pgrep -P "$pm"); do awk -v p="$p" '{ print p, $14 + $15 }' "/proc/$p/stat" 2>/dev/null; done | sort
}
pg_cpu_between() { join "$1" "$2" | awk -v hz="$(getconf CLK_TCK)" '{ s += $3 - $2 } END { printf "%.3f", s / hz }'; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.3f", ($14 + $15) / hz }' "/proc/$1/stat"; }

BACKEND_PORT=$(free_port) HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
taskset -c "$load_cpus" "$B/backend" --listen "127.0.0.1:$BACKEND_PORT" 2>"$T/backend.log" &
BACKEND_PID=$!
# Zipf rank follows the line order: a fixed shuffle, the same in every variant.
shuf --random-source=<(yes) "$B/corpus-$real/names.txt" >"$T/names.txt"
mkdir -m 1777 "$T/run"
HOT=$T/run/hot-names

# healthy PORT: /healthz answers 200. Through bash's /dev/tcp, not curl: the poll runs while the
# load is measured, and a process spawned every 50 ms takes the load generator's core.
healthy() {
	local status
	{ exec 8<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET /healthz HTTP/1.0\r\n\r\n' >&8
	read -r -t 2 _ status _ <&8
	exec 8>&-
	[ "$status" = 200 ]
}

# start_terminator METRICS_PORT FLAGS...: pid in $NEW_PID once /healthz answers 200. On the load's
# ports, or on ports of its own when SPARE_PORTS is set ("HTTPS HTTP").
start_terminator() {
	local m=$1 i https=$HTTPS_PORT http=$HTTP_PORT
	shift
	[ -n "${SPARE_PORTS:-}" ] && read -r https http <<<"$SPARE_PORTS"
	taskset -c "$srv_cpus" "$T/bin/terminator" --db "$TRACKTLS_DB" --https "127.0.0.1:$https" \
		--http "127.0.0.1:$http" --backend "127.0.0.1:$BACKEND_PORT" --threads "$threads" \
		--metrics "127.0.0.1:$m" --log-level info --allow-root "$@" >>"$T/terminator.$m.log" 2>&1 &
	NEW_PID=$!
	PIDS+=("$NEW_PID")
	for ((i = 0; i < 600; i++)); do
		healthy "$m" && return 0
		kill -0 "$NEW_PID" 2>/dev/null || break
		sleep 0.05
	done
	say "terminator on metrics port $m did not become healthy: $(tail -n2 "$T/terminator.$m.log")"
	exit 1
}
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { s += $2 } END { print s + 0 }'; }

# ---- the warm sustainable rate: closed loop on a warmed process ----
if [ -z "$rate" ]; then
	M=$(free_port)
	start_terminator "$M"
	taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$T/names.txt" --zipf "$zipf" \
		--mode handshake --concurrency 32 --threads "$load_threads" --duration 10 >/dev/null 2>>"$T/load.log"
	out=$(taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$T/names.txt" --zipf "$zipf" \
		--mode handshake --concurrency 32 --threads "$load_threads" --duration 5 --label warm-max \
		--watch-pids "$NEW_PID" 2>>"$T/load.log")
	record warm_max "$out"
	rate=$(jq -r '(.rps * 0.5) | floor' <<<"$out")
	say "warm closed-loop rate $(jq -r '.rps | floor' <<<"$out")/s: restarts run at $rate/s (half)"
	kill "$NEW_PID"; wait "$NEW_PID" 2>/dev/null
fi

# variant NAME OLD_FLAGS NEW_FLAGS: one load run of warm + after seconds; the switch at second $warm.
variant() {
	local name=$1 old_flags=$2 new_flags=$3 m_old m_new spare_ports old new t0 switch_ms x0 i
	rm -f "$HOT"
	m_old=$(free_port) m_new=$(free_port) spare_ports="$(free_port) $(free_port)"
	# shellcheck disable=SC2086
	start_terminator "$m_old" $old_flags
	old=$NEW_PID
	taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$T/names.txt" --zipf "$zipf" \
		--mode handshake --concurrency 16 --threads "$load_threads" --duration "$prewarm" >/dev/null 2>>"$T/load.log"
	# the pool opens its spare server connections while a client is connected: all open before
	# the measured seconds, as on a host that has been serving
	if [ -n "$pooler" ]; then
		for ((i = 0; i < 300; i++)); do pgb_filled "$T/pgb" "$db" && break; sleep 0.1; done
		pgb_filled "$T/pgb" "$db" || { say "the pool did not fill: $(pgb_servers "$T/pgb" "$db") server connections"; exit 1; }
	fi
	taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$T/names.txt" --zipf "$zipf" \
		--mode handshake --rate "$rate" --concurrency 512 --threads "$load_threads" --timeout 5 \
		--duration $((warm + after)) --label "$name" --timeline "$T/$name.timeline" --timeline-raw "$T/$name.raw" >"$T/$name.load" 2>>"$T/load.log" &
	local load=$!
	t0=$(date +%s%N)
	# once a second: the database's transactions, both terminators' certificate queries, and the
	# CPU of the terminators, PostgreSQL and the load generator
	python3 "$root/bench/restart_sampler.py" "$T/$name.db" "$t0" $((warm + after)) "$db" "$PG_DIR/data" \
		"$m_old" "$m_new" "$load" &
	local sampler=$!
	while [ $(($(date +%s%N) - t0)) -lt $((warm * 1000000000)) ]; do sleep 0.1; done
	switch_ms=$((($(date +%s%N) - t0) / 1000000))
	# the spare: a process started, warmed up and stopped beside the old one, which keeps all the
	# traffic: what merely starting and stopping a terminator costs the one serving
	[ "$name" = spare ] && SPARE_PORTS=$spare_ports
	# shellcheck disable=SC2086
	start_terminator "$m_new" $new_flags
	new=$NEW_PID
	SPARE_PORTS=
	local healthy_ms=$((($(date +%s%N) - t0) / 1000000))
	if [ "$name" = spare ]; then
		kill -TERM "$new"
		wait "$new"
		new=$old # the one left to stop
		wait "$load"
		wait "$sampler"
	else
		kill -TERM "$old"
		wait "$load"
		wait "$sampler"
		wait "$old"
	fi
	record "$name" "$(jq -c --argjson sw "$switch_ms" --argjson h "$healthy_ms" \
		--argjson thr "$(metric "$m_new" 'tracktls_client_hello_refused_total{reason="throttled"}')" \
		--argjson ce "$(metric "$m_new" 'tracktls_client_hello_refused_total{reason="certificate_error"}')" \
		--argjson miss "$(metric "$m_new" tracktls_cert_cache_misses_total)" \
		--argjson dq "$(metric "$m_new" tracktls_db_queries_total)" \
		--argjson pq "$(metric "$m_new" tracktls_handover_prefetch_queries_total)" \
		--argjson pl "$(metric "$m_new" 'tracktls_handover_prefetch_names_total{result="loaded"}')" \
		--argjson bn "$(metric "$m_new" tracktls_db_cert_batched_names_total)" \
		--argjson bb "$(metric "$m_new" tracktls_db_cert_batches_total)" \
		--argjson wu "$(sed -n 's/.*event=warm_up_done ms=\([0-9]*\) .*/\1/p' "$T/terminator.$m_new.log" | head -n1 | grep . || echo null)" \
		--slurpfile tl "$T/$name.timeline" --slurpfile dbs "$T/$name.db" \
		--argjson fine "$(python3 "$root/bench/restart_report.py" --fine "$T/$name.raw")" \
		'. + {switch_ms:$sw, new_healthy_ms:$h, new:{throttled:$thr, certificate_errors:$ce, cache_misses:$miss,
		  db_queries:$dq, prefetch_queries:$pq, prefetch_loaded:$pl, batches:$bb, batched_names:$bn, warm_up_ms:$wu},
		  timeline:$tl, db_per_second:$dbs, fine:$fine}' <"$T/$name.load")"
	say "$name: $(jq -r '"\(.requests) ok, \(.errors_total) errors; new process: \(.new.throttled) throttled, \(.new.certificate_errors) certificate errors, \(.new.cache_misses) misses, \(.new.db_queries) queries, \(.new.prefetch_loaded) prefetched in \(.new.prefetch_queries) queries"' <<<"$(tail -n1 "$RESULTS")")"
	kill -TERM "$new"
	wait "$new"
}
for v in $variants; do
	case $v in
	# the old behaviour: no warm-up either (it listened at once)
	before) variant before "--cert-batch-max 1 --max-misses-per-sec 1000 --miss-latency-limit 0 --max-pending-misses 4096 --warm-up-limit 0" \
		"--cert-batch-max 1 --max-misses-per-sec 1000 --miss-latency-limit 0 --max-pending-misses 4096 --warm-up-limit 0" ;;
	cold) variant cold "" "" ;;
	spare) variant spare "" "" ;;
	warm) variant warm "--hot-names-file $HOT --hot-names-interval 5s" "--hot-names-file $HOT --hot-names-interval 5s" ;;
	*) say "unknown variant $v"; exit 2 ;;
	esac
done

# ---- cold-name cost: a storm of names never served, closed loop, one query per name vs batched ----
tail -n +$((real / 2)) "$T/names.txt" >"$T/storm-names.txt"
storm_pass() { # NAME BATCH_MAX FIRST_LINE
	local name=$1 batch=$2 m out
	sed -n "$3,\$p" "$T/storm-names.txt" >"$T/$name.names"
	m=$(free_port)
	# no latency limit: the storm measures what a cold name costs, not which ones are refused
	start_terminator "$m" --cert-batch-max "$batch" --miss-latency-limit 0
	pg_snap >"$T/$name.pg0"
	x0=$(xacts)
	out=$(taskset -c "$load_cpus" "$B/load" --connect "127.0.0.1:$HTTPS_PORT" --names "$T/$name.names" --sequential \
		--mode handshake --concurrency 64 --threads "$load_threads" --duration "$storm" --label "$name" \
		--watch-pids "$NEW_PID" 2>>"$T/load.log")
	pg_snap >"$T/$name.pg1"
	x1=$(xacts)
	record "$name" "$(jq -c --argjson pg "$(pg_cpu_between "$T/$name.pg0" "$T/$name.pg1")" --argjson x "$((x1 - x0 - 1))" \
		--argjson miss "$(metric "$m" tracktls_cert_cache_misses_total)" \
		--argjson dq "$(metric "$m" tracktls_db_queries_total)" \
		--argjson dqs "$(metric "$m" tracktls_db_query_seconds_total)" \
		--argjson bb "$(metric "$m" tracktls_db_cert_batches_total)" \
		--argjson bn "$(metric "$m" tracktls_db_cert_batched_names_total)" \
		--argjson thr "$(metric "$m" 'tracktls_client_hello_refused_total{reason="throttled"}')" \
		'. + {batch_max:'"$batch"', pg_cpu_s:$pg, xacts:$x, cache_misses:$miss, db_queries:$dq, db_query_s:$dqs,
		  batches:$bb, batched_names:$bn, throttled:$thr}' <<<"$out")"
	say "$name: $(jq -r '"\(.rps|floor)/s, \(.cache_misses) misses in \(.db_queries) queries, server CPU \(.server_cpu_s) s, PostgreSQL CPU \(.pg_cpu_s) s"' <<<"$(tail -n1 "$RESULTS")")"
	kill -TERM "$NEW_PID"
	wait "$NEW_PID"
}
if [ "$storm" -gt 0 ]; then
	storm_pass storm-single 1 1
	storm_pass storm-batched 128 25001
fi

mkdir -p "$root/bench/results"
out=$root/bench/results/$(date -u +%Y-%m-%d)-restart${RESTART_SUFFIX:+-$RESTART_SUFFIX}
jq -s --arg date "$(date -u +%Y-%m-%dT%H:%M:%SZ)" --arg cpu "$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)" \
	--argjson cores "$ncpu" --arg terminator "$(git -C "$root" log -1 --format='%h %cs')" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--argjson names "$names" --argjson real "$real" --argjson threads "$threads" --argjson rate "$rate" \
	--argjson warm "$warm" --argjson after "$after" --argjson zipf "$zipf" --argjson prewarm "$prewarm" \
	--arg pooler "$pooler" \
	'{date:$date, machine:{cores:$cores, cpu:$cpu, loadavg_at_end:$load}, terminator:$terminator,
	  setup:{names:$names, real:$real, rate:$rate, zipf:$zipf, prewarm_s:$prewarm, warm_s:$warm, after_s:$after, threads:$threads,
	         pooler:$pooler}, runs:.}' \
	"$RESULTS" >"$out.json"
python3 "$root/bench/restart_report.py" "$out.json" >"$out.md"
cat "$out.md"
say "results: $out.json $out.md (logs in $T)"
