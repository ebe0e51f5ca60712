#!/usr/bin/env bash
# A restart warms up before it takes connections: the new terminator, started on the ports an old
# one serves, binds them but accepts nothing (its /healthz says "warming up") until its name filter
# is built and the hottest names of the hot-names file it found at start are loaded, so every connection
# meanwhile goes to the old one and the new one's first connection meets a warm cache. The
# warm-up is bounded by --warm-up-limit. To make "meanwhile" observable, a lock on the domains
# table holds the new one's set-up, name scan and prefetch back, and later holds a
# warm-up back past its limit. Also: a terminator with nothing cached writes an empty list (its
# sort of no names was undefined behaviour, which the sanitizer build stopped on). And a listener of
# another service on the same port at another address, or at [::] for IPv6 alone, does not hold a
# start back, while one at the wildcard address of the port (which takes our address's connections)
# does; and a terminator that may not ask the kernel (no netlink socket, as under a systemd unit
# that restricts address families without AF_NETLINK) says so and listens at once.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
NAMES=(w1 w2 w3 w4 w5 w6 w7 w8)
for n in "${NAMES[@]}"; do make_cert "$n.test" || fail "make_cert $n.test"; done
mkdir -m 1777 "$T/run"
HOT=$T/run/hot-names
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port)
# start_on METRICS_PORT [flags...]: a terminator on the shared ports; its pid in $NEW_PID.
start_on() {
	local m=$1
	shift
	bg "$TT_BIN/terminator" --https "127.0.0.1:$HTTPS_PORT" --http "127.0.0.1:$HTTP_PORT" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$m" --threads 2 --user nobody \
		--hot-names-file "$HOT" --hot-names-interval 0 "$@" >>"$T/terminator.$m.log" 2>&1
	NEW_PID=$!
}
mval() { curl -s "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
healthz() { curl -s "http://127.0.0.1:$1/healthz"; }
serves() { [ "$(served "$1" subject)" = "subject=CN = $1" ]; }
all_served() { local n; for n in "${NAMES[@]}"; do serves "$n.test" || return 1; done; }
# lock_domains: a session holding an exclusive lock on domains until unlock_domains cancels it.
lock_domains() {
	bg env PGAPPNAME=warm_up_lock psql -qAtX -d "$TRACKTLS_DB" \
		-c "BEGIN; LOCK TABLE domains IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(120)" >/dev/null 2>&1
	wait_until 10 bash -c "[ \"\$(psql -qAtX -d '$TRACKTLS_DB' -c \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'domains' AND l.mode = 'AccessExclusiveLock' AND l.granted\")\" = 1 ]"
}
unlock_domains() {
	psql -qAtX -d "$TRACKTLS_DB" -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'warm_up_lock'" >/dev/null
}

# ---- nothing cached: an empty list ----
Z=$(free_port)
bg "$TT_BIN/terminator" --https "127.0.0.1:$(free_port)" --http "127.0.0.1:$(free_port)" \
	--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$Z" --threads 2 --user nobody \
	--hot-names-file "$T/run/empty" --hot-names-interval 1s >>"$T/terminator.$Z.log" 2>&1
Z_PID=$!
check "a terminator with nothing cached writes its list on the timer" \
	wait_until 15 grep -q "event=hot_names_written .*names=0 " "$T/terminator.$Z.log"
check "  ... an empty one" test "$(tail -n +2 "$T/run/empty" | wc -l)" = 0
kill -TERM "$Z_PID"
wait "$Z_PID"; rc=$?
check "  ... and stops with exit 0 ($rc)" test "$rc" = 0

# starts_at_once PORT: a terminator on 127.0.0.1:PORT, beside another service on the port, turns
# healthy without a warm-up (the other service takes none of its connections), then stops.
starts_at_once() {
	local m pid
	m=$(free_port)
	bg "$TT_BIN/terminator" --https "127.0.0.1:$1" --http "127.0.0.1:$(free_port)" \
		--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$m" --threads 2 --user nobody \
		--warm-up-limit 60s >>"$T/terminator.$m.log" 2>&1
	pid=$!
	check "a terminator on 127.0.0.1 of that port turns healthy" wait_until 15 curl -sf "http://127.0.0.1:$m/healthz"
	check "  ... without a warm-up (it listened at once)" bash -c "! grep -q event=warm_up_done '$T/terminator.$m.log'"
	kill -TERM "$pid"
	wait "$pid"
}

# ---- another service on the port, at another address: not a restart ----
SHARED=$(free_port)
bg python3 "$TT_ROOT/tests/lib/black_hole.py" 127.0.0.2 "$SHARED"
check "another service listens on 127.0.0.2:$SHARED" wait_until 10 port_open 127.0.0.2 "$SHARED"
starts_at_once "$SHARED"

# ---- an IPv6-only service at [::] of the port: it takes no IPv4 connection, not a restart ----
SIX=$(free_port)
bg python3 "$TT_ROOT/tests/lib/black_hole.py" :: "$SIX" --v6only
check "an IPv6-only service listens on [::]:$SIX" wait_until 10 port_open ::1 "$SIX"
check "  ... and no IPv4 listener is there" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$SIX) 2>/dev/null"
starts_at_once "$SIX"

# ---- a listener at the wildcard address of the port: a restart ----
WILD=$(free_port) W=$(free_port)
bg python3 "$TT_ROOT/tests/lib/black_hole.py" 0.0.0.0 "$WILD" --reuseport
check "a process listens on 0.0.0.0:$WILD" wait_until 10 port_open 127.0.0.1 "$WILD"
check "the domains table is locked (the warm-up will wait)" lock_domains
bg "$TT_BIN/terminator" --https "127.0.0.1:$WILD" --http "127.0.0.1:$(free_port)" \
	--backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$W" --threads 2 --user nobody \
	--warm-up-limit 60s --db-timeout 30s >>"$T/terminator.$W.log" 2>&1
