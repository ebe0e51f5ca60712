#!/usr/bin/env bash
# terminator configuration and start-up: --version and --help, flags from a config file, a key file
# others can read is refused, bad flags exit 2, and start-up loads no certificates (200,000 domains
# in the database; how fast it serves with 1,000,000 is measured in bench/million.sh, not here).
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"
TB=$TT_BIN/terminator

# --version names the wolfSSL the build compiled against, with the assembly its options.h enables:
# the build recorded which one (build/<mode>/wolfssl.prefix: a prefix, or "system").
stamp=$TT_BIN/../wolfssl.prefix
[ -f "$stamp" ] || stamp=$TT_ROOT/build/release/wolfssl.prefix
prefix=$(cat "$stamp")
opts=/usr/include/wolfssl/options.h
[ "$prefix" = system ] || opts=$prefix/include/wolfssl/options.h
asm=""
grep -q '^#define WOLFSSL_AESNI' "$opts" && asm="$asm aesni"
grep -q '^#define WOLFSSL_SP_X86_64_ASM' "$opts" && asm="$asm sp-x86_64"
want="without assembly"
[ -n "$asm" ] && want="with assembly:$asm"
out=$("$TB" --version)
check "--version says what the build promised ($prefix: $want)" grep -qx "wolfSSL 5\.[0-9.]* $want" <<<"$out"

# --help against the parser: every documented flag is accepted, and every flag the parser accepts
# is documented. Candidates for the second: the binary's flag-shaped strings with a dash, and the
# flag of every TRACKTLS_ variable it reads. (/dev/null: a value even --config can open.)
help=$("$TB" --help)
accepted() { "$TB" "--$1=/dev/null" --version >/dev/null 2>&1; }
documented=$(grep -oE '^  --[a-z0-9-]+' <<<"$help" | sed 's/^  --//' | sort -u)
refused=""
for f in $documented; do accepted "$f" || refused="$refused $f"; done
check "every flag --help documents is accepted ($(wc -w <<<"$documented") flags; refused:$refused)" test -z "$refused"
candidates=$( {
	strings -n 2 "$TB" | grep -xE '[a-z][a-z0-9]*(-[a-z0-9]+)+'
	strings -n 2 "$TB" | grep -xE 'TRACKTLS_[A-Z0-9_]+' | sed 's/^TRACKTLS_//' | tr 'A-Z_' 'a-z-'
} | sort -u)
undocumented=""
for f in $candidates; do
	grep -qx -- "$f" <<<"$documented" && continue
	accepted "$f" && undocumented="$undocumented $f"
done
check "every flag the parser accepts is documented (undocumented:$undocumented)" test -z "$undocumented"
for e in $(strings -n 2 "$TB" | grep -xE 'TRACKTLS_[A-Z0-9_]+' | sort -u); do
	grep -q "($e)" <<<"$help" || undocumented_env="${undocumented_env:-} $e"
done
check "--help names every TRACKTLS_ variable the binary reads (missing:${undocumented_env:-})" test -z "${undocumented_env:-}"
"$TB" --no-such-flag >/dev/null 2>&1; rc=$?
check "an unknown flag exits 2" test "$rc" = 2
out=$("$TB" --idle-timeout soon 2>&1); rc=$?
check "a bad duration exits 2 with a message" test "$rc" = 2 -a -n "$out"
printf 'version = yes\n' >"$T/action.conf"
out=$("$TB" --config "$T/action.conf" 2>&1); rc=$?
check "--version in the config file is refused, not acted on: exit 2 ($rc)" test "$rc" = 2
check "  ... naming the file's line" grep -q "^tracktls-terminator: .*action.conf:1: 'version' is a command-line flag only" <<<"$out"
# An empty flag leaves the option unset, as an empty variable does: the default applies, and the
# next refusal is the one for --threads.
out=$("$TB" --idle-timeout= --threads 2x 2>&1); rc=$?
check "--idle-timeout= (empty) is the default ($rc: $out)" grep -q "^tracktls-terminator: --threads: '2x' is not a thread count" <<<"$out"

tt_setup_db
start_backend
chmod 644 "$T/keys"
out=$("$TB" --https 127.0.0.1:0 --http 127.0.0.1:0 2>&1); rc=$?
check "a key file readable by others is refused (exit $rc)" test "$rc" != 0
check "  ... saying why" grep -q "readable or writable by group or others" <<<"$out"
chmod 600 "$T/keys"

