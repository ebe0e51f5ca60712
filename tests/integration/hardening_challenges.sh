#!/usr/bin/env bash
# HTTP-01 on port 80 costs the database nothing an attacker can choose: the live tokens are held in
# memory, fed by NOTIFY tracktls_challenge. 200 random tokens are answered 404 without one query; a
# challenge written to the database is answered with its key authorization; and a challenge query
# stuck behind a lock (on the token set's own connection) neither fails nor delays a certificate
# load on the same thread (--threads 1), where it used to share the thread's connection and fail
# every load queued behind it when it timed out.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
for n in a.test b.test; do make_cert "$n" || fail "make_cert $n"; done
sql() { psql -qAtX -d "$TRACKTLS_DB" -c "$1"; }
check "terminator starts (one thread: challenges and certificates share its loop)" \
	start_terminator --threads 1 --db-timeout 1s
H="http://127.0.0.1:$HTTP_PORT"
trusted() { test "$(metric tracktls_acme_challenge_set_trusted)" = 1; }
check "the token set is read and listening" wait_until 10 trusted

q0=$(metric tracktls_db_queries_total) c0=$(metric 'tracktls_acme_challenge_queries_total{kind="fetch"}')
s0=$(metric 'tracktls_acme_challenge_queries_total{kind="scan"}')
urls=()
for i in $(seq 1 200); do
	urls+=(-o /dev/null "$H/.well-known/acme-challenge/$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')")
done
codes=$(curl -s -w '%{http_code}\n' "${urls[@]}" | sort | uniq -c | xargs)
check "200 random tokens: all 404 ($codes)" test "$codes" = "200 404"
check "  ... without a database query (tracktls_db_queries_total stays $q0)" test "$(metric tracktls_db_queries_total)" = "$q0"
check "  ... nor one by the token set" test \
	"$(metric 'tracktls_acme_challenge_queries_total{kind="fetch"}') $(metric 'tracktls_acme_challenge_queries_total{kind="scan"}')" = "$c0 $s0"
check "  ... counted as unknown" test "$(metric 'tracktls_acme_challenge_lookups_total{result="unknown"}')" -ge 200

sql "insert into challenges (token, key_authorization, domain_id, expires_at)
	select 'real_Tok-1', 'real_Tok-1.thumbprint', id, now() + interval '1 hour' from domains where name = 'a.test'" >/dev/null
answer() { curl -s -w ' %{http_code}' "$H/.well-known/acme-challenge/real_Tok-1"; }
got_it() { test "$(answer)" = "real_Tok-1.thumbprint 200"; }
check "a challenge written to the database is answered with its key authorization" wait_until 5 got_it
check "  ... the set fetched its row once, on its NOTIFY" \
	test "$(metric 'tracktls_acme_challenge_queries_total{kind="fetch"}')" = $((c0 + 1))
check "  ... still no query on the loop's connection" test "$(metric tracktls_db_queries_total)" = "$q0"
sql "delete from challenges where token = 'real_Tok-1'" >/dev/null
gone() { test "$(curl -s -o /dev/null -w '%{http_code}' "$H/.well-known/acme-challenge/real_Tok-1")" = 404; }
check "  ... and 404 once deleted" wait_until 5 gone

# A challenge query stuck behind a lock on the challenges table.
psql -qAtX -d "$TRACKTLS_DB" -c "begin; lock table challenges in access exclusive mode; select pg_sleep(120)" >/dev/null 2>&1 &
LOCKER=$!
locked() { test "$(sql "select count(*) from pg_locks where relation = 'challenges'::regclass and mode = 'AccessExclusiveLock' and granted")" = 1; }
check "a transaction holds an ACCESS EXCLUSIVE lock on challenges" wait_until 10 locked
sql "select pg_notify('tracktls_challenge', 'stuck_Tok')" >/dev/null
curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 10 "$H/.well-known/acme-challenge/stuck_Tok" >"$T/stuck.out" &
STUCK=$!
start=$(date +%s%N)
subject=$(served b.test subject)
ms=$(( ($(date +%s%N) - start) / 1000000 ))
check "meanwhile b.test, loaded on the same thread, is served ($subject, ${ms} ms)" test "$subject" = "subject=CN = b.test"
check "  ... without a query timeout or error on the loop's connection" \
	test "$(metric tracktls_db_query_timeouts_total) $(metric tracktls_db_query_errors_total)" = "0 0"
wait "$STUCK"
read -r code t <"$T/stuck.out"
check "the stuck token's request gets 503 at the 1 s query timeout ($code after ${t}s)" \
	awk -v c="$code" -v t="$t" 'BEGIN { exit !(c == 503 && t >= 0.9 && t < 3) }'
check "  ... counted as a timeout" test "$(metric 'tracktls_acme_challenge_lookups_total{result="timeout"}')" -ge 1
sql "select pg_cancel_backend(pid) from pg_stat_activity where datname = current_database() and query like '%pg_sleep(120)%' and pid <> pg_backend_pid()" >/dev/null
wait "$LOCKER" 2>/dev/null
check "the lock gone, the set is trusted again" wait_until 10 trusted
stuck_is_404() { test "$(curl -s -o /dev/null -w '%{http_code}' "$H/.well-known/acme-challenge/stuck_Tok")" = 404; }
check "  ... and the stuck token, which has no row, is 404" wait_until 5 stuck_is_404
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
