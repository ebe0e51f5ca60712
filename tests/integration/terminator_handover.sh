#!/usr/bin/env bash
# Warm restart: the outgoing terminator hands its hot names (names only) to the incoming one
# through --hot-names-file; the incoming one loads them in a batch and serves them without a
# query per name. Then a restart while PostgreSQL is down: the old one drains, the new one starts
# and answers misses as without a handover, and loads the hot names once the database is back.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

private_pg "$T/pg" handover
tt_setup_db
start_backend
NAMES=(h1 h2 h3 h4 h5 h6 h7 h8 h9 h10 h11 h12)
for n in "${NAMES[@]}"; do make_cert "$n.test" || fail "make_cert $n.test"; done
# The processes run as nobody: the file's folder must be theirs to write.
mkdir -m 1777 "$T/run"
HOT=$T/run/hot-names
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
# start_on METRICS_PORT [--no-wait]: a terminator on the shared ports; its pid in $NEW_PID.
start_on() {
	bg "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$1" --threads 2 --user nobody \
		--db-timeout 500ms --hot-names-file "$HOT" --hot-names-interval 0 >>"$T/terminator.$1.log" 2>&1
	NEW_PID=$!
	[ "${2:-}" = --no-wait ] && { wait_until 15 curl -s "http://127.0.0.1:$1/healthz"; return; }
	wait_until 15 curl -sf "http://127.0.0.1:$1/healthz"
}
mval() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
serves() { [ "$(served "$1" subject)" = "subject=CN = $1" ]; }
all_served() { local n; for n in "${NAMES[@]}"; do serves "$n.test" || return 1; done; }

A=$(free_port)
check "first terminator starts" start_on "$A"
A_PID=$NEW_PID
check "it serves every name (each loaded on first use)" all_served
for _ in 1 2 3 4; do served h7.test subject >/dev/null; done
check "  ... all cached" test "$(mval "$A" tracktls_cert_cache_entries)" = "${#NAMES[@]}"

B=$(free_port)
check "second terminator starts on the same ports" start_on "$B"
B_PID=$NEW_PID
check "  ... with an empty cache" test "$(mval "$B" tracktls_cert_cache_entries)" = 0
kill -TERM "$A_PID"
wait "$A_PID"; rc=$?
check "the old one drains and exits 0 ($rc)" test "$rc" = 0
check "  ... having written its hot names" grep -q "event=hot_names_written .*names=${#NAMES[@]}" "$T/terminator.$A.log"

# The file: a header, then the names, hottest first, and nothing else.
check "hot-names file: header line" grep -qE "^# tracktls hot names v1 pid=$A_PID written=[0-9T:-]+Z names=${#NAMES[@]}$" <(head -n1 "$HOT")
check "hot-names file: the hottest name first" test "$(sed -n 2p "$HOT")" = h7.test
check "hot-names file: exactly the names served" \
	test "$(tail -n +2 "$HOT" | sort)" = "$(printf '%s.test\n' "${NAMES[@]}" | sort)"
check "hot-names file: no key material (no PEM, no line of any key or certificate)" \
	bash -c "! grep -qiE 'BEGIN|PRIVATE|KEY' '$HOT' && ! grep -qFx -f <(cat '$T'/*.test.key '$T'/*.test.pem | grep -v -- -----) '$HOT'"
# Not `tail | grep -q`: under pipefail, tail cut off by grep's early exit would fail the pipeline,
# and the negation would pass a file with a line that is not a name.
only_names() { ! grep -qvE '^[a-z0-9.-]+$' < <(tail -n +2 "$HOT"); }
check "hot-names file: only host names" only_names

