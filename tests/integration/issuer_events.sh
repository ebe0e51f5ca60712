#!/usr/bin/env bash
# The platform's contract over a whole life cycle: domain_status moves pending -> active (served)
# -> removed, and domain_events records added, validating, issued, https_ready, renewing, renewed,
# removed: in order, each once, with consecutive ids, printed by `issuer events` from any id on.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
status() { q "select state, https_ready, coalesce(reason, '-') from domain_status where name = '$1'"; }

$I domain add life.test --owner cust-9 >/dev/null
check "added: pending, not https_ready, no reason" test "$(status life.test)" = "pending|f|-"
json=$($I domain show life.test --json)
check "domain show --json prints exactly the view's fields" python3 -c '
import json, sys
d = json.loads(sys.argv[1])
assert list(d) == ["name", "owner", "state", "https_ready", "reason", "detail", "serial", "not_after", "renew_at", "since"], list(d)
assert d["owner"] == "cust-9" and d["https_ready"] is False and d["since"].endswith("Z"), d' "$json"

$I run --self-check-via "127.0.0.1:$HTTP" --metrics-file "$T/m.prom" 2>"$T/run1.log"; rc=$?
check "run issues it (exit 0)" test "$rc" = 0
check "issued and served: active, https_ready, no reason" test "$(status life.test)" = "active|t|-"
serial1=$(q "select serial from domain_status where name = 'life.test'")
check "the view's serial is the stored certificate's" test "$serial1" = "$(q "select c.serial from certificates c join domains d on c.id = d.current_cert_id where d.name = 'life.test'")"
check "  ... and the one the terminator serves" bash -c "echo | openssl s_client -connect 127.0.0.1:$HTTPS -servername life.test 2>/dev/null | openssl x509 -noout -serial | grep -qix 'serial=$serial1'"
check "metrics: nothing stored but not served" grep -qx "tracktls_issuer_domains_not_served 0" "$T/m.prom"
json=$($I domain list --json)
check "domain list --json: the same fields, one object per domain" python3 -c '
import json, sys
l = json.loads(sys.argv[1])
assert len(l) == 1 and l[0]["state"] == "active" and l[0]["https_ready"] is True and l[0]["renew_at"] and l[0]["not_after"], l' "$json"

q "update domains set next_attempt_at = now() where name = 'life.test'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run2.log"; rc=$?
serial2=$(q "select serial from domain_status where name = 'life.test'")
check "renewal: a new serial, active, still https_ready" bash -c "test $rc = 0 && test '$serial2' != '$serial1' && test '$(status life.test)' = 'active|t|-'"

$I domain remove life.test >/dev/null
check "removed: state removed, not https_ready" test "$(status life.test)" = "removed|f|-"

$I events --json >"$T/events.json"
check "events: the full life cycle in order, each once, consecutive ids" python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
kinds = [e["kind"] for e in ev]
assert kinds == ["added", "validating", "issued", "https_ready", "renewing", "renewed", "removed"], kinds
ids = [e["id"] for e in ev]
assert ids == list(range(ids[0], ids[0] + len(ids))), ids
assert all(e["name"] == "life.test" and e["owner"] == "cust-9" and e["at"].endswith("Z") for e in ev), ev
assert list(ev[0]) == ["id", "name", "owner", "kind", "reason", "detail", "at"], list(ev[0])' "$T/events.json"
third=$(sed -n 3p "$T/events.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
check "events --since ID prints only the later ones" test "$($I events --since "$third" | awk '{print $3}' | tr '\n' ' ')" = "https_ready renewing renewed removed "
check "nothing else was recorded" \
	test "$(q "select count(*) from domain_events")" = 7

q "update domain_events set at = now() - interval '31 days' where kind = 'added'" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run3.log"
check "a run prunes events older than 30 days" test "$(q "select string_agg(kind, ',' order by id) from domain_events limit 1")" = "validating,issued,https_ready,renewing,renewed,removed"
$I run --events-retention 1s 2>"$T/run4.log"
check "--events-retention bounds what is kept" bash -c "test \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"select count(*) from domain_events where at < now() - interval '1 second'\")\" = 0"
$I run --events-retention soon >/dev/null 2>&1; rc=$?
check "a bad --events-retention is refused (exit 2)" test "$rc" = 2