W_PID=$!
check "a terminator on 127.0.0.1 of that port warms up first" \
	wait_until 15 bash -c "[ \"\$(curl -s http://127.0.0.1:$W/healthz)\" = 'warming up' ]"
check "  ... while connections to 127.0.0.1:$WILD still find a listener" port_open 127.0.0.1 "$WILD"
check "  ... the old one: the new one accepted none" test "$(mval "$W" tracktls_connections_accepted_total)" = 0
unlock_domains
check "  ... then turns healthy" wait_until 30 curl -sf "http://127.0.0.1:$W/healthz"
check "  ... after its warm-up" grep -q "event=warm_up_done .*complete=true" "$T/terminator.$W.log"
check "  ... and the listener check did not fail" bash -c "! grep -q event=listener_check_failed '$T/terminator.$W.log'"
kill -TERM "$W_PID"
wait "$W_PID"

# ---- the same, when the kernel cannot be asked: listen at once ----
N=$(free_port)
bg python3 "$TT_ROOT/tests/lib/no_netlink.py" "$TT_BIN/terminator" --https "127.0.0.1:$WILD" \
	--http "127.0.0.1:$(free_port)" --backend "127.0.0.1:$BACKEND_PORT" --metrics "127.0.0.1:$N" \
	--threads 2 --user nobody --warm-up-limit 60s >>"$T/terminator.$N.log" 2>&1
N_PID=$!
check "a terminator without netlink sockets, on 127.0.0.1 of that port, turns healthy" \
	wait_until 15 curl -sf "http://127.0.0.1:$N/healthz"
check "  ... saying why it could not tell a restart" \
	grep -q 'event=listener_check_failed error="sock_diag socket: Address family not supported by protocol"' "$T/terminator.$N.log"
check "  ... without a warm-up" bash -c "! grep -q event=warm_up_done '$T/terminator.$N.log'"
kill -TERM "$N_PID"
wait "$N_PID"

# ---- a warm restart ----
A=$(free_port)
start_on "$A"
A_PID=$NEW_PID
check "the first terminator starts (no other process serves: no warm-up)" wait_until 15 curl -sf "http://127.0.0.1:$A/healthz"
check "  ... without a warm-up" bash -c "! grep -q event=warm_up_done '$T/terminator.$A.log'"
check "it serves every name" all_served
# The list A would have written at its last --hot-names-interval.
{
	echo "# tracktls hot names v1 pid=$A_PID written=$(date -u +%Y-%m-%dT%H:%M:%SZ) names=${#NAMES[@]}"
	printf '%s.test\n' "${NAMES[@]}"
} >"$HOT"
check "the domains table is locked (the new one's set-up, scan and prefetch will wait)" lock_domains
B=$(free_port)
# (its queries wait for the lock without timing out, so the database does not look down)
start_on "$B" --warm-up-limit 60s --db-timeout 30s
B_PID=$NEW_PID
check "a second terminator on the same ports says it is warming up" \
	wait_until 15 bash -c "[ \"\$(curl -s http://127.0.0.1:$B/healthz)\" = 'warming up' ]"
check "while it warms up, every name is served (by the old one)" all_served
accepted=$(mval "$B" tracktls_connections_accepted_total) state=$(healthz "$B")
check "  ... the new one accepted no connection ($accepted)" test "$accepted" = 0
check "  ... and was still warming up ($state)" test "$state" = "warming up"
unlock_domains
check "once the lock is gone, the new one turns healthy" wait_until 30 curl -sf "http://127.0.0.1:$B/healthz"
check "  ... after a complete warm-up" grep -q "event=warm_up_done .*complete=true .*filter=trusted prefetched=${#NAMES[@]}" "$T/terminator.$B.log"
check "  ... its name filter trusted" test "$(mval "$B" tracktls_name_filter_trusted)" = 1
check "  ... every hot name loaded before its first connection" \
	test "$(mval "$B" "tracktls_handover_prefetch_names_total{result=\"loaded\"}")" = "${#NAMES[@]}"
kill -TERM "$A_PID"
wait "$A_PID"
misses0=$(mval "$B" tracktls_cert_cache_misses_total)
check "after the old one left, the new one serves every name" all_served
check "  ... without a miss" test "$(mval "$B" tracktls_cert_cache_misses_total)" = "$misses0"
check "  ... on connections it accepted" test "$(mval "$B" tracktls_connections_accepted_total)" -ge "${#NAMES[@]}"

# ---- the warm-up is bounded ----
check "the domains table is locked again" lock_domains
C=$(free_port)
start=$(date +%s%N)
# (its queries wait for the lock longer than the limit, so the database does not look down)
start_on "$C" --warm-up-limit 1s --db-timeout 10s
C_PID=$NEW_PID
check "a third terminator, held back by the lock, turns healthy at its --warm-up-limit" \
	wait_until 15 curl -sf "http://127.0.0.1:$C/healthz"
ms=$((($(date +%s%N) - start) / 1000000))
check "  ... not before it (${ms} ms)" test "$ms" -ge 1000
check "  ... saying the warm-up was cut short" \
	grep -q "event=warm_up_done .*complete=false database=up filter=building" "$T/terminator.$C.log"
unlock_domains
kill -TERM "$B_PID"
wait "$B_PID"
check "it serves every name on demand" all_served
kill -TERM "$C_PID"
wait "$C_PID"; rc=$?
check "it stops with exit 0 ($rc)" test "$rc" = 0
