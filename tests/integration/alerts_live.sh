#!/usr/bin/env bash
# A real Prometheus, configured from deploy/prometheus/prometheus.yml and alerts.yml, scrapes a
# running terminator and the issuer's textfile through node_exporter's textfile collector; every
# series a rule or a dashboard query names (with its label matchers) must exist in what it scraped,
# so a renamed metric or label value fails here instead of silencing an alert. The issuer's file
# comes from a real run whose CA cannot be reached (exit 2, written all the same).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

P=$TT_ROOT/deploy/prometheus
tt_setup_db
start_backend
make_cert a.test || fail "make_cert a.test"
check "terminator starts" start_terminator
check "  ... and serves a.test" test "$(served a.test subject)" = "subject=CN = a.test"

mkdir -p "$T/textfile"
"$TT_BIN/issuer" run --directory "http://127.0.0.1:$(free_port)/dir" --metrics-file "$T/textfile/tracktls_issuer.prom" \
	>"$T/issuer.log" 2>&1
rc=$?
check "an issuer run without a CA exits 2" test "$rc" = 2
check "  ... and still writes its textfile, saying so" grep -qx 'tracktls_issuer_exit_status 2' "$T/textfile/tracktls_issuer.prom"

NODE_PORT=$(free_port)
bg prometheus-node-exporter --web.listen-address="127.0.0.1:$NODE_PORT" --collector.disable-defaults \
	--collector.textfile --collector.textfile.directory="$T/textfile" >"$T/node_exporter.log" 2>&1
check "node_exporter serves the textfile" wait_until 15 bash -c "curl -sf http://127.0.0.1:$NODE_PORT/metrics | grep -q '^tracktls_issuer_exit_status 2'"

# The deployed configuration, its targets pointed here and its intervals shortened.
PROM_PORT=$(free_port)
python3 - "$P/prometheus.yml" "$P/alerts.yml" "$T/prometheus.yml" "127.0.0.1:$METRICS_PORT" "127.0.0.1:$NODE_PORT" <<'PY'
import sys, yaml
src, rules, out, term, node = sys.argv[1:]
cfg = yaml.safe_load(open(src))
cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
cfg["rule_files"] = [rules]
targets = {"tracktls-terminator": term, "tracktls-issuer": node}
assert sorted(j["job_name"] for j in cfg["scrape_configs"]) == sorted(targets), "jobs changed: update this test"
for j in cfg["scrape_configs"]:
    j["static_configs"] = [{"targets": [targets[j["job_name"]]]}]
yaml.safe_dump(cfg, open(out, "w"))
PY
bg prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/prom-data" \
	--web.listen-address="127.0.0.1:$PROM_PORT" >"$T/prometheus.log" 2>&1
check "Prometheus starts with the deployed configuration and rules" wait_until 30 curl -sf "http://127.0.0.1:$PROM_PORT/-/ready"

# promq EXPR: the number of series an instant query returns (-1 on an error).
promq() {
	curl -s --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
		python3 -c 'import json, sys; r = json.load(sys.stdin); print(len(r["data"]["result"]) if r.get("status") == "success" else -1)'
}
both_up() { test "$(promq 'up{job=~"tracktls-terminator|tracktls-issuer"} == 1')" = 2; }
check "Prometheus scrapes the terminator and the issuer's textfile (both targets up)" wait_until 30 both_up

# Every vector selector in the rules and the dashboard, Grafana's variables filled in.
python3 - "$P/alerts.yml" "$P/dashboard.json" >"$T/selectors" <<'PY'
import json, re, sys, yaml
exprs = [r["expr"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]]
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "expr": exprs.append(v)
            else: walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(json.load(open(sys.argv[2])))
sel = set()
for e in exprs:
    e = e.replace("$__rate_interval", "5m").replace('=~"$instance"', '=~".*"')
    for m in re.finditer(r'(?<![\w:])(tracktls_[a-z0-9_]+|up)(?![\w(])(\{[^}]*\})?', e):
        sel.add(m.group(1) + (m.group(2) or ""))
print("\n".join(sorted(sel)))
PY
check "the rules and dashboard name series ($(wc -l <"$T/selectors"))" test "$(wc -l <"$T/selectors")" -ge 20
# One query per selector, from one process (each retried for a few seconds: the first scrape of a
# target may still be on its way).
python3 - "http://127.0.0.1:$PROM_PORT" "$T/selectors" <<'PY'
import json, sys, time, urllib.parse, urllib.request
base, path = sys.argv[1:]
def count(sel):
    q = urllib.parse.urlencode({"query": "count(%s)" % sel})
    r = json.load(urllib.request.urlopen(base + "/api/v1/query?" + q, timeout=5))
    return len(r["data"]["result"]) if r.get("status") == "success" else -1
for sel in open(path).read().split():
    deadline = time.time() + 5
    while count(sel) != 1 and time.time() < deadline:
        time.sleep(0.2)
    print("%s: scraped: %s" % ("PASS" if count(sel) == 1 else "FAIL", sel))
PY

# Every rule evaluates without an error against the real series.
rules_ok() {
	curl -s "http://127.0.0.1:$PROM_PORT/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
sys.exit(0 if rules and all(r.get("health") == "ok" for r in rules) else 1)'
}
check "every rule evaluates cleanly (health ok)" wait_until 10 rules_ok
# grep reads a here-string, not a pipe: under pipefail a writer cut off by grep -q's early exit
# (SIGPIPE) would fail the pipeline, and a check that negates it would pass.
firing() { grep -q "\"alertname\":\"$1\"" <<<"$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/alerts")"; }
check "the exit-2 run makes TracktlsIssuerRunFailed pending" wait_until 10 firing TracktlsIssuerRunFailed
check "a healthy terminator raises no TracktlsUnhealthy" test "$(promq 'ALERTS{alertname="TracktlsUnhealthy"}')" = 0
