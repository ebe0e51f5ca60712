#!/usr/bin/env bash
# Time from `issuer domain add` to the domain's https_ready event: N domains added one every
# GAP ms while one `issuer run --linger` waits, against Pebble (PEBBLE_VA_NOSLEEP=1) with
# bin/terminator in the path (it answers HTTP-01 from the database and serves the certificate
# the served check handshakes with). Writes bench/results/<date>-https-ready.{json,md}.
#   bench/https_ready.sh [--names N] [--gap-ms MS] [--cron-period S] [--keep]
# Both figures come from this one run's domain_events (the database's clock): `added` -> `https_ready`
# with lingering; for a plain cron schedule without lingering (every --cron-period s, default 300)
# each measured latency gets the wait for the next run added, a uniform draw over the period
# (a domain added at a random moment waits on average half a period), combined over all pairs.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
names=100 gap_ms=100 period=300 keep=
while [ $# -gt 0 ]; do
	case $1 in
	--names) names=$2; shift 2 ;;
	--gap-ms) gap_ms=$2; shift 2 ;;
	--cron-period) period=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) sed -n '2,10p' "$0" >&2; exit 2 ;;
	esac
done
I=$root/bin/issuer
[ -x "$I" ] && [ -x "$root/bin/terminator" ] || { echo "https_ready: build bin/issuer and bin/terminator (make)" >&2; exit 1; }
T=$(mktemp -d /tmp/tracktls-https-ready.XXXXXX)
chmod 755 "$T"
. "$root/tests/lib/pg.sh"
. "$root/tests/lib/pebble.sh"
. "$root/tests/lib/ports.sh"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
	pebble_stop "$T/pebble"
	pg_stop "$T/pg"
	[ -n "$keep" ] || rm -rf "$T"
}
trap cleanup EXIT

pg_start "$T/pg" "$(free_port)" >/dev/null || exit 1
export TRACKTLS_DB=$(pg_newdb https_ready) TRACKTLS_MASTER_KEY_FILE=$T/keys
"$I" keys generate >/dev/null && "$I" db migrate >/dev/null || exit 1
HTTP=$(free_port) HTTPS=$(free_port)
pebble_ports
pebble_start "$T/pebble" "$HTTP" || exit 1
"$root/bin/terminator" --http "127.0.0.1:$HTTP" --https "127.0.0.1:$HTTPS" --backend "127.0.0.1:$(free_port)" \
	--threads 1 --negative-ttl 100ms --allow-root 2>"$T/terminator.log" & PIDS+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$HTTPS) 2>/dev/null && break; sleep 0.05; done
export TRACKTLS_ACME_DIRECTORY=$PEBBLE_DIRECTORY TRACKTLS_ACME_CA_FILE=$PEBBLE_CA
export TRACKTLS_HTTPS_CHECK_VIA=127.0.0.1:$HTTPS TRACKTLS_HTTPS_CHECK_CA_FILE=$PEBBLE_ROOT

# the account is created by a warm-up run on one name, outside the measurement
"$I" domain add warmup.bench.test >/dev/null
"$I" run --self-check-via "127.0.0.1:$HTTP" 2>"$T/warmup.log" || { echo "https_ready: warm-up run failed" >&2; tail -3 "$T/warmup.log" >&2; exit 1; }

linger=$((names * gap_ms / 1000 + 60))
"$I" run --self-check-via "127.0.0.1:$HTTP" --linger "$linger" 2>"$T/run.log" & run=$!
PIDS+=($run)
for _ in $(seq 200); do grep -q event=lingering "$T/run.log" && break; sleep 0.05; done
gap=$(awk -v m="$gap_ms" 'BEGIN{printf "%.3f", m/1000}')
for i in $(seq 1 "$names"); do
	"$I" domain add "b$i.bench.test" >/dev/null &
	sleep "$gap"
done
wait_ready() { test "$(psql -qAtX -d "$TRACKTLS_DB" -c "SELECT count(*) FROM domain_events WHERE kind = 'https_ready' AND name LIKE 'b%'")" -ge "$names"; }
for _ in $(seq 1200); do wait_ready && break; sleep 0.1; done
kill -TERM "$run"; wait "$run"
"$I" events --json >"$T/events.json"

date=$(date -u +%Y-%m-%d)
mkdir -p "$root/bench/results"
python3 - "$T/events.json" "$names" "$gap_ms" "$period" "$root/bench/results/$date-https-ready" <<'PY'
import json, sys, datetime, statistics
path, names, gap_ms, period, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
t = lambda s: datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
ev = {}
for line in open(path):
    e = json.loads(line)
    if e["name"].startswith("b"):
        ev.setdefault(e["name"], {})[e["kind"]] = t(e["at"])
lat = sorted(v["https_ready"] - v["added"] for v in ev.values() if "https_ready" in v and "added" in v)
def pct(xs, p):
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
# Cron without lingering: the wait for the next run is uniform over the period; every measured
# latency (order + store + served check) is combined with waits at 1 s steps over the period.
cron = sorted(w + l for w in range(period) for l in lat)
res = {
    "domains": names, "ready": len(lat), "gap_ms": gap_ms,
    "linger_p50_s": round(pct(lat, 50), 3), "linger_p99_s": round(pct(lat, 99), 3),
    "linger_max_s": round(lat[-1], 3) if lat else None, "linger_mean_s": round(statistics.mean(lat), 3) if lat else None,
    "cron_period_s": period, "cron_p50_s": round(pct(cron, 50), 1), "cron_p99_s": round(pct(cron, 99), 1),
    "pebble_va_nosleep": 1, "terminator_in_path": True,
}
res["p99_ratio_cron_over_linger"] = round(res["cron_p99_s"] / res["linger_p99_s"], 1) if lat else None
open(out + ".json", "w").write(json.dumps(res, indent=2) + "\n")
md = f"""# https_ready latency, {datetime.date.today()}

{names} domains added one every {gap_ms} ms while one `issuer run --linger` waited; Pebble 2.4 with
PEBBLE_VA_NOSLEEP=1, bin/terminator answering HTTP-01 and serving the certificates the served check
handshakes with; times from `domain_events` (`added` -> `https_ready`, the database's clock).

| schedule | p50 | p99 | max |
|---|---|---|---|
| lingering run (`--linger`) | {res['linger_p50_s']} s | {res['linger_p99_s']} s | {res['linger_max_s']} s |
| cron every {period} s, no lingering (modelled) | {res['cron_p50_s']} s | {res['cron_p99_s']} s | {period + lat[-1]:.1f} s |

{len(lat)} of {names} domains reached https_ready. The cron row is not a second run: each measured
latency above is added to a wait for the next cron start drawn uniformly over the period (every
whole second of it, all pairs), which is what a domain added at a random moment sees; it flatters
cron slightly, as a cron run that finds many domains due works through them in turn.
"""
open(out + ".md", "w").write(md)
print(json.dumps(res))
PY
