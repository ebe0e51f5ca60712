#!/usr/bin/env bash
# The issuer's log stays one logfmt line per event when an error text from libpq holds a quote and
# a newline; a run that cannot work (options, key ring) exits 2 with a run_failed event.
. "$TT_ROOT/tests/lib/common.sh"
. "$TT_ROOT/tests/lib/issuer_env.sh"
issuer_env_start
logfmt() { python3 "$TT_ROOT/tests/lib/logfmt_check.py" "$@"; }
# The events of a log, without the "tracktls-issuer: why" (options) or "issuer run: why" line a run
# that cannot work prints for people.
events() { grep -vE '^(tracktls-issuer|issuer run): ' "$1" >"$1.events"; echo "$1.events"; }

# Every run deletes expired challenges first; make that statement fail with a message that has a
# quote in its first line and a newline before its DETAIL, as PostgreSQL's errors do.
q "CREATE FUNCTION refuse_cleanup() RETURNS trigger LANGUAGE plpgsql AS \$\$
   BEGIN RAISE EXCEPTION 'cleanup of \"challenges\" refused' USING DETAIL = 'second line'; END \$\$;
   CREATE TRIGGER refuse_cleanup BEFORE DELETE ON challenges FOR EACH STATEMENT EXECUTE FUNCTION refuse_cleanup();" >/dev/null
$I run --self-check-via "127.0.0.1:$HTTP" 2>"$T/run1.log"; rc=$?
check "the run goes on without the cleanup (exit 0)" test "$rc" = 0
check "every line of the log is one logfmt record" logfmt "$T/run1.log"
ev=$(logfmt "$T/run1.log" challenge_cleanup_failed)
check "the cleanup failure's error keeps the quote and the newline" python3 -c '
import json, sys
e = json.loads(sys.argv[1])["error"]
assert "cleanup of \"challenges\" refused" in e and "\nDETAIL:  second line" in e, e' "$ev"

$I run --master-key-file "$T/no-such-keys" 2>"$T/run2.log"; rc=$?
check "key ring missing: exit 2" test "$rc" = 2
check "  ... with a run_failed event, reason keyring" grep -q '"reason": "keyring"' <<<"$(logfmt "$(events "$T/run2.log")" run_failed)"
$I run --concurrency 0 2>"$T/run3.log"; rc=$?
check "bad option value: exit 2" test "$rc" = 2
check "  ... with a run_failed event, reason options" grep -q '"reason": "options"' <<<"$(logfmt "$(events "$T/run3.log")" run_failed)"
$I run --no-such-flag 2>"$T/run4.log"; rc=$?
check "unknown flag: exit 2" test "$rc" = 2
check "  ... with a run_failed event, reason options" grep -q '"reason": "options"' <<<"$(logfmt "$(events "$T/run4.log")" run_failed)"
