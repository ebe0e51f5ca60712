#!/usr/bin/env bash
# Master-key rotation exactly as the README gives it, against a running terminator:
#   issuer keys generate --master-key-file FILE; SIGHUP the terminator; issuer keys rotate
# After it, certificates and ticket keys re-sealed under the new key load and serve. Then a
# reload that would drop the key still in use is refused (logged, the old ring keeps serving),
# and one dropping the key nothing uses any more is taken.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/terminator.sh"

tt_setup_db
start_backend
for n in a.test b.test; do make_cert "$n" || fail "make_cert $n"; done
"$TT_BIN/issuer" tickets rotate >/dev/null 2>&1 || fail "issuer tickets rotate"
sql() { psql -qAtX -d "$TRACKTLS_DB" -c "$1"; }
check "terminator starts as nobody; the key ring (root's, mode 0600) read before the switch" start_terminator
check "  ... serves a.test" test "$(served a.test subject)" = "subject=CN = a.test"

# The README's steps, literally (one host: the file is already where the terminator reads it).
check "issuer keys generate --master-key-file FILE appends key 2" \
	grep -q "master key 2 added" <("$TT_BIN/issuer" keys generate --master-key-file "$T/keys")
kill -HUP "$TERM_PID"
check "SIGHUP: the terminator reloads the key ring and says which key it added" \
	wait_until 10 grep -q "event=keyring_reloaded keys=2 newest=2 added=2 dropped=" "$T/terminator.log"
ticket_reloads=$(metric tracktls_ticket_key_reloads_total)
check "issuer keys rotate re-seals everything under key 2" "$TT_BIN/issuer" keys rotate
check "  ... (no certificate or ticket key left under key 1)" test \
	"$(sql "select (select count(*) from certificates where master_key_id < 2) + (select count(*) from ticket_keys where master_key_id < 2)")" = 0
check "b.test, first loaded after the rotation (its key opened with key 2), is served" \
	test "$(served b.test subject)" = "subject=CN = b.test"
check "  ... no certificate failed to open" test "$(metric tracktls_db_bad_certificates_total)" = 0
more_ticket_reloads() { test "$(metric tracktls_ticket_key_reloads_total)" -gt "$ticket_reloads"; }
check "  ... the re-sealed ticket keys reloaded on their NOTIFY" wait_until 10 more_ticket_reloads
check "  ... without a reload error" test "$(metric tracktls_ticket_key_reload_errors_total)" = 0

# A ring without key 2, which every certificate now uses: refused, and key 2 keeps working.
make_cert c.test || fail "make_cert c.test"
cp "$T/keys" "$T/keys.full"
grep -v '^2 ' "$T/keys.full" >"$T/keys"
kill -HUP "$TERM_PID"
check "a reload dropping key 2 while certificates use it is refused and logged" \
	wait_until 10 grep -q "event=keyring_reload_refused.*key 2 .*in use" "$T/terminator.log"
check "  ... and key 2 still opens c.test" test "$(served c.test subject)" = "subject=CN = c.test"
grep -v '^1 ' "$T/keys.full" >"$T/keys"
kill -HUP "$TERM_PID"
check "a reload dropping key 1, which nothing uses any more, is taken" \
	wait_until 10 grep -q "event=keyring_reloaded keys=1 newest=2 added= dropped=1" "$T/terminator.log"
check "  ... and the terminator serves" test "$(served a.test subject)" = "subject=CN = a.test"
stop_terminator; rc=$?
check "SIGTERM stops the terminator with exit 0" test "$rc" = 0