loaded() { test "$(mval "$B" "tracktls_handover_prefetch_names_total{result=\"loaded\"}")" = "$1"; }
check "the new one prefetched every hot name" wait_until 20 loaded "${#NAMES[@]}"
check "  ... in one query" test "$(mval "$B" tracktls_handover_prefetch_queries_total)" = 1
check "  ... read one file" test "$(mval "$B" tracktls_handover_files_read_total)" = 1
misses0=$(mval "$B" tracktls_cert_cache_misses_total) q0=$(mval "$B" tracktls_db_queries_total)
check "the new one serves every hot name" all_served
check "  ... without a cache miss ($(mval "$B" tracktls_cert_cache_misses_total) after $misses0)" \
	test "$(mval "$B" tracktls_cert_cache_misses_total)" = "$misses0"
check "  ... and without a query per name ($(mval "$B" tracktls_db_queries_total) after $q0)" \
	test "$(mval "$B" tracktls_db_queries_total)" = "$q0"

# ---- restart with the database down ----
pg_stop "$T/pg"
check "PostgreSQL is down" test ! -S "$T/pg/.s.PGSQL.5432"
check "B still serves its cached names with the database down" serves h3.test
C=$(free_port)
check "a third terminator starts with the database down" start_on "$C" --no-wait
C_PID=$NEW_PID
check "  ... and stays up" kill -0 "$C_PID"
kill -TERM "$B_PID"
wait "$B_PID"; rc=$?
check "B drains and exits 0 with the database down ($rc)" test "$rc" = 0
check "  ... nothing closed early" grep -q "event=drained .*closed_early=0" "$T/terminator.$B.log"
check "  ... and hands over its hot names" grep -qE "^# tracktls hot names v1 pid=$B_PID " <(head -n1 "$HOT")
start=$(date +%s%N)
curl -s -o /dev/null --max-time 10 --cacert "$T/h2.test.pem" --resolve "h2.test:$HTTPS_PORT:127.0.0.1" \
	"https://h2.test:$HTTPS_PORT/"; rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
check "a name C cannot load fails the handshake as without a handover (curl $rc)" test "$rc" = 35
check "  ... fast (${ms} ms, under 2 s)" test "$ms" -lt 2000
cert_errors() { test "$(mval "$C" 'tracktls_client_hello_refused_total{reason="certificate_error"}')" -ge 1; }
check "  ... counted" wait_until 5 cert_errors
check "C says the database is unavailable to its prefetcher" wait_until 10 grep -q "event=handover_db_unavailable" "$T/terminator.$C.log"
pg_start "$T/pg" 5432 >/dev/null
Cloaded() { test "$(mval "$C" "tracktls_handover_prefetch_names_total{result=\"loaded\"}")" = "${#NAMES[@]}"; }
check "once the database is back, C prefetches the hot names" wait_until 30 Cloaded
misses0=$(mval "$C" tracktls_cert_cache_misses_total)
check "  ... and serves them" all_served
check "  ... from the cache, without a miss" test "$(mval "$C" tracktls_cert_cache_misses_total)" = "$misses0"
kill -TERM "$C_PID"
wait "$C_PID"; rc=$?
check "C stops with exit 0" test "$rc" = 0

# ---- a new host: no process to hand over from; it starts from a copy of a peer's file ----
mkdir -m 1777 "$T/newhost"
cp "$HOT" "$T/newhost/hot-names"
D=$(free_port) D_HTTPS=$(free_port)
bg "$TT_BIN/terminator" --https "127.0.0.1:$D_HTTPS" --http "127.0.0.1:$(free_port)" \
	--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$D" --threads 2 --user nobody \
	--hot-names-file "$T/newhost/hot-names" --hot-names-interval 0 >>"$T/terminator.$D.log" 2>&1
D_PID=$!
check "a new host starts alone with a peer's hot-names file" wait_until 15 curl -sf "http://127.0.0.1:$D/healthz"
check "  ... and listens at once (nobody else serves its address)" grep -q "event=listening" "$T/terminator.$D.log"
Dloaded() { test "$(mval "$D" "tracktls_handover_prefetch_names_total{result=\"loaded\"}")" = "${#NAMES[@]}"; }
check "  ... prefetches the peer's hot names" wait_until 20 Dloaded
misses0=$(mval "$D" tracktls_cert_cache_misses_total)
served_on_d() {
	local n
	for n in "${NAMES[@]}"; do
		[ "$(HTTPS_PORT=$D_HTTPS served "$n.test" subject)" = "subject=CN = $n.test" ] || return 1
	done
}
check "  ... and serves them" served_on_d
check "  ... from the cache, without a miss" test "$(mval "$D" tracktls_cert_cache_misses_total)" = "$misses0"
kill -TERM "$D_PID"
wait "$D_PID"
