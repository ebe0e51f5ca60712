#!/usr/bin/env bash
# Runs the unit tests and the integration scenarios against one build, with one private PostgreSQL
# for the whole run (each test gets its own database), and ends with "N passed, N failed".
#   tests/run.sh [--mode asan|release] [PATTERN...]   PATTERN filters tests by name (substring)
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=asan
[ "${1:-}" = "--mode" ] && { MODE=$2; shift 2; }
PATTERNS=("$@")

if [ "$MODE" = asan ]; then
	export TT_BIN=$ROOT/build/asan/bin UNIT_DIR=$ROOT/build/asan/tests
	export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:halt_on_error=1}
	export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
	export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$ROOT/tests/lsan.supp:print_suppressions=0}
else
	export TT_BIN=$ROOT/bin UNIT_DIR=$ROOT/build/release/tests
fi
export TT_ROOT=$ROOT

WORK=$(mktemp -d /tmp/tracktls-test.XXXXXX)
chmod 755 "$WORK"
export TT_WORK=$WORK
. tests/lib/pg.sh
cleanup() {
	pg_stop "$WORK/pg"
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start "$WORK/pg" 5432 || { echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0
failures=()
selected() {
	[ ${#PATTERNS[@]} -eq 0 ] && return 0
	local p
	for p in "${PATTERNS[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
	return 1
}

# A test prints PASS:/FAIL: lines; a test that exits non-zero without a FAIL line counts as one failure.
run_one() {
	local name=$1; shift
	selected "$name" || return 0
	local log=$WORK/logs/${name//\//_}.log n
	mkdir -p "$WORK/logs"
	local db
	db=$(pg_newdb "t_$(echo "$name" | tr -c 'a-zA-Z0-9' '_' | cut -c1-50)_$RANDOM") || { echo "FAIL: $name: cannot create database"; failed=$((failed + 1)); return; }
	local start=$SECONDS
	TRACKTLS_TEST_DB=$db TT_TEST_NAME=$name timeout "${TEST_TIMEOUT:-600}" "$@" >"$log" 2>&1
	local rc=$?
	local p f
	p=$(grep -c '^PASS:' "$log")
	f=$(grep -c '^FAIL:' "$log")
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		echo "FAIL: $name exited $rc" >>"$log"
		f=1
	fi
	# A sanitizer report from any process the scenario started fails it, also one whose exit
	# status the scenario did not check (a helper command's stderr lands in the log or its folder).
	local san
	san=$(grep -rlE '^==[0-9]+==ERROR: (AddressSanitizer|LeakSanitizer)|: runtime error: ' "$log" "$WORK/${name//\//_}".* 2>/dev/null | head -n 3 | tr '\n' ' ')
	if [ -n "$san" ]; then
		echo "FAIL: $name: sanitizer report in $san" >>"$log"
		f=$((f + 1))
	fi
	passed=$((passed + p)); failed=$((failed + f))
	printf '%-55s %3d passed %3d failed  %ds\n' "$name" "$p" "$f" $((SECONDS - start))
	if [ "$f" -gt 0 ]; then
		failures+=("$name")
		grep '^FAIL:' "$log" | sed 's/^/    /'
		echo "    --- last lines of $log:"
		tail -n 25 "$log" | sed 's/^/    | /'
	fi
}

for t in $(find "$UNIT_DIR" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
	run_one "unit/${t#"$UNIT_DIR"/}" "$t"
done
# Every fuzz target replays its seed corpus (built by `make fuzz-build`, which `make test` runs).
for t in $(ls tests/fuzz/fuzz_*.c 2>/dev/null | sort); do
	run_one "fuzz/$(basename "$t" .c)" bash tests/fuzz/replay.sh "$(basename "$t" .c)"
done
for t in $(ls tests/integration/*.sh 2>/dev/null | sort); do
	run_one "integration/$(basename "$t" .sh)" bash "$t"
done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