BUSY=$(free_port)
python3 -c 'import socket,sys,time; s=socket.socket(); s.bind(("127.0.0.1",int(sys.argv[1]))); s.listen(); time.sleep(30)' "$BUSY" &
BUSY_PID=$!
wait_until 5 port_open 127.0.0.1 "$BUSY"
out=$(timeout 10 "$TB" --https "127.0.0.1:$(free_port)" --http "127.0.0.1:$BUSY" --backend "127.0.0.1:$BACKEND_PORT" 2>&1); rc=$?
kill "$BUSY_PID"
check "a port held by another program: exit non-zero ($rc), no hang" test "$rc" != 0 -a "$rc" != 124
check "  ... saying why" grep -q "Address already in use" <<<"$out"

# Without --threads: one thread per CPU it may run on, not per CPU online.
P1=$(free_port) P2=$(free_port) P3=$(free_port)
taskset -c 0 "$TB" --https "127.0.0.1:$P1" --http "127.0.0.1:$P2" --backend "127.0.0.1:$BACKEND_PORT" \
	--metrics "127.0.0.1:$P3" --allow-root >"$T/one-cpu.log" 2>&1 &
ONE=$!
check "started on one CPU (taskset -c 0) it serves" wait_until 10 curl -sf "http://127.0.0.1:$P3/healthz"
check "  ... with one thread" grep -q "event=start .* threads=1 " "$T/one-cpu.log"
kill "$ONE"; wait "$ONE"
out=$("$TB" --threads 2x 2>&1); rc=$?
check "--threads 2x is refused (exit $rc)" test "$rc" = 2
check "  ... saying why" grep -q "not a thread count" <<<"$out"

make_cert www.bulk.test
# 200,000 more domains, each with a certificate row (a copy of www.bulk.test's: never served).
psql -qAt -v ON_ERROR_STOP=1 -d "$TRACKTLS_DB" >/dev/null <<'SQL' || fail "bulk domains"
SET session_replication_role = replica;
INSERT INTO domains (name, state) SELECT 'd' || g || '.bulk.test', 'active' FROM generate_series(1, 200000) g;
INSERT INTO certificates (domain_id, chain_pem, sealed_key, master_key_id, serial, not_before, not_after, source)
	SELECT d.id, t.chain_pem, t.sealed_key, t.master_key_id, t.serial, t.not_before, t.not_after, 'import'
	FROM domains d CROSS JOIN (SELECT * FROM certificates LIMIT 1) t WHERE d.name LIKE 'd%.bulk.test';
UPDATE domains d SET current_cert_id = c.id FROM certificates c WHERE c.domain_id = d.id AND d.current_cert_id IS NULL;
SQL
HTTPS_PORT=$(free_port) HTTP_PORT=$(free_port) METRICS_PORT=$(free_port)
cat >"$T/terminator.conf" <<CONF
# flags as a file
https = 127.0.0.1:$HTTPS_PORT
http = "127.0.0.1:$HTTP_PORT"
backend = 127.0.0.1:$BACKEND_PORT
metrics = 127.0.0.1:$METRICS_PORT
threads = 2
idle-timeout = 30s
CONF
bg "$TB" --config "$T/terminator.conf" --allow-root >"$T/terminator.log" 2>&1
TERM_PID=$!
check "with 200,000 domains in the database, ready from a config file" wait_until 10 curl -sf "http://127.0.0.1:$METRICS_PORT/healthz"
filter_full() { test "$(metric tracktls_name_filter_names)" = 200001; }
check "  ... knowing every name (its name filter holds 200,001)" wait_until 10 filter_full
check "  ... having loaded no certificate" test "$(metric tracktls_cert_cache_entries)" = 0
check "the first handshake for a name loads its certificate" test "$(served www.bulk.test subject)" = "subject=CN = www.bulk.test"
check "start is logged in logfmt" grep -q "level=info event=start version=" "$T/terminator.log"
check "/metrics is Prometheus text" grep -q '^# TYPE tracktls_handshakes_total counter' <(curl -s "http://127.0.0.1:$METRICS_PORT/metrics")
check "unknown metrics paths get 404" test "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/nope")" = 404
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
check "  ... and it says so" grep -q "event=stopped" "$T/terminator.log"
