#!/usr/bin/env bash
# Runs libFuzzer targets built by fuzz.mk, each for SECONDS on its seed corpus, and prints one
# line per target: executions, coverage (edges), features, corpus (inputs/bytes) and whether it crashed.
#   tests/fuzz/run.sh SECONDS TARGET...       (exit 1 if any target crashed)
#   tests/fuzz/run.sh --merge 0 TARGET...     fold build/fuzz/corpus/<t> minimized into the seeds
set -uo pipefail
cd "$(dirname "$0")/../.."
merge=
[ "${1:-}" = "--merge" ] && { merge=1; shift; }
seconds=$1; shift
dir=build/fuzz
mkdir -p "$dir/crashes" "$dir/logs"
crashed=0
for t in "$@"; do
	bin=$dir/bin/$t seeds=tests/fuzz/corpus/$t work=$dir/corpus/$t log=$dir/logs/$t.log
	mkdir -p "$seeds" "$work"
	dict=$(sed -n 's|^// fuzz-dict:[[:space:]]*||p' "tests/fuzz/$t.c")
	args=(-print_final_stats=1 -timeout=10 -rss_limit_mb=2048 "-artifact_prefix=$dir/crashes/$t-")
	[ -n "$dict" ] && args+=("-dict=$dict")
	if [ -n "$merge" ]; then
		"$bin" -merge=1 "${args[@]}" "$seeds" "$work" >"$log" 2>&1
		echo "$t: seeds now $(ls "$seeds" | wc -l) files"
		continue
	fi
	# New inputs land in the first directory, so the seeds in the repo stay as they are.
	"$bin" -max_total_time="$seconds" "${args[@]}" "$work" "$seeds" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
	status=$(grep -aE '^#[0-9]+' "$log" | grep -a 'cov:' | tail -n 1)
	cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
	ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
	corp=$(sed -n 's/.* corp: \([^ ]*\).*/\1/p' <<<"$status")
	eps=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -n 1)
	result=ok
	if [ "$rc" -ne 0 ]; then
		result="CRASH (see $log and $dir/crashes/$t-*)"
		crashed=1
	fi
	printf '%-22s %ss execs=%s (%s/s) cov=%s ft=%s corpus=%s %s\n' "$t" "$seconds" "${execs:-?}" "${eps:-?}" \
		"${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit $crashed
