#!/usr/bin/env bash
# Replays a fuzz target's seed corpus once (what tests/run.sh does for every target), so an input
# that once crashed it stays fixed. Prints PASS/FAIL like a test.
#   tests/fuzz/replay.sh TARGET        (the target built by `make fuzz-build` in build/fuzz/bin)
set -uo pipefail
cd "$(dirname "$0")/../.."
t=$1
bin=build/fuzz/bin/$t seeds=tests/fuzz/corpus/$t
[ -x "$bin" ] || { echo "FAIL: $t is built (make fuzz-build)"; exit 1; }
n=$(find "$seeds" -type f 2>/dev/null | wc -l)
[ "$n" -gt 0 ] || { echo "FAIL: $t has a seed corpus in $seeds"; exit 1; }
log=$(mktemp)
# -runs=0: execute every input of the corpus once, nothing more.
if "$bin" -runs=0 -timeout=10 -rss_limit_mb=2048 "$seeds" >"$log" 2>&1; then
	echo "PASS: $t runs its $n corpus inputs without a crash"
else
	echo "FAIL: $t crashed on its corpus:"
	grep -aE 'ERROR|SUMMARY|Test unit|fuzz_' "$log" | head -n 20
fi
rm -f "$log"
