# The start every one-off benchmark script shares (bench/million.sh, bench/restart.sh). Source it
# after setting B (build/bench) and threads (empty: the default), then call:
#   bench_setup NAME  -> holds build/bench/run.lock (one benchmark at a time), T (a fresh folder),
#                        RESULTS (its JSON lines), say (messages prefixed NAME:), free_port,
#                        record SCENARIO JSON, ncpu, srv_cpus/load_cpus/load_threads (the server
#                        on the first half of the CPUs, the load on the rest), threads (one per
#                        server core unless given)
bench_setup() {
	BENCH_NAME=$1
	exec 9>"$B/run.lock"
	flock -w 900 9 || { echo "$BENCH_NAME: another bench run holds build/bench/run.lock" >&2; exit 1; }
	T=$(mktemp -d /tmp/tracktls-bench.XXXXXX)
	chmod 755 "$T"
	RESULTS=$T/results.jsonl
	# python3 may be a version manager's shim (pyenv's cost 0.4 s of CPU a call here, taken from
	# the cores being measured): Debian's own comes first, as in tests/run.sh.
	if [ -x /usr/bin/python3 ]; then
		mkdir -p "$T/path" && ln -s /usr/bin/python3 "$T/path/python3" && export PATH=$T/path:$PATH
	fi
	: >"$RESULTS"
	ncpu=$(nproc)
	srv_cpus="0-$((ncpu / 2 - 1))" load_cpus="$((ncpu / 2))-$((ncpu - 1))" load_threads=$((ncpu - ncpu / 2))
	: "${threads:=$((ncpu / 2 > 0 ? ncpu / 2 : 1))}"
}
say() { echo "$BENCH_NAME: $*" >&2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
record() { jq -c --arg sc "$1" '. + {scenario:$sc}' <<<"$2" >>"$RESULTS"; }
