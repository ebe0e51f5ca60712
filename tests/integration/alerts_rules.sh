#!/usr/bin/env bash
# The alert rules load (promtool check rules), the scrape configuration is valid (promtool check
# config) and every alert fires on the synthetic series that should page and stays quiet on the
# others (promtool test rules deploy/prometheus/alerts_test.yml).
. "$TT_ROOT/tests/lib/common.sh"

P=$TT_ROOT/deploy/prometheus
promtool check rules "$P/alerts.yml" >"$T/check.log" 2>&1
check "promtool check rules accepts alerts.yml" test $? = 0
cat "$T/check.log"
promtool check config --syntax-only "$P/prometheus.yml" >"$T/config.log" 2>&1
check "promtool check config accepts prometheus.yml" test $? = 0
promtool test rules "$P/alerts_test.yml" >"$T/test.log" 2>&1
check "promtool test rules passes alerts_test.yml" test $? = 0
cat "$T/test.log"
# Every alert is tested both ways: a case where it fires and one where it does not.
python3 - "$P/alerts.yml" "$P/alerts_test.yml" >"$T/coverage" <<'PY'
import sys, yaml
alerts = [r["alert"] for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"] if "alert" in r]
fires, quiet = set(), set()
for t in yaml.safe_load(open(sys.argv[2]))["tests"]:
    for a in t.get("alert_rule_test", []):
        (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
for a in alerts:
    print(a, "fires" if a in fires else "NOT-TESTED-FIRING", "quiet" if a in quiet else "NOT-TESTED-QUIET")
PY
while read -r name f q; do
	check "$name: a test where it fires and one where it stays quiet" test "$f $q" = "fires quiet"
done <"$T/coverage"
check "alerts.yml has alerts ($(wc -l <"$T/coverage"))" test "$(wc -l <"$T/coverage")" -ge 9
# A runbook line in the README for each alert.
while read -r name _; do
	check "README has a runbook line for $name" grep -q "^| \`$name\` |" "$TT_ROOT/README.md"
done <"$T/coverage"
