#!/usr/bin/env bash
# Runs the unit tests and the integration scenarios against one build, with one private PostgreSQL
# for the whole run (each test gets its own database), and ends with "N passed, N failed".
#   tests/run.sh [--mode asan|release] [-j N] [PATTERN...]   PATTERN filters tests by name (substring)
# Tests run N at a time (default: TEST_JOBS, else the number of CPUs): most of a scenario's time is
# spent waiting on its peers, not computing. An integration scenario with a line starting
# "# exclusive:" (and the reason) runs alone, before the others: one that changes the machine
# (installs packages) or whose assertions are timings a loaded machine would push over their limit.
# Each test's output is printed as one block when it finishes; its full log is in $WORK/logs/.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=asan
JOBS=${TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}
while [ $# -gt 0 ]; do
	case $1 in
	--mode) MODE=$2; shift 2 ;;
	-j) JOBS=$2; shift 2 ;;
	-j*) JOBS=${1#-j}; shift ;;
	*) break ;;
	esac
done
[[ $JOBS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: -j needs a positive number, got '$JOBS'" >&2; exit 2; }
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
# The scenarios run python3 and psql thousands of times, so what stands in front of them in PATH
# counts. The Python helpers are written for Debian's python3 and its packages (scripts/deps.sh);
# a version manager's shim ahead of it (pyenv: two bash scripts per call, 0.6 s of CPU against
# 0.06 s) would pick another interpreter and cost more than the tests. Debian's psql is a Perl
# wrapper that picks a version: take the server's own client tools (half the CPU per call).
if [ -x /usr/bin/python3 ]; then
	mkdir -p "$WORK/bin" && ln -s /usr/bin/python3 "$WORK/bin/python3" && export PATH=$WORK/bin:$PATH
fi
[ -x "$PG_BIN/psql" ] && export PATH=$PG_BIN:$PATH

declare -A RUNNING=() # result file of a test running in the background -> its pid
cleanup() {
	local pid
	# A running test's timeout(1) passes the signal on to the scenario's process group.
	for pid in "${RUNNING[@]}"; do pkill -TERM -P "$pid" 2>/dev/null; done
	wait 2>/dev/null
	pg_stop "$WORK/pg"
	[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pg_start "$WORK/pg" 5432 || { echo "0 passed, 1 failed"; exit 1; }
mkdir -p "$WORK/logs" "$WORK/results"
# A test running in the background writes its result file's name here when it is done.
mkfifo "$WORK/done" && exec 3<>"$WORK/done" || { echo "0 passed, 1 failed"; exit 1; }

passed=0 failed=0
failures=()
selected() {
	[ ${#PATTERNS[@]} -eq 0 ] && return 0
	local p
	for p in "${PATTERNS[@]}"; do [[ $1 == *"$p"* ]] && return 0; done
	return 1
}

# A test prints PASS:/FAIL: lines; a test that exits non-zero without a FAIL line counts as one failure.
# Runs one test; what it has to say goes to RESULT (its counts on the first line, then the block
# to print), so tests running side by side never interleave their output.
run_one() {
	local result=$1 name=$2; shift 2
	local log=$WORK/logs/${name//\//_}.log
	local db
	db=$(pg_newdb "t_$(echo "$name" | tr -c 'a-zA-Z0-9' '_' | cut -c1-50)_$RANDOM") ||
		{ printf '0 1 %s\nFAIL: %s: cannot create database\n' "$name" "$name" >"$result"; return; }
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
	{
		echo "$p $f $name"
		printf '%-55s %3d passed %3d failed  %ds\n' "$name" "$p" "$f" $((SECONDS - start))
		if [ "$f" -gt 0 ]; then
			grep '^FAIL:' "$log" | sed 's/^/    /'
			echo "    --- last lines of $log:"
			tail -n 25 "$log" | sed 's/^/    | /'
		fi
	} >"$result.tmp" && mv "$result.tmp" "$result"
}

# Prints a finished test's block and adds its counts.
report() {
	local result=$1 p f name
	read -r p f name <"$result"
	tail -n +2 "$result"
	passed=$((passed + p)); failed=$((failed + f))
	[ "$f" -gt 0 ] && failures+=("$name")
}

# Waits for one of the running tests to finish and reports it.
reap_one() {
	local result
	read -r result <&3
	wait "${RUNNING[$result]}"
	unset "RUNNING[$result]"
	report "$result"
}

# Every test, in order, as NAME<tab>EXCLUSIVE (0 or 1)<tab>COMMAND.
QUEUE=()
for t in $(find "$UNIT_DIR" -type f -name 'test_*' -perm -u+x 2>/dev/null | sort); do
	QUEUE+=("unit/${t#"$UNIT_DIR"/}	0	$t")
done
# Every fuzz target replays its seed corpus (built by `make fuzz-build`, which `make test` runs).
for t in $(ls tests/fuzz/fuzz_*.c 2>/dev/null | sort); do
	QUEUE+=("fuzz/$(basename "$t" .c)	0	bash tests/fuzz/replay.sh $(basename "$t" .c)")
done
for t in $(ls tests/integration/*.sh 2>/dev/null | sort); do
	ex=0
	grep -q '^# exclusive:' "$t" && ex=1
	QUEUE+=("integration/$(basename "$t" .sh)	$ex	bash $t")
done

# The exclusive ones first, one by one, on an otherwise quiet run; then the rest, JOBS at a time,
# the integration scenarios (the long ones) before the unit tests and fuzz replays (short ones
# fill the gaps at the end).
n=0
for pass in exclusive integration short; do
	for entry in "${QUEUE[@]}"; do
		IFS=$'\t' read -r name ex cmd <<<"$entry"
		selected "$name" || continue
		case $pass in
		exclusive) [ "$ex" = 1 ] || continue ;;
		integration) [ "$ex" = 0 ] && [[ $name == integration/* ]] || continue ;;
		short) [[ $name != integration/* ]] || continue ;;
		esac
		n=$((n + 1))
		result=$WORK/results/$n
		if [ "$ex" = 1 ]; then
			run_one "$result" "$name" $cmd 3>&-
			report "$result"
			continue
		fi
		while [ ${#RUNNING[@]} -ge "$JOBS" ]; do reap_one; done
		{
			run_one "$result" "$name" $cmd 3>&-
			echo "$result" >&3
		} &
		RUNNING[$result]=$!
	done
done
while [ ${#RUNNING[@]} -gt 0 ]; do reap_one; done

[ ${#failures[@]} -gt 0 ] && echo "failed: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
